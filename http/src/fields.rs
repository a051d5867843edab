//! A request's header fields, turned into an [`http::HeaderMap`] only when
//! something asks for the map.
//!
//! Parsing an HTTP/1.x head keeps where each field's name and value are in
//! the head's shared copy (see [`pool::share_head`]): a table of offsets
//! written right after the head in the same arena block, then where the
//! table starts, so it costs no allocation and no field of its own (a
//! request's head stays within 128 bytes). The fields the parser itself
//! interprets are read from that table (`Content-Length`,
//! `Transfer-Encoding`, `Connection`, `Expect`;
//! `Host` is kept while the fields are first counted). A handler that
//! never looks at the headers (most of a plain REST service's) never pays
//! for the map; the first call to
//! [`Request::headers`](crate::Request::headers) builds it, with values
//! that are slices of the same copy.

use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use crate::pool;

/// Bytes per field in the table: offset and length of the name, then of
/// the value, each a native-endian `u32`.
pub(crate) const ENTRY: usize = 16;

/// Bytes of the table's start, after the table.
pub(crate) const TABLE_START: usize = 4;

/// One field's table entry: `[name offset, name length, value offset,
/// value length]` (read back by [`HeaderFields::raw_fields`]).
///
/// After the last entry comes where the table starts (the head's length),
/// a native-endian `u32` too: [`TABLE_START`] bytes.
#[inline]
pub(crate) fn entry(words: [u32; 4]) -> [u8; ENTRY] {
    let mut entry = [0u8; ENTRY];
    for (bytes, word) in entry.chunks_exact_mut(4).zip(words) {
        bytes.copy_from_slice(&word.to_ne_bytes());
    }
    entry
}

/// The header fields of one request.
#[derive(Clone, Default)]
pub(crate) struct HeaderFields {
    /// The map, once built (or given: HTTP/2 heads, tests). When present it
    /// is the truth (middleware may have changed it).
    map: OnceLock<Box<HeaderMap>>,
    /// The head's shared copy followed by its field table and where that
    /// starts (empty for a map given whole).
    raw: Bytes,
}

impl HeaderFields {
    /// Fields given as a map (see [`pool::header_map`]).
    pub(crate) fn from_map(map: Box<HeaderMap>) -> HeaderFields {
        HeaderFields {
            map: OnceLock::from(map),
            raw: Bytes::new(),
        }
    }

    /// Fields described by the table at the end of `raw` (see
    /// [`pool::share_head`]).
    pub(crate) fn from_table(raw: Bytes) -> HeaderFields {
        let fields = HeaderFields {
            map: OnceLock::new(),
            raw,
        };
        debug_assert_eq!(fields.table().len() % ENTRY, 0);
        fields
    }

    /// The head's shared copy followed by its field table and where that
    /// starts (empty for a map given whole).
    pub(crate) fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The fields as a map, built on the first call.
    pub(crate) fn map(&self) -> &HeaderMap {
        self.map.get_or_init(|| self.build())
    }

    /// The fields as a map, mutably.
    pub(crate) fn map_mut(&mut self) -> &mut HeaderMap {
        self.map();
        self.map.get_mut().expect("built just above")
    }

    /// Whether the map was built (or given).
    #[cfg(test)]
    pub(crate) fn is_built(&self) -> bool {
        self.map.get().is_some()
    }

    /// The map, if it was built: for the worker's pool once the request is
    /// done.
    pub(crate) fn take_map(&mut self) -> Option<Box<HeaderMap>> {
        self.map.take()
    }

    /// The values of the fields named `name`, in order, as bytes.
    pub(crate) fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> {
        let (built, table) = match self.map.get() {
            Some(map) => (
                Some(map.get_all(name).iter().map(HeaderValue::as_bytes)),
                None,
            ),
            None => {
                let wanted = name.as_str().as_bytes();
                let fields = self.raw_fields();
                (
                    None,
                    Some(
                        fields
                            .filter_map(move |(n, v)| n.eq_ignore_ascii_case(wanted).then_some(v)),
                    ),
                )
            }
        };
        built
            .into_iter()
            .flatten()
            .chain(table.into_iter().flatten())
    }

    /// The first value of the field `name`, as a header value sharing the
    /// head's bytes (no map is built for it).
    pub(crate) fn first(&self, name: &HeaderName) -> Option<HeaderValue> {
        match self.map.get() {
            Some(map) => map.get(name).cloned(),
            None => {
                let value = self.values(name).next()?;
                HeaderValue::from_maybe_shared(self.raw.slice_ref(value)).ok()
            }
        }
    }

    /// The table's entries (none without a table).
    fn table(&self) -> &[u8] {
        match self.raw.split_last_chunk::<TABLE_START>() {
            Some((rest, start)) => &rest[u32::from_ne_bytes(*start) as usize..],
            None => &[],
        }
    }

    /// (name, value) of every field in the table, in order.
    fn raw_fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let raw = &self.raw[..];
        self.table().chunks_exact(ENTRY).map(move |entry| {
            let at = |i: usize| {
                let mut word = [0u8; 4];
                word.copy_from_slice(&entry[i * 4..i * 4 + 4]);
                u32::from_ne_bytes(word) as usize
            };
            let (name, name_len, value, value_len) = (at(0), at(1), at(2), at(3));
            (&raw[name..name + name_len], &raw[value..value + value_len])
        })
    }

    fn build(&self) -> Box<HeaderMap> {
        let count = self.table().len() / ENTRY;
        let mut map = pool::header_map(count);
        for (name, value) in self.raw_fields() {
            // httparse checked both (a token of at most 64 KiB - 1 bytes,
            // checked by the parser; no control characters but HTAB): neither
            // conversion can fail. Should the two ever disagree, release
            // builds leave the field out; debug builds (tests, fuzzing) stop.
            match (
                HeaderName::from_bytes(name),
                HeaderValue::from_maybe_shared(self.raw.slice_ref(value)),
            ) {
                (Ok(name), Ok(value)) => {
                    map.append(name, value);
                }
                _ if cfg!(debug_assertions) => {
                    panic!("a header field the parser accepted is invalid: {name:?}")
                }
                _ => {}
            }
        }
        map
    }
}

impl fmt::Debug for HeaderFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.map(), f)
    }
}
