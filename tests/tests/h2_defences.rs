//! Known HTTP/2 abuses against a running server: each attack ends its own
//! connection (or stream) as the limits say, the counters show it, and
//! another client is served meanwhile and after.

use std::time::{Duration, Instant};

use pistachio_http::{Endpoint, Http2Limits, Options, Request, ResponseWriter, StatusCode};
use pistachio_tests::h2::{code, flag, get_fields, kind, literal_block, setting, Event, H2Client};
use pistachio_tests::init_logging;

fn handler(req: Request, resp: ResponseWriter) {
    match req.path() {
        "/hold" => {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(800));
                resp.send(StatusCode::OK, "held");
            });
        }
        "/big" => resp.send(StatusCode::OK, vec![b'b'; 1 << 20]),
        _ => resp.send(StatusCode::OK, "ok"),
    }
}

fn serve(options: Options) -> Endpoint {
    init_logging();
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options.threads(2)).unwrap();
    endpoint.serve_threaded(handler).unwrap();
    endpoint
}

fn port(endpoint: &Endpoint) -> u16 {
    endpoint.local_addr().port()
}

/// Another client gets an answer.
#[track_caller]
fn served(endpoint: &Endpoint) {
    let mut c = H2Client::connect(port(endpoint)).expect("another client connects");
    let r = c.get(1, "/").expect("another client is served");
    assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
}

/// Writes `frames` (already encoded) as fast as the socket takes them,
/// stopping when the server closes.
fn flood(c: &mut H2Client, frame: &[u8], count: usize) {
    let batch: Vec<u8> = frame.repeat(100);
    for _ in 0..count / 100 {
        if c.write(&batch).is_err() {
            return;
        }
    }
}

/// CVE-2023-44487: streams opened and reset at once, over and over. The
/// connection ends with ENHANCE_YOUR_CALM; the handlers that ran are
/// bounded by the reset rate.
#[test]
fn rapid_reset() {
    let server = serve(Options::default());
    let mut c = H2Client::connect(port(&server)).unwrap();
    let mut attack = Vec::new();
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        attack.extend(pistachio_tests::h2::encode_frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            id,
            &literal_block(&get_fields("/")),
        ));
        attack.extend(pistachio_tests::h2::encode_frame(
            kind::RST_STREAM,
            0,
            id,
            &code::CANCEL.to_be_bytes(),
        ));
    }
    let _ = c.write(&attack);
    c.expect_goaway(code::ENHANCE_YOUR_CALM);
    served(&server);
    let stats = server.http2_stats();
    assert!(stats.abuse_closes >= 1, "{stats:?}");
    assert!(stats.resets_received >= 1, "{stats:?}");
    assert!(stats.streams < 2000, "{stats:?}");
}

/// A stream the client resets still counts against the concurrency limit
/// until its handler has answered: resetting does not let a client run
/// more handlers at once.
#[test]
fn reset_streams_count_until_their_handler_answers() {
    let limits = Http2Limits::default().max_concurrent_streams(3);
    let server = serve(Options::default().http2_limits(limits));
    let mut c = H2Client::connect(port(&server)).unwrap();
    for id in [1, 3, 5] {
        c.headers(id, &get_fields("/hold"), true).unwrap();
        c.frame(kind::RST_STREAM, 0, id, &code::CANCEL.to_be_bytes())
            .unwrap();
    }
    c.headers(7, &get_fields("/"), true).unwrap();
    c.expect_rst(7, code::REFUSED_STREAM);
    // Once the held handlers answered (800 ms), streams are served again.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(c.get(9, "/").unwrap().status, 200);
    assert!(server.http2_stats().streams_refused >= 1);
}

/// A header block that never ends (CONTINUATION after CONTINUATION):
/// 15 kB fragments pass the block size cap within a few frames, empty ones
/// the cap on their number.
#[test]
fn continuation_flood() {
    let server = serve(Options::default());
    let mut c = H2Client::connect(port(&server)).unwrap();
    let block = literal_block(&get_fields("/"));
    c.frame(kind::HEADERS, flag::END_STREAM, 1, &block).unwrap();
    let piece = pistachio_tests::h2::encode_frame(
        kind::CONTINUATION,
        0,
        1,
        &literal_block(&[("x-filler", &"a".repeat(15_000))]),
    );
    // Five fragments (75 kB) are more than any header block may take.
    for _ in 0..5 {
        let _ = c.write(&piece);
    }
    c.expect_goaway(code::ENHANCE_YOUR_CALM);
    served(&server);
    // Empty CONTINUATION frames: nothing accumulates, they are counted.
    let mut c = H2Client::connect(port(&server)).unwrap();
    c.frame(kind::HEADERS, flag::END_STREAM, 1, &block).unwrap();
    let empty = pistachio_tests::h2::encode_frame(kind::CONTINUATION, 0, 1, &[]);
    flood(&mut c, &empty, 10_000);
    c.expect_goaway(code::ENHANCE_YOUR_CALM);
    served(&server);
}

/// An HPACK bomb: one 4 KB entry in the dynamic table, then a block of
/// one-byte references to it that decodes to megabytes. Refused with 431
/// without keeping the list; the connection goes on.
#[test]
fn hpack_bomb() {
    let server = serve(Options::default());
    let mut c = H2Client::connect(port(&server)).unwrap();
    // Literal with incremental indexing, new name "x", a 4000-byte value.
    let mut first = literal_block(&get_fields("/"));
    first.extend_from_slice(&[0x40, 1, b'x', 0x7f]);
    let mut rest = 4000 - 127;
    while rest >= 128 {
        first.push((rest % 128 + 128) as u8);
        rest /= 128;
    }
    first.push(rest as u8);
    first.extend(std::iter::repeat(b'a').take(4000));
    c.frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &first,
    )
    .unwrap();
    let r = c.response(1).expect("a response");
    assert_eq!(r.status, 200);
    // The bomb: 16 000 references to dynamic entry 62 (64 MB decoded).
    let mut bomb = literal_block(&get_fields("/"));
    bomb.extend(std::iter::repeat(0x80 | 62).take(16_000));
    c.frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &bomb,
    )
    .unwrap();
    let r = c.response(3).expect("a response");
    assert_eq!(r.status, 431);
    assert_eq!(c.get(5, "/").unwrap().status, 200);
    served(&server);
}

fn control_flood(frame: Vec<u8>, setup: impl FnOnce(&mut H2Client)) {
    let server = serve(Options::default());
    let mut c = H2Client::connect(port(&server)).unwrap();
    setup(&mut c);
    // The server stops reading while its answers pile up: write from a
    // thread so that a full socket does not stall the test.
    let mut writer = c.try_clone().unwrap();
    let flooder = std::thread::spawn(move || flood(&mut writer, &frame, 20_000));
    c.expect_goaway(code::ENHANCE_YOUR_CALM);
    let _ = flooder.join();
    served(&server);
    assert!(server.http2_stats().abuse_closes >= 1);
}

#[test]
fn settings_flood() {
    control_flood(
        pistachio_tests::h2::encode_frame(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]),
        |_| {},
    );
}

#[test]
fn ping_flood() {
    control_flood(
        pistachio_tests::h2::encode_frame(kind::PING, 0, 0, b"flooding"),
        |_| {},
    );
}

#[test]
fn empty_data_flood() {
    control_flood(
        pistachio_tests::h2::encode_frame(kind::DATA, 0, 1, &[]),
        |c| {
            let mut fields = get_fields("/");
            fields[0] = (":method", "POST");
            c.headers(1, &fields, false).unwrap();
        },
    );
}

#[test]
fn window_update_flood() {
    control_flood(
        pistachio_tests::h2::encode_frame(kind::WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()),
        |_| {},
    );
}

#[test]
fn priority_flood() {
    control_flood(
        pistachio_tests::h2::encode_frame(kind::PRIORITY, 0, 3, &[0, 0, 0, 1, 16]),
        |_| {},
    );
}

/// A client that asks for a large answer and opens no window: the
/// connection ends after the stall timeout instead of holding the answer
/// forever.
#[test]
fn zero_window_slow_reader() {
    let limits = Http2Limits::default().stall_timeout(Duration::from_millis(500));
    let server = serve(Options::default().http2_limits(limits));
    let mut c =
        H2Client::connect_with(port(&server), &[(setting::INITIAL_WINDOW_SIZE, 0)]).unwrap();
    c.headers(1, &get_fields("/big"), true).unwrap();
    let started = Instant::now();
    c.expect_goaway(code::NO_ERROR);
    assert!(started.elapsed() >= Duration::from_millis(400));
    served(&server);
    assert!(server.http2_stats().timeouts >= 1);
}

/// An HTTP/2 connection with nothing to do is closed after the keep-alive
/// timeout, with GOAWAY.
#[test]
fn idle_connection() {
    let server = serve(Options::default().keepalive_timeout(Duration::from_millis(300)));
    let mut c = H2Client::connect(port(&server)).unwrap();
    assert_eq!(c.get(1, "/").unwrap().status, 200);
    let started = Instant::now();
    let goaway = c.expect_goaway(code::NO_ERROR);
    assert_eq!(goaway.last_stream(), 1);
    assert!(started.elapsed() < Duration::from_secs(3));
    served(&server);
}

/// A client that connects and never sends the preface (nothing, or part
/// of it) is closed after the request timeout.
#[test]
fn no_preface() {
    let server = serve(Options::default().header_timeout(Duration::from_millis(300)));
    for sent in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
        let mut c = H2Client::connect_raw(port(&server)).unwrap();
        c.write(sent).unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(c.socket(), &mut rest);
        assert!(started.elapsed() < Duration::from_secs(3), "{sent:?}");
        served(&server);
    }
}

/// A client that sent the preface but never its SETTINGS: the same.
#[test]
fn preface_without_settings() {
    let server = serve(Options::default().header_timeout(Duration::from_millis(300)));
    let mut c = H2Client::connect_raw(port(&server)).unwrap();
    c.write(pistachio_tests::h2::PREFACE).unwrap();
    let started = Instant::now();
    loop {
        match c.read_event().unwrap() {
            Event::Closed => break,
            Event::Frame(_) => {}
            Event::Timeout => panic!("not closed"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    served(&server);
}

/// A request whose body never comes: the stream is reset (CANCEL) after
/// the body timeout, the connection goes on.
#[test]
fn stalled_request_body() {
    let server = serve(Options::default().body_timeout(Duration::from_millis(300)));
    let mut c = H2Client::connect(port(&server)).unwrap();
    let mut fields = get_fields("/");
    fields[0] = (":method", "POST");
    c.headers(1, &fields, false).unwrap();
    c.frame(kind::DATA, 0, 1, b"part").unwrap();
    c.expect_rst(1, code::CANCEL);
    assert_eq!(c.get(3, "/").unwrap().status, 200);
}

/// Many streams uploading buffered bodies at once: past the endpoint's
/// body limit in total, only the oldest stream's window is reopened, so a
/// connection cannot make the server buffer `max_concurrent_streams` times
/// `max_request_size`; the others go on as the oldest complete.
#[test]
fn buffered_bodies_share_one_budget() {
    let limits = Http2Limits::default().initial_window_size(64 * 1024);
    let server = serve(
        Options::default()
            .max_request_size(128 * 1024)
            .http2_limits(limits),
    );
    let mut c = H2Client::connect(port(&server)).unwrap();
    let mut fields = get_fields("/");
    fields[0] = (":method", "POST");
    let ids: Vec<u32> = (0..10).map(|i| 2 * i + 1).collect();
    let chunk = vec![b'u'; 16 * 1024];
    for &id in &ids {
        c.headers(id, &fields, false).unwrap();
        for _ in 0..4 {
            c.frame(kind::DATA, 0, id, &chunk).unwrap();
        }
    }
    // 640 kB buffered against a 128 kB budget: later streams get nothing.
    let mut granted = std::collections::BTreeSet::new();
    c.set_read_timeout(Duration::from_millis(300));
    while let Ok(Event::Frame(f)) = c.read_event() {
        if f.kind == kind::WINDOW_UPDATE && f.stream != 0 {
            granted.insert(f.stream);
        }
    }
    c.set_read_timeout(Duration::from_secs(5));
    assert!(granted.contains(&1), "the oldest goes on: {granted:?}");
    assert!(
        granted.iter().all(|&id| id <= 5),
        "streams past the budget were reopened: {granted:?}"
    );
    // The oldest streams complete; then the next ones are reopened.
    for id in [1, 3, 5] {
        c.frame(kind::DATA, flag::END_STREAM, id, &[]).unwrap();
    }
    let f = c
        .wait_for(Duration::from_secs(5), |f| {
            f.kind == kind::WINDOW_UPDATE && f.stream >= 7
        })
        .expect("a later stream reopened once budget frees");
    assert!(f.stream >= 7);
    served(&server);
}
