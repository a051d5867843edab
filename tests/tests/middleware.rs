//! Middleware around the whole exchange (`pistachio_http::Middleware`):
//! response hooks on every kind of answer, the completion record of
//! answers made by the handler, the router and the HTTP layer itself, the
//! order of endpoint, router and route layers, panics in hooks, and the
//! `rest_server` access log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use pistachio_rest::{
    End, Endpoint, Exchange, HeadAction, HeaderMap, HeaderValue, Middleware, Options, Request,
    RequestInfo, ResponseWriter, RestRequest, RestResponse, RouteGroup, Router, StatusCode,
};
use pistachio_tests::client::Connection;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What a completion hook was told.
#[derive(Debug, Clone)]
struct Seen {
    method: Option<String>,
    target: Option<String>,
    status: u16,
    keep_alive: bool,
    body_bytes: u64,
    end: End,
    layer_header: bool,
}

/// Adds `X-Layer: on` to every answer and records every exchange.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
}

impl Middleware for Recorder {
    fn on_response(&self, _req: &RequestInfo, _status: StatusCode, headers: &mut HeaderMap) {
        headers.insert("x-layer", HeaderValue::from_static("on"));
    }

    fn on_complete(&self, ex: &Exchange<'_>) {
        self.seen.lock().unwrap().push(Seen {
            method: ex.request.method().map(|m| m.to_string()),
            target: ex.request.target().map(str::to_owned),
            status: ex.status.as_u16(),
            keep_alive: ex.keep_alive,
            body_bytes: ex.body_bytes,
            end: ex.end,
            layer_header: ex.headers.contains_key("x-layer"),
        });
    }
}

impl Recorder {
    /// Waits until `n` exchanges were recorded and returns them.
    fn wait(&self, n: usize) -> Vec<Seen> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let seen = self.seen.lock().unwrap().clone();
            if seen.len() >= n || Instant::now() > deadline {
                assert_eq!(seen.len(), n, "exchanges recorded: {seen:#?}");
                return seen;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

fn serve(options: Options, handler: impl pistachio_rest::Handler) -> Endpoint {
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options.threads(2)).unwrap();
    endpoint.serve_threaded(handler).unwrap();
    endpoint
}

fn connect(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp
}

/// Sends `wire` on a fresh connection and reads until the server closes.
fn exchange(addr: SocketAddr, wire: &[u8]) -> String {
    let mut tcp = connect(addr);
    tcp.write_all(wire).unwrap();
    let mut raw = Vec::new();
    let _ = tcp.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

/// Reads one response from a keep-alive connection with the suite's one
/// reader; its head and body as text.
fn read_response(tcp: &mut TcpStream) -> String {
    let response = Connection::new(tcp).read_response().expect("a response");
    format!("{}{}", response.head, response.text())
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

/// A handler with one path per kind of answer.
fn kinds(dir: Arc<std::path::PathBuf>) -> impl Fn(Request, ResponseWriter) + Send + Sync {
    move |req: Request, resp: ResponseWriter| match req.path() {
        "/whole" => resp.send(StatusCode::OK, "hello"),
        "/stream" => {
            let mut stream = resp.stream(StatusCode::OK);
            stream.write("abc");
            stream.flush();
            stream.write("defgh");
            stream.end();
        }
        "/cut" => {
            let mut stream = resp.stream(StatusCode::OK);
            stream.write("partial");
            stream.flush();
            drop(stream);
        }
        "/file" => {
            let _ = resp.serve_file(dir.join("file.txt"));
        }
        "/drop" => drop(resp),
        "/panic" => panic!("handler panics on purpose"),
        "/later" => {
            std::thread::spawn(move || resp.send(StatusCode::ACCEPTED, "later"));
        }
        _ => resp.send(StatusCode::NOT_FOUND, "no"),
    }
}

fn temp_dir(name: &str) -> Arc<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("pistachio-mw-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("file.txt"), "file contents\n").unwrap();
    Arc::new(dir)
}

#[test]
fn response_hook_runs_on_every_kind_of_answer() {
    let recorder = Arc::new(Recorder::default());
    let options = Options::default()
        .middleware(Arc::clone(&recorder))
        .max_request_size(1024)
        .max_header_size(1024);
    let endpoint = serve(options, kinds(temp_dir("kinds")));
    let addr = endpoint.local_addr();

    let cases: &[(&str, u16)] = &[
        ("/whole", 200),
        ("/stream", 200),
        ("/file", 200),
        ("/drop", 500),
        ("/panic", 500),
        ("/later", 202),
    ];
    for (path, status) in cases {
        let wire = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let response = exchange(addr, wire.as_bytes());
        assert_eq!(status_of(&response), *status, "{path}: {response}");
        assert!(
            response.contains("\r\nX-Layer: on\r\n"),
            "{path}: no header from the response hook: {response}"
        );
    }
    // The HTTP layer's own answers: 400, 413, 431.
    let refused: &[(Vec<u8>, u16)] = &[
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(), 400),
        (
            b"PUT /whole HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".to_vec(),
            413,
        ),
        (
            format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(2000)).into_bytes(),
            431,
        ),
    ];
    for (wire, status) in refused {
        let response = exchange(addr, wire);
        assert_eq!(status_of(&response), *status, "{response}");
        assert!(response.contains("\r\nX-Layer: on\r\n"), "{response}");
        assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
    }
    let seen = recorder.wait(cases.len() + refused.len());
    assert!(seen.iter().all(|s| s.layer_header), "{seen:#?}");
}

#[test]
fn completion_reports_status_bytes_keep_alive_and_end() {
    let recorder = Arc::new(Recorder::default());
    let options = Options::default()
        .middleware(Arc::clone(&recorder))
        .max_request_size(1024)
        .max_header_size(1024)
        .header_timeout(Duration::from_millis(300));
    let endpoint = serve(options, kinds(temp_dir("complete")));
    let addr = endpoint.local_addr();

    // Two keep-alive exchanges on one connection, then one that closes.
    let mut tcp = connect(addr);
    tcp.write_all(b"GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(status_of(&read_response(&mut tcp)), 200);
    tcp.write_all(b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(status_of(&read_response(&mut tcp)), 200);
    let seen = recorder.wait(2);
    assert_eq!(seen[0].status, 200);
    assert!(seen[0].keep_alive);
    assert_eq!(seen[0].body_bytes, 5);
    assert_eq!(seen[0].end, End::Completed);
    assert_eq!(seen[0].method.as_deref(), Some("GET"));
    assert_eq!(seen[0].target.as_deref(), Some("/whole"));
    assert_eq!(seen[1].body_bytes, "file contents\n".len() as u64);
    drop(tcp);
    recorder.clear();

    // A stream: the body bytes are everything after the head (chunks).
    let response = exchange(
        addr,
        b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let after_head = response.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(after_head, "3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n");
    let seen = recorder.wait(1);
    assert_eq!(seen[0].body_bytes, after_head.len() as u64);
    assert!(!seen[0].keep_alive);
    recorder.clear();

    // A stream dropped before its end is cut.
    exchange(addr, b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n");
    let seen = recorder.wait(1);
    assert_eq!((seen[0].status, seen[0].end), (200, End::Cut));
    assert!(!seen[0].keep_alive);
    recorder.clear();

    // The HTTP layer's answers: 400, 413, 431 and 408, all closing.
    let refused: &[(&[u8], u16)] = &[
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (
            b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
            413,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: y", 408),
    ];
    for (wire, status) in refused {
        assert_eq!(status_of(&exchange(addr, wire)), *status);
    }
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(2000));
    assert_eq!(status_of(&exchange(addr, big.as_bytes())), 431);
    let seen = recorder.wait(4);
    let statuses: Vec<u16> = seen.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [400, 413, 408, 431]);
    assert!(seen.iter().all(|s| !s.keep_alive), "{seen:#?}");
    // The 413's head was parsed: its request is known.
    assert_eq!(seen[1].method.as_deref(), Some("PUT"));
    assert_eq!(seen[1].target.as_deref(), Some("/up"));
    assert_eq!(seen[0].method, None);
    assert_eq!(seen[1].body_bytes, "request body too large".len() as u64);
}

#[test]
fn router_answers_are_seen_by_endpoint_layers() {
    let recorder = Arc::new(Recorder::default());
    let mut router = Router::new();
    router.get("/users/:id", |_req: RestRequest, resp: RestResponse| {
        resp.send(StatusCode::OK, "user")
    });
    let endpoint = serve(Options::default().middleware(Arc::clone(&recorder)), router);
    let mut tcp = connect(endpoint.local_addr());
    for (wire, status) in [
        ("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        ("DELETE /users/1 HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        ("OPTIONS /users/1 HTTP/1.1\r\nHost: x\r\n\r\n", 204),
        ("GET /users/1 HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    ] {
        tcp.write_all(wire.as_bytes()).unwrap();
        let response = read_response(&mut tcp);
        assert_eq!(status_of(&response), status, "{response}");
        assert!(response.contains("\r\nX-Layer: on\r\n"), "{response}");
    }
    let seen = recorder.wait(4);
    let statuses: Vec<u16> = seen.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [404, 405, 204, 200]);
    assert!(seen.iter().all(|s| s.keep_alive && s.end == End::Completed));
}

/// Records its name at each hook into a shared trace.
struct Named {
    name: &'static str,
    trace: Arc<Mutex<Vec<String>>>,
}

impl Middleware for Named {
    fn on_head(&self, _req: &Request) -> HeadAction {
        self.trace
            .lock()
            .unwrap()
            .push(format!("head {}", self.name));
        HeadAction::Continue
    }
    fn on_response(&self, _req: &RequestInfo, _status: StatusCode, _headers: &mut HeaderMap) {
        self.trace
            .lock()
            .unwrap()
            .push(format!("response {}", self.name));
    }
    fn on_complete(&self, _ex: &Exchange<'_>) {
        self.trace
            .lock()
            .unwrap()
            .push(format!("complete {}", self.name));
    }
}

#[test]
fn endpoint_router_and_route_layers_nest_in_order() {
    let trace = Arc::new(Mutex::new(Vec::new()));
    let named = |name| Named {
        name,
        trace: Arc::clone(&trace),
    };
    let handler_trace = Arc::clone(&trace);
    let mut group = RouteGroup::new("/g");
    group.layer(named("route1")).layer(named("route2")).get(
        "/x",
        move |_req: RestRequest, resp: RestResponse| {
            handler_trace.lock().unwrap().push("handler".into());
            resp.send(StatusCode::OK, "x")
        },
    );
    let mut router = Router::new();
    router.layer(named("router"));
    router.mount(group).unwrap();
    let options = Options::default()
        .middleware(named("endpoint1"))
        .middleware(named("endpoint2"));
    let endpoint = serve(options, router);
    let addr = endpoint.local_addr();

    let wait = |n: usize| {
        let deadline = Instant::now() + IO_TIMEOUT;
        while trace.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::mem::take(&mut *trace.lock().unwrap())
    };
    let response = exchange(
        addr,
        b"GET /g/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&response), 200);
    assert_eq!(
        wait(16),
        [
            "head endpoint1",
            "head endpoint2",
            "head router",
            "head route1",
            "head route2",
            "handler",
            "response route2",
            "response route1",
            "response router",
            "response endpoint2",
            "response endpoint1",
            "complete route2",
            "complete route1",
            "complete router",
            "complete endpoint2",
            "complete endpoint1",
        ]
    );
    // Unrouted: the route's layers never see it.
    let response = exchange(
        addr,
        b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&response), 404);
    assert_eq!(
        wait(9),
        [
            "head endpoint1",
            "head endpoint2",
            "head router",
            "response router",
            "response endpoint2",
            "response endpoint1",
            "complete router",
            "complete endpoint2",
            "complete endpoint1",
        ]
    );
    // The HTTP layer's own answer: endpoint-wide layers only.
    let response = exchange(addr, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    assert_eq!(status_of(&response), 400);
    assert_eq!(
        wait(4),
        [
            "response endpoint2",
            "response endpoint1",
            "complete endpoint2",
            "complete endpoint1",
        ]
    );
}

/// Panics in the hook its request's path names.
struct Panicky;

impl Middleware for Panicky {
    fn on_head(&self, req: &Request) -> HeadAction {
        if req.path() == "/panic-head" {
            panic!("on_head panics on purpose");
        }
        HeadAction::Continue
    }
    fn on_response(&self, req: &RequestInfo, _status: StatusCode, _headers: &mut HeaderMap) {
        if req.path() == Some("/panic-response") {
            panic!("on_response panics on purpose");
        }
    }
    fn on_complete(&self, ex: &Exchange<'_>) {
        if ex.request.path() == Some("/panic-complete") {
            panic!("on_complete panics on purpose");
        }
    }
}

#[test]
fn a_panicking_hook_fails_its_request_only() {
    let recorder = Arc::new(Recorder::default());
    let options = Options::default()
        .threads(1)
        .middleware(Arc::clone(&recorder))
        .middleware(Panicky);
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    endpoint
        .serve_threaded(|_req: Request, resp: ResponseWriter| resp.send(StatusCode::OK, "fine"))
        .unwrap();
    let mut tcp = connect(endpoint.local_addr());
    for (path, status) in [
        ("/panic-head", 500),
        ("/ok", 200),
        ("/panic-response", 500),
        ("/ok", 200),
        ("/panic-complete", 200),
        ("/ok", 200),
    ] {
        let wire = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        tcp.write_all(wire.as_bytes()).unwrap();
        let response = read_response(&mut tcp);
        assert_eq!(status_of(&response), status, "{path}: {response}");
    }
    // The outer recorder saw every exchange, with the status sent.
    let statuses: Vec<u16> = recorder.wait(6).iter().map(|s| s.status).collect();
    assert_eq!(statuses, [500, 200, 500, 200, 200, 200]);
}

#[test]
fn rest_server_logs_every_exchange() {
    let data = std::env::temp_dir().join(format!("pistachio-access-log-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rest_server"))
        .args(["--addr", "127.0.0.1:0", "--threads", "2", "--no-tls"])
        .args(["--max-value-size", "1024"])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("PISTACHIO_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting rest_server");
    let stdout = child.stdout.take().unwrap();
    let mut stdout = BufReader::new(stdout);
    let mut banner = String::new();
    stdout.read_line(&mut banner).unwrap();
    // Keep reading: the server prints again when it stops.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let base = banner
        .trim()
        .strip_prefix("rest_server listening on http://")
        .unwrap_or_else(|| panic!("unexpected banner {banner:?}"))
        .trim_end_matches('/')
        .to_owned();
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("access: ") && tx.send(line).is_err() {
                break;
            }
        }
    });

    // (wire, method, target, status); `null` where the request could not
    // be parsed.
    type Case<'a> = (&'a [u8], Option<&'a str>, Option<&'a str>, u16);
    let cases: &[Case<'_>] = &[
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Some("GET"),
            Some("/healthz"),
            200,
        ),
        (
            b"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Some("GET"),
            Some("/missing"),
            404,
        ),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", None, None, 400),
        (
            b"PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
            Some("PUT"),
            Some("/v1/kv/big"),
            413,
        ),
    ];
    let mut got = Vec::new();
    for (wire, ..) in cases {
        exchange(addr, wire);
        got.push(
            lines
                .recv_timeout(IO_TIMEOUT)
                .expect("an access-log line per exchange"),
        );
    }
    // SIGTERM: a clean stop.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data);
    // One JSON object per line (the `AccessLog` battery).
    for ((_, method, target, status), line) in cases.iter().zip(&got) {
        let entry: serde_json::Value =
            serde_json::from_str(line.strip_prefix("access: ").unwrap()).expect(line);
        assert_eq!(entry["method"].as_str(), *method, "{line}");
        assert_eq!(entry["target"].as_str(), *target, "{line}");
        assert_eq!(entry["status"], *status, "{line}");
        assert_eq!(entry["keep_alive"], false, "{line}");
    }
    assert!(status.success(), "{status}");
}

#[test]
fn an_answer_after_the_client_left_is_reported_as_client_gone() {
    let recorder = Arc::new(Recorder::default());
    let endpoint = serve(
        Options::default().middleware(Arc::clone(&recorder)),
        |_req: Request, resp: ResponseWriter| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                resp.send(StatusCode::OK, "too late");
            });
        },
    );
    let mut tcp = connect(endpoint.local_addr());
    tcp.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    pistachio_tests::client::reset(tcp).unwrap();
    let seen = recorder.wait(1);
    assert_eq!((seen[0].status, seen[0].end), (200, End::ClientGone));
    assert!(!seen[0].keep_alive);
}

#[test]
fn a_timed_out_request_is_reported_once_with_the_timeout_answer() {
    let recorder = Arc::new(Recorder::default());
    let endpoint = serve(
        Options::default().middleware(Arc::clone(&recorder)),
        |_req: Request, mut resp: ResponseWriter| {
            resp.timeout_after(Duration::from_millis(100));
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                resp.send(StatusCode::OK, "too late");
            });
        },
    );
    let mut tcp = connect(endpoint.local_addr());
    tcp.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let response = read_response(&mut tcp);
    assert_eq!(status_of(&response), 408, "{response}");
    assert!(response.contains("\r\nX-Layer: on\r\n"), "{response}");
    // The handler's late answer is discarded, and not reported again.
    std::thread::sleep(Duration::from_millis(500));
    let seen = recorder.wait(1);
    assert_eq!((seen[0].status, seen[0].end), (408, End::Completed));
    assert!(seen[0].keep_alive);
}

/// An answer far bigger than the socket buffers, to a client that does not
/// read: its exchange finishes when the socket has taken the last byte,
/// not when the answer was queued.
const BIG: usize = 32 << 20;

fn big_answer(_req: Request, resp: ResponseWriter) {
    resp.send(StatusCode::OK, vec![b'x'; BIG]);
}

/// A server of [`big_answer`] reporting to a [`Recorder`], and a client
/// that has asked it for the answer and read nothing yet.
fn ask_big() -> (Arc<Recorder>, Endpoint, TcpStream) {
    let recorder = Arc::new(Recorder::default());
    let endpoint = serve(
        Options::default().middleware(Arc::clone(&recorder)),
        big_answer,
    );
    let mut tcp = connect(endpoint.local_addr());
    tcp.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    (recorder, endpoint, tcp)
}

#[test]
fn completion_waits_for_the_socket_to_take_the_last_byte() {
    let (recorder, _endpoint, mut tcp) = ask_big();
    // The client reads nothing yet: most of the answer sits queued.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        recorder.seen.lock().unwrap().len(),
        0,
        "an exchange reported finished while its answer was still queued"
    );
    let response = Connection::new(&mut tcp)
        .read_response()
        .expect("a response");
    assert_eq!(response.body.len(), BIG);
    let seen = recorder.wait(1);
    assert_eq!((seen[0].status, seen[0].end), (200, End::Completed));
    assert_eq!(seen[0].body_bytes, BIG as u64);
    assert!(seen[0].keep_alive);
}

#[test]
fn an_answer_cut_by_a_reset_while_queued_is_client_gone() {
    let (recorder, _endpoint, mut tcp) = ask_big();
    let mut some = [0u8; 64 * 1024];
    tcp.read_exact(&mut some).unwrap();
    pistachio_tests::client::reset(tcp).unwrap();
    let seen = recorder.wait(1);
    assert_eq!((seen[0].status, seen[0].end), (200, End::ClientGone));
    assert!(!seen[0].keep_alive);
}
