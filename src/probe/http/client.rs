//! One HTTP request on a fresh connection, built by hand so that every phase is seen and timed.
//!
//! [`send`] opens the connection through [`net`], as every kind does (resolve, one TCP connection
//! to the first address or to `connect_to`, the TLS handshake offering `h2` and `http/1.1` by
//! ALPN; phases `resolve`, `connect`, `tls`, and the connection observations `resolved_ips`,
//! `remote_addr`, `tls_cert_expiry`, `tls_version`). What is left here is the HTTP exchange: it
//! speaks HTTP/1.1 or HTTP/2 over that connection with hyper's connection-level client, waits for
//! the response head and reads the body up to a limit, marking `first_byte` and `transfer`. A
//! high-level client (reqwest) would hide exactly these steps behind a pool, retries and
//! happy-eyeballs, which is what a synthetic probe must not do.
//!
//! Every call makes one attempt on a new connection: no pool, no keep-alive across calls, no TLS
//! session resumption, no fallback to a second address. A failure comes back as the run's
//! [`Outcome`], classified.
//!
//! Closing: an HTTP/1 request says `Connection: close`, and once the whole response is read the
//! prober waits (detached from the run, at most [`CLOSE_GRACE`]) for the server's FIN before it
//! closes its own side. Whoever closes first keeps the socket in TIME_WAIT for a minute; the
//! server, which accepts on one port, can afford that, while the prober, whose connections to one
//! `ip:port` share about 28k ephemeral ports, runs out of them above a few hundred runs per
//! second. A server that ignores the header is closed on after the grace (TIME_WAIT is then ours,
//! as it was before). HTTP/2 has no such header (connection-specific headers are forbidden
//! there); its connections are closed by the prober as soon as the run is done.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, CONNECTION, HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request as HttpRequest, Response as HttpResponse};
use http::{StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::task::AbortOnDropHandle;
use url::Url;

use crate::probe::{ErrorClass, Outcome, ProbeContext, net};

/// How long a finished HTTP/1 connection waits for the server to close it first. The server's
/// FIN follows the response at once when it honours `Connection: close`, so this only bounds what
/// a server that ignores the header costs: one descriptor for this long.
pub(crate) const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

// === Client ===

/// The long-lived part of an HTTP client: how names are resolved and how TLS is set up. Built
/// once when the configuration is loaded; holds no connections.
pub(crate) struct Client {
    resolver: net::Resolver,
    tls: Option<net::TlsSettings>,
}

impl Client {
    /// A client using `resolver` and, for `https://` URLs, `tls` (`None`: plain HTTP only).
    pub(crate) fn new(resolver: net::Resolver, tls: Option<net::TlsSettings>) -> Self {
        Self { resolver, tls }
    }
}

// === Request and response ===

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
    /// The address the connection went to.
    pub remote_addr: Option<SocketAddr>,
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
) -> Result<Response, Outcome> {
    let host = request
        .url
        .host_str()
        .ok_or_else(|| Outcome::failure(ErrorClass::Internal, "the url has no host"))?
        .to_owned();
    let port = request
        .url
        .port_or_known_default()
        .ok_or_else(|| Outcome::failure(ErrorClass::Internal, "the url has no port"))?;
    let tcp = net::open(ctx, &client.resolver, &host, port, connect_to).await?;
    let remote_addr = tcp.peer_addr().ok();
    let mut response = if request.url.scheme() == "https" {
        let tls = client.tls.as_ref().ok_or_else(|| {
            Outcome::failure(ErrorClass::Internal, "no TLS settings for an https:// url")
        })?;
        let stream = net::tls_handshake(ctx, tls, tcp, &host).await?;
        let protocol = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        };
        exchange(ctx, stream, protocol, request, body_limit).await?
    } else {
        exchange(ctx, tcp, Protocol::Http1, request, body_limit).await?
    };
    response.remote_addr = remote_addr;
    Ok(response)
}

/// The HTTP version spoken on a connection, as negotiated by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

// === HTTP exchange ===

/// The task driving a hyper connection. It is aborted when dropped, so the connection never
/// outlives a run that failed or was aborted at its timeout; an HTTP/1 driver hands the stream
/// back once the exchange is over, to wait for the server's close ([`linger`]).
enum Driver<S> {
    Http1(AbortOnDropHandle<Result<hyper::client::conn::http1::Parts<TokioIo<S>>, hyper::Error>>),
    /// Held only to be aborted on drop: the run is done with the connection when it returns.
    Http2 {
        _drive: AbortOnDropHandle<Result<(), hyper::Error>>,
    },
}

/// A stream whose TCP socket can be had back, to wait for the server's FIN on it: below TLS,
/// since a `close_notify` comes before the FIN and closing on it would still make us the first.
pub(crate) trait IntoTcp {
    /// The TCP socket under the stream.
    fn into_tcp(self) -> TcpStream;
}

impl IntoTcp for TcpStream {
    fn into_tcp(self) -> TcpStream {
        self
    }
}

impl IntoTcp for TlsStream<TcpStream> {
    fn into_tcp(self) -> TcpStream {
        self.into_inner().0
    }
}

/// Lets the connection of a completed HTTP/1 exchange go: in the background, waits for hyper to
/// finish with it (at once, since the request said `Connection: close`), then for the server's
/// FIN, for at most [`CLOSE_GRACE`] in all; only then is the socket closed on our side.
fn linger<S>(driver: Driver<S>)
where
    S: IntoTcp + Send + 'static,
{
    let Driver::Http1(driver) = driver else {
        return;
    };
    tokio::spawn(async move {
        let wait = async move {
            let Ok(Ok(parts)) = driver.await else {
                return;
            };
            let mut tcp = parts.io.into_inner().into_tcp();
            // Whatever still comes (a TLS close_notify) means nothing; the end of the stream is
            // the server's close.
            let mut scratch = [0_u8; 256];
            while let Ok(1..) = tcp.read(&mut scratch).await {}
        };
        // Dropping the wait at the grace drops the socket: closed by us after all.
        let _ = tokio::time::timeout(CLOSE_GRACE, wait).await;
    });
}

async fn exchange<S>(
    ctx: &ProbeContext,
    io: S,
    protocol: Protocol,
    request: Request,
    body_limit: usize,
) -> Result<Response, Outcome>
where
    S: AsyncRead + AsyncWrite + IntoTcp + Send + Unpin + 'static,
{
    ctx.phase("first_byte");
    let request = http_request(request, protocol)?;
    let io = TokioIo::new(io);
    let (head, driver) = match protocol {
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
    linger(driver);
    Ok(Response {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
        truncated,
        remote_addr: None,
    })
}

async fn send_http1<S>(
    io: TokioIo<S>,
    request: HttpRequest<Full<Bytes>>,
) -> Result<(HttpResponse<Incoming>, Driver<S>), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    // Without the shutdown hyper would send our FIN as soon as the response is read, before the
    // server's: the stream comes back instead, for `linger`.
    let driver = Driver::Http1(AbortOnDropHandle::new(tokio::spawn(
        connection.without_shutdown(),
    )));
    let response = sender.send_request(request).await?;
    Ok((response, driver))
}

async fn send_http2<S>(
    io: TokioIo<S>,
    request: HttpRequest<Full<Bytes>>,
) -> Result<(HttpResponse<Incoming>, Driver<S>), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
    let driver = Driver::Http2 {
        _drive: AbortOnDropHandle::new(tokio::spawn(connection)),
    };
    let response = sender.send_request(request).await?;
    Ok((response, driver))
}

/// The request as hyper wants it: HTTP/1.1 takes the path as target and the authority in `Host`;
/// HTTP/2 takes the full URL and carries the authority as `:authority`.
fn http_request(request: Request, protocol: Protocol) -> Result<HttpRequest<Full<Bytes>>, Outcome> {
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
            .map_err(|_| Outcome::failure(ErrorClass::Internal, "the Host header is not text"))?
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
            .map_err(|_| Outcome::failure(ErrorClass::Internal, "the url host is not a header"))?;
        headers.insert(HOST, host);
        // Every run opens a connection of its own, so there is nothing to keep alive; asking the
        // server to close makes the TIME_WAIT its own (see the module doc). It replaces a
        // configured `Connection` on purpose.
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    headers
        .entry(USER_AGENT)
        .or_insert(HeaderValue::from_static(net::USER_AGENT));
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
            Outcome::failure(
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
fn exchange_failure(error: &hyper::Error, while_doing: &str) -> Outcome {
    if let Some(io_error) = net::find_source::<std::io::Error>(error) {
        use std::io::ErrorKind;
        if matches!(
            io_error.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
        ) {
            return Outcome::failure(
                ErrorClass::Connect,
                format!("connection reset by the server while {while_doing}"),
            );
        }
    }
    let message = if error.is_parse() {
        format!(
            "the server did not answer with valid HTTP ({})",
            net::describe_chain(error)
        )
    } else if error.is_incomplete_message() {
        format!("the server closed the connection while {while_doing}")
    } else {
        format!(
            "HTTP failed while {while_doing}: {}",
            net::describe_chain(error)
        )
    };
    Outcome::failure(ErrorClass::Protocol, message)
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
        assert_eq!(built.headers()[USER_AGENT], net::USER_AGENT);
        assert_eq!(built.headers()[ACCEPT], "*/*");
        assert_eq!(built.headers()[CONNECTION], "close");
    }

    #[test]
    fn http2_requests_carry_the_authority_in_the_uri() {
        let built = http_request(request("https://api.test/health"), Protocol::Http2).unwrap();
        assert_eq!(built.uri(), "https://api.test/health");
        assert!(built.headers().get(HOST).is_none());
        // Connection-specific headers are a protocol error in HTTP/2.
        assert!(built.headers().get(CONNECTION).is_none());
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
