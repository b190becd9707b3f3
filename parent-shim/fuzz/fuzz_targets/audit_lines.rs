//! Any bytes as exported audit lines: a report, never a panic, that holds together
//! (`parent_shim::audit_trail::fuzz_verify`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| parent_shim::audit_trail::fuzz_verify(data));
