//! [`TestServer`]: a pistachio [`Endpoint`] on `127.0.0.1:0` that is shut down
//! and joined when dropped.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use pistachio_rest::http::{Endpoint, Options, Request, ResponseWriter, StatusCode};
use pistachio_rest::transport::TlsConfig;

use crate::{certs, HELLO_BODY};

/// An OpenSSL acceptor with the test server's chain and key and the modes
/// the transport requires, for tests that build their own `SSL_CTX`
/// (`TlsConfig::from_context`).
pub fn server_acceptor_builder() -> openssl::ssl::SslAcceptorBuilder {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslMode};
    let mut ctx =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).expect("an OpenSSL acceptor");
    ctx.set_certificate_chain_file(certs::server_chain_pem())
        .expect("the server chain");
    ctx.set_private_key_file(certs::server_key(), SslFiletype::PEM)
        .expect("the server key");
    ctx.set_mode(SslMode::ENABLE_PARTIAL_WRITE | SslMode::ACCEPT_MOVING_WRITE_BUFFER);
    ctx
}

/// Handshake timeout of test servers: short, so a stalled handshake costs little.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// A running server bound to an ephemeral loopback port.
///
/// Connections are spread over the worker threads round-robin: the k-th
/// connection accepted goes to worker `k % threads`. Tests that must land a
/// connection on every worker open `threads` connections before anything else.
pub struct TestServer {
    endpoint: Endpoint,
    addr: SocketAddr,
    threads: usize,
    tls: bool,
    stopped: bool,
}

impl TestServer {
    /// Starts a server with `threads` workers that answers every request with
    /// `200` and `Hello, World!`. With `tls`, it serves HTTPS with
    /// `server-chain.pem` and `server.key`.
    pub fn hello(threads: usize, tls: bool) -> TestServer {
        TestServer::start(threads, tls, |_req: Request, resp: ResponseWriter| {
            resp.send(StatusCode::OK, HELLO_BODY);
        })
    }

    /// Starts a server with `threads` workers running `handler`. With `tls`, it
    /// serves HTTPS with `server-chain.pem` and `server.key`.
    ///
    /// Panics if the server cannot be started: every test needs one.
    pub fn start<H>(threads: usize, tls: bool, handler: H) -> TestServer
    where
        H: Fn(Request, ResponseWriter) + Send + Sync + 'static,
    {
        let mut options = Options::default()
            .threads(threads)
            .handshake_timeout(HANDSHAKE_TIMEOUT);
        if tls {
            options = options.tls(server_tls_config());
        }
        TestServer::start_with(threads, tls, options, handler)
    }

    /// Starts a server with explicit `options` (which must configure `threads`
    /// workers, and TLS exactly when `tls` is true) running `handler`.
    pub fn start_with<H>(threads: usize, tls: bool, options: Options, handler: H) -> TestServer
    where
        H: pistachio_rest::Handler,
    {
        let bind: SocketAddr = "127.0.0.1:0".parse().expect("loopback address");
        let mut endpoint = Endpoint::bind(bind, options)
            .unwrap_or_else(|e| panic!("binding a test server on {bind}: {e}"));
        let addr = endpoint.local_addr();
        endpoint
            .serve_threaded(handler)
            .unwrap_or_else(|e| panic!("starting the test server on {addr}: {e}"));
        TestServer {
            endpoint,
            addr,
            threads,
            tls,
            stopped: false,
        }
    }

    /// The address the server listens on (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The URL of `path` on this server: `https://localhost:PORT{path}` for
    /// TLS (the name in the server certificate), `http://127.0.0.1:PORT{path}`
    /// otherwise. `path` must start with `/`.
    pub fn url(&self, path: &str) -> String {
        if self.tls {
            format!("https://localhost:{}{}", self.port(), path)
        } else {
            format!("http://127.0.0.1:{}{}", self.port(), path)
        }
    }

    /// Stops the server and joins its threads. Dropping does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            self.endpoint.shutdown();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .field("threads", &self.threads)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// The server TLS configuration of the test PKI: `server-chain.pem` + `server.key`.
pub fn server_tls_config() -> TlsConfig {
    let chain = certs::server_chain_pem();
    let key = certs::server_key();
    TlsConfig::from_pem_files(chain.as_path(), key.as_path())
        .unwrap_or_else(|e| panic!("loading {} and {}: {e:?}", chain.display(), key.display()))
}
