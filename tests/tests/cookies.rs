//! The cookie battery (`pistachio_rest::cookies`) with real clients:
//! curl's cookie engine round-trips what the server sets, attributes are
//! sent as set, signed and private cookies verify (and tampered ones read
//! as absent), and malformed `Cookie` fields are never an error.

use std::process::Command;
use std::sync::Arc;

use pistachio_rest::cookies::{Cookie, Key, SameSite};
use pistachio_rest::{Endpoint, Options, RestRequest, RestResponse, Router, StatusCode};
use pistachio_tests::client::{PlainClient, RequestBuilder, Response};
use pistachio_tests::init_logging;

fn key() -> Key {
    Key::from(&[7u8; 64])
}

fn serve() -> Endpoint {
    init_logging();
    let key = Arc::new(key());
    let mut router = Router::new();
    router
        .get("/whoami", |req: RestRequest, resp: RestResponse| {
            let jar = req.cookie_jar();
            let mut pairs: Vec<String> = jar
                .iter()
                .map(|c| format!("{}={}", c.name(), c.value()))
                .collect();
            pairs.sort();
            resp.send(StatusCode::OK, pairs.join(";"))
        })
        .get("/login", |_req: RestRequest, mut resp: RestResponse| {
            resp.set_cookie(
                Cookie::build(("session", "s 42"))
                    .path("/")
                    .domain("example.com")
                    .secure(true)
                    .http_only(true)
                    .same_site(SameSite::Strict)
                    .max_age(cookie_duration(3600)),
            );
            resp.set_cookie(("theme", "dark"));
            resp.remove_cookie("old", Some("/"));
            resp.send(StatusCode::OK, "in")
        })
        .get("/plain", |_req: RestRequest, mut resp: RestResponse| {
            resp.set_cookie(Cookie::build(("visits", "1")).path("/").http_only(true));
            resp.send(StatusCode::OK, "counted")
        });
    let signer = Arc::clone(&key);
    router.get("/sign", move |req: RestRequest, mut resp: RestResponse| {
        let mut jar = req.cookie_jar();
        jar.signed_mut(&signer).add(("user", "alice"));
        jar.private_mut(&signer).add(("secret", "s3cr3t"));
        resp.set_cookies_from(&jar);
        resp.send(StatusCode::OK, "signed")
    });
    let checker = Arc::clone(&key);
    router.get("/check", move |req: RestRequest, resp: RestResponse| {
        let jar = req.cookie_jar();
        let user = jar.signed(&checker).get("user");
        let secret = jar.private(&checker).get("secret");
        resp.send(
            StatusCode::OK,
            format!(
                "user={} secret={}",
                user.as_ref().map_or("-", |c| c.value()),
                secret.as_ref().map_or("-", |c| c.value())
            ),
        )
    });
    let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(1)).unwrap();
    endpoint.serve_threaded(router).unwrap();
    endpoint
}

fn cookie_duration(secs: i64) -> pistachio_rest::cookies::time::Duration {
    pistachio_rest::cookies::time::Duration::seconds(secs)
}

fn send(port: u16, request: RequestBuilder) -> Response {
    let mut client = PlainClient::connect(port).unwrap();
    client.write_raw(&request.to_bytes()).unwrap();
    client.read_response().unwrap()
}

fn set_cookies(response: &Response) -> Vec<&str> {
    response
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn request_cookies_are_read_into_a_jar() {
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    let response = send(
        port,
        RequestBuilder::get("/whoami")
            .header("Cookie", "a=1; b=two%20words")
            .header("Cookie", "c=3"),
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "a=1;b=two words;c=3");
}

#[test]
fn malformed_cookies_are_skipped_never_an_error() {
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    for (header, expected) in [
        (";;; =novalue; a=1; garbage", "a=1"),
        ("=", ""),
        ("a", ""),
        ("a=%zz; b=2", "a=%zz;b=2"),
        ("\"quoted\"=\"x\"; ok=1", "\"quoted\"=x;ok=1"),
        ("a=1;;;;b=2;", "a=1;b=2"),
    ] {
        let response = send(
            port,
            RequestBuilder::get("/whoami").header("Cookie", header),
        );
        assert_eq!(response.status, 200, "{header:?}");
        let text = response.text();
        for pair in expected.split(';').filter(|p| !p.is_empty()) {
            assert!(
                text.contains(pair.split('=').next().unwrap()),
                "{header:?}: {text}"
            );
        }
    }
    // Bytes that are not UTF-8, and a signed-cookie check with junk.
    let mut raw = PlainClient::connect(port).unwrap();
    raw.write_raw(b"GET /whoami HTTP/1.1\r\nHost: x\r\nCookie: a=\xff\xfe; b=1\r\n\r\n")
        .unwrap();
    assert_eq!(raw.read_response().unwrap().status, 200);
    let response = send(
        port,
        RequestBuilder::get("/check").header("Cookie", "user=junk; secret=%%%"),
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "user=- secret=-");
}

#[test]
fn set_cookie_carries_every_attribute() {
    let endpoint = serve();
    let response = send(endpoint.local_addr().port(), RequestBuilder::get("/login"));
    assert_eq!(response.status, 200);
    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 3, "{cookies:?}");
    let session = cookies.iter().find(|c| c.starts_with("session=")).unwrap();
    for attribute in [
        "session=s%2042",
        "; HttpOnly",
        "; SameSite=Strict",
        "; Secure",
        "; Path=/",
        "; Domain=example.com",
        "; Max-Age=3600",
    ] {
        assert!(
            session.contains(attribute),
            "{attribute} missing in {session}"
        );
    }
    assert!(cookies.contains(&"theme=dark"), "{cookies:?}");
    let old = cookies.iter().find(|c| c.starts_with("old=")).unwrap();
    assert!(old.contains("Max-Age=0"), "{old}");
}

#[test]
fn signed_and_private_cookies_verify_and_tampering_reads_as_absent() {
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    let signed = send(port, RequestBuilder::get("/sign"));
    let cookies = set_cookies(&signed);
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    // Name=value of each, as a browser sends them back.
    let pairs: Vec<&str> = cookies
        .iter()
        .map(|c| c.split(';').next().unwrap())
        .collect();
    let user = pairs.iter().find(|p| p.starts_with("user=")).unwrap();
    let secret = pairs.iter().find(|p| p.starts_with("secret=")).unwrap();
    assert!(user.ends_with("alice"), "signed, readable: {user}");
    assert!(!secret.contains("s3cr3t"), "private, encrypted: {secret}");
    let back = send(
        port,
        RequestBuilder::get("/check").header("Cookie", &pairs.join("; ")),
    );
    assert_eq!(back.text(), "user=alice secret=s3cr3t");

    let forged_user = user.replace("alice", "admin");
    let mut forged_secret = secret.to_string();
    let last = forged_secret.pop().unwrap();
    forged_secret.push(if last == 'A' { 'B' } else { 'A' });
    let tampered = send(
        port,
        RequestBuilder::get("/check").header("Cookie", &format!("{forged_user}; {forged_secret}")),
    );
    assert_eq!(tampered.status, 200);
    assert_eq!(tampered.text(), "user=- secret=-");
}

#[test]
fn curl_keeps_and_sends_back_what_the_server_sets() {
    let endpoint = serve();
    let base = format!("http://127.0.0.1:{}", endpoint.local_addr().port());
    let dir = std::env::temp_dir().join(format!("pistachio-cookies-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jar = dir.join("jar.txt");
    let jar = jar.to_str().unwrap();
    let set = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-c",
            jar,
            &format!("{base}/plain"),
        ])
        .output()
        .unwrap();
    assert!(set.status.success());
    assert_eq!(String::from_utf8_lossy(&set.stdout), "counted");
    let back = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-b",
            jar,
            &format!("{base}/whoami"),
        ])
        .output()
        .unwrap();
    assert!(back.status.success());
    assert_eq!(String::from_utf8_lossy(&back.stdout), "visits=1");
    let _ = std::fs::remove_dir_all(&dir);
}
