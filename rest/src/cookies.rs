//! Cookies with the `cookie` crate's types (cargo feature `cookies`):
//! read a request's cookies as a [`CookieJar`], set cookies with their
//! attributes on an answer, and keep signed or private (encrypted) cookies
//! with a [`Key`].
//!
//! * [`RestRequest::cookie_jar`]: every `Cookie` field of the request,
//!   parsed into a jar (percent-decoded). A malformed pair (no `=`, an
//!   empty name, a field that is not UTF-8) is skipped: it is never an
//!   error.
//! * [`RestResponse::set_cookie`], [`RestResponse::remove_cookie`]: one
//!   `Set-Cookie` each, with every attribute the cookie carries (`Secure`,
//!   `HttpOnly`, `SameSite`, `Max-Age`, `Expires`, `Path`, `Domain`).
//! * [`RestResponse::set_cookies_from`]: a `Set-Cookie` for every change
//!   made to a jar (the jar's delta), signed and private cookies included.
//!
//! # Example
//!
//! ```
//! use pistachio_rest::cookies::{Cookie, Key, SameSite};
//! use pistachio_rest::{RestRequest, RestResponse, Router, StatusCode};
//! use std::sync::Arc;
//!
//! let key = Arc::new(Key::generate());
//! let mut router = Router::new();
//! let login_key = Arc::clone(&key);
//! router.post("/login", move |req: RestRequest, mut resp: RestResponse| {
//!     let mut jar = req.cookie_jar();
//!     let session = Cookie::build(("session", "user-42"))
//!         .path("/")
//!         .http_only(true)
//!         .secure(true)
//!         .same_site(SameSite::Lax);
//!     jar.private_mut(&login_key).add(session);
//!     resp.set_cookies_from(&jar);
//!     resp.send(StatusCode::OK, "welcome");
//! });
//! router.get("/me", move |req: RestRequest, resp: RestResponse| {
//!     let jar = req.cookie_jar();
//!     match jar.private(&key).get("session") {
//!         Some(session) => resp.send(StatusCode::OK, session.value().to_owned()),
//!         None => resp.send(StatusCode::UNAUTHORIZED, "no session"),
//!     }
//! });
//! ```

/// The `time` crate (durations and dates of `Max-Age` and `Expires`), as
/// the `cookie` crate uses it.
pub use cookie::time;
pub use cookie::{Cookie, CookieBuilder, CookieJar, Expiration, Key, SameSite};

use pistachio_http::header::{COOKIE, SET_COOKIE};
use pistachio_http::HeaderValue;

use crate::request::RestRequest;
use crate::response::RestResponse;

impl RestRequest {
    /// The request's cookies, in a jar (as its originals: a
    /// [`RestResponse::set_cookies_from`] of the jar sends only what was
    /// changed since). Malformed pairs are skipped. Read signed or private
    /// cookies through [`CookieJar::signed`] and [`CookieJar::private`]
    /// with the [`Key`] that made them: a cookie that fails to verify or
    /// decrypt reads as absent.
    pub fn cookie_jar(&self) -> CookieJar {
        let mut jar = CookieJar::new();
        for value in self.headers().get_all(COOKIE) {
            let Ok(value) = value.to_str() else {
                continue;
            };
            for cookie in Cookie::split_parse_encoded(value.to_owned()).flatten() {
                if !cookie.name().is_empty() {
                    jar.add_original(cookie.into_owned());
                }
            }
        }
        jar
    }
}

impl RestResponse {
    /// Adds a `Set-Cookie` for `cookie`, with its attributes; the value is
    /// percent-encoded where it needs to be. A cookie whose text cannot be
    /// a header field is skipped (logged at debug).
    pub fn set_cookie<'c>(&mut self, cookie: impl Into<Cookie<'c>>) {
        let cookie = cookie.into();
        match HeaderValue::from_str(&cookie.encoded().to_string()) {
            Ok(value) => {
                self.headers_mut().append(SET_COOKIE, value);
            }
            Err(_) => log::debug!("cookie {:?} is not a valid header value", cookie.name()),
        }
    }

    /// Tells the client to drop the cookie `name` (on `path`, if the cookie
    /// was set with one): `Set-Cookie` with an empty value, `Max-Age=0` and
    /// an expiry in the past.
    pub fn remove_cookie(&mut self, name: &str, path: Option<&str>) {
        let mut cookie = Cookie::new(name.to_owned(), "");
        if let Some(path) = path {
            cookie.set_path(path.to_owned());
        }
        cookie.make_removal();
        self.set_cookie(cookie);
    }

    /// A `Set-Cookie` for every cookie added to or removed from `jar`
    /// since it was made (its delta).
    pub fn set_cookies_from(&mut self, jar: &CookieJar) {
        for cookie in jar.delta() {
            self.set_cookie(cookie.clone());
        }
    }
}
