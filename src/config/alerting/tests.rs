//! The alerting sections: a complete example loads, and each mistake is reported at its line
//! and column with its key.

use std::time::Duration;

use crate::alert::silence::{Phase, Schedule};
use crate::catalog::Severity;
use crate::config::{Config, Source, parse};
use crate::notify::NotifierKind;

fn load(text: &str) -> Result<Config, Vec<String>> {
    let source = Source::new("probes.toml", text.to_owned());
    let env = |name: &str| match name {
        "SMTP_PASSWORD" => Some("app-password".to_owned()),
        "HONEYGUIDE_API_TOKEN" => Some("0123456789abcdef0123".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    parse(&source, &env).map_err(|errors| errors.0.iter().map(ToString::to_string).collect())
}

#[track_caller]
fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors,
    }
}

const FULL: &str = r#"
[alerting]
group_wait = "5s"
repeat_interval = "1h"
external_url = "https://honeyguide.example.com/"

[store]
path = "state/hg.db"

[api]
token = "${HONEYGUIDE_API_TOKEN}"

[[notifier]]
name = "oncall-email"
kind = "email"
host = "smtp.fastmail.com"
username = "alerts@example.com"
password = "${SMTP_PASSWORD}"
from = "honeyguide <alerts@example.com>"
to = ["oncall@example.com"]
severities = ["critical"]

[[notifier]]
name = "hook"
kind = "webhook"
url = "https://hooks.example.com/honeyguide"
secret = "s3cret"
alerts = ["worker-*"]
send_resolved = false

[[notifier]]
name = "am"
kind = "alertmanager"
urls = ["http://am-0:9093", "http://am-1:9093/prefix/"]

[[notifier]]
name = "deadman"
kind = "heartbeat"
url = "https://hc-ping.com/abc"
interval = "30s"

[[maintenance]]
name = "b2-weekly"
alerts = ["b2-*"]
weekly = { day = "thu", start = "11:30", end = "13:30", timezone = "America/Los_Angeles" }
comment = "Backblaze's weekly maintenance"

[[maintenance]]
name = "drain-node-2"
matchers = { layer = "origin", node = "2" }
start = "2026-07-01T10:00:00Z"
end = "2026-07-01T12:00:00Z"
"#;

/// A complete alerting configuration loads into validated types.
#[test]
fn a_complete_alerting_config_loads() {
    let config = load(FULL).unwrap();
    assert_eq!(config.alerting.group_wait, Duration::from_secs(5));
    assert_eq!(config.alerting.group_interval, Duration::from_secs(60));
    assert_eq!(config.alerting.repeat_interval, Duration::from_secs(3600));
    assert_eq!(
        config.alerting.external_url.as_ref().map(url::Url::as_str),
        Some("https://honeyguide.example.com/")
    );
    assert!(config.store.path.ends_with("state/hg.db"));
    assert_eq!(
        config.api.token.as_ref().map(|token| token.expose()),
        Some("0123456789abcdef0123")
    );
    let kinds: Vec<(&str, NotifierKind)> = config
        .notifiers
        .iter()
        .map(|notifier| (notifier.name.as_str(), notifier.kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("oncall-email", NotifierKind::Email),
            ("hook", NotifierKind::Webhook),
            ("am", NotifierKind::Alertmanager),
            ("deadman", NotifierKind::Heartbeat),
        ]
    );
    assert_eq!(config.notifiers[0].route.severities, [Severity::Critical]);
    assert!(
        config.notifiers[1]
            .route
            .matches("worker-stalled", Severity::Info)
    );
    assert!(
        !config.notifiers[1]
            .route
            .matches("neon-down", Severity::Critical)
    );
    assert!(!config.notifiers[1].send_resolved);
    assert_eq!(
        config.notifiers[0].notifier.target(),
        "smtp://smtp.fastmail.com:465 (implicit TLS)"
    );
    assert_eq!(
        config.notifiers[2].notifier.target(),
        "http://am-0:9093/api/v2/alerts, http://am-1:9093/prefix/api/v2/alerts"
    );
    assert!(!format!("{:?}", config.notifiers[0]).contains("app-password"));

    let b2 = &config.maintenance[0];
    assert_eq!(b2.id, "b2-weekly");
    let Schedule::Weekly(weekly) = &b2.schedule else {
        panic!("weekly expected")
    };
    assert_eq!(weekly.timezone_name, "America/Los_Angeles");
    // Thursday 2026-07-02 19:00 UTC is 12:00 in Los Angeles.
    assert!(matches!(
        b2.phase("2026-07-02T19:00:00Z".parse().unwrap()),
        Phase::Active { .. }
    ));
    let drain = &config.maintenance[1];
    assert_eq!(drain.matchers.labels.len(), 2);
}

/// Without a token (or with one interpolated to nothing) the API is off.
#[test]
fn an_empty_or_missing_token_turns_the_api_off() {
    assert!(load("").unwrap().api.token.is_none());
    assert!(
        load("[api]\ntoken = \"${HONEYGUIDE_UNSET:-}\"\n")
            .unwrap()
            .api
            .token
            .is_none()
    );
}

/// Each mistake is located and explained; all are reported at once.
#[test]
fn mistakes_are_reported_with_location_and_key() {
    let text = r#"[alerting]
repeat_interval = "0s"
external_url = "ftp://x"

[api]
token = "short"

[[notifier]]
name = "mail"
kind = "email"
host = "smtp.example.com"
from = "not an address"
to = []
severities = ["urgent"]

[[notifier]]
name = "mail"
kind = "pager"

[[notifier]]
name = "beat"
kind = "heartbeat"
url = "https://hc-ping.com/x"
severities = ["critical"]

[[notifier]]
name = "am"
kind = "alertmanager"
urls = []
send_resolved = false

[[maintenance]]
name = "everything"
start = "2026-07-01T12:00:00Z"
end = "2026-07-01T10:00:00Z"

[[maintenance]]
name = "weekly"
alerts = ["b2-*"]
weekly = { day = "thursday-ish", start = "25:00", end = "13:30", timezone = "Mars/Olympus" }
"#;
    let found = errors(text);
    let expected = [
        "probes.toml:2:19: alerting.repeat_interval: must be at least 1s (the range is 1s to 30d)",
        "probes.toml:3:16: alerting.external_url: must be an http:// or https:// URL, not `ftp://`",
        "probes.toml:6:9: api.token: the token is too short: use at least 16 random characters",
        "probes.toml:12:8: notifier[mail].from: `not an address` is not an email address",
        "probes.toml:13:6: notifier[mail].to: name at least one recipient",
        "probes.toml:14:14: notifier[mail].severities: unknown severity `urgent`, expected critical, warning or info",
        "probes.toml:18:8: notifier[mail].kind: unknown notifier kind, expected one of `email`, `webhook`, `alertmanager`, `heartbeat`",
        "probes.toml:24:14: notifier[beat]: a heartbeat is not sent alerts, so it takes no `severities`, `alerts` or `send_resolved`",
        "probes.toml:29:8: notifier[am].urls: name at least one Alertmanager URL",
        "probes.toml:30:17: notifier[am].send_resolved: Alertmanager is always sent resolves",
        "probes.toml:32:1: maintenance[everything].alerts: say which alerts it silences",
        "probes.toml:35:7: maintenance[everything].end: must be after `start`",
        "probes.toml:40:18: maintenance[weekly].weekly.day: `thursday-ish` is not a day",
        "probes.toml:40:42: maintenance[weekly].weekly.start: `25:00` is not a time of day like \"11:30\"",
        "probes.toml:40:77: maintenance[weekly].weekly.timezone: `Mars/Olympus` is not a time zone name",
    ];
    for line in expected {
        assert!(
            found.iter().any(|error| error.starts_with(line)),
            "missing `{line}` in:\n{}",
            found.join("\n")
        );
    }
}

/// Secrets follow the usual rules: at most one of the value and its `_file`; the value never
/// appears in an error.
#[test]
fn token_and_token_file_are_exclusive() {
    let found = errors("[api]\ntoken = \"${HONEYGUIDE_API_TOKEN}\"\ntoken_file = \"t\"\n");
    assert_eq!(
        found,
        ["probes.toml:2:9: api.token: set at most one of `token` and `token_file`"]
    );
    assert!(!found.join("").contains("0123456789abcdef"));
}

/// Notifier names are unique; webhook URLs must be http(s) and free of credentials.
#[test]
fn notifier_names_are_unique_and_urls_checked() {
    let found = errors(
        r#"[[notifier]]
name = "hook"
kind = "webhook"
url = "https://hooks.example.com/"

[[notifier]]
name = "hook"
kind = "webhook"
url = "https://hooks.example.com/"

[[notifier]]
name = "leaky"
kind = "webhook"
url = "https://user:pw@hooks.example.com/"
"#,
    );
    assert_eq!(
        found,
        [
            "probes.toml:7:8: notifier[hook].name: duplicate notifier name `hook`",
            "probes.toml:14:7: notifier[leaky].url: credentials in the URL would be logged; use the notifier's own keys",
        ]
    );
}

/// Every duration of the alerting sections has a range, checked at the value with its key.
#[test]
fn alerting_durations_are_bounded() {
    let found = errors(
        r#"[alerting]
group_wait = "2h"
group_interval = "2d"
repeat_interval = "500ms"
keep_resolved = "8d"
give_up_after = "30s"

[[notifier]]
name = "hook"
kind = "webhook"
url = "https://hooks.example.com/"
timeout = "1ms"

[[notifier]]
name = "am"
kind = "alertmanager"
urls = ["http://am:9093"]
resend_interval = "2h"
timeout = "11m"

[[notifier]]
name = "mail"
kind = "email"
host = "smtp.example.com"
from = "a@example.com"
to = ["b@example.com"]
timeout = "500000000000y"

[[notifier]]
name = "beat"
kind = "heartbeat"
url = "https://hc-ping.com/x"
interval = "100ms"
"#,
    );
    assert_eq!(
        found,
        [
            "probes.toml:2:14: alerting.group_wait: must be at most 1h (the range is 0s to 1h)",
            "probes.toml:3:18: alerting.group_interval: must be at most 24h (the range is 0s to 24h)",
            "probes.toml:4:19: alerting.repeat_interval: must be at least 1s (the range is 1s to 30d)",
            "probes.toml:5:17: alerting.keep_resolved: must be at most 7d (the range is 0s to 7d)",
            "probes.toml:6:17: alerting.give_up_after: must be at least 1m (the range is 1m to 7d)",
            "probes.toml:12:11: notifier[hook].timeout: must be at least 10ms (the range is 10ms to 10m)",
            "probes.toml:18:19: notifier[am].resend_interval: must be at most 1h (the range is 1s to 1h)",
            "probes.toml:19:11: notifier[am].timeout: must be at most 10m (the range is 10ms to 10m)",
            "probes.toml:27:11: notifier[mail].timeout: must be at most 10m (the range is 10ms to 10m)",
            "probes.toml:33:12: notifier[beat].interval: must be at least 1s (the range is 1s to 24h)",
        ]
    );
}

/// `[store] history_retention` defaults to a week and is bounded: an hour to 90 days, the
/// error located with its key.
#[test]
fn history_retention_has_a_default_and_a_range() {
    let config = load("[store]\npath = \"hg.db\"\n").unwrap();
    assert_eq!(
        config.store.history_retention,
        Duration::from_secs(7 * 86_400)
    );
    let config = load("[store]\nhistory_retention = \"30d\"\n").unwrap();
    assert_eq!(
        config.store.history_retention,
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(
        errors("[store]\nhistory_retention = \"10m\"\n"),
        [
            "probes.toml:2:21: store.history_retention: must be at least 1h (the range is 1h to \
          90d)"
        ]
    );
    assert_eq!(
        errors("[store]\nhistory_retention = \"1y\"\n"),
        [
            "probes.toml:2:21: store.history_retention: must be at most 90d (the range is 1h to \
          90d)"
        ]
    );
}
