//! `eif`: writes Nitro Enclave Image Files deterministically (header, kernel, cmdline,
//! metadata and ramdisk sections, CRC-32), a reproducible newc cpio writer for the ramdisk,
//! and PCR0/1/2 computation. Used at build time by `cargo xtask build-eif`; never inside the
//! enclave. Not implemented yet.
