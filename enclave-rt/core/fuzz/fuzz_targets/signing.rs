//! Any bytes as a stored key package (round 1) and as a signing package in an open session
//! (round 2): no panic, the session always consumed (`enclave_core::fuzzing::fuzz_signing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| enclave_core::fuzzing::fuzz_signing(data));
