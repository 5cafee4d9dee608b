//! Every duration has a range, checked by `validate` (and so by `run` and `check`) with the
//! file, line, column and key: nothing out of range reaches a deadline computation, where it
//! used to panic the state task (`for`) or `check` (a huge `timeout`), or a scheduler
//! (`interval = "1ns"` ran a probe thousands of times a second).

use std::path::Path;
use std::process::{Command, Output};

use crate::support::TempDir;

fn honeyguide(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_honeyguide"))
        .args(args)
        .current_dir(dir)
        .env_remove("HONEYGUIDE_LOG")
        .output()
        .expect("run honeyguide")
}

/// A directory with `probes.toml` and `alerts/` holding `rules` (file name, text).
fn setup(name: &str, probes: &str, rules: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new(name);
    std::fs::write(dir.path().join("probes.toml"), probes).unwrap();
    std::fs::create_dir(dir.path().join("alerts")).unwrap();
    for (file, text) in rules {
        std::fs::write(dir.path().join("alerts").join(file), text).unwrap();
    }
    dir
}

const PROBE: &str = "[[probe]]\nname = \"api\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `interval = "1ns"` and a timeout of five hundred billion years are located errors of
/// `validate`, and `check` refuses the file instead of panicking.
#[test]
fn a_tiny_interval_and_a_huge_timeout_are_located_errors() {
    let probes = format!("{PROBE}interval = \"1ns\"\ntimeout = \"500000000000y\"\n");
    let dir = setup("bounds-probe", &probes, &[]);
    let output = honeyguide(&["validate"], dir.path());
    let stderr_text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr_text}");
    assert_eq!(
        stderr_text.lines().collect::<Vec<_>>(),
        [
            "probes.toml:5:12: probe[api].interval: must be at least 1s (the range is 1s to 24h)",
            "probes.toml:6:11: probe[api].timeout: must be at most 10m (the range is 10ms to 10m)",
            "honeyguide: 2 problem(s) in probes.toml",
        ]
    );

    let huge_timeout = format!("{PROBE}interval = \"24h\"\ntimeout = \"500000000000y\"\n");
    std::fs::write(dir.path().join("probes.toml"), huge_timeout).unwrap();
    let output = honeyguide(&["check"], dir.path());
    let stderr_text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr_text}");
    assert!(!stderr_text.contains("panicked"), "{stderr_text}");
    assert!(
        stderr_text.contains("probes.toml:6:11: probe[api].timeout: must be at most 10m"),
        "{stderr_text}"
    );
}

/// `for = "500000000000y"` is a located error of the rule file, not a panic of the state task
/// once the rule first holds.
#[test]
fn a_for_beyond_a_week_is_a_located_error() {
    let rule = "id = \"api-down\"\ntitle = \"API down\"\nseverity = \"critical\"\n\
                when = '!probes.api.ok'\nfor = \"500000000000y\"\nsymptom = \"s\"\n\
                recovery = \"r\"\nrunbook = \"#r\"\n";
    let dir = setup("bounds-for", PROBE, &[("api-down.toml", rule)]);
    let output = honeyguide(&["validate"], dir.path());
    let stderr_text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr_text}");
    assert!(
        stderr_text
            .contains("alerts/api-down.toml:5:7: for: must be at most 7d (the range is 0s to 7d)"),
        "{stderr_text}"
    );

    let week = rule.replace("500000000000y", "7d");
    std::fs::write(dir.path().join("alerts/api-down.toml"), week).unwrap();
    let output = honeyguide(&["validate"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// The alerting durations are bounded the same way, all reported in one run.
#[test]
fn alerting_durations_out_of_range_are_all_reported() {
    let probes = "[alerting]\ngroup_wait = \"2h\"\nrepeat_interval = \"1ns\"\n\n\
                  [[notifier]]\nname = \"beat\"\nkind = \"heartbeat\"\nurl = \"http://127.0.0.1:9/\"\n\
                  interval = \"1000000000000000s\"\n";
    let dir = setup("bounds-alerting", probes, &[]);
    let output = honeyguide(&["validate"], dir.path());
    let stderr_text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr_text}");
    assert_eq!(
        stderr_text.lines().collect::<Vec<_>>(),
        [
            "probes.toml:2:14: alerting.group_wait: must be at most 1h (the range is 0s to 1h)",
            "probes.toml:3:19: alerting.repeat_interval: must be at least 1s (the range is 1s to 30d)",
            "probes.toml:9:12: notifier[beat].interval: must be at most 24h (the range is 1s to 24h)",
            "honeyguide: 3 problem(s) in probes.toml",
        ]
    );
}
