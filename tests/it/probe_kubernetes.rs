//! The `kubernetes` probe against an in-process API server speaking the real protocol
//! (`support::kube_api`: HTTPS, bearer tokens, the real paths and `Status` errors) serving the
//! honeyDue cluster as fixtures checked against their k8s-openapi types. One scenario per
//! catalog entry the API makes visible, the refusals (401, 403), a server that is down or hangs,
//! and both ways of finding the server (in-cluster environment, kubeconfig).

use std::path::Path;

use honeyguide::config::Config;
use honeyguide::probe::{ErrorClass, ProbeResult, Value};

use crate::support::kube_api::{Cluster, KubeApi, TOKEN, WORKLOADS, fixtures};
use crate::support::probes::{errors, load_with_env, observation, phase_names, run_named, strings};
use crate::support::{TempDir, certs::TestCa, free_port, init};

/// A probe config that finds the server as a pod does, its service account files in `dir`.
fn in_cluster_toml(dir: &Path, timeout: &str) -> String {
    let workloads = WORKLOADS
        .iter()
        .map(|workload| format!("\"{workload}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[[probe]]\nname = \"k8s\"\nkind = \"kubernetes\"\ntimeout = \"{timeout}\"\n\
         service_account_dir = \"{}\"\nworkloads = [{workloads}]\n",
        dir.display()
    )
}

/// Writes the service account's `token` and `ca.crt` into `dir`.
fn service_account(dir: &Path, ca_pem: &str, token: &str) {
    std::fs::write(dir.join("token"), token).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_pem).unwrap();
    std::fs::write(dir.join("namespace"), "honeydue").unwrap();
}

fn in_cluster_config(dir: &Path, port: u16, timeout: &str) -> Config {
    let port = port.to_string();
    load_with_env(
        dir,
        &in_cluster_toml(dir, timeout),
        &[
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", &port),
        ],
    )
}

/// Serves `cluster` and runs the in-cluster probe against it once.
async fn run(cluster: Cluster) -> (ProbeResult, KubeApi) {
    init();
    let api = KubeApi::start(cluster).await;
    let dir = TempDir::new("k8s");
    service_account(dir.path(), api.ca.pem(), TOKEN);
    let config = in_cluster_config(dir.path(), api.addr.port(), "5s");
    (run_named(&config, "k8s").await, api)
}

fn workload<'a>(result: &'a ProbeResult, name: &str, key: &str) -> &'a Value {
    observation(result, &["workloads", name, key])
}

fn node<'a>(result: &'a ProbeResult, name: &str, key: &str) -> &'a Value {
    observation(result, &["nodes", name, key])
}

fn recent(value: &Value, seconds_ago: i64) -> bool {
    let now = jiff::Timestamp::now().as_second();
    value
        .as_i64()
        .is_some_and(|at| (now - seconds_ago - 60..=now - seconds_ago + 60).contains(&at))
}

/// The healthy cluster: every read succeeds on one connection, in its phase, and says what
/// `kubectl` would.
#[tokio::test]
async fn a_healthy_cluster_reads_whole() {
    let (result, api) = run(Cluster::honeydue()).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(
        result.message,
        "3/3 nodes ready, readyz passed, metrics API available, 7 workloads healthy"
    );
    assert_eq!(result.observations["problems"], strings(&[]));
    assert_eq!(result.observations["readyz_ok"], Value::Bool(true));
    assert_eq!(result.observations["etcd_ok"], Value::Bool(true));
    assert_eq!(
        observation(
            &result,
            &["readyz_checks", "poststarthook/rbac/bootstrap-roles", "ok"]
        ),
        &Value::Bool(true)
    );
    assert_eq!(result.observations["nodes_total"], Value::Int(3));
    assert_eq!(result.observations["nodes_ready"], Value::Int(3));
    assert_eq!(
        node(&result, "honeydue-1", "ready_reason"),
        &Value::from("KubeletReady")
    );
    assert_eq!(
        node(&result, "honeydue-2", "disk_pressure"),
        &Value::Bool(false)
    );
    let labels = node(&result, "honeydue-1", "labels");
    assert!(
        matches!(labels, Value::List(items) if items.contains(&Value::from("honeydue/redis=true"))),
        "{labels:?}"
    );
    assert_eq!(
        result.observations["metrics_api_available"],
        Value::Bool(true)
    );
    assert_eq!(
        result.observations["metrics_api_reason"],
        Value::from("Passed")
    );

    let api_key = "honeydue/deployment/api";
    assert_eq!(workload(&result, api_key, "desired"), &Value::Int(2));
    assert_eq!(workload(&result, api_key, "ready"), &Value::Int(2));
    assert_eq!(workload(&result, api_key, "updated"), &Value::Int(2));
    assert_eq!(workload(&result, api_key, "revision"), &Value::Int(14));
    assert_eq!(
        workload(&result, api_key, "image"),
        &Value::from("ghcr.io/honeydue/api:1.42.0")
    );
    assert!(recent(
        workload(&result, api_key, "revision_since"),
        3 * 86_400
    ));
    assert_eq!(workload(&result, api_key, "restarts"), &Value::Int(0));
    assert_eq!(
        workload(&result, api_key, "last_termination_reason"),
        &Value::Null
    );
    assert_eq!(
        workload(&result, "kube-system/deployment/coredns", "ready"),
        &Value::Int(1)
    );
    let job = "honeydue/job/honeydue-migrate";
    assert_eq!(
        workload(&result, job, "job_state"),
        &Value::from("complete")
    );
    assert_eq!(workload(&result, job, "job_succeeded"), &Value::Int(1));
    assert_eq!(workload(&result, job, "desired"), &Value::Null);
    assert_eq!(result.observations["request"], Value::Null);
    assert_eq!(
        result.observations["remote_addr"],
        Value::from(api.addr.to_string())
    );
    assert_eq!(result.observations["tls_version"], Value::from("TLSv1.3"));

    // One connection, then each read in its own phase.
    let phases = phase_names(&result);
    assert_eq!(
        phases[..5],
        ["connect", "tls", "readyz", "nodes", "apiservice"]
    );
    assert!(
        phases.contains(&"replicasets") && phases.contains(&"job"),
        "{phases:?}"
    );
    let seen = api.seen();
    assert_eq!(seen[0], "GET /readyz?verbose");
    assert!(seen.contains(&"GET /api/v1/nodes?".to_owned()), "{seen:?}");
    assert!(
        seen.contains(
            &"GET /api/v1/namespaces/honeydue/pods?&labelSelector=app.kubernetes.io%2Fname%3Dapi"
                .to_owned()
        ),
        "{seen:?}"
    );
    assert!(
        seen.contains(
            &"GET /apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io?".to_owned()
        ),
        "{seen:?}"
    );
}

/// One node NotReady with DiskPressure: named, counted, and the run fails saying so.
#[tokio::test]
async fn a_not_ready_node_with_disk_pressure_is_named() {
    let mut cluster = Cluster::honeydue();
    fixtures::not_ready_with_disk_pressure(cluster.object("Node", "honeydue-2"));
    let (result, _api) = run(cluster).await;
    assert_eq!(result.error, Some(ErrorClass::Assertion), "{result:?}");
    assert_eq!(
        result.message,
        "node honeydue-2 NotReady (KubeletNotReady); node honeydue-2 DiskPressure"
    );
    assert_eq!(result.observations["nodes_ready"], Value::Int(2));
    assert_eq!(
        result.observations["not_ready_nodes"],
        strings(&["honeydue-2"])
    );
    assert_eq!(node(&result, "honeydue-2", "ready"), &Value::Bool(false));
    assert_eq!(
        node(&result, "honeydue-2", "ready_status"),
        &Value::from("False")
    );
    assert_eq!(
        node(&result, "honeydue-2", "disk_pressure"),
        &Value::Bool(true)
    );
    assert!(recent(node(&result, "honeydue-2", "ready_since"), 300));
    assert_eq!(node(&result, "honeydue-1", "ready"), &Value::Bool(true));
}

/// An api pod that was OOM-killed and came back: the run is healthy now, and the termination
/// (reason, exit code 137, when) is there for the rule that tells it from a panic.
#[tokio::test]
async fn an_oom_killed_api_pod_is_seen_in_its_last_state() {
    let mut cluster = Cluster::honeydue();
    fixtures::oom_killed(cluster.pods("api-")[0], 120);
    let (result, _api) = run(cluster).await;
    assert!(result.ok, "{result:?}");
    let api = "honeydue/deployment/api";
    assert_eq!(
        workload(&result, api, "last_termination_reason"),
        &Value::from("OOMKilled")
    );
    assert_eq!(
        workload(&result, api, "last_termination_exit_code"),
        &Value::Int(137)
    );
    assert!(recent(workload(&result, api, "last_termination_at"), 120));
    assert_eq!(workload(&result, api, "restarts"), &Value::Int(3));
    assert_eq!(workload(&result, api, "recent_restarts"), &Value::Int(1));
    // The admin's pods are untouched.
    assert_eq!(
        workload(&result, "honeydue/deployment/admin", "recent_restarts"),
        &Value::Int(0)
    );
}

/// An OOM kill two minutes ago is said in the message of a healthy run, with its exit code: the
/// evidence of api-oom-killed.
#[tokio::test]
async fn a_recent_oom_kill_is_said_in_the_message() {
    let mut cluster = Cluster::honeydue();
    fixtures::oom_killed(cluster.pods("api-")[0], 180);
    let (result, _api) = run(cluster).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(
        result.message,
        "3/3 nodes ready, readyz passed, metrics API available, 7 workloads healthy; \
         honeydue/deployment/api: last terminated OOMKilled (exit code 137) 3m ago"
    );
}

/// The bad-deploy scenario's inside half: the api rolled out 3 minutes ago to a new image (its
/// pods serve, while the edge fails: the rule's examples hold the edge). The revision, the new
/// image and when it became current are observed, and the message names them, so the
/// diagnosis's evidence says what `rollout undo` would undo. The previous ReplicaSet, kept at
/// 0 replicas, is not the current one.
#[tokio::test]
async fn a_rollout_three_minutes_ago_is_named_with_its_revision_and_image() {
    let mut cluster = Cluster::honeydue();
    cluster.rolled_out("api", "ghcr.io/honeydue/api:1.43.0", 15, 180);
    let (result, _api) = run(cluster).await;
    assert!(result.ok, "{result:?}");
    let api = "honeydue/deployment/api";
    assert_eq!(workload(&result, api, "revision"), &Value::Int(15));
    assert_eq!(
        workload(&result, api, "image"),
        &Value::from("ghcr.io/honeydue/api:1.43.0")
    );
    assert!(recent(workload(&result, api, "revision_since"), 180));
    assert_eq!(workload(&result, api, "ready"), &Value::Int(2));
    assert_eq!(
        result.message,
        "3/3 nodes ready, readyz passed, metrics API available, 7 workloads healthy; \
         honeydue/deployment/api: rolled out revision 15 (ghcr.io/honeydue/api:1.43.0) 3m ago"
    );
    // Rollouts of days ago are history: the admin's is not in the message.
    assert!(!result.message.contains("admin"), "{}", result.message);
}

/// An OOM kill longer ago than `restart_window` is the last termination still, but not recent.
#[tokio::test]
async fn an_old_termination_is_not_a_recent_restart() {
    let mut cluster = Cluster::honeydue();
    fixtures::oom_killed(cluster.pods("api-")[0], 3600);
    let (result, _api) = run(cluster).await;
    let api = "honeydue/deployment/api";
    assert_eq!(
        workload(&result, api, "last_termination_reason"),
        &Value::from("OOMKilled")
    );
    assert_eq!(workload(&result, api, "recent_restarts"), &Value::Int(0));
}

/// A crash loop after exit code 2 (a Go panic): the waiting reason, the exit code, and one of
/// two pods ready.
#[tokio::test]
async fn a_crash_loop_names_its_reason_and_exit_code() {
    let mut cluster = Cluster::honeydue();
    fixtures::crash_looping(cluster.pods("api-")[0]);
    let status = &mut cluster.object("Deployment", "api")["status"];
    status["readyReplicas"] = 1.into();
    status["availableReplicas"] = 1.into();
    status["unavailableReplicas"] = 1.into();
    let (result, _api) = run(cluster).await;
    assert_eq!(result.error, Some(ErrorClass::Assertion), "{result:?}");
    // The problems, then the termination behind them: the evidence api-crashloop shows.
    assert!(
        result.message.starts_with(
            "honeydue/deployment/api: 1/2 ready; honeydue/deployment/api: container api \
             CrashLoopBackOff; honeydue/deployment/api: last terminated Error (exit code 2) 4"
        ),
        "{}",
        result.message
    );
    let api = "honeydue/deployment/api";
    assert_eq!(
        workload(&result, api, "waiting_reasons"),
        &strings(&["CrashLoopBackOff"])
    );
    assert_eq!(
        workload(&result, api, "last_termination_reason"),
        &Value::from("Error")
    );
    assert_eq!(
        workload(&result, api, "last_termination_exit_code"),
        &Value::Int(2)
    );
    assert_eq!(workload(&result, api, "restarts"), &Value::Int(7));
}

/// The worker Deployment with no ready pod (`kubectl` omits `readyReplicas` at 0).
#[tokio::test]
async fn a_worker_at_zero_ready_fails_the_run() {
    let mut cluster = Cluster::honeydue();
    let status = cluster.object("Deployment", "worker")["status"]
        .as_object_mut()
        .unwrap();
    status.remove("readyReplicas");
    status.remove("availableReplicas");
    status.insert("unavailableReplicas".to_owned(), 1.into());
    let (result, _api) = run(cluster).await;
    assert_eq!(result.error, Some(ErrorClass::Assertion), "{result:?}");
    assert_eq!(result.message, "honeydue/deployment/worker: 0/1 ready");
    assert_eq!(
        workload(&result, "honeydue/deployment/worker", "ready"),
        &Value::Int(0)
    );
    assert_eq!(
        workload(&result, "honeydue/deployment/worker", "desired"),
        &Value::Int(1)
    );
}

/// The migrate Job failed (backoffLimit 0): its state, reason, and the goose pod's exit code.
#[tokio::test]
async fn a_failed_migrate_job_says_why() {
    let mut cluster = Cluster::honeydue();
    fixtures::migrate_failed(cluster.object("Job", "honeydue-migrate"));
    *cluster.object("Pod", "honeydue-migrate-x7k2p") = fixtures::migrate_pod(1);
    let (result, _api) = run(cluster).await;
    assert_eq!(result.error, Some(ErrorClass::Assertion), "{result:?}");
    assert_eq!(
        result.message,
        "honeydue/job/honeydue-migrate: failed (BackoffLimitExceeded)"
    );
    let job = "honeydue/job/honeydue-migrate";
    assert_eq!(workload(&result, job, "job_state"), &Value::from("failed"));
    assert_eq!(
        workload(&result, job, "job_reason"),
        &Value::from("BackoffLimitExceeded")
    );
    assert_eq!(workload(&result, job, "job_failed"), &Value::Int(1));
    assert_eq!(workload(&result, job, "job_succeeded"), &Value::Int(0));
    assert_eq!(
        workload(&result, job, "last_termination_exit_code"),
        &Value::Int(1)
    );
    assert_eq!(
        workload(&result, job, "last_termination_reason"),
        &Value::from("Error")
    );
}

/// readyz answers 500 with `[-]etcd failed`: data, not an error; every failed check named.
#[tokio::test]
async fn a_failing_etcd_check_is_read_from_readyz() {
    let mut cluster = Cluster::honeydue();
    cluster.readyz = fixtures::readyz(true);
    let (result, _api) = run(cluster).await;
    assert_eq!(result.error, Some(ErrorClass::Assertion), "{result:?}");
    assert_eq!(result.message, "readyz: etcd, etcd-readiness failed");
    assert_eq!(result.observations["readyz_ok"], Value::Bool(false));
    assert_eq!(result.observations["etcd_ok"], Value::Bool(false));
    assert_eq!(
        observation(&result, &["readyz_checks", "etcd", "detail"]),
        &Value::from("reason withheld")
    );
    // The rest of the run still happened.
    assert_eq!(result.observations["nodes_ready"], Value::Int(3));
}

/// metrics-server down: the APIService's Available condition is False with its reason.
#[tokio::test]
async fn an_unavailable_metrics_api_is_named_with_its_reason() {
    let mut cluster = Cluster::honeydue();
    *cluster.object("APIService", "v1beta1.metrics.k8s.io") =
        fixtures::metrics_api_service(Some("FailedDiscoveryCheck"));
    let (result, _api) = run(cluster).await;
    assert_eq!(result.error, Some(ErrorClass::Assertion), "{result:?}");
    assert_eq!(
        result.message,
        "v1beta1.metrics.k8s.io unavailable (FailedDiscoveryCheck)"
    );
    assert_eq!(
        result.observations["metrics_api_available"],
        Value::Bool(false)
    );
    assert_eq!(
        result.observations["metrics_api_reason"],
        Value::from("FailedDiscoveryCheck")
    );
}

/// A token the API server refuses: `auth`, 401, at the first request; the token is in no
/// message or observation.
#[tokio::test]
async fn a_refused_token_is_an_auth_failure() {
    init();
    let api = KubeApi::start(Cluster::honeydue()).await;
    let dir = TempDir::new("k8s");
    service_account(dir.path(), api.ca.pem(), "expired-token-of-last-week");
    let config = in_cluster_config(dir.path(), api.addr.port(), "5s");
    let result = run_named(&config, "k8s").await;
    assert_eq!(result.error, Some(ErrorClass::Auth), "{result:?}");
    assert_eq!(
        result.message,
        "unauthorized: the API server refused the token (401 on get /readyz); it is expired, \
         revoked or for another cluster"
    );
    assert_eq!(result.observations["status"], Value::Int(401));
    assert_eq!(result.observations["request"], Value::from("get /readyz"));
    assert!(!format!("{result:?}").contains("expired-token-of-last-week"));
}

/// RBAC without `list pods`: `forbidden` (not `auth`: the token was accepted), and the message
/// names the verb, the resource, the namespace and what the API server said.
#[tokio::test]
async fn rbac_missing_for_pods_names_list_pods() {
    let mut cluster = Cluster::honeydue();
    cluster.forbid("list", "pods");
    let (result, _api) = run(cluster).await;
    assert_eq!(result.error, Some(ErrorClass::Forbidden), "{result:?}");
    assert_eq!(
        result.message,
        "forbidden: cannot list pods in honeydue (app.kubernetes.io/name=api) (RBAC refused it: \
         pods is forbidden: User \"system:serviceaccount:honeydue:honeyguide\" cannot list \
         resource \"pods\" in API group \"\" in the namespace \"honeydue\")"
    );
    assert_eq!(result.observations["status"], Value::Int(403));
    assert_eq!(
        result.observations["forbidden"],
        Value::from("list pods in honeydue (app.kubernetes.io/name=api)")
    );
    // What was read before the refusal is kept.
    assert_eq!(result.observations["nodes_ready"], Value::Int(3));
}

/// No API server listening: `connect`, naming the address.
#[tokio::test]
async fn an_api_server_that_is_down_is_a_connect_failure() {
    init();
    let dir = TempDir::new("k8s");
    service_account(dir.path(), TestCa::new().pem(), TOKEN);
    let port = free_port();
    let config = in_cluster_config(dir.path(), port, "5s");
    let result = run_named(&config, "k8s").await;
    assert_eq!(result.error, Some(ErrorClass::Connect), "{result:?}");
    assert_eq!(
        result.message,
        format!("cannot connect to 127.0.0.1:{port}: connection refused")
    );
}

/// A server with a certificate of another CA: `tls`.
#[tokio::test]
async fn an_api_server_of_another_ca_is_a_tls_failure() {
    init();
    let api = KubeApi::start(Cluster::honeydue()).await;
    let dir = TempDir::new("k8s");
    service_account(dir.path(), TestCa::new().pem(), TOKEN);
    let config = in_cluster_config(dir.path(), api.addr.port(), "5s");
    let result = run_named(&config, "k8s").await;
    assert_eq!(result.error, Some(ErrorClass::Tls), "{result:?}");
    assert!(
        result.message.starts_with("TLS handshake failed"),
        "{}",
        result.message
    );
}

/// An API server that accepts the pods request and never answers: `timeout`, in the phase
/// `pods`, with the request it hung in.
#[tokio::test]
async fn a_hanging_api_server_times_out_naming_the_request() {
    init();
    let mut cluster = Cluster::honeydue();
    cluster.hang("pods");
    let api = KubeApi::start(cluster).await;
    let dir = TempDir::new("k8s");
    service_account(dir.path(), api.ca.pem(), TOKEN);
    let config = in_cluster_config(dir.path(), api.addr.port(), "1s");
    let result = run_named(&config, "k8s").await;
    assert_eq!(result.error, Some(ErrorClass::Timeout), "{result:?}");
    assert_eq!(result.message, "timed out after 1s during pods");
    assert_eq!(result.observations["timeout_phase"], Value::from("pods"));
    assert_eq!(
        result.observations["request"],
        Value::from("list pods in honeydue (app.kubernetes.io/name=api)")
    );
    // What came before is kept.
    assert_eq!(result.observations["nodes_ready"], Value::Int(3));
}

/// From outside the cluster: a kubeconfig's named context, its current context (here a decoy
/// with nothing listening), and a context it lacks.
#[tokio::test]
async fn a_kubeconfig_context_reaches_the_cluster() {
    init();
    let api = KubeApi::start(Cluster::honeydue()).await;
    let dir = TempDir::new("k8s");
    api.write_kubeconfig(dir.path(), TOKEN);
    let toml = |context: &str| {
        format!(
            "[[probe]]\nname = \"k8s\"\nkind = \"kubernetes\"\ntimeout = \"5s\"\n\
             kubeconfig = \"kubeconfig\"\n{context}workloads = [\"honeydue/deployment/api\"]\n"
        )
    };
    let config = load_with_env(dir.path(), &toml("context = \"honeydue\"\n"), &[]);
    let result = run_named(&config, "k8s").await;
    assert!(result.ok, "{result:?}");
    assert_eq!(
        config.probes[0].probe.target(),
        format!("{} (kubeconfig kubeconfig (context honeydue))", api.url())
    );

    let config = load_with_env(dir.path(), &toml(""), &[]);
    let result = run_named(&config, "k8s").await;
    assert_eq!(result.error, Some(ErrorClass::Connect), "{result:?}");
    assert_eq!(
        result.message,
        "cannot connect to 127.0.0.1:1: connection refused"
    );

    let text = errors(dir.path(), &toml("context = \"prod\"\n"));
    assert!(
        text.contains(
            "context: no context `prod` in the kubeconfig (it has `honeydue`, `staging`)"
        ),
        "{text}"
    );
}

/// Without a kubeconfig and outside a pod, the config still loads (one probes.toml serves the
/// instances inside and outside the cluster) and every run says how to fix it; bad workloads
/// are reported all at once.
#[tokio::test]
async fn configuration_errors_say_what_to_do() {
    init();
    let dir = TempDir::new("k8s");
    service_account(dir.path(), TestCa::new().pem(), TOKEN);
    let config = load_with_env(dir.path(), &in_cluster_toml(dir.path(), "5s"), &[]);
    let result = run_named(&config, "k8s").await;
    assert_eq!(result.error, Some(ErrorClass::Connect), "{result:?}");
    assert_eq!(
        result.message,
        "not in a pod (KUBERNETES_SERVICE_HOST is not set): give `kubeconfig = \"path\"` to \
         reach the cluster from outside"
    );
    let toml = "[[probe]]\nname = \"k8s\"\nkind = \"kubernetes\"\n\
                workloads = [\"honeydue/api\", \"honeydue/statefulset/redis\"]\ncontext = \"x\"\n";
    let text = errors(dir.path(), toml);
    assert!(
        text.contains("`honeydue/api` is not `namespace/kind/name`"),
        "{text}"
    );
    assert!(
        text.contains("the kind must be `deployment` or `job`, not `statefulset`"),
        "{text}"
    );
    assert!(text.contains("give `kubeconfig` too"), "{text}");
}
