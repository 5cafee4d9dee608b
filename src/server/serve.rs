//! The HTTP server loop: accepting connections for the router within bounds, so that nothing a
//! client of honeyguide's port does can take what the probes need.
//!
//! A monitor's own port is an attack surface: a crowd of sockets that each send half a request
//! head would otherwise hold a file descriptor and a connection's buffers each, until the process
//! runs out of descriptors and its *probes* start failing with "too many open files" (which then
//! pages on-call). So:
//!
//! - **Connections are capped** (`[server] max_connections`). A newcomer beyond the cap makes
//!   an idle connection (no request in flight) give way: first the one that has waited longest
//!   without ever sending a whole request head, then the longest-idle kept-alive one. So a
//!   liveness probe or a scrape still gets in while half-open sockets crowd the port; only when
//!   every connection is busy serving is the newcomer refused. Descriptors held by the server
//!   never exceed the cap plus a slack for connections still closing.
//! - **A request head must arrive whole within `header_timeout`**, a connection without a
//!   request in flight is closed after `idle_timeout`, and a request (its body included) is
//!   answered within `request_timeout` or gets a 503.
//! - **Shutdown closes what is idle at once** (including connections with half a head) and gives
//!   requests in flight a bounded time to finish ([`DRAIN`]), then closes the rest.
//!
//! Counters of what the server did ([`ServerStats`]) are rendered into `/metrics`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;

/// How long shutdown waits for requests in flight before closing their connections.
pub const DRAIN: Duration = Duration::from_secs(3);

/// Connections beyond the cap that may still be closing after being told to give way, as a
/// share of the cap (at least 16): the server never holds more than `max_connections` plus
/// this many descriptors, and refuses newcomers beyond it.
const EVICTION_SLACK_DIVISOR: usize = 4;

/// The listen backlog asked for (the kernel caps it at `net.core.somaxconn`): a burst of
/// connections waits there for the accept loop instead of having its SYNs dropped, which
/// would make every client, a liveness probe too, wait a second for the retransmission.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Largest request head hyper buffers. honeyguide's own requests are small; this bounds what
/// one connection can make the server hold.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long the accept loop pauses after the process ran out of descriptors (or another
/// resource): accepting again at once would only spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The server's bounds, from `[server]`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections held open at once.
    pub max_connections: usize,
    /// Time allowed for a whole request head.
    pub header_timeout: Duration,
    /// Time a connection may spend without a request in flight.
    pub idle_timeout: Duration,
    /// Time allowed for one request, its body included.
    pub request_timeout: Duration,
}

impl Limits {
    /// The bounds of `[server]`, with the cap lowered to `max_connections` if smaller (see
    /// [`crate::fd_limit`]).
    pub fn new(server: &ServerConfig, max_connections: usize) -> Self {
        Self {
            max_connections: server.max_connections.min(max_connections).max(1),
            header_timeout: server.header_timeout,
            idle_timeout: server.idle_timeout,
            request_timeout: server.request_timeout,
        }
    }
}

/// What the server did since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct ServerStats {
    open: AtomicUsize,
    accepted: AtomicU64,
    evicted: AtomicU64,
    refused: AtomicU64,
    idle_closed: AtomicU64,
    timed_out: AtomicU64,
    accept_errors: AtomicU64,
    max_connections: AtomicUsize,
}

impl ServerStats {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Appends the server's own series to an exposition.
    pub fn render(&self, out: &mut String) {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP honeyguide_http_connections Connections open to honeyguide's own HTTP server.\n\
             # TYPE honeyguide_http_connections gauge\n\
             honeyguide_http_connections {}\n\
             # HELP honeyguide_http_connections_max The cap on connections ([server] max_connections, lowered to fit the descriptor limit).\n\
             # TYPE honeyguide_http_connections_max gauge\n\
             honeyguide_http_connections_max {}\n\
             # HELP honeyguide_http_connections_accepted_total Connections accepted.\n\
             # TYPE honeyguide_http_connections_accepted_total counter\n\
             honeyguide_http_connections_accepted_total {}\n\
             # HELP honeyguide_http_connections_closed_total Connections honeyguide closed itself, by reason.\n\
             # TYPE honeyguide_http_connections_closed_total counter\n\
             honeyguide_http_connections_closed_total{{reason=\"evicted\"}} {}\n\
             honeyguide_http_connections_closed_total{{reason=\"refused\"}} {}\n\
             honeyguide_http_connections_closed_total{{reason=\"idle\"}} {}\n\
             # HELP honeyguide_http_requests_timed_out_total Requests answered 503 because they took longer than [server] request_timeout.\n\
             # TYPE honeyguide_http_requests_timed_out_total counter\n\
             honeyguide_http_requests_timed_out_total {}\n\
             # HELP honeyguide_http_accept_errors_total Failed accepts (e.g. out of file descriptors).\n\
             # TYPE honeyguide_http_accept_errors_total counter\n\
             honeyguide_http_accept_errors_total {}\n",
            self.open(),
            self.max_connections.load(Ordering::Relaxed),
            load(&self.accepted),
            load(&self.evicted),
            load(&self.refused),
            load(&self.idle_closed),
            load(&self.timed_out),
            load(&self.accept_errors),
        );
    }
}

/// Binds honeyguide's listener, with a deep backlog ([`LISTEN_BACKLOG`]).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` within `limits` until `shutdown` is cancelled, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stats: Arc<ServerStats>,
    shutdown: CancellationToken,
) {
    stats
        .max_connections
        .store(limits.max_connections, Ordering::Relaxed);
    let service = TowerToHyperService::new(router);
    let mut admission = Admission::new(limits.max_connections, stats.clone());
    let tasks = TaskTracker::new();
    let mut accept_errors_logged = 0u64;
    loop {
        // Accept at once, whatever the count: a connection left in the kernel's backlog would
        // hold it up for the clients behind it, and a full backlog drops SYNs.
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    let count = stats.accept_errors.fetch_add(1, Ordering::Relaxed) + 1;
                    if count > accept_errors_logged && count.is_power_of_two() {
                        accept_errors_logged = count;
                        tracing::warn!(%error, count, "cannot accept connections");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let admitted = tokio::select! {
            () = shutdown.cancelled() => break,
            admitted = admission.admit() => admitted,
        };
        let Some((connection, evict)) = admitted else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let (stream, peer) = stream;
        tasks.spawn(serve_connection(
            stream,
            peer,
            service.clone(),
            connection,
            limits,
            evict,
            shutdown.clone(),
        ));
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(DRAIN, tasks.wait()).await.is_err() {
        tracing::warn!(
            open = stats.open(),
            "requests still in flight at shutdown; closing their connections"
        );
        admission.evict_all();
        tasks.wait().await;
    }
}

/// How long a newcomer at the cap waits for a connection to become a candidate for giving
/// way (its task has looked at what it received), at most [`ROOM_TRIES`] times.
const ROOM_WAIT: Duration = Duration::from_millis(20);
const ROOM_TRIES: u32 = 25;

/// How long a newcomer waits for connections that gave way to be closed.
const PERMIT_WAIT: Duration = Duration::from_millis(500);

/// The accept loop's book of connections: who is open, who may give way to a newcomer.
struct Admission {
    max_connections: usize,
    permits: Arc<Semaphore>,
    live: VecDeque<Live>,
    /// Woken when a connection ends or has had its first look at its input.
    room: Arc<Notify>,
    stats: Arc<ServerStats>,
}

/// What can be done for a newcomer at this moment.
enum Room {
    /// Below the cap.
    Free,
    /// This connection should give way.
    Evict(usize),
    /// Connections whose tasks have not looked at their input yet may turn out idle.
    Wait,
    /// Every connection is busy serving a request.
    Full,
}

impl Admission {
    fn new(max_connections: usize, stats: Arc<ServerStats>) -> Self {
        let slack = (max_connections / EVICTION_SLACK_DIVISOR).max(16);
        Self {
            max_connections,
            permits: Arc::new(Semaphore::new(max_connections + slack)),
            live: VecDeque::new(),
            room: Arc::new(Notify::new()),
            stats,
        }
    }

    /// Admits one more connection, making an idle one give way if the cap is reached; `None`
    /// when it must be refused.
    async fn admit(&mut self) -> Option<(Arc<Connection>, CancellationToken)> {
        for _ in 0..=ROOM_TRIES {
            self.live.retain(|connection| !connection.is_finished());
            match self.room() {
                Room::Free => return self.open().await,
                Room::Evict(index) => {
                    self.live[index].evict.cancel();
                    self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                    return self.open().await;
                }
                Room::Full => return None,
                Room::Wait => {
                    let _ = tokio::time::timeout(ROOM_WAIT, self.room.notified()).await;
                }
            }
        }
        None
    }

    /// Whether there is room, and if not, who gives way. A connection is a candidate once its
    /// task has looked at its input and found no whole request: a client that sent its head at
    /// once is never cut off before it is read. Among candidates, one that never sent a whole
    /// head goes first (the likelier slowloris), then the longest idle.
    fn room(&self) -> Room {
        let staying = || self.live.iter().filter(|live| !live.evict.is_cancelled());
        if staying().count() < self.max_connections {
            return Room::Free;
        }
        let now = Instant::now();
        let victim = self
            .live
            .iter()
            .enumerate()
            .filter(|(_, live)| !live.evict.is_cancelled() && live.connection.is_looked_at())
            .filter_map(|(index, live)| {
                let since = live.connection.idle_since(now)?;
                Some(((live.connection.has_served(), since), index))
            })
            .min_by_key(|(key, _)| *key);
        match victim {
            Some((_, index)) => Room::Evict(index),
            None if staying().any(|live| !live.connection.is_looked_at()) => Room::Wait,
            None => Room::Full,
        }
    }

    /// Opens a connection's book entry once a descriptor is left in the server's share:
    /// connections told to give way hold theirs until their tasks have closed them, which
    /// takes a moment on a busy runtime ([`PERMIT_WAIT`] at most, then the newcomer is
    /// refused).
    async fn open(&mut self) -> Option<(Arc<Connection>, CancellationToken)> {
        let permit = tokio::time::timeout(PERMIT_WAIT, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        let connection = Connection::new(permit, self.stats.clone(), self.room.clone());
        let evict = CancellationToken::new();
        self.live.push_back(Live {
            connection: connection.clone(),
            evict: evict.clone(),
        });
        Some((connection, evict))
    }

    fn evict_all(&self) {
        for live in &self.live {
            live.evict.cancel();
        }
    }
}

/// A connection as the accept loop tracks it.
struct Live {
    connection: Arc<Connection>,
    evict: CancellationToken,
}

impl Live {
    /// The connection's task holds the other reference until it ends.
    fn is_finished(&self) -> bool {
        Arc::strong_count(&self.connection) == 1
    }
}

/// One connection's request accounting, shared by its task, its requests and the accept loop.
#[derive(Debug)]
struct Connection {
    opened: Instant,
    /// Requests started and not yet fully answered (their response body written or dropped).
    in_flight: AtomicUsize,
    /// Requests started since the connection opened.
    requests: AtomicU64,
    /// When the connection last became idle, in nanoseconds after `opened`.
    idle_since_nanos: AtomicU64,
    /// Woken when `in_flight` changes, so the idle timer can restart.
    changed: Notify,
    /// Whether the task has looked at the input once (until then it is never cut off).
    looked_at: AtomicBool,
    /// The accept loop's wake-up: told when this connection was looked at or ends.
    room: Arc<Notify>,
    stats: Arc<ServerStats>,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    fn new(permit: OwnedSemaphorePermit, stats: Arc<ServerStats>, room: Arc<Notify>) -> Arc<Self> {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since_nanos: AtomicU64::new(0),
            changed: Notify::new(),
            looked_at: AtomicBool::new(false),
            room,
            stats,
            _permit: permit,
        })
    }

    /// Since when the connection has had no request in flight; `None` while it serves one.
    fn idle_since(&self, now: Instant) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let nanos = self.idle_since_nanos.load(Ordering::Acquire);
        Some(
            self.opened
                .checked_add(Duration::from_nanos(nanos))
                .unwrap_or(now),
        )
    }

    /// Whether the connection's task has looked at its input once.
    fn is_looked_at(&self) -> bool {
        self.looked_at.load(Ordering::Acquire)
    }

    fn mark_looked_at(&self) {
        self.looked_at.store(true, Ordering::Release);
        self.room.notify_one();
    }

    /// Whether a whole request head has ever arrived on this connection.
    fn has_served(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > 0
    }

    /// Marks a request as started; the guard marks it answered when dropped.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
        InFlight {
            connection: self.clone(),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        self.room.notify_one();
    }
}

/// A request in flight; dropped when its response has been written (or abandoned).
#[derive(Debug)]
struct InFlight {
    connection: Arc<Connection>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let connection = &self.connection;
        let since = Instant::now().saturating_duration_since(connection.opened);
        connection.idle_since_nanos.store(
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        connection.in_flight.fetch_sub(1, Ordering::AcqRel);
        connection.changed.notify_one();
    }
}

/// Why a connection's task ended, for the counters.
enum Ended {
    /// The client closed, the head timed out, or the protocol failed: hyper is done with it.
    Done,
    /// Idle for longer than `idle_timeout`.
    Idle,
    /// Told to give way, or shutdown closed it.
    Closed,
}

async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    router: TowerToHyperService<Router>,
    connection: Arc<Connection>,
    limits: Limits,
    evict: CancellationToken,
    shutdown: CancellationToken,
) {
    let service = {
        let connection = connection.clone();
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            // Handlers that care who asks (`/-/reload` without a token) read the peer.
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let in_flight = connection.begin();
            let answer = hyper::service::Service::call(&router, request);
            let stats = connection.stats.clone();
            async move {
                let response = match tokio::time::timeout(limits.request_timeout, answer).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => {
                        stats.timed_out.fetch_add(1, Ordering::Relaxed);
                        timed_out()
                    }
                };
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(Tracked {
                        body,
                        _in_flight: in_flight,
                    })
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    // One look at what arrived: a head sent with the connection is parsed and its request
    // started here, before the accept loop may count this connection as idle.
    let first = std::future::poll_fn(|cx| Poll::Ready(served.as_mut().poll(cx))).await;
    connection.mark_looked_at();
    if first.is_ready() {
        return;
    }
    let mut draining = false;
    let ended = loop {
        let idle_deadline = connection
            .idle_since(Instant::now())
            .and_then(|since| since.checked_add(limits.idle_timeout));
        tokio::select! {
            biased;
            () = evict.cancelled() => break Ended::Closed,
            () = shutdown.cancelled(), if !draining => {
                // Nothing in flight (waiting for a head, or kept alive): close now. Otherwise
                // let the answer finish, then close.
                if connection.idle_since(Instant::now()).is_some() {
                    break Ended::Closed;
                }
                served.as_mut().graceful_shutdown();
                draining = true;
            }
            result = served.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended");
                }
                break Ended::Done;
            }
            () = connection.changed.notified() => {}
            () = sleep_until(idle_deadline), if idle_deadline.is_some() => {
                if draining {
                    break Ended::Closed;
                }
                if connection
                    .idle_since(Instant::now())
                    .is_some_and(|since| since.elapsed() >= limits.idle_timeout)
                {
                    break Ended::Idle;
                }
            }
        }
    };
    if let Ended::Idle = ended {
        connection.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn timed_out() -> Response<Body> {
    let mut response = Response::new(Body::from("the request took too long\n"));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

/// A response body that keeps its request counted as in flight until it is written or dropped.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
