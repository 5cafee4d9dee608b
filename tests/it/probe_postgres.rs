//! The `postgres` probe against a real PostgreSQL 15 and a real PgBouncer 1.18 in transaction
//! mode: the "Neon outage", "pooler down but direct up", wrong password, missing database and
//! goose schema-precondition entries of the failure catalog.

use std::time::Duration;

use honeyguide::probe::{ErrorClass, ProbeResult, Value};

use crate::support::pgbouncer::PgBouncer;
use crate::support::postgres::{DATABASE, PASSWORD, Postgres, USER};
use crate::support::{init, kind_metrics, load_config, run_probe};

/// `db-direct` straight to Postgres and `db-pooler` through PgBouncer, both TLS with the test CA,
/// as the honeyDue probes.toml has them (the pooler's password comes in through a dsn).
fn probes_toml(postgres: &Postgres, pooler_port: u16) -> String {
    format!(
        r#"
[[probe]]
name = "db-direct"
kind = "postgres"
host = "localhost"
port = {direct_port}
user = "{USER}"
password = "${{DB_PASSWORD}}"
dbname = "{DATABASE}"
sslmode = "require"
ca_file = "{ca}"
timeout = "5s"

[[probe]]
name = "db-pooler"
kind = "postgres"
dsn = "postgres://{USER}:${{DB_PASSWORD}}@localhost:{pooler_port}/{DATABASE}?sslmode=require"
ca_file = "{ca}"
timeout = "5s"
"#,
        direct_port = postgres.port(),
        ca = postgres.ca_file().display(),
    )
}

fn assert_failed(result: &ProbeResult, class: ErrorClass) {
    assert!(!result.ok, "expected a failure, got {result:?}");
    assert_eq!(result.error, Some(class), "{}", result.message);
}

fn phase_names(result: &ProbeResult) -> Vec<&'static str> {
    result.phases.iter().map(|(name, _)| *name).collect()
}

/// Both paths answer over verified TLS: each run reports the server version, that TLS was used,
/// the query time, every phase in order, and the per-phase metric series; the password from the
/// dsn appears nowhere.
#[tokio::test]
async fn pooler_and_direct_both_answer_over_tls() {
    init();
    let postgres = Postgres::start();
    let pooler = PgBouncer::start(&postgres);
    let config = load_config(
        &probes_toml(&postgres, pooler.port()),
        &[("DB_PASSWORD", PASSWORD)],
    );

    let direct = run_probe(&config, "db-direct").await;
    assert!(direct.ok, "{direct:?}");
    assert_eq!(direct.observation("tls"), Some(&Value::Bool(true)));
    let version = direct.observation("server_version").and_then(Value::as_str);
    assert!(
        version.is_some_and(|version| version.starts_with("15.")),
        "{version:?}"
    );
    assert!(
        direct
            .observation("query_seconds")
            .and_then(Value::as_f64)
            .is_some_and(|seconds| seconds >= 0.0)
    );
    assert_eq!(direct.observation("goose_version"), Some(&Value::Null));
    assert_eq!(
        phase_names(&direct),
        ["resolve", "connect", "tls", "startup", "query"]
    );
    assert!(direct.message.contains("(TLS)"), "{}", direct.message);

    let pooled = run_probe(&config, "db-pooler").await;
    assert!(pooled.ok, "{pooled:?}\n{}", pooler.log());
    assert_eq!(pooled.observation("tls"), Some(&Value::Bool(true)));
    assert_eq!(
        phase_names(&pooled),
        ["resolve", "connect", "tls", "startup", "query"]
    );

    let pooler_probe = config
        .probes
        .iter()
        .find(|probe| probe.name == "db-pooler")
        .unwrap();
    let target = pooler_probe.probe.target();
    assert_eq!(target, format!("localhost:{}/{DATABASE}", pooler.port()));
    let debug = format!("{:?}", pooler_probe.probe);
    assert!(!debug.contains(PASSWORD), "{debug}");
    assert!(!pooled.message.contains(PASSWORD));

    let metrics = kind_metrics(&config, &[("db-direct", &direct), ("db-pooler", &pooled)]);
    for probe in ["db-direct", "db-pooler"] {
        for phase in ["resolve", "connect", "tls", "startup", "query"] {
            let prefix =
                format!("probe_postgres_duration_seconds{{probe=\"{probe}\",phase=\"{phase}\"}} ");
            assert!(
                metrics.lines().any(|line| line.starts_with(&prefix)),
                "no {prefix} in\n{metrics}"
            );
        }
    }
    assert!(
        metrics.contains("# TYPE probe_postgres_duration_seconds gauge\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("probe_postgres_goose_version"),
        "{metrics}"
    );
}

/// Without TLS (`sslmode = "disable"`) there is no `tls` phase and `tls` reads false; with a CA
/// that did not sign the server's certificate the handshake fails with class `tls`; a hung
/// server (SIGSTOP) is class `timeout`, naming the phase it hung in.
#[tokio::test]
async fn plaintext_untrusted_and_hung() {
    init();
    let postgres = Postgres::start();
    let other_ca_dir = crate::support::TempDir::new("other-ca");
    let other_ca = crate::support::certs::TestCa::new().write_pem(other_ca_dir.path());
    let config = load_config(
        &format!(
            r#"
[[probe]]
name = "plain"
kind = "postgres"
host = "127.0.0.1"
port = {port}
user = "{USER}"
password = "{PASSWORD}"
dbname = "{DATABASE}"
sslmode = "disable"

[[probe]]
name = "untrusted"
kind = "postgres"
host = "127.0.0.1"
port = {port}
user = "{USER}"
password = "{PASSWORD}"
dbname = "{DATABASE}"
sslmode = "require"
ca_file = "{other_ca}"

[[probe]]
name = "hung"
kind = "postgres"
host = "127.0.0.1"
port = {port}
user = "{USER}"
password = "{PASSWORD}"
dbname = "{DATABASE}"
sslmode = "require"
tls_verify = false
timeout = "1s"
"#,
            port = postgres.port(),
            other_ca = other_ca.display(),
        ),
        &[],
    );

    let plain = run_probe(&config, "plain").await;
    assert!(plain.ok, "{plain:?}");
    assert_eq!(plain.observation("tls"), Some(&Value::Bool(false)));
    assert_eq!(
        phase_names(&plain),
        ["resolve", "connect", "startup", "query"]
    );

    let untrusted = run_probe(&config, "untrusted").await;
    assert_failed(&untrusted, ErrorClass::Tls);
    assert!(
        untrusted
            .message
            .starts_with("TLS handshake failed: certificate has a bad signature"),
        "{}",
        untrusted.message
    );
    assert_eq!(untrusted.observation("tls"), Some(&Value::Bool(false)));

    postgres.pause();
    let hung = run_probe(&config, "hung").await;
    postgres.resume();
    assert_failed(&hung, ErrorClass::Timeout);
    assert_eq!(hung.message, "timed out after 1s during tls");
}

/// "Neon pooler unreachable but direct endpoint up": with PgBouncer stopped the pooler probe fails
/// with class `connect` (connection refused) while the direct probe still succeeds.
#[tokio::test]
async fn pooler_down_direct_up() {
    init();
    let postgres = Postgres::start();
    let mut pooler = PgBouncer::start(&postgres);
    let config = load_config(
        &probes_toml(&postgres, pooler.port()),
        &[("DB_PASSWORD", PASSWORD)],
    );
    assert!(run_probe(&config, "db-pooler").await.ok);

    pooler.stop();
    let pooled = run_probe(&config, "db-pooler").await;
    assert_failed(&pooled, ErrorClass::Connect);
    assert!(
        pooled.message.ends_with(": connection refused"),
        "{}",
        pooled.message
    );
    assert_eq!(phase_names(&pooled), ["resolve", "connect"]);
    let direct = run_probe(&config, "db-direct").await;
    assert!(direct.ok, "{direct:?}");
}

/// "Neon Postgres outage": with Postgres stopped the direct probe is refused (`connect`), and the
/// pooler, which still accepts clients, cannot get a server connection: its `query_wait_timeout`
/// (3 s here, 120 s at Neon) is reported as class `connect` too, not as a bad query.
#[tokio::test]
async fn postgres_down_fails_both_paths() {
    init();
    let mut postgres = Postgres::start();
    let pooler = PgBouncer::start(&postgres);
    let config = load_config(
        &probes_toml(&postgres, pooler.port()),
        &[("DB_PASSWORD", PASSWORD)],
    );
    assert!(run_probe(&config, "db-pooler").await.ok);

    postgres.stop();
    let direct = run_probe(&config, "db-direct").await;
    assert_failed(&direct, ErrorClass::Connect);
    assert!(
        direct.message.ends_with(": connection refused"),
        "{}",
        direct.message
    );
    let pooled = run_probe(&config, "db-pooler").await;
    assert_failed(&pooled, ErrorClass::Connect);
    assert_eq!(
        pooled.message,
        "query failed: no working server connection: query_wait_timeout (SQLSTATE 08P01)"
    );
}

/// A wrong password is class `auth` on both paths, and the message says so without the password.
#[tokio::test]
async fn wrong_password_is_auth() {
    init();
    let postgres = Postgres::start();
    let pooler = PgBouncer::start(&postgres);
    let config = load_config(
        &probes_toml(&postgres, pooler.port()),
        &[("DB_PASSWORD", "not-the-password")],
    );
    for name in ["db-direct", "db-pooler"] {
        let result = run_probe(&config, name).await;
        assert_failed(&result, ErrorClass::Auth);
        assert!(
            result.message.starts_with("authentication failed: "),
            "{name}: {}",
            result.message
        );
        assert!(!result.message.contains("not-the-password"));
        assert_eq!(
            result.phases.last().map(|(phase, _)| *phase),
            Some("startup")
        );
    }
}

/// A database that does not exist is class `not_found`, directly and through the pooler.
#[tokio::test]
async fn missing_database_is_not_found() {
    init();
    let postgres = Postgres::start();
    let pooler = PgBouncer::start(&postgres);
    let config = load_config(
        &format!(
            r#"
[[probe]]
name = "direct"
kind = "postgres"
host = "127.0.0.1"
port = {direct}
user = "{USER}"
password = "{PASSWORD}"
dbname = "nosuchdb"
sslmode = "disable"

[[probe]]
name = "pooled"
kind = "postgres"
host = "127.0.0.1"
port = {pooled}
user = "{USER}"
password = "{PASSWORD}"
dbname = "nosuchdb"
sslmode = "disable"
"#,
            direct = postgres.port(),
            pooled = pooler.port(),
        ),
        &[],
    );
    let direct = run_probe(&config, "direct").await;
    assert_failed(&direct, ErrorClass::NotFound);
    assert_eq!(
        direct.message,
        "database not found: database \"nosuchdb\" does not exist (SQLSTATE 3D000)"
    );
    let pooled = run_probe(&config, "pooled").await;
    assert_failed(&pooled, ErrorClass::NotFound);
    assert!(
        pooled.message.starts_with("database not found: "),
        "{}",
        pooled.message
    );
}

/// Twenty runs at once through PgBouncer in transaction mode (5 server connections) all succeed,
/// including the goose check's second query: the probe never uses named prepared statements,
/// which is what breaks tokio-postgres's `query()` behind a transaction pooler.
#[tokio::test]
async fn twenty_concurrent_runs_through_pgbouncer_succeed() {
    init();
    let postgres = Postgres::start();
    postgres.psql(GOOSE_TABLE);
    postgres.psql("INSERT INTO goose_db_version (version_id, is_applied) VALUES (1, true)");
    let pooler = PgBouncer::start(&postgres);
    let config = load_config(
        &format!(
            r#"
[[probe]]
name = "db-pooler"
kind = "postgres"
host = "127.0.0.1"
port = {port}
user = "{USER}"
password = "{PASSWORD}"
dbname = "{DATABASE}"
sslmode = "require"
ca_file = "{ca}"
query = "SELECT count(*) FROM pg_stat_activity"
schema = "goose"
timeout = "10s"
"#,
            port = pooler.port(),
            ca = postgres.ca_file().display(),
        ),
        &[],
    );
    let probe = config.probes[0].probe.clone();
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..20 {
        runs.spawn(honeyguide::probe::execute(
            probe.clone(),
            Duration::from_secs(10),
        ));
    }
    let mut succeeded = 0;
    while let Some(result) = runs.join_next().await {
        let result = result.unwrap();
        assert!(result.ok, "{result:?}\n{}", pooler.log());
        assert_eq!(result.observation("goose_version"), Some(&Value::Int(1)));
        succeeded += 1;
    }
    assert_eq!(succeeded, 20);
}

const GOOSE_TABLE: &str = "CREATE TABLE goose_db_version (\
    id integer PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, \
    version_id bigint NOT NULL, \
    is_applied boolean NOT NULL, \
    tstamp timestamp NOT NULL DEFAULT now())";

/// The "schema precondition failed" and "migrate job failed" entries, step by step on one
/// database: the goose table missing, then its latest row rolled back, then a version older than
/// expected are each class `schema` with a message saying what to do; once migrated, the probe
/// passes and reports `goose_version` and `goose_applied`, and the version metric.
#[tokio::test]
async fn goose_schema_precondition() {
    init();
    let postgres = Postgres::start();
    let config = load_config(
        &format!(
            r#"
[[probe]]
name = "db-direct"
kind = "postgres"
host = "127.0.0.1"
port = {port}
user = "{USER}"
password = "{PASSWORD}"
dbname = "{DATABASE}"
sslmode = "disable"
schema = "goose"
expect_version_at_least = 20240301
"#,
            port = postgres.port(),
        ),
        &[],
    );

    let missing = run_probe(&config, "db-direct").await;
    assert_failed(&missing, ErrorClass::Schema);
    assert_eq!(
        missing.message,
        "goose table goose_db_version does not exist: migrations never ran against this database"
    );
    assert_eq!(missing.observation("goose_version"), Some(&Value::Null));
    assert_eq!(
        missing.phases.last().map(|(phase, _)| *phase),
        Some("schema")
    );

    // goose creates the table with version 0, then applies two migrations; the third was rolled
    // back by a pre-3.5 goose, which recorded it as a new row with is_applied = false.
    postgres.psql(GOOSE_TABLE);
    postgres.psql(
        "INSERT INTO goose_db_version (version_id, is_applied) VALUES \
         (0, true), (20240101, true), (20240201, true), (20240301, true), (20240301, false)",
    );
    let rolled_back = run_probe(&config, "db-direct").await;
    assert_failed(&rolled_back, ErrorClass::Schema);
    assert_eq!(
        rolled_back.message,
        "latest row of goose_db_version (version 20240301) has is_applied = false: \
         that migration was rolled back; run the migrate job"
    );
    assert_eq!(
        rolled_back.observation("goose_applied"),
        Some(&Value::Bool(false))
    );
    assert_eq!(
        rolled_back.observation("goose_version"),
        Some(&Value::Int(20240201))
    );

    // Current goose deletes the row on down: the latest row is applied again but too old.
    postgres.psql("DELETE FROM goose_db_version WHERE version_id = 20240301");
    let too_old = run_probe(&config, "db-direct").await;
    assert_failed(&too_old, ErrorClass::Schema);
    assert_eq!(
        too_old.message,
        "schema version 20240201 is older than the expected 20240301: \
         the migrate job has not run for this release"
    );
    assert_eq!(
        too_old.observation("goose_applied"),
        Some(&Value::Bool(true))
    );

    postgres.psql("INSERT INTO goose_db_version (version_id, is_applied) VALUES (20240301, true)");
    let migrated = run_probe(&config, "db-direct").await;
    assert!(migrated.ok, "{migrated:?}");
    assert_eq!(
        migrated.observation("goose_version"),
        Some(&Value::Int(20240301))
    );
    assert_eq!(
        migrated.observation("goose_applied"),
        Some(&Value::Bool(true))
    );
    assert!(
        migrated.message.ends_with(", goose version 20240301"),
        "{}",
        migrated.message
    );
    let metrics = kind_metrics(&config, &[("db-direct", &migrated)]);
    assert!(
        metrics.contains(
            "# TYPE probe_postgres_goose_version gauge\n\
             probe_postgres_goose_version{probe=\"db-direct\"} 20240301\n"
        ),
        "{metrics}"
    );
}
