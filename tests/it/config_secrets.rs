//! `validate` never quotes a value that came from `${ENV}` or a `*_file`, nor a URL beyond its
//! scheme and host. Before, `port = "${PW}"` printed the password in serde's type error, and a
//! webhook URL without a scheme was printed whole, though its path is the webhook's secret.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::TempDir;

/// Distinctive values, so that any quote of them (or of a piece of them) shows.
const SECRETS: [(&str, &str); 7] = [
    ("HG_SMTP_PASSWORD", "hunter2-Xq7vLp9wZ"),
    (
        "HG_SLACK_HOOK",
        "hooks.slack.com/services/T0AAA/B0BBB/zK3sEcReTtOkEn",
    ),
    ("HG_PING_URL", "hc-ping.com/5f0c2d9e-uuid-sEcReT"),
    ("HG_TLS_MODE", "sEcReTmOdE-4411"),
    ("HG_INTERVAL", "sEcReT-iNtErVaL-99"),
    ("HG_HOST", "db-sEcReT host!"),
    ("HG_TOKEN", "tok-sEcReT-abcdefghij"),
];
const FILE_SECRET: &str = "password sEcReT-from-a-file-77";

fn validate(dir: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_honeyguide"));
    command
        .arg("validate")
        .current_dir(dir)
        .env_remove("HONEYGUIDE_LOG");
    for (name, value) in SECRETS {
        command.env(name, value);
    }
    command.output().expect("run honeyguide")
}

const PROBES: &str = r#"
[[probe]]
name = "db"
kind = "postgres"
dsn_file = "dsn"

[[probe]]
name = "mail"
kind = "smtp"
host = "${HG_HOST}"
tls = "implicit"
interval = "${HG_INTERVAL}"

[[probe]]
name = "registry"
kind = "registry"
url = "${HG_SLACK_HOOK}"
repository = "app"

[[notifier]]
name = "mail"
kind = "email"
host = "smtp.example.com"
port = "${HG_SMTP_PASSWORD}"
from = "a@example.com"
to = ["b@example.com"]

[[notifier]]
name = "mail2"
kind = "email"
host = "smtp.example.com"
tls = "${HG_TLS_MODE}"
from = "a@example.com"
to = ["b@example.com"]

[[notifier]]
name = "slack"
kind = "webhook"
url = "${HG_SLACK_HOOK}"
headers = { Authorization = "Bearer ${HG_TOKEN}" }

[[notifier]]
name = "beat"
kind = "heartbeat"
url = "ftp://${HG_PING_URL}"

[[notifier]]
name = "beat2"
kind = "heartbeat"
url = "${HG_PING_URL}"
"#;

/// Every wrong value is reported, located and named, and not one secret (or piece of one)
/// is in the output.
#[test]
fn validate_never_quotes_a_secret() {
    let dir = TempDir::new("secrets");
    std::fs::write(dir.path().join("probes.toml"), PROBES).unwrap();
    std::fs::write(dir.path().join("dsn"), format!("{FILE_SECRET}\n")).unwrap();
    std::fs::create_dir(dir.path().join("alerts")).unwrap();
    let output = validate(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for (_, secret) in SECRETS.iter().chain([&("file", FILE_SECRET)]) {
        let chars: Vec<char> = secret.chars().collect();
        for piece in chars
            .windows(8)
            .map(|window| window.iter().collect::<String>())
        {
            assert!(
                !stderr.contains(&piece) && !stdout.contains(&piece),
                "`{piece}` of a secret leaked:\n{stderr}"
            );
        }
        assert!(!stderr.contains("sEcReT"), "{stderr}");
    }
    for expected in [
        "probe[db].dsn: cannot parse the dsn: it is not `key=value` pairs or a postgres:// URL",
        "probe[mail].host: the value from `${HG_HOST}` is not a host name or IP address",
        "probe[mail].interval: invalid duration the value from `${HG_INTERVAL}`",
        "probe[registry].url: not a URL",
        "notifier[mail].port: the value from `${HG_SMTP_PASSWORD}` is not valid here: expected u16",
        "notifier[mail2].tls: the value from `${HG_TLS_MODE}` is not valid here: expected \
         `implicit` or `starttls`",
        "notifier[slack].url: not a URL (relative URL without a base); write it whole, like \
         \"https://host/path\"",
        "notifier[beat].url: must be an http:// or https:// URL, not `ftp://`",
        "notifier[beat2].url: not a URL",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
}
