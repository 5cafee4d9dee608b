//! The `dns` probe kind: one name, one record type, asked of several resolvers at once.
//!
//! Each run builds a fresh hickory resolver per configured resolver (cache size 0, no retries,
//! no hosts file), queries them all concurrently, and compares what came back with the
//! expectation: a list of values (`expect_any_of`) and/or address ranges (`expect_in_cidrs`, with
//! the named set `cloudflare`). It feeds the catalog's "DNS hijacking", "Cloudflare DNS failure"
//! and "CoreDNS down" entries: a name that stops resolving is `dns`, an answer outside the
//! expectation is `assertion` with `hijack_suspected`, and resolvers that answer differently set
//! `disagree`.
//!
//! This kind does not resolve through [`net::Resolver`] as the kinds that connect somewhere do:
//! the resolvers are what it probes, so each is asked directly, as configured, with a fresh
//! connection and none of the shared resolver's `/etc/hosts`. What it shares with them is the
//! TLS settings (`tls_verify`, `ca_file`) and the words for socket and certificate errors.
//!
//! Every resolver gets its own time budget, shorter than the probe's timeout, so that a resolver
//! that never answers shows up in `observations.resolvers` as the one that failed while the
//! others' answers are still reported, instead of the whole run ending in `timeout`.
//!
//! Resolver syntax (documented in `docs/probes/dns.md`): `system` (the name servers of
//! `/etc/resolv.conf`, with its search domains), `udp://IP[:PORT]`, `tcp://IP[:PORT]`,
//! `tls://IP[:PORT]#SERVER-NAME` (DNS over TLS) and `https://IP[:PORT][/PATH]#SERVER-NAME` (DNS
//! over HTTPS). Addresses are IP literals: a resolver found by name would need another resolver,
//! and then the probe would no longer test the one it names.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::probe::schema::{Field, Type, Unit};
use crate::probe::{Outcome, ProbeContext, net};

/// Where `system` reads its name servers unless `resolv_conf` says otherwise.
const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Share of the time left in a run that each resolver may use, when `resolver_timeout` is not
/// set: enough to wait for a slow resolver, while leaving time to report the others.
const DEFAULT_BUDGET_SHARE: f64 = 0.8;

/// Cloudflare's published ranges (cloudflare.com/ips-v4 and /ips-v6), as collected in
/// `reference/protocols.md` §2.3. They change occasionally: verify them against
/// <https://www.cloudflare.com/ips/> and list CIDRs explicitly to override.
pub const CLOUDFLARE_RANGES: [&str; 22] = [
    "173.245.48.0/20",
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "141.101.64.0/18",
    "108.162.192.0/18",
    "190.93.240.0/20",
    "188.114.96.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "162.158.0.0/15",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "172.64.0.0/13",
    "131.0.72.0/22",
    "2400:cb00::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2405:b500::/32",
    "2405:8100::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
];

/// What a run observes (the resolvers are its connections, so it has no connection facts).
pub const OBSERVATIONS: &[Field] = &[
    Field::texts(
        "answers",
        "the union of all resolvers' answers, sorted",
        &["104.16.1.1"],
    ),
    Field::text(
        "rcode",
        "`NOERROR` if every resolver that answered said so; otherwise the first other code in \
         resolver order, such as `NXDOMAIN` or `SERVFAIL`; `null` when no resolver answered",
        "NOERROR",
    ),
    Field::map_of(
        "resolvers",
        "one entry per resolver (keyed by how it was written), described below",
        "resolver",
        "system",
        &Type::Record(RESOLVER_OBSERVATIONS),
    ),
    Field::flag(
        "disagree",
        "the resolvers that answered gave different answer sets or codes (a dead resolver does \
         not count)",
        false,
    ),
    Field::texts(
        "unexpected",
        "answers outside `expect_any_of` / `expect_in_cidrs`",
        &[],
    ),
    Field::flag("hijack_suspected", "`unexpected` is not empty", false),
];

/// One resolver's answer, in `resolvers.<resolver>`.
const RESOLVER_OBSERVATIONS: &[Field] = &[
    Field::texts("answers", "this resolver's answers", &["104.16.1.1"]),
    Field::text(
        "rcode",
        "its response code; `null` if no response arrived",
        "NOERROR",
    ),
    Field::flag("ok", "it answered as expected", true),
    Field::text(
        "message",
        "what it said, or why it failed: `no answer within 800ms`, `connection refused`",
        "1 answer",
    ),
    Field::texts("unexpected", "its answers outside the expectation", &[]),
    Field::float("seconds", "how long it took", 0.004).unit(Unit::Seconds),
];

mod metrics;
mod resolve;
mod spec;
#[cfg(test)]
mod tests;
mod verdict;

pub use metrics::write_metrics;
use resolve::{Reply, ResolverEntry, ask};
pub use spec::Spec;
use spec::{Expectation, RecordKind};
use verdict::evaluate;

// === probe ===

/// A built `dns` probe.
#[derive(Debug)]
pub struct DnsProbe {
    inner: Arc<Shared>,
    resolvers: Vec<ResolverEntry>,
    expectation: Expectation,
    resolver_timeout: Option<Duration>,
}

/// What every per-resolver task needs.
#[derive(Debug)]
struct Shared {
    name: String,
    record_kind: RecordKind,
    resolv_conf: PathBuf,
    tls: net::TlsSettings,
}

/// One resolver's reply and how long it took.
#[derive(Clone, Debug)]
struct ResolverReport {
    label: String,
    seconds: f64,
    reply: Reply,
}

impl DnsProbe {
    /// Makes one attempt: every resolver once, concurrently.
    pub async fn run(&self, ctx: &ProbeContext) -> Outcome {
        ctx.phase("query");
        let budget = self.budget(ctx);
        let mut tasks = JoinSet::new();
        for (index, entry) in self.resolvers.iter().enumerate() {
            let shared = self.inner.clone();
            let entry = entry.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let reply = ask(&shared, &entry.addr, budget).await;
                let report = ResolverReport {
                    label: entry.label,
                    seconds: started.elapsed().as_secs_f64(),
                    reply,
                };
                (index, report)
            });
        }
        let mut reports: Vec<Option<ResolverReport>> = vec![None; self.resolvers.len()];
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, report)) => {
                    if let Some(slot) = reports.get_mut(index) {
                        *slot = Some(report);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "dns resolver task failed");
                }
            }
        }
        ctx.end_phase();
        let reports: Vec<ResolverReport> = reports
            .into_iter()
            .zip(&self.resolvers)
            .map(|(report, entry)| {
                report.unwrap_or_else(|| ResolverReport {
                    label: entry.label.clone(),
                    seconds: 0.0,
                    reply: Reply::Unreachable {
                        message: "lookup task failed (a honeyguide bug)".to_owned(),
                    },
                })
            })
            .collect();
        evaluate(
            &self.inner.name,
            self.inner.record_kind,
            &self.expectation,
            &reports,
        )
    }

    /// What is probed, for humans: `name TYPE via resolvers`.
    pub fn target(&self) -> String {
        let resolvers: Vec<&str> = self
            .resolvers
            .iter()
            .map(|entry| entry.label.as_str())
            .collect();
        format!(
            "{} {} via {}",
            self.inner.name,
            self.inner.record_kind.as_str(),
            resolvers.join(", ")
        )
    }

    /// Each resolver's time: `resolver_timeout`, but never more than 80% of what is left, so
    /// the run always ends before the runner's hard timeout and reports every resolver.
    fn budget(&self, ctx: &ProbeContext) -> Duration {
        let share = ctx.remaining().mul_f64(DEFAULT_BUDGET_SHARE);
        self.resolver_timeout
            .map_or(share, |configured| configured.min(share))
            .max(Duration::from_millis(1))
    }
}
