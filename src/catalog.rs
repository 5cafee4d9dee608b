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
//! - `synthetic`: the typical results rules are type-checked against at load, and the healthy
//!   results examples are filled in with;
//! - `example`: the `[[example]]` tables of a rule file, parsed at load and run by
//!   `honeyguide test`;
//! - `timeline`: the engine examples and replay share: results on a simulated clock through the
//!   real classifier;
//! - `replay`: recorded results through given rules, compared with what the running rules did.
//!
//! Rules know nothing of notifiers; probes know nothing of rules. `docs/writing-rules.md` is the
//! rule author's guide.

mod classifier;
pub mod example;
mod expr;
mod load;
mod position;
pub mod replay;
mod synthetic;
pub mod timeline;

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
/// listed in [`Catalog::warnings`], except hidden ones (`.git`, a ConfigMap's `..data`).
pub fn load(dir: &Path, probes: &ProbeKinds) -> Result<Catalog, ConfigErrors> {
    let listing = load::read_dir(dir)?;
    let mut errors = listing.errors;
    match parse(&listing.sources, probes) {
        Ok(mut catalog) if errors.is_empty() => {
            let mut warnings = listing.skipped;
            warnings.append(&mut catalog.warnings);
            catalog.warnings = warnings;
            catalog.dir = Some(dir.to_owned());
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
    warnings: Vec<Warning>,
    /// The directory it was loaded from, if any (a reload reads it again).
    dir: Option<PathBuf>,
}

/// Something about the rules that does not stop them from loading, but that whoever keeps them
/// should know: said by `validate` and at start, kept on the [`Catalog`], shown in `/status`
/// and on the page. A rule saved under the wrong name must not be silently missing, and a
/// catalog adopted in part must say which of its `inhibits` have nothing to inhibit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// What it is about.
    pub kind: WarningKind,
    /// The file (or directory entry).
    pub file: PathBuf,
    /// 1-based line and column in the file; `None` for a whole entry.
    pub position: Option<(usize, usize)>,
    /// The key it is about (`inhibits[1]`); empty for a whole entry.
    pub key: String,
    /// What is the matter, lowercase, without a trailing period.
    pub message: String,
}

/// The kinds of [`Warning`], a closed set (`/status` names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WarningKind {
    /// An entry of the rules directory that is not a rule file, so was not loaded.
    Skipped,
    /// An `inhibits` entry names a failure mode that is not loaded: it inhibits nothing.
    InhibitsUnloaded,
    /// An example names a failure mode that is not loaded: it is not run.
    ExampleNamesUnloaded,
}

impl WarningKind {
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::Skipped => "skipped",
            WarningKind::InhibitsUnloaded => "inhibits_unloaded",
            WarningKind::ExampleNamesUnloaded => "example_names_unloaded",
        }
    }
}

impl Warning {
    /// A directory entry that is not a rule file.
    pub(crate) fn skipped(path: PathBuf, reason: &str) -> Self {
        Self {
            kind: WarningKind::Skipped,
            file: path,
            position: None,
            key: String::new(),
            message: format!("skipped: {reason}"),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl Catalog {
    /// A catalog without failure modes (nothing is ever diagnosed).
    pub fn empty() -> Self {
        Self {
            modes: Vec::new(),
            evaluator: Evaluator::new(),
            warnings: Vec::new(),
            dir: None,
        }
    }

    /// The directory the rules were read from (`None` for rules parsed from text).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// What the load found worth saying without failing: directory entries that were not
    /// loaded (first, in name order), then per file `inhibits` entries and examples naming
    /// failure modes that are not loaded.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
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
    /// Link or anchor to the runbook; empty when the rule has none (it is optional).
    pub runbook: String,
    /// Ids of the modes this one suppresses while active (some may not be loaded: see
    /// [`Catalog::warnings`]).
    pub inhibits: Vec<String>,
    /// Probes (read by `when`) whose failure means the rule has no data: while one of them
    /// failed its latest run, a diagnosis is not resolved (nor a pending one confirmed) unless
    /// the expression itself still holds (a `prometheus` probe that cannot reach the metrics
    /// stack knows nothing of the disks).
    pub hold_while_failing: Vec<String>,
    /// Extra labels for routing.
    pub labels: BTreeMap<String, String>,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// Its `[[example]]` tables, in file order: what `honeyguide test` runs.
    pub examples: Vec<example::Example>,
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

// === transitions ===

/// What happened to a failure mode at a moment: what replay prints and compares, and what the
/// daemon records of its own diagnoses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Change {
    /// The rule started holding, not yet for its `for`.
    Pending,
    /// The rule has held for its `for` (at once with a `for` of zero).
    Active,
    /// It is no longer diagnosed (the rule stopped holding, or could no longer be evaluated).
    Resolved,
}

impl Change {
    /// Every change, in the order a diagnosis goes through them.
    pub const ALL: [Change; 3] = [Change::Pending, Change::Active, Change::Resolved];

    /// The name used in the store and in replay's report.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Pending => "pending",
            Change::Active => "active",
            Change::Resolved => "resolved",
        }
    }

    /// The change named `name`, as [`Change::as_str`] writes it.
    pub fn from_name(name: &str) -> Option<Self> {
        Change::ALL
            .into_iter()
            .find(|change| change.as_str() == name)
    }
}

/// One failure mode's change at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The failure mode's id.
    pub mode: String,
    /// What happened to it.
    pub change: Change,
    /// When (wall clock).
    pub at: Timestamp,
}

/// What changed between two lists of diagnoses, evaluated at `at`: new ones (pending, or
/// active at once), pending ones confirmed, and ones gone. Inhibition and evidence are not
/// changes: an inhibited diagnosis still holds.
pub fn transitions(before: &[Diagnosis], after: &[Diagnosis], at: Timestamp) -> Vec<Transition> {
    let state_before = |id: &str| {
        before
            .iter()
            .find(|diagnosis| diagnosis.id == id)
            .map(|diagnosis| diagnosis.state)
    };
    let mut changes = Vec::new();
    for diagnosis in after {
        let change = match (state_before(&diagnosis.id), diagnosis.state) {
            (None, DiagnosisState::Pending) => Change::Pending,
            (None | Some(DiagnosisState::Pending), DiagnosisState::Active) => Change::Active,
            _ => continue,
        };
        changes.push(Transition {
            mode: diagnosis.id.clone(),
            change,
            at,
        });
    }
    for diagnosis in before {
        if !after.iter().any(|other| other.id == diagnosis.id) {
            changes.push(Transition {
                mode: diagnosis.id.clone(),
                change: Change::Resolved,
                at,
            });
        }
    }
    changes
}
