//! Durations in configuration: humane text (`"30s"`, `"1m30s"`, `"250ms"`, `"4h"`), the range
//! every duration key accepts, and arithmetic on instants that cannot overflow.
//!
//! Every duration key has a [`Bounds`], checked at load with the key's position: a typo like
//! `interval = "1ns"` (thousands of runs a second) or `for = "500000000000y"` (an instant that
//! overflows) is a configuration error, never a runaway or a panic. The ranges are listed once,
//! here, and stated in README.md, docs/alerting.md and docs/writing-rules.md.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tokio::time::Instant;
use toml::Spanned;

use super::FieldError;
use super::source::ErrorSink;

/// A duration written the way people write them; deserializes from a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The parsed duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map(Self).map_err(serde::de::Error::custom)
    }
}

/// Parses `"30s"`-style text; the range is checked by the key's [`Bounds`].
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|error| {
        format!("invalid duration `{text}` ({error}); write e.g. \"30s\", \"1m30s\" or \"250ms\"")
    })
}

// === ranges ===

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// A probe's `interval` (and `[defaults] interval`): at least a second, so a typo cannot make
/// a probe run thousands of times a second; at most a day, or it is not monitoring.
pub const PROBE_INTERVAL: Bounds = Bounds::new(SECOND, DAY);
/// Every `timeout` (probes, `[defaults]`, notifiers) and the DNS `resolver_timeout`: 10ms is
/// less than any real round trip over a network, 10m is longer than anyone waits for an answer.
pub const TIMEOUT: Bounds = Bounds::new(Duration::from_millis(10), Duration::from_secs(600));
/// Asynq `stall_window`: how long pending work may see no progress.
pub const STALL_WINDOW: Bounds = Bounds::new(SECOND, Duration::from_secs(7 * 86_400));
/// Asynq `max_latency`: the oldest pending task's age.
pub const MAX_LATENCY: Bounds = Bounds::new(SECOND, Duration::from_secs(30 * 86_400));
/// Asynq `cron_grace`: how late a cron entry may fire.
pub const CRON_GRACE: Bounds = Bounds::new(Duration::ZERO, DAY);
/// `[alerting] group_wait`: zero sends at once; an hour is the most a first page may wait.
pub const GROUP_WAIT: Bounds = Bounds::new(Duration::ZERO, HOUR);
/// `[alerting] group_interval`.
pub const GROUP_INTERVAL: Bounds = Bounds::new(Duration::ZERO, DAY);
/// `[alerting] repeat_interval`: at most one message a second per alert (a shorter one would
/// keep the alert task and the store busy), and at least a monthly reminder.
pub const REPEAT_INTERVAL: Bounds = Bounds::new(SECOND, Duration::from_secs(30 * 86_400));
/// `[alerting] keep_resolved`: how long resolved alerts stay in `/status` (and in memory).
pub const KEEP_RESOLVED: Bounds = Bounds::new(Duration::ZERO, Duration::from_secs(7 * 86_400));
/// `[alerting] give_up_after`: at most the week the outbox keeps delivered entries.
pub const GIVE_UP_AFTER: Bounds = Bounds::new(MINUTE, Duration::from_secs(7 * 86_400));
/// A heartbeat notifier's `interval`.
pub const HEARTBEAT_INTERVAL: Bounds = Bounds::new(SECOND, DAY);
/// An Alertmanager notifier's `resend_interval` (`endsAt` is four of them ahead).
pub const RESEND_INTERVAL: Bounds = Bounds::new(SECOND, HOUR);
/// `[server]` `header_timeout`, `idle_timeout` and `request_timeout`: below 100ms a real client
/// on a slow link is cut off mid-head.
pub const SERVER_TIMEOUT: Bounds =
    Bounds::new(Duration::from_millis(100), Duration::from_secs(600));
/// A rule's `for`: zero is "at once"; a week is the longest a failure may go unannounced.
pub const RULE_FOR: Bounds = Bounds::new(Duration::ZERO, Duration::from_secs(7 * 86_400));

/// `restart_window` of the `kubernetes` kind: how far back a container's last termination counts.
pub const RESTART_WINDOW: Bounds = Bounds::new(MINUTE, DAY);

/// The range a duration key accepts, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The shortest value accepted.
    pub min: Duration,
    /// The longest value accepted.
    pub max: Duration,
}

impl Bounds {
    /// The range from `min` to `max`.
    pub const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    /// `value` if it is in range, else what is wrong, naming the limit (never the value, which
    /// may have come from the environment).
    pub fn check(self, value: Duration) -> Result<Duration, String> {
        if value < self.min {
            return Err(format!(
                "must be at least {} (the range is {self})",
                words(self.min)
            ));
        }
        if value > self.max {
            return Err(format!(
                "must be at most {} (the range is {self})",
                words(self.max)
            ));
        }
        Ok(value)
    }

    /// For a kind's `Spec`: the value of `key` (or `default` when unset), checked.
    pub fn field(
        self,
        key: &str,
        value: Option<HumanDuration>,
        default: Duration,
    ) -> Result<Duration, FieldError> {
        match value {
            None => Ok(default),
            Some(value) => self
                .check(value.get())
                .map_err(|message| FieldError::new(key, message)),
        }
    }

    /// For a kind's `Spec`: the value of an optional `key` without a default, checked.
    pub fn optional(
        self,
        key: &str,
        value: Option<HumanDuration>,
    ) -> Result<Option<Duration>, FieldError> {
        value
            .map(|value| {
                self.check(value.get())
                    .map_err(|message| FieldError::new(key, message))
            })
            .transpose()
    }

    /// For a section's own keys: the value (`None` when unset or out of range, the error then
    /// recorded at the value's position under `key`).
    pub fn spanned(
        self,
        value: Option<Spanned<HumanDuration>>,
        key: &str,
        sink: &mut ErrorSink<'_>,
    ) -> Option<Duration> {
        let value = value?;
        let span: Range<usize> = value.span();
        match self.check(value.into_inner().get()) {
            Ok(duration) => Some(duration),
            Err(message) => {
                sink.push(&span, key, message);
                None
            }
        }
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {}", words(self.min), words(self.max))
    }
}

/// A bound as it is written in the docs: `10ms`, `1s`, `10m`, `24h`, `7d`.
fn words(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if duration.subsec_nanos() != 0 || (seconds == 0 && !duration.is_zero()) {
        return format!("{}ms", duration.as_millis());
    }
    match seconds {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 && s > 86_400 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

// === arithmetic ===

/// How far ahead [`after`] lands when `at + span` overflows: "never", in practice.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 86_400);

/// `at + span`, or an instant about thirty years on when that does not fit (`Instant + Duration`
/// panics on overflow). Configured durations are bounded, so this is the second line of defence:
/// no arithmetic on a deadline can take a task down.
pub fn after(at: Instant, span: Duration) -> Instant {
    at.checked_add(span)
        .or_else(|| at.checked_add(FAR_FUTURE))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse("30").is_err());
        assert!(parse("soon").unwrap_err().contains("`soon`"));
    }

    #[test]
    fn bounds_name_the_limit_and_the_range() {
        assert_eq!(
            PROBE_INTERVAL.check(Duration::from_nanos(1)),
            Err("must be at least 1s (the range is 1s to 24h)".to_owned())
        );
        assert_eq!(
            RULE_FOR.check(parse("500000000000y").unwrap()),
            Err("must be at most 7d (the range is 0s to 7d)".to_owned())
        );
        assert_eq!(
            TIMEOUT.check(Duration::ZERO),
            Err("must be at least 10ms (the range is 10ms to 10m)".to_owned())
        );
        assert_eq!(PROBE_INTERVAL.check(DAY), Ok(DAY));
        assert_eq!(RULE_FOR.check(Duration::ZERO), Ok(Duration::ZERO));
    }

    /// The docs state the ranges in the same words, and each parses back to its bound.
    #[test]
    fn bounds_are_written_as_they_parse() {
        for bounds in [
            PROBE_INTERVAL,
            TIMEOUT,
            STALL_WINDOW,
            MAX_LATENCY,
            CRON_GRACE,
            GROUP_WAIT,
            GROUP_INTERVAL,
            REPEAT_INTERVAL,
            KEEP_RESOLVED,
            GIVE_UP_AFTER,
            HEARTBEAT_INTERVAL,
            RESEND_INTERVAL,
            RULE_FOR,
        ] {
            assert!(bounds.min <= bounds.max, "{bounds}");
            for end in [bounds.min, bounds.max] {
                assert_eq!(parse(&words(end)), Ok(end), "{bounds}");
            }
        }
    }

    /// Far past the largest configurable duration, deadlines saturate instead of panicking.
    #[test]
    fn after_never_overflows() {
        let now = Instant::now();
        assert_eq!(after(now, SECOND), now + SECOND);
        assert!(after(now, Duration::MAX) > now + DAY);
        assert!(after(now, parse("500000000000y").unwrap()) > now);
    }
}
