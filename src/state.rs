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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::alert::{AlertsView, Evaluation};
use crate::catalog::{Catalog, Classifier, Diagnosis, RuleStats, RuleStatus};
use crate::config::Config;
use crate::metrics::Histogram;
use crate::probe::{ErrorClass, Kind, ProbeResult};
use crate::store::{HistoryRow, StoreHandle};

/// Runs remembered per probe, for rules (`failure_ratio(n)`) and uptime.
pub const HISTORY_LEN: usize = 100;
/// Runs shown per probe in `/status`.
pub const STATUS_HISTORY_LEN: usize = 20;

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
    /// Runs per wall-clock hour, oldest first, for uptime over the last day.
    pub hourly: VecDeque<HourBucket>,
}

/// Runs that finished within one wall-clock hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HourBucket {
    /// Hours since the Unix epoch.
    pub hour: i64,
    /// Successful runs in that hour.
    pub ok: u32,
    /// All runs in that hour.
    pub total: u32,
}

/// Hour buckets kept: a day, plus the hour in progress.
const HOURS_KEPT: usize = 25;

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
            history: VecDeque::new(),
            consecutive_failures: 0,
            last_ok: None,
            last_ok_at: None,
            runs_ok: 0,
            runs_failed: BTreeMap::new(),
            hourly: VecDeque::new(),
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
        self.count_hourly(result.ok, checked_at);
        self.latest = Some(Checked {
            result,
            at,
            checked_at,
        });
    }

    fn count_hourly(&mut self, ok: bool, checked_at: Timestamp) {
        let hour = checked_at.as_second().div_euclid(3600);
        match self.hourly.back_mut() {
            Some(bucket) if bucket.hour == hour => {
                bucket.total += 1;
                bucket.ok += u32::from(ok);
            }
            _ => {
                if self.hourly.len() == HOURS_KEPT {
                    self.hourly.pop_front();
                }
                self.hourly.push_back(HourBucket {
                    hour,
                    ok: u32::from(ok),
                    total: 1,
                });
            }
        }
    }

    /// Fills the history from the store after a restart (oldest first): `/status` shows it,
    /// uptime counts it, and rules reading failure ratios see it. `latest` stays empty until the
    /// first run, and the run counters count from this start.
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
            self.count_hourly(row.ok, row.checked_at);
            if row.ok {
                self.consecutive_failures = 0;
                self.last_ok = Some(point_at);
                self.last_ok_at = Some(row.checked_at);
            } else {
                self.consecutive_failures += 1;
            }
        }
    }

    /// Share of successful runs over the 24 hours before `now` (hour granularity), or `None`
    /// without runs in that time.
    pub fn uptime_24h(&self, now: Timestamp) -> Option<f64> {
        let current = now.as_second().div_euclid(3600);
        let (ok, total) = self
            .hourly
            .iter()
            .filter(|bucket| bucket.hour > current - 24)
            .fold((0u64, 0u64), |(ok, total), bucket| {
                (ok + u64::from(bucket.ok), total + u64::from(bucket.total))
            });
        (total > 0).then(|| ok as f64 / total as f64)
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
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Observations;

    fn result(ok: bool) -> ProbeResult {
        ProbeResult {
            ok,
            error: (!ok).then_some(ErrorClass::Connect),
            message: String::new(),
            observations: Observations::new(),
            duration: Duration::from_millis(5),
            phases: Vec::new(),
        }
    }

    fn view() -> ProbeView {
        ProbeView::new(
            "p",
            Kind::Http,
            String::new(),
            BTreeMap::new(),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
    }

    /// Counters, streaks and the last success follow the results.
    #[tokio::test(start_paused = true)]
    async fn record_tracks_streaks_and_last_success() {
        let mut view = view();
        let start = Instant::now();
        view.record(result(true), start, Timestamp::UNIX_EPOCH);
        tokio::time::advance(Duration::from_secs(3)).await;
        view.record(result(false), Instant::now(), Timestamp::UNIX_EPOCH);
        view.record(result(false), Instant::now(), Timestamp::UNIX_EPOCH);
        assert_eq!(view.consecutive_failures, 2);
        assert_eq!(view.runs_ok, 1);
        assert_eq!(view.runs_failed.get(&ErrorClass::Connect), Some(&2));
        assert_eq!(view.seconds_since_ok(Instant::now()), Some(3.0));
        assert_eq!(view.ok(), Some(false));
        view.record(result(true), Instant::now(), Timestamp::UNIX_EPOCH);
        assert_eq!(view.consecutive_failures, 0);
    }

    /// Uptime counts the runs of the last 24 hours only.
    #[test]
    fn uptime_covers_the_last_day() {
        let mut view = view();
        let at = |hour: i64| Timestamp::from_second(hour * 3600 + 60).unwrap();
        let now = Instant::now();
        view.record(result(false), now, at(100));
        view.record(result(true), now, at(130));
        view.record(result(true), now, at(131));
        view.record(result(false), now, at(131));
        assert_eq!(view.uptime_24h(at(131)), Some(2.0 / 3.0));
        assert_eq!(view.uptime_24h(at(200)), None);
        assert_eq!(view.hourly.len(), 3);
    }

    /// The failure ratio looks at the last n runs only, and history is bounded.
    #[tokio::test(start_paused = true)]
    async fn failure_ratio_counts_recent_runs_and_history_is_bounded() {
        let mut view = view();
        assert_eq!(view.failure_ratio(5), 0.0);
        for index in 0..(HISTORY_LEN + 10) {
            view.record(
                result(index % 4 != 0),
                Instant::now(),
                Timestamp::UNIX_EPOCH,
            );
        }
        assert_eq!(view.history.len(), HISTORY_LEN);
        // The last 4 runs are indices 106..=109: one of them (108) failed.
        assert_eq!(view.failure_ratio(4), 0.25);
    }
}
