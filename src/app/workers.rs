//! A set of long-running tasks keyed by name, each with its fingerprint and its own stop
//! token: the delivery loops (one per notifier) and the heartbeats, which a reload keeps,
//! replaces or stops one by one.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One running task.
#[derive(Debug)]
struct Worker {
    fingerprint: u64,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Tasks keyed by name.
#[derive(Debug, Default)]
pub(super) struct Workers {
    running: BTreeMap<String, Worker>,
}

impl Workers {
    /// Starts `work` (given its stop token) under `name`.
    pub(super) fn spawn<F>(
        &mut self,
        name: &str,
        fingerprint: u64,
        work: impl FnOnce(CancellationToken) -> F,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let task = tokio::spawn(work(stop.clone()));
        self.running.insert(
            name.to_owned(),
            Worker {
                fingerprint,
                stop,
                task,
            },
        );
    }

    /// Whether `name` runs with this fingerprint (so a reload can leave it alone).
    pub(super) fn is_running(&self, name: &str, fingerprint: u64) -> bool {
        self.running
            .get(name)
            .is_some_and(|worker| worker.fingerprint == fingerprint)
    }

    /// The names running.
    pub(super) fn names(&self) -> Vec<String> {
        self.running.keys().cloned().collect()
    }

    /// Stops `name` and waits for it to finish what it is doing, for at most `bound` (then
    /// aborts it). Returns false when it had to be aborted.
    pub(super) async fn stop(&mut self, name: &str, bound: Duration) -> bool {
        let Some(worker) = self.running.remove(name) else {
            return true;
        };
        stop_worker(worker, bound).await
    }

    /// Stops every task, waiting at most `bound` in all. Returns false when some had to be
    /// aborted.
    pub(super) async fn stop_all(&mut self, bound: Duration) -> bool {
        let workers: Vec<Worker> = std::mem::take(&mut self.running).into_values().collect();
        for worker in &workers {
            worker.stop.cancel();
        }
        let deadline = tokio::time::Instant::now() + bound;
        let mut clean = true;
        for worker in workers {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            clean &= stop_worker(worker, left).await;
        }
        clean
    }
}

async fn stop_worker(mut worker: Worker, bound: Duration) -> bool {
    worker.stop.cancel();
    if tokio::time::timeout(bound, &mut worker.task).await.is_ok() {
        return true;
    }
    worker.task.abort();
    false
}
