//! The EIF signature section, as `nitro-cli build-enclave --signing-certificate
//! --private-key` writes it, and PCR8, the register Nitro extends with its certificate.
//!
//! ```text
//! section (type 4, after the ramdisks; CBOR, as serde_cbor writes AWS's types)
//!   [ { "signing_certificate": [u8...],   the certificate, PEM, as an array of uints
//!       "signature":           [u8...] } ] an untagged COSE_Sign1, as an array of uints
//! COSE_Sign1 = [ bstr(protected = {1: -35}), {}, bstr(payload), bstr(r || s, 96 bytes) ]
//! payload    = { "register_index": 0, "register_value": [u8 x 48] }   (PCR0, as uints)
//! signed     = SHA-384 of ["Signature1", bstr(protected), bstr(""), bstr(payload)]
//! PCR8       = SHA-384(0^48 || SHA-384(certificate DER))
//! ```
//!
//! The key is ECDSA P-384 (ES384), the only curve this module signs or verifies with.
//! Signatures are deterministic (RFC 6979), so a signed image is as reproducible as an
//! unsigned one: the same inputs, certificate and key give the same file.

use std::fmt;

use p384::ecdsa::signature::{Signer as _, Verifier as _};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};
use p384::pkcs8::DecodePublicKey as _;
use sha2::{Digest, Sha384};
use x509_cert::der::{DecodePem as _, Encode as _};

/// COSE's algorithm id for ECDSA P-384 with SHA-384.
const ES384: i64 = -35;
/// The protected header every signature carries: `{1: -35}`.
const PROTECTED: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];

/// Why a certificate, a key or a signature section was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// The certificate is not one PEM X.509 certificate.
    Certificate(String),
    /// The certificate's key is not an ECDSA P-384 public key.
    CertificateKey,
    /// The private key is neither SEC1 (`EC PRIVATE KEY`) nor PKCS#8 (`PRIVATE KEY`) P-384.
    PrivateKey,
    /// The private key is not the certificate's.
    KeyMismatch,
    /// The certificate is not valid at the given time (Unix seconds).
    NotValidAt {
        /// The time checked.
        at: u64,
        /// `notBefore`, Unix seconds.
        not_before: u64,
        /// `notAfter`, Unix seconds.
        not_after: u64,
    },
    /// The section is not the CBOR layout above.
    Malformed(&'static str),
    /// The protected header names another algorithm than ES384.
    Algorithm,
    /// The signature does not verify under the certificate's key.
    BadSignature,
    /// The signature is over another register or value than the image's PCR0.
    OtherImage,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate(e) => {
                write!(f, "the signing certificate is not a PEM X.509 certificate: {e}")
            }
            Self::CertificateKey => f.write_str("the signing certificate's key is not ECDSA P-384"),
            Self::PrivateKey => f.write_str(
                "the signing key is not a PEM P-384 private key (EC PRIVATE KEY or PRIVATE KEY)",
            ),
            Self::KeyMismatch => f.write_str("the signing key is not the certificate's"),
            Self::NotValidAt { at, not_before, not_after } => write!(
                f,
                "the signing certificate is not valid at {at} (valid from {not_before} to \
                 {not_after}, Unix seconds)"
            ),
            Self::Malformed(what) => write!(f, "malformed signature section: {what}"),
            Self::Algorithm => f.write_str("the signature's algorithm is not ES384"),
            Self::BadSignature => {
                f.write_str("the signature does not verify under the certificate's key")
            }
            Self::OtherImage => f.write_str("the signature is over another image's PCR0"),
        }
    }
}

impl std::error::Error for SignatureError {}

/// A signing certificate, read and checked.
#[derive(Clone)]
pub struct SigningCertificate {
    /// As stored in the section: the certificate re-encoded as PEM (LF line endings).
    pub pem: Vec<u8>,
    /// Its DER, which PCR8 measures.
    pub der: Vec<u8>,
    /// Its subject, for people.
    pub subject: String,
    /// `notBefore`, Unix seconds.
    pub not_before: u64,
    /// `notAfter`, Unix seconds.
    pub not_after: u64,
    key: VerifyingKey,
}

impl fmt::Debug for SigningCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningCertificate({}, PCR8 {})", self.subject, hex::encode(self.pcr8()))
    }
}

impl SigningCertificate {
    /// One PEM certificate with an ECDSA P-384 key.
    ///
    /// # Errors
    /// [`SignatureError::Certificate`], [`SignatureError::CertificateKey`].
    pub fn from_pem(pem: &[u8]) -> Result<Self, SignatureError> {
        let bad = |e: &dyn fmt::Display| SignatureError::Certificate(e.to_string());
        let cert = x509_cert::Certificate::from_pem(pem).map_err(|e| bad(&e))?;
        let der = cert.to_der().map_err(|e| bad(&e))?;
        let spki = cert.tbs_certificate.subject_public_key_info.to_der().map_err(|e| bad(&e))?;
        let key =
            VerifyingKey::from_public_key_der(&spki).map_err(|_| SignatureError::CertificateKey)?;
        let validity = &cert.tbs_certificate.validity;
        let pem = pem_of(&der);
        Ok(Self {
            pem,
            der,
            subject: cert.tbs_certificate.subject.to_string(),
            not_before: validity.not_before.to_unix_duration().as_secs(),
            not_after: validity.not_after.to_unix_duration().as_secs(),
            key,
        })
    }

    /// PCR8 of an image signed with this certificate.
    #[must_use]
    pub fn pcr8(&self) -> [u8; 48] {
        crate::pcr_extend::extend_from_zero(&Sha384::digest(&self.der))
    }

    /// Refuses a time outside the certificate's validity (as `nitro-cli` refuses to run an
    /// image whose signing certificate has expired).
    ///
    /// # Errors
    /// [`SignatureError::NotValidAt`].
    pub fn valid_at(&self, at: u64) -> Result<(), SignatureError> {
        if at < self.not_before || at > self.not_after {
            return Err(SignatureError::NotValidAt {
                at,
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        Ok(())
    }
}

/// `-----BEGIN CERTIFICATE-----`, base64 in lines of 64, LF.
fn pem_of(der: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

/// A P-384 signing key, from PEM (SEC1 `EC PRIVATE KEY`, as `openssl ecparam -genkey`
/// writes it, or PKCS#8 `PRIVATE KEY`). The scalar is wiped when it is dropped.
pub struct ImageSigningKey(SigningKey);

impl fmt::Debug for ImageSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ImageSigningKey(..)")
    }
}

impl ImageSigningKey {
    /// # Errors
    /// [`SignatureError::PrivateKey`].
    pub fn from_pem(pem: &str) -> Result<Self, SignatureError> {
        use p384::pkcs8::DecodePrivateKey as _;
        let secret = p384::SecretKey::from_sec1_pem(pem)
            .or_else(|_| p384::SecretKey::from_pkcs8_pem(pem))
            .map_err(|_| SignatureError::PrivateKey)?;
        Ok(Self(SigningKey::from(&secret)))
    }
}

/// The signature section for an image whose PCR0 is `pcr0`, signed with `key` under
/// `certificate`, which must be valid at `now` (Unix seconds).
///
/// # Errors
/// [`SignatureError::KeyMismatch`], [`SignatureError::NotValidAt`].
pub fn sign(
    pcr0: &[u8; 48],
    certificate: &SigningCertificate,
    key: &ImageSigningKey,
    now: u64,
) -> Result<Vec<u8>, SignatureError> {
    if VerifyingKey::from(&key.0) != certificate.key {
        return Err(SignatureError::KeyMismatch);
    }
    certificate.valid_at(now)?;
    let payload = pcr_info(pcr0);
    let signature: Signature = key.0.sign(&sig_structure(&PROTECTED, &payload));
    let mut cose = Vec::new();
    head(&mut cose, 4, 4);
    bytes(&mut cose, &PROTECTED);
    head(&mut cose, 5, 0);
    bytes(&mut cose, &payload);
    bytes(&mut cose, &signature.to_bytes());
    let mut out = Vec::new();
    head(&mut out, 4, 1);
    head(&mut out, 5, 2);
    text(&mut out, "signing_certificate");
    uints(&mut out, &certificate.pem);
    text(&mut out, "signature");
    uints(&mut out, &cose);
    Ok(out)
}

/// What a verified signature section says.
#[derive(Debug, Clone)]
pub struct VerifiedSignature {
    /// The signing certificate.
    pub certificate: SigningCertificate,
    /// PCR8, from the certificate.
    pub pcr8: [u8; 48],
}

/// The certificate of a signature section, and so its PCR8, without checking the
/// signature (what Nitro measures: it extends PCR8 with the certificate alone).
///
/// # Errors
/// [`SignatureError::Malformed`], [`SignatureError::Certificate`],
/// [`SignatureError::CertificateKey`].
pub fn certificate_of(section: &[u8]) -> Result<SigningCertificate, SignatureError> {
    let (pem, _) = parts(section)?;
    SigningCertificate::from_pem(&pem)
}

/// Checks a signature section against the image's `pcr0`: the layout, an ES384 signature
/// under the certificate's key over `{register_index: 0, register_value: pcr0}`, and the
/// certificate valid at `now` (Unix seconds).
///
/// # Errors
/// Any [`SignatureError`] but the key errors.
pub fn verify(
    section: &[u8],
    pcr0: &[u8; 48],
    now: u64,
) -> Result<VerifiedSignature, SignatureError> {
    use ciborium::Value;
    let (pem, cose) = parts(section)?;
    let certificate = SigningCertificate::from_pem(&pem)?;
    let malformed = SignatureError::Malformed;
    let cose: Value = decode(&cose).ok_or(malformed("the signature is not CBOR"))?;
    let cose = match cose {
        Value::Tag(18, inner) => *inner,
        other => other,
    };
    let Value::Array(fields) = cose else { return Err(malformed("the signature is not an array")) };
    let [Value::Bytes(protected), Value::Map(_), Value::Bytes(payload), Value::Bytes(sig)] =
        fields.as_slice()
    else {
        return Err(malformed("the signature is not a COSE_Sign1"));
    };
    let header: Value = decode(protected).ok_or(malformed("the protected header is not CBOR"))?;
    let alg = header
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_integer() == Some(1.into())))
        .and_then(|(_, v)| v.as_integer());
    if alg != Some(ES384.into()) {
        return Err(SignatureError::Algorithm);
    }
    let sig = Signature::from_slice(sig).map_err(|_| SignatureError::BadSignature)?;
    certificate
        .key
        .verify(&sig_structure(protected, payload), &sig)
        .map_err(|_| SignatureError::BadSignature)?;
    // Signed: now what it says. The payload must name PCR0 with the image's value.
    let info: Value = decode(payload).ok_or(malformed("the payload is not CBOR"))?;
    let field = |name: &str| {
        info.as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some(name)))
            .map(|(_, v)| v.clone())
    };
    let index = field("register_index").and_then(|v| v.as_integer());
    let value = field("register_value").and_then(|v| uint_bytes(&v));
    if index != Some(0.into()) || value.as_deref() != Some(&pcr0[..]) {
        return Err(SignatureError::OtherImage);
    }
    certificate.valid_at(now)?;
    Ok(VerifiedSignature { pcr8: certificate.pcr8(), certificate })
}

/// The certificate's PEM and the COSE bytes of the section's first (PCR0) signature.
fn parts(section: &[u8]) -> Result<(Vec<u8>, Vec<u8>), SignatureError> {
    use ciborium::Value;
    let malformed = SignatureError::Malformed;
    let value: Value = decode(section).ok_or(malformed("not CBOR"))?;
    let first = value
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_map)
        .ok_or(malformed("not an array of signatures"))?;
    let field = |name: &str| {
        first.iter().find(|(k, _)| k.as_text() == Some(name)).and_then(|(_, v)| uint_bytes(v))
    };
    let pem = field("signing_certificate").ok_or(malformed("no signing_certificate bytes"))?;
    let cose = field("signature").ok_or(malformed("no signature bytes"))?;
    Ok((pem, cose))
}

/// One CBOR item filling `data` exactly.
fn decode(data: &[u8]) -> Option<ciborium::Value> {
    let mut rest = data;
    let value = ciborium::de::from_reader(&mut rest).ok()?;
    rest.is_empty().then_some(value)
}

/// An array of uints below 256 (`serde_cbor`'s `Vec<u8>`), as bytes.
fn uint_bytes(v: &ciborium::Value) -> Option<Vec<u8>> {
    v.as_array()?.iter().map(|x| x.as_integer().and_then(|i| u8::try_from(i).ok())).collect()
}

/// `{"register_index": 0, "register_value": [PCR0 as uints]}`.
fn pcr_info(pcr0: &[u8; 48]) -> Vec<u8> {
    let mut out = Vec::new();
    head(&mut out, 5, 2);
    text(&mut out, "register_index");
    head(&mut out, 0, 0);
    text(&mut out, "register_value");
    uints(&mut out, pcr0);
    out
}

/// COSE's `Sig_structure` for a `COSE_Sign1` with no external data.
fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    head(&mut out, 4, 4);
    text(&mut out, "Signature1");
    bytes(&mut out, protected);
    bytes(&mut out, &[]);
    bytes(&mut out, payload);
    out
}

/// A CBOR head: major type and argument, shortest form.
fn head(out: &mut Vec<u8>, major: u8, arg: usize) {
    let m = major << 5;
    let be = u64::try_from(arg).unwrap_or(u64::MAX).to_be_bytes();
    match arg {
        0..=23 => out.push(m | be[7]),
        24..=0xff => out.extend([m | 0x18, be[7]]),
        0x100..=0xffff => {
            out.push(m | 0x19);
            out.extend(&be[6..]);
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 0x1a);
            out.extend(&be[4..]);
        }
        _ => {
            out.push(m | 0x1b);
            out.extend(be);
        }
    }
}

fn bytes(out: &mut Vec<u8>, data: &[u8]) {
    head(out, 2, data.len());
    out.extend_from_slice(data);
}

fn text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn uints(out: &mut Vec<u8>, data: &[u8]) {
    head(out, 4, data.len());
    for &b in data {
        head(out, 0, usize::from(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbor_heads_take_the_shortest_form() {
        let enc = |major, arg| {
            let mut v = Vec::new();
            head(&mut v, major, arg);
            v
        };
        assert_eq!(enc(0, 23), [0x17]);
        assert_eq!(enc(0, 24), [0x18, 24]);
        assert_eq!(enc(4, 48), [0x98, 0x30]);
        assert_eq!(enc(2, 700), [0x59, 0x02, 0xbc]);
        assert_eq!(enc(4, 70_000), [0x9a, 0, 1, 0x11, 0x70]);
        // The payload as serde_cbor writes AWS's PcrInfo: a map of two text keys.
        let info = pcr_info(&[0xab; 48]);
        assert_eq!(&info[..16], b"\xa2\x6eregister_index");
        assert_eq!(info[16], 0x00);
        assert_eq!(&info[17..34], b"\x6eregister_value\x98\x30");
        assert_eq!(&info[34..36], [0x18, 0xab]);
    }
}
