//! The `s3` probe kind: a SigV4-signed `HEAD` of an object (or of the bucket) on an
//! S3-compatible store, Backblaze B2 first. It feeds the catalog's "Backblaze B2 outage" entry:
//! uploads and uncached downloads fail when this does.
//!
//! The request is signed as a presigned URL (query-string SigV4, valid 60 s) by rusty-s3, which
//! is sans-IO and was checked against s3s-fs; it saves hand-writing canonical requests. The
//! client is a [`net::OneShot`]: built per run, no pool, our resolver. A `HEAD` has no body, so an S3 error code
//! (`SignatureDoesNotMatch`, `InvalidAccessKeyId`, `NoSuchKey`) is only known when the server
//! repeats it in an `x-amz-error-code` header; the status decides the class either way.
//!
//! B2 specifics (`docs/probes/s3.md`): the region is the `<region>` of
//! `s3.<region>.backblazeb2.com` and is derived from it; B2's *master* application key does not
//! work with the S3 API, so the probe needs a normal application key.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use rusty_s3::{Bucket, S3Action, UrlStyle};
use serde::Deserialize;
use url::Url;

use crate::probe::net::{self, OneShot};
use crate::probe::schema::{Field, Unit};
use crate::probe::{ErrorClass, Observations, Outcome, ProbeContext, Value, http};
use crate::spec::secret::{self, Secret};
use crate::spec::{BuildContext, FieldError, FieldErrors, Keep};

/// How long a presigned URL is valid: long enough for clock skew within a run, short enough
/// that a leaked URL is useless.
const SIGNATURE_VALIDITY: Duration = Duration::from_secs(60);

/// What a run observes besides the connection's facts (where the request went, the
/// certificate's expiry).
pub const OBSERVATIONS: &[Field] = &[
    Field::int(
        "status",
        "the HTTP status of the `HEAD`; `null` when no response arrived",
        200,
    )
    .gauge(&http::STATUS_CODE),
    Field::text(
        "request_id",
        "the `x-amz-request-id` response header",
        "4a1b2c3d",
    ),
    Field::int(
        "content_length",
        "the object's size, when `key` is set and the object exists",
        1024,
    )
    .unit(Unit::Bytes),
];

// === Spec ===

/// The keys of a `kind = "s3"` probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The S3 endpoint, e.g. `https://s3.us-west-004.backblazeb2.com`.
    endpoint: String,
    /// SigV4 region; derived from a B2 endpoint (`s3.<region>.backblazeb2.com`), else required.
    region: Option<String>,
    /// The bucket.
    bucket: String,
    /// Object to `HEAD` (a canary); without it the bucket itself is checked (HeadBucket).
    key: Option<String>,
    /// Access key ID (B2: the application key's keyID). Empty with an empty secret means an
    /// unsigned request (a public bucket).
    access_key_id: Option<String>,
    /// Secret access key (B2: the application key); at most one of this and `_file`.
    secret_access_key: Option<String>,
    /// File holding the secret access key.
    secret_access_key_file: Option<PathBuf>,
    /// Path-style URLs (`endpoint/bucket/key`, default true) or virtual-host style
    /// (`bucket.endpoint/key`).
    path_style: Option<bool>,
    /// Verify the server certificate (default true).
    tls_verify: Option<bool>,
    /// CA certificates (PEM) to verify the server with, instead of the system roots.
    ca_file: Option<PathBuf>,
}

impl Spec {
    /// Validates the keys into a runnable probe.
    pub fn build(self, cx: &BuildContext) -> Result<S3Probe, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let endpoint = parse_endpoint(&self.endpoint).kept_at("endpoint", &mut errors);
        let region = endpoint.as_ref().and_then(|endpoint| {
            choose_region(endpoint, self.region).kept_at("region", &mut errors)
        });

        let bucket_name = self.bucket.trim().to_owned();
        if bucket_name.is_empty() || bucket_name.contains('/') {
            errors.push(FieldError::new(
                "bucket",
                format!("`{bucket_name}` is not a bucket name"),
            ));
        }
        if self.key.as_deref() == Some("") {
            errors.push(FieldError::new(
                "key",
                "must not be empty; leave it out to check the bucket itself",
            ));
        }

        let secret = secret::resolve(
            "secret_access_key",
            self.secret_access_key,
            self.secret_access_key_file.as_deref(),
            cx,
        )
        .kept(&mut errors)
        .flatten();
        let key_id = self.access_key_id.map(|key_id| key_id.trim().to_owned());
        // Empty key ID and secret (the `${VAR:-}` defaults) mean an unsigned request.
        let credentials = secret::credentials("access_key_id", key_id, "secret_access_key", secret)
            .kept(&mut errors)
            .flatten()
            .map(|pair| Credentials {
                key_id: Secret::new(pair.name),
                secret: pair.secret,
            });

        let style = if self.path_style.unwrap_or(true) {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = match (&endpoint, &region) {
            (Some(endpoint), Some(region)) if !bucket_name.is_empty() => {
                Bucket::new(endpoint.clone(), style, bucket_name.clone(), region.clone())
                    .map_err(|error| {
                        errors.push(FieldError::new(
                            "bucket",
                            format!("cannot address bucket `{bucket_name}`: {error:?}"),
                        ));
                    })
                    .ok()
            }
            _ => None,
        };

        let tls = net::TlsSettings::from_keys(
            self.tls_verify,
            self.ca_file.as_deref(),
            cx,
            net::ALPN_HTTP,
        )
        .kept(&mut errors);

        match (bucket, tls) {
            (Some(bucket), Some(tls)) if errors.is_empty() => Ok(S3Probe {
                bucket,
                key: self.key,
                credentials,
                resolver: crate::probe::net::Resolver::shared(cx),
                tls,
            }),
            _ => Err(errors.into_vec()),
        }
    }
}

fn parse_endpoint(text: &str) -> Result<Url, String> {
    net::parse_service_url(text, "`access_key_id` and `secret_access_key`", "")
}

/// The `<region>` of a Backblaze B2 S3 host, `s3.<region>.backblazeb2.com`.
fn b2_region(endpoint: &Url) -> Option<String> {
    let host = endpoint.host_str()?.to_ascii_lowercase();
    let region = host.strip_prefix("s3.")?.strip_suffix(".backblazeb2.com")?;
    (!region.is_empty() && !region.contains('.')).then(|| region.to_owned())
}

fn choose_region(endpoint: &Url, configured: Option<String>) -> Result<String, String> {
    let configured = configured.map(|region| region.trim().to_owned());
    match (configured, b2_region(endpoint)) {
        (Some(region), Some(derived)) if region != derived => Err(format!(
            "`{region}` does not match the endpoint's region `{derived}`; B2 signs with the \
             region in its host name"
        )),
        (Some(region), _) if region.is_empty() => Err("must not be empty".to_owned()),
        (Some(region), _) => Ok(region),
        (None, Some(derived)) => Ok(derived),
        (None, None) => Err(
            "required (only derived for Backblaze B2 endpoints, s3.<region>.backblazeb2.com)"
                .to_owned(),
        ),
    }
}

// === probe ===

/// A built `s3` probe.
#[derive(Debug)]
pub struct S3Probe {
    bucket: Bucket,
    key: Option<String>,
    credentials: Option<Credentials>,
    resolver: net::Resolver,
    tls: net::TlsSettings,
}

/// Both halves are kept as secrets: the key ID is not secret by itself, but it names the
/// account and has no business in logs either.
#[derive(Debug)]
struct Credentials {
    key_id: Secret,
    secret: Secret,
}

impl S3Probe {
    /// Makes one attempt: one signed `HEAD`.
    pub async fn run(&self, ctx: &ProbeContext) -> Outcome {
        let mut observations = Observations::new();
        let outcome = match self.head(ctx, &mut observations).await {
            Ok(message) => Outcome::success(message),
            Err(outcome) => outcome,
        };
        ctx.end_phase();
        outcome.with_all(observations)
    }

    /// What is probed, for humans: `s3://bucket/key at endpoint`, no credentials.
    pub fn target(&self) -> String {
        format!("{} at {}", self.object_name(), self.bucket.base_url())
    }

    fn object_name(&self) -> String {
        match &self.key {
            Some(key) => format!("s3://{}/{key}", self.bucket.name()),
            None => format!("s3://{}", self.bucket.name()),
        }
    }

    fn signed_url(&self) -> Url {
        let credentials = self.credentials.as_ref().map(|credentials| {
            rusty_s3::Credentials::new(credentials.key_id.expose(), credentials.secret.expose())
        });
        match &self.key {
            Some(key) => self
                .bucket
                .head_object(credentials.as_ref(), key)
                .sign(SIGNATURE_VALIDITY),
            None => self
                .bucket
                .head_bucket(credentials.as_ref())
                .sign(SIGNATURE_VALIDITY),
        }
    }

    async fn head(
        &self,
        ctx: &ProbeContext,
        observations: &mut Observations,
    ) -> Result<String, Outcome> {
        let url = self.signed_url();
        let client = OneShot::new(ctx, &self.resolver, &self.tls, &url).await?;

        ctx.phase("request");
        let what = format!("HEAD {}", self.object_name());
        let response = client
            .send(ctx, client.client().request(Method::HEAD, url), &what)
            .await?;
        let status = response.status();
        let headers = response.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        observations.insert("status".to_owned(), Value::from(status.as_u16()));
        observations.insert(
            "request_id".to_owned(),
            Value::from(header("x-amz-request-id")),
        );
        let error_code = header("x-amz-error-code");
        let code_note = error_code
            .map(|code| format!(" ({code})"))
            .unwrap_or_default();
        let status_text = net::describe_status(status);

        match status {
            StatusCode::OK => {
                let size = header("content-length").and_then(|length| length.parse::<u64>().ok());
                if self.key.is_some() {
                    observations.insert("content_length".to_owned(), Value::from(size));
                }
                Ok(match (&self.key, size) {
                    (Some(_), Some(size)) => format!("{what}: {status_text}, {size} bytes"),
                    _ => format!("{what}: {status_text}"),
                })
            }
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                let why = if self.credentials.is_none() {
                    "the request is unsigned (no credentials configured) and access was denied"
                } else {
                    "credentials refused (SignatureDoesNotMatch, InvalidAccessKeyId, a key \
                     without access to the bucket, or a clock off by more than 15 minutes)"
                };
                Err(Outcome::failure(
                    ErrorClass::Auth,
                    format!("{what}: {status_text}{code_note}: {why}"),
                ))
            }
            StatusCode::NOT_FOUND => {
                let missing = if self.key.is_some() {
                    "no such object (or bucket)"
                } else {
                    "no such bucket"
                };
                Err(Outcome::failure(
                    ErrorClass::NotFound,
                    format!("{what}: {status_text}{code_note}: {missing}"),
                ))
            }
            other => Err(Outcome::failure(
                ErrorClass::HttpStatus,
                format!(
                    "{what}: {status_text}{code_note}{}",
                    if other.is_server_error() {
                        ": the storage service is failing"
                    } else {
                        ""
                    }
                ),
            )),
        }
    }
}

// === metrics ===

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b2_region_comes_from_the_host() {
        let endpoint = parse_endpoint("https://s3.us-west-004.backblazeb2.com").unwrap();
        assert_eq!(choose_region(&endpoint, None).unwrap(), "us-west-004");
        assert!(choose_region(&endpoint, Some("us-east-005".to_owned())).is_err());
        let other = parse_endpoint("https://minio.internal:9000").unwrap();
        assert!(
            choose_region(&other, None)
                .unwrap_err()
                .starts_with("required")
        );
        assert_eq!(
            choose_region(&other, Some("eu-1".to_owned())).unwrap(),
            "eu-1"
        );
    }

    #[test]
    fn half_credentials_are_errors_and_none_means_unsigned() {
        let build = |keys: &str| {
            let text = format!(
                "endpoint = \"http://127.0.0.1:9000\"\nregion = \"us-east-1\"\nbucket = \"b\"\n{keys}"
            );
            toml::from_str::<Spec>(&text)
                .unwrap()
                .build(&BuildContext::new("."))
        };
        let unsigned = build("access_key_id = \"\"\nsecret_access_key = \"\"").unwrap();
        assert!(unsigned.credentials.is_none());
        let errors = build("access_key_id = \" 004abc \"").unwrap_err();
        assert_eq!(errors[0].key, "access_key_id");
        assert_eq!(
            errors[0].message,
            "`access_key_id` is set but `secret_access_key` (or `secret_access_key_file`) is \
             empty or missing"
        );
    }
}
