//! Run with `cargo run --release -p pistachio-rest --example hello_server -- --self-signed`
//!
//! Answers `GET /big` with a 4 MiB file (served with `serve_file`, as
//! Pistache's `Http::serveFile`; the file is written to the temporary
//! directory at start and removed at exit), `/healthz` with `200 ok`
//! (liveness), `/readyz` with `200 ready`, or `503 draining` once a
//! shutdown began (readiness), and every other request with
//! `200 Hello, World!` (Pistache's hello example).
//!
//! HTTP/2 is served as well (ALPN `h2` over TLS, h2c with prior knowledge
//! over plain HTTP), e.g. for `h2load` (see `tests/bench/h2load.sh`).
//!
//! Flags:
//! * `--addr ADDR` — listen address (default `127.0.0.1:9080`); ignored
//!   when systemd passes a listening socket (socket activation);
//! * `--threads N` — worker threads (default: number of CPUs);
//! * `--tls-cert FILE --tls-key FILE` — serve HTTPS with this PEM chain and key;
//! * `--self-signed` — serve HTTPS on a certificate generated at start; its
//!   PEM is written to a file and a ready `curl --cacert` line is printed;
//! * `--per-worker-listeners` — each worker accepts on its own
//!   `SO_REUSEPORT` socket instead of being handed connections by the accept
//!   thread;
//! * `--reuse-port` — bind with `SO_REUSEPORT`, so that a new process can
//!   start on the port while this one still serves (rolling restart);
//! * `--drain-grace MS` — in the graceful shutdown, keep-alive connections
//!   are still served this long (default 1000; see `Options::drain_grace`);
//! * `--drain-delay MS` — after SIGTERM, keep serving this long with
//!   `/readyz` answering `503` before the shutdown begins (default 0; see
//!   `Options::drain_delay`);
//! * `--writer` — answer every request through its `ResponseWriter`
//!   (Pistache's way) instead of returning the answers that need no writer
//!   from `Handler::respond` (for comparing the two).
//!
//! Ctrl-C or SIGTERM shuts the server down cleanly.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use pistachio_rest::{
    Endpoint, Exchange, Handler, Hooks, ListenerOptions, Middleware, Options, Request, Response,
    ResponseWriter, ShutdownHandle, StatusCode, TlsConfig,
};

/// `--trivial-middleware` (for measuring what middleware costs): counts
/// the successful exchanges.
#[derive(Default)]
struct CountOk(AtomicU64);

impl Middleware for CountOk {
    fn on_complete(&self, exchange: &Exchange<'_>) {
        if exchange.status.is_success() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn hooks(&self) -> Hooks {
        Hooks::ON_COMPLETE
    }
}

/// The example's handler: `/big` is a file, sent through the writer;
/// every other answer is returned whole from `respond` (or, with
/// `--writer` or behind middleware, sent through the writer too).
struct Hello {
    big: PathBuf,
    stopping: ShutdownHandle,
    writer_only: bool,
}

impl Hello {
    /// The answer to `req`, unless it needs the writer (`/big`).
    fn answer(&self, req: &Request) -> Option<Response> {
        Some(match req.path() {
            "/big" => return None,
            "/healthz" => Response::ok("ok"),
            "/readyz" if self.stopping.is_draining() => {
                Response::new(StatusCode::SERVICE_UNAVAILABLE, "draining")
            }
            "/readyz" => Response::ok("ready"),
            _ => Response::ok("Hello, World!"),
        })
    }
}

impl Handler for Hello {
    fn on_request(&self, req: Request, resp: ResponseWriter) {
        match self.answer(&req) {
            Some(answer) => resp.send_response(answer),
            None => {
                // On failure serve_file has answered 404/403/500 already.
                let _ = resp.serve_file(&self.big);
            }
        }
    }

    fn respond(&self, req: &Request) -> Option<Response> {
        self.answer(req)
    }

    fn responds(&self) -> bool {
        !self.writer_only
    }
}

struct Args {
    addr: String,
    threads: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    self_signed: bool,
    per_worker_listeners: bool,
    reuse_port: bool,
    drain_grace: Duration,
    drain_delay: Duration,
    trivial_middleware: bool,
    writer: bool,
}

/// Size of the `/big` body.
const BIG_SIZE: usize = 4 * 1024 * 1024;

const USAGE: &str = "usage: hello_server [--addr ADDR] [--threads N] \
                     [--tls-cert FILE --tls-key FILE | --self-signed] \
                     [--per-worker-listeners] [--reuse-port] \
                     [--drain-grace MS] [--drain-delay MS] [--writer]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:9080".into(),
        threads: None,
        tls_cert: None,
        tls_key: None,
        self_signed: false,
        per_worker_listeners: false,
        reuse_port: false,
        drain_grace: Duration::from_secs(1),
        drain_delay: Duration::ZERO,
        trivial_middleware: false,
        writer: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--addr" => args.addr = value()?,
            "--threads" => {
                let v = value()?;
                let n = v
                    .parse()
                    .map_err(|_| format!("--threads: not a number: {v}"))?;
                args.threads = Some(n);
            }
            "--tls-cert" => args.tls_cert = Some(value()?.into()),
            "--tls-key" => args.tls_key = Some(value()?.into()),
            "--self-signed" => args.self_signed = true,
            "--per-worker-listeners" => args.per_worker_listeners = true,
            "--reuse-port" => args.reuse_port = true,
            "--writer" => args.writer = true,
            flag @ ("--drain-grace" | "--drain-delay") => {
                let v = value()?;
                let ms = v
                    .parse()
                    .map_err(|_| format!("{flag}: not a number of milliseconds: {v}"))?;
                if flag == "--drain-grace" {
                    args.drain_grace = Duration::from_millis(ms);
                } else {
                    args.drain_delay = Duration::from_millis(ms);
                }
            }
            // Hidden: for measuring the cost of a middleware.
            "--trivial-middleware" => args.trivial_middleware = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    if args.self_signed && args.tls_cert.is_some() {
        return Err("--self-signed and --tls-cert exclude each other".into());
    }
    Ok(args)
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut listener = ListenerOptions::default();
    listener.reuse_port = args.reuse_port;
    let mut options = Options::default()
        .listener(listener)
        .per_worker_listeners(args.per_worker_listeners)
        .drain_grace(args.drain_grace)
        .drain_delay(args.drain_delay);
    if let Some(n) = args.threads {
        options = options.threads(n);
    }
    if args.trivial_middleware {
        options = options.middleware(CountOk::default());
    }
    let mut cacert = None;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        options = options.tls(TlsConfig::from_pem_files(cert, key)?);
    } else if args.self_signed {
        let (tls, generated) = TlsConfig::self_signed(&["localhost", "127.0.0.1", "::1"])?;
        let path = std::env::temp_dir().join(format!("pistachio-hello-{}.pem", std::process::id()));
        std::fs::write(&path, &generated.cert_pem)?;
        cacert = Some(path);
        options = options.tls(tls);
    }
    // A socket passed by systemd (socket activation) is served instead.
    let mut endpoint = Endpoint::bind_or_inherit(args.addr.as_str(), options)?;
    let addr = endpoint.local_addr();
    let scheme = if endpoint.is_tls() { "https" } else { "http" };
    let host = if addr.ip().is_loopback() && addr.is_ipv4() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    println!("hello_server listening on {scheme}://{host}/");
    match &cacert {
        Some(pem) => println!("try: curl --cacert {} {scheme}://{host}/", pem.display()),
        None if args.tls_cert.is_some() => {
            println!("try: curl --cacert YOUR_CA.pem {scheme}://{host}/")
        }
        None => println!("try: curl {scheme}://{host}/"),
    }

    let big = std::env::temp_dir().join(format!("pistachio-hello-big-{}.bin", std::process::id()));
    write_big_file(&big)?;

    let stop = endpoint.shutdown_handle();
    ctrlc::set_handler(move || stop.shutdown())?;
    let served = endpoint.serve(Hello {
        big: big.clone(),
        stopping: endpoint.shutdown_handle(),
        writer_only: args.writer,
    });
    let _ = std::fs::remove_file(&big);
    if let Some(pem) = cacert {
        let _ = std::fs::remove_file(pem);
    }
    let report = served?;
    println!(
        "graceful shutdown took {:?}: {} connections drained, {} cut",
        report.elapsed, report.connections_drained, report.connections_cut
    );
    println!("hello_server stopped");
    Ok(())
}

/// Writes the `/big` body: [`BIG_SIZE`] bytes of a repeating text line.
fn write_big_file(path: &Path) -> std::io::Result<()> {
    let line = b"pistachio hello_server /big: 4 MiB of this line, repeated.\n";
    let mut body = Vec::with_capacity(BIG_SIZE);
    while body.len() < BIG_SIZE {
        let n = line.len().min(BIG_SIZE - body.len());
        body.extend_from_slice(&line[..n]);
    }
    std::fs::write(path, body)
}

fn main() -> ExitCode {
    env_logger::init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello_server: {e}");
            ExitCode::FAILURE
        }
    }
}
