//! Errors as data: the REST layer's error answers as
//! `application/problem+json` (RFC 9457) when the client's `Accept`
//! prefers JSON, plain text otherwise; handlers returning [`Problem`]s.

use std::io::Write;
use std::process::Command;

use pistachio_rest::compression::Compression;
use pistachio_rest::problem::Problem;
use pistachio_rest::serde_json::{self, json, Value};
use pistachio_rest::{Endpoint, Options, RestRequest, RestResponse, Router, StatusCode};
use pistachio_tests::client::{PlainClient, RequestBuilder, Response};
use pistachio_tests::init_logging;

#[derive(Debug)]
enum ShopError {
    OutOfStock { item: String },
}

impl From<ShopError> for Problem {
    fn from(e: ShopError) -> Problem {
        match e {
            ShopError::OutOfStock { item } => Problem::new(StatusCode::CONFLICT)
                .with_type("https://shop.example/probs/out-of-stock")
                .with_title("Out of stock")
                .with_detail(format!("no {item} left"))
                .with_instance("/orders/1")
                .with_extension("item", item),
        }
    }
}

fn order(item: &str) -> Result<u32, ShopError> {
    Err(ShopError::OutOfStock {
        item: item.to_owned(),
    })
}

#[derive(serde::Deserialize)]
struct Item {
    name: String,
}

fn serve() -> Endpoint {
    init_logging();
    let mut router = Router::new();
    router.middleware(
        Compression::new()
            .max_decoded_body(Some(1024))
            .into_middleware(),
    );
    router
        .get("/only-get", |_req: RestRequest, resp: RestResponse| {
            resp.send(StatusCode::OK, "ok")
        })
        .post(
            "/items",
            |req: RestRequest, resp: RestResponse| -> Result<(), Problem> {
                let item: Item = req.json()?;
                if item.name.is_empty() {
                    return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                        .with_detail("name must not be empty")
                        .with_extension("field", "name"));
                }
                resp.send(StatusCode::CREATED, item.name);
                Ok(())
            },
        )
        .post(
            "/orders/:item",
            |req: RestRequest, resp: RestResponse| -> Result<(), Problem> {
                let n = order(req.param_str("item").unwrap_or(""))?;
                resp.send(StatusCode::OK, n.to_string());
                Ok(())
            },
        );
    let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(1)).unwrap();
    endpoint.serve_threaded(router).unwrap();
    endpoint
}

fn send(port: u16, request: RequestBuilder) -> Response {
    let mut client = PlainClient::connect(port).unwrap();
    client.write_raw(&request.to_bytes()).unwrap();
    client.read_response().unwrap()
}

fn problem(response: &Response) -> Value {
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{}",
        response.head
    );
    serde_json::from_slice(&response.body).expect("a JSON body")
}

const JSON: &str = "application/json";

#[test]
fn router_answers_are_problems_for_json_clients_and_text_for_others() {
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    let missing = send(port, RequestBuilder::get("/nowhere").header("Accept", JSON));
    assert_eq!(missing.status, 404);
    assert_eq!(
        problem(&missing),
        json!({"type": "about:blank", "title": "Not Found", "status": 404,
               "detail": "Could not find a matching route"})
    );
    let wrong = send(
        port,
        RequestBuilder::new("DELETE", "/only-get").header("Accept", "application/problem+json"),
    );
    assert_eq!(wrong.status, 405);
    assert!(wrong.header("allow").is_some());
    assert_eq!(problem(&wrong)["status"], 405);

    for accept in [
        None,
        Some("*/*"),
        Some("text/html,*/*;q=0.8"),
        Some("application/json;q=0.1, text/plain"),
    ] {
        let mut request = RequestBuilder::get("/nowhere");
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        let text = send(port, request);
        assert_eq!(text.status, 404, "{accept:?}");
        assert_eq!(
            text.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{accept:?}"
        );
        assert_eq!(text.text(), "Could not find a matching route");
    }
}

#[test]
fn bad_and_invalid_json_bodies_are_problems() {
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    let post = |body: &[u8]| {
        RequestBuilder::new("POST", "/items")
            .header("Accept", JSON)
            .header("Content-Type", JSON)
            .body(body)
    };
    let broken = send(port, post(b"{\"name\": "));
    assert_eq!(broken.status, 400);
    let body = problem(&broken);
    assert_eq!(body["title"], "Bad Request");
    assert!(
        body["detail"].as_str().unwrap().starts_with("invalid JSON"),
        "{body}"
    );

    let invalid = send(port, post(b"{\"name\": \"\"}"));
    assert_eq!(invalid.status, 422);
    assert_eq!(
        problem(&invalid),
        json!({"type": "about:blank", "title": "Unprocessable Entity", "status": 422,
               "detail": "name must not be empty", "field": "name"})
    );
    let created = send(port, post(b"{\"name\": \"tea\"}"));
    assert_eq!(created.status, 201);
    assert_eq!(created.text(), "tea");
}

#[test]
fn a_handler_error_into_problem_keeps_every_member() {
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    let response = send(
        port,
        RequestBuilder::new("POST", "/orders/tea").header("Accept", JSON),
    );
    assert_eq!(response.status, 409);
    assert_eq!(
        problem(&response),
        json!({"type": "https://shop.example/probs/out-of-stock", "title": "Out of stock",
               "status": 409, "detail": "no tea left", "instance": "/orders/1",
               "item": "tea"})
    );
    // A plain-text client gets the detail.
    let text = send(port, RequestBuilder::new("POST", "/orders/tea"));
    assert_eq!(text.status, 409);
    assert_eq!(text.text(), "no tea left");
}

#[test]
fn a_battery_413_is_a_problem_too() {
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&[b'a'; 64 * 1024]).unwrap();
    let bomb = gz.finish().unwrap();
    let response = send(
        port,
        RequestBuilder::new("POST", "/items")
            .header("Accept", JSON)
            .header("Content-Type", JSON)
            .header("Content-Encoding", "gzip")
            .body(&bomb),
    );
    assert_eq!(response.status, 413);
    assert_eq!(problem(&response)["status"], 413);
}

#[test]
fn curl_asking_for_problem_json_gets_it() {
    let endpoint = serve();
    let url = format!("http://127.0.0.1:{}/nowhere", endpoint.local_addr().port());
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-H",
            "Accept: application/problem+json",
            "-w",
            "\n%{content_type} %{http_code}",
            &url,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, meta) = text.rsplit_once('\n').unwrap();
    assert_eq!(meta, "application/problem+json 404");
    let value: Value = serde_json::from_str(body).unwrap();
    assert_eq!(value["title"], "Not Found");
}

#[test]
fn garbage_accept_is_never_an_error() {
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    for accept in [
        ";;;",
        "application/json;q=7",
        "application/json;q=",
        "*/*;q=abc, /",
        "\u{e9}",
    ] {
        let response = send(
            port,
            RequestBuilder::get("/nowhere").header("Accept", accept),
        );
        assert_eq!(response.status, 404, "{accept:?}");
        assert_eq!(
            response.text(),
            "Could not find a matching route",
            "{accept:?}"
        );
    }
}
