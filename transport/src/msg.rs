//! What a worker's mailbox carries: new connections from the accept
//! thread, messages for one connection from any thread, the worker's own
//! listener, and the graceful-shutdown order.

use std::net::SocketAddr;
use std::time::Instant;

use crate::listener::MioListener;
use crate::socket::Socket;

/// A worker's mailbox traffic.
pub(crate) enum WorkerMsg<M> {
    /// A connection accepted for this worker.
    Accept(Socket, SocketAddr),
    /// A message for one connection (from [`crate::PeerHandle`]).
    Peer {
        token: usize,
        generation: u64,
        msg: M,
    },
    /// This worker's own listening socket (per-worker listeners).
    Listen(MioListener),
    /// Graceful shutdown: let connections finish, cut the rest at
    /// `deadline`, then report how many finished and how many were cut.
    /// Each connection is told to drain at its next input or after
    /// `grace`, whichever comes first (at once if `grace` is zero).
    Drain {
        deadline: Instant,
        grace: std::time::Duration,
        report: std::sync::mpsc::Sender<DrainTally>,
    },
}

/// One worker's part of a graceful shutdown's report.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DrainTally {
    /// Connections open when the drain began.
    pub(crate) open: usize,
    /// Of those, the ones still open at the deadline, closed then.
    pub(crate) cut: usize,
}
