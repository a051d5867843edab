//! Black-box tests of the `rest_server` example, the project's main job.
//!
//! Each test runs the real program (built from `rest/examples/rest_server/`
//! as this package's `rest_server` binary) on `127.0.0.1:0` with a data
//! directory of its own, reads the URL and the `curl --cacert` line it
//! prints, and talks to it over HTTPS with libcurl trusting only the
//! certificate the server generated at start (raw sockets where the test
//! needs to control the bytes on the wire). The server is stopped with
//! SIGTERM and must exit cleanly, or killed with SIGKILL to show that what
//! it acknowledged was already on disk.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use curl::easy::{Easy, List, ReadError};
use pistachio_tests::abrupt::random_bytes;
use pistachio_tests::client::reset;
use pistachio_tests::openapi;
use pistachio_tests::prometheus::Exposition;
use pistachio_tests::{peak_rss_kib_of, rss_kib_of, TempDir, IO_TIMEOUT};

/// A running `rest_server` process.
struct Server {
    child: Child,
    /// `https://localhost:PORT` (or `http://` with `--no-tls`).
    base: String,
    /// The generated certificate, when serving on one.
    cacert: Option<PathBuf>,
    /// Lines the server prints after its banner.
    lines: Mutex<mpsc::Receiver<String>>,
    /// Its `--data-dir`.
    data: Arc<TempDir>,
    /// What it writes to stderr, line by line, when captured
    /// ([`Server::start_capturing`]).
    stderr: Option<Mutex<mpsc::Receiver<String>>>,
}

impl Server {
    /// Starts a server on a new, empty data directory.
    fn start(extra: &[&str]) -> Server {
        Server::start_on(Arc::new(TempDir::new("pistachio-kv")), extra, None)
    }

    /// Starts a server on `data`, with `PISTACHIO_TOKEN` set to `env_token`.
    fn start_on(data: Arc<TempDir>, extra: &[&str], env_token: Option<&str>) -> Server {
        Server::spawn(data, extra, env_token, false)
    }

    /// [`Server::start`], with its stderr captured ([`Server::stderr_line`]).
    fn start_capturing(extra: &[&str]) -> Server {
        Server::spawn(Arc::new(TempDir::new("pistachio-kv")), extra, None, true)
    }

    fn spawn(
        data: Arc<TempDir>,
        extra: &[&str],
        env_token: Option<&str>,
        capture_stderr: bool,
    ) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rest_server"));
        command
            .args(["--addr", "127.0.0.1:0", "--threads", "3"])
            .arg("--data-dir")
            .arg(data.path())
            .args(extra)
            .env_remove("PISTACHIO_TOKEN")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(if capture_stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        if let Some(token) = env_token {
            command.env("PISTACHIO_TOKEN", token);
        }
        let mut child = command.spawn().expect("starting rest_server");
        let stderr = child.stderr.take().map(|stderr| {
            let (tx, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            Mutex::new(lines)
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let next = |what: &str| {
            lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("rest_server printed no {what}"))
        };
        let banner = next("banner");
        let base = banner
            .strip_prefix("rest_server listening on ")
            .unwrap_or_else(|| panic!("unexpected banner {banner:?}"))
            .trim_end_matches('/')
            .to_owned();
        let try_line = next("curl line");
        let cacert = try_line
            .strip_prefix("try: curl --cacert ")
            .map(|rest| PathBuf::from(rest.split(' ').next().unwrap()));
        if base.starts_with("https") {
            let pem = cacert.as_ref().expect("a --cacert line for HTTPS");
            assert!(pem.exists(), "{} does not exist", pem.display());
        } else {
            assert!(try_line.starts_with("try: curl http://"), "{try_line}");
        }
        Server {
            child,
            base,
            cacert,
            lines: Mutex::new(lines),
            data,
            stderr,
        }
    }

    /// The next line on its (captured) stderr for which `wanted` holds.
    fn stderr_line(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let lines = self
            .stderr
            .as_ref()
            .expect("started with start_capturing")
            .lock()
            .unwrap();
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("rest_server wrote no {what} to stderr"));
            if wanted(&line) {
                return line;
            }
        }
    }

    /// The next line the server prints that starts with `prefix`.
    fn line_starting(&self, prefix: &str) -> String {
        let lines = self.lines.lock().unwrap();
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("rest_server printed no {prefix:?} line"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// The port it listens on.
    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Performs one request with libcurl; `body` is sent with its content type.
    fn call(&self, method: &str, path: &str, body: Option<(&[u8], &str)>) -> Reply {
        call(&self.base, self.cacert.as_ref(), method, path, body, &[])
    }

    /// [`Server::call`] with extra request header lines (`"Name: value"`).
    fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<(&[u8], &str)>,
        headers: &[&str],
    ) -> Reply {
        call(
            &self.base,
            self.cacert.as_ref(),
            method,
            path,
            body,
            headers,
        )
    }

    /// SIGKILL, at once: no chance to flush or clean up anything. Returns
    /// the data directory for the next server.
    fn kill9(mut self) -> Arc<TempDir> {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("waiting for rest_server");
        // It had no chance to remove its certificate file.
        if let Some(pem) = &self.cacert {
            let _ = std::fs::remove_file(pem);
        }
        Arc::clone(&self.data)
    }

    /// SIGTERM, then waits for a clean exit and the goodbye line.
    fn stop(mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: `kill` has no memory-safety preconditions; the pid is our child's.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = self.child.wait().expect("waiting for rest_server");
        assert!(status.success(), "rest_server exited with {status}");
        // The reader thread forwards what is left, then sees end of file.
        let lines = self.lines.lock().unwrap();
        let mut rest = Vec::new();
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
            rest.push(line);
        }
        assert!(
            rest.iter().any(|l| l == "rest_server stopped"),
            "no goodbye line in {rest:?}"
        );
        if let Some(pem) = &self.cacert {
            assert!(!pem.exists(), "{} was left behind", pem.display());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A clean stop has already happened, or a test failed: then the
        // killed server leaves its certificate file behind.
        if self.child.try_wait().is_ok_and(|status| status.is_none()) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if let Some(pem) = &self.cacert {
                let _ = std::fs::remove_file(pem);
            }
        }
    }
}

/// What a request got back.
#[derive(Debug)]
struct Reply {
    status: u32,
    content_type: Option<String>,
    /// Every response header field, names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The value of header field `name` (lower case), if present.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn etag(&self) -> String {
        self.header("etag")
            .unwrap_or_else(|| panic!("no ETag in {:?}", self.headers))
            .to_owned()
    }
}

/// A libcurl handle for `base` + `path`, trusting `cacert`.
fn easy_for(base: &str, cacert: Option<&PathBuf>, path: &str, timeout: Duration) -> Easy {
    let mut easy = Easy::new();
    easy.url(&format!("{base}{path}")).unwrap();
    if let Some(pem) = cacert {
        easy.cainfo(pem).unwrap();
    }
    easy.timeout(timeout).unwrap();
    easy.signal(false).unwrap();
    easy
}

/// Collects a response header line into `headers`.
fn collect_header(headers: &mut Vec<(String, String)>, line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    if line.starts_with("HTTP/") {
        // A new response (after a `100 Continue`): start over.
        headers.clear();
    } else if let Some((name, value)) = line.split_once(':') {
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
}

fn call(
    base: &str,
    cacert: Option<&PathBuf>,
    method: &str,
    path: &str,
    body: Option<(&[u8], &str)>,
    extra_headers: &[&str],
) -> Reply {
    let mut easy = easy_for(base, cacert, path, Duration::from_secs(10));
    match method {
        "GET" => {}
        "HEAD" => easy.nobody(true).unwrap(),
        other => easy.custom_request(other).unwrap(),
    }
    let mut headers = List::new();
    if let Some((bytes, content_type)) = body {
        easy.post_fields_copy(bytes).unwrap();
        headers
            .append(&format!("Content-Type: {content_type}"))
            .unwrap();
    }
    for line in extra_headers {
        headers.append(line).unwrap();
    }
    easy.http_headers(headers).unwrap();
    let mut out = Vec::new();
    let mut fields = Vec::new();
    {
        let mut transfer = easy.transfer();
        transfer
            .header_function(|line| {
                collect_header(&mut fields, line);
                true
            })
            .unwrap();
        transfer
            .write_function(|data| {
                out.extend_from_slice(data);
                Ok(data.len())
            })
            .unwrap();
        transfer
            .perform()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    }
    let content_type = fields
        .iter()
        .find(|(n, _)| n == "content-type")
        .map(|(_, v)| v.clone());
    Reply {
        status: easy.response_code().unwrap(),
        content_type,
        headers: fields,
        body: out,
    }
}

#[test]
fn every_endpoint_over_https() {
    let server = Server::start(&[]);
    assert!(
        server.base.starts_with("https://localhost:"),
        "{}",
        server.base
    );

    let r = server.call("GET", "/healthz", None);
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));

    let r = server.call("PUT", "/v1/kv/greeting", Some((b"hello", "text/plain")));
    assert_eq!(r.status, 201, "{}", r.text());
    let r = server.call(
        "PUT",
        "/v1/kv/greeting",
        Some((b"hello again", "text/plain; charset=utf-8")),
    );
    assert_eq!(r.status, 204);
    let r = server.call(
        "PUT",
        "/v1/kv/gremlin",
        Some((br#"{"a":1}"#, "application/json")),
    );
    assert_eq!(r.status, 201);
    let r = server.call(
        "PUT",
        "/v1/kv/other%20key",
        Some((b"x", "application/x-thing")),
    );
    assert_eq!(r.status, 201);

    let r = server.call("GET", "/v1/kv/greeting", None);
    assert_eq!((r.status, r.text().as_str()), (200, "hello again"));
    assert_eq!(r.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    let r = server.call("GET", "/v1/kv/gremlin", None);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let r = server.call("HEAD", "/v1/kv/gremlin", None);
    assert_eq!((r.status, r.body.len()), (200, 0));

    let r = server.call("GET", "/v1/kv", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        r.json(),
        serde_json::json!({"keys": ["greeting", "gremlin", "other key"]})
    );
    let r = server.call("GET", "/v1/kv?prefix=gre", None);
    assert_eq!(
        r.json(),
        serde_json::json!({"keys": ["greeting", "gremlin"]})
    );
    let r = server.call("GET", "/v1/kv?prefix=zzz", None);
    assert_eq!(r.json(), serde_json::json!({"keys": []}));

    let r = server.call("DELETE", "/v1/kv/greeting", None);
    assert_eq!(r.status, 204);
    let r = server.call("DELETE", "/v1/kv/greeting", None);
    assert_eq!(r.status, 404);
    let r = server.call("GET", "/v1/kv/greeting", None);
    assert_eq!(r.status, 404);

    let r = server.call("POST", "/v1/kv/greeting", Some((b"x", "text/plain")));
    assert_eq!(r.status, 405);
    let r = server.call("GET", "/v2/nothing", None);
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "Could not find a matching route")
    );

    let r = server.call("GET", "/openapi.json", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["servers"][0]["url"], server.base.as_str());
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/v1/kv", "get"),
        ("/v1/kv/{key}", "get"),
        ("/v1/kv/{key}", "put"),
        ("/v1/kv/{key}", "delete"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} undocumented"
        );
    }
    // The entity tags, documented by the description itself.
    for (method, status) in [
        ("get", "200"),
        ("get", "304"),
        ("put", "201"),
        ("put", "204"),
    ] {
        assert_eq!(
            paths["/v1/kv/{key}"][method]["responses"][status]["headers"]["ETag"]["schema"]["type"],
            "string",
            "{method} {status}"
        );
    }
    openapi::validate(&r.body);

    server.stop();
}

#[test]
fn one_mib_binary_value_round_trips() {
    let server = Server::start(&[]);
    let value = random_bytes(1024 * 1024);
    let r = server.call(
        "PUT",
        "/v1/kv/blob",
        Some((&value, "application/octet-stream")),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = server.call("GET", "/v1/kv/blob", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(r.body.len(), value.len());
    assert!(r.body == value, "the value came back changed");
    server.stop();
}

#[test]
fn concurrent_writers_from_several_threads() {
    const THREADS: usize = 8;
    const KEYS: usize = 20;
    let server = Server::start(&[]);
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let server = &server;
            scope.spawn(move || {
                for k in 0..KEYS {
                    let value = format!("value {t}/{k}");
                    let r = server.call(
                        "PUT",
                        &format!("/v1/kv/t{t}-k{k}"),
                        Some((value.as_bytes(), "text/plain")),
                    );
                    assert_eq!(r.status, 201, "{}", r.text());
                    // Everyone also overwrites one shared key.
                    let r = server.call(
                        "PUT",
                        "/v1/kv/shared",
                        Some((value.as_bytes(), "text/plain")),
                    );
                    assert!(r.status == 201 || r.status == 204, "{}", r.status);
                }
            });
        }
    });
    let keys = server.call("GET", "/v1/kv?prefix=t", None).json();
    assert_eq!(keys["keys"].as_array().unwrap().len(), THREADS * KEYS);
    for t in 0..THREADS {
        for k in 0..KEYS {
            let r = server.call("GET", &format!("/v1/kv/t{t}-k{k}"), None);
            assert_eq!(r.text(), format!("value {t}/{k}"));
        }
    }
    let shared = server.call("GET", "/v1/kv/shared", None).text();
    assert!(shared.starts_with("value "), "{shared}");
    server.stop();
}

#[test]
fn values_over_the_limit_get_413() {
    let server = Server::start(&["--max-value-size", "1024"]);
    let r = server.call(
        "PUT",
        "/v1/kv/small",
        Some((&[7u8; 1024], "application/octet-stream")),
    );
    assert_eq!(r.status, 201);
    let r = server.call(
        "PUT",
        "/v1/kv/big",
        Some((&[7u8; 1025], "application/octet-stream")),
    );
    assert_eq!(r.status, 413);
    assert_eq!(server.call("GET", "/v1/kv/big", None).status, 404);
    server.stop();
}

#[test]
fn values_over_the_limit_are_refused_from_their_head_or_while_read() {
    let server = Server::start(&["--no-tls", "--max-value-size", "1024"]);
    // A declared length over the limit: 413 from the head, before any of
    // the body is asked for (no `100 Continue`) or read.
    let (answer, closed) = head_only(
        server.port(),
        "PUT /v1/kv/big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1025\r\n\
         Expect: 100-continue\r\n\r\n",
    );
    assert!(!answer.contains("100 Continue"), "{answer:?}");
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer:?}");
    assert!(closed, "the server waited for the body after {answer:?}");
    let put = |key: &str, size: usize| {
        let mut tcp = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        // No Content-Length: the limit can only be found while reading.
        let mut wire = format!(
            "PUT /v1/kv/{key} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Transfer-Encoding: chunked\r\n\r\n{size:X}\r\n"
        )
        .into_bytes();
        wire.extend(vec![b'x'; size]);
        wire.extend_from_slice(b"\r\n0\r\n\r\n");
        tcp.write_all(&wire).unwrap();
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = put("fits", 1024);
    assert!(answer.starts_with("HTTP/1.1 201 "), "{answer:?}");
    let answer = put("big", 1025);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer:?}");
    assert_eq!(server.call("GET", "/v1/kv/big", None).status, 404);
    assert_eq!(server.call("GET", "/v1/kv/fits", None).body.len(), 1024);
    server.stop();
}

#[test]
fn plaintext_with_no_tls() {
    let server = Server::start(&["--no-tls"]);
    assert!(
        server.base.starts_with("http://localhost:"),
        "{}",
        server.base
    );
    assert!(server.cacert.is_none());
    let r = server.call("PUT", "/v1/kv/k", Some((b"v", "text/plain")));
    assert_eq!(r.status, 201);
    assert_eq!(server.call("GET", "/v1/kv/k", None).text(), "v");
    server.stop();
}

#[test]
fn bad_flags_exit_with_usage() {
    for args in [
        &["--bogus"][..],
        &["--tls-cert", "x.pem"],
        &["--threads", "many"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rest_server"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
}

/// What the kill-9 test stores: `(key, value, content type)`.
fn durable_values() -> Vec<(String, Vec<u8>, &'static str)> {
    let mut values: Vec<(String, Vec<u8>, &'static str)> = (0..20)
        .map(|i| {
            (
                format!("small-{i:02}"),
                format!("value {i}").into_bytes(),
                "text/plain",
            )
        })
        .collect();
    // Larger than the index keeps inline: stored as files.
    values.push((
        "large-a".into(),
        random_bytes(1024 * 1024 + 7),
        "application/x-a",
    ));
    values.push((
        "large-b".into(),
        random_bytes(300 * 1024),
        "application/x-b",
    ));
    values
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let server = Server::start(&[]);
    let data_line = server.line_starting("data directory: ");
    assert!(
        data_line.contains(&server.data.path().display().to_string()),
        "{data_line}"
    );
    let values = durable_values();
    for (key, value, content_type) in &values {
        let r = server.call("PUT", &format!("/v1/kv/{key}"), Some((value, content_type)));
        assert_eq!(r.status, 201, "{key}: {}", r.text());
    }
    let tag = server.call("GET", "/v1/kv/large-a", None).etag();
    // Replaced (a file by a small value, a small value by a file) and
    // deleted ones too; the last write is the last request.
    assert_eq!(server.call("DELETE", "/v1/kv/small-01", None).status, 204);
    let replaced_large = b"now small".to_vec();
    let r = server.call(
        "PUT",
        "/v1/kv/large-b",
        Some((&replaced_large, "text/plain")),
    );
    assert_eq!(r.status, 204);
    let replaced_small = random_bytes(200 * 1024);
    let r = server.call(
        "PUT",
        "/v1/kv/small-00",
        Some((&replaced_small, "application/octet-stream")),
    );
    assert_eq!(r.status, 204);

    // Right after the last answer: no graceful anything.
    let data = server.kill9();
    let server = Server::start_on(data, &[], None);
    for (key, value, content_type) in &values {
        let r = server.call("GET", &format!("/v1/kv/{key}"), None);
        let (value, content_type) = match key.as_str() {
            "small-01" => {
                assert_eq!(r.status, 404, "{key} was deleted");
                continue;
            }
            "small-00" => (&replaced_small, "application/octet-stream"),
            "large-b" => (&replaced_large, "text/plain"),
            _ => (value, *content_type),
        };
        assert_eq!(r.status, 200, "{key} lost: {}", r.text());
        assert!(r.body == *value, "{key} came back changed");
        assert_eq!(r.content_type.as_deref(), Some(content_type), "{key}");
    }
    assert_eq!(server.call("GET", "/v1/kv/large-a", None).etag(), tag);
    let keys = server.call("GET", "/v1/kv", None).json();
    assert_eq!(keys["keys"].as_array().unwrap().len(), values.len() - 1);
    // Nothing left over from the replaced and deleted values.
    let blobs = std::fs::read_dir(server.data.path().join("blobs"))
        .unwrap()
        .count();
    assert_eq!(blobs, 2, "large-a and small-00 are files, nothing else");
    server.stop();
}

/// Writes a `PUT` head declaring `length` body bytes, and `sent` of them,
/// then resets the connection.
fn put_and_reset(port: u16, key: &str, length: usize, sent: usize) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let head = format!(
        "PUT /v1/kv/{key} HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).unwrap();
    let piece = vec![0xEEu8; 64 * 1024];
    let mut left = sent;
    while left > 0 {
        let n = left.min(piece.len());
        tcp.write_all(&piece[..n]).unwrap();
        left -= n;
    }
    // Give the server the time to take in what was sent.
    std::thread::sleep(Duration::from_millis(200));
    reset(tcp).unwrap();
}

#[test]
fn a_put_cut_off_mid_body_leaves_the_old_value() {
    let server = Server::start(&["--no-tls"]);
    let large = random_bytes(512 * 1024);
    let small = b"the old small value".to_vec();
    assert_eq!(
        server
            .call("PUT", "/v1/kv/large", Some((&large, "application/x-old")))
            .status,
        201
    );
    assert_eq!(
        server
            .call("PUT", "/v1/kv/small", Some((&small, "text/plain")))
            .status,
        201
    );
    let large_tag = server.call("GET", "/v1/kv/large", None).etag();
    let small_tag = server.call("GET", "/v1/kv/small", None).etag();

    // Far more than is kept in memory, and a few bytes of a small one.
    put_and_reset(server.port(), "large", 8 << 20, 2 << 20);
    put_and_reset(server.port(), "small", 100, 10);

    for (key, value, content_type, tag) in [
        ("large", &large, "application/x-old", &large_tag),
        ("small", &small, "text/plain", &small_tag),
    ] {
        let r = server.call("GET", &format!("/v1/kv/{key}"), None);
        assert_eq!(r.status, 200, "{key}");
        assert!(r.body == *value, "{key}: the old value was damaged");
        assert_eq!(r.content_type.as_deref(), Some(content_type));
        assert_eq!(&r.etag(), tag);
    }
    // The partial upload's file is removed once the server sees the reset.
    let tmp = server.data.path().join("tmp");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&tmp).unwrap().count() > 0 {
        assert!(
            Instant::now() < deadline,
            "a partial upload was left in tmp/"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
}

#[test]
fn a_crash_mid_put_leaves_the_old_value() {
    let server = Server::start(&["--no-tls"]);
    let old = random_bytes(256 * 1024);
    let r = server.call("PUT", "/v1/kv/k", Some((&old, "application/x-old")));
    assert_eq!(r.status, 201);
    let tag = r.etag();
    // Half of a new value, then the server dies while receiving it.
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp.write_all(b"PUT /v1/kv/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4194304\r\n\r\n")
        .unwrap();
    tcp.write_all(&[0x55u8; 2 << 20]).unwrap();
    let tmp = server.data.path().join("tmp");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&tmp).unwrap().count() == 0 {
        assert!(Instant::now() < deadline, "the upload never reached tmp/");
        std::thread::sleep(Duration::from_millis(20));
    }
    let data = server.kill9();
    drop(tcp);

    let server = Server::start_on(data, &["--no-tls"], None);
    let line = server.line_starting("data directory: ");
    assert!(
        line.contains("1 values; removed 1 partial uploads"),
        "{line}"
    );
    let r = server.call("GET", "/v1/kv/k", None);
    assert_eq!(r.status, 200);
    assert!(r.body == old, "the old value was damaged");
    assert_eq!(r.content_type.as_deref(), Some("application/x-old"));
    assert_eq!(r.etag(), tag);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    server.stop();
}

/// The byte at `offset` of the 1 GiB test value: 1 MiB blocks of random
/// bytes, each starting with its own number (so a block sent twice or out
/// of order is caught).
struct Pattern {
    block: Vec<u8>,
}

impl Pattern {
    const BLOCK: usize = 1 << 20;

    fn new() -> Pattern {
        Pattern {
            block: random_bytes(Pattern::BLOCK),
        }
    }

    /// Copies the value's bytes from `offset` into `out`.
    fn fill(&self, offset: u64, out: &mut [u8]) {
        let mut at = 0;
        while at < out.len() {
            let pos = offset + at as u64;
            let block = pos / Pattern::BLOCK as u64;
            let within = (pos % Pattern::BLOCK as u64) as usize;
            let n = (Pattern::BLOCK - within).min(out.len() - at);
            out[at..at + n].copy_from_slice(&self.block[within..within + n]);
            // The block's number over its first 8 bytes.
            let number = block.to_le_bytes();
            for i in within..8.min(within + n) {
                out[at + i - within] = number[i];
            }
            at += n;
        }
    }
}

#[test]
fn a_gib_value_streams_in_and_out_in_bounded_memory() {
    const SIZE: u64 = 1 << 30;
    const BUDGET_KIB: u64 = 64 * 1024;
    let server = Server::start(&[]);
    let pid = server.pid();
    // Warm up every path (pools, TLS, a file value) before the baseline.
    let warm = random_bytes(1024 * 1024);
    assert_eq!(
        server
            .call(
                "PUT",
                "/v1/kv/warm",
                Some((&warm, "application/octet-stream"))
            )
            .status,
        201
    );
    assert_eq!(
        server.call("GET", "/v1/kv/warm", None).body.len(),
        warm.len()
    );
    let baseline = rss_kib_of(pid);
    assert!(baseline > 0, "cannot read the server's VmRSS");

    let pattern = Pattern::new();
    let mut easy = easy_for(
        &server.base,
        server.cacert.as_ref(),
        "/v1/kv/huge",
        Duration::from_secs(600),
    );
    easy.upload(true).unwrap();
    easy.in_filesize(SIZE).unwrap();
    let mut headers = List::new();
    headers
        .append("Content-Type: application/octet-stream")
        .unwrap();
    easy.http_headers(headers).unwrap();
    let mut sent = 0u64;
    {
        let mut transfer = easy.transfer();
        transfer
            .read_function(|buf| {
                let n = (SIZE - sent).min(buf.len() as u64) as usize;
                pattern.fill(sent, &mut buf[..n]);
                sent += n as u64;
                Ok::<usize, ReadError>(n)
            })
            .unwrap();
        transfer.perform().expect("PUT of 1 GiB");
    }
    assert_eq!(easy.response_code().unwrap(), 201);
    let after_put = peak_rss_kib_of(pid);

    let mut easy = easy_for(
        &server.base,
        server.cacert.as_ref(),
        "/v1/kv/huge",
        Duration::from_secs(600),
    );
    let mut received = 0u64;
    let mut expected = vec![0u8; 256 * 1024];
    let mut same = true;
    {
        let mut transfer = easy.transfer();
        transfer
            .write_function(|data| {
                let expected = &mut expected[..data.len().min(256 * 1024)];
                let mut at = 0;
                while at < data.len() {
                    let n = expected.len().min(data.len() - at);
                    pattern.fill(received, &mut expected[..n]);
                    same &= data[at..at + n] == expected[..n];
                    received += n as u64;
                    at += n;
                }
                Ok(data.len())
            })
            .unwrap();
        transfer.perform().expect("GET of 1 GiB");
    }
    assert_eq!(easy.response_code().unwrap(), 200);
    assert_eq!(received, SIZE);
    assert!(same, "the 1 GiB value came back changed");
    let peak = peak_rss_kib_of(pid);
    eprintln!(
        "server RSS: {baseline} KiB before, peak {after_put} KiB after the PUT, \
         {peak} KiB after the GET"
    );
    assert!(
        peak.saturating_sub(baseline) < BUDGET_KIB,
        "the server's memory grew by {} KiB moving a 1 GiB value (budget {BUDGET_KIB} KiB)",
        peak - baseline
    );
    server.stop();
}

#[test]
fn conditional_requests_on_values() {
    let server = Server::start(&[]);
    let r = server.call("PUT", "/v1/kv/doc", Some((b"v1", "text/plain")));
    assert_eq!(r.status, 201);
    let v1 = r.etag();
    assert!(v1.starts_with('"') && v1.ends_with('"'), "{v1}");

    // GET: the same tag; If-None-Match with it is 304 without the body.
    let r = server.call("GET", "/v1/kv/doc", None);
    assert_eq!((r.status, r.etag()), (200, v1.clone()));
    let if_none_match = format!("If-None-Match: {v1}");
    let r = server.call_with("GET", "/v1/kv/doc", None, &[&if_none_match]);
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.etag(), v1);
    let weak = format!("If-None-Match: \"other\", W/{v1}");
    assert_eq!(
        server.call_with("GET", "/v1/kv/doc", None, &[&weak]).status,
        304
    );
    let r = server.call_with("GET", "/v1/kv/doc", None, &["If-None-Match: \"other\""]);
    assert_eq!((r.status, r.text().as_str()), (200, "v1"));

    // PUT If-Match: only over the version named (optimistic concurrency).
    let if_match_v1 = format!("If-Match: {v1}");
    let r = server.call_with(
        "PUT",
        "/v1/kv/doc",
        Some((b"v2", "text/plain")),
        &[&if_match_v1],
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let v2 = r.etag();
    assert_ne!(v1, v2);
    // A second writer still holding v1 loses, and is told the current tag.
    let r = server.call_with(
        "PUT",
        "/v1/kv/doc",
        Some((b"lost update", "text/plain")),
        &[&if_match_v1],
    );
    assert_eq!((r.status, r.etag()), (412, v2.clone()));
    assert_eq!(server.call("GET", "/v1/kv/doc", None).text(), "v2");
    // ... also with a value large enough to be a file.
    let big = random_bytes(3 * 1024 * 1024);
    let r = server.call_with(
        "PUT",
        "/v1/kv/doc",
        Some((&big, "application/octet-stream")),
        &[&if_match_v1],
    );
    assert_eq!(r.status, 412);
    // If-Match on a missing key never matches.
    let r = server.call_with(
        "PUT",
        "/v1/kv/absent",
        Some((b"x", "text/plain")),
        &["If-Match: *"],
    );
    assert_eq!(r.status, 412);
    assert_eq!(server.call("GET", "/v1/kv/absent", None).status, 404);

    // PUT If-None-Match: * creates, never replaces.
    let r = server.call_with(
        "PUT",
        "/v1/kv/doc",
        Some((b"clobber", "text/plain")),
        &["If-None-Match: *"],
    );
    assert_eq!(r.status, 412);
    assert_eq!(server.call("GET", "/v1/kv/doc", None).text(), "v2");
    let r = server.call_with(
        "PUT",
        "/v1/kv/fresh",
        Some((b"new", "text/plain")),
        &["If-None-Match: *"],
    );
    assert_eq!(r.status, 201);

    // DELETE If-Match.
    let r = server.call_with("DELETE", "/v1/kv/doc", None, &[&if_match_v1]);
    assert_eq!((r.status, r.etag()), (412, v2.clone()));
    assert_eq!(server.call("GET", "/v1/kv/doc", None).status, 200);
    let if_match_v2 = format!("If-Match: {v2}");
    let r = server.call_with("DELETE", "/v1/kv/doc", None, &[&if_match_v2]);
    assert_eq!(r.status, 204);
    let r = server.call_with("DELETE", "/v1/kv/doc", None, &[&if_match_v2]);
    assert_eq!(r.status, 412, "a deleted value matches no tag");

    // A malformed tag list is the client's error.
    let r = server.call_with("GET", "/v1/kv/fresh", None, &["If-None-Match: nonsense"]);
    assert_eq!(r.status, 400);
    server.stop();
}

#[test]
fn listing_paginates_with_a_cursor() {
    let server = Server::start(&["--no-tls"]);
    let mut expected = Vec::new();
    for i in 0..25 {
        let key = format!("p-{i:02}");
        let r = server.call("PUT", &format!("/v1/kv/{key}"), Some((b"x", "text/plain")));
        assert_eq!(r.status, 201);
        expected.push(key);
    }
    for key in ["a", "q"] {
        server.call("PUT", &format!("/v1/kv/{key}"), Some((b"x", "text/plain")));
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            None => "/v1/kv?prefix=p-&limit=10".to_owned(),
            Some(cursor) => format!("/v1/kv?prefix=p-&limit=10&after={cursor}"),
        };
        let page = server.call("GET", &path, None);
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        let keys: Vec<String> = page["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        assert!(keys.len() <= 10, "{keys:?}");
        seen.extend(keys);
        pages += 1;
        match page.get("next") {
            Some(next) => {
                assert_eq!(next.as_str(), seen.last().map(String::as_str));
                after = Some(next.as_str().unwrap().to_owned());
            }
            None => break,
        }
        assert!(pages < 10, "the cursor does not advance");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);
    // Without a prefix, the default page has them all.
    let all = server.call("GET", "/v1/kv", None).json();
    assert_eq!(all["keys"].as_array().unwrap().len(), 27);
    assert!(all.get("next").is_none());
    for bad in ["0", "10001", "ten"] {
        let r = server.call("GET", &format!("/v1/kv?limit={bad}"), None);
        assert_eq!(r.status, 400, "limit={bad}");
    }
    server.stop();
}

/// Sends `head` on a new connection (and nothing more), and reads what
/// comes back until the server closes; whether it closed (rather than
/// waiting for the body) is the second value.
fn head_only(port: u16, head: &str) -> (String, bool) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tcp.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

#[test]
fn a_token_guards_v1_before_any_body_is_read() {
    let server = Server::start(&["--no-tls", "--token", "s3cret token"]);
    assert_eq!(server.line_starting("/v1/"), "/v1/ requires a bearer token");
    let good = "Authorization: Bearer s3cret token";

    // With libcurl: none, wrong, right.
    let r = server.call("PUT", "/v1/kv/k", Some((b"v", "text/plain")));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"pistachio\"")
    );
    let r = server.call_with(
        "PUT",
        "/v1/kv/k",
        Some((b"v", "text/plain")),
        &["Authorization: Bearer s3cret"],
    );
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer") && c.contains("invalid_token")),
        "{:?}",
        r.headers
    );
    let r = server.call_with("PUT", "/v1/kv/k", Some((b"v", "text/plain")), &[good]);
    assert_eq!(r.status, 201);
    for path in ["/v1/kv/k", "/v1/kv", "//v1//kv", "/%761/kv"] {
        assert_eq!(server.call("GET", path, None).status, 401, "{path}");
    }
    assert_eq!(
        server.call_with("GET", "/v1/kv/k", None, &[good]).text(),
        "v"
    );
    // The rest stays open.
    assert_eq!(server.call("GET", "/healthz", None).status, 200);
    let doc = server.call("GET", "/openapi.json", None);
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["paths"]["/v1/kv/{key}"]["put"]["security"][0]["bearer"],
        serde_json::json!([])
    );
    openapi::validate(&serde_json::to_vec(&doc).unwrap());

    // On the wire: a client that asks for `100 Continue` before sending a
    // 1 GiB body gets the 401 instead, and the connection closes: the
    // server never asked for the body and never waited for it.
    let (answer, closed) = head_only(
        server.port(),
        "PUT /v1/kv/huge HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1073741824\r\n\
         Expect: 100-continue\r\n\r\n",
    );
    assert!(!answer.contains("100 Continue"), "{answer:?}");
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer:?}");
    assert!(closed, "the server waited for the body after {answer:?}");
    assert!(
        answer.contains("\r\nWww-Authenticate: Bearer")
            || answer.contains("\r\nwww-authenticate: Bearer"),
        "{answer:?}"
    );
    // Without `Expect`, too: answered from the head alone.
    let (answer, closed) = head_only(
        server.port(),
        "PUT /v1/kv/huge HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1073741824\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer:?}");
    assert!(closed, "the server waited for the body after {answer:?}");
    // With the token, the same head gets `100 Continue`.
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp.write_all(
        format!(
            "PUT /v1/kv/huge HTTP/1.1\r\nHost: localhost\r\n{good}\r\n\
             Content-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let n = tcp.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 100 Continue\r\n"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    reset(tcp).unwrap();
    assert_eq!(
        server.call_with("GET", "/v1/kv/huge", None, &[good]).status,
        404
    );
    server.stop();

    // The token can come from the environment instead.
    let server = Server::start_on(
        Arc::new(TempDir::new("pistachio-kv")),
        &["--no-tls"],
        Some("from-env"),
    );
    assert_eq!(server.call("GET", "/v1/kv", None).status, 401);
    let r = server.call_with("GET", "/v1/kv", None, &["Authorization: Bearer from-env"]);
    assert_eq!(r.status, 200);
    server.stop();
}

/// Runs the `curl` program with `args` on `server` + `path` (trusting its
/// certificate); returns the response head (of the last response) with
/// lower-case field names, and the body as written by curl (decoded, with
/// `--compressed`).
fn curl_cli(server: &Server, path: &str, args: &[&str]) -> (String, Vec<u8>) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = std::env::temp_dir().join(format!("pistachio-curl-{}-{n}", std::process::id()));
    let mut command = Command::new("curl");
    command
        // HTTP/1.1 heads (the server would pick h2 by ALPN otherwise).
        .args(["-sS", "--http1.1", "--max-time", "10", "-D", "-", "-o"])
        .arg(&out);
    if let Some(pem) = &server.cacert {
        command.arg("--cacert").arg(pem);
    }
    let result = command
        .args(args)
        .arg(format!("{}{path}", server.base))
        .output()
        .expect("running curl (the program)");
    assert!(
        result.status.success(),
        "curl {args:?} {path}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let body = std::fs::read(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let head = String::from_utf8_lossy(&result.stdout).into_owned();
    // The last response's head (after any `100 Continue`).
    let head = head
        .rsplit("HTTP/")
        .find(|h| !h.trim().is_empty())
        .map(|h| format!("HTTP/{h}"))
        .unwrap_or_default();
    let head = head
        .lines()
        .map(|l| match l.split_once(':') {
            Some((name, value)) if !l.starts_with("HTTP/") => {
                format!("{}:{value}", name.to_ascii_lowercase())
            }
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    (head, body)
}

/// The value of field `name` (lower case) in a head from [`curl_cli`].
fn field<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// A text value that compresses well, under the store's inline size.
fn compressible() -> Vec<u8> {
    (0..400)
        .map(|i| format!("{{\"line\": {i}, \"text\": \"the same words again\"}}\n"))
        .collect::<String>()
        .into_bytes()
}

/// The batteries seen by the `curl` program over HTTPS: a compressed
/// answer (`--compressed`), its weak tag still validating a conditional
/// GET, CORS preflights answered before the token check, and a range of
/// a file under `/static/`.
#[test]
fn batteries_with_the_curl_program() {
    let files = Arc::new(TempDir::new("pistachio-kv"));
    std::fs::create_dir_all(files.path().join("css")).unwrap();
    let site: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(files.path().join("css/site.css"), &site).unwrap();
    let dir = files.path().to_str().unwrap();
    let server = Server::start(&[
        "--token",
        "tok",
        "--cors-origin",
        "https://app.example",
        "--cors-origin",
        "https://other.example",
        "--static",
        dir,
    ]);
    let auth = "Authorization: Bearer tok";
    let value = compressible();
    let r = server.call_with(
        "PUT",
        "/v1/kv/doc",
        Some((&value, "application/json")),
        &[auth],
    );
    assert_eq!(r.status, 201);

    // Compressed as curl asks, and decoded back to the very bytes.
    let (head, body) = curl_cli(&server, "/v1/kv/doc", &["--compressed", "-H", auth]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let coding = field(&head, "content-encoding").unwrap_or_else(|| panic!("{head}"));
    assert!(["zstd", "br", "gzip"].contains(&coding), "{head}");
    assert_eq!(body, value);
    let tag = field(&head, "etag").unwrap().to_owned();
    assert!(
        tag.starts_with("W/\""),
        "an encoded answer's tag is weak: {tag}"
    );
    // Its weak tag still makes a conditional GET a 304.
    let (head, body) = curl_cli(
        &server,
        "/v1/kv/doc",
        &[
            "--compressed",
            "-H",
            auth,
            "-H",
            &format!("If-None-Match: {tag}"),
        ],
    );
    assert!(head.starts_with("HTTP/1.1 304"), "{head}");
    assert!(body.is_empty());

    // A preflight without a token: answered by CORS, not refused.
    let preflight = |origin: &str| {
        curl_cli(
            &server,
            "/v1/kv/doc",
            &[
                "-X",
                "OPTIONS",
                "-H",
                &format!("Origin: {origin}"),
                "-H",
                "Access-Control-Request-Method: PUT",
                "-H",
                "Access-Control-Request-Headers: authorization, if-match",
            ],
        )
        .0
    };
    let head = preflight("https://app.example");
    assert!(head.starts_with("HTTP/1.1 204"), "{head}");
    assert_eq!(
        field(&head, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        field(&head, "access-control-allow-methods").is_some_and(|m| m.contains("PUT")),
        "{head}"
    );
    assert!(
        field(&head, "access-control-allow-headers")
            .is_some_and(|h| h.contains("authorization") && h.contains("if-match")),
        "{head}"
    );
    // An origin not allowed: no CORS fields, so the browser refuses it.
    let head = preflight("https://evil.example");
    assert!(
        field(&head, "access-control-allow-origin").is_none(),
        "{head}"
    );
    // The actual request still needs its token, and exposes the tag.
    let (head, _) = curl_cli(
        &server,
        "/v1/kv/doc",
        &["-H", "Origin: https://other.example"],
    );
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let (head, _) = curl_cli(
        &server,
        "/v1/kv/doc",
        &["-H", "Origin: https://other.example", "-H", auth],
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        field(&head, "access-control-allow-origin"),
        Some("https://other.example")
    );
    assert_eq!(field(&head, "access-control-expose-headers"), Some("etag"));

    // A range of a static file (no token: not under /v1/).
    let (head, body) = curl_cli(&server, "/static/css/site.css", &["-r", "10-19"]);
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    assert_eq!(field(&head, "content-range"), Some("bytes 10-19/1000"));
    assert_eq!(body, &site[10..20]);
    assert_eq!(field(&head, "content-type"), Some("text/css"));
    // ... and a conditional GET of it.
    let (head, _) = curl_cli(&server, "/static/css/site.css", &[]);
    let tag = field(&head, "etag")
        .unwrap_or_else(|| panic!("{head}"))
        .to_owned();
    let (head, body) = curl_cli(
        &server,
        "/static/css/site.css",
        &["-H", &format!("If-None-Match: {tag}")],
    );
    assert!(head.starts_with("HTTP/1.1 304"), "{head}");
    assert!(body.is_empty());
    // Nothing outside the directory.
    let (head, _) = curl_cli(&server, "/static/%2e%2e/%2e%2e/etc/passwd", &[]);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    server.stop();
}

/// reqwest, which decodes every coding itself, asking for one coding at a
/// time: the same bytes each time, the tag made weak by the encoding.
#[test]
fn batteries_with_reqwest() {
    let server = Server::start(&["--no-tls"]);
    let value = compressible();
    let r = server.call("PUT", "/v1/kv/doc", Some((&value, "application/json")));
    assert_eq!(r.status, 201);
    let url = format!("{}/v1/kv/doc", server.base);
    // Each coding alone: the client turns the other two off.
    let only = |coding: &str| {
        let builder = reqwest::blocking::Client::builder();
        match coding {
            "gzip" => builder.no_brotli().no_zstd(),
            "br" => builder.no_gzip().no_zstd(),
            _ => builder.no_gzip().no_brotli(),
        }
    };
    for coding in ["gzip", "br", "zstd"] {
        let builder = || only(coding);
        let client = builder().timeout(Duration::from_secs(10)).build().unwrap();
        let resp = client.get(&url).send().unwrap();
        assert_eq!(resp.status(), 200, "{coding}");
        let tag = resp.headers()["etag"].to_str().unwrap().to_owned();
        assert!(tag.starts_with("W/\""), "{coding}: {tag}");
        assert!(
            resp.headers()["vary"]
                .to_str()
                .unwrap()
                .contains("Accept-Encoding"),
            "{coding}"
        );
        assert_eq!(resp.bytes().unwrap(), value, "{coding}");
        // The coding itself, seen without decoding.
        let raw = reqwest::blocking::Client::builder()
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .build()
            .unwrap()
            .get(&url)
            .header("accept-encoding", coding)
            .send()
            .unwrap();
        assert_eq!(raw.headers()["content-encoding"], coding);
        assert!(raw.bytes().unwrap().len() < value.len() / 4, "{coding}");
    }
    // Without Accept-Encoding: identity, with the strong tag.
    let raw = reqwest::blocking::Client::builder()
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .build()
        .unwrap()
        .get(&url)
        .send()
        .unwrap();
    assert!(raw.headers().get("content-encoding").is_none());
    assert!(!raw.headers()["etag"].to_str().unwrap().starts_with("W/"));
    assert_eq!(raw.bytes().unwrap(), value);
    server.stop();
}

/// A scrape of `/metrics` (open without the token) after known traffic:
/// the exchanges by route template and status, the HTTP layer's own `400`,
/// and the transport's figures.
#[test]
fn metrics_count_known_traffic() {
    let server = Server::start(&["--no-tls", "--token", "tok"]);
    let auth = "Authorization: Bearer tok";
    for _ in 0..3 {
        assert_eq!(server.call("GET", "/healthz", None).status, 200);
    }
    assert_eq!(
        server
            .call_with("GET", "/v1/kv/missing", None, &[auth])
            .status,
        404
    );
    assert_eq!(server.call("GET", "/v1/kv/missing", None).status, 401);
    let (answer, _) = head_only(server.port(), "NOT A REQUEST\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");

    // An exchange is counted when it completes on its worker, which may be
    // just after its client saw the answer (and sent the next request,
    // perhaps to the other worker): scrape until nothing but the scrape
    // itself is in flight (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let samples = loop {
        let r = server.call("GET", "/metrics", None);
        assert_eq!(r.status, 200);
        assert!(
            r.content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("application/openmetrics-text")
                    || t.starts_with("text/plain")),
            "{:?}",
            r.content_type
        );
        let samples = Exposition::checked(&r.text()).samples;
        let settled = samples.get("pistachio_http_requests_in_flight") == Some(&1.0);
        if settled || Instant::now() > deadline {
            break samples;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let get = |series: &str| {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in {:#?}", samples.keys()))
    };
    assert_eq!(
        get(r#"pistachio_http_requests_total{method="GET",route="/healthz",status="200"}"#),
        3.0
    );
    assert_eq!(
        get(r#"pistachio_http_requests_total{method="GET",route="/v1/kv/:key",status="404"}"#),
        1.0
    );
    let unrouted = |status: &str| {
        samples
            .iter()
            .filter(|(k, _)| {
                k.starts_with("pistachio_http_requests_total{")
                    && k.contains(&format!("status=\"{status}\""))
                    && !k.contains("route=\"/")
            })
            .map(|(_, v)| *v)
            .sum::<f64>()
    };
    assert_eq!(unrouted("401"), 1.0, "{samples:#?}");
    assert_eq!(unrouted("400"), 1.0, "{samples:#?}");
    // The transport: every connection above was accepted by it.
    assert!(get("pistachio_connections_accepted_total") >= 6.0);
    assert!(get("pistachio_transport_received_bytes_total") > 0.0);
    assert!(get("pistachio_transport_sent_bytes_total") > 0.0);
    server.stop();
}

/// One access-log line per exchange on stderr, the HTTP layer's own `400`
/// for a request it could not parse included.
#[test]
fn the_access_log_has_the_http_layers_400() {
    let server = Server::start_capturing(&["--no-tls"]);
    let access = |line: &str| -> Option<serde_json::Value> {
        serde_json::from_str(line.strip_prefix("access: ")?).ok()
    };
    assert_eq!(server.call("GET", "/healthz", None).status, 200);
    let line = server.stderr_line("access line", |l| access(l).is_some());
    let entry = access(&line).unwrap();
    assert_eq!(entry["status"], 200, "{line}");
    assert_eq!(entry["method"], "GET", "{line}");
    assert_eq!(entry["target"], "/healthz", "{line}");
    assert_eq!(entry["route"], "/healthz", "{line}");
    assert_eq!(entry["keep_alive"], true, "{line}");
    assert_eq!(entry["end"], "completed", "{line}");
    assert!(entry["remote"].as_str().unwrap().starts_with("127.0.0.1:"));

    let (answer, closed) = head_only(server.port(), "GET /\u{7f} HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(closed);
    let line = server.stderr_line("access line of the 400", |l| access(l).is_some());
    let entry = access(&line).unwrap();
    assert_eq!(entry["status"], 400, "{line}");
    assert_eq!(entry["method"], serde_json::Value::Null, "{line}");
    assert_eq!(entry["keep_alive"], false, "{line}");
    server.stop();
}
