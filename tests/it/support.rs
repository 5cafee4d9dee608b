//! Test harness: free ports, child processes that die with the test, TLS material, waiting.
//!
//! Servers are started as children of the test process, in the foreground, never daemonized:
//! PID 1 in CI does not reap orphans, and a child we own is one we can stop, pause (SIGSTOP) and
//! kill for fault tests.

#![allow(
    dead_code,
    reason = "each test module uses a different part of the harness"
)]

pub mod alerting;
pub mod asynq;
pub mod browser;
pub mod certs;
pub mod daemon;
pub mod dnsmasq;
pub mod http_server;
pub mod kube_api;
pub mod pgbouncer;
pub mod postgres;
pub mod probes;
pub mod redis;
pub mod registry;
pub mod s3;
pub mod smtpd;
pub mod victoria;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::Duration;

/// Installs the crypto provider and a test log subscriber, once per process.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        honeyguide::tls::install_crypto_provider();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("HONEYGUIDE_TEST_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
    });
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A TCP port on `ip` that was free a moment ago.
pub fn free_port_on(ip: &str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A fresh scratch directory under the target dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("honeyguide-{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Looks a server binary up, failing with the install command when it is missing: a test never
/// skips itself because a dependency is absent.
pub fn require_binary(path: &str, package: &str) -> PathBuf {
    let found = if path.contains('/') {
        Path::new(path).exists().then(|| PathBuf::from(path))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(path))
                .find(|candidate| candidate.exists())
        })
    };
    found.unwrap_or_else(|| {
        panic!("`{path}` is not installed: run ./scripts/test (it installs the Debian package `{package}`)")
    })
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Starts `command` with output to `log` (a file), as a child of this test.
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> Self {
        let out = std::fs::File::create(log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|error| panic!("start {name}: {error}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("child running")
    }

    /// Sends a signal (e.g. SIGSTOP to pause, SIGCONT to resume, SIGTERM to stop).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Stops the process now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the process to stop with `signal` and waits up to 10 s for it to exit.
    pub fn stop_with(&mut self, signal: &str) {
        if self.child.is_none() {
            return;
        }
        self.signal(signal);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && matches!(child.try_wait(), Ok(Some(_)))
            {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// The exit status, once the process has exited (it is then reaped).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listening on {addr} after {timeout:?}");
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
