//! `eif`: reproducible Nitro Enclave images, built without Docker or `nitro-cli`.
//!
//! * [`cpio_newc`]: a deterministic initramfs (`newc` cpio) writer, and a lister;
//! * [`eif_image`]: the EIF v4 writer and checking reader, and PCR0/1/2.
//!
//! Used at build time by `cargo xtask build-eif` and `eif-info`, and by auditors; never
//! inside the enclave. The format and the PCR rules are cross-checked against AWS's
//! `aws-nitro-enclaves-image-format` crate (`eif/crosscheck`).

pub mod cpio_newc;
pub mod eif_image;
