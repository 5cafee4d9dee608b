//! The `s3` probe kind. Not implemented yet: configuring it is a load error.

use serde::Deserialize;

use crate::config::{BuildContext, FieldError};
use crate::metrics::MetricsWriter;
use crate::probe::{ErrorClass, Outcome, ProbeContext, ProbeResult};

/// The keys of a `kind = "s3"` probe.
#[derive(Debug, Deserialize)]
pub struct Spec {}

/// A built `s3` probe.
#[derive(Debug)]
pub struct S3Probe {}

impl Spec {
    /// Validates the keys into a runnable probe.
    pub fn build(self, _cx: &BuildContext) -> Result<S3Probe, Vec<FieldError>> {
        Err(vec![FieldError::new(
            "kind",
            "the `s3` probe kind is not implemented yet",
        )])
    }
}

impl S3Probe {
    /// Makes one attempt.
    pub async fn run(&self, _ctx: &ProbeContext) -> Outcome {
        Outcome::failure(ErrorClass::Internal, "not implemented")
    }

    /// What is probed, for humans.
    pub fn target(&self) -> String {
        String::new()
    }
}

/// Writes the `s3`-specific series.
pub fn write_metrics(_probes: &[(&str, &ProbeResult)], _out: &mut MetricsWriter) {}
