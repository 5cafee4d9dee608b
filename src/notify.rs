//! Notifiers: how a [`Notification`] reaches people and systems.
//!
//! The set of kinds is closed, like probe kinds: [`NotifierKind`] and [`Notifier`] list them and
//! each lives in its own file with a `Spec` (its keys in a `[[notifier]]` table), a runtime
//! struct built from it and a `deliver` that makes **one attempt**. Retrying, backoff and
//! bookkeeping belong to the outbox dispatcher ([`dispatch`]), so a notifier never retries by
//! itself and never blocks another: each has its own delivery loop, and email failing because
//! the SMTP provider is the very thing that is down does not hold back the webhook.
//!
//! - [`email`]: SMTP via lettre, implicit TLS or STARTTLS, AUTH; plain text and HTML.
//! - [`webhook`]: the Alertmanager webhook JSON (version 4), optionally HMAC-signed.
//! - [`alertmanager`]: pushes alerts to Alertmanager's `/api/v2/alerts`, re-sending firing ones.
//! - [`heartbeat`]: a dead man's switch, pinged while honeyguide is healthy (not alert-driven).
//!
//! [`render`] holds what the kinds share: subjects, text, HTML, and the Alertmanager shapes.
//!
//! A failed attempt is a [`NotifyError`], which says whether retrying can help by itself
//! ([`Permanence`]: a 535 or a 401 will not pass, an outage may) and displays as one bounded line
//! with whatever the receiver said escaped.
//! Notifiers know nothing of probes: everything they say comes from the notification.

pub mod alertmanager;
pub mod dispatch;
pub mod email;
pub mod heartbeat;
pub mod render;
pub mod webhook;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::alert::Permanence;
use crate::alert::notification::Notification;
use crate::spec::{
    BuildContext, ErrorSink, FieldError, FieldErrors, HumanDuration, Section, build_section,
    duration,
};

/// Default time one delivery attempt may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

// === kinds ===

crate::closed_set! {
    /// Every notifier kind honeyguide knows.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum NotifierKind {
        /// SMTP email.
        Email = "email",
        /// HTTP POST of the Alertmanager webhook payload.
        Webhook = "webhook",
        /// Push to Alertmanager's API.
        Alertmanager = "alertmanager",
        /// Dead man's switch.
        Heartbeat = "heartbeat",
    }
}

// === notifiers ===

/// A built notifier of any kind.
#[derive(Debug)]
pub enum Notifier {
    /// See [`email`].
    Email(email::EmailNotifier),
    /// See [`webhook`].
    Webhook(webhook::WebhookNotifier),
    /// See [`alertmanager`].
    Alertmanager(alertmanager::AlertmanagerNotifier),
    /// See [`heartbeat`].
    Heartbeat(heartbeat::HeartbeatNotifier),
}

/// What a delivery may need besides the notification.
#[derive(Clone, Debug)]
pub struct DeliveryContext {
    /// `[alerting] external_url`: where honeyguide's own pages are, for links.
    pub external_url: Option<url::Url>,
    /// `[server] vantage`: where the sending instance probes from, said in every message.
    pub vantage: String,
    /// When this attempt happens (Alertmanager `endsAt` is computed from it).
    pub now: Timestamp,
}

impl Notifier {
    /// This notifier's kind.
    pub fn kind(&self) -> NotifierKind {
        match self {
            Notifier::Email(_) => NotifierKind::Email,
            Notifier::Webhook(_) => NotifierKind::Webhook,
            Notifier::Alertmanager(_) => NotifierKind::Alertmanager,
            Notifier::Heartbeat(_) => NotifierKind::Heartbeat,
        }
    }

    /// Whether it takes alerts through the outbox (the heartbeat does not).
    pub fn takes_alerts(&self) -> bool {
        !matches!(self, Notifier::Heartbeat(_))
    }

    /// Makes one delivery attempt. The heartbeat "delivers" by sending one ping.
    pub async fn deliver(
        &self,
        notification: &Notification,
        cx: &DeliveryContext,
    ) -> Result<(), NotifyError> {
        match self {
            Notifier::Email(notifier) => notifier.deliver(notification, cx).await,
            Notifier::Webhook(notifier) => notifier.deliver(notification, cx).await,
            Notifier::Alertmanager(notifier) => notifier.deliver(notification, cx).await,
            Notifier::Heartbeat(notifier) => notifier.ping().await,
        }
    }

    /// Where it delivers, for humans (no credentials).
    pub fn target(&self) -> String {
        match self {
            Notifier::Email(notifier) => notifier.target(),
            Notifier::Webhook(notifier) => notifier.target(),
            Notifier::Alertmanager(notifier) => notifier.target(),
            Notifier::Heartbeat(notifier) => notifier.target(),
        }
    }
}

/// Builds the notifier of `kind` from its own keys (common keys already removed), recording
/// located errors in `sink`.
pub fn build(
    kind: NotifierKind,
    section: Section<'_>,
    cx: &BuildContext,
    sink: &mut ErrorSink<'_>,
) -> Option<Notifier> {
    match kind {
        NotifierKind::Email => {
            build_section(section, cx, sink, email::Spec::build).map(Notifier::Email)
        }
        NotifierKind::Webhook => {
            build_section(section, cx, sink, webhook::Spec::build).map(Notifier::Webhook)
        }
        NotifierKind::Alertmanager => {
            build_section(section, cx, sink, alertmanager::Spec::build).map(Notifier::Alertmanager)
        }
        NotifierKind::Heartbeat => {
            build_section(section, cx, sink, heartbeat::Spec::build).map(Notifier::Heartbeat)
        }
    }
}

// === errors ===

/// Why one delivery attempt failed. Every message is one line a person can act on (what a
/// server or receiver said is escaped, never raw: see [`crate::text`]), and none contains a
/// credential.
#[derive(Debug)]
pub enum NotifyError {
    /// The SMTP conversation failed (connect, TLS, AUTH, or the server refused the message).
    Smtp {
        /// `host:port`.
        server: String,
        /// What lettre reported, e.g. `permanent error (535): 5.7.8 Authentication failed`.
        message: String,
        /// Whether the server answered with a permanent (5xx) reply.
        permanent: bool,
    },
    /// The message could not be built (bad address, ...).
    Message(String),
    /// An HTTP request could not be made or got no answer.
    Http {
        /// Where.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The receiver answered with a status other than 2xx.
    Status {
        /// Where.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body, on one line.
        body: String,
    },
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            NotifyError::Smtp {
                server, message, ..
            } => format!("smtp {server}: {message}"),
            NotifyError::Message(message) => format!("building the message: {message}"),
            NotifyError::Http { url, message } => format!("{url}: {message}"),
            NotifyError::Status { url, status, body } if body.is_empty() => {
                format!("{url}: HTTP {status}")
            }
            NotifyError::Status { url, status, body } => format!("{url}: HTTP {status}: {body}"),
        };
        // Once here, for every use: `/status`, the page, the outbox row, logs, `test-alert`.
        f.write_str(&crate::text::one_line(&text, crate::text::MESSAGE_MAX))
    }
}

impl std::error::Error for NotifyError {}

impl NotifyError {
    /// A request error with its causes, without the full URL reqwest would print (its path
    /// or query may be a secret: a Slack hook, a healthchecks.io UUID).
    pub fn http(url: &str, error: reqwest::Error) -> Self {
        let error = error.without_url();
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        NotifyError::Http {
            url: url.to_owned(),
            message,
        }
    }

    /// A non-2xx answer, with at most 200 characters of its body on one line (escaped).
    pub fn status(url: &str, status: u16, body: &str) -> Self {
        NotifyError::Status {
            url: url.to_owned(),
            status,
            body: crate::text::one_line(body.trim(), 200),
        }
    }

    /// Whether retrying can help by itself.
    pub fn permanence(&self) -> Permanence {
        match self {
            NotifyError::Smtp { permanent, .. } if *permanent => Permanence::Permanent,
            NotifyError::Smtp { .. } | NotifyError::Http { .. } => Permanence::Temporary,
            NotifyError::Message(_) => Permanence::Permanent,
            NotifyError::Status { status, .. } => Permanence::of_http_status(*status),
        }
    }
}

// === shared building blocks ===

/// An HTTP client for notifiers: rustls with the given roots, no connection pool (each delivery
/// connects afresh, so a receiver that restarted is not hit through a dead connection), a
/// per-request timeout.
pub fn http_client(
    ca_file: Option<&PathBuf>,
    timeout: Duration,
    cx: &BuildContext,
) -> Result<reqwest::Client, FieldError> {
    let roots = match ca_file {
        Some(path) => Arc::new(
            crate::tls::roots_from_pem_file(&cx.path(path))
                .map_err(|message| FieldError::new("ca_file", message))?,
        ),
        None => cx.system_roots(),
    };
    let tls = crate::tls::client_config(
        &crate::tls::Verification::Roots(roots),
        &[b"h2", b"http/1.1"],
    )
    .map_err(|message| FieldError::new("ca_file", message))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .pool_max_idle_per_host(0)
        .timeout(timeout)
        .user_agent(concat!("honeyguide/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| FieldError::new("url", format!("cannot build an HTTP client: {error}")))
}

/// A notifier's `timeout` key: bounded, [`DEFAULT_TIMEOUT`] when unset (or out of range, the
/// error then recorded).
pub(crate) fn timeout(value: Option<HumanDuration>, errors: &mut FieldErrors) -> Duration {
    duration::TIMEOUT
        .field("timeout", value, DEFAULT_TIMEOUT)
        .unwrap_or_else(|error| {
            errors.push(error);
            DEFAULT_TIMEOUT
        })
}

/// Parses an `http`/`https` URL for key `key`. Errors never quote the URL: the path of a
/// Slack-style webhook or a healthchecks.io ping URL is its secret.
pub fn parse_http_url(key: &str, text: &str) -> Result<url::Url, FieldError> {
    let url = url::Url::parse(text).map_err(|error| {
        FieldError::new(
            key,
            format!("not a URL ({error}); write it whole, like \"https://host/path\""),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FieldError::new(
            key,
            format!(
                "must be an http:// or https:// URL, not {}",
                crate::spec::shown_scheme(url.scheme())
            ),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FieldError::new(
            key,
            "credentials in the URL would be logged; use the notifier's own keys",
        ));
    }
    Ok(url)
}

/// A URL without query string, for messages (a query may carry a token).
pub fn display_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Only the scheme, host and port of a URL, for messages about URLs whose path is a secret
/// (Slack and similar webhooks, healthchecks.io ping URLs): `https://hooks.slack.com/…`.
pub fn display_origin(url: &url::Url) -> String {
    let origin = url.origin().ascii_serialization();
    if url.path() == "/" && url.query().is_none() {
        format!("{origin}/")
    } else {
        format!("{origin}/…")
    }
}
