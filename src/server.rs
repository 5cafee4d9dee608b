//! honeyguide's own HTTP endpoints: `/metrics`, `/status`, `/` and `/healthz`, and the
//! token-protected runtime API under `/api/` (silences; see [`api`]).
//!
//! Handlers own no state: each asks the state task for the current snapshot and renders it. A
//! reader can therefore never block the state task for longer than it takes to clone a snapshot,
//! and rendering (the expensive part at 10,000 probes) happens on a reader's task, once for all
//! the readers waiting at that moment ([`cache`]). [`serve`] is the connection loop that keeps
//! clients within bounds.

pub mod api;
pub mod cache;
pub mod page;
pub mod serve;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tokio::time::Instant;

use crate::alert::AlertHandle;
use crate::metrics;
use crate::spec::Secret;
use crate::state::{Snapshot, StateHandle};

use self::cache::Rendered;
use self::serve::ServerStats;

/// How long `/healthz` waits for the state task before declaring honeyguide unhealthy.
const HEALTH_DEADLINE: Duration = Duration::from_secs(2);

/// What handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Asks the state task for snapshots.
    pub state: StateHandle,
    /// Asks the alert task to create and expire silences.
    pub alerts: AlertHandle,
    /// The API's bearer token as the configuration in force has it; `None` turns `/api/` off.
    pub api_token: tokio::sync::watch::Receiver<Option<Secret>>,
    /// Where `POST /-/reload` asks for a reload.
    pub reloads: tokio::sync::mpsc::Sender<crate::control::ReloadRequest>,
    /// The documents as last rendered, shared by concurrent readers.
    pub rendered: Arc<Documents>,
    /// The connection loop's counters, for `/metrics`.
    pub server: Arc<ServerStats>,
}

impl AppState {
    /// Handlers' state for these handles, with nothing rendered yet.
    pub fn new(
        state: StateHandle,
        alerts: AlertHandle,
        api_token: tokio::sync::watch::Receiver<Option<Secret>>,
        reloads: tokio::sync::mpsc::Sender<crate::control::ReloadRequest>,
    ) -> Self {
        Self {
            state,
            alerts,
            api_token,
            reloads,
            rendered: Arc::default(),
            server: Arc::default(),
        }
    }
}

/// One shared rendering per document.
#[derive(Debug, Default)]
pub struct Documents {
    status: Rendered,
    page: Rendered,
    metrics: Rendered,
}

/// The largest request body the API reads (a silence is a few hundred bytes; its comment is
/// bounded well below this).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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
        .route("/-/reload", post(api::reload))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn shutting_down() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "honeyguide is shutting down\n",
    )
        .into_response()
}

/// The rendering of `document` for a reader that arrived at `arrived`, shared with every reader
/// waiting at the same time.
async fn rendered(
    state: &AppState,
    document: &Rendered,
    arrived: Instant,
    render: impl FnOnce(&Snapshot) -> Vec<u8>,
) -> Option<bytes::Bytes> {
    document
        .get(arrived, async || state.state.snapshot().await, render)
        .await
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    let arrived = Instant::now();
    let Some(exposition) = rendered(&state, &state.rendered.metrics, arrived, |snapshot| {
        metrics::render(snapshot).into_bytes()
    })
    .await
    else {
        return shutting_down();
    };
    // The server's own counters change with every connection, so they are not part of the
    // shared rendering: a few hundred bytes, written per scrape.
    let mut server = String::new();
    state.server.render(&mut server);
    let body = Body::from_stream(futures_util::stream::iter([
        Ok::<_, std::convert::Infallible>(exposition),
        Ok(bytes::Bytes::from(server)),
    ]));
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response()
}

async fn status_handler(State(state): State<AppState>) -> Response {
    let arrived = Instant::now();
    let rendered = rendered(&state, &state.rendered.status, arrived, |snapshot| {
        // The view types are plain structs with string keys: serializing them cannot fail.
        serde_json::to_vec(&status::Status::from_snapshot(snapshot)).unwrap_or_default()
    })
    .await;
    match rendered {
        Some(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        None => shutting_down(),
    }
}

/// The page, with a policy that lets only its own inline style and script run, and never cached:
/// an old copy of a status page is worse than none.
async fn page_handler(State(state): State<AppState>) -> Response {
    let arrived = Instant::now();
    let rendered = rendered(&state, &state.rendered.page, arrived, |snapshot| {
        page::render(&status::Status::from_snapshot(snapshot)).into_bytes()
    })
    .await;
    let Some(html) = rendered else {
        return shutting_down();
    };
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                page::content_security_policy(),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
        ],
        html,
    )
        .into_response()
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
