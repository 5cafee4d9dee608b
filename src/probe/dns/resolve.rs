//! The resolvers a `dns` probe asks, as configured (`system`, `udp://`, `tcp://`, `tls://`,
//! `https://`), and asking one of them once, directly, within a time budget.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
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

use super::Shared;
use crate::probe::net;
use crate::spec::HumanDuration;

/// One configured resolver: how it was written (the key in observations and metrics) and where
/// it is.
#[derive(Clone, Debug)]
pub(super) struct ResolverEntry {
    pub(super) label: String,
    pub(super) addr: ResolverAddr,
}

/// Where and how to ask.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum ResolverAddr {
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
    pub(super) fn parse(text: &str) -> Result<Self, String> {
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
    pub(super) fn name_server(&self) -> Option<NameServerConfig> {
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

/// What one resolver said.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Reply {
    /// A response arrived: its code and the answers of the asked type.
    Answered { rcode: String, answers: Vec<String> },
    /// No response: timeout, refused, TLS failure, unreadable reply.
    Unreachable { message: String },
}

/// Asks one resolver, within `budget`.
pub(super) async fn ask(shared: &Shared, addr: &ResolverAddr, budget: Duration) -> Reply {
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
pub(super) async fn ask_directly(
    shared: &Shared,
    name_server: NameServerConfig,
    budget: Duration,
) -> Reply {
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
pub(super) async fn ask_system(shared: &Shared, budget: Duration) -> Reply {
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
pub(super) fn absolute_name(name: &str) -> Result<Name, String> {
    let mut name = Name::from_utf8(name).map_err(|error| format!("bad name `{name}`: {error}"))?;
    name.set_fqdn(true);
    Ok(name)
}

pub(super) fn answers_of(records: &[Record], record_type: RecordType) -> Vec<String> {
    records
        .iter()
        .filter(|record| record.record_type() == record_type)
        .filter_map(|record| format_rdata(&record.data))
        .collect()
}

/// Reads `resolv.conf` without blocking the runtime.
pub(super) async fn system_config(path: &Path) -> Result<(ResolverConfig, ResolverOpts), String> {
    let text = tokio::fs::read(path)
        .await
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    hickory_resolver::system_conf::parse_resolv_conf(text)
        .map_err(|error| format!("cannot use {}: {error}", path.display()))
}

pub(super) fn reply_from_error(error: NetError, budget: Duration) -> Reply {
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
pub(super) fn unreachable(error: &NetError, budget: Duration) -> Reply {
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

pub(super) fn no_answer(budget: Duration) -> Reply {
    Reply::Unreachable {
        message: format!("no answer within {}", HumanDuration(round_ms(budget))),
    }
}

/// Rounds to 10 ms for messages: the budget is a share of a remaining time measured in
/// nanoseconds, and "799.99ms" reads worse than "800ms".
pub(super) fn round_ms(duration: Duration) -> Duration {
    let tens = (duration.as_millis() + 5) / 10;
    Duration::from_millis(u64::try_from(tens * 10).unwrap_or(u64::MAX))
}

/// An answer as rules compare it: an address, a name without the root dot, `PREF HOST` for MX,
/// the joined strings of a TXT record.
pub(super) fn format_rdata(data: &RData) -> Option<String> {
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

pub(super) fn display_name(name: &Name) -> String {
    name.to_utf8().trim_end_matches('.').to_owned()
}
