//! Integration tests of the HTTP server's behaviour over real loopback
//! sockets: non-blocking TLS handshakes, large responses to slow readers,
//! pipelining (also with responses produced out of order on other threads),
//! handler failures, keep-alive and `Connection: close`, malformed requests,
//! IPv6, busy ports, and `Expect: 100-continue`.
//!
//! Every blocking read has a timeout, and every timing assertion is a
//! functional bound (far from what a working server needs), not a benchmark.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use curl::easy::{Easy2, Handler as CurlHandler, HttpVersion, List, WriteError};
use openssl::ssl::SslStream;
use pistachio_rest::http::{Endpoint, Options, Request, ResponseWriter, StatusCode};
use pistachio_tests::client::{
    connect_tcp, get_request, tls_connector, wait_for_close, Connection, Pace, Stream,
    CONNECT_TIMEOUT,
};
use pistachio_tests::server::server_tls_config;
use pistachio_tests::{
    certs, init_logging, PlainClient, Response, TestServer, TlsClient, HELLO_BODY, IO_TIMEOUT,
};
use socket2::{Domain, Socket, Type};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Options for a test server with `threads` workers, TLS when `tls`, and a
/// short handshake timeout.
fn options(threads: usize, tls: bool) -> Options {
    let options = Options::default()
        .threads(threads)
        .handshake_timeout(Duration::from_secs(2));
    if tls {
        options.tls(server_tls_config())
    } else {
        options
    }
}

/// Starts a server on `127.0.0.1:0` with `threads` workers running `handler`.
fn start<H>(threads: usize, tls: bool, handler: H) -> TestServer
where
    H: Fn(Request, ResponseWriter) + Send + Sync + 'static,
{
    TestServer::start_with(threads, tls, options(threads, tls), handler)
}

/// Answers every request with its path as the body.
fn echo_path(req: Request, resp: ResponseWriter) {
    let path = req.path().to_owned();
    resp.send(StatusCode::OK, path);
}

/// A TCP connection to `addr` with [`IO_TIMEOUT`] read/write timeouts and no
/// Nagle delay.
fn connect_addr(addr: SocketAddr) -> io::Result<TcpStream> {
    let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(tcp)
}

/// TLS over `tcp`, verifying the server certificate as `name` (a host name,
/// or an IP address checked against the certificate's IP SANs).
fn tls_over(tcp: TcpStream, name: &str) -> io::Result<SslStream<TcpStream>> {
    tls_connector()?
        .connect(name, tcp)
        .map_err(|e| io::Error::other(format!("TLS handshake as {name:?}: {e}")))
}

/// A plain or TLS connection to `127.0.0.1:port`.
fn connect(port: u16, tls: bool) -> Connection<Stream> {
    Connection::new(Stream::connect(port, tls).expect("connecting to the test server"))
}

/// Whether the server closes `conn` within `timeout`.
fn closed_within(conn: &mut Connection<Stream>, timeout: Duration) -> bool {
    conn.read_to_close(timeout).is_ok()
}

/// Sends `GET /` over `tcp` (TLS verified as `name` if `tls`) and reads the
/// answer.
fn get_root_over(tcp: TcpStream, tls: bool, name: &str) -> io::Result<Response> {
    let stream = if tls {
        Stream::Tls(Box::new(tls_over(tcp, name)?))
    } else {
        Stream::Plain(tcp)
    };
    let mut conn = Connection::new(stream);
    conn.write_raw(&get_request("/"))?;
    conn.read_response()
}

fn kind(tls: bool) -> &'static str {
    if tls {
        "TLS"
    } else {
        "plain"
    }
}

// ---------------------------------------------------------------------------
// 1. Non-blocking TLS handshakes
// ---------------------------------------------------------------------------

/// A client that connects to a TLS port and never sends its `ClientHello`
/// must not hold up other clients on the same (only) worker, and must be
/// dropped once the handshake timeout expires (Pistache's blocking
/// `SSL_accept` stalls every new connection instead, issue #1104).
#[test]
fn silent_tls_client_does_not_delay_others_and_is_dropped_after_handshake_timeout() {
    init_logging();
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(500);
    let server = TestServer::start_with(
        1,
        true,
        Options::default()
            .threads(1)
            .tls(server_tls_config())
            .handshake_timeout(HANDSHAKE_TIMEOUT),
        |_req: Request, resp: ResponseWriter| resp.send(StatusCode::OK, HELLO_BODY),
    );
    let silent_since = Instant::now();
    let silent = connect_tcp(server.port()).expect("silent connection");

    for i in 0..5 {
        let started = Instant::now();
        let mut client = TlsClient::connect(server.port())
            .unwrap_or_else(|e| panic!("client {i} behind the silent one: {e}"));
        client
            .request("/")
            .unwrap_or_else(|e| panic!("client {i}: {e}"))
            .assert_hello(&format!("client {i}"));
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(400),
            "client {i} took {took:?}: it waited behind the silent client's handshake"
        );
        client.close().expect("clean close");
    }

    assert!(
        wait_for_close(&silent, Duration::from_secs(3)),
        "the silent client was still connected {:?} after connecting (handshake timeout {HANDSHAKE_TIMEOUT:?})",
        silent_since.elapsed()
    );
    let after = silent_since.elapsed();
    assert!(
        after >= HANDSHAKE_TIMEOUT - Duration::from_millis(100),
        "the silent client was dropped after {after:?}, before the handshake timeout"
    );
    assert!(
        after <= Duration::from_secs(3),
        "the silent client was dropped only after {after:?}"
    );
}

// ---------------------------------------------------------------------------
// 2. Large responses to slow readers
// ---------------------------------------------------------------------------

const BIG: usize = 4 * 1024 * 1024;

/// Byte `i` of the big body: not periodic in any power of two.
fn pattern(i: usize) -> u8 {
    ((i % 251) as u8) ^ ((i >> 13) as u8)
}

/// A TCP connection to `127.0.0.1:port` with a small receive buffer, set
/// before connecting so the advertised window is small from the start.
fn connect_small_rcvbuf(port: u16) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_recv_buffer_size(4096)?;
    socket.connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)).into(),
        CONNECT_TIMEOUT,
    )?;
    let tcp: TcpStream = socket.into();
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(tcp)
}

fn big_response_case<S: Read + Write>(wire: &mut Connection<S>, what: &str) {
    wire.write_raw(&get_request("/big")).unwrap();
    let slow = Pace {
        slow_reads: 10,
        piece: 1000,
        pause: Duration::from_millis(20),
    };
    let response = wire
        .read_response_paced(slow)
        .unwrap_or_else(|e| panic!("{what}: reading the 4 MiB response: {e}"));
    assert_eq!(response.status, 200, "{what}: status");
    assert_eq!(response.body.len(), BIG, "{what}: body length");
    if let Some(i) = (0..BIG).find(|&i| response.body[i] != pattern(i)) {
        panic!(
            "{what}: body differs first at byte {i}: got {:#04x}, expected {:#04x}",
            response.body[i],
            pattern(i)
        );
    }
    // The connection is still in step: the next request on it works.
    wire.write_raw(&get_request("/small")).unwrap();
    let next = wire
        .read_response()
        .unwrap_or_else(|e| panic!("{what}: keep-alive request after the big one: {e}"));
    assert_eq!(next.status, 200, "{what}: second status");
    assert_eq!(next.body, b"small", "{what}: second body");
}

/// A 4 MiB body sent to a client with a tiny receive window that reads
/// slowly at first: the server's writes stay partial (`writev` short writes,
/// `SSL_write` → `WANT_WRITE`) for a while, and the body must still arrive
/// byte-exact, with the connection usable afterwards.
#[test]
fn large_response_over_tls_with_slow_reader_is_intact() {
    init_logging();
    let body: Arc<Vec<u8>> = Arc::new((0..BIG).map(pattern).collect());
    for tls in [true, false] {
        let body = Arc::clone(&body);
        let server = start(1, tls, move |req: Request, resp: ResponseWriter| {
            if req.path() == "/big" {
                resp.send(StatusCode::OK, &body[..]);
            } else {
                resp.send(StatusCode::OK, "small");
            }
        });
        let tcp = connect_small_rcvbuf(server.port()).expect("connecting");
        let started = Instant::now();
        if tls {
            let mut wire = Connection::new(tls_over(tcp, "localhost").expect("TLS handshake"));
            big_response_case(&mut wire, "TLS");
        } else {
            let mut wire = Connection::new(tcp);
            big_response_case(&mut wire, "plain");
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(4),
            "{}: the big response took {took:?}",
            kind(tls)
        );
    }
}

// ---------------------------------------------------------------------------
// 3 and 5. Pipelining
// ---------------------------------------------------------------------------

/// Handlers that answer from other threads, later requests sooner: the
/// responses must still go out in request order.
#[test]
fn responses_from_other_threads_keep_pipelined_order() {
    init_logging();
    for tls in [false, true] {
        let sent_order = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::clone(&sent_order);
        let server = start(2, tls, move |req: Request, resp: ResponseWriter| {
            let n: u64 = req.path()[1..].parse().expect("path is /N");
            let sent = Arc::clone(&sent);
            thread::spawn(move || {
                thread::sleep(Duration::from_millis((10 - n) * 5));
                sent.lock().unwrap().push(n);
                resp.send(StatusCode::OK, n.to_string());
            });
        });
        let mut wire = connect(server.port(), tls);
        let requests: Vec<u8> = (0..10)
            .flat_map(|n| get_request(&format!("/{n}")))
            .collect();
        wire.write_raw(&requests).unwrap();
        for n in 0..10 {
            let response = wire
                .read_response()
                .unwrap_or_else(|e| panic!("{}: response {n}: {e}", kind(tls)));
            assert_eq!(response.status, 200, "{}: response {n}", kind(tls));
            assert_eq!(
                response.text(),
                n.to_string(),
                "{}: response {n}",
                kind(tls)
            );
        }
        // The handlers really did answer out of order.
        let order = sent_order.lock().unwrap().clone();
        assert_eq!(order.len(), 10);
        assert!(
            order.windows(2).any(|w| w[0] > w[1]),
            "{}: handlers answered in order {order:?}; the test proves nothing",
            kind(tls)
        );
    }
}

/// Sixteen requests in one write on one connection get sixteen responses,
/// in order, and the connection stays usable.
#[test]
fn pipelined_16_requests_in_one_write() {
    init_logging();
    for tls in [false, true] {
        let server = start(1, tls, echo_path);
        let mut wire = connect(server.port(), tls);
        let requests: Vec<u8> = (0..16)
            .flat_map(|n| get_request(&format!("/p{n}")))
            .collect();
        wire.write_raw(&requests).unwrap();
        for n in 0..16 {
            let response = wire
                .read_response()
                .unwrap_or_else(|e| panic!("{}: response {n}: {e}", kind(tls)));
            assert_eq!(response.status, 200, "{}: response {n}", kind(tls));
            assert_eq!(
                response.text(),
                format!("/p{n}"),
                "{}: response {n}",
                kind(tls)
            );
        }
        wire.write_raw(&get_request("/after")).unwrap();
        let after = wire.read_response().unwrap();
        assert_eq!(after.text(), "/after", "{}", kind(tls));
    }
}

// ---------------------------------------------------------------------------
// 4. Handler failures
// ---------------------------------------------------------------------------

/// The message of the panics [`handler_panic_is_a_500_for_that_request_only`]
/// provokes.
const PLANNED_PANIC: &str = "handler panic planned by the test";

/// Keeps the planned handler panics out of the test output (with their
/// backtraces, when `RUST_BACKTRACE` is set); every other panic is reported
/// by the previous hook as usual.
fn hide_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&PLANNED_PANIC) {
                previous(info);
            }
        }));
    });
}

/// A panicking handler, or one that drops its writer, costs its own request
/// a `500` and nothing else: the same keep-alive connection and the other
/// connections go on working.
#[test]
fn handler_panic_is_a_500_for_that_request_only() {
    init_logging();
    hide_planned_panics();
    let server = start(1, false, |req: Request, resp: ResponseWriter| {
        match req.path() {
            "/panic" => std::panic::panic_any(PLANNED_PANIC),
            "/drop" => drop(resp),
            _ => resp.send(StatusCode::OK, "ok"),
        }
    });
    let mut other = PlainClient::connect(server.port()).unwrap();
    assert_eq!(other.request("/ok").unwrap().status, 200);

    let mut client = PlainClient::connect(server.port()).unwrap();
    for (step, (path, status)) in [
        ("/ok", 200),
        ("/panic", 500),
        ("/ok", 200),
        ("/drop", 500),
        ("/ok", 200),
        ("/panic", 500),
    ]
    .into_iter()
    .enumerate()
    {
        let response = client
            .request(path)
            .unwrap_or_else(|e| panic!("step {step} ({path}) on the same connection: {e}"));
        assert_eq!(response.status, status, "step {step} ({path})");
        assert_ne!(
            response.header("connection").map(str::to_ascii_lowercase),
            Some("close".to_owned()),
            "step {step} ({path}): the connection must stay open"
        );
        if status == 200 {
            assert_eq!(response.text(), "ok", "step {step}");
        }
    }
    assert_eq!(
        client.request("/ok").unwrap().status,
        200,
        "after the failures"
    );

    let response = other.request("/ok").expect("the other connection");
    assert_eq!(response.status, 200);
    let mut fresh = PlainClient::connect(server.port()).unwrap();
    assert_eq!(
        fresh.request("/ok").unwrap().status,
        200,
        "a new connection"
    );
}

// ---------------------------------------------------------------------------
// 6. Keep-alive and Connection: close
// ---------------------------------------------------------------------------

fn connection_header(response: &Response) -> Option<String> {
    response.header("connection").map(str::to_ascii_lowercase)
}

/// HTTP/1.1 keeps the connection open unless asked otherwise; `Connection:
/// close` is echoed and the server closes after the response; HTTP/1.0
/// closes unless it asks for keep-alive.
#[test]
fn keep_alive_by_default_and_connection_close_honoured() {
    init_logging();
    for tls in [false, true] {
        let what = kind(tls);
        let server = start(1, tls, echo_path);
        let port = server.port();

        // HTTP/1.1 without Connection: keep-alive.
        let mut wire = connect(port, tls);
        for path in ["/one", "/two", "/three"] {
            wire.write_raw(&get_request(path)).unwrap();
            let response = wire
                .read_response()
                .unwrap_or_else(|e| panic!("{what}: {path} on the keep-alive connection: {e}"));
            assert_eq!(response.text(), path, "{what}");
            assert_eq!(connection_header(&response), None, "{what}: {path}");
        }
        // Connection: close on the same connection.
        wire.write_raw(b"GET /last HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let response = wire.read_response().unwrap();
        assert_eq!(response.text(), "/last", "{what}");
        assert_eq!(
            connection_header(&response).as_deref(),
            Some("close"),
            "{what}"
        );
        assert!(
            closed_within(&mut wire, Duration::from_secs(2)),
            "{what}: still open after Connection: close"
        );

        // HTTP/1.0 without keep-alive: closed after the response.
        let mut wire = connect(port, tls);
        wire.write_raw(b"GET /old HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let response = wire.read_response().unwrap();
        assert_eq!(response.text(), "/old", "{what}");
        assert_eq!(
            connection_header(&response).as_deref(),
            Some("close"),
            "{what}"
        );
        assert!(
            closed_within(&mut wire, Duration::from_secs(2)),
            "{what}: HTTP/1.0 connection still open after the response"
        );

        // HTTP/1.0 asking for keep-alive: stays open.
        let mut wire = connect(port, tls);
        for path in ["/a", "/b"] {
            wire.write_raw(
                format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
            let response = wire
                .read_response()
                .unwrap_or_else(|e| panic!("{what}: HTTP/1.0 keep-alive {path}: {e}"));
            assert_eq!(response.text(), path, "{what}");
            assert_eq!(
                connection_header(&response).as_deref(),
                Some("keep-alive"),
                "{what}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 7. Malformed requests
// ---------------------------------------------------------------------------

/// A malformed request gets `400` and a close; a keep-alive connection open
/// alongside it never notices.
#[test]
fn malformed_request_gets_400_and_close_and_others_do_not_notice() {
    init_logging();
    for tls in [false, true] {
        let what = kind(tls);
        let server = start(1, tls, echo_path);
        let mut good = connect(server.port(), tls);
        good.write_raw(&get_request("/before")).unwrap();
        assert_eq!(good.read_response().unwrap().text(), "/before", "{what}");

        let mut bad = connect(server.port(), tls);
        bad.write_raw(b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n")
            .unwrap();
        let response = bad
            .read_response()
            .unwrap_or_else(|e| panic!("{what}: no answer to the malformed request: {e}"));
        assert_eq!(response.status, 400, "{what}: body {:?}", response.text());
        assert_eq!(
            connection_header(&response).as_deref(),
            Some("close"),
            "{what}"
        );
        assert!(
            closed_within(&mut bad, Duration::from_secs(2)),
            "{what}: the connection stayed open after the 400"
        );

        good.write_raw(&get_request("/after")).unwrap();
        let response = good
            .read_response()
            .unwrap_or_else(|e| panic!("{what}: the good connection after the bad one: {e}"));
        assert_eq!(response.text(), "/after", "{what}");
    }
}

// ---------------------------------------------------------------------------
// 8. Addresses
// ---------------------------------------------------------------------------

/// Answers with the client address the request carries.
fn echo_peer(req: Request, resp: ResponseWriter) {
    let peer = req.peer_addr().to_string();
    resp.send(StatusCode::OK, peer);
}

#[track_caller]
fn assert_peer(response: &Response, client: &TcpStream, what: &str) {
    assert_eq!(response.status, 200, "{what}");
    let seen: SocketAddr = response
        .text()
        .parse()
        .unwrap_or_else(|e| panic!("{what}: body {:?}: {e}", response.text()));
    assert_eq!(
        seen,
        client.local_addr().unwrap(),
        "{what}: the handler's peer address"
    );
}

/// Serving on `[::1]`, plain and TLS (the certificate carries `IP:::1`), and
/// the handler sees the client as `::1`.
#[test]
fn ipv6_loopback() {
    init_logging();
    for tls in [false, true] {
        let what = kind(tls);
        let mut endpoint = match Endpoint::bind("[::1]:0", options(1, tls)) {
            Ok(endpoint) => endpoint,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AddrNotAvailable | io::ErrorKind::Unsupported
                ) || e.to_string().contains("Address family not supported") =>
            {
                println!("skipping ipv6_loopback: cannot bind [::1]: {e}");
                return;
            }
            Err(e) => panic!("binding [::1]:0: {e}"),
        };
        endpoint.serve_threaded(echo_peer).unwrap();
        let addr = endpoint.local_addr();
        assert_eq!(addr.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));

        let tcp = connect_addr(addr).unwrap();
        let client_tcp = tcp.try_clone().unwrap();
        // Verified against the certificate's IP SAN, not a host name.
        let response =
            get_root_over(tcp, tls, "::1").unwrap_or_else(|e| panic!("{what} over [::1]: {e}"));
        assert_peer(&response, &client_tcp, &format!("{what} over [::1]"));
        let seen: SocketAddr = response.text().parse().unwrap();
        assert_eq!(seen.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST), "{what}");
        endpoint.shutdown();
    }
}

/// The handler sees an IPv4 client as `127.0.0.1` with its real port.
#[test]
fn ipv4_peer_address() {
    init_logging();
    for tls in [false, true] {
        let what = kind(tls);
        let server = start(1, tls, echo_peer);
        let tcp = connect_tcp(server.port()).unwrap();
        let client_tcp = tcp.try_clone().unwrap();
        let response =
            get_root_over(tcp, tls, "127.0.0.1").unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_peer(&response, &client_tcp, what);
        assert_eq!(response.text().split(':').next(), Some("127.0.0.1"));
    }
}

/// Binding the port of a running endpoint fails with `AddrInUse`, and the
/// message says which address.
#[test]
fn busy_port_is_a_clear_error() {
    init_logging();
    let server = start(1, false, echo_path);
    let err = Endpoint::bind(server.addr(), Options::default().threads(1))
        .expect_err("a second endpoint bound a busy port");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert!(
        err.to_string().contains(&server.addr().to_string()),
        "the error does not name {}: {err}",
        server.addr()
    );
    // The running server is unaffected.
    let mut client = PlainClient::connect(server.port()).unwrap();
    assert_eq!(client.request("/still").unwrap().text(), "/still");
}

// ---------------------------------------------------------------------------
// 11. Expect: 100-continue
// ---------------------------------------------------------------------------

const POST_SIZE: usize = 100 * 1024;

/// Answers with the body's length, and whether the request carried `Expect`.
fn body_length(req: Request, resp: ResponseWriter) {
    let expect = req.header("expect").unwrap_or("none").to_owned();
    let len = req.body().len();
    resp.send(StatusCode::OK, format!("{len} expect={expect}"));
}

#[derive(Default)]
struct Collect {
    body: Vec<u8>,
    header_lines: Vec<String>,
}

impl CurlHandler for Collect {
    fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        self.body.extend_from_slice(data);
        Ok(data.len())
    }

    fn header(&mut self, data: &[u8]) -> bool {
        self.header_lines
            .push(String::from_utf8_lossy(data).trim_end().to_owned());
        true
    }
}

/// libcurl with `Expect: 100-continue` (and a 3 s wait for the `100`, so a
/// server that never sends it makes the request slow) posts 100 KiB.
fn curl_post_with_expect(port: u16, tls: bool) -> (u32, String, Vec<String>, Duration) {
    let mut easy = Easy2::new(Collect::default());
    // `Expect: 100-continue` is HTTP/1.1's (libcurl would pick h2 by ALPN).
    easy.http_version(HttpVersion::V11).unwrap();
    let url = if tls {
        let mut resolve = List::new();
        resolve
            .append(&format!("localhost:{port}:127.0.0.1"))
            .unwrap();
        easy.resolve(resolve).unwrap();
        easy.cainfo(certs::ca_pem()).unwrap();
        format!("https://localhost:{port}/upload")
    } else {
        format!("http://127.0.0.1:{port}/upload")
    };
    easy.url(&url).unwrap();
    easy.post(true).unwrap();
    easy.post_fields_copy(&vec![b'x'; POST_SIZE]).unwrap();
    let mut headers = List::new();
    headers.append("Expect: 100-continue").unwrap();
    easy.http_headers(headers).unwrap();
    easy.expect_100_timeout(Duration::from_secs(3)).unwrap();
    easy.timeout(Duration::from_secs(5)).unwrap();
    easy.signal(false).unwrap();
    let started = Instant::now();
    easy.perform()
        .unwrap_or_else(|e| panic!("{} libcurl POST: {e}", kind(tls)));
    let took = started.elapsed();
    let status = easy.response_code().unwrap();
    let handler = easy.get_ref();
    (
        status,
        String::from_utf8_lossy(&handler.body).into_owned(),
        handler.header_lines.clone(),
        took,
    )
}

/// `Expect: 100-continue` is answered with `100 Continue` before the body
/// is sent, then with the final response.
#[test]
fn expect_100_continue_with_libcurl() {
    init_logging();
    for tls in [false, true] {
        let what = kind(tls);
        let server = start(1, tls, body_length);
        let (status, body, header_lines, took) = curl_post_with_expect(server.port(), tls);
        assert_eq!(status, 200, "{what}: body {body:?}");
        assert_eq!(body, format!("{POST_SIZE} expect=100-continue"), "{what}");
        assert!(
            header_lines
                .iter()
                .any(|l| l.starts_with("HTTP/1.1 100 Continue")),
            "{what}: libcurl saw no 100 Continue: {header_lines:?}"
        );
        assert!(
            took < Duration::from_millis(1500),
            "{what}: the POST took {took:?}: libcurl waited for a 100 Continue"
        );
    }

    // On the wire: exactly the interim response, before any body byte.
    let server = start(1, false, body_length);
    let mut wire = Connection::new(connect_tcp(server.port()).unwrap());
    wire.write_raw(
        format!(
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {POST_SIZE}\r\n\
             Expect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    wire.get_ref()
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let interim = wire
        .read_response()
        .unwrap_or_else(|e| panic!("no 100 Continue within 2 s of the head ({e})"));
    assert_eq!(interim.head, "HTTP/1.1 100 Continue\r\n\r\n");
    assert!(
        wire.buffered().is_empty(),
        "bytes after the 100 Continue before the body was sent: {:?}",
        String::from_utf8_lossy(wire.buffered())
    );
    wire.get_ref().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    wire.write_raw(&vec![b'y'; POST_SIZE]).unwrap();
    let response = wire.read_response().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), format!("{POST_SIZE} expect=100-continue"));

    // Without Expect, no interim response: the final one comes first.
    wire.write_raw(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    let response = wire.read_response().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "3 expect=none");
}
