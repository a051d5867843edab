//! Response head serialization.
//!
//! The writer owns message framing: it emits `Date`, `Content-Length` (or
//! `Transfer-Encoding: chunked`) and `Connection` itself and drops those
//! fields from the handler's header map, so a handler cannot produce a
//! response whose framing disagrees with the bytes that follow.

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode, Version};

use crate::date::{http_date, HTTP_DATE_LEN};

/// Writes `HTTP/1.1 {code} {reason}\r\n`, the caller's headers, `Date`,
/// `Content-Length: {content_length}`, `Connection` as needed, and the empty
/// line, appending to `out`.
///
/// * The status line always says `HTTP/1.1` (a server answers with its
///   highest supported version, RFC 9110 §6.2); `version` is the request's
///   version and only decides the `Connection` header: `close` for
///   [`Then::Close`], `keep-alive` for [`Then::KeepOpen`] when the request
///   was HTTP/1.0.
/// * 1xx and 204 responses get no `Content-Length` (RFC 9110 §8.6). A 304
///   gets no computed `Content-Length` either (it has no body); a
///   `Content-Length` the caller put in `headers` is passed through for 304
///   only, since there it describes the selected representation.
/// * Caller fields named `Content-Length` (except for 304), `Date`,
///   `Connection` and `Transfer-Encoding` are skipped.
pub(crate) fn write_head(
    out: &mut Vec<u8>,
    version: Version,
    status: StatusCode,
    headers: &HeaderMap,
    content_length: usize,
    then: Then,
) {
    write_head_framed(
        out,
        version,
        status,
        headers,
        Framing::Length(content_length),
        then,
    );
}

/// Like [`write_head`], but announces `Transfer-Encoding: chunked` instead
/// of a `Content-Length`, for bodies of unknown length. The caller must then
/// send the body in chunks and end it with `0\r\n\r\n`.
///
/// Only valid when the request was HTTP/1.1 (an HTTP/1.0 client does not
/// understand chunked: send a length, or close the connection after the
/// body with `keep_alive == false` and no framing). For 1xx, 204 and 304 no
/// `Transfer-Encoding` is written, as those have no body.
pub(crate) fn write_head_chunked(
    out: &mut Vec<u8>,
    version: Version,
    status: StatusCode,
    headers: &HeaderMap,
    then: Then,
) {
    debug_assert!(
        version == Version::HTTP_11,
        "chunked responses need HTTP/1.1"
    );
    write_head_framed(out, version, status, headers, Framing::Chunked, then);
}

/// What the connection does after a response (hyper's `KA`): it decides
/// the `Connection` field of the response's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Then {
    /// The connection stays open for the next request.
    #[default]
    KeepOpen,
    /// The connection closes after this response (`Connection: close`).
    Close,
}

impl Then {
    /// `KeepOpen` only if both say so.
    pub(crate) fn and(self, other: Then) -> Then {
        if self == Then::KeepOpen && other == Then::KeepOpen {
            Then::KeepOpen
        } else {
            Then::Close
        }
    }
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(usize),
    Chunked,
    /// No length and no chunking: the body ends when the connection closes
    /// (the only way to stream to an HTTP/1.0 client).
    Close,
}

/// Writes a head for a body delimited by closing the connection: no
/// `Content-Length`, no `Transfer-Encoding`, `Connection: close`. For
/// streaming to HTTP/1.0 clients, which do not understand chunked.
pub(crate) fn write_head_close_delimited(
    out: &mut Vec<u8>,
    version: Version,
    status: StatusCode,
    headers: &HeaderMap,
) {
    write_head_framed(out, version, status, headers, Framing::Close, Then::Close);
}

fn write_head_framed(
    out: &mut Vec<u8>,
    version: Version,
    status: StatusCode,
    headers: &HeaderMap,
    framing: Framing,
    then: Then,
) {
    let no_body = !status_allows_body(status);
    // The fixed pieces are put together on the stack and appended in one
    // copy (two when there are fields): no capacity check per piece, and
    // each piece is a copy of known length.
    let mut head = HeadBuf::new();
    match status_line(status) {
        Some(line) => head.put_status(line),
        None => {
            out.extend_from_slice(b"HTTP/1.1 ");
            out.extend_from_slice(status.as_str().as_bytes());
            out.push(b' ');
            out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    if !headers.is_empty() {
        head.append_to(out);
        for (name, value) in headers {
            if is_framing_field(name)
                && !(status == StatusCode::NOT_MODIFIED && name == header::CONTENT_LENGTH)
            {
                continue;
            }
            write_name(out, name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    head.put(b"Date: ");
    head.put(&http_date());

    if !no_body {
        match framing {
            Framing::Length(len) => {
                head.put(b"\r\nContent-Length: ");
                head.put_decimal(len);
            }
            Framing::Chunked => head.put(b"\r\nTransfer-Encoding: chunked"),
            Framing::Close => {}
        }
    }

    if then == Then::Close {
        head.put(b"\r\nConnection: close\r\n\r\n");
    } else if version == Version::HTTP_10 {
        head.put(b"\r\nConnection: keep-alive\r\n\r\n");
    } else {
        head.put(b"\r\n\r\n");
    }
    head.append_to(out);
}

/// Bytes a [`StatusLine`] is padded to.
const STATUS_PAD: usize = 48;

/// Room in a [`HeadBuf`]: a padded status line, then `Date`, a
/// `Content-Length` of up to 20 digits and the longest ending, which is
/// more than the status line's bytes and the other pieces can take.
const HEAD_ROOM: usize = STATUS_PAD + 8 + HTTP_DATE_LEN + 18 + 20 + 32;

/// The fixed pieces of a head, assembled before they are appended to the
/// output in one copy.
struct HeadBuf {
    bytes: [u8; HEAD_ROOM],
    len: usize,
}

impl HeadBuf {
    fn new() -> HeadBuf {
        HeadBuf {
            bytes: [0; HEAD_ROOM],
            len: 0,
        }
    }

    fn put<const N: usize>(&mut self, piece: &[u8; N]) {
        self.bytes[self.len..self.len + N].copy_from_slice(piece);
        self.len += N;
    }

    /// Puts the line with all its padding, then keeps only the line: one
    /// copy of a constant length.
    fn put_status(&mut self, line: &StatusLine) {
        self.bytes[self.len..self.len + STATUS_PAD].copy_from_slice(&line.bytes);
        self.len += usize::from(line.len);
    }

    fn put_decimal(&mut self, n: usize) {
        if n >= 10_000 {
            self.put_long_decimal(n);
            return;
        }
        // Up to four digits, the usual length: two pairs from the table,
        // shifted so that the number starts at the first byte.
        let n = n as u16;
        let (high, low) = (usize::from(n / 100), usize::from(n % 100));
        let quad = u32::from_le_bytes([
            DIGIT_PAIRS[2 * high],
            DIGIT_PAIRS[2 * high + 1],
            DIGIT_PAIRS[2 * low],
            DIGIT_PAIRS[2 * low + 1],
        ]);
        let digits = 1 + usize::from(n >= 10) + usize::from(n >= 100) + usize::from(n >= 1000);
        let shifted = quad >> (8 * (4 - digits));
        self.bytes[self.len..self.len + 4].copy_from_slice(&shifted.to_le_bytes());
        self.len += digits;
    }

    #[cold]
    fn put_long_decimal(&mut self, n: usize) {
        let mut buffer = itoa::Buffer::new();
        let digits = buffer.format(n).as_bytes();
        self.bytes[self.len..self.len + digits.len()].copy_from_slice(digits);
        self.len += digits.len();
    }

    /// Appends what is assembled to `out` and starts again.
    fn append_to(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes[..self.len]);
        self.len = 0;
    }
}

/// `00`, `01`, … `99`.
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// A whole status line, CRLF included, zero-padded to [`STATUS_PAD`]
/// bytes.
struct StatusLine {
    bytes: [u8; STATUS_PAD],
    len: u8,
}

impl StatusLine {
    const fn new(line: &str) -> StatusLine {
        let line = line.as_bytes();
        assert!(line.len() <= STATUS_PAD);
        let mut bytes = [0; STATUS_PAD];
        let mut i = 0;
        while i < line.len() {
            bytes[i] = line[i];
            i += 1;
        }
        StatusLine {
            bytes,
            len: line.len() as u8,
        }
    }

    #[cfg(test)]
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The whole status line of the statuses servers send most.
fn status_line(status: StatusCode) -> Option<&'static StatusLine> {
    macro_rules! lines {
        ($($code:literal $reason:literal),* $(,)?) => {
            match status.as_u16() {
                $($code => Some(&const {
                    StatusLine::new(concat!("HTTP/1.1 ", $code, " ", $reason, "\r\n"))
                }),)*
                _ => None,
            }
        };
    }
    lines! {
        200 "OK", 201 "Created", 204 "No Content", 206 "Partial Content",
        301 "Moved Permanently", 302 "Found", 304 "Not Modified",
        400 "Bad Request", 401 "Unauthorized", 403 "Forbidden", 404 "Not Found",
        405 "Method Not Allowed", 408 "Request Timeout", 413 "Payload Too Large",
        500 "Internal Server Error", 503 "Service Unavailable",
    }
}

/// 1xx, 204 and 304 responses never carry a body (RFC 9110 §6.4.1).
pub(crate) fn status_allows_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// The `Content-Type` of every answer the server makes itself (refused
/// requests, timeouts, the `500` for a panicking handler); the REST layer's
/// error answers use the same.
pub(crate) const SERVER_TEXT: &str = "text/plain; charset=utf-8";

/// Whether an answer carries its body: not for a `HEAD` request, whose
/// answer is the head a `GET` would have had (RFC 9110 §9.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload {
    /// Head and body.
    Body,
    /// The head only (`Content-Length` still states the body's length).
    HeadOnly,
}

impl Payload {
    /// The payload of the answer to a `method` request with `status`: the
    /// head only for `HEAD`, or for a status that allows no body.
    pub(crate) fn of(method: &Method, status: StatusCode) -> Payload {
        if *method == Method::HEAD || !status_allows_body(status) {
            Payload::HeadOnly
        } else {
            Payload::Body
        }
    }
}

/// Makes the response head at the start of `bytes` (as written by this
/// module, not yet sent) say `Connection: close`: the connection will
/// close after it although the head was written for keep-alive.
pub(crate) fn force_close(bytes: &mut Vec<u8>) {
    const KEEP_ALIVE: &[u8] = b"Connection: keep-alive\r\n";
    const CLOSE: &[u8] = b"Connection: close\r\n";
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    // Through the last field's CRLF; this module writes `Connection` last.
    let fields_end = end + 2;
    let fields = &bytes[..fields_end];
    if fields.ends_with(CLOSE) {
        return;
    }
    if fields.ends_with(KEEP_ALIVE) {
        bytes.splice(
            fields_end - KEEP_ALIVE.len()..fields_end,
            CLOSE.iter().copied(),
        );
    } else {
        bytes.splice(fields_end..fields_end, CLOSE.iter().copied());
    }
}

/// Writes a field name in canonical Title-Case (`content-type` becomes
/// `Content-Type`, `www-authenticate` `Www-Authenticate`: each `-`
/// separated word capitalised, as Go's `net/http` writes them). The
/// names responses carry most come from a table of static strings; any
/// other name is converted byte by byte, without allocating.
fn write_name(out: &mut Vec<u8>, name: &HeaderName) {
    if let Some(canonical) = standard_name(name) {
        out.extend_from_slice(canonical.as_bytes());
        return;
    }
    let mut upper = true;
    for &b in name.as_str().as_bytes() {
        out.push(if upper { b.to_ascii_uppercase() } else { b });
        upper = b == b'-';
    }
}

/// The canonical spelling of the standard names responses carry most.
fn standard_name(name: &HeaderName) -> Option<&'static str> {
    macro_rules! table {
        ($($name:ident $text:literal),* $(,)?) => {
            $(if *name == header::$name { return Some($text); })*
        };
    }
    table! {
        CONTENT_TYPE "Content-Type",
        SET_COOKIE "Set-Cookie",
        CACHE_CONTROL "Cache-Control",
        LOCATION "Location",
        LAST_MODIFIED "Last-Modified",
        ETAG "Etag",
        ALLOW "Allow",
        CONTENT_ENCODING "Content-Encoding",
        CONTENT_LENGTH "Content-Length",
        VARY "Vary",
        SERVER "Server",
        WWW_AUTHENTICATE "Www-Authenticate",
        ACCESS_CONTROL_ALLOW_ORIGIN "Access-Control-Allow-Origin",
    }
    None
}

/// Fields the writer owns.
fn is_framing_field(name: &HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::DATE
        || name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn status_line_table_matches_the_status_codes() {
        let mut tabled = 0;
        for code in 100..600 {
            let status = StatusCode::from_u16(code).unwrap();
            if let Some(line) = status_line(status) {
                let expected = format!(
                    "HTTP/1.1 {} {}\r\n",
                    status.as_str(),
                    status.canonical_reason().unwrap()
                );
                assert_eq!(std::str::from_utf8(line.as_bytes()).unwrap(), expected);
                tabled += 1;
            }
        }
        assert_eq!(tabled, 16);
    }

    /// The head with the `Date` line's value replaced by `<date>`.
    fn head(
        version: Version,
        status: u16,
        headers: &HeaderMap,
        framing: Framing,
        keep_alive: bool,
    ) -> String {
        let mut out = b"previous bytes|".to_vec();
        let status = StatusCode::from_u16(status).unwrap();
        let keep_alive = if keep_alive {
            Then::KeepOpen
        } else {
            Then::Close
        };
        match framing {
            Framing::Length(len) => write_head(&mut out, version, status, headers, len, keep_alive),
            Framing::Chunked => write_head_chunked(&mut out, version, status, headers, keep_alive),
            Framing::Close => write_head_close_delimited(&mut out, version, status, headers),
        }
        let text = String::from_utf8(out).unwrap();
        let text = text.strip_prefix("previous bytes|").expect("appends");
        let start = text.find("Date: ").expect("has Date") + "Date: ".len();
        let date = &text[start..start + 29];
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        format!("{}<date>{}", &text[..start], &text[start + 29..])
    }

    fn map(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn close_delimited_head_has_no_framing_and_closes() {
        let h = head(
            Version::HTTP_10,
            200,
            &HeaderMap::new(),
            Framing::Close,
            true,
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nDate: <date>\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn content_lengths_of_every_digit_count() {
        let mut lengths = vec![0, 1, 9, 10, 13, 99, 100, 101, 999, 1000, 4096, 9999, 10_000];
        lengths.extend([65_535, 1 << 20, 999_999_999, u32::MAX as usize, usize::MAX]);
        for len in lengths {
            let mut head = HeadBuf::new();
            head.put(b"[");
            head.put_decimal(len);
            head.put(b"]");
            let mut out = Vec::new();
            head.append_to(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), format!("[{len}]"));
        }
    }

    #[test]
    fn the_longest_fixed_pieces_fit() {
        // The longest tabled status line, the longest length and the
        // longest ending, as `write_head_framed` puts them.
        let mut head = HeadBuf::new();
        head.put_status(status_line(StatusCode::INTERNAL_SERVER_ERROR).unwrap());
        head.put(b"Date: ");
        head.put(&http_date());
        head.put(b"\r\nContent-Length: ");
        head.put_decimal(usize::MAX);
        head.put(b"\r\nConnection: keep-alive\r\n\r\n");
        let mut out = Vec::new();
        head.append_to(&mut out);
        assert!(out.starts_with(b"HTTP/1.1 500 Internal Server Error\r\nDate: "));
        assert!(out
            .ends_with(b"Content-Length: 18446744073709551615\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn exact_bytes() {
        let none = HeaderMap::new();
        let custom = map(&[
            ("content-type", "text/plain"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("content-length", "999"),
            ("date", "yesterday"),
            ("connection", "upgrade"),
            ("transfer-encoding", "gzip"),
            ("x-after", "v"),
        ]);
        let with_length = map(&[("content-length", "1234"), ("etag", "\"e\"")]);
        let cases: &[(Version, u16, &HeaderMap, Framing, bool, &str)] = &[
            (
                Version::HTTP_11,
                200,
                &none,
                Framing::Length(5),
                true,
                "HTTP/1.1 200 OK\r\nDate: <date>\r\nContent-Length: 5\r\n\r\n",
            ),
            (
                Version::HTTP_11,
                404,
                &custom,
                Framing::Length(0),
                false,
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\n\
                 Set-Cookie: b=2\r\nX-After: v\r\nDate: <date>\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n",
            ),
            (
                Version::HTTP_10,
                200,
                &none,
                Framing::Length(12345678),
                true,
                "HTTP/1.1 200 OK\r\nDate: <date>\r\nContent-Length: 12345678\r\n\
                 Connection: keep-alive\r\n\r\n",
            ),
            (
                Version::HTTP_10,
                500,
                &none,
                Framing::Length(3),
                false,
                "HTTP/1.1 500 Internal Server Error\r\nDate: <date>\r\nContent-Length: 3\r\n\
                 Connection: close\r\n\r\n",
            ),
            (
                Version::HTTP_11,
                204,
                &with_length,
                Framing::Length(7),
                true,
                "HTTP/1.1 204 No Content\r\nEtag: \"e\"\r\nDate: <date>\r\n\r\n",
            ),
            (
                Version::HTTP_11,
                100,
                &none,
                Framing::Length(0),
                true,
                "HTTP/1.1 100 Continue\r\nDate: <date>\r\n\r\n",
            ),
            (
                Version::HTTP_11,
                101,
                &none,
                Framing::Length(0),
                true,
                "HTTP/1.1 101 Switching Protocols\r\nDate: <date>\r\n\r\n",
            ),
            (
                Version::HTTP_11,
                304,
                &with_length,
                Framing::Length(0),
                true,
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nEtag: \"e\"\r\n\
                 Date: <date>\r\n\r\n",
            ),
            (
                Version::HTTP_11,
                304,
                &none,
                Framing::Length(9),
                false,
                "HTTP/1.1 304 Not Modified\r\nDate: <date>\r\nConnection: close\r\n\r\n",
            ),
            (
                Version::HTTP_11,
                299,
                &none,
                Framing::Length(1),
                true,
                "HTTP/1.1 299 \r\nDate: <date>\r\nContent-Length: 1\r\n\r\n",
            ),
            (
                Version::HTTP_11,
                200,
                &custom,
                Framing::Chunked,
                true,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\n\
                 Set-Cookie: b=2\r\nX-After: v\r\nDate: <date>\r\n\
                 Transfer-Encoding: chunked\r\n\r\n",
            ),
            (
                Version::HTTP_11,
                204,
                &none,
                Framing::Chunked,
                false,
                "HTTP/1.1 204 No Content\r\nDate: <date>\r\nConnection: close\r\n\r\n",
            ),
        ];
        for (version, status, headers, framing, keep_alive, expected) in cases {
            assert_eq!(
                head(*version, *status, headers, *framing, *keep_alive),
                *expected,
                "{status} {version:?} {framing:?} keep_alive={keep_alive}"
            );
        }
    }

    #[test]
    fn appends_without_clearing() {
        let mut out = Vec::new();
        let headers = HeaderMap::new();
        write_head(
            &mut out,
            Version::HTTP_11,
            StatusCode::OK,
            &headers,
            0,
            Then::KeepOpen,
        );
        let first = out.len();
        write_head(
            &mut out,
            Version::HTTP_11,
            StatusCode::OK,
            &headers,
            0,
            Then::KeepOpen,
        );
        assert_eq!(out.len(), 2 * first);
        assert!(out.ends_with(b"Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn names_are_written_in_title_case() {
        let cases = [
            ("content-type", "Content-Type"),
            ("www-authenticate", "Www-Authenticate"),
            ("etag", "Etag"),
            ("x-request-id", "X-Request-Id"),
            ("x--odd-", "X--Odd-"),
            ("a", "A"),
            ("access-control-allow-origin", "Access-Control-Allow-Origin"),
            ("content-security-policy", "Content-Security-Policy"),
        ];
        for (name, expected) in cases {
            let mut out = Vec::new();
            write_name(&mut out, &HeaderName::from_static(name));
            assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
        }
    }

    #[test]
    fn force_close_rewrites_keep_alive_heads_only() {
        let cases: &[(&str, &str)] = &[
            (
                "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 2\r\n\r\nok",
                "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            ),
            (
                "HTTP/1.1 200 OK\r\nDate: d\r\nConnection: keep-alive\r\n\r\n\r\n\r\n",
                "HTTP/1.1 200 OK\r\nDate: d\r\nConnection: close\r\n\r\n\r\n\r\n",
            ),
            (
                "HTTP/1.1 200 OK\r\nDate: d\r\nConnection: close\r\n\r\nx",
                "HTTP/1.1 200 OK\r\nDate: d\r\nConnection: close\r\n\r\nx",
            ),
        ];
        for (before, after) in cases {
            let mut bytes = before.as_bytes().to_vec();
            force_close(&mut bytes);
            assert_eq!(std::str::from_utf8(&bytes).unwrap(), *after);
        }
    }
}
