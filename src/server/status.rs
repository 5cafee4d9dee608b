//! The `/status` JSON document: the public, machine-readable contract.
//!
//! These view types are the only place the daemon's state is serialized for the outside world,
//! so a change here is a change to an API people script against (`docs/status.schema.json`
//! describes it and a test checks the two agree). They are built from a [`Snapshot`] and never
//! hold secrets: probes expose targets without credentials and messages written for humans.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::probe::{Observations, ProbeResult};
use crate::state::{ProbeView, STATUS_HISTORY_LEN, Snapshot};

/// The whole `/status` document.
#[derive(Debug, Serialize)]
pub struct Status {
    /// When this document was made (RFC 3339).
    pub generated_at: String,
    /// When the daemon started (RFC 3339).
    pub started_at: String,
    /// honeyguide's version.
    pub version: &'static str,
    /// Every probe, in config order.
    pub probes: Vec<ProbeStatus>,
}

/// One probe in `/status`.
#[derive(Debug, Serialize)]
pub struct ProbeStatus {
    /// Unique name.
    pub name: String,
    /// Kind (`http`, `postgres`, ...).
    pub kind: &'static str,
    /// What is probed, without credentials.
    pub target: String,
    /// Configured labels.
    pub labels: BTreeMap<String, String>,
    /// Configured interval, seconds.
    pub interval_seconds: f64,
    /// Configured timeout, seconds.
    pub timeout_seconds: f64,
    /// Whether the latest run succeeded; `null` before the first run.
    pub ok: Option<bool>,
    /// The latest error class (`timeout`, `connect`, ...), `null` when ok.
    pub error: Option<&'static str>,
    /// The latest message.
    pub message: Option<String>,
    /// How long the latest run took.
    pub duration_seconds: Option<f64>,
    /// When the latest run finished (RFC 3339).
    pub checked_at: Option<String>,
    /// Failed runs in a row.
    pub consecutive_failures: u64,
    /// When the probe last succeeded (RFC 3339).
    pub last_ok_at: Option<String>,
    /// Share of successful runs over the last 24 hours (since start, if shorter).
    pub uptime_24h: Option<f64>,
    /// Time per phase of the latest run, seconds, in the order they ran.
    pub phases: Vec<PhaseStatus>,
    /// What the latest run observed.
    pub observations: Observations,
    /// The last runs, oldest first.
    pub history: Vec<HistoryStatus>,
}

/// One phase of a run.
#[derive(Debug, Serialize)]
pub struct PhaseStatus {
    /// Phase name (`resolve`, `connect`, `tls`, ...).
    pub phase: &'static str,
    /// Its duration.
    pub seconds: f64,
}

/// One past run.
#[derive(Debug, Serialize)]
pub struct HistoryStatus {
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took.
    pub duration_seconds: f64,
    /// When it finished (RFC 3339).
    pub checked_at: String,
}

impl Status {
    /// Builds the document from a snapshot.
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        let now = jiff::Timestamp::now();
        Self {
            generated_at: now.to_string(),
            started_at: snapshot.started_at.to_string(),
            version: env!("CARGO_PKG_VERSION"),
            probes: snapshot
                .probes
                .iter()
                .map(|view| ProbeStatus::from_view(view, now))
                .collect(),
        }
    }
}

impl ProbeStatus {
    fn from_view(view: &ProbeView, now: jiff::Timestamp) -> Self {
        let latest = view.latest.as_ref();
        let result: Option<&ProbeResult> = latest.map(|checked| &checked.result);
        Self {
            name: view.name.clone(),
            kind: view.kind.as_str(),
            target: view.target.clone(),
            labels: view.labels.clone(),
            interval_seconds: view.interval.as_secs_f64(),
            timeout_seconds: view.timeout.as_secs_f64(),
            ok: result.map(|result| result.ok),
            error: result
                .and_then(|result| result.error)
                .map(|class| class.as_str()),
            message: result.map(|result| result.message.clone()),
            duration_seconds: result.map(|result| result.duration.as_secs_f64()),
            checked_at: latest.map(|checked| checked.checked_at.to_string()),
            consecutive_failures: view.consecutive_failures,
            last_ok_at: view.last_ok_at.map(|at| at.to_string()),
            uptime_24h: view.uptime_24h(now),
            phases: result
                .map(|result| {
                    result
                        .phases
                        .iter()
                        .map(|(phase, duration)| PhaseStatus {
                            phase,
                            seconds: duration.as_secs_f64(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            observations: result
                .map(|result| result.observations.clone())
                .unwrap_or_default(),
            history: view
                .history
                .iter()
                .rev()
                .take(STATUS_HISTORY_LEN)
                .rev()
                .map(|point| HistoryStatus {
                    ok: point.ok,
                    duration_seconds: point.duration.as_secs_f64(),
                    checked_at: point.checked_at.to_string(),
                })
                .collect(),
        }
    }
}
