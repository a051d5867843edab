//! Clients that send but do not read cannot make the server buffer without
//! bound, nor hold a closing connection open forever.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pistachio_rest::http::{Options, Request, ResponseWriter, StatusCode};
use pistachio_tests::{init_logging, PlainClient, TestServer};

/// A client pipelines requests and never reads: once the responses queued
/// for it pass the high-water mark, the server stops reading, so the
/// client's writes stall after a bounded amount instead of the server
/// swallowing everything. Once the client reads, service resumes.
#[test]
fn server_stops_reading_from_a_client_that_does_not_read() {
    init_logging();
    // 64 KiB responses: the queue reaches the high-water mark quickly.
    let big = vec![b'x'; 64 * 1024];
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handled);
    let server = TestServer::start(1, false, move |_req: Request, resp: ResponseWriter| {
        counter.fetch_add(1, Ordering::SeqCst);
        resp.send(StatusCode::OK, &big);
    });
    let mut client = TcpStream::connect(server.addr()).unwrap();
    client
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let batch: Vec<u8> = request.repeat(256);
    let mut sent = 0usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    let stalled = loop {
        match client.write(&batch) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break true
            }
            Err(e) => panic!("write failed: {e}"),
        }
        if Instant::now() > deadline || sent > 64 << 20 {
            break false;
        }
    };
    // Each 37-byte request asks for 64 KiB: without backpressure the server
    // would read all 64 MiB of requests and queue ~110 GiB of responses.
    assert!(
        stalled,
        "client wrote {sent} bytes of requests without ever stalling: the server never stopped reading"
    );
    let requests_sent = sent / request.len();
    // The rest of what the client wrote waits in kernel socket buffers.
    std::thread::sleep(Duration::from_millis(200));
    let handled_while_stalled = handled.load(Ordering::SeqCst);
    assert!(
        handled_while_stalled < 200,
        "server handled {handled_while_stalled} of {requests_sent} requests for a client that reads nothing"
    );

    // Now read: every complete request sent is answered, in full.
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let want = requests_sent.min(50) * (64 * 1024);
    while got < want {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "server closed after {got} bytes");
        got += n;
    }

    // Other clients were never affected.
    let mut other = PlainClient::connect(server.port()).unwrap();
    let response = other.request("/").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), 64 * 1024);
}

/// A client asks for a large response with `Connection: close` and never
/// reads it: the graceful close cannot finish, and the server drops the
/// connection after `close_timeout` instead of keeping it forever.
#[test]
fn a_close_that_cannot_finish_is_cut_after_close_timeout() {
    init_logging();
    let big = vec![b'y'; 16 << 20];
    let options = Options::default()
        .threads(1)
        .close_timeout(Duration::from_millis(300));
    let server = TestServer::start_with(
        1,
        false,
        options,
        move |_req: Request, resp: ResponseWriter| {
            resp.send(StatusCode::OK, &big);
        },
    );
    let mut client = TcpStream::connect(server.addr()).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    // Do not read while the close timeout runs out.
    std::thread::sleep(Duration::from_millis(1200));
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let ended = loop {
        match client.read(&mut buf) {
            Ok(0) => break "EOF",
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break "reset",
            Err(e) => panic!("after {got} bytes: {e} (the server kept the connection open)"),
        }
    };
    assert!(
        got < 16 << 20,
        "received the whole {got}-byte response ({ended}): the server was not cut off"
    );
}

/// A client pipelines many requests whose answers are big, and reads them
/// as they come: the server pauses producing when output piles up, and
/// must resume by itself each time it drains, until every answer is sent.
#[test]
fn pipelined_big_answers_all_arrive_to_a_reading_client() {
    init_logging();
    let big = vec![b'z'; 64 * 1024];
    let server = TestServer::start(1, false, move |_req: Request, resp: ResponseWriter| {
        resp.send(StatusCode::OK, &big);
    });
    let mut client = TcpStream::connect(server.addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    const N: usize = 400;
    let writer = {
        let mut c = client.try_clone().unwrap();
        std::thread::spawn(move || {
            let batch = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(N);
            c.write_all(&batch).unwrap();
        })
    };
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let want = N * 64 * 1024;
    let mut bodies = 0usize;
    while bodies < want {
        let n = client
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("after {got} bytes ({bodies} of body): {e}"));
        assert!(n > 0, "server closed after {got} bytes");
        got += n;
        bodies += buf[..n].iter().filter(|&&b| b == b'z').count();
    }
    writer.join().unwrap();
    assert_eq!(bodies, want);
}
