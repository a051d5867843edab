//! [`ResumingConnector`]: an OpenSSL client that can offer the session of
//! an earlier connection, for TLS session resumption tests.

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};

use openssl::ssl::{SslConnector, SslSession, SslStream};

use crate::client::connect_tcp;
use crate::ffi;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A client connector whose connections can resume each other's sessions.
pub struct ResumingConnector {
    connector: SslConnector,
    id: u64,
}

/// A session negotiated by a connection of one [`ResumingConnector`]; only
/// that connector accepts it back.
#[derive(Clone)]
pub struct ClientSession {
    session: SslSession,
    connector: u64,
}

impl ResumingConnector {
    /// Wraps `connector`.
    pub fn new(connector: SslConnector) -> ResumingConnector {
        ResumingConnector {
            connector,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Connects to `127.0.0.1:port` as `server_name` and completes the
    /// handshake, offering `resume` if given. Whether the server accepted it
    /// is `stream.ssl().session_reused()`.
    ///
    /// Panics if `resume` came from another connector.
    pub fn connect(
        &self,
        port: u16,
        server_name: &str,
        resume: Option<&ClientSession>,
    ) -> io::Result<SslStream<TcpStream>> {
        let tcp = connect_tcp(port)?;
        let mut config = self.connector.configure().map_err(io::Error::other)?;
        if let Some(session) = resume {
            assert_eq!(
                session.connector, self.id,
                "a session offered to a connector that did not negotiate it"
            );
            ffi::offer_session(&mut config, &session.session).map_err(io::Error::other)?;
        }
        config
            .connect(server_name, tcp)
            .map_err(|e| io::Error::other(format!("TLS handshake with 127.0.0.1:{port}: {e}")))
    }

    /// The session `stream` (made by [`ResumingConnector::connect`]) holds,
    /// for a later connection to resume. With TLS 1.3 the server sends its
    /// tickets after the handshake: read a response before taking it.
    ///
    /// Panics if `stream` was made by another connector.
    pub fn session_of(&self, stream: &SslStream<TcpStream>) -> Option<ClientSession> {
        // References to OpenSSL objects point at the objects themselves.
        assert!(
            std::ptr::eq(stream.ssl().ssl_context(), self.connector.context()),
            "a stream made by another connector"
        );
        let session = stream.ssl().session()?.to_owned();
        Some(ClientSession {
            session,
            connector: self.id,
        })
    }
}

impl fmt::Debug for ResumingConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResumingConnector")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSession")
            .field("connector", &self.connector)
            .field("id", &self.session.id())
            .finish()
    }
}
