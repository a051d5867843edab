//! [`Response`] and [`Respond`]: answering a request by returning the whole
//! answer, without a [`ResponseWriter`].

use std::fmt;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

use crate::middleware::empty_headers;
use crate::{pool, Handler, Request, ResponseWriter};

/// A whole answer, returned by [`Handler::respond`] (or sent with
/// [`ResponseWriter::send_response`]).
///
/// The connection adds `Date`, `Content-Length` and, when it closes after
/// the answer, `Connection: close`, as for [`ResponseWriter::send`]. A
/// `&'static str` or `&'static [u8]` body is not copied until the answer
/// is written; a `String` or `Vec<u8>` is taken as it is.
///
/// ```
/// use pistachio_http::{header, HeaderValue, Response, StatusCode};
///
/// let answer = Response::new(StatusCode::CREATED, "made")
///     .header(header::LOCATION, HeaderValue::from_static("/things/7"));
/// assert_eq!(answer.status(), StatusCode::CREATED);
/// assert_eq!(answer.body(), b"made");
/// assert_eq!(answer.headers()[header::LOCATION], "/things/7");
/// ```
pub struct Response {
    status: StatusCode,
    /// Made (from the worker's pool) when the first field is added: most
    /// answers of a plain handler have none.
    headers: Option<Box<HeaderMap>>,
    body: Bytes,
}

impl Response {
    /// An answer with `status` and `body`.
    pub fn new(status: StatusCode, body: impl Into<Bytes>) -> Response {
        Response {
            status,
            headers: None,
            body: body.into(),
        }
    }

    /// `200 OK` with `body`.
    pub fn ok(body: impl Into<Bytes>) -> Response {
        Response::new(StatusCode::OK, body)
    }

    /// Adds a header field (builder style); a field of the same name
    /// already there is kept.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Response {
        self.headers_mut().append(name, value);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The header fields so far.
    pub fn headers(&self) -> &HeaderMap {
        self.headers.as_deref().unwrap_or_else(|| empty_headers())
    }

    /// The header fields, to change.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers.get_or_insert_with(|| pool::header_map(0))
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The status, the fields (`None` if there are none) and the body.
    pub(crate) fn into_parts(self) -> (StatusCode, Option<Box<HeaderMap>>, Bytes) {
        (self.status, self.headers, self.body)
    }
}

impl fmt::Debug for Response {
    /// Shows the body's length, not its bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A handler made of a function that returns each request's whole answer:
/// `endpoint.serve(Respond(|req: &Request| Response::ok("hi")))`.
///
/// Over HTTP/1 without middleware the function is called through
/// [`Handler::respond`], the cheapest way to answer; elsewhere (HTTP/2, or
/// with middleware) through [`Handler::on_request`], which sends what it
/// returns with [`ResponseWriter::send_response`]. A panic in it answers
/// `500` for that request only.
///
/// ```
/// use pistachio_http::{Endpoint, Options, Request, Respond, Response};
/// use std::io::{Read, Write};
///
/// let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(1))?;
/// endpoint.serve_threaded(Respond(|req: &Request| {
///     Response::ok(format!("Hello from {}", req.path()))
/// }))?;
///
/// let mut client = std::net::TcpStream::connect(endpoint.local_addr())?;
/// client.write_all(b"GET /there HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
/// let mut answer = String::new();
/// client.read_to_string(&mut answer)?;
/// assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
/// assert!(answer.ends_with("\r\n\r\nHello from /there"));
/// endpoint.shutdown();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Respond<F>(pub F);

impl<F> Handler for Respond<F>
where
    F: Fn(&Request) -> Response + Send + Sync + 'static,
{
    fn on_request(&self, request: Request, response: ResponseWriter) {
        response.send_response((self.0)(&request));
    }

    fn respond(&self, request: &Request) -> Option<Response> {
        Some((self.0)(request))
    }

    fn responds(&self) -> bool {
        true
    }
}
