//! Async route handlers on a tokio runtime (`pistachio_rest::asynch`) and
//! the bounded pool for blocking handlers (`pistachio_rest::blocking`),
//! with real clients on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pistachio_rest::asynch::Runtime;
use pistachio_rest::blocking::{BlockingPool, BUSY_BODY};
use pistachio_rest::testing::TestClient;
use pistachio_rest::{
    Endpoint, HttpError, Json, Options, RestRequest, RestResponse, Router, StatusCode,
};
use pistachio_tests::init_logging;

/// One `Connection: close` exchange: status line and headers, body.
fn exchange(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).unwrap();
    parse(&raw)
}

fn parse(raw: &str) -> (u16, String, String) {
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head[9..12].parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// Panics, as a handler with a bug would (a function, so that the
/// handlers that call it keep their `()` output).
fn give_up(why: &str) {
    panic!("{why}");
}

/// Waits (bounded) until `done()` holds.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn five_hundred_async_handlers_are_in_flight_at_once() {
    init_logging();
    const CLIENTS: usize = 500;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let high_water = Arc::new(AtomicUsize::new(0));
    let arrived = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(20);

    let rt = Runtime::new(2).unwrap();
    let mut router = Router::new();
    let (inf, high, arr) = (in_flight.clone(), high_water.clone(), arrived.clone());
    router.get(
        "/sleep",
        rt.reply(move |_req: RestRequest| {
            let (in_flight, high_water, arrived) = (inf.clone(), high.clone(), arr.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                high_water.fetch_max(now, Ordering::SeqCst);
                arrived.fetch_add(1, Ordering::SeqCst);
                // Each handler awaits 200 ms timers until every request has
                // arrived (bounded by the test's deadline): with handlers
                // that held the reactor threads, the others could not
                // arrive meanwhile.
                while Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if arrived.load(Ordering::SeqCst) >= CLIENTS {
                        break;
                    }
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
                "slept"
            }
        }),
    );
    let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(2)).unwrap();
    endpoint.serve_threaded(router).unwrap();
    let addr = endpoint.local_addr();

    // Every request is written before any answer is read.
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut tcp = TcpStream::connect(addr).unwrap();
            tcp.write_all(b"GET /sleep HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .unwrap();
            tcp
        })
        .collect();
    for (i, tcp) in clients.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        tcp.set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .unwrap();
        let mut raw = String::new();
        if let Err(e) = tcp.read_to_string(&mut raw) {
            panic!(
                "answer {i} missing at the deadline ({e}); high water {}",
                high_water.load(Ordering::SeqCst)
            );
        }
        let (status, _, body) = parse(&raw);
        assert_eq!((status, body.as_str()), (200, "slept"));
    }
    assert_eq!(high_water.load(Ordering::SeqCst), CLIENTS);
    assert_eq!(in_flight.load(Ordering::SeqCst), 0);
    endpoint.shutdown();
}

#[test]
fn async_panic_is_a_500_for_that_request_only() {
    init_logging();
    let rt = Runtime::new(1).unwrap();
    let mut router = Router::new();
    router
        .get(
            "/port",
            rt.handler(|_req: RestRequest, resp: RestResponse| async move {
                tokio::task::yield_now().await;
                let port = resp.peer_addr().port();
                resp.send(StatusCode::OK, port.to_string());
            }),
        )
        .get(
            "/panic-now",
            rt.reply(|_req: RestRequest| async move {
                give_up("handler gave up");
                "unreachable"
            }),
        )
        .get(
            "/panic-later",
            rt.handler(|_req: RestRequest, _resp: RestResponse| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                give_up("handler gave up after an await");
            }),
        )
        .get(
            "/conflict",
            rt.handler(|_req: RestRequest, _resp: RestResponse| async move {
                tokio::task::yield_now().await;
                Err::<(), _>(HttpError::new(StatusCode::CONFLICT, "taken"))
            }),
        )
        .get(
            "/items/:id",
            rt.reply(|req: RestRequest| async move {
                let id: u32 = req.param("id")?;
                Ok::<_, HttpError>((StatusCode::CREATED, Json(vec![id])))
            }),
        );
    let client = TestClient::new(router).timeout(Duration::from_secs(10));

    // All on the one keep-alive connection of the client.
    let port = client.get("/port").send().text();
    let r = client.get("/panic-now").send();
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(client.get("/port").send().text(), port);
    let r = client.get("/panic-later").send();
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(client.get("/port").send().text(), port);
    let r = client.get("/conflict").send();
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::CONFLICT, "taken")
    );
    let r = client.get("/items/7").send();
    assert_eq!((r.status, r.text().as_str()), (StatusCode::CREATED, "[7]"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        client.get("/items/x").send().status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(client.get("/port").send().text(), port);

    // Pipelined on one raw connection: each answer in order.
    let mut tcp = TcpStream::connect(client.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp.write_all(
        b"GET /panic-later HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /items/1 HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /panic-now HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).unwrap();
    let statuses: Vec<&str> = raw
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &raw[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["500", "201", "500"], "{raw}");
}

#[test]
fn handlers_run_on_the_application_runtime() {
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("application-rt")
        .enable_all()
        .build()
        .unwrap();
    let mut router = Router::new();
    router.get(
        "/where",
        Runtime::from_handle(rt.handle().clone()).reply(|_req: RestRequest| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            thread::current().name().unwrap_or("").to_owned()
        }),
    );
    let client = TestClient::new(router);
    let r = client.get("/where").send();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "application-rt");
}

#[test]
fn blocking_pool_answers_503_when_full_and_serves_again() {
    init_logging();
    let pool = BlockingPool::builder()
        .threads(2)
        .queue(1)
        .retry_after(Duration::from_secs(3))
        .build()
        .unwrap();
    let (started_tx, started_rx) = crossbeam_channel::unbounded::<()>();
    let (release_tx, release_rx) = crossbeam_channel::unbounded::<()>();
    let mut router = Router::new();
    router
        .get(
            "/slow",
            pool.handler(move |_req: RestRequest, resp: RestResponse| {
                started_tx.send(()).unwrap();
                release_rx
                    .recv_timeout(Duration::from_secs(20))
                    .expect("released");
                resp.send(StatusCode::OK, "slow done");
            }),
        )
        .get(
            "/panic",
            pool.handler(|_req: RestRequest, _resp: RestResponse| {
                give_up("blocking handler gave up");
            }),
        )
        .get(
            "/fail",
            pool.handler(|_req: RestRequest, _resp: RestResponse| {
                Err::<(), _>(HttpError::forbidden("no"))
            }),
        )
        .get("/fast", |_req: RestRequest, resp: RestResponse| {
            resp.send(StatusCode::OK, "fast")
        });
    let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(2)).unwrap();
    endpoint.serve_threaded(router).unwrap();
    let addr = endpoint.local_addr();

    // Errors and panics of blocking handlers answer like sync ones.
    assert_eq!(exchange(addr, "/panic").0, 500);
    let (status, _, body) = exchange(addr, "/fail");
    assert_eq!((status, body.as_str()), (403, "no"));

    // Both threads busy (one request at a time, so that the second does
    // not find the first still in the queue slot), then one queued.
    let mut busy = Vec::new();
    for _ in 0..2 {
        busy.push(thread::spawn(move || exchange(addr, "/slow")));
        started_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a pool thread took a request");
    }
    let queued = thread::spawn(move || exchange(addr, "/slow"));
    wait_until("a request is queued", || pool.queued() == 1);
    assert_eq!(pool.busy(), 2);

    // Full: 503 with Retry-After, at once.
    let (status, head, body) = exchange(addr, "/slow");
    assert_eq!(status, 503, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nretry-after: 3"),
        "{head}"
    );
    assert_eq!(body, BUSY_BODY);

    // The reactor threads are free: a sync route answers meanwhile.
    let (status, _, body) = exchange(addr, "/fast");
    assert_eq!((status, body.as_str()), (200, "fast"));

    // Released, the pool answers the three it held, then serves again.
    for _ in 0..4 {
        release_tx.send(()).unwrap();
    }
    for handle in busy.into_iter().chain([queued]) {
        let (status, _, body) = handle.join().unwrap();
        assert_eq!((status, body.as_str()), (200, "slow done"));
    }
    let (status, _, body) = exchange(addr, "/slow");
    assert_eq!((status, body.as_str()), (200, "slow done"));
    endpoint.shutdown();
}
