//! The daemon's state and the one task that owns it.
//!
//! Every probe result flows into [`StateTask`], which alone mutates per-probe state (latest result,
//! recent history, counters). Readers (`/status`, `/metrics`, the HTML page, `check`) never lock
//! anything: they ask the task for a [`Snapshot`], an immutable, cheaply cloned picture. Per-probe
//! views are `Arc`s updated copy-on-write, so a snapshot costs one `Arc` clone per probe and is
//! cached until the next change.
//!
//! The task also owns the [`Classifier`]: each result marks the rules reading its probe, which
//! are evaluated right away, and a one-second tick confirms pending diagnoses whose `for` has
//! elapsed and re-evaluates time-dependent rules. The diagnoses are part of the snapshot.
//!
//! When the diagnoses (or the rules that cannot be evaluated yet) change, the task publishes them
//! on a `watch` channel to the alert task; the alert task publishes its view back the same way,
//! so the snapshot carries alerts too and `/status` and `/metrics` render one consistent picture.
//! Neither direction ever blocks the state task. Probe history is handed to the store with a
//! non-blocking send, and restored from it at start.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::alert::{AlertsView, Evaluation};
use crate::catalog::{Catalog, Classifier, Diagnosis, RuleStats, RuleStatus};
use crate::config::Config;
use crate::exposition::Histogram;
use crate::probe::ProbeResult;
use crate::store::StoreHandle;
use crate::view::{HistoryRow, ProbeView};

/// Upper bounds of the scheduler-lag histogram, in seconds.
/// Fine at the low end: lag is normally well under a millisecond, and the benchmark reads its
/// p50/p99 from these buckets.
pub const LAG_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
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

// === snapshot ===

/// An immutable picture of the whole state, for readers.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Per probe, in config order.
    pub probes: Vec<Arc<ProbeView>>,
    /// How late runs started, across all probes.
    pub scheduler_lag: Histogram,
    /// The latest run start of any probe (the histogram cannot tell).
    pub scheduler_lag_max: Duration,
    /// When the daemon started (wall clock).
    pub started_at: Timestamp,
    /// The failure modes the diagnoses come from.
    pub catalog: Arc<Catalog>,
    /// The current diagnoses: root causes first, then active before pending, by severity.
    pub diagnoses: Arc<[Diagnosis]>,
    /// Evaluation counters per failure mode, in the order of [`Catalog::modes`].
    pub rules: Vec<RuleStats>,
    /// Alerts, silences and notifier health, as the alert task last published them.
    pub alerts: Arc<AlertsView>,
}

/// How often the state task re-checks the diagnoses without a new result: pending diagnoses are
/// confirmed at most this late after their `for`, and time-dependent rules run this often.
pub const CLASSIFIER_TICK: Duration = Duration::from_secs(1);

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

    /// `Ok` while the state task answers within [`LIVENESS_DEADLINE`] and results keep
    /// arriving (the newest is at most two intervals plus a timeout of the slowest probe old),
    /// else why not: what a heartbeat checks before vouching for honeyguide.
    pub async fn liveness(&self) -> Result<(), String> {
        let snapshot = match tokio::time::timeout(LIVENESS_DEADLINE, self.snapshot()).await {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => return Err("the state task has stopped".to_owned()),
            Err(_) => return Err("the state task did not answer within 2s".to_owned()),
        };
        let Some(allowed) = snapshot
            .probes
            .iter()
            .map(|probe| {
                probe
                    .interval
                    .saturating_mul(2)
                    .saturating_add(probe.timeout)
            })
            .max()
        else {
            return Ok(());
        };
        let newest = snapshot
            .probes
            .iter()
            .filter_map(|probe| probe.latest.as_ref().map(|latest| latest.checked_at))
            .max()
            .unwrap_or(snapshot.started_at);
        let age = Timestamp::now().duration_since(newest);
        match Duration::try_from(age) {
            Ok(age) if age > allowed => Err(format!(
                "no probe result for {}s (allowed {}s)",
                age.as_secs(),
                allowed.as_secs()
            )),
            _ => Ok(()),
        }
    }
}

/// How long [`StateHandle::liveness`] waits for the state task.
pub const LIVENESS_DEADLINE: Duration = Duration::from_secs(2);

// === the task ===

/// The owner of all mutable state. Created with [`StateTask::new`], driven by [`StateTask::run`].
pub struct StateTask {
    probes: Vec<Arc<ProbeView>>,
    scheduler_lag: Histogram,
    scheduler_lag_max: Duration,
    started_at: Timestamp,
    cached: Option<Arc<Snapshot>>,
    classifier: Classifier,
    diagnoses: Arc<[Diagnosis]>,
    results: mpsc::Receiver<ProbeRun>,
    queries: mpsc::Receiver<Query>,
    evaluations: Option<watch::Sender<Evaluation>>,
    /// What was last published: the diagnoses (by pointer) and the rules that could not be
    /// evaluated.
    published: Option<(Arc<[Diagnosis]>, BTreeSet<String>)>,
    alerts: Option<watch::Receiver<Arc<AlertsView>>>,
    alerts_view: Arc<AlertsView>,
    history: Option<StoreHandle>,
    history_dropped: u64,
}

/// Capacity of the results channel: enough to absorb a burst without making probes wait.
pub const RESULTS_CAPACITY: usize = 4096;

impl StateTask {
    /// Builds the task for `config` and the failure modes of `catalog` (validated against the
    /// same config), returning the sender the scheduler reports into and the handle readers ask
    /// through.
    pub fn new(
        config: &Config,
        catalog: Arc<Catalog>,
    ) -> (Self, mpsc::Sender<ProbeRun>, StateHandle) {
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
        let classifier = Classifier::new(
            catalog,
            config.probes.iter().map(|probe| probe.name.as_str()),
        );
        let diagnoses = classifier.diagnoses();
        let task = Self {
            probes,
            scheduler_lag: Histogram::new(&LAG_BUCKETS),
            scheduler_lag_max: Duration::ZERO,
            started_at: Timestamp::now(),
            cached: None,
            classifier,
            diagnoses,
            results,
            queries,
            evaluations: None,
            published: None,
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
        restored: &BTreeMap<String, Vec<HistoryRow>>,
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

    /// Processes results, queries and classifier ticks until every result sender is gone (the
    /// scheduler stopped) and every reader has hung up (the server stopped). Readers keep being
    /// answered, and diagnoses kept current, while the daemon drains, and when there are no
    /// probes at all (the scheduler then has nothing to run and stops at once).
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(CLASSIFIER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                    Some(run) => self.apply(run),
                    None => results_open = false,
                },
                changed = changed(alerts.as_mut()), if alerts.is_some() => match changed {
                    Some(view) => {
                        self.alerts_view = view;
                        self.cached = None;
                    }
                    None => alerts = None,
                },
                _ = tick.tick() => self.classify(Instant::now(), Timestamp::now()),
            }
        }
    }

    fn apply(&mut self, run: ProbeRun) {
        // Drop our own cached snapshot first: while it holds a reference to the views,
        // `make_mut` would copy a view on every result instead of updating it in place.
        self.cached = None;
        let Some(view) = self.probes.get_mut(run.probe) else {
            return;
        };
        self.scheduler_lag.observe(run.lag.as_secs_f64());
        self.scheduler_lag_max = self.scheduler_lag_max.max(run.lag);
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
        self.classifier.probe_changed(run.probe);
        self.classify(run.at, run.checked_at);
    }

    /// Brings the diagnoses up to date; only rules whose probes changed are evaluated.
    fn classify(&mut self, now: Instant, wall: Timestamp) {
        let diagnoses = self.classifier.evaluate(&self.probes, now, wall);
        if !Arc::ptr_eq(&diagnoses, &self.diagnoses) {
            self.diagnoses = diagnoses;
            self.cached = None;
        }
        self.publish();
    }

    /// Hands the diagnoses to the alert task when they, or the set of rules that could not be
    /// evaluated, changed since the last time.
    fn publish(&mut self) {
        let Some(evaluations) = &self.evaluations else {
            return;
        };
        let undetermined: BTreeSet<String> = self
            .classifier
            .stats()
            .filter(|(_, stats)| matches!(stats.status, RuleStatus::Unknown | RuleStatus::Error))
            .map(|(mode, _)| mode.id.clone())
            .collect();
        let unchanged = self.published.as_ref().is_some_and(|(diagnoses, was)| {
            Arc::ptr_eq(diagnoses, &self.diagnoses) && *was == undetermined
        });
        if unchanged {
            return;
        }
        evaluations.send_replace(Evaluation {
            diagnoses: self.diagnoses.to_vec(),
            undetermined: undetermined.clone(),
        });
        self.published = Some((self.diagnoses.clone(), undetermined));
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
            scheduler_lag_max: self.scheduler_lag_max,
            started_at: self.started_at,
            catalog: self.classifier.catalog().clone(),
            diagnoses: self.diagnoses.clone(),
            rules: self
                .classifier
                .stats()
                .map(|(_, stats)| stats.clone())
                .collect(),
            alerts: self.alerts_view.clone(),
        });
        self.cached = Some(snapshot.clone());
        snapshot
    }
}

/// The next view the alert task publishes; `None` once it is gone, so the select arm can be
/// switched off.
async fn changed(view: Option<&mut watch::Receiver<Arc<AlertsView>>>) -> Option<Arc<AlertsView>> {
    let view = view?;
    match view.changed().await {
        Ok(()) => Some(view.borrow_and_update().clone()),
        Err(_) => None,
    }
}
