//! Loading `alerts/*.toml`: one strict TOML file per failure mode, validated into a [`Catalog`].
//!
//! Each file is parsed into a spanned tree, deserialized strictly (`deny_unknown_fields`) and
//! validated: the id is kebab-case and equals the file stem, the texts are not empty, the labels
//! are valid label names, and the `when` expression compiles, reads only configured probes and
//! passes the load-time type check. Then the files are checked together: ids are unique, and
//! `inhibits` names existing modes without a cycle. Every problem becomes a located
//! [`ConfigError`] (file, line, column, key), and all of them are reported at once.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::config::{ConfigError, ConfigErrors, ErrorSink, HumanDuration, Source};

use super::expr::{Evaluator, ExprError};
use super::position::StringMap;
use super::{Catalog, FailureMode, ProbeKinds, Severity};

/// Keys a rule's labels may not use: the alert engine sets them itself.
const RESERVED_LABELS: [&str; 2] = ["alertname", "severity"];

/// Reads every `*.toml` file of `dir`, in name order.
pub(super) fn read_dir(dir: &Path) -> Result<Vec<Source>, ConfigErrors> {
    let unreadable = |error: std::io::Error, path: &Path| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read: {error}"),
        }])
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|error| unreadable(error, dir))? {
        let path = entry.map_err(|error| unreadable(error, dir))?.path();
        if path
            .extension()
            .is_some_and(|extension| extension == "toml")
            && path.is_file()
        {
            paths.push(path);
        }
    }
    paths.sort();
    let mut sources = Vec::with_capacity(paths.len());
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push(Source::new(path, text)),
            Err(error) => errors.extend(unreadable(error, &path).0),
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Validates the rule files in `sources` against the configured `probes`.
pub(super) fn parse(sources: &[Source], probes: &ProbeKinds) -> Result<Catalog, ConfigErrors> {
    let evaluator = Evaluator::new();
    let mut errors = Vec::new();
    let mut parsed = Vec::with_capacity(sources.len());
    for source in sources {
        let mut sink = ErrorSink::new(source);
        let rule = parse_rule(source, &evaluator, probes, &mut sink);
        if let Err(file_errors) = sink.finish(()) {
            errors.extend(file_errors.0);
        }
        if let Some(rule) = rule {
            parsed.push((source, rule));
        }
    }
    check_unique_ids(&parsed, &mut errors);
    check_inhibits(&parsed, &mut errors);
    if !errors.is_empty() {
        errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        return Err(ConfigErrors(errors));
    }
    let modes = parsed.into_iter().map(|(_, rule)| rule.mode).collect();
    Ok(Catalog { modes, evaluator })
}

// === one file ===

/// The keys of a rule file, deserialized strictly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    title: Spanned<String>,
    severity: RawSeverity,
    when: Spanned<String>,
    #[serde(rename = "for")]
    for_duration: Option<Spanned<HumanDuration>>,
    symptom: Spanned<String>,
    recovery: Spanned<String>,
    runbook: Spanned<String>,
    #[serde(default)]
    inhibits: Vec<Spanned<String>>,
    labels: Option<Spanned<BTreeMap<String, String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawSeverity {
    Critical,
    Warning,
    Info,
}

/// A valid rule and the spans the cross-file checks point at.
struct ParsedRule {
    mode: FailureMode,
    id_span: Range<usize>,
    inhibit_spans: Vec<Range<usize>>,
}

fn parse_rule(
    source: &Source,
    evaluator: &Evaluator,
    probes: &ProbeKinds,
    sink: &mut ErrorSink<'_>,
) -> Option<ParsedRule> {
    let document = match DeTable::parse(source.text()) {
        Ok(document) => document,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            sink.push(&span, "", error.message().trim_end());
            return None;
        }
    };
    let raw = deserialize(document, sink)?;

    let mut valid = true;
    let mut require = |value: &Spanned<String>, key: &str, sink: &mut ErrorSink<'_>| {
        if value.get_ref().trim().is_empty() {
            sink.push(&value.span(), key, "must not be empty");
            valid = false;
        }
    };
    require(&raw.title, "title", sink);
    require(&raw.symptom, "symptom", sink);
    require(&raw.recovery, "recovery", sink);
    require(&raw.runbook, "runbook", sink);
    valid &= check_id(source, &raw.id, sink);
    valid &= check_labels(raw.labels.as_ref(), sink);
    for (index, inhibited) in raw.inhibits.iter().enumerate() {
        if inhibited.get_ref() == raw.id.get_ref() {
            sink.push(
                &inhibited.span(),
                &format!("inhibits[{index}]"),
                "a failure mode cannot inhibit itself",
            );
            valid = false;
        }
    }

    let kind_of = |name: &str| probes.get(name).copied();
    let expression = match evaluator.compile(raw.when.get_ref(), &kind_of) {
        Ok(expression) => Some(expression),
        Err(expression_errors) => {
            report_expression_errors(source, &raw.when, &expression_errors, sink);
            None
        }
    };
    let expression = expression.filter(|_| valid)?;

    let id_span = raw.id.span();
    let inhibit_spans = raw.inhibits.iter().map(Spanned::span).collect();
    let mode = FailureMode {
        id: raw.id.into_inner(),
        title: raw.title.into_inner().trim().to_owned(),
        severity: match raw.severity {
            RawSeverity::Critical => Severity::Critical,
            RawSeverity::Warning => Severity::Warning,
            RawSeverity::Info => Severity::Info,
        },
        when: raw.when.into_inner(),
        for_duration: raw
            .for_duration
            .map_or(Duration::ZERO, |duration| duration.into_inner().get()),
        symptom: raw.symptom.into_inner().trim().to_owned(),
        recovery: raw.recovery.into_inner().trim().to_owned(),
        runbook: raw.runbook.into_inner().trim().to_owned(),
        inhibits: raw.inhibits.into_iter().map(Spanned::into_inner).collect(),
        labels: raw.labels.map(Spanned::into_inner).unwrap_or_default(),
        file: source.path().to_owned(),
        expression,
    };
    Some(ParsedRule {
        mode,
        id_span,
        inhibit_spans,
    })
}

/// Deserializes the document strictly, attributing a serde error to the top-level key it
/// falls within (an error spanning the whole file, such as a missing key, names no key).
fn deserialize(document: Spanned<DeTable<'_>>, sink: &mut ErrorSink<'_>) -> Option<RawRule> {
    let span = document.span();
    let table = document.into_inner();
    let keys: Vec<(String, Range<usize>)> = table
        .iter()
        .map(|(key, value)| {
            let range = key.span().start.min(value.span().start)..value.span().end;
            (key.get_ref().to_string(), range)
        })
        .collect();
    let value = Spanned::new(span.clone(), DeValue::Table(table));
    match RawRule::deserialize(ValueDeserializer::from(value)) {
        Ok(raw) => Some(raw),
        Err(error) => {
            let at = error.span().unwrap_or(span);
            let key = keys
                .iter()
                .find(|(_, range)| range.start <= at.start && at.end <= range.end)
                .map_or("", |(key, _)| key.as_str());
            sink.push(&at, key, error.message().trim_end());
            None
        }
    }
}

fn check_id(source: &Source, id: &Spanned<String>, sink: &mut ErrorSink<'_>) -> bool {
    let text = id.get_ref();
    let kebab = !text.is_empty()
        && text.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !kebab {
        sink.push(
            &id.span(),
            "id",
            format!("`{text}` is not kebab-case (lowercase letters and digits joined by `-`)"),
        );
        return false;
    }
    let stem = source
        .path()
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    if *text != stem {
        sink.push(
            &id.span(),
            "id",
            format!("id `{text}` must match the file name: rename the file to `{text}.toml` or the id to `{stem}`"),
        );
        return false;
    }
    true
}

fn check_labels(
    labels: Option<&Spanned<BTreeMap<String, String>>>,
    sink: &mut ErrorSink<'_>,
) -> bool {
    let Some(labels) = labels else {
        return true;
    };
    let mut valid = true;
    for name in labels.get_ref().keys() {
        let mut chars = name.chars();
        let well_formed = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with("__");
        let message = if !well_formed {
            format!("`{name}` is not a valid label name (letters, digits and `_`)")
        } else if RESERVED_LABELS.contains(&name.as_str()) {
            format!("label name `{name}` is reserved: the alert engine sets it")
        } else {
            continue;
        };
        sink.push(&labels.span(), &format!("labels.{name}"), message);
        valid = false;
    }
    valid
}

/// Locates expression errors in the file: through the string's quotes and escapes to the
/// operator or name CEL pointed at.
fn report_expression_errors(
    source: &Source,
    when: &Spanned<String>,
    errors: &[ExprError],
    sink: &mut ErrorSink<'_>,
) {
    let map = StringMap::new(source.text(), &when.span(), when.get_ref());
    for error in errors {
        let at = map.file_offset(error.offset);
        sink.push(&(at..at), "when", error.message.clone());
    }
}

// === across files ===

fn check_unique_ids(parsed: &[(&Source, ParsedRule)], errors: &mut Vec<ConfigError>) {
    let mut first: HashMap<&str, &Source> = HashMap::new();
    for (source, rule) in parsed {
        match first.get(rule.mode.id.as_str()) {
            Some(earlier) => errors.push(source.error(
                &rule.id_span,
                "id",
                format!(
                    "duplicate id `{}`, already used by {}",
                    rule.mode.id,
                    earlier.path().display()
                ),
            )),
            None => {
                first.insert(&rule.mode.id, source);
            }
        }
    }
}

fn check_inhibits(parsed: &[(&Source, ParsedRule)], errors: &mut Vec<ConfigError>) {
    let ids: HashMap<&str, usize> = parsed
        .iter()
        .enumerate()
        .map(|(index, (_, rule))| (rule.mode.id.as_str(), index))
        .collect();
    for (source, rule) in parsed {
        for (index, (inhibited, span)) in rule
            .mode
            .inhibits
            .iter()
            .zip(&rule.inhibit_spans)
            .enumerate()
        {
            if !ids.contains_key(inhibited.as_str()) {
                errors.push(source.error(
                    span,
                    &format!("inhibits[{index}]"),
                    format!("inhibits unknown failure mode `{inhibited}`"),
                ));
            }
        }
    }
    for cycle in inhibition_cycles(parsed, &ids) {
        let (closing, edge) = cycle.closing;
        let (source, rule) = &parsed[closing];
        let path: Vec<&str> = cycle
            .members
            .iter()
            .map(|member| parsed[*member].1.mode.id.as_str())
            .collect();
        errors.push(source.error(
            &rule.inhibit_spans[edge],
            &format!("inhibits[{edge}]"),
            format!(
                "inhibition cycle {} -> {}: each would silence the other",
                path.join(" -> "),
                path.first().copied().unwrap_or_default()
            ),
        ));
    }
}

/// A cycle of `inhibits`, and the edge (rule index, inhibits index) that closes it.
struct Cycle {
    members: Vec<usize>,
    closing: (usize, usize),
}

/// Every elementary cycle found by a depth-first search, each reported once.
fn inhibition_cycles(parsed: &[(&Source, ParsedRule)], ids: &HashMap<&str, usize>) -> Vec<Cycle> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        node: usize,
        parsed: &[(&Source, ParsedRule)],
        ids: &HashMap<&str, usize>,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
        cycles: &mut Vec<Cycle>,
    ) {
        marks[node] = Mark::OnPath;
        path.push(node);
        for (edge, target) in parsed[node].1.mode.inhibits.iter().enumerate() {
            // Unknown ids and self-inhibition are reported on their own.
            let Some(&target) = ids.get(target.as_str()).filter(|&&target| target != node) else {
                continue;
            };
            match marks[target] {
                Mark::New => visit(target, parsed, ids, marks, path, cycles),
                Mark::OnPath => {
                    let start = path
                        .iter()
                        .position(|&member| member == target)
                        .unwrap_or(0);
                    cycles.push(Cycle {
                        members: path[start..].to_vec(),
                        closing: (node, edge),
                    });
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[node] = Mark::Done;
    }
    let mut marks = vec![Mark::New; parsed.len()];
    let mut cycles = Vec::new();
    for node in 0..parsed.len() {
        if marks[node] == Mark::New {
            visit(node, parsed, ids, &mut marks, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}
