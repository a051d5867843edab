//! [`RestResponse`], the writer routes answer through, and [`HttpError`],
//! the error a route or middleware answers with when it gives up.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use pistachio_http::header::{HeaderName, HeaderValue};
use pistachio_http::{HeaderMap, ResponseWriter, StatusCode};
use serde::Serialize;

use crate::problem::{ErrorFormat, Problem, PROBLEM_JSON};

/// An HTTP error answer: a status and a short plain-text reason (Pistache's
/// `Http::HttpError`).
///
/// Route handlers return `Result<(), HttpError>`; when they return `Err`,
/// the router sends it with the handler's own [`RestResponse`], unless that
/// writer was already used: as `text/plain` (the reason as the body), or
/// as `application/problem+json` when the client's `Accept` prefers JSON
/// (see [`Problem`]).
#[must_use = "an HttpError does nothing until it is returned or sent"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    status: StatusCode,
    reason: String,
    /// The problem it was made from, with all its members.
    problem: Option<Box<Problem>>,
}

impl HttpError {
    /// An error with any status.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> HttpError {
        HttpError {
            status,
            reason: reason.into(),
            problem: None,
        }
    }

    /// `400 Bad Request`.
    pub fn bad_request(reason: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, reason)
    }

    /// `401 Unauthorized`.
    pub fn unauthorized(reason: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::UNAUTHORIZED, reason)
    }

    /// `403 Forbidden`.
    pub fn forbidden(reason: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::FORBIDDEN, reason)
    }

    /// `404 Not Found`.
    pub fn not_found(reason: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, reason)
    }

    /// `415 Unsupported Media Type`.
    pub fn unsupported_media_type(reason: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, reason)
    }

    /// `500 Internal Server Error`.
    pub fn internal(reason: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, reason)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The reason, sent as the body.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The [`Problem`] this error was made from, if it was.
    pub fn problem(&self) -> Option<&Problem> {
        self.problem.as_deref()
    }

    /// Sends this error through `response`: `text/plain` with the reason
    /// as the body, or `application/problem+json` when the request's
    /// `Accept` prefers JSON.
    pub fn send(self, response: RestResponse) {
        let format = response.errors;
        send_error(response.into_writer(), &self, format);
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.reason)
    }
}

impl std::error::Error for HttpError {}

impl From<Problem> for HttpError {
    /// Keeps every member of the problem; the reason (for plain-text
    /// answers) is its detail, or else its title.
    fn from(problem: Problem) -> HttpError {
        HttpError {
            status: problem.status(),
            reason: problem.detail().unwrap_or(problem.title()).to_owned(),
            problem: Some(Box::new(problem)),
        }
    }
}

impl From<serde_json::Error> for HttpError {
    /// A JSON error while handling a request is the client's fault unless
    /// it happened while serialising; both carry serde's short reason.
    fn from(e: serde_json::Error) -> HttpError {
        if e.is_io() {
            HttpError::internal(format!("JSON output failed: {e}"))
        } else {
            HttpError::bad_request(format!("invalid JSON: {e}"))
        }
    }
}

/// What a route handler may return: `()` (it answered, or will answer from
/// another thread) or `Result<(), E>` with `E: Into<HttpError>`.
pub trait Outcome {
    /// Converts into the router's view: `Err` is sent as the answer.
    fn into_result(self) -> Result<(), HttpError>;
}

impl Outcome for () {
    fn into_result(self) -> Result<(), HttpError> {
        Ok(())
    }
}

impl<E: Into<HttpError>> Outcome for Result<(), E> {
    fn into_result(self) -> Result<(), HttpError> {
        self.map_err(Into::into)
    }
}

/// Where an unused writer goes back when its [`RestResponse`] is dropped,
/// so that the router can still answer for a handler that returned an
/// error.
pub(crate) type Home = Arc<Mutex<Option<(ResponseWriter, ErrorFormat)>>>;

/// The response of one routed request: a [`ResponseWriter`] with JSON and
/// error helpers.
///
/// It is `Send`: move it to another thread and answer from there. Dropping
/// it without answering hands the writer back to the router, which sends
/// the handler's error if it returned one, and `500` otherwise.
#[must_use = "dropping a RestResponse without answering sends an error answer"]
pub struct RestResponse {
    writer: Option<ResponseWriter>,
    home: Option<Home>,
    /// How error answers are rendered (from the request's `Accept`).
    pub(crate) errors: ErrorFormat,
}

impl fmt::Debug for RestResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestResponse")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl RestResponse {
    pub(crate) fn new(writer: ResponseWriter, home: Home) -> RestResponse {
        RestResponse {
            writer: Some(writer),
            home: Some(home),
            errors: ErrorFormat::Text,
        }
    }

    pub(crate) fn writer_mut(&mut self) -> &mut ResponseWriter {
        self.writer()
    }

    fn writer(&mut self) -> &mut ResponseWriter {
        self.writer
            .as_mut()
            .expect("a RestResponse holds its writer until it answers")
    }

    /// The response headers so far (see [`ResponseWriter::headers_mut`]).
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        self.writer().headers_mut()
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.writer().headers_mut().append(name, value);
        self
    }

    /// Sets `Content-Type` (Pistache's `setMime`); an invalid value is
    /// ignored.
    pub fn set_mime(&mut self, mime: &str) {
        self.writer().set_mime(mime);
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.writer
            .as_ref()
            .expect("a RestResponse holds its writer until it answers")
            .peer_addr()
    }

    /// Sends the response with `body`.
    pub fn send(mut self, status: StatusCode, body: impl AsRef<[u8]>) {
        self.home = None;
        if let Some(writer) = self.writer.take() {
            writer.send(status, body);
        }
    }

    /// Sends `value` serialised as JSON, with `Content-Type:
    /// application/json`. A value that cannot be serialised gives `500`.
    pub fn json<T: Serialize + ?Sized>(mut self, status: StatusCode, value: &T) {
        match serde_json::to_vec(value) {
            Ok(body) => {
                self.set_mime("application/json");
                self.send(status, body);
            }
            Err(e) => {
                log::debug!("serialising a JSON response: {e}");
                HttpError::internal("could not serialise the response").send(self);
            }
        }
    }

    /// Sends `error` (its status, its reason as a `text/plain` body).
    pub fn error(self, error: HttpError) {
        error.send(self);
    }

    /// The underlying writer; the router no longer sees it afterwards.
    pub fn into_writer(mut self) -> ResponseWriter {
        self.home = None;
        self.writer
            .take()
            .expect("a RestResponse holds its writer until it answers")
    }
}

impl Drop for RestResponse {
    fn drop(&mut self) {
        if let (Some(writer), Some(home)) = (self.writer.take(), self.home.take()) {
            // Only worth handing back while the router still waits for it;
            // otherwise the writer drops here and answers 500.
            if Arc::strong_count(&home) > 1 {
                *home.lock().unwrap_or_else(|p| p.into_inner()) = Some((writer, self.errors));
            }
        }
    }
}

/// Takes the writer back from `home`, if a dropped [`RestResponse`] left it
/// there.
pub(crate) fn reclaim(home: &Home) -> Option<(ResponseWriter, ErrorFormat)> {
    home.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Sends `error` through a bare writer, rendered as `format`.
pub(crate) fn send_error(mut writer: ResponseWriter, error: &HttpError, format: ErrorFormat) {
    match format {
        ErrorFormat::Text => {
            writer.set_mime("text/plain; charset=utf-8");
            writer.send(error.status, error.reason.as_bytes());
        }
        ErrorFormat::Problem => {
            writer.set_mime(PROBLEM_JSON);
            writer.send(error.status, Problem::from(error).to_json());
        }
    }
}
