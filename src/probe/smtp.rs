//! The `smtp` probe kind. Not implemented yet: configuring it is a load error.

use serde::Deserialize;

use crate::config::{BuildContext, FieldError};
use crate::metrics::MetricsWriter;
use crate::probe::{ErrorClass, Outcome, ProbeContext, ProbeResult};

/// The keys of a `kind = "smtp"` probe.
#[derive(Debug, Deserialize)]
pub struct Spec {}

/// A built `smtp` probe.
#[derive(Debug)]
pub struct SmtpProbe {}

impl Spec {
    /// Validates the keys into a runnable probe.
    pub fn build(self, _cx: &BuildContext) -> Result<SmtpProbe, Vec<FieldError>> {
        Err(vec![FieldError::new(
            "kind",
            "the `smtp` probe kind is not implemented yet",
        )])
    }
}

impl SmtpProbe {
    /// Makes one attempt.
    pub async fn run(&self, _ctx: &ProbeContext) -> Outcome {
        Outcome::failure(ErrorClass::Internal, "not implemented")
    }

    /// What is probed, for humans.
    pub fn target(&self) -> String {
        String::new()
    }
}

/// Writes the `smtp`-specific series.
pub fn write_metrics(_probes: &[(&str, &ProbeResult)], _out: &mut MetricsWriter) {}
