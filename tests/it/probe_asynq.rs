//! The `asynq` probe against a real Redis seeded as Asynq writes it: "worker stops processing
//! jobs", which the failure catalog says has no direct alert, in its three forms (no live worker,
//! a live worker that makes no progress, old pending work), plus paused queues and late cron.

use std::collections::BTreeMap;
use std::time::Duration;

use honeyguide::probe::{ErrorClass, ProbeResult, Value};

use crate::support::asynq::{Asynq, cron_entry, now_unix, now_unix_nanos, server};
use crate::support::redis::{PASSWORD, Redis};
use crate::support::{init, kind_metrics, load_config, run_probe};

/// Probes `asynq` (fails on a stall) and `asynq-observe` (`fail_on_stall = false`) on one Redis,
/// with a 1 s stall window so that the window logic runs against real time in a short test.
fn config(redis: &Redis, extra: &str) -> honeyguide::config::Config {
    load_config(
        &format!(
            r#"
[[probe]]
name = "asynq"
kind = "asynq"
redis = {{ address = "{address}", password = "${{REDIS_PASSWORD}}" }}
stall_window = "1s"
timeout = "5s"
{extra}

[[probe]]
name = "asynq-observe"
kind = "asynq"
redis = {{ address = "{address}", password = "${{REDIS_PASSWORD}}" }}
stall_window = "1s"
fail_on_stall = false
timeout = "5s"
{extra}
"#,
            address = redis.address(),
        ),
        &[("REDIS_PASSWORD", PASSWORD)],
    )
}

async fn seeded(redis: &Redis) -> Asynq {
    Asynq {
        redis: redis.client().await,
    }
}

fn queue<'a>(result: &'a ProbeResult, name: &str) -> &'a BTreeMap<String, Value> {
    result
        .observation("queues")
        .and_then(Value::as_map)
        .and_then(|queues| queues.get(name))
        .and_then(Value::as_map)
        .unwrap_or_else(|| panic!("no queue {name} in {result:?}"))
}

fn field(result: &ProbeResult, queue_name: &str, key: &str) -> Value {
    queue(result, queue_name)
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("no {key} for queue {queue_name}"))
}

fn strings(values: &[&str]) -> Value {
    Value::List(values.iter().map(|value| Value::from(*value)).collect())
}

fn assert_lines(metrics: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            metrics.lines().any(|candidate| candidate == *line),
            "no line {line:?} in\n{metrics}"
        );
    }
}

/// A live worker drains the queue between two runs: not stalled, with the processed and failed
/// deltas, the live server count, the oldest pending task's age and the counter series. Queues
/// are found through `asynq:queues` when none are configured.
#[tokio::test]
async fn healthy_worker_draining_tasks_is_not_stalled() {
    init();
    let redis = Redis::start(&[]);
    let mut asynq = seeded(&redis).await;
    let enqueued_at = now_unix_nanos() - 2_000_000_000;
    for index in 0..5 {
        asynq
            .enqueue("default", &format!("task-{index}"), enqueued_at + index)
            .await;
    }
    asynq
        .enqueue("critical", "urgent-1", now_unix_nanos())
        .await;
    asynq.process("critical", 1, 0).await;
    asynq.set_counters("default", 100, 3).await;
    let worker = server(
        "7c4e",
        "active",
        &[("critical", 6), ("default", 3), ("low", 1)],
    );
    asynq.heartbeat(&worker, 10).await;
    let config = config(&redis, "");

    let first = run_probe(&config, "asynq").await;
    assert!(first.ok, "{first:?}");
    assert_eq!(
        first
            .observation("queues")
            .and_then(Value::as_map)
            .map(|queues| queues.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["critical".to_owned(), "default".to_owned()])
    );
    assert_eq!(field(&first, "default", "pending"), Value::Int(5));
    assert_eq!(field(&first, "default", "processed_delta"), Value::Int(0));
    assert_eq!(field(&first, "default", "live_servers"), Value::Int(1));
    assert_eq!(field(&first, "default", "latency_known"), Value::Bool(true));
    let latency = field(&first, "default", "latency_seconds")
        .as_f64()
        .unwrap();
    assert!((2.0..60.0).contains(&latency), "latency {latency}");
    assert_eq!(first.observation("live_servers"), Some(&Value::Int(1)));
    assert_eq!(first.observation("stalled"), Some(&Value::Bool(false)));
    assert_eq!(first.observation("stalled_queues"), Some(&strings(&[])));
    assert_eq!(
        first.message,
        "2 queues, 5 pending, 1 live servers, 0 cron entries"
    );

    // Longer than the stall window, but the worker completes three tasks (one of them failing).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    asynq.process("default", 3, 1).await;
    asynq.heartbeat(&worker, 10).await;
    let second = run_probe(&config, "asynq").await;
    assert!(second.ok, "{second:?}");
    assert_eq!(field(&second, "default", "stalled"), Value::Bool(false));
    assert_eq!(field(&second, "default", "stall_reason"), Value::Null);
    assert_eq!(field(&second, "default", "pending"), Value::Int(2));
    assert_eq!(field(&second, "default", "archived"), Value::Int(1));
    assert_eq!(field(&second, "default", "processed_delta"), Value::Int(3));
    assert_eq!(field(&second, "default", "failed_delta"), Value::Int(1));

    let metrics = kind_metrics(&config, &[("asynq", &second)]);
    assert_lines(
        &metrics,
        &[
            "# TYPE honeyguide_asynq_queue_size gauge",
            "honeyguide_asynq_queue_size{probe=\"asynq\",queue=\"default\",state=\"pending\"} 2",
            "honeyguide_asynq_queue_size{probe=\"asynq\",queue=\"default\",state=\"active\"} 0",
            "honeyguide_asynq_queue_size{probe=\"asynq\",queue=\"default\",state=\"archived\"} 1",
            "honeyguide_asynq_queue_size{probe=\"asynq\",queue=\"critical\",state=\"pending\"} 0",
            "# TYPE honeyguide_asynq_processed_total counter",
            "honeyguide_asynq_processed_total{probe=\"asynq\",queue=\"default\"} 3",
            "# TYPE honeyguide_asynq_failed_total counter",
            "honeyguide_asynq_failed_total{probe=\"asynq\",queue=\"default\"} 1",
            "honeyguide_asynq_live_servers{probe=\"asynq\",queue=\"default\"} 1",
            "honeyguide_asynq_queue_paused{probe=\"asynq\",queue=\"default\"} 0",
            "honeyguide_asynq_queue_stalled{probe=\"asynq\",queue=\"default\"} 0",
            "honeyguide_asynq_queue_latency_seconds{probe=\"asynq\",queue=\"critical\"} 0",
            "honeyguide_asynq_scheduler_entries{probe=\"asynq\"} 0",
            "honeyguide_asynq_cron_late{probe=\"asynq\"} 0",
        ],
    );
    assert!(
        metrics.lines().any(|line| line.starts_with(
            "honeyguide_asynq_queue_latency_seconds{probe=\"asynq\",queue=\"default\"} "
        )),
        "{metrics}"
    );
}

/// The worker pod is gone: its heartbeat expired (score in the past) and the only server still
/// heartbeating has status `stopped`. With tasks pending the queue is stalled at once
/// (`no_live_server`, class `stalled`); the probe changes nothing in Redis (Asynq's own
/// inspector would delete the expired member). A task requeued at shutdown without
/// `pending_since` reads latency 0 and is called out.
#[tokio::test]
async fn worker_gone_with_pending_tasks_is_stalled() {
    init();
    let redis = Redis::start(&[]);
    let mut asynq = seeded(&redis).await;
    for index in 0..4 {
        asynq
            .enqueue("default", &format!("task-{index}"), now_unix_nanos())
            .await;
    }
    asynq
        .requeue_without_pending_since("low", "requeued-1")
        .await;
    asynq
        .crashed(&server("dead", "active", &[("default", 1), ("low", 1)]), 30)
        .await;
    asynq
        .heartbeat(
            &server("draining", "stopped", &[("default", 1), ("low", 1)]),
            10,
        )
        .await;
    let config = config(&redis, "");
    let before = asynq.dump().await;

    let result = run_probe(&config, "asynq").await;
    assert!(!result.ok);
    assert_eq!(result.error, Some(ErrorClass::Stalled));
    assert_eq!(
        result.message,
        "queue default stalled: 4 pending and no live server consumes it \
         (no unexpired heartbeat with status active serving default); \
         queue low stalled: 1 pending and no live server consumes it \
         (no unexpired heartbeat with status active serving low)"
    );
    assert_eq!(field(&result, "default", "stalled"), Value::Bool(true));
    assert_eq!(
        field(&result, "default", "stall_reason"),
        Value::from("no_live_server")
    );
    assert_eq!(field(&result, "default", "live_servers"), Value::Int(0));
    assert_eq!(result.observation("live_servers"), Some(&Value::Int(0)));
    assert_eq!(
        result.observation("heartbeating_servers"),
        Some(&Value::Int(1))
    );
    assert_eq!(
        result.observation("stalled_queues"),
        Some(&strings(&["default", "low"]))
    );
    assert_eq!(field(&result, "low", "latency_seconds"), Value::Float(0.0));
    assert_eq!(field(&result, "low", "latency_known"), Value::Bool(false));

    let observing = run_probe(&config, "asynq-observe").await;
    assert!(observing.ok, "{observing:?}");
    assert_eq!(observing.observation("stalled"), Some(&Value::Bool(true)));
    assert!(
        observing
            .message
            .contains("; latency of low unknown (its oldest pending task has no pending_since)"),
        "{}",
        observing.message
    );

    assert_eq!(asynq.dump().await, before, "the probe must not write");
    let metrics = kind_metrics(&config, &[("asynq", &result)]);
    assert_lines(
        &metrics,
        &[
            "honeyguide_asynq_queue_stalled{probe=\"asynq\",queue=\"default\"} 1",
            "honeyguide_asynq_live_servers{probe=\"asynq\",queue=\"default\"} 0",
            "honeyguide_asynq_queue_size{probe=\"asynq\",queue=\"default\",state=\"pending\"} 4",
        ],
    );
}

/// The worker still heartbeats as active but its processed counter is frozen: the first run
/// cannot tell, the run after the stall window can (`no_progress`, class `stalled`); the
/// observe-only probe reports the same stall without failing.
#[tokio::test]
async fn frozen_processed_counter_is_stalled_after_the_window() {
    init();
    let redis = Redis::start(&[]);
    let mut asynq = seeded(&redis).await;
    for index in 0..3 {
        asynq
            .enqueue("default", &format!("task-{index}"), now_unix_nanos())
            .await;
    }
    asynq.set_counters("default", 50, 0).await;
    let worker = server("stuck", "active", &[("default", 1)]);
    asynq.heartbeat(&worker, 10).await;
    let config = config(&redis, r#"queues = ["default"]"#);

    let first = run_probe(&config, "asynq").await;
    assert!(first.ok, "{first:?}");
    assert!(run_probe(&config, "asynq-observe").await.ok);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    asynq.heartbeat(&worker, 10).await;
    let stalled = run_probe(&config, "asynq").await;
    assert_eq!(stalled.error, Some(ErrorClass::Stalled), "{stalled:?}");
    assert_eq!(
        stalled.message,
        "queue default stalled: 3 pending and nothing processed for 1s (stall_window 1s)"
    );
    assert_eq!(
        field(&stalled, "default", "stall_reason"),
        Value::from("no_progress")
    );
    assert_eq!(field(&stalled, "default", "live_servers"), Value::Int(1));
    assert_eq!(field(&stalled, "default", "processed_delta"), Value::Int(0));
    assert!(field(&stalled, "default", "idle_seconds").as_f64().unwrap() >= 1.0);

    let observed = run_probe(&config, "asynq-observe").await;
    assert!(observed.ok, "{observed:?}");
    assert_eq!(observed.observation("stalled"), Some(&Value::Bool(true)));
    assert!(
        observed.message.ends_with(
            "; queue default stalled: 3 pending and nothing processed for 1s (stall_window 1s)"
        ),
        "{}",
        observed.message
    );
}

/// A paused queue holds its tasks on purpose: reported as paused, never as stalled, even with no
/// worker at all. (And a refused password is `auth`, with every observation `null`.)
#[tokio::test]
async fn paused_queue_is_paused_not_stalled() {
    init();
    let redis = Redis::start(&[]);
    let mut asynq = seeded(&redis).await;
    asynq.enqueue("default", "task-1", now_unix_nanos()).await;
    asynq.enqueue("default", "task-2", now_unix_nanos()).await;
    asynq.pause("default").await;
    let config = config(&redis, "");

    let result = run_probe(&config, "asynq").await;
    assert!(result.ok, "{result:?}");
    assert_eq!(field(&result, "default", "paused"), Value::Bool(true));
    assert_eq!(field(&result, "default", "stalled"), Value::Bool(false));
    assert_eq!(field(&result, "default", "pending"), Value::Int(2));
    let metrics = kind_metrics(&config, &[("asynq", &result)]);
    assert_lines(
        &metrics,
        &[
            "# TYPE honeyguide_asynq_queue_paused gauge",
            "honeyguide_asynq_queue_paused{probe=\"asynq\",queue=\"default\"} 1",
            "honeyguide_asynq_queue_stalled{probe=\"asynq\",queue=\"default\"} 0",
        ],
    );

    let refused = load_config(
        &format!(
            r#"
[[probe]]
name = "asynq"
kind = "asynq"
redis = {{ address = "{}", password = "wrong" }}
"#,
            redis.address()
        ),
        &[],
    );
    let result = run_probe(&refused, "asynq").await;
    assert_eq!(result.error, Some(ErrorClass::Auth), "{result:?}");
    assert_eq!(result.observation("stalled"), Some(&Value::Null));
    assert_eq!(result.observation("queues"), Some(&Value::Null));
    assert_eq!(kind_metrics(&refused, &[("asynq", &result)]), "");
}

/// "Cron jobs stop firing": of three entries of a live scheduler, one fired on time, one is past
/// its announced next fire time (its last enqueue is older than its period), and one fires but
/// its enqueues fail (its history stopped two periods ago). The two are `late_cron_entries`.
/// When the scheduler then stops heartbeating, `scheduler_gone` says so.
#[tokio::test]
async fn late_cron_entries_and_a_vanished_scheduler() {
    init();
    let redis = Redis::start(&[]);
    let mut asynq = seeded(&redis).await;
    let now = now_unix();
    let entries = [
        cron_entry("on-time", "@every 5m", now - 30, now + 270),
        cron_entry("missed", "*/5 * * * *", now - 400, now - 100),
        cron_entry("failing", "@every 5m", now - 30, now + 270),
    ];
    asynq.record_enqueue("on-time", "t1", now - 30).await;
    asynq.record_enqueue("missed", "t2", now - 400).await;
    asynq.record_enqueue("failing", "t3", now - 700).await;
    asynq.scheduler_beat("sched-1:1:abcd", &entries, 20).await;
    let config = config(&redis, r#"cron_grace = "30s""#);

    let result = run_probe(&config, "asynq").await;
    assert!(result.ok, "{result:?}");
    assert_eq!(
        result.observation("scheduler_entries"),
        Some(&Value::Int(3))
    );
    assert_eq!(result.observation("live_schedulers"), Some(&Value::Int(1)));
    assert_eq!(result.observation("cron_late"), Some(&Value::Bool(true)));
    let mut late: Vec<String> = match result.observation("late_cron_entries") {
        Some(Value::List(items)) => items
            .iter()
            .map(|item| item.as_str().unwrap().to_owned())
            .collect(),
        other => panic!("{other:?}"),
    };
    late.sort();
    assert_eq!(late, ["failing", "missed"]);
    let cron = result
        .observation("cron_entries")
        .and_then(Value::as_map)
        .unwrap();
    let missed = cron["missed"].as_map().unwrap();
    assert_eq!(missed["spec"], Value::from("*/5 * * * *"));
    assert_eq!(missed["prev_enqueue_time"], Value::Int(now - 400));
    assert_eq!(missed["last_enqueue_time"], Value::Int(now - 400));
    assert_eq!(
        cron["on-time"].as_map().unwrap()["late"],
        Value::Bool(false)
    );
    assert!(
        result.message.contains("3 cron entries (late: "),
        "{}",
        result.message
    );
    let metrics = kind_metrics(&config, &[("asynq", &result)]);
    assert_lines(
        &metrics,
        &[
            "honeyguide_asynq_scheduler_entries{probe=\"asynq\"} 3",
            "honeyguide_asynq_cron_late{probe=\"asynq\"} 1",
        ],
    );

    asynq.scheduler_beat("sched-1:1:abcd", &entries, -5).await;
    let gone = run_probe(&config, "asynq").await;
    assert_eq!(gone.observation("scheduler_gone"), Some(&Value::Bool(true)));
    assert_eq!(gone.observation("scheduler_entries"), Some(&Value::Int(0)));
    assert!(
        gone.message
            .ends_with("; the scheduler stopped heartbeating"),
        "{}",
        gone.message
    );
}
