//! The `email` notifier: one message per notification over SMTP (lettre), implicit TLS (port
//! 465, what Fastmail documents) or STARTTLS (587), with AUTH when a username is set.
//!
//! Every delivery builds a fresh transport and connection, which lettre closes with `QUIT`:
//! lettre's connection pool would hand back an idle connection checked only by `NOOP`
//! (protocols.md §7), hiding exactly the connect, TLS and AUTH failures an operator needs to see,
//! and an alerting path must not depend on a connection opened hours ago. Plain-text SMTP is not
//! offered: alert mail carries internal details.
//!
//! The message is multipart/alternative: plain text and HTML (see [`super::render`]). Its
//! `Message-ID` is derived from the notification id, so a duplicate delivered in the window
//! between "sent" and "marked delivered" has the same id and mail systems can discard it.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::{DeliveryContext, NotifyError, render};
use crate::alert::notification::Notification;
use crate::spec::{BuildContext, FieldError, FieldErrors, HumanDuration, Keep, Secret, secret};

/// How the connection is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// Plain connect, then `STARTTLS` before anything else is said (port 587); refused if the
    /// server does not offer it.
    Starttls,
}

/// The keys of a `kind = "email"` notifier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// SMTP server host name (also the name its certificate must carry).
    pub host: String,
    /// Port; default 465 with `tls = "implicit"`, 587 with `"starttls"`.
    pub port: Option<u16>,
    /// `"implicit"` (default) or `"starttls"`.
    pub tls: Option<TlsMode>,
    /// AUTH user name; AUTH is skipped when unset.
    pub username: Option<String>,
    /// AUTH password, usually `${ENV}`; or `password_file`.
    pub password: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Sender, e.g. `"honeyguide <alerts@example.com>"`.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// PEM file of the CA to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Time limit of one delivery (each SMTP command); default 30s.
    pub timeout: Option<HumanDuration>,
}

/// A built `email` notifier.
#[derive(Debug)]
pub struct EmailNotifier {
    host: String,
    port: u16,
    tls: TlsMode,
    credentials: Option<(String, Secret)>,
    from: Mailbox,
    to: Vec<Mailbox>,
    ca_pem: Option<Vec<u8>>,
    timeout: Duration,
}

impl Spec {
    /// Validates the keys into a notifier.
    pub fn build(self, cx: &BuildContext) -> Result<EmailNotifier, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        if self.host.trim().is_empty() {
            errors.push(FieldError::new("host", "must not be empty"));
        }
        let tls = self.tls.unwrap_or(TlsMode::Implicit);
        let port = self.port.unwrap_or(match tls {
            TlsMode::Implicit => 465,
            TlsMode::Starttls => 587,
        });
        let password =
            secret::resolve("password", self.password, self.password_file.as_deref(), cx)
                .kept(&mut errors)
                .flatten();
        let credentials = match (self.username, password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            (Some(_), None) => {
                errors.push(FieldError::new(
                    "password",
                    "`username` is set, so set `password` or `password_file` too",
                ));
                None
            }
            (None, Some(_)) => {
                errors.push(FieldError::new(
                    "username",
                    "a password is set, so set `username` too",
                ));
                None
            }
        };
        let from = match self.from.parse::<Mailbox>() {
            Ok(mailbox) => Some(mailbox),
            Err(error) => {
                errors.push(FieldError::new(
                    "from",
                    format!("`{}` is not an email address: {error}", self.from),
                ));
                None
            }
        };
        if self.to.is_empty() {
            errors.push(FieldError::new("to", "name at least one recipient"));
        }
        let to = self
            .to
            .iter()
            .enumerate()
            .filter_map(|(index, address)| match address.parse::<Mailbox>() {
                Ok(mailbox) => Some(mailbox),
                Err(error) => {
                    errors.push(FieldError::new(
                        &format!("to[{index}]"),
                        format!("`{address}` is not an email address: {error}"),
                    ));
                    None
                }
            })
            .collect();
        let ca_pem = self.ca_file.as_ref().and_then(|path| {
            let full = cx.path(path);
            match std::fs::read(&full) {
                Ok(pem) if Certificate::from_pem(&pem).is_ok() => Some(pem),
                Ok(_) => {
                    errors.push(FieldError::new(
                        "ca_file",
                        format!("no PEM certificates in {}", full.display()),
                    ));
                    None
                }
                Err(error) => {
                    errors.push(FieldError::new(
                        "ca_file",
                        format!("cannot read {}: {error}", full.display()),
                    ));
                    None
                }
            }
        });
        let timeout = super::timeout(self.timeout, &mut errors);
        let Some(from) = from.filter(|_| errors.is_empty()) else {
            return Err(errors.into_vec());
        };
        Ok(EmailNotifier {
            host: self.host,
            port,
            tls,
            credentials,
            from,
            to,
            ca_pem,
            timeout,
        })
    }
}

impl EmailNotifier {
    /// `host:port (tls)` for humans.
    pub fn target(&self) -> String {
        let mode = match self.tls {
            TlsMode::Implicit => "implicit TLS",
            TlsMode::Starttls => "STARTTLS",
        };
        format!("smtp://{}:{} ({mode})", self.host, self.port)
    }

    /// Sends one message for the notification over a fresh connection.
    pub async fn deliver(
        &self,
        notification: &Notification,
        cx: &DeliveryContext,
    ) -> Result<(), NotifyError> {
        let message = self.message(notification, cx)?;
        let transport = self.transport()?;
        transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|error| self.smtp_error(&error))
    }

    /// The message, as it will be sent.
    pub fn message(
        &self,
        notification: &Notification,
        cx: &DeliveryContext,
    ) -> Result<Message, NotifyError> {
        let domain = self.from.email.domain().to_owned();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(render::subject(notification))
            .message_id(Some(format!("<{}@{domain}>", notification.id)))
            .header(header::Date::new(std::time::SystemTime::now()));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                render::text(notification, cx),
                render::html(notification, cx),
            ))
            .map_err(|error| NotifyError::Message(error.to_string()))
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, NotifyError> {
        let mut parameters = TlsParameters::builder(self.host.clone());
        if let Some(pem) = &self.ca_pem {
            let certificate =
                Certificate::from_pem(pem).map_err(|error| self.smtp_error(&error))?;
            parameters = parameters
                .certificate_store(CertificateStore::None)
                .add_root_certificate(certificate);
        }
        let parameters = parameters
            .build_rustls()
            .map_err(|error| self.smtp_error(&error))?;
        let tls = match self.tls {
            TlsMode::Implicit => Tls::Wrapper(parameters),
            TlsMode::Starttls => Tls::Required(parameters),
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.clone())
                .port(self.port)
                .tls(tls)
                .timeout(Some(self.timeout));
        if let Some((user, password)) = &self.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(builder.build())
    }

    fn smtp_error(&self, error: &lettre::transport::smtp::Error) -> NotifyError {
        let mut message = error.to_string();
        // lettre's own text for a refused connection starts with a capital; keep messages
        // uniform and lowercase.
        if let Some(rest) = message.strip_prefix("Connection error") {
            message = format!("connection error{rest}");
        }
        NotifyError::Smtp {
            server: format!("{}:{}", self.host, self.port),
            message,
            // A 5xx reply: 535 for refused credentials, 550 for a refused address. A 4xx, a
            // connection or TLS failure may pass by itself.
            permanent: error.is_permanent(),
        }
    }
}
