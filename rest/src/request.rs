//! [`RestRequest`]: an HTTP request with what routing found in its path.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

use pistachio_http::{BodyStream, Request};
use serde::de::DeserializeOwned;

use crate::response::HttpError;

/// A request as route handlers and middleware see it (Pistache's
/// `Rest::Request`): the HTTP [`Request`] (reachable through `Deref`, so
/// `req.method()`, `req.header(..)`, `req.body()`, `req.query(..)` work),
/// plus the path parameters and splats of the matched route, and a typed
/// [`Extensions`] slot that middleware can fill for later stages.
pub struct RestRequest {
    inner: Request,
    params: Vec<(Arc<str>, String)>,
    splats: Vec<String>,
    route: Option<Arc<str>>,
    extensions: Extensions,
}

impl fmt::Debug for RestRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestRequest")
            .field("request", &self.inner)
            .field("route", &self.route)
            .field("params", &self.params)
            .field("splats", &self.splats)
            .field("extensions", &self.extensions)
            .finish()
    }
}

impl Deref for RestRequest {
    type Target = Request;

    fn deref(&self) -> &Request {
        &self.inner
    }
}

/// `name` without a leading `:`, so `param(":id")` (Pistache's spelling)
/// and `param("id")` are the same.
fn bare(name: &str) -> &str {
    name.strip_prefix(':').unwrap_or(name)
}

impl RestRequest {
    pub(crate) fn new(inner: Request) -> RestRequest {
        RestRequest {
            inner,
            params: Vec::new(),
            splats: Vec::new(),
            route: None,
            extensions: Extensions::default(),
        }
    }

    pub(crate) fn set_match(
        &mut self,
        route: Arc<str>,
        params: Vec<(Arc<str>, String)>,
        splats: Vec<String>,
    ) {
        self.route = Some(route);
        self.params = params;
        self.splats = splats;
    }

    /// On a route with a streamed body
    /// ([`RouteGroup::streamed_body`](crate::RouteGroup::streamed_body)),
    /// the body as it arrives; `None` on other routes (their body is in
    /// [`body`](Request::body)) or once taken.
    pub fn take_body_stream(&mut self) -> Option<BodyStream> {
        self.inner.take_body_stream()
    }

    /// The HTTP request.
    pub fn http(&self) -> &Request {
        &self.inner
    }

    /// The HTTP request, to change (a middleware that rewrites headers or
    /// decodes the body).
    pub fn http_mut(&mut self) -> &mut Request {
        &mut self.inner
    }

    /// Consumes this request, returning the HTTP request.
    pub fn into_http(self) -> Request {
        self.inner
    }

    /// The pattern of the route that matched, e.g. `/users/:id`; `None`
    /// before routing (in router middleware) or when no route matched.
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    /// The percent-decoded value of path parameter `name` (`"id"` or
    /// `":id"`), or `None` if the route has no such parameter or an optional
    /// one was absent.
    pub fn param_str(&self, name: &str) -> Option<&str> {
        let name = bare(name);
        self.params
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Path parameter `name` parsed as `T`. A missing parameter or a value
    /// that does not parse is a `400 Bad Request` naming the parameter and
    /// the reason, ready to return from a handler with `?`.
    pub fn param<T>(&self, name: &str) -> Result<T, HttpError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let raw = self.param_str(name).ok_or_else(|| {
            HttpError::bad_request(format!("missing path parameter :{}", bare(name)))
        })?;
        raw.parse().map_err(|e| {
            HttpError::bad_request(format!(
                "path parameter :{}: invalid value {raw:?}: {e}",
                bare(name)
            ))
        })
    }

    /// Whether the matched route captured parameter `name` (an optional
    /// parameter that was absent is not captured).
    pub fn has_param(&self, name: &str) -> bool {
        self.param_str(name).is_some()
    }

    /// Every captured path parameter, `(name, decoded value)`, in path order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.params.iter().map(|(n, v)| (&**n, v.as_str()))
    }

    /// The segments matched by `*` in the route, percent-decoded, in path
    /// order.
    pub fn splat(&self) -> &[String] {
        &self.splats
    }

    /// Splat `index` parsed as `T`; missing or unparsable is a `400`.
    pub fn splat_at<T>(&self, index: usize) -> Result<T, HttpError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let raw = self
            .splats
            .get(index)
            .ok_or_else(|| HttpError::bad_request(format!("missing splat {index}")))?;
        raw.parse().map_err(|e| {
            HttpError::bad_request(format!("splat {index}: invalid value {raw:?}: {e}"))
        })
    }

    /// Query parameter `name` parsed as `T`: `Ok(None)` if absent, a `400`
    /// if present but unparsable.
    pub fn query_as<T>(&self, name: &str) -> Result<Option<T>, HttpError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.inner.query(name) {
            None => Ok(None),
            Some(raw) => raw.parse().map(Some).map_err(|e| {
                HttpError::bad_request(format!(
                    "query parameter {name}: invalid value {raw:?}: {e}"
                ))
            }),
        }
    }

    /// The body parsed as JSON. The `Content-Type` must be
    /// `application/json` (or `application/*+json`), else `415
    /// Unsupported Media Type`; a body that is not valid JSON for `T` is a
    /// `400 Bad Request` with serde's short reason.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        let content_type = self.inner.content_type();
        if !content_type.is_some_and(is_json_media_type) {
            return Err(HttpError::unsupported_media_type(format!(
                "expected Content-Type: application/json, got {}",
                content_type.map_or(Cow::Borrowed("none"), |c| Cow::Owned(format!("{c:?}")))
            )));
        }
        serde_json::from_slice(self.inner.body())
            .map_err(|e| HttpError::bad_request(format!("invalid JSON: {e}")))
    }

    /// Values that middleware attached to this request.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Values attached to this request, mutably: middleware inserts here,
    /// handlers read.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }
}

/// Whether a `Content-Type` value names JSON: `application/json` or
/// `application/<anything>+json`, parameters ignored, case-insensitive.
pub(crate) fn is_json_media_type(value: &str) -> bool {
    let media = value.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = media.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub.as_bytes()[sub.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

/// A map from type to value, one value per type: how middleware passes
/// what it learnt (an authenticated user, a request id) to handlers.
#[derive(Default)]
pub struct Extensions {
    map: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.map.len())
            .finish()
    }
}

impl Extensions {
    /// Stores `value`, returning the previous value of its type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) -> Option<T> {
        self.map
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast().ok().map(|b| *b))
    }

    /// The value of type `T`, if any.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.map.get(&TypeId::of::<T>())?.downcast_ref()
    }

    /// The value of type `T`, mutably.
    pub fn get_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        self.map.get_mut(&TypeId::of::<T>())?.downcast_mut()
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Any + Send + Sync>(&mut self) -> Option<T> {
        self.map
            .remove(&TypeId::of::<T>())
            .and_then(|old| old.downcast().ok().map(|b| *b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ;x=y",
            "application/problem+json",
            "application/vnd.api+JSON",
        ] {
            assert!(is_json_media_type(ok), "{ok}");
        }
        for bad in [
            "text/json",
            "application/jsonx",
            // Not at a character boundary five bytes from the end: no panic.
            "application/x\u{e9}1234",
            "application/+json",
            "json",
            "",
            "application/",
        ] {
            assert!(!is_json_media_type(bad), "{bad}");
        }
    }

    #[test]
    fn extensions() {
        #[derive(Debug, PartialEq)]
        struct User(&'static str);
        let mut ext = Extensions::default();
        assert_eq!(ext.get::<User>(), None);
        assert_eq!(ext.insert(User("ann")), None);
        assert_eq!(ext.insert(7u32), None);
        assert_eq!(ext.insert(User("bob")), Some(User("ann")));
        *ext.get_mut::<u32>().unwrap() += 1;
        assert_eq!(ext.get::<u32>(), Some(&8));
        assert_eq!(ext.remove::<User>(), Some(User("bob")));
        assert_eq!(ext.get::<User>(), None);
    }
}
