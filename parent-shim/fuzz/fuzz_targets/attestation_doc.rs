//! Any bytes as an attestation document through the verifier: CBOR, COSE, payload, chain
//! (`parent_shim::attestation_verifier::fuzz_verify`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| parent_shim::attestation_verifier::fuzz_verify(data));
