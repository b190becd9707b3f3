//! The gateway's side of a signing session, for tests, benchmarks and the gateway
//! simulator: grants signed with a gateway key, key sets from a trusted dealer, the other
//! FROST parties, aggregation by the frost crates and verification by independent verifiers
//! (ed25519-dalek for Ed25519, k256's BIP-340 for Taproot). Helpers panic on misuse.
#![allow(missing_docs, clippy::missing_panics_doc, clippy::must_use_candidate)]

use std::collections::BTreeMap;

use ed25519_dalek::Signer;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use wire::session_signatures::{self as signed, SessionGrant};
use wire::{CommitRequest, Scheme};

/// A gateway's grant-signing key.
pub type GatewayKey = ed25519_dalek::SigningKey;

/// The demo gateway key. Its private half is here, so anyone can sign for it: the
/// production enclave refuses it (`enclave_args::PUBLISHED_KEYS`).
pub fn gateway() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x42; 32])
}

/// A gateway key nobody else has: for a production image under test.
pub fn fresh_gateway() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&rand::random())
}

/// The demo share publisher key: it signs the demo's share manifests. Its private half is
/// here, so the production enclave refuses it (`enclave_args::PUBLISHED_KEYS`).
pub fn publisher() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x50; 32])
}

/// A publisher key nobody else has.
pub fn fresh_publisher() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&rand::random())
}

/// The demo gateway's public key, as arguments and configuration carry it.
pub fn gateway_key() -> [u8; 32] {
    gateway().verifying_key().to_bytes()
}

/// The public key of a fresh publisher key (another one at each call).
pub fn fresh_publisher_key() -> [u8; 32] {
    fresh_publisher().verifying_key().to_bytes()
}

/// The publisher's signed manifest of `file` as the parent sends it (`ShareFileBegin`):
/// its length and SHA-256, `accounts`, `epoch`, signed with `publisher`.
pub fn share_file_begin(
    publisher: &ed25519_dalek::SigningKey,
    file: &[u8],
    accounts: u64,
    epoch: u64,
) -> wire::ShareFileBegin {
    let manifest = signed::ShareManifest {
        ciphertext_len: file.len() as u64,
        ciphertext_sha256: Sha256::digest(file).into(),
        accounts,
        epoch,
        created_at_unix: 1_800_000_000,
    };
    begin_for(publisher, &manifest)
}

/// The `ShareFileBegin` that carries `manifest`, signed with `publisher`.
pub fn begin_for(
    publisher: &ed25519_dalek::SigningKey,
    manifest: &signed::ShareManifest,
) -> wire::ShareFileBegin {
    wire::ShareFileBegin {
        total_len: manifest.ciphertext_len,
        sha256: manifest.ciphertext_sha256,
        accounts: manifest.accounts,
        epoch: manifest.epoch,
        created_at_unix: manifest.created_at_unix,
        publisher_signature: publisher.sign(&signed::manifest_statement(manifest)).to_bytes(),
    }
}

/// An owned commit request; `.request()` borrows it as the wire struct.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The answer key of the enclave boot the grant is for.
    pub node: [u8; 32],
    pub scheme: Scheme,
    pub account_id: String,
    pub session_id: [u8; 16],
    pub message_sha256: [u8; 32],
    pub expires_at_unix: u64,
    pub min_epoch: u64,
    pub authorization: [u8; 64],
}

impl Grant {
    /// A grant for the enclave boot whose answer key is `node`, signed with the demo key.
    pub fn new(
        node: [u8; 32],
        scheme: Scheme,
        account_id: &str,
        session: u8,
        message: &[u8],
        expires_at_unix: u64,
    ) -> Self {
        let mut g = Self {
            node,
            scheme,
            account_id: account_id.to_owned(),
            session_id: [session; 16],
            message_sha256: Sha256::digest(message).into(),
            expires_at_unix,
            min_epoch: 0,
            authorization: [0; 64],
        };
        g.sign_with(&gateway());
        g
    }

    /// The same grant for nodes with share file epoch `min_epoch` or later, signed again
    /// with the demo key.
    #[must_use]
    pub fn with_min_epoch(mut self, min_epoch: u64) -> Self {
        self.min_epoch = min_epoch;
        self.sign_with(&gateway());
        self
    }

    pub fn sign_with(&mut self, key: &ed25519_dalek::SigningKey) {
        let mut buf = [0u8; signed::AUTHORIZATION_MAX];
        let n = signed::authorization(&self.grant(), &mut buf).unwrap();
        self.authorization = key.sign(&buf[..n]).to_bytes();
    }

    pub fn grant(&self) -> SessionGrant<'_> {
        SessionGrant {
            node: self.node,
            scheme: self.scheme,
            account_id: &self.account_id,
            session_id: self.session_id,
            message_sha256: self.message_sha256,
            expires_at_unix: self.expires_at_unix,
            min_epoch: self.min_epoch,
        }
    }

    pub fn request(&self) -> CommitRequest<'_> {
        CommitRequest {
            scheme: self.scheme,
            account_id: &self.account_id,
            session_id: self.session_id,
            message_sha256: self.message_sha256,
            expires_at_unix: self.expires_at_unix,
            min_epoch: self.min_epoch,
            authorization: self.authorization,
        }
    }
}

/// One account's key set: every party's serialized key package and the group's public key
/// package (Taproot: both already tweaked, BIP-341 with no script tree).
pub struct KeySet {
    pub scheme: Scheme,
    pub key_packages: Vec<Vec<u8>>,
    pub public_key_package: Vec<u8>,
}

pub fn key_set(scheme: Scheme, threshold: u16, parties: u16, seed: u64) -> KeySet {
    let mut rng = StdRng::seed_from_u64(seed);
    match scheme {
        Scheme::Ed25519 => {
            use frost_ed25519::keys::{IdentifierList, KeyPackage, generate_with_dealer};
            let (shares, public) =
                generate_with_dealer(parties, threshold, IdentifierList::Default, &mut rng)
                    .unwrap();
            KeySet {
                scheme,
                key_packages: shares
                    .into_values()
                    .map(|s| KeyPackage::try_from(s).unwrap().serialize().unwrap())
                    .collect(),
                public_key_package: public.serialize().unwrap(),
            }
        }
        Scheme::Secp256k1Tr => {
            use frost_secp256k1_tr::keys::{
                IdentifierList, KeyPackage, Tweak, generate_with_dealer,
            };
            let (shares, public) =
                generate_with_dealer(parties, threshold, IdentifierList::Default, &mut rng)
                    .unwrap();
            KeySet {
                scheme,
                key_packages: shares
                    .into_values()
                    .map(|s| {
                        let kp = KeyPackage::try_from(s).unwrap().tweak(None::<&[u8]>);
                        kp.serialize().unwrap()
                    })
                    .collect(),
                public_key_package: public.tweak(None::<&[u8]>).serialize().unwrap(),
            }
        }
    }
}

/// Generic over the ciphersuite: what the gateway does with the other parties' shares.
pub mod party {
    use super::{BTreeMap, SeedableRng, StdRng};
    use frost_core::Ciphersuite;
    use frost_core::keys::{KeyPackage, PublicKeyPackage};
    use frost_core::round1::{SigningCommitments, SigningNonces, commit};

    pub fn round1<C: Ciphersuite>(
        key_package: &[u8],
        seed: u64,
    ) -> (SigningNonces<C>, SigningCommitments<C>, KeyPackage<C>) {
        let kp = KeyPackage::<C>::deserialize(key_package).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let (n, c) = commit(kp.signing_share(), &mut rng);
        (n, c, kp)
    }

    /// Builds the signing package from `(key package, commitments)` of every signer.
    pub fn package<C: Ciphersuite>(
        commitments: &[(frost_core::Identifier<C>, Vec<u8>)],
        message: &[u8],
    ) -> Vec<u8> {
        let map: BTreeMap<_, _> = commitments
            .iter()
            .map(|(id, c)| (*id, SigningCommitments::<C>::deserialize(c).unwrap()))
            .collect();
        frost_core::SigningPackage::new(map, message).serialize().unwrap()
    }

    pub fn identifier<C: Ciphersuite>(key_package: &[u8]) -> frost_core::Identifier<C> {
        *KeyPackage::<C>::deserialize(key_package).unwrap().identifier()
    }

    /// Aggregates and returns the signature bytes and the group key bytes.
    pub fn aggregate<C: Ciphersuite>(
        package: &[u8],
        shares: &[(frost_core::Identifier<C>, Vec<u8>)],
        public_key_package: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), frost_core::Error<C>> {
        let package = frost_core::SigningPackage::<C>::deserialize(package)?;
        let shares: BTreeMap<_, _> = shares
            .iter()
            .map(|(id, s)| (*id, frost_core::round2::SignatureShare::<C>::deserialize(s).unwrap()))
            .collect();
        let pkp = PublicKeyPackage::<C>::deserialize(public_key_package)?;
        let sig = frost_core::aggregate(&package, &shares, &pkp)?;
        Ok((sig.serialize()?, pkp.verifying_key().serialize()?))
    }
}

/// Checks a signature with a verifier that shares no code with the frost crates.
pub fn verify_independently(scheme: Scheme, group_key: &[u8], message: &[u8], sig: &[u8]) -> bool {
    match scheme {
        Scheme::Ed25519 => {
            let key = ed25519_dalek::VerifyingKey::from_bytes(group_key.try_into().unwrap());
            let sig = ed25519_dalek::Signature::from_bytes(sig.try_into().unwrap());
            key.is_ok_and(|k| k.verify_strict(message, &sig).is_ok())
        }
        Scheme::Secp256k1Tr => {
            // BIP-340: the x-only output key (the SEC1 key without its parity byte).
            let key = k256::schnorr::VerifyingKey::from_bytes(&group_key[1..]);
            let sig = k256::schnorr::Signature::try_from(sig);
            match (key, sig) {
                (Ok(k), Ok(s)) => k.verify_raw(message, &s).is_ok(),
                _ => false,
            }
        }
    }
}

/// The audit anchor for an engine driven without a chain (the engine's own tests and
/// benchmarks): every answer signed at anchor (0, zeros).
///
/// # Errors
/// Never.
pub fn unaudited(
    _answer: &[u8],
) -> Result<wire::session_signatures::AuditAnchor, enclave_core::signing_engine::EngineError> {
    Ok(wire::session_signatures::AuditAnchor::default())
}
