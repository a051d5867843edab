//! `ServeDir` / `Router::serve_dir` over real connections: whole files,
//! `HEAD`, byte ranges, conditional requests, directories, and every way a
//! request path could try to leave the root (`..` raw and encoded, encoded
//! separators, NUL, symbolic links), over plain TCP, TLS and libcurl.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use curl::easy::{Easy, List};
use pistachio_rest::{Endpoint, Options, RestRequest, RestResponse, Router, ServeDir, StatusCode};
use pistachio_tests::client::{PlainClient, RequestBuilder, Response, TlsClient};
use pistachio_tests::server::server_tls_config;
use pistachio_tests::{certs, init_logging};

/// What the file outside the root holds: never in an answer.
const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-ROOT";

/// A directory tree for one test, removed when dropped:
///
/// ```text
/// base/
///   outside/secret.txt          (SECRET)
///   root/hello.txt              (HELLO)
///   root/big.bin                (BIG_LEN pseudo-random bytes)
///   root/sub/index.html
///   root/empty/                 (no index)
///   root/escape -> ../outside/secret.txt
///   root/linkdir -> ../outside
///   root/inlink -> hello.txt
/// ```
struct Tree {
    base: PathBuf,
}

const HELLO: &str = "Hello, static world! 0123456789abcdefghijklmnopqrstuvwxyz";
const BIG_LEN: usize = 3 * 1024 * 1024 + 123;
const INDEX: &str = "<!doctype html><title>sub</title>";

fn big_content() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..BIG_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

impl Tree {
    fn new() -> Tree {
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "pistachio-static-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(base.join("outside/secret.txt"), SECRET).unwrap();
        std::fs::write(root.join("hello.txt"), HELLO).unwrap();
        std::fs::write(root.join("big.bin"), big_content()).unwrap();
        std::fs::write(root.join("sub/index.html"), INDEX).unwrap();
        std::os::unix::fs::symlink("../outside/secret.txt", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("linkdir")).unwrap();
        std::os::unix::fs::symlink("hello.txt", root.join("inlink")).unwrap();
        Tree { base }
    }

    fn root(&self) -> PathBuf {
        self.base.join("root")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// A router with the tree's root under `/static` and one API route.
struct Server {
    endpoint: Endpoint,
    _tree: Tree,
}

impl Server {
    fn start(tls: bool, configure: impl FnOnce(ServeDir) -> ServeDir) -> Server {
        init_logging();
        let tree = Tree::new();
        let mut router = Router::new();
        router.serve_dir("/static", configure(ServeDir::new(tree.root()).unwrap()));
        router.get("/api", |_req: RestRequest, resp: RestResponse| {
            resp.send(StatusCode::OK, "api")
        });
        let mut options = Options::default().threads(2);
        if tls {
            options = options.tls(server_tls_config());
        }
        let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
        endpoint.serve_threaded(router).unwrap();
        Server {
            endpoint,
            _tree: tree,
        }
    }

    fn port(&self) -> u16 {
        self.endpoint.local_addr().port()
    }

    /// One request on a fresh plain connection.
    fn ask(&self, request: RequestBuilder) -> Response {
        let mut client = PlainClient::connect(self.port()).unwrap();
        client.write_raw(&request.to_bytes()).unwrap();
        if request.method() == "HEAD" {
            client.read_head_response().unwrap()
        } else {
            client.read_response().unwrap()
        }
    }

    fn get(&self, target: &str, fields: &[(&str, &str)]) -> Response {
        let mut request = RequestBuilder::get(target);
        for (name, value) in fields {
            request = request.header(name, value);
        }
        self.ask(request)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.endpoint.shutdown();
    }
}

#[track_caller]
fn assert_status(resp: &Response, status: u16, what: &str) {
    assert_eq!(
        resp.status,
        status,
        "{what}: {}\n{}",
        resp.head,
        resp.text()
    );
}

#[test]
fn whole_files_with_type_validators_and_head() {
    let server = Server::start(false, |d| d);
    let resp = server.get("/static/hello.txt", &[]);
    assert_status(&resp, 200, "GET");
    assert_eq!(resp.text(), HELLO);
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert_eq!(resp.header("accept-ranges"), Some("bytes"));
    let etag = resp.header("etag").expect("an ETag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );
    let modified = resp.header("last-modified").expect("Last-Modified");
    assert!(httpdate::parse_http_date(modified).is_ok(), "{modified}");

    let head = server.ask(RequestBuilder::new("HEAD", "/static/hello.txt"));
    assert_status(&head, 200, "HEAD");
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(HELLO.len().to_string().as_str())
    );
    assert_eq!(head.header("etag"), Some(etag));

    // Several requests on one keep-alive connection, the big file between.
    let mut client = PlainClient::connect(server.port()).unwrap();
    for _ in 0..2 {
        let resp = client.request("/static/big.bin").unwrap();
        assert_status(&resp, 200, "big");
        assert_eq!(
            resp.header("content-type"),
            Some("application/octet-stream")
        );
        assert!(resp.body == big_content(), "big body differs");
        assert_eq!(client.request("/static/hello.txt").unwrap().text(), HELLO);
    }
    // Other routes still answer; other methods pass on to the routes.
    assert_eq!(server.get("/api", &[]).text(), "api");
    let post = server.ask(RequestBuilder::new("POST", "/static/hello.txt").body(b"x"));
    assert_status(&post, 404, "POST passes on to routing");
}

#[test]
fn directories_answer_their_index() {
    let server = Server::start(false, |d| d);
    let resp = server.get("/static/sub/", &[]);
    assert_status(&resp, 200, "dir/");
    assert_eq!(resp.text(), INDEX);
    assert_eq!(resp.header("content-type"), Some("text/html"));
    let resp = server.get("/static/sub?x=1", &[]);
    assert_status(&resp, 301, "dir");
    assert_eq!(resp.header("location"), Some("/static/sub/?x=1"));
    assert_status(&server.get("/static/empty/", &[]), 404, "no index");
    assert_status(&server.get("/static/missing.txt", &[]), 404, "missing");
    assert_status(&server.get("/static", &[]), 404, "root without index");
}

#[test]
fn single_ranges_partial_content() {
    let server = Server::start(false, |d| d);
    let len = HELLO.len();
    let cases: &[(&str, usize, usize)] = &[
        ("bytes=0-9", 0, 9),
        ("bytes=7-", 7, len - 1),
        ("bytes=-5", len - 5, len - 1),
        ("bytes=10-100000", 10, len - 1),
    ];
    for (range, start, end) in cases {
        let resp = server.get("/static/hello.txt", &[("Range", range)]);
        assert_status(&resp, 206, range);
        assert_eq!(resp.text(), &HELLO[*start..=*end], "{range}");
        assert_eq!(
            resp.header("content-range"),
            Some(format!("bytes {start}-{end}/{len}").as_str()),
            "{range}"
        );
        assert_eq!(
            resp.header("content-length"),
            Some((end - start + 1).to_string().as_str())
        );
    }
    // Unsatisfiable: 416 with the length.
    for range in ["bytes=1000-", "bytes=1000-2000"] {
        let resp = server.get("/static/hello.txt", &[("Range", range)]);
        assert_status(&resp, 416, range);
        assert_eq!(
            resp.header("content-range"),
            Some(format!("bytes */{len}").as_str())
        );
    }
    // Malformed, several, other units: ignored, the whole file.
    for range in [
        "bytes=9-2",
        "bytes=abc",
        "bytes=",
        "bytes=--1",
        "items=0-1",
        "bytes=0-1,4-5",
        "bytes = 0-1",
    ] {
        let resp = server.get("/static/hello.txt", &[("Range", range)]);
        assert_status(&resp, 200, range);
        assert_eq!(resp.text(), HELLO, "{range}");
        assert_eq!(resp.header("content-range"), None);
    }
    // HEAD ignores Range.
    let head =
        server.ask(RequestBuilder::new("HEAD", "/static/hello.txt").header("Range", "bytes=0-1"));
    assert_status(&head, 200, "HEAD with Range");

    // If-Range: the current ETag or date gives the range, another the file.
    let whole = server.get("/static/hello.txt", &[]);
    let etag = whole.header("etag").unwrap().to_owned();
    let modified = whole.header("last-modified").unwrap().to_owned();
    let cases: &[(&str, u16)] = &[
        (&etag, 206),
        (&modified, 206),
        ("\"stale\"", 200),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 200),
        ("not a validator", 200),
    ];
    for (if_range, status) in cases {
        let resp = server.get(
            "/static/hello.txt",
            &[("Range", "bytes=0-4"), ("If-Range", if_range)],
        );
        assert_status(&resp, *status, if_range);
    }
}

#[test]
fn conditional_requests() {
    let server = Server::start(false, |d| d);
    let whole = server.get("/static/hello.txt", &[]);
    let etag = whole.header("etag").unwrap().to_owned();
    let modified = whole.header("last-modified").unwrap().to_owned();
    let old = "Sun, 06 Nov 1994 08:49:37 GMT";
    let future = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3600));
    let weak = format!("W/{etag}");
    let listed = format!("\"x\", {etag}");
    let cases: &[(&[(&str, &str)], u16)] = &[
        (&[("If-None-Match", &etag)], 304),
        (&[("If-None-Match", &weak)], 304),
        (&[("If-None-Match", &listed)], 304),
        (&[("If-None-Match", "*")], 304),
        (&[("If-None-Match", "\"other\"")], 200),
        (&[("If-Modified-Since", &modified)], 304),
        (&[("If-Modified-Since", &future)], 304),
        (&[("If-Modified-Since", old)], 200),
        (
            &[
                ("If-None-Match", "\"other\""),
                ("If-Modified-Since", &modified),
            ],
            200,
        ),
        (&[("If-Match", &etag)], 200),
        (&[("If-Match", "*")], 200),
        (&[("If-Match", "\"other\"")], 412),
        (&[("If-Match", &weak)], 412),
        (&[("If-Unmodified-Since", old)], 412),
        (&[("If-Unmodified-Since", &modified)], 200),
        (&[("If-Match", &etag), ("If-Unmodified-Since", old)], 200),
        (&[("If-Match", "\"other\""), ("If-None-Match", &etag)], 412),
        // Dates that do not parse are ignored.
        (&[("If-Modified-Since", "yesterday")], 200),
        (
            &[("If-Unmodified-Since", "Sun, 99 Nov 1994 08:49:37 GMT")],
            200,
        ),
        (&[("If-Modified-Since", "")], 200),
    ];
    for (fields, status) in cases {
        let resp = server.get("/static/hello.txt", fields);
        assert_status(&resp, *status, &format!("{fields:?}"));
        match status {
            304 => {
                assert!(resp.body.is_empty(), "{fields:?}: 304 without body");
                assert_eq!(resp.header("etag"), Some(etag.as_str()), "{fields:?}");
                assert_eq!(resp.header("content-length"), None, "{fields:?}");
            }
            200 => assert_eq!(resp.text(), HELLO, "{fields:?}"),
            _ => assert!(!resp.text().contains(HELLO), "{fields:?}"),
        }
    }
    // A 304 to HEAD too, and the connection stays usable after a 304.
    let mut client = PlainClient::connect(server.port()).unwrap();
    let request = RequestBuilder::get("/static/hello.txt").header("If-None-Match", &etag);
    client.write_raw(&request.to_bytes()).unwrap();
    assert_status(&client.read_response().unwrap(), 304, "keep-alive 304");
    assert_eq!(client.request("/static/hello.txt").unwrap().text(), HELLO);
}

/// Raw request targets that try to leave the root.
const ESCAPES: &[&str] = &[
    "/static/../outside/secret.txt",
    "/static/sub/../../outside/secret.txt",
    "/static/%2e%2e/outside/secret.txt",
    "/static/%2E%2E/outside/secret.txt",
    "/static/.%2e/outside/secret.txt",
    "/static/..%2Foutside%2Fsecret.txt",
    "/static/..%2foutside%2fsecret.txt",
    "/static/sub%2F..%2F..%2Foutside%2Fsecret.txt",
    "/static/..%5Coutside%5Csecret.txt",
    "/static/..\\outside\\secret.txt",
    "/static/hello.txt%00.png",
    "/static/%00",
    "/static/escape",
    "/static/linkdir/secret.txt",
    "/static/%2e%2e%2f%2e%2e%2foutside/secret.txt",
    "/static//../outside/secret.txt",
    "/static/%252e%252e/outside/secret.txt",
    "/static/%ff%fe",
];

fn assert_refused(server: &Server, target: &str) -> u16 {
    let mut client = PlainClient::connect(server.port()).unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    client.write_raw(request.as_bytes()).unwrap();
    let resp = client.read_response().unwrap();
    assert!(
        resp.status == 400 || resp.status == 404,
        "{target}: {}\n{}",
        resp.head,
        resp.text()
    );
    assert!(!resp.text().contains(SECRET), "{target}: the secret leaked");
    resp.status
}

#[test]
fn paths_never_leave_the_root() {
    let server = Server::start(false, |d| d);
    for target in ESCAPES {
        assert_refused(&server, target);
    }
    // A link inside the root is refused too while links are not followed.
    assert_status(&server.get("/static/inlink", &[]), 404, "inner link");
    // The server is fine afterwards.
    assert_eq!(server.get("/static/hello.txt", &[]).text(), HELLO);
}

#[test]
fn followed_links_must_stay_under_the_root() {
    let server = Server::start(false, |d| d.follow_symlinks(true));
    for target in ESCAPES {
        assert_refused(&server, target);
    }
    let resp = server.get("/static/inlink", &[]);
    assert_status(&resp, 200, "inner link, followed");
    assert_eq!(resp.text(), HELLO);
}

#[test]
fn odd_fields_never_make_a_500() {
    let server = Server::start(false, |d| d);
    let values = [
        "",
        " ",
        "*",
        "\"",
        "W/",
        "bytes=",
        "bytes=-0",
        "bytes=0-0",
        "bytes=18446744073709551615-",
        "bytes=-18446744073709551616",
        "bytes=0-99999999999999999999999",
        "Mon, 32 Foo 9999 99:99:99 GMT",
        "\"a\",,,\"b\"",
    ];
    let names = [
        "Range",
        "If-Range",
        "If-Match",
        "If-None-Match",
        "If-Modified-Since",
        "If-Unmodified-Since",
    ];
    for name in names {
        for value in values {
            let fields: &[(&str, &str)] = if name == "If-Range" {
                &[("Range", "bytes=0-1"), (name, value)]
            } else {
                &[(name, value)]
            };
            let resp = server.get("/static/hello.txt", fields);
            assert!(
                [200, 206, 304, 412, 416].contains(&resp.status),
                "{name}: {value:?}: {}",
                resp.head
            );
        }
    }
}

/// `(status, Content-Range, body)` of a libcurl `GET` with `range`.
fn curl_range(port: u16, tls: bool, path: &str, range: Option<&str>) -> (u32, Vec<u8>) {
    let mut easy = Easy::new();
    let mut resolve = List::new();
    resolve
        .append(&format!("localhost:{port}:127.0.0.1"))
        .unwrap();
    easy.resolve(resolve).unwrap();
    let scheme = if tls { "https" } else { "http" };
    easy.url(&format!("{scheme}://localhost:{port}{path}"))
        .unwrap();
    if tls {
        easy.cainfo(certs::ca_pem()).unwrap();
    }
    if let Some(range) = range {
        easy.range(range).unwrap();
    }
    easy.timeout(Duration::from_secs(20)).unwrap();
    let body = pistachio_tests::libcurl::perform(&mut easy).unwrap();
    (easy.response_code().unwrap(), body)
}

#[test]
fn curl_fetches_whole_files_and_ranges_over_plain_and_tls() {
    let big = big_content();
    for tls in [false, true] {
        let server = Server::start(tls, |d| d);
        let (status, body) = curl_range(server.port(), tls, "/static/big.bin", None);
        assert_eq!(status, 200, "tls={tls}");
        assert!(body == big, "tls={tls}: whole body differs");
        let (start, end) = (1_000_000, 2_500_000);
        let range = format!("{start}-{end}");
        let (status, body) = curl_range(server.port(), tls, "/static/big.bin", Some(&range));
        assert_eq!(status, 206, "tls={tls}");
        assert!(body == big[start..=end], "tls={tls}: range body differs");
    }
}

#[test]
fn tls_clients_get_ranges_and_keep_the_connection() {
    let server = Server::start(true, |d| d);
    let big = big_content();
    let mut client = TlsClient::connect(server.port()).unwrap();
    for (start, end) in [
        (0usize, 99usize),
        (BIG_LEN - 4096, BIG_LEN - 1),
        (12345, 2_000_000),
    ] {
        let request =
            RequestBuilder::get("/static/big.bin").header("Range", &format!("bytes={start}-{end}"));
        client.write_raw(&request.to_bytes()).unwrap();
        let resp = client.read_response().unwrap();
        assert_status(&resp, 206, "TLS range");
        assert!(resp.body == big[start..=end], "{start}-{end}");
    }
    let resp = client.request("/static/hello.txt").unwrap();
    assert_eq!(resp.text(), HELLO);
}

/// `ServeDir` as an endpoint's whole handler.
#[test]
fn serve_dir_alone_as_a_handler() {
    init_logging();
    let tree = Tree::new();
    let dir = ServeDir::new(tree.root()).unwrap();
    let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(1)).unwrap();
    endpoint.serve_threaded(dir).unwrap();
    let port = endpoint.local_addr().port();
    let mut client = PlainClient::connect(port).unwrap();
    assert_eq!(client.request("/hello.txt").unwrap().text(), HELLO);
    let resp = client.request("/%2e%2e/outside/secret.txt").unwrap();
    assert_eq!(resp.status, 400);
    client
        .write_raw(&RequestBuilder::new("DELETE", "/hello.txt").to_bytes())
        .unwrap();
    let resp = client.read_response().unwrap();
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD"));
    endpoint.shutdown();
    assert!(Path::new(&tree.root()).join("hello.txt").exists());
}
