//! Examples inside rule files: the failure mode's own tests, in the spirit of
//! `promtool test rules`.
//!
//! An `[[example]]` table of `alerts/<id>.toml` is a short timeline: results of the probes that
//! matter, at offsets from the example's start (`at = "90s"`), and what the catalog must make of
//! them at given offsets (`expect`). Every other probe of the config reports a healthy result of
//! its kind at its interval; a scripted result repeats at its probe's interval until that
//! probe's next entry. Results say only what matters (`ok`, `error`, `message`, `duration`, the
//! observations that differ); the rest of a result's observations are the kind's healthy ones
//! from [`synthetic::healthy`], which the kind's observation schema defines.
//!
//! Parsing is here and part of loading a rule (every problem located, like any other rule
//! error); running is [`run`], on the same [`Timeline`] engine replay uses, so an example tests
//! the real semantics: `for`, inhibition, `failure_ratio`, `seconds_since_ok`, `now`.
//!
//! An expectation at a moment states, after the results of that moment:
//! - `active`: the root causes (active, not inhibited): exactly these, what on-call is told;
//! - `pending`: these hold, not yet for their `for`;
//! - `inhibited`: these are diagnosed and inhibited by that root cause;
//! - `not_diagnosed`: none of these is diagnosed at all (the near misses);
//!
//! and, always, that no rule failed to evaluate.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use crate::probe::schema::Problem;
use crate::probe::{ErrorClass, Kind, Observations, ProbeResult, Value};
use crate::spec::ErrorSink;
use crate::spec::duration::Bounds;
use crate::spec::source::with_typo_hint;

use super::timeline::{Timeline, TimelineProbe};
use super::{Catalog, Diagnosis, DiagnosisState, FailureMode, ProbeKinds, synthetic};
use crate::spec::source::did_you_mean;

/// Where an example's clock starts unless it says `start`: a fixed moment, so that an example
/// means the same every day (`now` in a rule reads the simulated clock).
pub const DEFAULT_START: Timestamp = Timestamp::constant(1_767_225_600, 0); // 2026-01-01T00:00:00Z

/// The range of an `at` offset: the longest `for` (7 days) and a day to see it confirmed. The
/// cost of an example is its results and evaluations, so this also bounds `honeyguide test`.
pub const OFFSET: Bounds = Bounds::new(Duration::ZERO, Duration::from_secs(8 * 86_400));

/// The range of a scripted result's `duration`: a run is cut off at its timeout (at most 10m).
pub const RUN_DURATION: Bounds = Bounds::new(Duration::ZERO, Duration::from_secs(600));

/// How long a result took when the example does not say: a quick run, or the probe's timeout
/// for one that timed out.
const DEFAULT_RUN: Duration = Duration::from_millis(100);

// === the parsed example ===

/// One `[[example]]` of a rule file, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// What it shows, one line.
    pub name: String,
    /// The rule file.
    pub file: PathBuf,
    /// The line of its `name` in the file.
    pub line: usize,
    /// Where its clock starts.
    pub start: Timestamp,
    /// The scripted results, in file order.
    pub results: Vec<Scripted>,
    /// What is expected when, in time order (file order within a moment).
    pub expectations: Vec<Expectation>,
    /// Every failure mode it names, for the check against the loaded ones.
    pub(super) named: Vec<Named>,
    /// Why it cannot run, when it names a failure mode that is not loaded.
    pub(super) unrunnable: Option<String>,
}

/// A failure mode named by an expectation, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Named {
    pub(super) id: String,
    pub(super) position: (usize, usize),
    pub(super) key: String,
}

/// A scripted result: from `at`, each run of `probe` reports this until its next entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Scripted {
    /// The probe.
    pub probe: String,
    /// From when.
    pub at: Duration,
    /// Whether the run succeeded.
    pub ok: bool,
    /// Why not.
    pub error: Option<ErrorClass>,
    /// Its message; by default `ok`, or the error class.
    pub message: Option<String>,
    /// How long it took; by default 100ms, or the probe's timeout for a `timeout`.
    pub duration: Option<Duration>,
    /// Observations that differ from the kind's healthy ones.
    pub observations: Observations,
    /// Observations that are `null` (TOML has no null).
    pub null: Vec<String>,
    /// Whether the result observed only `observations` and `null` (a run cut off early), not
    /// the healthy rest.
    pub observations_only: bool,
}

/// What the catalog must make of the results at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectation {
    /// When.
    pub at: Duration,
    /// The line of its `at` in the file.
    pub line: usize,
    /// Exactly these are the root causes (active, not inhibited), when given.
    pub active: Option<Vec<String>>,
    /// These are pending, not inhibited.
    pub pending: Vec<String>,
    /// These are diagnosed and inhibited by that one: (id, inhibitor).
    pub inhibited: Vec<(String, String)>,
    /// None of these is diagnosed.
    pub not_diagnosed: Vec<String>,
}

impl Example {
    /// Whether some expectation has `id` active (the example fires it).
    pub fn fires(&self, id: &str) -> bool {
        self.expectations.iter().any(|expectation| {
            expectation
                .active
                .as_ref()
                .is_some_and(|active| active.iter().any(|other| other == id))
        })
    }

    /// Whether the example is a near miss of `id`: it never has it active, and has it not
    /// diagnosed at some moment.
    pub fn is_near_miss(&self, id: &str) -> bool {
        !self.fires(id)
            && self
                .expectations
                .iter()
                .any(|expectation| expectation.not_diagnosed.iter().any(|other| other == id))
    }

    /// Why it cannot run, when it names a failure mode that is not loaded.
    pub fn unrunnable(&self) -> Option<&str> {
        self.unrunnable.as_deref()
    }

    /// The end of its timeline: its last expectation.
    fn end(&self) -> Duration {
        self.expectations
            .iter()
            .map(|expectation| expectation.at)
            .max()
            .unwrap_or_default()
    }
}

// === parsing ===

/// The keys of an `[[example]]` table, in documentation order.
const EXAMPLE_KEYS: [&str; 4] = ["name", "start", "results", "expect"];

/// An example's table, key by key, so that a bad result or expectation is reported without
/// hiding the others.
#[derive(Debug)]
struct RawExample {
    name: Spanned<String>,
    start: Option<Spanned<toml::value::Datetime>>,
    results: Vec<RawResult>,
    expect: Vec<Spanned<RawExpect>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResult {
    probe: Spanned<String>,
    at: Spanned<String>,
    ok: Option<Spanned<bool>>,
    error: Option<Spanned<String>>,
    message: Option<String>,
    duration: Option<Spanned<String>>,
    #[serde(default)]
    observations: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    null: Vec<String>,
    #[serde(default)]
    observations_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    at: Spanned<String>,
    active: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pending: Vec<Spanned<String>>,
    #[serde(default)]
    inhibited: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    not_diagnosed: Vec<Spanned<String>>,
}

/// Parses the `example` key of a rule file: every problem is recorded in `sink`, located, and
/// only valid examples are returned.
pub(super) fn parse(
    value: Spanned<DeValue<'_>>,
    probes: &ProbeKinds,
    sink: &mut ErrorSink<'_>,
) -> Vec<Example> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        sink.push(
            &span,
            "example",
            "write each example as an `[[example]]` table (an array of tables)",
        );
        return Vec::new();
    };
    let mut examples = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let key = format!("example[{index}]");
        let item_span = item.span();
        let before = sink.len();
        let Some(raw) = take_example(item, &key, sink) else {
            continue;
        };
        let example = validate(raw, &key, &item_span, probes, sink);
        if sink.len() == before
            && let Some(example) = example
        {
            examples.push(example);
        }
    }
    examples
}

/// Takes an example's table apart key by key; `None` when its `name` is missing or malformed
/// (every problem recorded).
fn take_example(
    item: Spanned<DeValue<'_>>,
    key: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<RawExample> {
    let span = item.span();
    let DeValue::Table(mut table) = item.into_inner() else {
        sink.push(&span, key, "an example is a table: `[[example]]`");
        return None;
    };
    let expected = EXAMPLE_KEYS
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    for (name, _) in table.iter() {
        let text = name.get_ref();
        if !EXAMPLE_KEYS.contains(&text.as_ref()) {
            let message = format!("unknown field `{text}`, expected one of {expected}");
            sink.push(
                &name.span(),
                &format!("{key}.{text}"),
                with_typo_hint(&message, &[]),
            );
        }
    }
    let name = match table.remove("name") {
        Some(value) => sink.deserialize::<Spanned<String>>(value, &format!("{key}.name")),
        None => {
            sink.push(&span, &format!("{key}.name"), "missing field `name`");
            None
        }
    };
    let start = table
        .remove("start")
        .and_then(|value| sink.deserialize(value, &format!("{key}.start")));
    let results = take_each(table.remove("results"), &format!("{key}.results"), sink);
    let expect = take_each(table.remove("expect"), &format!("{key}.expect"), sink);
    Some(RawExample {
        name: name?,
        start,
        results,
        expect,
    })
}

/// Deserializes each entry of an array on its own, so that every bad entry is reported.
fn take_each<T: serde::de::DeserializeOwned>(
    value: Option<Spanned<DeValue<'_>>>,
    key: &str,
    sink: &mut ErrorSink<'_>,
) -> Vec<T> {
    let Some(value) = value else {
        return Vec::new();
    };
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        sink.push(
            &span,
            key,
            "must be an array of tables: `[{ ... }, ...]` or `[[...]]` tables",
        );
        return Vec::new();
    };
    items
        .into_iter()
        .enumerate()
        .filter_map(|(index, item)| sink.deserialize(item, &format!("{key}[{index}]")))
        .collect()
}

fn validate(
    raw: RawExample,
    key: &str,
    span: &std::ops::Range<usize>,
    probes: &ProbeKinds,
    sink: &mut ErrorSink<'_>,
) -> Option<Example> {
    let source = sink.source();
    let name = raw.name.get_ref().trim();
    if name.is_empty() {
        sink.push(
            &raw.name.span(),
            &format!("{key}.name"),
            "must not be empty",
        );
    } else if name.chars().any(char::is_control) {
        sink.push(
            &raw.name.span(),
            &format!("{key}.name"),
            "must be one line, without control characters",
        );
    }
    let start = match &raw.start {
        None => Some(DEFAULT_START),
        Some(start) => timestamp(start.get_ref())
            .map_err(|message| {
                sink.push(&start.span(), &format!("{key}.start"), message);
            })
            .ok(),
    };
    let mut results = Vec::with_capacity(raw.results.len());
    let mut seen: BTreeSet<(String, Duration)> = BTreeSet::new();
    for (index, result) in raw.results.into_iter().enumerate() {
        let key = format!("{key}.results[{index}]");
        if let Some(result) = validate_result(result, &key, probes, &mut seen, sink) {
            results.push(result);
        }
    }
    if raw.expect.is_empty() {
        sink.push(
            span,
            key,
            "an example needs `expect`: what the catalog must make of its results, and when",
        );
    }
    let mut named = Vec::new();
    let mut expectations = Vec::with_capacity(raw.expect.len());
    for (index, expect) in raw.expect.into_iter().enumerate() {
        let key = format!("{key}.expect[{index}]");
        if let Some(expectation) = validate_expect(expect, &key, &mut named, sink) {
            expectations.push(expectation);
        }
    }
    expectations.sort_by_key(|expectation| expectation.at);
    Some(Example {
        name: name.to_owned(),
        file: source.path().to_owned(),
        line: source.locate(raw.name.span().start).0,
        start: start?,
        results,
        expectations,
        named,
        unrunnable: None,
    })
}

/// Where a scripted result's parts are written, for located errors.
struct Written<'a> {
    /// Each observation's value.
    observations: &'a BTreeMap<String, std::ops::Range<usize>>,
    /// The result's `probe`, for what has no span of its own (the `null` list).
    result: std::ops::Range<usize>,
    /// The result's key path: `example[0].results[2]`.
    key: &'a str,
}

/// Checks an example's scripted observations against the kind's schema: a misspelt key would
/// otherwise script nothing, and the example would pass whatever the rule does.
fn check_observations(
    kind: Kind,
    probe: &str,
    observations: &mut Observations,
    nulls: &[String],
    written: &Written<'_>,
    sink: &mut ErrorSink<'_>,
) -> bool {
    let key = written.key;
    let schema = kind.schema();
    let mut valid = true;
    for mismatch in schema.check_partial(observations) {
        let top = mismatch.path.split(['.', '[']).next().unwrap_or_default();
        let message = match &mismatch.problem {
            Problem::Undeclared { known } => format!(
                "unknown observation `{}` of {kind} probe `{probe}`{}",
                mismatch.path,
                did_you_mean(mismatch.path.rsplit('.').next().unwrap_or_default(), known)
            ),
            Problem::WrongType { .. } => mismatch.to_string(),
        };
        let span = written.observations.get(top).unwrap_or(&written.result);
        sink.push(span, &format!("{key}.observations.{top}"), message);
        valid = false;
    }
    for name in nulls {
        if schema.field(name).is_none() {
            sink.push(
                &written.result,
                &format!("{key}.null"),
                format!(
                    "unknown observation `{name}` of {kind} probe `{probe}`{}",
                    did_you_mean(name, &schema.names())
                ),
            );
            valid = false;
        }
    }
    valid
}

fn validate_result(
    raw: RawResult,
    key: &str,
    probes: &ProbeKinds,
    seen: &mut BTreeSet<(String, Duration)>,
    sink: &mut ErrorSink<'_>,
) -> Option<Scripted> {
    let mut valid = true;
    let probe = raw.probe.get_ref().clone();
    if !probes.contains_key(&probe) {
        let names: Vec<&str> = probes.keys().map(String::as_str).collect();
        sink.push(
            &raw.probe.span(),
            &format!("{key}.probe"),
            format!(
                "unknown probe `{probe}` (not in the config){}",
                did_you_mean(&probe, &names)
            ),
        );
        valid = false;
    }
    let at_span = raw.at.span();
    let at = duration(&raw.at, &format!("{key}.at"), OFFSET, sink);
    if let Some(at) = at
        && !seen.insert((probe.clone(), at))
    {
        sink.push(
            &at_span,
            &format!("{key}.at"),
            format!("`{probe}` already has a result at this offset"),
        );
        valid = false;
    }
    let error = match &raw.error {
        None => None,
        Some(name) => match ErrorClass::ALL
            .into_iter()
            .find(|class| class.as_str() == name.get_ref())
        {
            Some(class) => Some(class),
            None => {
                let classes: Vec<&str> =
                    ErrorClass::ALL.iter().map(|class| class.as_str()).collect();
                sink.push(
                    &name.span(),
                    &format!("{key}.error"),
                    format!(
                        "unknown error class `{}`, expected one of {}{}",
                        name.get_ref(),
                        classes
                            .iter()
                            .map(|class| format!("`{class}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        did_you_mean(name.get_ref(), &classes)
                    ),
                );
                valid = false;
                None
            }
        },
    };
    let ok = match (&raw.ok, &raw.error) {
        (Some(ok), Some(_)) if *ok.get_ref() => {
            sink.push(
                &ok.span(),
                &format!("{key}.ok"),
                "a result with an `error` failed: drop `ok = true` or the `error`",
            );
            valid = false;
            false
        }
        (Some(ok), None) if !*ok.get_ref() => {
            sink.push(
                &ok.span(),
                &format!("{key}.ok"),
                "a failed result needs its `error` class (`connect`, `timeout`, `http_status`, ...)",
            );
            valid = false;
            false
        }
        (_, error) => error.is_none(),
    };
    let duration = match raw.duration {
        None => None,
        Some(text) => {
            let parsed = duration(&text, &format!("{key}.duration"), RUN_DURATION, sink);
            valid &= parsed.is_some();
            parsed
        }
    };
    let mut observations = Observations::new();
    let mut spans = BTreeMap::new();
    for (name, value) in raw.observations {
        let span = value.span();
        spans.insert(name.clone(), span.clone());
        match observed(value.into_inner()) {
            Ok(value) => {
                observations.insert(name, value);
            }
            Err(message) => {
                sink.push(&span, &format!("{key}.observations.{name}"), message);
                valid = false;
            }
        }
    }
    if let Some(kind) = probes.get(&probe) {
        let written = Written {
            observations: &spans,
            result: raw.probe.span(),
            key,
        };
        valid &= check_observations(*kind, &probe, &mut observations, &raw.null, &written, sink);
    }
    valid.then_some(Scripted {
        probe,
        at: at?,
        ok,
        error,
        message: raw.message,
        duration,
        observations,
        null: raw.null,
        observations_only: raw.observations_only,
    })
}

fn validate_expect(
    raw: Spanned<RawExpect>,
    key: &str,
    named: &mut Vec<Named>,
    sink: &mut ErrorSink<'_>,
) -> Option<Expectation> {
    let span = raw.span();
    let raw = raw.into_inner();
    let source = sink.source();
    let line = source.locate(raw.at.span().start).0;
    let at = duration(&raw.at, &format!("{key}.at"), OFFSET, sink);
    let says_something = raw.active.is_some()
        || !raw.pending.is_empty()
        || !raw.inhibited.is_empty()
        || !raw.not_diagnosed.is_empty();
    if !says_something {
        sink.push(
            &span,
            key,
            "an expectation says nothing: give `active`, `pending`, `inhibited` or \
             `not_diagnosed`",
        );
        return None;
    }
    let mut valid = true;
    let mut inhibitors = Vec::new();
    // Where each id is claimed, to catch one expected two ways at once.
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    let mut name = |id: &Spanned<String>, field: String, sink: &mut ErrorSink<'_>| {
        let text = id.get_ref().clone();
        if let Some(first) = claimed.get(&text) {
            sink.push(
                &id.span(),
                &field,
                format!("`{text}` is already expected in `{first}` at this moment"),
            );
            valid = false;
        } else {
            let category = field
                .rsplit_once('.')
                .map_or(field.as_str(), |(_, last)| last)
                .split('[')
                .next()
                .unwrap_or_default()
                .to_owned();
            claimed.insert(text.clone(), category);
        }
        named.push(Named {
            id: text.clone(),
            position: source.locate(id.span().start),
            key: field,
        });
        text
    };
    let active = raw.active.map(|ids| {
        ids.iter()
            .enumerate()
            .map(|(index, id)| name(id, format!("{key}.active[{index}]"), sink))
            .collect()
    });
    let pending = raw
        .pending
        .iter()
        .enumerate()
        .map(|(index, id)| name(id, format!("{key}.pending[{index}]"), sink))
        .collect();
    let inhibited = raw
        .inhibited
        .iter()
        .map(|(id, by)| {
            let field = format!("{key}.inhibited.{}", id.get_ref());
            let id = name(id, field.clone(), sink);
            inhibitors.push(Named {
                id: by.get_ref().clone(),
                position: source.locate(by.span().start),
                key: field,
            });
            (id, by.get_ref().clone())
        })
        .collect();
    let not_diagnosed = raw
        .not_diagnosed
        .iter()
        .enumerate()
        .map(|(index, id)| name(id, format!("{key}.not_diagnosed[{index}]"), sink))
        .collect();
    named.extend(inhibitors);
    let expectation = Expectation {
        at: at?,
        line,
        active,
        pending,
        inhibited,
        not_diagnosed,
    };
    valid.then_some(expectation)
}

/// A humane duration (`"90s"`, `"1m30s"`) in `bounds`, or `None` with the problem recorded.
fn duration(
    text: &Spanned<String>,
    key: &str,
    bounds: Bounds,
    sink: &mut ErrorSink<'_>,
) -> Option<Duration> {
    let checked =
        crate::spec::duration::parse(text.get_ref()).and_then(|duration| bounds.check(duration));
    checked
        .map_err(|message| sink.push(&text.span(), key, message))
        .ok()
}

/// A TOML offset date-time as a timestamp.
fn timestamp(datetime: &toml::value::Datetime) -> Result<Timestamp, String> {
    if datetime.date.is_none() || datetime.time.is_none() || datetime.offset.is_none() {
        return Err(format!(
            "`{datetime}` needs a date, a time and an offset, e.g. 2026-07-01T09:00:00Z"
        ));
    }
    datetime
        .to_string()
        .parse::<Timestamp>()
        .map_err(|error| format!("`{datetime}` is not a time: {error}"))
}

/// A TOML value as an observation: a date-time is a Unix timestamp in seconds, as the
/// observations that hold one (`tls_cert_expiry`) report it.
fn observed(value: toml::Value) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(text) => Value::Str(text),
        toml::Value::Integer(number) => Value::Int(number),
        toml::Value::Float(number) => Value::Float(number),
        toml::Value::Boolean(flag) => Value::Bool(flag),
        toml::Value::Datetime(datetime) => Value::Int(timestamp(&datetime)?.as_second()),
        toml::Value::Array(items) => {
            Value::List(items.into_iter().map(observed).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => Value::Map(
            table
                .into_iter()
                .map(|(key, value)| Ok((key, observed(value)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// Marks the examples of `modes` that name a failure mode outside `known` as not runnable, and
/// says so: one warning per such name, located.
pub(super) fn check_names<'a>(
    modes: impl Iterator<Item = &'a mut FailureMode>,
    known: &[&str],
) -> Vec<super::Warning> {
    let mut warnings = Vec::new();
    for mode in modes {
        for example in &mut mode.examples {
            let mut missing = Vec::new();
            for named in &example.named {
                if known.contains(&named.id.as_str()) {
                    continue;
                }
                warnings.push(super::Warning {
                    kind: super::WarningKind::ExampleNamesUnloaded,
                    file: example.file.clone(),
                    position: Some(named.position),
                    key: named.key.clone(),
                    message: format!(
                        "`{}` is not loaded, so the example \"{}\" is not run{}",
                        named.id,
                        example.name,
                        did_you_mean(&named.id, known)
                    ),
                });
                if !missing.contains(&named.id) {
                    missing.push(named.id.clone());
                }
            }
            if !missing.is_empty() {
                example.unrunnable = Some(format!(
                    "names {}, not loaded",
                    missing
                        .iter()
                        .map(|id| format!("`{id}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    warnings
}

// === running ===

/// What one example found: nothing wrong, or what was expected and what happened, when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Each moment something was not as expected, in time order.
    pub failures: Vec<Failure>,
}

/// Everything that was not as expected at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The moment (offset from the example's start).
    pub at: Duration,
    /// The line of the expectation.
    pub line: usize,
    /// What differs, one line each (`` `x`: expected pending, got active ``).
    pub problems: Vec<String>,
    /// What was diagnosed at that moment, to read the problems against.
    pub diagnosed: String,
}

impl Outcome {
    /// Whether everything was as expected.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = humantime::format_duration(self.at);
        for problem in &self.problems {
            writeln!(f, "    at {at} (line {}): {problem}", self.line)?;
        }
        write!(f, "    at {at}, diagnosed: {}", self.diagnosed)
    }
}

/// Runs `example` through `catalog` with the config's `probes`: every probe reports at its
/// interval (the scripted results, else healthy ones), and the expectations are checked at
/// their moments.
pub fn run(catalog: &Arc<Catalog>, probes: &[TimelineProbe], example: &Example) -> Outcome {
    let mut timeline = Timeline::new(catalog.clone(), probes, example.start);
    let mut runs = schedule(example, probes).into_iter().peekable();
    let mut outcome = Outcome::default();
    for expectation in &example.expectations {
        while let Some(&(at, _, _)) = runs.peek() {
            if at > expectation.at {
                break;
            }
            let mut batch = Vec::new();
            while let Some((_, probe, result)) = runs.next_if(|(next, _, _)| *next == at) {
                batch.push((probe, result));
            }
            timeline.apply(offset(example.start, at), batch);
        }
        timeline.advance_to(offset(example.start, expectation.at));
        let mut problems = check(expectation, timeline.diagnoses());
        problems.extend(timeline.rule_failures().into_iter().map(|failure| {
            format!(
                "rule `{}` failed to evaluate: {}",
                failure.mode, failure.message
            )
        }));
        if !problems.is_empty() {
            outcome.failures.push(Failure {
                at: expectation.at,
                line: expectation.line,
                problems,
                diagnosed: describe_all(timeline.diagnoses()),
            });
        }
    }
    outcome
}

/// Every run of every probe up to the example's end, in time order (config order within a
/// moment): (offset, probe index, result).
fn schedule(example: &Example, probes: &[TimelineProbe]) -> Vec<(Duration, usize, ProbeResult)> {
    let end = example.end();
    let mut runs = Vec::new();
    for (index, probe) in probes.iter().enumerate() {
        let mut scripted: Vec<&Scripted> = example
            .results
            .iter()
            .filter(|result| result.probe == probe.name)
            .collect();
        scripted.sort_by_key(|result| result.at);
        // Segments: healthy from the start, then each entry from its `at` to the next one's.
        let mut segments: Vec<(Duration, Option<&Scripted>)> = vec![(Duration::ZERO, None)];
        segments.extend(scripted.iter().map(|result| (result.at, Some(*result))));
        for (position, (from, entry)) in segments.iter().enumerate() {
            let until = segments.get(position + 1).map(|(at, _)| *at);
            let result = result(probe, *entry);
            let mut at = *from;
            while at <= end && until.is_none_or(|until| at < until) {
                runs.push((at, index, result.clone()));
                match at.checked_add(probe.interval) {
                    Some(next) if !probe.interval.is_zero() => at = next,
                    _ => break,
                }
            }
        }
    }
    runs.sort_by_key(|(at, probe, _)| (*at, *probe));
    runs
}

/// A result of `probe` as `scripted` says (a healthy one without a script).
fn result(probe: &TimelineProbe, scripted: Option<&Scripted>) -> ProbeResult {
    let Some(scripted) = scripted else {
        return ProbeResult {
            ok: true,
            error: None,
            message: "ok".to_owned(),
            observations: synthetic::healthy(probe.kind),
            duration: DEFAULT_RUN,
            phases: Vec::new(),
        };
    };
    let mut observations = if scripted.observations_only {
        Observations::new()
    } else {
        synthetic::healthy(probe.kind)
    };
    observations.extend(scripted.observations.clone());
    for key in &scripted.null {
        observations.insert(key.clone(), Value::Null);
    }
    let timed_out = scripted.error == Some(ErrorClass::Timeout);
    ProbeResult {
        ok: scripted.ok,
        error: scripted.error,
        message: scripted.message.clone().unwrap_or_else(|| {
            scripted
                .error
                .map_or_else(|| "ok".to_owned(), |class| format!("{class} (example)"))
        }),
        observations,
        duration: scripted.duration.unwrap_or(if timed_out {
            probe.timeout
        } else {
            DEFAULT_RUN
        }),
        phases: Vec::new(),
    }
}

/// `start` plus `offset`, saturating.
fn offset(start: Timestamp, offset: Duration) -> Timestamp {
    SignedDuration::try_from(offset)
        .ok()
        .and_then(|offset| start.checked_add(offset).ok())
        .unwrap_or(Timestamp::MAX)
}

/// What differs from `expectation` in `diagnoses`.
fn check(expectation: &Expectation, diagnoses: &[Diagnosis]) -> Vec<String> {
    let find = |id: &str| diagnoses.iter().find(|diagnosis| diagnosis.id == id);
    let mut problems = Vec::new();
    if let Some(active) = &expectation.active {
        let roots: BTreeSet<&str> = diagnoses
            .iter()
            .filter(|diagnosis| is_root(diagnosis))
            .map(|diagnosis| diagnosis.id.as_str())
            .collect();
        let expected: BTreeSet<&str> = active.iter().map(String::as_str).collect();
        if roots != expected {
            problems.push(format!(
                "active: expected {}, got {}",
                names(&expected),
                names(&roots)
            ));
        }
    }
    for id in &expectation.pending {
        let found = find(id);
        let pending = found.is_some_and(|diagnosis| {
            diagnosis.state == DiagnosisState::Pending && diagnosis.inhibited_by.is_none()
        });
        if !pending {
            problems.push(format!("`{id}`: expected pending, got {}", describe(found)));
        }
    }
    for (id, by) in &expectation.inhibited {
        let found = find(id);
        if found.and_then(|diagnosis| diagnosis.inhibited_by.as_deref()) != Some(by.as_str()) {
            problems.push(format!(
                "`{id}`: expected inhibited by `{by}`, got {}",
                describe(found)
            ));
        }
    }
    for id in &expectation.not_diagnosed {
        if let Some(found) = find(id) {
            problems.push(format!(
                "`{id}`: expected not diagnosed, got {}",
                describe(Some(found))
            ));
        }
    }
    problems
}

/// Active and not inhibited: what on-call is told about.
fn is_root(diagnosis: &Diagnosis) -> bool {
    diagnosis.state == DiagnosisState::Active && diagnosis.inhibited_by.is_none()
}

/// `` `a`, `b` `` or `none`.
fn names(ids: &BTreeSet<&str>) -> String {
    if ids.is_empty() {
        return "none".to_owned();
    }
    ids.iter()
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How one failure mode stands: `not diagnosed`, `pending`, `active, inhibited by `x``.
fn describe(diagnosis: Option<&Diagnosis>) -> String {
    let Some(diagnosis) = diagnosis else {
        return "not diagnosed".to_owned();
    };
    match &diagnosis.inhibited_by {
        None => diagnosis.state.as_str().to_owned(),
        Some(by) => format!("{}, inhibited by `{by}`", diagnosis.state.as_str()),
    }
}

/// Every diagnosis as it stands: `active `a`; pending `b`; inhibited `c` (by `a`)`.
fn describe_all(diagnoses: &[Diagnosis]) -> String {
    let list = |filter: &dyn Fn(&Diagnosis) -> bool| -> Vec<String> {
        diagnoses
            .iter()
            .filter(|diagnosis| filter(diagnosis))
            .map(|diagnosis| match &diagnosis.inhibited_by {
                Some(by) => format!("`{}` (by `{by}`)", diagnosis.id),
                None => format!("`{}`", diagnosis.id),
            })
            .collect()
    };
    let groups = [
        ("active", list(&|d| is_root(d))),
        (
            "pending",
            list(&|d| d.state == DiagnosisState::Pending && d.inhibited_by.is_none()),
        ),
        ("inhibited", list(&|d| d.inhibited_by.is_some())),
    ];
    let parts: Vec<String> = groups
        .into_iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(label, ids)| format!("{label} {}", ids.join(", ")))
        .collect();
    if parts.is_empty() {
        "nothing".to_owned()
    } else {
        parts.join("; ")
    }
}

// === the whole catalog ===

/// What an example is to its own rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It has the rule active at some moment.
    Fires,
    /// It never has the rule active, and has it not diagnosed at some moment.
    NearMiss,
    /// Neither (it shows the rule pending, or inhibited, or other rules).
    Other,
}

impl Role {
    fn of(example: &Example, id: &str) -> Self {
        if example.fires(id) {
            Role::Fires
        } else if example.is_near_miss(id) {
            Role::NearMiss
        } else {
            Role::Other
        }
    }

    /// How `honeyguide test` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Fires => "fires",
            Role::NearMiss => "near miss",
            Role::Other => "other",
        }
    }
}

/// How one example went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// As expected throughout.
    Passed,
    /// Not as expected at some moments.
    Failed(Vec<Failure>),
    /// Not run: it names failure modes that are not loaded.
    Skipped(String),
}

/// One example's line in `honeyguide test`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tested {
    /// The rule it belongs to.
    pub mode: String,
    /// Its name.
    pub name: String,
    /// Where it is.
    pub file: PathBuf,
    /// The line of its name.
    pub line: usize,
    /// What it is to its rule.
    pub role: Role,
    /// How it went.
    pub verdict: Verdict,
}

impl fmt::Display for Tested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Passed => "ok",
            Verdict::Failed(_) => "FAIL",
            Verdict::Skipped(_) => "SKIP",
        };
        write!(
            f,
            "{verdict:<4}  {}  \"{}\" ({})  {}:{}",
            self.mode,
            self.name,
            self.role.as_str(),
            self.file.display(),
            self.line
        )?;
        match &self.verdict {
            Verdict::Passed => Ok(()),
            Verdict::Skipped(reason) => write!(f, ": not run, {reason}"),
            Verdict::Failed(failures) => {
                for failure in failures {
                    write!(f, "\n{failure}")?;
                }
                Ok(())
            }
        }
    }
}

/// Every example of every rule of `catalog`, run, in catalog order. Examples are independent,
/// so they run on a thread per core.
pub fn run_all(catalog: &Arc<Catalog>, probes: &[TimelineProbe]) -> Vec<Tested> {
    let examples: Vec<(&FailureMode, &Example)> = catalog
        .modes()
        .iter()
        .flat_map(|mode| mode.examples.iter().map(move |example| (mode, example)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, examples.len().max(1));
    let chunk = examples.len().div_ceil(threads).max(1);
    let run_chunk = |chunk: &[(&FailureMode, &Example)]| -> Vec<Tested> {
        chunk
            .iter()
            .map(|(mode, example)| test_one(catalog, probes, mode, example))
            .collect()
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = examples
            .chunks(chunk)
            .map(|part| {
                std::thread::Builder::new()
                    .name("honeyguide-test".to_owned())
                    // As much stack as the main thread: CEL evaluation recurses.
                    .stack_size(8 * 1024 * 1024)
                    .spawn_scoped(scope, move || run_chunk(part))
                    .map_err(|_| part)
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to be had: run that part here.
                Err(part) => run_chunk(part),
            })
            .collect()
    })
}

fn test_one(
    catalog: &Arc<Catalog>,
    probes: &[TimelineProbe],
    mode: &FailureMode,
    example: &Example,
) -> Tested {
    let verdict = match example.unrunnable() {
        Some(reason) => Verdict::Skipped(reason.to_owned()),
        None => {
            let outcome = run(catalog, probes, example);
            if outcome.passed() {
                Verdict::Passed
            } else {
                Verdict::Failed(outcome.failures)
            }
        }
    };
    Tested {
        mode: mode.id.clone(),
        name: example.name.clone(),
        file: example.file.clone(),
        line: example.line,
        role: Role::of(example, &mode.id),
        verdict,
    }
}

/// What the examples of `catalog` leave untested: per rule, no example that fires it, or no
/// near miss. Said after the results, not a failure (a new rule may not have them yet).
pub fn gaps(catalog: &Catalog) -> Vec<String> {
    let mut gaps = Vec::new();
    for mode in catalog.modes() {
        let roles: Vec<Role> = mode
            .examples
            .iter()
            .map(|example| Role::of(example, &mode.id))
            .collect();
        let missing: Vec<&str> = [
            (Role::Fires, "fires it"),
            (Role::NearMiss, "is a near miss"),
        ]
        .into_iter()
        .filter(|(role, _)| !roles.contains(role))
        .map(|(_, what)| what)
        .collect();
        if !missing.is_empty() {
            gaps.push(format!(
                "{}: no example that {}",
                mode.id,
                missing.join(", and none that ")
            ));
        }
    }
    gaps
}

#[cfg(test)]
mod tests;
