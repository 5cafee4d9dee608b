//! The `smtp` probe kind: a mail submission server's banner, EHLO, TLS (implicit or STARTTLS)
//! and AUTH, without ever sending mail. It feeds the catalog's "Fastmail SMTP unreachable" entry.
//!
//! Each run opens a fresh connection and walks the conversation step by step: connect, (TLS),
//! banner, EHLO, (STARTTLS, TLS, EHLO again), AUTH, QUIT. `MAIL`, `RCPT` and `DATA` are never
//! sent. A failure names the step (`failed_step`), the reply code and whether it was temporary
//! (4xx) or permanent (5xx).
//!
//! Why not lettre, which the notifier uses: its transport hides the greeting text, reads replies
//! inside one opaque `connect`, pools connections by default (so a later run may reuse an
//! authenticated session and test nothing), and reports errors without the step they happened
//! in. The part of SMTP a probe needs is a few lines of line-oriented protocol, so it is written
//! here directly over the sockets of [`net`] (resolve, connect, TLS handshake, as every kind does
//! them), where every step can be timed and named.
//!
//! When `tls = "starttls"` and the server does not offer STARTTLS, the probe fails: it never
//! continues, let alone authenticates, in plaintext.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::exposition::MetricsWriter;
use crate::probe::schema::{Field, Gauge};
use crate::probe::{ErrorClass, Outcome, ProbeContext, ProbeResult, net};
use crate::spec::secret::{self, Credentials};
use crate::spec::{BuildContext, FieldError, FieldErrors, Keep};

/// Longest reply line accepted (RFC 5321 allows 512 octets; servers send more in practice).
const MAX_LINE: u64 = 4096;
/// Most lines in one multi-line reply (an EHLO lists a dozen extensions).
const MAX_LINES: usize = 100;

/// What a run observes besides the connection's facts; `null` when not reached.
pub const OBSERVATIONS: &[Field] = &[
    Field::text(
        "banner",
        "the greeting text after `220`; multi-line greetings are joined with ` / `",
        "smtp.fastmail.com ESMTP ready",
    ),
    Field::int(
        "reply_code",
        "the last reply code read (`221` after a clean run, `535` after a refused AUTH, …)",
        221,
    )
    .gauge(&Gauge {
        name: "honeyguide_smtp_reply_code",
        help: "The last SMTP reply code of the run.",
        null_as: None,
    }),
    Field::texts(
        "extensions",
        "the EHLO keywords with their parameters (`AUTH PLAIN LOGIN`, `SIZE 71000000`, …), \
         those offered after TLS",
        &["AUTH PLAIN LOGIN", "8BITMIME"],
    ),
    Field::text(
        "auth_mechanism",
        "`PLAIN` or `LOGIN`, when AUTH ran",
        "PLAIN",
    ),
    Field::text(
        "failed_step",
        "`connect`, `tls`, `banner`, `ehlo`, `starttls`, `auth` or `quit`",
        "auth",
    )
    .failure_only(),
    Field::flag(
        "temporary",
        "whether the failing reply was `4xx` (retry later); `false` for `5xx`, `null` when no \
         reply code was involved",
        false,
    )
    .failure_only(),
];

// === Spec ===

/// The keys of a `kind = "smtp"` probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The server, e.g. `smtp.fastmail.com`.
    host: String,
    /// Port (default 465 for `implicit`, 587 for `starttls`, 25 for `none`).
    port: Option<u16>,
    /// `implicit` (TLS from the first byte, port 465), `starttls` (upgrade after EHLO, port
    /// 587), or `none` (plaintext, for internal relays and tests). Required: there is no safe
    /// default for a submission server.
    tls: Option<TlsMode>,
    /// AUTH user name; absent or empty means no AUTH step.
    username: Option<String>,
    /// AUTH password (usually `${ENV}`); at most one of `password` and `password_file`.
    password: Option<String>,
    /// File holding the AUTH password.
    password_file: Option<PathBuf>,
    /// Verify the server certificate (default true).
    tls_verify: Option<bool>,
    /// CA certificates (PEM) to verify the server with, instead of the system roots.
    ca_file: Option<PathBuf>,
    /// The name sent with EHLO (default: this machine's host name).
    helo_name: Option<String>,
}

/// How the connection is protected.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TlsMode {
    /// TLS from the first byte (SMTPS, RFC 8314).
    Implicit,
    /// Plaintext greeting and EHLO, then `STARTTLS` (RFC 3207); required, never skipped.
    Starttls,
    /// No TLS at all.
    None,
}

impl TlsMode {
    fn default_port(self) -> u16 {
        match self {
            TlsMode::Implicit => 465,
            TlsMode::Starttls => 587,
            TlsMode::None => 25,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            TlsMode::Implicit => "implicit TLS",
            TlsMode::Starttls => "STARTTLS",
            TlsMode::None => "no TLS",
        }
    }
}

impl Spec {
    /// Validates the keys into a runnable probe.
    pub fn build(self, cx: &BuildContext) -> Result<SmtpProbe, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let host = self.host.trim().to_owned();
        // Checked here so that a bad name is a load error; the handshake checks it again.
        if host.is_empty() || ServerName::try_from(host.as_str()).is_err() {
            errors.push(FieldError::new(
                "host",
                format!("`{host}` is not a host name or IP address"),
            ));
        }
        if self.tls.is_none() {
            errors.push(FieldError::new(
                "tls",
                "choose `tls = \"implicit\"` (port 465) or `tls = \"starttls\"` (port 587); \
                 `\"none\"` is for internal relays only",
            ));
        }
        let mode = self.tls.unwrap_or(TlsMode::Implicit);
        if self.port == Some(0) {
            errors.push(FieldError::new("port", "must be between 1 and 65535"));
        }

        let password =
            match secret::resolve("password", self.password, self.password_file.as_deref(), cx) {
                Ok(password) => password,
                Err(error) => {
                    errors.push(error);
                    None
                }
            };
        // Empty user name and password (the `${VAR:-}` defaults) mean "no AUTH".
        let credentials = match secret::credentials("username", self.username, "password", password)
        {
            Ok(credentials) => credentials,
            Err(error) => {
                errors.push(error);
                None
            }
        };
        if credentials.is_some() && mode == TlsMode::None {
            errors.push(FieldError::new(
                "username",
                "refusing to send credentials without TLS; use `tls = \"implicit\"` or \
                 `\"starttls\"`",
            ));
        }

        let helo_name = self
            .helo_name
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|| lettre::transport::smtp::extension::ClientId::default().to_string());
        if helo_name.is_empty() || helo_name.contains(char::is_whitespace) {
            errors.push(FieldError::new(
                "helo_name",
                format!("`{helo_name}` is not a host name"),
            ));
        }

        let tls = net::TlsSettings::from_keys(self.tls_verify, self.ca_file.as_deref(), cx, &[])
            .kept(&mut errors);

        match tls {
            Some(tls) if errors.is_empty() => Ok(SmtpProbe {
                port: self.port.unwrap_or(mode.default_port()),
                host,
                mode,
                credentials,
                helo_name,
                resolver: crate::probe::net::Resolver::shared(cx),
                tls,
            }),
            _ => Err(errors.into_vec()),
        }
    }
}

// === probe ===

/// A built `smtp` probe.
#[derive(Debug)]
pub struct SmtpProbe {
    host: String,
    port: u16,
    mode: TlsMode,
    credentials: Option<Credentials>,
    helo_name: String,
    resolver: net::Resolver,
    tls: net::TlsSettings,
}

/// The steps of the conversation, as `failed_step` and phase names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Connect,
    Tls,
    Banner,
    Ehlo,
    Starttls,
    Auth,
    Quit,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::Tls => "tls",
            Step::Banner => "banner",
            Step::Ehlo => "ehlo",
            Step::Starttls => "starttls",
            Step::Auth => "auth",
            Step::Quit => "quit",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One SMTP reply: the code and the text of each line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// `535 5.7.8 Authentication credentials invalid (permanent)`.
    fn describe(&self) -> String {
        let text = self.lines.join(" / ");
        let kind = match self.code {
            400..=499 => " (temporary)",
            500..=599 => " (permanent)",
            _ => "",
        };
        if text.is_empty() {
            format!("{}{kind}", self.code)
        } else {
            format!("{} {text}{kind}", self.code)
        }
    }
}

/// Why a reply could not be read.
#[derive(Debug)]
enum ReadError {
    /// The server closed the connection.
    Closed,
    /// Bytes that are not an SMTP reply.
    Garbled(String),
    /// A transport error.
    Io(std::io::Error),
}

/// What the conversation saw so far; becomes the observations, whatever the verdict. (What the
/// connection saw, such as the certificate's expiry, [`net`] observes itself.)
#[derive(Debug, Default)]
struct Transcript {
    banner: Option<String>,
    reply_code: Option<u16>,
    extensions: Vec<String>,
    auth_mechanism: Option<&'static str>,
}

/// A failed step: what to report.
struct Failure {
    step: Step,
    outcome: Outcome,
    temporary: Option<bool>,
}

impl Failure {
    fn new(step: Step, class: ErrorClass, detail: impl fmt::Display) -> Self {
        Self {
            step,
            outcome: Outcome::failure(class, format!("{step}: {detail}")),
            temporary: None,
        }
    }

    fn from_outcome(step: Step, outcome: Outcome) -> Self {
        let message = format!("{step}: {}", outcome.message);
        Self {
            step,
            outcome: Outcome { message, ..outcome },
            temporary: None,
        }
    }

    /// A negative or unexpected reply: the class, plus whether the server called it temporary.
    fn reply(step: Step, class: ErrorClass, expected: &str, reply: &Reply) -> Self {
        Self {
            temporary: Some(reply.is_temporary()),
            ..Self::new(
                step,
                class,
                format!("expected {expected}, got {}", reply.describe()),
            )
        }
    }

    fn read(step: Step, error: ReadError) -> Self {
        match error {
            ReadError::Closed => Self::closed(step),
            ReadError::Garbled(line) => Self::new(
                step,
                ErrorClass::Protocol,
                format!("not an SMTP reply: {line:?}"),
            ),
            ReadError::Io(error) if closed_by_peer(&error) => Self::closed(step),
            ReadError::Io(error) => {
                Self::from_outcome(step, net::io_failure(&error, "read", ErrorClass::Protocol))
            }
        }
    }

    fn write(step: Step, error: &std::io::Error) -> Self {
        if closed_by_peer(error) {
            return Self::closed(step);
        }
        Self::from_outcome(step, net::io_failure(error, "write", ErrorClass::Protocol))
    }

    /// The server hung up mid-conversation. Whether that shows as an empty read, a reset or a
    /// broken pipe depends on timing, so all of them read the same.
    fn closed(step: Step) -> Self {
        Self::new(
            step,
            ErrorClass::Protocol,
            "server closed the connection without a reply",
        )
    }
}

/// The connection, before or after TLS.
enum Connection {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<TlsStream<TcpStream>>>),
}

impl Connection {
    async fn read_reply(&mut self) -> Result<Reply, ReadError> {
        match self {
            Connection::Plain(stream) => read_reply(stream).await,
            Connection::Tls(stream) => read_reply(stream.as_mut()).await,
        }
    }

    async fn send(&mut self, line: &str) -> std::io::Result<()> {
        match self {
            Connection::Plain(stream) => send_line(stream, line).await,
            Connection::Tls(stream) => send_line(stream.as_mut(), line).await,
        }
    }
}

impl SmtpProbe {
    /// Makes one attempt: a fresh connection through every step, then QUIT.
    pub async fn run(&self, ctx: &ProbeContext) -> Outcome {
        let mut transcript = Transcript::default();
        let result = self.converse(ctx, &mut transcript).await;
        ctx.end_phase();
        let (outcome, failed_step, temporary) = match result {
            Ok(()) => (
                Outcome::success(self.success_message(&transcript)),
                None,
                None,
            ),
            Err(failure) => (
                failure.outcome,
                Some(failure.step.as_str()),
                failure.temporary,
            ),
        };
        outcome
            .with("banner", transcript.banner)
            .with("reply_code", transcript.reply_code)
            .with("extensions", transcript.extensions)
            .with("auth_mechanism", transcript.auth_mechanism)
            .with("failed_step", failed_step)
            .with("temporary", temporary)
    }

    /// What is probed, for humans: `host:port (implicit TLS)`.
    pub fn target(&self) -> String {
        format!("{}:{} ({})", self.host, self.port, self.mode.describe())
    }

    fn success_message(&self, transcript: &Transcript) -> String {
        let auth = match transcript.auth_mechanism {
            Some(mechanism) => format!(", AUTH {mechanism} accepted"),
            None => String::new(),
        };
        let banner = transcript.banner.as_deref().unwrap_or_default();
        format!("{}: 220 {banner}{auth}", self.mode.describe())
    }

    async fn converse(
        &self,
        ctx: &ProbeContext,
        transcript: &mut Transcript,
    ) -> Result<(), Failure> {
        let tcp = net::open(ctx, &self.resolver, &self.host, self.port, None)
            .await
            .map_err(|outcome| Failure::from_outcome(Step::Connect, outcome))?;
        let mut connection = match self.mode {
            TlsMode::Implicit => self.handshake(ctx, tcp).await?,
            TlsMode::Starttls | TlsMode::None => Connection::Plain(BufReader::new(tcp)),
        };

        ctx.phase("banner");
        let banner = expect(&mut connection, Step::Banner, 220, transcript).await?;
        transcript.banner = Some(banner.lines.join(" / "));

        ctx.phase("ehlo");
        self.ehlo(&mut connection, transcript).await?;

        if self.mode == TlsMode::Starttls {
            connection = self.starttls(ctx, connection, transcript).await?;
            ctx.phase("ehlo");
            self.ehlo(&mut connection, transcript).await?;
        }

        if let Some(credentials) = &self.credentials {
            ctx.phase("auth");
            authenticate(&mut connection, credentials, transcript).await?;
        }

        ctx.phase("quit");
        connection
            .send("QUIT")
            .await
            .map_err(|error| Failure::write(Step::Quit, &error))?;
        expect(&mut connection, Step::Quit, 221, transcript).await?;
        Ok(())
    }

    async fn handshake(&self, ctx: &ProbeContext, tcp: TcpStream) -> Result<Connection, Failure> {
        let stream = net::tls_handshake(ctx, &self.tls, tcp, &self.host)
            .await
            .map_err(|outcome| Failure::from_outcome(Step::Tls, outcome))?;
        Ok(Connection::Tls(Box::new(BufReader::new(stream))))
    }

    async fn ehlo(
        &self,
        connection: &mut Connection,
        transcript: &mut Transcript,
    ) -> Result<(), Failure> {
        connection
            .send(&format!("EHLO {}", self.helo_name))
            .await
            .map_err(|error| Failure::write(Step::Ehlo, &error))?;
        let reply = expect(connection, Step::Ehlo, 250, transcript).await?;
        // The first line is the server's name; the rest are its extensions. After STARTTLS the
        // list is replaced, never merged: what was offered in plaintext no longer counts.
        transcript.extensions = reply.lines.iter().skip(1).cloned().collect();
        Ok(())
    }

    async fn starttls(
        &self,
        ctx: &ProbeContext,
        mut connection: Connection,
        transcript: &mut Transcript,
    ) -> Result<Connection, Failure> {
        ctx.phase("starttls");
        if !has_extension(&transcript.extensions, "STARTTLS") {
            return Err(Failure::new(
                Step::Starttls,
                ErrorClass::Tls,
                "server does not offer STARTTLS; refusing to continue in plaintext",
            ));
        }
        connection
            .send("STARTTLS")
            .await
            .map_err(|error| Failure::write(Step::Starttls, &error))?;
        expect(&mut connection, Step::Starttls, 220, transcript).await?;
        let Connection::Plain(reader) = connection else {
            return Err(Failure::new(
                Step::Starttls,
                ErrorClass::Internal,
                "STARTTLS on a connection that is already TLS",
            ));
        };
        // Anything the server sent after its 220 and before the handshake would be read as if
        // it came over TLS: that is the STARTTLS injection attack, so it is refused.
        if !reader.buffer().is_empty() {
            return Err(Failure::new(
                Step::Starttls,
                ErrorClass::Protocol,
                "server sent data after its STARTTLS reply, before the TLS handshake",
            ));
        }
        self.handshake(ctx, reader.into_inner()).await
    }
}

/// Reads a reply and requires `code`; anything else fails `step`.
async fn expect(
    connection: &mut Connection,
    step: Step,
    code: u16,
    transcript: &mut Transcript,
) -> Result<Reply, Failure> {
    let reply = connection
        .read_reply()
        .await
        .map_err(|error| Failure::read(step, error))?;
    transcript.reply_code = Some(reply.code);
    if reply.code == code {
        Ok(reply)
    } else {
        Err(Failure::reply(
            step,
            ErrorClass::Protocol,
            &code.to_string(),
            &reply,
        ))
    }
}

/// AUTH PLAIN when offered (one round trip), else AUTH LOGIN; 235 is success.
async fn authenticate(
    connection: &mut Connection,
    credentials: &Credentials,
    transcript: &mut Transcript,
) -> Result<(), Failure> {
    let mechanisms = auth_mechanisms(&transcript.extensions);
    let plain = mechanisms.iter().any(|mechanism| mechanism == "PLAIN");
    let login = mechanisms.iter().any(|mechanism| mechanism == "LOGIN");
    let final_reply = if plain {
        transcript.auth_mechanism = Some("PLAIN");
        let token = BASE64.encode(format!(
            "\0{}\0{}",
            credentials.name,
            credentials.secret.expose()
        ));
        send_auth(connection, &format!("AUTH PLAIN {token}")).await?;
        read_auth(connection, transcript).await?
    } else if login {
        transcript.auth_mechanism = Some("LOGIN");
        send_auth(connection, "AUTH LOGIN").await?;
        challenge(connection, transcript).await?;
        send_auth(connection, &BASE64.encode(&credentials.name)).await?;
        challenge(connection, transcript).await?;
        send_auth(connection, &BASE64.encode(credentials.secret.expose())).await?;
        read_auth(connection, transcript).await?
    } else {
        let offered = if mechanisms.is_empty() {
            "none".to_owned()
        } else {
            mechanisms.join(" ")
        };
        return Err(Failure::new(
            Step::Auth,
            ErrorClass::Auth,
            format!(
                "server offers no AUTH mechanism honeyguide speaks (PLAIN, LOGIN); offered: {offered}"
            ),
        ));
    };
    if final_reply.code == 235 {
        Ok(())
    } else {
        Err(auth_refused(&final_reply))
    }
}

async fn send_auth(connection: &mut Connection, line: &str) -> Result<(), Failure> {
    connection
        .send(line)
        .await
        .map_err(|error| Failure::write(Step::Auth, &error))
}

async fn read_auth(
    connection: &mut Connection,
    transcript: &mut Transcript,
) -> Result<Reply, Failure> {
    let reply = connection
        .read_reply()
        .await
        .map_err(|error| Failure::read(Step::Auth, error))?;
    transcript.reply_code = Some(reply.code);
    Ok(reply)
}

/// A `334` challenge of AUTH LOGIN; a negative reply ends the exchange.
async fn challenge(
    connection: &mut Connection,
    transcript: &mut Transcript,
) -> Result<(), Failure> {
    let reply = read_auth(connection, transcript).await?;
    if reply.code == 334 {
        Ok(())
    } else {
        Err(auth_refused(&reply))
    }
}

/// 535 (bad credentials), 454 (temporary), 534, 538, 530: the credentials were not accepted.
fn auth_refused(reply: &Reply) -> Failure {
    let class = if (400..600).contains(&reply.code) {
        ErrorClass::Auth
    } else {
        ErrorClass::Protocol
    };
    Failure::reply(Step::Auth, class, "235", reply)
}

/// The mechanisms of the `AUTH` extension (also the old `AUTH=` form), upper-cased.
fn auth_mechanisms(extensions: &[String]) -> Vec<String> {
    let mut mechanisms: Vec<String> = Vec::new();
    for extension in extensions {
        let upper = extension.to_ascii_uppercase();
        let rest = upper
            .strip_prefix("AUTH ")
            .or_else(|| upper.strip_prefix("AUTH="));
        if let Some(rest) = rest {
            for mechanism in rest.split_whitespace() {
                if !mechanisms.iter().any(|known| known == mechanism) {
                    mechanisms.push(mechanism.to_owned());
                }
            }
        }
    }
    mechanisms
}

/// Errors that mean the peer closed or reset the connection after it was established.
fn closed_by_peer(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::UnexpectedEof
    )
}

fn has_extension(extensions: &[String], keyword: &str) -> bool {
    extensions.iter().any(|extension| {
        extension
            .split_whitespace()
            .next()
            .is_some_and(|first| first.eq_ignore_ascii_case(keyword))
    })
}

async fn send_line<S: AsyncWrite + Unpin>(stream: &mut S, line: &str) -> std::io::Result<()> {
    stream.write_all(line.as_bytes()).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}

/// Reads one (possibly multi-line) reply: `250-first`, `250-second`, `250 last`.
async fn read_reply<S: AsyncBufRead + Unpin>(stream: &mut S) -> Result<Reply, ReadError> {
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let mut raw = Vec::new();
        let read = (&mut *stream)
            .take(MAX_LINE)
            .read_until(b'\n', &mut raw)
            .await
            .map_err(ReadError::Io)?;
        if read == 0 {
            return Err(ReadError::Closed);
        }
        let text = String::from_utf8_lossy(&raw);
        if !text.ends_with('\n') {
            return Err(ReadError::Garbled(shorten(&text)));
        }
        let line = text.trim_end_matches(['\r', '\n']);
        let (line_code, last, rest) =
            parse_line(line).ok_or_else(|| ReadError::Garbled(shorten(line)))?;
        if code.is_some_and(|code| code != line_code) {
            return Err(ReadError::Garbled(shorten(line)));
        }
        code = Some(line_code);
        lines.push(rest.trim().to_owned());
        if last {
            return Ok(Reply {
                code: line_code,
                lines,
            });
        }
        if lines.len() >= MAX_LINES {
            return Err(ReadError::Garbled(format!(
                "more than {MAX_LINES} lines in one reply"
            )));
        }
    }
}

/// `250-text` → (250, false, "text"); `250 text` or `250` → (250, true, ...).
fn parse_line(line: &str) -> Option<(u16, bool, &str)> {
    let digits = line.get(..3)?;
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let code: u16 = digits.parse().ok()?;
    if !(200..600).contains(&code) {
        return None;
    }
    match line.as_bytes().get(3) {
        None => Some((code, true, "")),
        Some(b' ') => Some((code, true, line.get(4..).unwrap_or_default())),
        Some(b'-') => Some((code, false, line.get(4..).unwrap_or_default())),
        Some(_) => None,
    }
}

fn shorten(text: &str) -> String {
    let text = text.trim_end();
    match text.char_indices().nth(80) {
        Some((index, _)) => format!("{}...", &text[..index]),
        None => text.to_owned(),
    }
}

// === metrics ===

/// Writes the `smtp`-specific series.
pub fn write_metrics(probes: &[(&str, &ProbeResult)], out: &mut MetricsWriter) {
    for (name, result) in probes {
        // EHLO and TLS can run twice with STARTTLS; a step's time is the sum of its rounds.
        let mut steps: BTreeMap<&str, f64> = BTreeMap::new();
        for (phase, duration) in &result.phases {
            *steps.entry(phase).or_default() += duration.as_secs_f64();
        }
        for (step, seconds) in steps {
            out.gauge(
                "honeyguide_smtp_step_duration_seconds",
                "Time spent in each step of the SMTP conversation in the last run.",
                &[("probe", name), ("step", step)],
                seconds,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(text: &str) -> Result<Reply, ReadError> {
        let mut reader = BufReader::new(text.as_bytes());
        read_reply(&mut reader).await
    }

    #[tokio::test]
    async fn multi_line_replies_are_joined_and_split_into_lines() {
        let reply = parse("250-mx.example.com\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n")
            .await
            .unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(
            reply.lines,
            vec!["mx.example.com", "AUTH PLAIN LOGIN", "STARTTLS"]
        );
    }

    #[tokio::test]
    async fn garbage_early_close_and_mixed_codes_are_errors() {
        assert!(matches!(
            parse("SSH-2.0-OpenSSH_9.2\r\n").await,
            Err(ReadError::Garbled(_))
        ));
        assert!(matches!(parse("").await, Err(ReadError::Closed)));
        assert!(matches!(parse("250-a\r\n").await, Err(ReadError::Closed)));
        assert!(matches!(
            parse("250-a\r\n251 b\r\n").await,
            Err(ReadError::Garbled(_))
        ));
    }

    #[test]
    fn replies_say_temporary_or_permanent() {
        let reply = Reply {
            code: 454,
            lines: vec!["4.7.0 Try again later".to_owned()],
        };
        assert!(reply.is_temporary());
        assert_eq!(reply.describe(), "454 4.7.0 Try again later (temporary)");
    }

    #[test]
    fn auth_mechanisms_come_from_either_form() {
        let extensions = vec![
            "PIPELINING".to_owned(),
            "AUTH PLAIN login".to_owned(),
            "AUTH=LOGIN".to_owned(),
        ];
        assert_eq!(auth_mechanisms(&extensions), vec!["PLAIN", "LOGIN"]);
        assert!(has_extension(&["starttls".to_owned()], "STARTTLS"));
        assert!(!has_extension(&["STARTTLSX".to_owned()], "STARTTLS"));
    }
}
