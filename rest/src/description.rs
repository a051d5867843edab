//! [`Description`]: an API described in code (Pistache's
//! `Rest::Description`), from which both the [`Router`] and the OpenAPI 3
//! document are made, so the two cannot drift apart.

use std::fmt;
use std::sync::Arc;

use pistachio_http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::request::RestRequest;
use crate::response::{Outcome, RestResponse};
use crate::router::FlatRoute;
use crate::router::{box_handler, BoxHandler, BoxMiddleware, Flow, RouteError, Router};
use crate::tree::{parse_pattern, Segment};

/// The OpenAPI version of the generated documents.
pub const OPENAPI_VERSION: &str = "3.0.3";

/// A JSON Schema (the OpenAPI 3.0 dialect) for a parameter or a body.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema(Value);

impl Schema {
    /// `{"type": "string"}`.
    pub fn string() -> Schema {
        Schema(json!({"type": "string"}))
    }

    /// `{"type": "integer"}`.
    pub fn integer() -> Schema {
        Schema(json!({"type": "integer"}))
    }

    /// `{"type": "number"}`.
    pub fn number() -> Schema {
        Schema(json!({"type": "number"}))
    }

    /// `{"type": "boolean"}`.
    pub fn boolean() -> Schema {
        Schema(json!({"type": "boolean"}))
    }

    /// Any bytes: `{"type": "string", "format": "binary"}`.
    pub fn binary() -> Schema {
        Schema(json!({"type": "string", "format": "binary"}))
    }

    /// An array of `items`.
    pub fn array(items: Schema) -> Schema {
        Schema(json!({"type": "array", "items": items.0}))
    }

    /// An object with these properties, all required.
    pub fn object(properties: &[(&str, Schema)]) -> Schema {
        let props: Map<String, Value> = properties
            .iter()
            .map(|(name, schema)| ((*name).to_owned(), schema.0.clone()))
            .collect();
        let required: Vec<&str> = properties.iter().map(|(name, _)| *name).collect();
        Schema(json!({"type": "object", "properties": props, "required": required}))
    }

    /// Any schema written as JSON.
    pub fn from_json(schema: Value) -> Schema {
        Schema(schema)
    }

    /// The schema as JSON.
    pub fn to_json(&self) -> &Value {
        &self.0
    }
}

/// Where a documented parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamIn {
    Path,
    Query,
    Header,
}

#[derive(Debug, Clone)]
struct ParamDoc {
    name: String,
    location: ParamIn,
    schema: Schema,
    description: String,
    required: bool,
}

#[derive(Debug, Clone)]
struct ResponseDoc {
    status: StatusCode,
    description: String,
    content: Option<(String, Schema)>,
}

/// One described route: method, pattern, handler, and its documentation.
/// Made by [`Description::route`] and its shorthands; every setter returns
/// the route again so calls chain.
pub struct RouteDesc {
    method: Method,
    pattern: String,
    handler: Option<BoxHandler>,
    middleware: Vec<BoxMiddleware>,
    summary: Option<String>,
    description: Option<String>,
    tags: Vec<String>,
    params: Vec<ParamDoc>,
    body: Option<(Vec<String>, Schema, bool)>,
    responses: Vec<ResponseDoc>,
    hidden: bool,
}

impl fmt::Debug for RouteDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteDesc")
            .field("method", &self.method)
            .field("pattern", &self.pattern)
            .field("has_handler", &self.handler.is_some())
            .field("summary", &self.summary)
            .field("params", &self.params)
            .field("responses", &self.responses)
            .field("hidden", &self.hidden)
            .finish_non_exhaustive()
    }
}

impl RouteDesc {
    /// The handler of this route (required).
    pub fn handler<F, O>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(RestRequest, RestResponse) -> O + Send + Sync + 'static,
        O: Outcome,
    {
        self.handler = Some(box_handler(handler));
        self
    }

    /// A middleware run before this route's handler.
    pub fn middleware<F>(&mut self, middleware: F) -> &mut Self
    where
        F: Fn(&mut RestRequest, RestResponse) -> Flow + Send + Sync + 'static,
    {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// A one-line summary.
    pub fn summary(&mut self, text: &str) -> &mut Self {
        self.summary = Some(text.to_owned());
        self
    }

    /// A longer description (CommonMark).
    pub fn description(&mut self, text: &str) -> &mut Self {
        self.description = Some(text.to_owned());
        self
    }

    /// Files the route under `tag`.
    pub fn tag(&mut self, tag: &str) -> &mut Self {
        self.tags.push(tag.to_owned());
        self
    }

    /// Documents path parameter `name` (`"id"` or `":id"`), which must be
    /// in the pattern. Undocumented parameters are strings.
    pub fn path_param(&mut self, name: &str, schema: Schema, description: &str) -> &mut Self {
        self.param(name, ParamIn::Path, schema, description, true)
    }

    /// Documents query parameter `name`.
    pub fn query_param(
        &mut self,
        name: &str,
        schema: Schema,
        description: &str,
        required: bool,
    ) -> &mut Self {
        self.param(name, ParamIn::Query, schema, description, required)
    }

    /// Documents request header `name`.
    pub fn header_param(
        &mut self,
        name: &str,
        schema: Schema,
        description: &str,
        required: bool,
    ) -> &mut Self {
        self.param(name, ParamIn::Header, schema, description, required)
    }

    fn param(
        &mut self,
        name: &str,
        location: ParamIn,
        schema: Schema,
        description: &str,
        required: bool,
    ) -> &mut Self {
        self.params.push(ParamDoc {
            name: name.trim_start_matches(':').to_owned(),
            location,
            schema,
            description: description.to_owned(),
            required,
        });
        self
    }

    /// Documents the request body: its media types (e.g.
    /// `["application/json"]`, or `["*/*"]` for anything) and schema.
    pub fn request_body(
        &mut self,
        media_types: &[&str],
        schema: Schema,
        required: bool,
    ) -> &mut Self {
        let media = media_types.iter().map(|m| (*m).to_owned()).collect();
        self.body = Some((media, schema, required));
        self
    }

    /// Documents a response without a body.
    pub fn response(&mut self, status: StatusCode, description: &str) -> &mut Self {
        self.responses.push(ResponseDoc {
            status,
            description: description.to_owned(),
            content: None,
        });
        self
    }

    /// Documents a response with a body of `media_type` and `schema`.
    pub fn response_body(
        &mut self,
        status: StatusCode,
        description: &str,
        media_type: &str,
        schema: Schema,
    ) -> &mut Self {
        self.responses.push(ResponseDoc {
            status,
            description: description.to_owned(),
            content: Some((media_type.to_owned(), schema)),
        });
        self
    }

    /// Routes it, but leaves it out of the OpenAPI document.
    pub fn hidden(&mut self) -> &mut Self {
        self.hidden = true;
        self
    }
}

/// An API described in code: its info, servers and routes, with their
/// handlers. [`Router::from_description`] turns it into a router that also
/// serves the OpenAPI document at [`openapi_path`](Description::openapi_path).
///
/// ```
/// use pistachio_rest::{Description, Method, RestRequest, RestResponse, Router, Schema, StatusCode};
///
/// let mut api = Description::new("Greeter", "1.0.0");
/// api.get("/hello/:name")
///     .summary("Greets someone")
///     .path_param("name", Schema::string(), "Who to greet")
///     .response_body(StatusCode::OK, "The greeting", "text/plain", Schema::string())
///     .handler(|req: RestRequest, resp: RestResponse| {
///         let name = req.param_str("name").unwrap_or_default().to_owned();
///         resp.send(StatusCode::OK, format!("Hello, {name}"));
///     });
/// let doc = api.openapi();
/// assert_eq!(doc["paths"]["/hello/{name}"]["get"]["summary"], "Greets someone");
/// let router = Router::from_description(api)?;
/// assert!(router.find_route(&Method::GET, "/openapi.json").is_some());
/// # Ok::<(), pistachio_rest::RouteError>(())
/// ```
pub struct Description {
    title: String,
    version: String,
    description: Option<String>,
    servers: Vec<(String, Option<String>)>,
    openapi_path: Option<String>,
    routes: Vec<RouteDesc>,
}

impl fmt::Debug for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Description")
            .field("title", &self.title)
            .field("version", &self.version)
            .field("servers", &self.servers)
            .field("openapi_path", &self.openapi_path)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

macro_rules! describe_verbs {
    ($($(#[$doc:meta])* $name:ident => $method:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&mut self, pattern: &str) -> &mut RouteDesc {
                self.route(Method::$method, pattern)
            }
        )*
    };
}

impl Description {
    /// An API named `title` at `version`, its document served at
    /// `/openapi.json`.
    #[must_use]
    pub fn new(title: &str, version: &str) -> Description {
        Description {
            title: title.to_owned(),
            version: version.to_owned(),
            description: None,
            servers: Vec::new(),
            openapi_path: Some("/openapi.json".to_owned()),
            routes: Vec::new(),
        }
    }

    /// A description of the whole API (CommonMark).
    pub fn description(&mut self, text: &str) -> &mut Self {
        self.description = Some(text.to_owned());
        self
    }

    /// Adds a server URL the API is reachable at.
    pub fn server(&mut self, url: &str, description: Option<&str>) -> &mut Self {
        self.servers
            .push((url.to_owned(), description.map(str::to_owned)));
        self
    }

    /// Where the router serves the OpenAPI document (`GET`, JSON); `None`
    /// to not serve it. Default `/openapi.json`.
    pub fn openapi_path(&mut self, path: Option<&str>) -> &mut Self {
        self.openapi_path = path.map(str::to_owned);
        self
    }

    /// Describes the `method` route of `pattern`; set its handler with
    /// [`RouteDesc::handler`].
    pub fn route(&mut self, method: Method, pattern: &str) -> &mut RouteDesc {
        self.routes.push(RouteDesc {
            method,
            pattern: pattern.to_owned(),
            handler: None,
            middleware: Vec::new(),
            summary: None,
            description: None,
            tags: Vec::new(),
            params: Vec::new(),
            body: None,
            responses: Vec::new(),
            hidden: false,
        });
        self.routes.last_mut().expect("just pushed")
    }

    describe_verbs! {
        /// Describes a `GET` route.
        get => GET;
        /// Describes a `POST` route.
        post => POST;
        /// Describes a `PUT` route.
        put => PUT;
        /// Describes a `PATCH` route.
        patch => PATCH;
        /// Describes a `DELETE` route.
        delete => DELETE;
        /// Describes a `HEAD` route.
        head => HEAD;
        /// Describes an `OPTIONS` route.
        options => OPTIONS;
    }

    /// Checks every route: a valid pattern, a handler, and documented path
    /// parameters that exist in the pattern.
    fn validate(&self) -> Result<(), RouteError> {
        for route in &self.routes {
            let segments = parse_pattern(&route.pattern).map_err(RouteError::InvalidPattern)?;
            if route.handler.is_none() {
                return Err(RouteError::MissingHandler {
                    method: route.method.clone(),
                    pattern: route.pattern.clone(),
                });
            }
            for doc in route.params.iter().filter(|p| p.location == ParamIn::Path) {
                let known = segments.iter().any(|s| match s {
                    Segment::Param(n) | Segment::Optional(n) => **n == *doc.name,
                    _ => false,
                });
                if !known {
                    return Err(RouteError::InvalidPattern(format!(
                        "route {} {} documents path parameter :{} which its pattern lacks",
                        route.method, route.pattern, doc.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// The OpenAPI 3 document of the described (non-hidden) routes.
    pub fn openapi(&self) -> Value {
        let mut info = json!({"title": self.title, "version": self.version});
        if let Some(text) = &self.description {
            info["description"] = json!(text);
        }
        let mut paths = Map::new();
        for route in self.routes.iter().filter(|r| !r.hidden) {
            let Ok(segments) = parse_pattern(&route.pattern) else {
                continue;
            };
            for (path, present) in openapi_paths(&segments) {
                let item = paths
                    .entry(path.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                item[route.method.as_str().to_ascii_lowercase()] =
                    operation(route, &path, &present);
            }
        }
        let mut doc = json!({
            "openapi": OPENAPI_VERSION,
            "info": info,
            "paths": paths,
        });
        if !self.servers.is_empty() {
            doc["servers"] = self
                .servers
                .iter()
                .map(|(url, description)| match description {
                    Some(d) => json!({"url": url, "description": d}),
                    None => json!({"url": url}),
                })
                .collect();
        }
        doc
    }
}

/// The OpenAPI paths of a pattern, each with the path parameters it
/// contains. `:name` and `*` become `{name}` and `{splatN}`; OpenAPI has no
/// optional path parameters, so each `:name?` doubles the paths: one with
/// `{name}`, one without the segment.
fn openapi_paths(segments: &[Segment]) -> Vec<(String, Vec<String>)> {
    let mut out = vec![(String::new(), Vec::new())];
    let mut splat = 0;
    for segment in segments {
        let (text, name, optional) = match segment {
            Segment::Fixed(text) => (text.clone(), None, false),
            Segment::Param(n) => (format!("{{{n}}}"), Some(n.to_string()), false),
            Segment::Optional(n) => (format!("{{{n}}}"), Some(n.to_string()), true),
            Segment::Splat => {
                let n = format!("splat{splat}");
                splat += 1;
                (format!("{{{n}}}"), Some(n), false)
            }
        };
        let mut next = Vec::new();
        for (path, names) in out {
            if optional {
                next.push((path.clone(), names.clone()));
            }
            let mut names = names;
            names.extend(name.clone());
            next.push((format!("{path}/{text}"), names));
        }
        out = next;
    }
    for (path, _) in &mut out {
        if path.is_empty() {
            path.push('/');
        }
    }
    out
}

/// One OpenAPI operation object.
fn operation(route: &RouteDesc, path: &str, path_params: &[String]) -> Value {
    let mut op = Map::new();
    let id: String = format!("{} {path}", route.method.as_str().to_ascii_lowercase())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let id = id
        .split('_')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    op.insert("operationId".into(), json!(id));
    if let Some(s) = &route.summary {
        op.insert("summary".into(), json!(s));
    }
    if let Some(d) = &route.description {
        op.insert("description".into(), json!(d));
    }
    if !route.tags.is_empty() {
        op.insert("tags".into(), json!(route.tags));
    }
    let mut params = Vec::new();
    for name in path_params {
        let doc = route
            .params
            .iter()
            .find(|p| p.location == ParamIn::Path && p.name == *name);
        let mut p = json!({
            "name": name,
            "in": "path",
            "required": true,
            "schema": doc.map_or_else(|| Schema::string().0, |d| d.schema.0.clone()),
        });
        if let Some(d) = doc.filter(|d| !d.description.is_empty()) {
            p["description"] = json!(d.description);
        }
        params.push(p);
    }
    for doc in route.params.iter().filter(|p| p.location != ParamIn::Path) {
        let mut p = json!({
            "name": doc.name,
            "in": if doc.location == ParamIn::Query { "query" } else { "header" },
            "required": doc.required,
            "schema": doc.schema.0,
        });
        if !doc.description.is_empty() {
            p["description"] = json!(doc.description);
        }
        params.push(p);
    }
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some((media, schema, required)) = &route.body {
        let content: Map<String, Value> = media
            .iter()
            .map(|m| (m.clone(), json!({"schema": schema.0})))
            .collect();
        op.insert(
            "requestBody".into(),
            json!({"required": required, "content": content}),
        );
    }
    let mut responses = Map::new();
    for r in &route.responses {
        let mut resp = json!({"description": r.description});
        if let Some((media, schema)) = &r.content {
            resp["content"] = json!({ media.clone(): {"schema": schema.0} });
        }
        responses.insert(r.status.as_str().to_owned(), resp);
    }
    if responses.is_empty() {
        responses.insert("default".into(), json!({"description": "Response"}));
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

impl Router {
    /// A router with every route of `description`, plus `GET` of its
    /// OpenAPI document at its [`openapi_path`](Description::openapi_path).
    /// Fails, adding nothing, if a route has no handler, an invalid pattern,
    /// documents a path parameter its pattern lacks, or is a duplicate.
    pub fn from_description(description: Description) -> Result<Router, RouteError> {
        let mut router = Router::new();
        router.describe(description)?;
        Ok(router)
    }

    /// Adds every route of `description` (and its OpenAPI document route)
    /// to this router; see [`Router::from_description`]. All or nothing.
    pub fn describe(&mut self, description: Description) -> Result<&mut Self, RouteError> {
        description.validate()?;
        let document = serde_json::to_vec_pretty(&description.openapi())
            .expect("a JSON value always serialises");
        let document = Arc::new(document);
        // Each described route keeps its own handler and middleware as they
        // are: no wrapping, no extra call per request.
        let mut flat: Vec<FlatRoute> = Vec::new();
        if let Some(path) = description.openapi_path {
            let serve = move |_req: RestRequest, mut resp: RestResponse| {
                resp.set_mime("application/json");
                resp.send(StatusCode::OK, document.as_slice());
            };
            flat.push(FlatRoute {
                method: Method::GET,
                pattern: path,
                handler: crate::router::box_handler(serve),
                middleware: Vec::new(),
                layers: Vec::new(),
            });
        }
        for route in description.routes {
            let handler = route.handler.expect("validated: every route has a handler");
            flat.push(FlatRoute {
                method: route.method,
                pattern: route.pattern,
                handler,
                middleware: route.middleware,
                layers: Vec::new(),
            });
        }
        self.mount_flat(flat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestClient;

    fn noop(_req: RestRequest, resp: RestResponse) {
        resp.send(StatusCode::OK, "ok");
    }

    #[test]
    fn paths_and_parameters() {
        let mut api = Description::new("T", "1");
        api.server("https://localhost:9443", Some("local"))
            .description("Test API");
        api.get("/a/:id/b/:opt?/*")
            .path_param("id", Schema::integer(), "The id")
            .query_param("q", Schema::string(), "", false)
            .response(StatusCode::OK, "fine")
            .handler(noop);
        api.put("/blob")
            .request_body(&["*/*"], Schema::binary(), true)
            .response(StatusCode::CREATED, "made")
            .handler(noop);
        api.get("/secret").hidden().handler(noop);
        api.get("/").handler(noop);
        let doc = api.openapi();
        assert_eq!(doc["openapi"], OPENAPI_VERSION);
        assert_eq!(doc["info"]["description"], "Test API");
        assert_eq!(doc["servers"][0]["url"], "https://localhost:9443");
        let paths = doc["paths"].as_object().unwrap();
        let mut keys: Vec<&str> = paths.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "/",
                "/a/{id}/b/{opt}/{splat0}",
                "/a/{id}/b/{splat0}",
                "/blob"
            ]
        );
        let op = &paths["/a/{id}/b/{opt}/{splat0}"]["get"];
        assert_eq!(op["parameters"][0]["schema"]["type"], "integer");
        assert_eq!(op["parameters"][0]["description"], "The id");
        assert_eq!(op["parameters"][1]["name"], "opt");
        assert_eq!(op["parameters"][2]["name"], "splat0");
        assert_eq!(op["parameters"][3]["in"], "query");
        assert_ne!(
            op["operationId"],
            paths["/a/{id}/b/{splat0}"]["get"]["operationId"]
        );
        let blob = &paths["/blob"]["put"];
        assert_eq!(
            blob["requestBody"]["content"]["*/*"]["schema"]["format"],
            "binary"
        );
        assert_eq!(blob["responses"]["201"]["description"], "made");
        assert_eq!(
            paths["/"]["get"]["responses"]["default"]["description"],
            "Response"
        );
    }

    #[test]
    fn description_errors() {
        let mut api = Description::new("T", "1");
        api.get("/x");
        assert!(matches!(
            Router::from_description(api),
            Err(RouteError::MissingHandler { .. })
        ));
        let mut api = Description::new("T", "1");
        api.get("/x/:id")
            .path_param("idd", Schema::string(), "typo")
            .handler(noop);
        let err = Router::from_description(api).unwrap_err();
        assert!(err.to_string().contains(":idd"), "{err}");
        let mut api = Description::new("T", "1");
        api.get("/x").handler(noop);
        api.get("/x/").handler(noop);
        assert!(matches!(
            Router::from_description(api),
            Err(RouteError::Duplicate { .. })
        ));
    }

    #[test]
    fn serves_routes_and_document() {
        let mut api = Description::new("T", "1");
        api.openapi_path(Some("/docs/api.json"));
        api.get("/guarded")
            .middleware(|_req: &mut RestRequest, _resp: RestResponse| {
                Flow::Reject(crate::HttpError::forbidden("no"))
            })
            .handler(noop);
        api.get("/open").handler(noop);
        let router = Router::from_description(api).unwrap();
        assert!(router.find_route(&Method::GET, "/openapi.json").is_none());
        let client = TestClient::new(router);
        let r = client.get("/docs/api.json").send();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let doc: Value = r.json();
        assert!(doc["paths"]["/open"]["get"].is_object());
        assert_eq!(client.get("/guarded").send().status, StatusCode::FORBIDDEN);
        assert_eq!(client.get("/open").send().text(), "ok");
    }
}
