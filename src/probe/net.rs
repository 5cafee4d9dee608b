//! The network plumbing every probe kind shares: the `tls_verify` / `ca_file` keys and the TLS
//! settings they make, name resolution, the TCP connection, the TLS handshake, one-shot reqwest
//! clients, and one line describing what went wrong.
//!
//! One policy for every kind, so that the same failure reads the same whatever probe saw it:
//!
//! - **Resolution** goes through hickory with the system configuration (`/etc/resolv.conf`,
//!   `/etc/hosts`), its cache off, A and AAAA asked together and A answers first. Not through
//!   `tokio::net::lookup_host`: that calls the blocking `getaddrinfo` on tokio's blocking pool,
//!   which a timed-out run cannot cancel (a dead resolver would pile up blocked threads across
//!   runs), and its error is an opaque "failed to lookup address information". hickory is
//!   cancellable with the run and tells NXDOMAIN from SERVFAIL from no answer. With the cache off,
//!   every run asks again, as a fresh client would. The [`Resolver`] is built once per probe when
//!   the configuration is loaded, so that no run reads files. IPv4 comes first because hickory's
//!   default puts IPv6 first, which fails every run on the many hosts without IPv6 connectivity.
//! - **Connect** goes to the first resolved address only, with no fallback to the others (as
//!   blackbox_exporter does): a probe that silently tried the next address would hide a dead one.
//! - **TLS** does a full handshake every time (no session resumption), so that each run sees,
//!   verifies and reports the whole chain, and records the chain's earliest expiry even when
//!   verification rejects it: an expired or wrong-host certificate is exactly when it matters.
//! - **Observations** `resolved_ips`, `remote_addr`, `tls_cert_expiry` and `tls_version` are
//!   recorded with [`ProbeContext::observe`] as soon as they are known, so a run cut off at its
//!   timeout still reports them; [`open`] sets them to `null` first, so rules always find them.
//!   A kind therefore never puts these keys in its own outcome (that would overwrite them).
//!
//! Kinds whose library owns part of the connection use what they can: `postgres` hands our TCP
//! stream to tokio-postgres, which negotiates TLS with a [`Recording`] config; `registry`, `s3`
//! and `prometheus` let reqwest connect ([`OneShot`]), pinned to the address our resolver gave.
//! The `dns` kind asks the resolvers it is configured with (that is what it probes), and shares
//! only the TLS settings and the error words.

use std::error::Error as StdError;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::LookupIpStrategy;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use url::Url;

use crate::probe::schema::{Field, Gauge, Unit};
use crate::probe::{ErrorClass, Outcome, ProbeContext, Value};
use crate::spec::{BuildContext, FieldError};
use crate::tls::{self, Verification};

/// What honeyguide says it is (`User-Agent`), so that target logs can tell probes from users.
pub const USER_AGENT: &str = concat!("honeyguide/", env!("CARGO_PKG_VERSION"));

/// ALPN for kinds that speak HTTP: HTTP/2 when the server offers it, else HTTP/1.1.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The connection facts every kind that connects reports, `null` until known: declared here,
/// once, and added to the schema of every kind but `dns` ([`crate::probe::Kind::schema`]).
pub const OBSERVATIONS: &[Field] = &[
    Field::texts(
        "resolved_ips",
        "the addresses the name resolved to, IPv4 first; `null` for an IP address or when \
         resolution failed",
        &["104.16.1.1", "104.16.2.2"],
    ),
    Field::text(
        "remote_addr",
        "`ip:port` actually connected to (for `registry`, `s3` and `prometheus`, the one that \
         answered the last request)",
        "104.16.1.1:443",
    ),
    Field::int(
        "tls_cert_expiry",
        "earliest `notAfter` of the chain the server presented, even if it was rejected; `null` \
         without TLS",
        1_900_000_000,
    )
    .unit(Unit::UnixSeconds)
    .gauge(&CERT_EXPIRY),
    Field::text(
        "tls_version",
        "`TLSv1.3` or `TLSv1.2`; `null` without TLS. Not known to `postgres`, `registry`, \
         `s3` and `prometheus`, whose libraries do the handshake",
        "TLSv1.3",
    ),
];

/// The certificate expiry as blackbox_exporter names it, for every kind that speaks TLS.
const CERT_EXPIRY: Gauge = Gauge {
    name: "probe_ssl_earliest_cert_expiry",
    help: "Earliest notAfter of the certificate chain the server presented (even one that \
           verification rejected), Unix seconds.",
    null_as: None,
};

// === service URLs ===

/// A service's base URL (`url` of `registry`, `s3` and `prometheus`): http or https, a host, no
/// credentials (`credentials` names the keys that hold them instead), no query or fragment
/// (`query_hint` may say where that part belongs). The text is never quoted: a URL may carry a
/// token in its path.
pub fn parse_service_url(text: &str, credentials: &str, query_hint: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|error| format!("not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http:// or https:// URL, not {}",
            crate::spec::shown_scheme(url.scheme())
        ));
    }
    if url.host_str().is_none() {
        return Err("the URL has no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("put credentials in {credentials}, not in the URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "the URL may not have a query or fragment{query_hint}"
        ));
    }
    Ok(url)
}

// === TLS settings ===

/// Turns the `tls_verify` (default true) and `ca_file` keys into a [`Verification`].
///
/// A CA file replaces the system roots rather than adding to them: a private server is signed by
/// one CA, and trusting the whole public web besides it would only hide a misconfiguration.
/// Errors name the key `ca_file`.
pub fn verification(
    tls_verify: Option<bool>,
    ca_file: Option<&Path>,
    cx: &BuildContext,
) -> Result<Verification, FieldError> {
    match (tls_verify.unwrap_or(true), ca_file) {
        (false, Some(_)) => Err(FieldError::new(
            "ca_file",
            "`ca_file` has no effect with `tls_verify = false`; remove one of them",
        )),
        (false, None) => Ok(Verification::Disabled),
        (true, Some(path)) => tls::roots_from_pem_file(&cx.path(path))
            .map(|roots| Verification::Roots(Arc::new(roots)))
            .map_err(|message| FieldError::new("ca_file", message)),
        (true, None) => Ok(Verification::Roots(cx.system_roots())),
    }
}

/// A probe's TLS client settings, built once at load time: the rustls config (session resumption
/// off) and the verifier it uses, kept to wrap it per run in one that records the chain.
#[derive(Debug)]
pub struct TlsSettings {
    config: Arc<ClientConfig>,
    verifier: Option<Arc<dyn ServerCertVerifier>>,
}

impl TlsSettings {
    /// Settings for `verification`, offering `alpn` (empty for none).
    pub fn new(verification: &Verification, alpn: &[&[u8]]) -> Result<Self, String> {
        Self::with_identity(verification, alpn, None)
    }

    /// [`TlsSettings::new`], presenting a client certificate when the server asks for one.
    pub fn with_identity(
        verification: &Verification,
        alpn: &[&[u8]],
        identity: Option<&tls::Identity>,
    ) -> Result<Self, String> {
        let mut config = tls::client_config_with(verification, alpn, identity)?;
        config.resumption = Resumption::disabled();
        Ok(Self {
            config: Arc::new(config),
            verifier: tls::server_verifier(verification),
        })
    }

    /// Settings from a kind's `tls_verify` and `ca_file` keys (see [`verification`]).
    pub fn from_keys(
        tls_verify: Option<bool>,
        ca_file: Option<&Path>,
        cx: &BuildContext,
        alpn: &[&[u8]],
    ) -> Result<Self, FieldError> {
        let verification = verification(tls_verify, ca_file, cx)?;
        Self::new(&verification, alpn).map_err(|message| FieldError::new("tls_verify", message))
    }

    /// The plain config, for a library that does its handshakes out of our sight (hickory's DNS
    /// over TLS and HTTPS).
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// A config for one run's handshakes that notes the earliest expiry of each chain a server
    /// presents, before verifying it.
    pub fn recording(&self) -> Recording {
        let expiry = Arc::new(Mutex::new(None));
        let Some(inner) = &self.verifier else {
            return Recording {
                config: self.config.clone(),
                expiry,
            };
        };
        let mut config = (*self.config).clone();
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(RecordingVerifier {
                inner: inner.clone(),
                expiry: expiry.clone(),
            }));
        Recording {
            config: Arc::new(config),
            expiry,
        }
    }
}

/// A TLS config for one run, and the slot its verifier writes the chain's expiry into.
pub struct Recording {
    config: Arc<ClientConfig>,
    expiry: Arc<Mutex<Option<i64>>>,
}

impl Recording {
    /// The config to hand to whatever does the handshake.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// Observes `tls_cert_expiry`: the last chain presented, `null` when none was.
    pub fn observe(&self, ctx: &ProbeContext) {
        let expiry = *self.expiry.lock().unwrap_or_else(PoisonError::into_inner);
        ctx.observe("tls_cert_expiry", expiry);
    }
}

/// Verifies with the configured verifier, but first notes the earliest expiry of the chain.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    expiry: Arc<Mutex<Option<i64>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain: Vec<CertificateDer<'_>> = std::iter::once(end_entity)
            .chain(intermediates)
            .cloned()
            .collect();
        *self.expiry.lock().unwrap_or_else(PoisonError::into_inner) = tls::earliest_expiry(&chain);
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

// === resolution ===

/// The system resolver of one probe (see the module doc), or why it could not be set up; then
/// every run fails with class `dns` and that reason.
#[derive(Clone)]
pub struct Resolver(Result<TokioResolver, String>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Ok(_) => f.write_str("Resolver(system)"),
            Err(error) => write!(f, "Resolver({error})"),
        }
    }
}

impl Resolver {
    /// Reads the system configuration (`/etc/resolv.conf`, `/etc/hosts`): call it at load time.
    pub fn system() -> Self {
        Self(system_resolver())
    }

    /// The system resolver of this config load, set up once and shared by every probe: with
    /// its cache off it holds no per-probe state, and one per probe cost ~20 KB each (and a
    /// read of `/etc/resolv.conf`) at 10,000 probes.
    pub fn shared(cx: &BuildContext) -> Self {
        cx.shared(Self::system)
    }

    /// The addresses of `name`, A first; the failure says why there are none.
    async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, Outcome> {
        let resolver = self
            .0
            .as_ref()
            .map_err(|error| Outcome::failure(ErrorClass::Dns, error.clone()))?;
        let lookup = resolver
            .lookup_ip(name)
            .await
            .map_err(|error| dns_failure(name, &error))?;
        let addresses: Vec<IpAddr> = lookup.iter().collect();
        if addresses.is_empty() {
            return Err(no_addresses(name));
        }
        Ok(addresses)
    }
}

fn system_resolver() -> Result<TokioResolver, String> {
    let mut builder = TokioResolver::builder_tokio()
        .map_err(|error| format!("cannot read the system resolver configuration: {error}"))?;
    let options = builder.options_mut();
    options.cache_size = 0;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    builder
        .build()
        .map_err(|error| format!("cannot set up the system resolver: {error}"))
}

/// The address to connect to for `host` (a name, or an IP literal with or without brackets) and
/// `port`. A name is resolved in the phase `resolve` and its addresses are observed as
/// `resolved_ips`; an IP literal is used as it is, with no phase. Only the first address is
/// returned: see the module doc.
async fn resolve(
    ctx: &ProbeContext,
    resolver: &Resolver,
    host: &str,
    port: u16,
) -> Result<SocketAddr, Outcome> {
    let host = bare_host(host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    ctx.phase("resolve");
    let addresses = resolver.lookup(host).await?;
    ctx.observe(
        "resolved_ips",
        addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
    );
    let first = addresses.first().ok_or_else(|| no_addresses(host))?;
    Ok(SocketAddr::new(*first, port))
}

/// `::1` for `[::1]`, as URLs write IPv6 hosts.
fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host)
}

fn no_addresses(name: &str) -> Outcome {
    Outcome::failure(ErrorClass::Dns, format!("{name} has no A or AAAA records"))
}

/// The failure for a lookup of `name`: NXDOMAIN, no records, a response code, or no answer.
fn dns_failure(name: &str, error: &NetError) -> Outcome {
    let message = if error.is_nx_domain() {
        format!("{name} does not exist (NXDOMAIN)")
    } else if error.is_no_records_found() {
        format!("{name} has no A or AAAA records")
    } else {
        match error {
            NetError::Dns(DnsError::ResponseCode(code)) => {
                format!("resolving {name} failed: {}", rcode_name(*code))
            }
            NetError::Timeout => format!("resolving {name} timed out: no resolver answered"),
            other => format!("resolving {name} failed: {other}"),
        }
    };
    Outcome::failure(ErrorClass::Dns, message)
}

/// The usual mnemonic of a DNS response code (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, ...).
pub fn rcode_name(code: ResponseCode) -> String {
    match u16::from(code) {
        0 => "NOERROR".to_owned(),
        1 => "FORMERR".to_owned(),
        2 => "SERVFAIL".to_owned(),
        3 => "NXDOMAIN".to_owned(),
        4 => "NOTIMP".to_owned(),
        5 => "REFUSED".to_owned(),
        6 => "YXDOMAIN".to_owned(),
        7 => "YXRRSET".to_owned(),
        8 => "NXRRSET".to_owned(),
        9 => "NOTAUTH".to_owned(),
        10 => "NOTZONE".to_owned(),
        other => format!("RCODE{other}"),
    }
}

// === connect ===

/// Opens the TCP connection of a run: resolves `host` (unless `pinned` gives the address) and
/// connects to the first address, marking the phases `resolve` and `connect`. First sets every
/// connection observation to `null`, so a run (or a redirect) reports only what it saw itself.
pub async fn open(
    ctx: &ProbeContext,
    resolver: &Resolver,
    host: &str,
    port: u16,
    pinned: Option<SocketAddr>,
) -> Result<TcpStream, Outcome> {
    forget(ctx, OBSERVATIONS);
    let address = match pinned {
        Some(address) => address,
        None => resolve(ctx, resolver, host, port).await?,
    };
    connect(ctx, address).await
}

/// Connects to `address` in the phase `connect`, and observes it as `remote_addr`.
async fn connect(ctx: &ProbeContext, address: SocketAddr) -> Result<TcpStream, Outcome> {
    ctx.phase("connect");
    let stream = TcpStream::connect(address).await.map_err(|error| {
        Outcome::failure(
            ErrorClass::Connect,
            format!("cannot connect to {address}: {}", describe_io(&error)),
        )
    })?;
    ctx.observe("remote_addr", address.to_string());
    // Probes send a few small messages and wait for each answer: Nagle would only add latency to
    // what we measure.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn forget(ctx: &ProbeContext, fields: &[Field]) {
    for field in fields {
        ctx.observe(field.name, Value::Null);
    }
}

// === TLS handshake ===

/// Runs a TLS handshake over `stream` in the phase `tls`, for `host` (sent as SNI unless it is
/// an IP literal), with ALPN as `tls` offers it. Observes `tls_cert_expiry` whether or not the
/// chain is accepted, and `tls_version` once the handshake is done.
pub async fn tls_handshake<S>(
    ctx: &ProbeContext,
    tls: &TlsSettings,
    stream: S,
    host: &str,
) -> Result<TlsStream<S>, Outcome>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ctx.phase("tls");
    let host = bare_host(host);
    let server_name = ServerName::try_from(host.to_owned()).map_err(|error| {
        Outcome::failure(
            ErrorClass::Tls,
            format!("`{host}` cannot be used as a TLS server name: {error}"),
        )
    })?;
    let recording = tls.recording();
    let handshake = TlsConnector::from(recording.config())
        .connect(server_name, stream)
        .await;
    recording.observe(ctx);
    let stream = handshake.map_err(|error| tls_failure(&error))?;
    let version = stream.get_ref().1.protocol_version().map(tls_version_name);
    ctx.observe("tls_version", version);
    Ok(stream)
}

/// `TLSv1.3`, as the `tls_version` observation writes it.
fn tls_version_name(version: rustls::ProtocolVersion) -> String {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The failure for an error out of a TLS handshake: the certificate problem when rustls names
/// one, the I/O problem otherwise (e.g. the server closed the connection mid-handshake).
pub fn tls_failure(error: &io::Error) -> Outcome {
    Outcome::failure(
        ErrorClass::Tls,
        format!("TLS handshake failed: {}", describe_io(error)),
    )
}

// === errors ===

/// An I/O error in a few lowercase words, without the `(os error N)` suffix; a TLS error carried
/// inside one is described as [`tls::describe_error`] does.
pub fn describe_io(error: &io::Error) -> String {
    if let Some(tls_error) = rustls_error(error) {
        return tls::describe_error(tls_error);
    }
    let words = match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset by peer",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::UnexpectedEof => "connection closed by peer",
        io::ErrorKind::BrokenPipe => "connection closed by peer (broken pipe)",
        io::ErrorKind::TimedOut => "timed out",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::AddrNotAvailable => "address not available",
        _ => {
            let text = error.to_string();
            return match text.find(" (os error") {
                Some(cut) => text[..cut].to_lowercase(),
                None => text,
            };
        }
    };
    words.to_owned()
}

/// The failure for an I/O error of a hand-written protocol exchange, as `what: words`: `tls`
/// when it carries a TLS error, `connect` when the connection is gone or unroutable, `timeout`
/// for a socket timeout, and `otherwise` for the rest.
pub fn io_failure(error: &io::Error, what: &str, otherwise: ErrorClass) -> Outcome {
    let class = if rustls_error(error).is_some() {
        ErrorClass::Tls
    } else {
        match error.kind() {
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable => ErrorClass::Connect,
            io::ErrorKind::TimedOut => ErrorClass::Timeout,
            _ => otherwise,
        }
    };
    Outcome::failure(class, format!("{what}: {}", describe_io(error)))
}

/// The rustls error an I/O error carries, as tokio-rustls reports handshake failures.
fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The first error of type `T` in `error`'s source chain (including itself).
pub fn find_source<'a, T: StdError + 'static>(
    error: &'a (dyn StdError + 'static),
) -> Option<&'a T> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(item) = current {
        if let Some(found) = item.downcast_ref::<T>() {
            return Some(found);
        }
        current = item.source();
    }
    None
}

/// `outer: inner: innermost` on one line, skipping causes the text already says.
pub fn describe_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        current = cause.source();
    }
    text
}

/// A rustls error anywhere in the chain. An `io::Error`'s `source()` skips the error it wraps
/// (and hyper-rustls wraps tokio-rustls's `io::Error` in another one), so wrapped errors are
/// followed through `get_ref` instead.
fn find_tls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(item) = current {
        if let Some(found) = item.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        current = match item.downcast_ref::<io::Error>() {
            Some(io_error) => io_error
                .get_ref()
                .map(|inner| inner as &(dyn StdError + 'static)),
            None => item.source(),
        };
    }
    None
}

// === one-shot reqwest clients ===

/// A reqwest client for exactly one run of a kind that speaks HTTP through reqwest (`registry`,
/// `s3`): no connection pool (every request opens a fresh connection and sees today's DNS, TCP
/// and TLS), no retries, no proxy from the environment (a monitor must know what it is testing),
/// and our resolver, first address only, for every host. Every request says `Connection: close`
/// so that the server closes first and keeps the TIME_WAIT (see `http::client`); reqwest owns the
/// socket and closes its side when the response is done, so unlike the `http` kind this is a
/// race the server usually, not always, wins. Over HTTP/2 hyper drops the header, as it must.
pub struct OneShot {
    client: reqwest::Client,
    recording: Recording,
}

impl OneShot {
    /// Resolves the host of `url` (phase `resolve`, observation `resolved_ips`) and builds a client
    /// pinned to its first address. Other hosts a run reaches (a token realm, a redirect) go
    /// through the same resolver when reqwest connects to them.
    pub async fn new(
        ctx: &ProbeContext,
        resolver: &Resolver,
        tls: &TlsSettings,
        url: &Url,
    ) -> Result<Self, Outcome> {
        // reqwest does not say which TLS version it negotiated; the other facts it lets us see.
        forget(ctx, &OBSERVATIONS[..3]);
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(443);
        let address = resolve(ctx, resolver, host, port).await?;
        let recording = tls.recording();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((*recording.config).clone())
            .pool_max_idle_per_host(0)
            .retry(reqwest::retry::never())
            .no_proxy()
            .user_agent(USER_AGENT)
            .default_headers(reqwest::header::HeaderMap::from_iter([(
                reqwest::header::CONNECTION,
                reqwest::header::HeaderValue::from_static("close"),
            )]))
            .redirect(reqwest::redirect::Policy::limited(5))
            .dns_resolver(FirstAddress(resolver.clone()))
            // Port 0: the port of each URL (or its scheme's default) applies, so that a token realm
            // on the same host but another port is reached where it is.
            .resolve(bare_host(host), SocketAddr::new(address.ip(), 0))
            .build()
            .map_err(|error| {
                Outcome::failure(
                    ErrorClass::Internal,
                    format!("cannot build the HTTP client: {}", error.without_url()),
                )
            })?;
        Ok(Self { client, recording })
    }

    /// The client, to build requests with.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `request`, observing the address that answered (`remote_addr`) and the expiry of the
    /// last chain presented; a failure is classified by `classify_reqwest` with `what`.
    pub async fn send(
        &self,
        ctx: &ProbeContext,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, Outcome> {
        let sent = request.send().await;
        self.recording.observe(ctx);
        let response = sent.map_err(|error| classify_reqwest(error, what))?;
        ctx.observe(
            "remote_addr",
            response.remote_addr().map(|address| address.to_string()),
        );
        Ok(response)
    }
}

/// `404 Not Found`: a status as a reqwest-based kind writes it in a message.
pub fn describe_status(status: reqwest::StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// reqwest's resolver: ours, returning the first address only.
struct FirstAddress(Resolver);

impl reqwest::dns::Resolve for FirstAddress {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = resolver.lookup(&name).await.map_err(|outcome| {
                Box::new(ResolveError(outcome.message)) as Box<dyn StdError + Send + Sync>
            })?;
            // The port is reqwest's to fill in from the URL.
            let first: reqwest::dns::Addrs = Box::new(
                addresses
                    .into_iter()
                    .take(1)
                    .map(|ip| SocketAddr::new(ip, 0)),
            );
            Ok(first)
        })
    }
}

/// A failed lookup inside reqwest, carrying the words of [`dns_failure`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ResolveError(String);

/// Classifies a failed reqwest request: `dns`, `tls`, `connect` or `timeout`, with the cause's own
/// words, else `protocol`. The URL is never part of the message (a presigned URL is a
/// credential).
fn classify_reqwest(error: reqwest::Error, what: &str) -> Outcome {
    let error = error.without_url();
    if let Some(failed) = find_source::<ResolveError>(&error) {
        return Outcome::failure(ErrorClass::Dns, format!("{what}: {failed}"));
    }
    if let Some(tls_error) = find_tls_error(&error) {
        return Outcome::failure(
            ErrorClass::Tls,
            format!(
                "{what}: TLS handshake failed: {}",
                tls::describe_error(tls_error)
            ),
        );
    }
    if error.is_timeout() {
        return Outcome::failure(
            ErrorClass::Timeout,
            format!("{what}: {}", describe_chain(&error)),
        );
    }
    if error.is_connect() {
        // The innermost I/O error says it best ("connection refused"); the layers above it only
        // repeat that a request could not be sent.
        let detail =
            find_source::<io::Error>(&error).map_or_else(|| describe_chain(&error), describe_io);
        return Outcome::failure(
            ErrorClass::Connect,
            format!("{what}: cannot connect: {detail}"),
        );
    }
    Outcome::failure(
        ErrorClass::Protocol,
        format!("{what}: {}", describe_chain(&error)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn context() -> ProbeContext {
        ProbeContext::new(Instant::now() + std::time::Duration::from_secs(5))
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_failure_naming_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let failure = connect(&context(), addr).await.unwrap_err();
        assert_eq!(failure.error, Some(ErrorClass::Connect));
        assert_eq!(
            failure.message,
            format!("cannot connect to {addr}: connection refused")
        );
    }

    #[tokio::test]
    async fn ip_literals_need_no_lookup() {
        let resolver = Resolver(Err("no resolver in this test".to_owned()));
        for host in ["::1", "[::1]"] {
            let addr = resolve(&context(), &resolver, host, 5432).await.unwrap();
            assert_eq!(addr, "[::1]:5432".parse().unwrap());
        }
    }

    #[tokio::test]
    async fn a_resolver_that_could_not_be_set_up_is_a_dns_failure() {
        let resolver = Resolver(Err(
            "cannot read the system resolver configuration".to_owned()
        ));
        let failure = resolve(&context(), &resolver, "db.test", 5432)
            .await
            .unwrap_err();
        assert_eq!(failure.error, Some(ErrorClass::Dns));
        assert_eq!(
            failure.message,
            "cannot read the system resolver configuration"
        );
    }

    #[test]
    fn ca_file_with_verification_off_is_a_config_error() {
        let cx = BuildContext::new(".");
        let error = verification(Some(false), Some(Path::new("ca.pem")), &cx).unwrap_err();
        assert_eq!(error.key, "ca_file");
        assert!(matches!(
            verification(Some(false), None, &cx),
            Ok(Verification::Disabled)
        ));
    }

    #[test]
    fn io_errors_are_described_in_a_few_words() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let outcome = io_failure(&refused, "read", ErrorClass::Protocol);
        assert_eq!(outcome.error, Some(ErrorClass::Connect));
        assert_eq!(outcome.message, "read: connection refused");
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        let outcome = io_failure(&eof, "read", ErrorClass::Protocol);
        assert_eq!(outcome.error, Some(ErrorClass::Protocol));
        assert_eq!(outcome.message, "read: connection closed by peer");
        let os = io::Error::from_raw_os_error(111);
        assert_eq!(describe_io(&os), "connection refused");
    }

    #[test]
    fn tls_errors_inside_io_errors_are_tls_failures() {
        let error = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let outcome = io_failure(&error, "read", ErrorClass::Protocol);
        assert_eq!(outcome.error, Some(ErrorClass::Tls));
        assert_eq!(
            tls_failure(&error).message,
            "TLS handshake failed: certificate issued by an unknown authority (not in the trusted \
             roots)"
        );
    }

    #[test]
    fn response_codes_have_their_mnemonics() {
        assert_eq!(rcode_name(ResponseCode::ServFail), "SERVFAIL");
        assert_eq!(rcode_name(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_name(ResponseCode::Unknown(12)), "RCODE12");
    }
}
