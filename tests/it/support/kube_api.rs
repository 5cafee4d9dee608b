//! An in-process Kubernetes API server, speaking the real protocol: HTTPS with a certificate of
//! the test CA, bearer-token authentication (401 `Status` without the right token), the real
//! paths (`/readyz`, `/api/v1/nodes`, `/apis/apps/v1/namespaces/NS/deployments/NAME`, lists with
//! `labelSelector`), `Status` bodies for 401, 403 and 404, and objects as `kubectl get -o json`
//! prints them ([`fixtures`]). No real API server can be installed here (no package ships
//! kube-apiserver or k3s), so this is the honest stand-in: kube-rs and the probe cannot tell.
//!
//! A test starts from [`Cluster::honeydue`], changes what its scenario needs, and serves it.
//! RBAC is modelled by [`Cluster::forbid`] (a verb and resource the service account lacks), a
//! hung server by [`Cluster::hang`] (a resource whose requests are never answered).

pub mod fixtures;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::AbortOnDropHandle;

use super::certs::TestCa;

/// The token the service account has.
pub const TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImhvbmV5Z3VpZGUifQ.test-token.signature";

/// The workloads a honeyguide in the honeyDue cluster watches.
pub const WORKLOADS: &[&str] = &[
    "honeydue/deployment/api",
    "honeydue/deployment/admin",
    "honeydue/deployment/worker",
    "honeydue/deployment/redis",
    "kube-system/deployment/coredns",
    "kube-system/deployment/metrics-server",
    "honeydue/job/honeydue-migrate",
];

/// The cluster's state, as served.
#[derive(Clone)]
pub struct Cluster {
    /// Every object, as JSON.
    pub objects: Vec<Value>,
    /// `/readyz?verbose`: status and text.
    pub readyz: (u16, String),
    /// `(verb, resource)` pairs RBAC refuses.
    pub forbidden: Vec<(String, String)>,
    /// Resources (or `readyz`) whose requests are never answered.
    pub hang: Vec<String>,
}

impl Cluster {
    /// The healthy honeyDue cluster: three Ready nodes (Redis pinned to the first), every
    /// Deployment available, the migrate Job complete, metrics-server available, readyz passed.
    pub fn honeydue() -> Self {
        let mut objects: Vec<Value> = fixtures::NODES
            .iter()
            .enumerate()
            .map(|(index, name)| fixtures::node(name, index == 0))
            .collect();
        let apps = [
            (
                "honeydue",
                "api",
                "ghcr.io/honeydue/api:1.42.0",
                2,
                14,
                3 * 86_400,
            ),
            (
                "honeydue",
                "admin",
                "ghcr.io/honeydue/admin:1.42.0",
                1,
                9,
                3 * 86_400,
            ),
            (
                "honeydue",
                "worker",
                "ghcr.io/honeydue/api:1.42.0",
                1,
                12,
                3 * 86_400,
            ),
            ("honeydue", "redis", "redis:7.4-alpine", 1, 3, 30 * 86_400),
            (
                "kube-system",
                "coredns",
                "rancher/mirrored-coredns-coredns:1.11.3",
                1,
                1,
                90 * 86_400,
            ),
            (
                "kube-system",
                "metrics-server",
                "rancher/mirrored-metrics-server:v0.7.2",
                1,
                1,
                90 * 86_400,
            ),
        ];
        for (namespace, name, image, replicas, revision, rolled_out) in apps {
            let app = fixtures::app(namespace, name, image, replicas, revision, rolled_out);
            objects.push(app.deployment);
            objects.push(app.replica_set);
            objects.extend(app.pods);
        }
        objects.push(fixtures::migrate_job());
        objects.push(fixtures::migrate_pod(0));
        objects.push(fixtures::metrics_api_service(None));
        Self {
            objects,
            readyz: fixtures::readyz(false),
            forbidden: Vec::new(),
            hang: Vec::new(),
        }
    }

    /// The object of `kind` called `name`, to change.
    pub fn object(&mut self, kind: &str, name: &str) -> &mut Value {
        self.objects
            .iter_mut()
            .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in the fixture cluster"))
    }

    /// The pods whose name starts with `prefix`, to change.
    pub fn pods(&mut self, prefix: &str) -> Vec<&mut Value> {
        self.objects
            .iter_mut()
            .filter(|object| {
                object["kind"] == "Pod"
                    && object["metadata"]["name"]
                        .as_str()
                        .is_some_and(|name| name.starts_with(prefix))
            })
            .collect()
    }

    /// The Deployment `name` in `honeydue` rolled out `seconds_ago` to `revision` running
    /// `image`, as a rollout leaves it: the Deployment at the new revision, its new ReplicaSet
    /// and pods, and the previous ReplicaSet kept, scaled to 0 (what `rollout undo` returns to).
    pub fn rolled_out(&mut self, name: &str, image: &str, revision: i64, seconds_ago: i64) {
        let replicas = self.object("Deployment", name)["spec"]["replicas"]
            .as_i64()
            .and_then(|count| i32::try_from(count).ok())
            .expect("replicas");
        let pod_prefix = format!("{name}-");
        self.objects.retain(|object| {
            let owned = object["metadata"]["name"]
                .as_str()
                .is_some_and(|object_name| object_name.starts_with(&pod_prefix));
            !(object["kind"] == "Deployment" && object["metadata"]["name"] == name
                || object["kind"] == "Pod" && owned)
        });
        for object in &mut self.objects {
            if object["kind"] == "ReplicaSet"
                && object["metadata"]["ownerReferences"][0]["name"] == name
            {
                object["spec"]["replicas"] = 0.into();
                object["status"] = json!({"observedGeneration": 2, "replicas": 0});
            }
        }
        let app = fixtures::app("honeydue", name, image, replicas, revision, seconds_ago);
        self.objects.push(app.deployment);
        self.objects.push(app.replica_set);
        self.objects.extend(app.pods);
    }

    /// RBAC refuses `verb` on `resource` (`list`, `pods`).
    pub fn forbid(&mut self, verb: &str, resource: &str) {
        self.forbidden.push((verb.to_owned(), resource.to_owned()));
    }

    /// Requests for `resource` (or `readyz`) are accepted and never answered.
    pub fn hang(&mut self, resource: &str) {
        self.hang.push(resource.to_owned());
    }
}

/// A running API server; stops when dropped.
pub struct KubeApi {
    pub addr: SocketAddr,
    pub ca: TestCa,
    seen: Arc<Mutex<Vec<String>>>,
    _task: AbortOnDropHandle<()>,
}

impl KubeApi {
    /// Serves `cluster` on a free loopback port, after checking every fixture against its
    /// k8s-openapi type.
    pub async fn start(cluster: Cluster) -> Self {
        for object in &cluster.objects {
            fixtures::check(object);
        }
        let ca = TestCa::new();
        let leaf = ca.leaf(&["127.0.0.1", "kubernetes.default.svc"]);
        let acceptor = TlsAcceptor::from(Arc::new(leaf.server_config(&[b"h2", b"http/1.1"])));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cluster = Arc::new(cluster);
        let recorder = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let cluster = cluster.clone();
                let seen = recorder.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |request: Request<Incoming>| {
                        let cluster = cluster.clone();
                        let seen = seen.clone();
                        async move { Ok::<_, Infallible>(answer(&cluster, &seen, &request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            ca,
            seen,
            _task: AbortOnDropHandle::new(task),
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Every request seen, as `METHOD path?query`.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// A kubeconfig for this server with `token` (a context `honeydue` and a decoy `staging`
    /// pointing nowhere), written to `dir/kubeconfig`.
    pub fn write_kubeconfig(&self, dir: &std::path::Path, token: &str) -> std::path::PathBuf {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca.pem());
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n\
             - name: honeydue\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\n\
             - name: staging\n  cluster:\n    server: https://127.0.0.1:1\n    certificate-authority-data: {ca}\n\
             contexts:\n\
             - name: honeydue\n  context:\n    cluster: honeydue\n    user: honeyguide\n    namespace: honeydue\n\
             - name: staging\n  context:\n    cluster: staging\n    user: honeyguide\n\
             current-context: staging\n\
             users:\n- name: honeyguide\n  user:\n    token: {token}\n",
            url = self.url()
        );
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }
}

async fn answer(
    cluster: &Cluster,
    seen: &Mutex<Vec<String>>,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    seen.lock()
        .unwrap()
        .push(format!("{} {path}?{query}", request.method()));
    let authorized = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        == Some(format!("Bearer {TOKEN}").as_str());
    if !authorized {
        return status(401, "Unauthorized", "Unauthorized", json!(null));
    }
    let route = Route::parse(&path, &query);
    if cluster.hang.contains(&route.resource) {
        std::future::pending::<()>().await;
    }
    if route.resource == "readyz" {
        if !query.split('&').any(|pair| pair == "verbose") {
            return Response::builder()
                .status(StatusCode::NOT_IMPLEMENTED)
                .body(Full::new(Bytes::from(
                    "this test server serves only /readyz?verbose",
                )))
                .unwrap();
        }
        let (code, text) = &cluster.readyz;
        return Response::builder()
            .status(*code)
            .header("content-type", "text/plain; charset=utf-8")
            .header("x-content-type-options", "nosniff")
            .body(Full::new(Bytes::from(text.clone())))
            .unwrap();
    }
    let Some(kind) = route.kind() else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            json!(null),
        );
    };
    let verb = if route.name.is_some() { "get" } else { "list" };
    if cluster
        .forbidden
        .iter()
        .any(|(v, r)| v == verb && *r == route.resource)
    {
        let scope = match &route.namespace {
            Some(namespace) => format!(" in the namespace \"{namespace}\""),
            None => " at the cluster scope".to_owned(),
        };
        let message = format!(
            "{resource}{group} is forbidden: User \"system:serviceaccount:honeydue:honeyguide\" \
             cannot {verb} resource \"{resource}\" in API group \"{api_group}\"{scope}",
            resource = route.resource,
            group = if route.group.is_empty() {
                String::new()
            } else {
                format!(".{}", route.group)
            },
            api_group = route.group,
        );
        return status(403, "Forbidden", &message, json!({"kind": route.resource}));
    }
    let matching = cluster.objects.iter().filter(|object| {
        object["kind"] == kind
            && route
                .namespace
                .as_deref()
                .is_none_or(|namespace| object["metadata"]["namespace"] == namespace)
    });
    match &route.name {
        Some(name) => match matching
            .into_iter()
            .find(|object| object["metadata"]["name"] == name.as_str())
        {
            Some(object) => json_response(object),
            None => {
                let group = if route.group.is_empty() {
                    String::new()
                } else {
                    format!(".{}", route.group)
                };
                status(
                    404,
                    "NotFound",
                    &format!("{}{group} \"{name}\" not found", route.resource),
                    json!({"name": name, "group": route.group, "kind": route.resource}),
                )
            }
        },
        None => {
            let selector = query_value(&query, "labelSelector");
            let items: Vec<Value> = matching
                .filter(|object| selects(selector.as_deref(), &object["metadata"]["labels"]))
                .cloned()
                .collect();
            let api_version = if route.group.is_empty() {
                route.version.clone()
            } else {
                format!("{}/{}", route.group, route.version)
            };
            json_response(&json!({
                "apiVersion": api_version,
                "items": items,
                "kind": format!("{kind}List"),
                "metadata": {"resourceVersion": "918300"},
            }))
        }
    }
}

/// What a request path names.
struct Route {
    group: String,
    version: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
}

impl Route {
    fn parse(path: &str, _query: &str) -> Self {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match parts.as_slice() {
            ["readyz", ..] => return Self::named("readyz"),
            ["api", version, rest @ ..] => (String::new(), (*version).to_owned(), rest),
            ["apis", group, version, rest @ ..] => {
                ((*group).to_owned(), (*version).to_owned(), rest)
            }
            _ => return Self::named("unknown"),
        };
        let (namespace, rest) = match rest {
            ["namespaces", namespace, rest @ ..] if !rest.is_empty() => {
                (Some((*namespace).to_owned()), rest)
            }
            rest => (None, rest),
        };
        let (resource, name) = match rest {
            [resource] => ((*resource).to_owned(), None),
            [resource, name] => ((*resource).to_owned(), Some((*name).to_owned())),
            _ => ("unknown".to_owned(), None),
        };
        Self {
            group,
            version,
            namespace,
            resource,
            name,
        }
    }

    fn named(resource: &str) -> Self {
        Self {
            group: String::new(),
            version: String::new(),
            namespace: None,
            resource: resource.to_owned(),
            name: None,
        }
    }

    /// The kind the path serves, when its group and version serve it.
    fn kind(&self) -> Option<&'static str> {
        let kinds: BTreeMap<(&str, &str, &str), &str> = BTreeMap::from([
            (("", "v1", "nodes"), "Node"),
            (("", "v1", "pods"), "Pod"),
            (("apps", "v1", "deployments"), "Deployment"),
            (("apps", "v1", "replicasets"), "ReplicaSet"),
            (("batch", "v1", "jobs"), "Job"),
            (
                ("apiregistration.k8s.io", "v1", "apiservices"),
                "APIService",
            ),
        ]);
        kinds
            .get(&(
                self.group.as_str(),
                self.version.as_str(),
                self.resource.as_str(),
            ))
            .copied()
    }
}

/// The decoded value of `key` in a query string.
fn query_value(query: &str, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.into_owned())
}

/// Whether an equality selector (`a=b,c=d`, as kube-rs writes matchLabels) selects `labels`.
fn selects(selector: Option<&str>, labels: &Value) -> bool {
    let Some(selector) = selector.filter(|selector| !selector.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once('=') {
        Some((key, value)) => labels[key.trim_end_matches('=')] == value.trim_start_matches('='),
        None => panic!("the test server understands only equality selectors, not `{term}`"),
    })
}

fn json_response(value: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("audit-id", "7c0e3a52-0d1b-4c62-9f5e-2b8d3a1f0e11")
        .body(Full::new(Bytes::from(value.to_string())))
        .unwrap()
}

/// A `Status` error body, as the API server sends with every error.
fn status(code: u16, reason: &str, message: &str, details: Value) -> Response<Full<Bytes>> {
    let mut body = json!({
        "apiVersion": "v1",
        "code": code,
        "kind": "Status",
        "message": message,
        "metadata": {},
        "reason": reason,
        "status": "Failure",
    });
    if !details.is_null() {
        body["details"] = details;
    }
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
