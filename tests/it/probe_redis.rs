//! The `redis` probe against a real redis-server: the "Redis pod died (state lost)" and "Redis at
//! maxmemory / wrong policy" entries of the failure catalog, and refused credentials.

use honeyguide::probe::{ErrorClass, Value};

use crate::support::certs::TestCa;
use crate::support::probes::{assert_series, kind_metrics, load_with_env, phase_names, run_named};
use crate::support::redis::{PASSWORD, Redis};
use crate::support::{TempDir, free_port, init};

fn redis_probe(address: &str, password: &str) -> honeyguide::config::Config {
    load_with_env(
        "",
        &format!(
            r#"
[[probe]]
name = "redis"
kind = "redis"
address = "{address}"
password = "${{REDIS_PASSWORD:-}}"
timeout = "5s"
"#
        ),
        &[("REDIS_PASSWORD", password)],
    )
}

/// A Redis at its memory limit with the `noeviction` policy (the catalog's "wrong policy") is
/// observed as such: policy, limit, ratio, keys, role and clients, with the matching gauges.
#[tokio::test]
async fn memory_limit_and_policy_are_observed() {
    init();
    let redis = Redis::start(&["--maxmemory", "1mb", "--maxmemory-policy", "noeviction"]);
    let mut client = redis.client().await;
    let _: () = redis::cmd("MSET")
        .arg(&["a", "1", "b", "2", "c", "3"])
        .query_async(&mut client)
        .await
        .unwrap();
    let config = redis_probe(&redis.address(), PASSWORD);

    let result = run_named(&config, "redis").await;
    assert!(result.ok, "{result:?}");
    assert_eq!(phase_names(&result), ["connect", "auth", "ping", "info"]);
    let observed = |key: &str| result.observation(key).cloned().unwrap_or(Value::Null);
    assert_eq!(observed("maxmemory_policy"), Value::from("noeviction"));
    assert_eq!(observed("maxmemory"), Value::Int(1024 * 1024));
    assert_eq!(observed("keys"), Value::Int(3));
    assert_eq!(observed("role"), Value::from("master"));
    assert_eq!(observed("restarted"), Value::Bool(false));
    assert_eq!(observed("previous_uptime_seconds"), Value::Null);
    let used = observed("used_memory").as_i64().unwrap();
    assert!(used > 0);
    assert_eq!(
        observed("memory_ratio"),
        Value::Float(used as f64 / (1024.0 * 1024.0))
    );
    // The seeding client and the probe's own connection.
    assert!(observed("connected_clients").as_i64().unwrap() >= 2);
    assert!(observed("ping_seconds").as_f64().unwrap() >= 0.0);
    assert!(
        result.message.contains("3 keys") && result.message.contains("(noeviction)"),
        "{}",
        result.message
    );

    let metrics = kind_metrics(&config, &[("redis", &result)]);
    for line in [
        "# TYPE honeyguide_redis_maxmemory_bytes gauge\nhoneyguide_redis_maxmemory_bytes{probe=\"redis\"} 1048576\n",
        "# TYPE honeyguide_redis_keys gauge\nhoneyguide_redis_keys{probe=\"redis\"} 3\n",
        &format!("honeyguide_redis_used_memory_bytes{{probe=\"redis\"}} {used}\n"),
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }
    for series in [
        "honeyguide_redis_uptime_seconds{probe=\"redis\"}",
        "honeyguide_redis_connected_clients{probe=\"redis\"}",
        "honeyguide_redis_ping_seconds{probe=\"redis\"}",
    ] {
        assert_series(&metrics, series);
    }
}

/// "Redis pod dies": the server is killed and a new, empty one comes up on the same address. The
/// next run says `restarted = true`, with the uptime it had before and `keys = 0`; the run after
/// that is an ordinary one again.
#[tokio::test]
async fn restart_with_empty_keyspace_is_reported() {
    init();
    let mut redis = Redis::start(&[]);
    let port = redis.port();
    let mut client = redis.client().await;
    let _: () = redis::cmd("SET")
        .arg("asynq:queues")
        .arg("x")
        .query_async(&mut client)
        .await
        .unwrap();
    drop(client);
    let config = redis_probe(&redis.address(), PASSWORD);
    let before = run_named(&config, "redis").await;
    assert!(before.ok, "{before:?}");
    assert_eq!(before.observation("keys"), Some(&Value::Int(1)));
    let uptime_before = before.observation("uptime_seconds").cloned().unwrap();

    redis.kill();
    let _redis = Redis::start_on(port, &[]);
    let after = run_named(&config, "redis").await;
    assert!(after.ok, "{after:?}");
    assert_eq!(after.observation("restarted"), Some(&Value::Bool(true)));
    assert_eq!(after.observation("keys"), Some(&Value::Int(0)));
    assert_eq!(
        after.observation("previous_uptime_seconds"),
        Some(&uptime_before)
    );
    assert!(
        after
            .message
            .contains("; restarted since the last run (was up "),
        "{}",
        after.message
    );

    let later = run_named(&config, "redis").await;
    assert_eq!(later.observation("restarted"), Some(&Value::Bool(false)));
}

/// A wrong password and a missing one are both class `auth`, and neither message shows a secret;
/// nothing listening is class `connect`.
#[tokio::test]
async fn refused_credentials_are_auth_and_no_server_is_connect() {
    init();
    let redis = Redis::start(&[]);
    let wrong = run_named(&redis_probe(&redis.address(), "not-the-password"), "redis").await;
    assert!(!wrong.ok);
    assert_eq!(wrong.error, Some(ErrorClass::Auth), "{}", wrong.message);
    assert_eq!(
        wrong.message,
        "authentication failed: the server refused the username or password"
    );
    assert_eq!(wrong.phases.last().map(|(phase, _)| *phase), Some("auth"));
    assert_eq!(wrong.observation("restarted"), Some(&Value::Null));
    assert_eq!(wrong.observation("keys"), Some(&Value::Null));

    let missing = run_named(&redis_probe(&redis.address(), ""), "redis").await;
    assert_eq!(missing.error, Some(ErrorClass::Auth), "{}", missing.message);
    assert_eq!(
        missing.message,
        "authentication failed: the server requires a password and none is configured"
    );

    let nobody = run_named(
        &redis_probe(&format!("127.0.0.1:{}", free_port()), PASSWORD),
        "redis",
    )
    .await;
    assert_eq!(
        nobody.error,
        Some(ErrorClass::Connect),
        "{}",
        nobody.message
    );
    assert!(nobody.message.ends_with(": connection refused"));
}

/// Over TLS (`tls = true` with a private CA) the probe verifies the certificate, adds a `tls`
/// phase, observes the TLS version and the certificate's expiry (exported as
/// `probe_ssl_earliest_cert_expiry`, declared once for every kind), and its target says
/// `rediss://`.
#[tokio::test]
async fn tls_with_a_private_ca() {
    init();
    let ca = TestCa::new();
    let ca_dir = TempDir::new("redis-ca");
    let ca_file = ca.write_pem(ca_dir.path());
    let redis = Redis::start_tls(&ca);
    let config = load_with_env(
        "",
        &format!(
            r#"
[[probe]]
name = "redis-tls"
kind = "redis"
address = "localhost:{port}"
tls = true
ca_file = "{ca}"
password = "{PASSWORD}"
"#,
            port = redis.port(),
            ca = ca_file.display(),
        ),
        &[],
    );
    let result = run_named(&config, "redis-tls").await;
    assert!(result.ok, "{result:?}");
    assert_eq!(
        phase_names(&result),
        ["resolve", "connect", "tls", "auth", "ping", "info"]
    );
    assert_eq!(
        result.observation("tls_version"),
        Some(&Value::from("TLSv1.3"))
    );
    let expiry = result
        .observation("tls_cert_expiry")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no expiry in {result:?}"));
    let metrics = kind_metrics(&config, &[("redis-tls", &result)]);
    assert!(
        metrics.contains(&format!(
            "# HELP probe_ssl_earliest_cert_expiry Earliest notAfter of the certificate chain \
             the server presented (even one that verification rejected), Unix seconds.\n\
             # TYPE probe_ssl_earliest_cert_expiry gauge\n\
             probe_ssl_earliest_cert_expiry{{probe=\"redis-tls\"}} {expiry}\n"
        )),
        "{metrics}"
    );
    assert_eq!(
        config.probes[0].probe.target(),
        format!("rediss://localhost:{}/0", redis.port())
    );
}

/// A hung server (SIGSTOP: connections are accepted by the kernel, nothing answers) is class
/// `timeout`, and the message names the phase the run hung in.
#[tokio::test]
async fn hung_server_times_out_naming_the_phase() {
    init();
    let redis = Redis::start(&[]);
    let config = load_with_env(
        "",
        &format!(
            r#"
[[probe]]
name = "redis"
kind = "redis"
address = "{address}"
password = "{PASSWORD}"
timeout = "500ms"
interval = "1s"
"#,
            address = redis.address()
        ),
        &[],
    );
    redis.pause();
    let result = run_named(&config, "redis").await;
    redis.resume();
    assert_eq!(result.error, Some(ErrorClass::Timeout), "{result:?}");
    assert_eq!(result.message, "timed out after 500ms during auth");
    assert_eq!(
        result.observation("timeout_phase"),
        Some(&Value::from("auth"))
    );
}
