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
//! The set of loops can change while it runs ([`Scheduler::apply`], for a configuration
//! reload): a probe whose definition is unchanged keeps its loop, and so its phase, its run in
//! flight and its next tick; a changed probe's loop stops (its run in flight still reports, and
//! the state task, seeing the old fingerprint, sets it aside) and a new one starts; a removed
//! probe's loop stops.
//!
//! On shutdown, ticking stops at once; runs already in flight finish (they are bounded by their
//! timeouts) and report, so the last results are not lost.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ProbeConfig;
use crate::probe::{self, Probe};
use crate::spec::duration::after;
use crate::state::ProbeRun;

/// Everything one probe's loop needs.
struct Schedule {
    name: Arc<str>,
    fingerprint: u64,
    probe: Arc<Probe>,
    interval: Duration,
    timeout: Duration,
    offset: Duration,
}

/// One running loop, as the scheduler knows it.
#[derive(Debug)]
struct Loop {
    fingerprint: u64,
    stop: CancellationToken,
}

/// What [`Scheduler::apply`] did, by probe name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Probes whose loop kept running.
    pub kept: Vec<String>,
    /// Probes whose loop was replaced.
    pub restarted: Vec<String>,
    /// Probes started for the first time.
    pub started: Vec<String>,
    /// Probes whose loop stopped for good.
    pub stopped: Vec<String>,
}

/// Every probe's loop, and the semaphore bounding their runs in flight.
#[derive(Debug)]
pub struct Scheduler {
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    results: mpsc::Sender<ProbeRun>,
    loops: BTreeMap<String, Loop>,
    tasks: TaskTracker,
}

impl Scheduler {
    /// Starts a loop for every probe of `probes`, each sending its results to `results`.
    pub fn start(
        probes: &[ProbeConfig],
        max_concurrent: usize,
        results: mpsc::Sender<ProbeRun>,
    ) -> Self {
        let mut scheduler = Self {
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            results,
            loops: BTreeMap::new(),
            tasks: TaskTracker::new(),
        };
        scheduler.apply(probes, max_concurrent);
        scheduler
    }

    /// Brings the loops in line with `probes`: unchanged ones (same fingerprint) keep running,
    /// changed ones restart, removed ones stop, new ones start; the bound on runs in flight
    /// becomes `max_concurrent`.
    pub fn apply(&mut self, probes: &[ProbeConfig], max_concurrent: usize) -> Applied {
        self.resize(max_concurrent);
        let mut applied = Applied::default();
        let mut wanted: BTreeMap<&str, &ProbeConfig> = probes
            .iter()
            .map(|probe| (probe.name.as_str(), probe))
            .collect();
        let names: Vec<String> = self.loops.keys().cloned().collect();
        for name in names {
            match wanted.get(name.as_str()) {
                Some(probe) if self.loops[&name].fingerprint == probe.fingerprint => {
                    wanted.remove(name.as_str());
                    applied.kept.push(name);
                }
                Some(_) => {
                    self.stop_loop(&name);
                    applied.restarted.push(name);
                }
                None => {
                    self.stop_loop(&name);
                    applied.stopped.push(name);
                }
            }
        }
        for (name, probe) in wanted {
            if !applied.restarted.iter().any(|restarted| restarted == name) {
                applied.started.push(name.to_owned());
            }
            self.start_loop(probe);
        }
        applied
    }

    /// Whether any loop runs (with no probes there is nothing to schedule, and nothing wrong).
    pub fn is_empty(&self) -> bool {
        self.loops.is_empty()
    }

    /// Stops every loop and waits until each has finished its run in flight and reported it.
    pub async fn shutdown(mut self) {
        for (_, running) in std::mem::take(&mut self.loops) {
            running.stop.cancel();
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn start_loop(&mut self, probe: &ProbeConfig) {
        let stop = CancellationToken::new();
        let schedule = Schedule {
            name: Arc::from(probe.name.as_str()),
            fingerprint: probe.fingerprint,
            probe: probe.probe.clone(),
            interval: probe.interval,
            timeout: probe.timeout,
            offset: start_offset(&probe.name, probe.interval),
        };
        self.tasks.spawn(probe_loop(
            schedule,
            self.permits.clone(),
            self.results.clone(),
            stop.clone(),
        ));
        self.loops.insert(
            probe.name.clone(),
            Loop {
                fingerprint: probe.fingerprint,
                stop,
            },
        );
    }

    fn stop_loop(&mut self, name: &str) {
        if let Some(running) = self.loops.remove(name) {
            running.stop.cancel();
        }
    }

    /// Changes the bound on runs in flight; a lower bound takes effect as runs in flight end.
    fn resize(&mut self, max_concurrent: usize) {
        if max_concurrent > self.max_concurrent {
            self.permits
                .add_permits(max_concurrent - self.max_concurrent);
        } else if max_concurrent < self.max_concurrent {
            let surplus = self.max_concurrent - max_concurrent;
            let permits = self.permits.clone();
            // Permits held by runs in flight are taken back as those runs end.
            tokio::spawn(async move {
                if let Ok(taken) = permits
                    .acquire_many(u32::try_from(surplus).unwrap_or(u32::MAX))
                    .await
                {
                    taken.forget();
                }
            });
        }
        self.max_concurrent = max_concurrent;
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
            probe: schedule.name.clone(),
            fingerprint: schedule.fingerprint,
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
