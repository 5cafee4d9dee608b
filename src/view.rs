//! What is known about each probe: its latest result, a short history, counters and hourly
//! uptime, as the state task keeps it and the classifier, `/status` and `/metrics` read it.
//!
//! A [`ProbeView`] is plain data folded from results ([`ProbeView::record`]); it sits below the
//! catalog (whose rules read it) and the state task (which owns the views), and above the probe
//! model, so the arrows run one way.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;

use crate::probe::{ErrorClass, Kind, ProbeResult};

/// Runs remembered per probe, for rules (`failure_ratio(n)`) and uptime.
pub const HISTORY_LEN: usize = 100;
/// Runs shown per probe in `/status`.
pub const STATUS_HISTORY_LEN: usize = 20;

/// One past probe run, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRow {
    /// Probe name.
    pub probe: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// Why not.
    pub error: Option<ErrorClass>,
    /// How long it took.
    pub duration: Duration,
    /// When it finished (milliseconds are kept).
    pub checked_at: Timestamp,
}

/// Everything known about one probe, as of the latest result.
#[derive(Clone, Debug)]
pub struct ProbeView {
    /// Unique name.
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// What is probed (no credentials).
    pub target: String,
    /// Configured labels.
    pub labels: BTreeMap<String, String>,
    /// Configured interval.
    pub interval: Duration,
    /// Configured timeout.
    pub timeout: Duration,
    /// The latest result, once there is one.
    pub latest: Option<Checked>,
    /// The last [`HISTORY_LEN`] runs, oldest first.
    pub history: VecDeque<HistoryPoint>,
    /// Failed runs since the last success.
    pub consecutive_failures: u64,
    /// When the probe last succeeded (monotonic).
    pub last_ok: Option<Instant>,
    /// When the probe last succeeded (wall clock).
    pub last_ok_at: Option<Timestamp>,
    /// Successful runs since start.
    pub runs_ok: u64,
    /// Failed runs since start, by error class.
    pub runs_failed: BTreeMap<ErrorClass, u64>,
    /// Runs per wall-clock hour, oldest first, for uptime over the last day.
    pub hourly: VecDeque<HourBucket>,
}

/// Runs that finished within one wall-clock hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HourBucket {
    /// Hours since the Unix epoch.
    pub hour: i64,
    /// Successful runs in that hour.
    pub ok: u32,
    /// All runs in that hour.
    pub total: u32,
}

/// Hour buckets kept: a day, plus the hour in progress.
const HOURS_KEPT: usize = 25;

/// A result with when it arrived.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The result.
    pub result: ProbeResult,
    /// When (monotonic).
    pub at: Instant,
    /// When (wall clock).
    pub checked_at: Timestamp,
}

/// One past run, compact.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HistoryPoint {
    /// Whether it succeeded.
    pub ok: bool,
    /// Why not.
    pub error: Option<ErrorClass>,
    /// How long it took.
    pub duration: Duration,
    /// When it finished (monotonic).
    pub at: Instant,
    /// When it finished (wall clock).
    pub checked_at: Timestamp,
}

impl ProbeView {
    /// A probe that has not run yet.
    pub fn new(
        name: &str,
        kind: Kind,
        target: String,
        labels: BTreeMap<String, String>,
        interval: Duration,
        timeout: Duration,
    ) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            target,
            labels,
            interval,
            timeout,
            latest: None,
            history: VecDeque::new(),
            consecutive_failures: 0,
            last_ok: None,
            last_ok_at: None,
            runs_ok: 0,
            runs_failed: BTreeMap::new(),
            hourly: VecDeque::new(),
        }
    }

    /// Folds one run in.
    pub fn record(&mut self, result: ProbeResult, at: Instant, checked_at: Timestamp) {
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(HistoryPoint {
            ok: result.ok,
            error: result.error,
            duration: result.duration,
            at,
            checked_at,
        });
        if result.ok {
            self.consecutive_failures = 0;
            self.last_ok = Some(at);
            self.last_ok_at = Some(checked_at);
            self.runs_ok += 1;
        } else {
            self.consecutive_failures += 1;
            *self
                .runs_failed
                .entry(result.error.unwrap_or(ErrorClass::Internal))
                .or_default() += 1;
        }
        self.count_hourly(result.ok, checked_at);
        self.latest = Some(Checked {
            result,
            at,
            checked_at,
        });
    }

    fn count_hourly(&mut self, ok: bool, checked_at: Timestamp) {
        let hour = checked_at.as_second().div_euclid(3600);
        match self.hourly.back_mut() {
            Some(bucket) if bucket.hour == hour => {
                bucket.total += 1;
                bucket.ok += u32::from(ok);
            }
            _ => {
                if self.hourly.len() == HOURS_KEPT {
                    self.hourly.pop_front();
                }
                self.hourly.push_back(HourBucket {
                    hour,
                    ok: u32::from(ok),
                    total: 1,
                });
            }
        }
    }

    /// Fills the history from the store after a restart (oldest first): `/status` shows it,
    /// uptime counts it, and rules reading failure ratios see it. `latest` stays empty until the
    /// first run, and the run counters count from this start.
    pub fn restore_history(&mut self, rows: &[HistoryRow], now: Instant, at: Timestamp) {
        let skip = rows.len().saturating_sub(HISTORY_LEN);
        for row in &rows[skip..] {
            if self.history.len() == HISTORY_LEN {
                self.history.pop_front();
            }
            let ago = Duration::try_from(at.duration_since(row.checked_at)).unwrap_or_default();
            let point_at = now.checked_sub(ago).unwrap_or(now);
            self.history.push_back(HistoryPoint {
                ok: row.ok,
                error: row.error,
                duration: row.duration,
                at: point_at,
                checked_at: row.checked_at,
            });
            self.count_hourly(row.ok, row.checked_at);
            if row.ok {
                self.consecutive_failures = 0;
                self.last_ok = Some(point_at);
                self.last_ok_at = Some(row.checked_at);
            } else {
                self.consecutive_failures += 1;
            }
        }
    }

    /// Share of successful runs over the 24 hours before `now` (hour granularity), or `None`
    /// without runs in that time.
    pub fn uptime_24h(&self, now: Timestamp) -> Option<f64> {
        let current = now.as_second().div_euclid(3600);
        let (ok, total) = self
            .hourly
            .iter()
            .filter(|bucket| bucket.hour > current - 24)
            .fold((0u64, 0u64), |(ok, total), bucket| {
                (ok + u64::from(bucket.ok), total + u64::from(bucket.total))
            });
        (total > 0).then(|| ok as f64 / total as f64)
    }

    /// Share of the last `n` runs that failed (0 when there are none).
    pub fn failure_ratio(&self, n: usize) -> f64 {
        let recent: Vec<_> = self.history.iter().rev().take(n).collect();
        if recent.is_empty() {
            return 0.0;
        }
        recent.iter().filter(|point| !point.ok).count() as f64 / recent.len() as f64
    }

    /// Seconds since the last success, or `None` if the probe never succeeded.
    pub fn seconds_since_ok(&self, now: Instant) -> Option<f64> {
        self.last_ok
            .map(|at| now.saturating_duration_since(at).as_secs_f64())
    }

    /// Whether the latest run succeeded (`None` before the first run).
    pub fn ok(&self) -> Option<bool> {
        self.latest.as_ref().map(|checked| checked.result.ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Observations;

    fn result(ok: bool) -> ProbeResult {
        ProbeResult {
            ok,
            error: (!ok).then_some(ErrorClass::Connect),
            message: String::new(),
            observations: Observations::new(),
            duration: Duration::from_millis(5),
            phases: Vec::new(),
        }
    }

    fn view() -> ProbeView {
        ProbeView::new(
            "p",
            Kind::Http,
            String::new(),
            BTreeMap::new(),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
    }

    /// Counters, streaks and the last success follow the results.
    #[tokio::test(start_paused = true)]
    async fn record_tracks_streaks_and_last_success() {
        let mut view = view();
        let start = Instant::now();
        view.record(result(true), start, Timestamp::UNIX_EPOCH);
        tokio::time::advance(Duration::from_secs(3)).await;
        view.record(result(false), Instant::now(), Timestamp::UNIX_EPOCH);
        view.record(result(false), Instant::now(), Timestamp::UNIX_EPOCH);
        assert_eq!(view.consecutive_failures, 2);
        assert_eq!(view.runs_ok, 1);
        assert_eq!(view.runs_failed.get(&ErrorClass::Connect), Some(&2));
        assert_eq!(view.seconds_since_ok(Instant::now()), Some(3.0));
        assert_eq!(view.ok(), Some(false));
        view.record(result(true), Instant::now(), Timestamp::UNIX_EPOCH);
        assert_eq!(view.consecutive_failures, 0);
    }

    /// Uptime counts the runs of the last 24 hours only.
    #[test]
    fn uptime_covers_the_last_day() {
        let mut view = view();
        let at = |hour: i64| Timestamp::from_second(hour * 3600 + 60).unwrap();
        let now = Instant::now();
        view.record(result(false), now, at(100));
        view.record(result(true), now, at(130));
        view.record(result(true), now, at(131));
        view.record(result(false), now, at(131));
        assert_eq!(view.uptime_24h(at(131)), Some(2.0 / 3.0));
        assert_eq!(view.uptime_24h(at(200)), None);
        assert_eq!(view.hourly.len(), 3);
    }

    /// The failure ratio looks at the last n runs only, and history is bounded.
    #[tokio::test(start_paused = true)]
    async fn failure_ratio_counts_recent_runs_and_history_is_bounded() {
        let mut view = view();
        assert_eq!(view.failure_ratio(5), 0.0);
        for index in 0..(HISTORY_LEN + 10) {
            view.record(
                result(index % 4 != 0),
                Instant::now(),
                Timestamp::UNIX_EPOCH,
            );
        }
        assert_eq!(view.history.len(), HISTORY_LEN);
        // The last 4 runs are indices 106..=109: one of them (108) failed.
        assert_eq!(view.failure_ratio(4), 0.25);
    }
}
