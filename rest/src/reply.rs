//! [`Reply`]: a value a handler returns and that answers the request
//! (`(StatusCode, body)`, a `String`, [`Json`], an [`HttpError`], a
//! `Result` of those).

use std::borrow::Cow;

use pistachio_http::StatusCode;
use serde::Serialize;

use crate::response::{HttpError, RestResponse};

/// A value that answers a request through a [`RestResponse`]: what the
/// handlers of `asynch::Runtime::reply` (cargo feature `tokio`) return.
///
/// | value | answer |
/// |---|---|
/// | `StatusCode` | that status, empty body |
/// | `String`, `&'static str`, `Vec<u8>`, `Cow<'static, str>` | `200` with that body |
/// | `(StatusCode, body)` | that status with that body |
/// | [`Json`]`(value)`, `(StatusCode, Json(value))` | `200` (or that status), `application/json` |
/// | [`HttpError`] | the error (status, plain-text reason) |
/// | `Result<R, E>` | `R`'s answer, or `E`'s as an [`HttpError`] |
pub trait Reply {
    /// Answers through `response`.
    fn reply(self, response: RestResponse);
}

/// A value answered as JSON (`Content-Type: application/json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

impl Reply for StatusCode {
    fn reply(self, response: RestResponse) {
        response.send(self, "");
    }
}

macro_rules! body_replies {
    ($($ty:ty),*) => {
        $(
            impl Reply for $ty {
                fn reply(self, response: RestResponse) {
                    response.send(StatusCode::OK, self);
                }
            }

            impl Reply for (StatusCode, $ty) {
                fn reply(self, response: RestResponse) {
                    response.send(self.0, self.1);
                }
            }
        )*
    };
}

body_replies!(String, &'static str, Vec<u8>, &'static [u8]);

impl Reply for Cow<'static, str> {
    fn reply(self, response: RestResponse) {
        response.send(StatusCode::OK, self.as_bytes());
    }
}

impl<T: Serialize> Reply for Json<T> {
    fn reply(self, response: RestResponse) {
        response.json(StatusCode::OK, &self.0);
    }
}

impl<T: Serialize> Reply for (StatusCode, Json<T>) {
    fn reply(self, response: RestResponse) {
        response.json(self.0, &self.1 .0);
    }
}

impl Reply for HttpError {
    fn reply(self, response: RestResponse) {
        self.send(response);
    }
}

impl<R: Reply, E: Into<HttpError>> Reply for Result<R, E> {
    fn reply(self, response: RestResponse) {
        match self {
            Ok(reply) => reply.reply(response),
            Err(error) => error.into().send(response),
        }
    }
}
