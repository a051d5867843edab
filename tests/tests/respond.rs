//! Answers returned whole from `Handler::respond` (and `Respond`): written
//! without a writer over HTTP/1, in order with writer answers, with `HEAD`,
//! close, panic and size rules of `ResponseWriter::send`; through
//! `on_request` behind middleware and over HTTP/2.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pistachio_rest::http::{
    header, Exchange, Handler, HeaderValue, Hooks, Middleware, Options, Request, Respond, Response,
    ResponseWriter, StatusCode,
};
use pistachio_tests::h2::H2Client;
use pistachio_tests::{init_logging, TestServer};

/// Counts which way each request was answered.
#[derive(Default)]
struct Calls {
    respond: AtomicUsize,
    on_request: AtomicUsize,
}

/// `/slow` is declined by `respond` and answered by `on_request` from
/// another thread, later; `/panic` panics; everything else is returned.
struct Mixed(Arc<Calls>);

impl Mixed {
    fn answer(req: &Request) -> Option<Response> {
        match req.path() {
            "/slow" => None,
            "/panic" => panic!("a handler bug"),
            "/big" => Some(Response::ok(vec![b'x'; 64])),
            path => Some(
                Response::new(StatusCode::CREATED, format!("made {path}"))
                    .header(header::LOCATION, HeaderValue::from_static("/things/7")),
            ),
        }
    }
}

impl Handler for Mixed {
    fn on_request(&self, req: Request, resp: ResponseWriter) {
        self.0.on_request.fetch_add(1, Ordering::SeqCst);
        match Mixed::answer(&req) {
            Some(answer) => resp.send_response(answer),
            None => {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    resp.send(StatusCode::OK, "slow");
                });
            }
        }
    }

    fn respond(&self, req: &Request) -> Option<Response> {
        self.0.respond.fetch_add(1, Ordering::SeqCst);
        Mixed::answer(req)
    }

    fn responds(&self) -> bool {
        true
    }
}

fn options() -> Options {
    Options::default().threads(1)
}

fn start(options: Options) -> (TestServer, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    let server = TestServer::start_with(1, false, options, Mixed(Arc::clone(&calls)));
    (server, calls)
}

/// Sends `requests` at once and reads until the server closes.
fn exchange(server: &TestServer, requests: &str) -> String {
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(requests.as_bytes()).unwrap();
    String::from_utf8(pistachio_tests::client::read_to_close(&mut c)).unwrap()
}

/// The answers in `text`, split at each status line.
fn answers(text: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = text.match_indices("HTTP/1.1 ").map(|(i, _)| i).collect();
    starts.push(text.len());
    starts.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

#[test]
fn a_returned_answer_is_written_without_a_writer() {
    init_logging();
    let (server, calls) = start(options());
    let text = exchange(
        &server,
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let answers = answers(&text);
    assert_eq!(answers.len(), 2, "{text}");
    for (answer, path) in answers.iter().zip(["/a", "/b"]) {
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 201 Created\r\n"), "{head}");
        assert!(head.contains("\r\nLocation: /things/7\r\n"), "{head}");
        assert!(head.contains("\r\nDate: "), "{head}");
        let length = format!("\r\nContent-Length: {}", body.len());
        assert!(head.contains(&length), "{head}");
        assert_eq!(body, format!("made {path}"));
    }
    assert!(!answers[0].contains("Connection: close"), "{}", answers[0]);
    assert!(
        answers[1].contains("\r\nConnection: close\r\n"),
        "{}",
        answers[1]
    );
    assert_eq!(calls.respond.load(Ordering::SeqCst), 2);
    assert_eq!(calls.on_request.load(Ordering::SeqCst), 0);
}

#[test]
fn declined_requests_reach_on_request_and_answers_keep_their_order() {
    init_logging();
    let (server, calls) = start(options());
    // The first answer comes 50 ms later from another thread; the two
    // returned at once must wait for it.
    let text = exchange(
        &server,
        "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /one HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let answers = answers(&text);
    assert_eq!(answers.len(), 3, "{text}");
    assert!(answers[0].ends_with("\r\n\r\nslow"), "{}", answers[0]);
    assert!(answers[1].ends_with("\r\n\r\nmade /one"), "{}", answers[1]);
    assert!(answers[2].ends_with("\r\n\r\nmade /two"), "{}", answers[2]);
    assert!(
        answers[2].contains("\r\nConnection: close\r\n"),
        "{}",
        answers[2]
    );
    assert_eq!(calls.respond.load(Ordering::SeqCst), 3);
    assert_eq!(calls.on_request.load(Ordering::SeqCst), 1);
}

#[test]
fn head_gets_the_length_without_the_body() {
    init_logging();
    let (server, _) = start(options());
    let text = exchange(
        &server,
        "HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let answers = answers(&text);
    assert_eq!(answers.len(), 2, "{text}");
    assert!(
        answers[0].contains("\r\nContent-Length: 7\r\n"),
        "{}",
        answers[0]
    );
    assert!(answers[0].ends_with("\r\n\r\n"), "{}", answers[0]);
    assert!(answers[1].ends_with("\r\n\r\nmade /a"), "{}", answers[1]);
}

#[test]
fn a_panic_in_respond_is_a_500_for_that_request_only() {
    init_logging();
    let (server, _) = start(options());
    let text = exchange(
        &server,
        "GET /panic HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let answers = answers(&text);
    assert_eq!(answers.len(), 2, "{text}");
    assert!(
        answers[0].starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{}",
        answers[0]
    );
    assert!(
        answers[0].contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"),
        "{}",
        answers[0]
    );
    assert!(
        answers[1].ends_with("\r\n\r\nmade /after"),
        "{}",
        answers[1]
    );
}

#[test]
fn an_answer_over_max_response_size_becomes_a_500() {
    init_logging();
    let (server, _) = start(options().max_response_size(32));
    let text = exchange(
        &server,
        "GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        text.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nResponse Too Large"), "{text}");
}

#[test]
fn http_1_0_without_keep_alive_is_closed_after_the_answer() {
    init_logging();
    let (server, _) = start(options());
    let text = exchange(&server, "GET /old HTTP/1.0\r\n\r\n");
    assert!(text.starts_with("HTTP/1.1 201 Created\r\n"), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nmade /old"), "{text}");
}

/// Counts the exchanges a middleware saw complete.
#[derive(Default)]
struct Completed(Arc<AtomicUsize>);

impl Middleware for Completed {
    fn on_complete(&self, exchange: &Exchange<'_>) {
        assert_eq!(exchange.status, StatusCode::CREATED);
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn hooks(&self) -> Hooks {
        Hooks::ON_COMPLETE
    }
}

#[test]
fn behind_middleware_the_answer_goes_through_on_request() {
    init_logging();
    let completed = Arc::new(AtomicUsize::new(0));
    let (server, calls) = start(options().middleware(Completed(Arc::clone(&completed))));
    let text = exchange(
        &server,
        "GET /m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(text.ends_with("\r\n\r\nmade /m"), "{text}");
    assert!(text.contains("\r\nLocation: /things/7\r\n"), "{text}");
    assert_eq!(calls.respond.load(Ordering::SeqCst), 0);
    assert_eq!(calls.on_request.load(Ordering::SeqCst), 1);
    // The record completes when the socket took the answer: wait for it.
    for _ in 0..100 {
        if completed.load(Ordering::SeqCst) == 1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the middleware never saw the exchange complete");
}

#[test]
fn respond_serves_http_2_through_on_request() {
    init_logging();
    let server = TestServer::start_with(
        1,
        false,
        options().http2(true),
        Respond(|req: &Request| Response::ok(format!("h2 {}", req.path()))),
    );
    let mut client = H2Client::connect(server.port()).unwrap();
    let answer = client.get(1, "/x").unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"h2 /x");
}

#[test]
fn fields_set_on_the_writer_come_before_the_answers_own() {
    init_logging();
    let server = TestServer::start(1, false, |_req: Request, resp: ResponseWriter| {
        let resp = resp.header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp.send_response(
            Response::ok("both").header(header::CACHE_CONTROL, HeaderValue::from_static("private")),
        );
    });
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let first = text.find("Cache-Control: no-store").expect(&text);
    let second = text.find("Cache-Control: private").expect(&text);
    assert!(first < second, "{text}");
    assert!(text.ends_with("\r\n\r\nboth"), "{text}");
}
