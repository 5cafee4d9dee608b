//! The store against a real SQLite file: what is committed survives reopening, the outbox is
//! ordered per notifier, re-sends coalesce, history is kept whole for its retention and read
//! back for the views and for replay, an old schema is upgraded in place.

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
        note: None,
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

/// Now, to the second (the store keeps milliseconds).
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap()
}

fn at(base: Timestamp, seconds: i64) -> Timestamp {
    base.checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap()
}

/// A whole result of `probe` at `at`, failed every third time.
fn run(probe: &str, at: Timestamp, index: usize) -> TimedResult {
    let ok = !index.is_multiple_of(3);
    let mut observations = Observations::new();
    observations.insert("status".to_owned(), 200.into());
    observations.insert("ratio".to_owned(), 0.5.into());
    observations.insert("server".to_owned(), crate::probe::Value::Null);
    observations.insert(
        "resolved_ips".to_owned(),
        vec!["104.16.1.1", "104.16.2.2"].into(),
    );
    TimedResult {
        probe: probe.to_owned(),
        at,
        result: ProbeResult {
            ok,
            error: (!ok).then_some(ErrorClass::Timeout),
            message: if ok { "200 OK" } else { "timed out after 10s" }.to_owned(),
            observations,
            duration: Duration::from_millis(120),
            phases: Vec::new(),
        },
    }
}

/// Probe history is appended without waiting, kept whole, and read back two ways: the last
/// runs of each configured probe (oldest first, for the views at start) and every result in a
/// window, in time order, with message and observations (for replay, read-only while the
/// store is open).
#[tokio::test]
async fn history_is_kept_whole_and_read_back_per_probe_and_in_time_order() {
    let dir = Dir::new("history");
    let store = StoreHandle::open(&dir.db()).await.unwrap();
    let base = now()
        .checked_sub(jiff::SignedDuration::from_hours(1))
        .unwrap();
    let count = HISTORY_PER_PROBE + 20;
    for index in 0..count {
        let seconds = i64::try_from(index).unwrap();
        assert!(store.append_history(run("edge-api", at(base, seconds), index)));
    }
    assert!(store.append_history(run("db", at(base, 5), 1)));
    assert!(store.append_transitions(vec![Transition {
        mode: "edge-down".to_owned(),
        change: Change::Pending,
        at: at(base, 3),
    }]));
    // A question after the rows: answered once they are written.
    let history = store
        .load_history(vec!["edge-api".into(), "db".into(), "gone".into()])
        .await
        .unwrap();
    let edge = &history["edge-api"];
    assert_eq!(edge.len(), HISTORY_PER_PROBE);
    assert_eq!(edge[0].checked_at, at(base, 20));
    assert!(
        edge.windows(2)
            .all(|pair| pair[0].checked_at < pair[1].checked_at)
    );
    let failed = edge.iter().find(|row| !row.ok).unwrap();
    assert_eq!(failed.error, Some(ErrorClass::Timeout));
    assert_eq!(failed.duration, Duration::from_millis(120));
    assert_eq!(history["db"].len(), 1);
    assert!(!history.contains_key("gone"));

    // Read-only, beside the open store and without its lock.
    let reader = Reader::open(&dir.db()).unwrap();
    let mut read = Vec::new();
    let counted = reader
        .results(at(base, 2), at(base, 6), |result| read.push(result))
        .unwrap();
    assert_eq!(counted.results, 6);
    assert_eq!(
        read.iter()
            .map(|result| (result.probe.as_str(), result.at))
            .collect::<Vec<_>>(),
        [
            ("edge-api", at(base, 2)),
            ("edge-api", at(base, 3)),
            ("edge-api", at(base, 4)),
            ("edge-api", at(base, 5)),
            ("db", at(base, 5)),
            ("edge-api", at(base, 6)),
        ]
    );
    assert_eq!(read[1], run("edge-api", at(base, 3), 3), "kept whole");
    assert_eq!(read[0], run("edge-api", at(base, 2), 2));
    assert_eq!(
        reader.transitions(base, at(base, 60)).unwrap(),
        [Transition {
            mode: "edge-down".to_owned(),
            change: Change::Pending,
            at: at(base, 3),
        }]
    );
    assert_eq!(reader.oldest_result().unwrap(), Some(base));
    // The daemon's lock is still the daemon's.
    assert!(matches!(
        StoreHandle::open(&dir.db()).await,
        Err(StoreError::Locked { .. })
    ));
}

/// Results and diagnosis changes older than the retention are deleted, the rest kept.
#[tokio::test]
async fn history_past_its_retention_is_pruned() {
    let dir = Dir::new("prune");
    let now = now();
    let old = now
        .checked_sub(jiff::SignedDuration::from_hours(2))
        .unwrap();
    let store = StoreHandle::open(&dir.db()).await.unwrap();
    store.append_history(run("edge-api", old, 1));
    store.append_transitions(vec![Transition {
        mode: "edge-down".to_owned(),
        change: Change::Active,
        at: old,
    }]);
    // A load is answered after everything sent before it is written.
    assert!(store.load().await.is_ok());
    drop(store);
    // Opening with an hour's retention prunes at once.
    let store = StoreHandle::open_keeping(&dir.db(), Duration::from_secs(3600))
        .await
        .unwrap();
    store.append_history(run("edge-api", now, 2));
    assert!(store.load().await.is_ok());
    drop(store);
    let reader = Reader::open(&dir.db()).unwrap();
    let mut read = Vec::new();
    reader
        .results(Timestamp::UNIX_EPOCH, Timestamp::MAX, |result| {
            read.push(result.at)
        })
        .unwrap();
    assert_eq!(read, [now]);
    assert!(
        reader
            .transitions(Timestamp::UNIX_EPOCH, Timestamp::MAX)
            .unwrap()
            .is_empty()
    );
}

/// A store written by schema 1 (compact history rows, no transitions) is upgraded in place:
/// its alerts and history are still there (the views restore the old rows; replay skips them,
/// having no message or observations), new results are kept whole, and the file says schema 2.
#[tokio::test]
async fn a_schema_1_store_is_upgraded_in_place() {
    let dir = Dir::new("upgrade");
    std::fs::create_dir_all(dir.db().parent().unwrap()).unwrap();
    let base = now()
        .checked_sub(jiff::SignedDuration::from_mins(10))
        .unwrap();
    {
        let connection = Connection::open(dir.db()).unwrap();
        connection.execute_batch(SCHEMA_1).unwrap();
        connection.pragma_update(None, "user_version", 1).unwrap();
        connection
            .execute(
                "INSERT INTO alerts (id, body) VALUES (?1, ?2)",
                params!["neon-down", encode(&alert("neon-down")).unwrap()],
            )
            .unwrap();
        connection
            .execute(
                "INSERT INTO history (probe, ok, error, duration_seconds, checked_at_ms)
                 VALUES ('edge-api', 0, 'connect', 0.5, ?1)",
                params![base.as_millisecond()],
            )
            .unwrap();
    }
    assert!(
        Reader::open(&dir.db())
            .unwrap_err()
            .to_string()
            .contains("older honeyguide (schema 1"),
        "replay asks for the upgrade rather than misreading"
    );
    let store = StoreHandle::open(&dir.db()).await.unwrap();
    assert_eq!(store.load().await.unwrap().alerts, [alert("neon-down")]);
    let history = store.load_history(vec!["edge-api".into()]).await.unwrap();
    assert_eq!(history["edge-api"][0].error, Some(ErrorClass::Connect));
    store.append_history(run("edge-api", at(base, 60), 1));
    assert!(store.load().await.is_ok());
    let reader = Reader::open(&dir.db()).unwrap();
    let mut read = Vec::new();
    let count = reader
        .results(base, Timestamp::MAX, |result| read.push(result))
        .unwrap();
    assert_eq!(
        (count.results, count.compact),
        (1, 1),
        "the old row is counted, not replayed"
    );
    assert_eq!(read, [run("edge-api", at(base, 60), 1)]);
    drop(reader);
    drop(store);
    let version: i64 = Connection::open(dir.db())
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    // Opening again does not migrate again.
    assert!(StoreHandle::open(&dir.db()).await.is_ok());
}

/// Replay reads a store no daemon has open (the WAL files gone with the last connection),
/// and says clearly when there is no store at all.
#[tokio::test]
async fn a_closed_store_is_read_and_a_missing_one_named() {
    let dir = Dir::new("closed");
    let store = StoreHandle::open(&dir.db()).await.unwrap();
    store.append_history(run("edge-api", now(), 1));
    assert!(store.load().await.is_ok());
    drop(store);
    // Let the store thread close its connection.
    for _ in 0..50 {
        if !dir.db().with_extension("db-wal").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reader = Reader::open(&dir.db()).unwrap();
    let count = reader
        .results(Timestamp::UNIX_EPOCH, Timestamp::MAX, |_| {})
        .unwrap();
    assert_eq!(count.results, 1);
    let missing = dir.0.join("nowhere.db");
    let error = Reader::open(&missing).unwrap_err().to_string();
    assert!(error.contains("no such file"), "{error}");
    assert!(!missing.exists(), "reading creates nothing");
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

// === when history is written ===

/// The flush policy on instants given to it: nothing waiting is never due; rows are due when
/// the oldest has waited `every`, or at once when `rows` of them wait; a commit is durable once
/// `sync_every` has passed since the last durable one.
#[test]
fn history_is_due_after_its_interval_or_its_row_count() {
    let policy = FlushPolicy {
        every: Duration::from_secs(1),
        rows: 3,
        sync_every: Duration::from_secs(10),
    };
    let start = Instant::now();
    let later = |millis| start + Duration::from_millis(millis);
    assert_eq!(policy.deadline(None), None);
    assert!(!policy.due(later(5_000), 0, None));
    assert_eq!(policy.deadline(Some(start)), Some(later(1_000)));
    assert!(!policy.due(later(999), 2, Some(start)));
    assert!(policy.due(later(1_000), 1, Some(start)));
    assert!(
        policy.due(start, 3, Some(start)),
        "a full batch does not wait"
    );
    assert!(!policy.durable(later(9_999), start));
    assert!(policy.durable(later(10_000), start));
}

/// A policy under which only the store's own ordering and shutdown write history: no row
/// becomes readable by the interval or the row count while a test runs.
const NEVER_BY_TIME: FlushPolicy = FlushPolicy {
    every: Duration::from_secs(86_400),
    rows: usize::MAX,
    sync_every: Duration::from_secs(86_400),
};

/// Runs [`serve`] on the file at `path` on a thread of its own, as the store does; the thread
/// ends when the returned sender is dropped.
fn serve_on_thread(
    path: &Path,
    policy: FlushPolicy,
) -> (mpsc::Sender<Command>, std::thread::JoinHandle<()>) {
    let connection = open_connection(path).unwrap();
    let (commands, receiver) = mpsc::channel(CHANNEL_CAPACITY);
    let thread = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(serve(
                connection,
                receiver,
                DEFAULT_HISTORY_RETENTION,
                policy,
            ));
    });
    (commands, thread)
}

fn synchronous(connection: &Connection) -> i64 {
    connection
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .unwrap()
}

/// A burst of history and then a state commit: the history waits for no timer (it is written
/// before the commit, so the file keeps their order), every row is readable, and the commit is
/// made with `synchronous = FULL` (2) although the history before it was written with NORMAL.
#[tokio::test]
async fn history_before_a_state_commit_is_written_first_and_the_commit_stays_durable() {
    let dir = Dir::new("burst");
    std::fs::create_dir_all(dir.db().parent().unwrap()).unwrap();
    let (commands, thread) = serve_on_thread(&dir.db(), NEVER_BY_TIME);
    let base = now();
    for index in 0..50 {
        let seconds = i64::try_from(index).unwrap();
        commands
            .try_send(Command::History(Box::new(run(
                "edge-api",
                at(base, seconds),
                index,
            ))))
            .unwrap();
    }
    let (reply, answer) = oneshot::channel();
    commands
        .send(Command::Commit(
            Changes {
                upserts: vec![alert("a")],
                removed: Vec::new(),
                notifications: vec![notification("n1", "ops", Purpose::Alerts)],
            },
            reply,
        ))
        .await
        .unwrap();
    assert_eq!(answer.await.unwrap().unwrap()["ops"], 1);

    let reader = Reader::open(&dir.db()).unwrap();
    let counted = reader.results(base, at(base, 60), |_| {}).unwrap();
    assert_eq!(counted.results, 50);
    drop(commands);
    thread.join().unwrap();

    let store = StoreHandle::open(&dir.db()).await.unwrap();
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.alerts, vec![alert("a")]);
    assert_eq!(loaded.depths["ops"], 1);
}

/// Between history batches the connection is back at FULL: what the next command commits is
/// durable whatever the history before it did.
#[tokio::test]
async fn a_history_flush_leaves_the_connection_at_full() {
    let dir = Dir::new("strict");
    std::fs::create_dir_all(dir.db().parent().unwrap()).unwrap();
    let connection = open_connection(&dir.db()).unwrap();
    let mut writer = HistoryWriter {
        connection,
        results: vec![run("edge-api", now(), 1)],
        transitions: Vec::new(),
        waiting_since: Some(Instant::now()),
        synced_at: Instant::now(),
        relaxed: false,
        policy: NEVER_BY_TIME,
        retention: DEFAULT_HISTORY_RETENTION,
        pruned_at: None,
        behind: false,
    };
    writer.relax();
    assert_eq!(
        synchronous(&writer.connection),
        1,
        "NORMAL while history is written"
    );
    writer.flush(Instant::now(), false);
    assert_eq!(synchronous(&writer.connection), 2, "FULL again after it");
    assert_eq!(writer.waiting(), 0);
    assert!(writer.strict().is_ok());
}

/// History handed over and the last sender dropped: the thread writes it before it ends,
/// though no interval or row count made it due.
#[test]
fn history_still_waiting_is_written_when_the_last_handle_goes() {
    let dir = Dir::new("shutdown");
    std::fs::create_dir_all(dir.db().parent().unwrap()).unwrap();
    let (commands, thread) = serve_on_thread(&dir.db(), NEVER_BY_TIME);
    let base = now();
    for index in 0..10 {
        let seconds = i64::try_from(index).unwrap();
        commands
            .try_send(Command::History(Box::new(run(
                "db",
                at(base, seconds),
                index,
            ))))
            .unwrap();
    }
    commands
        .try_send(Command::Transitions(vec![Transition {
            mode: "db-down".to_owned(),
            change: Change::Pending,
            at: at(base, 4),
        }]))
        .unwrap();
    drop(commands);
    thread.join().unwrap();

    let reader = Reader::open(&dir.db()).unwrap();
    let mut read = Vec::new();
    reader
        .results(base, at(base, 60), |result| read.push(result))
        .unwrap();
    assert_eq!(read.len(), 10);
    assert_eq!(read[3], run("db", at(base, 3), 3));
    assert_eq!(reader.transitions(base, at(base, 60)).unwrap().len(), 1);
}

/// `flush` (what the daemon calls at shutdown) answers once the history handed over before it
/// is in the file, readable by another connection.
#[tokio::test]
async fn flush_answers_once_the_history_is_written() {
    let dir = Dir::new("flush");
    let store = StoreHandle::open(&dir.db()).await.unwrap();
    let base = now();
    for index in 0..5 {
        let seconds = i64::try_from(index).unwrap();
        assert!(store.append_history(run("db", at(base, seconds), index)));
    }
    store.flush().await.unwrap();
    let counted = Reader::open(&dir.db())
        .unwrap()
        .results(base, at(base, 60), |_| {})
        .unwrap();
    assert_eq!(counted.results, 5);
}
