//! A real VictoriaMetrics (Debian `victoria-metrics`, single node) for the `prometheus` probe
//! tests: started as a child on a free loopback port with a temporary storage directory,
//! `-search.latencyOffset=0s` so that samples imported a moment ago are visible to instant
//! queries (by default VictoriaMetrics hides the last 30 s), and its result cache off (samples
//! with past timestamps arrive between queries). Samples arrive through its import
//! API (`/api/v1/import/prometheus`, the text exposition format), then a forced flush makes them
//! queryable at once. VictoriaMetrics itself only does Basic auth (`-httpAuth.*`); bearer tokens
//! are vmauth's job (same package), which [`Vmauth`] starts in front of it, as deployments do.

use std::process::Command;
use std::time::Duration;

use super::{ChildGuard, TempDir, free_port, require_binary, wait_for_tcp};

/// A running single-node VictoriaMetrics.
pub struct Victoria {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: ChildGuard,
    credentials: Option<(String, String)>,
    _dir: TempDir,
}

impl Victoria {
    /// Without authentication.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// With HTTP Basic auth on every endpoint (`-httpAuth.username`/`-httpAuth.password`).
    pub fn start_with_basic_auth(user: &str, password: &str) -> Self {
        Self::start_with(Some((user.to_owned(), password.to_owned())))
    }

    fn start_with(credentials: Option<(String, String)>) -> Self {
        let binary = require_binary("victoria-metrics", "victoria-metrics");
        let dir = TempDir::new("victoria");
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .arg(format!(
                "-storageDataPath={}",
                dir.path().join("data").display()
            ))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-search.latencyOffset=0s")
            // Tests import samples with past timestamps between queries; VictoriaMetrics' rollup
            // cache assumes history does not change and would answer from before the import.
            .arg("-search.disableCache")
            .arg("-retentionPeriod=1d")
            .arg("-loggerLevel=ERROR");
        if let Some((user, password)) = &credentials {
            command
                .arg(format!("-httpAuth.username={user}"))
                .arg(format!("-httpAuth.password={password}"));
        }
        let child = ChildGuard::spawn(
            "victoria-metrics",
            &mut command,
            &dir.path().join("victoria.log"),
        );
        wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(20));
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            credentials,
            _dir: dir,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = reqwest::Client::new().request(method, format!("{}{path}", self.url));
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// Imports samples in the text exposition format (`name{labels} value [timestamp_ms]`, one
    /// a line; without a timestamp, now), flushes them, and waits until instant queries see
    /// every one of them: a new series becomes searchable, and a fresh sample visible, only a
    /// moment after a forced flush (VictoriaMetrics indexes and merges in the background).
    pub async fn import(&self, lines: &str) {
        let mut names: Vec<&str> = lines
            .lines()
            .filter_map(|line| line.split(['{', ' ']).next())
            .filter(|name| !name.is_empty())
            .collect();
        names.sort_unstable();
        names.dedup();
        let samples = format!(
            "sum(count_over_time({{__name__=~\"{}\"}}[2h]))",
            names.join("|")
        );
        let before = self.query_scalar(&samples).await.unwrap_or(0.0);
        let expected = before + lines.lines().filter(|line| !line.trim().is_empty()).count() as f64;
        self.import_only(lines).await;
        super::eventually(
            "VictoriaMetrics to show the imported samples",
            Duration::from_secs(20),
            || async {
                let seen = self.query_scalar(&samples).await?;
                (seen >= expected).then_some(())
            },
        )
        .await;
    }

    /// The value of an instant query with one series in its result, if it has one.
    pub async fn query_scalar(&self, query: &str) -> Option<f64> {
        let path = format!(
            "/api/v1/query?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("query", query)
                .finish()
        );
        let response = self
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = response.json().await.ok()?;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Unix milliseconds `seconds_ago` seconds ago, for samples in the past.
    pub fn millis_ago(seconds_ago: u64) -> u128 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970");
        now.saturating_sub(Duration::from_secs(seconds_ago))
            .as_millis()
    }

    /// [`Victoria::import`] without waiting for the series to be searchable.
    pub async fn import_only(&self, lines: &str) {
        let response = self
            .request(reqwest::Method::POST, "/api/v1/import/prometheus")
            .body(lines.to_owned())
            .send()
            .await
            .expect("import into VictoriaMetrics");
        assert!(
            response.status().is_success(),
            "import: {}",
            response.status()
        );
        let response = self
            .request(reqwest::Method::GET, "/internal/force_flush")
            .send()
            .await
            .expect("flush VictoriaMetrics");
        assert!(
            response.status().is_success(),
            "flush: {}",
            response.status()
        );
    }

    /// Freezes the server (SIGSTOP): the kernel still accepts connections, nothing answers.
    pub fn pause(&self) {
        self.child.signal("STOP");
    }

    /// Resumes a paused server.
    pub fn resume(&self) {
        self.child.signal("CONT");
    }

    /// Stops the server (SIGTERM): its port refuses from now on.
    pub fn stop(&mut self) {
        self.child.stop_with("TERM");
    }
}

/// vmauth in front of a VictoriaMetrics, admitting one bearer token.
pub struct Vmauth {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _child: ChildGuard,
    _dir: TempDir,
}

impl Vmauth {
    /// Proxies requests carrying `Authorization: Bearer <token>` to `upstream`.
    pub fn start(upstream: &str, token: &str) -> Self {
        let binary = require_binary("vmauth", "victoria-metrics");
        let dir = TempDir::new("vmauth");
        let config = dir.path().join("auth.yml");
        std::fs::write(
            &config,
            format!("users:\n- bearer_token: \"{token}\"\n  url_prefix: \"{upstream}\"\n"),
        )
        .expect("write vmauth config");
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .arg(format!("-auth.config={}", config.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-loggerLevel=ERROR");
        let child = ChildGuard::spawn("vmauth", &mut command, &dir.path().join("vmauth.log"));
        wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(20));
        Self {
            url: format!("http://127.0.0.1:{port}"),
            _child: child,
            _dir: dir,
        }
    }
}

/// A running vmagent (same package): scrapes the targets of its promscrape config and
/// remote-writes to each of its URLs, buffering on disk what it cannot ship.
pub struct Vmagent {
    /// `http://127.0.0.1:PORT`: its own `/metrics`.
    pub url: String,
    _child: ChildGuard,
    _dir: TempDir,
}

/// One scrape job of a [`Vmagent`]: its name, and its targets (`host:port`) with the labels
/// each gets (as a vmagent target label, e.g. `vantage`).
pub struct ScrapeJob<'a> {
    pub name: &'a str,
    pub targets: Vec<(String, Vec<(&'a str, &'a str)>)>,
}

impl Vmagent {
    /// Scrapes `jobs` every second and ships to every URL of `remote_writes`, flushing every
    /// second. A job whose target is `SELF` scrapes vmagent's own `/metrics`, as deployments do
    /// (`job="vmagent"`), so its remote-write metrics reach the working URLs.
    pub fn start(jobs: &[ScrapeJob<'_>], remote_writes: &[String]) -> Self {
        let binary = require_binary("vmagent", "victoria-metrics");
        let dir = TempDir::new("vmagent");
        let port = free_port();
        let mut config = String::from("scrape_configs:\n");
        for job in jobs {
            config.push_str(&format!(
                "  - job_name: {}\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n",
                job.name
            ));
            for (target, labels) in &job.targets {
                let target = if target == "SELF" {
                    format!("127.0.0.1:{port}")
                } else {
                    target.clone()
                };
                config.push_str(&format!("      - targets: [\"{target}\"]\n"));
                if !labels.is_empty() {
                    config.push_str("        labels:\n");
                    for (name, value) in labels {
                        config.push_str(&format!("          {name}: \"{value}\"\n"));
                    }
                }
            }
        }
        let config_path = dir.path().join("scrape.yml");
        std::fs::write(&config_path, config).expect("write vmagent config");
        let mut command = Command::new(binary);
        command
            .arg(format!("-promscrape.config={}", config_path.display()))
            .arg(format!(
                "-remoteWrite.tmpDataPath={}",
                dir.path().join("queue").display()
            ))
            .arg("-remoteWrite.flushInterval=1s")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-loggerLevel=ERROR");
        for url in remote_writes {
            command.arg(format!("-remoteWrite.url={url}"));
        }
        let child = ChildGuard::spawn("vmagent", &mut command, &dir.path().join("vmagent.log"));
        wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(20));
        Self {
            url: format!("http://127.0.0.1:{port}"),
            _child: child,
            _dir: dir,
        }
    }

    /// Its own `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("vmagent /metrics")
            .text()
            .await
            .expect("vmagent /metrics body")
    }
}
