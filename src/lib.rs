//! honeyguide: synthetic monitoring that names the failure mode and tells on-call what to do.
//!
//! # Layout
//!
//! - [`catalog`]: the failure modes (`alerts/*.toml`) and the diagnoses they produce.
//! - [`config`]: `probes.toml` into validated, immutable types; every error located.
//! - [`probe`]: the probe model and one module per kind (`http`, `postgres`, `asynq`, ...).
//! - [`tls`]: the one rustls provider, trust roots, certificate facts.
//! - [`state`]: the task that owns all mutable state, and the snapshots readers get.
//! - [`metrics`]: the Prometheus text exposition, rendered from the state snapshot.
//!
//! See ARCHITECTURE.md for the data flow and the invariants that hold it together.

pub mod catalog;
pub mod config;
pub mod metrics;
pub mod probe;
pub mod state;
pub mod tls;
