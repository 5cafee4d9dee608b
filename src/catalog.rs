//! The failure catalog: `alerts/*.toml` rules, and the diagnoses they produce.
//!
//! Not implemented yet (issue: the failure catalog as data). This module already fixes the
//! [`Diagnosis`] type, the contract between the classifier and the alert engine.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use tokio::time::Instant;

/// How bad a failure mode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Users are affected now; page someone.
    Critical,
    /// Degraded or about to be; look soon.
    Warning,
    /// Worth knowing; no action needed now.
    Info,
}

impl Severity {
    /// The name used in rule files, labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a diagnosis is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DiagnosisState {
    /// The rule holds, but not yet for its `for` duration.
    Pending,
    /// The rule has held for its `for` duration.
    Active,
}

impl DiagnosisState {
    /// The name used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DiagnosisState::Pending => "pending",
            DiagnosisState::Active => "active",
        }
    }
}

/// A probe a diagnosis rests on, as it was when the diagnosis was made.
#[derive(Clone, Debug, PartialEq)]
pub struct Evidence {
    /// Probe name.
    pub probe: String,
    /// Whether its latest run succeeded.
    pub ok: bool,
    /// Its latest message.
    pub message: String,
}

/// A failure mode that is happening (or about to be confirmed).
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnosis {
    /// The rule id (kebab-case), also the alert name.
    pub id: String,
    /// One-line title of the failure mode.
    pub title: String,
    /// How bad.
    pub severity: Severity,
    /// Pending or active.
    pub state: DiagnosisState,
    /// When the rule started holding (wall clock).
    pub since: Timestamp,
    /// When the rule started holding (monotonic; for `for` and repeat timing).
    pub since_instant: Instant,
    /// The probes the rule reads, with their latest state.
    pub evidence: Vec<Evidence>,
    /// What users see (the catalog's symptom).
    pub summary: String,
    /// What to do (markdown, from the catalog).
    pub recovery: String,
    /// Link or anchor to the runbook.
    pub runbook: String,
    /// Extra labels from the rule, for routing and Alertmanager.
    pub labels: BTreeMap<String, String>,
    /// The id of the active diagnosis that suppresses this one, if any: shown, not notified.
    pub inhibited_by: Option<String>,
}
