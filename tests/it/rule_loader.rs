//! What the rule loader says about `alerts/` through `honeyguide validate`: entries it did not
//! load, files too large or not UTF-8, every wrong key of a file, and titles that are not one
//! line. Before, `web-down.TOML` and a README were skipped silently ("0 failure modes, ok"),
//! a 3 MB `when` was compiled for seconds, and only the first serde error of a file was shown.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::TempDir;

fn validate(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_honeyguide"))
        .arg("validate")
        .current_dir(dir)
        .env_remove("HONEYGUIDE_LOG")
        .output()
        .expect("run honeyguide")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory with one probe `api` and an empty `alerts/`.
fn setup(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    std::fs::write(
        dir.path().join("probes.toml"),
        "[[probe]]\nname = \"api\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("alerts")).unwrap();
    dir
}

fn rule(id: &str, extra: &str) -> String {
    format!(
        "id = \"{id}\"\ntitle = \"{id} title\"\nseverity = \"critical\"\nwhen = '!probes.api.ok'\n\
         symptom = \"s\"\nrecovery = \"r\"\nrunbook = \"#r\"\n{extra}"
    )
}

/// `web-down.TOML` is clearly meant as a rule: an error naming the fix. A README and a
/// directory are reported as skipped (validate still passes); hidden entries, such as the
/// `..data` of a ConfigMap volume, are not mentioned.
#[test]
fn entries_that_are_not_rules_are_reported() {
    let dir = setup("loader-entries");
    let alerts = dir.path().join("alerts");
    std::fs::write(alerts.join("web-down.TOML"), rule("web-down", "")).unwrap();
    std::fs::write(alerts.join("api-down.toml"), rule("api-down", "")).unwrap();
    std::fs::write(alerts.join("README.md"), "# our rules\n").unwrap();
    std::fs::create_dir(alerts.join("old")).unwrap();
    std::fs::create_dir(alerts.join("..data")).unwrap();
    std::fs::write(alerts.join(".api-down.toml.swp"), "\0\0").unwrap();

    let output = validate(dir.path());
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "alerts/web-down.TOML:0:0: not loaded: rule files end in lowercase `.toml`; \
             rename it to `web-down.toml`"
        ),
        "{stderr}"
    );

    std::fs::rename(alerts.join("web-down.TOML"), alerts.join("web-down.toml")).unwrap();
    let output = validate(dir.path());
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "alerts/README.md: skipped: not a rule file (rules are `*.toml`)",
            "alerts/old: skipped: a directory, not a rule file (rules are `*.toml` files \
             directly in it)",
        ]
    );
    assert!(
        stdout.contains("alerts: 2 failure modes, ok (2 skipped, see above)"),
        "{stdout}"
    );
}

/// A 3 MB `&&` chain is refused at once, naming the limit, instead of being compiled for
/// seconds and held for the daemon's life; a smaller file with a `when` over its own limit
/// is refused at the `when`.
#[test]
fn huge_files_and_expressions_are_refused_naming_the_limit() {
    let dir = setup("loader-size");
    let chain = vec!["probes.api.ok"; 200_000].join(" && ");
    let huge = rule("api-down", "").replace("'!probes.api.ok'", &format!("'{chain}'"));
    std::fs::write(dir.path().join("alerts/api-down.toml"), &huge).unwrap();
    let output = validate(dir.path());
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "alerts/api-down.toml:1:1: the file is {} bytes, over the limit of 65536 bytes",
            huge.len()
        )),
        "{stderr}"
    );

    let chain = vec!["probes.api.ok"; 400].join(" && ");
    let long = rule("api-down", "").replace("'!probes.api.ok'", &format!("'{chain}'"));
    std::fs::write(dir.path().join("alerts/api-down.toml"), &long).unwrap();
    let output = validate(dir.path());
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "alerts/api-down.toml:4:9: when: the expression is {} bytes, over the limit of \
             4096: split it into several rules",
            chain.len()
        )),
        "{stderr}"
    );
}

/// Brackets nested deeper than the parser can safely go are a located error, not a stack
/// overflow that aborts `validate`.
#[test]
fn deeply_nested_brackets_are_an_error_not_a_crash() {
    let dir = setup("loader-nesting");
    let nested = format!("'{}!probes.api.ok{}'", "(".repeat(1000), ")".repeat(1000));
    let text_ = rule("api-down", "").replace("'!probes.api.ok'", &nested);
    std::fs::write(dir.path().join("alerts/api-down.toml"), text_).unwrap();
    let output = validate(dir.path());
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains("alerts/api-down.toml:4:25: when: brackets nest deeper than 16 levels here"),
        "{stderr}"
    );
}

/// A byte that is not UTF-8 is located on its line and column, not at 0:0.
#[test]
fn invalid_utf8_is_located() {
    let dir = setup("loader-utf8");
    let mut bytes = rule("api-down", "").into_bytes();
    let at = bytes.windows(7).position(|w| w == b"symptom").unwrap() + 11;
    bytes.insert(at, 0xff);
    std::fs::write(dir.path().join("alerts/api-down.toml"), bytes).unwrap();
    let output = validate(dir.path());
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "alerts/api-down.toml:5:12: not valid UTF-8 (byte 0xff here); save the file as UTF-8"
        ),
        "{stderr}"
    );
}

/// Every wrong key of a file is reported in one run, each with its key: a missing one, a
/// duplicate, a wrong type under a dotted key, and a title with a line break.
#[test]
fn every_problem_of_a_rule_file_is_reported_with_its_key() {
    let dir = setup("loader-keys");
    let alerts = dir.path().join("alerts");
    let broken = "id = \"api-down\"\ntitle = \"API down\\r\\nBcc: everyone@example.com\"\n\
                  severity = \"fatal\"\nwhen = '!probes.api.ok'\nsymptom = \"s\"\nrunbook = \"#r\"\n\
                  \n\n\nlabels.team.name = \"platform\"\n";
    std::fs::write(alerts.join("api-down.toml"), broken).unwrap();
    let duplicate = rule("db-down", "\ntitle = \"again\"\n");
    std::fs::write(alerts.join("db-down.toml"), duplicate).unwrap();

    let output = validate(dir.path());
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "alerts/api-down.toml:1:1: recovery: missing field `recovery`",
            "alerts/api-down.toml:3:12: severity: unknown variant `fatal`, expected one of \
             `critical`, `warning`, `info`",
            "alerts/api-down.toml:10:8: labels.team: invalid type: map, expected a string",
            "alerts/db-down.toml:9:1: title: duplicate key `title`: it is already set above",
            "honeyguide: 4 problem(s) in alerts",
        ]
    );

    let fixed = broken
        .replace("fatal", "critical")
        .replace("labels.team.name", "recovery");
    std::fs::write(alerts.join("api-down.toml"), fixed).unwrap();
    std::fs::write(alerts.join("db-down.toml"), rule("db-down", "")).unwrap();
    let output = validate(dir.path());
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "alerts/api-down.toml:2:9: title: must be one line, without control characters; \
             it contains a line break",
            "honeyguide: 1 problem(s) in alerts",
        ]
    );
}

/// A team adopting part of the shipped catalog: three shipped rules whose `inhibits` name rules
/// that were not copied load, with one warning per such entry (file, line, column, the missing
/// id) and exit 0. Before, this was 17 errors and exit 2.
#[test]
fn a_catalog_adopted_in_part_loads_with_warnings() {
    let dir = TempDir::new("loader-partial");
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        repository.join("probes.toml"),
        dir.path().join("probes.toml"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("alerts")).unwrap();
    let adopted = ["all-nodes-down", "redis-down", "neon-outage"];
    let mut expected_warnings = 0;
    for id in adopted {
        let name = format!("{id}.toml");
        let text = std::fs::read_to_string(repository.join("alerts").join(&name)).unwrap();
        std::fs::write(dir.path().join("alerts").join(&name), &text).unwrap();
        let inhibits = text
            .lines()
            .find(|line| line.starts_with("inhibits"))
            .unwrap_or_else(|| panic!("{id} inhibits nothing"));
        expected_warnings += inhibits.matches('"').count() / 2;
    }

    let output = validate(dir.path());
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("is not loaded, so this entry inhibits nothing"))
        .collect();
    assert_eq!(warnings.len(), expected_warnings, "{stderr}");
    assert!(expected_warnings >= 17, "{expected_warnings}");
    assert!(
        warnings.contains(
            &"alerts/redis-down.toml:21:13: inhibits[0]: `redis-restarted` is not loaded, so this \
              entry inhibits nothing"
        ),
        "{stderr}"
    );
    // Each warning is located: file:line:column: key.
    for line in &warnings {
        let mut parts = line.splitn(4, ':');
        let (file, row, column) = (parts.next(), parts.next(), parts.next());
        assert!(file.is_some_and(|file| file.ends_with(".toml")), "{line}");
        assert!(
            row.and_then(|row| row.parse::<usize>().ok()).is_some(),
            "{line}"
        );
        assert!(
            column
                .and_then(|column| column.parse::<usize>().ok())
                .is_some(),
            "{line}"
        );
    }
    assert!(
        stdout.contains("alerts: 3 failure modes, ok (")
            && stdout.contains(" warnings, see above)"),
        "{stdout}"
    );
}
