//! A test server and client in one (cargo feature `testing`): serves a
//! [`Router`](crate::Router) (or any [`Handler`]) on an ephemeral loopback
//! port, over HTTP or over TLS with a generated self-signed certificate
//! that the client trusts, and sends it requests.
//!
//! The client is libcurl (the `curl` crate), the client the workspace's own
//! test suite is built on: HTTP/1.1 keep-alive (one connection, reused by
//! every request of a [`TestClient`]), `Content-Length` and chunked
//! answers, `HEAD`, interim `1xx` answers skipped, TLS with a trust anchor
//! held in memory. Every request is bounded by a timeout (30 s by default).
//! libcurl is already what the workspace's conformance and TLS suites
//! trust as a reference client, so the feature adds no HTTP client of its
//! own to get right (framing, chunked decoding, `1xx`, TLS verification)
//! and no new crate to the lock file.
//!
//! Dropping the [`TestClient`] closes its connection, shuts the endpoint
//! down and joins its threads.
//!
//! ```
//! use pistachio_rest::testing::TestClient;
//! use pistachio_rest::{HttpError, RestRequest, RestResponse, Router, StatusCode};
//!
//! let mut router = Router::new();
//! router.post("/v1/echo", |req: RestRequest, resp: RestResponse| {
//!     let value: serde_json::Value = req.json()?;
//!     resp.json(StatusCode::CREATED, &value);
//!     Ok::<(), HttpError>(())
//! });
//! let client = TestClient::new(router);
//!
//! let answer = client
//!     .post("/v1/echo")
//!     .header("content-type", "application/json")
//!     .body(r#"{"n":1}"#)
//!     .send();
//! assert_eq!(answer.status, StatusCode::CREATED);
//! assert_eq!(answer.header("content-type"), Some("application/json"));
//! assert_eq!(answer.json::<serde_json::Value>()["n"], 1);
//! assert_eq!(client.get("/nowhere").send().status, StatusCode::NOT_FOUND);
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use curl::easy::{Easy, List};
use pistachio_http::header::{HeaderName, HeaderValue};
use pistachio_http::{Endpoint, Handler, HeaderMap, Method, Options, StatusCode};
use pistachio_transport::TlsConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// With this variable set, the client logs its exchanges (libcurl's verbose
/// output) to stderr.
const VERBOSE_ENV: &str = "PISTACHIO_TEST_CURL_VERBOSE";

/// A server on an ephemeral loopback port and a keep-alive client of it.
///
/// Set `PISTACHIO_TEST_CURL_VERBOSE=1` to see every exchange (libcurl's
/// verbose log) on stderr.
pub struct TestClient {
    // Declared first: the connection closes before the endpoint shuts down.
    easy: Mutex<Easy>,
    endpoint: Endpoint,
    base: String,
    ca_pem: Option<Vec<u8>>,
    timeout: Duration,
}

impl fmt::Debug for TestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClient")
            .field("base", &self.base)
            .field("tls", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl TestClient {
    /// Serves `handler` over HTTP on `127.0.0.1:0` with two workers.
    ///
    /// Panics if the server cannot start (it is a test helper).
    pub fn new(handler: impl Handler) -> TestClient {
        TestClient::with_options(handler, Options::default().threads(2))
    }

    /// Serves `handler` over HTTPS on `127.0.0.1:0` with two workers, with
    /// a self-signed certificate for `localhost` and `127.0.0.1` that the
    /// client trusts.
    pub fn tls(handler: impl Handler) -> TestClient {
        let (tls, generated) = TlsConfig::self_signed(&["localhost", "127.0.0.1"])
            .expect("generating a self-signed certificate");
        TestClient::start(
            handler,
            Options::default().threads(2).tls(tls),
            Some(generated.cert_pem),
        )
    }

    /// Serves `handler` with `options` (over TLS if they carry a
    /// [`TlsConfig`]: then use [`trust`](Self::trust) to give the client
    /// the certificate to trust).
    pub fn with_options(handler: impl Handler, options: Options) -> TestClient {
        TestClient::start(handler, options, None)
    }

    fn start(handler: impl Handler, options: Options, ca_pem: Option<Vec<u8>>) -> TestClient {
        let mut endpoint = Endpoint::bind("127.0.0.1:0", options).expect("binding 127.0.0.1:0");
        endpoint
            .serve_threaded(handler)
            .expect("starting the server");
        let scheme = if endpoint.is_tls() { "https" } else { "http" };
        let base = format!("{scheme}://127.0.0.1:{}", endpoint.local_addr().port());
        TestClient {
            easy: Mutex::new(Easy::new()),
            endpoint,
            base,
            ca_pem,
            timeout: Duration::from_secs(30),
        }
    }

    /// Trusts the PEM certificate(s) `pem` for the TLS server (needed
    /// with [`with_options`](Self::with_options) and a TLS config).
    pub fn trust(mut self, pem: impl Into<Vec<u8>>) -> TestClient {
        self.ca_pem = Some(pem.into());
        self
    }

    /// The time limit of every request (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> TestClient {
        self.timeout = timeout;
        self
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.endpoint.local_addr()
    }

    /// The URL of `path` on the server (`http://127.0.0.1:PORT/path`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The endpoint, e.g. to look at its open connections.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A request of any method for `path` (which may carry a query).
    pub fn request(&self, method: Method, path: &str) -> TestRequest<'_> {
        TestRequest {
            client: self,
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// A `GET` request.
    pub fn get(&self, path: &str) -> TestRequest<'_> {
        self.request(Method::GET, path)
    }

    /// A `HEAD` request (the answer has no body).
    pub fn head(&self, path: &str) -> TestRequest<'_> {
        self.request(Method::HEAD, path)
    }

    /// A `POST` request.
    pub fn post(&self, path: &str) -> TestRequest<'_> {
        self.request(Method::POST, path)
    }

    /// A `PUT` request.
    pub fn put(&self, path: &str) -> TestRequest<'_> {
        self.request(Method::PUT, path)
    }

    /// A `PATCH` request.
    pub fn patch(&self, path: &str) -> TestRequest<'_> {
        self.request(Method::PATCH, path)
    }

    /// A `DELETE` request.
    pub fn delete(&self, path: &str) -> TestRequest<'_> {
        self.request(Method::DELETE, path)
    }

    fn perform(&self, request: TestRequest<'_>) -> io::Result<TestResponse> {
        let mut easy = self.easy.lock().unwrap_or_else(|p| p.into_inner());
        // A reset clears the previous request's options but keeps the
        // open connection for the next one.
        easy.reset();
        easy.verbose(std::env::var_os(VERBOSE_ENV).is_some())
            .map_err(curl_error)?;
        easy.url(&self.url(&request.path)).map_err(curl_error)?;
        easy.timeout(self.timeout).map_err(curl_error)?;
        easy.http_version(curl::easy::HttpVersion::V11)
            .map_err(curl_error)?;
        if let Some(pem) = &self.ca_pem {
            easy.ssl_cainfo_blob(pem).map_err(curl_error)?;
        }
        match (&request.method, &request.body) {
            (&Method::GET, None) => easy.get(true).map_err(curl_error)?,
            (&Method::HEAD, _) => easy.nobody(true).map_err(curl_error)?,
            (method, body) => {
                if let Some(body) = body {
                    easy.post_fields_copy(body).map_err(curl_error)?;
                }
                easy.custom_request(method.as_str()).map_err(curl_error)?;
            }
        }
        let has = |name: &str| {
            request
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        let mut list = List::new();
        for (name, value) in &request.headers {
            list.append(&format!("{name}: {value}"))
                .map_err(curl_error)?;
        }
        if request.body.is_some() {
            // No implicit form content type, no `Expect: 100-continue`
            // round trip, unless the test asks for them.
            if !has("content-type") {
                list.append("Content-Type:").map_err(curl_error)?;
            }
            if !has("expect") {
                list.append("Expect:").map_err(curl_error)?;
            }
        }
        easy.http_headers(list).map_err(curl_error)?;

        let mut head_lines: Vec<String> = Vec::new();
        let mut body = Vec::new();
        {
            let mut transfer = easy.transfer();
            transfer
                .header_function(|line| {
                    let line = String::from_utf8_lossy(line);
                    let line = line.trim_end_matches(['\r', '\n']);
                    if line.starts_with("HTTP/") {
                        // A new status line: what came before was an
                        // interim (1xx) answer.
                        head_lines.clear();
                    }
                    if !line.is_empty() {
                        head_lines.push(line.to_owned());
                    }
                    true
                })
                .map_err(curl_error)?;
            transfer
                .write_function(|data| {
                    body.extend_from_slice(data);
                    Ok(data.len())
                })
                .map_err(curl_error)?;
            transfer.perform().map_err(curl_error)?;
        }
        let code = easy.response_code().map_err(curl_error)?;
        let status = u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status code"))?;
        let mut headers = HeaderMap::new();
        for line in head_lines.iter().skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_str(name.trim()),
                HeaderValue::from_str(value.trim()),
            ) {
                headers.append(name, value);
            }
        }
        Ok(TestResponse {
            status,
            headers,
            body,
        })
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        // Close the client's connection first, so that shutting down does
        // not wait for it.
        *self.easy.get_mut().unwrap_or_else(|p| p.into_inner()) = Easy::new();
        self.endpoint.shutdown();
    }
}

fn curl_error(e: curl::Error) -> io::Error {
    let kind = if e.is_operation_timedout() {
        io::ErrorKind::TimedOut
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e)
}

/// A request being built; [`send`](Self::send) it.
#[must_use = "a request does nothing until it is sent"]
pub struct TestRequest<'c> {
    client: &'c TestClient,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl fmt::Debug for TestRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &self.headers)
            .field("body", &self.body.as_ref().map(Vec::len))
            .finish()
    }
}

impl TestRequest<'_> {
    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body (sent with `Content-Length`).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets the body to `value` as JSON, with `Content-Type:
    /// application/json`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("serialising the request body");
        self.header("content-type", "application/json").body(body)
    }

    /// Sends the request and reads the whole answer; panics if there is
    /// none (connection refused or closed, timeout).
    pub fn send(self) -> TestResponse {
        let what = format!("{} {}", self.method, self.path);
        self.try_send()
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"))
    }

    /// Sends the request and reads the whole answer.
    pub fn try_send(self) -> io::Result<TestResponse> {
        let client = self.client;
        client.perform(self)
    }
}

/// A whole answer: status, headers (of the final answer, after any `1xx`),
/// body (de-chunked).
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl TestResponse {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics (with the body) if it is not `T`.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("answer is not the JSON expected ({e}): {}", self.text()))
    }

    /// The first value of header `name` (any case), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[cfg(test)]
pub(crate) use compat::{raw_request, serve};

/// The helpers the unit tests used before [`TestClient`]: a served
/// endpoint and one raw `Connection: close` exchange. Kept for the tests
/// that still call them.
#[cfg(test)]
mod compat {
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
}
