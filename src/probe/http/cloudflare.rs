//! Telling an error Cloudflare generated itself from an origin error it merely passed through.
//!
//! The difference decides who gets paged: a 522 means Cloudflare could not reach the origin (look
//! at the nodes and the network), while a 502 with the origin's own body means the origin answered
//! badly (look at the application). Three kinds of evidence mark a Cloudflare-generated error,
//! strongest first (see `reference/protocols.md`, section 2):
//!
//! 1. an RFC 9457 JSON body with `"cloudflare_error": true`, which Cloudflare sends when the
//!    request asked for `Accept: application/json`;
//! 2. a status Cloudflare reserves for itself (520 to 527, 530) on a response that came through
//!    Cloudflare (`server: cloudflare` or a `cf-ray` header);
//! 3. Cloudflare's own error page (`cf-error-details`, `Error code 52x`, `error code: 1020`) on an
//!    error status that came through Cloudflare.
//!
//! A response that came through Cloudflare with none of these is the origin's own answer.
//!
//! This module owns only the reading of one response; what to do with the verdict is the probe's.

use http::HeaderMap;
use http::header::{CONTENT_TYPE, SERVER};

/// What a response says about Cloudflare.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CdnView {
    /// The `cf-ray` header, as sent.
    pub cf_ray: Option<String>,
    /// The Cloudflare data centre (IATA code) that served the request, from `cf-ray`.
    pub colo: Option<String>,
    /// The response came through Cloudflare (`server: cloudflare` or a `cf-ray` header).
    pub via_cloudflare: bool,
    /// Cloudflare generated this error itself; the code is the 52x/530 status or the 1xxx code.
    pub error_code: Option<u16>,
}

/// How much of a body is searched for Cloudflare's markers: its error pages are a few KiB, and a
/// large origin body should not cost a full scan on every run.
const SCAN_LIMIT: usize = 64 * 1024;

/// Reads the Cloudflare facts out of one response.
pub(crate) fn inspect(status: u16, headers: &HeaderMap, body: &[u8]) -> CdnView {
    let cf_ray = header_text(headers, "cf-ray");
    let colo = cf_ray.as_deref().and_then(colo_from_ray);
    let server_is_cloudflare = header_text(headers, SERVER.as_str())
        .is_some_and(|server| server.trim().eq_ignore_ascii_case("cloudflare"));
    let via_cloudflare = server_is_cloudflare || cf_ray.is_some();
    let error_code = generated_error_code(status, headers, body, via_cloudflare);
    CdnView {
        cf_ray,
        colo,
        via_cloudflare,
        error_code,
    }
}

/// The colo in a ray id `<16 hex>-<IATA>`, uppercased; `None` when the id has another shape.
pub(crate) fn colo_from_ray(ray: &str) -> Option<String> {
    let (id, colo) = ray.trim().rsplit_once('-')?;
    let id_is_hex = !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_hexdigit());
    let colo_is_iata = colo.len() == 3 && colo.bytes().all(|byte| byte.is_ascii_alphabetic());
    (id_is_hex && colo_is_iata).then(|| colo.to_ascii_uppercase())
}

/// What Cloudflare calls one of its own error codes, for messages.
pub(crate) fn error_name(code: u16) -> Option<&'static str> {
    let name = match code {
        520 => "web server returned an unknown error",
        521 => "web server is down",
        522 => "connection to the origin timed out",
        523 => "origin is unreachable",
        524 => "the origin did not answer in time",
        525 => "SSL handshake with the origin failed",
        526 => "invalid SSL certificate at the origin",
        527 => "Railgun error",
        530 => "origin error",
        1015 => "rate limited",
        1016 => "origin DNS error",
        1020 => "access denied by a firewall rule",
        1033 => "Cloudflare Tunnel error",
        _ => return None,
    };
    Some(name)
}

fn generated_error_code(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    via_cloudflare: bool,
) -> Option<u16> {
    if let Some(code) = json_error_code(status, headers, body) {
        return Some(code);
    }
    if !via_cloudflare || status < 400 {
        return None;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(SCAN_LIMIT)]);
    match status {
        520..=527 => Some(status),
        530 => Some(page_error_code(&text).unwrap_or(530)),
        _ if looks_like_error_page(&text) => Some(page_error_code(&text).unwrap_or(status)),
        _ => None,
    }
}

/// The code of an RFC 9457 body marked `"cloudflare_error": true`: its `error_code`, or the status.
fn json_error_code(status: u16, headers: &HeaderMap, body: &[u8]) -> Option<u16> {
    let declared_json = header_text(headers, CONTENT_TYPE.as_str())
        .is_some_and(|content_type| content_type.contains("json"));
    let starts_like_json = body.trim_ascii_start().starts_with(b"{");
    if !declared_json && !starts_like_json {
        return None;
    }
    let document: serde_json::Value = serde_json::from_slice(body).ok()?;
    if document.get("cloudflare_error") != Some(&serde_json::Value::Bool(true)) {
        return None;
    }
    let code = document
        .get("error_code")
        .and_then(serde_json::Value::as_u64)
        .and_then(|code| u16::try_from(code).ok())
        .filter(|code| is_cloudflare_code(*code));
    Some(code.unwrap_or(status))
}

/// Markers that only Cloudflare's error pages carry (HTML, or the plain-text variant).
fn looks_like_error_page(text: &str) -> bool {
    const MARKERS: [&str; 3] = ["cf-error-details", "cf-error-code", "cf-wrapper"];
    MARKERS.iter().any(|marker| text.contains(marker))
        || text.trim_start().starts_with("error code: ")
        || page_title(text).is_some_and(|title| title.contains("Cloudflare"))
}

fn page_title(text: &str) -> Option<&str> {
    let start = text.find("<title>")? + "<title>".len();
    let end = text[start..].find("</title>")? + start;
    Some(&text[start..end])
}

/// The error code shown on a Cloudflare error page: `<span class="cf-error-code">1016</span>`,
/// `Error code 522`, or the plain `error code: 1020`.
fn page_error_code(text: &str) -> Option<u16> {
    let lowered = text.to_ascii_lowercase();
    ["cf-error-code", "error code"]
        .iter()
        .flat_map(|marker| lowered.match_indices(marker))
        .find_map(|(at, marker)| code_after(&lowered[at + marker.len()..]))
}

/// A Cloudflare code at the start of `rest`, after any `"`, `:`, `>`, whitespace and HTML tags.
fn code_after(rest: &str) -> Option<u16> {
    let mut rest = rest;
    loop {
        let trimmed = rest.trim_start_matches(|c: char| c.is_whitespace() || "\":>".contains(c));
        match trimmed.strip_prefix('<') {
            Some(tag) => rest = &tag[tag.find('>')? + 1..],
            None => {
                rest = trimmed;
                break;
            }
        }
    }
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .ok()
        .filter(|code| digits.len() <= 4 && is_cloudflare_code(*code))
}

/// 5xx statuses and Cloudflare's own 1xxx error numbers.
fn is_cloudflare_code(code: u16) -> bool {
    (500..=599).contains(&code) || (1000..=1999).contains(&code)
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    const RAY: (&str, &str) = ("cf-ray", "8f2c7d1e9a0b1c2d-FRA");
    const SERVER_CF: (&str, &str) = ("server", "cloudflare");

    #[test]
    fn the_colo_is_the_iata_code_after_the_ray_id() {
        assert_eq!(
            colo_from_ray("8f2c7d1e9a0b1c2d-FRA").as_deref(),
            Some("FRA")
        );
        assert_eq!(
            colo_from_ray("230b030023ae2822-sjc").as_deref(),
            Some("SJC")
        );
        assert_eq!(colo_from_ray("8f2c7d1e9a0b1c2d"), None);
        assert_eq!(colo_from_ray("not-hex-FRA"), None);
        assert_eq!(colo_from_ray("8f2c7d1e9a0b1c2d-FRANK"), None);
    }

    #[test]
    fn a_52x_through_cloudflare_is_generated_by_cloudflare() {
        let view = inspect(522, &headers(&[SERVER_CF, RAY]), b"<html>whatever</html>");
        assert_eq!(view.error_code, Some(522));
        assert_eq!(view.colo.as_deref(), Some("FRA"));
        assert!(view.via_cloudflare);
    }

    #[test]
    fn a_52x_that_did_not_come_through_cloudflare_is_the_origins() {
        let view = inspect(522, &headers(&[("server", "nginx")]), b"odd origin");
        assert_eq!(view.error_code, None);
        assert!(!view.via_cloudflare);
    }

    #[test]
    fn an_origin_502_passed_through_is_not_a_cdn_error() {
        let view = inspect(502, &headers(&[SERVER_CF, RAY]), b"Bad Gateway");
        assert_eq!(view.error_code, None);
        assert!(view.via_cloudflare);
        assert_eq!(view.cf_ray.as_deref(), Some("8f2c7d1e9a0b1c2d-FRA"));
    }

    #[test]
    fn the_json_error_format_is_recognised_with_its_error_code() {
        let body = br#"{"type":"https://developers.cloudflare.com/x","title":"Error 1016: Origin DNS error",
            "status":530,"error_code":1016,"error_category":"origin","cloudflare_error":true}"#;
        let view = inspect(
            530,
            &headers(&[("content-type", "application/problem+json")]),
            body,
        );
        assert_eq!(view.error_code, Some(1016));
        let origin_json = inspect(502, &headers(&[RAY]), br#"{"error":"upstream"}"#);
        assert_eq!(origin_json.error_code, None);
    }

    #[test]
    fn a_530_carries_its_1xxx_code_in_the_page() {
        let page = r#"<title>Origin DNS error | api.example.com | Cloudflare</title>
            <h1><span class="cf-error-type">Error</span> <span class="cf-error-code">1016</span></h1>"#;
        let view = inspect(530, &headers(&[SERVER_CF, RAY]), page.as_bytes());
        assert_eq!(view.error_code, Some(1016));
        let bare = inspect(530, &headers(&[SERVER_CF]), b"");
        assert_eq!(bare.error_code, Some(530));
    }

    #[test]
    fn cloudflare_pages_on_other_statuses_are_recognised() {
        let waf = inspect(403, &headers(&[SERVER_CF, RAY]), b"error code: 1020");
        assert_eq!(waf.error_code, Some(1020));
        let page =
            r#"<div id="cf-error-details"><span class="inline-block">Error code 502</span></div>"#;
        let generated_502 = inspect(502, &headers(&[SERVER_CF, RAY]), page.as_bytes());
        assert_eq!(generated_502.error_code, Some(502));
    }

    #[test]
    fn success_responses_are_never_cdn_errors() {
        let view = inspect(200, &headers(&[SERVER_CF, RAY]), b"error code: 1020");
        assert_eq!(view.error_code, None);
    }

    #[test]
    fn codes_are_read_across_tags_and_punctuation() {
        assert_eq!(code_after(r#"">1016</span>"#), Some(1016));
        assert_eq!(code_after(": <b>522</b>"), Some(522));
        assert_eq!(code_after(" 12345"), None);
        assert_eq!(code_after(" 200"), None);
    }
}
