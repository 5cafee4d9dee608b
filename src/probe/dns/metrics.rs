//! The `dns` kind's own series, from its observations.

use crate::exposition::MetricsWriter;
use crate::probe::{ProbeResult, Value};

/// Writes the `dns`-specific series.
pub fn write_metrics(probes: &[(&str, &ProbeResult)], out: &mut MetricsWriter) {
    for (name, result) in probes {
        let Some(answers) = result.observation("answers") else {
            continue;
        };
        if let Value::List(items) = answers {
            out.gauge(
                "probe_dns_answer_rrs",
                "Distinct answers of the asked type, across all resolvers.",
                &[("probe", name)],
                items.len() as f64,
            );
        }
    }
    for (name, result) in probes {
        let Some(resolvers) = result.observation("resolvers").and_then(Value::as_map) else {
            continue;
        };
        for (resolver, entry) in resolvers {
            let ok = entry
                .as_map()
                .and_then(|entry| entry.get("ok"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            out.gauge(
                "honeyguide_dns_resolver_up",
                "Whether the resolver gave the expected answer in the last run.",
                &[("probe", name), ("resolver", resolver)],
                if ok { 1.0 } else { 0.0 },
            );
        }
    }
    for (name, result) in probes {
        let Some(resolvers) = result.observation("resolvers").and_then(Value::as_map) else {
            continue;
        };
        for (resolver, entry) in resolvers {
            if let Some(seconds) = entry
                .as_map()
                .and_then(|entry| entry.get("seconds"))
                .and_then(Value::as_f64)
            {
                out.gauge(
                    "honeyguide_dns_resolver_duration_seconds",
                    "How long the resolver took to answer (or to fail) in the last run.",
                    &[("probe", name), ("resolver", resolver)],
                    seconds,
                );
            }
        }
    }
    write_flag(
        probes,
        out,
        "honeyguide_dns_hijack_suspected",
        "Whether an answer fell outside the expected values or ranges.",
        "hijack_suspected",
    );
    write_flag(
        probes,
        out,
        "honeyguide_dns_resolvers_disagree",
        "Whether the resolvers returned different answers.",
        "disagree",
    );
}

pub(super) fn write_flag(
    probes: &[(&str, &ProbeResult)],
    out: &mut MetricsWriter,
    family: &'static str,
    help: &'static str,
    key: &str,
) {
    for (name, result) in probes {
        if let Some(flag) = result.observation(key).and_then(Value::as_bool) {
            out.gauge(
                family,
                help,
                &[("probe", name)],
                if flag { 1.0 } else { 0.0 },
            );
        }
    }
}
