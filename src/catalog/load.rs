//! Loading `alerts/*.toml`: one strict TOML file per failure mode, validated into a [`Catalog`].
//!
//! The directory is listed first: `*.toml` files are rules; a file that is nearly one
//! (`web-down.TOML`) is an error, since it was obviously meant as a rule and silently dropping
//! it would drop an alert; anything else (a README, a directory) is reported as skipped, and
//! hidden entries (`.git`, a ConfigMap's `..data`) are left alone. A rule file is at most
//! [`MAX_RULE_FILE_BYTES`] and must be UTF-8 (the first bad byte is located).
//!
//! Each file is parsed into a spanned tree and deserialized key by key, so that every wrong
//! or missing key is reported, not only the first, and then validated: the id is kebab-case and
//! equals the file stem, the texts are not empty, the title is one line, `for` is in range, the
//! labels are valid label names, and the `when` expression compiles, reads only configured
//! probes and passes the load-time type check. Then the files are checked together: ids are
//! unique, and `inhibits` names existing modes without a cycle. Every problem becomes a located
//! [`ConfigError`] (file, line, column, key), and all of them are reported at once.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::DeTable;

use crate::spec::source::{did_you_mean, with_typo_hint};
use crate::spec::{ConfigError, ConfigErrors, ErrorSink, HumanDuration, Source, duration};

use super::example;
use super::expr::{Evaluator, ExprError};
use super::position::StringMap;
use super::{Catalog, FailureMode, ProbeKinds, Severity, Warning, WarningKind};

/// Keys a rule's labels may not use: the alert engine sets them itself.
const RESERVED_LABELS: [&str; 2] = ["alertname", "severity"];

/// The largest rule file: the longest shipped one is under 2 KB, and the markdown of a long
/// recovery fits many times over. The limit bounds what a stray file can make the daemon hold.
pub(crate) const MAX_RULE_FILE_BYTES: u64 = 64 * 1024;

/// Rule compilation runs on a thread with this much stack: the CEL parser is deeply recursive
/// (over 128 KB per nesting level in a debug build), and a test thread or a runtime worker
/// has 2 MiB. It is reserved, not used: pages are committed as they are touched.
const LOADER_STACK: usize = 64 * 1024 * 1024;

/// What the rules directory holds.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// The rule files, read, in name order.
    pub(super) sources: Vec<Source>,
    /// Entries that are not rule files.
    pub(super) skipped: Vec<Warning>,
    /// Rule files that cannot be read, are too large or not UTF-8, and near misses
    /// (`web-down.TOML`).
    pub(super) errors: Vec<ConfigError>,
}

/// Lists `dir` and reads its rule files, in name order. Fails only when `dir` itself cannot be
/// read; problems with single entries are in the listing.
pub(super) fn read_dir(dir: &Path) -> Result<Listing, ConfigErrors> {
    let unreadable =
        |error: std::io::Error| ConfigErrors(vec![ConfigError::unreadable(dir, &error)]);
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        // Hidden by convention: version control, editors' swap files, and the `..data` links
        // Kubernetes puts in a ConfigMap volume.
        if !entry.file_name().to_string_lossy().starts_with('.') {
            paths.push(entry.path());
        }
    }
    paths.sort();
    let mut listing = Listing::default();
    for path in paths {
        let extension = path
            .extension()
            .map(|extension| extension.to_string_lossy());
        match extension.as_deref() {
            Some("toml") if path.is_dir() => listing
                .skipped
                .push(Warning::skipped(path, "a directory, not a rule file")),
            Some("toml") => match Source::read(&path, Some(MAX_RULE_FILE_BYTES)) {
                Ok(source) => listing.sources.push(source),
                Err(error) => listing.errors.push(error),
            },
            Some(other) if other.eq_ignore_ascii_case("toml") => {
                let renamed = path.with_extension("toml");
                listing.errors.push(ConfigError {
                    file: path.clone(),
                    line: 0,
                    column: 0,
                    key: String::new(),
                    message: format!(
                        "not loaded: rule files end in lowercase `.toml`; rename it to `{}`",
                        renamed.file_name().map_or_else(
                            || renamed.display().to_string(),
                            |name| name.to_string_lossy().into_owned()
                        )
                    ),
                });
            }
            _ => {
                let reason = if path.is_dir() {
                    "a directory, not a rule file (rules are `*.toml` files directly in it)"
                } else {
                    "not a rule file (rules are `*.toml`)"
                };
                listing.skipped.push(Warning::skipped(path, reason));
            }
        }
    }
    Ok(listing)
}

/// Validates the rule files in `sources` against the configured `probes`.
pub(super) fn parse(sources: &[Source], probes: &ProbeKinds) -> Result<Catalog, ConfigErrors> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("rule-loader".to_owned())
            .stack_size(LOADER_STACK)
            .spawn_scoped(scope, || parse_here(sources, probes));
        match worker {
            Ok(worker) => worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            // No thread to be had: the limits on expressions keep the current stack enough
            // for the main thread.
            Err(_) => parse_here(sources, probes),
        }
    })
}

/// [`parse`] on the current thread.
fn parse_here(sources: &[Source], probes: &ProbeKinds) -> Result<Catalog, ConfigErrors> {
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
    let mut warnings = check_inhibits(&parsed, &mut errors);
    let known: Vec<String> = parsed.iter().map(|(_, rule)| rule.id.clone()).collect();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    warnings.extend(example::check_names(
        parsed.iter_mut().filter_map(|(_, rule)| rule.mode.as_mut()),
        &known,
    ));
    let modes: Option<Vec<FailureMode>> = parsed.into_iter().map(|(_, rule)| rule.mode).collect();
    match modes {
        Some(modes) if errors.is_empty() => Ok(Catalog {
            modes,
            evaluator,
            warnings,
            dir: None,
        }),
        _ => {
            errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            Err(ConfigErrors(errors))
        }
    }
}

// === one file ===

/// The keys of a rule file, each deserialized on its own (see [`deserialize`]).
#[derive(Debug)]
struct RawRule {
    id: Spanned<String>,
    title: Spanned<String>,
    severity: RawSeverity,
    when: Spanned<String>,
    for_duration: Option<Spanned<HumanDuration>>,
    symptom: Spanned<String>,
    recovery: Spanned<String>,
    runbook: Option<Spanned<String>>,
    inhibits: Vec<Spanned<String>>,
    hold_while_failing: Vec<Spanned<String>>,
    labels: Option<Spanned<BTreeMap<String, String>>>,
}

/// Every key a rule file may have, in documentation order.
const RULE_KEYS: [&str; 12] = [
    "id",
    "title",
    "severity",
    "when",
    "for",
    "symptom",
    "recovery",
    "runbook",
    "inhibits",
    "hold_while_failing",
    "labels",
    "example",
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawSeverity {
    Critical,
    Warning,
    Info,
}

/// A rule file that deserialized: what the cross-file checks need, and the failure mode if
/// the file is valid on its own. A file with an error elsewhere still takes part in the
/// cross-file checks, so that a typo in one rule's `when` does not make every rule inhibiting
/// it report an unknown id.
struct ParsedRule {
    id: String,
    id_span: Range<usize>,
    /// Whether the id equals the file stem (the first holder of a duplicate id is the file
    /// named after it).
    named_after_file: bool,
    inhibits: Vec<String>,
    inhibit_spans: Vec<Range<usize>>,
    mode: Option<FailureMode>,
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
            let error = source.syntax_error(&error);
            sink.push_error(error);
            return None;
        }
    };
    // Examples are parsed on their own: a broken one is reported without hiding the rule from
    // the checks across files (an inhibitor of it would report it unknown).
    let mut document = document;
    let examples = match document.get_mut().remove("example") {
        Some(value) => {
            let before = sink.len();
            let examples = example::parse(value, probes, sink);
            (sink.len() == before).then_some(examples)
        }
        None => Some(Vec::new()),
    };
    let raw = deserialize(document, sink)?;

    let mut valid = examples.is_some();
    let mut require = |value: &Spanned<String>, key: &str, sink: &mut ErrorSink<'_>| {
        if value.get_ref().trim().is_empty() {
            sink.push(&value.span(), key, "must not be empty");
            valid = false;
        }
    };
    require(&raw.title, "title", sink);
    require(&raw.symptom, "symptom", sink);
    require(&raw.recovery, "recovery", sink);
    if let Some(runbook) = &raw.runbook {
        require(runbook, "runbook", sink);
    }
    valid &= check_title(&raw.title, sink);
    let (kebab, named_after_file) = check_id(source, &raw.id, sink);
    valid &= kebab && named_after_file;
    valid &= check_labels(raw.labels.as_ref(), sink);
    let before = sink.len();
    let for_duration = duration::RULE_FOR
        .spanned(raw.for_duration, "for", sink)
        .unwrap_or(Duration::ZERO);
    valid &= sink.len() == before;
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
    if let Some(expression) = &expression {
        valid &= check_holds(&raw.hold_while_failing, expression.probes.as_slice(), sink);
    }
    let id = raw.id.get_ref().clone();
    let id_span = raw.id.span();
    let inhibits: Vec<String> = raw.inhibits.iter().map(|id| id.get_ref().clone()).collect();
    let inhibit_spans = raw.inhibits.iter().map(Spanned::span).collect();
    let mode = expression.filter(|_| valid).map(|expression| FailureMode {
        id: raw.id.into_inner(),
        title: raw.title.into_inner().trim().to_owned(),
        severity: match raw.severity {
            RawSeverity::Critical => Severity::Critical,
            RawSeverity::Warning => Severity::Warning,
            RawSeverity::Info => Severity::Info,
        },
        when: raw.when.into_inner(),
        for_duration,
        symptom: raw.symptom.into_inner().trim().to_owned(),
        recovery: raw.recovery.into_inner().trim().to_owned(),
        runbook: raw
            .runbook
            .map(|runbook| runbook.into_inner().trim().to_owned())
            .unwrap_or_default(),
        inhibits: raw.inhibits.into_iter().map(Spanned::into_inner).collect(),
        hold_while_failing: raw
            .hold_while_failing
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
        labels: raw.labels.map(Spanned::into_inner).unwrap_or_default(),
        file: source.path().to_owned(),
        examples: examples.unwrap_or_default(),
        expression,
    });
    kebab.then_some(ParsedRule {
        id,
        id_span,
        named_after_file,
        inhibits,
        inhibit_spans,
        mode,
    })
}

/// `hold_while_failing` names probes `when` reads: the classifier re-evaluates a rule only when
/// one of its own probes reports, so a hold on any other probe could never be lifted on time.
fn check_holds(holds: &[Spanned<String>], read: &[String], sink: &mut ErrorSink<'_>) -> bool {
    let names: Vec<&str> = read.iter().map(String::as_str).collect();
    let mut valid = true;
    for (index, hold) in holds.iter().enumerate() {
        if !names.contains(&hold.get_ref().as_str()) {
            sink.push(
                &hold.span(),
                &format!("hold_while_failing[{index}]"),
                format!(
                    "`when` does not read `{}`: hold only on probes the rule reads{}",
                    hold.get_ref(),
                    did_you_mean(hold.get_ref(), &names)
                ),
            );
            valid = false;
        }
    }
    valid
}

/// Deserializes the document key by key, so that every unknown, missing or malformed key is
/// reported (serde on the whole table stops at the first), each at its own position with its
/// dotted path (`labels.team`).
fn deserialize(document: Spanned<DeTable<'_>>, sink: &mut ErrorSink<'_>) -> Option<RawRule> {
    let mut table = document.into_inner();
    let expected = RULE_KEYS
        .iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ");
    for (key, _) in table.iter() {
        let name = key.get_ref();
        if !RULE_KEYS.contains(&name.as_ref()) {
            let message = format!("unknown field `{name}`, expected one of {expected}");
            sink.push(&key.span(), name, with_typo_hint(&message, &[]));
        }
    }
    let mut take = Taker {
        table: &mut table,
        sink,
        complete: true,
    };
    let id = take.required("id");
    let title = take.required("title");
    let severity = take.required("severity");
    let when = take.required("when");
    let for_duration = take.optional("for");
    let symptom = take.required("symptom");
    let recovery = take.required("recovery");
    let runbook = take.optional("runbook");
    let inhibits = take.optional("inhibits");
    let hold_while_failing = take.optional("hold_while_failing");
    let labels = take.optional("labels");
    if !take.complete {
        return None;
    }
    Some(RawRule {
        id: id?,
        title: title?,
        severity: severity?,
        when: when?,
        for_duration,
        symptom: symptom?,
        recovery: recovery?,
        runbook,
        inhibits: inhibits.unwrap_or_default(),
        hold_while_failing: hold_while_failing.unwrap_or_default(),
        labels,
    })
}

/// Takes keys out of a rule's table one at a time, recording what is missing or malformed.
struct Taker<'t, 'i, 's, 'a> {
    table: &'t mut DeTable<'i>,
    sink: &'s mut ErrorSink<'a>,
    /// Whether every key so far was present (when required) and well-formed.
    complete: bool,
}

impl Taker<'_, '_, '_, '_> {
    fn required<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        if !self.table.contains_key(key) {
            self.sink
                .push(&(0..0), key, format!("missing field `{key}`"));
            self.complete = false;
            return None;
        }
        self.optional(key)
    }

    fn optional<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        let value = self.table.remove(key)?;
        let parsed = self.sink.deserialize(value, key);
        self.complete &= parsed.is_some();
        parsed
    }
}

/// The title is one line: it is a mail subject and a heading. Returns whether it is.
fn check_title(title: &Spanned<String>, sink: &mut ErrorSink<'_>) -> bool {
    let text = title.get_ref().trim();
    match text.chars().find(|c| c.is_control()) {
        None => true,
        Some(c) => {
            let what = if matches!(c, '\n' | '\r') {
                "a line break".to_owned()
            } else {
                format!("a control character (U+{:04X})", u32::from(c))
            };
            sink.push(
                &title.span(),
                "title",
                format!("must be one line, without control characters; it contains {what}"),
            );
            false
        }
    }
}

/// Checks the id; returns whether it is kebab-case and whether it equals the file stem.
fn check_id(source: &Source, id: &Spanned<String>, sink: &mut ErrorSink<'_>) -> (bool, bool) {
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
        return (false, false);
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
        return (true, false);
    }
    (true, true)
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
    // The file named after the id owns it; the others are the duplicates.
    let mut ordered: Vec<&(&Source, ParsedRule)> = parsed.iter().collect();
    ordered.sort_by_key(|(_, rule)| !rule.named_after_file);
    let mut first: HashMap<&str, &Source> = HashMap::new();
    for (source, rule) in ordered {
        match first.get(rule.id.as_str()) {
            Some(earlier) => errors.push(source.error(
                &rule.id_span,
                "id",
                format!(
                    "duplicate id `{}`, already used by {}",
                    rule.id,
                    earlier.path().display()
                ),
            )),
            None => {
                first.insert(&rule.id, source);
            }
        }
    }
}

/// An `inhibits` entry naming a mode that is not loaded is a warning, not an error: a team may
/// adopt part of a catalog, and the entry then simply has nothing to inhibit. Cycles among the
/// loaded modes are errors.
fn check_inhibits(parsed: &[(&Source, ParsedRule)], errors: &mut Vec<ConfigError>) -> Vec<Warning> {
    let ids: HashMap<&str, usize> = parsed
        .iter()
        .enumerate()
        .map(|(index, (_, rule))| (rule.id.as_str(), index))
        .collect();
    let known: Vec<&str> = parsed.iter().map(|(_, rule)| rule.id.as_str()).collect();
    let mut warnings = Vec::new();
    for (source, rule) in parsed {
        for (index, (inhibited, span)) in rule.inhibits.iter().zip(&rule.inhibit_spans).enumerate()
        {
            if !ids.contains_key(inhibited.as_str()) {
                warnings.push(Warning {
                    kind: WarningKind::InhibitsUnloaded,
                    file: source.path().to_owned(),
                    position: Some(source.locate(span.start)),
                    key: format!("inhibits[{index}]"),
                    message: format!(
                        "`{inhibited}` is not loaded, so this entry inhibits nothing{}",
                        did_you_mean(inhibited, &known)
                    ),
                });
            }
        }
    }
    for cycle in inhibition_cycles(parsed, &ids) {
        let (closing, edge) = cycle.closing;
        let (source, rule) = &parsed[closing];
        let path: Vec<&str> = cycle
            .members
            .iter()
            .map(|member| parsed[*member].1.id.as_str())
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
    warnings
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
        for (edge, target) in parsed[node].1.inhibits.iter().enumerate() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Kind;

    fn probes() -> ProbeKinds {
        [
            ("edge-api", Kind::Http),
            ("redis", Kind::Redis),
            ("db-pooler", Kind::Postgres),
        ]
        .into_iter()
        .map(|(name, kind)| (name.to_owned(), kind))
        .collect()
    }

    /// A valid rule file for `id`, with `extra` lines appended and `when` replaced if given.
    fn rule(id: &str, when: &str, extra: &str) -> String {
        format!(
            "id = \"{id}\"\ntitle = \"Redis unreachable\"\nseverity = \"critical\"\nwhen = {when}\n\
             symptom = \"Jobs stop.\"\nrecovery = \"Restart it.\"\nrunbook = \"#redis\"\n{extra}"
        )
    }

    /// Loads `files` (name, text) from `alerts/` and returns the error lines.
    fn errors(files: &[(&str, String)]) -> Vec<String> {
        let sources: Vec<Source> = files
            .iter()
            .map(|(name, text)| Source::new(format!("alerts/{name}"), text.clone()))
            .collect();
        match parse(&sources, &probes()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    /// A rule file with nothing wrong loads, with `for`, `inhibits` and `labels` defaulted.
    #[test]
    fn a_valid_rule_loads_with_defaults() {
        let source = Source::new(
            "alerts/redis-down.toml",
            rule("redis-down", "'!probes.redis.ok'", ""),
        );
        let catalog = parse(&[source], &probes()).unwrap();
        let mode = catalog.get("redis-down").unwrap();
        assert_eq!(mode.title, "Redis unreachable");
        assert_eq!(mode.severity, Severity::Critical);
        assert_eq!(mode.for_duration, Duration::ZERO);
        assert!(mode.inhibits.is_empty() && mode.labels.is_empty());
        assert_eq!(mode.probes(), ["redis"]);
        assert_eq!(mode.file, Path::new("alerts/redis-down.toml"));
    }

    /// A CEL syntax error points at the line and column of the file where CEL gave up.
    #[test]
    fn a_syntax_error_is_located_in_the_file() {
        let text = rule("redis-down", "'probes.redis.ok &&'", "");
        assert_eq!(
            errors(&[("redis-down.toml", text)]),
            [
                "alerts/redis-down.toml:4:27: when: syntax error: mismatched input '<EOF>' \
              expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, \
              NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}"
            ]
        );
    }

    /// An unknown probe in a multi-line `when` is located on its own line, at its name.
    #[test]
    fn an_unknown_probe_is_located_on_its_line() {
        let when = "'''\n  !probes.redis.ok &&\n  probes[\"db-poler\"].ok'''";
        assert_eq!(
            errors(&[("redis-down.toml", rule("redis-down", when, ""))]),
            ["alerts/redis-down.toml:6:10: when: unknown probe `db-poler`"]
        );
    }

    /// A type error is found at load (not at 3 a.m.) and located at its operator, counting
    /// the escaped quotes of a basic string as they are written.
    #[test]
    fn a_type_error_is_located_at_its_operator() {
        let when = r#""!probes.redis.ok && probes.redis.observations.uptime_seconds < \"600\"""#;
        assert_eq!(
            errors(&[("redis-down.toml", rule("redis-down", when, ""))]),
            [
                "alerts/redis-down.toml:4:70: when: type error: found no matching overload for \
              '_<_' applied to '(int, string)'"
            ]
        );
    }

    /// Unknown keys are errors (a typo never silently drops a setting), with a hint for a typo.
    #[test]
    fn an_unknown_key_is_rejected() {
        let text = rule("redis-down", "'!probes.redis.ok'", "whn = 'x'\n");
        assert_eq!(
            errors(&[("redis-down.toml", text)]),
            [
                "alerts/redis-down.toml:8:1: whn: unknown field `whn`, expected one of `id`, \
              `title`, `severity`, `when`, `for`, `symptom`, `recovery`, `runbook`, \
              `inhibits`, `hold_while_failing`, `labels`, `example`; did you mean `when`?"
            ]
        );
    }

    /// Two files with one id: the file named after the id keeps it, the other is reported.
    #[test]
    fn a_duplicate_id_is_reported_on_the_file_not_named_after_it() {
        let text = rule("redis-down", "'!probes.redis.ok'", "");
        assert_eq!(
            errors(&[("a-copy.toml", text.clone()), ("redis-down.toml", text)]),
            [
                "alerts/a-copy.toml:1:6: id: id `redis-down` must match the file name: rename \
                 the file to `redis-down.toml` or the id to `a-copy`",
                "alerts/a-copy.toml:1:6: id: duplicate id `redis-down`, already used by \
                 alerts/redis-down.toml",
            ]
        );
    }

    /// The id is the alert name and the file name: they must agree, and be kebab-case.
    #[test]
    fn the_id_must_be_kebab_case_and_match_the_file_name() {
        assert_eq!(
            errors(&[(
                "redis-gone.toml",
                rule("redis-down", "'!probes.redis.ok'", "")
            )]),
            [
                "alerts/redis-gone.toml:1:6: id: id `redis-down` must match the file name: rename \
              the file to `redis-down.toml` or the id to `redis-gone`"
            ]
        );
        assert_eq!(
            errors(&[(
                "Redis_Down.toml",
                rule("Redis_Down", "'!probes.redis.ok'", "")
            )]),
            [
                "alerts/Redis_Down.toml:1:6: id: `Redis_Down` is not kebab-case (lowercase \
              letters and digits joined by `-`)"
            ]
        );
    }

    /// An `inhibits` entry naming a mode that is not loaded is a warning, located, with a hint
    /// when it looks like a typo of a loaded one: a catalog adopted in part still loads.
    #[test]
    fn inhibiting_a_mode_that_is_not_loaded_is_a_warning() {
        let text = rule(
            "redis-down",
            "'!probes.redis.ok'",
            "inhibits = [\"worker-stalled\", \"redis-dwn\"]\n",
        );
        let other = rule("redis-dawn", "'!probes.redis.ok'", "");
        let catalog = parse(
            &[
                Source::new("alerts/redis-down.toml", text),
                Source::new("alerts/redis-dawn.toml", other),
            ],
            &probes(),
        )
        .unwrap();
        let warnings: Vec<String> = catalog.warnings().iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "alerts/redis-down.toml:8:13: inhibits[0]: `worker-stalled` is not loaded, so \
                 this entry inhibits nothing",
                "alerts/redis-down.toml:8:31: inhibits[1]: `redis-dwn` is not loaded, so this \
                 entry inhibits nothing; did you mean `redis-dawn`?",
            ]
        );
        assert!(
            catalog
                .warnings()
                .iter()
                .all(|warning| warning.kind == WarningKind::InhibitsUnloaded)
        );
    }

    /// `runbook` is optional (Alertmanager's `runbook_url` is an optional annotation too); when
    /// given it must not be empty.
    #[test]
    fn the_runbook_is_optional() {
        let text =
            rule("redis-down", "'!probes.redis.ok'", "").replace("runbook = \"#redis\"\n", "");
        let catalog = parse(&[Source::new("alerts/redis-down.toml", text)], &probes()).unwrap();
        assert_eq!(catalog.get("redis-down").unwrap().runbook, "");
        let empty = rule("redis-down", "'!probes.redis.ok'", "").replace("\"#redis\"", "\" \"");
        assert_eq!(
            errors(&[("redis-down.toml", empty)]),
            ["alerts/redis-down.toml:7:11: runbook: must not be empty"]
        );
    }

    /// Modes inhibiting each other (or themselves) would all be silenced at once.
    #[test]
    fn inhibition_cycles_are_rejected() {
        let a = rule("a", "'!probes.redis.ok'", "inhibits = [\"b\"]\n");
        let b = rule("b", "'!probes.redis.ok'", "inhibits = [\"a\", \"b\"]\n");
        assert_eq!(
            errors(&[("a.toml", a), ("b.toml", b)]),
            [
                "alerts/b.toml:8:13: inhibits[0]: inhibition cycle a -> b -> a: each would \
                 silence the other",
                "alerts/b.toml:8:18: inhibits[1]: a failure mode cannot inhibit itself",
            ]
        );
    }

    /// A typo in one rule's `when` does not make the rules inhibiting it report it unknown.
    #[test]
    fn a_broken_rule_is_still_known_to_its_inhibitors() {
        let broken = rule("worker-stalled", "'probes.asynq.ok'", "");
        let inhibitor = rule(
            "redis-down",
            "'!probes.redis.ok'",
            "inhibits = [\"worker-stalled\"]\n",
        );
        assert_eq!(
            errors(&[
                ("redis-down.toml", inhibitor),
                ("worker-stalled.toml", broken)
            ]),
            ["alerts/worker-stalled.toml:4:16: when: unknown probe `asynq`"]
        );
    }

    /// Severity, `for` and missing keys are reported by the strict deserializer.
    #[test]
    fn malformed_values_and_missing_keys_are_reported() {
        let severity = rule("redis-down", "'!probes.redis.ok'", "").replace("critical", "fatal");
        assert_eq!(
            errors(&[("redis-down.toml", severity)]),
            [
                "alerts/redis-down.toml:3:12: severity: unknown variant `fatal`, expected one of \
              `critical`, `warning`, `info`"
            ]
        );
        let duration = rule("redis-down", "'!probes.redis.ok'", "for = \"soon\"\n");
        assert_eq!(
            errors(&[("redis-down.toml", duration)]),
            [
                "alerts/redis-down.toml:8:7: for: invalid duration `soon` (expected number at 0); \
              write e.g. \"30s\", \"1m30s\" or \"250ms\""
            ]
        );
        assert_eq!(
            errors(&[("redis-down.toml", "id = \"redis-down\"\n".to_owned())]),
            [
                "alerts/redis-down.toml:1:1: title: missing field `title`",
                "alerts/redis-down.toml:1:1: severity: missing field `severity`",
                "alerts/redis-down.toml:1:1: when: missing field `when`",
                "alerts/redis-down.toml:1:1: symptom: missing field `symptom`",
                "alerts/redis-down.toml:1:1: recovery: missing field `recovery`",
            ]
        );
    }

    /// `for` is at most a week: a longer one (or one no instant can hold) is located.
    #[test]
    fn for_is_bounded() {
        let text = rule(
            "redis-down",
            "'!probes.redis.ok'",
            "for = \"500000000000y\"\n",
        );
        assert_eq!(
            errors(&[("redis-down.toml", text)]),
            ["alerts/redis-down.toml:8:7: for: must be at most 7d (the range is 0s to 7d)"]
        );
        let week = rule("redis-down", "'!probes.redis.ok'", "for = \"7d\"\n");
        assert!(errors(&[("redis-down.toml", week)]).is_empty());
    }

    /// Every wrong key of a file is reported, not only the first serde meets.
    #[test]
    fn every_malformed_key_of_a_file_is_reported() {
        let text = "id = \"redis-down\"\ntitle = 3\nseverity = \"fatal\"\nwhen = '!probes.redis.ok'\n\
                    for = \"soon\"\nsymptom = \"s\"\nrecovery = \"r\"\ncolour = \"red\"\n";
        assert_eq!(
            errors(&[("redis-down.toml", text.to_owned())]),
            [
                "alerts/redis-down.toml:2:9: title: invalid type: integer `3`, expected a string",
                "alerts/redis-down.toml:3:12: severity: unknown variant `fatal`, expected one of \
                 `critical`, `warning`, `info`",
                "alerts/redis-down.toml:5:7: for: invalid duration `soon` (expected number at 0); \
                 write e.g. \"30s\", \"1m30s\" or \"250ms\"",
                "alerts/redis-down.toml:8:1: colour: unknown field `colour`, expected one of `id`, \
                 `title`, `severity`, `when`, `for`, `symptom`, `recovery`, `runbook`, \
                 `inhibits`, `hold_while_failing`, `labels`, `example`",
            ]
        );
    }

    /// TOML says only "duplicate key": the key is named, at the second occurrence.
    #[test]
    fn a_duplicate_key_is_named() {
        let text = rule(
            "redis-down",
            "'!probes.redis.ok'",
            "\n\ntitle = \"again\"\n",
        );
        assert_eq!(
            errors(&[("redis-down.toml", text)]),
            ["alerts/redis-down.toml:10:1: title: duplicate key `title`: it is already set above"]
        );
    }

    /// A value under a long dotted key is located on its own line, with its whole path.
    #[test]
    fn a_dotted_key_error_names_its_path_on_its_line() {
        let text = rule(
            "redis-down",
            "'!probes.redis.ok'",
            "\n\n\nlabels.team.platform.oncall = \"x\"\n",
        );
        assert_eq!(
            errors(&[("redis-down.toml", text)]),
            ["alerts/redis-down.toml:11:8: labels.team: invalid type: map, expected a string"]
        );
    }

    /// The title is a mail subject and a heading: a line break or escape in it is an error.
    #[test]
    fn a_title_is_one_line() {
        for (title, what) in [
            ("Redis\\nunreachable", "a line break"),
            ("Redis\\r\\nBcc: x", "a line break"),
            ("Redis \\u001b[31mdown", "a control character (U+001B)"),
        ] {
            let text =
                rule("redis-down", "'!probes.redis.ok'", "").replace("Redis unreachable", title);
            assert_eq!(
                errors(&[("redis-down.toml", text)]),
                [format!(
                    "alerts/redis-down.toml:2:9: title: must be one line, without control \
                     characters; it contains {what}"
                )]
            );
        }
    }

    /// A huge `when` is refused before the parser sees it, naming the limit; so are brackets
    /// nested too deep for the parser and expressions too deep to evaluate.
    #[test]
    fn expression_size_nesting_and_depth_are_limited() {
        let chain = vec!["probes.redis.ok"; 200_000].join(" && ");
        let text = rule("redis-down", &format!("'{chain}'"), "");
        let found = errors(&[("redis-down.toml", text)]);
        assert_eq!(
            found,
            [format!(
                "alerts/redis-down.toml:4:9: when: the expression is {} bytes, over the limit \
                 of 4096: split it into several rules",
                chain.len()
            )]
        );

        let nested = |levels: usize| {
            format!(
                "'{}!probes.redis.ok{}'",
                "(".repeat(levels),
                ")".repeat(levels)
            )
        };
        let deep = rule("redis-down", &nested(17), "");
        assert_eq!(
            errors(&[("redis-down.toml", deep)]),
            [
                "alerts/redis-down.toml:4:25: when: brackets nest deeper than 16 levels here: \
              simplify the expression"
            ]
        );
        let allowed = rule("redis-down", &nested(16), "");
        assert!(errors(&[("redis-down.toml", allowed)]).is_empty());

        let long_path = format!(
            "'!probes.redis.ok && has(probes.redis.observations{})'",
            ".x".repeat(100)
        );
        let found = errors(&[("redis-down.toml", rule("redis-down", &long_path, ""))]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("when: the expression nests deeper than 32 levels here"),
            "{found:?}"
        );
    }

    /// Labels become Alertmanager labels: valid names only, and not the engine's own.
    #[test]
    fn labels_must_be_valid_and_not_reserved() {
        let text = rule(
            "redis-down",
            "'!probes.redis.ok'",
            "labels = { severity = \"x\", \"team-name\" = \"ops\", team = \"ops\" }\n",
        );
        assert_eq!(
            errors(&[("redis-down.toml", text)]),
            [
                "alerts/redis-down.toml:8:10: labels.severity: label name `severity` is \
                 reserved: the alert engine sets it",
                "alerts/redis-down.toml:8:10: labels.team-name: `team-name` is not a valid \
                 label name (letters, digits and `_`)",
            ]
        );
    }

    /// Every bad file is reported in one go, in file order, along with TOML syntax errors.
    #[test]
    fn every_bad_rule_is_reported_at_once() {
        let empty_title = rule("a", "'!probes.redis.ok'", "").replace("Redis unreachable", " ");
        assert_eq!(
            errors(&[
                ("a.toml", empty_title),
                ("b.toml", "id = \"b\"\ntitle = \n".to_owned()),
                ("c.toml", rule("c", "'probes.redis.ok > 1'", "")),
            ]),
            [
                "alerts/a.toml:2:9: title: must not be empty",
                "alerts/b.toml:2:9: string values must be quoted, expected literal string",
                "alerts/c.toml:4:25: when: type error: found no matching overload for '_>_' \
                 applied to '(bool, int)'",
            ]
        );
    }
}
