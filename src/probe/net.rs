//! Sockets for the probe kinds that open their own (`postgres`, `redis`, `asynq`): resolving a
//! host, connecting to it, a TLS handshake, and one line describing what went wrong.
//!
//! Those kinds resolve and connect themselves instead of letting their client library do it, so
//! that a failed name lookup, a refused connection and a failed handshake are told apart (each its
//! own [`ErrorClass`]) and timed as phases of their own.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::{BuildContext, FieldError};
use crate::probe::{ErrorClass, Outcome};
use crate::tls::Verification;

/// Turns the `tls_verify` (default true) and `ca_file` keys into a [`Verification`]. A CA file
/// replaces the system roots: a private server is signed by one CA, and trusting the public web
/// besides it would only hide a misconfiguration. Errors name the key `ca_file`.
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
        (true, Some(path)) => crate::tls::roots_from_pem_file(&cx.path(path))
            .map(|roots| Verification::Roots(Arc::new(roots)))
            .map_err(|message| FieldError::new("ca_file", message)),
        (true, None) => Ok(Verification::Roots(cx.system_roots())),
    }
}

/// Resolves `host` (a name or an IP literal) to the addresses to try, in the resolver's order.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Outcome> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|error| {
            Outcome::failure(ErrorClass::Dns, format!("cannot resolve {host}: {error}"))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Outcome::failure(
            ErrorClass::Dns,
            format!("cannot resolve {host}: no addresses"),
        ));
    }
    Ok(addrs)
}

/// Connects to the first address that accepts, trying them in order as a client library would.
/// When none does, the failure names the last address tried and why it failed.
pub async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, Outcome> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Probes send a few small messages and wait for each answer: Nagle would only
                // add latency to what we measure.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(error) => last = Some((addr, error)),
        }
    }
    Err(match last {
        Some((addr, error)) => Outcome::failure(
            ErrorClass::Connect,
            format!("cannot connect to {addr}: {}", describe_io(&error)),
        ),
        None => Outcome::failure(ErrorClass::Connect, "no address to connect to"),
    })
}

/// Runs a TLS handshake over `stream`, verifying the peer as `config` says, for `host` (sent as
/// SNI unless it is an IP literal).
pub async fn tls_handshake(
    stream: TcpStream,
    config: Arc<rustls::ClientConfig>,
    host: &str,
) -> Result<TlsStream<TcpStream>, Outcome> {
    let server_name = ServerName::try_from(host.to_owned()).map_err(|error| {
        Outcome::failure(
            ErrorClass::Tls,
            format!("`{host}` cannot be used as a TLS server name: {error}"),
        )
    })?;
    TlsConnector::from(config)
        .connect(server_name, stream)
        .await
        .map_err(|error| tls_failure(&error))
}

/// The failure for an error out of a TLS handshake: the certificate problem when rustls names
/// one, the I/O problem otherwise (e.g. the server closed the connection mid-handshake).
pub fn tls_failure(error: &io::Error) -> Outcome {
    let detail = match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls_error) => crate::tls::describe_error(tls_error),
        None => describe_io(error),
    };
    Outcome::failure(ErrorClass::Tls, format!("TLS handshake failed: {detail}"))
}

/// A socket error in a few lowercase words, without the `(os error N)` suffix.
pub fn describe_io(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".to_owned(),
        io::ErrorKind::ConnectionAborted => "connection aborted".to_owned(),
        io::ErrorKind::UnexpectedEof => "connection closed by peer".to_owned(),
        io::ErrorKind::BrokenPipe => "connection closed by peer (broken pipe)".to_owned(),
        io::ErrorKind::TimedOut => "timed out".to_owned(),
        io::ErrorKind::HostUnreachable => "host unreachable".to_owned(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".to_owned(),
        io::ErrorKind::AddrNotAvailable => "address not available".to_owned(),
        _ => {
            let text = error.to_string();
            match text.find(" (os error") {
                Some(cut) => text[..cut].to_lowercase(),
                None => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connection_is_a_connect_failure_naming_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let failure = connect(&[addr]).await.unwrap_err();
        assert_eq!(failure.error, Some(ErrorClass::Connect));
        assert_eq!(
            failure.message,
            format!("cannot connect to {addr}: connection refused")
        );
    }

    #[tokio::test]
    async fn ip_literals_need_no_lookup() {
        let addrs = resolve("::1", 5432).await.unwrap();
        assert_eq!(addrs, vec!["[::1]:5432".parse().unwrap()]);
    }

    #[tokio::test]
    async fn unresolvable_names_are_dns_failures() {
        let failure = resolve("no-such-host.invalid", 5432).await.unwrap_err();
        assert_eq!(failure.error, Some(ErrorClass::Dns));
        assert!(
            failure
                .message
                .starts_with("cannot resolve no-such-host.invalid: "),
            "{}",
            failure.message
        );
    }
}
