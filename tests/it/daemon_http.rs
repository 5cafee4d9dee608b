//! The daemon end to end with `http` probes: real in-process servers that answer, fail, refuse,
//! hang, present a bad certificate, or sit on different "origin nodes"; the assertions are what
//! a user reads in `/metrics` and `/status`.

use std::time::Duration;

use crate::support::certs::TestCa;
use crate::support::daemon::{TestDaemon, sample};
use crate::support::http_server::{HttpServer, Route};
use crate::support::{self, TempDir};

/// One daemon, six targets: each outcome shows up as the `/metrics` line and the `/status`
/// fields an operator would read, and the hanging target does not hold back the others.
#[tokio::test]
async fn every_outcome_is_visible_in_metrics_and_status() {
    support::init();
    let ca = TestCa::new();
    let dir = TempDir::new("daemon-http");
    let ca_file = ca.write_pem(dir.path());
    let ok = HttpServer::builder()
        .route("/", Route::ok("fine"))
        .start()
        .await;
    let broken = HttpServer::builder()
        .route("/", Route::new(500, "boom"))
        .start()
        .await;
    let hanging = HttpServer::builder()
        .route("/", Route::ok("late").delay(Duration::from_secs(60)))
        .start()
        .await;
    let expired = HttpServer::builder()
        .tls(
            ca.expired_leaf(&["localhost"])
                .server_config(&[b"http/1.1"]),
        )
        .route("/", Route::ok("old"))
        .start()
        .await;
    // Two "origin nodes" on the same port, serving different bodies for the same host.
    let node_b = HttpServer::builder()
        .bind("127.0.0.2")
        .route("/", Route::ok("node b"))
        .start()
        .await;
    let node_c = HttpServer::builder()
        .bind("127.0.0.3")
        .port(node_b.port())
        .route("/", Route::ok("node c"))
        .start()
        .await;
    let closed = support::free_port();

    let toml = format!(
        r#"
[defaults]
interval = "1s"
timeout = "1s"

[[probe]]
name = "ok"
kind = "http"
url = "{ok}"

[[probe]]
name = "broken"
kind = "http"
url = "{broken}"

[[probe]]
name = "closed"
kind = "http"
url = "http://127.0.0.1:{closed}/"

[[probe]]
name = "hanging"
kind = "http"
url = "{hanging}"
timeout = "500ms"

[[probe]]
name = "expired"
kind = "http"
url = "https://localhost:{expired_port}/"
ca_file = "{ca_file}"

[[probe]]
name = "pinned-c"
kind = "http"
url = "http://api.honeydue.test:{node_port}/"
connect_to = "127.0.0.3"
expect_body = "node c"
"#,
        ok = ok.url("/"),
        broken = broken.url("/"),
        hanging = hanging.url("/"),
        expired_port = expired.port(),
        ca_file = ca_file.display(),
        node_port = node_b.port(),
    );
    let daemon = TestDaemon::start(&toml).await;

    // The fast probe keeps its one-second cadence while another probe hangs every run.
    let ok_probe = daemon
        .wait_for("ok", |probe| {
            probe["history"]
                .as_array()
                .is_some_and(|runs| runs.len() >= 3)
        })
        .await;
    assert_eq!(ok_probe["ok"], true);
    assert_eq!(ok_probe["observations"]["status"], 200);

    let broken_probe = daemon.wait_for("broken", |_| true).await;
    assert_eq!(broken_probe["ok"], false);
    assert_eq!(broken_probe["error"], "http_status");
    assert_eq!(broken_probe["message"], "got 500, expected 200-299");

    let closed_probe = daemon.wait_for("closed", |_| true).await;
    assert_eq!(closed_probe["error"], "connect");
    assert!(
        closed_probe["message"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{closed_probe}"
    );

    let hanging_probe = daemon.wait_for("hanging", |_| true).await;
    assert_eq!(hanging_probe["error"], "timeout");
    assert_eq!(
        hanging_probe["message"],
        "timed out after 500ms during first_byte"
    );

    let expired_probe = daemon.wait_for("expired", |_| true).await;
    assert_eq!(expired_probe["error"], "tls");
    assert!(
        expired_probe["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{expired_probe}"
    );
    assert_eq!(
        expired_probe["observations"]["tls_cert_expiry"],
        1_609_459_200
    );

    let pinned = daemon.wait_for("pinned-c", |_| true).await;
    assert_eq!(pinned["ok"], true, "{pinned}");
    assert_eq!(
        pinned["observations"]["remote_addr"],
        format!("127.0.0.3:{}", node_b.port())
    );
    assert!(
        node_b.requests().is_empty(),
        "the pinned probe must not reach node b"
    );
    assert_eq!(
        node_c.requests()[0].host.as_deref(),
        Some(format!("api.honeydue.test:{}", node_b.port()).as_str())
    );

    let metrics = daemon.metrics().await;
    assert_eq!(sample(&metrics, "probe_success{probe=\"ok\"}"), Some(1.0));
    assert_eq!(
        sample(&metrics, "probe_http_status_code{probe=\"ok\"}"),
        Some(200.0)
    );
    assert_eq!(
        sample(&metrics, "probe_success{probe=\"broken\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "probe_http_status_code{probe=\"broken\"}"),
        Some(500.0)
    );
    assert_eq!(
        sample(&metrics, "probe_success{probe=\"closed\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "probe_success{probe=\"hanging\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "probe_success{probe=\"expired\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "probe_ssl_earliest_cert_expiry{probe=\"expired\"}"
        ),
        Some(1_609_459_200.0)
    );
    assert_eq!(
        sample(&metrics, "probe_success{probe=\"pinned-c\"}"),
        Some(1.0)
    );
    assert!(
        sample(
            &metrics,
            "honeyguide_probe_failures_total{probe=\"hanging\",error=\"timeout\"}"
        )
        .is_some_and(|count| count >= 1.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "honeyguide_probe_runs_total{probe=\"ok\",result=\"ok\"}"
        )
        .is_some_and(|count| count >= 3.0),
        "{metrics}"
    );
    daemon.stop().await;
}

/// Stopping the daemon lets a run in flight finish and report instead of dropping it.
#[tokio::test]
async fn shutdown_waits_for_runs_in_flight() {
    support::init();
    let slow = HttpServer::builder()
        .route("/", Route::ok("slow").delay(Duration::from_millis(400)))
        .start()
        .await;
    let toml = format!(
        "[[probe]]\nname = \"slow\"\nkind = \"http\"\nurl = \"{}\"\ninterval = \"2s\"\ntimeout = \"2s\"\n",
        slow.url("/")
    );
    let daemon = TestDaemon::start(&toml).await;
    support::eventually(
        "the slow request to arrive",
        Duration::from_secs(5),
        || async { (!slow.requests().is_empty()).then_some(()) },
    )
    .await;
    let started = tokio::time::Instant::now();
    daemon.stop().await;
    // The stop waited for the request in flight (about 400 ms), and no longer than its timeout.
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}
