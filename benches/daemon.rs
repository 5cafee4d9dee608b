//! honeyguide's benchmark: throughput, CPU and memory per probe, scheduling accuracy, latency
//! accuracy, `/metrics` cost and time to alert, side by side with Prometheus blackbox_exporter.
//!
//! Run with `cargo bench --bench daemon` (or `./scripts/bench`, which also installs the peers).
//! It prints a table and rewrites BENCHMARKS.md, keeping the previous table for comparison.
//! Figures are measured on this machine, in this run; nothing here asserts a target: the
//! targets are printed next to the figures and the note says by how much one was missed.
//!
//! Environment: `BENCH_WINDOW` (seconds measured per size, default 30), `BENCH_SIZES`
//! (default `100,1000,10000`), `BENCH_SKIP_BLACKBOX=1`, `BENCH_NO_WRITE=1`, `BENCH_PARTS`
//! (default `load,latency,metrics,render,alert`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_types,
    reason = "a benchmark binary: a panic is a failed run, and it measures real wall time"
)]

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

const INTERVAL_SECONDS: u64 = 10;
const DELAY: Duration = Duration::from_millis(100);

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, and
    // must not spend ten minutes benchmarking a debug build (nor rewrite BENCHMARKS.md).
    if !std::env::args().any(|arg| arg == "--bench") {
        eprintln!("the benchmark runs under `cargo bench --bench daemon` (or ./scripts/bench)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

struct Settings {
    window: Duration,
    sizes: Vec<usize>,
    blackbox: bool,
    write: bool,
    parts: Vec<String>,
}

impl Settings {
    fn from_env() -> Self {
        let window = std::env::var("BENCH_WINDOW")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(30);
        let sizes = std::env::var("BENCH_SIZES")
            .unwrap_or_else(|_| "100,1000,10000".into())
            .split(',')
            .filter_map(|size| size.trim().parse().ok())
            .collect();
        Self {
            window: Duration::from_secs(window),
            sizes,
            blackbox: std::env::var_os("BENCH_SKIP_BLACKBOX").is_none(),
            write: std::env::var_os("BENCH_NO_WRITE").is_none(),
            parts: std::env::var("BENCH_PARTS")
                .unwrap_or_else(|_| "load,latency,metrics,render,alert".into())
                .split(',')
                .map(|part| part.trim().to_owned())
                .collect(),
        }
    }

    fn wants(&self, part: &str) -> bool {
        self.parts.iter().any(|wanted| wanted == part)
    }
}

/// What one daemon did during the measured window.
#[derive(Clone, Debug, Default)]
struct Load {
    probes_per_second: f64,
    cpu_seconds_per_1000: f64,
    peak_rss_mib: f64,
    lag_p50_ms: Option<f64>,
    lag_p99_ms: Option<f64>,
    lag_max_ms: Option<f64>,
}

async fn run() {
    honeyguide::tls::install_crypto_provider();
    let settings = Settings::from_env();
    let target = start_target().await;
    let scratch = std::env::temp_dir().join(format!("honeyguide-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();

    let mut report = Report::new(&settings);
    let sizes = if settings.wants("load") {
        settings.sizes.clone()
    } else {
        Vec::new()
    };
    for &size in &sizes {
        eprintln!("bench: honeyguide with {size} http probes every {INTERVAL_SECONDS}s");
        let honeyguide = measure_honeyguide(&scratch, target, size, settings.window).await;
        let blackbox = if settings.blackbox {
            eprintln!("bench: blackbox_exporter with {size} targets every {INTERVAL_SECONDS}s");
            measure_blackbox(&scratch, target, size, settings.window).await
        } else {
            Err("skipped (BENCH_SKIP_BLACKBOX)".into())
        };
        report.load(size, &honeyguide, &blackbox);
    }

    if settings.wants("latency") {
        eprintln!("bench: latency accuracy against a fixed {DELAY:?} delay");
        report.latency(measure_latency(&scratch, target).await);
    }
    if settings.wants("metrics") {
        eprintln!("bench: /metrics at 10000 probes");
        report.exposition(measure_exposition(&scratch, target).await);
    }
    if settings.wants("render") {
        report.render(measure_render(&scratch, target).await);
    }
    if settings.wants("alert") {
        eprintln!("bench: time to alert");
        report.time_to_alert(measure_time_to_alert(&scratch).await);
    }

    let table = report.finish();
    println!("{table}");
    if settings.write {
        write_benchmarks_md(&table);
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

// === the target ===

/// The probed server; it counts the requests it answers, which is the honest probe count for
/// both honeyguide and blackbox_exporter.
#[derive(Clone, Copy)]
struct Target {
    addr: SocketAddr,
    served: &'static AtomicU64,
}

impl Target {
    fn served(self) -> f64 {
        self.served.load(Ordering::Relaxed) as f64
    }
}

/// A loopback HTTP/1.1 server: `/` answers 200 at once, `/delay` after exactly [`DELAY`].
async fn start_target() -> Target {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service =
                    service_fn(move |request: Request<hyper::body::Incoming>| async move {
                        if request.uri().path() == "/delay" {
                            tokio::time::sleep(DELAY).await;
                        }
                        served.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Target { addr, served }
}

// === honeyguide ===

struct Daemon {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Daemon {
    async fn start(dir: &Path, probes_toml: &str) -> Self {
        std::fs::create_dir_all(dir.join("alerts")).unwrap();
        let port = free_port();
        let config = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n\n{probes_toml}");
        std::fs::write(dir.join("probes.toml"), config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_honeyguide"))
            .args(["run", "--config", "probes.toml", "--alerts", "alerts"])
            .current_dir(dir)
            .env("HONEYGUIDE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start honeyguide");
        let daemon = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        daemon.wait_healthy().await;
        daemon
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = self
                .client
                .get(format!("{}/healthz", self.base))
                .send()
                .await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("honeyguide did not become healthy");
    }

    async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `path` as bytes, for timing and sizing a document.
    async fn fetch(&self, path: &str) -> usize {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len()
    }

    async fn status(&self) -> serde_json::Value {
        self.client
            .get(format!("{}/status", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_probes(target: Target, count: usize, path: &str, interval: u64) -> String {
    let mut toml = format!("[defaults]\ninterval = \"{interval}s\"\ntimeout = \"5s\"\n");
    for index in 0..count {
        let _ = write!(
            toml,
            "\n[[probe]]\nname = \"p{index}\"\nkind = \"http\"\nurl = \"http://{}{path}?i={index}\"\n",
            target.addr
        );
    }
    toml
}

async fn measure_honeyguide(
    scratch: &Path,
    target: Target,
    size: usize,
    window: Duration,
) -> Result<Load, String> {
    let dir = scratch.join(format!("honeyguide-{size}"));
    let daemon = Daemon::start(&dir, &http_probes(target, size, "/", INTERVAL_SECONDS)).await;
    // One whole interval of warm-up: every probe has started its schedule.
    tokio::time::sleep(Duration::from_secs(INTERVAL_SECONDS)).await;
    let runs_before = target.served();
    let cpu_before = cpu_seconds(daemon.pid());
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(daemon.pid()) - cpu_before;
    let runs = target.served() - runs_before;
    let metrics = daemon.metrics().await;
    if runs <= 0.0 {
        return Err("no probe runs completed".into());
    }
    let lag = histogram(&metrics, "honeyguide_scheduler_lag_seconds");
    Ok(Load {
        probes_per_second: runs / elapsed,
        cpu_seconds_per_1000: cpu / runs * 1000.0,
        peak_rss_mib: peak_rss_mib(daemon.pid()),
        lag_p50_ms: histogram_quantile(&lag, 0.5).map(|seconds| seconds * 1000.0),
        lag_p99_ms: histogram_quantile(&lag, 0.99).map(|seconds| seconds * 1000.0),
        lag_max_ms: sample(&metrics, "honeyguide_scheduler_lag_max_seconds").map(|s| s * 1000.0),
    })
}

// === blackbox_exporter, driven by vmagent ===

async fn measure_blackbox(
    scratch: &Path,
    target: Target,
    size: usize,
    window: Duration,
) -> Result<Load, String> {
    for binary in ["/usr/bin/prometheus-blackbox-exporter", "/usr/bin/vmagent"] {
        if !Path::new(binary).exists() {
            return Err(format!(
                "{binary} not installed (apt install prometheus-blackbox-exporter victoria-metrics)"
            ));
        }
    }
    let dir = scratch.join(format!("blackbox-{size}"));
    std::fs::create_dir_all(&dir).unwrap();
    let sink = start_sink().await;
    let blackbox_port = free_port();
    std::fs::write(
        dir.join("blackbox.yml"),
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n",
    )
    .unwrap();
    let mut blackbox = spawn(Command::new("/usr/bin/prometheus-blackbox-exporter").args([
        &format!("--config.file={}", dir.join("blackbox.yml").display()),
        &format!("--web.listen-address=127.0.0.1:{blackbox_port}"),
        "--log.level=error",
    ]))?;
    wait_for_port(blackbox_port).await?;
    let mut targets = String::new();
    for index in 0..size {
        let _ = writeln!(targets, "        - http://{}/?i={index}", target.addr);
    }
    std::fs::write(
        dir.join("scrape.yml"),
        format!(
            "scrape_configs:\n  - job_name: blackbox\n    scrape_interval: {INTERVAL_SECONDS}s\n    scrape_timeout: 5s\n    metrics_path: /probe\n    params: {{module: [http_2xx]}}\n    static_configs:\n      - targets:\n{targets}    relabel_configs:\n      - source_labels: [__address__]\n        target_label: __param_target\n      - source_labels: [__param_target]\n        target_label: instance\n      - target_label: __address__\n        replacement: 127.0.0.1:{blackbox_port}\n"
        ),
    )
    .unwrap();
    let vmagent_port = free_port();
    let mut vmagent = spawn(Command::new("/usr/bin/vmagent").args([
        &format!("-promscrape.config={}", dir.join("scrape.yml").display()),
        &format!("-remoteWrite.url=http://{sink}/api/v1/write"),
        &format!("-remoteWrite.tmpDataPath={}", dir.join("vmagent").display()),
        &format!("-httpListenAddr=127.0.0.1:{vmagent_port}"),
        "-loggerLevel=ERROR",
    ]))?;
    tokio::time::sleep(Duration::from_secs(INTERVAL_SECONDS)).await;
    let probes_before = target.served();
    let cpu_before = cpu_seconds(blackbox.id());
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(blackbox.id()) - cpu_before;
    let probes = target.served() - probes_before;
    let rss = peak_rss_mib(blackbox.id());
    let _ = vmagent.kill();
    let _ = vmagent.wait();
    let _ = blackbox.kill();
    let _ = blackbox.wait();
    if probes <= 0.0 {
        return Err("blackbox_exporter completed no probes".into());
    }
    Ok(Load {
        probes_per_second: probes / elapsed,
        cpu_seconds_per_1000: cpu / probes * 1000.0,
        peak_rss_mib: rss,
        ..Load::default()
    })
}

/// A remote-write sink for vmagent that accepts and discards.
async fn start_sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|_request: Request<hyper::body::Incoming>| async {
                    let mut response = Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = hyper::StatusCode::NO_CONTENT;
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

// === latency accuracy, /metrics cost, time to alert ===

async fn measure_latency(scratch: &Path, target: Target) -> Result<(f64, f64), String> {
    let dir = scratch.join("latency");
    let daemon = Daemon::start(&dir, &http_probes(target, 10, "/delay", 1)).await;
    // 10 probes, one run a second each, 21 s: the history holds the last 20 runs per probe.
    tokio::time::sleep(Duration::from_secs(21)).await;
    let status = daemon.status().await;
    let mut durations: Vec<f64> = status["probes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|probe| probe["history"].as_array().cloned().unwrap_or_default())
        .filter(|run| run["ok"] == true)
        .filter_map(|run| run["duration_seconds"].as_f64())
        .collect();
    if durations.is_empty() {
        return Err("no successful runs".into());
    }
    durations.sort_by(f64::total_cmp);
    Ok((
        quantile(&durations, 0.5) * 1000.0,
        quantile(&durations, 0.99) * 1000.0,
    ))
}

/// `/metrics` and `/status` of one daemon with 10,000 probes: p50 of 20 fetches each (time in
/// ms, size in bytes), over HTTP.
struct Documents {
    metrics: (f64, usize),
    status: (f64, usize),
}

async fn measure_exposition(scratch: &Path, target: Target) -> Result<Documents, String> {
    let dir = scratch.join("exposition");
    // A long interval: the daemon is idle apart from one round of results, so the figure is the
    // render itself.
    let daemon = Daemon::start(&dir, &http_probes(target, 10_000, "/", 60)).await;
    tokio::time::sleep(Duration::from_secs(62)).await;
    let mut documents = Vec::new();
    for path in ["/metrics", "/status"] {
        let mut timings = Vec::new();
        let mut size = 0;
        for _ in 0..20 {
            let started = Instant::now();
            size = daemon.fetch(path).await;
            timings.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        timings.sort_by(f64::total_cmp);
        documents.push((quantile(&timings, 0.5), size));
    }
    Ok(Documents {
        metrics: documents[0],
        status: documents[1],
    })
}

/// Stops a target and times how long until the webhook receives the alert, over several
/// rounds: probe interval 1 s, rule `for` 0 s, no group wait. The minimum possible is the wait for
/// the next probe run, on average half an interval and at most one.
/// The exposition's render alone, in-process: 10,000 http probes with a real result each (from
/// running them once against the target), then `metrics::render` of the snapshot, 20 times.
async fn measure_render(scratch: &Path, target: Target) -> Result<f64, String> {
    use honeyguide::config::{self, Source};
    let dir = scratch.join("render");
    std::fs::create_dir_all(dir.join("alerts")).unwrap();
    let text = http_probes(target, 10_000, "/", 60);
    let config = config::parse(&Source::new(dir.join("probes.toml"), text), &|_| None)
        .map_err(|errors| errors.to_string())?;
    let catalog = honeyguide::catalog::load(&dir.join("alerts"), &config.probe_kinds())
        .map_err(|errors| errors.to_string())?;
    let (task, results, state) =
        honeyguide::state::StateTask::new(&config, std::sync::Arc::new(catalog));
    let running = tokio::spawn(task.run());
    for probe in &config.probes {
        let result = honeyguide::probe::execute(probe.probe.clone(), probe.timeout).await;
        let run = honeyguide::state::ProbeRun {
            probe: probe.name.as_str().into(),
            fingerprint: probe.fingerprint,
            result,
            at: tokio::time::Instant::now(),
            checked_at: jiff::Timestamp::now(),
            lag: Duration::ZERO,
        };
        results.send(run).await.map_err(|_| "state task gone")?;
    }
    drop(results);
    // Let the state task drain the channel before the snapshot is taken.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let snapshot = state.snapshot().await.ok_or("no snapshot")?;
    let mut timings = Vec::new();
    let rounds = std::env::var("BENCH_RENDER_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(20);
    for _ in 0..rounds {
        let started = Instant::now();
        let text = honeyguide::metrics::render(&snapshot);
        timings.push(started.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(text);
    }
    drop(state);
    drop(snapshot);
    let _ = running.await;
    timings.sort_by(f64::total_cmp);
    Ok(quantile(&timings, 0.5))
}

/// Time to alert, over trials that break the target at phases spread evenly across the probe's
/// 1 s cycle (a fixed phase measures one point of the cycle, not the distribution), and the
/// daemon's own share: from the first request the broken target answered (the failing run) to
/// the webhook.
struct AlertTimes {
    /// Seconds from breaking the target to the webhook, sorted.
    total: Vec<f64>,
    /// Seconds from the first failing run's request to the webhook, sorted.
    own: Vec<f64>,
}

async fn measure_time_to_alert(scratch: &Path) -> Result<AlertTimes, String> {
    const TRIALS: usize = 20;
    let (hook, mut received) = start_webhook_receiver().await;
    let mut total = Vec::with_capacity(TRIALS);
    let mut own = Vec::with_capacity(TRIALS);
    for trial in 0..TRIALS {
        let dir = scratch.join(format!("alert-{trial}"));
        std::fs::create_dir_all(dir.join("alerts")).unwrap();
        std::fs::write(
            dir.join("alerts/target-down.toml"),
            "id = \"target-down\"\ntitle = \"Target down\"\nseverity = \"critical\"\n\
             when = '!probes[\"t\"].ok'\nsymptom = \"The target does not answer.\"\n\
             recovery = \"Start it again.\"\nrunbook = \"#\"\n",
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let switch = Arc::new(FailSwitch::default());
        let serving = tokio::spawn(serve_switchable(listener, switch.clone()));
        let toml = format!(
            "[alerting]\ngroup_wait = \"0s\"\ngroup_interval = \"0s\"\n\n\
             [store]\npath = \"honeyguide.db\"\n\n\
             [[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://{hook}/hook\"\n\n\
             [[probe]]\nname = \"t\"\nkind = \"http\"\nurl = \"http://{target}/\"\ninterval = \"1s\"\n"
        );
        let daemon = Daemon::start(&dir, &toml).await;
        // Let the probe see the target healthy first, then break it at this trial's phase.
        let phase = Duration::from_millis(1000 * trial as u64 / TRIALS as u64);
        tokio::time::sleep(Duration::from_millis(2500) + phase).await;
        while received.try_recv().is_ok() {}
        let broken = Instant::now();
        switch.fail();
        let arrived = tokio::time::timeout(Duration::from_secs(30), received.recv())
            .await
            .map_err(|_| "no alert within 30 s".to_owned())?
            .ok_or("the receiver stopped")?;
        total.push(arrived.duration_since(broken).as_secs_f64());
        if let Some(first) = switch.first_failure() {
            own.push(arrived.saturating_duration_since(first).as_secs_f64());
        }
        serving.abort();
        drop(daemon);
    }
    total.sort_by(f64::total_cmp);
    own.sort_by(f64::total_cmp);
    Ok(AlertTimes { total, own })
}

/// Turns a healthy target into a failing one (500) and remembers when it first failed a request.
#[derive(Default)]
struct FailSwitch {
    failing: std::sync::atomic::AtomicBool,
    first: std::sync::Mutex<Option<Instant>>,
}

impl FailSwitch {
    fn fail(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }

    fn answer(&self) -> hyper::StatusCode {
        if !self.failing.load(Ordering::SeqCst) {
            return hyper::StatusCode::OK;
        }
        self.first.lock().unwrap().get_or_insert_with(Instant::now);
        hyper::StatusCode::INTERNAL_SERVER_ERROR
    }

    fn first_failure(&self) -> Option<Instant> {
        *self.first.lock().unwrap()
    }
}

/// Answers 200 until the switch is thrown, then 500.
async fn serve_switchable(listener: TcpListener, switch: Arc<FailSwitch>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let switch = switch.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
                let status = switch.answer();
                async move {
                    let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A webhook receiver that reports the arrival time of every firing notification.
async fn start_webhook_receiver() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let sender = sender.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let sender = sender.clone();
                    async move {
                        let body = http_body_util::BodyExt::collect(request.into_body())
                            .await
                            .map(|collected| collected.to_bytes())
                            .unwrap_or_default();
                        if String::from_utf8_lossy(&body).contains("\"status\":\"firing\"") {
                            let _ = sender.send(Instant::now());
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, receiver)
}

// === /proc ===

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the state field.
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

// === helpers ===

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(command: &mut Command) -> Result<Child, String> {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot start {command:?}: {error}"))
}

async fn wait_for_port(port: u16) -> Result<(), String> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("nothing listening on {port}"))
}

fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Cumulative `(le, count)` pairs of a histogram family.
fn histogram(metrics: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (le, value) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, value.trim().parse().ok()?))
        })
        .collect()
}

/// `histogram_quantile` as Prometheus computes it: linear interpolation within the bucket.
fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower_bound);
            }
            let in_bucket = count - lower_count;
            let fraction = if in_bucket > 0.0 {
                (rank - lower_count) / in_bucket
            } else {
                0.0
            };
            return Some(lower_bound + (le - lower_bound) * fraction);
        }
        lower_bound = le;
        lower_count = count;
    }
    None
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

// === the report ===

struct Report {
    rows: Vec<String>,
    notes: Vec<String>,
    window: Duration,
}

impl Report {
    fn new(settings: &Settings) -> Self {
        Self {
            rows: Vec::new(),
            notes: Vec::new(),
            window: settings.window,
        }
    }

    fn load(
        &mut self,
        size: usize,
        honeyguide: &Result<Load, String>,
        blackbox: &Result<Load, String>,
    ) {
        let cell = |value: Option<f64>, digits: usize| {
            value.map_or_else(|| "n/a".to_owned(), |value| format!("{value:.digits$}"))
        };
        match honeyguide {
            Ok(load) => {
                let ratio = blackbox
                    .as_ref()
                    .ok()
                    .map(|peer| load.cpu_seconds_per_1000 / peer.cpu_seconds_per_1000);
                self.rows.push(format!(
                    "| honeyguide, {size} http probes / {INTERVAL_SECONDS}s | {:.0} probes/s | {:.3} CPU s / 1000 probes | {:.1} MiB peak RSS | lag p50 {} ms, p99 {} ms, max {} ms | CPU vs blackbox {} |",
                    load.probes_per_second,
                    load.cpu_seconds_per_1000,
                    load.peak_rss_mib,
                    cell(load.lag_p50_ms, 3),
                    cell(load.lag_p99_ms, 3),
                    cell(load.lag_max_ms, 1),
                    ratio.map_or_else(|| "n/a".to_owned(), |ratio| format!("{ratio:.2}x")),
                ));
            }
            Err(error) => self.rows.push(format!(
                "| honeyguide, {size} probes | failed: {error} | | | | |"
            )),
        }
        match blackbox {
            Ok(load) => self.rows.push(format!(
                "| blackbox_exporter 0.23 via vmagent, {size} targets / {INTERVAL_SECONDS}s | {:.0} probes/s | {:.3} CPU s / 1000 probes | {:.1} MiB peak RSS | n/a (Prometheus-driven) | |",
                load.probes_per_second, load.cpu_seconds_per_1000, load.peak_rss_mib
            )),
            Err(error) => self.rows.push(format!("| blackbox_exporter, {size} targets | could not run: {error} | | | | |")),
        }
    }

    fn latency(&mut self, measured: Result<(f64, f64), String>) {
        self.rows.push(match measured {
            Ok((p50, p99)) => format!(
                "| latency accuracy, target delay {} ms | measured p50 {p50:.2} ms, p99 {p99:.2} ms | p50 error {:+.2} ms | | | |",
                DELAY.as_millis(),
                p50 - DELAY.as_secs_f64() * 1000.0
            ),
            Err(error) => format!("| latency accuracy | failed: {error} | | | | |"),
        });
    }

    fn exposition(&mut self, measured: Result<Documents, String>) {
        match measured {
            Ok(documents) => {
                for (name, (millis, size)) in [
                    ("/metrics", documents.metrics),
                    ("/status", documents.status),
                ] {
                    self.rows.push(format!(
                        "| {name} at 10000 probes | {millis:.1} ms (p50 of 20, incl. HTTP) | {:.1} MiB | | | |",
                        size as f64 / 1024.0 / 1024.0
                    ));
                }
            }
            Err(error) => self.rows.push(format!(
                "| /metrics and /status at 10000 probes | failed: {error} | | | | |"
            )),
        }
    }

    fn render(&mut self, measured: Result<f64, String>) {
        self.rows.push(match measured {
            Ok(millis) => format!(
                "| /metrics render alone at 10000 probes | {millis:.1} ms (p50, in-process) | | | | |"
            ),
            Err(error) => format!("| /metrics render alone | failed: {error} | | | | |"),
        });
    }

    fn time_to_alert(&mut self, measured: Result<AlertTimes, String>) {
        match measured {
            Ok(times) => {
                let (total, own) = (&times.total, &times.own);
                self.rows.push(format!(
                    "| time to alert (interval 1s, for 0s), {} trials at phases spread over the cycle | p50 {:.2} s, p90 {:.2} s, min {:.2} s, max {:.2} s from breaking the target to the webhook | target: within one interval (1 s) + 0.5 s | honeyguide's own share (first failing request to webhook): p50 {:.1} ms, max {:.1} ms | | |",
                    total.len(),
                    quantile(total, 0.5),
                    quantile(total, 0.9),
                    total.first().copied().unwrap_or(f64::NAN),
                    total.last().copied().unwrap_or(f64::NAN),
                    quantile(own, 0.5) * 1000.0,
                    own.last().copied().unwrap_or(f64::NAN) * 1000.0,
                ));
            }
            Err(error) => self.notes.push(format!("Time to alert: {error}.")),
        }
    }

    fn finish(self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## {} on {}\n", jiff::Zoned::now().date(), machine());
        let _ = writeln!(
            out,
            "Measured window per size: {} s, after one interval of warm-up.\n",
            self.window.as_secs()
        );
        let _ = writeln!(
            out,
            "| workload | throughput | CPU | memory | scheduling | vs peer |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for row in &self.rows {
            let _ = writeln!(out, "{row}");
        }
        for note in &self.notes {
            let _ = writeln!(out, "\n{note}");
        }
        out
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|model| model.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({cpu})")
}

/// Puts the new table on top of BENCHMARKS.md, keeps the previous one below it, and keeps the
/// hand-written analysis (everything from `## Analysis` on) at the end.
fn write_benchmarks_md(table: &str) {
    const ANALYSIS: &str = "\n## Analysis";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let file = std::fs::read_to_string(&path).unwrap_or_default();
    let (previous, analysis) = match file.find(ANALYSIS) {
        Some(at) => (file[..at].to_owned(), file[at..].to_owned()),
        None => (file, String::new()),
    };
    let header = "# Benchmarks\n\nWritten by `cargo bench --bench daemon`. Newest first; the previous run is kept for comparison.\n\n";
    let older = previous
        .split_once("\n## ")
        .map(|(_, rest)| format!("## {}", rest.split("\n## ").next().unwrap_or(rest)))
        .unwrap_or_default();
    let text = if older.is_empty() {
        format!("{header}{table}")
    } else {
        format!(
            "{header}{table}\n## Previous run\n\n{}",
            older.trim_start_matches("## ").trim_end()
        )
    };
    std::fs::write(&path, format!("{}\n{analysis}", text.trim_end())).unwrap();
}
