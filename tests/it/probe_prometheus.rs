//! The `prometheus` probe against a real VictoriaMetrics (and vmauth in front of it for bearer
//! tokens): results of 0, 1 and many series with their aggregates and the series gauge, bad
//! PromQL as `query` with VictoriaMetrics' own words, Basic and bearer auth accepted and
//! refused, a stopped server as `connect`, a frozen one as `timeout`; plus config errors.

use honeyguide::probe::{ErrorClass, Value};

use crate::support::probes::{assert_line, errors, load_with_env, metrics, run_loaded, run_one};
use crate::support::victoria::{Victoria, Vmauth};
use crate::support::{TempDir, init};

fn probe_toml(url: &str, query: &str, extra: &str) -> String {
    format!(
        "[[probe]]\nname = \"obs\"\nkind = \"prometheus\"\ntimeout = \"5s\"\n\
         url = \"{url}\"\nquery = '''{query}'''\n{extra}"
    )
}

fn series(result: &honeyguide::probe::ProbeResult) -> &[Value] {
    match &result.observations["series"] {
        Value::List(items) => items,
        other => panic!("series is {other:?}"),
    }
}

fn labels_of(item: &Value) -> Vec<(String, String)> {
    item.as_map().unwrap()["labels"]
        .as_map()
        .unwrap()
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_owned()))
        .collect()
}

/// No matching series is data: the run passes with `count` 0 and null aggregates, and the
/// series gauge says 0.
#[tokio::test]
async fn an_empty_result_is_a_count_of_zero() {
    init();
    let vm = Victoria::start();
    vm.import("node_filesystem_avail_bytes{mountpoint=\"/\"} 1000\n")
        .await;
    let dir = TempDir::new("prom");
    let toml = probe_toml(&vm.url, "node_filesystem_avail_bytes < 10", "");
    let config = load_with_env(dir.path(), &toml, &[]);
    let result = run_loaded(&config, 0, std::time::Duration::from_secs(5)).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(result.message, "query: 0 series (empty result)");
    assert_eq!(result.observations["count"], Value::Int(0));
    for key in ["value", "min", "max", "sum"] {
        assert_eq!(result.observations[key], Value::Null, "{key}");
    }
    assert_eq!(result.observations["series"], Value::List(Vec::new()));
    assert_eq!(result.observations["result_type"], Value::from("vector"));
    assert_eq!(result.observations["status"], Value::Int(200));
    let text = metrics(&config, &result);
    assert_line(&text, "honeyguide_prometheus_series{probe=\"obs\"} 0");
    assert_line(&text, "probe_http_status_code{probe=\"obs\"} 200");
}

/// Exactly one series: its value is `value`, and its labels are listed.
#[tokio::test]
async fn one_series_gives_its_value_and_labels() {
    init();
    let vm = Victoria::start();
    vm.import(
        "vmagent_remotewrite_pending_data_bytes{job=\"vmagent\",url=\"1:secret-url\"} 52428800\n",
    )
    .await;
    let dir = TempDir::new("prom");
    let toml = probe_toml(
        &vm.url,
        "sum by (job) (vmagent_remotewrite_pending_data_bytes)",
        "",
    );
    let config = load_with_env(dir.path(), &toml, &[]);
    let result = run_loaded(&config, 0, std::time::Duration::from_secs(5)).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(
        result.message,
        "query: 1 series: {job=\"vmagent\"} 52428800"
    );
    assert_eq!(result.observations["count"], Value::Int(1));
    assert_eq!(result.observations["value"], Value::Float(52_428_800.0));
    assert_eq!(result.observations["sum"], Value::Float(52_428_800.0));
    let items = series(&result);
    assert_eq!(items.len(), 1);
    assert_eq!(
        labels_of(&items[0]),
        [("job".to_owned(), "vmagent".to_owned())]
    );
    assert_eq!(
        items[0].as_map().unwrap()["value"],
        Value::Float(52_428_800.0)
    );
    assert_eq!(result.observations["series_truncated"], Value::Bool(false));
    // The phases a run goes through (no `resolve`: the URL has an IP address).
    let phases: Vec<&str> = result.phases.iter().map(|(name, _)| *name).collect();
    assert_eq!(phases, ["query", "read"]);
}

/// Many series: `value` is null, `min`, `max` and `sum` cover them all, `series` is sorted by
/// labels and capped at 100 while `count` says how many there were.
#[tokio::test]
async fn many_series_are_aggregated_and_capped() {
    init();
    let vm = Victoria::start();
    let lines: String = (0..120)
        .map(|node| format!("node_disk_ratio{{node=\"n{node:03}\"}} {}\n", node + 1))
        .collect();
    vm.import(&lines).await;
    let dir = TempDir::new("prom");
    let toml = probe_toml(&vm.url, "node_disk_ratio", "");
    let config = load_with_env(dir.path(), &toml, &[]);
    let result = run_loaded(&config, 0, std::time::Duration::from_secs(5)).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(
        result.message,
        "query: 120 series, 1 to 120: {__name__=\"node_disk_ratio\",node=\"n000\"} 1, \
         {__name__=\"node_disk_ratio\",node=\"n001\"} 2, \
         {__name__=\"node_disk_ratio\",node=\"n002\"} 3, and 117 more"
    );
    assert_eq!(result.observations["count"], Value::Int(120));
    assert_eq!(result.observations["value"], Value::Null);
    assert_eq!(result.observations["min"], Value::Float(1.0));
    assert_eq!(result.observations["max"], Value::Float(120.0));
    assert_eq!(result.observations["sum"], Value::Float(7260.0));
    assert_eq!(result.observations["series_truncated"], Value::Bool(true));
    let items = series(&result);
    assert_eq!(items.len(), 100);
    assert_eq!(
        labels_of(&items[0]),
        [
            ("__name__".to_owned(), "node_disk_ratio".to_owned()),
            ("node".to_owned(), "n000".to_owned())
        ]
    );
    assert_eq!(labels_of(&items[99])[1].1, "n099");
    let text = metrics(&config, &result);
    assert_line(&text, "honeyguide_prometheus_series{probe=\"obs\"} 120");

    // An aggregate is one series without labels (VictoriaMetrics answers even `scalar(...)`
    // with a vector; Prometheus' `scalar` result type is covered by the unit tests).
    let toml = probe_toml(&vm.url, "scalar(count(node_disk_ratio))", "");
    let result = run_one(dir.path(), &toml).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(result.observations["value"], Value::Float(120.0));
    assert_eq!(labels_of(&series(&result)[0]), []);
}

/// Bad PromQL is `query`, with VictoriaMetrics' own error type and message.
#[tokio::test]
async fn bad_promql_is_a_query_error_in_the_apis_words() {
    init();
    let vm = Victoria::start();
    let dir = TempDir::new("prom");
    let result = run_one(dir.path(), &probe_toml(&vm.url, "sum(up", "")).await;
    assert_eq!(result.error, Some(ErrorClass::Query), "{result:?}");
    assert!(
        result.message.starts_with(
            "query: 422 Unprocessable Entity: 422: error when executing query=\"sum(up\""
        ),
        "{}",
        result.message
    );
    assert!(
        result.message.contains("unexpected token"),
        "{}",
        result.message
    );
    assert_eq!(result.observations["error_type"], Value::from("422"));
    assert_eq!(result.observations["status"], Value::Int(422));
    assert_eq!(result.observations["count"], Value::Null);

    // A range vector is no answer to an instant query either.
    let result = run_one(dir.path(), &probe_toml(&vm.url, "up[5m]", "")).await;
    assert_eq!(result.error, Some(ErrorClass::Query), "{result:?}");
    assert!(
        result.message.contains("range vector"),
        "{}",
        result.message
    );
}

/// A stopped VictoriaMetrics refuses: `connect`, nothing observed of the query.
#[tokio::test]
async fn a_stopped_server_is_a_connect_failure() {
    init();
    let mut vm = Victoria::start();
    let url = vm.url.clone();
    vm.stop();
    let dir = TempDir::new("prom");
    let result = run_one(dir.path(), &probe_toml(&url, "up", "")).await;
    assert_eq!(result.error, Some(ErrorClass::Connect), "{result:?}");
    assert_eq!(result.message, "query: cannot connect: connection refused");
    assert_eq!(result.observations["count"], Value::Null);
    assert_eq!(result.observations["status"], Value::Null);
}

/// A frozen VictoriaMetrics (SIGSTOP) accepts the connection and never answers: `timeout`
/// during the query.
#[tokio::test]
async fn a_frozen_server_times_out_during_the_query() {
    init();
    let vm = Victoria::start();
    vm.pause();
    let dir = TempDir::new("prom");
    let toml = probe_toml(&vm.url, "up", "").replace("timeout = \"5s\"", "timeout = \"1s\"");
    let result = run_one(dir.path(), &toml).await;
    vm.resume();
    assert_eq!(result.error, Some(ErrorClass::Timeout), "{result:?}");
    assert_eq!(result.message, "timed out after 1s during query");
    assert_eq!(result.observations["timeout_phase"], Value::from("query"));
}

/// Basic auth against VictoriaMetrics' `-httpAuth.*`: the right password passes, a wrong one or
/// none is `auth`; the password is nowhere in the result.
#[tokio::test]
async fn basic_auth_is_sent_and_a_refusal_is_an_auth_failure() {
    init();
    let vm = Victoria::start_with_basic_auth("honeyguide", "vm-basic-password");
    vm.import("up{job=\"vm\"} 1\n").await;
    let dir = TempDir::new("prom");
    let auth = "username = \"honeyguide\"\npassword = \"${VM_PASSWORD}\"\n";
    let toml = probe_toml(&vm.url, "up", auth);
    let config = load_with_env(dir.path(), &toml, &[("VM_PASSWORD", "vm-basic-password")]);
    let result = run_loaded(&config, 0, std::time::Duration::from_secs(5)).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(result.observations["value"], Value::Float(1.0));

    let config = load_with_env(dir.path(), &toml, &[("VM_PASSWORD", "not-the-password")]);
    let result = run_loaded(&config, 0, std::time::Duration::from_secs(5)).await;
    assert_eq!(result.error, Some(ErrorClass::Auth), "{result:?}");
    assert_eq!(
        result.message,
        "query: 401 Unauthorized: the user name and password were refused"
    );
    assert!(!format!("{result:?}").contains("not-the-password"));

    let result = run_one(dir.path(), &probe_toml(&vm.url, "up", "")).await;
    assert_eq!(result.error, Some(ErrorClass::Auth), "{result:?}");
    assert_eq!(
        result.message,
        "query: 401 Unauthorized: no credentials are configured"
    );
}

/// A bearer token (from a `*_file`) through vmauth: the right one reaches VictoriaMetrics, a
/// wrong one (vmauth answers 400, repeating the token) and none (401) are `auth`, and the token
/// appears nowhere in the result.
#[tokio::test]
async fn bearer_tokens_through_vmauth() {
    init();
    let vm = Victoria::start();
    vm.import("up{job=\"vm\"} 1\n").await;
    let proxy = Vmauth::start(&vm.url, "obs-read-token-4f2a");
    let dir = TempDir::new("prom");
    std::fs::write(dir.path().join("token"), "obs-read-token-4f2a\n").unwrap();
    let toml = probe_toml(&proxy.url, "up", "bearer_token_file = \"token\"\n");
    let result = run_one(dir.path(), &toml).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(result.observations["count"], Value::Int(1));

    std::fs::write(dir.path().join("token"), "wrong-token-9c1d\n").unwrap();
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Auth), "{result:?}");
    assert_eq!(
        result.message,
        "query: 400 Bad Request: the bearer token was refused"
    );
    assert!(!format!("{result:?}").contains("wrong-token"));

    let result = run_one(dir.path(), &probe_toml(&proxy.url, "up", "")).await;
    assert_eq!(result.error, Some(ErrorClass::Auth), "{result:?}");
    assert_eq!(
        result.message,
        "query: 401 Unauthorized: no credentials are configured"
    );
}

/// Bad keys are load errors located at the key.
#[test]
fn bad_values_are_located_config_errors() {
    let dir = TempDir::new("prom");
    let path = dir.path().join("probes.toml");
    let path = path.display();
    let text = "[[probe]]\nname = \"obs\"\nkind = \"prometheus\"\nurl = \"ftp://obs\"\n\
                query = \"\"\nbearer_token = \"t\"\nusername = \"u\"\npassword = \"p\"\n";
    assert_eq!(
        errors(dir.path(), text),
        format!(
            "{path}:4:7: probe[obs].url: must be an http:// or https:// URL, not `ftp://`\n\
             {path}:5:9: probe[obs].query: must not be empty\n\
             {path}:6:16: probe[obs].bearer_token: set either a bearer token or a user name \
             and password, not both"
        )
    );
}

// === the shipped queries, against samples imported into a real VictoriaMetrics ===

/// The `query` of a probe of the shipped `probes.toml`, its `${VAR:-default}`s at their
/// defaults: read as text, so that the shipped file itself is never run (its `url` is the
/// production obs box); the query runs against the loopback VictoriaMetrics instead.
pub(crate) fn shipped_query(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("probes.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let document: toml::Table = text.parse().unwrap();
    let probe = document["probe"]
        .as_array()
        .unwrap()
        .iter()
        .find(|probe| probe["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no shipped probe {name}"));
    let mut query = probe["query"].as_str().unwrap().to_owned();
    while let Some(start) = query.find("${") {
        let end = start + query[start..].find('}').unwrap();
        let default = query[start..end].split_once(":-").unwrap().1.to_owned();
        query.replace_range(start..=end, &default);
    }
    query
}

async fn run_shipped(vm: &Victoria, name: &str) -> honeyguide::probe::ProbeResult {
    let dir = TempDir::new("prom");
    let result = run_one(dir.path(), &probe_toml(&vm.url, &shipped_query(name), "")).await;
    assert!(result.ok, "{name}: {result:?}");
    result
}

fn label(item: &Value, name: &str) -> String {
    labels_of(item)
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
        .unwrap_or_default()
}

/// `obs-vmagent` says which way vmagent fails to ship: nothing of it arrives (`silent`), its
/// queue keeps growing (`pending_growing`), or the remote end refuses (`non_2xx`, by status);
/// a vmagent shipping fine, with a small steady queue and 2xx answers, matches nothing.
#[tokio::test]
async fn the_shipped_vmagent_query_names_the_reason() {
    init();
    let vm = Victoria::start();
    // Nothing of vmagent at all: silent.
    let result = run_shipped(&vm, "obs-vmagent").await;
    assert_eq!(
        result.observations["count"],
        Value::Int(1),
        "{}",
        result.message
    );
    assert_eq!(label(&series(&result)[0], "reason"), "silent");

    // Healthy: a small steady queue, only 2xx answers.
    let (old, mid) = (Victoria::millis_ago(480), Victoria::millis_ago(240));
    vm.import(&format!(
        "vmagent_remotewrite_pending_data_bytes{{job=\"vmagent\",instance=\"a\"}} 1000 {old}\n\
         vmagent_remotewrite_pending_data_bytes{{job=\"vmagent\",instance=\"a\"}} 1000 {mid}\n\
         vmagent_remotewrite_pending_data_bytes{{job=\"vmagent\",instance=\"a\"}} 1000\n\
         vmagent_remotewrite_requests_total{{job=\"vmagent\",instance=\"a\",status_code=\"204\"}} 5 {old}\n\
         vmagent_remotewrite_requests_total{{job=\"vmagent\",instance=\"a\",status_code=\"204\"}} 90\n"
    ))
    .await;
    let result = run_shipped(&vm, "obs-vmagent").await;
    assert_eq!(
        result.observations["count"],
        Value::Int(0),
        "{}",
        result.message
    );

    // Another vmagent with a growing queue and 401s.
    vm.import(&format!(
        "vmagent_remotewrite_pending_data_bytes{{job=\"vmagent\",instance=\"b\"}} 60000000 {old}\n\
         vmagent_remotewrite_pending_data_bytes{{job=\"vmagent\",instance=\"b\"}} 70000000 {mid}\n\
         vmagent_remotewrite_pending_data_bytes{{job=\"vmagent\",instance=\"b\"}} 80000000\n\
         vmagent_remotewrite_requests_total{{job=\"vmagent\",instance=\"b\",status_code=\"401\"}} 0 {old}\n\
         vmagent_remotewrite_requests_total{{job=\"vmagent\",instance=\"b\",status_code=\"401\"}} 12\n"
    ))
    .await;
    let result = run_shipped(&vm, "obs-vmagent").await;
    let reasons: Vec<(String, String, String)> = series(&result)
        .iter()
        .map(|item| {
            (
                label(item, "instance"),
                label(item, "reason"),
                label(item, "status_code"),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("b".to_owned(), "non_2xx".to_owned(), "401".to_owned()),
            ("b".to_owned(), "pending_growing".to_owned(), String::new()),
        ],
        "{}",
        result.message
    );
    assert!(
        result.message.contains("reason=\"non_2xx\""),
        "{}",
        result.message
    );
}

/// `obs-node-disk` lists each node and mountpoint under 10 % free or trending to full within 4
/// hours; a roomy disk and a full tmpfs are not listed.
#[tokio::test]
async fn the_shipped_disk_query_finds_filling_mountpoints() {
    init();
    let vm = Victoria::start();
    let (hour, half) = (Victoria::millis_ago(3000), Victoria::millis_ago(1500));
    let fs = |node: &str, mountpoint: &str, fstype: &str| {
        format!(
            "{{instance=\"{node}:9100\",mountpoint=\"{mountpoint}\",fstype=\"{fstype}\",device=\"d\"}}"
        )
    };
    let full = fs("node-1", "/", "ext4");
    let roomy = fs("node-1", "/data", "ext4");
    let shrinking = fs("node-2", "/var/lib/rancher", "ext4");
    let tmpfs = fs("node-2", "/run", "tmpfs");
    vm.import(&format!(
        "node_filesystem_size_bytes{full} 100000000000\nnode_filesystem_avail_bytes{full} 5000000000\n\
         node_filesystem_size_bytes{roomy} 100000000000\nnode_filesystem_avail_bytes{roomy} 60000000000\n\
         node_filesystem_size_bytes{tmpfs} 1000000\nnode_filesystem_avail_bytes{tmpfs} 1000\n\
         node_filesystem_size_bytes{shrinking} 100000000000\n\
         node_filesystem_avail_bytes{shrinking} 40000000000 {hour}\n\
         node_filesystem_avail_bytes{shrinking} 30000000000 {half}\n\
         node_filesystem_avail_bytes{shrinking} 20000000000\n"
    ))
    .await;
    let result = run_shipped(&vm, "obs-node-disk").await;
    let found: Vec<(String, String)> = series(&result)
        .iter()
        .map(|item| (label(item, "instance"), label(item, "mountpoint")))
        .collect();
    assert_eq!(
        found,
        [
            ("node-1:9100".to_owned(), "/".to_owned()),
            ("node-2:9100".to_owned(), "/var/lib/rancher".to_owned()),
        ],
        "{}",
        result.message
    );
}

/// `obs-cardinality` names each counter (and reason) that moved in the last 15 minutes;
/// counters standing still match nothing.
#[tokio::test]
async fn the_shipped_cardinality_query_names_the_counter() {
    init();
    let vm = Victoria::start();
    // VictoriaMetrics counts a series' first sample as an increase from 0, so each counter
    // gets a sample from just before the 15-minute window (as a scrape every few minutes
    // would): standing still since then is no increase.
    let (before, old) = (Victoria::millis_ago(960), Victoria::millis_ago(300));
    vm.import(&format!(
        "vm_hourly_series_limit_rows_dropped_total{{job=\"vm\"}} 0 {before}\n\
         vm_hourly_series_limit_rows_dropped_total{{job=\"vm\"}} 0 {old}\n\
         vm_hourly_series_limit_rows_dropped_total{{job=\"vm\"}} 0\n\
         vm_rows_ignored_total{{job=\"vm\",reason=\"too_long_label_value\"}} 3 {before}\n\
         vm_rows_ignored_total{{job=\"vm\",reason=\"too_long_label_value\"}} 3 {old}\n\
         vm_rows_ignored_total{{job=\"vm\",reason=\"too_long_label_value\"}} 3\n"
    ))
    .await;
    let result = run_shipped(&vm, "obs-cardinality").await;
    assert_eq!(
        result.observations["count"],
        Value::Int(0),
        "{}",
        result.message
    );

    vm.import(&format!(
        "vm_daily_series_limit_rows_dropped_total{{job=\"vm\"}} 0 {old}\n\
         vm_daily_series_limit_rows_dropped_total{{job=\"vm\"}} 1200\n\
         vm_rows_ignored_total{{job=\"vm\",reason=\"too_long_label_value\"}} 40\n"
    ))
    .await;
    let result = run_shipped(&vm, "obs-cardinality").await;
    let found: Vec<(String, String)> = series(&result)
        .iter()
        .map(|item| (label(item, "counter"), label(item, "reason")))
        .collect();
    assert_eq!(
        found,
        [
            (
                "vm_daily_series_limit_rows_dropped_total".to_owned(),
                String::new()
            ),
            (
                "vm_rows_ignored_total".to_owned(),
                "too_long_label_value".to_owned()
            ),
        ],
        "{}",
        result.message
    );
}

/// The shipped disk query fits what a real node_exporter exports, as vmagent ships it: with its
/// threshold raised so every disk matches, it returns one series per real filesystem, each
/// naming the node and mountpoint, none of them a pseudo filesystem, with a free share between 0
/// and 1; as shipped it runs without error.
#[tokio::test]
async fn the_shipped_disk_query_fits_a_real_node_exporter() {
    use crate::support::victoria::{ScrapeJob, Vmagent};
    use crate::support::{ChildGuard, free_port, require_binary, wait_for_tcp};

    init();
    let vm = Victoria::start();
    let exporter = require_binary("prometheus-node-exporter", "prometheus-node-exporter");
    let port = free_port();
    let dir = TempDir::new("node-exporter");
    let _exporter = ChildGuard::spawn(
        "node_exporter",
        std::process::Command::new(exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(["--collector.disable-defaults", "--collector.filesystem"]),
        &dir.path().join("node_exporter.log"),
    );
    wait_for_tcp(
        ([127, 0, 0, 1], port).into(),
        std::time::Duration::from_secs(20),
    );
    let _vmagent = Vmagent::start(
        &[ScrapeJob {
            name: "node",
            targets: vec![(format!("127.0.0.1:{port}"), Vec::new())],
        }],
        &[format!("{}/api/v1/write", vm.url)],
    );
    crate::support::eventually(
        "node_exporter's filesystems in VictoriaMetrics",
        std::time::Duration::from_secs(30),
        || async {
            let seen = vm
                .query_scalar("count(node_filesystem_avail_bytes)")
                .await?;
            (seen >= 1.0).then_some(())
        },
    )
    .await;

    let shipped = shipped_query("obs-node-disk");
    assert!(shipped.contains("< 0.10"), "{shipped}");
    let everything = shipped.replace("< 0.10", "< 1.01");
    let dir = TempDir::new("prom-disk");
    let result = run_one(dir.path(), &probe_toml(&vm.url, &everything, "")).await;
    assert!(result.ok, "{result:?}");
    let found = series(&result);
    assert!(!found.is_empty(), "{result:?}");
    for item in found {
        let labels = labels_of(item);
        let label = |name: &str| {
            labels
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
                .unwrap_or_else(|| panic!("no `{name}` in {labels:?}"))
        };
        assert_eq!(label("instance"), format!("127.0.0.1:{port}"));
        assert!(label("mountpoint").starts_with('/'), "{labels:?}");
        let fstype = label("fstype");
        assert!(
            !["tmpfs", "overlay", "squashfs", "ramfs"].contains(&fstype.as_str()),
            "{labels:?}"
        );
        let free = item.as_map().unwrap()["value"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&free), "{free}");
    }
    let result = run_one(dir.path(), &probe_toml(&vm.url, &shipped, "")).await;
    assert!(result.ok, "the shipped query as it is: {result:?}");
}
