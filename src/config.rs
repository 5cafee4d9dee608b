//! `probes.toml`: parsing, validation and the validated [`Config`] the rest of the daemon uses.
//!
//! Loading is two steps. The file is parsed into a spanned TOML tree (syntax errors stop here),
//! `${ENV}` references are interpolated value by value, and then each section is deserialized
//! strictly (`deny_unknown_fields`) and validated into immutable types: probes are built into
//! their runtime form ([`crate::probe::Probe`]) with secrets resolved and URLs parsed. Every
//! problem is collected with its file, line, column and key, and the load fails with all of them:
//! the daemon never starts half-configured.
//!
//! This module owns the shape of the file; each probe kind owns its own keys
//! (`src/probe/<kind>.rs`, `Spec`).

pub mod alerting;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use alerting::{AlertingConfig, ApiConfig, NotifierConfig, StoreConfig};
// The types of this module's own signatures (`parse` takes a `Source`, fails with
// `ConfigErrors`), so callers of `config::parse` need not know where they live.
pub use crate::spec::{ConfigError, ConfigErrors, Source};

use crate::probe::{self, Kind, Probe};
use crate::spec::{BuildContext, ErrorSink, HumanDuration, Section, duration, interpolate};

/// Default address of the HTTP server (`/metrics`, `/status`, `/`).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9898";
/// Default probe interval when neither the probe nor `[defaults]` sets one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Default probe timeout when neither the probe nor `[defaults]` sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on probe runs in flight at once.
pub const DEFAULT_MAX_CONCURRENT: usize = 1000;

/// The validated configuration: everything the daemon needs, nothing left to check.
#[derive(Debug)]
pub struct Config {
    /// The file this came from.
    pub path: PathBuf,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[scheduler]`.
    pub scheduler: SchedulerConfig,
    /// `[[probe]]`, in file order; names are unique.
    pub probes: Vec<ProbeConfig>,
    /// `[alerting]`: grouping, repeat and delivery timing.
    pub alerting: AlertingConfig,
    /// `[store]`: where alert state, the outbox and history persist.
    pub store: StoreConfig,
    /// `[api]`: the token of the runtime API (silences); none means the API is off.
    pub api: ApiConfig,
    /// `[[notifier]]`, in file order; names are unique.
    pub notifiers: Vec<NotifierConfig>,
    /// `[[maintenance]]` windows, as silences; names are unique.
    pub maintenance: Vec<crate::alert::silence::Silence>,
}

/// `[server]`: where honeyguide serves its own endpoints, and the bounds that keep its clients
/// from taking what the probes need (see `src/server/serve.rs`).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Connections held open at once; beyond it, an idle one makes way or the newcomer is
    /// refused.
    pub max_connections: usize,
    /// How long a client may take to send a whole request head.
    pub header_timeout: Duration,
    /// How long a connection may sit without a request in flight.
    pub idle_timeout: Duration,
    /// How long one request may take, reading its body included.
    pub request_timeout: Duration,
    /// Whether a change of `probes.toml` or of the rules directory reloads the configuration
    /// (as SIGHUP does).
    pub watch_config: bool,
    /// Where this instance probes from (`outside-fra`, `cluster`): shown on `/status`, the page
    /// and in every notification, and exported as `honeyguide_vantage_info` so several instances'
    /// results can be told apart in VictoriaMetrics.
    pub vantage: String,
}

/// Default `[server] max_connections`: far below the usual 1,024 file descriptors, so a
/// crowd of clients never takes the descriptors probes need.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default `[server] header_timeout`: real clients send their head in one packet.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `[server] idle_timeout`: longer than a 30 s scrape interval, so vmagent keeps its
/// connection between scrapes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default `[server] request_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `[server] vantage`: a label value, not a description.
pub const MAX_VANTAGE_LEN: usize = 63;

/// The range of `[server] max_connections`.
pub const MAX_CONNECTIONS_RANGE: std::ops::RangeInclusive<usize> = 8..=65_536;

/// `[scheduler]`: how probe runs share the machine.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Probe runs in flight at once, across all probes.
    pub max_concurrent: usize,
}

/// One `[[probe]]`: the common settings plus the kind's built runtime form.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Unique name, used in metrics labels, `/status` and rules (`probes["name"]`).
    pub name: String,
    /// How often to run.
    pub interval: Duration,
    /// Hard limit for one run; never longer than `interval`.
    pub timeout: Duration,
    /// Free-form labels, shown in `/status`, attached to alerts and `honeyguide_probe_info`.
    pub labels: BTreeMap<String, String>,
    /// The kind-specific runtime probe.
    pub probe: Arc<Probe>,
    /// Changes when anything of the probe changes ([`crate::spec::fingerprint`]): what a
    /// reload compares to keep an unchanged probe running.
    pub fingerprint: u64,
}

impl Config {
    /// The configured probes, name -> kind: what a catalog of rules is checked against
    /// ([`crate::catalog::load`]).
    pub fn probe_kinds(&self) -> BTreeMap<String, Kind> {
        self.probes
            .iter()
            .map(|probe| (probe.name.clone(), probe.kind()))
            .collect()
    }
}

impl Config {
    /// The probes as a timeline of rule examples or a replay runs them, in config order (the
    /// order of the daemon's views).
    pub fn timeline_probes(&self) -> Vec<crate::catalog::timeline::TimelineProbe> {
        self.probes
            .iter()
            .map(|probe| crate::catalog::timeline::TimelineProbe {
                name: probe.name.clone(),
                kind: probe.kind(),
                interval: probe.interval,
                timeout: probe.timeout,
            })
            .collect()
    }
}

impl ProbeConfig {
    /// The probe's kind.
    pub fn kind(&self) -> Kind {
        self.probe.kind()
    }
}

/// Reads and validates `path`, interpolating from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let source = Source::read(path, None).map_err(|error| ConfigErrors(vec![error]))?;
    parse(&source, &|name| std::env::var(name).ok())
}

/// Validates already-read text; `lookup` resolves `${ENV}` references.
pub fn parse(source: &Source, lookup: interpolate::Lookup<'_>) -> Result<Config, ConfigErrors> {
    let mut table = match DeTable::parse(source.text()) {
        Ok(document) => document.into_inner(),
        Err(error) => return Err(ConfigErrors(vec![source.syntax_error(&error)])),
    };
    let mut sink = ErrorSink::new(source);
    for (key, value) in table.iter_mut() {
        interpolate::interpolate_tree(value, key.get_ref(), lookup, &mut sink);
    }

    let base_dir = source
        .path()
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default();
    let cx = BuildContext::new(base_dir).with_env(lookup);

    let server = take_section::<RawServer>(&mut table, "server", &mut sink);
    let scheduler = take_section::<RawScheduler>(&mut table, "scheduler", &mut sink);
    let defaults = take_section::<RawDefaults>(&mut table, "defaults", &mut sink);
    let alerting = take_section::<alerting::RawAlerting>(&mut table, "alerting", &mut sink);
    let store = take_section::<alerting::RawStore>(&mut table, "store", &mut sink);
    let api = take_section::<alerting::RawApi>(&mut table, "api", &mut sink);
    let probes = table.remove("probe");
    let notifiers = table.remove("notifier");
    let maintenance = table.remove("maintenance");
    for (key, _) in table.iter() {
        sink.push(
            &key.span(),
            key.get_ref(),
            "unknown section, expected one of `server`, `scheduler`, `defaults`, `probe`, \
             `alerting`, `store`, `api`, `notifier`, `maintenance`",
        );
    }

    let server = validate_server(server.unwrap_or_default(), &mut sink);
    let scheduler = validate_scheduler(scheduler.unwrap_or_default(), &mut sink);
    let defaults = validate_defaults(defaults.unwrap_or_default(), &mut sink);
    let probes = match probes {
        Some(value) => load_probes(value, &defaults, &cx, &mut sink),
        None => Vec::new(),
    };
    let alerting = alerting::validate_alerting(alerting.unwrap_or_default(), &mut sink);
    let store = alerting::validate_store(store.unwrap_or_default(), &cx, &mut sink);
    let api = alerting::validate_api(api.unwrap_or_default(), &cx, &mut sink);
    let notifiers = match notifiers {
        Some(value) => alerting::load_notifiers(value, &cx, &mut sink),
        None => Vec::new(),
    };
    let maintenance = match maintenance {
        Some(value) => alerting::load_maintenance(value, &mut sink),
        None => Vec::new(),
    };

    // No error may quote what a `*_file` holds; `${ENV}` values were marked as they were
    // interpolated.
    for (key, contents) in cx.file_secrets() {
        sink.taint(crate::spec::source::Tainted {
            span: None,
            origin: format!("`{key}`"),
            key,
            value: contents,
        });
    }
    sink.finish(Config {
        path: source.path().to_owned(),
        server,
        scheduler,
        probes,
        alerting,
        store,
        api,
        notifiers,
        maintenance,
    })
}

// === raw sections ===

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    max_connections: Option<Spanned<usize>>,
    header_timeout: Option<Spanned<HumanDuration>>,
    idle_timeout: Option<Spanned<HumanDuration>>,
    request_timeout: Option<Spanned<HumanDuration>>,
    watch_config: Option<bool>,
    vantage: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduler {
    max_concurrent: Option<Spanned<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    interval: Option<Spanned<HumanDuration>>,
    timeout: Option<Spanned<HumanDuration>>,
}

/// The keys every probe has, whatever its kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommon {
    name: Spanned<String>,
    #[expect(
        dead_code,
        reason = "read separately to pick the kind; listed so serde accepts it"
    )]
    kind: String,
    interval: Option<Spanned<HumanDuration>>,
    timeout: Option<Spanned<HumanDuration>>,
    labels: Option<Spanned<BTreeMap<String, String>>>,
}

const COMMON_KEYS: [&str; 5] = ["name", "kind", "interval", "timeout", "labels"];

struct Defaults {
    interval: Duration,
    timeout: Duration,
}

fn take_section<T: DeserializeOwned>(
    table: &mut DeTable<'_>,
    name: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<T> {
    let value = table.remove(name)?;
    sink.deserialize(value, name)
}

fn validate_server(raw: RawServer, sink: &mut ErrorSink<'_>) -> ServerConfig {
    let fallback = DEFAULT_LISTEN
        .parse()
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 9898)));
    let listen = match raw.listen {
        None => fallback,
        Some(listen) => listen.get_ref().parse().unwrap_or_else(|_| {
            sink.push(
                &listen.span(),
                "server.listen",
                format!(
                    "`{}` is not an address like \"0.0.0.0:9898\"",
                    listen.get_ref()
                ),
            );
            fallback
        }),
    };
    let max_connections = match raw.max_connections {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(value) if !MAX_CONNECTIONS_RANGE.contains(value.get_ref()) => {
            sink.push(
                &value.span(),
                "server.max_connections",
                format!(
                    "must be between {} and {}",
                    MAX_CONNECTIONS_RANGE.start(),
                    MAX_CONNECTIONS_RANGE.end()
                ),
            );
            DEFAULT_MAX_CONNECTIONS
        }
        Some(value) => value.into_inner(),
    };
    let mut timeout = |value: Option<Spanned<HumanDuration>>, key: &str, default: Duration| {
        duration::SERVER_TIMEOUT
            .spanned(value, &format!("server.{key}"), sink)
            .unwrap_or(default)
    };
    ServerConfig {
        listen,
        header_timeout: timeout(raw.header_timeout, "header_timeout", DEFAULT_HEADER_TIMEOUT),
        idle_timeout: timeout(raw.idle_timeout, "idle_timeout", DEFAULT_IDLE_TIMEOUT),
        request_timeout: timeout(
            raw.request_timeout,
            "request_timeout",
            DEFAULT_REQUEST_TIMEOUT,
        ),
        watch_config: raw.watch_config.unwrap_or(false),
        max_connections,
        vantage: validate_vantage(raw.vantage, sink),
    }
}

/// `[server] vantage`, or the host name when absent or empty: letters, digits, `.`, `_` and `-`, so it is a label
/// value, a file name and a word in a subject line alike.
fn validate_vantage(raw: Option<Spanned<String>>, sink: &mut ErrorSink<'_>) -> String {
    let Some(raw) = raw else {
        return host_name();
    };
    let name = raw.get_ref();
    // `vantage = "${HONEYGUIDE_VANTAGE:-}"` with the variable unset means the host name.
    if name.is_empty() {
        return host_name();
    }
    if is_vantage_name(name) {
        return name.clone();
    }
    sink.push(
        &raw.span(),
        "server.vantage",
        format!(
            "must be 1 to {MAX_VANTAGE_LEN} letters, digits, `.`, `_` or `-` (like \
             \"outside-fra\")"
        ),
    );
    host_name()
}

fn is_vantage_name(name: &str) -> bool {
    name.len() <= MAX_VANTAGE_LEN && is_safe_name(name)
}

/// The kernel's host name, the default vantage; `honeyguide` when it cannot be read or is not
/// a vantage name (a pod's host name is its name, which changes with every rollout: the
/// shipped deployment sets the vantage).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| is_vantage_name(name))
        .unwrap_or_else(|| "honeyguide".to_owned())
}

fn validate_scheduler(raw: RawScheduler, sink: &mut ErrorSink<'_>) -> SchedulerConfig {
    let max_concurrent = match raw.max_concurrent {
        None => DEFAULT_MAX_CONCURRENT,
        Some(value) if *value.get_ref() == 0 => {
            sink.push(
                &value.span(),
                "scheduler.max_concurrent",
                "must be at least 1",
            );
            DEFAULT_MAX_CONCURRENT
        }
        Some(value) => value.into_inner(),
    };
    SchedulerConfig { max_concurrent }
}

fn validate_defaults(raw: RawDefaults, sink: &mut ErrorSink<'_>) -> Defaults {
    let interval = duration::PROBE_INTERVAL
        .spanned(raw.interval, "defaults.interval", sink)
        .unwrap_or(DEFAULT_INTERVAL);
    let timeout = duration::TIMEOUT
        .spanned(raw.timeout, "defaults.timeout", sink)
        .unwrap_or(DEFAULT_TIMEOUT);
    Defaults { interval, timeout }
}

// === probes ===

fn load_probes(
    value: Spanned<DeValue<'_>>,
    defaults: &Defaults,
    cx: &BuildContext,
    sink: &mut ErrorSink<'_>,
) -> Vec<ProbeConfig> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        sink.push(&span, "probe", "write probes as [[probe]] tables");
        return Vec::new();
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut probes = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let Some(probe) = load_probe(index, item, defaults, cx, sink) else {
            continue;
        };
        if !seen.insert(probe.0.name.clone()) {
            sink.push(
                &probe.1,
                &format!("probe[{}].name", probe.0.name),
                format!("duplicate probe name `{}`", probe.0.name),
            );
            continue;
        }
        probes.push(probe.0);
    }
    probes
}

/// Loads one `[[probe]]`; returns the probe and the span of its name for later checks.
fn load_probe(
    index: usize,
    item: Spanned<DeValue<'_>>,
    defaults: &Defaults,
    cx: &BuildContext,
    sink: &mut ErrorSink<'_>,
) -> Option<(ProbeConfig, Range<usize>)> {
    let fingerprint_of = {
        let value = item.get_ref().clone();
        move |interval: Duration, timeout: Duration| {
            crate::spec::fingerprint(&value, cx, &(interval, timeout))
        }
    };
    let entry =
        split_kinded_entry::<Kind>("probe", index, item, &COMMON_KEYS, &Kind::list(), sink)?;
    let (span, label) = (entry.span, entry.label);
    let common: Option<RawCommon> = sink.deserialize(entry.common, &label);
    let built = entry.kind.and_then(|kind| {
        let section = Section {
            value: entry.own,
            label: label.clone(),
            common_keys: &COMMON_KEYS,
        };
        probe::build(kind, section, cx, sink)
    });
    let common = common?;

    let name_span = common.name.span();
    let name = common.name.into_inner();
    let valid_name = check_entry_name("probe", &name, &name_span, &label, sink);
    let interval = duration::PROBE_INTERVAL
        .spanned(common.interval, &format!("{label}.interval"), sink)
        .unwrap_or(defaults.interval);
    let timeout_span = common.timeout.as_ref().map(Spanned::span);
    // Without a timeout of its own, a probe gets the default capped at its interval: a fast
    // probe (`interval = "1s"`) should not need a timeout line just to be valid.
    let timeout = duration::TIMEOUT
        .spanned(common.timeout, &format!("{label}.timeout"), sink)
        .unwrap_or(defaults.timeout.min(interval));
    if let Some(timeout_span) = timeout_span.filter(|_| timeout > interval) {
        sink.push(
            &timeout_span,
            &format!("{label}.timeout"),
            format!(
                "timeout ({}) must not be longer than the interval ({})",
                HumanDuration(timeout),
                HumanDuration(interval)
            ),
        );
    }
    let (labels_span, labels) = common
        .labels
        .map_or((span.clone(), BTreeMap::new()), |labels| {
            (labels.span(), labels.into_inner())
        });
    for key in labels.keys() {
        if let Err(message) = check_label_name(key) {
            sink.push(&labels_span, &format!("{label}.labels.{key}"), message);
        }
    }
    let probe = built?;
    valid_name.then(|| {
        (
            ProbeConfig {
                name,
                interval,
                timeout,
                fingerprint: fingerprint_of(interval, timeout),
                labels,
                probe: Arc::new(probe),
            },
            name_span,
        )
    })
}

/// A `[[probe]]` or `[[notifier]]` entry taken apart: the keys every kind shares, which the
/// section deserializes itself, and the kind's own keys, which the kind deserializes.
pub(crate) struct KindedEntry<'i, K> {
    /// The whole entry.
    pub span: Range<usize>,
    /// `probe[name]` (or `probe[3]` before a name is known), for messages.
    pub label: String,
    /// The kind, when present and known; otherwise the error is already recorded.
    pub kind: Option<K>,
    /// The common keys, as a table.
    pub common: Spanned<DeValue<'i>>,
    /// Everything else: the kind's own keys.
    pub own: Spanned<DeValue<'i>>,
}

/// Splits entry `index` of a `[[what]]` array; `kinds` lists the valid kinds for messages.
pub(crate) fn split_kinded_entry<'i, K: std::str::FromStr>(
    what: &str,
    index: usize,
    item: Spanned<DeValue<'i>>,
    common_keys: &[&str],
    kinds: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<KindedEntry<'i, K>> {
    let span = item.span();
    let DeValue::Table(mut table) = item.into_inner() else {
        sink.push(
            &span,
            &format!("{what}[{index}]"),
            format!("a {what} must be a table"),
        );
        return None;
    };
    let label = match table.get("name").and_then(|name| name.get_ref().as_str()) {
        Some(name) => format!("{what}[{name}]"),
        None => format!("{what}[{index}]"),
    };
    let kind = match table.get("kind") {
        None => {
            sink.push(
                &span,
                &format!("{label}.kind"),
                format!("missing key `kind`, expected one of {kinds}"),
            );
            None
        }
        Some(kind) => {
            let parsed = kind
                .get_ref()
                .as_str()
                .and_then(|text| text.parse::<K>().ok());
            if parsed.is_none() {
                sink.push(
                    &kind.span(),
                    &format!("{label}.kind"),
                    format!("unknown {what} kind, expected one of {kinds}"),
                );
            }
            parsed
        }
    };
    let mut common = DeTable::new();
    for key in common_keys {
        if let Some((name, value)) = table.remove_entry(*key) {
            common.insert(name, value);
        }
    }
    Some(KindedEntry {
        common: Spanned::new(span.clone(), DeValue::Table(common)),
        own: Spanned::new(span.clone(), DeValue::Table(table)),
        span,
        label,
        kind,
    })
}

/// Letters, digits, `-`, `_` and `.`, at least one: safe in a label value, a URL path, a file
/// name and a rule.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Probe and notifier names appear in metric labels, URLs and rules, so they are kept to a safe
/// alphabet. Records an error and returns false otherwise.
pub(crate) fn check_entry_name(
    what: &str,
    name: &str,
    span: &Range<usize>,
    label: &str,
    sink: &mut ErrorSink<'_>,
) -> bool {
    let valid = is_safe_name(name);
    if !valid {
        sink.push(
            span,
            &format!("{label}.name"),
            format!("`{name}` is not a valid {what} name: use letters, digits, `-`, `_` and `.`"),
        );
    }
    valid
}

/// Labels become Prometheus label names on `honeyguide_probe_info`.
fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`{name}` is not a valid label name (letters, digits and `_`)"
        ));
    }
    if matches!(name, "probe" | "kind") || name.starts_with("__") {
        return Err(format!("label name `{name}` is reserved"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Config, ConfigErrors> {
        parse(&Source::new("probes.toml", text.to_owned()), &|_| None)
    }

    fn probe(name: &str, extra: &str) -> String {
        format!(
            "[[probe]]\nname = \"{name}\"\nkind = \"http\"\nurl = \"http://127.0.0.1/\"\n{extra}\n"
        )
    }

    /// The vantage defaults to the host name; a given one must be a label-safe word, and a bad
    /// one is located.
    #[test]
    fn the_vantage_is_the_host_name_or_a_word() {
        let config = parse_text(&probe("p", "")).unwrap();
        assert!(
            is_vantage_name(&config.server.vantage),
            "{}",
            config.server.vantage
        );
        let config = parse_text(&format!(
            "[server]\nvantage = \"outside-fra\"\n\n{}",
            probe("p", "")
        ))
        .unwrap();
        assert_eq!(config.server.vantage, "outside-fra");
        let errors = parse_text(&format!(
            "[server]\nvantage = \"outside fra\"\n\n{}",
            probe("p", "")
        ))
        .unwrap_err();
        assert_eq!(
            errors.to_string(),
            "probes.toml:2:11: server.vantage: must be 1 to 63 letters, digits, `.`, `_` or `-` \
             (like \"outside-fra\")"
        );
    }

    /// A probe without its own timeout gets the default, capped at its interval.
    #[test]
    fn default_timeout_is_capped_at_the_interval() {
        let config = parse_text(&probe("fast", "interval = \"1s\"")).unwrap();
        assert_eq!(config.probes[0].timeout, Duration::from_secs(1));
        let config = parse_text(&probe("slow", "")).unwrap();
        assert_eq!(config.probes[0].interval, DEFAULT_INTERVAL);
        assert_eq!(config.probes[0].timeout, DEFAULT_TIMEOUT);
    }

    /// An explicit timeout longer than the interval is an error at the timeout's position.
    #[test]
    fn explicit_timeout_longer_than_interval_is_an_error() {
        let errors = parse_text(&probe("p", "interval = \"5s\"\ntimeout = \"6s\"")).unwrap_err();
        assert_eq!(
            errors.to_string(),
            "probes.toml:6:11: probe[p].timeout: timeout (6s) must not be longer than the interval (5s)"
        );
    }

    /// Probe durations have a range: no probe runs more than once a second, no timeout is
    /// longer than ten minutes, and a kind's own durations are bounded the same way.
    #[test]
    fn probe_durations_are_bounded() {
        let text = format!(
            "[defaults]\ninterval = \"1ns\"\ntimeout = \"500000000000y\"\n\n{}\n{}\n{}\n{}",
            probe("fast", "interval = \"999ms\""),
            probe("slow", "interval = \"25h\"\ntimeout = \"11m\""),
            "[[probe]]\nname = \"dns\"\nkind = \"dns\"\nquery_name = \"example.com\"\n\
             resolver_timeout = \"0s\"\n",
            "[[probe]]\nname = \"q\"\nkind = \"asynq\"\nredis = { address = \"127.0.0.1:6379\" }\n\
             stall_window = \"0s\"\nmax_latency = \"31d\"\ncron_grace = \"2d\"\n",
        );
        let errors = parse_text(&text).unwrap_err().to_string();
        let lines: Vec<&str> = errors.lines().collect();
        assert_eq!(
            lines,
            [
                "probes.toml:2:12: defaults.interval: must be at least 1s (the range is 1s to 24h)",
                "probes.toml:3:11: defaults.timeout: must be at most 10m (the range is 10ms to 10m)",
                "probes.toml:9:12: probe[fast].interval: must be at least 1s (the range is 1s to 24h)",
                "probes.toml:15:12: probe[slow].interval: must be at most 24h (the range is 1s to 24h)",
                "probes.toml:16:11: probe[slow].timeout: must be at most 10m (the range is 10ms to 10m)",
                "probes.toml:22:20: probe[dns].resolver_timeout: must be at least 10ms (the range is 10ms to 10m)",
                "probes.toml:28:16: probe[q].stall_window: must be at least 1s (the range is 1s to 7d)",
                "probes.toml:29:15: probe[q].max_latency: must be at most 30d (the range is 1s to 30d)",
                "probes.toml:30:14: probe[q].cron_grace: must be at most 24h (the range is 0s to 24h)",
            ]
        );
    }

    /// Every problem is reported in one go, in file order.
    #[test]
    fn duplicates_unknown_sections_and_bad_names_are_all_reported() {
        let text = format!(
            "[serve]\nlisten = \"x\"\n\n{}\n{}\n{}",
            probe("a", ""),
            probe("a", ""),
            probe("bad name", "")
        );
        let errors = parse_text(&text).unwrap_err().to_string();
        let lines: Vec<&str> = errors.lines().collect();
        assert_eq!(
            lines,
            [
                "probes.toml:1:2: serve: unknown section, expected one of `server`, `scheduler`, `defaults`, `probe`, `alerting`, `store`, `api`, `notifier`, `maintenance`",
                "probes.toml:11:8: probe[a].name: duplicate probe name `a`",
                "probes.toml:17:8: probe[bad name].name: `bad name` is not a valid probe name: use letters, digits, `-`, `_` and `.`",
            ]
        );
    }

    /// A value from the environment is never quoted by an error, in any section: the error
    /// names the variable instead.
    #[test]
    fn errors_never_quote_an_interpolated_value() {
        let text = "[server]\nlisten = \"${LISTEN}\"\n\n[[probe]]\nname = \"p\"\nkind = \"http\"\n\
                    url = \"http://127.0.0.1/\"\ninterval = \"${EVERY}\"\n";
        let errors = parse(
            &Source::new("probes.toml", text.to_owned()),
            &|name| match name {
                "LISTEN" => Some("hunter2-not-an-address".to_owned()),
                "EVERY" => Some("3000h".to_owned()),
                _ => None,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(!errors.contains("hunter2"), "{errors}");
        assert_eq!(
            errors.lines().collect::<Vec<_>>(),
            [
                "probes.toml:2:10: server.listen: the value from `${LISTEN}` is not an address \
                 like \"0.0.0.0:9898\"",
                "probes.toml:8:12: probe[p].interval: must be at most 24h (the range is 1s to \
                 24h)",
            ]
        );
    }

    /// `${VAR}` comes from the lookup, `${VAR:-default}` falls back.
    #[test]
    fn values_are_interpolated_from_the_environment() {
        let text = "[server]\nlisten = \"${LISTEN:-127.0.0.1:1}\"\n";
        let config = parse(&Source::new("p.toml", text.to_owned()), &|name| {
            (name == "LISTEN").then(|| "127.0.0.1:7777".to_owned())
        })
        .unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:7777".parse().unwrap());
        let config = parse_text(text).unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:1".parse().unwrap());
    }
}
