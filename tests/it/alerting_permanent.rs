//! Permanent notifier failures said as such: a real SMTP server (aiosmtpd) refusing the login
//! with 535 and webhook receivers answering 401 and 404 make the notifier fail *permanently* in
//! `/status`, `/metrics` and on the page, and its next attempt waits the longest backoff at once
//! instead of hammering a receiver that says no; a 454 and a 503 stay temporary and are retried
//! soon. What a receiver answers is quoted escaped, on one line.

use std::time::Duration;

use honeyguide::notify::dispatch::BACKOFF_MAX;
use jiff::Timestamp;
use serde_json::Value;

use crate::support::alerting::{Receiver, Script, active};
use crate::support::daemon::{TestDaemon, sample};
use crate::support::eventually;
use crate::support::smtpd::{Smtpd, TEMPFAIL_USER, USER};

const WAIT: Duration = Duration::from_secs(15);

const ALERTING: &str = "[alerting]\ngroup_wait = \"200ms\"\ngroup_interval = \"0s\"\n";

fn email_notifier(name: &str, server: &Smtpd, username: &str, password: &str) -> String {
    format!(
        r#"
[[notifier]]
name = "{name}"
kind = "email"
host = "127.0.0.1"
port = {port}
tls = "implicit"
username = "{username}"
password = "{password}"
from = "honeyguide <alerts@honeyguide.test>"
to = ["oncall@honeyguide.test"]
ca_file = "{ca}"
timeout = "5s"
"#,
        port = server.smtps_port,
        ca = server.ca_file.display(),
    )
}

fn webhook_notifier(name: &str, receiver: &Receiver) -> String {
    format!(
        "\n[[notifier]]\nname = \"{name}\"\nkind = \"webhook\"\nurl = \"{}\"\n",
        receiver.url("/hook")
    )
}

/// The `/status` entry of notifier `name`.
fn notifier<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["notifiers"]
        .as_array()
        .and_then(|notifiers| notifiers.iter().find(|notifier| notifier["name"] == name))
        .unwrap_or_else(|| panic!("no notifier {name} in {status}"))
}

/// Waits until notifier `name` has failed at least once, and returns the whole document.
async fn failed_once(daemon: &TestDaemon, name: &str) -> Value {
    eventually(&format!("a failed attempt of {name}"), WAIT, || async {
        let status = daemon.status().await;
        (notifier(&status, name)["failed"].as_u64() >= Some(1)).then_some(status)
    })
    .await
}

/// How long after the document was made the notifier's next attempt is due.
fn retry_in(status: &Value, name: &str) -> Duration {
    let at = |value: &Value| -> Timestamp {
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a time: {value}"))
            .parse()
            .unwrap()
    };
    let due = at(&notifier(status, name)["next_attempt_at"]);
    let now = at(&status["generated_at"]);
    Duration::try_from(due.duration_since(now)).unwrap_or_else(|_| panic!("{due} is past {now}"))
}

/// A permanently failing notifier waits the longest backoff for its next attempt: due about
/// [`BACKOFF_MAX`] after it failed, and no attempt in the seconds after (the old backoff would
/// have tried twice more by then).
async fn assert_waits_the_longest_backoff(daemon: &TestDaemon, status: &Value, name: &str) {
    let wait = retry_in(status, name);
    assert!(
        wait > BACKOFF_MAX - Duration::from_secs(10) && wait <= BACKOFF_MAX,
        "{name}: next attempt in {wait:?}, not at the longest backoff"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = daemon.status().await;
    assert_eq!(
        notifier(&later, name)["failed"],
        1,
        "{name}: retried within seconds: {later}"
    );
}

/// `/status` is still valid against docs/status.schema.json with failing notifiers in it.
fn assert_valid(status: &Value) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let problems: Vec<String> = validator
        .iter_errors(status)
        .map(|error| format!("at {}: {error}", error.instance_path()))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}\n{status:#}");
    // The schema promises one line: a raw newline in an error is a violation.
    let mut raw = status.clone();
    raw["notifiers"][0]["last_error"] = Value::from("line one\nline two");
    assert!(
        validator.iter_errors(&raw).next().is_some(),
        "the schema lets a raw newline through"
    );
}

/// A refused SMTP login (535 5.7.8) is a permanent failure: `/status` says `permanent`, the
/// metric says it, the page says in words that it will not pass by itself and what to fix, and
/// the next attempt is five minutes away. A 454 (temporary authentication failure) on the same
/// server stays temporary and is retried within seconds.
#[tokio::test]
async fn a_refused_smtp_login_fails_permanently_and_a_454_temporarily() {
    crate::support::init();
    let server = Smtpd::start();
    let toml = format!(
        "{ALERTING}{}{}",
        email_notifier("mail", &server, USER, "not-the-password"),
        email_notifier("mail-busy", &server, TEMPFAIL_USER, "whatever"),
    );
    let script = Script::new();
    let daemon = TestDaemon::start_with(&toml, script.feed()).await;
    script.set(vec![active("neon-down")]);

    let status = failed_once(&daemon, "mail").await;
    let mail = notifier(&status, "mail");
    assert_eq!(mail["failing"], "permanent", "{mail}");
    assert!(
        mail["last_error"].as_str().unwrap().starts_with(&format!(
            "smtp 127.0.0.1:{}: permanent error (535)",
            server.smtps_port
        )),
        "{mail}"
    );
    assert_valid(&status);
    assert_waits_the_longest_backoff(&daemon, &status, "mail").await;

    // The 454 is retried soon, with backoff, and says it is temporary.
    let busy = eventually("the 454 retried", WAIT, || async {
        let status = daemon.status().await;
        let busy = notifier(&status, "mail-busy").clone();
        (busy["failed"].as_u64() >= Some(2)).then_some(busy)
    })
    .await;
    assert_eq!(busy["failing"], "temporary", "{busy}");
    assert!(
        busy["last_error"]
            .as_str()
            .unwrap()
            .contains("transient error (454)"),
        "{busy}"
    );

    let metrics = daemon.metrics().await;
    for (series, value) in [
        ("{notifier=\"mail\",failure=\"permanent\"}", 1.0),
        ("{notifier=\"mail\",failure=\"temporary\"}", 0.0),
        ("{notifier=\"mail-busy\",failure=\"permanent\"}", 0.0),
        ("{notifier=\"mail-busy\",failure=\"temporary\"}", 1.0),
    ] {
        assert_eq!(
            sample(&metrics, &format!("honeyguide_notifier_failing{series}")),
            Some(value),
            "{series}\n{metrics}"
        );
    }

    let page = daemon.get("/").await.text().await.unwrap();
    assert!(
        page.contains(
            "2 of 2 notifier(s) cannot deliver: what they should send waits in the outbox and \
             is retried, and on-call may not have been told. 1 of them fail permanently: the \
             receiver refuses what honeyguide sends, so this alert path stays broken until \
             someone fixes the notifier."
        ),
        "{page}"
    );
    let entry = |name: &str| {
        let start = page
            .find(&format!("<li id=\"n-{name}\""))
            .unwrap_or_else(|| panic!("no entry for {name}: {page}"));
        page[start..start + page[start..].find("</li>").unwrap()].to_owned()
    };
    let mail = entry("mail");
    assert!(mail.contains("Failing permanently</span>"), "{mail}");
    assert!(
        mail.contains(
            "The receiver refuses: this will not pass by itself. Fix the notifier's \
             credentials, URL or addresses; until then it is retried every 5m, next in"
        ),
        "{mail}"
    );
    let busy = entry("mail-busy");
    assert!(busy.contains(" Failing</span>"), "{busy}");
    assert!(
        busy.contains("It is retried with backoff, next in"),
        "{busy}"
    );
    assert!(!busy.contains("permanently"), "{busy}");
    daemon.stop().await;
}

/// Webhook receivers that refuse (401 with a hostile body, 404) fail permanently, at the
/// longest backoff; one answering 503 fails temporarily. The 401's body is quoted escaped on
/// one line, everywhere it shows.
#[tokio::test]
async fn webhooks_answering_401_or_404_fail_permanently_and_503_temporarily() {
    crate::support::init();
    let unauthorized = Receiver::start().await;
    unauthorized.fail_next_with(1000, 401, "invalid token\r\n\x1b[31mgo away\x1b[0m\n");
    let gone = Receiver::start().await;
    gone.fail_next_with(1000, 404, "no such hook");
    let down = Receiver::start().await;
    down.fail_next_with(1000, 503, "");
    let toml = format!(
        "{ALERTING}{}{}{}",
        webhook_notifier("auth", &unauthorized),
        webhook_notifier("gone", &gone),
        webhook_notifier("down", &down),
    );
    let script = Script::new();
    let daemon = TestDaemon::start_with(&toml, script.feed()).await;
    script.set(vec![active("neon-down")]);

    failed_once(&daemon, "auth").await;
    let status = failed_once(&daemon, "gone").await;
    let auth = notifier(&status, "auth");
    assert_eq!(auth["failing"], "permanent", "{auth}");
    assert_eq!(
        auth["last_error"],
        format!(
            "http://{}/…: HTTP 401: invalid token\\r\\n\\x1b[31mgo away\\x1b[0m",
            unauthorized.addr
        )
    );
    assert_eq!(notifier(&status, "gone")["failing"], "permanent");
    assert_valid(&status);

    let down_status = eventually("the 503 retried", WAIT, || async {
        let status = daemon.status().await;
        (notifier(&status, "down")["failed"].as_u64() >= Some(2)).then_some(status)
    })
    .await;
    let down_entry = notifier(&down_status, "down");
    assert_eq!(down_entry["failing"], "temporary", "{down_entry}");
    assert!(
        retry_in(&down_status, "down") < Duration::from_secs(30),
        "{down_entry}"
    );
    assert_waits_the_longest_backoff(&daemon, &status, "auth").await;
    assert_waits_the_longest_backoff(&daemon, &status, "gone").await;
    assert_eq!(unauthorized.received().len(), 1);
    assert_eq!(gone.received().len(), 1);

    let metrics = daemon.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "honeyguide_notifier_failing{notifier=\"auth\",failure=\"permanent\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    let page = daemon.get("/").await.text().await.unwrap();
    assert!(!page.contains('\x1b'), "a raw escape on the page");
    assert!(
        page.contains("HTTP 401: invalid token\\r\\n\\x1b[31mgo away\\x1b[0m</span>"),
        "{page}"
    );
    daemon.stop().await;
}
