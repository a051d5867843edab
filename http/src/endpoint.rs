//! [`Endpoint`]: an HTTP server on one address (Pistache's `Http::Endpoint`).

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use pistachio_transport::{
    Listener, ListenerOptions, Server, ServerConfig, ShutdownReport, TlsConfig, TransportStats,
};

use crate::conn::Settings;
use crate::h2::{Http2Counters, Http2Limits, Http2Stats, Shared as H2Shared};
use crate::middleware::{EndpointLayers, SharedLayers};
use crate::parser::Limits;
use crate::proto::Proto;
use crate::writer::HttpMsg;
use crate::{Handler, Middleware};

/// Endpoint options (Pistache's `Http::Endpoint::Options`), builder style.
///
/// The timeouts, each a bound on one stage of a connection's life:
///
/// | option | from | until | then |
/// |---|---|---|---|
/// | [`handshake_timeout`](Options::handshake_timeout) | accept | TLS handshake done | closed, no answer |
/// | [`header_timeout`](Options::header_timeout) | connect (first request), first byte (later ones) | its head is complete | `408`, closed |
/// | [`body_timeout`](Options::body_timeout) | head complete | buffered body complete | `408`, closed |
/// | [`keepalive_timeout`](Options::keepalive_timeout) | last input, no request in progress | next request starts | closed, no answer |
/// | [`ResponseWriter::timeout_after`](crate::ResponseWriter::timeout_after) | the call | the response starts | [`Handler::on_timeout`](crate::Handler::on_timeout) answers |
/// | [`close_timeout`](Options::close_timeout) | the close begins | last bytes sent, close_notify | cut |
/// | [`shutdown_timeout`](Options::shutdown_timeout) | [`Endpoint::serve`] begins its shutdown | every connection closed | the rest cut |
///
/// While a handler works on a request, none of the request timers runs.
#[must_use]
#[derive(Debug, Clone)]
pub struct Options {
    threads: usize,
    tls: Option<TlsConfig>,
    handshake_timeout: Duration,
    header_timeout: Duration,
    body_timeout: Duration,
    keepalive_timeout: Duration,
    close_timeout: Duration,
    max_response_size: usize,
    max_stream_buffer: usize,
    stream_write_timeout: Duration,
    max_connections: Option<usize>,
    max_handshakes: usize,
    shutdown_timeout: Duration,
    drain_delay: Duration,
    drain_grace: Duration,
    per_worker_listeners: bool,
    limits: Limits,
    listener: ListenerOptions,
    thread_name_prefix: String,
    middleware: EndpointLayers,
    http2: bool,
    http2_limits: Http2Limits,
}

impl Default for Options {
    fn default() -> Self {
        let transport = ServerConfig::default();
        Options {
            threads: transport.threads,
            tls: None,
            handshake_timeout: transport.handshake_timeout,
            header_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(60),
            close_timeout: transport.close_timeout,
            max_response_size: usize::MAX,
            max_stream_buffer: 256 * 1024,
            stream_write_timeout: Duration::from_secs(60),
            max_connections: transport.max_connections,
            max_handshakes: transport.max_handshakes,
            shutdown_timeout: Duration::from_secs(10),
            drain_delay: Duration::ZERO,
            drain_grace: transport.drain_grace,
            per_worker_listeners: false,
            limits: Limits::default(),
            listener: ListenerOptions::default(),
            thread_name_prefix: transport.thread_name_prefix,
            middleware: EndpointLayers::default(),
            http2: true,
            http2_limits: Http2Limits::default(),
        }
    }
}

impl Options {
    /// Number of worker threads (default: the number of CPUs).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Serve HTTPS with this TLS configuration.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How long a client may take to finish the TLS handshake, counted
    /// from the accept; past it the connection is closed without an
    /// answer (default 10 s). Plaintext connections have no handshake.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// How long a client may take to send a complete request head (request
    /// line and header fields): the first one counted from the connection
    /// (after the TLS handshake), later ones from their first byte. Past it
    /// the server answers `408` and closes (default 60 s). One deadline per
    /// head: bytes trickling in do not extend it. The body has its own,
    /// [`Options::body_timeout`].
    pub fn header_timeout(mut self, d: Duration) -> Self {
        self.header_timeout = d;
        self
    }

    /// How long a client may take to send a request body once the head is
    /// in (default 60 s).
    ///
    /// * A buffered body (the default [`BodyMode`](crate::BodyMode)) must
    ///   be complete within it, counted from the end of the head (for
    ///   `Expect: 100-continue`, from the head too); past it the server
    ///   answers `408` and closes.
    /// * A streamed body ([`BodyMode::Streamed`](crate::BodyMode::Streamed))
    ///   is in the handler's hands: each [`BodyStream`](crate::BodyStream)
    ///   read waits at most this long for the next bytes and then fails
    ///   with [`std::io::ErrorKind::TimedOut`]; the handler answers.
    pub fn body_timeout(mut self, d: Duration) -> Self {
        self.body_timeout = d;
        self
    }

    /// How long a connection with nothing to do (no request in progress, no
    /// answer due) stays open waiting for the next request, counted from
    /// its last input or its last answer, whichever came later; then it is
    /// closed without an answer (default 60 s).
    pub fn keepalive_timeout(mut self, d: Duration) -> Self {
        self.keepalive_timeout = d;
        self
    }

    /// Longest a graceful close may take, from the moment the server decides
    /// to close (after a `Connection: close` answer, an error, or in a
    /// shutdown) until the last bytes and the TLS close_notify are out: a
    /// client that stops reading its last response is cut after this
    /// (default 30 s).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }

    /// Largest request body accepted; larger gets `413` (default 4 MiB).
    /// A streamed body ([`BodyMode::Streamed`](crate::BodyMode::Streamed))
    /// has no limit, and
    /// [`BodyMode::StreamedUpTo`](crate::BodyMode::StreamedUpTo) brings its
    /// own in place of this one.
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.limits.max_body_size = bytes;
        self
    }

    /// Largest response body a handler may send (Pistache's
    /// `maxResponseSize`); a larger one is replaced by `500`, a stream that
    /// grows past it is cut off. Files sent with `serve_file` are exempt.
    /// Default: no limit.
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = bytes;
        self
    }

    /// Most bytes a [`ResponseStream`](crate::ResponseStream) may have
    /// handed to its connection and not yet seen written to the socket
    /// (beyond the transport's own 256 KiB queue). A producer that gets
    /// ahead of a slow client waits for room
    /// ([`ResponseStream::send_chunk`](crate::ResponseStream::send_chunk))
    /// or is told to come back later
    /// ([`ResponseStream::try_write`](crate::ResponseStream::try_write)).
    /// Default: 256 KiB.
    pub fn max_stream_buffer(mut self, bytes: usize) -> Self {
        self.max_stream_buffer = bytes.max(1);
        self
    }

    /// How long a blocking write to a
    /// [`ResponseStream`](crate::ResponseStream) waits for room before it
    /// fails with [`io::ErrorKind::TimedOut`]; a stream can change its own
    /// with [`ResponseStream::set_write_timeout`](crate::ResponseStream::set_write_timeout).
    /// Default: 60 s.
    pub fn stream_write_timeout(mut self, d: Duration) -> Self {
        self.stream_write_timeout = d;
        self
    }

    /// Most connections open at once; connections accepted beyond it are
    /// closed at once. Default: no limit.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// Most TLS handshakes in progress per worker; beyond it new
    /// connections are closed at once, so slow or silent TLS clients cannot
    /// starve the rest (default 256).
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.max_handshakes = n.max(1);
        self
    }

    /// One listening socket per worker on the same port (`SO_REUSEPORT`):
    /// the kernel spreads connections over the workers and accepting
    /// scales with them. Turns on `reuse_port`. Default off (one accept
    /// thread hands connections out round-robin).
    pub fn per_worker_listeners(mut self, on: bool) -> Self {
        self.per_worker_listeners = on;
        if on {
            self.listener.reuse_port = true;
        }
        self
    }

    /// How long [`Endpoint::serve`]'s graceful shutdown lets requests in
    /// flight finish before cutting them (default 10 s). Only `serve` uses
    /// it: [`Endpoint::shutdown_graceful`] takes its deadline as an
    /// argument.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// How long [`Endpoint::serve`] keeps serving as usual after a
    /// [`ShutdownHandle`] asks it to stop, before its graceful shutdown
    /// begins (default zero). During the delay
    /// [`ShutdownHandle::is_draining`] is already true, so a readiness
    /// route answers `503` and a load balancer that checks it (HAProxy's
    /// `option httpchk`, a Kubernetes readiness probe) stops sending new
    /// requests while the server still takes them. Set it a little longer
    /// than the balancer's check interval × its fall count.
    pub fn drain_delay(mut self, d: Duration) -> Self {
        self.drain_delay = d;
        self
    }

    /// In a graceful shutdown, how long a keep-alive connection is still
    /// served once the listener is closed (default zero: idle connections
    /// close at once). A request that arrives on it in that time is
    /// answered, with `Connection: close`, and the connection then closes;
    /// one that stays quiet is closed when the grace ends. A client (or
    /// proxy) that sends on a pooled connection just as the shutdown
    /// begins then gets its answer instead of a closed connection. Counts
    /// against the shutdown's deadline.
    pub fn drain_grace(mut self, d: Duration) -> Self {
        self.drain_grace = d;
        self
    }

    /// Largest request head (request line + headers); larger gets `431`
    /// (default 16 KiB).
    pub fn max_header_size(mut self, bytes: usize) -> Self {
        self.limits.max_head_size = bytes;
        self
    }

    /// Most header fields in a request; more gets `431` (default 100).
    pub fn max_headers(mut self, n: usize) -> Self {
        self.limits.max_headers = n;
        self
    }

    /// Socket options of the listener (Pistache's `Tcp::Options` flags).
    pub fn listener(mut self, options: ListenerOptions) -> Self {
        self.listener = options;
        self
    }

    /// Wraps every exchange of the endpoint in `middleware` (see
    /// [`Middleware`] for the hooks and their order). Called more than
    /// once, the first added is the outermost: its `on_head` runs first,
    /// its `on_response` and `on_complete` last. Endpoint-wide middleware
    /// wraps whatever the handler adds (a router's layers), and is the only
    /// middleware that sees the answers the HTTP layer makes itself
    /// (malformed requests, request timeouts). It wraps any handler, a
    /// closure given to [`Endpoint::serve`] as well as a router.
    ///
    /// ```
    /// use pistachio_http::{Exchange, Middleware, Options};
    ///
    /// struct AccessLog;
    /// impl Middleware for AccessLog {
    ///     fn on_complete(&self, ex: &Exchange<'_>) {
    ///         log::info!("{} {} {}", ex.request.peer_addr(), ex.status.as_u16(), ex.body_bytes);
    ///     }
    /// }
    /// let options = Options::default().middleware(AccessLog);
    /// # let _ = options;
    /// ```
    pub fn middleware(mut self, middleware: impl Middleware) -> Self {
        self.middleware.0.push(std::sync::Arc::new(middleware));
        self
    }

    /// Serves HTTP/2 as well (on by default): on TLS the server offers `h2`
    /// by ALPN before `http/1.1` and `http/1.0` (a client offering no ALPN
    /// gets HTTP/1.1); on plaintext a connection that opens with the
    /// HTTP/2 preface (h2c with prior knowledge) speaks HTTP/2. Handlers,
    /// middleware and writers are the same for both;
    /// [`Request::version`](crate::Request::version) tells them apart.
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }

    /// The HTTP/2 limits (see [`Http2Limits`] for each and its default).
    pub fn http2_limits(mut self, limits: Http2Limits) -> Self {
        self.http2_limits = limits;
        self
    }

    /// Worker threads are named `{prefix}{i}` (default `pistachio-w`).
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name_prefix = prefix.into();
        self
    }
}

#[derive(Debug, Default)]
struct StopSignal {
    stopped: Mutex<bool>,
    cond: Condvar,
    draining: AtomicBool,
}

/// Stops a serving [`Endpoint`] from any thread (e.g. a signal handler's),
/// and tells whether it is stopping.
#[must_use]
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<StopSignal>);

impl ShutdownHandle {
    /// Makes [`Endpoint::serve`] shut the endpoint down and return (after
    /// [`Options::drain_delay`], if set).
    pub fn shutdown(&self) {
        self.0.draining.store(true, Ordering::SeqCst);
        *self.0.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.0.cond.notify_all();
    }

    /// Whether the endpoint is on its way out: true from the moment a
    /// shutdown is asked for ([`ShutdownHandle::shutdown`],
    /// [`Endpoint::shutdown_graceful`], [`Endpoint::shutdown`]), through
    /// the drain delay and the graceful drain. A readiness route answers
    /// `503` when it is, so that load balancers stop sending new requests
    /// while the requests in flight finish:
    ///
    /// ```
    /// use pistachio_http::{Endpoint, Options, Request, ResponseWriter, StatusCode};
    ///
    /// let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(1))?;
    /// let stopping = endpoint.shutdown_handle();
    /// endpoint.serve_threaded(move |req: Request, resp: ResponseWriter| {
    ///     match req.path() {
    ///         "/healthz" => resp.send(StatusCode::OK, "ok"),
    ///         "/readyz" if stopping.is_draining() => {
    ///             resp.send(StatusCode::SERVICE_UNAVAILABLE, "draining")
    ///         }
    ///         "/readyz" => resp.send(StatusCode::OK, "ready"),
    ///         _ => resp.send(StatusCode::NOT_FOUND, ""),
    ///     }
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::SeqCst)
    }
}

/// An HTTP/1.1 (and HTTPS) server bound to one address.
///
/// ```no_run
/// use pistachio_http::{Endpoint, Options, Request, ResponseWriter, StatusCode};
///
/// let mut endpoint = Endpoint::bind("127.0.0.1:9080", Options::default().threads(2))?;
/// let report = endpoint.serve(|_req: Request, resp: ResponseWriter| {
///     resp.send(StatusCode::OK, "Hello, World!");
/// })?; // blocks until a ShutdownHandle is used
/// println!("{} connections cut at shutdown", report.connections_cut);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Endpoint {
    listener: Option<Listener>,
    local_addr: SocketAddr,
    options: Options,
    server: Option<Server<HttpMsg>>,
    /// The HTTP/2 side's limits and counters, while serving with it.
    http2: Option<Arc<H2Shared>>,
    /// The HTTP/2 counters, from bind on (shared with `http2` once serving).
    h2_counters: Http2Counters,
    stop: Arc<StopSignal>,
    stats: TransportStats,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addr", &self.local_addr)
            .field("serving", &self.server.is_some())
            .field("options", &self.options)
            .finish()
    }
}

impl Endpoint {
    /// Binds and listens on `addr` (the first address it resolves to).
    /// Port 0 picks a free port; see [`Endpoint::local_addr`].
    pub fn bind(addr: impl ToSocketAddrs, options: Options) -> io::Result<Endpoint> {
        let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
        })?;
        let listener = Listener::bind(addr, options.listener.clone())?;
        Ok(Endpoint::listening(listener, options))
    }

    /// Binds and listens on a Unix domain socket at `path` (for a reverse
    /// proxy on the same host). A stale socket file is replaced; the file
    /// is removed when the endpoint stops. `Request::peer_addr()` is then
    /// [`pistachio_transport::UNIX_PEER_ADDR`] (`0.0.0.0:0`). TLS works as
    /// over TCP; per-worker listeners do not apply.
    pub fn bind_unix(path: impl AsRef<std::path::Path>, options: Options) -> io::Result<Endpoint> {
        let listener = Listener::bind_unix(path, options.listener.clone())?;
        Ok(Endpoint::listening(listener, options))
    }

    /// Serves on a listener made elsewhere: one inherited from the service
    /// manager ([`pistachio_transport::systemd_listeners`]), or bound with
    /// [`Listener::bind`] or built with [`Listener::from_fd`]. The listener
    /// keeps its own socket options; [`Options::listener`] does not apply.
    pub fn with_listener(listener: Listener, options: Options) -> Endpoint {
        Endpoint::listening(listener, options)
    }

    /// Serves on the listening socket the service manager handed over
    /// (systemd socket activation, see
    /// [`pistachio_transport::systemd_listeners`]) if there is one, so that
    /// the socket, and the connections waiting in its backlog, outlive
    /// restarts of the process; otherwise binds `addr` as
    /// [`Endpoint::bind`] does. More than one inherited socket is an
    /// [`io::ErrorKind::InvalidInput`] error (take them with
    /// `systemd_listeners` and give each its own [`Endpoint::with_listener`]);
    /// so is an inherited descriptor that is not a listening stream socket.
    ///
    /// It reads and unsets the `LISTEN_*` variables: call it before
    /// spawning threads.
    pub fn bind_or_inherit(addr: impl ToSocketAddrs, options: Options) -> io::Result<Endpoint> {
        let mut inherited = pistachio_transport::systemd_listeners(&options.listener)?;
        match inherited.len() {
            0 => Endpoint::bind(addr, options),
            1 => {
                let listener = inherited.remove(0).listener;
                Ok(Endpoint::listening(listener, options))
            }
            n => {
                let names: Vec<&str> = inherited.iter().map(|l| l.name.as_str()).collect();
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the service manager passed {n} sockets ({}); an endpoint serves one",
                        names.join(", ")
                    ),
                ))
            }
        }
    }

    fn listening(listener: Listener, options: Options) -> Endpoint {
        Endpoint {
            local_addr: listener.local_addr(),
            listener: Some(listener),
            options,
            server: None,
            http2: None,
            h2_counters: Http2Counters::default(),
            stop: Arc::default(),
            stats: TransportStats::new(),
        }
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the endpoint serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.options.tls.is_some()
    }

    /// Starts serving on background threads and returns (Pistache's
    /// `serveThreaded`). Fails if already serving or shut down.
    pub fn serve_threaded(&mut self, handler: impl Handler) -> io::Result<()> {
        let listener = self
            .listener
            .take()
            .ok_or_else(|| io::Error::other("endpoint is already serving or was shut down"))?;
        let handler: Arc<dyn Handler> = Arc::new(handler);
        let settings = Arc::new(Settings {
            limits: self.options.limits,
            header_timeout: self.options.header_timeout,
            body_timeout: self.options.body_timeout,
            max_response_size: self.options.max_response_size,
            max_stream_buffer: self.options.max_stream_buffer,
            stream_write_timeout: self.options.stream_write_timeout,
            keepalive_timeout: self.options.keepalive_timeout,
            layered: !self.options.middleware.0.is_empty() || handler.layered(),
            handler_layered: handler.layered(),
            responds: handler.responds(),
            middleware: SharedLayers::new(self.options.middleware.0.clone()),
        });
        let mut config = ServerConfig::default();
        config.threads = self.options.threads;
        config.tls = self.options.tls.clone();
        config.handshake_timeout = self.options.handshake_timeout;
        config.close_timeout = self.options.close_timeout;
        config.max_connections = self.options.max_connections;
        config.max_handshakes = self.options.max_handshakes;
        config.per_worker_listeners = self.options.per_worker_listeners;
        config.thread_name_prefix = self.options.thread_name_prefix.clone();
        config.stats = self.stats.clone();
        config.drain_grace = self.options.drain_grace;
        let http2 = self.options.http2.then(|| {
            Arc::new(H2Shared {
                limits: self.options.http2_limits.clone(),
                counters: Arc::clone(&self.h2_counters.0),
            })
        });
        config.offer_h2 = http2.is_some();
        self.http2 = http2.clone();
        let server = Server::start(listener, config, move |info| {
            Proto::new(
                Arc::clone(&handler),
                Arc::clone(&settings),
                http2.clone(),
                info.peer_addr,
            )
        })?;
        self.server = Some(server);
        Ok(())
    }

    /// Serves until a [`ShutdownHandle`] is used, then (after
    /// [`Options::drain_delay`], serving as usual meanwhile) shuts down
    /// gracefully within [`Options::shutdown_timeout`] (see
    /// [`Endpoint::shutdown_graceful`]) and returns what that shutdown did
    /// (Pistache's `serve`): every connection open when it began was either
    /// drained (its requests in flight answered, then closed) or, still
    /// open at the deadline, cut and counted in
    /// [`ShutdownReport::connections_cut`] (the others are counted in
    /// [`ShutdownReport::connections_drained`]); it also says how long it
    /// took.
    /// A cut is logged at `warn`.
    pub fn serve(&mut self, handler: impl Handler) -> io::Result<ShutdownReport> {
        self.serve_threaded(handler)?;
        let mut stopped = self.stop.stopped.lock().unwrap_or_else(|p| p.into_inner());
        while !*stopped {
            stopped = self
                .stop
                .cond
                .wait(stopped)
                .unwrap_or_else(|p| p.into_inner());
        }
        drop(stopped);
        if !self.options.drain_delay.is_zero() {
            log::debug!(
                "draining: serving {:?} more before closing the listener",
                self.options.drain_delay
            );
            std::thread::sleep(self.options.drain_delay);
        }
        let report = self.shutdown_graceful(self.options.shutdown_timeout);
        if report.connections_cut > 0 {
            log::warn!(
                "graceful shutdown cut {} connections after {:?}",
                report.connections_cut,
                report.elapsed
            );
        }
        Ok(report)
    }

    /// Shuts down gracefully: stops accepting, answers every request in
    /// flight (the last one on each connection with `Connection: close`),
    /// closes idle keep-alive connections (at once, or at their next
    /// request or the end of [`Options::drain_grace`]), sends TLS
    /// close_notify, and returns once every server thread has exited. What
    /// is still open after `deadline` is cut and counted in the report.
    /// [`ShutdownHandle::is_draining`] is true from its start.
    pub fn shutdown_graceful(&mut self, deadline: Duration) -> ShutdownReport {
        self.stop.draining.store(true, Ordering::SeqCst);
        self.listener = None;
        let report = match self.server.take() {
            Some(mut server) => server.shutdown_graceful(deadline),
            None => ShutdownReport::default(),
        };
        ShutdownHandle(Arc::clone(&self.stop)).shutdown();
        report
    }

    /// A handle to replace the certificate (the whole [`TlsConfig`]) while
    /// serving: new connections get the new one, established ones keep
    /// theirs. `None` before serving or without TLS.
    #[must_use]
    pub fn tls_reloader(&self) -> Option<pistachio_transport::TlsReloader> {
        self.server.as_ref()?.tls_reloader()
    }

    /// The counters of this endpoint's connections and TLS handshakes
    /// (open connections, handshakes and their failures by reason,
    /// OpenSSL error-queue entries drained), for metrics. Available from
    /// [`Endpoint::bind`] on: hand it to a metrics registry before
    /// serving.
    pub fn transport_stats(&self) -> TransportStats {
        self.stats.clone()
    }

    /// Counters of the HTTP/2 connections since the endpoint started
    /// serving (all zero when it does not serve HTTP/2).
    pub fn http2_stats(&self) -> Http2Stats {
        self.h2_counters.snapshot()
    }

    /// The same counters as [`Endpoint::http2_stats`], live: a handle to
    /// give a metrics registry before serving (see
    /// `pistachio_rest::metrics::Metrics::watch_http2`).
    pub fn http2_counters(&self) -> Http2Counters {
        self.h2_counters.clone()
    }

    /// Connections open right now.
    pub fn connections(&self) -> usize {
        self.server.as_ref().map_or(0, |s| s.connections())
    }

    /// A handle that stops [`Endpoint::serve`] from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::clone(&self.stop))
    }

    /// Stops accepting, closes every connection, and returns once every
    /// server thread has exited. Idempotent; `Drop` calls it too.
    pub fn shutdown(&mut self) {
        self.stop.draining.store(true, Ordering::SeqCst);
        self.listener = None;
        if let Some(mut server) = self.server.take() {
            server.shutdown();
        }
        ShutdownHandle(Arc::clone(&self.stop)).shutdown();
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shutdown();
    }
}
