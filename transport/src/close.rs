//! How a connection ended: [`CloseReason`], and for a TLS failure the
//! codes OpenSSL gave ([`TlsFailure`]), as data; text is made only when
//! they are displayed or logged.

use std::fmt;
use std::io;

use crate::classify::QueuedError;

/// Why a connection ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// Closed gracefully after [`Conn::close`](crate::Conn::close) (or the peer's clean EOF),
    /// with TLS close_notify sent.
    Closed,
    /// The protocol called [`Conn::abort`](crate::Conn::abort).
    Aborted,
    /// The peer closed TCP without TLS close_notify (not an error).
    PeerClosedWithoutNotify,
    /// The TLS handshake did not finish within the handshake timeout.
    HandshakeTimeout,
    /// A TLS protocol error (bad client, garbage on the TLS port...), as
    /// OpenSSL reported it.
    Tls(TlsFailure),
    /// A socket error (e.g. connection reset).
    Socket(io::Error),
    /// The server is shutting down.
    Shutdown,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Closed => f.write_str("closed"),
            CloseReason::Aborted => f.write_str("aborted"),
            CloseReason::PeerClosedWithoutNotify => {
                f.write_str("peer closed without TLS close_notify")
            }
            CloseReason::HandshakeTimeout => f.write_str("TLS handshake timed out"),
            CloseReason::Tls(e) => write!(f, "TLS error: {e}"),
            CloseReason::Socket(e) => write!(f, "socket error: {e}"),
            CloseReason::Shutdown => f.write_str("server shutting down"),
        }
    }
}

/// A TLS protocol failure: what `SSL_get_error` said and the first entry
/// of OpenSSL's error queue (see `docs/tls-error-queue.md`). Codes, not
/// text: the names are looked up only when it is displayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsFailure {
    ssl_error: i32,
    first: Option<QueuedError>,
}

impl TlsFailure {
    pub(crate) fn new(ssl_error: i32, first: Option<QueuedError>) -> TlsFailure {
        TlsFailure { ssl_error, first }
    }

    /// What `SSL_get_error` returned (`SSL_ERROR_SSL` = 1, ...).
    pub fn ssl_error(&self) -> i32 {
        self.ssl_error
    }

    /// The library of the queue's first entry (`ERR_GET_LIB`; `ERR_LIB_SSL`
    /// = 20), if the queue held one.
    pub fn library(&self) -> Option<i32> {
        self.first.map(|e| e.lib)
    }

    /// The reason of the queue's first entry (`ERR_GET_REASON`, e.g.
    /// `SSL_R_WRONG_VERSION_NUMBER` = 267), if the queue held one.
    pub fn reason(&self) -> Option<i32> {
        self.first.map(|e| e.reason)
    }

    /// The packed code of the queue's first entry, as `ERR_get_error`
    /// returned it, if the queue held one.
    pub fn code(&self) -> Option<u64> {
        self.first.map(|e| e.code)
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.ssl_error {
            crate::classify::SSL_ERROR_SSL => "SSL_ERROR_SSL",
            crate::classify::SSL_ERROR_SYSCALL => "SSL_ERROR_SYSCALL",
            _ => "SSL_get_error",
        };
        write!(f, "{name} ({})", self.ssl_error)?;
        if let Some(e) = self.first {
            let (lib, reason) = crate::sys::error_names(e.code);
            write!(
                f,
                ": error:{:08X}: lib {} ({lib}), reason {} ({reason})",
                e.code, e.lib, e.reason
            )?;
        }
        Ok(())
    }
}
