//! The shipped failure catalog (`alerts/`), scenario by scenario.
//!
//! Each scenario sets some probes of the shipped `probes.toml` to the results a failure mode
//! produces (every other probe reports a healthy result), lets time pass beyond every `for`,
//! and pins exactly which diagnoses are the active root causes, which are shown but inhibited,
//! and which must not be diagnosed at all: a near miss (pooler and direct both down is
//! `neon-outage`, not `neon-pooler-down`). Every shipped rule must fire in some scenario and be
//! silent or inhibited in another, and no rule may fail to evaluate on these realistic results.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use honeyguide::catalog::{self, Catalog, Classifier, DiagnosisState, ProbeKinds, RuleStatus};
use honeyguide::config::{self, Source};
use honeyguide::probe::{ErrorClass, Kind, ProbeResult, Value};
use honeyguide::view::ProbeView;
use jiff::Timestamp;
use tokio::time::Instant;

use crate::support;

// === the shipped probes ===

/// The probes of the shipped `probes.toml`, which the shipped rules are written against (a test
/// checks the two lists agree).
const SHIPPED_PROBES: [(&str, Kind); 16] = [
    ("edge-api", Kind::Http),
    ("edge-admin", Kind::Http),
    ("edge-api-deep", Kind::Http),
    ("origin-1", Kind::Http),
    ("origin-2", Kind::Http),
    ("origin-3", Kind::Http),
    ("dns-api", Kind::Dns),
    ("dns-cluster", Kind::Dns),
    ("db-pooler", Kind::Postgres),
    ("db-direct", Kind::Postgres),
    ("redis", Kind::Redis),
    ("asynq", Kind::Asynq),
    ("smtp", Kind::Smtp),
    ("registry", Kind::Registry),
    ("b2", Kind::S3),
    ("b2-public", Kind::Http),
];

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped `probes.toml`, validated as `honeyguide run` would (with an empty environment,
/// so every `${VAR:-default}` takes its default).
fn shipped_config() -> config::Config {
    let path = repository().join("probes.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    config::parse(&Source::new(path, text), &|_| None)
        .unwrap_or_else(|errors| panic!("the shipped probes.toml must load:\n{errors}"))
}

fn shipped_kinds() -> ProbeKinds {
    shipped_config().probe_kinds()
}

fn shipped_catalog() -> Catalog {
    catalog::load(&repository().join("alerts"), &shipped_kinds())
        .unwrap_or_else(|errors| panic!("the shipped alerts/ must load:\n{errors}"))
}

/// The shipped `alerts/` load against the shipped `probes.toml` without a single error: what
/// `honeyguide validate` checks in the repository.
#[test]
fn the_shipped_alerts_load_against_the_shipped_probes() {
    support::init();
    let catalog = shipped_catalog();
    assert!(
        catalog.modes().len() >= 25,
        "{} modes",
        catalog.modes().len()
    );
    for mode in catalog.modes() {
        assert!(!mode.probes().is_empty(), "{} reads no probe", mode.id);
    }
}

/// The probe list the scenarios below build on is exactly the shipped `probes.toml`'s, so a probe
/// renamed or added there is noticed here (and a rule reading a missing one fails the load).
#[test]
fn the_scenarios_use_the_shipped_probes() {
    support::init();
    let expected: ProbeKinds = SHIPPED_PROBES
        .iter()
        .map(|(name, kind)| ((*name).to_owned(), *kind))
        .collect();
    assert_eq!(shipped_kinds(), expected);
}

// === results ===

/// Seconds from now, as the Unix timestamps certificate rules compare against `now`.
fn in_days(days: i64) -> Value {
    Value::Int(Timestamp::now().as_second() + days * 86_400)
}

/// Every resolver of `dns-api` failing with `rcode`.
fn every_resolver(rcode: Option<&str>) -> Value {
    resolvers(&[
        ("system", Some(rcode)),
        ("udp://1.1.1.1", Some(rcode)),
        ("tls://1.1.1.1#cloudflare-dns.com", Some(rcode)),
        ("https://8.8.8.8/dns-query#dns.google", Some(rcode)),
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

/// The `resolvers` observation of a dns probe: each resolver answered (`None`) or failed with the
/// given rcode (`Some(None)` for no answer at all).
fn resolvers(entries: &[(&str, Option<Option<&str>>)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(name, failure)| {
                let entry = match failure {
                    None => map([
                        ("answers", vec!["104.16.1.1"].into()),
                        ("rcode", "NOERROR".into()),
                        ("ok", true.into()),
                        ("message", "1 answer".into()),
                    ]),
                    Some(rcode) => map([
                        ("answers", Value::List(Vec::new())),
                        ("rcode", (*rcode).into()),
                        ("ok", false.into()),
                        ("message", "no answer within 800ms".into()),
                    ]),
                };
                ((*name).to_owned(), entry)
            })
            .collect(),
    )
}

/// The observations a healthy run of `kind` reports.
fn healthy_observations(kind: Kind) -> Vec<(&'static str, Value)> {
    match kind {
        Kind::Http => vec![
            ("status", 200.into()),
            ("http_version", "HTTP/2.0".into()),
            ("server", "cloudflare".into()),
            ("cf_ray", "8f1c2d3e4f5a6b7c-FRA".into()),
            ("cdn_colo", "FRA".into()),
            ("cdn_error", false.into()),
            ("cdn_error_code", Value::Null),
            ("remote_addr", "104.16.1.1:443".into()),
            ("resolved_ips", vec!["104.16.1.1"].into()),
            ("tls_cert_expiry", in_days(60)),
            ("redirects", 0.into()),
            ("body_matched", true.into()),
        ],
        Kind::Dns => vec![
            ("answers", vec!["104.16.1.1", "172.67.1.1"].into()),
            ("rcode", "NOERROR".into()),
            (
                "resolvers",
                resolvers(&[
                    ("system", None),
                    ("udp://1.1.1.1", None),
                    ("tls://1.1.1.1#cloudflare-dns.com", None),
                    ("https://8.8.8.8/dns-query#dns.google", None),
                ]),
            ),
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
            (
                "queues",
                map([(
                    "default",
                    map([
                        ("pending", 0.into()),
                        ("active", 1.into()),
                        ("latency_seconds", 0.2.into()),
                        ("processed_delta", 5.into()),
                        ("live_servers", 1.into()),
                        ("stalled", false.into()),
                        ("stall_reason", "".into()),
                    ]),
                )]),
            ),
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
            ("extensions", vec!["AUTH PLAIN LOGIN"].into()),
            ("tls_cert_expiry", in_days(60)),
            ("failed_step", Value::Null),
            ("temporary", false.into()),
        ],
        Kind::Registry => vec![
            ("status", 401.into()),
            ("auth_scheme", "bearer".into()),
            ("token_seconds", 0.05.into()),
            ("manifest_digest", "sha256:0123".into()),
        ],
        Kind::S3 => vec![("status", 200.into()), ("request_id", "4a1b2c3d".into())],
    }
}

/// The observations of a failed run of `kind`: every key present, `null` where the run never
/// got far enough to see it (as the probe kinds report them).
fn failed_observations(kind: Kind) -> Vec<(&'static str, Value)> {
    healthy_observations(kind)
        .into_iter()
        .map(|(key, value)| {
            let kept = matches!(key, "resolved_ips" | "resolvers" | "queues");
            (key, if kept { value } else { Value::Null })
        })
        .collect()
}

fn kind_of(probe: &str) -> Kind {
    SHIPPED_PROBES
        .iter()
        .find(|(name, _)| *name == probe)
        .map(|(_, kind)| *kind)
        .unwrap_or_else(|| panic!("no shipped probe `{probe}`"))
}

/// A healthy result of `probe`.
fn up(probe: &str) -> ProbeResult {
    ProbeResult {
        ok: true,
        error: None,
        message: "ok".to_owned(),
        observations: observations(healthy_observations(kind_of(probe))),
        duration: Duration::from_millis(80),
        phases: Vec::new(),
    }
}

/// A failed result of `probe`.
fn down(probe: &str, error: ErrorClass, message: &str) -> ProbeResult {
    ProbeResult {
        ok: false,
        error: Some(error),
        message: message.to_owned(),
        observations: observations(failed_observations(kind_of(probe))),
        duration: Duration::from_secs(10),
        phases: Vec::new(),
    }
}

fn observations(pairs: Vec<(&str, Value)>) -> BTreeMap<String, Value> {
    pairs
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
}

/// Builder-style tweaks of a result.
trait Tweak {
    fn with(self, key: &str, value: impl Into<Value>) -> Self;
    fn took(self, seconds: f64) -> Self;
}

impl Tweak for ProbeResult {
    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.observations.insert(key.to_owned(), value.into());
        self
    }

    fn took(mut self, seconds: f64) -> Self {
        self.duration = Duration::from_secs_f64(seconds);
        self
    }
}

/// An HTTP error status passed through from the origin (not generated by Cloudflare).
fn status(probe: &str, code: i64) -> ProbeResult {
    down(
        probe,
        ErrorClass::HttpStatus,
        &format!("unexpected status {code}"),
    )
    .with("status", code)
    .with("cdn_error", false)
}

/// An error Cloudflare generated itself (52x, 530).
fn cloudflare_error(probe: &str, code: i64) -> ProbeResult {
    down(
        probe,
        ErrorClass::HttpStatus,
        &format!("cloudflare error {code}"),
    )
    .with("status", code)
    .with("cdn_error", true)
    .with("cdn_error_code", code)
}

fn refused(probe: &str) -> ProbeResult {
    down(probe, ErrorClass::Connect, "connection refused")
}

/// A run cut off at its timeout: the runner reports only the phase it hung in, so rules must
/// cope with every other observation being absent.
fn hung(probe: &str) -> ProbeResult {
    let mut result = down(
        probe,
        ErrorClass::Timeout,
        "timed out after 10s during connect",
    );
    result.observations = observations(vec![("timeout_phase", "connect".into())]);
    result
}

// === scenarios ===

/// One situation and what the catalog must make of it.
struct Scenario {
    name: &'static str,
    /// Results per probe, oldest first; probes not listed report healthy results.
    results: Vec<(&'static str, Vec<ProbeResult>)>,
    /// How long the situation lasts before the diagnoses are read.
    elapsed: Duration,
    /// The active diagnoses that are not inhibited: exactly these.
    fires: &'static [&'static str],
    /// Diagnoses that must be listed, active, with `inhibited_by` set.
    inhibited: &'static [&'static str],
    /// Modes that must not be diagnosed at all.
    silent: &'static [&'static str],
}

impl Scenario {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            results: Vec::new(),
            // Longer than the longest `for` of the shipped rules (cf-global-outage, 10m).
            elapsed: Duration::from_secs(11 * 60),
            fires: &[],
            inhibited: &[],
            silent: &[],
        }
    }

    /// `probe` was healthy for three runs, then reported `result` four times in a row.
    fn set(mut self, probe: &'static str, result: ProbeResult) -> Self {
        let mut results = vec![up(probe); 3];
        results.extend(std::iter::repeat_n(result, 4));
        self.results.push((probe, results));
        self
    }

    fn runs(mut self, probe: &'static str, results: Vec<ProbeResult>) -> Self {
        self.results.push((probe, results));
        self
    }

    fn after(mut self, elapsed: Duration) -> Self {
        self.elapsed = elapsed;
        self
    }

    fn fires(mut self, ids: &'static [&'static str]) -> Self {
        self.fires = ids;
        self
    }

    fn inhibited(mut self, ids: &'static [&'static str]) -> Self {
        self.inhibited = ids;
        self
    }

    fn silent(mut self, ids: &'static [&'static str]) -> Self {
        self.silent = ids;
        self
    }
}

fn origins_down(make: fn(&str) -> ProbeResult, scenario: Scenario) -> Scenario {
    scenario
        .set("origin-1", make("origin-1"))
        .set("origin-2", make("origin-2"))
        .set("origin-3", make("origin-3"))
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::new("everything healthy").silent(&[
            "redis-restarted",
            "redis-eviction-policy",
            "tls-cert-expiring",
            "everything-slow",
            "api-crashloop",
            "worker-stalled",
            "cron-late",
        ]),
        // --- Cloudflare and DNS ---
        Scenario::new("edge refused at one POP, origins fine, for four minutes")
            .set("edge-api", hung("edge-api"))
            .set("edge-admin", cloudflare_error("edge-admin", 500))
            .after(Duration::from_secs(4 * 60))
            .fires(&["cf-edge-pop-outage"])
            .inhibited(&["edge-api-down"]),
        Scenario::new("edge down for ten minutes, origins fine")
            .set("edge-api", refused("edge-api"))
            .set("edge-admin", refused("edge-admin"))
            .set("b2-public", refused("b2-public"))
            .fires(&["cf-global-outage"])
            .inhibited(&[
                "cf-edge-pop-outage",
                "edge-api-down",
                "b2-downloads-failing",
            ]),
        Scenario::new("edge passes an origin 500 through while the origins answer")
            .set("edge-api", status("edge-api", 500))
            .fires(&["edge-api-down"])
            .silent(&["cf-edge-pop-outage", "cf-global-outage", "api-down"]),
        Scenario::new("resolvers answer outside Cloudflare; TLS fails at the edge")
            .set(
                "dns-api",
                down(
                    "dns-api",
                    ErrorClass::Assertion,
                    "answer 203.0.113.9 outside the expected ranges",
                )
                .with("hijack_suspected", true)
                .with("unexpected", vec!["203.0.113.9"]),
            )
            .set(
                "edge-api",
                down(
                    "edge-api",
                    ErrorClass::Tls,
                    "certificate not valid for api.myhoneydue.com",
                ),
            )
            .set(
                "edge-admin",
                down("edge-admin", ErrorClass::Tls, "certificate not valid"),
            )
            .fires(&["dns-hijack"])
            .inhibited(&["cf-global-outage", "cf-edge-pop-outage", "edge-api-down"])
            .silent(&["cloudflare-dns-failure"]),
        Scenario::new("resolvers disagree but all answers are Cloudflare's")
            .set("dns-api", up("dns-api").with("disagree", true))
            .silent(&["dns-hijack", "cloudflare-dns-failure"]),
        Scenario::new("the API hostname returns SERVFAIL")
            .set(
                "dns-api",
                down("dns-api", ErrorClass::Dns, "SERVFAIL from every resolver")
                    .with("rcode", "SERVFAIL")
                    .with("hijack_suspected", false)
                    .with("resolvers", every_resolver(Some("SERVFAIL"))),
            )
            .set(
                "edge-api",
                down(
                    "edge-api",
                    ErrorClass::Dns,
                    "no address for api.myhoneydue.com",
                ),
            )
            .set(
                "edge-admin",
                down("edge-admin", ErrorClass::Dns, "no address"),
            )
            .fires(&["cloudflare-dns-failure"])
            .inhibited(&["edge-api-down"])
            .silent(&["dns-hijack", "cf-edge-pop-outage", "coredns-down"]),
        Scenario::new("an egress firewall blocks DNS over TLS")
            .set(
                "dns-api",
                down(
                    "dns-api",
                    ErrorClass::Dns,
                    "resolver failed (1 of 4): tls://1.1.1.1",
                )
                .with("hijack_suspected", false)
                .with(
                    "resolvers",
                    resolvers(&[
                        ("system", None),
                        ("udp://1.1.1.1", None),
                        ("tls://1.1.1.1#cloudflare-dns.com", Some(None)),
                        ("https://8.8.8.8/dns-query#dns.google", None),
                    ]),
                ),
            )
            .silent(&["cloudflare-dns-failure", "coredns-down", "dns-hijack"]),
        Scenario::new("CoreDNS down, honeyguide inside the cluster")
            .set(
                "dns-cluster",
                down(
                    "dns-cluster",
                    ErrorClass::Dns,
                    "resolver failed (1 of 1): system: no answer",
                )
                .with("rcode", Value::Null)
                .with("resolvers", resolvers(&[("system", Some(None))])),
            )
            .set(
                "dns-api",
                down(
                    "dns-api",
                    ErrorClass::Dns,
                    "resolver failed (1 of 4): system: no answer",
                )
                .with("hijack_suspected", false)
                .with(
                    "resolvers",
                    resolvers(&[
                        ("system", Some(None)),
                        ("udp://1.1.1.1", None),
                        ("tls://1.1.1.1#cloudflare-dns.com", None),
                        ("https://8.8.8.8/dns-query#dns.google", None),
                    ]),
                ),
            )
            .set(
                "db-pooler",
                down("db-pooler", ErrorClass::Dns, "cannot resolve ep-x-pooler"),
            )
            .set(
                "db-direct",
                down("db-direct", ErrorClass::Dns, "cannot resolve ep-x"),
            )
            .set(
                "redis",
                down(
                    "redis",
                    ErrorClass::Dns,
                    "cannot resolve redis.honeydue.svc",
                ),
            )
            .set(
                "asynq",
                down(
                    "asynq",
                    ErrorClass::Dns,
                    "cannot resolve redis.honeydue.svc",
                ),
            )
            .fires(&["coredns-down"])
            .inhibited(&["neon-outage", "redis-down"])
            .silent(&["cloudflare-dns-failure", "monitor-offline"]),
        Scenario::new("honeyguide outside the cluster: cluster names are NXDOMAIN")
            .set(
                "dns-cluster",
                down(
                    "dns-cluster",
                    ErrorClass::Dns,
                    "kubernetes.default.svc.cluster.local A: NXDOMAIN",
                )
                .with("rcode", "NXDOMAIN")
                .with(
                    "resolvers",
                    resolvers(&[("system", Some(Some("NXDOMAIN")))]),
                ),
            )
            .silent(&["coredns-down"]),
        // --- nodes ---
        Scenario::new("one node refuses connections")
            .set("origin-2", refused("origin-2"))
            .fires(&["one-node-down"])
            .silent(&["two-nodes-down", "all-nodes-down", "some-users-502"]),
        Scenario::new("one node answers 502")
            .set("origin-3", status("origin-3", 502))
            .fires(&["some-users-502"])
            .silent(&["one-node-down", "api-down"]),
        Scenario::new("two nodes unreachable")
            .set("origin-1", refused("origin-1"))
            .set("origin-2", hung("origin-2"))
            .fires(&["two-nodes-down"])
            .silent(&["one-node-down", "all-nodes-down"]),
        origins_down(refused, Scenario::new("all three nodes unreachable"))
            .set("edge-api", cloudflare_error("edge-api", 522))
            .set("edge-admin", cloudflare_error("edge-admin", 522))
            .set("edge-api-deep", cloudflare_error("edge-api-deep", 522))
            .fires(&["all-nodes-down"])
            .inhibited(&["edge-api-down"])
            .silent(&[
                "two-nodes-down",
                "one-node-down",
                "cf-edge-pop-outage",
                "monitor-offline",
            ]),
        // --- api, admin ---
        origins_down(
            |probe| status(probe, 503),
            Scenario::new("no api pod ready on any node"),
        )
        .set("edge-api", status("edge-api", 503))
        .set("edge-api-deep", status("edge-api-deep", 503))
        .fires(&["api-down"])
        .inhibited(&["edge-api-down"])
        .silent(&["all-nodes-down", "some-users-502", "cf-edge-pop-outage"]),
        Scenario::new("health passes, a real request hangs")
            .set(
                "edge-api-deep",
                down(
                    "edge-api-deep",
                    ErrorClass::Timeout,
                    "timed out after 15s during first_byte",
                ),
            )
            .fires(&["api-deadlock"])
            .silent(&["edge-api-down", "everything-slow"]),
        Scenario::new("health passes, the edge gives up on a hung request (524)")
            .set("edge-api-deep", cloudflare_error("edge-api-deep", 524))
            .fires(&["api-deadlock"]),
        Scenario::new("the deep probe's token expired (401)")
            .set("edge-api-deep", status("edge-api-deep", 401))
            .silent(&["api-deadlock"]),
        Scenario::new("a slow but successful deep read")
            .set("edge-api-deep", up("edge-api-deep").took(4.2))
            .fires(&["everything-slow"])
            .silent(&["api-deadlock"]),
        Scenario::new("slow database queries")
            .set("db-pooler", up("db-pooler").with("query_seconds", 0.9))
            .fires(&["everything-slow"]),
        Scenario::new("intermittent 502s through the edge")
            .runs(
                "edge-api",
                vec![
                    up("edge-api"),
                    status("edge-api", 502),
                    up("edge-api"),
                    up("edge-api"),
                    status("edge-api", 502),
                    up("edge-api"),
                ],
            )
            .fires(&["api-crashloop"])
            .silent(&["edge-api-down"]),
        Scenario::new("a single 502 in ten runs")
            .runs(
                "edge-api",
                std::iter::once(status("edge-api", 502))
                    .chain((0..9).map(|_| up("edge-api")))
                    .collect(),
            )
            .silent(&["api-crashloop"]),
        Scenario::new("the admin site answers 502, the api is fine")
            .set("edge-admin", status("edge-admin", 502))
            .fires(&["admin-down"])
            .silent(&["cf-edge-pop-outage", "edge-api-down"]),
        Scenario::new("the admin site fails along with the whole edge")
            .set("edge-admin", cloudflare_error("edge-admin", 500))
            .set("edge-api", hung("edge-api"))
            .fires(&["cf-global-outage"])
            .silent(&["admin-down"]),
        // --- worker and Redis ---
        Scenario::new("jobs wait and nobody processes them")
            .set(
                "asynq",
                down(
                    "asynq",
                    ErrorClass::Stalled,
                    "queue default: 42 pending, none processed for 5m",
                )
                .with("stalled", true)
                .with("stalled_queues", vec!["default"])
                .with("live_servers", 1)
                .with("cron_late", true),
            )
            .fires(&["worker-stalled"])
            .inhibited(&["cron-late"]),
        Scenario::new("no worker heartbeat at all")
            .set("asynq", up("asynq").with("live_servers", 0))
            .fires(&["worker-stalled"]),
        Scenario::new("a busy but healthy worker")
            .set("asynq", up("asynq").with("live_servers", 3))
            .silent(&["worker-stalled", "cron-late"]),
        Scenario::new("cron entries are late, jobs flow")
            .set(
                "asynq",
                up("asynq")
                    .with("cron_late", true)
                    .with("late_cron_entries", vec!["daily-digest"]),
            )
            .fires(&["cron-late"])
            .silent(&["worker-stalled"]),
        Scenario::new("the scheduler's heartbeat is gone")
            .set("asynq", up("asynq").with("scheduler_gone", true))
            .fires(&["cron-late"]),
        Scenario::new("Redis refuses connections")
            .set("redis", refused("redis"))
            .set("asynq", refused("asynq"))
            .fires(&["redis-down"])
            .silent(&["redis-restarted", "worker-stalled", "redis-eviction-policy"]),
        Scenario::new("Redis came back empty")
            .set(
                "redis",
                up("redis")
                    .with("uptime_seconds", 42)
                    .with("restarted", true)
                    .with("keys", 0),
            )
            .fires(&["redis-restarted"])
            .silent(&["redis-down"]),
        Scenario::new("Redis near its memory limit")
            .set(
                "redis",
                up("redis")
                    .with("used_memory", 250_000_000)
                    .with("memory_ratio", 0.93),
            )
            .fires(&["redis-near-maxmemory"])
            .silent(&["redis-eviction-policy"]),
        Scenario::new("Redis without a memory limit")
            .set(
                "redis",
                up("redis")
                    .with("maxmemory", 0)
                    .with("memory_ratio", Value::Null),
            )
            .silent(&["redis-near-maxmemory"]),
        Scenario::new("Redis set to noeviction")
            .set("redis", up("redis").with("maxmemory_policy", "noeviction"))
            .fires(&["redis-eviction-policy"])
            .silent(&["redis-near-maxmemory"]),
        // --- Neon ---
        Scenario::new("pooler and direct endpoint both down")
            .set("db-pooler", hung("db-pooler"))
            .set("db-direct", refused("db-direct"))
            .fires(&["neon-outage"])
            .silent(&[
                "neon-pooler-down",
                "schema-precondition-failed",
                "db-credentials-rejected",
            ]),
        Scenario::new("pooler down, direct endpoint up")
            .set("db-pooler", hung("db-pooler"))
            .fires(&["neon-pooler-down"])
            .silent(&["neon-outage"]),
        Scenario::new("the database refuses our password")
            .set(
                "db-pooler",
                down(
                    "db-pooler",
                    ErrorClass::Auth,
                    "password authentication failed",
                ),
            )
            .set(
                "db-direct",
                down(
                    "db-direct",
                    ErrorClass::Auth,
                    "password authentication failed",
                ),
            )
            .fires(&["db-credentials-rejected"])
            .silent(&["neon-outage", "neon-pooler-down"]),
        Scenario::new("goose_db_version not applied")
            .set(
                "db-direct",
                down(
                    "db-direct",
                    ErrorClass::Schema,
                    "goose_db_version: latest row not applied",
                )
                .with("goose_version", 57)
                .with("goose_applied", false),
            )
            .fires(&["schema-precondition-failed"])
            .silent(&["neon-outage", "neon-pooler-down"]),
        // --- external services ---
        Scenario::new("B2 times out, public reads fail too")
            .set("b2", hung("b2"))
            .set("b2-public", status("b2-public", 503))
            .fires(&["b2-outage"])
            .inhibited(&["b2-downloads-failing"]),
        Scenario::new("B2 rejects our key")
            .set("b2", down("b2", ErrorClass::Auth, "403 InvalidAccessKeyId"))
            .silent(&["b2-outage"]),
        Scenario::new("public downloads fail, the S3 API is fine")
            .set("b2-public", status("b2-public", 404))
            .fires(&["b2-downloads-failing"])
            .silent(&["b2-outage"]),
        Scenario::new("Fastmail unreachable")
            .set("smtp", hung("smtp"))
            .fires(&["smtp-unreachable"])
            .silent(&["smtp-auth-rejected"]),
        Scenario::new("Fastmail refuses our app password")
            .set(
                "smtp",
                down("smtp", ErrorClass::Auth, "535 5.7.8 authentication failed")
                    .with("failed_step", "auth")
                    .with("reply_code", 535),
            )
            .fires(&["smtp-auth-rejected"])
            .silent(&["smtp-unreachable"]),
        Scenario::new("Fastmail answers 454: temporary authentication failure")
            .set(
                "smtp",
                down(
                    "smtp",
                    ErrorClass::Auth,
                    "454 4.7.0 temporary authentication failure",
                )
                .with("failed_step", "auth")
                .with("reply_code", 454)
                .with("temporary", true),
            )
            .fires(&["smtp-unreachable"])
            .silent(&["smtp-auth-rejected"]),
        Scenario::new("Gitea registry unreachable")
            .set("registry", refused("registry"))
            .fires(&["registry-unreachable"]),
        Scenario::new("Gitea registry back after one failure")
            .runs("registry", vec![refused("registry"), up("registry")])
            .silent(&["registry-unreachable"]),
        Scenario::new("the edge certificate expires in five days")
            .set(
                "edge-api",
                up("edge-api").with("tls_cert_expiry", in_days(5)),
            )
            .fires(&["tls-cert-expiring"]),
        Scenario::new("the SMTP certificate expires in thirty days")
            .set("smtp", up("smtp").with("tls_cert_expiry", in_days(30)))
            .silent(&["tls-cert-expiring"]),
        // --- honeyguide itself ---
        Scenario::new("honeyguide's own network is down")
            .set(
                "edge-api",
                down("edge-api", ErrorClass::Dns, "no resolver reachable"),
            )
            .set(
                "edge-admin",
                down("edge-admin", ErrorClass::Dns, "no resolver reachable"),
            )
            .set(
                "edge-api-deep",
                down("edge-api-deep", ErrorClass::Dns, "no resolver reachable"),
            )
            .set("origin-1", hung("origin-1"))
            .set("origin-2", hung("origin-2"))
            .set("origin-3", hung("origin-3"))
            .set(
                "db-direct",
                down("db-direct", ErrorClass::Dns, "no resolver reachable"),
            )
            .set(
                "db-pooler",
                down("db-pooler", ErrorClass::Dns, "no resolver reachable"),
            )
            .set("b2", hung("b2"))
            .set(
                "b2-public",
                down("b2-public", ErrorClass::Dns, "no resolver reachable"),
            )
            .set("smtp", hung("smtp"))
            .set("registry", hung("registry"))
            .fires(&["monitor-offline"])
            .inhibited(&[
                "all-nodes-down",
                "neon-outage",
                "smtp-unreachable",
                "edge-api-down",
            ]),
    ]
}

// === running a scenario ===

/// What one scenario produced, as (id, state, inhibited_by), plus any rule that failed to
/// evaluate.
struct Outcome {
    diagnoses: Vec<(String, DiagnosisState, Option<String>)>,
    rule_errors: Vec<String>,
}

async fn run(catalog: &Arc<Catalog>, scenario: &Scenario) -> Outcome {
    let mut views: Vec<Arc<ProbeView>> = SHIPPED_PROBES
        .iter()
        .map(|(name, kind)| {
            Arc::new(ProbeView::new(
                name,
                *kind,
                String::new(),
                BTreeMap::new(),
                Duration::from_secs(30),
                Duration::from_secs(10),
            ))
        })
        .collect();
    let mut classifier = Classifier::new(catalog.clone(), SHIPPED_PROBES.map(|(name, _)| name));
    for (index, (name, _)) in SHIPPED_PROBES.iter().enumerate() {
        let results = scenario
            .results
            .iter()
            .find(|(probe, _)| probe == name)
            .map_or_else(|| vec![up(name)], |(_, results)| results.clone());
        for result in results {
            Arc::make_mut(&mut views[index]).record(result, Instant::now(), Timestamp::now());
            classifier.probe_changed(index);
        }
    }
    classifier.evaluate(&views, Instant::now(), Timestamp::now());
    tokio::time::advance(scenario.elapsed).await;
    let diagnoses = classifier.evaluate(&views, Instant::now(), Timestamp::now());
    let rule_errors = classifier
        .stats()
        .filter(|(_, stats)| stats.status == RuleStatus::Error)
        .map(|(mode, stats)| {
            format!(
                "{}: {}",
                mode.id,
                stats.last_error.as_deref().unwrap_or_default()
            )
        })
        .collect();
    Outcome {
        diagnoses: diagnoses
            .iter()
            .map(|d| (d.id.clone(), d.state, d.inhibited_by.clone()))
            .collect(),
        rule_errors,
    }
}

/// What is wrong with `outcome` for `scenario`, if anything.
fn check(scenario: &Scenario, outcome: &Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    let roots: BTreeSet<&str> = outcome
        .diagnoses
        .iter()
        .filter(|(_, state, inhibitor)| *state == DiagnosisState::Active && inhibitor.is_none())
        .map(|(id, _, _)| id.as_str())
        .collect();
    let expected: BTreeSet<&str> = scenario.fires.iter().copied().collect();
    if roots != expected {
        problems.push(format!("root causes {roots:?}, expected {expected:?}"));
    }
    if let Some((first, _, _)) = outcome.diagnoses.first()
        && !expected.is_empty()
        && !expected.contains(first.as_str())
    {
        problems.push(format!("`{first}` is listed first, not a root cause"));
    }
    for id in scenario.inhibited {
        let found = outcome.diagnoses.iter().find(|(other, _, _)| other == id);
        if !matches!(found, Some((_, DiagnosisState::Active, Some(_)))) {
            problems.push(format!(
                "`{id}` should be active and inhibited, got {found:?}"
            ));
        }
    }
    for id in scenario.silent {
        if outcome.diagnoses.iter().any(|(other, _, _)| other == id) {
            problems.push(format!("`{id}` must not be diagnosed"));
        }
    }
    for error in &outcome.rule_errors {
        problems.push(format!("rule failed to evaluate: {error}"));
    }
    problems
}

/// Every scenario yields exactly its root causes, shows the inhibited modes behind them, keeps
/// the near misses silent, and no shipped rule fails to evaluate on realistic results.
#[tokio::test(start_paused = true)]
async fn each_scenario_diagnoses_its_failure_mode_and_nothing_else() {
    support::init();
    let catalog = Arc::new(shipped_catalog());
    let mut failures = Vec::new();
    for scenario in scenarios() {
        let outcome = run(&catalog, &scenario).await;
        for problem in check(&scenario, &outcome) {
            failures.push(format!("{}: {problem}", scenario.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The scenario table covers the whole shipped catalog: every rule fires somewhere and has a
/// near miss (silent, or shown but inhibited) somewhere else.
#[test]
fn every_shipped_rule_has_a_firing_scenario_and_a_near_miss() {
    support::init();
    let catalog = shipped_catalog();
    let table = scenarios();
    let mut missing = Vec::new();
    for mode in catalog.modes() {
        let id = mode.id.as_str();
        if !table.iter().any(|scenario| scenario.fires.contains(&id)) {
            missing.push(format!("{id}: no scenario fires it"));
        }
        if !table
            .iter()
            .any(|scenario| scenario.silent.contains(&id) || scenario.inhibited.contains(&id))
        {
            missing.push(format!("{id}: no near miss"));
        }
    }
    for scenario in &table {
        for id in scenario
            .fires
            .iter()
            .chain(scenario.inhibited)
            .chain(scenario.silent)
        {
            if catalog.get(id).is_none() {
                missing.push(format!("{}: names unknown mode `{id}`", scenario.name));
            }
        }
    }
    assert!(missing.is_empty(), "\n{}", missing.join("\n"));
}

/// The rule files document themselves: every shipped mode has a runbook pointer into the
/// catalog and a recovery with at least one concrete step.
#[test]
fn every_shipped_rule_says_what_to_do() {
    support::init();
    for mode in shipped_catalog().modes() {
        assert!(
            mode.runbook.starts_with("16-failure-modes.md")
                || mode.runbook.starts_with("17-runbook.md"),
            "{}: runbook {}",
            mode.id,
            mode.runbook
        );
        assert!(mode.recovery.len() > 80, "{}: recovery too thin", mode.id);
        assert!(
            Path::new(&mode.file)
                .file_stem()
                .and_then(|stem| stem.to_str())
                == Some(mode.id.as_str())
        );
    }
}

/// The catch-all `edge-api-down` never goes active before the specific mode that explains the
/// same failure: each of its inhibitors is confirmed at least a minute sooner, or shares its
/// condition with one that is (`cf-global-outage` takes over from `cf-edge-pop-outage`).
#[test]
fn specific_modes_are_confirmed_before_the_catch_all() {
    support::init();
    let catalog = shipped_catalog();
    let catch_all = catalog.get("edge-api-down").unwrap();
    let deadline = catch_all.for_duration - Duration::from_secs(60);
    let inhibitors: Vec<_> = catalog
        .modes()
        .iter()
        .filter(|mode| mode.inhibits.iter().any(|id| id == "edge-api-down"))
        .collect();
    assert!(inhibitors.len() >= 8);
    for mode in &inhibitors {
        let covered = mode.for_duration <= deadline
            || inhibitors
                .iter()
                .any(|other| other.when == mode.when && other.for_duration <= deadline);
        assert!(
            covered,
            "{} ({:?}) would confirm after the catch-all",
            mode.id, mode.for_duration
        );
    }
}

/// `monitor-offline` reads only probes that run at least once a minute: a rule is unknown until
/// every probe it reads has reported, and it must be confirmed before the modes it silences.
#[test]
fn monitor_offline_reads_only_frequent_probes() {
    support::init();
    let config = shipped_config();
    let catalog = shipped_catalog();
    for name in catalog.get("monitor-offline").unwrap().probes() {
        let probe = config
            .probes
            .iter()
            .find(|probe| &probe.name == name)
            .unwrap();
        assert!(
            probe.interval <= Duration::from_secs(60),
            "{name} runs every {:?}",
            probe.interval
        );
    }
}
