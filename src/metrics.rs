//! What `/metrics` serves: the whole exposition, rendered from a state snapshot.
//!
//! Metrics are a pure rendering of the state snapshot: nothing is counted twice, and a series can
//! never disagree with `/status`. The format itself (families, escaping, numbers) is
//! [`crate::exposition`]'s; each probe kind and the alert task contribute their own families
//! through it.

use std::collections::{BTreeMap, HashMap};

use crate::catalog::{Diagnosis, DiagnosisState};
use crate::exposition::{MetricType, MetricsWriter};
use crate::probe::{self, Kind, ProbeResult};
use crate::state::Snapshot;

/// The content type of the exposition; vmagent asks for it, Prometheus 3 requires one.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders the whole exposition from a snapshot.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = MetricsWriter::new();
    write_probe_series(snapshot, &mut out);
    write_kind_series(snapshot, &mut out);
    write_diagnosis_series(snapshot, &mut out);
    crate::alert::write_metrics(
        &snapshot.alerts,
        snapshot.catalog.modes().iter().map(|mode| mode.id.as_str()),
        &mut out,
    );
    write_daemon_series(snapshot, &mut out);
    out.finish()
}

/// The series every probe has, named after blackbox_exporter's where one exists.
fn write_probe_series(snapshot: &Snapshot, out: &mut MetricsWriter) {
    out.family(
        "probe_success",
        MetricType::Gauge,
        "Whether the probe's latest run succeeded (1) or not (0).",
    );
    out.family(
        "probe_duration_seconds",
        MetricType::Gauge,
        "How long the probe's latest run took.",
    );
    out.family(
        "honeyguide_probe_runs_total",
        MetricType::Counter,
        "Probe runs since start, by result.",
    );
    out.family(
        "honeyguide_probe_failures_total",
        MetricType::Counter,
        "Failed probe runs since start, by error class.",
    );
    out.family(
        "honeyguide_probe_consecutive_failures",
        MetricType::Gauge,
        "Failed runs in a row since the probe last succeeded.",
    );
    out.family(
        "honeyguide_probe_last_run_timestamp_seconds",
        MetricType::Gauge,
        "When the probe last finished a run (Unix time).",
    );
    out.family(
        "honeyguide_probe_info",
        MetricType::Gauge,
        "Always 1; the probe's kind and configured labels, to join on `probe`.",
    );
    // Family by family: the writer finds the family of a run of samples once, not per sample.
    for view in &snapshot.probes {
        let mut info: Vec<(&str, &str)> =
            vec![("probe", view.name.as_str()), ("kind", view.kind.as_str())];
        info.extend(
            view.labels
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        out.sample("honeyguide_probe_info", &info, 1.0);
    }
    for view in &snapshot.probes {
        let probe = view.name.as_str();
        out.sample(
            "honeyguide_probe_runs_total",
            &[("probe", probe), ("result", "ok")],
            view.runs_ok as f64,
        );
        let failed: u64 = view.runs_failed.values().sum();
        out.sample(
            "honeyguide_probe_runs_total",
            &[("probe", probe), ("result", "failed")],
            failed as f64,
        );
    }
    for view in &snapshot.probes {
        for (class, count) in &view.runs_failed {
            out.sample(
                "honeyguide_probe_failures_total",
                &[("probe", view.name.as_str()), ("error", class.as_str())],
                *count as f64,
            );
        }
    }
    let latest = || {
        snapshot
            .probes
            .iter()
            .filter_map(|view| Some((view, view.latest.as_ref()?)))
    };
    for (view, latest) in latest() {
        let value = if latest.result.ok { 1.0 } else { 0.0 };
        out.sample("probe_success", &[("probe", view.name.as_str())], value);
    }
    for (view, latest) in latest() {
        out.sample(
            "probe_duration_seconds",
            &[("probe", view.name.as_str())],
            latest.result.duration.as_secs_f64(),
        );
    }
    for (view, _) in latest() {
        out.sample(
            "honeyguide_probe_consecutive_failures",
            &[("probe", view.name.as_str())],
            view.consecutive_failures as f64,
        );
    }
    for (view, latest) in latest() {
        out.sample(
            "honeyguide_probe_last_run_timestamp_seconds",
            &[("probe", view.name.as_str())],
            latest.checked_at.as_millisecond() as f64 / 1000.0,
        );
    }
}

/// Each kind's own series, for all probes of that kind at once.
fn write_kind_series(snapshot: &Snapshot, out: &mut MetricsWriter) {
    let mut by_kind: BTreeMap<Kind, Vec<(&str, &ProbeResult)>> = BTreeMap::new();
    for view in &snapshot.probes {
        if let Some(latest) = &view.latest {
            by_kind
                .entry(view.kind)
                .or_default()
                .push((view.name.as_str(), &latest.result));
        }
    }
    for (kind, probes) in by_kind {
        probe::write_kind_metrics(kind, &probes, out);
    }
}

/// One series per failure mode, whether diagnosed or not, so that absent and healthy differ.
fn write_diagnosis_series(snapshot: &Snapshot, out: &mut MetricsWriter) {
    out.family(
        "honeyguide_diagnosis_active",
        MetricType::Gauge,
        "Whether the failure mode is diagnosed and confirmed (held for its `for`), inhibited or not.",
    );
    out.family(
        "honeyguide_diagnosis_inhibited",
        MetricType::Gauge,
        "Whether the failure mode is diagnosed but explained by another active one (not notified).",
    );
    out.family(
        "honeyguide_rule_evaluations_total",
        MetricType::Counter,
        "Evaluations of the failure mode's rule with every probe it reads known.",
    );
    out.family(
        "honeyguide_rule_errors_total",
        MetricType::Counter,
        "Evaluations of the failure mode's rule that failed (it does not fire meanwhile).",
    );
    let diagnoses: HashMap<&str, &Diagnosis> = snapshot
        .diagnoses
        .iter()
        .map(|diagnosis| (diagnosis.id.as_str(), diagnosis))
        .collect();
    for (mode, stats) in snapshot.catalog.modes().iter().zip(&snapshot.rules) {
        let diagnosis = diagnoses.get(mode.id.as_str());
        let active = diagnosis.is_some_and(|d| d.state == DiagnosisState::Active);
        let inhibited = diagnosis.is_some_and(|d| d.inhibited_by.is_some());
        let id = mode.id.as_str();
        out.sample(
            "honeyguide_diagnosis_active",
            &[("id", id), ("severity", mode.severity.as_str())],
            if active { 1.0 } else { 0.0 },
        );
        out.sample(
            "honeyguide_diagnosis_inhibited",
            &[("id", id)],
            if inhibited { 1.0 } else { 0.0 },
        );
        out.sample(
            "honeyguide_rule_evaluations_total",
            &[("id", id)],
            stats.evaluations as f64,
        );
        out.sample(
            "honeyguide_rule_errors_total",
            &[("id", id)],
            stats.errors as f64,
        );
    }
}

/// honeyguide's own health.
fn write_daemon_series(snapshot: &Snapshot, out: &mut MetricsWriter) {
    out.histogram(
        "honeyguide_scheduler_lag_seconds",
        "How late probe runs started compared to their schedule.",
        &[],
        &snapshot.scheduler_lag,
    );
    out.gauge(
        "honeyguide_scheduler_lag_max_seconds",
        "The latest any probe run has started since honeyguide started.",
        &[],
        snapshot.scheduler_lag_max.as_secs_f64(),
    );
    out.gauge(
        "honeyguide_probes",
        "Probes configured.",
        &[],
        snapshot.probes.len() as f64,
    );
    out.gauge(
        "honeyguide_start_time_seconds",
        "When this honeyguide process started (Unix time).",
        &[],
        snapshot.started_at.as_millisecond() as f64 / 1000.0,
    );
    // Prometheus' own names for the same facts, so existing alerts on them work.
    out.gauge(
        "honeyguide_config_last_reload_successful",
        "Whether the last configuration reload succeeded (1) or failed and the previous configuration stays (0).",
        &[],
        if snapshot.reload.successful { 1.0 } else { 0.0 },
    );
    out.gauge(
        "honeyguide_config_last_reload_success_timestamp_seconds",
        "When the configuration in force was loaded (Unix time): the start or the last successful reload.",
        &[],
        snapshot.reload.loaded_at.as_millisecond() as f64 / 1000.0,
    );
    // An info metric rather than a label on every series: the probe series keep
    // blackbox_exporter's names and labels (dashboards and recording rules work unchanged), and
    // the vmagent shipping them adds `vantage` to each with `-remoteWrite.label`.
    out.gauge(
        "honeyguide_vantage_info",
        "Always 1; where this instance probes from ([server] vantage).",
        &[("vantage", &snapshot.vantage)],
        1.0,
    );
    out.gauge(
        "honeyguide_build_info",
        "Always 1; the running version.",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
}
