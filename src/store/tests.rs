//! The store against a real SQLite file: what is committed survives reopening, the outbox is
//! ordered per notifier, re-sends coalesce, history is trimmed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::*;
use crate::alert::engine::AlertState;
use crate::alert::notification::{AlertMessage, Content, MessageStatus, Reason};
use crate::catalog::Severity;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "honeyguide-store-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("state").join("honeyguide.db")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn content(id: &str) -> Content {
    Content {
        id: id.into(),
        title: "Neon Postgres unreachable".into(),
        severity: Severity::Critical,
        labels: BTreeMap::new(),
        summary: "500s".into(),
        recovery: "wait".into(),
        runbook: String::new(),
        evidence: Vec::new(),
        since: "2026-07-01T10:00:00Z".parse().unwrap(),
    }
}

fn notification(id: &str, notifier: &str, purpose: Purpose) -> Notification {
    Notification {
        id: id.into(),
        notifier: notifier.into(),
        purpose,
        created_at: "2026-07-01T10:00:10Z".parse().unwrap(),
        alerts: vec![AlertMessage {
            status: MessageStatus::Firing,
            reason: Reason::New,
            alert: content("neon-down"),
            ends_at: None,
        }],
    }
}

fn alert(id: &str) -> StoredAlert {
    StoredAlert {
        content: content(id),
        state: AlertState::Firing,
        fired_at: Some("2026-07-01T10:00:00Z".parse().unwrap()),
        resolved_at: None,
        notified: BTreeSet::from(["email".to_owned()]),
        last_notified: Some("2026-07-01T10:00:10Z".parse().unwrap()),
    }
}

/// Alert rows and queued notifications committed together are there after reopening the file;
/// delivery order is insertion order per notifier; marking one delivered moves to the next.
#[tokio::test]
async fn committed_state_and_outbox_survive_reopening() {
    let dir = Dir::new("reopen");
    let store = StoreHandle::open(&dir.db()).await.unwrap();
    let depths = store
        .commit(Changes {
            upserts: vec![alert("neon-down")],
            removed: vec![],
            notifications: vec![
                notification("n1", "email", Purpose::Alerts),
                notification("n2", "webhook", Purpose::Alerts),
                notification("n3", "email", Purpose::Alerts),
            ],
        })
        .await
        .unwrap();
    assert_eq!(
        depths,
        BTreeMap::from([("email".into(), 2), ("webhook".into(), 1)])
    );
    drop(store);

    let store = StoreHandle::open(&dir.db()).await.unwrap();
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.alerts, vec![alert("neon-down")]);
    assert_eq!(
        loaded.depths,
        BTreeMap::from([("email".into(), 2), ("webhook".into(), 1)])
    );
    let first = store.next_outbox("email").await.unwrap().unwrap();
    assert_eq!(first.notification.id, "n1");
    store
        .record_failure(first.id, "smtp: refused")
        .await
        .unwrap();
    let again = store.next_outbox("email").await.unwrap().unwrap();
    assert_eq!((again.notification.id.as_str(), again.attempts), ("n1", 1));
    assert_eq!(store.mark_delivered(first.id, "email").await.unwrap(), 1);
    let second = store.next_outbox("email").await.unwrap().unwrap();
    assert_eq!(second.notification.id, "n3");
    assert_eq!(store.give_up(second.id, "email").await.unwrap(), 0);
    assert_eq!(store.next_outbox("email").await.unwrap(), None);
    assert_eq!(
        store
            .next_outbox("webhook")
            .await
            .unwrap()
            .unwrap()
            .notification
            .id,
        "n2"
    );
}

/// A newer Alertmanager re-send replaces an undelivered older one: a long outage does not pile
/// up a re-send per minute.
#[tokio::test]
async fn refreshes_coalesce_but_alert_messages_do_not() {
    let dir = Dir::new("refresh");
    let store = StoreHandle::open(&dir.db()).await.unwrap();
    for (id, purpose) in [
        ("a1", Purpose::Alerts),
        ("r1", Purpose::Refresh),
        ("r2", Purpose::Refresh),
        ("a2", Purpose::Alerts),
        ("r3", Purpose::Refresh),
    ] {
        store
            .commit(Changes {
                notifications: vec![notification(id, "am", purpose)],
                ..Changes::default()
            })
            .await
            .unwrap();
    }
    let mut order = Vec::new();
    while let Some(entry) = store.next_outbox("am").await.unwrap() {
        order.push(entry.notification.id.clone());
        store.mark_delivered(entry.id, "am").await.unwrap();
    }
    assert_eq!(order, ["a1", "a2", "r3"]);
}

/// Removed alerts are deleted; silences are saved, replaced and deleted.
#[tokio::test]
async fn alerts_and_silences_can_be_removed() {
    let dir = Dir::new("remove");
    let store = StoreHandle::open(&dir.db()).await.unwrap();
    store
        .commit(Changes {
            upserts: vec![alert("a"), alert("b")],
            ..Changes::default()
        })
        .await
        .unwrap();
    store
        .commit(Changes {
            removed: vec!["a".into()],
            ..Changes::default()
        })
        .await
        .unwrap();
    let silence = StoredSilence {
        id: "s1".into(),
        alerts: vec!["origin-*".into()],
        labels: BTreeMap::new(),
        starts_at: "2026-07-01T10:00:00Z".parse().unwrap(),
        ends_at: "2026-07-01T12:00:00Z".parse().unwrap(),
        comment: "drain node 2".into(),
        created_by: "ana".into(),
        created_at: "2026-07-01T10:00:00Z".parse().unwrap(),
    };
    store.save_silence(silence.clone()).await.unwrap();
    let mut ended = silence.clone();
    ended.ends_at = "2026-07-01T11:00:00Z".parse().unwrap();
    store.save_silence(ended.clone()).await.unwrap();
    let loaded = store.load().await.unwrap();
    assert_eq!(
        loaded
            .alerts
            .iter()
            .map(|alert| alert.content.id.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(loaded.silences, vec![ended]);
    store.delete_silences(vec!["s1".into()]).await.unwrap();
    assert!(store.load().await.unwrap().silences.is_empty());
}

/// Probe history is appended without waiting, trimmed to the last runs per probe, and read back
/// oldest first with its error classes.
#[tokio::test]
async fn history_is_trimmed_per_probe_and_read_back_in_order() {
    let dir = Dir::new("history");
    let store = StoreHandle::open(&dir.db()).await.unwrap();
    let base: Timestamp = "2026-07-01T10:00:00Z".parse().unwrap();
    for index in 0..(HISTORY_PER_PROBE + 20) {
        let ok = index % 3 != 0;
        assert!(
            store.append_history(HistoryRow {
                probe: "edge-api".into(),
                ok,
                error: (!ok).then_some(ErrorClass::Timeout),
                duration: Duration::from_millis(120),
                checked_at: base
                    .checked_add(jiff::SignedDuration::from_secs(
                        i64::try_from(index).unwrap()
                    ))
                    .unwrap(),
            })
        );
    }
    store.append_history(HistoryRow {
        probe: "db".into(),
        ok: true,
        error: None,
        duration: Duration::from_millis(5),
        checked_at: base,
    });
    // A question after the rows: answered once they are written.
    let history = store.load_history().await.unwrap();
    let edge = &history["edge-api"];
    assert_eq!(edge.len(), HISTORY_PER_PROBE);
    assert_eq!(
        edge[0].checked_at,
        base.checked_add(jiff::SignedDuration::from_secs(20))
            .unwrap()
    );
    assert!(
        edge.windows(2)
            .all(|pair| pair[0].checked_at < pair[1].checked_at)
    );
    let failed = edge.iter().find(|row| !row.ok).unwrap();
    assert_eq!(failed.error, Some(ErrorClass::Timeout));
    assert_eq!(failed.duration, Duration::from_millis(120));
    assert_eq!(history["db"].len(), 1);
}

/// A database written by a newer schema is refused with a clear message instead of being
/// silently misread.
#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = Dir::new("schema");
    drop(StoreHandle::open(&dir.db()).await.unwrap());
    {
        let connection = Connection::open(dir.db()).unwrap();
        connection.pragma_update(None, "user_version", 99).unwrap();
    }
    let error = StoreHandle::open(&dir.db()).await.unwrap_err();
    assert!(
        error.to_string().contains("newer honeyguide (schema 99"),
        "{error}"
    );
}

/// One store, one daemon: while a handle is open, a second open of the same file is refused,
/// naming the path and this process's pid (written into `<path>.lock`); once the first is
/// closed the store opens again, and a pid left in the lock file by a process that is gone
/// does not stand in the way.
#[tokio::test]
async fn a_second_open_is_refused_until_the_first_closes() {
    let dir = Dir::new("lock");
    let first = StoreHandle::open(&dir.db()).await.unwrap();
    let lock_file = lock_path(&dir.db());
    assert_eq!(
        std::fs::read_to_string(&lock_file).unwrap(),
        format!("{}\n", std::process::id())
    );
    let error = StoreHandle::open(&dir.db()).await.unwrap_err();
    let StoreError::Locked { path, pid } = &error else {
        panic!("not a lock error: {error}");
    };
    assert_eq!(path, &dir.db());
    assert_eq!(*pid, Some(std::process::id()));
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "the store {} is in use by another honeyguide (pid {})",
            dir.db().display(),
            std::process::id()
        )),
        "{message}"
    );

    drop(first);
    // A stale pid, as a killed daemon leaves it: not a lock, so no obstacle.
    std::fs::write(&lock_file, "4194303\n").unwrap();
    let again = StoreHandle::open(&dir.db()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&lock_file).unwrap(),
        format!("{}\n", std::process::id())
    );
    assert!(again.load().await.is_ok());
}
