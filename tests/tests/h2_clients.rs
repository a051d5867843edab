//! HTTP/2 with real clients beyond libcurl: `nghttp` and `h2load`
//! (Debian's `nghttp2-client`), the Python `h2` library driving frames by
//! hand (`tests/h2py/h2_cases.py`) and `httpx` with HTTP/2
//! (`tests/h2py/httpx_many.py`).
//!
//! Each test needs its client. Without it the test is skipped with a
//! message, unless `PISTACHIO_REQUIRE_H2_CLIENTS` is set (CI sets it):
//! then a missing client is a failure. Every client runs as a child
//! process with a deadline, against 127.0.0.1 only.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pistachio_http::header::{HeaderValue, CONTENT_RANGE};
use pistachio_http::{
    BodyMode, ConnectionInfo, Endpoint, Handler, Options, Request, ResponseWriter, StatusCode,
    Version,
};
use pistachio_tests::client::{Connection, RequestBuilder, Stream};
use pistachio_tests::{certs, init_logging, server::server_tls_config, tools, TempDir};

/// Longest any one client run may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// Size of the file `/file` serves.
const FILE_LEN: usize = 3 * 1024 * 1024 + 17;

/// Set in CI: a missing client fails its tests instead of skipping them.
const REQUIRE: &str = "PISTACHIO_REQUIRE_H2_CLIENTS";

/// Deterministic body bytes (the Python scripts make the same).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn sum(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

// ----- the server -----

/// The test handler. Routes:
///
/// * `/version`: `HTTP/2` or `HTTP/1.1`, the version the request came in;
/// * `/slow?id=I`: `slow I`, answered 20 ms later from another thread;
/// * `/big?n=N`: N bytes of [`pattern`];
/// * `/sum` (buffered), `/sum-streamed` (streamed): `LEN SUM` of the body;
/// * `/trailers`: `LEN SUM x-checksum=V x-note=V`, the fields as the
///   handler sees them (trailers are added to a buffered request's head);
/// * `/file`: `serve_file` of a [`FILE_LEN`]-byte file of [`pattern`];
///   `/range`: `send_file` of 1 MiB of it from offset 1000, as `206`;
/// * `/endless?id=ID`: a streamed answer of 16 KiB pieces that ends only
///   when a write fails (at most 64 MiB); how it ended is noted in
///   `stopped`.
struct App {
    connections: AtomicUsize,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: AtomicUsize,
    stopped: Arc<Mutex<Vec<(String, String)>>>,
    file: PathBuf,
}

impl Handler for App {
    fn on_connection(&self, _: &ConnectionInfo) {
        self.connections.fetch_add(1, Ordering::SeqCst);
    }

    fn body_mode(&self, request: &Request) -> BodyMode {
        if request.path() == "/sum-streamed" {
            BodyMode::Streamed
        } else {
            BodyMode::Buffered
        }
    }

    fn on_request(&self, mut req: Request, resp: ResponseWriter) {
        match req.path() {
            "/version" => resp.send(StatusCode::OK, version_name(req.version())),
            "/slow" => {
                let id = req.query("id").unwrap_or_default().into_owned();
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.most_in_flight.fetch_max(now, Ordering::SeqCst);
                let in_flight = Arc::clone(&self.in_flight);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    resp.send(StatusCode::OK, format!("slow {id}"));
                });
            }
            "/big" => {
                let n: usize = req.query("n").and_then(|n| n.parse().ok()).unwrap_or(0);
                resp.send(StatusCode::OK, pattern(n));
            }
            "/sum" => {
                let body = req.into_body();
                resp.send(StatusCode::OK, format!("{} {}", body.len(), sum(&body)));
            }
            "/sum-streamed" => {
                let mut body = req.take_body_stream().expect("a streamed body");
                std::thread::spawn(move || {
                    let (mut len, mut total) = (0usize, 0u64);
                    while let Ok(Some(chunk)) = body.next_chunk() {
                        len += chunk.len();
                        total += sum(&chunk);
                    }
                    resp.send(StatusCode::OK, format!("{len} {total}"));
                });
            }
            "/trailers" => {
                let field = |name: &str| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned()
                };
                let (checksum, note) = (field("x-checksum"), field("x-note"));
                let body = req.into_body();
                resp.send(
                    StatusCode::OK,
                    format!(
                        "{} {} x-checksum={checksum} x-note={note}",
                        body.len(),
                        sum(&body)
                    ),
                );
            }
            "/file" => {
                let _ = resp.serve_file(&self.file);
            }
            "/range" => {
                let file = std::fs::File::open(&self.file).expect("the test file");
                let resp = resp.header(
                    CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes 1000-1049575/{FILE_LEN}")).unwrap(),
                );
                let _ = resp.send_file(StatusCode::PARTIAL_CONTENT, file, 1000, 1 << 20);
            }
            "/endless" => {
                let id = req.query("id").unwrap_or_default().into_owned();
                let mut stream = resp.stream(StatusCode::OK);
                let stopped = Arc::clone(&self.stopped);
                std::thread::spawn(move || {
                    let piece = pattern(16 * 1024);
                    let mut how = "ended".to_owned();
                    for _ in 0..4096 {
                        if let Err(e) = stream.send_chunk(&piece) {
                            how = format!("{:?}", e.kind());
                            break;
                        }
                    }
                    if how == "ended" {
                        stream.end();
                    }
                    stopped.lock().unwrap().push((id, how));
                });
            }
            _ => resp.send(StatusCode::NOT_FOUND, "no such thing"),
        }
    }
}

fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_10 => "HTTP/1.0",
        _ => "other",
    }
}

struct Server {
    endpoint: Endpoint,
    app: Arc<App>,
    _dir: TempDir,
}

fn serve(tls: bool) -> Server {
    serve_with(tls, Options::default())
}

/// [`serve`] with `options` as the base (two threads, 16 MiB bodies
/// and TLS are added).
fn serve_with(tls: bool, options: Options) -> Server {
    init_logging();
    let dir = TempDir::new("pistachio-h2-clients");
    std::fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join("file.bin");
    std::fs::write(&file, pattern(FILE_LEN)).unwrap();
    let app = Arc::new(App {
        connections: AtomicUsize::new(0),
        in_flight: Arc::new(AtomicUsize::new(0)),
        most_in_flight: AtomicUsize::new(0),
        stopped: Arc::new(Mutex::new(Vec::new())),
        file,
    });
    let mut options = options.threads(2).max_request_size(16 * 1024 * 1024);
    if tls {
        options = options.tls(server_tls_config());
    }
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    endpoint.serve_threaded(Arc::clone(&app)).unwrap();
    Server {
        endpoint,
        app,
        _dir: dir,
    }
}

impl Server {
    fn port(&self) -> u16 {
        self.endpoint.local_addr().port()
    }

    /// `https://localhost:PORT{path}` (`nghttp` checks the name in the
    /// certificate as a DNS name) or `http://127.0.0.1:PORT{path}`.
    fn url(&self, path: &str) -> String {
        if self.endpoint.is_tls() {
            format!("https://localhost:{}{path}", self.port())
        } else {
            format!("http://127.0.0.1:{}{path}", self.port())
        }
    }
}

// ----- running clients -----

/// Whether `program` runs (`probe` are its arguments for the check); a
/// missing client fails the test when [`REQUIRE`] is set.
fn available(program: &str, probe: &[&str], install: &str) -> bool {
    tools::runs(program, probe, install, REQUIRE)
}

fn nghttp2_client() -> bool {
    available("nghttp", &["--version"], "apt-get install nghttp2-client")
        && available("h2load", &["--version"], "apt-get install nghttp2-client")
}

fn python_h2() -> bool {
    tools::has_python_module("h2", "h2", REQUIRE)
}

fn python_httpx() -> bool {
    tools::has_python_module("httpx, h2", "'httpx[http2]'", REQUIRE)
}

/// Runs `cmd` to its end, or kills it after [`DEADLINE`] and fails.
fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = pipe.read_to_end(&mut all);
            all
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            let err = err.join().unwrap();
            panic!(
                "{shown} still running after {DEADLINE:?}; stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `cmd` and fails unless it exits 0.
#[track_caller]
fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(4000)]),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `nghttp` with a timeout; over TLS it trusts the test CA (OpenSSL's
/// default store, pointed at `ca.pem`), so a certificate it rejects
/// shows as a warning on stderr ([`assert_clean`]).
fn nghttp() -> Command {
    let mut cmd = Command::new("nghttp");
    cmd.env("SSL_CERT_FILE", certs::ca_pem())
        .arg("--timeout=15");
    cmd
}

/// Fails on any warning or error nghttp printed (a refused certificate,
/// a stream reset, a protocol error).
#[track_caller]
fn assert_clean(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("WARNING") && !err.contains("ERROR") && !err.contains("error"),
        "nghttp complained:\n{err}"
    );
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("h2py")
        .join(name)
}

/// Runs one case of `h2_cases.py` against `server`.
fn h2_case(server: &Server, case: &str) {
    let mut cmd = Command::new("python3");
    cmd.arg(script("h2_cases.py"))
        .arg(case)
        .arg(server.port().to_string());
    if server.endpoint.is_tls() {
        cmd.arg("--tls").arg(certs::ca_pem());
    }
    let out = run_ok(&mut cmd);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with(&format!("ok {case}")), "{case}: {said}");
}

/// If `h2` is installed, [`h2_case`] `case` against a fresh server, over
/// TLS or not as each of `tls` says.
fn python_h2_case(case: &str, tls: &[bool]) {
    if !python_h2() {
        return;
    }
    for &tls in tls {
        h2_case(&serve(tls), case);
    }
}

// ----- nghttp -----

/// GET over TLS (ALPN `h2`) and over h2c with prior knowledge (what
/// `nghttp` does for `http://` URIs unless told `-u`), with the frame
/// log: the server's SETTINGS, its ACK of the client's, the answer's
/// HEADERS with `:status: 200`, and END_STREAM.
#[test]
fn nghttp_get_over_tls_and_h2c() {
    if !nghttp2_client() {
        return;
    }
    for tls in [true, false] {
        let server = serve(tls);
        let out = run_ok(nghttp().arg(server.url("/version")));
        assert_clean(&out);
        assert_eq!(out.stdout, b"HTTP/2", "tls={tls}");

        let out = run_ok(nghttp().arg("-v").arg(server.url("/version")));
        assert_clean(&out);
        let log = String::from_utf8_lossy(&out.stdout);
        if tls {
            assert!(log.contains("The negotiated protocol: h2"), "{log}");
        }
        // The server's own SETTINGS, and its ACK of the client's.
        assert!(
            log.lines()
                .any(|l| l.contains("recv SETTINGS frame <length=")
                    && l.contains("flags=0x00, stream_id=0>")),
            "tls={tls}: no SETTINGS from the server:\n{log}"
        );
        assert!(
            log.contains("recv SETTINGS frame <length=0, flags=0x01, stream_id=0>"),
            "tls={tls}: no SETTINGS ACK from the server:\n{log}"
        );
        assert!(log.contains(":status: 200"), "{log}");
        assert!(
            log.lines()
                .any(|l| l.contains("recv DATA frame") && l.contains("flags=0x01")),
            "tls={tls}: no DATA with END_STREAM:\n{log}"
        );
        assert!(log.contains("HTTP/2"), "{log}");
        assert_eq!(server.app.connections.load(Ordering::SeqCst), 2);
    }
}

/// pistachio does not do `Upgrade: h2c` (RFC 9113 §3.1 deprecates it):
/// a client that asks gets an ordinary HTTP/1.1 answer on the same
/// connection. `nghttp -u` reports that the upgrade did not happen and
/// still shows the HTTP/1.1 answer; the `curl` program (`--http2` on an
/// `http://` URL) gets it as HTTP/1.1; and by hand, the connection stays
/// HTTP/1.1 for the next request.
#[test]
fn upgrade_h2c_is_answered_as_http11() {
    let server = serve(false);
    // By hand: an upgrade request, then a plain one, on one connection.
    let mut c = Connection::new(Stream::connect(server.port(), false).unwrap());
    let upgrade = RequestBuilder::get("/version")
        .host("127.0.0.1")
        .header("Connection", "Upgrade, HTTP2-Settings")
        .header("Upgrade", "h2c")
        .header("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA");
    c.write_raw(&upgrade.to_bytes()).unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.head.starts_with("HTTP/1.1 200"), "{}", r.head);
    assert_eq!(r.body, b"HTTP/1.1");
    assert!(r.header("upgrade").is_none(), "{}", r.head);
    let r = c.request("/version").unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"HTTP/1.1"[..]));
    // With a body (nghttp -u -d sends OPTIONS with a body, curl a POST).
    let post = RequestBuilder::new("POST", "/sum")
        .host("127.0.0.1")
        .header("Connection", "Upgrade, HTTP2-Settings")
        .header("Upgrade", "h2c")
        .header("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")
        .body(b"abc");
    c.write_raw(&post.to_bytes()).unwrap();
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text()), (200, "3 294".to_owned()));

    if available("curl", &["--version"], "apt-get install curl") {
        let out = run_ok(Command::new("curl").args([
            "-sS",
            "--max-time",
            "15",
            "--http2",
            "-w",
            "\n%{http_version}",
            &server.url("/version"),
        ]));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "HTTP/1.1\n1.1");
    }
    if nghttp2_client() {
        let out = run(nghttp().args(["-u", "-v"]).arg(server.url("/version")));
        let log = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        // nghttp prints the answer to its upgrade request, then gives up
        // on HTTP/2 for that connection.
        let answer = log
            .split_once("HTTP Upgrade response")
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        assert!(
            answer.trim_start().starts_with("HTTP/1.1 200 OK")
                && answer.lines().any(|l| l.trim_end() == "HTTP/1.1")
                && err.contains("HTTP Upgrade failed"),
            "nghttp -u: {log}\n{err}"
        );
        assert!(!log.contains("HTTP Upgrade success"), "nghttp -u: {log}");
    }
}

/// `nghttp -m 100`: the same URI 100 times at once on one connection
/// (the server's limit is 100 concurrent streams); the answers come from
/// other threads, so many handlers are in flight together.
#[test]
fn nghttp_many_concurrent_streams() {
    if !nghttp2_client() {
        return;
    }
    for tls in [true, false] {
        let server = serve(tls);
        let out = run_ok(nghttp().args(["-m", "100"]).arg(server.url("/slow?id=7")));
        assert_clean(&out);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "slow 7".repeat(100),
            "tls={tls}"
        );
        assert_eq!(server.app.connections.load(Ordering::SeqCst), 1);
        let most = server.app.most_in_flight.load(Ordering::SeqCst);
        assert!(most > 1, "tls={tls}: at most {most} requests at once");
        assert!(server.endpoint.http2_stats().streams >= 100);
    }
}

/// A download of several MiB (far beyond nghttp's 64 KiB windows), a
/// `serve_file` answer and a `send_file` range, compared byte for byte.
#[test]
fn nghttp_big_download_and_files() {
    if !nghttp2_client() {
        return;
    }
    for tls in [true, false] {
        let server = serve(tls);
        let n = 6 * 1024 * 1024 + 3;
        let out = run_ok(nghttp().arg(server.url(&format!("/big?n={n}"))));
        assert_clean(&out);
        assert!(out.stdout == pattern(n), "tls={tls}: download differs");

        let out = run_ok(nghttp().arg(server.url("/file")));
        assert_clean(&out);
        assert!(out.stdout == pattern(FILE_LEN), "tls={tls}: /file differs");

        let out = run_ok(nghttp().args(["-v", "-n"]).arg(server.url("/range")));
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(log.contains(":status: 206"), "{log}");
        assert!(log.contains("content-range: bytes 1000-1049575/"), "{log}");
        let out = run_ok(nghttp().arg(server.url("/range")));
        assert_clean(&out);
        let want = &pattern(FILE_LEN)[1000..1000 + (1 << 20)];
        assert!(out.stdout == want, "tls={tls}: /range differs");
    }
}

/// `nghttp -d FILE` uploads 5 MiB, buffered and streamed, and with
/// `--trailer` sends trailer fields after the body, which reach the
/// handler.
#[test]
fn nghttp_upload_and_trailers() {
    if !nghttp2_client() {
        return;
    }
    let dir = TempDir::new("pistachio-h2-upload");
    std::fs::create_dir_all(dir.path()).unwrap();
    let body = pattern(5 * 1024 * 1024 + 11);
    let upload = dir.path().join("upload.bin");
    std::fs::write(&upload, &body).unwrap();
    let want = format!("{} {}", body.len(), sum(&body));
    for tls in [true, false] {
        let server = serve(tls);
        for path in ["/sum", "/sum-streamed"] {
            let out = run_ok(nghttp().arg("-d").arg(&upload).arg(server.url(path)));
            assert_clean(&out);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                want,
                "tls={tls} {path}"
            );
        }
        let out = run_ok(
            nghttp()
                .arg("-d")
                .arg(&upload)
                .args(["--trailer=x-checksum: 42", "--trailer=x-note: from nghttp"])
                .arg(server.url("/trailers")),
        );
        assert_clean(&out);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{want} x-checksum=42 x-note=from nghttp"),
            "tls={tls}"
        );
    }
}

/// What nghttp can do to its own frames: a header list of ~25 KiB that
/// needs CONTINUATION frames (`--continuation`, against a server that
/// takes 64 KiB of header), padded HEADERS and DATA (`-b 255`), an
/// upload without `content-length`, and a download through windows of
/// 1 KiB per stream and 16 KiB for the connection (`-w 10 -W 14`).
#[test]
fn nghttp_continuation_padding_and_small_windows() {
    if !nghttp2_client() {
        return;
    }
    let dir = TempDir::new("pistachio-h2-frames");
    std::fs::create_dir_all(dir.path()).unwrap();
    let body = pattern(300_001);
    let upload = dir.path().join("upload.bin");
    std::fs::write(&upload, &body).unwrap();
    let want = format!("{} {}", body.len(), sum(&body));
    for tls in [false, true] {
        let server = serve_with(tls, Options::default().max_header_size(64 * 1024));
        let out = run_ok(
            nghttp()
                .args(["--continuation", "-v"])
                .arg(server.url("/version")),
        );
        assert_clean(&out);
        let log = String::from_utf8_lossy(&out.stdout);
        // nghttp logs the block as one HEADERS frame; larger than the
        // server's SETTINGS_MAX_FRAME_SIZE (16 KiB), it went out as
        // HEADERS and CONTINUATION frames.
        let block: usize = log
            .lines()
            .find_map(|l| {
                l.split_once("send HEADERS frame <length=")?
                    .1
                    .split(',')
                    .next()
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no HEADERS in the log:\n{log}"));
        assert!(block > 16 * 1024, "a header block of {block} bytes");
        assert!(log.contains(":status: 200"), "tls={tls}: {log}");

        let out = run_ok(
            nghttp()
                .args(["-b", "255"])
                .arg("-d")
                .arg(&upload)
                .arg(server.url("/sum")),
        );
        assert_clean(&out);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want,
            "tls={tls} padded"
        );

        let out = run_ok(
            nghttp()
                .args(["--no-content-length", "-d"])
                .arg(&upload)
                .arg(server.url("/sum-streamed")),
        );
        assert_clean(&out);
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "tls={tls}");

        let n = 2 * 1024 * 1024;
        let out = run_ok(
            nghttp()
                .args(["-w", "10", "-W", "14"])
                .arg(server.url(&format!("/big?n={n}"))),
        );
        assert_clean(&out);
        assert!(out.stdout == pattern(n), "tls={tls}: small windows");
    }
}

// ----- h2load -----

/// The counts of one of h2load's summary lines (`requests: 2000 total,
/// 2000 started, ...`), by word.
fn h2load_counts(report: &str, prefix: &str) -> HashMap<String, u64> {
    let line = report
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{report}"));
    line[prefix.len()..]
        .split(',')
        .filter_map(|part| {
            let mut words = part.split_whitespace();
            let n = words.next()?.parse().ok()?;
            Some((words.next()?.to_owned(), n))
        })
        .collect()
}

/// `h2load -n 2000 -c 4 -m 50` over h2c and TLS: every request succeeds
/// with a 2xx, none fails or errs; meanwhile an HTTP/1.1 client on the
/// same endpoint keeps being answered. Then 300 uploads the same way.
#[test]
fn h2load_bounded_runs() {
    if !nghttp2_client() {
        return;
    }
    let dir = TempDir::new("pistachio-h2load");
    std::fs::create_dir_all(dir.path()).unwrap();
    let upload = dir.path().join("upload.bin");
    std::fs::write(&upload, pattern(20_000)).unwrap();
    for tls in [false, true] {
        let server = serve(tls);
        let done = Arc::new(AtomicBool::new(false));
        let other = {
            let done = Arc::clone(&done);
            let port = server.port();
            std::thread::spawn(move || {
                let mut c = Connection::new(Stream::connect(port, tls).unwrap());
                let mut answered = 0;
                while !done.load(Ordering::SeqCst) || answered == 0 {
                    let r = c
                        .request("/version")
                        .expect("the HTTP/1.1 client is served");
                    assert_eq!((r.status, &r.body[..]), (200, &b"HTTP/1.1"[..]));
                    answered += 1;
                    assert!(answered < 100_000);
                }
                answered
            })
        };
        let runs: [(u64, &str, Option<&Path>, &[&str]); 3] = [
            (2000, "/version", None, &[]),
            (300, "/sum", Some(&upload), &[]),
            // Windows of 1 KiB per stream, 16 KiB per connection.
            (200, "/big?n=50000", None, &["-w", "10", "-W", "14"]),
        ];
        for (n, path, data, extra) in runs {
            let mut cmd = Command::new("h2load");
            let n_arg = n.to_string();
            cmd.args(["-n", &n_arg, "-c", "4", "-m", "50", "-T", "15", "-N", "15"])
                .args(extra);
            if let Some(data) = data {
                cmd.arg("-d").arg(data);
            }
            let out = run_ok(cmd.arg(server.url(path)));
            let report = String::from_utf8_lossy(&out.stdout);
            let requests = h2load_counts(&report, "requests:");
            let statuses = h2load_counts(&report, "status codes:");
            for (what, want) in [
                ("total", n),
                ("succeeded", n),
                ("done", n),
                ("failed", 0),
                ("errored", 0),
                ("timeout", 0),
            ] {
                assert_eq!(
                    requests.get(what),
                    Some(&want),
                    "tls={tls} {path} {what}:\n{report}"
                );
            }
            assert_eq!(statuses.get("2xx"), Some(&n), "tls={tls} {path}:\n{report}");
            if tls {
                assert!(report.contains("Application protocol: h2"), "{report}");
            }
        }
        done.store(true, Ordering::SeqCst);
        let answered = other.join().expect("the HTTP/1.1 client");
        assert!(answered > 0);
        assert_eq!(server.endpoint.http2_stats().protocol_errors, 0);
    }
}

// ----- Python h2 -----

/// A request body in many DATA frames, beyond the first window, then a
/// trailer section (HEADERS with END_STREAM): the trailer fields are in
/// the handler's request; also trailers with no body at all.
#[test]
fn python_h2_request_trailers() {
    python_h2_case("request_trailers", &[false, true]);
}

/// The client opens small windows and grants credit late and little at
/// a time, at the stream level and then at the connection level: the
/// server never sends past either window (`h2` raises
/// `FlowControlError` if it did; the script counts too).
#[test]
fn python_h2_slow_credit() {
    python_h2_case("slow_credit", &[false]);
}

/// SETTINGS_INITIAL_WINDOW_SIZE changed with a stream open: from 0 (no
/// DATA) to 1 MiB (the open stream takes the difference), then lowered
/// mid-download so the window goes negative (nothing more until
/// WINDOW_UPDATEs bring it back above zero).
#[test]
fn python_h2_window_settings_change() {
    python_h2_case("window_settings_change", &[false]);
}

/// The client resets an endless download midway: the server's producer
/// learns it (its next write fails), and the connection goes on serving
/// other streams.
#[test]
fn python_h2_reset_download() {
    if !python_h2() {
        return;
    }
    for tls in [false, true] {
        let server = serve(tls);
        h2_case(&server, "reset_download");
        let id = if tls { "rst-tls" } else { "rst-plain" };
        let started = Instant::now();
        loop {
            let stopped = server.app.stopped.lock().unwrap().clone();
            if let Some((_, how)) = stopped.iter().find(|(i, _)| i == id) {
                assert_eq!(how, "BrokenPipe", "tls={tls}: the producer ended by {how}");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "tls={tls}: the producer never learnt of the reset"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(server.endpoint.http2_stats().resets_received >= 1);
        assert_eq!(server.app.connections.load(Ordering::SeqCst), 1);
    }
}

/// PRIORITY frames and HEADERS with priority, on idle and open streams,
/// exclusive re-parenting midway: parsed, ignored, everything answered.
#[test]
fn python_h2_priority_ignored() {
    python_h2_case("priority_ignored", &[false]);
}

// ----- httpx -----

/// 200 requests at once from one `httpx.AsyncClient(http2=True)` over
/// TLS, plus two 2 MiB downloads and a 3 MiB upload: all answered over
/// HTTP/2, on one connection.
#[test]
fn httpx_many_requests_on_one_connection() {
    if !python_httpx() {
        return;
    }
    let server = serve(true);
    let out = run(Command::new("python3")
        .arg(script("httpx_many.py"))
        .arg(server.port().to_string())
        .arg(certs::ca_pem())
        .arg("200"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "httpx: {said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(said.trim()).unwrap();
    assert_eq!(seen["answers"], 203, "{said}");
    assert_eq!(seen["versions"], serde_json::json!(["HTTP/2"]), "{said}");
    assert_eq!(server.app.connections.load(Ordering::SeqCst), 1);
    let most = server.app.most_in_flight.load(Ordering::SeqCst);
    assert!(most > 1, "at most {most} requests at once");
}
