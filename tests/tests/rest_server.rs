//! Black-box tests of the `rest_server` example, the project's main job.
//!
//! Each test runs the real program (built from `rest/examples/rest_server.rs`
//! as this package's `rest_server` binary) on `127.0.0.1:0`, reads the URL
//! and the `curl --cacert` line it prints, and talks to it over HTTPS with
//! libcurl trusting only the certificate the server generated at start.
//! The server is stopped with SIGTERM and must exit cleanly.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use curl::easy::{Easy, List};
use pistachio_tests::abrupt::random_bytes;

/// A running `rest_server` process.
struct Server {
    child: Child,
    /// `https://localhost:PORT` (or `http://` with `--no-tls`).
    base: String,
    /// The generated certificate, when serving on one.
    cacert: Option<PathBuf>,
    /// Lines the server prints after its banner.
    lines: Mutex<mpsc::Receiver<String>>,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rest_server"))
            .args(["--addr", "127.0.0.1:0", "--threads", "3"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting rest_server");
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
        }
    }

    /// Performs one request with libcurl; `body` is sent with its content type.
    fn call(&self, method: &str, path: &str, body: Option<(&[u8], &str)>) -> Reply {
        call(&self.base, self.cacert.as_ref(), method, path, body)
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a request got back.
#[derive(Debug)]
struct Reply {
    status: u32,
    content_type: Option<String>,
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
}

fn call(
    base: &str,
    cacert: Option<&PathBuf>,
    method: &str,
    path: &str,
    body: Option<(&[u8], &str)>,
) -> Reply {
    let mut easy = Easy::new();
    easy.url(&format!("{base}{path}")).unwrap();
    if let Some(pem) = cacert {
        easy.cainfo(pem).unwrap();
    }
    easy.timeout(Duration::from_secs(10)).unwrap();
    easy.signal(false).unwrap();
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
    easy.http_headers(headers).unwrap();
    let mut out = Vec::new();
    let mut content_type = None;
    {
        let mut transfer = easy.transfer();
        transfer
            .header_function(|line| {
                let line = String::from_utf8_lossy(line);
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-type") {
                        content_type = Some(value.trim().to_owned());
                    }
                }
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
    Reply {
        status: easy.response_code().unwrap(),
        content_type,
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
    validate_openapi(&r.body);

    server.stop();
}

/// Runs `openapi-spec-validator` (PyPI) on the document when it is
/// installed; says so and skips otherwise. With
/// `PISTACHIO_REQUIRE_OPENAPI_VALIDATOR=1` (set by `.ci/run`, which installs
/// it) a missing validator fails the test instead.
fn validate_openapi(document: &[u8]) {
    let has_validator = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_validator {
        assert!(
            std::env::var_os("PISTACHIO_REQUIRE_OPENAPI_VALIDATOR").is_none(),
            "openapi-spec-validator is required (PISTACHIO_REQUIRE_OPENAPI_VALIDATOR) but not installed"
        );
        eprintln!(
            "openapi-spec-validator not installed (pip install openapi-spec-validator): skipped"
        );
        return;
    }
    let path = std::env::temp_dir().join(format!("pistachio-openapi-{}.json", std::process::id()));
    std::fs::write(&path, document).unwrap();
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "openapi-spec-validator rejected the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
