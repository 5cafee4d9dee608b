//! The reads of one run, each a typed kube-rs call in a phase of its own, and what they observe.
//!
//! Each request is made in its own phase (`readyz`, `nodes`, `apiservice`, `deployment`,
//! `replicasets`, `pods`, `job`), and the request in flight is observed as `request` before it
//! is sent (`list pods in honeydue`): a run cut off at its timeout says which one hung, and a
//! refused one says what it was refused. Objects are read into their k8s-openapi types; what the
//! catalog needs is taken from them into observations, and each thing that is wrong now is added
//! to `problems` (the run's verdict).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use http_body_util::BodyExt as _;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, ListParams};
use kube::core::Selector;

use super::{Workload, WorkloadKind};
use crate::probe::{ErrorClass, Observations, Outcome, ProbeContext, Value, net};

/// The APIService metrics-server registers: `kubectl top` and the HPA read through it.
pub const METRICS_API: &str = "v1beta1.metrics.k8s.io";

/// The annotation a Deployment and its ReplicaSets carry with the rollout revision.
const REVISION: &str = "deployment.kubernetes.io/revision";

/// Waiting reasons that are a pod's normal way up, not a problem.
const ROUTINE_WAITING: &[&str] = &["ContainerCreating", "PodInitializing"];

/// One run's reads, and what they found.
pub struct Run<'a> {
    pub ctx: &'a ProbeContext,
    pub client: kube::Client,
    pub now: Timestamp,
    pub restart_window: Duration,
    pub observations: Observations,
    pub problems: Vec<String>,
    /// What changed within `restart_window` though nothing is wrong now (a rollout, a
    /// container that terminated and came back): said in the message after the problems, so
    /// a diagnosis's evidence carries the revision, the image, the reason and the exit code.
    pub notes: Vec<String>,
}

/// Makes one request in `phase`, observing `what` as the request in flight; a failure is the
/// run's outcome, naming `what`.
async fn call<T>(
    ctx: &ProbeContext,
    phase: &'static str,
    what: &str,
    request: impl Future<Output = kube::Result<T>>,
) -> Result<T, Outcome> {
    ctx.phase(phase);
    ctx.observe("request", what);
    request.await.map_err(|error| failure(what, error))
}

impl Run<'_> {
    /// `GET /readyz?verbose`: every named check, etcd's besides. A failing check answers 500
    /// with the same listing, which is data here, not an error.
    pub async fn readyz(&mut self) -> Result<(), Outcome> {
        let what = "get /readyz";
        self.ctx.phase("readyz");
        self.ctx.observe("request", what);
        let request = http::Request::get("/readyz?verbose")
            .body(kube::client::Body::from(Vec::new()))
            .map_err(|error| Outcome::failure(ErrorClass::Internal, error.to_string()))?;
        let response = self
            .client
            .send(request)
            .await
            .map_err(|error| failure(what, error))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| failure(what, kube::Error::Service(Box::new(error))))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        if status != http::StatusCode::OK && status != http::StatusCode::INTERNAL_SERVER_ERROR {
            let status = serde_json::from_str::<kube::core::Status>(&text).unwrap_or_else(|_| {
                kube::core::Status::failure(text.trim(), "").with_code(status.as_u16())
            });
            return Err(failure(what, kube::Error::Api(status.boxed())));
        }
        let (checks, passed) = parse_readyz(&text).ok_or_else(|| {
            Outcome::failure(
                ErrorClass::Protocol,
                format!(
                    "{what}: answered {} without a verbose check listing",
                    net::describe_status(status)
                ),
            )
        })?;
        let mut failed = Vec::new();
        let mut map = BTreeMap::new();
        for (name, ok, detail) in checks {
            if !ok {
                failed.push(name.clone());
            }
            map.insert(
                name,
                Value::Map(BTreeMap::from([
                    ("ok".to_owned(), Value::Bool(ok)),
                    ("detail".to_owned(), Value::from(detail)),
                ])),
            );
        }
        let etcd = map
            .get("etcd")
            .and_then(|check| check.as_map())
            .and_then(|check| check.get("ok"))
            .cloned()
            .unwrap_or(Value::Null);
        self.observe("readyz_ok", passed);
        self.observe("etcd_ok", etcd);
        self.observe("readyz_failed", failed.clone());
        self.observe("readyz_checks", Value::Map(map));
        if !passed {
            let which = if failed.is_empty() {
                "readyz check failed".to_owned()
            } else {
                format!("readyz: {} failed", failed.join(", "))
            };
            self.problems.push(which);
        }
        Ok(())
    }

    /// Every node: its conditions, whether it is cordoned, its labels.
    pub async fn nodes(&mut self) -> Result<(), Outcome> {
        let api: Api<Node> = Api::all(self.client.clone());
        let list = call(
            self.ctx,
            "nodes",
            "list nodes",
            api.list(&ListParams::default()),
        )
        .await?;
        let mut nodes = BTreeMap::new();
        let mut not_ready = Vec::new();
        for node in &list.items {
            let name = node.metadata.name.clone().unwrap_or_default();
            let record = node_record(node);
            let ready = record.get("ready").and_then(Value::as_bool) == Some(true);
            if !ready {
                let reason = record
                    .get("ready_reason")
                    .and_then(Value::as_str)
                    .map(|reason| format!(" ({reason})"))
                    .unwrap_or_default();
                self.problems.push(format!("node {name} NotReady{reason}"));
                not_ready.push(name.clone());
            }
            for (key, condition) in PRESSURES {
                if record.get(*key).and_then(Value::as_bool) == Some(true) {
                    self.problems.push(format!("node {name} {condition}"));
                }
            }
            nodes.insert(name, Value::Map(record));
        }
        self.observe("nodes_total", list.items.len());
        self.observe("nodes_ready", list.items.len() - not_ready.len());
        self.observe("not_ready_nodes", not_ready);
        self.observe("nodes", Value::Map(nodes));
        Ok(())
    }

    /// The metrics API's registration: `Available` is false when metrics-server is down.
    pub async fn metrics_api(&mut self) -> Result<(), Outcome> {
        let api: Api<APIService> = Api::all(self.client.clone());
        let what = format!("get apiservice {METRICS_API}");
        let service = call(self.ctx, "apiservice", &what, api.get_opt(METRICS_API)).await?;
        let Some(service) = service else {
            self.observe("metrics_api_available", false);
            self.observe("metrics_api_reason", "NotRegistered");
            self.problems.push(format!(
                "{METRICS_API} is not registered (metrics-server not installed)"
            ));
            return Ok(());
        };
        let available = service
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Available"));
        let is_available = available.is_some_and(|condition| condition.status == "True");
        self.observe("metrics_api_available", is_available);
        self.observe(
            "metrics_api_reason",
            available.and_then(|condition| condition.reason.clone()),
        );
        self.observe(
            "metrics_api_message",
            available.and_then(|condition| condition.message.clone()),
        );
        if !is_available {
            let reason = available
                .and_then(|condition| condition.reason.as_deref())
                .unwrap_or("no Available condition");
            self.problems
                .push(format!("{METRICS_API} unavailable ({reason})"));
        }
        Ok(())
    }

    /// Each configured workload, by its kind.
    pub async fn workloads(&mut self, workloads: &[Workload]) -> Result<(), Outcome> {
        let mut map = BTreeMap::new();
        for workload in workloads {
            let record = match workload.kind {
                WorkloadKind::Deployment => self.deployment(workload).await?,
                WorkloadKind::Job => self.job(workload).await?,
            };
            map.insert(workload.key(), Value::Map(record));
        }
        self.observe("workloads", Value::Map(map));
        Ok(())
    }

    async fn deployment(&mut self, workload: &Workload) -> Result<Observations, Outcome> {
        let namespace = &workload.namespace;
        let name = &workload.name;
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("get deployment {name} in {namespace}");
        let mut record = Observations::from([("kind".to_owned(), Value::from("deployment"))]);
        let Some(deployment) = call(self.ctx, "deployment", &what, api.get_opt(name)).await? else {
            return Ok(self.missing(workload, record));
        };
        record.insert("found".to_owned(), Value::Bool(true));
        let desired = deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.replicas)
            .unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        let ready = status.ready_replicas.unwrap_or(0);
        record.insert("desired".to_owned(), desired.into());
        record.insert("ready".to_owned(), ready.into());
        record.insert(
            "available".to_owned(),
            status.available_replicas.unwrap_or(0).into(),
        );
        record.insert(
            "updated".to_owned(),
            status.updated_replicas.unwrap_or(0).into(),
        );
        if ready < desired {
            self.problems
                .push(format!("{}: {ready}/{desired} ready", workload.key()));
        }
        let revision = annotation(&deployment.metadata.annotations, REVISION);
        record.insert(
            "revision".to_owned(),
            Value::from(revision.and_then(|text| text.parse::<i64>().ok())),
        );
        let selector = deployment
            .spec
            .as_ref()
            .map(|spec| spec.selector.clone())
            .unwrap_or_default();
        let selector = selector_text(selector);
        self.rollout(workload, &selector, revision, &mut record)
            .await?;
        self.pods(workload, &selector, &mut record).await?;
        Ok(record)
    }

    /// The ReplicaSet of the current revision: when it was made (when the rollout happened) and
    /// the image(s) it runs.
    async fn rollout(
        &mut self,
        workload: &Workload,
        selector: &str,
        revision: Option<&str>,
        record: &mut Observations,
    ) -> Result<(), Outcome> {
        let namespace = &workload.namespace;
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("list replicasets in {namespace} ({selector})");
        let list = call(
            self.ctx,
            "replicasets",
            &what,
            api.list(&ListParams::default().labels(selector)),
        )
        .await?;
        let current = list.items.iter().find(|set| {
            revision.is_some() && annotation(&set.metadata.annotations, REVISION) == revision
        });
        let Some(current) = current else {
            return Ok(());
        };
        let since = unix(current.metadata.creation_timestamp.as_ref());
        record.insert("revision_since".to_owned(), Value::from(since));
        let images: Vec<String> = current
            .spec
            .as_ref()
            .and_then(|spec| spec.template.as_ref())
            .and_then(|template| template.spec.as_ref())
            .map(|spec| {
                spec.containers
                    .iter()
                    .filter_map(|container| container.image.clone())
                    .collect()
            })
            .unwrap_or_default();
        let image = images.join(", ");
        if let (Some(since), Some(revision)) = (since, revision)
            && let Some(age) = self.recent(since)
        {
            self.notes.push(format!(
                "{}: rolled out revision {revision} ({image}) {age} ago",
                workload.key()
            ));
        }
        record.insert("image".to_owned(), Value::from(image));
        Ok(())
    }

    /// How long ago `at` (Unix seconds) was, as `3m`, when within `restart_window`.
    fn recent(&self, at: i64) -> Option<String> {
        let age = self.now.as_second().saturating_sub(at).max(0);
        let window = i64::try_from(self.restart_window.as_secs()).unwrap_or(i64::MAX);
        (age <= window).then(|| short_age(age))
    }

    async fn job(&mut self, workload: &Workload) -> Result<Observations, Outcome> {
        let namespace = &workload.namespace;
        let name = &workload.name;
        let api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("get job {name} in {namespace}");
        let mut record = Observations::from([("kind".to_owned(), Value::from("job"))]);
        let Some(job) = call(self.ctx, "job", &what, api.get_opt(name)).await? else {
            return Ok(self.missing(workload, record));
        };
        record.insert("found".to_owned(), Value::Bool(true));
        let status = job.status.clone().unwrap_or_default();
        let active = status.active.unwrap_or(0);
        record.insert("job_active".to_owned(), active.into());
        record.insert(
            "job_succeeded".to_owned(),
            status.succeeded.unwrap_or(0).into(),
        );
        record.insert("job_failed".to_owned(), status.failed.unwrap_or(0).into());
        let condition = |kind: &str| {
            status
                .conditions
                .iter()
                .flatten()
                .find(|condition| condition.type_ == kind && condition.status == "True")
        };
        let (state, reason) = if let Some(failed) = condition("Failed") {
            ("failed", failed.reason.clone())
        } else if let Some(complete) = condition("Complete") {
            ("complete", complete.reason.clone())
        } else if active > 0 {
            ("running", None)
        } else {
            ("pending", None)
        };
        record.insert("job_state".to_owned(), Value::from(state));
        record.insert("job_reason".to_owned(), Value::from(reason.clone()));
        if state == "failed" {
            let why = reason
                .map(|reason| format!(" ({reason})"))
                .unwrap_or_default();
            self.problems
                .push(format!("{}: failed{why}", workload.key()));
        }
        let selector = job
            .spec
            .as_ref()
            .and_then(|spec| spec.selector.clone())
            .map(selector_text)
            .unwrap_or_else(|| format!("job-name={name}"));
        self.pods(workload, &selector, &mut record).await?;
        Ok(record)
    }

    fn missing(&mut self, workload: &Workload, mut record: Observations) -> Observations {
        record.insert("found".to_owned(), Value::Bool(false));
        self.problems.push(format!("{}: not found", workload.key()));
        record
    }

    /// The workload's pods: restarts, the latest termination, waiting reasons, evictions.
    async fn pods(
        &mut self,
        workload: &Workload,
        selector: &str,
        record: &mut Observations,
    ) -> Result<(), Outcome> {
        let namespace = &workload.namespace;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("list pods in {namespace} ({selector})");
        let list = call(
            self.ctx,
            "pods",
            &what,
            api.list(&ListParams::default().labels(selector)),
        )
        .await?;
        let mut summary = PodSummary::default();
        for pod in &list.items {
            summary.add(pod, self.now, self.restart_window);
        }
        if !summary.problem_waiting.is_empty() {
            self.problems.push(format!(
                "{}: {}",
                workload.key(),
                summary.problem_waiting.join(", ")
            ));
        }
        if let Some((at, reason, code)) = &summary.last
            && let Some(age) = self.recent(at.as_second())
        {
            let reason = reason.as_deref().unwrap_or("terminated");
            self.notes.push(format!(
                "{}: last terminated {reason} (exit code {code}) {age} ago",
                workload.key()
            ));
        }
        summary.write(record);
        Ok(())
    }

    /// Records what was read, in the run's context too: a run cut off at its timeout still
    /// reports what it read before the request that hung.
    fn observe(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        self.ctx.observe(key, value.clone());
        self.observations.insert(key.to_owned(), value);
    }
}

/// The node conditions that are a problem when `True`, by observation key.
const PRESSURES: &[(&str, &str)] = &[
    ("disk_pressure", "DiskPressure"),
    ("memory_pressure", "MemoryPressure"),
    ("pid_pressure", "PIDPressure"),
    ("network_unavailable", "NetworkUnavailable"),
];

fn node_record(node: &Node) -> Observations {
    let conditions = node
        .status
        .as_ref()
        .and_then(|status| status.conditions.clone())
        .unwrap_or_default();
    let find = |kind: &str| conditions.iter().find(|condition| condition.type_ == kind);
    let ready = find("Ready");
    let mut record = Observations::new();
    record.insert(
        "ready".to_owned(),
        Value::Bool(ready.is_some_and(|condition| condition.status == "True")),
    );
    record.insert(
        "ready_status".to_owned(),
        Value::from(ready.map_or("Unknown".to_owned(), |condition| condition.status.clone())),
    );
    record.insert(
        "ready_reason".to_owned(),
        Value::from(ready.and_then(|condition| condition.reason.clone())),
    );
    record.insert(
        "ready_since".to_owned(),
        Value::from(ready.and_then(|condition| unix(condition.last_transition_time.as_ref()))),
    );
    for (key, kind) in PRESSURES {
        let on = find(kind).is_some_and(|condition| condition.status == "True");
        record.insert((*key).to_owned(), Value::Bool(on));
    }
    let unschedulable = node
        .spec
        .as_ref()
        .and_then(|spec| spec.unschedulable)
        .unwrap_or(false);
    record.insert("unschedulable".to_owned(), Value::Bool(unschedulable));
    let labels: Vec<String> = node
        .metadata
        .labels
        .iter()
        .flatten()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    record.insert("labels".to_owned(), Value::from(labels));
    record
}

/// What a workload's pods say, summed.
#[derive(Default)]
struct PodSummary {
    restarts: i64,
    recent_restarts: i64,
    /// The latest termination of any container: when, why, the exit code.
    last: Option<(Timestamp, Option<String>, i32)>,
    waiting: Vec<String>,
    problem_waiting: Vec<String>,
    evicted: i64,
}

impl PodSummary {
    fn add(&mut self, pod: &Pod, now: Timestamp, window: Duration) {
        let Some(status) = &pod.status else { return };
        if status.reason.as_deref() == Some("Evicted") {
            self.evicted += 1;
            return;
        }
        let containers = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for container in containers {
            self.container(container, now, window);
        }
    }

    fn container(&mut self, container: &ContainerStatus, now: Timestamp, window: Duration) {
        self.restarts += i64::from(container.restart_count);
        let terminated = container
            .last_state
            .as_ref()
            .and_then(|state| state.terminated.as_ref())
            .or_else(|| {
                // A Job's container that ran once and failed has no last state: its current
                // state is the termination.
                container
                    .state
                    .as_ref()
                    .and_then(|state| state.terminated.as_ref())
                    .filter(|terminated| terminated.exit_code != 0)
            });
        if let Some(terminated) = terminated
            && let Some(finished) = terminated.finished_at.as_ref().map(|time| time.0)
        {
            let age = now.duration_since(finished);
            if age.is_negative() || age.unsigned_abs() <= window {
                self.recent_restarts += 1;
            }
            if self.last.as_ref().is_none_or(|(at, _, _)| finished > *at) {
                self.last = Some((finished, terminated.reason.clone(), terminated.exit_code));
            }
        }
        let waiting = container
            .state
            .as_ref()
            .and_then(|state| state.waiting.as_ref())
            .and_then(|waiting| waiting.reason.clone());
        if let Some(reason) = waiting {
            if !ROUTINE_WAITING.contains(&reason.as_str()) {
                let note = format!("container {} {reason}", container.name);
                if !self.problem_waiting.contains(&note) {
                    self.problem_waiting.push(note);
                }
            }
            if !self.waiting.contains(&reason) {
                self.waiting.push(reason);
            }
        }
    }

    fn write(self, record: &mut Observations) {
        record.insert("restarts".to_owned(), self.restarts.into());
        record.insert("recent_restarts".to_owned(), self.recent_restarts.into());
        let (at, reason, code) = match self.last {
            Some((at, reason, code)) => (Some(at.as_second()), reason, Some(code)),
            None => (None, None, None),
        };
        record.insert("last_termination_reason".to_owned(), Value::from(reason));
        record.insert("last_termination_exit_code".to_owned(), Value::from(code));
        record.insert("last_termination_at".to_owned(), Value::from(at));
        record.insert("waiting_reasons".to_owned(), Value::from(self.waiting));
        record.insert("evicted_pods".to_owned(), self.evicted.into());
    }
}

fn annotation<'a>(annotations: &'a Option<BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    annotations
        .as_ref()
        .and_then(|annotations| annotations.get(key))
        .map(String::as_str)
}

/// Seconds as a person says them in a message: `40s`, `3m`, `2h`.
fn short_age(seconds: i64) -> String {
    if seconds < 120 {
        format!("{seconds}s")
    } else if seconds < 7200 {
        format!("{}m", seconds / 60)
    } else {
        format!("{}h", seconds / 3600)
    }
}

fn unix(time: Option<&Time>) -> Option<i64> {
    time.map(|time| time.0.as_second())
}

/// A selector as a `labelSelector` query (`app=api`); one kube-rs cannot express (an unknown
/// operator) selects by nothing rather than failing the run.
fn selector_text(selector: LabelSelector) -> String {
    Selector::try_from(selector)
        .map(|selector| selector.to_string())
        .unwrap_or_default()
}

/// One line of a verbose health listing: the check's name, whether it passed, why not.
type Check = (String, bool, Option<String>);

/// `/readyz?verbose` text: each `[+]name ok` / `[-]name failed: reason`, and whether the last
/// line says the check passed. `None` when there is no listing at all.
pub fn parse_readyz(text: &str) -> Option<(Vec<Check>, bool)> {
    let mut checks = Vec::new();
    let mut verdict = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("[+]") {
            let name = rest.strip_suffix(" ok").unwrap_or(rest).trim();
            checks.push((name.to_owned(), true, None));
        } else if let Some(rest) = line.strip_prefix("[-]") {
            let (name, detail) = match rest.split_once(" failed") {
                Some((name, detail)) => {
                    let detail = detail.trim_start_matches(':').trim();
                    (name.trim(), (!detail.is_empty()).then(|| detail.to_owned()))
                }
                None => (rest.trim(), None),
            };
            checks.push((name.to_owned(), false, detail));
        } else if line.ends_with("check passed") {
            verdict = Some(true);
        } else if line.ends_with("check failed") {
            verdict = Some(false);
        }
    }
    let verdict = verdict?;
    Some((checks, verdict))
}

// === failures ===

/// The outcome of a request for `what` that failed: refused credentials and RBAC are `auth`
/// (403 names what was refused, so the ClusterRole to fix is obvious), other statuses
/// `http_status`, a connection that went away `connect`, an answer that is not the object
/// `protocol`.
pub fn failure(what: &str, error: kube::Error) -> Outcome {
    match error {
        kube::Error::Api(status) => api_failure(what, &status),
        kube::Error::SerdeError(error) => Outcome::failure(
            ErrorClass::Protocol,
            format!("{what}: the answer is not the object expected: {error}"),
        ),
        kube::Error::HyperError(error) => hyper_failure(what, &error),
        kube::Error::Service(error) => match net::find_source::<hyper::Error>(error.as_ref()) {
            Some(error) => hyper_failure(what, error),
            None => Outcome::failure(
                ErrorClass::Protocol,
                format!("{what}: {}", net::describe_chain(error.as_ref())),
            ),
        },
        other => Outcome::failure(
            ErrorClass::Protocol,
            format!("{what}: {}", net::describe_chain(&other)),
        ),
    }
}

fn api_failure(what: &str, status: &kube::core::Status) -> Outcome {
    let said = if status.message.is_empty() {
        String::new()
    } else {
        format!(": {}", status.message)
    };
    let outcome = match status.code {
        401 => Outcome::failure(
            ErrorClass::Auth,
            format!(
                "unauthorized: the API server refused the token (401 on {what}); it is \
                 expired, revoked or for another cluster"
            ),
        ),
        403 => Outcome::failure(
            ErrorClass::Forbidden,
            format!("forbidden: cannot {what} (RBAC refused it{said})"),
        )
        .with("forbidden", what),
        code => {
            let reason = http::StatusCode::from_u16(code)
                .map(net::describe_status)
                .unwrap_or_else(|_| code.to_string());
            Outcome::failure(ErrorClass::HttpStatus, format!("{what}: {reason}{said}"))
        }
    };
    outcome.with("status", i64::from(status.code))
}

fn hyper_failure(what: &str, error: &hyper::Error) -> Outcome {
    if error.is_parse() || error.is_parse_status() {
        return Outcome::failure(
            ErrorClass::Protocol,
            format!("{what}: the answer is not HTTP: {error}"),
        );
    }
    if let Some(io) = net::find_source::<std::io::Error>(error) {
        return net::io_failure(io, what, ErrorClass::Protocol);
    }
    if error.is_incomplete_message() || error.is_closed() || error.is_canceled() {
        return Outcome::failure(
            ErrorClass::Connect,
            format!("{what}: the API server closed the connection"),
        );
    }
    Outcome::failure(ErrorClass::Protocol, format!("{what}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_listing_is_read_check_by_check() {
        let text = "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n\
                    [+]poststarthook/start-apiextensions-informers ok\nreadyz check failed\n";
        let (checks, passed) = parse_readyz(text).unwrap();
        assert!(!passed);
        assert_eq!(
            checks[2],
            ("etcd".to_owned(), false, Some("reason withheld".to_owned()))
        );
        assert_eq!(
            checks[3],
            (
                "poststarthook/start-apiextensions-informers".to_owned(),
                true,
                None
            )
        );
        assert!(parse_readyz("ok").is_none());
    }

    #[test]
    fn ages_read_as_a_person_says_them() {
        assert_eq!(short_age(40), "40s");
        assert_eq!(short_age(180), "3m");
        assert_eq!(short_age(3 * 3600), "3h");
    }
}
