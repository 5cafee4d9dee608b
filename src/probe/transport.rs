//! Plumbing shared by the kinds that reach their target over TLS or HTTP (`smtp`, `registry`,
//! `s3`, and DoT/DoH resolvers in `dns`): the `tls_verify` / `ca_file` keys, one-shot reqwest
//! clients, and turning transport errors into an [`ErrorClass`] with one clear line.
//!
//! It owns no protocol: each kind decides what a status code or a reply means. What lives here is
//! what would otherwise be copied into every kind, and copied slightly differently.

use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::config::{BuildContext, FieldError};
use crate::probe::{ErrorClass, Outcome};
use crate::tls::{self, Verification};

/// The `User-Agent` honeyguide sends, so that target logs can tell probes from users.
pub const USER_AGENT: &str = concat!("honeyguide/", env!("CARGO_PKG_VERSION"));

/// Turns the `tls_verify` (default true) and `ca_file` keys into a [`Verification`].
///
/// A CA file replaces the system roots rather than adding to them: a private registry or a test
/// server is signed by one CA, and trusting the whole public web besides it would only hide a
/// misconfiguration.
pub fn verification(
    tls_verify: Option<bool>,
    ca_file: Option<&Path>,
    cx: &BuildContext,
) -> Result<Verification, FieldError> {
    match (tls_verify.unwrap_or(true), ca_file) {
        (false, Some(_)) => Err(FieldError::new(
            "ca_file",
            "`ca_file` has no effect with `tls_verify = false`; remove one of them",
        )),
        (false, None) => Ok(Verification::Disabled),
        (true, Some(path)) => tls::roots_from_pem_file(&cx.path(path))
            .map(|roots| Verification::Roots(Arc::new(roots)))
            .map_err(|message| FieldError::new("ca_file", message)),
        (true, None) => Ok(Verification::Roots(cx.system_roots())),
    }
}

/// A rustls client config for `verification`, built once at load time and cloned per run.
pub fn client_config(
    verification: &Verification,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, FieldError> {
    tls::client_config(verification, alpn)
        .map(Arc::new)
        .map_err(|message| FieldError::new("tls_verify", message))
}

/// A reqwest client for exactly one run: no connection pool (so every run opens a fresh
/// connection and sees today's DNS, TCP and TLS), no proxy from the environment (a monitor must
/// know what it is testing), and `host` pinned to the addresses this run already resolved.
pub fn one_shot_client(
    tls: &rustls::ClientConfig,
    pinned: Option<(&str, &[SocketAddr])>,
) -> Result<reqwest::Client, Outcome> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls.clone())
        .pool_max_idle_per_host(0)
        .no_proxy()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::limited(5));
    if let Some((host, addrs)) = pinned {
        builder = builder.resolve_to_addrs(host, addrs);
    }
    builder.build().map_err(|error| {
        Outcome::failure(
            ErrorClass::Internal,
            format!("cannot build the HTTP client: {}", error.without_url()),
        )
    })
}

/// Resolves `host:port` through the system resolver, as the connection would.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Outcome> {
    let trimmed = host.trim_start_matches('[').trim_end_matches(']');
    match tokio::net::lookup_host((trimmed, port)).await {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(Outcome::failure(
                    ErrorClass::Dns,
                    format!("{host} resolved to no addresses"),
                ))
            } else {
                Ok(addrs)
            }
        }
        Err(error) => Err(Outcome::failure(
            ErrorClass::Dns,
            format!("cannot resolve {host}: {error}"),
        )),
    }
}

/// Classifies a failed reqwest request: TLS, connect or timeout, with the cause's own words.
/// The URL is never part of the message (a presigned URL is a credential).
pub fn classify_reqwest(error: reqwest::Error, what: &str) -> Outcome {
    let error = error.without_url();
    if let Some(tls_error) = find_tls_error(&error) {
        return Outcome::failure(
            ErrorClass::Tls,
            format!("{what}: tls: {}", tls::describe_error(tls_error)),
        );
    }
    if error.is_timeout() {
        return Outcome::failure(ErrorClass::Timeout, format!("{what}: {}", chain(&error)));
    }
    if error.is_connect() {
        // The innermost I/O error says it best ("Connection refused"); the layers above it
        // only repeat that a request could not be sent.
        let detail =
            find_source::<io::Error>(&error).map_or_else(|| chain(&error), ToString::to_string);
        return Outcome::failure(
            ErrorClass::Connect,
            format!("{what}: cannot connect: {detail}"),
        );
    }
    Outcome::failure(ErrorClass::Protocol, format!("{what}: {}", chain(&error)))
}

/// Classifies an I/O error of a hand-written protocol exchange (SMTP): refused or reset
/// connections are `connect`, TLS alerts `tls`, everything else the caller's class.
pub fn classify_io(error: &io::Error, what: &str, otherwise: ErrorClass) -> Outcome {
    if let Some(tls_error) = find_tls_error(error) {
        return Outcome::failure(
            ErrorClass::Tls,
            format!("{what}: {}", tls::describe_error(tls_error)),
        );
    }
    let class = match error.kind() {
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::NotConnected
        | io::ErrorKind::AddrNotAvailable
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable => ErrorClass::Connect,
        io::ErrorKind::TimedOut => ErrorClass::Timeout,
        _ => otherwise,
    };
    Outcome::failure(class, format!("{what}: {error}"))
}

/// The first error of type `T` in `error`'s source chain (including itself).
fn find_source<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(item) = current {
        if let Some(found) = item.downcast_ref::<T>() {
            return Some(found);
        }
        current = item.source();
    }
    None
}

/// A rustls error anywhere in the chain. An `io::Error`'s `source()` skips the error it wraps
/// (and hyper-rustls wraps tokio-rustls's `io::Error` in another one), so wrapped errors are
/// followed through `get_ref` instead.
fn find_tls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(item) = current {
        if let Some(found) = item.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        current = match item.downcast_ref::<io::Error>() {
            Some(io_error) => io_error
                .get_ref()
                .map(|inner| inner as &(dyn StdError + 'static)),
            None => item.source(),
        };
    }
    None
}

/// `outer: inner: innermost`, skipping causes whose text the outer message already contains.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        current = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_with_verification_off_is_a_config_error() {
        let cx = BuildContext::new(".");
        let error = verification(Some(false), Some(Path::new("ca.pem")), &cx).unwrap_err();
        assert_eq!(error.key, "ca_file");
        assert!(matches!(
            verification(Some(false), None, &cx),
            Ok(Verification::Disabled)
        ));
    }

    #[test]
    fn refused_io_errors_are_connect() {
        let error = io::Error::from(io::ErrorKind::ConnectionRefused);
        let outcome = classify_io(&error, "connect to 127.0.0.1:1", ErrorClass::Protocol);
        assert_eq!(outcome.error, Some(ErrorClass::Connect));
        assert!(outcome.message.starts_with("connect to 127.0.0.1:1: "));
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        let outcome = classify_io(&eof, "banner", ErrorClass::Protocol);
        assert_eq!(outcome.error, Some(ErrorClass::Protocol));
    }
}
