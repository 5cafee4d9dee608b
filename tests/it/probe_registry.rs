//! The `registry` probe against a real docker-registry with token auth (and its token server),
//! with htpasswd Basic auth, and without auth; plus an in-process server whose 401 carries no
//! challenge, and config errors.

use std::time::Duration;

use honeyguide::probe::{ErrorClass, Value};

use crate::support::probes::{errors, load, metrics, run_loaded, run_one};
use crate::support::registry::{Auth, PASSWORD, Registry, USER};
use crate::support::{TempDir, init};

fn registry_toml(url: &str, extra: &str) -> String {
    format!(
        "[[probe]]\nname = \"registry-test\"\nkind = \"registry\"\ntimeout = \"5s\"\n\
         url = \"{url}\"\n{extra}\n"
    )
}

fn credentials(password: &str) -> String {
    format!("username = \"{USER}\"\npassword = \"{password}\"")
}

/// Without credentials, the anonymous `401` with a Bearer challenge counts as "up": the
/// registry is answering and asking for a token, which is all an anonymous check can know.
#[tokio::test]
async fn anonymous_bearer_challenge_counts_as_up() {
    init();
    let registry = Registry::start(Auth::Token);
    let dir = TempDir::new("registry");
    let config = load(dir.path(), &registry_toml(&registry.url, ""));
    let result = run_loaded(&config, 0, Duration::from_secs(5)).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(
        result.message,
        "GET /v2/: 401 with a bearer challenge (up; no credentials to check)"
    );
    assert_eq!(result.observations["status"], Value::Int(401));
    assert_eq!(result.observations["auth_scheme"], Value::from("bearer"));
    assert_eq!(result.observations["token_seconds"], Value::Null);
    assert_eq!(result.observations["manifest_digest"], Value::Null);
    let text = metrics(&config, &result);
    assert!(
        text.contains("probe_http_status_code{probe=\"registry-test\"} 401\n"),
        "{text}"
    );
}

/// With credentials, the token flow runs and the HEAD of an image pushed by the test returns
/// its digest; the token time is observed and exported.
#[tokio::test]
async fn credentials_fetch_a_token_and_find_the_pushed_manifest() {
    init();
    let registry = Registry::start(Auth::Token);
    let digest = registry.push_image("honeydue/api", "v1").await;
    let dir = TempDir::new("registry");
    let toml = registry_toml(
        &registry.url,
        &format!(
            "{}\nrepository = \"honeydue/api\"\nreference = \"v1\"",
            credentials(PASSWORD)
        ),
    );
    let config = load(dir.path(), &toml);
    let result = run_loaded(&config, 0, Duration::from_secs(5)).await;

    assert!(result.ok, "{result:?}");
    assert_eq!(
        result.message,
        format!("HEAD manifest honeydue/api:v1: 200 {digest}")
    );
    assert_eq!(result.observations["manifest_digest"], Value::from(digest));
    assert_eq!(result.observations["auth_scheme"], Value::from("bearer"));
    let token_seconds = result.observations["token_seconds"].as_f64().unwrap();
    assert!(token_seconds > 0.0);
    let phases: Vec<&str> = result.phases.iter().map(|(name, _)| *name).collect();
    assert_eq!(phases, ["resolve", "ping", "token", "manifest"]);
    let text = metrics(&config, &result);
    assert!(
        text.contains(&format!(
            "honeyguide_registry_token_seconds{{probe=\"registry-test\"}} {token_seconds}\n"
        )),
        "{text}"
    );

    // Credentials without a manifest are proven by an authenticated GET /v2/.
    let toml = registry_toml(&registry.url, &credentials(PASSWORD));
    let result = run_one(dir.path(), &toml).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(
        result.message,
        "GET /v2/: 401 then 200 with credentials (bearer)"
    );
}

/// A tag that does not exist is `not_found`.
#[tokio::test]
async fn missing_tag_is_not_found() {
    init();
    let registry = Registry::start(Auth::Token);
    registry.push_image("honeydue/api", "v1").await;
    let dir = TempDir::new("registry");
    let toml = registry_toml(
        &registry.url,
        &format!(
            "{}\nrepository = \"honeydue/api\"\nreference = \"v2\"",
            credentials(PASSWORD)
        ),
    );
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::NotFound), "{result:?}");
    assert_eq!(
        result.message,
        "HEAD manifest honeydue/api:v2: 404, no such manifest (or repository)"
    );
    assert_eq!(result.observations["manifest_status"], Value::Int(404));
}

/// A wrong password is refused by the token endpoint: `auth`, and the password is not shown.
#[tokio::test]
async fn wrong_password_is_an_auth_failure() {
    init();
    let registry = Registry::start(Auth::Token);
    let dir = TempDir::new("registry");
    let toml = registry_toml(
        &registry.url,
        &format!(
            "{}\nrepository = \"honeydue/api\"",
            credentials("wrong-registry-password")
        ),
    );
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Auth), "{result:?}");
    assert_eq!(
        result.message,
        "token: 401 Unauthorized: credentials refused"
    );
    assert!(!format!("{result:?}").contains("wrong-registry-password"));
}

/// A stopped registry is `connect`; a registry whose token server is down fails at the token
/// step as `connect` too, with the step named.
#[tokio::test]
async fn stopped_registry_or_token_server_is_a_connect_failure() {
    init();
    let mut registry = Registry::start(Auth::Token);
    let dir = TempDir::new("registry");
    let toml = registry_toml(&registry.url, &credentials(PASSWORD));

    registry.stop_token_server();
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Connect), "{result:?}");
    assert_eq!(
        result.message,
        "token: cannot connect: Connection refused (os error 111)"
    );
    assert_eq!(result.observations["status"], Value::Int(401));

    registry.stop();
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Connect), "{result:?}");
    assert_eq!(
        result.message,
        "GET /v2/: cannot connect: Connection refused (os error 111)"
    );
    assert_eq!(result.observations["status"], Value::Null);
}

/// A frozen registry (SIGSTOP) ends in the runner's `timeout` during the `/v2/` request.
#[tokio::test]
async fn a_hung_registry_times_out_during_ping() {
    init();
    let registry = Registry::start(Auth::Token);
    registry.pause();
    let dir = TempDir::new("registry");
    let toml = registry_toml(&registry.url, "").replace("timeout = \"5s\"", "timeout = \"1s\"");
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Timeout), "{result:?}");
    assert_eq!(result.message, "timed out after 1s during ping");
}

/// htpasswd registries use Basic auth directly: the manifest is found with the right password,
/// and a wrong one is `auth`.
#[tokio::test]
async fn basic_auth_registry_checks_credentials_directly() {
    init();
    let registry = Registry::start(Auth::Htpasswd);
    let digest = registry.push_image("honeydue/worker", "latest").await;
    let dir = TempDir::new("registry");
    let good = registry_toml(
        &registry.url,
        &format!(
            "{}\nrepository = \"honeydue/worker\"",
            credentials(PASSWORD)
        ),
    );
    let result = run_one(dir.path(), &good).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(result.observations["auth_scheme"], Value::from("basic"));
    assert_eq!(result.observations["manifest_digest"], Value::from(digest));
    assert_eq!(result.observations["token_seconds"], Value::Null);

    let bad = registry_toml(
        &registry.url,
        &format!("{}\nrepository = \"honeydue/worker\"", credentials("nope")),
    );
    let result = run_one(dir.path(), &bad).await;
    assert_eq!(result.error, Some(ErrorClass::Auth), "{result:?}");
    assert_eq!(
        result.message,
        "HEAD manifest honeydue/worker:latest: 401 Unauthorized: not allowed to pull"
    );
}

/// A registry without auth answers `/v2/` with 200 (`auth_scheme = "none"`), and manifests are
/// checked anonymously.
#[tokio::test]
async fn open_registry_needs_no_credentials() {
    init();
    let registry = Registry::start(Auth::None);
    let digest = registry.push_image("library/tiny", "1.0").await;
    let dir = TempDir::new("registry");
    let result = run_one(
        dir.path(),
        &registry_toml(
            &registry.url,
            "repository = \"library/tiny\"\nreference = \"1.0\"",
        ),
    )
    .await;
    assert!(result.ok, "{result:?}");
    assert_eq!(result.observations["status"], Value::Int(200));
    assert_eq!(result.observations["auth_scheme"], Value::from("none"));
    assert_eq!(result.observations["manifest_digest"], Value::from(digest));
}

/// A 401 without any challenge cannot be answered: `protocol`. A 404 on `/v2/` is not a
/// registry: `http_status`.
#[tokio::test]
async fn a_401_without_challenge_is_a_protocol_error() {
    init();
    let app = axum::Router::new()
        .route(
            "/v2/",
            axum::routing::get(|| async { axum::http::StatusCode::UNAUTHORIZED }),
        )
        .fallback(|| async { axum::http::StatusCode::NOT_FOUND });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = TempDir::new("registry");

    let result = run_one(dir.path(), &registry_toml(&format!("http://{addr}"), "")).await;
    assert_eq!(result.error, Some(ErrorClass::Protocol), "{result:?}");
    assert_eq!(
        result.message,
        "GET /v2/: 401 without a usable WWW-Authenticate challenge (Bearer or Basic)"
    );

    let result = run_one(
        dir.path(),
        &registry_toml(&format!("http://{addr}/not-a-registry"), ""),
    )
    .await;
    assert_eq!(result.error, Some(ErrorClass::HttpStatus), "{result:?}");
    assert_eq!(
        result.message,
        "GET /v2/: 404 Not Found, expected 200 or 401 (is this an OCI registry?)"
    );
    server.abort();
}

/// Over HTTPS, the registry's certificate is verified: trusted through `ca_file` the probe
/// passes, against the system roots it is a `tls` failure naming the reason.
#[tokio::test]
async fn https_registry_certificates_are_verified() {
    init();
    let registry = Registry::start_tls(Auth::Token);
    let dir = TempDir::new("registry");
    let ca_file = registry.ca_file.clone().unwrap();
    let trusted = registry_toml(
        &registry.url,
        &format!("ca_file = \"{}\"", ca_file.display()),
    );
    let result = run_one(dir.path(), &trusted).await;
    assert!(result.ok, "{result:?}");

    let result = run_one(dir.path(), &registry_toml(&registry.url, "")).await;
    assert_eq!(result.error, Some(ErrorClass::Tls), "{result:?}");
    assert_eq!(
        result.message,
        "GET /v2/: tls: certificate issued by an unknown authority (not in the trusted roots)"
    );
}

/// Bad values are load errors located at the key.
#[test]
fn bad_values_are_located_config_errors() {
    let dir = TempDir::new("registry");
    let path = dir.path().join("probes.toml");
    let path = path.display();
    let text = "[[probe]]\nname = \"r\"\nkind = \"registry\"\n\
                url = \"https://me:pw@git.example.com\"\n\
                repository = \"HoneyDue/API\"\nreference = \"-x\"\n";
    assert_eq!(
        errors(dir.path(), text),
        format!(
            "{path}:4:7: probe[r].url: put credentials in `username` and `password`, not in the URL\n\
             {path}:5:14: probe[r].repository: `HoneyDue/API` is not a repository name \
             (lowercase path segments like \"owner/image\")\n\
             {path}:6:13: probe[r].reference: `-x` is neither a tag nor a `sha256:` digest"
        )
    );
}

/// Empty repository and reference (the `${VAR:-}` defaults of the shipped probes.toml) mean no
/// manifest check, so the file loads without any registry settings.
#[test]
fn empty_repository_means_no_manifest_check() {
    let dir = TempDir::new("registry");
    let text = "[[probe]]\nname = \"r\"\nkind = \"registry\"\nurl = \"https://git.example.com\"\n\
                username = \"\"\npassword = \"\"\nrepository = \"\"\nreference = \"\"\n";
    let config = load(dir.path(), text);
    assert_eq!(
        config.probes[0].probe.target(),
        "https://git.example.com/v2/"
    );
}
