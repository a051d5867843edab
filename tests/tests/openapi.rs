//! The OpenAPI document of a `Description` with everything it can say:
//! security schemes (bearer, API key) required API-wide, per operation or
//! not at all; parameters, responses and response headers that middleware
//! adds to every route; optional and nullable fields; schemas derived from
//! Rust types with `schemars` (nested and recursive types in
//! `components.schemas`). The served document is checked with
//! `openapi-spec-validator`, and the middleware it documents is shown to
//! run.

use pistachio_rest::testing::TestClient;
use pistachio_rest::{
    ApiDoc, Description, Flow, HeaderMap, HeaderValue, HttpError, Middleware, RequestInfo,
    RestRequest, RestResponse, Router, Schema, SecurityScheme, StatusCode,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// An item of the shop.
#[derive(Serialize, Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Item {
    id: u64,
    name: String,
    /// Shown under the name, if set.
    note: Option<String>,
    price: Price,
    /// Items sold with this one.
    bundle: Vec<Item>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Price {
    cents: u64,
    currency: Currency,
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[allow(dead_code)]
enum Currency {
    Eur,
    Usd,
}

/// Adds `X-Request-Id` to every answer.
struct RequestId;

impl Middleware for RequestId {
    fn on_response(&self, _req: &RequestInfo, _status: StatusCode, headers: &mut HeaderMap) {
        headers.insert("x-request-id", HeaderValue::from_static("r-1"));
    }
}

fn ok(_req: RestRequest, resp: RestResponse) {
    resp.send(StatusCode::OK, "ok");
}

fn shop() -> Description {
    let mut api = Description::new("Shop", "1.0.0");
    api.security_scheme("apiKey", SecurityScheme::api_key_header("X-Api-Key"));
    // A bearer-token check on every described route, documented.
    let auth = ApiDoc::new()
        .security("bearer", SecurityScheme::bearer_format("JWT"))
        .response(StatusCode::UNAUTHORIZED, "Missing or invalid token");
    api.middleware(
        |req: &mut RestRequest, resp: RestResponse| {
            let public = req.path() == "/health";
            match req.http().authorization() {
                Some(a) if a.starts_with("Bearer ") || public => Flow::Continue(resp),
                _ if public => Flow::Continue(resp),
                _ => Flow::Reject(HttpError::unauthorized("token required")),
            }
        },
        auth,
    );
    api.layer(
        RequestId,
        ApiDoc::new()
            .header_param("X-Request-Id", Schema::string(), "Reused if sent", false)
            .response_header("X-Request-Id", Schema::string(), "The request's id")
            .response_body(
                StatusCode::TOO_MANY_REQUESTS,
                "Slow down",
                "application/json",
                Schema::object(&[("retry_after", Schema::integer())])
                    .optional(&[("reason", Schema::string().nullable())]),
            ),
    );
    // What an endpoint-wide middleware adds.
    api.document(ApiDoc::new().response(StatusCode::SERVICE_UNAVAILABLE, "Overloaded"));
    api.get("/items/:id")
        .summary("One item")
        .path_param("id", Schema::integer(), "The item")
        .response_body(
            StatusCode::OK,
            "The item",
            "application/json",
            Schema::of::<Item>(),
        )
        .response(StatusCode::NOT_FOUND, "No such item")
        .handler(ok);
    api.put("/items/:id")
        .request_body(&["application/json"], Schema::of::<Item>(), true)
        .response(StatusCode::NO_CONTENT, "Stored")
        .security("apiKey")
        .security("bearer")
        .handler(ok);
    api.get("/health")
        .public()
        .response(StatusCode::OK, "Up")
        .handler(ok);
    api
}

#[test]
fn the_document_says_everything_and_validates() {
    let doc = shop().openapi();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        schemes["bearer"],
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    );
    assert_eq!(
        schemes["apiKey"],
        json!({"type": "apiKey", "in": "header", "name": "X-Api-Key"})
    );
    assert_eq!(doc["security"], json!([{"bearer": []}]));

    let get = &doc["paths"]["/items/{id}"]["get"];
    assert!(get.get("security").is_none(), "the API's requirement");
    let names: Vec<&str> = get["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["id", "X-Request-Id"]);
    let responses = get["responses"].as_object().unwrap();
    let mut codes: Vec<&str> = responses.keys().map(String::as_str).collect();
    codes.sort();
    assert_eq!(codes, ["200", "401", "404", "429", "503"]);
    for (code, response) in responses {
        assert_eq!(
            response["headers"]["X-Request-Id"]["schema"]["type"], "string",
            "{code}"
        );
    }
    let limited = &responses["429"]["content"]["application/json"]["schema"];
    assert_eq!(limited["required"], json!(["retry_after"]));
    assert_eq!(limited["properties"]["reason"]["nullable"], true);

    // The derived schema: optional + nullable field, named types by
    // reference, the recursive one too.
    assert_eq!(
        responses["200"]["content"]["application/json"]["schema"],
        json!({"$ref": "#/components/schemas/Item"})
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let item = &schemas["Item"];
    assert_eq!(item["required"], json!(["id", "name", "price", "bundle"]));
    assert_eq!(item["properties"]["note"]["nullable"], true);
    assert_eq!(
        item["properties"]["note"]["description"],
        "Shown under the name, if set."
    );
    assert_eq!(
        item["properties"]["price"]["$ref"],
        "#/components/schemas/Price"
    );
    assert_eq!(
        item["properties"]["bundle"]["items"]["$ref"],
        "#/components/schemas/Item"
    );
    for name in ["Item", "Price", "Currency"] {
        assert!(schemas.contains_key(name), "{name} in {schemas:?}");
    }

    let put = &doc["paths"]["/items/{id}"]["put"];
    assert_eq!(put["security"], json!([{"apiKey": []}, {"bearer": []}]));
    assert_eq!(
        put["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Item"
    );
    let health = &doc["paths"]["/health"]["get"];
    assert_eq!(health["security"], json!([]));
    assert!(health["responses"].get("401").is_none(), "public: no 401");
    assert_eq!(health["responses"]["503"]["description"], "Overloaded");

    let router = Router::from_description(shop()).unwrap();
    let client = TestClient::new(router);
    let served = client.get("/openapi.json").send();
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.json::<Value>(), doc);
    pistachio_tests::openapi::validate(&served.body);
}

#[test]
fn documented_middleware_runs_on_described_routes() {
    let client = TestClient::new(Router::from_description(shop()).unwrap());
    let r = client.get("/items/1").send();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("x-request-id"), Some("r-1"));
    let r = client
        .get("/items/1")
        .header("Authorization", "Bearer t")
        .send();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-request-id"), Some("r-1"));
    assert_eq!(client.get("/health").send().status, StatusCode::OK);
    // The document's own route is not behind the described middleware.
    assert_eq!(client.get("/openapi.json").send().status, StatusCode::OK);
}

#[test]
fn undeclared_security_schemes_are_refused() {
    let mut api = Description::new("T", "1");
    api.get("/x").security("nobody").handler(ok);
    let err = Router::from_description(api).unwrap_err();
    assert!(err.to_string().contains("\"nobody\""), "{err}");
    let mut api = Description::new("T", "1");
    api.require("nobody");
    api.get("/x").handler(ok);
    assert!(Router::from_description(api).is_err());
}

#[test]
fn plain_schemas_stay_valid_without_required_fields() {
    let mut api = Description::new("T", "1");
    api.post("/notes")
        .request_body(
            &["application/json"],
            Schema::object(&[]).optional(&[("text", Schema::string())]),
            true,
        )
        .response(StatusCode::CREATED, "Made")
        .handler(ok);
    let doc = api.openapi();
    let schema =
        &doc["paths"]["/notes"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert!(schema.get("required").is_none(), "{schema}");
    pistachio_tests::openapi::validate(serde_json::to_string(&doc).unwrap().as_bytes());
}
