//! Telling a plaintext HTTP request on a TLS port from a TLS handshake by
//! its first bytes, before OpenSSL sees them (as nginx does).
//!
//! A TLS connection starts with a handshake record: content type `0x16`,
//! then the version's major byte `0x03`. An HTTP/1.x request starts with a
//! method token followed by a space (`GET /`, `OPTIONS *`). The two cannot
//! be confused: `0x16` is not a token character. [`sniff`] is a pure
//! function over the bytes peeked so far (`recv(2)` with `MSG_PEEK`, so
//! OpenSSL still reads them all).

/// Longest method token recognised (`PROPPATCH` is 9 bytes; `OPTIONS`,
/// `CONNECT` 7). Bytes past it without a space are not an HTTP request.
const MAX_METHOD: usize = 16;

/// How many bytes [`sniff`] may need: the longest method and its space.
pub(crate) const SNIFF_LEN: usize = MAX_METHOD + 1;

/// What the first bytes of a connection on a TLS port are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstBytes {
    /// Anything but a plaintext request: left to the TLS handshake (a TLS
    /// record, or garbage OpenSSL will refuse).
    NotPlainHttp,
    /// A method token and a space: a plaintext HTTP request.
    PlainHttp,
    /// A method token so far, without its space yet: wait for more bytes
    /// (bounded by the handshake timeout), never decide on a short read.
    NeedMore,
}

/// Classifies the bytes a connection on a TLS port has sent so far.
pub(crate) fn sniff(bytes: &[u8]) -> FirstBytes {
    for (i, &b) in bytes.iter().enumerate().take(SNIFF_LEN) {
        if b == b' ' {
            return if i == 0 {
                FirstBytes::NotPlainHttp
            } else {
                FirstBytes::PlainHttp
            };
        }
        // Methods are tokens; every registered one is upper-case letters,
        // which also keeps a TLS record header (0x16 0x03) out.
        if !b.is_ascii_uppercase() && b != b'-' && b != b'_' {
            return FirstBytes::NotPlainHttp;
        }
    }
    if bytes.len() >= SNIFF_LEN {
        FirstBytes::NotPlainHttp
    } else {
        FirstBytes::NeedMore
    }
}

/// The answer to a plaintext request on a TLS port: a complete HTTP/1.1
/// `400`, then the connection closes.
pub(crate) const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 46\r\n\
Connection: close\r\n\
\r\n\
The plain HTTP request was sent to HTTPS port\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_table() {
        use FirstBytes::*;
        let rows: &[(&[u8], FirstBytes)] = &[
            (b"GET / HTTP/1.1\r\n", PlainHttp),
            (b"OPTIONS * HTTP/1.1\r\n", PlainHttp),
            (b"PROPPATCH ", PlainHttp),
            (b"G", NeedMore),
            (b"GE", NeedMore),
            (b"GET", NeedMore),
            (b"", NeedMore),
            (b"\x16\x03\x01\x02\x00", NotPlainHttp),
            (b"\x16", NotPlainHttp),
            (b" GET", NotPlainHttp),
            (b"get / HTTP/1.1", NotPlainHttp),
            (b"GET\r\n", NotPlainHttp),
            (b"ABCDEFGHIJKLMNOPQ", NotPlainHttp),
            (b"ABCDEFGHIJKLMNOP ", PlainHttp),
            (b"ABCDEFGHIJKLMNOPQ ", NotPlainHttp),
        ];
        for (bytes, want) in rows {
            assert_eq!(sniff(bytes), *want, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn the_answer_is_framed_by_its_content_length() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
    }
}
