//! The `redis` probe kind. Not implemented yet: configuring it is a load error.

use serde::Deserialize;

use crate::config::{BuildContext, FieldError};
use crate::metrics::MetricsWriter;
use crate::probe::{ErrorClass, Outcome, ProbeContext, ProbeResult};

/// The keys of a `kind = "redis"` probe.
#[derive(Debug, Deserialize)]
pub struct Spec {}

/// A built `redis` probe.
#[derive(Debug)]
pub struct RedisProbe {}

impl Spec {
    /// Validates the keys into a runnable probe.
    pub fn build(self, _cx: &BuildContext) -> Result<RedisProbe, Vec<FieldError>> {
        Err(vec![FieldError::new(
            "kind",
            "the `redis` probe kind is not implemented yet",
        )])
    }
}

impl RedisProbe {
    /// Makes one attempt.
    pub async fn run(&self, _ctx: &ProbeContext) -> Outcome {
        Outcome::failure(ErrorClass::Internal, "not implemented")
    }

    /// What is probed, for humans.
    pub fn target(&self) -> String {
        String::new()
    }
}

/// Writes the `redis`-specific series.
pub fn write_metrics(_probes: &[(&str, &ProbeResult)], _out: &mut MetricsWriter) {}
