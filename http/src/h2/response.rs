//! A response head, as the [`ResponseWriter`](crate::ResponseWriter) wrote
//! it for HTTP/1.1, turned into the field list of a HEADERS frame.
//!
//! The writers are shared by both protocols: they run the middleware's
//! response hooks, choose the framing and write the head once, on whatever
//! thread answers. An HTTP/2 stream gets the same bytes (with
//! close-delimited framing for streams, so its body bytes are raw) and the
//! connection translates the head here, on its worker, where the HPACK
//! encoder lives.

use super::hpack::Encoder;

/// Header fields that belong to one HTTP/1.1 connection and have no place
/// in HTTP/2 (RFC 9113 §8.2.2).
fn connection_specific(name: &str) -> bool {
    ["connection", "keep-alive", "transfer-encoding", "upgrade"]
        .iter()
        .any(|c| name.eq_ignore_ascii_case(c))
}

/// Heads with at most this many lines are parsed without an allocation.
const SMALL_HEAD_LINES: usize = 16;

/// Parses the HTTP/1.1 response head at the start of `bytes` and appends
/// its HPACK block (`:status`, then the fields with lower-case names,
/// connection-specific ones dropped) to `block`; returns the head's
/// length. `None` if there is no complete, valid head: then neither
/// `block` nor the encoder changed.
///
/// The field names are lower-cased in place: the head's bytes are not
/// used once it is translated.
pub(crate) fn translate(
    bytes: &mut [u8],
    encoder: &mut Encoder,
    block: &mut Vec<u8>,
) -> Option<usize> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = &mut bytes[..end];
    // Every line but the status line: its name, up to the colon, lower-cased.
    let mut lines = 0;
    let mut in_name = false;
    for b in head.iter_mut() {
        match *b {
            b'\n' => {
                lines += 1;
                in_name = true;
            }
            b':' => in_name = false,
            _ if in_name => b.make_ascii_lowercase(),
            _ => {}
        }
    }
    let head = &bytes[..end];
    let mut small = [httparse::EMPTY_HEADER; SMALL_HEAD_LINES];
    let mut large = Vec::new();
    let storage = if lines <= SMALL_HEAD_LINES {
        &mut small[..]
    } else {
        large.resize(lines, httparse::EMPTY_HEADER);
        &mut large[..]
    };
    let mut response = httparse::Response::new(storage);
    match response.parse(head) {
        Ok(httparse::Status::Complete(len)) if len == end => {}
        _ => return None,
    }
    let status = response.code?;
    // httparse takes exactly three digits.
    let digits = [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    let fields = response
        .headers
        .iter()
        .filter(|h| !connection_specific(h.name))
        .map(|h| (h.name.as_bytes(), h.value));
    encoder.encode(
        std::iter::once((&b":status"[..], &digits[..])).chain(fields),
        block,
    );
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::super::hpack::{Decoded, Decoder};
    use super::*;

    fn fields(block: &[u8]) -> Vec<(String, String)> {
        match Decoder::new()
            .decode(block, usize::MAX, usize::MAX)
            .unwrap()
        {
            Decoded::Fields(f) => f
                .iter()
                .map(|(n, v)| {
                    (
                        String::from_utf8(n.to_vec()).unwrap(),
                        String::from_utf8(v.to_vec()).unwrap(),
                    )
                })
                .collect(),
            Decoded::TooLarge => unreachable!(),
        }
    }

    #[test]
    fn a_head_and_its_body() {
        let mut bytes = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nX-Thing: A B\r\n\
Date: Mon, 21 Oct 2013 20:13:21 GMT\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
            .to_vec();
        let mut block = Vec::new();
        let len = translate(&mut bytes, &mut Encoder::new(), &mut block).unwrap();
        assert_eq!(&bytes[len..], b"hello");
        let got = fields(&block);
        let names: Vec<_> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                ":status",
                "content-type",
                "x-thing",
                "date",
                "content-length"
            ]
        );
        assert_eq!(got[0].1, "404");
        // Values keep their case.
        assert_eq!(got[2].1, "A B");
    }

    #[test]
    fn a_head_of_many_lines() {
        let mut bytes = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..40 {
            bytes.extend_from_slice(format!("X-Field-{i}: V{i}\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        let mut block = Vec::new();
        translate(&mut bytes, &mut Encoder::new(), &mut block).unwrap();
        let got = fields(&block);
        assert_eq!(got.len(), 41);
        assert_eq!(got[40], ("x-field-39".to_string(), "V39".to_string()));
    }

    #[test]
    fn incomplete_heads() {
        let mut block = Vec::new();
        let mut encoder = Encoder::new();
        for bytes in [&b"HTTP/1.1 200 OK\r\nA: b\r\n"[..], b"garbage\r\n\r\n"] {
            assert!(translate(&mut bytes.to_vec(), &mut encoder, &mut block).is_none());
        }
        assert!(block.is_empty());
    }
}
