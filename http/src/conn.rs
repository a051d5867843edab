//! One HTTP/1.1 connection: the transport [`Protocol`] that parses requests,
//! calls the [`Handler`](crate::Handler), and sends responses in order.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode, Version};
use log::debug;
use pistachio_transport::{CloseReason, Conn, Protocol};

use crate::body::{self, BodySender};
use crate::date::LoopDate;
use crate::middleware::{
    empty_headers, run_head_phase, Answer, Hooks, Layered, Layers, Pending as Record, RequestInfo,
    SharedLayers,
};
use crate::parser::{Limits, ParseError, Parsed, RequestParser};
use crate::pool;
use crate::request::{Request, TlsFacts};
use crate::respond::Response;
use crate::response::{force_close, write_head, Payload, Then, SERVER_TEXT};
use crate::sent::{Unsent, UnsentQueue};
use crate::writer::{
    enter_inline, leave_inline, oversized, whole_answer, ConnFlow, FileBody, HttpMsg, Outgoing,
    Produced, RequestFacts, ResponseWriter, Step, Target,
};
use crate::{BodyMode, ConnectionInfo, End, Handler};

/// What every connection of an endpoint shares (made by the
/// [`Endpoint`](crate::Endpoint) from its options).
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) limits: Limits,
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) max_response_size: usize,
    /// Bytes a response stream may have handed over and not yet written.
    pub(crate) max_stream_buffer: usize,
    /// How long a blocking stream write waits for room.
    pub(crate) stream_write_timeout: Duration,
    /// Whether any middleware wraps exchanges (endpoint-wide, or the
    /// handler's own): only then are request facts kept.
    pub(crate) layered: bool,
    /// Whether the handler has middleware of its own (`Handler::layered`).
    pub(crate) handler_layered: bool,
    /// Whether the handler may answer through `Handler::respond`.
    pub(crate) responds: bool,
    /// Endpoint-wide middleware, outermost first.
    pub(crate) middleware: SharedLayers,
}

impl Settings {
    /// Runs the head hooks (endpoint-wide middleware, then the handler's)
    /// for either protocol; an answer comes with the layers it passes
    /// through. Usually no layer has a head hook: then nothing is called.
    #[inline]
    pub(crate) fn head_phase(
        &self,
        handler: &dyn Handler,
        request: &Request,
    ) -> Option<(Answer, Layers)> {
        if !self.handler_layered && !self.middleware.want(Hooks::ON_HEAD) {
            return None;
        }
        run_head_phase(&self.middleware, handler, self.handler_layered, request)
    }
}

/// Most requests of one connection whose responses may be outstanding at
/// once; beyond it, parsing pauses until responses go out.
const MAX_IN_FLIGHT: u64 = 64;

/// While parsing is paused (the pipeline is full), at most this much input
/// is buffered; beyond it the connection stops reading and TCP flow control
/// holds the client back.
const MAX_BUFFERED_WHILE_PAUSED: usize = 64 * 1024;

/// No new request is started while more than this much output is queued
/// on the connection (a client that pipelines but does not read); the
/// transport's `on_drained` resumes.
const MAX_QUEUED_OUTPUT: usize = 256 * 1024;

static CONN_IDS: AtomicU64 = AtomicU64::new(1);

/// A request body being streamed to its handler.
#[derive(Debug)]
struct StreamingBody {
    sender: BodySender,
    seq: u64,
    /// `Close`: no request is read after this one (it asked to close, or a
    /// graceful drain began while its body arrived).
    then: Then,
    /// Most body bytes the handler accepts (`BodyMode::StreamedUpTo`).
    limit: u64,
    /// Body bytes forwarded so far.
    received: u64,
}

/// A response that cannot be written yet (an earlier one is unfinished), or
/// the unfinished part of a streamed one.
#[derive(Debug, Default)]
struct Pending {
    /// The parts in order; most responses have exactly one, kept inline so
    /// that filing a response allocates nothing.
    first: Option<Part>,
    more: Vec<Part>,
    step: Step,
    then: Then,
    head: HeadState,
    /// With middleware: what its completion hooks are told.
    record: Option<Box<Record>>,
    /// The server cut the answer off.
    cut: bool,
    /// A stream's credit, released as its bytes are written.
    credit: Option<Arc<AtomicUsize>>,
}

/// Answers not yet written, by sequence number from the connection's
/// `next_out`: the first in place (usually the only one, so that a
/// keep-alive connection holds no queue on the heap between requests),
/// those after it in a deque. `None`: not answered yet.
#[derive(Default)]
struct Ready {
    first: Option<Pending>,
    rest: VecDeque<Option<Pending>>,
}

impl Ready {
    fn get(&self, index: usize) -> Option<&Pending> {
        match index {
            0 => self.first.as_ref(),
            i => self.rest.get(i - 1).and_then(Option::as_ref),
        }
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut Pending> {
        match index {
            0 => self.first.as_mut(),
            i => self.rest.get_mut(i - 1).and_then(Option::as_mut),
        }
    }

    /// The place of answer `index`, made if need be.
    fn slot(&mut self, index: usize) -> &mut Option<Pending> {
        if index == 0 {
            return &mut self.first;
        }
        if self.rest.len() < index {
            self.rest.resize_with(index, || None);
        }
        &mut self.rest[index - 1]
    }

    /// The next answer to write, if it is there.
    fn front(&self) -> Option<&Pending> {
        self.first.as_ref()
    }

    fn front_mut(&mut self) -> Option<&mut Pending> {
        self.first.as_mut()
    }

    /// Takes the next answer; the one after it becomes the next.
    fn pop_front(&mut self) -> Option<Pending> {
        let next = self.rest.pop_front().flatten();
        std::mem::replace(&mut self.first, next)
    }

    /// Whether no answer is filed.
    fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    /// Takes every answer there is.
    fn drain(&mut self) -> impl Iterator<Item = Pending> + '_ {
        self.first
            .take()
            .into_iter()
            .chain(self.rest.drain(..).flatten())
    }
}

/// When a finished answer's middleware record is settled (see
/// [`HttpConn::finish_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// Now: flushed, and completed if the socket took it all.
    Now,
    /// With the round's other answers, by `emit` (a connection that stays
    /// open only).
    AtEmit,
}

/// Whether a request answered at the head phase has a body due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Follows,
}

/// How an answer the connection makes itself is framed.
#[derive(Debug, Clone, Copy)]
struct OwnFraming {
    version: Version,
    then: Then,
    payload: Payload,
}

/// Whether a pending response's head went out: until it has, it can
/// still be rewritten to say `Connection: close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum HeadState {
    #[default]
    Unsent,
    Sent,
}

impl Pending {
    fn push(&mut self, part: Part) {
        let last = match self.more.last_mut() {
            Some(last) => Some(last),
            None => self.first.as_mut(),
        };
        match (last, part) {
            (Some(Part::Bytes(last)), Part::Bytes(bytes)) => last.extend_from_slice(&bytes),
            (None, part) => self.first = Some(part),
            (Some(_), part) => self.more.push(part),
        }
    }

    fn take_parts(&mut self) -> impl Iterator<Item = Part> + '_ {
        self.first.take().into_iter().chain(self.more.drain(..))
    }
}

#[derive(Debug)]
enum Part {
    Bytes(Vec<u8>),
    File(FileBody),
}

/// Whether requests are still read from the connection (hyper's
/// `Reading`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Requests are parsed as they arrive.
    Requests,
    /// No more requests are parsed (a refused request, `Connection:
    /// close`, a graceful drain): the connection closes once the answers
    /// due are out.
    Stopped,
    /// The client finished sending (EOF); the connection closes once the
    /// answers due are out.
    PeerDone,
}

/// `Expect: 100-continue` of the request whose body is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continue {
    /// Not sent (yet) for the current request.
    NotSent,
    /// Sent; the client is sending the body.
    Sent,
}

/// What keeps the connection from reading the socket (TCP flow control
/// then holds the client back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadPause {
    /// Reading.
    Off,
    /// The pipeline is full and input piles up.
    Pipeline,
    /// A streamed body's reader lags behind.
    Body,
    /// Both.
    Both,
}

/// One reason to pause reading (see [`ReadPause`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backlog {
    Pipeline,
    Body,
}

impl ReadPause {
    fn has(self, why: Backlog) -> bool {
        matches!(
            (self, why),
            (ReadPause::Both, _)
                | (ReadPause::Pipeline, Backlog::Pipeline)
                | (ReadPause::Body, Backlog::Body)
        )
    }

    fn with(self, why: Backlog, on: bool) -> ReadPause {
        let pipeline = if why == Backlog::Pipeline {
            on
        } else {
            self.has(Backlog::Pipeline)
        };
        let body = if why == Backlog::Body {
            on
        } else {
            self.has(Backlog::Body)
        };
        match (pipeline, body) {
            (false, false) => ReadPause::Off,
            (true, false) => ReadPause::Pipeline,
            (false, true) => ReadPause::Body,
            (true, true) => ReadPause::Both,
        }
    }
}

/// Whether [`Handler::on_connection`] ran, so that
/// [`Handler::on_disconnection`] runs exactly once too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// The transport has not called `on_connect` (TLS handshake).
    Pending,
    /// `on_connection` ran.
    Announced,
}

/// What the connection's one timer is armed for, so that its timeout
/// knows what it means. `Head` and `Body` carry the number of requests
/// completed when they were armed: they restart with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Not armed.
    Off,
    /// Nothing buffered, nothing outstanding: keep-alive idle
    /// (`keepalive_timeout`). Not re-armed per request: when it fires it
    /// checks the last input. Armed first for [`GIVE_BACK_AFTER`], when
    /// the connection gives its exchange back.
    Idle,
    /// Waiting for a request head: after connecting, or with part of one
    /// buffered (`header_timeout`).
    Head { completed: u64 },
    /// The head is in, a buffered body is arriving (`body_timeout`).
    Body { completed: u64 },
    /// Handlers are working: armed for the earliest response deadline
    /// (`ResponseWriter::timeout_after`), if any.
    Handlers { deadline: Option<Instant> },
}

/// The per-connection state: what a connection keeps while it is idle.
/// What only a request in progress needs lives in [`Exchange`], which an
/// idle connection gives back to its worker's pool.
pub(crate) struct HttpConn {
    handler: Arc<dyn Handler>,
    settings: Arc<Settings>,
    /// Sequence number the next parsed request gets.
    next_seq: u64,
    /// Sequence number of the next response to send.
    next_out: u64,
    reading: Reading,
    timer: Timer,
    /// Requests whose head and body are in (restarts the request timers).
    completed: u64,
    continue_: Continue,
    read_pause: ReadPause,
    session: Session,
    /// The TLS session and the verified client's subject, shared by the
    /// connection's requests: a plaintext connection, idle or not, pays
    /// one pointer.
    tls: Option<Arc<TlsFacts>>,
    /// When input last arrived (the keep-alive timeout counts from it).
    last_input: Instant,
    /// Shared with writers and response streams: the connection's id and
    /// client address, its mailbox, whether the client is gone, where
    /// producers wait for room, and the last response before a graceful
    /// close.
    flow: Arc<ConnFlow>,
    /// With middleware: the record of a finished exchange, for the next
    /// (kept with the connection: a record holds its peer's facts).
    spare_record: Option<Box<Record>>,
    /// The request machinery, held from the start of a transport callback
    /// to its end, and kept past it while anything is in flight.
    ex: Slot,
}

/// What a connection needs only while requests are in progress: the
/// parser and its input, the answers not yet written, bodies, deadlines
/// and middleware records. An idle connection (nothing buffered, nothing
/// outstanding, nothing unsent) gives it back to its worker's pool (see
/// [`GIVE_BACK_AFTER`]) and takes one again when input arrives, so idle
/// connections stay small and a keep-alive request still allocates
/// nothing. It holds nothing of a
/// particular client once given back.
struct Exchange {
    /// Which endpoint's settings `parser` was made for (compared only).
    made_for: usize,
    parser: RequestParser,
    inbuf: Vec<u8>,
    /// Responses (or parts of streamed ones) not yet written, by sequence
    /// number: only the one numbered `next_out` may be written.
    ready: Ready,
    /// The request whose body is being streamed to its handler.
    streaming: Option<StreamingBody>,
    /// Close after this request's response (its streamed body broke).
    close_after_seq: Option<u64>,
    /// Response deadlines (`ResponseWriter::timeout_after`) by sequence.
    deadlines: BTreeMap<u64, (RequestFacts, Instant)>,
    /// Requests `Handler::on_timeout` answered.
    timed_out: BTreeSet<u64>,
    /// With middleware: when the head of the request whose body is due
    /// arrived (its head hooks ran then).
    head_received: Option<Instant>,
    /// A stream's bytes in the transport's queue while that is over its
    /// high-water mark: released by `on_drained`.
    held: Option<(Arc<AtomicUsize>, usize)>,
    /// With middleware: exchanges whose whole answer is queued on the
    /// connection but not yet accepted by the socket, oldest first; they
    /// finish when it is ([`HttpConn::settle_sent`]).
    unsent: UnsentQueue,
}

/// A short `text/plain` answer the server gives in the handler's place.
fn server_answer(status: StatusCode, body: &'static str) -> Response {
    Response::new(status, body).header(CONTENT_TYPE, HeaderValue::from_static(SERVER_TEXT))
}

/// How long a connection that has gone idle keeps its exchange before it
/// gives it back: a client that sends its next request sooner finds it in
/// place. This is the first round of the keep-alive timer, which is not
/// re-armed per request: a connection that takes an exchange again while
/// the timer runs its later round keeps it until that round ends (at most
/// `keepalive_timeout`), or until it closes.
const GIVE_BACK_AFTER: Duration = Duration::from_millis(50);

/// Most exchanges a worker keeps for reuse.
const POOLED_EXCHANGES: usize = 64;

/// Input buffers larger than this are not kept in a pooled exchange.
const POOLED_INBUF: usize = 16 * 1024;

thread_local! {
    /// The exchange given back last (a keep-alive request's round trip
    /// needs no more than this)...
    static LAST: Cell<Option<Box<Exchange>>> = const { Cell::new(None) };
    /// ...and the others idle connections of this worker gave back (boxed:
    /// they move between connections and the pool as one pointer).
    #[allow(clippy::vec_box)]
    static POOL: RefCell<Vec<Box<Exchange>>> = const { RefCell::new(Vec::new()) };
}

impl Exchange {
    fn new(settings: &Arc<Settings>) -> Exchange {
        Exchange {
            made_for: Arc::as_ptr(settings) as usize,
            parser: Exchange::parser(settings),
            inbuf: Vec::new(),
            ready: Ready::default(),
            streaming: None,
            close_after_seq: None,
            deadlines: BTreeMap::new(),
            timed_out: BTreeSet::new(),
            head_received: None,
            held: None,
            unsent: UnsentQueue::default(),
        }
    }

    /// Drops the first `n` buffered bytes (usually all of them: a whole
    /// request arrived and was parsed).
    fn consume(&mut self, n: usize) {
        if n == self.inbuf.len() {
            self.inbuf.clear();
        } else {
            self.inbuf.drain(..n);
        }
    }

    fn parser(settings: &Settings) -> RequestParser {
        let mut parser = RequestParser::new(settings.limits);
        parser.set_announce_bodies(true);
        parser
    }

    /// Whether nothing of a request is in it: no input, no answer, no
    /// body, no deadline, no record waiting for the socket.
    fn is_idle(&self) -> bool {
        self.inbuf.is_empty()
            && self.parser.pending_head().is_none()
            && self.ready.first.is_none()
            && self.ready.rest.is_empty()
            && self.streaming.is_none()
            && self.close_after_seq.is_none()
            && self.deadlines.is_empty()
            && self.timed_out.is_empty()
            && self.head_received.is_none()
            && self.held.is_none()
            && self.unsent.is_empty()
    }
}

/// An [`HttpConn`]'s [`Exchange`], when it holds one. Every transport
/// callback takes one first ([`Slot::take_up`]), so the connection's
/// methods reach it through `Deref` without asking.
struct Slot(Option<Box<Exchange>>);

impl Slot {
    /// Holds an exchange: the one kept, else one from the worker's pool
    /// (made for `settings`), else a new one.
    #[inline]
    fn take_up(&mut self, settings: &Arc<Settings>) {
        if self.0.is_none() {
            self.0 = Some(Slot::from_pool(settings));
        }
    }

    #[inline(never)]
    fn from_pool(settings: &Arc<Settings>) -> Box<Exchange> {
        let spare = LAST
            .with(Cell::take)
            .or_else(|| POOL.with(|pool| pool.borrow_mut().pop()));
        match spare {
            Some(mut ex) => {
                if ex.made_for != Arc::as_ptr(settings) as usize {
                    // Another endpoint's: its limits may differ.
                    ex.made_for = Arc::as_ptr(settings) as usize;
                    ex.parser = Exchange::parser(settings);
                }
                ex
            }
            None => Box::new(Exchange::new(settings)),
        }
    }

    /// Gives the exchange back to the worker's pool if no request is
    /// outstanding (`outstanding`: parsed, not answered in full) and
    /// nothing of one is in it.
    #[inline]
    fn give_back_if_idle(&mut self, outstanding: u64, settings: &Settings) {
        if outstanding != 0 || !self.0.as_ref().is_some_and(|ex| ex.is_idle()) {
            return;
        }
        let Some(mut ex) = self.0.take() else {
            return;
        };
        // A body refused while it arrived leaves the parser inside it with
        // no input buffered (the connection is closing): whoever takes the
        // exchange next starts afresh.
        ex.parser = Exchange::parser(settings);
        if ex.inbuf.capacity() > POOLED_INBUF {
            ex.inbuf = Vec::new();
        }
        if let Some(older) = LAST.with(|last| last.replace(Some(ex))) {
            POOL.with(|pool| {
                let mut pool = pool.borrow_mut();
                if pool.len() < POOLED_EXCHANGES {
                    pool.push(older);
                }
            });
        }
    }
}

impl std::ops::Deref for Slot {
    type Target = Exchange;

    #[inline]
    fn deref(&self) -> &Exchange {
        self.0
            .as_deref()
            .expect("an exchange is taken up before the connection runs")
    }
}

impl std::ops::DerefMut for Slot {
    #[inline]
    fn deref_mut(&mut self) -> &mut Exchange {
        self.0
            .as_deref_mut()
            .expect("an exchange is taken up before the connection runs")
    }
}

impl HttpConn {
    pub(crate) fn new(
        handler: Arc<dyn Handler>,
        settings: Arc<Settings>,
        peer_addr: SocketAddr,
    ) -> Self {
        // Built by the transport's factory, on the connection's worker.
        body::mark_worker_thread();
        let id = CONN_IDS.fetch_add(1, Ordering::Relaxed);
        HttpConn {
            handler,
            settings,
            next_seq: 0,
            next_out: 0,
            reading: Reading::Requests,
            timer: Timer::Off,
            completed: 0,
            continue_: Continue::NotSent,
            read_pause: ReadPause::Off,
            session: Session::Pending,
            tls: None,
            last_input: Instant::now(),
            flow: Arc::new(ConnFlow::new(id, peer_addr)),
            spare_record: None,
            ex: Slot(None),
        }
    }

    fn outstanding(&self) -> u64 {
        self.next_seq - self.next_out
    }

    /// Whether requests are still parsed.
    fn reading_requests(&self) -> bool {
        self.reading == Reading::Requests
    }

    /// No more requests are parsed (the client may still be sending).
    fn stop_reading(&mut self) {
        if self.reading == Reading::Requests {
            self.reading = Reading::Stopped;
        }
    }

    /// Parses and dispatches what is buffered, sends what is ready, and
    /// repeats while that makes progress: answers given inline free the
    /// pipeline for requests still buffered, and may let a pending
    /// `100 Continue` go out.
    fn process(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        loop {
            let before = (self.next_seq, self.next_out, self.ex.inbuf.len());
            self.parse_buffered(conn);
            self.emit(conn);
            if self.ex.streaming.is_none() && self.reading_requests() {
                self.maybe_send_continue(conn);
            }
            // Another round can only parse more if input is left.
            if self.ex.inbuf.is_empty() {
                return;
            }
            let after = (self.next_seq, self.next_out, self.ex.inbuf.len());
            if after == before || conn.is_closing() {
                return;
            }
        }
    }

    // Always inline in `process`, its one caller: whether the compiler
    // inlines it otherwise flips with small changes in the parser, by
    // some 15 instructions a request.
    #[inline(always)]
    fn parse_buffered(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        while conn.queued() <= MAX_QUEUED_OUTPUT
            && self.reading_requests()
            && !self.ex.inbuf.is_empty()
            && self.outstanding() < MAX_IN_FLIGHT
        {
            let ex = &mut *self.ex;
            match ex.parser.parse(&ex.inbuf) {
                Ok(Parsed::Partial) => {
                    if self.ex.streaming.is_some() {
                        self.forward_streamed(conn);
                    } else {
                        self.maybe_send_continue(conn);
                    }
                    break;
                }
                Ok(Parsed::Complete {
                    head,
                    body,
                    consumed,
                }) => {
                    self.ex.consume(consumed);
                    self.continue_ = Continue::NotSent;
                    self.completed += 1;
                    let request =
                        Request::from_parts(head, body, self.flow.peer_addr, self.tls.clone());
                    if !request.keep_alive() {
                        self.stop_reading();
                    }
                    if conn.is_draining() {
                        // A graceful shutdown's grace: this request is the
                        // connection's last, and its answer says so.
                        self.stop_reading();
                        self.close_after(conn, self.next_seq);
                    }
                    let received = match self.ex.head_received.take() {
                        Some(at) => Some(at),
                        None if self.settings.layered => {
                            let at = conn.now();
                            if let Some((answer, layers)) =
                                self.settings.head_phase(&*self.handler, &request)
                            {
                                self.answer_early(&request, answer, layers, Body::None, at);
                                continue;
                            }
                            Some(at)
                        }
                        None => None,
                    };
                    if received.is_none() && self.settings.responds && self.respond(conn, &request)
                    {
                        continue;
                    }
                    self.dispatch(conn, request, received);
                }
                Ok(Parsed::BodyFollows) => self.choose_body_mode(conn),
                Ok(Parsed::BodyEnd { last, consumed }) => {
                    if !self.within_body_limit(conn, last.len()) {
                        continue;
                    }
                    self.ex.consume(consumed);
                    self.completed += 1;
                    if let Some(body) = self.ex.streaming.take() {
                        body.sender.send(last);
                        body.sender.end();
                        if body.then == Then::Close {
                            self.stop_reading();
                            if self.outstanding() == 0 {
                                // Its answer went out before the body ended.
                                conn.close();
                            }
                        }
                    }
                    self.set_backlog(conn, Backlog::Body, false);
                }
                Err(e) => {
                    if let Some(body) = self.ex.streaming.take() {
                        // The handler already has the request: it learns of
                        // the broken body from its stream, answers, and the
                        // connection closes after that answer.
                        debug!("{}: bad streamed body: {}", self.flow.peer_addr, e.reason());
                        self.stop_reading();
                        self.ex.inbuf = Vec::new();
                        body.sender
                            .fail(std::io::ErrorKind::InvalidData, e.reason());
                        self.close_after(conn, body.seq);
                        continue;
                    }
                    self.reject(e, None);
                }
            }
        }
    }

    /// A head with a body arrived: ask the handler whether to stream it.
    fn choose_body_mode(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        let Some((head, declared_length)) = self.ex.parser.stream_body() else {
            return;
        };
        let expects_continue = head.expects_continue;
        let mut request =
            Request::from_parts(head, Vec::new(), self.flow.peer_addr, self.tls.clone());
        let received = if self.settings.layered {
            // Before the body, the size limit and `100 Continue`.
            let at = conn.now();
            if let Some((answer, layers)) = self.settings.head_phase(&*self.handler, &request) {
                self.answer_early(&request, answer, layers, Body::Follows, at);
                return;
            }
            Some(at)
        } else {
            None
        };
        let handler = &*self.handler;
        let mode = catch_unwind(AssertUnwindSafe(|| handler.body_mode(&request)))
            .unwrap_or(BodyMode::Buffered);
        if mode == BodyMode::Buffered {
            let info = received.map(|at| RequestInfo::of(&request, at));
            self.ex.head_received = received;
            if let Err(e) = self.ex.parser.restore_buffered(request.into_head()) {
                // Over the size limit: answered like any parse error, next
                // time round (the parser is reset and sees a bad state).
                self.ex.head_received = None;
                self.reject(e, info);
            }
            return;
        }
        let limit = match mode {
            BodyMode::StreamedUpTo(limit) => limit,
            _ => u64::MAX,
        };
        if declared_length.is_some_and(|len| len > limit) {
            // Refused before any of the body is read (no `100 Continue`).
            let info = received.map(|at| RequestInfo::of(&request, at));
            self.reject(
                ParseError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
                info,
            );
            return;
        }
        let (sender, stream) =
            body::channel(conn.handle(), self.settings.body_timeout, declared_length);
        request.set_body_stream(stream);
        self.ex.streaming = Some(StreamingBody {
            sender,
            seq: self.next_seq,
            then: if request.keep_alive() {
                Then::KeepOpen
            } else {
                Then::Close
            },
            limit,
            received: 0,
        });
        if expects_continue && self.outstanding() == 0 {
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        self.dispatch(conn, request, received);
    }

    /// Answers `request` at the head phase, in its handler's place. With a
    /// body due, the connection closes after the answer without reading
    /// it (the transport's lingering close discards a bounded amount).
    fn answer_early(
        &mut self,
        request: &Request,
        answer: Answer,
        layers: Layers,
        body: Body,
        received: Instant,
    ) {
        debug!(
            "{}: answered {} at the head phase",
            self.flow.peer_addr, answer.status
        );
        let then = if body == Body::Follows || !request.keep_alive() {
            Then::Close
        } else {
            Then::KeepOpen
        };
        if body == Body::Follows {
            // Nothing more is read: the body is never looked at, and no
            // `100 Continue` goes out.
            self.stop_reading();
            self.ex.inbuf = Vec::new();
            self.ex.parser = Exchange::parser(&self.settings);
        }
        let payload = Payload::of(request.method(), answer.status);
        let layered = Layered::new(RequestInfo::of(request, received), layers);
        self.file_own(
            Some(layered),
            answer.status,
            answer.headers,
            &answer.body,
            OwnFraming {
                version: request.version(),
                then,
                payload,
            },
        );
    }

    /// Files, under the next sequence number, an answer the connection
    /// makes itself (a refused request, a request timeout, a head-phase
    /// answer), through the response hooks of `layered`.
    fn file_own(
        &mut self,
        layered: Option<Layered>,
        status: StatusCode,
        mut headers: HeaderMap,
        body: &[u8],
        framing: OwnFraming,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(SERVER_TEXT));
        }
        let (status, headers, body) = match &layered {
            Some(layered) if layered.respond(status, &mut headers).is_err() => {
                let mut plain = HeaderMap::new();
                plain.insert(CONTENT_TYPE, HeaderValue::from_static(SERVER_TEXT));
                let body: &[u8] = b"Internal Server Error";
                (StatusCode::INTERNAL_SERVER_ERROR, plain, body)
            }
            _ => (status, headers, body),
        };
        let mut bytes = Vec::new();
        write_head(
            &mut bytes,
            framing.version,
            status,
            &headers,
            body.len(),
            framing.then,
        );
        let head_len = bytes.len();
        if framing.payload == Payload::Body {
            bytes.extend_from_slice(body);
        }
        let record = layered
            .map(|layered| Box::new(layered).answered(status, Some(Box::new(headers)), head_len));
        self.accept_part(Outgoing {
            seq,
            bytes,
            file: None,
            step: Step::Last,
            then: framing.then,
            attempt: 0,
            record,
            cut: false,
            credit: None,
        });
    }

    /// What the endpoint-wide middleware sees of a request the server
    /// refuses before (or while) parsing it.
    fn refused_info(&self, known: Option<RequestInfo>) -> Option<Layered> {
        if !self.settings.layered || self.settings.middleware.0.is_empty() {
            return None;
        }
        let now = Instant::now();
        let info = known.unwrap_or_else(|| match self.ex.parser.pending_head() {
            Some(head) => RequestInfo::of_head(head, self.flow.peer_addr, now),
            None => RequestInfo::unparsed(self.flow.peer_addr, now),
        });
        Some(Layered::new(
            info,
            Layers::shared(&self.settings.middleware),
        ))
    }

    /// Hands what the parser decoded of a streamed body to its reader, and
    /// drops the raw bytes it came from.
    fn forward_streamed(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        let (data, drain) = self.ex.parser.take_streamed();
        self.ex.consume(drain);
        if !self.within_body_limit(conn, data.len()) {
            return;
        }
        if let Some(body) = &self.ex.streaming {
            if body.sender.send(data) {
                self.set_backlog(conn, Backlog::Body, true);
            }
        }
    }

    /// Counts `n` more bytes of the streamed body; past its handler's
    /// limit the stream fails, nothing more is read, and the connection
    /// closes after the handler's answer.
    fn within_body_limit(&mut self, conn: &mut Conn<'_, HttpMsg>, n: usize) -> bool {
        let Some(body) = &mut self.ex.streaming else {
            return true;
        };
        body.received = body.received.saturating_add(n as u64);
        if body.received <= body.limit {
            return true;
        }
        let Some(body) = self.ex.streaming.take() else {
            return true;
        };
        debug!(
            "{}: streamed body over its limit ({} bytes)",
            self.flow.peer_addr, body.limit
        );
        self.stop_reading();
        self.ex.inbuf = Vec::new();
        body.sender.too_large(body.limit);
        self.close_after(conn, body.seq);
        self.set_backlog(conn, Backlog::Body, false);
        false
    }

    /// Answers a request refused at the head stage (e.g. 413) and stops.
    fn reject(&mut self, e: ParseError, info: Option<RequestInfo>) {
        debug!(
            "{}: request refused: {} ({})",
            self.flow.peer_addr,
            e.status(),
            e.reason()
        );
        self.stop_reading();
        let payload = self.refused_payload();
        let layered = self.refused_info(info);
        self.ex.inbuf = Vec::new();
        self.file_own(
            layered,
            e.status(),
            HeaderMap::new(),
            e.reason().as_bytes(),
            OwnFraming {
                version: Version::HTTP_11,
                then: Then::Close,
                payload,
            },
        );
    }

    /// The answer to a request the server refuses itself (a parse error, a
    /// request timeout) is head-only when that request is a `HEAD` (RFC 9110
    /// §9.3.2): its request line is at the start of the unconsumed input.
    fn refused_payload(&self) -> Payload {
        let start = self
            .ex
            .inbuf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(self.ex.inbuf.len());
        if self.ex.inbuf[start..].starts_with(b"HEAD ") {
            Payload::HeadOnly
        } else {
            Payload::Body
        }
    }

    /// The connection closes after the response to request `seq`: that
    /// response says `Connection: close` (writers not done yet learn it
    /// through the shared `ConnFlow`; a head already filed but not yet sent is
    /// rewritten), and if it already went out, the connection closes now.
    fn close_after(&mut self, conn: &mut Conn<'_, HttpMsg>, seq: u64) {
        self.ex.close_after_seq = Some(seq);
        self.flow.set_last(seq);
        if seq < self.next_out {
            // A body still arriving is taken in first (see `BodyEnd`).
            if self.outstanding() == 0 && self.ex.streaming.is_none() {
                conn.close();
            }
            return;
        }
        self.mark_closing(seq);
    }

    /// Rewrites the filed, unsent head of response `seq` to say
    /// `Connection: close` if it is the one the connection closes after.
    fn mark_closing(&mut self, seq: u64) {
        if self.ex.close_after_seq != Some(seq) || seq < self.next_out {
            return;
        }
        if let Some(pending) = self.ex.ready.get_mut((seq - self.next_out) as usize) {
            if pending.head == HeadState::Unsent {
                if let Some(Part::Bytes(head)) = &mut pending.first {
                    let before = head.len();
                    force_close(head);
                    if let Some(record) = &mut pending.record {
                        record.head_len += (head.len() - before) as u64;
                    }
                }
            }
        }
    }

    /// Notes that `why` holds reading back (`on`) or no longer does, and
    /// pauses or resumes reading from the socket when that changes whether
    /// anything does.
    fn set_backlog(&mut self, conn: &mut Conn<'_, HttpMsg>, why: Backlog, on: bool) {
        let was = self.read_pause;
        self.read_pause = was.with(why, on);
        match (was, self.read_pause) {
            (ReadPause::Off, ReadPause::Off) => {}
            (ReadPause::Off, _) => conn.pause_reading(),
            (_, ReadPause::Off) => conn.resume_reading(),
            _ => {}
        }
    }

    /// `Expect: 100-continue`: once the head is accepted (limits checked,
    /// so a too-large body was already refused with 413) and every earlier
    /// response is out, invite the client to send the body.
    fn maybe_send_continue(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        if self.continue_ == Continue::Sent || self.outstanding() > 0 {
            return;
        }
        if self
            .ex
            .parser
            .pending_head()
            .is_some_and(|head| head.expects_continue)
        {
            self.continue_ = Continue::Sent;
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
    }

    /// Calls the handler. `received`: when the head arrived, if middleware
    /// wraps the exchange.
    fn dispatch(
        &mut self,
        conn: &mut Conn<'_, HttpMsg>,
        request: Request,
        received: Option<Instant>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let layered = received.map(|at| {
            Layered::reuse(
                self.spare_record.take(),
                &request,
                at,
                &self.settings.middleware,
            )
        });
        self.flow.connect(|| conn.handle());
        let target = Target {
            seq,
            method: request.method().clone(),
            version: request.version(),
            then: if request.keep_alive() {
                Then::KeepOpen
            } else {
                Then::Close
            },
            attempt: 0,
            max_response_size: self.settings.max_response_size,
            layered,
            flow: Arc::clone(&self.flow),
            max_stream_buffer: self.settings.max_stream_buffer,
            stream_write_timeout: self.settings.stream_write_timeout,
        };
        let writer = ResponseWriter::new(target);
        enter_inline(self.flow.conn_id);
        let handler = &*self.handler;
        let date = LoopDate::pin(conn.now());
        let result = catch_unwind(AssertUnwindSafe(|| handler.on_request(request, writer)));
        drop(date);
        // The writer, if the handler panicked with it, was dropped during
        // unwinding and has already produced a 500 for this request only.
        if result.is_err() {
            log::warn!("{}: handler panicked; answered 500", self.flow.peer_addr);
        }
        self.take_inline(conn);
    }

    /// Offers `request` to [`Handler::respond`] and writes the answer it
    /// returns (a `500` if it panicked) as the next in order, without a
    /// writer; `false` if the handler declined.
    fn respond(&mut self, conn: &mut Conn<'_, HttpMsg>, request: &Request) -> bool {
        let handler = &*self.handler;
        // Answers written here take the loop's date, as a writer's do.
        let date = LoopDate::pin(conn.now());
        let response = match catch_unwind(AssertUnwindSafe(|| handler.respond(request))) {
            Ok(Some(response)) => response,
            Ok(None) => return false,
            Err(_) => {
                log::warn!("{}: handler panicked; answered 500", self.flow.peer_addr);
                server_answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        };
        let max = self.settings.max_response_size;
        let response = if oversized(self.flow.peer_addr, response.body().len(), max) {
            server_answer(StatusCode::INTERNAL_SERVER_ERROR, "Response Too Large")
        } else {
            response
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let then = if request.keep_alive() && !self.flow.is_last(seq) {
            Then::KeepOpen
        } else {
            Then::Close
        };
        let (status, fields, body) = response.into_parts();
        let (bytes, _) = whole_answer(
            request.version(),
            status,
            fields.as_deref().unwrap_or_else(|| empty_headers()),
            &body,
            Payload::of(request.method(), status),
            then,
        );
        drop(date);
        if let Some(fields) = fields {
            pool::recycle_header_map(fields);
        }
        if self.next_in_order(seq) {
            self.write_whole_now(conn, bytes, then, None, false);
        } else {
            self.accept_part(Outgoing {
                seq,
                bytes,
                file: None,
                step: Step::Last,
                then,
                attempt: 0,
                record: None,
                cut: false,
                credit: None,
            });
        }
        true
    }

    /// Files what a handler produced synchronously on this thread.
    fn take_inline(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        leave_inline(|produced| match produced {
            Produced::Part(out) => {
                if let Some(out) = self.write_now(conn, out) {
                    self.accept_part(out);
                }
            }
            Produced::Deadline(facts, at) => self.add_deadline(facts, at),
        });
    }

    fn add_deadline(&mut self, facts: RequestFacts, at: Instant) {
        if facts.seq >= self.next_out && !self.ex.timed_out.contains(&facts.seq) {
            self.ex.deadlines.insert(facts.seq, (facts, at));
        }
    }

    /// Answers, through `Handler::on_timeout`, every request whose deadline
    /// passed before any of its response was produced.
    fn expire_deadlines(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .ex
            .deadlines
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in expired {
            let Some((facts, _)) = self.ex.deadlines.remove(&seq) else {
                continue;
            };
            let started =
                seq < self.next_out || self.ex.ready.get((seq - self.next_out) as usize).is_some();
            if started {
                // Already answered, or a response has started.
                continue;
            }
            debug!(
                "{}: response deadline passed; on_timeout",
                self.flow.peer_addr
            );
            self.ex.timed_out.insert(seq);
            self.flow.connect(|| conn.handle());
            let writer = ResponseWriter::new(Target {
                seq,
                method: facts.method,
                version: facts.version,
                then: facts.then,
                attempt: 1,
                max_response_size: self.settings.max_response_size,
                layered: facts.layered,
                flow: Arc::clone(&self.flow),
                max_stream_buffer: self.settings.max_stream_buffer,
                stream_write_timeout: self.settings.stream_write_timeout,
            });
            enter_inline(self.flow.conn_id);
            let handler = &*self.handler;
            if catch_unwind(AssertUnwindSafe(|| handler.on_timeout(writer))).is_err() {
                log::warn!("{}: on_timeout panicked; answered 500", self.flow.peer_addr);
            }
            self.take_inline(conn);
        }
        self.timer = Timer::Off;
        self.emit(conn);
    }

    /// Hands `out` to the transport at once if it is a whole answer of
    /// bytes, the next one due, with nothing filed: a handler's usual
    /// answer, which then skips the queue of answers waiting their turn.
    /// Its middleware record, if any, is settled at once if no more input
    /// is buffered, else by `emit` at the end of the round, so that
    /// answers to pipelined requests still go out with one flush. Else
    /// gives it back, to be filed.
    fn write_now(&mut self, conn: &mut Conn<'_, HttpMsg>, out: Outgoing) -> Option<Outgoing> {
        let usual = out.step == Step::Last
            && out.attempt == 0
            && out.file.is_none()
            && out.credit.is_none()
            && self.next_in_order(out.seq);
        if !usual {
            return Some(out);
        }
        let Outgoing {
            bytes,
            then,
            record,
            cut,
            ..
        } = out;
        self.write_whole_now(conn, bytes, then, record, cut);
        None
    }

    /// Whether answer `seq` is the next to go out, with nothing filed,
    /// timed out or closing ahead of it: a whole answer then goes to the
    /// transport at once.
    fn next_in_order(&self, seq: u64) -> bool {
        seq == self.next_out
            && self.ex.ready.is_empty()
            && self.ex.timed_out.is_empty()
            && self.ex.close_after_seq.is_none()
    }

    /// Writes the next answer, whole, and finishes it (see
    /// [`HttpConn::next_in_order`]).
    #[inline]
    fn write_whole_now(
        &mut self,
        conn: &mut Conn<'_, HttpMsg>,
        bytes: Vec<u8>,
        then: Then,
        mut record: Option<Box<Record>>,
        cut: bool,
    ) {
        if let Some(record) = &mut record {
            record.handed(bytes.len() as u64, conn.now());
        }
        conn.write_vec(bytes);
        // With more input buffered, more answers may follow in this round.
        let settle = if self.ex.inbuf.is_empty() {
            Settle::Now
        } else {
            Settle::AtEmit
        };
        self.finish_next(conn, then, record, cut, settle);
    }

    /// Files a response or part of one under its sequence number.
    fn accept_part(&mut self, out: Outgoing) {
        if out.seq < self.next_out || (out.attempt == 0 && self.ex.timed_out.contains(&out.seq)) {
            // Discarded below: its producer may go on.
            if let Some(credit) = &out.credit {
                self.flow.release(credit, out.bytes.len());
            }
        }
        if out.seq < self.next_out {
            // Its response already finished (e.g. cut off, or answered by
            // on_timeout); a late part, whose exchange was reported.
            if let Some(record) = out.record {
                record.discard();
            }
            return;
        }
        if out.attempt == 0 && self.ex.timed_out.contains(&out.seq) {
            // on_timeout answered instead; the handler's answer is too late
            // (the exchange is reported with on_timeout's answer).
            if let Some(record) = out.record {
                record.discard();
            }
            return;
        }
        let index = (out.seq - self.next_out) as usize;
        let pending = self
            .ex
            .ready
            .slot(index)
            .get_or_insert_with(Pending::default);
        if !out.bytes.is_empty() {
            pending.push(Part::Bytes(out.bytes));
        }
        if let Some(file) = out.file {
            pending.push(Part::File(file));
        }
        if out.step == Step::Last {
            pending.step = Step::Last;
        }
        if out.record.is_some() {
            pending.record = out.record;
        }
        pending.cut |= out.cut;
        pending.then = out.then;
        if out.credit.is_some() {
            pending.credit = out.credit;
        }
        self.mark_closing(out.seq);
    }

    /// Sends every response that is next in order, then finishes the
    /// exchanges the socket has taken.
    #[inline]
    fn emit(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        // Answers written at once (the usual case) leave nothing filed.
        if self.ex.ready.is_empty() || self.emit_ready(conn) {
            self.after_emit(conn);
        }
        if !self.ex.unsent.is_empty() {
            self.settle_sent(conn);
        }
    }

    /// Sends the filed responses that are next in order; `false` if one of
    /// them closed the connection.
    #[inline(never)]
    fn emit_ready(&mut self, conn: &mut Conn<'_, HttpMsg>) -> bool {
        loop {
            let ex = &mut *self.ex;
            let Some(pending) = ex.ready.front_mut() else {
                break;
            };
            pending.head = HeadState::Sent;
            let mut handed = 0u64;
            // The loop's clock (no read of its own), as for `received`.
            let now = conn.now();
            for part in pending.take_parts() {
                match part {
                    Part::Bytes(bytes) => {
                        handed += bytes.len() as u64;
                        conn.write_vec(bytes)
                    }
                    Part::File(f) => {
                        handed += f.len;
                        conn.write_file(f.file, f.offset, f.len)
                    }
                }
            }
            if let Some(record) = &mut pending.record {
                record.handed(handed, now);
            }
            if let Some(credit) = &pending.credit {
                Self::settle(&self.flow, &mut ex.held, credit, handed, conn.queued());
            }
            if pending.step == Step::More {
                // A stream still being written: later responses wait.
                break;
            }
            let Some(done) = ex.ready.pop_front() else {
                break;
            };
            let (then, record, cut) = (done.then, done.record, done.cut);
            if self.finish_next(conn, then, record, cut, Settle::Now) == Then::Close {
                return false;
            }
        }
        true
    }

    /// What follows [`HttpConn::emit_ready`]: closes a connection with
    /// nothing left to answer, or arms its timer.
    #[inline]
    fn after_emit(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        if conn.is_closing() {
            // Closed after an answer written at once (`write_now`).
            return;
        }
        if self.reading == Reading::PeerDone && self.outstanding() == 0 {
            conn.close();
            return;
        }
        self.arm_timer(conn);
    }

    /// The next answer is wholly in the transport's queue: finishes it
    /// (when the socket takes its last byte, for its record) and moves on
    /// to the next; closes the connection if it was its last. Returns
    /// what the connection does after it.
    #[inline]
    fn finish_next(
        &mut self,
        conn: &mut Conn<'_, HttpMsg>,
        then: Then,
        record: Option<Box<Record>>,
        cut: bool,
        settle: Settle,
    ) -> Then {
        // The usual answer: nothing to record, time or close.
        if record.is_none()
            && then == Then::KeepOpen
            && self.ex.close_after_seq.is_none()
            && self.ex.deadlines.is_empty()
            && self.ex.timed_out.is_empty()
        {
            self.next_out += 1;
            return Then::KeepOpen;
        }
        self.finish_next_noted(conn, then, record, cut, settle)
    }

    /// [`HttpConn::finish_next`] for an answer with a record, a deadline
    /// or a close to see to.
    #[inline(never)]
    fn finish_next_noted(
        &mut self,
        conn: &mut Conn<'_, HttpMsg>,
        then: Then,
        record: Option<Box<Record>>,
        cut: bool,
        settle: Settle,
    ) -> Then {
        let last = if self.ex.close_after_seq == Some(self.next_out) {
            Then::Close
        } else {
            Then::KeepOpen
        };
        let then = then.and(last);
        if let Some(record) = record {
            // Finished when the socket has taken its last byte.
            let unsent = Unsent {
                record,
                mark: conn.sent() + conn.queued() as u64,
                keep_alive: then == Then::KeepOpen,
                end: if cut { End::Cut } else { End::Completed },
            };
            if settle == Settle::AtEmit && then == Then::KeepOpen {
                // Settled with the round's other answers, by `emit`.
                self.ex.unsent.push(unsent);
            } else {
                self.finish_when_sent(conn, unsent);
            }
        }
        if !self.ex.deadlines.is_empty() {
            self.ex.deadlines.remove(&self.next_out);
        }
        if !self.ex.timed_out.is_empty() {
            self.ex.timed_out.remove(&self.next_out);
        }
        self.next_out += 1;
        if then == Then::Close {
            self.stop_reading();
            self.abandon(End::Cut);
            conn.close();
        }
        then
    }

    /// A stream's `handed` bytes are in the transport's queue: they count
    /// as written unless that queue is over its high-water mark (the
    /// client is not reading), in which case `on_drained` releases them.
    fn settle(
        flow: &ConnFlow,
        held: &mut Option<(Arc<AtomicUsize>, usize)>,
        credit: &Arc<AtomicUsize>,
        handed: u64,
        queued: usize,
    ) {
        let handed = handed as usize;
        let mut kept = match held.take() {
            Some((old, n)) if Arc::ptr_eq(&old, credit) => n,
            Some((old, n)) => {
                // An earlier stream's: it is finished, nobody waits.
                flow.release(&old, n);
                0
            }
            None => 0,
        };
        kept += handed;
        if queued > MAX_QUEUED_OUTPUT {
            *held = Some((Arc::clone(credit), kept));
        } else {
            flow.release(credit, kept);
        }
    }

    /// Finishes `done` now if it is the last answer of this round and the
    /// socket takes it whole (the usual case: no queue of exchanges),
    /// else queues it for [`HttpConn::settle_sent`].
    fn finish_when_sent(&mut self, conn: &mut Conn<'_, HttpMsg>, done: Unsent) {
        if self.ex.ready.front().is_some() {
            // Not the last answer of this round: they go out together.
            self.ex.unsent.push(done);
        } else if let Some(record) = self.ex.unsent.finish_or_queue(conn, done) {
            self.spare_record = Some(record);
        }
    }

    /// Finishes the exchanges whose answers the socket has taken, writing
    /// what is queued first (at the end of a callback, so that answers to
    /// pipelined requests still go out together); the others finish on
    /// `on_sent`, or `on_close`.
    #[inline(never)]
    fn settle_sent(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        if let Some(record) = self.ex.unsent.settle(conn) {
            self.spare_record = Some(record);
        }
    }

    /// Drops every answer not yet sent, telling the middleware of those
    /// that have a record how they ended.
    fn abandon(&mut self, end: End) {
        for pending in self.ex.ready.drain() {
            if let Some(record) = pending.record {
                record.complete(false, end, Instant::now());
            }
        }
    }

    fn arm_timer(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        if self.outstanding() > 0 {
            // While handlers work, the timer serves response deadlines.
            let earliest = self.ex.deadlines.values().map(|(_, at)| *at).min();
            let want = Timer::Handlers { deadline: earliest };
            if self.timer == want {
                return;
            }
            self.timer = want;
            match earliest {
                Some(at) => conn.set_timeout(at.saturating_duration_since(Instant::now())),
                None => conn.clear_timeout(),
            }
            return;
        }
        let completed = self.completed;
        let want = if self.ex.inbuf.is_empty() {
            if self.timer == Timer::Idle {
                // Still idle-timed, as after every keep-alive answer (one
                // comparison of the variant, not of a whole `Timer`).
                return;
            }
            Timer::Idle
        } else if self.ex.parser.pending_head().is_some() {
            Timer::Body { completed }
        } else {
            Timer::Head { completed }
        };
        // The idle timer is not re-armed per request: when it fires it checks
        // the last input (see `on_timeout`). The request timers restart with
        // each request (`completed` differs).
        if self.timer == want {
            return;
        }
        self.timer = want;
        match want {
            Timer::Off | Timer::Handlers { .. } => conn.clear_timeout(),
            Timer::Idle => conn.set_timeout(self.settings.keepalive_timeout.min(GIVE_BACK_AFTER)),
            Timer::Head { .. } => conn.set_timeout(self.settings.header_timeout),
            Timer::Body { .. } => conn.set_timeout(self.settings.body_timeout),
        }
    }
}

impl HttpConn {
    /// [`Protocol::on_connect`]: needs no exchange.
    fn on_connect_held(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        let info = ConnectionInfo {
            peer_addr: conn.peer_addr(),
            local_addr: conn.local_addr(),
            tls: conn.tls(),
            worker: conn.worker(),
        };
        self.tls = info.tls.map(|info| {
            Arc::new(TlsFacts {
                info,
                client_subject: conn.tls_peer_subject().map(Arc::from),
            })
        });
        self.session = Session::Announced;
        if catch_unwind(AssertUnwindSafe(|| self.handler.on_connection(&info))).is_err() {
            log::warn!("{}: on_connection panicked", self.flow.peer_addr);
        }
        // A client that connects and says nothing gets the request timeout.
        self.timer = Timer::Head {
            completed: self.completed,
        };
        conn.set_timeout(self.settings.header_timeout);
    }

    fn on_input_held(&mut self, conn: &mut Conn<'_, HttpMsg>, data: &[u8]) {
        if !self.reading_requests() {
            return;
        }
        self.last_input = conn.now();
        self.ex.inbuf.extend_from_slice(data);
        self.process(conn);
        if self.outstanding() >= MAX_IN_FLIGHT && self.ex.inbuf.len() > MAX_BUFFERED_WHILE_PAUSED {
            self.set_backlog(conn, Backlog::Pipeline, true);
        }
    }

    fn on_drain_held(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        debug!("{}: draining", self.flow.peer_addr);
        if let Some(body) = &mut self.ex.streaming {
            // A body still arriving belongs to a request in flight: take it
            // in, then stop.
            body.then = Then::Close;
        } else {
            self.stop_reading();
        }
        if self.outstanding() == 0 && self.ex.streaming.is_none() {
            conn.close();
            return;
        }
        let last = self.next_seq - 1;
        self.close_after(conn, last);
    }

    fn on_sent_held(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        self.settle_sent(conn);
    }

    fn on_drained_held(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        if let Some((credit, n)) = self.ex.held.take() {
            self.flow.release(&credit, n);
        }
        if self.reading_requests() {
            self.process(conn);
        }
    }

    fn on_eof_held(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        if let Some(body) = self.ex.streaming.take() {
            body.sender.fail(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed during the body",
            );
        }
        self.reading = Reading::PeerDone;
        if self.outstanding() == 0 {
            conn.close();
        } else {
            // The answers still due are the last: the last one says so.
            self.close_after(conn, self.next_seq - 1);
        }
    }

    fn on_message_held(&mut self, conn: &mut Conn<'_, HttpMsg>, msg: HttpMsg) {
        match msg {
            HttpMsg::Response(out) => self.accept_part(out),
            HttpMsg::Deadline(facts, at) => self.add_deadline(facts, at),
            HttpMsg::ResumeBody => {
                self.set_backlog(conn, Backlog::Body, false);
                return;
            }
        }
        self.emit(conn);
        // Requests left waiting while the pipeline was full.
        if self.reading_requests() && !conn.is_closing() {
            self.process(conn);
            if self.read_pause.has(Backlog::Pipeline) && self.outstanding() < MAX_IN_FLIGHT {
                self.set_backlog(conn, Backlog::Pipeline, false);
            }
        }
    }

    fn on_timeout_held(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        match self.timer {
            Timer::Head { .. } | Timer::Body { .. } => {
                debug!("{}: request timeout: 408", self.flow.peer_addr);
                let payload = self.refused_payload();
                let layered = self.refused_info(None);
                self.stop_reading();
                self.file_own(
                    layered,
                    StatusCode::REQUEST_TIMEOUT,
                    HeaderMap::new(),
                    b"Request Timeout",
                    OwnFraming {
                        version: Version::HTTP_11,
                        then: Then::Close,
                        payload,
                    },
                );
                self.emit(conn);
                conn.close();
            }
            Timer::Idle => {
                let idle = self.last_input.elapsed();
                if idle < self.settings.keepalive_timeout {
                    // Requests came and went since the timer was armed, or
                    // this is the early round that gives the exchange back.
                    self.ex
                        .give_back_if_idle(self.outstanding(), &self.settings);
                    conn.set_timeout(self.settings.keepalive_timeout - idle);
                    return;
                }
                debug!("{}: keep-alive timeout", self.flow.peer_addr);
                conn.close();
            }
            Timer::Handlers { .. } => return self.expire_deadlines(conn),
            Timer::Off => return,
        }
        self.stop_reading();
    }

    fn on_close_held(&mut self, reason: &CloseReason) {
        debug!("{}: http connection closed: {reason}", self.flow.peer_addr);
        // Producers of response streams stop at their next write.
        self.flow.close();
        if let Some(body) = self.ex.streaming.take() {
            body.sender.fail(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed during the body",
            );
        }
        self.ex.unsent.abandon();
        self.abandon(End::ClientGone);
        if self.session == Session::Announced {
            let peer = self.flow.peer_addr;
            if catch_unwind(AssertUnwindSafe(|| self.handler.on_disconnection(peer))).is_err() {
                log::warn!("{peer}: on_disconnection panicked");
            }
        }
    }
}

/// Each callback holds an exchange while it runs. A connection keeps it
/// between requests and gives it back on a round of its keep-alive timer
/// that finds it idle (the first comes [`GIVE_BACK_AFTER`] after it went
/// idle), or when it closes: a keep-alive request neither takes nor gives
/// one.
impl Protocol for HttpConn {
    type Message = HttpMsg;

    fn on_connect(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        self.on_connect_held(conn);
    }

    #[inline]
    fn on_input(&mut self, conn: &mut Conn<'_, HttpMsg>, data: &[u8]) {
        self.ex.take_up(&self.settings);
        self.on_input_held(conn, data);
    }

    fn on_drain(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        self.ex.take_up(&self.settings);
        self.on_drain_held(conn);
    }

    fn on_sent(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        self.ex.take_up(&self.settings);
        self.on_sent_held(conn);
    }

    fn on_drained(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        self.ex.take_up(&self.settings);
        self.on_drained_held(conn);
    }

    fn on_eof(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        self.ex.take_up(&self.settings);
        self.on_eof_held(conn);
    }

    fn on_message(&mut self, conn: &mut Conn<'_, HttpMsg>, msg: HttpMsg) {
        self.ex.take_up(&self.settings);
        self.on_message_held(conn, msg);
    }

    fn on_timeout(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        self.ex.take_up(&self.settings);
        self.on_timeout_held(conn);
    }

    fn on_close(&mut self, reason: &CloseReason) {
        self.ex.take_up(&self.settings);
        self.on_close_held(reason);
        self.ex
            .give_back_if_idle(self.outstanding(), &self.settings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget of an idle keep-alive connection: the worker's slab
    /// entry is the transport's `PeerIo` plus this. What only a request in
    /// progress needs stays out of it, in the pooled `Exchange`; a field
    /// added here costs every idle connection its size.
    #[test]
    fn an_idle_connection_stays_small() {
        assert!(
            std::mem::size_of::<HttpConn>() <= 136,
            "HttpConn grew to {} bytes",
            std::mem::size_of::<HttpConn>()
        );
        assert_eq!(
            std::mem::size_of::<Slot>(),
            std::mem::size_of::<usize>(),
            "an idle connection holds one pointer of its exchange"
        );
    }
}
