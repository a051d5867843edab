//! The crate's only unsafe code: OpenSSL symbols that `openssl-sys` does
//! not declare, `setrlimit`, and the one `unsafe` method of the `openssl`
//! crate the tests need (`SSL_set_session`).

use std::os::raw::{c_int, c_void};

extern "C" {
    /// `void SSL_CTX_set_quiet_shutdown(SSL_CTX *ctx, int mode);` from
    /// `<openssl/ssl.h>`. With `mode` 1, `SSL_shutdown` on connections made
    /// from `ctx` only marks the session closed and sends no `close_notify`.
    fn SSL_CTX_set_quiet_shutdown(ctx: *mut openssl_sys::SSL_CTX, mode: c_int);
}

/// Makes libcurl's connections from `easy` close without `close_notify`, by
/// setting quiet shutdown on the `SSL_CTX` libcurl hands to its
/// `CURLOPT_SSL_CTX_FUNCTION` callback.
///
/// The caller must have checked that libcurl's TLS backend is the OpenSSL
/// this process links (see `libcurl::check_openssl_backend`): only then is the
/// callback's pointer an `SSL_CTX` of this library.
pub(crate) fn set_quiet_shutdown(easy: &mut curl::easy::Easy) -> Result<(), curl::Error> {
    easy.ssl_ctx_function(|ctx: *mut c_void| {
        // SAFETY: libcurl with the OpenSSL backend (checked by the caller)
        // passes the connection's `SSL_CTX *` to this callback, valid for the
        // duration of the call; the setter only stores a flag in it.
        unsafe { SSL_CTX_set_quiet_shutdown(ctx.cast::<openssl_sys::SSL_CTX>(), 1) };
        Ok(())
    })
}

/// Sets the soft `RLIMIT_NOFILE` of this process to `soft` (capped at the
/// hard limit) and returns the previous soft limit (`setrlimit(2)`).
pub(crate) fn set_open_files_limit(soft: u64) -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let previous = limit.rlim_cur;
    limit.rlim_cur = soft.min(limit.rlim_max);
    // SAFETY: `limit` is a valid rlimit; setrlimit only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(previous)
}

/// Offers `session` for resumption on the connection `config` is about to
/// make (`SSL_set_session`).
///
/// Only [`crate::resume::ResumingConnector`] calls it, with a session taken
/// from an earlier connection of the very connector `config` comes from.
pub(crate) fn offer_session(
    config: &mut openssl::ssl::ConnectConfiguration,
    session: &openssl::ssl::SslSessionRef,
) -> Result<(), openssl::error::ErrorStack> {
    // SAFETY: `SslRef::set_session` requires the session to belong to the
    // same `SslContext` as the `Ssl`. The only caller passes a session that
    // a connection of the same `SslConnector` (hence the same `SSL_CTX`)
    // negotiated, and checks that at run time.
    unsafe { config.set_session(session) }
}
