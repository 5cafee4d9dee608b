//! Alerting test kit: a scripted classifier (the test says which diagnoses hold), an in-process
//! webhook receiver (axum, real HTTP) that records what it gets and can be told to fail or go
//! down, and a real Alertmanager (Debian `prometheus-alertmanager`) as a child process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use honeyguide::alert::Evaluation;
use honeyguide::app::Diagnoses;
use honeyguide::catalog::{Diagnosis, DiagnosisState, Evidence, Severity};
use serde_json::Value;
use tokio::net::TcpListener;

use super::{ChildGuard, TempDir, free_port, require_binary, wait_for_tcp};

// === scripted diagnoses ===

/// The diagnoses of a test, fed to the alert engine in place of the catalog's: the test says
/// which failure modes hold (and every rule counts as evaluated).
pub struct Script(tokio::sync::watch::Sender<Evaluation>);

impl Script {
    pub fn new() -> Self {
        Self(tokio::sync::watch::Sender::new(Evaluation::default()))
    }

    /// From now on, these diagnoses hold.
    pub fn set(&self, diagnoses: Vec<Diagnosis>) {
        self.0.send_replace(Evaluation {
            diagnoses,
            undetermined: Default::default(),
            retired: Default::default(),
        });
    }

    /// The feed for a daemon (several daemons may share one script).
    pub fn feed(&self) -> Diagnoses {
        Diagnoses::Feed(self.0.subscribe())
    }
}

/// A diagnosis as the catalog would produce it for `id`, active, critical.
pub fn active(id: &str) -> Diagnosis {
    Diagnosis {
        id: id.to_owned(),
        title: format!("{id} (test failure mode)"),
        severity: Severity::Critical,
        state: DiagnosisState::Active,
        since: jiff::Timestamp::now(),
        since_instant: tokio::time::Instant::now(),
        evidence: vec![
            Evidence {
                probe: "db-pooler".into(),
                ok: false,
                message: "connect: connection refused (127.0.0.1:6543)".into(),
            },
            Evidence {
                probe: "edge-api".into(),
                ok: true,
                message: "200 OK".into(),
            },
        ],
        summary: "API requests fail with HTTP 500".into(),
        recovery: "1. Check the **pooler** pods.\n2. Restart with `kubectl rollout restart`."
            .into(),
        runbook: "https://runbooks.example/neon-down".into(),
        labels: BTreeMap::from([("layer".to_owned(), "db".to_owned())]),
        inhibited_by: None,
    }
}

// === webhook receiver ===

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }
}

#[derive(Clone, Default)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    failures: Arc<AtomicUsize>,
    /// The status and body of a failing answer; 500 and no body unless set.
    failure: Arc<Mutex<Option<(StatusCode, String)>>>,
}

/// An HTTP server that records every request and answers 200 (or 500, or what it is told,
/// while told to fail).
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Listens on 127.0.0.1:`port` (0 for any free port).
    pub async fn start_on(port: u16) -> Self {
        super::init();
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        Self::serve(listener, Shared::default())
    }

    fn serve(listener: TcpListener, shared: Shared) -> Self {
        let addr = listener.local_addr().expect("addr");
        let router = axum::Router::new()
            .fallback(record)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            addr,
            shared,
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next `n` requests get 500.
    pub fn fail_next(&self, n: usize) {
        self.shared.failures.store(n, Ordering::SeqCst);
    }

    /// The next `n` requests get `status` with `body` (a receiver that refuses: 401, 404).
    pub fn fail_next_with(&self, n: usize, status: u16, body: &str) {
        *self.shared.failure.lock().unwrap() = Some((
            StatusCode::from_u16(status).expect("a status code"),
            body.to_owned(),
        ));
        self.shared.failures.store(n, Ordering::SeqCst);
    }

    /// Stops listening: connections are refused until [`Receiver::restart`].
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same port, keeping what was received.
    pub async fn restart(&mut self) {
        self.stop();
        let mut attempts = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(error) if attempts < 50 => {
                    attempts += 1;
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("rebind {}: {error}", self.addr),
            }
        };
        *self = Self::serve(listener, self.shared.clone());
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived, and returns all of them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        super::eventually(
            &format!("{n} request(s) at {}", self.addr),
            timeout,
            || async {
                let received = self.received();
                (received.len() >= n).then_some(received)
            },
        )
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn record(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let failing = shared
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok();
    shared.received.lock().unwrap().push(Received {
        method,
        path: uri.path().to_owned(),
        headers,
        body,
    });
    if failing {
        shared
            .failure
            .lock()
            .unwrap()
            .clone()
            .unwrap_or((StatusCode::INTERNAL_SERVER_ERROR, String::new()))
    } else {
        (StatusCode::OK, String::new())
    }
}

// === Alertmanager ===

/// A real Alertmanager on a free port, notifying `webhook` (group wait and interval 1s).
pub struct Alertmanager {
    pub url: String,
    _child: ChildGuard,
    dir: TempDir,
}

impl Alertmanager {
    pub async fn start(webhook: &str) -> Self {
        super::init();
        let binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager");
        let dir = TempDir::new("alertmanager");
        let config = dir.path().join("am.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: hook\n  group_by: ['alertname']\n  group_wait: 1s\n  \
                 group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    \
                 webhook_configs:\n      - url: '{webhook}'\n        send_resolved: true\n"
            ),
        )
        .expect("write am.yml");
        let port = free_port();
        let storage: PathBuf = dir.path().join("data");
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=");
        let child = ChildGuard::spawn("alertmanager", &mut command, &dir.path().join("am.log"));
        wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(15));
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/-/ready");
        super::eventually("alertmanager ready", Duration::from_secs(15), || async {
            let response = reqwest::get(&ready).await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        Self {
            url,
            _child: child,
            dir,
        }
    }

    /// `GET /api/v2/alerts`: the alerts Alertmanager holds.
    pub async fn alerts(&self) -> Vec<Value> {
        reqwest::get(format!("{}/api/v2/alerts", self.url))
            .await
            .expect("GET alerts")
            .json()
            .await
            .expect("alerts JSON")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("am.log")).unwrap_or_default()
    }
}
