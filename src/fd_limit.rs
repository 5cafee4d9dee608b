//! File descriptors: the process's limit, raised at start, and how many of them honeyguide's
//! own HTTP server may hold.
//!
//! Every probe run needs a descriptor or two (its socket, a resolver socket), and so does every
//! client of `:9898`. Linux starts processes with a soft limit of 1,024 even where the hard
//! limit is far higher, so `run` raises the soft limit to the hard one, and the server's cap on
//! connections is lowered when it would leave the probes too few (see [`server_share`]).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors the process needs besides probes and clients: the store (database, WAL, shared
/// memory, lock), the listener, the runtime's own, logs, and room for a burst of notifications.
pub const BASE_RESERVE: u64 = 64;

/// Descriptors counted per probe run in flight (its socket, and a resolver's).
pub const PER_RUN: u64 = 2;

/// The soft and hard limits, after trying to raise the soft one to the hard one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raised {
    /// The soft limit before.
    pub before: Option<u64>,
    /// The soft limit now (`None`: unlimited).
    pub now: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Never fails: when the kernel refuses,
/// the limit stays as it was, and the server's share is computed from that.
pub fn raise() -> Raised {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return Raised {
            before: limit.current,
            now: limit.current,
        };
    }
    let raised = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
    Raised {
        before: limit.current,
        now: if raised.is_ok() {
            limit.maximum
        } else {
            limit.current
        },
    }
}

/// The soft limit now (`None`: unlimited).
pub fn current() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// How many connections the server may hold under a descriptor `limit`, keeping what
/// `runs_in_flight` probe runs need in reserve (at least 8, so the server always answers).
pub fn server_share(limit: Option<u64>, runs_in_flight: usize) -> usize {
    let Some(limit) = limit else {
        return usize::MAX;
    };
    let runs = u64::try_from(runs_in_flight).unwrap_or(u64::MAX);
    let reserve = BASE_RESERVE.saturating_add(runs.saturating_mul(PER_RUN));
    let share = limit.saturating_sub(reserve).max(8);
    usize::try_from(share).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probes' reserve comes first; the server keeps a minimum to answer /healthz.
    #[test]
    fn the_server_gets_what_probes_leave() {
        assert_eq!(server_share(Some(1024), 100), 1024 - 64 - 200);
        assert_eq!(server_share(Some(1024), 1000), 8);
        assert_eq!(server_share(None, 1000), usize::MAX);
    }

    /// Raising is idempotent: a second call finds the soft limit at the hard one.
    #[test]
    fn raising_twice_changes_nothing_the_second_time() {
        raise();
        let again = raise();
        assert_eq!(again.before, again.now);
        assert_eq!(current(), again.now);
    }
}
