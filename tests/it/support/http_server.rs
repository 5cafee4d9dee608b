//! An in-process HTTP(S) server speaking the real protocol (hyper), for probing from tests.
//!
//! Build one with [`HttpServer::builder`]: routes by path with a status, body, headers and an
//! optional delay; plain HTTP or TLS (any `rustls::ServerConfig`, e.g. from
//! [`super::certs::Leaf::server_config`]; HTTP/2 is spoken when the client picks `h2` by ALPN);
//! bound to any loopback address (`127.0.0.2` and `127.0.0.3` make two "origin nodes"). Every
//! request is recorded with its `Host`/authority and the TLS SNI, so tests can check what a
//! client really sent. The server stops, connections and all, when dropped.
//!
//! [`RawServer`] is the misbehaving counterpart: it accepts TCP and then answers garbage, hangs
//! up, or says nothing.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::AbortOnDropHandle;

/// What the server answers on one path.
#[derive(Clone, Debug)]
pub struct Route {
    status: u16,
    body: Bytes,
    headers: Vec<(String, String)>,
    delay: Duration,
}

impl Route {
    /// Answers `status` with `body`.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            body: body.into(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// Answers 200 with `body`.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self::new(200, body)
    }

    /// Answers `status` (301, 302, 303, 307, 308) pointing at `location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        Self::new(status, "").header("location", location)
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Waits this long before answering (use a long delay for "never answers").
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub version: Version,
    /// The `Host` header (HTTP/1.1) or the `:authority` (HTTP/2).
    pub host: Option<String>,
    /// The server name the client sent in the TLS ClientHello.
    pub sni: Option<String>,
    pub headers: HeaderMap,
}

/// Configures a [`HttpServer`].
pub struct HttpServerBuilder {
    bind: IpAddr,
    port: u16,
    tls: Option<Arc<rustls::ServerConfig>>,
    routes: HashMap<String, Route>,
}

impl HttpServerBuilder {
    /// Binds to `ip` (default `127.0.0.1`).
    pub fn bind(mut self, ip: &str) -> Self {
        self.bind = ip.parse().expect("bind address is an IP");
        self
    }

    /// Binds to `port` (default: any free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Speaks TLS with this config (its ALPN list decides whether HTTP/2 is offered).
    pub fn tls(mut self, config: rustls::ServerConfig) -> Self {
        self.tls = Some(Arc::new(config));
        self
    }

    /// Answers `path` (without query) with `route`; unknown paths get 404.
    pub fn route(mut self, path: &str, route: Route) -> Self {
        self.routes.insert(path.to_owned(), route);
        self
    }

    /// Binds and starts serving in the background.
    pub async fn start(self) -> HttpServer {
        let listener = TcpListener::bind((self.bind, self.port))
            .await
            .unwrap_or_else(|error| panic!("bind {}:{}: {error}", self.bind, self.port));
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            routes: self.routes,
            seen: Mutex::new(Vec::new()),
        });
        let acceptor = self.tls.map(TlsAcceptor::from);
        let tls = acceptor.is_some();
        let accept = tokio::spawn(accept_loop(listener, acceptor, state.clone()));
        HttpServer {
            addr,
            tls,
            state,
            _accept: AbortOnDropHandle::new(accept),
        }
    }
}

/// A running server; stops when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    _accept: AbortOnDropHandle<()>,
}

struct State {
    routes: HashMap<String, Route>,
    seen: Mutex<Vec<SeenRequest>>,
}

impl HttpServer {
    pub fn builder() -> HttpServerBuilder {
        HttpServerBuilder {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            tls: None,
            routes: HashMap::new(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http(s)://<ip>:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.seen.lock().expect("seen lock").clone()
    }
}

async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, state: Arc<State>) {
    // Connections live in this set, so aborting the accept task (on drop) closes them all.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn(serve_connection(stream, acceptor.clone(), state.clone()));
        while connections.try_join_next().is_some() {}
    }
}

async fn serve_connection(stream: TcpStream, acceptor: Option<TlsAcceptor>, state: Arc<State>) {
    // Without this, Nagle holds the response behind the unacknowledged TLS session tickets until
    // the client's delayed ACK (about 40 ms), and every timing a test reads is inflated.
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = acceptor else {
        serve_http(stream, None, false, state).await;
        return;
    };
    // A client that rejects the certificate ends the handshake; nothing to serve then.
    let Ok(stream) = acceptor.accept(stream).await else {
        return;
    };
    let session = stream.get_ref().1;
    let sni = session.server_name().map(str::to_owned);
    let http2 = session.alpn_protocol() == Some(b"h2");
    serve_http(stream, sni, http2, state).await;
}

async fn serve_http<S>(stream: S, sni: Option<String>, http2: bool, state: Arc<State>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let io = TokioIo::new(stream);
    let service = service_fn(move |request| handle(request, sni.clone(), state.clone()));
    // Errors here are the client going away mid-request, which some tests do on purpose.
    let _ = if http2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await
    };
}

async fn handle(
    request: Request<Incoming>,
    sni: Option<String>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(ToString::to_string));
    state.seen.lock().expect("seen lock").push(SeenRequest {
        method: request.method().to_string(),
        path: request
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string),
        version: request.version(),
        host,
        sni,
        headers: request.headers().clone(),
    });
    let Some(route) = state.routes.get(request.uri().path()).cloned() else {
        return Ok(respond(404, Bytes::from_static(b"not found"), &[]));
    };
    if !route.delay.is_zero() {
        tokio::time::sleep(route.delay).await;
    }
    Ok(respond(route.status, route.body, &route.headers))
}

fn respond(status: u16, body: Bytes, headers: &[(String, String)]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = StatusCode::from_u16(status).expect("valid status");
    for (name, value) in headers {
        response.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    response
}

// === RawServer ===

/// What a [`RawServer`] does with each connection.
#[derive(Clone, Debug)]
pub enum RawBehaviour {
    /// Reads the request, writes these bytes, then closes.
    Reply(Vec<u8>),
    /// Reads the request, then closes without a byte.
    HangUp,
    /// Accepts and holds the connection open without a byte.
    Silent,
    /// Reads what the client sent first, writes these bytes, then holds the connection open:
    /// a server that speaks garbage and does not hang up, so a client that waits for more
    /// bytes waits until its own timeout.
    ReplyAndHold(Vec<u8>),
}

/// A TCP server that does not speak HTTP (or stops speaking it early).
pub struct RawServer {
    addr: SocketAddr,
    _accept: AbortOnDropHandle<()>,
}

impl RawServer {
    /// Starts on `127.0.0.1` on a free port.
    pub async fn start(behaviour: RawBehaviour) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                match &behaviour {
                    RawBehaviour::Reply(bytes) => {
                        read_request(&mut stream).await;
                        let _ = stream.write_all(bytes).await;
                        close_gracefully(stream).await;
                    }
                    RawBehaviour::HangUp => {
                        read_request(&mut stream).await;
                        close_gracefully(stream).await;
                    }
                    RawBehaviour::Silent => held.push(stream),
                    RawBehaviour::ReplyAndHold(bytes) => {
                        read_request(&mut stream).await;
                        let _ = stream.write_all(bytes).await;
                        held.push(stream);
                    }
                }
            }
        });
        Self {
            addr,
            _accept: AbortOnDropHandle::new(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<ip>:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Reads what the client sent first, so that closing later is a clean FIN: closing a socket
/// with unread data makes the kernel send a reset, and the test would see `connect`, not the
/// behaviour it meant to show.
async fn read_request(stream: &mut TcpStream) {
    let mut buffer = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await;
}

/// Sends FIN, then waits (briefly) for the client to close its side.
async fn close_gracefully(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut buffer = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {}
    })
    .await;
}
