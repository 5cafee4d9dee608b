//! Alerts: from the classifier's diagnoses to notifications on-call can trust.
//!
//! - [`engine`]: the pure state machine (pending, firing, resolved; grouping, repeat,
//!   inhibition, silences, reliable resolves).
//! - [`silence`]: maintenance windows and API silences, and what they cover.
//! - [`route`]: which notifier wants which alert.
//! - [`notification`]: the messages the engine emits, as stored in the outbox.
//! - [`task`]: the alert task that runs the engine, persists its decisions to the store before
//!   anything is delivered, and answers `/status` and the silences API.
//!
//! The engine knows nothing of probes (it reads diagnoses) nor of how notifiers deliver (it
//! emits [`notification::Notification`]s into the outbox).

pub mod engine;
pub mod notification;
pub mod route;
pub mod silence;
pub mod task;

use std::collections::BTreeMap;

use jiff::Timestamp;

pub use engine::{AlertState, AlertView, Engine, Evaluation, Settings, StoredAlert, Target};
pub use task::{AlertHandle, AlertTask};

use crate::exposition::{MetricType, MetricsWriter};
use silence::{Phase, Silence};

/// What readers (`/status`, `/metrics`, the page) see of alerting, published by the alert task.
#[derive(Clone, Debug, Default)]
pub struct AlertsView {
    /// Every alert the engine tracks, by id.
    pub alerts: Vec<AlertView>,
    /// Every silence with where it is in time.
    pub silences: Vec<(Silence, Phase)>,
    /// Delivery health per notifier, in config order.
    pub notifiers: Vec<NotifierStats>,
}

/// How deliveries through one notifier went since start.
#[derive(Clone, Debug, PartialEq)]
pub struct NotifierStats {
    /// Its name.
    pub name: String,
    /// Its kind (`email`, `webhook`, ...).
    pub kind: &'static str,
    /// Notifications waiting in the outbox.
    pub outbox_depth: u64,
    /// Deliveries (or heartbeats) by result.
    pub results: BTreeMap<DeliveryResult, u64>,
    /// The latest failure, if the latest attempt failed.
    pub last_error: Option<String>,
    /// Whether the latest attempt failed, and if so whether it will pass by itself
    /// (temporary) or the receiver refuses until someone fixes the notifier (permanent).
    pub failing: Option<Permanence>,
    /// When the next attempt of a failing delivery is due.
    pub next_attempt_at: Option<Timestamp>,
    /// When a delivery last succeeded.
    pub last_success_at: Option<Timestamp>,
}

impl NotifierStats {
    /// A notifier with nothing sent yet.
    pub fn new(name: &str, kind: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            outbox_depth: 0,
            results: DeliveryResult::ALL
                .iter()
                .map(|result| (*result, 0))
                .collect(),
            last_error: None,
            failing: None,
            next_attempt_at: None,
            last_success_at: None,
        }
    }
}

crate::closed_set! {
    /// Whether retrying a failed delivery can help by itself.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Permanence {
        /// The receiver or the way to it is down, slow or overloaded (connection errors, timeouts,
        /// SMTP 4xx, HTTP 5xx, 408, 425 and 429): it may work on the next attempt.
        Temporary = "temporary",
        /// The receiver refuses what it is sent (SMTP 5xx such as 535 for a wrong password, HTTP
        /// 4xx such as 401, 403 and 404), or the message cannot be built: it keeps failing until
        /// someone fixes the notifier's credentials, URL or addresses.
        Permanent = "permanent",
    }
}

impl Permanence {
    /// What an HTTP status other than 2xx means: 4xx is the receiver refusing this request
    /// (permanent), except 408 Request Timeout, 425 Too Early and 429 Too Many Requests, which
    /// ask to try again later; 5xx and anything else are temporary.
    pub fn of_http_status(status: u16) -> Self {
        match status {
            408 | 425 | 429 => Permanence::Temporary,
            400..=499 => Permanence::Permanent,
            _ => Permanence::Temporary,
        }
    }
}

crate::closed_set! {
    /// The outcome of one delivery attempt: a label value of `honeyguide_notifications_total`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum DeliveryResult {
        /// The receiver accepted it.
        Delivered = "delivered",
        /// This attempt failed; it will be retried.
        Failed = "failed",
        /// Given up: it waited longer than `[alerting] give_up_after`.
        Expired = "expired",
    }
}

/// Writes the alerting series: alert states, deliveries, outbox depth. Every id of `known` (the
/// catalog's failure modes) gets its `honeyguide_alerts` series even without an alert, at 0, so
/// an absent series never means "fine".
pub fn write_metrics<'a>(
    view: &AlertsView,
    known: impl IntoIterator<Item = &'a str>,
    out: &mut MetricsWriter,
) {
    out.family(
        "honeyguide_alerts",
        MetricType::Gauge,
        "Alerts by failure mode id and state (1 for the alert's current state, 0 otherwise).",
    );
    let mut states: BTreeMap<&str, Option<AlertState>> =
        known.into_iter().map(|id| (id, None)).collect();
    for alert in &view.alerts {
        states.insert(alert.content.id.as_str(), Some(alert.state));
    }
    for (id, current) in states {
        for state in AlertState::ALL {
            out.sample(
                "honeyguide_alerts",
                &[("id", id), ("state", state.as_str())],
                if current == Some(state) { 1.0 } else { 0.0 },
            );
        }
    }
    out.family(
        "honeyguide_alerts_suppressed",
        MetricType::Gauge,
        "Alerts not notified because a silence or an inhibition holds them, by reason.",
    );
    let silenced = view
        .alerts
        .iter()
        .filter(|alert| alert.state != AlertState::Resolved && !alert.silenced_by.is_empty())
        .count();
    let inhibited = view
        .alerts
        .iter()
        .filter(|alert| alert.state != AlertState::Resolved && alert.inhibited_by.is_some())
        .count();
    out.sample(
        "honeyguide_alerts_suppressed",
        &[("reason", "silenced")],
        silenced as f64,
    );
    out.sample(
        "honeyguide_alerts_suppressed",
        &[("reason", "inhibited")],
        inhibited as f64,
    );
    out.family(
        "honeyguide_notifications_total",
        MetricType::Counter,
        "Notification delivery attempts (and heartbeats) since start, by notifier and result.",
    );
    out.family(
        "honeyguide_outbox_depth",
        MetricType::Gauge,
        "Notifications waiting in the outbox, by notifier.",
    );
    for notifier in &view.notifiers {
        for (result, count) in &notifier.results {
            out.sample(
                "honeyguide_notifications_total",
                &[("notifier", &notifier.name), ("result", result.as_str())],
                *count as f64,
            );
        }
        out.sample(
            "honeyguide_outbox_depth",
            &[("notifier", &notifier.name)],
            notifier.outbox_depth as f64,
        );
    }
    out.family(
        "honeyguide_notifier_failing",
        MetricType::Gauge,
        "1 while a notifier's latest attempt failed, by how: temporary (retried with backoff) or \
         permanent (the receiver refuses: this alert path is broken until the notifier is fixed).",
    );
    for notifier in &view.notifiers {
        for permanence in [Permanence::Temporary, Permanence::Permanent] {
            out.sample(
                "honeyguide_notifier_failing",
                &[
                    ("notifier", &notifier.name),
                    ("failure", permanence.as_str()),
                ],
                if notifier.failing == Some(permanence) {
                    1.0
                } else {
                    0.0
                },
            );
        }
    }
    out.gauge(
        "honeyguide_silences_active",
        "Silences (maintenance windows and API silences) in force now.",
        &[],
        view.silences
            .iter()
            .filter(|(_, phase)| matches!(phase, Phase::Active { .. }))
            .count() as f64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every catalog id has its three state series, at 0 without an alert; an alert's current
    /// state is 1; notifier counters are there before the first delivery.
    #[test]
    fn alert_series_are_pre_initialised_per_failure_mode() {
        let view = AlertsView {
            alerts: Vec::new(),
            silences: Vec::new(),
            notifiers: vec![NotifierStats::new("hook", "webhook")],
        };
        let mut out = MetricsWriter::new();
        write_metrics(&view, ["neon-down"], &mut out);
        let text = out.finish();
        for line in [
            "honeyguide_alerts{id=\"neon-down\",state=\"pending\"} 0\n",
            "honeyguide_alerts{id=\"neon-down\",state=\"firing\"} 0\n",
            "honeyguide_alerts{id=\"neon-down\",state=\"resolved\"} 0\n",
            "honeyguide_notifications_total{notifier=\"hook\",result=\"delivered\"} 0\n",
            "honeyguide_notifications_total{notifier=\"hook\",result=\"failed\"} 0\n",
            "honeyguide_notifications_total{notifier=\"hook\",result=\"expired\"} 0\n",
            "honeyguide_outbox_depth{notifier=\"hook\"} 0\n",
            "honeyguide_notifier_failing{notifier=\"hook\",failure=\"temporary\"} 0\n",
            "honeyguide_notifier_failing{notifier=\"hook\",failure=\"permanent\"} 0\n",
            "honeyguide_silences_active 0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
