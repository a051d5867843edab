//! [`ResponseWriter`] and [`ResponseStream`]: answer one request, from the
//! worker or from any thread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, LAST_MODIFIED, SET_COOKIE};
use http::{HeaderMap, Method, StatusCode, Version};
use pistachio_transport::PeerHandle;

use crate::encode::{self, Active, BodyEncoder, Encoding};
use crate::middleware::{empty_headers, Layered, Layers, Middleware, Pending, RequestInfo};
use crate::pool;
use crate::respond::Response;
use crate::response::{
    force_close, status_allows_body, write_head, write_head_chunked, write_head_close_delimited,
    Framing, Payload, Then, SERVER_TEXT,
};

/// A file (or a range of one) to send as (part of) a response body.
#[derive(Debug)]
pub(crate) struct FileBody {
    pub(crate) file: File,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// Bytes of one response on their way to the connection: the whole
/// response, or a part of a streamed one.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) seq: u64,
    pub(crate) bytes: Vec<u8>,
    /// Sent after `bytes`.
    pub(crate) file: Option<FileBody>,
    /// Whether this part ends its response.
    pub(crate) step: Step,
    /// What the connection does after this response.
    pub(crate) then: Then,
    /// 0 from the request's own writer, 1 from the one given to
    /// `Handler::on_timeout` (which then wins).
    pub(crate) attempt: u8,
    /// With the head, when middleware wraps the exchange: what its
    /// completion hooks are told.
    pub(crate) record: Option<Box<Pending>>,
    /// The server cut this answer off (it ends with this part).
    pub(crate) cut: bool,
    /// A stream's credit: `bytes` are counted in it until written.
    pub(crate) credit: Option<Arc<AtomicUsize>>,
}

/// What a connection shares with the writers and streams answering its
/// requests: where to post what they produce off its worker, whether its
/// client is gone, a place for their producers to wait until the
/// connection writes what they handed over, and which response is its
/// last. Held by reference count, so that a writer costs one count, not
/// one per field.
#[derive(Debug)]
pub(crate) struct ConnFlow {
    /// The connection's mailbox, set when its first writer is made (the
    /// connection is built before it has one).
    peer: OnceLock<PeerHandle<HttpMsg>>,
    /// The connection's id (see `enter_inline`).
    pub(crate) conn_id: u64,
    /// The client's address.
    pub(crate) peer_addr: SocketAddr,
    gone: AtomicBool,
    /// Sequence number of the connection's last response (the connection
    /// closes after it), or `u64::MAX`: set when a graceful shutdown begins.
    last_seq: AtomicU64,
    /// Wakers of non-blocking producers waiting for room.
    wakers: Mutex<Vec<Waker>>,
    /// Blocking producers waiting for room (paired with `wakers`' lock).
    room: Condvar,
}

impl ConnFlow {
    /// The flow of connection `conn_id` (its mailbox comes with
    /// [`ConnFlow::connect`]).
    pub(crate) fn new(conn_id: u64, peer_addr: SocketAddr) -> ConnFlow {
        ConnFlow {
            peer: OnceLock::new(),
            conn_id,
            peer_addr,
            gone: AtomicBool::new(false),
            last_seq: AtomicU64::new(u64::MAX),
            wakers: Mutex::default(),
            room: Condvar::new(),
        }
    }
}

impl ConnFlow {
    /// Sets the connection's mailbox if it is not set yet (`peer` is only
    /// called then).
    pub(crate) fn connect(&self, peer: impl FnOnce() -> PeerHandle<HttpMsg>) {
        self.peer.get_or_init(peer);
    }

    /// Posts `msg` to the connection's worker; gives it back if the
    /// connection or its worker is gone.
    fn post(&self, msg: HttpMsg) -> Result<(), HttpMsg> {
        match self.peer.get() {
            Some(peer) => peer.post(msg),
            None => Err(msg),
        }
    }

    /// Response `seq` is the connection's last: it says `Connection:
    /// close`.
    pub(crate) fn set_last(&self, seq: u64) {
        self.last_seq.store(seq, Ordering::Relaxed);
    }

    /// Whether response `seq` is the connection's last.
    pub(crate) fn is_last(&self, seq: u64) -> bool {
        self.last_seq.load(Ordering::Relaxed) == seq
    }

    /// `n` bytes of the stream counted by `credit` are written (or
    /// discarded): wake its producer.
    pub(crate) fn release(&self, credit: &AtomicUsize, n: usize) {
        if n == 0 {
            return;
        }
        credit.fetch_sub(n, Ordering::SeqCst);
        self.wake_all();
    }

    /// The client is gone: every producer learns it at its next write.
    pub(crate) fn close(&self) {
        self.gone.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    fn wake_all(&self) {
        let wakers = {
            let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
            self.room.notify_all();
            std::mem::take(&mut *wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

/// The error a stream write gets once its client is gone.
fn client_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "client went away")
}

/// What the connection needs to answer a request in place of its handler.
#[derive(Debug, Clone)]
pub(crate) struct RequestFacts {
    pub(crate) seq: u64,
    pub(crate) method: Method,
    pub(crate) version: Version,
    pub(crate) then: Then,
    pub(crate) layered: Option<Box<Layered>>,
}

/// Whether a part handed to the connection ends its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Step {
    /// More parts follow (a streamed response being written).
    #[default]
    More,
    /// The response is complete with this part.
    Last,
}

/// Messages the HTTP layer posts to a connection.
#[derive(Debug)]
pub(crate) enum HttpMsg {
    /// A response (or part of one) produced on another thread.
    Response(Outgoing),
    /// `ResponseWriter::timeout_after` from another thread.
    Deadline(RequestFacts, Instant),
    /// A streamed request body's reader caught up: read again.
    ResumeBody,
}

thread_local! {
    /// The connection whose handler is running on this thread right now,
    /// and the responses it produced synchronously: those skip the mailbox.
    static INLINE: RefCell<Inline> = const {
        RefCell::new(Inline {
            conn_id: None,
            first: None,
            more: VecDeque::new(),
            deadlines: Vec::new(),
        })
    };
}

/// The inline section of this thread: the first part produced (a handler
/// answering at once produces one), then any others in order; the queue
/// keeps its capacity from one request to the next.
struct Inline {
    conn_id: Option<u64>,
    first: Option<Outgoing>,
    more: VecDeque<Outgoing>,
    deadlines: Vec<(RequestFacts, Instant)>,
}

impl Inline {
    fn push(&mut self, out: Outgoing) {
        if self.first.is_none() {
            self.first = Some(out);
        } else {
            self.more.push_back(out);
        }
    }
}

/// Marks `conn_id` as the connection running a handler on this thread.
pub(crate) fn enter_inline(conn_id: u64) {
    INLINE.with(|slot| slot.borrow_mut().conn_id = Some(conn_id));
}

/// What an inline section produced.
pub(crate) enum Produced {
    /// A response, or a part of one.
    Part(Outgoing),
    /// A response deadline (`ResponseWriter::timeout_after`).
    Deadline(RequestFacts, Instant),
}

/// Ends the inline section, handing what it produced to `take`: the parts
/// in order, then the deadlines in order. The thread's queue is not
/// borrowed while `take` runs.
///
/// Nothing is added to the section once it ended (writers post through
/// the mailbox then), so one look says whether more than the first part,
/// or any deadline, is waiting: the usual single answer costs one access
/// to the thread's section.
pub(crate) fn leave_inline(mut take: impl FnMut(Produced)) {
    let (first, more, deadlines) = INLINE.with(|slot| {
        let mut inline = slot.borrow_mut();
        inline.conn_id = None;
        let first = inline.first.take();
        (first, !inline.more.is_empty(), !inline.deadlines.is_empty())
    });
    if let Some(first) = first {
        take(Produced::Part(first));
    }
    if more {
        while let Some(out) = INLINE.with(|slot| slot.borrow_mut().more.pop_front()) {
            take(Produced::Part(out));
        }
    }
    if deadlines {
        let deadlines = INLINE.with(|slot| std::mem::take(&mut slot.borrow_mut().deadlines));
        for (facts, at) in deadlines {
            take(Produced::Deadline(facts, at));
        }
    }
    debug_assert!(
        INLINE.with(|slot| {
            let inline = slot.borrow();
            inline.first.is_none() && inline.more.is_empty()
        }),
        "a part was added to an ended inline section"
    );
}

/// Where a writer delivers its response.
pub(crate) struct Target {
    pub(crate) seq: u64,
    pub(crate) method: Method,
    pub(crate) version: Version,
    /// What the request asked for (`Connection`, its version).
    pub(crate) then: Then,
    pub(crate) attempt: u8,
    pub(crate) max_response_size: usize,
    /// The middleware wrapping this exchange, if any.
    pub(crate) layered: Option<Box<Layered>>,
    /// The connection's client state and last response, shared with
    /// streams.
    pub(crate) flow: Arc<ConnFlow>,
    /// See `Options::max_stream_buffer`.
    pub(crate) max_stream_buffer: usize,
    /// See `Options::stream_write_timeout`.
    pub(crate) stream_write_timeout: Duration,
}

impl Target {
    /// What the connection does after this response: it closes if the
    /// request said so, or if this is its last response (a graceful
    /// shutdown, a broken body, the client gone).
    fn then_now(&self) -> Then {
        if self.flow.is_last(self.seq) {
            Then::Close
        } else {
            self.then
        }
    }

    /// A `HEAD` request's answer has no body bytes.
    fn payload(&self, status: StatusCode) -> Payload {
        Payload::of(&self.method, status)
    }

    fn facts(&self) -> RequestFacts {
        RequestFacts {
            seq: self.seq,
            method: self.method.clone(),
            version: self.version,
            then: self.then,
            layered: self.layered.clone(),
        }
    }

    /// Runs the response hooks over `headers` (made if there are none,
    /// for hooks to add to); `Err` if one panicked.
    fn respond(&self, status: StatusCode, headers: &mut Headers) -> Result<(), ()> {
        match &self.layered {
            Some(layered) if layered.wants_response() => layered.respond(status, map_mut(headers)),
            _ => Ok(()),
        }
    }

    /// The completion record of an answer whose head is `head_len` bytes.
    #[inline]
    fn record(
        &mut self,
        status: StatusCode,
        headers: &mut Headers,
        head_len: usize,
    ) -> Option<Box<Pending>> {
        let layered = self.layered.take()?;
        Some(layered.answered(status, headers.take(), head_len))
    }

    fn set_deadline(&self, at: Instant) {
        let facts = self.facts();
        let posted = INLINE.with(|slot| {
            let mut inline = slot.borrow_mut();
            if inline.conn_id == Some(self.flow.conn_id) {
                inline.deadlines.push((facts.clone(), at));
                true
            } else {
                false
            }
        });
        if !posted {
            let _ = self.flow.post(HttpMsg::Deadline(facts, at));
        }
    }

    /// Hands the last (or only) part of an answer, with the answer's
    /// completion record when middleware wants one.
    fn deliver_last(
        &self,
        bytes: Vec<u8>,
        file: Option<FileBody>,
        then: Then,
        record: Option<Box<Pending>>,
    ) {
        self.hand(Outgoing {
            seq: self.seq,
            bytes,
            file,
            step: Step::Last,
            then,
            attempt: self.attempt,
            record,
            cut: false,
            credit: None,
        });
    }

    /// Hands a part to the connection: directly when on its worker inside
    /// its handler, else through the worker's mailbox.
    fn hand(&self, out: Outgoing) {
        let out = INLINE.with(|slot| {
            let mut inline = slot.borrow_mut();
            if inline.conn_id == Some(self.flow.conn_id) {
                inline.push(out);
                None
            } else {
                Some(out)
            }
        });
        if let Some(out) = out {
            if let Err(HttpMsg::Response(out)) = self.flow.post(HttpMsg::Response(out)) {
                log::debug!(
                    "{}: server stopped before the response",
                    self.flow.peer_addr
                );
                self.flow.close();
                if let Some(record) = out.record {
                    record.complete(false, crate::End::ClientGone, Instant::now());
                }
            }
        }
    }
}

/// A response's header fields: none until one is set (most answers of a
/// plain handler have none), then a map from the worker's pool.
type Headers = Option<Box<HeaderMap>>;

/// The map of `headers`, made if there is none.
fn map_mut(headers: &mut Headers) -> &mut HeaderMap {
    headers.get_or_insert_with(|| pool::header_map(0))
}

/// The map of `headers`, or a shared empty one.
fn map(headers: &Headers) -> &HeaderMap {
    headers.as_deref().unwrap_or_else(|| empty_headers())
}

/// Answers one request (Pistache's `Http::ResponseWriter`).
///
/// `Send`: a handler may move it to another thread and answer later; the
/// response is handed to the connection's worker and sent in request order
/// (pipelined requests are answered in the order they arrived).
///
/// Dropping a writer without answering sends `500 Internal Server Error`,
/// so a connection never hangs on a forgotten or panicking handler.
#[must_use = "dropping a ResponseWriter without answering sends 500"]
pub struct ResponseWriter {
    target: Option<Target>,
    /// Made (from the worker's pool) when the first field is set.
    headers: Headers,
    /// What the body goes through, if anything (see [`Encoding`]).
    encoding: Option<encode::Pending>,
}

impl fmt::Debug for ResponseWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseWriter")
            .field("seq", &self.target.as_ref().map(|t| t.seq))
            .field("headers", &self.headers)
            .finish()
    }
}

impl ResponseWriter {
    pub(crate) fn new(target: Target) -> Self {
        ResponseWriter {
            target: Some(target),
            headers: None,
            encoding: None,
        }
    }

    /// Passes the body of this answer through `encoding` (a content
    /// coding such as gzip; see [`Encoding`]): asked once, when the head
    /// is about to be written, whether to encode the body of
    /// [`send`](ResponseWriter::send) or [`stream`](ResponseWriter::stream)
    /// (files are sent as they are). A later call replaces it.
    pub fn set_encoding(&mut self, encoding: impl Encoding) {
        self.encoding = Some(encode::Pending(Box::new(encoding)));
    }

    /// Whether an [`Encoding`] is set.
    pub fn has_encoding(&self) -> bool {
        self.encoding.is_some()
    }

    fn target(&self) -> &Target {
        self.target
            .as_ref()
            .expect("a writer has a target until it answers")
    }

    /// Wraps this exchange in `layer` too, inside the middleware already
    /// wrapping it: its [`Middleware::on_response`] runs before theirs and
    /// its [`Middleware::on_complete`] too. For handlers that bring
    /// middleware of their own (a router's layers); the handler's
    /// [`Handler::layered`](crate::Handler::layered) should say so, or the
    /// exchange's [`RequestInfo`] lacks its target and path.
    pub fn push_layer(&mut self, layer: Arc<dyn Middleware>) {
        let Some(target) = self.target.as_mut() else {
            return;
        };
        let layered = target.layered.get_or_insert_with(|| {
            let info =
                RequestInfo::partial(target.method.clone(), target.version, target.flow.peer_addr);
            Box::new(Layered::new(info, Layers::owned(Vec::new())))
        });
        layered.layers.push(layer);
    }

    /// Names the route template that answers this request (`/users/:id`)
    /// for the middleware wrapping the exchange
    /// ([`RequestInfo::route`]); a router calls it once it has matched a
    /// route. Costs nothing when no middleware wraps the exchange.
    pub fn set_route(&mut self, template: Arc<str>) {
        if let Some(layered) = self.target.as_mut().and_then(|t| t.layered.as_mut()) {
            layered.info.route = Some(template);
        }
    }

    /// The response headers so far. `Content-Length`, `Date`, `Connection`
    /// and `Transfer-Encoding` are managed by the server and ignored here.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        map_mut(&mut self.headers)
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        map_mut(&mut self.headers).append(name, value);
        self
    }

    /// Sets `Content-Type` (Pistache's `setMime`). An invalid value is ignored.
    pub fn set_mime(&mut self, mime: &str) {
        if let Ok(v) = HeaderValue::from_str(mime) {
            map_mut(&mut self.headers).insert(CONTENT_TYPE, v);
        }
    }

    /// Adds a `Set-Cookie` header, e.g. `"id=42; Path=/; HttpOnly"`. An
    /// invalid value (control characters) is ignored.
    pub fn add_cookie(&mut self, cookie: &str) {
        if let Ok(v) = HeaderValue::from_str(cookie) {
            map_mut(&mut self.headers).append(SET_COOKIE, v);
        }
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.target().flow.peer_addr
    }

    /// Answer within `after`, counted from this call (Pistache's
    /// `timeoutAfter`): if by then nothing of the response has reached the
    /// connection (for a [`ResponseStream`], nothing flushed yet), the
    /// connection calls [`Handler::on_timeout`] (default: `408 Request
    /// Timeout`, the connection staying open unless the request asked to
    /// close) with a fresh writer for this request, and whatever this
    /// writer sends later is discarded. A later call replaces the deadline.
    ///
    /// [`Handler::on_timeout`]: crate::Handler::on_timeout
    pub fn timeout_after(&mut self, after: Duration) {
        let target = self.target();
        target.set_deadline(Instant::now() + after);
    }

    /// The method of the request being answered.
    pub fn method(&self) -> &Method {
        &self.target().method
    }

    /// The version of the request being answered.
    pub fn version(&self) -> Version {
        self.target().version
    }

    /// Sends the response with `body` (and its `Content-Length`). For `HEAD`
    /// requests, and for statuses that have no body (1xx, 204, 304), only
    /// the head is sent.
    pub fn send(mut self, status: StatusCode, body: impl AsRef<[u8]>) {
        // The target and headers are lent, not moved, down the call chain
        // (a target is 176 bytes; each move was a `memcpy`), and dropped
        // with the writer.
        let ResponseWriter {
            target: Some(target),
            headers,
            encoding,
        } = &mut self
        else {
            return;
        };
        match encoding.take() {
            None => send_whole(target, status, headers, body.as_ref()),
            Some(encoding) => send_encoded(target, status, headers, body.as_ref(), encoding.0),
        }
        self.target = None;
    }

    /// Sends `response`: its status, its fields after any set on this
    /// writer, and its body, as [`send`](ResponseWriter::send) does.
    pub fn send_response(mut self, response: Response) {
        let (status, fields, body) = response.into_parts();
        if let Some(fields) = fields {
            match &mut self.headers {
                None => self.headers = Some(fields),
                Some(mine) => {
                    for (name, value) in fields.iter() {
                        mine.append(name.clone(), value.clone());
                    }
                    pool::recycle_header_map(fields);
                }
            }
        }
        self.send(status, body);
    }

    /// Sends the file at `path` with `200 OK` (Pistache's `serveFile`):
    /// `Content-Type` from its extension unless already set, `Content-Length`
    /// and `Last-Modified` from its metadata. The body goes out with
    /// `sendfile(2)` over plaintext, read and encrypted piecewise over TLS.
    ///
    /// If the file cannot be served, answers `404` (missing or not a regular
    /// file), `403` (permission denied) or `500`, and returns the error.
    ///
    /// # Paths from requests
    ///
    /// `path` is opened as given. Never build it from a request unchecked:
    /// a path parameter is percent-decoded, so `/files/..%2F..%2Fetc%2Fpasswd`
    /// hands `../../etc/passwd` to a route `/files/:name`, and a joined
    /// path walks out of its directory. To serve a directory, use
    /// `pistachio_rest::ServeDir` (or `Router::serve_dir`), which refuses
    /// `..`, encoded separators, NUL and symlinks leaving its root, and
    /// answers conditional and `Range` requests.
    pub fn serve_file(mut self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        let opened = File::open(path).and_then(|file| {
            let meta = file.metadata()?;
            if meta.is_file() {
                Ok((file, meta))
            } else {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "not a regular file",
                ))
            }
        });
        let (file, meta) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                let status = match e.kind() {
                    io::ErrorKind::NotFound => StatusCode::NOT_FOUND,
                    io::ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                if let Some(headers) = &mut self.headers {
                    headers.remove(CONTENT_TYPE);
                }
                let reason = status.canonical_reason().unwrap_or("error");
                self.send(status, reason);
                return Err(e);
            }
        };
        let headers = map_mut(&mut self.headers);
        if !headers.contains_key(CONTENT_TYPE) {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            if let Ok(v) = HeaderValue::from_str(mime.essence_str()) {
                headers.insert(CONTENT_TYPE, v);
            }
        }
        if let Ok(modified) = meta.modified() {
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
                headers.insert(LAST_MODIFIED, v);
            }
        }
        let len = meta.len();
        self.file_answer(StatusCode::OK, file, 0, len)
    }

    /// Sends `len` bytes of `file` from `offset` as the body of an answer
    /// with `status`, by the same path as [`serve_file`](Self::serve_file)
    /// (`sendfile(2)` over plaintext, bounded reads encrypted piecewise
    /// over TLS): for `206 Partial Content` answers to a `Range` request.
    /// Every header field (`Content-Type`, `Content-Range`, validators) is
    /// the caller's; `Content-Length` is `len`. For `HEAD` requests only
    /// the head is sent.
    ///
    /// Fails (answering `500`) if the file is shorter than `offset + len`
    /// or its metadata cannot be read.
    ///
    /// Paths from requests must never reach a file unchecked: see
    /// [`serve_file`](Self::serve_file).
    pub fn send_file(
        self,
        status: StatusCode,
        file: File,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        let size = match file.metadata() {
            Ok(meta) => meta.len(),
            Err(e) => {
                self.send(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
                return Err(e);
            }
        };
        if offset.checked_add(len).map_or(true, |end| end > size) {
            self.send(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range beyond the end of the file",
            ));
        }
        self.file_answer(status, file, offset, len)
    }

    /// The answer of [`serve_file`](Self::serve_file) and
    /// [`send_file`](Self::send_file): a head, then `len` bytes of `file`
    /// from `offset`.
    fn file_answer(
        mut self,
        status: StatusCode,
        file: File,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        let Ok(length) = usize::try_from(len) else {
            self.send(StatusCode::INTERNAL_SERVER_ERROR, "file too large");
            return Err(io::Error::other("file too large for this platform"));
        };
        let mut target = self.target.take().expect("a writer answers once");
        let mut headers = self.headers.take();
        if target.respond(status, &mut headers).is_err() {
            send_panicked(&mut target);
            return Ok(());
        }
        let then = target.then_now();
        let mut head = Vec::with_capacity(256);
        write_head(
            &mut head,
            target.version,
            status,
            map(&headers),
            length,
            then,
        );
        let body =
            (target.payload(status) == Payload::Body).then_some(FileBody { file, offset, len });
        let record = target.record(status, &mut headers, head.len());
        target.deliver_last(head, body, then, record);
        Ok(())
    }

    /// Starts a streamed response of unknown length: chunked for HTTP/1.1
    /// clients, delimited by closing the connection for HTTP/1.0 ones.
    /// The head is sent with the first [`ResponseStream::flush`] or
    /// [`ResponseStream::end`].
    pub fn stream(mut self, status: StatusCode) -> ResponseStream {
        let mut target = self.target.take().expect("a writer answers once");
        let mut headers = self.headers.take();
        let flow = Arc::clone(&target.flow);
        let (limit, timeout) = (target.max_stream_buffer, target.stream_write_timeout);
        if target.respond(status, &mut headers).is_err() {
            send_panicked(&mut target);
            return ResponseStream {
                encoder: None,
                unflushed: 0,
                payload: Payload::HeadOnly,
                head: StreamHead::Delivered,
                target: None,
                buf: Vec::new(),
                framing: Framing::Close,
                then: Then::Close,
                written: 0,
                record: None,
                flow,
                credit: Arc::new(AtomicUsize::new(0)),
                limit,
                timeout,
            };
        }
        let encoder = match self.encoding.take() {
            Some(encoding) => encoding
                .0
                .start(status, map_mut(&mut headers), None)
                .filter(|_| status_allows_body(status))
                .map(Active),
            None => None,
        };
        let mut buf = Vec::with_capacity(256);
        // HTTP/1.0 clients do not know chunked: the close ends the body.
        let (framing, then) = if target.version == Version::HTTP_11 {
            let then = target.then_now();
            write_head_chunked(&mut buf, target.version, status, map(&headers), then);
            (Framing::Chunked, then)
        } else {
            write_head_close_delimited(&mut buf, target.version, status, map(&headers));
            (Framing::Close, Then::Close)
        };
        let record = target.record(status, &mut headers, buf.len());
        ResponseStream {
            encoder,
            unflushed: 0,
            record,
            payload: target.payload(status),
            head: StreamHead::Buffered,
            target: Some(target),
            buf,
            framing,
            then,
            written: 0,
            flow,
            credit: Arc::new(AtomicUsize::new(0)),
            limit,
            timeout,
        }
    }
}

impl Drop for ResponseWriter {
    fn drop(&mut self) {
        if let Some(map) = self.headers.take() {
            pool::recycle_header_map(map);
        }
        if let Some(mut target) = self.target.take() {
            log::debug!(
                "{}: response writer dropped without answering: 500",
                target.flow.peer_addr
            );
            send_plain(
                &mut target,
                StatusCode::INTERNAL_SERVER_ERROR,
                b"Internal Server Error",
            );
        }
    }
}

/// Whether a body of `len` bytes exceeds `max` (`Options::max_response_size`):
/// such an answer is replaced with a `500`, and the trouble logged.
pub(crate) fn oversized(peer_addr: SocketAddr, len: usize, max: usize) -> bool {
    if len <= max {
        return false;
    }
    log::warn!("{peer_addr}: response of {len} bytes exceeds max_response_size ({max}): 500");
    true
}

fn send_whole(target: &mut Target, status: StatusCode, headers: &mut Headers, body: &[u8]) {
    if oversized(target.flow.peer_addr, body.len(), target.max_response_size) {
        return send_plain(
            target,
            StatusCode::INTERNAL_SERVER_ERROR,
            b"Response Too Large",
        );
    }
    send_whole_unchecked(target, status, headers, body)
}

/// A short `text/plain` answer the server gives in the handler's place.
fn send_plain(target: &mut Target, status: StatusCode, body: &[u8]) {
    send_whole_unchecked(target, status, &mut server_text(), body);
}

/// The fields of a short answer the server gives: `text/plain`.
fn server_text() -> Headers {
    let mut headers = pool::header_map(1);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(SERVER_TEXT));
    Some(headers)
}

/// The `500` that replaces an answer whose response hook panicked (the
/// hooks do not run again).
fn send_panicked(target: &mut Target) {
    write_whole(
        target,
        StatusCode::INTERNAL_SERVER_ERROR,
        &mut server_text(),
        b"Internal Server Error",
    );
}

/// [`send_whole`] through `encoding`: the body is encoded whole and sent
/// with its encoded length (also for `HEAD`, whose head must be a `GET`'s).
fn send_encoded(
    target: &mut Target,
    status: StatusCode,
    headers: &mut Headers,
    body: &[u8],
    encoding: Box<dyn Encoding>,
) {
    if body.len() > target.max_response_size {
        return send_whole(target, status, headers, body);
    }
    if target.respond(status, headers).is_err() {
        return send_panicked(target);
    }
    let encoder = encoding.start(status, map_mut(headers), Some(body.len()));
    match encoder.filter(|_| status_allows_body(status)) {
        None => write_whole(target, status, headers, body),
        Some(mut encoder) => match encode::encode_whole(&mut *encoder, body) {
            Ok(encoded) => write_whole(target, status, headers, &encoded),
            Err(e) => {
                log::warn!(
                    "{}: encoding the response failed: {e}",
                    target.flow.peer_addr
                );
                send_panicked(target);
            }
        },
    }
}

fn send_whole_unchecked(
    target: &mut Target,
    status: StatusCode,
    headers: &mut Headers,
    body: &[u8],
) {
    if target.respond(status, headers).is_err() {
        return send_panicked(target);
    }
    write_whole(target, status, headers, body);
}

fn write_whole(target: &mut Target, status: StatusCode, headers: &mut Headers, body: &[u8]) {
    let then = target.then_now();
    let payload = target.payload(status);
    let (bytes, head_len) = whole_answer(target.version, status, map(headers), body, payload, then);
    let record = target.record(status, headers, head_len);
    target.deliver_last(bytes, None, then, record);
}

/// A whole answer's bytes, in a buffer from the transport's pool, and the
/// length of its head: the body goes after the head unless `payload` says
/// it has none (the head still gives its length).
#[inline]
pub(crate) fn whole_answer(
    version: Version,
    status: StatusCode,
    fields: &HeaderMap,
    body: &[u8],
    payload: Payload,
    then: Then,
) -> (Vec<u8>, usize) {
    let mut bytes = pistachio_transport::buffers::take(128 + fields.len() * 32 + body.len());
    write_head(&mut bytes, version, status, fields, body.len(), then);
    let head_len = bytes.len();
    if payload == Payload::Body {
        bytes.extend_from_slice(body);
    }
    (bytes, head_len)
}

/// Whether a [`ResponseStream`]'s head was handed to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamHead {
    /// Still at the start of the buffer: a cut can still make it say
    /// `Connection: close`.
    Buffered,
    /// Handed over with the first flush.
    Delivered,
}

/// Pieces buffered by a [`ResponseStream`] before they are handed over
/// without an explicit flush.
const STREAM_BUFFER: usize = 16 * 1024;

/// Longest a blocked producer sleeps before it looks again whether its
/// client is gone (the connection normally wakes it sooner).
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// Whether a stream write may wait for room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Wait up to the stream's write timeout.
    Block,
    /// Fail with `WouldBlock` when there is no room.
    Never,
    /// Do not look at the room (`write`/`flush` on a worker thread,
    /// which must not block the loop that makes the room).
    Unbounded,
}

/// A response sent in pieces (Pistache's `ResponseStream`), from
/// [`ResponseWriter::stream`]. `Send`: it can be written from any thread.
///
/// Writes buffer up to 16 KiB, then hand what is buffered to the
/// connection; [`flush`](ResponseStream::flush) hands it over at once,
/// [`end`](ResponseStream::end) finishes the response. Dropped without
/// `end`, the stream is cut off and the connection closed, so the client
/// sees an incomplete response rather than a truncated one passing for
/// complete.
///
/// # Backpressure
///
/// A stream may have at most
/// [`Options::max_stream_buffer`](crate::Options::max_stream_buffer) bytes
/// (default 256 KiB) handed to its connection and not yet written to the
/// socket (the transport's own queue of up to 256 KiB comes on top). A
/// producer that gets ahead of a slow client:
///
/// * with [`send_chunk`](ResponseStream::send_chunk) (and `write`/`flush`)
///   on another thread, waits until the connection has written enough, at
///   most the write timeout
///   ([`Options::stream_write_timeout`](crate::Options::stream_write_timeout),
///   [`set_write_timeout`](ResponseStream::set_write_timeout)), then fails
///   with [`io::ErrorKind::TimedOut`];
/// * with [`try_write`](ResponseStream::try_write), gets
///   [`io::ErrorKind::WouldBlock`] with nothing taken, and learns when to
///   try again from [`poll_ready`](ResponseStream::poll_ready) (a
///   [`Waker`] is woken when room opens or the client goes).
///
/// On a reactor worker thread (inside a handler, or anything else the
/// worker runs), waiting would stall the very loop that writes the
/// stream: there `send_chunk` fails with `WouldBlock` like `try_write`
/// instead of blocking, and the infallible `write`/`flush` do not wait
/// (they hand over everything, unbounded: move the stream to another
/// thread, or use `try_write` + `poll_ready`, to be bounded).
///
/// Once the client is gone, every write fails with
/// [`io::ErrorKind::BrokenPipe`] ("client went away"), so the producer can
/// stop; the infallible `write` and `flush` then discard the data.
///
/// # Example
///
/// ```no_run
/// use pistachio_http::{ResponseWriter, StatusCode};
///
/// fn answer(resp: ResponseWriter) {
///     let mut stream = resp.stream(StatusCode::OK);
///     std::thread::spawn(move || {
///         for i in 0..10_000_000u64 {
///             // Waits while the client is behind; fails once it is gone.
///             if let Err(e) = stream.send_chunk(format!("line {i}\n")) {
///                 eprintln!("stopped streaming: {e}");
///                 return; // dropping the stream cuts the response off
///             }
///         }
///         stream.end();
///     });
/// }
/// ```
#[must_use = "dropping a ResponseStream without end() cuts the response off"]
pub struct ResponseStream {
    target: Option<Target>,
    buf: Vec<u8>,
    /// Chunked (HTTP/1.1) or delimited by the close (HTTP/1.0).
    framing: Framing,
    then: Then,
    /// `HeadOnly` for a `HEAD` request or a status without a body: writes
    /// are dropped.
    payload: Payload,
    /// Whether the head is still in `buf`.
    head: StreamHead,
    /// Body bytes written so far (for `max_response_size`).
    written: usize,
    /// The completion record, handed over with the head.
    record: Option<Box<Pending>>,
    /// The connection's client state and wait place.
    flow: Arc<ConnFlow>,
    /// Bytes handed over and not yet written (the connection releases).
    credit: Arc<AtomicUsize>,
    /// `Options::max_stream_buffer`.
    limit: usize,
    /// How long a blocking write waits for room.
    timeout: Duration,
    /// What the body goes through (see [`Encoding`]), if anything.
    encoder: Option<Active>,
    /// Bytes given to `encoder` since its last flush.
    unflushed: usize,
}

impl fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseStream")
            .field("seq", &self.target.as_ref().map(|t| t.seq))
            .field("framing", &self.framing)
            .field("buffered", &self.buf.len())
            .field("in_flight", &self.credit.load(Ordering::Relaxed))
            .finish()
    }
}

impl ResponseStream {
    /// What is buffered, to be handed over last: with a head still in it
    /// that says `Connection: close` if the connection closes after it.
    fn take_buf(&mut self, then: Then) -> Vec<u8> {
        let mut bytes = std::mem::take(&mut self.buf);
        if then == Then::Close && self.head == StreamHead::Buffered {
            let before = bytes.len();
            force_close(&mut bytes);
            if let Some(record) = &mut self.record {
                record.head_len += (bytes.len() - before) as u64;
            }
        }
        self.head = StreamHead::Delivered;
        bytes
    }

    /// Hands `bytes` over (with the completion record if the head is in
    /// them), counting them against the stream's credit until the
    /// connection has written them.
    fn hand(&mut self, bytes: Vec<u8>, step: Step, then: Then, cut: bool) {
        let Some(target) = &self.target else {
            return;
        };
        self.credit.fetch_add(bytes.len(), Ordering::SeqCst);
        target.hand(Outgoing {
            seq: target.seq,
            bytes,
            file: None,
            step,
            then,
            attempt: target.attempt,
            record: self.record.take(),
            cut,
            credit: Some(Arc::clone(&self.credit)),
        });
    }

    /// Cuts the response off: the connection closes after what was
    /// handed over.
    fn cut(&mut self) {
        if self.target.is_some() {
            let bytes = self.take_buf(Then::Close);
            self.hand(bytes, Step::Last, Then::Close, true);
            self.target = None;
        }
    }

    fn has_room(&self) -> bool {
        self.credit.load(Ordering::SeqCst) < self.limit
    }

    /// Whether the stream may hand more over now, after waiting as `wait`
    /// allows.
    fn admit(&self, wait: Wait) -> io::Result<()> {
        if self.flow.is_gone() {
            return Err(client_gone());
        }
        if wait == Wait::Unbounded || self.has_room() {
            return Ok(());
        }
        let would_block = || {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                "the client has not read what the stream handed over yet",
            )
        };
        if wait == Wait::Never || crate::body::on_worker() {
            return Err(would_block());
        }
        let deadline = Instant::now() + self.timeout;
        let mut guard = self.flow.wakers.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.flow.is_gone() {
                return Err(client_gone());
            }
            if self.has_room() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read too little within the stream's write timeout",
                ));
            }
            let slice = (deadline - now).min(WAIT_SLICE);
            guard = self
                .flow
                .room
                .wait_timeout(guard, slice)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Appends `data`, handing the buffer over once it is full; on `Err`
    /// nothing of `data` was taken.
    fn put(&mut self, data: &[u8], wait: Wait) -> io::Result<()> {
        if data.is_empty() || self.payload == Payload::HeadOnly {
            return Ok(());
        }
        if self.target.is_none() {
            return Err(if self.flow.is_gone() {
                client_gone()
            } else {
                io::Error::other("the response was cut off")
            });
        }
        // The size line and the CRLFs around a chunk; with an encoder, what
        // it was given since its last flush.
        let full = match self.encoder {
            None => self.buf.len() + data.len() + 12 >= STREAM_BUFFER,
            Some(_) => self.unflushed + data.len() >= STREAM_BUFFER,
        };
        if full {
            self.admit(wait)?;
        } else if self.flow.is_gone() {
            return Err(client_gone());
        }
        self.written = self.written.saturating_add(data.len());
        let limit = self
            .target
            .as_ref()
            .map_or(usize::MAX, |t| t.max_response_size);
        if self.written > limit {
            if let Some(target) = &self.target {
                log::warn!(
                    "{}: streamed response exceeds max_response_size ({limit}): cut off",
                    target.flow.peer_addr
                );
            }
            // The client sees an incomplete response, not a truncated one
            // passing for complete.
            self.cut();
            return Err(io::Error::other(
                "streamed response exceeds max_response_size: cut off",
            ));
        }
        if self.encoder.is_some() {
            self.encode(data, full)?;
        } else {
            self.frame(data);
        }
        if full {
            self.hand_buffered();
        }
        Ok(())
    }

    /// Appends `data` to the buffer as body bytes (one chunk on HTTP/1.1).
    fn frame(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.framing == Framing::Chunked {
            // Writing to a Vec cannot fail.
            let _ = write!(self.buf, "{:X}\r\n", data.len());
            self.buf.extend_from_slice(data);
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.buf.extend_from_slice(data);
        }
    }

    /// Passes `data` through the encoder, and what it outputs into the
    /// buffer; `flush`: flushes the encoder too. On `Err` the response
    /// is cut off.
    fn encode(&mut self, data: &[u8], flush: bool) -> io::Result<()> {
        self.code(|encoder, out| {
            encoder.encode(data, out)?;
            if flush {
                encoder.flush(out)?;
            }
            Ok(())
        })?;
        self.unflushed = if flush {
            0
        } else {
            self.unflushed + data.len()
        };
        Ok(())
    }

    /// Runs `step` on the encoder (if any) and frames what it outputs;
    /// on `Err` the response is cut off.
    fn code(
        &mut self,
        step: impl FnOnce(&mut dyn BodyEncoder, &mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<()> {
        let Some(mut active) = self.encoder.take() else {
            return Ok(());
        };
        let mut out = Vec::new();
        let stepped = step(&mut *active.0, &mut out);
        self.encoder = Some(active);
        if let Err(e) = stepped {
            if let Some(target) = &self.target {
                log::warn!(
                    "{}: encoding the response failed: {e}",
                    target.flow.peer_addr
                );
            }
            self.cut();
            return Err(e);
        }
        self.frame(&out);
        Ok(())
    }

    fn hand_buffered(&mut self) {
        if !self.buf.is_empty() && self.target.is_some() {
            let bytes = std::mem::take(&mut self.buf);
            self.head = StreamHead::Delivered;
            self.hand(bytes, Step::More, self.then, false);
        }
    }

    /// The wait a write allows on this thread: none on a worker.
    fn legacy_wait() -> Wait {
        if crate::body::on_worker() {
            Wait::Unbounded
        } else {
            Wait::Block
        }
    }

    /// Appends `data` to the response (one chunk on HTTP/1.1), waiting for
    /// room like [`send_chunk`](ResponseStream::send_chunk). Empty writes
    /// are ignored (an empty chunk would end the body). Infallible: if the
    /// client is gone the data is discarded, and if no room opens within
    /// the write timeout the response is cut off. Prefer `send_chunk`,
    /// which tells.
    pub fn write(&mut self, data: impl AsRef<[u8]>) {
        if let Err(e) = self.put(data.as_ref(), Self::legacy_wait()) {
            self.give_up(&e);
        }
    }

    /// Hands everything written so far to the connection, waiting for
    /// room first (off the worker threads); fails like `write`.
    pub fn flush(&mut self) {
        if self.unflushed > 0 && self.target.is_some() {
            if self.code(|encoder, out| encoder.flush(out)).is_err() {
                return;
            }
            self.unflushed = 0;
        }
        if self.buf.is_empty() {
            return;
        }
        match self.admit(Self::legacy_wait()) {
            Ok(()) => self.hand_buffered(),
            Err(e) => self.give_up(&e),
        }
    }

    /// An infallible write failed: cut the response off.
    fn give_up(&mut self, e: &io::Error) {
        if let Some(target) = &self.target {
            log::debug!("{}: response stream stopped: {e}", target.flow.peer_addr);
        }
        self.cut();
    }

    /// Appends `data` to the response (one chunk on HTTP/1.1), first
    /// waiting, if the stream has `max_stream_buffer` bytes in flight,
    /// until the connection has written some of them.
    ///
    /// Errors (nothing of `data` is taken): [`io::ErrorKind::BrokenPipe`]
    /// "client went away"; [`io::ErrorKind::TimedOut`] when no room opened
    /// within the write timeout; [`io::ErrorKind::WouldBlock`] on a worker
    /// thread when there is no room (it must not wait there); `Other` once
    /// the response was cut off (`max_response_size`).
    pub fn send_chunk(&mut self, data: impl AsRef<[u8]>) -> io::Result<()> {
        self.put(data.as_ref(), Wait::Block)
    }

    /// Appends `data` like [`send_chunk`](ResponseStream::send_chunk), but
    /// never waits: without room it fails with
    /// [`io::ErrorKind::WouldBlock`] and takes nothing; try again once
    /// [`poll_ready`](ResponseStream::poll_ready) says so.
    pub fn try_write(&mut self, data: impl AsRef<[u8]>) -> io::Result<()> {
        self.put(data.as_ref(), Wait::Never)
    }

    /// Whether [`try_write`](ResponseStream::try_write) will find room:
    /// `Ready(Ok)` when it will, `Ready(Err)` (`BrokenPipe`) once the client
    /// is gone, else `Pending`, and `cx`'s waker is woken (on the
    /// connection's worker thread) when the connection has written some of
    /// what was handed over or the client goes.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let check = |stream: &Self| {
            if stream.flow.is_gone() {
                Some(Err(client_gone()))
            } else if stream.has_room() {
                Some(Ok(()))
            } else {
                None
            }
        };
        if let Some(ready) = check(self) {
            return Poll::Ready(ready);
        }
        {
            let mut wakers = self.flow.wakers.lock().unwrap_or_else(|e| e.into_inner());
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        // Room may have opened before the waker was in place.
        match check(self) {
            Some(ready) => Poll::Ready(ready),
            None => Poll::Pending,
        }
    }

    /// How long blocking writes of this stream wait for room (default:
    /// [`Options::stream_write_timeout`](crate::Options::stream_write_timeout)).
    pub fn set_write_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Finishes the response (the terminal chunk on HTTP/1.1; closing the
    /// connection on HTTP/1.0). It does not wait for room.
    pub fn end(mut self) {
        if self.payload == Payload::Body
            && self.target.is_some()
            && self.code(|encoder, out| encoder.finish(out)).is_err()
        {
            return;
        }
        if self.framing == Framing::Chunked && self.payload == Payload::Body {
            self.buf.extend_from_slice(b"0\r\n\r\n");
        }
        if self.target.is_some() {
            let bytes = std::mem::take(&mut self.buf);
            self.hand(bytes, Step::Last, self.then, false);
            self.target = None;
        }
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        if let Some(target) = &self.target {
            log::debug!(
                "{}: response stream dropped before end: closing the connection",
                target.flow.peer_addr
            );
            self.cut();
        }
    }
}
