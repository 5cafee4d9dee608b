//! A throwaway PgBouncer 1.18 in transaction mode in front of a test [`Postgres`], as Neon's
//! `-pooler` endpoint is: client TLS with the same test CA, md5 auth from an auth file, a small
//! server pool so that concurrent clients share server connections. Runs in the foreground as the
//! `postgres` user (PgBouncer refuses root), logging to stderr (a root-owned log file would make
//! later runs fail), and is killed on drop.

use std::path::Path;
use std::time::Duration;

use super::postgres::{DATABASE, PASSWORD, Postgres, USER, as_postgres, chown_postgres, set_mode};
use super::{ChildGuard, TempDir, free_port, require_binary, wait_for_tcp};

/// A running PgBouncer.
pub struct PgBouncer {
    dir: TempDir,
    child: ChildGuard,
    port: u16,
}

impl PgBouncer {
    /// Starts PgBouncer on a free port, pooling [`DATABASE`] on `postgres`. Its client-side
    /// certificate is signed by the same test CA as the server's (SANs `localhost`, `127.0.0.1`).
    pub fn start(postgres: &Postgres) -> Self {
        let binary = require_binary("/usr/sbin/pgbouncer", "pgbouncer");
        let dir = TempDir::new("pgbouncer");
        let (cert, key) = postgres
            .ca()
            .leaf(&["localhost", "127.0.0.1"])
            .write(dir.path(), "pooler");
        let port = free_port();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 {DATABASE} = host=127.0.0.1 port={pg_port} dbname={DATABASE} user={USER} password={PASSWORD}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = md5\n\
                 auth_file = {dir}/userlist.txt\n\
                 pool_mode = transaction\n\
                 default_pool_size = 5\n\
                 max_client_conn = 200\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 client_tls_sslmode = allow\n\
                 client_tls_cert_file = {cert}\n\
                 client_tls_key_file = {key}\n\
                 server_login_retry = 1\n\
                 query_wait_timeout = 3\n",
                pg_port = postgres.port(),
                dir = dir.path().display(),
                cert = cert.display(),
                key = key.display(),
            ),
        )
        .expect("write pgbouncer.ini");
        std::fs::write(
            dir.path().join("userlist.txt"),
            format!("\"{USER}\" \"{PASSWORD}\"\n"),
        )
        .expect("write userlist");
        chown_postgres(dir.path());
        set_mode(&key, 0o600);
        let child = ChildGuard::spawn(
            "pgbouncer",
            as_postgres(&binary).arg(&ini),
            &dir.path().join("pgbouncer.log"),
        );
        wait_for_tcp(
            format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(10),
        );
        Self { dir, child, port }
    }

    /// The TCP port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PgBouncer's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops PgBouncer now (SIGINT: immediate shutdown).
    pub fn stop(&mut self) {
        self.child.stop_with("INT");
    }
}
