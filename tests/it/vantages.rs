//! Several vantages through the metrics stack, with real servers: vmagent (Debian
//! `victoria-metrics`) scraping and shipping into a real VictoriaMetrics.
//!
//! - vmagent's own metrics, scraped by itself and shipped to a working VictoriaMetrics, show
//!   its other remote-write URLs failing: a 401 (a VictoriaMetrics with `-httpAuth`) and a
//!   closed port; the shipped `obs-vmagent` query names the 401 (`non_2xx`), and a
//!   VictoriaMetrics that vmagent cannot reach at all hears nothing of it (`silent`).
//! - End to end: three honeyguide daemons, each with its own `[server] vantage` and its own
//!   loopback edge, scraped by one vmagent that labels each target with its vantage, into
//!   VictoriaMetrics; a fourth daemon runs the shipped `edge-vantages` query and the shipped
//!   Cloudflare rules: the edge failing for one vantage is `cf-edge-pop-outage`, for all of them
//!   `cf-global-outage`, and VictoriaMetrics stopped holds that verdict instead of resolving it.

use std::time::Duration;

use serde_json::Value;

use crate::probe_prometheus::shipped_query;
use crate::support::daemon::TestDaemon;
use crate::support::http_server::{HttpServer, Route};
use crate::support::probes::run_one;
use crate::support::victoria::{ScrapeJob, Victoria, Vmagent};
use crate::support::{TempDir, eventually, free_port, init};

fn prometheus_probe(name: &str, url: &str, query: &str) -> String {
    format!(
        "[[probe]]\nname = \"{name}\"\nkind = \"prometheus\"\ninterval = \"1s\"\ntimeout = \"1s\"\n\
         url = \"{url}\"\nquery = '''{query}'''\n"
    )
}

fn reasons(result: &honeyguide::probe::ProbeResult) -> Vec<(String, String)> {
    let honeyguide::probe::Value::List(items) = &result.observations["series"] else {
        panic!("series: {result:?}");
    };
    items
        .iter()
        .map(|item| {
            let labels = item.as_map().unwrap()["labels"].as_map().unwrap();
            let text = |key: &str| {
                labels
                    .get(key)
                    .and_then(|value| value.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            (text("reason"), text("status_code"))
        })
        .collect()
}

/// vmagent scrapes itself and ships to three URLs: a working VictoriaMetrics, one that answers
/// 401 (Basic auth it was not given), and a closed port. What arrives at the working one is
/// what the obs stack knows: the shipped `obs-vmagent` query names the 401 as `non_2xx`, and
/// the closed port shows as dial errors of that URL. A second VictoriaMetrics that only the
/// closed port was meant for hears nothing: `silent`.
#[tokio::test]
async fn vmagent_failing_to_ship_shows_in_its_own_metrics() {
    init();
    let obs = Victoria::start();
    let locked = Victoria::start_with_basic_auth("ingest", "right");
    let closed = free_port();
    let vmagent = Vmagent::start(
        &[ScrapeJob {
            name: "vmagent",
            targets: vec![("SELF".to_owned(), vec![])],
        }],
        &[
            format!("{}/api/v1/write", obs.url),
            format!("{}/api/v1/write", locked.url),
            format!("http://127.0.0.1:{closed}/api/v1/write"),
        ],
    );
    let dir = TempDir::new("vmagent-ship");
    let query = shipped_query("obs-vmagent");
    let result = eventually(
        "the shipped obs-vmagent query to see vmagent's 401s",
        Duration::from_secs(60),
        || async {
            let result = run_one(
                dir.path(),
                &prometheus_probe("obs-vmagent", &obs.url, &query),
            )
            .await;
            (result.ok && reasons(&result).contains(&("non_2xx".to_owned(), "401".to_owned())))
                .then_some(result)
        },
    )
    .await;
    // vmagent's own series arrive, so it is not silent; what vmagent-cannot-ship reads is
    // `count > 0`, and the evidence names the status.
    assert!(
        !reasons(&result)
            .iter()
            .any(|(reason, _)| reason == "silent"),
        "{}",
        result.message
    );
    assert!(
        result.message.contains("status_code=\"401\""),
        "{}",
        result.message
    );

    // The closed port: dial errors of the third URL, seen at the obs VictoriaMetrics.
    eventually(
        "the closed remote-write port's dial errors to reach VictoriaMetrics",
        Duration::from_secs(60),
        || async {
            obs.query_scalar(
                "sum(vmagent_remotewrite_errors_total{url=~\"3:.*\"}) + sum(vmagent_remotewrite_dial_errors_total) > 0",
            )
            .await
        },
    )
    .await;
    let own = vmagent.metrics().await;
    assert!(
        own.lines().any(
            |line| line.starts_with("vmagent_remotewrite_requests_total")
                && line.contains("status_code=\"401\"")
        ),
        "vmagent's /metrics has no 401s:\n{own}"
    );

    // A VictoriaMetrics this vmagent cannot reach (it ships only to a closed port) hears
    // nothing of it: the shipped query says `silent`.
    let unreached = Victoria::start();
    let _lost = Vmagent::start(
        &[ScrapeJob {
            name: "vmagent",
            targets: vec![("SELF".to_owned(), vec![])],
        }],
        &[format!("http://127.0.0.1:{}/api/v1/write", free_port())],
    );
    let result = run_one(
        dir.path(),
        &prometheus_probe("obs-vmagent", &unreached.url, &query),
    )
    .await;
    assert!(result.ok, "{result:?}");
    assert_eq!(
        reasons(&result),
        [("silent".to_owned(), String::new())],
        "{}",
        result.message
    );
}

// === end to end: vantages through vmagent and VictoriaMetrics ===

/// A shipped rule file without its examples (they name probes the judge does not have).
fn shipped_rule(id: &str) -> (String, String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("alerts")
        .join(format!("{id}.toml"));
    let text = std::fs::read_to_string(path).unwrap();
    let rule = text.split("\n[[example]]").next().unwrap().to_owned();
    (format!("{id}.toml"), rule)
}

async fn healthy_edge() -> HttpServer {
    HttpServer::builder()
        .route("/health", Route::ok("ok"))
        .start()
        .await
}

fn vantage_config(vantage: &str, edge: &str) -> String {
    format!(
        "[server]\nvantage = \"{vantage}\"\n\n[[probe]]\nname = \"edge-api\"\nkind = \"http\"\n\
         interval = \"1s\"\ntimeout = \"1s\"\nurl = \"{edge}\"\n"
    )
}

/// The ids diagnosed (pending or active) on `daemon`, sorted.
async fn diagnosed(daemon: &TestDaemon) -> Vec<String> {
    let status = daemon.status().await;
    let mut ids: Vec<String> = status["diagnoses"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|diagnosis| diagnosis["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

async fn wait_for_diagnoses(daemon: &TestDaemon, expected: &[&str]) -> Value {
    eventually(
        &format!("the judge to diagnose exactly {expected:?}"),
        Duration::from_secs(60),
        || async { (diagnosed(daemon).await == expected).then_some(daemon.status().await) },
    )
    .await
}

fn evidence_of<'a>(status: &'a Value, id: &str, probe: &str) -> &'a str {
    status["diagnoses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|diagnosis| diagnosis["id"] == id)
        .and_then(|diagnosis| {
            diagnosis["probes"]
                .as_array()?
                .iter()
                .find(|evidence| evidence["probe"] == probe)
        })
        .and_then(|evidence| evidence["message"].as_str())
        .unwrap_or_else(|| panic!("no evidence of {probe} in {id}: {status}"))
}

/// Three vantages with their own edges, scraped by vmagent (a `vantage` target label each)
/// into VictoriaMetrics, judged by a fourth daemon that reads them through the shipped
/// `edge-vantages` query with the shipped rules. Its own edge and origins answer throughout.
#[tokio::test]
async fn the_edge_is_judged_from_every_vantage() {
    init();
    let vm = Victoria::start();
    let mut edges = vec![
        healthy_edge().await,
        healthy_edge().await,
        healthy_edge().await,
    ];
    let names = ["fra", "nyc", "sgp"];
    let mut vantages = Vec::new();
    for (name, edge) in names.iter().zip(&edges) {
        vantages.push(TestDaemon::start(&vantage_config(name, &edge.url("/health"))).await);
    }
    let targets = vantages
        .iter()
        .zip(names)
        .map(|(daemon, name)| {
            (
                daemon.base_url.trim_start_matches("http://").to_owned(),
                vec![("vantage", name)],
            )
        })
        .collect();
    let _vmagent = Vmagent::start(
        &[ScrapeJob {
            name: "honeyguide",
            targets,
        }],
        &[format!("{}/api/v1/write", vm.url)],
    );

    let local = healthy_edge().await;
    let mut judge = String::from("[server]\nvantage = \"judge\"\n\n");
    for name in ["edge-api", "edge-admin", "origin-1", "origin-2", "origin-3"] {
        judge.push_str(&format!(
            "[[probe]]\nname = \"{name}\"\nkind = \"http\"\ninterval = \"1s\"\ntimeout = \"1s\"\n\
             url = \"{}\"\n",
            local.url("/health")
        ));
    }
    judge.push_str(&prometheus_probe(
        "edge-vantages",
        &vm.url,
        &shipped_query("edge-vantages"),
    ));
    let rules: Vec<(String, String)> = [
        "cf-edge-pop-outage",
        "cf-global-outage",
        "edge-verdict-one-vantage",
    ]
    .iter()
    .map(|id| shipped_rule(id))
    .collect();
    let rules: Vec<(&str, &str)> = rules
        .iter()
        .map(|(file, text)| (file.as_str(), text.as_str()))
        .collect();
    let judge = TestDaemon::start_with_alerts(&judge, &rules).await;

    // All three vantages report, all see the edge: one series each, value 1.
    let probe = eventually(
        "edge-vantages to see three vantages with the edge up",
        Duration::from_secs(60),
        || async {
            let probe = judge.probe("edge-vantages").await;
            let observations = &probe["observations"];
            (observations["count"] == 3 && observations["min"] == 1.0).then_some(probe)
        },
    )
    .await;
    let message = probe["message"].as_str().unwrap();
    for name in names {
        assert!(
            message.contains(&format!("vantage=\"{name}\"")),
            "{message}"
        );
    }
    assert_eq!(diagnosed(&judge).await, Vec::<String>::new());

    // The edge fails for one vantage (its port closes): a POP outage, judged from three.
    drop(edges.remove(0));
    let status = wait_for_diagnoses(&judge, &["cf-edge-pop-outage"]).await;
    let evidence = evidence_of(&status, "cf-edge-pop-outage", "edge-vantages");
    assert!(
        evidence.contains("vantage=\"fra\"} 0") && evidence.contains("vantage=\"nyc\"} 1"),
        "{evidence}"
    );

    // And for all of them: global, from three vantages, without waiting ten minutes.
    edges.clear();
    let status = wait_for_diagnoses(&judge, &["cf-global-outage"]).await;
    let evidence = evidence_of(&status, "cf-global-outage", "edge-vantages");
    assert!(
        evidence.starts_with("query: 3 series, 0 to 0"),
        "{evidence}"
    );

    // VictoriaMetrics stopped: edge-vantages cannot answer. That is no news of the other
    // vantages, so the global verdict they gave is held, not resolved, although the judge's own
    // edge answers and its single-vantage fallback alone would clear it.
    vm_stop(vm);
    judge
        .wait_for("edge-vantages", |probe| probe["error"] == "connect")
        .await;
    eventually(
        "cf-global-outage held while VictoriaMetrics is down",
        Duration::from_secs(30),
        || async {
            let status = judge.status().await;
            status["rules"]
                .as_array()?
                .iter()
                .any(|rule| rule["id"] == "cf-global-outage" && rule["status"] == "held")
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(diagnosed(&judge).await, ["cf-global-outage"]);
    judge.stop().await;
    for daemon in vantages {
        daemon.stop().await;
    }
}

fn vm_stop(mut vm: Victoria) {
    vm.stop();
}
