//! The public test client of `pistachio_rest::testing`, over HTTP and TLS.

use pistachio_rest::testing::TestClient;
use pistachio_rest::{HttpError, Method, RestRequest, RestResponse, Router, StatusCode};
use pistachio_tests::{init_logging, set_open_files_limit};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Item {
    name: String,
    qty: u32,
}

fn router() -> Router {
    let mut router = Router::new();
    router
        .get("/port", |_req: RestRequest, resp: RestResponse| {
            let port = resp.peer_addr().port();
            resp.send(StatusCode::OK, port.to_string())
        })
        .get("/headers", |req: RestRequest, resp: RestResponse| {
            let seen = req.header("x-token").unwrap_or("none").to_owned();
            let mut resp = resp;
            resp.headers_mut()
                .insert("x-seen", seen.parse().expect("a header value"));
            resp.send(StatusCode::OK, seen)
        })
        .post("/items", |req: RestRequest, resp: RestResponse| {
            let item: Item = req.json()?;
            resp.json(StatusCode::CREATED, &item);
            Ok::<(), HttpError>(())
        })
        .put("/raw", |req: RestRequest, resp: RestResponse| {
            let mut body = req.body().to_vec();
            body.reverse();
            resp.send(StatusCode::OK, body)
        })
        .delete("/items/:id", |req: RestRequest, resp: RestResponse| {
            let id: u32 = req.param("id")?;
            resp.send(StatusCode::OK, format!("deleted {id}"));
            Ok::<(), HttpError>(())
        })
        .get("/stream/:n", |req: RestRequest, resp: RestResponse| {
            let n: usize = req.param("n")?;
            let mut stream = resp.into_writer().stream(StatusCode::OK);
            for i in 0..n {
                stream.write(format!("chunk {i};"));
                stream.flush();
            }
            stream.end();
            Ok::<(), HttpError>(())
        });
    router
}

/// Everything the client does, against a client of either kind.
fn exercise(client: &TestClient) {
    // Keep-alive: every call goes over the same connection.
    let port = client.get("/port").send().text();
    assert!(port.parse::<u16>().is_ok(), "{port}");

    // Request headers in, response headers out.
    let r = client.get("/headers").header("X-Token", "t0k3n").send();
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "t0k3n"));
    assert_eq!(r.header("x-seen"), Some("t0k3n"));
    assert_eq!(r.header("X-SEEN"), Some("t0k3n"));
    assert_eq!(r.header("content-length"), Some("5"));
    assert_eq!(client.get("/headers").send().text(), "none");

    // JSON both ways, and the errors of bad JSON.
    let item = Item {
        name: "nut".into(),
        qty: 3,
    };
    let r = client.post("/items").json(&item).send();
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json::<Item>(), item);
    let r = client
        .post("/items")
        .header("content-type", "application/json")
        .body(r#"{"name":"nut"}"#)
        .send();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("missing field `qty`"), "{}", r.text());
    let r = client.post("/items").body("{}").send();
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Raw bodies, other methods.
    let r = client.put("/raw").body(&b"abc\0def"[..]).send();
    assert_eq!(r.body, b"fed\0cba");
    let r = client.delete("/items/9").send();
    assert_eq!(r.text(), "deleted 9");

    // A body large enough that libcurl would ask `Expect: 100-continue`
    // by itself; asked for explicitly, the interim 100 is skipped.
    let big = vec![b'x'; 64 * 1024];
    let r = client.put("/raw").body(big.clone()).send();
    assert_eq!(r.body.len(), big.len());
    let r = client
        .put("/raw")
        .header("expect", "100-continue")
        .body(big.clone())
        .send();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), big.len());

    // 404, 405 with Allow, OPTIONS, HEAD.
    let r = client.get("/nowhere").send();
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.text(), pistachio_rest::NOT_FOUND_BODY);
    let r = client.patch("/items").send();
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    let r = client.request(Method::OPTIONS, "/items/1").send();
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("allow"), Some("DELETE, OPTIONS"));
    let r = client.head("/headers").header("x-token", "abc").send();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), Some("3"));
    assert!(r.body.is_empty());

    // A streamed (chunked) answer, de-chunked; then the connection is
    // still usable.
    let r = client.get("/stream/50").send();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let expected: String = (0..50).map(|i| format!("chunk {i};")).collect();
    assert_eq!(r.text(), expected);
    let r = client.get("/stream/0").send();
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 0));

    assert_eq!(
        client.get("/port").send().text(),
        port,
        "the connection was not kept alive"
    );
    assert_eq!(client.endpoint().connections(), 1);
}

#[test]
fn http_client() {
    init_logging();
    let client = TestClient::new(router());
    assert!(client.url("/x").starts_with("http://127.0.0.1:"));
    exercise(&client);
}

/// A process with a thousand sockets open (a load test, say) hands libcurl
/// descriptors above `FD_SETSIZE` (1024). The static libcurl must wait on
/// them with `poll()`: built to use `select()` (what curl-sys's own flags
/// give curl 8.22; `.cargo/config.toml` defines `HAVE_POLL`), it refuses
/// them and every transfer fails with error 43 before connecting.
#[test]
fn the_client_works_with_descriptors_above_fd_setsize() {
    init_logging();
    // Up to the hard limit (never lowered: other tests run meanwhile).
    set_open_files_limit(u64::MAX).expect("raise RLIMIT_NOFILE");
    // Descriptors up to past 1024, so that the client's socket gets one
    // above it.
    let file = std::fs::File::open("/dev/null").unwrap();
    let held: Vec<std::fs::File> = (0..1100)
        .map(|_| file.try_clone().expect("RLIMIT_NOFILE of at least 1200"))
        .collect();
    let client = TestClient::new(router());
    let r = client.get("/port").send();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    drop(held);
}

#[test]
fn tls_client() {
    init_logging();
    let client = TestClient::tls(router());
    assert!(client.url("/x").starts_with("https://127.0.0.1:"));
    assert!(client.endpoint().is_tls());
    exercise(&client);
}

#[test]
fn drop_shuts_the_server_down() {
    init_logging();
    let client = TestClient::new(router());
    let addr = client.addr();
    assert_eq!(client.get("/port").send().status, StatusCode::OK);
    drop(client);
    assert!(std::net::TcpStream::connect(addr).is_err());
}
