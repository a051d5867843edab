//! Ways a client can leave a connection without a clean TLS shutdown.
//!
//! Each [`AbruptClose`] kind opens its own connection, misbehaves on it, and
//! then waits until the server has dealt with it where that can be observed:
//! after a FIN the client reads until the server closes its side (bounded by
//! [`CLOSE_WAIT`]); after an RST nothing comes back, so it sleeps [`SETTLE`].
//! Either way the next request a test makes is on another connection, so the
//! wait only makes it likely that the server has already processed the close
//! (and, for a server with a stale OpenSSL error queue, has already left the
//! error on its worker thread).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::client::{
    connect_tcp, fin_and_wait_for_close, reset, tls_connector, wait_for_close, PlainClient, Target,
    TlsClient,
};
use crate::IO_TIMEOUT;

/// How long a FIN-type close waits for the server to close its side.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How long an RST-type close sleeps so the server can notice the reset.
pub const SETTLE: Duration = Duration::from_millis(30);

/// The first half of a request line; never completed.
const PARTIAL_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHo";

/// A plaintext HTTP request, sent to a TLS port.
const PLAINTEXT_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// A way of closing a connection abruptly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbruptClose {
    /// One full request/response exchange, then FIN without `close_notify`
    /// (what libcurl with quiet shutdown does; Pistache issue #1309).
    FinAfterExchange,
    /// TLS handshake completed, then FIN without `close_notify` and no request.
    FinAfterHandshake,
    /// The first half of a real `ClientHello` record, then FIN.
    HalfClientHelloThenFin,
    /// Half a request (after the handshake, for TLS), then FIN.
    FinMidRequest,
    /// A full `ClientHello`, the first bytes of the server's reply read, then RST.
    RstMidHandshake,
    /// Half a request (after the handshake, for TLS), then RST.
    RstMidRequest,
    /// One full request/response exchange, then RST.
    RstAfterResponse,
    /// Pseudo-random bytes instead of a protocol, then FIN.
    RandomBytes,
    /// A plaintext HTTP request sent to a TLS port, then FIN.
    PlaintextToTls,
}

impl AbruptClose {
    /// Every kind.
    pub const ALL: [AbruptClose; 9] = [
        AbruptClose::FinAfterExchange,
        AbruptClose::FinAfterHandshake,
        AbruptClose::HalfClientHelloThenFin,
        AbruptClose::FinMidRequest,
        AbruptClose::RstMidHandshake,
        AbruptClose::RstMidRequest,
        AbruptClose::RstAfterResponse,
        AbruptClose::RandomBytes,
        AbruptClose::PlaintextToTls,
    ];

    /// Whether this kind means anything on a plain HTTP (non-TLS) server.
    pub fn applies_to_plain(self) -> bool {
        matches!(
            self,
            AbruptClose::FinAfterExchange
                | AbruptClose::FinMidRequest
                | AbruptClose::RstMidRequest
                | AbruptClose::RstAfterResponse
                | AbruptClose::RandomBytes
        )
    }

    /// Opens a connection to `127.0.0.1:port` (speaking TLS if `tls`), closes
    /// it abruptly in this way, and waits as described in the module docs.
    ///
    /// An error means the misbehaviour itself could not be carried out (for
    /// example the handshake or the one good exchange failed), not that the
    /// server reacted in some way.
    pub fn perform(self, port: u16, tls: bool) -> io::Result<()> {
        if tls {
            self.perform_tls(port)
        } else {
            self.perform_plain(port)
        }
    }

    fn perform_tls(self, port: u16) -> io::Result<()> {
        self.perform_tls_to(&Target::loopback(port)?, "/")
    }

    /// Plays this kind against the TLS server `target` (any address, trust
    /// and server name), using `GET {path}` where a kind makes a request, and
    /// waits as described in the module docs.
    ///
    /// An error means the misbehaviour itself could not be carried out.
    pub fn perform_tls_to(self, target: &Target, path: &str) -> io::Result<()> {
        match self {
            AbruptClose::FinAfterExchange => {
                let mut client = TlsClient::connect_to(target)?;
                client.request(path)?;
                let tcp = client.fin_without_close_notify()?;
                wait_for_close(&tcp, CLOSE_WAIT);
            }
            AbruptClose::FinAfterHandshake => {
                let tcp = TlsClient::connect_to(target)?.fin_without_close_notify()?;
                wait_for_close(&tcp, CLOSE_WAIT);
            }
            AbruptClose::HalfClientHelloThenFin => {
                let hello = client_hello()?;
                let mut tcp = target.connect_tcp()?;
                tcp.write_all(&hello[..hello.len() / 2])?;
                fin_and_wait_for_close(&tcp, CLOSE_WAIT);
            }
            AbruptClose::FinMidRequest => {
                let mut client = TlsClient::connect_to(target)?;
                client.write_raw(PARTIAL_REQUEST)?;
                let tcp = client.fin_without_close_notify()?;
                wait_for_close(&tcp, CLOSE_WAIT);
            }
            AbruptClose::RstMidHandshake => {
                let hello = client_hello()?;
                let mut tcp = target.connect_tcp()?;
                tcp.write_all(hello)?;
                // Wait for the start of the server's flight: the server is now
                // in the middle of the handshake, waiting for our Finished.
                let mut first = [0u8; 1];
                tcp.read_exact(&mut first)?;
                reset(tcp)?;
                thread::sleep(SETTLE);
            }
            AbruptClose::RstMidRequest => {
                let mut client = TlsClient::connect_to(target)?;
                client.write_raw(PARTIAL_REQUEST)?;
                client.reset()?;
                thread::sleep(SETTLE);
            }
            AbruptClose::RstAfterResponse => {
                let mut client = TlsClient::connect_to(target)?;
                client.request(path)?;
                client.reset()?;
                thread::sleep(SETTLE);
            }
            AbruptClose::RandomBytes => {
                let mut tcp = target.connect_tcp()?;
                tcp.write_all(&random_bytes(512))?;
                fin_and_wait_for_close(&tcp, CLOSE_WAIT);
            }
            AbruptClose::PlaintextToTls => {
                let mut tcp = target.connect_tcp()?;
                tcp.write_all(PLAINTEXT_REQUEST)?;
                fin_and_wait_for_close(&tcp, CLOSE_WAIT);
            }
        }
        Ok(())
    }

    fn perform_plain(self, port: u16) -> io::Result<()> {
        match self {
            AbruptClose::FinAfterExchange => {
                let mut client = PlainClient::connect(port)?;
                client.request("/")?;
                fin_and_wait_for_close(client.tcp(), CLOSE_WAIT);
            }
            AbruptClose::FinMidRequest => {
                let mut client = PlainClient::connect(port)?;
                client.write_raw(PARTIAL_REQUEST)?;
                fin_and_wait_for_close(client.tcp(), CLOSE_WAIT);
            }
            AbruptClose::RstMidRequest => {
                let mut client = PlainClient::connect(port)?;
                client.write_raw(PARTIAL_REQUEST)?;
                client.reset()?;
                thread::sleep(SETTLE);
            }
            AbruptClose::RstAfterResponse => {
                let mut client = PlainClient::connect(port)?;
                client.request("/")?;
                client.reset()?;
                thread::sleep(SETTLE);
            }
            AbruptClose::RandomBytes => {
                let mut tcp = connect_tcp(port)?;
                tcp.write_all(&random_bytes(512))?;
                fin_and_wait_for_close(&tcp, CLOSE_WAIT);
            }
            AbruptClose::FinAfterHandshake
            | AbruptClose::HalfClientHelloThenFin
            | AbruptClose::RstMidHandshake
            | AbruptClose::PlaintextToTls => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{self:?} needs a TLS server"),
                ))
            }
        }
        Ok(())
    }
}

/// A real TLS `ClientHello` record (header included) as this process's
/// OpenSSL client sends it to `localhost`: captured once by letting a client
/// connect to a throwaway loopback listener.
pub fn client_hello() -> io::Result<&'static [u8]> {
    static HELLO: OnceLock<Vec<u8>> = OnceLock::new();
    if let Some(hello) = HELLO.get() {
        return Ok(hello);
    }
    let captured = capture_client_hello()?;
    Ok(HELLO.get_or_init(|| captured))
}

fn capture_client_hello() -> io::Result<Vec<u8>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let client = thread::spawn(move || -> io::Result<()> {
        let connector = tls_connector()?;
        let tcp = connect_tcp(port)?;
        // The handshake fails when the listener hangs up: that is the point.
        let _ = connector.connect("localhost", tcp);
        Ok(())
    });
    let (mut tcp, _) = listener.accept()?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut record = vec![0u8; 5];
    tcp.read_exact(&mut record)?;
    if record[0] != 0x16 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "captured record has content type {:#04x}, not handshake",
                record[0]
            ),
        ));
    }
    let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
    record.resize(5 + len, 0);
    tcp.read_exact(&mut record[5..])?;
    let _ = tcp.shutdown(Shutdown::Both);
    drop(tcp);
    client
        .join()
        .map_err(|_| io::Error::other("ClientHello capture client panicked"))??;
    Ok(record)
}

/// `len` pseudo-random bytes (xorshift, seeded from the clock and a counter).
pub fn random_bytes(len: usize) -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut state = (nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15))
        | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_client_hello_is_a_handshake_record() {
        let hello = client_hello().unwrap();
        assert_eq!(hello[0], 0x16);
        assert_eq!(hello[5], 0x01, "handshake type ClientHello");
        let len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
        assert_eq!(hello.len(), 5 + len);
    }

    #[test]
    fn random_bytes_differ() {
        assert_eq!(random_bytes(100).len(), 100);
        assert_ne!(random_bytes(64), random_bytes(64));
    }
}
