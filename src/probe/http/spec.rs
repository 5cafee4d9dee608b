//! The keys of a `kind = "http"` probe, and their validation into a runnable [`HttpProbe`].
//!
//! Every key is checked, and every problem is reported at once as a [`FieldError`] naming the key.
//! Header values and the body may carry secrets (`${ENV}`), so no message ever quotes them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;
use url::Url;

use super::client::Client;
use super::{HttpProbe, RequestTemplate};
use crate::probe::net;
use crate::spec::{BuildContext, FieldError, FieldErrors, Keep, Secret};

/// How much of a body is read when `body_limit` is not set.
pub(crate) const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// The largest `body_limit` accepted: a probe is not a download.
const MAX_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The keys of a `kind = "http"` probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The URL to request, `http://` or `https://`. Its host is the `Host` header and the TLS SNI.
    url: String,
    /// The request method (default `GET`).
    method: Option<String>,
    /// Extra request headers. Values may come from `${ENV}` and are never shown.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The request body, sent as is.
    body: Option<String>,
    /// Connect to this IP or IP:port instead of resolving the URL's host, keeping the `Host`
    /// header and SNI (like `curl --resolve`): probes one origin node behind a shared name.
    connect_to: Option<String>,
    /// Statuses that count as healthy: codes (`200`), ranges (`"200-299"`) or classes (`"2xx"`).
    /// Default `200-299`.
    expect_status: Option<Vec<IntOrText>>,
    /// A regular expression the body must match.
    expect_body: Option<String>,
    /// Verify the server's certificate chain and name (default `true`).
    tls_verify: Option<bool>,
    /// A PEM file of CA certificates to trust instead of the system roots.
    ca_file: Option<PathBuf>,
    /// Follow redirects, up to ten (default `false`: a redirect is the answer).
    #[serde(default)]
    follow_redirects: bool,
    /// How much of the body to read, in bytes or as `"64KiB"`, `"1MiB"` (default 1 MiB).
    body_limit: Option<IntOrText>,
}

impl Spec {
    /// Validates the keys into a runnable probe, reporting every problem.
    pub fn build(self, cx: &BuildContext) -> Result<HttpProbe, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let url = keep(parse_url(&self.url), "url", &mut errors);
        let method = keep(parse_method(self.method.as_deref()), "method", &mut errors);
        let headers = parse_headers(&self.headers, &mut errors);
        let default_port = url.as_ref().and_then(Url::port_or_known_default);
        let connect_to = self.connect_to.as_deref().and_then(|text| {
            keep(
                parse_connect_to(text, default_port),
                "connect_to",
                &mut errors,
            )
        });
        let expect_status = match &self.expect_status {
            Some(items) => keep(StatusSet::parse(items), "expect_status", &mut errors),
            None => Some(StatusSet::default()),
        };
        let expect_body = self
            .expect_body
            .as_deref()
            .and_then(|pattern| keep(parse_regex(pattern), "expect_body", &mut errors));
        let body_limit = match &self.body_limit {
            Some(limit) => keep(parse_body_limit(limit), "body_limit", &mut errors),
            None => Some(DEFAULT_BODY_LIMIT),
        };
        let needs_tls =
            self.follow_redirects || url.as_ref().is_some_and(|url| url.scheme() == "https");
        let tls = self.tls_settings(cx, needs_tls, &mut errors);

        match (url, method, headers, expect_status, body_limit) {
            (Some(url), Some(method), Some(headers), Some(expect_status), Some(body_limit))
                if errors.is_empty() =>
            {
                Ok(HttpProbe {
                    request: RequestTemplate {
                        url,
                        method,
                        headers,
                        body: self.body.map(Secret::new),
                    },
                    connect_to,
                    expect_status,
                    expect_body,
                    follow_redirects: self.follow_redirects,
                    body_limit,
                    client: Client::new(crate::probe::net::Resolver::shared(cx), tls),
                })
            }
            _ => Err(errors.into_vec()),
        }
    }

    /// The TLS settings, when the probe may speak TLS. A `ca_file` is checked and read even when
    /// it may not be needed, so a wrong path is found at load time rather than at the first
    /// redirect; the system roots are only loaded when needed.
    fn tls_settings(
        &self,
        cx: &BuildContext,
        needs_tls: bool,
        errors: &mut FieldErrors,
    ) -> Option<net::TlsSettings> {
        if !needs_tls && self.ca_file.is_none() {
            return None;
        }
        let verification =
            net::verification(self.tls_verify, self.ca_file.as_deref(), cx).kept(errors)?;
        if !needs_tls {
            return None;
        }
        keep(
            net::TlsSettings::new(&verification, net::ALPN_HTTP),
            "tls_verify",
            errors,
        )
    }
}

/// Keeps a valid value, or records why it is not valid under `key`.
fn keep<T>(result: Result<T, String>, key: &str, errors: &mut FieldErrors) -> Option<T> {
    result.kept_at(key, errors)
}

// === single keys ===

/// The URL itself is not quoted: an interpolated query string may carry a token.
fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|error| format!("not a valid URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be `http` or `https`, not `{}`",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "credentials in the URL are not supported: send them in `headers` (Authorization)"
                .to_owned(),
        );
    }
    Ok(url)
}

const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

fn parse_method(text: Option<&str>) -> Result<Method, String> {
    let Some(text) = text else {
        return Ok(Method::GET);
    };
    let upper = text.to_ascii_uppercase();
    METHODS
        .iter()
        .find(|method| method.as_str() == upper)
        .cloned()
        .ok_or_else(|| {
            let names: Vec<&str> = METHODS.iter().map(Method::as_str).collect();
            format!(
                "unsupported method `{text}`, expected one of {}",
                names.join(", ")
            )
        })
}

/// Headers honeyguide manages itself; setting them by hand would corrupt the framing.
const MANAGED_HEADERS: [HeaderName; 3] = [CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING];

fn parse_headers(
    headers: &BTreeMap<String, String>,
    errors: &mut FieldErrors,
) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    let mut valid = true;
    for (name, value) in headers {
        let key = format!("headers.{name}");
        let Ok(header_name) = HeaderName::from_bytes(name.as_bytes()) else {
            errors.push(FieldError::new(&key, "not a valid header name"));
            valid = false;
            continue;
        };
        if MANAGED_HEADERS.contains(&header_name) {
            errors.push(FieldError::new(&key, "is set by honeyguide, remove it"));
            valid = false;
            continue;
        }
        // The value is never quoted: it may be a credential.
        let Ok(mut header_value) = HeaderValue::from_str(value) else {
            errors.push(FieldError::new(
                &key,
                "not a valid header value (control characters or non-ASCII text)",
            ));
            valid = false;
            continue;
        };
        // Marked sensitive so that `Debug` of the map prints `Sensitive` instead of the value.
        header_value.set_sensitive(true);
        map.insert(header_name, header_value);
    }
    valid.then_some(map)
}

fn parse_connect_to(text: &str, default_port: Option<u16>) -> Result<SocketAddr, String> {
    let address = if let Ok(address) = text.parse::<SocketAddr>() {
        address
    } else {
        let bare = text
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(text);
        let ip: IpAddr = bare.parse().map_err(|_| {
            format!(
                "`{text}` is not an IP address or IP:port, like \"192.0.2.11:80\" or \
                 \"[2001:db8::1]:8080\""
            )
        })?;
        // Without a valid URL there is no default port; the URL's own error says why.
        SocketAddr::new(ip, default_port.unwrap_or(0))
    };
    if address.port() == 0 && default_port.is_some() {
        return Err(format!("`{text}` has port 0"));
    }
    Ok(address)
}

fn parse_regex(pattern: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::Regex::new(pattern).map_err(|error| {
        // The syntax error is a multi-line drawing; its last line says what is wrong.
        let text = error.to_string();
        let reason = text
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("error: "))
            .map_or_else(|| text.replace('\n', " "), str::to_owned);
        format!("not a valid regular expression: {reason}")
    })
}

fn parse_body_limit(limit: &IntOrText) -> Result<usize, String> {
    let bytes = match limit {
        IntOrText::Int(bytes) => usize::try_from(*bytes).ok(),
        IntOrText::Text(text) => parse_byte_size(text),
    }
    .ok_or_else(|| format!("`{limit}` is not a size like 65536, \"64KiB\" or \"1MiB\""))?;
    if bytes == 0 {
        return Err("must be at least 1 byte".to_owned());
    }
    if bytes > MAX_BODY_LIMIT {
        return Err("must be at most 64MiB: a probe is not a download".to_owned());
    }
    Ok(bytes)
}

fn parse_byte_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        _ => return None,
    };
    number.parse::<usize>().ok()?.checked_mul(factor)
}

// === expected statuses ===

/// A TOML value that may be an integer or a string (`expect_status` items, `body_limit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IntOrText {
    /// An integer.
    Int(i64),
    /// A string.
    Text(String),
}

impl fmt::Display for IntOrText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrText::Int(value) => write!(f, "{value}"),
            IntOrText::Text(text) => f.write_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = IntOrText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<IntOrText, E> {
                Ok(IntOrText::Int(value))
            }
            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<IntOrText, E> {
                i64::try_from(value)
                    .map(IntOrText::Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<IntOrText, E> {
                Ok(IntOrText::Text(value.to_owned()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The statuses a probe accepts, as inclusive ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StatusSet(Vec<RangeInclusive<u16>>);

impl Default for StatusSet {
    fn default() -> Self {
        Self(vec![200..=299])
    }
}

impl StatusSet {
    /// Parses `[200, "300-399", "4xx"]`, naming every bad item.
    fn parse(items: &[IntOrText]) -> Result<Self, String> {
        if items.is_empty() {
            return Err("list at least one status".to_owned());
        }
        let mut ranges = Vec::with_capacity(items.len());
        let mut bad = Vec::new();
        for item in items {
            match parse_status_item(item) {
                Some(range) => ranges.push(range),
                None => bad.push(format!("`{item}`")),
            }
        }
        if !bad.is_empty() {
            return Err(format!(
                "{} not a status code (100-599), a range like \"200-299\" or a class like \"2xx\"",
                if bad.len() == 1 {
                    format!("{} is", bad[0])
                } else {
                    format!("{} are", bad.join(", "))
                }
            ));
        }
        Ok(Self(ranges))
    }

    /// Whether `status` is accepted.
    pub(crate) fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|range| range.contains(&status))
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, range) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            if range.start() == range.end() {
                write!(f, "{}", range.start())?;
            } else {
                write!(f, "{}-{}", range.start(), range.end())?;
            }
        }
        Ok(())
    }
}

fn parse_status_item(item: &IntOrText) -> Option<RangeInclusive<u16>> {
    let valid = |code: u16| (100..=599).contains(&code);
    let range = match item {
        IntOrText::Int(code) => {
            let code = u16::try_from(*code).ok()?;
            code..=code
        }
        IntOrText::Text(text) => {
            let text = text.trim();
            if let Some(class) = text.strip_suffix("xx") {
                let hundreds: u16 = class.parse().ok()?;
                hundreds.checked_mul(100)?..=hundreds.checked_mul(100)? + 99
            } else if let Some((low, high)) = text.split_once('-') {
                low.trim().parse().ok()?..=high.trim().parse().ok()?
            } else {
                let code: u16 = text.parse().ok()?;
                code..=code
            }
        }
    };
    (valid(*range.start()) && valid(*range.end()) && range.start() <= range.end()).then_some(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(values: &[IntOrText]) -> Vec<IntOrText> {
        values.to_vec()
    }

    #[test]
    fn statuses_accept_codes_ranges_and_classes() {
        let set = StatusSet::parse(&items(&[
            IntOrText::Int(200),
            IntOrText::Text("300-302".into()),
            IntOrText::Text("4xx".into()),
        ]))
        .unwrap();
        assert!(set.contains(200) && set.contains(301) && set.contains(404));
        assert!(!set.contains(201) && !set.contains(500));
        assert_eq!(set.to_string(), "200, 300-302, 400-499");
        assert_eq!(StatusSet::default().to_string(), "200-299");
    }

    #[test]
    fn bad_statuses_are_all_named() {
        let error = StatusSet::parse(&items(&[
            IntOrText::Int(200),
            IntOrText::Int(99),
            IntOrText::Text("299-200".into()),
            IntOrText::Text("ok".into()),
        ]))
        .unwrap_err();
        assert_eq!(
            error,
            "`99`, `299-200`, `ok` are not a status code (100-599), a range like \"200-299\" or a \
             class like \"2xx\""
        );
    }

    #[test]
    fn connect_to_takes_ip_or_ip_and_port() {
        assert_eq!(
            parse_connect_to("192.0.2.11", Some(80)).unwrap(),
            "192.0.2.11:80".parse().unwrap()
        );
        assert_eq!(
            parse_connect_to("[::1]:8080", Some(80)).unwrap(),
            "[::1]:8080".parse().unwrap()
        );
        assert_eq!(
            parse_connect_to("[::1]", Some(443)).unwrap(),
            "[::1]:443".parse().unwrap()
        );
        assert!(
            parse_connect_to("node1.example:80", Some(80))
                .unwrap_err()
                .starts_with("`node1.example:80` is not an IP address")
        );
    }

    #[test]
    fn body_limits_take_bytes_or_binary_units() {
        assert_eq!(parse_body_limit(&IntOrText::Int(4096)), Ok(4096));
        assert_eq!(
            parse_body_limit(&IntOrText::Text("64KiB".into())),
            Ok(65536)
        );
        assert_eq!(
            parse_body_limit(&IntOrText::Text("1MiB".into())),
            Ok(1_048_576)
        );
        assert!(parse_body_limit(&IntOrText::Text("1GB".into())).is_err());
        assert!(parse_body_limit(&IntOrText::Int(0)).is_err());
    }

    #[test]
    fn regex_errors_are_one_line() {
        assert_eq!(
            parse_regex("(unclosed").unwrap_err(),
            "not a valid regular expression: unclosed group"
        );
    }

    #[test]
    fn methods_are_checked_and_uppercased() {
        assert_eq!(parse_method(Some("post")), Ok(Method::POST));
        assert_eq!(parse_method(None), Ok(Method::GET));
        assert!(
            parse_method(Some("GTE"))
                .unwrap_err()
                .starts_with("unsupported method `GTE`")
        );
    }
}
