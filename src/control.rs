//! Requests to the running daemon from outside its lifecycle (a signal, the HTTP API, a file
//! watch), and what they come back with: today, configuration reloads.
//!
//! A leaf, so the server can ask for a reload without knowing the lifecycle that carries it out
//! ([`crate::app`]).

use tokio::sync::oneshot;

crate::closed_set! {
    /// What asked for a reload.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Trigger {
        /// SIGHUP.
        Signal = "signal",
        /// `POST /-/reload`.
        Api = "api",
        /// A change of `probes.toml` or of the rules directory.
        FileChange = "file_change",
    }
}

/// A request to reload, with where to say how it went.
#[derive(Debug)]
pub struct ReloadRequest {
    /// What asked.
    pub trigger: Trigger,
    /// Where the outcome goes, if anyone waits for it.
    pub reply: Option<oneshot::Sender<ReloadOutcome>>,
}

impl ReloadRequest {
    /// A request nobody waits on (a signal, a file change).
    pub fn new(trigger: Trigger) -> Self {
        Self {
            trigger,
            reply: None,
        }
    }
}

/// How a reload went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration is in force, except the settings named (they need a restart).
    Applied {
        /// Settings that changed but cannot change at runtime.
        not_applied: Vec<String>,
    },
    /// The new configuration has problems; the running one stays.
    Failed {
        /// Every problem, one per line, located, as `validate` prints them.
        errors: String,
    },
}
