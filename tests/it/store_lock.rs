//! One store, one daemon, with real `honeyguide` processes: a second `run` on the same
//! `[store] path` exits 2 naming the path and the first one's pid, instead of starting and
//! sending every alert a second time under other notification ids; `validate`, `check` and
//! `test-alert` do not open the store and work beside a running daemon; after a `kill -9` the
//! lock is gone with the process and a new daemon starts on the same store.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::support::alerting::Receiver;
use crate::support::{ChildGuard, TempDir, free_port, init, wait_for_tcp};

const WAIT: Duration = Duration::from_secs(20);

/// `probes-NAME.toml`: listening on `listen`, the store `honeyguide.db` beside it (the same file
/// for every NAME), one http probe of the first daemon's `/healthz`, one webhook notifier.
fn write_config(dir: &Path, name: &str, listen: u16, probed: u16, hook: &str) {
    std::fs::write(
        dir.join(format!("probes-{name}.toml")),
        format!(
            "[server]\nlisten = \"127.0.0.1:{listen}\"\n\n\
             [store]\npath = \"honeyguide.db\"\n\n\
             [[probe]]\nname = \"first-daemon\"\nkind = \"http\"\n\
             url = \"http://127.0.0.1:{probed}/healthz\"\ninterval = \"1s\"\ntimeout = \"1s\"\n\n\
             [[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{hook}\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("alerts")).unwrap();
}

fn honeyguide(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_honeyguide"));
    command
        .args(args)
        .current_dir(dir)
        .env("HONEYGUIDE_LOG", "info");
    command
}

fn run_daemon(dir: &TempDir, name: &str) -> ChildGuard {
    let config = format!("probes-{name}.toml");
    ChildGuard::spawn(
        "honeyguide",
        &mut honeyguide(
            dir.path(),
            &["run", "--config", &config, "--alerts", "alerts"],
        ),
        &dir.path().join(format!("honeyguide-{name}.log")),
    )
}

/// Runs `args` to its end, or fails the test if it is still running after [`WAIT`] (a second
/// daemon that started instead of refusing).
async fn run_to_exit(dir: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let child = tokio::process::Command::from(honeyguide(dir, args))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`honeyguide {}` still running after {WAIT:?}",
                args.join(" ")
            )
        })
        .unwrap();
    (
        output.status,
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

async fn healthz(port: u16) -> u16 {
    reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .map(|response| response.status().as_u16())
        .unwrap_or(0)
}

/// Two real daemons on one store: the second refuses with exit 2, the path and the first's pid;
/// the other commands run beside the first; after `kill -9` of the first, a new daemon starts.
#[tokio::test]
async fn a_second_daemon_on_the_same_store_exits_2_naming_the_first() {
    init();
    let hook = Receiver::start().await;
    let dir = TempDir::new("store-lock");
    let (first_port, second_port) = (free_port(), free_port());
    write_config(dir.path(), "a", first_port, first_port, &hook.url("/hook"));
    write_config(dir.path(), "b", second_port, first_port, &hook.url("/hook"));

    let mut first = run_daemon(&dir, "a");
    wait_for_tcp(([127, 0, 0, 1], first_port).into(), WAIT);
    let lock_file = dir.path().join("honeyguide.db.lock");
    assert_eq!(
        std::fs::read_to_string(&lock_file).unwrap(),
        format!("{}\n", first.pid())
    );

    let (status, _, stderr) = run_to_exit(
        dir.path(),
        &["run", "--config", "probes-b.toml", "--alerts", "alerts"],
    )
    .await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    // The path as the config gives it (relative to probes.toml, here the working directory).
    assert!(
        stderr.contains(&format!(
            "honeyguide: the store honeyguide.db is in use by another honeyguide (pid {}): one \
             store serves one daemon",
            first.pid()
        )),
        "{stderr}"
    );
    assert_eq!(
        healthz(first_port).await,
        200,
        "the first daemon is unharmed"
    );
    assert_eq!(
        healthz(second_port).await,
        0,
        "the second one is not serving"
    );

    // The commands that do not open the store work while a daemon holds it.
    let (status, stdout, stderr) = run_to_exit(
        dir.path(),
        &[
            "validate",
            "--config",
            "probes-a.toml",
            "--alerts",
            "alerts",
        ],
    )
    .await;
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("1 probes, ok"), "{stdout}");
    let (status, stdout, stderr) =
        run_to_exit(dir.path(), &["check", "--config", "probes-a.toml"]).await;
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("first-daemon"), "{stdout}");
    let (status, stdout, stderr) = run_to_exit(
        dir.path(),
        &["test-alert", "--config", "probes-a.toml", "hook"],
    )
    .await;
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        hook.received()
            .iter()
            .any(|request| request.json()["alerts"][0]["labels"]["alertname"] == "honeyguide-test"),
        "the test alert arrived"
    );

    // kill -9: the kernel drops the lock with the process; the pid it wrote stays in the file
    // and does not stand in the way.
    let first_pid = first.pid();
    first.kill();
    assert_eq!(
        std::fs::read_to_string(&lock_file).unwrap(),
        format!("{first_pid}\n")
    );
    let mut second = run_daemon(&dir, "b");
    wait_for_tcp(([127, 0, 0, 1], second_port).into(), WAIT);
    assert_eq!(healthz(second_port).await, 200);
    assert_eq!(
        std::fs::read_to_string(&lock_file).unwrap(),
        format!("{}\n", second.pid())
    );
    second.stop_with("TERM");
    assert!(!second.is_running());
}
