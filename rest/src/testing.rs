//! Helpers of the unit tests: a real endpoint and a one-shot raw client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use pistachio_http::{Endpoint, Handler, Options};

/// Serves `handler` on `127.0.0.1:0` with two workers.
pub(crate) fn serve(handler: impl Handler) -> (Endpoint, u16) {
    let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(2)).unwrap();
    endpoint.serve_threaded(handler).unwrap();
    let port = endpoint.local_addr().port();
    (endpoint, port)
}

/// A response read to the end of a `Connection: close` exchange.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl RawResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` (a request line, optionally more header lines, then
/// optionally `\r\n\r\n` and a body) with `Host` and `Connection: close`
/// added, and reads the whole answer.
pub(crate) fn raw_request(port: u16, request: &str) -> RawResponse {
    let (head, body) = request.split_once("\r\n\r\n").unwrap_or((request, ""));
    let wire = format!("{head}\r\nHost: localhost\r\nConnection: close\r\n\r\n{body}");
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(wire.as_bytes()).unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}
