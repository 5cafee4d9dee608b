//! Wiring and lifecycle: starts the state task, the scheduler and the HTTP server for a validated
//! [`Config`], and stops them in order.
//!
//! [`run`] takes the listener and the shutdown signal as arguments instead of creating them, so
//! tests run a whole daemon on `127.0.0.1:0` and stop it when they like.
//!
//! Shutdown order: stop scheduling new runs; let runs in flight finish (each is bounded by its
//! timeout) and report; then stop the state task and the server.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::scheduler;
use crate::server::{self, AppState};
use crate::state::StateTask;

/// Something went wrong running the daemon itself (not a probe: those are results).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Serve(#[source] std::io::Error),
}

/// Runs the daemon until `shutdown` completes, diagnosing the failure modes of `catalog`
/// (validated against `config`'s probes).
pub async fn run(
    config: Config,
    catalog: Arc<Catalog>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let (state_task, results, state) = StateTask::new(&config, catalog);
    let state_task = tokio::spawn(state_task.run());

    let stop = CancellationToken::new();
    let scheduler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            scheduler::run(
                &config.probes,
                config.scheduler.max_concurrent,
                results,
                stop,
            )
            .await;
        })
    };

    let server_stop = CancellationToken::new();
    let server = {
        let router = server::router(AppState { state });
        let server_stop = server_stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(server_stop.cancelled_owned())
                .await
        })
    };

    shutdown.await;
    tracing::info!("shutting down: finishing probe runs in flight");
    stop.cancel();
    if let Err(error) = scheduler.await {
        tracing::warn!(%error, "scheduler ended abnormally");
    }
    server_stop.cancel();
    let served = server.await;
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
