//! The `s3` probe against a real s3s-fs: an existing object and bucket, a wrong secret, an
//! unknown key ID, a missing object, a stopped server; plus B2 region derivation and config
//! errors.

use std::time::Duration;

use honeyguide::probe::{ErrorClass, Value};

use crate::support::probes::{errors, load, metrics, run_loaded, run_one};
use crate::support::s3::{ACCESS_KEY_ID, S3Server, SECRET_ACCESS_KEY};
use crate::support::{TempDir, init};

const BUCKET: &str = "honeydue-media";
const CANARY: &str = "healthcheck/canary.txt";

fn s3_toml(endpoint: &str, key: Option<&str>, key_id: &str, secret: &str) -> String {
    let key = key
        .map(|key| format!("key = \"{key}\"\n"))
        .unwrap_or_default();
    format!(
        "[[probe]]\nname = \"b2-test\"\nkind = \"s3\"\ntimeout = \"5s\"\n\
         endpoint = \"{endpoint}\"\nregion = \"us-west-004\"\nbucket = \"{BUCKET}\"\n{key}\
         access_key_id = \"{key_id}\"\nsecret_access_key = \"{secret}\"\n"
    )
}

fn server_with_canary() -> S3Server {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    server.put_object(BUCKET, CANARY, b"ok\n");
    server
}

/// With the right keys, the signed HEAD of the canary object passes, reporting its size and
/// status; the status is exported like blackbox's.
#[tokio::test]
async fn correct_keys_find_the_canary_object() {
    init();
    let server = server_with_canary();
    let dir = TempDir::new("s3");
    let toml = s3_toml(
        &server.endpoint,
        Some(CANARY),
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
    );
    let config = load(dir.path(), &toml);
    let result = run_loaded(&config, 0, Duration::from_secs(5)).await;

    assert!(result.ok, "{result:?}");
    assert_eq!(
        result.message,
        format!("HEAD s3://{BUCKET}/{CANARY}: 200 OK, 3 bytes")
    );
    assert_eq!(result.observations["status"], Value::Int(200));
    assert_eq!(result.observations["content_length"], Value::Int(3));
    // B2 and AWS send `x-amz-request-id`; s3s-fs sends none, so the key is there but null.
    assert_eq!(result.observations["request_id"], Value::Null);
    let text = metrics(&config, &result);
    assert!(
        text.contains("probe_http_status_code{probe=\"b2-test\"} 200\n"),
        "{text}"
    );

    // Without a key, the bucket itself is checked.
    let toml = s3_toml(&server.endpoint, None, ACCESS_KEY_ID, SECRET_ACCESS_KEY);
    let result = run_one(dir.path(), &toml).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(result.message, format!("HEAD s3://{BUCKET}: 200 OK"));
}

/// A wrong secret (SignatureDoesNotMatch) and an unknown key ID are both `auth` with 403; the
/// secret appears nowhere in the result.
#[tokio::test]
async fn wrong_secret_or_unknown_key_is_an_auth_failure() {
    init();
    let server = server_with_canary();
    let dir = TempDir::new("s3");
    let toml = s3_toml(
        &server.endpoint,
        Some(CANARY),
        ACCESS_KEY_ID,
        "K004-not-the-secret",
    );
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Auth), "{result:?}");
    assert_eq!(result.observations["status"], Value::Int(403));
    assert_eq!(
        result.message,
        format!(
            "HEAD s3://{BUCKET}/{CANARY}: 403 Forbidden: credentials refused \
             (SignatureDoesNotMatch, InvalidAccessKeyId, a key without access to the bucket, \
             or a clock off by more than 15 minutes)"
        )
    );
    assert!(!format!("{result:?}").contains("not-the-secret"));

    let toml = s3_toml(
        &server.endpoint,
        Some(CANARY),
        "004unknownkey",
        SECRET_ACCESS_KEY,
    );
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Auth), "{result:?}");

    // Empty credentials (the `${VAR:-}` defaults) send an unsigned request, and say so.
    let toml = s3_toml(&server.endpoint, Some(CANARY), "", "");
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Auth), "{result:?}");
    assert_eq!(
        result.message,
        format!(
            "HEAD s3://{BUCKET}/{CANARY}: 403 Forbidden: the request is unsigned (no \
             credentials configured) and access was denied"
        )
    );
}

/// A frozen store (SIGSTOP) ends in the runner's `timeout` during the request.
#[tokio::test]
async fn a_hung_store_times_out_during_the_request() {
    init();
    let server = server_with_canary();
    server.pause();
    let dir = TempDir::new("s3");
    let toml = s3_toml(
        &server.endpoint,
        Some(CANARY),
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
    )
    .replace("timeout = \"5s\"", "timeout = \"1s\"");
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Timeout), "{result:?}");
    assert_eq!(result.message, "timed out after 1s during request");
}

/// A storage service answering 5xx is `http_status`, with the request id it gave.
#[tokio::test]
async fn server_errors_are_http_status_failures() {
    init();
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [("x-amz-request-id", "b2-req-4f1c")],
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = TempDir::new("s3");
    let toml = s3_toml(
        &format!("http://{addr}"),
        Some(CANARY),
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
    );
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::HttpStatus), "{result:?}");
    assert_eq!(
        result.message,
        format!(
            "HEAD s3://{BUCKET}/{CANARY}: 503 Service Unavailable: the storage service is failing"
        )
    );
    assert_eq!(result.observations["status"], Value::Int(503));
    assert_eq!(
        result.observations["request_id"],
        Value::from("b2-req-4f1c")
    );
    server.abort();
}

/// A missing object is `not_found` with 404.
#[tokio::test]
async fn missing_object_is_not_found() {
    init();
    let server = server_with_canary();
    let dir = TempDir::new("s3");
    let toml = s3_toml(
        &server.endpoint,
        Some("healthcheck/gone.txt"),
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
    );
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::NotFound), "{result:?}");
    assert_eq!(result.observations["status"], Value::Int(404));
    assert_eq!(
        result.message,
        format!(
            "HEAD s3://{BUCKET}/healthcheck/gone.txt: 404 Not Found: no such object (or bucket)"
        )
    );
}

/// A stopped server is `connect`, with no status observed.
#[tokio::test]
async fn stopped_server_is_a_connect_failure() {
    init();
    let mut server = server_with_canary();
    let endpoint = server.endpoint.clone();
    server.stop();
    let dir = TempDir::new("s3");
    let toml = s3_toml(&endpoint, Some(CANARY), ACCESS_KEY_ID, SECRET_ACCESS_KEY);
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Connect), "{result:?}");
    assert_eq!(
        result.message,
        format!("HEAD s3://{BUCKET}/{CANARY}: cannot connect: Connection refused (os error 111)")
    );
    assert_eq!(result.observations["status"], Value::Null);
}

/// A B2 endpoint needs no `region` (it is in the host name), and its target names the object,
/// never the keys.
#[test]
fn b2_endpoints_derive_their_region() {
    let dir = TempDir::new("s3");
    let text = "[[probe]]\nname = \"b2\"\nkind = \"s3\"\n\
                endpoint = \"https://s3.us-west-004.backblazeb2.com\"\nbucket = \"honeydue\"\n\
                key = \"canary.txt\"\naccess_key_id = \"004abc\"\nsecret_access_key = \"K004xyz\"\n";
    let config = load(dir.path(), text);
    assert_eq!(
        config.probes[0].probe.target(),
        "s3://honeydue/canary.txt at https://s3.us-west-004.backblazeb2.com/honeydue/"
    );
    assert!(!format!("{config:?}").contains("K004xyz"));
}

/// Bad values are load errors located at the key.
#[test]
fn bad_values_are_located_config_errors() {
    let dir = TempDir::new("s3");
    let path = dir.path().join("probes.toml");
    let path = path.display();
    let text = "[[probe]]\nname = \"b2\"\nkind = \"s3\"\nendpoint = \"https://minio.internal\"\n\
                bucket = \"media\"\naccess_key_id = \"abc\"\n";
    assert_eq!(
        errors(dir.path(), text),
        format!(
            "{path}:1:1: probe[b2].region: required (only derived for Backblaze B2 endpoints, \
             s3.<region>.backblazeb2.com)\n\
             {path}:6:17: probe[b2].access_key_id: `access_key_id` is set but \
             `secret_access_key` (or `secret_access_key_file`) is empty or missing"
        )
    );
    let text = "[[probe]]\nname = \"b2\"\nkind = \"s3\"\n\
                endpoint = \"https://s3.us-west-004.backblazeb2.com\"\nregion = \"us-east-005\"\n\
                bucket = \"media\"\n";
    assert_eq!(
        errors(dir.path(), text),
        format!(
            "{path}:5:10: probe[b2].region: `us-east-005` does not match the endpoint's region \
             `us-west-004`; B2 signs with the region in its host name"
        )
    );
}
