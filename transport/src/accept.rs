//! Accepting connections, in both accept modes: one accept thread that
//! hands each socket to a worker round-robin through its mailbox, or
//! (per-worker listeners) each worker accepting on its own `SO_REUSEPORT`
//! socket. Both go through [`accept_ready`], so both admit, refuse and
//! back off the same way.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::{debug, error, warn};
use mio::{Events, Interest, Poll, Token, Waker};
use pistachio_reactor::Mailbox;

use crate::listener::{Listener, MioListener};
use crate::msg::WorkerMsg;
use crate::socket::Socket;

/// How long to stop accepting after the process or system ran out of file
/// descriptors (or memory), instead of spinning on the same error
/// (edge-triggered: no new event would come while the backlog is full).
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Which connections the server takes, over all workers.
#[derive(Debug)]
pub(crate) struct Admission {
    /// `TCP_NODELAY` on accepted TCP connections.
    pub(crate) no_delay: bool,
    /// Connections open right now, over all workers.
    pub(crate) live: Arc<AtomicUsize>,
    /// Most connections open at once.
    pub(crate) max_connections: Option<usize>,
}

impl Admission {
    /// Counts `sock` in unless the server is full (then it is closed at
    /// once: the kernel would otherwise keep the client waiting in the
    /// backlog), and sets `TCP_NODELAY`.
    fn admit(&self, sock: &Socket, peer: SocketAddr) -> bool {
        if self
            .max_connections
            .is_some_and(|max| self.live.load(Ordering::SeqCst) >= max)
        {
            debug!("{peer}: refused, max_connections reached");
            return false;
        }
        self.live.fetch_add(1, Ordering::SeqCst);
        if let (true, Socket::Tcp(tcp)) = (self.no_delay, sock) {
            if let Err(e) = tcp.set_nodelay(true) {
                debug!("TCP_NODELAY on {peer}: {e}");
            }
        }
        true
    }

    /// A connection counted in by [`accept_ready`] is gone.
    pub(crate) fn release(&self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a burst of accepts ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptEnd {
    /// The backlog is empty: wait for the next readable edge.
    Drained,
    /// Out of descriptors or memory: accept again after [`ACCEPT_BACKOFF`].
    BackOff,
    /// The hand-off refused a connection: stop accepting.
    Stopped,
}

/// Accepts on `listener` until the backlog is empty, handing each admitted
/// socket to `hand_off` (which returns `false` to stop). Connections that
/// died in the backlog are skipped.
pub(crate) fn accept_ready(
    listener: &MioListener,
    admission: &Admission,
    mut hand_off: impl FnMut(Socket, SocketAddr) -> bool,
) -> AcceptEnd {
    loop {
        match listener.accept() {
            Ok((sock, peer)) => {
                if !admission.admit(&sock, peer) {
                    continue;
                }
                if !hand_off(sock, peer) {
                    return AcceptEnd::Stopped;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return AcceptEnd::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => match e.raw_os_error() {
                // The connection died in the queue: not our problem.
                Some(libc::ECONNABORTED) | Some(libc::EPROTO) | Some(libc::EPERM) => continue,
                Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS)
                | Some(libc::ENOMEM) => {
                    warn!("accept: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    return AcceptEnd::BackOff;
                }
                _ => {
                    error!("accept failed: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    return AcceptEnd::BackOff;
                }
            },
        }
    }
}

const LISTENER: Token = Token(0);
const STOP: Token = Token(1);

/// The running accept thread; [`AcceptThread::stop`] joins it.
#[derive(Debug)]
pub(crate) struct AcceptThread {
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl AcceptThread {
    pub(crate) fn spawn<M: Send + 'static>(
        listener: Listener,
        workers: Vec<Mailbox<WorkerMsg<M>>>,
        admission: Arc<Admission>,
    ) -> io::Result<AcceptThread> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), STOP)?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut mio_listener = listener.into_mio();
        poll.registry()
            .register(mio_listener.source(), LISTENER, Interest::READABLE)?;
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("pistachio-acc".into())
            .spawn(move || accept_loop(poll, mio_listener, workers, &admission, &stop2))?;
        Ok(AcceptThread {
            waker,
            thread: Some(thread),
            stop,
        })
    }

    /// Stops accepting, closes the listening socket and joins the thread.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!("accept thread panicked");
            }
        }
    }
}

impl Drop for AcceptThread {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop<M: Send + 'static>(
    mut poll: Poll,
    listener: MioListener,
    workers: Vec<Mailbox<WorkerMsg<M>>>,
    admission: &Admission,
    stop: &AtomicBool,
) {
    let mut events = Events::with_capacity(8);
    let mut next = 0usize;
    let mut backoff = false;
    loop {
        let timeout = backoff.then_some(ACCEPT_BACKOFF);
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            error!("accept thread: poll failed, no longer accepting: {e}");
            return;
        }
        let stopping = stop.load(Ordering::SeqCst);
        // Edge-triggered: accept until the backlog is empty (or until
        // backing off, in which case the timeout above brings us back).
        // When stopping, once more: connections the kernel completed are
        // in the backlog, and closing the listener would reset them; taken
        // now, they reach their workers before a graceful drain does.
        let end = accept_ready(&listener, admission, |sock, peer| {
            let worker = &workers[next];
            next = (next + 1) % workers.len();
            debug!("accepted {peer} -> worker {}", worker.worker());
            // Fails only when the workers are stopping; so are we.
            worker.post(WorkerMsg::Accept(sock, peer)).is_ok()
        });
        if stopping {
            return;
        }
        match end {
            AcceptEnd::Drained => backoff = false,
            AcceptEnd::BackOff => backoff = true,
            AcceptEnd::Stopped => return,
        }
    }
}
