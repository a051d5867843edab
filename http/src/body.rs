//! Streamed request bodies: [`BodyStream`], for uploads larger than memory.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use pistachio_transport::PeerHandle;

use crate::writer::HttpMsg;

/// How a request's body reaches the handler; chosen per request by
/// [`Handler::body_mode`](crate::Handler::body_mode).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyMode {
    /// The whole body is collected first, up to `max_request_size`
    /// (Pistache's behaviour); [`Request::body`](crate::Request::body).
    #[default]
    Buffered,
    /// The handler is called as soon as the head arrives and reads the body
    /// as it comes, from [`Request::take_body_stream`](crate::Request::take_body_stream).
    /// No size limit applies: memory stays bounded by flow control.
    Streamed,
    /// Like [`Streamed`](BodyMode::Streamed), but at most this many body
    /// bytes, in place of the endpoint's `max_request_size` (higher or
    /// lower): a larger declared `Content-Length` is refused with `413
    /// Payload Too Large` before any of the body is read; a chunked body
    /// that grows past it fails the stream with
    /// [`io::ErrorKind::InvalidData`] carrying a [`BodyTooLarge`] (match it
    /// with [`BodyTooLarge::of`]), and the connection closes after the
    /// handler's answer (which says `Connection: close`).
    StreamedUpTo(u64),
}

/// The error inside the [`io::Error`] (kind
/// [`InvalidData`](io::ErrorKind::InvalidData)) that a [`BodyStream`]
/// fails with when the body grows past its route's limit
/// ([`BodyMode::StreamedUpTo`]): the answer a handler owes is `413 Payload
/// Too Large`, not the `400` of malformed framing.
///
/// ```
/// use std::io;
/// use pistachio_http::BodyTooLarge;
///
/// fn status_of(e: &io::Error) -> u16 {
///     if BodyTooLarge::of(e).is_some() {
///         413
///     } else {
///         400
///     }
/// }
/// let over = io::Error::new(io::ErrorKind::InvalidData, BodyTooLarge::new(1024));
/// assert_eq!(status_of(&over), 413);
/// assert_eq!(status_of(&io::Error::new(io::ErrorKind::InvalidData, "bad chunk")), 400);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTooLarge {
    limit: u64,
}

impl BodyTooLarge {
    /// The error of a body over `limit` bytes.
    pub fn new(limit: u64) -> BodyTooLarge {
        BodyTooLarge { limit }
    }

    /// The limit the body went past, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The [`BodyTooLarge`] inside `error`, if that is what it is.
    pub fn of(error: &io::Error) -> Option<&BodyTooLarge> {
        error.get_ref()?.downcast_ref::<BodyTooLarge>()
    }
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body exceeds its size limit ({} bytes)",
            self.limit
        )
    }
}

impl std::error::Error for BodyTooLarge {}

/// Decoded bytes a stream may hold before the connection stops reading.
const HIGH_WATER: usize = 1024 * 1024;
/// ...and below which it reads again.
const LOW_WATER: usize = 256 * 1024;

thread_local! {
    /// Set on reactor worker threads: a blocking read there would stall the
    /// very loop that feeds the stream.
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

pub(crate) fn mark_worker_thread() {
    ON_WORKER.with(|w| w.set(true));
}

/// Whether this thread is a reactor worker (which must never block).
pub(crate) fn on_worker() -> bool {
    ON_WORKER.with(Cell::get)
}

#[derive(Debug)]
pub(crate) enum Piece {
    Data(Vec<u8>),
    End,
    Failed(io::ErrorKind, &'static str),
    TooLarge(u64),
}

/// Byte accounting shared by the connection (producer) and the stream.
#[derive(Debug)]
pub(crate) struct Backpressure {
    queued: AtomicUsize,
    paused: AtomicBool,
    peer: PeerHandle<HttpMsg>,
}

/// The connection's end of a streamed body.
#[derive(Debug)]
pub(crate) struct BodySender {
    tx: Sender<Piece>,
    flow: Arc<Backpressure>,
}

impl BodySender {
    /// Queues decoded bytes. Returns `true` if the connection should pause
    /// reading until the handler catches up (an `HttpMsg::ResumeBody`
    /// arrives when it has).
    pub(crate) fn send(&self, data: Vec<u8>) -> bool {
        if data.is_empty() {
            return false;
        }
        let n = data.len();
        // Count before sending: the reader subtracts as soon as it receives.
        let queued = self.flow.queued.fetch_add(n, Ordering::SeqCst) + n;
        if self.tx.send(Piece::Data(data)).is_err() {
            // The handler dropped the stream: the rest is discarded.
            self.flow.queued.fetch_sub(n, Ordering::SeqCst);
            return false;
        }
        if queued <= HIGH_WATER {
            return false;
        }
        self.flow.paused.store(true, Ordering::SeqCst);
        // The reader may have drained meanwhile: then do not pause at all.
        if self.flow.queued.load(Ordering::SeqCst) <= LOW_WATER
            && self.flow.paused.swap(false, Ordering::SeqCst)
        {
            return false;
        }
        true
    }

    pub(crate) fn end(&self) {
        let _ = self.tx.send(Piece::End);
    }

    /// Ends the stream with an error: `UnexpectedEof` when the client went
    /// away, `InvalidData` for malformed framing.
    pub(crate) fn fail(&self, kind: io::ErrorKind, why: &'static str) {
        let _ = self.tx.send(Piece::Failed(kind, why));
    }

    /// Ends the stream with a [`BodyTooLarge`] error.
    pub(crate) fn too_large(&self, limit: u64) {
        let _ = self.tx.send(Piece::TooLarge(limit));
    }
}

/// A request body read as it arrives (see [`BodyMode::Streamed`]).
///
/// `Send`: read it from another thread. Reads block until data arrives, up
/// to the endpoint's body timeout; a read on the connection's own worker
/// thread that would block fails with [`io::ErrorKind::WouldBlock`] instead
/// of stalling the event loop. Reading applies backpressure: the client is
/// held back by TCP flow control while more than 1 MiB is unread.
pub struct BodyStream {
    rx: Receiver<Piece>,
    flow: Arc<Backpressure>,
    current: Vec<u8>,
    pos: usize,
    finished: bool,
    timeout: Duration,
    length: Option<u64>,
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyStream")
            .field("length", &self.length)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

pub(crate) fn channel(
    peer: PeerHandle<HttpMsg>,
    timeout: Duration,
    length: Option<u64>,
) -> (BodySender, BodyStream) {
    let (tx, rx) = mpsc::channel();
    let flow = Arc::new(Backpressure {
        queued: AtomicUsize::new(0),
        paused: AtomicBool::new(false),
        peer,
    });
    (
        BodySender {
            tx,
            flow: Arc::clone(&flow),
        },
        BodyStream {
            rx,
            flow,
            current: Vec::new(),
            pos: 0,
            finished: false,
            timeout,
            length,
        },
    )
}

impl BodyStream {
    /// The length the client declared (`Content-Length`), if any; `None`
    /// for chunked bodies.
    pub fn declared_length(&self) -> Option<u64> {
        self.length
    }

    /// The next piece of the body as the client sent it, `Ok(None)` at its
    /// end. Errors: the client went away or sent malformed framing
    /// ([`io::ErrorKind::UnexpectedEof`] / [`io::ErrorKind::InvalidData`]),
    /// the body grew past its route's limit ([`BodyTooLarge`], of kind
    /// `InvalidData`), nothing arrived within the body timeout ([`io::ErrorKind::TimedOut`]).
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.pos < self.current.len() {
            // What `read` left of the current piece, without a copy.
            let mut rest = std::mem::take(&mut self.current);
            rest.drain(..self.pos);
            self.pos = 0;
            return Ok(Some(rest));
        }
        if self.finished {
            return Ok(None);
        }
        let closed = || {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed during the body",
            )
        };
        let piece = if ON_WORKER.with(Cell::get) {
            // Blocking here would stall the loop that feeds this stream.
            self.rx.try_recv().map_err(|e| match e {
                TryRecvError::Empty => io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "reading a body stream on its worker thread would block the event loop; \
                     read it from another thread",
                ),
                TryRecvError::Disconnected => closed(),
            })?
        } else {
            self.rx.recv_timeout(self.timeout).map_err(|e| match e {
                RecvTimeoutError::Timeout => {
                    io::Error::new(io::ErrorKind::TimedOut, "request body timed out")
                }
                RecvTimeoutError::Disconnected => closed(),
            })?
        };
        match piece {
            Piece::Data(data) => {
                self.consumed(data.len());
                Ok(Some(data))
            }
            Piece::End => {
                self.finished = true;
                Ok(None)
            }
            Piece::Failed(kind, why) => {
                self.finished = true;
                Err(io::Error::new(kind, why))
            }
            Piece::TooLarge(limit) => {
                self.finished = true;
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    BodyTooLarge::new(limit),
                ))
            }
        }
    }

    /// Tells the connection `n` bytes were taken; resumes its reading once
    /// the backlog is low.
    fn consumed(&self, n: usize) {
        let left = self.flow.queued.fetch_sub(n, Ordering::SeqCst) - n;
        if left <= LOW_WATER && self.flow.paused.swap(false, Ordering::SeqCst) {
            let _ = self.flow.peer.post(HttpMsg::ResumeBody);
        }
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        // A connection paused for this stream must not stay paused: the
        // rest of the body is now discarded as it arrives.
        if self.flow.paused.swap(false, Ordering::SeqCst) {
            let _ = self.flow.peer.post(HttpMsg::ResumeBody);
        }
    }
}

impl io::Read for BodyStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.current.len() {
            match self.next_chunk()? {
                Some(chunk) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
