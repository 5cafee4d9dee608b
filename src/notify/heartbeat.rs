//! The `heartbeat` notifier: a dead man's switch. Every `interval`, while honeyguide is healthy,
//! it requests a URL (healthchecks.io, Uptime Kuma push, Cronitor, ...); the service on the other
//! end alerts when the pings stop. That covers what no notifier can say about itself: honeyguide
//! dead, wedged, or cut off from the network.
//!
//! "Healthy" means the state task answers within two seconds, the scheduler is still running,
//! and (when probes are configured) results keep arriving: the newest result is younger than
//! twice the longest probe interval plus the longest timeout. A ping is skipped, not sent with
//! a failure flag, when any of that does not hold, so the receiving service raises the alarm.
//!
//! Heartbeats do not go through the outbox: a missed ping is the signal, and replaying old ones
//! would defeat it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::dispatch::DeliveryReport;
use super::{NotifyError, display_origin, http_client, parse_http_url};
use crate::spec::{BuildContext, FieldError, FieldErrors, HumanDuration, Keep, duration};

/// Default time between pings.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default time limit of one ping.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP method of the ping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST` with an empty body.
    Post,
}

/// The keys of a `kind = "heartbeat"` notifier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The URL to request, e.g. `https://hc-ping.com/<uuid>`.
    pub url: String,
    /// `"get"` (default) or `"post"`.
    pub method: Option<Method>,
    /// Time between pings; default 60s.
    pub interval: Option<HumanDuration>,
    /// Time limit of one ping; default 10s.
    pub timeout: Option<HumanDuration>,
    /// PEM file of the CA to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
}

/// A built `heartbeat` notifier.
#[derive(Debug)]
pub struct HeartbeatNotifier {
    url: url::Url,
    method: Method,
    interval: Duration,
    client: reqwest::Client,
}

impl Spec {
    /// Validates the keys into a notifier.
    pub fn build(self, cx: &BuildContext) -> Result<HeartbeatNotifier, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let url = parse_http_url("url", &self.url).kept(&mut errors);
        let interval = duration::HEARTBEAT_INTERVAL
            .field("interval", self.interval, DEFAULT_INTERVAL)
            .unwrap_or_else(|error| {
                errors.push(error);
                DEFAULT_INTERVAL
            });
        let timeout = duration::TIMEOUT
            .field("timeout", self.timeout, DEFAULT_TIMEOUT)
            .unwrap_or_else(|error| {
                errors.push(error);
                DEFAULT_TIMEOUT.min(interval)
            });
        if timeout > interval {
            errors.push(FieldError::new(
                "timeout",
                "must not be longer than the interval",
            ));
        }
        let client = http_client(self.ca_file.as_ref(), timeout, cx).kept(&mut errors);
        match (url, client) {
            (Some(url), Some(client)) if errors.is_empty() => Ok(HeartbeatNotifier {
                url,
                method: self.method.unwrap_or(Method::Get),
                interval,
                client,
            }),
            _ => Err(errors.into_vec()),
        }
    }
}

impl HeartbeatNotifier {
    /// Where it sends, without the path (which may be the secret part of the URL).
    pub fn target(&self) -> String {
        display_origin(&self.url)
    }

    /// Time between pings.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Sends one ping.
    pub async fn ping(&self) -> Result<(), NotifyError> {
        let request = match self.method {
            Method::Get => self.client.get(self.url.clone()),
            Method::Post => self.client.post(self.url.clone()).body(""),
        };
        let shown = self.target();
        let response = request
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

/// What a heartbeat asks before each ping: `Ok` when honeyguide is healthy enough to vouch for
/// itself (its scheduler runs, its state task answers, results keep arriving), else why not.
/// The wiring ([`crate::app`]) implements it; a heartbeat knows nothing of the daemon's state.
pub trait Liveness: Send + Sync + 'static {
    /// `Ok` when healthy, else why not.
    fn check(&self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Pings every `interval` while `liveness` holds, until `stop`. Reports each attempt.
pub async fn run(
    name: String,
    notifier: Arc<super::Notifier>,
    liveness: impl Liveness,
    reports: mpsc::Sender<DeliveryReport>,
    stop: CancellationToken,
) {
    let super::Notifier::Heartbeat(heartbeat) = notifier.as_ref() else {
        return;
    };
    let mut ticker = tokio::time::interval(heartbeat.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut unhealthy = false;
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(reason) = liveness.check().await {
            if !unhealthy {
                tracing::warn!(notifier = %name, %reason, "honeyguide is unhealthy: heartbeats paused");
            }
            unhealthy = true;
            continue;
        }
        if unhealthy {
            tracing::info!(notifier = %name, "honeyguide is healthy again: heartbeats resumed");
            unhealthy = false;
        }
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = heartbeat.ping() => outcome,
        };
        let report = match outcome {
            Ok(()) => {
                if failing {
                    tracing::info!(notifier = %name, "heartbeat delivered again");
                }
                failing = false;
                DeliveryReport::delivered(&name, None)
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(notifier = %name, %error, "heartbeat failed");
                }
                failing = true;
                DeliveryReport::failed(&name, &error, None)
            }
        };
        if reports.send(report).await.is_err() {
            return;
        }
    }
}
