//! Any bytes through the CMS `EnvelopedData` parser of the KMS unseal
//! (`enclave_core::fuzzing::fuzz_sealed_key`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| enclave_core::fuzzing::fuzz_sealed_key(data));
