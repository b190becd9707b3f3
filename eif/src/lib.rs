//! `eif`: reproducible Nitro Enclave images, built without Docker or `nitro-cli`.
//!
//! * [`cpio_newc`]: a deterministic initramfs (`newc` cpio) writer, and a lister;
//! * [`eif_image`]: the EIF v4 writer and checking reader, and PCR0/1/2;
//! * [`eif_signature`]: the signature section (a signing certificate and its ES384
//!   signature over PCR0) and PCR8;
//! * [`pcr_extend`]: Nitro's extend from zero, the rule of every register.
//!
//! Used at build time by `cargo xtask build-eif` and `eif-info`, and by auditors; never
//! inside the enclave. The format and the PCR rules are cross-checked against AWS's
//! `aws-nitro-enclaves-image-format` crate (`eif/crosscheck`).

pub mod cpio_newc;
pub mod eif_image;
pub mod eif_signature;
pub mod pcr_extend;

/// The fuzz targets' oracle (`eif/fuzz`, and `tests/signature.rs` on mutated images): any
/// bytes through the image reader and the signature section's reader and verifier must give
/// a value or a typed error, never a panic; a signature that verifies is over the image's
/// PCR0 and names the PCR8 the reader computed.
///
/// # Panics
/// When that does not hold (which is what a fuzzer looks for).
pub fn fuzz_read(data: &[u8]) {
    if let Ok(image) = eif_image::read(data)
        && let Some(section) = image.section(eif_image::SectionKind::Signature)
        && let Ok(verified) = eif_signature::verify(section, &image.pcrs.pcr0, 1_800_000_000)
    {
        assert_eq!(image.pcrs.pcr8, Some(verified.pcr8));
    }
    let _ = eif_signature::verify(data, &[0; 48], 1_800_000_000);
    let _ = eif_signature::certificate_of(data);
}
