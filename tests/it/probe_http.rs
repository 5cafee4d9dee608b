//! The `http` probe against real in-process HTTP(S) servers on loopback: what a user reads in
//! the result (class, message, observations) and in `/metrics` for each way a target can fail.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use honeyguide::probe::{ErrorClass, Kind, ProbeResult, Value};

use crate::support::certs::TestCa;
use crate::support::http_server::{HttpServer, RawBehaviour, RawServer, Route};
use crate::support::probes::{
    assert_line, assert_no_series, assert_series, errors, kind_metrics_of, load, load_shipped,
    load_with_env, observation, parse, phase_names, run_loaded,
};
use crate::support::{self, TempDir};

// === helpers ===

const TIMEOUT: Duration = Duration::from_secs(5);

/// A config with one probe `web` of kind `http` and the given keys.
fn probe_toml(keys: &str) -> String {
    format!("[[probe]]\nname = \"web\"\nkind = \"http\"\n{keys}\n")
}

/// Builds the probe `web` from `keys` and runs it once with `timeout`.
async fn run_with(keys: &str, timeout: Duration) -> ProbeResult {
    run_loaded(&load("", &probe_toml(keys)), 0, timeout).await
}

async fn run(keys: &str) -> ProbeResult {
    run_with(keys, TIMEOUT).await
}

fn metrics(result: &ProbeResult) -> String {
    kind_metrics_of(Kind::Http, &[("web", result)])
}

/// TLS material for `api.test`: a CA file in `dir` and leaves to serve.
struct Tls {
    ca: TestCa,
    ca_file: String,
}

impl Tls {
    fn new(dir: &TempDir) -> Self {
        let ca = TestCa::new();
        let ca_file = ca.write_pem(dir.path()).display().to_string();
        Self { ca, ca_file }
    }
}

const HTTP1_ONLY: &[&[u8]] = &[b"http/1.1"];
const H2_AND_HTTP1: &[&[u8]] = &[b"h2", b"http/1.1"];
/// 2021-01-01T00:00:00Z, when `TestCa::expired_leaf` certificates expire.
const EXPIRED_AT: i64 = 1_609_459_200;

// === healthy and unhealthy answers ===

/// A 200 is ok, says who answered over what, and exposes blackbox's series: status, version,
/// content length, redirects, and one duration per phase that ran (no resolve or tls here).
#[tokio::test]
async fn a_healthy_target_is_ok() {
    support::init();
    let server = HttpServer::builder()
        .route("/health", Route::ok("ok"))
        .start()
        .await;
    let result = run(&format!("url = \"{}\"", server.url("/health"))).await;

    assert!(result.ok, "{}", result.message);
    assert_eq!(result.error, None);
    assert_eq!(
        result.message,
        format!("got 200 over HTTP/1.1 from {}", server.addr())
    );
    assert_eq!(observation(&result, &["status"]), &Value::Int(200));
    assert_eq!(
        observation(&result, &["http_version"]),
        &Value::from("HTTP/1.1")
    );
    assert_eq!(
        observation(&result, &["remote_addr"]),
        &Value::from(server.addr().to_string())
    );
    assert_eq!(observation(&result, &["resolved_ips"]), &Value::Null);
    assert_eq!(observation(&result, &["tls_cert_expiry"]), &Value::Null);
    assert_eq!(observation(&result, &["cdn_error"]), &Value::Bool(false));
    assert_eq!(observation(&result, &["redirects"]), &Value::Int(0));
    assert_eq!(observation(&result, &["body_matched"]), &Value::Null);
    assert_eq!(
        phase_names(&result),
        ["connect", "first_byte", "transfer"],
        "an IP literal is not resolved"
    );

    let metrics = metrics(&result);
    assert_line(&metrics, "probe_http_status_code{probe=\"web\"} 200");
    assert_line(&metrics, "probe_http_version{probe=\"web\"} 1.1");
    assert_line(&metrics, "probe_http_content_length{probe=\"web\"} 2");
    assert_line(&metrics, "probe_http_redirects{probe=\"web\"} 0");
    assert_line(&metrics, "honeyguide_http_cdn_error{probe=\"web\"} 0");
    for phase in ["connect", "processing", "transfer"] {
        assert_series(
            &metrics,
            &format!("probe_http_duration_seconds{{probe=\"web\",phase=\"{phase}\"}}"),
        );
    }
    assert!(!metrics.contains("phase=\"resolve\"") && !metrics.contains("phase=\"tls\""));
    assert_no_series(&metrics, "probe_ssl_earliest_cert_expiry");
    assert_no_series(&metrics, "honeyguide_http_cdn_error_code");
}

/// A 500 is `http_status`, with the status a rule reads and the metric a dashboard shows.
#[tokio::test]
async fn a_500_is_an_http_status_error() {
    support::init();
    let server = HttpServer::builder()
        .route("/", Route::new(500, "boom"))
        .start()
        .await;
    let result = run(&format!("url = \"{}\"", server.url("/"))).await;

    assert!(!result.ok);
    assert_eq!(result.error, Some(ErrorClass::HttpStatus));
    assert_eq!(result.message, "got 500, expected 200-299");
    assert_eq!(observation(&result, &["status"]), &Value::Int(500));
    assert_line(
        &metrics(&result),
        "probe_http_status_code{probe=\"web\"} 500",
    );
}

/// `expect_status` accepts codes, ranges and classes, and the message lists them as configured.
#[tokio::test]
async fn expect_status_decides_what_is_healthy() {
    support::init();
    let server = HttpServer::builder()
        .route("/gone", Route::new(410, "gone"))
        .start()
        .await;
    let url = server.url("/gone");
    let accepted = run(&format!("url = \"{url}\"\nexpect_status = [200, \"4xx\"]")).await;
    assert!(accepted.ok, "{}", accepted.message);
    let refused = run(&format!(
        "url = \"{url}\"\nexpect_status = [200, \"300-399\"]"
    ))
    .await;
    assert_eq!(refused.error, Some(ErrorClass::HttpStatus));
    assert_eq!(refused.message, "got 410, expected 200, 300-399");
}

/// Nothing listening is `connect`, with the address in the message and status 0 in metrics.
#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    support::init();
    let port = support::free_port();
    let result = run(&format!("url = \"http://127.0.0.1:{port}/\"")).await;

    assert_eq!(result.error, Some(ErrorClass::Connect));
    assert_eq!(
        result.message,
        format!("cannot connect to 127.0.0.1:{port}: connection refused")
    );
    assert_eq!(observation(&result, &["status"]), &Value::Null);
    assert_eq!(observation(&result, &["remote_addr"]), &Value::Null);
    let metrics = metrics(&result);
    assert_line(&metrics, "probe_http_status_code{probe=\"web\"} 0");
    assert_no_series(&metrics, "honeyguide_http_cdn_error");
}

/// A server that accepts but never answers is a `timeout` that names the phase it hung in.
#[tokio::test]
async fn a_target_that_never_answers_times_out_waiting_for_the_first_byte() {
    support::init();
    let server = HttpServer::builder()
        .route("/", Route::ok("late").delay(Duration::from_secs(30)))
        .start()
        .await;
    let result = run_with(
        &format!("url = \"{}\"", server.url("/")),
        Duration::from_millis(300),
    )
    .await;

    assert_eq!(result.error, Some(ErrorClass::Timeout));
    assert_eq!(result.message, "timed out after 300ms during first_byte");
    assert_eq!(
        observation(&result, &["timeout_phase"]),
        &Value::from("first_byte")
    );
    assert_eq!(phase_names(&result), ["connect", "first_byte"]);
    // What the run learned before it hung is still reported.
    assert_eq!(
        observation(&result, &["remote_addr"]),
        &Value::from(server.addr().to_string())
    );
}

/// A body that does not match `expect_body` is an `assertion`, and says what was expected.
#[tokio::test]
async fn a_body_that_does_not_match_is_an_assertion_error() {
    support::init();
    let server = HttpServer::builder()
        .route("/health", Route::ok(r#"{"status":"degraded"}"#))
        .start()
        .await;
    let url = server.url("/health");
    let failed = run(&format!(
        "url = \"{url}\"\nexpect_body = '\"status\":\\s*\"ok\"'"
    ))
    .await;

    assert_eq!(failed.error, Some(ErrorClass::Assertion));
    assert_eq!(
        failed.message,
        r#"body does not match `"status":\s*"ok"` (21 bytes read)"#
    );
    assert_eq!(observation(&failed, &["body_matched"]), &Value::Bool(false));
    assert_eq!(observation(&failed, &["status"]), &Value::Int(200));

    let matched = run(&format!("url = \"{url}\"\nexpect_body = 'degraded'")).await;
    assert!(matched.ok, "{}", matched.message);
    assert_eq!(observation(&matched, &["body_matched"]), &Value::Bool(true));
}

/// The configured method, headers and body are sent as configured, and `User-Agent` and
/// `Accept` default to honeyguide's and curl's.
#[tokio::test]
async fn method_headers_and_body_are_sent() {
    support::init();
    let server = HttpServer::builder()
        .route("/echo", Route::new(201, "created"))
        .start()
        .await;
    let result = run(&format!(
        "url = \"{}\"\nmethod = \"post\"\nbody = '{{\"ping\":1}}'\n\
         headers = {{ Content-Type = \"application/json\" }}",
        server.url("/echo?deep=1")
    ))
    .await;

    assert!(result.ok, "{}", result.message);
    let seen = &server.requests()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/echo?deep=1");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_eq!(seen.headers["content-length"], "10");
    assert_eq!(seen.headers["accept"], "*/*");
    assert!(
        seen.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("honeyguide/")
    );
}

/// Only `body_limit` bytes are read; the cut is observed and the regex sees only those bytes.
#[tokio::test]
async fn the_body_is_read_up_to_the_limit() {
    support::init();
    let server = HttpServer::builder()
        .route("/big", Route::ok("a".repeat(5000) + "needle"))
        .start()
        .await;
    let result = run(&format!(
        "url = \"{}\"\nbody_limit = 4096\nexpect_body = 'needle'",
        server.url("/big")
    ))
    .await;

    assert_eq!(result.error, Some(ErrorClass::Assertion));
    assert_eq!(
        result.message,
        "body does not match `needle` (4096 bytes read, cut at body_limit)"
    );
    assert_eq!(
        observation(&result, &["body_truncated"]),
        &Value::Bool(true)
    );
    assert_eq!(observation(&result, &["content_length"]), &Value::Int(5006));
}

// === redirects ===

/// Without `follow_redirects` a redirect is the answer (and fails the default 2xx); with it, the
/// probe follows and counts, and a loop ends after ten.
#[tokio::test]
async fn redirects_are_reported_or_followed() {
    support::init();
    let server = HttpServer::builder()
        .route("/old", Route::redirect(302, "/new"))
        .route("/new", Route::ok("here"))
        .route("/loop", Route::redirect(302, "/loop"))
        .start()
        .await;

    let reported = run(&format!("url = \"{}\"", server.url("/old"))).await;
    assert_eq!(reported.error, Some(ErrorClass::HttpStatus));
    assert_eq!(reported.message, "got 302, expected 200-299");
    assert_eq!(observation(&reported, &["location"]), &Value::from("/new"));
    assert_eq!(observation(&reported, &["redirects"]), &Value::Int(0));

    let followed = run(&format!(
        "url = \"{}\"\nfollow_redirects = true",
        server.url("/old")
    ))
    .await;
    assert!(followed.ok, "{}", followed.message);
    assert_eq!(
        followed.message,
        format!(
            "got 200 over HTTP/1.1 from {} after 1 redirect",
            server.addr()
        )
    );
    assert_eq!(observation(&followed, &["redirects"]), &Value::Int(1));
    assert_line(&metrics(&followed), "probe_http_redirects{probe=\"web\"} 1");

    let looping = run(&format!(
        "url = \"{}\"\nfollow_redirects = true",
        server.url("/loop")
    ))
    .await;
    assert_eq!(looping.error, Some(ErrorClass::HttpStatus));
    assert_eq!(
        looping.message,
        "gave up after 10 redirects (the last answer was another 302)"
    );
    assert_eq!(observation(&looping, &["redirects"]), &Value::Int(10));
    let requests = server.requests();
    assert_eq!(
        requests.iter().filter(|seen| seen.path == "/loop").count(),
        11,
        "the first request and ten redirects"
    );
}

// === not HTTP ===

/// A server answering something that is not HTTP is a `protocol` error.
#[tokio::test]
async fn a_server_speaking_garbage_is_a_protocol_error() {
    support::init();
    let server = RawServer::start(RawBehaviour::Reply(b"SSH-2.0-OpenSSH_9.2p1\r\n".to_vec())).await;
    let result = run(&format!("url = \"{}\"", server.url("/"))).await;

    assert_eq!(result.error, Some(ErrorClass::Protocol));
    assert_eq!(
        result.message,
        "the server did not answer with valid HTTP (invalid HTTP version parsed)"
    );
}

/// A server that reads the request and hangs up is a `protocol` error saying so.
#[tokio::test]
async fn a_server_closing_early_is_a_protocol_error() {
    support::init();
    let server = RawServer::start(RawBehaviour::HangUp).await;
    let result = run(&format!("url = \"{}\"", server.url("/"))).await;

    assert_eq!(result.error, Some(ErrorClass::Protocol));
    assert_eq!(
        result.message,
        "the server closed the connection while waiting for the response"
    );
}

// === DNS ===

/// A name that does not exist is a `dns` error naming it (`.invalid` never resolves, RFC 6761).
#[tokio::test]
async fn an_unknown_name_is_a_dns_error() {
    support::init();
    let result = run("url = \"http://honeyguide-test.invalid/\"").await;

    assert_eq!(result.error, Some(ErrorClass::Dns));
    assert_eq!(
        result.message,
        "honeyguide-test.invalid does not exist (NXDOMAIN)"
    );
    assert_eq!(phase_names(&result), ["resolve"]);
}

/// A name is resolved (a `resolve` phase, the addresses observed) and the first IPv4 used.
#[tokio::test]
async fn a_name_is_resolved_and_its_addresses_observed() {
    support::init();
    let server = HttpServer::builder()
        .route("/", Route::ok("ok"))
        .start()
        .await;
    let result = run(&format!("url = \"http://localhost:{}/\"", server.port())).await;

    assert!(result.ok, "{}", result.message);
    let Value::List(addresses) = observation(&result, &["resolved_ips"]) else {
        panic!("resolved_ips is not a list: {:?}", result.observations);
    };
    assert!(
        addresses.contains(&Value::from("127.0.0.1")),
        "{addresses:?}"
    );
    assert_eq!(
        observation(&result, &["remote_addr"]),
        &Value::from(server.addr().to_string())
    );
    assert_eq!(
        phase_names(&result),
        ["resolve", "connect", "first_byte", "transfer"]
    );
    assert_eq!(
        server.requests()[0].host.as_deref(),
        Some(&*format!("localhost:{}", server.port()))
    );
    assert!(
        metrics(&result).contains("probe_http_duration_seconds{probe=\"web\",phase=\"resolve\"} ")
    );
}

// === TLS ===

/// An expired certificate is a `tls` error that says so, and its expiry is still observed.
#[tokio::test]
async fn an_expired_certificate_is_a_tls_error() {
    support::init();
    let dir = TempDir::new("http-expired");
    let tls = Tls::new(&dir);
    let leaf = tls.ca.expired_leaf(&["api.test"]);
    let server = HttpServer::builder()
        .tls(leaf.server_config(HTTP1_ONLY))
        .route("/", Route::ok("ok"))
        .start()
        .await;
    let result = run(&format!(
        "url = \"https://api.test:{port}/\"\nconnect_to = \"127.0.0.1:{port}\"\nca_file = \"{ca}\"",
        port = server.port(),
        ca = tls.ca_file
    ))
    .await;

    assert_eq!(result.error, Some(ErrorClass::Tls));
    assert_eq!(
        result.message,
        "TLS handshake failed: certificate expired (not valid after 2021-01-01T00:00:00Z)"
    );
    assert_eq!(
        observation(&result, &["tls_cert_expiry"]),
        &Value::Int(EXPIRED_AT)
    );
    assert_eq!(phase_names(&result), ["connect", "tls"]);
    assert_line(
        &metrics(&result),
        &format!("probe_ssl_earliest_cert_expiry{{probe=\"web\"}} {EXPIRED_AT}"),
    );
}

/// A certificate for another name is a `tls` error naming both names.
#[tokio::test]
async fn a_certificate_for_another_name_is_a_tls_error() {
    support::init();
    let dir = TempDir::new("http-wrong-host");
    let tls = Tls::new(&dir);
    let server = HttpServer::builder()
        .tls(tls.ca.leaf(&["other.test"]).server_config(HTTP1_ONLY))
        .route("/", Route::ok("ok"))
        .start()
        .await;
    let result = run(&format!(
        "url = \"https://api.test:{port}/\"\nconnect_to = \"127.0.0.1:{port}\"\nca_file = \"{ca}\"",
        port = server.port(),
        ca = tls.ca_file
    ))
    .await;

    assert_eq!(result.error, Some(ErrorClass::Tls));
    assert_eq!(
        result.message,
        "TLS handshake failed: certificate not valid for name api.test (it is valid for other.test)"
    );
}

/// A certificate from a CA that is not trusted is a `tls` error (the system roots do not know
/// the test CA).
#[tokio::test]
async fn an_untrusted_issuer_is_a_tls_error() {
    support::init();
    let dir = TempDir::new("http-untrusted");
    let tls = Tls::new(&dir);
    let server = HttpServer::builder()
        .tls(tls.ca.leaf(&["api.test"]).server_config(HTTP1_ONLY))
        .route("/", Route::ok("ok"))
        .start()
        .await;
    let result = run(&format!(
        "url = \"https://api.test:{port}/\"\nconnect_to = \"127.0.0.1:{port}\"",
        port = server.port()
    ))
    .await;

    assert_eq!(result.error, Some(ErrorClass::Tls));
    assert_eq!(
        result.message,
        "TLS handshake failed: certificate issued by an unknown authority (not in the trusted \
         roots)"
    );
}

/// With `tls_verify = false` an expired or wrong-host certificate is accepted, and its expiry
/// is still reported, so a rule can warn before it bites.
#[tokio::test]
async fn tls_verify_false_accepts_bad_certificates_and_still_reports_expiry() {
    support::init();
    let dir = TempDir::new("http-noverify");
    let tls = Tls::new(&dir);
    for leaf in [
        tls.ca.expired_leaf(&["api.test"]),
        tls.ca.expired_leaf(&["other.test"]),
    ] {
        let server = HttpServer::builder()
            .tls(leaf.server_config(HTTP1_ONLY))
            .route("/", Route::ok("ok"))
            .start()
            .await;
        let result = run(&format!(
            "url = \"https://api.test:{port}/\"\nconnect_to = \"127.0.0.1:{port}\"\ntls_verify = false",
            port = server.port()
        ))
        .await;

        assert!(result.ok, "{}", result.message);
        assert_eq!(
            observation(&result, &["tls_cert_expiry"]),
            &Value::Int(EXPIRED_AT)
        );
        assert_eq!(
            observation(&result, &["tls_version"]),
            &Value::from("TLSv1.3")
        );
        assert_eq!(
            phase_names(&result),
            ["connect", "tls", "first_byte", "transfer"]
        );
        let metrics = metrics(&result);
        assert_line(
            &metrics,
            &format!("probe_ssl_earliest_cert_expiry{{probe=\"web\"}} {EXPIRED_AT}"),
        );
        assert!(metrics.contains("probe_http_duration_seconds{probe=\"web\",phase=\"tls\"} "));
    }
}

/// An `https://` URL pointed at a plain-text port is a `tls` error that suggests exactly that.
#[tokio::test]
async fn a_plain_text_port_behind_an_https_url_is_a_tls_error() {
    support::init();
    let server = HttpServer::builder()
        .route("/", Route::ok("ok"))
        .start()
        .await;
    let result = run(&format!(
        "url = \"https://api.test:{port}/\"\nconnect_to = \"127.0.0.1:{port}\"",
        port = server.port()
    ))
    .await;

    assert_eq!(result.error, Some(ErrorClass::Tls));
    assert_eq!(
        result.message,
        "TLS handshake failed: the server did not answer with TLS (is this a plain-text port?): \
         received corrupt message of type InvalidContentType"
    );
}

/// A server that accepts TCP but never answers the ClientHello times out in the `tls` phase.
#[tokio::test]
async fn a_silent_tls_handshake_times_out_in_the_tls_phase() {
    support::init();
    let server = RawServer::start(RawBehaviour::Silent).await;
    let result = run_with(
        &format!(
            "url = \"https://api.test:{port}/\"\nconnect_to = \"{addr}\"",
            port = server.addr().port(),
            addr = server.addr()
        ),
        Duration::from_millis(300),
    )
    .await;

    assert_eq!(result.error, Some(ErrorClass::Timeout));
    assert_eq!(result.message, "timed out after 300ms during tls");
    assert_eq!(phase_names(&result), ["connect", "tls"]);
}

/// HTTP/2 is spoken when the server picks `h2` by ALPN; the authority still names the URL host.
#[tokio::test]
async fn http2_is_negotiated_by_alpn() {
    support::init();
    let dir = TempDir::new("http-h2");
    let tls = Tls::new(&dir);
    let server = HttpServer::builder()
        .tls(tls.ca.leaf(&["api.test"]).server_config(H2_AND_HTTP1))
        .route("/health", Route::ok("ok"))
        .start()
        .await;
    let result = run(&format!(
        "url = \"https://api.test:{port}/health\"\nconnect_to = \"127.0.0.1:{port}\"\nca_file = \"{ca}\"",
        port = server.port(),
        ca = tls.ca_file
    ))
    .await;

    assert!(result.ok, "{}", result.message);
    assert_eq!(
        observation(&result, &["http_version"]),
        &Value::from("HTTP/2")
    );
    assert_line(&metrics(&result), "probe_http_version{probe=\"web\"} 2");
    let seen = &server.requests()[0];
    assert_eq!(seen.version, http::Version::HTTP_2);
    assert_eq!(
        seen.host.as_deref(),
        Some(&*format!("api.test:{}", server.port()))
    );
    assert_eq!(seen.sni.as_deref(), Some("api.test"));
}

// === closing ===

/// The TIME_WAIT sockets of `/proc/net/tcp` (state `06`), as (local, remote) addresses.
fn time_wait_sockets() -> Vec<(SocketAddr, SocketAddr)> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(3) == Some(&"06")).then(|| (kernel_addr(fields[1]), kernel_addr(fields[2])))
        })
        .collect()
}

/// `0100007F:1F90` as the kernel prints an IPv4 socket address: the network-order address
/// bytes printed as one host-order integer, then the port, both in hex.
fn kernel_addr(text: &str) -> SocketAddr {
    let (ip, port) = text.split_once(':').expect("address:port");
    let ip = u32::from_str_radix(ip, 16)
        .expect("hex address")
        .to_ne_bytes();
    SocketAddr::from((ip, u16::from_str_radix(port, 16).expect("hex port")))
}

/// Every run asks the server to close (`Connection: close`) and lets it close first, so after
/// a burst of runs the TIME_WAIT sockets are all on the server's side (local address: the
/// server's), none on the prober's (remote address: the server's), and the prober's ephemeral
/// ports toward one target are not used up at high rates.
#[tokio::test]
async fn the_server_closes_first_and_keeps_the_time_wait() {
    const RUNS: usize = 40;
    support::init();
    let server = HttpServer::builder()
        .route("/health", Route::ok("ok"))
        .start()
        .await;
    let config = load(
        "",
        &probe_toml(&format!("url = \"{}\"", server.url("/health"))),
    );
    for _ in 0..RUNS {
        let result = run_loaded(&config, 0, TIMEOUT).await;
        assert!(result.ok, "{}", result.message);
    }

    let requests = server.requests();
    assert_eq!(requests.len(), RUNS);
    for request in &requests {
        assert_eq!(
            request
                .headers
                .get("connection")
                .map(|value| value.as_bytes()),
            Some(&b"close"[..]),
            "{:?}",
            request.headers
        );
    }
    // Every connection in TIME_WAIT on the server's side: the closes are complete (and the table
    // is read right) before the prober's side is looked at.
    support::eventually(
        "the server's side of every connection in TIME_WAIT",
        Duration::from_secs(10),
        || async {
            let server_side = time_wait_sockets()
                .into_iter()
                .filter(|(local, _)| *local == server.addr())
                .count();
            (server_side >= RUNS).then_some(())
        },
    )
    .await;
    let prober_side: Vec<_> = time_wait_sockets()
        .into_iter()
        .filter(|(_, remote)| *remote == server.addr())
        .collect();
    assert!(
        prober_side.is_empty(),
        "{} of {RUNS} connections left in TIME_WAIT on the prober's side: {prober_side:?}",
        prober_side.len()
    );
}

// === connect_to ===

/// `connect_to` pins the TCP connection to one node while the `Host` header and SNI stay the
/// URL's: two nodes serving the same name answer differently, and each probe reaches its own.
#[tokio::test]
async fn connect_to_pins_the_connection_and_keeps_host_and_sni() {
    support::init();
    let dir = TempDir::new("http-pin");
    let tls = Tls::new(&dir);
    let leaf = tls.ca.leaf(&["api.test"]);
    let node_2 = HttpServer::builder()
        .bind("127.0.0.2")
        .tls(leaf.server_config(HTTP1_ONLY))
        .route("/who", Route::ok("node-2"))
        .start()
        .await;
    let port = node_2.port();
    let node_3 = HttpServer::builder()
        .bind("127.0.0.3")
        .port(port)
        .tls(leaf.server_config(HTTP1_ONLY))
        .route("/who", Route::ok("node-3"))
        .start()
        .await;

    let url = format!("https://api.test:{port}/who");
    let pinned = run(&format!(
        "url = \"{url}\"\nconnect_to = \"127.0.0.3:{port}\"\nexpect_body = '^node-3$'\nca_file = \"{}\"",
        tls.ca_file
    ))
    .await;
    assert!(pinned.ok, "{}", pinned.message);
    assert_eq!(
        observation(&pinned, &["remote_addr"]),
        &Value::from(format!("127.0.0.3:{port}"))
    );
    assert_eq!(observation(&pinned, &["resolved_ips"]), &Value::Null);
    let seen = node_3.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].host.as_deref(), Some(&*format!("api.test:{port}")));
    assert_eq!(seen[0].sni.as_deref(), Some("api.test"));
    assert!(node_2.requests().is_empty(), "node 2 must not be asked");

    // An IP without a port takes the URL's port.
    let other = run(&format!(
        "url = \"{url}\"\nconnect_to = \"127.0.0.2\"\nexpect_body = '^node-2$'\nca_file = \"{}\"",
        tls.ca_file
    ))
    .await;
    assert!(other.ok, "{}", other.message);
    assert_eq!(node_2.requests()[0].sni.as_deref(), Some("api.test"));
}

// === Cloudflare ===

const RAY: &str = "8f2c7d1e9a0b1c2d-FRA";

/// A 522 page generated by Cloudflare is an `http_status` error marked as a CDN error, with
/// Cloudflare's code and colo, so the edge-vs-origin rules can tell it apart.
#[tokio::test]
async fn a_cloudflare_522_page_is_a_cdn_error() {
    support::init();
    let page = r#"<!DOCTYPE html><html><head><title>api.test | 522: Connection timed out</title></head>
<body><div id="cf-wrapper"><h1><span class="cf-error-type">Error</span>
<span class="cf-error-code">522</span></h1><div id="cf-error-details">Connection timed out</div>
<span class="inline-block">Error code 522</span></div></body></html>"#;
    let server = HttpServer::builder()
        .route(
            "/",
            Route::new(522, page)
                .header("server", "cloudflare")
                .header("cf-ray", RAY)
                .header("content-type", "text/html; charset=UTF-8"),
        )
        .start()
        .await;
    let result = run(&format!("url = \"{}\"", server.url("/"))).await;

    assert_eq!(result.error, Some(ErrorClass::HttpStatus));
    assert_eq!(
        result.message,
        "got 522, expected 200-299; Cloudflare at FRA generated it \
         (error 522: connection to the origin timed out)"
    );
    assert_eq!(observation(&result, &["cdn_error"]), &Value::Bool(true));
    assert_eq!(observation(&result, &["cdn_error_code"]), &Value::Int(522));
    assert_eq!(observation(&result, &["cdn_colo"]), &Value::from("FRA"));
    assert_eq!(observation(&result, &["cf_ray"]), &Value::from(RAY));
    assert_eq!(
        observation(&result, &["server"]),
        &Value::from("cloudflare")
    );
    let metrics = metrics(&result);
    assert_line(&metrics, "honeyguide_http_cdn_error{probe=\"web\"} 1");
    assert_line(
        &metrics,
        "honeyguide_http_cdn_error_code{probe=\"web\"} 522",
    );
    assert_line(&metrics, "probe_http_status_code{probe=\"web\"} 522");
}

/// Cloudflare's JSON error format (asked for with `Accept: application/json`) marks a generated
/// error even on a status an origin could send too.
#[tokio::test]
async fn a_cloudflare_json_error_is_a_cdn_error() {
    support::init();
    let body = r#"{"type":"https://developers.cloudflare.com/support/troubleshooting/http-status-codes/cloudflare-5xx-errors/error-502/",
"title":"Error 502: Bad gateway","status":502,"detail":"Cloudflare could not get a valid answer",
"instance":"8f2c7d1e9a0b1c2d","error_code":502,"error_name":"bad_gateway",
"error_category":"origin","retryable":true,"retry_after":60,"cloudflare_error":true}"#;
    let server = HttpServer::builder()
        .route(
            "/api/health/",
            Route::new(502, body)
                .header("server", "cloudflare")
                .header("cf-ray", RAY)
                .header("content-type", "application/problem+json")
                .header("retry-after", "60"),
        )
        .start()
        .await;
    let result = run(&format!(
        "url = \"{}\"\nheaders = {{ Accept = \"application/json\" }}",
        server.url("/api/health/")
    ))
    .await;

    assert_eq!(result.error, Some(ErrorClass::HttpStatus));
    assert_eq!(
        result.message,
        "got 502, expected 200-299; Cloudflare at FRA generated it (error 502)"
    );
    assert_eq!(observation(&result, &["cdn_error"]), &Value::Bool(true));
    assert_eq!(observation(&result, &["cdn_error_code"]), &Value::Int(502));
    let seen = &server.requests()[0];
    assert_eq!(seen.headers["accept"], "application/json");
}

/// An origin 502 that merely passed through Cloudflare is not a CDN error: the ray and colo are
/// still observed, and the message says where the error came from.
#[tokio::test]
async fn an_origin_502_through_cloudflare_is_not_a_cdn_error() {
    support::init();
    let server = HttpServer::builder()
        .route(
            "/",
            Route::new(502, "Bad Gateway")
                .header("server", "cloudflare")
                .header("cf-ray", RAY)
                .header("content-type", "text/plain"),
        )
        .start()
        .await;
    let result = run(&format!("url = \"{}\"", server.url("/"))).await;

    assert_eq!(result.error, Some(ErrorClass::HttpStatus));
    assert_eq!(
        result.message,
        "got 502, expected 200-299; from the origin, passed through Cloudflare at FRA"
    );
    assert_eq!(observation(&result, &["cdn_error"]), &Value::Bool(false));
    assert_eq!(observation(&result, &["cdn_error_code"]), &Value::Null);
    assert_eq!(observation(&result, &["cdn_colo"]), &Value::from("FRA"));
    let metrics = metrics(&result);
    assert_line(&metrics, "honeyguide_http_cdn_error{probe=\"web\"} 0");
    assert_no_series(&metrics, "honeyguide_http_cdn_error_code");
}

// === configuration ===

/// A URL that does not parse is reported at its line and column.
#[test]
fn a_bad_url_is_a_config_error() {
    let text = probe_toml("url = \"http//missing-colon\"");
    assert_eq!(
        errors("", &text),
        "probes.toml:4:7: probe[web].url: not a valid URL: relative URL without a base"
    );
    let ftp = probe_toml("url = \"ftp://files.example/\"");
    assert_eq!(
        errors("", &ftp),
        "probes.toml:4:7: probe[web].url: the scheme must be `http` or `https`, not `ftp`"
    );
}

/// A regular expression that does not compile is a load error, not a failing probe.
#[test]
fn a_bad_regex_is_a_config_error() {
    let text = probe_toml("url = \"http://127.0.0.1/\"\nexpect_body = \"(unclosed\"");
    assert_eq!(
        errors("", &text),
        "probes.toml:5:15: probe[web].expect_body: not a valid regular expression: unclosed group"
    );
}

/// Bad statuses are all named in one message.
#[test]
fn a_bad_expect_status_is_a_config_error() {
    let text = probe_toml("url = \"http://127.0.0.1/\"\nexpect_status = [200, 700, \"2yy\"]");
    assert_eq!(
        errors("", &text),
        "probes.toml:5:17: probe[web].expect_status: `700`, `2yy` are not a status code \
         (100-599), a range like \"200-299\" or a class like \"2xx\""
    );
}

/// A typo in a key is an error, not silently ignored, and a near miss of a common key is named.
#[test]
fn an_unknown_key_is_a_config_error() {
    let text = probe_toml("url = \"http://127.0.0.1/\"\ntimout = \"5s\"");
    assert_eq!(
        errors("", &text),
        "probes.toml:5:1: probe[web].timout: unknown field `timout`, expected one of `url`, `method`, \
         `headers`, `body`, `connect_to`, `expect_status`, `expect_body`, `tls_verify`, \
         `ca_file`, `follow_redirects`, `body_limit`; did you mean `timeout`?"
    );
}

/// Every problem in a probe is reported at once, each at its own key.
#[test]
fn all_problems_are_reported_at_once() {
    let text = probe_toml(
        "url = \"http://127.0.0.1/\"\nmethod = \"FETCH\"\nconnect_to = \"node-1\"\nbody_limit = 0",
    );
    assert_eq!(
        errors("", &text),
        "probes.toml:5:10: probe[web].method: unsupported method `FETCH`, expected one of GET, \
         HEAD, POST, PUT, PATCH, DELETE, OPTIONS\n\
         probes.toml:6:14: probe[web].connect_to: `node-1` is not an IP address or IP:port, like \
         \"192.0.2.11:80\" or \"[2001:db8::1]:8080\"\n\
         probes.toml:7:14: probe[web].body_limit: must be at least 1 byte"
    );
}

/// Header values may be secrets: they appear neither in errors nor in the probe's `Debug`.
#[test]
fn header_values_never_show() {
    let env = [("TOKEN", "s3cr3t-token"), ("BROKEN", "s3cr3t\nline")];
    let good = probe_toml(
        "url = \"http://127.0.0.1/\"\nheaders = { Authorization = \"Token ${TOKEN}\" }\nbody = \"${TOKEN}\"",
    );
    let config = load_with_env("", &good, &env);
    let debug = format!("{:?}", config.probes[0].probe);
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(debug.contains("authorization"), "{debug}");

    let bad = probe_toml("url = \"http://127.0.0.1/\"\nheaders = { X-Key = \"${BROKEN}\" }");
    let errors = parse("", &bad, &env).unwrap_err().to_string();
    assert_eq!(
        errors,
        "probes.toml:5:11: probe[web].headers.X-Key: not a valid header value (control \
         characters or non-ASCII text)"
    );
}

/// The shipped `probes.toml` loads with an empty environment, and its HTTP probes are there
/// under the names the rules use.
#[test]
fn the_shipped_probes_toml_validates() {
    let config = load_shipped();
    let kinds: BTreeMap<&str, Kind> = config
        .probes
        .iter()
        .map(|probe| (probe.name.as_str(), probe.kind()))
        .collect();
    for name in [
        "edge-api",
        "edge-admin",
        "edge-api-deep",
        "origin-1",
        "origin-2",
        "origin-3",
    ] {
        assert_eq!(
            kinds.get(name),
            Some(&Kind::Http),
            "probe {name}: {kinds:?}"
        );
    }
    let origin = config
        .probes
        .iter()
        .find(|probe| probe.name == "origin-2")
        .unwrap();
    assert_eq!(
        origin.probe.target(),
        "http://api.myhoneydue.com/api/health/ via 192.0.2.12:80"
    );
}
