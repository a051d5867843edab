//! Run with `cargo run -p pistachio-http --example http_server -- --self-signed`
//!
//! The HTTP layer on its own, without the router (Pistache's `http_server`
//! example):
//!
//! * `GET /` — a text greeting;
//! * `POST /echo` — answers with the request body (Content-Length or chunked);
//! * `GET /stream` — a chunked response written in several pieces from
//!   another thread;
//! * `GET /static/FILE` — a file from `--static-dir` (default: this
//!   example's `static/` folder) with `serve_file`;
//! * `GET /timeout` — a handler that never answers in time: `timeout_after`
//!   makes the server answer `408`;
//! * an unknown path — `404`; a known path with the wrong method — `405`
//!   with an `Allow` header.
//!
//! Every route answers over HTTP/2 too: `curl --http2-prior-knowledge
//! http://127.0.0.1:9080/` (h2c), or `curl --http2` over TLS (ALPN `h2`).
//!
//! Flags: `--addr ADDR` (default `127.0.0.1:9080`), `--threads N`,
//! `--tls-cert FILE --tls-key FILE`, `--self-signed`, `--static-dir DIR`.

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use pistachio_http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use pistachio_http::{
    Endpoint, Handler, Method, Options, Request, ResponseWriter, StatusCode, TlsConfig,
};

struct Args {
    addr: String,
    threads: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    self_signed: bool,
    static_dir: PathBuf,
}

const USAGE: &str = "usage: http_server [--addr ADDR] [--threads N] \
                     [--tls-cert FILE --tls-key FILE | --self-signed] [--static-dir DIR]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:9080".into(),
        threads: None,
        tls_cert: None,
        tls_key: None,
        self_signed: false,
        static_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/static"),
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
                args.threads = Some(
                    v.parse()
                        .map_err(|_| format!("--threads: not a number: {v}"))?,
                );
            }
            "--tls-cert" => args.tls_cert = Some(value()?.into()),
            "--tls-key" => args.tls_key = Some(value()?.into()),
            "--self-signed" => args.self_signed = true,
            "--static-dir" => args.static_dir = value()?.into(),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    Ok(args)
}

struct Service {
    static_dir: PathBuf,
}

/// The methods each known path accepts (for 405 + Allow).
fn allowed(path: &str) -> Option<&'static str> {
    match path {
        "/" | "/stream" | "/timeout" => Some("GET, HEAD"),
        "/echo" => Some("POST"),
        p if p.starts_with("/static/") => Some("GET, HEAD"),
        _ => None,
    }
}

/// `FILE` of `/static/FILE` as a path under the static directory, refusing
/// anything that could leave it (`..`, absolute paths).
fn static_path(root: &Path, rest: &str) -> Option<PathBuf> {
    let relative = Path::new(rest);
    let safe = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    (safe && !rest.is_empty()).then(|| root.join(relative))
}

impl Handler for Service {
    fn on_request(&self, req: Request, mut resp: ResponseWriter) {
        let path = req.decoded_path().into_owned();
        let method = req.method().clone();
        let get = method == Method::GET || method == Method::HEAD;
        match (path.as_str(), get, method == Method::POST) {
            ("/", true, _) => {
                resp.set_mime("text/plain; charset=utf-8");
                resp.send(StatusCode::OK, "Welcome to pistachio\n");
            }
            ("/echo", _, true) => {
                if let Some(ct) = req.content_type() {
                    resp.set_mime(ct);
                }
                resp.send(StatusCode::OK, req.body());
            }
            ("/stream", true, _) => {
                std::thread::spawn(move || {
                    let mut stream = resp.stream(StatusCode::OK);
                    for i in 1..=5 {
                        stream.write(format!("piece {i} of 5\n"));
                        stream.flush();
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    stream.end();
                });
            }
            ("/timeout", true, _) => {
                // Promise an answer within 500 ms, then never give one in time.
                resp.timeout_after(Duration::from_millis(500));
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(2));
                    resp.send(StatusCode::OK, "too late");
                });
            }
            (p, true, _) if p.starts_with("/static/") => {
                match static_path(&self.static_dir, &p["/static/".len()..]) {
                    // serve_file answers 404/403 itself when it cannot.
                    Some(file) => {
                        let _ = resp.serve_file(file);
                    }
                    None => resp.send(StatusCode::NOT_FOUND, "Not Found\n"),
                }
            }
            (p, _, _) => match allowed(p) {
                Some(methods) => {
                    resp.headers_mut()
                        .insert(ALLOW, HeaderValue::from_static(methods));
                    resp.send(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
                }
                None => {
                    resp.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    resp.send(StatusCode::NOT_FOUND, "Not Found\n");
                }
            },
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut options = Options::default();
    if let Some(n) = args.threads {
        options = options.threads(n);
    }
    let mut cacert = None;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        options = options.tls(TlsConfig::from_pem_files(cert, key)?);
    } else if args.self_signed {
        let (tls, generated) = TlsConfig::self_signed(&["localhost", "127.0.0.1", "::1"])?;
        let path = std::env::temp_dir().join(format!("pistachio-http-{}.pem", std::process::id()));
        std::fs::write(&path, &generated.cert_pem)?;
        cacert = Some(path);
        options = options.tls(tls);
    }
    let mut endpoint = Endpoint::bind(args.addr.as_str(), options)?;
    let addr = endpoint.local_addr();
    let scheme = if endpoint.is_tls() { "https" } else { "http" };
    let host = if addr.ip().is_loopback() && addr.is_ipv4() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    println!(
        "http_server listening on {scheme}://{host}/ (static files from {})",
        args.static_dir.display()
    );
    let curl = match &cacert {
        Some(pem) => format!("curl --cacert {}", pem.display()),
        None if args.tls_cert.is_some() => "curl --cacert YOUR_CA.pem".to_owned(),
        None => "curl".to_owned(),
    };
    println!("try: {curl} {scheme}://{host}/static/index.html");
    println!("     {curl} -N {scheme}://{host}/stream");

    let stop = endpoint.shutdown_handle();
    ctrlc::set_handler(move || stop.shutdown())?;
    let report = endpoint.serve(Service {
        static_dir: args.static_dir,
    })?;
    if let Some(pem) = cacert {
        let _ = std::fs::remove_file(pem);
    }
    println!(
        "graceful shutdown took {:?}: {} connections drained, {} cut",
        report.elapsed, report.connections_drained, report.connections_cut
    );
    println!("http_server stopped");
    Ok(())
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
            eprintln!("http_server: {e}");
            ExitCode::FAILURE
        }
    }
}
