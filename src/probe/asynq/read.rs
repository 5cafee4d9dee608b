//! Reading Asynq's state out of Redis, strictly read-only: `SMEMBERS`, `LLEN`, `ZCARD`, `GET`,
//! `EXISTS`, `LRANGE`, `HGET`, `ZRANGEBYSCORE`, `ZRANGE`. Asynq's own inspector also deletes
//! expired heartbeats (`ZREMRANGEBYSCORE`); a monitor must not change what it watches, so expired
//! members are simply skipped here.
//!
//! The key layout is Asynq's (`internal/base/base.go`, the same from v0.23 to v0.26): queue keys
//! carry the queue name in braces (`asynq:{default}:pending`), a Redis Cluster hash tag.

use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, Pipeline};

use prost::Message as _;

use super::proto;
use crate::probe::redis::command_failure;
use crate::probe::{Outcome, ProbeContext};

/// How long a live server's heartbeat may look expired by our clock and still count: the expiry
/// score comes from the worker host's clock, and a live server renews it every 5 s for 10 s.
pub const CLOCK_SKEW_SECONDS: i64 = 2;

/// The set of queue names, added by clients on their first enqueue.
pub const QUEUES_KEY: &str = "asynq:queues";
/// Heartbeats of worker servers: member = server key, score = expiry (Unix seconds).
pub const SERVERS_KEY: &str = "asynq:servers";
/// Heartbeats of schedulers: member = scheduler key, score = expiry (Unix seconds).
pub const SCHEDULERS_KEY: &str = "asynq:schedulers";

/// A key of `queue`: `asynq:{queue}:suffix`.
pub fn queue_key(queue: &str, suffix: &str) -> String {
    format!("asynq:{{{queue}}}:{suffix}")
}

/// The scheduler's record of an entry's enqueues: score = enqueue time (Unix seconds).
pub fn history_key(entry_id: &str) -> String {
    format!("asynq:scheduler_history:{entry_id}")
}

/// One queue's state, as `CurrentStats` in Asynq's inspector computes it (without the memory
/// sampling, which is expensive).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueStats {
    /// The queue name.
    pub name: String,
    /// Waiting to be picked up (`LLEN pending`).
    pub pending: i64,
    /// Being processed (`LLEN active`).
    pub active: i64,
    /// Due later (`ZCARD scheduled`).
    pub scheduled: i64,
    /// Waiting for a retry (`ZCARD retry`).
    pub retry: i64,
    /// Given up on (`ZCARD archived`).
    pub archived: i64,
    /// Done and retained (`ZCARD completed`).
    pub completed: i64,
    /// All-time processed counter (failures included); 0 when missing.
    pub processed: i64,
    /// All-time failed counter; 0 when missing.
    pub failed: i64,
    /// Whether `asynq:{q}:paused` exists.
    pub paused: bool,
    /// `pending_since` (Unix nanoseconds) of the oldest pending task, the tail of the list; None
    /// when nothing is pending or the field is missing or zero.
    pub oldest_pending_since_nanos: Option<i64>,
}

/// One periodic task of a live scheduler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronEntry {
    /// The entry id (a UUID unless the application set one).
    pub id: String,
    /// The cron spec.
    pub spec: String,
    /// The task type it enqueues.
    pub task_type: String,
    /// When it last fired, Unix seconds; 0 if never.
    pub prev: i64,
    /// When it fires next, Unix seconds; 0 if unknown.
    pub next: i64,
    /// The newest enqueue recorded in its history, Unix seconds.
    pub last_enqueue: Option<i64>,
}

/// Everything one run read.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Per queue, in name order.
    pub queues: Vec<QueueStats>,
    /// Servers whose heartbeat has not expired (any status).
    pub servers: Vec<proto::ServerInfo>,
    /// Schedulers whose heartbeat has not expired.
    pub schedulers: usize,
    /// Their entries.
    pub entries: Vec<CronEntry>,
    /// Heartbeat values that did not decode as Asynq's protobuf (another Asynq version?).
    pub undecodable: usize,
}

/// Reads queues (the configured ones, or all of `asynq:queues`), live servers and schedulers.
/// Phases: `queues`, `servers`, `scheduler`.
pub async fn read(
    connection: &mut MultiplexedConnection,
    ctx: &ProbeContext,
    configured: Option<&[String]>,
    now_unix: i64,
) -> Result<Snapshot, Outcome> {
    ctx.phase("queues");
    let names = match configured {
        Some(names) => names.to_vec(),
        None => {
            let mut names: Vec<String> = query(
                redis::cmd("SMEMBERS").arg(QUEUES_KEY),
                connection,
                "SMEMBERS asynq:queues",
            )
            .await?;
            names.sort();
            names
        }
    };
    let mut snapshot = Snapshot::default();
    for name in names {
        snapshot.queues.push(read_queue(connection, name).await?);
    }

    ctx.phase("servers");
    let live_after = now_unix - CLOCK_SKEW_SECONDS;
    let values = live_values(connection, SERVERS_KEY, live_after, Stored::String).await?;
    for value in values.into_iter().flatten() {
        let bytes: Vec<u8> = redis::from_redis_value(value).unwrap_or_default();
        match proto::ServerInfo::decode(bytes.as_slice()) {
            Ok(server) => snapshot.servers.push(server),
            Err(_) => snapshot.undecodable += 1,
        }
    }

    ctx.phase("scheduler");
    let lists = live_values(connection, SCHEDULERS_KEY, live_after, Stored::List).await?;
    snapshot.schedulers = lists.iter().flatten().count();
    let mut entries = Vec::new();
    for value in lists.into_iter().flatten() {
        // LRANGE of an existing key is always a list of bulk strings.
        let items: Vec<Vec<u8>> = redis::from_redis_value(value).unwrap_or_default();
        for item in items {
            match proto::SchedulerEntry::decode(item.as_slice()) {
                Ok(entry) => entries.push(entry),
                Err(_) => snapshot.undecodable += 1,
            }
        }
    }
    snapshot.entries = with_history(connection, entries).await?;
    Ok(snapshot)
}

async fn read_queue(
    connection: &mut MultiplexedConnection,
    name: String,
) -> Result<QueueStats, Outcome> {
    let key = |suffix: &str| queue_key(&name, suffix);
    let mut pipe = redis::pipe();
    pipe.cmd("LLEN")
        .arg(key("pending"))
        .cmd("LLEN")
        .arg(key("active"))
        .cmd("ZCARD")
        .arg(key("scheduled"))
        .cmd("ZCARD")
        .arg(key("retry"))
        .cmd("ZCARD")
        .arg(key("archived"))
        .cmd("ZCARD")
        .arg(key("completed"))
        .cmd("GET")
        .arg(key("processed"))
        .cmd("GET")
        .arg(key("failed"))
        .cmd("EXISTS")
        .arg(key("paused"))
        // Enqueue is LPUSH and dequeue RPOPLPUSH: the oldest pending task is the tail.
        .cmd("LRANGE")
        .arg(key("pending"))
        .arg(-1)
        .arg(-1);
    type Counts = (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
        bool,
        Vec<String>,
    );
    let what = format!("reading queue {name}");
    let (pending, active, scheduled, retry, archived, completed, processed, failed, paused, tail): Counts =
        query_pipe(&pipe, connection, &what).await?;
    let oldest_pending_since_nanos = match tail.first() {
        Some(task_id) if pending > 0 => {
            let since: Option<i64> = query(
                redis::cmd("HGET")
                    .arg(queue_key(&name, &format!("t:{task_id}")))
                    .arg("pending_since"),
                connection,
                &what,
            )
            .await?;
            // Asynq treats 0 like a missing value: latency unknown.
            since.filter(|nanos| *nanos > 0)
        }
        _ => None,
    };
    Ok(QueueStats {
        name,
        pending,
        active,
        scheduled,
        retry,
        archived,
        completed,
        processed: processed.unwrap_or(0),
        failed: failed.unwrap_or(0),
        paused,
        oldest_pending_since_nanos,
    })
}

/// How a heartbeat zset's members hold their value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stored {
    /// A string key, read with `GET` (servers).
    String,
    /// A list key, read with `LRANGE 0 -1` (schedulers).
    List,
}

/// The values behind the members of a heartbeat zset that have not expired. A member whose key
/// expired between the two reads comes back empty.
async fn live_values(
    connection: &mut MultiplexedConnection,
    zset: &str,
    live_after: i64,
    stored: Stored,
) -> Result<Vec<Option<redis::Value>>, Outcome> {
    let what = format!("reading {zset}");
    let members: Vec<String> = query(
        redis::cmd("ZRANGEBYSCORE")
            .arg(zset)
            .arg(live_after)
            .arg("+inf"),
        connection,
        &what,
    )
    .await?;
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for member in &members {
        match stored {
            Stored::String => pipe.cmd("GET").arg(member),
            Stored::List => pipe.cmd("LRANGE").arg(member).arg(0).arg(-1),
        };
    }
    let values: Vec<redis::Value> = query_pipe(&pipe, connection, &what).await?;
    Ok(values
        .into_iter()
        .map(|value| match value {
            redis::Value::Nil => None,
            redis::Value::Array(ref items) if items.is_empty() => None,
            value => Some(value),
        })
        .collect())
}

/// Adds each entry's newest recorded enqueue (`ZRANGE history -1 -1 WITHSCORES`).
async fn with_history(
    connection: &mut MultiplexedConnection,
    entries: Vec<proto::SchedulerEntry>,
) -> Result<Vec<CronEntry>, Outcome> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for entry in &entries {
        pipe.cmd("ZRANGE")
            .arg(history_key(&entry.id))
            .arg(-1)
            .arg(-1)
            .arg("WITHSCORES");
    }
    let newest: Vec<Vec<(Vec<u8>, f64)>> =
        query_pipe(&pipe, connection, "reading asynq:scheduler_history").await?;
    Ok(entries
        .into_iter()
        .zip(newest)
        .map(|(entry, newest)| CronEntry {
            prev: seconds(entry.prev_enqueue_time.as_ref()),
            next: seconds(entry.next_enqueue_time.as_ref()),
            last_enqueue: newest.first().map(|(_, score)| *score as i64),
            id: entry.id,
            spec: entry.spec,
            task_type: entry.task_type,
        })
        .collect())
}

/// A protobuf timestamp as Unix seconds; Go's zero `time.Time` (year 1) and an absent one read 0.
fn seconds(timestamp: Option<&prost_types::Timestamp>) -> i64 {
    timestamp.map_or(0, |timestamp| timestamp.seconds.max(0))
}

async fn query<T: FromRedisValue>(
    command: &redis::Cmd,
    connection: &mut MultiplexedConnection,
    what: &str,
) -> Result<T, Outcome> {
    command
        .query_async(connection)
        .await
        .map_err(|error| command_failure(&error, what))
}

async fn query_pipe<T: FromRedisValue>(
    pipe: &Pipeline,
    connection: &mut MultiplexedConnection,
    what: &str,
) -> Result<T, Outcome> {
    pipe.query_async(connection)
        .await
        .map_err(|error| command_failure(&error, what))
}
