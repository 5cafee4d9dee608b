//! Seeding a real Redis exactly as Asynq (v0.23 to v0.26) writes it, since no Go worker runs in
//! the tests: the keys of `internal/base/base.go` and the protobuf values of
//! `internal/proto/asynq.proto` (encoded with honeyguide's own prost types), following what
//! `internal/rdb/rdb.go` does on enqueue, dequeue, completion, heartbeat and scheduler beats.

use honeyguide::probe::asynq::proto;
use prost::Message;
use redis::aio::MultiplexedConnection;

/// Unix seconds now.
pub fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Unix nanoseconds now (Asynq's `pending_since` unit).
pub fn now_unix_nanos() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap()
}

fn timestamp(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn today() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%d").to_string()
}

/// A handle on one Asynq deployment's Redis.
pub struct Asynq {
    pub redis: MultiplexedConnection,
}

impl Asynq {
    async fn exec(&mut self, pipe: &redis::Pipeline) {
        let () = pipe.query_async(&mut self.redis).await.expect("seed redis");
    }

    /// `Client.Enqueue`: the queue is published in `asynq:queues`, the task hash written, and the
    /// id pushed on the head of the pending list. `pending_since` is Unix nanoseconds.
    pub async fn enqueue(&mut self, queue: &str, task_id: &str, pending_since_nanos: i64) {
        let message = proto::TaskMessage {
            r#type: "email:send".to_owned(),
            payload: br#"{"to":"user@example.com"}"#.to_vec(),
            id: task_id.to_owned(),
            queue: queue.to_owned(),
            retry: 25,
            timeout: 1800,
            ..proto::TaskMessage::default()
        };
        let mut pipe = redis::pipe();
        pipe.cmd("SADD")
            .arg("asynq:queues")
            .arg(queue)
            .ignore()
            .cmd("HSET")
            .arg(format!("asynq:{{{queue}}}:t:{task_id}"))
            .arg("msg")
            .arg(message.encode_to_vec())
            .arg("state")
            .arg("pending")
            .arg("pending_since")
            .arg(pending_since_nanos)
            .ignore()
            .cmd("LPUSH")
            .arg(format!("asynq:{{{queue}}}:pending"))
            .arg(task_id)
            .ignore();
        self.exec(&pipe).await;
    }

    /// The shutdown requeue (`requeueCmd`): the task goes back on the *tail* of the pending list
    /// with `state=pending` but no `pending_since`, so its latency is unknown.
    pub async fn requeue_without_pending_since(&mut self, queue: &str, task_id: &str) {
        let message = proto::TaskMessage {
            r#type: "email:send".to_owned(),
            id: task_id.to_owned(),
            queue: queue.to_owned(),
            ..proto::TaskMessage::default()
        };
        let mut pipe = redis::pipe();
        pipe.cmd("SADD")
            .arg("asynq:queues")
            .arg(queue)
            .ignore()
            .cmd("HSET")
            .arg(format!("asynq:{{{queue}}}:t:{task_id}"))
            .arg("msg")
            .arg(message.encode_to_vec())
            .arg("state")
            .arg("pending")
            .ignore()
            .cmd("RPUSH")
            .arg(format!("asynq:{{{queue}}}:pending"))
            .arg(task_id)
            .ignore();
        self.exec(&pipe).await;
    }

    /// Sets the all-time `processed` and `failed` counters (and today's), as a worker that has
    /// been running a while left them.
    pub async fn set_counters(&mut self, queue: &str, processed: i64, failed: i64) {
        let mut pipe = redis::pipe();
        for (name, value) in [("processed", processed), ("failed", failed)] {
            pipe.cmd("SET")
                .arg(format!("asynq:{{{queue}}}:{name}"))
                .arg(value)
                .ignore()
                .cmd("SET")
                .arg(format!("asynq:{{{queue}}}:{name}:{}", today()))
                .arg(value)
                .ignore();
        }
        self.exec(&pipe).await;
    }

    /// A worker takes the oldest `count` tasks and completes them: dequeue (`RPOPLPUSH pending
    /// active`, `pending_since` removed), then done (`LREM active`, task deleted, `processed`
    /// counters incremented). The last `failures` of them fail instead and are archived, which
    /// increments both `processed` and `failed`.
    pub async fn process(&mut self, queue: &str, count: usize, failures: usize) {
        let key = |suffix: &str| format!("asynq:{{{queue}}}:{suffix}");
        for index in 0..count {
            let task_id: String = redis::cmd("RPOPLPUSH")
                .arg(key("pending"))
                .arg(key("active"))
                .query_async(&mut self.redis)
                .await
                .expect("dequeue");
            let task = key(&format!("t:{task_id}"));
            let mut pipe = redis::pipe();
            pipe.cmd("HSET")
                .arg(&task)
                .arg("state")
                .arg("active")
                .ignore()
                .cmd("HDEL")
                .arg(&task)
                .arg("pending_since")
                .ignore()
                .cmd("LREM")
                .arg(key("active"))
                .arg(0)
                .arg(&task_id)
                .ignore()
                .cmd("INCR")
                .arg(key("processed"))
                .ignore()
                .cmd("INCR")
                .arg(key(&format!("processed:{}", today())))
                .ignore();
            if index >= count - failures {
                pipe.cmd("ZADD")
                    .arg(key("archived"))
                    .arg(now_unix())
                    .arg(&task_id)
                    .ignore()
                    .cmd("HSET")
                    .arg(&task)
                    .arg("state")
                    .arg("archived")
                    .ignore()
                    .cmd("INCR")
                    .arg(key("failed"))
                    .ignore()
                    .cmd("INCR")
                    .arg(key(&format!("failed:{}", today())))
                    .ignore();
            } else {
                pipe.cmd("DEL").arg(&task).ignore();
            }
            self.exec(&pipe).await;
        }
    }

    /// `Inspector.PauseQueue`: `SETNX asynq:{q}:paused <unix seconds>`.
    pub async fn pause(&mut self, queue: &str) {
        let mut pipe = redis::pipe();
        pipe.cmd("SETNX")
            .arg(format!("asynq:{{{queue}}}:paused"))
            .arg(now_unix())
            .ignore();
        self.exec(&pipe).await;
    }

    /// `WriteServerState`: the server key in `asynq:servers` with its expiry as score, the
    /// `ServerInfo` protobuf under `SETEX`, and the same for the workers key. A live server writes
    /// this every 5 s with a TTL of 10 s.
    pub async fn heartbeat(&mut self, server: &proto::ServerInfo, ttl_seconds: i64) {
        let id = server_key_id(server);
        let expiry = now_unix() + ttl_seconds;
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg("asynq:servers")
            .arg(expiry)
            .arg(format!("asynq:servers:{{{id}}}"))
            .ignore()
            .cmd("ZADD")
            .arg("asynq:workers")
            .arg(expiry)
            .arg(format!("asynq:workers:{{{id}}}"))
            .ignore()
            .cmd("SETEX")
            .arg(format!("asynq:servers:{{{id}}}"))
            .arg(ttl_seconds)
            .arg(server.encode_to_vec())
            .ignore();
        self.exec(&pipe).await;
    }

    /// What a crashed server leaves behind once its string key expired: only its `asynq:servers`
    /// member, with an expiry score `seconds_ago` in the past (Asynq never cleans it up itself;
    /// its inspector does, on the next `ListServers`).
    pub async fn crashed(&mut self, server: &proto::ServerInfo, seconds_ago: i64) {
        let id = server_key_id(server);
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg("asynq:servers")
            .arg(now_unix() - seconds_ago)
            .arg(format!("asynq:servers:{{{id}}}"))
            .ignore()
            .cmd("ZADD")
            .arg("asynq:workers")
            .arg(now_unix() - seconds_ago)
            .arg(format!("asynq:workers:{{{id}}}"))
            .ignore();
        self.exec(&pipe).await;
    }

    /// `WriteSchedulerEntries`: the scheduler key in `asynq:schedulers` with its expiry as score,
    /// and its entries `LPUSH`ed into a fresh list that expires with it. A negative TTL plays a
    /// scheduler that stopped heartbeating (only its zset member is left).
    pub async fn scheduler_beat(
        &mut self,
        scheduler_id: &str,
        entries: &[proto::SchedulerEntry],
        ttl_seconds: i64,
    ) {
        let key = format!("asynq:schedulers:{{{scheduler_id}}}");
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg("asynq:schedulers")
            .arg(now_unix() + ttl_seconds)
            .arg(&key)
            .ignore()
            .cmd("DEL")
            .arg(&key)
            .ignore();
        if ttl_seconds > 0 {
            for entry in entries {
                pipe.cmd("LPUSH")
                    .arg(&key)
                    .arg(entry.encode_to_vec())
                    .ignore();
            }
            pipe.cmd("EXPIRE").arg(&key).arg(ttl_seconds).ignore();
        }
        self.exec(&pipe).await;
    }

    /// `RecordSchedulerEnqueueEvent`: one enqueue in the entry's history zset, scored by time.
    pub async fn record_enqueue(&mut self, entry_id: &str, task_id: &str, at_unix: i64) {
        let event = proto::SchedulerEnqueueEvent {
            task_id: task_id.to_owned(),
            enqueue_time: timestamp(at_unix),
        };
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(format!("asynq:scheduler_history:{entry_id}"))
            .arg(at_unix)
            .arg(event.encode_to_vec())
            .ignore();
        self.exec(&pipe).await;
    }

    /// Every key and its type, to check that a probe run changed nothing.
    pub async fn dump(&mut self) -> Vec<(String, String, i64)> {
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut self.redis)
            .await
            .unwrap();
        keys.sort();
        let mut out = Vec::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut self.redis)
                .await
                .unwrap();
            let size: i64 = match kind.as_str() {
                "list" => {
                    redis::cmd("LLEN")
                        .arg(&key)
                        .query_async(&mut self.redis)
                        .await
                }
                "zset" => {
                    redis::cmd("ZCARD")
                        .arg(&key)
                        .query_async(&mut self.redis)
                        .await
                }
                "hash" => {
                    redis::cmd("HLEN")
                        .arg(&key)
                        .query_async(&mut self.redis)
                        .await
                }
                "set" => {
                    redis::cmd("SCARD")
                        .arg(&key)
                        .query_async(&mut self.redis)
                        .await
                }
                _ => {
                    redis::cmd("STRLEN")
                        .arg(&key)
                        .query_async(&mut self.redis)
                        .await
                }
            }
            .unwrap();
            out.push((key, kind, size));
        }
        out
    }
}

fn server_key_id(server: &proto::ServerInfo) -> String {
    format!("{}:{}:{}", server.host, server.pid, server.server_id)
}

/// A worker server's `ServerInfo` with the given status ("active", "stopped") and queues.
pub fn server(server_id: &str, status: &str, queues: &[(&str, i32)]) -> proto::ServerInfo {
    proto::ServerInfo {
        host: "worker-7d9f".to_owned(),
        pid: 1,
        server_id: server_id.to_owned(),
        concurrency: 10,
        queues: queues
            .iter()
            .map(|(queue, priority)| ((*queue).to_owned(), *priority))
            .collect(),
        strict_priority: false,
        status: status.to_owned(),
        start_time: timestamp(now_unix() - 3600),
        active_worker_count: 0,
    }
}

/// A cron entry as the scheduler's heartbeat writes it.
pub fn cron_entry(id: &str, spec: &str, prev_unix: i64, next_unix: i64) -> proto::SchedulerEntry {
    proto::SchedulerEntry {
        id: id.to_owned(),
        spec: spec.to_owned(),
        task_type: "digest:daily".to_owned(),
        task_payload: Vec::new(),
        enqueue_options: vec!["Queue(\"default\")".to_owned()],
        next_enqueue_time: timestamp(next_unix),
        prev_enqueue_time: timestamp(prev_unix).filter(|_| prev_unix > 0),
    }
}
