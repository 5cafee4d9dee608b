//! Configuration reload: what asks for one, reading and validating the new configuration
//! completely before anything changes, and what of it cannot change at runtime.
//!
//! A reload is asked for by SIGHUP, `POST /-/reload` or a change of the files
//! (`[server] watch_config`). It reads `probes.toml` and the rules directory exactly as a start
//! does (so `honeyguide validate` stays the pre-flight check); with any problem, nothing changes,
//! and the problems are logged, shown on the page and in `/status`, and exported as
//! `honeyguide_config_last_reload_successful 0`. Otherwise the new configuration is put in force
//! part by part ([`super`]); the `[server]` section and the store path keep what they started
//! with, and a reload that changes them says so.

use std::path::Path;

use crate::catalog::{self, Catalog};
use crate::config::{self, Config};

/// Reads and validates the configuration at `config_path` and the rules in `alerts_dir`
/// (`None` when the running rules came from nowhere to reload them from: they stay empty
/// then). Every problem of both, one per line.
pub fn load(
    config_path: &Path,
    alerts_dir: Option<&Path>,
) -> Result<(Config, Option<Catalog>), String> {
    let config = config::load(config_path).map_err(|errors| errors.to_string())?;
    let Some(dir) = alerts_dir else {
        return Ok((config, None));
    };
    let catalog = catalog::load(dir, &config.probe_kinds()).map_err(|errors| errors.to_string())?;
    Ok((config, Some(catalog)))
}

/// The settings that changed from `running` to `loaded` but only take effect at a restart:
/// the `[server]` section (the listener and its bounds are set up once) and the store path (a
/// daemon holds its store locked from start to stop).
pub fn fixed_at_start(running: &Config, loaded: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let (old, new) = (&running.server, &loaded.server);
    if old.listen != new.listen {
        changed.push(format!(
            "[server] listen ({} stays until a restart)",
            old.listen
        ));
    }
    if old.max_connections != new.max_connections
        || old.header_timeout != new.header_timeout
        || old.idle_timeout != new.idle_timeout
        || old.request_timeout != new.request_timeout
        || old.watch_config != new.watch_config
    {
        changed
            .push("[server] connection bounds and watch_config (kept until a restart)".to_owned());
    }
    if old.vantage != new.vantage {
        changed.push(format!(
            "[server] vantage ({} stays until a restart)",
            old.vantage
        ));
    }
    if running.store.path != loaded.store.path {
        changed.push(format!(
            "[store] path ({} stays until a restart)",
            running.store.path.display()
        ));
    }
    changed
}
