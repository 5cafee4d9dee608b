//! The one connection of a run, as the service kube-rs' [`kube::Client`] sends through.
//!
//! kube's own stack (hyper-util's pooled client, its TLS connectors) would hide what a synthetic
//! probe exists to see: it pools and reconnects, resolves with `getaddrinfo`, and brings its own
//! rustls provider features. [`Client::new`](kube::Client::new) takes any tower service, so the
//! connection is ours: [`net::open`] and [`net::tls_handshake`] (phases `resolve`, `connect`,
//! `tls`, the connection observations, the one ring provider), then hyper's HTTP/1.1 client on
//! that stream. Every request of the run goes over it in turn (keep-alive), with the bearer token
//! and the `Host` header added here. When the run ends (or is cut off) the connection's task is
//! aborted with it: nothing outlives the run.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;
use tokio_util::task::AbortOnDropHandle;

use super::access::{Access, Credential};
use crate::probe::{ErrorClass, Outcome, ProbeContext, net};

/// An open connection to the API server and what every request on it carries.
#[derive(Clone)]
pub struct Channel {
    sender: Arc<Mutex<SendRequest<kube::client::Body>>>,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
    /// Keeps the connection's task alive exactly as long as a clone of the channel is.
    _connection: Arc<AbortOnDropHandle<()>>,
}

impl Channel {
    /// Opens the run's connection: resolve, connect, TLS, the HTTP/1.1 handshake; and reads the
    /// token (a file is read now, at every run, since it is rotated).
    pub async fn open(
        ctx: &ProbeContext,
        access: &Access,
        resolver: &net::Resolver,
    ) -> Result<Self, Outcome> {
        let authorization = authorization(&access.credential).await?;
        let stream = net::open(ctx, resolver, &access.host, access.port, None).await?;
        let stream = net::tls_handshake(ctx, &access.tls, stream, &access.server_name).await?;
        let (sender, connection) =
            http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|error| {
                    Outcome::failure(
                        ErrorClass::Protocol,
                        format!("HTTP/1.1 handshake with the API server failed: {error}"),
                    )
                })?;
        let task = tokio::spawn(async move {
            // Its end is seen by the request that was waiting on it.
            let _ = connection.await;
        });
        let authority = match access.port {
            443 => access.host.clone(),
            port if access.host.contains(':') => format!("[{}]:{port}", access.host),
            port => format!("{}:{port}", access.host),
        };
        let host = HeaderValue::from_str(&authority).map_err(|_| {
            Outcome::failure(
                ErrorClass::Internal,
                "the API server's host is not a valid Host header",
            )
        })?;
        Ok(Self {
            sender: Arc::new(Mutex::new(sender)),
            host,
            authorization,
            _connection: Arc::new(AbortOnDropHandle::new(task)),
        })
    }

    /// A kube client sending through this connection.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }
}

/// `Bearer <token>`, marked sensitive so that hyper never logs it.
async fn authorization(credential: &Credential) -> Result<Option<HeaderValue>, Outcome> {
    let token = match credential {
        Credential::None => return Ok(None),
        Credential::Token(token) => token.expose().to_owned(),
        Credential::TokenFile(path) => tokio::fs::read_to_string(path)
            .await
            .map_err(|error| {
                Outcome::failure(
                    ErrorClass::Auth,
                    format!(
                        "cannot read the token file {}: {}",
                        path.display(),
                        net::describe_io(&error)
                    ),
                )
            })?
            .trim()
            .to_owned(),
    };
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        Outcome::failure(
            ErrorClass::Auth,
            "the token holds characters a header cannot carry",
        )
    })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

impl tower::Service<Request<kube::client::Body>> for Channel {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is awaited per request, under the lock, in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<kube::client::Body>) -> Self::Future {
        let headers = request.headers_mut();
        headers.insert(header::HOST, self.host.clone());
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(net::USER_AGENT),
        );
        if let Some(authorization) = &self.authorization {
            headers.insert(header::AUTHORIZATION, authorization.clone());
        }
        let sender = self.sender.clone();
        Box::pin(async move {
            let response = {
                let mut sender = sender.lock().await;
                sender.ready().await?;
                sender.send_request(request)
            };
            response.await
        })
    }
}
