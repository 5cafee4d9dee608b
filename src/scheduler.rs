//! When probes run: each on its own interval, spread out, bounded in time and in number.
//!
//! Every probe gets a task of its own that ticks at the probe's interval. The first tick is
//! offset by a deterministic per-probe amount within the interval (a hash of the name), so a
//! thousand probes with the same interval spread evenly instead of firing together, and the
//! spread is the same after every restart. A shared semaphore bounds the runs in flight; the
//! time a run waited beyond its tick (for a permit, or because the runtime was busy) is its
//! *lag*, reported with the result and exported as a histogram.
//!
//! A run is [`probe::execute`]: it cannot outlive its timeout and a panic becomes a failed result,
//! so one bad probe never delays another. Missed ticks are skipped, not replayed in a burst.
//!
//! On shutdown, ticking stops at once; runs already in flight finish (they are bounded by their
//! timeouts) and report, so the last results are not lost.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::config::ProbeConfig;
use crate::probe::{self, Probe};
use crate::spec::duration::after;
use crate::state::ProbeRun;

/// Everything one probe's loop needs.
struct Schedule {
    index: usize,
    probe: Arc<Probe>,
    interval: Duration,
    timeout: Duration,
    offset: Duration,
}

/// Runs every probe in `probes` until `shutdown` is cancelled, sending each result to `results`.
/// Returns once every loop has stopped and its last run has reported.
pub async fn run(
    probes: &[ProbeConfig],
    max_concurrent: usize,
    results: mpsc::Sender<ProbeRun>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(max_concurrent));
    let mut loops = JoinSet::new();
    for (index, config) in probes.iter().enumerate() {
        let schedule = Schedule {
            index,
            probe: config.probe.clone(),
            interval: config.interval,
            timeout: config.timeout,
            offset: start_offset(&config.name, config.interval),
        };
        loops.spawn(probe_loop(
            schedule,
            permits.clone(),
            results.clone(),
            shutdown.clone(),
        ));
    }
    drop(results);
    while let Some(joined) = loops.join_next().await {
        if let Err(error) = joined {
            // A loop only ends abnormally if the runtime is shutting down under us.
            tracing::warn!(%error, "probe loop ended abnormally");
        }
    }
}

async fn probe_loop(
    schedule: Schedule,
    permits: Arc<Semaphore>,
    results: mpsc::Sender<ProbeRun>,
    shutdown: CancellationToken,
) {
    let mut ticker =
        tokio::time::interval_at(after(Instant::now(), schedule.offset), schedule.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let scheduled = tokio::select! {
            () = shutdown.cancelled() => return,
            scheduled = ticker.tick() => scheduled,
        };
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            permit = permits.acquire() => permit,
        };
        // The semaphore is never closed, so this only fails if that changes; then stop cleanly.
        let Ok(_permit) = permit else { return };
        let lag = Instant::now().saturating_duration_since(scheduled);
        let result = probe::execute(schedule.probe.clone(), schedule.timeout).await;
        let run = ProbeRun {
            probe: schedule.index,
            result,
            at: Instant::now(),
            checked_at: Timestamp::now(),
            lag,
        };
        if results.send(run).await.is_err() {
            // The state task is gone: the daemon is stopping.
            return;
        }
    }
}

/// A stable offset in `[0, interval)` derived from the probe name.
///
/// Deterministic (same name, same offset, every start) and evenly spread for many names; this is
/// what Prometheus does for scrape targets.
pub fn start_offset(name: &str, interval: Duration) -> Duration {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    let interval_nanos = interval.as_nanos().max(1);
    let nanos = u128::from(hasher.finish()) % interval_nanos;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_stable_and_within_the_interval() {
        let interval = Duration::from_secs(30);
        let first = start_offset("edge-api", interval);
        assert_eq!(first, start_offset("edge-api", interval));
        assert!(first < interval);
        assert_ne!(first, start_offset("origin-1", interval));
    }

    #[test]
    fn offsets_spread_over_the_interval() {
        let interval = Duration::from_secs(10);
        let mut buckets = [0usize; 10];
        for index in 0..1000 {
            let offset = start_offset(&format!("probe-{index}"), interval);
            buckets[offset.as_secs() as usize] += 1;
        }
        // 100 expected per one-second bucket; a grossly uneven spread would cluster runs.
        assert!(
            buckets.iter().all(|&count| (50..=150).contains(&count)),
            "{buckets:?}"
        );
    }
}
