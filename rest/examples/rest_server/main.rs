//! Run with `cargo run --release -p pistachio-rest --features compression,static-files,metrics --example rest_server`
//!
//! A key-value service a team can run: values are kept on disk (they
//! survive restarts and crashes), streamed in and out (a 1 GiB value costs
//! no more memory than a small one), versioned with entity tags for
//! optimistic concurrency, and guarded by a bearer token; over HTTPS on a
//! self-signed certificate by default.
//!
//! * `GET /healthz` → `200 ok`; `GET /readyz` → `200 ready`, `503` once a
//!   shutdown began (a listening socket passed by systemd is served
//!   instead of `--addr`);
//! * `PUT /v1/kv/:key` stores the request body (any bytes) and its
//!   `Content-Type`: `201` when new, `204` when replaced, with the value's
//!   `ETag`. `If-Match: "tag"` replaces only that version, `If-None-Match:
//!   *` only creates: `412` otherwise. Acknowledged means on disk;
//! * `GET /v1/kv/:key` → `200` with exactly the stored bytes, type and
//!   `ETag`, `304` for a matching `If-None-Match`, `404` if absent;
//! * `DELETE /v1/kv/:key` → `204`, `404` if absent, `412` if `If-Match`
//!   does not match;
//! * `GET /v1/kv[?prefix=P][&limit=N][&after=KEY]` → `200` `{"keys": [...]}`,
//!   sorted, at most `limit` (default 1000) keys after `after`; with
//!   `"next": KEY` when more follow (pass it as the next `after`);
//! * `GET /metrics` → the exchanges (by method, route template and status),
//!   their durations and the transport's figures, in the Prometheus text
//!   format;
//! * `GET /static/PATH` (with `--static DIR`) → the files of `DIR`, with
//!   validators, conditional and range requests;
//! * `GET /openapi.json` → the OpenAPI 3 document of all of the above.
//!
//! Clients may speak HTTP/2 (`curl --http2`, ALPN `h2`) or HTTP/1.1; with
//! `--no-tls`, HTTP/2 with prior knowledge (`curl --http2-prior-knowledge`).
//!
//! Answers are compressed (zstd, br or gzip) as `Accept-Encoding` asks;
//! values over 64 KiB, kept in files, and static files go out as stored
//! (file answers are never encoded). An encoded answer's `ETag` is weak.
//!
//! Flags:
//! * `--addr ADDR` — listen address (default `127.0.0.1:9443`; port 0 picks one);
//! * `--threads N` — worker threads (default: number of CPUs);
//! * `--tls-cert FILE --tls-key FILE` — serve HTTPS with this PEM chain and
//!   key; with neither, HTTPS on a certificate generated at start, whose PEM
//!   is written to a temporary file named in a ready `curl --cacert` line;
//! * `--no-tls` — plain HTTP;
//! * `--data-dir DIR` — where the values live (default `./pistachio-data`);
//!   one server per directory;
//! * `--max-value-size BYTES` — largest value accepted, larger gets `413`
//!   (default 1 GiB), refused from its `Content-Length` before any of it is
//!   read;
//! * `--token TOKEN` (or the environment variable `PISTACHIO_TOKEN`) —
//!   every `/v1/` request needs `Authorization: Bearer TOKEN`, else `401`
//!   before its body is read; `/healthz`, `/metrics`, `/static/` and
//!   `/openapi.json` stay open;
//! * `--cors-origin ORIGIN` (repeatable) — browsers on these origins may
//!   call the API (CORS); preflights are answered without a token;
//! * `--static DIR` — serve `DIR` under `/static/`.
//!
//! Every exchange is written to stderr as one access-log line (the
//! [`AccessLog`] battery, JSON), by a middleware installed endpoint-wide,
//! so that the router's `404`/`405` and the HTTP layer's own
//! `400`/`408`/`413`/`431` answers are logged too:
//!
//! ```text
//! access: {"bytes":0,"duration_ms":0.2,"end":"completed","keep_alive":true,"method":"PUT","remote":"127.0.0.1:50312","route":"/v1/kv/:key","status":201,"target":"/v1/kv/greeting","time":"2026-12-04T15:50:26Z","ttfb_ms":0.2,"version":"HTTP/1.1"}
//! ```
//!
//! (`method`, `target` and `route` are `null` for a request that could not
//! be parsed). `RUST_LOG` replaces the default filter
//! (`error,pistachio::access=info`): keep `pistachio::access=info` in it
//! for the lines, or set `pistachio::access=off` to drop them.
//! Other logs go through `env_logger` (`RUST_LOG=debug`). Ctrl-C or
//! SIGTERM shuts the server down cleanly.

mod auth;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pistachio_rest::blocking::BlockingPool;
use pistachio_rest::compression::Compression;
use pistachio_rest::cors::Cors;
use pistachio_rest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH};
use pistachio_rest::metrics::Metrics;
use pistachio_rest::serde_json::json;
use pistachio_rest::{
    bind, AccessLog, BodyTooLarge, Description, Endpoint, HeaderMap, HeaderName, HeaderValue,
    HttpError, Method, Options, RestRequest, RestResponse, RouteDesc, Router, Schema,
    SecurityScheme, ServeDir, ShutdownHandle, StatusCode, TlsConfig, ACCESS_LOG_TARGET,
};

use auth::BearerAuth;
use store::{Data, Removed, Store, Written};

const USAGE: &str = "usage: rest_server [--addr ADDR] [--threads N] \
                     [--tls-cert FILE --tls-key FILE | --no-tls] [--data-dir DIR] \
                     [--max-value-size BYTES] [--token TOKEN] [--cors-origin ORIGIN]... \
                     [--static DIR]";

/// Content type of values stored without one.
const DEFAULT_TYPE: &str = "application/octet-stream";
/// Keys a listing returns when `limit` is not given, and at most.
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;
/// The environment variable that can hold the token instead of `--token`.
const TOKEN_ENV: &str = "PISTACHIO_TOKEN";

/// The command line.
struct Args {
    addr: String,
    threads: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    no_tls: bool,
    data_dir: PathBuf,
    max_value_size: u64,
    token: Option<String>,
    cors_origins: Vec<String>,
    static_dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:9443".into(),
        threads: None,
        tls_cert: None,
        tls_key: None,
        no_tls: false,
        data_dir: "pistachio-data".into(),
        max_value_size: 1 << 30,
        token: std::env::var(TOKEN_ENV).ok(),
        cors_origins: Vec::new(),
        static_dir: None,
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
            "--data-dir" => args.data_dir = value()?.into(),
            "--max-value-size" => {
                let v = value()?;
                args.max_value_size = v
                    .parse()
                    .map_err(|_| format!("--max-value-size: not a number: {v}"))?;
            }
            "--token" => args.token = Some(value()?),
            "--cors-origin" => {
                let origin = value()?;
                if HeaderValue::from_str(&origin).is_err() || origin.trim().is_empty() {
                    return Err(format!("--cors-origin: not an origin: {origin:?}"));
                }
                args.cors_origins.push(origin);
            }
            "--static" => args.static_dir = Some(value()?.into()),
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
    if args.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(format!("--token / {TOKEN_ENV} must not be empty"));
    }
    Ok(args)
}

/// Logs a storage failure (the disk, not the client) and turns it into a
/// `500`.
fn storage_failed(e: store::StoreError) -> HttpError {
    log::error!("storage: {e}");
    HttpError::internal("storage error")
}

/// An entity-tag list of `If-Match` / `If-None-Match` (RFC 9110, 13.1).
#[derive(Debug, PartialEq)]
enum Tags {
    /// `*`: any current value.
    Any,
    /// `(weak, opaque tag)` pairs.
    List(Vec<(bool, String)>),
}

impl Tags {
    /// Parses every `name` field of `headers` as one list; `None` if there
    /// is none.
    fn parse(headers: &HeaderMap, name: &HeaderName) -> Result<Option<Tags>, HttpError> {
        let mut values = headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            return Ok(None);
        }
        let bad = || HttpError::bad_request(format!("{name}: not a list of entity tags"));
        let mut tags = Vec::new();
        for value in values {
            let mut rest = value.to_str().map_err(|_| bad())?;
            loop {
                rest = rest.trim_start_matches([' ', '\t', ',']);
                if rest.is_empty() {
                    break;
                }
                if let Some(after) = rest.strip_prefix('*') {
                    rest = after;
                    tags.push(None);
                    continue;
                }
                let (weak, quoted) = match rest.strip_prefix("W/") {
                    Some(quoted) => (true, quoted),
                    None => (false, rest),
                };
                let body = quoted.strip_prefix('"').ok_or_else(bad)?;
                let end = body.find('"').ok_or_else(bad)?;
                tags.push(Some((weak, body[..end].to_owned())));
                rest = &body[end + 1..];
            }
        }
        if tags.iter().any(Option::is_none) {
            return Ok(Some(Tags::Any));
        }
        Ok(Some(Tags::List(tags.into_iter().flatten().collect())))
    }

    /// Whether the list matches the `current` tag (there is none when the
    /// key is absent): strong comparison for `If-Match`, weak for
    /// `If-None-Match`.
    fn matches(&self, current: Option<&str>, strong: bool) -> bool {
        match (self, current) {
            (_, None) => false,
            (Tags::Any, Some(_)) => true,
            (Tags::List(tags), Some(current)) => tags
                .iter()
                .any(|(weak, tag)| tag == current && !(strong && *weak)),
        }
    }
}

/// The preconditions of a request on a value.
#[derive(Debug)]
struct Conditions {
    if_match: Option<Tags>,
    if_none_match: Option<Tags>,
}

impl Conditions {
    fn of(req: &RestRequest) -> Result<Conditions, HttpError> {
        Ok(Conditions {
            if_match: Tags::parse(req.headers(), &IF_MATCH)?,
            if_none_match: Tags::parse(req.headers(), &IF_NONE_MATCH)?,
        })
    }

    /// Whether a `PUT` or `DELETE` may change a value whose tag is
    /// `current` (RFC 9110, 13.2.2): `If-Match` must match, `If-None-Match`
    /// must not (`*` only when there is no value).
    fn allow_change(&self, current: Option<&str>) -> bool {
        self.if_match
            .as_ref()
            .map_or(true, |tags| tags.matches(current, true))
            && !self
                .if_none_match
                .as_ref()
                .is_some_and(|tags| tags.matches(current, false))
    }
}

fn quoted(tag: &str) -> HeaderValue {
    // Tags are hex digits (the store makes them): always a valid value.
    HeaderValue::from_str(&format!("\"{tag}\"")).expect("an entity tag is a valid header value")
}

/// `412 Precondition Failed`, with the current tag if there is a value.
fn precondition_failed(mut resp: RestResponse, current: Option<&str>) {
    if let Some(tag) = current {
        resp.headers_mut().insert(ETAG, quoted(tag));
    }
    resp.send(StatusCode::PRECONDITION_FAILED, "precondition failed");
}

/// The HTTP side of the store: one method per route.
struct Kv {
    store: Store,
    max_value_size: u64,
}

impl Kv {
    fn key(req: &RestRequest) -> Result<String, HttpError> {
        req.param("key")
    }

    fn put(&self, mut req: RestRequest, mut resp: RestResponse) -> Result<(), HttpError> {
        let key = Kv::key(&req)?;
        let conditions = Conditions::of(&req)?;
        let content_type = match req.headers().get(CONTENT_TYPE) {
            Some(v) => v
                .to_str()
                .map_err(|_| HttpError::bad_request("Content-Type: not visible ASCII"))?
                .to_owned(),
            None => DEFAULT_TYPE.to_owned(),
        };
        // Refused now if it would be refused anyway, before the body is
        // read; checked again, atomically, when the value is committed.
        let current = self.store.etag(&key).map_err(storage_failed)?;
        if !conditions.allow_change(current.as_deref()) {
            precondition_failed(resp, current.as_deref());
            return Ok(());
        }
        let mut upload = self.store.upload(&content_type);
        let write = |upload: &mut store::Upload<'_>, data: &[u8]| {
            upload.write(data).map_err(|e| storage_failed(e.into()))?;
            if upload.size() > self.max_value_size {
                return Err(HttpError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the value is larger than the limit",
                ));
            }
            Ok(())
        };
        match req.take_body_stream() {
            // A request with a body: it arrives as it is read, bounded by
            // backpressure, and goes to disk piece by piece.
            Some(mut body) => loop {
                match body.next_chunk() {
                    Ok(Some(piece)) => write(&mut upload, &piece)?,
                    Ok(None) => break,
                    Err(e) => return Err(body_failed(&e)),
                }
            },
            // No body at all: the empty value.
            None => write(&mut upload, req.body())?,
        }
        let status = match self
            .store
            .put(&key, upload, |current| conditions.allow_change(current))
            .map_err(storage_failed)?
        {
            Written::Created(tag) => {
                resp.headers_mut().insert(ETAG, quoted(&tag));
                StatusCode::CREATED
            }
            Written::Replaced(tag) => {
                resp.headers_mut().insert(ETAG, quoted(&tag));
                StatusCode::NO_CONTENT
            }
            Written::Refused(current) => {
                precondition_failed(resp, current.as_deref());
                return Ok(());
            }
        };
        resp.send(status, "");
        Ok(())
    }

    fn get(&self, req: RestRequest, mut resp: RestResponse) -> Result<(), HttpError> {
        let key = Kv::key(&req)?;
        let conditions = Conditions::of(&req)?;
        let entry = self
            .store
            .get(&key)
            .map_err(storage_failed)?
            .ok_or_else(|| HttpError::not_found(format!("no key {key:?}")))?;
        if let Some(tags) = &conditions.if_match {
            if !tags.matches(Some(&entry.etag), true) {
                precondition_failed(resp, Some(&entry.etag));
                return Ok(());
            }
        }
        let headers = resp.headers_mut();
        headers.insert(ETAG, quoted(&entry.etag));
        // Caches may keep it, but must ask (cheaply, with the tag) first.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Some(tags) = &conditions.if_none_match {
            if tags.matches(Some(&entry.etag), false) {
                resp.send(StatusCode::NOT_MODIFIED, "");
                return Ok(());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&entry.content_type) {
            resp.headers_mut().insert(CONTENT_TYPE, v);
        }
        match entry.data {
            Data::Inline(bytes) => resp.send(StatusCode::OK, bytes),
            Data::File(file, path) => {
                log::debug!("{key:?}: {} bytes from {}", entry.size, path.display());
                // The very version looked up, even if it is replaced
                // meanwhile: the file is already open. It goes out with
                // `sendfile(2)` (plain) or in bounded pieces (TLS), never
                // compressed. On failure it has answered `500` itself.
                if let Err(e) = resp
                    .into_writer()
                    .send_file(StatusCode::OK, file, 0, entry.size)
                {
                    log::warn!("serving {key:?} from {}: {e}", path.display());
                }
            }
        }
        Ok(())
    }

    fn delete(&self, req: RestRequest, resp: RestResponse) -> Result<(), HttpError> {
        let key = Kv::key(&req)?;
        let conditions = Conditions::of(&req)?;
        match self
            .store
            .delete(&key, |current| conditions.allow_change(Some(current)))
            .map_err(storage_failed)?
        {
            Removed::Deleted => resp.send(StatusCode::NO_CONTENT, ""),
            Removed::NotFound if conditions.if_match.is_some() => precondition_failed(resp, None),
            Removed::NotFound => return Err(HttpError::not_found(format!("no key {key:?}"))),
            Removed::Refused(current) => precondition_failed(resp, Some(&current)),
        }
        Ok(())
    }

    fn list(&self, req: RestRequest, resp: RestResponse) -> Result<(), HttpError> {
        let prefix = req.query("prefix").unwrap_or_default();
        let after = req.query("after");
        let limit = match req.query_as::<usize>("limit")? {
            None => DEFAULT_PAGE,
            Some(n) if (1..=MAX_PAGE).contains(&n) => n,
            Some(n) => {
                return Err(HttpError::bad_request(format!(
                    "limit {n}: must be 1 to {MAX_PAGE}"
                )))
            }
        };
        let page = self
            .store
            .list(&prefix, after.as_deref(), limit)
            .map_err(storage_failed)?;
        let mut body = json!({ "keys": page.keys });
        if let Some(next) = page.next {
            body["next"] = json!(next);
        }
        resp.json(StatusCode::OK, &body);
        Ok(())
    }
}

/// What went wrong while reading a value's body, as an answer (which the
/// client may no longer be there to read).
fn body_failed(e: &std::io::Error) -> HttpError {
    use std::io::ErrorKind;
    // The size limit of the route, for a body without Content-Length.
    if BodyTooLarge::of(e).is_some() {
        return HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the value is larger than the limit",
        );
    }
    match e.kind() {
        ErrorKind::TimedOut => {
            HttpError::new(StatusCode::REQUEST_TIMEOUT, "the value arrived too slowly")
        }
        _ => HttpError::bad_request(format!("reading the value: {e}")),
    }
}

/// Documents the conditional-request headers of a route.
fn conditional<'r>(
    route: &'r mut RouteDesc,
    if_match: &str,
    if_none_match: &str,
) -> &'r mut RouteDesc {
    route
        .header_param("If-Match", Schema::string(), if_match, false)
        .header_param("If-None-Match", Schema::string(), if_none_match, false)
}

/// The `ETag` header field of a response, documented.
fn etag(route: &mut RouteDesc) -> &mut RouteDesc {
    route.response_header("ETag", Schema::string(), "The value's entity tag")
}

/// What the service is configured with, beyond the listener.
struct Config {
    max_value_size: u64,
    token: Option<String>,
    /// Origins allowed to read answers from browsers (CORS); none: CORS
    /// off.
    cors_origins: Vec<String>,
    /// The directory served under `/static/`.
    static_dir: Option<PathBuf>,
    /// The figures `/metrics` exposes (installed endpoint-wide by
    /// [`endpoint_options`]).
    metrics: Metrics,
}

/// Builds the whole service: routes, their documentation, and the router's
/// layers and middleware. The one place to add routes and layers (the
/// endpoint-wide ones, which also see the HTTP layer's own answers, are in
/// [`endpoint_options`]).
fn app(
    config: &Config,
    kv: &Arc<Kv>,
    server_url: &str,
    stopping: ShutdownHandle,
) -> Result<Router, Box<dyn std::error::Error>> {
    // Storage calls block (fsync): they run on pools, never on the
    // reactor threads. Uploads hold a thread while the body arrives, so
    // they have their own pool and cannot starve reads.
    let kv_pool = BlockingPool::builder()
        .threads(8)
        .queue(256)
        .name("kv")
        .build()?;
    let upload_pool = BlockingPool::builder()
        .threads(16)
        .queue(64)
        .name("kv-upload")
        .build()?;

    let mut api = Description::new("pistachio key-value store", "2.1.0");
    api.description(
        "A durable key-value store: values are any bytes, kept on disk with their \
         media type and an entity tag.\n\n\
         Answers are compressed (zstd, br or gzip) as `Accept-Encoding` asks, \
         except values large enough to be kept in their own file, which go out \
         as stored; a compressed answer's `ETag` is weak (`W/\"...\"`), so use \
         it for `If-None-Match`, not `If-Match`. Started with `--cors-origin`, \
         the server answers CORS preflights and lets those origins read its \
         answers; with `--static DIR`, `GET /static/PATH` serves the files of \
         DIR (conditional and range requests included).",
    )
    .server(server_url, Some("this server"));
    let token = config.token.is_some();
    if token {
        api.security_scheme("bearer", SecurityScheme::bearer());
    }
    // The `/v1/` routes: guarded by the token (see `BearerAuth` below).
    let guarded = |route: &mut RouteDesc| {
        if token {
            route
                .security("bearer")
                .response(StatusCode::UNAUTHORIZED, "Missing or wrong bearer token");
        }
    };

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
    api.get("/readyz")
        .summary("Readiness probe: 503 once the server is shutting down")
        .tag("health")
        .response_body(StatusCode::OK, "Ready", "text/plain", Schema::string())
        .response_body(
            StatusCode::SERVICE_UNAVAILABLE,
            "Draining",
            "text/plain",
            Schema::string(),
        )
        .handler(move |_req: RestRequest, resp: RestResponse| {
            if stopping.is_draining() {
                resp.send(StatusCode::SERVICE_UNAVAILABLE, "draining")
            } else {
                resp.send(StatusCode::OK, "ready")
            }
        });
    api.get("/metrics")
        .summary("Metrics in the Prometheus text format")
        .description(
            "Exchanges by method, route template and status, their durations, \
             bytes in and out, and the transport's figures (connections, TLS \
             handshakes and their failures).",
        )
        .tag("health")
        .response_body(
            StatusCode::OK,
            "The current figures",
            "text/plain",
            Schema::string(),
        )
        .handler(config.metrics.handler());
    guarded(
        api.get("/v1/kv")
            .summary("List keys")
            .tag("kv")
            .query_param(
                "prefix",
                Schema::string(),
                "Only keys starting with this",
                false,
            )
            .query_param(
                "limit",
                Schema::integer(),
                "At most this many keys (1 to 10000, default 1000)",
                false,
            )
            .query_param(
                "after",
                Schema::string(),
                "Only keys after this one: the `next` of the previous page",
                false,
            )
            .response_body(
                StatusCode::OK,
                "The keys, sorted bytewise; `next` is there when more keys follow",
                "application/json",
                Schema::object(&[
                    ("keys", Schema::array(Schema::string())),
                    ("next", Schema::string()),
                ]),
            )
            .response(StatusCode::BAD_REQUEST, "Invalid `limit`")
            .handler(kv_pool.handler(bind(kv, Kv::list))),
    );
    let put = conditional(
        api.put("/v1/kv/:key"),
        "Replace only this version (optimistic concurrency)",
        "`*`: create only, never replace",
    )
    .summary("Store a value")
    .description(
        "Stores the request body as is, with its `Content-Type`, durably: once \
         answered, the value survives a crash. A write cut short leaves the \
         previous value. The body is streamed to disk as it arrives; a \
         declared `Content-Length` over the limit is refused before any of it \
         is read.",
    )
    .tag("kv")
    .path_param("key", Schema::string(), "The key")
    .request_body(&["*/*"], Schema::binary(), true);
    etag(put.response(StatusCode::CREATED, "Stored under a new key"));
    etag(put.response(StatusCode::NO_CONTENT, "Replaced the previous value"));
    etag(put.response(
        StatusCode::PRECONDITION_FAILED,
        "`If-Match` or `If-None-Match` refused the current value",
    ));
    put.response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "The value is larger than the limit",
    )
    .max_body(config.max_value_size)
    .handler(upload_pool.handler(bind(kv, Kv::put)));
    guarded(put);
    let get = conditional(
        api.get("/v1/kv/:key"),
        "Answer only if the value has this tag",
        "`304 Not Modified` if the value still has one of these tags",
    )
    .summary("Fetch a value")
    .tag("kv")
    .path_param("key", Schema::string(), "The key");
    etag(get.response_body(
        StatusCode::OK,
        "The stored bytes, with the Content-Type they were stored with",
        "*/*",
        Schema::binary(),
    ));
    etag(get.response(StatusCode::NOT_MODIFIED, "The value still has that tag"));
    get.response(StatusCode::PRECONDITION_FAILED, "`If-Match` did not match")
        .response_body(
            StatusCode::NOT_FOUND,
            "No such key",
            "text/plain",
            Schema::string(),
        )
        .handler(kv_pool.handler(bind(kv, Kv::get)));
    guarded(get);
    let delete = api
        .delete("/v1/kv/:key")
        .summary("Delete a value")
        .tag("kv")
        .path_param("key", Schema::string(), "The key")
        .header_param(
            "If-Match",
            Schema::string(),
            "Delete only this version",
            false,
        )
        .response(StatusCode::NO_CONTENT, "Deleted");
    etag(delete.response(StatusCode::PRECONDITION_FAILED, "`If-Match` did not match"));
    delete
        .response_body(
            StatusCode::NOT_FOUND,
            "No such key",
            "text/plain",
            Schema::string(),
        )
        .handler(kv_pool.handler(bind(kv, Kv::delete)));
    guarded(delete);

    let mut router = Router::from_description(api)?;
    // The router's layers, outermost first: they see every request, routed
    // or not, and their head hooks run before any body is read. A CORS
    // preflight carries no credentials: the token check lets it through,
    // to the CORS middleware below, which answers it.
    if let Some(token) = &config.token {
        let auth = BearerAuth::new(token, "v1");
        router.layer(if config.cors_origins.is_empty() {
            auth
        } else {
            auth.passing_preflights()
        });
    }
    // Request middleware, in this order, before routing: CORS first (it
    // answers preflights), then the answer's coding, then the files.
    if !config.cors_origins.is_empty() {
        router.middleware(
            Cors::new()
                .allow_origins(config.cors_origins.iter().map(String::as_str))
                .allow_methods([Method::GET, Method::HEAD, Method::PUT, Method::DELETE])
                .allow_headers(["authorization", "content-type", "if-match", "if-none-match"])
                .expose_headers(["etag"])
                .max_age(Duration::from_secs(600))
                .into_middleware(),
        );
    }
    // Values are stored as sent: request bodies are not decoded.
    router.middleware(Compression::new().max_decoded_body(None).into_middleware());
    if let Some(dir) = &config.static_dir {
        router.serve_dir("/static", ServeDir::new(dir)?);
    }
    Ok(router)
}

/// The endpoint's options: workers, TLS, and the endpoint-wide middleware
/// (it sees every answer, the HTTP layer's own `400`/`408`/`413`/`431`
/// too): the access log and the metrics. Returns the generated
/// certificate's file, if one was made.
fn endpoint_options(
    args: &Args,
    metrics: &Metrics,
) -> Result<(Options, Option<PathBuf>), Box<dyn std::error::Error>> {
    let mut options = Options::default()
        .middleware(AccessLog::json())
        .middleware(metrics.clone());
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
    Ok((options, cacert))
}

/// Logs through `env_logger` (`RUST_LOG`, default: errors), with the
/// access log's lines ([`ACCESS_LOG_TARGET`], on by default) written as
/// `access: {json}`, one write per line.
fn init_logging() {
    use std::io::Write as _;
    let default = format!("error,{ACCESS_LOG_TARGET}=info");
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format(|buf, record| {
            if record.target() == ACCESS_LOG_TARGET {
                writeln!(buf, "access: {}", record.args())
            } else {
                writeln!(
                    buf,
                    "[{} {} {}] {}",
                    buf.timestamp(),
                    record.level(),
                    record.target(),
                    record.args()
                )
            }
        })
        .init();
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let data_dir = std::path::absolute(&args.data_dir)?;
    let (store, recovered) =
        Store::open(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let kv = Arc::new(Kv {
        store,
        max_value_size: args.max_value_size,
    });
    let config = Config {
        max_value_size: args.max_value_size,
        token: args.token.clone(),
        cors_origins: args.cors_origins.clone(),
        static_dir: args.static_dir.clone(),
        metrics: Metrics::new(),
    };

    let (options, cacert) = endpoint_options(&args, &config.metrics)?;
    let mut endpoint = Endpoint::bind_or_inherit(args.addr.as_str(), options)?;
    config.metrics.watch_transport(endpoint.transport_stats());
    config.metrics.watch_http2(endpoint.http2_counters());
    let addr = endpoint.local_addr();
    let scheme = if endpoint.is_tls() { "https" } else { "http" };
    let host = if addr.ip().is_loopback() && addr.is_ipv4() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    let base = format!("{scheme}://{host}");
    let router = app(&config, &kv, &base, endpoint.shutdown_handle())?;

    println!("rest_server listening on {base}/");
    let curl = match (&cacert, endpoint.is_tls()) {
        (Some(pem), _) => format!("curl --cacert {}", pem.display()),
        (None, true) => "curl --cacert YOUR_CA.pem".to_owned(),
        (None, false) => "curl".to_owned(),
    };
    let auth = if config.token.is_some() {
        " -H \"Authorization: Bearer $PISTACHIO_TOKEN\""
    } else {
        ""
    };
    println!("try: {curl} {base}/healthz");
    println!("     {curl}{auth} -X PUT --data-binary 'hello' {base}/v1/kv/greeting");
    println!("     {curl}{auth} {base}/v1/kv/greeting");
    println!(
        "data directory: {} ({} values; removed {} partial uploads, {} orphaned files)",
        data_dir.display(),
        recovered.keys,
        recovered.partial,
        recovered.orphans
    );
    if config.token.is_some() {
        println!("/v1/ requires a bearer token");
    } else {
        println!("no --token: /v1/ is open to every client that can reach {addr}");
    }

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
    init_logging();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn tags(values: &[&str]) -> Result<Option<Tags>, HttpError> {
        Tags::parse(&headers(IF_MATCH, values), &IF_MATCH)
    }

    #[test]
    fn parses_entity_tag_lists() {
        assert_eq!(tags(&[]).unwrap(), None);
        assert_eq!(tags(&["*"]).unwrap(), Some(Tags::Any));
        assert_eq!(
            tags(&["\"a\", W/\"b\"", "\"c,d\""]).unwrap(),
            Some(Tags::List(vec![
                (false, "a".into()),
                (true, "b".into()),
                (false, "c,d".into())
            ]))
        );
        assert!(tags(&["a"]).is_err());
        assert!(tags(&["\"a"]).is_err());
    }

    #[test]
    fn conditions_of_changes() {
        let c = |m: Option<&str>, n: Option<&str>| Conditions {
            if_match: m.map(|v| tags(&[v]).unwrap().unwrap()),
            if_none_match: n.map(|v| tags(&[v]).unwrap().unwrap()),
        };
        // No conditions: anything goes.
        assert!(c(None, None).allow_change(None));
        assert!(c(None, None).allow_change(Some("x")));
        // If-Match: only that (strong) version; never an absent value.
        assert!(c(Some("\"x\""), None).allow_change(Some("x")));
        assert!(!c(Some("\"x\""), None).allow_change(Some("y")));
        assert!(!c(Some("W/\"x\""), None).allow_change(Some("x")));
        assert!(!c(Some("\"x\""), None).allow_change(None));
        assert!(c(Some("*"), None).allow_change(Some("y")));
        assert!(!c(Some("*"), None).allow_change(None));
        // If-None-Match: * creates only; a tag refuses that version.
        assert!(c(None, Some("*")).allow_change(None));
        assert!(!c(None, Some("*")).allow_change(Some("x")));
        assert!(!c(None, Some("W/\"x\"")).allow_change(Some("x")));
        assert!(c(None, Some("\"x\"")).allow_change(Some("y")));
    }
}
