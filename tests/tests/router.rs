//! The REST router over a real endpoint (Pistache's `router_test` and
//! `rest_server_test`, end to end): default 404 body, 405 with `Allow`,
//! `HEAD` and `OPTIONS`, middleware that stops or authenticates, JSON
//! `415`/`400`, shared state, answers from other threads, keep-alive reuse
//! of one client port, idle connections closed after the keep-alive
//! timeout, and the same router over TLS.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pistachio_rest::header::{HeaderValue, WWW_AUTHENTICATE};
use pistachio_rest::{
    bind, Flow, Handler, HttpError, Method, Options, RestRequest, RestResponse, RouteGroup, Router,
    StatusCode, NOT_FOUND_BODY,
};
use pistachio_tests::client::{connect_tcp, wait_for_close, RequestBuilder};
use pistachio_tests::server::HANDSHAKE_TIMEOUT;
use pistachio_tests::{init_logging, PlainClient, Response, TestServer, TlsClient, IO_TIMEOUT};

/// Serves `router` with two workers, over TLS if `tls`.
fn serve(router: Router, tls: bool) -> TestServer {
    init_logging();
    let router = Arc::new(router);
    TestServer::start(2, tls, move |req, resp| router.on_request(req, resp))
}

/// Sends one request on a fresh plain connection with `Connection: close`
/// and reads to the end; works for `HEAD` (a length but no body). The body
/// returned is everything after the head up to the close, so a byte after a
/// `HEAD` answer shows. Header names are in lower case.
fn once(port: u16, request: RequestBuilder) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut client = PlainClient::connect(port).expect("connect");
    client
        .write_raw(&request.clone().close().to_bytes())
        .expect("write");
    let response = client
        .read_response_to(request.method() == "HEAD")
        .expect("a response");
    let rest = client
        .read_to_close(IO_TIMEOUT)
        .unwrap_or_else(|b| panic!("read: still open after {} more bytes", b.len()));
    let headers = response
        .headers
        .into_iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .collect();
    (response.status, headers, [response.body, rest].concat())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn text(body: &str) -> impl Fn(RestRequest, RestResponse) + Send + Sync + 'static {
    let body = body.to_owned();
    move |_req, resp| resp.send(StatusCode::OK, body.as_str())
}

fn request(client: &mut PlainClient, method: &str, path: &str, extra: &str) -> Response {
    client
        .write_raw(format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").as_bytes())
        .expect("write");
    client.read_response().expect("response")
}

#[test]
fn unknown_path_is_404_with_pistache_body() {
    let mut router = Router::new();
    router.get("/known", text("yes"));
    let server = serve(router, false);
    let mut client = PlainClient::connect(server.port()).unwrap();
    let r = client.request("/unknown/path").unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), NOT_FOUND_BODY);
    assert_eq!(r.text(), "Could not find a matching route");
    // The connection stays usable after a 404.
    assert_eq!(client.request("/known").unwrap().text(), "yes");
}

#[test]
fn custom_not_found_handler_runs_once_per_request() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let mut router = Router::new();
    router
        .get("/x", text("x"))
        .not_found(move |req: RestRequest, resp: RestResponse| {
            seen.fetch_add(1, Ordering::SeqCst);
            resp.send(StatusCode::NOT_FOUND, format!("nothing at {}", req.path()));
        });
    let server = serve(router, false);
    let mut client = PlainClient::connect(server.port()).unwrap();
    for i in 1..=3 {
        let r = client.request(&format!("/missing/{i}")).unwrap();
        assert_eq!(
            (r.status, r.text()),
            (404, format!("nothing at /missing/{i}"))
        );
        assert_eq!(calls.load(Ordering::SeqCst), i);
    }
}

#[test]
fn other_method_is_405_with_allow_and_options_lists_it() {
    let mut router = Router::new();
    router
        .get("/items/:id", text("got"))
        .put("/items/:id", text("put"))
        .delete("/items/:id", text("deleted"));
    let server = serve(router, false);
    let mut client = PlainClient::connect(server.port()).unwrap();
    let r = request(&mut client, "POST", "/items/1", "Content-Length: 0\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, PUT, DELETE, OPTIONS"));
    let r = request(&mut client, "OPTIONS", "/items/1", "");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("allow"), Some("GET, HEAD, PUT, DELETE, OPTIONS"));
    let r = request(&mut client, "OPTIONS", "*", "");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("allow"), Some("GET, HEAD, PUT, DELETE, OPTIONS"));
    let r = request(&mut client, "OPTIONS", "/nothing", "");
    assert_eq!(r.status, 404);
    let r = request(&mut client, "DELETE", "/items/1", "");
    assert_eq!(r.text(), "deleted");
}

/// `OPTIONS *` is about the server: it is never routed to `/*` or `/:x`,
/// and after a route is removed its method is no longer listed.
#[test]
fn options_asterisk_lists_the_routed_methods_and_is_never_routed() {
    let mut router = Router::new();
    router
        .get("/*", text("splat"))
        .options("/:anything", text("param options"))
        .put("/items/:id", text("put"));
    router.remove_route(&Method::PUT, "/items/:id").unwrap();
    let server = serve(router, false);
    let mut client = PlainClient::connect(server.port()).unwrap();
    let r = request(&mut client, "OPTIONS", "*", "");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    // The routes themselves still answer their own paths.
    assert_eq!(request(&mut client, "GET", "/x", "").text(), "splat");
    assert_eq!(
        request(&mut client, "OPTIONS", "/x", "").text(),
        "param options"
    );
}

#[test]
fn head_is_routed_to_get_without_a_body() {
    let mut router = Router::new();
    router.get("/doc", text("twelve bytes")).head(
        "/moved",
        |_req: RestRequest, resp: RestResponse| {
            resp.header(
                pistachio_rest::header::LOCATION,
                HeaderValue::from_static("/doc"),
            )
            .send(StatusCode::MOVED_PERMANENTLY, "")
        },
    );
    let server = serve(router, false);
    let (status, headers, body) = once(server.port(), RequestBuilder::new("HEAD", "/doc"));
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-length"), Some("12"));
    assert!(body.is_empty(), "HEAD answered with a body: {body:?}");
    let (status, headers, _) = once(server.port(), RequestBuilder::new("HEAD", "/moved"));
    assert_eq!(status, 301);
    assert_eq!(header(&headers, "location"), Some("/doc"));
    let (status, _, body) = once(server.port(), RequestBuilder::get("/doc"));
    assert_eq!((status, body.as_slice()), (200, &b"twelve bytes"[..]));
}

#[test]
fn middleware_can_stop_with_its_own_204() {
    let reached = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&reached);
    let mut router = Router::new();
    router
        .middleware(|req: &mut RestRequest, resp: RestResponse| {
            if req.has_query("skip") {
                resp.send(StatusCode::NO_CONTENT, "");
                return Flow::Stop;
            }
            Flow::Continue(resp)
        })
        .get("/work", move |_req: RestRequest, resp: RestResponse| {
            count.fetch_add(1, Ordering::SeqCst);
            resp.send(StatusCode::OK, "worked")
        });
    let server = serve(router, false);
    let mut client = PlainClient::connect(server.port()).unwrap();
    let r = client.request("/work?skip").unwrap();
    assert_eq!((r.status, r.body.len()), (204, 0));
    assert_eq!(reached.load(Ordering::SeqCst), 0);
    // Router middleware runs before routing: unknown paths stop too.
    assert_eq!(client.request("/unknown?skip").unwrap().status, 204);
    assert_eq!(client.request("/work").unwrap().text(), "worked");
    assert_eq!(reached.load(Ordering::SeqCst), 1);
}

/// Who the auth middleware let in.
#[derive(Debug)]
struct User(String);

#[test]
fn auth_middleware_on_a_group_answers_401() {
    let mut api = RouteGroup::new("/api");
    api.middleware(|req: &mut RestRequest, resp: RestResponse| {
        match req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            Some("s3cret") => {
                req.extensions_mut().insert(User("ann".into()));
                Flow::Continue(resp)
            }
            _ => {
                let mut resp = resp;
                resp.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                HttpError::unauthorized("missing or wrong token").send(resp);
                Flow::Stop
            }
        }
    })
    .get("/me", |req: RestRequest, resp: RestResponse| {
        let user = req.extensions().get::<User>().map_or("?", |u| u.0.as_str());
        resp.send(StatusCode::OK, format!("hello {user}"))
    });
    let mut router = Router::new();
    router.get("/public", text("open"));
    router.mount(api).unwrap();
    let server = serve(router, false);
    let mut client = PlainClient::connect(server.port()).unwrap();
    let r = client.request("/api/me").unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "missing or wrong token")
    );
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = request(
        &mut client,
        "GET",
        "/api/me",
        "Authorization: Bearer wrong\r\n",
    );
    assert_eq!(r.status, 401);
    let r = request(
        &mut client,
        "GET",
        "/api/me",
        "Authorization: Bearer s3cret\r\n",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "hello ann"));
    assert_eq!(client.request("/public").unwrap().text(), "open");
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Order {
    item: String,
    qty: u32,
}

#[test]
fn json_bodies_415_and_400() {
    let mut router = Router::new();
    router.post("/orders/:shop", |req: RestRequest, resp: RestResponse| {
        let shop: u16 = req.param("shop")?;
        let order: Order = req.json()?;
        resp.json(
            StatusCode::CREATED,
            &serde_json::json!({"shop": shop, "item": order.item, "qty": order.qty}),
        );
        Ok::<(), HttpError>(())
    });
    let server = serve(router, false);
    let port = server.port();
    let post = |path: &str, content_type: &str, body: &str| {
        once(
            port,
            RequestBuilder::new("POST", path)
                .header("Content-Type", content_type)
                .body(body.as_bytes()),
        )
    };
    let (status, headers, body) =
        post("/orders/7", "application/json", r#"{"item":"nut","qty":2}"#);
    assert_eq!(status, 201);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"shop": 7, "item": "nut", "qty": 2})
    );

    let (status, _, body) = post("/orders/7", "text/plain", r#"{"item":"nut","qty":2}"#);
    assert_eq!(status, 415);
    assert!(String::from_utf8_lossy(&body).contains("application/json"));

    let (status, _, body) = post("/orders/7", "application/json", "{not json");
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).starts_with("invalid JSON"));

    let (status, _, body) = post("/orders/seven", "application/json", "{}");
    assert_eq!(status, 400);
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(
        body.contains(":shop") && body.contains("\"seven\""),
        "{body}"
    );
}

#[test]
fn shared_state_and_answers_from_other_threads() {
    struct Counter(AtomicUsize);
    impl Counter {
        fn hit(&self, _req: RestRequest, resp: RestResponse) {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                resp.send(StatusCode::OK, n.to_string());
            });
        }
    }
    let counter = Arc::new(Counter(AtomicUsize::new(0)));
    let mut router = Router::new();
    router.get("/hit", bind(&counter, Counter::hit));
    let server = serve(router, false);
    let mut client = PlainClient::connect(server.port()).unwrap();
    for expected in 1..=5 {
        assert_eq!(client.request("/hit").unwrap().text(), expected.to_string());
    }
    assert_eq!(counter.0.load(Ordering::SeqCst), 5);
}

#[test]
fn keep_alive_reuses_the_client_port() {
    let mut router = Router::new();
    router.get("/port", |_req: RestRequest, resp: RestResponse| {
        let port = resp.peer_addr().port();
        resp.send(StatusCode::OK, port.to_string())
    });
    let server = serve(router, false);
    let mut client = PlainClient::connect(server.port()).unwrap();
    let local = client.tcp().local_addr().unwrap().port();
    for _ in 0..5 {
        let r = client.request("/port").unwrap();
        assert_eq!(r.text(), local.to_string());
        assert_eq!(r.header("connection"), None, "keep-alive is the default");
    }
}

#[test]
fn idle_connections_close_after_the_keep_alive_timeout() {
    init_logging();
    let mut router = Router::new();
    router.get("/", text("root"));
    let router = Arc::new(router);
    let options = Options::default()
        .threads(1)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .keepalive_timeout(Duration::from_millis(300));
    let server = TestServer::start_with(1, false, options, move |req, resp| {
        router.on_request(req, resp)
    });
    let mut client = PlainClient::connect(server.port()).unwrap();
    assert_eq!(client.request("/").unwrap().text(), "root");
    assert!(
        wait_for_close(client.tcp(), Duration::from_secs(3)),
        "the idle connection was not closed"
    );
}

#[test]
fn the_router_over_tls() {
    let mut router = Router::new();
    router
        .get("/users/:id", |req: RestRequest, resp: RestResponse| {
            let id: u64 = req.param("id")?;
            resp.json(StatusCode::OK, &serde_json::json!({ "id": id }));
            Ok::<(), HttpError>(())
        })
        .get("/files/*/raw", |req: RestRequest, resp: RestResponse| {
            resp.send(StatusCode::OK, req.splat()[0].as_str())
        });
    let server = serve(router, true);
    let mut client = TlsClient::connect(server.port()).unwrap();
    assert_eq!(client.request("/users/42").unwrap().text(), r#"{"id":42}"#);
    assert_eq!(
        client.request("//users//42/").unwrap().text(),
        r#"{"id":42}"#
    );
    assert_eq!(client.request("/users/x").unwrap().status, 400);
    assert_eq!(client.request("/files/a%20b/raw").unwrap().text(), "a b");
    assert_eq!(client.request("/files/a/b/raw").unwrap().status, 404);
    client.close().unwrap();
}

/// Writes `wire` on a fresh plain connection and reads until the server
/// closes (every request here ends with one that says `Connection: close`).
fn exchange(port: u16, wire: &[u8]) -> String {
    let mut tcp = connect_tcp(port).expect("connect");
    // The server may close before a refused request is fully written.
    let _ = tcp.write_all(wire);
    String::from_utf8_lossy(&pistachio_tests::client::read_to_close(&mut tcp)).into_owned()
}

/// The router's `404` and `405` to a `HEAD` carry the head only: the next
/// response on the same connection starts right after it.
#[test]
fn head_404_and_405_carry_no_body_and_keep_the_connection_in_step() {
    let mut router = Router::new();
    router.put("/doc", text("put"));
    let server = serve(router, false);
    for (path, status) in [
        ("/nowhere", "404 Not Found"),
        ("/doc", "405 Method Not Allowed"),
    ] {
        let wire = format!(
            "HEAD {path} HTTP/1.1\r\nHost: localhost\r\n\r\n\
             HEAD {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        );
        let mut client = PlainClient::connect(server.port()).expect("connect");
        client.write_raw(wire.as_bytes()).expect("write");
        for last in [false, true] {
            let head = client
                .read_head_response()
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(
                head.head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{path}: {:?}",
                head.head
            );
            if last {
                assert!(
                    head.head.contains("\r\nConnection: close\r\n"),
                    "{path}: {:?}",
                    head.head
                );
            }
        }
        client.assert_closed(path);
    }
}

/// Whether a field name is canonical Title-Case: every `-` separated
/// word starts with an upper-case letter (or a digit) and goes on in lower
/// case.
fn is_title_case(name: &str) -> bool {
    !name.is_empty()
        && name.split('-').all(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                && chars.all(|c| !c.is_ascii_uppercase())
        })
}

/// The field names of every head in `text` that are not Title-Case.
fn badly_cased(text: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("HTTP/1.1 ") {
        let block = &rest[start..];
        let end = block.find("\r\n\r\n").map_or(block.len(), |e| e + 4);
        for line in block[..end].split("\r\n").skip(1) {
            if let Some((name, _)) = line.split_once(':') {
                if !is_title_case(name) {
                    bad.push(name.to_owned());
                }
            }
        }
        rest = &block[end..];
    }
    bad
}

/// Every field name the server writes is canonical Title-Case, whoever
/// made the answer: the HTTP layer's refusals and timeouts, the router's
/// `404`/`405`, the `500` for a panicking handler, `100 Continue`, and a
/// handler's own fields set through the `HeaderMap` (lower case there).
#[test]
fn every_header_name_on_the_wire_is_title_case() {
    init_logging();
    let mut router = Router::new();
    router
        .get("/ok", |_req: RestRequest, mut resp: RestResponse| {
            let headers = resp.headers_mut();
            headers.insert("x-request-id", HeaderValue::from_static("7"));
            headers.insert("cache-control", HeaderValue::from_static("no-store"));
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            headers.insert("etag", HeaderValue::from_static("\"e\""));
            headers.append("set-cookie", HeaderValue::from_static("a=1"));
            resp.send(StatusCode::OK, "ok");
        })
        .get("/stream", |_req: RestRequest, mut resp: RestResponse| {
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("text/csv"));
            let mut stream = resp.into_writer().stream(StatusCode::OK);
            stream.write("a,b");
            stream.end();
        })
        .get("/panic", |_req: RestRequest, _resp: RestResponse| -> () {
            panic!("a handler panic the test asked for")
        })
        .post("/ok", text("posted"));
    let router = Arc::new(router);
    let options = Options::default()
        .threads(1)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .header_timeout(Duration::from_millis(200))
        .max_request_size(10);
    let server = TestServer::start_with(1, false, options, move |req, resp| {
        router.on_request(req, resp)
    });
    let port = server.port();
    let close = "Host: localhost\r\nConnection: close\r\n\r\n";
    let cases: Vec<(String, &str)> = vec![
        (format!("GET /ok HTTP/1.1\r\n{close}"), "200 OK"),
        (
            format!(
                "GET /ok HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /ok HTTP/1.1\r\n{close}"
            ),
            "200 OK",
        ),
        (format!("GET /stream HTTP/1.1\r\n{close}"), "200 OK"),
        (format!("GET /nowhere HTTP/1.1\r\n{close}"), "404 Not Found"),
        (
            format!("DELETE /ok HTTP/1.1\r\n{close}"),
            "405 Method Not Allowed",
        ),
        (
            format!("GET /panic HTTP/1.1\r\n{close}"),
            "500 Internal Server Error",
        ),
        (
            format!("GET / HTTP/1.1\r\nBad Name: x\r\n{close}"),
            "400 Bad Request",
        ),
        (
            format!("POST /ok HTTP/1.1\r\nContent-Length: 11\r\n{close}"),
            "413 Payload Too Large",
        ),
        (
            format!("GET /{} HTTP/1.1\r\n{close}", "x".repeat(20 * 1024)),
            "414 URI Too Long",
        ),
        (
            format!("GET / HTTP/1.1\r\n{}{close}", "X-F: v\r\n".repeat(100)),
            "431 Request Header Fields Too Large",
        ),
        (
            format!("GET / HTTP/2.0\r\n{close}"),
            "505 HTTP Version Not Supported",
        ),
        (
            "GET /ok HTTP/1.1\r\nHost: loc".to_owned(),
            "408 Request Timeout",
        ),
    ];
    let mut error_types = Vec::new();
    for (wire, status) in &cases {
        let text = exchange(port, wire.as_bytes());
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{status}: {text:?}"
        );
        assert_eq!(
            badly_cased(&text),
            Vec::<String>::new(),
            "{status}: {text:?}"
        );
        if !status.starts_with('1') && !status.starts_with('2') {
            let head = &text[..text.find("\r\n\r\n").unwrap()];
            let content_type = head
                .split("\r\n")
                .find_map(|l| l.strip_prefix("Content-Type: "))
                .unwrap_or_else(|| panic!("{status}: no Content-Type: {text:?}"));
            error_types.push((status, content_type.to_owned()));
        }
    }
    // `100 Continue` before the body.
    let mut client = PlainClient::connect(port).expect("connect");
    client
        .write_raw(
            format!("POST /ok HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n{close}")
                .as_bytes(),
        )
        .unwrap();
    let interim = client.read_response().unwrap();
    assert_eq!(interim.head, "HTTP/1.1 100 Continue\r\n\r\n");
    assert!(
        client.buffered().is_empty(),
        "{:?}",
        String::from_utf8_lossy(client.buffered())
    );
    client.write_raw(b"hi").unwrap();
    let text = String::from_utf8_lossy(
        &client
            .read_to_close(IO_TIMEOUT)
            .unwrap_or_else(|b| panic!("still open after {} bytes", b.len())),
    )
    .into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    assert_eq!(badly_cased(&text), Vec::<String>::new(), "{text:?}");

    // Every answer the server (or the router) makes itself has one type.
    let first = error_types[0].1.clone();
    assert!(
        error_types.iter().all(|(_, t)| *t == first),
        "{error_types:?}"
    );
    let ok = exchange(port, format!("GET /ok HTTP/1.1\r\n{close}").as_bytes());
    for field in [
        "\r\nX-Request-Id: 7\r\n",
        "\r\nCache-Control: no-store\r\n",
        "\r\nWww-Authenticate: Basic\r\n",
        "\r\nEtag: \"e\"\r\n",
        "\r\nSet-Cookie: a=1\r\n",
        "\r\nContent-Length: 2\r\n",
        "\r\nConnection: close\r\n",
        "\r\nDate: ",
    ] {
        assert!(ok.contains(field), "{field:?} in {ok:?}");
    }
}
