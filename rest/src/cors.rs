//! [`Cors`]: cross-origin resource sharing (the Fetch standard's CORS
//! protocol) as a router middleware.
//!
//! * A request whose `Origin` is allowed gets
//!   `Access-Control-Allow-Origin` (the origin itself, or `*` when any
//!   origin is allowed without credentials), `Access-Control-Allow-Credentials`
//!   and `Access-Control-Expose-Headers` as configured.
//! * A preflight (`OPTIONS` with `Access-Control-Request-Method`) is
//!   answered `204 No Content` by the middleware, with the allowed
//!   methods, headers and `Access-Control-Max-Age`; no route sees it.
//! * An origin that is not allowed (or not a valid header value) gets no
//!   `Access-Control-*` field at all, so the browser refuses the answer;
//!   the request itself is still served (CORS protects readers, not the
//!   server).
//! * `Vary: Origin` is on every answer whose fields depend on the origin
//!   (always, unless any origin is allowed without credentials).
//! * Credentials are never combined with `*`: with credentials, "any
//!   origin" echoes the request's origin, "any header" the requested
//!   headers.
//!
//! # Example
//!
//! ```
//! use pistachio_rest::cors::Cors;
//! use pistachio_rest::{Method, Router};
//! use std::time::Duration;
//!
//! let mut router = Router::new();
//! router.middleware(
//!     Cors::new()
//!         .allow_origins(["https://app.example.com"])
//!         .allow_methods([Method::GET, Method::POST, Method::DELETE])
//!         .allow_headers(["content-type", "authorization"])
//!         .expose_headers(["x-request-id"])
//!         .allow_credentials(true)
//!         .max_age(Duration::from_secs(600))
//!         .into_middleware(),
//! );
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use pistachio_http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use pistachio_http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::request::RestRequest;
use crate::response::RestResponse;
use crate::router::Flow;

/// Which origins are allowed.
#[derive(Clone)]
enum Origins {
    /// None (the default).
    None,
    /// Any origin.
    Any,
    /// These, compared ASCII-case-insensitively.
    List(Vec<String>),
    /// Those for which the predicate says yes.
    Predicate(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl fmt::Debug for Origins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origins::None => f.write_str("None"),
            Origins::Any => f.write_str("Any"),
            Origins::List(list) => f.debug_tuple("List").field(list).finish(),
            Origins::Predicate(_) => f.write_str("Predicate"),
        }
    }
}

/// The CORS battery: see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Origins,
    methods: Vec<Method>,
    /// `None`: any header (the requested ones are echoed).
    headers: Option<Vec<String>>,
    expose: Vec<String>,
    credentials: bool,
    max_age: Option<Duration>,
}

impl Default for Cors {
    fn default() -> Self {
        Cors::new()
    }
}

impl Cors {
    /// Allows no origin yet; methods `GET`, `HEAD`, `POST`; no extra
    /// request header; no credentials.
    pub fn new() -> Cors {
        Cors {
            origins: Origins::None,
            methods: vec![Method::GET, Method::HEAD, Method::POST],
            headers: Some(Vec::new()),
            expose: Vec::new(),
            credentials: false,
            max_age: None,
        }
    }

    /// Any origin (with credentials, the request's origin is echoed, never `*`).
    #[must_use]
    pub fn allow_any_origin(mut self) -> Cors {
        self.origins = Origins::Any;
        self
    }

    /// These origins (`scheme://host[:port]`), exactly.
    #[must_use]
    pub fn allow_origins<I, S>(mut self, origins: I) -> Cors
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.origins = Origins::List(origins.into_iter().map(Into::into).collect());
        self
    }

    /// The origins `allow` says yes to.
    #[must_use]
    pub fn allow_origin_fn(mut self, allow: impl Fn(&str) -> bool + Send + Sync + 'static) -> Cors {
        self.origins = Origins::Predicate(Arc::new(allow));
        self
    }

    /// The methods a cross-origin request may use.
    #[must_use]
    pub fn allow_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Cors {
        self.methods = methods.into_iter().collect();
        self
    }

    /// The request header fields a cross-origin request may carry.
    #[must_use]
    pub fn allow_headers<I, S>(mut self, headers: I) -> Cors
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.headers = Some(headers.into_iter().map(Into::into).collect());
        self
    }

    /// Any request header field (a preflight's requested ones are echoed).
    #[must_use]
    pub fn allow_any_header(mut self) -> Cors {
        self.headers = None;
        self
    }

    /// The response header fields scripts may read.
    #[must_use]
    pub fn expose_headers<I, S>(mut self, headers: I) -> Cors
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.expose = headers.into_iter().map(Into::into).collect();
        self
    }

    /// Whether cross-origin requests may carry credentials (cookies,
    /// `Authorization`).
    #[must_use]
    pub fn allow_credentials(mut self, allow: bool) -> Cors {
        self.credentials = allow;
        self
    }

    /// How long a browser may cache a preflight's answer.
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Cors {
        self.max_age = Some(age);
        self
    }

    /// The battery as a router middleware
    /// ([`Router::middleware`](crate::Router::middleware)); put it first,
    /// so that preflights are answered before anything else runs.
    pub fn into_middleware(
        self,
    ) -> impl Fn(&mut RestRequest, RestResponse) -> Flow + Send + Sync + 'static {
        let this = Arc::new(self);
        move |req: &mut RestRequest, resp: RestResponse| this.handle(req, resp)
    }

    /// Adds the CORS fields for `req` to `resp`, or answers a preflight
    /// (what the middleware of [`Cors::into_middleware`] does).
    pub fn handle(&self, req: &mut RestRequest, mut resp: RestResponse) -> Flow {
        let preflight = *req.method() == Method::OPTIONS
            && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        let headers = resp.headers_mut();
        if self.varies() {
            add_vary(headers, "Origin");
        }
        if preflight {
            add_vary(headers, "Access-Control-Request-Method");
            add_vary(headers, "Access-Control-Request-Headers");
        }
        let origin = req.headers().get(ORIGIN).filter(|o| self.allows(o));
        if let Some(origin) = origin {
            self.allow_origin(headers, origin);
            if preflight {
                self.preflight(headers, req.headers().get(ACCESS_CONTROL_REQUEST_HEADERS));
            } else if !self.expose.is_empty() {
                if let Ok(v) = HeaderValue::from_str(&self.expose.join(", ")) {
                    headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v);
                }
            }
        }
        if preflight {
            resp.send(StatusCode::NO_CONTENT, "");
            return Flow::Stop;
        }
        Flow::Continue(resp)
    }

    /// Whether the answer depends on the request's origin.
    fn varies(&self) -> bool {
        !matches!(self.origins, Origins::Any) || self.credentials
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        match &self.origins {
            Origins::None => false,
            Origins::Any => true,
            Origins::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            Origins::Predicate(allow) => allow(origin),
        }
    }

    fn allow_origin(&self, headers: &mut HeaderMap, origin: &HeaderValue) {
        if matches!(self.origins, Origins::Any) && !self.credentials {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        } else {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        }
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    fn preflight(&self, headers: &mut HeaderMap, requested: Option<&HeaderValue>) {
        let methods = self
            .methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(v) = HeaderValue::from_str(&methods) {
            headers.insert(ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        let allowed = match &self.headers {
            Some(list) if !list.is_empty() => HeaderValue::from_str(&list.join(", ")).ok(),
            Some(_) => None,
            None => requested.cloned(),
        };
        if let Some(v) = allowed {
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if let Some(age) = self.max_age {
            headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age.as_secs()));
        }
    }
}

/// Adds `field` to `Vary` unless it (or `*`) is there.
fn add_vary(headers: &mut HeaderMap, field: &'static str) {
    let present = headers.get_all(VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|f| {
                let f = f.trim();
                f == "*" || f.eq_ignore_ascii_case(field)
            })
        })
    });
    if !present {
        headers.append(VARY, HeaderValue::from_static(field));
    }
}
