//! The honeyDue cluster as `kubectl get -o json` prints it: three k3s nodes, the api, admin,
//! worker and redis Deployments in `honeydue`, coredns and metrics-server in `kube-system`, their
//! ReplicaSets and pods, the migrate Job, and the metrics APIService. Each builder returns the
//! object's JSON; [`check`] reads every one into its k8s-openapi type and writes it back, so a
//! misspelled or mistyped field (which the typed read would drop or refuse) fails the test that
//! serves it instead of silently testing nothing.

use serde_json::{Value, json};

/// When the cluster was built (all fixture times are relative to the real now, see `ago`).
pub const NODES: &[&str] = &["honeydue-1", "honeydue-2", "honeydue-3"];

/// `now - seconds`, as the API writes times.
pub fn ago(seconds: i64) -> String {
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(seconds);
    jiff::Timestamp::from_second(at.as_second())
        .expect("whole seconds")
        .to_string()
}

fn uid(name: &str) -> String {
    // Stable, uid-shaped, distinct per name.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    });
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        hash >> 32,
        (hash >> 16) & 0xffff,
        hash & 0xfff,
        (hash >> 4) & 0xfff,
        hash & 0xffff_ffff_ffff
    )
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, since: i64) -> Value {
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": ago(5),
        "lastTransitionTime": ago(since),
    })
}

/// A Ready k3s node; `redis` puts the `honeydue/redis=true` label on it.
pub fn node(name: &str, redis: bool) -> Value {
    let mut labels = json!({
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node-role.kubernetes.io/control-plane": "true",
        "node-role.kubernetes.io/etcd": "true",
        "node-role.kubernetes.io/master": "true",
        "node.kubernetes.io/instance-type": "k3s",
    });
    if redis {
        labels["honeydue/redis"] = json!("true");
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "annotations": {
                "k3s.io/node-args": "[\"server\"]",
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "creationTimestamp": ago(90 * 86_400),
            "labels": labels,
            "name": name,
            "resourceVersion": "918273",
            "uid": uid(name),
        },
        "spec": {
            "podCIDR": "10.42.0.0/24",
            "podCIDRs": ["10.42.0.0/24"],
            "providerID": format!("k3s://{name}"),
        },
        "status": {
            "addresses": [
                {"address": "10.0.0.2", "type": "InternalIP"},
                {"address": name, "type": "Hostname"},
            ],
            "allocatable": {"cpu": "4", "memory": "7935Mi", "pods": "110"},
            "capacity": {"cpu": "4", "memory": "7935Mi", "pods": "110"},
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available", 86_400),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", 86_400),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", 86_400),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", 86_400),
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": uid(&format!("{name}-boot")),
                "containerRuntimeVersion": "containerd://1.7.23-k3s2",
                "kernelVersion": "6.1.0-28-amd64",
                "kubeProxyVersion": "v1.31.4+k3s1",
                "kubeletVersion": "v1.31.4+k3s1",
                "machineID": uid(&format!("{name}-machine")).replace('-', ""),
                "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "systemUUID": uid(&format!("{name}-system")),
            },
        },
    })
}

/// Makes `node` NotReady (the kubelet stopped posting) with DiskPressure, as before an eviction.
pub fn not_ready_with_disk_pressure(node: &mut Value) {
    let conditions = node["status"]["conditions"]
        .as_array_mut()
        .expect("conditions");
    for condition in conditions {
        match condition["type"].as_str() {
            Some("DiskPressure") => {
                condition["status"] = json!("True");
                condition["reason"] = json!("KubeletHasDiskPressure");
                condition["message"] = json!("kubelet has disk pressure");
                condition["lastTransitionTime"] = json!(ago(600));
            }
            Some("Ready") => {
                condition["status"] = json!("False");
                condition["reason"] = json!("KubeletNotReady");
                condition["message"] = json!("container runtime is down");
                condition["lastTransitionTime"] = json!(ago(300));
            }
            _ => {}
        }
    }
    node["spec"]["taints"] = json!([
        {"effect": "NoSchedule", "key": "node.kubernetes.io/disk-pressure", "timeAdded": ago(600)},
        {"effect": "NoSchedule", "key": "node.kubernetes.io/not-ready", "timeAdded": ago(300)},
    ]);
}

/// One Deployment, its current ReplicaSet and its pods (all Running and ready unless changed).
pub struct App {
    pub deployment: Value,
    pub replica_set: Value,
    pub pods: Vec<Value>,
}

/// The Deployment `name` in `namespace` at `revision`, rolled out `rolled_out` seconds ago,
/// with `replicas` pods running `image`.
pub fn app(
    namespace: &str,
    name: &str,
    image: &str,
    replicas: i32,
    revision: i64,
    rolled_out: i64,
) -> App {
    let hash = &uid(&format!("{namespace}/{name}/{revision}"))[..10];
    let template_hash = hash.replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let labels = json!({"app.kubernetes.io/name": name});
    let pod_labels = json!({"app.kubernetes.io/name": name, "pod-template-hash": template_hash});
    let rs_name = format!("{name}-{template_hash}");
    let container = json!({
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "name": name,
        "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    });
    let template = json!({
        "metadata": {"labels": pod_labels},
        "spec": {
            "containers": [container],
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "terminationGracePeriodSeconds": 30,
        },
    });
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
            "creationTimestamp": ago(60 * 86_400),
            "generation": revision,
            "labels": labels,
            "name": name,
            "namespace": namespace,
            "resourceVersion": "771204",
            "uid": uid(&format!("{namespace}/{name}")),
        },
        "spec": {
            "progressDeadlineSeconds": 600,
            "replicas": replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": labels},
            "strategy": {
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                "type": "RollingUpdate",
            },
            "template": template,
        },
        "status": {
            "availableReplicas": replicas,
            "conditions": [
                {
                    "lastTransitionTime": ago(60 * 86_400),
                    "lastUpdateTime": ago(60 * 86_400),
                    "message": "Deployment has minimum availability.",
                    "reason": "MinimumReplicasAvailable",
                    "status": "True",
                    "type": "Available",
                },
                {
                    "lastTransitionTime": ago(rolled_out),
                    "lastUpdateTime": ago(rolled_out),
                    "message": format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                    "reason": "NewReplicaSetAvailable",
                    "status": "True",
                    "type": "Progressing",
                },
            ],
            "observedGeneration": revision,
            "readyReplicas": replicas,
            "replicas": replicas,
            "updatedReplicas": replicas,
        },
    });
    let replica_set = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "annotations": {
                "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                "deployment.kubernetes.io/max-replicas": (replicas + 1).to_string(),
                "deployment.kubernetes.io/revision": revision.to_string(),
            },
            "creationTimestamp": ago(rolled_out),
            "generation": 1,
            "labels": pod_labels,
            "name": rs_name,
            "namespace": namespace,
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "blockOwnerDeletion": true,
                "controller": true,
                "kind": "Deployment",
                "name": name,
                "uid": uid(&format!("{namespace}/{name}")),
            }],
            "resourceVersion": "771198",
            "uid": uid(&rs_name),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": pod_labels},
            "template": template,
        },
        "status": {
            "availableReplicas": replicas,
            "fullyLabeledReplicas": replicas,
            "observedGeneration": 1,
            "readyReplicas": replicas,
            "replicas": replicas,
        },
    });
    let pods = (0..replicas)
        .map(|index| {
            let pod_name = format!("{rs_name}-{}", &uid(&format!("{rs_name}{index}"))[..5]);
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "creationTimestamp": ago(rolled_out),
                    "generateName": format!("{rs_name}-"),
                    "labels": pod_labels,
                    "name": pod_name,
                    "namespace": namespace,
                    "ownerReferences": [{
                        "apiVersion": "apps/v1",
                        "blockOwnerDeletion": true,
                        "controller": true,
                        "kind": "ReplicaSet",
                        "name": rs_name,
                        "uid": uid(&rs_name),
                    }],
                    "resourceVersion": "771190",
                    "uid": uid(&pod_name),
                },
                "spec": template["spec"].clone(),
                "status": {
                    "conditions": [
                        {"lastTransitionTime": ago(rolled_out), "status": "True", "type": "Initialized"},
                        {"lastTransitionTime": ago(rolled_out), "status": "True", "type": "Ready"},
                        {"lastTransitionTime": ago(rolled_out), "status": "True", "type": "ContainersReady"},
                        {"lastTransitionTime": ago(rolled_out), "status": "True", "type": "PodScheduled"},
                    ],
                    "containerStatuses": [{
                        "containerID": format!("containerd://{}", uid(&pod_name).replace('-', "")),
                        "image": image,
                        "imageID": format!("{image}@sha256:{}", "ab".repeat(32)),
                        "lastState": {},
                        "name": name,
                        "ready": true,
                        "restartCount": 0,
                        "started": true,
                        "state": {"running": {"startedAt": ago(rolled_out)}},
                    }],
                    "hostIP": "10.0.0.2",
                    "phase": "Running",
                    "podIP": format!("10.42.0.{}", 10 + index),
                    "qosClass": "Burstable",
                    "startTime": ago(rolled_out),
                },
            })
        })
        .collect();
    App {
        deployment,
        replica_set,
        pods,
    }
}

/// The first container of `pod` restarted after being OOM-killed `seconds` ago.
pub fn oom_killed(pod: &mut Value, seconds: i64) {
    let status = &mut pod["status"]["containerStatuses"][0];
    status["restartCount"] = json!(3);
    status["lastState"] = json!({"terminated": {
        "containerID": "containerd://0f3c",
        "exitCode": 137,
        "finishedAt": ago(seconds),
        "reason": "OOMKilled",
        "startedAt": ago(seconds + 1800),
    }});
    status["state"] = json!({"running": {"startedAt": ago(seconds - 1)}});
}

/// The first container of `pod` is in CrashLoopBackOff after exiting 2 (a Go panic).
pub fn crash_looping(pod: &mut Value) {
    let status = &mut pod["status"]["containerStatuses"][0];
    status["restartCount"] = json!(7);
    status["ready"] = json!(false);
    status["started"] = json!(false);
    status["lastState"] = json!({"terminated": {
        "containerID": "containerd://9a1e",
        "exitCode": 2,
        "finishedAt": ago(40),
        "reason": "Error",
        "startedAt": ago(42),
    }});
    status["state"] = json!({"waiting": {
        "message": "back-off 5m0s restarting failed container",
        "reason": "CrashLoopBackOff",
    }});
}

/// The `honeydue-migrate` Job (goose, `backoffLimit: 0`), succeeded.
pub fn migrate_job() -> Value {
    let controller = uid("honeydue/honeydue-migrate");
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "creationTimestamp": ago(3600),
            "generation": 1,
            "labels": {"app.kubernetes.io/name": "honeydue-migrate"},
            "name": "honeydue-migrate",
            "namespace": "honeydue",
            "resourceVersion": "770001",
            "uid": controller,
        },
        "spec": {
            "backoffLimit": 0,
            "completionMode": "NonIndexed",
            "completions": 1,
            "manualSelector": false,
            "parallelism": 1,
            "podReplacementPolicy": "TerminatingOrFailed",
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": controller}},
            "suspend": false,
            "template": {
                "metadata": {"labels": {
                    "batch.kubernetes.io/controller-uid": controller,
                    "batch.kubernetes.io/job-name": "honeydue-migrate",
                    "job-name": "honeydue-migrate",
                }},
                "spec": {
                    "containers": [{
                        "args": ["up"],
                        "image": "ghcr.io/honeydue/migrate:1.42.0",
                        "imagePullPolicy": "IfNotPresent",
                        "name": "goose",
                        "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                    }],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Never",
                    "schedulerName": "default-scheduler",
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
        "status": {
            "completionTime": ago(3540),
            "conditions": [
                {"lastProbeTime": ago(3540), "lastTransitionTime": ago(3540), "message": "Reached expected number of succeeded pods", "reason": "CompletionsReached", "status": "True", "type": "SuccessCriteriaMet"},
                {"lastProbeTime": ago(3540), "lastTransitionTime": ago(3540), "message": "Reached expected number of succeeded pods", "reason": "CompletionsReached", "status": "True", "type": "Complete"},
            ],
            "ready": 0,
            "startTime": ago(3600),
            "succeeded": 1,
            "terminating": 0,
            "uncountedTerminatedPods": {},
        },
    })
}

/// The migrate Job's pod, exited 0 (or `exit_code`).
pub fn migrate_pod(exit_code: i32) -> Value {
    let controller = uid("honeydue/honeydue-migrate");
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "creationTimestamp": ago(3600),
            "generateName": "honeydue-migrate-",
            "labels": {
                "batch.kubernetes.io/controller-uid": controller,
                "batch.kubernetes.io/job-name": "honeydue-migrate",
                "controller-uid": controller,
                "job-name": "honeydue-migrate",
            },
            "name": "honeydue-migrate-x7k2p",
            "namespace": "honeydue",
            "resourceVersion": "770010",
            "uid": uid("honeydue-migrate-x7k2p"),
        },
        "spec": {
            "containers": [{"image": "ghcr.io/honeydue/migrate:1.42.0", "name": "goose", "args": ["up"]}],
            "restartPolicy": "Never",
        },
        "status": {
            "containerStatuses": [{
                "containerID": "containerd://5d2b",
                "image": "ghcr.io/honeydue/migrate:1.42.0",
                "imageID": format!("ghcr.io/honeydue/migrate@sha256:{}", "cd".repeat(32)),
                "lastState": {},
                "name": "goose",
                "ready": false,
                "restartCount": 0,
                "started": false,
                "state": {"terminated": {
                    "containerID": "containerd://5d2b",
                    "exitCode": exit_code,
                    "finishedAt": ago(3540),
                    "reason": reason,
                    "startedAt": ago(3590),
                }},
            }],
            "phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
            "startTime": ago(3600),
        },
    })
}

/// Makes the migrate Job failed, as a goose error with `backoffLimit: 0` leaves it.
pub fn migrate_failed(job: &mut Value) {
    job["status"] = json!({
        "conditions": [
            {"lastProbeTime": ago(60), "lastTransitionTime": ago(60), "message": "Job has reached the specified backoff limit", "reason": "BackoffLimitExceeded", "status": "True", "type": "FailureTarget"},
            {"lastProbeTime": ago(60), "lastTransitionTime": ago(60), "message": "Job has reached the specified backoff limit", "reason": "BackoffLimitExceeded", "status": "True", "type": "Failed"},
        ],
        "failed": 1,
        "ready": 0,
        "startTime": ago(120),
        "terminating": 0,
        "uncountedTerminatedPods": {},
    });
}

/// The metrics-server APIService, Available (or not, with `reason`).
pub fn metrics_api_service(unavailable: Option<&str>) -> Value {
    let condition = match unavailable {
        None => {
            json!({"lastTransitionTime": ago(86_400), "message": "all checks passed", "reason": "Passed", "status": "True", "type": "Available"})
        }
        Some(reason) => {
            json!({"lastTransitionTime": ago(120), "message": "failing or missing response from https://10.43.12.7:443/apis/metrics.k8s.io/v1beta1: Get \"https://10.43.12.7:443/apis/metrics.k8s.io/v1beta1\": dial tcp 10.43.12.7:443: connect: connection refused", "reason": reason, "status": "False", "type": "Available"})
        }
    };
    json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {
            "creationTimestamp": ago(90 * 86_400),
            "labels": {"k8s-app": "metrics-server"},
            "name": "v1beta1.metrics.k8s.io",
            "resourceVersion": "4512",
            "uid": uid("v1beta1.metrics.k8s.io"),
        },
        "spec": {
            "group": "metrics.k8s.io",
            "groupPriorityMinimum": 100,
            "insecureSkipTLSVerify": true,
            "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
            "version": "v1beta1",
            "versionPriority": 100,
        },
        "status": {"conditions": [condition]},
    })
}

/// k3s' `/readyz?verbose` listing; `etcd_failed` makes etcd's check fail, as quorum loss does.
pub fn readyz(etcd_failed: bool) -> (u16, String) {
    let checks = [
        "ping",
        "log",
        "etcd",
        "etcd-readiness",
        "informer-sync",
        "poststarthook/start-apiserver-admission-initializer",
        "poststarthook/generic-apiserver-start-informers",
        "poststarthook/start-apiextensions-informers",
        "poststarthook/crd-informer-synced",
        "poststarthook/rbac/bootstrap-roles",
        "poststarthook/apiservice-registration-controller",
        "shutdown",
    ];
    let mut text = String::new();
    for check in checks {
        if etcd_failed && check.starts_with("etcd") {
            text.push_str(&format!("[-]{check} failed: reason withheld\n"));
        } else {
            text.push_str(&format!("[+]{check} ok\n"));
        }
    }
    if etcd_failed {
        text.push_str("readyz check failed\n");
        (500, text)
    } else {
        text.push_str("readyz check passed\n");
        (200, text)
    }
}

/// Reads `object` into the k8s-openapi type its `kind` names and writes it back: the two must
/// be equal, or the fixture is not a real object of that kind.
pub fn check(object: &Value) {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(object: &Value) -> Value {
        let typed: T = serde_json::from_value(object.clone()).unwrap_or_else(|error| {
            panic!(
                "fixture is not a {}: {error}\n{object:#}",
                std::any::type_name::<T>()
            )
        });
        serde_json::to_value(typed).expect("serialize")
    }
    let back = match object["kind"].as_str() {
        Some("Node") => round_trip::<Node>(object),
        Some("Pod") => round_trip::<Pod>(object),
        Some("Deployment") => round_trip::<Deployment>(object),
        Some("ReplicaSet") => round_trip::<ReplicaSet>(object),
        Some("Job") => round_trip::<Job>(object),
        Some("APIService") => round_trip::<APIService>(object),
        other => panic!("no k8s-openapi type for fixture kind {other:?}"),
    };
    assert_eq!(
        &back, object,
        "the fixture has fields its k8s-openapi type does not (or of other types)"
    );
}
