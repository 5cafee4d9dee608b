//! A real S3 server for the `s3` probe tests: s3s-fs (SigV4 checked, any region accepted, like
//! B2 it signs with whatever region the client names) on a free loopback port, serving a
//! directory where buckets are directories and objects are files.
//!
//! s3s-fs is not packaged by Debian; install it once with
//! `CARGO_TARGET_DIR=/tmp/s3s-target cargo install s3s-fs --version 0.14.1 --features binary --locked --root /opt/s3s`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{ChildGuard, TempDir, free_port, wait_for_tcp};

/// The access key s3s-fs accepts.
pub const ACCESS_KEY_ID: &str = "004honeyguidekey0000000001";
/// Its secret.
pub const SECRET_ACCESS_KEY: &str = "K004honeyguide-secret-application-key";

/// A running s3s-fs.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    root: PathBuf,
    child: ChildGuard,
    _dir: TempDir,
}

/// s3s-fs on PATH or in /opt/s3s/bin, or a panic saying how to install it.
fn s3s_fs() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("s3s-fs"))
            .find(|candidate| candidate.exists())
    });
    on_path
        .or_else(|| {
            let fallback = PathBuf::from("/opt/s3s/bin/s3s-fs");
            fallback.exists().then_some(fallback)
        })
        .unwrap_or_else(|| {
            panic!(
                "`s3s-fs` is not installed (neither on PATH nor in /opt/s3s/bin): run \
                 `CARGO_TARGET_DIR=/tmp/s3s-target cargo install s3s-fs --version 0.14.1 \
                 --features binary --locked --root /opt/s3s`"
            )
        })
}

impl S3Server {
    pub fn start() -> Self {
        let binary = s3s_fs();
        let dir = TempDir::new("s3");
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).expect("create s3 root");
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--access-key",
                ACCESS_KEY_ID,
                "--secret-key",
                SECRET_ACCESS_KEY,
            ])
            .arg(&root);
        let child = ChildGuard::spawn("s3s-fs", &mut command, &dir.path().join("s3s.log"));
        wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(10));
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
            child,
            _dir: dir,
        }
    }

    /// Creates a bucket (a directory under the root).
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir_all(self.root.join(bucket)).expect("create bucket");
    }

    /// Stores an object (a file in the bucket's directory).
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let path = self.root.join(bucket).join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create object directory");
        }
        std::fs::write(path, body).expect("write object");
    }

    /// Freezes the server (SIGSTOP): connections are still accepted by the kernel, but nothing
    /// answers. A hung target, for timeout tests; the process is killed on drop as usual.
    pub fn pause(&self) {
        self.child.signal("STOP");
    }

    /// Stops the server (SIGTERM): its port refuses from now on.
    pub fn stop(&mut self) {
        self.child.stop_with("TERM");
    }
}
