//! The `/status` JSON document: the public, machine-readable contract.
//!
//! These view types are the only place the daemon's state is serialized for the outside world,
//! so a change here is a change to an API people script against (`docs/status.schema.json`
//! describes it and a test checks the two agree). They are built from a [`Snapshot`] and never
//! hold secrets: probes expose targets without credentials and messages written for humans.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::{Diagnosis, FailureMode, RuleStats};
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
    /// The failure modes recognised now: root causes first, then active before pending, by
    /// severity. Inhibited ones are listed (with `inhibited_by`) but not notified.
    pub diagnoses: Vec<DiagnosisStatus>,
    /// Every probe, in config order.
    pub probes: Vec<ProbeStatus>,
    /// Every failure mode's rule and how its evaluations go, in catalog order.
    pub rules: Vec<RuleEvaluationStatus>,
}

/// A failure mode that is happening (or about to be confirmed).
#[derive(Debug, Serialize)]
pub struct DiagnosisStatus {
    /// The failure mode's id, also the alert name.
    pub id: String,
    /// One-line title.
    pub title: String,
    /// `critical`, `warning` or `info`.
    pub severity: &'static str,
    /// `pending` (holding, not yet for its `for` duration) or `active`.
    pub state: &'static str,
    /// When the rule started holding (RFC 3339).
    pub since: String,
    /// The probes the rule reads, with their latest state.
    pub probes: Vec<EvidenceStatus>,
    /// What users see.
    pub summary: String,
    /// What to do (markdown).
    pub recovery: String,
    /// Link or anchor to the runbook.
    pub runbook: String,
    /// The active failure mode that explains this one, if any: shown, not notified.
    pub inhibited_by: Option<String>,
    /// The rule's labels.
    pub labels: BTreeMap<String, String>,
}

/// A probe a diagnosis rests on.
#[derive(Debug, Serialize)]
pub struct EvidenceStatus {
    /// Probe name.
    pub probe: String,
    /// Whether its latest run succeeded.
    pub ok: bool,
    /// Its latest message.
    pub message: String,
}

/// One failure mode's rule and its evaluation counters.
#[derive(Debug, Serialize)]
pub struct RuleEvaluationStatus {
    /// The failure mode's id.
    pub id: String,
    /// `critical`, `warning` or `info`.
    pub severity: &'static str,
    /// The latest evaluation: `unknown` (a probe has no result yet), `clear`, `holding`, `error`.
    pub status: &'static str,
    /// Evaluations so far.
    pub evaluations: u64,
    /// Evaluations that failed.
    pub errors: u64,
    /// The latest failure's message.
    pub last_error: Option<String>,
    /// When it happened (RFC 3339).
    pub last_error_at: Option<String>,
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
            diagnoses: snapshot
                .diagnoses
                .iter()
                .map(DiagnosisStatus::from_diagnosis)
                .collect(),
            probes: snapshot
                .probes
                .iter()
                .map(|view| ProbeStatus::from_view(view, now))
                .collect(),
            rules: snapshot
                .catalog
                .modes()
                .iter()
                .zip(&snapshot.rules)
                .map(|(mode, stats)| RuleEvaluationStatus::from_stats(mode, stats))
                .collect(),
        }
    }
}

impl DiagnosisStatus {
    fn from_diagnosis(diagnosis: &Diagnosis) -> Self {
        Self {
            id: diagnosis.id.clone(),
            title: diagnosis.title.clone(),
            severity: diagnosis.severity.as_str(),
            state: diagnosis.state.as_str(),
            since: diagnosis.since.to_string(),
            probes: diagnosis
                .evidence
                .iter()
                .map(|evidence| EvidenceStatus {
                    probe: evidence.probe.clone(),
                    ok: evidence.ok,
                    message: evidence.message.clone(),
                })
                .collect(),
            summary: diagnosis.summary.clone(),
            recovery: diagnosis.recovery.clone(),
            runbook: diagnosis.runbook.clone(),
            inhibited_by: diagnosis.inhibited_by.clone(),
            labels: diagnosis.labels.clone(),
        }
    }
}

impl RuleEvaluationStatus {
    fn from_stats(mode: &FailureMode, stats: &RuleStats) -> Self {
        Self {
            id: mode.id.clone(),
            severity: mode.severity.as_str(),
            status: stats.status.as_str(),
            evaluations: stats.evaluations,
            errors: stats.errors,
            last_error: stats.last_error.clone(),
            last_error_at: stats.last_error_at.map(|at| at.to_string()),
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
