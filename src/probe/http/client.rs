//! One HTTP request on a fresh connection, built by hand so that every phase is seen and timed.
//!
//! [`send`] resolves the host, opens one TCP connection, does the TLS handshake (offering `h2` and
//! `http/1.1` by ALPN), speaks HTTP/1.1 or HTTP/2 over it with hyper's connection-level client,
//! waits for the response head and reads the body up to a limit. It marks the phases `resolve`,
//! `connect`, `tls`, `first_byte` and `transfer` on the [`ProbeContext`] as it goes, so that a
//! timeout names the step that hung. A high-level client (reqwest) would hide exactly these steps
//! behind a pool, retries and happy-eyeballs, which is what a synthetic probe must not do.
//!
//! Every call makes one attempt on a new connection: no pool, no keep-alive across calls, no TLS
//! session resumption, no fallback to a second address. Failures come back classified
//! ([`Failure`]), together with what was learnt before the failure ([`ConnectionFacts`]), such as
//! the resolved addresses or the certificate expiry of a chain that failed verification.
//!
//! The `http` probe uses it; kinds that speak HTTP (registry, s3) can reuse it.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::LookupIpStrategy;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use http::header::{ACCEPT, HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request as HttpRequest, Response as HttpResponse};
use http::{StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::task::AbortOnDropHandle;
use url::{Host, Url};

use crate::probe::{ErrorClass, ProbeContext};
use crate::tls::{self, Verification};

/// What every request says it is, unless the configuration sets its own `User-Agent`.
const DEFAULT_USER_AGENT: &str = concat!("honeyguide/", env!("CARGO_PKG_VERSION"));

// === Client ===

/// The long-lived part of an HTTP client: how names are resolved and how TLS is set up. Built
/// once when the configuration is loaded; holds no connections.
pub(crate) struct Client {
    resolver: Result<TokioResolver, String>,
    tls: Option<TlsClient>,
}

impl Client {
    /// A client using the system resolver and, for `https://` URLs, `tls` (`None`: plain HTTP
    /// only).
    pub(crate) fn new(tls: Option<TlsClient>) -> Self {
        Self {
            resolver: system_resolver(),
            tls,
        }
    }
}

/// Name resolution goes through hickory with the system configuration (`/etc/resolv.conf`,
/// `/etc/hosts`) and its cache turned off, rather than through `tokio::net::lookup_host`.
///
/// `lookup_host` calls the blocking `getaddrinfo` on tokio's blocking pool: a timed-out probe
/// cannot cancel it, so a dead resolver would pile up blocked threads across runs, and its error
/// is an opaque "failed to lookup address information". hickory is cancellable with the run and
/// tells NXDOMAIN from SERVFAIL from no answer, which is what the `dns` error message needs. With
/// the cache off, every run asks the resolver again, as a fresh client would. The configuration
/// is read once here, at load time, so that no run does blocking file I/O.
///
/// A and AAAA are asked in parallel and A answers come first: hickory's default puts IPv6 first,
/// which fails every run on the many hosts without IPv6 connectivity.
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

/// TLS settings for `https://`: the verification policy, with ALPN `h2` and `http/1.1` and
/// session resumption off, so each run does a full handshake and sees the whole chain.
pub(crate) struct TlsClient {
    config: Arc<ClientConfig>,
    /// The verifier the config uses, kept to wrap it per run in one that records the chain.
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

impl TlsClient {
    /// Builds the TLS settings for `verification`.
    pub(crate) fn new(verification: &Verification) -> Result<Self, String> {
        let mut config = tls::client_config(verification, &[b"h2", b"http/1.1"])?;
        config.resumption = rustls::client::Resumption::disabled();
        // The same verifier `client_config` installs for these roots; with no usable roots there
        // is nothing to record, and the handshake fails on its own with a clear error.
        let verifier = match verification {
            Verification::Roots(roots) => WebPkiServerVerifier::builder_with_provider(
                roots.clone(),
                config.crypto_provider().clone(),
            )
            .build()
            .ok(),
            Verification::Disabled => None,
        };
        Ok(Self {
            config: Arc::new(config),
            verifier,
        })
    }

    /// A connector for one handshake, and the slot where the presented chain's earliest expiry
    /// lands even when verification rejects the chain.
    fn connector(&self) -> (TlsConnector, Arc<Mutex<Option<i64>>>) {
        let seen = Arc::new(Mutex::new(None));
        let Some(inner) = &self.verifier else {
            return (TlsConnector::from(self.config.clone()), seen);
        };
        let mut config = (*self.config).clone();
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(RecordingVerifier {
                inner: inner.clone(),
                earliest_expiry: seen.clone(),
            }));
        (TlsConnector::from(Arc::new(config)), seen)
    }
}

// === Request and results ===

/// One request to send.
pub(crate) struct Request {
    /// The method.
    pub method: Method,
    /// The URL; its host is the `Host` header (unless `headers` sets one) and the TLS SNI.
    pub url: Url,
    /// Headers to send; `Host`, `User-Agent` and `Accept` are added when missing.
    pub headers: HeaderMap,
    /// The body (empty for none).
    pub body: Bytes,
}

/// A response whose head arrived and whose body was read up to the limit.
#[derive(Debug)]
pub(crate) struct Response {
    /// The status.
    pub status: StatusCode,
    /// The protocol it was spoken in.
    pub version: Version,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, at most the limit.
    pub body: Bytes,
    /// The body was longer than the limit and was cut there.
    pub truncated: bool,
}

/// Why a request failed: the class rules match on and one line for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The error class.
    pub class: ErrorClass,
    /// What happened.
    pub message: String,
}

impl Failure {
    fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }
}

/// What was learnt about the connection, however far the request got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConnectionFacts {
    /// Addresses the name resolved to; `None` when nothing was resolved (IP literal, pinned).
    pub resolved_ips: Option<Vec<IpAddr>>,
    /// The address the TCP connection went to.
    pub remote_addr: Option<SocketAddr>,
    /// The earliest `notAfter` of the chain the server presented (Unix seconds).
    pub tls_cert_expiry: Option<i64>,
    /// The negotiated TLS version, e.g. `TLSv1.3`.
    pub tls_version: Option<&'static str>,
}

/// The result of [`send`]: the response or the failure, plus the connection facts either way.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// What was learnt about the connection.
    pub connection: ConnectionFacts,
    /// The response, or why there is none.
    pub result: Result<Response, Failure>,
}

// === send ===

/// Sends `request` on a new connection (to `connect_to` when given, else to the URL's host) and
/// reads at most `body_limit` bytes of the body.
pub(crate) async fn send(
    ctx: &ProbeContext,
    client: &Client,
    request: Request,
    connect_to: Option<SocketAddr>,
    body_limit: usize,
) -> Exchange {
    let mut connection = ConnectionFacts::default();
    let result = send_on_new_connection(
        ctx,
        client,
        request,
        connect_to,
        body_limit,
        &mut connection,
    )
    .await;
    Exchange { connection, result }
}

async fn send_on_new_connection(
    ctx: &ProbeContext,
    client: &Client,
    request: Request,
    connect_to: Option<SocketAddr>,
    body_limit: usize,
    facts: &mut ConnectionFacts,
) -> Result<Response, Failure> {
    let host = request
        .url
        .host()
        .ok_or_else(|| Failure::new(ErrorClass::Internal, "the url has no host"))?;
    let port = request
        .url
        .port_or_known_default()
        .ok_or_else(|| Failure::new(ErrorClass::Internal, "the url has no port"))?;
    let address = match connect_to {
        Some(address) => address,
        None => resolve(ctx, client, &host, port, facts).await?,
    };
    let server_name = server_name(&host)?;
    ctx.phase("connect");
    let tcp = connect(address).await?;
    ctx.observe("remote_addr", address.to_string());
    facts.remote_addr = Some(address);
    if request.url.scheme() == "https" {
        let tls = client.tls.as_ref().ok_or_else(|| {
            Failure::new(ErrorClass::Internal, "no TLS settings for an https:// url")
        })?;
        let (stream, protocol) = handshake(ctx, tls, server_name, tcp, facts).await?;
        exchange(ctx, stream, protocol, request, body_limit).await
    } else {
        exchange(ctx, tcp, Protocol::Http1, request, body_limit).await
    }
}

// === resolve and connect ===

async fn resolve(
    ctx: &ProbeContext,
    client: &Client,
    host: &Host<&str>,
    port: u16,
    facts: &mut ConnectionFacts,
) -> Result<SocketAddr, Failure> {
    let name = match host {
        Host::Ipv4(ip) => return Ok(SocketAddr::new(IpAddr::V4(*ip), port)),
        Host::Ipv6(ip) => return Ok(SocketAddr::new(IpAddr::V6(*ip), port)),
        Host::Domain(name) => *name,
    };
    ctx.phase("resolve");
    let resolver = client
        .resolver
        .as_ref()
        .map_err(|error| Failure::new(ErrorClass::Dns, error.clone()))?;
    let lookup = resolver
        .lookup_ip(name)
        .await
        .map_err(|error| dns_failure(name, &error))?;
    let addresses: Vec<IpAddr> = lookup.iter().collect();
    ctx.observe(
        "resolved_ips",
        addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
    );
    facts.resolved_ips = Some(addresses.clone());
    // One address, the first the resolver gives (IPv4 first), and no fallback to the others:
    // a probe that silently tried the next address would hide a dead one.
    let first = addresses
        .first()
        .ok_or_else(|| Failure::new(ErrorClass::Dns, format!("{name} has no A or AAAA records")))?;
    Ok(SocketAddr::new(*first, port))
}

fn dns_failure(name: &str, error: &NetError) -> Failure {
    let message = if error.is_nx_domain() {
        format!("{name} does not exist (NXDOMAIN)")
    } else if error.is_no_records_found() {
        format!("{name} has no A or AAAA records")
    } else {
        match error {
            NetError::Dns(DnsError::ResponseCode(code)) => {
                format!("resolving {name} failed: {}", response_code_name(*code))
            }
            NetError::Timeout => format!("resolving {name} timed out: no resolver answered"),
            other => format!("resolving {name} failed: {other}"),
        }
    };
    Failure::new(ErrorClass::Dns, message)
}

fn response_code_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::Refused => "REFUSED".to_owned(),
        ResponseCode::FormErr => "FORMERR".to_owned(),
        ResponseCode::NotImp => "NOTIMP".to_owned(),
        other => other.to_string(),
    }
}

fn server_name(host: &Host<&str>) -> Result<ServerName<'static>, Failure> {
    match host {
        Host::Domain(name) => ServerName::try_from((*name).to_owned()).map_err(|_| {
            Failure::new(
                ErrorClass::Internal,
                format!("{name} is not a valid TLS server name"),
            )
        }),
        Host::Ipv4(ip) => Ok(ServerName::from(IpAddr::V4(*ip))),
        Host::Ipv6(ip) => Ok(ServerName::from(IpAddr::V6(*ip))),
    }
}

async fn connect(address: SocketAddr) -> Result<TcpStream, Failure> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|error| connect_failure(address, &error))?;
    // Requests are small and sent at once; Nagle would only add latency to the measurement.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn connect_failure(address: SocketAddr, error: &std::io::Error) -> Failure {
    use std::io::ErrorKind;
    let message = match error.kind() {
        ErrorKind::ConnectionRefused => format!("connection refused by {address}"),
        ErrorKind::ConnectionReset => format!("connection reset by {address}"),
        ErrorKind::HostUnreachable => format!("host {} is unreachable", address.ip()),
        ErrorKind::NetworkUnreachable => format!("no route to {address} (network unreachable)"),
        ErrorKind::TimedOut => format!("connecting to {address} timed out"),
        _ => format!("cannot connect to {address}: {error}"),
    };
    Failure::new(ErrorClass::Connect, message)
}

// === TLS ===

/// The HTTP version spoken on a connection, as negotiated by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

async fn handshake(
    ctx: &ProbeContext,
    tls: &TlsClient,
    server_name: ServerName<'static>,
    tcp: TcpStream,
    facts: &mut ConnectionFacts,
) -> Result<(TlsStream<TcpStream>, Protocol), Failure> {
    ctx.phase("tls");
    let (connector, seen_expiry) = tls.connector();
    match connector.connect(server_name, tcp).await {
        Ok(stream) => {
            let session = stream.get_ref().1;
            facts.tls_cert_expiry = session.peer_certificates().and_then(tls::earliest_expiry);
            facts.tls_version = session.protocol_version().map(tls_version_name);
            // Known now; kept even if the server then never answers the request.
            ctx.observe("tls_cert_expiry", facts.tls_cert_expiry);
            ctx.observe("tls_version", facts.tls_version);
            let protocol = match session.alpn_protocol() {
                Some(b"h2") => Protocol::Http2,
                _ => Protocol::Http1,
            };
            Ok((stream, protocol))
        }
        Err(error) => {
            facts.tls_cert_expiry = *seen_expiry.lock().unwrap_or_else(PoisonError::into_inner);
            Err(tls_failure(&error))
        }
    }
}

fn tls_failure(error: &std::io::Error) -> Failure {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let message = match rustls_error {
        Some(rustls_error) => tls::describe_error(rustls_error),
        None if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the TLS handshake".to_owned()
        }
        None => format!("TLS handshake failed: {error}"),
    };
    Failure::new(ErrorClass::Tls, message)
}

fn tls_version_name(version: rustls::ProtocolVersion) -> &'static str {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "other",
    }
}

/// Verifies with the configured verifier, but first notes the earliest expiry of the chain the
/// server presented, so the expiry is observed even when the chain is rejected (an expired or
/// wrong-host certificate is exactly when it matters).
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    earliest_expiry: Arc<Mutex<Option<i64>>>,
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
        *self
            .earliest_expiry
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = tls::earliest_expiry(&chain);
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

// === HTTP exchange ===

/// The task driving a hyper connection. It is aborted when dropped, so the connection never
/// outlives the run, even when the run itself is aborted at its timeout.
type Driver = AbortOnDropHandle<Result<(), hyper::Error>>;

async fn exchange<S>(
    ctx: &ProbeContext,
    io: S,
    protocol: Protocol,
    request: Request,
    body_limit: usize,
) -> Result<Response, Failure>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    ctx.phase("first_byte");
    let request = http_request(request, protocol)?;
    let io = TokioIo::new(io);
    let (head, _driver) = match protocol {
        Protocol::Http1 => send_http1(io, request).await,
        Protocol::Http2 => send_http2(io, request).await,
    }
    .map_err(|error| exchange_failure(&error, "waiting for the response"))?;
    ctx.phase("transfer");
    let (parts, mut body) = head.into_parts();
    let (body, truncated) =
        read_body(&mut body, body_limit)
            .await
            .map_err(|(error, received)| {
                exchange_failure(
                    &error,
                    &format!("reading the body (after {received} bytes)"),
                )
            })?;
    ctx.end_phase();
    Ok(Response {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
        truncated,
    })
}

async fn send_http1<S>(
    io: TokioIo<S>,
    request: HttpRequest<Full<Bytes>>,
) -> Result<(HttpResponse<Incoming>, Driver), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let driver = AbortOnDropHandle::new(tokio::spawn(connection));
    let response = sender.send_request(request).await?;
    Ok((response, driver))
}

async fn send_http2<S>(
    io: TokioIo<S>,
    request: HttpRequest<Full<Bytes>>,
) -> Result<(HttpResponse<Incoming>, Driver), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
    let driver = AbortOnDropHandle::new(tokio::spawn(connection));
    let response = sender.send_request(request).await?;
    Ok((response, driver))
}

/// The request as hyper wants it: HTTP/1.1 takes the path as target and the authority in `Host`;
/// HTTP/2 takes the full URL and carries the authority as `:authority`.
fn http_request(request: Request, protocol: Protocol) -> Result<HttpRequest<Full<Bytes>>, Failure> {
    let Request {
        method,
        url,
        mut headers,
        body,
    } = request;
    let host_header = headers.remove(HOST);
    let authority = match &host_header {
        Some(value) => value
            .to_str()
            .map_err(|_| Failure::new(ErrorClass::Internal, "the Host header is not text"))?
            .to_owned(),
        None => url_authority(&url),
    };
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let uri = match protocol {
        Protocol::Http1 => path.to_owned(),
        Protocol::Http2 => format!("{}://{authority}{path}", url.scheme()),
    };
    if protocol == Protocol::Http1 {
        let host = HeaderValue::from_str(&authority)
            .map_err(|_| Failure::new(ErrorClass::Internal, "the url host is not a header"))?;
        headers.insert(HOST, host);
    }
    headers
        .entry(USER_AGENT)
        .or_insert(HeaderValue::from_static(DEFAULT_USER_AGENT));
    // What curl sends: servers that pick an error format by `Accept` answer a probe as they
    // would answer curl, unless the configuration asks for JSON.
    headers
        .entry(ACCEPT)
        .or_insert(HeaderValue::from_static("*/*"));
    let mut built = HttpRequest::builder()
        .method(method)
        .uri(uri)
        .version(match protocol {
            Protocol::Http1 => Version::HTTP_11,
            Protocol::Http2 => Version::HTTP_2,
        })
        .body(Full::new(body))
        .map_err(|error| {
            Failure::new(
                ErrorClass::Internal,
                format!("cannot build the request: {error}"),
            )
        })?;
    *built.headers_mut() = headers;
    Ok(built)
}

/// `host` or `host:port` as it goes in `Host`; the port only when it is not the scheme's default.
pub(crate) fn url_authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// Reads data frames until the end or until more than `limit` bytes came; on error, also says
/// how many bytes had arrived.
async fn read_body(
    body: &mut Incoming,
    limit: usize,
) -> Result<(Bytes, bool), (hyper::Error, usize)> {
    let mut collected = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| (error, collected.len()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let room = limit - collected.len();
        if data.len() > room {
            collected.extend_from_slice(&data[..room]);
            return Ok((collected.freeze(), true));
        }
        collected.extend_from_slice(&data);
    }
    Ok((collected.freeze(), false))
}

/// Classifies a failure after the connection was up: a reset is `connect`, everything else
/// (garbage, an early close, a broken HTTP/2 stream) is `protocol`.
fn exchange_failure(error: &hyper::Error, while_doing: &str) -> Failure {
    if let Some(io_error) = source_of::<std::io::Error>(error) {
        use std::io::ErrorKind;
        if matches!(
            io_error.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
        ) {
            return Failure::new(
                ErrorClass::Connect,
                format!("connection reset by the server while {while_doing}"),
            );
        }
    }
    let message = if error.is_parse() {
        format!(
            "the server did not answer with valid HTTP ({})",
            describe_chain(error)
        )
    } else if error.is_incomplete_message() {
        format!("the server closed the connection while {while_doing}")
    } else {
        format!("HTTP failed while {while_doing}: {}", describe_chain(error))
    };
    Failure::new(ErrorClass::Protocol, message)
}

fn source_of<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<E>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

/// An error and its causes on one line, without repeating a cause that is already said.
fn describe_chain(error: &(dyn std::error::Error + 'static)) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> Request {
        Request {
            method: Method::GET,
            url: Url::parse(url).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    #[test]
    fn http1_requests_carry_the_path_and_a_host_header() {
        let built = http_request(
            request("http://api.test:8080/health?deep=1"),
            Protocol::Http1,
        )
        .unwrap();
        assert_eq!(built.uri(), "/health?deep=1");
        assert_eq!(built.headers()[HOST], "api.test:8080");
        assert_eq!(built.headers()[USER_AGENT], DEFAULT_USER_AGENT);
        assert_eq!(built.headers()[ACCEPT], "*/*");
    }

    #[test]
    fn http2_requests_carry_the_authority_in_the_uri() {
        let built = http_request(request("https://api.test/health"), Protocol::Http2).unwrap();
        assert_eq!(built.uri(), "https://api.test/health");
        assert!(built.headers().get(HOST).is_none());
    }

    #[test]
    fn a_configured_host_header_wins_over_the_url() {
        let mut with_host = request("https://192.0.2.1/");
        with_host
            .headers
            .insert(HOST, HeaderValue::from_static("api.test"));
        let built = http_request(with_host, Protocol::Http2).unwrap();
        assert_eq!(built.uri(), "https://api.test/");
    }

    #[test]
    fn ipv6_authorities_keep_their_brackets() {
        let url = Url::parse("http://[::1]:8080/").unwrap();
        assert_eq!(url_authority(&url), "[::1]:8080");
    }
}
