//! RFC 9113 conformance, frame by frame, in the style of h2spec: raw
//! frames over a plaintext (h2c) socket, one test per MUST rule. A
//! connection error must come as GOAWAY with the right code and then the
//! close; a stream error as RST_STREAM on that stream, the connection
//! going on. After each, another client is served.

use std::sync::OnceLock;
use std::time::Duration;

use pistachio_http::{Endpoint, Http2Limits, Options, Request, ResponseWriter, StatusCode};
use pistachio_tests::h2::{code, flag, get_fields, kind, literal_block, setting, Event, H2Client};
use pistachio_tests::init_logging;

fn handler(req: Request, resp: ResponseWriter) {
    match req.path() {
        "/echo" => {
            let body = req.into_body();
            resp.send(StatusCode::OK, body)
        }
        "/hold" => {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(500));
                resp.send(StatusCode::OK, "held");
            });
        }
        "/big" => resp.send(StatusCode::OK, vec![b'x'; 100_000]),
        "/long-head" => {
            let mut resp = resp;
            let long = pistachio_http::HeaderValue::from_str(&"v".repeat(LONG_FIELD)).unwrap();
            resp.headers_mut().insert("x-long", long);
            resp.send(StatusCode::OK, "ok")
        }
        "/headers" => {
            let mut names: Vec<String> = req
                .headers()
                .iter()
                .map(|(n, v)| format!("{n}={}", v.to_str().unwrap_or("?")))
                .collect();
            names.sort();
            resp.send(StatusCode::OK, names.join("\n"))
        }
        _ => resp.send(StatusCode::OK, "ok"),
    }
}

/// Length of the field of `/long-head`: its header block does not fit in
/// one frame of the default maximum size (16 KiB).
const LONG_FIELD: usize = 20_000;

/// One server for the tests that need no special limits.
fn port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        init_logging();
        let limits = Http2Limits::default().max_concurrent_streams(4);
        let mut endpoint = Endpoint::bind(
            "127.0.0.1:0",
            Options::default().threads(2).http2_limits(limits),
        )
        .unwrap();
        endpoint.serve_threaded(handler).unwrap();
        let port = endpoint.local_addr().port();
        // Serves until the test process ends.
        std::mem::forget(endpoint);
        port
    })
}

fn connect() -> H2Client {
    H2Client::connect(port()).expect("HTTP/2 connection")
}

/// Another client is served normally.
fn served() {
    let mut c = connect();
    let r = c.get(1, "/").expect("a response");
    assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
}

/// After `send`, the connection ends with GOAWAY `code`.
#[track_caller]
fn connection_error(send: impl FnOnce(&mut H2Client), code: u32) {
    let mut c = connect();
    send(&mut c);
    c.expect_goaway(code);
    served();
}

/// After `send`, stream `stream` is reset with `code` and the connection
/// still works.
#[track_caller]
fn stream_error(send: impl FnOnce(&mut H2Client), stream: u32, code: u32) {
    let mut c = connect();
    send(&mut c);
    c.expect_rst(stream, code);
    c.ping_pong().expect("the connection goes on");
    let r = c.get(101, "/").expect("a later stream is served");
    assert_eq!(r.status, 200);
}

/// Opens stream `id` with a complete request of `/hold`, so the stream is
/// half-closed (remote) and answered only after 500 ms.
fn hold(c: &mut H2Client, id: u32) {
    c.headers(id, &get_fields("/hold"), true).unwrap();
}

/// [`stream_error`] on stream 1, opened with [`hold`], for what `send`
/// does next.
#[track_caller]
fn held_stream_error(send: impl FnOnce(&mut H2Client), code: u32) {
    stream_error(
        |c| {
            hold(c, 1);
            send(c);
        },
        1,
        code,
    );
}

// §3.4 Connection preface

/// On plaintext the preface is what tells HTTP/2 from HTTP/1.1: bytes that
/// start like it and then differ are an HTTP/1.1 request (`PRI * ...`),
/// refused with an HTTP/1.1 error and a close.
#[test]
fn bad_preface_is_not_http2() {
    let mut c = H2Client::connect_raw(port()).unwrap();
    c.write(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = std::io::Read::read_to_end(&mut c.socket(), &mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
        "{text}"
    );
    served();
}

#[test]
fn preface_must_be_followed_by_settings() {
    let mut c = H2Client::connect_raw(port()).unwrap();
    c.write(pistachio_tests::h2::PREFACE).unwrap();
    c.frame(kind::PING, 0, 0, &[0; 8]).unwrap();
    c.expect_goaway(code::PROTOCOL_ERROR);
}

#[test]
fn server_sends_settings_and_acknowledges_ours() {
    let mut c = H2Client::connect_raw(port()).unwrap();
    c.write(pistachio_tests::h2::PREFACE).unwrap();
    c.settings(&[(setting::INITIAL_WINDOW_SIZE, 1000)]).unwrap();
    c.wait_for(Duration::from_secs(5), |f| {
        f.kind == kind::SETTINGS && !f.has(flag::ACK)
    })
    .expect("server SETTINGS");
    c.wait_for(Duration::from_secs(5), |f| {
        f.kind == kind::SETTINGS && f.has(flag::ACK) && f.payload.is_empty()
    })
    .expect("SETTINGS ACK");
}

// §4.1, §4.2 Frame format and size

#[test]
fn unknown_frame_types_are_ignored() {
    let mut c = connect();
    c.frame(0x42, 0xff, 0, b"whatever").unwrap();
    c.frame(0x42, 0, 1, b"whatever").unwrap();
    assert_eq!(c.get(1, "/").unwrap().status, 200);
}

#[test]
fn frame_larger_than_max_frame_size_is_a_connection_error() {
    connection_error(
        |c| {
            c.headers(1, &get_fields("/echo"), false).unwrap();
            c.frame(kind::DATA, 0, 1, &vec![0; 16_385]).unwrap();
        },
        code::FRAME_SIZE_ERROR,
    );
}

// §4.3 Header compression

#[test]
fn invalid_header_block_is_a_compression_error() {
    connection_error(
        |c| {
            // Index 0 is never valid; 0x7f... an index past both tables.
            c.frame(
                kind::HEADERS,
                flag::END_HEADERS | flag::END_STREAM,
                1,
                &[0x80],
            )
            .unwrap();
        },
        code::COMPRESSION_ERROR,
    );
}

// §5.1 Stream states

#[test]
fn data_on_an_idle_stream_is_a_connection_error() {
    connection_error(
        |c| c.frame(kind::DATA, 0, 1, b"x").unwrap(),
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn rst_stream_on_an_idle_stream_is_a_connection_error() {
    connection_error(
        |c| c.frame(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]).unwrap(),
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn window_update_on_an_idle_stream_is_a_connection_error() {
    connection_error(|c| c.window_update(1, 100).unwrap(), code::PROTOCOL_ERROR);
}

#[test]
fn even_stream_id_from_a_client_is_a_connection_error() {
    connection_error(
        |c| c.headers(2, &get_fields("/"), true).unwrap(),
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn data_on_a_half_closed_remote_stream_is_stream_closed() {
    held_stream_error(
        |c| c.frame(kind::DATA, 0, 1, b"late").unwrap(),
        code::STREAM_CLOSED,
    );
}

#[test]
fn headers_on_a_closed_stream_is_a_connection_error() {
    connection_error(
        |c| {
            let r = c.get(3, "/").unwrap();
            assert_eq!(r.status, 200);
            // Stream 1 is below 3: closed (never opened) ...
            c.headers(1, &get_fields("/"), true).unwrap();
        },
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn stream_ids_must_increase() {
    // ... and so is a stream that ran and closed: STREAM_CLOSED.
    let mut c = connect();
    assert_eq!(c.get(5, "/").unwrap().status, 200);
    assert_eq!(c.get(7, "/").unwrap().status, 200);
    // Frames the server sent before it saw ours keep the decoder in step.
    std::thread::sleep(Duration::from_millis(50));
    c.headers(5, &get_fields("/"), true).unwrap();
    let goaway = c
        .wait_for(Duration::from_secs(5), |f| f.kind == kind::GOAWAY)
        .unwrap();
    assert!(
        [code::STREAM_CLOSED, code::PROTOCOL_ERROR].contains(&goaway.error_code()),
        "{goaway:?}"
    );
}

// §5.1.2 Stream concurrency

#[test]
fn streams_beyond_max_concurrent_streams_are_refused() {
    let mut c = connect();
    assert!(c
        .server_settings
        .contains(&(setting::MAX_CONCURRENT_STREAMS, 4)));
    for id in [1, 3, 5, 7] {
        hold(&mut c, id);
    }
    hold(&mut c, 9);
    c.expect_rst(9, code::REFUSED_STREAM);
    // The four held ones are answered; then there is room again.
    for r in c.responses(&[1, 3, 5, 7]).unwrap() {
        assert_eq!(r.body, b"held");
    }
    assert_eq!(c.get(11, "/").unwrap().status, 200);
}

// §5.3 Priority

#[test]
fn headers_depending_on_itself_is_a_stream_error() {
    stream_error(
        |c| {
            let mut payload = vec![0, 0, 0, 1, 16];
            payload.extend(literal_block(&get_fields("/")));
            c.frame(
                kind::HEADERS,
                flag::END_HEADERS | flag::END_STREAM | flag::PRIORITY,
                1,
                &payload,
            )
            .unwrap();
        },
        1,
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn priority_depending_on_itself_is_a_stream_error() {
    stream_error(
        |c| c.frame(kind::PRIORITY, 0, 3, &[0, 0, 0, 3, 16]).unwrap(),
        3,
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn priority_of_the_wrong_length_is_a_stream_error() {
    stream_error(
        |c| c.frame(kind::PRIORITY, 0, 3, &[0, 0, 0, 1]).unwrap(),
        3,
        code::FRAME_SIZE_ERROR,
    );
}

#[test]
fn priority_is_parsed_and_ignored() {
    let mut c = connect();
    c.frame(kind::PRIORITY, 0, 9, &[0, 0, 0, 0, 200]).unwrap();
    let mut payload = vec![0x80, 0, 0, 0, 7];
    payload.extend(literal_block(&get_fields("/")));
    c.frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM | flag::PRIORITY,
        1,
        &payload,
    )
    .unwrap();
    assert_eq!(c.response(1).unwrap().status, 200);
    // PRIORITY does not open stream 9: 3 is still usable.
    assert_eq!(c.get(3, "/").unwrap().status, 200);
}

#[test]
fn priority_on_stream_zero_is_a_connection_error() {
    connection_error(
        |c| c.frame(kind::PRIORITY, 0, 0, &[0, 0, 0, 1, 16]).unwrap(),
        code::PROTOCOL_ERROR,
    );
}

// §5.4.1 Connection error handling: GOAWAY carries the last stream id.

#[test]
fn goaway_names_the_last_stream_processed() {
    let mut c = connect();
    assert_eq!(c.get(1, "/").unwrap().status, 200);
    assert_eq!(c.get(5, "/").unwrap().status, 200);
    c.frame(kind::DATA, 0, 0, b"x").unwrap();
    let goaway = c.expect_goaway(code::PROTOCOL_ERROR);
    assert_eq!(goaway.last_stream(), 5);
}

// §6.1 DATA

#[test]
fn data_on_stream_zero_is_a_connection_error() {
    connection_error(
        |c| c.frame(kind::DATA, 0, 0, b"x").unwrap(),
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn data_padding_too_long_is_a_connection_error() {
    connection_error(
        |c| {
            c.headers(1, &get_fields("/echo"), false).unwrap();
            c.frame(kind::DATA, flag::PADDED, 1, &[5, b'a', b'b'])
                .unwrap();
        },
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn padded_data_is_unpadded() {
    let mut c = connect();
    let mut fields = get_fields("/echo");
    fields[0] = (":method", "POST");
    c.headers(1, &fields, false).unwrap();
    c.frame(kind::DATA, flag::PADDED, 1, &[3, b'h', b'i', 0, 0, 0])
        .unwrap();
    c.frame(kind::DATA, flag::PADDED | flag::END_STREAM, 1, &[0, b'!'])
        .unwrap();
    assert_eq!(c.response(1).unwrap().body, b"hi!");
}

// §6.2 HEADERS

#[test]
fn headers_on_stream_zero_is_a_connection_error() {
    connection_error(
        |c| c.headers(0, &get_fields("/"), true).unwrap(),
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn headers_padding_too_long_is_a_connection_error() {
    connection_error(
        |c| {
            let mut payload = vec![200];
            payload.extend(literal_block(&get_fields("/")));
            c.frame(
                kind::HEADERS,
                flag::END_HEADERS | flag::END_STREAM | flag::PADDED,
                1,
                &payload,
            )
            .unwrap();
        },
        code::PROTOCOL_ERROR,
    );
}

// §6.4 RST_STREAM

#[test]
fn rst_stream_on_stream_zero_is_a_connection_error() {
    connection_error(
        |c| c.frame(kind::RST_STREAM, 0, 0, &[0, 0, 0, 8]).unwrap(),
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn rst_stream_of_the_wrong_length_is_a_connection_error() {
    connection_error(
        |c| {
            hold(c, 1);
            c.frame(kind::RST_STREAM, 0, 1, &[0, 0, 8]).unwrap();
        },
        code::FRAME_SIZE_ERROR,
    );
}

#[test]
fn a_reset_stream_gets_no_more_frames() {
    let mut c = connect();
    hold(&mut c, 1);
    c.frame(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]).unwrap();
    // The handler still answers (after 500 ms); nothing of it is sent.
    let got = c.wait_for(Duration::from_millis(900), |f| f.stream == 1);
    assert_eq!(got, Err(Event::Timeout));
    assert_eq!(c.get(3, "/").unwrap().status, 200);
}

// §6.5 SETTINGS

#[test]
fn settings_ack_with_payload_is_a_frame_size_error() {
    connection_error(
        |c| {
            c.frame(kind::SETTINGS, flag::ACK, 0, &[0, 0, 0, 0, 0, 0])
                .unwrap()
        },
        code::FRAME_SIZE_ERROR,
    );
}

#[test]
fn settings_on_a_stream_is_a_connection_error() {
    connection_error(
        |c| c.frame(kind::SETTINGS, 0, 1, &[]).unwrap(),
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn settings_length_not_a_multiple_of_six_is_a_frame_size_error() {
    connection_error(
        |c| c.frame(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 0]).unwrap(),
        code::FRAME_SIZE_ERROR,
    );
}

#[test]
fn settings_enable_push_other_than_0_or_1_is_a_protocol_error() {
    connection_error(
        |c| c.settings(&[(setting::ENABLE_PUSH, 2)]).unwrap(),
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn settings_initial_window_size_too_large_is_a_flow_control_error() {
    connection_error(
        |c| {
            c.settings(&[(setting::INITIAL_WINDOW_SIZE, 1 << 31)])
                .unwrap()
        },
        code::FLOW_CONTROL_ERROR,
    );
}

#[test]
fn settings_max_frame_size_out_of_range_is_a_protocol_error() {
    for value in [16_383, 1 << 24] {
        connection_error(
            |c| c.settings(&[(setting::MAX_FRAME_SIZE, value)]).unwrap(),
            code::PROTOCOL_ERROR,
        );
    }
}

#[test]
fn unknown_settings_are_ignored_and_acknowledged() {
    let mut c = connect();
    c.settings(&[(0x99, 12345)]).unwrap();
    c.wait_for(Duration::from_secs(5), |f| {
        f.kind == kind::SETTINGS && f.has(flag::ACK)
    })
    .expect("SETTINGS ACK");
    assert_eq!(c.get(1, "/").unwrap().status, 200);
}

#[test]
fn unacknowledged_settings_end_the_connection() {
    init_logging();
    let limits = Http2Limits::default().settings_timeout(Duration::from_millis(300));
    let mut endpoint = Endpoint::bind(
        "127.0.0.1:0",
        Options::default().threads(1).http2_limits(limits),
    )
    .unwrap();
    endpoint.serve_threaded(handler).unwrap();
    let mut c = H2Client::connect_raw(endpoint.local_addr().port()).unwrap();
    c.write(pistachio_tests::h2::PREFACE).unwrap();
    c.settings(&[]).unwrap();
    // Never acknowledged.
    c.expect_goaway(code::SETTINGS_TIMEOUT);
}

// §6.6 PUSH_PROMISE

#[test]
fn push_promise_from_a_client_is_a_connection_error() {
    connection_error(
        |c| {
            c.frame(kind::PUSH_PROMISE, flag::END_HEADERS, 1, &[0, 0, 0, 2])
                .unwrap()
        },
        code::PROTOCOL_ERROR,
    );
}

// §6.7 PING

#[test]
fn ping_is_answered_with_the_same_payload() {
    let mut c = connect();
    c.frame(kind::PING, 0, 0, b"12345678").unwrap();
    let ack = c
        .wait_for(Duration::from_secs(5), |f| f.kind == kind::PING)
        .unwrap();
    assert!(ack.has(flag::ACK));
    assert_eq!(ack.payload, b"12345678");
}

#[test]
fn ping_on_a_stream_is_a_connection_error() {
    connection_error(
        |c| c.frame(kind::PING, 0, 1, b"12345678").unwrap(),
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn ping_of_the_wrong_length_is_a_frame_size_error() {
    connection_error(
        |c| c.frame(kind::PING, 0, 0, b"1234567").unwrap(),
        code::FRAME_SIZE_ERROR,
    );
}

// §6.8 GOAWAY

#[test]
fn goaway_on_a_stream_is_a_connection_error() {
    connection_error(
        |c| c.frame(kind::GOAWAY, 0, 1, &[0; 8]).unwrap(),
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn client_goaway_lets_open_streams_finish() {
    let mut c = connect();
    hold(&mut c, 1);
    c.frame(kind::GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    assert_eq!(c.response(1).unwrap().body, b"held");
    c.expect_closed();
}

// §6.9 WINDOW_UPDATE

#[test]
fn window_update_of_zero_on_the_connection_is_a_connection_error() {
    connection_error(|c| c.window_update(0, 0).unwrap(), code::PROTOCOL_ERROR);
}

#[test]
fn window_update_of_zero_on_a_stream_is_a_stream_error() {
    held_stream_error(|c| c.window_update(1, 0).unwrap(), code::PROTOCOL_ERROR);
}

#[test]
fn window_update_of_the_wrong_length_is_a_frame_size_error() {
    connection_error(
        |c| c.frame(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 1]).unwrap(),
        code::FRAME_SIZE_ERROR,
    );
}

#[test]
fn connection_window_overflow_is_a_flow_control_error() {
    connection_error(
        |c| c.window_update(0, 0x7fff_ffff).unwrap(),
        code::FLOW_CONTROL_ERROR,
    );
}

#[test]
fn stream_window_overflow_is_a_stream_error() {
    held_stream_error(
        |c| c.window_update(1, 0x7fff_ffff).unwrap(),
        code::FLOW_CONTROL_ERROR,
    );
}

#[test]
fn initial_window_size_overflowing_an_open_stream_is_a_flow_control_error() {
    connection_error(
        |c| {
            hold(c, 1);
            c.window_update(1, 0x7fff_ffff - 65_535).unwrap();
            c.ping_pong().unwrap();
            c.settings(&[(setting::INITIAL_WINDOW_SIZE, 65_536)])
                .unwrap();
        },
        code::FLOW_CONTROL_ERROR,
    );
}

/// A server with a small `SETTINGS_INITIAL_WINDOW_SIZE`, for flow control.
fn small_window_port(window: u32) -> u16 {
    init_logging();
    let limits = Http2Limits::default().initial_window_size(window);
    let mut endpoint = Endpoint::bind(
        "127.0.0.1:0",
        Options::default().threads(1).http2_limits(limits),
    )
    .unwrap();
    endpoint.serve_threaded(handler).unwrap();
    let port = endpoint.local_addr().port();
    std::mem::forget(endpoint);
    port
}

#[test]
fn data_beyond_the_stream_window_is_a_flow_control_error() {
    let mut c = H2Client::connect(small_window_port(1000)).unwrap();
    assert!(c
        .server_settings
        .contains(&(setting::INITIAL_WINDOW_SIZE, 1000)));
    let mut fields = get_fields("/echo");
    fields[0] = (":method", "POST");
    c.headers(1, &fields, false).unwrap();
    // One frame: no WINDOW_UPDATE can have been earned yet.
    c.frame(kind::DATA, 0, 1, &[0u8; 1001]).unwrap();
    c.expect_rst(1, code::FLOW_CONTROL_ERROR);
    assert_eq!(c.get(3, "/").unwrap().status, 200);
}

#[test]
fn data_within_the_window_is_granted_back() {
    let mut c = H2Client::connect(small_window_port(1000)).unwrap();
    let mut fields = get_fields("/echo");
    fields[0] = (":method", "POST");
    c.headers(1, &fields, false).unwrap();
    // 10 kB in 1000-byte frames, each sent once the window allows.
    let mut window = 1000i64;
    for _ in 0..10 {
        while window < 1000 {
            let f = c
                .wait_for(Duration::from_secs(5), |f| {
                    f.kind == kind::WINDOW_UPDATE && f.stream == 1
                })
                .expect("the server reopens the stream's window");
            window += i64::from(u32::from_be_bytes(f.payload[..4].try_into().unwrap()));
        }
        c.frame(kind::DATA, 0, 1, &[b'a'; 1000]).unwrap();
        window -= 1000;
    }
    c.frame(kind::DATA, flag::END_STREAM, 1, &[]).unwrap();
    let r = c.response(1).unwrap();
    assert_eq!(r.body.len(), 10_000);
}

// §6.10 CONTINUATION

#[test]
fn headers_split_over_continuation_frames() {
    let mut c = connect();
    let block = literal_block(&get_fields("/"));
    let (a, rest) = block.split_at(5);
    let (b, d) = rest.split_at(5);
    c.frame(kind::HEADERS, flag::END_STREAM, 1, a).unwrap();
    c.frame(kind::CONTINUATION, 0, 1, b).unwrap();
    c.frame(kind::CONTINUATION, flag::END_HEADERS, 1, d)
        .unwrap();
    assert_eq!(c.response(1).unwrap().status, 200);
}

/// A response head larger than the client's frame size goes out as
/// HEADERS and CONTINUATION frames, none larger than that size, the last
/// with END_HEADERS.
#[test]
fn response_head_split_over_continuation_frames() {
    let mut c = connect();
    c.headers(1, &get_fields("/long-head"), true).unwrap();
    let mut frames = Vec::new();
    loop {
        let f = c
            .wait_for(Duration::from_secs(10), |f| f.stream == 1)
            .expect("the response");
        let end = f.has(flag::END_STREAM);
        frames.push(f);
        if end {
            break;
        }
    }
    let kinds: Vec<u8> = frames.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [kind::HEADERS, kind::CONTINUATION, kind::DATA],
        "{kinds:?}"
    );
    assert!(frames.iter().all(|f| f.payload.len() <= 16_384));
    assert!(!frames[0].has(flag::END_HEADERS) && frames[1].has(flag::END_HEADERS));
    let block = [&frames[0].payload[..], &frames[1].payload[..]].concat();
    let fields = loona_hpack::Decoder::new().decode(&block).unwrap();
    assert_eq!(fields[0], (b":status".to_vec(), b"200".to_vec()));
    let long = fields.iter().find(|(n, _)| n == b"x-long").unwrap();
    assert_eq!(long.1.len(), LONG_FIELD);
    assert_eq!(frames[2].payload, b"ok");
    served();
}

#[test]
fn continuation_without_headers_is_a_connection_error() {
    connection_error(
        |c| {
            c.frame(
                kind::CONTINUATION,
                flag::END_HEADERS,
                1,
                &literal_block(&get_fields("/")),
            )
            .unwrap()
        },
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn another_frame_inside_a_header_block_is_a_connection_error() {
    connection_error(
        |c| {
            let block = literal_block(&get_fields("/"));
            c.frame(kind::HEADERS, flag::END_STREAM, 1, &block[..5])
                .unwrap();
            c.frame(kind::PING, 0, 0, &[0; 8]).unwrap();
        },
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn continuation_on_another_stream_is_a_connection_error() {
    connection_error(
        |c| {
            let block = literal_block(&get_fields("/"));
            c.frame(kind::HEADERS, flag::END_STREAM, 1, &block[..5])
                .unwrap();
            c.frame(kind::CONTINUATION, flag::END_HEADERS, 3, &block[5..])
                .unwrap();
        },
        code::PROTOCOL_ERROR,
    );
}

// §8.1 HTTP message framing

fn post(path: &str, extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/echo"),
        (":authority", "localhost"),
    ];
    if path != "/echo" {
        fields[2].1 = "/";
    }
    fields.extend_from_slice(extra);
    fields
}

#[test]
fn content_length_larger_than_data_is_malformed() {
    stream_error(
        |c| {
            c.headers(1, &post("/echo", &[("content-length", "10")]), false)
                .unwrap();
            c.frame(kind::DATA, flag::END_STREAM, 1, b"short").unwrap();
        },
        1,
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn data_beyond_content_length_is_malformed() {
    stream_error(
        |c| {
            c.headers(1, &post("/echo", &[("content-length", "2")]), false)
                .unwrap();
            c.frame(kind::DATA, 0, 1, b"too long").unwrap();
        },
        1,
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn trailers_are_taken_into_the_request() {
    let mut c = connect();
    let mut fields = get_fields("/headers");
    fields[0] = (":method", "POST");
    c.headers(1, &fields, false).unwrap();
    c.frame(kind::DATA, 0, 1, b"body").unwrap();
    c.headers(1, &[("x-trailer", "yes")], true).unwrap();
    let r = c.response(1).unwrap();
    assert!(
        String::from_utf8_lossy(&r.body).contains("x-trailer=yes"),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
}

#[test]
fn trailers_without_end_stream_are_malformed() {
    stream_error(
        |c| {
            c.headers(1, &post("/echo", &[]), false).unwrap();
            c.headers(1, &[("x-trailer", "yes")], false).unwrap();
        },
        1,
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn pseudo_header_in_trailers_is_malformed() {
    stream_error(
        |c| {
            c.headers(1, &post("/echo", &[]), false).unwrap();
            c.headers(1, &[(":path", "/")], true).unwrap();
        },
        1,
        code::PROTOCOL_ERROR,
    );
}

#[test]
fn expect_is_ignored() {
    let mut c = connect();
    let fields = post("/echo", &[("expect", "100-continue")]);
    c.headers(1, &fields, false).unwrap();
    c.frame(kind::DATA, flag::END_STREAM, 1, b"body").unwrap();
    let r = c.response(1).unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"body"[..]));
}

// §8.2 HTTP fields, §8.3 pseudo-headers: a malformed request is answered
// 400 and reset with PROTOCOL_ERROR.

fn malformed(fields: &[(&str, &str)]) {
    let mut c = connect();
    c.headers(1, fields, true).unwrap();
    let r = c.response(1);
    assert_eq!(r.map(|r| r.status).ok(), Some(400), "{fields:?}");
    c.expect_rst(1, code::PROTOCOL_ERROR);
    assert_eq!(c.get(3, "/").unwrap().status, 200);
}

#[test]
fn upper_case_field_names_are_malformed() {
    let mut fields = get_fields("/");
    fields.push(("X-Upper", "1"));
    malformed(&fields);
}

#[test]
fn connection_specific_fields_are_malformed() {
    for field in [
        ("connection", "keep-alive"),
        ("keep-alive", "5"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
        ("te", "gzip"),
    ] {
        let mut fields = get_fields("/");
        fields.push(field);
        malformed(&fields);
    }
}

#[test]
fn te_trailers_is_allowed() {
    let mut c = connect();
    let mut fields = get_fields("/");
    fields.push(("te", "trailers"));
    c.headers(1, &fields, true).unwrap();
    assert_eq!(c.response(1).unwrap().status, 200);
}

#[test]
fn missing_pseudo_headers_are_malformed() {
    malformed(&[(":scheme", "http"), (":path", "/")]);
    malformed(&[(":method", "GET"), (":path", "/")]);
    malformed(&[(":method", "GET"), (":scheme", "http")]);
}

#[test]
fn empty_path_is_malformed() {
    malformed(&[(":method", "GET"), (":scheme", "http"), (":path", "")]);
}

#[test]
fn duplicate_pseudo_headers_are_malformed() {
    malformed(&[
        (":method", "GET"),
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
    ]);
}

#[test]
fn pseudo_header_after_a_regular_field_is_malformed() {
    malformed(&[
        (":method", "GET"),
        (":scheme", "http"),
        ("accept", "*/*"),
        (":path", "/"),
    ]);
}

#[test]
fn unknown_and_response_pseudo_headers_are_malformed() {
    let mut fields = get_fields("/");
    fields.push((":status", "200"));
    malformed(&fields);
    let mut fields = get_fields("/");
    fields.push((":foo", "bar"));
    malformed(&fields);
}

#[test]
fn host_differing_from_authority_is_malformed() {
    let mut fields = get_fields("/");
    fields.push(("host", "elsewhere.example"));
    malformed(&fields);
}

#[test]
fn authority_becomes_host() {
    let mut c = connect();
    let r = c.get(1, "/headers").unwrap();
    assert!(String::from_utf8_lossy(&r.body).contains("host=localhost"));
}

#[test]
fn connect_is_refused() {
    let mut c = connect();
    c.headers(
        1,
        &[(":method", "CONNECT"), (":authority", "example.com:443")],
        true,
    )
    .unwrap();
    assert_eq!(c.response(1).unwrap().status, 501);
}

#[test]
fn responses_use_lower_case_names_and_no_connection_fields() {
    let mut c = connect();
    let r = c.get(1, "/").unwrap();
    for (name, _) in &r.headers {
        assert_eq!(name, &name.to_ascii_lowercase());
        assert!(!["connection", "keep-alive", "transfer-encoding"].contains(&name.as_str()));
    }
    assert_eq!(r.header("content-length"), Some("2"));
}

// The h2c choice on plaintext, with the first bytes in pieces.

#[test]
fn preface_split_across_reads_is_http2() {
    let mut c = H2Client::connect_raw(port()).unwrap();
    for piece in pistachio_tests::h2::PREFACE.chunks(5) {
        c.write(piece).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    c.settings(&[]).unwrap();
    c.wait_for(Duration::from_secs(5), |f| {
        f.kind == kind::SETTINGS && !f.has(flag::ACK)
    })
    .expect("server SETTINGS");
    c.frame(kind::SETTINGS, flag::ACK, 0, &[]).unwrap();
    assert_eq!(c.get(1, "/").unwrap().status, 200);
}

#[test]
fn http1_request_starting_like_the_preface_is_http1() {
    let mut c = H2Client::connect_raw(port()).unwrap();
    c.write(b"P").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.write(b"OST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
        .unwrap();
    let mut raw = Vec::new();
    let _ = std::io::Read::read_to_end(c.socket(), &mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nhi"), "{text}");
}

/// The answers the server makes itself (400 for a malformed request, 501
/// for CONNECT) pass through the endpoint's middleware, as over HTTP/1.1.
#[test]
fn refused_requests_are_seen_by_middleware() {
    use pistachio_http::{Exchange, Hooks, Middleware};
    use std::sync::{Arc, Mutex};

    struct Seen(Arc<Mutex<Vec<u16>>>);
    impl Middleware for Seen {
        fn hooks(&self) -> Hooks {
            Hooks::ON_COMPLETE
        }
        fn on_complete(&self, exchange: &Exchange<'_>) {
            self.0.lock().unwrap().push(exchange.status.as_u16());
        }
    }

    init_logging();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let options = Options::default()
        .threads(1)
        .middleware(Seen(Arc::clone(&seen)));
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    endpoint.serve_threaded(handler).unwrap();
    let mut c = H2Client::connect(endpoint.local_addr().port()).unwrap();
    let mut fields = get_fields("/");
    fields.push(("X-Upper", "1"));
    c.headers(1, &fields, true).unwrap();
    assert_eq!(c.response(1).unwrap().status, 400);
    c.expect_rst(1, code::PROTOCOL_ERROR);
    c.headers(3, &[(":method", "CONNECT"), (":authority", "a:1")], true)
        .unwrap();
    assert_eq!(c.response(3).unwrap().status, 501);
    assert_eq!(c.get(5, "/").unwrap().status, 200);
    let started = std::time::Instant::now();
    while seen.lock().unwrap().len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(*seen.lock().unwrap(), [400, 501, 200]);
}
