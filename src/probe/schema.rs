//! The observation schema: what each probe kind observes, declared once.
//!
//! Each kind declares its observations as a table of [`Field`]s (name, [`Type`], [`Unit`], one
//! line of doc, a typical value, and the gauge it is exported as, if any); facts several kinds
//! share (where the connection went, its TLS, the phase a run timed out in) are declared once
//! where they are produced and added to the schema of every kind that has them. Everything that
//! needs to know what a kind observes reads it from here:
//!
//! - [`Schema::conform`] runs on every result ([`crate::probe::execute`]): each declared key is
//!   present (`null` when not observed), an integer where a float is declared becomes a float,
//!   and an undeclared key or a value of the wrong type is a honeyguide bug, reported and dropped
//!   (and, in debug builds, turned into an `internal` failure so that every test catches it).
//!   So rules, `/status`, the page, the store and replay all see the declared shape.
//! - [`Schema::typical`] and [`Schema::healthy`] give the values the rule loader type-checks
//!   expressions against and the healthy results example timelines start from.
//! - [`Schema::resolve`] answers what a path such as `queues["default"].pending` is, so the rule
//!   loader rejects an unknown observation with a did-you-mean.
//! - [`Schema::write_gauges`] renders every declared gauge, so a shared fact's series
//!   (`probe_ssl_earliest_cert_expiry`) has one name and one HELP text for every kind.
//! - [`markdown`] renders the table in `docs/probes/<kind>.md`, which a test keeps in step.

use std::collections::BTreeMap;
use std::fmt;

use super::{Observations, ProbeResult, Value};
use crate::exposition::MetricsWriter;

// === declarations ===

/// The type of an observation. Every observation may also be `null` (not observed this run).
#[derive(Debug)]
pub enum Type {
    /// `true` or `false`.
    Bool,
    /// A count, a code, a Unix timestamp.
    Int,
    /// A measurement; an integer is accepted and stored as a float.
    Float,
    /// Text.
    Str,
    /// A list of values of one type.
    List(&'static Type),
    /// A nested table with declared keys (one resolver's answer, one queue).
    Record(&'static [Field]),
    /// Keys known only at run time (queue names, resolvers), values of one type.
    Map {
        /// What a key is, for the docs: `queue name`.
        key: &'static str,
        /// A typical key, for the typical value: `default`.
        example: &'static str,
        /// The type of every value.
        value: &'static Type,
    },
}

impl Type {
    /// The type as the docs write it: `int`, `list of str`, `map of queue name`.
    pub fn describe(&self) -> String {
        match self {
            Type::Bool => "bool".to_owned(),
            Type::Int => "int".to_owned(),
            Type::Float => "float".to_owned(),
            Type::Str => "str".to_owned(),
            Type::List(item) => format!("list of {}", item.describe()),
            Type::Record(_) => "map".to_owned(),
            Type::Map { key, .. } => format!("map by {key}"),
        }
    }

    fn accepts(&self, value: &Value) -> bool {
        matches!(
            (self, value),
            (_, Value::Null)
                | (Type::Bool, Value::Bool(_))
                | (Type::Int, Value::Int(_))
                | (Type::Float, Value::Float(_) | Value::Int(_))
                | (Type::Str, Value::Str(_))
                | (Type::List(_), Value::List(_))
                | (Type::Record(_) | Type::Map { .. }, Value::Map(_))
        )
    }
}

/// What a number measures, for the docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A count, a code, a flag, text.
    None,
    /// Seconds, as a float.
    Seconds,
    /// Bytes.
    Bytes,
    /// A point in time, Unix seconds.
    UnixSeconds,
    /// A ratio, 0 to 1.
    Ratio,
}

impl Unit {
    fn describe(self) -> &'static str {
        match self {
            Unit::None => "",
            Unit::Seconds => "seconds",
            Unit::Bytes => "bytes",
            Unit::UnixSeconds => "Unix seconds",
            Unit::Ratio => "ratio",
        }
    }
}

/// A typical value, for the load-time type check. Records and maps derive theirs from their
/// fields.
#[derive(Debug)]
pub enum Typical {
    /// Not observed: only as a healthy value ([`Field::failure_only`]); a typical value must
    /// not be `null`, or the load check would skip what reads it.
    Null,
    /// A flag.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text.
    Str(&'static str),
    /// A list of text.
    Strs(&'static [&'static str]),
    /// Derived from the nested type.
    Nested,
}

/// A gauge an observation is exported as, labelled `probe="<name>"`.
#[derive(Debug)]
pub struct Gauge {
    /// The series name.
    pub name: &'static str,
    /// Its HELP text.
    pub help: &'static str,
    /// The value written when the observation is `null`; `None` writes nothing.
    pub null_as: Option<f64>,
}

/// One declared observation.
#[derive(Debug)]
pub struct Field {
    /// The key rules read: `probes["x"].observations.<name>`.
    pub name: &'static str,
    /// Its type.
    pub ty: Type,
    /// What it measures.
    pub unit: Unit,
    /// One line for the docs.
    pub doc: &'static str,
    /// A plausible value, for the load-time type check.
    pub typical: Typical,
    /// What a healthy run reports instead of the typical value, where the two differ: `null`
    /// for what only a failure reports (`failed_step`, `timeout_phase`), or an alerting query's
    /// empty answer (`count` 0), while rules are type-checked against a result with something
    /// in it.
    pub healthy: Option<Typical>,
    /// The gauge it is exported as.
    pub gauge: Option<&'static Gauge>,
}

impl Field {
    const fn new(name: &'static str, ty: Type, doc: &'static str, typical: Typical) -> Self {
        Self {
            name,
            ty,
            unit: Unit::None,
            doc,
            typical,
            healthy: None,
            gauge: None,
        }
    }

    /// A flag.
    pub const fn flag(name: &'static str, doc: &'static str, typical: bool) -> Self {
        Self::new(name, Type::Bool, doc, Typical::Bool(typical))
    }

    /// An integer.
    pub const fn int(name: &'static str, doc: &'static str, typical: i64) -> Self {
        Self::new(name, Type::Int, doc, Typical::Int(typical))
    }

    /// A float.
    pub const fn float(name: &'static str, doc: &'static str, typical: f64) -> Self {
        Self::new(name, Type::Float, doc, Typical::Float(typical))
    }

    /// Text.
    pub const fn text(name: &'static str, doc: &'static str, typical: &'static str) -> Self {
        Self::new(name, Type::Str, doc, Typical::Str(typical))
    }

    /// A list of text.
    pub const fn texts(
        name: &'static str,
        doc: &'static str,
        typical: &'static [&'static str],
    ) -> Self {
        Self::new(name, Type::List(&Type::Str), doc, Typical::Strs(typical))
    }

    /// A list whose items are of `item`, typically a record: one series of a query result.
    pub const fn list_of(name: &'static str, doc: &'static str, item: &'static Type) -> Self {
        Self::new(name, Type::List(item), doc, Typical::Nested)
    }

    /// A nested table with declared keys.
    pub const fn record(name: &'static str, doc: &'static str, fields: &'static [Field]) -> Self {
        Self::new(name, Type::Record(fields), doc, Typical::Nested)
    }

    /// A map whose keys are known at run time, each value a record of `fields`.
    pub const fn map_of(
        name: &'static str,
        doc: &'static str,
        key: &'static str,
        example: &'static str,
        value: &'static Type,
    ) -> Self {
        Self::new(
            name,
            Type::Map {
                key,
                example,
                value,
            },
            doc,
            Typical::Nested,
        )
    }

    /// Says what the number measures.
    pub const fn unit(mut self, unit: Unit) -> Self {
        self.unit = unit;
        self
    }

    /// Marks it `null` on a healthy run.
    pub const fn failure_only(self) -> Self {
        self.healthy(Typical::Null)
    }

    /// Gives a healthy run `value` instead of the typical one.
    pub const fn healthy(mut self, value: Typical) -> Self {
        self.healthy = Some(value);
        self
    }

    /// Exports it as `gauge`.
    pub const fn gauge(mut self, gauge: &'static Gauge) -> Self {
        self.gauge = Some(gauge);
        self
    }

    fn typical_value(&self, healthy: bool) -> Value {
        let value = match (healthy, &self.healthy) {
            (true, Some(value)) => value,
            _ => &self.typical,
        };
        typical_of(&self.ty, value, healthy)
    }
}

fn typical_of(ty: &Type, typical: &Typical, healthy: bool) -> Value {
    match (ty, typical) {
        (_, Typical::Null) => Value::Null,
        (_, Typical::Bool(flag)) => Value::Bool(*flag),
        (_, Typical::Int(number)) => Value::Int(*number),
        (_, Typical::Float(number)) => Value::Float(*number),
        (_, Typical::Str(text)) => Value::from(*text),
        (_, Typical::Strs(items)) => Value::List(items.iter().map(|item| (*item).into()).collect()),
        (Type::Record(fields), Typical::Nested) => Value::Map(values(fields, healthy)),
        (Type::Map { example, value, .. }, Typical::Nested) => Value::Map(BTreeMap::from([(
            (*example).to_owned(),
            typical_of(value, &Typical::Nested, healthy),
        )])),
        // One typical item, so that a rule ranging over the list is type-checked at load.
        (Type::List(item), Typical::Nested) => {
            Value::List(vec![typical_of(item, &Typical::Nested, healthy)])
        }
        // A scalar inside a map or a list has no typical value of its own (a label's value):
        // a plain one of its type keeps the typical values non-null, as the load check needs.
        (Type::Bool, Typical::Nested) => Value::Bool(false),
        (Type::Int, Typical::Nested) => Value::Int(0),
        (Type::Float, Typical::Nested) => Value::Float(0.0),
        (Type::Str, Typical::Nested) => Value::from("value"),
    }
}

fn values(fields: &[Field], healthy: bool) -> BTreeMap<String, Value> {
    fields
        .iter()
        .map(|field| (field.name.to_owned(), field.typical_value(healthy)))
        .collect()
}

// === Schema ===

/// Everything one kind observes: its own fields, then the shared ones it has.
#[derive(Clone, Copy, Debug)]
pub struct Schema {
    parts: &'static [&'static [Field]],
}

impl Schema {
    /// The schema made of `parts`, in order; a name must not appear twice.
    pub const fn new(parts: &'static [&'static [Field]]) -> Self {
        Self { parts }
    }

    /// Every top-level field.
    pub fn fields(self) -> impl Iterator<Item = &'static Field> + Clone {
        self.parts.iter().flat_map(|part| part.iter())
    }

    /// The kind's own fields (the first part), which its docs page lists.
    pub fn own(self) -> &'static [Field] {
        self.parts.first().copied().unwrap_or_default()
    }

    /// The field called `name`.
    pub fn field(self, name: &str) -> Option<&'static Field> {
        self.fields().find(|field| field.name == name)
    }

    /// Every top-level name.
    pub fn names(self) -> Vec<&'static str> {
        self.fields().map(|field| field.name).collect()
    }

    /// Every field at a typical, non-null value: what rules are type-checked against.
    pub fn typical(self) -> Observations {
        self.fields()
            .map(|field| (field.name.to_owned(), field.typical_value(false)))
            .collect()
    }

    /// A healthy run's observations: typical values, `null` for what only a failure reports.
    pub fn healthy(self) -> Observations {
        self.fields()
            .map(|field| (field.name.to_owned(), field.typical_value(true)))
            .collect()
    }

    /// What `path` (the keys after `observations`) names, or where it goes wrong.
    pub fn resolve<'p>(self, path: &[&'p str]) -> Resolved<'p> {
        let Some((first, rest)) = path.split_first() else {
            return Resolved::Unchecked;
        };
        match self.field(first) {
            Some(field) => resolve_in(&field.ty, rest),
            None => Resolved::Unknown {
                at: 0,
                name: first,
                known: self.names(),
            },
        }
    }

    /// Brings `observations` to the declared shape: every declared key present (`null` when
    /// missing), integers where floats are declared made floats. Undeclared keys and values of
    /// the wrong type are removed and returned.
    pub fn conform(self, observations: &mut Observations) -> Vec<Mismatch> {
        let mut mismatches = Vec::new();
        conform_record(
            self.fields(),
            observations,
            At::Root,
            &mut mismatches,
            Fill::Missing,
        );
        mismatches
    }

    /// [`Schema::conform`] for a partial result (an example's scripted observations): the keys
    /// it has are checked and converted, the ones it lacks are left out.
    pub fn check_partial(self, observations: &mut Observations) -> Vec<Mismatch> {
        let mut mismatches = Vec::new();
        conform_record(
            self.fields(),
            observations,
            At::Root,
            &mut mismatches,
            Fill::Present,
        );
        mismatches
    }

    /// Writes every declared gauge for `probes`, family by family.
    pub fn write_gauges(self, probes: &[(&str, &ProbeResult)], out: &mut MetricsWriter) {
        for field in self.fields() {
            let Some(gauge) = field.gauge else { continue };
            for (name, result) in probes {
                let value = match result.observation(field.name) {
                    Some(Value::Int(number)) => Some(*number as f64),
                    Some(Value::Float(number)) => Some(*number),
                    Some(Value::Bool(flag)) => Some(f64::from(u8::from(*flag))),
                    _ => gauge.null_as,
                };
                if let Some(value) = value {
                    out.gauge(gauge.name, gauge.help, &[("probe", name)], value);
                }
            }
        }
    }
}

/// What a path into the observations names.
#[derive(Debug)]
pub enum Resolved<'p> {
    /// A declared observation (or a value inside a list, a map entry or beyond: not checked
    /// further).
    Unchecked,
    /// A declared observation of this type.
    Declared(&'static Type),
    /// `name`, the `at`-th key of the path, is not declared where it is; `known` are the keys
    /// that are.
    Unknown {
        /// Index into the path.
        at: usize,
        /// The unknown key.
        name: &'p str,
        /// The declared keys at that level.
        known: Vec<&'static str>,
    },
}

fn resolve_in<'p>(ty: &'static Type, rest: &[&'p str]) -> Resolved<'p> {
    let Some((first, further)) = rest.split_first() else {
        return Resolved::Declared(ty);
    };
    let nested = match ty {
        Type::Record(fields) => match fields.iter().find(|field| field.name == *first) {
            Some(field) => resolve_in(&field.ty, further),
            None => {
                return Resolved::Unknown {
                    at: 1,
                    name: first,
                    known: fields.iter().map(|field| field.name).collect(),
                };
            }
        },
        Type::Map { value, .. } => resolve_in(value, further),
        _ => return Resolved::Unchecked,
    };
    match nested {
        Resolved::Unknown { at, name, known } => Resolved::Unknown {
            at: at + 1,
            name,
            known,
        },
        other => other,
    }
}

/// An observation that does not match the schema: a bug in a kind, or a typo in an example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Where: `queues.default.pending`.
    pub path: String,
    /// What was wrong.
    pub problem: Problem,
}

/// What was wrong with an observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The key is not declared; `known` are the keys that are, at that level.
    Undeclared {
        /// The declared keys beside it.
        known: Vec<&'static str>,
    },
    /// The value has another type than declared.
    WrongType {
        /// The declared type, as the docs write it.
        declared: String,
        /// What the value was.
        found: &'static str,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Problem::Undeclared { .. } => write!(f, "observation `{}` is not declared", self.path),
            Problem::WrongType { declared, found } => write!(
                f,
                "observation `{}` is declared {declared}, not {found}",
                self.path
            ),
        }
    }
}

/// Whether [`conform_record`] adds the declared keys a map lacks.
#[derive(Clone, Copy, PartialEq)]
enum Fill {
    /// Every declared key, `null` when missing.
    Missing,
    /// Only the keys already there.
    Present,
}

/// Where a value is, written out only for a mismatch: conforming runs on every result, and the
/// path of every key it visits is not worth an allocation each.
#[derive(Clone, Copy)]
enum At<'a> {
    /// The observations themselves.
    Root,
    /// A key under a parent.
    Key(&'a At<'a>, &'a str),
    /// A list item under a parent.
    Index(&'a At<'a>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root => Ok(()),
            At::Key(At::Root, key) => f.write_str(key),
            At::Key(parent, key) => write!(f, "{parent}.{key}"),
            At::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

fn conform_record<'f>(
    fields: impl Iterator<Item = &'f Field> + Clone,
    map: &mut BTreeMap<String, Value>,
    at: At<'_>,
    mismatches: &mut Vec<Mismatch>,
    fill: Fill,
) {
    map.retain(|key, _| {
        let known = fields.clone().any(|field| field.name == key);
        if !known {
            mismatches.push(Mismatch {
                path: At::Key(&at, key).to_string(),
                problem: Problem::Undeclared {
                    known: fields.clone().map(|field| field.name).collect(),
                },
            });
        }
        known
    });
    for field in fields {
        // `get_mut` first: the key is nearly always there, and `entry` would allocate it.
        let value = match (map.contains_key(field.name), fill) {
            (true, _) => map.get_mut(field.name),
            (false, Fill::Missing) => Some(map.entry(field.name.to_owned()).or_insert(Value::Null)),
            (false, Fill::Present) => None,
        };
        if let Some(value) = value {
            conform_value(&field.ty, value, At::Key(&at, field.name), mismatches);
        }
    }
}

fn conform_value(ty: &Type, value: &mut Value, at: At<'_>, mismatches: &mut Vec<Mismatch>) {
    if !ty.accepts(value) {
        mismatches.push(Mismatch {
            path: at.to_string(),
            problem: Problem::WrongType {
                declared: ty.describe(),
                found: kind_of(value),
            },
        });
        *value = Value::Null;
        return;
    }
    match (ty, value) {
        (Type::Float, value @ Value::Int(_)) => {
            *value = Value::Float(value.as_f64().unwrap_or(0.0))
        }
        (Type::List(item), Value::List(items)) => {
            for (index, element) in items.iter_mut().enumerate() {
                conform_value(item, element, At::Index(&at, index), mismatches);
            }
        }
        (Type::Record(fields), Value::Map(map)) => {
            conform_record(fields.iter(), map, at, mismatches, Fill::Missing);
        }
        (Type::Map { value: item, .. }, Value::Map(map)) => {
            for (key, element) in map.iter_mut() {
                conform_value(item, element, At::Key(&at, key), mismatches);
            }
        }
        _ => {}
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::List(_) => "list",
        Value::Map(_) => "map",
    }
}

// === docs ===

/// The observation tables of `fields` in the docs' Markdown: one table for the top level, then
/// one per nested record, titled by its path.
pub fn markdown(fields: &[Field]) -> String {
    let mut out = String::new();
    table(fields, &mut out);
    nested_tables(fields, "", &mut out);
    out
}

fn table(fields: &[Field], out: &mut String) {
    let exported = fields.iter().any(|field| field.gauge.is_some());
    if exported {
        out.push_str("| key | type | unit | meaning | series |\n|---|---|---|---|---|\n");
    } else {
        out.push_str("| key | type | unit | meaning |\n|---|---|---|---|\n");
    }
    for field in fields {
        let series = match (exported, field.gauge) {
            (false, _) => String::new(),
            (true, Some(gauge)) => format!(" `{}` |", gauge.name),
            (true, None) => " |".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |{series}\n",
            field.name,
            field.ty.describe(),
            field.unit.describe(),
            field.doc,
        ));
    }
}

fn nested_tables(fields: &[Field], prefix: &str, out: &mut String) {
    for field in fields {
        let (nested, path) = match &field.ty {
            Type::Record(nested) => (*nested, format!("{prefix}{}", field.name)),
            Type::Map {
                key,
                value: Type::Record(nested),
                ..
            } => (*nested, format!("{prefix}{}.<{key}>", field.name)),
            Type::List(Type::Record(nested)) => (*nested, format!("{prefix}{}[]", field.name)),
            _ => continue,
        };
        out.push_str(&format!("\nIn `{path}`:\n\n"));
        table(nested, out);
        nested_tables(nested, &format!("{path}."), out);
    }
}

#[cfg(test)]
mod tests;
