//! The head phase: a middleware refuses a request from its head alone,
//! before `100 Continue` and before any byte of its body is read, so a
//! client announcing a 1 GiB upload is turned away without sending it and
//! without the server buffering it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pistachio_rest::{
    header, Answer, Endpoint, HeadAction, HeaderValue, Middleware, Options, Request,
    ResponseWriter, RestRequest, RestResponse, RouteGroup, Router, StatusCode,
};

const GIB: u64 = 1 << 30;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Refuses requests without `Authorization: Bearer secret`.
struct Auth;

impl Middleware for Auth {
    fn on_head(&self, request: &Request) -> HeadAction {
        if request.authorization() == Some("Bearer secret") {
            return HeadAction::Continue;
        }
        HeadAction::Answer(
            Answer::new(StatusCode::UNAUTHORIZED, "credentials required")
                .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")),
        )
    }
}

/// A handler that counts its calls and answers `201` after reading the body.
fn counting(calls: &Arc<AtomicUsize>) -> impl Fn(Request, ResponseWriter) + Send + Sync {
    let calls = Arc::clone(calls);
    move |req: Request, resp: ResponseWriter| {
        calls.fetch_add(1, Ordering::SeqCst);
        resp.send(StatusCode::CREATED, format!("{} bytes", req.body().len()));
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp
}

/// Reads until the server closes (the suite's `read_to_close`, which fails
/// if it does not); what it sent, as text.
fn read_to_close(tcp: &mut TcpStream) -> String {
    String::from_utf8_lossy(&pistachio_tests::client::read_to_close(tcp)).into_owned()
}

fn upload_head(path: &str, auth: bool, expect: bool, length: u64) -> String {
    format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{}{}\r\n",
        if auth {
            "Authorization: Bearer secret\r\n"
        } else {
            ""
        },
        if expect {
            "Expect: 100-continue\r\n"
        } else {
            ""
        },
    )
}

fn endpoint(options: Options, handler: impl pistachio_rest::Handler) -> Endpoint {
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options.threads(1)).unwrap();
    endpoint.serve_threaded(handler).unwrap();
    endpoint
}

#[test]
fn expect_continue_upload_is_refused_before_the_body() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = endpoint(big_uploads().middleware(Auth), counting(&calls));
    let mut tcp = connect(server.local_addr());
    // The head only: the client waits for `100 Continue` before the body.
    tcp.write_all(upload_head("/up", false, true, GIB).as_bytes())
        .unwrap();
    let response = read_to_close(&mut tcp);
    assert!(
        response.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{response:?}"
    );
    assert!(!response.contains("100 Continue"), "{response:?}");
    assert!(response.contains("\r\nWww-Authenticate: Bearer\r\n"));
    assert!(response.contains("\r\nConnection: close\r\n"));
    assert!(response.ends_with("\r\n\r\ncredentials required"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // With credentials the same upload (a small one) is invited and taken.
    let mut tcp = connect(server.local_addr());
    tcp.write_all(upload_head("/up", true, true, 5).as_bytes())
        .unwrap();
    let mut continue_ = [0u8; 25];
    tcp.read_exact(&mut continue_).unwrap();
    assert_eq!(&continue_, b"HTTP/1.1 100 Continue\r\n\r\n");
    tcp.write_all(b"hello").unwrap();
    tcp.shutdown(std::net::Shutdown::Write).unwrap();
    let response = read_to_close(&mut tcp);
    assert!(
        response.starts_with("HTTP/1.1 201 Created\r\n"),
        "{response}"
    );
    assert!(response.ends_with("5 bytes"), "{response}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn upload_without_expect_is_answered_at_once_and_closed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = endpoint(big_uploads().middleware(Auth), counting(&calls));
    let mut tcp = connect(server.local_addr());
    // 1 GiB announced, 4 KiB sent: the answer comes now, not after the body.
    tcp.write_all(upload_head("/up", false, false, GIB).as_bytes())
        .unwrap();
    tcp.write_all(&[b'x'; 4096]).unwrap();
    let mut raw = Vec::new();
    let closed = tcp.read_to_end(&mut raw);
    let response = String::from_utf8_lossy(&raw);
    assert!(
        response.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{response:?}"
    );
    assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
    // The server closed without waiting for the rest of the gigabyte (a
    // server waiting for it would let the read time out).
    assert!(closed.is_ok(), "not closed: {closed:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn bodyless_request_refused_at_the_head_keeps_the_connection() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = endpoint(big_uploads().middleware(Auth), counting(&calls));
    let mut tcp = connect(server.local_addr());
    tcp.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    tcp.write_all(
        b"GET /b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let response = read_to_close(&mut tcp);
    let first = response.find("HTTP/1.1 401 Unauthorized\r\n");
    let second = response.find("HTTP/1.1 201 Created\r\n");
    assert!(
        matches!((first, second), (Some(a), Some(b)) if a < b),
        "{response}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn per_route_layer_refuses_before_the_body_and_the_size_limit() {
    let calls = Arc::new(AtomicUsize::new(0));
    let handler_calls = Arc::clone(&calls);
    let mut private = RouteGroup::new("/private");
    private
        .layer(Auth)
        .put("/:name", move |req: RestRequest, resp: RestResponse| {
            handler_calls.fetch_add(1, Ordering::SeqCst);
            resp.send(StatusCode::CREATED, format!("{} bytes", req.body().len()))
        });
    let mut router = Router::new();
    router.put("/public/:name", |req: RestRequest, resp: RestResponse| {
        resp.send(StatusCode::CREATED, format!("{} bytes", req.body().len()))
    });
    router.mount(private).unwrap();
    let server = endpoint(Options::default().max_request_size(1024), router);
    let addr = server.local_addr();

    // A private route: 401 from the route's layer, no 100 Continue, even
    // though the declared size is also over the limit (413 would follow).
    let mut tcp = connect(addr);
    tcp.write_all(upload_head("/private/x", false, true, GIB).as_bytes())
        .unwrap();
    let response = read_to_close(&mut tcp);
    assert!(
        response.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{response:?}"
    );
    assert!(!response.contains("100 Continue"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // A public route has no such layer: its upload is invited.
    let mut tcp = connect(addr);
    tcp.write_all(upload_head("/public/x", false, true, 3).as_bytes())
        .unwrap();
    let mut continue_ = [0u8; 25];
    tcp.read_exact(&mut continue_).unwrap();
    assert_eq!(&continue_, b"HTTP/1.1 100 Continue\r\n\r\n");
    tcp.write_all(b"abc").unwrap();
    tcp.shutdown(std::net::Shutdown::Write).unwrap();
    let response = read_to_close(&mut tcp);
    assert!(
        response.starts_with("HTTP/1.1 201 Created\r\n"),
        "{response}"
    );
}

/// Options that would take a 1 GiB body: only the head hook stops it.
fn big_uploads() -> Options {
    Options::default().max_request_size(2 << 30)
}
