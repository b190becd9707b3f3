//! Share files for tests: real FROST key packages, the JSON layout of
//! `docs/share-format.md`, and age encryption by the reference `age` crate.
#![allow(dead_code, unreachable_pub)]

#[allow(unused_imports)] // not every test file seals keys
pub use tests::cms_openssl as cms;
pub mod signing;

use std::io::Write;

use age::secrecy::ExposeSecret;
use base64ct::{Base64, Encoding};
use enclave_core::age_identity::Identity;
use enclave_core::share_loader::{LoadError, LoadStats, LoaderConfig, ShareLoader};
use enclave_core::share_store::ShareStore;
use rand::{RngCore, SeedableRng};
use sha2::Digest as _;

/// `../shared/vectors/<sub>` beside the checkout (as CI lays it out), or beside the local
/// repository this checkout was cloned from (a scratch clone elsewhere).
pub fn shared_vectors(sub: &str) -> std::path::PathBuf {
    // Set by tasks that build the tree elsewhere (`cargo xtask mutants` tests a copy).
    if let Some(dir) = std::env::var_os("SIGN_SERVICE_VECTORS") {
        return std::path::Path::new(&dir).join(sub);
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let beside = root.join("../shared/vectors").join(sub);
    if beside.is_dir() {
        return beside;
    }
    let origin = std::process::Command::new("git")
        .current_dir(&root)
        .args(["config", "--get", "remote.origin.url"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let from_origin = std::path::Path::new(&origin).join("../shared/vectors").join(sub);
    if from_origin.is_dir() { from_origin } else { beside }
}

pub const ED25519: u8 = 1;
pub const SECP256K1_TR: u8 = 2;

/// `n` real key packages (serialized by the frost crates) for `scheme`, from one dealer.
pub fn key_packages(scheme: u8, n: u16) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(scheme) * 1000 + u64::from(n));
    let n = n.max(2);
    match scheme {
        ED25519 => {
            use frost_ed25519::keys::{IdentifierList, KeyPackage, generate_with_dealer};
            let (shares, _) =
                generate_with_dealer(n, 2, IdentifierList::Default, &mut rng).unwrap();
            shares
                .into_values()
                .map(|s| KeyPackage::try_from(s).unwrap().serialize().unwrap())
                .collect()
        }
        SECP256K1_TR => {
            use frost_secp256k1_tr::keys::{IdentifierList, KeyPackage, generate_with_dealer};
            let (shares, _) =
                generate_with_dealer(n, 2, IdentifierList::Default, &mut rng).unwrap();
            shares
                .into_values()
                .map(|s| KeyPackage::try_from(s).unwrap().serialize().unwrap())
                .collect()
        }
        _ => unreachable!(),
    }
}

/// The decoded envelope: version 1, scheme, key package.
pub fn envelope(scheme: u8, key_package: &[u8]) -> Vec<u8> {
    let mut v = vec![1, scheme];
    v.extend_from_slice(key_package);
    v
}

/// What the store keeps of a well-framed envelope (`docs/share-format.md`, "In memory"),
/// laid out here from the documented layout: scheme, identifier, signing share, verifying
/// key, `min_signers` as a little-endian u16, the first 8 bytes of the verifying share's
/// SHA-256.
pub fn stored(envelope: &[u8]) -> Vec<u8> {
    let scheme = envelope[1];
    let point = if scheme == ED25519 { 32 } else { 33 };
    let body = &envelope[2 + 5..]; // after the version, scheme and ciphersuite header bytes
    let mut v = vec![scheme];
    v.extend_from_slice(&body[..64]);
    v.extend_from_slice(&body[64 + point..64 + 2 * point]);
    let min_signers = body[64 + 2 * point..]
        .iter()
        .enumerate()
        .fold(0u16, |m, (i, b)| m | (u16::from(b & 0x7f) << (7 * i)));
    v.extend_from_slice(&min_signers.to_le_bytes());
    v.extend_from_slice(&sha2::Sha256::digest(&body[64..64 + point])[..8]);
    v
}

pub fn b64(bytes: &[u8]) -> String {
    let mut buf = vec![0u8; bytes.len().div_ceil(3) * 4];
    Base64::encode(bytes, &mut buf).unwrap().to_owned()
}

/// `n` accounts `A0000000...` with distinct Ed25519 shares: real key packages whose
/// signing share is replaced by a fresh canonical scalar, so every account's bytes differ.
/// They load (the loader does no curve arithmetic) but a session refuses them: the file's
/// verifying share is no longer the secret's (`EngineError::ShareInconsistent`).
pub fn accounts(n: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    let pool = key_packages(ED25519, 16);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut kp = pool[i % pool.len()].clone();
            rng.fill_bytes(&mut kp[37..69]);
            kp[68] &= 0x0f; // below the group order: still a canonical scalar
            (format!("A{i:07}"), envelope(ED25519, &kp))
        })
        .collect()
}

/// Compact JSON, as the share tooling writes it.
pub fn json(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = b"[".to_vec();
    for (i, (id, share)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write!(out, r#"{{"account_id":"{id}","share":"{}"}}"#, b64(share)).unwrap();
    }
    out.push(b']');
    out
}

/// Pretty-printed JSON (as `serde_json::to_string_pretty` or `jq` would write it).
pub fn json_pretty(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let v: Vec<serde_json::Value> = entries
        .iter()
        .map(|(id, s)| serde_json::json!({"account_id": id, "share": b64(s)}))
        .collect();
    serde_json::to_vec_pretty(&v).unwrap()
}

pub struct Keys {
    pub age: age::x25519::Identity,
    pub ours: Identity,
}

pub fn keys() -> Keys {
    let age = age::x25519::Identity::generate();
    let ours = Identity::parse(age.to_string().expose_secret().as_bytes()).unwrap();
    Keys { age, ours }
}

/// Keys from a known identity string (e.g. the fuzz oracle's).
pub fn keys_from(identity: &str) -> Keys {
    let age: age::x25519::Identity = identity.parse().unwrap();
    let ours = Identity::parse(identity.as_bytes()).unwrap();
    Keys { age, ours }
}

pub fn encrypt(keys: &Keys, plain: &[u8]) -> Vec<u8> {
    let r = keys.age.to_public();
    let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
    let mut out = vec![];
    let mut w = enc.wrap_output(&mut out).unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap();
    out
}

pub const CONFIG: LoaderConfig = LoaderConfig { allow_empty: false, store_limit_bytes: 1 << 32 };

/// Loads `file` fed in pieces of `piece` bytes.
pub fn load(
    keys: &Keys,
    file: &[u8],
    announced: u64,
    config: LoaderConfig,
    piece: usize,
) -> Result<(ShareStore, LoadStats), LoadError> {
    let mut loader = ShareLoader::new(&keys.ours, file.len() as u64, announced, config)?;
    for part in file.chunks(piece.max(1)) {
        loader.feed(part)?;
    }
    loader.finish()
}

/// Encrypts `plain` and loads it in one piece with the exact file length.
pub fn load_plain(plain: &[u8], announced: u64) -> Result<(ShareStore, LoadStats), LoadError> {
    let k = keys();
    load(&k, &encrypt(&k, plain), announced, CONFIG, usize::MAX)
}
