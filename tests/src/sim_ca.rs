//! The test CA chain of the sim NSM, generated deterministically: root -> intermediate ->
//! leaf, all ECDSA P-384 like the AWS Nitro chain, with keys derived from fixed labels (so
//! every run and every machine has the same keys, subjects, serials and validity). ECDSA
//! signatures in the certificates are randomized by `ring`, so certificate bytes differ per
//! run; what a verifier pins, the root's key and name, does not.

use p384::pkcs8::EncodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P384_SHA384, SerialNumber, date_time_ymd,
};
use sha2::{Digest, Sha384};

/// The chain, DER-encoded, and the leaf's private key (PKCS#8) for the sim NSM.
pub struct SimCa {
    /// Self-signed root: what a verifier pins.
    pub root_der: Vec<u8>,
    /// Intermediate, signed by the root.
    pub intermediate_der: Vec<u8>,
    /// Leaf, signed by the intermediate: signs attestation documents.
    pub leaf_der: Vec<u8>,
    /// The leaf's key, PKCS#8 DER.
    pub leaf_pkcs8: Vec<u8>,
}

/// Why the chain could not be made.
#[derive(Debug)]
pub struct SimCaError(pub String);

impl<E: std::fmt::Display> From<E> for SimCaError {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

/// A P-384 key derived from `label`: the scalar is SHA-384 of the label (retried with a
/// counter in the negligible case it is out of range).
fn key(label: &str) -> Result<(KeyPair, Vec<u8>), SimCaError> {
    for counter in 0u8..=255 {
        let scalar = Sha384::new().chain_update(label).chain_update([counter]).finalize();
        if let Ok(secret) = p384::SecretKey::from_slice(&scalar) {
            let pkcs8 = secret.to_pkcs8_der()?.as_bytes().to_vec();
            let pair = KeyPair::from_pkcs8_der_and_sign_algo(
                &rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.clone()),
                &PKCS_ECDSA_P384_SHA384,
            )?;
            return Ok((pair, pkcs8));
        }
    }
    Err(SimCaError(format!("no valid scalar for {label}")))
}

/// A certificate's role in the chain: a CA (with a path length, or none) that may sign
/// certificates, or an end entity that may sign documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Ca(Option<u8>),
    EndEntity,
    /// A CA whose keyUsage lacks keyCertSign.
    CaWithoutCertSign,
    /// An end entity whose keyUsage lacks digitalSignature.
    EndEntityWithoutSigning,
}

fn params(cn: &str, serial: u64, role: Role) -> Result<CertificateParams, SimCaError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::OrganizationName, "Sign Service test CA (not AWS)");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(SerialNumber::from(serial));
    p.not_before = date_time_ymd(2024, 1, 1);
    p.not_after = date_time_ymd(2049, 12, 31);
    match role {
        Role::Ca(path_len) => {
            p.is_ca = IsCa::Ca(
                path_len.map_or(BasicConstraints::Unconstrained, BasicConstraints::Constrained),
            );
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        }
        Role::CaWithoutCertSign => {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        }
        // Written out (basicConstraints cA false, keyUsage), as AWS's leaves carry them:
        // rcgen leaves an end entity's extensions out unless told.
        Role::EndEntity => {
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        }
        Role::EndEntityWithoutSigning => {
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
        }
    }
    Ok(p)
}

/// A chain that breaks RFC 5280's role rules in one way, for the verifier's tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misuse {
    /// The chain as the sim NSM uses it: nothing wrong.
    None,
    /// The intermediate is an end-entity (leaf) certificate.
    LeafAsIntermediate,
    /// The intermediate is a CA whose keyUsage does not allow signing certificates.
    IntermediateWithoutCertSign,
    /// The root allows no CA below it (pathLenConstraint 0), and the intermediate is one.
    PathLengthExceeded,
    /// The leaf is a CA certificate.
    CaAsLeaf,
    /// The leaf's keyUsage does not allow signing (no digitalSignature).
    LeafWithoutDigitalSignature,
    /// Nothing wrong, with the tightest pathLenConstraints the chain allows (the root 1, the
    /// intermediate 0), as AWS's chains carry them.
    ExactPathLengths,
}

/// Generates the chain.
pub fn generate() -> Result<SimCa, SimCaError> {
    generate_with(Misuse::None)
}

/// Generates the chain with `misuse` (same keys and names as [`generate`]).
pub fn generate_with(misuse: Misuse) -> Result<SimCa, SimCaError> {
    let (root_key, _) = key("sign-service sim nsm root")?;
    let (inter_key, _) = key("sign-service sim nsm intermediate")?;
    let (leaf_key, leaf_pkcs8) = key("sign-service sim nsm leaf")?;
    let (root_role, inter_role, leaf_role) = match misuse {
        Misuse::None => (Role::Ca(None), Role::Ca(None), Role::EndEntity),
        Misuse::LeafAsIntermediate => (Role::Ca(None), Role::EndEntity, Role::EndEntity),
        Misuse::IntermediateWithoutCertSign => {
            (Role::Ca(None), Role::CaWithoutCertSign, Role::EndEntity)
        }
        Misuse::PathLengthExceeded => (Role::Ca(Some(0)), Role::Ca(None), Role::EndEntity),
        Misuse::CaAsLeaf => (Role::Ca(None), Role::Ca(None), Role::Ca(None)),
        Misuse::LeafWithoutDigitalSignature => {
            (Role::Ca(None), Role::Ca(None), Role::EndEntityWithoutSigning)
        }
        Misuse::ExactPathLengths => (Role::Ca(Some(1)), Role::Ca(Some(0)), Role::EndEntity),
    };
    let root = params("sim-nsm-root", 1, root_role)?.self_signed(&root_key)?;
    let inter =
        params("sim-nsm-intermediate", 2, inter_role)?.signed_by(&inter_key, &root, &root_key)?;
    let leaf = params("i-sim-enc-sim", 3, leaf_role)?.signed_by(&leaf_key, &inter, &inter_key)?;
    Ok(SimCa {
        root_der: root.der().to_vec(),
        intermediate_der: inter.der().to_vec(),
        leaf_der: leaf.der().to_vec(),
        leaf_pkcs8,
    })
}

/// Writes the chain as the sim NSM reads it: `leaf.pk8`, `leaf.der`, `cabundle/0-root.der`,
/// `cabundle/1-intermediate.der` (root first, as in AWS documents), and `root.der` for
/// verifiers.
pub fn write(ca: &SimCa, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("cabundle"))?;
    std::fs::write(dir.join("leaf.pk8"), &ca.leaf_pkcs8)?;
    std::fs::write(dir.join("leaf.der"), &ca.leaf_der)?;
    std::fs::write(dir.join("cabundle/0-root.der"), &ca.root_der)?;
    std::fs::write(dir.join("cabundle/1-intermediate.der"), &ca.intermediate_der)?;
    std::fs::write(dir.join("root.der"), &ca.root_der)?;
    Ok(())
}
