//! Heap allocations per keep-alive request on the hello-world path,
//! counted by a global allocator wrapper on the server's worker thread.
//!
//! After warm-up there are none: the request head is parsed into a buffer
//! and a header map that the worker recycles (`http/src/pool.rs`), and
//! nothing else on the path allocates either. Every allocation on the worker
//! counts, the handler's included, so a regression anywhere on the path
//! fails here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};

use pistachio_rest::http::{Exchange, Middleware, Options, Request, ResponseWriter, StatusCode};
use pistachio_tests::{TestServer, HELLO_BODY, IO_TIMEOUT};

struct Counting;

thread_local! {
    /// The counter of the test whose server runs on this thread, set on the
    /// worker by the test's handler: each test counts its own worker only.
    static WORKER_COUNTER: Cell<Option<&'static AtomicU64>> = const { Cell::new(None) };
}

fn count() {
    if let Ok(Some(counter)) = WORKER_COUNTER.try_with(Cell::get) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator unchanged; the
// counters are atomics and the thread-local is a const-initialised Cell
// (no allocation, no re-entrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Requests sent before counting: pools, queues, timers and the head
/// buffer reach their steady size.
const WARM_UP: u64 = 2_000;

/// Requests counted.
const COUNTED: u64 = 10_000;

/// Sends `request` over one keep-alive connection to a server whose handler
/// answers `Hello, World!` when `check` accepts the request, and returns the
/// number of allocations its worker made for the last `COUNTED` of them.
fn allocations(
    counter: &'static AtomicU64,
    request: &'static [u8],
    check: fn(&Request) -> bool,
) -> u64 {
    allocations_with(counter, request, check, Options::default())
}

/// [`allocations`] with the server's `options` (one worker, plaintext).
fn allocations_with(
    counter: &'static AtomicU64,
    request: &'static [u8],
    check: fn(&Request) -> bool,
    options: Options,
) -> u64 {
    let handler = move |req: Request, resp: ResponseWriter| answer(counter, check, req, resp);
    allocations_of(counter, request, options, handler)
}

/// The handler of [`allocations_with`]: counts the worker's allocations
/// with `counter` and answers `Hello, World!` if `check` accepts `req`.
fn answer(
    counter: &'static AtomicU64,
    check: fn(&Request) -> bool,
    req: Request,
    resp: ResponseWriter,
) {
    WORKER_COUNTER.with(|c| c.set(Some(counter)));
    if check(&req) {
        resp.send(StatusCode::OK, HELLO_BODY);
    } else {
        resp.send(StatusCode::BAD_REQUEST, "unexpected request");
    }
}

/// [`allocations_with`] with a handler of the caller's (which must call
/// [`answer`]).
fn allocations_of(
    counter: &'static AtomicU64,
    request: &'static [u8],
    options: Options,
    handler: impl pistachio_rest::Handler,
) -> u64 {
    let server = TestServer::start_with(1, false, options.threads(1), handler);
    // Raw reads, not the suite's parsing client: this loop runs 12,000
    // times, and in a debug build parsing each answer would slow it by a
    // sizeable fraction; the answer is fixed and only its end matters.
    let mut client = TcpStream::connect(server.addr()).unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = [0u8; 4096];
    let mut one = |client: &mut TcpStream| {
        client.write_all(request).unwrap();
        let mut got = 0;
        while !buf[..got].ends_with(HELLO_BODY.as_bytes()) {
            assert!(
                !buf[..got].ends_with(b"unexpected request"),
                "the handler did not see the request that was sent"
            );
            let n = client.read(&mut buf[got..]).unwrap();
            assert!(n > 0, "connection closed");
            got += n;
        }
    };
    for _ in 0..WARM_UP {
        one(&mut client);
    }
    let before = counter.load(Ordering::Relaxed);
    for _ in 0..COUNTED {
        one(&mut client);
    }
    let allocations = counter.load(Ordering::Relaxed) - before;
    println!(
        "heap allocations per keep-alive request on the worker: {:.2} ({allocations} in {COUNTED})",
        allocations as f64 / COUNTED as f64
    );
    allocations
}

#[test]
fn keep_alive_hello_allocates_nothing() {
    static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
    let allocations = allocations(
        &ALLOCATIONS,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        |req| req.path() == "/" && req.host() == Some("127.0.0.1"),
    );
    assert_eq!(allocations, 0, "allocations in {COUNTED} requests");
}

/// A head with a query string and common client header fields (standard
/// names, which need no allocation): their values are slices of the head
/// too, and the recycled map has room for them.
#[test]
fn keep_alive_request_with_query_and_headers_allocates_nothing() {
    static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
    let allocations = allocations(
        &ALLOCATIONS,
        b"GET /search?q=pistachio&page=2 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
          User-Agent: allocations-test/1.0\r\nAccept: text/html, */*;q=0.8\r\n\
          Accept-Encoding: gzip, deflate\r\nAccept-Language: en\r\n\
          Cache-Control: no-cache\r\n\r\n",
        |req| {
            req.path() == "/search"
                && req.target() == "/search?q=pistachio&page=2"
                && req.query("page").as_deref() == Some("2")
                && req.user_agent() == Some("allocations-test/1.0")
                && req.accept() == Some("text/html, */*;q=0.8")
                && req.headers().len() == 6
        },
    );
    assert_eq!(allocations, 0, "allocations in {COUNTED} requests");
}

/// Counts the successful exchanges; implements only `on_complete` and
/// does not say so (`Middleware::hooks` keeps its default), so every hook
/// of every exchange runs.
#[derive(Default)]
struct CountOk(AtomicU64);

impl Middleware for CountOk {
    fn on_complete(&self, exchange: &Exchange<'_>) {
        if exchange.status.is_success() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// With an endpoint-wide middleware, the record that carries each
/// exchange's facts to its completion hooks is the connection's, reused:
/// still nothing allocated per request.
#[test]
fn keep_alive_request_with_middleware_allocates_nothing() {
    static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
    let counted = std::sync::Arc::new(CountOk::default());
    let allocations = allocations_with(
        &ALLOCATIONS,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        |req| req.path() == "/",
        Options::default().middleware(std::sync::Arc::clone(&counted)),
    );
    assert_eq!(allocations, 0, "allocations in {COUNTED} requests");
    assert_eq!(counted.0.load(Ordering::Relaxed), WARM_UP + COUNTED);
}

/// A handler with layers of its own (as a router with `layer`s is) adds
/// them to each exchange: the connection's record keeps room for them, so
/// that costs no allocation per request either.
struct WithOwnLayer {
    layer: std::sync::Arc<CountOk>,
    counter: &'static AtomicU64,
}

impl pistachio_rest::Handler for WithOwnLayer {
    fn layered(&self) -> bool {
        true
    }

    fn on_request(&self, req: Request, mut resp: ResponseWriter) {
        resp.push_layer(self.layer.clone());
        answer(self.counter, |req| req.path() == "/", req, resp);
    }
}

#[test]
fn keep_alive_request_with_handler_layers_allocates_nothing() {
    static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
    let counted = std::sync::Arc::new(CountOk::default());
    let handler = WithOwnLayer {
        layer: std::sync::Arc::clone(&counted),
        counter: &ALLOCATIONS,
    };
    let allocations = allocations_of(
        &ALLOCATIONS,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        Options::default(),
        handler,
    );
    assert_eq!(allocations, 0, "allocations in {COUNTED} requests");
    assert_eq!(counted.0.load(Ordering::Relaxed), WARM_UP + COUNTED);
}
