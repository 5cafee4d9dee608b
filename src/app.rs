//! Wiring and lifecycle: opens the store, starts the state task, the alert task, one delivery
//! loop per notifier, the heartbeats, the scheduler and the HTTP server for a validated
//! [`Config`], and stops them in order.
//!
//! [`run`] takes the listener and the shutdown signal as arguments instead of creating them, so
//! tests run a whole daemon on `127.0.0.1:0` and stop it when they like. [`run_with`] also says
//! where the alert engine's diagnoses come from ([`Diagnoses`]): the catalog, or a feed the
//! caller controls.
//!
//! Shutdown order: stop the heartbeats; stop scheduling new runs; let runs in flight finish
//! (each is bounded by its timeout) and report; stop the server; let deliveries in flight finish (for
//! at most [`DELIVERY_DRAIN`]) so they are recorded and not repeated after restart; save the
//! alert state; then the state task and the store stop.

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
use crate::state::StateTask;
use crate::store::{StoreError, StoreHandle};

/// How long shutdown waits for deliveries in flight before abandoning them (they are then
/// retried, with the same id, after the next start).
pub const DELIVERY_DRAIN: Duration = Duration::from_secs(10);

/// Something went wrong running the daemon itself (not a probe: those are results).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Serve(#[source] std::io::Error),
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
                heartbeat::Liveness {
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
        let router = server::router(AppState {
            state,
            alerts,
            api_token: config.api.token.clone(),
        });
        let server_stop = server_stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(server_stop.cancelled_owned())
                .await
        })
    };

    shutdown.await;
    tracing::info!("shutting down: finishing probe runs in flight");
    // A stopping honeyguide stops vouching for itself first.
    heartbeat_stop.cancel();
    while heartbeats.join_next().await.is_some() {}
    stop.cancel();
    if let Err(error) = scheduler.await {
        tracing::warn!(%error, "scheduler ended abnormally");
    }
    server_stop.cancel();
    let served = server.await;
    delivery_stop.cancel();
    if tokio::time::timeout(DELIVERY_DRAIN, async {
        while deliveries.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            "deliveries still in flight at shutdown; they will be retried after restart"
        );
        deliveries.abort_all();
    }
    alert_stop.cancel();
    if let Err(error) = alert_task.await {
        tracing::warn!(%error, "alert task ended abnormally");
    }
    if let Err(error) = state_task.await {
        tracing::warn!(%error, "state task ended abnormally");
    }
    match served {
        Ok(result) => result.map_err(AppError::Serve),
        Err(error) => {
            tracing::warn!(%error, "http server task ended abnormally");
            Ok(())
        }
    }
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
