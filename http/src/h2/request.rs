//! A request's header list (RFC 9113 §8.3) turned into the same
//! [`RequestHead`] the HTTP/1.1 parser makes, with the §8 rules checked.

use bytestring::ByteString;
use http::header::{HeaderName, HeaderValue, COOKIE, HOST};
use http::{HeaderMap, Method, StatusCode, Version};

use super::hpack::Fields;
use crate::fields::HeaderFields;
use crate::parser::{RequestHead, Span, TargetText};
use crate::pool;

/// Why a header list is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Malformed (§8.1.1): a stream error `PROTOCOL_ERROR`, after a `400`.
    Malformed(&'static str),
    /// Well-formed but not served (`CONNECT`): answered with this status.
    Unsupported(StatusCode, &'static str),
}

/// A request head and what the connection needs to know of its body.
#[derive(Debug)]
pub(crate) struct Built {
    pub(crate) head: RequestHead,
    /// `content-length`, checked against the DATA frames (§8.1.1).
    pub(crate) content_length: Option<u64>,
}

/// Fields that belong to one HTTP/1.1 connection and are malformed in
/// HTTP/2 (§8.2.2).
fn connection_specific(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
    )
}

/// A field value may not start or end with whitespace, nor hold NUL, CR or
/// LF (§8.2.1).
fn value_ok(value: &[u8]) -> bool {
    let edge = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    !edge(value.first())
        && !edge(value.last())
        && !value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n')
}

/// Checks a request's header list and builds its head.
pub(crate) fn build(fields: &Fields) -> Result<Built, Refusal> {
    let mut method = None;
    let mut scheme = None;
    let mut path = None;
    let mut authority = None;
    let mut regular = false;
    let mut headers = pool::header_map(fields.len());
    let mut cookies: Vec<&[u8]> = Vec::new();
    let mut content_length: Option<u64> = None;
    for (name, value) in fields.iter() {
        if let Some(pseudo) = name.strip_prefix(b":") {
            if regular {
                return Err(Refusal::Malformed("pseudo-header after a regular field"));
            }
            let slot = match pseudo {
                b"method" => &mut method,
                b"scheme" => &mut scheme,
                b"path" => &mut path,
                b"authority" => &mut authority,
                _ => return Err(Refusal::Malformed("unknown or response pseudo-header")),
            };
            if slot.is_some() {
                return Err(Refusal::Malformed("duplicate pseudo-header"));
            }
            if !value_ok(value) {
                return Err(Refusal::Malformed("invalid pseudo-header value"));
            }
            *slot = Some(value);
            continue;
        }
        regular = true;
        if name.iter().any(u8::is_ascii_uppercase) {
            return Err(Refusal::Malformed("upper-case field name"));
        }
        if connection_specific(name) {
            return Err(Refusal::Malformed("connection-specific field"));
        }
        if name == b"te" && value != b"trailers" {
            return Err(Refusal::Malformed("te other than trailers"));
        }
        if !value_ok(value) {
            return Err(Refusal::Malformed("invalid field value"));
        }
        let Ok(header) = HeaderName::from_bytes(name) else {
            return Err(Refusal::Malformed("invalid field name"));
        };
        if header == COOKIE {
            // Cookie crumbs are joined back into one field (§8.2.3).
            cookies.push(value);
            continue;
        }
        if header == http::header::CONTENT_LENGTH {
            let parsed = std::str::from_utf8(value)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok());
            match (parsed, content_length) {
                (None, _) => return Err(Refusal::Malformed("invalid content-length")),
                (Some(a), Some(b)) if a != b => {
                    return Err(Refusal::Malformed("conflicting content-length"))
                }
                (Some(a), _) => content_length = Some(a),
            }
        }
        let Ok(value) = HeaderValue::from_bytes(value) else {
            return Err(Refusal::Malformed("invalid field value"));
        };
        headers.append(header, value);
    }
    if !cookies.is_empty() {
        let joined = cookies.join(&b"; "[..]);
        match HeaderValue::from_bytes(&joined) {
            Ok(v) => {
                headers.insert(COOKIE, v);
            }
            Err(_) => return Err(Refusal::Malformed("invalid cookie")),
        }
    }
    let Some(method) = method else {
        return Err(Refusal::Malformed("missing :method"));
    };
    let Ok(method) = Method::from_bytes(method) else {
        return Err(Refusal::Malformed("invalid :method"));
    };
    if method == Method::CONNECT {
        return Err(Refusal::Unsupported(
            StatusCode::NOT_IMPLEMENTED,
            "CONNECT is not supported",
        ));
    }
    if scheme.map_or(true, <[u8]>::is_empty) {
        return Err(Refusal::Malformed("missing :scheme"));
    }
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return Err(Refusal::Malformed("missing or empty :path"));
    };
    let asterisk = path == b"*";
    if !(path.starts_with(b"/") || (asterisk && method == Method::OPTIONS)) {
        return Err(Refusal::Malformed(":path is not origin-form"));
    }
    if let Some(authority) = &authority {
        let Ok(value) = HeaderValue::from_bytes(authority) else {
            return Err(Refusal::Malformed("invalid :authority"));
        };
        match headers.get(HOST) {
            // §8.3.1: a Host naming another entity is malformed.
            Some(host) if host.as_bytes() != *authority => {
                return Err(Refusal::Malformed("host differs from :authority"))
            }
            Some(_) => {}
            // Handlers read the authority from `Host`, as in HTTP/1.1.
            None => {
                headers.insert(HOST, value);
            }
        }
    }
    let Ok(target) = String::from_utf8(path.to_vec()) else {
        return Err(Refusal::Malformed("invalid :path"));
    };
    if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(Refusal::Malformed("invalid :path"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (Span::within(&target, p), Some(Span::within(&target, q))),
        None => (Span::within(&target, &target), None),
    };
    Ok(Built {
        head: RequestHead {
            method,
            target: TargetText::Own(ByteString::from(target)),
            path,
            query,
            version: Version::HTTP_2,
            headers: HeaderFields::from_map(headers),
            keep_alive: true,
            expects_continue: false,
        },
        content_length,
    })
}

/// Checks a trailer section (§8.1): no pseudo-headers, the field rules of
/// a head. Returns the fields to add to a buffered request.
pub(crate) fn trailers(fields: &Fields) -> Result<HeaderMap, Refusal> {
    let mut map = HeaderMap::new();
    for (name, value) in fields.iter() {
        if name.starts_with(b":") {
            return Err(Refusal::Malformed("pseudo-header in trailers"));
        }
        if name.iter().any(u8::is_ascii_uppercase) || connection_specific(name) {
            return Err(Refusal::Malformed("invalid trailer field"));
        }
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            return Err(Refusal::Malformed("invalid trailer field"));
        };
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect()
    }

    const BASE: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/a/b?x=1"),
        (":authority", "example.com"),
    ];

    #[test]
    fn a_request() {
        let mut list = BASE.to_vec();
        list.push(("cookie", "a=1"));
        list.push(("cookie", "b=2"));
        list.push(("content-length", "3"));
        let built = build(&fields(&list)).unwrap();
        assert_eq!(built.head.method, Method::GET);
        assert_eq!(built.head.path(), "/a/b");
        assert_eq!(built.head.query(), Some("x=1"));
        assert_eq!(built.head.version, Version::HTTP_2);
        assert_eq!(built.head.headers.map()["host"], "example.com");
        assert_eq!(built.head.headers.map()["cookie"], "a=1; b=2");
        assert_eq!(built.content_length, Some(3));
    }

    #[test]
    fn malformed_lists() {
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![(":method", "GET"), (":scheme", "https")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "")],
            vec![(":scheme", "https"), (":path", "/")],
            vec![(":method", "GET"), (":path", "/")],
            vec![
                (":method", "GET"),
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
            ],
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                (":status", "200"),
            ],
            vec![
                (":method", "GET"),
                ("accept", "*"),
                (":scheme", "https"),
                (":path", "/"),
            ],
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("Accept", "*"),
            ],
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("connection", "x"),
            ],
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("te", "gzip"),
            ],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "x")],
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("content-length", "x"),
            ],
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                ("a", " v"),
            ],
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                (":authority", "a.example"),
                ("host", "b.example"),
            ],
        ];
        for case in cases {
            assert!(
                matches!(build(&fields(&case)), Err(Refusal::Malformed(_))),
                "{case:?}"
            );
        }
        let te = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            ("te", "trailers"),
        ];
        assert!(build(&fields(&te)).is_ok());
    }

    #[test]
    fn connect_is_refused() {
        let list = [(":method", "CONNECT"), (":authority", "example.com:443")];
        assert_eq!(
            build(&fields(&list)).unwrap_err(),
            Refusal::Unsupported(StatusCode::NOT_IMPLEMENTED, "CONNECT is not supported")
        );
    }

    #[test]
    fn trailer_rules() {
        assert!(trailers(&fields(&[("x-checksum", "1")])).is_ok());
        assert!(trailers(&fields(&[(":path", "/")])).is_err());
    }
}
