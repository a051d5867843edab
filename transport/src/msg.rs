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
    /// `deadline`, then report how many were cut.
    Drain {
        deadline: Instant,
        report: std::sync::mpsc::Sender<usize>,
    },
}
