//! Wiring and lifecycle: opens the store, starts the state task, the alert task, one delivery
//! loop per notifier, the heartbeats, the scheduler and the HTTP server for a validated
//! [`Config`], reloads the configuration while it runs, and stops them in order.
//!
//! [`run`] takes the listener and the shutdown signal as arguments instead of creating them, so
//! tests run a whole daemon on `127.0.0.1:0` and stop it when they like. [`run_with`] also says
//! where the alert engine's diagnoses come from ([`Diagnoses`]): the catalog, or a feed the
//! caller controls. [`launch`] takes everything, reload requests from outside (SIGHUP) too.
//!
//! A reload ([`reload`]) reads and validates `probes.toml` and `alerts/` completely before it
//! changes anything; then it hands the new probes and rules to the state task, brings the
//! scheduler's loops in line, replaces the delivery loops and heartbeats of changed notifiers,
//! and gives the alert task its new settings. What cannot change at runtime is named.
//!
//! Shutdown order, all of it within [`SHUTDOWN_DEADLINE`] (under Kubernetes' default 30 s grace
//! period, so the last steps run before a SIGKILL): stop the heartbeats (a stopping honeyguide
//! no longer vouches for itself); stop scheduling new runs and let runs in flight finish and
//! report (for at most [`RUNS_DRAIN`]) while the server closes idle connections and lets
//! requests in flight finish ([`server::serve::DRAIN`]); let deliveries in flight finish (for at
//! most [`DELIVERY_DRAIN`]) so they are recorded and not repeated after restart; save the alert
//! state; then the state task stops and the store writes the history it still holds. Whatever
//! has not finished by its bound is abandoned with a warning: a run is lost, a delivery is
//! retried after the next start.

pub mod reload;
mod watch;
mod workers;

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch as channel};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::alert::task::{AlertHandle, AlertReconfiguration, Wiring};
use crate::alert::{AlertTask, Engine, Evaluation, NotifierStats, Settings, Target};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::notify::dispatch::{self, BACKOFF_MAX, BACKOFF_MIN, DeliveryReport, Lane};
use crate::notify::{Notifier, heartbeat};
use crate::scheduler::Scheduler;
use crate::server::{self, AppState};
use crate::spec::Secret;
use crate::state::{ProbeDefinition, Reconfiguration, ReloadStatus, StateHandle, StateTask};
use crate::store::{StoreError, StoreHandle};

pub use crate::control::{ReloadOutcome, ReloadRequest, Trigger};
use workers::Workers;

/// How long shutdown waits for deliveries in flight before abandoning them (they are then
/// retried, with the same id, after the next start).
pub const DELIVERY_DRAIN: Duration = Duration::from_secs(8);

/// How long shutdown waits for heartbeats in flight.
pub const HEARTBEAT_DRAIN: Duration = Duration::from_secs(2);

/// How long shutdown waits for probe runs in flight (runs with longer timeouts are cut short).
pub const RUNS_DRAIN: Duration = Duration::from_secs(8);

/// The bound on the whole shutdown, from the signal to the return of [`run`].
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(25);

/// Kept at the end of [`SHUTDOWN_DEADLINE`] for the alert task's final save and the store.
const SAVE_RESERVE: Duration = Duration::from_secs(5);

/// Something went wrong running the daemon itself (not a probe: those are results).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store could not be opened or read at start.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the alert engine's diagnoses come from.
#[derive(Debug)]
pub enum Diagnoses {
    /// The catalog's classifier in the state task: what the daemon does.
    Catalog,
    /// A feed the caller publishes to, e.g. a test scripting failure modes without rules and
    /// probes. The catalog still runs and shows its diagnoses in `/status`.
    Feed(channel::Receiver<Evaluation>),
}

/// Everything a daemon is started with.
#[derive(Debug)]
pub struct Launch {
    /// The validated configuration.
    pub config: Config,
    /// The failure modes, validated against `config`'s probes.
    pub catalog: Arc<Catalog>,
    /// Where the HTTP server listens.
    pub listener: TcpListener,
    /// Where the diagnoses the alert task follows come from.
    pub diagnoses: Diagnoses,
    /// Reload requests from outside the daemon (SIGHUP); `POST /-/reload` and the file watch
    /// (`[server] watch_config`) add their own.
    pub reloads: Option<mpsc::Receiver<ReloadRequest>>,
}

impl Launch {
    /// A daemon diagnosing with `catalog`, reloading only through its own HTTP endpoint and
    /// file watch.
    pub fn new(config: Config, catalog: Arc<Catalog>, listener: TcpListener) -> Self {
        Self {
            config,
            catalog,
            listener,
            diagnoses: Diagnoses::Catalog,
            reloads: None,
        }
    }
}

/// Runs the daemon until `shutdown` completes, diagnosing the failure modes of `catalog`
/// (validated against `config`'s probes).
pub async fn run(
    config: Config,
    catalog: Arc<Catalog>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    launch(Launch::new(config, catalog, listener), shutdown).await
}

/// Runs the daemon until `shutdown` completes, alerting on `diagnoses`.
pub async fn run_with(
    config: Config,
    catalog: Arc<Catalog>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    diagnoses: Diagnoses,
) -> Result<(), AppError> {
    let mut launch_with = Launch::new(config, catalog, listener);
    launch_with.diagnoses = diagnoses;
    launch(launch_with, shutdown).await
}

/// Runs the daemon of `launch` until `shutdown` completes, reloading on request.
pub async fn launch(
    launch: Launch,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let Launch {
        config,
        catalog,
        listener,
        diagnoses,
        reloads,
    } = launch;
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(16);
    if let Some(mut outside) = reloads {
        let forward = reload_tx.clone();
        tokio::spawn(async move {
            while let Some(request) = outside.recv().await {
                if forward.send(request).await.is_err() {
                    break;
                }
            }
        });
    }
    // The watch starts before anything is served: once `/status` answers, a change is seen.
    let watcher = config
        .server
        .watch_config
        .then(|| watch::start(&config.path, catalog.dir(), reload_tx.clone()));
    let mut daemon = Daemon::start(config, catalog, listener, diagnoses, reload_tx).await?;

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(request) = reload_rx.recv() => {
                let outcome = daemon.reload(request.trigger).await;
                if let Some(reply) = request.reply {
                    let _ = reply.send(outcome);
                }
            }
        }
    }
    drop(watcher);
    daemon.shutdown().await;
    Ok(())
}

/// The running parts, as the lifecycle drives them.
struct Daemon {
    /// The configuration in force (with the `[server]` and `[store]` it started with).
    config: Config,
    /// Where the rules were loaded from (`None`: a reload keeps the rules as they are).
    alerts_dir: Option<PathBuf>,
    store: StoreHandle,
    state: StateHandle,
    alerts: AlertHandle,
    scheduler: Option<Scheduler>,
    scheduler_stopped: CancellationToken,
    lanes: Workers,
    wakes: BTreeMap<String, Arc<Notify>>,
    heartbeats: Workers,
    reports: mpsc::Sender<DeliveryReport>,
    api_token: channel::Sender<Option<Secret>>,
    reload: ReloadStatus,
    state_task: tokio::task::JoinHandle<()>,
    alert_task: tokio::task::JoinHandle<()>,
    alert_stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    server_stop: CancellationToken,
}

impl Daemon {
    async fn start(
        config: Config,
        catalog: Arc<Catalog>,
        listener: TcpListener,
        diagnoses: Diagnoses,
        reloads: mpsc::Sender<ReloadRequest>,
    ) -> Result<Self, AppError> {
        let store =
            StoreHandle::open_keeping(&config.store.path, config.store.history_retention).await?;
        let loaded = store.load().await?;
        let probe_names = config
            .probes
            .iter()
            .map(|probe| probe.name.clone())
            .collect();
        let history = store
            .load_history(probe_names)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "could not read probe history; starting without it");
                BTreeMap::new()
            });
        tracing::info!(
            store = %config.store.path.display(),
            alerts = loaded.alerts.len(),
            silences = loaded.silences.len(),
            queued = loaded.depths.values().sum::<u64>(),
            "store opened"
        );

        // The alert task and what feeds it.
        let (evaluations_tx, from_catalog) = channel::channel(Evaluation::default());
        let evaluations = match diagnoses {
            Diagnoses::Catalog => from_catalog,
            Diagnoses::Feed(feed) => feed,
        };
        let (reports_tx, reports) = mpsc::channel(256);
        let wakes = wakes_for(&config, &BTreeMap::new());
        let stats = config
            .notifiers
            .iter()
            .map(|notifier| {
                let mut stats = NotifierStats::new(&notifier.name, notifier.kind().as_str());
                stats.outbox_depth = loaded.depths.get(&notifier.name).copied().unwrap_or(0);
                stats
            })
            .collect();
        let engine = Engine::restore(
            engine_settings(&config),
            loaded.alerts,
            Instant::now(),
            Timestamp::now(),
        );
        let (alert_task, alerts, alerts_view) = AlertTask::new(Wiring {
            engine,
            maintenance: config.maintenance.clone(),
            stored_silences: loaded.silences,
            store: store.clone(),
            evaluations,
            reports,
            wakes: wakes.clone(),
            stats,
        });

        let catalog_modes = catalog.modes().len();
        let alerts_dir = catalog.dir().map(std::path::Path::to_owned);
        let (state_task, results, state) = StateTask::new(&config, catalog);
        let state_task = state_task
            .with_alerts(evaluations_tx, alerts_view)
            .with_history(store.clone(), &history);
        let state_task = tokio::spawn(state_task.run());
        let alert_stop = CancellationToken::new();
        let alert_task = tokio::spawn(alert_task.run(alert_stop.clone()));

        let scheduler = Scheduler::start(&config.probes, config.scheduler.max_concurrent, results);
        let (api_token, token) = channel::channel(config.api.token.clone());
        let mut daemon = Self {
            alerts_dir,
            store,
            state: state.clone(),
            alerts: alerts.clone(),
            scheduler: Some(scheduler),
            scheduler_stopped: CancellationToken::new(),
            lanes: Workers::default(),
            wakes,
            heartbeats: Workers::default(),
            reports: reports_tx,
            api_token,
            reload: ReloadStatus::started(Timestamp::now()),
            state_task,
            alert_task,
            alert_stop,
            server: tokio::spawn(async {}),
            server_stop: CancellationToken::new(),
            config,
        };
        daemon.start_lanes();
        daemon.start_heartbeats();

        let runs_in_flight = daemon
            .config
            .scheduler
            .max_concurrent
            .min(daemon.config.probes.len());
        let share = crate::fd_limit::server_share(crate::fd_limit::current(), runs_in_flight);
        let limits = server::serve::Limits::new(&daemon.config.server, share);
        if limits.max_connections < daemon.config.server.max_connections {
            tracing::warn!(
                configured = daemon.config.server.max_connections,
                allowed = limits.max_connections,
                descriptors = crate::fd_limit::current(),
                "the descriptor limit leaves too few for [server] max_connections beside the \
                 probes; serving fewer connections"
            );
        }
        let app = AppState::new(state, alerts, token, reloads);
        let stats = app.server.clone();
        let router = server::router(app);
        // Only now, with the store locked and every task running, has it started.
        tracing::info!(
            listen = %listener.local_addr().map_or_else(|_| "?".to_owned(), |addr| addr.to_string()),
            probes = daemon.config.probes.len(),
            failure_modes = catalog_modes,
            config = %daemon.config.path.display(),
            descriptors = ?crate::fd_limit::current(),
            max_connections = limits.max_connections,
            "honeyguide started"
        );
        daemon.server = tokio::spawn(server::serve::serve(
            listener,
            router,
            limits,
            stats,
            daemon.server_stop.clone(),
        ));
        Ok(daemon)
    }

    /// Starts a delivery loop for every notifier with an outbox that has none running with
    /// its current definition.
    fn start_lanes(&mut self) {
        for notifier in &self.config.notifiers {
            let Some(wake) = self.wakes.get(&notifier.name) else {
                continue;
            };
            let fingerprint = lane_fingerprint(&self.config, notifier.fingerprint);
            if self.lanes.is_running(&notifier.name, fingerprint) {
                continue;
            }
            let lane = Lane {
                name: notifier.name.clone(),
                notifier: notifier.notifier.clone(),
                store: self.store.clone(),
                wake: wake.clone(),
                reports: self.reports.clone(),
                external_url: self.config.alerting.external_url.clone(),
                vantage: self.config.server.vantage.clone(),
                give_up_after: self.config.alerting.give_up_after,
                backoff: (BACKOFF_MIN, BACKOFF_MAX),
            };
            self.lanes.spawn(&notifier.name, fingerprint, |stop| {
                dispatch::run(lane, stop)
            });
        }
    }

    /// Starts every heartbeat that does not run with its current definition.
    fn start_heartbeats(&mut self) {
        for notifier in &self.config.notifiers {
            if !matches!(notifier.notifier.as_ref(), Notifier::Heartbeat(_))
                || self
                    .heartbeats
                    .is_running(&notifier.name, notifier.fingerprint)
            {
                continue;
            }
            let liveness = DaemonLiveness {
                state: self.state.clone(),
                scheduler_stopped: self.scheduler_stopped.clone(),
            };
            let (name, heartbeat, reports) = (
                notifier.name.clone(),
                notifier.notifier.clone(),
                self.reports.clone(),
            );
            self.heartbeats
                .spawn(&notifier.name, notifier.fingerprint, |stop| {
                    heartbeat::run(name, heartbeat, liveness, reports, stop)
                });
        }
    }

    /// Reloads the configuration; see [`reload`].
    async fn reload(&mut self, trigger: Trigger) -> ReloadOutcome {
        let attempted_at = Timestamp::now();
        let paths = (self.config.path.clone(), self.alerts_dir.clone());
        let loaded =
            tokio::task::spawn_blocking(move || reload::load(&paths.0, paths.1.as_deref()))
                .await
                .unwrap_or_else(|error| Err(format!("the reload failed: {error}")));
        let (mut config, catalog) = match loaded {
            Ok(loaded) => loaded,
            Err(errors) => {
                tracing::error!(
                    trigger = %trigger,
                    "configuration reload failed; the running configuration stays:\n{errors}"
                );
                self.reload.successful = false;
                self.reload.attempted_at = Some(attempted_at);
                self.reload.error = Some(errors.clone());
                self.state.record_reload(self.reload.clone()).await;
                return ReloadOutcome::Failed { errors };
            }
        };
        let not_applied = reload::fixed_at_start(&self.config, &config);
        for setting in &not_applied {
            tracing::warn!(trigger = %trigger, setting = %setting, "not applied: needs a restart");
        }
        // What cannot change stays as it started, so the next reload compares with what runs.
        config.server = self.config.server.clone();
        config.store = self.config.store.clone();
        let catalog = match catalog {
            Some(catalog) => Arc::new(catalog),
            None => Arc::new(Catalog::empty()),
        };
        self.apply(config, catalog).await;
        self.reload = ReloadStatus {
            successful: true,
            loaded_at: attempted_at,
            attempted_at: Some(attempted_at),
            error: None,
            not_applied: not_applied.clone(),
            reloads: self.reload.reloads + 1,
        };
        self.state.record_reload(self.reload.clone()).await;
        ReloadOutcome::Applied { not_applied }
    }

    /// Puts a validated configuration in force, part by part (see the module doc).
    async fn apply(&mut self, config: Config, catalog: Arc<Catalog>) {
        let modes = catalog.modes().len();
        let probes: Vec<ProbeDefinition> = config.probes.iter().map(ProbeDefinition::of).collect();
        self.state
            .reconfigure(Reconfiguration { probes, catalog })
            .await;
        let applied = match self.scheduler.as_mut() {
            Some(scheduler) => scheduler.apply(&config.probes, config.scheduler.max_concurrent),
            None => crate::scheduler::Applied::default(),
        };
        let old = std::mem::replace(&mut self.config, config);

        // Delivery loops of removed or changed notifiers stop first (a changed notifier's
        // old loop must not deliver beside its new one), then the alert task learns the new
        // notifiers, then the new loops start.
        for name in self.lanes.names() {
            let keep = self.config.notifiers.iter().any(|notifier| {
                notifier.name == name
                    && self.wakes.contains_key(&name)
                    && self
                        .lanes
                        .is_running(&name, lane_fingerprint(&self.config, notifier.fingerprint))
            });
            if !keep && !self.lanes.stop(&name, DELIVERY_DRAIN).await {
                tracing::warn!(notifier = %name, "a delivery was cut short by the reload; it is retried");
            }
        }
        for name in self.heartbeats.names() {
            let keep = self.config.notifiers.iter().any(|notifier| {
                notifier.name == name && self.heartbeats.is_running(&name, notifier.fingerprint)
            });
            if !keep {
                self.heartbeats.stop(&name, HEARTBEAT_DRAIN).await;
            }
        }
        self.wakes = wakes_for(&self.config, &self.wakes);
        let reconfigured = self
            .alerts
            .reconfigure(AlertReconfiguration {
                settings: engine_settings(&self.config),
                maintenance: self.config.maintenance.clone(),
                wakes: self.wakes.clone(),
                notifiers: self
                    .config
                    .notifiers
                    .iter()
                    .map(|notifier| (notifier.name.clone(), notifier.kind().as_str()))
                    .collect(),
            })
            .await;
        if let Err(error) = reconfigured {
            tracing::warn!(%error, "the alert task did not take the new settings");
        }
        self.start_lanes();
        self.start_heartbeats();
        self.api_token.send_replace(self.config.api.token.clone());
        tracing::info!(
            probes = self.config.probes.len(),
            kept = applied.kept.len(),
            restarted = applied.restarted.len(),
            started = applied.started.len(),
            stopped = applied.stopped.len(),
            failure_modes = modes,
            notifiers = self.config.notifiers.len(),
            previous_notifiers = old.notifiers.len(),
            "configuration reloaded"
        );
    }

    async fn shutdown(mut self) {
        let deadline = Instant::now() + SHUTDOWN_DEADLINE;
        let before_save = deadline.checked_sub(SAVE_RESERVE).unwrap_or(deadline);
        tracing::info!(
            bound = %humantime::format_duration(SHUTDOWN_DEADLINE),
            "shutting down: finishing probe runs in flight"
        );
        // A stopping honeyguide stops vouching for itself first.
        if !self
            .heartbeats
            .stop_all(HEARTBEAT_DRAIN.min(remaining(before_save)))
            .await
        {
            tracing::warn!("heartbeats still in flight at shutdown; abandoned");
        }
        self.server_stop.cancel();
        if let Some(scheduler) = self.scheduler.take() {
            let had_probes = !scheduler.is_empty();
            let drained =
                tokio::time::timeout(RUNS_DRAIN.min(remaining(before_save)), scheduler.shutdown())
                    .await;
            if drained.is_err() {
                tracing::warn!("probe runs still in flight at shutdown; their results are lost");
            }
            // With no probes there is nothing to schedule, and nothing is wrong.
            if had_probes {
                self.scheduler_stopped.cancel();
            }
        }
        if tokio::time::timeout(remaining(before_save), &mut self.server)
            .await
            .is_err()
        {
            tracing::warn!("the http server did not stop in time; its connections are dropped");
            self.server.abort();
        }
        if !self
            .lanes
            .stop_all(DELIVERY_DRAIN.min(remaining(before_save)))
            .await
        {
            tracing::warn!(
                "deliveries still in flight at shutdown; they will be retried after restart"
            );
        }
        drop(self.reports);
        self.alert_stop.cancel();
        match tokio::time::timeout(remaining(deadline), self.alert_task).await {
            Ok(Err(error)) => tracing::warn!(%error, "alert task ended abnormally"),
            Err(_) => tracing::warn!("the alert task did not save its state in time"),
            Ok(Ok(())) => {}
        }
        drop(self.state);
        drop(self.alerts);
        match tokio::time::timeout(remaining(deadline), self.state_task).await {
            Ok(Err(error)) => tracing::warn!(%error, "state task ended abnormally"),
            Err(_) => tracing::warn!("the state task did not stop in time"),
            Ok(Ok(())) => {}
        }
        // The store keeps up to a second of history in memory; with the state task gone nothing
        // more comes, so it is written now instead of going with the process.
        match tokio::time::timeout(remaining(deadline), self.store.flush()).await {
            Ok(Err(error)) => tracing::warn!(%error, "could not write the last probe history"),
            Err(_) => tracing::warn!("the store did not write the last probe history in time"),
            Ok(Ok(())) => {}
        }
    }
}

/// One wake-up per notifier with an outbox; a notifier that had one keeps it.
fn wakes_for(
    config: &Config,
    existing: &BTreeMap<String, Arc<Notify>>,
) -> BTreeMap<String, Arc<Notify>> {
    config
        .notifiers
        .iter()
        .filter(|notifier| notifier.notifier.takes_alerts())
        .map(|notifier| {
            let wake = existing
                .get(&notifier.name)
                .cloned()
                .unwrap_or_else(|| Arc::new(Notify::new()));
            (notifier.name.clone(), wake)
        })
        .collect()
}

/// A delivery loop's identity: its notifier, and the `[alerting]` keys every loop reads.
fn lane_fingerprint(config: &Config, notifier: u64) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    notifier.hash(&mut hasher);
    config
        .alerting
        .external_url
        .as_ref()
        .map(url::Url::as_str)
        .hash(&mut hasher);
    config.alerting.give_up_after.hash(&mut hasher);
    hasher.finish()
}

/// Whether this daemon is healthy enough for its heartbeats to vouch for it: the scheduler
/// still runs, and the state task answers and keeps getting results.
#[derive(Clone, Debug)]
struct DaemonLiveness {
    state: StateHandle,
    /// Cancelled when the scheduler has stopped.
    scheduler_stopped: CancellationToken,
}

impl heartbeat::Liveness for DaemonLiveness {
    async fn check(&self) -> Result<(), String> {
        if self.scheduler_stopped.is_cancelled() {
            return Err("the scheduler has stopped".to_owned());
        }
        self.state.liveness().await
    }
}

/// Time left until `deadline` (zero once it passed).
fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// The engine's timing and routing, from `[alerting]` and `[[notifier]]`.
pub fn engine_settings(config: &Config) -> Settings {
    Settings {
        group_wait: config.alerting.group_wait,
        group_interval: config.alerting.group_interval,
        repeat_interval: config.alerting.repeat_interval,
        keep_resolved: config.alerting.keep_resolved,
        targets: config
            .notifiers
            .iter()
            .filter(|notifier| notifier.notifier.takes_alerts())
            .map(|notifier| Target {
                notifier: notifier.name.clone(),
                route: notifier.route.clone(),
                send_resolved: notifier.send_resolved,
                refresh: match notifier.notifier.as_ref() {
                    Notifier::Alertmanager(alertmanager) => Some(alertmanager.resend_interval()),
                    _ => None,
                },
            })
            .collect(),
    }
}
