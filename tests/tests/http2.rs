//! HTTP/2 with real clients: libcurl (nghttp2 inside) over TLS with ALPN
//! `h2` and over plaintext with prior knowledge (h2c), and the `curl`
//! program when it is installed. The same handlers, writers and
//! middleware as HTTP/1.1: plain answers, many streams at once on one
//! connection, large bodies both ways, `serve_file`, streamed answers.

use std::io::Read as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use curl::easy::{Easy2, Handler as CurlHandler, HttpVersion, List, WriteError};
use curl::multi::Multi;
use pistachio_http::{
    BodyMode, ConnectionInfo, Endpoint, Exchange, Handler, Hooks, Middleware, Options, Request,
    ResponseWriter, StatusCode, TlsConfig, Version,
};
use pistachio_tests::{certs, init_logging};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Deterministic bytes for large bodies.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// The test handler: counts connections, answers by path.
struct App {
    connections: AtomicUsize,
    dir: std::path::PathBuf,
}

impl Handler for App {
    fn on_connection(&self, _: &ConnectionInfo) {
        self.connections.fetch_add(1, Ordering::SeqCst);
    }

    fn body_mode(&self, request: &Request) -> BodyMode {
        if request.path() == "/upload-streamed" {
            BodyMode::Streamed
        } else {
            BodyMode::Buffered
        }
    }

    fn on_request(&self, mut req: Request, resp: ResponseWriter) {
        let version = match req.version() {
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_11 => "HTTP/1.1",
            _ => "other",
        };
        match req.path() {
            "/version" => resp.send(StatusCode::OK, version),
            "/echo" => {
                let body = req.into_body();
                resp.send(StatusCode::OK, body);
            }
            "/upload-streamed" => {
                let mut body = req.take_body_stream().expect("a streamed body");
                std::thread::spawn(move || {
                    let mut total = 0usize;
                    let mut sum = 0u64;
                    while let Ok(Some(chunk)) = body.next_chunk() {
                        total += chunk.len();
                        sum += chunk.iter().map(|&b| u64::from(b)).sum::<u64>();
                    }
                    resp.send(StatusCode::OK, format!("{total} {sum}"));
                });
            }
            "/big" => {
                let n: usize = req.query("n").and_then(|n| n.parse().ok()).unwrap_or(0);
                resp.send(StatusCode::OK, pattern(n));
            }
            "/slow" => {
                let id = req.query("id").unwrap_or_default().into_owned();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    resp.send(StatusCode::OK, format!("slow {id}"));
                });
            }
            "/file" => {
                let _ = resp.serve_file(self.dir.join("file.bin"));
            }
            "/stream" => {
                let mut stream = resp.stream(StatusCode::OK);
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        if stream.send_chunk(format!("line {i}\n")).is_err() {
                            return;
                        }
                    }
                    stream.end();
                });
            }
            "/head" => resp.send(StatusCode::OK, "not sent for HEAD"),
            _ => resp.send(StatusCode::NOT_FOUND, "no such thing"),
        }
    }
}

/// Every exchange the middleware saw complete: (status, version, body bytes).
#[derive(Default)]
struct Seen(Mutex<Vec<(u16, Version, u64)>>);

struct Record(Arc<Seen>);

impl Middleware for Record {
    fn hooks(&self) -> Hooks {
        Hooks::ON_COMPLETE
    }

    fn on_complete(&self, exchange: &Exchange<'_>) {
        self.0 .0.lock().unwrap().push((
            exchange.status.as_u16(),
            exchange.request.version(),
            exchange.body_bytes,
        ));
    }
}

struct Server {
    endpoint: Endpoint,
    app: Arc<App>,
    seen: Arc<Seen>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn serve(tls: bool) -> Server {
    init_logging();
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pistachio-h2-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("file.bin"), pattern(3 * 1024 * 1024 + 17)).unwrap();
    let app = Arc::new(App {
        connections: AtomicUsize::new(0),
        dir: dir.clone(),
    });
    let seen = Arc::new(Seen::default());
    let mut options = Options::default()
        .threads(2)
        .max_request_size(16 * 1024 * 1024)
        .middleware(Record(Arc::clone(&seen)));
    if tls {
        let config = TlsConfig::from_pem_files(certs::server_chain_pem(), certs::server_key())
            .expect("test certificate");
        options = options.tls(config);
    }
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    endpoint.serve_threaded(Arc::clone(&app)).unwrap();
    Server {
        endpoint,
        app,
        seen,
        _dir: TempDir(dir),
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        let port = self.endpoint.local_addr().port();
        if self.endpoint.is_tls() {
            format!("https://localhost:{port}{path}")
        } else {
            format!("http://127.0.0.1:{port}{path}")
        }
    }
}

/// Collects a transfer's body and header lines.
#[derive(Default)]
struct Collect {
    body: Vec<u8>,
    headers: Vec<String>,
}

impl CurlHandler for Collect {
    fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        self.body.extend_from_slice(data);
        Ok(data.len())
    }

    fn header(&mut self, data: &[u8]) -> bool {
        self.headers
            .push(String::from_utf8_lossy(data).trim_end().to_owned());
        true
    }
}

/// An HTTP/2-only libcurl handle for `url`.
fn h2_handle(server: &Server, path: &str) -> Easy2<Collect> {
    let mut easy = Easy2::new(Collect::default());
    easy.url(&server.url(path)).unwrap();
    if server.endpoint.is_tls() {
        easy.http_version(HttpVersion::V2TLS).unwrap();
        easy.cainfo(certs::ca_pem()).unwrap();
        let mut resolve = List::new();
        resolve
            .append(&format!(
                "localhost:{}:127.0.0.1",
                server.endpoint.local_addr().port()
            ))
            .unwrap();
        easy.resolve(resolve).unwrap();
    } else {
        easy.http_version(HttpVersion::V2PriorKnowledge).unwrap();
    }
    easy.timeout(TIMEOUT).unwrap();
    easy.signal(false).unwrap();
    easy
}

fn status_line(easy: &Easy2<Collect>) -> &str {
    easy.get_ref()
        .headers
        .iter()
        .find(|h| h.starts_with("HTTP/"))
        .map(String::as_str)
        .unwrap_or("")
}

fn get(server: &Server, path: &str) -> (u32, Vec<u8>, String) {
    let mut easy = h2_handle(server, path);
    easy.perform().unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let code = easy.response_code().unwrap();
    let line = status_line(&easy).to_owned();
    (code, std::mem::take(&mut easy.get_mut().body), line)
}

#[test]
fn libcurl_has_http2() {
    assert!(
        curl::Version::get().feature_http2(),
        "the static libcurl is built without nghttp2 (curl's `http2` feature)"
    );
}

/// ALPN `h2` over TLS and h2c over plaintext both reach the handler as
/// HTTP/2 requests, and the answer comes back as HTTP/2.
#[test]
fn get_over_tls_and_h2c() {
    for tls in [true, false] {
        let server = serve(tls);
        let (code, body, line) = get(&server, "/version");
        assert_eq!(code, 200, "tls={tls}");
        assert_eq!(body, b"HTTP/2", "tls={tls}");
        assert!(line.starts_with("HTTP/2 200"), "tls={tls}: {line}");
        let (code, body, _) = get(&server, "/nowhere");
        assert_eq!((code, &body[..]), (404, &b"no such thing"[..]));
    }
}

/// The same endpoint still serves HTTP/1.1 on plaintext (no preface) and
/// over TLS to a client that offers only `http/1.1`.
#[test]
fn http1_clients_are_still_served() {
    for tls in [true, false] {
        let server = serve(tls);
        let mut easy = h2_handle(&server, "/version");
        easy.http_version(HttpVersion::V11).unwrap();
        easy.perform().unwrap();
        assert_eq!(easy.get_ref().body, b"HTTP/1.1", "tls={tls}");
    }
}

/// Sixty requests at once over one connection (libcurl multiplexes them
/// as streams), answered out of order from other threads.
#[test]
fn many_concurrent_streams_on_one_connection() {
    for tls in [true, false] {
        let server = serve(tls);
        // `pipewait`: the handles wait for the first connection and
        // multiplex on it.
        let mut multi = Multi::new();
        multi.pipelining(false, true).unwrap();
        multi.set_max_host_connections(1).unwrap();
        let mut handles = Vec::new();
        for i in 0..60 {
            let path = if i % 3 == 0 {
                format!("/slow?id={i}")
            } else {
                "/version".to_owned()
            };
            let mut easy = h2_handle(&server, &path);
            easy.pipewait(true).unwrap();
            handles.push((i, multi.add2(easy).unwrap()));
        }
        let started = std::time::Instant::now();
        while multi.perform().unwrap() > 0 {
            assert!(started.elapsed() < TIMEOUT, "transfers did not finish");
            multi.wait(&mut [], Duration::from_millis(100)).unwrap();
        }
        let mut errors = Vec::new();
        multi.messages(|m| {
            if let Some(Err(e)) = m.result() {
                errors.push(e.to_string());
            }
        });
        assert!(errors.is_empty(), "{errors:?}");
        for (i, handle) in handles {
            let mut easy = multi.remove2(handle).unwrap();
            let body = String::from_utf8(easy.get_mut().body.clone()).unwrap();
            let want = if i % 3 == 0 {
                format!("slow {i}")
            } else {
                "HTTP/2".to_owned()
            };
            assert_eq!(body, want);
        }
        assert_eq!(
            server.app.connections.load(Ordering::SeqCst),
            1,
            "tls={tls}: all streams on one connection"
        );
        assert!(server.endpoint.http2_stats().streams >= 60);
    }
}

/// A 12 MiB upload, buffered and streamed, and a 20 MiB download: both
/// far beyond every flow-control window, so both directions have to wait
/// for WINDOW_UPDATEs.
#[test]
fn big_upload_and_download() {
    for tls in [true, false] {
        let server = serve(tls);
        let body = pattern(12 * 1024 * 1024);
        let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
        for path in ["/echo", "/upload-streamed"] {
            let mut easy = h2_handle(&server, path);
            easy.post(true).unwrap();
            easy.post_fields_copy(&body).unwrap();
            easy.perform().unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(easy.response_code().unwrap(), 200);
            let got = &easy.get_ref().body;
            if path == "/echo" {
                assert!(
                    got == &body,
                    "tls={tls}: echo differs ({} bytes)",
                    got.len()
                );
            } else {
                assert_eq!(
                    String::from_utf8_lossy(got),
                    format!("{} {sum}", body.len())
                );
            }
        }
        let n = 20 * 1024 * 1024;
        let (code, got, _) = get(&server, &format!("/big?n={n}"));
        assert_eq!(code, 200);
        assert!(got == pattern(n), "tls={tls}: download differs");
    }
}

/// `serve_file` (sendfile over HTTP/1.1) is read into DATA frames.
#[test]
fn serve_file_over_http2() {
    for tls in [true, false] {
        let server = serve(tls);
        let (code, body, _) = get(&server, "/file");
        assert_eq!(code, 200);
        assert!(body == pattern(3 * 1024 * 1024 + 17), "tls={tls}");
    }
}

/// A [`pistachio_http::ResponseStream`] written from another thread
/// arrives whole, its pieces as DATA frames, the end as END_STREAM.
#[test]
fn streamed_answer() {
    for tls in [true, false] {
        let server = serve(tls);
        let (code, body, _) = get(&server, "/stream");
        assert_eq!(code, 200);
        let want: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8(body).unwrap(), want, "tls={tls}");
    }
}

/// HEAD gets the head only; middleware sees HTTP/2 exchanges complete.
#[test]
fn head_and_middleware() {
    let server = serve(false);
    let mut easy = h2_handle(&server, "/head");
    easy.nobody(true).unwrap();
    easy.perform().unwrap();
    assert_eq!(easy.response_code().unwrap(), 200);
    assert!(easy.get_ref().body.is_empty());
    assert!(easy
        .get_ref()
        .headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case("content-length: 17")));
    let (code, _, _) = get(&server, "/version");
    assert_eq!(code, 200);
    // The completion hooks run on the worker after the last frame.
    let started = std::time::Instant::now();
    loop {
        let seen = server.seen.0.lock().unwrap().clone();
        if seen.len() >= 2 {
            assert!(seen.contains(&(200, Version::HTTP_2, 6)), "{seen:?}");
            assert!(seen.contains(&(200, Version::HTTP_2, 0)), "{seen:?}");
            break;
        }
        assert!(started.elapsed() < TIMEOUT, "{seen:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `curl` program (Debian's, with nghttp2), when it is installed:
/// `--http2-prior-knowledge` and `--http2` over TLS.
#[test]
fn curl_program() {
    let Ok(out) = std::process::Command::new("curl").arg("--version").output() else {
        eprintln!("no curl program: skipped");
        return;
    };
    if !String::from_utf8_lossy(&out.stdout).contains("HTTP2") {
        eprintln!("curl without HTTP/2: skipped");
        return;
    }
    for tls in [false, true] {
        let server = serve(tls);
        let mut cmd = std::process::Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "-",
            "-w",
            "\n%{http_version}",
        ]);
        if tls {
            let port = server.endpoint.local_addr().port();
            cmd.args(["--http2", "--cacert"])
                .arg(certs::ca_pem())
                .args(["--resolve", &format!("localhost:{port}:127.0.0.1")]);
        } else {
            cmd.arg("--http2-prior-knowledge");
        }
        cmd.arg(server.url("/version"));
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("curl runs");
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(out, "HTTP/2\n2", "tls={tls}");
    }
}

/// Over TLS with ALPN `h2` the client must send the HTTP/2 preface: an
/// HTTP/1.1 request instead gets the server's SETTINGS, then GOAWAY
/// PROTOCOL_ERROR, then the close.
#[test]
fn tls_h2_without_the_preface_is_a_connection_error() {
    use std::io::Write as _;
    let server = serve(true);
    let mut builder = pistachio_tests::client::tls_connector_builder().unwrap();
    builder
        .set_alpn_protos(&pistachio_tests::client::alpn_wire(&["h2"]))
        .unwrap();
    let tcp = pistachio_tests::client::connect_tcp(server.endpoint.local_addr().port()).unwrap();
    let mut tls = builder.build().connect("localhost", tcp).unwrap();
    assert_eq!(tls.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let mut kinds = Vec::new();
    let mut at = 0;
    while raw.len() >= at + 9 {
        let len = u32::from_be_bytes([0, raw[at], raw[at + 1], raw[at + 2]]) as usize;
        kinds.push(raw[at + 3]);
        if raw[at + 3] == 7 {
            let code = u32::from_be_bytes(raw[at + 13..at + 17].try_into().unwrap());
            assert_eq!(code, 1, "GOAWAY PROTOCOL_ERROR");
        }
        at += 9 + len;
    }
    assert_eq!(kinds.first(), Some(&4), "SETTINGS first: {kinds:?}");
    assert_eq!(kinds.last(), Some(&7), "GOAWAY last: {kinds:?}");
}
