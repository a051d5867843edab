//! The HTTP layer's body-encoding hook (`ResponseWriter::set_encoding`)
//! on its own, with an encoding that upper-cases: whole answers get the
//! encoded length, streams are encoded piece by piece (chunked on
//! HTTP/1.1, delimited by the close on HTTP/1.0), an encoder error is a
//! `500` (whole) or a cut-off (stream), and a writer without an encoding
//! is untouched.

use std::io;

use pistachio_rest::{
    BodyEncoder, Encoding, Endpoint, HeaderMap, HeaderValue, Options, Request, ResponseWriter,
    StatusCode,
};
use pistachio_tests::client::{Framing, PlainClient, RequestBuilder};
use pistachio_tests::init_logging;

/// Upper-cases the body and doubles every `!`; fails on `#`.
struct Shout;

struct ShoutEncoder {
    finished: bool,
}

impl Encoding for Shout {
    fn start(
        self: Box<Self>,
        _status: StatusCode,
        headers: &mut HeaderMap,
        length: Option<usize>,
    ) -> Option<Box<dyn BodyEncoder>> {
        let said = match length {
            Some(n) => format!("whole {n}"),
            None => "stream".to_owned(),
        };
        headers.insert("x-encoded", HeaderValue::from_str(&said).unwrap());
        Some(Box::new(ShoutEncoder { finished: false }))
    }
}

impl BodyEncoder for ShoutEncoder {
    fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        for &b in data {
            match b {
                b'#' => return Err(io::Error::other("no hashes")),
                b'!' => out.extend_from_slice(b"!!"),
                b => out.push(b.to_ascii_uppercase()),
            }
        }
        Ok(())
    }
    fn flush(&mut self, _out: &mut Vec<u8>) -> io::Result<()> {
        Ok(())
    }
    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        assert!(!self.finished, "finished twice");
        self.finished = true;
        out.extend_from_slice(b"<END>");
        Ok(())
    }
}

fn serve() -> Endpoint {
    init_logging();
    let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(1)).unwrap();
    endpoint
        .serve_threaded(|req: Request, mut resp: ResponseWriter| {
            if req.path() != "/plain" {
                resp.set_encoding(Shout);
            }
            match req.path() {
                "/whole" | "/plain" => resp.send(StatusCode::OK, "hello!"),
                "/broken" => resp.send(StatusCode::OK, "a # b"),
                "/stream" => {
                    let mut stream = resp.stream(StatusCode::OK);
                    stream.send_chunk("one!").unwrap();
                    stream.flush();
                    stream.send_chunk(" two").unwrap();
                    stream.end();
                }
                "/broken-stream" => {
                    let mut stream = resp.stream(StatusCode::OK);
                    stream.send_chunk("fine").unwrap();
                    stream.flush();
                    assert!(stream.send_chunk("#").is_err());
                    stream.end();
                }
                _ => resp.send(StatusCode::NOT_FOUND, ""),
            }
        })
        .unwrap();
    endpoint
}

#[test]
fn whole_answers_are_sent_encoded_with_their_encoded_length() {
    let endpoint = serve();
    let mut client = PlainClient::connect(endpoint.local_addr().port()).unwrap();
    let response = client.request("/whole").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-encoded"), Some("whole 6"));
    assert_eq!(response.text(), "HELLO!!<END>");
    assert_eq!(response.header("content-length"), Some("12"));
    // HEAD: the same head, no body; the connection stays in step.
    client
        .write_raw(&RequestBuilder::new("HEAD", "/whole").to_bytes())
        .unwrap();
    let head = client.read_head_response().unwrap();
    assert_eq!(head.header("content-length"), Some("12"));
    assert!(head.body.is_empty());
    let plain = client.request("/plain").unwrap();
    assert_eq!(plain.header("x-encoded"), None);
    assert_eq!(plain.text(), "hello!");
}

#[test]
fn streams_are_encoded_piece_by_piece_in_both_framings() {
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    let mut client = PlainClient::connect(port).unwrap();
    let response = client.request("/stream").unwrap();
    assert_eq!(response.framing, Framing::Chunked);
    assert_eq!(response.header("x-encoded"), Some("stream"));
    assert_eq!(response.text(), "ONE!! TWO<END>");

    let mut old = PlainClient::connect(port).unwrap();
    old.write_raw(
        &RequestBuilder::get("/stream")
            .version("HTTP/1.0")
            .to_bytes(),
    )
    .unwrap();
    let response = old.read_response().unwrap();
    assert_eq!(response.framing, Framing::Close);
    assert_eq!(response.text(), "ONE!! TWO<END>");
}

#[test]
fn an_encoder_error_is_a_500_or_a_cut_off() {
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    let mut client = PlainClient::connect(port).unwrap();
    let response = client.request("/broken").unwrap();
    assert_eq!(response.status, 500);
    assert_eq!(response.text(), "Internal Server Error");

    let mut client = PlainClient::connect(port).unwrap();
    client
        .write_raw(&RequestBuilder::get("/broken-stream").to_bytes())
        .unwrap();
    // The head and the first piece, then the close without the last chunk.
    assert!(client.read_response().is_err());
}
