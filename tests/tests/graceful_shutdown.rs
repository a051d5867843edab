//! Graceful shutdown: requests in flight are answered, idle connections
//! close at once, and what cannot finish is cut at the deadline and
//! reported.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pistachio_rest::http::{Endpoint, Options, Request, ResponseWriter, StatusCode};
use pistachio_tests::client::AnyClient;
use pistachio_tests::init_logging;

fn slow_endpoint(tls: bool, started: Arc<AtomicUsize>) -> Endpoint {
    let mut options = Options::default().threads(2);
    if tls {
        options = options.tls(pistachio_tests::server::server_tls_config());
    }
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    endpoint
        .serve_threaded(move |req: Request, resp: ResponseWriter| {
            let path = req.path().to_owned();
            if path == "/never" {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(30));
                    resp.send(StatusCode::OK, "too late");
                });
                return;
            }
            started.fetch_add(1, Ordering::SeqCst);
            // Answered from another thread, well after shutdown begins.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                resp.send(StatusCode::OK, path);
            });
        })
        .unwrap();
    endpoint
}

/// 100 requests in flight on 20 connections when the shutdown starts: all
/// 100 are answered, each connection's last answer says
/// `Connection: close`, idle connections are closed at once, and nothing
/// is cut.
#[test]
fn shutdown_while_100_requests_are_in_flight_loses_none() {
    init_logging();
    for tls in [false, true] {
        let started = Arc::new(AtomicUsize::new(0));
        let mut endpoint = slow_endpoint(tls, Arc::clone(&started));
        let port = endpoint.local_addr().port();
        let mut idle = AnyClient::connect(port, tls).unwrap();
        assert_eq!(idle.request("/warm").unwrap().status, 200);
        let mut clients: Vec<AnyClient> = (0..20)
            .map(|_| AnyClient::connect(port, tls).unwrap())
            .collect();
        for (c, client) in clients.iter_mut().enumerate() {
            let mut batch = String::new();
            for r in 0..5 {
                batch.push_str(&format!(
                    "GET /c{c}/r{r} HTTP/1.1\r\nHost: localhost\r\n\r\n"
                ));
            }
            client.write_raw(batch.as_bytes()).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while started.load(Ordering::SeqCst) < 101 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(started.load(Ordering::SeqCst), 101, "requests in flight");

        let shutdown = std::thread::spawn(move || {
            let report = endpoint.shutdown_graceful(Duration::from_secs(10));
            (report, endpoint)
        });
        let mut answered = 0;
        for (c, client) in clients.iter_mut().enumerate() {
            for r in 0..5 {
                let resp = client
                    .read_response()
                    .unwrap_or_else(|e| panic!("tls={tls} c{c}/r{r} lost: {e}"));
                assert_eq!(resp.status, 200);
                assert_eq!(resp.text(), format!("/c{c}/r{r}"));
                let closes = resp.header("connection") == Some("close");
                assert_eq!(
                    closes,
                    r == 4,
                    "tls={tls} c{c}/r{r}: Connection: close only on the last"
                );
                answered += 1;
            }
        }
        assert_eq!(answered, 100);
        // The idle keep-alive connection was closed without an answer.
        assert!(
            idle.request("/after").is_err(),
            "idle connection still served"
        );
        let (report, _endpoint) = shutdown.join().unwrap();
        assert_eq!(report.connections_cut, 0, "tls={tls}: {report:?}");
        assert!(report.elapsed < Duration::from_secs(5), "{report:?}");
        // Nothing listens any more.
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}

/// A handler that never answers: the shutdown cuts its connection at the
/// deadline, says so in the report, and returns.
#[test]
fn what_cannot_finish_is_cut_at_the_deadline_and_reported() {
    init_logging();
    let mut endpoint = slow_endpoint(false, Arc::default());
    let port = endpoint.local_addr().port();
    let mut stuck = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stuck
        .write_all(b"GET /never HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let report = endpoint.shutdown_graceful(Duration::from_millis(300));
    let took = started.elapsed();
    assert_eq!(report.connections_cut, 1, "{report:?}");
    assert!(
        took >= Duration::from_millis(300),
        "returned before the deadline: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    stuck
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        matches!(stuck.read(&mut buf), Ok(0) | Err(_)),
        "the stuck connection stays open"
    );
}
