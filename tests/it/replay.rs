//! `honeyguide replay` on a store written by a real `honeyguide run`: the daemon probes a
//! loopback server that the test stops and starts again, so its store holds the whole results
//! and its own diagnosis changes (pending, active, resolved). Replayed beside the running
//! daemon (read-only, without its lock) with the rule it ran, the changes are the same; with
//! an edited copy (a `for` longer than the outage) the replay says the mode would never have
//! gone active, and that the running rules did.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::http_server::{HttpServer, Route};
use crate::support::{ChildGuard, TempDir, eventually, free_port, init, wait_for_tcp};

const WAIT: Duration = Duration::from_secs(30);

fn rule(for_duration: &str) -> String {
    format!(
        "id = \"web-down\"\ntitle = \"The web server is down\"\nseverity = \"critical\"\n\
         when = '!probes.web.ok'\nfor = \"{for_duration}\"\nsymptom = \"Pages fail.\"\n\
         recovery = \"Restart it.\"\n"
    )
}

async fn serve(port: u16) -> HttpServer {
    // The port of the server just stopped may take a moment to be free again.
    let deadline = tokio::time::Instant::now() + WAIT;
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "port {port} stays taken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    HttpServer::builder()
        .port(port)
        .route("/", Route::ok("fine"))
        .start()
        .await
}

async fn status(port: u16) -> Option<Value> {
    reqwest::get(format!("http://127.0.0.1:{port}/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// `honeyguide replay --since 10m` in `dir` with `alerts`, to its end.
async fn replay(dir: &Path, alerts: &str) -> (Option<i32>, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_honeyguide"))
        .args(["replay", "--since", "10m", "--alerts", alerts])
        .current_dir(dir)
        .env_remove("HONEYGUIDE_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT, output)
        .await
        .expect("replay still running")
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// The value after `label` on the line of `text` that starts with it (`  running:  ...`).
fn line<'t>(text: &'t str, label: &str) -> &'t str {
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .unwrap_or_else(|| panic!("no line {label:?} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_compares_edited_rules_with_what_the_running_daemon_did() {
    init();
    let dir = TempDir::new("replay");
    let (web_port, listen) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("probes.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{listen}\"\n\n[store]\npath = \"honeyguide.db\"\n\n\
             [[probe]]\nname = \"web\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{web_port}/\"\n\
             interval = \"1s\"\ntimeout = \"500ms\"\n"
        ),
    )
    .unwrap();
    for (name, for_duration) in [("alerts", "2s"), ("edited", "1m")] {
        std::fs::create_dir(dir.path().join(name)).unwrap();
        std::fs::write(
            dir.path().join(name).join("web-down.toml"),
            rule(for_duration),
        )
        .unwrap();
    }

    let server = serve(web_port).await;
    let mut daemon = ChildGuard::spawn(
        "honeyguide",
        std::process::Command::new(env!("CARGO_BIN_EXE_honeyguide"))
            .args(["run"])
            .current_dir(dir.path())
            .env("HONEYGUIDE_LOG", "info"),
        &dir.path().join("honeyguide.log"),
    );
    wait_for_tcp(([127, 0, 0, 1], listen).into(), WAIT);
    let diagnoses = |status: &Value| status["diagnoses"].as_array().cloned().unwrap_or_default();
    eventually("web probed ok a few times", WAIT, || async {
        let status = status(listen).await?;
        (status["probes"][0]["history"].as_array()?.len() >= 3).then_some(())
    })
    .await;

    // The outage: longer than the running rule's `for`, shorter than the edited one's.
    drop(server);
    eventually("web-down active", WAIT, || async {
        let status = status(listen).await?;
        diagnoses(&status)
            .iter()
            .any(|d| d["id"] == "web-down" && d["state"] == "active")
            .then_some(())
    })
    .await;
    let server = serve(web_port).await;
    eventually("web-down resolved", WAIT, || async {
        let status = status(listen).await?;
        (status["probes"][0]["ok"] == true && diagnoses(&status).is_empty()).then_some(())
    })
    .await;
    // The daemon hands history to its store thread without waiting: give it a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Beside the running daemon, with the rule it ran: the same changes.
    let (code, stdout, stderr) = replay(dir.path(), "alerts").await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("web-down (for 2s): the same as the running rules"),
        "{stdout}\n{stderr}"
    );
    let changes = line(&stdout, "  ");
    let kinds: Vec<&str> = changes
        .split(", ")
        .map(|change| change.split(' ').next().unwrap())
        .collect();
    assert_eq!(kinds, ["pending", "active", "resolved"], "{stdout}");
    assert!(
        stdout.contains("1 failure mode changed: 1 the same as the running rules, 0 different"),
        "{stdout}"
    );
    assert!(stdout.contains(" results of 1 probe\n"), "{stdout}");
    // The lock is still the daemon's.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("honeyguide.db.lock")).unwrap(),
        format!("{}\n", daemon.pid())
    );
    assert!(daemon.is_running());

    // An edited copy with a `for` longer than the outage: never active, and the report says
    // how that differs from what the running rules did.
    let (code, edited, stderr) = replay(dir.path(), "edited").await;
    assert_eq!(code, Some(0), "{edited}\n{stderr}");
    assert!(
        edited.contains("web-down (for 1m): differs from the running rules"),
        "{edited}"
    );
    let replayed = line(&edited, "  replayed: ");
    let running = line(&edited, "  running:  ");
    assert!(
        replayed.starts_with("pending ") && replayed.contains(", resolved "),
        "{edited}"
    );
    assert!(!replayed.contains("active"), "{edited}");
    assert_eq!(running, changes, "the running rules' record: {edited}");
    let went_active = changes
        .split(", ")
        .find_map(|change| change.strip_prefix("active "))
        .unwrap();
    assert!(
        edited.contains(&format!(
            "  - the running rules went active at {went_active}; replayed, it would not have"
        )),
        "{edited}"
    );

    // And after the daemon stopped, from the store it left.
    daemon.stop_with("TERM");
    drop(server);
    let (code, after, stderr) = replay(dir.path(), "alerts").await;
    assert_eq!(code, Some(0), "{after}\n{stderr}");
    assert!(
        after.contains("web-down (for 2s): the same as the running rules"),
        "{after}"
    );
}
