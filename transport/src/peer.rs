//! One connection's I/O state: its socket and TLS session, its output
//! queue, and the states that say what may happen next (the peer half of
//! Pistache's `Tcp::Transport`). A [`crate::Conn`] borrows it while the
//! protocol runs; the worker drives it on readiness.
//!
//! Every peer is registered once for `READABLE | WRITABLE`, edge-triggered,
//! and never re-registered. That makes the rules simple and strict:
//!
//! * reading continues until `WouldBlock` / `WANT_READ`: bytes OpenSSL holds
//!   or the kernel buffered make no new edge;
//! * writing continues until the queue is empty or `WouldBlock` /
//!   `WANT_WRITE`, after which a writable edge is guaranteed;
//! * `WANT_WRITE` during a read and `WANT_READ` during a write are
//!   remembered and resumed by the opposite edge.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use pistachio_reactor::TimerId;

use crate::classify::SslOutcome;
use crate::close::{CloseReason, TlsFailure};
use crate::socket::Socket;
use crate::stats::IoCounter;
use crate::sys::{self, Ssl};

/// Facts about a new connection, given to the protocol factory.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The client's address.
    pub peer_addr: SocketAddr,
    /// The local address the client connected to.
    pub local_addr: SocketAddr,
    /// Index of the worker that owns the connection.
    pub worker: usize,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// The negotiated TLS parameters of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// Protocol version, e.g. `TLSv1.3`.
    pub version: &'static str,
    /// Cipher suite, e.g. `TLS_AES_256_GCM_SHA384`.
    pub cipher: &'static str,
    /// The protocol selected by ALPN (`h2`, `http/1.1`, `http/1.0`), or
    /// `None` when the client offered none (or ALPN is off).
    pub alpn: Option<&'static str>,
}

/// A timer change a protocol asked for during a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerRequest {
    Keep,
    Set(Duration),
    Clear,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A TLS connection whose first bytes are not in yet: a plaintext HTTP
    /// request is answered with a `400` instead of a handshake failure.
    Sniffing,
    /// TLS handshake in progress.
    Handshaking,
    /// Application data flows.
    Open,
    /// `SSL_shutdown` could not send close_notify yet (`WANT_WRITE`).
    ShuttingDown,
    /// FIN sent; discarding input until the peer closes or the timer fires.
    Lingering,
}

impl Phase {
    /// Before application data: counted against `max_handshakes` and
    /// bounded by the handshake timer.
    pub(crate) fn is_handshake(self) -> bool {
        matches!(self, Phase::Sniffing | Phase::Handshaking)
    }
}

/// How the protocol wants the connection to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// No end asked for: keep serving.
    NotAsked,
    /// [`crate::Conn::close`]: flush, close_notify, FIN, linger.
    Graceful,
    /// [`crate::Conn::abort`]: close at once, dropping what is queued.
    Abort,
}

/// Whether input is handed to the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Input is delivered as readiness edges announce it.
    Active,
    /// The protocol paused reading ([`crate::Conn::pause_reading`]).
    Paused,
    /// The protocol resumed reading: read now, without waiting for an edge
    /// (input that arrived meanwhile made none).
    ResumeNow,
}

/// Whether reading is held back because the peer does not take its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputGate {
    /// Input is read.
    Open,
    /// More than the high-water mark is queued and the socket is full:
    /// reading waits until a writable edge drains the queue.
    HeldForOutput,
}

/// Whether the protocol is owed [`crate::Protocol::on_drained`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DrainNotice {
    /// The queue stayed under the high-water mark since the last notice.
    NotOwed,
    /// The queue went over the high-water mark: tell the protocol once it
    /// is back under the low-water mark.
    Owed,
}

/// Whether a connection did I/O since the last idle sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activity {
    /// Nothing since the last sweep: its TLS buffers may be freed.
    Idle,
    /// I/O since the last sweep.
    Busy,
}

/// Largest buffer `write` coalesces small writes into.
const COALESCE_LIMIT: usize = 16 * 1024;
/// Reading from a peer pauses while more than this much output is queued
/// for it (a client that sends requests but does not read the responses)...
pub(crate) const HIGH_WATER: usize = 256 * 1024;
/// ...and resumes once the queue has drained below this.
pub(crate) const LOW_WATER: usize = 64 * 1024;
/// Most bytes a lingering close reads and discards before giving up.
pub(crate) const LINGER_MAX_BYTES: usize = 256 * 1024;

/// An `SSL_read` to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadRetry {
    /// None pending.
    None,
    /// `SSL_read` returned `WANT_WRITE` (KeyUpdate, renegotiation): resume
    /// it on the next writable edge.
    OnWritable,
}

/// An `SSL_write` to retry with the very same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteRetry {
    /// None pending: the front buffer may change.
    None,
    /// `SSL_write` returned `WANT_WRITE`: the front buffer is pinned and
    /// retried on the next writable edge.
    Pinned,
    /// `SSL_write` returned `WANT_READ`: pinned, and retried on the next
    /// readable edge.
    PinnedUntilReadable,
}

/// Whether the TLS session may still send close_notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Session {
    /// No fatal error so far.
    Healthy,
    /// A fatal SSL or SYSCALL error happened: never call `SSL_shutdown`.
    Failed,
}

/// A peer's TLS session and what is pending on it.
pub(crate) struct TlsState {
    pub(crate) ssl: Ssl,
    pub(crate) read_retry: ReadRetry,
    pub(crate) write_retry: WriteRetry,
    pub(crate) session: Session,
}

impl TlsState {
    pub(crate) fn new(ssl: Ssl) -> TlsState {
        TlsState {
            ssl,
            read_retry: ReadRetry::None,
            write_retry: WriteRetry::None,
            session: Session::Healthy,
        }
    }
}

/// The I/O half of a peer, which [`crate::Conn`] borrows while the
/// protocol half runs.
pub(crate) struct PeerIo {
    // Declared before `sock` so the `SSL*` is freed before the fd closes.
    pub(crate) tls: Option<TlsState>,
    pub(crate) sock: Socket,
    pub(crate) peer_addr: SocketAddr,
    pub(crate) local_addr: SocketAddr,
    pub(crate) phase: Phase,
    out: OutQueue,
    /// Bytes of the front `Segment::Bytes` already sent.
    out_pos: usize,
    pub(crate) queued: usize,
    /// Bytes the socket (or OpenSSL) accepted since the connection opened.
    pub(crate) sent: u64,
    /// The protocol asked for [`crate::Protocol::on_sent`] once the queue
    /// is empty.
    pub(crate) sent_notice: bool,
    /// A flush the protocol asked for ([`crate::Conn::flush`]) failed: the
    /// connection closes with this reason when the callback returns.
    pub(crate) failed: Option<Box<CloseReason>>,
    pub(crate) ending: Ending,
    pub(crate) reading: Reading,
    pub(crate) input_gate: InputGate,
    pub(crate) drain_notice: DrainNotice,
    pub(crate) timer_request: TimerRequest,
    pub(crate) protocol_timer: Option<TimerId>,
    pub(crate) handshake_timer: Option<TimerId>,
    /// Bounds a graceful close: first the whole close (`close_timeout`),
    /// then, once FIN is sent, the lingering drain (`linger_timeout`).
    pub(crate) linger_timer: Option<TimerId>,
    pub(crate) lingered: usize,
    pub(crate) activity: Activity,
    /// Where the bytes read and written are counted.
    counter: IoCounter,
}

/// One entry of a peer's output queue.
enum Segment {
    Bytes(Vec<u8>),
    /// `remaining` bytes of `file` from `offset`: `sendfile(2)` over
    /// plaintext; read in record-sized pieces and `SSL_write`n over TLS.
    File {
        file: File,
        offset: u64,
        remaining: u64,
    },
}

/// A peer's output queue, in order. The usual answer is one buffer, so the
/// front segment is kept apart: queueing and sending that one does no
/// ring-buffer index arithmetic. The rest is allocated the first time a
/// connection queues more than one segment (keeping an idle connection's
/// share small).
#[derive(Default)]
struct OutQueue {
    /// `None` only when the queue is empty.
    front: Option<Segment>,
    /// The segments after `front`; boxed, so that it is one word in every
    /// connection's `PeerIo` rather than a whole `VecDeque`.
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<Segment>>>,
}

impl OutQueue {
    fn len(&self) -> usize {
        usize::from(self.front.is_some()) + self.rest.as_ref().map_or(0, |rest| rest.len())
    }

    fn is_empty(&self) -> bool {
        self.front.is_none()
    }

    fn front(&self) -> Option<&Segment> {
        self.front.as_ref()
    }

    fn front_mut(&mut self) -> Option<&mut Segment> {
        self.front.as_mut()
    }

    /// The segment after the front one.
    fn second(&self) -> Option<&Segment> {
        self.rest.as_ref()?.front()
    }

    /// Every segment after the front one, in order.
    fn behind_front(&self) -> impl Iterator<Item = &Segment> {
        self.rest.iter().flat_map(|rest| rest.iter())
    }

    fn back_mut(&mut self) -> Option<&mut Segment> {
        match self.rest.as_mut().and_then(|rest| rest.back_mut()) {
            Some(back) => Some(back),
            None => self.front.as_mut(),
        }
    }

    #[inline]
    fn push_back(&mut self, segment: Segment) {
        if self.front.is_none() {
            self.front = Some(segment);
        } else {
            self.rest
                .get_or_insert_with(Box::default)
                .push_back(segment);
        }
    }

    fn push_front(&mut self, segment: Segment) {
        if let Some(old) = self.front.replace(segment) {
            self.rest.get_or_insert_with(Box::default).push_front(old);
        }
    }

    fn pop_front(&mut self) -> Option<Segment> {
        let front = self.front.take();
        if let Some(rest) = self.rest.as_mut() {
            self.front = rest.pop_front();
        }
        front
    }
}

/// What a TLS flush reads from a file segment at a time: one record.
const FILE_STAGE: u64 = 16 * 1024;

/// What one read gave.
pub(crate) enum ReadResult {
    /// This many bytes; the socket (or OpenSSL) may hold more.
    Data(usize),
    /// This many bytes, and the read provably emptied the socket (and
    /// OpenSSL), so another would only find `EAGAIN`.
    DataDrained(usize),
    WouldBlock,
    WantWrite,
    Eof,
}

impl PeerIo {
    /// A new peer over `sock`: TLS (first bytes not yet seen) with `tls`,
    /// else open for application data.
    pub(crate) fn new(
        sock: Socket,
        tls: Option<Ssl>,
        peer_addr: SocketAddr,
        local_addr: SocketAddr,
        handshake_timer: Option<TimerId>,
        counter: IoCounter,
    ) -> PeerIo {
        let phase = if tls.is_some() {
            Phase::Sniffing
        } else {
            Phase::Open
        };
        PeerIo {
            tls: tls.map(TlsState::new),
            sock,
            peer_addr,
            local_addr,
            phase,
            out: OutQueue::default(),
            out_pos: 0,
            queued: 0,
            sent: 0,
            sent_notice: false,
            failed: None,
            ending: Ending::NotAsked,
            reading: Reading::Active,
            input_gate: InputGate::Open,
            drain_notice: DrainNotice::NotOwed,
            timer_request: TimerRequest::Keep,
            protocol_timer: None,
            handshake_timer,
            linger_timer: None,
            lingered: 0,
            activity: Activity::Busy,
            counter,
        }
    }

    /// Counts `n` more queued bytes; over the high-water mark, the
    /// protocol is owed an `on_drained` for when it is back under.
    fn count_queued(&mut self, n: usize) {
        self.queued += n;
        if self.queued > HIGH_WATER {
            self.drain_notice = DrainNotice::Owed;
        }
    }

    /// Whether the protocol asked for the end ([`crate::Conn::close`] or
    /// [`crate::Conn::abort`]).
    pub(crate) fn end_asked(&self) -> bool {
        self.ending != Ending::NotAsked
    }

    /// Whether the protocol's last callback asked for nothing the worker
    /// must apply: no timer change, no failed flush, no end.
    pub(crate) fn asked_nothing(&self) -> bool {
        self.timer_request == TimerRequest::Keep
            && self.failed.is_none()
            && self.ending == Ending::NotAsked
    }

    pub(crate) fn queue_copy(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.count_queued(data.len());
        // The front buffer of a TLS write awaiting its retry stays as it is.
        let pinned_front = self.out.len() == 1
            && (self.out_pos > 0
                || self
                    .tls
                    .as_ref()
                    .is_some_and(|t| t.write_retry != WriteRetry::None));
        match self.out.back_mut() {
            Some(Segment::Bytes(back))
                if !pinned_front && back.len() + data.len() <= COALESCE_LIMIT =>
            {
                back.extend_from_slice(data)
            }
            _ => self.out.push_back(Segment::Bytes(data.to_vec())),
        }
    }

    pub(crate) fn queue_file(&mut self, file: File, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        self.count_queued(usize::try_from(len).unwrap_or(usize::MAX));
        self.out.push_back(Segment::File {
            file,
            offset,
            remaining: len,
        });
    }

    #[inline]
    pub(crate) fn queue_owned(&mut self, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        if self.out.is_empty() {
            // The usual answer: the buffer itself is queued, without a copy.
            self.count_queued(data.len());
            self.out.front = Some(Segment::Bytes(data));
            return;
        }
        // Small buffers join a queued one (fewer writes).
        if data.len() < 1024 {
            self.queue_copy(&data);
            crate::buffers::give(data);
            return;
        }
        self.count_queued(data.len());
        self.out.push_back(Segment::Bytes(data));
    }

    pub(crate) fn tls_peer_subject(&self) -> Option<String> {
        self.tls.as_ref()?.ssl.peer_subject()
    }

    pub(crate) fn tls_info(&self) -> Option<TlsInfo> {
        let tls = self.tls.as_ref()?;
        Some(TlsInfo {
            version: tls.ssl.version(),
            cipher: tls.ssl.cipher().unwrap_or(""),
            alpn: tls.ssl.alpn(),
        })
    }

    /// One read: `SSL_read` through the choke point, or `read(2)`.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<ReadResult, CloseReason> {
        let Some(tls) = self.tls.as_mut() else {
            return loop {
                match self.sock.read(buf) {
                    Ok(0) => break Ok(ReadResult::Eof),
                    Ok(n) => {
                        self.counter.received(n);
                        break Ok(if n < buf.len() {
                            ReadResult::DataDrained(n)
                        } else {
                            ReadResult::Data(n)
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        break Ok(ReadResult::WouldBlock)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(CloseReason::Socket(e)),
                }
            };
        };
        match tls.ssl.read(buf) {
            SslOutcome::Done(n) => {
                self.counter.received(n);
                Ok(if tls.ssl.socket_drained() {
                    ReadResult::DataDrained(n)
                } else {
                    ReadResult::Data(n)
                })
            }
            SslOutcome::WantRead => Ok(ReadResult::WouldBlock),
            SslOutcome::WantWrite => {
                tls.read_retry = ReadRetry::OnWritable;
                Ok(ReadResult::WantWrite)
            }
            SslOutcome::CloseNotify => Ok(ReadResult::Eof),
            fatal => Err(tls.fail(fatal)),
        }
    }

    /// [`PeerIo::flush`] for [`crate::Conn::flush`]: a failure is kept for
    /// the worker, which closes the connection when the callback returns.
    pub(crate) fn flush_in_callback(&mut self) {
        if let Err(reason) = self.flush() {
            self.failed = Some(Box::new(reason));
        }
    }

    /// Writes queued bytes until the queue is empty or the socket is full.
    pub(crate) fn flush(&mut self) -> Result<(), CloseReason> {
        if self.queued == 0 {
            // Nothing queued (a zero-length file is never queued), so no
            // TLS write is pending either.
            return Ok(());
        }
        if self.tls.is_none() && self.out.second().is_none() {
            if let Some(Segment::Bytes(front)) = &self.out.front {
                // The usual answer: one buffer over plaintext, which one
                // send(2) takes whole.
                match self.sock.write(&front[self.out_pos..]) {
                    Ok(n) if n == self.queued => {
                        self.counter.sent(n);
                        self.queued = 0;
                        self.sent += n as u64;
                        self.out_pos = 0;
                        if let Some(Segment::Bytes(sent)) = self.out.front.take() {
                            crate::buffers::give(sent);
                        }
                        return Ok(());
                    }
                    Ok(n) => {
                        self.counter.sent(n);
                        self.advance(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(CloseReason::Socket(e)),
                }
            }
        }
        self.flush_queue()
    }

    /// [`PeerIo::flush`] for any queue: TLS, several segments, files.
    #[inline(never)]
    fn flush_queue(&mut self) -> Result<(), CloseReason> {
        if self.queued == 0 {
            return Ok(());
        }
        if let Some(tls) = self.tls.as_mut() {
            if tls.write_retry == WriteRetry::PinnedUntilReadable {
                // Retried now; the outcome below says what it waits for.
                tls.write_retry = WriteRetry::Pinned;
            }
        }
        loop {
            let chunk = match self.out.front() {
                Some(Segment::Bytes(front)) => &front[self.out_pos..],
                Some(Segment::File { .. }) => {
                    if self.flush_file()? {
                        continue;
                    }
                    return Ok(());
                }
                None => return Ok(()),
            };
            let written = match self.tls.as_mut() {
                None => {
                    let result = if matches!(self.out.second(), Some(Segment::Bytes(_))) {
                        // Up to 64 buffers per writev(2) call, up to a file.
                        let mut slices = [io::IoSlice::new(&[]); 64];
                        slices[0] = io::IoSlice::new(chunk);
                        let mut n = 1;
                        for segment in self.out.behind_front().take(63) {
                            let Segment::Bytes(buf) = segment else { break };
                            slices[n] = io::IoSlice::new(buf);
                            n += 1;
                        }
                        self.sock.write_vectored(&slices[..n])
                    } else {
                        // One buffer (the common case: an answer's head and
                        // small body share one): send(2), which skips
                        // writev's iovec import and the VFS layer.
                        self.sock.write(chunk)
                    };
                    match result {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(CloseReason::Socket(e)),
                    }
                }
                Some(tls) => match tls.ssl.write(chunk) {
                    SslOutcome::Done(n) => {
                        tls.write_retry = WriteRetry::None;
                        n
                    }
                    SslOutcome::WantWrite => {
                        tls.write_retry = WriteRetry::Pinned;
                        return Ok(());
                    }
                    SslOutcome::WantRead => {
                        tls.write_retry = WriteRetry::PinnedUntilReadable;
                        return Ok(());
                    }
                    fatal => return Err(tls.fail(fatal)),
                },
            };
            self.counter.sent(written);
            self.advance(written);
            if self.queued == 0 {
                return Ok(());
            }
        }
    }

    /// Sends (plaintext) or stages as bytes (TLS) some of the front
    /// segment, a file. `Ok(false)`: the socket is full.
    fn flush_file(&mut self) -> Result<bool, CloseReason> {
        let Some(Segment::File {
            file,
            offset,
            remaining,
        }) = self.out.front_mut()
        else {
            unreachable!("the front segment is a file");
        };
        if self.tls.is_none() {
            match sys::sendfile(&self.sock, file, offset, *remaining) {
                Ok(0) => return Err(file_truncated()),
                Ok(n) => {
                    self.counter.sent(n);
                    *remaining -= n as u64;
                    self.queued -= n;
                    self.sent += n as u64;
                    if *remaining == 0 {
                        self.out.pop_front();
                    }
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
                Err(e) => return Err(CloseReason::Socket(e)),
            }
        }
        // TLS: stage one record's worth as bytes, so a retried
        // SSL_write finds exactly the same bytes.
        let mut staged = vec![0; (*remaining).min(FILE_STAGE) as usize];
        let n = match std::os::unix::fs::FileExt::read_at(&*file, &mut staged, *offset) {
            Ok(0) => return Err(file_truncated()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
            Err(e) => return Err(CloseReason::Socket(e)),
        };
        staged.truncate(n);
        *offset += n as u64;
        *remaining -= n as u64;
        if *remaining == 0 {
            self.out.pop_front();
        }
        self.out.push_front(Segment::Bytes(staged));
        self.out_pos = 0;
        Ok(true)
    }

    /// Drops `n` sent bytes from the front of the queue.
    fn advance(&mut self, mut n: usize) {
        self.queued -= n;
        self.sent += n as u64;
        if self.queued == 0 {
            // All of it went out (the usual case: one answer, one buffer).
            while let Some(segment) = self.out.pop_front() {
                if let Segment::Bytes(sent) = segment {
                    crate::buffers::give(sent);
                }
            }
            self.out_pos = 0;
            return;
        }
        while n > 0 {
            let Some(Segment::Bytes(front)) = self.out.front() else {
                unreachable!("advanced past the queued bytes");
            };
            let front_left = front.len() - self.out_pos;
            if n < front_left {
                self.out_pos += n;
                return;
            }
            n -= front_left;
            if let Some(Segment::Bytes(sent)) = self.out.pop_front() {
                crate::buffers::give(sent);
            }
            self.out_pos = 0;
        }
    }
}

fn file_truncated() -> CloseReason {
    CloseReason::Socket(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "file shrank while being sent",
    ))
}

impl TlsState {
    /// Records a fatal outcome (no `SSL_shutdown` from now on) and turns it
    /// into a close reason.
    pub(crate) fn fail(&mut self, outcome: SslOutcome) -> CloseReason {
        self.session = Session::Failed;
        match outcome {
            SslOutcome::PeerClosedWithoutNotify => CloseReason::PeerClosedWithoutNotify,
            SslOutcome::Socket(e) => CloseReason::Socket(e),
            SslOutcome::CloseNotify => CloseReason::Closed,
            SslOutcome::Protocol { ssl_error, first } => {
                CloseReason::Tls(TlsFailure::new(ssl_error, first))
            }
            // Success and wants are not failures; never passed here.
            SslOutcome::Done(_) | SslOutcome::WantRead | SslOutcome::WantWrite => {
                CloseReason::Tls(TlsFailure::new(crate::classify::SSL_ERROR_NONE, None))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(segment: Option<Segment>) -> Option<Vec<u8>> {
        match segment? {
            Segment::Bytes(b) => Some(b),
            Segment::File { .. } => panic!("a file segment"),
        }
    }

    #[test]
    fn out_queue_keeps_order_across_front_and_rest() {
        let mut out = OutQueue::default();
        assert!(out.is_empty());
        out.push_back(Segment::Bytes(vec![1]));
        out.push_back(Segment::Bytes(vec![2]));
        out.push_back(Segment::Bytes(vec![3]));
        assert_eq!(out.len(), 3);
        assert!(matches!(out.second(), Some(Segment::Bytes(b)) if b == &[2]));
        assert_eq!(out.behind_front().count(), 2);
        if let Some(Segment::Bytes(back)) = out.back_mut() {
            back.push(4);
        }
        assert_eq!(bytes(out.pop_front()), Some(vec![1]));
        out.push_front(Segment::Bytes(vec![0]));
        assert_eq!(bytes(out.pop_front()), Some(vec![0]));
        assert_eq!(bytes(out.pop_front()), Some(vec![2]));
        assert_eq!(bytes(out.pop_front()), Some(vec![3, 4]));
        assert!(out.is_empty());
        assert_eq!(out.len(), 0);
        assert!(out.pop_front().is_none());
        out.push_front(Segment::Bytes(vec![5]));
        assert_eq!(out.len(), 1);
        assert_eq!(bytes(out.pop_front()), Some(vec![5]));
    }

    /// Every open connection holds a `PeerIo` in its worker's slab, idle
    /// or not: what only a handshake or a close needs must not grow it.
    #[test]
    fn peer_io_stays_small() {
        assert!(
            std::mem::size_of::<PeerIo>() <= 256,
            "PeerIo grew to {} bytes",
            std::mem::size_of::<PeerIo>()
        );
    }
}
