//! ASCII bytes as a [`ByteString`] or a `&str` without a UTF-8
//! validation: the crate's one module with unsafe code.
//!
//! `ByteString::try_from` runs `str::from_utf8`, which costs as much as the
//! rest of building a request's target for the short targets of most
//! requests; `<[u8]>::is_ascii` is a word-at-a-time check with no decoding,
//! and ASCII is UTF-8.

#![allow(unsafe_code)]

use bytes::Bytes;
use bytestring::ByteString;

/// `bytes` as a `ByteString`, if every byte is ASCII.
pub(crate) fn ascii_string(bytes: Bytes) -> Option<ByteString> {
    if !bytes.is_ascii() {
        return None;
    }
    // SAFETY: every byte is ASCII (checked just above), and ASCII text is
    // valid UTF-8, which is all `from_bytes_unchecked` requires.
    Some(unsafe { ByteString::from_bytes_unchecked(bytes) })
}

/// `bytes` as text, if every byte is ASCII.
pub(crate) fn ascii_str(bytes: &[u8]) -> Option<&str> {
    if !bytes.is_ascii() {
        return None;
    }
    // SAFETY: every byte is ASCII (checked just above), and ASCII text is
    // valid UTF-8, which is all `from_utf8_unchecked` requires.
    Some(unsafe { std::str::from_utf8_unchecked(bytes) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ascii_is_taken() {
        assert_eq!(
            ascii_string(Bytes::from_static(b"/a?b=c")).as_deref(),
            Some("/a?b=c")
        );
        assert_eq!(ascii_string(Bytes::new()).as_deref(), Some(""));
        assert!(ascii_string(Bytes::from_static("/é".as_bytes())).is_none());
        assert!(ascii_string(Bytes::from_static(b"/\xff")).is_none());
    }

    #[test]
    fn only_ascii_is_read_as_text() {
        assert_eq!(ascii_str(b"/a?b=c"), Some("/a?b=c"));
        assert_eq!(ascii_str(b""), Some(""));
        assert_eq!(ascii_str("/é".as_bytes()), None);
        assert_eq!(ascii_str(b"/\xff"), None);
    }
}
