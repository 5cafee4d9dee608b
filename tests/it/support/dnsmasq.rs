//! A real DNS server for the `dns` probe tests: dnsmasq serving fixed records for the `test.`
//! zone, on a free loopback port, killed on drop. Also a resolver that never answers (a bound UDP
//! socket nobody reads), and a DNS-over-TLS front (rustls in front of dnsmasq's TCP port, which
//! is exactly what DoT is) and a DNS-over-HTTPS front (HTTP/2 POSTs of DNS messages, relayed to
//! dnsmasq over UDP) so the `tls://` and `https://` resolver paths meet real servers too.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::certs::Leaf;
use super::{ChildGuard, TempDir, free_port_on, require_binary, wait_for_tcp};

/// Records to serve, as dnsmasq options.
#[derive(Default)]
pub struct Zone {
    args: Vec<String>,
}

impl Zone {
    pub fn new() -> Self {
        Self::default()
    }

    /// An A (or AAAA, for an IPv6 literal) record; several calls for one name give several.
    pub fn host(mut self, name: &str, ip: &str) -> Self {
        self.args.push(format!("--host-record={name},{ip}"));
        self
    }

    /// A CNAME to a name that has a `host` record.
    pub fn cname(mut self, alias: &str, target: &str) -> Self {
        self.args.push(format!("--cname={alias},{target}"));
        self
    }

    /// A TXT record.
    pub fn txt(mut self, name: &str, text: &str) -> Self {
        self.args.push(format!("--txt-record={name},{text}"));
        self
    }

    /// An MX record.
    pub fn mx(mut self, name: &str, exchange: &str, preference: u16) -> Self {
        self.args
            .push(format!("--mx-host={name},{exchange},{preference}"));
        self
    }
}

/// A running dnsmasq.
pub struct Dnsmasq {
    pub addr: SocketAddr,
    child: ChildGuard,
    _dir: TempDir,
}

impl Dnsmasq {
    /// Serves `zone` on 127.0.0.1 and a free port (UDP and TCP).
    pub fn start(zone: Zone) -> Self {
        let port = free_port_on("127.0.0.1");
        Self::start_on(zone, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// Serves `zone` on port 53 of a random 127/8 address: what a `resolv.conf` can point at
    /// (it has no port syntax), so the `system` resolver path is tested against a real server.
    pub fn start_on_port_53(zone: Zone) -> Self {
        let octets = [
            127,
            fastrand::u8(100..=250),
            fastrand::u8(1..=250),
            fastrand::u8(1..=250),
        ];
        Self::start_on(zone, SocketAddr::from((Ipv4Addr::from(octets), 53)))
    }

    fn start_on(zone: Zone, addr: SocketAddr) -> Self {
        let binary = require_binary("dnsmasq", "dnsmasq-base");
        let dir = TempDir::new("dnsmasq");
        let mut command = Command::new(binary);
        command.args([
            "--keep-in-foreground",
            &format!("--port={}", addr.port()),
            &format!("--listen-address={}", addr.ip()),
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--local=/test/",
            "--user=root",
            "--pid-file=",
            "--log-facility=-",
        ]);
        command.args(&zone.args);
        let child = ChildGuard::spawn("dnsmasq", &mut command, &dir.path().join("dnsmasq.log"));
        wait_for_tcp(addr, Duration::from_secs(10));
        Self {
            addr,
            child,
            _dir: dir,
        }
    }

    /// `udp://ADDR` as the probe writes it.
    pub fn udp(&self) -> String {
        format!("udp://{}", self.addr)
    }

    /// `tcp://ADDR` as the probe writes it.
    pub fn tcp(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// Stops the server for good.
    pub fn stop(&mut self) {
        self.child.kill();
    }
}

/// A UDP socket that is bound (so queries are not refused) but never answers: a resolver that is
/// up at the network level and dead at the DNS level.
pub fn silent_udp() -> (UdpSocket, String) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind silent udp socket");
    let addr = socket.local_addr().expect("local addr");
    (socket, format!("udp://{addr}"))
}

/// A DNS-over-TLS server: TLS terminated here, the DNS-over-TCP stream passed to `upstream`.
pub struct DotFront {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DotFront {
    pub async fn start(leaf: &Leaf, upstream: SocketAddr) -> Self {
        let acceptor = TlsAcceptor::from(Arc::new(leaf.server_config(&[])));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind dot");
        let addr = listener.local_addr().expect("dot addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let Ok(mut plain) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for DotFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A DNS-over-HTTPS server (RFC 8484, HTTP/2 POST of `application/dns-message`), relaying each
/// query to `upstream` over UDP.
pub struct DohFront {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DohFront {
    pub async fn start(leaf: &Leaf, upstream: SocketAddr) -> Self {
        use http_body_util::{BodyExt, Full};
        use hyper::service::service_fn;
        use hyper_util::rt::{TokioExecutor, TokioIo};

        let acceptor = TlsAcceptor::from(Arc::new(leaf.server_config(&[b"h2"])));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind doh");
        let addr = listener.local_addr().expect("doh addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| async move {
                            let path_ok = request.uri().path() == "/dns-query";
                            let query = request.into_body().collect().await?.to_bytes();
                            let answer = if path_ok {
                                relay_udp(&query, upstream).await
                            } else {
                                None
                            };
                            let response = match answer {
                                Some(answer) => hyper::Response::builder()
                                    .header("content-type", "application/dns-message")
                                    .body(Full::new(bytes::Bytes::from(answer))),
                                None => hyper::Response::builder()
                                    .status(404)
                                    .body(Full::new(bytes::Bytes::new())),
                            };
                            Ok::<_, hyper::Error>(response.expect("response"))
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for DohFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay_udp(query: &[u8], upstream: SocketAddr) -> Option<Vec<u8>> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
    socket.send_to(query, upstream).await.ok()?;
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buffer))
        .await
        .ok()?
        .ok()?;
    buffer.truncate(read);
    Some(buffer)
}
