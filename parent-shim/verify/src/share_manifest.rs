//! The share file's manifest: what the publisher (whoever deals or re-encrypts the shares,
//! offline) vouches for, signed with the publisher key whose public half is measured into
//! the enclave image (`--publisher-key`, PCR2).
//!
//! It travels next to the share file (`<share file URL>.manifest`, S3 or `file://`) as a
//! small JSON document; the parent reads it and sends it first (`ShareFileBegin`), and the
//! enclave checks the signature before it accepts a byte of the file, then the file's
//! length, SHA-256 and account count against it. The parent checks nothing here that the
//! enclave does not check again: a parent that edits the manifest only fails the boot.
//!
//! ```json
//! {"format":1,"ciphertext_len":1021000,"ciphertext_sha256":"e3b0…b855","accounts":10000,
//!  "epoch":7,"created_at_unix":1800000000,"publisher_key":"3ef0…f50b","signature":"…"}
//! ```
//!
//! The signed bytes are `wire::session_signatures::manifest_statement` (`docs/wire.md`,
//! "Signed statements"). The publisher key file is the 32-byte Ed25519 seed in hex, owner
//! read-only (`offline_tools::publisher_key::read_publisher_seed`).

use std::fmt;

use serde::Deserialize;
use wire::session_signatures::{MANIFEST_FORMAT, ShareManifest, manifest_statement};

/// The suffix that names a share file's manifest next to it.
pub const SUFFIX: &str = ".manifest";
/// The largest manifest accepted (a real one is about 400 bytes).
pub const MAX_LEN: usize = 4096;

/// A manifest and the publisher's signature over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedManifest {
    /// What is vouched for.
    pub manifest: ShareManifest,
    /// The publisher key that signed (informational: the enclave checks against its own
    /// measured key, not this one).
    pub publisher_key: [u8; 32],
    /// Ed25519 over `manifest_statement(&manifest)`.
    pub signature: [u8; 64],
}

/// Why a manifest, or a publisher key file, is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// Longer than [`MAX_LEN`].
    TooLarge(usize),
    /// Not JSON of the manifest's shape (unknown or missing field, wrong type).
    Json(String),
    /// A field has the wrong length or is not lowercase hex.
    Field(&'static str),
    /// A format this build does not know.
    Format(u8),
    /// The signature does not verify under the manifest's own publisher key.
    Signature,
    /// The manifest does not describe these bytes: what differs.
    Mismatch(String),
    /// The publisher key file: what is wrong with it (never its content).
    KeyFile(String),
    /// The epoch asked for would not be above the current one.
    Epoch(String),
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge(n) => write!(f, "manifest of {n} bytes (at most {MAX_LEN})"),
            Self::Json(e) => write!(f, "manifest is not valid: {e}"),
            Self::Field(name) => {
                write!(f, "manifest field `{name}` has the wrong length or is not hex")
            }
            Self::Format(v) => {
                write!(f, "manifest format {v} is not supported (expected {MANIFEST_FORMAT})")
            }
            Self::Signature => {
                f.write_str("manifest signature does not verify under its publisher key")
            }
            Self::Mismatch(what) => write!(f, "the manifest does not describe this file: {what}"),
            Self::KeyFile(e) => write!(f, "publisher key file: {e}"),
            Self::Epoch(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for ManifestError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Json {
    format: u8,
    ciphertext_len: u64,
    ciphertext_sha256: String,
    accounts: u64,
    epoch: u64,
    created_at_unix: u64,
    publisher_key: String,
    signature: String,
}

impl SignedManifest {
    /// Signs `manifest` with the publisher's Ed25519 `seed`.
    #[must_use]
    pub fn sign(manifest: ShareManifest, seed: &[u8; 32]) -> Self {
        use ed25519_dalek::Signer as _;
        // The same Ed25519 implementation the enclave verifies with (`verify_strict`).
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let signature = key.sign(&manifest_statement(&manifest)).to_bytes();
        Self { manifest, publisher_key: key.verifying_key().to_bytes(), signature }
    }

    /// The manifest of `ciphertext` (its length and SHA-256), signed.
    #[must_use]
    pub fn for_file(
        ciphertext: &[u8],
        accounts: u64,
        epoch: u64,
        created_at_unix: u64,
        seed: &[u8; 32],
    ) -> Self {
        let manifest = ShareManifest {
            ciphertext_len: ciphertext.len() as u64,
            ciphertext_sha256: sha256(ciphertext),
            accounts,
            epoch,
            created_at_unix,
        };
        Self::sign(manifest, seed)
    }

    /// Parses a manifest document. Checks shape and lengths, not the signature.
    ///
    /// # Errors
    /// [`ManifestError`], naming the field.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_LEN {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let j: Json =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        if j.format != MANIFEST_FORMAT {
            return Err(ManifestError::Format(j.format));
        }
        Ok(Self {
            manifest: ShareManifest {
                ciphertext_len: j.ciphertext_len,
                ciphertext_sha256: unhex(&j.ciphertext_sha256, "ciphertext_sha256")?,
                accounts: j.accounts,
                epoch: j.epoch,
                created_at_unix: j.created_at_unix,
            },
            publisher_key: unhex(&j.publisher_key, "publisher_key")?,
            signature: unhex(&j.signature, "signature")?,
        })
    }

    /// The document [`Self::parse`] reads.
    #[must_use]
    pub fn to_json(&self) -> String {
        let m = &self.manifest;
        serde_json::json!({
            "format": MANIFEST_FORMAT,
            "ciphertext_len": m.ciphertext_len,
            "ciphertext_sha256": hex::encode(m.ciphertext_sha256),
            "accounts": m.accounts,
            "epoch": m.epoch,
            "created_at_unix": m.created_at_unix,
            "publisher_key": hex::encode(self.publisher_key),
            "signature": hex::encode(self.signature),
        })
        .to_string()
            + "\n"
    }

    /// Whether the signature verifies (strictly, as the enclave checks it) under the
    /// manifest's own publisher key (the tools' self-check; the enclave verifies under its
    /// measured key).
    ///
    /// # Errors
    /// [`ManifestError::Signature`].
    pub fn verify(&self) -> Result<(), ManifestError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.publisher_key)
            .map_err(|_| ManifestError::Signature)?;
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify_strict(&manifest_statement(&self.manifest), &signature)
            .map_err(|_| ManifestError::Signature)
    }

    /// Whether the manifest describes `ciphertext` (length and SHA-256).
    ///
    /// # Errors
    /// [`ManifestError::Mismatch`], naming what differs.
    pub fn check_file(&self, ciphertext: &[u8]) -> Result<(), ManifestError> {
        if ciphertext.len() as u64 != self.manifest.ciphertext_len {
            return Err(ManifestError::Mismatch(format!(
                "{} bytes, the manifest says {}",
                ciphertext.len(),
                self.manifest.ciphertext_len
            )));
        }
        if sha256(ciphertext) != self.manifest.ciphertext_sha256 {
            return Err(ManifestError::Mismatch("the SHA-256 differs".into()));
        }
        Ok(())
    }

    /// The boot message that carries it.
    #[must_use]
    pub fn begin(&self) -> wire::ShareFileBegin {
        let m = &self.manifest;
        wire::ShareFileBegin {
            total_len: m.ciphertext_len,
            sha256: m.ciphertext_sha256,
            accounts: m.accounts,
            epoch: m.epoch,
            created_at_unix: m.created_at_unix,
            publisher_signature: self.signature,
        }
    }
}

/// Fuzz oracle (`parent-shim/fuzz`, and the unit tests): any bytes give a typed result,
/// never a panic, and a manifest that parses writes back to one that parses the same.
///
/// # Panics
/// If the round trip differs (a bug the fuzzer is looking for).
pub fn fuzz_parse(data: &[u8]) {
    if let Ok(m) = SignedManifest::parse(data) {
        let again = SignedManifest::parse(m.to_json().as_bytes());
        assert_eq!(again, Ok(m), "a parsed manifest does not round-trip");
        let _ = m.verify();
    }
}

fn unhex<const N: usize>(text: &str, field: &'static str) -> Result<[u8; N], ManifestError> {
    let mut out = [0u8; N];
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ManifestError::Field(field));
    }
    hex::decode_to_slice(text, &mut out).map_err(|_| ManifestError::Field(field))?;
    Ok(out)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> SignedManifest {
        SignedManifest::for_file(b"ciphertext", 3, 7, 1_800_000_000, &[0x50; 32])
    }

    #[test]
    fn round_trip_and_self_check() {
        let m = example();
        let again = SignedManifest::parse(m.to_json().as_bytes()).unwrap();
        assert_eq!(again, m);
        again.verify().unwrap();
        again.check_file(b"ciphertext").unwrap();
        assert_eq!(
            m.publisher_key,
            ed25519_dalek::SigningKey::from_bytes(&[0x50; 32]).verifying_key().to_bytes()
        );
        let begin = m.begin();
        assert_eq!((begin.total_len, begin.accounts, begin.epoch), (10, 3, 7));
    }

    #[test]
    fn bad_documents_are_named() {
        let json: serde_json::Value = serde_json::from_str(&example().to_json()).unwrap();
        let with = |key: &str, v: serde_json::Value| {
            let mut j = json.clone();
            j[key] = v;
            SignedManifest::parse(j.to_string().as_bytes()).unwrap_err()
        };
        assert_eq!(with("format", 2.into()), ManifestError::Format(2));
        assert_eq!(with("signature", "00".into()), ManifestError::Field("signature"));
        let upper = hex::encode_upper([0xabu8; 32]);
        assert_eq!(with("publisher_key", upper.into()), ManifestError::Field("publisher_key"));
        assert!(matches!(with("epoch", (-1).into()), ManifestError::Json(_)));
        assert!(matches!(with("extra", 1.into()), ManifestError::Json(_)));
        let mut missing = json.clone();
        missing.as_object_mut().unwrap().remove("epoch");
        let e = SignedManifest::parse(missing.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("epoch"), "{e}");
        assert_eq!(
            SignedManifest::parse(&[b' '; MAX_LEN + 1]).unwrap_err(),
            ManifestError::TooLarge(MAX_LEN + 1)
        );
        // A document of exactly MAX_LEN bytes (trailing JSON whitespace) is still read.
        let mut exact = example().to_json().into_bytes();
        exact.resize(MAX_LEN, b' ');
        assert_eq!(SignedManifest::parse(&exact), Ok(example()));
        exact.push(b' ');
        assert_eq!(SignedManifest::parse(&exact), Err(ManifestError::TooLarge(MAX_LEN + 1)));
    }

    #[test]
    fn a_changed_field_breaks_the_signature_and_the_file_check_names_what_differs() {
        let mut m = example();
        m.manifest.epoch += 1;
        assert_eq!(m.verify(), Err(ManifestError::Signature));
        let m = example();
        assert!(m.check_file(b"ciphertexT").unwrap_err().to_string().contains("SHA-256"));
        assert!(m.check_file(b"short").unwrap_err().to_string().contains("5 bytes"));
    }

    /// The fuzz oracle over every prefix and every one-byte change of a real manifest.
    #[test]
    fn fuzz_smoke() {
        let doc = example().to_json().into_bytes();
        for cut in 0..=doc.len() {
            fuzz_parse(&doc[..cut]);
        }
        for i in 0..doc.len() {
            for b in [b'0', b'f', b'"', b'}', b'9', 0xff] {
                let mut d = doc.clone();
                d[i] = b;
                fuzz_parse(&d);
            }
        }
    }
}
