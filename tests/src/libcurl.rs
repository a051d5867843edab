//! One-shot HTTPS requests through libcurl (the `curl` crate, libcurl built
//! in and linked against the system OpenSSL), as in Pistache's own TLS tests.
//!
//! Every request uses a fresh [`Easy`] handle, pins the name to `127.0.0.1`
//! (or the address given with [`CurlRequest::address`]) with
//! `CURLOPT_RESOLVE`, trusts only `ca.pem` (or the CA given with
//! [`CurlRequest::ca`]), and closes its connection before returning
//! (`CURLOPT_FORBID_REUSE`, then the handle is dropped).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use curl::easy::{Easy, List};

use crate::{certs, ffi};

/// Timeout of a whole libcurl request.
pub const CURL_TIMEOUT: Duration = Duration::from_secs(5);

/// Oldest libcurl the TLS regression tests accept: 8.9, the version
/// Pistache's fix (PR #1310) requires for its test.
pub const MIN_CURL_VERSION: (u32, u32) = (8, 9);

/// Status code and body of a libcurl request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurlResponse {
    /// HTTP status code.
    pub status: u32,
    /// Body as text (invalid UTF-8 replaced).
    pub body: String,
}

/// How a libcurl request is made.
#[derive(Debug, Clone)]
pub struct CurlRequest {
    /// Host name in the URL; resolved to [`CurlRequest::addr`].
    pub host: String,
    /// The address the host name resolves to (`127.0.0.1` by default).
    pub addr: IpAddr,
    /// The CA file libcurl verifies the server with (`CURLOPT_CAINFO`);
    /// `None` leaves libcurl's built-in default.
    pub ca: Option<PathBuf>,
    /// Timeout of the whole request.
    pub timeout: Duration,
    /// Port of the server.
    pub port: u16,
    /// Path, starting with `/`.
    pub path: String,
    /// Close without `close_notify` (OpenSSL quiet shutdown on libcurl's `SSL_CTX`).
    pub quiet_shutdown: bool,
}

impl CurlRequest {
    /// `GET https://localhost:{port}{path}` with quiet shutdown.
    pub fn new(port: u16, path: &str) -> CurlRequest {
        CurlRequest {
            host: "localhost".to_owned(),
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ca: Some(certs::ca_pem()),
            timeout: CURL_TIMEOUT,
            port,
            path: path.to_owned(),
            quiet_shutdown: true,
        }
    }

    /// Uses `host` in the URL instead of `localhost` (still resolved to `127.0.0.1`).
    pub fn host(mut self, host: &str) -> CurlRequest {
        self.host = host.to_owned();
        self
    }

    /// Resolves the host name to `addr` instead of `127.0.0.1`.
    pub fn address(mut self, addr: IpAddr) -> CurlRequest {
        self.addr = addr;
        self
    }

    /// Verifies the server with the CA file `ca` instead of `ca.pem`
    /// (`None`: libcurl's built-in default).
    pub fn ca(mut self, ca: Option<PathBuf>) -> CurlRequest {
        self.ca = ca;
        self
    }

    /// Gives the whole request `timeout` instead of [`CURL_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> CurlRequest {
        self.timeout = timeout;
        self
    }

    /// Sets whether libcurl closes without `close_notify`.
    pub fn quiet_shutdown(mut self, quiet: bool) -> CurlRequest {
        self.quiet_shutdown = quiet;
        self
    }

    /// Performs the request on a fresh handle and closes its connection.
    pub fn perform(&self) -> Result<CurlResponse, curl::Error> {
        let mut easy = Easy::new();
        let mut resolve = List::new();
        // CURLOPT_RESOLVE wants IPv6 addresses in brackets.
        let addr = match self.addr {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        resolve.append(&format!("{}:{}:{addr}", self.host, self.port))?;
        easy.resolve(resolve)?;
        easy.url(&format!("https://{}:{}{}", self.host, self.port, self.path))?;
        if let Some(ca) = &self.ca {
            easy.cainfo(ca)?;
        }
        easy.ssl_verify_peer(true)?;
        easy.ssl_verify_host(true)?;
        easy.timeout(self.timeout)?;
        easy.connect_timeout(self.timeout)?;
        easy.forbid_reuse(true)?;
        easy.signal(false)?;
        if self.quiet_shutdown {
            check_openssl_backend();
            ffi::set_quiet_shutdown(&mut easy)?;
        }
        let body = perform(&mut easy)?;
        let status = easy.response_code()?;
        drop(easy);
        Ok(CurlResponse {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Performs the transfer `easy` is set up for and returns the body.
pub fn perform(easy: &mut Easy) -> Result<Vec<u8>, curl::Error> {
    let mut body = Vec::new();
    {
        let mut transfer = easy.transfer();
        transfer.write_function(|data| {
            body.extend_from_slice(data);
            Ok(data.len())
        })?;
        transfer.perform()?;
    }
    Ok(body)
}

/// One `GET https://localhost:{port}{path}` on a fresh libcurl handle with
/// quiet shutdown (no `close_notify` when the connection closes).
pub fn curl_get(port: u16, path: &str) -> Result<CurlResponse, curl::Error> {
    CurlRequest::new(port, path).perform()
}

/// One `GET` under the name `wrong.example`, which the server certificate
/// does not carry: libcurl fails host name verification and drops the TCP
/// connection without `close_notify`. Returns what libcurl returned.
pub fn curl_get_wrong_name(port: u16, path: &str) -> Result<CurlResponse, curl::Error> {
    CurlRequest::new(port, path).host("wrong.example").perform()
}

/// Whether `err` is libcurl's verdict on a certificate it would not accept
/// (`CURLE_PEER_FAILED_VERIFICATION`, or an SSL error naming the certificate).
pub fn is_certificate_rejection(err: &curl::Error) -> bool {
    if err.is_peer_failed_verification() || err.is_ssl_cacert() {
        return true;
    }
    let text = format!(
        "{} {}",
        err.description(),
        err.extra_description().unwrap_or("")
    )
    .to_ascii_lowercase();
    err.is_ssl_connect_error() && (text.contains("certificate") || text.contains("subject"))
}

/// libcurl's version as (major, minor, patch), parsed from `curl_version_info`.
pub fn curl_version() -> (u32, u32, u32) {
    parse_version(curl::Version::get().version()).unwrap_or_else(|| {
        panic!(
            "unparsable libcurl version {:?}",
            curl::Version::get().version()
        )
    })
}

/// Parses `"8.9.1"`, `"8.10.0-DEV"` and the like.
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// Asserts libcurl is at least [`MIN_CURL_VERSION`].
#[track_caller]
pub fn assert_curl_at_least_8_9() {
    let (major, minor, patch) = curl_version();
    assert!(
        (major, minor) >= MIN_CURL_VERSION,
        "libcurl {major}.{minor}.{patch} is older than {}.{}",
        MIN_CURL_VERSION.0,
        MIN_CURL_VERSION.1
    );
}

/// Asserts libcurl's TLS backend is the OpenSSL this process links, which
/// the quiet-shutdown callback relies on.
#[track_caller]
pub fn check_openssl_backend() {
    let info = curl::Version::get();
    let backend = info.ssl_version().unwrap_or("none");
    let ours = openssl::version::version(); // e.g. "OpenSSL 3.0.13 30 Jan 2024"
    let ours_number = ours.split_whitespace().nth(1).unwrap_or("");
    assert!(
        backend.starts_with("OpenSSL/") && backend["OpenSSL/".len()..].starts_with(ours_number),
        "libcurl's TLS backend is {backend:?}, not the linked {ours:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("8.9.1"), Some((8, 9, 1)));
        assert_eq!(parse_version("8.10.0-DEV"), Some((8, 10, 0)));
        assert_eq!(parse_version("8.9"), Some((8, 9, 0)));
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn bundled_libcurl_is_recent_and_uses_openssl() {
        assert_curl_at_least_8_9();
        check_openssl_backend();
    }
}
