//! Soak test of pistachio: an HTTPS and a plain HTTP endpoint in this
//! process, and many client threads hammering them over loopback
//! (`127.0.0.1` only) with a mix of good and hostile traffic for a bounded
//! time, while the TLS certificate is reloaded every few seconds.
//!
//! ```text
//! cargo run --release -p pistachio-tests --bin soak -- --duration 300
//! ```
//!
//! Good traffic: keep-alive TLS and plain clients (several requests per
//! connection, some pipelined), and clients that open a new connection per
//! request; every response is checked (status and exact body). Hostile
//! traffic: abrupt closes (FIN without `close_notify`, RST mid-request and
//! after a response, half a `ClientHello`, RST mid-handshake, random bytes),
//! silent clients, slow-loris heads, oversized bodies and heads, malformed
//! requests, plaintext to the TLS port and TLS to the plain port; each has
//! an expected reaction (a status code and/or a close), counted by kind.
//!
//! The run fails (exit status 1) if a good request was not answered
//! correctly (sent ≠ answered, or any error on a good request), if a hostile
//! client did not get the expected reaction, if a certificate reload was not
//! seen by a new connection, or if open file descriptors, threads or RSS did
//! not come back flat: they are measured after a warm-up (servers started,
//! each scenario run once) and again at the end (clients stopped, server
//! connections closed, before the servers shut down). A watchdog ends the
//! process (exit status 3) if the run overstays its deadline, and every
//! client socket has read and write timeouts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use openssl::ssl::SslConnector;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;
use pistachio_rest::http::{
    BodyMode, Endpoint, Exchange, Handler, HeaderMap, Hooks, Method, Middleware, Options, Request,
    RequestInfo, ResponseWriter, StatusCode,
};
use pistachio_rest::transport::{TlsConfig, TlsReloader};
use pistachio_tests::abrupt::client_hello;
use pistachio_tests::client::{
    read_once, set_reset_on_close, tls_connector_builder, wait_for_close, AnyClient, Connection,
    ReadOutcome, RequestBuilder, Stream,
};
use pistachio_tests::{certs, open_fds, rss_kib, PlainClient, Response, TlsClient, HELLO_BODY};

/// Request timeouts of the servers (head, body, TLS handshake).
const SERVER_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request body the servers accept.
const MAX_BODY: usize = 64 * 1024;
/// How long `/slow` waits before answering (from another thread).
const SLOW_DELAY: Duration = Duration::from_millis(5);
/// How long a hostile client waits for the server's reaction (a close, a
/// status): well past [`SERVER_TIMEOUT`], so a loaded machine does not
/// make the run flaky.
const REACTION_WAIT: Duration = Duration::from_secs(6);
/// Interval between two bytes of a slow-loris head.
const LORIS_INTERVAL: Duration = Duration::from_millis(250);
/// Extra time after `--duration` before the watchdog ends the process.
const WATCHDOG_GRACE: Duration = Duration::from_secs(120);
/// Largest growth of open fds between start and end still called flat.
const FD_SLACK: usize = 2;
/// Largest RSS growth still called flat: this much, or 20 % of the start.
const RSS_SLACK_KIB: u64 = 20 * 1024;

// ---------------------------------------------------------------------------
// Command line

#[derive(Debug, Clone)]
struct Args {
    duration: Duration,
    clients: usize,
    max_requests: u64,
    reload_every: Duration,
}

const USAGE: &str = "\
usage: soak [--duration SECS] [--clients N] [--max-requests N] [--reload-every SECS]

  --duration SECS       how long the mixed traffic runs (default 60)
  --clients N           client threads (default 8)
  --max-requests N      stop early after this many good requests (default 20000000)
  --reload-every SECS   TLS certificate reload interval (default 5)";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs(60),
        clients: 8,
        max_requests: 20_000_000,
        reload_every: Duration::from_secs(5),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v:?}"))
        };
        match flag.as_str() {
            "--duration" => args.duration = Duration::from_secs(number(&value)?.max(1)),
            "--clients" => args.clients = number(&value)?.clamp(1, 256) as usize,
            "--max-requests" => args.max_requests = number(&value)?.max(1),
            "--reload-every" => args.reload_every = Duration::from_secs(number(&value)?.max(1)),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(args)
}

// ---------------------------------------------------------------------------
// Counters

/// Everything the run counts. Kinds are short fixed strings.
#[derive(Default)]
struct Stats {
    good_sent: AtomicU64,
    good_ok: AtomicU64,
    /// Good requests answered correctly, by kind.
    good_by_kind: Mutex<BTreeMap<&'static str, u64>>,
    /// Errors on good requests (and on good connections), by kind.
    good_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Expected reactions to hostile clients, by kind.
    rejections: Mutex<BTreeMap<&'static str, u64>>,
    /// Hostile clients that did not get the expected reaction, by kind.
    anomalies: Mutex<BTreeMap<&'static str, u64>>,
    /// Runs per scenario.
    scenarios: Mutex<BTreeMap<&'static str, u64>>,
    /// Time spent per scenario, in microseconds.
    scenario_micros: Mutex<BTreeMap<&'static str, u64>>,
    /// The first message of each error kind, for the report.
    samples: Mutex<BTreeMap<&'static str, String>>,
    reloads: AtomicU64,
    reloads_verified: AtomicU64,
}

impl Stats {
    fn bump(map: &Mutex<BTreeMap<&'static str, u64>>, kind: &'static str, n: u64) {
        *map.lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += n;
    }

    fn sample(&self, kind: &'static str, msg: String) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.entry(kind).or_insert_with(|| {
            eprintln!("soak: {msg}");
            msg
        });
    }

    fn good_error(&self, kind: &'static str, detail: &str) {
        Stats::bump(&self.good_errors, kind, 1);
        self.sample(kind, format!("good request: {kind}: {detail}"));
    }

    fn rejection(&self, kind: &'static str) {
        Stats::bump(&self.rejections, kind, 1);
    }

    fn anomaly(&self, kind: &'static str, detail: &str) {
        Stats::bump(&self.anomalies, kind, 1);
        self.sample(kind, format!("hostile client: {kind}: {detail}"));
    }

    fn scenario(&self, name: &'static str, took: Duration) {
        Stats::bump(&self.scenarios, name, 1);
        Stats::bump(&self.scenario_micros, name, took.as_micros() as u64);
    }

    fn total(map: &Mutex<BTreeMap<&'static str, u64>>) -> u64 {
        map.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }

    fn snapshot(map: &Mutex<BTreeMap<&'static str, u64>>) -> BTreeMap<&'static str, u64> {
        map.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

// ---------------------------------------------------------------------------
// Process resources

#[derive(Debug, Clone, Copy)]
struct Resources {
    fds: usize,
    rss_kib: u64,
    threads: usize,
}

fn resources() -> Resources {
    let rss_kib = rss_kib();
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    Resources {
        fds: open_fds(),
        rss_kib,
        threads,
    }
}

// ---------------------------------------------------------------------------
// Pseudo-random numbers (xorshift64*), one generator per client thread

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng((nanos ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

// ---------------------------------------------------------------------------
// The servers

/// What `/slow` hands to the responder thread.
type SlowJob = (Instant, ResponseWriter, String);

/// Largest `/stream` response a client may ask for.
const MAX_STREAM: u64 = 64 * 1024 * 1024;

/// The byte at `offset` of a `/stream` body (a repeating pattern, so a
/// client can check every byte without keeping a copy).
fn stream_byte(offset: u64) -> u8 {
    b'a' + (offset % 23) as u8
}

/// A cheap fingerprint of an uploaded body.
fn checksum(bytes: &[u8], acc: u64) -> u64 {
    bytes
        .iter()
        .fold(acc, |a, &b| a.wrapping_mul(31).wrapping_add(u64::from(b)))
}

/// The handler of both endpoints.
///
/// - `GET /hello`, `POST /echo`: answered on the worker;
/// - `GET /slow?n=N`: answered from the `/slow` responder thread;
/// - `GET /stream?chunks=C&size=S`: a `ResponseStream` written by a
///   producer thread of its own with the bounded `ResponseStream::send_chunk`;
///   the producer stops when the client goes;
/// - `POST /upload`: the body is streamed (`BodyMode::Streamed`, no size
///   limit) and read on a thread of its own; the answer is
///   `received LEN SUM`;
/// - `GET /tokio?n=N`: the writer moves into a task on the soak's tokio
///   runtime, which answers after a short sleep.
struct SoakHandler {
    slow: mpsc::Sender<SlowJob>,
    runtime: tokio::runtime::Handle,
}

impl SoakHandler {
    fn stream(req: &Request, resp: ResponseWriter) {
        let param = |name: &str| req.query(name).and_then(|v| v.parse::<u64>().ok());
        let (Some(chunks), Some(size)) = (param("chunks"), param("size")) else {
            return resp.send(StatusCode::BAD_REQUEST, "chunks and size wanted");
        };
        if size == 0 || chunks.saturating_mul(size) > MAX_STREAM {
            return resp.send(StatusCode::BAD_REQUEST, "stream too large");
        }
        let mut stream = resp.stream(StatusCode::OK);
        let spawned = thread::Builder::new()
            .name("soak-stream".into())
            .spawn(move || {
                let mut chunk = vec![0u8; size as usize];
                for i in 0..chunks {
                    for (j, b) in chunk.iter_mut().enumerate() {
                        *b = stream_byte(i * size + j as u64);
                    }
                    if stream.send_chunk(&chunk).is_err() {
                        // The client went away: stop producing.
                        return;
                    }
                }
                stream.end();
            });
        if let Err(e) = spawned {
            // The stream was moved into the closure and dropped with it:
            // the response is cut off.
            eprintln!("soak: spawning a stream producer: {e}");
        }
    }

    fn upload(mut req: Request, resp: ResponseWriter) {
        let Some(mut body) = req.take_body_stream() else {
            return resp.send(StatusCode::INTERNAL_SERVER_ERROR, "no body stream");
        };
        let spawned = thread::Builder::new()
            .name("soak-upload".into())
            .spawn(move || {
                let (mut len, mut sum) = (0u64, 0u64);
                loop {
                    match body.next_chunk() {
                        Ok(Some(piece)) => {
                            len += piece.len() as u64;
                            sum = checksum(&piece, sum);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            return resp.send(StatusCode::BAD_REQUEST, format!("body: {e}"));
                        }
                    }
                }
                resp.send(StatusCode::OK, format!("received {len} {sum}"));
            });
        if let Err(e) = spawned {
            eprintln!("soak: spawning an upload reader: {e}");
        }
    }
}

impl Handler for SoakHandler {
    fn on_request(&self, req: Request, resp: ResponseWriter) {
        match (req.method(), req.path()) {
            (&Method::GET, "/hello" | "/") => resp.send(StatusCode::OK, HELLO_BODY),
            (&Method::POST, "/echo") => {
                let body = req.into_body();
                resp.send(StatusCode::OK, body);
            }
            (&Method::GET, "/slow") => {
                let body = format!("slow {}", req.query("n").unwrap_or_default());
                if let Err(mpsc::SendError((_, resp, _))) =
                    self.slow.send((Instant::now() + SLOW_DELAY, resp, body))
                {
                    resp.send(StatusCode::SERVICE_UNAVAILABLE, "no responder");
                }
            }
            (&Method::GET, "/stream") => SoakHandler::stream(&req, resp),
            (&Method::POST, "/upload") => SoakHandler::upload(req, resp),
            (&Method::GET, "/tokio") => {
                let body = format!("tokio {}", req.query("n").unwrap_or_default());
                self.runtime.spawn(async move {
                    tokio::time::sleep(SLOW_DELAY).await;
                    resp.send(StatusCode::OK, body);
                });
            }
            _ => resp.send(StatusCode::NOT_FOUND, "not found"),
        }
    }

    fn body_mode(&self, req: &Request) -> BodyMode {
        if req.method() == Method::POST && req.path() == "/upload" {
            BodyMode::Streamed
        } else {
            BodyMode::Buffered
        }
    }
}

/// Answers `/slow` requests once their time has come. All have the same
/// delay, so the queue is in deadline order.
fn slow_responder(jobs: mpsc::Receiver<SlowJob>) {
    while let Ok((due, resp, body)) = jobs.recv() {
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        resp.send(StatusCode::OK, body);
    }
}

/// Endpoint-wide middleware on both servers: counts the answers whose head
/// went out and the exchanges reported complete. Once every connection has
/// closed the two must be equal (each exchange reported exactly once, none
/// lost on any close path) and at least the good requests answered.
#[derive(Debug, Default)]
struct Ledger {
    answered: AtomicU64,
    completed: AtomicU64,
}

impl Middleware for Ledger {
    fn on_response(&self, _: &RequestInfo, _: StatusCode, _: &mut HeaderMap) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }
    fn on_complete(&self, _: &Exchange<'_>) {
        self.completed.fetch_add(1, Ordering::Relaxed);
    }
    fn hooks(&self) -> Hooks {
        Hooks::ON_RESPONSE | Hooks::ON_COMPLETE
    }
}

fn options(prefix: &str, ledger: &Arc<Ledger>) -> Options {
    Options::default()
        .middleware(Arc::clone(ledger))
        .threads(2)
        .handshake_timeout(SERVER_TIMEOUT)
        .header_timeout(SERVER_TIMEOUT)
        .body_timeout(SERVER_TIMEOUT)
        .keepalive_timeout(Duration::from_secs(10))
        .close_timeout(Duration::from_secs(5))
        .max_request_size(MAX_BODY)
        .max_connections(512)
        .thread_name_prefix(prefix)
}

fn test_pki_config() -> Result<TlsConfig, String> {
    TlsConfig::from_pem_files(
        certs::server_chain_pem().as_path(),
        certs::server_key().as_path(),
    )
    .map_err(|e| format!("loading the test certificate: {e:?}"))
}

struct Servers {
    ledger: Arc<Ledger>,
    tls: Endpoint,
    plain: Endpoint,
    tls_port: u16,
    plain_port: u16,
    responder: thread::JoinHandle<()>,
    /// Runs the `/tokio` tasks; its threads start before the warm-up, so
    /// both resource measurements count them.
    runtime: tokio::runtime::Runtime,
}

fn start_servers() -> Result<Servers, String> {
    let (tx, rx) = mpsc::channel();
    let responder = thread::Builder::new()
        .name("soak-slow".into())
        .spawn(move || slow_responder(rx))
        .map_err(|e| format!("spawning the /slow responder: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("soak-tokio")
        .enable_time()
        .build()
        .map_err(|e| format!("starting the tokio runtime: {e}"))?;
    let handler = |slow: mpsc::Sender<SlowJob>| SoakHandler {
        slow,
        runtime: runtime.handle().clone(),
    };
    let ledger = Arc::new(Ledger::default());
    let mut tls = Endpoint::bind(
        "127.0.0.1:0",
        options("soak-tls-w", &ledger).tls(test_pki_config()?),
    )
    .map_err(|e| format!("binding the HTTPS endpoint: {e}"))?;
    let mut plain = Endpoint::bind("127.0.0.1:0", options("soak-plain-w", &ledger))
        .map_err(|e| format!("binding the HTTP endpoint: {e}"))?;
    tls.serve_threaded(handler(tx.clone()))
        .map_err(|e| format!("starting the HTTPS endpoint: {e}"))?;
    plain
        .serve_threaded(handler(tx))
        .map_err(|e| format!("starting the HTTP endpoint: {e}"))?;
    Ok(Servers {
        ledger,
        tls_port: tls.local_addr().port(),
        plain_port: plain.local_addr().port(),
        tls,
        plain,
        responder,
        runtime,
    })
}

// ---------------------------------------------------------------------------
// Client trust: ca.pem plus the self-signed certificates in use

/// The connector clients use, replaced when the set of trusted
/// certificates changes. It trusts `ca.pem` always, plus the self-signed
/// certificate being served (if any) and the next one, which is trusted a
/// whole reload period before the server starts to serve it.
struct Trust {
    connector: RwLock<SslConnector>,
}

impl Trust {
    fn new(extra: &[X509]) -> Result<Trust, String> {
        Ok(Trust {
            connector: RwLock::new(build_connector(extra)?),
        })
    }

    fn get(&self) -> SslConnector {
        self.connector
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, extra: &[X509]) -> Result<(), String> {
        let connector = build_connector(extra)?;
        *self.connector.write().unwrap_or_else(|p| p.into_inner()) = connector;
        Ok(())
    }
}

fn build_connector(extra: &[X509]) -> Result<SslConnector, String> {
    let mut builder = tls_connector_builder().map_err(|e| format!("TLS client: {e}"))?;
    let mut store = X509StoreBuilder::new().map_err(|e| format!("X509 store: {e}"))?;
    let ca = std::fs::read(certs::ca_pem()).map_err(|e| format!("reading ca.pem: {e}"))?;
    store
        .add_cert(X509::from_pem(&ca).map_err(|e| format!("ca.pem: {e}"))?)
        .map_err(|e| format!("trusting ca.pem: {e}"))?;
    for cert in extra {
        store
            .add_cert(cert.clone())
            .map_err(|e| format!("trusting a self-signed certificate: {e}"))?;
    }
    builder.set_cert_store(store.build());
    Ok(builder.build())
}

/// A fresh self-signed certificate for `localhost` and `127.0.0.1`.
///
/// Each gets a subject of its own (the first name becomes the common
/// name): OpenSSL looks trust anchors up by subject, and of two trusted
/// self-signed certificates with the same subject and no key identifiers
/// it may pick the wrong one and fail the verification.
fn generate_self_signed() -> Result<(TlsConfig, X509), String> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let unique = format!("soak-{}.localhost", SERIAL.fetch_add(1, Ordering::Relaxed));
    let (config, generated) = TlsConfig::self_signed(&[&unique, "localhost", "127.0.0.1"])
        .map_err(|e| format!("generating a self-signed certificate: {e:?}"))?;
    let cert = X509::from_pem(&generated.cert_pem).map_err(|e| format!("self-signed PEM: {e}"))?;
    Ok((config, cert))
}

// ---------------------------------------------------------------------------
// A raw client stream, TLS or plain, for the hostile scenarios

/// What a hostile client saw: the bytes the server sent, and whether it
/// closed the connection within the wait.
struct Reaction {
    bytes: Vec<u8>,
    closed: bool,
}

impl Reaction {
    /// The status code of the first response, if any arrived.
    fn status(&self) -> Option<u16> {
        let text = self.bytes.strip_prefix(b"HTTP/1.1 ")?;
        std::str::from_utf8(text.get(..3)?).ok()?.parse().ok()
    }

    fn describe(&self) -> String {
        let first_line = self
            .bytes
            .split(|&b| b == b'\r')
            .next()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .unwrap_or_default();
        format!(
            "{} bytes ({first_line:?}), {}",
            self.bytes.len(),
            if self.closed { "closed" } else { "still open" }
        )
    }
}

/// Reads whatever the server sends until it closes (EOF, reset or a TLS
/// error) or `wait` passes.
fn read_until_close(raw: &mut Stream, wait: Duration) -> Reaction {
    match Connection::new(raw).read_to_close(wait) {
        Ok(bytes) => Reaction {
            bytes,
            closed: true,
        },
        Err(bytes) => Reaction {
            bytes,
            closed: false,
        },
    }
}

// ---------------------------------------------------------------------------
// Good requests

enum Good {
    Hello,
    Echo(Vec<u8>),
    Slow(u64),
    /// `/tokio`: answered from a task on the tokio runtime.
    Tokio(u64),
    /// `/stream`: `chunks` chunks of `size` bytes from a producer thread.
    Stream {
        chunks: u64,
        size: u64,
    },
    /// `/upload`: the body sent chunked in pieces of `piece` bytes, read by
    /// the server as a stream.
    Upload {
        body: Vec<u8>,
        piece: usize,
    },
}

impl Good {
    /// A random good request. `small` ones are pipelined: no large
    /// streams or uploads among them.
    fn random(rng: &mut Rng, small: bool) -> Good {
        match rng.range(0, 99) {
            0..=39 => Good::Hello,
            40..=79 => {
                let len = if small || rng.chance(60) {
                    rng.range(0, 1024)
                } else {
                    rng.range(1025, 60_000)
                };
                Good::Echo(rng.bytes(len as usize))
            }
            80..=86 => Good::Slow(rng.next() % 1_000_000),
            87..=93 => Good::Tokio(rng.next() % 1_000_000),
            _ if small => Good::Hello,
            94..=96 => Good::Stream {
                chunks: rng.range(1, 64),
                size: rng.range(1, 8 * 1024),
            },
            _ => {
                let len = rng.range(100 * 1024, 400 * 1024) as usize;
                Good::Upload {
                    body: rng.bytes(len),
                    piece: rng.range(1, 32 * 1024) as usize,
                }
            }
        }
    }

    /// The short name counted in the report.
    fn kind(&self) -> &'static str {
        match self {
            Good::Hello => "GET /hello",
            Good::Echo(_) => "POST /echo",
            Good::Slow(_) => "GET /slow (answered from another thread)",
            Good::Tokio(_) => "GET /tokio (answered from a tokio task)",
            Good::Stream { .. } => "GET /stream (ResponseStream from a producer thread)",
            Good::Upload { .. } => "POST /upload (chunked, body streamed to the handler)",
        }
    }

    fn encode(&self, close: bool, out: &mut Vec<u8>) {
        let request = match self {
            Good::Hello => RequestBuilder::get("/hello"),
            Good::Echo(body) => RequestBuilder::new("POST", "/echo")
                .header("Content-Type", "application/octet-stream")
                .body(body),
            Good::Slow(n) => RequestBuilder::get(&format!("/slow?n={n}")),
            Good::Tokio(n) => RequestBuilder::get(&format!("/tokio?n={n}")),
            Good::Stream { chunks, size } => {
                RequestBuilder::get(&format!("/stream?chunks={chunks}&size={size}"))
            }
            Good::Upload { .. } => RequestBuilder::new("POST", "/upload")
                .header("Content-Type", "application/octet-stream")
                .header("Transfer-Encoding", "chunked"),
        };
        let request = if close { request.close() } else { request };
        request.write_to(out);
        if let Good::Upload { body, piece } = self {
            for part in body.chunks(*piece) {
                let _ = write!(Text(out), "{:x}\r\n", part.len());
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }

    fn check(&self, r: &Response) -> Result<(), (&'static str, String)> {
        if r.status != 200 {
            return Err((
                "unexpected status",
                format!(
                    "{}: status {} body {:?}",
                    self.kind(),
                    r.status,
                    truncate(&r.text())
                ),
            ));
        }
        let ok = match self {
            Good::Hello => r.body == HELLO_BODY.as_bytes(),
            Good::Echo(body) => r.body == *body,
            Good::Slow(n) => r.body == format!("slow {n}").as_bytes(),
            Good::Tokio(n) => r.body == format!("tokio {n}").as_bytes(),
            Good::Stream { chunks, size } => {
                r.body.len() as u64 == chunks * size
                    && r.header("transfer-encoding") == Some("chunked")
                    && r.body
                        .iter()
                        .enumerate()
                        .all(|(i, &b)| b == stream_byte(i as u64))
            }
            Good::Upload { body, .. } => {
                r.body == format!("received {} {}", body.len(), checksum(body, 0)).as_bytes()
            }
        };
        if ok {
            Ok(())
        } else {
            Err((
                "wrong body",
                format!(
                    "{}: {} bytes: {:?}",
                    self.kind(),
                    r.body.len(),
                    truncate(&r.text())
                ),
            ))
        }
    }
}

/// `fmt::Write` into a byte buffer.
struct Text<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

fn io_kind(e: &io::Error) -> &'static str {
    let msg = e.to_string();
    if msg.starts_with("empty reply from server") {
        "connection closed before the response"
    } else if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        "timeout"
    } else if e.kind() == io::ErrorKind::UnexpectedEof {
        "connection closed mid-response"
    } else if e.kind() == io::ErrorKind::InvalidData {
        "malformed response"
    } else {
        "connection error"
    }
}

/// Sends `reqs` on `client` (pipelined when more than one) and checks
/// every answer. The last one asks to close when `close_last`. Returns
/// whether the connection is still usable.
fn exchange(client: &mut AnyClient, reqs: &[Good], close_last: bool, stats: &Stats) -> bool {
    let mut wire = Vec::new();
    for (i, req) in reqs.iter().enumerate() {
        req.encode(close_last && i + 1 == reqs.len(), &mut wire);
    }
    stats
        .good_sent
        .fetch_add(reqs.len() as u64, Ordering::Relaxed);
    if let Err(e) = client.write_raw(&wire) {
        stats.good_error("write failed", &e.to_string());
        stats.good_error_lost(reqs.len() - 1);
        return false;
    }
    for (i, req) in reqs.iter().enumerate() {
        match client.read_response() {
            Ok(r) => match req.check(&r) {
                Ok(()) => {
                    stats.good_ok.fetch_add(1, Ordering::Relaxed);
                    Stats::bump(&stats.good_by_kind, req.kind(), 1);
                }
                Err((kind, detail)) => {
                    stats.good_error(kind, &detail);
                    stats.good_error_lost(reqs.len() - i - 1);
                    return false;
                }
            },
            Err(e) => {
                stats.good_error(io_kind(&e), &e.to_string());
                stats.good_error_lost(reqs.len() - i - 1);
                return false;
            }
        }
    }
    true
}

impl Stats {
    /// Requests pipelined behind one that failed: not answered either.
    fn good_error_lost(&self, n: usize) {
        if n > 0 {
            Stats::bump(&self.good_errors, "lost behind a failed request", n as u64);
        }
    }
}

fn client_tcp(client: &AnyClient) -> &TcpStream {
    match client {
        AnyClient::Tls(c) => c.tcp(),
        AnyClient::Plain(c) => c.tcp(),
    }
}

fn connect_good(port: u16, tls: bool, trust: &Trust, stats: &Stats) -> Option<AnyClient> {
    let result = if tls {
        TlsClient::connect_with(port, &trust.get(), "localhost").map(AnyClient::Tls)
    } else {
        PlainClient::connect(port).map(AnyClient::Plain)
    };
    match result {
        Ok(client) => Some(client),
        Err(e) => {
            let kind = if e.to_string().starts_with("TLS handshake") {
                "TLS handshake failed"
            } else {
                "connect failed"
            };
            stats.good_error(kind, &e.to_string());
            None
        }
    }
}

/// After a response to `Connection: close`, the server must close.
fn expect_server_close(client: &AnyClient, stats: &Stats) {
    if !wait_for_close(client_tcp(client), REACTION_WAIT) {
        stats.good_error(
            "not closed after Connection: close",
            "the server kept the connection open",
        );
    }
}

/// Ends a good connection one of several ways.
fn finish_good(client: AnyClient, rng: &mut Rng, stats: &Stats) {
    match rng.range(0, 2) {
        // A last request with `Connection: close`; the server closes.
        0 => {
            let mut client = client;
            if exchange(&mut client, &[Good::Hello], true, stats) {
                expect_server_close(&client, stats);
            }
        }
        // A clean close (close_notify on TLS).
        1 => match client {
            AnyClient::Tls(c) => {
                if let Err(e) = c.close() {
                    stats.good_error("clean close failed", &e.to_string());
                }
            }
            AnyClient::Plain(c) => {
                let _ = c.tcp().shutdown(Shutdown::Both);
            }
        },
        // Just dropped: FIN without close_notify.
        _ => drop(client),
    }
}

fn keep_alive(port: u16, tls: bool, trust: &Trust, rng: &mut Rng, stats: &Stats) {
    let Some(mut client) = connect_good(port, tls, trust, stats) else {
        return;
    };
    for _ in 0..rng.range(2, 12) {
        let batch: Vec<Good> = if rng.chance(25) {
            (0..rng.range(2, 4))
                .map(|_| Good::random(rng, true))
                .collect()
        } else {
            vec![Good::random(rng, false)]
        };
        if !exchange(&mut client, &batch, false, stats) {
            return;
        }
    }
    finish_good(client, rng, stats);
}

fn new_connection_each(port: u16, tls: bool, trust: &Trust, rng: &mut Rng, stats: &Stats) {
    for _ in 0..3 {
        let Some(mut client) = connect_good(port, tls, trust, stats) else {
            return;
        };
        let close = rng.chance(50);
        if !exchange(&mut client, &[Good::random(rng, false)], close, stats) {
            return;
        }
        if close {
            expect_server_close(&client, stats);
        } else {
            finish_good(client, rng, stats);
        }
    }
}

// ---------------------------------------------------------------------------
// Hostile clients

/// The first half of a request; never completed.
const PARTIAL_REQUEST: &[u8] = b"GET /hello HTTP/1.1\r\nHo";

fn hostile_connect(
    port: u16,
    tls: Option<&SslConnector>,
    stats: &Stats,
    what: &'static str,
) -> Option<Stream> {
    match Stream::connect_with(port, tls) {
        Ok(raw) => Some(raw),
        Err(e) => {
            stats.anomaly(what, &format!("could not connect: {e}"));
            None
        }
    }
}

/// The server must close (and may answer first) within [`REACTION_WAIT`].
fn expect_close(raw: &mut Stream, stats: &Stats, ok: &'static str, bad: &'static str) {
    let reaction = read_until_close(raw, REACTION_WAIT);
    if reaction.closed {
        stats.rejection(ok);
    } else {
        stats.anomaly(bad, &reaction.describe());
    }
}

/// One good exchange on a raw stream (counted as a good request).
fn raw_hello(raw: &mut Stream, stats: &Stats) -> bool {
    stats.good_sent.fetch_add(1, Ordering::Relaxed);
    let mut conn = Connection::new(raw);
    if let Err(e) = conn.write_raw(&RequestBuilder::get("/hello").to_bytes()) {
        stats.good_error("write failed", &e.to_string());
        return false;
    }
    match conn.read_response() {
        Ok(r) if r.header("content-length") == Some(&HELLO_BODY.len().to_string()) => {
            match Good::Hello.check(&r) {
                Ok(()) => {
                    stats.good_ok.fetch_add(1, Ordering::Relaxed);
                    Stats::bump(&stats.good_by_kind, Good::Hello.kind(), 1);
                    true
                }
                Err((kind, detail)) => {
                    stats.good_error(kind, &detail);
                    false
                }
            }
        }
        Ok(r) => {
            stats.good_error("wrong response", &format!("{:?}", truncate(&r.head)));
            false
        }
        Err(e) => {
            stats.good_error(io_kind(&e), &e.to_string());
            false
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Abrupt {
    FinAfterExchange,
    FinAfterHandshake,
    FinMidRequest,
    RstMidRequest,
    RstAfterResponse,
    HalfClientHello,
    RstMidHandshake,
    RandomBytes,
}

impl Abrupt {
    const TLS: [Abrupt; 8] = [
        Abrupt::FinAfterExchange,
        Abrupt::FinAfterHandshake,
        Abrupt::FinMidRequest,
        Abrupt::RstMidRequest,
        Abrupt::RstAfterResponse,
        Abrupt::HalfClientHello,
        Abrupt::RstMidHandshake,
        Abrupt::RandomBytes,
    ];
    const PLAIN: [Abrupt; 5] = [
        Abrupt::FinAfterExchange,
        Abrupt::FinMidRequest,
        Abrupt::RstMidRequest,
        Abrupt::RstAfterResponse,
        Abrupt::RandomBytes,
    ];

    fn name(self, tls: bool) -> &'static str {
        match (self, tls) {
            (Abrupt::FinAfterExchange, true) => "TLS: FIN without close_notify after a response",
            (Abrupt::FinAfterExchange, false) => "HTTP: FIN after a response",
            (Abrupt::FinAfterHandshake, _) => "TLS: FIN without close_notify after the handshake",
            (Abrupt::FinMidRequest, true) => "TLS: FIN without close_notify mid-request",
            (Abrupt::FinMidRequest, false) => "HTTP: FIN mid-request",
            (Abrupt::RstMidRequest, true) => "TLS: RST mid-request",
            (Abrupt::RstMidRequest, false) => "HTTP: RST mid-request",
            (Abrupt::RstAfterResponse, true) => "TLS: RST after a response",
            (Abrupt::RstAfterResponse, false) => "HTTP: RST after a response",
            (Abrupt::HalfClientHello, _) => "TLS: half a ClientHello, then FIN",
            (Abrupt::RstMidHandshake, _) => "TLS: RST mid-handshake",
            (Abrupt::RandomBytes, true) => "TLS: random bytes instead of a handshake",
            (Abrupt::RandomBytes, false) => "HTTP: random bytes instead of a request",
        }
    }

    fn not_closed(self) -> &'static str {
        match self {
            Abrupt::FinAfterExchange => "abrupt close: server did not close after FIN",
            Abrupt::FinAfterHandshake => "abrupt close: server did not close after FIN",
            Abrupt::FinMidRequest => "abrupt close: server did not close after FIN",
            Abrupt::HalfClientHello => "half ClientHello: server did not close",
            Abrupt::RandomBytes => "random bytes: server did not close",
            Abrupt::RstMidRequest | Abrupt::RstAfterResponse | Abrupt::RstMidHandshake => {
                "abrupt close"
            }
        }
    }

    fn run(self, port: u16, tls: Option<&SslConnector>, rng: &mut Rng, stats: &Stats) {
        let name = self.name(tls.is_some());
        let not_closed = self.not_closed();
        let tcp_only = matches!(
            self,
            Abrupt::HalfClientHello | Abrupt::RstMidHandshake | Abrupt::RandomBytes
        );
        let Some(mut raw) = hostile_connect(port, if tcp_only { None } else { tls }, stats, name)
        else {
            return;
        };
        match self {
            Abrupt::FinAfterExchange | Abrupt::FinAfterHandshake | Abrupt::FinMidRequest => {
                let ready = match self {
                    Abrupt::FinAfterExchange => raw_hello(&mut raw, stats),
                    Abrupt::FinMidRequest => match raw.write_all(PARTIAL_REQUEST) {
                        Ok(()) => true,
                        Err(e) => {
                            stats.anomaly(name, &format!("write failed: {e}"));
                            false
                        }
                    },
                    _ => true,
                };
                if !ready {
                    return;
                }
                // FIN without close_notify: shut the TCP socket's sending
                // half under the TLS session, which never sends anything.
                let _ = raw.tcp().shutdown(Shutdown::Write);
                let tcp = match raw.tcp().try_clone() {
                    Ok(tcp) => tcp,
                    Err(e) => {
                        stats.anomaly(name, &format!("dup failed: {e}"));
                        return;
                    }
                };
                drop(raw);
                if wait_for_close(&tcp, REACTION_WAIT) {
                    stats.rejection(name);
                } else {
                    stats.anomaly(not_closed, name);
                }
            }
            Abrupt::RstMidRequest | Abrupt::RstAfterResponse => {
                if matches!(self, Abrupt::RstAfterResponse) {
                    if !raw_hello(&mut raw, stats) {
                        return;
                    }
                } else if let Err(e) = raw.write_all(PARTIAL_REQUEST) {
                    stats.anomaly(name, &format!("write failed: {e}"));
                    return;
                }
                let _ = set_reset_on_close(raw.tcp());
                drop(raw);
                stats.rejection(name);
            }
            Abrupt::HalfClientHello => {
                let hello = match client_hello() {
                    Ok(h) => h,
                    Err(e) => {
                        stats.anomaly(name, &format!("no ClientHello: {e}"));
                        return;
                    }
                };
                if let Err(e) = raw.write_all(&hello[..hello.len() / 2]) {
                    stats.anomaly(name, &format!("write failed: {e}"));
                    return;
                }
                let _ = raw.tcp().shutdown(Shutdown::Write);
                expect_close(&mut raw, stats, name, not_closed);
            }
            Abrupt::RstMidHandshake => {
                let hello = match client_hello() {
                    Ok(h) => h,
                    Err(e) => {
                        stats.anomaly(name, &format!("no ClientHello: {e}"));
                        return;
                    }
                };
                let mut first = [0u8; 1];
                let result = raw
                    .write_all(hello)
                    .and_then(|()| raw.read_exact(&mut first));
                if let Err(e) = result {
                    stats.anomaly(name, &format!("no ServerHello: {e}"));
                    return;
                }
                let _ = set_reset_on_close(raw.tcp());
                drop(raw);
                stats.rejection(name);
            }
            Abrupt::RandomBytes => {
                let mut junk = rng.bytes(512);
                // Not a TLS handshake record, not an HTTP method.
                junk[0] = 0x01;
                if let Err(e) = raw.write_all(&junk) {
                    stats.anomaly(name, &format!("write failed: {e}"));
                    return;
                }
                expect_close(&mut raw, stats, name, not_closed);
            }
        }
    }
}

/// A stats label for the protocol in use: `"TLS: …"` or `"HTTP: …"`.
macro_rules! by_proto {
    ($tls:expr, $what:literal) => {
        if $tls {
            concat!("TLS: ", $what)
        } else {
            concat!("HTTP: ", $what)
        }
    };
}

/// Connects and says nothing: the server must close after its timeout.
fn silent(port: u16, tls: bool, stats: &Stats) {
    let what = if tls {
        "TLS: silent client (no ClientHello), closed"
    } else {
        "HTTP: silent client (no request), closed"
    };
    let Some(mut raw) = hostile_connect(port, None, stats, what) else {
        return;
    };
    let reaction = read_until_close(&mut raw, REACTION_WAIT);
    match (reaction.closed, reaction.status(), tls) {
        (true, _, true) | (true, None | Some(408), false) => stats.rejection(what),
        _ => stats.anomaly("silent client: not closed", &reaction.describe()),
    }
}

/// Sends a request head one byte at a time, slower than the head timeout:
/// the server must answer `408` and close, or just close.
fn slow_loris(port: u16, tls: Option<&SslConnector>, stats: &Stats) {
    let tls_used = tls.is_some();
    let on_408 = by_proto!(tls_used, "slow-loris head → 408 + close");
    let on_close = by_proto!(tls_used, "slow-loris head → closed");
    let Some(mut raw) = hostile_connect(port, tls, stats, on_close) else {
        return;
    };
    let head = b"GET /hello HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slow-loris\r\n\
                 X-Padding: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let mut closed = false;
    'bytes: for &b in head.iter() {
        if started.elapsed() > REACTION_WAIT + SERVER_TIMEOUT {
            break;
        }
        if raw.write_all(&[b]).is_err() {
            break;
        }
        if raw.tcp().set_read_timeout(Some(LORIS_INTERVAL)).is_err() {
            break;
        }
        loop {
            match read_once(&mut raw, &mut buf) {
                ReadOutcome::Data(n) => bytes.extend_from_slice(&buf[..n]),
                ReadOutcome::TimedOut => break,
                ReadOutcome::Closed => {
                    closed = true;
                    break 'bytes;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let rest = if closed {
        Reaction {
            bytes: Vec::new(),
            closed: true,
        }
    } else {
        read_until_close(&mut raw, Duration::from_secs(3))
    };
    bytes.extend_from_slice(&rest.bytes);
    let reaction = Reaction {
        bytes,
        closed: rest.closed,
    };
    match (reaction.closed, reaction.status()) {
        _ if elapsed > SERVER_TIMEOUT + REACTION_WAIT => stats.anomaly(
            "slow-loris: not cut in time",
            &format!("after {elapsed:?}: {}", reaction.describe()),
        ),
        (true, Some(408)) => stats.rejection(on_408),
        (true, None) => stats.rejection(on_close),
        _ => stats.anomaly(
            "slow-loris: unexpected reaction",
            &format!("after {elapsed:?}: {}", reaction.describe()),
        ),
    }
}

/// Requests over the limits: `413` for a body, `431` for a head.
fn oversized(port: u16, tls: Option<&SslConnector>, rng: &mut Rng, stats: &Stats) {
    let variant = rng.range(0, 2);
    let tls_used = tls.is_some();
    let (expected, ok, bad): (u16, &'static str, &'static str) = match variant {
        0 => (
            413,
            by_proto!(tls_used, "Content-Length over the limit → 413"),
            "oversized body: no 413",
        ),
        1 => (
            413,
            by_proto!(tls_used, "chunked body over the limit → 413"),
            "oversized chunked body: no 413",
        ),
        _ => (
            431,
            by_proto!(tls_used, "head over the limit → 431"),
            "oversized head: no 431",
        ),
    };
    let Some(mut raw) = hostile_connect(port, tls, stats, bad) else {
        return;
    };
    let mut wire = Vec::new();
    match variant {
        0 => {
            let _ = write!(
                Text(&mut wire),
                "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY + 1 + rng.range(0, 100_000) as usize
            );
        }
        1 => {
            wire.extend_from_slice(
                b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            let chunk = rng.bytes(8192);
            for _ in 0..(MAX_BODY / chunk.len() + 2) {
                wire.extend_from_slice(b"2000\r\n");
                wire.extend_from_slice(&chunk);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        }
        _ => {
            wire.extend_from_slice(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nX-Big: ");
            wire.extend_from_slice(&[b'a'; 20 * 1024]);
            wire.extend_from_slice(b"\r\n\r\n");
        }
    }
    // The server may refuse and close before reading everything: a failed
    // write is fine, the answer must still have been sent.
    let _ = raw.write_all(&wire);
    let reaction = read_until_close(&mut raw, REACTION_WAIT);
    if reaction.status() == Some(expected) && reaction.closed {
        stats.rejection(ok);
    } else {
        stats.anomaly(bad, &reaction.describe());
    }
}

/// Malformed requests: `400` and close (one after a good exchange on the
/// same connection, sometimes).
fn malformed(port: u16, tls: Option<&SslConnector>, rng: &mut Rng, stats: &Stats) {
    const CASES: [(&str, &[u8]); 6] = [
        (
            "header line without a colon",
            b"GET /hello HTTP/1.1\r\nHost: localhost\r\nNoColonHere\r\n\r\n",
        ),
        (
            "non-numeric Content-Length",
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n",
        ),
        (
            "conflicting Content-Length",
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\n\
              Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "bad chunk size",
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
              zz\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "missing Host",
            b"GET /hello HTTP/1.1\r\nUser-Agent: soak\r\n\r\n",
        ),
        (
            "control bytes in the request line",
            b"GET /he\x01llo HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ),
    ];
    let (_, wire) = CASES[rng.range(0, CASES.len() as u64 - 1) as usize];
    let ok = by_proto!(tls.is_some(), "malformed request → 400 + close");
    let bad = "malformed request: no 400 + close";
    let Some(mut raw) = hostile_connect(port, tls, stats, bad) else {
        return;
    };
    if rng.chance(30) && !raw_hello(&mut raw, stats) {
        return;
    }
    if let Err(e) = raw.write_all(wire) {
        stats.anomaly(bad, &format!("write failed: {e}"));
        return;
    }
    let reaction = read_until_close(&mut raw, REACTION_WAIT);
    if reaction.status() == Some(400) && reaction.closed {
        stats.rejection(ok);
    } else {
        stats.anomaly(
            bad,
            &format!(
                "{:?}: {}",
                String::from_utf8_lossy(wire),
                reaction.describe()
            ),
        );
    }
}

/// Asks for a large `/stream`, reads the head and a little of the body,
/// then resets the connection: the producer must learn the client is gone
/// and stop (the end-of-run thread count shows producers that did not).
fn stream_then_reset(port: u16, tls: Option<&SslConnector>, rng: &mut Rng, stats: &Stats) {
    let what = by_proto!(tls.is_some(), "large stream read in part, then RST");
    let bad = "stream then RST: no streamed response";
    let Some(mut raw) = hostile_connect(port, tls, stats, bad) else {
        return;
    };
    // 16 MiB: far more than the stream buffer and the socket buffers.
    let wire = RequestBuilder::get("/stream?chunks=1024&size=16384").to_bytes();
    if let Err(e) = raw.write_all(&wire) {
        stats.anomaly(bad, &format!("write failed: {e}"));
        return;
    }
    let want = rng.range(1, 256 * 1024) as usize;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let until = Instant::now() + REACTION_WAIT;
    while got.len() < want && Instant::now() < until {
        match read_once(&mut raw, &mut buf) {
            ReadOutcome::Data(n) => got.extend_from_slice(&buf[..n]),
            ReadOutcome::TimedOut => {}
            ReadOutcome::Closed => break,
        }
    }
    if got.len() < want || !got.starts_with(b"HTTP/1.1 200") {
        let reaction = Reaction {
            bytes: got,
            closed: false,
        };
        stats.anomaly(bad, &reaction.describe());
        return;
    }
    let _ = set_reset_on_close(raw.tcp());
    drop(raw);
    stats.rejection(what);
}

/// Starts a chunked `/upload`, sends part of its body, then resets the
/// connection: the reader of the streamed body must see the error and end
/// (the end-of-run thread count shows readers that did not).
fn upload_then_reset(port: u16, tls: Option<&SslConnector>, rng: &mut Rng, stats: &Stats) {
    let what = by_proto!(tls.is_some(), "chunked upload cut by RST mid-body");
    let bad = "upload then RST: could not send";
    let Some(mut raw) = hostile_connect(port, tls, stats, bad) else {
        return;
    };
    let mut wire = RequestBuilder::new("POST", "/upload")
        .header("Transfer-Encoding", "chunked")
        .to_bytes();
    for _ in 0..rng.range(1, 16) {
        let len = rng.range(1, 16 * 1024) as usize;
        let piece = rng.bytes(len);
        let _ = write!(Text(&mut wire), "{:x}\r\n", piece.len());
        wire.extend_from_slice(&piece);
        wire.extend_from_slice(b"\r\n");
    }
    if let Err(e) = raw.write_all(&wire) {
        stats.anomaly(bad, &format!("write failed: {e}"));
        return;
    }
    let _ = set_reset_on_close(raw.tcp());
    drop(raw);
    stats.rejection(what);
}

/// Plaintext HTTP to the TLS port: the server must close.
fn plaintext_to_tls(port: u16, stats: &Stats) {
    let what = "TLS port: plaintext request → closed";
    let Some(mut raw) = hostile_connect(port, None, stats, what) else {
        return;
    };
    if let Err(e) = raw.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n") {
        stats.anomaly(what, &format!("write failed: {e}"));
        return;
    }
    expect_close(
        &mut raw,
        stats,
        what,
        "plaintext to the TLS port: not closed",
    );
}

/// A TLS `ClientHello` to the plain port: `400` and close, or just close;
/// or `408` and close once the head timeout passes (the server only
/// judges a head once its empty line arrives, which never does).
fn tls_to_plain(port: u16, stats: &Stats) {
    let what = "HTTP port: TLS ClientHello → closed";
    let Some(mut raw) = hostile_connect(port, None, stats, what) else {
        return;
    };
    let result = client_hello().and_then(|hello| raw.write_all(hello));
    if let Err(e) = result {
        stats.anomaly(what, &format!("write failed: {e}"));
        return;
    }
    let reaction = read_until_close(&mut raw, REACTION_WAIT);
    if reaction.closed && matches!(reaction.status(), None | Some(400)) {
        stats.rejection(what);
    } else if reaction.closed && reaction.status() == Some(408) {
        stats.rejection("HTTP port: TLS ClientHello → 408 + close after the head timeout");
    } else {
        stats.anomaly(
            "TLS to the plain port: not 400 + close",
            &reaction.describe(),
        );
    }
}

// ---------------------------------------------------------------------------
// Scenarios

#[derive(Clone, Copy, Debug)]
enum Scenario {
    KeepAliveTls,
    KeepAlivePlain,
    NewConnTls,
    NewConnPlain,
    AbruptTls,
    AbruptPlain,
    SilentTls,
    SilentPlain,
    SlowLorisTls,
    SlowLorisPlain,
    OversizedTls,
    OversizedPlain,
    MalformedTls,
    MalformedPlain,
    PlaintextToTls,
    TlsToPlain,
    StreamResetTls,
    StreamResetPlain,
    UploadResetTls,
    UploadResetPlain,
}

impl Scenario {
    const ALL: [Scenario; 20] = [
        Scenario::KeepAliveTls,
        Scenario::KeepAlivePlain,
        Scenario::NewConnTls,
        Scenario::NewConnPlain,
        Scenario::AbruptTls,
        Scenario::AbruptPlain,
        Scenario::SilentTls,
        Scenario::SilentPlain,
        Scenario::SlowLorisTls,
        Scenario::SlowLorisPlain,
        Scenario::OversizedTls,
        Scenario::OversizedPlain,
        Scenario::MalformedTls,
        Scenario::MalformedPlain,
        Scenario::PlaintextToTls,
        Scenario::TlsToPlain,
        Scenario::StreamResetTls,
        Scenario::StreamResetPlain,
        Scenario::UploadResetTls,
        Scenario::UploadResetPlain,
    ];

    /// Relative frequency. The slow ones (silent, slow-loris, TLS to the
    /// plain port: a head timeout each, a couple of seconds) are rare, so
    /// most of the time goes to good traffic.
    fn weight(self) -> u64 {
        match self {
            Scenario::KeepAliveTls | Scenario::KeepAlivePlain => 300,
            Scenario::NewConnTls | Scenario::NewConnPlain => 200,
            Scenario::AbruptTls | Scenario::AbruptPlain => 40,
            Scenario::OversizedTls | Scenario::OversizedPlain => 15,
            Scenario::MalformedTls | Scenario::MalformedPlain => 15,
            Scenario::PlaintextToTls => 10,
            Scenario::StreamResetTls | Scenario::StreamResetPlain => 10,
            Scenario::UploadResetTls | Scenario::UploadResetPlain => 10,
            Scenario::TlsToPlain => 2,
            Scenario::SilentTls | Scenario::SilentPlain => 2,
            Scenario::SlowLorisTls | Scenario::SlowLorisPlain => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::KeepAliveTls => "good keep-alive (TLS)",
            Scenario::KeepAlivePlain => "good keep-alive (HTTP)",
            Scenario::NewConnTls => "good connection per request (TLS)",
            Scenario::NewConnPlain => "good connection per request (HTTP)",
            Scenario::AbruptTls => "abrupt close (TLS)",
            Scenario::AbruptPlain => "abrupt close (HTTP)",
            Scenario::SilentTls => "silent client (TLS)",
            Scenario::SilentPlain => "silent client (HTTP)",
            Scenario::SlowLorisTls => "slow-loris (TLS)",
            Scenario::SlowLorisPlain => "slow-loris (HTTP)",
            Scenario::OversizedTls => "oversized request (TLS)",
            Scenario::OversizedPlain => "oversized request (HTTP)",
            Scenario::MalformedTls => "malformed request (TLS)",
            Scenario::MalformedPlain => "malformed request (HTTP)",
            Scenario::PlaintextToTls => "plaintext to the TLS port",
            Scenario::TlsToPlain => "TLS to the HTTP port",
            Scenario::StreamResetTls => "stream read in part, then RST (TLS)",
            Scenario::StreamResetPlain => "stream read in part, then RST (HTTP)",
            Scenario::UploadResetTls => "upload cut by RST mid-body (TLS)",
            Scenario::UploadResetPlain => "upload cut by RST mid-body (HTTP)",
        }
    }

    fn pick(rng: &mut Rng) -> Scenario {
        let total: u64 = Scenario::ALL.iter().map(|s| s.weight()).sum();
        let mut x = rng.next() % total;
        for s in Scenario::ALL {
            if x < s.weight() {
                return s;
            }
            x -= s.weight();
        }
        Scenario::KeepAlivePlain
    }

    fn run(self, ctx: &Ctx, rng: &mut Rng) {
        let started = Instant::now();
        self.run_once(ctx, rng);
        ctx.stats.scenario(self.name(), started.elapsed());
    }

    fn run_once(self, ctx: &Ctx, rng: &mut Rng) {
        let (tls, plain, stats) = (ctx.tls_port, ctx.plain_port, &*ctx.stats);
        let trust = &*ctx.trust;
        match self {
            Scenario::KeepAliveTls => keep_alive(tls, true, trust, rng, stats),
            Scenario::KeepAlivePlain => keep_alive(plain, false, trust, rng, stats),
            Scenario::NewConnTls => new_connection_each(tls, true, trust, rng, stats),
            Scenario::NewConnPlain => new_connection_each(plain, false, trust, rng, stats),
            Scenario::AbruptTls => {
                let kind = Abrupt::TLS[rng.range(0, Abrupt::TLS.len() as u64 - 1) as usize];
                kind.run(tls, Some(&trust.get()), rng, stats);
            }
            Scenario::AbruptPlain => {
                let kind = Abrupt::PLAIN[rng.range(0, Abrupt::PLAIN.len() as u64 - 1) as usize];
                kind.run(plain, None, rng, stats);
            }
            Scenario::SilentTls => silent(tls, true, stats),
            Scenario::SilentPlain => silent(plain, false, stats),
            Scenario::SlowLorisTls => slow_loris(tls, Some(&trust.get()), stats),
            Scenario::SlowLorisPlain => slow_loris(plain, None, stats),
            Scenario::OversizedTls => oversized(tls, Some(&trust.get()), rng, stats),
            Scenario::OversizedPlain => oversized(plain, None, rng, stats),
            Scenario::MalformedTls => malformed(tls, Some(&trust.get()), rng, stats),
            Scenario::MalformedPlain => malformed(plain, None, rng, stats),
            Scenario::PlaintextToTls => plaintext_to_tls(tls, stats),
            Scenario::TlsToPlain => tls_to_plain(plain, stats),
            Scenario::StreamResetTls => stream_then_reset(tls, Some(&trust.get()), rng, stats),
            Scenario::StreamResetPlain => stream_then_reset(plain, None, rng, stats),
            Scenario::UploadResetTls => upload_then_reset(tls, Some(&trust.get()), rng, stats),
            Scenario::UploadResetPlain => upload_then_reset(plain, None, rng, stats),
        }
    }
}

/// What client threads share.
struct Ctx {
    tls_port: u16,
    plain_port: u16,
    stats: Arc<Stats>,
    trust: Arc<Trust>,
    stop: Arc<AtomicBool>,
}

fn client_loop(ctx: &Ctx, index: usize, deadline: Instant, max_requests: u64) {
    let mut rng = Rng::new(index as u64 + 1);
    while !ctx.stop.load(Ordering::Relaxed) {
        if Instant::now() >= deadline || ctx.stats.good_sent.load(Ordering::Relaxed) >= max_requests
        {
            ctx.stop.store(true, Ordering::Relaxed);
            break;
        }
        Scenario::pick(&mut rng).run(ctx, &mut rng);
    }
}

// ---------------------------------------------------------------------------
// Certificate reloads

/// The certificate a new TLS connection is served (its DER).
fn served_certificate(port: u16, trust: &Trust) -> Result<Vec<u8>, String> {
    let mut client =
        TlsClient::connect_with(port, &trust.get(), "localhost").map_err(|e| e.to_string())?;
    let der = client
        .ssl_stream()
        .ssl()
        .peer_certificate()
        .ok_or("no peer certificate")?
        .to_der()
        .map_err(|e| e.to_string())?;
    let _ = client.close();
    Ok(der)
}

/// Every `every`, replaces the HTTPS endpoint's certificate, alternating
/// between a freshly generated self-signed one and the test PKI's chain
/// (re-read from disk), and checks that a new connection gets it.
fn reload_loop(
    reloader: TlsReloader,
    port: u16,
    every: Duration,
    trust: &Trust,
    stats: &Stats,
    stop: &AtomicBool,
) -> Result<(), String> {
    let test_leaf = X509::from_pem(
        &std::fs::read(certs::server_pem()).map_err(|e| format!("reading server.pem: {e}"))?,
    )
    .and_then(|c| c.to_der())
    .map_err(|e| format!("server.pem: {e}"))?;
    let mut next = generate_self_signed()?;
    let mut current: Option<X509> = None;
    trust.set(&[next.1.clone()])?;
    let mut serve_self_signed = true;
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(50));
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        let expected = if serve_self_signed {
            let (config, cert) = std::mem::replace(&mut next, generate_self_signed()?);
            reloader.reload(config);
            let der = cert.to_der().map_err(|e| e.to_string())?;
            current = Some(cert);
            der
        } else {
            reloader.reload(test_pki_config()?);
            test_leaf.clone()
        };
        stats.reloads.fetch_add(1, Ordering::Relaxed);
        // Trust what is served now and the next one.
        let mut extra = vec![next.1.clone()];
        extra.extend(current.clone());
        trust.set(&extra)?;
        match served_certificate(port, trust) {
            Ok(der) if der == expected => {
                stats.reloads_verified.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => stats.anomaly(
                "reload: a new connection got the old certificate",
                if serve_self_signed {
                    "expected the self-signed one"
                } else {
                    "expected the test chain"
                },
            ),
            Err(e) => stats.anomaly("reload: cannot connect after a reload", &e),
        }
        serve_self_signed = !serve_self_signed;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Report

fn kib(k: u64) -> String {
    format!("{:.1} MiB", k as f64 / 1024.0)
}

fn table(out: &mut String, title: &str, header: &str, rows: &BTreeMap<&'static str, u64>) {
    let _ = writeln!(out, "\n### {title}\n");
    if rows.is_empty() {
        let _ = writeln!(out, "none");
        return;
    }
    let _ = writeln!(out, "| {header} | count |\n|---|---:|");
    for (kind, n) in rows {
        let _ = writeln!(out, "| {kind} | {n} |");
    }
}

struct Outcome {
    report: String,
    failures: Vec<String>,
}

fn report(
    args: &Args,
    elapsed: Duration,
    stats: &Stats,
    start: Resources,
    end: Resources,
    open_after: (usize, usize),
    (answered, completed): (u64, u64),
) -> Outcome {
    let sent = stats.good_sent.load(Ordering::Relaxed);
    let ok = stats.good_ok.load(Ordering::Relaxed);
    let good_errors = Stats::snapshot(&stats.good_errors);
    let rejections = Stats::snapshot(&stats.rejections);
    let anomalies = Stats::snapshot(&stats.anomalies);
    let reloads = stats.reloads.load(Ordering::Relaxed);
    let verified = stats.reloads_verified.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64().max(0.001);

    let mut failures = Vec::new();
    if sent != ok {
        failures.push(format!(
            "good requests sent {sent} != answered correctly {ok}"
        ));
    }
    if answered != completed || completed < ok {
        failures.push(format!(
            "middleware saw {answered} answers go out and {completed} exchanges complete \
             ({ok} good requests answered)"
        ));
    }
    let good_error_count: u64 = good_errors.values().sum();
    if good_error_count > 0 {
        failures.push(format!("{good_error_count} errors on good requests"));
    }
    let anomaly_count: u64 = anomalies.values().sum();
    if anomaly_count > 0 {
        failures.push(format!(
            "{anomaly_count} hostile clients did not get the expected reaction"
        ));
    }
    if reloads != verified {
        failures.push(format!(
            "{} of {reloads} certificate reloads not seen by a new connection",
            reloads - verified
        ));
    }
    let fds_flat = end.fds <= start.fds + FD_SLACK;
    if !fds_flat {
        failures.push(format!("open fds {} → {}", start.fds, end.fds));
    }
    let threads_flat = end.threads <= start.threads;
    if !threads_flat {
        failures.push(format!("threads {} → {}", start.threads, end.threads));
    }
    let rss_allowed = RSS_SLACK_KIB.max(start.rss_kib / 5);
    let rss_growth = end.rss_kib.saturating_sub(start.rss_kib);
    let rss_flat = rss_growth <= rss_allowed;
    if !rss_flat {
        failures.push(format!(
            "RSS grew by {} (allowed {})",
            kib(rss_growth),
            kib(rss_allowed)
        ));
    }
    if open_after != (0, 0) {
        failures.push(format!(
            "server connections still open after the clients stopped: HTTPS {}, HTTP {}",
            open_after.0, open_after.1
        ));
    }

    let mut out = String::new();
    let _ = writeln!(out, "## pistachio soak report\n");
    let _ = writeln!(out, "| | |\n|---|---:|");
    let _ = writeln!(
        out,
        "| traffic time | {:.1} s (asked {} s) |",
        secs,
        args.duration.as_secs()
    );
    let _ = writeln!(out, "| client threads | {} |", args.clients);
    let _ = writeln!(out, "| good requests sent | {sent} |");
    let _ = writeln!(out, "| good requests answered correctly | {ok} |");
    let _ = writeln!(
        out,
        "| exchanges seen by middleware (answered / complete) | {answered} / {completed} |"
    );
    let _ = writeln!(
        out,
        "| good requests per second | {:.0} |",
        ok as f64 / secs
    );
    let _ = writeln!(out, "| errors on good requests | {good_error_count} |");
    let _ = writeln!(
        out,
        "| hostile clients rejected as expected | {} |",
        rejections.values().sum::<u64>()
    );
    let _ = writeln!(
        out,
        "| hostile clients with an unexpected reaction | {anomaly_count} |"
    );
    let _ = writeln!(
        out,
        "| TLS certificate reloads (seen by a new connection) | {reloads} ({verified}) |"
    );
    let _ = writeln!(
        out,
        "| server connections open at the end (HTTPS, HTTP) | {}, {} |",
        open_after.0, open_after.1
    );

    let _ = writeln!(
        out,
        "\n### Resources (start: after warm-up; end: clients stopped, servers still up)\n"
    );
    let _ = writeln!(
        out,
        "| | start | end | change | flat |\n|---|---:|---:|---:|:---:|"
    );
    let yes = |b: bool| if b { "yes" } else { "NO" };
    let _ = writeln!(
        out,
        "| open fds | {} | {} | {:+} | {} |",
        start.fds,
        end.fds,
        end.fds as i64 - start.fds as i64,
        yes(fds_flat)
    );
    let _ = writeln!(
        out,
        "| threads | {} | {} | {:+} | {} |",
        start.threads,
        end.threads,
        end.threads as i64 - start.threads as i64,
        yes(threads_flat)
    );
    let _ = writeln!(
        out,
        "| RSS | {} | {} | {:+.1} MiB | {} |",
        kib(start.rss_kib),
        kib(end.rss_kib),
        (end.rss_kib as f64 - start.rss_kib as f64) / 1024.0,
        yes(rss_flat)
    );

    let _ = writeln!(
        out,
        "\n### Scenarios run\n\n| scenario | runs | mean time |\n|---|---:|---:|"
    );
    let micros = Stats::snapshot(&stats.scenario_micros);
    for (name, runs) in Stats::snapshot(&stats.scenarios) {
        let total = micros.get(name).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "| {name} | {runs} | {:.1} ms |",
            total as f64 / runs.max(1) as f64 / 1000.0
        );
    }
    table(
        &mut out,
        "Good requests answered correctly",
        "kind",
        &Stats::snapshot(&stats.good_by_kind),
    );
    table(&mut out, "Errors on good requests", "kind", &good_errors);
    table(&mut out, "Expected rejections", "kind", &rejections);
    table(
        &mut out,
        "Unexpected reactions to hostile clients",
        "kind",
        &anomalies,
    );

    let samples = stats.samples.lock().unwrap_or_else(|p| p.into_inner());
    if !samples.is_empty() {
        let _ = writeln!(out, "\n### First error of each kind\n");
        for s in samples.values() {
            let _ = writeln!(out, "- {s}");
        }
    }
    let _ = writeln!(
        out,
        "\n**Result: {}**",
        if failures.is_empty() {
            "PASS".to_owned()
        } else {
            format!("FAIL ({})", failures.join("; "))
        }
    );
    Outcome {
        report: out,
        failures,
    }
}

// ---------------------------------------------------------------------------

fn progress(started: Instant, stats: &Stats, servers: &Servers) {
    let r = resources();
    eprintln!(
        "soak: {:>5.0} s  good {}/{}  good errors {}  rejected {}  unexpected {}  reloads {}  \
         open conns {}+{}  fds {}  rss {}  threads {}",
        started.elapsed().as_secs_f64(),
        stats.good_ok.load(Ordering::Relaxed),
        stats.good_sent.load(Ordering::Relaxed),
        Stats::total(&stats.good_errors),
        Stats::total(&stats.rejections),
        Stats::total(&stats.anomalies),
        stats.reloads.load(Ordering::Relaxed),
        servers.tls.connections(),
        servers.plain.connections(),
        r.fds,
        kib(r.rss_kib),
        r.threads,
    );
}

fn run(args: &Args) -> Result<Outcome, String> {
    let servers = start_servers()?;
    let stats = Arc::new(Stats::default());
    let trust = Arc::new(Trust::new(&[])?);
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = Ctx {
        tls_port: servers.tls_port,
        plain_port: servers.plain_port,
        stats: Arc::clone(&stats),
        trust: Arc::clone(&trust),
        stop: Arc::clone(&stop),
    };
    let reloader = servers
        .tls
        .tls_reloader()
        .ok_or("the HTTPS endpoint has no TLS reloader")?;
    eprintln!(
        "soak: HTTPS on 127.0.0.1:{}, HTTP on 127.0.0.1:{}; {} clients for {} s",
        servers.tls_port,
        servers.plain_port,
        args.clients,
        args.duration.as_secs()
    );

    // Warm-up: every scenario (and every abrupt kind) once, and a reload
    // back to the same certificate, before measuring.
    let mut rng = Rng::new(0);
    for scenario in Scenario::ALL {
        scenario.run(&ctx, &mut rng);
    }
    for kind in Abrupt::TLS {
        kind.run(servers.tls_port, Some(&trust.get()), &mut rng, &stats);
    }
    for kind in Abrupt::PLAIN {
        kind.run(servers.plain_port, None, &mut rng, &stats);
    }
    // The threaded paths (stream producers, upload readers, tokio tasks)
    // from all client threads at once, at their largest sizes: the
    // allocator's per-thread arenas and the buffers reach their working
    // set before the start measurement, which then tells leaks from it.
    thread::scope(|scope| {
        for i in 0..args.clients {
            let ctx = &ctx;
            let (port, tls) = if i % 2 == 0 {
                (servers.tls_port, true)
            } else {
                (servers.plain_port, false)
            };
            scope.spawn(move || {
                let mut rng = Rng::new(1000 + i as u64);
                let Some(mut client) = connect_good(port, tls, &ctx.trust, &ctx.stats) else {
                    return;
                };
                for _ in 0..4 {
                    let reqs = [
                        Good::Tokio(1),
                        Good::Stream {
                            chunks: 64,
                            size: 8 * 1024,
                        },
                        Good::Upload {
                            body: rng.bytes(400 * 1024),
                            piece: 32 * 1024,
                        },
                    ];
                    if !exchange(&mut client, &reqs, false, &ctx.stats) {
                        return;
                    }
                }
                finish_good(client, &mut rng, &ctx.stats);
            });
        }
    });
    let (_, warm_cert) = generate_self_signed()?;
    trust.set(&[warm_cert])?;
    reloader.reload(test_pki_config()?);
    served_certificate(servers.tls_port, &trust)
        .map_err(|e| format!("warm-up connection after a reload: {e}"))?;
    trust.set(&[])?;
    let start = settle(&servers);
    eprintln!(
        "soak: warm-up done: fds {}, RSS {}, threads {}",
        start.fds,
        kib(start.rss_kib),
        start.threads
    );

    let traffic_started = Instant::now();
    let deadline = traffic_started + args.duration;
    let ctx = Arc::new(ctx);
    let mut clients = Vec::new();
    for i in 0..args.clients {
        let ctx = Arc::clone(&ctx);
        let max = args.max_requests;
        clients.push(
            thread::Builder::new()
                .name(format!("soak-client-{i}"))
                .spawn(move || client_loop(&ctx, i, deadline, max))
                .map_err(|e| format!("spawning a client: {e}"))?,
        );
    }
    let reload_thread = {
        let (trust, stats, stop) = (Arc::clone(&trust), Arc::clone(&stats), Arc::clone(&stop));
        let (port, every) = (servers.tls_port, args.reload_every);
        thread::Builder::new()
            .name("soak-reload".into())
            .spawn(move || reload_loop(reloader, port, every, &trust, &stats, &stop))
            .map_err(|e| format!("spawning the reloader: {e}"))?
    };

    let mut last_progress = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(100));
        if Instant::now() >= deadline {
            stop.store(true, Ordering::Relaxed);
        }
        if last_progress.elapsed() >= Duration::from_secs(10) {
            last_progress = Instant::now();
            progress(traffic_started, &stats, &servers);
        }
    }
    for client in clients {
        if client.join().is_err() {
            stats.good_error("client thread panicked", "see above");
        }
    }
    let elapsed = traffic_started.elapsed();
    match reload_thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("certificate reloads: {e}")),
        Err(_) => return Err("the reload thread panicked".into()),
    }
    drop(ctx);
    progress(traffic_started, &stats, &servers);

    let end = settle(&servers);
    let open_after = (servers.tls.connections(), servers.plain.connections());
    let ledger = (
        servers.ledger.answered.load(Ordering::Relaxed),
        servers.ledger.completed.load(Ordering::Relaxed),
    );
    let outcome = report(args, elapsed, &stats, start, end, open_after, ledger);

    let Servers {
        mut tls,
        mut plain,
        responder,
        runtime,
        ..
    } = servers;
    let cut = tls
        .shutdown_graceful(Duration::from_secs(5))
        .connections_cut
        + plain
            .shutdown_graceful(Duration::from_secs(5))
            .connections_cut;
    drop((tls, plain));
    runtime.shutdown_timeout(Duration::from_secs(5));
    if responder.join().is_err() {
        return Err("the /slow responder panicked".into());
    }
    if cut > 0 {
        eprintln!("soak: shutdown cut {cut} connections");
    }
    Ok(outcome)
}

/// Waits (bounded) for the servers to have no connection open, lets the
/// workers finish closing, then measures.
fn settle(servers: &Servers) -> Resources {
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until && servers.tls.connections() + servers.plain.connections() > 0 {
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(300));
    resources()
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("soak: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error"))
        .try_init();

    // The watchdog: whatever hangs, the process ends.
    let hard_deadline = args.duration + WATCHDOG_GRACE;
    let _ = thread::Builder::new()
        .name("soak-watchdog".into())
        .spawn(move || {
            thread::sleep(hard_deadline);
            eprintln!("soak: FAIL: still running after {hard_deadline:?}; giving up");
            std::process::exit(3);
        });

    match run(&args) {
        Ok(outcome) => {
            println!("{}", outcome.report);
            if outcome.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("soak: FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}
