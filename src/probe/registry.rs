//! The `registry` probe kind: an OCI distribution registry (Gitea's container registry, Docker's
//! `registry`, any other) answers `GET /v2/`, hands out tokens, and can find a manifest. It feeds
//! the catalog's "Gitea registry unreachable" entry, the one that leaves rollouts stuck at
//! "Pulling image".
//!
//! One run, all on fresh connections (a [`net::OneShot`] client: built per run, no pool, our
//! resolver):
//! 1. `GET /v2/` without credentials. `200` means up with no auth (`auth_scheme = "none"`); `401`
//!    with a `Bearer` (or `Basic`) challenge also means up: that is how a registry asks for
//!    credentials. Several `WWW-Authenticate` headers are read and the Bearer one is preferred
//!    (older Gitea sends a Basic one beside it).
//! 2. With credentials or a manifest to check, a Bearer registry's token endpoint (the
//!    challenge's `realm`) is asked for a token, with `service` and, for a manifest,
//!    `scope=repository:<repo>:pull`, sending the credentials as Basic auth. A Basic registry
//!    gets the credentials directly.
//! 3. `HEAD /v2/<repo>/manifests/<reference>` with the usual `Accept` list, reading
//!    `Docker-Content-Digest`; or, without a manifest, an authenticated `GET /v2/` to prove the
//!    credentials work.

use std::collections::BTreeMap;
use std::path::PathBuf;

use reqwest::header::{ACCEPT, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use crate::probe::net::{self, OneShot};
use crate::probe::schema::{Field, Gauge, Unit};
use crate::probe::{ErrorClass, Observations, Outcome, ProbeContext, Value, http};
use crate::spec::secret::{self, Credentials};
use crate::spec::{BuildContext, FieldError, FieldErrors, Keep};

/// What a pull accepts, so the registry returns the manifest (or index) a client would get;
/// digests differ between representations, so this list is fixed.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// What a run observes besides the connection's facts (the registry host's addresses, the
/// address that answered the last request, the last certificate's expiry).
pub const OBSERVATIONS: &[Field] = &[
    Field::int(
        "status",
        "the status of the anonymous `GET /v2/`: `200`, or `401` for a registry that wants \
         credentials",
        401,
    )
    .gauge(&http::STATUS_CODE),
    Field::text("auth_scheme", "`bearer`, `basic` or `none`", "bearer"),
    Field::float("token_seconds", "how long the token endpoint took", 0.05)
        .unit(Unit::Seconds)
        .gauge(&Gauge {
            name: "honeyguide_registry_token_seconds",
            help: "How long the registry's token endpoint took to issue a token.",
            null_as: None,
        }),
    Field::int("manifest_status", "the status of the manifest `HEAD`", 200),
    Field::text(
        "manifest_digest",
        "`Docker-Content-Digest` of the manifest",
        "sha256:0123456789abcdef",
    ),
];

// === Spec ===

/// The keys of a `kind = "registry"` probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The registry's base URL, e.g. `https://gitea.example.com` (`/v2/` is appended).
    url: String,
    /// User name for the token endpoint or Basic auth; absent or empty means anonymous.
    username: Option<String>,
    /// Password or access token (usually `${ENV}`); at most one of `password` and `password_file`.
    password: Option<String>,
    /// File holding the password.
    password_file: Option<PathBuf>,
    /// Repository whose manifest must exist, e.g. `honeydue/api`; absent or empty means no
    /// manifest check.
    repository: Option<String>,
    /// Tag (or `sha256:` digest) of that manifest (default `latest`).
    reference: Option<String>,
    /// Verify the server certificate (default true).
    tls_verify: Option<bool>,
    /// CA certificates (PEM) to verify the server with, instead of the system roots.
    ca_file: Option<PathBuf>,
}

impl Spec {
    /// Validates the keys into a runnable probe.
    pub fn build(self, cx: &BuildContext) -> Result<RegistryProbe, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let base = parse_base_url(&self.url).kept_at("url", &mut errors);

        let password =
            secret::resolve("password", self.password, self.password_file.as_deref(), cx)
                .kept(&mut errors)
                .flatten();
        // Empty user name and password (the `${VAR:-}` defaults) mean anonymous.
        let credentials = secret::credentials("username", self.username, "password", password)
            .kept(&mut errors)
            .flatten();

        // Empty values (the `${VAR:-}` defaults) mean "not set", like the credentials.
        let repository = self.repository.filter(|value| !value.trim().is_empty());
        let reference = self.reference.filter(|value| !value.trim().is_empty());
        let manifest = match (repository, reference) {
            (None, None) => None,
            (None, Some(_)) => {
                errors.push(FieldError::new(
                    "reference",
                    "`reference` needs a `repository`",
                ));
                None
            }
            (Some(repository), reference) => {
                let reference = reference.unwrap_or_else(|| "latest".to_owned());
                if !valid_repository(&repository) {
                    errors.push(FieldError::new(
                        "repository",
                        format!(
                            "`{repository}` is not a repository name (lowercase path segments \
                             like \"owner/image\")"
                        ),
                    ));
                }
                if !valid_reference(&reference) {
                    errors.push(FieldError::new(
                        "reference",
                        format!("`{reference}` is neither a tag nor a `sha256:` digest"),
                    ));
                }
                Some(Manifest {
                    repository,
                    reference,
                })
            }
        };

        let tls = net::TlsSettings::from_keys(
            self.tls_verify,
            self.ca_file.as_deref(),
            cx,
            net::ALPN_HTTP,
        )
        .kept(&mut errors);

        match (base, tls) {
            (Some(base), Some(tls)) if errors.is_empty() => Ok(RegistryProbe {
                base,
                credentials,
                manifest,
                resolver: crate::probe::net::Resolver::shared(cx),
                tls,
            }),
            _ => Err(errors.into_vec()),
        }
    }
}

/// The base URL with a trailing slash, so that `v2/` joins under it.
fn parse_base_url(text: &str) -> Result<Url, String> {
    let mut url = net::parse_service_url(text, "`username` and `password`", "")?;
    let mut path = url.path().trim_end_matches('/').to_owned();
    if path.ends_with("/v2") {
        path.truncate(path.len() - 3);
    }
    path.push('/');
    url.set_path(&path);
    Ok(url)
}

/// The OCI name grammar: lowercase components separated by `/`, each `[a-z0-9]+` joined by
/// `.`, `_`, `__` or runs of `-`.
fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|component| {
            let bytes = component.as_bytes();
            let edges_ok = bytes.first().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
            edges_ok
                && component
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && !component.contains("..")
                && !component.contains("___")
        })
}

/// A tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`) or a `sha256:<64 hex>` digest.
fn valid_reference(reference: &str) -> bool {
    if let Some(hex) = reference.strip_prefix("sha256:") {
        return hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    let mut chars = reference.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && reference.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

// === probe ===

/// A built `registry` probe.
#[derive(Debug)]
pub struct RegistryProbe {
    base: Url,
    credentials: Option<Credentials>,
    manifest: Option<Manifest>,
    resolver: net::Resolver,
    tls: net::TlsSettings,
}

#[derive(Debug)]
struct Manifest {
    repository: String,
    reference: String,
}

/// How the registry asked for credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Challenge {
    /// `Bearer realm=...,service=...`: get a token from `realm`.
    Bearer {
        realm: String,
        service: Option<String>,
    },
    /// `Basic realm=...`: send the credentials on every request.
    Basic,
}

/// The authorization the follow-up requests carry.
enum Authorization<'a> {
    None,
    Basic(&'a Credentials),
    Bearer(String),
}

impl Authorization<'_> {
    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Authorization::None => request,
            Authorization::Basic(credentials) => {
                request.basic_auth(&credentials.name, Some(credentials.secret.expose()))
            }
            Authorization::Bearer(token) => request.bearer_auth(token),
        }
    }
}

/// What the run saw; becomes the observations whatever the verdict.
#[derive(Debug, Default)]
struct Seen {
    status: Option<u16>,
    auth_scheme: Option<&'static str>,
    token_seconds: Option<f64>,
    manifest_status: Option<u16>,
    manifest_digest: Option<String>,
}

impl Seen {
    fn observations(self) -> Observations {
        Observations::from([
            ("status".to_owned(), Value::from(self.status)),
            ("auth_scheme".to_owned(), Value::from(self.auth_scheme)),
            ("token_seconds".to_owned(), Value::from(self.token_seconds)),
            (
                "manifest_status".to_owned(),
                Value::from(self.manifest_status),
            ),
            (
                "manifest_digest".to_owned(),
                Value::from(self.manifest_digest),
            ),
        ])
    }
}

impl RegistryProbe {
    /// Makes one attempt: `/v2/`, then the token and manifest as configured.
    pub async fn run(&self, ctx: &ProbeContext) -> Outcome {
        let mut seen = Seen::default();
        let outcome = match self.check(ctx, &mut seen).await {
            Ok(message) => Outcome::success(message),
            Err(outcome) => outcome,
        };
        ctx.end_phase();
        outcome.with_all(seen.observations())
    }

    /// What is probed, for humans: the `/v2/` URL and the manifest, if any.
    pub fn target(&self) -> String {
        let v2 = self.v2_url();
        match &self.manifest {
            Some(manifest) => format!("{v2} ({}:{})", manifest.repository, manifest.reference),
            None => v2.to_string(),
        }
    }

    fn v2_url(&self) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}v2/", self.base.path()));
        url
    }

    fn manifest_url(&self, manifest: &Manifest) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!(
            "{}v2/{}/manifests/{}",
            self.base.path(),
            manifest.repository,
            manifest.reference
        ));
        url
    }

    async fn check(&self, ctx: &ProbeContext, seen: &mut Seen) -> Result<String, Outcome> {
        let client = OneShot::new(ctx, &self.resolver, &self.tls, &self.base).await?;

        ctx.phase("ping");
        let response = client
            .send(ctx, client.client().get(self.v2_url()), "GET /v2/")
            .await?;
        let status = response.status();
        seen.status = Some(status.as_u16());
        let needs_more = self.credentials.is_some() || self.manifest.is_some();
        let authorization = match status {
            StatusCode::OK => {
                seen.auth_scheme = Some("none");
                match &self.credentials {
                    Some(credentials) => Authorization::Basic(credentials),
                    None => Authorization::None,
                }
            }
            StatusCode::UNAUTHORIZED => {
                let challenge = pick_challenge(response.headers())?;
                seen.auth_scheme = Some(match challenge {
                    Challenge::Bearer { .. } => "bearer",
                    Challenge::Basic => "basic",
                });
                if !needs_more {
                    return Ok(format!(
                        "GET /v2/: 401 with a {} challenge (up; no credentials to check)",
                        seen.auth_scheme.unwrap_or_default()
                    ));
                }
                self.authorize(ctx, &client, challenge, seen).await?
            }
            other => {
                return Err(Outcome::failure(
                    ErrorClass::HttpStatus,
                    format!(
                        "GET /v2/: {}, expected 200 or 401 (is this an OCI registry?)",
                        net::describe_status(other)
                    ),
                ));
            }
        };

        match &self.manifest {
            Some(manifest) => {
                self.head_manifest(ctx, &client, manifest, &authorization, seen)
                    .await
            }
            None => self.verify(ctx, &client, &authorization, seen).await,
        }
    }

    /// Turns a challenge into the authorization of the next requests (fetching a token for
    /// Bearer).
    async fn authorize<'a>(
        &'a self,
        ctx: &ProbeContext,
        client: &OneShot,
        challenge: Challenge,
        seen: &mut Seen,
    ) -> Result<Authorization<'a>, Outcome> {
        match challenge {
            Challenge::Basic => match &self.credentials {
                Some(credentials) => Ok(Authorization::Basic(credentials)),
                None => Err(Outcome::failure(
                    ErrorClass::Auth,
                    "the registry asks for Basic credentials and none are configured",
                )),
            },
            Challenge::Bearer { realm, service } => {
                ctx.phase("token");
                let started = Instant::now();
                let token = self
                    .fetch_token(ctx, client, &realm, service.as_deref())
                    .await;
                seen.token_seconds = Some(started.elapsed().as_secs_f64());
                token.map(Authorization::Bearer)
            }
        }
    }

    async fn fetch_token(
        &self,
        ctx: &ProbeContext,
        client: &OneShot,
        realm: &str,
        service: Option<&str>,
    ) -> Result<String, Outcome> {
        let mut url = Url::parse(realm).map_err(|error| {
            Outcome::failure(
                ErrorClass::Protocol,
                format!("token realm `{realm}` is not a URL: {error}"),
            )
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            if let Some(manifest) = &self.manifest {
                query.append_pair("scope", &format!("repository:{}:pull", manifest.repository));
            }
        }
        let mut request = client.client().get(url);
        if let Some(credentials) = &self.credentials {
            request = request.basic_auth(&credentials.name, Some(credentials.secret.expose()));
        }
        let response = client.send(ctx, request, "token").await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Outcome::failure(
                ErrorClass::Auth,
                format!(
                    "token: {}: credentials refused",
                    net::describe_status(status)
                ),
            ));
        }
        if !status.is_success() {
            return Err(Outcome::failure(
                ErrorClass::HttpStatus,
                format!("token: {}", net::describe_status(status)),
            ));
        }
        let body: TokenResponse = response.json().await.map_err(|error| {
            Outcome::failure(
                ErrorClass::Protocol,
                format!("token: response is not token JSON: {}", error.without_url()),
            )
        })?;
        body.token
            .or(body.access_token)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                Outcome::failure(
                    ErrorClass::Protocol,
                    "token: response has neither `token` nor `access_token`",
                )
            })
    }

    /// Without a manifest to check, an authenticated `GET /v2/` proves the credentials.
    async fn verify(
        &self,
        ctx: &ProbeContext,
        client: &OneShot,
        authorization: &Authorization<'_>,
        seen: &Seen,
    ) -> Result<String, Outcome> {
        if matches!(authorization, Authorization::None) {
            return Ok("GET /v2/: 200 (no authentication required)".to_owned());
        }
        ctx.phase("verify");
        let request = authorization.apply(client.client().get(self.v2_url()));
        let response = client
            .send(ctx, request, "GET /v2/ (authenticated)")
            .await?;
        match response.status() {
            StatusCode::OK => Ok(format!(
                "GET /v2/: {} then 200 with credentials ({})",
                seen.status.unwrap_or_default(),
                seen.auth_scheme.unwrap_or_default()
            )),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Outcome::failure(
                ErrorClass::Auth,
                format!(
                    "GET /v2/ (authenticated): {}: credentials refused",
                    net::describe_status(response.status())
                ),
            )),
            other => Err(Outcome::failure(
                ErrorClass::HttpStatus,
                format!("GET /v2/ (authenticated): {}", net::describe_status(other)),
            )),
        }
    }

    async fn head_manifest(
        &self,
        ctx: &ProbeContext,
        client: &OneShot,
        manifest: &Manifest,
        authorization: &Authorization<'_>,
        seen: &mut Seen,
    ) -> Result<String, Outcome> {
        ctx.phase("manifest");
        let what = format!(
            "HEAD manifest {}:{}",
            manifest.repository, manifest.reference
        );
        let request = authorization.apply(
            client
                .client()
                .request(Method::HEAD, self.manifest_url(manifest))
                .header(ACCEPT, MANIFEST_ACCEPT),
        );
        let response = client.send(ctx, request, &what).await?;
        let status = response.status();
        seen.manifest_status = Some(status.as_u16());
        match status {
            StatusCode::OK => {
                let digest = response
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let shown = digest
                    .clone()
                    .unwrap_or_else(|| "no digest header".to_owned());
                seen.manifest_digest = digest;
                Ok(format!("{what}: 200 {shown}"))
            }
            StatusCode::NOT_FOUND => Err(Outcome::failure(
                ErrorClass::NotFound,
                format!("{what}: 404, no such manifest (or repository)"),
            )),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Outcome::failure(
                ErrorClass::Auth,
                format!(
                    "{what}: {}: not allowed to pull",
                    net::describe_status(status)
                ),
            )),
            other => Err(Outcome::failure(
                ErrorClass::HttpStatus,
                format!("{what}: {}", net::describe_status(other)),
            )),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// The challenge to follow: Bearer if any header offers it, else Basic; none (or only garbled
/// ones) is a protocol error, since a 401 without a usable challenge cannot be answered.
fn pick_challenge(headers: &HeaderMap) -> Result<Challenge, Outcome> {
    let challenges: Vec<(String, BTreeMap<String, String>)> = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(parse_challenge)
        .collect();
    if let Some((_, params)) = challenges.iter().find(|(scheme, _)| scheme == "bearer") {
        return match params.get("realm") {
            Some(realm) if !realm.is_empty() => Ok(Challenge::Bearer {
                realm: realm.clone(),
                service: params.get("service").cloned(),
            }),
            _ => Err(Outcome::failure(
                ErrorClass::Protocol,
                "GET /v2/: 401 with a Bearer challenge that has no realm",
            )),
        };
    }
    if challenges.iter().any(|(scheme, _)| scheme == "basic") {
        return Ok(Challenge::Basic);
    }
    Err(Outcome::failure(
        ErrorClass::Protocol,
        "GET /v2/: 401 without a usable WWW-Authenticate challenge (Bearer or Basic)",
    ))
}

/// `Bearer realm="https://x/v2/token",service="container_registry",scope="*"` into the
/// lowercased scheme and its parameters. Quoted values may hold commas and escaped quotes.
fn parse_challenge(header: &str) -> Option<(String, BTreeMap<String, String>)> {
    let header = header.trim();
    let (scheme, rest) = match header.split_once(char::is_whitespace) {
        Some((scheme, rest)) => (scheme, rest),
        None => (header, ""),
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ',' && !c.is_whitespace()) {
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            // A bare token (token68); not used by registries.
            continue;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => {
                        closed = true;
                        break;
                    }
                    other => value.push(other),
                }
            }
            if !closed {
                return None;
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',' && !c.is_whitespace()) {
                value.push(c);
            }
        }
        params.insert(key.to_ascii_lowercase(), value);
    }
    Some((scheme.to_ascii_lowercase(), params))
}

// === metrics ===

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn challenges_parse_with_quoted_commas() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        )
        .unwrap();
        assert_eq!(scheme, "bearer");
        assert_eq!(params["realm"], "https://auth.docker.io/token");
        assert_eq!(params["scope"], "repository:samalba/my-app:pull,push");
        let (scheme, params) =
            parse_challenge(r#"Basic realm="Gitea Container Registry""#).unwrap();
        assert_eq!(scheme, "basic");
        assert_eq!(params["realm"], "Gitea Container Registry");
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
    }

    #[test]
    fn bearer_is_preferred_among_several_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="Gitea Container Registry""#),
        );
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(
                r#"Bearer realm="https://git.example.com/v2/token",service="container_registry",scope="*""#,
            ),
        );
        assert_eq!(
            pick_challenge(&headers).unwrap(),
            Challenge::Bearer {
                realm: "https://git.example.com/v2/token".to_owned(),
                service: Some("container_registry".to_owned()),
            }
        );
        let outcome = pick_challenge(&HeaderMap::new()).unwrap_err();
        assert_eq!(outcome.error, Some(ErrorClass::Protocol));
    }

    #[test]
    fn names_and_references_follow_the_distribution_grammar() {
        assert!(valid_repository("honeydue/api"));
        assert!(valid_repository("a/b-c/d__e.f"));
        assert!(!valid_repository("HoneyDue/api"));
        assert!(!valid_repository("honeydue//api"));
        assert!(valid_reference("v1.2.3"));
        assert!(valid_reference(&format!("sha256:{}", "a".repeat(64))));
        assert!(!valid_reference("-bad"));
        assert!(!valid_reference("sha256:abc"));
    }

    #[test]
    fn base_urls_accept_a_trailing_v2() {
        assert_eq!(
            parse_base_url("https://git.example.com/v2/")
                .unwrap()
                .as_str(),
            "https://git.example.com/"
        );
        assert_eq!(
            parse_base_url("https://git.example.com").unwrap().as_str(),
            "https://git.example.com/"
        );
        assert!(parse_base_url("https://me:pw@git.example.com").is_err());
    }
}
