//! The `when` expression of a rule: compiling it, checking it at load, evaluating it.
//!
//! A rule reads probes only by literal name (`probes["origin-1"]` or `probes.redis`), so the set
//! of probes each rule depends on is known statically. That set is checked against the configured
//! probes at load, drives the classifier's index (a rule is re-evaluated only when one of its
//! probes reports), and bounds the context built per evaluation: only the rule's own probes are
//! converted to CEL values, borrowing their strings from the probe views.
//!
//! The CEL context of one evaluation:
//!
//! - `probes`: a map from probe name to the latest result: `name`, `kind`, `ok`, `error` (the
//!   class, `""` when ok), `message`, `duration_seconds`, `consecutive_failures`,
//!   `observations` (the probe's observations as CEL values; `null` stays `null`);
//! - `now`: wall-clock Unix seconds (an int), for certificate expiry and the like;
//! - two methods on a probe: `failure_ratio(n)` (share of the last `n` runs that failed) and
//!   `seconds_since_ok()` (seconds since the probe last succeeded).
//!
//! The two methods need the probe's history and the current instant, which are not CEL values:
//! they reach them through a variable whose name no expression can spell (it contains a space),
//! holding the evaluation's probe views.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, LiteralValue};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, Type,
};
use cel::common::value::{StaticVal, Val};
use cel::{Context, Env, ExecutionError, FunctionContext, IdedExpr, Program};
use jiff::Timestamp;
use tokio::time::Instant;

use crate::probe::schema::Resolved;
use crate::probe::{Kind, Value};
use crate::spec::source::did_you_mean;
use crate::view::{HISTORY_LEN, ProbeView};

use super::synthetic;

/// The variable the helper methods find the evaluation's probe views in. Not an identifier, so
/// no rule can read or shadow it.
const SCOPE_VARIABLE: &str = "honeyguide scope";

/// The longest `when`, in bytes: ten times the longest shipped rule. A 3 MB `&&` chain took
/// 5 s and 1.5 GB to compile, held for the daemon's life.
pub(crate) const MAX_EXPRESSION_BYTES: usize = 4096;
/// How deep brackets (`(`, `[`, `{`) may nest. The CEL parser recurses through a dozen grammar
/// rules per level (over 128 KB of stack each in a debug build), and no shipped rule nests
/// more than 3.
pub(crate) const MAX_NESTING: usize = 16;
/// How deep the compiled expression may be (`a.b.c...`, nested calls and conditionals): the
/// classifier evaluates it recursively on a runtime worker, whose stack is 2 MiB. An arithmetic
/// chain (`x + 1 + 1 ...`) costs about 40 KB of stack per level in a debug build and overflowed
/// 2 MiB at 52 levels (the old limit was 64); 32 keeps a margin of more than 1.5x, and the
/// deepest shipped rule needs 15.
pub(crate) const MAX_DEPTH: usize = 32;

/// The helper methods a rule may call on a probe.
const FAILURE_RATIO: &str = "failure_ratio";
const SECONDS_SINCE_OK: &str = "seconds_since_ok";

// === Evaluator ===

/// The CEL environment and the root context holding the helper methods, shared by every rule.
pub(crate) struct Evaluator {
    env: Arc<Env>,
    root: Context<'static, 'static>,
}

impl fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evaluator").finish_non_exhaustive()
    }
}

impl Evaluator {
    /// The standard CEL library plus honeyguide's helper methods.
    pub(crate) fn new() -> Self {
        let env = Arc::new(Env::stdlib());
        let mut root = Context::with_env(env.clone());
        // Neither name is declared by the standard library, so registration cannot conflict; a
        // failure would be a bug in this list, and the helpers would then report themselves as
        // undeclared at load.
        for result in [
            root.add_function(FAILURE_RATIO, failure_ratio),
            root.add_function(SECONDS_SINCE_OK, seconds_since_ok),
        ] {
            if let Err(error) = result {
                tracing::error!(%error, "cannot register a rule helper");
            }
        }
        Self { env, root }
    }

    /// Compiles and checks `text` against the configured probes (`kind_of` answers the kind of a
    /// probe name, `None` when there is no such probe). Errors carry byte offsets into `text`.
    pub(crate) fn compile(
        &self,
        text: &str,
        kind_of: &dyn Fn(&str) -> Option<Kind>,
    ) -> Result<Expression, Vec<ExprError>> {
        check_size(text).map_err(|error| vec![error])?;
        let program = self.env.compile(text).map_err(|errors| {
            // CEL recovers after a syntax error and reports what follows as more errors, which
            // are mostly echoes of the first: report the first only.
            errors
                .errors
                .first()
                .map(|error| ExprError {
                    offset: byte_offset(text, error.pos.0, error.pos.1),
                    message: lowercase_first(&error.msg),
                })
                .into_iter()
                .collect::<Vec<_>>()
        })?;
        let node_offset = |id: u64| {
            program
                .source_info()
                .offset_for(id)
                .map_or(0, |(start, _)| start as usize)
        };

        if let Some(id) = deeper_than(program.expression(), MAX_DEPTH) {
            return Err(vec![ExprError {
                offset: node_offset(id),
                message: format!(
                    "the expression nests deeper than {MAX_DEPTH} levels here: simplify it, \
                     or split it into several rules"
                ),
            }]);
        }
        let mut analysis = Analysis::default();
        analyse(program.expression(), &mut analysis);
        let mut errors: Vec<ExprError> = analysis
            .bare_probes
            .iter()
            .map(|id| ExprError {
                offset: node_offset(*id),
                message: "read probes by their literal name, e.g. probes[\"edge-api\"]: \
                          honeyguide must know which probes a rule reads"
                    .to_owned(),
            })
            .collect();
        let mut probes: Vec<(String, Kind)> = Vec::new();
        for reference in &analysis.references {
            match kind_of(&reference.name) {
                Some(kind) => {
                    if !probes.iter().any(|(name, _)| *name == reference.name) {
                        probes.push((reference.name.clone(), kind));
                    }
                }
                None => errors.push(ExprError {
                    offset: node_offset(reference.id) + reference.skip,
                    message: format!("unknown probe `{}`", reference.name),
                }),
            }
        }
        if errors.is_empty() {
            let mut paths = Vec::new();
            probe_paths(program.expression(), &mut paths);
            errors.extend(paths.iter().filter_map(|path| {
                let kind = kind_of(&path.probe)?;
                let (key, message) = unknown_key(path, kind)?;
                // A key's node sits at its dot, its quote, or (inside `has()`) at the start of
                // the selection: the key itself is the first place its name is written from there.
                let at = node_offset(key.id);
                let within = text.get(at..).and_then(|rest| rest.find(key.name));
                Some(ExprError {
                    offset: at + within.unwrap_or(0),
                    message,
                })
            }));
        }
        if errors.is_empty() && probes.is_empty() {
            errors.push(ExprError {
                offset: 0,
                message: "the expression reads no probe (use probes[\"name\"])".to_owned(),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let expression = Expression {
            program,
            probes: probes.iter().map(|(name, _)| name.clone()).collect(),
            time_dependent: analysis.time_dependent,
        };
        self.type_check(&expression, &probes)
            .map_err(|error| vec![error])?;
        Ok(expression)
    }

    /// Evaluates every sub-expression, once, against probes with typical results: CEL is
    /// dynamically typed, so this is where `"5" > 3` or a misspelt function shows up. Each node
    /// is evaluated on its own (not through `&&` and `||`, which would skip whatever a typical
    /// result makes irrelevant), deepest first, so the error points at the innermost culprit.
    fn type_check(
        &self,
        expression: &Expression,
        probes: &[(String, Kind)],
    ) -> Result<(), ExprError> {
        let views: Vec<Arc<ProbeView>> = probes
            .iter()
            .map(|(name, kind)| synthetic::view(name, *kind))
            .collect();
        let Some(context) = self.context(&views, Instant::now(), Timestamp::now()) else {
            return Ok(());
        };

        let mut nodes = Vec::new();
        checkable_nodes(expression.program.expression(), &mut nodes);
        for node in nodes {
            if let Err(error) = context.resolve(node)
                && is_type_error(&error)
            {
                let offset = expression
                    .program
                    .source_info()
                    .offset_for(node.id)
                    .map_or(0, |(start, _)| start as usize);
                return Err(ExprError {
                    offset,
                    message: describe(&error),
                });
            }
        }
        match expression.program.execute(&context) {
            Ok(cel::Value::Bool(_)) | Err(_) => Ok(()),
            Ok(other) => Err(ExprError {
                offset: 0,
                message: format!(
                    "the expression must evaluate to a bool, not {}",
                    other.type_of()
                ),
            }),
        }
    }

    /// Evaluates `expression` against `views`, the probes it reads, in the order of
    /// [`Expression::probes`]. `Ok(None)` when one of them has no result yet (the rule is
    /// unknown); `Err` with a message when the evaluation fails or yields no bool.
    pub(crate) fn evaluate(
        &self,
        expression: &Expression,
        views: &[Arc<ProbeView>],
        now: Instant,
        wall: Timestamp,
    ) -> Result<Option<bool>, String> {
        let Some(context) = self.context(views, now, wall) else {
            return Ok(None);
        };
        match expression.program.execute(&context) {
            Ok(cel::Value::Bool(holds)) => Ok(Some(holds)),
            Ok(other) => Err(format!(
                "the expression evaluated to {}, not a bool",
                other.type_of()
            )),
            Err(error) => Err(describe(&error)),
        }
    }

    /// A child scope of the root context holding `probes`, `now` and the helpers' scope, or
    /// `None` when a probe has no result yet.
    fn context<'a>(
        &'a self,
        views: &'a [Arc<ProbeView>],
        now: Instant,
        wall: Timestamp,
    ) -> Option<Context<'a, 'a>> {
        let mut probes: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> =
            HashMap::with_capacity(views.len());
        for view in views {
            probes.insert(CelMapKey::from(view.name.as_str()), probe_value(view)?);
        }
        let mut context = self.root.new_inner_scope();
        context.add_variable_as_val("probes", Box::new(CelMap::from(probes)));
        context.add_variable_as_val("now", Box::new(CelInt::from(wall.as_second())));
        // The helpers downcast to the scope, which must own (`'static`) handles on the views;
        // the probe map above borrows from the same views instead of copying them.
        context.add_variable_as_val(
            SCOPE_VARIABLE,
            Box::new(EvaluationScope {
                probes: views.to_vec(),
                now,
            }),
        );
        Some(context)
    }
}

// === Expression ===

/// A compiled, checked `when` expression.
#[derive(Debug)]
pub(crate) struct Expression {
    program: Program,
    /// The probes it reads, in order of first mention.
    pub(crate) probes: Vec<String>,
    /// Whether its value can change without a new probe result (`now`, `seconds_since_ok`).
    pub(crate) time_dependent: bool,
}

/// A problem with an expression, at a byte offset into its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExprError {
    /// Byte offset into the expression text.
    pub(crate) offset: usize,
    /// What is wrong, lowercase.
    pub(crate) message: String,
}

// === limits ===

/// Rejects an expression too long, or nesting brackets too deep, to compile safely: checked on
/// the text, before the parser sees it.
fn check_size(text: &str) -> Result<(), ExprError> {
    if text.len() > MAX_EXPRESSION_BYTES {
        return Err(ExprError {
            offset: 0,
            message: format!(
                "the expression is {} bytes, over the limit of {MAX_EXPRESSION_BYTES}: split it \
                 into several rules",
                text.len()
            ),
        });
    }
    match nesting_over(text, MAX_NESTING) {
        Some(offset) => Err(ExprError {
            offset,
            message: format!(
                "brackets nest deeper than {MAX_NESTING} levels here: simplify the expression"
            ),
        }),
        None => Ok(()),
    }
}

/// The offset of the first bracket that opens level `limit + 1`, outside string literals.
fn nesting_over(text: &str, limit: usize) -> Option<usize> {
    const QUOTES: [&str; 4] = ["\"\"\"", "'''", "\"", "'"];
    let mut depth = 0usize;
    let mut quote: Option<&str> = None;
    let mut at = 0;
    while let Some(rest) = text.get(at..).filter(|rest| !rest.is_empty()) {
        let step = rest.chars().next().map_or(1, char::len_utf8);
        match quote {
            Some(_) if rest.starts_with('\\') => {
                at += step + rest[step..].chars().next().map_or(0, char::len_utf8);
                continue;
            }
            Some(open) if rest.starts_with(open) => {
                quote = None;
                at += open.len();
                continue;
            }
            Some(_) => {}
            None => {
                if let Some(open) = QUOTES.into_iter().find(|open| rest.starts_with(open)) {
                    quote = Some(open);
                    at += open.len();
                    continue;
                }
                if rest.starts_with(['(', '[', '{']) {
                    depth += 1;
                    if depth > limit {
                        return Some(at);
                    }
                } else if rest.starts_with([')', ']', '}']) {
                    depth = depth.saturating_sub(1);
                }
            }
        }
        at += step;
    }
    None
}

/// The id of a node deeper than `limit` below `node`, if there is one. The recursion stops at
/// the limit, so this is safe on any expression the parser produced.
fn deeper_than(node: &IdedExpr, limit: usize) -> Option<u64> {
    if limit == 0 {
        return Some(node.id);
    }
    children(node)
        .into_iter()
        .find_map(|child| deeper_than(child, limit - 1))
}

/// The direct sub-expressions of `node`.
fn children(node: &IdedExpr) -> Vec<&IdedExpr> {
    fn entry(entry: &cel::common::ast::IdedEntryExpr) -> Vec<&IdedExpr> {
        match &entry.expr {
            EntryExpr::MapEntry(pair) => vec![&pair.key, &pair.value],
            EntryExpr::StructField(field) => vec![&field.value],
        }
    }
    match &node.expr {
        Expr::Call(call) => call
            .target
            .as_deref()
            .into_iter()
            .chain(&call.args)
            .collect(),
        Expr::Select(select) => vec![&*select.operand],
        Expr::Comprehension(comprehension) => vec![
            &comprehension.iter_range,
            &comprehension.accu_init,
            &comprehension.loop_cond,
            &comprehension.loop_step,
            &comprehension.result,
        ],
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => map.entries.iter().flat_map(entry).collect(),
        Expr::Struct(structure) => structure.entries.iter().flat_map(entry).collect(),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

// === static analysis ===

#[derive(Debug, Default)]
struct Analysis {
    references: Vec<Reference>,
    /// Nodes that use `probes` other than by a literal name.
    bare_probes: Vec<u64>,
    time_dependent: bool,
}

/// One `probes["x"]` or `probes.x` in the expression.
#[derive(Debug)]
struct Reference {
    name: String,
    /// The node to point at: the string literal, or the field selection.
    id: u64,
    /// Bytes from the node's position to the name (1 for `.x`, whose node is at the dot).
    skip: usize,
}

fn analyse(node: &IdedExpr, analysis: &mut Analysis) {
    if let Some(reference) = probe_reference(node) {
        analysis.references.push(reference);
        return;
    }
    match &node.expr {
        Expr::Ident(name) if name == "probes" => analysis.bare_probes.push(node.id),
        Expr::Ident(name) if name == "now" => analysis.time_dependent = true,
        Expr::Call(call) => {
            if call.func_name == SECONDS_SINCE_OK {
                analysis.time_dependent = true;
            }
            if let Some(target) = &call.target {
                analyse(target, analysis);
            }
            for argument in &call.args {
                analyse(argument, analysis);
            }
        }
        Expr::Select(select) => analyse(&select.operand, analysis),
        Expr::Comprehension(comprehension) => {
            for part in [
                &comprehension.iter_range,
                &comprehension.accu_init,
                &comprehension.loop_cond,
                &comprehension.loop_step,
                &comprehension.result,
            ] {
                analyse(part, analysis);
            }
        }
        Expr::List(list) => {
            for element in &list.elements {
                analyse(element, analysis);
            }
        }
        Expr::Map(map) => entries(&map.entries, analysis),
        Expr::Struct(structure) => entries(&structure.entries, analysis),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn entries(entries: &[cel::common::ast::IdedEntryExpr], analysis: &mut Analysis) {
    for entry in entries {
        match &entry.expr {
            EntryExpr::MapEntry(pair) => {
                analyse(&pair.key, analysis);
                analyse(&pair.value, analysis);
            }
            EntryExpr::StructField(field) => analyse(&field.value, analysis),
        }
    }
}

/// `probes["name"]` (an index with a string literal) or `probes.name` (a field selection).
fn probe_reference(node: &IdedExpr) -> Option<Reference> {
    match &node.expr {
        Expr::Call(call) if call.func_name == "_[_]" && call.target.is_none() => {
            let [operand, index] = call.args.as_slice() else {
                return None;
            };
            if !matches!(&operand.expr, Expr::Ident(name) if name == "probes") {
                return None;
            }
            match &index.expr {
                Expr::Literal(LiteralValue::String(name)) => Some(Reference {
                    name: name.inner().to_owned(),
                    id: index.id,
                    skip: 0,
                }),
                _ => None,
            }
        }
        Expr::Select(select) => match &select.operand.expr {
            Expr::Ident(name) if name == "probes" => Some(Reference {
                name: select.field.clone(),
                id: node.id,
                skip: 1,
            }),
            _ => None,
        },
        _ => None,
    }
}

// === paths into a probe ===

/// The fields of a probe's CEL value (see the module doc), in the order [`probe_value`] builds
/// them.
const PROBE_FIELDS: [&str; 8] = [
    "name",
    "kind",
    "ok",
    "error",
    "message",
    "duration_seconds",
    "consecutive_failures",
    "observations",
];

/// `probes["x"].observations.queues["default"].pending` as the probe and its keys, each with
/// where it is written: the keys a rule names literally, which the kind's schema can check.
#[derive(Debug)]
struct ProbePath<'e> {
    probe: String,
    keys: Vec<Key<'e>>,
}

/// One key of a [`ProbePath`]: `.key` or `["key"]`.
#[derive(Debug)]
struct Key<'e> {
    name: &'e str,
    /// The node to point at: the selection or the string literal.
    id: u64,
}

/// Every node of `node` that is a path into a probe, prefixes included (`a.b` and `a.b.c` are
/// both listed, so each key is checked where it is written).
fn probe_paths<'e>(node: &'e IdedExpr, out: &mut Vec<ProbePath<'e>>) {
    if let Some(path) = probe_path(node)
        && !path.keys.is_empty()
    {
        out.push(path);
    }
    for child in children(node) {
        probe_paths(child, out);
    }
}

fn probe_path(node: &IdedExpr) -> Option<ProbePath<'_>> {
    if let Some(reference) = probe_reference(node) {
        return Some(ProbePath {
            probe: reference.name,
            keys: Vec::new(),
        });
    }
    let (operand, key) = match &node.expr {
        Expr::Select(select) => (
            &*select.operand,
            Key {
                name: select.field.as_str(),
                id: node.id,
            },
        ),
        Expr::Call(call) if call.func_name == "_[_]" && call.target.is_none() => {
            let [operand, index] = call.args.as_slice() else {
                return None;
            };
            let Expr::Literal(LiteralValue::String(name)) = &index.expr else {
                return None;
            };
            (
                operand,
                Key {
                    name: name.inner(),
                    id: index.id,
                },
            )
        }
        _ => return None,
    };
    let mut path = probe_path(operand)?;
    path.keys.push(key);
    Some(path)
}

/// The path's last key and what is wrong with it, when it names nothing the probe has: a
/// misspelt observation would otherwise pass `validate` and fail every evaluation. Only the
/// last key is judged, so a wrong key is reported once, where it is written.
fn unknown_key<'p, 'e>(path: &'p ProbePath<'e>, kind: Kind) -> Option<(&'p Key<'e>, String)> {
    let (last, parents) = path.keys.split_last()?;
    let Some((first, within)) = parents.split_first() else {
        return (!PROBE_FIELDS.contains(&last.name)).then(|| {
            let hint = did_you_mean(last.name, &PROBE_FIELDS);
            (last, format!("a probe has no field `{}`{hint}", last.name))
        });
    };
    if first.name != "observations" {
        return None;
    }
    let keys: Vec<&str> = within.iter().chain([last]).map(|key| key.name).collect();
    match kind.schema().resolve(&keys) {
        Resolved::Unknown { at, name, known } if at + 1 == keys.len() => {
            let hint = did_you_mean(name, &known);
            let place = match keys.get(..at).filter(|parent| !parent.is_empty()) {
                Some(parent) => format!("in `{}` ", parent.join(".")),
                None => String::new(),
            };
            Some((
                last,
                format!(
                    "unknown observation `{name}` {place}of {kind} probe `{}`{hint} (see \
                     docs/probes/{kind}.md)",
                    path.probe
                ),
            ))
        }
        _ => None,
    }
}

/// The nodes that can be evaluated on their own, children before parents: everything except
/// the insides of comprehensions (`exists`, `all`, `filter`, ...), which refer to the loop
/// variable and only make sense within the loop.
fn checkable_nodes<'a>(node: &'a IdedExpr, out: &mut Vec<&'a IdedExpr>) {
    match &node.expr {
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                checkable_nodes(target, out);
            }
            for argument in &call.args {
                checkable_nodes(argument, out);
            }
        }
        Expr::Select(select) => checkable_nodes(&select.operand, out),
        Expr::Comprehension(comprehension) => checkable_nodes(&comprehension.iter_range, out),
        Expr::List(list) => {
            for element in &list.elements {
                checkable_nodes(element, out);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(pair) = &entry.expr {
                    checkable_nodes(&pair.key, out);
                    checkable_nodes(&pair.value, out);
                }
            }
        }
        Expr::Struct(_) | Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
    out.push(node);
}

/// Whether an error found by the load-time check is a mistake in the rule rather than a fact
/// of the typical data: a missing key, an index out of range, a division by zero or a `null`
/// operand depend on what a probe observed, and are left to runtime.
fn is_type_error(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::NoSuchKey(_)
        | ExecutionError::IndexOutOfBounds(_)
        | ExecutionError::DivisionByZero(_)
        | ExecutionError::RemainderByZero(_)
        | ExecutionError::Overflow(..) => false,
        ExecutionError::NoSuchOverload(overload) => !overload
            .argument_types()
            .iter()
            .any(|argument| argument == "null_type"),
        ExecutionError::ValuesNotComparable(left, right) => {
            !matches!(left, cel::Value::Null) && !matches!(right, cel::Value::Null)
        }
        _ => true,
    }
}

/// An evaluation error for humans: lowercase, with the type errors named as such.
fn describe(error: &ExecutionError) -> String {
    match error {
        ExecutionError::NoSuchOverload(overload) => format!("type error: {overload}"),
        ExecutionError::UndeclaredReference(name) => {
            format!("undeclared reference to `{name}`")
        }
        ExecutionError::FunctionError { message, .. } => message.clone(),
        other => lowercase_first(&other.to_string()),
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The byte offset of a 1-based line and character column in `text` (CEL's parse positions).
fn byte_offset(text: &str, line: isize, column: isize) -> usize {
    let skip_lines = usize::try_from(line.saturating_sub(1)).unwrap_or(0);
    let line_start: usize = text
        .split_inclusive('\n')
        .take(skip_lines)
        .map(str::len)
        .sum();
    let rest = text.get(line_start..).unwrap_or_default();
    let line_text = rest.split('\n').next().unwrap_or_default();
    let skip_chars = usize::try_from(column.saturating_sub(1)).unwrap_or(0);
    let within = line_text
        .char_indices()
        .nth(skip_chars)
        .map_or(line_text.len(), |(at, _)| at);
    line_start + within
}

// === probe values ===

/// The CEL map of a probe's latest result, borrowing its strings; `None` before the first run.
fn probe_value(view: &ProbeView) -> Option<Box<dyn Val + '_>> {
    let checked = view.latest.as_ref()?;
    let result = &checked.result;
    let observations: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = result
        .observations
        .iter()
        .map(|(key, value)| (CelMapKey::from(key.as_str()), observation(value)))
        .collect();
    let error = result.error.map_or("", |error| error.as_str());
    let consecutive_failures = i64::try_from(view.consecutive_failures).unwrap_or(i64::MAX);
    // In the order of PROBE_FIELDS, which the loader checks field names against.
    let values: [Box<dyn Val + '_>; PROBE_FIELDS.len()] = [
        Box::new(CelString::from(view.name.as_str())),
        Box::new(CelString::from(view.kind.as_str())),
        Box::new(CelBool::from(result.ok)),
        Box::new(CelString::from(error)),
        Box::new(CelString::from(result.message.as_str())),
        Box::new(CelDouble::from(result.duration.as_secs_f64())),
        Box::new(CelInt::from(consecutive_failures)),
        Box::new(CelMap::from(observations)),
    ];
    let fields: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = PROBE_FIELDS
        .into_iter()
        .zip(values)
        .map(|(key, value)| (CelMapKey::from(key), value))
        .collect();
    Some(Box::new(CelMap::from(fields)))
}

/// An observation as a CEL value, borrowing strings.
fn observation(value: &Value) -> Box<dyn Val + '_> {
    match value {
        Value::Null => Box::new(CelNull),
        Value::Bool(flag) => Box::new(CelBool::from(*flag)),
        Value::Int(number) => Box::new(CelInt::from(*number)),
        Value::Float(number) => Box::new(CelDouble::from(*number)),
        Value::Str(text) => Box::new(CelString::from(text.as_str())),
        Value::List(items) => Box::new(CelList::from(
            items.iter().map(observation).collect::<Vec<_>>(),
        )),
        Value::Map(entries) => Box::new(CelMap::from(
            entries
                .iter()
                .map(|(key, value)| (CelMapKey::from(key.as_str()), observation(value)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

// === helper methods ===

/// What the helper methods need beyond CEL values: the probes' histories and the instant.
#[derive(Debug)]
struct EvaluationScope {
    probes: Vec<Arc<ProbeView>>,
    now: Instant,
}

static SCOPE_TYPE: Type = Type::new_unspecified_type("honeyguide.scope");

impl Val for EvaluationScope {
    fn get_type(&self) -> &Type {
        &SCOPE_TYPE
    }

    fn cel_type() -> &'static Type {
        &SCOPE_TYPE
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(EvaluationScope {
            probes: self.probes.clone(),
            now: self.now,
        })
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl StaticVal for EvaluationScope {}

/// `probes["x"].failure_ratio(n)`: the share of the last `n` runs of `x` that failed.
fn failure_ratio(ftx: &FunctionContext, runs: cel::Value) -> Result<f64, ExecutionError> {
    let (view, _) = receiver(ftx)?;
    let runs = match runs {
        cel::Value::Int(runs) => usize::try_from(runs).ok().filter(|runs| *runs >= 1),
        _ => None,
    };
    let Some(runs) = runs.filter(|runs| *runs <= HISTORY_LEN) else {
        return Err(ftx.error(format!(
            "failure_ratio(n) takes a number of runs from 1 to {HISTORY_LEN}"
        )));
    };
    Ok(view.failure_ratio(runs))
}

/// `probes["x"].seconds_since_ok()`: seconds since `x` last succeeded; 0 while it succeeds.
/// A probe that never succeeded counts from its oldest remembered run, so that "failing for at
/// least five minutes" holds for a probe that has failed since honeyguide started.
fn seconds_since_ok(ftx: &FunctionContext) -> Result<f64, ExecutionError> {
    let (view, now) = receiver(ftx)?;
    if view.ok() == Some(true) {
        return Ok(0.0);
    }
    let since = view
        .seconds_since_ok(now)
        .or_else(|| {
            view.history
                .front()
                .map(|oldest| now.saturating_duration_since(oldest.at).as_secs_f64())
        })
        .unwrap_or(0.0);
    Ok(since)
}

/// The probe view a helper method was called on, and the evaluation's instant.
fn receiver(ftx: &FunctionContext) -> Result<(Arc<ProbeView>, Instant), ExecutionError> {
    let usage = || {
        ftx.error(format!(
            "{} is a method of a probe, e.g. probes[\"origin-1\"].{}",
            ftx.name,
            if ftx.name == FAILURE_RATIO {
                "failure_ratio(5)"
            } else {
                "seconds_since_ok()"
            }
        ))
    };
    let this = ftx.this.as_ref().ok_or_else(usage)?;
    let indexer = this.as_indexer().ok_or_else(usage)?;
    let name = indexer.get(&CelString::from("name")).map_err(|_| usage())?;
    let name = name.downcast_ref::<CelString>().ok_or_else(usage)?;
    let scope = ftx
        .ptx
        .get_variable(SCOPE_VARIABLE)
        .ok_or_else(|| ftx.error("the rule helpers are not available here"))?;
    let scope = scope
        .downcast_ref::<EvaluationScope>()
        .ok_or_else(|| ftx.error("the rule helpers are not available here"))?;
    let view = scope
        .probes
        .iter()
        .find(|view| view.name == name.inner())
        .ok_or_else(usage)?;
    Ok((view.clone(), scope.now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(name: &str) -> Option<Kind> {
        match name {
            "edge-api" | "origin-1" => Some(Kind::Http),
            "redis" => Some(Kind::Redis),
            "asynq" => Some(Kind::Asynq),
            _ => None,
        }
    }

    fn compile(text: &str) -> Result<Expression, Vec<ExprError>> {
        Evaluator::new().compile(text, &kinds)
    }

    fn error(text: &str) -> (usize, String) {
        let errors = compile(text).expect_err(text);
        (errors[0].offset, errors[0].message.clone())
    }

    #[test]
    fn collects_the_probes_read_in_order_of_first_mention() {
        let expression =
            compile(r#"probes.redis.ok && probes["edge-api"].ok && probes.redis.ok"#).unwrap();
        assert_eq!(expression.probes, ["redis", "edge-api"]);
        assert!(!expression.time_dependent);
    }

    #[test]
    fn now_and_seconds_since_ok_make_a_rule_time_dependent() {
        assert!(
            compile(r#"probes["edge-api"].observations.tls_cert_expiry - now < 86400"#)
                .unwrap()
                .time_dependent
        );
        assert!(
            compile(r#"probes["edge-api"].seconds_since_ok() > 300.0"#)
                .unwrap()
                .time_dependent
        );
    }

    #[test]
    fn an_unknown_probe_is_located_at_its_name() {
        assert_eq!(
            error(r#"probes["edge-api"].ok && probes["nope"].ok"#),
            (32, "unknown probe `nope`".to_owned())
        );
        assert_eq!(
            error("probes.nope.ok"),
            (7, "unknown probe `nope`".to_owned())
        );
    }

    #[test]
    fn probes_must_be_read_by_literal_name() {
        let (offset, message) = error(r#"probes.exists(name, name == "redis")"#);
        assert_eq!(offset, 0);
        assert!(
            message.starts_with("read probes by their literal name"),
            "{message}"
        );
    }

    #[test]
    fn type_errors_point_at_the_innermost_operator() {
        let text = r#"probes.redis.ok || probes.redis.observations.memory_ratio > "0.9""#;
        assert_eq!(
            error(text),
            (
                text.find('>').unwrap(),
                "type error: found no matching overload for '_>_' applied to '(double, string)'"
                    .to_owned()
            )
        );
    }

    #[test]
    fn an_unknown_function_is_a_load_error() {
        let (_, message) = error(r#"probes.redis.failure_rate(5) > 0.5"#);
        assert_eq!(message, "undeclared reference to `failure_rate`");
    }

    /// An observation the kind does not declare is an error where it is written, with a
    /// did-you-mean, at any depth and whichever way it is spelt (`.key`, `["key"]`, `has()`).
    #[test]
    fn an_unknown_observation_is_rejected_with_a_hint() {
        let text = r#"probes.redis.ok && probes.redis.observations.uptime_in_secnds > 60"#;
        assert_eq!(
            error(text),
            (
                text.find("uptime_in").unwrap(),
                "unknown observation `uptime_in_secnds` of redis probe `redis`; did you mean \
                 `uptime_seconds`? (see docs/probes/redis.md)"
                    .to_owned()
            )
        );
        let text = r#"probes["asynq"].observations.queues["default"].pendin > 10"#;
        assert_eq!(
            error(text),
            (
                text.find("pendin").unwrap(),
                "unknown observation `pendin` in `queues.default` of asynq probe `asynq`; did \
                 you mean `pending`? (see docs/probes/asynq.md)"
                    .to_owned()
            )
        );
        let text = r#"has(probes.redis.observations.maxmemory_polcy)"#;
        assert_eq!(error(text).0, text.find("maxmemory_polcy").unwrap());
        assert_eq!(
            error(r#"probes.redis.oks"#).1,
            "a probe has no field `oks`; did you mean `ok`?"
        );
    }

    /// Declared keys, the connection's shared ones and run-time map keys all pass.
    #[test]
    fn declared_observations_pass_at_every_depth() {
        for text in [
            r#"probes.redis.observations.tls_cert_expiry - now < 86400"#,
            r#"probes.asynq.observations.queues["mail"].stalled"#,
            r#"probes.asynq.observations.queues.exists(q, probes.asynq.observations.queues[q].stalled)"#,
            r#"probes.redis.observations.timeout_phase == "connect""#,
        ] {
            assert!(compile(text).is_ok(), "{text}: {:?}", compile(text).err());
        }
    }

    #[test]
    fn a_non_boolean_expression_is_rejected() {
        assert_eq!(
            error("probes.redis.message").1,
            "the expression must evaluate to a bool, not string"
        );
    }

    #[test]
    fn failure_ratio_checks_its_argument() {
        assert_eq!(
            error(r#"probes.redis.failure_ratio(0) > 0.5"#).1,
            "failure_ratio(n) takes a number of runs from 1 to 100"
        );
        assert!(compile(r#"probes.redis.failure_ratio(5) > 0.5"#).is_ok());
    }

    #[test]
    fn parse_errors_are_located_by_character() {
        // CEL reports line 2, column 5 (characters); `é` is two bytes.
        let text = "probes.redis.ok &&\n  é + )";
        let (offset, message) = error(text);
        assert_eq!(offset, text.find('é').unwrap());
        assert!(message.starts_with("syntax error"), "{message}");
    }

    #[test]
    fn byte_offset_clamps_past_the_end_of_a_line() {
        assert_eq!(byte_offset("ab\ncd", 2, 9), 5);
        assert_eq!(byte_offset("ab\ncd", 1, 1), 0);
    }
}
