//! The alerting sections of `probes.toml`: `[alerting]`, `[store]`, `[api]`, `[[notifier]]`
//! and `[[maintenance]]`, validated into immutable types like the rest of the file.
//!
//! Notifier kinds are a closed set ([`crate::notify::NotifierKind`]); each kind's own keys are
//! its `Spec` in `src/notify/<kind>.rs`, exactly as for probes. The common keys (`name`, `kind`,
//! and the routing keys `severities`, `alerts`, `send_resolved`) are handled here.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::duration::{self, Bounds};
use crate::alert::route::{Glob, Route, parse_severity};
use crate::alert::silence::{Matchers, Origin, Schedule, Silence, Weekly};
use crate::notify::{self, Notifier, NotifierKind};
use crate::spec::{BuildContext, ErrorSink, HumanDuration, Secret, Section, secret};

/// Default `[alerting] group_wait`.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(10);
/// Default `[alerting] group_interval`.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(60);
/// Default `[alerting] repeat_interval`.
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);
/// Default `[alerting] keep_resolved`.
pub const DEFAULT_KEEP_RESOLVED: Duration = Duration::from_secs(3600);
/// Default `[alerting] give_up_after`.
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// An API token shorter than this is refused: it would be guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// `[alerting]`: timing of notifications.
#[derive(Debug, Clone)]
pub struct AlertingConfig {
    /// Wait this long after the first change before sending, to group what starts together.
    pub group_wait: Duration,
    /// Minimum time between two messages to a notifier.
    pub group_interval: Duration,
    /// Re-send a still-firing alert this long after it was last sent.
    pub repeat_interval: Duration,
    /// How long resolved alerts stay in `/status`.
    pub keep_resolved: Duration,
    /// Abandon a notification not delivered within this long.
    pub give_up_after: Duration,
    /// Where honeyguide's pages are reachable, for links in notifications.
    pub external_url: Option<url::Url>,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        Self {
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
            keep_resolved: DEFAULT_KEEP_RESOLVED,
            give_up_after: DEFAULT_GIVE_UP_AFTER,
            external_url: None,
        }
    }
}

/// `[store]`: where state survives restarts.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The SQLite file. Default `honeyguide.db` in the working directory; a relative `path`
    /// in the file is relative to the config file, like every other path.
    pub path: PathBuf,
    /// How long every probe result (and the daemon's own diagnosis changes) is kept, for
    /// `honeyguide replay`.
    pub history_retention: Duration,
}

/// The range of `[store] history_retention`: at least an hour (less is hardly a history to
/// tune a rule on), at most 90 days (about 0.1 GB per probe at a 30 s interval; see
/// docs/alerting.md).
pub const HISTORY_RETENTION: Bounds =
    Bounds::new(Duration::from_secs(3600), Duration::from_secs(90 * 86_400));

/// `[api]`: the token-protected runtime API (silences).
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// The bearer token; `None` turns the API off.
    pub token: Option<Secret>,
}

/// One `[[notifier]]`.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Unique name: outbox key, metrics label, `honeyguide test-alert NAME`.
    pub name: String,
    /// Which alerts it wants.
    pub route: Route,
    /// Whether it gets resolved messages (default true).
    pub send_resolved: bool,
    /// The built notifier.
    pub notifier: Arc<Notifier>,
    /// Changes when anything of the notifier changes: a reload restarts its delivery loop
    /// then, and leaves it alone otherwise.
    pub fingerprint: u64,
}

impl NotifierConfig {
    /// Its kind.
    pub fn kind(&self) -> NotifierKind {
        self.notifier.kind()
    }
}

// === raw sections ===

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerting {
    group_wait: Option<Spanned<HumanDuration>>,
    group_interval: Option<Spanned<HumanDuration>>,
    repeat_interval: Option<Spanned<HumanDuration>>,
    keep_resolved: Option<Spanned<HumanDuration>>,
    give_up_after: Option<Spanned<HumanDuration>>,
    external_url: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    path: Option<Spanned<String>>,
    history_retention: Option<Spanned<HumanDuration>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    token: Option<Spanned<String>>,
    token_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaintenance {
    name: Spanned<String>,
    alerts: Option<Vec<String>>,
    matchers: Option<BTreeMap<String, String>>,
    start: Option<Spanned<String>>,
    end: Option<Spanned<String>>,
    weekly: Option<Spanned<RawWeekly>>,
    comment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeekly {
    day: Spanned<Days>,
    start: Spanned<String>,
    end: Spanned<String>,
    timezone: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Days {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotifierCommon {
    name: Spanned<String>,
    #[expect(
        dead_code,
        reason = "read separately to pick the kind; listed so serde accepts it"
    )]
    kind: String,
    severities: Option<Spanned<Vec<String>>>,
    alerts: Option<Spanned<Vec<String>>>,
    send_resolved: Option<Spanned<bool>>,
}

const NOTIFIER_COMMON_KEYS: [&str; 5] = ["name", "kind", "severities", "alerts", "send_resolved"];

// === validation ===

/// A bounded `[alerting]` duration, or its default when unset or out of range.
fn duration_or(
    value: Option<Spanned<HumanDuration>>,
    key: &str,
    bounds: Bounds,
    default: Duration,
    sink: &mut ErrorSink<'_>,
) -> Duration {
    bounds.spanned(value, key, sink).unwrap_or(default)
}

pub(super) fn validate_alerting(raw: RawAlerting, sink: &mut ErrorSink<'_>) -> AlertingConfig {
    let external_url = raw.external_url.and_then(|text| {
        match notify::parse_http_url("alerting.external_url", text.get_ref()) {
            Ok(url) => Some(url),
            Err(error) => {
                sink.push(&text.span(), &error.key, error.message);
                None
            }
        }
    });
    AlertingConfig {
        group_wait: duration_or(
            raw.group_wait,
            "alerting.group_wait",
            duration::GROUP_WAIT,
            DEFAULT_GROUP_WAIT,
            sink,
        ),
        group_interval: duration_or(
            raw.group_interval,
            "alerting.group_interval",
            duration::GROUP_INTERVAL,
            DEFAULT_GROUP_INTERVAL,
            sink,
        ),
        repeat_interval: duration_or(
            raw.repeat_interval,
            "alerting.repeat_interval",
            duration::REPEAT_INTERVAL,
            DEFAULT_REPEAT_INTERVAL,
            sink,
        ),
        keep_resolved: duration_or(
            raw.keep_resolved,
            "alerting.keep_resolved",
            duration::KEEP_RESOLVED,
            DEFAULT_KEEP_RESOLVED,
            sink,
        ),
        give_up_after: duration_or(
            raw.give_up_after,
            "alerting.give_up_after",
            duration::GIVE_UP_AFTER,
            DEFAULT_GIVE_UP_AFTER,
            sink,
        ),
        external_url,
    }
}

pub(super) fn validate_store(
    raw: RawStore,
    cx: &BuildContext,
    sink: &mut ErrorSink<'_>,
) -> StoreConfig {
    let path = raw.path.map_or_else(
        || PathBuf::from(crate::store::DEFAULT_PATH),
        |path| cx.path(std::path::Path::new(path.get_ref())),
    );
    StoreConfig {
        path,
        history_retention: duration_or(
            raw.history_retention,
            "store.history_retention",
            HISTORY_RETENTION,
            crate::store::DEFAULT_HISTORY_RETENTION,
            sink,
        ),
    }
}

pub(super) fn validate_api(raw: RawApi, cx: &BuildContext, sink: &mut ErrorSink<'_>) -> ApiConfig {
    let span = raw
        .token
        .as_ref()
        .map(Spanned::span)
        .or_else(|| raw.token_file.as_ref().map(Spanned::span))
        .unwrap_or(0..0);
    let token = secret::resolve(
        "token",
        raw.token.map(Spanned::into_inner),
        raw.token_file.as_ref().map(|file| file.get_ref().as_path()),
        cx,
    );
    match token {
        Err(error) => {
            sink.push(&span, &format!("api.{}", error.key), error.message);
            ApiConfig::default()
        }
        // `token = "${HONEYGUIDE_API_TOKEN:-}"` with the variable unset leaves the API off.
        Ok(Some(token)) if token.expose().is_empty() => ApiConfig::default(),
        Ok(Some(token)) if token.expose().chars().count() < MIN_TOKEN_LEN => {
            sink.push(
                &span,
                "api.token",
                format!("the token is too short: use at least {MIN_TOKEN_LEN} random characters"),
            );
            ApiConfig::default()
        }
        Ok(token) => ApiConfig { token },
    }
}

// === maintenance ===

pub(super) fn load_maintenance(
    value: Spanned<DeValue<'_>>,
    sink: &mut ErrorSink<'_>,
) -> Vec<Silence> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        sink.push(
            &span,
            "maintenance",
            "write maintenance windows as [[maintenance]] tables",
        );
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    let mut windows = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let span = item.span();
        let label = match item.get_ref() {
            DeValue::Table(table) => table
                .get("name")
                .and_then(|name| name.get_ref().as_str())
                .map_or_else(
                    || format!("maintenance[{index}]"),
                    |name| format!("maintenance[{name}]"),
                ),
            _ => format!("maintenance[{index}]"),
        };
        let Some(raw) = sink.deserialize::<RawMaintenance>(item, &label) else {
            continue;
        };
        let name_span = raw.name.span();
        let Some(window) = validate_window(raw, &span, &label, sink) else {
            continue;
        };
        if !seen.insert(window.id.clone()) {
            sink.push(
                &name_span,
                &format!("{label}.name"),
                format!("duplicate maintenance name `{}`", window.id),
            );
            continue;
        }
        windows.push(window);
    }
    windows
}

fn validate_window(
    raw: RawMaintenance,
    span: &Range<usize>,
    label: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<Silence> {
    let before = sink.len();
    let name = raw.name.get_ref().clone();
    if name.is_empty() {
        sink.push(
            &raw.name.span(),
            &format!("{label}.name"),
            "must not be empty",
        );
    }
    let matchers = Matchers {
        alerts: raw
            .alerts
            .unwrap_or_default()
            .into_iter()
            .map(Glob::new)
            .collect(),
        labels: raw
            .matchers
            .unwrap_or_default()
            .into_iter()
            .map(|(name, pattern)| (name, Glob::new(pattern)))
            .collect(),
    };
    if matchers.alerts.is_empty() && matchers.labels.is_empty() {
        sink.push(
            span,
            &format!("{label}.alerts"),
            "say which alerts it silences: `alerts = [\"b2-*\"]` and/or `matchers = { layer = \"origin\" }` (use `alerts = [\"*\"]` for all)",
        );
    }
    let schedule = match (raw.start, raw.end, raw.weekly) {
        (Some(start), Some(end), None) => once(&start, &end, label, sink),
        (None, None, Some(weekly)) => weekly_schedule(weekly, label, sink),
        (None, None, None) => {
            sink.push(
                span,
                &format!("{label}.start"),
                "set `start` and `end` (RFC 3339) or `weekly = { day, start, end, timezone }`",
            );
            None
        }
        (Some(start), None, None) => {
            sink.push(
                &start.span(),
                &format!("{label}.end"),
                "`start` needs an `end`",
            );
            None
        }
        (None, Some(end), None) => {
            sink.push(
                &end.span(),
                &format!("{label}.start"),
                "`end` needs a `start`",
            );
            None
        }
        (_, _, Some(weekly)) => {
            sink.push(
                &weekly.span(),
                &format!("{label}.weekly"),
                "set either `start`/`end` (one-off) or `weekly`, not both",
            );
            None
        }
    };
    let schedule = schedule?;
    (sink.len() == before).then(|| Silence {
        id: name,
        origin: Origin::Maintenance,
        matchers,
        schedule,
        comment: raw.comment.unwrap_or_default(),
    })
}

fn once(
    start: &Spanned<String>,
    end: &Spanned<String>,
    label: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<Schedule> {
    let parse = |text: &Spanned<String>, key: &str, sink: &mut ErrorSink<'_>| {
        text.get_ref()
            .parse::<Timestamp>()
            .map_err(|error| {
                sink.push(
                    &text.span(),
                    &format!("{label}.{key}"),
                    format!(
                        "`{}` is not an RFC 3339 time like \"2026-07-02T18:30:00Z\": {error}",
                        text.get_ref()
                    ),
                );
            })
            .ok()
    };
    let start_at = parse(start, "start", sink);
    let end_at = parse(end, "end", sink);
    let (start_at, end_at) = (start_at?, end_at?);
    if end_at <= start_at {
        sink.push(
            &end.span(),
            &format!("{label}.end"),
            "must be after `start`",
        );
        return None;
    }
    Some(Schedule::Once {
        start: start_at,
        end: end_at,
    })
}

fn weekly_schedule(
    weekly: Spanned<RawWeekly>,
    label: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<Schedule> {
    let raw = weekly.into_inner();
    let day_span = raw.day.span();
    let names = match raw.day.into_inner() {
        Days::One(name) => vec![name],
        Days::Many(names) => names,
    };
    let mut days = Vec::new();
    for name in &names {
        match parse_weekday(name) {
            Some(day) => days.push(day),
            None => sink.push(
                &day_span,
                &format!("{label}.weekly.day"),
                format!("`{name}` is not a day: use mon, tue, wed, thu, fri, sat or sun"),
            ),
        }
    }
    if names.is_empty() {
        sink.push(
            &day_span,
            &format!("{label}.weekly.day"),
            "name at least one day",
        );
    }
    let time = |text: &Spanned<String>, key: &str, sink: &mut ErrorSink<'_>| {
        text.get_ref()
            .parse::<Time>()
            .map_err(|_| {
                sink.push(
                    &text.span(),
                    &format!("{label}.weekly.{key}"),
                    format!("`{}` is not a time of day like \"11:30\"", text.get_ref()),
                );
            })
            .ok()
    };
    let start = time(&raw.start, "start", sink);
    let end = time(&raw.end, "end", sink);
    let timezone_name = raw
        .timezone
        .as_ref()
        .map_or_else(|| "UTC".to_owned(), |zone| zone.get_ref().clone());
    let timezone = match TimeZone::get(&timezone_name) {
        Ok(zone) => Some(zone),
        Err(_) => {
            let span = raw
                .timezone
                .as_ref()
                .map_or(day_span.clone(), Spanned::span);
            sink.push(
                &span,
                &format!("{label}.weekly.timezone"),
                format!("`{timezone_name}` is not a time zone name like \"America/Los_Angeles\""),
            );
            None
        }
    };
    let (start, end, timezone) = (start?, end?, timezone?);
    if start == end {
        sink.push(
            &raw.end.span(),
            &format!("{label}.weekly.end"),
            "must differ from `start` (an end earlier than the start runs over midnight)",
        );
        return None;
    }
    Some(Schedule::Weekly(Weekly {
        days,
        start,
        end,
        timezone,
        timezone_name,
    }))
}

fn parse_weekday(name: &str) -> Option<Weekday> {
    let lower = name.to_ascii_lowercase();
    let days = [
        ("mon", "monday", Weekday::Monday),
        ("tue", "tuesday", Weekday::Tuesday),
        ("wed", "wednesday", Weekday::Wednesday),
        ("thu", "thursday", Weekday::Thursday),
        ("fri", "friday", Weekday::Friday),
        ("sat", "saturday", Weekday::Saturday),
        ("sun", "sunday", Weekday::Sunday),
    ];
    days.into_iter()
        .find(|(short, long, _)| lower == *short || lower == *long)
        .map(|(_, _, day)| day)
}

// === notifiers ===

pub(super) fn load_notifiers(
    value: Spanned<DeValue<'_>>,
    cx: &BuildContext,
    sink: &mut ErrorSink<'_>,
) -> Vec<NotifierConfig> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        sink.push(&span, "notifier", "write notifiers as [[notifier]] tables");
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    let mut notifiers = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let Some((notifier, name_span)) = load_notifier(index, item, cx, sink) else {
            continue;
        };
        if !seen.insert(notifier.name.clone()) {
            sink.push(
                &name_span,
                &format!("notifier[{}].name", notifier.name),
                format!("duplicate notifier name `{}`", notifier.name),
            );
            continue;
        }
        notifiers.push(notifier);
    }
    notifiers
}

fn load_notifier(
    index: usize,
    item: Spanned<DeValue<'_>>,
    cx: &BuildContext,
    sink: &mut ErrorSink<'_>,
) -> Option<(NotifierConfig, Range<usize>)> {
    let fingerprint = crate::spec::fingerprint(item.get_ref(), cx, &());
    let entry = super::split_kinded_entry::<NotifierKind>(
        "notifier",
        index,
        item,
        &NOTIFIER_COMMON_KEYS,
        &NotifierKind::list(),
        sink,
    )?;
    let (label, kind) = (entry.label, entry.kind);
    let common: Option<RawNotifierCommon> = sink.deserialize(entry.common, &label);
    let built = kind.and_then(|kind| {
        let section = Section {
            value: entry.own,
            label: label.clone(),
            common_keys: &NOTIFIER_COMMON_KEYS,
        };
        notify::build(kind, section, cx, sink)
    });
    let common = common?;
    let name_span = common.name.span();
    let name = common.name.into_inner();
    let valid_name = super::check_entry_name("notifier", &name, &name_span, &label, sink);
    let mut severities = Vec::new();
    if let Some(listed) = &common.severities {
        for severity in listed.get_ref() {
            match parse_severity(severity) {
                Some(parsed) => severities.push(parsed),
                None => sink.push(
                    &listed.span(),
                    &format!("{label}.severities"),
                    format!("unknown severity `{severity}`, expected critical, warning or info"),
                ),
            }
        }
    }
    let route = Route {
        severities,
        alerts: common
            .alerts
            .as_ref()
            .map(|alerts| alerts.get_ref().iter().map(Glob::new).collect())
            .unwrap_or_default(),
    };
    if kind == Some(NotifierKind::Heartbeat) {
        let routed = [
            common.severities.as_ref().map(Spanned::span),
            common.alerts.as_ref().map(Spanned::span),
            common.send_resolved.as_ref().map(Spanned::span),
        ];
        if let Some(routed_span) = routed.into_iter().flatten().next() {
            sink.push(
                &routed_span,
                &label,
                "a heartbeat is not sent alerts, so it takes no `severities`, `alerts` or `send_resolved`",
            );
        }
    }
    if kind == Some(NotifierKind::Alertmanager)
        && let Some(send_resolved) = common
            .send_resolved
            .as_ref()
            .filter(|send| !*send.get_ref())
    {
        sink.push(
            &send_resolved.span(),
            &format!("{label}.send_resolved"),
            "Alertmanager is always sent resolves (they end the alert there); remove this key",
        );
    }
    let send_resolved = common.send_resolved.is_none_or(Spanned::into_inner);
    let notifier = built?;
    valid_name.then(|| {
        (
            NotifierConfig {
                name,
                route,
                send_resolved,
                notifier: Arc::new(notifier),
                fingerprint,
            },
            name_span,
        )
    })
}

#[cfg(test)]
mod tests;
