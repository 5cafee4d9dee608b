//! Rendered documents shared by concurrent readers.
//!
//! `/status`, the page and `/metrics` are big at scale (megabytes at 10,000 probes or with many
//! silences), and each reader used to build its own copy: 50 readers at once held 50 copies.
//! A [`Rendered`] cache renders one document at a time and hands every reader the same
//! reference-counted bytes, so concurrent readers cost one document, not one each.
//!
//! Freshness: a reader gets a rendering that started after it arrived, or one of the very
//! snapshot it would render itself (nothing changed) that is at most [`MAX_AGE`] old, so
//! relative times ("12s ago") stay honest. Readers that arrive while a rendering is under way
//! wait for it and then share the next one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::state::Snapshot;

/// How long a rendering of an unchanged snapshot is served again.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// One kind of document, rendered at most once per reader wave.
#[derive(Debug, Default)]
pub struct Rendered {
    latest: Mutex<Option<Rendering>>,
}

#[derive(Debug)]
struct Rendering {
    started: Instant,
    snapshot: Arc<Snapshot>,
    bytes: Bytes,
}

impl Rendered {
    /// The document for a reader that arrived at `arrived`: a shared rendering when one is
    /// fresh enough, else `render` of `snapshot` (then shared with the readers after it).
    /// `snapshot` is asked for only when a rendering is needed.
    pub async fn get<S, R>(&self, arrived: Instant, snapshot: S, render: R) -> Option<Bytes>
    where
        S: AsyncFnOnce() -> Option<Arc<Snapshot>>,
        R: FnOnce(&Snapshot) -> Vec<u8>,
    {
        let mut latest = self.latest.lock().await;
        if let Some(rendering) = latest.as_ref().filter(|r| r.started >= arrived) {
            return Some(rendering.bytes.clone());
        }
        let started = Instant::now();
        let snapshot = snapshot().await?;
        if let Some(rendering) = latest.as_ref().filter(|rendering| {
            Arc::ptr_eq(&rendering.snapshot, &snapshot)
                && started.saturating_duration_since(rendering.started) < MAX_AGE
        }) {
            return Some(rendering.bytes.clone());
        }
        let bytes = Bytes::from(render(&snapshot));
        *latest = Some(Rendering {
            started,
            snapshot,
            bytes: bytes.clone(),
        });
        Some(bytes)
    }
}
