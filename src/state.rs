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
//! Neither direction ever blocks the state task. Every result, and every change of the
//! diagnoses (pending, active, resolved: what `honeyguide replay` compares against), is handed
//! to the store with a non-blocking send; the last runs are restored from it at start.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::alert::{AlertsView, Evaluation};
use crate::catalog::timeline::TimedResult;
use crate::catalog::{Catalog, Classifier, Diagnosis, RuleStats, RuleStatus, transitions};
use crate::config::{Config, ProbeConfig};
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
    /// The probe's name.
    pub probe: Arc<str>,
    /// The fingerprint of the definition it ran ([`crate::config::ProbeConfig::fingerprint`]):
    /// a run of a definition a reload replaced is set aside, not folded into the new one.
    pub fingerprint: u64,
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
    /// Where this instance probes from (`[server] vantage`).
    pub vantage: Arc<str>,
    /// The failure modes the diagnoses come from.
    pub catalog: Arc<Catalog>,
    /// The current diagnoses: root causes first, then active before pending, by severity.
    pub diagnoses: Arc<[Diagnosis]>,
    /// Evaluation counters per failure mode, in the order of [`Catalog::modes`].
    pub rules: Vec<RuleStats>,
    /// Alerts, silences and notifier health, as the alert task last published them.
    pub alerts: Arc<AlertsView>,
    /// How the last configuration reload went.
    pub reload: Arc<ReloadStatus>,
}

/// How configuration reloads went, for `/status`, the page and `/metrics`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReloadStatus {
    /// Whether the last attempt succeeded (true until one fails; the start counts as one).
    pub successful: bool,
    /// When the configuration in force was loaded (the start, or the last successful reload).
    pub loaded_at: Timestamp,
    /// When the last attempt was made, if any since the start.
    pub attempted_at: Option<Timestamp>,
    /// Why the last attempt failed: every problem, one per line (already located and free of
    /// secrets, as `validate` prints them).
    pub error: Option<String>,
    /// Settings the last successful reload could not change at runtime (named, with what
    /// would be needed: a restart).
    pub not_applied: Vec<String>,
    /// Successful reloads since the start.
    pub reloads: u64,
}

impl ReloadStatus {
    /// The configuration loaded at start.
    pub fn started(at: Timestamp) -> Self {
        Self {
            successful: true,
            loaded_at: at,
            attempted_at: None,
            error: None,
            not_applied: Vec::new(),
            reloads: 0,
        }
    }
}

/// What a reload hands the state task: the new probes and the new catalog.
#[derive(Debug)]
pub struct Reconfiguration {
    /// The new probes, in config order.
    pub probes: Vec<ProbeDefinition>,
    /// The new failure modes (validated against the new probes).
    pub catalog: Arc<Catalog>,
}

/// One probe as the state task knows it.
#[derive(Clone, Debug)]
pub struct ProbeDefinition {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: crate::probe::Kind,
    /// What it probes.
    pub target: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// How often it runs.
    pub interval: Duration,
    /// Its timeout.
    pub timeout: Duration,
    /// The fingerprint of its definition.
    pub fingerprint: u64,
}

impl ProbeDefinition {
    /// The definition of a configured probe.
    pub fn of(probe: &ProbeConfig) -> Self {
        Self {
            name: probe.name.clone(),
            kind: probe.kind(),
            target: probe.probe.target(),
            labels: probe.labels.clone(),
            interval: probe.interval,
            timeout: probe.timeout,
            fingerprint: probe.fingerprint,
        }
    }

    fn view(&self) -> ProbeView {
        ProbeView::new(
            &self.name,
            self.kind,
            self.target.clone(),
            self.labels.clone(),
            self.interval,
            self.timeout,
        )
    }
}

/// How often the state task re-checks the diagnoses without a new result: pending diagnoses are
/// confirmed at most this late after their `for`, and time-dependent rules run this often.
pub const CLASSIFIER_TICK: Duration = Duration::from_secs(1);

/// A request to the state task.
#[derive(Debug)]
pub enum Query {
    /// Send back the current snapshot.
    Snapshot(oneshot::Sender<Arc<Snapshot>>),
    /// Take new probes and rules (a reload); answer once they are in force.
    Reconfigure(Box<Reconfiguration>, oneshot::Sender<()>),
    /// Record how a reload attempt went.
    Reload(ReloadStatus),
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

    /// Puts new probes and rules in force; returns once they are (`false` if the state task is
    /// gone).
    pub async fn reconfigure(&self, reconfiguration: Reconfiguration) -> bool {
        let (reply, answer) = oneshot::channel();
        if self
            .queries
            .send(Query::Reconfigure(Box::new(reconfiguration), reply))
            .await
            .is_err()
        {
            return false;
        }
        answer.await.is_ok()
    }

    /// Records how a reload attempt went.
    pub async fn record_reload(&self, status: ReloadStatus) {
        let _ = self.queries.send(Query::Reload(status)).await;
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
    /// Per probe (in the order of `probes`), the fingerprint of its definition.
    fingerprints: Vec<u64>,
    /// Probe name -> its index in `probes`.
    index: HashMap<Arc<str>, usize>,
    reload: Arc<ReloadStatus>,
    /// Ids of rules reloads removed (and did not bring back): their alerts resolve with a note.
    retired: BTreeSet<String>,
    scheduler_lag: Histogram,
    scheduler_lag_max: Duration,
    started_at: Timestamp,
    vantage: Arc<str>,
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
        let definitions: Vec<ProbeDefinition> =
            config.probes.iter().map(ProbeDefinition::of).collect();
        let probes = definitions
            .iter()
            .map(|definition| Arc::new(definition.view()))
            .collect();
        let classifier = Classifier::new(
            catalog,
            config.probes.iter().map(|probe| probe.name.as_str()),
        );
        let diagnoses = classifier.diagnoses();
        let started_at = Timestamp::now();
        let task = Self {
            fingerprints: definitions.iter().map(|d| d.fingerprint).collect(),
            index: index_of(&definitions),
            reload: Arc::new(ReloadStatus::started(started_at)),
            retired: BTreeSet::new(),
            probes,
            scheduler_lag: Histogram::new(&LAG_BUCKETS),
            scheduler_lag_max: Duration::ZERO,
            started_at,
            vantage: config.server.vantage.as_str().into(),
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
        let Some(&index) = self.index.get(&run.probe) else {
            // A probe a reload removed; its last run is no longer anyone's.
            return;
        };
        if self.fingerprints.get(index) != Some(&run.fingerprint) {
            // A run of the definition a reload replaced.
            return;
        }
        let Some(view) = self.probes.get_mut(index) else {
            return;
        };
        self.scheduler_lag.observe(run.lag.as_secs_f64());
        self.scheduler_lag_max = self.scheduler_lag_max.max(run.lag);
        if let Some(store) = &self.history {
            // The copy is what the store encodes, on its own thread.
            let kept = store.append_history(TimedResult {
                probe: view.name.clone(),
                at: run.checked_at,
                result: run.result.clone(),
            });
            if !kept {
                self.history_dropped += 1;
                warn_dropped(self.history_dropped);
            }
        }
        Arc::make_mut(view).record(run.result, run.at, run.checked_at);
        self.classifier.probe_changed(index);
        self.classify(run.at, run.checked_at);
    }

    /// Brings the diagnoses up to date; only rules whose probes changed are evaluated.
    fn classify(&mut self, now: Instant, wall: Timestamp) {
        let diagnoses = self.classifier.evaluate(&self.probes, now, wall);
        if !Arc::ptr_eq(&diagnoses, &self.diagnoses) {
            if let Some(store) = &self.history {
                let changes = transitions(&self.diagnoses, &diagnoses, wall);
                if !changes.is_empty() && !store.append_transitions(changes) {
                    self.history_dropped += 1;
                    warn_dropped(self.history_dropped);
                }
            }
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
            retired: self.retired.clone(),
        });
        self.published = Some((self.diagnoses.clone(), undetermined));
    }

    fn answer(&mut self, query: Query) {
        match query {
            Query::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Query::Reconfigure(reconfiguration, reply) => {
                self.reconfigure(*reconfiguration);
                let _ = reply.send(());
            }
            Query::Reload(status) => {
                self.reload = Arc::new(status);
                self.cached = None;
            }
        }
    }

    /// Puts new probes and rules in force. An unchanged probe keeps its view (history,
    /// counters, latest result); a changed or new one starts afresh; a removed one disappears.
    /// Rules keep their state by id (a diagnosis holding before holds on, with its `since`), so
    /// a reload that does not touch a failure mode does not flap its alert.
    fn reconfigure(&mut self, reconfiguration: Reconfiguration) {
        let Reconfiguration { probes, catalog } = reconfiguration;
        self.cached = None;
        let views: Vec<Arc<ProbeView>> = probes
            .iter()
            .map(|definition| {
                self.index
                    .get(definition.name.as_str())
                    .filter(|&&index| self.fingerprints.get(index) == Some(&definition.fingerprint))
                    .and_then(|&index| self.probes.get(index).cloned())
                    .unwrap_or_else(|| Arc::new(definition.view()))
            })
            .collect();
        self.fingerprints = probes
            .iter()
            .map(|definition| definition.fingerprint)
            .collect();
        self.index = index_of(&probes);
        self.probes = views;
        let kept: BTreeSet<&str> = catalog
            .modes()
            .iter()
            .map(|mode| mode.id.as_str())
            .collect();
        self.retired.extend(
            self.classifier
                .catalog()
                .modes()
                .iter()
                .filter(|mode| !kept.contains(mode.id.as_str()))
                .map(|mode| mode.id.clone()),
        );
        self.retired.retain(|id| !kept.contains(id.as_str()));
        // Publish after a reload whatever changed: the alert task learns of retired rules.
        self.published = None;
        let classifier = std::mem::replace(
            &mut self.classifier,
            Classifier::new(catalog.clone(), std::iter::empty()),
        );
        self.classifier =
            classifier.reconfigured(catalog, probes.iter().map(|probe| probe.name.as_str()));
        self.classify(Instant::now(), Timestamp::now());
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
            vantage: self.vantage.clone(),
            catalog: self.classifier.catalog().clone(),
            diagnoses: self.diagnoses.clone(),
            rules: self
                .classifier
                .stats()
                .map(|(_, stats)| stats.clone())
                .collect(),
            alerts: self.alerts_view.clone(),
            reload: self.reload.clone(),
        });
        self.cached = Some(snapshot.clone());
        snapshot
    }
}

fn index_of(definitions: &[ProbeDefinition]) -> HashMap<Arc<str>, usize> {
    definitions
        .iter()
        .enumerate()
        .map(|(index, definition)| (Arc::from(definition.name.as_str()), index))
        .collect()
}

/// Says that history was dropped, at 1, 2, 4, 8, ... drops: often enough to be seen, never a
/// flood.
fn warn_dropped(dropped: u64) {
    if dropped.is_power_of_two() {
        tracing::warn!(
            dropped,
            "the store is behind: probe history rows were dropped"
        );
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
