//! The one HTTP/1.1 client of the test suite: [`Connection`], a keep-alive
//! connection over any byte stream that writes exactly what it is given and
//! reads responses of every framing (`Content-Length`, chunked with
//! trailers, close-delimited, and the bodiless answers to `HEAD`, 1xx, 204
//! and 304), byte-exact: what follows a response stays buffered for the
//! next one, so a test can check that nothing does.
//!
//! [`TlsClient`] (OpenSSL, verifying the server against `ca.pem` as
//! `localhost`), [`PlainClient`] (plain TCP) and a connection over a
//! [`Stream`] (either) are the usual kinds; [`AnyClient`] picks one at run
//! time. [`Connection::request`] sends `GET {path} HTTP/1.1` with
//! `Host: localhost`; [`TlsClient::connect_to`] reaches any [`Target`]
//! (address, trust, server name, `Host` header, timeouts) instead of the
//! loopback test server. Socket timeouts are [`IO_TIMEOUT`]; a connection the
//! server closes before the first byte of a response surfaces as an error
//! whose message starts with `empty reply from server`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use openssl::ssl::{
    HandshakeError, SslConnector, SslConnectorBuilder, SslMethod, SslStream, SslVerifyMode,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;
use socket2::SockRef;

use crate::{certs, HELLO_BODY, IO_TIMEOUT};

/// Timeout of the TCP connect to the loopback server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest response head the clients accept.
const MAX_HEAD: usize = 64 * 1024;

/// A parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, e.g. `200`.
    pub status: u16,
    /// Header fields in the order received, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, chunked coding removed (empty where the response has none
    /// by definition).
    pub body: Vec<u8>,
    /// The raw head (status line and header section), for failure messages.
    pub head: String,
    /// How the body was delimited.
    pub framing: Framing,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
}

/// How a response body was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body by definition (the answer to `HEAD`, 1xx, 204, 304), or only
    /// the head was read.
    None,
    /// `Content-Length`.
    Length,
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body ended when the server closed.
    Close,
}

impl Response {
    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Connection` field, in lower case.
    pub fn connection(&self) -> Option<String> {
        self.header("connection").map(str::to_ascii_lowercase)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts this is the hello server's answer: `200` and `Hello, World!`.
    /// `context` names the request in the failure message.
    #[track_caller]
    pub fn assert_hello(&self, context: &str) {
        assert_eq!(
            self.status,
            200,
            "{context}: status (body {:?})",
            self.text()
        );
        assert_eq!(self.text(), HELLO_BODY, "{context}: body");
    }
}

/// The loopback address of `port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Connects a blocking TCP socket to `127.0.0.1:port` with no Nagle delay
/// and [`IO_TIMEOUT`] read and write timeouts.
pub fn connect_tcp(port: u16) -> io::Result<TcpStream> {
    connect_tcp_to(loopback(port), IO_TIMEOUT)
}

/// Connects a blocking TCP socket to `addr` (within [`CONNECT_TIMEOUT`], or
/// `timeout` if shorter) with no Nagle delay and `timeout` as its read and
/// write timeouts.
pub fn connect_tcp_to(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT.min(timeout))?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    Ok(tcp)
}

/// Where a client connects and how it talks to the server there.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// The TLS client configuration (trust, verification).
    pub connector: SslConnector,
    /// The name sent in SNI and, if the connector verifies, checked against
    /// the server certificate.
    pub server_name: String,
    /// The `Host` header of every request.
    pub host_header: String,
    /// Read and write timeout of every socket (and bound of its connect).
    pub timeout: Duration,
}

impl Target {
    /// The loopback test server on `port`, as [`TlsClient::connect`] reaches
    /// it: [`tls_connector`], `localhost`, [`IO_TIMEOUT`].
    pub fn loopback(port: u16) -> io::Result<Target> {
        Ok(Target {
            addr: loopback(port),
            connector: tls_connector()?,
            server_name: "localhost".to_owned(),
            host_header: "localhost".to_owned(),
            timeout: IO_TIMEOUT,
        })
    }

    /// A TCP connection to [`Target::addr`] (see [`connect_tcp_to`]).
    pub fn connect_tcp(&self) -> io::Result<TcpStream> {
        connect_tcp_to(self.addr, self.timeout)
    }
}

/// The ALPN wire format of `protocols` (each name prefixed by its length),
/// for `SslConnectorBuilder::set_alpn_protos`.
pub fn alpn_wire(protocols: &[&str]) -> Vec<u8> {
    let mut wire = Vec::new();
    for p in protocols {
        wire.push(u8::try_from(p.len()).expect("an ALPN name is at most 255 bytes"));
        wire.extend_from_slice(p.as_bytes());
    }
    wire
}

/// An OpenSSL client connector builder that trusts only `ca.pem` (no system
/// roots) and verifies the peer (chain and host name). Callers may adjust it
/// further.
pub fn tls_connector_builder() -> io::Result<SslConnectorBuilder> {
    tls_connector_builder_trusting(&certs::ca_pem())
}

/// An OpenSSL client connector builder that trusts only the certificates in
/// the PEM file `ca` (no system roots) and verifies the peer (chain and host
/// name).
pub fn tls_connector_builder_trusting(ca: &std::path::Path) -> io::Result<SslConnectorBuilder> {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(io::Error::other)?;
    let pem = std::fs::read(ca)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", ca.display())))?;
    let cas = X509::stack_from_pem(&pem).map_err(io::Error::other)?;
    if cas.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no PEM certificate in {}", ca.display()),
        ));
    }
    let mut store = X509StoreBuilder::new().map_err(io::Error::other)?;
    for ca in cas {
        store.add_cert(ca).map_err(io::Error::other)?;
    }
    // Replaces the store holding the system roots.
    builder.set_cert_store(store.build());
    builder.set_verify(SslVerifyMode::PEER);
    Ok(builder)
}

/// The connector [`TlsClient::connect`] uses: [`tls_connector_builder`],
/// built once per process.
pub fn tls_connector() -> io::Result<SslConnector> {
    static CONNECTOR: OnceLock<SslConnector> = OnceLock::new();
    if let Some(connector) = CONNECTOR.get() {
        return Ok(connector.clone());
    }
    let built = tls_connector_builder()?.build();
    Ok(CONNECTOR.get_or_init(|| built).clone())
}

/// Shuts down the sending half of `tcp` (FIN) and reads until the server
/// closes its side, discarding what arrives. Returns `true` if the server
/// closed (EOF or reset) within `timeout`, `false` if it was still open.
pub fn fin_and_wait_for_close(tcp: &TcpStream, timeout: Duration) -> bool {
    // The socket may already be shut down or reset; waiting tells the rest.
    let _ = tcp.shutdown(Shutdown::Write);
    wait_for_close(tcp, timeout)
}

/// Reads from `tcp` until the server closes it, discarding what arrives.
/// Returns `true` if the server closed (EOF or reset) within `timeout`.
pub fn wait_for_close(mut tcp: &TcpStream, timeout: Duration) -> bool {
    if tcp.set_read_timeout(Some(timeout)).is_err() {
        return true;
    }
    read_until_closed(&mut tcp)
}

/// Reads `stream` until the server ends it, discarding what arrives: `true`
/// at EOF (for TLS: close_notify or EOF) or a reset, `false` when a read
/// times out first (set the timeout on the socket before calling).
pub fn read_until_closed(stream: &mut impl Read) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match read_once(stream, &mut buf) {
            ReadOutcome::Data(_) => {}
            ReadOutcome::Closed => return true,
            ReadOutcome::TimedOut => return false,
        }
    }
}

/// Reads everything until the server closes the connection (EOF or
/// reset) and returns it. Any other error (such as the read timeout the
/// caller set running out while the server keeps the connection open)
/// panics, naming how much had arrived.
pub fn read_to_close(stream: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!(
                "after {} bytes: {e} (the server kept the connection open)",
                out.len()
            ),
        }
    }
}

/// Makes the next close of `tcp` abortive: `SO_LINGER` 0, so closing sends RST.
pub fn set_reset_on_close(tcp: &TcpStream) -> io::Result<()> {
    SockRef::from(tcp).set_linger(Some(Duration::ZERO))
}

/// Closes `tcp` with an RST instead of a FIN.
pub fn reset(tcp: TcpStream) -> io::Result<()> {
    set_reset_on_close(&tcp)?;
    drop(tcp);
    Ok(())
}

/// A request as written on the wire, built field by field:
/// `RequestBuilder::get("/x").close().to_bytes()` is
/// `GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`.
///
/// It writes exactly what it is told, in order (no validation), so tests can
/// build odd requests too; byte-level malformations are written by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBuilder {
    method: String,
    target: String,
    version: String,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RequestBuilder {
    /// `{method} {target} HTTP/1.1` with `Host: localhost`.
    pub fn new(method: &str, target: &str) -> RequestBuilder {
        RequestBuilder {
            method: method.to_owned(),
            target: target.to_owned(),
            version: "HTTP/1.1".to_owned(),
            fields: vec![("Host".to_owned(), "localhost".to_owned())],
            body: Vec::new(),
        }
    }

    /// `GET {target} HTTP/1.1` with `Host: localhost`.
    pub fn get(target: &str) -> RequestBuilder {
        RequestBuilder::new("GET", target)
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Another version than `HTTP/1.1` (e.g. `HTTP/1.0`).
    pub fn version(mut self, version: &str) -> RequestBuilder {
        self.version = version.to_owned();
        self
    }

    /// Appends the field `name: value`.
    pub fn header(mut self, name: &str, value: &str) -> RequestBuilder {
        self.fields.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Replaces the `Host` field's value.
    pub fn host(mut self, host: &str) -> RequestBuilder {
        if let Some((_, value)) = self.fields.iter_mut().find(|(n, _)| n == "Host") {
            host.clone_into(value);
        }
        self
    }

    /// Appends `Connection: close`.
    pub fn close(self) -> RequestBuilder {
        self.header("Connection", "close")
    }

    /// Sets the body and appends its `Content-Length`.
    pub fn body(mut self, body: &[u8]) -> RequestBuilder {
        let len = body.len().to_string();
        self.body = body.to_vec();
        self.header("Content-Length", &len)
    }

    /// Appends the request to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let line = format!("{} {} {}\r\n", self.method, self.target, self.version);
        out.extend_from_slice(line.as_bytes());
        for (name, value) in &self.fields {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }

    /// The request's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

/// The bytes of `GET {path} HTTP/1.1` with `Host: localhost`.
pub fn get_request(path: &str) -> Vec<u8> {
    RequestBuilder::get(path).to_bytes()
}

/// What one read of a socket told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes arrived (never 0).
    Data(usize),
    /// The peer ended the stream: EOF, a reset, or (TLS) any error.
    Closed,
    /// The socket's read timeout ran out first.
    TimedOut,
}

/// One read of `stream` into `buf`, retried on `EINTR` and classified.
pub fn read_once(stream: &mut impl Read, buf: &mut [u8]) -> ReadOutcome {
    loop {
        match stream.read(buf) {
            Ok(0) => return ReadOutcome::Closed,
            Ok(n) => return ReadOutcome::Data(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return ReadOutcome::TimedOut,
            Err(_) => return ReadOutcome::Closed,
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A stream whose read timeout can be set: the socket under it.
pub trait ReadTimeout {
    /// Sets the read timeout of the underlying socket.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl ReadTimeout for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

impl ReadTimeout for UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
}

impl ReadTimeout for SplitTcp {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(timeout)
    }
}

impl<S: ReadTimeout> ReadTimeout for SslStream<S> {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.get_ref().set_read_timeout(timeout)
    }
}

impl<S: ReadTimeout + ?Sized> ReadTimeout for &mut S {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }
}

/// A plain or TLS (verified as `localhost`) TCP stream to the test server.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// OpenSSL over TCP.
    Tls(Box<SslStream<TcpStream>>),
}

impl Stream {
    /// Connects to `127.0.0.1:port`, with TLS ([`tls_connector`]) if `tls`.
    pub fn connect(port: u16, tls: bool) -> io::Result<Stream> {
        if tls {
            Stream::connect_with(port, Some(&tls_connector()?))
        } else {
            Stream::connect_with(port, None)
        }
    }

    /// Connects to `127.0.0.1:port`, over TLS when given a connector.
    pub fn connect_with(port: u16, tls: Option<&SslConnector>) -> io::Result<Stream> {
        let tcp = connect_tcp(port)?;
        Ok(match tls {
            Some(connector) => Stream::Tls(Box::new(
                connector
                    .connect("localhost", tcp)
                    .map_err(|e| io::Error::other(format!("TLS handshake: {e}")))?,
            )),
            None => Stream::Plain(tcp),
        })
    }

    /// The TCP socket.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(ssl) => ssl.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl ReadTimeout for Stream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }
}

/// How [`Connection::read_response_paced`] reads: `slow_reads` reads of at
/// most `piece` bytes, each followed by `pause`, then reads of up to 64 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Number of small, slow reads.
    pub slow_reads: usize,
    /// Most bytes a slow read takes.
    pub piece: usize,
    /// Pause after each slow read.
    pub pause: Duration,
}

impl Pace {
    /// Reads as fast as the bytes come.
    pub const FAST: Pace = Pace {
        slow_reads: 0,
        piece: 0,
        pause: Duration::ZERO,
    };
}

/// A check run on every response head a [`Connection`] reads; its error
/// becomes the read's error.
pub type HeadCheck = fn(&Response) -> io::Result<()>;

/// One HTTP/1.1 connection over any byte stream: writes exactly what it is
/// given and reads responses of every framing, keeping what arrives past a
/// response for the next one (so a test can check that nothing follows).
///
/// The clients of this crate are all this type: [`PlainClient`],
/// [`TlsClient`], or one over a [`Stream`], a `UnixStream` or a borrowed
/// stream.
pub struct Connection<S> {
    stream: S,
    /// Bytes read past the end of the previous response.
    buf: Vec<u8>,
    check: Option<HeadCheck>,
    pace: Pace,
    /// Where each read lands before it joins `buf`.
    chunk: Box<[u8]>,
    /// The `Host` field of [`Connection::request`]'s requests.
    host: String,
}

impl<S: fmt::Debug> fmt::Debug for Connection<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("stream", &self.stream)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl<S> Connection<S> {
    /// A connection over `stream`.
    pub fn new(stream: S) -> Self {
        Connection {
            stream,
            buf: Vec::new(),
            check: None,
            pace: Pace::FAST,
            chunk: vec![0; 64 * 1024].into_boxed_slice(),
            host: "localhost".to_owned(),
        }
    }

    /// Runs `check` on every response head read from now on.
    pub fn check_heads(mut self, check: HeadCheck) -> Self {
        self.check = Some(check);
        self
    }

    /// The bytes read but not yet consumed by a response.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream, mutably (bytes written to it bypass nothing: there is no
    /// write buffer).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Gives up the connection, returning its stream (buffered bytes are
    /// dropped).
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S: Read + Write> Connection<S> {
    /// Sends `GET {path}` (with `Host: localhost`, or the [`Target`]'s
    /// `Host` for [`TlsClient::connect_to`]) and reads the response.
    pub fn request(&mut self, path: &str) -> io::Result<Response> {
        self.write_raw(&RequestBuilder::get(path).host(&self.host).to_bytes())?;
        self.read_response()
    }

    /// Writes `bytes` as they are (over TLS: as application data).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// One read into the buffer; `Ok(0)` at end of stream.
    pub fn fill(&mut self) -> io::Result<usize> {
        let slow = self.pace.slow_reads > 0;
        let max = if slow {
            self.pace.piece.clamp(1, self.chunk.len())
        } else {
            self.chunk.len()
        };
        let n = loop {
            match self.stream.read(&mut self.chunk[..max]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        self.buf.extend_from_slice(&self.chunk[..n]);
        if slow {
            self.pace.slow_reads -= 1;
            thread::sleep(self.pace.pause);
        }
        Ok(n)
    }

    /// Reads until the buffer holds at least `n` bytes.
    pub fn fill_to(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed with {} of {n} bytes", self.buf.len()),
                ));
            }
        }
        Ok(())
    }

    /// Reads one response; a 1xx one is returned as it is.
    pub fn read_response(&mut self) -> io::Result<Response> {
        self.read_response_to(false)
    }

    /// Reads the response to a `HEAD` request: the head only.
    pub fn read_head_response(&mut self) -> io::Result<Response> {
        self.read_response_to(true)
    }

    /// Reads one response paced by `pace` (a slow reader).
    pub fn read_response_paced(&mut self, pace: Pace) -> io::Result<Response> {
        self.pace = pace;
        let response = self.read_response_to(false);
        self.pace = Pace::FAST;
        response
    }

    /// Reads one response. For the answer to a `HEAD` request
    /// (`head_request`), and for 1xx, 204 and 304, no body follows the head;
    /// otherwise the body is delimited by `Transfer-Encoding: chunked`
    /// (trailers kept), `Content-Length`, or the server closing.
    pub fn read_response_to(&mut self, head_request: bool) -> io::Result<Response> {
        let mut resp = self.read_head()?;
        let status = resp.status;
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        if let Some(te) = resp.header("transfer-encoding") {
            if !te.eq_ignore_ascii_case("chunked") {
                return Err(invalid(&format!("unexpected Transfer-Encoding {te:?}")));
            }
            resp.framing = Framing::Chunked;
            self.read_chunked(&mut resp)?;
        } else if let Some(value) = resp.header("content-length") {
            let len = value
                .parse::<usize>()
                .map_err(|_| invalid(&format!("bad Content-Length {value:?}")))?;
            resp.framing = Framing::Length;
            resp.body = self.read_body(len)?;
        } else {
            resp.framing = Framing::Close;
            resp.body = self.read_to_eof()?;
        }
        Ok(resp)
    }

    /// Reads a status line and header section (nothing after it). A
    /// connection that ends before the first byte is an error whose message
    /// starts with `empty reply from server`.
    pub fn read_head(&mut self) -> io::Result<Response> {
        let (end, status, headers) = loop {
            if let Some(parsed) = parse_head(&self.buf)? {
                break parsed;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("response head too large"));
            }
            let nothing_yet = self.buf.is_empty();
            match self.fill() {
                Ok(0) if nothing_yet => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "empty reply from server (connection closed)",
                    ))
                }
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed in the middle of the response head; got {:?}",
                            String::from_utf8_lossy(&self.buf)
                        ),
                    ))
                }
                Ok(_) => {}
                Err(e) if nothing_yet => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("empty reply from server ({})", describe(&e)),
                    ))
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("reading the response head: {}", describe(&e)),
                    ))
                }
            }
        };
        let head =
            String::from_utf8(self.take(end)).map_err(|_| invalid("response head is not UTF-8"))?;
        let resp = Response {
            status,
            headers,
            body: Vec::new(),
            head,
            framing: Framing::None,
            trailers: Vec::new(),
        };
        if let Some(check) = self.check {
            check(&resp)?;
        }
        Ok(resp)
    }

    fn read_body(&mut self, len: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < len {
            match self.fill() {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed after {} of {len} body bytes",
                            self.buf.len()
                        ),
                    ))
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("reading the response body: {}", describe(&e)),
                    ))
                }
            }
        }
        Ok(self.take(len))
    }

    /// Removes the first `n` buffered bytes and returns them.
    fn take(&mut self, n: usize) -> Vec<u8> {
        let taken = self.buf[..n].to_vec();
        self.buf.drain(..n);
        taken
    }

    /// A close-delimited body: everything until the server closes (EOF, a
    /// reset, or the end of a TLS session), within the socket's timeout.
    fn read_to_eof(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    return Err(invalid(&format!(
                        "close-delimited body not closed in time after {} bytes",
                        self.buf.len()
                    )))
                }
                Err(_) => break,
            }
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// Decodes a chunked body (strict CRLFs) and its trailer fields.
    fn read_chunked(&mut self, resp: &mut Response) -> io::Result<()> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.buf.drain(..used);
                        break size;
                    }
                    Ok(httparse::Status::Partial) => self.fill_chunked()?,
                    Err(_) => {
                        let line = self.buf.split(|&b| b == b'\n').next().unwrap_or_default();
                        return Err(invalid(&format!(
                            "bad chunk size line {:?}",
                            String::from_utf8_lossy(line)
                        )));
                    }
                }
            };
            if size == 0 {
                loop {
                    let line = self.read_line()?;
                    if line.is_empty() {
                        return Ok(());
                    }
                    let (name, value) = line
                        .split_once(':')
                        .ok_or_else(|| invalid(&format!("bad trailer line {line:?}")))?;
                    resp.trailers
                        .push((name.to_owned(), value.trim().to_owned()));
                }
            }
            let size = usize::try_from(size).map_err(|_| invalid("chunk too large"))?;
            while self.buf.len() < size + 2 {
                self.fill_chunked()?;
            }
            resp.body.extend(self.buf.drain(..size));
            if self.buf.drain(..2).as_slice() != b"\r\n" {
                return Err(invalid("chunk data not followed by CRLF"));
            }
        }
    }

    fn fill_chunked(&mut self) -> io::Result<()> {
        if self.fill()? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a chunked body",
            ));
        }
        Ok(())
    }

    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            self.fill_chunked()?;
        }
    }
    /// Reads until the stream ends cleanly (`Ok(0)`: EOF, or for TLS
    /// `close_notify`) like [`Read::read_to_end`], returning everything after
    /// the last response; any error (a timeout, a TLS session cut without
    /// `close_notify`) is returned.
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        while self.fill()? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }
}

impl<S: Read + Write + ReadTimeout> Connection<S> {
    /// Reads until the server closes (EOF, reset, or the end of a TLS
    /// session) or `wait` passes. `Ok(bytes)` with everything after the last
    /// response if it closed in time, `Err(bytes)` if it was still open.
    /// The read timeout is [`IO_TIMEOUT`] again afterwards.
    pub fn read_to_close(&mut self, wait: Duration) -> Result<Vec<u8>, Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut chunk = [0u8; 8192];
        let closed = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                break false;
            }
            match read_once(&mut self.stream, &mut chunk) {
                ReadOutcome::Data(n) => self.buf.extend_from_slice(&chunk[..n]),
                ReadOutcome::Closed => break true,
                ReadOutcome::TimedOut => {}
            }
        };
        let _ = self.stream.set_read_timeout(Some(IO_TIMEOUT));
        let bytes = std::mem::take(&mut self.buf);
        if closed {
            Ok(bytes)
        } else {
            Err(bytes)
        }
    }

    /// Asserts the server closes the connection within 3 s, with nothing
    /// more sent.
    #[track_caller]
    pub fn assert_closed(&mut self, what: &str) {
        match self.read_to_close(Duration::from_secs(3)) {
            Ok(extra) => assert!(
                extra.is_empty(),
                "{what}: bytes after the last response: {:?}",
                String::from_utf8_lossy(&extra)
            ),
            Err(extra) => panic!(
                "{what}: connection still open 3 s after the response (read {:?})",
                String::from_utf8_lossy(&extra)
            ),
        }
    }

    /// Asserts nothing arrives within `wait` (the connection stays open and
    /// silent).
    #[track_caller]
    pub fn assert_silent(&mut self, wait: Duration, what: &str) {
        let _ = self.stream.set_read_timeout(Some(wait));
        let got = self.fill();
        let _ = self.stream.set_read_timeout(Some(IO_TIMEOUT));
        match got {
            Err(e) if is_timeout(&e) => {}
            other => panic!(
                "{what}: expected silence, got {other:?} and {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }
}

fn describe(e: &io::Error) -> String {
    if is_timeout(e) {
        format!("timed out: {e}")
    } else {
        e.to_string()
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Header fields: names as sent, values trimmed.
type Fields = Vec<(String, String)>;

/// Parses the `HTTP/1.1` status line and header section at the start of
/// `buf` (httparse): its length, status and fields once complete, `None`
/// while more bytes are needed.
fn parse_head(buf: &[u8]) -> io::Result<Option<(usize, u16, Fields)>> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut fields);
    let bad = |what: String| invalid(&format!("{what} in {:?}", String::from_utf8_lossy(buf)));
    let end = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(end)) => end,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    if parsed.version != Some(1) {
        return Err(bad("bad status line".to_owned()));
    }
    let headers = parsed
        .headers
        .iter()
        .map(|field| {
            let value = std::str::from_utf8(field.value).unwrap_or_default();
            (field.name.to_owned(), value.trim().to_owned())
        })
        .collect();
    Ok(Some((end, parsed.code.unwrap_or_default(), headers)))
}

/// An HTTPS client on one keep-alive connection, verified against `ca.pem`.
///
/// Dropping it frees the OpenSSL session without sending `close_notify`
/// (`SSL_free` never sends it) and closes the socket: an abrupt close. Use
/// its `close` for a clean one.
pub type TlsClient = Connection<SslStream<SplitTcp>>;

/// The TCP stream under a [`TlsClient`]. It passes writes through, or, after
/// `split_records`, sends each write (one TLS record) in two TCP
/// segments [`SPLIT_PAUSE`] apart, the way a record cut by the network
/// arrives: the server then reads half a record and `SSL_read` must report
/// `WANT_READ`.
#[derive(Debug)]
pub struct SplitTcp {
    tcp: TcpStream,
    split: bool,
}

/// Pause between the two halves of a split record.
pub const SPLIT_PAUSE: Duration = Duration::from_millis(5);

impl Read for SplitTcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for SplitTcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.split || buf.len() < 2 {
            return self.tcp.write(buf);
        }
        let half = buf.len() / 2;
        self.tcp.write_all(&buf[..half])?;
        std::thread::sleep(SPLIT_PAUSE);
        self.tcp.write_all(&buf[half..])?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

impl Connection<SslStream<SplitTcp>> {
    /// Connects to `127.0.0.1:port` and completes the TLS handshake, verifying
    /// the server as `localhost`.
    pub fn connect(port: u16) -> io::Result<TlsClient> {
        TlsClient::connect_with(port, &tls_connector()?, "localhost")
    }

    /// Connects to `127.0.0.1:port` with `connector` and completes the TLS
    /// handshake, sending and verifying `server_name`.
    pub fn connect_with(
        port: u16,
        connector: &SslConnector,
        server_name: &str,
    ) -> io::Result<TlsClient> {
        TlsClient::handshake(connect_tcp(port)?, connector, server_name)
    }

    /// Connects to `target` and completes the TLS handshake with its
    /// connector and server name; requests carry its `Host` header.
    pub fn connect_to(target: &Target) -> io::Result<TlsClient> {
        let mut client = TlsClient::handshake(
            target.connect_tcp()?,
            &target.connector,
            &target.server_name,
        )?;
        client.host.clone_from(&target.host_header);
        Ok(client)
    }

    /// The TLS handshake over `tcp`; a failure keeps the I/O error's kind
    /// (a timeout stays a timeout).
    fn handshake(
        tcp: TcpStream,
        connector: &SslConnector,
        server_name: &str,
    ) -> io::Result<TlsClient> {
        let peer = tcp.peer_addr()?;
        let tcp = SplitTcp { tcp, split: false };
        let stream = connector.connect(server_name, tcp).map_err(|e| {
            let kind = match &e {
                HandshakeError::Failure(mid) | HandshakeError::WouldBlock(mid) => mid
                    .error()
                    .io_error()
                    .map_or(io::ErrorKind::Other, io::Error::kind),
                HandshakeError::SetupFailure(_) => io::ErrorKind::Other,
            };
            io::Error::new(kind, format!("TLS handshake with {peer}: {e}"))
        })?;
        Ok(Connection::new(stream))
    }

    /// From now on, sends every TLS record in two TCP segments a moment
    /// apart (see [`SplitTcp`]), so that the server's `SSL_read` sees half a
    /// record and returns `WANT_READ` before the rest arrives.
    pub fn split_records(mut self) -> TlsClient {
        self.stream.get_mut().split = true;
        self
    }

    /// The TCP socket under the TLS session.
    pub fn tcp(&self) -> &TcpStream {
        &self.stream.get_ref().tcp
    }

    /// The OpenSSL stream.
    pub fn ssl_stream(&mut self) -> &mut SslStream<SplitTcp> {
        &mut self.stream
    }

    /// Closes cleanly: sends `close_notify`, then closes the socket.
    pub fn close(mut self) -> io::Result<()> {
        self.stream
            .shutdown()
            .map_err(|e| io::Error::other(format!("sending close_notify: {e}")))?;
        let _ = self.tcp().shutdown(Shutdown::Both);
        Ok(())
    }

    /// Sends FIN without `close_notify` and frees the TLS session, returning
    /// the TCP socket (still open for reading, e.g. for [`wait_for_close`]).
    pub fn fin_without_close_notify(self) -> io::Result<TcpStream> {
        let tcp = self.tcp().try_clone()?;
        tcp.shutdown(Shutdown::Write)?;
        // Frees the session (SSL_free: no close_notify) and one of the two
        // descriptors; `tcp` keeps the socket open.
        drop(self);
        Ok(tcp)
    }

    /// Closes the connection with an RST, without `close_notify`.
    pub fn reset(self) -> io::Result<()> {
        set_reset_on_close(self.tcp())?;
        drop(self);
        Ok(())
    }
}

/// A plain HTTP client on one keep-alive connection.
pub type PlainClient = Connection<TcpStream>;

impl Connection<TcpStream> {
    /// Connects to `127.0.0.1:port`.
    pub fn connect(port: u16) -> io::Result<PlainClient> {
        Ok(Connection::new(connect_tcp(port)?))
    }

    /// The TCP socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.stream
    }

    /// Gives up the client, returning its socket.
    pub fn into_tcp(self) -> TcpStream {
        self.stream
    }

    /// Closes the connection with an RST.
    pub fn reset(self) -> io::Result<()> {
        reset(self.stream)
    }
}

/// A long-lived keep-alive client of either kind, for tests that run on both
/// TLS and plain servers.
#[derive(Debug)]
pub enum AnyClient {
    /// Over TLS.
    Tls(TlsClient),
    /// Over plain TCP.
    Plain(PlainClient),
}

impl AnyClient {
    /// Connects like [`AnyClient::connect`]; a TLS client then splits every
    /// record in two segments ([`TlsClient::split_records`]).
    pub fn connect_split(port: u16, tls: bool) -> io::Result<AnyClient> {
        Ok(match AnyClient::connect(port, tls)? {
            AnyClient::Tls(c) => AnyClient::Tls(c.split_records()),
            plain => plain,
        })
    }

    /// Connects to `127.0.0.1:port`, with TLS if `tls`.
    pub fn connect(port: u16, tls: bool) -> io::Result<AnyClient> {
        Ok(if tls {
            AnyClient::Tls(TlsClient::connect(port)?)
        } else {
            AnyClient::Plain(PlainClient::connect(port)?)
        })
    }

    /// Sends `GET {path}` and reads the response.
    pub fn request(&mut self, path: &str) -> io::Result<Response> {
        match self {
            AnyClient::Tls(c) => c.request(path),
            AnyClient::Plain(c) => c.request(path),
        }
    }

    /// Writes `bytes` as they are (several pipelined requests, say).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            AnyClient::Tls(c) => c.write_raw(bytes),
            AnyClient::Plain(c) => c.write_raw(bytes),
        }
    }

    /// Reads one response.
    pub fn read_response(&mut self) -> io::Result<Response> {
        match self {
            AnyClient::Tls(c) => c.read_response(),
            AnyClient::Plain(c) => c.read_response(),
        }
    }

    /// Reads the response to a `HEAD` request: the head only.
    pub fn read_head_response(&mut self) -> io::Result<Response> {
        match self {
            AnyClient::Tls(c) => c.read_head_response(),
            AnyClient::Plain(c) => c.read_head_response(),
        }
    }
}

/// One request on a fresh connection (TLS if `tls`), closed cleanly after.
pub fn get_once(port: u16, tls: bool, path: &str) -> io::Result<Response> {
    if tls {
        let mut client = TlsClient::connect(port)?;
        let response = client.request(path)?;
        client.close()?;
        Ok(response)
    } else {
        let mut client = PlainClient::connect(port)?;
        let response = client.request(path)?;
        let _ = client.tcp().shutdown(Shutdown::Both);
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A stream that reads from a fixed script and swallows writes.
    struct Scripted(Cursor<Vec<u8>>);

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // One byte at a time, to exercise the incremental paths.
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn conn(script: &str) -> Connection<Scripted> {
        Connection::new(Scripted(Cursor::new(script.as_bytes().to_vec())))
    }

    #[test]
    fn reads_two_keep_alive_responses() {
        let mut c = conn(
            "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!\
             HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\nX-A: b\r\n\r\nno",
        );
        c.request("/").unwrap().assert_hello("first");
        let second = c.request("/x").unwrap();
        assert_eq!(second.status, 404);
        assert_eq!(second.body, b"no");
        assert_eq!(second.header("x-a"), Some("b"));
    }

    #[test]
    fn closed_before_reply_is_empty_reply() {
        let err = conn("").request("/").unwrap_err();
        assert!(
            err.to_string().starts_with("empty reply from server"),
            "{err}"
        );
    }

    #[test]
    fn truncated_body_is_an_error() {
        let err = conn("HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello")
            .request("/")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn no_content_has_no_body() {
        let r = conn("HTTP/1.1 204 No Content\r\n\r\n")
            .request("/")
            .unwrap();
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
    }

    #[test]
    fn builds_requests() {
        assert_eq!(
            RequestBuilder::get("/x").close().to_bytes(),
            b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            RequestBuilder::new("POST", "/e")
                .version("HTTP/1.0")
                .header("Content-Type", "a/b")
                .body(b"hi")
                .to_bytes(),
            b"POST /e HTTP/1.0\r\nHost: localhost\r\nContent-Type: a/b\r\n\
              Content-Length: 2\r\n\r\nhi"
        );
    }

    #[test]
    fn chunked_with_trailers_then_the_next_response() {
        let mut c = conn(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
             5;ext=1\r\nHello\r\n8\r\n, World!\r\n0\r\nX-Sum: 7\r\n\r\n\
             HTTP/1.1 204 No Content\r\n\r\n",
        );
        let first = c.read_response().unwrap();
        first.assert_hello("chunked");
        assert_eq!(first.framing, Framing::Chunked);
        assert_eq!(first.trailers, [("X-Sum".to_owned(), "7".to_owned())]);
        assert_eq!(c.read_response().unwrap().status, 204);
        assert!(c.buffered().is_empty());
    }

    #[test]
    fn close_delimited_and_head_responses() {
        let mut c = conn(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n\
             HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end",
        );
        let head = c.read_head_response().unwrap();
        assert_eq!((head.framing, head.body.len()), (Framing::None, 0));
        let rest = c.read_response().unwrap();
        assert_eq!(rest.framing, Framing::Close);
        assert_eq!(rest.text(), "to the end");
        assert_eq!(rest.connection().as_deref(), Some("close"));
    }
}
