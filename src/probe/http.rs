//! The `http` probe kind: one request to a URL, through the CDN edge or pinned to one origin node.
//!
//! A run sends one request on a fresh connection ([`client::send`]), optionally follows redirects
//! (each on its own fresh connection), and judges the final response: status against
//! `expect_status` (`http_status`), body against `expect_body` (`assertion`). Whatever happens,
//! the outcome carries the observations rules read (status, protocol, `server`, Cloudflare's ray,
//! colo and whether Cloudflare generated the error itself, redirects; the addresses and the
//! certificate's expiry are the connection's, recorded by [`crate::probe::net`]); see
//! `docs/probes/http.md` for the full list.
//!
//! Phases are `resolve`, `connect`, `tls`, `first_byte`, `transfer`. In metrics, `first_byte` is
//! written as blackbox_exporter's `processing`, so dashboards built for blackbox work unchanged.
//!
//! The parts: [`spec`] (keys and validation), `client` (the HTTP exchange over a connection
//! [`crate::probe::net`] opens), `cloudflare` (who generated an error).

pub(crate) mod client;
mod cloudflare;
mod spec;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, LOCATION, SERVER};
use http::{HeaderMap, Method, StatusCode, Version};
use url::Url;

pub use spec::Spec;

use self::client::{Client, Request, Response};
use self::cloudflare::CdnView;
use self::spec::StatusSet;
use crate::exposition::MetricsWriter;
use crate::probe::schema::{Field, Gauge, Unit};
use crate::probe::{ErrorClass, Observations, Outcome, ProbeContext, ProbeResult, Value};
use crate::spec::Secret;

/// Redirects followed before giving up, as curl and browsers do.
const MAX_REDIRECTS: usize = 10;

/// A built `http` probe.
pub struct HttpProbe {
    request: RequestTemplate,
    connect_to: Option<SocketAddr>,
    expect_status: StatusSet,
    expect_body: Option<regex::bytes::Regex>,
    follow_redirects: bool,
    body_limit: usize,
    client: Client,
}

/// The configured request, sent at the start of every run.
struct RequestTemplate {
    url: Url,
    method: Method,
    /// Values are marked sensitive: they may be credentials.
    headers: HeaderMap,
    body: Option<Secret>,
}

impl fmt::Debug for HttpProbe {
    /// Shows what is probed and how, never header values, the body or the URL's query.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProbe")
            .field("target", &self.target())
            .field("method", &self.request.method)
            .field("headers", &self.request.headers.keys().collect::<Vec<_>>())
            .field("connect_to", &self.connect_to)
            .field("expect_status", &self.expect_status.to_string())
            .field(
                "expect_body",
                &self.expect_body.as_ref().map(|re| re.as_str()),
            )
            .field("follow_redirects", &self.follow_redirects)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

// === impl HttpProbe ===

impl HttpProbe {
    /// Makes one attempt: one request, plus one per redirect followed.
    pub async fn run(&self, ctx: &ProbeContext) -> Outcome {
        let mut request = self.first_request();
        let mut redirects = 0;
        loop {
            let connect_to = self.connect_to_for(&request.url);
            let sent = client::send(
                ctx,
                &self.client,
                request.clone_for_send(),
                connect_to,
                self.body_limit,
            )
            .await;
            let observations = hop_observations(redirects);
            let response = match sent {
                Ok(response) => response,
                Err(failure) => return failure.with_all(observations),
            };
            match self.redirect_target(&request, &response) {
                Some(_) if redirects == MAX_REDIRECTS => {
                    return too_many_redirects(self.judge(&response, observations));
                }
                Some(next) => {
                    redirects += 1;
                    request = next;
                }
                None => return self.judge(&response, observations),
            }
        }
    }

    /// What is probed, for humans: the URL without its query (which may hold a token), and the
    /// pinned address when there is one.
    pub fn target(&self) -> String {
        let url = &self.request.url;
        let mut shown = format!("{}://{}", url.scheme(), client::url_authority(url));
        shown.push_str(url.path());
        if url.query().is_some() {
            shown.push_str("?…");
        }
        if let Some(address) = self.connect_to {
            shown.push_str(&format!(" via {address}"));
        }
        shown
    }

    fn first_request(&self) -> PendingRequest {
        let template = &self.request;
        PendingRequest {
            method: template.method.clone(),
            url: template.url.clone(),
            headers: template.headers.clone(),
            body: template
                .body
                .as_ref()
                .map(|body| Bytes::copy_from_slice(body.expose().as_bytes()))
                .unwrap_or_default(),
        }
    }

    /// `connect_to` pins the configured host only: a redirect elsewhere goes where DNS says.
    fn connect_to_for(&self, url: &Url) -> Option<SocketAddr> {
        let configured = &self.request.url;
        let same_place = url.host() == configured.host()
            && url.port_or_known_default() == configured.port_or_known_default();
        self.connect_to.filter(|_| same_place)
    }

    /// The next request, when the response is a redirect to follow.
    fn redirect_target(
        &self,
        request: &PendingRequest,
        response: &Response,
    ) -> Option<PendingRequest> {
        if !self.follow_redirects || !response.status.is_redirection() {
            return None;
        }
        let location = response.headers.get(LOCATION)?.to_str().ok()?;
        let url = request.url.join(location).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        Some(request.redirected(response.status, url))
    }

    /// Judges the final response: status first, then body.
    fn judge(&self, response: &Response, mut observations: Observations) -> Outcome {
        let status = response.status.as_u16();
        let cdn = cloudflare::inspect(status, &response.headers, &response.body);
        let body_matched = self
            .expect_body
            .as_ref()
            .map(|pattern| pattern.is_match(&response.body));
        observations.extend(response_observations(response, &cdn, body_matched));

        let outcome = if !self.expect_status.contains(status) {
            Outcome::failure(
                ErrorClass::HttpStatus,
                format!(
                    "got {status}, expected {}{}",
                    self.expect_status,
                    cdn_context(&cdn)
                ),
            )
        } else if body_matched == Some(false) {
            Outcome::failure(
                ErrorClass::Assertion,
                format!(
                    "body does not match `{}` ({} bytes read{})",
                    self.expect_body.as_ref().map_or("", |re| re.as_str()),
                    response.body.len(),
                    if response.truncated {
                        ", cut at body_limit"
                    } else {
                        ""
                    }
                ),
            )
        } else {
            Outcome::success(success_message(response, &observations))
        };
        outcome.with_all(observations)
    }
}

// === requests and redirects ===

/// A request not yet sent; redirects derive the next one from it.
struct PendingRequest {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Bytes,
}

impl PendingRequest {
    fn clone_for_send(&self) -> Request {
        Request {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }

    /// The request a redirect asks for, the way browsers and curl do it: 303 (and 301/302 after
    /// a POST) become a GET without body; 307/308 repeat the request. The configured headers go
    /// only to the same origin, since they may carry credentials.
    fn redirected(&self, status: StatusCode, url: Url) -> PendingRequest {
        let becomes_get = status == StatusCode::SEE_OTHER
            || (matches!(status.as_u16(), 301 | 302) && self.method == Method::POST);
        let same_origin = url.origin() == self.url.origin();
        PendingRequest {
            method: if becomes_get {
                Method::GET
            } else {
                self.method.clone()
            },
            headers: if same_origin {
                self.headers.clone()
            } else {
                HeaderMap::new()
            },
            body: if becomes_get {
                Bytes::new()
            } else {
                self.body.clone()
            },
            url,
        }
    }
}

/// Turns the verdict on the last response into "too many redirects", keeping what was seen.
fn too_many_redirects(last: Outcome) -> Outcome {
    let status = last
        .observations
        .get("status")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    Outcome::failure(
        ErrorClass::HttpStatus,
        format!("gave up after {MAX_REDIRECTS} redirects (the last answer was another {status})"),
    )
    .with_all(last.observations)
}

// === observations and messages ===

/// What a run observes besides the connection's facts (`resolved_ips`, `remote_addr`,
/// `tls_cert_expiry`, `tls_version`, recorded by [`crate::probe::net`] for the last connection);
/// `null` when not applicable or not reached.
pub const OBSERVATIONS: &[Field] = &[
    Field::int("status", "status of the final response", 200).gauge(&STATUS_CODE),
    Field::text("http_version", "`HTTP/1.1`, `HTTP/2`, `HTTP/1.0`", "HTTP/2"),
    Field::text("server", "the `Server` header", "cloudflare"),
    Field::text("cf_ray", "the `cf-ray` header", "8f1c2d3e4f5a6b7c-FRA"),
    Field::text(
        "cdn_colo",
        "Cloudflare data centre from `cf-ray` (`8f2c7d1e9a0b1c2d-FRA` gives `FRA`)",
        "FRA",
    ),
    Field::flag(
        "cdn_error",
        "`true` when Cloudflare generated the response itself (see below); `false` for any \
         other response",
        false,
    ),
    Field::int(
        "cdn_error_code",
        "Cloudflare's code when `cdn_error`: 520 to 527, 530, or the 1xxx code (1016, 1020, \
         1033, ...)",
        522,
    )
    .failure_only(),
    Field::text("cf_cache_status", "the `cf-cache-status` header", "DYNAMIC"),
    Field::text(
        "location",
        "the `Location` header of the final response (a redirect not followed)",
        "https://example.test/login",
    )
    .failure_only(),
    Field::int("content_length", "the `Content-Length` header", 512).unit(Unit::Bytes),
    Field::int("body_bytes", "bytes of body read", 512).unit(Unit::Bytes),
    Field::flag(
        "body_truncated",
        "the body was longer than `body_limit`",
        false,
    ),
    Field::flag(
        "body_matched",
        "`expect_body` matched (`null` without `expect_body`)",
        true,
    ),
    Field::int("redirects", "redirects followed", 0).gauge(&Gauge {
        name: "probe_http_redirects",
        help: "Redirects followed in the last run.",
        null_as: None,
    }),
];

/// The status of a probe's main HTTP response, as blackbox_exporter names it: written for the
/// `http`, `registry` and `s3` kinds.
pub const STATUS_CODE: Gauge = Gauge {
    name: "probe_http_status_code",
    help: "Status code of the probe's main HTTP response (registry: GET /v2/, s3: the signed \
           HEAD, prometheus: the query), 0 when none arrived.",
    null_as: Some(0.0),
};

/// The observations a hop starts with: how many redirects led to it.
fn hop_observations(redirects: usize) -> Observations {
    Observations::from([("redirects".to_owned(), redirects.into())])
}

fn response_observations(
    response: &Response,
    cdn: &CdnView,
    body_matched: Option<bool>,
) -> Observations {
    let header = |name: &str| {
        response
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let content_length = header(CONTENT_LENGTH.as_str()).and_then(|text| text.parse::<u64>().ok());
    [
        ("status", Value::from(response.status.as_u16())),
        ("http_version", version_name(response.version).into()),
        ("server", header(SERVER.as_str()).into()),
        ("cf_ray", cdn.cf_ray.clone().into()),
        ("cdn_colo", cdn.colo.clone().into()),
        ("cdn_error", cdn.error_code.is_some().into()),
        ("cdn_error_code", cdn.error_code.into()),
        ("cf_cache_status", header("cf-cache-status").into()),
        ("location", header(LOCATION.as_str()).into()),
        ("content_length", content_length.into()),
        ("body_bytes", response.body.len().into()),
        ("body_truncated", response.truncated.into()),
        ("body_matched", body_matched.into()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "unknown",
    }
}

/// Who produced an error status, when Cloudflare was involved: the difference between "the
/// edge cannot reach the origin" and "the origin is answering badly".
fn cdn_context(cdn: &CdnView) -> String {
    let at = cdn
        .colo
        .as_deref()
        .map(|colo| format!(" at {colo}"))
        .unwrap_or_default();
    match cdn.error_code {
        Some(code) => {
            let name = cloudflare::error_name(code)
                .map(|name| format!(": {name}"))
                .unwrap_or_default();
            format!("; Cloudflare{at} generated it (error {code}{name})")
        }
        None if cdn.via_cloudflare => format!("; from the origin, passed through Cloudflare{at}"),
        None => String::new(),
    }
}

fn success_message(response: &Response, observations: &Observations) -> String {
    let mut message = format!(
        "got {} over {}",
        response.status.as_u16(),
        version_name(response.version)
    );
    if let Some(address) = response.remote_addr {
        message.push_str(&format!(" from {address}"));
    }
    match observations.get("redirects").and_then(Value::as_i64) {
        Some(1) => message.push_str(" after 1 redirect"),
        Some(count) if count > 1 => message.push_str(&format!(" after {count} redirects")),
        _ => {}
    }
    message
}

// === metrics ===

/// Our phase names and the `phase` label blackbox_exporter uses for them.
const METRIC_PHASES: [(&str, &str); 5] = [
    ("resolve", "resolve"),
    ("connect", "connect"),
    ("tls", "tls"),
    ("first_byte", "processing"),
    ("transfer", "transfer"),
];

/// Writes the `http`-specific series, named as blackbox_exporter names them where it has a name.
pub fn write_metrics(probes: &[(&str, &ProbeResult)], out: &mut MetricsWriter) {
    for (name, result) in probes {
        for (phase, label) in METRIC_PHASES {
            let spent: Option<Duration> = result
                .phases
                .iter()
                .filter(|(ran, _)| *ran == phase)
                .map(|(_, duration)| *duration)
                .reduce(|total, duration| total + duration);
            if let Some(spent) = spent {
                out.gauge(
                    "probe_http_duration_seconds",
                    "Seconds spent in each phase of the last run, summed over redirects \
                     (first_byte is written as processing).",
                    &[("probe", name), ("phase", label)],
                    spent.as_secs_f64(),
                );
            }
        }
    }
    write_observed(
        probes,
        out,
        "probe_http_version",
        "HTTP version of the last response.",
        |result| {
            result
                .observation("http_version")
                .and_then(Value::as_str)
                .and_then(version_number)
        },
    );
    write_observed(
        probes,
        out,
        "probe_http_content_length",
        "Content-Length of the last response, -1 when it had none.",
        |result| {
            observed_i64(result, "status")?;
            Some(observed_i64(result, "content_length").map_or(-1.0, |length| length as f64))
        },
    );
    write_observed(
        probes,
        out,
        "honeyguide_http_cdn_error",
        "1 when Cloudflare generated the last error response itself, 0 for any other response.",
        |result| {
            result
                .observation("cdn_error")
                .and_then(Value::as_bool)
                .map(|generated| if generated { 1.0 } else { 0.0 })
        },
    );
    write_observed(
        probes,
        out,
        "honeyguide_http_cdn_error_code",
        "Cloudflare's error code (52x, 530 or 1xxx) when it generated the last response.",
        |result| observed_i64(result, "cdn_error_code").map(|code| code as f64),
    );
}

/// Writes one gauge family: one sample per probe for which `value` has something.
fn write_observed(
    probes: &[(&str, &ProbeResult)],
    out: &mut MetricsWriter,
    family: &'static str,
    help: &'static str,
    value: impl Fn(&ProbeResult) -> Option<f64>,
) {
    for (name, result) in probes {
        if let Some(value) = value(result) {
            out.gauge(family, help, &[("probe", name)], value);
        }
    }
}

fn observed_i64(result: &ProbeResult, key: &str) -> Option<i64> {
    result.observation(key).and_then(Value::as_i64)
}

/// `HTTP/1.1` as blackbox_exporter writes it: 1.1.
fn version_number(name: &str) -> Option<f64> {
    name.strip_prefix("HTTP/")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(method: Method, url: &str) -> PendingRequest {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Token t".parse().unwrap());
        PendingRequest {
            method,
            url: Url::parse(url).unwrap(),
            headers,
            body: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn see_other_and_post_redirects_become_a_get_without_body() {
        let post = pending(Method::POST, "https://api.test/login");
        for status in [
            StatusCode::SEE_OTHER,
            StatusCode::FOUND,
            StatusCode::MOVED_PERMANENTLY,
        ] {
            let next = post.redirected(status, Url::parse("https://api.test/home").unwrap());
            assert_eq!(next.method, Method::GET);
            assert!(next.body.is_empty());
        }
        let kept = post.redirected(
            StatusCode::TEMPORARY_REDIRECT,
            Url::parse("https://api.test/v2/login").unwrap(),
        );
        assert_eq!(kept.method, Method::POST);
        assert_eq!(kept.body, Bytes::from_static(b"{}"));
    }

    #[test]
    fn configured_headers_go_only_to_the_same_origin() {
        let request = pending(Method::GET, "https://api.test/a");
        let same = request.redirected(StatusCode::FOUND, Url::parse("https://api.test/b").unwrap());
        assert!(same.headers.contains_key("authorization"));
        for elsewhere in [
            "https://cdn.test/b",
            "http://api.test/b",
            "https://api.test:8443/b",
        ] {
            let next = request.redirected(StatusCode::FOUND, Url::parse(elsewhere).unwrap());
            assert!(next.headers.is_empty(), "{elsewhere}");
        }
    }

    #[test]
    fn phase_durations_are_summed_over_redirects_under_blackbox_names() {
        let result = ProbeResult {
            ok: true,
            error: None,
            message: String::new(),
            observations: Observations::new(),
            duration: Duration::from_secs(4),
            phases: vec![
                ("connect", Duration::from_millis(1000)),
                ("first_byte", Duration::from_millis(2000)),
                ("connect", Duration::from_millis(500)),
            ],
        };
        let mut out = MetricsWriter::new();
        crate::probe::write_kind_metrics(crate::probe::Kind::Http, &[("web", &result)], &mut out);
        let text = out.finish();
        assert!(
            text.contains("probe_http_duration_seconds{probe=\"web\",phase=\"connect\"} 1.5\n")
        );
        assert!(
            text.contains("probe_http_duration_seconds{probe=\"web\",phase=\"processing\"} 2\n")
        );
        assert!(text.contains("probe_http_status_code{probe=\"web\"} 0\n"));
        assert!(!text.contains("phase=\"first_byte\""));
    }

    #[test]
    fn cdn_context_says_who_made_the_error() {
        let generated = CdnView {
            cf_ray: Some("8f2c7d1e9a0b1c2d-FRA".into()),
            colo: Some("FRA".into()),
            via_cloudflare: true,
            error_code: Some(1016),
        };
        assert_eq!(
            cdn_context(&generated),
            "; Cloudflare at FRA generated it (error 1016: origin DNS error)"
        );
        let direct = CdnView::default();
        assert_eq!(cdn_context(&direct), "");
    }
}
