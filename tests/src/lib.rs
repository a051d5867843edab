//! Shared helpers for the pistachio workspace test suite.
//!
//! Everything here talks to a real server over loopback (`127.0.0.1`):
//!
//! * [`certs`]: paths of the checked-in test PKI under `tests/certs/`;
//! * [`TestServer`]: an [`Endpoint`](pistachio_rest::http::Endpoint) bound to
//!   `127.0.0.1:0`, shut down and joined when dropped;
//! * [`TlsClient`] and [`PlainClient`]: small blocking HTTP/1.1 clients over
//!   one keep-alive connection (the TLS one uses OpenSSL and verifies the server
//!   against `ca.pem` under the name `localhost`);
//! * [`AbruptClose`]: the ways a peer can leave without a clean TLS shutdown
//!   (FIN without `close_notify`, RST, truncated `ClientHello`, garbage, ...);
//! * [`libcurl`]: one-shot requests through libcurl, optionally with OpenSSL's
//!   "quiet shutdown" so libcurl never sends `close_notify`.
//!
//! Every blocking read has a timeout of a few seconds, so a broken server
//! makes a test fail instead of hang.

pub mod abrupt;
pub mod certs;
pub mod client;
mod ffi;
pub mod libcurl;
pub mod server;

pub use abrupt::AbruptClose;
pub use certs::certs_dir;
pub use client::{PlainClient, Response, TlsClient};
pub use server::TestServer;

use std::time::Duration;

/// Read and write timeout of every client socket made by this crate.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The body the hello server answers with.
pub const HELLO_BODY: &str = "Hello, World!";

/// Sends `log` output (the server's included) to the test harness, filtered
/// by `RUST_LOG`. Safe to call from every test.
pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}
