//! Run with `cargo run --release -p pistachio-rest --example rest_server`
//!
//! A small but real service: an in-memory key-value store shared by every
//! worker, over HTTPS on a self-signed certificate by default.
//!
//! * `GET /healthz` → `200 ok`;
//! * `PUT /v1/kv/:key` stores the request body (any bytes) and its
//!   `Content-Type`: `201` when new, `204` when replaced;
//! * `GET /v1/kv/:key` → `200` with exactly the stored bytes and type, `404`
//!   if absent;
//! * `DELETE /v1/kv/:key` → `204`, `404` if absent;
//! * `GET /v1/kv[?prefix=P]` → `200` `{"keys": [...]}`, sorted;
//! * `GET /openapi.json` → the OpenAPI 3 document of all of the above.
//!
//! Clients may speak HTTP/2 (`curl --http2`, ALPN `h2`) or HTTP/1.1; with
//! `--no-tls`, HTTP/2 with prior knowledge (`curl --http2-prior-knowledge`).
//!
//! Flags:
//! * `--addr ADDR` — listen address (default `127.0.0.1:9443`; port 0 picks one);
//! * `--threads N` — worker threads (default: number of CPUs);
//! * `--tls-cert FILE --tls-key FILE` — serve HTTPS with this PEM chain and
//!   key; with neither, HTTPS on a certificate generated at start, whose PEM
//!   is written to a temporary file named in a ready `curl --cacert` line;
//! * `--no-tls` — plain HTTP;
//! * `--max-value-size BYTES` — largest value (request body) accepted,
//!   larger gets `413` (default 4 MiB).
//!
//! Every exchange is written to stderr as one access-log line, by a
//! [`Middleware`](pistachio_rest::Middleware) installed endpoint-wide, so
//! that the router's `404`/`405` and the HTTP layer's own `400`/`408`/`413`/
//! `431` answers are logged too:
//!
//! ```text
//! access: 127.0.0.1:50312 "PUT /v1/kv/greeting HTTP/1.1" 201 0 0.2ms keep-alive completed
//! ```
//!
//! (client, request line (`-` for a request that could not be parsed),
//! status, body bytes sent, time until the last byte was handed to the
//! transport, whether the connection stays open, how the exchange ended).
//! Other logs go through `env_logger` (`RUST_LOG=debug`). Ctrl-C or
//! SIGTERM shuts the server down cleanly.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use pistachio_rest::header::{HeaderValue, CONTENT_TYPE};
use pistachio_rest::serde_json::json;
use pistachio_rest::{
    bind, Description, End, Endpoint, Exchange, HttpError, Middleware, Options, RestRequest,
    RestResponse, Router, Schema, StatusCode, TlsConfig,
};

const USAGE: &str = "usage: rest_server [--addr ADDR] [--threads N] \
                     [--tls-cert FILE --tls-key FILE | --no-tls] [--max-value-size BYTES]";

/// Content type of values stored without one.
const DEFAULT_TYPE: &str = "application/octet-stream";

struct Args {
    addr: String,
    threads: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    no_tls: bool,
    max_value_size: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:9443".into(),
        threads: None,
        tls_cert: None,
        tls_key: None,
        no_tls: false,
        max_value_size: 4 * 1024 * 1024,
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
            "--no-tls" => args.no_tls = true,
            "--max-value-size" => {
                let v = value()?;
                args.max_value_size = v
                    .parse()
                    .map_err(|_| format!("--max-value-size: not a number: {v}"))?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    if args.no_tls && args.tls_cert.is_some() {
        return Err("--no-tls and --tls-cert exclude each other".into());
    }
    Ok(args)
}

/// A stored value and the media type it was stored with.
struct Value {
    bytes: Vec<u8>,
    content_type: HeaderValue,
}

/// The key-value store, shared by every worker.
#[derive(Default)]
struct Store {
    values: RwLock<BTreeMap<String, Value>>,
}

impl Store {
    fn key(req: &RestRequest) -> Result<String, HttpError> {
        req.param("key")
    }

    fn put(&self, req: RestRequest, resp: RestResponse) -> Result<(), HttpError> {
        let key = Store::key(&req)?;
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static(DEFAULT_TYPE));
        let bytes = req.into_http().into_body();
        let value = Value {
            bytes,
            content_type,
        };
        let replaced = self
            .values
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, value)
            .is_some();
        let status = if replaced {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::CREATED
        };
        resp.send(status, "");
        Ok(())
    }

    fn get(&self, req: RestRequest, mut resp: RestResponse) -> Result<(), HttpError> {
        let key = Store::key(&req)?;
        let values = self.values.read().unwrap_or_else(|p| p.into_inner());
        let value = values
            .get(&key)
            .ok_or_else(|| HttpError::not_found(format!("no key {key:?}")))?;
        resp.headers_mut()
            .insert(CONTENT_TYPE, value.content_type.clone());
        resp.send(StatusCode::OK, &value.bytes);
        Ok(())
    }

    fn delete(&self, req: RestRequest, resp: RestResponse) -> Result<(), HttpError> {
        let key = Store::key(&req)?;
        let removed = self
            .values
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        if removed.is_none() {
            return Err(HttpError::not_found(format!("no key {key:?}")));
        }
        resp.send(StatusCode::NO_CONTENT, "");
        Ok(())
    }

    fn list(&self, req: RestRequest, resp: RestResponse) {
        let prefix = req.query("prefix").unwrap_or_default();
        let values = self.values.read().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<&String> = values
            .range(prefix.to_string()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&*prefix))
            .collect();
        resp.json(StatusCode::OK, &json!({ "keys": keys }));
    }
}

/// One line per exchange on stderr.
struct AccessLog;

impl Middleware for AccessLog {
    fn on_complete(&self, ex: &Exchange<'_>) {
        let req = ex.request;
        let line = format!(
            "access: {} \"{} {} {:?}\" {} {} {:.1}ms {} {}\n",
            req.peer_addr(),
            req.method().map_or("-", |m| m.as_str()),
            req.target().unwrap_or("-"),
            req.version(),
            ex.status.as_u16(),
            ex.body_bytes,
            ex.total.as_secs_f64() * 1000.0,
            if ex.keep_alive { "keep-alive" } else { "close" },
            match ex.end {
                End::Completed => "completed",
                End::ClientGone => "client-gone",
                End::Cut => "cut",
                _ => "other",
            },
        );
        // One write per line, so that lines of different workers do not mix.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// The API: routes, handlers and their documentation in one place.
fn api(store: &Arc<Store>, server_url: &str) -> Description {
    let mut api = Description::new("pistachio key-value store", "1.0.0");
    api.description(
        "An in-memory key-value store: values are any bytes, kept with their media type.",
    )
    .server(server_url, Some("this server"));
    api.get("/healthz")
        .summary("Liveness probe")
        .tag("health")
        .response_body(
            StatusCode::OK,
            "The server is up",
            "text/plain",
            Schema::string(),
        )
        .handler(|_req: RestRequest, resp: RestResponse| resp.send(StatusCode::OK, "ok"));
    api.get("/v1/kv")
        .summary("List keys")
        .tag("kv")
        .query_param(
            "prefix",
            Schema::string(),
            "Only keys starting with this",
            false,
        )
        .response_body(
            StatusCode::OK,
            "The keys, sorted",
            "application/json",
            Schema::object(&[("keys", Schema::array(Schema::string()))]),
        )
        .handler(bind(store, Store::list));
    api.put("/v1/kv/:key")
        .summary("Store a value")
        .description("Stores the request body as is, with its `Content-Type`.")
        .tag("kv")
        .path_param("key", Schema::string(), "The key")
        .request_body(&["*/*"], Schema::binary(), true)
        .response(StatusCode::CREATED, "Stored under a new key")
        .response(StatusCode::NO_CONTENT, "Replaced the previous value")
        .response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The value is larger than the limit",
        )
        .handler(bind(store, Store::put));
    api.get("/v1/kv/:key")
        .summary("Fetch a value")
        .tag("kv")
        .path_param("key", Schema::string(), "The key")
        .response_body(
            StatusCode::OK,
            "The stored bytes, with the Content-Type they were stored with",
            "*/*",
            Schema::binary(),
        )
        .response_body(
            StatusCode::NOT_FOUND,
            "No such key",
            "text/plain",
            Schema::string(),
        )
        .handler(bind(store, Store::get));
    api.delete("/v1/kv/:key")
        .summary("Delete a value")
        .tag("kv")
        .path_param("key", Schema::string(), "The key")
        .response(StatusCode::NO_CONTENT, "Deleted")
        .response_body(
            StatusCode::NOT_FOUND,
            "No such key",
            "text/plain",
            Schema::string(),
        )
        .handler(bind(store, Store::delete));
    api
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut options = Options::default()
        .max_request_size(args.max_value_size)
        .middleware(AccessLog);
    if let Some(n) = args.threads {
        options = options.threads(n);
    }
    let mut cacert = None;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        options = options.tls(TlsConfig::from_pem_files(cert, key)?);
    } else if !args.no_tls {
        let (tls, generated) = TlsConfig::self_signed(&["localhost", "127.0.0.1", "::1"])?;
        let path = std::env::temp_dir().join(format!("pistachio-rest-{}.pem", std::process::id()));
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
    let base = format!("{scheme}://{host}");

    let store = Arc::new(Store::default());
    let router = Router::from_description(api(&store, &base))?;

    println!("rest_server listening on {base}/");
    let curl = match (&cacert, endpoint.is_tls()) {
        (Some(pem), _) => format!("curl --cacert {}", pem.display()),
        (None, true) => "curl --cacert YOUR_CA.pem".to_owned(),
        (None, false) => "curl".to_owned(),
    };
    println!("try: {curl} {base}/healthz");
    println!("     {curl} -X PUT --data-binary 'hello' {base}/v1/kv/greeting");
    println!("     {curl} {base}/v1/kv/greeting");

    let stop = endpoint.shutdown_handle();
    ctrlc::set_handler(move || stop.shutdown())?;
    let report = endpoint.serve(router)?;
    if let Some(pem) = cacert {
        let _ = std::fs::remove_file(pem);
    }
    println!(
        "graceful shutdown took {:?}: {} connections drained, {} cut",
        report.elapsed, report.connections_drained, report.connections_cut
    );
    println!("rest_server stopped");
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
            eprintln!("rest_server: {e}");
            ExitCode::FAILURE
        }
    }
}
