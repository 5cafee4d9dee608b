//! The `prometheus` probe kind: one instant query (`/api/v1/query`) against a
//! Prometheus-compatible HTTP API (VictoriaMetrics, Prometheus, vmselect), its result made into
//! observations rules can read. It makes the metrics stack's own view of the world (vmagent's
//! remote write, node disks, dropped rows) something the catalog can recognise.
//!
//! One run is one `GET` on a fresh connection (a [`net::OneShot`] client: built per run, no
//! pool, our resolver), evaluated at the server's "now" (no `time` parameter, so freshness
//! checks such as `time() - timestamp(x)` use the server's clock, the one the samples carry).
//! An empty result is data (`count` 0), not a failure: "no series matches" is exactly what
//! many rules ask. What fails the run is not getting an answer (`connect`, `tls`, `timeout`,
//! `dns`), being refused (`auth` on 401/403), the API rejecting the query (`query`, with the
//! API's own `errorType` and message), or any other status (`http_status`).
//!
//! The answer is read up to [`BODY_LIMIT`] bytes, and at most [`SERIES_CAP`] series are kept
//! in `series` (sorted by their labels, so that a run's list is stable); `count`, `min`, `max`
//! and `sum` cover every series.

use std::collections::BTreeMap;
use std::path::PathBuf;

use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use crate::probe::net::{self, OneShot};
use crate::probe::schema::{Field, Gauge, Type, Typical};
use crate::probe::{ErrorClass, Observations, Outcome, ProbeContext, Value, http};
use crate::spec::secret::{self, Credentials, Secret};
use crate::spec::{BuildContext, FieldError, FieldErrors, Keep};

/// At most this many series are listed in `series`; `count` and the aggregates still cover all.
pub const SERIES_CAP: usize = 100;

/// At most this much of an answer is read. A query matching tens of thousands of series is a
/// mistake in the query, and reading it whole every run would load the API and this daemon.
pub const BODY_LIMIT: usize = 4 << 20;

const SERIES_FIELDS: &[Field] = &[
    Field::map_of(
        "labels",
        "the series' labels, `__name__` included when the query keeps it",
        "label name",
        "instance",
        &Type::Str,
    ),
    Field::float(
        "value",
        "its value; `null` for `NaN` and `±Inf`, which JSON cannot carry",
        0.25,
    ),
];

/// The series count, exported so dashboards see what the query matched.
const SERIES_GAUGE: Gauge = Gauge {
    name: "honeyguide_prometheus_series",
    help: "Number of series the prometheus probe's instant query returned (1 for a scalar).",
    null_as: None,
};

/// What a run observes besides the connection's facts.
pub const OBSERVATIONS: &[Field] = &[
    Field::int(
        "count",
        "the number of series the query returned (`1` for a scalar, `0` for an empty result); \
         `null` when no answer was read",
        1,
    )
    // Healthy is an empty answer: shipped queries select what is wrong (a disk under its
    // threshold), so a quiet day matches nothing. The same goes for the keys below.
    .healthy(Typical::Int(0))
    .gauge(&SERIES_GAUGE),
    Field::float(
        "value",
        "the value when the result is exactly one series (or a scalar), else `null`",
        0.25,
    )
    .failure_only(),
    Field::float(
        "min",
        "the smallest value over all series; `null` without a finite value",
        0.25,
    )
    .failure_only(),
    Field::float(
        "max",
        "the largest value over all series; `null` without a finite value",
        0.25,
    )
    .failure_only(),
    Field::float(
        "sum",
        "the sum of the values over all series; `null` without a finite value",
        0.25,
    )
    .failure_only(),
    Field::list_of(
        "series",
        "the series, sorted by their labels, at most 100 (see `series_truncated`)",
        &Type::Record(SERIES_FIELDS),
    )
    .healthy(Typical::Strs(&[])),
    Field::flag(
        "series_truncated",
        "whether `series` lists fewer series than `count` (the cap is 100)",
        false,
    ),
    Field::text(
        "result_type",
        "the API's `resultType`: `vector` or `scalar`",
        "vector",
    ),
    Field::int(
        "status",
        "the HTTP status of the query; `null` when no response arrived",
        200,
    )
    .gauge(&http::STATUS_CODE),
    Field::text(
        "error_type",
        "only on `query` (and an API error with another status): the API's `errorType`, \
         such as `bad_data`, `execution` or VictoriaMetrics' `422`",
        "bad_data",
    )
    .failure_only(),
];

// === Spec ===

/// The keys of a `kind = "prometheus"` probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The API's base URL, e.g. `https://obs.example.com` or
    /// `http://vmselect:8481/select/0/prometheus`; `/api/v1/query` is appended.
    url: String,
    /// The PromQL (or MetricsQL) expression, evaluated as an instant query.
    query: String,
    /// Bearer token (usually `${ENV}`); at most one of this and `bearer_token_file`.
    bearer_token: Option<String>,
    /// File holding the bearer token.
    bearer_token_file: Option<PathBuf>,
    /// User name for Basic auth.
    username: Option<String>,
    /// Basic auth password; at most one of this and `password_file`.
    password: Option<String>,
    /// File holding the password.
    password_file: Option<PathBuf>,
    /// Verify the server certificate (default true).
    tls_verify: Option<bool>,
    /// CA certificates (PEM) to verify the server with, instead of the system roots.
    ca_file: Option<PathBuf>,
}

impl Spec {
    /// Validates the keys into a runnable probe.
    pub fn build(self, cx: &BuildContext) -> Result<PrometheusProbe, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let endpoint = parse_base_url(&self.url).kept_at("url", &mut errors);
        let query = self.query.trim().to_owned();
        if query.is_empty() {
            errors.at("query", "must not be empty");
        }

        let token = secret::resolve_optional(
            "bearer_token",
            self.bearer_token,
            self.bearer_token_file.as_deref(),
            cx,
        )
        .kept(&mut errors)
        .flatten();
        let password =
            secret::resolve("password", self.password, self.password_file.as_deref(), cx)
                .kept(&mut errors)
                .flatten();
        // Empty user name and password (the `${VAR:-}` defaults) mean no Basic auth.
        let basic = secret::credentials("username", self.username, "password", password)
            .kept(&mut errors)
            .flatten();
        let auth = match (token, basic) {
            (Some(_), Some(_)) => {
                errors.at(
                    "bearer_token",
                    "set either a bearer token or a user name and password, not both",
                );
                Auth::None
            }
            (Some(token), None) => Auth::Bearer(token),
            (None, Some(credentials)) => Auth::Basic(credentials),
            (None, None) => Auth::None,
        };

        let tls = net::TlsSettings::from_keys(
            self.tls_verify,
            self.ca_file.as_deref(),
            cx,
            net::ALPN_HTTP,
        )
        .kept(&mut errors);

        match (endpoint, tls) {
            (Some(endpoint), Some(tls)) if errors.is_empty() => Ok(PrometheusProbe {
                endpoint,
                query,
                auth,
                resolver: net::Resolver::shared(cx),
                tls,
            }),
            _ => Err(errors.into_vec()),
        }
    }
}

/// The query endpoint under `text`: the base URL with `api/v1/query` appended (a URL that
/// already ends in `/api/v1/query` or `/api/v1` is taken as meant).
fn parse_base_url(text: &str) -> Result<Url, String> {
    let mut url = net::parse_service_url(
        text,
        "`username` and `password` (or `bearer_token`)",
        "; the PromQL goes in `query`",
    )?;
    let mut path = url.path().trim_end_matches('/').to_owned();
    for suffix in ["/api/v1/query", "/api/v1"] {
        if let Some(base) = path.strip_suffix(suffix) {
            path = base.to_owned();
            break;
        }
    }
    url.set_path(&format!("{path}/api/v1/query"));
    Ok(url)
}

// === probe ===

/// A built `prometheus` probe.
#[derive(Debug)]
pub struct PrometheusProbe {
    endpoint: Url,
    query: String,
    auth: Auth,
    resolver: net::Resolver,
    tls: net::TlsSettings,
}

/// How the requests authenticate.
#[derive(Debug)]
enum Auth {
    None,
    Bearer(Secret),
    Basic(Credentials),
}

impl Auth {
    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token.expose()),
            Auth::Basic(credentials) => {
                request.basic_auth(&credentials.name, Some(credentials.secret.expose()))
            }
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Auth::None => "no credentials are configured",
            Auth::Bearer(_) => "the bearer token was refused",
            Auth::Basic(_) => "the user name and password were refused",
        }
    }
}

impl PrometheusProbe {
    /// Makes one attempt: one instant query.
    pub async fn run(&self, ctx: &ProbeContext) -> Outcome {
        let mut observations = Observations::new();
        let outcome = match self.query(ctx, &mut observations).await {
            Ok(message) => Outcome::success(message),
            Err(outcome) => outcome,
        };
        ctx.end_phase();
        outcome.with_all(observations)
    }

    /// What is probed, for humans: the query endpoint, never with credentials.
    pub fn target(&self) -> String {
        self.endpoint.to_string()
    }

    async fn query(
        &self,
        ctx: &ProbeContext,
        observations: &mut Observations,
    ) -> Result<String, Outcome> {
        let client = OneShot::new(ctx, &self.resolver, &self.tls, &self.endpoint).await?;

        ctx.phase("query");
        let mut url = self.endpoint.clone();
        url.query_pairs_mut().append_pair("query", &self.query);
        let request = client.client().get(url);
        let response = client.send(ctx, self.auth.apply(request), "query").await?;
        let status = response.status();
        observations.insert("status".to_owned(), Value::from(status.as_u16()));

        ctx.phase("read");
        let body = read_limited(response).await?;
        let answer: Option<ApiResponse> = serde_json::from_slice(&body).ok();
        let status_text = net::describe_status(status);

        if status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
            || (answer.is_none() && refused_token(status, &body))
        {
            return Err(Outcome::failure(
                ErrorClass::Auth,
                format!("query: {status_text}: {}", self.auth.describe()),
            ));
        }
        match answer {
            Some(ApiResponse {
                status: ApiStatus::Success,
                data: Some(data),
                warnings,
                ..
            }) if status.is_success() => {
                let result = Summary::of(data)?;
                let message = result.message(&warnings);
                result.observe(observations);
                Ok(message)
            }
            Some(ApiResponse {
                status: ApiStatus::Error,
                error_type,
                error,
                ..
            }) => Err(api_error(status, error_type, error, observations)),
            _ if !status.is_success() => Err(Outcome::failure(
                ErrorClass::HttpStatus,
                format!("query: {status_text} (not an answer of the Prometheus API)"),
            )),
            _ => Err(Outcome::failure(
                ErrorClass::Protocol,
                format!(
                    "query: {status_text} but the body is not a Prometheus API answer (is `url` \
                     the API's base URL?)"
                ),
            )),
        }
    }
}

/// Whether this is vmauth (VictoriaMetrics' auth proxy, in front of most VictoriaMetrics
/// servers reached over the internet) refusing a token: 1.79 answers an unknown bearer token
/// with `400` and the text `cannot find the provided auth token ...`, not `401`. The body is
/// never quoted: it repeats the token.
fn refused_token(status: StatusCode, body: &[u8]) -> bool {
    const VMAUTH_REFUSAL: &[u8] = b"cannot find the provided auth token";
    status == StatusCode::BAD_REQUEST
        && body
            .windows(VMAUTH_REFUSAL.len())
            .any(|window| window == VMAUTH_REFUSAL)
}

/// The API's own error: a rejected query (`400`/`422`, `bad_data`, `execution`) is `query`;
/// anything else (`503 unavailable`, a timeout inside the server) is `http_status`, with the
/// API's words either way.
fn api_error(
    status: StatusCode,
    error_type: Option<String>,
    error: Option<String>,
    observations: &mut Observations,
) -> Outcome {
    let error_type = error_type.unwrap_or_default();
    let error = error.unwrap_or_default();
    observations.insert("error_type".to_owned(), Value::from(error_type.as_str()));
    let rejected = matches!(
        status,
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
    ) || matches!(error_type.as_str(), "bad_data" | "execution");
    let class = if rejected {
        ErrorClass::Query
    } else {
        ErrorClass::HttpStatus
    };
    Outcome::failure(
        class,
        format!(
            "query: {}: {error_type}: {error}",
            net::describe_status(status)
        ),
    )
}

/// Reads the body, at most [`BODY_LIMIT`] bytes.
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, Outcome> {
    let mut body = Vec::new();
    loop {
        let chunk = response.chunk().await.map_err(|error| {
            Outcome::failure(
                ErrorClass::Protocol,
                format!(
                    "query: the answer broke off: {}",
                    net::describe_chain(&error.without_url())
                ),
            )
        })?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(Outcome::failure(
                ErrorClass::Protocol,
                format!(
                    "query: the answer is over {} MiB; narrow the query (aggregate, or filter \
                     by labels)",
                    BODY_LIMIT >> 20
                ),
            ));
        }
        body.extend_from_slice(&chunk);
    }
}

// === the API's answer ===

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiResponse {
    status: ApiStatus,
    data: Option<ApiData>,
    error_type: Option<String>,
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ApiStatus {
    Success,
    Error,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum ApiData {
    Vector(Vec<ApiSample>),
    Scalar(ApiPoint),
    /// Read only to say that an instant query should not return it.
    Matrix(#[allow(dead_code, reason = "refused whatever it holds")] serde::de::IgnoredAny),
    /// Likewise.
    String(#[allow(dead_code, reason = "refused whatever it holds")] serde::de::IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct ApiSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: ApiPoint,
}

/// `[<unix seconds>, "<value>"]`: the value is a string so that `NaN` and `±Inf` fit.
#[derive(Debug, Deserialize)]
struct ApiPoint(
    #[allow(dead_code, reason = "the evaluation time, not needed")] f64,
    String,
);

impl ApiPoint {
    /// The value, `None` for `NaN`, `±Inf` or text that is not a number.
    fn finite(&self) -> Option<f64> {
        self.1.parse::<f64>().ok().filter(|value| value.is_finite())
    }
}

/// What one answer comes to.
struct Summary {
    result_type: &'static str,
    /// Every series, sorted by labels.
    series: Vec<(BTreeMap<String, String>, Option<f64>)>,
}

impl Summary {
    fn of(data: ApiData) -> Result<Self, Outcome> {
        let (result_type, mut series) = match data {
            ApiData::Vector(samples) => (
                "vector",
                samples
                    .into_iter()
                    .map(|sample| {
                        let value = sample.value.finite();
                        (sample.metric, value)
                    })
                    .collect::<Vec<_>>(),
            ),
            ApiData::Scalar(point) => ("scalar", vec![(BTreeMap::new(), point.finite())]),
            ApiData::Matrix(_) => {
                return Err(Outcome::failure(
                    ErrorClass::Query,
                    "query: the result is a range vector (matrix); an instant query needs an \
                     instant vector: wrap the range in a function such as `last_over_time(...)`",
                ));
            }
            ApiData::String(_) => {
                return Err(Outcome::failure(
                    ErrorClass::Query,
                    "query: the result is a string; the query must return numbers",
                ));
            }
        };
        series.sort_by(|left, right| left.0.cmp(&right.0));
        Ok(Self {
            result_type,
            series,
        })
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.series.iter().filter_map(|(_, value)| *value)
    }

    fn min(&self) -> Option<f64> {
        self.values().reduce(f64::min)
    }

    fn max(&self) -> Option<f64> {
        self.values().reduce(f64::max)
    }

    fn sum(&self) -> Option<f64> {
        self.values().reduce(|left, right| left + right)
    }

    fn single(&self) -> Option<f64> {
        match self.series.as_slice() {
            [(_, value)] => *value,
            _ => None,
        }
    }

    /// `query: 2 series, 1 to 3: {reason="silent"} 1, {reason="non_2xx"} 3`: the message is a
    /// diagnosis' evidence, so it names the first few series (which vmagent, which mountpoint),
    /// not only how many there were.
    fn message(&self, warnings: &[String]) -> String {
        const NAMED: usize = 3;
        let count = self.series.len();
        let mut message = match (count, self.min(), self.max()) {
            (0, _, _) => "query: 0 series (empty result)".to_owned(),
            (1, _, _) => "query: 1 series".to_owned(),
            (count, Some(min), Some(max)) => format!("query: {count} series, {min} to {max}"),
            (count, _, _) => format!("query: {count} series"),
        };
        let named: Vec<String> = self
            .series
            .iter()
            .take(NAMED)
            .map(|(labels, value)| {
                let labels: Vec<String> = labels
                    .iter()
                    .map(|(name, text)| format!("{name}={text:?}"))
                    .collect();
                let value = value.map_or_else(|| "NaN".to_owned(), |value| value.to_string());
                format!("{{{}}} {value}", labels.join(","))
            })
            .collect();
        if !named.is_empty() {
            message.push_str(&format!(": {}", named.join(", ")));
        }
        if count > NAMED {
            message.push_str(&format!(", and {} more", count - NAMED));
        }
        if let Some(warning) = warnings.first() {
            message.push_str(&format!(" (warning: {warning})"));
        }
        message
    }

    fn observe(self, observations: &mut Observations) {
        let count = self.series.len();
        let numbers = [
            ("value", self.single()),
            ("min", self.min()),
            ("max", self.max()),
            ("sum", self.sum()),
        ];
        for (key, number) in numbers {
            observations.insert(key.to_owned(), Value::from(number));
        }
        observations.insert("count".to_owned(), Value::from(count));
        observations.insert("result_type".to_owned(), Value::from(self.result_type));
        observations.insert(
            "series_truncated".to_owned(),
            Value::Bool(count > SERIES_CAP),
        );
        let listed = self
            .series
            .into_iter()
            .take(SERIES_CAP)
            .map(|(labels, value)| {
                let labels = labels
                    .into_iter()
                    .map(|(name, text)| (name, Value::Str(text)))
                    .collect();
                Value::Map(BTreeMap::from([
                    ("labels".to_owned(), Value::Map(labels)),
                    ("value".to_owned(), Value::from(value)),
                ]))
            })
            .collect();
        observations.insert("series".to_owned(), Value::List(listed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(json: &str) -> Result<Summary, Outcome> {
        let answer: ApiResponse = serde_json::from_str(json).unwrap();
        Summary::of(answer.data.unwrap())
    }

    #[test]
    fn base_urls_get_the_query_path() {
        let url = |text| parse_base_url(text).map(|url| url.to_string());
        assert_eq!(
            url("https://obs.example.com").unwrap(),
            "https://obs.example.com/api/v1/query"
        );
        assert_eq!(
            url("http://vmselect:8481/select/0/prometheus/").unwrap(),
            "http://vmselect:8481/select/0/prometheus/api/v1/query"
        );
        assert_eq!(
            url("http://127.0.0.1:8428/api/v1/query").unwrap(),
            "http://127.0.0.1:8428/api/v1/query"
        );
        assert!(url("http://u:p@obs").unwrap_err().contains("credentials"));
        assert!(url("http://obs/?query=up").unwrap_err().contains("`query`"));
        assert!(url("redis://obs").is_err());
    }

    /// Several series: sorted by labels, aggregated over finite values; `value` only for one.
    #[test]
    fn vectors_are_summarised() {
        let result = summary(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"mountpoint":"/var"},"value":[1700000000.5,"0.5"]},
                {"metric":{"mountpoint":"/"},"value":[1700000000.5,"0.25"]},
                {"metric":{"mountpoint":"/srv"},"value":[1700000000.5,"NaN"]}]}}"#,
        )
        .unwrap();
        assert_eq!(result.series[0].0["mountpoint"], "/");
        assert_eq!(
            (result.min(), result.max(), result.sum()),
            (Some(0.25), Some(0.5), Some(0.75))
        );
        assert_eq!(result.single(), None);
        assert_eq!(
            result.message(&[]),
            "query: 3 series, 0.25 to 0.5: {mountpoint=\"/\"} 0.25, {mountpoint=\"/srv\"} NaN, \
             {mountpoint=\"/var\"} 0.5"
        );
        let mut observations = Observations::new();
        result.observe(&mut observations);
        assert_eq!(observations["count"], Value::Int(3));
        assert_eq!(observations["value"], Value::Null);
        let Value::List(series) = &observations["series"] else {
            panic!("{observations:?}");
        };
        assert_eq!(series[1].as_map().unwrap()["value"], Value::Null);
    }

    #[test]
    fn scalars_count_as_one_series_and_matrices_are_query_errors() {
        let result =
            summary(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#)
                .unwrap();
        assert_eq!((result.single(), result.result_type), (Some(2.0), "scalar"));
        let error = summary(
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[]}]}}"#,
        )
        .err()
        .unwrap();
        assert_eq!(error.error, Some(ErrorClass::Query));
    }

    #[test]
    fn more_series_than_the_cap_are_counted_but_not_listed() {
        let samples: Vec<String> = (0..SERIES_CAP + 5)
            .map(|index| format!(r#"{{"metric":{{"i":"{index:04}"}},"value":[1,"1"]}}"#))
            .collect();
        let json = format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
            samples.join(",")
        );
        let mut observations = Observations::new();
        summary(&json).unwrap().observe(&mut observations);
        assert_eq!(observations["count"], Value::from(SERIES_CAP + 5));
        assert_eq!(observations["series_truncated"], Value::Bool(true));
        assert_eq!(observations["sum"], Value::Float((SERIES_CAP + 5) as f64));
        let Value::List(series) = &observations["series"] else {
            panic!("{observations:?}");
        };
        assert_eq!(series.len(), SERIES_CAP);
    }

    #[test]
    fn bearer_and_basic_auth_exclude_each_other() {
        let build = |keys: &str| {
            let text = format!("url = \"http://127.0.0.1:8428\"\nquery = \"up\"\n{keys}");
            toml::from_str::<Spec>(&text)
                .unwrap()
                .build(&BuildContext::new("."))
        };
        let errors = build("bearer_token = \"t\"\nusername = \"u\"\npassword = \"p\"").unwrap_err();
        assert_eq!(errors[0].key, "bearer_token");
        // The `${VAR:-}` defaults: no token, no user, no auth.
        let probe = build("bearer_token = \"\"\nusername = \"\"\npassword = \"\"").unwrap();
        assert!(matches!(probe.auth, Auth::None));
        let empty = toml::from_str::<Spec>("url = \"http://127.0.0.1:8428\"\nquery = \" \"\n")
            .unwrap()
            .build(&BuildContext::new("."))
            .unwrap_err();
        assert_eq!(
            (empty[0].key.as_str(), empty[0].message.as_str()),
            ("query", "must not be empty")
        );
    }
}
