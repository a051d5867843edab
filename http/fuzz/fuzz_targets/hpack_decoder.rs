//! Fuzz target for the HTTP/2 HPACK decoder.
//!
//! Input layout: byte 0 says into how many header blocks (1 to 4) the rest
//! is cut; the blocks are decoded in order by one decoder, as the blocks of
//! one connection. `hpack_decode` panics if the decoder panics or if its
//! dynamic table gets out of step with its entries or its size limits.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    pistachio_http::fuzzing::hpack_decode(input);
});
