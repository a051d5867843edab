//! A `ResponseStream` written faster than its client reads holds at most
//! `Options::max_stream_buffer` in flight: its producer waits (or is told
//! to), and learns promptly when the client is gone.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use pistachio_rest::http::{Options, Request, ResponseWriter, StatusCode};
use pistachio_tests::{init_logging, TestServer};

/// The tests measure this process's memory: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const CHUNK: usize = 64 * 1024;
/// `10000\r\n` + 64 KiB + `\r\n`.
const FRAMED_CHUNK: usize = 7 + CHUNK + 2;

/// Resident memory of this process (which hosts the server), in bytes.
fn rss() -> u64 {
    let kib = pistachio_tests::rss_kib();
    assert!(kib > 0, "VmRSS of /proc/self/status");
    kib * 1024
}

fn options() -> Options {
    Options::default()
        .threads(1)
        .max_stream_buffer(256 * 1024)
        .stream_write_timeout(Duration::from_secs(10))
}

/// Sends a GET and reads the response head; returns what came after it.
fn get(addr: std::net::SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the head");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(head.contains("chunked"), "{head}");
            return (client, got[end + 4..].to_vec());
        }
    }
}

/// Streams 1 GiB from a producer thread to a client that reads slowly for
/// two seconds, then fast: the server's memory stays flat.
#[test]
fn slow_reader_does_not_make_the_stream_buffer_without_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    init_logging();
    const CHUNKS: usize = 16 * 1024; // 1 GiB
    let stop = Arc::new(AtomicBool::new(false));
    let stop_producer = Arc::clone(&stop);
    let (done_tx, done_rx) = mpsc::channel();
    let done_tx = Mutex::new(done_tx);
    let server = TestServer::start_with(
        1,
        false,
        options(),
        move |_req: Request, resp: ResponseWriter| {
            let mut stream = resp.stream(StatusCode::OK);
            let stop = Arc::clone(&stop_producer);
            let done = done_tx.lock().unwrap().clone();
            thread::spawn(move || {
                let chunk = vec![b'x'; CHUNK];
                for _ in 0..CHUNKS {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Err(e) = stream.send_chunk(&chunk) {
                        let _ = done.send(Err(e));
                        return;
                    }
                }
                stream.end();
                let _ = done.send(Ok(()));
            });
        },
    );
    let before = rss();
    let (mut client, first) = get(server.addr());
    let want = CHUNKS * FRAMED_CHUNK + 5;
    let mut got = first.len();
    let mut tail = first;
    let mut peak = rss();
    let mut buf = vec![0u8; 256 * 1024];
    let slow_until = Instant::now() + Duration::from_secs(2);
    let mut reads = 0u64;
    while got < want {
        let slow = Instant::now() < slow_until;
        let n = if slow {
            thread::sleep(Duration::from_millis(20));
            client.read(&mut buf[..4096]).unwrap()
        } else {
            client.read(&mut buf).unwrap()
        };
        assert!(n > 0, "closed after {got} of {want} bytes");
        got += n;
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 64 {
            tail.drain(..tail.len() - 64);
        }
        reads += 1;
        if slow || reads % 64 == 0 {
            peak = peak.max(rss());
            let grown = peak.saturating_sub(before);
            if grown >= 16 << 20 {
                stop.store(true, Ordering::SeqCst);
                panic!(
                    "server RSS grew by {} MiB while streaming to a slow reader",
                    grown >> 20
                );
            }
        }
    }
    assert_eq!(got, want);
    assert!(tail.ends_with(b"\r\n0\r\n\r\n"), "no terminal chunk");
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("producer finished")
        .expect("producer wrote everything");
    let grown = peak.saturating_sub(before);
    println!(
        "streamed {} MiB: RSS before {} MiB, peak {} MiB, grew by {} KiB",
        want >> 20,
        before >> 20,
        peak >> 20,
        grown >> 10
    );
    assert!(grown < 16 << 20, "RSS grew by {} MiB", grown >> 20);
}

/// The client reads a little, then disconnects: the producer's next writes
/// fail with "client went away" promptly, instead of piling up or waiting
/// out the write timeout.
#[test]
fn producer_learns_that_the_client_went_away() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    init_logging();
    let (done_tx, done_rx) = mpsc::channel();
    let done_tx = Mutex::new(done_tx);
    let server = TestServer::start_with(
        1,
        false,
        options(),
        move |_req: Request, resp: ResponseWriter| {
            let mut stream = resp.stream(StatusCode::OK);
            let done = done_tx.lock().unwrap().clone();
            thread::spawn(move || {
                let chunk = vec![b'y'; CHUNK];
                // Bounded: 64 GiB would take far longer than the test allows.
                for writes in 0..1_000_000u64 {
                    if let Err(e) = stream.send_chunk(&chunk) {
                        let _ = done.send((e, writes, Instant::now()));
                        return;
                    }
                }
                panic!("a million writes to a client that went away all succeeded");
            });
        },
    );
    let (mut client, _) = get(server.addr());
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < 1 << 20 {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0);
        got += n;
    }
    drop(client);
    let gone_at = Instant::now();
    let (error, writes, failed_at) = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the producer's writes kept succeeding for 30 s after the client left");
    let after = failed_at.saturating_duration_since(gone_at);
    println!("write {writes} failed {after:?} after the disconnect: {error}");
    assert_eq!(error.kind(), ErrorKind::BrokenPipe, "{error}");
    assert_eq!(error.to_string(), "client went away");
    assert!(
        after < Duration::from_secs(5),
        "the producer learnt of the disconnect only after {after:?}"
    );
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// The non-blocking form: `try_write` says `WouldBlock` while the client
/// lags and `poll_ready` wakes the producer when room opens; on the
/// worker thread itself, `send_chunk` refuses rather than blocking the
/// loop.
#[test]
fn try_write_is_told_to_wait_and_woken_when_room_opens() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    init_logging();
    const CHUNKS: usize = 1024; // 64 MiB
    let (done_tx, done_rx) = mpsc::channel();
    let done_tx = Mutex::new(done_tx);
    let server = TestServer::start_with(
        1,
        false,
        options(),
        move |_req: Request, resp: ResponseWriter| {
            let mut stream = resp.stream(StatusCode::OK);
            let chunk = vec![b'z'; CHUNK];
            // On the worker, inside the handler: nothing is written until it
            // returns, so room runs out, and send_chunk must not wait for it.
            let mut on_worker = 0;
            let refused = loop {
                match stream.send_chunk(&chunk) {
                    Ok(()) => on_worker += 1,
                    Err(e) => break e,
                }
                assert!(on_worker < 64, "send_chunk on the worker never refused");
            };
            let done = done_tx.lock().unwrap().clone();
            thread::spawn(move || {
                let waker = Waker::from(Arc::new(Unpark(thread::current())));
                let mut cx = Context::from_waker(&waker);
                let mut would_block = 0u64;
                let mut sent = on_worker;
                while sent < CHUNKS {
                    match stream.try_write(&chunk) {
                        Ok(()) => sent += 1,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            would_block += 1;
                            while stream.poll_ready(&mut cx).is_pending() {
                                thread::park_timeout(Duration::from_secs(1));
                            }
                        }
                        Err(e) => panic!("try_write failed: {e}"),
                    }
                }
                stream.end();
                let _ = done.send((refused, on_worker, would_block));
            });
        },
    );
    let (mut client, first) = get(server.addr());
    let want = CHUNKS * FRAMED_CHUNK + 5;
    let mut got = first.len();
    let mut buf = vec![0u8; 256 * 1024];
    let slow_until = Instant::now() + Duration::from_secs(1);
    while got < want {
        let n = if Instant::now() < slow_until {
            thread::sleep(Duration::from_millis(20));
            client.read(&mut buf[..4096]).unwrap()
        } else {
            client.read(&mut buf).unwrap()
        };
        assert!(n > 0, "closed after {got} of {want} bytes");
        got += n;
    }
    assert_eq!(got, want);
    let (refused, on_worker, would_block) = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("producer finished");
    println!("on the worker: {on_worker} chunks, then {refused}; off it: {would_block} WouldBlock");
    assert_eq!(refused.kind(), ErrorKind::WouldBlock, "{refused}");
    assert!(
        would_block > 0,
        "try_write never said WouldBlock to a producer 64 MiB ahead of its client"
    );
}
