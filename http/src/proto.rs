//! Which HTTP a connection speaks: chosen once, at its start, then every
//! transport callback goes to that protocol's connection.
//!
//! * TLS: by ALPN (`h2` → HTTP/2; `http/1.1`, `http/1.0` or none →
//!   HTTP/1.x), known when the handshake is done.
//! * Plaintext: HTTP/2 with prior knowledge (h2c) when the first bytes
//!   are the 24-byte HTTP/2 preface, HTTP/1.x otherwise. An HTTP/1.x
//!   request differs from the preface in its first byte or first few
//!   (`PRI ` is not a method anyone serves), so it is passed on at once.

use std::net::SocketAddr;
use std::sync::Arc;

use pistachio_transport::{CloseReason, Conn, Protocol};

use crate::conn::{HttpConn, Settings};
use crate::h2::conn::H2Conn;
use crate::h2::frame::PREFACE;
use crate::h2::Shared as H2Shared;
use crate::writer::HttpMsg;
use crate::Handler;

/// One connection of an endpoint.
// HTTP/1.1, the common case, stays inline (no allocation per connection).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Proto {
    /// Plaintext with HTTP/2 on: the first bytes decide.
    Undecided(Box<Undecided>),
    Http1(HttpConn),
    Http2(Box<H2Conn>),
}

/// What it takes to start either protocol, and the first bytes so far.
pub(crate) struct Undecided {
    handler: Arc<dyn Handler>,
    settings: Arc<Settings>,
    h2: Arc<H2Shared>,
    peer_addr: SocketAddr,
    first: Vec<u8>,
}

impl Proto {
    /// `h2`: the endpoint's HTTP/2 side, or `None` when it serves
    /// HTTP/1.x only.
    pub(crate) fn new(
        handler: Arc<dyn Handler>,
        settings: Arc<Settings>,
        h2: Option<Arc<H2Shared>>,
        peer_addr: SocketAddr,
    ) -> Proto {
        // Made on the connection's worker, which parses its requests.
        crate::pool::keep_header_maps();
        match h2 {
            None => Proto::Http1(HttpConn::new(handler, settings, peer_addr)),
            Some(h2) => Proto::Undecided(Box::new(Undecided {
                handler,
                settings,
                h2,
                peer_addr,
                first: Vec::new(),
            })),
        }
    }

    /// Becomes HTTP/2 or HTTP/1.x and announces the connection to it.
    fn decide(&mut self, conn: &mut Conn<'_, HttpMsg>, http2: bool) -> Vec<u8> {
        let Proto::Undecided(u) = self else {
            return Vec::new();
        };
        let first = std::mem::take(&mut u.first);
        let handler = Arc::clone(&u.handler);
        let settings = Arc::clone(&u.settings);
        *self = if http2 {
            let h2 = Arc::clone(&u.h2);
            Proto::Http2(Box::new(H2Conn::new(handler, settings, h2, u.peer_addr)))
        } else {
            Proto::Http1(HttpConn::new(handler, settings, u.peer_addr))
        };
        match self {
            Proto::Http1(c) => c.on_connect(conn),
            Proto::Http2(c) => c.on_connect(conn),
            Proto::Undecided(_) => {}
        }
        first
    }

    /// [`Protocol::on_input`] for any connection, out of line: the trait
    /// method hands an HTTP/1.x connection's input over inline and comes
    /// here for HTTP/2 and a connection whose protocol is not decided yet.
    #[inline(never)]
    fn on_other_input(&mut self, conn: &mut Conn<'_, HttpMsg>, data: &[u8]) {
        match self {
            Proto::Http1(c) => c.on_input(conn, data),
            Proto::Http2(c) => c.on_input(conn, data),
            Proto::Undecided(u) => {
                if u.first.is_empty() {
                    // Usually the first read decides: pass it on as is.
                    let n = data.len().min(PREFACE.len());
                    let preface = data[..n] == PREFACE[..n];
                    if !preface || data.len() >= PREFACE.len() {
                        self.decide(conn, preface);
                        if !conn.is_closing() {
                            self.on_input(conn, data);
                        }
                        return;
                    }
                }
                u.first.extend_from_slice(data);
                let n = u.first.len().min(PREFACE.len());
                let preface = u.first[..n] == PREFACE[..n];
                if preface && u.first.len() < PREFACE.len() {
                    return;
                }
                let first = self.decide(conn, preface);
                if !conn.is_closing() {
                    self.on_input(conn, &first);
                }
            }
        }
    }
}

impl Protocol for Proto {
    type Message = HttpMsg;

    fn on_connect(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        match self {
            Proto::Http1(c) => c.on_connect(conn),
            Proto::Http2(c) => c.on_connect(conn),
            Proto::Undecided(u) => match conn.tls() {
                Some(tls) => {
                    let _ = self.decide(conn, tls.alpn == Some("h2"));
                }
                None => {
                    // A client that says nothing gets the HTTP/1.1 request
                    // timeout once it is known to be one (see on_timeout).
                    conn.set_timeout(u.settings.header_timeout);
                }
            },
        }
    }

    #[inline]
    fn on_input(&mut self, conn: &mut Conn<'_, HttpMsg>, data: &[u8]) {
        match self {
            Proto::Http1(c) => c.on_input(conn, data),
            _ => self.on_other_input(conn, data),
        }
    }

    fn on_eof(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        match self {
            Proto::Http1(c) => c.on_eof(conn),
            Proto::Http2(c) => c.on_eof(conn),
            Proto::Undecided(_) => conn.close(),
        }
    }

    fn on_message(&mut self, conn: &mut Conn<'_, HttpMsg>, msg: HttpMsg) {
        match self {
            Proto::Http1(c) => c.on_message(conn, msg),
            Proto::Http2(c) => c.on_message(conn, msg),
            Proto::Undecided(_) => {}
        }
    }

    fn on_drained(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        match self {
            Proto::Http1(c) => c.on_drained(conn),
            Proto::Http2(c) => c.on_drained(conn),
            Proto::Undecided(_) => {}
        }
    }

    fn on_sent(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        match self {
            Proto::Http1(c) => c.on_sent(conn),
            Proto::Http2(c) => c.on_sent(conn),
            Proto::Undecided(_) => {}
        }
    }

    fn on_drain(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        match self {
            Proto::Http1(c) => c.on_drain(conn),
            Proto::Http2(c) => c.on_drain(conn),
            Proto::Undecided(_) => conn.close(),
        }
    }

    fn on_timeout(&mut self, conn: &mut Conn<'_, HttpMsg>) {
        match self {
            Proto::Http1(c) => c.on_timeout(conn),
            Proto::Http2(c) => c.on_timeout(conn),
            Proto::Undecided(_) => {
                // Silent (or a partial preface): answered as HTTP/1.1
                // answers a client that does not finish its request.
                let first = self.decide(conn, false);
                if let Proto::Http1(c) = self {
                    if !first.is_empty() {
                        c.on_input(conn, &first);
                    }
                    if !conn.is_closing() {
                        c.on_timeout(conn);
                    }
                }
            }
        }
    }

    fn on_close(&mut self, reason: &CloseReason) {
        match self {
            Proto::Http1(c) => c.on_close(reason),
            Proto::Http2(c) => c.on_close(reason),
            Proto::Undecided(_) => {}
        }
    }
}
