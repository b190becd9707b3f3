//! Full verification of an NSM attestation document (outside the enclave TCB; used by the
//! parent, the tests and the `parent-shim attestation verify` CLI).
//!
//! Checks, in order, each with its own error: the `COSE_Sign1` structure (optionally tagged
//! 18) with an ES384 protected header; the payload's fields and types in the AWS layout;
//! the certificate chain from the pinned root (the first `cabundle` entry must be exactly
//! the pinned root) through the bundle to the leaf, every signature ECDSA P-384/SHA-384 and
//! every certificate valid at the given time and in its role (RFC 5280: issuers are CAs
//! allowed to sign certificates within their path length, the leaf is not a CA); the
//! document's ES384 signature by the leaf;
//! then the caller's expectations: PCRs, nonce and public key.

use std::collections::BTreeMap;
use std::fmt;

use ciborium::value::Value;
use ring::signature::{ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

/// ecdsa-with-SHA384.
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";

/// The decoded payload of a verified document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationDoc {
    /// The enclave's module id.
    pub module_id: String,
    /// Always `SHA384`.
    pub digest: String,
    /// Milliseconds since the Unix epoch, when the NSM signed.
    pub timestamp_ms: u64,
    /// PCR index -> value.
    pub pcrs: BTreeMap<u64, Vec<u8>>,
    /// The leaf certificate, DER.
    pub certificate: Vec<u8>,
    /// The CA bundle, root first, DER.
    pub cabundle: Vec<Vec<u8>>,
    /// The enclave-supplied public key, if any.
    pub public_key: Option<Vec<u8>>,
    /// The enclave-supplied user data, if any.
    pub user_data: Option<Vec<u8>>,
    /// The requester's nonce, if any.
    pub nonce: Option<Vec<u8>>,
}

/// What the caller requires of the document beyond its authenticity.
#[derive(Debug, Default, Clone)]
pub struct Expectations<'a> {
    /// Every listed PCR must be present and equal.
    pub pcrs: Option<&'a BTreeMap<u64, Vec<u8>>>,
    /// The nonce must equal this.
    pub nonce: Option<&'a [u8]>,
    /// The public key must equal this.
    pub public_key: Option<&'a [u8]>,
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// Not a `COSE_Sign1` as the NSM produces it.
    Cose(&'static str),
    /// A payload field is missing or has the wrong type or size.
    Payload(&'static str),
    /// A certificate does not parse or uses an unexpected algorithm.
    Certificate(String),
    /// The bundle does not start with the pinned root.
    UntrustedRoot,
    /// A certificate's signature does not verify under its issuer.
    ChainSignature {
        /// Position in the chain (0 = root).
        position: usize,
    },
    /// A certificate is used in a role its extensions forbid (RFC 5280 section 4.2.1.3 and
    /// 4.2.1.9, AWS's verification steps): an issuer that is not a CA, may not sign
    /// certificates, or has more CAs below it than its path length allows; a leaf that is a
    /// CA or may not sign.
    CertificateRole {
        /// Position in the chain (0 = root, last = leaf).
        position: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A certificate is not valid at the given time.
    NotValidAt {
        /// Position in the chain (0 = root, last = leaf).
        position: usize,
    },
    /// The document's signature does not verify under the leaf key.
    DocumentSignature,
    /// A PCR differs from the expected value or is missing.
    PcrMismatch {
        /// The PCR index.
        index: u64,
    },
    /// The nonce differs or is missing.
    NonceMismatch,
    /// The public key differs or is missing.
    PublicKeyMismatch,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cose(w) => write!(f, "not an NSM COSE_Sign1 document: {w}"),
            Self::Payload(w) => write!(f, "attestation payload: {w}"),
            Self::Certificate(w) => write!(f, "certificate: {w}"),
            Self::UntrustedRoot => {
                f.write_str("the certificate chain does not start at the pinned root")
            }
            Self::ChainSignature { position } => {
                write!(f, "certificate {position} is not signed by its issuer")
            }
            Self::CertificateRole { position, what } => {
                write!(f, "certificate {position} {what}")
            }
            Self::NotValidAt { position } => {
                write!(f, "certificate {position} is not valid at the given time")
            }
            Self::DocumentSignature => f.write_str("the document signature does not verify"),
            Self::PcrMismatch { index } => write!(f, "PCR{index} differs from the expected value"),
            Self::NonceMismatch => f.write_str("the nonce differs from the expected one"),
            Self::PublicKeyMismatch => f.write_str("the public key differs from the expected one"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Verifies `document` against `root_der` at `at_unix_secs`, then `expect`.
pub fn verify(
    document: &[u8],
    root_der: &[u8],
    at_unix_secs: u64,
    expect: &Expectations<'_>,
) -> Result<AttestationDoc, VerifyError> {
    let CoseSign1 { protected, alg, payload, signature } = parse_cose(document)?;
    if alg != Some(ES384) {
        return Err(VerifyError::Cose("algorithm is not ES384"));
    }
    if signature.len() != 96 {
        return Err(VerifyError::Cose("signature is not 96 bytes"));
    }
    let doc = parse_payload(&payload)?;
    let leaf_key = verify_chain(&doc, root_der, at_unix_secs)?;
    let to_sign = sig_structure(&protected, &payload)?;
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &leaf_key)
        .verify(&to_sign, &signature)
        .map_err(|_| VerifyError::DocumentSignature)?;
    check_expectations(&doc, expect)?;
    Ok(doc)
}

/// The caller's expectations of a document: every listed PCR, the nonce, the public key.
pub fn check_expectations(
    doc: &AttestationDoc,
    expect: &Expectations<'_>,
) -> Result<(), VerifyError> {
    if let Some(pcrs) = expect.pcrs {
        for (index, want) in pcrs {
            if doc.pcrs.get(index) != Some(want) {
                return Err(VerifyError::PcrMismatch { index: *index });
            }
        }
    }
    if let Some(nonce) = expect.nonce
        && doc.nonce.as_deref() != Some(nonce)
    {
        return Err(VerifyError::NonceMismatch);
    }
    if let Some(key) = expect.public_key
        && doc.public_key.as_deref() != Some(key)
    {
        return Err(VerifyError::PublicKeyMismatch);
    }
    Ok(())
}

/// What a document claims, **authenticated by nothing**: for tools that show what a
/// document says and for a test harness whose emulated NSM signs nothing (`cargo xtask
/// qemu-boot`). A trust decision takes [`verify`] (or a [`DocumentTrust`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthenticated {
    /// The payload.
    pub doc: AttestationDoc,
    /// The protected header's `alg` (-35 for ES384), if it has one.
    pub alg: Option<i64>,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

/// Decodes a document's structure and payload without checking anything they claim.
pub fn decode_unauthenticated(document: &[u8]) -> Result<Unauthenticated, VerifyError> {
    let CoseSign1 { alg, payload, signature, .. } = parse_cose(document)?;
    Ok(Unauthenticated { doc: parse_payload(&payload)?, alg, signature })
}

/// How a relying party authenticates an attestation document. The only implementation in
/// this crate is [`PinnedRoot`]: the AWS chain (or the sim chain, in local mode) from a
/// pinned root.
pub trait DocumentTrust: Send + Sync + fmt::Debug {
    /// The document's payload if it is authentic and meets `expect` at `at_unix_secs`.
    fn verify(
        &self,
        document: &[u8],
        at_unix_secs: u64,
        expect: &Expectations<'_>,
    ) -> Result<AttestationDoc, VerifyError>;
}

/// [`verify`] against one pinned root certificate (DER).
#[derive(Debug, Clone)]
pub struct PinnedRoot(pub Vec<u8>);

impl DocumentTrust for PinnedRoot {
    fn verify(
        &self,
        document: &[u8],
        at_unix_secs: u64,
        expect: &Expectations<'_>,
    ) -> Result<AttestationDoc, VerifyError> {
        verify(document, &self.0, at_unix_secs, expect)
    }
}

/// COSE's number for ECDSA P-384 with SHA-384.
const ES384: i64 = -35;

/// A `COSE_Sign1`'s parts: the protected header (bytes, and its `alg`), payload, signature.
struct CoseSign1 {
    protected: Vec<u8>,
    alg: Option<i64>,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

fn parse_cose(document: &[u8]) -> Result<CoseSign1, VerifyError> {
    let value: Value =
        ciborium::de::from_reader(document).map_err(|_| VerifyError::Cose("not CBOR"))?;
    let value = match value {
        Value::Tag(18, inner) => *inner,
        v => v,
    };
    let Value::Array(items) = value else { return Err(VerifyError::Cose("not an array")) };
    let [protected, unprotected, payload, signature] =
        <[Value; 4]>::try_from(items).map_err(|_| VerifyError::Cose("not four elements"))?;
    let (Value::Bytes(protected), Value::Map(_), Value::Bytes(payload), Value::Bytes(signature)) =
        (protected, unprotected, payload, signature)
    else {
        return Err(VerifyError::Cose("element types"));
    };
    let header: Value = ciborium::de::from_reader(&protected[..])
        .map_err(|_| VerifyError::Cose("protected header is not CBOR"))?;
    let Value::Map(header) = header else { return Err(VerifyError::Cose("protected header")) };
    let alg = header
        .iter()
        .find(|(k, _)| k.as_integer() == Some(1.into()))
        .and_then(|(_, v)| v.as_integer())
        .and_then(|i| i64::try_from(i).ok());
    Ok(CoseSign1 { protected, alg, payload, signature })
}

/// The COSE `Sig_structure` for `COSE_Sign1` with empty external AAD.
fn sig_structure(protected: &[u8], payload: &[u8]) -> Result<Vec<u8>, VerifyError> {
    let structure = Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(vec![]),
        Value::Bytes(payload.to_vec()),
    ]);
    let mut out = Vec::new();
    ciborium::ser::into_writer(&structure, &mut out).map_err(|_| VerifyError::Cose("encoding"))?;
    Ok(out)
}

fn parse_payload(payload: &[u8]) -> Result<AttestationDoc, VerifyError> {
    let value: Value =
        ciborium::de::from_reader(payload).map_err(|_| VerifyError::Payload("not CBOR"))?;
    let Value::Map(map) = value else { return Err(VerifyError::Payload("not a map")) };
    let field = |name: &str| map.iter().find(|(k, _)| k.as_text() == Some(name)).map(|(_, v)| v);
    let text = |name: &'static str| match field(name) {
        Some(Value::Text(t)) => Ok(t.clone()),
        _ => Err(VerifyError::Payload(name)),
    };
    let bytes = |name: &'static str| match field(name) {
        Some(Value::Bytes(b)) => Ok(b.clone()),
        _ => Err(VerifyError::Payload(name)),
    };
    let optional = |name: &'static str| match field(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bytes(b)) => Ok(Some(b.clone())),
        _ => Err(VerifyError::Payload(name)),
    };
    let digest = text("digest")?;
    if digest != "SHA384" {
        return Err(VerifyError::Payload("digest is not SHA384"));
    }
    let timestamp_ms = match field("timestamp") {
        Some(Value::Integer(i)) => {
            u64::try_from(*i).map_err(|_| VerifyError::Payload("timestamp"))?
        }
        _ => return Err(VerifyError::Payload("timestamp")),
    };
    let Some(Value::Map(pcr_map)) = field("pcrs") else { return Err(VerifyError::Payload("pcrs")) };
    let mut pcrs = BTreeMap::new();
    for (k, v) in pcr_map {
        let (Value::Integer(i), Value::Bytes(b)) = (k, v) else {
            return Err(VerifyError::Payload("pcrs"));
        };
        let index = u64::try_from(*i).map_err(|_| VerifyError::Payload("pcrs"))?;
        if index >= 32 || ![32, 48, 64].contains(&b.len()) {
            return Err(VerifyError::Payload("pcrs"));
        }
        pcrs.insert(index, b.clone());
    }
    let Some(Value::Array(bundle)) = field("cabundle") else {
        return Err(VerifyError::Payload("cabundle"));
    };
    let cabundle = bundle
        .iter()
        .map(|c| match c {
            Value::Bytes(b) => Ok(b.clone()),
            _ => Err(VerifyError::Payload("cabundle")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AttestationDoc {
        module_id: text("module_id")?,
        digest,
        timestamp_ms,
        pcrs,
        certificate: bytes("certificate")?,
        cabundle,
        public_key: optional("public_key")?,
        user_data: optional("user_data")?,
        nonce: optional("nonce")?,
    })
}

/// Verifies root -> bundle -> leaf; returns the leaf's public key (uncompressed point).
fn verify_chain(doc: &AttestationDoc, root_der: &[u8], at: u64) -> Result<Vec<u8>, VerifyError> {
    if doc.cabundle.first().map(Vec::as_slice) != Some(root_der) {
        return Err(VerifyError::UntrustedRoot);
    }
    let chain: Vec<&[u8]> = doc
        .cabundle
        .iter()
        .map(Vec::as_slice)
        .chain(std::iter::once(doc.certificate.as_slice()))
        .collect();
    let certs = chain
        .iter()
        .map(|der| Certificate::from_der(der).map_err(|e| VerifyError::Certificate(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    for (position, cert) in certs.iter().enumerate() {
        let issuer = if position == 0 { cert } else { &certs[position - 1] };
        if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
            return Err(VerifyError::ChainSignature { position });
        }
        if cert.signature_algorithm.oid.to_string() != OID_ECDSA_SHA384 {
            return Err(VerifyError::Certificate(format!(
                "certificate {position} is not ecdsa-with-SHA384"
            )));
        }
        let tbs =
            cert.tbs_certificate.to_der().map_err(|e| VerifyError::Certificate(e.to_string()))?;
        let signature = cert.signature.raw_bytes();
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, public_key(issuer))
            .verify(&tbs, signature)
            .map_err(|_| VerifyError::ChainSignature { position })?;
        let validity = &cert.tbs_certificate.validity;
        let (from, to) = (
            validity.not_before.to_unix_duration().as_secs(),
            validity.not_after.to_unix_duration().as_secs(),
        );
        if at < from || at > to {
            return Err(VerifyError::NotValidAt { position });
        }
        // CAs below this one (the bundle after it, not the leaf).
        let below = certs.len().saturating_sub(position + 2);
        check_role(cert, position, position + 1 == certs.len(), below)?;
    }
    let leaf = certs.last().ok_or(VerifyError::Payload("certificate"))?;
    Ok(public_key(leaf).to_vec())
}

/// RFC 5280's role checks: every issuer a CA (basicConstraints cA, critical or not) that
/// may sign certificates (keyUsage, when present, has keyCertSign) with at most its
/// pathLenConstraint of CAs below it; the leaf not a CA, and allowed to sign (keyUsage,
/// when present, has digitalSignature).
fn check_role(
    cert: &Certificate,
    position: usize,
    is_leaf: bool,
    cas_below: usize,
) -> Result<(), VerifyError> {
    use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
    let role = |what| VerifyError::CertificateRole { position, what };
    let tbs = &cert.tbs_certificate;
    let basic = tbs
        .get::<BasicConstraints>()
        .map_err(|_| role("has a malformed basicConstraints"))?
        .map(|(_, b)| b);
    let usage =
        tbs.get::<KeyUsage>().map_err(|_| role("has a malformed keyUsage"))?.map(|(_, k)| k);
    if is_leaf {
        if basic.is_some_and(|b| b.ca) {
            return Err(role("is a CA certificate used as the signing leaf"));
        }
        if usage.is_some_and(|k| !k.digital_signature()) {
            return Err(role("may not sign (keyUsage without digitalSignature)"));
        }
        return Ok(());
    }
    let Some(basic) = basic.filter(|b| b.ca) else {
        return Err(role("issues a certificate but is not a CA (basicConstraints)"));
    };
    if usage.is_some_and(|k| !k.key_cert_sign()) {
        return Err(role("issues a certificate but may not (keyUsage without keyCertSign)"));
    }
    if basic.path_len_constraint.is_some_and(|n| cas_below > usize::from(n)) {
        return Err(role("has more CAs below it than its pathLenConstraint allows"));
    }
    Ok(())
}

fn public_key(cert: &Certificate) -> &[u8] {
    cert.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes()
}

/// Fuzz oracle (`parent-shim/fuzz`, and the truncation tests): any bytes, as a document,
/// give a typed result and never a panic. The root is taken from the input's own bundle when
/// it has one, so the chain code runs too.
pub fn fuzz_verify(data: &[u8]) {
    let root = parse_cose(data)
        .ok()
        .and_then(|cose| parse_payload(&cose.payload).ok())
        .and_then(|d| d.cabundle.first().cloned())
        .unwrap_or_default();
    let _ = verify(data, &root, 1_800_000_000, &Expectations::default());
}

/// The SHA-256 of the AWS Nitro Enclaves root certificate (G1)'s DER, as the AWS
/// documentation gives it ("Verifying the root of trust"). The certificate itself comes from
/// AWS (`AWS_NitroEnclaves_Root-G1.zip`) and is installed by the operator; it is used only
/// if it has exactly this fingerprint.
pub const AWS_NITRO_ROOT_G1_SHA256: &str =
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// Where `aws` (without a path) looks for AWS's root certificate.
pub const AWS_NITRO_ROOT_G1_PATH: &str = "/usr/share/sign-service/aws-nitro-enclaves-root-g1.pem";

/// A certificate as DER, from PEM or DER bytes.
pub fn certificate_der(cert: &[u8]) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::PemObject;
    if cert.starts_with(b"-----BEGIN") {
        return rustls_pki_types::CertificateDer::from_pem_slice(cert)
            .map(|c| c.to_vec())
            .map_err(|e| format!("not a PEM certificate: {e}"));
    }
    Ok(cert.to_vec())
}

/// The attestation root a configuration or command line names, as DER: `aws` or
/// `aws:PATH` (AWS's root, pinned by [`aws_root`]), else a PEM or DER file. The one reader
/// of the root for the daemon and the CLI.
pub fn load_root(spec: &str) -> Result<Vec<u8>, String> {
    if let Some(aws) = aws_root(spec) {
        return aws;
    }
    let bytes = std::fs::read(spec).map_err(|e| format!("{spec}: {e}"))?;
    certificate_der(&bytes).map_err(|e| format!("{spec}: {e}"))
}

/// A root certificate (PEM or DER) as DER, if its SHA-256 is `sha256_hex`.
pub fn pinned_root(cert: &[u8], sha256_hex: &str) -> Result<Vec<u8>, String> {
    let der = certificate_der(cert)?;
    let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, &der).as_ref());
    if digest == sha256_hex {
        Ok(der)
    } else {
        Err(format!("the certificate's SHA-256 is {digest}, not the pinned {sha256_hex}"))
    }
}

/// `aws` or `aws:PATH`: AWS's root from the default place or PATH, checked against the
/// documented fingerprint. `None` if `spec` names an ordinary certificate file instead.
#[must_use]
pub fn aws_root(spec: &str) -> Option<Result<Vec<u8>, String>> {
    let path = match spec {
        "aws" => AWS_NITRO_ROOT_G1_PATH,
        _ => spec.strip_prefix("aws:")?,
    };
    Some(
        std::fs::read(path)
            .map_err(|e| {
                format!(
                    "the AWS Nitro root G1 ({path}): {e}; download AWS_NitroEnclaves_Root-G1.zip \
                     from AWS and install its root.pem there"
                )
            })
            .and_then(|bytes| {
                pinned_root(&bytes, AWS_NITRO_ROOT_G1_SHA256)
                    .map_err(|e| format!("{path} is not the AWS Nitro root G1: {e}"))
            }),
    )
}
