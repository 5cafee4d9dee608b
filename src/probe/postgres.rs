//! The `postgres` probe kind. Not implemented yet: configuring it is a load error.

use serde::Deserialize;

use crate::config::{BuildContext, FieldError};
use crate::metrics::MetricsWriter;
use crate::probe::{ErrorClass, Outcome, ProbeContext, ProbeResult};

/// The keys of a `kind = "postgres"` probe.
#[derive(Debug, Deserialize)]
pub struct Spec {}

/// A built `postgres` probe.
#[derive(Debug)]
pub struct PostgresProbe {}

impl Spec {
    /// Validates the keys into a runnable probe.
    pub fn build(self, _cx: &BuildContext) -> Result<PostgresProbe, Vec<FieldError>> {
        Err(vec![FieldError::new(
            "kind",
            "the `postgres` probe kind is not implemented yet",
        )])
    }
}

impl PostgresProbe {
    /// Makes one attempt.
    pub async fn run(&self, _ctx: &ProbeContext) -> Outcome {
        Outcome::failure(ErrorClass::Internal, "not implemented")
    }

    /// What is probed, for humans.
    pub fn target(&self) -> String {
        String::new()
    }
}

/// Writes the `postgres`-specific series.
pub fn write_metrics(_probes: &[(&str, &ProbeResult)], _out: &mut MetricsWriter) {}
