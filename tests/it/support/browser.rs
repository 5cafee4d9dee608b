//! Headless Chromium, driven over WebDriver, for tests of what a person sees on the page.
//!
//! chromedriver runs as our child on a free port and starts Chromium with a fresh profile; the
//! WebDriver client speaks plain HTTP to it (no TLS stack of its own). Chromium is started with
//! its background networking off: on a closed network its update, sync and field-trial requests
//! otherwise fail and take page loads down with them. Device emulation (a phone's viewport, dark
//! mode) goes through chromedriver's Chrome DevTools Protocol passthrough.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use super::{ChildGuard, TempDir, free_port, require_binary, wait_for_tcp};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session; the browser and its driver stop when this is dropped.
pub struct Browser {
    pub client: Client,
    _driver: ChildGuard,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width` x `height` window.
    pub async fn start(width: u32, height: u32) -> Self {
        let chromium = require_binary(CHROMIUM, "chromium");
        let chromedriver = require_binary(CHROMEDRIVER, "chromium-driver");
        let profile = TempDir::new("chromium");
        let port = free_port();
        let driver = ChildGuard::spawn(
            "chromedriver",
            Command::new(chromedriver).arg(format!("--port={port}")),
            &profile.path().join("chromedriver.log"),
        );
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        tokio::task::spawn_blocking(move || wait_for_tcp(addr, Duration::from_secs(20)))
            .await
            .expect("wait for chromedriver");
        let user_data_dir = profile.path().join("profile");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", user_data_dir.display()),
                    format!("--window-size={width},{height}"),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("capabilities are an object")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{addr}"))
            .await
            .unwrap_or_else(|error| {
                let log = std::fs::read_to_string(profile.path().join("chromedriver.log"))
                    .unwrap_or_default();
                panic!("start a Chromium session: {error}\nchromedriver log:\n{log}")
            });
        Self {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Sends a Chrome DevTools Protocol command to the page.
    pub async fn cdp(&self, cmd: &'static str, params: Value) -> Value {
        self.client
            .issue_cmd(Cdp { cmd, params })
            .await
            .unwrap_or_else(|error| panic!("CDP {cmd}: {error}"))
    }

    /// Emulates a device viewport of `width` x `height` CSS pixels (`mobile`: a phone's).
    pub async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    /// Emulates the user's colour scheme preference (`light` or `dark`).
    pub async fn color_scheme(&self, scheme: &str) {
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
    }

    /// Runs `script` in the page and returns its result.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|error| panic!("execute {script}: {error}"))
    }

    /// Saves the whole page (not just the viewport) as a PNG at `path`, at `width` CSS pixels.
    pub async fn screenshot_page(&self, path: &Path, width: u32, mobile: bool) {
        let height = self
            .eval("return document.documentElement.scrollHeight;")
            .await
            .as_u64()
            .expect("page height") as u32;
        self.viewport(width, height, mobile).await;
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("create directory");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Ends the session (closing Chromium) before the driver is killed.
    pub async fn close(self) {
        let Self {
            client,
            _driver,
            _profile,
        } = self;
        let _ = client.close().await;
    }
}

/// chromedriver's passthrough to the Chrome DevTools Protocol.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params});
        (http::Method::POST, Some(body.to_string()))
    }
}
