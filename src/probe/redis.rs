//! The `redis` probe kind (PING latency and what `INFO` says: uptime and restarts, memory against
//! `maxmemory` and its policy, clients, keys, role), and the Redis connection settings it shares
//! with the `asynq` kind.
//!
//! Every run opens a fresh connection and drops it: a pooled or managed connection would hide
//! exactly the connect, TLS and AUTH failures a synthetic probe is for. As for Postgres, the
//! socket is ours ([`net::open`] and [`net::tls_handshake`]: phases `resolve`, `connect`, `tls`,
//! then `auth`) and the redis crate only speaks the protocol over it
//! (`MultiplexedConnection::new_with_config`); then `ping` and `info`.
//!
//! A restart is told from one run to the next: the probe remembers the previous run's
//! `uptime_in_seconds` and `run_id`, and a lower uptime or another run id means the server
//! restarted in between. A pod that comes back on another node with an empty data directory shows
//! as `restarted = true` with `keys = 0`.
//!
//! A server that does not speak RESP (an HTTP server on the port) is `protocol`, "not a Redis
//! reply", quoting the start of what it sent (escaped) rather than the parser's dump of byte
//! values: the stream records the start of the latest chunk it read for that.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisConnectionInfo, RedisError};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::either::Either;
use tokio_util::task::AbortOnDropHandle;

use crate::probe::schema::{Field, Gauge, Unit};
use crate::probe::{ErrorClass, Observations, Outcome, ProbeContext, Value, net};
use crate::spec::{BuildContext, FieldError, FieldErrors, Keep, Secret, secret};

/// The default port.
pub const DEFAULT_PORT: u16 = 6379;

// === connection settings, shared with asynq ===

/// How to reach one Redis server: the keys of a `kind = "redis"` probe, and of the `redis` table
/// of a `kind = "asynq"` probe.
///
/// Give `address` (`host:port`) or `url` (`redis://[user:password@]host:port/db`, `rediss://`
/// for TLS). No `Debug`: a password here is still in clear.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    /// `host:port`; the port defaults to 6379.
    address: Option<String>,
    /// A `redis://` or `rediss://` URL. Treated as a secret: it may hold the password.
    url: Option<String>,
    /// Whether to use TLS (implied by `rediss://`).
    tls: Option<bool>,
    /// A PEM file of CA certificates to trust instead of the system's roots.
    ca_file: Option<PathBuf>,
    /// Whether to verify the server certificate (default true).
    tls_verify: Option<bool>,
    /// ACL user name (Redis 6+); without it, `AUTH` uses the default user.
    username: Option<String>,
    /// Password, usually `${ENV}`.
    password: Option<String>,
    /// A file holding the password, relative to the config file.
    password_file: Option<PathBuf>,
    /// Database number to `SELECT`; 0 by default.
    db: Option<i64>,
}

/// Where a URL or address points, before credentials are attached.
struct Parsed {
    host: String,
    port: u16,
    tls: bool,
    username: Option<String>,
    password: Option<Secret>,
    db: Option<i64>,
}

impl ConnectionSpec {
    /// Validates the settings into a [`RedisConnection`], reporting every problem at once.
    /// `prefix` names where the keys sit (`""` for the redis kind, `"redis."` inside asynq).
    pub fn build_connection(
        self,
        cx: &BuildContext,
        prefix: &str,
    ) -> Result<RedisConnection, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let key = |name: &str| format!("{prefix}{name}");
        let parsed = match (&self.address, &self.url) {
            (Some(_), Some(_)) => {
                errors.push(FieldError::new(
                    &key("url"),
                    "give either `address` or `url`, not both",
                ));
                None
            }
            (None, None) => {
                errors.push(FieldError::new(
                    &key("address"),
                    "missing `address` (host:port) or `url`",
                ));
                None
            }
            (Some(address), None) => parse_address(address).kept_at(&key("address"), &mut errors),
            (None, Some(url)) => parse_url(url).kept_at(&key("url"), &mut errors),
        };
        let password = secret::resolve_optional(
            &key("password"),
            self.password.clone(),
            self.password_file.as_deref(),
            cx,
        )
        .kept(&mut errors)
        .flatten();
        if let Some(db) = self.db
            && db < 0
        {
            errors.push(FieldError::new(&key("db"), "must be 0 or more"));
        }
        let tls = self.tls_config(cx, parsed.as_ref(), &key, &mut errors);
        let Some(parsed) = parsed else {
            return Err(errors.into_vec());
        };
        for (name, set, in_url) in [
            ("password", password.is_some(), parsed.password.is_some()),
            (
                "username",
                self.username.is_some(),
                parsed.username.is_some(),
            ),
            ("db", self.db.is_some(), parsed.db.is_some()),
        ] {
            if set && in_url {
                errors.push(FieldError::new(
                    &key(name),
                    format!("the url already gives `{name}`; give it in one place"),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors.into_vec());
        }
        let db = self.db.or(parsed.db).unwrap_or(0);
        let mut info = RedisConnectionInfo::default()
            .set_db(db)
            // Shows in CLIENT LIST, so an operator can tell the probe's connections apart.
            .set_lib_name("honeyguide", env!("CARGO_PKG_VERSION"));
        if let Some(username) = self.username.or(parsed.username) {
            info = info.set_username(username);
        }
        if let Some(password) = password.or(parsed.password) {
            info = info.set_password(password.expose());
        }
        Ok(RedisConnection {
            host: parsed.host,
            port: parsed.port,
            db,
            resolver: crate::probe::net::Resolver::shared(cx),
            tls: tls.flatten(),
            info,
        })
    }

    /// The TLS client config when TLS is on: `Some(None)` for plain TCP, `None` on error.
    fn tls_config(
        &self,
        cx: &BuildContext,
        parsed: Option<&Parsed>,
        key: &dyn Fn(&str) -> String,
        errors: &mut FieldErrors,
    ) -> Option<Option<net::TlsSettings>> {
        let url_tls = parsed.is_some_and(|parsed| parsed.tls);
        if self.tls == Some(false) && url_tls {
            errors.push(FieldError::new(
                &key("tls"),
                "a rediss:// url always uses TLS; drop `tls = false`",
            ));
            return None;
        }
        let enabled = self.tls.unwrap_or(false) || url_tls;
        if !enabled {
            for (name, set) in [
                ("ca_file", self.ca_file.is_some()),
                ("tls_verify", self.tls_verify.is_some()),
            ] {
                if set {
                    errors.push(FieldError::new(
                        &key(name),
                        format!("`{name}` needs `tls = true` (or a rediss:// url)"),
                    ));
                }
            }
            return Some(None);
        }
        match net::TlsSettings::from_keys(self.tls_verify, self.ca_file.as_deref(), cx, &[]) {
            Ok(settings) => Some(Some(settings)),
            Err(error) => {
                errors.push(FieldError::new(&key(&error.key), error.message));
                None
            }
        }
    }
}

fn parse_address(address: &str) -> Result<Parsed, String> {
    let (host, port) = match address.rsplit_once(':') {
        // An IPv6 literal needs brackets: `[::1]:6379`.
        Some((host, port)) if !host.contains(':') || host.starts_with('[') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("`{address}` has an invalid port; write host:port"))?;
            (host.trim_start_matches('[').trim_end_matches(']'), port)
        }
        _ => (address, DEFAULT_PORT),
    };
    if host.is_empty() {
        return Err(format!("`{address}` has no host; write host:port"));
    }
    Ok(Parsed {
        host: host.to_owned(),
        port,
        tls: false,
        username: None,
        password: None,
        db: None,
    })
}

/// Parses a `redis://` URL. Error messages never repeat the URL: it may hold a password.
fn parse_url(text: &str) -> Result<Parsed, String> {
    let url = url::Url::parse(text).map_err(|error| format!("not a valid url: {error}"))?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        other => {
            return Err(format!(
                "unsupported scheme `{other}`, use redis:// or rediss://"
            ));
        }
    };
    let host = match url.host() {
        Some(url::Host::Domain(name)) => name.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err("the url has no host".to_owned()),
    };
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|decoded| decoded.into_owned())
            .map_err(|_| "the url's user or password is not valid UTF-8".to_owned())
    };
    let username = Some(url.username())
        .filter(|name| !name.is_empty())
        .map(decode)
        .transpose()?;
    let password = url.password().map(decode).transpose()?.map(Secret::new);
    let db = match url.path().trim_start_matches('/') {
        "" => None,
        db => Some(
            db.parse::<i64>()
                .map_err(|_| "the url's path must be a database number, like /0".to_owned())?,
        ),
    };
    Ok(Parsed {
        host,
        port: url.port().unwrap_or(DEFAULT_PORT),
        tls,
        username,
        password,
        db,
    })
}

/// Validated Redis connection settings; opens one fresh connection per call.
pub struct RedisConnection {
    host: String,
    port: u16,
    db: i64,
    resolver: net::Resolver,
    tls: Option<net::TlsSettings>,
    /// Holds the password: never printed (see the `Debug` impl).
    info: RedisConnectionInfo,
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("target", &self.target())
            .field("username", &self.info.username())
            .finish_non_exhaustive()
    }
}

/// How much of what the server sent a "not a Redis reply" message quotes.
const EXCERPT_BYTES: usize = 48;

/// Remembers the start of the latest chunk the server sent, so that a reply the RESP parser
/// rejects can be quoted (escaped, a few bytes) instead of the parser's multi-line dump.
#[derive(Debug)]
struct Heard<S> {
    inner: S,
    latest: Arc<Mutex<Vec<u8>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Heard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
            latest.clear();
            latest.extend_from_slice(&new[..new.len().min(EXCERPT_BYTES + 1)]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Heard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// An open connection. Dropping it closes the socket: the task that drives the protocol is
/// aborted with it.
pub struct Session {
    /// Commands go through here.
    pub connection: MultiplexedConnection,
    _driver: AbortOnDropHandle<()>,
}

impl RedisConnection {
    /// `redis://host:port/db` or `rediss://...`, never with credentials.
    pub fn target(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}/{}", self.port, self.db)
    }

    /// Opens a fresh connection, marking the phases `resolve`, `connect`, `tls` (when on) and
    /// `auth` (AUTH, SELECT and the client name, as one pipeline).
    pub async fn open(&self, ctx: &ProbeContext) -> Result<Session, Outcome> {
        let stream = net::open(ctx, &self.resolver, &self.host, self.port, None).await?;
        let stream = match &self.tls {
            Some(tls) => Either::Right(net::tls_handshake(ctx, tls, stream, &self.host).await?),
            None => Either::Left(stream),
        };
        ctx.phase("auth");
        // No response timeout of the crate's own: the probe's timeout bounds the whole run and
        // names the phase it hung in.
        let config = AsyncConnectionConfig::new().set_response_timeout(None);
        let latest = Arc::new(Mutex::new(Vec::new()));
        let stream = Heard {
            inner: stream,
            latest: latest.clone(),
        };
        let (connection, driver) =
            MultiplexedConnection::new_with_config(&self.info, stream, config)
                .await
                .map_err(|error| {
                    let heard = latest.lock().unwrap_or_else(PoisonError::into_inner);
                    failure_quoting(&error, "connection setup", Some(&heard))
                })?;
        Ok(Session {
            connection,
            _driver: AbortOnDropHandle::new(tokio::spawn(driver)),
        })
    }
}

/// The failure for an error out of a Redis command: `auth` when credentials were refused or are
/// missing, `connect` when the connection broke, `protocol` when the answer was not RESP at all
/// (an HTTP server on the port), `query` when the server rejected the command.
pub fn command_failure(error: &RedisError, what: &str) -> Outcome {
    failure_quoting(error, what, None)
}

/// [`command_failure`], quoting `heard` (the start of what the server sent last) when the
/// answer was not RESP.
fn failure_quoting(error: &RedisError, what: &str, heard: Option<&[u8]>) -> Outcome {
    if error.kind() == ErrorKind::Parse {
        // The parser's own text is a multi-line dump of byte values; what the server said,
        // escaped, tells more (`"HTTP/1.1 400 Bad Request\r\n"`).
        let message = match heard.filter(|heard| !heard.is_empty()) {
            Some(heard) => format!(
                "{what}: not a Redis reply: the server sent {}",
                crate::text::excerpt(heard, EXCERPT_BYTES)
            ),
            None => format!("{what}: not a Redis reply (the server speaks another protocol)"),
        };
        return Outcome::failure(ErrorClass::Protocol, message);
    }
    let code = error.code().unwrap_or_default();
    let detail = error.detail().unwrap_or_default().to_lowercase();
    if error.kind() == ErrorKind::AuthenticationFailed || code == "WRONGPASS" {
        return Outcome::failure(
            ErrorClass::Auth,
            "authentication failed: the server refused the username or password",
        );
    }
    if code == "NOAUTH" || detail.contains("authentication required") {
        return Outcome::failure(
            ErrorClass::Auth,
            "authentication failed: the server requires a password and none is configured",
        );
    }
    if error.is_io_error() || error.is_connection_dropped() {
        return Outcome::failure(
            ErrorClass::Connect,
            format!("{what}: connection lost: {error}"),
        );
    }
    Outcome::failure(ErrorClass::Query, format!("{what} failed: {error}"))
}

// === the redis probe ===

/// What a run observes, `null` when it failed before reading it.
pub const OBSERVATIONS: &[Field] = &[
    Field::int("uptime_seconds", "`uptime_in_seconds`", 86_400)
        .unit(Unit::Seconds)
        .gauge(&Gauge {
            name: "honeyguide_redis_uptime_seconds",
            help: "Seconds since the Redis server started (INFO uptime_in_seconds).",
            null_as: None,
        }),
    Field::flag(
        "restarted",
        "the server restarted since the previous run (see above); `false` on the first run",
        false,
    ),
    Field::int(
        "previous_uptime_seconds",
        "uptime at the previous successful run; `null` on the first run",
        86_370,
    )
    .unit(Unit::Seconds),
    Field::int("used_memory", "`used_memory`", 2_400_000)
        .unit(Unit::Bytes)
        .gauge(&Gauge {
            name: "honeyguide_redis_used_memory_bytes",
            help: "Memory used by Redis (INFO used_memory).",
            null_as: None,
        }),
    Field::int("maxmemory", "`maxmemory`; `0` means no limit", 268_435_456)
        .unit(Unit::Bytes)
        .gauge(&Gauge {
            name: "honeyguide_redis_maxmemory_bytes",
            help: "Redis maxmemory; 0 means no limit.",
            null_as: None,
        }),
    Field::float(
        "memory_ratio",
        "`used_memory / maxmemory`; `null` without a limit",
        0.009,
    )
    .unit(Unit::Ratio),
    Field::text(
        "maxmemory_policy",
        "`allkeys-lru`, `noeviction`, ... (see below)",
        "allkeys-lru",
    ),
    Field::int(
        "connected_clients",
        "including the probe's own connection",
        12,
    )
    .gauge(&Gauge {
        name: "honeyguide_redis_connected_clients",
        help: "Clients connected to Redis.",
        null_as: None,
    }),
    Field::int(
        "keys",
        "sum of `keys=` over all `dbN` lines of the keyspace section",
        340,
    )
    .gauge(&Gauge {
        name: "honeyguide_redis_keys",
        help: "Keys in all Redis databases.",
        null_as: None,
    }),
    Field::text("role", "`master` or `slave` (Redis's words)", "master"),
    Field::float("ping_seconds", "round trip of `PING`", 0.001)
        .unit(Unit::Seconds)
        .gauge(&Gauge {
            name: "honeyguide_redis_ping_seconds",
            help: "Round trip of PING, in seconds.",
            null_as: None,
        }),
    Field::text("redis_version", "the server's version", "7.2.4"),
];

/// The keys of a `kind = "redis"` probe: just where the server is.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct Spec {
    connection: ConnectionSpec,
}

impl Spec {
    /// Validates the keys into a runnable probe.
    pub fn build(self, cx: &BuildContext) -> Result<RedisProbe, Vec<FieldError>> {
        Ok(RedisProbe {
            connection: self.connection.build_connection(cx, "")?,
            previous: Mutex::new(None),
        })
    }
}

/// A built `redis` probe.
#[derive(Debug)]
pub struct RedisProbe {
    connection: RedisConnection,
    /// The server's identity at the last successful run, to tell a restart.
    previous: Mutex<Option<Incarnation>>,
}

/// Which server process answered, and how long it had been up.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Incarnation {
    run_id: Option<String>,
    uptime_seconds: i64,
}

impl RedisProbe {
    /// Makes one attempt on a fresh connection, and closes it.
    pub async fn run(&self, ctx: &ProbeContext) -> Outcome {
        match self.attempt(ctx).await {
            Ok(outcome) => outcome,
            // The schema makes every key `null` that a failed run did not reach.
            Err(failure) => failure,
        }
    }

    /// What is probed: `redis://host:port/db`.
    pub fn target(&self) -> String {
        self.connection.target()
    }

    async fn attempt(&self, ctx: &ProbeContext) -> Result<Outcome, Outcome> {
        let mut session = self.connection.open(ctx).await?;
        ctx.phase("ping");
        let started = Instant::now();
        let pong: String = redis::cmd("PING")
            .query_async(&mut session.connection)
            .await
            .map_err(|error| command_failure(&error, "PING"))?;
        let ping_seconds = started.elapsed().as_secs_f64();
        if pong != "PONG" {
            return Err(Outcome::failure(
                ErrorClass::Protocol,
                format!("PING answered `{pong}` instead of PONG"),
            ));
        }
        ctx.phase("info");
        let text: String = redis::cmd("INFO")
            .query_async(&mut session.connection)
            .await
            .map_err(|error| command_failure(&error, "INFO"))?;
        let info = Info::parse(&text);
        // CONFIG GET shows the live setting; managed Redis and ACLs often refuse it, and INFO
        // carries the same field since Redis 4.
        let policy: Option<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async::<Vec<String>>(&mut session.connection)
            .await
            .ok()
            .and_then(|pair| pair.into_iter().nth(1))
            .or_else(|| info.get("maxmemory_policy").map(str::to_owned));
        ctx.end_phase();
        drop(session);

        let incarnation = Incarnation {
            run_id: info.get("run_id").map(str::to_owned),
            uptime_seconds: info.int("uptime_in_seconds").unwrap_or(0),
        };
        let previous = self.remember(incarnation.clone());
        let restarted = previous.as_ref().is_some_and(|previous| {
            incarnation.uptime_seconds < previous.uptime_seconds
                || (incarnation.run_id.is_some() && incarnation.run_id != previous.run_id)
        });
        let mut observations = info.observations(policy);
        observations.insert("ping_seconds".to_owned(), Value::Float(ping_seconds));
        observations.insert("restarted".to_owned(), Value::Bool(restarted));
        observations.insert(
            "previous_uptime_seconds".to_owned(),
            Value::from(previous.map(|previous| previous.uptime_seconds)),
        );
        let message = summary(&observations, ping_seconds, restarted);
        Ok(Outcome::success(message).with_all(observations))
    }

    /// Stores this run's incarnation and returns the previous one.
    fn remember(&self, incarnation: Incarnation) -> Option<Incarnation> {
        self.previous
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(incarnation)
    }
}

fn summary(observations: &Observations, ping_seconds: f64, restarted: bool) -> String {
    let int = |key: &str| observations.get(key).and_then(Value::as_i64).unwrap_or(0);
    let mut message = format!(
        "PONG in {:.1} ms, up {}, {} keys, {} of ",
        ping_seconds * 1000.0,
        humantime::format_duration(std::time::Duration::from_secs(
            u64::try_from(int("uptime_seconds")).unwrap_or(0)
        )),
        int("keys"),
        format_bytes(int("used_memory")),
    );
    match int("maxmemory") {
        0 => message.push_str("unlimited memory"),
        max => message.push_str(&format_bytes(max)),
    }
    if let Some(policy) = observations.get("maxmemory_policy").and_then(Value::as_str) {
        message.push_str(&format!(" ({policy})"));
    }
    if restarted {
        let previous = observations
            .get("previous_uptime_seconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        message.push_str(&format!(
            "; restarted since the last run (was up {previous} s)"
        ));
    }
    message
}

fn format_bytes(bytes: i64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / MIB)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

// === INFO ===

/// The `field:value` lines of `INFO`, all sections together.
#[derive(Debug, Default)]
struct Info<'a> {
    fields: HashMap<&'a str, &'a str>,
}

impl<'a> Info<'a> {
    fn parse(text: &'a str) -> Self {
        let fields = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.trim_end().split_once(':'))
            .collect();
        Self { fields }
    }

    fn get(&self, field: &str) -> Option<&'a str> {
        self.fields.get(field).copied()
    }

    fn int(&self, field: &str) -> Option<i64> {
        self.get(field).and_then(|value| value.parse().ok())
    }

    /// Total keys over all databases: the `keys=` of every `dbN:keys=..,expires=..` line.
    fn keys(&self) -> i64 {
        self.fields
            .iter()
            .filter(|(field, _)| {
                field
                    .strip_prefix("db")
                    .is_some_and(|number| number.chars().all(|c| c.is_ascii_digit()))
            })
            .filter_map(|(_, value)| {
                value
                    .split(',')
                    .find_map(|pair| pair.strip_prefix("keys="))
                    .and_then(|keys| keys.parse::<i64>().ok())
            })
            .sum()
    }

    fn observations(&self, policy: Option<String>) -> Observations {
        let used = self.int("used_memory");
        let max = self.int("maxmemory");
        let ratio = match (used, max) {
            (Some(used), Some(max)) if max > 0 => Value::Float(used as f64 / max as f64),
            _ => Value::Null,
        };
        let mut observations = Observations::new();
        let mut put = |key: &str, value: Value| {
            observations.insert(key.to_owned(), value);
        };
        put("uptime_seconds", Value::from(self.int("uptime_in_seconds")));
        put("used_memory", Value::from(used));
        put("maxmemory", Value::from(max));
        put("memory_ratio", ratio);
        put("maxmemory_policy", Value::from(policy));
        put(
            "connected_clients",
            Value::from(self.int("connected_clients")),
        );
        put("keys", Value::Int(self.keys()));
        put("role", Value::from(self.get("role")));
        put("redis_version", Value::from(self.get("redis_version")));
        observations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\nuptime_in_seconds:42\r\n\
        \r\n# Clients\r\nconnected_clients:3\r\n\r\n# Memory\r\nused_memory:1048576\r\n\
        maxmemory:4194304\r\nmaxmemory_policy:allkeys-lru\r\n\r\n# Replication\r\nrole:master\r\n\
        \r\n# Keyspace\r\ndb0:keys=5,expires=1,avg_ttl=0\r\ndb3:keys=2,expires=0,avg_ttl=0\r\n";

    #[test]
    fn info_becomes_the_documented_observations() {
        let observations = Info::parse(INFO).observations(Some("noeviction".to_owned()));
        assert_eq!(observations["uptime_seconds"], Value::Int(42));
        assert_eq!(observations["used_memory"], Value::Int(1_048_576));
        assert_eq!(observations["maxmemory"], Value::Int(4_194_304));
        assert_eq!(observations["memory_ratio"], Value::Float(0.25));
        assert_eq!(observations["maxmemory_policy"], Value::from("noeviction"));
        assert_eq!(observations["connected_clients"], Value::Int(3));
        assert_eq!(observations["keys"], Value::Int(7));
        assert_eq!(observations["role"], Value::from("master"));
    }

    #[test]
    fn memory_ratio_is_null_without_a_limit() {
        let info = INFO.replace("maxmemory:4194304", "maxmemory:0");
        let observations = Info::parse(&info).observations(None);
        assert_eq!(observations["memory_ratio"], Value::Null);
        assert_eq!(observations["maxmemory_policy"], Value::Null);
    }

    fn build(toml_keys: &str) -> Result<RedisConnection, Vec<FieldError>> {
        let spec: ConnectionSpec = toml::from_str(toml_keys).unwrap();
        spec.build_connection(&BuildContext::new("."), "")
    }

    #[test]
    fn urls_and_addresses_become_a_target_without_credentials() {
        let from_url = build(r#"url = "redis://worker:s%40cret@cache.internal:6380/2""#).unwrap();
        assert_eq!(from_url.target(), "redis://cache.internal:6380/2");
        assert_eq!(from_url.info.username(), Some("worker"));
        assert_eq!(from_url.info.password(), Some("s@cret"));
        assert!(!format!("{from_url:?}").contains("cret"));

        let from_address = build(r#"address = "[::1]:7000""#).unwrap();
        assert_eq!(from_address.target(), "redis://[::1]:7000/0");
        let default_port = build(r#"address = "redis.svc""#).unwrap();
        assert_eq!(default_port.target(), "redis://redis.svc:6379/0");
    }

    #[test]
    fn conflicting_settings_are_all_reported() {
        let errors = build(
            r#"url = "redis://:pw@h:1/0"
               password = "other"
               db = 1
               ca_file = "ca.pem""#,
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|error| error.key.as_str()).collect();
        assert_eq!(keys, ["ca_file", "password", "db"]);
        assert!(errors.iter().all(|error| !error.message.contains("pw")));
    }

    #[test]
    fn bad_urls_never_echo_the_url() {
        let errors = build(r#"url = "http://user:hunter2@h/""#).unwrap_err();
        assert_eq!(
            errors[0].message,
            "unsupported scheme `http`, use redis:// or rediss://"
        );
    }
}
