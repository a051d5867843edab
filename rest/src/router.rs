//! [`Router`] (Pistache's `Rest::Router`), [`RouteGroup`], middleware.

use std::fmt;
use std::sync::{Arc, Mutex};

use pistachio_http::header::{HeaderValue, ALLOW};
use pistachio_http::{
    run_heads, Answer, BodyMode, Handler, HeadAction, Method, Middleware, Request, ResponseWriter,
    StatusCode,
};

use crate::problem::ErrorFormat;
use crate::request::RestRequest;
use crate::response::{reclaim, send_error, Home, HttpError, Outcome, RestResponse};
use crate::tree::{parse_pattern, split_path, Captures, Node};
use pistachio_http::percent_decode;

/// Body of the default `404` answer (Pistache's, word for word).
pub const NOT_FOUND_BODY: &str = "Could not find a matching route";

/// A route handler, boxed.
pub(crate) type BoxHandler =
    Arc<dyn Fn(RestRequest, RestResponse) -> Result<(), HttpError> + Send + Sync>;

/// A middleware, boxed.
pub(crate) type BoxMiddleware = Arc<dyn Fn(&mut RestRequest, RestResponse) -> Flow + Send + Sync>;

/// A layer (whole-exchange middleware), shared.
pub(crate) type Layer = Arc<dyn Middleware>;

/// Boxes a handler closure returning any [`Outcome`].
pub(crate) fn box_handler<F, O>(handler: F) -> BoxHandler
where
    F: Fn(RestRequest, RestResponse) -> O + Send + Sync + 'static,
    O: Outcome,
{
    Arc::new(move |req, resp| handler(req, resp).into_result())
}

/// What a middleware decided.
// `Continue` is the common case and carries the response by value: boxing
// it would cost an allocation per middleware per request.
#[allow(clippy::large_enum_variant)]
#[non_exhaustive]
#[derive(Debug)]
pub enum Flow {
    /// Go on to the next middleware, then the handler, with this response.
    Continue(RestResponse),
    /// Stop here: the middleware answered (or handed the response to
    /// another thread that will).
    Stop,
    /// Stop here and answer with this error. The middleware lets go of
    /// its [`RestResponse`] by dropping it (which hands the writer back to
    /// the router); if it already answered, the error is only logged.
    Reject(HttpError),
}

impl From<HttpError> for Flow {
    fn from(error: HttpError) -> Flow {
        Flow::Reject(error)
    }
}

/// Why a route could not be added, removed or described.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The pattern is not a valid route pattern.
    InvalidPattern(String),
    /// The same method and pattern are already routed.
    Duplicate {
        /// The method.
        method: Method,
        /// The pattern.
        pattern: String,
    },
    /// There is no route with this method and pattern to remove.
    NotFound {
        /// The method.
        method: Method,
        /// The pattern.
        pattern: String,
    },
    /// A described route has no handler.
    MissingHandler {
        /// The method.
        method: Method,
        /// The pattern.
        pattern: String,
    },
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::InvalidPattern(msg) => f.write_str(msg),
            RouteError::Duplicate { method, pattern } => {
                write!(f, "route {method} {pattern} already exists")
            }
            RouteError::NotFound { method, pattern } => {
                write!(f, "no route {method} {pattern} to remove")
            }
            RouteError::MissingHandler { method, pattern } => {
                write!(f, "described route {method} {pattern} has no handler")
            }
        }
    }
}

impl std::error::Error for RouteError {}

/// One routed method of one pattern.
struct Route {
    method: Method,
    pattern: Arc<str>,
    handler: BoxHandler,
    middleware: Arc<[BoxMiddleware]>,
    layers: Arc<[Layer]>,
    /// How its request bodies are read.
    body: BodyMode,
}

/// What a successful [`Router::find_route`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteMatch {
    /// The pattern of the matched route, as it was added.
    pub pattern: String,
    /// The method of the matched route (`GET` for a `HEAD` request routed to
    /// a `GET` route).
    pub method: Method,
    /// `(name, decoded value)` of each captured parameter, in path order.
    pub params: Vec<(String, String)>,
    /// The decoded segments matched by `*`, in path order.
    pub splats: Vec<String>,
}

/// Routes requests to handlers by method and path (Pistache's
/// `Rest::Router`); an [`Endpoint`](pistachio_http::Endpoint) serves it as
/// its [`Handler`].
///
/// Patterns are `/`-separated segments: fixed text, `:name` (one segment,
/// captured), `:name?` (one segment or none) and `*` (one segment, captured
/// as a splat). Repeated and trailing slashes are ignored, in patterns and
/// in request paths. When several routes match, the one whose segments are
/// more specific wins, segment by segment: fixed > `:param` > `:param?` >
/// `*`. Routes live in a segment tree, so finding one costs the same with
/// ten routes or ten thousand.
///
/// Each request goes through the router's layers ([`Router::layer`]) and,
/// once routed, its route's ([`RouteGroup::layer`]): whole-exchange
/// [`Middleware`] whose head hooks run before the body is read (see
/// `docs/rest.md`, "Middleware"). Inside them:
///
/// 1. the router's middleware, in order (they see every request, routed or
///    not);
/// 2. routing: a matching route of the request's method; for `HEAD`, a
///    `HEAD` route or else the `GET` route (the body is not sent); for
///    `OPTIONS` without an `OPTIONS` route, `204` with `Allow`; a path that
///    only other methods route gives `405` with `Allow`; anything else goes
///    to the not-found handler (default: `404 Could not find a matching
///    route`);
/// 3. the middleware of the route's [`RouteGroup`]s, outermost first;
/// 4. the handler. If it returns an [`HttpError`] and did not answer, the
///    error is the answer.
pub struct Router {
    tree: Node<Vec<Route>>,
    middleware: Vec<BoxMiddleware>,
    layers: Vec<Layer>,
    /// Whether any route has layers (its group's).
    route_layers: bool,
    /// Whether any route streams its request bodies.
    streamed_routes: bool,
    not_found: Option<BoxHandler>,
    methods: Vec<Method>,
    len: usize,
}

impl Default for Router {
    fn default() -> Self {
        Router::new()
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes())
            .field("middleware", &self.middleware.len())
            .field("layers", &self.layers.len())
            .field("custom_not_found", &self.not_found.is_some())
            .finish()
    }
}

macro_rules! verb_shorthands {
    ($($(#[$doc:meta])* $name:ident => $method:ident;)*) => {
        $(
            $(#[$doc])*
            ///
            /// Panics if the pattern is invalid or already routed for this
            /// method; use [`route`](Self::route) to get the error instead.
            #[track_caller]
            pub fn $name<F, O>(&mut self, pattern: &str, handler: F) -> &mut Self
            where
                F: Fn(RestRequest, RestResponse) -> O + Send + Sync + 'static,
                O: Outcome,
            {
                if let Err(e) = self.add(Method::$method, pattern, box_handler(handler)) {
                    panic!("{e}");
                }
                self
            }
        )*
    };
}

impl Router {
    /// A router with no routes.
    #[must_use]
    pub fn new() -> Router {
        Router {
            tree: Node::default(),
            middleware: Vec::new(),
            layers: Vec::new(),
            route_layers: false,
            streamed_routes: false,
            not_found: None,
            methods: Vec::new(),
            len: 0,
        }
    }

    /// Routes `method` requests for `pattern` to `handler`.
    pub fn route<F, O>(
        &mut self,
        method: Method,
        pattern: &str,
        handler: F,
    ) -> Result<&mut Self, RouteError>
    where
        F: Fn(RestRequest, RestResponse) -> O + Send + Sync + 'static,
        O: Outcome,
    {
        self.add(method, pattern, box_handler(handler))?;
        Ok(self)
    }

    verb_shorthands! {
        /// Routes `GET` (and so `HEAD`) requests for `pattern`.
        get => GET;
        /// Routes `POST` requests for `pattern`.
        post => POST;
        /// Routes `PUT` requests for `pattern`.
        put => PUT;
        /// Routes `PATCH` requests for `pattern`.
        patch => PATCH;
        /// Routes `DELETE` requests for `pattern`.
        delete => DELETE;
        /// Routes `OPTIONS` requests for `pattern` (otherwise they are
        /// answered with `Allow`).
        options => OPTIONS;
        /// Routes `HEAD` requests for `pattern` (otherwise the `GET` route
        /// answers them).
        head => HEAD;
    }

    pub(crate) fn add(
        &mut self,
        method: Method,
        pattern: &str,
        handler: BoxHandler,
    ) -> Result<(), RouteError> {
        self.insert(
            method,
            pattern,
            handler,
            Arc::from([]),
            Arc::from([]),
            BodyMode::Buffered,
        )
    }

    fn insert(
        &mut self,
        method: Method,
        pattern: &str,
        handler: BoxHandler,
        middleware: Arc<[BoxMiddleware]>,
        layers: Arc<[Layer]>,
        body: BodyMode,
    ) -> Result<(), RouteError> {
        let segments = parse_pattern(pattern).map_err(RouteError::InvalidPattern)?;
        let table = self.tree.entry(&segments).get_or_insert_with(Vec::new);
        if table.iter().any(|r| r.method == method) {
            return Err(RouteError::Duplicate {
                method,
                pattern: pattern.to_owned(),
            });
        }
        if !self.methods.contains(&method) {
            self.methods.push(method.clone());
        }
        self.route_layers |= !layers.is_empty();
        self.streamed_routes |= body != BodyMode::Buffered;
        table.push(Route {
            method,
            pattern: pattern.into(),
            handler,
            middleware,
            layers,
            body,
        });
        self.len += 1;
        Ok(())
    }

    /// Removes the `method` route of `pattern` (the pattern as it was
    /// added, or any spelling with the same segments). Removing a route
    /// that does not exist is an error.
    pub fn remove_route(&mut self, method: &Method, pattern: &str) -> Result<(), RouteError> {
        let missing = || RouteError::NotFound {
            method: method.clone(),
            pattern: pattern.to_owned(),
        };
        let segments = parse_pattern(pattern).map_err(RouteError::InvalidPattern)?;
        let slot = self.tree.get_mut(&segments).ok_or_else(missing)?;
        let table = slot.as_mut().ok_or_else(missing)?;
        let index = table
            .iter()
            .position(|r| r.method == *method)
            .ok_or_else(missing)?;
        table.remove(index);
        if table.is_empty() {
            *slot = None;
            self.tree.prune();
        }
        self.len -= 1;
        // Keep the routed-methods cache (`Allow` candidates, `OPTIONS *`)
        // true: a method no route has any more leaves it.
        if !self
            .tree
            .values()
            .into_iter()
            .flatten()
            .any(|r| r.method == *method)
        {
            self.methods.retain(|m| m != method);
        }
        Ok(())
    }

    /// Adds a middleware that runs, in the order added, before routing, on
    /// every request. It can read and change the request, add response
    /// headers, or stop with its own answer.
    pub fn middleware<F>(&mut self, middleware: F) -> &mut Self
    where
        F: Fn(&mut RestRequest, RestResponse) -> Flow + Send + Sync + 'static,
    {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Wraps every exchange this router answers in `layer` (a
    /// [`Middleware`]: head, response and completion hooks), routed or not:
    /// its `404`, `405` and `OPTIONS` answers too. Router layers sit inside
    /// the endpoint-wide middleware ([`Options::middleware`]) and outside
    /// the layers of routes ([`RouteGroup::layer`]) and every
    /// request-only middleware ([`Router::middleware`]); the first added is
    /// the outermost. See `docs/rest.md`, "Middleware".
    ///
    /// [`Options::middleware`]: pistachio_http::Options::middleware
    ///
    /// ```
    /// use pistachio_rest::{HeaderMap, HeaderValue, Middleware, RequestInfo, Router, StatusCode};
    ///
    /// struct NoSniff;
    /// impl Middleware for NoSniff {
    ///     fn on_response(&self, _req: &RequestInfo, _status: StatusCode, headers: &mut HeaderMap) {
    ///         headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    ///     }
    /// }
    /// let mut router = Router::new();
    /// router.layer(NoSniff);
    /// ```
    pub fn layer(&mut self, layer: impl Middleware) -> &mut Self {
        self.layers.push(Arc::new(layer));
        self
    }

    /// Answers requests no route matches (instead of `404 Could not find a
    /// matching route`). Called exactly once per such request.
    pub fn not_found<F, O>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(RestRequest, RestResponse) -> O + Send + Sync + 'static,
        O: Outcome,
    {
        self.not_found = Some(box_handler(handler));
        self
    }

    /// Adds every route of `group` (and of the groups nested in it), with
    /// the group's prefix and middleware. All or nothing: on error no route
    /// of the group is left behind.
    pub fn mount(&mut self, group: RouteGroup) -> Result<&mut Self, RouteError> {
        let mut flat = Vec::new();
        let mut bodies = Vec::new();
        group.flatten("", &[], &[], BodyMode::Buffered, &mut flat, &mut bodies);
        self.mount_with_bodies(flat, bodies)
    }

    /// Adds routes that already carry their full pattern and middleware
    /// chain, each with its body mode. All or nothing.
    pub(crate) fn mount_with_bodies(
        &mut self,
        flat: Vec<FlatRoute>,
        bodies: Vec<BodyMode>,
    ) -> Result<&mut Self, RouteError> {
        let mut added: Vec<(Method, String)> = Vec::new();
        for (
            FlatRoute {
                method,
                pattern,
                handler,
                middleware,
                layers,
            },
            body,
        ) in flat.into_iter().zip(bodies)
        {
            if let Err(e) = self.insert(
                method.clone(),
                &pattern,
                handler,
                middleware.into(),
                layers.into(),
                body,
            ) {
                for (method, pattern) in added.iter().rev() {
                    let _ = self.remove_route(method, pattern);
                }
                return Err(e);
            }
            added.push((method, pattern));
        }
        Ok(self)
    }

    /// The number of routes (one per method and pattern).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the router has no routes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every `(method, pattern)` routed.
    pub fn routes(&self) -> Vec<(Method, String)> {
        self.tree
            .values()
            .into_iter()
            .flatten()
            .map(|r| (r.method.clone(), r.pattern.to_string()))
            .collect()
    }

    fn find<'t, 'p>(
        &'t self,
        method: &Method,
        segments: &[&'p str],
        captures: &mut Captures<'t, 'p>,
    ) -> Option<&'t Route> {
        let accept = |table: &Vec<Route>| table.iter().any(|r| r.method == *method);
        let table = self.tree.find(segments, &accept, captures)?;
        table.iter().find(|r| r.method == *method)
    }

    /// The route a `method` request for `path` (raw, as on the request
    /// line, without the query) goes to, with `HEAD` falling back to `GET`.
    fn resolve<'t, 'p>(
        &'t self,
        method: &Method,
        segments: &[&'p str],
    ) -> Option<(&'t Route, Captures<'t, 'p>)> {
        let mut captures = Captures::default();
        if let Some(route) = self.find(method, segments, &mut captures) {
            return Some((route, captures));
        }
        if *method == Method::HEAD {
            let mut captures = Captures::default();
            if let Some(route) = self.find(&Method::GET, segments, &mut captures) {
                return Some((route, captures));
            }
        }
        None
    }

    /// The route a `method` request for `path` would be routed to (`HEAD`
    /// falls back to `GET`), with what it captures; `None` if there is
    /// none. The path is raw (percent-encoded, no query).
    pub fn find_route(&self, method: &Method, path: &str) -> Option<RouteMatch> {
        let segments: Vec<&str> = split_path(path).collect();
        let (route, captures) = self.resolve(method, &segments)?;
        Some(RouteMatch {
            pattern: route.pattern.to_string(),
            method: route.method.clone(),
            params: captures
                .params
                .iter()
                .map(|(n, v)| (n.to_string(), percent_decode(v, false).into_owned()))
                .collect(),
            splats: captures
                .splats
                .iter()
                .map(|s| percent_decode(s, false).into_owned())
                .collect(),
        })
    }

    /// The methods `path` answers to, as listed in `Allow`: the routed ones,
    /// `HEAD` where `GET` is routed, and `OPTIONS`; empty if no route
    /// matches the path at all.
    pub fn allowed_methods(&self, path: &str) -> Vec<Method> {
        let segments: Vec<&str> = split_path(path).collect();
        let allowed: Vec<Method> = self
            .methods
            .iter()
            .filter(|m| self.find(m, &segments, &mut Captures::default()).is_some())
            .cloned()
            .collect();
        complete_allow(allowed)
    }

    /// The head hooks of the router's layers, then of the route's.
    fn head_hooks(&self, request: &Request) -> HeadAction {
        if let Some((answer, seen)) = run_heads(&self.layers, request) {
            return HeadAction::Answer(wrapped(answer, &self.layers[..seen], &[]));
        }
        if !self.route_layers || request.path() == "*" {
            return HeadAction::Continue;
        }
        let segments: Vec<&str> = split_path(request.path()).collect();
        let Some((route, _)) = self.resolve(request.method(), &segments) else {
            return HeadAction::Continue;
        };
        match run_heads(&route.layers, request) {
            Some((answer, seen)) => {
                HeadAction::Answer(wrapped(answer, &self.layers, &route.layers[..seen]))
            }
            None => HeadAction::Continue,
        }
    }

    fn dispatch(&self, request: Request, mut writer: ResponseWriter) {
        for layer in &self.layers {
            writer.push_layer(Arc::clone(layer));
        }
        let home: Home = Arc::new(Mutex::new(None));
        let mut resp = RestResponse::new(writer, Arc::clone(&home));
        resp.errors = ErrorFormat::of(request.headers());
        let mut req = RestRequest::new(request);
        let Some(resp) = run_chain(&self.middleware, &mut req, resp, &home) else {
            return;
        };

        if req.path() == "*" {
            // `OPTIONS *` (or anything else on `*`) is about the server, not
            // a route: never matched against `/*` or `/:param`.
            return self.unrouted(req, resp, &home);
        }
        let segments: Vec<&str> = split_path(req.path()).collect();
        let Some((route, captures)) = self.resolve(req.method(), &segments) else {
            return self.unrouted(req, resp, &home);
        };
        let params = captures
            .params
            .iter()
            .map(|(n, v)| (Arc::clone(n), percent_decode(v, false).into_owned()))
            .collect();
        let splats = captures
            .splats
            .iter()
            .map(|s| percent_decode(s, false).into_owned())
            .collect();
        req.set_match(Arc::clone(&route.pattern), params, splats);
        let mut resp = resp;
        resp.writer_mut().set_route(Arc::clone(&route.pattern));
        for layer in route.layers.iter() {
            resp.writer_mut().push_layer(Arc::clone(layer));
        }

        let Some(resp) = run_chain(&route.middleware, &mut req, resp, &home) else {
            return;
        };
        if let Err(error) = (route.handler)(req, resp) {
            answer_error(&home, error);
        }
    }

    /// Answers a request no route of its method matches.
    fn unrouted(&self, req: RestRequest, resp: RestResponse, home: &Home) {
        let is_options = req.method() == Method::OPTIONS;
        let allowed = if is_options && req.path() == "*" {
            complete_allow(self.methods.clone())
        } else {
            self.allowed_methods(req.path())
        };
        if allowed.is_empty() {
            return match &self.not_found {
                Some(handler) => {
                    if let Err(error) = handler(req, resp) {
                        answer_error(home, error);
                    }
                }
                None => HttpError::not_found(NOT_FOUND_BODY).send(resp),
            };
        }
        let list = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut resp = resp;
        if let Ok(value) = HeaderValue::from_str(&list) {
            resp.headers_mut().insert(ALLOW, value);
        }
        if is_options {
            resp.send(StatusCode::NO_CONTENT, "");
        } else {
            HttpError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed").send(resp);
        }
    }
}

/// Adds `HEAD` (with `GET`) and `OPTIONS` to a non-empty list of methods,
/// and orders it.
fn complete_allow(mut allowed: Vec<Method>) -> Vec<Method> {
    if allowed.is_empty() {
        return allowed;
    }
    if allowed.contains(&Method::GET) && !allowed.contains(&Method::HEAD) {
        allowed.push(Method::HEAD);
    }
    if !allowed.contains(&Method::OPTIONS) {
        allowed.push(Method::OPTIONS);
    }
    const ORDER: [Method; 8] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ];
    allowed.sort_by_key(|m| ORDER.iter().position(|o| o == m).unwrap_or(ORDER.len()));
    allowed
}

/// Runs a middleware chain; `None` if one of them stopped the request.
fn run_chain(
    chain: &[BoxMiddleware],
    req: &mut RestRequest,
    mut resp: RestResponse,
    home: &Home,
) -> Option<RestResponse> {
    for middleware in chain {
        match middleware(req, resp) {
            Flow::Continue(next) => resp = next,
            Flow::Stop => return None,
            Flow::Reject(error) => {
                answer_error(home, error);
                return None;
            }
        }
    }
    Some(resp)
}

/// Sends `error` with the writer a handler or middleware gave back.
fn answer_error(home: &Home, error: HttpError) {
    match reclaim(home) {
        Some((writer, format)) => send_error(writer, &error, format),
        None => log::debug!("{error}: not sent, the response was already used"),
    }
}

/// An answer given by a layer of `router` or of `route` (those that saw
/// the head), made to pass through them on its way out.
fn wrapped(mut answer: Answer, router: &[Layer], route: &[Layer]) -> Answer {
    for layer in route.iter().rev().chain(router.iter().rev()) {
        answer.within(Arc::clone(layer));
    }
    answer
}

impl Handler for Router {
    fn on_request(&self, request: Request, response: ResponseWriter) {
        self.dispatch(request, response);
    }

    fn layered(&self) -> bool {
        !self.layers.is_empty() || self.route_layers
    }

    /// The body mode of the route the request goes to (see
    /// [`RouteGroup::streamed_body`]); buffered when it has none.
    fn body_mode(&self, request: &Request) -> BodyMode {
        if !self.streamed_routes || request.path() == "*" {
            return BodyMode::Buffered;
        }
        let segments: Vec<&str> = split_path(request.path()).collect();
        match self.resolve(request.method(), &segments) {
            Some((route, _)) => route.body,
            None => BodyMode::Buffered,
        }
    }

    fn on_head(&self, request: &Request) -> HeadAction {
        self.head_hooks(request)
    }
}

/// Routes under a common prefix, with their own middleware (run after the
/// router's, outermost group first). Build it, then
/// [`mount`](Router::mount) it; groups nest.
///
/// ```
/// use pistachio_rest::{Flow, HttpError, RestRequest, RestResponse, RouteGroup, Router, StatusCode};
///
/// let mut admin = RouteGroup::new("/admin");
/// admin.middleware(|req: &mut RestRequest, resp: RestResponse| {
///     if req.header("x-admin").is_some() {
///         Flow::Continue(resp)
///     } else {
///         Flow::Reject(HttpError::forbidden("admins only"))
///     }
/// });
/// admin.get("/stats", |_req: RestRequest, resp: RestResponse| {
///     resp.send(StatusCode::OK, "all good")
/// });
/// let mut router = Router::new();
/// router.mount(admin)?;
/// assert!(router.find_route(&pistachio_rest::Method::GET, "/admin/stats").is_some());
/// # Ok::<(), pistachio_rest::RouteError>(())
/// ```
pub struct RouteGroup {
    prefix: String,
    middleware: Vec<BoxMiddleware>,
    layers: Vec<Layer>,
    routes: Vec<(Method, String, BoxHandler)>,
    groups: Vec<RouteGroup>,
    /// How the group's routes read request bodies; `None`: as the
    /// enclosing group does.
    body: Option<BodyMode>,
}

impl fmt::Debug for RouteGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteGroup")
            .field("prefix", &self.prefix)
            .field("middleware", &self.middleware.len())
            .field("layers", &self.layers.len())
            .field(
                "routes",
                &self
                    .routes
                    .iter()
                    .map(|(m, p, _)| format!("{m} {p}"))
                    .collect::<Vec<_>>(),
            )
            .field("groups", &self.groups)
            .finish()
    }
}

/// A route with its full pattern and its middleware and layers, outermost
/// first.
pub(crate) struct FlatRoute {
    pub(crate) method: Method,
    pub(crate) pattern: String,
    pub(crate) handler: BoxHandler,
    pub(crate) middleware: Vec<BoxMiddleware>,
    pub(crate) layers: Vec<Layer>,
}

macro_rules! group_verbs {
    ($($(#[$doc:meta])* $name:ident => $method:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name<F, O>(&mut self, pattern: &str, handler: F) -> &mut Self
            where
                F: Fn(RestRequest, RestResponse) -> O + Send + Sync + 'static,
                O: Outcome,
            {
                self.route(Method::$method, pattern, handler)
            }
        )*
    };
}

impl RouteGroup {
    /// An empty group whose routes all start with `prefix` (e.g. `/v1`).
    #[must_use]
    pub fn new(prefix: &str) -> RouteGroup {
        RouteGroup {
            prefix: prefix.to_owned(),
            middleware: Vec::new(),
            layers: Vec::new(),
            routes: Vec::new(),
            groups: Vec::new(),
            body: None,
        }
    }

    /// The routes of this group (and of the groups nested in it, unless
    /// they say otherwise) take their request bodies as a stream, with
    /// backpressure, instead of buffered: the handler is called as soon as
    /// the head arrives (path parameters parsed, middleware run) and reads
    /// the body from [`RestRequest::take_body_stream`]. No size limit
    /// applies unless [`max_body`](Self::max_body) sets one; memory stays
    /// bounded by flow control either way.
    ///
    /// ```
    /// use std::io::Read;
    /// use pistachio_rest::{RestRequest, RestResponse, RouteGroup, Router, StatusCode};
    ///
    /// let mut uploads = RouteGroup::new("/upload");
    /// uploads.streamed_body().max_body(10 << 30);
    /// uploads.put("/:name", |mut req: RestRequest, resp: RestResponse| {
    ///     let name = req.param_str("name").unwrap_or("").to_owned();
    ///     let mut body = req.take_body_stream().expect("a streamed route");
    ///     // Read it off the worker thread: a read there never blocks.
    ///     std::thread::spawn(move || {
    ///         let mut buf = vec![0u8; 64 * 1024];
    ///         let mut total = 0u64;
    ///         loop {
    ///             match body.read(&mut buf) {
    ///                 Ok(0) => break,
    ///                 Ok(n) => total += n as u64,
    ///                 // Over the limit, malformed, or the client left.
    ///                 Err(e) => return resp.send(StatusCode::BAD_REQUEST, e.to_string()),
    ///             }
    ///         }
    ///         resp.send(StatusCode::OK, format!("{name}: {total} bytes"));
    ///     });
    /// });
    /// let mut router = Router::new();
    /// router.mount(uploads)?;
    /// # Ok::<(), pistachio_rest::RouteError>(())
    /// ```
    pub fn streamed_body(&mut self) -> &mut Self {
        if !matches!(self.body, Some(BodyMode::StreamedUpTo(_))) {
            self.body = Some(BodyMode::Streamed);
        }
        self
    }

    /// The most request-body bytes a route of this group accepts, in place
    /// of the endpoint's `max_request_size` (higher or lower); it makes
    /// the group's bodies streamed ([`streamed_body`](Self::streamed_body)).
    /// A larger declared `Content-Length` is answered `413 Payload Too
    /// Large` before any of the body is read; a chunked body that grows
    /// past it fails the handler's stream with
    /// [`InvalidData`](std::io::ErrorKind::InvalidData), and the
    /// connection closes after the handler's answer (`Connection: close`).
    pub fn max_body(&mut self, bytes: u64) -> &mut Self {
        self.body = Some(BodyMode::StreamedUpTo(bytes));
        self
    }

    /// Adds a middleware run, in the order added, before the handler of
    /// every route of this group (and of the groups nested in it).
    pub fn middleware<F>(&mut self, middleware: F) -> &mut Self
    where
        F: Fn(&mut RestRequest, RestResponse) -> Flow + Send + Sync + 'static,
    {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Wraps every exchange routed to a route of this group (and of the
    /// groups nested in it) in `layer`: per-route layers, inside the
    /// router's layers, outermost group first, in the order added. Their
    /// head hooks run with the route already known, before the body is
    /// read (an authentication layer can refuse a large upload before a
    /// byte of it arrives).
    pub fn layer(&mut self, layer: impl Middleware) -> &mut Self {
        self.layers.push(Arc::new(layer));
        self
    }

    /// Adds a route; `pattern` is relative to the group's prefix. Errors
    /// (bad pattern, duplicate) surface when the group is mounted.
    pub fn route<F, O>(&mut self, method: Method, pattern: &str, handler: F) -> &mut Self
    where
        F: Fn(RestRequest, RestResponse) -> O + Send + Sync + 'static,
        O: Outcome,
    {
        self.routes
            .push((method, pattern.to_owned(), box_handler(handler)));
        self
    }

    group_verbs! {
        /// Adds a `GET` route.
        get => GET;
        /// Adds a `POST` route.
        post => POST;
        /// Adds a `PUT` route.
        put => PUT;
        /// Adds a `PATCH` route.
        patch => PATCH;
        /// Adds a `DELETE` route.
        delete => DELETE;
        /// Adds an `OPTIONS` route.
        options => OPTIONS;
        /// Adds a `HEAD` route.
        head => HEAD;
    }

    /// Nests `group` inside this one: its prefix is appended to this
    /// prefix, its middleware runs after this group's.
    pub fn group(&mut self, group: RouteGroup) -> &mut Self {
        self.groups.push(group);
        self
    }

    fn flatten(
        self,
        outer_prefix: &str,
        outer: &[BoxMiddleware],
        outer_layers: &[Layer],
        outer_body: BodyMode,
        out: &mut Vec<FlatRoute>,
        bodies: &mut Vec<BodyMode>,
    ) {
        let body = self.body.unwrap_or(outer_body);
        let prefix = join(outer_prefix, &self.prefix);
        let mut chain = outer.to_vec();
        chain.extend(self.middleware);
        let mut layers = outer_layers.to_vec();
        layers.extend(self.layers);
        for (method, pattern, handler) in self.routes {
            out.push(FlatRoute {
                method,
                pattern: join(&prefix, &pattern),
                handler,
                middleware: chain.clone(),
                layers: layers.clone(),
            });
            bodies.push(body);
        }
        for group in self.groups {
            group.flatten(&prefix, &chain, &layers, body, out, bodies);
        }
    }
}

/// `prefix` + `path` with exactly one `/` between them.
fn join(prefix: &str, path: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    if path.is_empty() && !prefix.is_empty() {
        return prefix.to_owned();
    }
    format!("{prefix}/{path}")
}

/// Turns a method on shared state into a route handler (Pistache's
/// `Routes::bind(&Service::method, this)`).
///
/// ```
/// use std::sync::{atomic::{AtomicU64, Ordering}, Arc};
/// use pistachio_rest::{bind, RestRequest, RestResponse, Router, StatusCode};
///
/// struct Counter(AtomicU64);
/// impl Counter {
///     fn hit(&self, _req: RestRequest, resp: RestResponse) {
///         let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
///         resp.send(StatusCode::OK, n.to_string());
///     }
/// }
///
/// let counter = Arc::new(Counter(AtomicU64::new(0)));
/// let mut router = Router::new();
/// router.get("/hits", bind(&counter, Counter::hit));
/// ```
pub fn bind<T, F, O>(state: &Arc<T>, method: F) -> impl Fn(RestRequest, RestResponse) -> O
where
    T: Send + Sync + ?Sized + 'static,
    F: Fn(&T, RestRequest, RestResponse) -> O + Send + Sync + 'static,
{
    let state = Arc::clone(state);
    move |req, resp| method(&state, req, resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{raw_request, serve};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ok(text: &'static str) -> impl Fn(RestRequest, RestResponse) + Send + Sync + 'static {
        move |_req, resp| resp.send(StatusCode::OK, text)
    }

    #[test]
    fn find_route_fixed_param_optional_splat() {
        let mut router = Router::new();
        router
            .get("/v1/hello", ok("hello"))
            .get("/v1/users/:id", ok("user"))
            .get("/get/:key?/bar", ok("opt"))
            .get("/say/*/to/*", ok("splat"))
            .post("/v1/users/:id", ok("post"));
        let m = router.find_route(&Method::GET, "/v1/users/a%20b").unwrap();
        assert_eq!(m.pattern, "/v1/users/:id");
        assert_eq!(m.params, [("id".to_owned(), "a b".to_owned())]);
        let m = router.find_route(&Method::GET, "/say/hi/to/you").unwrap();
        assert_eq!(m.splats, ["hi", "you"]);
        assert!(router
            .find_route(&Method::GET, "/get/bar")
            .unwrap()
            .params
            .is_empty());
        assert!(router.find_route(&Method::GET, "/v1/hell0").is_none());
        let m = router.find_route(&Method::HEAD, "/v1/hello").unwrap();
        assert_eq!(m.method, Method::GET);
        assert_eq!(
            router
                .find_route(&Method::POST, "/v1/users/1")
                .unwrap()
                .method,
            Method::POST
        );
        assert!(router.find_route(&Method::DELETE, "/v1/users/1").is_none());
        assert_eq!(
            router.allowed_methods("/v1/users/1"),
            [Method::GET, Method::HEAD, Method::POST, Method::OPTIONS]
        );
        assert!(router.allowed_methods("/nowhere").is_empty());
        assert_eq!(router.len(), 5);
    }

    #[test]
    fn per_method_routing_backtracks() {
        // GET /users/new would be the fixed route, but only POST routes it.
        let mut router = Router::new();
        router
            .post("/users/new", ok("new"))
            .get("/users/:id", ok("user"));
        let m = router.find_route(&Method::GET, "/users/new").unwrap();
        assert_eq!(m.pattern, "/users/:id");
        assert_eq!(
            router
                .find_route(&Method::POST, "/users/new")
                .unwrap()
                .pattern,
            "/users/new"
        );
    }

    #[test]
    fn add_and_remove_routes() {
        let mut router = Router::new();
        router.get("/a/:x", ok("a"));
        assert_eq!(
            router.route(Method::GET, "/a/:x/", ok("again")).err(),
            Some(RouteError::Duplicate {
                method: Method::GET,
                pattern: "/a/:x/".into()
            })
        );
        assert!(matches!(
            router.route(Method::GET, "a", ok("x")),
            Err(RouteError::InvalidPattern(_))
        ));
        assert_eq!(
            router.remove_route(&Method::POST, "/a/:x"),
            Err(RouteError::NotFound {
                method: Method::POST,
                pattern: "/a/:x".into()
            })
        );
        assert!(router.remove_route(&Method::GET, "/b").is_err());
        router.remove_route(&Method::GET, "/a/:x").unwrap();
        assert!(router.remove_route(&Method::GET, "/a/:x").is_err());
        assert!(router.find_route(&Method::GET, "/a/1").is_none());
        assert!(router.is_empty());
        router.get("/a/:x", ok("back"));
        assert!(router.find_route(&Method::GET, "/a/1").is_some());
    }

    #[test]
    #[should_panic(expected = "already exists")]
    fn shorthand_panics_on_duplicates() {
        Router::new().get("/x", ok("1")).get("/x", ok("2"));
    }

    #[test]
    fn groups_join_prefixes_and_roll_back() {
        let mut inner = RouteGroup::new("/kv/");
        inner.get("/:key", ok("kv")).get("/", ok("list"));
        let mut v1 = RouteGroup::new("/v1");
        v1.get("/healthz", ok("h")).group(inner);
        let mut router = Router::new();
        router.mount(v1).unwrap();
        let mut routes = router.routes();
        routes.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            routes.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
            ["/v1/healthz", "/v1/kv", "/v1/kv/:key"]
        );
        let mut again = RouteGroup::new("/v1");
        again.get("/new", ok("n")).get("/healthz", ok("dup"));
        assert!(router.mount(again).is_err());
        assert!(router.find_route(&Method::GET, "/v1/new").is_none());
        assert_eq!(router.len(), 3);
    }

    #[test]
    fn dispatch_over_http() {
        let not_found_calls = Arc::new(AtomicUsize::new(0));
        let calls = Arc::clone(&not_found_calls);
        let mut router = Router::new();
        router
            .get("/hello", ok("fixed"))
            .get("/*", |req: RestRequest, resp: RestResponse| {
                resp.send(StatusCode::OK, format!("splat {}", req.splat()[0]))
            })
            .get("/users/:id", |req: RestRequest, resp: RestResponse| {
                let id: u32 = req.param("id")?;
                resp.send(StatusCode::OK, format!("user {id}"));
                Ok::<(), HttpError>(())
            })
            .post("/users/:id", ok("posted"))
            .head("/moved", |_req: RestRequest, resp: RestResponse| {
                resp.header(
                    pistachio_http::header::LOCATION,
                    HeaderValue::from_static("/elsewhere"),
                )
                .send(StatusCode::MOVED_PERMANENTLY, "")
            })
            .not_found(move |_req: RestRequest, resp: RestResponse| {
                calls.fetch_add(1, Ordering::SeqCst);
                resp.send(StatusCode::NOT_FOUND, "custom");
            });
        let (_endpoint, port) = serve(router);

        let r = raw_request(port, "GET /hello HTTP/1.1");
        assert_eq!((r.status, r.body.as_str()), (200, "fixed"));
        let r = raw_request(port, "GET //hello/ HTTP/1.1");
        assert_eq!((r.status, r.body.as_str()), (200, "fixed"));
        let r = raw_request(port, "GET /hi HTTP/1.1");
        assert_eq!((r.status, r.body.as_str()), (200, "splat hi"));
        let r = raw_request(port, "GET /users/42 HTTP/1.1");
        assert_eq!((r.status, r.body.as_str()), (200, "user 42"));
        let r = raw_request(port, "GET /users/abc HTTP/1.1");
        assert_eq!(r.status, 400);
        assert!(
            r.body.contains(":id") && r.body.contains("\"abc\""),
            "{}",
            r.body
        );

        // HEAD: explicit route, then GET fallback without a body.
        let r = raw_request(port, "HEAD /moved HTTP/1.1");
        assert_eq!(r.status, 301);
        assert_eq!(r.header("location"), Some("/elsewhere"));
        let r = raw_request(port, "HEAD /hello HTTP/1.1");
        assert_eq!((r.status, r.body.as_str()), (200, ""));
        assert_eq!(r.header("content-length"), Some("5"));

        // 405 + Allow, OPTIONS.
        let r = raw_request(port, "DELETE /users/1 HTTP/1.1");
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("GET, HEAD, POST, OPTIONS"));
        let r = raw_request(port, "OPTIONS /users/1 HTTP/1.1");
        assert_eq!(r.status, 204);
        assert_eq!(r.header("allow"), Some("GET, HEAD, POST, OPTIONS"));

        // Not found: the custom handler, exactly once per request.
        let r = raw_request(port, "GET /a/b/c HTTP/1.1");
        assert_eq!((r.status, r.body.as_str()), (404, "custom"));
        assert_eq!(not_found_calls.load(Ordering::SeqCst), 1);
        let r = raw_request(port, "PUT /x/y HTTP/1.1");
        assert_eq!(r.status, 404);
        assert_eq!(not_found_calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn default_not_found_body() {
        let mut router = Router::new();
        router.get("/only", ok("x"));
        let (_endpoint, port) = serve(router);
        let r = raw_request(port, "GET /other HTTP/1.1");
        assert_eq!((r.status, r.body.as_str()), (404, NOT_FOUND_BODY));
    }

    #[test]
    fn middleware_order_stop_reject_and_groups() {
        #[derive(Debug)]
        struct Trace(Vec<&'static str>);
        fn step(
            name: &'static str,
        ) -> impl Fn(&mut RestRequest, RestResponse) -> Flow + Send + Sync {
            move |req, resp| {
                match req.extensions_mut().get_mut::<Trace>() {
                    Some(trace) => trace.0.push(name),
                    None => {
                        req.extensions_mut().insert(Trace(vec![name]));
                    }
                }
                Flow::Continue(resp)
            }
        }
        let mut group = RouteGroup::new("/g");
        group
            .middleware(step("group"))
            .middleware(|req: &mut RestRequest, resp: RestResponse| {
                if req.has_query("deny") {
                    return Flow::Reject(HttpError::unauthorized("no"));
                }
                Flow::Continue(resp)
            })
            .get("/trace", |req: RestRequest, resp: RestResponse| {
                let trace = req.extensions().get::<Trace>().map(|t| t.0.join(">"));
                resp.send(StatusCode::OK, trace.unwrap_or_default())
            });
        let mut router = Router::new();
        router
            .middleware(step("router"))
            .middleware(|req: &mut RestRequest, resp: RestResponse| {
                if req.path() == "/stop" {
                    resp.send(StatusCode::NO_CONTENT, "");
                    return Flow::Stop;
                }
                Flow::Continue(resp)
            })
            .get("/plain", |req: RestRequest, resp: RestResponse| {
                let trace = req.extensions().get::<Trace>().map(|t| t.0.join(">"));
                resp.send(StatusCode::OK, trace.unwrap_or_default())
            });
        router.mount(group).unwrap();
        let (_endpoint, port) = serve(router);

        assert_eq!(
            raw_request(port, "GET /g/trace HTTP/1.1").body,
            "router>group"
        );
        assert_eq!(raw_request(port, "GET /plain HTTP/1.1").body, "router");
        assert_eq!(raw_request(port, "GET /stop HTTP/1.1").status, 204);
        let r = raw_request(port, "GET /g/trace?deny HTTP/1.1");
        assert_eq!((r.status, r.body.as_str()), (401, "no"));
    }

    #[test]
    fn handlers_answer_from_other_threads_and_errors() {
        struct State {
            greeting: String,
        }
        impl State {
            fn greet(&self, req: RestRequest, resp: RestResponse) -> Result<(), HttpError> {
                let name = req.param_str("name").unwrap_or("nobody").to_owned();
                let greeting = self.greeting.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    resp.send(StatusCode::OK, format!("{greeting}, {name}"));
                });
                Ok(())
            }
        }
        let state = Arc::new(State {
            greeting: "Hello".into(),
        });
        let mut router = Router::new();
        router
            .get("/greet/:name?", bind(&state, State::greet))
            .get("/fail", |_req: RestRequest, _resp: RestResponse| {
                Err::<(), _>(HttpError::new(StatusCode::CONFLICT, "busy"))
            })
            .get(
                "/answered-then-fail",
                |_req: RestRequest, resp: RestResponse| {
                    resp.send(StatusCode::OK, "first");
                    Err::<(), _>(HttpError::internal("ignored"))
                },
            )
            .get("/forgot", |_req: RestRequest, _resp: RestResponse| {});
        let (_endpoint, port) = serve(router);
        assert_eq!(
            raw_request(port, "GET /greet/ann HTTP/1.1").body,
            "Hello, ann"
        );
        assert_eq!(
            raw_request(port, "GET /greet HTTP/1.1").body,
            "Hello, nobody"
        );
        let r = raw_request(port, "GET /fail HTTP/1.1");
        assert_eq!((r.status, r.body.as_str()), (409, "busy"));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        let r = raw_request(port, "GET /answered-then-fail HTTP/1.1");
        assert_eq!((r.status, r.body.as_str()), (200, "first"));
        assert_eq!(raw_request(port, "GET /forgot HTTP/1.1").status, 500);
    }

    #[test]
    fn json_helpers() {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct Item {
            name: String,
            qty: u32,
        }
        let mut router = Router::new();
        router.post("/items", |req: RestRequest, resp: RestResponse| {
            let item: Item = req.json()?;
            resp.json(StatusCode::CREATED, &item);
            Ok::<(), HttpError>(())
        });
        let (_endpoint, port) = serve(router);
        let post = |ct: &str, body: &str| {
            raw_request(
                port,
                &format!(
                    "POST /items HTTP/1.1\r\n{ct}Content-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
            )
        };
        let r = post(
            "Content-Type: application/json\r\n",
            r#"{"name":"nut","qty":3}"#,
        );
        assert_eq!(r.status, 201);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, r#"{"name":"nut","qty":3}"#);
        let r = post("Content-Type: text/plain\r\n", "{}");
        assert_eq!(r.status, 415);
        assert!(r.body.contains("application/json"), "{}", r.body);
        assert_eq!(post("", "{}").status, 415);
        let r = post("Content-Type: application/json\r\n", r#"{"name":"nut"}"#);
        assert_eq!(r.status, 400);
        assert!(
            r.body.starts_with("invalid JSON: missing field `qty`"),
            "{}",
            r.body
        );
    }
}
