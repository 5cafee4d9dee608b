//! Rendering notifications: email subject, plain text and HTML; the Alertmanager webhook payload
//! (version 4) and Alertmanager API alerts. Pure functions of the notification.
//!
//! Everything that came from outside (probe messages, rule text) is escaped in HTML. The
//! recovery steps are markdown from the catalog, rendered by [`crate::html`] as the status page
//! renders them, but for mail: raw HTML turned into text, only `http`, `https` and `mailto`
//! links kept as links, images never loaded.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::DeliveryContext;
use crate::alert::notification::{AlertMessage, MessageStatus, Notification, Purpose, Reason};
use crate::html::{self, Medium, escape};
use crate::human;

/// The Alertmanager zero time: `endsAt` of a firing alert in the webhook payload.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

// === email ===

/// The subject: status counts and the failure modes by title, e.g.
/// `[FIRING] Neon Postgres unreachable (neon-down)` or
/// `[FIRING:2, RESOLVED:1] Neon Postgres unreachable, Redis restarted and 1 more`.
pub fn subject(notification: &Notification) -> String {
    if notification.purpose == Purpose::Test {
        return format!(
            "[TEST] honeyguide test notification via {}",
            notification.notifier
        );
    }
    let firing = count(notification, MessageStatus::Firing);
    let resolved = count(notification, MessageStatus::Resolved);
    let all_repeats = notification
        .alerts
        .iter()
        .all(|message| message.reason == Reason::Repeat);
    let tag = match (firing, resolved) {
        (1, 0) if all_repeats => "[STILL FIRING]".to_owned(),
        (1, 0) => "[FIRING]".to_owned(),
        (0, 1) => "[RESOLVED]".to_owned(),
        (firing, 0) => format!("[FIRING:{firing}]"),
        (0, resolved) => format!("[RESOLVED:{resolved}]"),
        (firing, resolved) => format!("[FIRING:{firing}, RESOLVED:{resolved}]"),
    };
    match notification.alerts.as_slice() {
        [only] => format!("{tag} {} ({})", only.alert.title, only.alert.id),
        [first, second] => format!("{tag} {}, {}", first.alert.title, second.alert.title),
        [first, second, rest @ ..] => format!(
            "{tag} {}, {} and {} more",
            first.alert.title,
            second.alert.title,
            rest.len()
        ),
        [] => tag,
    }
}

fn count(notification: &Notification, status: MessageStatus) -> usize {
    notification
        .alerts
        .iter()
        .filter(|message| message.status == status)
        .count()
}

/// The plain-text body.
pub fn text(notification: &Notification, cx: &DeliveryContext) -> String {
    let mut out = String::new();
    if notification.purpose == Purpose::Test {
        let _ = writeln!(
            out,
            "This is a test notification from honeyguide through the notifier `{}`.\n\
             If you are reading it, this notifier works.\n",
            notification.notifier
        );
    }
    for (index, message) in notification.alerts.iter().enumerate() {
        if index > 0 {
            out.push_str("\n----------------------------------------\n\n");
        }
        write_text_alert(&mut out, message, notification.created_at);
    }
    out.push_str("\n--\n");
    let _ = writeln!(
        out,
        "Sent by honeyguide {} from vantage `{}` through `{}`. Notification id {}.",
        env!("CARGO_PKG_VERSION"),
        cx.vantage,
        notification.notifier,
        notification.id
    );
    if let Some(url) = status_url(cx) {
        let _ = writeln!(out, "Current status: {url}");
    }
    out
}

fn write_text_alert(out: &mut String, message: &AlertMessage, now: Timestamp) {
    let alert = &message.alert;
    let _ = writeln!(
        out,
        "{}: {} ({}, {})",
        message.status.as_str().to_uppercase(),
        alert.title,
        alert.id,
        alert.severity
    );
    let _ = writeln!(out, "{}", timing_line(message, now));
    if let Some(note) = reason_note(message.reason) {
        let _ = writeln!(out, "{note}");
    }
    if let Some(note) = &alert.note {
        let _ = writeln!(out, "Note: {note}.");
    }
    if !alert.summary.is_empty() {
        let _ = writeln!(out, "\nWhat users see:\n{}", indent(&alert.summary));
    }
    let failing: Vec<_> = alert.failing().collect();
    if !failing.is_empty() {
        let heading = match message.status {
            MessageStatus::Firing => "Failing probes:",
            MessageStatus::Resolved => "Probes that were failing:",
        };
        let _ = writeln!(out, "\n{heading}");
        for line in failing {
            let _ = writeln!(out, "  - {}: {}", line.probe, one_line(&line.message));
        }
    }
    if message.status == MessageStatus::Firing && !alert.recovery.is_empty() {
        let _ = writeln!(out, "\nWhat to do:\n{}", alert.recovery.trim_end());
    }
    if !alert.runbook.is_empty() {
        let _ = writeln!(out, "\nRunbook: {}", alert.runbook);
    }
}

/// The HTML alternative: the same content, every outside string escaped.
pub fn html(notification: &Notification, cx: &DeliveryContext) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"></head>\
         <body style=\"font-family: sans-serif; line-height: 1.4\">",
    );
    if notification.purpose == Purpose::Test {
        let _ = write!(
            out,
            "<p>This is a test notification from honeyguide through the notifier \
             <code>{}</code>. If you are reading it, this notifier works.</p>",
            escape(&notification.notifier)
        );
    }
    for (index, message) in notification.alerts.iter().enumerate() {
        if index > 0 {
            out.push_str("<hr>");
        }
        write_html_alert(&mut out, message, notification.created_at);
    }
    let _ = write!(
        out,
        "<hr><p style=\"color: #666; font-size: smaller\">Sent by honeyguide {} from vantage \
         <code>{}</code> through <code>{}</code>. Notification id <code>{}</code>.",
        env!("CARGO_PKG_VERSION"),
        escape(&cx.vantage),
        escape(&notification.notifier),
        escape(&notification.id)
    );
    if let Some(url) = status_url(cx) {
        let _ = write!(
            out,
            " <a href=\"{}\">Current status</a>.",
            escape(url.as_str())
        );
    }
    out.push_str("</p></body></html>\n");
    out
}

fn write_html_alert(out: &mut String, message: &AlertMessage, now: Timestamp) {
    let alert = &message.alert;
    let color = match message.status {
        MessageStatus::Firing => "#b00020",
        MessageStatus::Resolved => "#1b7f3b",
    };
    let _ = write!(
        out,
        "<h2><span style=\"color: {color}\">{}</span> {} <small>({}, {})</small></h2>",
        message.status.as_str().to_uppercase(),
        escape(&alert.title),
        escape(&alert.id),
        escape(alert.severity.as_str())
    );
    let _ = write!(out, "<p>{}", escape(&timing_line(message, now)));
    if let Some(note) = reason_note(message.reason) {
        let _ = write!(out, "<br>{}", escape(note));
    }
    if let Some(note) = &alert.note {
        let _ = write!(out, "<br>Note: {}.", escape(note));
    }
    out.push_str("</p>");
    if !alert.summary.is_empty() {
        let _ = write!(
            out,
            "<h3>What users see</h3><p>{}</p>",
            escape(&alert.summary)
        );
    }
    let failing: Vec<_> = alert.failing().collect();
    if !failing.is_empty() {
        let heading = match message.status {
            MessageStatus::Firing => "Failing probes",
            MessageStatus::Resolved => "Probes that were failing",
        };
        let _ = write!(out, "<h3>{heading}</h3><ul>");
        for line in failing {
            let _ = write!(
                out,
                "<li><code>{}</code>: {}</li>",
                escape(&line.probe),
                escape(&one_line(&line.message))
            );
        }
        out.push_str("</ul>");
    }
    if message.status == MessageStatus::Firing && !alert.recovery.is_empty() {
        out.push_str("<h3>What to do</h3>");
        html::push_markdown(out, &alert.recovery, Medium::Email);
    }
    if !alert.runbook.is_empty() {
        let _ = write!(
            out,
            "<p>Runbook: {}</p>",
            html::link_or_code(&alert.runbook)
        );
    }
}

fn timing_line(message: &AlertMessage, now: Timestamp) -> String {
    let since = message.alert.since;
    match (message.status, message.ends_at) {
        (MessageStatus::Resolved, Some(end)) => format!(
            "Resolved at {end} after {} (started {since}).",
            human::duration(end.duration_since(since))
        ),
        _ => format!("Started {since}, {}.", human::ago(since, now)),
    }
}

fn reason_note(reason: Reason) -> Option<&'static str> {
    match reason {
        Reason::Repeat => Some("Reminder: this is still happening."),
        Reason::Unsuppressed => {
            Some("Still happening now that the silence or inhibition that held it has ended.")
        }
        Reason::New | Reason::Resolved | Reason::Refresh | Reason::Test => None,
    }
}

fn indent(text: &str) -> String {
    text.trim_end()
        .lines()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn status_url(cx: &DeliveryContext) -> Option<url::Url> {
    cx.external_url.as_ref().map(|base| {
        let mut url = base.clone();
        url.set_path(&format!("{}/", base.path().trim_end_matches('/')));
        url.join("status").unwrap_or_else(|_| base.clone())
    })
}

// === Alertmanager shapes ===

/// The labels of an alert: what Alertmanager identifies and groups it by.
pub fn labels(message: &AlertMessage) -> BTreeMap<String, String> {
    message.alert.identity_labels()
}

/// The annotations of an alert: what a receiver template shows. The vantage is an annotation,
/// not a label: the same failure seen from two instances must stay one alert to Alertmanager.
pub fn annotations(message: &AlertMessage, cx: &DeliveryContext) -> BTreeMap<String, String> {
    let alert = &message.alert;
    let mut annotations = BTreeMap::new();
    annotations.insert("vantage".to_owned(), cx.vantage.clone());
    annotations.insert("title".to_owned(), alert.title.clone());
    annotations.insert("summary".to_owned(), alert.summary.clone());
    if let Some(note) = &alert.note {
        annotations.insert("note".to_owned(), note.clone());
    }
    let failing: Vec<String> = alert
        .failing()
        .map(|line| format!("{}: {}", line.probe, one_line(&line.message)))
        .collect();
    if !failing.is_empty() {
        annotations.insert("description".to_owned(), failing.join("\n"));
    }
    if !alert.recovery.is_empty() {
        annotations.insert("recovery".to_owned(), alert.recovery.clone());
    }
    if !alert.runbook.is_empty() {
        annotations.insert("runbook_url".to_owned(), alert.runbook.clone());
    }
    annotations
}

/// Alertmanager's fingerprint of a label set: FNV-1a 64 over the sorted names and values, each
/// followed by the byte 255 (`model.LabelSet.Fingerprint`), in hex. The integration tests
/// compare it with what a real Alertmanager computes for the same alert.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut hash = OFFSET;
    let mut add = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[255]);
        add(value.as_bytes());
        add(&[255]);
    }
    format!("{hash:016x}")
}

fn generator_url(cx: &DeliveryContext) -> Option<String> {
    status_url(cx).map(|url| url.to_string())
}

/// The Alertmanager webhook payload, version 4, exactly as Alertmanager's webhook receiver
/// sends it, so existing receivers work unchanged.
pub fn webhook_payload(notification: &Notification, cx: &DeliveryContext) -> Value {
    let any_firing = notification
        .alerts
        .iter()
        .any(|message| message.status == MessageStatus::Firing);
    let alerts: Vec<Value> = notification
        .alerts
        .iter()
        .map(|message| {
            let labels = labels(message);
            json!({
                "status": message.status.as_str(),
                "labels": labels,
                "annotations": annotations(message, cx),
                "startsAt": message.alert.since.to_string(),
                "endsAt": message.ends_at.map_or_else(|| ZERO_TIME.to_owned(), |end| end.to_string()),
                "generatorURL": generator_url(cx).unwrap_or_default(),
                "fingerprint": fingerprint(&labels),
            })
        })
        .collect();
    let label_sets: Vec<BTreeMap<String, String>> =
        notification.alerts.iter().map(labels).collect();
    let annotation_sets: Vec<BTreeMap<String, String>> = notification
        .alerts
        .iter()
        .map(|message| annotations(message, cx))
        .collect();
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{notifier=\"{}\"}}", notification.notifier),
        "truncatedAlerts": 0,
        "status": if any_firing { "firing" } else { "resolved" },
        "receiver": notification.notifier,
        "groupLabels": {},
        "commonLabels": common(&label_sets),
        "commonAnnotations": common(&annotation_sets),
        "externalURL": cx.external_url.as_ref().map(url::Url::to_string).unwrap_or_default(),
        "alerts": alerts,
    })
}

/// The pairs every map has in common.
fn common(maps: &[BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let Some((first, rest)) = maps.split_first() else {
        return BTreeMap::new();
    };
    first
        .iter()
        .filter(|(name, value)| rest.iter().all(|map| map.get(*name) == Some(value)))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// One alert for `POST /api/v2/alerts`. A firing alert ends at `ends_at` (in the future, pushed
/// forward by every re-send); a resolved one at the time it resolved.
pub fn alertmanager_alert(
    message: &AlertMessage,
    ends_at: Timestamp,
    cx: &DeliveryContext,
) -> Value {
    let mut alert = json!({
        "labels": labels(message),
        "annotations": annotations(message, cx),
        "startsAt": message.alert.since.to_string(),
        "endsAt": ends_at.to_string(),
    });
    if let (Some(url), Some(object)) = (generator_url(cx), alert.as_object_mut()) {
        object.insert("generatorURL".to_owned(), Value::String(url));
    }
    alert
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::notification::{Content, EvidenceLine};
    use crate::catalog::Severity;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn content(id: &str, title: &str) -> Content {
        Content {
            id: id.into(),
            title: title.into(),
            severity: Severity::Critical,
            labels: [("layer".to_owned(), "db".to_owned())].into(),
            summary: "API requests fail with 500 <errors>".into(),
            recovery: "1. Check the [Neon status](https://neonstatus.com).\n2. Run `kubectl get pods`.\n\n<script>alert(1)</script>\n[bad](javascript:alert(1))".into(),
            runbook: "https://runbooks.example/neon-down".into(),
            evidence: vec![
                EvidenceLine {
                    probe: "db-pooler".into(),
                    ok: false,
                    message: "connect: connection refused".into(),
                },
                EvidenceLine {
                    probe: "edge-api".into(),
                    ok: true,
                    message: "200 OK".into(),
                },
            ],
            since: ts("2026-07-01T10:00:00Z"),
            note: None,
        }
    }

    fn notification(alerts: Vec<AlertMessage>) -> Notification {
        Notification {
            id: "0123456789abcdef0123456789abcdef".into(),
            notifier: "oncall".into(),
            purpose: Purpose::Alerts,
            created_at: ts("2026-07-01T10:12:00Z"),
            alerts,
        }
    }

    fn firing(id: &str, title: &str) -> AlertMessage {
        AlertMessage {
            status: MessageStatus::Firing,
            reason: Reason::New,
            alert: content(id, title),
            ends_at: None,
        }
    }

    fn resolved(id: &str, title: &str) -> AlertMessage {
        AlertMessage {
            status: MessageStatus::Resolved,
            reason: Reason::Resolved,
            alert: content(id, title),
            ends_at: Some(ts("2026-07-01T10:42:00Z")),
        }
    }

    fn cx() -> DeliveryContext {
        DeliveryContext {
            external_url: Some("https://hg.example/".parse().unwrap()),
            vantage: "outside-fra".to_owned(),
            now: ts("2026-07-01T10:12:05Z"),
        }
    }

    /// Every message says which instance sent it: the text, the HTML and, as an annotation
    /// (never a label, so Alertmanager still merges instances), the webhook and Alertmanager
    /// bodies.
    #[test]
    fn every_message_names_the_vantage() {
        let notification = notification(vec![firing("api-down", "API down")]);
        assert!(text(&notification, &cx()).contains("from vantage `outside-fra`"));
        assert!(html(&notification, &cx()).contains("from vantage <code>outside-fra</code>"));
        let payload = webhook_payload(&notification, &cx());
        assert_eq!(
            payload["alerts"][0]["annotations"]["vantage"],
            "outside-fra"
        );
        assert_eq!(payload["alerts"][0]["labels"].get("vantage"), None);
        let pushed = alertmanager_alert(&notification.alerts[0], ts("2026-07-01T10:20:00Z"), &cx());
        assert_eq!(pushed["annotations"]["vantage"], "outside-fra");
    }

    #[test]
    fn subjects_name_the_failure_modes() {
        let one = notification(vec![firing("neon-down", "Neon Postgres unreachable")]);
        assert_eq!(
            subject(&one),
            "[FIRING] Neon Postgres unreachable (neon-down)"
        );
        let three = notification(vec![
            firing("neon-down", "Neon Postgres unreachable"),
            firing("redis-restarted", "Redis restarted"),
            resolved("edge-5xx", "Edge 5xx"),
        ]);
        assert_eq!(
            subject(&three),
            "[FIRING:2, RESOLVED:1] Neon Postgres unreachable, Redis restarted and 1 more"
        );
        let gone = notification(vec![resolved("neon-down", "Neon Postgres unreachable")]);
        assert_eq!(
            subject(&gone),
            "[RESOLVED] Neon Postgres unreachable (neon-down)"
        );
    }

    #[test]
    fn text_has_symptom_failing_probes_recovery_and_runbook() {
        let body = text(
            &notification(vec![firing("neon-down", "Neon Postgres unreachable")]),
            &cx(),
        );
        assert!(body.starts_with("FIRING: Neon Postgres unreachable (neon-down, critical)\nStarted 2026-07-01T10:00:00Z, 12m ago.\n"), "{body}");
        assert!(
            body.contains("What users see:\n  API requests fail with 500 <errors>\n"),
            "{body}"
        );
        assert!(
            body.contains("Failing probes:\n  - db-pooler: connect: connection refused\n"),
            "{body}"
        );
        assert!(
            !body.contains("edge-api"),
            "passing probes are not listed: {body}"
        );
        assert!(
            body.contains("What to do:\n1. Check the [Neon status]"),
            "{body}"
        );
        assert!(
            body.contains("Runbook: https://runbooks.example/neon-down\n"),
            "{body}"
        );
        assert!(
            body.contains("Current status: https://hg.example/status\n"),
            "{body}"
        );
        assert!(
            body.contains("Notification id 0123456789abcdef0123456789abcdef."),
            "{body}"
        );
    }

    #[test]
    fn html_escapes_everything_and_renders_recovery_markdown() {
        let body = html(
            &notification(vec![firing("neon-down", "Neon <b>Postgres</b>")]),
            &cx(),
        );
        assert!(body.contains("Neon &lt;b&gt;Postgres&lt;/b&gt;"), "{body}");
        assert!(
            body.contains("API requests fail with 500 &lt;errors&gt;"),
            "{body}"
        );
        assert!(
            body.contains("<li>Check the <a href=\"https://neonstatus.com\">Neon status</a>.</li>"),
            "{body}"
        );
        assert!(body.contains("<code>kubectl get pods</code>"), "{body}");
        assert!(!body.contains("<script>"), "{body}");
        assert!(body.contains("&lt;script&gt;"), "{body}");
        assert!(!body.contains("javascript:"), "{body}");
        assert!(
            body.contains(
                "<p>Runbook: <a href=\"https://runbooks.example/neon-down\" rel=\"noreferrer\">"
            ),
            "{body}"
        );
    }

    #[test]
    fn webhook_payload_is_alertmanager_version_4() {
        let payload = webhook_payload(
            &notification(vec![
                firing("neon-down", "Neon"),
                resolved("edge-5xx", "Edge"),
            ]),
            &cx(),
        );
        assert_eq!(payload["version"], "4");
        assert_eq!(payload["status"], "firing");
        assert_eq!(payload["receiver"], "oncall");
        assert_eq!(payload["externalURL"], "https://hg.example/");
        assert_eq!(
            payload["commonLabels"],
            json!({"layer": "db", "severity": "critical"})
        );
        let first = &payload["alerts"][0];
        assert_eq!(first["status"], "firing");
        assert_eq!(first["labels"]["alertname"], "neon-down");
        assert_eq!(
            first["annotations"]["summary"],
            "API requests fail with 500 <errors>"
        );
        assert_eq!(
            first["annotations"]["runbook_url"],
            "https://runbooks.example/neon-down"
        );
        assert_eq!(
            first["annotations"]["description"],
            "db-pooler: connect: connection refused"
        );
        assert_eq!(first["startsAt"], "2026-07-01T10:00:00Z");
        assert_eq!(first["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(first["generatorURL"], "https://hg.example/status");
        assert_eq!(payload["alerts"][1]["status"], "resolved");
        assert_eq!(payload["alerts"][1]["endsAt"], "2026-07-01T10:42:00Z");
    }
}
