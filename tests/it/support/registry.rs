//! A real OCI registry for the `registry` probe tests: Debian's `docker-registry` (CNCF
//! distribution 2.8) on a free loopback port, with token auth (the Python token server
//! `tokenserver.py` beside this file as a second child), htpasswd Basic auth, or no auth. Also
//! pushes a tiny image over the real distribution API, so manifest checks have something to find.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::certs::TestCa;
use super::{ChildGuard, TempDir, free_port, require_binary, wait_for_tcp};

/// The account every authenticated variant accepts.
pub const USER: &str = "probe";
/// Its password.
pub const PASSWORD: &str = "probe-registry-password";
/// The `service` the token variant names in its challenge.
pub const SERVICE: &str = "honeyguide-registry";

/// How the registry authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Anyone may pull and push.
    None,
    /// HTTP Basic against an htpasswd file (bcrypt).
    Htpasswd,
    /// Bearer tokens from a token server (the Docker Hub / Gitea model).
    Token,
}

/// A running registry (and its token server).
pub struct Registry {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    pub port: u16,
    /// The token server's port, for the token variant.
    pub token_port: Option<u16>,
    /// The CA that signed the HTTPS certificate, for [`Registry::start_tls`].
    pub ca_file: Option<PathBuf>,
    auth: Auth,
    registry: ChildGuard,
    token_server: Option<ChildGuard>,
    _dir: TempDir,
}

impl Registry {
    /// Plain HTTP.
    pub fn start(auth: Auth) -> Self {
        Self::start_with(auth, false)
    }

    /// HTTPS with a certificate for 127.0.0.1 from a test CA (see [`Registry::ca_file`]).
    pub fn start_tls(auth: Auth) -> Self {
        Self::start_with(auth, true)
    }

    fn start_with(auth: Auth, tls: bool) -> Self {
        let binary = require_binary("docker-registry", "docker-registry");
        let dir = TempDir::new("registry");
        let port = free_port();
        let (scheme, tls_yaml, ca_file) = if tls {
            let ca = TestCa::new();
            let ca_file = ca.write_pem(dir.path());
            let (cert, key) = ca
                .leaf(&["127.0.0.1", "localhost"])
                .write(dir.path(), "server");
            (
                "https",
                format!(
                    ", tls: {{certificate: {}, key: {}}}",
                    cert.display(),
                    key.display()
                ),
                Some(ca_file),
            )
        } else {
            ("http", String::new(), None)
        };
        let (auth_yaml, token_server, token_port) = match auth {
            Auth::None => (String::new(), None, None),
            Auth::Htpasswd => {
                let htpasswd = require_binary("htpasswd", "apache2-utils");
                let output = Command::new(htpasswd)
                    .args(["-Bbn", USER, PASSWORD])
                    .output()
                    .expect("run htpasswd");
                assert!(output.status.success(), "htpasswd failed");
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, output.stdout).expect("write htpasswd");
                (
                    format!(
                        "auth: {{htpasswd: {{realm: honeyguide, path: {}}}}}\n",
                        file.display()
                    ),
                    None,
                    None,
                )
            }
            Auth::Token => {
                let (token_server, token_port, cert) = start_token_server(dir.path());
                (
                    format!(
                        "auth:\n  token: {{realm: \"http://127.0.0.1:{token_port}/token\", \
                         service: {SERVICE}, issuer: honeyguide-token-issuer, rootcertbundle: {}}}\n",
                        cert.display()
                    ),
                    Some(token_server),
                    Some(token_port),
                )
            }
        };
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\n\
                 storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
                 http: {{addr: 127.0.0.1:{port}, secret: honeyguide-test{tls_yaml}}}\n{auth_yaml}",
                dir.path().join("data").display()
            ),
        )
        .expect("write registry config");
        let mut command = Command::new(binary);
        command.arg("serve").arg(&config);
        let registry = ChildGuard::spawn(
            "docker-registry",
            &mut command,
            &dir.path().join("registry.log"),
        );
        wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(15));
        Self {
            url: format!("{scheme}://127.0.0.1:{port}"),
            port,
            ca_file,
            token_port,
            auth,
            registry,
            token_server,
            _dir: dir,
        }
    }

    /// Freezes the server (SIGSTOP): connections are still accepted by the kernel, but nothing
    /// answers. A hung target, for timeout tests; the process is killed on drop as usual.
    pub fn pause(&self) {
        self.registry.signal("STOP");
    }

    /// Stops the registry (SIGTERM): its port refuses from now on.
    pub fn stop(&mut self) {
        self.registry.stop_with("TERM");
    }

    /// Stops only the token server: the registry still challenges, but no token can be had.
    pub fn stop_token_server(&mut self) {
        if let Some(server) = self.token_server.as_mut() {
            server.stop_with("TERM");
        }
    }

    /// Pushes a tiny OCI image (one config blob, one layer) as `repository:tag` through the
    /// distribution API and returns the manifest digest the registry reports.
    pub async fn push_image(&self, repository: &str, tag: &str) -> String {
        let client = reqwest::Client::new();
        let authorization = self.push_authorization(&client, repository).await;
        let layer = format!("hello from honeyguide {repository}:{tag}\n").into_bytes();
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\
             \"diff_ids\":[\"{}\"]}},\"config\":{{}}}}",
            sha256(&layer)
        )
        .into_bytes();
        let config_digest = self
            .upload_blob(&client, &authorization, repository, config.clone())
            .await;
        let layer_digest = self
            .upload_blob(&client, &authorization, repository, layer.clone())
            .await;
        let manifest = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
             \"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\
             \"digest\":\"{config_digest}\",\"size\":{}}},\
             \"layers\":[{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\
             \"digest\":\"{layer_digest}\",\"size\":{}}}]}}",
            config.len(),
            layer.len()
        );
        let expected = sha256(manifest.as_bytes());
        let response = with_auth(
            client.put(format!("{}/v2/{repository}/manifests/{tag}", self.url)),
            &authorization,
        )
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .await
        .expect("put manifest");
        assert_eq!(response.status(), 201, "put manifest: {response:?}");
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .expect("digest header")
            .to_owned();
        assert_eq!(digest, expected);
        digest
    }

    async fn push_authorization(
        &self,
        client: &reqwest::Client,
        repository: &str,
    ) -> Option<String> {
        match self.auth {
            Auth::None => None,
            Auth::Htpasswd => Some(format!(
                "Basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{USER}:{PASSWORD}")
                )
            )),
            Auth::Token => {
                let port = self.token_port.expect("token port");
                let response: serde_json::Value = client
                    .get(format!(
                        "http://127.0.0.1:{port}/token?service={SERVICE}\
                         &scope=repository:{repository}:pull,push"
                    ))
                    .basic_auth(USER, Some(PASSWORD))
                    .send()
                    .await
                    .expect("token request")
                    .json()
                    .await
                    .expect("token json");
                Some(format!(
                    "Bearer {}",
                    response["token"].as_str().expect("token field")
                ))
            }
        }
    }

    async fn upload_blob(
        &self,
        client: &reqwest::Client,
        authorization: &Option<String>,
        repository: &str,
        data: Vec<u8>,
    ) -> String {
        let digest = sha256(&data);
        let response = with_auth(
            client.post(format!("{}/v2/{repository}/blobs/uploads/", self.url)),
            authorization,
        )
        .header("Content-Length", "0")
        .send()
        .await
        .expect("start upload");
        assert_eq!(response.status(), 202, "start upload: {response:?}");
        let location = response
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .expect("upload location")
            .to_owned();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.url)
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let response = with_auth(
            client.put(format!("{location}{separator}digest={digest}")),
            authorization,
        )
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .expect("finish upload");
        assert_eq!(response.status(), 201, "finish upload: {response:?}");
        digest
    }
}

fn with_auth(
    request: reqwest::RequestBuilder,
    authorization: &Option<String>,
) -> reqwest::RequestBuilder {
    match authorization {
        Some(value) => request.header("Authorization", value),
        None => request,
    }
}

fn sha256(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let hex: String = hash.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256:{hex}")
}

/// Makes the token signing key pair with openssl and starts the token server.
fn start_token_server(dir: &Path) -> (ChildGuard, u16, PathBuf) {
    let openssl = require_binary("openssl", "openssl");
    let python = require_binary("/usr/bin/python3", "python3");
    let key = dir.join("token.key");
    let cert = dir.join("token.crt");
    let status = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "2", "-subj", "/CN=honeyguide token signer"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(
        status.success(),
        "openssl could not make the token key pair"
    );
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/tokenserver.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(&key)
        .arg(&cert)
        .arg(port.to_string())
        .args(["honeyguide-token-issuer", USER, PASSWORD]);
    let child = ChildGuard::spawn("tokenserver", &mut command, &dir.join("tokenserver.log"));
    wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(10));
    (child, port, cert)
}
