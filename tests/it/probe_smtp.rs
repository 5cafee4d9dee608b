//! The `smtp` probe against a real aiosmtpd (STARTTLS, implicit TLS, AUTH PLAIN and LOGIN, bad
//! and temporarily refused credentials, a server without STARTTLS, a stopped server) and against
//! in-process servers that break the protocol, plus config errors.

use std::time::Duration;

use honeyguide::probe::{ErrorClass, Value};

use crate::support::probes::{errors, load, metrics, run_loaded, run_one};
use crate::support::smtpd::{Misbehaving, Misbehavior, PASSWORD, Smtpd, TEMPFAIL_USER, USER};
use crate::support::{TempDir, free_port, init};

fn smtp_toml(port: u16, tls: &str, extra: &str) -> String {
    format!(
        "[[probe]]\nname = \"smtp-test\"\nkind = \"smtp\"\ntimeout = \"5s\"\n\
         host = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\nhelo_name = \"probe.honeyguide.test\"\n{extra}\n"
    )
}

fn auth(server: &Smtpd, user: &str, password: &str) -> String {
    format!(
        "ca_file = \"{}\"\nusername = \"{user}\"\npassword = \"{password}\"",
        server.ca_file.display()
    )
}

fn extensions(result: &honeyguide::probe::ProbeResult) -> Vec<String> {
    match &result.observations["extensions"] {
        Value::List(items) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        other => panic!("extensions is not a list: {other:?}"),
    }
}

/// STARTTLS submission with AUTH: every step passes, the extensions are the post-TLS ones
/// (AUTH is only offered after STARTTLS), the certificate expiry is observed, each step is timed
/// in the metrics, and no mail is sent.
#[tokio::test]
async fn starttls_with_auth_passes_every_step() {
    init();
    let server = Smtpd::start();
    let dir = TempDir::new("smtp");
    let toml = smtp_toml(
        server.starttls_port,
        "starttls",
        &auth(&server, USER, PASSWORD),
    );
    let config = load(dir.path(), &toml);
    let result = run_loaded(&config, 0, Duration::from_secs(5)).await;

    assert!(result.ok, "{result:?}\n{}", server.log());
    assert!(
        result.message.starts_with("STARTTLS: 220 "),
        "{}",
        result.message
    );
    assert!(
        result.message.ends_with(", AUTH PLAIN accepted"),
        "{}",
        result.message
    );
    assert_eq!(result.observations["reply_code"], Value::Int(221));
    assert_eq!(result.observations["failed_step"], Value::Null);
    assert_eq!(result.observations["temporary"], Value::Null);
    assert_eq!(result.observations["auth_mechanism"], Value::from("PLAIN"));
    assert_eq!(result.observations["tls_version"], Value::from("TLSv1.3"));
    assert!(
        extensions(&result).contains(&"AUTH LOGIN PLAIN".to_owned()),
        "{result:?}"
    );
    assert!(
        !extensions(&result).contains(&"STARTTLS".to_owned()),
        "{result:?}"
    );
    let expiry = result.observations["tls_cert_expiry"].as_i64().unwrap();
    assert!(expiry > jiff::Timestamp::now().as_second(), "{expiry}");
    let phases: Vec<&str> = result.phases.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        phases,
        [
            "connect", "banner", "ehlo", "starttls", "tls", "ehlo", "auth", "quit"
        ]
    );

    let text = metrics(&config, &result);
    assert!(
        text.contains(&format!(
            "probe_ssl_earliest_cert_expiry{{probe=\"smtp-test\"}} {expiry}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("honeyguide_smtp_reply_code{probe=\"smtp-test\"} 221\n"),
        "{text}"
    );
    for step in [
        "connect", "banner", "ehlo", "starttls", "tls", "auth", "quit",
    ] {
        assert!(
            text.contains(&format!(
                "honeyguide_smtp_step_duration_seconds{{probe=\"smtp-test\",step=\"{step}\"}} "
            )),
            "{step}: {text}"
        );
    }
    assert!(
        server.received().is_empty(),
        "the probe must never send mail"
    );
}

/// Implicit TLS (SMTPS) with AUTH PLAIN passes, TLS coming before the banner.
#[tokio::test]
async fn implicit_tls_with_auth_passes() {
    init();
    let server = Smtpd::start();
    let dir = TempDir::new("smtp");
    let toml = smtp_toml(
        server.smtps_port,
        "implicit",
        &auth(&server, USER, PASSWORD),
    );
    let result = run_one(dir.path(), &toml).await;
    assert!(result.ok, "{result:?}\n{}", server.log());
    let phases: Vec<&str> = result.phases.iter().map(|(name, _)| *name).collect();
    assert_eq!(phases, ["connect", "tls", "banner", "ehlo", "auth", "quit"]);
    assert!(
        result.message.starts_with("implicit TLS: 220 "),
        "{}",
        result.message
    );
}

/// A server offering only AUTH LOGIN is authenticated with LOGIN.
#[tokio::test]
async fn auth_login_is_used_when_plain_is_not_offered() {
    init();
    let server = Smtpd::start();
    let dir = TempDir::new("smtp");
    let toml = smtp_toml(
        server.login_port,
        "implicit",
        &auth(&server, USER, PASSWORD),
    );
    let result = run_one(dir.path(), &toml).await;
    assert!(result.ok, "{result:?}\n{}", server.log());
    assert_eq!(result.observations["auth_mechanism"], Value::from("LOGIN"));
}

/// A wrong password is `auth` with the 535 reply, marked permanent, failed at the auth step;
/// the password appears nowhere in the result.
#[tokio::test]
async fn wrong_password_is_a_permanent_auth_failure() {
    init();
    let server = Smtpd::start();
    let dir = TempDir::new("smtp");
    let toml = smtp_toml(
        server.smtps_port,
        "implicit",
        &auth(&server, USER, "not-the-password"),
    );
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Auth), "{result:?}");
    assert_eq!(
        result.message,
        "auth: expected 235, got 535 5.7.8 Authentication credentials invalid (permanent)"
    );
    assert_eq!(result.observations["reply_code"], Value::Int(535));
    assert_eq!(result.observations["temporary"], Value::Bool(false));
    assert_eq!(result.observations["failed_step"], Value::from("auth"));
    assert!(!format!("{result:?}").contains("not-the-password"));
}

/// A 454 to AUTH is an `auth` failure marked temporary.
#[tokio::test]
async fn temporary_auth_refusal_is_marked_temporary() {
    init();
    let server = Smtpd::start();
    let dir = TempDir::new("smtp");
    let toml = smtp_toml(
        server.smtps_port,
        "implicit",
        &auth(&server, TEMPFAIL_USER, "whatever"),
    );
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Auth), "{result:?}");
    assert_eq!(
        result.message,
        "auth: expected 235, got 454 4.7.0 Temporary authentication failure (temporary)"
    );
    assert_eq!(result.observations["temporary"], Value::Bool(true));
}

/// `tls = "starttls"` against a server that does not offer STARTTLS fails before AUTH, as
/// `tls`, and never sends the credentials in plaintext.
#[tokio::test]
async fn missing_starttls_fails_instead_of_continuing_in_plaintext() {
    init();
    let server = Smtpd::start();
    let dir = TempDir::new("smtp");
    let toml = smtp_toml(
        server.plain_port,
        "starttls",
        &auth(&server, USER, PASSWORD),
    );
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Tls), "{result:?}");
    assert_eq!(
        result.message,
        "starttls: server does not offer STARTTLS; refusing to continue in plaintext"
    );
    assert_eq!(result.observations["failed_step"], Value::from("starttls"));
    assert!(result.phase("auth").is_none());

    // The same server is fine for an explicitly plaintext probe without credentials.
    let plain = run_one(dir.path(), &smtp_toml(server.plain_port, "none", "")).await;
    assert!(plain.ok, "{plain:?}");
}

/// A certificate from an unknown CA is a `tls` failure at the tls step.
#[tokio::test]
async fn untrusted_certificate_is_a_tls_failure() {
    init();
    let server = Smtpd::start();
    let dir = TempDir::new("smtp");
    let result = run_one(dir.path(), &smtp_toml(server.smtps_port, "implicit", "")).await;
    assert_eq!(result.error, Some(ErrorClass::Tls), "{result:?}");
    assert_eq!(
        result.message,
        "tls: handshake: certificate issued by an unknown authority (not in the trusted roots)"
    );
    assert_eq!(result.observations["failed_step"], Value::from("tls"));
}

/// A stopped server is `connect`, failed at the connect step.
#[tokio::test]
async fn stopped_server_is_a_connect_failure() {
    init();
    let mut server = Smtpd::start();
    let port = server.smtps_port;
    server.stop();
    let dir = TempDir::new("smtp");
    let result = run_one(dir.path(), &smtp_toml(port, "implicit", "")).await;
    assert_eq!(result.error, Some(ErrorClass::Connect), "{result:?}");
    assert_eq!(
        result.message,
        format!("connect: 127.0.0.1:{port}: Connection refused (os error 111)")
    );
    assert_eq!(result.observations["failed_step"], Value::from("connect"));
    assert_eq!(result.observations["banner"], Value::Null);
}

/// A server that accepts the connection but never greets (frozen with SIGSTOP) ends in the
/// runner's `timeout`, naming the step it hung in.
#[tokio::test]
async fn a_hung_server_times_out_in_the_banner_step() {
    init();
    let server = Smtpd::start();
    server.pause();
    let dir = TempDir::new("smtp");
    let toml =
        smtp_toml(server.plain_port, "none", "").replace("timeout = \"5s\"", "timeout = \"1s\"");
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Timeout), "{result:?}");
    assert_eq!(result.message, "timed out after 1s during banner");
    assert_eq!(result.observations["timeout_phase"], Value::from("banner"));
}

/// A server that greets and hangs up fails the EHLO step as `protocol`; one that speaks
/// something else fails the banner; a 421 greeting is a temporary refusal at the banner.
#[tokio::test]
async fn broken_servers_are_protocol_failures_naming_the_step() {
    init();
    let dir = TempDir::new("smtp");

    let closing = Misbehaving::start(Misbehavior::CloseAfterBanner).await;
    let result = run_one(dir.path(), &smtp_toml(closing.port, "none", "")).await;
    assert_eq!(result.error, Some(ErrorClass::Protocol), "{result:?}");
    assert_eq!(
        result.message,
        "ehlo: server closed the connection without a reply"
    );
    assert_eq!(result.observations["failed_step"], Value::from("ehlo"));
    assert_eq!(
        result.observations["banner"],
        Value::from("mx.honeyguide.test ESMTP ready")
    );

    let garbage = Misbehaving::start(Misbehavior::Garbage).await;
    let result = run_one(dir.path(), &smtp_toml(garbage.port, "none", "")).await;
    assert_eq!(result.error, Some(ErrorClass::Protocol), "{result:?}");
    assert_eq!(
        result.message,
        "banner: not an SMTP reply: \"SSH-2.0-OpenSSH_9.2p1 Debian-2\""
    );

    let busy = Misbehaving::start(Misbehavior::Busy).await;
    let result = run_one(dir.path(), &smtp_toml(busy.port, "none", "")).await;
    assert_eq!(result.error, Some(ErrorClass::Protocol), "{result:?}");
    assert_eq!(
        result.message,
        "banner: expected 220, got 421 4.3.2 mx.honeyguide.test too busy, try later (temporary)"
    );
    assert_eq!(result.observations["temporary"], Value::Bool(true));
    assert_eq!(result.observations["reply_code"], Value::Int(421));
}

/// Bad values are load errors located at the key: no TLS mode, a user without a password,
/// credentials over plaintext.
#[test]
fn bad_values_are_located_config_errors() {
    let dir = TempDir::new("smtp");
    let path = dir.path().join("probes.toml");
    let path = path.display();
    let port = free_port();
    let text = format!(
        "[[probe]]\nname = \"m\"\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         username = \"me\"\n"
    );
    assert_eq!(
        errors(dir.path(), &text),
        format!(
            "{path}:1:1: probe[m].tls: choose `tls = \"implicit\"` (port 465) or `tls = \
             \"starttls\"` (port 587); `\"none\"` is for internal relays only\n\
             {path}:6:12: probe[m].username: `username` is set but `password` (or \
             `password_file`) is empty or missing"
        )
    );

    let text = "[[probe]]\nname = \"m\"\nkind = \"smtp\"\nhost = \"127.0.0.1\"\ntls = \"none\"\n\
                username = \"me\"\npassword = \"secret\"\n";
    assert_eq!(
        errors(dir.path(), text),
        format!(
            "{path}:6:12: probe[m].username: refusing to send credentials without TLS; use \
             `tls = \"implicit\"` or `\"starttls\"`"
        )
    );

    let text = "[[probe]]\nname = \"m\"\nkind = \"smtp\"\nhost = \"127.0.0.1\"\ntls = \"ssl\"\n";
    let message = errors(dir.path(), text);
    assert!(
        message.starts_with(&format!("{path}:5:7: probe[m].tls: unknown variant `ssl`")),
        "{message}"
    );
}

/// Empty credentials (the `${VAR:-}` defaults of the shipped probes.toml) mean "no AUTH step",
/// and the password never shows in the probe's debug output.
#[test]
fn empty_credentials_mean_no_auth_and_secrets_stay_hidden() {
    let dir = TempDir::new("smtp");
    let text = "[[probe]]\nname = \"m\"\nkind = \"smtp\"\nhost = \"smtp.example.com\"\n\
                tls = \"implicit\"\nusername = \"\"\npassword = \"\"\n";
    let config = load(dir.path(), text);
    assert_eq!(
        config.probes[0].probe.target(),
        "smtp.example.com:465 (implicit TLS)"
    );

    let text = "[[probe]]\nname = \"m\"\nkind = \"smtp\"\nhost = \"smtp.example.com\"\n\
                tls = \"starttls\"\nusername = \"me\"\npassword = \"hunter2-hunter2\"\n";
    let config = load(dir.path(), text);
    assert_eq!(
        config.probes[0].probe.target(),
        "smtp.example.com:587 (STARTTLS)"
    );
    assert!(!format!("{config:?}").contains("hunter2"));
}
