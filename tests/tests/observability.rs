//! The observability batteries over real connections: the access log
//! (one line per exchange, the HTTP layer's own `400`/`431` included) and
//! the Prometheus metrics (exact counts after known traffic, by method,
//! route template and status; transport and TLS handshake figures), with
//! every line of the exposition checked against the text format's grammar.
//!
//! This file installs its own `log` logger (to capture the access lines):
//! it must stay a test binary of its own.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pistachio_rest::metrics::{Metrics, PROMETHEUS_TEXT};
use pistachio_rest::{
    AccessLog, Endpoint, Options, RestRequest, RestResponse, Router, StatusCode, ACCESS_LOG_TARGET,
};
use pistachio_tests::client::{connect_tcp, PlainClient, RequestBuilder, Response, TlsClient};
use pistachio_tests::prometheus::Exposition;
use pistachio_tests::server::server_tls_config;
use pistachio_tests::AbruptClose;

/// Keeps the access lines; everything else is dropped.
struct Capture {
    lines: Mutex<Vec<String>>,
}

impl log::Log for Capture {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.target() == ACCESS_LOG_TARGET
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.lines.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture {
            lines: Mutex::new(Vec::new()),
        }));
        log::set_logger(capture).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Info);
        capture
    })
}

/// Access lines logged so far that contain `marker`.
fn lines_with(marker: &str) -> Vec<String> {
    capture()
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(marker))
        .cloned()
        .collect()
}

struct Server {
    endpoint: Endpoint,
    tls: bool,
}

impl Server {
    fn start(tls: bool, metrics: &Metrics, log: Option<AccessLog>) -> Server {
        capture();
        let mut router = Router::new();
        router.get("/users/:id", |req: RestRequest, resp: RestResponse| {
            let id = req.param_str("id").unwrap_or_default().to_owned();
            resp.send(StatusCode::OK, format!("user {id}"))
        });
        router.get("/metrics", metrics.handler());
        let mut options = Options::default()
            .threads(2)
            .max_header_size(2048)
            .middleware(metrics.clone());
        if let Some(log) = log {
            options = options.middleware(log);
        }
        if tls {
            options = options.tls(server_tls_config());
        }
        let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
        metrics.watch_transport(endpoint.transport_stats());
        metrics.watch_http2(endpoint.http2_counters());
        endpoint.serve_threaded(router).unwrap();
        Server { endpoint, tls }
    }

    fn port(&self) -> u16 {
        self.endpoint.local_addr().port()
    }

    /// One request on a connection of its own.
    fn ask(&self, request: RequestBuilder) -> Response {
        let bytes = request.close().to_bytes();
        if self.tls {
            let mut client = TlsClient::connect(self.port()).unwrap();
            client.write_raw(&bytes).unwrap();
            client.read_response().unwrap()
        } else {
            let mut client = PlainClient::connect(self.port()).unwrap();
            client.write_raw(&bytes).unwrap();
            client.read_response().unwrap()
        }
    }

    /// Raw bytes on a plain connection of their own; the answer.
    fn raw(&self, bytes: &[u8]) -> Response {
        let mut client = PlainClient::connect(self.port()).unwrap();
        client.write_raw(bytes).unwrap();
        client.read_response().unwrap()
    }

    fn scrape(&self) -> (Response, Exposition) {
        let resp = self.ask(RequestBuilder::get("/metrics"));
        assert_eq!(resp.status, 200, "{}", resp.head);
        let exposition = Exposition::checked(&resp.text());
        (resp, exposition)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.endpoint.shutdown();
    }
}

#[test]
fn the_grammar_check_refuses_bad_lines() {
    for bad in [
        "metric 1 2 3",
        "1metric 1",
        "metric{a=b} 1",
        "metric{a=\"b} 1",
        "metric{1a=\"b\"} 1",
        "metric{a=\"\\x\"} 1",
        "metric one",
        "metric",
    ] {
        let text = format!("# TYPE metric counter\n{bad}\n");
        assert!(
            std::panic::catch_unwind(|| Exposition::parse(&text)).is_err(),
            "{bad:?} should be refused"
        );
    }
    let ok = Exposition::parse(
        "# HELP m_total A help, with \\\\ and \\n.\n# TYPE m_total counter\n\
         m_total{a=\"x\\\"y\",b=\"\"} 1e3 1700000000000\nm_total 0\n",
    );
    assert_eq!(ok.get("m_total{a=\"x\"y\",b=\"\"}"), 1000.0);
}

#[test]
fn metrics_count_exchanges_by_route_template_and_status() {
    let metrics = Metrics::new();
    let server = Server::start(false, &metrics, None);
    for id in ["1", "2", "3"] {
        let resp = server.ask(RequestBuilder::get(&format!("/users/{id}")));
        assert_eq!(resp.status, 200);
    }
    assert_eq!(server.ask(RequestBuilder::get("/nowhere/1")).status, 404);
    assert_eq!(server.ask(RequestBuilder::get("/nowhere/2")).status, 404);
    let post = RequestBuilder::new("POST", "/users/9").body(b"12345");
    assert_eq!(server.ask(post).status, 405);
    // The HTTP layer's own answers: a malformed request line, a head too
    // large.
    assert_eq!(server.raw(b"NOT HTTP AT ALL\r\n\r\n").status, 400);
    let big = RequestBuilder::get("/users/1").header("X-Big", &"b".repeat(4096));
    assert_eq!(server.raw(&big.to_bytes()).status, 431);

    settle(&metrics);
    let (resp, m) = server.scrape();
    assert_eq!(resp.header("content-type"), Some(PROMETHEUS_TEXT));
    let requests = |method: &str, route: &str, status: u16| {
        m.get(&format!(
            "pistachio_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
        ))
    };
    assert_eq!(requests("GET", "/users/:id", 200), 3.0);
    assert_eq!(requests("GET", "unmatched", 404), 2.0);
    assert_eq!(requests("POST", "unmatched", 405), 1.0);
    assert_eq!(requests("UNKNOWN", "unmatched", 400), 1.0);
    assert_eq!(requests("UNKNOWN", "unmatched", 431), 1.0);
    // No raw path ever became a label.
    assert!(!m
        .samples
        .keys()
        .any(|k| k.contains("/users/1") || k.contains("/nowhere")));
    let count =
        "pistachio_http_request_duration_seconds_count{method=\"GET\",route=\"/users/:id\"}";
    assert_eq!(m.get(count), 3.0);
    let inf = "pistachio_http_request_duration_seconds_bucket{method=\"GET\",route=\"/users/:id\",le=\"+Inf\"}";
    assert_eq!(m.get(inf), 3.0);
    // The scrape itself is the one request in flight.
    assert_eq!(m.get("pistachio_http_requests_in_flight"), 1.0);
    assert_eq!(m.get("pistachio_http_request_body_bytes_total"), 5.0);
    // "user 1" ×3, then the bodies of the answers other than the scrape.
    assert!(m.get("pistachio_http_response_body_bytes_total") >= 18.0);
    // Every connection so far, the scrape's included.
    assert_eq!(m.get("pistachio_connections_accepted_total"), 9.0);
    assert!(m.get("pistachio_connections_open") >= 1.0);
    assert_eq!(m.get("pistachio_tls_handshakes_total"), 0.0);

    // A second scrape counts the first.
    settle(&metrics);
    let (_, m) = server.scrape();
    assert_eq!(
        m.get("pistachio_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"}"),
        1.0
    );
}

/// Waits (bounded) until no exchange is in flight, reading `metrics` in
/// the process: an exchange is counted when it completes on its worker,
/// which may be just after its client saw the answer and made the next
/// request, to the other worker.
fn settle(metrics: &Metrics) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = Exposition::checked(&metrics.encode());
        if m.get("pistachio_http_requests_in_flight") == 0.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still in flight: {:#?}",
            m.samples
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Scrapes until `check` passes (the server counts a failed handshake
/// when it closes the connection, a moment after the client left).
fn scrape_until(server: &Server, what: &str, check: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = server.scrape();
        if check(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what}: {:#?}", m.samples);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_report_http2_connections_streams_and_closes() {
    let metrics = Metrics::new();
    let server = Server::start(false, &metrics, None);
    // Two streams on one h2c connection (prior knowledge).
    let mut easy = curl::easy::Easy::new();
    easy.http_version(curl::easy::HttpVersion::V2PriorKnowledge)
        .unwrap();
    easy.timeout(Duration::from_secs(10)).unwrap();
    for id in ["1", "2"] {
        let url = format!("http://127.0.0.1:{}/users/{id}", server.port());
        easy.url(&url).unwrap();
        let mut body = Vec::new();
        {
            let mut transfer = easy.transfer();
            transfer
                .write_function(|d| {
                    body.extend_from_slice(d);
                    Ok(d.len())
                })
                .unwrap();
            transfer.perform().unwrap();
        }
        assert_eq!(easy.response_code().unwrap(), 200);
        assert_eq!(body, format!("user {id}").as_bytes());
    }
    drop(easy);
    // A connection that breaks the protocol: DATA on stream 0 after the
    // preface and an empty SETTINGS frame (RFC 9113 §6.1: PROTOCOL_ERROR).
    let mut tcp = connect_tcp(server.port()).unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    tcp.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]).unwrap();
    tcp.write_all(&[0, 0, 1, 0x0, 0, 0, 0, 0, 0, b'x']).unwrap();

    let m = scrape_until(&server, "HTTP/2 figures", |m| {
        m.get("pistachio_http2_closes_total{reason=\"protocol_error\"}") == 1.0
    });
    assert_eq!(m.get("pistachio_http2_connections_total"), 2.0);
    assert_eq!(m.get("pistachio_http2_streams_total"), 2.0);
    assert_eq!(m.get("pistachio_http2_streams_refused_total"), 0.0);
    assert_eq!(m.get("pistachio_http2_closes_total{reason=\"abuse\"}"), 0.0);
    // The exchanges themselves are counted with the HTTP/1.1 ones.
    assert_eq!(
        m.get("pistachio_http_requests_total{method=\"GET\",route=\"/users/:id\",status=\"200\"}"),
        2.0
    );
}

#[test]
fn metrics_report_tls_handshakes_and_their_failures() {
    let metrics = Metrics::new();
    let server = Server::start(true, &metrics, None);
    for id in ["1", "2"] {
        assert_eq!(
            server
                .ask(RequestBuilder::get(&format!("/users/{id}")))
                .status,
            200
        );
    }
    AbruptClose::PlaintextToTls
        .perform(server.port(), true)
        .unwrap();
    AbruptClose::RandomBytes
        .perform(server.port(), true)
        .unwrap();
    AbruptClose::HalfClientHelloThenFin
        .perform(server.port(), true)
        .unwrap();
    // Connected, then gone without a byte.
    drop(connect_tcp(server.port()).unwrap());

    let failures = |m: &Exposition, reason: &str| {
        m.get(&format!(
            "pistachio_tls_handshake_failures_total{{reason=\"{reason}\"}}"
        ))
    };
    let m = scrape_until(&server, "failures counted", |m| {
        failures(m, "plain_http") == 1.0
            && failures(m, "protocol") == 1.0
            && failures(m, "peer_closed") == 2.0
    });
    for reason in ["timeout", "socket", "overload", "shutdown"] {
        assert_eq!(failures(&m, reason), 0.0, "{reason}");
    }
    // Two requests, and each scrape so far (at least one).
    let handshakes = m.get("pistachio_tls_handshakes_total");
    assert!(handshakes >= 3.0, "{handshakes}");
    assert_eq!(
        m.get("pistachio_connections_accepted_total"),
        handshakes + 4.0,
        "every connection is a handshake done or failed"
    );
    // The random bytes left OpenSSL errors behind, which were drained.
    assert!(m.get("pistachio_tls_error_queue_drained_total") >= 1.0);
    assert_eq!(
        m.get("pistachio_http_requests_total{method=\"GET\",route=\"/users/:id\",status=\"200\"}"),
        2.0
    );
}

#[test]
fn access_log_writes_one_line_per_exchange() {
    let metrics = Metrics::new();
    let server = Server::start(false, &metrics, Some(AccessLog::common()));
    let json_metrics = Metrics::new();
    let json_server = Server::start(false, &json_metrics, Some(AccessLog::json()));

    assert_eq!(server.ask(RequestBuilder::get("/users/clf-7")).status, 200);
    assert_eq!(server.ask(RequestBuilder::get("/clf-missing")).status, 404);
    // Keep-alive: two exchanges, two lines.
    let mut client = PlainClient::connect(server.port()).unwrap();
    client.request("/users/clf-ka1").unwrap();
    client.request("/users/clf-ka2").unwrap();
    drop(client);
    // The HTTP layer's own 400: no request line to show.
    let mut raw = connect_tcp(server.port()).unwrap();
    raw.write_all(b"BROKEN-clf\r\n\r\n").unwrap();
    let mut client = PlainClient::new(raw);
    assert_eq!(client.read_response().unwrap().status, 400);

    let deadline = Instant::now() + Duration::from_secs(10);
    let line = |marker: &str| loop {
        let lines = lines_with(marker);
        if !lines.is_empty() || Instant::now() > deadline {
            assert_eq!(lines.len(), 1, "{marker}: {lines:?}");
            return lines[0].clone();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let ok = line("/users/clf-7");
    let expected = "\"GET /users/clf-7 HTTP/1.1\" 200 10 \"/users/:id\" ";
    assert!(ok.starts_with("127.0.0.1 - - ["), "{ok}");
    assert!(ok.contains("] \"GET"), "{ok}");
    assert!(ok.contains(expected), "{ok}");
    let missing = line("/clf-missing");
    assert!(
        missing.contains("\"GET /clf-missing HTTP/1.1\" 404 31 -"),
        "{missing}"
    );
    line("/users/clf-ka1");
    line("/users/clf-ka2");
    // The 400 line: wait for one more line with `"-" 400`.
    let refused = loop {
        let lines = lines_with("\"-\" 400 ");
        if !lines.is_empty() || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(refused.len(), 1, "{refused:?}");

    assert_eq!(
        json_server.ask(RequestBuilder::get("/users/json-1")).status,
        200
    );
    let json = line("/users/json-1");
    let value: serde_json::Value = serde_json::from_str(&json).expect(&json);
    assert_eq!(value["method"], "GET");
    assert_eq!(value["target"], "/users/json-1");
    assert_eq!(value["route"], "/users/:id");
    assert_eq!(value["status"], 200);
    assert_eq!(value["bytes"], 11);
    assert_eq!(value["version"], "HTTP/1.1");
    assert_eq!(value["end"], "completed");
    assert!(value["time"].as_str().unwrap().ends_with('Z'));
    assert!(value["duration_ms"].as_f64().unwrap() >= 0.0);
}

/// The Combined Log Format: `Referer` and `User-Agent` after the size,
/// kept for the log because the access log asks for them
/// (`Hooks::REQUEST_HEADERS`), on handler answers and on the HTTP layer's
/// own refusals alike; `"-"` when absent. The Common format next to it
/// never sees them.
#[test]
fn combined_access_log_has_referer_and_user_agent() {
    let metrics = Metrics::new();
    let server = Server::start(false, &metrics, Some(AccessLog::combined()));
    let ask = RequestBuilder::get("/users/comb-1")
        .header("Referer", "https://example.com/from?x=\"1\"")
        .header("User-Agent", "pistachio-test/1.0 (combined)");
    assert_eq!(server.ask(ask).status, 200);
    assert_eq!(server.ask(RequestBuilder::get("/users/comb-2")).status, 200);
    // Refused by the HTTP layer from its head (a body over the size
    // limit): 413, the head's fields still known.
    let mut raw = connect_tcp(server.port()).unwrap();
    raw.write_all(
        b"POST /users/comb-3 HTTP/1.1\r\nHost: x\r\nUser-Agent: refused-agent/2\r\n\
          Content-Length: 1000000000000\r\n\r\n",
    )
    .unwrap();
    let mut client = PlainClient::new(raw);
    assert_eq!(client.read_response().unwrap().status, 413);

    let deadline = Instant::now() + Duration::from_secs(10);
    let line = |marker: &str| loop {
        let lines = lines_with(marker);
        if !lines.is_empty() || Instant::now() > deadline {
            assert_eq!(lines.len(), 1, "{marker}: {lines:?}");
            return lines[0].clone();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let with = line("/users/comb-1 ");
    assert!(
        with.contains(
            "\"GET /users/comb-1 HTTP/1.1\" 200 11 \"https://example.com/from?x=\\\"1\\\"\" \
             \"pistachio-test/1.0 (combined)\" \"/users/:id\" "
        ),
        "{with}"
    );
    let without = line("/users/comb-2 ");
    assert!(
        without.contains("\"GET /users/comb-2 HTTP/1.1\" 200 11 \"-\" \"-\" \"/users/:id\" "),
        "{without}"
    );
    let refused = line("refused-agent/2");
    assert!(
        refused.contains("\"POST /users/comb-3 HTTP/1.1\" 413 ")
            && refused.contains(" \"-\" \"refused-agent/2\" "),
        "{refused}"
    );
}

#[test]
fn transport_bytes_are_counted_exactly() {
    use std::io::Read;
    let metrics = Metrics::new();
    let server = Server::start(false, &metrics, None);
    let (mut received, mut sent) = (0, 0);
    for path in ["/users/1", "/nothing-here", "/users/22"] {
        let request = RequestBuilder::get(path).close().to_bytes();
        let mut tcp = connect_tcp(server.port()).unwrap();
        tcp.write_all(&request).unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).unwrap();
        received += request.len();
        sent += answer.len();
    }
    // The first scrape's request is read before it is answered; its
    // answer is written before the second scrape's request.
    let scrape = RequestBuilder::get("/metrics").close().to_bytes();
    let mut tcp = connect_tcp(server.port()).unwrap();
    tcp.write_all(&scrape).unwrap();
    let mut first = Vec::new();
    tcp.read_to_end(&mut first).unwrap();
    let text = String::from_utf8_lossy(&first);
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let m = Exposition::parse(body);
    assert_eq!(
        m.get("pistachio_transport_received_bytes_total"),
        (received + scrape.len()) as f64
    );
    assert_eq!(m.get("pistachio_transport_sent_bytes_total"), sent as f64);
    let (_, m) = server.scrape();
    assert_eq!(
        m.get("pistachio_transport_sent_bytes_total"),
        (sent + first.len()) as f64
    );
}
