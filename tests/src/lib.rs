//! Shared helpers for the pistachio workspace test suite.
//!
//! Everything here talks to a real server over loopback (`127.0.0.1`):
//!
//! * [`certs`]: paths of the checked-in test PKI under `tests/certs/`;
//! * [`TestServer`]: an [`Endpoint`](pistachio_rest::http::Endpoint) bound to
//!   `127.0.0.1:0`, shut down and joined when dropped;
//! * [`Connection`]: the one blocking HTTP/1.1 client of the suite, a
//!   keep-alive connection over any stream that reads responses of every
//!   framing byte-exact; [`TlsClient`] and [`PlainClient`] are it over
//!   OpenSSL (verifying the server against `ca.pem` under the name
//!   `localhost`) and over plain TCP, and [`client::RequestBuilder`] writes
//!   the requests;
//! * [`AbruptClose`]: the ways a peer can leave without a clean TLS shutdown
//!   (FIN without `close_notify`, RST, truncated `ClientHello`, garbage, ...);
//! * [`resume::ResumingConnector`]: an OpenSSL client that offers an earlier
//!   connection's session, for TLS session resumption tests;
//! * [`openapi`]: OpenAPI documents checked with `openapi-spec-validator`;
//! * [`prometheus`]: Prometheus text expositions checked against the
//!   format's grammar and by the Prometheus Python client's parser;
//! * [`tools`]: optional outside programs (the h2 clients, the Python
//!   checkers) and their `PISTACHIO_REQUIRE_*` switches;
//! * [`libcurl`]: one-shot requests through libcurl, optionally with OpenSSL's
//!   "quiet shutdown" so libcurl never sends `close_notify`;
//! * [`probe`]: the `tls-probe` program, which plays abrupt TLS clients
//!   against any HTTPS server while checking that good clients keep being
//!   answered.
//!
//! Every blocking read has a timeout of a few seconds, so a broken server
//! makes a test fail instead of hang.

pub mod abrupt;
pub mod activation;
pub mod certs;
pub mod client;
mod ffi;
pub mod h2;
pub mod libcurl;
pub mod openapi;
pub mod probe;
pub mod prometheus;
pub mod resume;
pub mod server;
pub mod tools;

pub use abrupt::AbruptClose;
pub use certs::certs_dir;
pub use client::{Connection, PlainClient, Response, TlsClient};
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

/// Sets this process's soft limit on open files and returns the previous
/// one. Affects every thread of the process: use it only in a test file of
/// its own (each file in `tests/tests/` is its own process).
pub fn set_open_files_limit(soft: u64) -> std::io::Result<u64> {
    ffi::set_open_files_limit(soft)
}

/// Number of open file descriptors of this process (`/proc/self/fd`).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Resident memory of this process (`VmRSS` of `/proc/self/status`), in
/// KiB; 0 if it cannot be read.
pub fn rss_kib() -> u64 {
    status_kib("self", "VmRSS")
}

/// Resident memory of process `pid` (`VmRSS`), in KiB; 0 if it cannot be
/// read.
pub fn rss_kib_of(pid: u32) -> u64 {
    status_kib(&pid.to_string(), "VmRSS")
}

/// The most resident memory process `pid` has had so far (`VmHWM`, the
/// "high water mark"), in KiB; 0 if it cannot be read. Unlike sampling
/// `VmRSS`, it misses no short peak.
pub fn peak_rss_kib_of(pid: u32) -> u64 {
    status_kib(&pid.to_string(), "VmHWM")
}

/// Field `field` (in kB) of `/proc/PROCESS/status`.
fn status_kib(process: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|v| v.strip_prefix(':'))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// CPU time of one thread of this process, read from its
/// `/proc/self/task/TID/stat`. The file is opened once and re-read with
/// `pread`, so sampling needs no new descriptor (it works while the process
/// is out of them).
#[derive(Debug)]
pub struct ThreadCpu {
    stat: std::fs::File,
}

impl ThreadCpu {
    /// Finds the thread named `name` (its `comm`).
    pub fn find(name: &str) -> Option<ThreadCpu> {
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == name {
                let stat = std::fs::File::open(task.path().join("stat")).ok()?;
                return Some(ThreadCpu { stat });
            }
        }
        None
    }

    /// User + system CPU time so far, in clock ticks (1/100 s on Linux).
    pub fn ticks(&self) -> u64 {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 1024];
        let n = self.stat.read_at(&mut buf, 0).expect("read thread stat");
        let stat = String::from_utf8_lossy(&buf[..n]);
        // After the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields[11].parse().expect("utime");
        let stime: u64 = fields[12].parse().expect("stime");
        utime + stime
    }
}

/// The code blocks of the repository's README, compiled as doc tests so the
/// snippet a newcomer copies cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The code blocks of `pistachio-rest`'s README, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../rest/README.md")]
pub struct RestReadmeDoctests;

/// A fresh directory under the system's temporary one (named after
/// `prefix`, the process and a counter), removed with everything in it
/// on drop. Not created: the program given its path makes it.
#[derive(Debug)]
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// A new, unused path under the temporary directory.
    pub fn new(prefix: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
