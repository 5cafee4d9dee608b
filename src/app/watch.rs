//! `[server] watch_config`: reloading when `probes.toml` or the rules change on disk.
//!
//! The watch is on the two *directories* (the config file's and the rules'), not on the files:
//! Kubernetes mounts a ConfigMap as symlinks into a `..data` directory and updates it by
//! swapping the `..data` symlink, which a watch on the old file would never see. Only events that
//! can change the configuration count (writes, creations, removals and renames of
//! `probes.toml`, of a `*.toml` rule, or of a `..`-named ConfigMap entry; not reads, and not the
//! store's own files when they live beside the config), and a burst of them (an editor's save,
//! a ConfigMap swap) becomes one reload once the directory has been quiet for [`DEBOUNCE`].

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::control::{ReloadRequest, Trigger};

/// How long the directories must be quiet after a change before the reload.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// A running watch; dropping it stops it.
pub(super) struct Watch {
    _watcher: notify::RecommendedWatcher,
    debounce: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.debounce.abort();
    }
}

/// Watches the directory of `config` and `alerts`, asking `reloads` for a reload after each
/// burst of changes. `None` (with a warning) when the system cannot watch them: the daemon
/// still reloads on SIGHUP and `POST /-/reload`.
pub(super) fn start(
    config: &Path,
    alerts: Option<&Path>,
    reloads: mpsc::Sender<ReloadRequest>,
) -> Option<Watch> {
    let config_dir = config
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let config_name = config.file_name().map(OsStr::to_owned);
    let alerts_dir = alerts.map(Path::to_owned);
    let (changes_tx, changes) = mpsc::unbounded_channel::<()>();
    let relevant = {
        let (config_dir, alerts_dir) = (config_dir.clone(), alerts_dir.clone());
        move |path: &Path| {
            is_relevant(
                path,
                &config_dir,
                config_name.as_deref(),
                alerts_dir.as_deref(),
            )
        }
    };
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        if event.paths.iter().any(|path| relevant(path)) {
            let _ = changes_tx.send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot watch the configuration; reload with SIGHUP or POST /-/reload");
            return None;
        }
    };
    for dir in std::iter::once(&config_dir).chain(alerts_dir.as_ref()) {
        if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(%error, dir = %dir.display(), "cannot watch the configuration; reload with SIGHUP or POST /-/reload");
            return None;
        }
    }
    tracing::info!(
        config = %config_dir.display(),
        alerts = ?alerts_dir,
        "watching the configuration for changes"
    );
    Some(Watch {
        _watcher: watcher,
        debounce: tokio::spawn(debounce(changes, reloads)),
    })
}

/// Whether a change at `path` can change the configuration.
fn is_relevant(
    path: &Path,
    config_dir: &Path,
    config_name: Option<&OsStr>,
    alerts_dir: Option<&Path>,
) -> bool {
    let name = path.file_name();
    let configmap_entry = name
        .and_then(OsStr::to_str)
        .is_some_and(|name| name.starts_with(".."));
    let parent = path.parent().map(PathBuf::from);
    let in_dir = |dir: &Path| {
        parent
            .as_deref()
            .is_some_and(|parent| same_dir(parent, dir))
    };
    if in_dir(config_dir) && (name == config_name || configmap_entry) {
        return true;
    }
    alerts_dir.is_some_and(|dir| {
        in_dir(dir) && (configmap_entry || path.extension().and_then(OsStr::to_str) == Some("toml"))
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

/// One reload per burst: after a change, wait until [`DEBOUNCE`] passes without another.
async fn debounce(mut changes: mpsc::UnboundedReceiver<()>, reloads: mpsc::Sender<ReloadRequest>) {
    while changes.recv().await.is_some() {
        loop {
            match tokio::time::timeout(DEBOUNCE, changes.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        if reloads
            .send(ReloadRequest::new(Trigger::FileChange))
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the config file, rules and ConfigMap entries count; the store beside them does not.
    #[test]
    fn only_configuration_files_are_relevant() {
        let config = Path::new("/etc/hg");
        let alerts = Path::new("/etc/hg/alerts");
        let relevant = |path: &str| {
            is_relevant(
                Path::new(path),
                config,
                Some(OsStr::new("probes.toml")),
                Some(alerts),
            )
        };
        assert!(relevant("/etc/hg/probes.toml"));
        assert!(relevant("/etc/hg/..data"));
        assert!(relevant("/etc/hg/alerts/web-down.toml"));
        assert!(relevant("/etc/hg/alerts/..2026_12_03_10_00_00.123"));
        assert!(!relevant("/etc/hg/honeyguide.db-wal"));
        assert!(!relevant("/etc/hg/alerts/README.md"));
        assert!(!relevant("/etc/hg/other.toml"));
    }

    /// A burst of changes is one reload, after the quiet period.
    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_is_one_reload() {
        let (changes_tx, changes) = mpsc::unbounded_channel();
        let (reloads_tx, mut reloads) = mpsc::channel(4);
        tokio::spawn(debounce(changes, reloads_tx));
        for _ in 0..5 {
            changes_tx.send(()).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(DEBOUNCE).await;
        assert_eq!(reloads.try_recv().unwrap().trigger, Trigger::FileChange);
        assert!(reloads.try_recv().is_err());
    }
}
