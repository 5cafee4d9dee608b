//! A throwaway PostgreSQL 15 server: initdb'd into a scratch directory, TLS with a test CA, scram
//! passwords over TCP, started in the foreground as a child of the test (as the `postgres` user,
//! since initdb and postgres refuse root) and killed on drop.
//!
//! It has a login role `probe` (password [`PASSWORD`]) owning the database [`DATABASE`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::certs::TestCa;
use super::{ChildGuard, TempDir, free_port, require_binary, wait_for_tcp};

/// Where Debian's postgresql-15 puts its binaries.
pub const BIN: &str = "/usr/lib/postgresql/15/bin";
/// The probe role.
pub const USER: &str = "probe";
/// The probe role's password.
pub const PASSWORD: &str = "probepass";
/// The database the probe role owns.
pub const DATABASE: &str = "probedb";

/// Runs `program` as the `postgres` user: `setpriv` execs without forking, so the child's PID is
/// the server's own and signals reach it.
pub fn as_postgres(program: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
    command
}

/// Hands `path` to the `postgres` user (and group), as the server and PgBouncer need.
pub fn chown_postgres(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown postgres {}", path.display());
}

/// A running PostgreSQL server.
pub struct Postgres {
    dir: TempDir,
    child: ChildGuard,
    port: u16,
    ca: TestCa,
    ca_file: PathBuf,
}

impl Postgres {
    /// initdb, start with TLS on a free port, create the probe role and database.
    pub fn start() -> Self {
        let initdb = require_binary(&format!("{BIN}/initdb"), "postgresql-15");
        let postgres = require_binary(&format!("{BIN}/postgres"), "postgresql-15");
        require_binary("setpriv", "util-linux");
        let dir = TempDir::new("pg");
        let ca = TestCa::new();
        let ca_file = ca.write_pem(dir.path());
        let (cert, key) = ca
            .leaf(&["localhost", "127.0.0.1"])
            .write(dir.path(), "server");
        std::fs::write(dir.path().join("pwfile"), "superpass\n").expect("write pwfile");
        chown_postgres(dir.path());
        set_mode(&key, 0o600);

        let data = dir.path().join("data");
        let output = as_postgres(&initdb)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .arg(format!("--pwfile={}", dir.path().join("pwfile").display()))
            .output()
            .expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );

        let port = free_port();
        let mut command = as_postgres(&postgres);
        command
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "ssl=on"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", cert.display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", key.display()));
        let child = ChildGuard::spawn("postgres", &mut command, &dir.path().join("postgres.log"));
        let server = Self {
            dir,
            child,
            port,
            ca,
            ca_file,
        };
        server.wait_ready();
        server.psql_as(
            "postgres",
            "postgres",
            &format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"),
        );
        // CREATE DATABASE cannot share a transaction (one `-c`) with anything else.
        server.psql_as(
            "postgres",
            "postgres",
            &format!("CREATE DATABASE {DATABASE} OWNER {USER}"),
        );
        server
    }

    fn wait_ready(&self) {
        wait_for_tcp(
            format!("127.0.0.1:{}", self.port).parse().unwrap(),
            Duration::from_secs(20),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            let ready = Command::new(format!("{BIN}/pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("postgres on port {} never became ready", self.port);
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the server certificate (SANs `localhost`, `127.0.0.1`).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The test CA, to sign certificates for servers in front of this one (PgBouncer).
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The scratch directory (also the unix socket directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs SQL in the probe database as its owner, over the unix socket (trusted).
    pub fn psql(&self, sql: &str) {
        self.psql_as(USER, DATABASE, sql);
    }

    fn psql_as(&self, user: &str, database: &str, sql: &str) {
        let output = Command::new(format!("{BIN}/psql"))
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", user, "-d", database])
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Freezes the postmaster (SIGSTOP): the kernel still accepts connections, nobody answers.
    pub fn pause(&self) {
        self.child.signal("STOP");
    }

    /// Thaws a paused server.
    pub fn resume(&self) {
        self.child.signal("CONT");
    }

    /// Stops the server now (SIGINT is Postgres's "fast" shutdown).
    pub fn stop(&mut self) {
        self.child.stop_with("INT");
    }
}

/// Sets unix permission bits.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
