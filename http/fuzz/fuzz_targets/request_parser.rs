//! Fuzz target for the HTTP/1.1 request parser.
//!
//! Input layout (see `README.md`):
//!
//! * byte 0, the mode: if its high bit is set, the request bytes are fed one
//!   byte at a time; otherwise its low 4 bits are the number `n` of split
//!   positions that follow;
//! * `n` split positions, 2 bytes each, little-endian (taken modulo the
//!   length of the request bytes + 1 by `parse_and_compare`);
//! * the rest: the request bytes.
//!
//! `parse_and_compare` parses the request bytes whole and split at those
//! positions, and panics if the parser panics, returns an impossible result,
//! or if the two ways of feeding disagree.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    if mode & 0x80 != 0 {
        let splits: Vec<usize> = (1..rest.len()).collect();
        pistachio_http::fuzzing::parse_and_compare(rest, &splits);
        return;
    }
    let count = usize::from(mode & 0x0f);
    if rest.len() < 2 * count {
        return;
    }
    let (header, data) = rest.split_at(2 * count);
    let splits: Vec<usize> = header
        .chunks_exact(2)
        .map(|pair| usize::from(u16::from_le_bytes([pair[0], pair[1]])))
        .collect();
    pistachio_http::fuzzing::parse_and_compare(data, &splits);
});
