//! The failure catalog: `alerts/*.toml` rules, and the diagnoses they produce.
//!
//! Each file of `alerts/` describes one failure mode of the monitored stack: what users see, a
//! CEL expression over the latest probe results that recognises it, how long it must hold, what
//! to do about it, and which other modes it explains (and so inhibits). [`load`] validates the
//! whole directory against the configured probes, reporting every problem at once with its file,
//! line and column, into an immutable [`Catalog`]. The [`Classifier`], owned by the state task,
//! evaluates the rules as results arrive and keeps the current [`Diagnosis`] list, the contract
//! with the alert engine.
//!
//! - `load`: reading and validating rule files;
//! - `expr`: compiling, checking and evaluating the `when` expressions (the CEL context);
//! - `classifier`: from probe views to diagnoses, incrementally;
//! - `position`: mapping positions inside a TOML string back to the file;
//! - `synthetic`: the typical results rules are type-checked against at load.
//!
//! Rules know nothing of notifiers; probes know nothing of rules. `docs/writing-rules.md` is the
//! rule author's guide.

mod classifier;
mod expr;
mod load;
mod position;
mod synthetic;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;

pub use classifier::{Classifier, RuleStats, RuleStatus, TIME_DEPENDENT_PERIOD};

use crate::probe::Kind;
use crate::spec::{ConfigErrors, Source};

use expr::{Evaluator, Expression};

// === loading ===

/// The configured probes a catalog is checked against: name -> kind.
pub type ProbeKinds = BTreeMap<String, Kind>;

/// Reads and validates every `*.toml` file of `dir` against the configured `probes`. Fails with
/// every problem found, each with its file, line, column and key. Other entries of `dir` are
/// listed in [`Catalog::skipped`], except hidden ones (`.git`, a ConfigMap's `..data`).
pub fn load(dir: &Path, probes: &ProbeKinds) -> Result<Catalog, ConfigErrors> {
    let listing = load::read_dir(dir)?;
    let mut errors = listing.errors;
    match parse(&listing.sources, probes) {
        Ok(mut catalog) if errors.is_empty() => {
            catalog.skipped = listing.skipped;
            Ok(catalog)
        }
        Ok(_) => Err(ConfigErrors(errors)),
        Err(ConfigErrors(rule_errors)) => {
            errors.extend(rule_errors);
            errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            Err(ConfigErrors(errors))
        }
    }
}

/// Validates already-read rule files (the file names matter: an id must equal its file's stem).
pub fn parse(sources: &[Source], probes: &ProbeKinds) -> Result<Catalog, ConfigErrors> {
    load::parse(sources, probes)
}

/// The validated failure modes, in file-name order. Immutable; share it in an `Arc`.
#[derive(Debug)]
pub struct Catalog {
    modes: Vec<FailureMode>,
    evaluator: Evaluator,
    skipped: Vec<Skipped>,
}

/// An entry of the rules directory that is not a rule file, so was not loaded: said by
/// `validate` and at start, so that a rule saved under the wrong name is not silently missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The entry.
    pub path: PathBuf,
    /// Why it is not a rule.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: skipped: {}", self.path.display(), self.reason)
    }
}

impl Catalog {
    /// A catalog without failure modes (nothing is ever diagnosed).
    pub fn empty() -> Self {
        Self {
            modes: Vec::new(),
            evaluator: Evaluator::new(),
            skipped: Vec::new(),
        }
    }

    /// The entries of the rules directory that were not loaded, in name order.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Every failure mode, in file-name order (for `honeyguide catalog`).
    pub fn modes(&self) -> &[FailureMode] {
        &self.modes
    }

    /// The failure mode with this id.
    pub fn get(&self, id: &str) -> Option<&FailureMode> {
        self.modes.iter().find(|mode| mode.id == id)
    }
}

/// One failure mode: a validated rule file.
#[derive(Debug)]
pub struct FailureMode {
    /// Kebab-case id, equal to the file stem; also the alert name.
    pub id: String,
    /// One-line title.
    pub title: String,
    /// How bad.
    pub severity: Severity,
    /// The CEL expression, as written.
    pub when: String,
    /// How long `when` must hold before the diagnosis is active.
    pub for_duration: Duration,
    /// What users see.
    pub symptom: String,
    /// What to do (markdown).
    pub recovery: String,
    /// Link or anchor to the runbook.
    pub runbook: String,
    /// Ids of the modes this one suppresses while active.
    pub inhibits: Vec<String>,
    /// Extra labels for routing.
    pub labels: BTreeMap<String, String>,
    /// The file it was loaded from.
    pub file: PathBuf,
    expression: Expression,
}

impl FailureMode {
    /// The probes `when` reads, in order of first mention: the evidence of a diagnosis.
    pub fn probes(&self) -> &[String] {
        &self.expression.probes
    }

    /// Whether `when` can change without a new probe result (it reads `now` or calls
    /// `seconds_since_ok()`), so it is re-evaluated on every classifier pass.
    pub fn is_time_dependent(&self) -> bool {
        self.expression.time_dependent
    }
}

// === diagnoses ===

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
