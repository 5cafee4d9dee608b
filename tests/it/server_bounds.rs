//! honeyguide's own port under hostile clients: nothing a client of `:9898` does may make a
//! healthy probe fail, page on-call, hold up shutdown or multiply the daemon's memory.
//!
//! The first tests run a daemon in-process with tight `[server]` bounds and check each bound as
//! a client sees it; the rest run the real binary (under `prlimit`, with signals, measuring its
//! memory from `/proc`).

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::alerting::Receiver;
use crate::support::daemon::{TestDaemon, sample};
use crate::support::{ChildGuard, TempDir, eventually, free_port, init, wait_for_tcp};

const TOKEN: &str = "bounds-token-0123456789abcdef";

/// Half a request head: what a slowloris client sends, and then nothing.
const HALF_HEAD: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: honeyguide\r\nUser-Agent: slow";

async fn connect(base_url: &str) -> TcpStream {
    let addr = base_url.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the server closes, or `limit` passes; returns what arrived and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (received, true),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => return (received, false),
        }
    }
}

fn server_section(extra: &str) -> String {
    format!("[server]\nlisten = \"127.0.0.1:0\"\n{extra}\n[api]\ntoken = \"{TOKEN}\"\n")
}

/// A client that sends half a head and stops is cut off after `header_timeout`, and the
/// daemon answers everyone else meanwhile.
#[tokio::test]
async fn a_request_head_that_never_completes_is_cut_off() {
    init();
    let daemon = TestDaemon::start(&server_section("header_timeout = \"300ms\"")).await;
    let mut slow = connect(&daemon.base_url).await;
    slow.write_all(HALF_HEAD).await.unwrap();
    assert_eq!(daemon.get("/healthz").await.status(), 200);
    let (received, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(closed, "the half-sent request is still open after 5 s");
    assert!(
        !String::from_utf8_lossy(&received).contains("200 OK"),
        "a half head was answered: {}",
        String::from_utf8_lossy(&received)
    );
    daemon.stop().await;
}

/// A kept-alive connection without a request in flight is closed after `idle_timeout`, and
/// the close is counted in `/metrics`.
#[tokio::test]
async fn an_idle_connection_is_closed_and_counted() {
    init();
    let daemon = TestDaemon::start(&server_section("idle_timeout = \"400ms\"")).await;
    let mut idle = connect(&daemon.base_url).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: honeyguide\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    let n = idle.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(closed, "the idle connection is still open after 5 s");
    let metrics = daemon.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "honeyguide_http_connections_closed_total{reason=\"idle\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    daemon.stop().await;
}

/// A request whose body never arrives is answered 503 after `request_timeout`.
#[tokio::test]
async fn a_request_whose_body_never_arrives_gets_503() {
    init();
    let daemon = TestDaemon::start(&server_section("request_timeout = \"300ms\"")).await;
    let mut stream = connect(&daemon.base_url).await;
    stream
        .write_all(
            format!(
                "POST /api/silences HTTP/1.1\r\nHost: honeyguide\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"comment\""
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (received, _) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    let received = String::from_utf8_lossy(&received);
    assert!(
        received.starts_with("HTTP/1.1 503"),
        "expected a 503, got: {received}"
    );
    let metrics = daemon.metrics().await;
    assert_eq!(
        sample(&metrics, "honeyguide_http_requests_timed_out_total"),
        Some(1.0)
    );
    daemon.stop().await;
}

/// At `max_connections`, a newcomer makes the longest-idle connection give way, so `/healthz`
/// gets in while half-open sockets fill the cap; when every connection is busy with a request,
/// the newcomer is refused instead of taking another descriptor.
#[tokio::test]
async fn at_the_cap_idle_connections_make_way_and_busy_ones_do_not() {
    init();
    let daemon = TestDaemon::start(&server_section(
        "max_connections = 8\nheader_timeout = \"60s\"\nrequest_timeout = \"60s\"",
    ))
    .await;
    let mut crowd = Vec::new();
    for _ in 0..8 {
        let mut stream = connect(&daemon.base_url).await;
        stream.write_all(HALF_HEAD).await.unwrap();
        crowd.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(daemon.get("/healthz").await.status(), 200);
    let (_, closed) = read_until_closed(&mut crowd[0], Duration::from_secs(5)).await;
    assert!(
        closed,
        "the longest-idle half-open connection did not give way"
    );

    // Eight requests in flight, each waiting for a body that never comes.
    drop(crowd);
    let mut busy = Vec::new();
    for _ in 0..8 {
        let mut stream = connect(&daemon.base_url).await;
        stream
            .write_all(
                format!(
                    "POST /api/silences HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {TOKEN}\r\n\
                     Content-Length: 100\r\n\r\n{{"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        busy.push(stream);
    }
    eventually(
        "a newcomer to be refused while every connection is busy",
        Duration::from_secs(10),
        || async {
            let mut stream = connect(&daemon.base_url).await;
            let _ = stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
                .await;
            let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(2)).await;
            (closed && received.is_empty()).then_some(())
        },
    )
    .await;
    drop(busy);
    let metrics = eventually(
        "the refusal in /metrics",
        Duration::from_secs(10),
        || async {
            let response = daemon.try_get("/metrics").await?;
            let text = response.text().await.ok()?;
            (sample(
                &text,
                "honeyguide_http_connections_closed_total{reason=\"refused\"}",
            ) >= Some(1.0))
            .then_some(text)
        },
    )
    .await;
    assert!(
        sample(
            &metrics,
            "honeyguide_http_connections_closed_total{reason=\"evicted\"}"
        ) >= Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "honeyguide_http_connections_max"),
        Some(8.0)
    );
    daemon.stop().await;
}

// === the real binary ===

const RULE: &str = r#"id = "api-down"
title = "API unreachable"
severity = "critical"
when = '!probes["api-1"].ok || !probes["api-2"].ok || !probes["api-3"].ok'
symptom = "Every API request fails."
recovery = "Check the API pods."
runbook = "runbook#api-down"
"#;

/// A daemon directory: three http probes of `target` every second, the rule above, and a
/// webhook notifier to `hook`.
fn write_daemon_dir(dir: &Path, listen: u16, target: &str, hook: &str, extra: &str) {
    let probes: String = (1..=3)
        .map(|n| {
            format!(
                "[[probe]]\nname = \"api-{n}\"\nkind = \"http\"\nurl = \"{target}\"\n\
                 interval = \"1s\"\ntimeout = \"1s\"\n\n"
            )
        })
        .collect();
    std::fs::write(
        dir.join("probes.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{listen}\"\n\n\
             [alerting]\ngroup_wait = \"200ms\"\ngroup_interval = \"0s\"\n\n\
             {extra}\n{probes}\
             [[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{hook}\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("alerts")).unwrap();
    std::fs::write(dir.join("alerts/api-down.toml"), RULE).unwrap();
}

/// Starts `honeyguide run` in `dir`, with `prefix` before it (e.g. `prlimit --nofile=1024 --`).
fn start_binary(dir: &TempDir, prefix: &[&str], listen: u16) -> ChildGuard {
    let binary = env!("CARGO_BIN_EXE_honeyguide");
    let mut command = match prefix.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(binary);
            command
        }
        None => Command::new(binary),
    };
    command
        .args(["run", "--config", "probes.toml", "--alerts", "alerts"])
        .current_dir(dir.path())
        .env("HONEYGUIDE_LOG", "info");
    let child = ChildGuard::spawn("honeyguide", &mut command, &dir.path().join("daemon.log"));
    wait_for_tcp(([127, 0, 0, 1], listen).into(), Duration::from_secs(20));
    child
}

fn log(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
}

async fn get(port: u16, path: &str, timeout: Duration) -> Option<reqwest::Response> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .ok()?
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .ok()
}

async fn metrics(port: u16) -> String {
    get(port, "/metrics", Duration::from_secs(10))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The exit status of `child` within `limit`, or `None` if it still runs.
fn wait_exit(child: &mut ChildGuard, limit: Duration) -> Option<ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// 1,100 clients each holding half a request head, for 30 s, against a daemon limited to
/// 1,024 descriptors: every probe run stays ok, on-call is not paged, `/healthz` keeps
/// answering. Each client reconnects a second after it is cut off, so the crowd never thins.
/// Afterwards a real outage still pages: the alert path was live all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_half_open_connections_fails_no_probe_and_pages_no_one() {
    init();
    let raised = honeyguide::fd_limit::raise();
    assert!(
        raised.now.is_none_or(|limit| limit >= 4096),
        "this test needs 1,100 sockets of its own; the descriptor limit is {raised:?}"
    );
    let mut target = Receiver::start().await;
    let hook = Receiver::start().await;
    let dir = TempDir::new("crowd");
    let listen = free_port();
    write_daemon_dir(
        dir.path(),
        listen,
        &target.url("/health"),
        &hook.url("/hook"),
        "",
    );
    let mut daemon = start_binary(&dir, &["prlimit", "--nofile=1024", "--"], listen);
    eventually(
        "every probe to have run ok",
        Duration::from_secs(20),
        || async {
            let text = get(listen, "/metrics", Duration::from_secs(2))
                .await?
                .text()
                .await
                .ok()?;
            (1..=3)
                .all(|n| {
                    sample(
                        &text,
                        &format!("honeyguide_probe_runs_total{{probe=\"api-{n}\",result=\"ok\"}}"),
                    ) >= Some(1.0)
                })
                .then_some(())
        },
    )
    .await;

    let stop = tokio_util::sync::CancellationToken::new();
    let mut crowd = tokio::task::JoinSet::new();
    for _ in 0..1100 {
        let stop = stop.clone();
        crowd.spawn(async move {
            let mut connections = 0u32;
            while !stop.is_cancelled() {
                if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", listen)).await {
                    connections += 1;
                    let _ = stream.write_all(HALF_HEAD).await;
                    let mut buffer = [0u8; 64];
                    tokio::select! {
                        _ = stream.read(&mut buffer) => {}
                        () = stop.cancelled() => {}
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            connections
        });
    }
    let held = Duration::from_secs(30);
    let started = tokio::time::Instant::now();
    let mut health_checks = 0;
    while started.elapsed() < held {
        let response = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap()
            .get(format!("http://127.0.0.1:{listen}/healthz"))
            .send()
            .await;
        assert!(
            response
                .as_ref()
                .is_ok_and(|response| response.status() == 200),
            "/healthz did not answer within 3 s, {:?} into the crowd: {:?}\n{}\n{}",
            started.elapsed(),
            response.map_err(|error| format!("{error:?}")),
            {
                let mut text = String::from("(no /metrics either)");
                for _ in 0..20 {
                    if let Some(response) = get(listen, "/metrics", Duration::from_secs(3)).await {
                        text = response.text().await.unwrap_or_default();
                        break;
                    }
                }
                text.lines()
                    .filter(|line| line.starts_with("honeyguide_http"))
                    .collect::<Vec<_>>()
                    .join("\n")
            },
            log(&dir)
        );
        health_checks += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.cancel();
    let mut attempts = 0;
    while let Some(connections) = crowd.join_next().await {
        attempts += connections.unwrap();
    }
    assert!(
        attempts >= 1100,
        "the crowd made only {attempts} connections"
    );
    assert!(health_checks >= 20);
    let text = metrics(listen).await;
    eprintln!(
        "{attempts} crowd connections, {health_checks} /healthz answered; {}",
        text.lines()
            .filter(|line| line.starts_with("honeyguide_http_conn"))
            .collect::<Vec<_>>()
            .join("; ")
    );

    let text = metrics(listen).await;
    for n in 1..=3 {
        assert_eq!(
            sample(
                &text,
                &format!("honeyguide_probe_runs_total{{probe=\"api-{n}\",result=\"failed\"}}")
            ),
            Some(0.0),
            "probe api-{n} failed during the crowd:\n{text}"
        );
    }
    assert!(
        sample(
            &text,
            "honeyguide_http_connections_closed_total{reason=\"evicted\"}"
        ) > Some(0.0),
        "the crowd never reached the cap:\n{text}"
    );
    assert!(
        hook.received().is_empty(),
        "on-call was paged during the crowd: {:?}",
        hook.received()
            .iter()
            .map(|received| received.json())
            .collect::<Vec<Value>>()
    );

    // The alert path was live: a real outage pages.
    target.stop();
    let paged = hook.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(paged[0].json()["status"], "firing");
    daemon.stop_with("TERM");
}

/// SIGTERM while a client holds half a request: the daemon closes that connection, runs its
/// shutdown and exits 0 well within its bound.
#[tokio::test]
async fn sigterm_with_a_half_sent_request_exits_0_within_the_bound() {
    init();
    let target = Receiver::start().await;
    let hook = Receiver::start().await;
    let dir = TempDir::new("sigterm");
    let listen = free_port();
    write_daemon_dir(
        dir.path(),
        listen,
        &target.url("/health"),
        &hook.url("/hook"),
        "",
    );
    let mut daemon = start_binary(&dir, &[], listen);
    let mut slow = TcpStream::connect(("127.0.0.1", listen)).await.unwrap();
    slow.write_all(HALF_HEAD).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    daemon.signal("TERM");
    let status = wait_exit(&mut daemon, honeyguide::app::SHUTDOWN_DEADLINE).unwrap_or_else(|| {
        panic!(
            "still running {:?} after SIGTERM\n{}",
            honeyguide::app::SHUTDOWN_DEADLINE,
            log(&dir)
        )
    });
    assert!(status.success(), "exited with {status}\n{}", log(&dir));
    assert!(log(&dir).contains("honeyguide stopped"), "{}", log(&dir));
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(1)).await;
    assert!(closed);
}

/// A second signal ends a shutdown that is waiting on a hung probe run, at once.
#[tokio::test]
async fn a_second_signal_forces_the_exit() {
    init();
    // A target that accepts connections and never answers: the run hangs until its timeout.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    let hook = Receiver::start().await;
    let dir = TempDir::new("second-signal");
    let listen = free_port();
    std::fs::write(
        dir.path().join("probes.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{listen}\"\n\n\
             [[probe]]\nname = \"hung\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{hung_port}/\"\n\
             interval = \"1m\"\ntimeout = \"50s\"\n\n\
             [[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url("/hook")
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("alerts")).unwrap();
    let mut daemon = start_binary(&dir, &[], listen);
    // The run is in flight once the target has a connection waiting (its start offset is
    // somewhere in the first minute).
    hung.set_nonblocking(false).unwrap();
    let (_held, _) = tokio::task::spawn_blocking(move || hung.accept())
        .await
        .unwrap()
        .unwrap();
    daemon.signal("TERM");
    assert!(
        wait_exit(&mut daemon, Duration::from_secs(2)).is_none(),
        "the shutdown did not wait for the run in flight\n{}",
        log(&dir)
    );
    daemon.signal("TERM");
    let status = wait_exit(&mut daemon, Duration::from_secs(3))
        .unwrap_or_else(|| panic!("a second SIGTERM did not end the process\n{}", log(&dir)));
    assert_eq!(status.code(), Some(1), "{}", log(&dir));
    assert!(log(&dir).contains("second signal"), "{}", log(&dir));
}

/// Resident memory of `pid`, and its peak since the last [`reset_peak`], in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak resident memory of `pid` to its current value (`clear_refs`, as root).
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .unwrap_or_else(|error| panic!("reset the peak RSS of {pid} (needs root): {error}"));
}

/// Sends `readers` requests for `/status` at once and reads none of the answers for a second
/// (so every answer is held by the daemon at the same time), then reads them all; returns
/// the bodies' sizes.
async fn concurrent_status(port: u16, readers: usize) -> Vec<usize> {
    let mut streams = Vec::new();
    for _ in 0..readers {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream
            .write_all(b"GET /status HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        streams.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut sizes = Vec::new();
    for mut stream in streams {
        let mut body = Vec::new();
        stream.read_to_end(&mut body).await.unwrap();
        assert!(body.starts_with(b"HTTP/1.1 200"));
        sizes.push(body.len());
    }
    sizes
}

/// 50 readers of a large `/status` at once share one rendering: the daemon's memory grows by
/// less than twice what one reader costs. The document is large because the API was filled
/// to its limit of silences, each with the longest comment allowed, and the next one is
/// refused naming the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_status_readers_share_one_document() {
    use honeyguide::alert::silence::{MAX_API_SILENCES, MAX_COMMENT_CHARS};
    init();
    let dir = TempDir::new("readers");
    let listen = free_port();
    // Probes of a closed loopback port, once an hour: they add to the document, not to the load.
    let probes: String = (0..2000)
        .map(|n| {
            format!(
                "[[probe]]\nname = \"p{n}\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/{n}\"\n\
                 interval = \"1h\"\nlabels = {{ team = \"payments\", layer = \"origin\" }}\n\n"
            )
        })
        .collect();
    std::fs::write(
        dir.path().join("probes.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{listen}\"\n\n[api]\ntoken = \"{TOKEN}\"\n\n{probes}"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("alerts")).unwrap();
    let daemon = start_binary(&dir, &[], listen);

    let client = reqwest::Client::new();
    let comment = "c".repeat(MAX_COMMENT_CHARS);
    let create = |n: usize| {
        client
            .post(format!("http://127.0.0.1:{listen}/api/silences"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({
                "alerts": [format!("mode-{n}-*")],
                "duration": "2h",
                "comment": comment,
                "created_by": "load test",
            }))
            .send()
    };
    for n in 0..MAX_API_SILENCES {
        let response = create(n).await.unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
    let refused = create(MAX_API_SILENCES).await.unwrap();
    assert_eq!(refused.status(), 400);
    let message = refused.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("1000 silences (the limit)"), "{message}");

    let pid = daemon.pid();
    let one = concurrent_status(listen, 1).await[0];
    assert!(one > 2_500_000, "the document is only {one} bytes");
    let (idle, _) = memory(pid);
    reset_peak(pid);
    concurrent_status(listen, 1).await;
    let (_, peak_one) = memory(pid);
    let cost_one = peak_one.saturating_sub(idle);

    let (idle, _) = memory(pid);
    reset_peak(pid);
    let sizes = concurrent_status(listen, 50).await;
    let (_, peak_fifty) = memory(pid);
    let cost_fifty = peak_fifty.saturating_sub(idle);
    eprintln!(
        "/status: {one} bytes; peak RSS above idle: one reader {cost_one}, 50 readers {cost_fifty}"
    );
    assert!(sizes.iter().all(|size| size.abs_diff(one) < one / 10));
    assert!(
        cost_fifty < 2 * cost_one.max(one as u64),
        "50 readers raised RSS by {cost_fifty} bytes, one reader by {cost_one} \
         (document: {one} bytes)\n{}",
        log(&dir)
    );
}
