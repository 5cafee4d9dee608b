//! The `asynq` probe kind. Not implemented yet: configuring it is a load error.

use serde::Deserialize;

use crate::config::{BuildContext, FieldError};
use crate::metrics::MetricsWriter;
use crate::probe::{ErrorClass, Outcome, ProbeContext, ProbeResult};

/// The keys of a `kind = "asynq"` probe.
#[derive(Debug, Deserialize)]
pub struct Spec {}

/// A built `asynq` probe.
#[derive(Debug)]
pub struct AsynqProbe {}

impl Spec {
    /// Validates the keys into a runnable probe.
    pub fn build(self, _cx: &BuildContext) -> Result<AsynqProbe, Vec<FieldError>> {
        Err(vec![FieldError::new(
            "kind",
            "the `asynq` probe kind is not implemented yet",
        )])
    }
}

impl AsynqProbe {
    /// Makes one attempt.
    pub async fn run(&self, _ctx: &ProbeContext) -> Outcome {
        Outcome::failure(ErrorClass::Internal, "not implemented")
    }

    /// What is probed, for humans.
    pub fn target(&self) -> String {
        String::new()
    }
}

/// Writes the `asynq`-specific series.
pub fn write_metrics(_probes: &[(&str, &ProbeResult)], _out: &mut MetricsWriter) {}
