//! Entry points for fuzzing the request parser and the HPACK decoder
//! (feature `fuzzing`; not part of the stable API).

use crate::parser::{Limits, Parsed, RequestHead, RequestParser};

/// One parse outcome, comparable across feeding strategies.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A complete request: (method, target with its header fields, body,
    /// consumed).
    Request(String, String, Vec<u8>, usize),
    /// Rejected with this status.
    Error(u16),
    /// Still waiting for bytes.
    Partial,
}

/// A head's target and its header fields, in order: building the map
/// checks that every field the parser accepted is a valid `HeaderName` and
/// `HeaderValue`, and comparing it checks that the feeds agree on them.
fn described(head: &RequestHead) -> String {
    format!("{} {:?}", head.target(), head.headers.map())
}

/// Where to cut `len` bytes into feeds: each split taken modulo `len + 1`,
/// then the end, in order.
fn cut_points(len: usize, splits: &[usize]) -> Vec<usize> {
    let mut cuts: Vec<usize> = splits.iter().map(|s| s % (len + 1)).collect();
    cuts.push(len);
    cuts.sort_unstable();
    cuts
}

fn feed(data: &[u8], splits: &[usize], limits: Limits) -> Vec<Outcome> {
    let mut parser = RequestParser::new(limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut outcomes = Vec::new();
    let mut fed = 0;
    for cut in cut_points(data.len(), splits) {
        if cut <= fed {
            continue;
        }
        buf.extend_from_slice(&data[fed..cut]);
        fed = cut;
        loop {
            match parser.parse(&buf) {
                Ok(Parsed::Partial) => break,
                Ok(Parsed::Complete {
                    head,
                    body,
                    consumed,
                }) => {
                    assert!(
                        consumed > 0 && consumed <= buf.len(),
                        "consumed {consumed} of {}",
                        buf.len()
                    );
                    assert!(body.len() <= limits.max_body_size, "body over the limit");
                    outcomes.push(Outcome::Request(
                        head.method.to_string(),
                        described(&head),
                        body,
                        consumed,
                    ));
                    buf.drain(..consumed);
                }
                Ok(Parsed::BodyFollows | Parsed::BodyEnd { .. }) => {
                    unreachable!("announce mode is off")
                }
                Err(e) => {
                    let status = e.status().as_u16();
                    assert!(
                        (400..600).contains(&status),
                        "parse error with non-error status {status}"
                    );
                    outcomes.push(Outcome::Error(status));
                    return outcomes;
                }
            }
        }
    }
    outcomes.push(Outcome::Partial);
    outcomes
}

/// Feeds `data` in announce mode, streaming every body, split at `splits`;
/// returns the requests as (method, target, whole body) and the final
/// error status or partial state.
fn feed_streaming(data: &[u8], splits: &[usize], limits: Limits) -> Vec<Outcome> {
    let mut parser = RequestParser::new(limits);
    parser.set_announce_bodies(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut outcomes = Vec::new();
    let mut fed = 0;
    let mut streaming: Option<(String, String, Vec<u8>)> = None;
    for cut in cut_points(data.len(), splits) {
        if cut <= fed {
            continue;
        }
        buf.extend_from_slice(&data[fed..cut]);
        fed = cut;
        loop {
            match parser.parse(&buf) {
                Ok(Parsed::Partial) => {
                    let (chunk, drain) = parser.take_streamed();
                    assert!(drain <= buf.len(), "drain {drain} of {}", buf.len());
                    buf.drain(..drain);
                    if let Some((_, _, body)) = &mut streaming {
                        body.extend_from_slice(&chunk);
                    } else {
                        assert!(
                            chunk.is_empty() && drain == 0,
                            "streamed bytes without a stream"
                        );
                    }
                    break;
                }
                Ok(Parsed::BodyFollows) => {
                    let (head, _) = parser.stream_body().expect("a head to stream");
                    streaming = Some((head.method.to_string(), described(&head), Vec::new()));
                }
                Ok(Parsed::BodyEnd { last, consumed }) => {
                    assert!(
                        consumed <= buf.len(),
                        "consumed {consumed} of {}",
                        buf.len()
                    );
                    buf.drain(..consumed);
                    let (method, target, mut body) = streaming.take().expect("a stream to end");
                    body.extend_from_slice(&last);
                    outcomes.push(Outcome::Request(method, target, body, 0));
                }
                Ok(Parsed::Complete {
                    head,
                    body,
                    consumed,
                }) => {
                    assert!(body.is_empty(), "announce mode buffers no body");
                    buf.drain(..consumed);
                    outcomes.push(Outcome::Request(
                        head.method.to_string(),
                        described(&head),
                        body,
                        0,
                    ));
                }
                Err(e) => {
                    outcomes.push(Outcome::Error(e.status().as_u16()));
                    return outcomes;
                }
            }
        }
    }
    outcomes.push(Outcome::Partial);
    outcomes
}

/// The outcomes with the `consumed` counts dropped (streaming drains the
/// input piecewise, so they differ by design).
fn without_offsets(outcomes: Vec<Outcome>) -> Vec<Outcome> {
    outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Request(m, t, b, _) => Outcome::Request(m, t, b, 0),
            other => other,
        })
        .collect()
}

/// Parses `data` three ways: all at once, split at the positions `splits`
/// (taken modulo the length), and split with every body streamed. Panics
/// if the parser panics, reports an impossible result, or if the feeds
/// disagree: the same bytes must frame the same requests however they
/// arrive and however the bodies are taken.
pub fn parse_and_compare(data: &[u8], splits: &[usize]) {
    let limits = Limits {
        max_head_size: 4096,
        max_headers: 32,
        max_body_size: 64 * 1024,
    };
    let whole = feed(data, &[], limits);
    let split = feed(data, splits, limits);
    assert_eq!(whole, split, "split feeding changed the outcome");
    // Streaming every body must frame the same requests with the same
    // bodies as buffering them without a size limit (a streamed body has
    // none: a declared length over `max_body_size` is a 413 only when
    // buffering).
    let unlimited = Limits {
        max_body_size: usize::MAX,
        ..limits
    };
    let buffered = feed(data, splits, unlimited);
    let streamed = feed_streaming(data, splits, unlimited);
    assert_eq!(
        without_offsets(buffered),
        streamed,
        "streaming the bodies changed the outcome"
    );
}

/// Decodes `data` as HPACK header blocks of one connection, in order: the
/// first byte says into how many pieces (1 to 4) the rest is cut. Panics
/// if the decoder panics or its dynamic table gets out of step with its
/// entries or its size limits.
pub fn hpack_decode(data: &[u8]) {
    let Some((&pieces, rest)) = data.split_first() else {
        return;
    };
    let pieces = usize::from(pieces % 4) + 1;
    let mut decoder = crate::h2::hpack::Decoder::new();
    for block in rest.chunks(rest.len() / pieces + 1) {
        let _ = decoder.decode(block, 16 * 1024, 128);
        decoder.assert_consistent();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn agrees_on_a_pipelined_chunked_request() {
        let data = b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
        for i in 0..data.len() {
            super::parse_and_compare(data, &[i, i * 7, 3]);
        }
    }
}
