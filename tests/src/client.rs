//! Blocking HTTP/1.1 clients over one keep-alive connection: [`TlsClient`]
//! (OpenSSL, verifying the server against `ca.pem` as `localhost`) and
//! [`PlainClient`] (plain TCP).
//!
//! Both send `GET {path} HTTP/1.1` with `Host: localhost`, read the status
//! line and headers, then the body (exactly `Content-Length` bytes, or a
//! chunked body to its last chunk), leaving the connection ready for the
//! next request. [`TlsClient::connect_to`] reaches any [`Target`] (address,
//! trust, server name, `Host` header, timeouts) instead of the loopback
//! test server. Socket timeouts are
//! [`IO_TIMEOUT`]; a connection the server closes before
//! the first byte of a response surfaces as an error whose message starts with
//! `empty reply from server`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

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
    /// The body: exactly `Content-Length` bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
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

/// One HTTP/1.1 connection over any byte stream.
struct HttpConn<S> {
    stream: S,
    /// Bytes read past the end of the previous response.
    buf: Vec<u8>,
    /// The `Host` header of requests.
    host: String,
}

impl<S: Read + Write> HttpConn<S> {
    fn new(stream: S) -> Self {
        HttpConn {
            stream,
            buf: Vec::new(),
            host: "localhost".to_owned(),
        }
    }

    fn request(&mut self, path: &str) -> io::Result<Response> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.write_raw(req.as_bytes())?;
        self.read_response()
    }

    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads more bytes into `buf`; `Ok(0)` at end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn read_response(&mut self) -> io::Result<Response> {
        self.read_response_to(false)
    }

    /// Reads a response; for the answer to a `HEAD` request (`head_request`)
    /// no body follows whatever `Content-Length` says.
    fn read_response_to(&mut self, head_request: bool) -> io::Result<Response> {
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos + 4;
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
                        "connection closed in the middle of the response head",
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
        let (status, headers) = parse_head(&self.buf[..head_end])?;
        self.buf.drain(..head_end);

        let no_body =
            head_request || (100..200).contains(&status) || status == 204 || status == 304;
        let chunked = !no_body
            && headers.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case("transfer-encoding")
                    && v.rsplit(',').next().map(str::trim) == Some("chunked")
            });
        let body = if chunked {
            self.read_chunked_body()?
        } else {
            let len = if no_body {
                0
            } else {
                let value = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.as_str())
                    .ok_or_else(|| invalid("response without Content-Length"))?;
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| invalid(&format!("bad Content-Length {value:?}")))?
            };
            self.fill_to(len, |have| format!("{have} of {len} body bytes"))?;
            self.buf.drain(..len).collect()
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Reads until `buf` holds at least `len` bytes; `progress` describes
    /// how far it got (given the bytes buffered) in the error if the
    /// connection ends or fails first.
    fn fill_to(&mut self, len: usize, progress: impl Fn(usize) -> String) -> io::Result<()> {
        while self.buf.len() < len {
            match self.fill() {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection closed after {}", progress(self.buf.len())),
                    ))
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "reading the response body after {}: {}",
                            progress(self.buf.len()),
                            describe(&e)
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Reads one CRLF-terminated line (without the CRLF) of a chunked body.
    fn chunk_line(&mut self, body_so_far: usize) -> io::Result<String> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                self.buf.drain(..pos + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("chunk size line too long"));
            }
            let have = self.buf.len();
            self.fill_to(have + 1, |_| {
                format!("{body_so_far} bytes of a chunked body")
            })?;
        }
    }

    /// Reads a chunked body to its last chunk and trailer section.
    fn read_chunked_body(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.chunk_line(body.len())?;
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(&format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailer fields, up to the empty line.
                while !self.chunk_line(body.len())?.is_empty() {}
                return Ok(body);
            }
            let so_far = body.len();
            self.fill_to(size + 2, |have| {
                format!("{} bytes of a chunked body", so_far + have.min(size))
            })?;
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(invalid("chunk not followed by CRLF"));
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!("timed out: {e}"),
        _ => e.to_string(),
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses `HTTP/1.x CODE REASON\r\n` and the header lines.
fn parse_head(head: &[u8]) -> io::Result<(u16, Vec<(String, String)>)> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(&format!("bad status line {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| invalid(&format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(&format!("bad header line {line:?}")))?;
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok((status, headers))
}

/// An HTTPS client on one keep-alive connection, verified against `ca.pem`.
///
/// Dropping it frees the OpenSSL session without sending `close_notify`
/// (`SSL_free` never sends it) and closes the socket: an abrupt close. Use
/// [`TlsClient::close`] for a clean one.
pub struct TlsClient {
    conn: HttpConn<SslStream<SplitTcp>>,
}

/// The TCP stream under a [`TlsClient`]. It passes writes through, or, after
/// [`TlsClient::split_records`], sends each write (one TLS record) in two TCP
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

impl TlsClient {
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
        client.conn.host.clone_from(&target.host_header);
        Ok(client)
    }

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
        Ok(TlsClient {
            conn: HttpConn::new(stream),
        })
    }

    /// Sends `GET {path}` and reads the response.
    pub fn request(&mut self, path: &str) -> io::Result<Response> {
        self.conn.request(path)
    }

    /// Writes `bytes` as application data.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.write_raw(bytes)
    }

    /// Reads one response (after [`TlsClient::write_raw`]).
    pub fn read_response(&mut self) -> io::Result<Response> {
        self.conn.read_response()
    }

    /// Reads the response to a `HEAD` request: the head only.
    pub fn read_head_response(&mut self) -> io::Result<Response> {
        self.conn.read_response_to(true)
    }

    /// From now on, sends every TLS record in two TCP segments a moment
    /// apart (see [`SplitTcp`]), so that the server's `SSL_read` sees half a
    /// record and returns `WANT_READ` before the rest arrives.
    pub fn split_records(mut self) -> TlsClient {
        self.conn.stream.get_mut().split = true;
        self
    }

    /// The TCP socket under the TLS session.
    pub fn tcp(&self) -> &TcpStream {
        &self.conn.stream.get_ref().tcp
    }

    /// The OpenSSL stream.
    pub fn ssl_stream(&mut self) -> &mut SslStream<SplitTcp> {
        &mut self.conn.stream
    }

    /// Closes cleanly: sends `close_notify`, then closes the socket.
    pub fn close(mut self) -> io::Result<()> {
        self.conn
            .stream
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

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("local", &self.tcp().local_addr().ok())
            .field("peer", &self.tcp().peer_addr().ok())
            .field("version", &self.conn.stream.ssl().version_str())
            .finish_non_exhaustive()
    }
}

/// A plain HTTP client on one keep-alive connection.
pub struct PlainClient {
    conn: HttpConn<TcpStream>,
}

impl PlainClient {
    /// Connects to `127.0.0.1:port`.
    pub fn connect(port: u16) -> io::Result<PlainClient> {
        Ok(PlainClient {
            conn: HttpConn::new(connect_tcp(port)?),
        })
    }

    /// Sends `GET {path}` and reads the response.
    pub fn request(&mut self, path: &str) -> io::Result<Response> {
        self.conn.request(path)
    }

    /// Writes `bytes` as they are.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.write_raw(bytes)
    }

    /// Reads one response (after [`PlainClient::write_raw`]).
    pub fn read_response(&mut self) -> io::Result<Response> {
        self.conn.read_response()
    }

    /// Reads the response to a `HEAD` request: the head only.
    pub fn read_head_response(&mut self) -> io::Result<Response> {
        self.conn.read_response_to(true)
    }

    /// The TCP socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.conn.stream
    }

    /// Gives up the client, returning its socket.
    pub fn into_tcp(self) -> TcpStream {
        self.conn.stream
    }

    /// Closes the connection with an RST.
    pub fn reset(self) -> io::Result<()> {
        reset(self.conn.stream)
    }
}

impl fmt::Debug for PlainClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainClient")
            .field("local", &self.tcp().local_addr().ok())
            .field("peer", &self.tcp().peer_addr().ok())
            .finish_non_exhaustive()
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

    fn conn(script: &str) -> HttpConn<Scripted> {
        HttpConn::new(Scripted(Cursor::new(script.as_bytes().to_vec())))
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
    fn reads_a_chunked_response_then_the_next() {
        let mut c = conn(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
             5;ext=1\r\nHello\r\n8\r\n, World!\r\n0\r\nX-Trailer: t\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        );
        c.request("/").unwrap().assert_hello("chunked");
        assert_eq!(c.request("/").unwrap().body, b"ok");
    }

    #[test]
    fn truncated_chunked_body_is_an_error() {
        let err = conn("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHel")
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
}
