//! Any bytes through the age header parser and the streaming decryptor, cut at two places:
//! no panic, and the cut never changes the result (`enclave_core::fuzzing::fuzz_age`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| enclave_core::fuzzing::fuzz_age(data));
