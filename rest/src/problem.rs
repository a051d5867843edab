//! [`Problem`]: errors as data, `application/problem+json` (RFC 9457).
//!
//! Every error answer of the REST layer (the router's `404` and `405`, an
//! [`HttpError`] a handler or middleware returns, a JSON body that does
//! not parse, a battery's `413` or `415`) is rendered for the client:
//!
//! * as `application/problem+json` when its `Accept` prefers JSON
//!   (`application/json`, `application/problem+json` or another
//!   `+json` type with a higher q-value than `text/plain`):
//!   `{"type", "title", "status", "detail", "instance", …}`;
//! * as `text/plain` otherwise (no `Accept`, `*/*`, a browser's list):
//!   the reason (or the problem's detail) as the body, as before.
//!
//! A handler returns a [`Problem`] like any error: `Problem` turns into an
//! [`HttpError`] that keeps every member, so `Result<(), Problem>` is a
//! handler's [`Outcome`](crate::Outcome), and any error type with
//! `From<MyError> for Problem` (or [`IntoProblem`]) flows into it with `?`.
//!
//! # Example
//!
//! ```
//! use pistachio_rest::problem::Problem;
//! use pistachio_rest::{RestRequest, RestResponse, Router, StatusCode};
//!
//! #[derive(Debug)]
//! enum AccountError {
//!     Overdrawn { balance: i64 },
//! }
//!
//! impl From<AccountError> for Problem {
//!     fn from(e: AccountError) -> Problem {
//!         match e {
//!             AccountError::Overdrawn { balance } => Problem::new(StatusCode::CONFLICT)
//!                 .with_type("https://example.com/probs/out-of-credit")
//!                 .with_title("You do not have enough credit.")
//!                 .with_detail(format!("Your balance is {balance}."))
//!                 .with_extension("balance", balance),
//!         }
//!     }
//! }
//!
//! fn withdraw(amount: i64) -> Result<i64, AccountError> {
//!     Err(AccountError::Overdrawn { balance: 30 - amount })
//! }
//!
//! let mut router = Router::new();
//! router.post("/withdraw", |_req: RestRequest, resp: RestResponse| -> Result<(), Problem> {
//!     let left = withdraw(50)?;
//!     resp.send(StatusCode::OK, left.to_string());
//!     Ok(())
//! });
//! ```

use std::fmt;

use pistachio_http::header::ACCEPT;
use pistachio_http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::response::HttpError;

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem details object (RFC 9457 §3). One pointer wide, so that a
/// `Result<_, Problem>` stays small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Problem(Box<Members>);

/// The members of a [`Problem`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Members {
    /// A URI naming the problem type; `about:blank` when the status says
    /// it all.
    #[serde(rename = "type", default = "about_blank")]
    type_uri: String,
    /// A short summary of the problem type.
    title: String,
    /// The HTTP status code.
    status: u16,
    /// What happened this time, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    /// A URI naming this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    /// Extension members.
    #[serde(flatten)]
    extensions: Map<String, Value>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}

impl Problem {
    /// A problem of type `about:blank` whose title is the status's reason
    /// phrase.
    pub fn new(status: StatusCode) -> Problem {
        Problem(Box::new(Members {
            type_uri: about_blank(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            extensions: Map::new(),
        }))
    }

    /// Sets the type URI.
    #[must_use]
    pub fn with_type(mut self, type_uri: impl Into<String>) -> Problem {
        self.0.type_uri = type_uri.into();
        self
    }

    /// Sets the title.
    #[must_use]
    pub fn with_title(mut self, title: impl Into<String>) -> Problem {
        self.0.title = title.into();
        self
    }

    /// Sets the detail.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Problem {
        self.0.detail = Some(detail.into());
        self
    }

    /// Sets the instance URI.
    #[must_use]
    pub fn with_instance(mut self, instance: impl Into<String>) -> Problem {
        self.0.instance = Some(instance.into());
        self
    }

    /// Adds an extension member (a member named like a standard one is
    /// ignored).
    #[must_use]
    pub fn with_extension(mut self, name: impl Into<String>, value: impl Into<Value>) -> Problem {
        let name = name.into();
        if !matches!(
            name.as_str(),
            "type" | "title" | "status" | "detail" | "instance"
        ) {
            self.0.extensions.insert(name, value.into());
        }
        self
    }

    /// The status (`500` if the number is not a valid status).
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The type URI.
    pub fn type_uri(&self) -> &str {
        &self.0.type_uri
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.0.title
    }

    /// The detail, if any.
    pub fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    /// The instance, if any.
    pub fn instance(&self) -> Option<&str> {
        self.0.instance.as_deref()
    }

    /// The extension members.
    pub fn extensions(&self) -> &Map<String, Value> {
        &self.0.extensions
    }

    /// The JSON document.
    pub fn to_json(&self) -> Vec<u8> {
        // A map of strings and JSON values always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.status, self.0.title)?;
        if let Some(detail) = &self.0.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

/// Turns a value into a [`Problem`]; implemented for everything that is
/// `Into<Problem>`.
pub trait IntoProblem {
    /// The problem.
    fn into_problem(self) -> Problem;
}

impl<T: Into<Problem>> IntoProblem for T {
    fn into_problem(self) -> Problem {
        self.into()
    }
}

impl From<&HttpError> for Problem {
    /// `about:blank`, the status's reason phrase as the title, the
    /// error's reason as the detail (or the problem it was made from).
    fn from(error: &HttpError) -> Problem {
        if let Some(problem) = error.problem() {
            return problem.clone();
        }
        let problem = Problem::new(error.status());
        if error.reason().is_empty() {
            problem
        } else {
            problem.with_detail(error.reason())
        }
    }
}

impl From<HttpError> for Problem {
    fn from(error: HttpError) -> Problem {
        Problem::from(&error)
    }
}

impl crate::reply::Reply for Problem {
    fn reply(self, response: crate::response::RestResponse) {
        HttpError::from(self).send(response);
    }
}

/// How the REST layer renders its error answers for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ErrorFormat {
    /// `text/plain`, the reason as the body.
    #[default]
    Text,
    /// `application/problem+json`.
    Problem,
}

impl ErrorFormat {
    /// What the request's `Accept` prefers.
    pub(crate) fn of(headers: &HeaderMap) -> ErrorFormat {
        let mut accept = headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .peekable();
        if accept.peek().is_none() {
            return ErrorFormat::Text;
        }
        if prefers_json(accept) {
            ErrorFormat::Problem
        } else {
            ErrorFormat::Text
        }
    }
}

/// Whether these `Accept` values give JSON a higher q-value than plain
/// text (each by its most specific matching range; a tie is text).
fn prefers_json<'a>(values: impl Iterator<Item = &'a str>) -> bool {
    // (specificity, q) of the best match for each, specificity 0..=2.
    let mut json: Option<(u8, u16)> = None;
    let mut text: Option<(u8, u16)> = None;
    let better = |slot: &mut Option<(u8, u16)>, specificity: u8, q: u16| match slot {
        Some((s, _)) if *s > specificity => {}
        Some((s, old)) if *s == specificity => *old = (*old).max(q),
        _ => *slot = Some((specificity, q)),
    };
    for range in values.flat_map(|v| v.split(',')) {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = Some(1000);
        for param in parts {
            if let Some((name, value)) = param.split_once('=') {
                if name.trim().eq_ignore_ascii_case("q") {
                    q = parse_q(value.trim());
                }
            }
        }
        let Some(q) = q else {
            continue;
        };
        match media.as_str() {
            "*/*" => {
                better(&mut json, 0, q);
                better(&mut text, 0, q);
            }
            "application/*" => better(&mut json, 1, q),
            "text/*" => better(&mut text, 1, q),
            "text/plain" => better(&mut text, 2, q),
            m if m == "application/json"
                || (m.starts_with("application/") && m.ends_with("+json")) =>
            {
                better(&mut json, 2, q)
            }
            _ => {}
        }
    }
    let q = |slot: Option<(u8, u16)>| slot.map_or(0, |(_, q)| q);
    q(json) > q(text)
}

/// A q-value (RFC 9110 §12.4.2: `0`, `0.xxx`, `1`, `1.000`) in
/// thousandths; `None` if it is not one. Shared with `Accept-Encoding`
/// negotiation (`compression`).
pub(crate) fn parse_q(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(accept: &str) -> bool {
        prefers_json(std::iter::once(accept))
    }

    #[test]
    fn accept_decides_the_format() {
        assert!(json("application/json"));
        assert!(json("application/problem+json"));
        assert!(json("application/json, text/plain;q=0.5"));
        assert!(json("application/*, text/*;q=0.1"));
        assert!(json("application/json, */*;q=0.1"));
        assert!(!json("*/*"));
        assert!(!json("text/plain"));
        assert!(!json(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!json("application/json;q=0.5, text/plain"));
        assert!(!json("application/json;q=5"));
        assert!(!json("garbage;;;==,,"));
        assert!(!json(""));
    }

    #[test]
    fn a_problem_serialises_with_its_members() {
        let problem = Problem::new(StatusCode::NOT_FOUND)
            .with_detail("no such user")
            .with_instance("/users/7")
            .with_extension("user", 7)
            .with_extension("status", "ignored");
        let value: Value = serde_json::from_slice(&problem.to_json()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "type": "about:blank", "title": "Not Found", "status": 404,
                "detail": "no such user", "instance": "/users/7", "user": 7
            })
        );
        let back: Problem = serde_json::from_value(value).unwrap();
        assert_eq!(back, problem);
    }
}
