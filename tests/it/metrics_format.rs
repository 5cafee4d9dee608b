//! `/metrics` as Prometheus itself reads it: `promtool check metrics` (from Debian's
//! `prometheus` package) parses the exposition with Prometheus' own parser and lints it.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::support::daemon::TestDaemon;
use crate::support::http_server::{HttpServer, Route};
use crate::support::{self, require_binary};

/// The exposition of a daemon with passing and failing probes parses and lints clean, and says
/// where the instance probes from.
#[tokio::test]
async fn promtool_accepts_the_exposition() {
    support::init();
    let promtool = require_binary("promtool", "prometheus");
    let ok = HttpServer::builder()
        .route("/", Route::ok("fine"))
        .start()
        .await;
    let toml = format!(
        "[server]\nvantage = \"outside-fra\"\n\n[[probe]]\nname = \"up\"\nkind = \"http\"\nurl = \"{}\"\ninterval = \"1s\"\nlabels = {{ team = \"web\" }}\n\n\
         [[probe]]\nname = \"down\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{}/\"\ninterval = \"1s\"\n",
        ok.url("/"),
        support::free_port()
    );
    let daemon = TestDaemon::start(&toml).await;
    daemon.wait_for("up", |_| true).await;
    daemon.wait_for("down", |_| true).await;
    let metrics = daemon.metrics().await;

    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write metrics");
    let output = check.wait_with_output().expect("promtool");
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool rejected /metrics:\n{complaints}\n{metrics}"
    );
    assert_eq!(complaints.trim(), "", "promtool lint findings:\n{metrics}");
    assert!(
        metrics.contains("honeyguide_probe_info{probe=\"up\",kind=\"http\",team=\"web\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("honeyguide_vantage_info{vantage=\"outside-fra\"} 1\n"),
        "{metrics}"
    );
    assert_eq!(daemon.status().await["vantage"], "outside-fra");
    daemon.stop().await;
}
