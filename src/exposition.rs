//! The Prometheus text exposition format (0.0.4): families, samples, escaping, numbers, and
//! the histogram type. A leaf: every part of honeyguide that exports series (the probe kinds,
//! the alert task, the renderer in [`crate::metrics`]) writes through [`MetricsWriter`], and
//! this module knows none of them.
//!
//! [`MetricsWriter`] groups samples by family (the format requires all lines of a family
//! together, under one `# HELP` and `# TYPE`), escapes label values, and writes numbers the way
//! Prometheus parses them.
//!
//! Why not the `prometheus-client` crate: it emits OpenMetrics (`_total` suffixes under a TYPE
//! without them, `# EOF`, `_created` series), while vmagent and Prometheus 3 are safest with
//! plain 0.0.4, and a registry would be a second copy of state the state task already owns.
//! This file is small, and `tests/it` checks its output with real parsers.

use std::collections::HashMap;
use std::fmt::Write as _;

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
    // Nearly every value (probe names, kinds, classes) needs no escape: copy it whole.
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
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
        out.push_str(itoa::Buffer::new().format(value as i64));
    } else {
        // The shortest representation that reads back as the same float, as `Display` gives,
        // without going through `fmt` for each of a few hundred thousand samples.
        out.push_str(ryu::Buffer::new().format_finite(value));
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
