//! What a notifier is asked to deliver: a [`Notification`] (one message, one notifier) carrying
//! one or more alerts, each with everything on-call needs (symptom, failing probes, recovery,
//! runbook).
//!
//! Notifications are stored in the outbox as JSON before delivery and rendered by each notifier
//! at delivery time (email text and HTML, webhook JSON, Alertmanager alerts). The JSON here is an
//! internal storage format, not an API: the public shapes are the rendered ones.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::catalog::{Diagnosis, Severity};

/// One message for one notifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique id; sent to receivers as the idempotency key, so a duplicate can be discarded.
    pub id: String,
    /// The notifier it is for.
    pub notifier: String,
    /// Why it exists.
    pub purpose: Purpose,
    /// When the engine decided to send it.
    pub created_at: Timestamp,
    /// The alerts it is about, firing ones first.
    pub alerts: Vec<AlertMessage>,
}

/// Why a notification exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Alerts changed state (or are being re-sent): a message for people.
    Alerts,
    /// The periodic re-send of firing alerts to Alertmanager, so it never times them out.
    Refresh,
    /// `honeyguide test-alert`.
    Test,
}

/// Firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// The failure mode is happening.
    Firing,
    /// It stopped.
    Resolved,
}

impl MessageStatus {
    /// `firing` or `resolved`, as in Alertmanager's payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Firing => "firing",
            MessageStatus::Resolved => "resolved",
        }
    }
}

/// Why an alert is in a message: new, reminded, or back after a silence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Started firing.
    New,
    /// Still firing after the repeat interval.
    Repeat,
    /// Still firing when the silence or inhibition that held it ended.
    Unsuppressed,
    /// Stopped firing.
    Resolved,
    /// Periodic re-send to Alertmanager.
    Refresh,
    /// A test message.
    Test,
}

/// One alert inside a notification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertMessage {
    /// Firing or resolved.
    pub status: MessageStatus,
    /// Why it is being sent.
    pub reason: Reason,
    /// The facts.
    pub alert: Content,
    /// When it resolved (resolved alerts only).
    pub ends_at: Option<Timestamp>,
}

/// The facts about an alert, taken from its latest diagnosis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Content {
    /// The failure mode id (the alert name).
    pub id: String,
    /// Its one-line title.
    pub title: String,
    /// How bad.
    #[serde(with = "severity_name")]
    pub severity: Severity,
    /// Labels from the rule.
    pub labels: BTreeMap<String, String>,
    /// The symptom: what users see.
    pub summary: String,
    /// What to do (markdown).
    pub recovery: String,
    /// Runbook link or anchor.
    pub runbook: String,
    /// The probes the diagnosis rests on.
    pub evidence: Vec<EvidenceLine>,
    /// When the failure started (the rule started holding).
    pub since: Timestamp,
    /// Why it ended, when that is not "the failure stopped": e.g. its rule was removed by a
    /// configuration reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One probe behind a diagnosis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvidenceLine {
    /// Probe name.
    pub probe: String,
    /// Whether it was passing.
    pub ok: bool,
    /// Its message.
    pub message: String,
}

impl Content {
    /// The facts of a diagnosis.
    pub fn from_diagnosis(diagnosis: &Diagnosis) -> Self {
        Self {
            id: diagnosis.id.clone(),
            title: diagnosis.title.clone(),
            severity: diagnosis.severity,
            labels: diagnosis.labels.clone(),
            summary: diagnosis.summary.clone(),
            recovery: diagnosis.recovery.clone(),
            runbook: diagnosis.runbook.clone(),
            evidence: diagnosis
                .evidence
                .iter()
                .map(|evidence| EvidenceLine {
                    probe: evidence.probe.clone(),
                    ok: evidence.ok,
                    message: evidence.message.clone(),
                })
                .collect(),
            since: diagnosis.since,
            note: None,
        }
    }

    /// The labels an alert is matched and identified by: the rule's labels plus `alertname` (the
    /// id) and `severity`. Identical on every honeyguide instance, which is what lets
    /// Alertmanager deduplicate several of them.
    pub fn identity_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert("alertname".to_owned(), self.id.clone());
        labels.insert("severity".to_owned(), self.severity.as_str().to_owned());
        labels
    }

    /// The evidence lines of probes that were failing.
    pub fn failing(&self) -> impl Iterator<Item = &EvidenceLine> {
        self.evidence.iter().filter(|line| !line.ok)
    }
}

/// The message `honeyguide test-alert` sends: one informational alert that says nothing is
/// wrong, through the normal rendering of the notifier.
pub fn test_notification(notifier: &str, at: Timestamp) -> Notification {
    Notification {
        id: new_id(&mut fastrand::Rng::new()),
        notifier: notifier.to_owned(),
        purpose: Purpose::Test,
        created_at: at,
        alerts: vec![AlertMessage {
            status: MessageStatus::Firing,
            reason: Reason::Test,
            alert: Content {
                id: "honeyguide-test".to_owned(),
                title: "Test notification from honeyguide".to_owned(),
                severity: Severity::Info,
                labels: BTreeMap::new(),
                summary: "Nothing is wrong: this checks that honeyguide's notifications reach you."
                    .to_owned(),
                recovery: "Nothing to do.".to_owned(),
                runbook: String::new(),
                evidence: Vec::new(),
                since: at,
                note: None,
            },
            ends_at: None,
        }],
    }
}

/// A fresh notification id: 128 random bits in hex. Not a secret, only unique.
pub fn new_id(rng: &mut fastrand::Rng) -> String {
    format!("{:016x}{:016x}", rng.u64(..), rng.u64(..))
}

mod severity_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::catalog::Severity;

    pub(super) fn serialize<S: Serializer>(
        severity: &Severity,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(severity.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Severity, D::Error> {
        let name = String::deserialize(deserializer)?;
        crate::alert::route::parse_severity(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown severity `{name}`")))
    }
}
