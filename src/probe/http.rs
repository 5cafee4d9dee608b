//! The `http` probe kind. Not implemented yet: configuring it is a load error.

use serde::Deserialize;

use crate::config::{BuildContext, FieldError};
use crate::metrics::MetricsWriter;
use crate::probe::{ErrorClass, Outcome, ProbeContext, ProbeResult};

/// The keys of a `kind = "http"` probe.
#[derive(Debug, Deserialize)]
pub struct Spec {}

/// A built `http` probe.
#[derive(Debug)]
pub struct HttpProbe {}

impl Spec {
    /// Validates the keys into a runnable probe.
    pub fn build(self, _cx: &BuildContext) -> Result<HttpProbe, Vec<FieldError>> {
        Err(vec![FieldError::new(
            "kind",
            "the `http` probe kind is not implemented yet",
        )])
    }
}

impl HttpProbe {
    /// Makes one attempt.
    pub async fn run(&self, _ctx: &ProbeContext) -> Outcome {
        Outcome::failure(ErrorClass::Internal, "not implemented")
    }

    /// What is probed, for humans.
    pub fn target(&self) -> String {
        String::new()
    }
}

/// Writes the `http`-specific series.
pub fn write_metrics(_probes: &[(&str, &ProbeResult)], _out: &mut MetricsWriter) {}
