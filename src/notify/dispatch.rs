//! The outbox dispatcher: one delivery loop per notifier, reading that notifier's notifications
//! from the store in order, delivering each with exponential backoff and jitter until it
//! succeeds, and marking it delivered only then.
//!
//! Loops are independent: email stuck because the SMTP provider is down does not hold back the
//! webhook or Alertmanager. Within one notifier delivery is strictly in order, so a resolve never
//! overtakes the firing message it closes.
//!
//! The window in which a notification can be delivered twice is between the receiver accepting
//! it and the store committing "delivered" (one local SQLite commit). If honeyguide dies in that
//! window the notification is sent again after restart, with the same id (the webhook's
//! `Idempotency-Key`, the email's `Message-ID`) so the receiver can discard it. A notification
//! that cannot be delivered within `[alerting] give_up_after` is abandoned with a warning and
//! counted as `expired`.
//!
//! A permanent failure (the receiver refuses: SMTP 535, HTTP 401/404, see [`Permanence`]) is
//! still retried, since someone may fix the receiver's side, but at the longest backoff at once:
//! hammering a receiver that says no helps nobody. The report says it is permanent, so `/status`,
//! `/metrics` and the page can tell on-call that this alert path is broken until fixed.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{DeliveryContext, Notifier, NotifyError};
use crate::alert::DeliveryResult;
use crate::alert::Permanence;
use crate::store::{OutboxEntry, StoreHandle};

/// Shortest wait after a failed attempt.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What happened to one delivery attempt, for the alert task's counters.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryReport {
    /// The notifier.
    pub notifier: String,
    /// How it went.
    pub result: DeliveryResult,
    /// Why it failed (one line).
    pub error: Option<String>,
    /// Whether the failure is temporary or permanent, for a failed attempt.
    pub permanence: Option<Permanence>,
    /// When the next attempt is due, for a failed attempt the dispatcher retries.
    pub retry_at: Option<Timestamp>,
    /// Notifications still waiting for this notifier, when known.
    pub depth: Option<u64>,
    /// When.
    pub at: Timestamp,
}

impl DeliveryReport {
    /// A success.
    pub fn delivered(notifier: &str, depth: Option<u64>) -> Self {
        Self {
            notifier: notifier.to_owned(),
            result: DeliveryResult::Delivered,
            error: None,
            permanence: None,
            retry_at: None,
            depth,
            at: Timestamp::now(),
        }
    }

    /// A failed attempt, retried `retry_in` from now when known.
    pub fn failed(notifier: &str, error: &NotifyError, retry_in: Option<Duration>) -> Self {
        let at = Timestamp::now();
        Self {
            notifier: notifier.to_owned(),
            result: DeliveryResult::Failed,
            error: Some(error.to_string()),
            permanence: Some(error.permanence()),
            retry_at: retry_in.and_then(|delay| at.checked_add(delay).ok()),
            depth: None,
            at,
        }
    }
}

/// Exponential backoff with jitter: the n-th wait is drawn from
/// `[base/2, base]` where `base = min * 2^n`, capped at `max`. The jitter keeps several
/// honeyguide instances (or several notifiers) from retrying in lockstep.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A backoff between `min` and `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            failures: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// The wait before the next attempt; grows with each call.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(20));
        self.failures = self.failures.saturating_add(1);
        let base = self.min.saturating_mul(factor).min(self.max);
        let half = base / 2;
        let jitter_nanos = self
            .rng
            .u64(0..=u64::try_from(half.as_nanos()).unwrap_or(u64::MAX));
        half + Duration::from_nanos(jitter_nanos)
    }

    /// The wait after a failure: growing for a temporary one, the longest at once for a
    /// permanent one (the receiver refused; it will not change its mind in a second).
    pub fn after(&mut self, permanence: Permanence) -> Duration {
        match permanence {
            Permanence::Temporary => self.next_delay(),
            Permanence::Permanent => self.max,
        }
    }

    /// Back to the shortest wait, after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// What a delivery loop needs besides its notifier.
#[derive(Clone, Debug)]
pub struct Lane {
    /// The notifier's name (its outbox key).
    pub name: String,
    /// The notifier.
    pub notifier: Arc<Notifier>,
    /// The store.
    pub store: StoreHandle,
    /// Woken when something was enqueued for this notifier.
    pub wake: Arc<Notify>,
    /// Where reports go (the alert task).
    pub reports: mpsc::Sender<DeliveryReport>,
    /// `[alerting] external_url`.
    pub external_url: Option<url::Url>,
    /// `[server] vantage`.
    pub vantage: String,
    /// `[alerting] give_up_after`.
    pub give_up_after: Duration,
    /// Backoff bounds.
    pub backoff: (Duration, Duration),
}

/// Delivers this notifier's outbox until `stop`. An attempt in flight when `stop` fires is
/// finished (it is bounded by the notifier's timeout) and recorded, so shutdown does not cause
/// a duplicate.
pub async fn run(lane: Lane, stop: CancellationToken) {
    let mut backoff = Backoff::new(lane.backoff.0, lane.backoff.1);
    let mut failing: Option<(String, Permanence)> = None;
    while !stop.is_cancelled() {
        let entry = match lane.store.next_outbox(&lane.name).await {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                tokio::select! {
                    () = lane.wake.notified() => continue,
                    () = stop.cancelled() => return,
                }
            }
            Err(error) => {
                tracing::warn!(notifier = %lane.name, %error, "cannot read the outbox");
                if sleep_or_stop(backoff.next_delay(), &stop).await {
                    return;
                }
                continue;
            }
        };
        if expired(&entry, lane.give_up_after) {
            abandon(&lane, &entry).await;
            continue;
        }
        let cx = DeliveryContext {
            external_url: lane.external_url.clone(),
            vantage: lane.vantage.clone(),
            now: Timestamp::now(),
        };
        match lane.notifier.deliver(&entry.notification, &cx).await {
            Ok(()) => {
                let depth = match lane.store.mark_delivered(entry.id, &lane.name).await {
                    Ok(depth) => Some(depth),
                    Err(error) => {
                        // Delivered but not marked: it will be sent again (same id) after a
                        // restart. Say so; there is nothing better to do.
                        tracing::warn!(notifier = %lane.name, %error, notification.id = %entry.notification.id,
                            "delivered but could not mark it so; it may be sent again");
                        None
                    }
                };
                if failing.take().is_some() {
                    tracing::info!(notifier = %lane.name, "notifier delivering again");
                }
                tracing::debug!(notifier = %lane.name, notification.id = %entry.notification.id, "delivered");
                backoff.reset();
                report(&lane, DeliveryReport::delivered(&lane.name, depth)).await;
            }
            Err(error) => {
                let message = error.to_string();
                let permanence = error.permanence();
                let delay = backoff.after(permanence);
                let now = (message.clone(), permanence);
                if failing.as_ref() != Some(&now) {
                    log_failure(&lane.name, &message, permanence, entry.attempts + 1, delay);
                }
                failing = Some(now);
                if let Err(store_error) = lane.store.record_failure(entry.id, &message).await {
                    tracing::debug!(notifier = %lane.name, error = %store_error, "could not record the failure");
                }
                report(
                    &lane,
                    DeliveryReport::failed(&lane.name, &error, Some(delay)),
                )
                .await;
                if sleep_or_stop(delay, &stop).await {
                    return;
                }
            }
        }
    }
}

/// Says a failure once (not at every retry), and whether it will pass by itself.
fn log_failure(notifier: &str, error: &str, permanence: Permanence, attempt: u32, delay: Duration) {
    let retry_in = crate::human::duration(
        jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX),
    );
    match permanence {
        Permanence::Temporary => tracing::warn!(%notifier, %error, attempt, %retry_in,
            "notification delivery failed; retrying with backoff"),
        Permanence::Permanent => tracing::error!(%notifier, %error, attempt, %retry_in,
            "notification delivery failed permanently: the receiver refuses it, so this alert path \
             is broken until the notifier's credentials, URL or addresses are fixed; retrying at \
             the longest backoff"),
    }
}

fn expired(entry: &OutboxEntry, give_up_after: Duration) -> bool {
    let age = Timestamp::now().duration_since(entry.notification.created_at);
    Duration::try_from(age).is_ok_and(|age| age > give_up_after)
}

async fn abandon(lane: &Lane, entry: &OutboxEntry) {
    tracing::warn!(
        notifier = %lane.name,
        notification.id = %entry.notification.id,
        attempts = entry.attempts,
        "giving up on a notification older than give_up_after"
    );
    let depth = lane.store.give_up(entry.id, &lane.name).await.ok();
    report(
        lane,
        DeliveryReport {
            notifier: lane.name.clone(),
            result: DeliveryResult::Expired,
            error: Some(format!(
                "gave up after {} attempts: older than give_up_after",
                entry.attempts
            )),
            permanence: None,
            retry_at: None,
            depth,
            at: Timestamp::now(),
        },
    )
    .await;
}

async fn report(lane: &Lane, report: DeliveryReport) {
    // The alert task only goes away at shutdown; a lost report then is harmless.
    let _ = lane.reports.send(report).await;
}

/// Sleeps `delay`; returns `true` if `stop` fired first.
async fn sleep_or_stop(delay: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        () = stop.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        for (n, delay) in delays.iter().enumerate() {
            let base = Duration::from_secs(1 << n.min(6)).min(Duration::from_secs(60));
            assert!(
                *delay >= base / 2 && *delay <= base,
                "attempt {n}: {delay:?} not in [{:?}, {base:?}]",
                base / 2
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_secs(1));
    }

    /// A receiver that refuses (permanent) is retried at the longest backoff from the first
    /// failure on; a temporary failure still starts short.
    #[test]
    fn a_permanent_failure_waits_the_longest_backoff_at_once() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        assert_eq!(
            backoff.after(Permanence::Permanent),
            Duration::from_secs(300)
        );
        assert_eq!(
            backoff.after(Permanence::Permanent),
            Duration::from_secs(300)
        );
        assert!(backoff.after(Permanence::Temporary) <= Duration::from_secs(1));
    }

    /// SMTP 5xx and the refusing HTTP 4xx are permanent; 5xx, 408, 425, 429 and connection
    /// errors are temporary.
    #[test]
    fn failures_are_classified_as_temporary_or_permanent() {
        let status = |code| NotifyError::status("https://hooks.example/…", code, "").permanence();
        for code in [400, 401, 403, 404, 405, 410, 413, 422] {
            assert_eq!(status(code), Permanence::Permanent, "{code}");
        }
        for code in [408, 425, 429, 500, 502, 503, 504, 302] {
            assert_eq!(status(code), Permanence::Temporary, "{code}");
        }
        let smtp = |permanent| NotifyError::Smtp {
            server: "smtp.example:465".into(),
            message: "permanent error (535): 5.7.8 Authentication failed".into(),
            permanent,
        };
        assert_eq!(smtp(true).permanence(), Permanence::Permanent);
        assert_eq!(smtp(false).permanence(), Permanence::Temporary);
        let refused = NotifyError::Http {
            url: "https://hooks.example/…".into(),
            message: "error sending request: connection refused".into(),
        };
        assert_eq!(refused.permanence(), Permanence::Temporary);
    }

    /// What a receiver answers is escaped, never raw: no newline or terminal escape reaches
    /// `/status`, the page or a log line.
    #[test]
    fn notifier_errors_are_one_line() {
        let error = NotifyError::status(
            "https://hooks.example/…",
            401,
            "<html>\r\n\x1b[2J<h1>Unauthorized</h1>\n</html>\n",
        );
        assert_eq!(
            error.to_string(),
            "https://hooks.example/…: HTTP 401: <html>\\r\\n\\x1b[2J<h1>Unauthorized</h1>\\n</html>"
        );
        let smtp = NotifyError::Smtp {
            server: "smtp.example:465".into(),
            message: "permanent error (535): line one\nline two".into(),
            permanent: true,
        };
        assert_eq!(
            smtp.to_string(),
            "smtp smtp.example:465: permanent error (535): line one\\nline two"
        );
    }
}
