//! Every `unsafe` line of `pistachio-transport` lives in this module.
//!
//! It holds the FFI declarations `openssl-sys` lacks, [`Ssl`] (the owning
//! wrapper of one peer's raw `SSL*`), and the **choke point**
//! [`Ssl::call`] through which every `SSL_do_handshake`, `SSL_read`,
//! `SSL_write` and `SSL_shutdown` goes, in four steps:
//!
//! 1. empty queue first: make sure the thread's error queue is empty
//!    (`ERR_peek_error`; drain it if not, which debug builds treat as a
//!    bug), and zero `errno`;
//! 2. call, and capture `errno` at once; a result `> 0` (or `0` from
//!    `SSL_shutdown`) is `Done`;
//! 3. classify any other result: ask `SSL_get_error`, peek the queue's first
//!    entry, and [`classify`] them into an [`SslOutcome`];
//! 4. drain the queue, logging what it held at `debug!`, and return.
//!
//! The other calls on an `SSL*` (`SSL_new` and its setup, reading the
//! client certificate's subject, `SSL_free_buffers`, the version and cipher
//! names) are here too, and leave the queue empty as well. The one call
//! left outside the choke point is `SSL_has_pending`, a read of the record
//! layer's buffers that never touches the queue, made after every TLS read.
//!
//! Nothing leaves this module with the queue non-empty.
//!
//! The plain-socket reads and writes are here as well ([`recv`], [`send`],
//! [`writev`]): raw system calls made by `rustix`, without glibc's
//! cancellation-point wrappers.

use std::cell::Cell;
use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::ptr::NonNull;

use foreign_types::ForeignTypeRef;
use libc::{c_char, c_int, c_ulong};
use log::debug;
use openssl::error::ErrorStack;
use openssl::ssl::SslContextRef;
use openssl_sys as ffi;
use rustix::net::{RecvFlags, SendFlags};

use crate::classify::{classify, QueuedError, SslOutcome};

#[cfg(all(feature = "unhygienic-error-queue", not(debug_assertions)))]
compile_error!(
    "the `unhygienic-error-queue` feature reproduces a bug for tests; it must never be built in release"
);

/// Whether error-queue hygiene is on. Only the test-only
/// `unhygienic-error-queue` feature turns it off, to show that the
/// regression suite fails without it.
const HYGIENE: bool = !cfg!(feature = "unhygienic-error-queue");

// Symbols `openssl-sys` does not declare.
extern "C" {
    /// `int SSL_set_fd(SSL *ssl, int fd)` from `<openssl/ssl.h>`: wraps `fd`
    /// in a socket BIO created with `BIO_NOCLOSE`, so the fd stays owned by
    /// the `mio::net::TcpStream`.
    fn SSL_set_fd(ssl: *mut ffi::SSL, fd: c_int) -> c_int;
    /// `unsigned long ERR_peek_error(void)` from `<openssl/err.h>`: the
    /// earliest entry of this thread's queue, without removing it.
    fn ERR_peek_error() -> c_ulong;
    /// `int SSL_free_buffers(SSL *ssl)` from `<openssl/ssl.h>` (3.0+):
    /// frees the record buffers if they hold nothing; 1 if freed.
    fn SSL_free_buffers(ssl: *mut ffi::SSL) -> c_int;
    /// `STACK_OF(SSL_CIPHER) *SSL_CTX_get_ciphers(const SSL_CTX *ctx)` from
    /// `<openssl/ssl.h>`: the context's enabled ciphers, TLS 1.3 suites
    /// first, in preference order; owned by the context.
    #[cfg(test)]
    fn SSL_CTX_get_ciphers(ctx: *const ffi::SSL_CTX) -> *mut ffi::OPENSSL_STACK;
    /// `int SSL_has_pending(const SSL *s)` from `<openssl/ssl.h>` (1.1.0+):
    /// 1 if OpenSSL holds input not yet returned by `SSL_read`, processed
    /// or not (with read-ahead, raw bytes of later records count too).
    fn SSL_has_pending(ssl: *const ffi::SSL) -> c_int;
    /// `void BIO_set_callback_ex(BIO *b, BIO_callback_fn_ex cb)` from
    /// `<openssl/bio.h>` (1.1.1+).
    fn BIO_set_callback_ex(bio: *mut ffi::BIO, cb: Option<BioCallbackEx>);
    /// `void BIO_set_callback_arg(BIO *b, char *arg)`.
    fn BIO_set_callback_arg(bio: *mut ffi::BIO, arg: *mut c_char);
    /// `char *BIO_get_callback_arg(const BIO *b)`.
    fn BIO_get_callback_arg(bio: *const ffi::BIO) -> *mut c_char;
}

/// `BIO_callback_fn_ex` from `<openssl/bio.h>`.
type BioCallbackEx = unsafe extern "C" fn(
    bio: *mut ffi::BIO,
    oper: c_int,
    argp: *const c_char,
    len: usize,
    argi: c_int,
    argl: libc::c_long,
    ret: c_int,
    processed: *mut usize,
) -> libc::c_long;

/// `BIO_CB_READ` and `BIO_CB_RETURN` from `<openssl/bio.h>`.
const BIO_CB_READ: c_int = 0x02;
const BIO_CB_RETURN: c_int = 0x80;

/// Watches the socket BIO's reads: after `BIO_read` returns, records
/// whether `read(2)` gave fewer bytes than OpenSSL asked for, which means
/// the socket had nothing more at that moment (see [`Ssl::socket_drained`]).
///
/// # Safety
/// Called by OpenSSL only, on a BIO whose callback argument is the live
/// `Cell<bool>` of its session (set in [`Ssl::new_server`], freed after
/// `SSL_free`).
unsafe extern "C" fn watch_reads(
    bio: *mut ffi::BIO,
    oper: c_int,
    _argp: *const c_char,
    len: usize,
    _argi: c_int,
    _argl: libc::c_long,
    ret: c_int,
    processed: *mut usize,
) -> libc::c_long {
    if oper == BIO_CB_READ | BIO_CB_RETURN {
        // SAFETY: bio is the BIO this callback was installed on; its
        // argument is the session's live Cell<bool> (contract above), only
        // touched on the session's thread. `processed` is checked for NULL
        // and holds the byte count when `ret > 0`.
        unsafe {
            let short = ret > 0 && !processed.is_null() && *processed < len;
            (*BIO_get_callback_arg(bio).cast::<Cell<bool>>()).set(short);
        }
    }
    // Before an operation, a positive value lets it proceed; after it, the
    // operation's own result is passed through unchanged.
    if oper & BIO_CB_RETURN != 0 {
        libc::c_long::from(ret)
    } else {
        1
    }
}

/// `unsigned long` is 32 bits on some targets, 64 on others.
#[allow(clippy::useless_conversion)]
fn widen(code: c_ulong) -> u64 {
    u64::from(code)
}

/// The OpenSSL version this process runs against uses the 3.x error packing.
fn openssl3() -> bool {
    openssl::version::number() >= 0x3000_0000
}

/// Whether this thread's OpenSSL error queue is empty.
pub(crate) fn error_queue_is_empty() -> bool {
    // SAFETY: ERR_peek_error only reads this thread's error queue; it takes
    // no arguments and is always safe to call after OpenSSL is initialised
    // (the openssl crate initialises it before any SSL_CTX exists).
    unsafe { ERR_peek_error() == 0 }
}

/// Debug builds: panics if control is about to leave the transport with a
/// non-empty error queue (the invariant that keeps other peers safe).
pub(crate) fn debug_assert_queue_empty(place: &str) {
    if HYGIENE && cfg!(debug_assertions) && !error_queue_is_empty() {
        let left = drain_queue("leak");
        panic!("OpenSSL error queue not empty when leaving the transport ({place}): {left:?}");
    }
}

/// Steps 1 and 4 of the choke point around `f`, for every call that
/// touches an `SSL*` or the queue: the queue is empty before `f` (drained,
/// and a debug-build panic, if it was not) and drained after it.
fn with_clean_queue<T>(what: &str, f: impl FnOnce() -> T) -> T {
    // `ERR_peek_error() == 0` is exactly the condition `SSL_get_error`
    // relies on, and far cheaper than an unconditional `ERR_clear_error`
    // (which walks all 16 slots of the queue).
    if HYGIENE && !error_queue_is_empty() {
        let stale = drain_queue(what);
        debug_assert!(
            stale.is_empty(),
            "OpenSSL error queue not empty before {what}: {stale:?}"
        );
    }
    let result = f();
    if HYGIENE && !error_queue_is_empty() {
        drain_queue(what);
    }
    result
}

/// Removes every entry from this thread's queue, logging each at `debug!`.
/// Returns the decoded entries (for assertions and tests).
fn drain_queue(op: &str) -> Vec<QueuedError> {
    let ossl3 = openssl3();
    let mut drained = Vec::new();
    loop {
        // SAFETY: ERR_get_error pops this thread's queue; no arguments.
        let code = unsafe { ffi::ERR_get_error() };
        let Some(entry) = QueuedError::decode(widen(code), ossl3) else {
            break;
        };
        debug!(
            "{op}: drained OpenSSL error {:#x} (lib {} `{}`, reason {} `{}`)",
            entry.code,
            entry.lib,
            // SAFETY: ERR_lib_error_string returns NULL or a pointer to a
            // static NUL-terminated string owned by OpenSSL.
            unsafe { static_str(ffi::ERR_lib_error_string(code)) },
            entry.reason,
            // SAFETY: as above, for ERR_reason_error_string.
            unsafe { static_str(ffi::ERR_reason_error_string(code)) },
        );
        crate::stats::note_error_queue_drained();
        drained.push(entry);
    }
    drained
}

/// The library and reason names OpenSSL gives a packed error code
/// (`ERR_lib_error_string`, `ERR_reason_error_string`; "" if unknown).
/// Reads static tables only; the queue is not touched.
pub(crate) fn error_names(code: u64) -> (&'static str, &'static str) {
    let code = c_ulong::try_from(code).unwrap_or(0);
    // SAFETY: both return NULL or a pointer to a static NUL-terminated
    // string owned by OpenSSL.
    unsafe {
        (
            static_str(ffi::ERR_lib_error_string(code)),
            static_str(ffi::ERR_reason_error_string(code)),
        )
    }
}

/// # Safety
/// `p` is NULL or points to a NUL-terminated string that lives forever.
unsafe fn static_str(p: *const c_char) -> &'static str {
    if p.is_null() {
        return "";
    }
    // SAFETY: non-null, NUL-terminated and 'static per the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("?")
}

fn set_errno(value: c_int) {
    // SAFETY: __errno_location returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() = value }
}

/// `sendfile(2)`: copies up to `count` bytes of `file` from `*offset` to
/// `sock` in the kernel, advancing `*offset`. At most 1 GiB per call.
pub(crate) fn sendfile(
    sock: &impl std::os::fd::AsRawFd,
    file: &std::fs::File,
    offset: &mut u64,
    count: u64,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut off = libc::off_t::try_from(*offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
    let count = usize::try_from(count.min(1 << 30)).unwrap_or(1 << 30);
    // SAFETY: both descriptors are open for the duration of the call (the
    // borrows keep their owners alive) and `off` is a valid, writable off_t.
    let n = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
    let n = byte_count(n)?;
    *offset = off as u64;
    Ok(n)
}

/// `recvfrom(2)` on a non-blocking socket, made by `rustix` as a raw
/// system call.
///
/// glibc's `recv`, `send` and `writev` are thread-cancellation points:
/// each call flips the thread's cancellation type around the system call
/// with two atomic compare-and-swaps, and sets `errno`. Rust never cancels
/// threads, so the socket path makes the system calls itself (`rustix`'s
/// Linux backend issues the `syscall` instruction, and errors come back
/// in its result), skipping four locked instructions per request and
/// answer.
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(borrow(fd), buf, RecvFlags::empty())?.0)
}

/// `sendto(2)` with `MSG_NOSIGNAL` (a closed peer is `EPIPE`, not
/// `SIGPIPE`), made as [`recv`] is.
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(borrow(fd), buf, SendFlags::NOSIGNAL)?)
}

/// `writev(2)`, made as [`recv`] is. Up to `IOV_MAX` slices are the
/// caller's to respect.
pub(crate) fn writev(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    Ok(rustix::io::writev(borrow(fd), bufs)?)
}

/// `fd`, borrowed for one system call on it.
fn borrow<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: every caller passes the descriptor of a socket its peer
    // owns, open for the whole call (the peer is borrowed meanwhile); a
    // closed or reused number could at worst make the call fail or act on
    // the wrong descriptor, which the kernel checks, not memory safety.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// A system call's result as a byte count, or the `errno` it set (a
/// negative result).
fn byte_count(n: impl TryInto<usize>) -> io::Result<usize> {
    n.try_into().map_err(|_| io::Error::last_os_error())
}

/// `recvfrom(2)` with `MSG_PEEK`, as [`recv`] makes it: copies what the
/// socket holds into `buf` without consuming it (0 at EOF).
pub(crate) fn peek(sock: &impl std::os::fd::AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(borrow(sock.as_raw_fd()), buf, RecvFlags::PEEK)?.0)
}

/// Takes ownership of descriptor `fd`, inherited from the parent process
/// (systemd socket activation passes listening sockets as fds 3, 4, …).
/// Fails with `EBADF` if nothing is open under that number.
///
/// The caller must make sure nothing else in the process owns `fd`: the
/// only caller, [`crate::activation`], takes each inherited descriptor at
/// most once, under a lock, and unsets the variables that name them.
pub(crate) fn take_inherited_fd(fd: RawFd) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: fcntl(F_GETFD) only reads the descriptor flags; on a number
    // that is not open it fails with EBADF and touches nothing.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (checked just above) and, per the systemd
    // protocol, was handed to this process for it to own; the caller takes
    // each such number only once (see above), so this is its only owner.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// The names of the ciphers `ctx` enables, in preference order: the TLS
/// 1.3 suites first, then the TLS 1.2 cipher list (`SSL_CTX_get_ciphers`).
#[cfg(test)]
pub(crate) fn cipher_names(ctx: &SslContextRef) -> Vec<&'static str> {
    // SAFETY: ctx is a valid SSL_CTX; the stack it returns is owned by the
    // context, which the borrow keeps alive, and is only read here; its
    // entries are static SSL_CIPHERs with static names.
    unsafe {
        let stack = SSL_CTX_get_ciphers(ctx.as_ptr());
        if stack.is_null() {
            return Vec::new();
        }
        (0..ffi::OPENSSL_sk_num(stack))
            .map(|i| {
                let cipher = ffi::OPENSSL_sk_value(stack, i).cast::<ffi::SSL_CIPHER>();
                static_str(ffi::SSL_CIPHER_get_name(cipher))
            })
            .collect()
    }
}

/// `SSL_CTX_get_min_proto_version` and `SSL_CTX_get_max_proto_version`
/// of `ctx` (0: no bound).
#[cfg(test)]
pub(crate) fn proto_versions(ctx: &SslContextRef) -> (c_int, c_int) {
    // SAFETY: ctx is a valid SSL_CTX; both are SSL_CTX_ctrl reads.
    unsafe {
        (
            ffi::SSL_CTX_get_min_proto_version(ctx.as_ptr()),
            ffi::SSL_CTX_get_max_proto_version(ctx.as_ptr()),
        )
    }
}

/// Which OpenSSL call the choke point makes (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Handshake,
    Read,
    Write,
    Shutdown,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Handshake => "SSL_do_handshake",
            Op::Read => "SSL_read",
            Op::Write => "SSL_write",
            Op::Shutdown => "SSL_shutdown",
        }
    }
}

/// One peer's TLS session: owns a raw `SSL*`, freed in `Drop`.
///
/// Not `Send` (it holds a raw pointer): it is created on the peer's worker
/// thread and never leaves it, so the thread-local error queue that matters
/// is always that worker's.
#[derive(Debug)]
pub(crate) struct Ssl {
    ptr: NonNull<ffi::SSL>,
    /// Set by [`watch_reads`]: the last `read(2)` under the socket BIO was
    /// short. Heap-allocated (its address is the BIO's callback argument)
    /// and freed after the `SSL*` in `Drop`.
    last_read_short: NonNull<Cell<bool>>,
}

impl Drop for Ssl {
    fn drop(&mut self) {
        let ptr = self.ptr.as_ptr();
        // SAFETY: `ptr` came from SSL_new, is owned solely by this value and
        // freed exactly once here. SSL_free also frees the socket BIO, which
        // was created with BIO_NOCLOSE, so the fd itself is left to mio.
        with_clean_queue("SSL_free", || unsafe { ffi::SSL_free(ptr) });
        // SAFETY: allocated by Box::new in new_server and freed only here,
        // after SSL_free destroyed the BIO whose callback pointed to it.
        drop(unsafe { Box::from_raw(self.last_read_short.as_ptr()) });
    }
}

impl Ssl {
    /// `SSL_new` + `SSL_set_fd` + `SSL_set_accept_state`: a server-side
    /// session over `fd`, which must outlive the returned value.
    /// `offer_h2`: the ALPN callback may select `h2` for this session.
    pub(crate) fn new_server(
        ctx: &SslContextRef,
        fd: RawFd,
        offer_h2: bool,
    ) -> Result<Ssl, ErrorStack> {
        with_clean_queue("SSL_new", || Ssl::setup_server(ctx, fd, offer_h2))
    }

    /// [`Ssl::new_server`]'s calls; on failure, `ErrorStack::get` takes the
    /// entries off the queue.
    fn setup_server(ctx: &SslContextRef, fd: RawFd, offer_h2: bool) -> Result<Ssl, ErrorStack> {
        // `openssl::ssl::Ssl::new` is `SSL_new` plus the ex-data the
        // openssl crate's callbacks (verify, SNI, session cache) look up;
        // a bare `SSL_new` would make them abort. Its pointer is then owned
        // here, and freed by our `Drop` (which also frees that ex-data).
        let mut owned = openssl::ssl::Ssl::new(ctx)?;
        if offer_h2 {
            owned.set_ex_data(crate::tls::offer_h2_index()?, ());
        }
        let raw = owned.as_ptr();
        // Ownership of the SSL* moves to `ssl`, whose Drop frees it.
        std::mem::forget(owned);
        let ssl = Ssl {
            ptr: NonNull::new(raw).expect("openssl::ssl::Ssl is never null"),
            last_read_short: NonNull::from(Box::leak(Box::new(Cell::new(false)))),
        };
        // SAFETY: ssl.ptr is a valid SSL*; fd is an open socket that the
        // caller keeps open for the session's lifetime.
        if unsafe { SSL_set_fd(ssl.ptr.as_ptr(), fd) } != 1 {
            return Err(ErrorStack::get());
        }
        // SAFETY: SSL_set_fd succeeded, so the read BIO exists and is owned
        // by the SSL; its callback argument is the cell, which outlives it
        // (freed after SSL_free in Drop); `watch_reads` has the
        // BIO_callback_fn_ex signature.
        unsafe {
            let rbio = ffi::SSL_get_rbio(ssl.ptr.as_ptr());
            BIO_set_callback_arg(rbio, ssl.last_read_short.as_ptr().cast());
            BIO_set_callback_ex(rbio, Some(watch_reads));
        }
        // SAFETY: ssl.ptr is a valid SSL*.
        unsafe { ffi::SSL_set_accept_state(ssl.ptr.as_ptr()) };
        Ok(ssl)
    }

    /// `SSL_do_handshake`, through the choke point.
    pub(crate) fn do_handshake(&mut self) -> SslOutcome {
        // SAFETY: p is this session's valid SSL*.
        self.call(Op::Handshake, |p| unsafe { ffi::SSL_do_handshake(p) })
    }

    /// `SSL_read` into `buf`, through the choke point.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> SslOutcome {
        let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        let dst = buf.as_mut_ptr().cast();
        self.read_watch().set(false);
        // SAFETY: p is valid; dst points to at least `len` writable bytes.
        self.call(Op::Read, |p| unsafe { ffi::SSL_read(p, dst, len) })
    }

    fn read_watch(&self) -> &Cell<bool> {
        // SAFETY: the cell lives until Drop; OpenSSL writes it only from
        // inside this session's calls, on this thread (Ssl is !Send), so a
        // shared reference to the Cell is sound.
        unsafe { self.last_read_short.as_ref() }
    }

    /// Whether the last [`read`](Self::read) emptied both OpenSSL and the
    /// socket: its last `read(2)` returned fewer bytes than asked for, and
    /// OpenSSL holds no further input (`SSL_has_pending`). Another
    /// `SSL_read` now would only find `EAGAIN`; new bytes make a new edge.
    ///
    /// `SSL_has_pending` only reads the session's record-layer buffers: it
    /// neither reads nor writes the error queue, so it needs no choke
    /// point (which would cost two `ERR_peek_error` calls, about 400
    /// instructions, on every TLS read).
    pub(crate) fn socket_drained(&self) -> bool {
        // SAFETY: ptr is this session's valid SSL*; SSL_has_pending takes
        // it as const and only reads its record layer.
        self.read_watch().get() && unsafe { SSL_has_pending(self.ptr.as_ptr()) } == 0
    }

    /// `SSL_write` of `buf`, through the choke point. After `WantWrite` or
    /// `WantRead`, the caller must retry with the same bytes (the session is
    /// in `SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER` mode, so they may move).
    pub(crate) fn write(&mut self, buf: &[u8]) -> SslOutcome {
        let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        let src = buf.as_ptr().cast();
        // SAFETY: p is valid; src points to at least `len` readable bytes.
        self.call(Op::Write, |p| unsafe { ffi::SSL_write(p, src, len) })
    }

    /// `SSL_shutdown`, through the choke point: sends close_notify (once;
    /// OpenSSL remembers it was sent). `Done(0)` means sent, the peer's not
    /// yet received, which is all a server needs.
    pub(crate) fn shutdown(&mut self) -> SslOutcome {
        // SAFETY: p is this session's valid SSL*.
        self.call(Op::Shutdown, |p| unsafe { ffi::SSL_shutdown(p) })
    }

    /// The choke point. See the module docs.
    fn call(&mut self, op: Op, f: impl FnOnce(*mut ffi::SSL) -> c_int) -> SslOutcome {
        let ptr = self.ptr.as_ptr();
        // Steps 1 and 4 (empty queue first, drain after) around 2 and 3.
        let (outcome, ret, errno) = with_clean_queue(op.name(), || {
            // Step 2: call, and capture errno at once.
            set_errno(0);
            let ret = f(ptr);
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if ret > 0 || (op == Op::Shutdown && ret == 0) {
                return (SslOutcome::Done(ret as usize), ret, errno);
            }
            // Step 3: classify.
            // SAFETY: ptr is valid and `ret` is the value the call just
            // returned, on this thread, as SSL_get_error requires.
            let ssl_error = unsafe { ffi::SSL_get_error(ptr, ret) };
            // SAFETY: reads this thread's queue; no arguments.
            let first = QueuedError::decode(widen(unsafe { ERR_peek_error() }), openssl3());
            (classify(ssl_error, first, errno), ret, errno)
        });
        if outcome.is_fatal() {
            debug!("{} -> {outcome:?} (ret {ret}, errno {errno})", op.name());
        }
        outcome
    }

    /// The subject of the certificate the client presented, if any, as
    /// `CN=name, O=org` (`SSL_get1_peer_certificate`). With client
    /// verification on, only a verified certificate gets this far.
    pub(crate) fn peer_subject(&self) -> Option<String> {
        with_clean_queue("SSL_get1_peer_certificate", || {
            // SAFETY: ptr is a valid SSL* owned by self and used only on
            // this thread; the SslRef borrow does not outlive `self`.
            let ssl = unsafe { openssl::ssl::SslRef::from_ptr(self.ptr.as_ptr()) };
            let cert = ssl.peer_certificate()?;
            let parts: Vec<String> = cert
                .subject_name()
                .entries()
                .map(|e| {
                    let key = e.object().nid().short_name().unwrap_or("?");
                    let value = e.data().to_string().unwrap_or_else(|_| "?".to_owned());
                    format!("{key}={value}")
                })
                .collect();
            Some(parts.join(", "))
        })
    }

    /// Frees OpenSSL's read and write record buffers (~34 KiB) if they hold
    /// no pending data (`SSL_free_buffers`); they are allocated again on
    /// the next I/O. For connections that went idle. Returns whether freed.
    pub(crate) fn free_buffers(&mut self) -> bool {
        let ptr = self.ptr.as_ptr();
        // SAFETY: ptr is this session's valid SSL*; SSL_free_buffers only
        // releases buffers it finds empty and is a no-op otherwise.
        with_clean_queue("SSL_free_buffers", || unsafe { SSL_free_buffers(ptr) } == 1)
    }

    /// The negotiated protocol, e.g. `TLSv1.3` (`SSL_get_version`).
    pub(crate) fn version(&self) -> &'static str {
        let ptr = self.ptr.as_ptr();
        // SAFETY: ptr is valid; SSL_get_version returns a static string.
        with_clean_queue("SSL_get_version", || unsafe {
            static_str(ffi::SSL_get_version(ptr))
        })
    }

    /// The protocol ALPN selected (`SSL_get0_alpn_selected`), if it is one
    /// of those the server offers.
    pub(crate) fn alpn(&self) -> Option<&'static str> {
        let ptr = self.ptr.as_ptr();
        let mut data: *const std::os::raw::c_uchar = std::ptr::null();
        let mut len: std::os::raw::c_uint = 0;
        // SAFETY: ptr is valid; the out-pointers point to locals. The
        // result is NULL or `len` bytes owned by the session, read at once.
        let selected = with_clean_queue("SSL_get0_alpn_selected", || unsafe {
            ffi::SSL_get0_alpn_selected(ptr, &mut data, &mut len);
            if data.is_null() {
                None
            } else {
                Some(std::slice::from_raw_parts(data, len as usize).to_vec())
            }
        })?;
        crate::tls::known_alpn(&selected)
    }

    /// The negotiated cipher suite name, if the handshake is done
    /// (`SSL_get_current_cipher` + `SSL_CIPHER_get_name`).
    pub(crate) fn cipher(&self) -> Option<&'static str> {
        let ptr = self.ptr.as_ptr();
        with_clean_queue("SSL_get_current_cipher", || {
            // SAFETY: ptr is valid; the result is NULL or a static SSL_CIPHER.
            let cipher = unsafe { ffi::SSL_get_current_cipher(ptr) };
            if cipher.is_null() {
                return None;
            }
            // SAFETY: cipher is a valid, static SSL_CIPHER; its name is static.
            Some(unsafe { static_str(ffi::SSL_CIPHER_get_name(cipher)) })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    /// Pushes an UNEXPECTED_EOF entry on this thread's queue, as OpenSSL
    /// does when a peer closes without close_notify.
    fn push_unexpected_eof() {
        // SAFETY: ERR_new/ERR_set_debug/ERR_set_error only append to this
        // thread's queue; the strings are static and NUL-terminated, and the
        // format string has no conversions.
        unsafe {
            ffi::ERR_new();
            ffi::ERR_set_debug(c"test".as_ptr(), 0, c"test".as_ptr());
            ffi::ERR_set_error(20, 294, std::ptr::null());
        }
    }

    #[test]
    fn drain_empties_the_queue_and_decodes_the_entry() {
        openssl::init();
        push_unexpected_eof();
        assert!(!error_queue_is_empty());
        let drained = drain_queue("test");
        assert_eq!(drained.len(), 1);
        assert!(drained[0].is_unexpected_eof(), "{:?}", drained[0]);
        assert!(error_queue_is_empty());
    }

    /// Whether SIGPIPE is pending for this thread.
    fn sigpipe_pending() -> bool {
        // SAFETY: `set` is a valid sigset_t that sigpending fills in.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            assert_eq!(libc::sigpending(&mut set), 0);
            libc::sigismember(&set, libc::SIGPIPE) == 1
        }
    }

    /// The raw calls answer as recv(2), send(2) and writev(2) do: data
    /// (a peek leaves it in the socket), `WouldBlock` on an empty socket,
    /// `EBADF` on no socket, 0 at EOF, and `EPIPE` to a closed
    /// peer, without raising SIGPIPE (blocked here, so that one raised
    /// would stay pending instead of being ignored).
    #[test]
    fn raw_socket_calls() {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        let empty = recv(b.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
        // An error comes back as the kernel's error number.
        let file = std::fs::File::open("/dev/null").unwrap();
        let not_socket = recv(file.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(not_socket.raw_os_error(), Some(libc::ENOTSOCK));
        assert_eq!(send(a.as_raw_fd(), b"hello").unwrap(), 5);
        let parts = [IoSlice::new(b" wo"), IoSlice::new(b"rld")];
        assert_eq!(writev(a.as_raw_fd(), &parts).unwrap(), 6);
        let mut first = [0u8; 5];
        assert_eq!(peek(&b, &mut first).unwrap(), 5);
        assert_eq!(&first, b"hello");
        assert_eq!(recv(b.as_raw_fd(), &mut buf).unwrap(), 11);
        assert_eq!(&buf[..11], b"hello world");
        drop(a);
        assert_eq!(recv(b.as_raw_fd(), &mut buf).unwrap(), 0);

        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        // SAFETY: plain signal-mask calls on valid sigset_t values, for
        // this thread only; the mask is restored before returning.
        let old = unsafe {
            let mut block: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut block);
            libc::sigaddset(&mut block, libc::SIGPIPE);
            assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old), 0);
            old
        };
        let closed = send(a.as_raw_fd(), b"x").unwrap_err();
        let raised = sigpipe_pending();
        // SAFETY: as above; a SIGPIPE left pending is taken off the queue
        // (with a zero timeout) before the mask is restored.
        unsafe {
            let mut pipe: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pipe);
            libc::sigaddset(&mut pipe, libc::SIGPIPE);
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            while libc::sigtimedwait(&pipe, std::ptr::null_mut(), &zero) == libc::SIGPIPE {}
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        }
        assert_eq!(closed.kind(), io::ErrorKind::BrokenPipe);
        assert!(!raised, "send to a closed peer raised SIGPIPE");
    }
}
