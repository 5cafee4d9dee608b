//! The shipped failure catalog (`alerts/`): it loads against the shipped `probes.toml`, every
//! rule says what to do, and every rule's own examples (`[[example]]` in its file, run by
//! `honeyguide test`) pass, with at least one that fires it and one near miss that must not
//! (pooler and direct both down is `neon-outage`, not `neon-pooler-down`). `honeyguide test`
//! fails, naming the file and line, when an example no longer holds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use honeyguide::catalog::{self, Catalog, ProbeKinds};
use honeyguide::config::{self, Source};
use honeyguide::probe::Kind;

use crate::support;

// === the shipped probes ===

/// The probes of the shipped `probes.toml`, which the shipped rules and their examples are
/// written against (a test checks the two lists agree).
const SHIPPED_PROBES: [(&str, Kind); 21] = [
    ("edge-api", Kind::Http),
    ("edge-admin", Kind::Http),
    ("edge-api-deep", Kind::Http),
    ("origin-1", Kind::Http),
    ("origin-2", Kind::Http),
    ("origin-3", Kind::Http),
    ("dns-api", Kind::Dns),
    ("dns-cluster", Kind::Dns),
    ("db-pooler", Kind::Postgres),
    ("db-direct", Kind::Postgres),
    ("redis", Kind::Redis),
    ("asynq", Kind::Asynq),
    ("smtp", Kind::Smtp),
    ("registry", Kind::Registry),
    ("b2", Kind::S3),
    ("b2-public", Kind::Http),
    ("obs-vmagent", Kind::Prometheus),
    ("obs-node-disk", Kind::Prometheus),
    ("obs-cardinality", Kind::Prometheus),
    ("edge-vantages", Kind::Prometheus),
    ("k8s", Kind::Kubernetes),
];

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped `probes.toml`, validated as `honeyguide run` would (with an empty environment,
/// so every `${VAR:-default}` takes its default).
fn shipped_config() -> config::Config {
    let path = repository().join("probes.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    config::parse(&Source::new(path, text), &|_| None)
        .unwrap_or_else(|errors| panic!("the shipped probes.toml must load:\n{errors}"))
}

fn shipped_kinds() -> ProbeKinds {
    shipped_config().probe_kinds()
}

fn shipped_catalog() -> Catalog {
    catalog::load(&repository().join("alerts"), &shipped_kinds())
        .unwrap_or_else(|errors| panic!("the shipped alerts/ must load:\n{errors}"))
}

/// The shipped `alerts/` load against the shipped `probes.toml` without a single error: what
/// `honeyguide validate` checks in the repository.
#[test]
fn the_shipped_alerts_load_against_the_shipped_probes() {
    support::init();
    let catalog = shipped_catalog();
    assert!(
        catalog.modes().len() >= 25,
        "{} modes",
        catalog.modes().len()
    );
    for mode in catalog.modes() {
        assert!(!mode.probes().is_empty(), "{} reads no probe", mode.id);
    }
}

/// The shipped probes are these, so a probe renamed or added in `probes.toml` is noticed here
/// (and a rule or example naming a missing one fails the load).
#[test]
fn the_shipped_probes_are_the_ones_the_rules_are_written_against() {
    support::init();
    let expected: ProbeKinds = SHIPPED_PROBES
        .iter()
        .map(|(name, kind)| ((*name).to_owned(), *kind))
        .collect();
    assert_eq!(shipped_kinds(), expected);
}

// === the examples in the rule files ===

/// `honeyguide test` with `args`, in a scratch directory (it neither probes nor opens the
/// store: like `validate`, it only reads the config and the rules).
fn honeyguide_test(args: &[&str]) -> (Option<i32>, String, String) {
    let scratch = support::TempDir::new("honeyguide-test");
    let output = Command::new(env!("CARGO_BIN_EXE_honeyguide"))
        .arg("test")
        .args(args)
        .current_dir(scratch.path())
        .env_remove("HONEYGUIDE_LOG")
        .output()
        .expect("run honeyguide test");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// One example's line of `honeyguide test`: verdict, rule, role.
#[derive(Debug)]
struct Line {
    verdict: String,
    mode: String,
    role: String,
}

fn example_lines(stdout: &str) -> Vec<Line> {
    stdout
        .lines()
        .filter(|line| {
            ["ok ", "FAIL", "SKIP"]
                .iter()
                .any(|start| line.starts_with(start))
        })
        .map(|line| {
            let mut words = line.split_whitespace();
            let verdict = words.next().unwrap().to_owned();
            let mode = words.next().unwrap().to_owned();
            let role = line
                .rsplit_once(") ")
                .and_then(|(head, _)| head.rsplit_once(" ("))
                .map(|(_, role)| role.to_owned())
                .unwrap_or_default();
            Line {
                verdict,
                mode,
                role,
            }
        })
        .collect()
}

/// Every shipped rule carries its own tests: `honeyguide test` on the shipped `alerts/` and
/// `probes.toml` runs every example green (exit 0), and every rule has at least two, one that
/// fires it and a near miss that must not.
#[test]
fn every_shipped_rule_has_passing_examples_that_fire_it_and_a_near_miss() {
    support::init();
    let alerts = repository().join("alerts");
    let config = repository().join("probes.toml");
    let (code, stdout, stderr) = honeyguide_test(&[
        "--config",
        config.to_str().unwrap(),
        "--alerts",
        alerts.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let lines = example_lines(&stdout);
    let failing: Vec<&Line> = lines.iter().filter(|line| line.verdict != "ok").collect();
    assert!(failing.is_empty(), "{failing:?}\n{stdout}");
    let mut problems = Vec::new();
    let catalog = shipped_catalog();
    for mode in catalog.modes() {
        let own: Vec<&Line> = lines.iter().filter(|line| line.mode == mode.id).collect();
        if own.len() < 2 {
            problems.push(format!("{}: {} example(s)", mode.id, own.len()));
        }
        for role in ["fires", "near miss"] {
            if !own.iter().any(|line| line.role == role) {
                problems.push(format!("{}: no example that is `{role}`", mode.id));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}\n{stdout}", problems.join("\n"));
    assert!(
        stdout.contains(&format!(
            "{} examples of {} rules: {} ok, 0 failed, 0 not run",
            lines.len(),
            catalog.modes().len(),
            lines.len()
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("note:"), "{stdout}");
}

/// The shipped rules in a scratch `alerts/` (and the shipped `probes.toml` beside it), with
/// `edit` applied to `file`'s text (no file: nothing edited).
fn shipped_alerts_with(file: &str, edit: impl FnOnce(String) -> String) -> support::TempDir {
    let dir = support::TempDir::new("examples");
    let alerts = dir.path().join("alerts");
    std::fs::create_dir(&alerts).unwrap();
    let mut edit = Some(edit);
    for entry in std::fs::read_dir(repository().join("alerts")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if name == file
            && let Some(edit) = edit.take()
        {
            let edited = edit(text.clone());
            assert_ne!(edited, text, "the edit changed nothing");
            text = edited;
        }
        std::fs::write(alerts.join(name), text).unwrap();
    }
    std::fs::copy(
        repository().join("probes.toml"),
        dir.path().join("probes.toml"),
    )
    .unwrap();
    dir
}

/// 1-based number of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}"))
        + 1
}

/// An example whose expectation no longer holds (the node is expected down a second before its
/// `for` has passed) fails: exit 1, its line names the rule, the example and its file:line, and
/// under it what was expected and what was diagnosed at that moment. The others still pass.
#[test]
fn a_broken_example_exits_1_naming_its_file_and_line() {
    support::init();
    let file = "one-node-down.toml";
    let original = std::fs::read_to_string(repository().join("alerts").join(file)).unwrap();
    let expectation = "{ at = \"1m\", active = [\"one-node-down\"]";
    let dir = shipped_alerts_with(file, |text| {
        text.replacen(
            expectation,
            "{ at = \"59s\", active = [\"one-node-down\"]",
            1,
        )
    });
    let (code, stdout, stderr) = honeyguide_test(&[
        "--config",
        dir.path().join("probes.toml").to_str().unwrap(),
        "--alerts",
        dir.path().join("alerts").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let name_line = line_of(&original, "name = \"one node refuses connections\"");
    let expect_line = line_of(&original, expectation);
    let alerts = dir.path().join("alerts");
    assert!(
        stdout.contains(&format!(
            "FAIL  one-node-down  \"one node refuses connections\" (fires)  {}/{file}:{name_line}\n\
             \x20   at 59s (line {expect_line}): active: expected `one-node-down`, got none\n\
             \x20   at 59s, diagnosed: pending `one-node-down`\n",
            alerts.display()
        )),
        "{stdout}"
    );
    let lines = example_lines(&stdout);
    assert_eq!(
        lines.iter().filter(|line| line.verdict == "FAIL").count(),
        1,
        "{stdout}"
    );
    assert!(stdout.contains(" ok, 1 failed, 0 not run"), "{stdout}");
}

/// A malformed example is a load error like any other rule error: exit 2, every problem with
/// file, line, column and key (an unknown probe, a bad offset, an unknown error class).
#[test]
fn a_malformed_example_is_a_located_load_error() {
    support::init();
    let file = "one-node-down.toml";
    let result = "{ probe = \"origin-2\", at = \"0s\", error = \"connect\"";
    let dir = shipped_alerts_with(file, |text| {
        text.replacen(
            result,
            "{ probe = \"origin-9\", at = \"0x\", error = \"refused\"",
            1,
        )
    });
    let output = Command::new(env!("CARGO_BIN_EXE_honeyguide"))
        .arg("test")
        .current_dir(dir.path())
        .env_remove("HONEYGUIDE_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let text = std::fs::read_to_string(dir.path().join("alerts").join(file)).unwrap();
    let line = line_of(&text, "probe = \"origin-9\"");
    let column = |needle: &str| text.lines().nth(line - 1).unwrap().find(needle).unwrap() + 1;
    for expected in [
        format!(
            "alerts/{file}:{line}:{}: example[0].results[0].probe: unknown probe `origin-9` (not \
             in the config); did you mean `origin-1`?",
            column("\"origin-9\"")
        ),
        format!(
            "alerts/{file}:{line}:{}: example[0].results[0].at: invalid duration `0x`",
            column("\"0x\"")
        ),
        format!(
            "alerts/{file}:{line}:{}: example[0].results[0].error: unknown error class `refused`, \
             expected one of `dns`, `connect`",
            column("\"refused\"")
        ),
    ] {
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    }
    assert!(
        stderr.contains("honeyguide: 3 problem(s) in alerts"),
        "{stderr}"
    );
}

/// The worked example of docs/writing-rules.md ("Adding a failure mode: one file") is what it
/// says: that one file, added to the shipped catalog, validates and its examples pass, one of
/// them firing it and one a near miss, with every other rule's examples still passing.
#[test]
fn the_worked_example_of_the_docs_is_one_file_that_passes() {
    support::init();
    let docs = std::fs::read_to_string(repository().join("docs/writing-rules.md")).unwrap();
    let marker = docs
        .find("<!-- worked example:")
        .expect("the worked example's marker in docs/writing-rules.md");
    let after = &docs[marker..];
    let start = after.find("````toml\n").unwrap() + "````toml\n".len();
    let end = after[start..].find("\n````\n").unwrap() + start + 1;
    let file = &after[start..end];
    let dir = shipped_alerts_with("", |text| text);
    std::fs::write(dir.path().join("alerts/redis-client-flood.toml"), file).unwrap();
    let run = |command: &str| {
        Command::new(env!("CARGO_BIN_EXE_honeyguide"))
            .arg(command)
            .current_dir(dir.path())
            .env_remove("HONEYGUIDE_LOG")
            .output()
            .unwrap()
    };
    let validate = run("validate");
    assert_eq!(
        validate.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );
    let test = run("test");
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert_eq!(test.status.code(), Some(0), "{stdout}");
    let own: Vec<Line> = example_lines(&stdout)
        .into_iter()
        .filter(|line| line.mode == "redis-client-flood")
        .collect();
    assert_eq!(own.len(), 3, "{stdout}");
    assert!(own.iter().all(|line| line.verdict == "ok"), "{stdout}");
    for role in ["fires", "near miss"] {
        assert!(own.iter().any(|line| line.role == role), "{role}: {stdout}");
    }
    assert!(!stdout.contains("note:"), "{stdout}");
}

/// The rule files document themselves: every shipped mode has a runbook pointer into the
/// catalog and a recovery with at least one concrete step.
#[test]
fn every_shipped_rule_says_what_to_do() {
    support::init();
    for mode in shipped_catalog().modes() {
        assert!(
            mode.runbook.starts_with("16-failure-modes.md")
                || mode.runbook.starts_with("17-runbook.md"),
            "{}: runbook {}",
            mode.id,
            mode.runbook
        );
        assert!(mode.recovery.len() > 80, "{}: recovery too thin", mode.id);
        assert!(
            Path::new(&mode.file)
                .file_stem()
                .and_then(|stem| stem.to_str())
                == Some(mode.id.as_str())
        );
    }
}

/// The catch-all `edge-api-down` never goes active before the specific mode that explains the
/// same failure: each of its inhibitors is confirmed at least a minute sooner, or shares its
/// condition with one that is (`cf-global-outage` takes over from `cf-edge-pop-outage`).
#[test]
fn specific_modes_are_confirmed_before_the_catch_all() {
    support::init();
    let catalog = shipped_catalog();
    let catch_all = catalog.get("edge-api-down").unwrap();
    let deadline = catch_all.for_duration - Duration::from_secs(60);
    let inhibitors: Vec<_> = catalog
        .modes()
        .iter()
        .filter(|mode| mode.inhibits.iter().any(|id| id == "edge-api-down"))
        .collect();
    assert!(inhibitors.len() >= 8);
    for mode in &inhibitors {
        let covered = mode.for_duration <= deadline
            || inhibitors
                .iter()
                .any(|other| other.when == mode.when && other.for_duration <= deadline);
        assert!(
            covered,
            "{} ({:?}) would confirm after the catch-all",
            mode.id, mode.for_duration
        );
    }
}

/// `monitor-offline` reads only probes that run at least once a minute: a rule is unknown until
/// every probe it reads has reported, and it must be confirmed before the modes it silences.
#[test]
fn monitor_offline_reads_only_frequent_probes() {
    support::init();
    let config = shipped_config();
    let catalog = shipped_catalog();
    for name in catalog.get("monitor-offline").unwrap().probes() {
        let probe = config
            .probes
            .iter()
            .find(|probe| &probe.name == name)
            .unwrap();
        assert!(
            probe.interval <= Duration::from_secs(60),
            "{name} runs every {:?}",
            probe.interval
        );
    }
}
