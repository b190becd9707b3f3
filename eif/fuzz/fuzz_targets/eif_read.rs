//! Any bytes as an EIF (header, sections, the signature section's certificate) and as a
//! signature section on its own: typed errors, no panic; what reads, verifies or not.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eif::fuzz_read(data));
