//! Delivery across a `kill -9` of the real `honeyguide` binary, with a real rule firing on a
//! probe of a closed port: what the store committed is delivered after the restart exactly
//! once, and nothing is announced twice.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::alerting::Receiver;
use crate::support::{ChildGuard, TempDir, eventually, free_port, init, wait_for_tcp};

const WAIT: Duration = Duration::from_secs(20);

const RULE: &str = r#"id = "api-down"
title = "API unreachable"
severity = "critical"
when = '!probes["api"].ok'
symptom = "Every API request fails."
recovery = "Check the API pods."
runbook = "runbook#api-down"
"#;

/// A daemon directory: probes.toml (one http probe of `api_port`, one webhook notifier) and the
/// rule above in alerts/.
fn setup(dir: &Path, listen: u16, api_port: u16, hook: &str, group_wait: &str) {
    std::fs::write(
        dir.join("probes.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{listen}\"\n\n\
             [alerting]\ngroup_wait = \"{group_wait}\"\ngroup_interval = \"0s\"\n\n\
             [[probe]]\nname = \"api\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{api_port}/health\"\n\
             interval = \"1s\"\ntimeout = \"1s\"\n\n\
             [[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{hook}\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("alerts")).unwrap();
    std::fs::write(dir.join("alerts/api-down.toml"), RULE).unwrap();
}

fn start(dir: &TempDir, run: usize) -> ChildGuard {
    let mut command = Command::new(env!("CARGO_BIN_EXE_honeyguide"));
    command
        .args(["run", "--config", "probes.toml", "--alerts", "alerts"])
        .current_dir(dir.path())
        .env("HONEYGUIDE_LOG", "info");
    ChildGuard::spawn(
        "honeyguide",
        &mut command,
        &dir.path().join(format!("honeyguide-{run}.log")),
    )
}

async fn status(port: u16) -> Option<Value> {
    reqwest::get(format!("http://127.0.0.1:{port}/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

fn log(dir: &TempDir, run: usize) -> String {
    std::fs::read_to_string(dir.path().join(format!("honeyguide-{run}.log"))).unwrap_or_default()
}

/// `kill -9` while the firing message waits in the outbox (the receiver is down): after the
/// restart it is delivered exactly once, the restored alert is not announced again, and when
/// the failure ends the resolve follows, once.
#[tokio::test]
async fn kill_9_with_the_message_queued_delivers_it_once_after_restart() {
    init();
    let mut hook = Receiver::start().await;
    hook.stop();
    let dir = TempDir::new("kill9-queued");
    let (listen, api_port) = (free_port(), free_port());
    setup(dir.path(), listen, api_port, &hook.url("/hook"), "200ms");

    let mut first = start(&dir, 1);
    wait_for_tcp(([127, 0, 0, 1], listen).into(), WAIT);
    eventually(
        "the firing message queued, its delivery failing",
        WAIT,
        || async {
            let status = status(listen).await?;
            let notifier = &status["notifiers"][0];
            let alert = &status["alerts"][0];
            (alert["id"] == "api-down"
                && alert["state"] == "firing"
                && notifier["outbox_depth"] == 1
                && notifier["failed"].as_u64() >= Some(1))
            .then_some(())
        },
    )
    .await;
    first.kill();

    hook.restart().await;
    let _second = start(&dir, 2);
    let received = hook.wait_for(1, WAIT).await;
    let firing = received[0].json();
    assert_eq!(firing["status"], "firing", "{firing}");
    assert_eq!(firing["alerts"][0]["labels"]["alertname"], "api-down");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        hook.received().len(),
        1,
        "delivered once, not announced again\n{}",
        log(&dir, 2)
    );

    // The API comes back: the rule stops holding, the alert resolves, the resolve is sent once.
    let _api = Receiver::start_on(api_port).await;
    let both = hook.wait_for(2, WAIT).await;
    assert_eq!(both[1].json()["status"], "resolved");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook.received().len(), 2, "{}", log(&dir, 2));
    let status = status(listen).await.unwrap();
    assert_eq!(status["alerts"][0]["state"], "resolved");
    assert_eq!(status["notifiers"][0]["outbox_depth"], 0);
}

/// `kill -9` after the alert fired but before its message was queued (inside group wait): the
/// firing state was committed, so after the restart the message is sent, exactly once.
#[tokio::test]
async fn kill_9_inside_group_wait_still_announces_once_after_restart() {
    init();
    let hook = Receiver::start().await;
    let dir = TempDir::new("kill9-group-wait");
    let (listen, api_port) = (free_port(), free_port());
    setup(dir.path(), listen, api_port, &hook.url("/hook"), "5s");

    let mut first = start(&dir, 1);
    wait_for_tcp(([127, 0, 0, 1], listen).into(), WAIT);
    eventually("the alert firing, not yet sent", WAIT, || async {
        let status = status(listen).await?;
        let alert = &status["alerts"][0];
        (alert["state"] == "firing" && alert["last_notified"].is_null()).then_some(())
    })
    .await;
    first.kill();
    assert!(
        hook.received().is_empty(),
        "killed before the group wait ended"
    );

    let _second = start(&dir, 2);
    let received = hook.wait_for(1, WAIT).await;
    assert_eq!(
        received[0].json()["alerts"][0]["labels"]["alertname"],
        "api-down"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hook.received().len(), 1, "{}", log(&dir, 2));
}
