//! Alerting end to end through a whole daemon: a scripted classifier says which failure modes
//! hold, and real HTTP receivers (an in-process axum server) get what a team would get. Timing
//! here is real but short (group wait of a few hundred milliseconds); the timing rules
//! themselves are pinned with paused time in `src/alert/engine/tests.rs`.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::alerting::{Receiver, Script, active};
use crate::support::daemon::{TestDaemon, sample};

const WAIT: Duration = Duration::from_secs(10);
const TOKEN: &str = "test-token-0123456789abcdef";

fn webhook_toml(receiver: &Receiver, extra: &str) -> String {
    format!(
        r#"
[alerting]
group_wait = "200ms"
group_interval = "0s"
{extra}

[[notifier]]
name = "hook"
kind = "webhook"
url = "{}"
secret = "webhook-secret"
"#,
        receiver.url("/hook")
    )
}

fn verify_signature(received: &crate::support::alerting::Received) {
    let mut mac = Hmac::<Sha256>::new_from_slice(b"webhook-secret").unwrap();
    mac.update(&received.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(
        received.header("x-honeyguide-signature"),
        format!("sha256={expected}")
    );
}

/// The `/status` entry of alert `id`.
async fn alert(daemon: &TestDaemon, id: &str) -> Value {
    let status = daemon.status().await;
    status["alerts"]
        .as_array()
        .and_then(|alerts| alerts.iter().find(|alert| alert["id"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("no alert {id} in /status: {status}"))
}

/// The `/status` entry of notifier `name`.
async fn notifier(daemon: &TestDaemon, name: &str) -> Value {
    let status = daemon.status().await;
    status["notifiers"]
        .as_array()
        .and_then(|notifiers| notifiers.iter().find(|notifier| notifier["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no notifier {name} in /status: {status}"))
}

/// Fire then resolve sends exactly two webhooks: Alertmanager's version-4 payload (alertname,
/// status, summary, recovery, runbook_url), HMAC-signed, each with its own idempotency key; and
/// `/status` and `/metrics` tell the story.
#[tokio::test]
async fn fire_then_resolve_sends_exactly_two_signed_webhooks() {
    crate::support::init();
    let receiver = Receiver::start().await;
    let script = Script::new();
    let daemon = TestDaemon::start_with(&webhook_toml(&receiver, ""), script.feed()).await;

    script.set(vec![active("neon-down")]);
    let firing = receiver.wait_for(1, WAIT).await;
    let payload = firing[0].json();
    assert_eq!(firing[0].method, Method::POST);
    assert_eq!(firing[0].path, "/hook");
    assert_eq!(payload["version"], "4");
    assert_eq!(payload["status"], "firing");
    assert_eq!(payload["receiver"], "hook");
    let sent = &payload["alerts"][0];
    assert_eq!(sent["status"], "firing");
    assert_eq!(
        sent["labels"],
        json!({"alertname": "neon-down", "severity": "critical", "layer": "db"})
    );
    assert_eq!(
        sent["annotations"]["summary"],
        "API requests fail with HTTP 500"
    );
    assert_eq!(
        sent["annotations"]["description"],
        "db-pooler: connect: connection refused (127.0.0.1:6543)"
    );
    assert!(
        sent["annotations"]["recovery"]
            .as_str()
            .unwrap()
            .contains("**pooler**")
    );
    assert_eq!(
        sent["annotations"]["runbook_url"],
        "https://runbooks.example/neon-down"
    );
    assert_eq!(sent["endsAt"], "0001-01-01T00:00:00Z");
    verify_signature(&firing[0]);
    let first_id = firing[0].header("x-honeyguide-notification-id").to_owned();
    assert_eq!(first_id.len(), 32);
    assert_eq!(firing[0].header("idempotency-key"), first_id);

    let alert_status = alert(&daemon, "neon-down").await;
    assert_eq!(alert_status["state"], "firing");
    assert_eq!(alert_status["notified"], json!(["hook"]));
    assert!(alert_status["last_notified"].is_string());

    script.set(vec![]);
    let both = receiver.wait_for(2, WAIT).await;
    let resolved = both[1].json();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    verify_signature(&both[1]);
    assert_ne!(both[1].header("x-honeyguide-notification-id"), first_id);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 2, "exactly two messages");
    let status = daemon.status().await.to_string();
    assert!(
        !status.contains("webhook-secret"),
        "the HMAC key never shows"
    );
    assert!(
        both.iter()
            .all(|message| !String::from_utf8_lossy(&message.body).contains("webhook-secret"))
    );
    assert_eq!(alert(&daemon, "neon-down").await["state"], "resolved");
    let metrics = daemon.metrics().await;
    for (series, value) in [
        (
            "honeyguide_alerts{id=\"neon-down\",state=\"resolved\"}",
            1.0,
        ),
        ("honeyguide_alerts{id=\"neon-down\",state=\"firing\"}", 0.0),
        (
            "honeyguide_notifications_total{notifier=\"hook\",result=\"delivered\"}",
            2.0,
        ),
        (
            "honeyguide_notifications_total{notifier=\"hook\",result=\"failed\"}",
            0.0,
        ),
        ("honeyguide_outbox_depth{notifier=\"hook\"}", 0.0),
    ] {
        assert_eq!(sample(&metrics, series), Some(value), "{series}\n{metrics}");
    }
    daemon.stop().await;
}

/// Failure modes that start together arrive as one message listing all of them.
#[tokio::test]
async fn alerts_starting_together_arrive_in_one_message() {
    crate::support::init();
    let receiver = Receiver::start().await;
    let script = Script::new();
    let daemon = TestDaemon::start_with(
        &webhook_toml(&receiver, "").replace("\"200ms\"", "\"1s\""),
        script.feed(),
    )
    .await;
    script.set(vec![active("cf-global")]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    script.set(vec![active("cf-global"), active("edge-5xx")]);
    let received = receiver.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.received().len(), 1);
    let names: Vec<String> = received[0].json()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|alert| alert["labels"]["alertname"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["cf-global", "edge-5xx"]);
    daemon.stop().await;
}

/// An inhibited alert is not sent, `/status` and the page say who inhibits it, and it is sent
/// once the inhibiting failure mode is gone while it still holds.
#[tokio::test]
async fn inhibited_alerts_are_shown_not_sent_then_sent_when_the_inhibitor_ends() {
    crate::support::init();
    let receiver = Receiver::start().await;
    let script = Script::new();
    let daemon = TestDaemon::start_with(&webhook_toml(&receiver, ""), script.feed()).await;
    let mut edge = active("edge-5xx");
    edge.inhibited_by = Some("cf-global".into());
    script.set(vec![active("cf-global"), edge.clone()]);
    let first = receiver.wait_for(1, WAIT).await;
    assert_eq!(first[0].json()["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(
        first[0].json()["alerts"][0]["labels"]["alertname"],
        "cf-global"
    );
    let edge_status = alert(&daemon, "edge-5xx").await;
    assert_eq!(edge_status["state"], "firing");
    assert_eq!(edge_status["inhibited_by"], "cf-global");
    assert_eq!(edge_status["notified"], json!([]));
    let page = daemon.get("/").await.text().await.unwrap();
    let item = page
        .split("<li id=\"d-edge-5xx\">")
        .nth(1)
        .and_then(|rest| rest.split("</li>").next())
        .unwrap_or_else(|| panic!("edge-5xx is not listed under its cause: {page}"));
    assert!(
        item.contains(
            "Not notified</span> inhibited by <a href=\"#d-cf-global\">cf-global</a>, which \
             explains it."
        ),
        "{item}"
    );
    let metrics = daemon.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "honeyguide_alerts_suppressed{reason=\"inhibited\"}"
        ),
        Some(1.0)
    );

    edge.inhibited_by = None;
    script.set(vec![edge]);
    let both = receiver.wait_for(2, WAIT).await;
    let statuses: Vec<(String, String)> = both[1].json()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|alert| {
            (
                alert["labels"]["alertname"].as_str().unwrap().to_owned(),
                alert["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("edge-5xx".to_owned(), "firing".to_owned()),
            ("cf-global".to_owned(), "resolved".to_owned())
        ]
    );
    daemon.stop().await;
}

/// A firing alert is re-sent after the repeat interval.
#[tokio::test]
async fn a_firing_alert_is_repeated() {
    crate::support::init();
    let receiver = Receiver::start().await;
    let script = Script::new();
    let daemon = TestDaemon::start_with(
        &webhook_toml(&receiver, "repeat_interval = \"1s\""),
        script.feed(),
    )
    .await;
    script.set(vec![active("neon-down")]);
    let received = receiver.wait_for(3, WAIT).await;
    for message in &received {
        assert_eq!(
            message.json()["alerts"][0]["labels"]["alertname"],
            "neon-down"
        );
        assert_eq!(message.json()["status"], "firing");
    }
    let ids: std::collections::BTreeSet<&str> = received
        .iter()
        .map(|message| message.header("x-honeyguide-notification-id"))
        .collect();
    assert_eq!(
        ids.len(),
        received.len(),
        "every repeat is a new notification"
    );
    daemon.stop().await;
}

/// A receiver answering 500 is retried with backoff until it accepts; the same notification
/// id is sent every time, and the failures are counted.
#[tokio::test]
async fn a_failing_receiver_is_retried_with_the_same_idempotency_key() {
    crate::support::init();
    let receiver = Receiver::start().await;
    receiver.fail_next(2);
    let script = Script::new();
    let daemon = TestDaemon::start_with(&webhook_toml(&receiver, ""), script.feed()).await;
    script.set(vec![active("neon-down")]);
    let received = receiver.wait_for(3, Duration::from_secs(20)).await;
    let ids: Vec<&str> = received
        .iter()
        .map(|message| message.header("idempotency-key"))
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let hook = notifier(&daemon, "hook").await;
    assert_eq!(hook["failed"], 2);
    assert_eq!(hook["delivered"], 1);
    assert_eq!(hook["outbox_depth"], 0);
    assert_eq!(hook["last_error"], Value::Null);
    daemon.stop().await;
}

/// The silences API is off without a token (404), refuses a missing or wrong token (401), and
/// with the right one creates a silence that holds a matching alert (shown in `/status`, not
/// sent); when the silence expires while the alert still fires, the alert is sent.
#[tokio::test]
async fn an_api_silence_suppresses_and_its_expiry_renotifies() {
    crate::support::init();
    let off = TestDaemon::start("").await;
    let response = off
        .request(Method::GET, "/api/silences")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("the API is off"));
    off.stop().await;

    let receiver = Receiver::start().await;
    let script = Script::new();
    let daemon = TestDaemon::start_with(
        &webhook_toml(&receiver, &format!("[api]\ntoken = \"{TOKEN}\"\n")),
        script.feed(),
    )
    .await;
    let unauthenticated = daemon
        .request(Method::GET, "/api/silences")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(
        unauthenticated.headers()["www-authenticate"],
        "Bearer realm=\"honeyguide\""
    );
    let wrong = daemon
        .request(Method::GET, "/api/silences")
        .bearer_auth("test-token-0123456789abcdeX")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let created = daemon
        .request(Method::POST, "/api/silences")
        .bearer_auth(TOKEN)
        .json(&json!({
            "alerts": ["origin-*"],
            "duration": "3s",
            "comment": "draining node 2",
            "created_by": "ana",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "active");
    assert_eq!(created["source"], "api");
    assert_eq!(created["created_by"], "ana");

    script.set(vec![active("origin-node-down")]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        receiver.received().is_empty(),
        "silenced alerts are not sent"
    );
    let held = alert(&daemon, "origin-node-down").await;
    assert_eq!(held["state"], "firing");
    assert_eq!(held["silenced_by"], json!([id]));
    let listed: Value = daemon
        .request(Method::GET, "/api/silences")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(
        daemon.status().await["silences"][0]["comment"],
        "draining node 2"
    );

    let sent = receiver.wait_for(1, WAIT).await;
    assert_eq!(
        sent[0].json()["alerts"][0]["labels"]["alertname"],
        "origin-node-down"
    );
    assert_eq!(sent[0].json()["alerts"][0]["status"], "firing");
    assert_eq!(
        alert(&daemon, "origin-node-down").await["silenced_by"],
        json!([])
    );
    daemon.stop().await;
}

/// Deleting an API silence expires it at once (the alert it held is sent); silences survive a
/// restart; maintenance windows from the file cannot be deleted through the API.
#[tokio::test]
async fn deleting_a_silence_expires_it_and_silences_survive_restart() {
    crate::support::init();
    let receiver = Receiver::start().await;
    let script = Script::new();
    let toml = webhook_toml(
        &receiver,
        &format!(
            "[api]\ntoken = \"{TOKEN}\"\n\n[[maintenance]]\nname = \"b2-weekly\"\nalerts = [\"b2-*\"]\n\
             weekly = {{ day = \"thu\", start = \"11:30\", end = \"13:30\", timezone = \"America/Los_Angeles\" }}\n"
        ),
    );
    let daemon = TestDaemon::start_with(&toml, script.feed()).await;
    let created: Value = daemon
        .request(Method::POST, "/api/silences")
        .bearer_auth(TOKEN)
        .json(&json!({
            "matchers": {"layer": "db"},
            "duration": "1h",
            "comment": "neon maintenance",
            "created_by": "ops",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    script.set(vec![active("neon-down")]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(receiver.received().is_empty());

    let refused = daemon
        .request(Method::DELETE, "/api/silences/b2-weekly")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    let missing = daemon
        .request(Method::DELETE, "/api/silences/nope")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let expired = daemon
        .request(Method::DELETE, &format!("/api/silences/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 200);
    assert_eq!(expired.json::<Value>().await.unwrap()["state"], "expired");
    receiver.wait_for(1, WAIT).await;

    let dir = daemon.stop_keeping_dir().await;
    let daemon = TestDaemon::start_in(dir, &toml, script.feed()).await;
    let listed: Value = daemon
        .request(Method::GET, "/api/silences")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let states: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|silence| {
            (
                silence["id"].as_str().unwrap().to_owned(),
                silence["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(states[0].0, "b2-weekly");
    assert_eq!(states[1], (id, "expired".to_owned()));
    daemon.stop().await;
}

/// A notification decided while its receiver is down waits in the outbox across a restart and
/// is delivered exactly once afterwards; the restored alert is not announced a second time.
#[tokio::test]
async fn an_undelivered_notification_survives_a_restart_and_is_delivered_once() {
    crate::support::init();
    let mut receiver = Receiver::start().await;
    receiver.stop();
    let script = Script::new();
    let toml = webhook_toml(&receiver, "");
    let daemon = TestDaemon::start_with(&toml, script.feed()).await;
    script.set(vec![active("neon-down")]);
    crate::support::eventually("a failed delivery", WAIT, || async {
        let hook = notifier(&daemon, "hook").await;
        (hook["failed"].as_u64() >= Some(1) && hook["outbox_depth"] == 1).then_some(())
    })
    .await;
    let hook = notifier(&daemon, "hook").await;
    let error = hook["last_error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "http://{}/…: error sending request",
            receiver.addr
        )),
        "{error}"
    );
    assert!(
        !error.contains("/hook"),
        "the path of a webhook URL may be secret: {error}"
    );
    let dir = daemon.stop_keeping_dir().await;

    receiver.restart().await;
    let daemon = TestDaemon::start_in(dir, &toml, script.feed()).await;
    let received = receiver.wait_for(1, WAIT).await;
    assert_eq!(
        received[0].json()["alerts"][0]["labels"]["alertname"],
        "neon-down"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 1, "delivered exactly once");
    let restored = alert(&daemon, "neon-down").await;
    assert_eq!(restored["state"], "firing");
    assert_eq!(restored["notified"], json!(["hook"]));
    daemon.stop().await;
}

/// The heartbeat pings its URL every interval while honeyguide is healthy, counted like any
/// delivery.
#[tokio::test]
async fn the_heartbeat_pings_while_healthy() {
    crate::support::init();
    let receiver = Receiver::start().await;
    let daemon = TestDaemon::start(&format!(
        "[[notifier]]\nname = \"deadman\"\nkind = \"heartbeat\"\nurl = \"{}\"\ninterval = \"1s\"\ntimeout = \"1s\"\n",
        receiver.url("/ping/abc?rid=1")
    ))
    .await;
    let pings = receiver.wait_for(2, WAIT).await;
    assert!(
        pings
            .iter()
            .all(|ping| ping.method == Method::GET && ping.path == "/ping/abc")
    );
    let metrics = daemon.metrics().await;
    assert!(
        sample(
            &metrics,
            "honeyguide_notifications_total{notifier=\"deadman\",result=\"delivered\"}"
        )
        .is_some_and(|count| count >= 2.0),
        "{metrics}"
    );
    daemon.stop().await;
}
