//! Examples parsed from rule files and run on the timeline: the schedule (a scripted result
//! repeats at its probe's interval, the rest are healthy), the real semantics (`for`,
//! inhibition, `failure_ratio`, `seconds_since_ok`, `now`), what a failure says, and every
//! malformed example located.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::timeline::TimelineProbe;
use crate::catalog::{Catalog, ProbeKinds, WarningKind, parse};
use crate::probe::Kind;
use crate::spec::{ConfigErrors, Source};

use super::*;

fn kinds() -> ProbeKinds {
    [("web", Kind::Http), ("cache", Kind::Redis)]
        .into_iter()
        .map(|(name, kind)| (name.to_owned(), kind))
        .collect()
}

fn probes() -> Vec<TimelineProbe> {
    vec![
        TimelineProbe {
            name: "web".to_owned(),
            kind: Kind::Http,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        },
        TimelineProbe {
            name: "cache".to_owned(),
            kind: Kind::Redis,
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        },
    ]
}

/// A rule file for `id` with `when`, then `rest` (more keys, then examples).
fn rule(id: &str, when: &str, rest: &str) -> (String, String) {
    (
        format!("{id}.toml"),
        format!(
            "id = \"{id}\"\ntitle = \"{id}\"\nseverity = \"warning\"\nwhen = '{when}'\n\
             symptom = \"s\"\nrecovery = \"r\"\n{rest}"
        ),
    )
}

fn load(files: &[(String, String)]) -> Result<Catalog, ConfigErrors> {
    let sources: Vec<Source> = files
        .iter()
        .map(|(name, text)| Source::new(format!("alerts/{name}"), text.clone()))
        .collect();
    parse(&sources, &kinds())
}

/// The failures of every example of `files`, as `honeyguide test` prints them.
fn failures(files: &[(String, String)]) -> Vec<String> {
    let catalog = Arc::new(load(files).unwrap_or_else(|errors| panic!("{errors}")));
    run_all(&catalog, &probes())
        .into_iter()
        .filter(|tested| tested.verdict != Verdict::Passed)
        .map(|tested| tested.to_string())
        .collect()
}

fn errors(files: &[(String, String)]) -> Vec<String> {
    match load(files) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

/// A scripted result repeats at its probe's interval until the next entry: failing from 0s
/// every 30s is two failures in a row at 59s and three at 1m; back to healthy at 1m30s.
#[test]
fn a_scripted_result_repeats_at_the_probes_interval() {
    let files = [rule(
        "web-flaky",
        "probes.web.consecutive_failures >= 3",
        r#"
[[example]]
name = "three failures in a row"
results = [
  { probe = "web", at = "0s", error = "connect" },
  { probe = "web", at = "1m30s" },
]
expect = [
  { at = "59s", not_diagnosed = ["web-flaky"] },
  { at = "1m", active = ["web-flaky"] },
  { at = "1m29s", active = ["web-flaky"] },
  { at = "1m30s", active = [] },
]
"#,
    )];
    assert_eq!(failures(&files), Vec::<String>::new());
}

/// Every other probe reports a healthy result of its kind at its interval, with the kind's
/// typical observations (from the one healthy default): a rule reading them evaluates.
#[test]
fn other_probes_report_healthy_results() {
    let files = [rule(
        "cache-full",
        "probes.cache.ok && probes.cache.observations.memory_ratio >= 0.9 && probes.web.ok",
        r#"
[[example]]
name = "the cache fills up"
results = [{ probe = "cache", at = "2m", observations = { memory_ratio = 0.95 } }]
expect = [
  { at = "1m59s", active = [] },
  { at = "2m", active = ["cache-full"] },
]
"#,
    )];
    assert_eq!(failures(&files), Vec::<String>::new());
}

/// `for` on the simulated clock: pending until it has held that long, active then without a
/// new result; a result at the very moment `for` elapses is applied first, so a recovery then
/// resolves it instead of confirming it.
#[test]
fn for_is_exercised_and_results_come_before_the_evaluation_of_their_moment() {
    let files = [rule(
        "web-down",
        "!probes.web.ok",
        r#"for = "45s"

[[example]]
name = "down for good"
results = [{ probe = "web", at = "10s", error = "timeout" }]
expect = [
  { at = "54s", pending = ["web-down"] },
  { at = "55s", active = ["web-down"] },
]

[[example]]
name = "back just as for elapses"
results = [
  { probe = "web", at = "0s", error = "timeout" },
  { probe = "web", at = "45s" },
]
expect = [
  { at = "44s", pending = ["web-down"] },
  { at = "45s", not_diagnosed = ["web-down"] },
]
"#,
    )];
    assert_eq!(failures(&files), Vec::<String>::new());
}

/// An active diagnosis inhibits the one it names, which stays listed with the inhibitor; a
/// pending one inhibits nothing.
#[test]
fn inhibition_is_applied_and_named() {
    let files = [
        rule(
            "all-down",
            "!probes.web.ok && !probes.cache.ok",
            "for = \"1m\"\ninhibits = [\"web-down\"]\n",
        ),
        rule(
            "web-down",
            "!probes.web.ok",
            r#"
[[example]]
name = "everything fails"
results = [
  { probe = "web", at = "0s", error = "connect" },
  { probe = "cache", at = "0s", error = "connect" },
]
expect = [
  { at = "30s", active = ["web-down"], pending = ["all-down"] },
  { at = "1m", active = ["all-down"], inhibited = { web-down = "all-down" } },
]
"#,
        ),
    ];
    assert_eq!(failures(&files), Vec::<String>::new());
}

/// `failure_ratio`, `seconds_since_ok()` and `now` read the simulated clock and history.
#[test]
fn history_and_time_follow_the_simulated_clock() {
    let catalogs = [
        [rule(
            "web-flapping",
            "probes.web.failure_ratio(4) >= 0.5",
            r#"
[[example]]
name = "two of the last four runs failed"
results = [
  { probe = "web", at = "0s", error = "http_status" },
  { probe = "web", at = "30s" },
  { probe = "web", at = "1m", error = "http_status" },
  { probe = "web", at = "1m30s" },
]
expect = [
  { at = "1m30s", active = ["web-flapping"] },
  { at = "2m30s", active = [] },
]
"#,
        )],
        [rule(
            "web-long-down",
            "probes.web.seconds_since_ok() > 90.0",
            r#"
[[example]]
name = "down since 1m"
results = [{ probe = "web", at = "1m", error = "connect" }]
expect = [
  { at = "2m", active = [] },
  { at = "2m1s", active = ["web-long-down"] },
]
"#,
        )],
        [rule(
            "cert-expiring",
            "probes.web.observations.tls_cert_expiry - now < 3600",
            r#"
[[example]]
name = "expires within the hour, two hours after the start"
start = 2030-06-01T12:00:00+02:00
results = [{ probe = "web", at = "0s", observations = { tls_cert_expiry = 2030-06-01T13:00:00Z } }]
expect = [
  { at = "1h59m59s", active = [] },
  { at = "2h0m1s", active = ["cert-expiring"] },
]
"#,
        )],
    ];
    for files in catalogs {
        assert_eq!(failures(&files), Vec::<String>::new());
    }
}

/// Observations: listed keys replace the healthy ones, `null` sets keys to null, and
/// `observations_only` leaves out the healthy rest (a run cut off early).
#[test]
fn observations_override_the_healthy_default() {
    let files = [rule(
        "web-odd",
        "probes.web.observations.status == 502 && probes.web.observations.server == \"cloudflare\"",
        r#"
[[example]]
name = "the healthy rest is kept, null is null, only means only"
results = [
  { probe = "web", at = "0s", error = "http_status", observations = { status = 502 } },
  { probe = "web", at = "30s", error = "http_status", null = ["status"] },
  { probe = "web", at = "1m", error = "timeout", observations = { timeout_phase = "connect" }, observations_only = true },
]
expect = [
  { at = "0s", active = ["web-odd"] },
  { at = "30s", active = [] },
]
"#,
    )];
    assert_eq!(failures(&files), Vec::<String>::new());
    // After 1m the rule reads a key the cut-off run does not have: an evaluation error, which
    // fails the example at that moment.
    let files = [rule(
        "web-odd",
        "probes.web.observations.status == 502",
        r#"
[[example]]
name = "cut off"
results = [{ probe = "web", at = "0s", error = "timeout", observations_only = true }]
expect = [{ at = "0s", active = [] }]
"#,
    )];
    assert_eq!(
        failures(&files),
        [
            "FAIL  web-odd  \"cut off\" (other)  alerts/web-odd.toml:9\n    at 0s (line 11): rule \
             `web-odd` failed to evaluate: no such key: status\n    at 0s, diagnosed: nothing"
        ]
    );
}

/// A failing example says what was expected and what happened, at which moment and line:
/// `active` is exact (another root cause fails it), the others name one mode each.
#[test]
fn a_failure_says_what_was_expected_and_what_happened() {
    let files = [
        rule("cache-down", "!probes.cache.ok", ""),
        rule(
            "web-down",
            "!probes.web.ok",
            r#"for = "1m"

[[example]]
name = "wrong on purpose"
results = [
  { probe = "web", at = "0s", error = "connect" },
  { probe = "cache", at = "0s", error = "connect" },
]
expect = [
  { at = "30s", active = ["cache-down"], inhibited = { web-down = "cache-down" } },
  { at = "1m", active = ["web-down"], not_diagnosed = ["cache-down"] },
]
"#,
        ),
    ];
    assert_eq!(
        failures(&files),
        [
            "FAIL  web-down  \"wrong on purpose\" (fires)  alerts/web-down.toml:10\n\
             \x20   at 30s (line 16): `web-down`: expected inhibited by `cache-down`, got pending\n\
             \x20   at 30s, diagnosed: active `cache-down`; pending `web-down`\n\
             \x20   at 1m (line 17): active: expected `web-down`, got `cache-down`, `web-down`\n\
             \x20   at 1m (line 17): `cache-down`: expected not diagnosed, got active\n\
             \x20   at 1m, diagnosed: active `cache-down`, `web-down`"
        ]
    );
}

/// Whether an example fires its rule or is a near miss of it, for `honeyguide test`.
#[test]
fn examples_fire_their_rule_or_are_near_misses() {
    let files = [rule(
        "web-down",
        "!probes.web.ok",
        r#"
[[example]]
name = "fires"
results = [{ probe = "web", at = "0s", error = "connect" }]
expect = [{ at = "0s", active = ["web-down"] }]

[[example]]
name = "near miss"
expect = [{ at = "0s", not_diagnosed = ["web-down"] }]
"#,
    )];
    let catalog = Arc::new(load(&files).unwrap());
    let roles: Vec<Role> = run_all(&catalog, &probes())
        .iter()
        .map(|tested| tested.role)
        .collect();
    assert_eq!(roles, [Role::Fires, Role::NearMiss]);
    assert!(gaps(&catalog).is_empty());
}

/// An example naming a failure mode that is not loaded (a catalog adopted in part) is a
/// located warning, and is not run.
#[test]
fn an_example_naming_a_mode_that_is_not_loaded_is_skipped_with_a_warning() {
    let files = [rule(
        "web-down",
        "!probes.web.ok",
        r#"
[[example]]
name = "with a neighbour"
expect = [{ at = "0s", not_diagnosed = ["web-down", "web-slow"] }]
"#,
    )];
    let catalog = Arc::new(load(&files).unwrap());
    let warnings: Vec<String> = catalog.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "alerts/web-down.toml:10:53: example[0].expect[0].not_diagnosed[1]: `web-slow` is not \
          loaded, so the example \"with a neighbour\" is not run"
        ]
    );
    assert_eq!(
        catalog.warnings()[0].kind,
        WarningKind::ExampleNamesUnloaded
    );
    let tested = run_all(&catalog, &probes());
    assert_eq!(
        tested[0].verdict,
        Verdict::Skipped("names `web-slow`, not loaded".to_owned())
    );
}

/// Every malformed part of an example is a load error with file, line, column and key, all of
/// them at once.
#[test]
fn malformed_examples_are_located_load_errors() {
    let files = [rule(
        "web-down",
        "!probes.web.ok",
        r#"
[[example]]
name = "broken"
start = 2026-07-01
colour = "red"
results = [
  { probe = "wbe", at = "soon", error = "refused" },
  { probe = "web", at = "9d", ok = true, error = "connect" },
  { probe = "web", at = "0s", ok = false },
  { probe = "cache", at = "0s" },
  { probe = "cache", at = "0s", duration = "1h" },
  { probe = "web", at = "1s", observations = { expiry = 2026-01-01T00:00:00 } },
  { probe = "web", at = "2s", observations = { stauts = 500, redirects = "two" }, null = ["locaton"] },
]
expect = [
  { at = "1m" },
  { at = "1m", active = ["web-down"], not_diagnosed = ["web-down"] },
]

[[example]]
name = "says nothing"
"#,
    )];
    assert_eq!(
        errors(&files),
        [
            "alerts/web-down.toml:10:9: example[0].start: `2026-07-01` needs a date, a time and \
             an offset, e.g. 2026-07-01T09:00:00Z",
            "alerts/web-down.toml:11:1: example[0].colour: unknown field `colour`, expected one \
             of `name`, `start`, `results`, `expect`",
            "alerts/web-down.toml:13:13: example[0].results[0].probe: unknown probe `wbe` (not \
             in the config); did you mean `web`?",
            "alerts/web-down.toml:13:25: example[0].results[0].at: invalid duration `soon` \
             (expected number at 0); write e.g. \"30s\", \"1m30s\" or \"250ms\"",
            "alerts/web-down.toml:13:41: example[0].results[0].error: unknown error class \
             `refused`, expected one of `dns`, `connect`, `timeout`, `tls`, `http_status`, \
             `protocol`, `auth`, `forbidden`, `assertion`, `not_found`, `query`, `schema`, `stalled`, \
             `internal`",
            "alerts/web-down.toml:14:25: example[0].results[1].at: must be at most 8d (the range \
             is 0s to 8d)",
            "alerts/web-down.toml:14:36: example[0].results[1].ok: a result with an `error` \
             failed: drop `ok = true` or the `error`",
            "alerts/web-down.toml:15:36: example[0].results[2].ok: a failed result needs its \
             `error` class (`connect`, `timeout`, `http_status`, ...)",
            "alerts/web-down.toml:17:27: example[0].results[4].at: `cache` already has a result \
             at this offset",
            "alerts/web-down.toml:17:44: example[0].results[4].duration: must be at most 10m \
             (the range is 0s to 10m)",
            "alerts/web-down.toml:18:57: example[0].results[5].observations.expiry: \
             `2026-01-01T00:00:00` needs a date, a time and an offset, e.g. \
             2026-07-01T09:00:00Z",
            "alerts/web-down.toml:19:13: example[0].results[6].null: unknown observation \
             `locaton` of http probe `web`; did you mean `location`?",
            "alerts/web-down.toml:19:57: example[0].results[6].observations.stauts: unknown \
             observation `stauts` of http probe `web`; did you mean `status`?",
            "alerts/web-down.toml:19:74: example[0].results[6].observations.redirects: \
             observation `redirects` is declared int, not str",
            "alerts/web-down.toml:22:3: example[0].expect[0]: an expectation says nothing: give \
             `active`, `pending`, `inhibited` or `not_diagnosed`",
            "alerts/web-down.toml:23:56: example[0].expect[1].not_diagnosed[0]: `web-down` is \
             already expected in `active` at this moment",
            "alerts/web-down.toml:26:1: example[1]: an example needs `expect`: what the catalog \
             must make of its results, and when",
        ]
    );
}
