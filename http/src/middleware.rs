//! [`Middleware`]: hooks around the whole exchange, including the answers
//! the HTTP layer makes itself.

use std::fmt;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytestring::ByteString;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Version};

use crate::fields::HeaderFields;
use crate::parser::RequestHead;
use crate::pool;
use crate::request::Request;

/// Hooks around one exchange (request and response).
///
/// A middleware sees three moments of every exchange it wraps:
///
/// 1. [`Middleware::on_head`]: the request head is parsed; no body byte has
///    been read or buffered and no `100 Continue` sent. It may answer now
///    ([`HeadAction::Answer`]) instead of the handler.
/// 2. [`Middleware::on_response`]: the final status is known and the
///    response head is about to be written; it may add or change header
///    fields. Runs for every answer: the handler's (whole, streamed, file),
///    the router's (`404`, `405`, `OPTIONS`), and the HTTP layer's own
///    (`400`, `408`, `413`, `414`, `431`, the `500` of a panic or a dropped
///    writer).
/// 3. [`Middleware::on_complete`]: the exchange is over; an [`Exchange`]
///    says how it went (for access logs and metrics).
///
/// # Order
///
/// Middleware installed endpoint-wide ([`Options::middleware`]) wraps
/// whatever a handler adds (a `Router`'s own layers, then its per-route
/// layers). On the way in (`on_head`) the outermost runs first; on the way
/// out (`on_response`, `on_complete`) the innermost runs first:
///
/// ```text
///   on_head:     endpoint 1 → endpoint 2 → router → route → handler
///   on_response: route → router → endpoint 2 → endpoint 1 → head written
///   on_complete: route → router → endpoint 2 → endpoint 1
/// ```
///
/// A layer that answers in `on_head` stops the way in: the layers inside
/// it never see the request; it and the layers outside it see the answer
/// in `on_response` and `on_complete`. Answers the HTTP layer makes itself
/// (a malformed request, a request timeout) are seen by the endpoint-wide
/// layers only.
///
/// # Cost
///
/// With no middleware installed the connection takes none of these paths:
/// no allocation, no dynamic call. With middleware, each request keeps a
/// small record of its facts ([`RequestInfo`]) until it completes; the
/// record is the connection's, reused from one request to the next (no
/// allocation per request). Each hook costs a call per layer, unless no
/// layer implements it: name the hooks a middleware implements in
/// [`Middleware::hooks`] and the others are skipped. The response's
/// header map is kept for [`Exchange::headers`] only if a layer declares
/// [`Hooks::RESPONSE_HEADERS`] (the default, [`Hooks::ALL`], does).
///
/// # Panics
///
/// A panic in `on_head` or `on_response` turns that request's answer into
/// `500 Internal Server Error` (other requests never notice); a panic in
/// `on_complete` is logged at `warn` and swallowed.
///
/// [`Options::middleware`]: crate::Options::middleware
///
/// Every hook has a default that does nothing, so a middleware implements
/// only what it needs. Hooks run on the connection's worker thread (or, for
/// `on_response`, on whichever thread the handler answers from): keep them
/// short and never block in them.
///
/// # Example
///
/// ```
/// use pistachio_http::{
///     Endpoint, Exchange, HeaderMap, HeaderValue, Middleware, Options, Request, RequestInfo,
///     ResponseWriter, StatusCode,
/// };
/// use std::io::{Read, Write};
///
/// /// Adds a security header to every answer and logs every exchange.
/// struct Hardening;
///
/// impl Middleware for Hardening {
///     fn on_response(&self, _req: &RequestInfo, _status: StatusCode, headers: &mut HeaderMap) {
///         headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
///     }
///     fn on_complete(&self, ex: &Exchange<'_>) {
///         eprintln!("{} {} {}", ex.request.method().map_or("-", |m| m.as_str()),
///                   ex.request.target().unwrap_or("-"), ex.status.as_u16());
///     }
/// }
///
/// let options = Options::default().threads(1).middleware(Hardening);
/// let mut endpoint = Endpoint::bind("127.0.0.1:0", options)?;
/// endpoint.serve_threaded(|_req: Request, resp: ResponseWriter| {
///     resp.send(StatusCode::OK, "hi");
/// })?;
/// let mut client = std::net::TcpStream::connect(endpoint.local_addr())?;
/// client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
/// let mut response = String::new();
/// client.read_to_string(&mut response)?;
/// assert!(response.contains("X-Content-Type-Options: nosniff\r\n"));
/// endpoint.shutdown();
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Middleware: Send + Sync + 'static {
    /// The request head is parsed: before `100 Continue` is sent and before
    /// any body byte is read or buffered (even before the body size limit
    /// is checked). Return [`HeadAction::Answer`] to answer in the
    /// handler's place.
    ///
    /// A request with a body that is answered here closes the connection
    /// after the answer (`Connection: close`): the body is never read, and
    /// a client that sent `Expect: 100-continue` never gets `100 Continue`,
    /// so it never sends it. The server's close then reads and discards a
    /// bounded amount of what the client still sends, so that the answer
    /// is not destroyed by a TCP reset. A request without a body keeps the
    /// connection open as usual.
    fn on_head(&self, request: &Request) -> HeadAction {
        let _ = request;
        HeadAction::Continue
    }

    /// The response head is about to be written with `status`: add or
    /// change `headers` (`Content-Length`, `Date`, `Connection` and
    /// `Transfer-Encoding` belong to the server and are ignored).
    fn on_response(&self, request: &RequestInfo, status: StatusCode, headers: &mut HeaderMap) {
        let _ = (request, status, headers);
    }

    /// The exchange is over (see [`Exchange`] for what "over" means).
    /// Called exactly once per exchange that reached this middleware.
    fn on_complete(&self, exchange: &Exchange<'_>) {
        let _ = exchange;
    }

    /// Which of the hooks above this middleware implements; the server
    /// asks once, when the middleware is installed, and never calls the
    /// others. The default, [`Hooks::ALL`], is always right; naming only
    /// the hooks implemented makes the others cost nothing per request
    /// (no call, and with no layer wanting [`Middleware::on_complete`],
    /// no clock read either).
    ///
    /// ```
    /// use pistachio_http::{Exchange, Hooks, Middleware};
    ///
    /// struct Metrics;
    ///
    /// impl Middleware for Metrics {
    ///     fn on_complete(&self, ex: &Exchange<'_>) {
    ///         let _ = ex.status;
    ///     }
    ///     fn hooks(&self) -> Hooks {
    ///         Hooks::ON_COMPLETE
    ///     }
    /// }
    /// ```
    fn hooks(&self) -> Hooks {
        Hooks::ALL
    }
}

/// A set of [`Middleware`] hooks (see [`Middleware::hooks`]); combine
/// with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hooks(u8);

impl Hooks {
    /// No hook.
    pub const NONE: Hooks = Hooks(0);
    /// [`Middleware::on_head`].
    pub const ON_HEAD: Hooks = Hooks(1);
    /// [`Middleware::on_response`].
    pub const ON_RESPONSE: Hooks = Hooks(2);
    /// [`Middleware::on_complete`].
    pub const ON_COMPLETE: Hooks = Hooks(4);
    /// Not a hook: [`Exchange::headers`] holds the response's header
    /// fields (without it, that map is empty, and an answer's header map
    /// is dropped as soon as its head is written instead of being kept
    /// until the exchange completes). Name it with
    /// [`Hooks::ON_COMPLETE`] when `on_complete` reads the headers.
    pub const RESPONSE_HEADERS: Hooks = Hooks(8);
    /// Every hook, and [`Hooks::RESPONSE_HEADERS`].
    pub const ALL: Hooks = Hooks(15);
    /// Not a hook, and not in [`Hooks::ALL`]: the [`RequestInfo`] that
    /// response and completion hooks see holds the request's `Referer`
    /// and `User-Agent` ([`RequestInfo::referer`],
    /// [`RequestInfo::user_agent`]), for a Combined Log Format line.
    /// Honoured when an endpoint-wide middleware
    /// ([`Options::middleware`](crate::Options::middleware)) names it;
    /// without one, nothing is kept.
    pub const REQUEST_HEADERS: Hooks = Hooks(16);

    /// Whether every hook of `other` is in `self`.
    pub const fn contains(self, other: Hooks) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any hook of `other` is in `self`.
    pub const fn intersects(self, other: Hooks) -> bool {
        self.0 & other.0 != 0
    }

    /// The hooks of `layers` together.
    fn of(layers: &[Arc<dyn Middleware>]) -> Hooks {
        layers.iter().fold(Hooks::NONE, |all, l| all | l.hooks())
    }
}

impl std::ops::BitOr for Hooks {
    type Output = Hooks;
    fn bitor(self, other: Hooks) -> Hooks {
        Hooks(self.0 | other.0)
    }
}

impl std::ops::BitOrAssign for Hooks {
    fn bitor_assign(&mut self, other: Hooks) {
        self.0 |= other.0;
    }
}

/// A shared middleware is a middleware too.
impl<M: Middleware + ?Sized> Middleware for Arc<M> {
    fn on_head(&self, request: &Request) -> HeadAction {
        (**self).on_head(request)
    }
    fn on_response(&self, request: &RequestInfo, status: StatusCode, headers: &mut HeaderMap) {
        (**self).on_response(request, status, headers)
    }
    fn on_complete(&self, exchange: &Exchange<'_>) {
        (**self).on_complete(exchange)
    }
    fn hooks(&self) -> Hooks {
        (**self).hooks()
    }
}

/// What [`Middleware::on_head`] decided.
#[derive(Debug)]
pub enum HeadAction {
    /// Go on: the next layer, then the handler, sees the request.
    Continue,
    /// Answer now with this; the handler never sees the request.
    Answer(Answer),
}

/// An answer given at the head phase ([`HeadAction::Answer`]).
///
/// ```
/// use pistachio_http::{header, Answer, HeaderValue, StatusCode};
///
/// let answer = Answer::new(StatusCode::UNAUTHORIZED, "credentials required")
///     .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
/// assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
/// ```
pub struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    /// Layers (beyond the endpoint-wide ones) whose response and
    /// completion hooks the answer passes through, outermost first.
    pub(crate) layers: Vec<Arc<dyn Middleware>>,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("layers", &self.layers.len())
            .finish()
    }
}

impl Answer {
    /// An answer with `status` and `body` (`text/plain; charset=utf-8`
    /// unless a `Content-Type` is set).
    pub fn new(status: StatusCode, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            headers: HeaderMap::new(),
            body: body.into(),
            layers: Vec::new(),
        }
    }

    /// Adds a header field (builder style).
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Answer {
        self.headers.append(name, value);
        self
    }

    /// The header fields so far.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Makes the answer pass through `layer`'s [`Middleware::on_response`]
    /// and [`Middleware::on_complete`] too, outside the layers already
    /// named (but inside the endpoint-wide ones). For a handler with layers of its own (a router) whose
    /// [`Handler::on_head`](crate::Handler::on_head) answers: the layers
    /// that saw the head see the answer.
    pub fn within(&mut self, layer: Arc<dyn Middleware>) {
        self.layers.insert(0, layer);
    }
}

/// The facts of a request that response and completion hooks see; cheap
/// to clone.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    method: Option<Method>,
    target: Option<ByteString>,
    path: PathOf,
    version: Version,
    peer_addr: SocketAddr,
    received: Instant,
    /// The route template, once a router matched one.
    pub(crate) route: Option<Arc<str>>,
    /// `Referer` and `User-Agent`, when a layer asked
    /// ([`Hooks::REQUEST_HEADERS`]).
    captured: Option<Box<Captured>>,
}

/// The request header fields kept for [`Hooks::REQUEST_HEADERS`].
#[derive(Debug, Clone)]
struct Captured {
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
}

impl Captured {
    fn of(headers: &HeaderFields) -> Option<Box<Captured>> {
        let referer = headers.first(&http::header::REFERER);
        let user_agent = headers.first(&http::header::USER_AGENT);
        (referer.is_some() || user_agent.is_some()).then(|| {
            Box::new(Captured {
                referer,
                user_agent,
            })
        })
    }
}

impl RequestInfo {
    pub(crate) fn of(request: &Request, received: Instant) -> RequestInfo {
        RequestInfo::of_head(request.head(), request.peer_addr(), received)
    }

    /// The facts of `head`, its `Referer` and `User-Agent` too (for the
    /// answers made outside the handler; [`Layered::new`] drops them
    /// unless a layer asked).
    pub(crate) fn of_head(
        head: &RequestHead,
        peer_addr: SocketAddr,
        received: Instant,
    ) -> RequestInfo {
        RequestInfo::build(head, peer_addr, received, true)
    }

    fn build(
        head: &RequestHead,
        peer_addr: SocketAddr,
        received: Instant,
        capture: bool,
    ) -> RequestInfo {
        let target = head.target_string();
        RequestInfo {
            method: Some(head.method.clone()),
            path: PathOf::of(&target, head.path()),
            target: Some(target),
            version: head.version,
            peer_addr,
            received,
            route: None,
            captured: if capture {
                Captured::of(&head.headers)
            } else {
                None
            },
        }
    }

    /// What a writer knows without the request.
    pub(crate) fn partial(method: Method, version: Version, peer_addr: SocketAddr) -> RequestInfo {
        RequestInfo {
            method: Some(method),
            target: None,
            path: PathOf::Unknown,
            version,
            peer_addr,
            received: Instant::now(),
            route: None,
            captured: None,
        }
    }

    /// A request the server could not parse (or not all of).
    pub(crate) fn unparsed(peer_addr: SocketAddr, received: Instant) -> RequestInfo {
        RequestInfo {
            method: None,
            target: None,
            path: PathOf::Unknown,
            version: Version::HTTP_11,
            peer_addr,
            received,
            route: None,
            captured: None,
        }
    }

    /// The method; `None` if the request was refused before its head was
    /// parsed (a malformed request, a head timeout).
    pub fn method(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    /// The raw request-target as sent (path and query); `None` like
    /// [`RequestInfo::method`].
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// The raw path, without the query; `None` like
    /// [`RequestInfo::method`].
    pub fn path(&self) -> Option<&str> {
        match &self.path {
            PathOf::Unknown => None,
            PathOf::Within(start, end) => self.target.as_deref()?.get(*start..*end),
            PathOf::Own(path) => Some(path),
        }
    }

    /// The request's version (`HTTP/1.1` when unknown).
    pub fn version(&self) -> Version {
        self.version
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The template of the route that answers the request (`/users/:id`),
    /// as set by a router ([`ResponseWriter::set_route`]); `None` before
    /// routing, for requests no route matched, and for answers the HTTP
    /// layer makes itself. What metrics should label requests with: the
    /// raw path ([`RequestInfo::path`]) has as many values as clients
    /// care to send.
    ///
    /// [`ResponseWriter::set_route`]: crate::ResponseWriter::set_route
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    /// The request's `Referer`, if it has one (visible ASCII) and an
    /// endpoint-wide middleware asked for it ([`Hooks::REQUEST_HEADERS`]).
    pub fn referer(&self) -> Option<&str> {
        self.captured.as_ref()?.referer.as_ref()?.to_str().ok()
    }

    /// The request's `User-Agent`, like [`RequestInfo::referer`].
    pub fn user_agent(&self) -> Option<&str> {
        self.captured.as_ref()?.user_agent.as_ref()?.to_str().ok()
    }

    /// When the request head was complete (for a refused request: when
    /// the server refused it). The event loop's clock: it can lag real
    /// time by the time the loop spends on one round of events.
    pub fn received(&self) -> Instant {
        self.received
    }
}

/// Where a [`RequestInfo`]'s path is: usually a part of its target (no
/// second reference to the head buffer to take and drop).
#[derive(Debug, Clone)]
enum PathOf {
    Unknown,
    /// `target[start..end]`.
    Within(usize, usize),
    Own(ByteString),
}

impl PathOf {
    fn of(target: &ByteString, path: &str) -> PathOf {
        let (t, p) = (target.as_ptr() as usize, path.as_ptr() as usize);
        if p >= t && p + path.len() <= t + target.len() {
            PathOf::Within(p - t, p - t + path.len())
        } else {
            PathOf::Own(ByteString::from(path))
        }
    }
}

/// How an exchange ended.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The socket took the whole answer.
    Completed,
    /// The connection closed before the socket took the whole answer (the
    /// client went away, the server was shut down).
    ClientGone,
    /// The answer was cut off by the server: a [`ResponseStream`] dropped
    /// before [`end`](crate::ResponseStream::end), a stream over
    /// `max_response_size`, or an answer discarded because the connection
    /// closed after an earlier one.
    ///
    /// [`ResponseStream`]: crate::ResponseStream
    Cut,
}

/// One finished exchange, given to [`Middleware::on_complete`].
///
/// "Finished" means: the socket (for TLS: OpenSSL, which wrote the
/// record to the socket) accepted the last byte of the answer, or the
/// connection closed before that. A big answer to a slow reader, a file
/// or a long stream, finishes when the client has read all but what the
/// kernel's buffers hold, not when it was queued.
#[non_exhaustive]
#[derive(Debug)]
pub struct Exchange<'a> {
    /// The request.
    pub request: &'a RequestInfo,
    /// The status answered.
    pub status: StatusCode,
    /// The response header fields as sent (after every `on_response`),
    /// without the ones the server adds (`Date`, `Content-Length`,
    /// `Transfer-Encoding`, `Connection`). Empty unless an installed
    /// layer declares [`Hooks::RESPONSE_HEADERS`] (the default,
    /// [`Hooks::ALL`], does).
    pub headers: &'a HeaderMap,
    /// Bytes of the answer after its head queued for the client: the body
    /// (with its chunk framing, for a streamed answer).
    pub body_bytes: u64,
    /// Whether the connection stays open for another request.
    pub keep_alive: bool,
    /// How the exchange ended.
    pub end: End,
    /// When the response head was queued for the client, if it was.
    first_byte: Option<Instant>,
    /// When the exchange finished.
    finished: Instant,
}

impl Exchange<'_> {
    /// From [`RequestInfo::received`] until the response head was queued
    /// for the client; `None` if it never was.
    ///
    /// Both durations are read from the event loop's clock (one read per
    /// loop iteration, see [`RequestInfo::received`]): an answer made in
    /// the iteration that received its request reads zero.
    pub fn time_to_first_byte(&self) -> Option<Duration> {
        self.first_byte.map(|t| self.since_received(t))
    }

    /// From [`RequestInfo::received`] until the exchange finished.
    pub fn total(&self) -> Duration {
        self.since_received(self.finished)
    }

    fn since_received(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.request.received)
    }
}

/// The layers an exchange passes through, outermost first: the
/// endpoint's (shared, so that a request costs no copy of the list), then
/// those added for this exchange.
#[derive(Clone)]
pub(crate) struct Layers {
    outer: Arc<[Arc<dyn Middleware>]>,
    inner: Vec<Arc<dyn Middleware>>,
    /// The hooks any of them implements.
    hooks: Hooks,
}

impl Layers {
    /// The endpoint's layers.
    pub(crate) fn shared(outer: &SharedLayers) -> Layers {
        Layers {
            outer: Arc::clone(&outer.0),
            inner: Vec::new(),
            hooks: outer.1,
        }
    }

    /// A list of its own.
    pub(crate) fn owned(list: Vec<Arc<dyn Middleware>>) -> Layers {
        Layers {
            hooks: Hooks::of(&list),
            outer: list.into(),
            inner: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, layer: Arc<dyn Middleware>) {
        self.hooks |= layer.hooks();
        self.inner.push(layer);
    }

    /// Whether any of them implements `hook`.
    pub(crate) fn want(&self, hook: Hooks) -> bool {
        self.hooks.intersects(hook)
    }

    /// Innermost first; none if no layer implements `hook`. (If one does,
    /// all are called: a layer without it runs the default, which does
    /// nothing; asking each layer again would cost as much.)
    fn inside_out(&self, hook: Hooks) -> impl Iterator<Item = &Arc<dyn Middleware>> {
        let (outer, inner): (&[_], &[_]) = if self.want(hook) {
            (&self.outer, &self.inner)
        } else {
            (&[], &[])
        };
        outer.iter().chain(inner.iter()).rev()
    }
}

/// Endpoint-wide middleware, in [`Options`](crate::Options).
#[derive(Clone, Default)]
pub(crate) struct EndpointLayers(pub(crate) Vec<Arc<dyn Middleware>>);

impl fmt::Debug for EndpointLayers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} middleware", self.0.len())
    }
}

/// Endpoint-wide middleware, shared by the connections, with the hooks
/// any of them implements (asked once, here).
pub(crate) struct SharedLayers(pub(crate) Arc<[Arc<dyn Middleware>]>, pub(crate) Hooks);

impl SharedLayers {
    pub(crate) fn new(list: Vec<Arc<dyn Middleware>>) -> SharedLayers {
        let hooks = Hooks::of(&list);
        SharedLayers(list.into(), hooks)
    }

    /// Whether any of them implements `hook`.
    pub(crate) fn want(&self, hook: Hooks) -> bool {
        self.1.intersects(hook)
    }
}

impl fmt::Debug for SharedLayers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} middleware", self.0.len())
    }
}

/// What an exchange wrapped in middleware carries from the request to its
/// completion, from the writer to the connection's completion record.
/// Boxed; the connection keeps a finished one for its next exchange
/// ([`Layered::reuse`]), so a request costs no allocation.
#[derive(Clone)]
pub(crate) struct Layered {
    pub(crate) info: RequestInfo,
    pub(crate) layers: Layers,
    /// Set when the head is written.
    status: StatusCode,
    /// The answer's header fields, once answered (`None` before, so that
    /// a record costs no header map of its own).
    headers: Option<Box<HeaderMap>>,
    /// Length of the head in the first part.
    pub(crate) head_len: u64,
    /// Bytes handed to the transport so far.
    handed: u64,
    first_byte: Option<Instant>,
    stage: Stage,
}

/// Where a [`Layered`] is in its exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not answered yet.
    Request,
    /// Answered: a completion record whose hooks are due.
    Answered,
    /// The completion hooks ran.
    Done,
}

/// The completion record of an answer on its way out.
pub(crate) type Pending = Layered;

/// A record dropped before its completion hooks ran (its answer was
/// posted to a connection that had closed meanwhile, or the server
/// stopped): the client is gone.
impl Drop for Layered {
    fn drop(&mut self) {
        if self.stage == Stage::Answered {
            self.finish(false, End::ClientGone, Instant::now());
        }
    }
}

impl fmt::Debug for Layered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layered")
            .field("info", &self.info)
            .field("status", &self.status)
            .field("handed", &self.handed)
            .finish_non_exhaustive()
    }
}

impl Layered {
    pub(crate) fn new(mut info: RequestInfo, layers: Layers) -> Layered {
        if !layers.want(Hooks::REQUEST_HEADERS) {
            info.captured = None;
        }
        Layered {
            info,
            layers,
            status: StatusCode::OK,
            headers: None,
            head_len: 0,
            handed: 0,
            first_byte: None,
            stage: Stage::Request,
        }
    }

    /// Runs every `on_response`, innermost first. `Err` if one panicked:
    /// the caller answers `500` instead (without running them again).
    #[inline]
    pub(crate) fn respond(&self, status: StatusCode, headers: &mut HeaderMap) -> Result<(), ()> {
        if !self.wants_response() {
            return Ok(());
        }
        self.run_responses(status, headers)
    }

    /// Whether a layer has an `on_response` (the answer's fields need a
    /// map for it to change).
    #[inline]
    pub(crate) fn wants_response(&self) -> bool {
        self.layers.want(Hooks::ON_RESPONSE)
    }

    fn run_responses(&self, status: StatusCode, headers: &mut HeaderMap) -> Result<(), ()> {
        for layer in self.layers.inside_out(Hooks::ON_RESPONSE) {
            let run = catch_unwind(AssertUnwindSafe(|| {
                layer.on_response(&self.info, status, headers)
            }));
            if run.is_err() {
                log::warn!(
                    "{}: middleware panicked in on_response; answered 500",
                    self.info.peer_addr
                );
                return Err(());
            }
        }
        Ok(())
    }

    /// Becomes the completion record of an answer with `status` and
    /// `headers` whose head is `head_len` bytes.
    pub(crate) fn answered(
        mut self: Box<Self>,
        status: StatusCode,
        headers: Option<Box<HeaderMap>>,
        head_len: usize,
    ) -> Box<Self> {
        self.status = status;
        if self.layers.want(Hooks::RESPONSE_HEADERS) {
            self.headers = headers;
        } else if let Some(map) = headers {
            pool::recycle_header_map(map);
        }
        self.head_len = head_len as u64;
        self.stage = Stage::Answered;
        self
    }

    /// Drops a record whose exchange is reported by another (an answer
    /// that came after `Handler::on_timeout` answered in its place).
    pub(crate) fn discard(mut self: Box<Self>) {
        self.stage = Stage::Done;
    }

    /// Notes `n` bytes handed to the transport at `now`.
    pub(crate) fn handed(&mut self, n: u64, now: Instant) {
        if n > 0 && self.first_byte.is_none() {
            self.first_byte = Some(now);
        }
        self.handed += n;
    }

    /// A record for a new exchange, in `spare` (a finished record the
    /// connection kept, see [`Layered::complete`]) if there is one: with
    /// a spare, no allocation.
    pub(crate) fn reuse(
        spare: Option<Box<Layered>>,
        request: &Request,
        received: Instant,
        shared: &SharedLayers,
    ) -> Box<Layered> {
        let capture = shared.1.contains(Hooks::REQUEST_HEADERS);
        let Some(mut record) = spare else {
            let info = RequestInfo::build(request.head(), request.peer_addr(), received, capture);
            return Box::new(Layered::new(info, Layers::shared(shared)));
        };
        // Field by field, in place: the old record is done (no hook is
        // due) and holds neither a header map nor the old request's
        // target and path.
        let head = request.head();
        let info = &mut record.info;
        if info.method.as_ref() != Some(&head.method) {
            info.method = Some(head.method.clone());
        }
        let target = head.target_string();
        info.path = PathOf::of(&target, head.path());
        info.target = Some(target);
        info.version = head.version;
        // The same connection's: the same peer.
        debug_assert_eq!(info.peer_addr, request.peer_addr());
        info.received = received;
        info.route = None;
        if capture {
            info.captured = Captured::of(&head.headers);
        }
        if Arc::ptr_eq(&record.layers.outer, &shared.0) {
            // The layers the handler added to the last exchange go; their
            // room stays for the next one's.
            if !record.layers.inner.is_empty() {
                record.layers.inner.clear();
                record.layers.hooks = shared.1;
            }
        } else {
            record.layers = Layers::shared(shared);
        }
        record.status = StatusCode::OK;
        record.head_len = 0;
        record.handed = 0;
        record.first_byte = None;
        record.stage = Stage::Request;
        record
    }

    /// Runs every `on_complete`, innermost first; `now` is when the
    /// exchange finished. Returns the record, done, for
    /// [`Layered::reuse`]; it keeps nothing of the request (the target
    /// and path are slices of the request's head buffer, which goes back
    /// to the worker's pool).
    pub(crate) fn complete(
        mut self: Box<Self>,
        keep_alive: bool,
        end: End,
        now: Instant,
    ) -> Box<Self> {
        self.finish(keep_alive, end, now);
        self.info.target = None;
        self.info.captured = None;
        self.info.path = PathOf::Unknown;
        if let Some(map) = self.headers.take() {
            pool::recycle_header_map(map);
        }
        self
    }

    fn finish(&mut self, keep_alive: bool, end: End, now: Instant) {
        if self.stage == Stage::Done {
            return;
        }
        self.stage = Stage::Done;
        if !self.layers.want(Hooks::ON_COMPLETE) {
            return;
        }
        let exchange = Exchange {
            request: &self.info,
            status: self.status,
            headers: self.headers.as_deref().unwrap_or_else(|| empty_headers()),
            body_bytes: self.handed.saturating_sub(self.head_len),
            first_byte: self.first_byte,
            finished: now,
            keep_alive,
            end,
        };
        // Innermost first: the exchange's own layers, then the shared
        // ones (usually the only ones).
        if !self.layers.inner.is_empty() {
            complete_each(&self.layers.inner, &exchange);
        }
        complete_each(&self.layers.outer, &exchange);
    }
}

/// The header map of an [`Exchange`] or an answer without one: shared,
/// so that none is built and dropped for it.
pub(crate) fn empty_headers() -> &'static HeaderMap {
    static EMPTY: OnceLock<HeaderMap> = OnceLock::new();
    EMPTY.get_or_init(HeaderMap::new)
}

/// Runs `on_complete` of `layers`, last first; a panic is logged and
/// swallowed.
fn complete_each(layers: &[Arc<dyn Middleware>], exchange: &Exchange<'_>) {
    for layer in layers.iter().rev() {
        if catch_unwind(AssertUnwindSafe(|| layer.on_complete(exchange))).is_err() {
            log::warn!(
                "{}: middleware panicked in on_complete",
                exchange.request.peer_addr
            );
        }
    }
}

/// Runs `on_head` of `layers` (outermost first); the first answer wins.
/// Returns it with the number of layers that saw the head (the one that
/// answered and those outside it). A panic is a `500`.
pub fn run_heads(layers: &[Arc<dyn Middleware>], request: &Request) -> Option<(Answer, usize)> {
    for (i, layer) in layers.iter().enumerate() {
        match catch_unwind(AssertUnwindSafe(|| layer.on_head(request))) {
            Ok(HeadAction::Continue) => {}
            Ok(HeadAction::Answer(answer)) => return Some((answer, i + 1)),
            Err(_) => {
                log::warn!(
                    "{}: middleware panicked in on_head; answered 500",
                    request.peer_addr()
                );
                return Some((panic_answer(), i + 1));
            }
        }
    }
    None
}

/// The whole head phase of a connection (HTTP/1.x or HTTP/2): the
/// endpoint-wide layers' `on_head`, then, for a layered handler, its own
/// [`Handler::on_head`](crate::Handler::on_head). An answer comes with the
/// layers it passes through; a panic is a `500`.
#[inline(never)]
pub(crate) fn run_head_phase(
    endpoint: &SharedLayers,
    handler: &dyn crate::Handler,
    handler_layered: bool,
    request: &Request,
) -> Option<(Answer, Layers)> {
    if endpoint.want(Hooks::ON_HEAD) {
        if let Some((answer, seen)) = run_heads(&endpoint.0, request) {
            return Some((answer, Layers::owned(endpoint.0[..seen].to_vec())));
        }
    }
    if !handler_layered {
        return None;
    }
    let mut answer = match catch_unwind(AssertUnwindSafe(|| handler.on_head(request))) {
        Ok(HeadAction::Continue) => return None,
        Ok(HeadAction::Answer(answer)) => answer,
        Err(_) => {
            log::warn!("{}: on_head panicked; answered 500", request.peer_addr());
            panic_answer()
        }
    };
    let mut layers = endpoint.0.to_vec();
    layers.append(&mut answer.layers);
    Some((answer, Layers::owned(layers)))
}

/// The answer for a panic in a head hook.
pub(crate) fn panic_answer() -> Answer {
    Answer::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_combine() {
        let hooks = Hooks::ON_HEAD | Hooks::ON_COMPLETE;
        assert!(hooks.contains(Hooks::ON_COMPLETE));
        assert!(!hooks.contains(Hooks::ON_RESPONSE));
        assert!(hooks.intersects(Hooks::ALL));
        assert!(!Hooks::NONE.intersects(Hooks::ALL));
        assert_eq!(
            Hooks::ON_HEAD | Hooks::ON_RESPONSE | Hooks::ON_COMPLETE | Hooks::RESPONSE_HEADERS,
            Hooks::ALL
        );
        assert!(!(Hooks::ON_HEAD | Hooks::ON_RESPONSE | Hooks::ON_COMPLETE)
            .contains(Hooks::RESPONSE_HEADERS));
    }

    fn info(target: ByteString, path: &ByteString) -> RequestInfo {
        RequestInfo {
            method: Some(Method::GET),
            path: PathOf::of(&target, path),
            target: Some(target),
            version: Version::HTTP_11,
            peer_addr: "127.0.0.1:1".parse().unwrap(),
            received: Instant::now(),
            route: None,
            captured: None,
        }
    }

    #[test]
    fn a_path_within_the_target_is_a_span_of_it() {
        let target = ByteString::from_static("/search?q=1");
        let path = target.slice_ref(&target[..7]);
        let info = info(target.clone(), &path);
        assert!(matches!(info.path, PathOf::Within(0, 7)));
        assert_eq!(info.path(), Some("/search"));
        assert_eq!(info.target(), Some("/search?q=1"));
    }

    /// Notes whether `on_complete` saw the response's `X-A` field.
    struct SeesHeaders(Hooks, std::sync::Mutex<Option<bool>>);

    impl Middleware for SeesHeaders {
        fn on_complete(&self, ex: &Exchange<'_>) {
            *self.1.lock().unwrap() = Some(ex.headers.contains_key("x-a"));
        }
        fn hooks(&self) -> Hooks {
            self.0
        }
    }

    fn headers_seen(hooks: Hooks) -> bool {
        let layer = Arc::new(SeesHeaders(hooks, Default::default()));
        let shared: Arc<dyn Middleware> = layer.clone();
        let target = ByteString::from_static("/");
        let info = info(target.clone(), &target);
        let record = Box::new(Layered::new(info, Layers::owned(vec![shared])));
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        record
            .answered(StatusCode::OK, Some(Box::new(headers)), 10)
            .complete(true, End::Completed, Instant::now());
        let seen = layer.1.lock().unwrap().expect("on_complete ran");
        seen
    }

    #[test]
    fn response_headers_are_kept_only_for_a_layer_that_wants_them() {
        assert!(headers_seen(Hooks::ALL));
        assert!(headers_seen(Hooks::ON_COMPLETE | Hooks::RESPONSE_HEADERS));
        assert!(!headers_seen(Hooks::ON_COMPLETE));
    }

    #[test]
    fn a_path_elsewhere_is_kept_as_is() {
        let target = ByteString::from_static("http://example.com/a?b");
        let path = ByteString::from("/a".to_owned());
        let info = info(target, &path);
        assert!(matches!(info.path, PathOf::Own(_)));
        assert_eq!(info.path(), Some("/a"));
    }
}
