//! The `alertmanager` notifier: pushes alerts to `POST /api/v2/alerts` of one Alertmanager
//! cluster, the way Prometheus does.
//!
//! A firing alert is sent with `endsAt` a few re-send periods in the future and re-sent every
//! `resend_interval` (the engine emits a refresh notification), so Alertmanager never times it
//! out while the failure lasts, and does time it out if honeyguide dies. A resolved alert is sent
//! with `endsAt` = the time it resolved. Labels are `alertname` (the failure mode id),
//! `severity` and the rule's labels, and nothing instance-specific: several honeyguide instances
//! watching the same stack produce identical alerts, which Alertmanager deduplicates.
//!
//! `urls` are the replicas of one Alertmanager cluster. Each gets every push (replicas do not
//! share alerts with each other); a push counts as delivered when at least one replica
//! accepted it. A replica that missed it is brought up to date by the next re-send, and one that
//! missed a resolve times the alert out at its `endsAt`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{DeliveryContext, NotifyError, display_url, http_client, parse_http_url, render};
use crate::alert::Permanence;
use crate::alert::notification::{MessageStatus, Notification};
use crate::spec::{BuildContext, FieldError, FieldErrors, HumanDuration, Keep, duration};

/// Default period of re-sending firing alerts.
pub const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_secs(60);
/// A firing alert's `endsAt` is this many re-send periods after the push (Prometheus uses 4).
pub const ENDS_AT_PERIODS: u32 = 4;

/// The keys of a `kind = "alertmanager"` notifier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Base URLs of the Alertmanager replicas, e.g. `["http://am-0:9093", "http://am-1:9093"]`.
    pub urls: Vec<String>,
    /// How often firing alerts are re-sent; default 1m.
    pub resend_interval: Option<HumanDuration>,
    /// PEM file of the CA to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Time limit of one request; default 30s.
    pub timeout: Option<HumanDuration>,
}

/// A built `alertmanager` notifier.
#[derive(Debug)]
pub struct AlertmanagerNotifier {
    endpoints: Vec<url::Url>,
    resend_interval: Duration,
    client: reqwest::Client,
}

impl Spec {
    /// Validates the keys into a notifier.
    pub fn build(self, cx: &BuildContext) -> Result<AlertmanagerNotifier, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        if self.urls.is_empty() {
            errors.push(FieldError::new(
                "urls",
                "name at least one Alertmanager URL",
            ));
        }
        let endpoints: Vec<url::Url> = self
            .urls
            .iter()
            .enumerate()
            .filter_map(|(index, text)| {
                let key = format!("urls[{index}]");
                parse_http_url(&key, text)
                    .and_then(|base| {
                        let mut base = base;
                        base.set_path(&format!("{}/", base.path().trim_end_matches('/')));
                        base.join("api/v2/alerts")
                            .map_err(|error| FieldError::new(&key, error.to_string()))
                    })
                    .kept(&mut errors)
            })
            .collect();
        let resend_interval = duration::RESEND_INTERVAL
            .field(
                "resend_interval",
                self.resend_interval,
                DEFAULT_RESEND_INTERVAL,
            )
            .unwrap_or_else(|error| {
                errors.push(error);
                DEFAULT_RESEND_INTERVAL
            });
        let timeout = super::timeout(self.timeout, &mut errors);
        let client = http_client(self.ca_file.as_ref(), timeout, cx).kept(&mut errors);
        match client {
            Some(client) if errors.is_empty() => Ok(AlertmanagerNotifier {
                endpoints,
                resend_interval,
                client,
            }),
            _ => Err(errors.into_vec()),
        }
    }
}

impl AlertmanagerNotifier {
    /// The push endpoints.
    pub fn target(&self) -> String {
        self.endpoints
            .iter()
            .map(display_url)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// How often firing alerts are re-sent.
    pub fn resend_interval(&self) -> Duration {
        self.resend_interval
    }

    /// The request body: one Alertmanager alert per message.
    pub fn body(&self, notification: &Notification, cx: &DeliveryContext) -> Value {
        let alive_until = cx
            .now
            .checked_add(self.resend_interval.saturating_mul(ENDS_AT_PERIODS))
            .unwrap_or(cx.now);
        Value::Array(
            notification
                .alerts
                .iter()
                .map(|message| {
                    let ends_at = match message.status {
                        MessageStatus::Firing => alive_until,
                        MessageStatus::Resolved => message.ends_at.unwrap_or(cx.now),
                    };
                    render::alertmanager_alert(message, ends_at, cx)
                })
                .collect(),
        )
    }

    /// Pushes to every replica at once; delivered when at least one accepted.
    pub async fn deliver(
        &self,
        notification: &Notification,
        cx: &DeliveryContext,
    ) -> Result<(), NotifyError> {
        let body = bytes::Bytes::from(
            serde_json::to_vec(&self.body(notification, cx))
                .map_err(|error| NotifyError::Message(error.to_string()))?,
        );
        let mut pushes = tokio::task::JoinSet::new();
        for endpoint in &self.endpoints {
            let request = self
                .client
                .post(endpoint.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            let shown = display_url(endpoint);
            pushes.spawn(async move { push(request, &shown).await });
        }
        let mut accepted = 0usize;
        let mut failures = Vec::new();
        while let Some(joined) = pushes.join_next().await {
            match joined {
                Ok(Ok(())) => accepted += 1,
                Ok(Err(error)) => failures.push(error),
                Err(error) => failures.push(NotifyError::Message(format!("push task: {error}"))),
            }
        }
        if accepted > 0 {
            for error in &failures {
                // The next re-send catches this replica up; say so, once per failed push.
                tracing::warn!(notifier.error = %error, "an Alertmanager replica missed a push");
            }
            return Ok(());
        }
        // A replica that may come back is the one to report: the failure is permanent only
        // when every replica refuses.
        let reported = failures
            .iter()
            .position(|error| error.permanence() == Permanence::Temporary)
            .unwrap_or(0);
        if reported < failures.len() {
            return Err(failures.swap_remove(reported));
        }
        Err(NotifyError::Message(
            "no Alertmanager URL configured".into(),
        ))
    }
}

async fn push(request: reqwest::RequestBuilder, shown: &str) -> Result<(), NotifyError> {
    let response = request
        .send()
        .await
        .map_err(|error| NotifyError::http(shown, error))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    Err(NotifyError::status(shown, status.as_u16(), &text))
}
