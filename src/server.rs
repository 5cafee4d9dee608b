//! honeyguide's own HTTP endpoints: `/metrics`, `/status`, `/` and `/healthz`, and the
//! token-protected runtime API under `/api/` (silences; see [`api`]).
//!
//! Handlers own no state: each asks the state task for the current snapshot and renders it. A
//! reader can therefore never block the state task for longer than it takes to clone a snapshot,
//! and rendering (the expensive part at 10,000 probes) happens on the reader's own task.

pub mod api;
pub mod page;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get};

use crate::alert::AlertHandle;
use crate::config::Secret;
use crate::metrics;
use crate::state::{Snapshot, StateHandle};

/// How long `/healthz` waits for the state task before declaring honeyguide unhealthy.
const HEALTH_DEADLINE: Duration = Duration::from_secs(2);

/// What handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Asks the state task for snapshots.
    pub state: StateHandle,
    /// Asks the alert task to create and expire silences.
    pub alerts: AlertHandle,
    /// The API's bearer token; `None` turns `/api/` off.
    pub api_token: Option<Secret>,
}

/// The router, unbound: `app::run` serves it, tests can too.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page_handler))
        .route("/status", get(status_handler))
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(health_handler))
        .route(
            "/api/silences",
            get(api::list_silences).post(api::create_silence),
        )
        .route("/api/silences/{id}", delete(api::expire_silence))
        .with_state(state)
}

async fn snapshot(state: &AppState) -> Result<Arc<Snapshot>, Response> {
    state.state.snapshot().await.ok_or_else(|| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "honeyguide is shutting down\n",
        )
            .into_response()
    })
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    match snapshot(&state).await {
        Ok(snapshot) => (
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            metrics::render(&snapshot),
        )
            .into_response(),
        Err(response) => response,
    }
}

async fn status_handler(State(state): State<AppState>) -> Response {
    match snapshot(&state).await {
        Ok(snapshot) => axum::Json(status::Status::from_snapshot(&snapshot)).into_response(),
        Err(response) => response,
    }
}

/// The page, with a policy that lets only its own inline style and script run, and never cached:
/// an old copy of a status page is worse than none.
async fn page_handler(State(state): State<AppState>) -> Response {
    match snapshot(&state).await {
        Ok(snapshot) => (
            [
                (
                    header::CONTENT_SECURITY_POLICY,
                    page::content_security_policy(),
                ),
                (header::CACHE_CONTROL, "no-store".to_owned()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                (header::REFERRER_POLICY, "no-referrer".to_owned()),
            ],
            Html(page::render(&status::Status::from_snapshot(&snapshot))),
        )
            .into_response(),
        Err(response) => response,
    }
}

/// Healthy when the state task answers promptly: a stuck or dead state task means honeyguide
/// is no longer processing results, which is exactly what a liveness probe should catch.
async fn health_handler(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(HEALTH_DEADLINE, state.state.snapshot()).await {
        Ok(Some(_)) => (StatusCode::OK, "ok\n").into_response(),
        Ok(None) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "state task not answering\n",
        )
            .into_response(),
    }
}
