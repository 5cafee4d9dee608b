//! The embedded store: alert state, the notification outbox, API silences, probe history and
//! the daemon's own diagnosis changes, in one SQLite file (`[store] path`, default
//! `./honeyguide.db`).
//!
//! SQLite is blocking, so the connection lives on a thread of its own and the rest of the daemon
//! talks to it through [`StoreHandle`] over a channel: no async task ever waits on the disk
//! except by awaiting an answer, and the state task never waits at all (it hands probe history
//! over with a non-blocking `try_send`; under extreme backlog a history row is dropped, never a
//! probe result).
//!
//! Durability: WAL journal with `synchronous = FULL` for alert state, the outbox and silences,
//! so a commit of those that returned survives a `kill -9` and a power cut. Commits happen on
//! alert transitions and outbox changes, not per evaluation.
//!
//! Probe history (results and diagnosis changes) is worth less than an fsync per run, so it is
//! written in batches and, mostly, without one. It waits in memory for at most [`FLUSH_EVERY`]
//! (or until [`FLUSH_ROWS`] rows wait), and is written before any other command (so the store
//! keeps the order of history and state: a state commit also makes the history before it
//! durable), on [`StoreHandle::flush`] (the daemon's shutdown) and when the last handle goes.
//! Those batches are committed with `synchronous = NORMAL` (in WAL mode: no fsync; the WAL is
//! synced at checkpoints and by the next FULL commit), switched back to FULL before anything
//! else is written; one batch every [`SYNC_EVERY`] is committed with FULL. So what a crash
//! loses is bounded: a `kill -9` loses the history still in memory (at most [`FLUSH_EVERY`] of
//! results, plus what waits in the channel, as before), a power cut or kernel crash at most
//! [`SYNC_EVERY`] + [`FLUSH_EVERY`] of it. Never alert state, the outbox or a silence.
//!
//! History: every probe result is kept whole (ok, error class, message, observations as JSON,
//! duration, when) for `[store] history_retention` (default a week), with every change of the
//! daemon's diagnoses (pending, active, resolved), so that `honeyguide replay` can run the
//! recorded timeline through edited rules and compare. Rows older than the retention are
//! deleted in batches, at most once a minute unless a batch found more, so a long backlog
//! never holds the store thread for long. At start the daemon reads back only the last
//! [`HISTORY_PER_PROBE`] runs of each configured probe. [`Reader`] opens the file read-only for
//! replay, beside a running daemon (WAL lets a reader in while the writer writes) and without
//! its lock.
//!
//! Schema: `PRAGMA user_version` says which version wrote the file; an older file is upgraded
//! in place at open (version 1 had compact history rows: they are kept, without message and
//! observations, and replay skips them), a newer one is refused.
//!
//! The delivery guarantee is built here: a notification is inserted (in the same transaction as
//! the alert state that produced it) before any delivery attempt, and marked delivered only
//! after the receiver accepted it. See `docs/alerting.md` for what that promises.
//!
//! One store, one daemon: two daemons on one file would both deliver every alert, under
//! different notification ids that no receiver can deduplicate. Opening takes an exclusive OS
//! lock (`flock`) on `<path>.lock` beside the database and writes the holder's pid into it, so a
//! second daemon is refused with [`StoreError::Locked`] naming the path and that pid. The kernel
//! releases the lock when the process exits, however it exits (`kill -9` included), so a pid
//! left in the file never blocks a restart; the file itself is never removed (removing it would
//! let two processes lock two different files of the same name).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::alert::engine::{Changes, StoredAlert};
use crate::alert::notification::{Notification, Purpose};
use crate::catalog::timeline::TimedResult;
use crate::catalog::{Change, Transition};
use crate::probe::{ErrorClass, Observations, ProbeResult};
pub use crate::view::HistoryRow;

/// Full results kept per probe unless `[store] history_retention` says otherwise.
pub const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// Default database file, relative to the working directory.
pub const DEFAULT_PATH: &str = "honeyguide.db";
/// Probe history read back per probe at start (what `/status` shows and rules read after a
/// restart).
pub const HISTORY_PER_PROBE: usize = crate::view::HISTORY_LEN;
/// Delivered and abandoned outbox rows are kept this long, for forensics.
const OUTBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Commands waiting for the store thread; history beyond this is dropped.
const CHANNEL_CAPACITY: usize = 8192;
/// How often rows past the retention are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Rows deleted per transaction when pruning: a short transaction, so an alert commit waits
/// milliseconds, not the whole backlog.
const PRUNE_BATCH: i64 = 5_000;
const SCHEMA_VERSION: i64 = 2;
/// The longest probe history waits in memory before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Results and transitions waiting that make a batch without waiting for [`FLUSH_EVERY`]: one
/// transaction stays short at any rate, and memory stays bounded.
pub const FLUSH_ROWS: usize = 1024;
/// How often a history batch is committed with an fsync, which bounds what a power cut takes.
pub const SYNC_EVERY: Duration = Duration::from_secs(10);

/// Version 1: alert state, the outbox, API silences and compact history rows.
const SCHEMA_1: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id TEXT NOT NULL UNIQUE,
    notifier TEXT NOT NULL,
    purpose TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at TEXT,
    gave_up_at TEXT
);
CREATE INDEX IF NOT EXISTS outbox_waiting ON outbox (notifier, id)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    probe TEXT NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT,
    duration_seconds REAL NOT NULL,
    checked_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_probe ON history (probe, id);
";

/// Version 2: whole results for replay (message and observations; `NULL` in rows version 1
/// wrote), found by time, and the daemon's diagnosis changes.
const MIGRATION_2: &str = "
ALTER TABLE history ADD COLUMN message TEXT;
ALTER TABLE history ADD COLUMN observations TEXT;
CREATE INDEX history_by_time ON history (checked_at_ms);
CREATE TABLE transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mode TEXT NOT NULL,
    change TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX transitions_by_time ON transitions (at_ms);
";

// === data ===

/// A silence created through the API, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredSilence {
    /// Generated id.
    pub id: String,
    /// Alert id patterns.
    pub alerts: Vec<String>,
    /// Label patterns.
    pub labels: BTreeMap<String, String>,
    /// Start.
    pub starts_at: Timestamp,
    /// End.
    pub ends_at: Timestamp,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A notification waiting for delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEntry {
    /// Row id (delivery order within a notifier).
    pub id: i64,
    /// What to deliver.
    pub notification: Notification,
    /// Attempts so far.
    pub attempts: u32,
}

/// Everything the alert task restores at start.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// Alert rows.
    pub alerts: Vec<StoredAlert>,
    /// API silences.
    pub silences: Vec<StoredSilence>,
    /// Waiting notifications per notifier.
    pub depths: BTreeMap<String, u64>,
}

/// A store failure. The daemon refuses to start on one at open; at run time the alert task
/// retries its commit and the dispatcher retries its read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be opened or initialised.
    #[error("opening the store {}: {message}", path.display())]
    Open {
        /// Which file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Another process (another honeyguide) holds the store's lock.
    #[error(
        "the store {} is in use by another honeyguide ({}): one store serves one daemon, or \
         both would send every alert; stop that one, or give this one its own [store] path",
        path.display(),
        match pid { Some(pid) => format!("pid {pid}"), None => "pid unknown".to_owned() }
    )]
    Locked {
        /// The database file.
        path: PathBuf,
        /// The holder's pid, as it wrote it into the lock file.
        pid: Option<u32>,
    },
    /// A statement failed.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row could not be decoded.
    #[error("store: a stored row is unreadable: {0}")]
    Decode(String),
    /// The store thread is gone (shutting down).
    #[error("store: closed")]
    Closed,
}

// === handle ===

enum Command {
    Load(oneshot::Sender<Result<Loaded, StoreError>>),
    LoadHistory(
        Vec<String>,
        oneshot::Sender<Result<BTreeMap<String, Vec<HistoryRow>>, StoreError>>,
    ),
    Commit(
        Changes,
        oneshot::Sender<Result<BTreeMap<String, u64>, StoreError>>,
    ),
    NextOutbox(
        String,
        oneshot::Sender<Result<Option<OutboxEntry>, StoreError>>,
    ),
    Finish {
        id: i64,
        notifier: String,
        column: FinishColumn,
        at: Timestamp,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    RecordFailure {
        id: i64,
        error: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    SaveSilence(StoredSilence, oneshot::Sender<Result<(), StoreError>>),
    DeleteSilences(Vec<String>, oneshot::Sender<Result<(), StoreError>>),
    History(Box<TimedResult>),
    Transitions(Vec<Transition>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone, Copy, Debug)]
enum FinishColumn {
    Delivered,
    GaveUp,
}

/// The way to the store thread. Cheap to clone; the thread ends, and the store's lock is
/// released, when every handle is dropped.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    commands: mpsc::Sender<Command>,
    _lock: Arc<StoreLock>,
}

/// The exclusive lock on `<store>.lock`, held while the store is open. Dropping it (or the
/// process ending) releases it.
#[derive(Debug)]
struct StoreLock {
    _file: Option<File>,
}

/// `<path>.lock`: beside the database, never the database itself (SQLite's own POSIX locks on
/// that file must not be mixed with ours).
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl StoreLock {
    /// Takes the lock without waiting, and writes this process's pid into the file.
    fn acquire(path: &Path) -> Result<Self, StoreError> {
        let lock_path = lock_path(path);
        let fail = |message: String| StoreError::Open {
            path: path.to_owned(),
            message,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|error| fail(format!("cannot open {}: {error}", lock_path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&lock_path)
                    .ok()
                    .and_then(|text| text.trim().parse::<u32>().ok());
                return Err(StoreError::Locked {
                    path: path.to_owned(),
                    pid,
                });
            }
            Err(TryLockError::Error(error)) if error.kind() == std::io::ErrorKind::Unsupported => {
                // Refusing to start on such a file system would take monitoring down with it;
                // say what is not guaranteed instead.
                tracing::warn!(lock = %lock_path.display(), %error,
                    "the file system cannot lock the store: nothing stops a second daemon from using it");
                return Ok(Self { _file: None });
            }
            Err(TryLockError::Error(error)) => {
                return Err(fail(format!(
                    "cannot lock {}: {error}",
                    lock_path.display()
                )));
            }
        }
        // The pid is for the message a second daemon prints; a stale one from a process that
        // was killed is overwritten here, since its lock went with it.
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .and_then(|()| file.flush())
            .map_err(|error| fail(format!("cannot write {}: {error}", lock_path.display())))?;
        Ok(Self { _file: Some(file) })
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("store::Command")
    }
}

impl StoreHandle {
    /// [`StoreHandle::open_keeping`] with the default history retention.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_keeping(path, DEFAULT_HISTORY_RETENTION).await
    }

    /// Opens (creating or upgrading if needed) the database at `path` on a thread of its own,
    /// after taking the store's lock ([`StoreError::Locked`] if another process holds it); probe
    /// history and diagnosis changes are kept for `retention`.
    pub async fn open_keeping(path: &Path, retention: Duration) -> Result<Self, StoreError> {
        let (commands, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let (opened, ready) = oneshot::channel();
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("honeyguide-store".to_owned())
            .spawn(move || match lock_and_open(&path) {
                Ok((lock, connection, runtime)) => {
                    let _ = opened.send(Ok(lock));
                    runtime.block_on(serve(connection, receiver, retention, FlushPolicy::DEFAULT));
                }
                Err(error) => {
                    let _ = opened.send(Err(error));
                }
            });
        if let Err(error) = thread {
            return Err(StoreError::Open {
                path: PathBuf::new(),
                message: format!("cannot start the store thread: {error}"),
            });
        }
        let lock = ready.await.map_err(|_| StoreError::Closed)??;
        Ok(Self {
            commands,
            _lock: Arc::new(lock),
        })
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Alert rows, API silences and outbox depths, for the alert task at start.
    pub async fn load(&self) -> Result<Loaded, StoreError> {
        self.ask(Command::Load).await
    }

    /// The last [`HISTORY_PER_PROBE`] runs of each of `probes`, oldest first (probes without
    /// any are left out).
    pub async fn load_history(
        &self,
        probes: Vec<String>,
    ) -> Result<BTreeMap<String, Vec<HistoryRow>>, StoreError> {
        self.ask(|reply| Command::LoadHistory(probes, reply)).await
    }

    /// Writes alert changes and enqueues notifications in one transaction. Returns the outbox
    /// depth of every notifier that got something.
    pub async fn commit(&self, changes: Changes) -> Result<BTreeMap<String, u64>, StoreError> {
        self.ask(|reply| Command::Commit(changes, reply)).await
    }

    /// The oldest notification waiting for `notifier`.
    pub async fn next_outbox(&self, notifier: &str) -> Result<Option<OutboxEntry>, StoreError> {
        let notifier = notifier.to_owned();
        self.ask(|reply| Command::NextOutbox(notifier, reply)).await
    }

    /// Marks a notification delivered; returns the notifier's remaining depth.
    pub async fn mark_delivered(&self, id: i64, notifier: &str) -> Result<u64, StoreError> {
        let notifier = notifier.to_owned();
        self.ask(|reply| Command::Finish {
            id,
            notifier,
            column: FinishColumn::Delivered,
            at: Timestamp::now(),
            reply,
        })
        .await
    }

    /// Abandons a notification; returns the notifier's remaining depth.
    pub async fn give_up(&self, id: i64, notifier: &str) -> Result<u64, StoreError> {
        let notifier = notifier.to_owned();
        self.ask(|reply| Command::Finish {
            id,
            notifier,
            column: FinishColumn::GaveUp,
            at: Timestamp::now(),
            reply,
        })
        .await
    }

    /// Counts a failed attempt and remembers its error.
    pub async fn record_failure(&self, id: i64, error: &str) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.ask(|reply| Command::RecordFailure { id, error, reply })
            .await
    }

    /// Inserts or replaces an API silence.
    pub async fn save_silence(&self, silence: StoredSilence) -> Result<(), StoreError> {
        self.ask(|reply| Command::SaveSilence(silence, reply)).await
    }

    /// Forgets API silences.
    pub async fn delete_silences(&self, ids: Vec<String>) -> Result<(), StoreError> {
        self.ask(|reply| Command::DeleteSilences(ids, reply)).await
    }

    /// Hands one probe result over for the history, without waiting (it is encoded on the
    /// store thread). Returns `false` when it was dropped because the store is far behind (or
    /// gone).
    pub fn append_history(&self, run: TimedResult) -> bool {
        self.commands
            .try_send(Command::History(Box::new(run)))
            .is_ok()
    }

    /// Hands changes of the daemon's diagnoses over, without waiting; `false` when dropped.
    pub fn append_transitions(&self, transitions: Vec<Transition>) -> bool {
        self.commands
            .try_send(Command::Transitions(transitions))
            .is_ok()
    }

    /// Writes the history handed over so far, durably, and answers once it is written: at
    /// shutdown, so that the last second of results is not left in memory.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Flush(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)
    }
}

// === the thread ===

/// The lock first, so that a second daemon touches nothing of the database; then the
/// connection, and the thread's own runtime (for its one timer: when waiting history is due).
fn lock_and_open(
    path: &Path,
) -> Result<(StoreLock, Connection, tokio::runtime::Runtime), StoreError> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|error| StoreError::Open {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
    }
    let lock = StoreLock::acquire(path)?;
    let connection = open_connection(path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|error| StoreError::Open {
            path: path.to_owned(),
            message: format!("cannot start the store thread's runtime: {error}"),
        })?;
    Ok((lock, connection, runtime))
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let fail = |message: String| StoreError::Open {
        path: path.to_owned(),
        message,
    };
    let mut connection = Connection::open(path).map_err(|error| fail(error.to_string()))?;
    let mut setup = || -> Result<(), rusqlite::Error> {
        connection.busy_timeout(Duration::from_secs(5))?;
        let mode: String =
            connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(journal_mode = %mode, "the store could not switch to WAL");
        }
        connection.pragma_update(None, "synchronous", "FULL")?;
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "the database was written by a newer honeyguide (schema {version}, this one knows {SCHEMA_VERSION})"
            )));
        }
        migrate(&mut connection, version)
    };
    setup().map_err(|error| fail(error.to_string()))?;
    Ok(connection)
}

/// Brings a database written at schema `version` (0: new) up to [`SCHEMA_VERSION`], in one
/// transaction: a crash halfway leaves the old version, which is upgraded again next time.
fn migrate(connection: &mut Connection, version: i64) -> Result<(), rusqlite::Error> {
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let transaction = connection.transaction()?;
    transaction.execute_batch(SCHEMA_1)?;
    if version < 2 {
        transaction.execute_batch(MIGRATION_2)?;
    }
    transaction.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    transaction.commit()?;
    if version > 0 {
        tracing::info!(
            from = version,
            to = SCHEMA_VERSION,
            "upgraded the store's schema"
        );
    }
    Ok(())
}

/// When waiting history is written, and with or without an fsync: a function of the instants it
/// is given, so that it is tested without a clock.
#[derive(Clone, Copy, Debug)]
struct FlushPolicy {
    /// The longest a row waits.
    every: Duration,
    /// Rows waiting that are written at once.
    rows: usize,
    /// The longest between two durable history commits.
    sync_every: Duration,
}

impl FlushPolicy {
    const DEFAULT: Self = Self {
        every: FLUSH_EVERY,
        rows: FLUSH_ROWS,
        sync_every: SYNC_EVERY,
    };

    /// When rows waiting since `oldest` are due (`None`: nothing waits, nothing is due).
    fn deadline(&self, oldest: Option<Instant>) -> Option<Instant> {
        oldest.map(|since| since + self.every)
    }

    /// Whether `waiting` rows, the first of them waiting since `oldest`, are written `now`.
    fn due(&self, now: Instant, waiting: usize, oldest: Option<Instant>) -> bool {
        waiting > 0 && (waiting >= self.rows || self.deadline(oldest).is_some_and(|due| now >= due))
    }

    /// Whether a history commit `now` is made with an fsync, the last durable one having been
    /// at `synced`.
    fn durable(&self, now: Instant, synced: Instant) -> bool {
        now.saturating_duration_since(synced) >= self.sync_every
    }
}

/// The store thread: commands in order; history waits (see [`FlushPolicy`]) and is written
/// before any other command, so the order of history and state holds in the file.
async fn serve(
    connection: Connection,
    mut commands: mpsc::Receiver<Command>,
    retention: Duration,
    policy: FlushPolicy,
) {
    let mut writer = HistoryWriter {
        connection,
        results: Vec::new(),
        transitions: Vec::new(),
        waiting_since: None,
        synced_at: Instant::now(),
        relaxed: false,
        policy,
        retention,
        pruned_at: None,
        behind: false,
    };
    // A daemon that was down for longer than the retention finds old rows at once, not an
    // interval later.
    writer.flush(Instant::now(), false);
    loop {
        let next = match policy.deadline(writer.waiting_since) {
            None => commands.recv().await,
            Some(due) => match tokio::time::timeout_at(due, commands.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    writer.flush(Instant::now(), false);
                    continue;
                }
            },
        };
        let Some(command) = next else {
            break;
        };
        let now = Instant::now();
        match command {
            Command::History(run) => writer.wait(now).results.push(*run),
            Command::Transitions(transitions) => writer.wait(now).transitions.extend(transitions),
            Command::Flush(reply) => {
                writer.flush(now, true);
                let _ = reply.send(());
            }
            other => {
                writer.flush(now, false);
                let ready = writer.strict();
                handle(&mut writer.connection, other, ready);
            }
        }
        if policy.due(now, writer.waiting(), writer.waiting_since) {
            writer.flush(now, false);
        }
    }
    // Every handle is gone: what still waits is written, durably, before the thread ends.
    writer.flush(Instant::now(), true);
}

/// History waiting to be written, and the pruning of what is past its retention.
struct HistoryWriter {
    connection: Connection,
    results: Vec<TimedResult>,
    transitions: Vec<Transition>,
    /// When the oldest row waiting arrived.
    waiting_since: Option<Instant>,
    /// When history was last committed with an fsync.
    synced_at: Instant,
    /// `synchronous` is (or may still be) NORMAL: set back to FULL before anything but history
    /// is written.
    relaxed: bool,
    policy: FlushPolicy,
    retention: Duration,
    /// When rows past the retention were last looked for.
    pruned_at: Option<Timestamp>,
    /// Whether the last prune deleted a whole batch (so there may be more).
    behind: bool,
}

impl HistoryWriter {
    /// The writer, about to take a row that arrived `now`.
    fn wait(&mut self, now: Instant) -> &mut Self {
        self.waiting_since.get_or_insert(now);
        self
    }

    fn waiting(&self) -> usize {
        self.results.len() + self.transitions.len()
    }

    /// Writes the waiting history (with an fsync when `durable` or when the policy says one is
    /// due), then prunes if that is due.
    fn flush(&mut self, now: Instant, durable: bool) {
        let prune_due = self.prune_due(Timestamp::now());
        if self.waiting() == 0 && !prune_due {
            return;
        }
        let durable = durable || self.policy.durable(now, self.synced_at);
        if !durable {
            self.relax();
        }
        if self.waiting() > 0 {
            if let Err(error) =
                append_history(&mut self.connection, &self.results, &self.transitions)
            {
                tracing::warn!(
                    %error,
                    results = self.results.len(),
                    transitions = self.transitions.len(),
                    "could not store probe history"
                );
            }
            if durable {
                self.synced_at = now;
            }
            self.results.clear();
            self.transitions.clear();
            self.waiting_since = None;
        }
        if prune_due {
            self.prune(Timestamp::now());
        }
        // Set back at once, not only before the next state commit: a failure is seen here, and
        // retried by `strict`.
        let _ = self.strict();
    }

    /// History commits from now on skip the fsync (in WAL mode NORMAL syncs only at
    /// checkpoints). On failure they stay FULL: slower, never less durable.
    fn relax(&mut self) {
        match self.connection.pragma_update(None, "synchronous", "NORMAL") {
            Ok(()) => self.relaxed = true,
            Err(error) => tracing::warn!(%error, "could not relax the store's synchronous mode"),
        }
    }

    /// Makes sure the next commit is durable (`synchronous = FULL`); an error means it would not
    /// be, and is the answer to whatever was to be written.
    fn strict(&mut self) -> Result<(), StoreError> {
        if !self.relaxed {
            return Ok(());
        }
        match self.connection.pragma_update(None, "synchronous", "FULL") {
            Ok(()) => {
                self.relaxed = false;
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "could not set the store back to synchronous = FULL");
                Err(error.into())
            }
        }
    }

    fn prune_due(&self, now: Timestamp) -> bool {
        self.behind
            || self
                .pruned_at
                .is_none_or(|at| now.duration_since(at).unsigned_abs() >= PRUNE_EVERY)
    }

    fn prune(&mut self, now: Timestamp) {
        self.pruned_at = Some(now);
        match prune(&mut self.connection, now, self.retention) {
            Ok(deleted) => self.behind = deleted >= PRUNE_BATCH,
            Err(error) => {
                self.behind = false;
                tracing::warn!(%error, "could not delete probe history past its retention");
            }
        }
    }
}

/// Deletes one batch of history and transitions older than `retention`; returns how many rows
/// of the larger of the two went.
fn prune(
    connection: &mut Connection,
    now: Timestamp,
    retention: Duration,
) -> Result<i64, StoreError> {
    let cutoff = jiff::SignedDuration::try_from(retention)
        .ok()
        .and_then(|retention| now.checked_sub(retention).ok())
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .as_millisecond();
    let transaction = connection.transaction()?;
    let results = transaction.execute(
        "DELETE FROM history WHERE id IN
            (SELECT id FROM history WHERE checked_at_ms < ?1 LIMIT ?2)",
        params![cutoff, PRUNE_BATCH],
    )?;
    let transitions = transaction.execute(
        "DELETE FROM transitions WHERE id IN
            (SELECT id FROM transitions WHERE at_ms < ?1 LIMIT ?2)",
        params![cutoff, PRUNE_BATCH],
    )?;
    transaction.commit()?;
    Ok(i64::try_from(results.max(transitions)).unwrap_or(i64::MAX))
}

/// Runs one command and answers it; `ready` is the error to answer instead when the store could
/// not be made durable for it.
fn handle(connection: &mut Connection, command: Command, ready: Result<(), StoreError>) {
    // A reply that cannot be sent means the asker gave up (shutdown); nothing to do about it.
    match command {
        Command::Load(reply) => {
            let _ = reply.send(ready.and_then(|()| load(connection)));
        }
        Command::LoadHistory(probes, reply) => {
            let _ = reply.send(ready.and_then(|()| load_history(connection, &probes)));
        }
        Command::Commit(changes, reply) => {
            let _ = reply.send(ready.and_then(|()| commit(connection, &changes)));
        }
        Command::NextOutbox(notifier, reply) => {
            let _ = reply.send(ready.and_then(|()| next_outbox(connection, &notifier)));
        }
        Command::Finish {
            id,
            notifier,
            column,
            at,
            reply,
        } => {
            let _ = reply.send(ready.and_then(|()| finish(connection, id, &notifier, column, at)));
        }
        Command::RecordFailure { id, error, reply } => {
            let result = ready.and_then(|()| {
                connection
                    .execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
                        params![id, error],
                    )
                    .map(|_| ())
                    .map_err(StoreError::from)
            });
            let _ = reply.send(result);
        }
        Command::SaveSilence(silence, reply) => {
            let _ = reply.send(ready.and_then(|()| save_silence(connection, &silence)));
        }
        Command::DeleteSilences(ids, reply) => {
            let _ = reply.send(ready.and_then(|()| delete_silences(connection, &ids)));
        }
        // Kept by `serve` before they get here.
        Command::History(_) | Command::Transitions(_) | Command::Flush(_) => {}
    }
}

fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Decode(error.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Decode(error.to_string()))
}

fn load(connection: &mut Connection) -> Result<Loaded, StoreError> {
    let cutoff = Timestamp::now()
        .checked_sub(OUTBOX_RETENTION)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string();
    connection.execute(
        "DELETE FROM outbox WHERE (delivered_at IS NOT NULL AND delivered_at < ?1)
            OR (gave_up_at IS NOT NULL AND gave_up_at < ?1)",
        params![cutoff],
    )?;
    let mut loaded = Loaded::default();
    let mut statement = connection.prepare("SELECT id, body FROM alerts ORDER BY id")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (id, body) = row?;
        match decode::<StoredAlert>(&body) {
            Ok(alert) => loaded.alerts.push(alert),
            // One unreadable row must not keep the daemon from starting; say which.
            Err(error) => {
                tracing::warn!(alert.id = %id, %error, "skipping an unreadable stored alert")
            }
        }
    }
    let mut statement = connection.prepare("SELECT body FROM silences ORDER BY id")?;
    let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
    for row in rows {
        match decode::<StoredSilence>(&row?) {
            Ok(silence) => loaded.silences.push(silence),
            Err(error) => tracing::warn!(%error, "skipping an unreadable stored silence"),
        }
    }
    let mut statement = connection.prepare(
        "SELECT notifier, COUNT(*) FROM outbox
         WHERE delivered_at IS NULL AND gave_up_at IS NULL GROUP BY notifier",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (notifier, depth) = row?;
        loaded
            .depths
            .insert(notifier, u64::try_from(depth).unwrap_or(0));
    }
    Ok(loaded)
}

fn depth(connection: &Connection, notifier: &str) -> Result<u64, StoreError> {
    let count: i64 = connection.query_row(
        "SELECT COUNT(*) FROM outbox WHERE notifier = ?1 AND delivered_at IS NULL AND gave_up_at IS NULL",
        params![notifier],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(count).unwrap_or(0))
}

fn purpose_name(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::Alerts => "alerts",
        Purpose::Refresh => "refresh",
        Purpose::Test => "test",
    }
}

fn commit(
    connection: &mut Connection,
    changes: &Changes,
) -> Result<BTreeMap<String, u64>, StoreError> {
    let transaction = connection.transaction()?;
    for alert in &changes.upserts {
        transaction.execute(
            "INSERT INTO alerts (id, body) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            params![alert.content.id, encode(alert)?],
        )?;
    }
    for id in &changes.removed {
        transaction.execute("DELETE FROM alerts WHERE id = ?1", params![id])?;
    }
    let mut touched = Vec::new();
    for notification in &changes.notifications {
        if notification.purpose == Purpose::Refresh {
            // A newer re-send carries everything an older, undelivered one does.
            transaction.execute(
                "DELETE FROM outbox WHERE notifier = ?1 AND purpose = 'refresh'
                 AND delivered_at IS NULL AND gave_up_at IS NULL",
                params![notification.notifier],
            )?;
        }
        transaction.execute(
            "INSERT INTO outbox (notification_id, notifier, purpose, body, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                notification.id,
                notification.notifier,
                purpose_name(notification.purpose),
                encode(notification)?,
                notification.created_at.to_string(),
            ],
        )?;
        if !touched.contains(&notification.notifier) {
            touched.push(notification.notifier.clone());
        }
    }
    let mut depths = BTreeMap::new();
    for notifier in touched {
        let waiting = depth(&transaction, &notifier)?;
        depths.insert(notifier, waiting);
    }
    transaction.commit()?;
    Ok(depths)
}

fn next_outbox(
    connection: &mut Connection,
    notifier: &str,
) -> Result<Option<OutboxEntry>, StoreError> {
    loop {
        let row = connection
            .query_row(
                "SELECT id, body, attempts FROM outbox
                 WHERE notifier = ?1 AND delivered_at IS NULL AND gave_up_at IS NULL
                 ORDER BY id LIMIT 1",
                params![notifier],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, body, attempts)) = row else {
            return Ok(None);
        };
        match decode::<Notification>(&body) {
            Ok(notification) => {
                return Ok(Some(OutboxEntry {
                    id,
                    notification,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                }));
            }
            Err(error) => {
                // A row this version cannot read would block the notifier forever; set it aside.
                tracing::warn!(outbox.id = id, %error, "abandoning an unreadable outbox row");
                connection.execute(
                    "UPDATE outbox SET gave_up_at = ?2, last_error = ?3 WHERE id = ?1",
                    params![id, Timestamp::now().to_string(), error.to_string()],
                )?;
            }
        }
    }
}

fn finish(
    connection: &mut Connection,
    id: i64,
    notifier: &str,
    column: FinishColumn,
    at: Timestamp,
) -> Result<u64, StoreError> {
    let statement = match column {
        FinishColumn::Delivered => "UPDATE outbox SET delivered_at = ?2 WHERE id = ?1",
        FinishColumn::GaveUp => "UPDATE outbox SET gave_up_at = ?2 WHERE id = ?1",
    };
    connection.execute(statement, params![id, at.to_string()])?;
    depth(connection, notifier)
}

fn save_silence(connection: &mut Connection, silence: &StoredSilence) -> Result<(), StoreError> {
    connection.execute(
        "INSERT INTO silences (id, body) VALUES (?1, ?2)
         ON CONFLICT (id) DO UPDATE SET body = excluded.body",
        params![silence.id, encode(silence)?],
    )?;
    Ok(())
}

fn delete_silences(connection: &mut Connection, ids: &[String]) -> Result<(), StoreError> {
    let transaction = connection.transaction()?;
    for id in ids {
        transaction.execute("DELETE FROM silences WHERE id = ?1", params![id])?;
    }
    transaction.commit()?;
    Ok(())
}

fn append_history(
    connection: &mut Connection,
    results: &[TimedResult],
    transitions: &[Transition],
) -> Result<(), StoreError> {
    let transaction = connection.transaction()?;
    {
        let mut insert = transaction.prepare_cached(
            "INSERT INTO history
                (probe, ok, error, duration_seconds, checked_at_ms, message, observations)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for run in results {
            let result = &run.result;
            insert.execute(params![
                run.probe,
                result.ok,
                result.error.map(ErrorClass::as_str),
                result.duration.as_secs_f64(),
                run.at.as_millisecond(),
                result.message,
                encode(&result.observations)?,
            ])?;
        }
        let mut insert = transaction
            .prepare_cached("INSERT INTO transitions (mode, change, at_ms) VALUES (?1, ?2, ?3)")?;
        for transition in transitions {
            insert.execute(params![
                transition.mode,
                transition.change.as_str(),
                transition.at.as_millisecond(),
            ])?;
        }
    }
    transaction.commit()?;
    Ok(())
}

/// The error class stored as `name`, for a failed run (`internal` when this version does not
/// know the name).
fn error_class(ok: bool, name: Option<&str>) -> Option<ErrorClass> {
    if ok {
        return None;
    }
    let known = name.and_then(|name| {
        ErrorClass::ALL
            .into_iter()
            .find(|class| class.as_str() == name)
    });
    Some(known.unwrap_or(ErrorClass::Internal))
}

fn load_history(
    connection: &mut Connection,
    probes: &[String],
) -> Result<BTreeMap<String, Vec<HistoryRow>>, StoreError> {
    let mut statement = connection.prepare(
        "SELECT ok, error, duration_seconds, checked_at_ms FROM history
         WHERE probe = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let limit = i64::try_from(HISTORY_PER_PROBE).unwrap_or(i64::MAX);
    let mut history: BTreeMap<String, Vec<HistoryRow>> = BTreeMap::new();
    for probe in probes {
        let rows = statement.query_map(params![probe, limit], |row| {
            Ok((
                row.get::<_, bool>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, f64>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })?;
        let mut runs = Vec::new();
        for row in rows {
            let (ok, error, duration, checked_at) = row?;
            let Ok(checked_at) = Timestamp::from_millisecond(checked_at) else {
                continue;
            };
            runs.push(HistoryRow {
                probe: probe.clone(),
                ok,
                error: error_class(ok, error.as_deref()),
                duration: Duration::try_from_secs_f64(duration).unwrap_or_default(),
                checked_at,
            });
        }
        if !runs.is_empty() {
            runs.reverse();
            history.insert(probe.clone(), runs);
        }
    }
    Ok(history)
}

// === reading for replay ===

/// The store opened read-only, for `honeyguide replay`: beside a running daemon (SQLite's WAL
/// lets a reader in while the writer commits), without its lock, and without changing a byte.
#[derive(Debug)]
pub struct Reader {
    connection: Connection,
}

/// What [`Reader::results`] read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadCount {
    /// Results handed over.
    pub results: u64,
    /// Rows written by a version that kept no message and observations: not replayable.
    pub compact: u64,
    /// Rows that could not be decoded.
    pub unreadable: u64,
}

impl Reader {
    /// Opens the database at `path` read-only. It must exist and be of this version's schema
    /// (an older one is upgraded by the daemon's next start, not here).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let fail = |message: String| StoreError::Open {
            path: path.to_owned(),
            message,
        };
        if !path.exists() {
            return Err(fail(
                "no such file: has a daemon run with this [store] path?".to_owned(),
            ));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection =
            Connection::open_with_flags(path, flags).map_err(|error| fail(error.to_string()))?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(|error| fail(error.to_string()))?;
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|error| fail(error.to_string()))?;
        match version.cmp(&SCHEMA_VERSION) {
            std::cmp::Ordering::Equal => Ok(Self { connection }),
            std::cmp::Ordering::Less => Err(fail(format!(
                "written by an older honeyguide (schema {version}, this one reads \
                 {SCHEMA_VERSION}), which kept no results to replay: start the daemon on it \
                 once to upgrade it"
            ))),
            std::cmp::Ordering::Greater => Err(fail(format!(
                "written by a newer honeyguide (schema {version}, this one reads \
                 {SCHEMA_VERSION})"
            ))),
        }
    }

    /// Every result that finished from `from` up to `to`, in time order, handed to `each` one
    /// at a time (a week of results is not held in memory at once).
    pub fn results(
        &self,
        from: Timestamp,
        to: Timestamp,
        mut each: impl FnMut(TimedResult),
    ) -> Result<ReadCount, StoreError> {
        let mut statement = self.connection.prepare(
            "SELECT probe, ok, error, duration_seconds, checked_at_ms, message, observations
             FROM history WHERE checked_at_ms >= ?1 AND checked_at_ms <= ?2
             ORDER BY checked_at_ms, id",
        )?;
        let mut rows = statement.query(params![from.as_millisecond(), to.as_millisecond()])?;
        let mut count = ReadCount::default();
        while let Some(row) = rows.next()? {
            let (Some(message), Some(observations)) = (
                row.get::<_, Option<String>>(5)?,
                row.get::<_, Option<String>>(6)?,
            ) else {
                count.compact += 1;
                continue;
            };
            let ok: bool = row.get(1)?;
            let decoded = decode::<Observations>(&observations);
            let at = Timestamp::from_millisecond(row.get(4)?);
            let (Ok(observations), Ok(at)) = (decoded, at) else {
                count.unreadable += 1;
                continue;
            };
            count.results += 1;
            each(TimedResult {
                probe: row.get(0)?,
                at,
                result: ProbeResult {
                    ok,
                    error: error_class(ok, row.get::<_, Option<String>>(2)?.as_deref()),
                    message,
                    observations,
                    duration: Duration::try_from_secs_f64(row.get(3)?).unwrap_or_default(),
                    phases: Vec::new(),
                },
            });
        }
        Ok(count)
    }

    /// The daemon's diagnosis changes from `from` up to `to`, in time order.
    pub fn transitions(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Transition>, StoreError> {
        let mut statement = self.connection.prepare(
            "SELECT mode, change, at_ms FROM transitions
             WHERE at_ms >= ?1 AND at_ms <= ?2 ORDER BY at_ms, id",
        )?;
        let rows =
            statement.query_map(params![from.as_millisecond(), to.as_millisecond()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?;
        let mut transitions = Vec::new();
        for row in rows {
            let (mode, change, at) = row?;
            let (Some(change), Ok(at)) =
                (Change::from_name(&change), Timestamp::from_millisecond(at))
            else {
                continue;
            };
            transitions.push(Transition { mode, change, at });
        }
        Ok(transitions)
    }

    /// When the oldest replayable result finished, if there is one.
    pub fn oldest_result(&self) -> Result<Option<Timestamp>, StoreError> {
        let oldest: Option<i64> = self.connection.query_row(
            "SELECT MIN(checked_at_ms) FROM history WHERE observations IS NOT NULL",
            [],
            |row| row.get(0),
        )?;
        Ok(oldest.and_then(|at| Timestamp::from_millisecond(at).ok()))
    }
}

#[cfg(test)]
mod tests;
