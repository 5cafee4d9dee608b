//! Delivery across a `kill -9` of the real `honeyguide` binary: what the store committed is
//! delivered after the restart, exactly once, in order.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use honeyguide::alert::engine::{AlertState, Changes, StoredAlert};
use honeyguide::alert::notification::{
    AlertMessage, Content, MessageStatus, Notification, Purpose, Reason,
};
use honeyguide::store::StoreHandle;
use serde_json::Value;

use crate::support::alerting::{Receiver, active};
use crate::support::{ChildGuard, TempDir, eventually, free_port, init, wait_for_tcp};

const WAIT: Duration = Duration::from_secs(20);

fn start(dir: &TempDir, run: usize) -> ChildGuard {
    let mut command = Command::new(env!("CARGO_BIN_EXE_honeyguide"));
    command
        .args(["run", "--config", "probes.toml"])
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

/// `kill -9` while two notifications wait in the outbox (the receiver is down): one the store
/// held from before this process started (an alert announced as firing), one this process
/// decided and committed (its resolve). After a restart each is delivered exactly once, in
/// order, with the notification id it was stored with.
#[tokio::test]
async fn kill_9_with_queued_notifications_then_restart_delivers_each_once_in_order() {
    init();
    let mut receiver = Receiver::start().await;
    receiver.stop();
    let dir = TempDir::new("kill9");

    // The state a crash right after "neon-down fired and its message was queued" leaves.
    let content = Content::from_diagnosis(&active("neon-down"));
    let now = jiff::Timestamp::now();
    let store = StoreHandle::open(&dir.path().join("honeyguide.db"))
        .await
        .unwrap();
    store
        .commit(Changes {
            upserts: vec![StoredAlert {
                content: content.clone(),
                state: AlertState::Firing,
                fired_at: Some(now),
                resolved_at: None,
                notified: BTreeSet::from(["hook".to_owned()]),
                last_notified: Some(now),
            }],
            removed: vec![],
            notifications: vec![Notification {
                id: "00000000000000000000000000000f1e".into(),
                notifier: "hook".into(),
                purpose: Purpose::Alerts,
                created_at: now,
                alerts: vec![AlertMessage {
                    status: MessageStatus::Firing,
                    reason: Reason::New,
                    alert: content,
                    ends_at: None,
                }],
            }],
        })
        .await
        .unwrap();
    drop(store);

    let port = free_port();
    std::fs::write(
        dir.path().join("probes.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[alerting]\ngroup_wait = \"200ms\"\n\
             group_interval = \"0s\"\n\n[[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
            receiver.url("/hook")
        ),
    )
    .unwrap();

    // First life: no rule holds neon-down any more, so it resolves; nothing can be delivered.
    let mut first = start(&dir, 1);
    wait_for_tcp(([127, 0, 0, 1], port).into(), WAIT);
    eventually(
        "both notifications queued and a delivery failed",
        WAIT,
        || async {
            let status = status(port).await?;
            let hook = &status["notifiers"][0];
            (hook["outbox_depth"] == 2 && hook["failed"].as_u64() >= Some(1)).then_some(())
        },
    )
    .await;
    first.kill();

    // Second life, receiver back.
    receiver.restart().await;
    let _second = start(&dir, 2);
    let received = receiver.wait_for(2, WAIT).await;
    assert_eq!(
        received[0].header("idempotency-key"),
        "00000000000000000000000000000f1e"
    );
    assert_eq!(received[0].json()["status"], "firing");
    assert_eq!(received[1].json()["status"], "resolved");
    assert_eq!(
        received[1].json()["alerts"][0]["labels"]["alertname"],
        "neon-down"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 2, "each delivered exactly once");
    let status = status(port).await.unwrap();
    assert_eq!(status["notifiers"][0]["outbox_depth"], 0);
    assert_eq!(status["alerts"][0]["state"], "resolved");
    assert_eq!(status["alerts"][0]["notified"], serde_json::json!([]));
}
