//! The email notifier against a real SMTP server (aiosmtpd with STARTTLS, implicit TLS and
//! AUTH), through a whole daemon: what arrives, what happens while the server is down or
//! refuses the password, and `honeyguide test-alert`.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::alerting::{Receiver, Script, active};
use crate::support::certs::TestCa;
use crate::support::daemon::{TestDaemon, sample};
use crate::support::smtpd::{PASSWORD, Smtpd, USER};
use crate::support::{TempDir, eventually, free_port};

const WAIT: Duration = Duration::from_secs(15);

fn email_notifier(name: &str, port: u16, tls: &str, password: &str, ca_file: &str) -> String {
    format!(
        r#"
[[notifier]]
name = "{name}"
kind = "email"
host = "127.0.0.1"
port = {port}
tls = "{tls}"
username = "{USER}"
password = "{password}"
from = "honeyguide <alerts@honeyguide.test>"
to = ["oncall@honeyguide.test"]
ca_file = "{ca_file}"
timeout = "5s"
"#
    )
}

const ALERTING: &str = "[alerting]\ngroup_wait = \"200ms\"\ngroup_interval = \"0s\"\n";

/// A received message, split into headers and decoded MIME parts.
struct Mail {
    headers: String,
    text: String,
    html: String,
}

impl Mail {
    fn parse(raw: &str) -> Self {
        let raw = raw.replace("\r\n", "\n");
        let (headers, _) = raw.split_once("\n\n").expect("headers and body");
        let boundary = headers
            .split("boundary=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a multipart boundary")
            .to_owned();
        let mut text = String::new();
        let mut html = String::new();
        for part in raw.split(&format!("--{boundary}")).skip(1) {
            let Some((part_headers, body)) = part.trim_start_matches('\n').split_once("\n\n")
            else {
                continue;
            };
            let decoded = decode(part_headers, body);
            if part_headers.contains("text/plain") {
                text = decoded;
            } else if part_headers.contains("text/html") {
                html = decoded;
            }
        }
        Self {
            headers: headers.to_owned(),
            text,
            html,
        }
    }

    fn header(&self, name: &str) -> String {
        let mut value = None;
        for line in self.headers.lines() {
            if let Some(rest) = line.strip_prefix(&format!("{name}: ")) {
                value = Some(rest.to_owned());
            } else if line.starts_with([' ', '\t']) {
                if let Some(value) = value.as_mut() {
                    value.push_str(line.trim_start());
                    continue;
                }
            } else if value.is_some() {
                break;
            }
        }
        value.unwrap_or_default()
    }
}

fn decode(headers: &str, body: &str) -> String {
    if headers.contains("Content-Transfer-Encoding: base64") {
        use base64::Engine as _;
        let compact: String = body.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .expect("base64 part");
        return String::from_utf8(bytes).expect("utf-8 part");
    }
    if headers.contains("Content-Transfer-Encoding: quoted-printable") {
        let joined = body.replace("=\n", "");
        let mut out = Vec::new();
        let bytes = joined.as_bytes();
        let mut index = 0;
        while index < bytes.len() {
            if bytes[index] == b'=' && index + 2 < bytes.len() + 1 {
                let hex = std::str::from_utf8(&bytes[index + 1..(index + 3).min(bytes.len())])
                    .unwrap_or_default();
                if let Ok(byte) = u8::from_str_radix(hex, 16) {
                    out.push(byte);
                    index += 3;
                    continue;
                }
            }
            out.push(bytes[index]);
            index += 1;
        }
        return String::from_utf8(out).expect("utf-8 part");
    }
    body.to_owned()
}

/// Firing then resolved, over STARTTLS submission and over implicit TLS, both with AUTH: each
/// notifier delivers exactly one message per change. The subject names the failure mode; the
/// body has the symptom, the failing probes with their messages, the recovery steps (rendered
/// as HTML in the alternative part) and the runbook link; the Message-ID carries the
/// notification id.
#[tokio::test]
async fn email_over_starttls_and_implicit_tls_with_auth() {
    crate::support::init();
    let server = Smtpd::start();
    let ca = server.ca_file.display().to_string();
    let toml = format!(
        "{ALERTING}{}{}",
        email_notifier("mail-587", server.starttls_port, "starttls", PASSWORD, &ca),
        email_notifier("mail-465", server.smtps_port, "implicit", PASSWORD, &ca)
    );
    let script = Script::new();
    let daemon = TestDaemon::start_with(&toml, script.feed()).await;
    script.set(vec![active("neon-down")]);
    let firing = eventually("two firing emails", WAIT, || async {
        let received = server.received();
        (received.len() >= 2).then_some(received)
    })
    .await;
    let mut ports: Vec<u16> = firing.iter().map(|mail| mail.port).collect();
    ports.sort_unstable();
    let mut expected = vec![server.starttls_port, server.smtps_port];
    expected.sort_unstable();
    assert_eq!(ports, expected, "{}", server.log());
    for received in &firing {
        assert_eq!(received.mail_from, "alerts@honeyguide.test");
        assert_eq!(received.rcpt_tos, ["oncall@honeyguide.test"]);
        let mail = Mail::parse(&received.data);
        assert_eq!(
            mail.header("Subject"),
            "[FIRING] neon-down (test failure mode) (neon-down)"
        );
        assert!(
            mail.header("Content-Type")
                .starts_with("multipart/alternative"),
            "{}",
            mail.headers
        );
        let message_id = mail.header("Message-ID");
        assert!(
            message_id.starts_with('<') && message_id.ends_with("@honeyguide.test>"),
            "{message_id}"
        );
        assert_eq!(message_id.len(), "<@honeyguide.test>".len() + 32);
        for needle in [
            "FIRING: neon-down (test failure mode) (neon-down, critical)",
            "What users see:\n  API requests fail with HTTP 500",
            "Failing probes:\n  - db-pooler: connect: connection refused (127.0.0.1:6543)",
            "What to do:\n1. Check the **pooler** pods.",
            "Runbook: https://runbooks.example/neon-down",
        ] {
            assert!(
                mail.text.contains(needle),
                "missing {needle:?} in:\n{}",
                mail.text
            );
        }
        assert!(
            !mail.text.contains("edge-api"),
            "passing probes are not listed"
        );
        assert!(
            mail.html.contains("<strong>pooler</strong>"),
            "{}",
            mail.html
        );
        assert!(
            mail.html
                .contains("<a href=\"https://runbooks.example/neon-down\" rel=\"noreferrer\">"),
            "{}",
            mail.html
        );
    }

    script.set(vec![]);
    let all = eventually("two resolved emails", WAIT, || async {
        let received = server.received();
        (received.len() >= 4).then_some(received)
    })
    .await;
    for received in &all[2..] {
        let mail = Mail::parse(&received.data);
        assert_eq!(
            mail.header("Subject"),
            "[RESOLVED] neon-down (test failure mode) (neon-down)"
        );
        assert!(mail.text.starts_with("RESOLVED: "), "{}", mail.text);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        server.received().len(),
        4,
        "exactly one message per change per notifier"
    );
    daemon.stop().await;
}

/// The SMTP server is down when the alert fires: the webhook is delivered at once (notifiers
/// are independent), the email waits in the outbox and is retried with backoff, and once the
/// server is back it arrives exactly once.
#[tokio::test]
async fn an_smtp_outage_delays_the_email_only_and_it_arrives_once() {
    crate::support::init();
    let ca = TestCa::new();
    let dir = TempDir::new("smtp-outage");
    let ca_file = ca.write_pem(dir.path());
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let receiver = Receiver::start().await;
    let toml = format!(
        "{ALERTING}{}\n[[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
        email_notifier(
            "mail",
            ports[1],
            "implicit",
            PASSWORD,
            &ca_file.display().to_string()
        ),
        receiver.url("/hook")
    );
    let script = Script::new();
    let daemon = TestDaemon::start_with(&toml, script.feed()).await;
    script.set(vec![active("fastmail-down")]);

    receiver.wait_for(1, WAIT).await;
    let mail = eventually("a failed email delivery", WAIT, || async {
        let status = daemon.status().await;
        let mail = status["notifiers"][0].clone();
        (mail["failed"].as_u64() >= Some(1)).then_some(mail)
    })
    .await;
    assert_eq!(mail["outbox_depth"], 1);
    let error = mail["last_error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("smtp 127.0.0.1:{}: connection error", ports[1])),
        "{error}"
    );

    let server = Smtpd::start_on(ports, &ca);
    let received = eventually(
        "the email after the outage",
        Duration::from_secs(30),
        || async {
            let received = server.received();
            (!received.is_empty()).then_some(received)
        },
    )
    .await;
    assert!(received[0].data.contains("fastmail-down"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.received().len(), 1, "arrives exactly once");
    let mail = daemon.status().await["notifiers"][0].clone();
    assert_eq!(mail["outbox_depth"], 0);
    assert_eq!(mail["delivered"], 1);
    assert_eq!(mail["last_error"], Value::Null);
    assert_eq!(receiver.received().len(), 1);
    daemon.stop().await;
}

/// A wrong SMTP password is a clear notifier error in `/status`, the metrics and at the top of
/// the page (the 535 the server answered), the alert's card says its delivery fails, honeyguide
/// stays healthy, and the password appears nowhere.
#[tokio::test]
async fn a_wrong_smtp_password_is_a_clear_error_not_a_crash() {
    crate::support::init();
    let server = Smtpd::start();
    let ca = server.ca_file.display().to_string();
    let toml = format!(
        "{ALERTING}{}",
        email_notifier(
            "mail",
            server.smtps_port,
            "implicit",
            "not-the-password",
            &ca
        )
    );
    let script = Script::new();
    let daemon = TestDaemon::start_with(&toml, script.feed()).await;
    script.set(vec![active("neon-down")]);
    let mail = eventually("an authentication failure", WAIT, || async {
        let status = daemon.status().await;
        let mail = status["notifiers"][0].clone();
        (mail["failed"].as_u64() >= Some(1)).then_some(mail)
    })
    .await;
    let error = mail["last_error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "smtp 127.0.0.1:{}: permanent error (535)",
            server.smtps_port
        )),
        "{error}"
    );
    assert_eq!(mail["outbox_depth"], 1);
    let metrics = daemon.metrics().await;
    assert!(
        sample(
            &metrics,
            "honeyguide_notifications_total{notifier=\"mail\",result=\"failed\"}"
        )
        .is_some_and(|failed| failed >= 1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "honeyguide_outbox_depth{notifier=\"mail\"}"),
        Some(1.0)
    );
    // The page puts the failing notifier above everything else, with the server's answer, and
    // the alert's card does not pretend on-call was told.
    let page = daemon.get("/").await.text().await.unwrap();
    let notifiers = page
        .find("<section id=\"notifiers\" class=\"alarm\"")
        .unwrap_or_else(|| panic!("no failing notifiers section: {page}"));
    let diagnoses = page.find("<section id=\"diagnoses\"").unwrap();
    assert!(notifiers < diagnoses, "a failing notifier is at the top");
    assert!(
        page.contains(&format!(
            "<strong>mail</strong> <span class=\"quiet\">(email)</span>: \
             <span class=\"message\">smtp 127.0.0.1:{}: permanent error (535)",
            server.smtps_port
        )),
        "{page}"
    );
    assert!(page.contains("Delivery failing</span> notified "), "{page}");
    assert!(
        page.contains("<a href=\"#n-mail\">mail</a> cannot deliver: on-call may not have it."),
        "{page}"
    );
    assert_eq!(daemon.get("/healthz").await.status(), 200);
    let status = daemon.status().await.to_string();
    assert!(!status.contains("not-the-password") && !metrics.contains("not-the-password"));
    assert!(!page.contains("not-the-password"));
    assert!(server.received().is_empty());
    daemon.stop().await;
}

fn honeyguide(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_honeyguide"))
        .args(args)
        .current_dir(dir)
        .env_remove("HONEYGUIDE_LOG")
        .output()
        .expect("run honeyguide")
}

/// `honeyguide test-alert NAME` sends one test message through that notifier and exits 0; with
/// a wrong password it exits 1 naming the SMTP error; an unknown name is a usage error (2).
#[tokio::test]
async fn test_alert_sends_one_message_or_explains_why_not() {
    crate::support::init();
    let server = Smtpd::start();
    let ca = server.ca_file.display().to_string();
    let dir = TempDir::new("test-alert");
    std::fs::write(
        dir.path().join("probes.toml"),
        format!(
            "{}{}",
            email_notifier("good", server.starttls_port, "starttls", PASSWORD, &ca),
            email_notifier("bad", server.smtps_port, "implicit", "wrong", &ca)
        ),
    )
    .unwrap();

    let good = honeyguide(&["test-alert", "good"], dir.path());
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).starts_with(&format!(
        "sent a test notification through `good` (email, smtp://127.0.0.1:{} (STARTTLS))",
        server.starttls_port
    )));
    let received = server.received();
    assert_eq!(received.len(), 1);
    let mail = Mail::parse(&received[0].data);
    assert_eq!(
        mail.header("Subject"),
        "[TEST] honeyguide test notification via good"
    );
    assert!(
        mail.text
            .contains("If you are reading it, this notifier works.")
    );

    let bad = honeyguide(&["test-alert", "bad"], dir.path());
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("honeyguide: test-alert: `bad` (email, smtp://127.0.0.1:")
            && stderr.contains("failed: smtp 127.0.0.1:")
            && stderr.contains("permanent error (535)"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong\""));

    let unknown = honeyguide(&["test-alert", "nope"], dir.path());
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no notifier named `nope`"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    assert_eq!(server.received().len(), 1);
}
