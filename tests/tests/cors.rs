//! The CORS battery (`pistachio_rest::cors`) with real clients: curl
//! preflights, simple requests from allowed and refused origins, and
//! bogus `Origin` fields that are never an error.

use std::process::Command;
use std::time::Duration;

use pistachio_rest::cors::Cors;
use pistachio_rest::{Endpoint, Method, Options, RestRequest, RestResponse, Router, StatusCode};
use pistachio_tests::client::{PlainClient, RequestBuilder, Response};
use pistachio_tests::init_logging;

const APP: &str = "https://app.example.com";

fn serve(cors: Cors) -> Endpoint {
    init_logging();
    let mut router = Router::new();
    router.middleware(cors.into_middleware());
    router
        .get("/data", |_req: RestRequest, resp: RestResponse| {
            resp.send(StatusCode::OK, "data")
        })
        .delete("/data", |_req: RestRequest, resp: RestResponse| {
            resp.send(StatusCode::OK, "deleted")
        });
    let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(1)).unwrap();
    endpoint.serve_threaded(router).unwrap();
    endpoint
}

fn strict() -> Cors {
    Cors::new()
        .allow_origins([APP])
        .allow_methods([Method::GET, Method::DELETE])
        .allow_headers(["content-type", "x-token"])
        .expose_headers(["x-request-id"])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600))
}

fn send(port: u16, request: RequestBuilder) -> Response {
    let mut client = PlainClient::connect(port).unwrap();
    client.write_raw(&request.to_bytes()).unwrap();
    client.read_response().unwrap()
}

/// The `Access-Control-*` fields of `response`.
fn cors_fields(response: &Response) -> Vec<(String, String)> {
    response
        .headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("access-control-"))
        .cloned()
        .collect()
}

/// curl's `-D -` output, split into the head's lines.
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    (head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn a_preflight_from_an_allowed_origin_is_answered_204_with_the_allowed_values() {
    let endpoint = serve(strict());
    let url = format!("http://127.0.0.1:{}/data", endpoint.local_addr().port());
    let (head, body) = curl(&[
        "-X",
        "OPTIONS",
        "-H",
        &format!("Origin: {APP}"),
        "-H",
        "Access-Control-Request-Method: DELETE",
        "-H",
        "Access-Control-Request-Headers: x-token",
        &url,
    ]);
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert!(body.is_empty());
    for line in [
        "access-control-allow-origin: https://app.example.com",
        "access-control-allow-credentials: true",
        "access-control-allow-methods: get, delete",
        "access-control-allow-headers: content-type, x-token",
        "access-control-max-age: 600",
        "vary: origin",
    ] {
        assert!(head.contains(line), "{line} missing in {head}");
    }
}

#[test]
fn a_preflight_from_another_origin_gets_no_cors_fields() {
    let endpoint = serve(strict());
    let url = format!("http://127.0.0.1:{}/data", endpoint.local_addr().port());
    let (head, _) = curl(&[
        "-X",
        "OPTIONS",
        "-H",
        "Origin: https://evil.example.net",
        "-H",
        "Access-Control-Request-Method: DELETE",
        &url,
    ]);
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert!(
        !head.lines().any(|l| l.starts_with("access-control-")),
        "{head}"
    );
    assert!(head.contains("vary: origin"), "{head}");
}

#[test]
fn simple_requests_get_the_origin_and_exposed_fields_only_when_allowed() {
    let endpoint = serve(strict());
    let port = endpoint.local_addr().port();
    let allowed = send(port, RequestBuilder::get("/data").header("Origin", APP));
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.text(), "data");
    assert_eq!(allowed.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        allowed.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        allowed.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert_eq!(allowed.header("vary"), Some("Origin"));

    let refused = send(
        port,
        RequestBuilder::get("/data").header("Origin", "https://app.example.com.evil.net"),
    );
    assert_eq!(refused.status, 200);
    assert!(cors_fields(&refused).is_empty(), "{}", refused.head);
    assert_eq!(refused.header("vary"), Some("Origin"));

    // No Origin at all: no CORS fields, but the answer still varies.
    let plain = send(port, RequestBuilder::get("/data"));
    assert!(cors_fields(&plain).is_empty());
    assert_eq!(plain.header("vary"), Some("Origin"));

    // The router's own answers carry them too.
    let missing = send(port, RequestBuilder::get("/nope").header("Origin", APP));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("access-control-allow-origin"), Some(APP));
}

#[test]
fn any_origin_is_a_star_but_never_with_credentials() {
    let endpoint = serve(Cors::new().allow_any_origin());
    let port = endpoint.local_addr().port();
    let response = send(port, RequestBuilder::get("/data").header("Origin", APP));
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(response.header("vary"), None);
    drop(endpoint);

    let endpoint = serve(
        Cors::new()
            .allow_any_origin()
            .allow_any_header()
            .allow_credentials(true),
    );
    let port = endpoint.local_addr().port();
    let response = send(port, RequestBuilder::get("/data").header("Origin", APP));
    assert_eq!(response.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        response.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(response.header("vary"), Some("Origin"));
    let preflight = send(
        port,
        RequestBuilder::new("OPTIONS", "/data")
            .header("Origin", APP)
            .header("Access-Control-Request-Method", "PUT")
            .header("Access-Control-Request-Headers", "x-a, x-b"),
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("x-a, x-b")
    );
    assert_eq!(preflight.header("access-control-allow-origin"), Some(APP));
}

#[test]
fn a_predicate_decides_origins() {
    let endpoint =
        serve(Cors::new().allow_origin_fn(|origin| origin.ends_with(".trusted.example")));
    let port = endpoint.local_addr().port();
    let yes = send(
        port,
        RequestBuilder::get("/data").header("Origin", "https://a.trusted.example"),
    );
    assert_eq!(
        yes.header("access-control-allow-origin"),
        Some("https://a.trusted.example")
    );
    let no = send(
        port,
        RequestBuilder::get("/data").header("Origin", "https://trusted.example.evil"),
    );
    assert!(cors_fields(&no).is_empty());
}

#[test]
fn bogus_origins_are_never_an_error() {
    let endpoint = serve(strict());
    let port = endpoint.local_addr().port();
    for origin in [
        "null",
        "",
        "*",
        "not a url",
        "https://app.example.com, https://x",
        "\u{e9}t\u{e9}",
    ] {
        let response = send(port, RequestBuilder::get("/data").header("Origin", origin));
        assert_eq!(response.status, 200, "{origin:?}");
        assert!(
            cors_fields(&response).is_empty(),
            "{origin:?}: {}",
            response.head
        );
        let preflight = send(
            port,
            RequestBuilder::new("OPTIONS", "/data")
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "\u{1}bogus"),
        );
        assert!(preflight.status < 500, "{origin:?}: {}", preflight.head);
    }
}
