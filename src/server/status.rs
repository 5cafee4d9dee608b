//! The `/status` JSON document: the public, machine-readable contract.
//!
//! These view types are the only place the daemon's state is serialized for the outside world,
//! so a change here is a change to an API people script against (`docs/status.schema.json`
//! describes it and a test checks the two agree). They are built from a [`Snapshot`] and never
//! hold secrets: probes expose targets without credentials and messages written for humans.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::alert::Permanence;
use crate::alert::silence::{Origin, Phase, Schedule, Silence};
use crate::alert::{AlertView, AlertsView, DeliveryResult, NotifierStats};
use crate::catalog::{Diagnosis, FailureMode, RuleStats, Warning};
use crate::probe::{Observations, ProbeResult};
use crate::state::Snapshot;
use crate::view::{ProbeView, STATUS_HISTORY_LEN};

/// The whole `/status` document.
#[derive(Debug, Serialize)]
pub struct Status {
    /// When this document was made (RFC 3339).
    pub generated_at: String,
    /// When the daemon started (RFC 3339).
    pub started_at: String,
    /// Where this instance probes from (`[server] vantage`): every verdict here is from it.
    pub vantage: String,
    /// honeyguide's version.
    pub version: &'static str,
    /// The failure modes recognised now: root causes first, then active before pending, by
    /// severity. Inhibited ones are listed (with `inhibited_by`) but not notified.
    pub diagnoses: Vec<DiagnosisStatus>,
    /// Every probe, in config order.
    pub probes: Vec<ProbeStatus>,
    /// Every failure mode's rule and how its evaluations go, in catalog order.
    pub rules: Vec<RuleEvaluationStatus>,
    /// Every alert (pending, firing, recently resolved), by id.
    pub alerts: Vec<AlertStatus>,
    /// Every silence: maintenance windows, then API silences.
    pub silences: Vec<SilenceStatus>,
    /// Delivery health per notifier, in config order.
    pub notifiers: Vec<NotifierStatus>,
    /// How configuration reloads went.
    pub reload: ReloadStatusView,
    /// What the rule loader found worth saying without failing: entries of the rules directory
    /// that were not loaded, `inhibits` and examples naming failure modes that are not loaded.
    pub warnings: Vec<WarningStatus>,
}

/// One warning about the rules.
#[derive(Debug, Serialize)]
pub struct WarningStatus {
    /// `skipped`, `inhibits_unloaded` or `example_names_unloaded`.
    pub kind: &'static str,
    /// The rule file or directory entry.
    pub file: String,
    /// 1-based line, `null` for a whole entry.
    pub line: Option<usize>,
    /// 1-based column, `null` for a whole entry.
    pub column: Option<usize>,
    /// The key it is about (`inhibits[1]`), `null` for a whole entry.
    pub key: Option<String>,
    /// What is the matter.
    pub message: String,
    /// The whole warning as `validate` prints it.
    pub text: String,
}

impl WarningStatus {
    fn from_warning(warning: &Warning) -> Self {
        Self {
            kind: warning.kind.as_str(),
            file: warning.file.display().to_string(),
            line: warning.position.map(|(line, _)| line),
            column: warning.position.map(|(_, column)| column),
            key: (!warning.key.is_empty()).then(|| warning.key.clone()),
            message: warning.message.clone(),
            text: warning.to_string(),
        }
    }
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
    /// Link or anchor to the runbook, `null` when the rule has none.
    pub runbook: Option<String>,
    /// The active failure mode that explains this one, if any: shown, not notified.
    pub inhibited_by: Option<String>,
    /// The rule's labels.
    pub labels: BTreeMap<String, String>,
}

/// A probe a diagnosis rests on.
#[derive(Clone, Debug, Serialize)]
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

/// One alert in `/status`.
#[derive(Debug, Serialize)]
pub struct AlertStatus {
    /// The failure mode id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// `pending`, `firing` or `resolved`.
    pub state: &'static str,
    /// `critical`, `warning` or `info`.
    pub severity: &'static str,
    /// When the failure started (the rule started holding; RFC 3339).
    pub since: String,
    /// When it started firing.
    pub fired_at: Option<String>,
    /// When it resolved.
    pub resolved_at: Option<String>,
    /// Silences holding it now: it is not notified.
    pub silenced_by: Vec<String>,
    /// The diagnosis inhibiting it now: it is not notified.
    pub inhibited_by: Option<String>,
    /// When it was last sent as firing.
    pub last_notified: Option<String>,
    /// Notifiers told it is firing (and not yet told it resolved).
    pub notified: Vec<String>,
    /// A change of it waits to be sent with its group (within `group_wait`). Firing, not
    /// suppressed, never notified and not queued: no notifier takes it.
    pub queued: bool,
    /// What users see.
    pub summary: String,
    /// What to do (markdown).
    pub recovery: String,
    /// Runbook link, `null` when the rule has none.
    pub runbook: Option<String>,
    /// The probes the diagnosis rests on, as of its latest evaluation.
    pub evidence: Vec<EvidenceStatus>,
    /// The rule's labels.
    pub labels: BTreeMap<String, String>,
    /// Why it ended, when not because the failure stopped (its rule was removed by a reload).
    pub note: Option<String>,
}

/// How configuration reloads went.
#[derive(Debug, Serialize)]
pub struct ReloadStatusView {
    /// Whether the last attempt succeeded (true until one fails; the start counts as one).
    pub successful: bool,
    /// When the configuration in force was loaded (RFC 3339).
    pub loaded_at: String,
    /// When the last reload was attempted, if one was.
    pub attempted_at: Option<String>,
    /// Every problem of the last failed attempt, one per line; the running configuration stays.
    pub error: Option<String>,
    /// Settings the last reload changed that need a restart.
    pub not_applied: Vec<String>,
    /// Successful reloads since the start.
    pub reloads: u64,
}

impl ReloadStatusView {
    fn from_status(status: &crate::state::ReloadStatus) -> Self {
        Self {
            successful: status.successful,
            loaded_at: status.loaded_at.to_string(),
            attempted_at: status.attempted_at.map(|at| at.to_string()),
            error: status.error.clone(),
            not_applied: status.not_applied.clone(),
            reloads: status.reloads,
        }
    }
}

/// One silence in `/status` and the silences API.
#[derive(Debug, Serialize)]
pub struct SilenceStatus {
    /// The maintenance window's name or the API silence's id.
    pub id: String,
    /// `maintenance` (probes.toml) or `api`.
    pub source: &'static str,
    /// `pending`, `active` or `expired`.
    pub state: &'static str,
    /// Start of the current or next occurrence (RFC 3339).
    pub starts_at: Option<String>,
    /// End of the current or next occurrence, or when it ended.
    pub ends_at: String,
    /// Alert id patterns it covers.
    pub alerts: Vec<String>,
    /// Label patterns it covers.
    pub matchers: BTreeMap<String, String>,
    /// The weekly schedule, for recurring windows.
    pub weekly: Option<WeeklyStatus>,
    /// Why.
    pub comment: String,
    /// Who created it (API silences).
    pub created_by: Option<String>,
    /// When it was created (API silences).
    pub created_at: Option<String>,
}

/// A weekly window's schedule.
#[derive(Debug, Serialize)]
pub struct WeeklyStatus {
    /// Days it starts on (`mon`..`sun`).
    pub days: Vec<&'static str>,
    /// Local start time.
    pub start: String,
    /// Local end time.
    pub end: String,
    /// Time zone name.
    pub timezone: String,
}

/// One notifier's delivery health.
#[derive(Debug, Serialize)]
pub struct NotifierStatus {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: &'static str,
    /// Notifications waiting in the outbox.
    pub outbox_depth: u64,
    /// Deliveries that succeeded since start.
    pub delivered: u64,
    /// Attempts that failed since start.
    pub failed: u64,
    /// Notifications given up since start.
    pub expired: u64,
    /// The latest failure, while failing.
    pub last_error: Option<String>,
    /// While failing, how: `temporary` (retried with backoff, may pass by itself) or
    /// `permanent` (the receiver refuses: broken until the notifier is fixed).
    pub failing: Option<&'static str>,
    /// When the next attempt of a failing delivery is due.
    pub next_attempt_at: Option<String>,
    /// When a delivery last succeeded.
    pub last_success_at: Option<String>,
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
            vantage: snapshot.vantage.to_string(),
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
            alerts: alerts(&snapshot.alerts),
            silences: snapshot
                .alerts
                .silences
                .iter()
                .map(|(silence, phase)| SilenceStatus::new(silence, *phase))
                .collect(),
            notifiers: snapshot
                .alerts
                .notifiers
                .iter()
                .map(NotifierStatus::from_stats)
                .collect(),
            reload: ReloadStatusView::from_status(&snapshot.reload),
            warnings: snapshot
                .catalog
                .warnings()
                .iter()
                .map(WarningStatus::from_warning)
                .collect(),
        }
    }
}

/// `None` for an empty text: an optional field the rule left out.
fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn alerts(view: &AlertsView) -> Vec<AlertStatus> {
    view.alerts.iter().map(AlertStatus::from_view).collect()
}

impl AlertStatus {
    fn from_view(alert: &AlertView) -> Self {
        let content = &alert.content;
        Self {
            id: content.id.clone(),
            title: content.title.clone(),
            state: alert.state.as_str(),
            severity: content.severity.as_str(),
            since: content.since.to_string(),
            fired_at: alert.fired_at.map(|at| at.to_string()),
            resolved_at: alert.resolved_at.map(|at| at.to_string()),
            silenced_by: alert.silenced_by.clone(),
            inhibited_by: alert.inhibited_by.clone(),
            last_notified: alert.last_notified.map(|at| at.to_string()),
            notified: alert.notified.clone(),
            queued: alert.queued,
            summary: content.summary.clone(),
            recovery: content.recovery.clone(),
            runbook: non_empty(&content.runbook),
            evidence: content
                .evidence
                .iter()
                .map(|line| EvidenceStatus {
                    probe: line.probe.clone(),
                    ok: line.ok,
                    message: line.message.clone(),
                })
                .collect(),
            labels: content.labels.clone(),
            note: content.note.clone(),
        }
    }
}

impl SilenceStatus {
    /// The view of one silence in its phase.
    pub fn new(silence: &Silence, phase: Phase) -> Self {
        let (starts_at, ends_at) = match phase {
            Phase::Pending { start, end } | Phase::Active { start, end } => {
                (Some(start.to_string()), end.to_string())
            }
            Phase::Expired { end } => (None, end.to_string()),
        };
        let (source, created_by, created_at) = match &silence.origin {
            Origin::Maintenance => ("maintenance", None, None),
            Origin::Api {
                created_by,
                created_at,
            } => (
                "api",
                Some(created_by.clone()),
                Some(created_at.to_string()),
            ),
        };
        let weekly = match &silence.schedule {
            Schedule::Weekly(weekly) => Some(WeeklyStatus {
                days: weekly.days.iter().map(|day| weekday_name(*day)).collect(),
                start: weekly.start.strftime("%H:%M").to_string(),
                end: weekly.end.strftime("%H:%M").to_string(),
                timezone: weekly.timezone_name.clone(),
            }),
            Schedule::Once { .. } => None,
        };
        Self {
            id: silence.id.clone(),
            source,
            state: phase.as_str(),
            starts_at,
            ends_at,
            alerts: silence.matchers.alert_patterns(),
            matchers: silence.matchers.label_patterns(),
            weekly,
            comment: silence.comment.clone(),
            created_by,
            created_at,
        }
    }
}

fn weekday_name(day: jiff::civil::Weekday) -> &'static str {
    use jiff::civil::Weekday;
    match day {
        Weekday::Monday => "mon",
        Weekday::Tuesday => "tue",
        Weekday::Wednesday => "wed",
        Weekday::Thursday => "thu",
        Weekday::Friday => "fri",
        Weekday::Saturday => "sat",
        Weekday::Sunday => "sun",
    }
}

impl NotifierStatus {
    fn from_stats(stats: &NotifierStats) -> Self {
        let count = |result| stats.results.get(&result).copied().unwrap_or(0);
        Self {
            name: stats.name.clone(),
            kind: stats.kind,
            outbox_depth: stats.outbox_depth,
            delivered: count(DeliveryResult::Delivered),
            failed: count(DeliveryResult::Failed),
            expired: count(DeliveryResult::Expired),
            last_error: stats.last_error.clone(),
            failing: stats.failing.map(Permanence::as_str),
            next_attempt_at: stats.next_attempt_at.map(|at| at.to_string()),
            last_success_at: stats.last_success_at.map(|at| at.to_string()),
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
            runbook: non_empty(&diagnosis.runbook),
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
