//! Running probes the way the daemon does, from TOML text: parse and validate with the real
//! config loader, execute with the real runner (timeout and phases), render the kind's metrics.

use std::path::Path;
use std::time::Duration;

use honeyguide::config::{self, Source};
use honeyguide::metrics::MetricsWriter;
use honeyguide::probe::{self, ProbeResult};

/// Parses `toml` as a `probes.toml` at `dir/probes.toml` (relative paths resolve from `dir`),
/// with an empty environment; panics with every error if it does not validate.
pub fn load(dir: &Path, toml: &str) -> config::Config {
    let source = Source::new(dir.join("probes.toml"), toml.to_owned());
    match config::parse(&source, &|_| None) {
        Ok(config) => config,
        Err(errors) => panic!("config did not validate:\n{errors}"),
    }
}

/// The errors `toml` is rejected with, one `file:line:col: key: message` per line.
pub fn errors(dir: &Path, toml: &str) -> String {
    let source = Source::new(dir.join("probes.toml"), toml.to_owned());
    match config::parse(&source, &|_| None) {
        Ok(_) => panic!("config unexpectedly validated:\n{toml}"),
        Err(errors) => errors.to_string(),
    }
}

/// Loads `toml` (one probe) and runs that probe once with its configured timeout.
pub async fn run_one(dir: &Path, toml: &str) -> ProbeResult {
    let config = load(dir, toml);
    let probe = config.probes.first().expect("one probe in the config");
    probe::execute(probe.probe.clone(), probe.timeout).await
}

/// Runs an already loaded probe once with `timeout`.
pub async fn run_loaded(config: &config::Config, index: usize, timeout: Duration) -> ProbeResult {
    probe::execute(config.probes[index].probe.clone(), timeout).await
}

/// The kind-specific metrics of one probe's result.
pub fn metrics(config: &config::Config, result: &ProbeResult) -> String {
    let probe = config.probes.first().expect("one probe in the config");
    let mut writer = MetricsWriter::new();
    probe::write_kind_metrics(probe.kind(), &[(probe.name.as_str(), result)], &mut writer);
    writer.finish()
}

/// A nested observation, `path` like `["resolvers", "udp://...", "ok"]`.
pub fn observation<'a>(result: &'a ProbeResult, path: &[&str]) -> &'a probe::Value {
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
