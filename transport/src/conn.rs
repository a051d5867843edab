//! What the transport offers a protocol: the [`Protocol`] trait it calls and
//! the [`Conn`] handle it passes in, plus [`PeerHandle`] for other threads.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pistachio_reactor::Mailbox;

use crate::close::CloseReason;
use crate::msg::WorkerMsg;
use crate::peer::{Ending, PeerIo, Phase, Reading, TimerRequest, TlsInfo};

/// A per-connection protocol handler (Pistache's `Http::Handler::onInput`
/// and friends). One instance per connection, created on the connection's
/// worker by the server's factory and only ever used there.
///
/// Every callback gets a [`Conn`] to write, close or arm a timer; what it
/// queued is flushed when the callback returns.
pub trait Protocol: Sized + 'static {
    /// What other threads send to this connection via [`PeerHandle::post`].
    type Message: Send + 'static;

    /// The connection is ready for application data (after the TLS
    /// handshake, for TLS).
    fn on_connect(&mut self, conn: &mut Conn<'_, Self::Message>) {
        let _ = conn;
    }

    /// Bytes arrived. `data` is only valid during the call.
    fn on_input(&mut self, conn: &mut Conn<'_, Self::Message>, data: &[u8]);

    /// The peer finished sending cleanly (TCP FIN, or TLS close_notify).
    /// The default closes gracefully once queued output is flushed.
    fn on_eof(&mut self, conn: &mut Conn<'_, Self::Message>) {
        conn.close();
    }

    /// A message posted with [`PeerHandle::post`].
    fn on_message(&mut self, conn: &mut Conn<'_, Self::Message>, msg: Self::Message);

    /// Output had piled up (over 256 KiB queued, reading paused) and has
    /// now drained below 64 KiB: a protocol that stopped producing because
    /// [`Conn::queued`] was high can go on.
    fn on_drained(&mut self, conn: &mut Conn<'_, Self::Message>) {
        let _ = conn;
    }

    /// Everything queued was accepted by the socket (or OpenSSL), after
    /// [`Conn::notify_sent`] asked to be told. Called once per request.
    fn on_sent(&mut self, conn: &mut Conn<'_, Self::Message>) {
        let _ = conn;
    }

    /// The server is shutting down gracefully: finish what is in flight,
    /// then close (the server cuts what is left at its deadline). The
    /// default closes at once (after flushing what is queued).
    fn on_drain(&mut self, conn: &mut Conn<'_, Self::Message>) {
        conn.close();
    }

    /// The timer armed with [`Conn::set_timeout`] fired. The default closes.
    fn on_timeout(&mut self, conn: &mut Conn<'_, Self::Message>) {
        conn.close();
    }

    /// The connection is gone; called exactly once per connection that was
    /// handed to the factory, whatever the reason.
    fn on_close(&mut self, reason: &CloseReason) {
        let _ = reason;
    }
}

/// The connection, as a [`Protocol`] callback sees it.
pub struct Conn<'a, M: Send + 'static> {
    pub(crate) io: &'a mut PeerIo,
    pub(crate) mailbox: &'a Mailbox<WorkerMsg<M>>,
    pub(crate) now: Instant,
    pub(crate) token: usize,
    pub(crate) generation: u64,
    /// A graceful shutdown has begun (see [`Conn::is_draining`]).
    pub(crate) draining: bool,
}

impl<M: Send + 'static> fmt::Debug for Conn<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.io.peer_addr)
            .field("token", &self.token)
            .field("queued", &self.io.queued)
            .finish_non_exhaustive()
    }
}

impl<M: Send + 'static> Conn<'_, M> {
    /// Queues bytes for sending (copied). They are sent, in order, when the
    /// callback returns and as the socket accepts them.
    pub fn write(&mut self, data: &[u8]) {
        self.io.queue_copy(data);
    }

    /// Queues an owned buffer for sending, without copying it.
    pub fn write_vec(&mut self, data: Vec<u8>) {
        self.io.queue_owned(data);
    }

    /// Queues `len` bytes of `file` starting at `offset`, sent after what is
    /// queued before it: with `sendfile(2)` over plaintext (no copy through
    /// user space), read and encrypted piecewise over TLS. If the file turns
    /// out shorter than `len`, the connection is aborted (the length was
    /// already promised to the peer).
    pub fn write_file(&mut self, file: std::fs::File, offset: u64, len: u64) {
        self.io.queue_file(file, offset, len);
    }

    /// Bytes queued and not yet accepted by the socket (or by OpenSSL).
    pub fn queued(&self) -> usize {
        self.io.queued
    }

    /// Bytes the socket (or OpenSSL) accepted since the connection opened.
    /// With [`Conn::queued`]: the bytes queued so far are all sent once
    /// `sent()` reaches today's `sent() + queued()`.
    pub fn sent(&self) -> u64 {
        self.io.sent
    }

    /// Writes what is queued now, as far as the socket accepts it, instead
    /// of when the callback returns (which then finds less to do), so that
    /// [`Conn::sent`] tells what went out. A failure closes the connection
    /// when the callback returns, as any write failure does.
    #[inline(always)]
    pub fn flush(&mut self) {
        if self.io.queued == 0 || self.io.phase != Phase::Open || self.io.failed.is_some() {
            return;
        }
        self.io.flush_in_callback();
    }

    /// Asks for one [`Protocol::on_sent`] call once everything queued has
    /// been accepted by the socket. Not called if the connection closes
    /// first (`on_close` is).
    pub fn notify_sent(&mut self) {
        self.io.sent_notice = true;
    }

    /// Closes gracefully: once everything queued is sent, send TLS
    /// close_notify, then FIN, then drain what the peer still sends for a
    /// short while (so that unread input cannot turn the close into an RST
    /// that destroys the response in flight). No more input is delivered.
    pub fn close(&mut self) {
        if self.io.ending == Ending::NotAsked {
            self.io.ending = Ending::Graceful;
        }
    }

    /// Closes at once, dropping anything queued.
    pub fn abort(&mut self) {
        self.io.ending = Ending::Abort;
    }

    /// Stops delivering input to [`Protocol::on_input`] until
    /// [`Conn::resume_reading`]; the peer is then held back by TCP flow
    /// control. Use it when input arrives faster than it can be handled.
    pub fn pause_reading(&mut self) {
        self.io.reading = Reading::Paused;
    }

    /// Delivers input again after [`Conn::pause_reading`], starting with
    /// whatever arrived meanwhile.
    pub fn resume_reading(&mut self) {
        if self.io.reading == Reading::Paused {
            self.io.reading = Reading::ResumeNow;
        }
    }

    /// Whether a graceful shutdown has begun: the listener is closed, and
    /// the connection is served only until [`Protocol::on_drain`] (at its
    /// next input, or when the drain's grace ends). A protocol that can
    /// say "this is the last exchange" should say it now (the HTTP layer
    /// answers the request it is reading with `Connection: close`), so the
    /// client learns of the close from the answer instead of from a
    /// connection that closes under its next request.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Whether [`Conn::close`] or [`Conn::abort`] was called.
    pub fn is_closing(&self) -> bool {
        self.io.end_asked()
    }

    /// Arms (or re-arms) this connection's single protocol timer; when it
    /// fires, [`Protocol::on_timeout`] is called.
    pub fn set_timeout(&mut self, after: Duration) {
        self.io.timer_request = TimerRequest::Set(after);
    }

    /// Disarms the protocol timer.
    pub fn clear_timeout(&mut self) {
        self.io.timer_request = TimerRequest::Clear;
    }

    /// The time the worker's current event-loop iteration started: one
    /// clock read per iteration, shared by every callback in it (timers
    /// armed with [`set_timeout`](Self::set_timeout) count from it too).
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.io.peer_addr
    }

    /// The local address the client connected to.
    pub fn local_addr(&self) -> SocketAddr {
        self.io.local_addr
    }

    /// Index of the worker that owns this connection.
    pub fn worker(&self) -> usize {
        self.mailbox.worker()
    }

    /// TLS parameters, or `None` for plaintext.
    pub fn tls(&self) -> Option<TlsInfo> {
        self.io.tls_info()
    }

    /// The subject of the client's certificate (`CN=…, O=…`), when the TLS
    /// configuration asked for one and the client presented it.
    pub fn tls_peer_subject(&self) -> Option<String> {
        self.io.tls_peer_subject()
    }

    /// A handle through which any thread can post to this connection.
    pub fn handle(&self) -> PeerHandle<M> {
        PeerHandle {
            mailbox: self.mailbox.clone(),
            token: self.token,
            generation: self.generation,
        }
    }
}

/// Addresses one connection from any thread: posts go through the owning
/// worker's mailbox and arrive in [`Protocol::on_message`] on that worker.
/// Messages for a connection that has closed meanwhile are dropped.
#[must_use]
pub struct PeerHandle<M: Send + 'static> {
    mailbox: Mailbox<WorkerMsg<M>>,
    token: usize,
    generation: u64,
}

impl<M: Send + 'static> Clone for PeerHandle<M> {
    fn clone(&self) -> Self {
        PeerHandle {
            mailbox: self.mailbox.clone(),
            token: self.token,
            generation: self.generation,
        }
    }
}

impl<M: Send + 'static> fmt::Debug for PeerHandle<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerHandle")
            .field("worker", &self.mailbox.worker())
            .field("token", &self.token)
            .field("generation", &self.generation)
            .finish()
    }
}

impl<M: Send + 'static> PeerHandle<M> {
    /// Posts `msg` to the connection. Fails (handing `msg` back) only if the
    /// worker has stopped.
    pub fn post(&self, msg: M) -> Result<(), M> {
        self.mailbox
            .post(WorkerMsg::Peer {
                token: self.token,
                generation: self.generation,
                msg,
            })
            .map_err(|closed| match closed.0 {
                WorkerMsg::Peer { msg, .. } => msg,
                WorkerMsg::Accept(..) | WorkerMsg::Drain { .. } | WorkerMsg::Listen(..) => {
                    unreachable!("posted a peer message")
                }
            })
    }

    /// Index of the worker that owns the connection.
    pub fn worker(&self) -> usize {
        self.mailbox.worker()
    }
}
