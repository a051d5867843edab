//! The HTTP/1.1 layer of pistachio (Pistache's `Http` namespace): an
//! incremental request parser, [`Request`], [`ResponseWriter`], and
//! [`Endpoint`], which serves a [`Handler`] over plaintext or TLS.
//!
//! * HTTP/1.1 keep-alive by default; `Connection: close` honoured; HTTP/1.0
//!   keep-alive only when asked for.
//! * Pipelined requests are answered in order, even when handlers answer
//!   out of order from other threads.
//! * A malformed request gets the right 4xx (or 5xx for unsupported
//!   features) and the connection is closed after it; other connections
//!   never notice.
//! * A handler that panics, or drops its [`ResponseWriter`] without
//!   answering, produces a `500` for that request only.
//! * HTTP/2 too (ALPN `h2` on TLS, h2c with prior knowledge on plaintext;
//!   [`Options::http2`], [`Http2Limits`]): the same handlers and writers,
//!   one stream per request, flow control on both levels, limits against
//!   the known abuses (see `docs/http2.md`).
//!
//! # Example
//!
//! ```
//! use pistachio_http::{Endpoint, Options, Request, ResponseWriter, StatusCode};
//! use std::io::{Read, Write};
//!
//! let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(2))?;
//! endpoint.serve_threaded(|req: Request, resp: ResponseWriter| {
//!     let body = format!("Hello from {}", req.path());
//!     resp.send(StatusCode::OK, body);
//! })?;
//!
//! let mut client = std::net::TcpStream::connect(endpoint.local_addr())?;
//! client.write_all(b"GET /there HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
//! let mut response = String::new();
//! client.read_to_string(&mut response)?;
//! assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(response.ends_with("\r\n\r\nHello from /there"));
//! endpoint.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```

#![deny(unsafe_code)]

mod ascii;
mod body;
mod conn;
mod date;
mod encode;
mod endpoint;
mod fields;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod h2;
mod middleware;
mod parser;
mod pool;
mod proto;
mod request;
mod respond;
mod response;
mod sent;
mod writer;

pub use body::{BodyMode, BodyStream, BodyTooLarge};
pub use encode::{BodyEncoder, Encoding};
pub use endpoint::{Endpoint, Options, ShutdownHandle};
pub use h2::{Http2Counters, Http2Limits, Http2Stats};
pub use middleware::{
    run_heads, Answer, End, Exchange, HeadAction, Hooks, Middleware, RequestInfo,
};
pub use request::{percent_decode, Request};
pub use respond::{Respond, Response};
pub use writer::{ResponseStream, ResponseWriter};

pub use http::header::{HeaderName, HeaderValue};
pub use http::{header, HeaderMap, Method, StatusCode, Version};
pub use pistachio_transport::{
    ListenerOptions, ShutdownReport, TlsConfig, TlsInfo, TlsReloader, UNIX_PEER_ADDR,
};

/// Facts about a new connection, given to [`Handler::on_connection`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    /// The client's address.
    pub peer_addr: std::net::SocketAddr,
    /// The local address the client connected to.
    pub local_addr: std::net::SocketAddr,
    /// The negotiated TLS parameters, or `None` over plaintext.
    pub tls: Option<TlsInfo>,
    /// Index of the worker thread that owns the connection.
    pub worker: usize,
}

/// Answers requests (Pistache's `Http::Handler::onRequest`).
///
/// One handler serves every worker, so it is `Send + Sync`; state it needs
/// to mutate goes behind the synchronisation of your choice. Any
/// `Fn(Request, ResponseWriter)` closure is a handler.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request. Answer through `response`, now or later and from
    /// any thread.
    fn on_request(&self, request: Request, response: ResponseWriter);

    /// Answers `request` at once with its whole answer, or returns `None`
    /// to have [`Handler::on_request`] called for it. Returning the answer
    /// is the cheapest way to give it: no writer is made, and the
    /// connection writes the answer straight into its output.
    ///
    /// Called only if [`Handler::responds`] says so, for HTTP/1 requests
    /// that no middleware wraps and whose body, if any, is buffered; every
    /// other request goes to [`Handler::on_request`], which must then
    /// answer as this would ([`ResponseWriter::send_response`] sends a
    /// [`Response`]; [`Respond`] does both from one function). A panic
    /// here answers `500` for this request only.
    fn respond(&self, request: &Request) -> Option<Response> {
        let _ = request;
        None
    }

    /// Whether [`Handler::respond`] may answer. Asked once, when the
    /// endpoint starts serving.
    fn responds(&self) -> bool {
        false
    }

    /// Called when the head of a request with a body has arrived, before
    /// the body: return [`BodyMode::Streamed`] to have
    /// [`Handler::on_request`] called at once and read the body from
    /// [`Request::take_body_stream`] as it arrives (for uploads larger than
    /// memory). The default buffers the body, up to `max_request_size`.
    fn body_mode(&self, request: &Request) -> BodyMode {
        let _ = request;
        BodyMode::Buffered
    }

    /// Whether this handler brings middleware of its own (a router with
    /// layers): only then does the connection call [`Handler::on_head`]
    /// and keep each request's facts ([`RequestInfo`]) for response and
    /// completion hooks. Asked once, when the endpoint starts serving.
    fn layered(&self) -> bool {
        false
    }

    /// The request head is parsed, after the endpoint-wide middleware's
    /// [`Middleware::on_head`] and with the same contract (before any body
    /// byte is read; answering closes the connection if the request has a
    /// body). Called only if [`Handler::layered`] says so. A router runs
    /// its own layers' head hooks here, with the route already known.
    fn on_head(&self, request: &Request) -> HeadAction {
        let _ = request;
        HeadAction::Continue
    }

    /// A connection is ready (after its TLS handshake). Called exactly once
    /// per connection, on its worker, before any of its requests.
    fn on_connection(&self, info: &ConnectionInfo) {
        let _ = info;
    }

    /// A request's deadline ([`ResponseWriter::timeout_after`]) passed
    /// before its handler started answering (Pistache's `onTimeout`).
    /// `response` answers in its place; the default sends
    /// `408 Request Timeout`.
    fn on_timeout(&self, response: ResponseWriter) {
        response.send(StatusCode::REQUEST_TIMEOUT, "Request Timeout");
    }

    /// A connection that [`Handler::on_connection`] saw has closed, for
    /// whatever reason. Called exactly once per such connection.
    fn on_disconnection(&self, peer_addr: std::net::SocketAddr) {
        let _ = peer_addr;
    }
}

/// A shared handler serves as well: `Endpoint::serve_threaded(Arc::clone(&router))`.
impl<H: Handler + ?Sized> Handler for std::sync::Arc<H> {
    fn on_request(&self, request: Request, response: ResponseWriter) {
        (**self).on_request(request, response)
    }
    fn respond(&self, request: &Request) -> Option<Response> {
        (**self).respond(request)
    }
    fn responds(&self) -> bool {
        (**self).responds()
    }
    fn body_mode(&self, request: &Request) -> BodyMode {
        (**self).body_mode(request)
    }
    fn layered(&self) -> bool {
        (**self).layered()
    }
    fn on_head(&self, request: &Request) -> HeadAction {
        (**self).on_head(request)
    }
    fn on_timeout(&self, response: ResponseWriter) {
        (**self).on_timeout(response)
    }
    fn on_connection(&self, info: &ConnectionInfo) {
        (**self).on_connection(info)
    }
    fn on_disconnection(&self, peer_addr: std::net::SocketAddr) {
        (**self).on_disconnection(peer_addr)
    }
}

impl<F> Handler for F
where
    F: Fn(Request, ResponseWriter) + Send + Sync + 'static,
{
    fn on_request(&self, request: Request, response: ResponseWriter) {
        self(request, response)
    }
}
