//! The daemon as a whole: endpoints, content types, shutdown, the command line.

use std::process::Command;

use crate::support::TempDir;
use crate::support::daemon::TestDaemon;

/// `/healthz` answers while the state task is alive; `/metrics` is Prometheus text 0.0.4 with
/// the daemon's own series even with no probes.
#[tokio::test]
async fn serves_health_and_metrics_with_the_right_content_type() {
    let daemon = TestDaemon::start("").await;
    let health = daemon.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");

    let metrics = daemon.get("/metrics").await;
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("# TYPE honeyguide_scheduler_lag_seconds histogram\n"),
        "{text}"
    );
    assert!(text.contains("honeyguide_probes 0\n"), "{text}");
    daemon.stop().await;
}

/// `/status` is JSON with a `probes` array, and `/` is an HTML page, never cached, whose policy
/// lets only its own inline style and script run.
#[tokio::test]
async fn serves_status_json_and_the_page() {
    let daemon = TestDaemon::start("").await;
    let status = daemon.status().await;
    assert_eq!(status["probes"], serde_json::json!([]));
    let page = daemon.get("/").await;
    let header = |name: &str| page.headers()[name].to_str().unwrap().to_owned();
    assert!(header("content-type").starts_with("text/html"));
    assert_eq!(header("cache-control"), "no-store");
    let policy = header("content-security-policy");
    assert!(
        policy.starts_with("default-src 'none'; style-src 'sha256-"),
        "{policy}"
    );
    assert!(policy.contains("; script-src 'sha256-"), "{policy}");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<title>Idle: no probes configured · honeyguide</title>")
    );
    daemon.stop().await;
}

fn honeyguide(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_honeyguide"))
        .args(args)
        .current_dir(dir)
        .env_remove("HONEYGUIDE_LOG")
        .output()
        .expect("run honeyguide")
}

/// `validate` on a broken file lists every problem with file, line, column and key, and exits 2.
#[test]
fn validate_reports_every_error_with_its_location_and_exits_2() {
    let dir = TempDir::new("validate");
    std::fs::write(
        dir.path().join("probes.toml"),
        "[server]\nlisten = \"nowhere\"\n\n[defaults]\ninterval = \"soon\"\n\n[[probe]]\nname = \"x\"\nkind = \"telepathy\"\n",
    )
    .unwrap();
    let output = honeyguide(&["validate"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "probes.toml:2:10: server.listen: `nowhere` is not an address like \"0.0.0.0:9898\""
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("probes.toml:5:12: defaults.interval: invalid duration `soon`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("probes.toml:9:8: probe[x].kind: unknown probe kind"),
        "{stderr}"
    );
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
}

/// A syntax error is reported with its position, and `run` refuses to start on it.
#[test]
fn run_refuses_a_broken_config() {
    let dir = TempDir::new("run-broken");
    std::fs::write(dir.path().join("probes.toml"), "[[probe]\nname = 1\n").unwrap();
    let output = honeyguide(&["run"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("probes.toml:1:"), "{stderr}");
}

/// `check` with an unknown probe name is a usage error (exit 2), not a failed check.
#[test]
fn check_rejects_unknown_probe_names() {
    let dir = TempDir::new("check-unknown");
    std::fs::write(dir.path().join("probes.toml"), "").unwrap();
    let output = honeyguide(&["check", "nope"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no probe named `nope`"));
}
