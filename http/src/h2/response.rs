//! A response head, as the [`ResponseWriter`](crate::ResponseWriter) wrote
//! it for HTTP/1.1, turned into the field list of a HEADERS frame.
//!
//! The writers are shared by both protocols: they run the middleware's
//! response hooks, choose the framing and write the head once, on whatever
//! thread answers. An HTTP/2 stream gets the same bytes (with
//! close-delimited framing for streams, so its body bytes are raw) and the
//! connection translates the head here, on its worker, where the HPACK
//! encoder lives.

/// A response head in HTTP/2 terms.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: u16,
    /// Lower-case names, connection-specific fields dropped.
    pub(crate) fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// Length of the HTTP/1.1 head in the bytes it came in.
    pub(crate) len: usize,
}

/// Parses the HTTP/1.1 head at the start of `bytes`; `None` if there is no
/// complete, valid one.
pub(crate) fn translate(bytes: &[u8]) -> Option<Head> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let lines = bytes[..end].windows(2).filter(|w| w == b"\r\n").count();
    let mut storage = vec![httparse::EMPTY_HEADER; lines];
    let mut response = httparse::Response::new(&mut storage);
    match response.parse(&bytes[..end]) {
        Ok(httparse::Status::Complete(len)) if len == end => {}
        _ => return None,
    }
    let status = response.code?;
    let fields = response
        .headers
        .iter()
        .filter(|h| {
            !["connection", "keep-alive", "transfer-encoding", "upgrade"]
                .iter()
                .any(|c| h.name.eq_ignore_ascii_case(c))
        })
        .map(|h| (h.name.to_ascii_lowercase().into_bytes(), h.value.to_vec()))
        .collect();
    Some(Head {
        status,
        fields,
        len: end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_and_its_body() {
        let bytes = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nX-Thing: A B\r\n\
Date: Mon, 21 Oct 2013 20:13:21 GMT\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        let head = translate(bytes).unwrap();
        assert_eq!(head.status, 404);
        assert_eq!(&bytes[head.len..], b"hello");
        let names: Vec<_> = head
            .fields
            .iter()
            .map(|(n, _)| String::from_utf8(n.clone()).unwrap())
            .collect();
        assert_eq!(names, ["content-type", "x-thing", "date", "content-length"]);
        assert_eq!(head.fields[1].1, b"A B");
    }

    #[test]
    fn incomplete_heads() {
        assert!(translate(b"HTTP/1.1 200 OK\r\nA: b\r\n").is_none());
        assert!(translate(b"garbage\r\n\r\n").is_none());
    }
}
