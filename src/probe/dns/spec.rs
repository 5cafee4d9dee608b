//! The keys of a `kind = "dns"` probe and their validation into a [`DnsProbe`](super::DnsProbe):
//! the name and record type, the resolvers, and the expectation.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use hickory_resolver::proto::rr::{Name, RecordType};
use ipnet::IpNet;
use serde::Deserialize;

use super::resolve::{ResolverAddr, ResolverEntry};
use super::{CLOUDFLARE_RANGES, DEFAULT_RESOLV_CONF, DnsProbe, Shared};
use crate::probe::net;
use crate::spec::{BuildContext, FieldError, FieldErrors, HumanDuration, Keep, duration};

/// The keys of a `kind = "dns"` probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The name to look up, e.g. `api.example.com`. (Not `name`: that key is the probe's own.)
    pub(super) query_name: String,
    /// `A` (default), `AAAA`, `CNAME`, `MX` or `TXT`.
    #[serde(default)]
    pub(super) record_type: RecordKind,
    /// Resolvers to ask, each separately (default `["system"]`); see the module doc for the syntax.
    pub(super) resolvers: Option<Vec<String>>,
    /// Every answer must be one of these (IPs for A/AAAA; names, `PREF HOST` or text otherwise).
    pub(super) expect_any_of: Option<Vec<String>>,
    /// Every address answer must fall in one of these ranges: a CIDR, an IP, or a named set
    /// (`cloudflare`); a single string or a list.
    pub(super) expect_in_cidrs: Option<OneOrMany>,
    /// The response code every resolver must give (e.g. `NXDOMAIN` for a name that must not
    /// exist). Without it, a resolver must answer `NOERROR` with at least one record.
    pub(super) expect_rcode: Option<String>,
    /// How long each resolver may take (default and upper bound: 80% of the time left in the
    /// run).
    pub(super) resolver_timeout: Option<HumanDuration>,
    /// Verify the certificates of `tls://` and `https://` resolvers (default true).
    pub(super) tls_verify: Option<bool>,
    /// CA certificates (PEM) for `tls://` and `https://` resolvers, instead of the system roots.
    pub(super) ca_file: Option<PathBuf>,
    /// Where `system` reads its name servers (default `/etc/resolv.conf`).
    pub(super) resolv_conf: Option<PathBuf>,
}

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The record types the probe asks for.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub(super) enum RecordKind {
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
    pub(super) fn record_type(self) -> RecordType {
        match self {
            RecordKind::A => RecordType::A,
            RecordKind::Aaaa => RecordType::AAAA,
            RecordKind::Cname => RecordType::CNAME,
            RecordKind::Mx => RecordType::MX,
            RecordKind::Txt => RecordType::TXT,
        }
    }

    pub(super) fn is_address(self) -> bool {
        matches!(self, RecordKind::A | RecordKind::Aaaa)
    }

    pub(super) fn as_str(self) -> &'static str {
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
pub(super) const RCODES: [&str; 6] = [
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

pub(super) fn build_expectation(
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
pub(super) fn parse_range_item(item: &str) -> Result<Vec<IpNet>, String> {
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

/// What the answers must look like.
#[derive(Clone, Debug, Default)]
pub(super) struct Expectation {
    /// Normalized values an answer may equal.
    pub(super) values: BTreeSet<String>,
    /// Ranges an address answer may fall in.
    pub(super) ranges: Vec<IpNet>,
    /// The response code every resolver must give, if not "NOERROR with answers".
    pub(super) rcode: Option<String>,
}

impl Expectation {
    pub(super) fn constrains_answers(&self) -> bool {
        !self.values.is_empty() || !self.ranges.is_empty()
    }

    pub(super) fn accepts(&self, answer: &str) -> bool {
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
pub(super) fn normalize_answer(value: &str) -> String {
    let value = value.trim();
    match IpAddr::from_str(value) {
        Ok(ip) => ip.to_string(),
        Err(_) => value.trim_end_matches('.').to_ascii_lowercase(),
    }
}
