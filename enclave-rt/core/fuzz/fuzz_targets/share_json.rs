//! Any bytes through the share-file JSON scanner, the entry parser and the share decoder:
//! no panic, cut-independence, and base64 agreement with `base64ct`
//! (`enclave_core::fuzzing::fuzz_share_json`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| enclave_core::fuzzing::fuzz_share_json(data));
