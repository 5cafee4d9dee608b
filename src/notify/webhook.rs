//! The `webhook` notifier: `POST` of the Alertmanager webhook payload (version 4) to a URL, so
//! receivers written for Alertmanager work unchanged.
//!
//! Headers:
//! - `X-Honeyguide-Notification-Id` and `Idempotency-Key`: the notification id, the same on
//!   every retry, so a receiver can discard a duplicate;
//! - `X-Honeyguide-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body bytes with the
//!   configured `secret`, when one is set;
//! - any `headers` from the config (e.g. an `Authorization` for the receiver); their values are
//!   never logged.
//!
//! Any 2xx answer is success; anything else is a failed attempt that the dispatcher retries:
//! soon for 5xx, 408, 425, 429 and connection errors, at the longest backoff for the other 4xx
//! (401, 403, 404: the receiver refuses, see [`super::Permanence`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use sha2::Sha256;

use super::{DeliveryContext, NotifyError, display_origin, http_client, parse_http_url, render};
use crate::alert::notification::Notification;
use crate::spec::{BuildContext, FieldError, FieldErrors, HumanDuration, Keep, Secret, secret};

/// Header carrying the body's HMAC-SHA256, as `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-honeyguide-signature";
/// Header carrying the notification id.
pub const NOTIFICATION_ID_HEADER: &str = "x-honeyguide-notification-id";

/// The keys of a `kind = "webhook"` notifier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Where to POST.
    pub url: String,
    /// HMAC key for `X-Honeyguide-Signature`, usually `${ENV}`; or `secret_file`.
    pub secret: Option<String>,
    /// File holding the HMAC key.
    pub secret_file: Option<PathBuf>,
    /// Extra request headers (e.g. `Authorization`).
    pub headers: Option<BTreeMap<String, String>>,
    /// PEM file of the CA to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Time limit of one request; default 30s.
    pub timeout: Option<HumanDuration>,
}

/// A built `webhook` notifier.
#[derive(Debug)]
pub struct WebhookNotifier {
    url: url::Url,
    secret: Option<Secret>,
    headers: Vec<(HeaderName, Secret)>,
    client: reqwest::Client,
}

impl Spec {
    /// Validates the keys into a notifier.
    pub fn build(self, cx: &BuildContext) -> Result<WebhookNotifier, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let url = parse_http_url("url", &self.url).kept(&mut errors);
        let secret = secret::resolve("secret", self.secret, self.secret_file.as_deref(), cx)
            .unwrap_or_else(|error| {
                errors.push(error);
                None
            });
        if secret
            .as_ref()
            .is_some_and(|secret| secret.expose().is_empty())
        {
            errors.push(FieldError::new("secret", "must not be empty"));
        }
        let mut headers = Vec::new();
        for (name, value) in self.headers.unwrap_or_default() {
            let parsed = HeaderName::try_from(name.as_str());
            match (parsed, HeaderValue::from_str(&value)) {
                (Ok(header), Ok(_)) => headers.push((header, Secret::new(value))),
                (Err(_), _) => errors.push(FieldError::new(
                    &format!("headers.{name}"),
                    format!("`{name}` is not a valid header name"),
                )),
                (_, Err(_)) => errors.push(FieldError::new(
                    &format!("headers.{name}"),
                    "the value is not a valid header value",
                )),
            }
        }
        let timeout = super::timeout(self.timeout, &mut errors);
        let client = http_client(self.ca_file.as_ref(), timeout, cx).kept(&mut errors);
        match (url, client) {
            (Some(url), Some(client)) if errors.is_empty() => Ok(WebhookNotifier {
                url,
                secret,
                headers,
                client,
            }),
            _ => Err(errors.into_vec()),
        }
    }
}

impl WebhookNotifier {
    /// Where it sends, without the path (which may be the secret part of the URL).
    pub fn target(&self) -> String {
        display_origin(&self.url)
    }

    /// POSTs the payload once.
    pub async fn deliver(
        &self,
        notification: &Notification,
        cx: &DeliveryContext,
    ) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(&render::webhook_payload(notification, cx))
            .map_err(|error| NotifyError::Message(error.to_string()))?;
        let mut request = self
            .client
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(NOTIFICATION_ID_HEADER, &notification.id)
            .header("idempotency-key", &notification.id);
        if let Some(secret) = &self.secret {
            request = request.header(
                SIGNATURE_HEADER,
                signature(secret.expose().as_bytes(), &body),
            );
        }
        for (name, value) in &self.headers {
            request = request.header(name, value.expose());
        }
        let shown = self.target();
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|error| NotifyError::http(&shown, error))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(NotifyError::status(&shown, status.as_u16(), &text))
    }
}

/// `sha256=<hex of HMAC-SHA256(key, body)>`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail; an empty MAC would fail
    // verification at the receiver, which is the safe outcome if it ever did.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return "sha256=".to_owned();
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
