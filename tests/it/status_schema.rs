//! `/status` against its documented schema (`docs/status.schema.json`): a live document from a
//! daemon with passing and failing probes, an active diagnosis, a notified alert, silences and a
//! notifier validates, and the schema is strict enough that a field added to (or dropped from)
//! the view types without updating it fails here.

use std::path::PathBuf;
use std::time::Duration;

use jsonschema::Validator;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::alerting::Receiver;
use crate::support::daemon::TestDaemon;
use crate::support::http_server::{HttpServer, Route};
use crate::support::{self, free_port};

fn schema() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/status.schema.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()))
}

fn validator(schema: &Value) -> Validator {
    jsonschema::draft202012::meta::validate(schema)
        .unwrap_or_else(|error| panic!("the schema is not a valid 2020-12 schema: {error}"));
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|error| panic!("the schema does not compile: {error}"))
}

/// Every problem of `document`, one per line, with where it is.
fn problems(validator: &Validator, document: &Value) -> String {
    validator
        .iter_errors(document)
        .map(|error| format!("at {}: {error}", error.instance_path()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rule(id: &str, inhibits: &str, when: &str) -> (String, String) {
    (
        format!("{id}.toml"),
        format!(
            "id = \"{id}\"\ntitle = \"{id} title\"\nseverity = \"critical\"\nwhen = '{when}'\n\
             for = \"0s\"\nsymptom = \"s\"\nrecovery = \"r\"\nrunbook = \"#{id}\"\n\
             inhibits = [{inhibits}]\nlabels = {{ team = \"web\" }}\n"
        ),
    )
}

fn without_runbook((name, text): (String, String)) -> (String, String) {
    let id = name.trim_end_matches(".toml");
    (
        name.clone(),
        text.replace(&format!("runbook = \"#{id}\"\n"), ""),
    )
}

const TOKEN: &str = "schema-test-token-0123456789";

/// Alerting for the live document: a webhook that delivers, the API, a one-off window in force
/// now over the inhibited mode, and a weekly window by label.
fn alerting_toml(receiver: &Receiver) -> String {
    let now = jiff::Timestamp::now();
    let hour = jiff::SignedDuration::from_hours(1);
    format!(
        "[alerting]\ngroup_wait = \"200ms\"\ngroup_interval = \"0s\"\n\n\
         [api]\ntoken = \"{TOKEN}\"\n\n\
         [[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n\n\
         [[maintenance]]\nname = \"api-work\"\nalerts = [\"api-failing\"]\n\
         start = \"{}\"\nend = \"{}\"\ncomment = \"moving the API\"\n\n\
         [[maintenance]]\nname = \"nightly\"\nmatchers = {{ team = \"none\" }}\n\
         weekly = {{ day = [\"mon\", \"tue\"], start = \"02:00\", end = \"04:00\", \
         timezone = \"Europe/Berlin\" }}\n",
        receiver.url("/hook"),
        now - hour,
        now + hour,
    )
}

/// A live `/status` (a passing probe, a refused one, an active root cause with an inhibited
/// mode under it, a rule failing to evaluate; the root's alert notified through a webhook, the
/// inhibited one also silenced by a window, a weekly window, an API silence) validates against
/// the schema, with formats checked; then every object kind in it is shown to reject a field
/// the schema does not know.
#[tokio::test]
async fn a_live_status_document_matches_the_schema() {
    support::init();
    let fine = HttpServer::builder()
        .route("/", Route::ok("fine"))
        .start()
        .await;
    let receiver = Receiver::start().await;
    let refused = format!("http://127.0.0.1:{}/", free_port());
    let probes = format!(
        "[defaults]\ninterval = \"1s\"\ntimeout = \"1s\"\n\n{}\n\
         [[probe]]\nname = \"web\"\nkind = \"http\"\nurl = \"{}\"\nlabels = {{ tier = \"edge\" }}\n\n\
         [[probe]]\nname = \"api\"\nkind = \"http\"\nurl = \"{refused}\"\n",
        alerting_toml(&receiver),
        fine.url("/")
    );
    let rules = [
        rule(
            "api-down",
            "\"api-failing\"",
            "!probes.api.ok && probes.web.ok",
        ),
        // Without a runbook (it is optional): `null` in the diagnosis and the alert.
        without_runbook(rule("api-failing", "", "!probes.api.ok")),
        // Inhibiting a mode that is not loaded: a warning, located.
        rule(
            "typo",
            "\"not-loaded\"",
            "probes.web.observations.status / probes.web.observations.redirects > 1",
        ),
        // Not a rule file: a warning without a position.
        ("README.md".to_owned(), "# our rules\n".to_owned()),
    ];
    let rules: Vec<(&str, &str)> = rules
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();
    let daemon = TestDaemon::start_with_alerts(&probes, &rules).await;
    let created = daemon
        .request(Method::POST, "/api/silences")
        .bearer_auth(TOKEN)
        .json(&json!({
            "alerts": ["web-*"],
            "duration": "1h",
            "comment": "web migration",
            "created_by": "ana",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let status = support::eventually(
        "an active diagnosis, an inhibited one, two runs of each probe, a delivered alert",
        Duration::from_secs(20),
        || async {
            let status = daemon.status().await;
            let diagnoses = status["diagnoses"].as_array()?;
            let root = diagnoses
                .iter()
                .any(|d| d["id"] == "api-down" && d["state"] == "active");
            let inhibited = diagnoses.iter().any(|d| d["inhibited_by"] == "api-down");
            let runs = status["probes"]
                .as_array()?
                .iter()
                .all(|probe| probe["history"].as_array().is_some_and(|h| h.len() >= 2));
            let rule_error = status["rules"]
                .as_array()?
                .iter()
                .any(|rule| rule["status"] == "error");
            let alerts = status["alerts"].as_array()?;
            let notified = alerts
                .iter()
                .any(|a| a["id"] == "api-down" && a["notified"] == json!(["hook"]));
            let silenced = alerts
                .iter()
                .any(|a| a["id"] == "api-failing" && a["silenced_by"] == json!(["api-work"]));
            let delivered = status["notifiers"][0]["delivered"].as_u64() >= Some(1);
            (root && inhibited && runs && rule_error && notified && silenced && delivered)
                .then_some(status)
        },
    )
    .await;
    let daemon_dir = daemon.dir().to_owned();
    daemon.stop().await;

    let schema = schema();
    let validator = validator(&schema);
    assert_eq!(problems(&validator, &status), "", "{status:#}");
    // The document exercised both branches of the nullable fields the page relies on.
    assert_eq!(status["probes"][1]["error"], "connect");
    assert_eq!(status["probes"][0]["error"], json!(null));
    assert!(status["probes"][0]["phases"].as_array().unwrap().len() >= 2);
    // Every probe shows exactly the observations its kind's schema declares, on a failed run
    // (connection refused) as on a healthy one.
    for probe in status["probes"].as_array().unwrap() {
        let kind: honeyguide::probe::Kind = probe["kind"].as_str().unwrap().parse().unwrap();
        let mut shown: Vec<&str> = probe["observations"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut declared = kind.schema().names();
        shown.sort_unstable();
        declared.sort_unstable();
        assert_eq!(shown, declared, "{}", probe["name"]);
    }
    assert!(status["notifiers"][0]["last_success_at"].is_string());
    let sources: Vec<&Value> = status["silences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|silence| &silence["source"])
        .collect();
    assert_eq!(
        sources,
        [&json!("maintenance"), &json!("maintenance"), &json!("api")]
    );
    assert_eq!(
        status["silences"][1]["weekly"]["days"],
        json!(["mon", "tue"])
    );
    assert_eq!(status["silences"][2]["created_by"], "ana");
    let failing = status["diagnoses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "api-failing")
        .unwrap();
    assert_eq!(failing["runbook"], json!(null));
    assert_eq!(status["diagnoses"][0]["runbook"], "#api-down");
    let warnings: Vec<&Value> = status["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|warning| &warning["text"])
        .collect();
    let dir = daemon_dir.display();
    assert_eq!(
        warnings,
        [
            &json!(format!(
                "{dir}/alerts/README.md: skipped: not a rule file (rules are `*.toml`)"
            )),
            &json!(format!(
                "{dir}/alerts/typo.toml:9:13: inhibits[0]: `not-loaded` is not loaded, so this \
                 entry inhibits nothing"
            )),
        ]
    );
    assert_eq!(status["warnings"][0]["line"], json!(null));
    assert_eq!(status["warnings"][1]["kind"], "inhibits_unloaded");

    // Formats and closed sets are checked, not just shapes.
    let mut changed = status.clone();
    changed["generated_at"] = json!("yesterday at noon");
    changed["probes"][1]["error"] = json!("refused");
    let found = problems(&validator, &changed);
    assert!(
        found.contains("at /generated_at: \"yesterday at noon\" is not a \"date-time\""),
        "{found}"
    );
    assert!(found.contains("at /probes/1/error: "), "{found}");

    // A field the schema does not describe is rejected at every level.
    let places = [
        "",
        "/diagnoses/0",
        "/diagnoses/0/probes/0",
        "/probes/0",
        "/probes/0/phases/0",
        "/probes/0/history/0",
        "/rules/0",
        "/alerts/0",
        "/alerts/0/evidence/0",
        "/silences/1",
        "/silences/1/weekly",
        "/silences/2",
        "/notifiers/0",
        "/warnings/1",
    ];
    for place in places {
        let mut changed = status.clone();
        changed
            .pointer_mut(place)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("no object at {place:?}"))
            .insert("added_field".to_owned(), json!(1));
        let found = problems(&validator, &changed);
        // A nullable object (`weekly`) is an `anyOf`: the error names the alternatives
        // rather than the field, but is still at that place, about that object.
        let rejected = found.contains("'added_field' was unexpected")
            || (found.starts_with(&format!("at {place}: {{\"added_field\":1,"))
                && found.contains("is not valid under any of the schemas listed in the 'anyOf'"));
        assert!(rejected, "{place}: {found}");
    }
}

/// Every object in the schema requires each of its properties and allows no others: the schema
/// lists all fields of the view types (null when absent), so both an undocumented new field and
/// a documented field that disappeared fail the live check above.
#[test]
fn every_object_in_the_schema_is_closed_and_complete() {
    fn check(path: &str, node: &Value, objects: &mut usize) {
        if let Some(properties) = node.get("properties").and_then(Value::as_object) {
            *objects += 1;
            assert_eq!(
                node["additionalProperties"],
                json!(false),
                "{path}: additionalProperties must be false"
            );
            let mut required: Vec<&str> = node["required"]
                .as_array()
                .unwrap_or_else(|| panic!("{path}: no required list"))
                .iter()
                .map(|name| name.as_str().unwrap())
                .collect();
            required.sort_unstable();
            let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
            names.sort_unstable();
            assert_eq!(required, names, "{path}: required must list every property");
        }
        match node {
            Value::Object(map) => {
                for (key, child) in map {
                    check(&format!("{path}/{key}"), child, objects);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    check(&format!("{path}/{i}"), child, objects);
                }
            }
            _ => {}
        }
    }
    let mut objects = 0;
    check("#", &schema(), &mut objects);
    // The document, diagnosis, evidence, rule, probe, phase, run, alert, silence, weekly window,
    // notifier, reload and warning.
    assert_eq!(objects, 13);
}
