//! [`Description`]: an API described in code (Pistache's
//! `Rest::Description`), from which both the [`Router`] and the OpenAPI 3
//! document are made, so the two cannot drift apart.

use std::fmt;
use std::sync::Arc;

use pistachio_http::{BodyMode, Method, Middleware, StatusCode};
use serde_json::{json, Map, Value};

use crate::request::RestRequest;
use crate::response::{Outcome, RestResponse};
use crate::router::FlatRoute;
use crate::router::{box_handler, BoxHandler, BoxMiddleware, Flow, Layer, RouteError, Router};
use crate::tree::{parse_pattern, Segment};

/// The OpenAPI version of the generated documents.
pub const OPENAPI_VERSION: &str = "3.0.3";

/// A JSON Schema (the OpenAPI 3.0 dialect) for a parameter or a body.
///
/// Build it from the constructors below, write it as JSON
/// ([`Schema::from_json`]), or derive it from a Rust type
/// (`Schema::of::<T>()`, cargo feature `schemars`). Named schemas it
/// refers to (`$ref: "#/components/schemas/…"`) travel with it and end up
/// in the document's `components`.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema(Value, Map<String, Value>);

impl Schema {
    fn plain(value: Value) -> Schema {
        Schema(value, Map::new())
    }

    /// `{"type": "string"}`.
    pub fn string() -> Schema {
        Schema::plain(json!({"type": "string"}))
    }

    /// `{"type": "integer"}`.
    pub fn integer() -> Schema {
        Schema::plain(json!({"type": "integer"}))
    }

    /// `{"type": "number"}`.
    pub fn number() -> Schema {
        Schema::plain(json!({"type": "number"}))
    }

    /// `{"type": "boolean"}`.
    pub fn boolean() -> Schema {
        Schema::plain(json!({"type": "boolean"}))
    }

    /// Any bytes: `{"type": "string", "format": "binary"}`.
    pub fn binary() -> Schema {
        Schema::plain(json!({"type": "string", "format": "binary"}))
    }

    /// An array of `items`.
    pub fn array(items: Schema) -> Schema {
        Schema(json!({"type": "array", "items": items.0}), items.1)
    }

    /// An object with these properties, all required (add optional ones
    /// with [`Schema::optional`]).
    pub fn object(properties: &[(&str, Schema)]) -> Schema {
        let mut components = Map::new();
        let props: Map<String, Value> = properties
            .iter()
            .map(|(name, schema)| {
                components.extend(schema.1.clone());
                ((*name).to_owned(), schema.0.clone())
            })
            .collect();
        let required: Vec<&str> = properties.iter().map(|(name, _)| *name).collect();
        let mut value = json!({"type": "object", "properties": props});
        if !required.is_empty() {
            value["required"] = json!(required);
        }
        Schema(value, components)
    }

    /// Adds properties that may be absent to an object schema (made by
    /// [`Schema::object`]); on any other schema, does nothing.
    ///
    /// ```
    /// use pistachio_rest::Schema;
    ///
    /// let user = Schema::object(&[("id", Schema::integer())])
    ///     .optional(&[("nickname", Schema::string().nullable())]);
    /// let json = user.to_json();
    /// assert_eq!(json["required"], serde_json::json!(["id"]));
    /// assert_eq!(json["properties"]["nickname"]["nullable"], true);
    /// ```
    #[must_use]
    pub fn optional(mut self, properties: &[(&str, Schema)]) -> Schema {
        let Some(props) = self.0.get_mut("properties").and_then(Value::as_object_mut) else {
            return self;
        };
        for (name, schema) in properties {
            props.insert((*name).to_owned(), schema.0.clone());
            self.1.extend(schema.1.clone());
        }
        self
    }

    /// The same schema, allowing `null` too (OpenAPI 3.0's `nullable`).
    #[must_use]
    pub fn nullable(mut self) -> Schema {
        if let Some(object) = self.0.as_object_mut() {
            if object.contains_key("$ref") {
                // A reference takes no siblings: wrap it.
                let reference = std::mem::take(&mut self.0);
                self.0 = json!({"allOf": [reference], "nullable": true});
            } else {
                object.insert("nullable".into(), Value::Bool(true));
            }
        }
        self
    }

    /// Any schema written as JSON.
    pub fn from_json(schema: Value) -> Schema {
        Schema::plain(schema)
    }

    /// The schema as JSON.
    pub fn to_json(&self) -> &Value {
        &self.0
    }

    /// The named schemas this one refers to, for the document's
    /// `components.schemas`.
    pub fn components(&self) -> &Map<String, Value> {
        &self.1
    }
}

/// Schemas derived from Rust types (cargo feature `schemars`).
#[cfg(feature = "schemars")]
#[cfg_attr(docsrs, doc(cfg(feature = "schemars")))]
impl Schema {
    /// The schema of `T` in the OpenAPI 3.0 dialect, as `schemars` derives
    /// it (`#[derive(JsonSchema)]`): an `Option` field is optional and
    /// `nullable`, doc comments become descriptions. Named types (structs,
    /// enums: `T` itself and those it uses) go to `components.schemas`
    /// under their names and are referred to from there, so recursive
    /// types work; two different types of the same name would collide
    /// (rename one with `#[schemars(rename = "…")]`). Primitive and
    /// collection types are inline.
    ///
    /// ```
    /// use pistachio_rest::Schema;
    /// use schemars::JsonSchema;
    ///
    /// /// A user.
    /// #[derive(JsonSchema)]
    /// struct User {
    ///     id: u64,
    ///     /// Shown instead of the name, if set.
    ///     nickname: Option<String>,
    ///     address: Address,
    /// }
    ///
    /// #[derive(JsonSchema)]
    /// struct Address {
    ///     city: String,
    /// }
    ///
    /// let schema = Schema::of::<User>();
    /// assert_eq!(schema.to_json()["$ref"], "#/components/schemas/User");
    /// let user = &schema.components()["User"];
    /// assert_eq!(user["required"], serde_json::json!(["id", "address"]));
    /// assert_eq!(user["properties"]["nickname"]["nullable"], true);
    /// assert_eq!(user["properties"]["address"]["$ref"], "#/components/schemas/Address");
    /// assert!(schema.components().contains_key("Address"));
    /// ```
    pub fn of<T: schemars::JsonSchema + ?Sized>() -> Schema {
        let generator = schemars::generate::SchemaSettings::openapi3().into_generator();
        let root = generator.into_root_schema_for::<T>();
        let mut value = root.to_value();
        let mut components = Map::new();
        if let Some(object) = value.as_object_mut() {
            // OpenAPI 3.0 schema objects have no `$schema`; the named
            // schemas move to the document's components.
            object.remove("$schema");
            if let Some(Value::Object(mut holder)) = object.remove("components") {
                if let Some(Value::Object(schemas)) = holder.remove("schemas") {
                    components = schemas;
                }
            }
        }
        if T::inline_schema() {
            return Schema(value, components);
        }
        // A named type is a component of its own, referred to: so is it
        // where it refers to itself (`"$ref": "#"`, the root, in a
        // schema of its own; the document's root in the document).
        let name = T::schema_name();
        let reference = format!("#/components/schemas/{name}");
        let mut rewrite = |v: &mut Value| point_root_refs(v, &reference);
        rewrite(&mut value);
        components.values_mut().for_each(&mut rewrite);
        components.insert(name.into_owned(), value);
        Schema(json!({ "$ref": reference }), components)
    }
}

/// Replaces every `"$ref": "#"` in `value` by `"$ref": reference`.
#[cfg(feature = "schemars")]
fn point_root_refs(value: &mut Value, reference: &str) {
    match value {
        Value::Object(object) => {
            for (key, v) in object.iter_mut() {
                if key == "$ref" && v == "#" {
                    *v = json!(reference);
                } else {
                    point_root_refs(v, reference);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| point_root_refs(v, reference)),
        _ => {}
    }
}

/// How clients authenticate: an OpenAPI security scheme, declared with
/// [`Description::security_scheme`] (or by a middleware's [`ApiDoc`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecurityScheme {
    /// `Authorization: Bearer <token>`; `format` hints at the token's
    /// kind (`"JWT"`).
    Bearer {
        /// The `bearerFormat`, if any.
        format: Option<String>,
    },
    /// `Authorization: Basic <base64(user:password)>`.
    Basic,
    /// A key in a header, a query parameter or a cookie.
    ApiKey {
        /// Where the key is.
        location: ApiKeyIn,
        /// The header, parameter or cookie name.
        name: String,
    },
}

/// Where an API key is sent ([`SecurityScheme::ApiKey`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyIn {
    /// A request header field.
    Header,
    /// A query parameter.
    Query,
    /// A cookie.
    Cookie,
}

impl SecurityScheme {
    /// A bearer token without a stated format.
    pub fn bearer() -> SecurityScheme {
        SecurityScheme::Bearer { format: None }
    }

    /// A bearer token of `format` (`"JWT"`).
    pub fn bearer_format(format: &str) -> SecurityScheme {
        SecurityScheme::Bearer {
            format: Some(format.to_owned()),
        }
    }

    /// HTTP basic authentication.
    pub fn basic() -> SecurityScheme {
        SecurityScheme::Basic
    }

    /// An API key in the request header field `name`.
    pub fn api_key_header(name: &str) -> SecurityScheme {
        SecurityScheme::ApiKey {
            location: ApiKeyIn::Header,
            name: name.to_owned(),
        }
    }

    /// An API key in the query parameter `name`.
    pub fn api_key_query(name: &str) -> SecurityScheme {
        SecurityScheme::ApiKey {
            location: ApiKeyIn::Query,
            name: name.to_owned(),
        }
    }

    /// An API key in the cookie `name`.
    pub fn api_key_cookie(name: &str) -> SecurityScheme {
        SecurityScheme::ApiKey {
            location: ApiKeyIn::Cookie,
            name: name.to_owned(),
        }
    }

    /// The OpenAPI security scheme object.
    pub fn to_json(&self) -> Value {
        match self {
            SecurityScheme::Bearer { format } => {
                let mut v = json!({"type": "http", "scheme": "bearer"});
                if let Some(f) = format {
                    v["bearerFormat"] = json!(f);
                }
                v
            }
            SecurityScheme::Basic => json!({"type": "http", "scheme": "basic"}),
            SecurityScheme::ApiKey { location, name } => json!({
                "type": "apiKey",
                "in": match location {
                    ApiKeyIn::Header => "header",
                    ApiKeyIn::Query => "query",
                    ApiKeyIn::Cookie => "cookie",
                },
                "name": name,
            }),
        }
    }
}

/// What a middleware adds to every route it wraps, for the OpenAPI
/// document: request parameters it reads, responses it may give in the
/// handler's place, header fields it adds to every response, the security
/// scheme it enforces. Given with the middleware to
/// [`Description::layer`] or [`Description::middleware`] (which install
/// it on every described route), or alone to [`Description::document`]
/// for middleware installed elsewhere (endpoint-wide).
///
/// ```
/// use pistachio_rest::{ApiDoc, Description, Schema, SecurityScheme, StatusCode};
///
/// let auth = ApiDoc::new()
///     .security("bearer", SecurityScheme::bearer_format("JWT"))
///     .response(StatusCode::UNAUTHORIZED, "Missing or invalid token");
/// let tracing = ApiDoc::new()
///     .header_param("X-Request-Id", Schema::string(), "Echoed in the answer", false)
///     .response_header("X-Request-Id", Schema::string(), "The request's id");
/// let mut api = Description::new("Shop", "1.0.0");
/// api.document(auth).document(tracing);
/// # api.get("/items").handler(|_r: pistachio_rest::RestRequest, resp: pistachio_rest::RestResponse| resp.send(StatusCode::OK, "[]"));
/// let doc = api.openapi();
/// assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
/// assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
/// let op = &doc["paths"]["/items"]["get"];
/// assert_eq!(op["responses"]["401"]["description"], "Missing or invalid token");
/// assert_eq!(op["parameters"][0]["name"], "X-Request-Id");
/// ```
#[derive(Debug, Clone, Default)]
pub struct ApiDoc {
    params: Vec<ParamDoc>,
    responses: Vec<ResponseDoc>,
    response_headers: Vec<(String, Schema, String)>,
    security: Option<(String, SecurityScheme)>,
}

impl ApiDoc {
    /// Adds nothing yet.
    pub fn new() -> ApiDoc {
        ApiDoc::default()
    }

    /// A request header field the middleware reads.
    #[must_use]
    pub fn header_param(
        mut self,
        name: &str,
        schema: Schema,
        description: &str,
        required: bool,
    ) -> ApiDoc {
        self.params.push(ParamDoc {
            name: name.to_owned(),
            location: ParamIn::Header,
            schema,
            description: description.to_owned(),
            required,
        });
        self
    }

    /// A query parameter the middleware reads.
    #[must_use]
    pub fn query_param(
        mut self,
        name: &str,
        schema: Schema,
        description: &str,
        required: bool,
    ) -> ApiDoc {
        self.params.push(ParamDoc {
            name: name.to_owned(),
            location: ParamIn::Query,
            schema,
            description: description.to_owned(),
            required,
        });
        self
    }

    /// A response the middleware may give (a route documenting the same
    /// status keeps its own).
    #[must_use]
    pub fn response(mut self, status: StatusCode, description: &str) -> ApiDoc {
        self.responses.push(ResponseDoc {
            status,
            description: description.to_owned(),
            content: None,
            headers: Vec::new(),
        });
        self
    }

    /// A response with a body the middleware may give.
    #[must_use]
    pub fn response_body(
        mut self,
        status: StatusCode,
        description: &str,
        media_type: &str,
        schema: Schema,
    ) -> ApiDoc {
        self.responses.push(ResponseDoc {
            status,
            description: description.to_owned(),
            content: Some((media_type.to_owned(), schema)),
            headers: Vec::new(),
        });
        self
    }

    /// A header field the middleware adds to every response.
    #[must_use]
    pub fn response_header(mut self, name: &str, schema: Schema, description: &str) -> ApiDoc {
        self.response_headers
            .push((name.to_owned(), schema, description.to_owned()));
        self
    }

    /// The middleware requires `scheme`, declared as `name`: the scheme
    /// goes to `components.securitySchemes` and becomes a requirement of
    /// the whole API (routes marked [`RouteDesc::public`] excepted).
    #[must_use]
    pub fn security(mut self, name: &str, scheme: SecurityScheme) -> ApiDoc {
        self.security = Some((name.to_owned(), scheme));
        self
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
    /// Its header fields: name, schema, description.
    headers: Vec<(String, Schema, String)>,
}

/// One described route: method, pattern, handler, and its documentation.
/// Made by [`Description::route`] and its shorthands; every setter returns
/// the route again so calls chain.
pub struct RouteDesc {
    method: Method,
    pattern: String,
    handler: Option<BoxHandler>,
    middleware: Vec<BoxMiddleware>,
    /// Its own layers, inside the description's.
    layers: Vec<Layer>,
    /// How its request bodies are read.
    body_mode: BodyMode,
    summary: Option<String>,
    description: Option<String>,
    tags: Vec<String>,
    params: Vec<ParamDoc>,
    body: Option<(Vec<String>, Schema, bool)>,
    responses: Vec<ResponseDoc>,
    hidden: bool,
    /// `None`: the API's requirements; `Some(empty)`: none (public).
    security: Option<Vec<String>>,
}

impl fmt::Debug for RouteDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteDesc")
            .field("method", &self.method)
            .field("pattern", &self.pattern)
            .field("has_handler", &self.handler.is_some())
            .field("layers", &self.layers.len())
            .field("body_mode", &self.body_mode)
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

    /// Wraps the exchanges of this route in `layer`, inside the layers of
    /// the description ([`Description::layer`]), in the order added, as
    /// [`RouteGroup::layer`](crate::RouteGroup::layer) does for a group:
    /// its head hook runs with the route known, before any of the body is
    /// read.
    pub fn layer(&mut self, layer: impl Middleware) -> &mut Self {
        self.layers.push(Arc::new(layer));
        self
    }

    /// The handler takes the request body as a stream
    /// ([`RestRequest::take_body_stream`]) as it arrives, instead of
    /// buffered, as [`RouteGroup::streamed_body`](crate::RouteGroup::streamed_body)
    /// does for a group. No size limit applies unless
    /// [`max_body`](Self::max_body) sets one.
    ///
    /// ```
    /// use pistachio_rest::{Description, RestRequest, RestResponse, Router, Schema, StatusCode};
    ///
    /// let mut api = Description::new("Uploads", "1.0.0");
    /// api.put("/files/:name")
    ///     .max_body(1 << 30)
    ///     .request_body(&["*/*"], Schema::binary(), true)
    ///     .response(StatusCode::NO_CONTENT, "Stored")
    ///     .handler(|mut req: RestRequest, resp: RestResponse| {
    ///         let body = req.take_body_stream().expect("a streamed route");
    ///         // Read it off the worker thread (a pool, a thread), then answer.
    ///         # drop(body);
    ///         resp.send(StatusCode::NO_CONTENT, "");
    ///     });
    /// let router = Router::from_description(api)?;
    /// # Ok::<(), pistachio_rest::RouteError>(())
    /// ```
    pub fn streamed_body(&mut self) -> &mut Self {
        if !matches!(self.body_mode, BodyMode::StreamedUpTo(_)) {
            self.body_mode = BodyMode::Streamed;
        }
        self
    }

    /// At most `bytes` of request body for this route, in place of the
    /// endpoint's `max_request_size`; makes the body streamed
    /// ([`streamed_body`](Self::streamed_body)). As with
    /// [`RouteGroup::max_body`](crate::RouteGroup::max_body), a larger
    /// declared `Content-Length` is answered `413` before any of the body
    /// is read, and a chunked body that grows past it fails the stream with
    /// a [`BodyTooLarge`](pistachio_http::BodyTooLarge) error.
    pub fn max_body(&mut self, bytes: u64) -> &mut Self {
        self.body_mode = BodyMode::StreamedUpTo(bytes);
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
            headers: Vec::new(),
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
            headers: Vec::new(),
        });
        self
    }

    /// Documents a header field of the response documented last
    /// ([`response`](Self::response) or
    /// [`response_body`](Self::response_body)); does nothing before one.
    ///
    /// ```
    /// use pistachio_rest::{Description, Schema, StatusCode};
    ///
    /// let mut api = Description::new("Store", "1.0.0");
    /// api.get("/items/:id")
    ///     .response(StatusCode::OK, "The item")
    ///     .response_header("ETag", Schema::string(), "Its version");
    /// let doc = api.openapi();
    /// let ok = &doc["paths"]["/items/{id}"]["get"]["responses"]["200"];
    /// assert_eq!(ok["headers"]["ETag"]["schema"]["type"], "string");
    /// ```
    pub fn response_header(&mut self, name: &str, schema: Schema, description: &str) -> &mut Self {
        if let Some(last) = self.responses.last_mut() {
            last.headers
                .push((name.to_owned(), schema, description.to_owned()));
        }
        self
    }

    /// Routes it, but leaves it out of the OpenAPI document.
    pub fn hidden(&mut self) -> &mut Self {
        self.hidden = true;
        self
    }

    /// This operation requires the security scheme `name` (declared with
    /// [`Description::security_scheme`]) instead of the API's
    /// requirements; several calls are alternatives (any one suffices).
    pub fn security(&mut self, name: &str) -> &mut Self {
        self.security
            .get_or_insert_with(Vec::new)
            .push(name.to_owned());
        self
    }

    /// This operation requires no authentication, whatever the API's
    /// requirements (`security: []`).
    pub fn public(&mut self) -> &mut Self {
        self.security = Some(Vec::new());
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
    security_schemes: Vec<(String, SecurityScheme)>,
    /// Alternatives, each the name of one scheme.
    security: Vec<String>,
    /// What middleware adds to every route.
    docs: Vec<ApiDoc>,
    layers: Vec<Layer>,
    middleware: Vec<BoxMiddleware>,
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
            security_schemes: Vec::new(),
            security: Vec::new(),
            docs: Vec::new(),
            layers: Vec::new(),
            middleware: Vec::new(),
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

    /// Declares the security scheme `scheme` as `name`
    /// (`components.securitySchemes`), for [`Description::require`] and
    /// [`RouteDesc::security`].
    ///
    /// ```
    /// use pistachio_rest::{Description, SecurityScheme};
    ///
    /// let mut api = Description::new("Shop", "1.0.0");
    /// api.security_scheme("key", SecurityScheme::api_key_header("X-Api-Key"))
    ///     .require("key");
    /// let doc = api.openapi();
    /// assert_eq!(doc["components"]["securitySchemes"]["key"]["in"], "header");
    /// assert_eq!(doc["security"], serde_json::json!([{"key": []}]));
    /// ```
    pub fn security_scheme(&mut self, name: &str, scheme: SecurityScheme) -> &mut Self {
        self.security_schemes.retain(|(n, _)| n != name);
        self.security_schemes.push((name.to_owned(), scheme));
        self
    }

    /// Every operation requires the scheme `name` (unless it names its
    /// own with [`RouteDesc::security`] or is [`RouteDesc::public`]);
    /// several calls are alternatives (any one suffices).
    pub fn require(&mut self, name: &str) -> &mut Self {
        if !self.security.iter().any(|n| n == name) {
            self.security.push(name.to_owned());
        }
        self
    }

    /// Documents what a middleware installed elsewhere (endpoint-wide, or
    /// on the router) adds to every route; see [`ApiDoc`].
    pub fn document(&mut self, doc: ApiDoc) -> &mut Self {
        if let Some((name, scheme)) = &doc.security {
            self.security_scheme(name, scheme.clone());
            self.require(name);
        }
        self.docs.push(doc);
        self
    }

    /// Wraps every described route (not the document's own route) in
    /// `layer`, as [`RouteGroup::layer`](crate::RouteGroup::layer) does,
    /// and documents what it adds ([`Description::document`]). The first
    /// added is the outermost.
    pub fn layer(&mut self, layer: impl Middleware, doc: ApiDoc) -> &mut Self {
        self.layers.push(Arc::new(layer));
        self.document(doc)
    }

    /// Runs `middleware` before every described route's own middleware
    /// (not for the document's own route), and documents what it adds
    /// ([`Description::document`]).
    pub fn middleware<F>(&mut self, middleware: F, doc: ApiDoc) -> &mut Self
    where
        F: Fn(&mut RestRequest, RestResponse) -> Flow + Send + Sync + 'static,
    {
        self.middleware.push(Arc::new(middleware));
        self.document(doc)
    }

    /// Describes the `method` route of `pattern`; set its handler with
    /// [`RouteDesc::handler`].
    pub fn route(&mut self, method: Method, pattern: &str) -> &mut RouteDesc {
        self.routes.push(RouteDesc {
            method,
            pattern: pattern.to_owned(),
            handler: None,
            middleware: Vec::new(),
            layers: Vec::new(),
            body_mode: BodyMode::Buffered,
            summary: None,
            description: None,
            tags: Vec::new(),
            params: Vec::new(),
            body: None,
            responses: Vec::new(),
            hidden: false,
            security: None,
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
        let declared = |name: &String| self.security_schemes.iter().any(|(n, _)| n == name);
        let route_names = self.routes.iter().flat_map(|r| r.security.iter().flatten());
        if let Some(name) = self
            .security
            .iter()
            .chain(route_names)
            .find(|n| !declared(n))
        {
            return Err(RouteError::InvalidPattern(format!(
                "security scheme {name:?} is required but not declared"
            )));
        }
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
        let mut schemas = Map::new();
        for route in self.routes.iter().filter(|r| !r.hidden) {
            let Ok(segments) = parse_pattern(&route.pattern) else {
                continue;
            };
            for (path, present) in openapi_paths(&segments) {
                let item = paths
                    .entry(path.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                let mut op = operation(route, &path, &present, &mut schemas);
                let public = route.security.as_ref().is_some_and(Vec::is_empty);
                // An authentication middleware's answers (401...) are not
                // those of a public route.
                let docs = || {
                    self.docs
                        .iter()
                        .filter(|d| !(public && d.security.is_some()))
                };
                for doc in docs() {
                    apply_doc(&mut op, doc, &mut schemas);
                }
                // Then the header fields, on every response by now.
                for doc in docs() {
                    apply_doc_headers(&mut op, doc, &mut schemas);
                }
                item[route.method.as_str().to_ascii_lowercase()] = op;
            }
        }
        let mut doc = json!({
            "openapi": OPENAPI_VERSION,
            "info": info,
            "paths": paths,
        });
        let mut components = Map::new();
        if !schemas.is_empty() {
            components.insert("schemas".into(), Value::Object(schemas));
        }
        if !self.security_schemes.is_empty() {
            let schemes: Map<String, Value> = self
                .security_schemes
                .iter()
                .map(|(name, scheme)| (name.clone(), scheme.to_json()))
                .collect();
            components.insert("securitySchemes".into(), Value::Object(schemes));
        }
        if !components.is_empty() {
            doc["components"] = Value::Object(components);
        }
        if !self.security.is_empty() {
            doc["security"] = requirements(&self.security);
        }
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
fn operation(
    route: &RouteDesc,
    path: &str,
    path_params: &[String],
    schemas: &mut Map<String, Value>,
) -> Value {
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
        if let Some(d) = doc {
            schemas.extend(d.schema.1.clone());
        }
        if let Some(d) = doc.filter(|d| !d.description.is_empty()) {
            p["description"] = json!(d.description);
        }
        params.push(p);
    }
    for doc in route.params.iter().filter(|p| p.location != ParamIn::Path) {
        params.push(param_json(doc, schemas));
    }
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some((media, schema, required)) = &route.body {
        schemas.extend(schema.1.clone());
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
        responses.insert(r.status.as_str().to_owned(), response_json(r, schemas));
    }
    if responses.is_empty() {
        responses.insert("default".into(), json!({"description": "Response"}));
    }
    op.insert("responses".into(), Value::Object(responses));
    if let Some(names) = &route.security {
        op.insert("security".into(), requirements(names));
    }
    Value::Object(op)
}

/// A query or header parameter object.
fn param_json(doc: &ParamDoc, schemas: &mut Map<String, Value>) -> Value {
    schemas.extend(doc.schema.1.clone());
    let mut p = json!({
        "name": doc.name,
        "in": if doc.location == ParamIn::Query { "query" } else { "header" },
        "required": doc.required,
        "schema": doc.schema.0,
    });
    if !doc.description.is_empty() {
        p["description"] = json!(doc.description);
    }
    p
}

/// A response object.
fn response_json(r: &ResponseDoc, schemas: &mut Map<String, Value>) -> Value {
    let mut resp = json!({"description": r.description});
    if let Some((media, schema)) = &r.content {
        schemas.extend(schema.1.clone());
        resp["content"] = json!({ media.clone(): {"schema": schema.0} });
    }
    if !r.headers.is_empty() {
        let mut headers = Map::new();
        for (name, schema, description) in &r.headers {
            schemas.extend(schema.1.clone());
            let mut header = json!({"schema": schema.0});
            if !description.is_empty() {
                header["description"] = json!(description);
            }
            headers.insert(name.clone(), header);
        }
        resp["headers"] = Value::Object(headers);
    }
    resp
}

/// A list of security requirements, each one scheme (alternatives); empty:
/// none required.
fn requirements(names: &[String]) -> Value {
    names
        .iter()
        .map(|name| json!({ name.clone(): [] }))
        .collect()
}

/// Adds what a middleware adds (`doc`) to the operation `op`: its
/// parameters (unless the operation has one of the same name and place)
/// and its responses (unless the operation documents the status).
fn apply_doc(op: &mut Value, doc: &ApiDoc, schemas: &mut Map<String, Value>) {
    if !doc.params.is_empty() {
        let params = op
            .as_object_mut()
            .expect("an operation is an object")
            .entry("parameters")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = params {
            for p in &doc.params {
                let place = if p.location == ParamIn::Query {
                    "query"
                } else {
                    "header"
                };
                let known = list.iter().any(|q| {
                    q["in"] == place
                        && q["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(&p.name))
                });
                if !known {
                    list.push(param_json(p, schemas));
                }
            }
        }
    }
    let Some(responses) = op["responses"].as_object_mut() else {
        return;
    };
    for r in &doc.responses {
        responses
            .entry(r.status.as_str().to_owned())
            .or_insert_with(|| response_json(r, schemas));
    }
}

/// Adds the response header fields of `doc` to every response of `op`.
fn apply_doc_headers(op: &mut Value, doc: &ApiDoc, schemas: &mut Map<String, Value>) {
    let Some(responses) = op["responses"].as_object_mut() else {
        return;
    };
    for (name, schema, description) in &doc.response_headers {
        schemas.extend(schema.1.clone());
        for resp in responses.values_mut() {
            let mut header = json!({"schema": schema.0});
            if !description.is_empty() {
                header["description"] = json!(description);
            }
            let headers = resp
                .as_object_mut()
                .expect("a response is an object")
                .entry("headers")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(headers) = headers {
                headers.entry(name.clone()).or_insert(header);
            }
        }
    }
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
        let mut bodies = Vec::new();
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
            bodies.push(BodyMode::Buffered);
        }
        for route in description.routes {
            let handler = route.handler.expect("validated: every route has a handler");
            let mut middleware = description.middleware.clone();
            middleware.extend(route.middleware);
            let mut layers = description.layers.clone();
            layers.extend(route.layers);
            flat.push(FlatRoute {
                method: route.method,
                pattern: route.pattern,
                handler,
                middleware,
                layers,
            });
            bodies.push(route.body_mode);
        }
        self.mount_with_bodies(flat, bodies)
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
