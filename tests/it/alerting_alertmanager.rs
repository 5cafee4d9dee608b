//! The `alertmanager` notifier against a real Alertmanager (Debian `prometheus-alertmanager`):
//! what it holds after a push (read back from `/api/v2/alerts`), how re-sends keep it alive,
//! how a resolve closes it, and how two honeyguide instances become one alert.

use std::time::Duration;

use serde_json::Value;

use crate::support::alerting::{Alertmanager, Receiver, Script, active};
use crate::support::daemon::TestDaemon;
use crate::support::eventually;

const WAIT: Duration = Duration::from_secs(20);

fn toml(alertmanager: &Alertmanager) -> String {
    format!(
        "[alerting]\ngroup_wait = \"200ms\"\ngroup_interval = \"0s\"\n\n\
         [[notifier]]\nname = \"am\"\nkind = \"alertmanager\"\nurls = [\"{}\"]\nresend_interval = \"1s\"\n",
        alertmanager.url
    )
}

async fn held(alertmanager: &Alertmanager, id: &str) -> Option<Value> {
    alertmanager
        .alerts()
        .await
        .into_iter()
        .find(|alert| alert["labels"]["alertname"] == id)
}

fn ends_at(alert: &Value) -> jiff::Timestamp {
    alert["endsAt"].as_str().unwrap().parse().unwrap()
}

/// A firing alert pushed to Alertmanager is held there as active with honeyguide's labels and
/// annotations, the fingerprint Alertmanager computes is the one honeyguide's webhook payload
/// carries, re-sends move `endsAt` forward, Alertmanager notifies its own receiver, and the
/// resolve reaches that receiver as resolved.
#[tokio::test]
async fn alertmanager_holds_refreshes_and_resolves_the_alert() {
    crate::support::init();
    let am_receiver = Receiver::start().await;
    let alertmanager = Alertmanager::start(&am_receiver.url("/from-am")).await;
    let script = Script::new();
    let daemon = TestDaemon::start_with(&toml(&alertmanager), script.feed()).await;
    script.set(vec![active("neon-down")]);

    let alert = eventually("the alert in Alertmanager", WAIT, || async {
        held(&alertmanager, "neon-down").await
    })
    .await;
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["layer"], "db");
    assert_eq!(
        alert["annotations"]["summary"],
        "API requests fail with HTTP 500"
    );
    assert_eq!(
        alert["annotations"]["runbook_url"],
        "https://runbooks.example/neon-down"
    );
    let labels: std::collections::BTreeMap<String, String> =
        serde_json::from_value(alert["labels"].clone()).unwrap();
    assert_eq!(
        alert["fingerprint"].as_str().unwrap(),
        honeyguide::notify::render::fingerprint(&labels)
    );
    let first_end = ends_at(&alert);
    assert!(
        first_end > jiff::Timestamp::now(),
        "endsAt is in the future"
    );

    let refreshed = eventually("a re-send moving endsAt forward", WAIT, || async {
        let alert = held(&alertmanager, "neon-down").await?;
        (ends_at(&alert) > first_end).then_some(alert)
    })
    .await;
    assert_eq!(refreshed["status"]["state"], "active");

    let from_am = am_receiver.wait_for(1, WAIT).await;
    let payload = from_am[0].json();
    assert_eq!(payload["status"], "firing", "{payload}");
    assert_eq!(payload["alerts"][0]["labels"]["alertname"], "neon-down");

    script.set(vec![]);
    eventually("Alertmanager's resolved notification", WAIT, || async {
        am_receiver
            .received()
            .iter()
            .any(|message| message.json()["status"] == "resolved")
            .then_some(())
    })
    .await;
    let after = held(&alertmanager, "neon-down").await;
    assert!(
        after.is_none_or(|alert| ends_at(&alert) <= jiff::Timestamp::now()),
        "resolved in Alertmanager"
    );
    daemon.stop().await;
}

/// Two honeyguide instances watching the same stack push identical alerts; Alertmanager holds
/// one and notifies once: this is how several instances are deduplicated.
#[tokio::test]
async fn two_instances_become_one_alert_in_alertmanager() {
    crate::support::init();
    let am_receiver = Receiver::start().await;
    let alertmanager = Alertmanager::start(&am_receiver.url("/from-am")).await;
    let script = Script::new();
    let first = TestDaemon::start_with(&toml(&alertmanager), script.feed()).await;
    let second = TestDaemon::start_with(&toml(&alertmanager), script.feed()).await;
    script.set(vec![active("neon-down")]);
    am_receiver.wait_for(1, WAIT).await;
    // Both have pushed (and re-pushed) by now.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let alerts = alertmanager.alerts().await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let firing: Vec<Value> = am_receiver
        .received()
        .iter()
        .map(|message| message.json())
        .filter(|payload| payload["status"] == "firing")
        .collect();
    assert_eq!(firing.len(), 1, "{firing:?}\n{}", alertmanager.log());
    first.stop().await;
    second.stop().await;
}
