//! The `postgres` probe kind: one fresh connection to PostgreSQL, directly or through a pooler
//! (PgBouncer, Neon's `-pooler` endpoint), timed phase by phase; one query; optionally a check
//! that goose's migrations are applied.
//!
//! The socket is ours. tokio-postgres's `Config::connect` resolves, connects, negotiates TLS and
//! authenticates in one call, so neither the timings nor the error could tell a refused TCP
//! connection from a failed handshake or a refused password. This probe resolves and connects
//! itself ([`net::open`]), then hands the stream to `Config::connect_raw` with a TLS connector
//! wrapped to mark the moment the handshake ends. The handshake stays the library's (it follows
//! Postgres's `SSLRequest` and needs the channel binding of the stream it makes), so it gets our
//! TLS config through [`net::Recording`], which still reports the chain's expiry; the negotiated
//! TLS version is not known. The phases are:
//!
//! - `resolve`: the host name to addresses (not for an IP address);
//! - `connect`: the TCP connection;
//! - `tls`: the `SSLRequest` exchange and the TLS handshake (absent with `sslmode = "disable"`;
//!   with `"prefer"` against a server without TLS it also covers the startup, since the library
//!   does not say when it fell back);
//! - `startup`: the startup message, authentication, and the server's parameters;
//! - `query`: the configured query;
//! - `schema`: the goose check, when configured.
//!
//! The server's first answer is checked before tokio-postgres reads it (`FirstReply`): the
//! library would read an HTTP server's `HTTP/1.1 400` as the header of a 1.4 GB message and wait
//! for it until the timeout, where this fails at once as `protocol`, quoting what was said.
//!
//! Queries use the simple query protocol only, never named prepared statements: through PgBouncer
//! in transaction mode those fail when the statement's two halves land on different server
//! connections (106 of 160 `query()` calls with 8 concurrent clients on PgBouncer 1.18).

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::exposition::MetricsWriter;
use crate::probe::schema::{Field, Gauge, Unit};
use crate::probe::{ErrorClass, Observations, Outcome, ProbeContext, ProbeResult, Value, net};
use crate::spec::{BuildContext, FieldError, FieldErrors, Keep, Secret, secret};

/// The default query: the cheapest round trip that proves a backend answers.
pub const DEFAULT_QUERY: &str = "SELECT 1";
/// The default goose version table.
pub const DEFAULT_GOOSE_TABLE: &str = "goose_db_version";
/// The default port.
pub const DEFAULT_PORT: u16 = 5432;

/// What a run observes besides the connection's facts, `null` when not reached. The library
/// does the TLS handshake and does not say which version it negotiated: `tls_version` is `null`.
pub const OBSERVATIONS: &[Field] = &[
    Field::text(
        "server_version",
        "the `server_version` the server (or pooler) reported at startup",
        "17.2",
    ),
    Field::flag("tls", "whether the session runs over TLS", true),
    Field::float("query_seconds", "time of the configured query", 0.004).unit(Unit::Seconds),
    Field::int(
        "goose_version",
        "current goose version (highest applied); `null` without `schema`",
        42,
    )
    .gauge(&Gauge {
        name: "probe_postgres_goose_version",
        help: "Current goose schema version (highest applied migration).",
        null_as: None,
    }),
    Field::flag(
        "goose_applied",
        "`is_applied` of goose's latest row; `null` without `schema`",
        true,
    ),
    Field::int(
        "goose_latest_version",
        "`version_id` of goose's latest row; `null` without `schema`",
        42,
    ),
];

// === Spec ===

/// The keys of a `kind = "postgres"` probe.
///
/// Give either `dsn` (a connection string) or `host` with `user`, `dbname` and the rest. No
/// `Debug`: a `dsn` or `password` here is still in clear.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// A connection string, URL (`postgres://user:pass@host:5432/db?sslmode=require`) or
    /// key/value (`host=... user=...`) form. Treated as a secret: it may hold the password.
    dsn: Option<String>,
    /// A file holding the connection string, relative to the config file.
    dsn_file: Option<PathBuf>,
    /// Host name or IP address (TCP only).
    host: Option<String>,
    /// Port; 5432 by default.
    port: Option<u16>,
    /// Role to log in as.
    user: Option<String>,
    /// Password, usually `${ENV}`.
    password: Option<String>,
    /// A file holding the password, relative to the config file.
    password_file: Option<PathBuf>,
    /// Database to connect to.
    dbname: Option<String>,
    /// `disable`, `prefer` (the default, as libpq) or `require`. The certificate is verified
    /// whenever TLS is used, unless `tls_verify = false`.
    sslmode: Option<SslModeSpec>,
    /// A PEM file of CA certificates to trust instead of the system's roots.
    ca_file: Option<PathBuf>,
    /// Whether to verify the server certificate (default true).
    tls_verify: Option<bool>,
    /// The query to run; `SELECT 1` by default. Sent with the simple query protocol.
    query: Option<String>,
    /// A schema precondition to check after the query: `"goose"`.
    schema: Option<SchemaKind>,
    /// goose's version table, optionally schema-qualified; `goose_db_version` by default.
    schema_table: Option<String>,
    /// The lowest acceptable goose version.
    expect_version_at_least: Option<i64>,
}

/// `sslmode`, as tokio-postgres understands it.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SslModeSpec {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it.
    Prefer,
    /// TLS or fail.
    Require,
}

/// A schema precondition.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SchemaKind {
    /// pressly/goose's version table.
    Goose,
}

impl Spec {
    /// Validates the keys into a runnable probe, reporting every problem at once.
    pub fn build(self, cx: &BuildContext) -> Result<PostgresProbe, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let config = self.connection_config(cx, &mut errors);
        let tls = net::TlsSettings::from_keys(self.tls_verify, self.ca_file.as_deref(), cx, &[])
            .kept(&mut errors);
        let query = self
            .query
            .clone()
            .unwrap_or_else(|| DEFAULT_QUERY.to_owned());
        if query.trim().is_empty() {
            errors.push(FieldError::new("query", "must not be empty"));
        }
        let schema = self.schema_check(&mut errors);
        match (config, tls) {
            (Some((config, endpoint)), Some(tls)) if errors.is_empty() => Ok(PostgresProbe {
                config,
                endpoint,
                resolver: crate::probe::net::Resolver::shared(cx),
                tls,
                query,
                schema,
            }),
            _ => Err(errors.into_vec()),
        }
    }

    /// The tokio-postgres config and the endpoint to connect to, from `dsn` or the separate keys.
    fn connection_config(
        &self,
        cx: &BuildContext,
        errors: &mut FieldErrors,
    ) -> Option<(tokio_postgres::Config, Endpoint)> {
        let password = secret::resolve_optional(
            "password",
            self.password.clone(),
            self.password_file.as_deref(),
            cx,
        )
        .kept(errors)
        .flatten();
        let dsn = secret::resolve("dsn", self.dsn.clone(), self.dsn_file.as_deref(), cx)
            .kept(errors)
            .flatten();
        let mut config = match dsn {
            Some(dsn) => self.config_from_dsn(&dsn, errors)?,
            None => self.config_from_keys(errors)?,
        };
        if let Some(password) = password {
            if config.get_password().is_some() {
                errors.push(FieldError::new(
                    "password",
                    "the dsn already holds a password; give it in one place",
                ));
            }
            config.password(password.expose());
        }
        if config.get_application_name().is_none() {
            // Shows up in pg_stat_activity and PgBouncer's SHOW CLIENTS; Neon's pooler accepts it.
            config.application_name("honeyguide");
        }
        let endpoint = endpoint_of(&config, errors)?;
        Some((config, endpoint))
    }

    fn config_from_dsn(
        &self,
        dsn: &Secret,
        errors: &mut FieldErrors,
    ) -> Option<tokio_postgres::Config> {
        let separate = [
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("user", self.user.is_some()),
            ("dbname", self.dbname.is_some()),
            ("sslmode", self.sslmode.is_some()),
        ];
        for (key, set) in separate {
            if set {
                errors.push(FieldError::new(
                    key,
                    format!("give `{key}` inside the dsn, or drop the dsn and use separate keys"),
                ));
            }
        }
        match tokio_postgres::Config::from_str(dsn.expose()) {
            Ok(config) => Some(config),
            Err(error) => {
                // The dsn is a secret: keep only the library's words that cannot quote it.
                let hint = if net::describe_chain(&error).contains("sslmode") {
                    " (sslmode must be disable, prefer or require; certificates are verified \
                     unless tls_verify = false)"
                } else {
                    ""
                };
                errors.push(FieldError::new(
                    "dsn",
                    format!("cannot parse the dsn: {}{hint}", dsn_problem(&error)),
                ));
                None
            }
        }
    }

    fn config_from_keys(&self, errors: &mut FieldErrors) -> Option<tokio_postgres::Config> {
        let mut config = tokio_postgres::Config::new();
        let mut complete = true;
        for (key, value) in [
            ("host", &self.host),
            ("user", &self.user),
            ("dbname", &self.dbname),
        ] {
            match value.as_deref().map(str::trim) {
                Some(value) if !value.is_empty() => {}
                _ => {
                    errors.push(FieldError::new(
                        key,
                        format!("missing `{key}` (or give a `dsn`)"),
                    ));
                    complete = false;
                }
            }
        }
        if !complete {
            return None;
        }
        config
            .host(self.host.as_deref().unwrap_or_default())
            .port(self.port.unwrap_or(DEFAULT_PORT))
            .user(self.user.as_deref().unwrap_or_default())
            .dbname(self.dbname.as_deref().unwrap_or_default())
            .ssl_mode(match self.sslmode.unwrap_or(SslModeSpec::Prefer) {
                SslModeSpec::Disable => SslMode::Disable,
                SslModeSpec::Prefer => SslMode::Prefer,
                SslModeSpec::Require => SslMode::Require,
            });
        Some(config)
    }

    fn schema_check(&self, errors: &mut FieldErrors) -> Option<GooseCheck> {
        let Some(SchemaKind::Goose) = self.schema else {
            for (key, set) in [
                ("schema_table", self.schema_table.is_some()),
                (
                    "expect_version_at_least",
                    self.expect_version_at_least.is_some(),
                ),
            ] {
                if set {
                    errors.push(FieldError::new(
                        key,
                        format!("`{key}` needs `schema = \"goose\"`"),
                    ));
                }
            }
            return None;
        };
        let table = self
            .schema_table
            .clone()
            .unwrap_or_else(|| DEFAULT_GOOSE_TABLE.to_owned());
        if !is_table_name(&table) {
            errors.push(FieldError::new(
                "schema_table",
                format!(
                    "`{table}` is not a table name like `goose_db_version` or `public.goose_db_version`"
                ),
            ));
            return None;
        }
        Some(GooseCheck {
            table,
            expect_at_least: self.expect_version_at_least,
        })
    }
}

/// `name` or `schema.name`, each a plain SQL identifier. goose creates its table unquoted, so the
/// name is used unquoted too (folded to lower case the same way); the strict alphabet is what
/// makes that safe to splice into the query.
fn is_table_name(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// The one TCP endpoint of a config, or the reason there is not exactly one.
fn endpoint_of(config: &tokio_postgres::Config, errors: &mut FieldErrors) -> Option<Endpoint> {
    let key = "dsn";
    let host = match config.get_hosts() {
        [Host::Tcp(host)] => host.clone(),
        [] => {
            errors.push(FieldError::new(key, "the dsn names no host"));
            return None;
        }
        [_] => {
            errors.push(FieldError::new(
                key,
                "unix sockets are not supported: a probe checks the network path, give a TCP host",
            ));
            return None;
        }
        _ => {
            errors.push(FieldError::new(
                key,
                "give one host per probe, so that each endpoint is checked and reported on its own",
            ));
            return None;
        }
    };
    if !config.get_hostaddrs().is_empty() {
        errors.push(FieldError::new(
            key,
            "`hostaddr` is not supported: the host name is resolved and sent as TLS SNI",
        ));
        return None;
    }
    let port = match config.get_ports() {
        [] => DEFAULT_PORT,
        [port] => *port,
        _ => {
            errors.push(FieldError::new(key, "give one port"));
            return None;
        }
    };
    Some(Endpoint { host, port })
}

// === PostgresProbe ===

/// A built `postgres` probe.
pub struct PostgresProbe {
    /// Holds the password: never printed (see the `Debug` impl).
    config: tokio_postgres::Config,
    endpoint: Endpoint,
    resolver: net::Resolver,
    tls: net::TlsSettings,
    query: String,
    schema: Option<GooseCheck>,
}

#[derive(Clone, Debug)]
struct Endpoint {
    host: String,
    port: u16,
}

impl fmt::Debug for PostgresProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresProbe")
            .field("target", &self.target())
            .field("sslmode", &self.config.get_ssl_mode())
            .field("query", &self.query)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresProbe {
    /// Makes one attempt on a fresh connection, and closes it.
    pub async fn run(&self, ctx: &ProbeContext) -> Outcome {
        let mut observations = Observations::new();
        for key in [
            "server_version",
            "tls",
            "goose_version",
            "goose_applied",
            "query_seconds",
        ] {
            observations.insert(key.to_owned(), Value::Null);
        }
        let outcome = match self.attempt(ctx, &mut observations).await {
            Ok(message) => Outcome::success(message),
            Err(failure) => failure,
        };
        outcome.with_all(observations)
    }

    /// What is probed: `host:port/dbname`, never the user's password.
    pub fn target(&self) -> String {
        format!(
            "{}:{}/{}",
            self.endpoint.host,
            self.endpoint.port,
            self.config.get_dbname().unwrap_or_default()
        )
    }

    async fn attempt(
        &self,
        ctx: &ProbeContext,
        observations: &mut Observations,
    ) -> Result<String, Outcome> {
        let stream = net::open(
            ctx,
            &self.resolver,
            &self.endpoint.host,
            self.endpoint.port,
            None,
        )
        .await?;

        let ssl_request = self.config.get_ssl_mode() != SslMode::Disable;
        let stream = FirstReply::new(stream, ssl_request);
        let established = Arc::new(AtomicBool::new(false));
        let recording = self.tls.recording();
        let mut make_tls = MakeRustlsConnect::new((*recording.config()).clone());
        let Ok(connector) = MakeTlsConnect::<FirstReply<TcpStream>>::make_tls_connect(
            &mut make_tls,
            &self.endpoint.host,
        );
        let tls = TimedTls {
            inner: connector,
            ctx: ctx.clone(),
            established: established.clone(),
        };
        ctx.phase(if ssl_request { "tls" } else { "startup" });
        let connected = self.config.connect_raw(stream, tls).await;
        recording.observe(ctx);
        let tls_used = established.load(Ordering::Relaxed);
        observations.insert("tls".to_owned(), Value::Bool(tls_used));
        let (client, connection) = connected.map_err(|error| {
            startup_failure(&error, ctx.current_phase() == Some("tls") && !tls_used)
        })?;
        if let Some(version) = connection.parameter("server_version") {
            observations.insert("server_version".to_owned(), Value::from(version));
        }

        // The connection future carries every message; it is driven here, in the probe's own
        // task, so that a timeout (which aborts the task) drops the socket with it. Dropping the
        // client at the end of `work` makes the connection send Terminate and finish.
        let work = async move {
            let result = self.queries(&client, ctx, observations).await;
            drop(client);
            result
        };
        let (_closed, result) = tokio::join!(connection, work);
        result
    }

    async fn queries(
        &self,
        client: &tokio_postgres::Client,
        ctx: &ProbeContext,
        observations: &mut Observations,
    ) -> Result<String, Outcome> {
        ctx.phase("query");
        let started = Instant::now();
        client
            .simple_query(&self.query)
            .await
            .map_err(|error| query_failure(&error, "query failed"))?;
        let query_seconds = started.elapsed().as_secs_f64();
        observations.insert("query_seconds".to_owned(), Value::Float(query_seconds));
        let tls = if observations.get("tls") == Some(&Value::Bool(true)) {
            "TLS"
        } else {
            "no TLS"
        };
        let mut message = format!("query answered in {:.1} ms ({tls})", query_seconds * 1000.0);
        if let Some(goose) = &self.schema {
            ctx.phase("schema");
            let version = goose.check(client, observations).await?;
            message.push_str(&format!(", goose version {version}"));
        }
        ctx.end_phase();
        Ok(message)
    }
}

// === the server's first reply ===

/// The longest first message a Postgres server (or pooler) sends after the startup message: an
/// authentication request, an error or a protocol negotiation, a few hundred bytes in practice.
const FIRST_MESSAGE_MAX: u32 = 64 * 1024;
/// How much of a wrong server's answer the message quotes.
const EXCERPT_BYTES: usize = 48;

/// What the server's first bytes must be, until they have been seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The one-byte answer to `SSLRequest`: `S` (TLS follows), `N` (no TLS), or `E` (a server
    /// so old that it answers with an error message).
    SslResponse,
    /// The header of the first message after the startup message: a tag and a length.
    FirstMessage,
    /// Seen and plausible: from here on the bytes pass unchecked.
    Done,
}

/// Checks the first bytes the server sends before tokio-postgres reads them.
///
/// tokio-postgres reads a message header and then waits for as many bytes as it says: an HTTP
/// server's `HTTP/1.1 400` reads as a message of 1.4 GB, and a server that keeps the connection
/// open makes the probe wait for its whole timeout. A Postgres server's first answer is one
/// of a few bytes; anything else fails the read at once with [`NotPostgres`]. Only plaintext is
/// checked: after `S` the TLS handshake (rustls) judges what comes.
struct FirstReply<S> {
    inner: S,
    expect: Expect,
    /// Bytes of the first message header seen so far (tag and length).
    header: Vec<u8>,
    /// The start of what the server sent while checking, for the message.
    heard: Vec<u8>,
    /// Bytes read from the server while checking that the caller has not taken yet.
    pending: Vec<u8>,
}

/// The server's first bytes are not Postgres's.
#[derive(Debug, thiserror::Error)]
#[error("not a Postgres server: it answered {}", crate::text::excerpt(.heard, EXCERPT_BYTES))]
struct NotPostgres {
    heard: Vec<u8>,
}

impl<S> FirstReply<S> {
    fn new(inner: S, ssl_request: bool) -> Self {
        Self {
            inner,
            expect: if ssl_request {
                Expect::SslResponse
            } else {
                Expect::FirstMessage
            },
            header: Vec::with_capacity(5),
            heard: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Runs the checks over newly read bytes; `Err` as soon as one fails.
    fn check(&mut self, bytes: &[u8]) -> Result<(), NotPostgres> {
        let room = (EXCERPT_BYTES + 1).saturating_sub(self.heard.len());
        self.heard
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        for &byte in bytes {
            match self.expect {
                Expect::Done => return Ok(()),
                Expect::SslResponse => match byte {
                    b'S' => self.expect = Expect::Done,
                    b'N' => self.expect = Expect::FirstMessage,
                    b'E' => {
                        self.header.push(byte);
                        self.expect = Expect::FirstMessage;
                    }
                    _ => return Err(self.not_postgres()),
                },
                Expect::FirstMessage => {
                    self.header.push(byte);
                    if self.header.len() == 5 {
                        if !plausible_first_message(&self.header) {
                            return Err(self.not_postgres());
                        }
                        self.expect = Expect::Done;
                    }
                }
            }
        }
        Ok(())
    }

    fn not_postgres(&self) -> NotPostgres {
        NotPostgres {
            heard: self.heard.clone(),
        }
    }
}

/// Authentication (`R`), an error (`E`), a notice (`N`) or protocol negotiation (`v`), with a
/// length that counts itself and is not absurd.
fn plausible_first_message(header: &[u8]) -> bool {
    let [tag, a, b, c, d] = header else {
        return false;
    };
    let length = u32::from_be_bytes([*a, *b, *c, *d]);
    matches!(tag, b'R' | b'E' | b'N' | b'v') && (4..=FIRST_MESSAGE_MAX).contains(&length)
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstReply<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pending.is_empty() && this.expect != Expect::Done {
            // Read ahead into our own buffer: tokio-postgres asks for the SSL answer one byte
            // at a time, and the message should quote more than one byte.
            let mut chunk = [0u8; 256];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let bytes = read.filled();
            if bytes.is_empty() {
                // The server hung up: an empty read tells the caller so.
                return Poll::Ready(Ok(()));
            }
            if let Err(wrong) = this.check(bytes) {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, wrong)));
            }
            this.pending.extend_from_slice(bytes);
        }
        if this.pending.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let take = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..take]);
        this.pending.drain(..take);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstReply<S> {
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

// === TLS phase marker ===

/// Wraps the rustls connector to end the `tls` phase the moment the handshake completes, and to
/// record that TLS was actually used (with `sslmode = prefer` the server may decline it).
struct TimedTls<T> {
    inner: T,
    ctx: ProbeContext,
    established: Arc<AtomicBool>,
}

impl<S, T> TlsConnect<S> for TimedTls<T>
where
    T: TlsConnect<S, Error = io::Error>,
    T::Future: Send + 'static,
    T::Stream: Send + 'static,
{
    type Stream = T::Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<T::Stream>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let handshake = self.inner.connect(stream);
        let ctx = self.ctx;
        let established = self.established;
        Box::pin(async move {
            let stream = handshake.await?;
            established.store(true, Ordering::Relaxed);
            ctx.phase("startup");
            Ok(stream)
        })
    }
}

// === goose ===

/// The goose precondition: the version table exists, its latest row is applied, and the current
/// version is recent enough.
#[derive(Clone, Debug)]
struct GooseCheck {
    table: String,
    expect_at_least: Option<i64>,
}

/// What goose's table says, read in one round trip.
#[derive(Clone, Debug, PartialEq, Eq)]
struct GooseState {
    /// `version_id` and `is_applied` of the most recent row (highest `id`).
    latest: Option<(i64, bool)>,
    /// The highest version whose most recent row is applied (goose's legacy `GetDBVersion`).
    current: Option<i64>,
}

impl GooseCheck {
    /// The current version derived as goose's own `EnsureDBVersion` does: the most recent row per
    /// version decides whether that version is applied, and the current version is the highest
    /// applied one. Rows with `is_applied = false` come from goose before v3.5 rolling back; current
    /// goose deletes the row instead, which the same query handles.
    fn sql(&self) -> String {
        let table = &self.table;
        format!(
            "SELECT \
               (SELECT version_id FROM {table} ORDER BY id DESC LIMIT 1), \
               (SELECT is_applied FROM {table} ORDER BY id DESC LIMIT 1), \
               (SELECT max(version_id) FROM \
                  (SELECT DISTINCT ON (version_id) version_id, is_applied \
                   FROM {table} ORDER BY version_id, id DESC) AS latest_per_version \
                WHERE is_applied)"
        )
    }

    async fn check(
        &self,
        client: &tokio_postgres::Client,
        observations: &mut Observations,
    ) -> Result<i64, Outcome> {
        let messages = client.simple_query(&self.sql()).await.map_err(|error| {
            if error.code() == Some(&SqlState::UNDEFINED_TABLE) {
                Outcome::failure(
                    ErrorClass::Schema,
                    format!(
                        "goose table {} does not exist: migrations never ran against this database",
                        self.table
                    ),
                )
            } else {
                query_failure(&error, "goose check failed")
            }
        })?;
        let state = parse_goose_row(&messages).ok_or_else(|| {
            Outcome::failure(
                ErrorClass::Protocol,
                format!("goose check: unexpected answer reading {}", self.table),
            )
        })?;
        observations.insert("goose_version".to_owned(), Value::from(state.current));
        observations.insert(
            "goose_applied".to_owned(),
            Value::from(state.latest.map(|(_, applied)| applied)),
        );
        observations.insert(
            "goose_latest_version".to_owned(),
            Value::from(state.latest.map(|(version, _)| version)),
        );
        self.judge(&state)
    }

    /// The verdict on a read state: the current version, or why the precondition fails.
    fn judge(&self, state: &GooseState) -> Result<i64, Outcome> {
        let table = &self.table;
        let schema = |message: String| Outcome::failure(ErrorClass::Schema, message);
        let Some((latest_version, latest_applied)) = state.latest else {
            return Err(schema(format!(
                "goose table {table} is empty: migrations never completed"
            )));
        };
        if !latest_applied {
            return Err(schema(format!(
                "latest row of {table} (version {latest_version}) has is_applied = false: \
                 that migration was rolled back; run the migrate job"
            )));
        }
        let Some(current) = state.current else {
            return Err(schema(format!(
                "no applied version in {table}: run the migrate job"
            )));
        };
        if let Some(expected) = self.expect_at_least
            && current < expected
        {
            return Err(schema(format!(
                "schema version {current} is older than the expected {expected}: \
                 the migrate job has not run for this release"
            )));
        }
        Ok(current)
    }
}

fn parse_goose_row(messages: &[SimpleQueryMessage]) -> Option<GooseState> {
    let row = messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    })?;
    let int = |index: usize| -> Option<Option<i64>> {
        match row.try_get(index).ok()? {
            None => Some(None),
            Some(text) => text.parse().ok().map(Some),
        }
    };
    let latest_version = int(0)?;
    let latest_applied = match row.try_get(1).ok()? {
        None => None,
        Some("t") => Some(true),
        Some("f") => Some(false),
        Some(_) => return None,
    };
    Some(GooseState {
        latest: latest_version.zip(latest_applied),
        current: int(2)?,
    })
}

// === errors ===

/// The failure for an error out of `connect_raw`. `in_negotiation` is true when it came before a
/// TLS handshake completed, while `sslmode` asked for one.
fn startup_failure(error: &tokio_postgres::Error, in_negotiation: bool) -> Outcome {
    let io_error = net::find_source::<io::Error>(error);
    if let Some(wrong) = io_error
        .and_then(io::Error::get_ref)
        .and_then(|inner| inner.downcast_ref::<NotPostgres>())
    {
        return Outcome::failure(ErrorClass::Protocol, wrong.to_string());
    }
    if let Some(io_error) = io_error
        && io_error
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>())
    {
        return net::tls_failure(io_error);
    }
    if let Some(db) = error.as_db_error() {
        return session_refused(db);
    }
    let detail = net::describe_chain(error);
    if detail.contains("server does not support TLS") {
        return Outcome::failure(
            ErrorClass::Tls,
            "the server does not offer TLS, but sslmode is require",
        );
    }
    if detail.contains("password missing") {
        return Outcome::failure(
            ErrorClass::Auth,
            "the server asks for a password and none is configured",
        );
    }
    let during = if in_negotiation {
        "TLS negotiation"
    } else {
        "startup"
    };
    let detail = match net::find_source::<io::Error>(error) {
        Some(io_error) => net::describe_io(io_error),
        None => detail,
    };
    Outcome::failure(
        ErrorClass::Connect,
        format!("connection failed during {during}: {detail}"),
    )
}

/// The failure for an error the server (or pooler) sent while setting up the session.
fn session_refused(db: &tokio_postgres::error::DbError) -> Outcome {
    let code = db.code();
    let text = db.message();
    let lowered = text.to_lowercase();
    // PgBouncer answers some of these with the generic 08P01, so its wording is checked too.
    let class = if *code == SqlState::INVALID_PASSWORD
        || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        || lowered.contains("password authentication failed")
        || lowered.contains("no such user")
    {
        ErrorClass::Auth
    } else if *code == SqlState::INVALID_CATALOG_NAME || lowered.contains("no such database") {
        ErrorClass::NotFound
    } else {
        ErrorClass::Connect
    };
    let what = match class {
        ErrorClass::Auth => "authentication failed",
        ErrorClass::NotFound => "database not found",
        _ => "server refused the session",
    };
    Outcome::failure(class, format!("{what}: {text} (SQLSTATE {})", code.code()))
}

/// The failure for an error while a query ran: the server's own words when it rejected it, the
/// connection problem otherwise.
fn query_failure(error: &tokio_postgres::Error, what: &str) -> Outcome {
    match error.as_db_error() {
        Some(db) if is_connection_exception(db.code()) => Outcome::failure(
            ErrorClass::Connect,
            format!(
                "{what}: no working server connection: {} (SQLSTATE {})",
                db.message(),
                db.code().code()
            ),
        ),
        Some(db) => Outcome::failure(
            ErrorClass::Query,
            format!("{what}: {} (SQLSTATE {})", db.message(), db.code().code()),
        ),
        None => {
            let detail = match net::find_source::<io::Error>(error) {
                Some(io_error) => net::describe_io(io_error),
                None => net::describe_chain(error),
            };
            Outcome::failure(
                ErrorClass::Connect,
                format!("{what}: connection lost: {detail}"),
            )
        }
    }
}

/// SQLSTATE class 08 (connection exception) and the 57P0x shutdowns: the session has no backend
/// to run on. A pooler says so when it cannot reach the server (PgBouncer's `query_wait_timeout`
/// is 08P01), and a server that is shutting down or starting up says 57P01..57P03.
fn is_connection_exception(code: &SqlState) -> bool {
    let code = code.code();
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

// === metrics ===

/// Writes `probe_postgres_duration_seconds{probe,phase}` and `probe_postgres_goose_version`.
pub fn write_metrics(probes: &[(&str, &ProbeResult)], out: &mut MetricsWriter) {
    for (name, result) in probes {
        for (phase, duration) in &result.phases {
            out.gauge(
                "probe_postgres_duration_seconds",
                "Duration of each phase of the last Postgres probe run, in seconds.",
                &[("probe", name), ("phase", phase)],
                duration.as_secs_f64(),
            );
        }
    }
}

/// What is wrong with a dsn, in words that cannot quote it: tokio-postgres names an option
/// whose value is invalid (a fixed name), but quotes an unknown option's name and the character
/// where a key/value dsn stopped parsing, which may be part of a password.
fn dsn_problem(error: &tokio_postgres::Error) -> String {
    let message = net::describe_chain(error);
    if let Some(option) = message
        .split("invalid value for option `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
    {
        return format!("invalid value for option `{option}`");
    }
    if message.contains("unknown option") {
        "it names an unknown option (not shown: the dsn may hold a password)".to_owned()
    } else if message.contains("unexpected character") || message.contains("unexpected EOF") {
        "it is not `key=value` pairs or a postgres:// URL".to_owned()
    } else if message.contains("unterminated quoted") {
        "a quoted value is not closed".to_owned()
    } else {
        "it is not a connection string (not shown: it may hold a password)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expect_at_least: Option<i64>) -> GooseCheck {
        GooseCheck {
            table: DEFAULT_GOOSE_TABLE.to_owned(),
            expect_at_least,
        }
    }

    #[test]
    fn table_names_are_plain_identifiers() {
        assert!(is_table_name("goose_db_version"));
        assert!(is_table_name("public.goose_db_version"));
        assert!(!is_table_name("goose; drop table x"));
        assert!(!is_table_name("a.b.c"));
        assert!(!is_table_name("\"quoted\""));
        assert!(!is_table_name(""));
    }

    #[test]
    fn goose_verdicts_name_the_problem() {
        let applied = GooseState {
            latest: Some((20240102, true)),
            current: Some(20240102),
        };
        assert_eq!(check(Some(20240101)).judge(&applied), Ok(20240102));

        let too_old = check(Some(20250101)).judge(&applied).unwrap_err();
        assert_eq!(too_old.error, Some(ErrorClass::Schema));
        assert_eq!(
            too_old.message,
            "schema version 20240102 is older than the expected 20250101: \
             the migrate job has not run for this release"
        );

        let rolled_back = GooseState {
            latest: Some((20240102, false)),
            current: Some(20240101),
        };
        assert_eq!(
            check(None).judge(&rolled_back).unwrap_err().message,
            "latest row of goose_db_version (version 20240102) has is_applied = false: \
             that migration was rolled back; run the migrate job"
        );

        let empty = GooseState {
            latest: None,
            current: None,
        };
        assert_eq!(
            check(None).judge(&empty).unwrap_err().message,
            "goose table goose_db_version is empty: migrations never completed"
        );
    }

    fn build(toml_keys: &str) -> Result<PostgresProbe, Vec<FieldError>> {
        let spec: Spec = toml::from_str(toml_keys).unwrap();
        spec.build(&BuildContext::new("."))
    }

    #[test]
    fn a_dsn_password_never_reaches_target_or_debug() {
        let probe = build(
            r#"dsn = "postgres://probe:hunter2@db.example:6543/app?sslmode=require"
               tls_verify = false"#,
        )
        .unwrap();
        assert_eq!(probe.target(), "db.example:6543/app");
        let debug = format!("{probe:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn dsn_and_separate_keys_do_not_mix_and_all_problems_are_reported() {
        let errors = build(
            r#"dsn = "host=a user=b dbname=c"
               host = "x"
               schema_table = "t""#,
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|error| error.key.as_str()).collect();
        assert_eq!(keys, ["host", "schema_table"]);
    }

    #[test]
    fn separate_keys_need_host_user_and_dbname() {
        let errors = build(r#"host = "db""#).unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|error| error.key.as_str()).collect();
        assert_eq!(keys, ["user", "dbname"]);
    }

    #[test]
    fn unsupported_sslmodes_in_a_dsn_say_what_is_accepted() {
        let errors = build(r#"dsn = "host=a user=b dbname=c sslmode=verify-full""#).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .message
                .contains("sslmode must be disable, prefer or require"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn unix_socket_hosts_are_refused() {
        let errors = build(r#"dsn = "host=/var/run/postgresql user=b dbname=c""#).unwrap_err();
        assert!(
            errors[0]
                .message
                .starts_with("unix sockets are not supported")
        );
    }

    #[test]
    fn malformed_dsns_never_echo_the_password() {
        for dsn in [
            "host=a password='s3cret",
            "postgres://u:s3cret@h:notaport/db",
            "host=a password=s3cret bogus=1",
            "postgres://u:s3cret@h/db?bogus=s3cret",
        ] {
            let spec: Spec = toml::from_str(&format!("dsn = {dsn:?}")).unwrap();
            let errors = spec.build(&BuildContext::new(".")).unwrap_err();
            for error in errors {
                assert!(!error.message.contains("s3cr"), "{}", error.message);
            }
        }
    }
}
