//! The Prometheus text exposition (format 0.0.4) that `/metrics` serves.
//!
//! Metrics are a pure rendering of the state snapshot: nothing is counted twice, and a series can
//! never disagree with `/status`. [`MetricsWriter`] groups samples by family (the format requires
//! all lines of a family together, under one `# HELP` and `# TYPE`), escapes label values, and
//! writes numbers the way Prometheus parses them.
//!
//! Why not the `prometheus-client` crate: it emits OpenMetrics (`_total` suffixes under a TYPE
//! without them, `# EOF`, `_created` series), while vmagent and Prometheus 3 are safest with plain
//! 0.0.4, and a registry would be a second copy of state the state task already owns. This file
//! is small, and `tests/it` checks its output with real parsers.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use crate::catalog::{Diagnosis, DiagnosisState};
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
    for view in &snapshot.probes {
        let probe = view.name.as_str();
        let mut info: Vec<(&str, &str)> = vec![("probe", probe), ("kind", view.kind.as_str())];
        info.extend(
            view.labels
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        out.sample("honeyguide_probe_info", &info, 1.0);
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
        for (class, count) in &view.runs_failed {
            out.sample(
                "honeyguide_probe_failures_total",
                &[("probe", probe), ("error", class.as_str())],
                *count as f64,
            );
        }
        let Some(latest) = &view.latest else { continue };
        out.sample(
            "probe_success",
            &[("probe", probe)],
            if latest.result.ok { 1.0 } else { 0.0 },
        );
        out.sample(
            "probe_duration_seconds",
            &[("probe", probe)],
            latest.result.duration.as_secs_f64(),
        );
        out.sample(
            "honeyguide_probe_consecutive_failures",
            &[("probe", probe)],
            view.consecutive_failures as f64,
        );
        out.sample(
            "honeyguide_probe_last_run_timestamp_seconds",
            &[("probe", probe)],
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
    out.gauge(
        "honeyguide_build_info",
        "Always 1; the running version.",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
}

/// The Prometheus metric type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// Goes up and down.
    Gauge,
    /// Only goes up; reset on restart.
    Counter,
    /// Buckets, sum and count.
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
            MetricType::Histogram => "histogram",
        }
    }
}

struct Family {
    name: &'static str,
    help: &'static str,
    metric_type: MetricType,
    body: String,
}

/// Collects samples family by family, then writes the exposition in the order families were
/// first declared.
#[derive(Default)]
pub struct MetricsWriter {
    families: Vec<Family>,
    index: HashMap<&'static str, usize>,
    /// The family written last: samples come in runs of one family, so this saves hashing the
    /// name for nearly every sample (it showed up as a fifth of the render time at 10,000 probes).
    last: Option<(&'static str, usize)>,
}

impl MetricsWriter {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a family so it appears (with HELP and TYPE) even before its first sample.
    /// Declaring twice is harmless; the first declaration's help text wins.
    pub fn family(&mut self, name: &'static str, metric_type: MetricType, help: &'static str) {
        if self.family_index(name).is_some() {
            return;
        }
        self.index.insert(name, self.families.len());
        self.families.push(Family {
            name,
            help,
            metric_type,
            body: String::new(),
        });
    }

    fn family_index(&mut self, name: &'static str) -> Option<usize> {
        if let Some((last, index)) = self.last
            && std::ptr::eq(last, name)
        {
            return Some(index);
        }
        let index = *self.index.get(name)?;
        self.last = Some((name, index));
        Some(index)
    }

    /// Writes one gauge sample, declaring the family on first use.
    pub fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.family(name, MetricType::Gauge, help);
        self.write_line(name, "", labels, value);
    }

    /// Writes one counter sample; `name` is the full sample name (conventionally `*_total`).
    pub fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.family(name, MetricType::Counter, help);
        self.write_line(name, "", labels, value);
    }

    /// Writes one sample into a family declared with [`MetricsWriter::family`].
    pub fn sample(&mut self, name: &'static str, labels: &[(&str, &str)], value: f64) {
        debug_assert!(self.index.contains_key(name), "family {name} not declared");
        self.write_line(name, "", labels, value);
    }

    /// Writes a whole histogram (cumulative buckets with `le`, `_sum`, `_count`).
    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        histogram: &Histogram,
    ) {
        self.family(name, MetricType::Histogram, help);
        let mut cumulative = 0u64;
        for (bound, count) in histogram.bounds.iter().zip(&histogram.counts) {
            cumulative += count;
            let le = format_value(*bound);
            let mut bucket_labels: Vec<(&str, &str)> = labels.to_vec();
            bucket_labels.push(("le", &le));
            self.write_line(name, "_bucket", &bucket_labels, cumulative as f64);
        }
        let mut bucket_labels: Vec<(&str, &str)> = labels.to_vec();
        bucket_labels.push(("le", "+Inf"));
        self.write_line(name, "_bucket", &bucket_labels, histogram.count as f64);
        self.write_line(name, "_sum", labels, histogram.sum);
        self.write_line(name, "_count", labels, histogram.count as f64);
    }

    fn write_line(
        &mut self,
        family: &'static str,
        suffix: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let Some(index) = self.family_index(family) else {
            return;
        };
        let body = &mut self.families[index].body;
        body.push_str(family);
        body.push_str(suffix);
        if !labels.is_empty() {
            body.push('{');
            for (position, (name, value)) in labels.iter().enumerate() {
                if position > 0 {
                    body.push(',');
                }
                body.push_str(name);
                body.push_str("=\"");
                escape_label_value(body, value);
                body.push('"');
            }
            body.push('}');
        }
        body.push(' ');
        write_value(body, value);
        body.push('\n');
    }

    /// The finished exposition.
    pub fn finish(self) -> String {
        let size: usize = self
            .families
            .iter()
            .map(|family| family.body.len() + 128)
            .sum();
        let mut out = String::with_capacity(size);
        for family in &self.families {
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(
                out,
                "# TYPE {} {}",
                family.name,
                family.metric_type.as_str()
            );
            out.push_str(&family.body);
        }
        out
    }
}

/// Escapes `\`, `"` and newlines as the format requires.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Formats a sample value as Prometheus parses it (`+Inf`, `-Inf`, `NaN`, shortest float).
pub fn format_value(value: f64) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// [`format_value`] straight into the exposition: no allocation per sample, which matters at
/// 10,000 probes and a dozen samples each.
fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

/// A fixed-bucket histogram, owned by whoever observes into it.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    /// A histogram with the given upper bounds (ascending; `+Inf` is implicit).
    pub fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    /// Records one observation.
    pub fn observe(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        if let Some(slot) = self.bounds.iter().position(|bound| value <= *bound) {
            self.counts[slot] += 1;
        }
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// An upper estimate of quantile `q` (0..=1): the bound of the bucket it falls in.
    pub fn quantile_upper_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            if cumulative >= rank {
                return Some(*bound);
            }
        }
        Some(f64::INFINITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_grouped_with_one_help_and_type() {
        let mut out = MetricsWriter::new();
        out.gauge(
            "probe_success",
            "Whether the probe succeeded.",
            &[("probe", "a")],
            1.0,
        );
        out.counter("runs_total", "Runs.", &[("probe", "a")], 3.0);
        out.gauge("probe_success", "ignored", &[("probe", "b")], 0.0);
        assert_eq!(
            out.finish(),
            "# HELP probe_success Whether the probe succeeded.\n\
             # TYPE probe_success gauge\n\
             probe_success{probe=\"a\"} 1\n\
             probe_success{probe=\"b\"} 0\n\
             # HELP runs_total Runs.\n\
             # TYPE runs_total counter\n\
             runs_total{probe=\"a\"} 3\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = MetricsWriter::new();
        out.gauge("g", "h", &[("l", "a\"b\\c\nd")], 0.5);
        assert!(out.finish().contains("g{l=\"a\\\"b\\\\c\\nd\"} 0.5\n"));
    }

    #[test]
    fn values_format_like_prometheus() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1_700_000_000.0), "1700000000");
        assert_eq!(format_value(0.25), "0.25");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut histogram = Histogram::new(&[0.1, 1.0]);
        histogram.observe(0.05);
        histogram.observe(0.5);
        histogram.observe(5.0);
        let mut out = MetricsWriter::new();
        out.histogram("lag_seconds", "Lag.", &[], &histogram);
        let text = out.finish();
        assert!(
            text.contains("lag_seconds_bucket{le=\"0.1\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("lag_seconds_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(
            text.contains("lag_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("lag_seconds_count 3\n"), "{text}");
        assert_eq!(histogram.quantile_upper_bound(0.5), Some(1.0));
        assert_eq!(histogram.quantile_upper_bound(1.0), Some(f64::INFINITY));
    }
}
