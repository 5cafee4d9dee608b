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

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::DnsHandle;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{DnsRequestOptions, Query};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::{ConnectionProvider, PoolContext, Resolver, TlsConfig};
use ipnet::IpNet;
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::exposition::MetricsWriter;
use crate::probe::{ErrorClass, Outcome, ProbeContext, ProbeResult, Value, net};
use crate::spec::{BuildContext, FieldError, FieldErrors, HumanDuration, Keep, duration};

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

// === Spec ===

/// The keys of a `kind = "dns"` probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The name to look up, e.g. `api.example.com`. (Not `name`: that key is the probe's own.)
    query_name: String,
    /// `A` (default), `AAAA`, `CNAME`, `MX` or `TXT`.
    #[serde(default)]
    record_type: RecordKind,
    /// Resolvers to ask, each separately (default `["system"]`); see the module doc for the syntax.
    resolvers: Option<Vec<String>>,
    /// Every answer must be one of these (IPs for A/AAAA; names, `PREF HOST` or text otherwise).
    expect_any_of: Option<Vec<String>>,
    /// Every address answer must fall in one of these ranges: a CIDR, an IP, or a named set
    /// (`cloudflare`); a single string or a list.
    expect_in_cidrs: Option<OneOrMany>,
    /// The response code every resolver must give (e.g. `NXDOMAIN` for a name that must not
    /// exist). Without it, a resolver must answer `NOERROR` with at least one record.
    expect_rcode: Option<String>,
    /// How long each resolver may take (default and upper bound: 80% of the time left in the
    /// run).
    resolver_timeout: Option<HumanDuration>,
    /// Verify the certificates of `tls://` and `https://` resolvers (default true).
    tls_verify: Option<bool>,
    /// CA certificates (PEM) for `tls://` and `https://` resolvers, instead of the system roots.
    ca_file: Option<PathBuf>,
    /// Where `system` reads its name servers (default `/etc/resolv.conf`).
    resolv_conf: Option<PathBuf>,
}

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The record types the probe asks for.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
enum RecordKind {
    #[default]
    #[serde(rename = "A", alias = "a")]
    A,
    #[serde(rename = "AAAA", alias = "aaaa")]
    Aaaa,
    #[serde(rename = "CNAME", alias = "cname")]
    Cname,
    #[serde(rename = "MX", alias = "mx")]
    Mx,
    #[serde(rename = "TXT", alias = "txt")]
    Txt,
}

impl RecordKind {
    fn record_type(self) -> RecordType {
        match self {
            RecordKind::A => RecordType::A,
            RecordKind::Aaaa => RecordType::AAAA,
            RecordKind::Cname => RecordType::CNAME,
            RecordKind::Mx => RecordType::MX,
            RecordKind::Txt => RecordType::TXT,
        }
    }

    fn is_address(self) -> bool {
        matches!(self, RecordKind::A | RecordKind::Aaaa)
    }

    fn as_str(self) -> &'static str {
        match self {
            RecordKind::A => "A",
            RecordKind::Aaaa => "AAAA",
            RecordKind::Cname => "CNAME",
            RecordKind::Mx => "MX",
            RecordKind::Txt => "TXT",
        }
    }
}

/// The response codes `expect_rcode` accepts, by their usual mnemonic.
const RCODES: [&str; 6] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
];

impl Spec {
    /// Validates the keys into a runnable probe.
    pub fn build(self, cx: &BuildContext) -> Result<DnsProbe, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let name = self.query_name.trim().to_owned();
        if name.is_empty() {
            errors.push(FieldError::new("query_name", "must not be empty"));
        } else if let Err(error) = Name::from_utf8(&name) {
            errors.push(FieldError::new(
                "query_name",
                format!("`{name}` is not a valid domain name: {error}"),
            ));
        }

        let resolvers = self.resolvers.unwrap_or_else(|| vec!["system".to_owned()]);
        if resolvers.is_empty() {
            errors.push(FieldError::new(
                "resolvers",
                "list at least one resolver, e.g. [\"system\"]",
            ));
        }
        let mut parsed = Vec::with_capacity(resolvers.len());
        let mut seen = BTreeSet::new();
        for (index, text) in resolvers.iter().enumerate() {
            let key = format!("resolvers[{index}]");
            if !seen.insert(text.trim().to_owned()) {
                errors.push(FieldError::new(&key, format!("`{text}` is listed twice")));
                continue;
            }
            match ResolverAddr::parse(text) {
                Ok(addr) => parsed.push(ResolverEntry {
                    label: text.trim().to_owned(),
                    addr,
                }),
                Err(message) => errors.push(FieldError::new(&key, message)),
            }
        }

        let expectation = build_expectation(
            self.record_type,
            self.expect_any_of,
            self.expect_in_cidrs,
            self.expect_rcode,
            &mut errors,
        );

        let resolver_timeout = duration::TIMEOUT
            .optional("resolver_timeout", self.resolver_timeout)
            .unwrap_or_else(|error| {
                errors.push(error);
                None
            });

        let tls = net::TlsSettings::from_keys(self.tls_verify, self.ca_file.as_deref(), cx, &[])
            .kept(&mut errors);

        match tls {
            Some(tls) if errors.is_empty() => Ok(DnsProbe {
                inner: Arc::new(Shared {
                    name,
                    record_kind: self.record_type,
                    resolv_conf: self
                        .resolv_conf
                        .map_or_else(|| PathBuf::from(DEFAULT_RESOLV_CONF), |path| cx.path(&path)),
                    tls,
                }),
                resolvers: parsed,
                expectation,
                resolver_timeout,
            }),
            _ => Err(errors.into_vec()),
        }
    }
}

fn build_expectation(
    record_kind: RecordKind,
    any_of: Option<Vec<String>>,
    in_cidrs: Option<OneOrMany>,
    rcode: Option<String>,
    errors: &mut FieldErrors,
) -> Expectation {
    let mut values = BTreeSet::new();
    for (index, value) in any_of.unwrap_or_default().iter().enumerate() {
        if record_kind.is_address() && IpAddr::from_str(value.trim()).is_err() {
            errors.push(FieldError::new(
                &format!("expect_any_of[{index}]"),
                format!(
                    "`{value}` is not an IP address, as {} answers are",
                    record_kind.as_str()
                ),
            ));
            continue;
        }
        values.insert(normalize_answer(value));
    }

    let mut ranges = Vec::new();
    let cidr_items = match in_cidrs {
        None => Vec::new(),
        Some(OneOrMany::One(item)) => vec![item],
        Some(OneOrMany::Many(items)) => items,
    };
    if !cidr_items.is_empty() && !record_kind.is_address() {
        errors.push(FieldError::new(
            "expect_in_cidrs",
            format!(
                "address ranges only apply to A and AAAA lookups, not {}",
                record_kind.as_str()
            ),
        ));
    }
    for (index, item) in cidr_items.iter().enumerate() {
        match parse_range_item(item) {
            Ok(mut parsed) => ranges.append(&mut parsed),
            Err(message) => errors.push(FieldError::new(
                &format!("expect_in_cidrs[{index}]"),
                message,
            )),
        }
    }

    let rcode = rcode.and_then(|text| {
        let upper = text.trim().to_ascii_uppercase();
        if RCODES.contains(&upper.as_str()) {
            Some(upper)
        } else {
            errors.push(FieldError::new(
                "expect_rcode",
                format!(
                    "unknown response code `{text}`, expected one of {}",
                    RCODES.join(", ")
                ),
            ));
            None
        }
    });

    Expectation {
        values,
        ranges,
        rcode,
    }
}

/// One `expect_in_cidrs` item: a named set, a CIDR, or a single address.
fn parse_range_item(item: &str) -> Result<Vec<IpNet>, String> {
    let item = item.trim();
    if item.eq_ignore_ascii_case("cloudflare") {
        return Ok(CLOUDFLARE_RANGES
            .iter()
            .filter_map(|range| IpNet::from_str(range).ok())
            .collect());
    }
    if let Ok(net) = IpNet::from_str(item) {
        return Ok(vec![net.trunc()]);
    }
    if let Ok(ip) = IpAddr::from_str(item) {
        return Ok(vec![IpNet::from(ip)]);
    }
    Err(format!(
        "`{item}` is neither a CIDR like \"104.16.0.0/13\", an IP, nor a named set (`cloudflare`)"
    ))
}

// === resolvers ===

/// One configured resolver: how it was written (the key in observations and metrics) and where
/// it is.
#[derive(Clone, Debug)]
struct ResolverEntry {
    label: String,
    addr: ResolverAddr,
}

/// Where and how to ask.
#[derive(Clone, Debug, PartialEq)]
enum ResolverAddr {
    /// The name servers and search domains of `resolv.conf`, as the operating system would.
    System,
    /// Plain DNS over UDP only.
    Udp(SocketAddr),
    /// Plain DNS over TCP only.
    Tcp(SocketAddr),
    /// DNS over TLS (RFC 7858), verifying the certificate for `server_name`.
    Tls {
        addr: SocketAddr,
        server_name: Arc<str>,
    },
    /// DNS over HTTPS (RFC 8484, HTTP/2), verifying the certificate for `server_name`.
    Https {
        addr: SocketAddr,
        server_name: Arc<str>,
        path: Arc<str>,
    },
}

impl ResolverAddr {
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "system" {
            return Ok(ResolverAddr::System);
        }
        let url = url::Url::parse(text).map_err(|_| {
            format!(
                "`{text}` is not a resolver: write \"system\", \"udp://IP[:PORT]\", \
                 \"tcp://IP[:PORT]\", \"tls://IP[:PORT]#NAME\" or \"https://IP[:PORT][/PATH]#NAME\""
            )
        })?;
        let scheme = url.scheme();
        let default_port = match scheme {
            "udp" | "tcp" => 53,
            "tls" => 853,
            "https" => 443,
            other => {
                return Err(format!(
                    "unknown resolver scheme `{other}`, expected one of `udp`, `tcp`, `tls`, `https` \
                     (or the word `system`)"
                ));
            }
        };
        let host = url.host_str().unwrap_or_default();
        let ip =
            IpAddr::from_str(host.trim_start_matches('[').trim_end_matches(']')).map_err(|_| {
                format!(
                    "resolver `{text}` must be given by IP address, not `{host}` (a resolver found \
                     by name would need another resolver)"
                )
            })?;
        let addr = SocketAddr::new(ip, url.port().unwrap_or(default_port));
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
            // Not quoted: it holds the very credentials or token it may not carry.
            return Err("a resolver may not carry credentials or a query string".to_owned());
        }
        let server_name = url
            .fragment()
            .map(str::trim)
            .filter(|name| !name.is_empty());
        let path = url.path();
        match scheme {
            "udp" | "tcp" => {
                if server_name.is_some() || !(path.is_empty() || path == "/") {
                    return Err(format!(
                        "plain resolver `{text}` takes no path or `#server-name`"
                    ));
                }
                Ok(if scheme == "udp" {
                    ResolverAddr::Udp(addr)
                } else {
                    ResolverAddr::Tcp(addr)
                })
            }
            "tls" => {
                let server_name = server_name.ok_or_else(|| {
                    format!(
                        "add the certificate name after `#`, e.g. \"tls://{addr}#cloudflare-dns.com\""
                    )
                })?;
                if !(path.is_empty() || path == "/") {
                    return Err(format!("DNS-over-TLS resolver `{text}` takes no path"));
                }
                Ok(ResolverAddr::Tls {
                    addr,
                    server_name: Arc::from(server_name),
                })
            }
            _ => {
                let server_name = server_name.ok_or_else(|| {
                    format!(
                        "add the certificate name after `#`, e.g. \
                         \"https://{addr}/dns-query#cloudflare-dns.com\""
                    )
                })?;
                let path = if path.is_empty() || path == "/" {
                    "/dns-query"
                } else {
                    path
                };
                Ok(ResolverAddr::Https {
                    addr,
                    server_name: Arc::from(server_name),
                    path: Arc::from(path),
                })
            }
        }
    }

    /// The name server config for an explicit resolver; `None` for `system`.
    fn name_server(&self) -> Option<NameServerConfig> {
        let (addr, protocol) = match self {
            ResolverAddr::System => return None,
            ResolverAddr::Udp(addr) => (addr, ProtocolConfig::Udp),
            ResolverAddr::Tcp(addr) => (addr, ProtocolConfig::Tcp),
            ResolverAddr::Tls { addr, server_name } => (
                addr,
                ProtocolConfig::Tls {
                    server_name: server_name.clone(),
                },
            ),
            ResolverAddr::Https {
                addr,
                server_name,
                path,
            } => (
                addr,
                ProtocolConfig::Https {
                    server_name: server_name.clone(),
                    path: path.clone(),
                },
            ),
        };
        let mut connection = ConnectionConfig::new(protocol);
        connection.port = addr.port();
        Some(NameServerConfig::new(addr.ip(), true, vec![connection]))
    }
}

// === expectation ===

/// What the answers must look like.
#[derive(Clone, Debug, Default)]
struct Expectation {
    /// Normalized values an answer may equal.
    values: BTreeSet<String>,
    /// Ranges an address answer may fall in.
    ranges: Vec<IpNet>,
    /// The response code every resolver must give, if not "NOERROR with answers".
    rcode: Option<String>,
}

impl Expectation {
    fn constrains_answers(&self) -> bool {
        !self.values.is_empty() || !self.ranges.is_empty()
    }

    fn accepts(&self, answer: &str) -> bool {
        if !self.constrains_answers() {
            return true;
        }
        if self.values.contains(&normalize_answer(answer)) {
            return true;
        }
        IpAddr::from_str(answer).is_ok_and(|ip| self.ranges.iter().any(|range| range.contains(&ip)))
    }
}

/// Answers compare without case and without the root dot; addresses in canonical form.
fn normalize_answer(value: &str) -> String {
    let value = value.trim();
    match IpAddr::from_str(value) {
        Ok(ip) => ip.to_string(),
        Err(_) => value.trim_end_matches('.').to_ascii_lowercase(),
    }
}

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

/// What one resolver said.
#[derive(Clone, Debug, PartialEq)]
enum Reply {
    /// A response arrived: its code and the answers of the asked type.
    Answered { rcode: String, answers: Vec<String> },
    /// No response: timeout, refused, TLS failure, unreadable reply.
    Unreachable { message: String },
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

/// Asks one resolver, within `budget`.
async fn ask(shared: &Shared, addr: &ResolverAddr, budget: Duration) -> Reply {
    let answer = match addr.name_server() {
        Some(name_server) => {
            tokio::time::timeout(budget, ask_directly(shared, name_server, budget)).await
        }
        None => tokio::time::timeout(budget, ask_system(shared, budget)).await,
    };
    answer.unwrap_or_else(|_elapsed| no_answer(budget))
}

/// One query on one fresh connection to an explicit resolver.
///
/// This talks to the connection directly rather than through hickory's `Resolver`: the
/// resolver's name-server pool reports a refused connection or a failed TLS handshake as "no
/// connections available", while the probe's whole point is to say which of those it was. Every
/// response is taken as it comes, its code included, with no cache, retry or fallback.
async fn ask_directly(shared: &Shared, name_server: NameServerConfig, budget: Duration) -> Reply {
    let record_type = shared.record_kind.record_type();
    let query = match absolute_name(&shared.name) {
        Ok(name) => Query::query(name, record_type),
        Err(message) => return Reply::Unreachable { message },
    };
    let Some(connection) = name_server.connections.first() else {
        return Reply::Unreachable {
            message: "no transport configured".to_owned(),
        };
    };
    // The budget is enforced around this whole exchange (see `ask`); hickory's own timer is set
    // past it, so that a silent resolver is always reported the same way, by the outer one.
    let mut options = ResolverOpts::default();
    options.timeout = budget + Duration::from_secs(1);
    let tls = TlsConfig {
        config: shared.tls.config().clone(),
    };
    let context = PoolContext::new(options, tls);
    let provider = TokioRuntimeProvider::default();
    let connecting = match provider.new_connection(name_server.ip, connection, &context) {
        Ok(connecting) => connecting,
        Err(error) => return unreachable(&error, budget),
    };
    let exchange = match connecting.await {
        Ok(exchange) => exchange,
        Err(error) => return unreachable(&error, budget),
    };
    let mut responses = exchange.lookup(query, DnsRequestOptions::default());
    match responses.next().await {
        Some(Ok(response)) => Reply::Answered {
            rcode: net::rcode_name(response.metadata.response_code),
            answers: answers_of(&response.answers, record_type),
        },
        Some(Err(error)) => reply_from_error(error, budget),
        None => Reply::Unreachable {
            message: "connection closed without a response".to_owned(),
        },
    }
}

/// A lookup through the name servers and search domains of `resolv.conf`, as the operating
/// system would do it (one resolver, several servers), minus the cache, retries and hosts file.
async fn ask_system(shared: &Shared, budget: Duration) -> Reply {
    let (config, mut options) = match system_config(&shared.resolv_conf).await {
        Ok(parts) => parts,
        Err(message) => return Reply::Unreachable { message },
    };
    options.cache_size = 0;
    options.attempts = 0;
    options.timeout = budget;
    options.use_hosts_file = ResolveHosts::Never;
    let resolver = match Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .with_tls_config(shared.tls.config().clone())
        .build()
    {
        Ok(resolver) => resolver,
        Err(error) => {
            return Reply::Unreachable {
                message: format!("cannot set up the resolver: {error}"),
            };
        }
    };
    let record_type = shared.record_kind.record_type();
    match resolver.lookup(shared.name.as_str(), record_type).await {
        Ok(lookup) => Reply::Answered {
            rcode: net::rcode_name(lookup.message().metadata.response_code),
            answers: answers_of(lookup.answers(), record_type),
        },
        Err(NetError::NoConnections) => Reply::Unreachable {
            message: format!(
                "no name server of {} could be reached",
                shared.resolv_conf.display()
            ),
        },
        Err(error) => reply_from_error(error, budget),
    }
}

/// Explicit resolvers get the name as absolute, so that no search domain is tried.
fn absolute_name(name: &str) -> Result<Name, String> {
    let mut name = Name::from_utf8(name).map_err(|error| format!("bad name `{name}`: {error}"))?;
    name.set_fqdn(true);
    Ok(name)
}

fn answers_of(records: &[Record], record_type: RecordType) -> Vec<String> {
    records
        .iter()
        .filter(|record| record.record_type() == record_type)
        .filter_map(|record| format_rdata(&record.data))
        .collect()
}

/// Reads `resolv.conf` without blocking the runtime.
async fn system_config(path: &Path) -> Result<(ResolverConfig, ResolverOpts), String> {
    let text = tokio::fs::read(path)
        .await
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    hickory_resolver::system_conf::parse_resolv_conf(text)
        .map_err(|error| format!("cannot use {}: {error}", path.display()))
}

fn reply_from_error(error: NetError, budget: Duration) -> Reply {
    match error {
        NetError::Dns(DnsError::ResponseCode(code)) => Reply::Answered {
            rcode: net::rcode_name(code),
            answers: Vec::new(),
        },
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => Reply::Answered {
            rcode: net::rcode_name(no_records.response_code),
            answers: Vec::new(),
        },
        other => unreachable(&other, budget),
    }
}

/// Describes a transport failure: no answer in time, refused, TLS (in the words every kind uses
/// for socket errors).
fn unreachable(error: &NetError, budget: Duration) -> Reply {
    match error {
        NetError::Timeout => no_answer(budget),
        NetError::Io(io_error) => Reply::Unreachable {
            message: net::describe_io(io_error),
        },
        other => Reply::Unreachable {
            message: other.to_string(),
        },
    }
}

fn no_answer(budget: Duration) -> Reply {
    Reply::Unreachable {
        message: format!("no answer within {}", HumanDuration(round_ms(budget))),
    }
}

/// Rounds to 10 ms for messages: the budget is a share of a remaining time measured in
/// nanoseconds, and "799.99ms" reads worse than "800ms".
fn round_ms(duration: Duration) -> Duration {
    let tens = (duration.as_millis() + 5) / 10;
    Duration::from_millis(u64::try_from(tens * 10).unwrap_or(u64::MAX))
}

/// An answer as rules compare it: an address, a name without the root dot, `PREF HOST` for MX,
/// the joined strings of a TXT record.
fn format_rdata(data: &RData) -> Option<String> {
    match data {
        RData::A(address) => Some(address.0.to_string()),
        RData::AAAA(address) => Some(address.0.to_string()),
        RData::CNAME(target) => Some(display_name(&target.0)),
        RData::MX(mx) => Some(format!("{} {}", mx.preference, display_name(&mx.exchange))),
        RData::TXT(txt) => Some(
            txt.txt_data
                .iter()
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => None,
    }
}

fn display_name(name: &Name) -> String {
    name.to_utf8().trim_end_matches('.').to_owned()
}

// === verdict ===

/// One resolver's verdict against the expectation.
struct Verdict {
    ok: bool,
    class: Option<ErrorClass>,
    message: String,
    unexpected: Vec<String>,
}

fn judge(reply: &Reply, expectation: &Expectation) -> Verdict {
    match reply {
        Reply::Unreachable { message } => Verdict {
            ok: false,
            class: Some(ErrorClass::Dns),
            message: message.clone(),
            unexpected: Vec::new(),
        },
        Reply::Answered { rcode, answers } => {
            let unexpected: Vec<String> = answers
                .iter()
                .filter(|answer| !expectation.accepts(answer))
                .cloned()
                .collect();
            let answered = rcode == "NOERROR" && !answers.is_empty();
            let rcode_ok = match &expectation.rcode {
                Some(expected) => rcode == expected,
                None => answered,
            };
            let listing = if answers.is_empty() {
                if rcode == "NOERROR" {
                    "NOERROR with no answer".to_owned()
                } else {
                    rcode.clone()
                }
            } else {
                format!("{rcode} {}", answers.join(", "))
            };
            if !unexpected.is_empty() {
                Verdict {
                    ok: false,
                    class: Some(ErrorClass::Assertion),
                    message: format!("{listing}; not expected: {}", unexpected.join(", ")),
                    unexpected,
                }
            } else if !rcode_ok {
                // A name that resolves when it should not is a broken expectation; a name that
                // does not resolve (or a resolver that fails) is a DNS failure.
                let class = if answered {
                    ErrorClass::Assertion
                } else {
                    ErrorClass::Dns
                };
                let message = match &expectation.rcode {
                    Some(expected) => format!("{listing}, expected {expected}"),
                    None => listing,
                };
                Verdict {
                    ok: false,
                    class: Some(class),
                    message,
                    unexpected,
                }
            } else {
                Verdict {
                    ok: true,
                    class: None,
                    message: listing,
                    unexpected,
                }
            }
        }
    }
}

/// Combines the resolvers' replies into the run's outcome and observations.
fn evaluate(
    name: &str,
    record_kind: RecordKind,
    expectation: &Expectation,
    reports: &[ResolverReport],
) -> Outcome {
    let mut per_resolver = BTreeMap::new();
    let mut union = BTreeSet::new();
    let mut unexpected = BTreeSet::new();
    let mut answer_sets = BTreeSet::new();
    let mut rcodes = Vec::new();
    let mut failures: Vec<(ErrorClass, String)> = Vec::new();
    let mut first_message = None;

    for report in reports {
        let verdict = judge(&report.reply, expectation);
        let (rcode, answers) = match &report.reply {
            Reply::Answered { rcode, answers } => {
                rcodes.push(rcode.clone());
                let set: BTreeSet<String> = answers.iter().map(|a| normalize_answer(a)).collect();
                answer_sets.insert((rcode.clone(), set));
                union.extend(answers.iter().cloned());
                (Value::from(rcode.as_str()), answers.clone())
            }
            Reply::Unreachable { .. } => (Value::Null, Vec::new()),
        };
        unexpected.extend(verdict.unexpected.iter().cloned());
        if let Some(class) = verdict.class {
            failures.push((class, format!("{}: {}", report.label, verdict.message)));
        }
        first_message.get_or_insert_with(|| verdict.message.clone());
        let entry: BTreeMap<String, Value> = BTreeMap::from([
            ("answers".to_owned(), Value::from(answers)),
            ("rcode".to_owned(), rcode),
            ("ok".to_owned(), Value::from(verdict.ok)),
            ("message".to_owned(), Value::from(verdict.message)),
            ("unexpected".to_owned(), Value::from(verdict.unexpected)),
            ("seconds".to_owned(), Value::from(report.seconds)),
        ]);
        per_resolver.insert(report.label.clone(), Value::from(entry));
    }

    let union: Vec<String> = union.into_iter().collect();
    let disagree = answer_sets.len() > 1;
    let subject = format!("{name} {}", record_kind.as_str());
    let outcome = match overall_class(&failures) {
        None => {
            // Agreeing resolvers are summed up by the first one's reply; disagreeing ones by
            // the union of what they said.
            let shown = if disagree {
                format!("NOERROR {}", union.join(", "))
            } else {
                first_message.unwrap_or_default()
            };
            let agreement = match (reports.len(), disagree) {
                (1, _) => String::new(),
                (count, false) => format!(" ({count} resolvers agree)"),
                (count, true) => format!(" ({count} resolvers, answers differ)"),
            };
            Outcome::success(format!("{subject}: {shown}{agreement}"))
        }
        Some(class) => {
            let failed = failures.len();
            let lead = if class == ErrorClass::Assertion {
                "answers outside the expectation"
            } else if failed == reports.len() {
                "no resolver gave an answer"
            } else {
                "resolver failed"
            };
            let details: Vec<&str> = failures.iter().map(|(_, text)| text.as_str()).collect();
            Outcome::failure(
                class,
                format!(
                    "{subject}: {lead} ({failed} of {}): {}",
                    reports.len(),
                    details.join("; ")
                ),
            )
        }
    };

    // The first code other than NOERROR is the one worth reading; null when nobody answered.
    let rcode = rcodes
        .iter()
        .find(|rcode| *rcode != "NOERROR")
        .or(rcodes.first())
        .cloned();
    let unexpected: Vec<String> = unexpected.into_iter().collect();
    outcome
        .with("answers", union)
        .with("rcode", rcode)
        .with("resolvers", per_resolver)
        .with("disagree", disagree)
        .with("hijack_suspected", !unexpected.is_empty())
        .with("unexpected", unexpected)
}

/// An answer outside the expectation outranks a resolver that failed: it is the more
/// dangerous finding (a hijack), and the failed resolver is still named in the message.
fn overall_class(failures: &[(ErrorClass, String)]) -> Option<ErrorClass> {
    failures
        .iter()
        .map(|(class, _)| *class)
        .find(|class| *class == ErrorClass::Assertion)
        .or_else(|| failures.first().map(|(class, _)| *class))
}

// === metrics ===

/// Writes the `dns`-specific series.
pub fn write_metrics(probes: &[(&str, &ProbeResult)], out: &mut MetricsWriter) {
    for (name, result) in probes {
        let Some(answers) = result.observation("answers") else {
            continue;
        };
        if let Value::List(items) = answers {
            out.gauge(
                "probe_dns_answer_rrs",
                "Distinct answers of the asked type, across all resolvers.",
                &[("probe", name)],
                items.len() as f64,
            );
        }
    }
    for (name, result) in probes {
        let Some(resolvers) = result.observation("resolvers").and_then(Value::as_map) else {
            continue;
        };
        for (resolver, entry) in resolvers {
            let ok = entry
                .as_map()
                .and_then(|entry| entry.get("ok"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            out.gauge(
                "honeyguide_dns_resolver_up",
                "Whether the resolver gave the expected answer in the last run.",
                &[("probe", name), ("resolver", resolver)],
                if ok { 1.0 } else { 0.0 },
            );
        }
    }
    for (name, result) in probes {
        let Some(resolvers) = result.observation("resolvers").and_then(Value::as_map) else {
            continue;
        };
        for (resolver, entry) in resolvers {
            if let Some(seconds) = entry
                .as_map()
                .and_then(|entry| entry.get("seconds"))
                .and_then(Value::as_f64)
            {
                out.gauge(
                    "honeyguide_dns_resolver_duration_seconds",
                    "How long the resolver took to answer (or to fail) in the last run.",
                    &[("probe", name), ("resolver", resolver)],
                    seconds,
                );
            }
        }
    }
    write_flag(
        probes,
        out,
        "honeyguide_dns_hijack_suspected",
        "Whether an answer fell outside the expected values or ranges.",
        "hijack_suspected",
    );
    write_flag(
        probes,
        out,
        "honeyguide_dns_resolvers_disagree",
        "Whether the resolvers returned different answers.",
        "disagree",
    );
}

fn write_flag(
    probes: &[(&str, &ProbeResult)],
    out: &mut MetricsWriter,
    family: &'static str,
    help: &'static str,
    key: &str,
) {
    for (name, result) in probes {
        if let Some(flag) = result.observation(key).and_then(Value::as_bool) {
            out.gauge(
                family,
                help,
                &[("probe", name)],
                if flag { 1.0 } else { 0.0 },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(rcode: &str, answers: &[&str]) -> Reply {
        Reply::Answered {
            rcode: rcode.to_owned(),
            answers: answers.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    fn report(label: &str, reply: Reply) -> ResolverReport {
        ResolverReport {
            label: label.to_owned(),
            seconds: 0.01,
            reply,
        }
    }

    fn cloudflare() -> Expectation {
        Expectation {
            ranges: parse_range_item("cloudflare").unwrap(),
            ..Expectation::default()
        }
    }

    #[test]
    fn resolver_syntax_covers_every_transport() {
        assert_eq!(ResolverAddr::parse("system"), Ok(ResolverAddr::System));
        assert_eq!(
            ResolverAddr::parse("udp://1.1.1.1"),
            Ok(ResolverAddr::Udp("1.1.1.1:53".parse().unwrap()))
        );
        assert_eq!(
            ResolverAddr::parse("tcp://[2606:4700:4700::1111]:5353"),
            Ok(ResolverAddr::Tcp(
                "[2606:4700:4700::1111]:5353".parse().unwrap()
            ))
        );
        assert_eq!(
            ResolverAddr::parse("tls://1.1.1.1#cloudflare-dns.com"),
            Ok(ResolverAddr::Tls {
                addr: "1.1.1.1:853".parse().unwrap(),
                server_name: Arc::from("cloudflare-dns.com"),
            })
        );
        assert_eq!(
            ResolverAddr::parse("https://1.1.1.1#cloudflare-dns.com"),
            Ok(ResolverAddr::Https {
                addr: "1.1.1.1:443".parse().unwrap(),
                server_name: Arc::from("cloudflare-dns.com"),
                path: Arc::from("/dns-query"),
            })
        );
    }

    #[test]
    fn resolver_syntax_errors_say_what_to_write() {
        let by_name = ResolverAddr::parse("udp://dns.google").unwrap_err();
        assert!(by_name.contains("by IP address"), "{by_name}");
        let no_sni = ResolverAddr::parse("tls://1.1.1.1:853").unwrap_err();
        assert_eq!(
            no_sni,
            "add the certificate name after `#`, e.g. \"tls://1.1.1.1:853#cloudflare-dns.com\""
        );
        let scheme = ResolverAddr::parse("quic://1.1.1.1").unwrap_err();
        assert!(
            scheme.starts_with("unknown resolver scheme `quic`"),
            "{scheme}"
        );
    }

    #[test]
    fn cloudflare_set_holds_edge_addresses_and_not_origins() {
        let expectation = cloudflare();
        assert!(expectation.accepts("104.16.132.229"));
        assert!(expectation.accepts("2606:4700::6810:84e5"));
        assert!(expectation.accepts("172.67.1.1"));
        assert!(!expectation.accepts("172.16.0.1"));
        assert!(!expectation.accepts("203.0.113.7"));
    }

    #[test]
    fn agreeing_resolvers_inside_the_ranges_pass() {
        let outcome = evaluate(
            "api.example.com",
            RecordKind::A,
            &cloudflare(),
            &[
                report("system", answered("NOERROR", &["104.16.1.1", "104.16.2.2"])),
                report(
                    "udp://1.1.1.1:53",
                    answered("NOERROR", &["104.16.2.2", "104.16.1.1"]),
                ),
            ],
        );
        assert!(outcome.ok, "{outcome:?}");
        assert_eq!(
            outcome.message,
            "api.example.com A: NOERROR 104.16.1.1, 104.16.2.2 (2 resolvers agree)"
        );
        assert_eq!(outcome.observations["disagree"], Value::Bool(false));
        assert_eq!(outcome.observations["hijack_suspected"], Value::Bool(false));
    }

    #[test]
    fn an_answer_outside_the_ranges_is_a_suspected_hijack() {
        let outcome = evaluate(
            "api.example.com",
            RecordKind::A,
            &cloudflare(),
            &[
                report("system", answered("NOERROR", &["203.0.113.66"])),
                report("udp://1.1.1.1:53", answered("NOERROR", &["104.16.1.1"])),
            ],
        );
        assert_eq!(outcome.error, Some(ErrorClass::Assertion));
        assert_eq!(outcome.observations["hijack_suspected"], Value::Bool(true));
        assert_eq!(outcome.observations["disagree"], Value::Bool(true));
        assert_eq!(
            outcome.observations["unexpected"],
            Value::from(vec!["203.0.113.66"])
        );
        assert_eq!(
            outcome.message,
            "api.example.com A: answers outside the expectation (1 of 2): \
             system: NOERROR 203.0.113.66; not expected: 203.0.113.66"
        );
    }

    #[test]
    fn expected_nxdomain_passes_and_a_resolving_name_is_an_assertion() {
        let expectation = Expectation {
            rcode: Some("NXDOMAIN".to_owned()),
            ..Expectation::default()
        };
        let gone = evaluate(
            "old.example.com",
            RecordKind::A,
            &expectation,
            &[report("system", answered("NXDOMAIN", &[]))],
        );
        assert!(gone.ok, "{gone:?}");
        let back = evaluate(
            "old.example.com",
            RecordKind::A,
            &expectation,
            &[report("system", answered("NOERROR", &["192.0.2.1"]))],
        );
        assert_eq!(back.error, Some(ErrorClass::Assertion));
        assert_eq!(
            back.message,
            "old.example.com A: answers outside the expectation (1 of 1): \
             system: NOERROR 192.0.2.1, expected NXDOMAIN"
        );
    }

    #[test]
    fn empty_noerror_is_a_dns_failure() {
        let outcome = evaluate(
            "api.example.com",
            RecordKind::Aaaa,
            &Expectation::default(),
            &[report("system", answered("NOERROR", &[]))],
        );
        assert_eq!(outcome.error, Some(ErrorClass::Dns));
        assert_eq!(
            outcome.message,
            "api.example.com AAAA: no resolver gave an answer (1 of 1): \
             system: NOERROR with no answer"
        );
        assert_eq!(outcome.observations["rcode"], Value::from("NOERROR"));
    }

    #[test]
    fn names_and_mx_answers_compare_without_case_or_root_dot() {
        let expectation = Expectation {
            values: ["www.Example.com.", "10 mail.example.com"]
                .iter()
                .map(|v| normalize_answer(v))
                .collect(),
            ..Expectation::default()
        };
        assert!(expectation.accepts("www.example.com"));
        assert!(expectation.accepts("10 MAIL.example.com."));
        assert!(!expectation.accepts("20 mail.example.com"));
    }
}
