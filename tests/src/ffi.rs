//! The crate's only unsafe code: OpenSSL symbols that `openssl-sys` does
//! not declare, `setrlimit`, the one `unsafe` method of the `openssl`
//! crate the tests need (`SSL_set_session`), and handing a descriptor to a
//! child process as fd 3 (`Command::pre_exec`).

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

/// Makes the child that `cmd` spawns get `fd` as descriptor 3, open across
/// `exec` (the first socket of systemd's socket activation). The caller
/// keeps `fd` open until the child is spawned.
pub(crate) fn inherit_as_fd3(cmd: &mut std::process::Command, fd: std::os::fd::RawFd) {
    use std::os::unix::process::CommandExt;
    let hand_over = move || {
        // dup2 makes a copy without close-on-exec; if `fd` already is 3,
        // its own flag is cleared instead (dup2(3, 3) would keep it).
        // SAFETY: runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: dup2 and fcntl are; `fd` is
        // open (the parent holds it until spawn returns).
        let done = unsafe {
            if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            }
        };
        if done == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the closure above only makes async-signal-safe calls and
    // allocates nothing.
    unsafe { cmd.pre_exec(hand_over) };
}
