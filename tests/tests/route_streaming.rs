//! Routes that take their request body as a stream (`RouteGroup::streamed_body`,
//! `RouteGroup::max_body`), next to routes that buffer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use pistachio_rest::{
    Answer, BodyTooLarge, Description, Endpoint, HeadAction, Hooks, Middleware, Options, Request,
    RestRequest, RestResponse, RouteGroup, Router, StatusCode,
};
use pistachio_tests::client::Connection;
use pistachio_tests::init_logging;

/// The tests measure this process's memory: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The endpoint-wide limit the routes below override.
const ENDPOINT_LIMIT: usize = 1 << 20;

/// Resident memory of this process (which hosts the server), in bytes.
fn rss() -> u64 {
    let kib = pistachio_tests::rss_kib();
    assert!(kib > 0, "VmRSS of /proc/self/status");
    kib * 1024
}

/// Reads the streamed body on its own thread and answers `name=count`, or
/// `413` for a body over the route's limit ([`BodyTooLarge`]), `400` with
/// any other read error.
fn count(mut req: RestRequest, resp: RestResponse) {
    let name = req.param_str("name").unwrap_or("?").to_owned();
    let Some(mut body) = req.take_body_stream() else {
        return resp.send(StatusCode::INTERNAL_SERVER_ERROR, "not streamed");
    };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) => {
                    return match BodyTooLarge::of(&e) {
                        Some(over) => resp.send(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("over the limit of {}", over.limit()),
                        ),
                        None => resp.send(StatusCode::BAD_REQUEST, format!("{e}")),
                    }
                }
            }
        }
        resp.send(StatusCode::OK, format!("{name}={total}"));
    });
}

fn serve() -> Endpoint {
    init_logging();
    let mut big = RouteGroup::new("/upload");
    big.streamed_body().max_body(128 << 20);
    big.put("/:name", count);
    let mut small = RouteGroup::new("/small");
    small.max_body(1024);
    small.put("/:name", count);
    let mut router = Router::new();
    router.mount(big).unwrap().mount(small).unwrap();
    router.post("/buffered", |req: RestRequest, resp: RestResponse| {
        let mut req = req;
        let streamed = req.take_body_stream().is_some();
        resp.send(
            StatusCode::OK,
            format!("buffered={} streamed={streamed}", req.body().len()),
        );
    });
    let options = Options::default()
        .threads(1)
        .max_request_size(ENDPOINT_LIMIT);
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    endpoint.serve_threaded(router).unwrap();
    endpoint
}

fn connect(addr: SocketAddr) -> TcpStream {
    let client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    client
}

/// Reads one response with the suite's one reader: status, lower-case
/// head, body.
fn response(client: &mut TcpStream) -> (u16, String, String) {
    let response = Connection::new(client).read_response().expect("a response");
    (
        response.status,
        response.head.to_ascii_lowercase(),
        response.text(),
    )
}

/// Whether the server closes the connection (reads to EOF, bounded).
fn closes(client: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match client.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

const UPLOAD: usize = 64 << 20;

/// 64 MiB, chunked, to a route allowing 128 MiB on an endpoint allowing 1
/// MiB: streamed, counted, the path parameter present, memory flat.
#[test]
fn chunked_upload_is_streamed_to_its_route() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let endpoint = serve();
    let before = rss();
    let mut client = connect(endpoint.local_addr());
    client
        .write_all(b"PUT /upload/big.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = vec![b'c'; 64 * 1024];
    let mut frame = format!("{:X}\r\n", chunk.len()).into_bytes();
    frame.extend_from_slice(&chunk);
    frame.extend_from_slice(b"\r\n");
    let mut peak = before;
    for i in 0..UPLOAD / chunk.len() {
        client.write_all(&frame).unwrap();
        if i % 64 == 0 {
            peak = peak.max(rss());
        }
    }
    client.write_all(b"0\r\n\r\n").unwrap();
    let (status, _, body) = response(&mut client);
    peak = peak.max(rss());
    assert_eq!((status, body.as_str()), (200, "big.bin=67108864"));
    let grown = peak.saturating_sub(before);
    println!("chunked 64 MiB upload: RSS grew by {} KiB", grown >> 10);
    assert!(grown < 16 << 20, "RSS grew by {} MiB", grown >> 20);
    // The connection stays usable.
    client
        .write_all(b"POST /buffered HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    assert_eq!(response(&mut client).2, "buffered=3 streamed=false");
}

/// The same with `Content-Length`.
#[test]
fn sized_upload_is_streamed_to_its_route() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let endpoint = serve();
    let before = rss();
    let mut client = connect(endpoint.local_addr());
    write!(
        client,
        "PUT /upload/sized.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {UPLOAD}\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b's'; 64 * 1024];
    let mut peak = before;
    for i in 0..UPLOAD / chunk.len() {
        client.write_all(&chunk).unwrap();
        if i % 64 == 0 {
            peak = peak.max(rss());
        }
    }
    let (status, _, body) = response(&mut client);
    peak = peak.max(rss());
    assert_eq!((status, body.as_str()), (200, "sized.bin=67108864"));
    let grown = peak.saturating_sub(before);
    println!(
        "Content-Length 64 MiB upload: RSS grew by {} KiB",
        grown >> 10
    );
    assert!(grown < 16 << 20, "RSS grew by {} MiB", grown >> 20);
}

/// A route allowing less than the endpoint: a larger declared length is
/// refused with 413 before a byte of the body is sent; a chunked body
/// growing past it fails the handler's stream and the connection closes.
#[test]
fn route_limit_below_the_endpoint_limit_refuses() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let endpoint = serve();

    let mut client = connect(endpoint.local_addr());
    client
        .write_all(b"PUT /small/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n")
        .unwrap();
    let (status, head, _) = response(&mut client);
    assert_eq!(status, 413, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closes(&mut client));

    // Within the limit: accepted.
    let mut client = connect(endpoint.local_addr());
    client
        .write_all(b"PUT /small/b HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        .unwrap();
    client.write_all(&[b'b'; 1000]).unwrap();
    assert_eq!(response(&mut client).2, "b=1000");

    let mut client = connect(endpoint.local_addr());
    client
        .write_all(b"PUT /small/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    for _ in 0..4 {
        client.write_all(b"400\r\n").unwrap();
        client.write_all(&[b'c'; 0x400]).unwrap();
        client.write_all(b"\r\n").unwrap();
    }
    // The stream's error says what it is: the handler answers 413, not
    // the 400 of malformed framing.
    let (status, head, body) = response(&mut client);
    assert_eq!(status, 413, "{head}");
    assert_eq!(body, "over the limit of 1024");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closes(&mut client));
}

/// The buffered route next to them still buffers, under the endpoint's
/// limit.
#[test]
fn buffered_route_still_buffers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let endpoint = serve();
    let mut client = connect(endpoint.local_addr());
    let body = vec![b'x'; 100_000];
    write!(
        client,
        "POST /buffered HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    client.write_all(&body).unwrap();
    assert_eq!(response(&mut client).2, "buffered=100000 streamed=false");

    let mut client = connect(endpoint.local_addr());
    write!(
        client,
        "POST /buffered HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        ENDPOINT_LIMIT + 1
    )
    .unwrap();
    let (status, head, _) = response(&mut client);
    assert_eq!(status, 413, "{head}");
}

/// Refuses, at the head, requests that carry `x-deny`.
struct Deny;

impl Middleware for Deny {
    fn on_head(&self, request: &Request) -> HeadAction {
        if request.headers().contains_key("x-deny") {
            HeadAction::Answer(Answer::new(StatusCode::FORBIDDEN, "denied"))
        } else {
            HeadAction::Continue
        }
    }

    fn hooks(&self) -> Hooks {
        Hooks::ON_HEAD
    }
}

/// Described routes stream and carry layers like grouped ones:
/// `RouteDesc::max_body` (streamed, its own limit), `RouteDesc::streamed_body`
/// and `RouteDesc::layer` (its head hook, on that route only).
#[test]
fn described_routes_stream_and_carry_layers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    init_logging();
    let mut api = Description::new("Uploads", "1.0.0");
    api.put("/small/:name").max_body(1024).handler(count);
    api.put("/big/:name")
        .streamed_body()
        .layer(Deny)
        .handler(count);
    api.get("/open")
        .handler(|_req: RestRequest, resp: RestResponse| resp.send(StatusCode::OK, "open"));
    let router = Router::from_description(api).unwrap();
    let options = Options::default().threads(1).max_request_size(4096);
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    endpoint.serve_threaded(router).unwrap();
    let addr = endpoint.local_addr();

    // Over the route's limit, declared: 413 from the head.
    let mut client = connect(addr);
    client
        .write_all(b"PUT /small/a HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n")
        .unwrap();
    let (status, head, _) = response(&mut client);
    assert_eq!(status, 413, "{head}");
    // Chunked past it: the handler's stream fails with `BodyTooLarge`.
    let mut client = connect(addr);
    client
        .write_all(b"PUT /small/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    for _ in 0..2 {
        client.write_all(b"400\r\n").unwrap();
        client.write_all(&[b'b'; 0x400]).unwrap();
        client.write_all(b"\r\n").unwrap();
    }
    let (status, head, body) = response(&mut client);
    assert_eq!(
        (status, body.as_str()),
        (413, "over the limit of 1024"),
        "{head}"
    );

    // Streamed with no limit of its own: past the endpoint's 4096.
    let mut client = connect(addr);
    client
        .write_all(b"PUT /big/c HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n")
        .unwrap();
    client.write_all(&[b'c'; 10000]).unwrap();
    assert_eq!(response(&mut client).2, "c=10000");

    // The route's layer answers its head; other routes never see it.
    let mut client = connect(addr);
    client
        .write_all(b"PUT /big/d HTTP/1.1\r\nHost: x\r\nX-Deny: 1\r\nContent-Length: 5\r\n\r\nddddd")
        .unwrap();
    let (status, head, body) = response(&mut client);
    assert_eq!((status, body.as_str()), (403, "denied"), "{head}");
    let mut client = connect(addr);
    client
        .write_all(b"GET /open HTTP/1.1\r\nHost: x\r\nX-Deny: 1\r\n\r\n")
        .unwrap();
    assert_eq!(response(&mut client).2, "open");
    endpoint.shutdown();
}
