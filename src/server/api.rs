//! The runtime API: `GET /api/silences`, `POST /api/silences`, `DELETE /api/silences/{id}`.
//!
//! Every request needs `Authorization: Bearer <token>` with the token of `[api]` in
//! `probes.toml`. Without a configured token the API is off and answers 404, so an instance
//! nobody secured exposes nothing. Tokens are compared in constant time over their SHA-256
//! digests, so neither the content nor the length of the token leaks through timing.
//!
//! Errors are JSON `{"error": "..."}` with a message a person can act on.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::status::SilenceStatus;
use crate::alert::route::Glob;
use crate::alert::silence::{
    ExpireError, MAX_COMMENT_CHARS, MAX_CREATED_BY_CHARS, MAX_MATCHERS, MAX_PATTERN_CHARS, Matchers,
};
use crate::alert::task::{NewSilence, SilenceError};
use crate::spec::Secret;

/// The body of `POST /api/silences`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceRequest {
    /// Alert id patterns (`"worker-*"`, `"neon-down"`).
    #[serde(default)]
    alerts: Vec<String>,
    /// Label patterns (`{"layer": "origin"}`).
    #[serde(default)]
    matchers: BTreeMap<String, String>,
    /// RFC 3339; default now.
    starts_at: Option<String>,
    /// RFC 3339; or `duration`.
    ends_at: Option<String>,
    /// `"2h"`, `"30m"`; or `ends_at`.
    duration: Option<String>,
    /// Why (required).
    comment: String,
    /// Who (required).
    created_by: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// Checks the bearer token; `Some` is the response to send instead of serving the request.
fn reject(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = state.api_token.borrow().clone() else {
        return Some(error(
            StatusCode::NOT_FOUND,
            "the API is off: set `[api] token` (or `token_file`) in probes.toml to turn it on",
        ));
    };
    (!bearer_matches(&expected, headers)).then(unauthorized)
}

/// Whether the request carries `expected` as its bearer token (compared in constant time over
/// the digests).
pub(super) fn bearer_matches(expected: &Secret, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    given.is_some_and(|given| {
        let given = Sha256::digest(given.as_bytes());
        let expected = Sha256::digest(expected.expose().as_bytes());
        bool::from(given.ct_eq(&expected))
    })
}

/// 401 with the challenge.
pub(super) fn unauthorized() -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong token: send `Authorization: Bearer <token>`",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"honeyguide\""),
    );
    response
}

/// `POST /-/reload`: reloads `probes.toml` and the rules, answering 200 once the new
/// configuration is in force (with the settings that need a restart) or 500 with every
/// problem while the running configuration stays. With an `[api] token` it needs the token;
/// without one, it is accepted only from loopback.
pub async fn reload(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let token = state.api_token.borrow().clone();
    match token {
        Some(expected) if !bearer_matches(&expected, &headers) => return unauthorized(),
        None if !peer.ip().is_loopback() => {
            return error(
                StatusCode::FORBIDDEN,
                "without an `[api] token`, /-/reload is accepted only from loopback",
            );
        }
        _ => {}
    }
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let request = crate::control::ReloadRequest {
        trigger: crate::control::Trigger::Api,
        reply: Some(reply),
    };
    if state.reloads.send(request).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "honeyguide is shutting down",
        );
    }
    match outcome.await {
        Ok(crate::control::ReloadOutcome::Applied { not_applied }) => {
            axum::Json(serde_json::json!({
                "status": "reloaded",
                "not_applied": not_applied,
            }))
            .into_response()
        }
        Ok(crate::control::ReloadOutcome::Failed { errors }) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the new configuration has problems; the running one stays:\n{errors}"),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "honeyguide is shutting down",
        ),
    }
}

/// `GET /api/silences`: every silence, maintenance windows first.
pub async fn list_silences(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(response) = reject(&state, &headers) {
        return response;
    }
    match state.alerts.silences().await {
        Ok(silences) => axum::Json(
            silences
                .iter()
                .map(|(silence, phase)| SilenceStatus::new(silence, *phase))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(failure) => silence_error(&failure),
    }
}

/// `POST /api/silences`: creates a silence; answers 201 with it (including its id).
pub async fn create_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = reject(&state, &headers) {
        return response;
    }
    let request: SilenceRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(failure) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not a valid silence: {failure}"),
            );
        }
    };
    let silence = match validate(request, Timestamp::now()) {
        Ok(silence) => silence,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match state.alerts.add_silence(silence).await {
        Ok(created) => {
            let phase = created.phase(Timestamp::now());
            (
                StatusCode::CREATED,
                axum::Json(SilenceStatus::new(&created, phase)),
            )
                .into_response()
        }
        Err(failure) => silence_error(&failure),
    }
}

/// `DELETE /api/silences/{id}`: expires an API silence now (it stays listed as expired).
pub async fn expire_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(response) = reject(&state, &headers) {
        return response;
    }
    match state.alerts.expire_silence(&id).await {
        Ok(expired) => {
            let phase = expired.phase(Timestamp::now());
            axum::Json(SilenceStatus::new(&expired, phase)).into_response()
        }
        Err(failure) => silence_error(&failure),
    }
}

fn silence_error(failure: &SilenceError) -> Response {
    let status = match failure {
        SilenceError::Expire(ExpireError::NotFound) => StatusCode::NOT_FOUND,
        SilenceError::Expire(ExpireError::FromConfig | ExpireError::AlreadyExpired) => {
            StatusCode::CONFLICT
        }
        SilenceError::Full(_) => StatusCode::BAD_REQUEST,
        SilenceError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        SilenceError::Closed => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, failure.to_string())
}

/// Every stored silence is held in memory and rendered into `/status` and the page, so its
/// parts are bounded; the message names the limit.
fn check_bounds(request: &SilenceRequest) -> Result<(), String> {
    let too_long = |key: &str, text: &str, max: usize| {
        (text.chars().count() > max)
            .then(|| format!("`{key}` is longer than {max} characters (the limit)"))
    };
    let matchers = request.alerts.len() + request.matchers.len();
    if matchers > MAX_MATCHERS {
        return Err(format!(
            "{matchers} alert patterns and matchers: at most {MAX_MATCHERS} (the limit)"
        ));
    }
    let patterns = request
        .alerts
        .iter()
        .map(|pattern| ("alerts", pattern.as_str()))
        .chain(request.matchers.iter().flat_map(|(name, pattern)| {
            [("matchers", name.as_str()), ("matchers", pattern.as_str())]
        }));
    let problem = too_long("comment", &request.comment, MAX_COMMENT_CHARS)
        .or_else(|| too_long("created_by", &request.created_by, MAX_CREATED_BY_CHARS))
        .or_else(|| {
            patterns
                .into_iter()
                .find_map(|(key, text)| too_long(key, text, MAX_PATTERN_CHARS))
        });
    problem.map_or(Ok(()), Err)
}

/// Turns a request into a silence, or says what is wrong with it.
fn validate(request: SilenceRequest, now: Timestamp) -> Result<NewSilence, String> {
    if request.comment.trim().is_empty() {
        return Err("`comment` must say why (it is shown next to every alert it holds)".into());
    }
    if request.created_by.trim().is_empty() {
        return Err("`created_by` must say who is silencing".into());
    }
    check_bounds(&request)?;
    if request.alerts.is_empty() && request.matchers.is_empty() {
        return Err(
            "say which alerts to silence: `alerts` (id patterns) and/or `matchers` (labels); \
             use `\"alerts\": [\"*\"]` for all"
                .into(),
        );
    }
    let parse = |key: &str, text: &str| {
        text.parse::<Timestamp>().map_err(|failure| {
            format!(
                "`{key}`: `{text}` is not an RFC 3339 time like \"2026-07-02T18:30:00Z\": {failure}"
            )
        })
    };
    let starts_at = match &request.starts_at {
        Some(text) => parse("starts_at", text)?,
        None => now,
    };
    let ends_at = match (&request.ends_at, &request.duration) {
        (Some(text), None) => parse("ends_at", text)?,
        (None, Some(text)) => {
            let duration = crate::spec::duration::parse(text)
                .map_err(|failure| format!("`duration`: {failure}"))?;
            if duration.is_zero() {
                return Err("`duration` must be longer than zero".into());
            }
            starts_at
                .checked_add(duration)
                .map_err(|failure| format!("`duration`: {failure}"))?
        }
        (Some(_), Some(_)) => return Err("set `ends_at` or `duration`, not both".into()),
        (None, None) => return Err("set `ends_at` (RFC 3339) or `duration` (e.g. \"2h\")".into()),
    };
    if ends_at <= starts_at {
        return Err("`ends_at` must be after `starts_at`".into());
    }
    if ends_at <= now {
        return Err("`ends_at` is in the past".into());
    }
    Ok(NewSilence {
        matchers: Matchers {
            alerts: request.alerts.into_iter().map(Glob::new).collect(),
            labels: request
                .matchers
                .into_iter()
                .map(|(name, pattern)| (name, Glob::new(pattern)))
                .collect(),
        },
        starts_at,
        ends_at,
        comment: request.comment,
        created_by: request.created_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> Result<NewSilence, String> {
        let request: SilenceRequest = serde_json::from_value(json).map_err(|e| e.to_string())?;
        validate(request, "2026-07-01T10:00:00Z".parse().unwrap())
    }

    #[test]
    fn a_duration_silence_starts_now() {
        let silence = request(serde_json::json!({
            "alerts": ["origin-*"], "duration": "2h", "comment": "drain node 2", "created_by": "ana"
        }))
        .unwrap();
        assert_eq!(silence.starts_at, "2026-07-01T10:00:00Z".parse().unwrap());
        assert_eq!(silence.ends_at, "2026-07-01T12:00:00Z".parse().unwrap());
        assert!(
            silence
                .matchers
                .matches("origin-node-down", &BTreeMap::new())
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let base = serde_json::json!({"alerts": ["x"], "duration": "1h", "comment": "c", "created_by": "me"});
        let with = |key: &str, value: serde_json::Value| {
            let mut body = base.clone();
            body[key] = value;
            request(body).unwrap_err()
        };
        assert!(with("comment", "".into()).contains("`comment` must say why"));
        assert!(with("alerts", serde_json::json!([])).contains("say which alerts"));
        assert!(with("ends_at", "2026-07-01T11:00:00Z".into()).contains("not both"));
        assert!(with("duration", "soon".into()).contains("invalid duration `soon`"));
        let mut past = base.clone();
        past.as_object_mut().unwrap().remove("duration");
        past["ends_at"] = "2026-07-01T09:00:00Z".into();
        assert!(request(past).unwrap_err().contains("after `starts_at`"));
        assert!(with("nonsense", 1.into()).contains("unknown field `nonsense`"));
    }

    /// What one silence may hold is bounded, and the message names the limit.
    #[test]
    fn oversized_silences_are_refused_naming_the_limit() {
        let base = serde_json::json!({"alerts": ["x"], "duration": "1h", "comment": "c", "created_by": "me"});
        let with = |key: &str, value: serde_json::Value| {
            let mut body = base.clone();
            body[key] = value;
            request(body).unwrap_err()
        };
        let long = |n: usize| serde_json::Value::from("é".repeat(n));
        assert_eq!(
            with("comment", long(MAX_COMMENT_CHARS + 1)),
            "`comment` is longer than 2000 characters (the limit)"
        );
        assert!(
            request({
                let mut body = base.clone();
                body["comment"] = long(MAX_COMMENT_CHARS);
                body
            })
            .is_ok()
        );
        assert!(with("created_by", long(201)).contains("200 characters (the limit)"));
        let many: Vec<String> = (0..=MAX_MATCHERS).map(|i| format!("a{i}")).collect();
        assert_eq!(
            with("alerts", many.into()),
            "33 alert patterns and matchers: at most 32 (the limit)"
        );
        assert!(
            with("matchers", serde_json::json!({"layer": "x".repeat(257)}))
                .contains("`matchers` is longer than 256 characters")
        );
    }
}
