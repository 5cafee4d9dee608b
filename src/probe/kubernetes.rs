//! The `kubernetes` probe kind: the cluster as its API server sees it, read in one run.
//!
//! Seen from outside, a third of the catalog is guessed (a NotReady node, etcd, metrics-server,
//! an api pod OOM-killed rather than panicking); the catalog's own recovery steps read the API
//! (`kubectl get nodes`, `describe pod`, `rollout history`). One run reads, on one fresh
//! connection and within its timeout: `/readyz?verbose` (each named check, etcd's included), the
//! nodes (conditions, cordon, labels), the `v1beta1.metrics.k8s.io` APIService's `Available`
//! condition, and each configured workload (`workloads = ["honeydue/deployment/api",
//! "honeydue/job/honeydue-migrate"]`): replicas, the rollout revision with when it happened and
//! its image, pod restarts and the latest termination, waiting reasons, evictions, a Job's state.
//!
//! Built on kube-rs (typed calls, errors as `Status`, kubeconfig types) and k8s-openapi (the
//! objects), with the connection ours ([`transport`]) so it follows `net.rs` like every kind:
//! our resolver, the first address, rustls on the one ring provider, no pool, no retries. Who
//! the probe is comes from [`access`]: the pod's service account by default, or
//! `kubeconfig = "path"` with an optional `context`.
//!
//! The run fails as `assertion` when what it read is unhealthy now (`problems` lists each
//! thing); rules read the observations. Errors: `connect`, `tls`, `timeout` (naming the phase,
//! and `request` saying which request hung), `auth` for a refused token (401) and for RBAC
//! (403: the message and the `forbidden` observation name the verb and resource refused),
//! `http_status`, `protocol`.

pub mod access;
pub mod read;
pub mod transport;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::probe::schema::{Field, Type, Unit};
use crate::probe::{ErrorClass, Outcome, ProbeContext, Value, net};
use crate::spec::{BuildContext, FieldError, FieldErrors, HumanDuration, duration};
use access::Access;

/// How far back a container's last termination counts as a recent restart by default.
const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(15 * 60);

/// What a run observes besides the connection's facts.
pub const OBSERVATIONS: &[Field] = &[
    Field::texts(
        "problems",
        "what is unhealthy now, one line each (a NotReady node, a failed readyz check, a \
         workload short of ready pods, a failed Job); empty when all is well",
        &[],
    ),
    Field::flag(
        "readyz_ok",
        "`/readyz?verbose` ended in `readyz check passed`",
        true,
    ),
    Field::flag(
        "etcd_ok",
        "readyz's `etcd` check passed; `null` when the listing has none",
        true,
    ),
    Field::texts("readyz_failed", "the readyz checks that failed", &[]),
    Field::map_of(
        "readyz_checks",
        "every readyz check, described below",
        "check name",
        "etcd",
        &Type::Record(CHECK_OBSERVATIONS),
    ),
    Field::int("nodes_total", "nodes the API lists", 3),
    Field::int("nodes_ready", "nodes whose `Ready` condition is `True`", 3),
    Field::texts("not_ready_nodes", "names of the nodes not Ready", &[]),
    Field::map_of(
        "nodes",
        "every node, described below",
        "node name",
        "k3s-1",
        &Type::Record(NODE_OBSERVATIONS),
    ),
    Field::flag(
        "metrics_api_available",
        "the `v1beta1.metrics.k8s.io` APIService's `Available` condition is `True` (false when \
         it is not registered)",
        true,
    ),
    Field::text(
        "metrics_api_reason",
        "that condition's reason (`FailedDiscoveryCheck`, `MissingEndpoints`; `NotRegistered` \
         when there is no such APIService)",
        "Passed",
    ),
    Field::text(
        "metrics_api_message",
        "that condition's message",
        "all checks passed",
    ),
    Field::map_of(
        "workloads",
        "every configured workload, by `namespace/kind/name`, described below",
        "workload",
        "honeydue/deployment/api",
        &Type::Record(WORKLOAD_OBSERVATIONS),
    ),
    Field::text(
        "request",
        "on a failure, the request it failed or hung in (`list pods in honeydue (app=api)`)",
        "get /readyz",
    )
    .failure_only(),
    Field::int(
        "status",
        "on a refused request, the HTTP status the API server answered",
        403,
    )
    .failure_only(),
    Field::text(
        "forbidden",
        "on a 403, what RBAC refused (`list pods in honeydue (app=api)`)",
        "list pods in honeydue (app=api)",
    )
    .failure_only(),
];

/// One readyz check, in `readyz_checks.<check name>`.
const CHECK_OBSERVATIONS: &[Field] = &[
    Field::flag("ok", "`[+]` in the listing", true),
    Field::text(
        "detail",
        "what follows `failed:` (`reason withheld`)",
        "reason withheld",
    )
    .failure_only(),
];

/// One node, in `nodes.<node name>`.
const NODE_OBSERVATIONS: &[Field] = &[
    Field::flag("ready", "the `Ready` condition is `True`", true),
    Field::text(
        "ready_status",
        "the `Ready` condition's status: `True`, `False` or `Unknown` (the kubelet stopped \
         reporting)",
        "True",
    ),
    Field::text(
        "ready_reason",
        "its reason (`KubeletReady`, `KubeletNotReady`, `NodeStatusUnknown`)",
        "KubeletReady",
    ),
    Field::int("ready_since", "when `Ready` last changed", 1_700_000_000).unit(Unit::UnixSeconds),
    Field::flag("disk_pressure", "`DiskPressure` is `True`", false),
    Field::flag("memory_pressure", "`MemoryPressure` is `True`", false),
    Field::flag("pid_pressure", "`PIDPressure` is `True`", false),
    Field::flag(
        "network_unavailable",
        "`NetworkUnavailable` is `True`",
        false,
    ),
    Field::flag(
        "unschedulable",
        "cordoned (`spec.unschedulable`), as in a drain",
        false,
    ),
    Field::texts(
        "labels",
        "its labels as `key=value` (`honeydue/redis=true`)",
        &["kubernetes.io/hostname=k3s-1", "honeydue/redis=true"],
    ),
];

/// One workload, in `workloads.<namespace/kind/name>`.
const WORKLOAD_OBSERVATIONS: &[Field] = &[
    Field::text("kind", "`deployment` or `job`", "deployment"),
    Field::flag("found", "the object exists", true),
    Field::int("desired", "a Deployment's `spec.replicas`", 2),
    Field::int("ready", "its ready replicas", 2),
    Field::int("available", "its available replicas", 2),
    Field::int("updated", "its replicas of the current revision", 2),
    Field::int(
        "revision",
        "its `deployment.kubernetes.io/revision`: the current rollout",
        7,
    ),
    Field::int(
        "revision_since",
        "when the ReplicaSet of that revision was created: when the rollout happened",
        1_700_000_000,
    )
    .unit(Unit::UnixSeconds),
    Field::text(
        "image",
        "the image(s) of the current revision, `, ` between them",
        "ghcr.io/honeydue/api:1.42.0",
    ),
    Field::int(
        "restarts",
        "container restarts of its pods, summed (`restartCount`, since each pod started)",
        0,
    ),
    Field::int(
        "recent_restarts",
        "containers whose last termination ended within `restart_window` (a lower bound on \
         restarts in the window: the API keeps only the last termination)",
        0,
    ),
    Field::text(
        "last_termination_reason",
        "the latest termination of any container: `OOMKilled`, `Error`, `Completed`",
        "OOMKilled",
    ),
    Field::int(
        "last_termination_exit_code",
        "its exit code (137 for OOMKilled, 2 for a Go panic)",
        137,
    ),
    Field::int("last_termination_at", "when it ended", 1_700_000_000).unit(Unit::UnixSeconds),
    Field::texts(
        "waiting_reasons",
        "reasons containers are waiting (`CrashLoopBackOff`, `ImagePullBackOff`)",
        &[],
    ),
    Field::int("evicted_pods", "pods with `status.reason = Evicted`", 0),
    Field::int("job_active", "a Job's active pods", 0),
    Field::int("job_succeeded", "a Job's succeeded pods", 1),
    Field::int("job_failed", "a Job's failed pods", 0),
    Field::text(
        "job_state",
        "a Job's state: `complete`, `failed`, `running` or `pending`",
        "complete",
    ),
    Field::text(
        "job_reason",
        "the reason of its `Failed` or `Complete` condition (`BackoffLimitExceeded`)",
        "BackoffLimitExceeded",
    ),
];

// === Spec ===

/// The keys of a `kind = "kubernetes"` probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// A kubeconfig to read instead of the pod's service account.
    kubeconfig: Option<PathBuf>,
    /// The context of the kubeconfig (default: its current context).
    context: Option<String>,
    /// Where the service account's `token` and `ca.crt` are (default: the pod's mount).
    service_account_dir: Option<PathBuf>,
    /// `namespace/kind/name`, kind `deployment` or `job`.
    workloads: Option<Vec<String>>,
    /// How far back a termination counts as a recent restart (default 15m).
    restart_window: Option<HumanDuration>,
}

impl Spec {
    /// Validates the keys into a runnable probe, reporting every problem at once.
    pub fn build(self, cx: &BuildContext) -> Result<KubernetesProbe, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        if self.context.is_some() && self.kubeconfig.is_none() {
            errors.at(
                "context",
                "a context is chosen in a kubeconfig: give `kubeconfig` too",
            );
        }
        if self.service_account_dir.is_some() && self.kubeconfig.is_some() {
            errors.at(
                "service_account_dir",
                "the service account is used only without `kubeconfig`; remove one of them",
            );
        }
        let workloads: Vec<Workload> = self
            .workloads
            .unwrap_or_default()
            .iter()
            .filter_map(|text| match Workload::parse(text) {
                Ok(workload) => Some(workload),
                Err(message) => {
                    errors.at("workloads", message);
                    None
                }
            })
            .collect();
        let restart_window = errors
            .keep(duration::RESTART_WINDOW.field(
                "restart_window",
                self.restart_window,
                DEFAULT_RESTART_WINDOW,
            ))
            .unwrap_or(DEFAULT_RESTART_WINDOW);
        let access = match (&self.kubeconfig, errors.is_empty()) {
            (_, false) => None,
            (Some(path), true) => errors
                .keep_all(access::from_kubeconfig(path, self.context.as_deref(), cx))
                .map(Ok),
            (None, true) => Some(
                access::in_cluster(self.service_account_dir.as_deref(), cx).map_err(|reason| {
                    tracing::debug!(%reason, "kubernetes probe: no in-cluster access");
                    reason
                }),
            ),
        };
        errors.finish(|| {
            Some(KubernetesProbe {
                access: access?,
                workloads,
                restart_window,
                resolver: net::Resolver::shared(cx),
            })
        })
    }
}

/// A configured workload: `namespace/kind/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Its namespace.
    pub namespace: String,
    /// What it is.
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
}

crate::closed_set! {
    /// The kinds of workload the probe reads.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum WorkloadKind {
        /// An `apps/v1` Deployment, its ReplicaSets and pods.
        Deployment = "deployment",
        /// A `batch/v1` Job and its pods.
        Job = "job",
    }
}

impl Workload {
    fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        let [namespace, kind, name] = parts.as_slice() else {
            return Err(format!(
                "`{text}` is not `namespace/kind/name` (e.g. `honeydue/deployment/api`)"
            ));
        };
        let kind = kind.parse::<WorkloadKind>().map_err(|_| {
            format!("`{text}`: the kind must be `deployment` or `job`, not `{kind}`")
        })?;
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= 253
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        };
        if !valid(namespace) || !valid(name) {
            return Err(format!(
                "`{text}`: namespace and name must be lowercase DNS names"
            ));
        }
        Ok(Self {
            namespace: (*namespace).to_owned(),
            kind,
            name: (*name).to_owned(),
        })
    }

    /// `namespace/kind/name`, the key of its observations.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

// === probe ===

/// A built `kubernetes` probe.
#[derive(Debug)]
pub struct KubernetesProbe {
    /// How to reach the API server, or why it cannot be (not in a pod): then every run fails
    /// as `connect` with that reason.
    access: Result<Access, String>,
    workloads: Vec<Workload>,
    restart_window: Duration,
    resolver: net::Resolver,
}

impl KubernetesProbe {
    /// Makes one attempt: one connection, every read in turn.
    pub async fn run(&self, ctx: &ProbeContext) -> Outcome {
        let access = match &self.access {
            Ok(access) => access,
            Err(reason) => return Outcome::failure(ErrorClass::Connect, reason.clone()),
        };
        let channel = match transport::Channel::open(ctx, access, &self.resolver).await {
            Ok(channel) => channel,
            Err(failure) => return failure,
        };
        let mut run = read::Run {
            ctx,
            client: channel.client(),
            now: jiff::Timestamp::now(),
            restart_window: self.restart_window,
            observations: Default::default(),
            problems: Vec::new(),
            notes: Vec::new(),
        };
        let read = self.read_all(&mut run).await;
        ctx.end_phase();
        let observations = std::mem::take(&mut run.observations);
        let outcome = match read {
            Err(failure) => failure,
            Ok(()) if run.problems.is_empty() => Outcome::success(
                [vec![self.healthy_message(&observations)], run.notes]
                    .concat()
                    .join("; "),
            ),
            Ok(()) => Outcome::failure(
                ErrorClass::Assertion,
                [run.problems.clone(), run.notes].concat().join("; "),
            ),
        };
        let finished = outcome.error.is_none() || outcome.error == Some(ErrorClass::Assertion);
        let mut outcome = outcome
            .with_all(observations)
            .with("problems", run.problems);
        if finished {
            // Nothing was refused or hung: the request noted in flight is no failure's.
            outcome.observe("request", Value::Null);
        }
        outcome
    }

    async fn read_all(&self, run: &mut read::Run<'_>) -> Result<(), Outcome> {
        run.readyz().await?;
        run.nodes().await?;
        run.metrics_api().await?;
        run.workloads(&self.workloads).await
    }

    fn healthy_message(&self, observations: &crate::probe::Observations) -> String {
        let count = |key: &str| observations.get(key).and_then(Value::as_i64).unwrap_or(0);
        format!(
            "{}/{} nodes ready, readyz passed, metrics API available, {} workloads healthy",
            count("nodes_ready"),
            count("nodes_total"),
            self.workloads.len()
        )
    }

    /// What is probed: the API server and how it is reached.
    pub fn target(&self) -> String {
        match &self.access {
            Ok(access) => format!("{} ({})", access.url(), access.source),
            Err(_) => "the in-cluster API server (not in a pod)".to_owned(),
        }
    }
}
