//! Redis, Asynq and Postgres probes pointed at something that does not speak their protocol: an
//! HTTP server (the classic wrong port or wrong Service) and a server that answers garbage with
//! control characters and keeps the connection open. Each must fail as `protocol`, in one line
//! a person can read (no parser dump, no raw newline or escape sequence), and the Postgres probe
//! must say so at once instead of waiting for its whole timeout.

use std::time::Duration;

use honeyguide::probe::{ErrorClass, ProbeResult};

use crate::support::http_server::{HttpServer, RawBehaviour, RawServer, Route};
use crate::support::probes::{load, run_named};
use crate::support::{TempDir, init};

/// What the garbage server answers: an ANSI colour sequence, CR/LF and a NUL, so that a message
/// quoting it raw would break a terminal, a log line and the `check` table.
const GARBAGE: &[u8] = b"\x1b[31mHELLO\r\nnot a protocol\x00\n";

/// The Postgres probes' timeout: long, so that waiting for it would show in the run's duration.
const POSTGRES_TIMEOUT: Duration = Duration::from_secs(20);

async fn http_server() -> HttpServer {
    HttpServer::builder()
        .route("/", Route::ok("hello"))
        .start()
        .await
}

async fn garbage_server() -> RawServer {
    RawServer::start(RawBehaviour::ReplyAndHold(GARBAGE.to_vec())).await
}

/// One probe of each kind at `address` (`host:port`).
fn probes_toml(address: &str) -> String {
    let (host, port) = address.rsplit_once(':').unwrap();
    format!(
        r#"
[[probe]]
name = "redis"
kind = "redis"
address = "{address}"
timeout = "5s"

[[probe]]
name = "asynq"
kind = "asynq"
redis = {{ address = "{address}" }}
timeout = "5s"

[[probe]]
name = "pg-prefer"
kind = "postgres"
host = "{host}"
port = {port}
user = "probe"
dbname = "app"
timeout = "20s"

[[probe]]
name = "pg-disable"
kind = "postgres"
host = "{host}"
port = {port}
user = "probe"
dbname = "app"
sslmode = "disable"
timeout = "20s"
"#
    )
}

/// A message fit for one line of a log or a table: no control character at all.
fn assert_one_line(result: &ProbeResult) {
    assert!(
        !result.message.chars().any(char::is_control),
        "a raw control character in {:?}",
        result.message
    );
    assert!(
        result.message.chars().count() <= 512,
        "unbounded: {:?}",
        result.message
    );
}

fn assert_protocol(result: &ProbeResult, starts_with: &str) {
    assert!(!result.ok, "{result:?}");
    assert_eq!(
        result.error,
        Some(ErrorClass::Protocol),
        "{}",
        result.message
    );
    assert!(
        result.message.starts_with(starts_with),
        "expected `{starts_with}…`, got {:?}",
        result.message
    );
    assert_one_line(result);
}

/// A Postgres probe at the wrong server fails well before its timeout: in the run's own time,
/// not the test's wall clock, and far below the 20 s it could have waited.
fn assert_fast(result: &ProbeResult) {
    assert!(
        result.duration < POSTGRES_TIMEOUT / 4,
        "took {:?} of its {POSTGRES_TIMEOUT:?} timeout: {}",
        result.duration,
        result.message
    );
}

/// An HTTP server on the Redis port: `protocol`, "not a Redis reply" with the start of what it
/// said, escaped, on one line; the same for the Asynq probe, which reads Redis the same way.
#[tokio::test]
async fn redis_and_asynq_at_an_http_server_say_it_is_not_redis() {
    init();
    let server = http_server().await;
    let config = load("", &probes_toml(&server.addr().to_string()));

    for name in ["redis", "asynq"] {
        let result = run_named(&config, name).await;
        assert_protocol(&result, "connection setup: not a Redis reply: ");
        assert!(
            result.message.contains("\"HTTP/1.1 400 Bad Request\\r\\n"),
            "{name}: the excerpt names what answered: {}",
            result.message
        );
        assert!(!result.message.contains("Unexpected"), "{}", result.message);
    }
}

/// Garbage with control characters on the Redis port: the excerpt shows them escaped (`\x1b`,
/// `\r\n`, `\x00`), never raw.
#[tokio::test]
async fn redis_at_a_garbage_server_quotes_it_escaped() {
    init();
    let server = garbage_server().await;
    let config = load("", &probes_toml(&server.addr().to_string()));

    for name in ["redis", "asynq"] {
        let result = run_named(&config, name).await;
        assert_protocol(&result, "connection setup: not a Redis reply: ");
        assert!(
            result
                .message
                .contains(r#""\x1b[31mHELLO\r\nnot a protocol\x00\n""#),
            "{name}: {}",
            result.message
        );
    }
}

/// An HTTP server on the Postgres port, with and without the TLS request: `protocol` at once,
/// with what the server said instead.
#[tokio::test]
async fn postgres_at_an_http_server_fails_fast() {
    init();
    let server = http_server().await;
    let config = load("", &probes_toml(&server.addr().to_string()));

    for name in ["pg-prefer", "pg-disable"] {
        let result = run_named(&config, name).await;
        assert_protocol(&result, "not a Postgres server: it answered \"HTTP/1.1 400");
        assert_fast(&result);
    }
}

/// A server that answers garbage and keeps the connection open: the Postgres probe does not
/// wait for the rest of a "message" that never comes.
#[tokio::test]
async fn postgres_at_a_garbage_server_fails_fast() {
    init();
    let server = garbage_server().await;
    let config = load("", &probes_toml(&server.addr().to_string()));

    for name in ["pg-prefer", "pg-disable"] {
        let result = run_named(&config, name).await;
        assert_protocol(
            &result,
            r#"not a Postgres server: it answered "\x1b[31mHELLO\r\nnot a protocol\x00\n""#,
        );
        assert_fast(&result);
    }
}

/// `honeyguide check` against the wrong servers prints one line per probe: the header and four
/// rows, each naming `protocol`, and nothing else.
#[tokio::test]
async fn the_check_table_stays_one_line_per_probe() {
    init();
    let server = garbage_server().await;
    let dir = TempDir::new("check-wrong-server");
    std::fs::write(
        dir.path().join("probes.toml"),
        probes_toml(&server.addr().to_string()),
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_honeyguide"))
        .arg("check")
        .current_dir(dir.path())
        .env_remove("HONEYGUIDE_LOG")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "a header and four rows:\n{stdout}");
    assert!(lines[0].starts_with("PROBE"), "{stdout}");
    for (line, name) in lines[1..]
        .iter()
        .zip(["redis", "asynq", "pg-prefer", "pg-disable"])
    {
        assert!(line.starts_with(name), "{stdout}");
        assert!(
            line.contains(" FAIL  ") && line.contains(" protocol "),
            "{line}"
        );
    }
    assert!(
        !stdout.contains('\x1b') && !stdout.contains('\r') && !stdout.contains('\0'),
        "{stdout:?}"
    );
}
