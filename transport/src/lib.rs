//! The transport layer of pistachio: a TCP listener, an accept thread, and
//! per-worker plaintext and TLS peers (Pistache's `Tcp::Listener` and
//! `Tcp::Transport`), with the OpenSSL error-queue handling done right.
//!
//! # How it works
//!
//! An accept thread hands each accepted socket to a worker, round-robin,
//! through the worker's mailbox. The worker owns the connection for its whole
//! life: it creates the peer's `SSL*` on its own thread, drives the TLS
//! handshake by readiness (never blocking; bounded by a handshake timeout),
//! and calls the connection's [`Protocol`] with the bytes it reads.
//!
//! Readiness is edge-triggered, so the transport keeps calling `SSL_read`
//! until `WANT_READ`: bytes already inside OpenSSL make no new edge.
//!
//! # The TLS contract
//!
//! Every `SSL_do_handshake`, `SSL_read`, `SSL_write` and `SSL_shutdown` goes
//! through one choke point that empties the thread's OpenSSL error queue
//! first, classifies a failure with `SSL_get_error` and the queue's first
//! entry (the table is in `docs/tls-error-queue.md`), and drains the queue
//! before returning. A client that drops TCP without close_notify
//! therefore closes only its own
//! connection, and never poisons the next call on the same worker (the bug
//! behind Pistache issue #1309). Debug builds assert that the queue is empty
//! whenever control leaves the transport.
//!
//! # Example
//!
//! An echo server over plaintext TCP:
//!
//! ```
//! use pistachio_transport::{Conn, Listener, Protocol, Server, ServerConfig};
//! use std::io::{Read, Write};
//!
//! struct Echo;
//!
//! impl Protocol for Echo {
//!     type Message = ();
//!     fn on_input(&mut self, conn: &mut Conn<'_, ()>, data: &[u8]) {
//!         conn.write(data);
//!     }
//!     fn on_message(&mut self, _: &mut Conn<'_, ()>, _: ()) {}
//! }
//!
//! let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), Default::default())?;
//! let addr = listener.local_addr();
//! let mut server = Server::start(listener, ServerConfig::default(), |_| Echo)?;
//!
//! let mut client = std::net::TcpStream::connect(addr)?;
//! client.write_all(b"ping")?;
//! let mut reply = [0; 4];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"ping");
//! server.shutdown(); // stops accepting, closes peers, joins every thread
//! # Ok::<(), std::io::Error>(())
//! ```

#![deny(unsafe_code)]

// The HTTP layer takes its response buffers from this per-thread pool, the
// one the transport gives sent buffers back to; not an API for users.
mod accept;
mod activation;
#[doc(hidden)]
pub mod buffers;
mod classify;
mod close;
mod conn;
mod listener;
mod msg;
mod peer;
mod sniff;
mod socket;
mod stats;
#[allow(unsafe_code)]
mod sys;
mod tls;
mod worker;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pistachio_reactor::Reactor;

pub use activation::{systemd_listeners, InheritedListener, SD_LISTEN_FDS_START};
pub use close::{CloseReason, TlsFailure};
pub use conn::{Conn, PeerHandle, Protocol};
pub use listener::{Listener, ListenerOptions};
pub use peer::{PeerInfo, TlsInfo};
pub use socket::UNIX_PEER_ADDR;
pub use stats::{HandshakeFailure, TransportSnapshot, TransportStats};
pub use tls::{
    ClientCerts, SelfSigned, TlsConfig, TlsConfigBuilder, TlsError, TlsReloader, TlsVersion,
};

pub use openssl;

use accept::{AcceptThread, Admission};
use msg::WorkerMsg;
use worker::{Worker, WorkerConfig};

/// Settings of a [`Server`]. Start from [`ServerConfig::default`] and set
/// the fields you need (new fields may be added in minor releases).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Number of worker threads (event loops). Default: the number of CPUs.
    pub threads: usize,
    /// Serve TLS with this configuration; `None` (default) for plaintext.
    pub tls: Option<TlsConfig>,
    /// How long a client may take to complete the TLS handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// After a graceful close, how long to keep draining the peer's input
    /// before dropping the socket. Default 2 s.
    pub linger_timeout: Duration,
    /// Most TLS handshakes in progress per worker; connections beyond it
    /// are closed at once, so a flood of slow or silent TLS clients cannot
    /// starve established connections. Default 256.
    pub max_handshakes: usize,
    /// Give every worker its own listening socket on the same address
    /// (`SO_REUSEPORT`; the listener must be bound with `reuse_port`), so
    /// the kernel spreads new connections over the workers and accepting
    /// scales with them, instead of one accept thread handing connections
    /// out round-robin. Default off.
    pub per_worker_listeners: bool,
    /// Most connections open at once, over all workers; beyond it, newly
    /// accepted connections are closed at once. Default: no limit.
    pub max_connections: Option<usize>,
    /// Longest a graceful close may take before the connection is dropped
    /// (a peer that stops reading cannot keep it open). Default 30 s.
    pub close_timeout: Duration,
    /// Worker threads are named `{prefix}{i}`. Default `pistachio-w`.
    pub thread_name_prefix: String,
    /// Where the server counts its connections and handshakes (see
    /// [`Server::stats`]). Default: fresh counters.
    pub stats: TransportStats,
    /// In a graceful shutdown, how long a connection keeps being served
    /// before it is told to drain ([`Protocol::on_drain`]): at its next
    /// input, or when this runs out, whichever comes first. A client that
    /// sends a request on a keep-alive connection just as the shutdown
    /// begins then gets an answer (the HTTP layer's says
    /// `Connection: close`) instead of finding the connection closed.
    /// Default zero: every connection is told at once.
    pub drain_grace: Duration,
    /// Offer `h2` by ALPN, before `http/1.1` and `http/1.0`, on TLS
    /// connections (for a protocol that speaks HTTP/2; default off).
    /// The negotiated protocol is in [`TlsInfo::alpn`].
    pub offer_h2: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            tls: None,
            handshake_timeout: Duration::from_secs(10),
            linger_timeout: Duration::from_secs(2),
            close_timeout: Duration::from_secs(30),
            max_handshakes: 256,
            per_worker_listeners: false,
            max_connections: None,
            thread_name_prefix: "pistachio-w".to_owned(),
            stats: TransportStats::new(),
            drain_grace: Duration::ZERO,
            offer_h2: false,
        }
    }
}

/// What a graceful shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections that were open when the shutdown began and closed on
    /// their own before the deadline: they finished what they were doing
    /// (idle keep-alive connections, and connections still in their TLS
    /// handshake, close at once and count here).
    pub connections_drained: usize,
    /// Connections still open at the deadline, closed then (their
    /// in-flight work lost). 0 means everything finished in time.
    pub connections_cut: usize,
    /// How long the shutdown took.
    pub elapsed: Duration,
}

/// A running server: the accept thread and the workers.
///
/// Dropping it is the same as calling [`Server::shutdown`].
#[must_use = "dropping the server shuts it down"]
pub struct Server<M: Send + 'static> {
    accept: Option<AcceptThread>,
    reactor: Reactor<WorkerMsg<M>>,
    local_addr: SocketAddr,
    tls: Option<Arc<tls::TlsSlot>>,
    live: Arc<AtomicUsize>,
    stats: TransportStats,
    drain_grace: Duration,
}

impl<M: Send + 'static> fmt::Debug for Server<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("threads", &self.reactor.threads())
            .field("accepting", &self.accept.is_some())
            .finish()
    }
}

impl<M: Send + 'static> Server<M> {
    /// Starts the workers and the accept thread on a bound listener.
    /// `factory` makes each connection's protocol, on its worker.
    pub fn start<P, F>(listener: Listener, config: ServerConfig, factory: F) -> io::Result<Self>
    where
        P: Protocol<Message = M>,
        F: Fn(&PeerInfo) -> P + Send + Sync + 'static,
    {
        let local_addr = listener.local_addr();
        let factory: Arc<worker::Factory<P>> = Arc::new(factory);
        let tls = config.tls.clone().map(|c| Arc::new(tls::TlsSlot::new(c)));
        let live = Arc::new(AtomicUsize::new(0));
        let admission = Arc::new(Admission {
            no_delay: listener.options().no_delay,
            live: Arc::clone(&live),
            max_connections: config.max_connections,
        });
        let worker_config = Arc::new(WorkerConfig {
            admission: Arc::clone(&admission),
            tls: tls.clone(),
            max_handshakes: config.max_handshakes.max(1),
            handshake_timeout: config.handshake_timeout,
            linger_timeout: config.linger_timeout,
            close_timeout: config.close_timeout,
            stats: config.stats.clone(),
            offer_h2: config.offer_h2,
        });
        let reactor = Reactor::builder()
            .threads(config.threads)
            .name_prefix(config.thread_name_prefix.clone())
            .spawn(move |_| Worker::new(Arc::clone(&factory), Arc::clone(&worker_config)))?;
        let accept = if config.per_worker_listeners {
            if !listener.options().reuse_port {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "per-worker listeners need a listener bound with reuse_port",
                ));
            }
            let mut listeners = vec![listener];
            for _ in 1..reactor.threads() {
                listeners.push(listeners[0].sibling()?);
            }
            for (mailbox, listener) in reactor.mailboxes().iter().zip(listeners) {
                if mailbox
                    .post(WorkerMsg::Listen(listener.into_mio()))
                    .is_err()
                {
                    return Err(io::Error::other("a worker stopped during start-up"));
                }
            }
            None
        } else {
            Some(AcceptThread::spawn(
                listener,
                reactor.mailboxes().to_vec(),
                admission,
            )?)
        };
        Ok(Server {
            accept,
            reactor,
            local_addr,
            tls,
            live,
            stats: config.stats,
            drain_grace: config.drain_grace,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.reactor.threads()
    }

    /// Connections open right now (accepted and not yet closed).
    pub fn connections(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// The counters of this server's connections and TLS handshakes (the
    /// handle of [`ServerConfig::stats`]).
    pub fn stats(&self) -> TransportStats {
        self.stats.clone()
    }

    /// A handle to replace the TLS configuration while serving; `None` for
    /// a plaintext server.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.tls.as_ref().map(|slot| TlsReloader {
            slot: Arc::clone(slot),
        })
    }

    /// Shuts down gracefully: stops accepting (the listening socket is
    /// closed, after the connections already in its backlog are taken),
    /// lets every connection finish what it is doing (for HTTP: answers the
    /// requests in flight, the last with `Connection: close`; idle
    /// keep-alive connections close at once, or at their next request or
    /// the end of [`ServerConfig::drain_grace`]), sends TLS close_notify,
    /// and returns once all workers have exited. Connections still open
    /// after `deadline` are cut, and counted in the report.
    pub fn shutdown_graceful(&mut self, deadline: Duration) -> ShutdownReport {
        let started = std::time::Instant::now();
        if let Some(mut accept) = self.accept.take() {
            accept.stop();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let mut draining = 0;
        for mailbox in self.reactor.mailboxes() {
            let msg = WorkerMsg::Drain {
                deadline: started + deadline,
                grace: self.drain_grace.min(deadline),
                report: tx.clone(),
            };
            if mailbox.post(msg).is_ok() {
                draining += 1;
            }
        }
        drop(tx);
        let (mut open, mut cut) = (0, 0);
        for _ in 0..draining {
            // Every worker reports by its deadline (plus scheduling slack).
            match rx.recv_timeout(deadline + Duration::from_secs(5)) {
                Ok(tally) => {
                    open += tally.open;
                    cut += tally.cut;
                }
                Err(_) => break,
            }
        }
        self.reactor.shutdown();
        ShutdownReport {
            connections_drained: open - cut,
            connections_cut: cut,
            elapsed: started.elapsed(),
        }
    }

    /// Stops accepting (the listening socket is closed), closes every
    /// connection (flushing what it can and sending TLS close_notify), and
    /// returns once the accept thread and all workers have exited.
    /// Idempotent.
    pub fn shutdown(&mut self) {
        if let Some(mut accept) = self.accept.take() {
            accept.stop();
        }
        self.reactor.shutdown();
    }
}

impl<M: Send + 'static> Drop for Server<M> {
    fn drop(&mut self) {
        self.shutdown();
    }
}
