//! The `tls-probe` program, run as a process against servers in this one:
//! a pistachio HTTPS server must pass a short run, and a deliberately
//! broken TLS server (it goes deaf after the first client that leaves
//! without `close_notify`, as Pistache's server did before its fix for
//! issue #1309) must make the probe report failures and exit with 1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use openssl::ssl::{ErrorCode, SslAcceptor, SslStream};
use pistachio_tests::server::server_acceptor_builder;
use pistachio_tests::{certs, init_logging, TestServer, HELLO_BODY};

/// The probe with `args`, its output captured.
fn probe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tls-probe"))
        .args(args)
        .output()
        .expect("running tls-probe")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Parses a report line `NAME: N ok of M`.
fn counts(line: &str) -> Option<(String, u64, u64)> {
    let (name, rest) = line.split_once(": ")?;
    let (ok, sent) = rest.split_once(" ok of ")?;
    Some((name.to_owned(), ok.parse().ok()?, sent.parse().ok()?))
}

/// The `overall:` line, which must be the last line of the output.
fn overall(text: &str) -> (u64, u64) {
    let last = text.lines().last().unwrap_or_default();
    match counts(last) {
        Some((name, ok, sent)) if name == "overall" => (ok, sent),
        _ => panic!("the last line is not `overall: N ok of M`:\n{text}"),
    }
}

#[test]
fn a_pistachio_server_passes_a_short_run() {
    init_logging();
    let server = TestServer::hello(2, true);
    let url = format!("https://localhost:{}/", server.port());
    let ca = certs::ca_pem();
    let out = probe(&[&url, "--ca", ca.to_str().unwrap(), "--rounds", "1"]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{text}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for style in [
        "no-close-notify",
        "rst-after-request",
        "rst-mid-handshake",
        "garbage-record",
        "curl-hostname-mismatch",
        "stalled-handshake",
        "rst-mid-download",
        "idle-client",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{style}: ")))
            .unwrap_or_else(|| panic!("no line for {style}:\n{text}"));
        let (_, ok, sent) = counts(line).unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(sent > 0 && ok == sent, "{line}\n{text}");
    }
    let (ok, sent) = overall(&text);
    assert!(sent > 0 && ok == sent, "{text}");
}

#[test]
fn a_server_that_goes_deaf_fails_the_probe() {
    init_logging();
    let server = DeafAfterAbruptServer::start();
    let url = format!("https://localhost:{}/", server.addr.port());
    let ca = certs::ca_pem();
    let out = probe(&[
        &url,
        "--ca",
        ca.to_str().unwrap(),
        "--rounds",
        "1",
        "--clients",
        "2",
        "--timeout",
        "1",
        "--styles",
        "no-close-notify,idle-client",
    ]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{text}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.went_deaf(), "no client left without close_notify");
    let (ok, sent) = overall(&text);
    assert!(ok < sent, "{text}");
    assert!(text.contains("x timeout, e.g. round 1"), "{text}");
}

#[test]
fn help_usage_errors_and_remote_addresses() {
    let out = probe(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("curl-hostname-mismatch"));
    assert_eq!(probe(&[]).status.code(), Some(2));
    assert_eq!(
        probe(&["https://localhost:1/", "--styles", "nope"])
            .status
            .code(),
        Some(2)
    );
    // Not loopback: refused before any packet is sent (TEST-NET-1).
    let out = probe(&["https://192.0.2.1:443/"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}

/// A tiny blocking HTTPS server that answers `Hello, World!` until a client
/// leaves without `close_notify` (or fails its handshake after sending
/// something); from then on it accepts connections but never answers on
/// any of them, as a server with a poisoned OpenSSL error queue would.
struct DeafAfterAbruptServer {
    addr: SocketAddr,
    deaf: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// How long the deaf server's connection threads wait for a client.
const DEAF_SERVER_IDLE: Duration = Duration::from_secs(10);

impl DeafAfterAbruptServer {
    fn start() -> DeafAfterAbruptServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the deaf server");
        let addr = listener.local_addr().unwrap();
        let acceptor = server_acceptor_builder().build();
        let deaf = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (deaf, stop) = (deaf.clone(), stop.clone());
            thread::spawn(move || {
                for tcp in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = tcp else { continue };
                    let (acceptor, deaf) = (acceptor.clone(), deaf.clone());
                    thread::spawn(move || serve(tcp, &acceptor, &deaf));
                }
            })
        };
        DeafAfterAbruptServer {
            addr,
            deaf,
            stop,
            accept: Some(accept),
        }
    }

    fn went_deaf(&self) -> bool {
        self.deaf.load(Ordering::SeqCst)
    }
}

impl Drop for DeafAfterAbruptServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// One connection of the deaf server: silent once deaf, otherwise a TLS
/// keep-alive loop answering every request head with the hello answer.
fn serve(tcp: TcpStream, acceptor: &SslAcceptor, deaf: &AtomicBool) {
    let _ = tcp.set_read_timeout(Some(DEAF_SERVER_IDLE));
    let mut first = [0u8; 1];
    if deaf.load(Ordering::SeqCst) || !matches!(tcp.peek(&mut first), Ok(1)) {
        // Deaf, or a client that sent nothing: wait for it to go.
        return drain(tcp);
    }
    let mut tls = match acceptor.accept(tcp) {
        Ok(tls) => tls,
        Err(_) => {
            deaf.store(true, Ordering::SeqCst);
            return;
        }
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tls.ssl_read(&mut chunk) {
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // close_notify: a clean goodbye.
            Err(e) if e.code() == ErrorCode::ZERO_RETURN => return,
            Err(_) => {
                deaf.store(true, Ordering::SeqCst);
                return;
            }
        }
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            if deaf.load(Ordering::SeqCst) {
                continue;
            }
            if answer(&mut tls).is_err() {
                return;
            }
        }
    }
}

fn answer(tls: &mut SslStream<TcpStream>) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{HELLO_BODY}",
        HELLO_BODY.len()
    );
    tls.write_all(response.as_bytes())?;
    tls.flush()
}

/// Reads and discards until the client closes (or goes quiet for long).
fn drain(mut tcp: TcpStream) {
    let mut buf = [0u8; 4096];
    while matches!(tcp.read(&mut buf), Ok(n) if n > 0) {}
}
