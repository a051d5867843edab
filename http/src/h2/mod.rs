//! HTTP/2 (RFC 9113) on the reactor's worker threads: the same handlers,
//! writers and middleware as HTTP/1.1, a different framing.
//!
//! * [`frame`]: the frame codec (bytes in, values out).
//! * [`hpack`]: header compression (its own decoder, `loona-hpack`'s encoder), with the
//!   header-list limit applied while decoding.
//! * [`request`] / [`response`]: a header list to a request head, and a
//!   writer's response head to a header list.
//! * [`conn`]: one connection's state machine, its streams and both levels
//!   of flow control, as a transport protocol (see `docs/http2.md`).

pub(crate) mod conn;
pub(crate) mod frame;
pub(crate) mod hpack;
mod huffman;
pub(crate) mod request;
pub(crate) mod response;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Limits of the HTTP/2 side of an [`Endpoint`](crate::Endpoint)
/// ([`Options::http2_limits`](crate::Options::http2_limits)). The defaults
/// are safe for a public server; each guards against one known abuse
/// (see `docs/http2.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Http2Limits {
    pub(crate) max_concurrent_streams: u32,
    pub(crate) initial_window_size: u32,
    pub(crate) connection_window_size: u32,
    pub(crate) max_frame_size: u32,
    pub(crate) max_header_list_size: Option<u32>,
    pub(crate) max_control_frames_per_second: u32,
    pub(crate) max_resets_per_second: u32,
    pub(crate) settings_timeout: Duration,
    pub(crate) stall_timeout: Duration,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Http2Limits {
            max_concurrent_streams: 100,
            initial_window_size: 256 * 1024,
            connection_window_size: 1024 * 1024,
            max_frame_size: frame::DEFAULT_MAX_FRAME_SIZE,
            max_header_list_size: None,
            max_control_frames_per_second: 1000,
            max_resets_per_second: 200,
            settings_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(60),
        }
    }
}

impl Http2Limits {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` (default 100): streams beyond it
    /// are refused with `REFUSED_STREAM`. A stream the client reset counts
    /// until its handler has answered, so resetting streams does not let
    /// a client run more handlers at once (CVE-2023-44487).
    pub fn max_concurrent_streams(mut self, n: u32) -> Self {
        self.max_concurrent_streams = n;
        self
    }

    /// `SETTINGS_INITIAL_WINDOW_SIZE` (default 256 KiB): how much of a
    /// request body the client may send on one stream before the server
    /// has passed it on.
    pub fn initial_window_size(mut self, bytes: u32) -> Self {
        self.initial_window_size = bytes.min(frame::MAX_WINDOW);
        self
    }

    /// The connection's receive window (default 1 MiB): request body bytes
    /// in flight on all streams together.
    pub fn connection_window_size(mut self, bytes: u32) -> Self {
        self.connection_window_size = bytes.clamp(frame::DEFAULT_WINDOW, frame::MAX_WINDOW);
        self
    }

    /// `SETTINGS_MAX_FRAME_SIZE` the server accepts (default and minimum
    /// 16 KiB, at most 16 MiB - 1).
    pub fn max_frame_size(mut self, bytes: u32) -> Self {
        self.max_frame_size = bytes.clamp(frame::DEFAULT_MAX_FRAME_SIZE, frame::MAX_MAX_FRAME_SIZE);
        self
    }

    /// `SETTINGS_MAX_HEADER_LIST_SIZE` (default: the endpoint's
    /// [`max_header_size`](crate::Options::max_header_size), 16 KiB).
    /// A larger list is answered with `431`; a header block larger than
    /// twice this on the wire (a CONTINUATION flood) ends the connection
    /// with `ENHANCE_YOUR_CALM`.
    pub fn max_header_list_size(mut self, bytes: u32) -> Self {
        self.max_header_list_size = Some(bytes);
        self
    }

    /// Frames that cost the server work without carrying a request
    /// forward (SETTINGS, PING, PRIORITY, empty DATA and CONTINUATION,
    /// WINDOW_UPDATE with nothing to send) a connection may send per
    /// second (default 1000); beyond, `GOAWAY` `ENHANCE_YOUR_CALM`.
    pub fn max_control_frames_per_second(mut self, n: u32) -> Self {
        self.max_control_frames_per_second = n.max(1);
        self
    }

    /// Streams a connection may reset per second (default 200); beyond,
    /// `GOAWAY` `ENHANCE_YOUR_CALM` (rapid reset, CVE-2023-44487).
    pub fn max_resets_per_second(mut self, n: u32) -> Self {
        self.max_resets_per_second = n.max(1);
        self
    }

    /// How long the client has to acknowledge the server's SETTINGS
    /// (default 10 s); then `GOAWAY` `SETTINGS_TIMEOUT`.
    pub fn settings_timeout(mut self, d: Duration) -> Self {
        self.settings_timeout = d;
        self
    }

    /// How long responses may wait for the client to open its flow-control
    /// window (default 60 s): a client that stops reading (a zero window)
    /// holds server memory, so its connection ends then.
    pub fn stall_timeout(mut self, d: Duration) -> Self {
        self.stall_timeout = d;
        self
    }
}

/// Counters of an endpoint's HTTP/2 connections since it started
/// ([`Endpoint::http2_stats`](crate::Endpoint::http2_stats), or
/// [`Http2Counters::snapshot`] at any time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Http2Stats {
    /// HTTP/2 connections started (ALPN `h2`, or the h2c preface).
    pub connections: u64,
    /// Streams that carried a request to a handler.
    pub streams: u64,
    /// Streams refused beyond `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub streams_refused: u64,
    /// Streams the clients reset (RST_STREAM).
    pub resets_received: u64,
    /// Connections ended for a protocol error of the client.
    pub protocol_errors: u64,
    /// Connections ended for abuse (`ENHANCE_YOUR_CALM`: floods, rapid
    /// reset, oversized header blocks).
    pub abuse_closes: u64,
    /// Connections ended because the client stopped reading (zero window
    /// past the stall timeout) or never acknowledged the SETTINGS.
    pub timeouts: u64,
}

/// The endpoint-wide HTTP/2 configuration and counters, shared by its
/// connections.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) limits: Http2Limits,
    pub(crate) counters: Arc<Counters>,
}

/// A live view of an endpoint's HTTP/2 counters, for a metrics registry
/// to read at each scrape ([`Endpoint::http2_counters`]; available from
/// [`Endpoint::bind`] on, like
/// [`Endpoint::transport_stats`](crate::Endpoint::transport_stats)).
///
/// [`Endpoint::http2_counters`]: crate::Endpoint::http2_counters
/// [`Endpoint::bind`]: crate::Endpoint::bind
#[derive(Debug, Clone, Default)]
pub struct Http2Counters(pub(crate) Arc<Counters>);

impl Http2Counters {
    /// The counters now.
    pub fn snapshot(&self) -> Http2Stats {
        self.0.snapshot()
    }
}

/// [`Http2Stats`], as atomics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) streams: AtomicU64,
    pub(crate) streams_refused: AtomicU64,
    pub(crate) resets_received: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) abuse_closes: AtomicU64,
    pub(crate) timeouts: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Http2Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Http2Stats {
            connections: get(&self.connections),
            streams: get(&self.streams),
            streams_refused: get(&self.streams_refused),
            resets_received: get(&self.resets_received),
            protocol_errors: get(&self.protocol_errors),
            abuse_closes: get(&self.abuse_closes),
            timeouts: get(&self.timeouts),
        }
    }
}
