//! Any byte stream, cut into pieces of any size, through the frame decoder and the message
//! parser: no panic, and everything that parses re-encodes to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wire::fuzz_decode(data));
