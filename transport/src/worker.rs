//! One worker's event loop handler (Pistache's `Tcp::Transport`): a slab
//! of peers driven by readiness, mailbox messages and timers;
//! `handle_incoming`, the TLS handshake, the graceful close, and accepting
//! on the worker's own listener (per-worker listeners).
//!
//! It uses the peer's I/O state (`peer.rs`), the mailbox messages
//! (`msg.rs`), the accept path (`accept.rs`) and the protocol-facing
//! `Conn` (`conn.rs`); none of those knows the worker.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::accept::{accept_ready, AcceptEnd, Admission, ACCEPT_BACKOFF};
use crate::listener::MioListener;
use crate::socket::Socket;
use log::debug;
use mio::{Interest, Token};
use pistachio_reactor::{Context, EventHandler, Mailbox};
use slab::Slab;

use crate::classify::SslOutcome;
use crate::close::CloseReason;
use crate::conn::{Conn, Protocol};
use crate::msg::{DrainTally, WorkerMsg};
use crate::peer::{
    Activity, DrainNotice, Ending, InputGate, PeerInfo, PeerIo, Phase, ReadResult, ReadRetry,
    Reading, Session, TimerRequest, WriteRetry, HIGH_WATER, LINGER_MAX_BYTES, LOW_WATER,
};
use crate::sniff::{sniff, FirstBytes, PLAIN_HTTP_ANSWER, SNIFF_LEN};
use crate::stats::{HandshakeFailure, IoCounter, TransportStats};
use crate::sys::{self, Ssl};
use crate::tls::TlsSlot;
use openssl::ssl::SslContext;

/// What a worker timer is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TimerKind {
    Handshake,
    Protocol,
    Linger,
    /// The graceful shutdown's deadline (worker-wide; token unused).
    Drain,
    /// The end of the graceful shutdown's grace: every connection not yet
    /// told to drain is told now (worker-wide).
    DrainGrace,
    /// Accept again after running out of descriptors (worker-wide).
    AcceptRetry,
    /// Free the TLS buffers of connections idle since the last sweep.
    IdleSweep,
}

/// Payload of every worker timer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerTimer {
    token: usize,
    generation: u64,
    kind: TimerKind,
}

impl PeerTimer {
    /// A timer for one connection (ignored if the slot was reused since).
    fn peer(token: usize, generation: u64, kind: TimerKind) -> PeerTimer {
        PeerTimer {
            token,
            generation,
            kind,
        }
    }

    /// A timer for the worker as a whole (`Drain`, `DrainGrace`,
    /// `AcceptRetry`, `IdleSweep`).
    fn worker(kind: TimerKind) -> PeerTimer {
        PeerTimer::peer(usize::MAX, 0, kind)
    }
}

/// Runs one protocol callback with a [`Conn`] on `peer`. Debug builds check
/// that no OpenSSL error is left for the protocol to see; a panic in the
/// callback aborts this connection only.
fn run_protocol<P: Protocol>(
    peer: &mut Peer<P>,
    mailbox: &Mailbox<WorkerMsg<P::Message>>,
    now: Instant,
    token: usize,
    place: &str,
    f: impl FnOnce(&mut P, &mut Conn<'_, P::Message>),
) {
    sys::debug_assert_queue_empty(place);
    let mut conn = Conn {
        io: &mut peer.io,
        mailbox,
        now,
        token,
        generation: peer.generation,
        draining: peer.draining,
    };
    let protocol = &mut peer.protocol;
    if catch_unwind(AssertUnwindSafe(|| f(protocol, &mut conn))).is_err() {
        protocol_panicked(&mut conn);
    }
}

/// A protocol callback panicked: that connection is dropped, the worker
/// and every other connection carry on.
fn protocol_panicked<M: Send + 'static>(conn: &mut Conn<'_, M>) {
    log::warn!(
        "{}: protocol panicked; connection aborted",
        conn.peer_addr()
    );
    conn.abort();
}

struct Peer<P> {
    io: PeerIo,
    protocol: P,
    generation: u64,
    /// A graceful shutdown is under way (`Conn::is_draining`).
    draining: bool,
    /// `Protocol::on_drain` ran.
    drain_told: bool,
}

/// Settings every worker shares.
#[derive(Debug)]
pub(crate) struct WorkerConfig {
    /// Which connections are taken; counts the open ones over all
    /// workers (shared with the accept thread).
    pub(crate) admission: Arc<Admission>,
    pub(crate) tls: Option<Arc<TlsSlot>>,
    pub(crate) max_handshakes: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) linger_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) stats: TransportStats,
    /// See `ServerConfig::offer_h2`.
    pub(crate) offer_h2: bool,
}

pub(crate) type Factory<P> = dyn Fn(&PeerInfo) -> P + Send + Sync;

/// The reactor handler of one worker.
pub(crate) struct Worker<P: Protocol> {
    peers: Slab<Peer<P>>,
    factory: Arc<Factory<P>>,
    config: Arc<WorkerConfig>,
    read_buf: Box<[u8]>,
    next_generation: u64,
    /// This worker's copy of the TLS context and the slot generation it is.
    tls_ctx: Option<(u64, SslContext)>,
    /// TLS handshakes in progress on this worker.
    handshaking: usize,
    /// Set once a graceful shutdown began: where to report when done.
    /// A graceful shutdown in progress: where to report, and how many
    /// connections were open when it began.
    draining: Option<(std::sync::mpsc::Sender<DrainTally>, usize)>,
    /// In a graceful shutdown's grace: connections are told to drain at
    /// their next input (or when the grace ends).
    drain_grace: bool,
    /// This worker's own listener, with per-worker listeners.
    listener: Option<MioListener>,
    /// The idle sweep's timer is armed.
    sweeping: bool,
    /// This worker's byte counters, which its connections count into
    /// (made on this thread, which alone writes them).
    io_counter: IoCounter,
}

/// How far `handle_incoming` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadUntil {
    /// Until `WouldBlock` / `WANT_READ`.
    WouldBlock,
    /// Until a read that drained the socket (plaintext: shorter than the
    /// buffer; TLS: the last `read(2)` under `SSL_read` was short and
    /// OpenSSL buffers nothing more, see `Ssl::socket_drained`), without the
    /// extra read that would return `EAGAIN` (data arriving later makes a
    /// new edge). Only for a readable edge without EOF or error: an EOF that
    /// arrived earlier must be read now, as no later edge would report it.
    ShortRead,
}

/// What one readiness event asks of a peer.
#[derive(Debug, Clone, Copy)]
struct Readiness {
    /// Read, and how far; `None` if the event was not readable.
    read: Option<ReadUntil>,
    /// The socket can take output.
    writable: bool,
}

/// How often idle TLS connections give their record buffers back.
const IDLE_SWEEP: Duration = Duration::from_secs(1);

/// The token of a worker's own listener (slab keys never get this high).
const LISTENER: Token = Token(usize::MAX - 1);

type Ctx<'a, P> = Context<'a, Worker<P>>;

impl<P: Protocol> Worker<P> {
    /// Made on the worker's own thread (the reactor calls its factory
    /// there).
    pub(crate) fn new(factory: Arc<Factory<P>>, config: Arc<WorkerConfig>) -> Self {
        Worker {
            io_counter: config.stats.worker_io(),
            peers: Slab::new(),
            factory,
            config,
            // One TLS record's worth of plaintext, shared by all peers.
            read_buf: vec![0; 16 * 1024].into_boxed_slice(),
            next_generation: 0,
            tls_ctx: None,
            handshaking: 0,
            draining: None,
            drain_grace: false,
            listener: None,
            sweeping: false,
        }
    }

    fn accept(&mut self, ctx: &mut Ctx<'_, P>, sock: Socket, peer_addr: SocketAddr) {
        if !self.try_accept(ctx, sock, peer_addr) {
            // Never became a peer: it no longer counts as open.
            self.config.admission.release();
        }
    }

    /// The TLS context new connections get, refreshed after a reload.
    fn tls_context(&mut self) -> Option<SslContext> {
        let slot = self.config.tls.as_ref()?;
        let generation = slot.generation();
        match &self.tls_ctx {
            Some((cached, ctx)) if *cached == generation => Some(ctx.clone()),
            _ => {
                let ctx = slot.current();
                self.tls_ctx = Some((generation, ctx.clone()));
                Some(ctx)
            }
        }
    }

    fn try_accept(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        mut sock: Socket,
        peer_addr: SocketAddr,
    ) -> bool {
        if self.config.tls.is_some() && self.handshaking >= self.config.max_handshakes {
            log::warn!(
                "{peer_addr}: refused, {} TLS handshakes already in progress on worker {}",
                self.handshaking,
                ctx.worker()
            );
            self.config
                .stats
                .handshake_failed(HandshakeFailure::Overload);
            return false;
        }
        let local_addr = match sock.local_addr() {
            Ok(a) => a,
            Err(e) => {
                debug!("{peer_addr}: dropped before setup: {e}");
                return false;
            }
        };
        let tls_ctx = self.tls_context();
        let entry = self.peers.vacant_entry();
        let token = entry.key();
        if let Err(e) = ctx.registry().register(
            &mut sock,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("{peer_addr}: cannot register with the poller: {e}");
            return false;
        }
        let tls = match &tls_ctx {
            None => None,
            Some(tls_ctx) => match Ssl::new_server(tls_ctx, sock.as_raw_fd(), self.config.offer_h2)
            {
                Ok(ssl) => Some(ssl),
                Err(e) => {
                    log::warn!("{peer_addr}: cannot create a TLS session: {e}");
                    let _ = ctx.registry().deregister(&mut sock);
                    return false;
                }
            },
        };
        let generation = self.next_generation;
        self.next_generation += 1;
        let info = PeerInfo {
            peer_addr,
            local_addr,
            worker: ctx.worker(),
            tls: tls.is_some(),
        };
        let handshake_timer = tls.is_some().then(|| {
            ctx.set_timeout(
                self.config.handshake_timeout,
                PeerTimer::peer(token, generation, TimerKind::Handshake),
            )
        });
        debug!(
            "{peer_addr}: connection {token} on worker {} ({})",
            ctx.worker(),
            if tls.is_some() { "tls" } else { "plain" }
        );
        sys::debug_assert_queue_empty("protocol factory");
        let protocol = (self.factory)(&info);
        let counter = self.io_counter.clone();
        let io = PeerIo::new(sock, tls, peer_addr, local_addr, handshake_timer, counter);
        let open = io.phase == Phase::Open;
        entry.insert(Peer {
            io,
            protocol,
            generation,
            draining: false,
            drain_told: false,
        });
        self.config.stats.accepted();
        if open {
            self.connected(ctx, token);
            self.after_callback_io(ctx, token);
        } else {
            self.handshaking += 1;
            self.arm_idle_sweep(ctx);
        }
        // A TLS peer's ClientHello may already be here; registration reports
        // current readiness, so the first event drives the handshake.
        true
    }

    /// The connection is ready for application data.
    fn connected(&mut self, ctx: &mut Ctx<'_, P>, token: usize) {
        self.with_protocol(ctx, token, |p, conn| p.on_connect(conn));
    }

    /// Runs a protocol callback with a [`Conn`], then applies what it asked
    /// for (timers, writes, close). Returns false if the peer is gone.
    fn with_protocol(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        token: usize,
        f: impl FnOnce(&mut P, &mut Conn<'_, P::Message>),
    ) -> bool {
        let Some(peer) = self.peers.get_mut(token) else {
            return false;
        };
        run_protocol(
            peer,
            ctx.mailbox(),
            ctx.now(),
            token,
            "protocol callback",
            f,
        );
        self.after_protocol(ctx, token)
    }

    /// Applies what a protocol callback asked for (a timer change, a close,
    /// a failed flush). Returns false if the peer is gone.
    #[inline(always)]
    fn after_protocol(&mut self, ctx: &mut Ctx<'_, P>, token: usize) -> bool {
        if self.peers[token].io.asked_nothing() {
            // The common case.
            return true;
        }
        self.apply_requests(ctx, token)
    }

    /// [`Worker::after_protocol`] when the callback asked for something.
    #[inline(never)]
    fn apply_requests(&mut self, ctx: &mut Ctx<'_, P>, token: usize) -> bool {
        let peer = &mut self.peers[token];
        match std::mem::replace(&mut peer.io.timer_request, TimerRequest::Keep) {
            TimerRequest::Keep => {}
            TimerRequest::Clear => {
                if let Some(id) = peer.io.protocol_timer.take() {
                    ctx.cancel_timer(id);
                }
            }
            TimerRequest::Set(after) => {
                if let Some(id) = peer.io.protocol_timer.take() {
                    ctx.cancel_timer(id);
                }
                peer.io.protocol_timer = Some(ctx.set_timeout(
                    after,
                    PeerTimer::peer(token, peer.generation, TimerKind::Protocol),
                ));
            }
        }
        if let Some(reason) = peer.io.failed.take() {
            self.close_now(ctx, token, *reason);
            return false;
        }
        if peer.io.ending == Ending::Abort {
            self.close_now(ctx, token, CloseReason::Aborted);
            return false;
        }
        if peer.io.ending == Ending::Graceful && peer.io.linger_timer.is_none() {
            // A peer that stops reading must not hold a closing connection
            // open forever.
            peer.io.linger_timer = Some(ctx.set_timeout(
                self.config.close_timeout,
                PeerTimer::peer(token, peer.generation, TimerKind::Linger),
            ));
        }
        true
    }

    /// `handle_incoming`: reads until `WouldBlock`/`WANT_READ`, handing each
    /// chunk to the protocol.
    ///
    /// `until`: see [`ReadUntil`].
    fn handle_incoming(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        token: usize,
        until: ReadUntil,
    ) -> Result<(), CloseReason> {
        loop {
            let peer = &mut self.peers[token];
            if peer.io.end_asked() {
                // The protocol is done with input; a lingering close drains it.
                return Ok(());
            }
            if peer.io.reading == Reading::Paused {
                return Ok(());
            }
            if peer.io.queued > HIGH_WATER {
                // Try to make room; if the peer is not reading, stop reading
                // from it until a writable edge drains the queue.
                peer.io.flush()?;
                if peer.io.queued > HIGH_WATER {
                    peer.io.input_gate = InputGate::HeldForOutput;
                    return Ok(());
                }
            }
            let (n, drained) = match peer.io.read(&mut self.read_buf)? {
                ReadResult::Data(n) => (n, false),
                ReadResult::DataDrained(n) => (n, true),
                ReadResult::WouldBlock | ReadResult::WantWrite => return Ok(()),
                ReadResult::Eof => {
                    debug!("{}: peer finished sending", peer.io.peer_addr);
                    self.with_protocol(ctx, token, |p, conn| p.on_eof(conn));
                    return Ok(());
                }
            };
            let data = &self.read_buf[..n];
            let now = ctx.now();
            run_protocol(peer, ctx.mailbox(), now, token, "on_input", |p, conn| {
                p.on_input(conn, data)
            });
            let peer = if peer.io.asked_nothing() && !self.drain_grace {
                peer
            } else {
                if !self.apply_requests(ctx, token) {
                    return Ok(());
                }
                // In a shutdown's grace: what just arrived is served,
                // and is the connection's last.
                if self.drain_grace && !self.tell_drain(ctx, token) {
                    return Ok(());
                }
                &mut self.peers[token]
            };
            if peer.io.reading == Reading::ResumeNow {
                peer.io.reading = Reading::Active;
            }
            if until == ReadUntil::ShortRead && drained {
                return Ok(());
            }
        }
    }

    /// Drives a peer after readiness.
    fn drive(&mut self, ctx: &mut Ctx<'_, P>, token: usize, ready: Readiness) {
        let Some(peer) = self.peers.get_mut(token) else {
            return;
        };
        peer.io.activity = Activity::Busy;
        let result = if peer.io.phase == Phase::Open {
            self.open_io(ctx, token, ready)
        } else {
            self.try_drive(ctx, token, ready)
        };
        if let Err(reason) = result {
            self.close_now(ctx, token, reason);
        }
    }

    fn try_drive(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        token: usize,
        ready: Readiness,
    ) -> Result<(), CloseReason> {
        let Some(peer) = self.peers.get_mut(token) else {
            return Ok(());
        };
        match peer.io.phase {
            Phase::Lingering => {
                if ready.read.is_some() {
                    self.linger_drain(ctx, token);
                }
                return Ok(());
            }
            Phase::ShuttingDown => {
                if ready.writable {
                    self.start_shutdown(ctx, token)?;
                }
                return Ok(());
            }
            Phase::Sniffing => {
                let mut first = [0; SNIFF_LEN];
                let n = match sys::peek(&peer.io.sock, &mut first) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
                    Err(e) => return Err(CloseReason::Socket(e)),
                };
                // EOF, or a prefix the peer will not complete (it closed
                // its side): OpenSSL has the last word.
                let complete = n == 0 || ready.read == Some(ReadUntil::WouldBlock);
                match sniff(&first[..n]) {
                    FirstBytes::NeedMore if !complete => return Ok(()),
                    FirstBytes::PlainHttp => return self.answer_plain_http(ctx, token),
                    FirstBytes::NeedMore | FirstBytes::NotPlainHttp => {}
                }
                peer.io.phase = Phase::Handshaking;
                return self.try_drive(ctx, token, ready);
            }
            Phase::Handshaking => {
                let tls = peer.io.tls.as_mut().expect("handshaking peer has TLS");
                match tls.ssl.do_handshake() {
                    SslOutcome::Done(_) => {
                        if let Some(id) = peer.io.handshake_timer.take() {
                            ctx.cancel_timer(id);
                        }
                        peer.io.phase = Phase::Open;
                        self.handshaking -= 1;
                        self.config.stats.handshake_done();
                        debug!(
                            "{}: TLS established ({:?})",
                            peer.io.peer_addr,
                            peer.io.tls_info()
                        );
                        self.connected(ctx, token);
                        if !self.peers.contains(token) {
                            return Ok(());
                        }
                        // Application data may have arrived with the
                        // client's Finished: read it now, no new edge comes.
                        let read = Some(ready.read.unwrap_or(ReadUntil::WouldBlock));
                        return self.open_io(ctx, token, Readiness { read, ..ready });
                    }
                    SslOutcome::WantRead | SslOutcome::WantWrite => return Ok(()),
                    fatal => return Err(tls.fail(fatal)),
                }
            }
            Phase::Open => {}
        }
        self.open_io(ctx, token, ready)
    }

    /// The I/O of an open peer after readiness; inlined into the event
    /// loop, where nearly every event ends up.
    #[inline(always)]
    fn open_io(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        token: usize,
        ready: Readiness,
    ) -> Result<(), CloseReason> {
        let writable = ready.writable;
        let (mut read, mut until) = match ready.read {
            Some(until) => (true, until),
            None => (false, ReadUntil::WouldBlock),
        };
        let peer = &mut self.peers[token];
        if let Some(tls) = peer.io.tls.as_mut() {
            let resume_read = writable
                && std::mem::replace(&mut tls.read_retry, ReadRetry::None) == ReadRetry::OnWritable;
            let resume_write = read && tls.write_retry == WriteRetry::PinnedUntilReadable;
            if resume_write {
                peer.io.flush()?;
            }
            if resume_read {
                // A readable edge without EOF may stop at a short read; a
                // resumed SSL_read reads on.
                read = true;
                until = ReadUntil::WouldBlock;
            }
        }
        if peer.io.input_gate == InputGate::HeldForOutput && writable {
            peer.io.flush()?;
            if peer.io.queued <= LOW_WATER {
                // Input may have piled up while paused: no edge announces it.
                peer.io.input_gate = InputGate::Open;
                read = true;
                until = ReadUntil::WouldBlock;
            }
        }
        let peer = if peer.io.drain_notice == DrainNotice::Owed {
            self.notify_drained(ctx, token)?;
            let Some(peer) = self.peers.get_mut(token) else {
                return Ok(());
            };
            peer
        } else {
            peer
        };
        if read && peer.io.input_gate == InputGate::Open {
            self.handle_incoming(ctx, token, until)?;
        }
        self.flush_and_maybe_close(ctx, token)
    }

    /// After a protocol callback that was not driven by input: reads again
    /// if the protocol resumed reading, then flushes (and maybe closes).
    fn after_callback_io(&mut self, ctx: &mut Ctx<'_, P>, token: usize) {
        let Some(peer) = self.peers.get_mut(token) else {
            return;
        };
        let result = if peer.io.reading == Reading::ResumeNow {
            peer.io.reading = Reading::Active;
            self.handle_incoming(ctx, token, ReadUntil::WouldBlock)
                .and_then(|()| self.flush_and_maybe_close(ctx, token))
        } else {
            self.flush_and_maybe_close(ctx, token)
        };
        if let Err(reason) = result {
            self.close_now(ctx, token, reason);
        }
    }

    /// Flushes the queue; once it is empty and a close was requested,
    /// starts the graceful shutdown.
    #[inline(always)]
    fn flush_and_maybe_close(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        token: usize,
    ) -> Result<(), CloseReason> {
        let Some(peer) = self.peers.get_mut(token) else {
            return Ok(());
        };
        if peer.io.phase != Phase::Open {
            return Ok(());
        }
        peer.io.flush()?;
        let sent_owed = peer.io.sent_notice && peer.io.queued == 0;
        let peer = if sent_owed || peer.io.drain_notice == DrainNotice::Owed {
            // The protocol runs again, and may close the connection.
            if sent_owed {
                self.notify_sent(ctx, token)?;
            }
            if self
                .peers
                .get(token)
                .is_some_and(|p| p.io.drain_notice == DrainNotice::Owed)
            {
                self.notify_drained(ctx, token)?;
            }
            let Some(peer) = self.peers.get_mut(token) else {
                return Ok(());
            };
            peer
        } else {
            peer
        };
        if peer.io.queued == 0 && peer.io.ending == Ending::Graceful {
            self.start_shutdown(ctx, token)?;
        } else if peer.io.queued > HIGH_WATER {
            // The socket is full (flush stopped at WouldBlock): reading
            // pauses until a writable edge drains the queue.
            peer.io.input_gate = InputGate::HeldForOutput;
        }
        Ok(())
    }

    /// A plaintext HTTP request arrived on the TLS port: no TLS for this
    /// connection; answer `400` in plaintext, then close gracefully (the
    /// lingering close reads the request, so the answer is not lost to an
    /// RST). The protocol never hears of the connection until `on_close`.
    fn answer_plain_http(&mut self, ctx: &mut Ctx<'_, P>, token: usize) -> Result<(), CloseReason> {
        let peer = &mut self.peers[token];
        debug!("{}: plain HTTP request on the TLS port", peer.io.peer_addr);
        self.handshaking -= 1;
        self.config
            .stats
            .handshake_failed(HandshakeFailure::PlainHttp);
        if let Some(id) = peer.io.handshake_timer.take() {
            ctx.cancel_timer(id);
        }
        // Freed before a byte of it was used; nothing on the error queue.
        peer.io.tls = None;
        peer.io.phase = Phase::Open;
        peer.io.queue_copy(PLAIN_HTTP_ANSWER);
        peer.io.ending = Ending::Graceful;
        peer.io.linger_timer = Some(ctx.set_timeout(
            self.config.close_timeout,
            PeerTimer::peer(token, peer.generation, TimerKind::Linger),
        ));
        self.flush_and_maybe_close(ctx, token)
    }

    /// Calls `Protocol::on_drained` each time a queue that went over the
    /// high-water mark is back under the low-water mark, flushing what the
    /// protocol then produces.
    fn notify_drained(&mut self, ctx: &mut Ctx<'_, P>, token: usize) -> Result<(), CloseReason> {
        loop {
            let Some(peer) = self.peers.get_mut(token) else {
                return Ok(());
            };
            let owed = peer.io.drain_notice == DrainNotice::Owed && peer.io.queued <= LOW_WATER;
            if !owed || peer.io.phase != Phase::Open {
                return Ok(());
            }
            peer.io.drain_notice = DrainNotice::NotOwed;
            if !self.with_protocol(ctx, token, |p, conn| p.on_drained(conn)) {
                return Ok(());
            }
            self.peers[token].io.flush()?;
        }
    }

    /// Calls `Protocol::on_sent` once the queue is empty, if the protocol
    /// asked ([`Conn::notify_sent`]), flushing what it then produces.
    fn notify_sent(&mut self, ctx: &mut Ctx<'_, P>, token: usize) -> Result<(), CloseReason> {
        let Some(peer) = self.peers.get_mut(token) else {
            return Ok(());
        };
        if !peer.io.sent_notice || peer.io.queued > 0 || peer.io.phase != Phase::Open {
            return Ok(());
        }
        peer.io.sent_notice = false;
        if !self.with_protocol(ctx, token, |p, conn| p.on_sent(conn)) {
            return Ok(());
        }
        self.peers[token].io.flush()
    }

    /// Sends close_notify (TLS, once), then FIN, then lingers.
    fn start_shutdown(&mut self, ctx: &mut Ctx<'_, P>, token: usize) -> Result<(), CloseReason> {
        let peer = &mut self.peers[token];
        if let Some(tls) = peer.io.tls.as_mut() {
            if tls.session == Session::Healthy {
                match tls.ssl.shutdown() {
                    SslOutcome::Done(_) | SslOutcome::WantRead => {}
                    SslOutcome::WantWrite => {
                        peer.io.phase = Phase::ShuttingDown;
                        return Ok(());
                    }
                    fatal => return Err(tls.fail(fatal)),
                }
            }
        }
        if let Err(e) = peer.io.sock.shutdown(Shutdown::Write) {
            debug!("{}: shutdown(SHUT_WR): {e}", peer.io.peer_addr);
            return Err(CloseReason::Closed);
        }
        peer.io.phase = Phase::Lingering;
        if let Some(id) = peer.io.linger_timer.take() {
            ctx.cancel_timer(id);
        }
        peer.io.linger_timer = Some(ctx.set_timeout(
            self.config.linger_timeout,
            PeerTimer::peer(token, peer.generation, TimerKind::Linger),
        ));
        // Input may already be waiting: no new edge would announce it.
        self.linger_drain(ctx, token);
        Ok(())
    }

    /// Reads and discards until the peer closes (then closes) or the socket
    /// is drained (then waits).
    fn linger_drain(&mut self, ctx: &mut Ctx<'_, P>, token: usize) {
        let peer = &mut self.peers[token];
        loop {
            match peer.io.sock.read(&mut self.read_buf) {
                Ok(0) => break,
                Ok(n) => {
                    peer.io.lingered += n;
                    if peer.io.lingered > LINGER_MAX_BYTES {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.close_now(ctx, token, CloseReason::Closed);
    }

    /// Arms the idle sweep unless it is armed already.
    fn arm_idle_sweep(&mut self, ctx: &mut Ctx<'_, P>) {
        if !self.sweeping {
            self.sweeping = true;
            ctx.set_timeout(IDLE_SWEEP, PeerTimer::worker(TimerKind::IdleSweep));
        }
    }

    /// Frees the record buffers of TLS connections without I/O since the
    /// previous sweep, then re-arms while TLS connections remain.
    fn idle_sweep(&mut self, ctx: &mut Ctx<'_, P>) {
        let mut tls_peers = 0;
        for (_, peer) in self.peers.iter_mut() {
            let Some(tls) = peer.io.tls.as_mut() else {
                continue;
            };
            tls_peers += 1;
            if peer.io.phase == Phase::Open
                && std::mem::replace(&mut peer.io.activity, Activity::Idle) == Activity::Idle
                && peer.io.queued == 0
            {
                tls.ssl.free_buffers();
            }
        }
        self.sweeping = false;
        if tls_peers > 0 {
            self.arm_idle_sweep(ctx);
        }
        sys::debug_assert_queue_empty("idle_sweep");
    }

    /// Accepts on this worker's own listener until the backlog is empty.
    fn accept_own(&mut self, ctx: &mut Ctx<'_, P>) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let admission = Arc::clone(&self.config.admission);
        let end = accept_ready(&listener, &admission, |sock, peer| {
            self.accept(ctx, sock, peer);
            true
        });
        self.listener = Some(listener);
        if end == AcceptEnd::BackOff {
            ctx.set_timeout(ACCEPT_BACKOFF, PeerTimer::worker(TimerKind::AcceptRetry));
        }
    }

    /// Starts a graceful shutdown of this worker's connections: each is
    /// told to drain at once, or (with a `grace`) at its next input or when
    /// the grace ends.
    fn drain(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        deadline: Instant,
        grace: Duration,
        report: std::sync::mpsc::Sender<DrainTally>,
    ) {
        // Connections already in the backlog were accepted by the kernel:
        // take them before the listener closes, or they would be reset.
        self.accept_own(ctx);
        if let Some(mut listener) = self.listener.take() {
            let _ = ctx.registry().deregister(listener.source());
        }
        debug!(
            "worker {}: draining {} connections",
            ctx.worker(),
            self.peers.len()
        );
        self.draining = Some((report, self.peers.len()));
        ctx.set_timer(deadline, PeerTimer::worker(TimerKind::Drain));
        for (_, peer) in self.peers.iter_mut() {
            peer.draining = true;
        }
        let tokens: Vec<usize> = self.peers.iter().map(|(t, _)| t).collect();
        for &token in &tokens {
            if self
                .peers
                .get(token)
                .is_some_and(|p| p.io.phase.is_handshake())
            {
                self.close_now(ctx, token, CloseReason::Shutdown);
            }
        }
        if grace.is_zero() {
            self.tell_drain_all(ctx);
        } else {
            self.drain_grace = true;
            ctx.set_timeout(grace, PeerTimer::worker(TimerKind::DrainGrace));
        }
        self.check_drained();
    }

    /// The drain's grace is over: every connection not yet told is told.
    fn tell_drain_all(&mut self, ctx: &mut Ctx<'_, P>) {
        self.drain_grace = false;
        let tokens: Vec<usize> = self.peers.iter().map(|(t, _)| t).collect();
        for token in tokens {
            let untold = self
                .peers
                .get(token)
                .is_some_and(|p| !p.drain_told && p.io.phase == Phase::Open);
            if untold && self.tell_drain(ctx, token) {
                self.after_callback_io(ctx, token);
            }
        }
    }

    /// Calls `Protocol::on_drain` on an open connection, once. Returns
    /// false if the connection is gone.
    fn tell_drain(&mut self, ctx: &mut Ctx<'_, P>, token: usize) -> bool {
        let Some(peer) = self.peers.get_mut(token) else {
            return false;
        };
        if peer.drain_told || peer.io.phase != Phase::Open {
            // Told already, or closing.
            return true;
        }
        peer.drain_told = true;
        self.with_protocol(ctx, token, |p, conn| p.on_drain(conn))
    }

    /// Reports a finished drain once the last connection is gone.
    fn check_drained(&mut self) {
        if self.peers.is_empty() {
            if let Some((report, open)) = self.draining.take() {
                let _ = report.send(DrainTally { open, cut: 0 });
            }
        }
    }

    /// The graceful shutdown's deadline: cut what is left and report it.
    fn drain_deadline(&mut self, ctx: &mut Ctx<'_, P>) {
        let Some((report, open)) = self.draining.take() else {
            return;
        };
        let tokens: Vec<usize> = self.peers.iter().map(|(t, _)| t).collect();
        let cut = tokens.len();
        for token in tokens {
            self.close_now(ctx, token, CloseReason::Shutdown);
        }
        if cut > 0 {
            log::warn!(
                "worker {}: shutdown deadline cut {cut} connections",
                ctx.worker()
            );
        }
        let _ = report.send(DrainTally { open, cut });
    }

    /// Removes the peer: deregisters, cancels its timers, tells the
    /// protocol, and drops it (`SSL_free`, then `close(2)`).
    fn close_now(&mut self, ctx: &mut Ctx<'_, P>, token: usize, reason: CloseReason) {
        let Some(mut peer) = self.peers.try_remove(token) else {
            return;
        };
        if peer.io.phase.is_handshake() {
            self.handshaking -= 1;
            self.config
                .stats
                .handshake_failed(HandshakeFailure::of(&reason));
        }
        self.config.stats.closed();
        self.config.admission.release();
        debug!("{}: connection {token} closed: {reason}", peer.io.peer_addr);
        let _ = ctx.registry().deregister(&mut peer.io.sock);
        for id in [
            peer.io.protocol_timer.take(),
            peer.io.handshake_timer.take(),
            peer.io.linger_timer.take(),
        ]
        .into_iter()
        .flatten()
        {
            ctx.cancel_timer(id);
        }
        sys::debug_assert_queue_empty("on_close");
        let protocol = &mut peer.protocol;
        if catch_unwind(AssertUnwindSafe(|| protocol.on_close(&reason))).is_err() {
            log::warn!("{}: protocol panicked in on_close", peer.io.peer_addr);
        }
        if self.draining.is_some() {
            self.check_drained();
        }
    }
}

impl<P: Protocol> EventHandler for Worker<P> {
    type Message = WorkerMsg<P::Message>;
    type Timer = PeerTimer;

    fn on_event(&mut self, ctx: &mut Ctx<'_, P>, event: &mio::event::Event) {
        if event.token() == LISTENER {
            return self.accept_own(ctx);
        }
        let token = event.token().0;
        let read = if event.is_read_closed() || event.is_error() {
            // An EOF (or error) must be read now: no later edge reports it.
            Some(ReadUntil::WouldBlock)
        } else if event.is_readable() {
            Some(ReadUntil::ShortRead)
        } else {
            None
        };
        let writable = event.is_writable() || event.is_write_closed();
        self.drive(ctx, token, Readiness { read, writable });
        sys::debug_assert_queue_empty("on_event");
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, P>, msg: Self::Message) {
        match msg {
            WorkerMsg::Accept(sock, peer_addr) if self.draining.is_some() => {
                // Accepted just before the listener closed: not served.
                debug!("{peer_addr}: refused, shutting down");
                drop(sock);
                self.config.admission.release();
            }
            WorkerMsg::Accept(sock, peer_addr) => self.accept(ctx, sock, peer_addr),
            WorkerMsg::Drain {
                deadline,
                grace,
                report,
            } => self.drain(ctx, deadline, grace, report),
            WorkerMsg::Listen(mut listener) => {
                let registered =
                    ctx.registry()
                        .register(listener.source(), LISTENER, Interest::READABLE);
                match registered {
                    Ok(()) => self.listener = Some(listener),
                    Err(e) => {
                        log::error!("worker {}: cannot watch its listener: {e}", ctx.worker())
                    }
                }
            }
            WorkerMsg::Peer {
                token,
                generation,
                msg,
            } => {
                let live = self
                    .peers
                    .get(token)
                    .is_some_and(|p| p.generation == generation && p.io.phase == Phase::Open);
                if !live {
                    debug!("message for closed connection {token} dropped");
                    return;
                }
                if self.with_protocol(ctx, token, |p, conn| p.on_message(conn, msg)) {
                    self.after_callback_io(ctx, token);
                }
            }
        }
        sys::debug_assert_queue_empty("on_message");
    }

    // Not inlined into the reactor's loop, which would then compute its
    // constant-delay deadlines (`now + IDLE_SWEEP`, ...) every iteration.
    #[inline(never)]
    fn on_timer(&mut self, ctx: &mut Ctx<'_, P>, timer: PeerTimer) {
        match timer.kind {
            TimerKind::Drain => return self.drain_deadline(ctx),
            TimerKind::DrainGrace => {
                if self.drain_grace {
                    self.tell_drain_all(ctx);
                }
                sys::debug_assert_queue_empty("on_timer");
                return;
            }
            TimerKind::AcceptRetry => return self.accept_own(ctx),
            TimerKind::IdleSweep => return self.idle_sweep(ctx),
            _ => {}
        }
        let Some(peer) = self.peers.get_mut(timer.token) else {
            return;
        };
        if peer.generation != timer.generation {
            return;
        }
        match timer.kind {
            TimerKind::Handshake => {
                peer.io.handshake_timer = None;
                if peer.io.phase.is_handshake() {
                    self.close_now(ctx, timer.token, CloseReason::HandshakeTimeout);
                }
            }
            TimerKind::Linger => {
                peer.io.linger_timer = None;
                self.close_now(ctx, timer.token, CloseReason::Closed);
            }
            TimerKind::Drain
            | TimerKind::DrainGrace
            | TimerKind::AcceptRetry
            | TimerKind::IdleSweep => {
                unreachable!("worker-wide timers are handled above")
            }
            TimerKind::Protocol => {
                peer.io.protocol_timer = None;
                if peer.io.phase == Phase::Open
                    && self.with_protocol(ctx, timer.token, |p, conn| p.on_timeout(conn))
                {
                    self.after_callback_io(ctx, timer.token);
                }
            }
        }
        sys::debug_assert_queue_empty("on_timer");
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_, P>) {
        let tokens: Vec<usize> = self.peers.iter().map(|(t, _)| t).collect();
        for token in tokens {
            let peer = &mut self.peers[token];
            if peer.io.phase == Phase::Open {
                // Best effort, non-blocking: what is queued, then close_notify.
                if peer.io.flush().is_ok() && peer.io.queued == 0 {
                    if let Some(tls) = peer
                        .io
                        .tls
                        .as_mut()
                        .filter(|t| t.session == Session::Healthy)
                    {
                        let _ = tls.ssl.shutdown();
                    }
                }
            }
            self.close_now(ctx, token, CloseReason::Shutdown);
        }
        sys::debug_assert_queue_empty("on_shutdown");
    }
}
