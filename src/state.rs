//! The daemon's state and the one task that owns it.
//!
//! Every probe result flows into [`StateTask`], which alone mutates per-probe state (latest result,
//! recent history, counters). Readers (`/status`, `/metrics`, the HTML page, `check`) never lock
//! anything: they ask the task for a [`Snapshot`], an immutable, cheaply cloned picture. Per-probe
//! views are `Arc`s updated copy-on-write, so a snapshot costs one `Arc` clone per probe and is
//! cached until the next change.
//!
//! After results arrive (and at least once a second, so `for` durations elapse without new
//! results) the task asks the [`DiagnosisSource`] for the current diagnoses and publishes them on a
//! `watch` channel to the alert task; the alert task publishes its view back the same way, so
//! the snapshot carries alerts too and `/status` and `/metrics` render one consistent picture.
//! Neither direction ever blocks the state task. Probe history is handed to the store with a
//! non-blocking send and restored from it at start.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::alert::{AlertsView, Evaluation};
use crate::catalog::Diagnosis;
use crate::config::Config;
use crate::metrics::Histogram;
use crate::probe::{ErrorClass, Kind, ProbeResult};
use crate::store::{HistoryRow, StoreHandle};

/// Runs remembered per probe, for rules (`failure_ratio(n)`) and uptime.
pub const HISTORY_LEN: usize = 100;
/// Runs shown per probe in `/status`.
pub const STATUS_HISTORY_LEN: usize = 20;

/// The classifier runs at least this often, so `for` durations elapse without new results.
pub const EVALUATION_INTERVAL: Duration = Duration::from_secs(1);

/// Upper bounds of the scheduler-lag histogram, in seconds.
pub const LAG_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

// === results in ===

/// One finished run as the scheduler reports it.
#[derive(Debug)]
pub struct ProbeRun {
    /// Index of the probe in `Config::probes`.
    pub probe: usize,
    /// What the run found.
    pub result: ProbeResult,
    /// When the run finished (monotonic).
    pub at: Instant,
    /// When the run finished (wall clock).
    pub checked_at: Timestamp,
    /// How late the run started compared to its schedule.
    pub lag: Duration,
}

// === classification ===

/// Turns the probes' current state into the full list of diagnoses holding now: the seam where
/// the failure catalog's classifier plugs in (tests plug in a closure). The state task calls it
/// after results and once a second, and publishes the result to the alert task.
///
/// It is `&mut self` because a classifier keeps time (`for` durations: since when a rule holds).
pub trait DiagnosisSource: Send + 'static {
    /// Every diagnosis that holds now (pending or active), given every probe's state.
    fn classify(
        &mut self,
        probes: &[Arc<ProbeView>],
        now: Instant,
        at: Timestamp,
    ) -> Vec<Diagnosis>;
}

/// No rules: never diagnoses anything. What runs until a catalog is connected.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRules;

impl DiagnosisSource for NoRules {
    fn classify(&mut self, _: &[Arc<ProbeView>], _: Instant, _: Timestamp) -> Vec<Diagnosis> {
        Vec::new()
    }
}

impl<F> DiagnosisSource for F
where
    F: FnMut(&[Arc<ProbeView>], Instant, Timestamp) -> Vec<Diagnosis> + Send + 'static,
{
    fn classify(
        &mut self,
        probes: &[Arc<ProbeView>],
        now: Instant,
        at: Timestamp,
    ) -> Vec<Diagnosis> {
        self(probes, now, at)
    }
}

// === per-probe view ===

/// Everything known about one probe, as of the latest result.
#[derive(Clone, Debug)]
pub struct ProbeView {
    /// Unique name.
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// What is probed (no credentials).
    pub target: String,
    /// Configured labels.
    pub labels: BTreeMap<String, String>,
    /// Configured interval.
    pub interval: Duration,
    /// Configured timeout.
    pub timeout: Duration,
    /// The latest result, once there is one.
    pub latest: Option<Checked>,
    /// The last [`HISTORY_LEN`] runs, oldest first.
    pub history: VecDeque<HistoryPoint>,
    /// Failed runs since the last success.
    pub consecutive_failures: u64,
    /// When the probe last succeeded (monotonic).
    pub last_ok: Option<Instant>,
    /// When the probe last succeeded (wall clock).
    pub last_ok_at: Option<Timestamp>,
    /// Successful runs since start.
    pub runs_ok: u64,
    /// Failed runs since start, by error class.
    pub runs_failed: BTreeMap<ErrorClass, u64>,
}

/// A result with when it arrived.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The result.
    pub result: ProbeResult,
    /// When (monotonic).
    pub at: Instant,
    /// When (wall clock).
    pub checked_at: Timestamp,
}

/// One past run, compact.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HistoryPoint {
    /// Whether it succeeded.
    pub ok: bool,
    /// Why not.
    pub error: Option<ErrorClass>,
    /// How long it took.
    pub duration: Duration,
    /// When it finished (monotonic).
    pub at: Instant,
    /// When it finished (wall clock).
    pub checked_at: Timestamp,
}

impl ProbeView {
    /// A probe that has not run yet.
    pub fn new(
        name: &str,
        kind: Kind,
        target: String,
        labels: BTreeMap<String, String>,
        interval: Duration,
        timeout: Duration,
    ) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            target,
            labels,
            interval,
            timeout,
            latest: None,
            history: VecDeque::with_capacity(HISTORY_LEN),
            consecutive_failures: 0,
            last_ok: None,
            last_ok_at: None,
            runs_ok: 0,
            runs_failed: BTreeMap::new(),
        }
    }

    /// Folds one run in.
    pub fn record(&mut self, result: ProbeResult, at: Instant, checked_at: Timestamp) {
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(HistoryPoint {
            ok: result.ok,
            error: result.error,
            duration: result.duration,
            at,
            checked_at,
        });
        if result.ok {
            self.consecutive_failures = 0;
            self.last_ok = Some(at);
            self.last_ok_at = Some(checked_at);
            self.runs_ok += 1;
        } else {
            self.consecutive_failures += 1;
            *self
                .runs_failed
                .entry(result.error.unwrap_or(ErrorClass::Internal))
                .or_default() += 1;
        }
        self.latest = Some(Checked {
            result,
            at,
            checked_at,
        });
    }

    /// Fills the history from the store after a restart (oldest first): `/status` shows it and
    /// rules reading failure ratios see it. `latest` stays empty until the first run, and the
    /// run counters count from this start.
    pub fn restore_history(&mut self, rows: &[HistoryRow], now: Instant, at: Timestamp) {
        let skip = rows.len().saturating_sub(HISTORY_LEN);
        for row in &rows[skip..] {
            if self.history.len() == HISTORY_LEN {
                self.history.pop_front();
            }
            let ago = Duration::try_from(at.duration_since(row.checked_at)).unwrap_or_default();
            let point_at = now.checked_sub(ago).unwrap_or(now);
            self.history.push_back(HistoryPoint {
                ok: row.ok,
                error: row.error,
                duration: row.duration,
                at: point_at,
                checked_at: row.checked_at,
            });
            if row.ok {
                self.consecutive_failures = 0;
                self.last_ok = Some(point_at);
                self.last_ok_at = Some(row.checked_at);
            } else {
                self.consecutive_failures += 1;
            }
        }
    }

    /// Share of the last `n` runs that failed (0 when there are none).
    pub fn failure_ratio(&self, n: usize) -> f64 {
        let recent: Vec<_> = self.history.iter().rev().take(n).collect();
        if recent.is_empty() {
            return 0.0;
        }
        recent.iter().filter(|point| !point.ok).count() as f64 / recent.len() as f64
    }

    /// Seconds since the last success, or `None` if the probe never succeeded.
    pub fn seconds_since_ok(&self, now: Instant) -> Option<f64> {
        self.last_ok
            .map(|at| now.saturating_duration_since(at).as_secs_f64())
    }

    /// Whether the latest run succeeded (`None` before the first run).
    pub fn ok(&self) -> Option<bool> {
        self.latest.as_ref().map(|checked| checked.result.ok)
    }
}

// === snapshot ===

/// An immutable picture of the whole state, for readers.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Per probe, in config order.
    pub probes: Vec<Arc<ProbeView>>,
    /// How late runs started, across all probes.
    pub scheduler_lag: Histogram,
    /// When the daemon started (wall clock).
    pub started_at: Timestamp,
    /// Alerts, silences and notifier health, as the alert task last published them.
    pub alerts: Arc<AlertsView>,
}

/// A request to the state task.
#[derive(Debug)]
pub enum Query {
    /// Send back the current snapshot.
    Snapshot(oneshot::Sender<Arc<Snapshot>>),
}

/// A cheap handle for asking the state task things.
#[derive(Clone, Debug)]
pub struct StateHandle {
    queries: mpsc::Sender<Query>,
}

impl StateHandle {
    /// The current snapshot, or `None` if the state task is gone (shutting down).
    pub async fn snapshot(&self) -> Option<Arc<Snapshot>> {
        let (reply, answer) = oneshot::channel();
        self.queries.send(Query::Snapshot(reply)).await.ok()?;
        answer.await.ok()
    }
}

// === the task ===

/// The owner of all mutable state. Created with [`StateTask::new`], driven by [`StateTask::run`].
pub struct StateTask {
    probes: Vec<Arc<ProbeView>>,
    scheduler_lag: Histogram,
    started_at: Timestamp,
    cached: Option<Arc<Snapshot>>,
    results: mpsc::Receiver<ProbeRun>,
    queries: mpsc::Receiver<Query>,
    classifier: Box<dyn DiagnosisSource>,
    evaluations: Option<watch::Sender<Evaluation>>,
    alerts: Option<watch::Receiver<Arc<AlertsView>>>,
    alerts_view: Arc<AlertsView>,
    history: Option<StoreHandle>,
    history_dropped: u64,
}

/// Capacity of the results channel: enough to absorb a burst without making probes wait.
pub const RESULTS_CAPACITY: usize = 4096;

impl StateTask {
    /// Builds the task for `config`, returning the sender the scheduler reports into and the
    /// handle readers ask through.
    pub fn new(config: &Config) -> (Self, mpsc::Sender<ProbeRun>, StateHandle) {
        let (results_tx, results) = mpsc::channel(RESULTS_CAPACITY);
        let (queries_tx, queries) = mpsc::channel(64);
        let probes = config
            .probes
            .iter()
            .map(|probe| {
                Arc::new(ProbeView::new(
                    &probe.name,
                    probe.kind(),
                    probe.probe.target(),
                    probe.labels.clone(),
                    probe.interval,
                    probe.timeout,
                ))
            })
            .collect();
        let task = Self {
            probes,
            scheduler_lag: Histogram::new(&LAG_BUCKETS),
            started_at: Timestamp::now(),
            cached: None,
            results,
            queries,
            classifier: Box::new(NoRules),
            evaluations: None,
            alerts: None,
            alerts_view: Arc::new(AlertsView::default()),
            history: None,
            history_dropped: 0,
        };
        (
            task,
            results_tx,
            StateHandle {
                queries: queries_tx,
            },
        )
    }

    /// Uses `classifier` to diagnose after results.
    #[must_use]
    pub fn with_classifier(mut self, classifier: Box<dyn DiagnosisSource>) -> Self {
        self.classifier = classifier;
        self
    }

    /// Publishes diagnoses on `evaluations` and includes the alert task's `view` in snapshots.
    #[must_use]
    pub fn with_alerts(
        mut self,
        evaluations: watch::Sender<Evaluation>,
        view: watch::Receiver<Arc<AlertsView>>,
    ) -> Self {
        self.alerts_view = view.borrow().clone();
        self.evaluations = Some(evaluations);
        self.alerts = Some(view);
        self
    }

    /// Appends every result to the store's history, after filling the views from `restored`.
    #[must_use]
    pub fn with_history(
        mut self,
        store: StoreHandle,
        restored: &std::collections::BTreeMap<String, Vec<HistoryRow>>,
    ) -> Self {
        let (now, at) = (Instant::now(), Timestamp::now());
        for view in &mut self.probes {
            if let Some(rows) = restored.get(&view.name) {
                Arc::make_mut(view).restore_history(rows, now, at);
            }
        }
        self.history = Some(store);
        self
    }

    /// Processes results, queries and evaluations until every result sender is gone (the
    /// scheduler stopped) and every reader has hung up (the server stopped). Readers keep being
    /// answered, and diagnoses published, while the daemon drains, and when there are no probes
    /// at all (the scheduler then has nothing to run and stops at once).
    pub async fn run(mut self) {
        let mut evaluate = tokio::time::interval(EVALUATION_INTERVAL);
        evaluate.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut alerts = self.alerts.take();
        let (mut results_open, mut queries_open) = (true, true);
        while results_open || queries_open {
            tokio::select! {
                biased;
                query = self.queries.recv(), if queries_open => match query {
                    Some(query) => self.answer(query),
                    None => queries_open = false,
                },
                run = self.results.recv(), if results_open => match run {
                    Some(run) => {
                        self.apply(run);
                        // Classify once per burst of results, not once per result.
                        if self.results.is_empty() {
                            self.evaluate();
                            evaluate.reset();
                        }
                    }
                    None => results_open = false,
                },
                changed = changed(alerts.as_mut()), if alerts.is_some() => match changed {
                    Some(view) => {
                        self.alerts_view = view;
                        self.cached = None;
                    }
                    None => alerts = None,
                },
                _ = evaluate.tick() => self.evaluate(),
            }
        }
    }

    fn apply(&mut self, run: ProbeRun) {
        let Some(view) = self.probes.get_mut(run.probe) else {
            return;
        };
        self.scheduler_lag.observe(run.lag.as_secs_f64());
        if let Some(store) = &self.history {
            let row = HistoryRow {
                probe: view.name.clone(),
                ok: run.result.ok,
                error: run.result.error,
                duration: run.result.duration,
                checked_at: run.checked_at,
            };
            if !store.append_history(row) {
                self.history_dropped += 1;
                if self.history_dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.history_dropped,
                        "the store is behind: probe history rows were dropped"
                    );
                }
            }
        }
        Arc::make_mut(view).record(run.result, run.at, run.checked_at);
        self.cached = None;
    }

    /// Runs the classifier and publishes its diagnoses to the alert task.
    fn evaluate(&mut self) {
        let Some(evaluations) = &self.evaluations else {
            return;
        };
        let diagnoses = self
            .classifier
            .classify(&self.probes, Instant::now(), Timestamp::now());
        let settled = self.probes.iter().all(|view| view.latest.is_some());
        evaluations.send_replace(Evaluation { diagnoses, settled });
    }

    fn answer(&mut self, query: Query) {
        match query {
            Query::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
        }
    }

    fn snapshot(&mut self) -> Arc<Snapshot> {
        if let Some(cached) = &self.cached {
            return cached.clone();
        }
        let snapshot = Arc::new(Snapshot {
            probes: self.probes.clone(),
            scheduler_lag: self.scheduler_lag.clone(),
            started_at: self.started_at,
            alerts: self.alerts_view.clone(),
        });
        self.cached = Some(snapshot.clone());
        snapshot
    }
}

/// The next view the alert task publishes; `None` once it is gone (or was never connected), so
/// the select arm can be switched off.
async fn changed(view: Option<&mut watch::Receiver<Arc<AlertsView>>>) -> Option<Arc<AlertsView>> {
    let view = view?;
    match view.changed().await {
        Ok(()) => Some(view.borrow_and_update().clone()),
        Err(_) => None,
    }
}
