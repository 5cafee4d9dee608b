//! Configuration reload against the real binary, with probes running every second: SIGHUP,
//! `POST /-/reload` and the file watch (a ConfigMap-style `..data` symlink swap); what is kept,
//! restarted and removed; a broken configuration that keeps the old one; a firing alert that
//! survives an unrelated reload; a removed rule whose alert resolves with a note.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::alerting::Receiver;
use crate::support::daemon::sample;
use crate::support::{ChildGuard, TempDir, eventually, free_port, init, wait_for_tcp};

const WAIT: Duration = Duration::from_secs(20);
const TOKEN: &str = "reload-token-0123456789abcdef";

/// A probe of `url` every second.
fn probe(name: &str, url: &str) -> String {
    format!(
        "[[probe]]\nname = \"{name}\"\nkind = \"http\"\nurl = \"{url}\"\ninterval = \"1s\"\ntimeout = \"1s\"\n\n"
    )
}

/// A rule named `id` that holds when probe `on` fails.
fn rule(id: &str, on: &str) -> String {
    format!(
        "id = \"{id}\"\ntitle = \"{id} is down\"\nseverity = \"critical\"\nwhen = '!probes[\"{on}\"].ok'\n\
         symptom = \"It fails.\"\nrecovery = \"Look at it.\"\nrunbook = \"runbook#{id}\"\n"
    )
}

struct Daemon {
    child: ChildGuard,
    dir: TempDir,
    port: u16,
    client: reqwest::Client,
}

impl Daemon {
    /// Writes `probes` (after a `[server]` section on a free port plus `head`) and `rules`, then
    /// starts `honeyguide run` in the directory.
    fn start(name: &str, head: &str, probes: &str, rules: &[(&str, String)]) -> Self {
        init();
        let dir = TempDir::new(name);
        let port = free_port();
        std::fs::create_dir_all(dir.path().join("alerts")).unwrap();
        write_config(dir.path(), port, head, probes);
        write_rules(dir.path(), rules);
        let mut command = Command::new(env!("CARGO_BIN_EXE_honeyguide"));
        command
            .args(["run", "--config", "probes.toml", "--alerts", "alerts"])
            .current_dir(dir.path())
            .env("HONEYGUIDE_LOG", "info");
        let child = ChildGuard::spawn("honeyguide", &mut command, &dir.path().join("daemon.log"));
        wait_for_tcp(([127, 0, 0, 1], port).into(), WAIT);
        Self {
            child,
            dir,
            port,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    fn write_config(&self, head: &str, probes: &str) {
        write_config(self.dir.path(), self.port, head, probes);
    }

    fn write_rules(&self, rules: &[(&str, String)]) {
        write_rules(self.dir.path(), rules);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn status(&self) -> Value {
        self.client
            .get(self.url("/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Runs of `probe` so far (ok and failed), from `/metrics`; `None` once it is gone.
    async fn runs(&self, probe: &str) -> Option<f64> {
        let metrics = self.metrics().await;
        let ok = sample(
            &metrics,
            &format!("honeyguide_probe_runs_total{{probe=\"{probe}\",result=\"ok\"}}"),
        )?;
        let failed = sample(
            &metrics,
            &format!("honeyguide_probe_runs_total{{probe=\"{probe}\",result=\"failed\"}}"),
        )?;
        Some(ok + failed)
    }

    /// Waits until the daemon reports `reloads` successful reloads.
    async fn reloaded(&self, reloads: u64) -> Value {
        eventually(&format!("{reloads} reload(s)"), WAIT, || async {
            let status = self.status().await;
            (status["reload"]["reloads"].as_u64() >= Some(reloads)).then_some(status)
        })
        .await
    }

    async fn post_reload(&self, token: Option<&str>) -> reqwest::Response {
        let request = self.client.post(self.url("/-/reload"));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.send().await.unwrap()
    }
}

fn write_config(dir: &Path, port: u16, head: &str, probes: &str) {
    std::fs::write(
        dir.join("probes.toml"),
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{head}\n{probes}"),
    )
    .unwrap();
}

/// Replaces the rules directory's files with `rules`.
fn write_rules(dir: &Path, rules: &[(&str, String)]) {
    let alerts = dir.join("alerts");
    for entry in std::fs::read_dir(&alerts).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for (id, text) in rules {
        std::fs::write(alerts.join(format!("{id}.toml")), text).unwrap();
    }
}

fn names(status: &Value, list: &str, key: &str) -> Vec<String> {
    status[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[key].as_str().unwrap().to_owned())
        .collect()
}

/// SIGHUP with probes at 1 s: an unchanged probe keeps its loop (its run count goes on at one a
/// second, neither reset nor doubled) and its history, a changed one restarts, a removed one
/// disappears from `/metrics` and `/status`, a new one starts; rules are added and removed.
#[tokio::test]
async fn sighup_keeps_unchanged_probes_and_swaps_the_rest() {
    let target = Receiver::start().await;
    let (kept, changed, removed) = (
        target.url("/kept"),
        target.url("/changed"),
        target.url("/removed"),
    );
    let probes = format!(
        "{}{}{}",
        probe("kept", &kept),
        probe("changed", &changed),
        probe("removed", &removed)
    );
    let daemon = Daemon::start(
        "reload-sighup",
        "",
        &probes,
        &[
            ("kept-down", rule("kept-down", "kept")),
            ("removed-down", rule("removed-down", "removed")),
        ],
    );
    eventually("three runs of every probe", WAIT, || async {
        let mut all = true;
        for name in ["kept", "changed", "removed"] {
            all &= daemon.runs(name).await >= Some(3.0);
        }
        all.then_some(())
    })
    .await;

    let before = daemon.runs("kept").await.unwrap();
    let history_before = daemon.status().await["probes"][0]["history"]
        .as_array()
        .unwrap()
        .len();
    let started = std::time::Instant::now();
    daemon.write_config(
        "",
        &format!(
            "{}{}{}",
            probe("kept", &kept),
            probe("changed", &target.url("/changed-elsewhere")),
            probe("added", &target.url("/added"))
        ),
    );
    daemon.write_rules(&[
        ("kept-down", rule("kept-down", "kept")),
        ("added-down", rule("added-down", "added")),
    ]);
    daemon.child.signal("HUP");
    let status = daemon.reloaded(1).await;
    assert_eq!(status["reload"]["successful"], true, "{}", daemon.log());
    assert_eq!(
        names(&status, "probes", "name"),
        ["kept", "changed", "added"]
    );
    assert_eq!(names(&status, "rules", "id"), ["added-down", "kept-down"]);
    assert!(
        status["probes"][0]["history"].as_array().unwrap().len() >= history_before,
        "the unchanged probe lost its history"
    );
    assert_eq!(
        status["probes"][1]["target"],
        target.url("/changed-elsewhere")
    );

    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = daemon.runs("kept").await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        (after - before - seconds).abs() <= 1.5,
        "the kept probe ran {} times in {seconds:.1}s across the reload (one a second expected)",
        after - before
    );
    let metrics = daemon.metrics().await;
    assert!(
        !metrics.contains("probe=\"removed\""),
        "the removed probe is still exported"
    );
    assert!(daemon.runs("added").await >= Some(2.0));
    let seen: Vec<String> = target
        .received()
        .iter()
        .map(|request| request.path.clone())
        .collect();
    assert!(seen.iter().any(|path| path == "/changed-elsewhere"));
    assert_eq!(
        sample(&metrics, "honeyguide_config_last_reload_successful"),
        Some(1.0)
    );
}

/// A broken configuration keeps the running one (its probes keep running), is reported in
/// `/status` with the file and line, on the page and in `/metrics`; fixed, the next reload
/// applies. `POST /-/reload` answers 500 with the problems, then 200.
#[tokio::test]
async fn a_broken_configuration_keeps_the_running_one_and_says_why() {
    let target = Receiver::start().await;
    let good = probe("api", &target.url("/api"));
    let daemon = Daemon::start("reload-broken", "", &good, &[]);
    eventually("a run", WAIT, || async {
        (daemon.runs("api").await >= Some(1.0)).then_some(())
    })
    .await;

    daemon.write_config("", &format!("{good}[[probe]]\nname = \"new\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\ninterval = \"1ns\"\n"));
    let response = daemon.post_reload(None).await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("probes.toml:") && error.contains("probe[new].interval"),
        "{error}"
    );

    let status = daemon.status().await;
    assert_eq!(status["reload"]["successful"], false);
    assert!(
        status["reload"]["error"]
            .as_str()
            .unwrap()
            .contains("probe[new].interval")
    );
    assert_eq!(
        names(&status, "probes", "name"),
        ["api"],
        "the old configuration stays"
    );
    let metrics = daemon.metrics().await;
    assert_eq!(
        sample(&metrics, "honeyguide_config_last_reload_successful"),
        Some(0.0)
    );
    let page = daemon
        .client
        .get(daemon.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("The new configuration was not loaded"),
        "the page does not say it"
    );
    let runs = daemon.runs("api").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        daemon.runs("api").await.unwrap() >= runs + 2.0,
        "the running probes stopped"
    );

    daemon.write_config("", &good);
    let response = daemon.post_reload(None).await;
    assert_eq!(response.status(), 200);
    let status = daemon.status().await;
    assert_eq!(status["reload"]["successful"], true);
    assert_eq!(status["reload"]["error"], Value::Null);
}

/// With an `[api] token`, `/-/reload` needs it (401 without); a changed listen address is
/// named as needing a restart while the rest applies.
#[tokio::test]
async fn the_reload_endpoint_needs_the_token_and_names_what_needs_a_restart() {
    let target = Receiver::start().await;
    let head = format!("\n[api]\ntoken = \"{TOKEN}\"\n");
    let daemon = Daemon::start(
        "reload-token",
        &head,
        &probe("api", &target.url("/api")),
        &[],
    );
    assert_eq!(daemon.post_reload(None).await.status(), 401);
    assert_eq!(
        daemon
            .post_reload(Some("wrong-token-0123456789abcdef"))
            .await
            .status(),
        401
    );

    // Another listen address and a new probe: the probe applies, the address waits.
    let elsewhere = free_port();
    std::fs::write(
        daemon.dir.path().join("probes.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{elsewhere}\"\n{head}\n{}{}",
            probe("api", &target.url("/api")),
            probe("second", &target.url("/second"))
        ),
    )
    .unwrap();
    let response = daemon.post_reload(Some(TOKEN)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let waiting = body["not_applied"][0].as_str().unwrap();
    assert!(waiting.contains("[server] listen"), "{body}");
    let status = daemon.status().await;
    assert_eq!(names(&status, "probes", "name"), ["api", "second"]);
    assert!(
        status["reload"]["not_applied"][0]
            .as_str()
            .unwrap()
            .contains("listen")
    );
}

/// A firing alert survives a reload of an unrelated change without a repeat notification;
/// when a reload removes its rule, it resolves, and the resolve says why.
#[tokio::test]
async fn a_firing_alert_survives_an_unrelated_reload_and_resolves_when_its_rule_goes() {
    let hook = Receiver::start().await;
    let target = Receiver::start().await;
    let closed = free_port();
    let head = format!(
        "\n[alerting]\ngroup_wait = \"200ms\"\ngroup_interval = \"0s\"\n\n\
         [[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url("/hook")
    );
    let down = probe("down", &format!("http://127.0.0.1:{closed}/"));
    let daemon = Daemon::start(
        "reload-firing",
        &head,
        &down,
        &[("down-down", rule("down-down", "down"))],
    );
    let first = hook.wait_for(1, WAIT).await;
    assert_eq!(first[0].json()["status"], "firing");

    daemon.write_config(
        &head,
        &format!("{down}{}", probe("unrelated", &target.url("/u"))),
    );
    daemon.child.signal("HUP");
    daemon.reloaded(1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        hook.received().len(),
        1,
        "the reload repeated the notification\n{}",
        daemon.log()
    );
    let status = daemon.status().await;
    assert_eq!(status["alerts"][0]["state"], "firing");

    daemon.write_rules(&[]);
    daemon.child.signal("HUP");
    let resolved = hook.wait_for(2, WAIT).await;
    let message = resolved[1].json();
    assert_eq!(message["status"], "resolved", "{message}");
    let note = message["alerts"][0]["annotations"]["note"]
        .as_str()
        .unwrap_or_default();
    assert!(note.contains("rule was removed"), "{message}");
}

/// `[server] watch_config` follows a ConfigMap's update: `probes.toml` and the rules are
/// symlinks into `..data`, which is swapped for a new directory in one rename.
#[tokio::test]
async fn the_file_watch_follows_a_configmap_symlink_swap() {
    let target = Receiver::start().await;
    init();
    let dir = TempDir::new("reload-watch");
    let port = free_port();
    let conf = dir.path().join("conf");
    let rules = dir.path().join("rules");
    let config_text = |probes: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nwatch_config = true\n\n[store]\npath = \"../honeyguide.db\"\n\n{probes}"
        )
    };
    configmap(
        &conf,
        "..2026_12_03_a",
        &[(
            "probes.toml",
            config_text(&probe("api", &target.url("/api"))),
        )],
    );
    configmap(
        &rules,
        "..2026_12_03_a",
        &[("api-down.toml", rule("api-down", "api"))],
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_honeyguide"));
    command
        .args(["run", "--config", "conf/probes.toml", "--alerts", "rules"])
        .current_dir(dir.path())
        .env("HONEYGUIDE_LOG", "info");
    let _child = ChildGuard::spawn("honeyguide", &mut command, &dir.path().join("daemon.log"));
    wait_for_tcp(([127, 0, 0, 1], port).into(), WAIT);
    // `/status` answers once the daemon (and its watch) runs.
    eventually("the daemon to answer", WAIT, || async {
        reqwest::get(format!("http://127.0.0.1:{port}/status"))
            .await
            .ok()?
            .status()
            .is_success()
            .then_some(())
    })
    .await;

    let new_probes = format!(
        "{}{}",
        probe("api", &target.url("/api")),
        probe("second", &target.url("/second"))
    );
    swap(
        &conf,
        "..2026_12_03_b",
        &[("probes.toml", config_text(&new_probes))],
    );
    swap(
        &rules,
        "..2026_12_03_b",
        &[
            ("api-down.toml", rule("api-down", "api")),
            ("second-down.toml", rule("second-down", "second")),
        ],
    );
    let log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    let status = eventually("the swapped configuration in force", WAIT, || async {
        let status: Value = reqwest::get(format!("http://127.0.0.1:{port}/status"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (names(&status, "probes", "name") == ["api", "second"]
            && names(&status, "rules", "id").len() == 2)
            .then_some(status)
    })
    .await;
    assert_eq!(status["reload"]["successful"], true, "{}", log());
    // The two swaps are one burst or two; either way the result is the same, and the store's
    // own writes beside the config never triggered a reload of their own.
    let reloads = status["reload"]["reloads"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later: Value = reqwest::get(format!("http://127.0.0.1:{port}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        later["reload"]["reloads"].as_u64().unwrap(),
        reloads,
        "reloads without a change\n{}",
        log()
    );
}

/// A ConfigMap volume as the kubelet writes it: files in a timestamped directory, `..data`
/// pointing at it, and each file a symlink through `..data`.
fn configmap(dir: &Path, version: &str, files: &[(&str, String)]) {
    std::fs::create_dir_all(dir.join(version)).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(version).join(name), text).unwrap();
    }
    std::os::unix::fs::symlink(version, dir.join("..data")).unwrap();
    for (name, _) in files {
        std::os::unix::fs::symlink(PathBuf::from("..data").join(name), dir.join(name)).unwrap();
    }
}

/// The kubelet's update: a new timestamped directory, `..data` swapped to it in one rename,
/// links for new files.
fn swap(dir: &Path, version: &str, files: &[(&str, String)]) {
    std::fs::create_dir_all(dir.join(version)).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(version).join(name), text).unwrap();
    }
    std::os::unix::fs::symlink(version, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(PathBuf::from("..data").join(name), link).unwrap();
        }
    }
}

/// A reload keeps API silences (and takes new maintenance windows), and a changed notifier
/// applies to the next delivery: the alert that fires after it goes to the new URL.
#[tokio::test]
async fn silences_are_kept_and_a_changed_notifier_takes_the_next_delivery() {
    let (old_hook, new_hook) = (Receiver::start().await, Receiver::start().await);
    let switch = Receiver::start().await;
    let notifier = |hook: &Receiver| {
        format!(
            "\n[api]\ntoken = \"{TOKEN}\"\n\n[alerting]\ngroup_wait = \"200ms\"\ngroup_interval = \"0s\"\n\n\
             [[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url("/hook")
        )
    };
    let api = probe("api", &switch.url("/api"));
    let daemon = Daemon::start(
        "reload-notifier",
        &notifier(&old_hook),
        &api,
        &[("api-down", rule("api-down", "api"))],
    );
    let created = daemon
        .client
        .post(daemon.url("/api/silences"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "alerts": ["other-*"], "duration": "2h", "comment": "drain", "created_by": "ana"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let window = "\n[[maintenance]]\nname = \"b2-weekly\"\nalerts = [\"b2-*\"]\nstart = \"2026-01-01T00:00:00Z\"\nend = \"2026-01-01T01:00:00Z\"\ncomment = \"B2 maintenance\"\n";
    daemon.write_config(&format!("{}{window}", notifier(&new_hook)), &api);
    assert_eq!(
        daemon.post_reload(Some(TOKEN)).await.status(),
        200,
        "{}",
        daemon.log()
    );
    let status = daemon.status().await;
    let mut silences = names(&status, "silences", "source");
    silences.sort();
    assert_eq!(silences, ["api", "maintenance"], "{}", status["silences"]);

    let mut switch = switch;
    switch.stop();
    let received = new_hook.wait_for(1, WAIT).await;
    assert_eq!(received[0].json()["status"], "firing");
    assert!(
        old_hook.received().is_empty(),
        "the old URL was notified after the reload"
    );
}
