//! Typical probe results, one per kind, for checking rules at load time.
//!
//! CEL here is dynamically typed: `probes["redis"].observations.memory_ratio > "0.9"` parses
//! fine and only fails when evaluated. So every rule is evaluated once at load against probes
//! that have a plausible result with every documented observation set to a typical, non-null
//! value, and a type error (no such overload, unknown function, wrong argument) is reported as
//! a load error with its position. The values follow the observation table the probe kinds
//! implement; a key a kind adds later is simply absent here, which the check tolerates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;

use crate::probe::{ErrorClass, Kind, Observations, ProbeResult, Value};
use crate::view::ProbeView;

/// A probe named `name` of `kind` that failed once and then succeeded with typical observations.
pub(crate) fn view(name: &str, kind: Kind) -> Arc<ProbeView> {
    let mut view = ProbeView::new(
        name,
        kind,
        String::new(),
        BTreeMap::new(),
        Duration::from_secs(30),
        Duration::from_secs(10),
    );
    let at = Instant::now();
    let wall = Timestamp::UNIX_EPOCH;
    view.record(
        ProbeResult {
            ok: false,
            error: Some(ErrorClass::Timeout),
            message: "timed out after 10s during connect".to_owned(),
            observations: observations(kind),
            duration: Duration::from_secs(10),
            phases: Vec::new(),
        },
        at,
        wall,
    );
    view.record(
        ProbeResult {
            ok: true,
            error: None,
            message: "ok".to_owned(),
            observations: observations(kind),
            duration: Duration::from_millis(120),
            phases: Vec::new(),
        },
        at,
        wall,
    );
    Arc::new(view)
}

/// Typical observations of a healthy run of `kind`.
pub(crate) fn observations(kind: Kind) -> Observations {
    let pairs: Vec<(&str, Value)> = match kind {
        Kind::Http => vec![
            ("status", 200.into()),
            ("http_version", "HTTP/2.0".into()),
            ("server", "cloudflare".into()),
            ("cf_ray", "8f1c2d3e4f5a6b7c-FRA".into()),
            ("cdn_colo", "FRA".into()),
            ("cdn_error", false.into()),
            ("cdn_error_code", 0.into()),
            ("remote_addr", "104.16.1.1:443".into()),
            ("resolved_ips", vec!["104.16.1.1"].into()),
            ("tls_cert_expiry", 1_900_000_000i64.into()),
            ("redirects", 0.into()),
            ("body_matched", true.into()),
        ],
        Kind::Dns => vec![
            ("answers", vec!["104.16.1.1"].into()),
            ("rcode", "NOERROR".into()),
            ("resolvers", map([("system", resolver())])),
            ("disagree", false.into()),
            ("unexpected", Value::List(Vec::new())),
            ("hijack_suspected", false.into()),
        ],
        Kind::Postgres => vec![
            ("server_version", "17.2".into()),
            ("tls", true.into()),
            ("goose_version", 42.into()),
            ("goose_applied", true.into()),
            ("query_seconds", 0.004.into()),
        ],
        Kind::Redis => vec![
            ("uptime_seconds", 86_400.into()),
            ("restarted", false.into()),
            ("previous_uptime_seconds", 86_370.into()),
            ("used_memory", 2_400_000.into()),
            ("maxmemory", 268_435_456.into()),
            ("memory_ratio", 0.009.into()),
            ("maxmemory_policy", "allkeys-lru".into()),
            ("connected_clients", 12.into()),
            ("keys", 340.into()),
            ("role", "master".into()),
            ("ping_seconds", 0.001.into()),
        ],
        Kind::Asynq => vec![
            ("queues", map([("default", queue())])),
            ("live_servers", 1.into()),
            ("stalled", false.into()),
            ("stalled_queues", Value::List(Vec::new())),
            ("scheduler_entries", 4.into()),
            ("late_cron_entries", Value::List(Vec::new())),
            ("cron_late", false.into()),
        ],
        Kind::Smtp => vec![
            ("banner", "220 smtp.fastmail.com ESMTP ready".into()),
            ("reply_code", 221.into()),
            ("extensions", vec!["AUTH PLAIN LOGIN", "8BITMIME"].into()),
            ("tls_cert_expiry", 1_900_000_000i64.into()),
            ("failed_step", Value::Str(String::new())),
            ("temporary", false.into()),
        ],
        Kind::Registry => vec![
            ("status", 401.into()),
            ("auth_scheme", "bearer".into()),
            ("token_seconds", 0.05.into()),
            ("manifest_digest", "sha256:0123456789abcdef".into()),
        ],
        Kind::S3 => vec![("status", 200.into()), ("request_id", "4a1b2c3d".into())],
    };
    pairs
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
}

fn resolver() -> Value {
    map([
        ("answers", vec!["104.16.1.1"].into()),
        ("rcode", "NOERROR".into()),
        ("ok", true.into()),
        ("message", "1 answer".into()),
    ])
}

fn queue() -> Value {
    map([
        ("pending", 0.into()),
        ("active", 1.into()),
        ("scheduled", 3.into()),
        ("retry", 0.into()),
        ("archived", 0.into()),
        ("completed", 120.into()),
        ("latency_seconds", 0.2.into()),
        ("processed_delta", 5.into()),
        ("failed_delta", 0.into()),
        ("paused", false.into()),
        ("live_servers", 1.into()),
        ("stalled", false.into()),
        ("stall_reason", Value::Str(String::new())),
    ])
}

fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Map(
        pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}
