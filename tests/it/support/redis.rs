//! A throwaway Redis server: no persistence, a password, on a free loopback port (or a given one,
//! to play a pod that came back empty), optionally TLS with a test CA; a child of the test, killed
//! on drop.

use std::process::Command;
use std::time::Duration;

use super::certs::TestCa;
use super::{ChildGuard, TempDir, free_port, require_binary, wait_for_tcp};

/// The `requirepass` of every test server.
pub const PASSWORD: &str = "redispass";

/// A running Redis.
pub struct Redis {
    dir: TempDir,
    child: ChildGuard,
    port: u16,
}

impl Redis {
    /// Starts Redis on a free port with `extra` arguments (e.g. `--maxmemory 1mb`).
    pub fn start(extra: &[&str]) -> Self {
        Self::start_on(free_port(), extra)
    }

    /// Starts Redis on `port`: a new, empty server where an old one may have been.
    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        let dir = TempDir::new("redis");
        let mut command = base_command(&dir);
        command.args(["--port", &port.to_string()]).args(extra);
        Self::spawn(dir, command, port)
    }

    /// Starts Redis with TLS only, with a certificate for `localhost`/`127.0.0.1` signed by `ca`.
    pub fn start_tls(ca: &TestCa) -> Self {
        let dir = TempDir::new("redis-tls");
        let (cert, key) = ca
            .leaf(&["localhost", "127.0.0.1"])
            .write(dir.path(), "redis");
        let ca_file = ca.write_pem(dir.path());
        let port = free_port();
        let mut command = base_command(&dir);
        command
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(cert)
            .arg("--tls-key-file")
            .arg(key)
            .arg("--tls-ca-cert-file")
            .arg(ca_file)
            .args(["--tls-auth-clients", "no"]);
        Self::spawn(dir, command, port)
    }

    fn spawn(dir: TempDir, mut command: Command, port: u16) -> Self {
        let log = dir.path().join("redis.log");
        let child = ChildGuard::spawn("redis-server", &mut command, &log);
        wait_for_tcp(
            format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(10),
        );
        Self { dir, child, port }
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client connection for seeding data, authenticated.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://:{PASSWORD}@127.0.0.1:{}/", self.port))
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }

    /// Freezes the server (SIGSTOP): the kernel still accepts connections, nothing answers.
    pub fn pause(&self) {
        self.child.signal("STOP");
    }

    /// Thaws a paused server.
    pub fn resume(&self) {
        self.child.signal("CONT");
    }

    /// Kills the server at once, as a dying pod: nothing is saved.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// The scratch directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

fn base_command(dir: &TempDir) -> Command {
    let binary = require_binary("redis-server", "redis-server");
    let mut command = Command::new(binary);
    command
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .args(["--requirepass", PASSWORD]);
    command
}
