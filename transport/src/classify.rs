//! Classification of a failed TLS I/O call: the pure half of the TLS contract.
//!
//! After `SSL_read`, `SSL_write`, `SSL_do_handshake` or `SSL_shutdown`
//! returns `<= 0`, three facts decide what happened: the code
//! `SSL_get_error` returns, the first entry of the thread's OpenSSL error
//! queue, and `errno` as it was right after the call. [`classify`] maps those
//! facts to an [`SslOutcome`]; it touches no OpenSSL state, so every row of
//! the table below is unit-tested here without a socket.
//!
//! | `SSL_get_error` | queue's first entry / errno | outcome | transport action |
//! |---|---|---|---|
//! | `WANT_READ` | — | [`SslOutcome::WantRead`] | wait for readable |
//! | `WANT_WRITE` | — | [`SslOutcome::WantWrite`] | arm writable, resume the same call |
//! | `ZERO_RETURN` | — | [`SslOutcome::CloseNotify`] | flush, send close_notify, close |
//! | `SSL` or `SYSCALL` | `SSL_R_UNEXPECTED_EOF_WHILE_READING` | [`SslOutcome::PeerClosedWithoutNotify`] | close at once |
//! | `SSL` or `SYSCALL` | an `ERR_LIB_SYS` entry with an errno | [`SslOutcome::Socket`] (the entry's errno) | close abortively |
//! | `SYSCALL` | any other entry | [`SslOutcome::Protocol`] | close abortively, log at debug |
//! | `SYSCALL` | empty, errno ≠ 0 | [`SslOutcome::Socket`] (errno) | close abortively |
//! | `SYSCALL` | empty, errno 0 | [`SslOutcome::PeerClosedWithoutNotify`] | close at once |
//! | `SSL` | any other entry, or none | [`SslOutcome::Protocol`] | close abortively, log at debug |
//! | anything else | — | [`SslOutcome::Protocol`] | close abortively, log at debug |
//!
//! The rows are tried in this order. `docs/tls-error-queue.md` has the same
//! function in C++, row for row.
//!
//! The two spellings of "peer closed without close_notify" come from
//! OpenSSL's history: 1.1.1 reports `SSL_ERROR_SYSCALL` with `errno == 0`,
//! 3.x reports `SSL_ERROR_SSL` with reason `SSL_R_UNEXPECTED_EOF_WHILE_READING`
//! (unless `SSL_OP_IGNORE_UNEXPECTED_EOF` is set, which pistachio does not).
//!
//! None of this is reliable unless the queue was empty **before** the call:
//! `SSL_get_error` looks at the queue first, so a stale entry left by an
//! earlier connection on the same thread turns a harmless `WANT_READ` into a
//! fatal `SSL_ERROR_SSL`. That is Pistache issue #1309; see
//! `docs/tls-error-queue.md`.

use std::fmt;
use std::io;

/// `SSL_ERROR_NONE` from `<openssl/ssl.h>`.
pub const SSL_ERROR_NONE: i32 = 0;
/// `SSL_ERROR_SSL` from `<openssl/ssl.h>`.
pub const SSL_ERROR_SSL: i32 = 1;
/// `SSL_ERROR_WANT_READ` from `<openssl/ssl.h>`.
pub const SSL_ERROR_WANT_READ: i32 = 2;
/// `SSL_ERROR_WANT_WRITE` from `<openssl/ssl.h>`.
pub const SSL_ERROR_WANT_WRITE: i32 = 3;
/// `SSL_ERROR_SYSCALL` from `<openssl/ssl.h>`.
pub const SSL_ERROR_SYSCALL: i32 = 5;
/// `SSL_ERROR_ZERO_RETURN` from `<openssl/ssl.h>`.
pub const SSL_ERROR_ZERO_RETURN: i32 = 6;
/// `ERR_LIB_SYS` from `<openssl/err.h>`: the entry carries an `errno`.
pub const ERR_LIB_SYS: i32 = 2;
/// `ERR_LIB_SSL` from `<openssl/err.h>`.
pub const ERR_LIB_SSL: i32 = 20;
/// `SSL_R_UNEXPECTED_EOF_WHILE_READING` from `<openssl/sslerr.h>` (3.0+).
pub const SSL_R_UNEXPECTED_EOF_WHILE_READING: i32 = 294;

/// One entry of OpenSSL's error queue, as a packed code plus its decoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct QueuedError {
    /// The packed code `ERR_peek_error()`/`ERR_get_error()` returned.
    pub code: u64,
    /// The library (`ERR_GET_LIB`), e.g. [`ERR_LIB_SSL`] or [`ERR_LIB_SYS`].
    pub lib: i32,
    /// The reason (`ERR_GET_REASON`); for [`ERR_LIB_SYS`] it is the `errno`.
    pub reason: i32,
}

impl QueuedError {
    /// Decodes a packed error code. `openssl3` selects the OpenSSL 3.x
    /// layout (system errors flagged by the top bit, 8-bit library at bit 23,
    /// 23-bit reason); otherwise the 1.1.x layout (library at bit 24, 12-bit
    /// reason). Returns `None` for 0, which means "queue empty".
    pub fn decode(code: u64, openssl3: bool) -> Option<QueuedError> {
        if code == 0 {
            return None;
        }
        let (lib, reason) = if openssl3 {
            const ERR_SYSTEM_FLAG: u64 = 0x8000_0000;
            const ERR_SYSTEM_MASK: u64 = 0x7FFF_FFFF;
            if code & ERR_SYSTEM_FLAG != 0 {
                (ERR_LIB_SYS, (code & ERR_SYSTEM_MASK) as i32)
            } else {
                (((code >> 23) & 0xFF) as i32, (code & 0x7F_FFFF) as i32)
            }
        } else {
            (((code >> 24) & 0xFF) as i32, (code & 0xFFF) as i32)
        };
        Some(QueuedError { code, lib, reason })
    }

    /// Whether this entry is OpenSSL's "peer closed without close_notify".
    pub fn is_unexpected_eof(&self) -> bool {
        self.lib == ERR_LIB_SSL && self.reason == SSL_R_UNEXPECTED_EOF_WHILE_READING
    }
}

impl fmt::Debug for QueuedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "QueuedError {{ code: {:#x}, lib: {}, reason: {} }}",
            self.code, self.lib, self.reason
        )
    }
}

/// What one TLS I/O call amounted to.
#[derive(Debug)]
pub enum SslOutcome {
    /// The call succeeded: bytes read or written, or for the handshake and
    /// `SSL_shutdown`, 0 / 1 as OpenSSL returned it.
    Done(usize),
    /// OpenSSL needs more bytes from the peer: wait for readable.
    WantRead,
    /// OpenSSL needs to send (also during a read: KeyUpdate, renegotiation):
    /// arm writable and retry the same call with the same arguments.
    WantWrite,
    /// The peer sent close_notify (`SSL_ERROR_ZERO_RETURN`): a clean close.
    CloseNotify,
    /// The peer closed TCP without close_notify. Routine (libcurl ≥ 8.9 does
    /// it after a failed hostname check), never an error for other peers.
    PeerClosedWithoutNotify,
    /// A socket error (`SSL_ERROR_SYSCALL` with an `errno`, e.g. ECONNRESET).
    Socket(io::Error),
    /// A TLS protocol error (`SSL_ERROR_SSL` with another reason), or an
    /// `SSL_get_error` value this transport never expects.
    Protocol {
        /// The `SSL_get_error` value.
        ssl_error: i32,
        /// The first queued entry, if there was one.
        first: Option<QueuedError>,
    },
}

impl SslOutcome {
    /// Whether the connection is over (anything but success or a want).
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            SslOutcome::Done(_) | SslOutcome::WantRead | SslOutcome::WantWrite
        )
    }
}

/// Maps the facts gathered after a failed TLS I/O call to an outcome.
///
/// * `ssl_error` — what `SSL_get_error(ssl, ret)` returned;
/// * `first` — the first entry of the thread's error queue, read with
///   `ERR_peek_error()` right after `SSL_get_error`;
/// * `errno` — `errno` captured right after the call (0 if unset; the
///   caller zeroes it before the call so a stale value is never read).
pub fn classify(ssl_error: i32, first: Option<QueuedError>, errno: i32) -> SslOutcome {
    match ssl_error {
        SSL_ERROR_WANT_READ => SslOutcome::WantRead,
        SSL_ERROR_WANT_WRITE => SslOutcome::WantWrite,
        SSL_ERROR_ZERO_RETURN => SslOutcome::CloseNotify,
        SSL_ERROR_SSL => match first {
            Some(e) if e.is_unexpected_eof() => SslOutcome::PeerClosedWithoutNotify,
            Some(e) if e.lib == ERR_LIB_SYS && e.reason != 0 => {
                SslOutcome::Socket(io::Error::from_raw_os_error(e.reason))
            }
            first => SslOutcome::Protocol { ssl_error, first },
        },
        SSL_ERROR_SYSCALL => match first {
            Some(e) if e.is_unexpected_eof() => SslOutcome::PeerClosedWithoutNotify,
            Some(e) if e.lib == ERR_LIB_SYS && e.reason != 0 => {
                SslOutcome::Socket(io::Error::from_raw_os_error(e.reason))
            }
            Some(e) => SslOutcome::Protocol {
                ssl_error,
                first: Some(e),
            },
            None if errno != 0 => SslOutcome::Socket(io::Error::from_raw_os_error(errno)),
            None => SslOutcome::PeerClosedWithoutNotify,
        },
        _ => SslOutcome::Protocol { ssl_error, first },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenSSL 3.x packing of `ERR_PACK(lib, 0, reason)`.
    fn packed3(lib: i32, reason: i32) -> u64 {
        ((lib as u64 & 0xFF) << 23) | (reason as u64 & 0x7F_FFFF)
    }

    fn queued3(lib: i32, reason: i32) -> Option<QueuedError> {
        QueuedError::decode(packed3(lib, reason), true)
    }

    /// The system-error form OpenSSL 3 uses for `ERR_raise(ERR_LIB_SYS, errno)`.
    fn sys3(errno: i32) -> Option<QueuedError> {
        QueuedError::decode(0x8000_0000 | errno as u64, true)
    }

    #[test]
    fn decodes_both_packings() {
        // 0x0A000126 is what OpenSSL 3 prints for "unexpected eof while reading".
        let e = QueuedError::decode(0x0A00_0126, true).unwrap();
        assert_eq!(
            (e.lib, e.reason),
            (ERR_LIB_SSL, SSL_R_UNEXPECTED_EOF_WHILE_READING)
        );
        assert!(e.is_unexpected_eof());
        let e = QueuedError::decode(0x8000_0068, true).unwrap();
        assert_eq!((e.lib, e.reason), (ERR_LIB_SYS, libc::ECONNRESET));
        let e = QueuedError::decode((20 << 24) | (229 << 12) | 0x10B, false).unwrap();
        assert_eq!((e.lib, e.reason), (ERR_LIB_SSL, 0x10B));
        assert_eq!(QueuedError::decode(0, true), None);
    }

    /// One case per row of the table in the module docs.
    #[test]
    fn every_row_of_the_table() {
        use SslOutcome as O;
        type Check = fn(&SslOutcome) -> bool;
        let rows: &[(&str, i32, Option<QueuedError>, i32, Check)] = &[
            ("want read", SSL_ERROR_WANT_READ, None, 0, |o| {
                matches!(o, O::WantRead)
            }),
            (
                "want read, errno left over",
                SSL_ERROR_WANT_READ,
                None,
                libc::EAGAIN,
                |o| matches!(o, O::WantRead),
            ),
            ("want write", SSL_ERROR_WANT_WRITE, None, 0, |o| {
                matches!(o, O::WantWrite)
            }),
            ("close_notify", SSL_ERROR_ZERO_RETURN, None, 0, |o| {
                matches!(o, O::CloseNotify)
            }),
            (
                "EOF, OpenSSL 3 spelling",
                SSL_ERROR_SSL,
                queued3(ERR_LIB_SSL, SSL_R_UNEXPECTED_EOF_WHILE_READING),
                0,
                |o| matches!(o, O::PeerClosedWithoutNotify),
            ),
            (
                "EOF, OpenSSL 1.1 spelling",
                SSL_ERROR_SYSCALL,
                None,
                0,
                |o| matches!(o, O::PeerClosedWithoutNotify),
            ),
            (
                "syscall with errno",
                SSL_ERROR_SYSCALL,
                None,
                libc::ECONNRESET,
                |o| matches!(o, O::Socket(e) if e.raw_os_error() == Some(libc::ECONNRESET)),
            ),
            (
                "syscall with queued errno",
                SSL_ERROR_SYSCALL,
                sys3(libc::EPIPE),
                0,
                |o| matches!(o, O::Socket(e) if e.raw_os_error() == Some(libc::EPIPE)),
            ),
            (
                "protocol error",
                SSL_ERROR_SSL,
                // SSL_R_WRONG_VERSION_NUMBER: plaintext sent to the TLS port.
                queued3(ERR_LIB_SSL, 267),
                0,
                |o| matches!(o, O::Protocol { ssl_error: SSL_ERROR_SSL, first: Some(e) } if e.reason == 267),
            ),
            ("SSL error with empty queue", SSL_ERROR_SSL, None, 0, |o| {
                matches!(o, O::Protocol { first: None, .. })
            }),
            ("unexpected code (WANT_X509_LOOKUP)", 4, None, 0, |o| {
                matches!(o, O::Protocol { ssl_error: 4, .. })
            }),
        ];
        for (name, ssl_error, first, errno, check) in rows {
            let outcome = classify(*ssl_error, *first, *errno);
            assert!(check(&outcome), "{name}: got {outcome:?}");
        }
    }

    /// The heart of Pistache #1309, expressed on the pure function: what
    /// `SSL_get_error` reports for a `WANT_READ` situation depends on the
    /// queue, so a stale UNEXPECTED_EOF entry from another connection makes
    /// a healthy connection look dead. The transport prevents the stale
    /// entry from existing; this documents why it must.
    #[test]
    fn stale_queue_entry_turns_a_want_read_into_a_fatal_error() {
        // OpenSSL's SSL_get_error: a non-empty queue wins over SSL_want_read().
        let stale = queued3(ERR_LIB_SSL, SSL_R_UNEXPECTED_EOF_WHILE_READING);
        let ssl_get_error = |queue: Option<QueuedError>| {
            if queue.is_some() {
                SSL_ERROR_SSL
            } else {
                SSL_ERROR_WANT_READ
            }
        };
        assert!(!classify(ssl_get_error(None), None, 0).is_fatal());
        assert!(classify(ssl_get_error(stale), stale, 0).is_fatal());
    }
}
