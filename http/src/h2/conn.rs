//! One HTTP/2 connection: the transport [`Protocol`] that reads frames,
//! keeps the streams' states and both levels of flow control, calls the
//! [`Handler`] once per stream, and turns the writers' answers into
//! HEADERS and DATA frames as the client's windows allow.
//!
//! Everything here runs on the connection's worker. Handlers answer
//! through the same [`ResponseWriter`] as over HTTP/1.1, now or later and
//! from any thread; their parts arrive like HTTP/1.1 ones, keyed by stream
//! id instead of a pipeline sequence number.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode, Version};
use log::debug;
use pistachio_transport::{CloseReason, Conn, Protocol};

use super::frame::{self, setting, Head, Kind, Reason};
use super::hpack::{Decoded, Decoder, Encoder};
use super::request::{self, Refusal};
use super::response;
use super::{Counters, Shared};
use crate::body::{self, BodySender};
use crate::conn::Settings;
use crate::date::LoopDate;
use crate::middleware::{Answer, Layered, Layers, Pending as Record, RequestInfo};
use crate::request::{Request, TlsFacts};
use crate::response::SERVER_TEXT;
use crate::sent::{Unsent, UnsentQueue};
use crate::writer::{
    enter_inline, leave_inline, ConnFlow, FileBody, HttpMsg, Outgoing, Produced, RequestFacts,
    ResponseWriter, Step, Target,
};
use crate::{BodyMode, ConnectionInfo, End, Handler};

/// Connection ids of HTTP/2 connections: the high bit set keeps them apart
/// from HTTP/1.1 ones (both mark a worker's inline section).
static H2_IDS: AtomicU64 = AtomicU64::new(1 << 63);

/// DATA frames are produced while the transport holds less than this; past
/// it the transport owes an `on_drained`, which resumes them.
const OUTPUT_HIGH: usize = 256 * 1024;

/// Streams recently reset by the server: frames the client sent before it
/// learnt of the reset are ignored rather than treated as errors.
const RECENTLY_CLOSED: usize = 128;

/// Notes a stream the server reset, forgetting the oldest beyond
/// [`RECENTLY_CLOSED`].
fn remember(list: &mut VecDeque<u32>, id: u32) {
    if list.len() == RECENTLY_CLOSED {
        list.pop_front();
    }
    list.push_back(id);
}

/// Most CONTINUATION frames one header block may take.
const MAX_CONTINUATIONS: u32 = 64;

/// A connection error: `GOAWAY` with this code, then close.
#[derive(Debug, Clone, Copy)]
struct ConnError(Reason, &'static str);

type Res = Result<(), ConnError>;

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the client's 24-byte preface.
    Preface,
    /// The preface is in; its first frame must be SETTINGS.
    FirstSettings,
    /// Frames flow.
    Open,
    /// `GOAWAY` for an error was sent; input is ignored.
    Closed,
}

/// A header block being received (HEADERS, then CONTINUATION frames).
#[derive(Debug)]
struct HeaderBlock {
    stream: u32,
    data: Vec<u8>,
    end_stream: bool,
    frames: u32,
    /// The HEADERS frame made the stream depend on itself.
    self_dependent: bool,
}

/// What happens to a stream's request body.
#[derive(Debug)]
enum BodyIn {
    /// No body, or the body is over.
    None,
    /// Collected for a buffered request, dispatched at END_STREAM.
    Buffering {
        request: Box<Request>,
        received_at: Option<Instant>,
        data: Vec<u8>,
    },
    /// Forwarded to the handler's [`crate::BodyStream`].
    Streaming {
        sender: BodySender,
        /// The reader lags: the stream's window is not reopened until it
        /// catches up.
        paused: bool,
        limit: u64,
    },
    /// Read and dropped (the request was answered without it).
    Discard,
}

/// A piece of response body waiting for window.
#[derive(Debug)]
enum Chunk {
    Bytes { data: Vec<u8>, pos: usize },
    File(FileBody),
}

/// The response side of a stream.
#[derive(Debug, Default)]
struct Out {
    head_sent: bool,
    queue: VecDeque<Chunk>,
    /// The last part is in the queue.
    last: bool,
    /// The writer cut the response off: RST_STREAM instead of END_STREAM.
    cut: bool,
    /// END_STREAM (or the cut's RST_STREAM) went out.
    ended: bool,
    credit: Option<Arc<AtomicUsize>>,
    record: Option<Box<Record>>,
}

impl Out {
    fn waiting(&self) -> bool {
        self.head_sent && !self.ended && (!self.queue.is_empty() || self.last)
    }
}

#[derive(Debug)]
struct Stream {
    /// END_STREAM arrived (half-closed remote).
    recv_closed: bool,
    /// Reset by either side: output is discarded, input ignored.
    reset: bool,
    /// The handler's (or `on_timeout`'s) last part arrived: nothing more
    /// is owed to this stream.
    handler_done: bool,
    recv_window: i64,
    /// Body bytes taken in and not yet granted back with WINDOW_UPDATE.
    recv_owed: u32,
    send_window: i64,
    content_length: Option<u64>,
    received: u64,
    last_input: Instant,
    body: BodyIn,
    out: Out,
    flow: Arc<ConnFlow>,
    method: Method,
    deadline: Option<(RequestFacts, Instant)>,
    timed_out: bool,
    /// Reset with this code once the answer is out (a malformed request:
    /// `400`, then `PROTOCOL_ERROR`).
    rst_after: Option<Reason>,
}

impl Stream {
    fn fail_body(&mut self, kind: std::io::ErrorKind, why: &'static str) {
        if let BodyIn::Streaming { sender, .. } = &self.body {
            sender.fail(kind, why);
        }
        self.body = BodyIn::None;
    }
}

/// Per-second budgets of frames that cost work without progress.
#[derive(Debug)]
struct Budget {
    since: Instant,
    control: u32,
    resets: u32,
}

/// Which budget a frame is charged to.
#[derive(Debug, Clone, Copy)]
enum Charge {
    Control,
    Reset,
}

/// Whether [`Handler::on_connection`] ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    Pending,
    Announced,
}

pub(crate) struct H2Conn {
    id: u64,
    handler: Arc<dyn Handler>,
    settings: Arc<Settings>,
    shared: Arc<Shared>,
    peer_addr: SocketAddr,
    /// The TLS session and the verified client's subject, shared by the
    /// connection's requests.
    tls: Option<Arc<TlsFacts>>,
    session: Session,
    phase: Phase,
    started: Instant,
    last_input: Instant,
    inbuf: Vec<u8>,
    /// Boxed: a map's node holds eleven values and an emptied map keeps
    /// its last node, so with the streams inline every connection that
    /// ever had a stream would hold 3 KiB while idle.
    streams: BTreeMap<u32, Box<Stream>>,
    last_peer_stream: u32,
    recently_closed: VecDeque<u32>,
    block: Option<HeaderBlock>,
    decoder: Decoder,
    encoder: Encoder,
    peer_max_frame: u32,
    peer_initial_window: u32,
    send_window: i64,
    recv_window: i64,
    recv_owed: u32,
    settings_due: Option<Instant>,
    /// `GOAWAY` sent with this last stream id: later streams are ignored.
    goaway: Option<u32>,
    /// The client sent GOAWAY, or EOF: close once the streams are done.
    peer_leaving: bool,
    stalled_since: Option<Instant>,
    budget: Budget,
    spare_record: Option<Box<Record>>,
    /// Exchanges whose last frame is queued but not yet taken by the
    /// socket, oldest first, with the connection's byte count that ends
    /// each (see `Conn::sent`): they finish when the socket has it.
    unsent: UnsentQueue,
    /// Frames written by the current callback, handed to the transport in
    /// one piece.
    pending: Vec<u8>,
}

impl std::fmt::Debug for H2Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Conn")
            .field("peer_addr", &self.peer_addr)
            .field("phase", &self.phase)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl H2Conn {
    pub(crate) fn new(
        handler: Arc<dyn Handler>,
        settings: Arc<Settings>,
        shared: Arc<Shared>,
        peer_addr: SocketAddr,
    ) -> H2Conn {
        let now = Instant::now();
        let recv_window = i64::from(shared.limits.connection_window_size);
        H2Conn {
            id: H2_IDS.fetch_add(1, Ordering::Relaxed),
            handler,
            settings,
            shared,
            peer_addr,
            tls: None,
            session: Session::Pending,
            phase: Phase::Preface,
            started: now,
            last_input: now,
            inbuf: Vec::new(),
            streams: BTreeMap::new(),
            last_peer_stream: 0,
            recently_closed: VecDeque::new(),
            block: None,
            decoder: Decoder::new(),
            encoder: Encoder::new(),
            peer_max_frame: frame::DEFAULT_MAX_FRAME_SIZE,
            peer_initial_window: frame::DEFAULT_WINDOW,
            send_window: i64::from(frame::DEFAULT_WINDOW),
            recv_window,
            recv_owed: 0,
            settings_due: None,
            goaway: None,
            peer_leaving: false,
            stalled_since: None,
            budget: Budget {
                since: now,
                control: 0,
                resets: 0,
            },
            spare_record: None,
            unsent: UnsentQueue::default(),
            pending: Vec::new(),
        }
    }

    fn max_list_size(&self) -> usize {
        self.shared
            .limits
            .max_header_list_size
            .map_or(self.settings.limits.max_head_size, |n| n as usize)
    }

    /// Most bytes a header block may take on the wire.
    fn max_block_size(&self) -> usize {
        self.max_list_size().saturating_mul(2).max(16 * 1024)
    }

    /// Writes what the callback produced.
    fn flush(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        if !self.pending.is_empty() {
            conn.write_vec(std::mem::take(&mut self.pending));
        }
        if !self.unsent.is_empty() {
            self.settle_sent(conn);
        }
    }

    /// Finishes the exchanges whose last frame the socket has taken,
    /// writing what is queued first; the others finish on `on_sent`, or
    /// `on_close`.
    fn settle_sent(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        if let Some(record) = self.unsent.settle(conn) {
            self.spare_record = Some(record);
        }
    }

    // ----- errors -----

    /// Ends the connection: GOAWAY with `reason`, then close.
    fn connection_error(&mut self, conn: &mut Conn<'_, HttpMsg>, e: ConnError) {
        let ConnError(reason, why) = e;
        debug!(
            "{}: http/2 connection error {reason:?}: {why}",
            self.peer_addr
        );
        let counters = &self.shared.counters;
        match reason {
            Reason::EnhanceYourCalm => Counters::bump(&counters.abuse_closes),
            Reason::SettingsTimeout | Reason::NoError => Counters::bump(&counters.timeouts),
            _ => Counters::bump(&counters.protocol_errors),
        }
        frame::put_goaway(&mut self.pending, self.last_peer_stream, reason);
        self.phase = Phase::Closed;
        self.goaway = Some(self.last_peer_stream);
        self.flush(conn);
        conn.close();
    }

    /// A stream error: RST_STREAM, and the stream is done.
    fn stream_error(&mut self, id: u32, reason: Reason) {
        debug!("{}: stream {id} reset: {reason:?}", self.peer_addr);
        frame::put_rst(&mut self.pending, id, reason);
        self.note_closed(id);
        self.reset_stream(id);
    }

    /// Marks a stream reset: its output is dropped, its body fails, its
    /// record reports the client gone. It stays (counted against the
    /// concurrency limit) until its handler has answered.
    fn reset_stream(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if !stream.reset {
            stream.reset = true;
            stream.fail_body(std::io::ErrorKind::ConnectionReset, "the stream was reset");
            stream.flow.close();
            let out = std::mem::take(&mut stream.out);
            if let Some(credit) = &out.credit {
                let held = out.queue.iter().map(|c| match c {
                    Chunk::Bytes { data, pos } => data.len() - pos,
                    Chunk::File(_) => 0,
                });
                stream.flow.release(credit, held.sum());
            }
            if let Some(record) = out.record {
                if !out.ended {
                    self.spare_record =
                        Some(record.complete(false, End::ClientGone, Instant::now()));
                }
            }
            stream.out.ended = true;
        }
        self.maybe_remove(id);
    }

    fn note_closed(&mut self, id: u32) {
        remember(&mut self.recently_closed, id);
    }

    /// Removes a stream once nothing more is due on either side.
    fn maybe_remove(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.out.ended && !stream.recv_closed && !stream.reset {
            // Answered before the whole request came: stop the rest
            // (RFC 9113 §8.1).
            frame::put_rst(&mut self.pending, id, Reason::NoError);
            stream.reset = true;
            remember(&mut self.recently_closed, id);
            stream.fail_body(
                std::io::ErrorKind::UnexpectedEof,
                "the response ended before the request body",
            );
        }
        let done = stream.out.ended && stream.handler_done && (stream.recv_closed || stream.reset);
        if done {
            self.streams.remove(&id);
        }
    }

    /// Counts a frame against its per-second budget.
    fn charge(&mut self, now: Instant, what: Charge) -> Res {
        if now.saturating_duration_since(self.budget.since) >= Duration::from_secs(1) {
            self.budget = Budget {
                since: now,
                control: 0,
                resets: 0,
            };
        }
        let limits = &self.shared.limits;
        match what {
            Charge::Control => {
                self.budget.control += 1;
                if self.budget.control > limits.max_control_frames_per_second {
                    return Err(ConnError(Reason::EnhanceYourCalm, "control frame flood"));
                }
            }
            Charge::Reset => {
                self.budget.resets += 1;
                if self.budget.resets > limits.max_resets_per_second {
                    return Err(ConnError(Reason::EnhanceYourCalm, "stream reset flood"));
                }
            }
        }
        Ok(())
    }

    // ----- input -----

    fn process(&mut self, conn: &mut Conn<'_, HttpMsg>) -> Res {
        let buf = std::mem::take(&mut self.inbuf);
        let mut pos = 0;
        let result = loop {
            if self.phase == Phase::Closed || conn.is_closing() {
                break Ok(());
            }
            let rest = &buf[pos..];
            if self.phase == Phase::Preface {
                if rest.len() < frame::PREFACE.len() {
                    if !frame::PREFACE.starts_with(rest) {
                        break Err(ConnError(Reason::Protocol, "bad connection preface"));
                    }
                    break Ok(());
                }
                if &rest[..frame::PREFACE.len()] != frame::PREFACE {
                    break Err(ConnError(Reason::Protocol, "bad connection preface"));
                }
                pos += frame::PREFACE.len();
                self.phase = Phase::FirstSettings;
                continue;
            }
            let Some(head) = Head::parse(rest) else {
                break Ok(());
            };
            if head.len > self.shared.limits.max_frame_size {
                break Err(ConnError(
                    Reason::FrameSize,
                    "frame larger than SETTINGS_MAX_FRAME_SIZE",
                ));
            }
            let end = frame::HEADER_LEN + head.len as usize;
            if rest.len() < end {
                break Ok(());
            }
            pos += end;
            if let Err(e) = self.frame(conn, head, &rest[frame::HEADER_LEN..end]) {
                break Err(e);
            }
        };
        self.inbuf = buf;
        self.inbuf.drain(..pos);
        result
    }

    fn frame(&mut self, conn: &mut Conn<'_, HttpMsg>, head: Head, payload: &[u8]) -> Res {
        if self.phase == Phase::FirstSettings {
            if head.kind != Kind::Settings || head.has(frame::ACK) {
                return Err(ConnError(
                    Reason::Protocol,
                    "the preface must be followed by SETTINGS",
                ));
            }
            self.phase = Phase::Open;
        }
        if let Some(block) = &self.block {
            if head.kind != Kind::Continuation || head.stream != block.stream {
                return Err(ConnError(Reason::Protocol, "header block interrupted"));
            }
        }
        match head.kind {
            Kind::Data => self.on_data(conn, head, payload),
            Kind::Headers => self.on_headers(conn, head, payload),
            Kind::Continuation => self.on_continuation(conn, head, payload),
            Kind::Priority => self.on_priority(conn, head, payload),
            Kind::RstStream => self.on_rst(conn, head, payload),
            Kind::Settings => self.on_settings(conn, head, payload),
            Kind::PushPromise => Err(ConnError(Reason::Protocol, "PUSH_PROMISE from a client")),
            Kind::Ping => self.on_ping(conn, head, payload),
            Kind::GoAway => self.on_goaway(conn, head, payload),
            Kind::WindowUpdate => self.on_window_update(conn, head, payload),
            Kind::Unknown(_) => Ok(()),
        }
    }

    /// Whether a frame on `id` is for a stream the client has not opened.
    fn idle(&self, id: u32) -> bool {
        id > self.last_peer_stream
    }

    /// A stream above the last one a GOAWAY promised to process.
    fn ignored(&self, id: u32) -> bool {
        self.goaway.is_some_and(|last| id > last)
    }

    fn on_data(&mut self, conn: &mut Conn<'_, HttpMsg>, head: Head, payload: &[u8]) -> Res {
        let id = head.stream;
        if id == 0 {
            return Err(ConnError(Reason::Protocol, "DATA on stream 0"));
        }
        let data = if head.has(frame::PADDED) {
            frame::unpad(payload).ok_or(ConnError(Reason::Protocol, "bad padding"))?
        } else {
            payload
        };
        // The whole frame counts against the connection's window, whatever
        // becomes of it; the window is reopened as frames are taken in.
        let len = head.len;
        if i64::from(len) > self.recv_window {
            return Err(ConnError(Reason::FlowControl, "connection window exceeded"));
        }
        self.recv_window -= i64::from(len);
        self.recv_owed += len;
        if self.ignored(id) {
            return Ok(());
        }
        if self.idle(id) {
            return Err(ConnError(Reason::Protocol, "DATA on an idle stream"));
        }
        let end_stream = head.has(frame::END_STREAM);
        if data.is_empty() && !end_stream {
            self.charge(conn.now(), Charge::Control)?;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            if !self.recently_closed.contains(&id) {
                self.stream_error(id, Reason::StreamClosed);
            }
            return Ok(());
        };
        if stream.reset {
            return Ok(());
        }
        if stream.recv_closed {
            self.stream_error(id, Reason::StreamClosed);
            return Ok(());
        }
        if i64::from(len) > stream.recv_window {
            self.stream_error(id, Reason::FlowControl);
            return Ok(());
        }
        stream.recv_window -= i64::from(len);
        stream.last_input = conn.now();
        // Padding is given back at once.
        stream.recv_owed += len - data.len() as u32;
        stream.received += data.len() as u64;
        if stream.content_length.is_some_and(|n| stream.received > n)
            || (end_stream && stream.content_length.is_some_and(|n| stream.received != n))
        {
            debug!(
                "{}: stream {id}: body does not match content-length",
                self.peer_addr
            );
            self.stream_error(id, Reason::Protocol);
            return Ok(());
        }
        let max_body = self.settings.limits.max_body_size;
        let mut too_large = false;
        match &mut stream.body {
            BodyIn::Buffering { data: buffered, .. } => {
                if buffered.len() + data.len() > max_body {
                    too_large = true;
                } else {
                    buffered.extend_from_slice(data);
                    stream.recv_owed += data.len() as u32;
                }
            }
            BodyIn::Streaming {
                sender,
                paused,
                limit,
            } => {
                if stream.received > *limit {
                    sender.fail(
                        std::io::ErrorKind::InvalidData,
                        "request body exceeds its size limit",
                    );
                    stream.body = BodyIn::Discard;
                    stream.recv_owed += data.len() as u32;
                } else {
                    if !data.is_empty() && sender.send(data.to_vec()) {
                        *paused = true;
                    }
                    stream.recv_owed += data.len() as u32;
                }
            }
            BodyIn::None | BodyIn::Discard => stream.recv_owed += data.len() as u32,
        }
        if too_large {
            stream.body = BodyIn::Discard;
            stream.recv_owed += data.len() as u32;
            self.answer_own(
                conn,
                id,
                StatusCode::PAYLOAD_TOO_LARGE,
                b"request body too large",
            );
        }
        if end_stream {
            self.end_of_request(conn, id, None);
        }
        Ok(())
    }

    /// END_STREAM arrived on `id` (with DATA or trailers).
    fn end_of_request(
        &mut self,
        conn: &mut Conn<'_, HttpMsg>,
        id: u32,
        trailers: Option<HeaderMap>,
    ) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.recv_closed = true;
        match std::mem::replace(&mut stream.body, BodyIn::None) {
            BodyIn::Buffering {
                mut request,
                received_at,
                data,
            } => {
                if let Some(trailers) = trailers {
                    request.headers_mut().extend(trailers);
                }
                let full = Request::from_parts(
                    request.into_head(),
                    data,
                    self.peer_addr,
                    self.tls.clone(),
                );
                self.dispatch(conn, id, full, received_at);
            }
            BodyIn::Streaming { sender, .. } => sender.end(),
            BodyIn::None | BodyIn::Discard => {}
        }
        self.maybe_remove(id);
    }

    fn on_headers(&mut self, conn: &mut Conn<'_, HttpMsg>, head: Head, payload: &[u8]) -> Res {
        let id = head.stream;
        if id == 0 {
            return Err(ConnError(Reason::Protocol, "HEADERS on stream 0"));
        }
        if id % 2 == 0 {
            return Err(ConnError(Reason::Protocol, "even stream id from a client"));
        }
        let mut fragment = if head.has(frame::PADDED) {
            frame::unpad(payload).ok_or(ConnError(Reason::Protocol, "bad padding"))?
        } else {
            payload
        };
        let mut self_dependent = false;
        if head.has(frame::PRIORITY) {
            if fragment.len() < 5 {
                return Err(ConnError(
                    Reason::FrameSize,
                    "HEADERS too short for its priority",
                ));
            }
            self_dependent = frame::u31(fragment) == id;
            fragment = &fragment[5..];
        }
        if fragment.is_empty() && !head.has(frame::END_HEADERS) {
            self.charge(conn.now(), Charge::Control)?;
        }
        if fragment.len() > self.max_block_size() {
            return Err(ConnError(Reason::EnhanceYourCalm, "header block too large"));
        }
        let block = HeaderBlock {
            stream: id,
            data: fragment.to_vec(),
            end_stream: head.has(frame::END_STREAM),
            frames: 1,
            self_dependent,
        };
        if head.has(frame::END_HEADERS) {
            self.headers_done(conn, block)
        } else {
            self.block = Some(block);
            Ok(())
        }
    }

    fn on_continuation(&mut self, conn: &mut Conn<'_, HttpMsg>, head: Head, payload: &[u8]) -> Res {
        let max = self.max_block_size();
        let Some(block) = self.block.as_mut() else {
            return Err(ConnError(Reason::Protocol, "CONTINUATION without HEADERS"));
        };
        block.frames += 1;
        block.data.extend_from_slice(payload);
        if block.data.len() > max || block.frames > MAX_CONTINUATIONS {
            return Err(ConnError(Reason::EnhanceYourCalm, "header block too large"));
        }
        if payload.is_empty() && !head.has(frame::END_HEADERS) {
            self.charge(conn.now(), Charge::Control)?;
        }
        if head.has(frame::END_HEADERS) {
            let block = self.block.take().expect("checked above");
            return self.headers_done(conn, block);
        }
        Ok(())
    }

    /// A complete header block: decode it (always, to keep the HPACK
    /// state in step), then open a stream or take trailers.
    fn headers_done(&mut self, conn: &mut Conn<'_, HttpMsg>, block: HeaderBlock) -> Res {
        let max_fields = self.settings.limits.max_headers.saturating_add(4);
        let decoded = self
            .decoder
            .decode(&block.data, self.max_list_size(), max_fields)
            .map_err(|_| ConnError(Reason::Compression, "bad header block"))?;
        let id = block.stream;
        if self.ignored(id) {
            return Ok(());
        }
        if !self.idle(id) {
            return self.trailers(conn, id, block.end_stream, decoded);
        }
        self.last_peer_stream = id;
        if self.peer_leaving {
            return Ok(());
        }
        if block.self_dependent {
            self.stream_error(id, Reason::Protocol);
            return Ok(());
        }
        let fields = match decoded {
            Decoded::Fields(fields) => fields,
            Decoded::TooLarge => {
                self.refuse(
                    conn,
                    id,
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request header fields too large",
                    (block.end_stream, None),
                );
                return Ok(());
            }
        };
        let built = match request::build(&fields) {
            Ok(built) => built,
            Err(Refusal::Malformed(why)) => {
                debug!("{}: stream {id}: malformed request: {why}", self.peer_addr);
                self.refuse(
                    conn,
                    id,
                    StatusCode::BAD_REQUEST,
                    why,
                    (block.end_stream, Some(Reason::Protocol)),
                );
                return Ok(());
            }
            Err(Refusal::Unsupported(status, why)) => {
                self.refuse(conn, id, status, why, (block.end_stream, None));
                return Ok(());
            }
        };
        if self.streams.len() >= self.shared.limits.max_concurrent_streams as usize {
            Counters::bump(&self.shared.counters.streams_refused);
            self.stream_error(id, Reason::RefusedStream);
            return Ok(());
        }
        self.open_stream(conn, id, built, block.end_stream);
        Ok(())
    }

    /// A second header block on an open stream: trailers.
    fn trailers(
        &mut self,
        conn: &mut Conn<'_, HttpMsg>,
        id: u32,
        end_stream: bool,
        decoded: Decoded,
    ) -> Res {
        let Some(stream) = self.streams.get(&id) else {
            if self.recently_closed.contains(&id) {
                return Ok(());
            }
            // A stream id lower than one already used (RFC 9113 §5.1.1).
            return Err(ConnError(Reason::Protocol, "HEADERS on a closed stream"));
        };
        if stream.reset {
            return Ok(());
        }
        if stream.recv_closed {
            self.stream_error(id, Reason::StreamClosed);
            return Ok(());
        }
        if !end_stream {
            self.stream_error(id, Reason::Protocol);
            return Ok(());
        }
        if stream.content_length.is_some_and(|n| n != stream.received) {
            self.stream_error(id, Reason::Protocol);
            return Ok(());
        }
        let map = match decoded {
            Decoded::Fields(fields) => request::trailers(&fields),
            Decoded::TooLarge => Err(Refusal::Malformed("trailers too large")),
        };
        match map {
            Ok(map) => self.end_of_request(conn, id, Some(map)),
            Err(_) => self.stream_error(id, Reason::Protocol),
        }
        Ok(())
    }

    /// Answers a request the connection refuses itself, then resets the
    /// stream with `rst` if given.
    fn refuse(
        &mut self,
        conn: &mut Conn<'_, HttpMsg>,
        id: u32,
        status: StatusCode,
        why: &'static str,
        (end_stream, rst): (bool, Option<Reason>),
    ) {
        // A stream of its own for the answer, whatever the concurrency
        // limit: it is answered and gone within this call.
        let mut stream = self.new_stream(conn, end_stream, None, Method::GET);
        stream.body = BodyIn::Discard;
        stream.rst_after = rst;
        self.streams.insert(id, stream);
        // The endpoint-wide middleware sees the answers the server makes
        // itself, as over HTTP/1.1.
        let layered =
            (self.settings.layered && !self.settings.middleware.0.is_empty()).then(|| {
                Box::new(Layered::new(
                    RequestInfo::unparsed(self.peer_addr, conn.now()),
                    Layers::shared(&self.settings.middleware),
                ))
            });
        if let Some(target) = self.target(id, Method::GET, layered, 0) {
            self.send_own(conn, target, status, why.as_bytes());
        }
    }

    /// Frames the header block written to `pending` after the
    /// [`frame::HEADER_LEN`] bytes reserved at `start`: one HEADERS frame
    /// in place, or HEADERS and CONTINUATION frames if it is larger than
    /// the client's frame size.
    fn seal_headers(&mut self, start: usize, id: u32, end_stream: bool) {
        let len = self.pending.len() - start - frame::HEADER_LEN;
        let max = self.peer_max_frame as usize;
        if len <= max {
            let flags = frame::END_HEADERS | if end_stream { frame::END_STREAM } else { 0 };
            self.pending[start..start + frame::HEADER_LEN].copy_from_slice(&frame::head_bytes(
                len,
                Kind::Headers,
                flags,
                id,
            ));
            return;
        }
        let block = self.pending.split_off(start + frame::HEADER_LEN);
        self.pending.truncate(start);
        let mut chunks = block.chunks(max).peekable();
        let mut first = true;
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let mut flags = if last { frame::END_HEADERS } else { 0 };
            let kind = if first {
                if end_stream {
                    flags |= frame::END_STREAM;
                }
                Kind::Headers
            } else {
                Kind::Continuation
            };
            frame::put_frame(&mut self.pending, kind, flags, id, chunk);
            first = false;
        }
    }

    /// A stream in its first state, with the windows of now.
    fn new_stream(
        &self,
        conn: &Conn<'_, HttpMsg>,
        end_stream: bool,
        content_length: Option<u64>,
        method: Method,
    ) -> Box<Stream> {
        let limits = &self.shared.limits;
        // Until the client has our SETTINGS it may assume the default window.
        let recv_window = if self.settings_due.is_some() {
            limits.initial_window_size.max(frame::DEFAULT_WINDOW)
        } else {
            limits.initial_window_size
        };
        Box::new(Stream {
            recv_closed: end_stream,
            reset: false,
            handler_done: false,
            recv_window: i64::from(recv_window),
            recv_owed: 0,
            send_window: i64::from(self.peer_initial_window),
            content_length,
            received: 0,
            last_input: conn.now(),
            body: BodyIn::None,
            out: Out::default(),
            flow: Arc::new({
                let flow = ConnFlow::new(self.id, self.peer_addr);
                flow.connect(|| conn.handle());
                flow
            }),
            method,
            deadline: None,
            timed_out: false,
            rst_after: None,
        })
    }

    fn open_stream(
        &mut self,
        conn: &mut Conn<'_, HttpMsg>,
        id: u32,
        built: request::Built,
        end_stream: bool,
    ) {
        Counters::bump(&self.shared.counters.streams);
        let mut request =
            Request::from_parts(built.head, Vec::new(), self.peer_addr, self.tls.clone());
        let stream = self.new_stream(
            conn,
            end_stream,
            built.content_length,
            request.method().clone(),
        );
        self.streams.insert(id, stream);
        if end_stream && built.content_length.is_some_and(|n| n != 0) {
            self.stream_error(id, Reason::Protocol);
            return;
        }
        let received = if self.settings.layered {
            let at = conn.now();
            if let Some((answer, layers)) = self.settings.head_phase(&*self.handler, &request) {
                self.discard_body(id);
                self.answer_early(conn, id, &request, answer, layers, at);
                return;
            }
            Some(at)
        } else {
            None
        };
        if end_stream {
            self.dispatch(conn, id, request, received);
            return;
        }
        let handler = &*self.handler;
        let mode = catch_unwind(AssertUnwindSafe(|| handler.body_mode(&request)))
            .unwrap_or(BodyMode::Buffered);
        let declared = built.content_length;
        let limit = match mode {
            BodyMode::Buffered => self.settings.limits.max_body_size as u64,
            BodyMode::StreamedUpTo(limit) => limit,
            _ => u64::MAX,
        };
        if declared.is_some_and(|n| n > limit) {
            self.discard_body(id);
            self.answer_own(
                conn,
                id,
                StatusCode::PAYLOAD_TOO_LARGE,
                b"request body too large",
            );
            return;
        }
        if mode == BodyMode::Buffered {
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.body = BodyIn::Buffering {
                    request: Box::new(request),
                    received_at: received,
                    data: Vec::new(),
                };
            }
            return;
        }
        let (sender, stream_reader) =
            body::channel(conn.handle(), self.settings.body_timeout, declared);
        request.set_body_stream(stream_reader);
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.body = BodyIn::Streaming {
                sender,
                paused: false,
                limit,
            };
        }
        self.dispatch(conn, id, request, received);
    }

    fn discard_body(&mut self, id: u32) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.body = BodyIn::Discard;
        }
    }

    /// Answers at the head phase through a writer wrapped in `layers`.
    fn answer_early(
        &mut self,
        conn: &mut Conn<'_, HttpMsg>,
        id: u32,
        request: &Request,
        answer: Answer,
        layers: Layers,
        at: Instant,
    ) {
        let layered = Box::new(Layered::new(RequestInfo::of(request, at), layers));
        let Some(target) = self.target(id, request.method().clone(), Some(layered), 0) else {
            return;
        };
        let mut writer = ResponseWriter::new(target);
        *writer.headers_mut() = answer.headers;
        enter_inline(self.id);
        writer.send(answer.status, answer.body);
        self.take_inline(conn);
    }

    /// Answers a stream in its handler's place (413), through a writer.
    fn answer_own(
        &mut self,
        conn: &mut Conn<'_, HttpMsg>,
        id: u32,
        status: StatusCode,
        body: &[u8],
    ) {
        let Some(method) = self.streams.get(&id).map(|s| s.method.clone()) else {
            return;
        };
        if let Some(target) = self.target(id, method, None, 0) {
            self.send_own(conn, target, status, body);
        }
    }

    /// Sends a short `text/plain` answer of the server's own through
    /// `target`, on this thread.
    fn send_own(
        &mut self,
        conn: &mut Conn<'_, HttpMsg>,
        target: Target,
        status: StatusCode,
        body: &[u8],
    ) {
        let mut writer = ResponseWriter::new(target);
        writer
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(SERVER_TEXT));
        enter_inline(self.id);
        writer.send(status, body);
        self.take_inline(conn);
    }

    fn target(
        &self,
        id: u32,
        method: Method,
        layered: Option<Box<Layered>>,
        attempt: u8,
    ) -> Option<Target> {
        let stream = self.streams.get(&id)?;
        Some(Target {
            seq: u64::from(id),
            method,
            version: Version::HTTP_2,
            then: crate::response::Then::KeepOpen,
            attempt,
            max_response_size: self.settings.max_response_size,
            layered,
            flow: Arc::clone(&stream.flow),
            max_stream_buffer: self.settings.max_stream_buffer,
            stream_write_timeout: self.settings.stream_write_timeout,
        })
    }

    /// Calls the handler for stream `id`.
    fn dispatch(
        &mut self,
        conn: &mut Conn<'_, HttpMsg>,
        id: u32,
        request: Request,
        received: Option<Instant>,
    ) {
        let layered = received.map(|at| {
            Layered::reuse(
                self.spare_record.take(),
                &request,
                at,
                &self.settings.middleware,
            )
        });
        let Some(target) = self.target(id, request.method().clone(), layered, 0) else {
            return;
        };
        let writer = ResponseWriter::new(target);
        enter_inline(self.id);
        let handler = &*self.handler;
        let date = LoopDate::pin(conn.now());
        let result = catch_unwind(AssertUnwindSafe(|| handler.on_request(request, writer)));
        drop(date);
        if result.is_err() {
            log::warn!("{}: handler panicked; answered 500", self.peer_addr);
        }
        self.take_inline(conn);
    }

    /// Files what a handler produced synchronously on this thread.
    fn take_inline(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        leave_inline(|produced| match produced {
            Produced::Part(out) => self.accept_part(conn, out),
            Produced::Deadline(facts, at) => self.add_deadline(facts, at),
        });
    }

    fn add_deadline(&mut self, facts: RequestFacts, at: Instant) {
        let Ok(id) = u32::try_from(facts.seq) else {
            return;
        };
        if let Some(stream) = self.streams.get_mut(&id) {
            if !stream.out.head_sent && !stream.timed_out && !stream.reset {
                stream.deadline = Some((facts, at));
            }
        }
    }

    fn on_priority(&mut self, conn: &mut Conn<'_, HttpMsg>, head: Head, payload: &[u8]) -> Res {
        if head.stream == 0 {
            return Err(ConnError(Reason::Protocol, "PRIORITY on stream 0"));
        }
        self.charge(conn.now(), Charge::Control)?;
        if payload.len() != 5 {
            self.stream_error(head.stream, Reason::FrameSize);
            return Ok(());
        }
        if frame::u31(payload) == head.stream {
            self.stream_error(head.stream, Reason::Protocol);
        }
        // Priorities are parsed and ignored (RFC 9113 §5.3.2).
        Ok(())
    }

    fn on_rst(&mut self, conn: &mut Conn<'_, HttpMsg>, head: Head, payload: &[u8]) -> Res {
        let id = head.stream;
        if id == 0 {
            return Err(ConnError(Reason::Protocol, "RST_STREAM on stream 0"));
        }
        if payload.len() != 4 {
            return Err(ConnError(Reason::FrameSize, "RST_STREAM of the wrong size"));
        }
        if self.idle(id) {
            return Err(ConnError(Reason::Protocol, "RST_STREAM on an idle stream"));
        }
        self.charge(conn.now(), Charge::Reset)?;
        if let Some(stream) = self.streams.get_mut(&id) {
            if !stream.reset {
                Counters::bump(&self.shared.counters.resets_received);
                debug!("{}: stream {id} reset by the client", self.peer_addr);
                stream.recv_closed = true;
                self.reset_stream(id);
            }
        }
        Ok(())
    }

    fn on_settings(&mut self, conn: &mut Conn<'_, HttpMsg>, head: Head, payload: &[u8]) -> Res {
        if head.stream != 0 {
            return Err(ConnError(Reason::Protocol, "SETTINGS on a stream"));
        }
        if head.has(frame::ACK) {
            if !payload.is_empty() {
                return Err(ConnError(Reason::FrameSize, "SETTINGS ACK with a payload"));
            }
            self.settings_due = None;
            return Ok(());
        }
        if payload.len() % 6 != 0 {
            return Err(ConnError(Reason::FrameSize, "SETTINGS of the wrong size"));
        }
        self.charge(conn.now(), Charge::Control)?;
        for (id, value) in frame::settings(payload) {
            match id {
                setting::HEADER_TABLE_SIZE => self.encoder.set_peer_table_size(value),
                setting::ENABLE_PUSH if value > 1 => {
                    return Err(ConnError(Reason::Protocol, "bad SETTINGS_ENABLE_PUSH"))
                }
                setting::INITIAL_WINDOW_SIZE => {
                    if value > frame::MAX_WINDOW {
                        return Err(ConnError(
                            Reason::FlowControl,
                            "bad SETTINGS_INITIAL_WINDOW_SIZE",
                        ));
                    }
                    // Applies to every open stream (§6.9.2).
                    let delta = i64::from(value) - i64::from(self.peer_initial_window);
                    self.peer_initial_window = value;
                    for stream in self.streams.values_mut() {
                        stream.send_window += delta;
                        if stream.send_window > i64::from(frame::MAX_WINDOW) {
                            return Err(ConnError(Reason::FlowControl, "stream window overflow"));
                        }
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME_SIZE..=frame::MAX_MAX_FRAME_SIZE).contains(&value)
                    {
                        return Err(ConnError(Reason::Protocol, "bad SETTINGS_MAX_FRAME_SIZE"));
                    }
                    self.peer_max_frame = value;
                }
                // Push is never used; the other settings concern the
                // client's side only.
                _ => {}
            }
        }
        frame::put_frame(&mut self.pending, Kind::Settings, frame::ACK, 0, &[]);
        Ok(())
    }

    fn on_ping(&mut self, conn: &mut Conn<'_, HttpMsg>, head: Head, payload: &[u8]) -> Res {
        if head.stream != 0 {
            return Err(ConnError(Reason::Protocol, "PING on a stream"));
        }
        if payload.len() != 8 {
            return Err(ConnError(Reason::FrameSize, "PING of the wrong size"));
        }
        if head.has(frame::ACK) {
            return Ok(());
        }
        self.charge(conn.now(), Charge::Control)?;
        frame::put_frame(&mut self.pending, Kind::Ping, frame::ACK, 0, payload);
        Ok(())
    }

    fn on_goaway(&mut self, conn: &mut Conn<'_, HttpMsg>, head: Head, payload: &[u8]) -> Res {
        if head.stream != 0 {
            return Err(ConnError(Reason::Protocol, "GOAWAY on a stream"));
        }
        if payload.len() < 8 {
            return Err(ConnError(Reason::FrameSize, "GOAWAY too short"));
        }
        debug!("{}: client sent GOAWAY", self.peer_addr);
        self.peer_leaving = true;
        self.close_if_done(conn);
        Ok(())
    }

    fn on_window_update(
        &mut self,
        conn: &mut Conn<'_, HttpMsg>,
        head: Head,
        payload: &[u8],
    ) -> Res {
        if payload.len() != 4 {
            return Err(ConnError(
                Reason::FrameSize,
                "WINDOW_UPDATE of the wrong size",
            ));
        }
        let increment = frame::u31(payload);
        let id = head.stream;
        if !self.streams.values().any(|s| s.out.waiting()) {
            // Nothing is waiting for window: the frame makes no progress.
            self.charge(conn.now(), Charge::Control)?;
        }
        if id == 0 {
            if increment == 0 {
                return Err(ConnError(Reason::Protocol, "WINDOW_UPDATE of 0"));
            }
            self.send_window += i64::from(increment);
            if self.send_window > i64::from(frame::MAX_WINDOW) {
                return Err(ConnError(Reason::FlowControl, "connection window overflow"));
            }
            return Ok(());
        }
        if self.idle(id) {
            return Err(ConnError(
                Reason::Protocol,
                "WINDOW_UPDATE on an idle stream",
            ));
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        if stream.reset {
            return Ok(());
        }
        if increment == 0 {
            self.stream_error(id, Reason::Protocol);
            return Ok(());
        }
        stream.send_window += i64::from(increment);
        if stream.send_window > i64::from(frame::MAX_WINDOW) {
            self.stream_error(id, Reason::FlowControl);
        }
        Ok(())
    }

    // ----- output -----

    /// Files a response part of stream `seq`.
    fn accept_part(&mut self, conn: &mut Conn<'_, HttpMsg>, out: Outgoing) {
        let id = u32::try_from(out.seq).unwrap_or(0);
        let Some(stream) = self.streams.get_mut(&id) else {
            // A late part (its stream finished, or on_timeout answered).
            if let Some(credit) = &out.credit {
                ConnFlow::new(self.id, self.peer_addr).release(credit, out.bytes.len());
            }
            if let Some(record) = out.record {
                record.discard();
            }
            return;
        };
        if out.attempt == 0 && stream.timed_out {
            stream.flow_release(&out);
            if let Some(record) = out.record {
                record.discard();
            }
            return;
        }
        if out.step == Step::Last {
            stream.handler_done = true;
        }
        if stream.reset || stream.out.ended {
            stream.flow_release(&out);
            if let Some(record) = out.record {
                record.complete(false, End::ClientGone, conn.now());
            }
            self.maybe_remove(id);
            return;
        }
        stream.deadline = None;
        let Outgoing {
            mut bytes,
            file,
            step,
            record,
            cut,
            credit,
            ..
        } = out;
        if credit.is_some() {
            stream.out.credit = credit;
        }
        if record.is_some() {
            stream.out.record = record;
        }
        // Where the body starts in `bytes` (after the head, if they hold it).
        let mut body_at = 0;
        if !stream.out.head_sent {
            // Room for the HEADERS frame (its block is not longer than the
            // HTTP/1.1 head, give or take a few bytes) and a DATA frame of
            // what follows the head: one allocation, not one per frame.
            self.pending
                .reserve(2 * frame::HEADER_LEN + bytes.len().min(OUTPUT_HIGH) + 16);
            let start = self.pending.len();
            self.pending.resize(start + frame::HEADER_LEN, 0);
            let Some(head_len) =
                response::translate(&mut bytes, &mut self.encoder, &mut self.pending)
            else {
                self.pending.truncate(start);
                log::warn!(
                    "{}: stream {id}: response without a valid head",
                    self.peer_addr
                );
                if let Some(credit) = &stream.out.credit {
                    stream.flow.release(credit, bytes.len());
                }
                self.stream_error(id, Reason::Internal);
                return;
            };
            if let Some(credit) = &stream.out.credit {
                stream.flow.release(credit, head_len);
            }
            body_at = head_len;
            let end_now = step == Step::Last && bytes.len() == head_len && file.is_none() && !cut;
            stream.out.head_sent = true;
            if let Some(record) = &mut stream.out.record {
                record.handed(head_len as u64, conn.now());
            }
            self.seal_headers(start, id, end_now);
            if end_now {
                self.finish(conn, id, End::Completed);
                return;
            }
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if bytes.len() > body_at {
            stream.out.queue.push_back(Chunk::Bytes {
                data: bytes,
                pos: body_at,
            });
        }
        if let Some(file) = file {
            stream.out.queue.push_back(Chunk::File(file));
        }
        stream.out.cut |= cut;
        if step == Step::Last {
            stream.out.last = true;
        }
    }

    /// The response of `id` is over: report it, and drop the stream if
    /// nothing else is due.
    fn finish(&mut self, conn: &mut Conn<'_, HttpMsg>, id: u32, end: End) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.out.ended = true;
        if let Some(reason) = stream.rst_after.take() {
            frame::put_rst(&mut self.pending, id, reason);
            stream.reset = true;
            remember(&mut self.recently_closed, id);
        }
        if let Some(record) = stream.out.record.take() {
            // Its last frame is in `pending` or the transport's queue: it
            // finishes when the socket has taken it (`settle_sent`).
            let mark = conn.sent() + conn.queued() as u64 + self.pending.len() as u64;
            self.unsent.push(Unsent {
                record,
                mark,
                keep_alive: end == End::Completed,
                end,
            });
        }
        self.maybe_remove(id);
        self.close_if_done(conn);
    }

    /// Sends DATA frames, one per stream in turn, while windows and the
    /// transport's queue allow.
    fn pump(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        if self.phase == Phase::Closed {
            return;
        }
        let mut sent = false;
        'rounds: loop {
            let ids: Vec<u32> = self
                .streams
                .iter()
                .filter(|(_, s)| s.out.waiting() && !s.reset)
                .map(|(id, _)| *id)
                .collect();
            let mut progress = false;
            for id in ids {
                if conn.queued() + self.pending.len() > OUTPUT_HIGH {
                    // The transport owes an `on_drained`, which resumes.
                    self.flush(conn);
                    break 'rounds;
                }
                progress |= self.send_data(conn, id);
            }
            sent |= progress;
            if !progress {
                break;
            }
        }
        // Stalled: answers wait (for window, or for the client to read
        // what is queued) and none made progress since `stalled_since`.
        if sent {
            self.stalled_since = None;
        }
        if self.streams.values().any(|s| s.out.waiting() && !s.reset) {
            self.stalled_since.get_or_insert(conn.now());
        } else {
            self.stalled_since = None;
        }
    }

    /// Sends one DATA frame (or the end) of stream `id`; whether it did.
    fn send_data(&mut self, conn: &mut Conn<'_, HttpMsg>, id: u32) -> bool {
        let conn_window = self.send_window;
        let max_frame = i64::from(self.peer_max_frame);
        let Some(stream) = self.streams.get_mut(&id) else {
            return false;
        };
        if stream.out.queue.is_empty() {
            if !stream.out.last {
                return false;
            }
            if stream.out.cut {
                frame::put_rst(&mut self.pending, id, Reason::Internal);
                stream.reset = true;
                remember(&mut self.recently_closed, id);
                self.finish(conn, id, End::Cut);
            } else {
                frame::put_frame(&mut self.pending, Kind::Data, frame::END_STREAM, id, &[]);
                self.finish(conn, id, End::Completed);
            }
            return true;
        }
        let window = conn_window.min(stream.send_window).min(max_frame);
        if window <= 0 {
            return false;
        }
        let window = window as usize;
        // The frame goes straight into the output, its header filled in
        // once the payload is there.
        let start = self.pending.len();
        self.pending.resize(start + frame::HEADER_LEN, 0);
        let mut failed = false;
        match stream.out.queue.front_mut() {
            Some(Chunk::Bytes { data, pos }) => {
                let n = window.min(data.len() - *pos);
                self.pending.extend_from_slice(&data[*pos..*pos + n]);
                *pos += n;
                if *pos == data.len() {
                    stream.out.queue.pop_front();
                }
                if let Some(credit) = &stream.out.credit {
                    stream.flow.release(credit, n);
                }
            }
            Some(Chunk::File(file)) => {
                let n = (window as u64).min(file.len) as usize;
                let at = self.pending.len();
                self.pending.resize(at + n, 0);
                match file
                    .file
                    .read_exact_at(&mut self.pending[at..], file.offset)
                {
                    Ok(()) => {
                        file.offset += n as u64;
                        file.len -= n as u64;
                        if file.len == 0 {
                            stream.out.queue.pop_front();
                        }
                    }
                    Err(e) => {
                        debug!("{}: stream {id}: file read failed: {e}", self.peer_addr);
                        failed = true;
                    }
                }
            }
            None => {
                self.pending.truncate(start);
                return false;
            }
        }
        if failed {
            self.pending.truncate(start);
            frame::put_rst(&mut self.pending, id, Reason::Internal);
            stream.reset = true;
            remember(&mut self.recently_closed, id);
            self.finish(conn, id, End::Cut);
            return true;
        }
        let n = self.pending.len() - start - frame::HEADER_LEN;
        let end = stream.out.queue.is_empty() && stream.out.last && !stream.out.cut;
        stream.send_window -= n as i64;
        self.send_window -= n as i64;
        if let Some(record) = &mut stream.out.record {
            record.handed(n as u64, conn.now());
        }
        let flags = if end { frame::END_STREAM } else { 0 };
        self.pending[start..start + frame::HEADER_LEN].copy_from_slice(&frame::head_bytes(
            n,
            Kind::Data,
            flags,
            id,
        ));
        if end {
            self.finish(conn, id, End::Completed);
        }
        true
    }

    /// Reopens the receive windows of what was taken in.
    fn grant_windows(&mut self) {
        let conn_target = self.shared.limits.connection_window_size;
        if self.recv_owed > 0 && (self.recv_owed >= conn_target / 4 || self.streams.is_empty()) {
            frame::put_window_update(&mut self.pending, 0, self.recv_owed);
            self.recv_window += i64::from(self.recv_owed);
            self.recv_owed = 0;
        }
        let stream_target = self.shared.limits.initial_window_size;
        // Buffered bodies of all streams together: past the endpoint's
        // `max_request_size`, only the oldest one's window is reopened, so
        // that it completes (and is handed to its handler) while the others
        // wait. A connection holds at most that much plus one window per
        // stream, not `max_concurrent_streams` times the body limit.
        let mut buffered = 0usize;
        let mut oldest = None;
        for (id, stream) in &self.streams {
            if let BodyIn::Buffering { data, .. } = &stream.body {
                buffered += data.len();
                oldest.get_or_insert(*id);
            }
        }
        let over_budget = buffered > self.settings.limits.max_body_size;
        for (id, stream) in &mut self.streams {
            let paused = matches!(stream.body, BodyIn::Streaming { paused: true, .. });
            let held = over_budget
                && matches!(stream.body, BodyIn::Buffering { .. })
                && oldest != Some(*id);
            if paused || held || stream.recv_closed || stream.reset || stream.recv_owed == 0 {
                continue;
            }
            if stream.recv_owed >= stream_target / 4 || stream.recv_window <= 0 {
                frame::put_window_update(&mut self.pending, *id, stream.recv_owed);
                stream.recv_window += i64::from(stream.recv_owed);
                stream.recv_owed = 0;
            }
        }
    }

    /// Closes the connection when it is going away and no stream is left.
    fn close_if_done(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        let leaving = self.peer_leaving || self.goaway.is_some();
        if leaving && self.streams.is_empty() && !conn.is_closing() {
            self.flush(conn);
            conn.close();
        }
    }

    // ----- timers -----

    fn arm_timer(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        if conn.is_closing() {
            return;
        }
        let mut at: Option<Instant> = None;
        let mut consider = |t: Instant| {
            at = Some(at.map_or(t, |a| a.min(t)));
        };
        if matches!(self.phase, Phase::Preface | Phase::FirstSettings) {
            consider(self.started + self.settings.header_timeout);
        }
        if let Some(due) = self.settings_due {
            consider(due);
        }
        if self.streams.is_empty() {
            consider(self.last_input + self.settings.keepalive_timeout);
        }
        if let Some(since) = self.stalled_since {
            consider(since + self.shared.limits.stall_timeout);
        }
        for stream in self.streams.values() {
            if let Some((_, due)) = &stream.deadline {
                consider(*due);
            }
            if self.body_awaited(stream) {
                consider(stream.last_input + self.settings.body_timeout);
            }
        }
        match at {
            Some(at) => conn.set_timeout(at.saturating_duration_since(conn.now())),
            None => conn.clear_timeout(),
        }
    }

    /// Whether the client owes `stream` body bytes (and is not held back
    /// by the server).
    fn body_awaited(&self, stream: &Stream) -> bool {
        !stream.recv_closed
            && !stream.reset
            && !matches!(stream.body, BodyIn::Streaming { paused: true, .. })
    }

    fn expire(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        let now = conn.now();
        if matches!(self.phase, Phase::Preface | Phase::FirstSettings)
            && now >= self.started + self.settings.header_timeout
        {
            debug!("{}: no http/2 preface in time", self.peer_addr);
            Counters::bump(&self.shared.counters.timeouts);
            self.phase = Phase::Closed;
            conn.close();
            return;
        }
        if self.settings_due.is_some_and(|due| now >= due) {
            return self.connection_error(
                conn,
                ConnError(Reason::SettingsTimeout, "SETTINGS not acknowledged"),
            );
        }
        if self
            .stalled_since
            .is_some_and(|since| now >= since + self.shared.limits.stall_timeout)
        {
            return self.connection_error(
                conn,
                ConnError(Reason::NoError, "the client's windows stayed closed"),
            );
        }
        if self.streams.is_empty() && now >= self.last_input + self.settings.keepalive_timeout {
            debug!("{}: http/2 idle timeout", self.peer_addr);
            frame::put_goaway(&mut self.pending, self.last_peer_stream, Reason::NoError);
            self.goaway = Some(self.last_peer_stream);
            self.flush(conn);
            conn.close();
            return;
        }
        let body_timeout = self.settings.body_timeout;
        let slow: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| self.body_awaited(s) && now >= s.last_input + body_timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in slow {
            debug!("{}: stream {id}: request body timeout", self.peer_addr);
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.fail_body(std::io::ErrorKind::TimedOut, "request body timed out");
            }
            self.stream_error(id, Reason::Cancel);
        }
        let expired: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| s.deadline.as_ref().is_some_and(|(_, at)| *at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            let Some((facts, _)) = stream.deadline.take() else {
                continue;
            };
            if stream.out.head_sent || stream.reset {
                continue;
            }
            debug!(
                "{}: stream {id}: response deadline passed; on_timeout",
                self.peer_addr
            );
            stream.timed_out = true;
            stream.handler_done = false;
            let Some(target) = self.target(id, facts.method, facts.layered, 1) else {
                continue;
            };
            let writer = ResponseWriter::new(target);
            enter_inline(self.id);
            let handler = &*self.handler;
            if catch_unwind(AssertUnwindSafe(|| handler.on_timeout(writer))).is_err() {
                log::warn!("{}: on_timeout panicked; answered 500", self.peer_addr);
            }
            self.take_inline(conn);
        }
    }

    /// After any callback: reopen windows, send what fits, re-arm.
    fn settle(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        if self.phase != Phase::Closed && !conn.is_closing() {
            self.grant_windows();
            self.pump(conn);
        }
        self.flush(conn);
        self.close_if_done(conn);
        self.arm_timer(conn);
    }

    fn resume_bodies(&mut self) {
        for stream in self.streams.values_mut() {
            if let BodyIn::Streaming { paused, .. } = &mut stream.body {
                *paused = false;
            }
        }
    }
}

impl Stream {
    /// Gives back the credit of a part that is dropped.
    fn flow_release(&self, out: &Outgoing) {
        if let Some(credit) = &out.credit {
            self.flow.release(credit, out.bytes.len());
        }
    }
}

impl Protocol for H2Conn {
    type Message = HttpMsg;

    fn on_connect(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        Counters::bump(&self.shared.counters.connections);
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
        self.started = conn.now();
        self.last_input = conn.now();
        if catch_unwind(AssertUnwindSafe(|| self.handler.on_connection(&info))).is_err() {
            log::warn!("{}: on_connection panicked", self.peer_addr);
        }
        let limits = &self.shared.limits;
        let list_size = self.max_list_size() as u32;
        let mut values = vec![
            (
                setting::MAX_CONCURRENT_STREAMS,
                limits.max_concurrent_streams,
            ),
            (setting::INITIAL_WINDOW_SIZE, limits.initial_window_size),
            (setting::MAX_HEADER_LIST_SIZE, list_size),
            (setting::ENABLE_PUSH, 0),
        ];
        if limits.max_frame_size != frame::DEFAULT_MAX_FRAME_SIZE {
            values.push((setting::MAX_FRAME_SIZE, limits.max_frame_size));
        }
        frame::put_settings(&mut self.pending, &values);
        let extra = limits
            .connection_window_size
            .saturating_sub(frame::DEFAULT_WINDOW);
        if extra > 0 {
            frame::put_window_update(&mut self.pending, 0, extra);
        }
        // Until the client has seen the larger window it may only use the
        // default one; counting the larger one at once is the safe side.
        self.settings_due = Some(conn.now() + limits.settings_timeout);
        self.flush(conn);
        self.arm_timer(conn);
    }

    fn on_input(&mut self, conn: &mut Conn<'_, HttpMsg>, data: &[u8]) {
        if self.phase == Phase::Closed {
            return;
        }
        self.last_input = conn.now();
        self.inbuf.extend_from_slice(data);
        if let Err(e) = self.process(conn) {
            self.connection_error(conn, e);
            return;
        }
        self.settle(conn);
    }

    fn on_message(&mut self, conn: &mut Conn<'_, HttpMsg>, msg: HttpMsg) {
        match msg {
            HttpMsg::Response(out) => self.accept_part(conn, out),
            HttpMsg::Deadline(facts, at) => self.add_deadline(facts, at),
            HttpMsg::ResumeBody => self.resume_bodies(),
        }
        self.settle(conn);
    }

    fn on_drained(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        self.settle(conn);
    }

    fn on_drain(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        debug!("{}: draining http/2", self.peer_addr);
        if self.phase != Phase::Open {
            conn.close();
            return;
        }
        if self.goaway.is_none() {
            // Streams up to this one are served; later ones are ignored
            // and the client may retry them elsewhere (RFC 9113 §6.8).
            frame::put_goaway(&mut self.pending, self.last_peer_stream, Reason::NoError);
            self.goaway = Some(self.last_peer_stream);
        }
        self.settle(conn);
    }

    fn on_eof(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        self.peer_leaving = true;
        let waiting: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.recv_closed)
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.fail_body(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed during the body",
                );
                stream.recv_closed = true;
            }
            self.reset_stream(id);
        }
        if self.streams.is_empty() {
            self.flush(conn);
            conn.close();
            return;
        }
        self.settle(conn);
    }

    fn on_timeout(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        self.expire(conn);
        if !conn.is_closing() {
            self.settle(conn);
        }
    }

    fn on_sent(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        self.settle_sent(conn);
    }

    fn on_close(&mut self, reason: &CloseReason) {
        debug!("{}: http/2 connection closed: {reason}", self.peer_addr);
        self.unsent.abandon();
        for (_, mut stream) in std::mem::take(&mut self.streams) {
            stream.flow.close();
            stream.fail_body(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed during the body",
            );
            if let Some(record) = stream.out.record.take() {
                if !stream.out.ended {
                    record.complete(false, End::ClientGone, Instant::now());
                }
            }
        }
        if self.session == Session::Announced {
            let peer = self.peer_addr;
            if catch_unwind(AssertUnwindSafe(|| self.handler.on_disconnection(peer))).is_err() {
                log::warn!("{peer}: on_disconnection panicked");
            }
        }
    }
}
