//! Incremental HTTP/1.1 request parser and message framing (RFC 9112).
//!
//! The parser works on bytes only: the connection appends what it reads to
//! one buffer and calls [`RequestParser::parse`] with the whole unconsumed
//! buffer. The parser remembers how far it has looked, so feeding a request
//! one byte at a time costs O(n) in total:
//!
//! * the first time it sees a new request, it gives what arrived to
//!   `httparse` whole: a head that arrived complete (most do) is parsed at
//!   once, without a scan of its own;
//! * otherwise, while the head (request line and header section) is
//!   incomplete, it only scans the new bytes for the empty line that ends
//!   the head, checking on the way the request line's length (414) and its
//!   method bytes (so that bytes that cannot be HTTP get a 400 at once);
//!   `httparse` is called once more, when the whole head is present;
//! * once the head is parsed, it keeps it and decodes the body incrementally
//!   (`Content-Length` or `chunked`), remembering the input offset already
//!   processed.
//!
//! In announce mode (the server's), a head with a body first yields
//! `Parsed::BodyFollows`; the caller then either buffers the body
//! ([`RequestParser::buffer_body`], within `max_body_size`) or streams it
//! ([`RequestParser::stream_body`], no size limit): the decoded bytes are then
//! taken piecewise with [`RequestParser::take_streamed`], which also tells
//! how much input to drain, and the body ends with `Parsed::BodyEnd`.
//!
//! Line endings: in the head a bare LF is accepted as a line terminator (as
//! `httparse` does, RFC 9112 §2.2); the head ends at the first empty line
//! (`\r\n` or `\n`) after the request line, and `httparse` must agree on that
//! end or the request is rejected, so the two can never disagree on framing.
//! Empty lines before the request line are skipped (RFC 9112 §2.2). Inside a
//! chunked body every line must end in CRLF: chunk framing is where request
//! smuggling lives, so it is strict.

use std::fmt;
use std::mem::MaybeUninit;

use bytestring::ByteString;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use crate::ascii;
use crate::fields::HeaderFields;
use crate::pool;

/// Parsing limits (set through [`Options`](crate::Options)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Largest request head (request line plus header section), in bytes.
    /// A larger head is answered with 431, or 414 when the request line
    /// alone is larger. Also caps the size of a chunked body's trailer
    /// section and of its chunk extensions. Default: 16 KiB.
    pub(crate) max_head_size: usize,
    /// Largest number of header fields in the head (and in chunked
    /// trailers); more are answered with 431. Default: 100.
    pub(crate) max_headers: usize,
    /// Largest buffered request body (after chunked decoding), in bytes; a
    /// larger one is answered with 413. Streamed bodies have no limit.
    /// Default: 4 MiB.
    pub(crate) max_body_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_size: 16 * 1024,
            max_headers: 100,
            max_body_size: 4 * 1024 * 1024,
        }
    }
}

/// Why a request was rejected; maps to the response status.
///
/// After a `ParseError` the connection's framing is lost: the server answers
/// with [`status`](ParseError::status) and closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    status: StatusCode,
    reason: &'static str,
}

impl ParseError {
    pub(crate) const fn new(status: StatusCode, reason: &'static str) -> Self {
        ParseError { status, reason }
    }

    const fn bad(reason: &'static str) -> Self {
        ParseError::new(StatusCode::BAD_REQUEST, reason)
    }

    /// The status code to answer the request with (400, 413, 414, 431, 501
    /// or 505).
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// A short, static description of what was wrong, for logs.
    pub(crate) fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.status.as_u16())
    }
}

impl std::error::Error for ParseError {}

/// The parsed request line and header section plus derived framing facts.
///
/// The target, path, query and header values are read from one shared copy
/// of the head (see [`pool::share_head`]), not copies of their own.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestHead {
    /// The request method.
    pub(crate) method: Method,
    /// The raw request-target, as sent.
    pub(crate) target: TargetText,
    /// Where the raw path is in `target` (`*` for an asterisk-form
    /// target); empty for an absolute-form target without a path, whose
    /// path is `/`.
    pub(crate) path: Span,
    /// Where the raw query string, without the `?`, is in `target`.
    pub(crate) query: Option<Span>,
    /// `HTTP_10` or `HTTP_11` (`HTTP_2` for a head built from an HTTP/2
    /// header list).
    pub(crate) version: Version,
    /// The header fields, in order, duplicates kept.
    pub(crate) headers: HeaderFields,
    /// Whether the connection persists after this request.
    pub(crate) keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1: the client waits for
    /// `100 Continue` before sending the body.
    pub(crate) expects_continue: bool,
}

/// Where a request's target is kept.
#[derive(Debug, Clone)]
pub(crate) enum TargetText {
    /// In the head's shared copy (`headers.raw()`), checked to be ASCII:
    /// a parsed HTTP/1 head's, which then costs no slice of its own (and
    /// no reference count) per request.
    InHead(Span),
    /// Its own text (an HTTP/2 head's `:path`).
    Own(ByteString),
}

impl Default for TargetText {
    fn default() -> Self {
        TargetText::Own(ByteString::new())
    }
}

/// A part of a request's target (or of its head): its start and end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span(u32, u32);

impl Span {
    /// Where `part`, a slice of `whole`, is in it.
    pub(crate) fn within(whole: &str, part: &str) -> Span {
        Span::within_bytes(whole.as_bytes(), part.as_bytes())
    }

    /// [`Span::within`] for bytes.
    fn within_bytes(whole: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - whole.as_ptr() as usize;
        debug_assert!(start + part.len() <= whole.len());
        Span(start as u32, (start + part.len()) as u32)
    }

    /// This span of a text that starts at `at` in a larger one, as a span
    /// of the larger one.
    fn offset(self, at: Span) -> Span {
        Span(at.0 + self.0, at.0 + self.1)
    }

    fn of(self, whole: &str) -> &str {
        &whole[self.0 as usize..self.1 as usize]
    }

    fn range(self) -> std::ops::Range<usize> {
        self.0 as usize..self.1 as usize
    }
}

impl RequestHead {
    /// The raw request-target, as sent.
    pub(crate) fn target(&self) -> &str {
        match &self.target {
            TargetText::Own(target) => target,
            TargetText::InHead(at) => self.in_head(*at),
        }
    }

    /// The part of the target at `span`.
    fn part(&self, span: Span) -> &str {
        match &self.target {
            TargetText::Own(target) => span.of(target),
            TargetText::InHead(at) => self.in_head(span.offset(*at)),
        }
    }

    /// The text at `span` of the head's shared copy: the target or a part
    /// of it, checked to be ASCII when parsed, in a copy nothing changes,
    /// so the fallback is never taken.
    fn in_head(&self, span: Span) -> &str {
        self.headers
            .raw()
            .get(span.range())
            .and_then(ascii::ascii_str)
            .unwrap_or_default()
    }

    /// The raw request-target as a string of its own (sharing the head's
    /// copy when it is in it).
    pub(crate) fn target_string(&self) -> ByteString {
        match &self.target {
            TargetText::Own(target) => target.clone(),
            TargetText::InHead(span) => {
                ascii::ascii_string(self.headers.raw().slice(span.range())).unwrap_or_default()
            }
        }
    }

    /// The raw path, still percent-encoded.
    pub(crate) fn path(&self) -> &str {
        match self.part(self.path) {
            "" => "/",
            path => path,
        }
    }

    /// The raw query string, without the `?`.
    pub(crate) fn query(&self) -> Option<&str> {
        self.query.map(|query| self.part(query))
    }
}

/// The result of [`RequestParser::parse`].
// `Complete` is large, but it is built once per request and moved straight
// into a `Request`; boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Parsed {
    /// More bytes are needed.
    Partial,
    /// A complete request; `consumed` bytes of the input belong to it (head
    /// and body framing).
    Complete {
        /// The request line and headers.
        head: RequestHead,
        /// The body, chunked coding removed.
        body: Vec<u8>,
        /// How many input bytes the request occupied.
        consumed: usize,
    },
    /// Announce mode only: a head whose body follows has been parsed. The
    /// caller chooses with [`RequestParser::buffer_body`] or
    /// [`RequestParser::stream_body`] before parsing on.
    BodyFollows,
    /// Streaming only: the body ended. `last` holds the final decoded
    /// bytes; `consumed` input bytes (counted from the last
    /// [`RequestParser::take_streamed`]) belong to the request.
    BodyEnd {
        /// Decoded bytes not yet taken.
        last: Vec<u8>,
        /// Input bytes to drain.
        consumed: usize,
    },
}

/// Incremental request parser; one per connection.
#[derive(Debug)]
pub(crate) struct RequestParser {
    limits: Limits,
    state: State,
    /// Report heads with bodies before the body (`Parsed::BodyFollows`).
    announce_bodies: bool,
    /// The Host value found valid last.
    valid_host: ValidHost,
}

/// The last Host value found valid, if it was short: a client sends the
/// same Host on every request of a connection, and an equal value needs
/// no second check (validity depends on the bytes alone).
#[derive(Debug, Clone, Copy)]
struct ValidHost {
    len: u8,
    bytes: [u8; ValidHost::CAPACITY],
}

impl Default for ValidHost {
    fn default() -> Self {
        // The empty value is a valid Host (an empty reg-name).
        ValidHost {
            len: 0,
            bytes: [0; ValidHost::CAPACITY],
        }
    }
}

impl ValidHost {
    /// Longest value remembered.
    const CAPACITY: usize = 62;

    /// Checks `value` (see [`validate_host`]) unless it is the one found
    /// valid last; remembers it if it is valid and short enough.
    #[inline]
    fn check(&mut self, value: &[u8]) -> Result<(), ParseError> {
        if same_bytes(value, &self.bytes[..usize::from(self.len)]) {
            return Ok(());
        }
        self.check_new(value)
    }

    /// [`ValidHost::check`] for a value other than the one remembered.
    #[inline(never)]
    fn check_new(&mut self, value: &[u8]) -> Result<(), ParseError> {
        validate_host(value)?;
        if let Ok(len) = u8::try_from(value.len()) {
            if let Some(slot) = self.bytes.get_mut(..value.len()) {
                slot.copy_from_slice(value);
                self.len = len;
            }
        }
        Ok(())
    }
}

/// Whether `a` and `b` are equal, compared a word at a time: for values as
/// short as a Host's, cheaper than the call to `memcmp` of slice equality.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n >= 8 {
        let word = |s: &[u8], at: usize| s[at..].first_chunk().map(|w| u64::from_ne_bytes(*w));
        // Whole words, then the last eight bytes (which may overlap the
        // last word compared).
        let mut at = 0;
        while at + 8 < n {
            if word(a, at) != word(b, at) {
                return false;
            }
            at += 8;
        }
        word(a, n - 8) == word(b, n - 8)
    } else if n >= 4 {
        let word = |s: &[u8], at: usize| s[at..].first_chunk().map(|w| u32::from_ne_bytes(*w));
        word(a, 0) == word(b, 0) && word(a, n - 4) == word(b, n - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

/// What happens to the body being decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyHandling {
    /// Announced; the caller has not chosen yet.
    Undecided,
    /// Collected whole, within `max_body_size`.
    Buffered,
    /// Handed out piecewise; no size limit (memory stays bounded).
    Streaming,
}

#[derive(Debug)]
enum State {
    /// Looking for the end of the head.
    Head(HeadScan),
    /// Head parsed, decoding the body.
    Body(Box<BodyState>),
}

/// Progress of the search for the end of the head.
#[derive(Debug, Default)]
struct HeadScan {
    /// Input bytes already searched.
    scanned: usize,
    /// Start of the line being scanned.
    line_start: usize,
    /// Whether the request line (the first non-empty line) is complete.
    first_line_done: bool,
    /// Input bytes of the request line's method already checked, and
    /// whether its end (the first space) was seen: bytes that cannot start
    /// an HTTP request (a TLS ClientHello, binary) are refused at once
    /// instead of waiting for a head that will never end.
    method_checked: usize,
    method_done: bool,
    /// Whether the input was already given to httparse whole (the first
    /// look at a request; later looks scan).
    tried_whole: bool,
}

#[derive(Debug)]
struct BodyState {
    /// `None` once a streamed body's head was handed to the caller.
    head: Option<RequestHead>,
    mode: BodyHandling,
    /// Most body bytes accepted: `max_body_size` once buffered, none while
    /// undecided or streamed.
    body_limit: u64,
    body: Vec<u8>,
    /// Input offset up to which bytes have been processed.
    offset: usize,
    decoder: Decoder,
}

#[derive(Debug)]
enum Decoder {
    Length { remaining: u64 },
    Chunked(Chunked),
}

#[derive(Debug)]
struct Chunked {
    state: ChunkState,
    /// Bytes of chunk extensions seen so far in this body.
    ext_bytes: usize,
    /// Input offset where the trailer section starts.
    trailer_start: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Before the first hex digit of a chunk size.
    SizeStart,
    /// Reading hex digits.
    Size { value: u64 },
    /// Whitespace after the size, before `;` or CR.
    SizeLws { value: u64 },
    /// Inside chunk extensions, until CR.
    Ext { value: u64 },
    /// CR seen after the size line; expecting LF.
    SizeLf { value: u64 },
    /// Reading chunk data.
    Data { remaining: u64 },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerLineStart,
    /// Inside a non-empty trailer line.
    TrailerLine,
    /// CR seen inside a trailer line; expecting LF. `empty` when the line
    /// was the final empty line.
    TrailerLf { empty: bool },
}

impl RequestParser {
    /// Creates a parser enforcing `limits`.
    pub(crate) fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            state: State::Head(HeadScan::default()),
            announce_bodies: false,
            valid_host: ValidHost::default(),
        }
    }

    /// In announce mode, a request with a body first yields
    /// `Parsed::BodyFollows`, so the caller can choose to stream it.
    pub(crate) fn set_announce_bodies(&mut self, on: bool) {
        self.announce_bodies = on;
    }

    /// After `BodyFollows` (and always without announce mode): collect the
    /// body whole, within `max_body_size`. The one place a declared length
    /// is checked against it: 413 at once, before any body byte.
    pub(crate) fn buffer_body(&mut self) -> Result<(), ParseError> {
        let State::Body(state) = &mut self.state else {
            return Ok(());
        };
        let limit = self.limits.max_body_size as u64;
        if let Decoder::Length { remaining } = state.decoder {
            if remaining > limit {
                self.state = State::Head(HeadScan::default());
                return Err(too_large_body());
            }
        }
        state.mode = BodyHandling::Buffered;
        state.body_limit = limit;
        Ok(())
    }

    /// Undoes [`RequestParser::stream_body`] before any body byte was taken:
    /// gives the head back and buffers the body instead.
    pub(crate) fn restore_buffered(&mut self, head: RequestHead) -> Result<(), ParseError> {
        if let State::Body(state) = &mut self.state {
            state.head = Some(head);
        }
        self.buffer_body()
    }

    /// After `BodyFollows`: hand the body out as it arrives (see
    /// [`RequestParser::take_streamed`]), with no size limit. Returns the
    /// request's head and the body's declared length (`None` if chunked).
    pub(crate) fn stream_body(&mut self) -> Option<(RequestHead, Option<u64>)> {
        let State::Body(state) = &mut self.state else {
            return None;
        };
        state.mode = BodyHandling::Streaming;
        let length = match state.decoder {
            Decoder::Length { remaining } => Some(remaining),
            Decoder::Chunked(_) => None,
        };
        Some((state.head.take()?, length))
    }

    /// Streaming: the body bytes decoded so far, and how many input bytes
    /// the caller may drain now (the parser's offsets shift accordingly).
    pub(crate) fn take_streamed(&mut self) -> (Vec<u8>, usize) {
        let State::Body(state) = &mut self.state else {
            return (Vec::new(), 0);
        };
        if state.mode != BodyHandling::Streaming {
            return (Vec::new(), 0);
        }
        let drain = match &mut state.decoder {
            // The trailer section is validated as a whole: keep it.
            Decoder::Chunked(c)
                if matches!(
                    c.state,
                    ChunkState::TrailerLineStart
                        | ChunkState::TrailerLine
                        | ChunkState::TrailerLf { .. }
                ) =>
            {
                let drain = c.trailer_start;
                c.trailer_start = 0;
                drain
            }
            _ => state.offset,
        };
        state.offset -= drain;
        (std::mem::take(&mut state.body), drain)
    }

    /// Parses from the start of `input` (the connection's unconsumed input).
    ///
    /// Idempotent with respect to bytes already seen: the caller keeps
    /// appending newly read bytes to the same buffer and calls again with the
    /// whole unconsumed buffer; after `Complete { consumed, .. }` (or
    /// `BodyEnd`) the caller drains `consumed` bytes and the parser is ready
    /// for the next (pipelined) request. While a body streams, the caller
    /// drains what [`RequestParser::take_streamed`] says between calls. After
    /// an error the parser is reset, but the connection should be closed: its
    /// framing is lost.
    pub(crate) fn parse(&mut self, input: &[u8]) -> Result<Parsed, ParseError> {
        // Every path that ends a request (complete, or refused) resets the
        // state itself: the result is handed on as it was built, not held
        // here to be inspected.
        self.parse_inner(input)
    }

    /// The head of the request whose body is still arriving, if any: lets
    /// the connection answer `Expect: 100-continue` once the head has been
    /// accepted (its limits, including `Content-Length`, already checked).
    pub(crate) fn pending_head(&self) -> Option<&RequestHead> {
        match &self.state {
            State::Body(state) => state.head.as_ref(),
            State::Head(_) => None,
        }
    }

    fn parse_inner(&mut self, input: &[u8]) -> Result<Parsed, ParseError> {
        if let State::Head(scan) = &mut self.state {
            debug_assert!(input.len() >= scan.scanned, "input shrank between calls");
            // Where the head is built and kept until it is handed out: a
            // head is moved as little as possible.
            let mut head = None;
            let found = find_head(scan, input, &self.limits, &mut self.valid_host, &mut head);
            // Once the head is complete or refused, the next look at the
            // input is at a new request (when a body follows, the state
            // becomes the body's below).
            let (present, head_end) = match found {
                Ok(Some(found)) => found,
                Ok(None) => return Ok(Parsed::Partial),
                Err(e) => {
                    *scan = HeadScan::default();
                    return Err(e);
                }
            };
            *scan = HeadScan::default();
            let parsed = head.as_ref().expect("a parsed head is written");
            let Some(decoder) = body_framing(parsed, present)? else {
                return Ok(Parsed::Complete {
                    head: head.expect("checked just above"),
                    body: Vec::new(),
                    consumed: head_end,
                });
            };
            self.state = State::Body(Box::new(BodyState {
                head,
                mode: BodyHandling::Undecided,
                body_limit: u64::MAX,
                body: Vec::new(),
                offset: head_end,
                decoder,
            }));
            if !self.announce_bodies {
                self.buffer_body()?;
            }
        }
        let State::Body(state) = &mut self.state else {
            unreachable!("head state handled above");
        };
        debug_assert!(input.len() >= state.offset, "input shrank between calls");
        if state.mode == BodyHandling::Undecided {
            return Ok(Parsed::BodyFollows);
        }
        if input.len() < state.offset {
            return Ok(Parsed::Partial);
        }
        match decode_body(state, input, &self.limits) {
            Ok(true) => {}
            Ok(false) => return Ok(Parsed::Partial),
            Err(e) => {
                self.state = State::Head(HeadScan::default());
                return Err(e);
            }
        }
        if state.mode == BodyHandling::Streaming {
            let last = std::mem::take(&mut state.body);
            let consumed = state.offset;
            self.state = State::Head(HeadScan::default());
            return Ok(Parsed::BodyEnd { last, consumed });
        }
        let State::Body(state) =
            std::mem::replace(&mut self.state, State::Head(HeadScan::default()))
        else {
            unreachable!("body state checked above");
        };
        let BodyState {
            head, body, offset, ..
        } = *state;
        Ok(Parsed::Complete {
            head: head.expect("a buffered body keeps its head"),
            body,
            consumed: offset,
        })
    }
}

/// Looks for a complete head in `input` and parses it into `head` (see
/// [`parse_head`]): at the first look at a request, `httparse` on the
/// input whole; after that (or if that was inconclusive), the scan for
/// the head's end. `None` while the head is incomplete.
fn find_head(
    scan: &mut HeadScan,
    input: &[u8],
    limits: &Limits,
    valid_host: &mut ValidHost,
    head: &mut Option<RequestHead>,
) -> Result<Option<(Present, usize)>, ParseError> {
    if !scan.tried_whole {
        scan.tried_whole = true;
        // Most heads arrive whole, and httparse alone then finds their end
        // (see `Find::Whole`).
        if let Some(parsed) = parse_head(input, Find::Whole, limits, valid_host, head)? {
            return Ok(Some(parsed));
        }
    }
    let Some(head_end) = scan_head(scan, input, limits)? else {
        return Ok(None);
    };
    let parsed = parse_head(&input[..head_end], Find::Exact, limits, valid_host, head)?;
    Ok(Some(parsed.expect("an exact head is parsed or refused")))
}

/// Scans new bytes for the end of the head. Returns the length of the head
/// (through the final empty line) once found.
fn scan_head(
    scan: &mut HeadScan,
    input: &[u8],
    limits: &Limits,
) -> Result<Option<usize>, ParseError> {
    let max = limits.max_head_size;
    // Never look further than one byte past the limit.
    let end = input.len().min(max.saturating_add(1));
    while scan.scanned < end {
        let Some(pos) = memchr::memchr(b'\n', &input[scan.scanned..end]) else {
            scan.scanned = end;
            break;
        };
        let lf = scan.scanned + pos;
        scan.scanned = lf + 1;
        let line = &input[scan.line_start..lf];
        let empty = line.is_empty() || line == b"\r";
        if !scan.first_line_done {
            // Empty lines before the request line are skipped.
            if !empty {
                check_method(scan, input, lf)?;
                check_first_line(scan.line_start, lf + 1, max)?;
                scan.first_line_done = true;
            } else {
                // An empty line before the request line: start over after it.
                scan.method_checked = lf + 1;
                scan.method_done = false;
            }
        } else if empty {
            if lf + 1 > max {
                return Err(too_large_head());
            }
            return Ok(Some(lf + 1));
        }
        scan.line_start = lf + 1;
    }
    // No end yet: the request line or the head may already be too long,
    // or may already not be HTTP.
    if !scan.first_line_done {
        check_method(scan, input, scan.scanned)?;
        check_first_line(scan.line_start, scan.scanned, max)?;
    }
    if scan.scanned > max {
        return Err(too_large_head());
    }
    Ok(None)
}

/// Checks the request line's method bytes seen so far (up to `end`): a
/// token (RFC 9110 §5.6.2) ending at the first space (or a line end, left
/// to httparse). Each byte is checked once, so the verdict does not depend
/// on how the input was split.
fn check_method(scan: &mut HeadScan, input: &[u8], end: usize) -> Result<(), ParseError> {
    let from = scan.method_checked.max(scan.line_start);
    if !scan.method_done {
        let bytes = &input[from.min(end)..end];
        if let Some(i) = bytes.iter().position(|&b| !TCHAR[usize::from(b)]) {
            match bytes[i] {
                b' ' if from + i > scan.line_start => scan.method_done = true,
                // Line endings are httparse's to judge, whatever the split.
                b'\r' | b'\n' => scan.method_done = true,
                _ => return Err(ParseError::bad("invalid request method")),
            }
        }
    }
    scan.method_checked = end;
    Ok(())
}

/// `tchar` of RFC 9110 §5.6.2, as a table: one load per method byte.
const TCHAR: [bool; 256] = byte_table(b"!#$%&'*+-.^_`|~");

/// A table of the bytes that are ASCII alphanumerics or in `extra`.
const fn byte_table(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

fn check_first_line(start: usize, end: usize, max: usize) -> Result<(), ParseError> {
    if end - start > max {
        Err(ParseError::new(
            StatusCode::URI_TOO_LONG,
            "request line too long",
        ))
    } else {
        Ok(())
    }
}

fn too_large_head() -> ParseError {
    ParseError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request head too large",
    )
}

fn too_large_body() -> ParseError {
    ParseError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
}

/// Up to this many header fields are parsed into a stack array; more
/// (a larger `max_headers`) into a heap one.
const STACK_FIELDS: usize = 128;

/// How [`parse_head`] knows where the head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Find {
    /// The input is the head: the scan found its end, and httparse must
    /// agree (never guess at framing).
    Exact,
    /// The input is whatever arrived of a new request: if httparse finds
    /// a complete head within `max_head_size`, that is the head (with no
    /// empty line inside a valid header section, it ends where the scan
    /// would have ended it, and its request line is within the limit too);
    /// anything else (incomplete, malformed, too large) is left to the
    /// scan, which judges it as before. Skips the scan for the heads that
    /// arrive whole, and parses the others once more at most.
    Whole,
}

/// Parses a head (see [`Find`]) into `head`, which is empty: `None` if
/// `find` is `Whole` and the input is left to the scan; else the fields
/// the parser interprets and the head's length.
///
/// The head is then copied into one shared buffer, with the table of its
/// header fields (see [`crate::fields`]), so that everything the request
/// keeps of it is a slice of the copy.
// Inlined: a frame of its own (for the field array) would cost a call and
// the saving and restoring of registers on every request.
#[inline(always)]
fn parse_head(
    input: &[u8],
    find: Find,
    limits: &Limits,
    valid_host: &mut ValidHost,
    head: &mut Option<RequestHead>,
) -> Result<Option<(Present, usize)>, ParseError> {
    // Left uninitialised: httparse writes the fields it finds, and zeroing
    // 128 fields (4 KiB) per request would cost more than parsing them.
    if limits.max_headers <= STACK_FIELDS {
        let mut fields = [const { MaybeUninit::uninit() }; STACK_FIELDS];
        let fields = &mut fields[..limits.max_headers];
        parse_head_into(input, find, limits, fields, valid_host, head)
    } else {
        let mut fields = vec![MaybeUninit::uninit(); limits.max_headers];
        parse_head_into(input, find, limits, &mut fields, valid_host, head)
    }
}

/// Which of the fields that the parser interprets the head has, noted from
/// the field names, so that a head without them (most) costs no search for
/// them: one bit per field, so that they are returned as one byte.
#[derive(Debug, Clone, Copy, Default)]
struct Present(u8);

impl Present {
    const HOST: u8 = 1;
    /// More than one Host field.
    const MORE_HOSTS: u8 = 1 << 1;
    const EXPECT: u8 = 1 << 2;
    const CONNECTION: u8 = 1 << 3;
    const TRANSFER_ENCODING: u8 = 1 << 4;
    const CONTENT_LENGTH: u8 = 1 << 5;

    /// Notes the field `name`; whether it is the first Host field.
    fn note(&mut self, name: &[u8]) -> bool {
        let is = |known: &HeaderName| name.eq_ignore_ascii_case(known.as_str().as_bytes());
        let field = match name.len() {
            4 if is_host(name) => {
                if !self.has(Present::HOST) {
                    self.0 |= Present::HOST;
                    return true;
                }
                Present::MORE_HOSTS
            }
            6 if is(&header::EXPECT) => Present::EXPECT,
            10 if is(&header::CONNECTION) => Present::CONNECTION,
            14 if is(&header::CONTENT_LENGTH) => Present::CONTENT_LENGTH,
            17 if is(&header::TRANSFER_ENCODING) => Present::TRANSFER_ENCODING,
            _ => return false,
        };
        self.0 |= field;
        false
    }

    /// Whether the head has `field` (one of the constants above).
    fn has(self, field: u8) -> bool {
        self.0 & field != 0
    }
}

/// Whether `name` is `Host` in any case, compared as one word (Host is in
/// nearly every request): setting bit 5 of a byte lowercases a letter and
/// makes a letter of no other byte.
fn is_host(name: &[u8]) -> bool {
    let Ok(word) = <[u8; 4]>::try_from(name) else {
        return false;
    };
    u32::from_ne_bytes(word) | 0x2020_2020 == u32::from_ne_bytes(*b"host")
}

/// Longest header name `http::HeaderName` takes.
const MAX_NAME_LEN: usize = (1 << 16) - 1;

fn parse_head_into<'b>(
    input: &'b [u8],
    find: Find,
    limits: &Limits,
    fields: &mut [MaybeUninit<httparse::Header<'b>>],
    valid_host: &mut ValidHost,
    head: &mut Option<RequestHead>,
) -> Result<Option<(Present, usize)>, ParseError> {
    let mut req = httparse::Request::new(&mut []);
    // The default configuration is the strict one for requests: no
    // whitespace between a field name and the colon, no obs-fold, no space
    // before the first field, single spaces in the request line.
    let config = httparse::ParserConfig::default();
    let parsed = config.parse_request_with_uninit_headers(&mut req, input, fields);
    let bytes = match (find, parsed) {
        (Find::Exact, Ok(httparse::Status::Complete(n))) if n == input.len() => input,
        // httparse and the scan disagree on where the head ends: never
        // guess at framing.
        (Find::Exact, Ok(_)) => return Err(ParseError::bad("malformed request head")),
        (Find::Exact, Err(e)) => return Err(map_httparse_error(e, input)),
        (Find::Whole, Ok(httparse::Status::Complete(n))) if n <= limits.max_head_size => {
            &input[..n]
        }
        (Find::Whole, _) => return Ok(None),
    };

    let method = match req.method.unwrap_or_default().as_bytes() {
        // The methods of nearly every request, without `from_bytes`'
        // general matching.
        b"GET" => Method::GET,
        b"POST" => Method::POST,
        other => Method::from_bytes(other).map_err(|_| ParseError::bad("invalid method"))?,
    };
    // httparse accepts only 1.0 and 1.1; other versions were mapped to 505
    // with its error above.
    let version = if req.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let target = req.path.unwrap_or_default();

    let mut present = Present::default();
    // The (first) Host field's value, kept here rather than looked up again.
    let mut host: &[u8] = &[];
    for field in req.headers.iter() {
        // httparse checked that the name is a token and the value has no
        // control characters but HTAB: what `http`'s types accept, but for
        // a name's length.
        if field.name.len() > MAX_NAME_LEN {
            return Err(ParseError::bad("invalid header name"));
        }
        if present.note(field.name.as_bytes()) {
            host = field.value;
        }
    }

    if method == Method::CONNECT {
        return Err(ParseError::new(
            StatusCode::NOT_IMPLEMENTED,
            "CONNECT is not supported",
        ));
    }
    let (path, query, authority) = split_target(target, &method)?;

    // Host (RFC 9112 §3.2): exactly one in HTTP/1.1, optional in HTTP/1.0.
    match (present.has(Present::HOST), present.has(Present::MORE_HOSTS)) {
        (false, _) if version == Version::HTTP_11 => {
            return Err(ParseError::bad("missing Host header"))
        }
        (false, _) => {}
        (true, false) => valid_host.check(host)?,
        (true, true) => return Err(ParseError::bad("duplicate Host header")),
    }
    if let Some(authority) = authority {
        validate_host(authority.as_bytes())?;
    }

    let shared = pool::share_head(bytes, req.headers);
    // The head's copy starts with the head: a part of the head is at the
    // same place in it.
    let at = |part: &str| Span::within_bytes(bytes, part.as_bytes());
    // Where the target is in the shared head, like the header values
    // (`split_target` checked that it is visible ASCII).
    let shared_target = TargetText::InHead(at(target));
    let authority = authority
        .map(|authority| HeaderValue::from_maybe_shared(shared.slice(at(authority).range())))
        .transpose()
        .map_err(|_| ParseError::bad("invalid request target"))?;
    let mut headers = HeaderFields::from_table(shared);

    // Expect (RFC 9110 §10.1.1): only 100-continue is known; any other
    // expectation cannot be met.
    if present.has(Present::EXPECT)
        && headers
            .values(&header::EXPECT)
            .any(|expect| !expect.eq_ignore_ascii_case(b"100-continue"))
    {
        return Err(ParseError::new(
            StatusCode::EXPECTATION_FAILED,
            "unsupported expectation",
        ));
    }

    // Every Expect value is 100-continue by now.
    let expects_continue = version == Version::HTTP_11 && present.has(Present::EXPECT);

    let keep_alive = if version == Version::HTTP_11 {
        !(present.has(Present::CONNECTION)
            && has_token(headers.values(&header::CONNECTION), "close"))
    } else {
        present.has(Present::CONNECTION)
            && has_token(headers.values(&header::CONNECTION), "keep-alive")
    };

    // An absolute-form target's authority replaces Host (RFC 9112 §3.2.2).
    if let Some(authority) = authority {
        headers.map_mut().insert(header::HOST, authority);
    }
    let parsed = RequestHead {
        method,
        target: shared_target,
        // An absolute-form target without a path gets an empty span: its
        // path is `/`.
        path: Span::within(target, path),
        query: query.map(|query| Span::within(target, query)),
        version,
        headers,
        keep_alive,
        expects_continue,
    };
    // `head` is empty (see `parse_inner`): forgetting the `None` it held
    // skips the drop code that assigning to it would run.
    let previous = head.replace(parsed);
    debug_assert!(previous.is_none());
    std::mem::forget(previous);
    Ok(Some((present, bytes.len())))
}

fn map_httparse_error(e: httparse::Error, head: &[u8]) -> ParseError {
    match e {
        httparse::Error::TooManyHeaders => ParseError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many header fields",
        ),
        httparse::Error::Version if looks_like_http_version(head) => ParseError::new(
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "unsupported HTTP version",
        ),
        httparse::Error::Version => ParseError::bad("invalid HTTP version"),
        httparse::Error::HeaderName => ParseError::bad("invalid header name"),
        httparse::Error::HeaderValue => ParseError::bad("invalid header value"),
        httparse::Error::NewLine => ParseError::bad("invalid line ending"),
        httparse::Error::Token => ParseError::bad("invalid request line"),
        httparse::Error::Status => ParseError::bad("malformed request head"),
    }
}

/// Whether the request line ends in a well-formed `HTTP/DIGIT.DIGIT` (so a
/// version error means "unsupported" (505) rather than "garbage" (400)).
fn looks_like_http_version(head: &[u8]) -> bool {
    let start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len());
    let head = &head[start..];
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let mut line = &head[..line_end];
    if let Some(rest) = line.strip_suffix(b"\r") {
        line = rest;
    }
    // `method SP request-target SP HTTP-version` (RFC 9112 §3): a line with
    // more spaces (one inside the target) is malformed, not a request of
    // another version.
    if line.iter().filter(|&&b| b == b' ').count() != 2 {
        return false;
    }
    let version = match line.iter().rposition(|&b| b == b' ') {
        Some(sp) => &line[sp + 1..],
        None => return false,
    };
    matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

/// Splits a request-target into (path, query, authority), all slices of
/// `target`. The path is empty for an absolute-form target without one
/// (meaning `/`).
fn split_target<'a>(
    target: &'a str,
    method: &Method,
) -> Result<(&'a str, Option<&'a str>, Option<&'a str>), ParseError> {
    const BAD: ParseError = ParseError::bad("invalid request target");
    // RFC 3986 characters only (visible ASCII, no fragment), checked in the
    // same pass as the search for the query's `?` (the first one: neither
    // a scheme nor an authority has one).
    let bytes = target.as_bytes();
    let query_at = bytes
        .iter()
        .position(|&b| b == b'?' || !TARGET[usize::from(b)]);
    if let Some(at) = query_at {
        if bytes[at] != b'?' || !bytes[at + 1..].iter().all(|&b| TARGET[usize::from(b)]) {
            return Err(BAD);
        }
    }
    let path_end = query_at.unwrap_or(target.len());
    let query = query_at.map(|at| &target[at + 1..]);
    if target.starts_with('/') {
        return Ok((&target[..path_end], query, None));
    }
    if target == "*" {
        if *method == Method::OPTIONS {
            return Ok((target, None, None));
        }
        return Err(ParseError::bad("asterisk-form target requires OPTIONS"));
    }
    // Absolute form (empty targets end here too, with no scheme).
    let after_scheme = strip_prefix_ignore_case(target, "http://")
        .or_else(|| strip_prefix_ignore_case(target, "https://"))
        .ok_or(BAD)?;
    let end = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let authority = &after_scheme[..end];
    if authority.is_empty() {
        return Err(BAD);
    }
    // The path runs from the authority's end to the query (which cannot
    // start before it).
    let path_start = target.len() - after_scheme.len() + end;
    Ok((&target[path_start..path_end], query, Some(authority)))
}

/// The bytes a request-target may have: visible ASCII but `#` (RFC 3986
/// characters, no fragment), as a table.
const TARGET: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = b != b'#' as usize;
        b += 1;
    }
    table
};

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The bytes of a `reg-name` (RFC 3986 §3.2.2: unreserved, sub-delims and
/// `%` of pct-encoded), as a table: one load per byte of every Host value.
const REG_NAME: [bool; 256] = byte_table(b"-._~%!$&'()*+,;=");

/// The bytes allowed inside `[...]` of an IP-literal (IPv6 with an
/// optional zone, or IPvFuture), as a table.
const IP_LITERAL: [bool; 256] = byte_table(b":.%-_~");

/// Validates a `Host` value or an authority: `host [ ":" port ]`, no
/// userinfo, a decimal port that fits in 16 bits. An empty value is allowed
/// (RFC 9110 §7.2).
fn validate_host(value: &[u8]) -> Result<(), ParseError> {
    const BAD: ParseError = ParseError::bad("invalid Host");
    // One pass over the host, then one over the port. `@` (userinfo) is in
    // neither alphabet, so it needs no search of its own.
    let port = if let [b'[', literal @ ..] = value {
        // IP-literal.
        let close = literal.iter().position(|&b| b == b']').ok_or(BAD)?;
        let (literal, rest) = (&literal[..close], &literal[close + 1..]);
        if literal.is_empty() || !literal.iter().all(|&b| IP_LITERAL[usize::from(b)]) {
            return Err(BAD);
        }
        match rest {
            [] => return Ok(()),
            [b':', port @ ..] => port,
            _ => return Err(BAD),
        }
    } else {
        let end = value
            .iter()
            .position(|&b| !REG_NAME[usize::from(b)])
            .unwrap_or(value.len());
        match &value[end..] {
            [] => return Ok(()),
            [b':', port @ ..] => port,
            _ => return Err(BAD),
        }
    };
    // `port = *DIGIT` (RFC 3986), so an empty port is allowed; a non-empty
    // one must fit in 16 bits. Leading zeros are fine: past them, at most
    // five digits, and five no greater than 65535 (digit strings of one
    // length compare as their numbers do).
    if !port.iter().all(u8::is_ascii_digit) {
        return Err(BAD);
    }
    let significant = &port[port.iter().take_while(|&&b| b == b'0').count()..];
    match significant.len() {
        0..=4 => Ok(()),
        5 if significant <= &b"65535"[..] => Ok(()),
        _ => Err(BAD),
    }
}

/// Whether a comma-separated list header contains `token`
/// (case-insensitive).
fn has_token<'a>(mut values: impl Iterator<Item = &'a [u8]>, token: &str) -> bool {
    values.any(|value| {
        value
            .split(|&b| b == b',')
            .any(|item| trim_ows(item).eq_ignore_ascii_case(token.as_bytes()))
    })
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The body's framing (RFC 9112 §6.3), from Transfer-Encoding /
/// Content-Length; `None`: no body. The declared length is checked by
/// [`RequestParser::buffer_body`], not here (a streamed body has no limit).
fn body_framing(head: &RequestHead, present: Present) -> Result<Option<Decoder>, ParseError> {
    let has_te = present.has(Present::TRANSFER_ENCODING);
    let has_cl = present.has(Present::CONTENT_LENGTH);
    if has_te {
        if has_cl {
            return Err(ParseError::bad("both Transfer-Encoding and Content-Length"));
        }
        if head.version == Version::HTTP_10 {
            return Err(ParseError::bad("Transfer-Encoding in HTTP/1.0"));
        }
        let mut codings = head
            .headers
            .values(&header::TRANSFER_ENCODING)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim_ows)
            .filter(|c| !c.is_empty())
            .peekable();
        let mut chunked_seen = false;
        let mut other_seen = false;
        let mut last_chunked = false;
        if codings.peek().is_none() {
            return Err(ParseError::bad("empty Transfer-Encoding"));
        }
        for coding in codings {
            last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            if last_chunked {
                if chunked_seen {
                    return Err(ParseError::bad("chunked applied more than once"));
                }
                chunked_seen = true;
            } else {
                other_seen = true;
            }
        }
        if chunked_seen && !last_chunked {
            return Err(ParseError::bad("chunked is not the final transfer coding"));
        }
        if other_seen {
            // Includes `gzip, chunked`: the body would reach the handler
            // still coded, so refuse what we cannot decode (RFC 9112 §6.1).
            return Err(ParseError::new(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported transfer coding",
            ));
        }
        return Ok(Some(Decoder::Chunked(Chunked {
            state: ChunkState::SizeStart,
            ext_bytes: 0,
            trailer_start: 0,
        })));
    }
    if has_cl {
        let mut length: Option<u64> = None;
        for value in head.headers.values(&header::CONTENT_LENGTH) {
            for item in value.split(|&b| b == b',') {
                let n = parse_content_length(trim_ows(item))?;
                match length {
                    Some(prev) if prev != n => {
                        return Err(ParseError::bad("conflicting Content-Length"))
                    }
                    _ => length = Some(n),
                }
            }
        }
        let length = length.unwrap_or(0);
        if length == 0 {
            return Ok(None);
        }
        return Ok(Some(Decoder::Length { remaining: length }));
    }
    Ok(None)
}

fn parse_content_length(digits: &[u8]) -> Result<u64, ParseError> {
    const BAD: ParseError = ParseError::bad("invalid Content-Length");
    if digits.is_empty() {
        return Err(BAD);
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(BAD);
        }
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(b - b'0')))
            .ok_or(BAD)
    })
}

/// Decodes body bytes from `state.offset`. Returns `true` when the body is
/// complete (`state.offset` is then the end of the request).
fn decode_body(state: &mut BodyState, input: &[u8], limits: &Limits) -> Result<bool, ParseError> {
    match &mut state.decoder {
        Decoder::Length { remaining } => {
            let available = &input[state.offset..];
            let take = available
                .len()
                .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
            state.body.extend_from_slice(&available[..take]);
            state.offset += take;
            *remaining -= take as u64;
            Ok(*remaining == 0)
        }
        Decoder::Chunked(chunked) => decode_chunked(
            chunked,
            &mut state.body,
            &mut state.offset,
            input,
            limits,
            state.body_limit,
        ),
    }
}

fn decode_chunked(
    chunked: &mut Chunked,
    body: &mut Vec<u8>,
    offset: &mut usize,
    input: &[u8],
    limits: &Limits,
    body_limit: u64,
) -> Result<bool, ParseError> {
    use ChunkState::*;
    const BAD_SIZE: ParseError = ParseError::bad("invalid chunk size line");
    while *offset < input.len() {
        if let Data { remaining } = chunked.state {
            let available = &input[*offset..];
            let take = available
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            body.extend_from_slice(&available[..take]);
            *offset += take;
            let remaining = remaining - take as u64;
            chunked.state = if remaining == 0 {
                DataCr
            } else {
                Data { remaining }
            };
            continue;
        }
        let b = input[*offset];
        *offset += 1;
        chunked.state = match chunked.state {
            SizeStart => match hex_value(b) {
                Some(v) => Size {
                    value: u64::from(v),
                },
                None => return Err(BAD_SIZE),
            },
            Size { value } => match (hex_value(b), b) {
                (Some(v), _) => {
                    if value > u64::MAX >> 4 {
                        return Err(BAD_SIZE);
                    }
                    Size {
                        value: value << 4 | u64::from(v),
                    }
                }
                (None, b' ' | b'\t') => SizeLws { value },
                (None, b';') => Ext { value },
                (None, b'\r') => SizeLf { value },
                _ => return Err(BAD_SIZE),
            },
            SizeLws { value } => match b {
                b' ' | b'\t' => SizeLws { value },
                b';' => Ext { value },
                b'\r' => SizeLf { value },
                _ => return Err(BAD_SIZE),
            },
            Ext { value } => {
                chunked.ext_bytes += 1;
                if chunked.ext_bytes > limits.max_head_size {
                    return Err(ParseError::bad("chunk extensions too large"));
                }
                match b {
                    b'\r' => SizeLf { value },
                    // Bare LF, NUL, other controls: refuse.
                    b'\t' => Ext { value },
                    b if b < 0x20 || b == 0x7f => return Err(BAD_SIZE),
                    _ => Ext { value },
                }
            }
            SizeLf { value } => {
                if b != b'\n' {
                    return Err(BAD_SIZE);
                }
                if value > body_limit.saturating_sub(body.len() as u64) {
                    return Err(too_large_body());
                }
                if value == 0 {
                    chunked.trailer_start = *offset;
                    TrailerLineStart
                } else {
                    Data { remaining: value }
                }
            }
            Data { .. } => unreachable!("data handled above"),
            DataCr if b == b'\r' => DataLf,
            DataLf if b == b'\n' => SizeStart,
            DataCr | DataLf => return Err(ParseError::bad("missing CRLF after chunk data")),
            TrailerLineStart => match b {
                b'\r' => TrailerLf { empty: true },
                b'\n' => return Err(ParseError::bad("bare LF in trailer section")),
                _ => TrailerLine,
            },
            TrailerLine => match b {
                b'\r' => TrailerLf { empty: false },
                b'\n' => return Err(ParseError::bad("bare LF in trailer section")),
                _ => TrailerLine,
            },
            TrailerLf { empty } => {
                if b != b'\n' {
                    return Err(ParseError::bad("bare CR in trailer section"));
                }
                if empty {
                    check_trailers(&input[chunked.trailer_start..*offset], limits)?;
                    return Ok(true);
                }
                TrailerLineStart
            }
        };
        if matches!(
            chunked.state,
            TrailerLine | TrailerLf { .. } | TrailerLineStart
        ) && *offset - chunked.trailer_start > limits.max_head_size
        {
            return Err(ParseError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "trailer section too large",
            ));
        }
    }
    Ok(false)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Validates the trailer section (ending with its empty line) as header
/// fields; their values are discarded.
fn check_trailers(section: &[u8], limits: &Limits) -> Result<(), ParseError> {
    if section == b"\r\n" {
        return Ok(());
    }
    let mut fields = vec![httparse::EMPTY_HEADER; limits.max_headers];
    match httparse::parse_headers(section, &mut fields) {
        Ok(httparse::Status::Complete((n, _))) if n == section.len() => Ok(()),
        Err(httparse::Error::TooManyHeaders) => Err(ParseError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many trailer fields",
        )),
        _ => Err(ParseError::bad("invalid trailer section")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    /// A head is moved several times on its way to the handler: up to 128
    /// bytes, a move is a few register copies rather than a call to
    /// `memcpy`.
    #[test]
    fn a_head_fits_in_128_bytes() {
        assert!(std::mem::size_of::<RequestHead>() <= 128);
    }

    /// Parses `input` in one call.
    fn parse_once(input: &[u8], limits: Limits) -> Result<Parsed, ParseError> {
        RequestParser::new(limits).parse(input)
    }

    /// A comparable summary of a complete parse.
    #[derive(Debug, PartialEq)]
    struct Summary {
        method: Method,
        target: String,
        path: String,
        query: Option<String>,
        version: Version,
        headers: Vec<(String, Vec<u8>)>,
        keep_alive: bool,
        body: Vec<u8>,
        consumed: usize,
    }

    fn summarize(parsed: Parsed) -> Option<Summary> {
        match parsed {
            Parsed::Partial => None,
            Parsed::BodyFollows | Parsed::BodyEnd { .. } => unreachable!("announce mode is off"),
            Parsed::Complete {
                head,
                body,
                consumed,
            } => Some(Summary {
                path: head.path().into(),
                query: head.query().map(String::from),
                target: head.target().into(),
                method: head.method,
                version: head.version,
                headers: head
                    .headers
                    .map()
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                    .collect(),
                keep_alive: head.keep_alive,
                body,
                consumed,
            }),
        }
    }

    /// Feeds `input` one byte more at a time, the way a connection appends
    /// to its buffer, and returns the first non-partial result.
    fn parse_bytewise(input: &[u8], limits: Limits) -> Result<Option<Summary>, ParseError> {
        let mut parser = RequestParser::new(limits);
        for end in 1..=input.len() {
            match parser.parse(&input[..end])? {
                Parsed::Partial => continue,
                done => return Ok(summarize(done)),
            }
        }
        Ok(None)
    }

    /// Splits `input` at every boundary (two calls) and checks the result is
    /// identical to a one-shot parse.
    fn assert_split_invariant(input: &[u8], limits: Limits) {
        let whole = parse_once(input, limits).map(summarize);
        for split in 0..=input.len() {
            let mut parser = RequestParser::new(limits);
            let first = parser.parse(&input[..split]);
            let result = match first {
                Ok(Parsed::Partial) => parser.parse(input).map(summarize),
                other => other.map(summarize),
            };
            assert_eq!(
                result,
                whole,
                "split at {split} of {:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(parse_bytewise(input, limits), whole, "bytewise feed");
    }

    fn complete(input: &[u8]) -> Summary {
        match parse_once(input, limits()) {
            Ok(p) => summarize(p).expect("complete"),
            Err(e) => panic!("{:?}: {e}", String::from_utf8_lossy(input)),
        }
    }

    fn status_of(input: &[u8], limits: Limits) -> Option<u16> {
        match parse_once(input, limits) {
            Ok(Parsed::Partial) => None,
            Ok(Parsed::Complete { .. }) => Some(0),
            Ok(Parsed::BodyFollows | Parsed::BodyEnd { .. }) => {
                unreachable!("announce mode is off")
            }
            Err(e) => Some(e.status().as_u16()),
        }
    }

    const VALID: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /p/q?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nAccept: text/html\r\n\r\n",
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\nGET / HTTP/1.1\nHost: a\n\n",
        b"GET / HTTP/1.1\nHost: a\r\n\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;a=b;c\r\n world\r\n0\r\n\r\n",
        b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\nA \t;ext\r\n0123456789\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n",
        b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://Example.com:81/x/y?z HTTP/1.1\r\nHost: other\r\n\r\n",
        b"BREW /pot HTTP/1.1\r\nHost: [::1]:80\r\nConnection: foo, Close\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    ];

    #[test]
    fn valid_requests_split_at_every_byte() {
        for input in VALID {
            assert!(
                parse_once(input, limits()).is_ok(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_split_invariant(input, limits());
        }
    }

    #[test]
    fn mutated_requests_never_panic_and_split_consistently() {
        // Deterministic xorshift; mutates valid requests with bytes that
        // matter to framing and checks one-shot and byte-wise parses agree.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"\r\n \t:;,0aF\x00\x7f\xff/?*@chunked";
        for round in 0..3000 {
            let mut input = VALID[round % VALID.len()].to_vec();
            for _ in 0..=(next() % 3) {
                let pos = (next() as usize) % input.len();
                let byte = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => input[pos] = byte,
                    1 => input.insert(pos, byte),
                    _ => {
                        input.remove(pos);
                    }
                }
                if input.is_empty() {
                    input.push(byte);
                }
            }
            let whole = parse_once(&input, limits()).map(summarize);
            if let Ok(Some(s)) = &whole {
                assert!(s.consumed <= input.len());
            }
            assert_eq!(
                parse_bytewise(&input, limits()),
                whole,
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn invalid_requests_split_at_every_byte() {
        for (input, _) in INVALID {
            assert_split_invariant(input, limits());
        }
    }

    #[test]
    fn request_line_and_target_forms() {
        let s = complete(b"GET /p/q?x=1&y=%20 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((s.method, s.version), (Method::GET, Version::HTTP_11));
        assert_eq!(s.target, "/p/q?x=1&y=%20");
        assert_eq!(s.path, "/p/q");
        assert_eq!(s.query.as_deref(), Some("x=1&y=%20"));

        let s = complete(b"GET /? HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((s.path.as_str(), s.query.as_deref()), ("/", Some("")));

        let s = complete(b"GET http://Example.com:81/x/y?z HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!((s.path.as_str(), s.query.as_deref()), ("/x/y", Some("z")));
        assert_eq!(
            s.headers,
            vec![("host".to_owned(), b"Example.com:81".to_vec())]
        );

        let s = complete(b"GET HTTPS://h?q HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((s.path.as_str(), s.query.as_deref()), ("/", Some("q")));

        let s = complete(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((s.path.as_str(), s.query), ("*", None));

        let s = complete(b"PURGE /x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(s.method.as_str(), "PURGE");
    }

    /// The splitting of a target in two passes (validation, then the
    /// search for the query), for comparison.
    fn split_target_in_two_passes<'a>(
        target: &'a str,
        method: &Method,
    ) -> Result<(&'a str, Option<&'a str>, Option<&'a str>), ParseError> {
        if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic() && b != b'#') {
            return Err(ParseError::bad("invalid request target"));
        }
        if target == "*" {
            if *method == Method::OPTIONS {
                return Ok((target, None, None));
            }
            return Err(ParseError::bad("asterisk-form target requires OPTIONS"));
        }
        let (rest, authority) = if target.starts_with('/') {
            (target, None)
        } else {
            let after_scheme = strip_prefix_ignore_case(target, "http://")
                .or_else(|| strip_prefix_ignore_case(target, "https://"))
                .ok_or(ParseError::bad("invalid request target"))?;
            let end = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
            let authority = &after_scheme[..end];
            if authority.is_empty() {
                return Err(ParseError::bad("invalid request target"));
            }
            (&after_scheme[end..], Some(authority))
        };
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        Ok((path, query, authority))
    }

    #[test]
    fn targets_split_in_one_pass_as_in_two() {
        let mut targets: Vec<String> = [
            "/",
            "/a/b",
            "/a?b",
            "/?",
            "/a?b?c",
            "/a?b/c",
            "?x",
            "",
            "*",
            "**",
            "/*",
            "/a#b",
            "/a?b#c",
            "#",
            "http://h",
            "http://h?q",
            "http://h/p?q",
            "HTTPS://h:1/x?y/z",
            "http://",
            "http:///x",
            "http://?q",
            "https://h?",
            "ftp://h/",
            "http:/h",
            "h:80",
            "/\x7f",
            "/é",
            "/a b",
            "x",
            "/a?\x01",
            "/a?é",
            "/a?b c",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        // Every short string over the bytes that matter.
        let alphabet = ["/", "?", "#", "h", "*", ":", " ", "é", "\x7f"];
        let mut short = vec![String::new()];
        for _ in 0..4 {
            short = short
                .iter()
                .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                .collect();
            targets.extend(short.iter().cloned());
            targets.extend(short.iter().map(|t| format!("http://{t}")));
        }
        for target in &targets {
            for method in [Method::GET, Method::OPTIONS] {
                assert_eq!(
                    split_target(target, &method),
                    split_target_in_two_passes(target, &method),
                    "{target:?} {method}"
                );
            }
        }
    }

    #[test]
    fn headers_keep_order_and_duplicates() {
        let s = complete(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nX-B:  v  \r\n\r\n");
        let names: Vec<_> = s.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["host", "x-a", "x-a", "x-b"]);
        assert_eq!(s.headers[1].1, b"1");
        assert_eq!(s.headers[2].1, b"2");
        assert_eq!(s.headers[3].1, b"v");
    }

    #[test]
    fn keep_alive_rules() {
        let cases: &[(&[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade,  CLOSE \r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: x\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
                true,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: te, Keep-Alive\r\n\r\n",
                true,
            ),
            (b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", false),
        ];
        for (input, expected) in cases {
            assert_eq!(
                complete(input).keep_alive,
                *expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn bodies() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"POST / HTTP/1.1\r\nHost: h\r\n\r\n", b""),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", b""),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", b"abc"),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 003\r\n\r\nabc", b"abc"),
            (b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", b"abc"),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3,3\r\n\r\nabc", b"abc"),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                b"abc",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\"x;y\"\r\na\r\n02\r\nbc\r\n00\r\n\r\n",
                b"abc",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,chunked\r\n\r\nf\r\n0123456789abcde\r\n0\r\nT: v\r\n\r\n",
                b"0123456789abcde",
            ),
        ];
        for (input, body) in cases {
            let s = complete(input);
            assert_eq!(s.body, *body, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(s.consumed, input.len());
        }
    }

    const INVALID: &[(&[u8], u16)] = &[
        // Request line.
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417),
        (b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, x\r\nContent-Length: 1\r\n\r\nx", 417),
        (b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/3.0\r\n\r\n", 505),
        (b"GET / FOO/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1 x\r\nHost: h\r\n\r\n", 400),
        // A space in the target: a malformed line, whatever ends it.
        (b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET /a b HTTP/2.0\r\nHost: h\r\n\r\n", 400),
        (b"HEAD /a%20b c HTTP/1.0\r\n\r\n", 400),
        (b"GET /\r\nHost: h\r\n\r\n", 400),
        (b"G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"\r\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        // Targets.
        (b"GET x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET http://u@h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET h:80 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 501),
        // Header syntax.
        (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tfolded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n", 400),
        // Host.
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h:8x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h:65536\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h:99999999999999999999999\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nHost: h:-1\r\n\r\n", 400),
        // Content-Length.
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\nab", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\na", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4194305\r\n\r\n", 413),
        // Transfer-Encoding.
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        // Chunked framing.
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;a\nx\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1 x\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: v\rx\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n", 413),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n400001\r\n", 413),
    ];

    #[test]
    fn invalid_requests() {
        for (input, status) in INVALID {
            assert_eq!(
                status_of(input, limits()),
                Some(*status),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn head_limits() {
        let small = Limits {
            max_head_size: 64,
            max_headers: 3,
            max_body_size: 10,
        };
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(70));
        let many_fields = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let big_fields = format!("GET / HTTP/1.1\r\nHost: h\r\nA: {}\r\n\r\n", "v".repeat(50));
        let cases: &[(&[u8], Option<u16>)] = &[
            (long_target.as_bytes(), Some(414)),
            // Request line alone over the limit, not yet terminated.
            (&long_target.as_bytes()[..66], Some(414)),
            // Not terminated but still within the limit.
            (&long_target.as_bytes()[..64], None),
            (many_fields.as_bytes(), Some(431)),
            (big_fields.as_bytes(), Some(431)),
            (&big_fields.as_bytes()[..65], Some(431)),
            (&big_fields.as_bytes()[..64], None),
            (b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", Some(0)),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", Some(413)),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789", Some(0)),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n6\r\n", Some(413)),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n", Some(0)),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", Some(431)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                status_of(input, small),
                *expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_split_invariant(input, small);
        }
        // A head of exactly max_head_size bytes is accepted.
        let exact = format!("GET / HTTP/1.1\r\nHost: h\r\nA: {}\r\n\r\n", "v".repeat(32));
        assert_eq!(exact.len(), 64);
        assert_eq!(status_of(exact.as_bytes(), small), Some(0));
        // Trailers are capped by max_head_size too.
        let trailer = format!(
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: {}\r\n\r\n",
            "v".repeat(70)
        );
        assert_eq!(status_of(trailer.as_bytes(), small), Some(431));
        // So are chunk extensions.
        let ext = format!(
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\n",
            "e".repeat(70)
        );
        assert_eq!(status_of(ext.as_bytes(), small), Some(400));
    }

    #[test]
    fn content_length_over_limit_rejected_before_body() {
        let mut parser = RequestParser::new(limits());
        let err = parser
            .parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999\r\n\r\n")
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(err.reason(), "request body too large");
        assert_eq!(err.to_string(), "request body too large (413)");
    }

    #[test]
    fn pipelined_requests() {
        let input: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
            POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nxy\
            \r\nPOST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n\
            GET /d HTTP/1.0\r\n\r\nGET /e";
        let expect = [("/a", &b""[..]), ("/b", b"xy"), ("/c", b"z"), ("/d", b"")];

        // All at once: drain after each request.
        let mut buf = input.to_vec();
        let mut parser = RequestParser::new(limits());
        for (path, body) in expect {
            let s = summarize(parser.parse(&buf).unwrap()).unwrap();
            assert_eq!((s.path.as_str(), s.body.as_slice()), (path, body));
            buf.drain(..s.consumed);
        }
        assert!(matches!(parser.parse(&buf), Ok(Parsed::Partial)));
        assert_eq!(buf, b"GET /e");

        // Byte by byte, appending to one buffer and draining on completion.
        let mut buf = Vec::new();
        let mut parser = RequestParser::new(limits());
        let mut seen = Vec::new();
        for &b in input {
            buf.push(b);
            if let Parsed::Complete {
                head,
                body,
                consumed,
            } = parser.parse(&buf).unwrap()
            {
                seen.push((String::from(head.path()), body));
                buf.drain(..consumed);
            }
        }
        let seen: Vec<_> = seen
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        assert_eq!(seen, expect);
        assert_eq!(buf, b"GET /e");
    }

    #[test]
    fn bytewise_feed_is_linear() {
        // A 2 MiB chunked body fed one byte at a time: quadratic rescanning
        // would take minutes; linear work finishes in well under a second in
        // release and a few seconds in debug.
        let limits = Limits {
            max_body_size: 8 * 1024 * 1024,
            ..Limits::default()
        };
        let mut input = b"POST / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..90 {
            input.extend_from_slice(format!("X-Header-{i}: {}\r\n", "v".repeat(100)).as_bytes());
        }
        input.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for _ in 0..32 {
            input.extend_from_slice(b"10000\r\n");
            input.extend_from_slice(&[b'x'; 0x10000]);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b"0\r\n\r\n");
        let start = std::time::Instant::now();
        let s = parse_bytewise(&input, limits).unwrap().unwrap();
        assert_eq!(s.body.len(), 32 * 0x10000);
        assert_eq!(s.consumed, input.len());
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
    }

    /// Streaming mode: the body comes out piecewise, the input can be
    /// drained as it is decoded, and a pipelined request after it parses.
    #[test]
    fn streamed_bodies_come_out_piecewise_and_input_drains() {
        for body_framing in [
            &b"Content-Length: 11\r\n\r\nhello world"[..],
            &b"Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\n"[..],
        ] {
            let mut request = b"PUT /up HTTP/1.1\r\nHost: h\r\n".to_vec();
            request.extend_from_slice(body_framing);
            request.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
            // Tiny limits: a streamed body is not bound by max_body_size.
            let tiny = Limits {
                max_body_size: 2,
                ..limits()
            };
            for step in [1, 3, 7, request.len()] {
                let mut parser = RequestParser::new(tiny);
                parser.set_announce_bodies(true);
                let mut buf = Vec::new();
                let mut got = Vec::new();
                let mut events = Vec::new();
                for piece in request.chunks(step) {
                    buf.extend_from_slice(piece);
                    loop {
                        match parser.parse(&buf).unwrap() {
                            Parsed::Partial => {
                                let (data, drain) = parser.take_streamed();
                                got.extend_from_slice(&data);
                                buf.drain(..drain);
                                break;
                            }
                            Parsed::BodyFollows => {
                                let (head, _) = parser.stream_body().unwrap();
                                events.push(format!("stream {}", head.path()));
                            }
                            Parsed::BodyEnd { last, consumed } => {
                                got.extend_from_slice(&last);
                                buf.drain(..consumed);
                                events.push("end".to_owned());
                            }
                            Parsed::Complete { head, consumed, .. } => {
                                buf.drain(..consumed);
                                events.push(format!("request {}", head.path()));
                            }
                        }
                        if buf.is_empty() {
                            break;
                        }
                    }
                }
                assert_eq!(got, b"hello world", "step {step}");
                assert_eq!(events, ["stream /up", "end", "request /next"], "step {step}");
                assert!(buf.is_empty(), "step {step}: {buf:?}");
            }
        }
    }

    /// Bytes that cannot begin an HTTP request are refused as they arrive,
    /// not after a head that will never end.
    #[test]
    fn non_http_bytes_are_refused_at_once() {
        for input in [
            &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..], // a TLS ClientHello
            &b"\x00\x01\x02"[..],
            &b"GE\x7fT"[..],
            &b"\r\n{\"json\""[..],
        ] {
            let mut parser = RequestParser::new(limits());
            let err = parser.parse(input).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{input:?}");
        }
        // A partial but plausible request line just waits.
        let mut parser = RequestParser::new(limits());
        assert!(matches!(parser.parse(b"PROPFIND"), Ok(Parsed::Partial)));
        assert!(matches!(parser.parse(b"PROPFIND /x"), Ok(Parsed::Partial)));
    }

    #[test]
    fn announced_body_can_still_be_buffered_within_the_limit() {
        let input = b"PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
        let mut parser = RequestParser::new(limits());
        parser.set_announce_bodies(true);
        assert!(matches!(parser.parse(input), Ok(Parsed::BodyFollows)));
        let (head, _) = parser.stream_body().unwrap();
        parser.restore_buffered(head).unwrap();
        match parser.parse(input).unwrap() {
            Parsed::Complete { body, consumed, .. } => {
                assert_eq!(body, b"abc");
                assert_eq!(consumed, input.len());
            }
            other => panic!("{other:?}"),
        }
        // Over the limit: refused with 413 when choosing to buffer.
        let tiny = Limits {
            max_body_size: 2,
            ..limits()
        };
        let mut parser = RequestParser::new(tiny);
        parser.set_announce_bodies(true);
        assert!(matches!(parser.parse(input), Ok(Parsed::BodyFollows)));
        let (head, _) = parser.stream_body().unwrap();
        assert_eq!(
            parser.restore_buffered(head).unwrap_err().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn the_header_map_is_built_only_when_asked_for() {
        let input: &[u8] = b"PUT /f?q HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nConnection: Close\r\n\
                             Expect: 100-continue\r\nContent-Length: 3\r\nx-a: 2\r\n\r\nabc";
        let mut parser = RequestParser::new(limits());
        let Ok(Parsed::Complete { head, body, .. }) = parser.parse(input) else {
            panic!("not complete");
        };
        // Framing, persistence and the expectation came from the field table.
        assert_eq!(body, b"abc");
        assert!(!head.keep_alive);
        assert!(head.expects_continue);
        assert!(!head.headers.is_built());
        assert_eq!(
            head.headers
                .values(&header::CONTENT_LENGTH)
                .collect::<Vec<_>>(),
            [b"3"]
        );
        assert_eq!(head.headers.first(&header::HOST).unwrap(), "h");
        assert!(!head.headers.is_built());
        // Built on demand: every field, in order, duplicates kept, values
        // sharing the head's copy.
        let map = head.headers.map();
        let fields: Vec<_> = map
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        assert_eq!(map.len(), 6);
        assert_eq!(map.get_all("x-a").iter().collect::<Vec<_>>(), ["1", "2"]);
        assert!(fields.contains(&("connection", &b"Close"[..])));
        assert!(head.headers.is_built());
        // An absolute-form target's authority replaces Host (in the map).
        let input: &[u8] = b"GET http://a.example/p HTTP/1.1\r\nHost: h\r\n\r\n";
        let Ok(Parsed::Complete { head, .. }) = parser.parse(input) else {
            panic!("not complete");
        };
        assert_eq!(head.headers.map()["host"], "a.example");
        assert_eq!(
            head.headers.values(&header::HOST).collect::<Vec<_>>(),
            [b"a.example"]
        );
    }

    #[test]
    fn pending_head_while_body_arrives() {
        let input: &[u8] =
            b"PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc";
        let mut parser = RequestParser::new(limits());
        assert!(matches!(parser.parse(&input[..20]), Ok(Parsed::Partial)));
        assert!(parser.pending_head().is_none());
        let head_len = input.len() - 3;
        assert!(matches!(
            parser.parse(&input[..head_len]),
            Ok(Parsed::Partial)
        ));
        let head = parser.pending_head().expect("head parsed");
        assert_eq!(head.path(), "/f");
        assert_eq!(head.headers.map().get("expect").unwrap(), "100-continue");
        assert!(matches!(
            parser.parse(&input[..head_len + 1]),
            Ok(Parsed::Partial)
        ));
        assert!(matches!(parser.parse(input), Ok(Parsed::Complete { .. })));
        assert!(parser.pending_head().is_none());
    }

    #[test]
    fn parser_resets_after_error() {
        let mut parser = RequestParser::new(limits());
        assert!(parser.parse(b"GET / HTTP/9.9\r\n\r\n").is_err());
        let s = summarize(parser.parse(b"GET /ok HTTP/1.0\r\n\r\n").unwrap()).unwrap();
        assert_eq!(s.path, "/ok");
    }

    #[test]
    fn a_valid_host_is_remembered_and_every_other_value_checked() {
        let mut parser = RequestParser::new(limits());
        let request = |host: &str| format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        for host in ["a.example:8080", "a.example:8080", "a.example", ""] {
            let parsed = parser.parse(request(host).as_bytes());
            assert!(matches!(parsed, Ok(Parsed::Complete { .. })), "{host:?}");
        }
        // After a valid value, a longer or shorter invalid one is refused.
        let long = "h".repeat(ValidHost::CAPACITY + 8);
        for bad in ["a.example:808x", "a.example:8080x", "a.exampl@", "", "a b"] {
            let good = if bad.is_empty() {
                "x"
            } else {
                &bad[..bad.len() - 1]
            };
            if !good.is_empty() {
                assert!(parser.parse(request(good).as_bytes()).is_ok(), "{good:?}");
            }
            if !bad.is_empty() {
                let refused = parser.parse(request(bad).as_bytes()).unwrap_err();
                assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad:?}");
            }
        }
        // A value too long to remember is checked every time.
        let mut memo = ValidHost::default();
        assert!(memo.check(long.as_bytes()).is_ok());
        assert!(memo.check(format!("{long}@").as_bytes()).is_err());
        assert!(memo.check(b"a.example").is_ok());
        assert!(memo.check(b"a.exampl").is_ok());
        assert!(memo.check(b"a.exampl]").is_err());
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let base: Vec<u8> = (0..70u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=base.len() {
            let a = &base[..n];
            assert!(same_bytes(a, a), "{n}");
            let copy = a.to_vec();
            assert!(same_bytes(a, &copy), "{n}");
            // One byte different, wherever it is.
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!same_bytes(a, &b), "{n} {at}");
            }
            // A shorter or a longer value.
            if n > 0 {
                assert!(!same_bytes(a, &a[..n - 1]), "{n}");
            }
            if n < base.len() {
                assert!(!same_bytes(a, &base[..n + 1]), "{n}");
            }
        }
    }

    #[test]
    fn host_names_in_any_case() {
        for at in 0..4 {
            for b in 0..=255 {
                let mut name = *b"host";
                name[at] = b;
                assert_eq!(
                    is_host(&name),
                    name.eq_ignore_ascii_case(b"host"),
                    "{name:?}"
                );
            }
        }
        assert!(is_host(b"HoSt"));
        assert!(!is_host(b"hos") && !is_host(b"hosts"));
    }

    #[test]
    fn host_validation() {
        for ok in [
            &b""[..],
            b"h",
            b"h:",
            b"h:0",
            b"h:65535",
            b"127.0.0.1:8080",
            b"[::1]",
            b"[::1]:443",
            b"xn--bcher-kva.example",
            b"a%20b",
            b"h:00080",
            b"h:0000065535",
            b"h:00000",
            b"[::1]:",
            b"[fe80::1%25eth0]:8080",
        ] {
            assert_eq!(
                validate_host(ok),
                Ok(()),
                "{:?}",
                String::from_utf8_lossy(ok)
            );
        }
        for bad in [
            &b"u@h"[..],
            b"h:p",
            b"h:65536",
            b"h:1:2",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"h h",
            b"h/",
            b"h?",
            b"h:99999",
            b"h:065536",
            b"h:100000",
            b"h:-1",
            b"h:+1",
            b"[::1]:x",
            b"[::1@x]",
            b"@h",
            b"h@",
        ] {
            assert!(
                validate_host(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
