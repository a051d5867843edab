//! The styles of abrupt TLS behaviour the probe plays against a server.
//!
//! Each style opens its own connection(s) and misbehaves; most are over when
//! [`Style::play`] returns (having waited for the server's close where it can
//! be seen, see [`crate::abrupt`]), two are *held*: the misbehaving
//! connection stays open while the good clients keep going and is let go
//! with [`Held::release`].

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use crate::abrupt::{client_hello, random_bytes, AbruptClose, CLOSE_WAIT, SETTLE};
use crate::client::{fin_and_wait_for_close, wait_for_close, Target};
use crate::libcurl::{is_certificate_rejection, CurlRequest};
use crate::TlsClient;

/// A name that no real server certificate carries (`.invalid` is reserved,
/// RFC 6761), for the libcurl hostname-mismatch style.
pub const MISMATCHED_NAME: &str = "tls-probe-mismatch.invalid";

/// How much of a large download is read before the reset.
const DOWNLOAD_CUT: usize = 256 * 1024;

/// Length of the junk in a garbage record.
const GARBAGE_LEN: usize = 300;

/// A style of abrupt client behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Style {
    /// A full request and response, then TCP FIN without `close_notify`.
    NoCloseNotify,
    /// A request, then RST (`SO_LINGER` 0) without waiting for the answer.
    RstAfterRequest,
    /// A `ClientHello`, the first bytes of the server's flight, then RST.
    RstMidHandshake,
    /// A record header with junk: after the handshake, and instead of a
    /// `ClientHello`.
    GarbageRecord,
    /// libcurl, with verification on, asks for a name the certificate does
    /// not carry and drops the connection without `close_notify`.
    CurlHostnameMismatch,
    /// Half a `ClientHello`, then silence (held), then FIN.
    StalledHandshake,
    /// A large download, reset after its first part.
    RstMidDownload,
    /// One exchange, then an idle connection (held), then FIN without
    /// `close_notify`.
    IdleClient,
}

impl Style {
    /// Every style, in the order a default run plays them.
    pub const ALL: [Style; 8] = [
        Style::NoCloseNotify,
        Style::RstAfterRequest,
        Style::RstMidHandshake,
        Style::GarbageRecord,
        Style::CurlHostnameMismatch,
        Style::StalledHandshake,
        Style::RstMidDownload,
        Style::IdleClient,
    ];

    /// The style's name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Style::NoCloseNotify => "no-close-notify",
            Style::RstAfterRequest => "rst-after-request",
            Style::RstMidHandshake => "rst-mid-handshake",
            Style::GarbageRecord => "garbage-record",
            Style::CurlHostnameMismatch => "curl-hostname-mismatch",
            Style::StalledHandshake => "stalled-handshake",
            Style::RstMidDownload => "rst-mid-download",
            Style::IdleClient => "idle-client",
        }
    }

    /// The style named `name`.
    pub fn from_name(name: &str) -> Option<Style> {
        Style::ALL.into_iter().find(|s| s.name() == name)
    }

    /// One line for `--help`.
    pub fn describe(self) -> &'static str {
        match self {
            Style::NoCloseNotify => "request + response, then TCP FIN without TLS close_notify",
            Style::RstAfterRequest => "request, then TCP RST (SO_LINGER 0) before the answer",
            Style::RstMidHandshake => "ClientHello, first bytes of the server's reply, then RST",
            Style::GarbageRecord => {
                "TLS record header + junk, after the handshake and instead of a ClientHello"
            }
            Style::CurlHostnameMismatch => {
                "libcurl >= 8.9 verifying a wrong name: drops after the handshake (Pistache #1309)"
            }
            Style::StalledHandshake => "half a ClientHello, then silence while good clients run",
            Style::RstMidDownload => "RST in the middle of a large download (--download-path)",
            Style::IdleClient => "one exchange, then idle while good clients run, then FIN",
        }
    }

    /// Plays this style against the server on `stage`. An error means the
    /// misbehaviour could not be carried out as intended (for example the
    /// handshake it needed failed), not that the server reacted in some way.
    pub fn play(self, stage: &Stage) -> io::Result<Played> {
        let target = &stage.target;
        match self {
            Style::NoCloseNotify => {
                AbruptClose::FinAfterExchange.perform_tls_to(target, &stage.path)?
            }
            Style::RstMidHandshake => {
                AbruptClose::RstMidHandshake.perform_tls_to(target, &stage.path)?
            }
            Style::RstAfterRequest => {
                let mut client = TlsClient::connect_to(target)?;
                client.write_raw(request(&stage.path, target).as_bytes())?;
                client.reset()?;
                thread::sleep(SETTLE);
            }
            Style::GarbageRecord => {
                // After the handshake: an application-data record whose
                // "ciphertext" is junk; the server's SSL_read must fail.
                let client = TlsClient::connect_to(target)?;
                let mut tcp = client.tcp().try_clone()?;
                tcp.write_all(&garbage_record(0x17, 0x0303))?;
                wait_for_close(&tcp, CLOSE_WAIT);
                drop(client);
                // Instead of a ClientHello: a handshake record of junk.
                let mut tcp = target.connect_tcp()?;
                tcp.write_all(&garbage_record(0x16, 0x0301))?;
                fin_and_wait_for_close(&tcp, CLOSE_WAIT);
            }
            Style::CurlHostnameMismatch => curl_mismatch(stage)?,
            Style::StalledHandshake => {
                let hello = client_hello()?;
                let mut tcp = target.connect_tcp()?;
                tcp.write_all(&hello[..hello.len() / 2])?;
                return Ok(Played::Held(Held::Stalled(tcp)));
            }
            Style::RstMidDownload => rst_mid_download(stage)?,
            Style::IdleClient => {
                let mut client = TlsClient::connect_to(target)?;
                client.request(&stage.path)?;
                return Ok(Played::Held(Held::Idle(client)));
            }
        }
        Ok(Played::Done)
    }
}

/// Where and how the abrupt clients reach the server.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The server, as the abrupt clients connect to it.
    pub target: Target,
    /// The good path.
    pub path: String,
    /// A path answering a large body, if any.
    pub download_path: Option<String>,
    /// The CA libcurl verifies with (`None`: libcurl's default).
    pub curl_ca: Option<PathBuf>,
}

/// How a style's play ended.
#[derive(Debug)]
pub enum Played {
    /// The abrupt client is gone.
    Done,
    /// The abrupt client is still connected; release it after the good
    /// clients had their turn.
    Held(Held),
}

/// A misbehaving connection kept open while the good clients run.
#[derive(Debug)]
pub enum Held {
    /// Half a `ClientHello` sent, nothing more.
    Stalled(TcpStream),
    /// An established, idle TLS connection.
    Idle(TlsClient),
}

impl Held {
    /// Lets the connection go: FIN (without `close_notify` for the idle
    /// TLS client), then waits for the server to close its side.
    pub fn release(self) -> io::Result<()> {
        match self {
            Held::Stalled(tcp) => {
                fin_and_wait_for_close(&tcp, CLOSE_WAIT);
            }
            Held::Idle(client) => {
                let tcp = client.fin_without_close_notify()?;
                wait_for_close(&tcp, CLOSE_WAIT);
            }
        }
        Ok(())
    }
}

/// `GET {path}` with the target's `Host` header.
fn request(path: &str, target: &Target) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n",
        target.host_header
    )
}

/// A TLS record of `content_type` and `version` whose body is junk.
fn garbage_record(content_type: u8, version: u16) -> Vec<u8> {
    let mut record = vec![content_type];
    record.extend_from_slice(&version.to_be_bytes());
    record.extend_from_slice(&(GARBAGE_LEN as u16).to_be_bytes());
    record.extend_from_slice(&random_bytes(GARBAGE_LEN));
    record
}

/// libcurl asks for [`MISMATCHED_NAME`], resolved to the server's address,
/// with verification on: it must refuse the certificate and drop.
fn curl_mismatch(stage: &Stage) -> io::Result<()> {
    let result = CurlRequest::new(stage.target.addr.port(), &stage.path)
        .host(MISMATCHED_NAME)
        .address(stage.target.addr.ip())
        .ca(stage.curl_ca.clone())
        .timeout(stage.target.timeout)
        .perform();
    match result {
        Err(e) if is_certificate_rejection(&e) => {
            thread::sleep(SETTLE);
            Ok(())
        }
        Err(e) => Err(io::Error::other(format!("libcurl: {e}"))),
        Ok(response) => Err(io::Error::other(format!(
            "libcurl accepted the name {MISMATCHED_NAME} (status {})",
            response.status
        ))),
    }
}

/// Asks for the download path (or the good path), reads the first
/// [`DOWNLOAD_CUT`] bytes of the answer (or its first bytes, for the good
/// path), then resets the connection.
fn rst_mid_download(stage: &Stage) -> io::Result<()> {
    let path = stage.download_path.as_deref().unwrap_or(&stage.path);
    let mut client = TlsClient::connect_to(&stage.target)?;
    client.write_raw(request(path, &stage.target).as_bytes())?;
    let want = if stage.download_path.is_some() {
        DOWNLOAD_CUT
    } else {
        1
    };
    let mut got = 0;
    let mut buf = [0u8; 16 * 1024];
    while got < want {
        match client.ssl_stream().read(&mut buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the download ended after {got} bytes"),
                ))
            }
            Ok(n) => {
                got += n;
                // Once the answer is flowing, a short pause per read keeps
                // a smaller-than-expected body from costing a full timeout.
                client
                    .tcp()
                    .set_read_timeout(Some(Duration::from_millis(500)))?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) if got > 0 => break,
            Err(e) => return Err(e),
        }
    }
    client.reset()?;
    thread::sleep(SETTLE);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for style in Style::ALL {
            assert_eq!(Style::from_name(style.name()), Some(style));
            assert!(!style.describe().is_empty());
        }
        assert_eq!(Style::from_name("nope"), None);
    }

    #[test]
    fn garbage_record_has_a_valid_looking_header() {
        let r = garbage_record(0x17, 0x0303);
        assert_eq!(&r[..3], &[0x17, 0x03, 0x03]);
        assert_eq!(usize::from(u16::from_be_bytes([r[3], r[4]])), r.len() - 5);
    }
}
