//! Wiring and lifecycle: opens the store, starts the state task, the alert task, one delivery
//! loop per notifier, the heartbeats, the scheduler and the HTTP server for a validated
//! [`Config`], and stops them in order.
//!
//! [`run`] takes the listener and the shutdown signal as arguments instead of creating them, so
//! tests run a whole daemon on `127.0.0.1:0` and stop it when they like. [`run_with`] also says
//! where the alert engine's diagnoses come from ([`Diagnoses`]): the catalog, or a feed the
//! caller controls.
//!
//! Shutdown order, all of it within [`SHUTDOWN_DEADLINE`] (under Kubernetes' default 30 s grace
//! period, so the last steps run before a SIGKILL): stop the heartbeats (a stopping honeyguide
//! no longer vouches for itself); stop scheduling new runs and let runs in flight finish and
//! report (for at most [`RUNS_DRAIN`]) while the server closes idle connections and lets
//! requests in flight finish ([`server::serve::DRAIN`]); let deliveries in flight finish (for at
//! most [`DELIVERY_DRAIN`]) so they are recorded and not repeated after restart; save the alert
//! state; then the state task and the store stop. Whatever has not finished by its bound is
//! abandoned with a warning: a run is lost, a delivery is retried after the next start.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::alert::task::Wiring;
use crate::alert::{AlertTask, Engine, Evaluation, NotifierStats, Settings, Target};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::notify::dispatch::{self, BACKOFF_MAX, BACKOFF_MIN, Lane};
use crate::notify::{Notifier, heartbeat};
use crate::scheduler;
use crate::server::{self, AppState};
use crate::state::{StateHandle, StateTask};
use crate::store::{StoreError, StoreHandle};

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
    Feed(watch::Receiver<Evaluation>),
}

/// Runs the daemon until `shutdown` completes, diagnosing the failure modes of `catalog`
/// (validated against `config`'s probes).
pub async fn run(
    config: Config,
    catalog: Arc<Catalog>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    run_with(config, catalog, listener, shutdown, Diagnoses::Catalog).await
}

/// Runs the daemon until `shutdown` completes, alerting on `diagnoses`.
pub async fn run_with(
    config: Config,
    catalog: Arc<Catalog>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    diagnoses: Diagnoses,
) -> Result<(), AppError> {
    let store = StoreHandle::open(&config.store.path).await?;
    let loaded = store.load().await?;
    let history = store.load_history().await.unwrap_or_else(|error| {
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
    let (evaluations_tx, from_catalog) = watch::channel(Evaluation::default());
    let evaluations = match diagnoses {
        Diagnoses::Catalog => from_catalog,
        Diagnoses::Feed(feed) => feed,
    };
    let (reports_tx, reports) = mpsc::channel(256);
    let wakes: BTreeMap<String, Arc<Notify>> = config
        .notifiers
        .iter()
        .filter(|notifier| notifier.notifier.takes_alerts())
        .map(|notifier| (notifier.name.clone(), Arc::new(Notify::new())))
        .collect();
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
    let (state_task, results, state) = StateTask::new(&config, catalog);
    let state_task = state_task
        .with_alerts(evaluations_tx, alerts_view)
        .with_history(store.clone(), &history);
    let state_task = tokio::spawn(state_task.run());
    let alert_stop = CancellationToken::new();
    let alert_task = tokio::spawn(alert_task.run(alert_stop.clone()));

    // Delivery: one loop per notifier, independent of each other.
    let delivery_stop = CancellationToken::new();
    let mut deliveries = JoinSet::new();
    for notifier in &config.notifiers {
        let Some(wake) = wakes.get(&notifier.name) else {
            continue;
        };
        let lane = Lane {
            name: notifier.name.clone(),
            notifier: notifier.notifier.clone(),
            store: store.clone(),
            wake: wake.clone(),
            reports: reports_tx.clone(),
            external_url: config.alerting.external_url.clone(),
            give_up_after: config.alerting.give_up_after,
            backoff: (BACKOFF_MIN, BACKOFF_MAX),
        };
        deliveries.spawn(dispatch::run(lane, delivery_stop.clone()));
    }

    // The scheduler, and a token the heartbeats read to know it still runs.
    let stop = CancellationToken::new();
    let scheduler_stopped = CancellationToken::new();
    let scheduler = {
        let stop = stop.clone();
        let stopped = scheduler_stopped.clone();
        let probes = config.probes.clone();
        let max_concurrent = config.scheduler.max_concurrent;
        tokio::spawn(async move {
            scheduler::run(&probes, max_concurrent, results, stop).await;
            // With no probes there is nothing to schedule, and nothing is wrong.
            if !probes.is_empty() {
                stopped.cancel();
            }
        })
    };

    let heartbeat_stop = CancellationToken::new();
    let mut heartbeats = JoinSet::new();
    for notifier in &config.notifiers {
        if matches!(notifier.notifier.as_ref(), Notifier::Heartbeat(_)) {
            heartbeats.spawn(heartbeat::run(
                notifier.name.clone(),
                notifier.notifier.clone(),
                DaemonLiveness {
                    state: state.clone(),
                    scheduler_stopped: scheduler_stopped.clone(),
                },
                reports_tx.clone(),
                heartbeat_stop.clone(),
            ));
        }
    }
    drop(reports_tx);

    let server_stop = CancellationToken::new();
    let server = {
        let runs_in_flight = config.scheduler.max_concurrent.min(config.probes.len());
        let share = crate::fd_limit::server_share(crate::fd_limit::current(), runs_in_flight);
        let limits = server::serve::Limits::new(&config.server, share);
        if limits.max_connections < config.server.max_connections {
            tracing::warn!(
                configured = config.server.max_connections,
                allowed = limits.max_connections,
                descriptors = crate::fd_limit::current(),
                "the descriptor limit leaves too few for [server] max_connections beside the \
                 probes; serving fewer connections"
            );
        }
        let app = AppState::new(state, alerts, config.api.token.clone());
        let stats = app.server.clone();
        let router = server::router(app);
        // Only now, with the store locked and every task running, has it started.
        tracing::info!(
            listen = %listener.local_addr().map_or_else(|_| "?".to_owned(), |addr| addr.to_string()),
            probes = config.probes.len(),
            failure_modes = catalog_modes,
            config = %config.path.display(),
            descriptors = ?crate::fd_limit::current(),
            max_connections = limits.max_connections,
            "honeyguide started"
        );
        tokio::spawn(server::serve::serve(
            listener,
            router,
            limits,
            stats,
            server_stop.clone(),
        ))
    };

    shutdown.await;
    let deadline = Instant::now() + SHUTDOWN_DEADLINE;
    let before_save = deadline.checked_sub(SAVE_RESERVE).unwrap_or(deadline);
    tracing::info!(
        bound = %humantime::format_duration(SHUTDOWN_DEADLINE),
        "shutting down: finishing probe runs in flight"
    );
    // A stopping honeyguide stops vouching for itself first.
    heartbeat_stop.cancel();
    if !drain(&mut heartbeats, HEARTBEAT_DRAIN.min(remaining(before_save))).await {
        tracing::warn!("heartbeats still in flight at shutdown; abandoned");
    }
    stop.cancel();
    server_stop.cancel();
    let mut scheduler = scheduler;
    if tokio::time::timeout(RUNS_DRAIN.min(remaining(before_save)), &mut scheduler)
        .await
        .is_err()
    {
        tracing::warn!("probe runs still in flight at shutdown; their results are lost");
        scheduler.abort();
    }
    let mut server = server;
    if tokio::time::timeout(remaining(before_save), &mut server)
        .await
        .is_err()
    {
        tracing::warn!("the http server did not stop in time; its connections are dropped");
        server.abort();
    }
    delivery_stop.cancel();
    if !drain(&mut deliveries, DELIVERY_DRAIN.min(remaining(before_save))).await {
        tracing::warn!(
            "deliveries still in flight at shutdown; they will be retried after restart"
        );
    }
    alert_stop.cancel();
    match tokio::time::timeout(remaining(deadline), alert_task).await {
        Ok(Err(error)) => tracing::warn!(%error, "alert task ended abnormally"),
        Err(_) => tracing::warn!("the alert task did not save its state in time"),
        Ok(Ok(())) => {}
    }
    match tokio::time::timeout(remaining(deadline), state_task).await {
        Ok(Err(error)) => tracing::warn!(%error, "state task ended abnormally"),
        Err(_) => tracing::warn!("the state task did not stop in time"),
        Ok(Ok(())) => {}
    }
    Ok(())
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

/// Waits up to `bound` for every task of `tasks`; aborts the rest and returns false on timeout.
async fn drain(tasks: &mut JoinSet<()>, bound: Duration) -> bool {
    let finished =
        tokio::time::timeout(bound, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_ok();
    if !finished {
        tasks.abort_all();
    }
    finished
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
