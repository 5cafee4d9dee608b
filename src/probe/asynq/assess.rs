//! The judgement part of the `asynq` probe, free of I/O: what the probe remembers between runs,
//! how counters become deltas, when a queue is stalled, when a cron entry is late.
//!
//! Kept apart from the Redis reads so that the timing logic is tested with tokio's paused clock
//! and the wall-clock logic with fixed Unix times.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::proto;
use super::read::{CronEntry, QueueStats};

/// The probe's settings that the verdicts depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Pending work with no processed increase for this long is stalled.
    pub stall_window: Duration,
    /// An oldest pending task older than this is stalled.
    pub max_latency: Option<Duration>,
    /// How late past its due time a cron entry may fire.
    pub cron_grace: Duration,
}

/// Why a queue is stalled, most specific first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallReason {
    /// Tasks are pending and no live, active server consumes the queue.
    NoLiveServer,
    /// Tasks are pending and the processed counter has not moved for the stall window.
    NoProgress,
    /// The oldest pending task has waited longer than `max_latency`.
    Latency,
}

impl StallReason {
    /// The stable name rules read in `stall_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            StallReason::NoLiveServer => "no_live_server",
            StallReason::NoProgress => "no_progress",
            StallReason::Latency => "latency",
        }
    }
}

/// What the probe remembers between runs. Lives in a mutex in the probe; every use is a short,
/// synchronous critical section.
#[derive(Debug, Default)]
pub struct Memory {
    queues: HashMap<String, QueueMemory>,
    /// Whether an earlier run saw a live scheduler, to tell "the scheduler went away" from
    /// "there never was one".
    schedulers_seen: bool,
}

/// One queue's counters as last read, and what was derived from them.
#[derive(Clone, Debug)]
struct QueueMemory {
    processed: i64,
    failed: i64,
    /// When the queue last made progress: processed went up, or there was nothing to do.
    progress_at: Instant,
    /// Whether work was waiting (pending, not paused) at the last run.
    waiting: bool,
    processed_since_start: u64,
    failed_since_start: u64,
}

/// The verdict on one queue for one run.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueVerdict {
    /// Processed tasks (failures included, as Asynq counts them) since the previous run.
    pub processed_delta: i64,
    /// Failed tasks since the previous run.
    pub failed_delta: i64,
    /// Processed deltas summed since honeyguide started: a counter.
    pub processed_since_start: u64,
    /// Failed deltas summed since honeyguide started: a counter.
    pub failed_since_start: u64,
    /// Age of the oldest pending task, in seconds; 0 when nothing is pending or its enqueue time
    /// is unknown.
    pub latency_seconds: f64,
    /// False when tasks are pending but the oldest has no `pending_since` (Asynq's shutdown
    /// requeue leaves it unset), so that `latency_seconds` reads 0 without meaning it.
    pub latency_known: bool,
    /// Live, active servers that consume this queue.
    pub live_servers: i64,
    /// How long since the queue last made progress.
    pub idle: Duration,
    /// Why the queue is stalled, if it is.
    pub stall: Option<StallReason>,
}

impl Memory {
    /// Folds one queue's fresh stats into memory and judges it. `now` is the monotonic time of
    /// the run, `now_unix_nanos` the wall clock the Asynq timestamps are compared with.
    pub fn assess_queue(
        &mut self,
        stats: &QueueStats,
        live_servers: i64,
        now: Instant,
        now_unix_nanos: i64,
        settings: &Settings,
    ) -> QueueVerdict {
        let memory = self
            .queues
            .entry(stats.name.clone())
            .or_insert_with(|| QueueMemory {
                processed: stats.processed,
                failed: stats.failed,
                progress_at: now,
                waiting: false,
                processed_since_start: 0,
                failed_since_start: 0,
            });
        let processed_delta = counter_delta(memory.processed, stats.processed);
        let failed_delta = counter_delta(memory.failed, stats.failed);
        memory.processed = stats.processed;
        memory.failed = stats.failed;
        memory.processed_since_start = memory
            .processed_since_start
            .saturating_add(u64::try_from(processed_delta).unwrap_or(0));
        memory.failed_since_start = memory
            .failed_since_start
            .saturating_add(u64::try_from(failed_delta).unwrap_or(0));
        // A paused queue is not expected to move, and an empty one has nothing to do: the window
        // starts when work is first seen waiting, not at the last run that saw none (runs may be
        // further apart than the window).
        let waiting = stats.pending > 0 && !stats.paused;
        if processed_delta > 0 || !waiting || !memory.waiting {
            memory.progress_at = now;
        }
        memory.waiting = waiting;
        let idle = now.saturating_duration_since(memory.progress_at);

        let latency_known = stats.pending == 0 || stats.oldest_pending_since_nanos.is_some();
        let latency_seconds = match stats.oldest_pending_since_nanos {
            Some(since) if stats.pending > 0 => {
                (now_unix_nanos.saturating_sub(since)).max(0) as f64 / 1e9
            }
            _ => 0.0,
        };
        let stall = if stats.pending == 0 || stats.paused {
            None
        } else if live_servers == 0 {
            Some(StallReason::NoLiveServer)
        } else if idle >= settings.stall_window {
            Some(StallReason::NoProgress)
        } else if settings
            .max_latency
            .is_some_and(|max| latency_seconds > max.as_secs_f64())
        {
            Some(StallReason::Latency)
        } else {
            None
        };
        QueueVerdict {
            processed_delta,
            failed_delta,
            processed_since_start: memory.processed_since_start,
            failed_since_start: memory.failed_since_start,
            latency_seconds,
            latency_known,
            live_servers,
            idle,
            stall,
        }
    }

    /// Records whether a live scheduler was seen; returns true while none is, after an earlier
    /// run saw one (the scheduler process went away, so cron entries stopped firing).
    pub fn scheduler_gone(&mut self, live_schedulers: usize) -> bool {
        if live_schedulers > 0 {
            self.schedulers_seen = true;
        }
        self.schedulers_seen && live_schedulers == 0
    }
}

/// The increase of an all-time counter. A lower value means it was reset (Redis lost its data,
/// or Asynq wrapped it at `MaxInt64`): then everything it counted since is new.
fn counter_delta(previous: i64, current: i64) -> i64 {
    if current >= previous {
        current - previous
    } else {
        current.max(0)
    }
}

/// Live servers that pull from `queue`: those with status `active` (a `stopped` server still
/// heartbeats but takes no new tasks) and the queue in their queue map. Heartbeat expiry was
/// already checked when reading them.
pub fn live_servers_for(servers: &[proto::ServerInfo], queue: &str) -> i64 {
    servers
        .iter()
        .filter(|server| server.status == "active" && server.queues.contains_key(queue))
        .count() as i64
}

/// Whether a cron entry missed its schedule, at `now` (Unix seconds).
///
/// The period is derived from the scheduler's own `next - prev`, not by parsing `spec`: the
/// scheduler computed both from the spec in its own time zone, so this needs no cron parser or
/// time-zone database, handles `@every`, `CRON_TZ=` and irregular schedules (a weekday job's gap
/// over a weekend is the real gap), and agrees with the scheduler by construction.
///
/// An entry is late when
/// - its announced next fire time passed more than `grace` ago (the scheduler did not fire), or
/// - its last enqueue (the newest `scheduler_history` event, else `prev`) is older than one period
///   plus `grace`: cron fired, but the enqueue failed, so no history was recorded.
///
/// An entry that never fired (`prev` unset) is judged by `next` alone.
pub fn is_late(entry: &CronEntry, now: i64, grace: Duration) -> bool {
    let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    if entry.next > 0 && now > entry.next.saturating_add(grace) {
        return true;
    }
    if entry.prev > 0 && entry.next > entry.prev {
        let period = entry.next - entry.prev;
        let last = entry.last_enqueue.unwrap_or(entry.prev);
        return now > last.saturating_add(period).saturating_add(grace);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn settings() -> Settings {
        Settings {
            stall_window: Duration::from_secs(300),
            max_latency: Some(Duration::from_secs(600)),
            cron_grace: Duration::from_secs(60),
        }
    }

    fn stats(pending: i64, processed: i64) -> QueueStats {
        QueueStats {
            name: "default".to_owned(),
            pending,
            processed,
            oldest_pending_since_nanos: (pending > 0).then_some(1_000 * SECOND),
            ..QueueStats::default()
        }
    }

    /// The stall window is measured from the last processed increase, with the run's own clock.
    #[tokio::test(start_paused = true)]
    async fn no_progress_for_the_window_is_a_stall() {
        let mut memory = Memory::default();
        let now_ns = 1_010 * SECOND;
        let first = memory.assess_queue(&stats(5, 100), 1, Instant::now(), now_ns, &settings());
        assert_eq!(first.stall, None);
        assert_eq!(first.processed_delta, 0);

        tokio::time::advance(Duration::from_secs(299)).await;
        let before = memory.assess_queue(&stats(5, 100), 1, Instant::now(), now_ns, &settings());
        assert_eq!(before.stall, None);
        assert_eq!(before.idle, Duration::from_secs(299));

        tokio::time::advance(Duration::from_secs(1)).await;
        let stalled = memory.assess_queue(&stats(5, 100), 1, Instant::now(), now_ns, &settings());
        assert_eq!(stalled.stall, Some(StallReason::NoProgress));

        // One processed task resets the window.
        tokio::time::advance(Duration::from_secs(60)).await;
        let moving = memory.assess_queue(&stats(5, 101), 1, Instant::now(), now_ns, &settings());
        assert_eq!(moving.stall, None);
        assert_eq!(moving.processed_delta, 1);
        assert_eq!(moving.idle, Duration::ZERO);
    }

    /// An empty or paused queue never counts towards the window.
    #[tokio::test(start_paused = true)]
    async fn idle_and_paused_queues_are_not_stalled() {
        let mut memory = Memory::default();
        memory.assess_queue(&stats(0, 7), 1, Instant::now(), 0, &settings());
        tokio::time::advance(Duration::from_secs(3600)).await;
        let fresh_work = memory.assess_queue(&stats(3, 7), 1, Instant::now(), 0, &settings());
        assert_eq!(fresh_work.stall, None);
        assert_eq!(fresh_work.idle, Duration::from_secs(0));

        let mut paused = stats(3, 7);
        paused.paused = true;
        tokio::time::advance(Duration::from_secs(3600)).await;
        let verdict = memory.assess_queue(&paused, 0, Instant::now(), 0, &settings());
        assert_eq!(verdict.stall, None);
    }

    #[tokio::test(start_paused = true)]
    async fn no_live_server_is_named_before_no_progress() {
        let mut memory = Memory::default();
        let verdict = memory.assess_queue(&stats(1, 0), 0, Instant::now(), 0, &settings());
        assert_eq!(verdict.stall, Some(StallReason::NoLiveServer));
    }

    #[tokio::test(start_paused = true)]
    async fn latency_counts_from_pending_since_in_nanoseconds() {
        let mut memory = Memory::default();
        let now_ns = 1_000 * SECOND + 601 * SECOND;
        let verdict = memory.assess_queue(&stats(2, 0), 1, Instant::now(), now_ns, &settings());
        assert_eq!(verdict.latency_seconds, 601.0);
        assert_eq!(verdict.stall, Some(StallReason::Latency));

        let mut unknown = stats(2, 0);
        unknown.oldest_pending_since_nanos = None;
        let verdict = memory.assess_queue(&unknown, 1, Instant::now(), now_ns, &settings());
        assert_eq!(verdict.latency_seconds, 0.0);
        assert!(!verdict.latency_known);
    }

    /// Deltas accumulate into counters; a counter that went down was reset and counts afresh.
    #[tokio::test(start_paused = true)]
    async fn deltas_accumulate_and_survive_a_reset() {
        let mut memory = Memory::default();
        let mut queue = stats(0, 100);
        queue.failed = 10;
        memory.assess_queue(&queue, 1, Instant::now(), 0, &settings());
        queue.processed = 130;
        queue.failed = 12;
        let verdict = memory.assess_queue(&queue, 1, Instant::now(), 0, &settings());
        assert_eq!((verdict.processed_delta, verdict.failed_delta), (30, 2));
        queue.processed = 5;
        queue.failed = 0;
        let verdict = memory.assess_queue(&queue, 1, Instant::now(), 0, &settings());
        assert_eq!((verdict.processed_delta, verdict.failed_delta), (5, 0));
        assert_eq!(verdict.processed_since_start, 35);
        assert_eq!(verdict.failed_since_start, 2);
    }

    #[test]
    fn only_active_servers_of_the_queue_are_live() {
        let server = |status: &str, queues: &[&str]| proto::ServerInfo {
            status: status.to_owned(),
            queues: queues
                .iter()
                .map(|queue| ((*queue).to_owned(), 1))
                .collect(),
            ..proto::ServerInfo::default()
        };
        let servers = [
            server("active", &["default", "critical"]),
            server("stopped", &["default"]),
            server("active", &["low"]),
        ];
        assert_eq!(live_servers_for(&servers, "default"), 1);
        assert_eq!(live_servers_for(&servers, "low"), 1);
        assert_eq!(live_servers_for(&servers, "other"), 0);
    }

    fn entry(prev: i64, next: i64, last_enqueue: Option<i64>) -> CronEntry {
        CronEntry {
            id: "e".to_owned(),
            spec: "@every 5m".to_owned(),
            task_type: "digest".to_owned(),
            prev,
            next,
            last_enqueue,
        }
    }

    #[test]
    fn cron_lateness_uses_the_schedulers_own_period() {
        let now = 10_000;
        let grace = Duration::from_secs(60);
        // Fired 30 s ago, next in 270 s: on time.
        assert!(!is_late(
            &entry(now - 30, now + 270, Some(now - 30)),
            now,
            grace
        ));
        // Its next fire time passed 100 s ago: the scheduler did not fire.
        assert!(is_late(
            &entry(now - 400, now - 100, Some(now - 400)),
            now,
            grace
        ));
        // Within the grace.
        assert!(!is_late(&entry(now - 340, now - 40, None), now, grace));
        // Cron fired 30 s ago but the last recorded enqueue is two periods old.
        assert!(is_late(
            &entry(now - 30, now + 270, Some(now - 700)),
            now,
            grace
        ));
        // Never fired, due later.
        assert!(!is_late(&entry(0, now + 100, None), now, grace));
    }

    #[test]
    fn a_scheduler_that_went_away_is_noticed_once_seen() {
        let mut memory = Memory::default();
        assert!(!memory.scheduler_gone(0));
        assert!(!memory.scheduler_gone(1));
        assert!(memory.scheduler_gone(0));
        assert!(memory.scheduler_gone(0), "stays gone until one is back");
        assert!(!memory.scheduler_gone(2));
    }
}
