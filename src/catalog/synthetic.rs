//! Typical probe results, one per kind, for checking rules at load time.
//!
//! CEL here is dynamically typed: `probes["redis"].observations.memory_ratio > "0.9"` parses
//! fine and only fails when evaluated. So every rule is evaluated once at load against probes
//! that have a plausible result with every documented observation set to a typical, non-null
//! value, and a type error (no such overload, unknown function, wrong argument) is reported as
//! a load error with its position. The values are the typical ones each kind's observation
//! schema declares ([`crate::probe::schema`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;

use crate::probe::{ErrorClass, Kind, Observations, ProbeResult};
use crate::view::ProbeView;

/// A probe named `name` of `kind` that failed once and then succeeded with typical observations.
pub(crate) fn view(name: &str, kind: Kind) -> Arc<ProbeView> {
    let mut view = ProbeView::new(
        name,
        kind,
        String::new(),
        BTreeMap::new(),
        Duration::from_secs(30),
        Duration::from_secs(10),
    );
    let at = Instant::now();
    let wall = Timestamp::UNIX_EPOCH;
    view.record(
        ProbeResult {
            ok: false,
            error: Some(ErrorClass::Timeout),
            message: "timed out after 10s during connect".to_owned(),
            observations: observations(kind),
            duration: Duration::from_secs(10),
            phases: Vec::new(),
        },
        at,
        wall,
    );
    view.record(
        ProbeResult {
            ok: true,
            error: None,
            message: "ok".to_owned(),
            observations: observations(kind),
            duration: Duration::from_millis(120),
            phases: Vec::new(),
        },
        at,
        wall,
    );
    Arc::new(view)
}

/// Typical observations of `kind`: every declared observation at a plausible, non-null value
/// (the kind's schema), so that the type check reaches every key a rule reads.
pub(crate) fn observations(kind: Kind) -> Observations {
    kind.schema().typical()
}

/// A healthy run's observations of `kind`: typical values, `null` for what only a failure
/// reports (`failed_step`, `timeout_phase`). Example timelines start from these.
pub(crate) fn healthy(kind: Kind) -> Observations {
    kind.schema().healthy()
}
