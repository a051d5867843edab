//! A raw HTTP/2 client for conformance and abuse tests: it writes any
//! frame, valid or not, and reads the server's frames one by one (in the
//! style of h2spec). Request header blocks are HPACK literals written
//! here (so that a test can send what no well-behaved encoder would);
//! the server's blocks are decoded with `loona-hpack`.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types.
pub mod kind {
    /// DATA
    pub const DATA: u8 = 0;
    /// HEADERS
    pub const HEADERS: u8 = 1;
    /// PRIORITY
    pub const PRIORITY: u8 = 2;
    /// RST_STREAM
    pub const RST_STREAM: u8 = 3;
    /// SETTINGS
    pub const SETTINGS: u8 = 4;
    /// PUSH_PROMISE
    pub const PUSH_PROMISE: u8 = 5;
    /// PING
    pub const PING: u8 = 6;
    /// GOAWAY
    pub const GOAWAY: u8 = 7;
    /// WINDOW_UPDATE
    pub const WINDOW_UPDATE: u8 = 8;
    /// CONTINUATION
    pub const CONTINUATION: u8 = 9;
}

/// Flags.
pub mod flag {
    /// END_STREAM / ACK
    pub const END_STREAM: u8 = 0x1;
    /// ACK (SETTINGS, PING)
    pub const ACK: u8 = 0x1;
    /// END_HEADERS
    pub const END_HEADERS: u8 = 0x4;
    /// PADDED
    pub const PADDED: u8 = 0x8;
    /// PRIORITY
    pub const PRIORITY: u8 = 0x20;
}

/// Error codes.
pub mod code {
    /// NO_ERROR
    pub const NO_ERROR: u32 = 0x0;
    /// PROTOCOL_ERROR
    pub const PROTOCOL_ERROR: u32 = 0x1;
    /// INTERNAL_ERROR
    pub const INTERNAL_ERROR: u32 = 0x2;
    /// FLOW_CONTROL_ERROR
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    /// SETTINGS_TIMEOUT
    pub const SETTINGS_TIMEOUT: u32 = 0x4;
    /// STREAM_CLOSED
    pub const STREAM_CLOSED: u32 = 0x5;
    /// FRAME_SIZE_ERROR
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    /// REFUSED_STREAM
    pub const REFUSED_STREAM: u32 = 0x7;
    /// CANCEL
    pub const CANCEL: u32 = 0x8;
    /// COMPRESSION_ERROR
    pub const COMPRESSION_ERROR: u32 = 0x9;
    /// ENHANCE_YOUR_CALM
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
}

/// Setting identifiers.
pub mod setting {
    /// SETTINGS_HEADER_TABLE_SIZE
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    /// SETTINGS_ENABLE_PUSH
    pub const ENABLE_PUSH: u16 = 0x2;
    /// SETTINGS_MAX_CONCURRENT_STREAMS
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    /// SETTINGS_INITIAL_WINDOW_SIZE
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    /// SETTINGS_MAX_FRAME_SIZE
    pub const MAX_FRAME_SIZE: u16 = 0x5;
}

/// A frame read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream id.
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// Whether `flag` is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The error code of a RST_STREAM or GOAWAY.
    pub fn error_code(&self) -> u32 {
        let at = if self.kind == kind::GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }

    /// The last stream id of a GOAWAY.
    pub fn last_stream(&self) -> u32 {
        u32::from_be_bytes(self.payload[..4].try_into().unwrap()) & 0x7fff_ffff
    }
}

/// What reading the next frame gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A frame.
    Frame(Frame),
    /// The server closed the connection (EOF or reset).
    Closed,
    /// Nothing within the read timeout.
    Timeout,
}

/// A response read off one stream.
#[derive(Debug, Clone, Default)]
pub struct H2Response {
    /// `:status`.
    pub status: u16,
    /// The other fields.
    pub headers: Vec<(String, String)>,
    /// DATA payloads.
    pub body: Vec<u8>,
}

impl H2Response {
    /// The first value of field `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Appends an HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn put_int(out: &mut Vec<u8>, mut value: usize, n: u8, first: u8) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// An HPACK block of literal fields without indexing (names and values
/// sent as given, no Huffman coding).
pub fn literal_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        put_int(&mut out, name.len(), 7, 0);
        out.extend_from_slice(name.as_bytes());
        put_int(&mut out, value.len(), 7, 0);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The pseudo-headers of `GET path` over http.
pub fn get_fields(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
    ]
}

/// A raw HTTP/2 connection over plaintext (h2c, prior knowledge).
pub struct H2Client {
    sock: TcpStream,
    buf: Vec<u8>,
    decoder: loona_hpack::Decoder<'static>,
    /// SETTINGS the server sent first.
    pub server_settings: Vec<(u16, u32)>,
}

impl std::fmt::Debug for H2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Client").finish_non_exhaustive()
    }
}

impl H2Client {
    /// Connects without sending anything.
    pub fn connect_raw(port: u16) -> io::Result<H2Client> {
        let sock = TcpStream::connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        sock.set_nodelay(true)?;
        Ok(H2Client {
            sock,
            buf: Vec::new(),
            decoder: loona_hpack::Decoder::new(),
            server_settings: Vec::new(),
        })
    }

    /// Connects, sends the preface with `settings`, reads the server's
    /// SETTINGS and acknowledges them.
    pub fn connect_with(port: u16, settings: &[(u16, u32)]) -> io::Result<H2Client> {
        let mut client = H2Client::connect_raw(port)?;
        client.write(PREFACE)?;
        client.settings(settings)?;
        loop {
            match client.read_event()? {
                Event::Frame(f) if f.kind == kind::SETTINGS && !f.has(flag::ACK) => {
                    client.server_settings = f
                        .payload
                        .chunks_exact(6)
                        .map(|c| {
                            (
                                u16::from_be_bytes([c[0], c[1]]),
                                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                            )
                        })
                        .collect();
                    client.frame(kind::SETTINGS, flag::ACK, 0, &[])?;
                    return Ok(client);
                }
                Event::Frame(_) => {}
                other => return Err(io::Error::other(format!("no server SETTINGS: {other:?}"))),
            }
        }
    }

    /// [`H2Client::connect_with`] and no settings.
    pub fn connect(port: u16) -> io::Result<H2Client> {
        H2Client::connect_with(port, &[])
    }

    /// Sets how long [`H2Client::read_event`] waits.
    pub fn set_read_timeout(&self, timeout: Duration) {
        let _ = self.sock.set_read_timeout(Some(timeout));
    }

    /// A second handle on the connection, for writing from another
    /// thread (reads stay with this one).
    pub fn try_clone(&self) -> io::Result<H2Client> {
        Ok(H2Client {
            sock: self.sock.try_clone()?,
            buf: Vec::new(),
            decoder: loona_hpack::Decoder::new(),
            server_settings: Vec::new(),
        })
    }

    /// The socket, for raw reads.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    /// Writes raw bytes.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// Writes one frame.
    pub fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> io::Result<()> {
        self.write(&encode_frame(kind, flags, stream, payload))
    }

    /// Writes a SETTINGS frame.
    pub fn settings(&mut self, values: &[(u16, u32)]) -> io::Result<()> {
        let mut payload = Vec::new();
        for (id, value) in values {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        self.frame(kind::SETTINGS, 0, 0, &payload)
    }

    /// Writes HEADERS with a literal block of `fields` (END_HEADERS set).
    pub fn headers(
        &mut self,
        stream: u32,
        fields: &[(&str, &str)],
        end_stream: bool,
    ) -> io::Result<()> {
        let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        self.frame(kind::HEADERS, flags, stream, &literal_block(fields))
    }

    /// Writes WINDOW_UPDATE.
    pub fn window_update(&mut self, stream: u32, increment: u32) -> io::Result<()> {
        self.frame(kind::WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
    }

    /// Reads the next frame.
    pub fn read_event(&mut self) -> io::Result<Event> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let frame = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap())
                            & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return Ok(Event::Frame(frame));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.sock.read(&mut chunk) {
                Ok(0) => return Ok(Event::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Ok(Event::Timeout)
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(Event::Closed),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads frames until one matches `want` (skipping others), within
    /// `within`; the frame, or what came instead (closed, timeout).
    pub fn wait_for(
        &mut self,
        within: Duration,
        want: impl Fn(&Frame) -> bool,
    ) -> Result<Frame, Event> {
        let deadline = Instant::now() + within;
        loop {
            if Instant::now() >= deadline {
                return Err(Event::Timeout);
            }
            match self.read_event() {
                Ok(Event::Frame(f)) if want(&f) => return Ok(f),
                Ok(Event::Frame(f)) => self.absorb(&f),
                Ok(Event::Timeout) => continue,
                Ok(other) => return Err(other),
                Err(_) => return Err(Event::Closed),
            }
        }
    }

    /// Keeps the HPACK decoder in step with a frame skipped over.
    fn absorb(&mut self, f: &Frame) {
        if f.kind == kind::HEADERS || f.kind == kind::CONTINUATION {
            let _ = self.decoder.decode(&f.payload);
        }
    }

    /// Expects a connection error: GOAWAY with `code`, then the close.
    /// Returns the GOAWAY.
    pub fn expect_goaway(&mut self, code: u32) -> Frame {
        let goaway = self
            .wait_for(Duration::from_secs(5), |f| f.kind == kind::GOAWAY)
            .unwrap_or_else(|e| panic!("expected GOAWAY {code:#x}, got {e:?}"));
        assert_eq!(goaway.error_code(), code, "GOAWAY code");
        self.expect_closed();
        goaway
    }

    /// Expects the server to close the connection (after anything else).
    pub fn expect_closed(&mut self) {
        match self.wait_for(Duration::from_secs(5), |_| false) {
            Err(Event::Closed) => {}
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }

    /// Expects RST_STREAM with `code` on `stream`.
    pub fn expect_rst(&mut self, stream: u32, code: u32) {
        let rst = self
            .wait_for(Duration::from_secs(5), |f| {
                (f.kind == kind::RST_STREAM && f.stream == stream) || f.kind == kind::GOAWAY
            })
            .unwrap_or_else(|e| panic!("expected RST_STREAM {code:#x} on {stream}, got {e:?}"));
        assert_eq!(
            rst.kind,
            kind::RST_STREAM,
            "expected a stream error, got {rst:?}"
        );
        assert_eq!(rst.error_code(), code, "RST_STREAM code");
    }

    /// Reads the response on `stream` (HEADERS, DATA until END_STREAM),
    /// giving back the window of what it reads.
    pub fn response(&mut self, stream: u32) -> Result<H2Response, Event> {
        let mut all = self.responses(&[stream])?;
        Ok(all.remove(0))
    }

    /// Reads the responses of `streams`, in whatever order their frames
    /// come; returned in the order of `streams`.
    pub fn responses(&mut self, streams: &[u32]) -> Result<Vec<H2Response>, Event> {
        let mut responses = vec![H2Response::default(); streams.len()];
        let mut done = vec![false; streams.len()];
        let mut block = Vec::new();
        while done.iter().any(|d| !d) {
            let f = self.wait_for(Duration::from_secs(10), |f| {
                streams.contains(&f.stream) || f.kind == kind::GOAWAY
            })?;
            let at = streams.iter().position(|s| *s == f.stream);
            let Some(at) = at else {
                return Err(Event::Frame(f));
            };
            let response = &mut responses[at];
            match f.kind {
                kind::HEADERS | kind::CONTINUATION => {
                    block.extend_from_slice(&f.payload);
                    if f.has(flag::END_HEADERS) {
                        let fields = self.decoder.decode(&block).expect("server HPACK");
                        block.clear();
                        for (n, v) in fields {
                            let n = String::from_utf8(n).unwrap();
                            let v = String::from_utf8(v).unwrap();
                            if n == ":status" {
                                response.status = v.parse().unwrap();
                            } else {
                                response.headers.push((n, v));
                            }
                        }
                    }
                }
                kind::DATA => {
                    response.body.extend_from_slice(&f.payload);
                    if !f.payload.is_empty() {
                        let n = f.payload.len() as u32;
                        let _ = self.window_update(0, n);
                        if !f.has(flag::END_STREAM) {
                            let _ = self.window_update(f.stream, n);
                        }
                    }
                }
                kind::RST_STREAM => return Err(Event::Frame(f)),
                _ => {}
            }
            if f.has(flag::END_STREAM) && (f.kind == kind::DATA || f.kind == kind::HEADERS) {
                done[at] = true;
            }
        }
        Ok(responses)
    }

    /// `GET path` on `stream` and its response.
    pub fn get(&mut self, stream: u32, path: &str) -> Result<H2Response, Event> {
        self.headers(stream, &get_fields(path), true)
            .map_err(|_| Event::Closed)?;
        self.response(stream)
    }

    /// Sends a PING and waits for its ACK: the server has processed
    /// everything sent before.
    pub fn ping_pong(&mut self) -> Result<(), Event> {
        let payload = *b"pistachi";
        self.frame(kind::PING, 0, 0, &payload)
            .map_err(|_| Event::Closed)?;
        self.wait_for(Duration::from_secs(5), |f| {
            f.kind == kind::PING && f.has(flag::ACK) && f.payload == payload
        })
        .map(|_| ())
    }
}

/// A frame's bytes.
pub fn encode_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}
