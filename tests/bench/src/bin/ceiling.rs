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
//! Run with `cargo run --release --bin ceiling -- --addr 127.0.0.1:9080`
//! from `tests/bench`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use openssl::ssl::{HandshakeError, MidHandshakeSslStream, Ssl, SslAcceptor, SslStream};
use pistachio_bench::{parse_args, ssl_acceptor, BACKLOG};
use slab::Slab;
use socket2::{Domain, Socket, Type};

/// The one answer, to every request.
const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
const END_OF_HEAD: &[u8] = b"\r\n\r\n";
const LISTENER: Token = Token(usize::MAX);

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
}

enum Next {
    Keep,
    Close,
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

    /// Reads everything there is, queues one answer per request head, and
    /// writes what it can.
    fn on_ready(&mut self, buf: &mut [u8]) -> Next {
        if let Next::Close = self.handshake() {
            return Next::Close;
        }
        let mut heads = 0;
        loop {
            let Some(io) = self.stream.io() else {
                return Next::Keep; // handshake still in progress
            };
            match io.read(buf) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    let short = n < buf.len();
                    heads += self.count_heads(&buf[..n]);
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
        self.flush()
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

fn event_loop(addr: SocketAddr, acceptor: Option<Arc<SslAcceptor>>) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = listener(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        poll.poll(&mut events, None)?;
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
                    });
                }
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if let Next::Close = conn.on_ready(&mut buf) {
                conns.remove(key); // dropping the stream closes the socket
            }
        }
    }
}

fn main() {
    let args = parse_args("ceiling");
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
                    if let Err(e) = event_loop(addr, acceptor) {
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
