//! The status page in a real browser (headless Chromium): what on-call sees when a node of the
//! stack is down, on a desktop and on a phone, in light and dark mode. Screenshots are saved
//! under `screenshots/` in Cargo's temporary directory for integration tests
//! (`$CARGO_TARGET_DIR/tmp`) for review; `docs/status-page.png` is the desktop one.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::Locator;
use serde_json::json;

use crate::support::alerting::Receiver;
use crate::support::browser::Browser;
use crate::support::daemon::TestDaemon;
use crate::support::http_server::{HttpServer, Route};
use crate::support::{self};

/// The shipped rules about the origin nodes, with their `for` shortened so the test need not
/// wait a minute for the diagnosis to be confirmed. (Not api-crashloop: it reads the `k8s`
/// probe too, for its evidence, and this daemon probes only the edge and the origins.)
const ORIGIN_RULES: [&str; 3] = ["one-node-down", "two-nodes-down", "some-users-502"];

fn shipped_rule_with_short_for(id: &str) -> (String, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("alerts/{id}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\nfor = \"1m\"\n"), "{id} waits 1m");
    (
        format!("{id}.toml"),
        text.replace("\nfor = \"1m\"\n", "\nfor = \"2s\"\n"),
    )
}

fn health_server() -> impl std::future::Future<Output = HttpServer> {
    HttpServer::builder()
        .route(
            "/api/health/",
            Route::ok(r#"{"status":"ok"}"#).header("content-type", "application/json"),
        )
        .start()
}

/// The honeyDue edge and origin probes of the shipped `probes.toml`, pointed at local servers:
/// the origins pinned with `connect_to`, as in production; a webhook for on-call, and a k3s
/// upgrade planned for the day after tomorrow.
fn probes_toml(edge: &HttpServer, origins: [u16; 3], oncall: &Receiver) -> String {
    let upgrade = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(48);
    let mut toml = format!(
        "[alerting]\ngroup_wait = \"200ms\"\ngroup_interval = \"0s\"\n\n\
         [[notifier]]\nname = \"oncall-webhook\"\nkind = \"webhook\"\nurl = \"{}\"\n\n\
         [[maintenance]]\nname = \"k3s-upgrade\"\n\
         alerts = [\"one-node-down\", \"two-nodes-down\"]\nstart = \"{upgrade}\"\n\
         end = \"{}\"\ncomment = \"k3s upgrade: nodes drain one at a time\"\n\n\
         [defaults]\ninterval = \"1s\"\ntimeout = \"1s\"\n\n\
         [[probe]]\nname = \"edge-api\"\nkind = \"http\"\nurl = \"{}\"\n\
         labels = {{ layer = \"edge\", service = \"api\" }}\n",
        oncall.url("/hook"),
        upgrade + jiff::SignedDuration::from_hours(2),
        edge.url("/api/health/")
    );
    for (i, port) in origins.iter().enumerate() {
        toml.push_str(&format!(
            "\n[[probe]]\nname = \"origin-{n}\"\nkind = \"http\"\n\
             url = \"http://api.myhoneydue.com/api/health/\"\nconnect_to = \"127.0.0.1:{port}\"\n\
             labels = {{ layer = \"origin\", node = \"{n}\" }}\n",
            n = i + 1
        ));
    }
    toml
}

fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("screenshots/{name}"))
}

/// With one origin node stopped, the page shows the confirmed "one node unreachable" diagnosis
/// first, its title and recovery steps visible (not merely present in the DOM), the failing
/// probe's message as evidence, and that on-call was notified through the webhook; the planned
/// maintenance window is listed; on a 390 px phone nothing overflows sideways; dark mode applies;
/// the script refreshes the page in place and says so when honeyguide stops answering.
#[tokio::test]
async fn on_call_sees_the_diagnosis_and_its_recovery_in_a_browser() {
    support::init();
    let edge = health_server().await;
    let origins = [
        health_server().await,
        health_server().await,
        health_server().await,
    ];
    let ports = [origins[0].port(), origins[1].port(), origins[2].port()];
    let [origin_1, origin_2, origin_3] = origins;
    // Node 2 goes away: its port now refuses connections.
    drop(origin_2);
    let rules: Vec<(String, String)> = ORIGIN_RULES
        .iter()
        .map(|id| shipped_rule_with_short_for(id))
        .collect();
    let rules: Vec<(&str, &str)> = rules
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();
    let oncall = Receiver::start().await;
    let daemon = TestDaemon::start_with_alerts(&probes_toml(&edge, ports, &oncall), &rules).await;
    let diagnosis = support::eventually(
        "one-node-down to be active and notified",
        Duration::from_secs(20),
        || async {
            let status = daemon.status().await;
            let notified = status["alerts"].as_array()?.iter().any(|alert| {
                alert["id"] == "one-node-down" && alert["notified"] == json!(["oncall-webhook"])
            });
            let diagnoses = status["diagnoses"].as_array().cloned().unwrap_or_default();
            diagnoses
                .into_iter()
                .find(|d| d["id"] == "one-node-down" && d["state"] == "active")
                .filter(|_| notified)
        },
    )
    .await;
    oncall.wait_for(1, Duration::from_secs(10)).await;
    let refused = diagnosis["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|evidence| evidence["probe"] == "origin-2")
        .and_then(|evidence| evidence["message"].as_str())
        .unwrap()
        .to_owned();
    // Let the other origins collect a few runs for their sparklines.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let browser = Browser::start(1280, 900).await;
    browser.color_scheme("light").await;
    browser.client.goto(&daemon.base_url).await.unwrap();

    let title = browser
        .client
        .find(Locator::Css("#d-one-node-down h3"))
        .await
        .expect("the diagnosis card");
    assert_eq!(
        title.text().await.unwrap(),
        "One node unreachable (NIC or node failure)"
    );
    assert!(title.is_displayed().await.unwrap(), "title visible");
    let recovery = browser
        .client
        .find(Locator::Css("#d-one-node-down .recovery"))
        .await
        .unwrap();
    assert!(recovery.is_displayed().await.unwrap(), "recovery visible");
    let steps = recovery.text().await.unwrap();
    assert!(
        steps.contains("Confirm the node is NotReady: kubectl get nodes."),
        "{steps}"
    );
    let evidence = browser
        .client
        .find(Locator::Css("#d-one-node-down .evidence li.fail"))
        .await
        .unwrap();
    assert_eq!(
        evidence.text().await.unwrap(),
        format!("✖ Fail origin-2 {refused}")
    );
    let notified = browser
        .client
        .find(Locator::Css("#d-one-node-down .notified"))
        .await
        .expect("the notified line");
    assert!(notified.is_displayed().await.unwrap(), "notified visible");
    let notified_text = notified.text().await.unwrap();
    assert!(
        notified_text.starts_with("✔ Notified ") && notified_text.ends_with(" via oncall-webhook."),
        "{notified_text}"
    );
    let window = browser
        .client
        .find(Locator::Css("#s-k3s-upgrade"))
        .await
        .expect("the planned window");
    let window_text = window.text().await.unwrap();
    assert!(
        window_text.starts_with(
            "◔ Scheduled k3s-upgrade (maintenance): covers one-node-down, two-nodes-down; from "
        ),
        "{window_text}"
    );
    let verdict = browser
        .client
        .find(Locator::Css("h1.verdict"))
        .await
        .unwrap();
    assert_eq!(
        verdict.text().await.unwrap(),
        "▲ Warning One node unreachable (NIC or node failure)"
    );
    assert!(
        browser
            .client
            .title()
            .await
            .unwrap()
            .starts_with("Warning: One node unreachable"),
        "the tab says it too"
    );
    // The first probe row is the failing one.
    let first_row = browser
        .client
        .find(Locator::Css("table.probes tbody tr"))
        .await
        .unwrap();
    assert_eq!(
        first_row.attr("id").await.unwrap().as_deref(),
        Some("p-origin-2")
    );
    browser
        .screenshot_page(&screenshot_path("status-page.png"), 1280, false)
        .await;

    // A phone: the body never scrolls sideways, the title and recovery are still visible.
    browser.viewport(390, 844, true).await;
    let overflow = browser
        .eval(
            "const root = document.documentElement;\
             return [root.scrollWidth, root.clientWidth, document.body.scrollWidth];",
        )
        .await;
    let widths: Vec<u64> = overflow
        .as_array()
        .unwrap()
        .iter()
        .map(|width| width.as_u64().unwrap())
        .collect();
    assert!(
        widths[0] <= widths[1] && widths[2] <= widths[1],
        "horizontal overflow on a phone: scrollWidth {} / body {} > clientWidth {}",
        widths[0],
        widths[2],
        widths[1]
    );
    assert!(title.is_displayed().await.unwrap());
    assert!(recovery.is_displayed().await.unwrap());
    browser
        .screenshot_page(&screenshot_path("status-page-phone.png"), 390, true)
        .await;

    // Dark mode: the page follows the system preference.
    browser.viewport(1280, 900, false).await;
    browser.color_scheme("dark").await;
    assert_eq!(
        browser
            .eval("return getComputedStyle(document.body).backgroundColor;")
            .await,
        json!("rgb(13, 16, 21)")
    );
    browser
        .screenshot_page(&screenshot_path("status-page-dark.png"), 1280, false)
        .await;

    // The script (allowed by the page's policy) refreshes the page in place...
    browser
        .eval(
            "document.getElementById('page').dataset.old = 'yes';\
             document.dispatchEvent(new Event('visibilitychange'));",
        )
        .await;
    support::eventually(
        "the page to refresh in place",
        Duration::from_secs(10),
        || async {
            let old = browser
                .eval("return document.getElementById('page').dataset.old || null;")
                .await;
            old.is_null().then_some(())
        },
    )
    .await;
    // ...and says so loudly when honeyguide stops answering, keeping what it last showed.
    daemon.stop().await;
    browser
        .eval("document.dispatchEvent(new Event('visibilitychange'));")
        .await;
    let banner = support::eventually("the stale banner", Duration::from_secs(10), || async {
        let banner = browser.client.find(Locator::Css("#stale")).await.ok()?;
        banner.is_displayed().await.ok()?.then_some(banner)
    })
    .await;
    let text = banner.text().await.unwrap();
    assert!(text.starts_with("Not updated since "), "{text}");
    assert!(
        text.ends_with("(honeyguide is not answering): what you see may be out of date."),
        "{text}"
    );
    assert!(
        browser
            .client
            .find(Locator::Css("#d-one-node-down h3"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "the last known diagnosis stays on screen"
    );
    browser.close().await;
    drop((origin_1, origin_3, edge, oncall));
}
