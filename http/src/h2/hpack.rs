//! Header compression (HPACK, RFC 7541), with the limits the server needs
//! around it: a header list is measured as it is decoded (RFC 9113 §6.5.2
//! sizes, 32 bytes of overhead per field) and not kept past the limit, so a
//! small block that expands through the dynamic table (an "HPACK bomb")
//! costs only its decoding time.
//!
//! The decoder is this module's own: the `loona-hpack` decoder rebuilt a
//! 257-entry hash map for every Huffman-coded string and decoded bit by bit
//! through hash lookups (about 23 µs of setup per string), which made
//! header decoding the most expensive part of an HTTP/2 request and gave a
//! client a cheap way to keep a worker busy. The encoder is still
//! `loona-hpack`'s (it writes literals without Huffman coding, which costs
//! nothing to decode), with the static table's fields looked up here by
//! name rather than by its linear search.

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use loona_hpack::encoder::encode_integer_into;

use super::huffman;

/// The dynamic table size the server's decoder allows (the default of
/// `SETTINGS_HEADER_TABLE_SIZE`, which the server never changes).
pub(crate) const DECODER_TABLE_SIZE: usize = 4096;

/// The encoder's own dynamic table size, at most what the client allows.
const ENCODER_TABLE_SIZE: usize = 4096;

/// Per-entry overhead in the dynamic table's size (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// RFC 7541 Appendix A: the static table (index 1 is the first entry).
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// A decoded header list: the names and values one after another in one
/// buffer. Its two vectors are kept for the thread's next list when it is
/// dropped, so decoding a request allocates nothing once a worker has
/// decoded one.
#[derive(Debug)]
pub(crate) struct Fields {
    bytes: Vec<u8>,
    /// Per field, where its name ends and where its value ends in `bytes`.
    ends: Vec<(usize, usize)>,
}

/// Larger buffers are not kept for the next list.
const SPARE_LIMIT: usize = 16 * 1024;

/// The two vectors of a [`Fields`].
type Buffers = (Vec<u8>, Vec<(usize, usize)>);

std::thread_local! {
    static SPARE: std::cell::Cell<Option<Buffers>> = const { std::cell::Cell::new(None) };
}

impl Fields {
    pub(crate) fn new() -> Fields {
        let (bytes, ends) = SPARE.with(std::cell::Cell::take).unwrap_or_default();
        Fields { bytes, ends }
    }

    pub(crate) fn push(&mut self, name: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(name);
        let name_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.ends.push((name_end, self.bytes.len()));
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The fields, in order: (name, value).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, value_end)| {
            let field = (
                &self.bytes[start..name_end],
                &self.bytes[name_end..value_end],
            );
            start = value_end;
            field
        })
    }
}

impl Drop for Fields {
    fn drop(&mut self) {
        if self.bytes.capacity() <= SPARE_LIMIT && self.ends.capacity() <= SPARE_LIMIT / 16 {
            let mut bytes = std::mem::take(&mut self.bytes);
            let mut ends = std::mem::take(&mut self.ends);
            bytes.clear();
            ends.clear();
            // Thread-locals are gone while the thread exits; then the
            // buffers are simply freed.
            let _ = SPARE.try_with(|spare| spare.set(Some((bytes, ends))));
        }
    }
}

#[cfg(test)]
impl<N: AsRef<[u8]>, V: AsRef<[u8]>> FromIterator<(N, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Fields {
        let mut fields = Fields::new();
        for (name, value) in iter {
            fields.push(name.as_ref(), value.as_ref());
        }
        fields
    }
}

/// What decoding a header block gave.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// The fields, in order.
    Fields(Fields),
    /// The list exceeds the size or count limit: the fields were decoded
    /// (the dynamic table stays in step) and dropped.
    TooLarge,
}

/// The block is not valid HPACK: a connection error (`COMPRESSION_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompressionError;

/// Decodes the header blocks of one connection, in order (RFC 7541 §3).
#[derive(Debug)]
pub(crate) struct Decoder {
    /// The dynamic table, newest entry first.
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// The table's size (RFC 7541 §4.1).
    size: usize,
    /// The table's maximum size, as the last size update set it.
    max_size: usize,
    /// The most a size update may set (`SETTINGS_HEADER_TABLE_SIZE`).
    allowed: usize,
}

/// Reads HPACK primitives from a block.
struct Reader<'a> {
    block: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    /// An integer with an `prefix`-bit prefix (RFC 7541 §5.1), at most
    /// 2^28: nothing the server accepts is larger.
    fn integer(&mut self, prefix: u32) -> Result<usize, CompressionError> {
        let mask = (1usize << prefix) - 1;
        let first = *self.block.get(self.pos).ok_or(CompressionError)?;
        self.pos += 1;
        let mut value = usize::from(first) & mask;
        if value < mask {
            return Ok(value);
        }
        let mut shift = 0;
        loop {
            let byte = *self.block.get(self.pos).ok_or(CompressionError)?;
            self.pos += 1;
            value += usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 21 {
                return Err(CompressionError);
            }
        }
    }

    /// A string literal (RFC 7541 §5.2), Huffman-decoded if so marked.
    fn string(&mut self) -> Result<Vec<u8>, CompressionError> {
        let huffman = self.block.get(self.pos).ok_or(CompressionError)? & 0x80 != 0;
        let len = self.integer(7)?;
        let end = self.pos.checked_add(len).ok_or(CompressionError)?;
        let raw = self.block.get(self.pos..end).ok_or(CompressionError)?;
        self.pos = end;
        if huffman {
            let mut out = Vec::new();
            huffman::decode(raw, &mut out).map_err(|_| CompressionError)?;
            Ok(out)
        } else {
            Ok(raw.to_vec())
        }
    }
}

impl Decoder {
    pub(crate) fn new() -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: DECODER_TABLE_SIZE,
            allowed: DECODER_TABLE_SIZE,
        }
    }

    /// The entry at `index` of the static table followed by the dynamic
    /// one (RFC 7541 §2.3.3).
    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), CompressionError> {
        match index {
            0 => Err(CompressionError),
            1..=61 => Ok(STATIC_TABLE[index - 1]),
            _ => self
                .table
                .get(index - 62)
                .map(|(n, v)| (n.as_slice(), v.as_slice()))
                .ok_or(CompressionError),
        }
    }

    /// Adds an entry, evicting the oldest as needed (RFC 7541 §4.4); one
    /// larger than the whole table empties it and is not kept.
    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let entry_size = name.len() + value.len() + ENTRY_OVERHEAD;
        while self.size + entry_size > self.max_size {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
        if entry_size <= self.max_size {
            self.size += entry_size;
            self.table.push_front((name, value));
        }
    }

    /// A dynamic table size update (RFC 7541 §6.3).
    fn resize(&mut self, max_size: usize) {
        self.max_size = max_size;
        while self.size > self.max_size {
            if let Some((n, v)) = self.table.pop_back() {
                self.size -= n.len() + v.len() + ENTRY_OVERHEAD;
            }
        }
    }

    /// Panics unless the table's size is the sum of its entries' and
    /// within its maximum, which is within what the settings allow.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn assert_consistent(&self) {
        let sum: usize = self
            .table
            .iter()
            .map(|(n, v)| n.len() + v.len() + ENTRY_OVERHEAD)
            .sum();
        assert_eq!(sum, self.size, "table size out of step with its entries");
        assert!(self.size <= self.max_size && self.max_size <= self.allowed);
    }

    /// Counts a field into the list's size (RFC 9113 §6.5.2: 32 bytes of
    /// overhead each) and number; false once either is over its limit.
    fn admit(
        size: &mut usize,
        count: &mut usize,
        name: &[u8],
        value: &[u8],
        max_list_size: usize,
        max_fields: usize,
    ) -> bool {
        *size = size.saturating_add(name.len() + value.len() + 32);
        *count += 1;
        *size <= max_list_size && *count <= max_fields
    }

    /// Decodes one complete header block; fields beyond `max_list_size`
    /// bytes (RFC 9113 §6.5.2 measure) or `max_fields` are dropped.
    pub(crate) fn decode(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        max_fields: usize,
    ) -> Result<Decoded, CompressionError> {
        let mut fields = Fields::new();
        let mut size = 0usize;
        let mut count = 0usize;
        let mut over = false;
        let mut at_start = true;
        let mut r = Reader { block, pos: 0 };
        while r.pos < block.len() {
            let first = block[r.pos];
            if first & 0x80 != 0 {
                // Indexed field (§6.1): no copy but into the list.
                let index = r.integer(7)?;
                let (name, value) = self.entry(index)?;
                at_start = false;
                if !Self::admit(
                    &mut size,
                    &mut count,
                    name,
                    value,
                    max_list_size,
                    max_fields,
                ) {
                    over = true;
                }
                if !over {
                    fields.push(name, value);
                }
                continue;
            }
            let (name, value, indexing) = if first & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3): only at the start of a
                // block, and no larger than the settings allow.
                if !at_start {
                    return Err(CompressionError);
                }
                let max_size = r.integer(5)?;
                if max_size > self.allowed {
                    return Err(CompressionError);
                }
                self.resize(max_size);
                continue;
            } else {
                // Literal field with incremental indexing (01, §6.2.1),
                // without indexing (0000, §6.2.2) or never indexed (0001,
                // §6.2.3).
                let indexing = first & 0xc0 == 0x40;
                let index = r.integer(if indexing { 6 } else { 4 })?;
                let name = if index == 0 {
                    r.string()?
                } else {
                    self.entry(index)?.0.to_vec()
                };
                let value = r.string()?;
                (name, value, indexing)
            };
            at_start = false;
            if !Self::admit(
                &mut size,
                &mut count,
                &name,
                &value,
                max_list_size,
                max_fields,
            ) {
                over = true;
            }
            if !over {
                fields.push(&name, &value);
            }
            if indexing {
                self.insert(name, value);
            }
        }
        Ok(if over {
            Decoded::TooLarge
        } else {
            Decoded::Fields(fields)
        })
    }
}

/// Encodes the header blocks the server sends on one connection, in the
/// order they are written.
pub(crate) struct Encoder {
    inner: loona_hpack::Encoder<'static>,
    /// A smaller table size the client asked for, to be announced at the
    /// start of the next block (RFC 7541 §4.2, §6.3).
    pending_update: Option<usize>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("pending_update", &self.pending_update)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    pub(crate) fn new() -> Encoder {
        Encoder {
            inner: loona_hpack::Encoder::new(),
            pending_update: None,
        }
    }

    /// The client's `SETTINGS_HEADER_TABLE_SIZE`: the encoder's table
    /// shrinks to it if smaller than its own size.
    pub(crate) fn set_peer_table_size(&mut self, size: u32) {
        let size = (size as usize).min(ENCODER_TABLE_SIZE);
        self.pending_update = Some(match self.pending_update {
            // The smallest size since the last block must be announced
            // too (RFC 7541 §4.2), so the smallest is what is kept.
            Some(pending) => pending.min(size),
            None => size,
        });
    }

    /// Appends the block encoding `fields`.
    pub(crate) fn encode<'a>(
        &mut self,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        out: &mut Vec<u8>,
    ) {
        if let Some(size) = self.pending_update.take() {
            // Writing to a Vec cannot fail.
            let _ = encode_integer_into(size, 5, 0x20, out);
            self.inner.set_max_table_size(size);
        }
        for (name, value) in fields {
            match static_indices(name) {
                // The encoder would find the field in the static table
                // after a linear search of it (and of its dynamic table,
                // which never holds a name of the static table): the same
                // bytes, without the search.
                Some(indices) => match indices.clone().find(|&i| STATIC_TABLE[i - 1].1 == value) {
                    Some(index) => {
                        let _ = encode_integer_into(index, 7, 0x80, out);
                    }
                    None => {
                        // Literal without indexing, the name's last index
                        // (as the crate's search finds it).
                        let _ = encode_integer_into(*indices.end(), 4, 0, out);
                        let _ = encode_integer_into(value.len(), 7, 0, out);
                        out.extend_from_slice(value);
                    }
                },
                None => {
                    let _ = self.inner.encode_header_into((name, value), out);
                }
            }
        }
    }
}

/// The indices of the static table's entries named `name` (RFC 7541
/// Appendix A, where the entries of one name are adjacent), found without
/// searching [`STATIC_TABLE`]: the encoder's fast path.
fn static_indices(name: &[u8]) -> Option<RangeInclusive<usize>> {
    let index = match name {
        b":authority" => 1,
        b":method" => return Some(2..=3),
        b":path" => return Some(4..=5),
        b":scheme" => return Some(6..=7),
        b":status" => return Some(8..=14),
        b"accept-charset" => 15,
        b"accept-encoding" => 16,
        b"accept-language" => 17,
        b"accept-ranges" => 18,
        b"accept" => 19,
        b"access-control-allow-origin" => 20,
        b"age" => 21,
        b"allow" => 22,
        b"authorization" => 23,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"cookie" => 32,
        b"date" => 33,
        b"etag" => 34,
        b"expect" => 35,
        b"expires" => 36,
        b"from" => 37,
        b"host" => 38,
        b"if-match" => 39,
        b"if-modified-since" => 40,
        b"if-none-match" => 41,
        b"if-range" => 42,
        b"if-unmodified-since" => 43,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"max-forwards" => 47,
        b"proxy-authenticate" => 48,
        b"proxy-authorization" => 49,
        b"range" => 50,
        b"referer" => 51,
        b"refresh" => 52,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"transfer-encoding" => 57,
        b"user-agent" => 58,
        b"vary" => 59,
        b"via" => 60,
        b"www-authenticate" => 61,
        _ => return None,
    };
    Some(index..=index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn decoded(decoder: &mut Decoder, block: &str) -> Vec<(String, String)> {
        match decoder.decode(&hex(block), usize::MAX, usize::MAX).unwrap() {
            Decoded::Fields(fields) => fields
                .iter()
                .map(|(n, v)| {
                    (
                        String::from_utf8(n.to_vec()).unwrap(),
                        String::from_utf8(v.to_vec()).unwrap(),
                    )
                })
                .collect(),
            Decoded::TooLarge => panic!("no limit was set"),
        }
    }

    fn list(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// RFC 7541 Appendix C.2: single fields of each representation.
    #[test]
    fn appendix_c2_field_representations() {
        let cases: &[(&str, (&str, &str))] = &[
            (
                "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
                ("custom-key", "custom-header"),
            ),
            (
                "040c 2f73 616d 706c 652f 7061 7468",
                (":path", "/sample/path"),
            ),
            (
                "1008 7061 7373 776f 7264 0673 6563 7265 74",
                ("password", "secret"),
            ),
            ("82", (":method", "GET")),
        ];
        for (block, field) in cases {
            let mut decoder = Decoder::new();
            assert_eq!(decoded(&mut decoder, block), list(&[*field]));
        }
    }

    fn request_sequence(blocks: [&str; 3]) {
        let mut decoder = Decoder::new();
        assert_eq!(
            decoded(&mut decoder, blocks[0]),
            list(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ])
        );
        assert_eq!(
            decoded(&mut decoder, blocks[1]),
            list(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ])
        );
        assert_eq!(
            decoded(&mut decoder, blocks[2]),
            list(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ])
        );
    }

    /// RFC 7541 Appendix C.3: requests without Huffman coding, sharing the
    /// dynamic table.
    #[test]
    fn appendix_c3_requests() {
        request_sequence([
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ]);
    }

    /// RFC 7541 Appendix C.4: the same requests with Huffman coding.
    #[test]
    fn appendix_c4_requests_huffman() {
        request_sequence([
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ]);
    }

    /// RFC 7541 Appendix C.5.1 and C.5.2: responses with a 256-byte table,
    /// the second evicting the oldest entry.
    #[test]
    fn appendix_c5_eviction() {
        let mut decoder = Decoder::new();
        decoder.resize(256);
        let date = "Mon, 21 Oct 2013 20:13:21 GMT";
        let location = "https://www.example.com";
        assert_eq!(
            decoded(
                &mut decoder,
                "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 \
                 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 \
                 7861 6d70 6c65 2e63 6f6d",
            ),
            list(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", date),
                ("location", location),
            ])
        );
        assert_eq!(
            decoded(&mut decoder, "4803 3330 37c1 c0bf"),
            list(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", date),
                ("location", location),
            ])
        );
    }

    #[test]
    fn list_size_limit_drops_the_fields_but_keeps_the_table() {
        let mut decoder = Decoder::new();
        // C.3.1 adds `:authority: www.example.com` (57 bytes) to the table.
        let first = hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
        // Four fields of the C.3.1 list: 42 + 39 + 38 + 57 bytes.
        assert!(matches!(
            decoder.decode(&first, 175, 100),
            Ok(Decoded::TooLarge)
        ));
        // The entry is in the table all the same: C.3.2 refers to it.
        let second = decoded(&mut decoder, "8286 84be 5808 6e6f 2d63 6163 6865");
        assert_eq!(
            second[3],
            (":authority".to_string(), "www.example.com".to_string())
        );
        // A 4000-byte entry, then a thousand one-byte references to it:
        // 4 KiB on the wire, 4 MB decoded. Refused, without keeping it.
        let mut bomb_table = Decoder::new();
        let mut literal = vec![0x40, 0x01, b'x'];
        let _ = encode_integer_into(4000, 7, 0, &mut literal);
        literal.extend(std::iter::repeat(b'a').take(4000));
        literal.extend(std::iter::repeat(0x80 | 62).take(1000));
        assert!(matches!(
            bomb_table.decode(&literal, 64 * 1024, 10_000),
            Ok(Decoded::TooLarge)
        ));
    }

    #[test]
    fn encoder_round_trip_with_table_size_update() {
        let mut encoder = Encoder::new();
        let mut decoder = Decoder::new();
        let fields: [(&[u8], &[u8]); 3] = [
            (b":status", b"200"),
            (b"content-type", b"text/plain"),
            (b"x-custom", b"value"),
        ];
        for round in 0..3 {
            if round == 1 {
                encoder.set_peer_table_size(0);
            }
            let mut block = Vec::new();
            encoder.encode(fields.iter().copied(), &mut block);
            if round == 1 {
                // A size update (001xxxxx) to 0 comes first.
                assert_eq!(block[0], 0x20);
            }
            let got = match decoder.decode(&block, usize::MAX, usize::MAX).unwrap() {
                Decoded::Fields(f) => f,
                Decoded::TooLarge => unreachable!(),
            };
            assert!(got.iter().eq(fields.iter().copied()));
        }
    }

    /// The static-table path gives the bytes the crate's encoder gives, for
    /// every entry of the table with its own value, an empty one and
    /// another; names outside the table go through the crate's encoder and
    /// its dynamic table.
    #[test]
    fn static_fields_encode_as_the_crate_does() {
        let mut table = loona_hpack::Decoder::new();
        let mut ours = Encoder::new();
        let mut crate_encoder = loona_hpack::Encoder::new();
        let mut compare = |name: &[u8], value: &[u8]| {
            let mut a = Vec::new();
            ours.encode([(name, value)], &mut a);
            let mut b = Vec::new();
            crate_encoder.encode_into([(name, value)], &mut b).unwrap();
            assert_eq!(a, b, "{:?}: {:?}", String::from_utf8_lossy(name), value);
        };
        for index in 1..=61u8 {
            let entry = table.decode(&[0x80 | index]).unwrap();
            let (name, value) = &entry[0];
            let indices = static_indices(name).expect("a name of the static table");
            assert!(indices.contains(&usize::from(index)), "{index}");
            assert_eq!(
                STATIC_TABLE[usize::from(index) - 1],
                (&name[..], &value[..]),
                "{index}"
            );
            for value in [&value[..], b"", b"another value"] {
                compare(name, value);
            }
        }
        for value in ["a", "b", "a", "c"] {
            compare(b"x-thing", value.as_bytes());
        }
        assert!(static_indices(b"x-thing").is_none());
    }

    #[test]
    fn a_list_leaves_its_buffers_for_the_next() {
        // A thread of its own: the spare buffers are per thread.
        std::thread::spawn(|| {
            let mut fields = Fields::new();
            fields.push(b"name", b"value");
            drop(fields);
            let next = Fields::new();
            assert_eq!(next.len(), 0);
            assert!(next.bytes.capacity() >= 9 && next.ends.capacity() >= 1);
            drop(next);
            // Large buffers are freed, not kept.
            let mut large = Fields::new();
            large.push(b"x", &vec![b'a'; SPARE_LIMIT * 2]);
            drop(large);
            assert_eq!(Fields::new().bytes.capacity(), 0);
        })
        .join()
        .unwrap();
    }

    /// A small deterministic generator (xorshift64*), so that a failure
    /// replays.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn decodes_what_the_encoder_wrote_over_many_blocks() {
        // Random header lists from a small alphabet (so names and values
        // repeat and the dynamic table is used, evicted and re-filled),
        // encoded by `loona-hpack`'s encoder and decoded here.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut encoder = loona_hpack::Encoder::new();
        let mut decoder = Decoder::new();
        for _ in 0..2000 {
            let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..rng.below(12))
                .map(|_| {
                    let name = format!("x-{}", rng.below(40)).into_bytes();
                    let value = "v".repeat(rng.below(300)).into_bytes();
                    (name, value)
                })
                .collect();
            let mut block = Vec::new();
            encoder
                .encode_into(
                    fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
                    &mut block,
                )
                .unwrap();
            match decoder.decode(&block, usize::MAX, usize::MAX).unwrap() {
                Decoded::Fields(got) => {
                    let got: Vec<(Vec<u8>, Vec<u8>)> =
                        got.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
                    assert_eq!(got, fields);
                }
                Decoded::TooLarge => unreachable!(),
            }
            decoder.assert_consistent();
        }
    }

    #[test]
    fn damaged_blocks_never_panic_nor_corrupt_the_table() {
        let seeds = [
            hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"),
            hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
            hex("4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120"),
            hex("3fe1 1f82 1088 25a8 49e9 5ba9 7d7f 0f2d 0774 7261 696c 6572"),
        ];
        let mut rng = Rng(42);
        for _ in 0..20_000 {
            let mut block = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(block.len() + 1);
                match rng.below(3) {
                    0 if at < block.len() => block[at] = rng.next() as u8,
                    1 => block.insert(at, rng.next() as u8),
                    _ => block.truncate(at.max(1)),
                }
            }
            let mut decoder = Decoder::new();
            for _ in 0..2 {
                let _ = decoder.decode(&block, 4096, 64);
                decoder.assert_consistent();
            }
        }
    }

    #[test]
    fn bad_blocks_are_compression_errors() {
        let mut decoder = Decoder::new();
        // Index 0, an index past the tables, a truncated literal, a size
        // update larger than allowed, a size update after a field, a
        // Huffman string with bad padding, an integer too long to be one.
        for block in [
            "80",
            "ff00",
            "400a 6375",
            "3fe2 1f",
            "82 3f01",
            "0081 18",
            "ff ffff ffff ff01",
        ] {
            assert_eq!(
                decoder.decode(&hex(block), usize::MAX, usize::MAX).err(),
                Some(CompressionError),
                "{block}"
            );
            decoder = Decoder::new();
        }
    }
}
