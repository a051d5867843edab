//! HTTP/2 frames (RFC 9113 §4, §6): the 9-byte header, the types, flags,
//! error codes and settings, and writers for the frames the server sends.
//! Bytes in, values out: nothing here touches a socket.

/// The client connection preface (RFC 9113 §3.4), before its SETTINGS.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Length of a frame header.
pub(crate) const HEADER_LEN: usize = 9;

/// The smallest `SETTINGS_MAX_FRAME_SIZE`, and every peer's initial one.
pub(crate) const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;

/// The largest `SETTINGS_MAX_FRAME_SIZE` (2^24 - 1).
pub(crate) const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;

/// The initial flow-control window of a connection and of every stream.
pub(crate) const DEFAULT_WINDOW: u32 = 65_535;

/// The largest flow-control window (2^31 - 1).
pub(crate) const MAX_WINDOW: u32 = (1 << 31) - 1;

/// Frame types (RFC 9113 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    GoAway,
    WindowUpdate,
    Continuation,
    /// Types this server does not know are ignored (§4.1), except in the
    /// middle of a header block.
    Unknown(u8),
}

impl Kind {
    pub(crate) fn from_u8(byte: u8) -> Kind {
        match byte {
            0 => Kind::Data,
            1 => Kind::Headers,
            2 => Kind::Priority,
            3 => Kind::RstStream,
            4 => Kind::Settings,
            5 => Kind::PushPromise,
            6 => Kind::Ping,
            7 => Kind::GoAway,
            8 => Kind::WindowUpdate,
            9 => Kind::Continuation,
            other => Kind::Unknown(other),
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Kind::Data => 0,
            Kind::Headers => 1,
            Kind::Priority => 2,
            Kind::RstStream => 3,
            Kind::Settings => 4,
            Kind::PushPromise => 5,
            Kind::Ping => 6,
            Kind::GoAway => 7,
            Kind::WindowUpdate => 8,
            Kind::Continuation => 9,
            Kind::Unknown(other) => other,
        }
    }
}

/// `END_STREAM` (DATA, HEADERS).
pub(crate) const END_STREAM: u8 = 0x1;
/// `ACK` (SETTINGS, PING).
pub(crate) const ACK: u8 = 0x1;
/// `END_HEADERS` (HEADERS, CONTINUATION).
pub(crate) const END_HEADERS: u8 = 0x4;
/// `PADDED` (DATA, HEADERS).
pub(crate) const PADDED: u8 = 0x8;
/// `PRIORITY` (HEADERS).
pub(crate) const PRIORITY: u8 = 0x20;

/// Error codes (RFC 9113 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    NoError,
    Protocol,
    Internal,
    FlowControl,
    SettingsTimeout,
    StreamClosed,
    FrameSize,
    RefusedStream,
    Cancel,
    Compression,
    EnhanceYourCalm,
}

impl Reason {
    pub(crate) fn code(self) -> u32 {
        match self {
            Reason::NoError => 0x0,
            Reason::Protocol => 0x1,
            Reason::Internal => 0x2,
            Reason::FlowControl => 0x3,
            Reason::SettingsTimeout => 0x4,
            Reason::StreamClosed => 0x5,
            Reason::FrameSize => 0x6,
            Reason::RefusedStream => 0x7,
            Reason::Cancel => 0x8,
            Reason::Compression => 0x9,
            Reason::EnhanceYourCalm => 0xb,
        }
    }
}

/// A frame's header (RFC 9113 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) len: u32,
    pub(crate) kind: Kind,
    pub(crate) flags: u8,
    /// The reserved bit is ignored on receipt (§4.1).
    pub(crate) stream: u32,
}

impl Head {
    /// Parses the first [`HEADER_LEN`] bytes of `bytes`, if there are that many.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Head> {
        let b: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: Kind::from_u8(b[3]),
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & MAX_WINDOW,
        })
    }

    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A frame header.
pub(crate) fn head_bytes(len: usize, kind: Kind, flags: u8, stream: u32) -> [u8; HEADER_LEN] {
    debug_assert!(len <= MAX_MAX_FRAME_SIZE as usize);
    let len = (len as u32).to_be_bytes();
    let stream = (stream & MAX_WINDOW).to_be_bytes();
    [
        len[1],
        len[2],
        len[3],
        kind.to_u8(),
        flags,
        stream[0],
        stream[1],
        stream[2],
        stream[3],
    ]
}

/// Appends a frame header.
pub(crate) fn put_head(out: &mut Vec<u8>, len: usize, kind: Kind, flags: u8, stream: u32) {
    out.extend_from_slice(&head_bytes(len, kind, flags, stream));
}

/// Appends a whole frame.
pub(crate) fn put_frame(out: &mut Vec<u8>, kind: Kind, flags: u8, stream: u32, payload: &[u8]) {
    put_head(out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
}

/// Appends `RST_STREAM`.
pub(crate) fn put_rst(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    put_frame(
        out,
        Kind::RstStream,
        0,
        stream,
        &reason.code().to_be_bytes(),
    );
}

/// Appends `GOAWAY` with the last stream id the server processes.
pub(crate) fn put_goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason) {
    let mut payload = [0u8; 8];
    payload[..4].copy_from_slice(&(last_stream & MAX_WINDOW).to_be_bytes());
    payload[4..].copy_from_slice(&reason.code().to_be_bytes());
    put_frame(out, Kind::GoAway, 0, 0, &payload);
}

/// Appends `WINDOW_UPDATE`.
pub(crate) fn put_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    put_frame(
        out,
        Kind::WindowUpdate,
        0,
        stream,
        &(increment & MAX_WINDOW).to_be_bytes(),
    );
}

/// Setting identifiers (RFC 9113 §6.5.2).
pub(crate) mod setting {
    pub(crate) const HEADER_TABLE_SIZE: u16 = 0x1;
    pub(crate) const ENABLE_PUSH: u16 = 0x2;
    pub(crate) const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub(crate) const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub(crate) const MAX_FRAME_SIZE: u16 = 0x5;
    pub(crate) const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// Appends a `SETTINGS` frame with `values`.
pub(crate) fn put_settings(out: &mut Vec<u8>, values: &[(u16, u32)]) {
    put_head(out, values.len() * 6, Kind::Settings, 0, 0);
    for (id, value) in values {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// The (identifier, value) pairs of a `SETTINGS` payload whose length is a
/// multiple of 6.
pub(crate) fn settings(payload: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    payload.chunks_exact(6).map(|c| {
        (
            u16::from_be_bytes([c[0], c[1]]),
            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
        )
    })
}

/// A 31-bit big-endian value (stream ids, window increments), reserved bit
/// cleared.
pub(crate) fn u31(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & MAX_WINDOW
}

/// Removes the padding of a `PADDED` frame's payload (§6.1, §6.2):
/// `None` if the pad length is not smaller than the payload.
pub(crate) fn unpad(payload: &[u8]) -> Option<&[u8]> {
    let (&pad, rest) = payload.split_first()?;
    let keep = rest.len().checked_sub(pad as usize)?;
    Some(&rest[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut out = Vec::new();
        put_head(&mut out, 0x12_3456, Kind::Headers, END_HEADERS, 0x7fff_ffff);
        let head = Head::parse(&out).unwrap();
        assert_eq!(head.len, 0x12_3456);
        assert_eq!(head.kind, Kind::Headers);
        assert!(head.has(END_HEADERS));
        assert_eq!(head.stream, 0x7fff_ffff);
        assert_eq!(Head::parse(&out[..8]), None);
    }

    #[test]
    fn reserved_bit_is_ignored() {
        let bytes = [0, 0, 0, 0, 0, 0x80, 0, 0, 3];
        assert_eq!(Head::parse(&bytes).unwrap().stream, 3);
    }

    #[test]
    fn padding() {
        assert_eq!(unpad(&[2, b'a', b'b', 0, 0]), Some(&b"ab"[..]));
        assert_eq!(unpad(&[0]), Some(&b""[..]));
        assert_eq!(unpad(&[1]), None);
        assert_eq!(unpad(&[3, 0, 0]), None);
        assert_eq!(unpad(&[]), None);
    }

    #[test]
    fn settings_payload() {
        let mut out = Vec::new();
        put_settings(&mut out, &[(setting::MAX_FRAME_SIZE, 16_384), (9, 1)]);
        let head = Head::parse(&out).unwrap();
        assert_eq!(head.len, 12);
        let got: Vec<_> = settings(&out[HEADER_LEN..]).collect();
        assert_eq!(got, [(setting::MAX_FRAME_SIZE, 16_384), (9, 1)]);
    }
}
