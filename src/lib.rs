//! honeyguide: synthetic monitoring that names the failure mode and tells on-call what to do.
//!
//! # Layout
//!
//! - [`config`]: `probes.toml` into validated, immutable types; every error located.
//! - [`probe`]: the probe model and one module per kind (`http`, `postgres`, `asynq`, ...).
//! - [`scheduler`]: when probes run; bounded in time and in number.
//! - [`view`]: what is known about each probe (latest result, history, uptime).
//! - [`state`]: the task that owns all mutable state, and the snapshots readers get.
//! - [`catalog`]: the failure modes (`alerts/*.toml`) and the diagnoses they produce.
//! - [`exposition`]: the Prometheus text format (a leaf); [`metrics`]: `/metrics`, rendered from a snapshot.
//! - [`server`]: `/metrics`, `/status`, `/`, `/healthz`.
//! - [`html`]: safe HTML (escaping, the rules' markdown, links) for the page and email.
//! - [`human`]: durations and relative times in words.
//! - [`text`]: outside text made safe for one line (escaped control characters, bounded length).
//! - [`alert`]: alert states from diagnoses; grouping, repeat, inhibition, silences.
//! - [`notify`]: notifiers (email, webhook, Alertmanager, heartbeat) and the outbox dispatcher.
//! - [`store`]: the embedded SQLite store: alert state, outbox, silences, probe history.
//! - [`app`]: wiring and lifecycle; [`fd_limit`]: the descriptor limit and the server's share.
//! - [`tls`]: the one rustls provider, trust roots, certificate facts.
//!
//! See ARCHITECTURE.md for the data flow and the invariants that hold it together.

pub mod alert;
pub mod app;
pub mod catalog;
pub mod closed;
pub mod config;
pub mod control;
pub mod exposition;
pub mod fd_limit;
pub mod html;
pub mod human;
pub mod metrics;
pub mod notify;
pub mod probe;
pub mod scheduler;
pub mod server;
pub mod spec;
pub mod state;
pub mod store;
pub mod text;
pub mod tls;
pub mod view;
