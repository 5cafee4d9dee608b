//! What the real `honeyguide run` logs stays one line per event whatever outsiders send it: a
//! silence comment and author from the API with newlines and ANSI escapes, and a webhook
//! receiver answering 401 with such a body, are logged escaped; no line can be forged and no
//! escape reaches the operator's terminal. The refusing receiver is logged once, as a permanent
//! failure that says what to fix.

use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::alerting::Receiver;
use crate::support::{ChildGuard, TempDir, eventually, free_port, init, wait_for_tcp};

const WAIT: Duration = Duration::from_secs(20);
const TOKEN: &str = "log-test-token-0123456789abcdef";

const RULE: &str = r#"id = "api-down"
title = "API unreachable"
severity = "critical"
when = '!probes["api"].ok'
symptom = "Every API request fails."
recovery = "Check the API pods."
runbook = "runbook#api-down"
"#;

#[tokio::test]
async fn outside_text_is_logged_escaped_on_one_line() {
    init();
    let hook = Receiver::start().await;
    hook.fail_next_with(
        1000,
        401,
        "denied\r\n2026-01-01T00:00:00Z  INFO forged\x1b[2J\n",
    );
    let dir = TempDir::new("daemon-logs");
    let (listen, api_port) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("probes.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{listen}\"\n\n\
             [alerting]\ngroup_wait = \"200ms\"\ngroup_interval = \"0s\"\n\n\
             [api]\ntoken = \"{TOKEN}\"\n\n\
             [[probe]]\nname = \"api\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{api_port}/\"\n\
             interval = \"1s\"\ntimeout = \"1s\"\n\n\
             [[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url("/hook")
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("alerts")).unwrap();
    std::fs::write(dir.path().join("alerts/api-down.toml"), RULE).unwrap();
    let log_path = dir.path().join("honeyguide.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_honeyguide"));
    command
        .args(["run"])
        .current_dir(dir.path())
        .env("HONEYGUIDE_LOG", "info");
    let mut daemon = ChildGuard::spawn("honeyguide", &mut command, &log_path);
    wait_for_tcp(([127, 0, 0, 1], listen).into(), WAIT);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let created = reqwest::Client::new()
        .request(
            Method::POST,
            format!("http://127.0.0.1:{listen}/api/silences"),
        )
        .bearer_auth(TOKEN)
        .json(&json!({
            "alerts": ["other-*"],
            "duration": "1h",
            "comment": "draining node 2\n2026-01-01T00:00:00Z  INFO forged\x1b[31m red",
            "created_by": "ana\r\nroot",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    eventually(
        "the silence and the refused delivery logged",
        WAIT,
        || async {
            let log = log();
            (log.contains("silence created") && log.contains("failed permanently")).then_some(())
        },
    )
    .await;
    // A few more runs and a retry window, so that a repeated failure would show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    daemon.stop_with("TERM");
    let log = log();

    assert!(!log.contains('\x1b'), "a raw escape in the log:\n{log:?}");
    assert!(
        !log.contains('\r'),
        "a raw carriage return in the log:\n{log:?}"
    );
    for line in log.lines() {
        assert!(
            line.len() > 30 && line.as_bytes()[..4].iter().all(u8::is_ascii_digit),
            "a line that is not a log event (forged or broken):\n{line:?}\n\n{log}"
        );
        // The forged text shows only inside the fields that quote it, never as a line of its own.
        if line.contains("forged") {
            assert!(
                line.contains("silence created") || line.contains("notification delivery failed"),
                "a forged log line:\n{line:?}\n\n{log}"
            );
        }
    }
    let silence = log
        .lines()
        .find(|line| line.contains("silence created"))
        .unwrap();
    assert!(
        silence.contains(
            "comment=draining node 2\\n2026-01-01T00:00:00Z  INFO forged\\x1b[31m red \
             created_by=ana\\r\\nroot"
        ),
        "{silence}"
    );
    let refused: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("notification delivery failed"))
        .collect();
    assert_eq!(refused.len(), 1, "said once, not at every retry:\n{log}");
    assert!(refused[0].contains(" ERROR "), "{}", refused[0]);
    assert!(
        refused[0].contains(
            "HTTP 401: denied\\r\\n2026-01-01T00:00:00Z  INFO forged\\x1b[2J attempt=1 retry_in=5m"
        ),
        "{}",
        refused[0]
    );
    assert!(
        refused[0].contains("the notifier's credentials, URL or addresses are fixed"),
        "{}",
        refused[0]
    );
}
