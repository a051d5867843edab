//! Bearer-token access control, decided when the request head arrives.

use openssl::sha::sha256;
use pistachio_rest::header::{ACCESS_CONTROL_REQUEST_METHOD, WWW_AUTHENTICATE};
use pistachio_rest::{
    Answer, HeadAction, HeaderValue, Hooks, Method, Middleware, Request, StatusCode,
};

/// Requires `Authorization: Bearer TOKEN` on every request under a path
/// prefix (its first segment, e.g. `v1`); other paths stay open.
///
/// It runs in the head phase ([`Middleware::on_head`]): a request without
/// the token is answered `401` before `100 Continue` and before any of its
/// body is read, so an unauthenticated client cannot make the server take
/// in a large upload. Tokens are compared in constant time, as SHA-256
/// digests (so their lengths do not leak either).
pub struct BearerAuth {
    digest: [u8; 32],
    segment: &'static str,
    /// Whether CORS preflights pass without a token.
    preflights: bool,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token or its digest.
        f.debug_struct("BearerAuth")
            .field("segment", &self.segment)
            .field("preflights", &self.preflights)
            .finish_non_exhaustive()
    }
}

/// The `WWW-Authenticate` challenge of a request without credentials.
const CHALLENGE: &str = "Bearer realm=\"pistachio\"";
/// ... and of one with a wrong token (RFC 6750, section 3.1).
const CHALLENGE_INVALID: &str = "Bearer realm=\"pistachio\", error=\"invalid_token\"";

impl BearerAuth {
    /// Guards the paths whose first segment is `segment` with `token`.
    pub fn new(token: &str, segment: &'static str) -> BearerAuth {
        BearerAuth {
            digest: sha256(token.as_bytes()),
            segment,
            preflights: false,
        }
    }

    /// Lets CORS preflights (`OPTIONS` with `Access-Control-Request-Method`)
    /// through without a token, for a CORS middleware behind it to answer:
    /// browsers never send credentials with a preflight (Fetch standard,
    /// "CORS-preflight request"), and a preflight answer holds no data.
    pub fn passing_preflights(mut self) -> BearerAuth {
        self.preflights = true;
        self
    }

    /// Whether `path` (raw, as on the request line) is guarded. The router
    /// ignores empty segments (`//v1//kv` routes like `/v1/kv`), and so
    /// does this; a percent-encoded spelling of the segment is guarded too.
    fn guards(&self, path: &str) -> bool {
        let Some(first) = path.split('/').find(|s| !s.is_empty()) else {
            return false;
        };
        first == self.segment || pistachio_rest::percent_decode(first, false) == self.segment
    }

    /// Whether `authorization` (the header's value) carries the token.
    fn accepts(&self, authorization: &str) -> bool {
        bearer_token(authorization)
            .is_some_and(|token| openssl::memcmp::eq(&sha256(token.as_bytes()), &self.digest))
    }
}

/// The token of an `Authorization: Bearer TOKEN` value (scheme
/// case-insensitive, RFC 9110 section 11.1).
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `request` is a CORS preflight.
fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

fn unauthorized(reason: &str, challenge: &'static str) -> HeadAction {
    HeadAction::Answer(
        Answer::new(StatusCode::UNAUTHORIZED, reason)
            .header(WWW_AUTHENTICATE, HeaderValue::from_static(challenge)),
    )
}

impl Middleware for BearerAuth {
    fn on_head(&self, request: &Request) -> HeadAction {
        if !self.guards(request.path()) || (self.preflights && is_preflight(request)) {
            return HeadAction::Continue;
        }
        match request.authorization() {
            None => unauthorized("a bearer token is required", CHALLENGE),
            Some(value) if self.accepts(value) => HeadAction::Continue,
            Some(_) => unauthorized("invalid bearer token", CHALLENGE_INVALID),
        }
    }

    fn hooks(&self) -> Hooks {
        Hooks::ON_HEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_credentials() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER abc "), Some("abc"));
        assert_eq!(bearer_token("Basic YWJjOmRlZg=="), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token(""), None);
    }

    #[test]
    fn accepts_only_the_token() {
        let auth = BearerAuth::new("s3cret", "v1");
        assert!(auth.accepts("Bearer s3cret"));
        assert!(!auth.accepts("Bearer s3cre"));
        assert!(!auth.accepts("Bearer s3cret2"));
        assert!(!auth.accepts("Bearer S3CRET"));
        assert!(!auth.accepts("s3cret"));
        assert!(!format!("{auth:?}").contains("s3cret"));
    }

    #[test]
    fn guards_every_spelling_of_the_prefix() {
        let auth = BearerAuth::new("t", "v1");
        for path in [
            "/v1", "/v1/", "/v1/kv", "/v1/kv/a", "//v1//kv", "/%761/kv", "/v%31",
        ] {
            assert!(auth.guards(path), "{path}");
        }
        for path in [
            "/",
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/v2/kv",
            "/v10",
            "/x/v1",
        ] {
            assert!(!auth.guards(path), "{path}");
        }
    }
}
