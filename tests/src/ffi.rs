//! The crate's only foreign calls: OpenSSL symbols that `openssl-sys` does
//! not declare.

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
