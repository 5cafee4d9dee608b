//! A real SMTP server for the `smtp` probe tests and for the email notifier: aiosmtpd
//! (`smtpd.py` beside this file, run with Debian's `/usr/bin/python3`), listening with STARTTLS,
//! implicit TLS, implicit TLS with AUTH LOGIN only, and plaintext without STARTTLS, each on its
//! own free port. It stores every message it accepts; [`Smtpd::received`] reads them back.
//!
//! Also a garbage server ([`Misbehaving`]): a tokio listener that greets and hangs up, or speaks
//! something that is not SMTP, for the protocol-error cases aiosmtpd will not produce.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::certs::TestCa;
use super::{ChildGuard, TempDir, free_port, require_binary, wait_for_tcp};

/// The account aiosmtpd accepts.
pub const USER: &str = "probe@honeyguide.test";
/// Its password.
pub const PASSWORD: &str = "probe-app-password";
/// A user name that always gets `454 4.7.0` (temporary failure).
pub const TEMPFAIL_USER: &str = "tempfail";

/// One message as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The port it arrived on (which listener).
    pub port: u16,
    /// The DATA, as sent.
    pub data: String,
}

/// A running aiosmtpd.
pub struct Smtpd {
    /// STARTTLS submission (AUTH only after STARTTLS).
    pub starttls_port: u16,
    /// Implicit TLS (SMTPS).
    pub smtps_port: u16,
    /// Implicit TLS offering only AUTH LOGIN.
    pub login_port: u16,
    /// Plaintext, no STARTTLS offered.
    pub plain_port: u16,
    /// The CA that signed the server certificate (for `localhost` and `127.0.0.1`).
    pub ca_file: PathBuf,
    child: ChildGuard,
    maildir: PathBuf,
    dir: TempDir,
}

impl Smtpd {
    pub fn start() -> Self {
        Self::start_on(
            [free_port(), free_port(), free_port(), free_port()],
            &TestCa::new(),
        )
    }

    /// Starts on chosen ports (STARTTLS, SMTPS, LOGIN-only, plain) with a certificate from `ca`:
    /// e.g. the ports and CA a client was configured with while the server was down.
    pub fn start_on(ports: [u16; 4], ca: &TestCa) -> Self {
        let python = require_binary("/usr/bin/python3", "python3-aiosmtpd");
        let dir = TempDir::new("smtpd");
        let ca_file = ca.write_pem(dir.path());
        let (cert, key) = ca
            .leaf(&["localhost", "127.0.0.1"])
            .write(dir.path(), "server");
        let maildir = dir.path().join("mail");
        std::fs::create_dir_all(&maildir).expect("create maildir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/smtpd.py");
        let mut command = Command::new(python);
        command
            .arg(script)
            .args(["--starttls-port", &ports[0].to_string()])
            .args(["--smtps-port", &ports[1].to_string()])
            .args(["--login-port", &ports[2].to_string()])
            .args(["--plain-port", &ports[3].to_string()])
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(["--user", USER, "--password", PASSWORD])
            .arg("--maildir")
            .arg(&maildir);
        let child = ChildGuard::spawn("aiosmtpd", &mut command, &dir.path().join("smtpd.log"));
        for port in ports {
            wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(15));
        }
        Self {
            starttls_port: ports[0],
            smtps_port: ports[1],
            login_port: ports[2],
            plain_port: ports[3],
            ca_file,
            child,
            maildir,
            dir,
        }
    }

    /// The server's log (aiosmtpd's stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("smtpd.log")).unwrap_or_default()
    }

    /// Every message accepted so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.maildir)
            .expect("read maildir")
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|meta_path| {
                let meta: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&meta_path).expect("read meta"))
                        .expect("parse meta");
                let data =
                    std::fs::read_to_string(meta_path.with_extension("eml")).expect("read message");
                Received {
                    mail_from: meta["mail_from"].as_str().unwrap_or_default().to_owned(),
                    rcpt_tos: meta["rcpt_tos"]
                        .as_array()
                        .map(|items| {
                            items
                                .iter()
                                .filter_map(|item| item.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    port: meta["port"].as_u64().unwrap_or_default() as u16,
                    data,
                }
            })
            .collect()
    }

    /// Freezes the server (SIGSTOP): connections are still accepted by the kernel, but nothing
    /// answers. A hung target, for timeout tests; the process is killed on drop as usual.
    pub fn pause(&self) {
        self.child.signal("STOP");
    }

    /// Stops the server (SIGTERM, then SIGKILL): every port refuses from now on.
    pub fn stop(&mut self) {
        self.child.stop_with("TERM");
    }
}

/// How a [`Misbehaving`] server treats each connection.
#[derive(Clone, Copy, Debug)]
pub enum Misbehavior {
    /// Sends a normal 220 greeting, then closes the connection.
    CloseAfterBanner,
    /// Answers with something that is not SMTP.
    Garbage,
    /// Greets with `421` (service not available, temporary) and closes.
    Busy,
}

/// An in-process TCP server that breaks the protocol on purpose.
pub struct Misbehaving {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Misbehaving {
    pub async fn start(behavior: Misbehavior) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let greeting: &[u8] = match behavior {
                    Misbehavior::CloseAfterBanner => b"220 mx.honeyguide.test ESMTP ready\r\n",
                    Misbehavior::Garbage => b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
                    Misbehavior::Busy => b"421 4.3.2 mx.honeyguide.test too busy, try later\r\n",
                };
                let _ = stream.write_all(greeting).await;
                let _ = stream.shutdown().await;
            }
        });
        Self { port, task }
    }
}

impl Drop for Misbehaving {
    fn drop(&mut self) {
        self.task.abort();
    }
}
