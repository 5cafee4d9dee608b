//! The `honeyguide` command: `run` (the daemon), `check` (run probes once), `validate`,
//! `catalog` (list the failure modes), `test` (run the rules' examples), `replay` (run the
//! recorded results through rules), `test-alert` (send a test notification through one
//! notifier).
//!
//! Exit codes: 0 success, 1 `check` found failing probes, `test` a failing example or
//! `test-alert` could not deliver, 2 bad configuration or usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use honeyguide::catalog::{self, Catalog};
use honeyguide::config::{self, Config, ConfigErrors};
use honeyguide::probe::{self, ProbeResult};

#[derive(Debug, Parser)]
#[command(
    name = "honeyguide",
    version,
    about = "Synthetic monitoring that names the failure mode"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct Paths {
    /// The probes file.
    #[arg(long, default_value = "probes.toml")]
    config: PathBuf,
    /// The directory of failure-mode rules.
    #[arg(long, default_value = "alerts")]
    alerts: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: probe on schedule, serve /metrics, /status and /.
    Run {
        #[command(flatten)]
        paths: Paths,
    },
    /// Run probes once, print a table, exit 1 if any failed (a deploy gate).
    Check {
        #[command(flatten)]
        paths: Paths,
        /// Only these probes (default: all).
        probes: Vec<String>,
    },
    /// Check the configuration and rules, report every problem, exit 2 if there is one.
    Validate {
        #[command(flatten)]
        paths: Paths,
    },
    /// List the failure modes of the rules: what each recognises, from which probes.
    Catalog {
        #[command(flatten)]
        paths: Paths,
    },
    /// Run every example of every rule (the `[[example]]` tables of alerts/*.toml) on a
    /// simulated clock; exit 1 if one fails.
    Test {
        #[command(flatten)]
        paths: Paths,
    },
    /// Run the results the store recorded through the rules (the shipped ones or an edited
    /// copy) and print, per failure mode, when it would have gone pending, active and resolved,
    /// and how that differs from what the running rules did. Reads the store beside a running
    /// daemon.
    Replay {
        #[command(flatten)]
        paths: Paths,
        /// How far back: the window ends now.
        #[arg(long, default_value = "24h", value_parser = since)]
        since: Duration,
    },
    /// Send a test notification through one notifier now (bypassing the outbox); exit 1 with
    /// the reason if it cannot be delivered.
    TestAlert {
        #[command(flatten)]
        paths: Paths,
        /// The `[[notifier]]` name.
        notifier: String,
    },
}

fn main() -> ExitCode {
    init_logging();
    honeyguide::tls::install_crypto_provider();
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("honeyguide: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HONEYGUIDE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal; journald and kubectl logs get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { paths } => {
            let Some((config, catalog)) = load_all(&paths) else {
                return Ok(ExitCode::from(2));
            };
            runtime()?.block_on(run_daemon(config, catalog))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { paths, probes } => {
            let Some(config) = load_config(&paths.config) else {
                return Ok(ExitCode::from(2));
            };
            runtime()?.block_on(check(&config, &probes))
        }
        Command::TestAlert { paths, notifier } => {
            let Some(config) = load_config(&paths.config) else {
                return Ok(ExitCode::from(2));
            };
            runtime()?.block_on(test_alert(&config, &notifier))
        }
        Command::Validate { paths } => Ok(match load_all(&paths) {
            Some((config, catalog)) => {
                println!(
                    "{}: {} probes, ok",
                    config.path.display(),
                    config.probes.len()
                );
                println!(
                    "{}: {} failure modes, ok{}",
                    paths.alerts.display(),
                    catalog.modes().len(),
                    warnings_note(&catalog)
                );
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        }),
        Command::Test { paths } => Ok(match load_all(&paths) {
            Some((config, catalog)) => test_examples(&config, &catalog),
            None => ExitCode::from(2),
        }),
        Command::Replay { paths, since } => Ok(match load_all(&paths) {
            Some((config, catalog)) => replay(&config, &catalog, since),
            None => ExitCode::from(2),
        }),
        Command::Catalog { paths } => Ok(match load_all(&paths) {
            Some((_, catalog)) => {
                print!("{}", render_catalog(&catalog));
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        }),
    }
}

/// ` (2 skipped, 3 warnings, see above)` after `validate`'s verdict, or nothing.
fn warnings_note(catalog: &Catalog) -> String {
    let skipped = catalog
        .warnings()
        .iter()
        .filter(|warning| warning.kind == catalog::WarningKind::Skipped)
        .count();
    let others = catalog.warnings().len() - skipped;
    let mut parts = Vec::new();
    if skipped > 0 {
        parts.push(format!("{skipped} skipped"));
    }
    match others {
        0 => {}
        1 => parts.push("1 warning".to_owned()),
        count => parts.push(format!("{count} warnings")),
    }
    if parts.is_empty() {
        return String::new();
    }
    format!(" ({}, see above)", parts.join(", "))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Prints every problem found in `path` to stderr, then how many there were.
fn report(errors: &ConfigErrors, path: &Path) {
    for error in &errors.0 {
        eprintln!("{error}");
    }
    eprintln!(
        "honeyguide: {} problem(s) in {}",
        errors.0.len(),
        path.display()
    );
}

/// Loads the config, printing every problem to stderr.
fn load_config(path: &Path) -> Option<Config> {
    match config::load(path) {
        Ok(config) => Some(config),
        Err(errors) => {
            report(&errors, path);
            None
        }
    }
}

/// Loads the config, then the rules checked against its probes, printing every problem.
fn load_all(paths: &Paths) -> Option<(Config, Arc<Catalog>)> {
    let config = load_config(&paths.config)?;
    match catalog::load(&paths.alerts, &config.probe_kinds()) {
        Ok(catalog) => {
            for warning in catalog.warnings() {
                eprintln!("{warning}");
            }
            Some((config, Arc::new(catalog)))
        }
        Err(errors) => {
            report(&errors, &paths.alerts);
            None
        }
    }
}

async fn run_daemon(config: Config, catalog: Arc<Catalog>) -> anyhow::Result<()> {
    let descriptors = honeyguide::fd_limit::raise();
    if descriptors.now != descriptors.before {
        tracing::debug!(before = ?descriptors.before, now = ?descriptors.now, "raised the descriptor limit");
    }
    let listen = config.server.listen;
    let listener =
        honeyguide::server::serve::bind(listen).with_context(|| format!("binding {listen}"))?;
    let mut launch = honeyguide::app::Launch::new(config, catalog, listener);
    launch.reloads = Some(reload_on_sighup());
    honeyguide::app::launch(launch, shutdown_signal()).await?;
    tracing::info!("honeyguide stopped");
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM. From then on, a second signal, or a shutdown that
/// overruns its bound by far (a bug), ends the process at once: an operator pressing Ctrl-C
/// twice, or Kubernetes, must never wait on a stuck drain.
async fn shutdown_signal() {
    let mut signals = Signals::new();
    signals.next().await;
    tokio::spawn(async move {
        let overrun = honeyguide::app::SHUTDOWN_DEADLINE + std::time::Duration::from_secs(5);
        tokio::select! {
            () = signals.next() => {
                tracing::warn!("second signal: exiting without finishing the shutdown");
            }
            () = tokio::time::sleep(overrun) => {
                tracing::error!("shutdown overran its bound; exiting without finishing it");
            }
        }
        std::process::exit(1);
    });
}

/// A reload request for every SIGHUP (what `systemctl reload` and `kill -HUP` send).
fn reload_on_sighup() -> tokio::sync::mpsc::Receiver<honeyguide::app::ReloadRequest> {
    use tokio::signal::unix::{SignalKind, signal};
    let (requests, reloads) = tokio::sync::mpsc::channel(4);
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the configuration");
                    let request =
                        honeyguide::app::ReloadRequest::new(honeyguide::app::Trigger::Signal);
                    if requests.send(request).await.is_err() {
                        break;
                    }
                }
            });
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; reload with POST /-/reload")
        }
    }
    reloads
}

/// SIGINT and SIGTERM, as one stream.
struct Signals {
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for {name}");
                None
            }
        };
        Self {
            terminate: listen(SignalKind::terminate(), "SIGTERM"),
            interrupt: listen(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// The next SIGINT or SIGTERM.
    async fn next(&mut self) {
        async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = recv(self.terminate.as_mut()) => {}
            () = recv(self.interrupt.as_mut()) => {}
        }
    }
}

async fn check(config: &Config, only: &[String]) -> anyhow::Result<ExitCode> {
    let unknown: Vec<&String> = only
        .iter()
        .filter(|name| !config.probes.iter().any(|probe| &probe.name == *name))
        .collect();
    if !unknown.is_empty() {
        for name in unknown {
            eprintln!(
                "honeyguide: no probe named `{name}` in {}",
                config.path.display()
            );
        }
        return Ok(ExitCode::from(2));
    }
    let selected: Vec<_> = config
        .probes
        .iter()
        .filter(|probe| only.is_empty() || only.contains(&probe.name))
        .collect();
    // All at once: a deploy gate should take as long as the slowest probe, not the sum.
    let handles: Vec<_> = selected
        .iter()
        .map(|probe| tokio::spawn(probe::execute(probe.probe.clone(), probe.timeout)))
        .collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.context("probe task")?);
    }
    let rows: Vec<(&str, &str, &ProbeResult)> = selected
        .iter()
        .zip(&results)
        .map(|(probe, result)| (probe.name.as_str(), probe.kind().as_str(), result))
        .collect();
    print!("{}", render_table(&rows));
    let failed = results.iter().filter(|result| !result.ok).count();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn test_alert(config: &Config, name: &str) -> anyhow::Result<ExitCode> {
    let Some(notifier) = config
        .notifiers
        .iter()
        .find(|notifier| notifier.name == name)
    else {
        let known: Vec<&str> = config.notifiers.iter().map(|n| n.name.as_str()).collect();
        eprintln!(
            "honeyguide: no notifier named `{name}` in {} (known: {})",
            config.path.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
        return Ok(ExitCode::from(2));
    };
    let now = jiff::Timestamp::now();
    let notification = honeyguide::alert::notification::test_notification(name, now);
    let cx = honeyguide::notify::DeliveryContext {
        external_url: config.alerting.external_url.clone(),
        vantage: config.server.vantage.clone(),
        now,
    };
    let kind = notifier.kind();
    let target = notifier.notifier.target();
    match notifier.notifier.deliver(&notification, &cx).await {
        Ok(()) => {
            println!("sent a test notification through `{name}` ({kind}, {target})");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("honeyguide: test-alert: `{name}` ({kind}, {target}) failed: {error}");
            Ok(ExitCode::from(1))
        }
    }
}

fn render_table(rows: &[(&str, &str, &ProbeResult)]) -> String {
    let name_width = rows
        .iter()
        .map(|(name, _, _)| name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:<name_width$}  {:<8}  {:<6}  {:<11}  {:>9}  MESSAGE\n",
        "PROBE", "KIND", "RESULT", "ERROR", "DURATION"
    );
    for (name, kind, result) in rows {
        let verdict = if result.ok { "ok" } else { "FAIL" };
        let error = result.error.map_or("-", |class| class.as_str());
        let millis = format!("{:.0}ms", result.duration.as_secs_f64() * 1000.0);
        out.push_str(&format!(
            "{name:<name_width$}  {kind:<8}  {verdict:<6}  {error:<11}  {millis:>9}  {}\n",
            result.message
        ));
    }
    out
}

/// `honeyguide test`: one line per example (and what went wrong under a failing one), then the
/// counts and what the examples leave untested.
fn test_examples(config: &Config, catalog: &Arc<Catalog>) -> ExitCode {
    use catalog::example::{self, Verdict};
    let tested = example::run_all(catalog, &config.timeline_probes());
    for line in &tested {
        println!("{line}");
    }
    let count = |wanted: fn(&Verdict) -> bool| tested.iter().filter(|t| wanted(&t.verdict)).count();
    let failed = count(|verdict| matches!(verdict, Verdict::Failed(_)));
    let skipped = count(|verdict| matches!(verdict, Verdict::Skipped(_)));
    println!(
        "{} examples of {} rules: {} ok, {failed} failed, {skipped} not run",
        tested.len(),
        catalog.modes().len(),
        tested.len() - failed - skipped
    );
    for gap in example::gaps(catalog) {
        println!("note: {gap}");
    }
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `--since`: a humane duration within the longest history a store keeps.
fn since(text: &str) -> Result<Duration, String> {
    honeyguide::spec::duration::parse(text).and_then(|since| REPLAY_SINCE.check(since))
}

/// The range of `replay --since`: a minute, up to the longest `[store] history_retention`.
const REPLAY_SINCE: honeyguide::spec::duration::Bounds = honeyguide::spec::duration::Bounds::new(
    Duration::from_secs(60),
    honeyguide::config::alerting::HISTORY_RETENTION.max,
);

/// `honeyguide replay`: the store's results of the last `since` (and a warm-up before) through
/// `catalog`, compared with the running rules' recorded changes. Exit 2 if the store cannot be
/// read.
fn replay(config: &Config, catalog: &Arc<Catalog>, since: Duration) -> ExitCode {
    use catalog::replay::{self, Replay};
    let path = &config.store.path;
    let reader = match honeyguide::store::Reader::open(path) {
        Ok(reader) => reader,
        Err(error) => {
            eprintln!("honeyguide: replay: {error}");
            return ExitCode::from(2);
        }
    };
    let probes = config.timeline_probes();
    let to = jiff::Timestamp::now();
    let oldest = reader.oldest_result().ok().flatten();
    let before = |span: Duration| {
        jiff::SignedDuration::try_from(span)
            .ok()
            .and_then(|span| to.checked_sub(span).ok())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    };
    let from = before(since);
    let start = before(since.saturating_add(replay::warm_up(catalog, &probes)));
    let mut replaying = Replay::new(catalog.clone(), &probes, start, from, to);
    let read = reader
        .results(start, to, |run| replaying.push(run))
        .and_then(|count| Ok((count, reader.transitions(from, to)?)));
    let (count, recorded) = match read {
        Ok(read) => read,
        Err(error) => {
            eprintln!("honeyguide: replay: {error}");
            return ExitCode::from(2);
        }
    };
    if count.compact + count.unreadable > 0 {
        eprintln!(
            "honeyguide: replay: left out {} result(s) without observations (written before \
             they were kept) and {} unreadable one(s)",
            count.compact, count.unreadable
        );
    }
    if let Some(oldest) = oldest.filter(|oldest| *oldest > from) {
        eprintln!(
            "honeyguide: replay: the store's results start at {oldest}, after the window does"
        );
    }
    let report = replay::compare(catalog, replaying.finish(), &recorded);
    println!("{report}");
    ExitCode::SUCCESS
}

/// One line per failure mode: id, severity, `for`, the probes it reads, and its title.
fn render_catalog(catalog: &Catalog) -> String {
    let rows: Vec<[String; 4]> = catalog
        .modes()
        .iter()
        .map(|mode| {
            [
                mode.id.clone(),
                mode.severity.as_str().to_owned(),
                humantime::format_duration(mode.for_duration).to_string(),
                mode.probes().join(","),
            ]
        })
        .collect();
    let header = ["ID", "SEVERITY", "FOR", "PROBES"];
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].len())
                .chain([header[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 4], title: &str| {
        let mut line = String::new();
        for (cell, width) in cells.iter().zip(&widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        line.push_str(title);
        line.push('\n');
        line
    };
    let mut out = line(header, "TITLE");
    for (mode, row) in catalog.modes().iter().zip(&rows) {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3]], &mode.title));
    }
    out
}
