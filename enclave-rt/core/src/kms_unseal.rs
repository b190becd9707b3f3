//! KMS unseal: the enclave's one-time RSA key, and the decryption of KMS's
//! `CiphertextForRecipient` into the age identity.
//!
//! At boot the enclave generates an RSA-2048 key; its public half (DER
//! `SubjectPublicKeyInfo`) goes into the attestation document, and KMS `Decrypt` with
//! `Recipient` answers with the age identity sealed to it as CMS `EnvelopedData`:
//!
//! ```text
//! ContentInfo { id-envelopedData, [0] EnvelopedData {
//!   version, [0] originatorInfo (absent), recipientInfos SET { KeyTransRecipientInfo {
//!     version, rid, rsaesOaep(SHA-256, MGF1-SHA-256), encryptedKey } },
//!   EncryptedContentInfo { id-data, aes256-CBC(iv), [0] encryptedContent } } }
//! ```
//!
//! in BER, possibly with indefinite lengths and a chunked `encryptedContent`. Exactly one
//! key-transport recipient is accepted, with exactly those algorithms; anything else is an
//! `UnsealError` naming what and where. What lies past the structure (the content key, the
//! padding, the identity) is checked in constant time and any failure there is the one
//! `UnsealError::Sealed`: the CBC layer is malleable and KMS seals the same identity at
//! every boot, so a detailed answer would be a padding oracle (docs/threat-model.md). [`UnsealKey::unseal`]
//! consumes the key, so it is used once and then zeroized (`rsa` wipes private keys on drop).

use core::fmt;

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::NoPadding};
use rsa::pkcs8::EncodePublicKey;
use rsa::{Oaep, RsaPrivateKey};
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::age_identity::{IDENTITY_LEN, Identity};
use crate::ber::{BerError, Element, Reader, tag};

/// RSA modulus size KMS expects for `RSAES_OAEP_SHA_256` recipients.
pub const RSA_BITS: usize = 2048;
/// Largest encrypted content accepted: an age identity is 74 characters.
const CONTENT_MAX: usize = 1024;

const OID_ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const OID_RSAES_OAEP: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07];
const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];

/// Why the sealed key could not be opened. No variant carries decrypted bytes, and
/// everything after the CMS structure is one variant ([`UnsealError::Sealed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsealError {
    /// The RSA key could not be generated.
    KeyGeneration,
    /// The blob is not well-formed BER, or not the CMS structure KMS sends.
    Malformed(BerError),
    /// A well-formed blob uses an algorithm or layout we do not accept.
    Unsupported(&'static str),
    /// The blob does not open to an age identity with this boot's key: RSA-OAEP, the
    /// content key's size, the AES-256-CBC padding and the identity's text, all checked
    /// in constant time and reported as one. Which of them failed depends on secret bytes
    /// the parent can tamper with (the CBC layer is unauthenticated), so it is not said.
    Sealed,
}

impl fmt::Display for UnsealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyGeneration => f.write_str("cannot generate the RSA unseal key"),
            Self::Malformed(e) => write!(f, "sealed key is not valid CMS: {e}"),
            Self::Unsupported(what) => write!(f, "sealed key uses an unsupported {what}"),
            Self::Sealed => f.write_str(SEALED_DETAIL),
        }
    }
}

/// The one text of every failure past the CMS structure.
pub const SEALED_DETAIL: &str = "sealed key does not open to an age identity with this boot's key";

impl From<BerError> for UnsealError {
    fn from(e: BerError) -> Self {
        Self::Malformed(e)
    }
}

/// The per-boot RSA key. No `Debug` output of key material.
pub struct UnsealKey {
    key: RsaPrivateKey,
    public_der: Vec<u8>,
}

impl fmt::Debug for UnsealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnsealKey(<secret>)")
    }
}

impl UnsealKey {
    /// Generates a fresh RSA-2048 key from the OS random source (in the enclave, the
    /// kernel RNG fed by `nsm-hwrng`).
    pub fn generate() -> Result<Self, UnsealError> {
        Self::generate_with(&mut rand_core::OsRng)
    }

    /// Generates a fresh RSA-2048 key from `rng` (the boot machine's injected source).
    pub fn generate_with<R: rand_core::RngCore + rand_core::CryptoRng>(
        rng: &mut R,
    ) -> Result<Self, UnsealError> {
        let key = RsaPrivateKey::new(rng, RSA_BITS).map_err(|_| UnsealError::KeyGeneration)?;
        let public_der = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|_| UnsealError::KeyGeneration)?
            .into_vec();
        Ok(Self { key, public_der })
    }

    /// The public key as DER `SubjectPublicKeyInfo`, for the attestation document.
    #[must_use]
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }

    /// Opens KMS's `CiphertextForRecipient`. Consumes the key: it opens exactly one blob.
    ///
    /// The CMS structure is public and its errors are detailed. Past it, every byte is
    /// secret or malleable by the parent, so the same work is done whatever fails (the
    /// content key of a failed OAEP is zeros, the whole content is decrypted, the fixed
    /// window is checked in full) and every failure is [`UnsealError::Sealed`].
    pub fn unseal(self, blob: &[u8]) -> Result<Identity, UnsealError> {
        let sealed = parse_enveloped_data(blob)?;
        let opened = self.key.decrypt(Oaep::new::<sha2::Sha256>(), &sealed.encrypted_key);
        drop(self); // the RSA key is zeroized here, before anything else is done
        let mut cek = Zeroizing::new([0u8; 32]);
        let mut valid = Choice::from(0);
        if let Ok(opened) = opened.map(Zeroizing::new) {
            valid = opened.len().ct_eq(&cek.len());
            for (d, s) in cek.iter_mut().zip(opened.iter()) {
                *d = *s;
            }
        }
        let mut content = Zeroizing::new(sealed.encrypted_content);
        let decryptor = cbc::Decryptor::<aes::Aes256>::new((&*cek).into(), (&sealed.iv).into());
        if decryptor.decrypt_padded_mut::<NoPadding>(&mut content).is_err() {
            // Whole blocks were checked with the structure; nothing secret decides this.
            return Err(UnsealError::Malformed(BerError {
                what: "content is not whole blocks",
                offset: 0,
            }));
        }
        let mut window = Zeroizing::new([0u8; SEALED_LEN]);
        for (d, s) in window.iter_mut().zip(content.iter()) {
            *d = *s;
        }
        valid &= content.len().ct_eq(&SEALED_LEN);
        let (text_valid, key) = open_window(&window);
        if bool::from(valid & text_valid) {
            Ok(Identity::from_key(&key))
        } else {
            Err(UnsealError::Sealed)
        }
    }
}

/// The plaintext KMS seals: the identity's [`IDENTITY_LEN`] characters, optionally one
/// `\n`, then PKCS#7 padding: always five AES blocks.
const SEALED_LEN: usize = 80;

/// Checks the decrypted window in constant time: PKCS#7 padding around exactly the
/// identity (pad 6) or the identity and a newline (pad 5), and the identity itself.
fn open_window(window: &[u8; SEALED_LEN]) -> (Choice, Zeroizing<[u8; 32]>) {
    let (chars, tail) = window.split_at(IDENTITY_LEN);
    let all_equal =
        |bytes: &[u8], b: u8| bytes.iter().fold(Choice::from(1), |ok, x| ok & x.ct_eq(&b));
    let bare = all_equal(tail, 6);
    let newline = tail.first().map_or(Choice::from(0), |c| c.ct_eq(&b'\n'))
        & all_equal(tail.get(1..).unwrap_or_default(), 5);
    let mut text = Zeroizing::new([0u8; IDENTITY_LEN]);
    for (d, s) in text.iter_mut().zip(chars) {
        *d = *s;
    }
    let (identity_valid, key) = Identity::decode(&text);
    (identity_valid & (bare | newline), key)
}

/// Checks a blob's CMS structure without a key: everything [`UnsealKey::unseal`] checks
/// before decrypting. For tests and the fuzz target.
pub fn check_structure(blob: &[u8]) -> Result<(), UnsealError> {
    parse_enveloped_data(blob).map(|_| ())
}

/// What the unseal needs from the CMS structure.
struct Sealed {
    encrypted_key: Vec<u8>,
    iv: [u8; 16],
    encrypted_content: Vec<u8>,
}

fn oid(e: &Element<'_>, what: &'static str) -> Result<(), UnsealError> {
    let _ = e.expect(tag::OID, what)?;
    Ok(())
}

/// The next element as an `AlgorithmIdentifier`: its OID, and a reader over the parameters.
fn algorithm<'a>(
    r: &mut Reader<'a>,
    missing: &'static str,
) -> Result<(&'a [u8], Reader<'a>), UnsealError> {
    let alg = r.element(missing)?;
    alg.expect(tag::SEQUENCE, "algorithm must be a SEQUENCE")?;
    let mut params = alg.children();
    let id = params.element("missing algorithm OID")?;
    Ok((id.expect(tag::OID, "algorithm must be an OID")?, params))
}

fn parse_enveloped_data(blob: &[u8]) -> Result<Sealed, UnsealError> {
    let mut top = Reader::new(blob);
    let content_info = top.element("expected ContentInfo")?;
    top.finish("bytes after ContentInfo")?;
    let mut ci = content_info.children();
    content_info.expect(tag::SEQUENCE, "ContentInfo must be a SEQUENCE")?;
    let content_type = ci.element("missing contentType")?;
    oid(&content_type, "contentType must be an OID")?;
    if content_type.contents != OID_ENVELOPED_DATA {
        return Err(UnsealError::Unsupported("content type (expected envelopedData)"));
    }
    let explicit = ci.element("missing content")?;
    explicit.expect(0xa0, "content must be [0] EXPLICIT")?;
    ci.finish("bytes after content")?;
    let mut outer = explicit.children();
    let enveloped = outer.element("missing EnvelopedData")?;
    enveloped.expect(tag::SEQUENCE, "EnvelopedData must be a SEQUENCE")?;
    outer.finish("bytes after EnvelopedData")?;

    let mut ed = enveloped.children();
    ed.element("missing version")?.expect(tag::INTEGER, "version must be an INTEGER")?;
    let mut next = ed.element("missing recipientInfos")?;
    if next.tag == 0xa0 {
        return Err(UnsealError::Unsupported("originatorInfo"));
    }
    next.expect(tag::SET, "recipientInfos must be a SET")?;
    let mut recipients = next.children();
    let ktri = recipients.element("no recipient")?;
    if !recipients.is_empty() {
        return Err(UnsealError::Unsupported("recipient count (expected exactly one)"));
    }
    let encrypted_key = parse_ktri(&ktri)?;
    next = ed.element("missing encryptedContentInfo")?;
    let (iv, encrypted_content) = parse_eci(&next)?;
    if let Some(extra) = ed.next_element()? {
        return Err(if extra.tag == 0xa1 {
            UnsealError::Unsupported("unprotectedAttrs")
        } else {
            UnsealError::Malformed(extra.error("unexpected element in EnvelopedData"))
        });
    }
    Ok(Sealed { encrypted_key, iv, encrypted_content })
}

/// `KeyTransRecipientInfo`: RSAES-OAEP with SHA-256 and MGF1-SHA-256; returns the
/// encrypted content key.
fn parse_ktri(ktri: &Element<'_>) -> Result<Vec<u8>, UnsealError> {
    if ktri.tag != tag::SEQUENCE {
        return Err(UnsealError::Unsupported("recipient type (expected key transport)"));
    }
    let mut r = ktri.children();
    r.element("missing recipient version")?.expect(tag::INTEGER, "version must be an INTEGER")?;
    // rid: issuerAndSerialNumber or [0] subjectKeyIdentifier. There is one key, so it
    // names nothing we need; OAEP fails if the blob was meant for another key.
    let rid = r.element("missing recipient identifier")?;
    if rid.tag != tag::SEQUENCE && rid.tag != 0x80 {
        return Err(UnsealError::Malformed(rid.error("bad recipient identifier")));
    }
    let (alg_oid, mut a) = algorithm(&mut r, "missing keyEncryptionAlgorithm")?;
    if alg_oid != OID_RSAES_OAEP {
        return Err(UnsealError::Unsupported("key transport (expected RSAES-OAEP)"));
    }
    check_oaep_params(a.element("missing RSAES-OAEP parameters")?)?;
    a.finish("bytes after RSAES-OAEP parameters")?;
    let key = r.element("missing encryptedKey")?;
    key.expect(tag::OCTET_STRING, "encryptedKey must be an OCTET STRING")?;
    r.finish("bytes after encryptedKey")?;
    Ok(key.contents.to_vec())
}

/// RSAES-OAEP-params must say SHA-256 and MGF1 with SHA-256 (no label).
fn check_oaep_params(params: Element<'_>) -> Result<(), UnsealError> {
    params.expect(tag::SEQUENCE, "RSAES-OAEP parameters must be a SEQUENCE")?;
    let mut p = params.children();
    // Absent fields mean SHA-1 and MGF1-SHA-1: refused like any other non-SHA-256 choice.
    let hash = p.next_element()?;
    let sha256 = match hash {
        Some(h) if h.tag == 0xa0 => is_sha256_alg(h.children().element("missing hash algorithm")?)?,
        _ => false,
    };
    if !sha256 {
        return Err(UnsealError::Unsupported("OAEP hash (expected SHA-256)"));
    }
    let Some(mgf) = p.next_element()? else {
        return Err(UnsealError::Unsupported("OAEP mask generation (expected MGF1-SHA-256)"));
    };
    if mgf.tag != 0xa1 {
        return Err(UnsealError::Unsupported("OAEP mask generation (expected MGF1-SHA-256)"));
    }
    let mgf_alg = mgf.children().element("missing MGF algorithm")?;
    let mut m = mgf_alg.children();
    let mgf_oid = m.element("missing MGF OID")?;
    if mgf_oid.tag != tag::OID
        || mgf_oid.contents != OID_MGF1
        || !is_sha256_alg(m.element("missing MGF1 hash")?)?
    {
        return Err(UnsealError::Unsupported("OAEP mask generation (expected MGF1-SHA-256)"));
    }
    if p.next_element()?.is_some() {
        return Err(UnsealError::Unsupported("OAEP label"));
    }
    Ok(())
}

/// Whether `alg` is the `AlgorithmIdentifier` of SHA-256 (parameters absent or NULL).
fn is_sha256_alg(alg: Element<'_>) -> Result<bool, UnsealError> {
    alg.expect(tag::SEQUENCE, "hash algorithm must be a SEQUENCE")?;
    let mut h = alg.children();
    let id = h.element("missing hash OID")?;
    let params_ok = match h.next_element()? {
        None => true,
        Some(p) => p.tag == tag::NULL && p.contents.is_empty(),
    };
    Ok(id.tag == tag::OID && id.contents == OID_SHA256 && params_ok && h.is_empty())
}

/// `EncryptedContentInfo`: id-data, AES-256-CBC with a 16-byte IV, and the ciphertext.
fn parse_eci(eci: &Element<'_>) -> Result<([u8; 16], Vec<u8>), UnsealError> {
    eci.expect(tag::SEQUENCE, "encryptedContentInfo must be a SEQUENCE")?;
    let mut r = eci.children();
    let ct = r.element("missing content type")?;
    oid(&ct, "content type must be an OID")?;
    if ct.contents != OID_DATA {
        return Err(UnsealError::Unsupported("inner content type (expected data)"));
    }
    let (alg_oid, mut a) = algorithm(&mut r, "missing contentEncryptionAlgorithm")?;
    if alg_oid != OID_AES256_CBC {
        return Err(UnsealError::Unsupported("content encryption (expected AES-256-CBC)"));
    }
    let iv_el = a.element("missing IV")?;
    let iv: [u8; 16] = iv_el
        .expect(tag::OCTET_STRING, "IV must be an OCTET STRING")?
        .try_into()
        .map_err(|_| UnsealError::Malformed(iv_el.error("IV must be 16 bytes")))?;
    a.finish("bytes after IV")?;
    let content = r.element("missing encryptedContent (detached content is not supported)")?;
    if content.tag != 0x80 && content.tag != 0xa0 {
        return Err(UnsealError::Malformed(content.error("encryptedContent must be [0]")));
    }
    let mut out = Vec::new();
    content.octets_into(&mut out, CONTENT_MAX)?;
    r.finish("bytes after encryptedContent")?;
    if out.is_empty() || out.len() % 16 != 0 {
        return Err(UnsealError::Malformed(
            content.error("encryptedContent is not whole AES blocks"),
        ));
    }
    Ok((iv, out))
}
