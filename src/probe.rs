//! The probe model: what a probe is, what one run yields, and how a run is bounded.
//!
//! A probe is one configured check of one target. Each kind lives in its own file
//! (`src/probe/<kind>.rs`) with a `Spec` (its keys in `probes.toml`), a runtime struct built from
//! it, a `run` that makes exactly one attempt, and a `write_metrics` for its own series. The set of
//! kinds is closed: [`Kind`] and [`Probe`] list them, and an exhaustive `match` routes to them, so
//! adding a kind is one file plus one arm in each match the compiler points at.
//!
//! A run yields an [`Outcome`] (ok, a closed [`ErrorClass`], a human message, observations rules
//! can read, as the kind's [`schema`] declares them). [`execute`] wraps every run: it times the phases the probe marks, enforces the hard
//! timeout, and turns a hang or a panic into a failed [`ProbeResult`], so no probe can stall the
//! scheduler or take the daemon down. It also makes every message one bounded line
//! ([`crate::text::one_line`]): kinds may quote what a target said, and need not escape it.
//!
//! Probes know nothing of rules, alerts or notifiers.

pub mod asynq;
pub mod dns;
pub mod http;
pub mod kubernetes;
pub mod net;
pub mod postgres;
pub mod prometheus;
pub mod redis;
pub mod registry;
pub mod s3;
pub mod schema;
pub mod smtp;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::exposition::MetricsWriter;
use crate::spec::{BuildContext, ErrorSink, Section, build_section};
use schema::{Field, Schema};

// === Kind ===

crate::closed_set! {
    /// Every probe kind honeyguide knows; the name is what `kind = "..."` and labels say.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Kind {
        /// HTTP(S) request through the edge or pinned to one origin.
        Http = "http",
        /// DNS lookups through one or more resolvers.
        Dns = "dns",
        /// PostgreSQL connect, auth and query (pooler or direct).
        Postgres = "postgres",
        /// Redis PING and INFO.
        Redis = "redis",
        /// Asynq queues, workers and scheduler, read from Redis.
        Asynq = "asynq",
        /// SMTP banner, EHLO, TLS and AUTH without sending mail.
        Smtp = "smtp",
        /// OCI distribution registry `/v2/` and manifests.
        Registry = "registry",
        /// S3-compatible object storage (Backblaze B2).
        S3 = "s3",
        /// One instant query against a Prometheus-compatible API (VictoriaMetrics).
        Prometheus = "prometheus",
        /// The Kubernetes API: readyz, nodes, the metrics API, workloads.
        Kubernetes = "kubernetes",
    }
}

impl Kind {
    /// What a run of this kind observes: its own fields, the connection's (every kind but
    /// `dns`, which asks its resolvers itself) and the run's.
    pub fn schema(self) -> Schema {
        const HTTP: &[&[Field]] = &[http::OBSERVATIONS, net::OBSERVATIONS, RUN_OBSERVATIONS];
        const DNS: &[&[Field]] = &[dns::OBSERVATIONS, RUN_OBSERVATIONS];
        const POSTGRES: &[&[Field]] =
            &[postgres::OBSERVATIONS, net::OBSERVATIONS, RUN_OBSERVATIONS];
        const REDIS: &[&[Field]] = &[redis::OBSERVATIONS, net::OBSERVATIONS, RUN_OBSERVATIONS];
        const ASYNQ: &[&[Field]] = &[asynq::OBSERVATIONS, net::OBSERVATIONS, RUN_OBSERVATIONS];
        const SMTP: &[&[Field]] = &[smtp::OBSERVATIONS, net::OBSERVATIONS, RUN_OBSERVATIONS];
        const REGISTRY: &[&[Field]] =
            &[registry::OBSERVATIONS, net::OBSERVATIONS, RUN_OBSERVATIONS];
        const S3: &[&[Field]] = &[s3::OBSERVATIONS, net::OBSERVATIONS, RUN_OBSERVATIONS];
        const PROMETHEUS: &[&[Field]] = &[
            prometheus::OBSERVATIONS,
            net::OBSERVATIONS,
            RUN_OBSERVATIONS,
        ];
        const KUBERNETES: &[&[Field]] = &[
            kubernetes::OBSERVATIONS,
            net::OBSERVATIONS,
            RUN_OBSERVATIONS,
        ];
        Schema::new(match self {
            Kind::Http => HTTP,
            Kind::Dns => DNS,
            Kind::Postgres => POSTGRES,
            Kind::Redis => REDIS,
            Kind::Asynq => ASYNQ,
            Kind::Smtp => SMTP,
            Kind::Registry => REGISTRY,
            Kind::S3 => S3,
            Kind::Prometheus => PROMETHEUS,
            Kind::Kubernetes => KUBERNETES,
        })
    }
}

/// What [`execute`] itself observes, for every kind.
const RUN_OBSERVATIONS: &[Field] = &[TIMEOUT_PHASE];

const TIMEOUT_PHASE: Field = Field::text(
    "timeout_phase",
    "only on `timeout`: the phase the run hung in",
    "connect",
)
.failure_only();

// === Probe ===

/// A built, ready-to-run probe of any kind.
///
/// Every variant is boxed: the kinds differ a lot in size (a tokio-postgres config, an HTTP
/// request template, a resolver), and boxing them all here, once, keeps the enum small without
/// each kind boxing its own fields to please `clippy::large_enum_variant`.
#[derive(Debug)]
pub enum Probe {
    /// See [`http`].
    Http(Box<http::HttpProbe>),
    /// See [`dns`].
    Dns(Box<dns::DnsProbe>),
    /// See [`postgres`].
    Postgres(Box<postgres::PostgresProbe>),
    /// See [`redis`].
    Redis(Box<redis::RedisProbe>),
    /// See [`asynq`].
    Asynq(Box<asynq::AsynqProbe>),
    /// See [`smtp`].
    Smtp(Box<smtp::SmtpProbe>),
    /// See [`registry`].
    Registry(Box<registry::RegistryProbe>),
    /// See [`s3`].
    S3(Box<s3::S3Probe>),
    /// See [`prometheus`].
    Prometheus(Box<prometheus::PrometheusProbe>),
    /// See [`kubernetes`].
    Kubernetes(Box<kubernetes::KubernetesProbe>),
}

impl Probe {
    /// This probe's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Probe::Http(_) => Kind::Http,
            Probe::Dns(_) => Kind::Dns,
            Probe::Postgres(_) => Kind::Postgres,
            Probe::Redis(_) => Kind::Redis,
            Probe::Asynq(_) => Kind::Asynq,
            Probe::Smtp(_) => Kind::Smtp,
            Probe::Registry(_) => Kind::Registry,
            Probe::S3(_) => Kind::S3,
            Probe::Prometheus(_) => Kind::Prometheus,
            Probe::Kubernetes(_) => Kind::Kubernetes,
        }
    }

    /// Makes one attempt. Call through [`execute`], which adds the timeout and panic guard.
    pub async fn run(&self, ctx: &ProbeContext) -> Outcome {
        match self {
            Probe::Http(probe) => probe.run(ctx).await,
            Probe::Dns(probe) => probe.run(ctx).await,
            Probe::Postgres(probe) => probe.run(ctx).await,
            Probe::Redis(probe) => probe.run(ctx).await,
            Probe::Asynq(probe) => probe.run(ctx).await,
            Probe::Smtp(probe) => probe.run(ctx).await,
            Probe::Registry(probe) => probe.run(ctx).await,
            Probe::S3(probe) => probe.run(ctx).await,
            Probe::Prometheus(probe) => probe.run(ctx).await,
            Probe::Kubernetes(probe) => probe.run(ctx).await,
        }
    }

    /// What is probed, for humans: a URL or `host:port`, never with credentials.
    pub fn target(&self) -> String {
        match self {
            Probe::Http(probe) => probe.target(),
            Probe::Dns(probe) => probe.target(),
            Probe::Postgres(probe) => probe.target(),
            Probe::Redis(probe) => probe.target(),
            Probe::Asynq(probe) => probe.target(),
            Probe::Smtp(probe) => probe.target(),
            Probe::Registry(probe) => probe.target(),
            Probe::S3(probe) => probe.target(),
            Probe::Prometheus(probe) => probe.target(),
            Probe::Kubernetes(probe) => probe.target(),
        }
    }
}

/// Builds the runtime probe of `kind` from the probe's own keys (the common keys already
/// removed), recording located errors in `sink`.
pub fn build(
    kind: Kind,
    section: Section<'_>,
    cx: &BuildContext,
    sink: &mut ErrorSink<'_>,
) -> Option<Probe> {
    match kind {
        Kind::Http => build_section(section, cx, sink, http::Spec::build)
            .map(|probe| Probe::Http(Box::new(probe))),
        Kind::Dns => build_section(section, cx, sink, dns::Spec::build)
            .map(|probe| Probe::Dns(Box::new(probe))),
        Kind::Postgres => build_section(section, cx, sink, postgres::Spec::build)
            .map(|probe| Probe::Postgres(Box::new(probe))),
        Kind::Redis => build_section(section, cx, sink, redis::Spec::build)
            .map(|probe| Probe::Redis(Box::new(probe))),
        Kind::Asynq => build_section(section, cx, sink, asynq::Spec::build)
            .map(|probe| Probe::Asynq(Box::new(probe))),
        Kind::Smtp => build_section(section, cx, sink, smtp::Spec::build)
            .map(|probe| Probe::Smtp(Box::new(probe))),
        Kind::Registry => build_section(section, cx, sink, registry::Spec::build)
            .map(|probe| Probe::Registry(Box::new(probe))),
        Kind::S3 => build_section(section, cx, sink, s3::Spec::build)
            .map(|probe| Probe::S3(Box::new(probe))),
        Kind::Prometheus => build_section(section, cx, sink, prometheus::Spec::build)
            .map(|probe| Probe::Prometheus(Box::new(probe))),
        Kind::Kubernetes => build_section(section, cx, sink, kubernetes::Spec::build)
            .map(|probe| Probe::Kubernetes(Box::new(probe))),
    }
}

/// Writes the series specific to one kind for every probe of that kind. Families are written
/// family by family (the exposition format requires it), so each kind gets all its probes at once.
pub fn write_kind_metrics<'a>(
    kind: Kind,
    probes: &[(&'a str, &'a ProbeResult)],
    out: &mut MetricsWriter,
) {
    kind.schema().write_gauges(probes, out);
    match kind {
        Kind::Http => http::write_metrics(probes, out),
        Kind::Dns => dns::write_metrics(probes, out),
        Kind::Postgres => postgres::write_metrics(probes, out),
        Kind::Asynq => asynq::write_metrics(probes, out),
        Kind::Smtp => smtp::write_metrics(probes, out),
        // Their series are all declared observations' gauges.
        Kind::Redis | Kind::Registry | Kind::S3 | Kind::Prometheus | Kind::Kubernetes => {}
    }
}

// === ErrorClass ===

crate::closed_set! {
    /// Why a run failed, as a short closed set: the stable string rules match on and the
    /// bounded label metrics carry. The free-text detail goes in the message, never in a label.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum ErrorClass {
        /// Name resolution failed (NXDOMAIN, no answer, resolver unreachable).
        Dns = "dns",
        /// The TCP connection was refused, reset or unroutable.
        Connect = "connect",
        /// The run did not finish within its timeout (the message names the phase).
        Timeout = "timeout",
        /// TLS handshake or certificate verification failed.
        Tls = "tls",
        /// An HTTP answer had a status outside the expected set.
        HttpStatus = "http_status",
        /// The peer answered, but not in the protocol we speak (garbage, early close, bad reply).
        Protocol = "protocol",
        /// Credentials were refused.
        Auth = "auth",
        /// The credentials were accepted but not allowed to do what the probe asked (HTTP 403
        /// from the Kubernetes API: RBAC); the message names the verb and resource refused.
        Forbidden = "forbidden",
        /// The target answered correctly but a configured expectation did not hold.
        Assertion = "assertion",
        /// The thing asked for does not exist (database, object, manifest, record).
        NotFound = "not_found",
        /// A query or command was rejected by the server.
        Query = "query",
        /// A database schema precondition did not hold (migrations).
        Schema = "schema",
        /// A queue holds work that nobody is doing.
        Stalled = "stalled",
        /// A bug in honeyguide: a probe panicked. Reported, never fatal.
        Internal = "internal",
    }
}

// === observations ===

/// A value a probe observed; what rules read as `probes["x"].observations.<key>`. It is
/// stored as JSON for replay: an integer reads back as [`Value::Int`], a number with a fraction
/// or an exponent as [`Value::Float`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// Observed as absent (e.g. no `cf-ray` header).
    Null,
    /// A flag.
    Bool(bool),
    /// A count, a code, a Unix timestamp in seconds.
    Int(i64),
    /// A measurement: seconds, ratios.
    Float(f64),
    /// Text: a header value, a banner.
    Str(String),
    /// A list: resolved addresses, EHLO extensions.
    List(Vec<Value>),
    /// Nested observations: per queue, per resolver.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(value) => Some(*value as f64),
            Value::Float(value) => Some(*value),
            _ => None,
        }
    }

    /// The value as an integer, if it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(value) => Some(*value),
            _ => None,
        }
    }

    /// The value as text, if it is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(value) => Some(value),
            _ => None,
        }
    }

    /// The value as a flag, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(value) => Some(*value),
            _ => None,
        }
    }

    /// The nested map, if it is one.
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(map) => Some(map),
            _ => None,
        }
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

impl From<i32> for Value {
    fn from(value: i32) -> Self {
        Value::Int(i64::from(value))
    }
}

impl From<u16> for Value {
    fn from(value: u16) -> Self {
        Value::Int(i64::from(value))
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Value::Int(i64::from(value))
    }
}

impl From<u64> for Value {
    fn from(value: u64) -> Self {
        Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<usize> for Value {
    fn from(value: usize) -> Self {
        Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Float(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Str(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Str(value)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(value: Vec<T>) -> Self {
        Value::List(value.into_iter().map(Into::into).collect())
    }
}

impl From<BTreeMap<String, Value>> for Value {
    fn from(value: BTreeMap<String, Value>) -> Self {
        Value::Map(value)
    }
}

/// Everything one run observed, by key. Keys are snake_case and documented per kind.
pub type Observations = BTreeMap<String, Value>;

// === Outcome and ProbeResult ===

/// What a probe's `run` returns: the verdict and what it saw. Timing is added by [`execute`].
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Whether the target is healthy by this probe's standard.
    pub ok: bool,
    /// Why not, when not ok.
    pub error: Option<ErrorClass>,
    /// One line for humans: what was seen, or what failed and how.
    pub message: String,
    /// Kind-specific facts rules can read.
    pub observations: Observations,
}

impl Outcome {
    /// A healthy run.
    pub fn success(message: impl Into<String>) -> Self {
        Self {
            ok: true,
            error: None,
            message: message.into(),
            observations: Observations::new(),
        }
    }

    /// A failed run.
    pub fn failure(error: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(error),
            message: message.into(),
            observations: Observations::new(),
        }
    }

    /// Adds an observation, builder style.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.observations.insert(key.to_owned(), value.into());
        self
    }

    /// Adds an observation.
    pub fn observe(&mut self, key: &str, value: impl Into<Value>) {
        self.observations.insert(key.to_owned(), value.into());
    }

    /// Adds several observations collected before the verdict was known.
    #[must_use]
    pub fn with_all(mut self, observations: Observations) -> Self {
        self.observations.extend(observations);
        self
    }
}

/// One finished run: the outcome plus how long it took and where the time went.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    /// Whether the target is healthy.
    pub ok: bool,
    /// Why not.
    pub error: Option<ErrorClass>,
    /// One line for humans.
    pub message: String,
    /// Kind-specific facts.
    pub observations: Observations,
    /// Wall time of the whole run.
    pub duration: Duration,
    /// Time per phase, in the order the phases ran.
    pub phases: Vec<(&'static str, Duration)>,
}

impl ProbeResult {
    /// The duration of `phase`, if it ran.
    pub fn phase(&self, phase: &str) -> Option<Duration> {
        self.phases
            .iter()
            .find(|(name, _)| *name == phase)
            .map(|(_, duration)| *duration)
    }

    /// An observation by key.
    pub fn observation(&self, key: &str) -> Option<&Value> {
        self.observations.get(key)
    }
}

// === ProbeContext ===

/// Handed to every run: the deadline, and a recorder for the phases the probe goes through.
///
/// Probes call [`ProbeContext::phase`] as they move from one step to the next (`resolve`,
/// `connect`, `tls`, ...). Because the recorder is shared with [`execute`], a run that is cut off
/// at its timeout still reports the phases it finished and the one it was stuck in.
#[derive(Clone, Debug)]
pub struct ProbeContext {
    deadline: Instant,
    timings: Arc<Mutex<Timings>>,
}

#[derive(Debug)]
struct Timings {
    current: Option<(&'static str, Instant)>,
    done: Vec<(&'static str, Duration)>,
    /// Facts learned along the way (resolved addresses, the peer's certificate), kept so that a
    /// run cut off at its timeout still reports them.
    partial: Observations,
}

impl ProbeContext {
    /// A context for a run that must end by `deadline`.
    pub fn new(deadline: Instant) -> Self {
        Self {
            deadline,
            timings: Arc::new(Mutex::new(Timings {
                current: None,
                done: Vec::new(),
                partial: Observations::new(),
            })),
        }
    }

    /// When the run will be cut off.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Ends the current phase (if any) and starts `name`.
    pub fn phase(&self, name: &'static str) {
        let now = Instant::now();
        let mut timings = self.lock();
        timings.close(now);
        timings.current = Some((name, now));
    }

    /// Ends the current phase without starting another.
    pub fn end_phase(&self) {
        let now = Instant::now();
        self.lock().close(now);
    }

    /// Records a phase measured elsewhere (e.g. inside a library callback).
    pub fn record(&self, name: &'static str, duration: Duration) {
        self.lock().done.push((name, duration));
    }

    /// Records a fact as soon as it is known. If the run then times out, the result still
    /// carries it; if the run finishes, the outcome's own observations take precedence.
    pub fn observe(&self, key: &str, value: impl Into<Value>) {
        self.lock().partial.insert(key.to_owned(), value.into());
    }

    fn take_partial(&self) -> Observations {
        std::mem::take(&mut self.lock().partial)
    }

    /// The phase in progress, if any.
    pub fn current_phase(&self) -> Option<&'static str> {
        self.lock().current.map(|(name, _)| name)
    }

    /// Closes the current phase and returns all phases so far.
    fn take_phases(&self) -> Vec<(&'static str, Duration)> {
        let now = Instant::now();
        let mut timings = self.lock();
        timings.close(now);
        timings.done.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timings> {
        // A panicking probe may poison the lock; the timings are still meaningful.
        self.timings.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Timings {
    fn close(&mut self, now: Instant) {
        if let Some((name, started)) = self.current.take() {
            self.done
                .push((name, now.saturating_duration_since(started)));
        }
    }
}

// === execute ===

/// Runs `probe` once with a hard `timeout`. Never panics, never takes longer than `timeout`
/// (plus scheduling noise): a hang becomes [`ErrorClass::Timeout`] naming the phase it hung in,
/// and a panic inside the probe becomes [`ErrorClass::Internal`]. The message is made one line
/// of at most [`crate::text::MESSAGE_MAX`] characters, control characters escaped.
pub async fn execute(probe: Arc<Probe>, timeout: Duration) -> ProbeResult {
    let kind = probe.kind();
    let mut result = execute_with(timeout, move |ctx| async move { probe.run(&ctx).await }).await;
    conform(kind, &mut result);
    result
}

/// Brings the result's observations to the kind's declared shape ([`Schema::conform`]). A
/// mismatch is a bug in the kind: the value is dropped and logged, and in a debug build (every
/// test) the run fails as `internal`, so that no test passes over it.
fn conform(kind: Kind, result: &mut ProbeResult) {
    let mismatches = kind.schema().conform(&mut result.observations);
    for mismatch in &mismatches {
        tracing::warn!(kind = %kind, %mismatch, "a probe observed what its schema does not declare (a honeyguide bug)");
    }
    if cfg!(debug_assertions)
        && let Some(first) = mismatches.first()
    {
        result.ok = false;
        result.error = Some(ErrorClass::Internal);
        result.message = crate::text::one_line(
            &format!("{kind} schema: {first} (a honeyguide bug)"),
            crate::text::MESSAGE_MAX,
        );
    }
}

/// [`execute`] for any run function: the guard itself, separate from the probe kinds so that it
/// can be tested with runs that hang or panic on purpose.
pub async fn execute_with<F, Fut>(timeout: Duration, run: F) -> ProbeResult
where
    F: FnOnce(ProbeContext) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let started = Instant::now();
    let ctx = ProbeContext::new(crate::spec::duration::after(started, timeout));
    // A task of its own, so that a panic is caught by the runtime instead of unwinding into the
    // scheduler, and so that aborting it on timeout drops every socket the probe holds.
    let mut task = tokio::spawn(run(ctx.clone()));
    let outcome = match tokio::time::timeout_at(ctx.deadline(), &mut task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(join_error)) => {
            let message = if join_error.is_panic() {
                let error =
                    crate::text::one_line(&join_error.to_string(), crate::text::MESSAGE_MAX);
                tracing::warn!(%error, "probe panicked; reported as an internal error");
                "probe panicked (a honeyguide bug, please report it)".to_owned()
            } else {
                "probe run was cancelled".to_owned()
            };
            Outcome::failure(ErrorClass::Internal, message)
        }
        Err(_elapsed) => {
            task.abort();
            timed_out(&ctx, timeout)
        }
    };
    let mut observations = ctx.take_partial();
    observations.extend(outcome.observations);
    ProbeResult {
        ok: outcome.ok,
        error: outcome.error,
        // Every kind's message, present and future, often quotes what a target said: here, once,
        // it becomes one bounded line for the `check` table, logs, `/status` and the page.
        message: crate::text::one_line(&outcome.message, crate::text::MESSAGE_MAX),
        observations,
        duration: started.elapsed(),
        phases: ctx.take_phases(),
    }
}

fn timed_out(ctx: &ProbeContext, timeout: Duration) -> Outcome {
    let phase = ctx.current_phase();
    let limit = humantime::format_duration(timeout);
    let message = match phase {
        Some(phase) => format!("timed out after {limit} during {phase}"),
        None => format!("timed out after {limit}"),
    };
    Outcome::failure(ErrorClass::Timeout, message)
        .with(RUN_OBSERVATIONS[0].name, phase.map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that finishes reports its outcome and the phases it marked, in order.
    #[tokio::test(start_paused = true)]
    async fn a_finished_run_reports_its_phases() {
        let result = execute_with(Duration::from_secs(5), |ctx| async move {
            ctx.phase("connect");
            tokio::time::sleep(Duration::from_millis(30)).await;
            ctx.phase("query");
            tokio::time::sleep(Duration::from_millis(20)).await;
            Outcome::success("fine")
        })
        .await;
        assert!(result.ok);
        assert_eq!(result.phase("connect"), Some(Duration::from_millis(30)));
        assert_eq!(result.phase("query"), Some(Duration::from_millis(20)));
        assert_eq!(result.duration, Duration::from_millis(50));
    }

    /// A run that hangs is cut off at the timeout, names the phase it hung in, and keeps the
    /// phases it finished.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_run_times_out_naming_the_phase() {
        let result = execute_with(Duration::from_secs(2), |ctx| async move {
            ctx.phase("connect");
            tokio::time::sleep(Duration::from_millis(100)).await;
            ctx.observe("remote_addr", "192.0.2.1:443");
            ctx.phase("first_byte");
            std::future::pending::<()>().await;
            Outcome::success("unreachable")
        })
        .await;
        assert!(!result.ok);
        assert_eq!(result.error, Some(ErrorClass::Timeout));
        assert_eq!(result.message, "timed out after 2s during first_byte");
        assert_eq!(
            result.observation("timeout_phase"),
            Some(&Value::Str("first_byte".into()))
        );
        assert_eq!(result.phase("connect"), Some(Duration::from_millis(100)));
        assert_eq!(result.duration, Duration::from_secs(2));
        assert_eq!(
            result.observation("remote_addr"),
            Some(&Value::Str("192.0.2.1:443".into()))
        );
    }

    /// Whatever a kind puts in its message (a peer's words with newlines, escapes, megabytes),
    /// the result's message is one bounded line with the control characters escaped.
    #[tokio::test(start_paused = true)]
    async fn every_message_is_one_bounded_line() {
        let result = execute_with(Duration::from_secs(1), |_ctx| async move {
            Outcome::failure(ErrorClass::Protocol, "said: \x1b[2Jgone\r\nsecond line")
        })
        .await;
        assert_eq!(result.message, "said: \\x1b[2Jgone\\r\\nsecond line");
        let result = execute_with(Duration::from_secs(1), |_ctx| async move {
            Outcome::failure(ErrorClass::Protocol, "y".repeat(1 << 20))
        })
        .await;
        assert_eq!(result.message.chars().count(), crate::text::MESSAGE_MAX);
        assert!(result.message.ends_with('…'));
    }

    /// A timeout no instant can hold (the loader caps timeouts at 10m) does not panic the run.
    #[tokio::test(start_paused = true)]
    async fn a_timeout_beyond_any_instant_does_not_panic() {
        let result = execute_with(
            Duration::MAX,
            |_ctx| async move { Outcome::success("fine") },
        )
        .await;
        assert!(result.ok, "{}", result.message);
    }

    /// A probe bug that panics is a failed result of class `internal`, not a crash.
    #[tokio::test]
    async fn a_panicking_run_is_an_internal_error() {
        let result = execute_with(Duration::from_secs(1), |_ctx| async move {
            let items: Vec<u8> = Vec::new();
            // Index out of bounds on purpose.
            let _ = items[usize::from(items.is_empty())];
            Outcome::success("unreachable")
        })
        .await;
        assert_eq!(result.error, Some(ErrorClass::Internal));
        assert!(result.message.contains("panicked"), "{}", result.message);
    }
}
