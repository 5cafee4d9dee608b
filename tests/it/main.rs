//! honeyguide's integration tests: one binary, real servers.
//!
//! Every server a test talks to is real (Postgres, PgBouncer, Redis, SMTP, registry, S3, DNS,
//! Alertmanager) or an in-process server speaking the real protocol (hyper with rcgen
//! certificates). The harness in `support/` starts each as a child process on a free loopback
//! port and kills it on drop. A missing server binary fails the test loudly with the command that
//! installs it: no test skips itself.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the test failing, with the cause in the message"
)]
#![allow(
    clippy::disallowed_types,
    reason = "the harness waits for real server processes in real time"
)]

mod alerting;
mod alerting_alertmanager;
mod alerting_email;
mod alerting_permanent;
mod alerting_restart;
mod architecture;
mod catalog_rules;
mod config_bounds;
mod config_secrets;
mod daemon;
mod daemon_catalog;
mod daemon_http;
mod daemon_logs;
mod deploy;
mod metrics_format;
mod observation_docs;
mod probe_asynq;
mod probe_dns;
mod probe_http;
mod probe_kubernetes;
mod probe_postgres;
mod probe_prometheus;
mod probe_redis;
mod probe_registry;
mod probe_s3;
mod probe_smtp;
mod probe_wrong_server;
mod reload;
mod replay;
mod rule_loader;
mod server_bounds;
mod shipped_probes;
mod status_page;
mod status_schema;
mod store_lock;
mod support;
mod vantages;
