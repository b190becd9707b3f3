//! A software NSM for local runs and tests: attestation documents in the AWS layout
//! (`COSE_Sign1`, ES384, CBOR payload with `module_id`, `digest`, `timestamp`, `pcrs`,
//! `certificate`, `cabundle`, `public_key`, `user_data`, `nonce`), signed with a P-384 key.
//!
//! The leaf key, its certificate and the CA bundle come from configuration: the test chain
//! that `tests::sim_ca` generates (`cargo xtask sim-ca --out DIR` writes it). Nothing here
//! can pass for a Nitro document: the chain ends at the test root, not the AWS root, the
//! module id says `sim`, and PCRs are whatever the configuration gives.

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};

use enclave_core::boot_state_machine::{Nsm, NsmError};
use enclave_core::enclave_args::EnclaveArgs;

/// What the sim NSM signs with and reports.
pub struct SimNsmConfig {
    /// The leaf's P-384 private key, PKCS#8 DER.
    pub leaf_pkcs8: Vec<u8>,
    /// The leaf certificate, DER.
    pub leaf_der: Vec<u8>,
    /// The CA bundle, root first, DER each.
    pub cabundle: Vec<Vec<u8>>,
    /// PCRs reported: (index, SHA-384 value).
    pub pcrs: Vec<(u64, [u8; 48])>,
}

/// Why a sim NSM could not be set up.
#[derive(Debug)]
pub enum SimNsmError {
    /// A file of the chain could not be read.
    Read(std::path::PathBuf, std::io::Error),
    /// The leaf key is not a P-384 PKCS#8 key.
    LeafKey,
    /// No `--sim-nsm-dir` was given.
    NoChainDir,
}

impl std::fmt::Display for SimNsmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Read(path, e) => write!(f, "cannot read {}: {e}", path.display()),
            Self::LeafKey => f.write_str("the sim leaf key is not a P-384 PKCS#8 key"),
            Self::NoChainDir => {
                f.write_str("the sim flavour needs --sim-nsm-dir (cargo xtask sim-ca writes one)")
            }
        }
    }
}

impl std::error::Error for SimNsmError {}

/// The software NSM.
pub struct SimNsm {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    config: SimNsmConfig,
    clock_ms: fn() -> u64,
}

impl SimNsm {
    /// A sim NSM signing with `config`'s leaf key, timestamps from `clock_ms`.
    pub fn new(config: SimNsmConfig, clock_ms: fn() -> u64) -> Result<Self, SimNsmError> {
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &config.leaf_pkcs8, &rng)
                .map_err(|_| SimNsmError::LeafKey)?;
        Ok(Self { key, rng, config, clock_ms })
    }

    /// Reads the chain from a directory laid out as `tests::sim_ca::write` makes it:
    /// `leaf.pk8`, `leaf.der`, and `cabundle/*.der` in name order (root first).
    pub fn from_dir(
        dir: &std::path::Path,
        pcrs: Vec<(u64, [u8; 48])>,
        clock_ms: fn() -> u64,
    ) -> Result<Self, SimNsmError> {
        let read = |p: std::path::PathBuf| std::fs::read(&p).map_err(|e| SimNsmError::Read(p, e));
        let cabundle_dir = dir.join("cabundle");
        let mut bundle: Vec<std::path::PathBuf> = std::fs::read_dir(&cabundle_dir)
            .map_err(|e| SimNsmError::Read(cabundle_dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "der"))
            .collect();
        bundle.sort();
        let cabundle = bundle.into_iter().map(read).collect::<Result<Vec<_>, _>>()?;
        let config = SimNsmConfig {
            leaf_pkcs8: read(dir.join("leaf.pk8"))?,
            leaf_der: read(dir.join("leaf.der"))?,
            cabundle,
            pcrs,
        };
        Self::new(config, clock_ms)
    }

    /// The NSM of a `sim` enclave-rt: the chain in `--sim-nsm-dir` (required) and the
    /// `--sim-pcr` values (PCR0..2 zero unless given), timestamps from the system clock.
    ///
    /// # Errors
    /// No `--sim-nsm-dir`, or its chain cannot be read.
    pub fn from_args(args: &EnclaveArgs) -> Result<Self, SimNsmError> {
        fn now_ms() -> u64 {
            enclave_core::trusted_time::Clock::system().unix_ms()
        }
        let Some(dir) = &args.sim_nsm_dir else { return Err(SimNsmError::NoChainDir) };
        let mut pcrs = args.sim_pcrs.clone();
        for i in 0..3 {
            if !pcrs.iter().any(|(j, _)| *j == i) {
                pcrs.push((i, [0u8; 48]));
            }
        }
        pcrs.sort_by_key(|(i, _)| *i);
        Self::from_dir(dir, pcrs, now_ms)
    }

    /// The public key documents are signed with (uncompressed SEC1 point).
    #[must_use]
    pub fn signing_public_key(&self) -> &[u8] {
        use ring::signature::KeyPair;
        self.key.public_key().as_ref()
    }
}

impl Nsm for SimNsm {
    fn time_ms(&mut self) -> Result<u64, NsmError> {
        Ok((self.clock_ms)())
    }

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
        cbor::head(&mut payload, cbor::MAP, self.config.pcrs.len() as u64);
        for (index, value) in &self.config.pcrs {
            cbor::head(&mut payload, cbor::UINT, *index);
            cbor::bytes(&mut payload, value);
        }
        cbor::text(&mut payload, "certificate");
        cbor::bytes(&mut payload, &self.config.leaf_der);
        cbor::text(&mut payload, "cabundle");
        cbor::head(&mut payload, cbor::ARRAY, self.config.cabundle.len() as u64);
        for cert in &self.config.cabundle {
            cbor::bytes(&mut payload, cert);
        }
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
        let signature =
            self.key.sign(&self.rng, &to_sign).map_err(|_| NsmError::Refused("InternalError"))?;
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
