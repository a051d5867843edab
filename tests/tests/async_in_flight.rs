//! Five hundred async handlers in flight at once on two reactor threads.
//!
//! A binary of its own: its thousand-odd sockets would push the descriptors
//! of libcurl clients running at the same time in the same process past
//! `FD_SETSIZE` (1024). The statically built libcurl of the `curl` crate
//! waits with `select()` (its build names the poll switch of older curl
//! versions), which refuses such descriptors, and the transfer then fails
//! with error 43 before it starts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pistachio_rest::asynch::Runtime;
use pistachio_rest::{Endpoint, Options, RestRequest, Router};
use pistachio_tests::init_logging;

fn parse(raw: &str) -> (u16, String, String) {
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head[9..12].parse().unwrap();
    (status, head.to_owned(), body.to_owned())
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
