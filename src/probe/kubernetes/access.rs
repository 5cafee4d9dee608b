//! Where the API server is and who the probe is to it, settled once at load: the pod's service
//! account (the default, as `kubectl` and kube-rs do in a pod), or one context of a kubeconfig.
//!
//! kube-rs reads both (`Config::incluster`, `Kubeconfig::read_from`), but its in-cluster reader
//! takes fixed paths and the process environment, and its kubeconfig loader is async and can run
//! exec plugins. So the kubeconfig is parsed with kube's types and the context chosen here, and
//! the in-cluster settings are built from the load's environment ([`BuildContext::env`]) and the
//! files of `service_account_dir`. Both end in an [`Access`]: the server's host and port, TLS
//! settings on the binary's one provider, and a [`Credential`].
//!
//! The token of a service account is rotated by the kubelet (bound tokens live about an hour), so
//! a token *file* is read at every run, as client-go does; it is read once here too, so that a
//! missing file is a load error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use kube::config::{AuthInfo, Cluster, Kubeconfig};
use secrecy::ExposeSecret as _;
use url::Url;

use crate::probe::net::{self, TlsSettings};
use crate::spec::{BuildContext, FieldError, Secret};
use crate::tls::{self, Identity, Verification};

/// Where a pod finds its service account.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The API server's TLS: HTTP/1.1 only, since a run's requests go one after another on one
/// connection and HTTP/2 would buy nothing.
const ALPN: &[&[u8]] = &[b"http/1.1"];

/// How one probe reaches the API server.
#[derive(Debug)]
pub struct Access {
    /// Host name or IP literal (without brackets) to resolve and connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The name the server's certificate must carry (SNI): the host, or a kubeconfig's
    /// `tls-server-name`.
    pub server_name: String,
    /// TLS settings: the cluster's CA (or the system roots), a client certificate if any.
    pub tls: TlsSettings,
    /// What is sent as `Authorization`.
    pub credential: Credential,
    /// For humans: `in-cluster` or `kubeconfig NAME (context CTX)`.
    pub source: String,
}

/// What the probe authenticates with, besides a client certificate.
#[derive(Debug)]
pub enum Credential {
    /// Nothing (a client certificate alone, or anonymous).
    None,
    /// A bearer token given in the kubeconfig.
    Token(Secret),
    /// A bearer token read from this file at every run (a service account's, rotated).
    TokenFile(PathBuf),
}

impl Access {
    /// `https://host:port`, for humans.
    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

// === in-cluster ===

/// The pod's own access: `KUBERNETES_SERVICE_HOST`/`_PORT`, and `token` and `ca.crt` in `dir`
/// (the service account's mount unless `service_account_dir` says otherwise).
///
/// Not being in a pod is not a load error but the reason every run fails (as `connect`): one
/// `probes.toml` serves the instance in the cluster and the one outside it, and the outside one
/// must still load it. The reason says what to do.
pub fn in_cluster(dir: Option<&Path>, cx: &BuildContext) -> Result<Access, String> {
    let dir = dir.map_or_else(|| PathBuf::from(SERVICE_ACCOUNT_DIR), |dir| cx.path(dir));
    let host = cx
        .env("KUBERNETES_SERVICE_HOST")
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .ok_or(
            "not in a pod (KUBERNETES_SERVICE_HOST is not set): give `kubeconfig = \"path\"` to \
             reach the cluster from outside",
        )?;
    let port = match cx.env("KUBERNETES_SERVICE_PORT").map(str::trim) {
        None | Some("") => 443,
        Some(text) => text
            .parse::<u16>()
            .map_err(|_| "KUBERNETES_SERVICE_PORT is not a port number".to_owned())?,
    };
    let ca = dir.join("ca.crt");
    let roots = tls::roots_from_pem_file(&ca)
        .map_err(|error| format!("the service account's CA: {error}"))?;
    let tls = TlsSettings::new(&Verification::Roots(Arc::new(roots)), ALPN)?;
    let token = dir.join("token");
    cx.read_secret_file("service_account_dir", &token)
        .map_err(|error| {
            format!(
                "cannot read the service account token {}: {error}",
                token.display()
            )
        })?;
    let host = bare(host).to_owned();
    Ok(Access {
        server_name: host.clone(),
        host,
        port,
        tls,
        credential: Credential::TokenFile(token),
        source: "in-cluster service account".to_owned(),
    })
}

fn bare(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host)
}

// === kubeconfig ===

/// The access of `context` (or the current context) of the kubeconfig at `path`. Errors name
/// `kubeconfig` or `context`.
pub fn from_kubeconfig(
    path: &Path,
    context: Option<&str>,
    cx: &BuildContext,
) -> Result<Access, Vec<FieldError>> {
    let full = cx.path(path);
    let config = Kubeconfig::read_from(&full).map_err(|error| {
        vec![FieldError::new(
            "kubeconfig",
            format!(
                "cannot read {}: {}",
                full.display(),
                net::describe_chain(&error)
            ),
        )]
    })?;
    let (context_name, cluster, user) = choose(&config, context)?;
    let problem = |message: String| vec![FieldError::new("kubeconfig", message)];
    let server = cluster.server.as_deref().ok_or_else(|| {
        problem(format!(
            "cluster of context `{context_name}` has no `server`"
        ))
    })?;
    let url = Url::parse(server).map_err(|error| {
        problem(format!(
            "the server of context `{context_name}` is not a URL: {error}"
        ))
    })?;
    if url.scheme() != "https" {
        return Err(problem(format!(
            "the server of context `{context_name}` must be https://, not {}",
            crate::spec::shown_scheme(url.scheme())
        )));
    }
    if cluster.proxy_url.is_some() {
        return Err(problem(format!(
            "context `{context_name}` goes through a proxy (`proxy-url`), which a probe does not \
             use: it would measure the proxy"
        )));
    }
    let host = bare(url.host_str().unwrap_or_default()).to_owned();
    let port = url.port().unwrap_or(443);
    let verification = verification(cluster).map_err(problem)?;
    let (credential, identity) = credential(user, &context_name).map_err(problem)?;
    let tls =
        TlsSettings::with_identity(&verification, ALPN, identity.as_ref()).map_err(problem)?;
    Ok(Access {
        server_name: cluster
            .tls_server_name
            .clone()
            .unwrap_or_else(|| host.clone()),
        host,
        port,
        tls,
        credential,
        source: format!("kubeconfig {} (context {context_name})", path.display()),
    })
}

/// The named context (or the current one), its cluster and its user.
fn choose<'k>(
    config: &'k Kubeconfig,
    context: Option<&str>,
) -> Result<(String, &'k Cluster, Option<&'k AuthInfo>), Vec<FieldError>> {
    let known = || {
        config
            .contexts
            .iter()
            .map(|named| format!("`{}`", named.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (key, name) = match (context, config.current_context.as_deref()) {
        (Some(name), _) => ("context", name),
        (None, Some(name)) => ("kubeconfig", name),
        (None, None) => {
            return Err(vec![FieldError::new(
                "context",
                format!(
                    "the kubeconfig has no current-context: name one of {}",
                    known()
                ),
            )]);
        }
    };
    let found = config
        .contexts
        .iter()
        .find(|named| named.name == name)
        .and_then(|named| named.context.as_ref())
        .ok_or_else(|| {
            vec![FieldError::new(
                key,
                format!("no context `{name}` in the kubeconfig (it has {})", known()),
            )]
        })?;
    let cluster = config
        .clusters
        .iter()
        .find(|named| named.name == found.cluster)
        .and_then(|named| named.cluster.as_ref())
        .ok_or_else(|| {
            vec![FieldError::new(
                key,
                format!(
                    "context `{name}` names cluster `{}`, which the kubeconfig lacks",
                    found.cluster
                ),
            )]
        })?;
    let user = match &found.user {
        None => None,
        Some(user) => Some(
            config
                .auth_infos
                .iter()
                .find(|named| &named.name == user)
                .and_then(|named| named.auth_info.as_ref())
                .ok_or_else(|| {
                    vec![FieldError::new(
                        key,
                        format!("context `{name}` names user `{user}`, which the kubeconfig lacks"),
                    )]
                })?,
        ),
    };
    Ok((name.to_owned(), cluster, user))
}

fn verification(cluster: &Cluster) -> Result<Verification, String> {
    if cluster.insecure_skip_tls_verify == Some(true) {
        return Ok(Verification::Disabled);
    }
    let pem = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => decode(data, "certificate-authority-data")?,
        (None, Some(path)) => std::fs::read(path)
            .map_err(|error| format!("cannot read certificate-authority {path}: {error}"))?,
        (None, None) => return Ok(Verification::Roots(Arc::new(tls::system_roots()))),
    };
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|error| format!("bad certificate authority PEM: {error}"))?;
        roots
            .add(cert)
            .map_err(|error| format!("bad certificate authority: {error}"))?;
    }
    if roots.is_empty() {
        return Err("the certificate authority holds no PEM certificate".to_owned());
    }
    Ok(Verification::Roots(Arc::new(roots)))
}

fn credential(
    user: Option<&AuthInfo>,
    context: &str,
) -> Result<(Credential, Option<Identity>), String> {
    let Some(user) = user else {
        return Ok((Credential::None, None));
    };
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(format!(
            "the user of context `{context}` authenticates through an exec plugin or auth \
             provider, which a probe does not run: give it a service account token instead"
        ));
    }
    if user.username.is_some() || user.password.is_some() {
        return Err(format!(
            "the user of context `{context}` has a username and password, which Kubernetes no \
             longer accepts: use a token or a client certificate"
        ));
    }
    let certificate = match (&user.client_certificate_data, &user.client_certificate) {
        (Some(data), _) => Some(decode(data, "client-certificate-data")?),
        (None, Some(path)) => Some(
            std::fs::read(path)
                .map_err(|error| format!("cannot read client-certificate {path}: {error}"))?,
        ),
        (None, None) => None,
    };
    let key = match (&user.client_key_data, &user.client_key) {
        (Some(data), _) => Some(decode(data.expose_secret(), "client-key-data")?),
        (None, Some(path)) => Some(
            std::fs::read(path)
                .map_err(|error| format!("cannot read client-key {path}: {error}"))?,
        ),
        (None, None) => None,
    };
    let identity = match (certificate, key) {
        (Some(certificate), Some(key)) => Some(Identity::from_pem(&certificate, &key)?),
        (None, None) => None,
        _ => {
            return Err(format!(
                "the user of context `{context}` has a client certificate without its key, or a \
                 key without its certificate"
            ));
        }
    };
    let credential = match (&user.token, &user.token_file) {
        (Some(token), _) => Credential::Token(Secret::new(token.expose_secret().trim())),
        (None, Some(path)) => Credential::TokenFile(PathBuf::from(path)),
        (None, None) => Credential::None,
    };
    Ok((credential, identity))
}

/// A kubeconfig `*-data` value: base64 of PEM. The error never quotes it (a key is a secret).
fn decode(data: &str, what: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| format!("`{what}` is not base64"))
}
