//! The benchmark's ceiling: a canned-response epoll loop that parses nothing.
//!
//! Each of `--threads` threads owns a `mio::Poll` and its own `SO_REUSEPORT`
//! listening socket on the same address (as nginx's workers accept for
//! themselves). A connection's input is only scanned for the blank line that
//! ends a request head (`\r\n\r\n`, tracked across reads); for each one the
//! same fixed `200 Hello, World!` answer is queued, and written with one
//! `send`/`SSL_write` per batch. No header is parsed, no date is formatted,
//! nothing is allocated per request: whatever a real server does on top of
//! this is the price of being an HTTP server. With `--tls-cert`/`--tls-key`
//! it does the same over OpenSSL (the same Mozilla-intermediate acceptor as
//! the hyper and actix peers, so the ciphers match), with non-blocking
//! handshakes.
//!
//! With `--parse` it is the benchmark's **floor** instead: the least an
//! HTTP/1.1 server has to do per request on top of the ceiling. Each head
//! is parsed with `httparse` (what pistachio parses with), the fields
//! pistachio's parser interprets are found by name (`Host`, exactly one in
//! HTTP/1.1; `Connection`; `Content-Length` and `Transfer-Encoding`, whose
//! requests it refuses, having no body handling), and the answer's head is
//! written per request with a `Date` (formatted once a second) and a
//! `Content-Length` (formatted by `itoa`), the fields pistachio's hello
//! answer has. A malformed head gets a `400` and the connection closes.
//! There is no request value, handler, router or middleware: the floor's
//! cost over the ceiling is what parsing and a correct head cost alone.
//!
//! Run with `cargo run --release --bin ceiling -- --addr 127.0.0.1:9080`
//! from `tests/bench` (add `--parse` for the floor).

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use openssl::ssl::{HandshakeError, MidHandshakeSslStream, Ssl, SslAcceptor, SslStream};
use pistachio_bench::{parse_args_from, ssl_acceptor, BACKLOG, BODY};
use slab::Slab;
use socket2::{Domain, Socket, Type};

/// The one answer, to every request.
const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
const END_OF_HEAD: &[u8] = b"\r\n\r\n";
const LISTENER: Token = Token(usize::MAX);
/// The floor's answer to a head it refuses.
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// The longest head the floor waits for.
const MAX_HEAD: usize = 8 * 1024;
/// Header fields parsed per head (as many as pistachio's default limit).
const MAX_FIELDS: usize = 64;

/// The `Date` value, formatted again when the second changes.
struct Date {
    second: u64,
    text: [u8; 29],
}

impl Date {
    fn new() -> Self {
        let mut date = Date {
            second: u64::MAX,
            text: [0; 29],
        };
        date.update();
        date
    }

    /// Reads the clock (once per event-loop iteration, as pistachio does).
    fn update(&mut self) {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            self.text
                .copy_from_slice(httpdate::fmt_http_date(now).as_bytes());
        }
    }
}

/// A connection's byte stream: plaintext, a TLS handshake in progress, or
/// an established TLS session.
enum Stream {
    Plain(TcpStream),
    Handshaking(MidHandshakeSslStream<TcpStream>),
    Tls(SslStream<TcpStream>),
    /// Transient, while a handshake step takes the stream by value.
    Gone,
}

impl Stream {
    fn io(&mut self) -> Option<&mut dyn ReadWrite> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(s) => Some(s),
            Stream::Handshaking(_) | Stream::Gone => None,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

struct Conn {
    stream: Stream,
    /// How many bytes of `END_OF_HEAD` the input so far ends with.
    matched: usize,
    /// Answers queued but not yet written (the peer's socket was full).
    out: Vec<u8>,
    /// The floor's unparsed input (the start of a head that arrived in
    /// pieces).
    inbuf: Vec<u8>,
    /// The floor answered its last request: close once it is written.
    last: bool,
}

enum Next {
    Keep,
    Close,
}

/// Whether the comma-separated `value` lists `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

impl Conn {
    /// Continues a TLS handshake; `Close` if it failed.
    fn handshake(&mut self) -> Next {
        if !matches!(self.stream, Stream::Handshaking(_)) {
            return Next::Keep;
        }
        let Stream::Handshaking(mid) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            unreachable!("checked above");
        };
        match mid.handshake() {
            Ok(tls) => self.stream = Stream::Tls(tls),
            Err(HandshakeError::WouldBlock(mid)) => self.stream = Stream::Handshaking(mid),
            Err(_) => return Next::Close,
        }
        Next::Keep
    }

    /// Counts the request heads that end in `data`.
    fn count_heads(&mut self, data: &[u8]) -> usize {
        let mut heads = 0;
        for &b in data {
            self.matched = if b == END_OF_HEAD[self.matched] {
                self.matched + 1
            } else if b == b'\r' {
                1
            } else {
                0
            };
            if self.matched == END_OF_HEAD.len() {
                heads += 1;
                self.matched = 0;
            }
        }
        heads
    }

    /// The floor: parses the complete heads in `data` (after what was
    /// left of earlier reads) and queues an answer to each.
    fn parse_heads(&mut self, data: &[u8], date: &Date) {
        let mut held = std::mem::take(&mut self.inbuf);
        let from_held = !held.is_empty();
        let mut input = if from_held {
            held.extend_from_slice(data);
            &held[..]
        } else {
            data
        };
        while !input.is_empty() && !self.last {
            let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
            let mut req = httparse::Request::new(&mut []);
            let n = match req.parse_with_uninit_headers(input, &mut fields) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if input.len() <= MAX_HEAD => break,
                Ok(httparse::Status::Partial) | Err(_) => {
                    self.refuse();
                    break;
                }
            };
            let (mut hosts, mut close, mut body) = (0, false, false);
            for field in req.headers.iter() {
                let name = field.name.as_bytes();
                match name.len() {
                    4 if name.eq_ignore_ascii_case(b"host") => hosts += 1,
                    10 if name.eq_ignore_ascii_case(b"connection") => {
                        close |= has_token(field.value, b"close")
                    }
                    14 if name.eq_ignore_ascii_case(b"content-length") => body = true,
                    17 if name.eq_ignore_ascii_case(b"transfer-encoding") => body = true,
                    _ => {}
                }
            }
            if body || hosts > 1 || (hosts == 0 && req.version == Some(1)) {
                self.refuse();
                break;
            }
            self.out.extend_from_slice(b"HTTP/1.1 200 OK\r\nDate: ");
            self.out.extend_from_slice(&date.text);
            self.out.extend_from_slice(b"\r\nContent-Length: ");
            self.out
                .extend_from_slice(itoa::Buffer::new().format(BODY.len()).as_bytes());
            if close || req.version == Some(0) {
                self.out.extend_from_slice(b"\r\nConnection: close");
                self.last = true;
            }
            self.out.extend_from_slice(b"\r\n\r\n");
            self.out.extend_from_slice(BODY.as_bytes());
            input = &input[n..];
        }
        let rest = input.len();
        if !self.last && rest > 0 {
            if from_held {
                let start = held.len() - rest;
                held.drain(..start);
            } else {
                held.extend_from_slice(&data[data.len() - rest..]);
            }
            self.inbuf = held;
        }
    }

    /// Answers `400` and stops reading (the floor's answer to a head it
    /// cannot or will not serve).
    fn refuse(&mut self) {
        self.out.extend_from_slice(BAD_REQUEST);
        self.last = true;
    }

    /// Reads everything there is, queues one answer per request head, and
    /// writes what it can.
    fn on_ready(&mut self, buf: &mut [u8], date: Option<&Date>) -> Next {
        if let Next::Close = self.handshake() {
            return Next::Close;
        }
        let mut heads = 0;
        while !self.last {
            let Some(io) = self.stream.io() else {
                return Next::Keep; // handshake still in progress
            };
            match io.read(buf) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    let short = n < buf.len();
                    match date {
                        Some(date) => self.parse_heads(&buf[..n], date),
                        None => heads += self.count_heads(&buf[..n]),
                    }
                    // A plaintext short read emptied the socket; TLS keeps
                    // reading until WANT_READ (OpenSSL may hold records).
                    if short && matches!(self.stream, Stream::Plain(_)) {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Next::Close,
            }
        }
        for _ in 0..heads {
            self.out.extend_from_slice(ANSWER);
        }
        match self.flush() {
            Next::Keep if self.last && self.out.is_empty() => Next::Close,
            next => next,
        }
    }

    fn flush(&mut self) -> Next {
        while !self.out.is_empty() {
            let Some(io) = self.stream.io() else {
                return Next::Keep;
            };
            match io.write(&self.out) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Next::Close,
            }
        }
        Next::Keep
    }
}

fn listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

fn event_loop(addr: SocketAddr, acceptor: Option<Arc<SslAcceptor>>, parse: bool) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = listener(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut date = parse.then(Date::new);
    loop {
        poll.poll(&mut events, None)?;
        if let Some(date) = &mut date {
            date.update();
        }
        for event in &events {
            if event.token() == LISTENER {
                loop {
                    let (mut tcp, _) = match listener.accept() {
                        Ok(accepted) => accepted,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => break, // EMFILE and friends: next edge
                    };
                    tcp.set_nodelay(true)?;
                    let entry = conns.vacant_entry();
                    poll.registry().register(
                        &mut tcp,
                        Token(entry.key()),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    let stream = match &acceptor {
                        None => Stream::Plain(tcp),
                        Some(acceptor) => {
                            let ssl = Ssl::new(acceptor.context()).map_err(io::Error::other)?;
                            match ssl.accept(tcp) {
                                Ok(tls) => Stream::Tls(tls),
                                Err(HandshakeError::WouldBlock(mid)) => Stream::Handshaking(mid),
                                Err(_) => continue,
                            }
                        }
                    };
                    entry.insert(Conn {
                        stream,
                        matched: 0,
                        out: Vec::new(),
                        inbuf: Vec::new(),
                        last: false,
                    });
                }
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if let Next::Close = conn.on_ready(&mut buf, date.as_ref()) {
                conns.remove(key); // dropping the stream closes the socket
            }
        }
    }
}

fn main() {
    let mut flags: Vec<String> = std::env::args().skip(1).collect();
    let parse = flags.iter().any(|f| f == "--parse");
    flags.retain(|f| f != "--parse");
    let args = parse_args_from("ceiling [--parse]", flags);
    let addr: SocketAddr = args.addr.parse().unwrap_or_else(|e| {
        eprintln!("ceiling: --addr {}: {e}", args.addr);
        std::process::exit(2)
    });
    let acceptor = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match ssl_acceptor(cert, key) {
            Ok(b) => Some(Arc::new(b.build())),
            Err(e) => {
                eprintln!("ceiling: TLS setup: {e}");
                std::process::exit(1)
            }
        },
        _ => None,
    };
    let threads: Vec<_> = (0..args.threads)
        .map(|i| {
            let acceptor = acceptor.clone();
            std::thread::Builder::new()
                .name(format!("ceiling-{i}"))
                .spawn(move || {
                    if let Err(e) = event_loop(addr, acceptor, parse) {
                        eprintln!("ceiling: worker {i}: {e}");
                        std::process::exit(1);
                    }
                })
                .expect("spawn worker")
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}
