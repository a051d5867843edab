//! HTTP/1.1 conformance over real loopback sockets, mirroring Pistache's
//! `http_server_test`, `request_size_test`, `http_parsing_test` and
//! `streaming_test` where the other test files do not already cover them:
//!
//! * many concurrent clients (keep-alive and one connection per request) on
//!   3 and 6 workers, plaintext and TLS, each answer carrying its request's
//!   number so cross-talk would show;
//! * request size limits at their exact boundaries (body, head, field
//!   count, request line), including `Expect: 100-continue` with a body that
//!   is too large;
//! * a request split in two writes at every byte boundary;
//! * chunked request bodies with extensions and trailers, decoded exactly;
//! * HTTP/1.0 rules (no chunked, no `100 Continue`, keep-alive only when
//!   asked), `HEAD`, `Date` and message framing on every kind of response;
//! * a client leaving in the middle of a streamed response;
//! * every error the parser answers closes the connection.
//!
//! Every response read here is checked for a valid `Date` header and for
//! never carrying both `Content-Length` and `Transfer-Encoding`. Every
//! blocking read has a timeout, so a broken server fails a test instead of
//! hanging it.

use std::fs;
use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pistachio_http::{BodyMode, Endpoint, Handler, Options, Request, ResponseWriter, StatusCode};
use pistachio_tests::client::{
    get_request, set_reset_on_close, Connection, Framing, RequestBuilder, Response, Stream,
};
use pistachio_tests::server::{server_tls_config, HANDSHAKE_TIMEOUT};
use pistachio_tests::{init_logging, TestServer};

// ---------------------------------------------------------------------------
// A raw client
// ---------------------------------------------------------------------------

/// A raw HTTP/1.x connection, plain or TLS: writes exactly what it is
/// given, reads responses of every framing, and checks every response head
/// with [`every_response_rules`].
type Conn = Connection<Stream>;

/// Connects to the test server; see [`Conn`].
fn try_connect(port: u16, tls: bool) -> io::Result<Conn> {
    Ok(Connection::new(Stream::connect(port, tls)?).check_heads(every_response_rules))
}

fn connect(port: u16, tls: bool) -> Conn {
    try_connect(port, tls).unwrap_or_else(|e| panic!("connecting to port {port} (tls={tls}): {e}"))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Whether a `Date` value looks like an IMF-fixdate:
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
fn is_imf_fixdate(value: &str) -> bool {
    let b = value.as_bytes();
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    b.len() == 29
        && DAYS.contains(&&value[..3])
        && &value[3..5] == ", "
        && value.ends_with(" GMT")
        && b[7] == b' '
        && b[11] == b' '
        && b[16] == b' '
        && b[19] == b':'
        && b[22] == b':'
        && [5, 6, 12, 13, 14, 15, 17, 18, 20, 21, 23, 24]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

/// What every response must satisfy: a valid `Date` on final responses,
/// never both `Content-Length` and `Transfer-Encoding`, at most one
/// `Content-Length`.
fn every_response_rules(resp: &Response) -> io::Result<()> {
    let count = |name: &str| {
        resp.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    };
    if resp.status >= 200 {
        match resp.header("date") {
            Some(date) if is_imf_fixdate(date) && count("date") == 1 => {}
            _ => return Err(invalid(format!("no valid Date in {:?}", resp.head))),
        }
    }
    if count("content-length") > 0 && count("transfer-encoding") > 0 {
        return Err(invalid(format!(
            "both Content-Length and Transfer-Encoding in {:?}",
            resp.head
        )));
    }
    if count("content-length") > 1 {
        return Err(invalid(format!(
            "several Content-Length in {:?}",
            resp.head
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

/// Options with `threads` workers, a short handshake timeout, and TLS when
/// `tls`.
fn options(threads: usize, tls: bool) -> Options {
    let options = Options::default()
        .threads(threads)
        .handshake_timeout(HANDSHAKE_TIMEOUT);
    if tls {
        options.tls(server_tls_config())
    } else {
        options
    }
}

/// The body `/send-body` answers with.
const SEND_BODY: &str = "0123456789abcdefghijklmnopqrstuvwxyz";

/// The pieces `/stream` writes.
const STREAM_PIECES: [&str; 3] = ["one,", "two,", "three"];

/// Routes of the conformance handler.
fn app(req: Request, resp: ResponseWriter) {
    let path = req.path().to_owned();
    match path.as_str() {
        "/echo" => resp.send(StatusCode::OK, req.body()),
        "/len" => resp.send(StatusCode::OK, req.body().len().to_string()),
        "/send-body" => {
            let mut resp = resp;
            resp.set_mime("text/plain");
            resp.send(StatusCode::OK, SEND_BODY);
        }
        "/stream" => {
            thread::spawn(move || {
                let mut stream = resp.stream(StatusCode::OK);
                for piece in STREAM_PIECES {
                    stream.write(piece);
                    stream.flush();
                    thread::sleep(Duration::from_millis(2));
                }
                stream.end();
            });
        }
        "/no-content" => resp.send(StatusCode::NO_CONTENT, "not sent"),
        "/not-modified" => resp.send(StatusCode::NOT_MODIFIED, ""),
        "/missing" => resp.send(StatusCode::NOT_FOUND, "Not Found"),
        "/drop" => drop(resp),
        "/panic" => panic!("a handler panic the test asked for"),
        "/slow" => {
            // on_timeout (default: 408) answers in its place.
            let mut resp = resp;
            resp.timeout_after(Duration::from_millis(100));
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(400));
                resp.send(StatusCode::OK, "late");
            });
        }
        p if p.starts_with("/async/") => {
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(1));
                resp.send(StatusCode::OK, path);
            });
        }
        _ => resp.send(StatusCode::OK, path),
    }
}

fn start(threads: usize, tls: bool) -> TestServer {
    TestServer::start_with(threads, tls, options(threads, tls), app)
}

fn kind(tls: bool) -> &'static str {
    if tls {
        "TLS"
    } else {
        "plain"
    }
}

// ---------------------------------------------------------------------------
// Many clients (http_server_test: multiple clients, 3 and 6 workers)
// ---------------------------------------------------------------------------

const CLIENTS: usize = 64;
const KEEP_ALIVE_REQUESTS: usize = 20;
const FRESH_CONNECTIONS: usize = 4;

/// 64 concurrent clients, each sending 20 requests on one keep-alive
/// connection (a quarter of them answered from another thread), then 4
/// requests on a new connection each with `Connection: close`. Every
/// response must carry the path of its own request.
fn many_clients(threads: usize, tls: bool) {
    let server = start(threads, tls);
    let port = server.port();
    let started = Instant::now();
    let clients: Vec<JoinHandle<Result<(), String>>> = (0..CLIENTS)
        .map(|c| {
            thread::spawn(move || {
                let mut conn =
                    try_connect(port, tls).map_err(|e| format!("client {c}: connect: {e}"))?;
                for r in 0..KEEP_ALIVE_REQUESTS {
                    let path = if r % 4 == 3 {
                        format!("/async/c{c}/r{r}")
                    } else {
                        format!("/c{c}/r{r}")
                    };
                    conn.write_raw(&get_request(&path))
                        .map_err(|e| format!("{path}: send: {e}"))?;
                    let resp = conn
                        .read_response()
                        .map_err(|e| format!("{path}: read: {e}"))?;
                    if resp.status != 200 || resp.body != path.as_bytes() {
                        return Err(format!("{path}: got {} {:?}", resp.status, resp.text()));
                    }
                }
                for r in 0..FRESH_CONNECTIONS {
                    let path = format!("/fresh/c{c}/r{r}");
                    let mut conn =
                        try_connect(port, tls).map_err(|e| format!("{path}: connect: {e}"))?;
                    conn.write_raw(&RequestBuilder::get(&path).close().to_bytes())
                        .map_err(|e| format!("{path}: send: {e}"))?;
                    let resp = conn
                        .read_response()
                        .map_err(|e| format!("{path}: read: {e}"))?;
                    if resp.status != 200 || resp.body != path.as_bytes() {
                        return Err(format!("{path}: got {} {:?}", resp.status, resp.text()));
                    }
                    if conn.read_to_close(Duration::from_secs(3)).is_err() {
                        return Err(format!("{path}: not closed after Connection: close"));
                    }
                }
                Ok(())
            })
        })
        .collect();
    let failures: Vec<String> = clients
        .into_iter()
        .filter_map(|h| match h.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("client thread panicked".to_owned()),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} workers, {}: {} of {CLIENTS} clients failed (after {:?}): {:#?}",
        threads,
        kind(tls),
        failures.len(),
        started.elapsed(),
        &failures[..failures.len().min(5)]
    );
}

#[test]
fn many_clients_on_3_workers_plain_and_tls() {
    init_logging();
    many_clients(3, false);
    many_clients(3, true);
}

#[test]
fn many_clients_on_6_workers_plain_and_tls() {
    init_logging();
    many_clients(6, false);
    many_clients(6, true);
}

// ---------------------------------------------------------------------------
// Request size limits (request_size_test)
// ---------------------------------------------------------------------------

const MAX_BODY: usize = 1000;
const MAX_HEAD: usize = 1024;
const MAX_FIELDS: usize = 10;

fn limited_server(tls: bool) -> TestServer {
    let options = options(1, tls)
        .max_request_size(MAX_BODY)
        .max_header_size(MAX_HEAD)
        .max_headers(MAX_FIELDS);
    TestServer::start_with(1, tls, options, app)
}

/// A chunked request to `/len` whose chunks have these sizes.
fn chunked_len_request(sizes: &[usize]) -> Vec<u8> {
    let mut req =
        b"POST /len HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for &size in sizes {
        req.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        req.extend_from_slice(&vec![b'b'; size]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

/// A `GET /len` head of exactly `size` bytes (padded with one field).
fn head_of_size(size: usize) -> Vec<u8> {
    let base = "GET /len HTTP/1.1\r\nHost: localhost\r\nX-Pad: \r\n\r\n".len();
    format!(
        "GET /len HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(size - base)
    )
    .into_bytes()
}

/// A `GET /len` with `n` header fields in all (Host included).
fn request_with_fields(n: usize) -> Vec<u8> {
    let mut req = "GET /len HTTP/1.1\r\nHost: localhost\r\n".to_owned();
    for i in 1..n {
        req.push_str(&format!("X-F{i}: v\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// Sends `request` on a fresh connection and expects `status`, then: for
/// 200, that the connection stays usable; otherwise that it is closed after
/// the response (with `Connection: close`).
fn expect_status(port: u16, tls: bool, request: &[u8], status: u16, what: &str) -> Response {
    let what = format!("{}: {what}", kind(tls));
    let mut conn = connect(port, tls);
    conn.write_raw(request)
        .unwrap_or_else(|e| panic!("{what}: send: {e}"));
    let resp = conn
        .read_response()
        .unwrap_or_else(|e| panic!("{what}: read: {e}"));
    assert_eq!(
        resp.status,
        status,
        "{what}: {:?} {:?}",
        resp.head,
        resp.text()
    );
    if status == 200 {
        conn.write_raw(&get_request("/after")).unwrap();
        let next = conn
            .read_response()
            .unwrap_or_else(|e| panic!("{what}: next request: {e}"));
        assert_eq!(next.text(), "/after", "{what}");
    } else {
        assert_eq!(resp.connection().as_deref(), Some("close"), "{what}");
        conn.assert_closed(&what);
    }
    resp
}

#[test]
fn body_at_the_limit_is_accepted_one_byte_over_is_413_and_close() {
    init_logging();
    for tls in [false, true] {
        let server = limited_server(tls);
        let port = server.port();
        let with_length = |len: usize| {
            let mut req =
                format!("POST /len HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\n\r\n")
                    .into_bytes();
            req.extend_from_slice(&vec![b'a'; len]);
            req
        };
        let resp = expect_status(
            port,
            tls,
            &with_length(MAX_BODY),
            200,
            "Content-Length at the limit",
        );
        assert_eq!(resp.text(), MAX_BODY.to_string());
        expect_status(
            port,
            tls,
            &with_length(MAX_BODY + 1),
            413,
            "Content-Length one over",
        );

        let resp = expect_status(
            port,
            tls,
            &chunked_len_request(&[600, 400]),
            200,
            "chunked at the limit",
        );
        assert_eq!(resp.text(), MAX_BODY.to_string());
        let resp = expect_status(
            port,
            tls,
            &chunked_len_request(&[1; MAX_BODY]),
            200,
            "1000 one-byte chunks",
        );
        assert_eq!(resp.text(), MAX_BODY.to_string());
        expect_status(
            port,
            tls,
            &chunked_len_request(&[600, 401]),
            413,
            "chunked one over",
        );
        expect_status(
            port,
            tls,
            &chunked_len_request(&[MAX_BODY + 1]),
            413,
            "one chunk one over",
        );
    }
}

#[test]
fn head_limits_are_431_and_414_at_their_boundaries() {
    init_logging();
    for tls in [false, true] {
        let server = limited_server(tls);
        let port = server.port();
        expect_status(port, tls, &head_of_size(MAX_HEAD), 200, "head at the limit");
        expect_status(
            port,
            tls,
            &head_of_size(MAX_HEAD + 1),
            431,
            "head one byte over",
        );
        // A much larger head, sent whole.
        expect_status(port, tls, &head_of_size(8 * MAX_HEAD), 431, "head 8x over");
        expect_status(
            port,
            tls,
            &request_with_fields(MAX_FIELDS),
            200,
            "fields at the limit",
        );
        expect_status(
            port,
            tls,
            &request_with_fields(MAX_FIELDS + 1),
            431,
            "one field too many",
        );
        let long_line = get_request(&format!("/{}", "u".repeat(2 * MAX_HEAD)));
        expect_status(
            port,
            tls,
            &long_line,
            414,
            "request line over the head limit",
        );
        // The request line alone, never terminated.
        let unterminated = format!("GET /{}", "u".repeat(MAX_HEAD + 10));
        expect_status(
            port,
            tls,
            unterminated.as_bytes(),
            414,
            "unterminated long request line",
        );
    }
}

/// `Expect: 100-continue` with a `Content-Length` over the limit: the
/// server refuses with 413 at once and never invites the body.
#[test]
fn expect_100_continue_with_a_too_large_body_gets_413_without_100() {
    init_logging();
    for tls in [false, true] {
        let what = kind(tls);
        let server = limited_server(tls);
        let mut conn = connect(server.port(), tls);
        conn.write_raw(
            format!(
                "POST /len HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n\
                 Content-Length: {}\r\n\r\n",
                MAX_BODY + 1
            )
            .as_bytes(),
        )
        .unwrap();
        let resp = conn.read_head().unwrap();
        assert_eq!(resp.status, 413, "{what}: {:?}", resp.head);
        let rest = conn
            .read_to_close(Duration::from_secs(3))
            .unwrap_or_else(|b| panic!("{what}: still open after 413 ({b:?})"));
        let rest = String::from_utf8_lossy(&rest);
        assert!(!rest.contains("100 Continue"), "{what}: {rest:?}");

        // Within the limit, the same request is invited and answered.
        let mut conn = connect(server.port(), tls);
        conn.write_raw(
            format!(
                "POST /len HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n\
                 Content-Length: {MAX_BODY}\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let interim = conn.read_head().unwrap();
        assert_eq!(interim.status, 100, "{what}: {:?}", interim.head);
        conn.write_raw(&[b'c'; MAX_BODY]).unwrap();
        let resp = conn.read_response().unwrap();
        assert_eq!(
            (resp.status, resp.text()),
            (200, MAX_BODY.to_string()),
            "{what}"
        );
    }
}

// ---------------------------------------------------------------------------
// Parsing over the wire (http_parsing_test)
// ---------------------------------------------------------------------------

/// A chunked request with extensions and trailers, and its decoded body.
const SPLIT_CHUNKED: &[u8] = b"POST /echo?x=1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
X-A: b\r\n\r\n5;ext=\"q;x\"\r\nhello\r\n1A \t;e\r\n abcdefghijklmnopqrstuvwxy\r\n0\r\nTrailer-A: t\r\n\r\n";
const SPLIT_CHUNKED_BODY: &str = "hello abcdefghijklmnopqrstuvwxy";

/// A request with a `Content-Length` body and bare-LF line endings in the
/// head (tolerated, RFC 9112 §2.2).
const SPLIT_LENGTH: &[u8] =
    b"POST /echo HTTP/1.1\nHost: localhost\r\nContent-Length: 10\n\n0123\r\n6789";

/// Sends `request` in two writes split at `at`, with a pause between them
/// so the server reads them separately, and returns the response.
fn send_split(port: u16, tls: bool, request: &[u8], at: usize) -> Response {
    let mut conn = connect(port, tls);
    conn.write_raw(&request[..at]).unwrap();
    thread::sleep(Duration::from_millis(3));
    conn.write_raw(&request[at..]).unwrap();
    conn.read_response()
        .unwrap_or_else(|e| panic!("{}: split at {at}: {e}", kind(tls)))
}

#[test]
fn request_split_at_every_byte_boundary_gets_the_same_answer() {
    init_logging();
    let server = start(2, false);
    for (request, body) in [
        (SPLIT_CHUNKED, SPLIT_CHUNKED_BODY),
        (SPLIT_LENGTH, "0123\r\n6789"),
    ] {
        for at in 1..request.len() {
            let resp = send_split(server.port(), false, request, at);
            assert_eq!(
                (resp.status, resp.text().as_str()),
                (200, body),
                "split at {at}: {:?} | {:?}",
                String::from_utf8_lossy(&request[..at]),
                String::from_utf8_lossy(&request[at..])
            );
        }
    }

    // Over TLS (each write is its own record), at a handful of points: in
    // the request line, between CR and LF, in the final empty line, inside
    // a chunk size, inside an extension, before a chunk's CRLF, in the
    // trailers.
    let server = start(2, true);
    let text = String::from_utf8_lossy(SPLIT_CHUNKED).into_owned();
    let points = [
        3,
        text.find("\r\n").unwrap() + 1,
        text.find("\r\n\r\n").unwrap() + 3,
        text.find("1A").unwrap() + 1,
        text.find("q;x").unwrap() + 1,
        text.find("y\r\n").unwrap() + 2,
        text.find("Trailer").unwrap() + 4,
        SPLIT_CHUNKED.len() - 1,
    ];
    for at in points {
        let resp = send_split(server.port(), true, SPLIT_CHUNKED, at);
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, SPLIT_CHUNKED_BODY),
            "TLS split at {at}"
        );
    }
}

/// Chunked request bodies are decoded exactly: hex in either case, leading
/// zeros, extensions (quoted strings holding `;` and CRLF-free text),
/// whitespace before them, trailers, data that looks like framing, binary
/// data, and many tiny chunks, all pipelined on one connection.
#[test]
fn chunked_request_bodies_with_extensions_and_trailers_are_decoded_exactly() {
    init_logging();
    let binary: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let framing_lookalike = b"\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n".to_vec();
    let tiny: Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();

    let mut cases: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let head = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
    // Mixed-case hex, leading zeros, extensions, trailers.
    let mut raw = head.to_vec();
    raw.extend_from_slice(
        b"0003;a=b;c;d=\"x;y\\\"z\"\r\nabc\r\n00a \t; name = value \r\n0123456789\r\n",
    );
    raw.extend_from_slice(b"0;last\r\nX-Trailer: 1\r\nX-Other: two words\r\n\r\n");
    cases.push((raw, b"abc0123456789".to_vec()));
    // Binary data in one big chunk (uppercase hex) and one small one.
    let mut raw = head.to_vec();
    raw.extend_from_slice(format!("{:X}\r\n", binary.len() - 1).as_bytes());
    raw.extend_from_slice(&binary[..binary.len() - 1]);
    raw.extend_from_slice(b"\r\n1\r\n");
    raw.push(binary[binary.len() - 1]);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    cases.push((raw, binary.clone()));
    // Chunk data that looks like chunk and message framing.
    let mut raw = head.to_vec();
    raw.extend_from_slice(format!("{:x}\r\n", framing_lookalike.len()).as_bytes());
    raw.extend_from_slice(&framing_lookalike);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    cases.push((raw, framing_lookalike));
    // Many one-byte chunks.
    let mut raw = head.to_vec();
    for &b in &tiny {
        raw.extend_from_slice(b"1;i\r\n");
        raw.push(b);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    cases.push((raw, tiny));
    // An empty body, with a trailer.
    let mut raw = head.to_vec();
    raw.extend_from_slice(b"0\r\nX-Empty: yes\r\n\r\n");
    cases.push((raw, Vec::new()));

    for tls in [false, true] {
        let server = start(1, tls);
        let mut conn = connect(server.port(), tls);
        let all: Vec<u8> = cases.iter().flat_map(|(raw, _)| raw.clone()).collect();
        conn.write_raw(&all).unwrap();
        for (i, (_, expected)) in cases.iter().enumerate() {
            let resp = conn
                .read_response()
                .unwrap_or_else(|e| panic!("{}: case {i}: {e}", kind(tls)));
            assert_eq!(resp.status, 200, "{}: case {i}: {}", kind(tls), resp.text());
            assert!(
                resp.body == *expected,
                "{}: case {i}: body of {} bytes differs from the {} sent",
                kind(tls),
                resp.body.len(),
                expected.len()
            );
        }
        // The connection is still in sync.
        conn.write_raw(&get_request("/after")).unwrap();
        assert_eq!(conn.read_response().unwrap().text(), "/after");
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.0, HEAD, Date and framing
// ---------------------------------------------------------------------------

/// HTTP/1.0: a streamed response is close-delimited even when the client
/// asked for keep-alive; `Expect: 100-continue` gets no interim response;
/// keep-alive only when asked for.
#[test]
fn http_1_0_gets_no_chunked_no_100_continue_and_keep_alive_only_when_asked() {
    init_logging();
    for tls in [false, true] {
        let what = kind(tls);
        let server = start(1, tls);
        let port = server.port();

        // A stream to an HTTP/1.0 keep-alive client: close-delimited, and a
        // request pipelined behind it is never answered.
        let mut conn = connect(port, tls);
        conn.write_raw(
            b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
              GET /never HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        )
        .unwrap();
        let resp = conn.read_response().unwrap();
        assert_eq!(resp.status, 200, "{what}");
        assert_eq!(resp.framing, Framing::Close, "{what}: {:?}", resp.head);
        assert_eq!(resp.connection().as_deref(), Some("close"), "{what}");
        assert_eq!(resp.text(), STREAM_PIECES.concat(), "{what}");

        // Expect: 100-continue from HTTP/1.0: no interim response; the body
        // is simply awaited.
        let mut conn = connect(port, tls);
        conn.write_raw(b"POST /len HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
            .unwrap();
        conn.assert_silent(
            Duration::from_millis(300),
            &format!("{what}: HTTP/1.0 Expect"),
        );
        conn.write_raw(b"12345").unwrap();
        let resp = conn.read_response().unwrap();
        assert_eq!((resp.status, resp.text().as_str()), (200, "5"), "{what}");
        conn.assert_closed(&format!("{what}: HTTP/1.0 without keep-alive"));

        // Keep-alive when asked, for plain and streamed answers alike;
        // then a request without it closes.
        let mut conn = connect(port, tls);
        conn.write_raw(
            b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
              GET /send-body HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n\
              GET /b HTTP/1.0\r\n\r\n",
        )
        .unwrap();
        for (path, body) in [("/a", "/a"), ("/send-body", SEND_BODY)] {
            let resp = conn.read_response().unwrap();
            assert_eq!(resp.text(), body, "{what}: {path}");
            assert_eq!(resp.framing, Framing::Length, "{what}: {path}");
            assert_eq!(
                resp.connection().as_deref(),
                Some("keep-alive"),
                "{what}: {path}"
            );
        }
        let resp = conn.read_response().unwrap();
        assert_eq!(resp.text(), "/b", "{what}");
        assert_eq!(resp.connection().as_deref(), Some("close"), "{what}");
        conn.assert_closed(&format!("{what}: HTTP/1.0 /b"));
    }
}

/// `HEAD` on handlers that send a body (whole or streamed): the same head
/// as `GET`, and not one body byte: the next pipelined response follows the
/// head immediately.
#[test]
fn head_gets_the_get_headers_and_no_body() {
    init_logging();
    for tls in [false, true] {
        let what = kind(tls);
        let server = start(1, tls);
        let mut conn = connect(server.port(), tls);
        let mut pipeline = Vec::new();
        for path in ["/send-body", "/stream", "/missing", "/drop"] {
            pipeline.extend_from_slice(
                format!("HEAD {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
            );
            pipeline.extend_from_slice(&get_request(path));
        }
        pipeline.extend_from_slice(&get_request("/after"));
        conn.write_raw(&pipeline).unwrap();
        for path in ["/send-body", "/stream", "/missing", "/drop"] {
            let head = conn
                .read_response_to(true)
                .unwrap_or_else(|e| panic!("{what}: HEAD {path}: {e}"));
            // Whatever follows must be the next response's status line.
            conn.fill_to(9).unwrap();
            assert!(
                conn.buffered().starts_with(b"HTTP/1.1 "),
                "{what}: HEAD {path}: body bytes after the head: {:?}",
                String::from_utf8_lossy(&conn.buffered()[..conn.buffered().len().min(64)])
            );
            let full = conn
                .read_response()
                .unwrap_or_else(|e| panic!("{what}: GET {path}: {e}"));
            assert_eq!(head.status, full.status, "{what}: {path}");
            for name in ["content-length", "transfer-encoding", "content-type"] {
                assert_eq!(
                    head.header(name),
                    full.header(name),
                    "{what}: {path}: {name}\nHEAD: {:?}\nGET: {:?}",
                    head.head,
                    full.head
                );
            }
        }
        let resp = conn.read_response().unwrap();
        assert_eq!(resp.text(), "/after", "{what}");
        // HEAD to HTTP/1.0 on a stream: close-delimited head, no body, close.
        let mut conn = connect(server.port(), tls);
        conn.write_raw(b"HEAD /stream HTTP/1.0\r\n\r\n").unwrap();
        let head = conn.read_response_to(true).unwrap();
        assert_eq!(head.status, 200, "{what}");
        assert_eq!(head.header("transfer-encoding"), None, "{what}");
        conn.assert_closed(&format!("{what}: HEAD /stream HTTP/1.0"));
    }
}

/// Every kind of response the server produces carries `Date` and never
/// both `Content-Length` and `Transfer-Encoding` (checked by
/// [`every_response_rules`] on every response of this file; here every kind is
/// provoked once): handler answers of each framing, statuses without a
/// body, the dropped-writer 500, `on_timeout`'s 408, `serve_file`, every
/// parser error and the request timeout's 408.
#[test]
fn every_response_has_date_and_never_both_length_and_chunked() {
    init_logging();
    let dir = std::env::temp_dir().join(format!("pistachio-conformance-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("file.txt"), b"file body").unwrap();
    let file = dir.join("file.txt");
    let options = options(1, false).header_timeout(Duration::from_millis(300));
    let server = TestServer::start_with(
        1,
        false,
        options,
        move |req: Request, resp: ResponseWriter| {
            if req.path() == "/file" {
                let _ = resp.serve_file(&file);
            } else {
                app(req, resp);
            }
        },
    );
    let port = server.port();

    // Handler answers, pipelined on one connection.
    let mut conn = connect(port, false);
    let answers: &[(&str, u16, Framing)] = &[
        ("/send-body", 200, Framing::Length),
        ("/stream", 200, Framing::Chunked),
        ("/no-content", 204, Framing::None),
        ("/not-modified", 304, Framing::None),
        ("/missing", 404, Framing::Length),
        ("/drop", 500, Framing::Length),
        ("/slow", 408, Framing::Length),
        ("/file", 200, Framing::Length),
        ("/async/x", 200, Framing::Length),
    ];
    let pipeline: Vec<u8> = answers
        .iter()
        .flat_map(|(p, _, _)| get_request(p))
        .collect();
    conn.write_raw(&pipeline).unwrap();
    for (path, status, framing) in answers {
        let resp = conn
            .read_response()
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            (resp.status, resp.framing),
            (*status, *framing),
            "{path}: {:?}",
            resp.head
        );
        if *status == 204 || *status == 304 {
            assert_eq!(resp.header("content-length"), None, "{path}");
            assert_eq!(resp.header("transfer-encoding"), None, "{path}");
        }
    }
    // The late answer to /slow is discarded, not sent.
    conn.assert_silent(Duration::from_millis(500), "after the pipeline");

    // The request timeout's 408 (a head that never completes).
    let mut conn = connect(port, false);
    conn.write_raw(b"GET /never-finished HT").unwrap();
    let resp = conn.read_response().unwrap();
    assert_eq!(resp.status, 408, "{:?}", resp.head);
    conn.assert_closed("after the request timeout");
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// Parser errors close the connection
// ---------------------------------------------------------------------------

/// Malformed or refused requests, each with the status it must get.
fn bad_requests() -> Vec<(Vec<u8>, u16, &'static str)> {
    let long_target = get_request(&format!("/{}", "x".repeat(20 * 1024)));
    vec![
        (b"GET / HTTP/1.1\r\nHost : localhost\r\n\r\n".to_vec(), 400, "space before colon"),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400, "missing Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), 400, "two Host"),
        (b"GET / HTTP/1.1\r\nHost: localhost\r\nX: a\r\n b\r\n\r\n".to_vec(), 400, "obs-fold"),
        (b"GET * HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), 400, "asterisk-form GET"),
        (
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
            "Content-Length and Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3, 4\r\n\r\nabcd".to_vec(),
            400,
            "conflicting Content-Length",
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
            "Transfer-Encoding in HTTP/1.0",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            400,
            "bad chunk size",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n".to_vec(),
            400,
            "chunk data without CRLF",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000000\r\n\r\n".to_vec(),
            413,
            "Content-Length over the default limit",
        ),
        (long_target, 414, "request line over the default head limit"),
        (
            b"GET / HTTP/1.1\r\nHost: localhost\r\nExpect: the-impossible\r\n\r\n".to_vec(),
            417,
            "unknown expectation",
        ),
        (request_with_fields(101), 431, "more fields than the default limit"),
        (
            b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            501,
            "unsupported transfer coding",
        ),
        (b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n".to_vec(), 501, "CONNECT"),
        (b"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n".to_vec(), 505, "HTTP/2.0"),
        (b"GET /a b HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), 400, "space in the target"),
    ]
}

/// After any error answer from the parser, the connection is closed: the
/// response says `Connection: close`, nothing follows it (a valid request
/// pipelined behind the bad one is never answered), and the server closes.
/// The bad request comes after a good one on a keep-alive connection, and
/// once behind a request still being answered on another thread.
#[test]
fn every_parser_error_closes_the_connection() {
    init_logging();
    for tls in [false, true] {
        let server = start(1, tls);
        for (request, status, what) in bad_requests() {
            let what = format!("{}: {what}", kind(tls));
            let mut conn = connect(server.port(), tls);
            conn.write_raw(&get_request("/first")).unwrap();
            assert_eq!(conn.read_response().unwrap().text(), "/first", "{what}");
            let mut bytes = request.clone();
            bytes.extend_from_slice(&get_request("/never"));
            // The server may close while the tail is still being written.
            let _ = conn.write_raw(&bytes);
            let resp = conn
                .read_response()
                .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
            assert_eq!(resp.status, status, "{what}: {:?}", resp.text());
            assert_eq!(resp.connection().as_deref(), Some("close"), "{what}");
            conn.assert_closed(&what);
        }

        // Behind an asynchronous answer: it still comes first, then the
        // error, then the close.
        let mut conn = connect(server.port(), tls);
        let mut bytes = get_request("/async/first");
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\nHost: localhost\r\nbad\r\n\r\n");
        bytes.extend_from_slice(&get_request("/never"));
        conn.write_raw(&bytes).unwrap();
        assert_eq!(conn.read_response().unwrap().text(), "/async/first");
        assert_eq!(conn.read_response().unwrap().status, 400);
        conn.assert_closed(&format!("{}: error behind an async answer", kind(tls)));
    }
}

// ---------------------------------------------------------------------------
// A client leaving mid-stream (streaming_test)
// ---------------------------------------------------------------------------

const LONG_PIECES: usize = 200;
const LONG_PIECE: usize = 8 * 1024;

#[test]
fn client_leaving_mid_stream_harms_nothing() {
    init_logging();
    for tls in [false, true] {
        for rst in [false, true] {
            let what = format!("{} {}", kind(tls), if rst { "RST" } else { "close" });
            let producers: Arc<Mutex<Vec<JoinHandle<usize>>>> = Arc::default();
            let spawned = Arc::clone(&producers);
            let server = TestServer::start_with(
                1,
                tls,
                options(1, tls),
                move |req: Request, resp: ResponseWriter| {
                    if req.path() != "/long" {
                        return app(req, resp);
                    }
                    // A long chunked response written from its own thread; it
                    // goes on writing after the client has gone.
                    let producer = thread::spawn(move || {
                        let mut stream = resp.stream(StatusCode::OK);
                        let piece = vec![b'z'; LONG_PIECE];
                        for _ in 0..LONG_PIECES {
                            stream.write(&piece);
                            stream.flush();
                            thread::sleep(Duration::from_millis(2));
                        }
                        stream.end();
                        LONG_PIECES
                    });
                    spawned.lock().unwrap().push(producer);
                },
            );
            let port = server.port();

            let mut leaver = connect(port, tls);
            leaver.write_raw(&get_request("/long")).unwrap();
            let head = leaver.read_head().unwrap();
            assert_eq!(head.header("transfer-encoding"), Some("chunked"), "{what}");
            while leaver.buffered().len() < 4 * LONG_PIECE {
                assert!(leaver.fill().unwrap() > 0, "{what}: closed early");
            }
            if rst {
                set_reset_on_close(leaver.get_ref().tcp()).unwrap();
            } else if let Stream::Tls(ssl) = leaver.get_mut() {
                let _ = ssl.shutdown();
                let _ = ssl.get_ref().shutdown(Shutdown::Both);
            } else {
                let _ = leaver.get_ref().tcp().shutdown(Shutdown::Both);
            }
            drop(leaver);

            // The same (only) worker keeps serving others promptly, while
            // the producer is still writing.
            let mut other = connect(port, tls);
            for i in 0..5 {
                let path = format!("/other/{i}");
                let started = Instant::now();
                other.write_raw(&get_request(&path)).unwrap();
                let resp = other
                    .read_response()
                    .unwrap_or_else(|e| panic!("{what}: {path}: {e}"));
                assert_eq!(resp.text(), path, "{what}");
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "{what}: {path} took {:?}",
                    started.elapsed()
                );
            }

            // The producer finishes (its writes after the close neither
            // panic nor block).
            let producer = producers.lock().unwrap().pop().expect("producer started");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !producer.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            assert!(
                producer.is_finished(),
                "{what}: the producer never finished"
            );
            assert_eq!(
                producer.join().ok(),
                Some(LONG_PIECES),
                "{what}: the producer panicked"
            );

            // And the server still answers new connections.
            let mut after = connect(port, tls);
            after.write_raw(&get_request("/after")).unwrap();
            assert_eq!(after.read_response().unwrap().text(), "/after", "{what}");
        }
    }
}

/// Sends a `GET first` and, in the same write, the head of a request with
/// `Expect: 100-continue`; expects `first`'s answer, then `100 Continue`,
/// then (once the body is sent) the final answer.
fn expect_100_continue_behind(first: &str) {
    let options = options(1, false).body_timeout(Duration::from_secs(3));
    let server = TestServer::start_with(1, false, options, app);
    let mut conn = connect(server.port(), false);
    let mut bytes = get_request(first);
    bytes.extend_from_slice(
        b"POST /len HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    );
    conn.write_raw(&bytes).unwrap();
    assert_eq!(conn.read_response().unwrap().text(), first);
    let _ = conn
        .get_ref()
        .tcp()
        .set_read_timeout(Some(Duration::from_secs(2)));
    let interim = conn
        .read_head()
        .unwrap_or_else(|e| panic!("behind {first}: no 100 Continue within 2 s: {e}"));
    assert_eq!(interim.status, 100, "behind {first}: {:?}", interim.head);
    conn.write_raw(b"abcd").unwrap();
    let resp = conn.read_response().unwrap();
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "4"),
        "behind {first}"
    );
}

/// `Expect: 100-continue` on a request pipelined behind one answered from
/// another thread: the interim response follows the earlier answer.
#[test]
fn expect_100_continue_behind_an_async_answer() {
    init_logging();
    expect_100_continue_behind("/async/first");
}

/// The same behind a request answered inline (synchronously, on the
/// worker).
#[test]
fn expect_100_continue_behind_an_inline_answer() {
    init_logging();
    expect_100_continue_behind("/inline");
}

/// Sends 150 pipelined requests (more than the in-flight limit of 64) in
/// one write and expects every answer, in order.
fn pipeline_past_the_in_flight_limit(prefix: &str) {
    let server = start(1, false);
    let mut conn = connect(server.port(), false);
    let paths: Vec<String> = (0..150).map(|i| format!("{prefix}{i}")).collect();
    let bytes: Vec<u8> = paths.iter().flat_map(|p| get_request(p)).collect();
    conn.write_raw(&bytes).unwrap();
    for path in &paths {
        let resp = conn
            .read_response()
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(resp.text(), *path);
    }
}

/// More pipelined requests in one write than the in-flight limit, answered
/// from other threads: all answered, in order.
#[test]
fn more_pipelined_async_requests_than_the_in_flight_limit() {
    init_logging();
    pipeline_past_the_in_flight_limit("/async/p");
}

/// The same with every request answered inline, on the worker.
#[test]
fn more_pipelined_inline_requests_than_the_in_flight_limit() {
    init_logging();
    pipeline_past_the_in_flight_limit("/p");
}

// ---------------------------------------------------------------------------
// Malformed request lines, HEAD error answers, answers before a close
// ---------------------------------------------------------------------------

/// A space inside the request-target makes the request line malformed (RFC
/// 9112 §3, §3.2): `400` and close, never `505`, on a fresh connection and
/// on one that already served a request.
#[test]
fn space_in_the_request_target_is_400_and_close() {
    init_logging();
    let server = start(1, false);
    for (served_one, line) in [
        (false, "GET /a b HTTP/1.1"),
        (true, "GET /a b HTTP/1.1"),
        (false, "GET /a b HTTP/2.0"),
        (true, "GET /a%20b c HTTP/1.1"),
    ] {
        let what = format!("{line:?} (after a request: {served_one})");
        let mut conn = connect(server.port(), false);
        if served_one {
            conn.write_raw(&get_request("/first")).unwrap();
            assert_eq!(conn.read_response().unwrap().text(), "/first", "{what}");
        }
        conn.write_raw(format!("{line}\r\nHost: localhost\r\n\r\n").as_bytes())
            .unwrap();
        let resp = conn.read_response().unwrap();
        assert_eq!(resp.status, 400, "{what}: {:?}", resp.head);
        assert_eq!(resp.connection().as_deref(), Some("close"), "{what}");
        conn.assert_closed(&what);
    }
}

/// Sends `request` on a fresh connection, reads until the server closes,
/// and checks that exactly one head-only answer with `status` and
/// `Connection: close` came: not one byte after the head.
fn expect_head_only_close(port: u16, tls: bool, request: &[u8], status: u16, what: &str) {
    let what = format!("{}: {what}", kind(tls));
    let mut conn = connect(port, tls);
    // The server may close while a long request is still being written.
    let _ = conn.write_raw(request);
    let resp = conn
        .read_head_response()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(resp.status, status, "{what}: {:?}", resp.head);
    assert!(
        resp.head.contains("\r\nConnection: close\r\n"),
        "{what}: {:?}",
        resp.head
    );
    let rest = conn
        .read_to_close(Duration::from_secs(5))
        .unwrap_or_else(|b| panic!("{what}: still open, read {:?}", String::from_utf8_lossy(&b)));
    assert!(
        rest.is_empty(),
        "{what}: body bytes after a HEAD answer: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// The answers the server makes itself to a `HEAD` it refuses carry the
/// head only (RFC 9110 §9.3.2), byte-exact up to the close.
#[test]
fn refused_head_requests_get_head_only_answers() {
    init_logging();
    for tls in [false, true] {
        let server = start(1, tls);
        let port = server.port();
        let mut many_fields = "HEAD / HTTP/1.1\r\nHost: localhost\r\n".to_owned();
        for i in 1..101 {
            many_fields.push_str(&format!("X-F{i}: v\r\n"));
        }
        many_fields.push_str("\r\n");
        let cases: Vec<(Vec<u8>, u16, &str)> = vec![
            (
                b"HEAD / HTTP/1.1\r\nHost: localhost\r\nBad Name: x\r\n\r\n".to_vec(),
                400,
                "bad header name",
            ),
            (
                b"HEAD /a b HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
                400,
                "space in the target",
            ),
            (b"HEAD / HTTP/1.1\r\n\r\n".to_vec(), 400, "missing Host"),
            (
                b"HEAD / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000000\r\n\r\n".to_vec(),
                413,
                "Content-Length over the limit",
            ),
            (
                format!(
                    "HEAD /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
                    "x".repeat(20 * 1024)
                )
                .into_bytes(),
                414,
                "request line too long",
            ),
            (many_fields.into_bytes(), 431, "too many fields"),
            (
                b"HEAD / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
                501,
                "unsupported transfer coding",
            ),
            (
                b"HEAD / HTTP/2.0\r\nHost: localhost\r\n\r\n".to_vec(),
                505,
                "HTTP/2.0",
            ),
            (
                b"\r\nHEAD / HTTP/1.1\r\nHost: localhost\r\nX: a\r\n b\r\n\r\n".to_vec(),
                400,
                "obs-fold",
            ),
        ];
        for (request, status, what) in &cases {
            expect_head_only_close(port, tls, request, *status, what);
        }
        // The GET a refused HEAD stands for would have had a body.
        let mut conn = connect(port, tls);
        conn.write_raw(b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Name: x\r\n\r\n")
            .unwrap();
        assert_eq!(conn.read_response().unwrap().text(), "invalid header name");
    }

    // A request timeout on a HEAD whose head never ends.
    let options = options(1, false).header_timeout(Duration::from_millis(200));
    let server = TestServer::start_with(1, false, options, app);
    expect_head_only_close(
        server.port(),
        false,
        b"HEAD / HTTP/1.1\r\nHost: local",
        408,
        "request timeout",
    );
}

/// Server-made errors that keep the connection open (a dropped writer, a
/// panicking handler, a response deadline) answer a `HEAD` with the head
/// only, and the next response on the connection is read in step.
#[test]
fn server_made_errors_to_head_keep_the_connection_in_step() {
    init_logging();
    for tls in [false, true] {
        let server = start(1, tls);
        let mut conn = connect(server.port(), tls);
        for (path, status) in [("/drop", 500), ("/panic", 500), ("/slow", 408)] {
            let what = format!("{}: HEAD {path}", kind(tls));
            conn.write_raw(format!("HEAD {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
                .unwrap();
            let resp = conn.read_response_to(true).unwrap();
            assert_eq!(resp.status, status, "{what}: {:?}", resp.head);
            assert_ne!(resp.connection().as_deref(), Some("close"), "{what}");
            conn.write_raw(&get_request("/next")).unwrap();
            let next = conn.read_response().unwrap();
            assert_eq!(
                (next.status, next.text().as_str()),
                (200, "/next"),
                "{what}"
            );
        }
    }
}

/// Streams the body of every request. `/early` answers at once and lets
/// the body go; anything else reads it whole first, and answers `400`
/// with the error if it breaks.
struct StreamedBodies;

impl Handler for StreamedBodies {
    fn body_mode(&self, _: &Request) -> BodyMode {
        BodyMode::Streamed
    }

    fn on_request(&self, mut req: Request, resp: ResponseWriter) {
        let Some(mut body) = req.take_body_stream() else {
            return resp.send(StatusCode::OK, "no body");
        };
        if req.path() == "/early" {
            return resp.send(StatusCode::OK, "early");
        }
        thread::spawn(move || {
            let mut data = Vec::new();
            match body.read_to_end(&mut data) {
                Ok(n) => resp.send(StatusCode::OK, n.to_string()),
                Err(e) => resp.send(StatusCode::BAD_REQUEST, e.to_string()),
            }
        });
    }
}

/// A malformed chunk on a route that streams its body: the connection
/// cannot be reused, so the answer says `Connection: close` and the server
/// closes after it; if the answer already went out, the server closes at
/// once.
#[test]
fn bad_chunk_on_a_streamed_route_says_close_and_closes() {
    init_logging();
    for tls in [false, true] {
        let mut endpoint = Endpoint::bind("127.0.0.1:0", options(1, tls)).unwrap();
        endpoint.serve_threaded(StreamedBodies).unwrap();
        let port = endpoint.local_addr().port();
        let head = "POST /read HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";

        // The handler answers after the body broke.
        let what = format!("{}: answer after the bad chunk", kind(tls));
        let mut conn = connect(port, tls);
        conn.write_raw(format!("{head}5\r\nabcdeX\r\n").as_bytes())
            .unwrap();
        let resp = conn.read_response().unwrap();
        assert_eq!(resp.status, 400, "{what}: {:?}", resp.text());
        assert_eq!(
            resp.connection().as_deref(),
            Some("close"),
            "{what}: {:?}",
            resp.head
        );
        conn.assert_closed(&what);

        // The handler answered before the body broke.
        let what = format!("{}: answer before the bad chunk", kind(tls));
        let mut conn = connect(port, tls);
        conn.write_raw(
            b"POST /early HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
        )
        .unwrap();
        let resp = conn.read_response().unwrap();
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "early"),
            "{what}"
        );
        conn.write_raw(b"zz\r\n").unwrap();
        conn.assert_closed(&what);

        // A good body leaves the connection open.
        let mut conn = connect(port, tls);
        conn.write_raw(format!("{head}5\r\nabcde\r\n0\r\n\r\n").as_bytes())
            .unwrap();
        let resp = conn.read_response().unwrap();
        assert_eq!((resp.status, resp.text().as_str()), (200, "5"));
        assert_eq!(resp.connection(), None);
        conn.write_raw(format!("{head}0\r\n\r\n").as_bytes())
            .unwrap();
        assert_eq!(conn.read_response().unwrap().text(), "0");
        endpoint.shutdown();
    }
}
