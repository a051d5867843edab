//! pistachio: a multi-threaded HTTP/1.1 + HTTPS server library in the image
//! of the C++ framework Pistache (reactor → transport → http → rest), with
//! its TLS transport done right.
//!
//! This crate is the one dependency a service needs: it re-exports every
//! layer.
//!
//! * [`reactor`]: N event loops (one `mio::Poll` per thread), mailboxes, timers;
//! * [`transport`]: listener, accept thread, plaintext and TLS peers, with
//!   OpenSSL error-queue hygiene on every TLS call;
//! * [`http`]: the HTTP/1.1 parser, [`Request`], [`ResponseWriter`], [`Endpoint`].
//!
//! # Example
//!
//! An HTTPS hello-world on a self-signed certificate:
//!
//! ```no_run
//! use pistachio_rest::{Endpoint, Options, Request, ResponseWriter, StatusCode, TlsConfig};
//!
//! let (tls, generated) = TlsConfig::self_signed(&["localhost", "127.0.0.1"])?;
//! std::fs::write("cert.pem", &generated.cert_pem)?;
//! let mut endpoint = Endpoint::bind("127.0.0.1:9443", Options::default().tls(tls))?;
//! endpoint.serve(|_req: Request, resp: ResponseWriter| {
//!     resp.send(StatusCode::OK, "Hello, World!");
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_code)]

pub use pistachio_http as http;
pub use pistachio_reactor as reactor;
pub use pistachio_transport as transport;

pub use pistachio_http::{
    header, Endpoint, Handler, HeaderMap, Method, Options, Request, ResponseWriter, ShutdownHandle,
    StatusCode, Version,
};
pub use pistachio_transport::{ListenerOptions, TlsConfig};
