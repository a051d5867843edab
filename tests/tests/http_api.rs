//! The HTTP layer's API over real connections: streamed (chunked)
//! responses, request/body timeouts, connection hooks, cookies, TLS facts.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pistachio_rest::http::{
    ConnectionInfo, Endpoint, Handler, Options, Request, ResponseWriter, StatusCode,
};
use pistachio_tests::server::HANDSHAKE_TIMEOUT;
use pistachio_tests::{init_logging, PlainClient, TestServer, TlsClient};

/// Reads until the server closes (EOF or reset), within 5 s.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    pistachio_tests::client::read_to_close(stream)
}

fn streaming_handler(req: Request, resp: ResponseWriter) {
    match req.path() {
        "/stream" => {
            // Written from another thread, in several pieces.
            std::thread::spawn(move || {
                let mut stream = resp.stream(StatusCode::OK);
                for piece in ["one,", "two,", "three"] {
                    stream.write(piece);
                    stream.flush();
                    std::thread::sleep(Duration::from_millis(5));
                }
                stream.end();
            });
        }
        "/cut-unflushed" => {
            let mut stream = resp.stream(StatusCode::OK);
            stream.write("partial");
            drop(stream); // cut before its head went out
        }
        "/cut" => {
            let mut stream = resp.stream(StatusCode::OK);
            stream.write("partial");
            stream.flush();
            drop(stream); // no end(): the response must not pass for complete
        }
        _ => resp.send(StatusCode::OK, "plain"),
    }
}

#[test]
fn chunked_stream_from_another_thread_is_framed_exactly_and_keeps_order() {
    init_logging();
    let server = TestServer::start(1, false, streaming_handler);
    let mut c = TcpStream::connect(server.addr()).unwrap();
    // Pipelined: the plain response must wait for the stream to end.
    c.write_all(
        b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let text = String::from_utf8(read_to_close(&mut c)).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nTransfer-Encoding: chunked"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    let (chunks, second) = rest.split_once("0\r\n\r\n").expect("terminal chunk");
    assert_eq!(chunks, "4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n");
    assert!(second.starts_with("HTTP/1.1 200 OK\r\n"), "{second}");
    assert!(second.ends_with("\r\n\r\nplain"), "{second}");
}

#[test]
fn stream_to_http_1_0_is_close_delimited() {
    init_logging();
    let server = TestServer::start(1, false, streaming_handler);
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.write_all(b"GET /stream HTTP/1.0\r\n\r\n").unwrap();
    let text = String::from_utf8(read_to_close(&mut c)).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert!(head.contains("Connection: close"), "{head}");
    assert_eq!(body, "one,two,three");
}

#[test]
fn stream_dropped_without_end_is_cut_off_not_completed() {
    init_logging();
    let server = TestServer::start(1, false, streaming_handler);
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.write_all(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let text = String::from_utf8(read_to_close(&mut c)).unwrap();
    assert!(text.ends_with("7\r\npartial\r\n"), "{text:?}");
    assert!(
        !text.contains("0\r\n\r\n"),
        "a terminal chunk was sent: {text:?}"
    );
}

/// A stream cut before anything was flushed: its head is still the
/// server's to write, so it says `Connection: close`, as every answer the
/// server closes after does.
#[test]
fn stream_cut_before_its_first_flush_says_close() {
    init_logging();
    let server = TestServer::start(1, false, streaming_handler);
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.write_all(b"GET /cut-unflushed HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let text = String::from_utf8(read_to_close(&mut c)).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\nTransfer-Encoding: chunked"), "{text:?}");
    assert!(head.ends_with("\r\nConnection: close"), "{text:?}");
    assert_eq!(body, "7\r\npartial\r\n");
}

fn timeout_server() -> TestServer {
    let options = Options::default()
        .threads(1)
        .header_timeout(Duration::from_millis(300))
        .body_timeout(Duration::from_millis(300))
        .keepalive_timeout(Duration::from_millis(300));
    TestServer::start_with(1, false, options, |req: Request, resp: ResponseWriter| {
        resp.send(StatusCode::OK, format!("{} bytes", req.body().len()));
    })
}

#[test]
fn silent_client_gets_408_then_close() {
    init_logging();
    let server = timeout_server();
    let mut c = TcpStream::connect(server.addr()).unwrap();
    let text = String::from_utf8(read_to_close(&mut c)).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );
}

#[test]
fn slow_head_and_stalled_body_get_408() {
    init_logging();
    let server = timeout_server();
    // The head trickles in a byte every 50 ms: the deadline is for the whole
    // head, not per byte.
    let mut c = TcpStream::connect(server.addr()).unwrap();
    let started = Instant::now();
    for b in b"GET / HTTP/1.1\r\nHost: x\r\n" {
        if c.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let text = String::from_utf8(read_to_close(&mut c)).unwrap();
    assert!(text.starts_with("HTTP/1.1 408"), "slow head: {text}");

    // The head is complete but the body stalls.
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    let text = String::from_utf8(read_to_close(&mut c)).unwrap();
    assert!(text.starts_with("HTTP/1.1 408"), "stalled body: {text}");
}

#[test]
fn clients_within_the_limits_never_see_408_and_idle_ones_are_closed_silently() {
    init_logging();
    let server = timeout_server();
    let mut c = PlainClient::connect(server.port()).unwrap();
    // Three requests, each well inside the timeouts, with pauses between
    // them shorter than the keep-alive timeout.
    for _ in 0..3 {
        c.write_raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        c.write_raw(b"cd").unwrap();
        let response = c.read_response().unwrap();
        assert!(response.head.starts_with("HTTP/1.1 200 OK"), "{response:?}");
        assert_eq!(response.text(), "4 bytes", "{response:?}");
        std::thread::sleep(Duration::from_millis(150));
    }
    // Then idle past the keep-alive timeout: closed without a response.
    let rest = c
        .read_to_close(Duration::from_secs(5))
        .unwrap_or_else(|b| panic!("still open after {} bytes", b.len()));
    assert!(
        rest.is_empty(),
        "idle close sent {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[derive(Default)]
struct Hooks {
    connected: AtomicUsize,
    disconnected: AtomicUsize,
    tls_versions: Mutex<Vec<String>>,
}

struct HookHandler(Arc<Hooks>);

impl Handler for HookHandler {
    fn on_request(&self, req: Request, mut resp: ResponseWriter) {
        if let Some(tls) = req.tls() {
            self.0
                .tls_versions
                .lock()
                .unwrap()
                .push(tls.version.to_owned());
        }
        resp.add_cookie("session=abc; Path=/; HttpOnly");
        resp.add_cookie("theme=dark");
        resp.send(StatusCode::OK, "Hello, World!");
    }
    fn on_connection(&self, info: &ConnectionInfo) {
        assert!(info.peer_addr.ip().is_loopback());
        self.0.connected.fetch_add(1, Ordering::SeqCst);
    }
    fn on_disconnection(&self, _peer: std::net::SocketAddr) {
        self.0.disconnected.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn hooks_run_once_per_connection_and_tls_facts_and_cookies_reach_the_client() {
    init_logging();
    let hooks = Arc::new(Hooks::default());
    let options = Options::default()
        .threads(2)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .tls(pistachio_tests::server::server_tls_config());
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    endpoint
        .serve_threaded(HookHandler(Arc::clone(&hooks)))
        .unwrap();
    let port = endpoint.local_addr().port();
    for _ in 0..5 {
        let mut client = TlsClient::connect(port).unwrap();
        for _ in 0..2 {
            let r = client.request("/").unwrap();
            assert_eq!(r.status, 200);
            let cookies: Vec<&str> = r
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(cookies, ["session=abc; Path=/; HttpOnly", "theme=dark"]);
        }
        client.close().unwrap();
    }
    // A client that fails the handshake is not a connection for the hooks.
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let _ = read_to_close(&mut garbage);
    endpoint.shutdown();
    assert_eq!(hooks.connected.load(Ordering::SeqCst), 5);
    assert_eq!(hooks.disconnected.load(Ordering::SeqCst), 5);
    let versions = hooks.tls_versions.lock().unwrap();
    assert_eq!(versions.len(), 10);
    assert!(versions.iter().all(|v| v == "TLSv1.3"), "{versions:?}");
}

/// `Connection: close` over TLS: the server answers, then sends
/// close_notify before FIN, so the client can tell a complete close from a
/// truncation attack.
#[test]
fn tls_graceful_close_sends_close_notify() {
    use openssl::ssl::ShutdownState;
    init_logging();
    let server = TestServer::hello(1, true);
    let mut client = TlsClient::connect(server.port()).unwrap();
    client
        .write_raw(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let response = client.read_response().unwrap();
    response.assert_hello("close request");
    assert_eq!(response.header("connection"), Some("close"));
    let stream = client.ssl_stream();
    let mut buf = [0u8; 64];
    // The next read sees the end of the stream: close_notify, then EOF.
    let n = stream.ssl_read(&mut buf).map_or(0, |n| n);
    assert_eq!(n, 0, "unexpected data after the response");
    assert!(
        stream.get_shutdown().contains(ShutdownState::RECEIVED),
        "server closed without close_notify (shutdown state {:?})",
        stream.get_shutdown()
    );
}

/// `serve_file`: the body arrives intact (sendfile over plaintext, read +
/// SSL_write over TLS), with its MIME type, and keeps pipelined order.
#[test]
fn serve_file_is_intact_over_plain_and_tls() {
    init_logging();
    let dir = std::env::temp_dir().join(format!("pistachio-serve-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    std::fs::write(dir.join("page.html"), b"<p>hi</p>").unwrap();
    for tls in [false, true] {
        let root = dir.clone();
        let server = TestServer::start(2, tls, move |req: Request, resp: ResponseWriter| {
            if req.path() == "/after" {
                return resp.send(StatusCode::OK, "after");
            }
            let _ = resp.serve_file(root.join(req.path().trim_start_matches('/')));
        });
        let mut client = pistachio_tests::client::AnyClient::connect(server.port(), tls).unwrap();
        // Pipelined: a file, a small page, a missing file, a plain answer.
        client
            .write_raw(
                b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n\
                  GET /page.html HTTP/1.1\r\nHost: localhost\r\n\r\n\
                  GET /missing.txt HTTP/1.1\r\nHost: localhost\r\n\r\n\
                  HEAD /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n\
                  GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n",
            )
            .unwrap();
        let r = client.read_response().unwrap();
        assert_eq!(r.status, 200, "tls={tls}");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert!(r.header("last-modified").is_some());
        assert!(
            r.body == big,
            "tls={tls}: file body differs ({} bytes)",
            r.body.len()
        );
        let r = client.read_response().unwrap();
        assert_eq!(r.header("content-type"), Some("text/html"));
        assert_eq!(r.body, b"<p>hi</p>");
        let r = client.read_response().unwrap();
        assert_eq!(r.status, 404, "tls={tls}");
        // HEAD: the same Content-Length, no body (the next response follows
        // at once; a body here would corrupt it).
        let head = client.read_head_response().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("content-length"),
            Some(big.len().to_string().as_str())
        );
        let r = client.read_response().unwrap();
        assert_eq!(r.text(), "after", "tls={tls}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

struct SlowHandler;

impl Handler for SlowHandler {
    fn on_request(&self, req: Request, mut resp: ResponseWriter) {
        match req.path() {
            "/slow" | "/slow-custom" => {
                resp.timeout_after(Duration::from_millis(200));
                // Answers far too late, from another thread.
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(700));
                    resp.send(StatusCode::OK, "late");
                });
            }
            "/quick" => {
                resp.timeout_after(Duration::from_millis(200));
                resp.send(StatusCode::OK, "quick");
            }
            _ => resp.send(StatusCode::OK, "next"),
        }
    }

    fn on_timeout(&self, resp: ResponseWriter) {
        resp.send(StatusCode::SERVICE_UNAVAILABLE, "custom timeout");
    }
}

#[test]
fn timeout_after_answers_with_on_timeout_and_drops_the_late_answer() {
    init_logging();
    // The default on_timeout: 408.
    let server = TestServer::start(1, false, |req: Request, mut resp: ResponseWriter| {
        if req.path() == "/slow" {
            resp.timeout_after(Duration::from_millis(200));
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(700));
                resp.send(StatusCode::OK, "late");
            });
        } else {
            resp.send(StatusCode::OK, "next");
        }
    });
    let mut client = pistachio_tests::PlainClient::connect(server.port()).unwrap();
    let started = Instant::now();
    let r = client.request("/slow").unwrap();
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_millis(650),
        "{:?}",
        started.elapsed()
    );
    // Same connection; the late answer arrives meanwhile and is discarded.
    std::thread::sleep(Duration::from_millis(700));
    let r = client.request("/next").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "next"));

    // A custom on_timeout, over TLS; a quick answer is unaffected.
    let options = Options::default()
        .threads(1)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .tls(pistachio_tests::server::server_tls_config());
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    endpoint.serve_threaded(SlowHandler).unwrap();
    let mut client = TlsClient::connect(endpoint.local_addr().port()).unwrap();
    let r = client.request("/quick").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "quick"));
    let r = client.request("/slow-custom").unwrap();
    assert_eq!((r.status, r.text().as_str()), (503, "custom timeout"));
    std::thread::sleep(Duration::from_millis(700));
    let r = client.request("/after").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "next"));
}

/// Streams `/upload` bodies, buffers everything else; answers with the
/// byte count and a checksum computed while reading.
struct Uploads {
    seen_errors: Arc<Mutex<Vec<String>>>,
}

impl Handler for Uploads {
    fn body_mode(&self, req: &Request) -> pistachio_rest::http::BodyMode {
        if req.path() == "/upload" {
            pistachio_rest::http::BodyMode::Streamed
        } else {
            pistachio_rest::http::BodyMode::Buffered
        }
    }

    fn on_request(&self, mut req: Request, resp: ResponseWriter) {
        let Some(mut body) = req.take_body_stream() else {
            return resp.send(StatusCode::OK, format!("buffered {}", req.body().len()));
        };
        let errors = Arc::clone(&self.seen_errors);
        std::thread::spawn(move || {
            let mut total = 0u64;
            let mut sum = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        total += n as u64;
                        sum = buf[..n]
                            .iter()
                            .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
                    }
                    Err(e) => {
                        errors.lock().unwrap().push(e.to_string());
                        return resp.send(StatusCode::BAD_REQUEST, e.to_string());
                    }
                }
            }
            resp.send(StatusCode::OK, format!("{total} {sum}"));
        });
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

fn checksum(data: &[u8]) -> u64 {
    data.iter()
        .fold(0u64, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)))
}

/// A 24 MiB upload, far over `max_request_size` (1 MiB here), streams
/// through intact with Content-Length and chunked framing, over plain and
/// TLS; a buffered route on the same server still gets 413 for 2 MiB.
#[test]
fn streamed_uploads_pass_the_size_limit_intact() {
    init_logging();
    let data = pattern(24 << 20);
    let expected = format!("{} {}", data.len(), checksum(&data));
    for tls in [false, true] {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut options = Options::default()
            .threads(2)
            .max_request_size(1 << 20)
            .handshake_timeout(HANDSHAKE_TIMEOUT);
        if tls {
            options = options.tls(pistachio_tests::server::server_tls_config());
        }
        let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
        endpoint
            .serve_threaded(Uploads {
                seen_errors: Arc::clone(&errors),
            })
            .unwrap();
        let port = endpoint.local_addr().port();
        let mut client = pistachio_tests::client::AnyClient::connect(port, tls).unwrap();

        let mut request = format!(
            "PUT /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )
        .into_bytes();
        request.extend_from_slice(&data);
        client.write_raw(&request).unwrap();
        let r = client.read_response().unwrap();
        assert_eq!(
            (r.status, r.text()),
            (200, expected.clone()),
            "tls={tls} length"
        );

        // Chunked, in uneven chunks, on the same connection.
        let mut request =
            b"PUT /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        for piece in data.chunks(100_003) {
            request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            request.extend_from_slice(piece);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        client.write_raw(&request).unwrap();
        let r = client.read_response().unwrap();
        assert_eq!(
            (r.status, r.text()),
            (200, expected.clone()),
            "tls={tls} chunked"
        );

        // The limit still holds where the body is buffered.
        let mut request =
            b"PUT /buffered HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2097152\r\n\r\n"
                .to_vec();
        request.extend_from_slice(&data[..2 << 20]);
        let _ = client.write_raw(&request);
        let r = client.read_response().unwrap();
        assert_eq!(r.status, 413, "tls={tls}");
        assert!(
            errors.lock().unwrap().is_empty(),
            "{:?}",
            errors.lock().unwrap()
        );
        endpoint.shutdown();
    }
}

/// The client vanishes in the middle of a streamed body: the handler's
/// read fails (instead of hanging), and the server serves others.
#[test]
fn client_vanishing_mid_upload_fails_the_read_not_the_server() {
    init_logging();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(1)).unwrap();
    endpoint
        .serve_threaded(Uploads {
            seen_errors: Arc::clone(&errors),
        })
        .unwrap();
    let port = endpoint.local_addr().port();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    c.write_all(&pattern(300_000)).unwrap();
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while errors.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = errors.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains("connection closed"), "{seen:?}");
    let mut other = pistachio_tests::PlainClient::connect(port).unwrap();
    assert_eq!(other.request("/x").unwrap().text(), "buffered 0");
    endpoint.shutdown();
}

/// A handler that is slow to read its streamed body holds the client back
/// (TCP flow control) instead of the server buffering the upload.
#[test]
fn slow_body_reader_holds_the_uploader_back() {
    init_logging();
    struct SlowReader;
    impl Handler for SlowReader {
        fn body_mode(&self, _: &Request) -> pistachio_rest::http::BodyMode {
            pistachio_rest::http::BodyMode::Streamed
        }
        fn on_request(&self, mut req: Request, resp: ResponseWriter) {
            let mut body = req.take_body_stream().expect("streamed");
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1500));
                let mut total = 0usize;
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match body.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => total += n,
                        Err(e) => return resp.send(StatusCode::BAD_REQUEST, e.to_string()),
                    }
                }
                resp.send(StatusCode::OK, total.to_string());
            });
        }
    }
    let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(1)).unwrap();
    endpoint.serve_threaded(SlowReader).unwrap();
    let total = 96usize << 20;
    let mut c = TcpStream::connect(endpoint.local_addr()).unwrap();
    c.write_all(
        format!(
            "PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let data = vec![7u8; 1 << 20];
    c.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut sent = 0usize;
    let mut stalled_at = None;
    while sent < total {
        let want = (total - sent).min(data.len());
        match c.write(&data[..want]) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                stalled_at.get_or_insert(sent);
                c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            }
            Err(e) => panic!("after {sent} bytes: {e}"),
        }
    }
    let stalled_at = stalled_at.expect("the upload never stalled: the server buffered it all");
    // 1 MiB of stream backlog plus kernel socket buffers, not 96 MiB.
    assert!(
        stalled_at < 32 << 20,
        "stalled only after {stalled_at} bytes"
    );
    let text = String::from_utf8(read_to_close(&mut c)).unwrap();
    assert!(text.ends_with(&format!("\r\n\r\n{total}")), "{text}");
    endpoint.shutdown();
}

#[test]
fn max_response_size_turns_big_answers_into_500_and_cuts_streams() {
    init_logging();
    let options = Options::default().threads(1).max_response_size(10);
    let server =
        TestServer::start_with(
            1,
            false,
            options,
            |req: Request, resp: ResponseWriter| match req.path() {
                "/ten" => resp.send(StatusCode::OK, "0123456789"),
                "/eleven" => resp.send(StatusCode::OK, "0123456789A"),
                _ => {
                    let mut stream = resp.stream(StatusCode::OK);
                    for _ in 0..3 {
                        stream.write("12345");
                        stream.flush();
                    }
                    stream.end();
                }
            },
        );
    let mut client = pistachio_tests::PlainClient::connect(server.port()).unwrap();
    assert_eq!(client.request("/ten").unwrap().text(), "0123456789");
    let r = client.request("/eleven").unwrap();
    assert_eq!((r.status, r.text().as_str()), (500, "Response Too Large"));
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let text = String::from_utf8(read_to_close(&mut c)).unwrap();
    assert!(text.ends_with("5\r\n12345\r\n5\r\n12345\r\n"), "{text:?}");
}

/// A caller-built TLS context that requires client certificates: the
/// verified subject reaches `Request::client_subject`; a client without a
/// certificate gets no answer.
#[test]
fn verified_client_certificate_subject_reaches_the_request() {
    use openssl::ssl::{SslFiletype, SslVerifyMode};
    use pistachio_tests::certs;
    init_logging();
    let mut ctx = pistachio_tests::server::server_acceptor_builder();
    ctx.set_ca_file(certs::ca_pem()).unwrap();
    ctx.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    let tls = pistachio_rest::TlsConfig::from_context(ctx.build().into_context());
    let options = Options::default()
        .threads(1)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .tls(tls);
    let server = TestServer::start_with(1, true, options, |req: Request, resp: ResponseWriter| {
        let subject = req.client_subject().unwrap_or("none").to_owned();
        resp.send(StatusCode::OK, subject);
    });

    let mut with_cert = pistachio_tests::client::tls_connector_builder().unwrap();
    with_cert
        .set_certificate_file(certs::client_pem(), SslFiletype::PEM)
        .unwrap();
    with_cert
        .set_private_key_file(certs::client_key(), SslFiletype::PEM)
        .unwrap();
    let mut client =
        TlsClient::connect_with(server.port(), &with_cert.build(), "localhost").unwrap();
    let r = client.request("/").unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("CN=pistachio-test-client"),
        "{}",
        r.text()
    );

    // No certificate: the server refuses during the handshake (with TLS 1.3
    // the client may only notice on its first read).
    let without = pistachio_tests::client::tls_connector().unwrap();
    let refused = TlsClient::connect_with(server.port(), &without, "localhost")
        .and_then(|mut c| c.request("/"));
    assert!(
        refused.is_err(),
        "a client without a certificate was served"
    );
    // The server is unharmed.
    let r = client.request("/again").unwrap();
    assert!(r.text().contains("CN=pistachio-test-client"));
}

/// A request immediately followed by the client's FIN: the server answers
/// and closes at once. (Reads may stop early after a short read; an EOF that
/// arrived with the data must still be seen, or the connection would linger
/// until the keep-alive timeout.)
#[test]
fn request_then_fin_is_answered_and_closed_promptly() {
    init_logging();
    let server = TestServer::hello(1, false);
    for i in 0..50 {
        let mut c = TcpStream::connect(server.addr()).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        if i % 2 == 0 {
            c.shutdown(std::net::Shutdown::Write).unwrap();
        } else {
            // FIN a moment later, on its own.
            std::thread::sleep(Duration::from_millis(2));
            c.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let started = Instant::now();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let text = String::from_utf8(read_to_close(&mut c)).unwrap();
        assert!(text.ends_with("Hello, World!"), "#{i}: {text}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "#{i}: closed only after {:?}",
            started.elapsed()
        );
    }
}

/// The TLS side of the short-read shortcut: on an established connection,
/// a request followed by FIN (with or without close_notify, together or a
/// moment later) is answered and the connection closed at once, not at a
/// timeout.
#[test]
fn tls_request_then_fin_is_answered_and_closed_promptly() {
    init_logging();
    let server = TestServer::hello(1, true);
    for i in 0..80 {
        let mut c = TlsClient::connect(server.port()).unwrap();
        // A first exchange, so the handshake's last flight (which may carry
        // the next record along into OpenSSL) is behind us.
        c.request("/")
            .unwrap()
            .assert_hello(&format!("#{i}: first request"));
        let mut tcp = c.tcp().try_clone().unwrap();
        c.write_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let started = Instant::now();
        match i % 4 {
            // FIN right behind the request, without close_notify: often both
            // are in the socket when the server reads.
            0 | 1 => {}
            2 => c.ssl_stream().shutdown().map(drop).unwrap(),
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
        tcp.shutdown(std::net::Shutdown::Write).unwrap();
        // Frees the session without close_notify (if none was sent).
        drop(c);
        let raw = read_to_close(&mut tcp);
        assert!(!raw.is_empty(), "#{i}: no answer");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "#{i}: closed only after {:?}",
            started.elapsed()
        );
    }
}

/// Many pipelined requests in one burst arrive as several TLS records in
/// one read: every one is answered. Stopping at a short read while OpenSSL
/// still holds records would leave the rest unanswered.
#[test]
fn tls_pipelined_burst_in_many_records_is_answered_in_full() {
    init_logging();
    let server = TestServer::hello(1, true);
    let mut c = TlsClient::connect(server.port()).unwrap();
    c.tcp()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    for round in 0..20 {
        // 1 to 40 requests, each in its own record, all sent before
        // reading (they fit in the socket buffers).
        let count = 1 + round * 2;
        for _ in 0..count {
            c.write_raw(one).unwrap();
        }
        for k in 0..count {
            let resp = c
                .read_response()
                .unwrap_or_else(|e| panic!("round {round}, answer {k} of {count}: {e}"));
            resp.assert_hello(&format!("round {round}, answer {k}"));
        }
    }
}

/// A TLS client talking to the plaintext port gets `400` at once, not a
/// `408` after the header timeout.
#[test]
fn tls_hello_on_the_plain_port_is_refused_at_once() {
    init_logging();
    let server = TestServer::hello(1, false);
    let mut c = TcpStream::connect(server.addr()).unwrap();
    let started = Instant::now();
    c.write_all(&[
        0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
    ])
    .unwrap();
    let text = String::from_utf8_lossy(&read_to_close(&mut c)).into_owned();
    assert!(text.starts_with("HTTP/1.1 400 Bad Request"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

/// The keep-alive timeout counts from the last request, not from when the
/// connection first went idle: a connection busy for longer than the
/// timeout, one request at a time, is never closed under it.
#[test]
fn keep_alive_timeout_counts_from_the_last_request() {
    init_logging();
    let server = timeout_server(); // keep-alive, header and body timeouts: 300 ms
    let mut c = PlainClient::connect(server.port()).unwrap();
    c.tcp()
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        c.write_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let response = c.read_response().unwrap();
        assert!(
            response.head.starts_with("HTTP/1.1 200 OK") && response.text() == "0 bytes",
            "after {:?}: {response:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The header timeout restarts with each request: a client that always has
/// the next request half-sent (pipelining slowly but steadily) never sees
/// a 408 as long as each request completes within the timeout.
#[test]
fn header_timeout_restarts_with_each_request() {
    init_logging();
    let server = timeout_server();
    let mut c = PlainClient::connect(server.port()).unwrap();
    c.tcp()
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    c.write_raw(b"GET / HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        std::thread::sleep(Duration::from_millis(100));
        // The end of this request and the start of the next one.
        c.write_raw(b"Host: x\r\n\r\nGET / HTTP/1.1\r\n").unwrap();
        let response = c.read_response().unwrap();
        assert!(
            response.head.starts_with("HTTP/1.1 200 OK"),
            "after {:?}: {response:?}",
            started.elapsed()
        );
    }
}

/// `Endpoint::serve` returns the report of its graceful shutdown: an idle
/// keep-alive connection is drained, one whose answer is still due at
/// `shutdown_timeout` is cut and counted.
#[test]
fn serve_returns_what_its_shutdown_cut() {
    init_logging();
    let options = Options::default()
        .threads(1)
        .shutdown_timeout(Duration::from_millis(300));
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    let addr = endpoint.local_addr();
    let stop = endpoint.shutdown_handle();
    let server = std::thread::spawn(move || {
        endpoint.serve(|req: Request, resp: ResponseWriter| {
            if req.path() == "/hang" {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(2));
                    resp.send(StatusCode::OK, "late");
                });
            } else {
                resp.send(StatusCode::OK, "ok");
            }
        })
    });
    let mut idle = PlainClient::connect(addr.port()).unwrap();
    idle.write_raw(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let response = idle.read_response().unwrap();
    assert_eq!(response.text(), "ok", "{response:?}");
    let mut hung = TcpStream::connect(addr).unwrap();
    hung.write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // The idle client closes its end as soon as the server closes its.
    let idle = std::thread::spawn(move || idle.read_to_close(Duration::from_secs(5)));
    stop.shutdown();
    let report = server.join().unwrap().unwrap();
    assert_eq!(report.connections_cut, 1, "{report:?}");
    // The idle keep-alive connection closed at once: drained, not cut.
    assert_eq!(report.connections_drained, 1, "{report:?}");
    assert!(report.elapsed >= Duration::from_millis(250), "{report:?}");
    assert_eq!(idle.join().unwrap(), Ok(Vec::new()));
}
