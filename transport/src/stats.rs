//! [`TransportStats`]: counters of a server's connections and TLS
//! handshakes, for metrics.
//!
//! Each figure is one relaxed atomic add at the event it counts (an
//! accepted or closed connection, a finished or failed handshake, an
//! OpenSSL error-queue entry drained). The byte counters, bumped at every
//! read and write, are cheaper still: each worker has a shard of its own,
//! on a cache line of its own, that only its thread writes, so a count is
//! a plain load and store (no locked instruction, no contention), and any
//! thread may read it.

use std::fmt;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::close::CloseReason;

/// Entries removed from OpenSSL error queues by the transport, in this
/// process (the queues are per thread, the count is for all of them).
static ERROR_QUEUE_DRAINED: AtomicU64 = AtomicU64::new(0);

/// Notes one error-queue entry drained (called by the choke point).
pub(crate) fn note_error_queue_drained() {
    ERROR_QUEUE_DRAINED.fetch_add(1, Ordering::Relaxed);
}

/// Why a TLS handshake did not finish (the label of
/// [`TransportSnapshot::handshake_failures`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// The client did not finish within the handshake timeout.
    Timeout,
    /// A TLS protocol error (OpenSSL refused what the client sent:
    /// no shared cipher or version, a bad certificate, garbage).
    Protocol,
    /// The client closed the connection (with or without TLS
    /// close_notify) before the handshake finished.
    PeerClosed,
    /// A socket error (e.g. connection reset).
    Socket,
    /// A plaintext HTTP request on the TLS port (answered `400`).
    PlainHttp,
    /// Refused at once: the worker had `max_handshakes` in progress.
    Overload,
    /// The server shut down during the handshake.
    Shutdown,
}

impl HandshakeFailure {
    /// Every reason, in the order of [`TransportSnapshot::handshake_failures`].
    pub const ALL: [HandshakeFailure; 7] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::Protocol,
        HandshakeFailure::PeerClosed,
        HandshakeFailure::Socket,
        HandshakeFailure::PlainHttp,
        HandshakeFailure::Overload,
        HandshakeFailure::Shutdown,
    ];

    /// A short `snake_case` name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::PeerClosed => "peer_closed",
            HandshakeFailure::Socket => "socket",
            HandshakeFailure::PlainHttp => "plain_http",
            HandshakeFailure::Overload => "overload",
            HandshakeFailure::Shutdown => "shutdown",
        }
    }

    /// The reason a connection closed during its handshake stands for.
    pub(crate) fn of(reason: &CloseReason) -> HandshakeFailure {
        match reason {
            CloseReason::HandshakeTimeout => HandshakeFailure::Timeout,
            CloseReason::Tls(_) => HandshakeFailure::Protocol,
            CloseReason::Socket(_) => HandshakeFailure::Socket,
            CloseReason::Shutdown => HandshakeFailure::Shutdown,
            CloseReason::Closed | CloseReason::Aborted | CloseReason::PeerClosedWithoutNotify => {
                HandshakeFailure::PeerClosed
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    closed: AtomicU64,
    handshakes: AtomicU64,
    handshake_failures: [AtomicU64; HandshakeFailure::ALL.len()],
    /// The byte counters: a shard per live worker, and the totals of
    /// workers that ended.
    io: Mutex<IoShards>,
}

#[derive(Debug, Default)]
struct IoShards {
    live: Vec<Arc<IoShard>>,
    /// Bytes received and sent by workers whose shards were retired.
    retired: (u64, u64),
}

impl IoShards {
    /// Folds the shards nobody counts into any more (their worker and its
    /// connections are gone) into the retired totals, so that servers
    /// started and stopped on one handle do not grow the list.
    fn retire_unused(&mut self) {
        let retired = &mut self.retired;
        self.live.retain(|shard| {
            if Arc::strong_count(shard) > 1 {
                return true;
            }
            // The last writer's clone was dropped with a release decrement
            // that the count above read: this fence orders its last counts
            // before the reads below.
            fence(Ordering::Acquire);
            retired.0 += shard.received.load(Ordering::Relaxed);
            retired.1 += shard.sent.load(Ordering::Relaxed);
            false
        });
    }

    /// Bytes received and sent, over live and retired shards.
    fn totals(&self) -> (u64, u64) {
        self.live.iter().fold(self.retired, |(r, s), shard| {
            (
                r + shard.received.load(Ordering::Relaxed),
                s + shard.sent.load(Ordering::Relaxed),
            )
        })
    }
}

/// The byte counters of one worker, alone on their cache line(s).
#[derive(Debug, Default)]
#[repr(align(128))]
struct IoShard {
    received: AtomicU64,
    sent: AtomicU64,
}

/// Where a worker's connections count the bytes they read and write: the
/// worker's own shard of a [`TransportStats`]. Made once per worker by
/// [`TransportStats::worker_io`]; the clones its connections hold stay on
/// its thread, the shard's only writer.
#[derive(Debug, Clone)]
pub(crate) struct IoCounter(Arc<IoShard>);

impl IoCounter {
    pub(crate) fn received(&self, n: usize) {
        bump(&self.0.received, n);
    }

    pub(crate) fn sent(&self, n: usize) {
        bump(&self.0.sent, n);
    }
}

/// Adds `n` to a counter that only this thread writes: a load and a store,
/// not a locked read-modify-write (two fewer per request served). Readers
/// on other threads see the old or the new total, never a torn one.
fn bump(counter: &AtomicU64, n: usize) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n as u64),
        Ordering::Relaxed,
    );
}

/// The live counters of one server's transport; cheap to clone (all
/// clones count into, and read, the same figures).
///
/// A server counts into the handle of its
/// [`ServerConfig::stats`](crate::ServerConfig::stats) (a fresh one by
/// default); [`Server::stats`](crate::Server::stats) hands it out, and
/// [`TransportStats::snapshot`] reads it at any time, from any thread.
///
/// ```
/// use pistachio_transport::{Listener, Server, ServerConfig, TransportStats};
///
/// struct Nothing;
/// impl pistachio_transport::Protocol for Nothing {
///     type Message = ();
///     fn on_input(&mut self, _: &mut pistachio_transport::Conn<'_, ()>, _: &[u8]) {}
///     fn on_message(&mut self, _: &mut pistachio_transport::Conn<'_, ()>, _: ()) {}
/// }
///
/// let stats = TransportStats::new();
/// let mut config = ServerConfig::default();
/// config.threads = 1;
/// config.stats = stats.clone();
/// let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), Default::default())?;
/// let addr = listener.local_addr();
/// let mut server = Server::start(listener, config, |_| Nothing)?;
/// drop(std::net::TcpStream::connect(addr)?);
/// # let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
/// # while stats.snapshot().connections_accepted == 0 && std::time::Instant::now() < deadline {
/// #     std::thread::sleep(std::time::Duration::from_millis(5));
/// # }
/// assert_eq!(stats.snapshot().connections_accepted, 1);
/// server.shutdown();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct TransportStats(Arc<Counters>);

impl fmt::Debug for TransportStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

impl TransportStats {
    /// Counters at zero.
    pub fn new() -> TransportStats {
        TransportStats::default()
    }

    /// The figures now. Each is read on its own (only the list of byte
    /// counter shards is locked, against a worker starting): a snapshot
    /// taken while connections come and go may be off by the events of
    /// that instant.
    pub fn snapshot(&self) -> TransportSnapshot {
        let c = &self.0;
        let accepted = c.accepted.load(Ordering::Relaxed);
        let closed = c.closed.load(Ordering::Relaxed);
        let mut handshake_failures = [(HandshakeFailure::Timeout, 0); 7];
        for (slot, reason) in handshake_failures.iter_mut().zip(HandshakeFailure::ALL) {
            *slot = (
                reason,
                c.handshake_failures[reason.index()].load(Ordering::Relaxed),
            );
        }
        let (received, sent) = c.io.lock().unwrap_or_else(PoisonError::into_inner).totals();
        TransportSnapshot {
            bytes_received: received,
            bytes_sent: sent,
            connections_accepted: accepted,
            connections_open: accepted.saturating_sub(closed),
            tls_handshakes: c.handshakes.load(Ordering::Relaxed),
            handshake_failures,
            error_queue_drained: ERROR_QUEUE_DRAINED.load(Ordering::Relaxed),
        }
    }

    /// A new shard of byte counters, for one worker (called once, as it
    /// starts): only the thread it is made for may count into it.
    pub(crate) fn worker_io(&self) -> IoCounter {
        let shard = Arc::new(IoShard::default());
        let mut shards = self.0.io.lock().unwrap_or_else(PoisonError::into_inner);
        shards.retire_unused();
        shards.live.push(Arc::clone(&shard));
        IoCounter(shard)
    }

    pub(crate) fn accepted(&self) {
        self.0.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self) {
        self.0.closed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake_done(&self) {
        self.0.handshakes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake_failed(&self, why: HandshakeFailure) {
        self.0.handshake_failures[why.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// The figures of a [`TransportStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportSnapshot {
    /// Bytes read from connections and handed to their protocol (for TLS,
    /// the decrypted application data).
    pub bytes_received: u64,
    /// Bytes of the protocol's output written to connections (for TLS,
    /// before encryption), `sendfile(2)` included.
    pub bytes_sent: u64,
    /// Connections that became peers (TLS ones count from the start of
    /// their handshake); refused ones do not count.
    pub connections_accepted: u64,
    /// Connections open now (accepted and not yet closed).
    pub connections_open: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS handshakes that did not complete, by reason (every reason of
    /// [`HandshakeFailure::ALL`], in that order).
    pub handshake_failures: [(HandshakeFailure, u64); 7],
    /// Entries the transport removed from OpenSSL error queues, in this
    /// whole process (see `docs/tls-error-queue.md`). Each is an error
    /// OpenSSL reported for one connection and that could otherwise have
    /// poisoned the next SSL call on the same thread.
    pub error_queue_drained: u64,
}

impl TransportSnapshot {
    /// The failed handshakes for `reason`.
    pub fn handshake_failures(&self, reason: HandshakeFailure) -> u64 {
        self.handshake_failures[reason.index()].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_snapshots() {
        let stats = TransportStats::new();
        let other = stats.clone();
        stats.accepted();
        stats.accepted();
        other.closed();
        stats.handshake_done();
        stats.handshake_failed(HandshakeFailure::Timeout);
        stats.handshake_failed(HandshakeFailure::of(&CloseReason::PeerClosedWithoutNotify));
        let worker = stats.worker_io();
        worker.received(10);
        worker.clone().received(5);
        other.worker_io().sent(7); // a worker that ends at once
        let s = other.snapshot();
        assert_eq!((s.bytes_received, s.bytes_sent), (15, 7));
        assert_eq!((s.connections_accepted, s.connections_open), (2, 1));
        assert_eq!(s.tls_handshakes, 1);
        assert_eq!(s.handshake_failures(HandshakeFailure::Timeout), 1);
        assert_eq!(s.handshake_failures(HandshakeFailure::PeerClosed), 1);
        assert_eq!(s.handshake_failures(HandshakeFailure::Protocol), 0);
        // The ended worker's shard is folded into the totals when the next
        // worker starts; nothing is lost, and only live shards are kept.
        let next = stats.worker_io();
        next.sent(1);
        let s = stats.snapshot();
        assert_eq!((s.bytes_received, s.bytes_sent), (15, 8));
        assert_eq!(stats.0.io.lock().unwrap().live.len(), 2);
        drop((worker, next));
        let _third = stats.worker_io();
        assert_eq!(stats.0.io.lock().unwrap().live.len(), 1);
        let s = other.snapshot();
        assert_eq!((s.bytes_received, s.bytes_sent), (15, 8));
        for (i, reason) in HandshakeFailure::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
            assert_eq!(s.handshake_failures[i].0, *reason);
        }
    }
}
