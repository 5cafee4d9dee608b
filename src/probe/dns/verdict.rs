//! Judging what the resolvers said against the expectation: the run's outcome, its error class
//! and its observations (answers, per-resolver replies, disagreement, hijack suspicion).

use std::collections::{BTreeMap, BTreeSet};

use super::ResolverReport;
use super::resolve::Reply;
use super::spec::{Expectation, RecordKind, normalize_answer};
use crate::probe::{ErrorClass, Outcome, Value};

/// One resolver's verdict against the expectation.
pub(super) struct Verdict {
    pub(super) ok: bool,
    pub(super) class: Option<ErrorClass>,
    pub(super) message: String,
    pub(super) unexpected: Vec<String>,
}

pub(super) fn judge(reply: &Reply, expectation: &Expectation) -> Verdict {
    match reply {
        Reply::Unreachable { message } => Verdict {
            ok: false,
            class: Some(ErrorClass::Dns),
            message: message.clone(),
            unexpected: Vec::new(),
        },
        Reply::Answered { rcode, answers } => {
            let unexpected: Vec<String> = answers
                .iter()
                .filter(|answer| !expectation.accepts(answer))
                .cloned()
                .collect();
            let answered = rcode == "NOERROR" && !answers.is_empty();
            let rcode_ok = match &expectation.rcode {
                Some(expected) => rcode == expected,
                None => answered,
            };
            let listing = if answers.is_empty() {
                if rcode == "NOERROR" {
                    "NOERROR with no answer".to_owned()
                } else {
                    rcode.clone()
                }
            } else {
                format!("{rcode} {}", answers.join(", "))
            };
            if !unexpected.is_empty() {
                Verdict {
                    ok: false,
                    class: Some(ErrorClass::Assertion),
                    message: format!("{listing}; not expected: {}", unexpected.join(", ")),
                    unexpected,
                }
            } else if !rcode_ok {
                // A name that resolves when it should not is a broken expectation; a name that
                // does not resolve (or a resolver that fails) is a DNS failure.
                let class = if answered {
                    ErrorClass::Assertion
                } else {
                    ErrorClass::Dns
                };
                let message = match &expectation.rcode {
                    Some(expected) => format!("{listing}, expected {expected}"),
                    None => listing,
                };
                Verdict {
                    ok: false,
                    class: Some(class),
                    message,
                    unexpected,
                }
            } else {
                Verdict {
                    ok: true,
                    class: None,
                    message: listing,
                    unexpected,
                }
            }
        }
    }
}

/// Combines the resolvers' replies into the run's outcome and observations.
pub(super) fn evaluate(
    name: &str,
    record_kind: RecordKind,
    expectation: &Expectation,
    reports: &[ResolverReport],
) -> Outcome {
    let mut per_resolver = BTreeMap::new();
    let mut union = BTreeSet::new();
    let mut unexpected = BTreeSet::new();
    let mut answer_sets = BTreeSet::new();
    let mut rcodes = Vec::new();
    let mut failures: Vec<(ErrorClass, String)> = Vec::new();
    let mut first_message = None;

    for report in reports {
        let verdict = judge(&report.reply, expectation);
        let (rcode, answers) = match &report.reply {
            Reply::Answered { rcode, answers } => {
                rcodes.push(rcode.clone());
                let set: BTreeSet<String> = answers.iter().map(|a| normalize_answer(a)).collect();
                answer_sets.insert((rcode.clone(), set));
                union.extend(answers.iter().cloned());
                (Value::from(rcode.as_str()), answers.clone())
            }
            Reply::Unreachable { .. } => (Value::Null, Vec::new()),
        };
        unexpected.extend(verdict.unexpected.iter().cloned());
        if let Some(class) = verdict.class {
            failures.push((class, format!("{}: {}", report.label, verdict.message)));
        }
        first_message.get_or_insert_with(|| verdict.message.clone());
        let entry: BTreeMap<String, Value> = BTreeMap::from([
            ("answers".to_owned(), Value::from(answers)),
            ("rcode".to_owned(), rcode),
            ("ok".to_owned(), Value::from(verdict.ok)),
            ("message".to_owned(), Value::from(verdict.message)),
            ("unexpected".to_owned(), Value::from(verdict.unexpected)),
            ("seconds".to_owned(), Value::from(report.seconds)),
        ]);
        per_resolver.insert(report.label.clone(), Value::from(entry));
    }

    let union: Vec<String> = union.into_iter().collect();
    let disagree = answer_sets.len() > 1;
    let subject = format!("{name} {}", record_kind.as_str());
    let outcome = match overall_class(&failures) {
        None => {
            // Agreeing resolvers are summed up by the first one's reply; disagreeing ones by
            // the union of what they said.
            let shown = if disagree {
                format!("NOERROR {}", union.join(", "))
            } else {
                first_message.unwrap_or_default()
            };
            let agreement = match (reports.len(), disagree) {
                (1, _) => String::new(),
                (count, false) => format!(" ({count} resolvers agree)"),
                (count, true) => format!(" ({count} resolvers, answers differ)"),
            };
            Outcome::success(format!("{subject}: {shown}{agreement}"))
        }
        Some(class) => {
            let failed = failures.len();
            let lead = if class == ErrorClass::Assertion {
                "answers outside the expectation"
            } else if failed == reports.len() {
                "no resolver gave an answer"
            } else {
                "resolver failed"
            };
            let details: Vec<&str> = failures.iter().map(|(_, text)| text.as_str()).collect();
            Outcome::failure(
                class,
                format!(
                    "{subject}: {lead} ({failed} of {}): {}",
                    reports.len(),
                    details.join("; ")
                ),
            )
        }
    };

    // The first code other than NOERROR is the one worth reading; null when nobody answered.
    let rcode = rcodes
        .iter()
        .find(|rcode| *rcode != "NOERROR")
        .or(rcodes.first())
        .cloned();
    let unexpected: Vec<String> = unexpected.into_iter().collect();
    outcome
        .with("answers", union)
        .with("rcode", rcode)
        .with("resolvers", per_resolver)
        .with("disagree", disagree)
        .with("hijack_suspected", !unexpected.is_empty())
        .with("unexpected", unexpected)
}

/// An answer outside the expectation outranks a resolver that failed: it is the more
/// dangerous finding (a hijack), and the failed resolver is still named in the message.
pub(super) fn overall_class(failures: &[(ErrorClass, String)]) -> Option<ErrorClass> {
    failures
        .iter()
        .map(|(class, _)| *class)
        .find(|class| *class == ErrorClass::Assertion)
        .or_else(|| failures.first().map(|(class, _)| *class))
}
