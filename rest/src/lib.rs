//! pistachio: a multi-threaded HTTP/1.1 + HTTPS server library in the image
//! of the C++ framework Pistache (reactor → transport → http → rest), with
//! its TLS transport done right.
//!
//! This crate is the one dependency a service needs: it re-exports every
//! layer, and adds the REST layer (Pistache's `Rest` namespace):
//!
//! * [`reactor`]: N event loops (one `mio::Poll` per thread), mailboxes, timers;
//! * [`transport`]: listener, accept thread, plaintext and TLS peers, with
//!   OpenSSL error-queue hygiene on every TLS call;
//! * [`http`]: the HTTP/1.1 parser, [`Request`], [`ResponseWriter`], [`Endpoint`];
//! * [`Router`]: routes by method and path pattern (`/users/:id`,
//!   `/files/:name?`, `/say/*/to/*`) over a segment tree, with middleware,
//!   [`RouteGroup`]s, `404`/`405`/`OPTIONS`/`HEAD` handled, typed path
//!   parameters and JSON helpers on [`RestRequest`] and [`RestResponse`];
//! * [`Description`]: the API described in code, turned into both the
//!   router and its OpenAPI 3 document.
//!
//! * [`blocking`]: a bounded thread pool for handlers that block, answering
//!   `503` with `Retry-After` when its queue is full;
//! * `asynch` (cargo feature `tokio`): `async` handlers on a tokio runtime;
//! * `testing` (cargo feature `testing`): a test server + client for a
//!   router, over HTTP or TLS.
//! * `ServeDir` (cargo feature `static-files`):
//!   the files of a directory, with validators, conditional requests and
//!   byte ranges, safe against paths that try to leave it.
//!
//! See `docs/rest.md` for the routing rules.
//!
//! # Example
//!
//! A JSON service on a router, served on two workers:
//!
//! ```
//! use pistachio_rest::{Endpoint, HttpError, Options, RestRequest, RestResponse, Router, StatusCode};
//! use serde::{Deserialize, Serialize};
//! use std::io::{Read, Write};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Greeting {
//!     to: String,
//!     times: u32,
//! }
//!
//! let mut router = Router::new();
//! router
//!     .get("/hello/:name", |req: RestRequest, resp: RestResponse| {
//!         let name = req.param_str("name").unwrap_or_default();
//!         let greeting = Greeting { to: name.to_owned(), times: 1 };
//!         resp.json(StatusCode::OK, &greeting);
//!     })
//!     .post("/repeat/:times", |req: RestRequest, resp: RestResponse| {
//!         let times: u32 = req.param("times")?; // 400 if not a number
//!         let mut greeting: Greeting = req.json()?; // 415 or 400 if not JSON
//!         greeting.times = times;
//!         resp.json(StatusCode::OK, &greeting);
//!         Ok::<(), HttpError>(())
//!     });
//!
//! let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(2))?;
//! endpoint.serve_threaded(router)?;
//!
//! let mut client = std::net::TcpStream::connect(endpoint.local_addr())?;
//! client.write_all(b"GET /hello/world HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
//! let mut response = String::new();
//! client.read_to_string(&mut response)?;
//! assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(response.ends_with(r#"{"to":"world","times":1}"#));
//! endpoint.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Over HTTPS, add a [`TlsConfig`] to the [`Options`]:
//!
//! ```no_run
//! use pistachio_rest::{Endpoint, Options, Router, TlsConfig};
//!
//! let (tls, generated) = TlsConfig::self_signed(&["localhost", "127.0.0.1"])?;
//! std::fs::write("cert.pem", &generated.cert_pem)?;
//! let mut endpoint = Endpoint::bind("127.0.0.1:9443", Options::default().tls(tls))?;
//! endpoint.serve(Router::new())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod access_log;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod asynch;
pub mod blocking;
#[cfg(feature = "compression")]
#[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
pub mod compression;
#[cfg(feature = "cookies")]
#[cfg_attr(docsrs, doc(cfg(feature = "cookies")))]
pub mod cookies;
pub mod cors;
mod description;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod problem;
mod reply;
mod request;
mod response;
mod router;
#[cfg(feature = "static-files")]
#[cfg_attr(docsrs, doc(cfg(feature = "static-files")))]
pub mod static_files;
#[cfg(any(test, feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod tree;

pub use pistachio_http as http;
pub use pistachio_reactor as reactor;
pub use pistachio_transport as transport;

pub use pistachio_http::BodyTooLarge;
pub use pistachio_http::{
    header, percent_decode, Answer, BodyMode, BodyStream, ConnectionInfo, End, Endpoint, Exchange,
    Handler, HeadAction, HeaderMap, HeaderName, HeaderValue, Hooks, Method, Middleware, Options,
    Request, RequestInfo, Respond, Response, ResponseStream, ResponseWriter, ShutdownHandle,
    StatusCode, Version,
};
pub use pistachio_http::{BodyEncoder, Encoding};
pub use pistachio_transport::{
    ClientCerts, ListenerOptions, ShutdownReport, TlsConfig, TlsConfigBuilder, TlsInfo,
    TlsReloader, TlsVersion,
};

pub use access_log::{AccessLog, AccessLogFormat, ACCESS_LOG_TARGET};
pub use blocking::BlockingPool;
pub use description::{
    ApiDoc, ApiKeyIn, Description, RouteDesc, Schema, SecurityScheme, OPENAPI_VERSION,
};
pub use problem::{IntoProblem, Problem};
pub use reply::{Json, Reply};
pub use request::{Extensions, RestRequest};
pub use response::{HttpError, Outcome, RestResponse};
pub use router::{bind, Flow, RouteError, RouteGroup, RouteMatch, Router, NOT_FOUND_BODY};
#[cfg(feature = "static-files")]
pub use static_files::ServeDir;

/// serde_json, re-exported for [`RestRequest::json`], [`RestResponse::json`]
/// and [`Schema::from_json`].
pub use serde_json;
