//! A whole honeyguide daemon in-process, on a free port, for end-to-end tests.
//!
//! The daemon is `honeyguide::app::run` with a listener bound to `127.0.0.1:0` and a shutdown
//! signal the test controls, exactly what `honeyguide run` does with a real port and SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use honeyguide::app::Diagnoses;
use honeyguide::catalog::{self, Catalog};
use honeyguide::config::{self, Source};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::TempDir;

pub struct TestDaemon {
    pub base_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), honeyguide::app::AppError>>>,
    client: reqwest::Client,
    dir: Option<TempDir>,
}

impl TestDaemon {
    /// Starts a daemon for `probes_toml` (written to a temp dir, so relative paths resolve there).
    pub async fn start(probes_toml: &str) -> Self {
        Self::start_with_alerts(probes_toml, &[]).await
    }

    /// Starts a daemon for `probes_toml` and the rule files `alerts` (file name, text), written
    /// to `alerts/` beside it.
    pub async fn start_with_alerts(probes_toml: &str, alerts: &[(&str, &str)]) -> Self {
        Self::launch(
            TempDir::new("daemon"),
            probes_toml,
            alerts,
            Diagnoses::Catalog,
        )
        .await
    }

    /// Starts a daemon whose alerts follow `diagnoses` (e.g. a scripted feed) instead of rules.
    pub async fn start_with(probes_toml: &str, diagnoses: Diagnoses) -> Self {
        Self::launch(TempDir::new("daemon"), probes_toml, &[], diagnoses).await
    }

    /// Starts a daemon in `dir`, e.g. the one a stopped daemon left, with its store.
    pub async fn start_in(dir: TempDir, probes_toml: &str, diagnoses: Diagnoses) -> Self {
        Self::launch(dir, probes_toml, &[], diagnoses).await
    }

    /// Unless the file has a `[store]` section, the store is `honeyguide.db` in `dir`, never in
    /// the working directory.
    async fn launch(
        dir: TempDir,
        probes_toml: &str,
        alerts: &[(&str, &str)],
        diagnoses: Diagnoses,
    ) -> Self {
        super::init();
        let path = dir.path().join("probes.toml");
        std::fs::write(&path, probes_toml).expect("write probes.toml");
        let source = Source::new(&path, probes_toml.to_owned());
        let mut config =
            config::parse(&source, &|_| None).unwrap_or_else(|errors| panic!("{errors}"));
        if !probes_toml.contains("[store]") {
            config.store.path = dir.path().join("honeyguide.db");
        }
        let alerts_dir = dir.path().join("alerts");
        std::fs::create_dir_all(&alerts_dir).expect("create alerts/");
        for (name, text) in alerts {
            std::fs::write(alerts_dir.join(name), text).expect("write a rule file");
        }
        let catalog: Arc<Catalog> = Arc::new(
            catalog::load(&alerts_dir, &config.probe_kinds())
                .unwrap_or_else(|errors| panic!("{errors}")),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(honeyguide::app::run_with(
            config,
            catalog,
            listener,
            async move {
                let _ = stopped.await;
            },
            diagnoses,
        ));
        Self {
            base_url,
            stop: Some(stop),
            task: Some(task),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            dir: Some(dir),
        }
    }

    /// The daemon's directory (its probes.toml, alerts/ and store).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.as_ref().expect("dir").path()
    }

    /// A request builder with the daemon's client, for the API.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base_url))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"))
    }

    /// `GET path`, or `None` if the request failed (refused, reset, timed out).
    pub async fn try_get(&self, path: &str) -> Option<reqwest::Response> {
        self.client
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .ok()
    }

    pub async fn status(&self) -> Value {
        let response = self.get("/status").await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("status json")
    }

    pub async fn metrics(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), 200);
        response.text().await.expect("metrics text")
    }

    /// The `/status` entry of probe `name`.
    pub async fn probe(&self, name: &str) -> Value {
        let status = self.status().await;
        status["probes"]
            .as_array()
            .and_then(|probes| probes.iter().find(|probe| probe["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no probe {name} in /status: {status}"))
    }

    /// Waits until probe `name` has a result for which `accept` holds, and returns its entry.
    pub async fn wait_for(&self, name: &str, accept: impl Fn(&Value) -> bool) -> Value {
        super::eventually(
            &format!("probe {name} to reach the expected state"),
            Duration::from_secs(20),
            || async {
                let probe = self.probe(name).await;
                (!probe["ok"].is_null() && accept(&probe)).then_some(probe)
            },
        )
        .await
    }

    /// Stops the daemon the way SIGTERM does and waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    /// Stops the daemon and hands back its directory, to start another daemon on the same store.
    pub async fn stop_keeping_dir(mut self) -> TempDir {
        self.shutdown().await;
        self.dir.take().expect("dir")
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("daemon stops within 30s")
                .expect("daemon task");
            result.expect("daemon ran without error");
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The value of the sample `series` (exact text before the value, e.g.
/// `probe_success{probe="a"}`) in an exposition, if present.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}
