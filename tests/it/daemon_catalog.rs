//! The failure catalog through the whole daemon: real `http` probes against in-process servers,
//! rule files on disk, and what on-call reads in `/status`, on `/` and in `/metrics`; and the
//! `validate` and `catalog` commands on rule files.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::daemon::{TestDaemon, sample};
use crate::support::http_server::{HttpServer, Route};
use crate::support::{self, TempDir};

/// A rule file for `id` with the given `when`, `for` and extra lines.
fn rule(id: &str, severity: &str, when: &str, extra: &str) -> String {
    format!(
        "id = \"{id}\"\ntitle = \"{id} title\"\nseverity = \"{severity}\"\nwhen = '{when}'\n\
         symptom = \"{id} symptom\"\nrecovery = \"Run `fix {id}`.\"\nrunbook = \"#{id}\"\n{extra}"
    )
}

fn probes(api: &str, health: &str) -> String {
    format!(
        r#"
[defaults]
interval = "1s"
timeout = "1s"

[[probe]]
name = "api"
kind = "http"
url = "{api}"

[[probe]]
name = "health"
kind = "http"
url = "{health}"
"#
    )
}

/// A backend answering 503 is diagnosed: pending, then active once `for` has held; the root
/// cause is listed first with its evidence and recovery, the mode it explains after it with
/// `inhibited_by`, a mode that does not hold is absent, and `/metrics` and `/` agree.
#[tokio::test]
async fn a_failing_backend_is_diagnosed_in_status_page_and_metrics() {
    support::init();
    let broken = HttpServer::builder()
        .route("/", Route::new(503, "down for maintenance"))
        .start()
        .await;
    let fine = HttpServer::builder()
        .route("/", Route::ok("fine"))
        .start()
        .await;
    let backend_down = rule(
        "backend-down",
        "critical",
        r#"!probes.api.ok && probes.api.observations.status == 503 && probes.health.ok"#,
        "for = \"2s\"\ninhibits = [\"api-failing\"]\nlabels = { team = \"platform\" }\n",
    );
    let api_failing = rule("api-failing", "warning", "!probes.api.ok", "");
    let health_down = rule("health-down", "critical", "!probes.health.ok", "");
    let daemon = TestDaemon::start_with_alerts(
        &probes(&broken.url("/"), &fine.url("/")),
        &[
            ("backend-down.toml", &backend_down),
            ("api-failing.toml", &api_failing),
            ("health-down.toml", &health_down),
        ],
    )
    .await;

    let status = support::eventually(
        "backend-down to be active",
        Duration::from_secs(20),
        || async {
            let status = daemon.status().await;
            let confirmed = status["diagnoses"].as_array().is_some_and(|all| {
                all.iter()
                    .any(|d| d["id"] == "backend-down" && d["state"] == "active")
            });
            confirmed.then_some(status)
        },
    )
    .await;
    let diagnoses = status["diagnoses"].as_array().unwrap();
    assert_eq!(diagnoses.len(), 2, "{status}");
    let root = &diagnoses[0];
    assert_eq!(root["id"], "backend-down");
    assert_eq!(root["title"], "backend-down title");
    assert_eq!(root["severity"], "critical");
    assert_eq!(root["summary"], "backend-down symptom");
    assert_eq!(root["recovery"], "Run `fix backend-down`.");
    assert_eq!(root["runbook"], "#backend-down");
    assert_eq!(root["inhibited_by"], json!(null));
    assert_eq!(root["labels"], json!({"team": "platform"}));
    assert!(root["since"].as_str().unwrap().ends_with('Z'), "{root}");
    let evidence = root["probes"].as_array().unwrap();
    assert_eq!(evidence[0]["probe"], "api");
    assert_eq!(evidence[0]["ok"], false);
    assert!(
        evidence[0]["message"].as_str().unwrap().contains("503"),
        "{root}"
    );
    assert_eq!(evidence[1]["probe"], "health");
    assert_eq!(evidence[1]["ok"], true);
    assert_eq!(diagnoses[1]["id"], "api-failing");
    assert_eq!(diagnoses[1]["state"], "active");
    assert_eq!(diagnoses[1]["inhibited_by"], "backend-down");

    let rules = status["rules"].as_array().unwrap();
    let health_rule = rules
        .iter()
        .find(|rule| rule["id"] == "health-down")
        .unwrap();
    assert_eq!(health_rule["status"], "clear");
    assert_eq!(health_rule["errors"], 0);
    assert!(health_rule["evaluations"].as_u64().unwrap() >= 1);

    let metrics = daemon.metrics().await;
    let series = |name: &str| sample(&metrics, name).unwrap_or_else(|| panic!("{name}\n{metrics}"));
    assert_eq!(
        series(r#"honeyguide_diagnosis_active{id="backend-down",severity="critical"}"#),
        1.0
    );
    assert_eq!(
        series(r#"honeyguide_diagnosis_active{id="api-failing",severity="warning"}"#),
        1.0
    );
    assert_eq!(
        series(r#"honeyguide_diagnosis_active{id="health-down",severity="critical"}"#),
        0.0
    );
    assert_eq!(
        series(r#"honeyguide_diagnosis_inhibited{id="api-failing"}"#),
        1.0
    );
    assert_eq!(
        series(r#"honeyguide_diagnosis_inhibited{id="backend-down"}"#),
        0.0
    );
    assert_eq!(
        series(r#"honeyguide_rule_errors_total{id="health-down"}"#),
        0.0
    );

    let page = daemon.get("/").await.text().await.unwrap();
    let root_at = page
        .find("backend-down title")
        .expect("the root cause on the page");
    let probes_at = page.find("<h2 id=\"probes-title\">Probes</h2>").unwrap();
    assert!(root_at < probes_at, "diagnoses come before the probe table");
    assert!(
        page.contains("<p>Run <code>fix backend-down</code>.</p>"),
        "{page}"
    );
    let explained_at = page
        .find("Also explained by this")
        .expect("the explained mode under its root cause");
    let inhibited_at = page.find("api-failing title").unwrap();
    let not_notified_at = page
        .find("Not notified</span> inhibited by <a href=\"#d-backend-down\">backend-down</a>")
        .expect("the explained mode is not notified, and says why");
    assert!(
        root_at < explained_at && explained_at < inhibited_at && inhibited_at < not_notified_at,
        "{page}"
    );
    assert!(not_notified_at < probes_at, "{page}");
    daemon.stop().await;
}

/// A rule that cannot be evaluated on what the probe observed does not fire; `/status` and
/// `/metrics` show its error count and message so the rule author can fix it.
#[tokio::test]
async fn a_rule_failing_at_runtime_is_reported_not_fired() {
    support::init();
    let fine = HttpServer::builder()
        .route("/", Route::ok("fine"))
        .start()
        .await;
    let typo = rule(
        "typo",
        "warning",
        // Passes the load check (a typical result has no redirects either), fails on every
        // real result: the run followed none.
        "probes.health.observations.status / probes.health.observations.redirects > 1",
        "",
    );
    let daemon = TestDaemon::start_with_alerts(
        &probes(&fine.url("/"), &fine.url("/")),
        &[("typo.toml", &typo)],
    )
    .await;
    let rule_status = support::eventually(
        "the rule to fail at least twice",
        Duration::from_secs(20),
        || async {
            let status = daemon.status().await;
            let rule = status["rules"][0].clone();
            (rule["errors"].as_u64().unwrap_or(0) >= 2).then_some((status, rule))
        },
    )
    .await;
    let (status, rule) = rule_status;
    assert_eq!(status["diagnoses"], json!([]));
    assert_eq!(rule["id"], "typo");
    assert_eq!(rule["status"], "error");
    assert_eq!(rule["last_error"], "division by zero of Int(200)");
    let metrics = daemon.metrics().await;
    assert!(sample(&metrics, r#"honeyguide_rule_errors_total{id="typo"}"#).unwrap() >= 2.0);
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

const ONE_PROBE: &str =
    "[[probe]]\nname = \"api\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

/// `validate` checks the rules against the probes and their kinds' observation schemas
/// (an unknown observation with a did-you-mean, a comparison of the wrong type) and reports
/// every bad rule file at once, located, exiting 2; `run` refuses to start on them.
#[test]
fn validate_reports_every_bad_rule_and_run_refuses_them() {
    support::init();
    let dir = TempDir::new("validate-rules");
    std::fs::write(dir.path().join("probes.toml"), ONE_PROBE).unwrap();
    std::fs::create_dir(dir.path().join("alerts")).unwrap();
    let write = |name: &str, text: String| {
        std::fs::write(dir.path().join("alerts").join(name), text).unwrap()
    };
    write("a.toml", rule("a", "warning", "!probes.db.ok", ""));
    write("b.toml", rule("b", "warning", "probes.api.ok > 1", ""));
    write(
        "c.toml",
        rule("c", "warning", "!probes.api.ok", "inhibits = [\"c\"]\n"),
    );
    write(
        "d.toml",
        rule("d", "warning", "probes.api.observations.redirect > 1", ""),
    );
    write(
        "e.toml",
        rule(
            "e",
            "warning",
            "probes.api.observations.tls_cert_expiry < \"2027-01-01\"",
            "",
        ),
    );

    let output = honeyguide(&["validate"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = [
        "alerts/a.toml:4:17: when: unknown probe `db`",
        "alerts/b.toml:4:23: when: type error: found no matching overload for '_>_' applied to '(bool, int)'",
        "alerts/c.toml:8:13: inhibits[0]: a failure mode cannot inhibit itself",
        "alerts/d.toml:4:33: when: unknown observation `redirect` of http probe `api`; did you \
         mean `redirects`? (see docs/probes/http.md)",
        "alerts/e.toml:4:49: when: type error: found no matching overload for '_<_' applied to \
         '(int, string)'",
        "honeyguide: 5 problem(s) in alerts",
    ];
    for line in expected {
        assert!(stderr.contains(line), "{line}\n{stderr}");
    }

    let run = honeyguide(&["run"], dir.path());
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("alerts/a.toml:4:17"));
}

/// `catalog` lists every failure mode with its severity, `for`, the probes it reads and its
/// title; `validate` counts them.
#[test]
fn catalog_lists_the_failure_modes() {
    support::init();
    let dir = TempDir::new("catalog-list");
    std::fs::write(dir.path().join("probes.toml"), ONE_PROBE).unwrap();
    std::fs::create_dir(dir.path().join("alerts")).unwrap();
    std::fs::write(
        dir.path().join("alerts/api-down.toml"),
        rule("api-down", "critical", "!probes.api.ok", "for = \"90s\"\n"),
    )
    .unwrap();

    let output = honeyguide(&["catalog"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ID        SEVERITY  FOR     PROBES  TITLE\n\
         api-down  critical  1m 30s  api     api-down title\n"
    );
    let validate = honeyguide(&["validate"], dir.path());
    assert_eq!(validate.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&validate.stdout).contains("alerts: 1 failure modes, ok"));
}
