//! Running probes the way the daemon does, from TOML text: parse and validate with the real
//! config loader, execute with the real runner (timeout and phases), render the kind's metrics,
//! and read what a user would read in the result. Every `probe_*.rs` uses these.
//!
//! `dir` is where the `probes.toml` is taken to be: relative paths in it (`ca_file`,
//! `password_file`, `resolv_conf`) resolve from there, and error messages name `dir/probes.toml`.
//! A config without relative paths can pass `""` (the working directory; messages then name
//! plain `probes.toml`).

use std::path::Path;
use std::time::Duration;

use honeyguide::config::{self, Config, ConfigErrors, Source};
use honeyguide::exposition::MetricsWriter;
use honeyguide::probe::{self, Kind, ProbeResult, Value};

/// Parses `toml` at `dir/probes.toml` with an empty environment; panics with every error if it
/// does not validate.
pub fn load(dir: impl AsRef<Path>, toml: &str) -> Config {
    load_with_env(dir, toml, &[])
}

/// [`load`], with `env` as the whole environment for `${VAR}`.
pub fn load_with_env(dir: impl AsRef<Path>, toml: &str, env: &[(&str, &str)]) -> Config {
    parse(dir, toml, env).unwrap_or_else(|errors| panic!("config did not validate:\n{errors}"))
}

/// The errors `toml` is rejected with, one `file:line:col: key: message` per line.
pub fn errors(dir: impl AsRef<Path>, toml: &str) -> String {
    match parse(dir, toml, &[]) {
        Ok(_) => panic!("config unexpectedly validated:\n{toml}"),
        Err(errors) => errors.to_string(),
    }
}

/// Parses `toml` at `dir/probes.toml` with `env` as the whole environment for `${VAR}`.
pub fn parse(
    dir: impl AsRef<Path>,
    toml: &str,
    env: &[(&str, &str)],
) -> Result<Config, ConfigErrors> {
    let source = Source::new(dir.as_ref().join("probes.toml"), toml.to_owned());
    let lookup = |name: &str| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    };
    config::parse(&source, &lookup)
}

/// The `probes.toml` shipped at the top of the repository, loaded with an empty environment (its
/// `${VAR:-default}` placeholders fill in).
pub fn load_shipped() -> Config {
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(Path::new(dir).join("probes.toml"))
        .expect("read the shipped probes.toml");
    load(dir, &text)
}

/// Loads `toml` (one probe) and runs that probe once with its configured timeout.
pub async fn run_one(dir: impl AsRef<Path>, toml: &str) -> ProbeResult {
    let config = load(dir, toml);
    let probe = config.probes.first().expect("one probe in the config");
    probe::execute(probe.probe.clone(), probe.timeout).await
}

/// Runs the `index`th probe of a loaded config once with `timeout`.
pub async fn run_loaded(config: &Config, index: usize, timeout: Duration) -> ProbeResult {
    probe::execute(config.probes[index].probe.clone(), timeout).await
}

/// Runs the probe named `name` once, with its configured timeout.
pub async fn run_named(config: &Config, name: &str) -> ProbeResult {
    let probe = config
        .probes
        .iter()
        .find(|probe| probe.name == name)
        .unwrap_or_else(|| panic!("no probe named {name}"));
    probe::execute(probe.probe.clone(), probe.timeout).await
}

/// The kind-specific metrics of the first probe's `result`, as `/metrics` renders them.
pub fn metrics(config: &Config, result: &ProbeResult) -> String {
    let probe = config.probes.first().expect("one probe in the config");
    kind_metrics_of(probe.kind(), &[(probe.name.as_str(), result)])
}

/// The kind-specific metrics of several probes of one config (named in `results`).
pub fn kind_metrics(config: &Config, results: &[(&str, &ProbeResult)]) -> String {
    let kind = config
        .probes
        .iter()
        .find(|probe| probe.name == results[0].0)
        .map(|probe| probe.kind())
        .expect("probe exists");
    kind_metrics_of(kind, results)
}

/// The metrics of `kind` for `results`, for a test that ran without keeping the config.
pub fn kind_metrics_of(kind: Kind, results: &[(&str, &ProbeResult)]) -> String {
    let mut writer = MetricsWriter::new();
    probe::write_kind_metrics(kind, results, &mut writer);
    writer.finish()
}

/// An observation, nested ones by `path` like `["resolvers", "udp://...", "ok"]`; panics with
/// what is there when it is missing.
pub fn observation<'a>(result: &'a ProbeResult, path: &[&str]) -> &'a Value {
    let (first, rest) = path.split_first().expect("non-empty path");
    let mut value = result
        .observation(first)
        .unwrap_or_else(|| panic!("no observation `{first}` in {:?}", result.observations));
    for key in rest {
        value = value
            .as_map()
            .and_then(|map| map.get(*key))
            .unwrap_or_else(|| panic!("no `{key}` under {path:?} in {value:?}"));
    }
    value
}

/// The phases a run went through, in order.
pub fn phase_names(result: &ProbeResult) -> Vec<&'static str> {
    result.phases.iter().map(|(name, _)| *name).collect()
}

/// A list of text values, as list observations hold them.
pub fn strings(values: &[&str]) -> Value {
    Value::from(values.to_vec())
}

/// Asserts that the exposition `metrics` has exactly this `line`.
pub fn assert_line(metrics: &str, line: &str) {
    assert!(
        metrics.lines().any(|candidate| candidate == line),
        "missing line `{line}` in:\n{metrics}"
    );
}

/// Asserts that the exposition `metrics` has a sample of `series` (`name{labels}`), whatever its
/// value (a duration, an uptime).
pub fn assert_series(metrics: &str, series: &str) {
    let prefix = format!("{series} ");
    assert!(
        metrics.lines().any(|line| line.starts_with(&prefix)),
        "no `{series}` sample in:\n{metrics}"
    );
}

/// Asserts that the exposition `metrics` has no series of `family`.
pub fn assert_no_series(metrics: &str, family: &str) {
    assert!(
        !metrics
            .lines()
            .any(|line| line.starts_with(&format!("{family}{{"))),
        "unexpected `{family}` series in:\n{metrics}"
    );
}

/// Asserts that the exposition `metrics` has each of `lines`.
pub fn assert_lines(metrics: &str, lines: &[&str]) {
    for line in lines {
        assert_line(metrics, line);
    }
}
