//! Entry points for fuzzing the request parser (feature `fuzzing`; not part
//! of the stable API).

use crate::parser::{Limits, Parsed, RequestParser};

/// One parse outcome, comparable across feeding strategies.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A complete request: (method, target, body, consumed).
    Request(String, String, Vec<u8>, usize),
    /// Rejected with this status.
    Error(u16),
    /// Still waiting for bytes.
    Partial,
}

fn feed(data: &[u8], splits: &[usize], limits: Limits) -> Vec<Outcome> {
    let mut parser = RequestParser::new(limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut outcomes = Vec::new();
    let mut fed = 0;
    let mut cuts: Vec<usize> = splits.iter().map(|s| s % (data.len() + 1)).collect();
    cuts.push(data.len());
    cuts.sort_unstable();
    for cut in cuts {
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
                        head.target.clone(),
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

/// Parses `data` twice: all at once, and split at the positions `splits`
/// (taken modulo the length). Panics if the parser panics, reports an
/// impossible result, or if the two feeds disagree: the same bytes must
/// frame the same requests however they arrive.
pub fn parse_and_compare(data: &[u8], splits: &[usize]) {
    let limits = Limits {
        max_head_size: 4096,
        max_headers: 32,
        max_body_size: 64 * 1024,
    };
    let whole = feed(data, &[], limits);
    let split = feed(data, splits, limits);
    assert_eq!(whole, split, "split feeding changed the outcome");
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
