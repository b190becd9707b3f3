//! Any bytes as a share manifest document: a typed result, never a panic, and whatever
//! parses writes back to a document that parses to the same manifest
//! (`parent_shim::share_manifest::fuzz_parse`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| parent_shim::share_manifest::fuzz_parse(data));
