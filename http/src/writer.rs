//! [`ResponseWriter`]: answers one request, from the worker or any thread.

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode, Version};
use pistachio_transport::PeerHandle;

use crate::response::write_head;

/// A finished response on its way to its connection.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) seq: u64,
    pub(crate) bytes: Vec<u8>,
    pub(crate) keep_alive: bool,
}

/// Messages the HTTP layer posts to a connection.
#[derive(Debug)]
pub(crate) enum HttpMsg {
    /// A response produced on another thread.
    Response(Outgoing),
}

thread_local! {
    /// The connection whose handler is running on this thread right now,
    /// and the responses it produced synchronously: those skip the mailbox.
    static INLINE: RefCell<Option<Inline>> = const { RefCell::new(None) };
}

struct Inline {
    conn_id: u64,
    done: Vec<Outgoing>,
}

/// Marks `conn_id` as the connection running a handler on this thread.
pub(crate) fn enter_inline(conn_id: u64) {
    INLINE.with(|slot| {
        *slot.borrow_mut() = Some(Inline {
            conn_id,
            done: Vec::new(),
        })
    });
}

/// Ends the inline section, returning the responses sent during it.
pub(crate) fn leave_inline() -> Vec<Outgoing> {
    INLINE.with(|slot| slot.borrow_mut().take().map(|i| i.done).unwrap_or_default())
}

/// Where a writer delivers its response.
pub(crate) struct Target {
    pub(crate) peer: PeerHandle<HttpMsg>,
    pub(crate) conn_id: u64,
    pub(crate) seq: u64,
    pub(crate) version: Version,
    pub(crate) keep_alive: bool,
    pub(crate) head_only: bool,
    pub(crate) peer_addr: SocketAddr,
}

/// Answers one request (Pistache's `Http::ResponseWriter`).
///
/// `Send`: a handler may move it to another thread and answer later; the
/// response is handed to the connection's worker and sent in request order
/// (pipelined requests are answered in the order they arrived).
///
/// Dropping a writer without answering sends `500 Internal Server Error`,
/// so a connection never hangs on a forgotten or panicking handler.
pub struct ResponseWriter {
    target: Option<Target>,
    headers: HeaderMap,
}

impl fmt::Debug for ResponseWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseWriter")
            .field("seq", &self.target.as_ref().map(|t| t.seq))
            .field("headers", &self.headers)
            .finish()
    }
}

impl ResponseWriter {
    pub(crate) fn new(target: Target) -> Self {
        ResponseWriter {
            target: Some(target),
            headers: HeaderMap::new(),
        }
    }

    /// The response headers so far. `Content-Length`, `Date`, `Connection`
    /// and `Transfer-Encoding` are managed by the server and ignored here.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sets `Content-Type` (Pistache's `setMime`). An invalid value is ignored.
    pub fn set_mime(&mut self, mime: &str) {
        if let Ok(v) = HeaderValue::from_str(mime) {
            self.headers.insert(CONTENT_TYPE, v);
        }
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.target
            .as_ref()
            .map(|t| t.peer_addr)
            .expect("a writer has a target until it is sent")
    }

    /// Sends the response with `body` (and its `Content-Length`).
    pub fn send(mut self, status: StatusCode, body: impl AsRef<[u8]>) {
        if let Some(target) = self.target.take() {
            deliver(target, status, &self.headers, body.as_ref());
        }
    }
}

impl Drop for ResponseWriter {
    fn drop(&mut self) {
        if let Some(target) = self.target.take() {
            log::debug!(
                "{}: response writer dropped without answering: 500",
                target.peer_addr
            );
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            deliver(
                target,
                StatusCode::INTERNAL_SERVER_ERROR,
                &headers,
                b"Internal Server Error",
            );
        }
    }
}

fn deliver(target: Target, status: StatusCode, headers: &HeaderMap, body: &[u8]) {
    let send_body = !target.head_only && status_allows_body(status);
    let mut bytes = Vec::with_capacity(128 + headers.len() * 32 + body.len());
    write_head(
        &mut bytes,
        target.version,
        status,
        headers,
        body.len(),
        target.keep_alive,
    );
    if send_body {
        bytes.extend_from_slice(body);
    }
    let out = Outgoing {
        seq: target.seq,
        bytes,
        keep_alive: target.keep_alive,
    };
    // Same thread, during this connection's handler: no mailbox round trip.
    let out = INLINE.with(|slot| match slot.borrow_mut().as_mut() {
        Some(inline) if inline.conn_id == target.conn_id => {
            inline.done.push(out);
            None
        }
        _ => Some(out),
    });
    if let Some(out) = out {
        if target.peer.post(HttpMsg::Response(out)).is_err() {
            log::debug!("{}: server stopped before the response", target.peer_addr);
        }
    }
}

/// 1xx, 204 and 304 responses never carry a body (RFC 9110 §6.4.1).
pub(crate) fn status_allows_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}
