//! The schema's own rules: conformance fills, converts and drops; paths resolve; every kind's
//! declaration is well formed.

use super::*;
use crate::probe::Kind;

const QUEUE: &[Field] = &[
    Field::int("pending", "tasks pending", 0),
    Field::float("latency_seconds", "age of the oldest", 0.5),
];

const FIELDS: &[Field] = &[
    Field::int("status", "a status", 200),
    Field::float("ratio", "a ratio", 0.5),
    Field::texts("ips", "addresses", &["192.0.2.1"]),
    Field::map_of(
        "queues",
        "per queue",
        "queue name",
        "default",
        &Type::Record(QUEUE),
    ),
    Field::text("failed_step", "where", "auth").failure_only(),
];

const SCHEMA: Schema = Schema::new(&[FIELDS]);

/// A missing key becomes `null`, an integer float a float, an undeclared key and a mistyped
/// value are dropped and reported, nested records included.
#[test]
fn conform_fills_converts_and_reports() {
    let mut observations = Observations::from([
        ("ratio".to_owned(), Value::Int(1)),
        ("ips".to_owned(), Value::List(vec![Value::Int(3)])),
        ("stray".to_owned(), Value::Bool(true)),
        (
            "queues".to_owned(),
            Value::Map(BTreeMap::from([(
                "mail".to_owned(),
                Value::Map(BTreeMap::from([
                    ("pending".to_owned(), Value::from("many")),
                    ("latency_seconds".to_owned(), Value::Int(2)),
                ])),
            )])),
        ),
    ]);
    let mismatches = SCHEMA.conform(&mut observations);
    let problems: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "observation `stray` is not declared",
            "observation `ips[0]` is declared str, not int",
            "observation `queues.mail.pending` is declared int, not str",
        ]
    );
    assert_eq!(observations["status"], Value::Null);
    assert_eq!(observations["ratio"], Value::Float(1.0));
    assert_eq!(observations["ips"], Value::List(vec![Value::Null]));
    assert!(!observations.contains_key("stray"));
    let mail = observations["queues"].as_map().unwrap()["mail"]
        .as_map()
        .unwrap();
    assert_eq!(mail["pending"], Value::Null);
    assert_eq!(mail["latency_seconds"], Value::Float(2.0));
}

const SERIES: &[Field] = &[
    Field::map_of("labels", "the labels", "label name", "instance", &Type::Str),
    Field::float("value", "the value", 1.5),
];

const LISTS: Schema = Schema::new(&[&[
    Field::list_of("series", "one entry per series", &Type::Record(SERIES))
        .healthy(Typical::Strs(&[])),
    Field::int("count", "how many", 1).healthy(Typical::Int(0)),
]]);

/// A list of records: each item is conformed like a record (filled, converted, checked), its
/// typical value is one typical item (labels included, never `null`), and the docs table it
/// gets is titled `series[]`.
#[test]
fn lists_of_records_conform_item_by_item() {
    let mut observations = Observations::from([(
        "series".to_owned(),
        Value::List(vec![
            Value::Map(BTreeMap::from([
                (
                    "labels".to_owned(),
                    Value::Map(BTreeMap::from([("job".to_owned(), Value::from("vm"))])),
                ),
                ("value".to_owned(), Value::Int(3)),
            ])),
            Value::Map(BTreeMap::from([(
                "labels".to_owned(),
                Value::Map(BTreeMap::from([("job".to_owned(), Value::Int(1))])),
            )])),
        ]),
    )]);
    let problems: Vec<String> = LISTS
        .conform(&mut observations)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        ["observation `series[1].labels.job` is declared str, not int"]
    );
    let Value::List(items) = &observations["series"] else {
        panic!("{observations:?}");
    };
    assert_eq!(items[0].as_map().unwrap()["value"], Value::Float(3.0));
    assert_eq!(items[1].as_map().unwrap()["value"], Value::Null);

    let typical = LISTS.typical();
    let Value::List(items) = &typical["series"] else {
        panic!("{typical:?}");
    };
    let item = items[0].as_map().unwrap();
    assert_eq!(item["value"], Value::Float(1.5));
    assert_eq!(
        item["labels"],
        Value::Map(BTreeMap::from([(
            "instance".to_owned(),
            Value::from("value")
        )]))
    );
    let mut typical = typical;
    assert!(LISTS.conform(&mut typical).is_empty());
    // A healthy run reports what `healthy` says: nothing matched.
    let mut healthy = LISTS.healthy();
    assert_eq!(healthy["series"], Value::List(Vec::new()));
    assert_eq!(healthy["count"], Value::Int(0));
    assert!(LISTS.conform(&mut healthy).is_empty());

    let fields: Vec<&Field> = LISTS.fields().collect();
    assert_eq!(fields[0].ty.describe(), "list of map");
    let text = markdown(LISTS.own());
    assert!(text.contains("\nIn `series[]`:\n\n| key |"), "{text}");
    assert!(
        text.contains("| `labels` | map by label name |  | the labels |\n"),
        "{text}"
    );
}

/// Paths resolve through records and run-time maps; an unknown key says where and what is known.
#[test]
fn paths_resolve_through_records_and_maps() {
    assert!(matches!(
        SCHEMA.resolve(&["status"]),
        Resolved::Declared(Type::Int)
    ));
    assert!(matches!(
        SCHEMA.resolve(&["queues", "anything", "pending"]),
        Resolved::Declared(Type::Int)
    ));
    assert!(matches!(SCHEMA.resolve(&["ips", "0"]), Resolved::Unchecked));
    let Resolved::Unknown { at, name, known } = SCHEMA.resolve(&["queues", "default", "pendin"])
    else {
        panic!("pendin is not declared");
    };
    assert_eq!(
        (at, name, known),
        (2, "pendin", vec!["pending", "latency_seconds"])
    );
    assert!(matches!(
        SCHEMA.resolve(&["statu"]),
        Resolved::Unknown {
            at: 0,
            name: "statu",
            ..
        }
    ));
}

/// The typical values conform, are never `null`, and a healthy run leaves failure-only keys
/// `null`.
#[test]
fn typical_and_healthy_values_follow_the_declaration() {
    let mut typical = SCHEMA.typical();
    assert!(SCHEMA.conform(&mut typical).is_empty());
    assert!(typical.values().all(|value| *value != Value::Null));
    let healthy = SCHEMA.healthy();
    assert_eq!(healthy["failed_step"], Value::Null);
    assert_eq!(healthy["status"], Value::Int(200));
}

/// Every kind's schema: no name twice at any level, every typical value of its declared type,
/// a doc line for every field, every gauge name a valid metric name.
#[test]
fn every_kind_declares_a_well_formed_schema() {
    fn check(fields: &[Field], path: &str) {
        let mut seen = std::collections::BTreeSet::new();
        for field in fields {
            assert!(
                seen.insert(field.name),
                "{path}{} declared twice",
                field.name
            );
            assert!(!field.doc.is_empty(), "{path}{} has no doc", field.name);
            if let Some(gauge) = field.gauge {
                assert!(
                    gauge
                        .name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{}",
                    gauge.name
                );
            }
            match &field.ty {
                Type::Record(nested)
                | Type::List(Type::Record(nested))
                | Type::Map {
                    value: Type::Record(nested),
                    ..
                } => check(nested, &format!("{path}{}.", field.name)),
                _ => {}
            }
        }
    }
    for kind in Kind::ALL {
        let schema = kind.schema();
        let fields: Vec<&Field> = schema.fields().collect();
        let mut names: Vec<&str> = fields.iter().map(|field| field.name).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "{kind}: a name is declared twice");
        check(schema.own(), &format!("{kind}: "));
        let mut typical = schema.typical();
        assert_eq!(schema.conform(&mut typical), [], "{kind}");
        let mut healthy = schema.healthy();
        assert_eq!(schema.conform(&mut healthy), [], "{kind}");
    }
}

/// The docs table lists every field with its type, unit and gauge, and nested records after it.
#[test]
fn the_markdown_table_lists_fields_and_nested_records() {
    let text = markdown(FIELDS);
    assert!(text.starts_with("| key | type | unit | meaning |\n|---|---|---|---|\n"));
    assert!(text.contains("| `ips` | list of str |  | addresses |\n"));
    assert!(text.contains("| `queues` | map by queue name |  | per queue |\n"));
    assert!(text.contains("\nIn `queues.<queue name>`:\n\n| key |"));
    assert!(text.contains("| `latency_seconds` | float |  | age of the oldest |\n"));
}

/// Every kind that connects exports the certificate expiry under one name and one HELP text,
/// from the one declaration in `net`; `dns`, which has no connection of its own, does not.
#[test]
fn the_certificate_expiry_is_exported_once_for_every_kind_that_connects() {
    let result = crate::probe::ProbeResult {
        ok: true,
        error: None,
        message: "ok".to_owned(),
        observations: Observations::from([(
            "tls_cert_expiry".to_owned(),
            Value::Int(1_900_000_000),
        )]),
        duration: std::time::Duration::from_millis(5),
        phases: Vec::new(),
    };
    let mut out = MetricsWriter::new();
    for kind in Kind::ALL {
        let name = kind.as_str();
        crate::probe::write_kind_metrics(kind, &[(name, &result)], &mut out);
    }
    let text = out.finish();
    assert_eq!(
        text.matches("# HELP probe_ssl_earliest_cert_expiry ")
            .count(),
        1,
        "{text}"
    );
    for kind in Kind::ALL {
        let series = format!("probe_ssl_earliest_cert_expiry{{probe=\"{kind}\"}} 1900000000\n");
        assert_eq!(text.contains(&series), kind != Kind::Dns, "{kind}\n{text}");
    }
}
