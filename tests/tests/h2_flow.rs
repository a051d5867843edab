//! HTTP/2 flow control of responses (both levels, window changes applied
//! to open streams, a streamed answer held to its buffer while the client
//! reads nothing) and graceful shutdown (GOAWAY with the last stream,
//! in-flight streams finish, then the close, reported as drained).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pistachio_http::{Endpoint, Options, Request, ResponseWriter, StatusCode};
use pistachio_tests::h2::{code, flag, get_fields, kind, setting, Event, H2Client};
use pistachio_tests::init_logging;

const BIG: usize = 100_000;
const PRODUCED: usize = 4 * 1024 * 1024;
const PIECE: usize = 4096;
const STREAM_BUFFER: usize = 64 * 1024;

fn serve(progress: Arc<AtomicUsize>) -> Endpoint {
    serve_with(progress, Options::default())
}

fn serve_with(progress: Arc<AtomicUsize>, options: Options) -> Endpoint {
    init_logging();
    let options = options.threads(1).max_stream_buffer(STREAM_BUFFER);
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    endpoint
        .serve_threaded(move |req: Request, resp: ResponseWriter| match req.path() {
            "/big" => resp.send(StatusCode::OK, vec![b'b'; BIG]),
            "/late" => {
                let mut resp = resp;
                resp.timeout_after(Duration::from_millis(200));
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(600));
                    resp.send(StatusCode::OK, "too late");
                });
            }
            "/hold" => {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(500));
                    resp.send(StatusCode::OK, "held");
                });
            }
            "/produce" => {
                let progress = Arc::clone(&progress);
                let mut stream = resp.stream(StatusCode::OK);
                std::thread::spawn(move || {
                    for _ in 0..PRODUCED / PIECE {
                        if stream.send_chunk([b'p'; PIECE]).is_err() {
                            return;
                        }
                        progress.fetch_add(PIECE, Ordering::SeqCst);
                    }
                    stream.end();
                });
            }
            _ => resp.send(StatusCode::OK, "ok"),
        })
        .unwrap();
    endpoint
}

/// DATA bytes per stream that arrive until the server goes quiet.
fn data_until_quiet(c: &mut H2Client, counts: &mut std::collections::HashMap<u32, usize>) {
    c.set_read_timeout(Duration::from_millis(300));
    loop {
        match c.read_event().unwrap() {
            Event::Frame(f) if f.kind == kind::DATA => {
                *counts.entry(f.stream).or_default() += f.payload.len();
            }
            Event::Frame(_) => {}
            Event::Timeout => break,
            Event::Closed => panic!("closed"),
        }
    }
    c.set_read_timeout(Duration::from_secs(5));
}

/// A stream gets no more than its window; WINDOW_UPDATE opens it by the
/// increment, and a new SETTINGS_INITIAL_WINDOW_SIZE changes the window
/// of the open stream by the difference (RFC 9113 §6.9.2).
#[test]
fn stream_window_bounds_the_response() {
    let server = serve(Arc::default());
    let port = server.local_addr().port();
    let mut c = H2Client::connect_with(port, &[(setting::INITIAL_WINDOW_SIZE, 100)]).unwrap();
    c.headers(1, &get_fields("/big"), true).unwrap();
    let mut counts = Default::default();
    data_until_quiet(&mut c, &mut counts);
    assert_eq!(counts.get(&1), Some(&100));
    c.window_update(1, 50).unwrap();
    data_until_quiet(&mut c, &mut counts);
    assert_eq!(counts.get(&1), Some(&150));
    c.settings(&[(setting::INITIAL_WINDOW_SIZE, 300)]).unwrap();
    data_until_quiet(&mut c, &mut counts);
    assert_eq!(counts.get(&1), Some(&350));
    // Shrinking by 200 makes the (empty) window -200: +150 leaves it
    // negative, nothing is sent until it is positive again.
    c.settings(&[(setting::INITIAL_WINDOW_SIZE, 100)]).unwrap();
    c.window_update(1, 150).unwrap();
    data_until_quiet(&mut c, &mut counts);
    assert_eq!(counts.get(&1), Some(&350));
    c.window_update(1, 60).unwrap();
    data_until_quiet(&mut c, &mut counts);
    assert_eq!(counts.get(&1), Some(&360));
}

/// All streams together get no more than the connection's window.
#[test]
fn connection_window_bounds_all_streams() {
    let server = serve(Arc::default());
    let port = server.local_addr().port();
    let mut c = H2Client::connect_with(port, &[(setting::INITIAL_WINDOW_SIZE, 1 << 20)]).unwrap();
    for id in [1, 3, 5] {
        c.headers(id, &get_fields("/big"), true).unwrap();
    }
    let mut counts = Default::default();
    data_until_quiet(&mut c, &mut counts);
    assert_eq!(counts.values().sum::<usize>(), 65_535);
    c.window_update(0, 100_000).unwrap();
    data_until_quiet(&mut c, &mut counts);
    assert_eq!(counts.values().sum::<usize>(), 165_535);
    c.window_update(0, 1 << 20).unwrap();
    data_until_quiet(&mut c, &mut counts);
    assert_eq!(counts.values().sum::<usize>(), 3 * BIG);
}

/// A streamed answer to a client that opens no window: its producer is
/// held once `max_stream_buffer` is handed over, so the server never holds
/// more than that of it; once the client reads, all of it arrives.
#[test]
fn streamed_answer_waits_for_the_window() {
    let progress = Arc::new(AtomicUsize::new(0));
    let server = serve(Arc::clone(&progress));
    let port = server.local_addr().port();
    let mut c = H2Client::connect_with(port, &[(setting::INITIAL_WINDOW_SIZE, 0)]).unwrap();
    c.headers(1, &get_fields("/produce"), true).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let produced = progress.load(Ordering::SeqCst);
    // What the stream buffers before handing over (16 KiB), what it may
    // have handed over, and the piece that found no room.
    assert!(
        produced <= STREAM_BUFFER + 16 * 1024 + PIECE,
        "the producer ran ahead to {produced} bytes"
    );
    c.window_update(1, PRODUCED as u32).unwrap();
    c.window_update(0, PRODUCED as u32).unwrap();
    let started = Instant::now();
    let mut got = 0;
    loop {
        let f = c
            .wait_for(Duration::from_secs(10), |f| {
                f.stream == 1 && f.kind == kind::DATA
            })
            .expect("the rest of the answer");
        got += f.payload.len();
        if f.has(flag::END_STREAM) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    assert_eq!(got, PRODUCED);
    assert_eq!(progress.load(Ordering::SeqCst), PRODUCED);
}

/// Graceful shutdown: GOAWAY NO_ERROR naming the last stream, the stream
/// in flight is answered in full, a later stream is ignored, then the
/// connection closes and the report counts it drained.
#[test]
fn graceful_shutdown_finishes_streams_in_flight() {
    let mut server = serve(Arc::default());
    let port = server.local_addr().port();
    let mut c = H2Client::connect(port).unwrap();
    c.headers(1, &get_fields("/hold"), true).unwrap();
    c.ping_pong().unwrap();
    let shutdown = std::thread::spawn(move || server.shutdown_graceful(Duration::from_secs(5)));
    let goaway = c
        .wait_for(Duration::from_secs(5), |f| f.kind == kind::GOAWAY)
        .expect("GOAWAY");
    assert_eq!(goaway.error_code(), code::NO_ERROR);
    assert_eq!(goaway.last_stream(), 1);
    // Above the last stream: ignored (the client may retry it elsewhere).
    c.headers(3, &get_fields("/"), true).unwrap();
    let r = c.response(1).expect("the stream in flight is answered");
    assert_eq!(r.body, b"held");
    c.expect_closed();
    let report = shutdown.join().unwrap();
    assert_eq!(report.connections_drained, 1, "{report:?}");
    assert_eq!(report.connections_cut, 0, "{report:?}");
}

/// A client that reads slowly but steadily, always leaving the server
/// waiting for window, is not taken for a stalled one: the stall timeout
/// counts from the last progress, not from the first wait.
#[test]
fn slow_but_steady_reader_is_served() {
    let limits = pistachio_http::Http2Limits::default().stall_timeout(Duration::from_millis(400));
    let server = serve_with(Arc::default(), Options::default().http2_limits(limits));
    let port = server.local_addr().port();
    let mut c = H2Client::connect_with(port, &[(setting::INITIAL_WINDOW_SIZE, 10_000)]).unwrap();
    c.headers(1, &get_fields("/big"), true).unwrap();
    let mut got = 0;
    let started = Instant::now();
    while got < BIG {
        let f = c
            .wait_for(Duration::from_secs(5), |f| {
                (f.stream == 1 && f.kind == kind::DATA) || f.kind == kind::GOAWAY
            })
            .expect("DATA");
        assert_eq!(f.kind, kind::DATA, "cut off after {got} bytes: {f:?}");
        got += f.payload.len();
        if got % 10_000 == 0 && got < BIG {
            // 10 windows of 10 kB, one every 150 ms: 1.5 s in all, far
            // beyond the stall timeout, never 400 ms without progress.
            std::thread::sleep(Duration::from_millis(150));
            c.window_update(1, 10_000).unwrap();
            c.window_update(0, 10_000).unwrap();
        }
    }
    assert_eq!(got, BIG);
    assert!(started.elapsed() > Duration::from_millis(800));
}

/// `ResponseWriter::timeout_after` works per stream: the handler that
/// does not answer in time is replaced by `Handler::on_timeout` (408),
/// and its late answer is dropped.
#[test]
fn response_deadline_per_stream() {
    let server = serve(Arc::default());
    let mut c = H2Client::connect(server.local_addr().port()).unwrap();
    c.headers(1, &get_fields("/late"), true).unwrap();
    c.headers(3, &get_fields("/"), true).unwrap();
    let rs = c.responses(&[1, 3]).unwrap();
    assert_eq!(rs[0].status, 408);
    assert_eq!(rs[1].status, 200);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(c.get(5, "/").unwrap().status, 200);
}
