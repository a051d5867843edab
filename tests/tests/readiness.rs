//! Readiness during a graceful shutdown: `ShutdownHandle::is_draining`
//! turns a readiness route to `503` as soon as the shutdown starts, while
//! the requests in flight finish; `Options::drain_grace` answers a request
//! sent on a keep-alive connection after the listener closed (with
//! `Connection: close`); `Options::drain_delay` keeps serving, readiness
//! already failing, before the listener closes.

use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pistachio_rest::http::{
    Endpoint, Options, Request, ResponseWriter, ShutdownHandle, StatusCode,
};
use pistachio_tests::client::AnyClient;
use pistachio_tests::init_logging;

/// `/readyz` (503 once draining), `/slow` (answered 500 ms later, from
/// another thread), anything else `200 hello`.
fn handler(
    stopping: ShutdownHandle,
    slow_started: Arc<AtomicUsize>,
) -> impl Fn(Request, ResponseWriter) + Send + Sync + 'static {
    move |req: Request, resp: ResponseWriter| match req.path() {
        "/readyz" if stopping.is_draining() => {
            resp.send(StatusCode::SERVICE_UNAVAILABLE, "draining")
        }
        "/readyz" => resp.send(StatusCode::OK, "ready"),
        "/slow" => {
            slow_started.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(500));
                resp.send(StatusCode::OK, "slow done");
            });
        }
        _ => resp.send(StatusCode::OK, "hello"),
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn readiness_fails_as_soon_as_the_shutdown_starts_while_requests_in_flight_finish() {
    init_logging();
    let options = Options::default()
        .threads(2)
        .drain_grace(Duration::from_secs(1));
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    let port = endpoint.local_addr().port();
    let stopping = endpoint.shutdown_handle();
    let slow_started = Arc::new(AtomicUsize::new(0));
    endpoint
        .serve_threaded(handler(stopping.clone(), Arc::clone(&slow_started)))
        .unwrap();

    // A balancer's probe connection, kept alive, and a request in flight.
    let mut probe = AnyClient::connect(port, false).unwrap();
    let ready = probe.request("/readyz").unwrap();
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready"));
    assert!(!stopping.is_draining());
    let mut slow = AnyClient::connect(port, false).unwrap();
    slow.write_raw(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    wait_for("the slow request", || {
        slow_started.load(Ordering::SeqCst) == 1
    });

    let shutdown = std::thread::spawn(move || {
        let report = endpoint.shutdown_graceful(Duration::from_secs(10));
        (report, endpoint)
    });
    wait_for("the drain to start", || stopping.is_draining());
    wait_for("the listener to close", || {
        TcpStream::connect(("127.0.0.1", port)).is_err()
    });
    // Give the workers the drain order (it follows the listener's close).
    std::thread::sleep(Duration::from_millis(100));

    // The probe's keep-alive connection is still served, in the grace, and
    // readiness says the server is going: the answer closes it.
    let unready = probe
        .request("/readyz")
        .expect("the keep-alive probe connection was closed under its request");
    assert_eq!((unready.status, unready.text().as_str()), (503, "draining"));
    assert_eq!(unready.header("connection"), Some("close"));

    // The request in flight when the shutdown started is answered.
    let done = slow
        .read_response()
        .expect("the request in flight was lost");
    assert_eq!((done.status, done.text().as_str()), (200, "slow done"));

    let (report, _endpoint) = shutdown.join().unwrap();
    assert_eq!(report.connections_cut, 0, "{report:?}");
}

#[test]
fn without_a_grace_an_idle_keep_alive_connection_closes_at_once() {
    init_logging();
    let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(1)).unwrap();
    let port = endpoint.local_addr().port();
    let stopping = endpoint.shutdown_handle();
    endpoint
        .serve_threaded(handler(stopping, Arc::default()))
        .unwrap();
    let mut idle = AnyClient::connect(port, false).unwrap();
    assert_eq!(idle.request("/").unwrap().status, 200);
    let report = endpoint.shutdown_graceful(Duration::from_secs(5));
    assert_eq!(report.connections_cut, 0, "{report:?}");
    assert!(idle.request("/").is_err(), "served after the drain");
}

#[test]
fn drain_delay_keeps_serving_with_readiness_failing_before_the_listener_closes() {
    init_logging();
    let options = Options::default()
        .threads(1)
        .drain_delay(Duration::from_millis(800));
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    let port = endpoint.local_addr().port();
    let stopping = endpoint.shutdown_handle();
    let handle = stopping.clone();
    let server = std::thread::spawn(move || {
        endpoint
            .serve(handler(handle, Arc::default()))
            .expect("serve")
    });
    wait_for("the server", || {
        AnyClient::connect(port, false)
            .and_then(|mut c| c.request("/readyz"))
            .is_ok_and(|r| r.status == 200)
    });

    stopping.shutdown();
    assert!(stopping.is_draining());
    // Still accepting: a new connection is served, and told "not ready".
    let mut late = AnyClient::connect(port, false).expect("the listener closed before the delay");
    let unready = late.request("/readyz").unwrap();
    assert_eq!((unready.status, unready.text().as_str()), (503, "draining"));
    assert_eq!(late.request("/work").unwrap().text(), "hello");

    let report = server.join().unwrap();
    assert_eq!(report.connections_cut, 0, "{report:?}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
