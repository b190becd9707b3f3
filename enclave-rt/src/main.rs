//! `enclave-rt`: the only program in the enclave image (`/init`).
//!
//! It will hold, as separate sans-IO modules driven by one `poll` loop: the boot state
//! machine, the streaming age decryptor, the JSON share loader and share store, the KMS
//! unseal (CMS), the FROST signing engine, the bounded allocator and the log ring. See
//! `../shared/DESIGN.md` and the open issues; only the protocol (`wire`) exists so far.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

fn main() {
    eprintln!("enclave-rt {}: not built yet (see the open issues)", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}
