//! A software NSM for local runs and tests: attestation documents in the AWS layout
//! (`COSE_Sign1`, ES384, CBOR payload with `module_id`, `digest`, `timestamp`, `pcrs`,
//! `certificate`, `cabundle`, `public_key`, `user_data`, `nonce`), signed with a P-384 key.
//!
//! Status: the signing key is generated per process and `certificate`/`cabundle` are empty;
//! the deterministic test CA chain and the verifier come with the rest of issue 4. Nothing
//! here can be mistaken for a Nitro document: the module id says `sim`, and PCRs are
//! whatever the configuration gives (all zero by default).

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};

use crate::boot_state_machine::{Nsm, NsmError};

/// The software NSM.
pub struct SimNsm {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    pcrs: Vec<(u64, [u8; 48])>,
    clock_ms: fn() -> u64,
}

impl SimNsm {
    /// A sim NSM reporting `pcrs` (index, value) and timestamps from `clock_ms`.
    pub fn new(pcrs: Vec<(u64, [u8; 48])>, clock_ms: fn() -> u64) -> Result<Self, NsmError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .map_err(|_| NsmError("cannot generate the sim signing key".into()))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| NsmError("cannot load the sim signing key".into()))?;
        Ok(Self { key, rng, pcrs, clock_ms })
    }

    /// The public key documents are signed with (uncompressed SEC1 point).
    #[must_use]
    pub fn signing_public_key(&self) -> &[u8] {
        use ring::signature::KeyPair;
        self.key.public_key().as_ref()
    }
}

impl Nsm for SimNsm {
    fn attest(
        &mut self,
        nonce: &[u8],
        public_key: &[u8],
        user_data: &[u8],
    ) -> Result<Vec<u8>, NsmError> {
        let mut payload = Vec::new();
        cbor::head(&mut payload, cbor::MAP, 9);
        cbor::text(&mut payload, "module_id");
        cbor::text(&mut payload, "i-sim-enc-sim");
        cbor::text(&mut payload, "digest");
        cbor::text(&mut payload, "SHA384");
        cbor::text(&mut payload, "timestamp");
        cbor::head(&mut payload, cbor::UINT, (self.clock_ms)());
        cbor::text(&mut payload, "pcrs");
        cbor::head(&mut payload, cbor::MAP, self.pcrs.len() as u64);
        for (index, value) in &self.pcrs {
            cbor::head(&mut payload, cbor::UINT, *index);
            cbor::bytes(&mut payload, value);
        }
        cbor::text(&mut payload, "certificate");
        cbor::bytes(&mut payload, &[]);
        cbor::text(&mut payload, "cabundle");
        cbor::head(&mut payload, cbor::ARRAY, 0);
        for (name, value) in
            [("public_key", public_key), ("user_data", user_data), ("nonce", nonce)]
        {
            cbor::text(&mut payload, name);
            if value.is_empty() {
                payload.push(cbor::NULL);
            } else {
                cbor::bytes(&mut payload, value);
            }
        }
        // Protected header {1: -35} (alg: ES384).
        let protected = [0xa1, 0x01, 0x38, 0x22];
        let mut to_sign = Vec::new();
        cbor::head(&mut to_sign, cbor::ARRAY, 4);
        cbor::text(&mut to_sign, "Signature1");
        cbor::bytes(&mut to_sign, &protected);
        cbor::bytes(&mut to_sign, &[]);
        cbor::bytes(&mut to_sign, &payload);
        let signature = self
            .key
            .sign(&self.rng, &to_sign)
            .map_err(|_| NsmError("sim signing failed".into()))?;
        let mut doc = Vec::new();
        cbor::head(&mut doc, cbor::ARRAY, 4);
        cbor::bytes(&mut doc, &protected);
        cbor::head(&mut doc, cbor::MAP, 0);
        cbor::bytes(&mut doc, &payload);
        cbor::bytes(&mut doc, signature.as_ref());
        Ok(doc)
    }
}

/// The CBOR encoding the document needs (RFC 8949, definite lengths only).
mod cbor {
    pub(super) const UINT: u8 = 0;
    pub(super) const BYTES: u8 = 2;
    pub(super) const TEXT: u8 = 3;
    pub(super) const ARRAY: u8 = 4;
    pub(super) const MAP: u8 = 5;
    pub(super) const NULL: u8 = 0xf6;

    pub(super) fn head(out: &mut Vec<u8>, major: u8, value: u64) {
        let m = major << 5;
        let be = value.to_be_bytes();
        match value {
            0..=0x17 => out.push(m | be[7]),
            0x18..=0xff => out.extend_from_slice(&[m | 0x18, be[7]]),
            0x100..=0xffff => {
                out.push(m | 0x19);
                out.extend_from_slice(&be[6..]);
            }
            0x1_0000..=0xffff_ffff => {
                out.push(m | 0x1a);
                out.extend_from_slice(&be[4..]);
            }
            _ => {
                out.push(m | 0x1b);
                out.extend_from_slice(&be);
            }
        }
    }

    pub(super) fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        head(out, BYTES, b.len() as u64);
        out.extend_from_slice(b);
    }

    pub(super) fn text(out: &mut Vec<u8>, s: &str) {
        head(out, TEXT, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
}
