//! The request handed to handlers.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;

use http::header::AsHeaderName;
use http::{HeaderMap, Method, Version};
use pistachio_transport::TlsInfo;

use crate::body::BodyStream;
use std::sync::Arc;

use crate::parser::RequestHead;
use crate::pool;

/// A complete HTTP request: request line, header fields and body.
///
/// The path and query string are kept exactly as sent (percent-encoded);
/// [`decoded_path`](Request::decoded_path) and [`query`](Request::query)
/// decode on demand.
///
/// The target, path, query and header values are slices of one copy of the
/// request head, shared by reference count: cloning a request does not copy
/// them. That copy lives in a block shared with other requests of the same
/// worker (16 KiB), which is reused once none of them is alive any more; a
/// handler that keeps a request, or one of its [`HeaderValue`]s, for long
/// keeps that block too, so copy what you keep
/// (`HeaderValue::from_bytes(value.as_bytes())`, `path().to_owned()`).
///
/// [`HeaderValue`]: http::HeaderValue
pub struct Request {
    /// The request line and header fields, as the parser produced them.
    head: RequestHead,
    body: Vec<u8>,
    peer_addr: SocketAddr,
    /// Shared by the connection's requests; `None` over plaintext.
    tls: Option<Arc<TlsFacts>>,
    /// Boxed: most requests have none, and a request is moved whole
    /// several times on its way to the handler.
    body_stream: Option<Box<BodyStream>>,
}

/// What the requests of one TLS connection share: the session's
/// parameters and the verified client's subject. One pointer in each
/// request (a request is moved whole several times on its way to the
/// handler, so it is kept small).
#[derive(Debug)]
pub(crate) struct TlsFacts {
    pub(crate) info: TlsInfo,
    pub(crate) client_subject: Option<Arc<str>>,
}

/// A clone carries everything but the body stream (which has one reader).
impl Clone for Request {
    fn clone(&self) -> Self {
        Request {
            head: self.head.clone(),
            body: self.body.clone(),
            peer_addr: self.peer_addr,
            tls: self.tls.clone(),
            body_stream: None,
        }
    }
}

impl Request {
    /// Assembles a request from a parsed head, its decoded body, the
    /// address of the peer that sent it and, over TLS, its connection's
    /// session.
    pub(crate) fn from_parts(
        head: RequestHead,
        body: Vec<u8>,
        peer_addr: SocketAddr,
        tls: Option<Arc<TlsFacts>>,
    ) -> Request {
        Request {
            head,
            body,
            peer_addr,
            tls,
            body_stream: None,
        }
    }

    pub(crate) fn head(&self) -> &RequestHead {
        &self.head
    }

    /// The subject of the client's certificate (`CN=…, O=…`), for TLS
    /// connections whose configuration requests client certificates and
    /// whose client presented one (verified by then).
    pub fn client_subject(&self) -> Option<&str> {
        self.tls.as_ref()?.client_subject.as_deref()
    }

    /// Gives the head back to the parser (the body was not streamed after all).
    pub(crate) fn into_head(mut self) -> RequestHead {
        // Leaves an empty head, whose map does not allocate and is not
        // recycled when `self` is dropped.
        std::mem::take(&mut self.head)
    }

    pub(crate) fn set_body_stream(&mut self, stream: BodyStream) {
        self.body_stream = Some(Box::new(stream));
    }

    /// For a request whose [`BodyMode`](crate::BodyMode) is `Streamed`, the
    /// body as it arrives; `None` otherwise (or once taken).
    pub fn take_body_stream(&mut self) -> Option<BodyStream> {
        self.body_stream.take().map(|stream| *stream)
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// The request-target exactly as sent on the request line, e.g.
    /// `/a%20b?x=1` or `http://host/p` or `*`.
    pub fn target(&self) -> &str {
        self.head.target()
    }

    /// The path part of the target, still percent-encoded: everything before
    /// `?` for an origin-form target, the path of an absolute-form target
    /// (`/` if it has none), or `*` for `OPTIONS *`.
    pub fn path(&self) -> &str {
        self.head.path()
    }

    /// The path with percent-escapes decoded. Invalid escapes are kept as
    /// they are; bytes that do not form UTF-8 are replaced with U+FFFD.
    /// `+` is not special in a path. Borrows when nothing needs decoding.
    pub fn decoded_path(&self) -> Cow<'_, str> {
        percent_decode(self.head.path(), false)
    }

    /// The raw query string, without the `?`; `None` if the target has no
    /// `?` (an empty query `/p?` gives `Some("")`).
    pub fn query_string(&self) -> Option<&str> {
        self.head.query()
    }

    /// The first value of the query parameter `name`, decoded as
    /// `application/x-www-form-urlencoded` (`+` is a space, `%XX` escapes).
    /// A parameter without `=` has the empty value.
    pub fn query(&self, name: &str) -> Option<Cow<'_, str>> {
        self.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Whether the query string has a parameter `name` (with or without a
    /// value).
    pub fn has_query(&self, name: &str) -> bool {
        self.query_pairs().any(|(key, _)| key == name)
    }

    /// All query parameters in order, names and values decoded as
    /// `application/x-www-form-urlencoded`. Empty `&`-separated segments are
    /// skipped; repeated names are all yielded.
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> + '_ {
        form_pairs(self.head.query().unwrap_or(""))
    }

    /// The protocol version: `HTTP/1.0`, `HTTP/1.1`, or `HTTP/2` (ALPN `h2`
    /// or h2c).
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// All header fields, in the order received; repeated fields are kept.
    ///
    /// The map is built on the first call (a handler that never asks does
    /// not pay for it).
    pub fn headers(&self) -> &HeaderMap {
        self.head.headers.map()
    }

    /// The first value of header `name` (case-insensitive), if it is valid
    /// UTF-8 (visible ASCII and any UTF-8 text); `None` if absent or not
    /// UTF-8. Use [`headers`](Request::headers) for raw bytes or all values.
    pub fn header(&self, name: impl AsHeaderName) -> Option<&str> {
        self.headers()
            .get(name)
            .and_then(|value| std::str::from_utf8(value.as_bytes()).ok())
    }

    /// The request body, with any chunked transfer coding removed; empty if
    /// the request had none.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Replaces the buffered body (for middleware that decodes it, say a
    /// `Content-Encoding`); returns the old one.
    pub fn set_body(&mut self, body: Vec<u8>) -> Vec<u8> {
        std::mem::replace(&mut self.body, body)
    }

    /// Consumes the request, returning its body.
    pub fn into_body(mut self) -> Vec<u8> {
        std::mem::take(&mut self.body)
    }

    /// The address of the client (the TCP peer) that sent the request.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The headers, mutably: middleware may add, change or remove fields
    /// before the handler sees the request.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        self.head.headers.map_mut()
    }

    /// `Content-Type`, if present and valid text.
    pub fn content_type(&self) -> Option<&str> {
        self.header(http::header::CONTENT_TYPE)
    }

    /// The body's length as announced by `Content-Length` (absent for
    /// chunked bodies; the body itself is always [`Request::body`]).
    pub fn content_length(&self) -> Option<u64> {
        self.header(http::header::CONTENT_LENGTH)?
            .split(',')
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// `Accept`, if present.
    pub fn accept(&self) -> Option<&str> {
        self.header(http::header::ACCEPT)
    }

    /// `Authorization`, if present.
    pub fn authorization(&self) -> Option<&str> {
        self.header(http::header::AUTHORIZATION)
    }

    /// `Host` (for an absolute-form request target, its authority).
    pub fn host(&self) -> Option<&str> {
        self.header(http::header::HOST)
    }

    /// `User-Agent`, if present.
    pub fn user_agent(&self) -> Option<&str> {
        self.header(http::header::USER_AGENT)
    }

    /// The cookies the client sent, as `(name, value)` pairs in order, from
    /// every `Cookie` header (RFC 6265 §5.4: `name=value` pairs separated by
    /// `; `). Pairs without `=` are skipped; values are not decoded.
    pub fn cookies(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.headers()
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                let name = name.trim();
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                (!name.is_empty()).then_some((name, value))
            })
    }

    /// The value of the first cookie named `name`.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The negotiated TLS version and cipher, or `None` over plaintext.
    pub fn tls(&self) -> Option<TlsInfo> {
        self.tls.as_ref().map(|tls| tls.info)
    }

    /// Whether the connection stays open after this request, per its version
    /// and `Connection` header.
    pub(crate) fn keep_alive(&self) -> bool {
        self.head.keep_alive
    }
}

/// The header map goes back to the worker's pool for the next request
/// (cleared, its capacity kept), so that parsing a head does not allocate
/// one.
impl Drop for Request {
    fn drop(&mut self) {
        if let Some(map) = self.head.headers.take_map() {
            pool::recycle_header_map(map);
        }
    }
}

impl fmt::Debug for Request {
    /// Shows the body's length, not its bytes, so logging a request stays
    /// cheap.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.head.method)
            .field("target", &self.head.target())
            .field("version", &self.head.version)
            .field("headers", &self.head.headers)
            .field("body_len", &self.body.len())
            .field("peer_addr", &self.peer_addr)
            .field("keep_alive", &self.head.keep_alive)
            .finish()
    }
}

/// Splits an `application/x-www-form-urlencoded` string into decoded pairs.
pub(crate) fn form_pairs(input: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    input
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (name, value) = segment.split_once('=').unwrap_or((segment, ""));
            (percent_decode(name, true), percent_decode(value, true))
        })
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`). Invalid
/// escapes are kept literally; invalid UTF-8 is replaced lossily. Borrows
/// when there is nothing to decode.
pub fn percent_decode(input: &str, plus_is_space: bool) -> Cow<'_, str> {
    let needs_decoding = input
        .bytes()
        .any(|b| b == b'%' || (plus_is_space && b == b'+'));
    if !needs_decoding {
        return Cow::Borrowed(input);
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (
                    bytes.get(i + 1).and_then(|&b| hex(b)),
                    bytes.get(i + 2).and_then(|&b| hex(b)),
                ) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{Limits, Parsed, RequestParser};

    fn request(raw: &[u8]) -> Request {
        let mut parser = RequestParser::new(Limits::default());
        match parser.parse(raw) {
            Ok(Parsed::Complete { head, body, .. }) => {
                Request::from_parts(head, body, "192.0.2.1:4321".parse().unwrap(), None)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn percent_decoding() {
        let cases: &[(&str, bool, &str)] = &[
            ("", false, ""),
            ("/plain", false, "/plain"),
            ("/a%20b", false, "/a b"),
            ("/a+b", false, "/a+b"),
            ("a+b", true, "a b"),
            ("%2B+%2b", true, "+ +"),
            ("%41%4a%4A", false, "AJJ"),
            ("%", false, "%"),
            ("%4", false, "%4"),
            ("%zz%4g", false, "%zz%4g"),
            ("100%", true, "100%"),
            ("%%41", false, "%A"),
            ("%C3%A9t%C3%A9", false, "été"),
            ("%FF", false, "\u{FFFD}"),
            ("a%C3", false, "a\u{FFFD}"),
            ("%00", false, "\0"),
            ("%2F", false, "/"),
        ];
        for (input, plus, expected) in cases {
            assert_eq!(percent_decode(input, *plus), *expected, "{input:?}");
        }
        assert!(matches!(
            percent_decode("/no/escapes+", false),
            Cow::Borrowed(_)
        ));
        assert!(matches!(percent_decode("a+b", true), Cow::Owned(_)));
    }

    #[test]
    fn form_pairs_decoding() {
        let pairs: Vec<_> = form_pairs("a=1&&b=x+y&c&a=2&%3D=%26&=e&f=")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let expected: Vec<(String, String)> = [
            ("a", "1"),
            ("b", "x y"),
            ("c", ""),
            ("a", "2"),
            ("=", "&"),
            ("", "e"),
            ("f", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(pairs, expected);
        assert_eq!(form_pairs("").count(), 0);
        assert_eq!(form_pairs("k=a=b").next().unwrap().1, "a=b");
    }

    #[test]
    fn accessors() {
        let req = request(
            b"POST /a%20b/c?x=1&name=J%C3%B6rg+M&flag&x=2 HTTP/1.1\r\n\
              Host: example.com\r\nX-Multi: one\r\nx-multi: two\r\n\
              X-Latin: caf\xc3\xa9\r\nX-Bin: \xff\r\nContent-Length: 4\r\n\r\nbody",
        );
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.target(), "/a%20b/c?x=1&name=J%C3%B6rg+M&flag&x=2");
        assert_eq!(req.path(), "/a%20b/c");
        assert_eq!(req.decoded_path(), "/a b/c");
        assert_eq!(req.query_string(), Some("x=1&name=J%C3%B6rg+M&flag&x=2"));
        assert_eq!(req.query("x").as_deref(), Some("1"));
        assert_eq!(req.query("name").as_deref(), Some("Jörg M"));
        assert_eq!(req.query("flag").as_deref(), Some(""));
        assert_eq!(req.query("missing"), None);
        assert!(req.has_query("flag"));
        assert!(!req.has_query("fla"));
        assert_eq!(req.query_pairs().count(), 4);
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.header("host"), Some("example.com"));
        assert_eq!(req.header(http::header::HOST), Some("example.com"));
        assert_eq!(req.header("X-MULTI"), Some("one"));
        assert_eq!(req.headers().get_all("x-multi").iter().count(), 2);
        assert_eq!(req.header("x-latin"), Some("café"));
        assert_eq!(req.header("x-bin"), None);
        assert_eq!(req.header("x-none"), None);
        assert_eq!(req.body(), b"body");
        assert_eq!(req.peer_addr(), "192.0.2.1:4321".parse().unwrap());
        assert!(req.keep_alive());
        let debug = format!("{req:?}");
        assert!(
            debug.contains("body_len: 4") && debug.contains("192.0.2.1:4321"),
            "{debug}"
        );
        assert_eq!(req.into_body(), b"body");
    }

    #[test]
    fn typed_headers_and_cookies() {
        let req = request(
            b"POST /x HTTP/1.1\r\nHost: example.com:8080\r\nContent-Type: application/json\r\nContent-Length: 2\r\nAccept: */*\r\nAuthorization: Bearer t\r\nUser-Agent: ua/1\r\nCookie: a=1; b=\"two\"; junk; =x\r\nCookie: c=3\r\n\r\n{}",
        );
        assert_eq!(req.content_type(), Some("application/json"));
        assert_eq!(req.content_length(), Some(2));
        assert_eq!(req.accept(), Some("*/*"));
        assert_eq!(req.authorization(), Some("Bearer t"));
        assert_eq!(req.host(), Some("example.com:8080"));
        assert_eq!(req.user_agent(), Some("ua/1"));
        let cookies: Vec<_> = req.cookies().collect();
        assert_eq!(cookies, [("a", "1"), ("b", "two"), ("c", "3")]);
        assert_eq!(req.cookie("b"), Some("two"));
        assert_eq!(req.cookie("missing"), None);
    }

    /// The header map goes back to the pool when a request is dropped;
    /// clones and maps taken out of a request are unaffected.
    #[test]
    fn dropped_requests_recycle_their_header_map() {
        let raw = b"GET /x?y=z HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n";
        let mut req = request(raw);
        let clone = req.clone();
        let taken = std::mem::take(req.headers_mut());
        drop(req);
        assert_eq!(taken.len(), 2);
        assert_eq!(clone.header("accept"), Some("*/*"));
        assert_eq!((clone.path(), clone.query_string()), ("/x", Some("y=z")));
        drop(clone);
        drop(taken);
        let again = request(raw);
        assert_eq!(again.headers().len(), 2);
        assert_eq!(again.host(), Some("h"));
        assert_eq!(again.into_body(), b"");
        let fresh = request(b"GET / HTTP/1.0\r\n\r\n");
        assert!(fresh.headers().is_empty());
    }

    #[test]
    fn no_query_and_keep_alive() {
        let req = request(b"GET /plain HTTP/1.0\r\n\r\n");
        assert_eq!(req.query_string(), None);
        assert_eq!(req.query("a"), None);
        assert!(!req.has_query("a"));
        assert_eq!(req.query_pairs().count(), 0);
        assert!(matches!(req.decoded_path(), Cow::Borrowed("/plain")));
        assert_eq!(req.version(), Version::HTTP_10);
        assert!(!req.keep_alive());
        assert!(req.body().is_empty());

        let req = request(b"GET http://h:1/p%2Fq?z=%7E HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(req.path(), "/p%2Fq");
        assert_eq!(req.decoded_path(), "/p/q");
        assert_eq!(req.query("z").as_deref(), Some("~"));
        assert_eq!(req.header("host"), Some("h:1"));
    }
}
