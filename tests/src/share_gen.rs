//! Trusted-dealer key generation for every account, and the files the system is set up
//! from (`cargo xtask gen-shares`, the demo, the end-to-end tests). Layouts are in
//! `docs/share-format.md` ("Generated files").
//!
//! For each account a dealer splits a fresh key into `parties` FROST shares with threshold
//! `threshold`. Party 1's share goes to the enclave (`service_key_shares.json.age`, age
//! encrypted to a fresh X25519 recipient); parties 2..=P go to the gateway simulator
//! (`gateway_shares.json`); every account's group key is public (`group_keys.json`).
//!
//! Taproot accounts (secp256k1-tr) are tweaked here, once, as BIP-341 prescribes for a
//! key-path-only output (no script tree): every share and the group key are the tweaked
//! ones, so the engine signs with plain FROST and the signature verifies under the output
//! key `Q` as a BIP-340 signature.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use age::secrecy::ExposeSecret;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

/// Which scheme(s) the accounts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeChoice {
    /// FROST(Ed25519, SHA-512).
    Ed25519,
    /// FROST(secp256k1, SHA-256), BIP-340/341.
    Secp256k1Tr,
    /// Alternating: even account numbers Ed25519, odd ones secp256k1-tr.
    Both,
}

impl SchemeChoice {
    /// From the command line spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ed25519" => Some(Self::Ed25519),
            "secp256k1-tr" => Some(Self::Secp256k1Tr),
            "both" => Some(Self::Both),
            _ => None,
        }
    }

    fn for_account(self, i: u64) -> wire::Scheme {
        match self {
            Self::Both if i.is_multiple_of(2) => wire::Scheme::Ed25519,
            Self::Ed25519 => wire::Scheme::Ed25519,
            Self::Secp256k1Tr | Self::Both => wire::Scheme::Secp256k1Tr,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct GenConfig {
    /// Number of accounts.
    pub accounts: u64,
    /// Scheme(s).
    pub scheme: SchemeChoice,
    /// Signers needed.
    pub threshold: u16,
    /// Shares made per account (party 1 is the enclave).
    pub parties: u16,
    /// The epoch the publisher's manifest names (each new file gets a higher one).
    pub epoch: u64,
}

/// Why generation failed.
#[derive(Debug)]
pub enum GenError {
    /// Threshold or party count out of range.
    Config(&'static str),
    /// Writing a file failed.
    Io(io::Error),
    /// The frost crates refused (should not happen with a valid config).
    Frost(String),
}

impl fmt::Display for GenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(m) => write!(f, "bad configuration: {m}"),
            Self::Io(e) => write!(f, "cannot write: {e}"),
            Self::Frost(e) => write!(f, "key generation failed: {e}"),
        }
    }
}

impl std::error::Error for GenError {}

impl From<io::Error> for GenError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct GenSummary {
    /// Accounts generated.
    pub accounts: u64,
    /// The age recipient the share file is encrypted to.
    pub recipient: String,
    /// SHA-256 of `service_key_shares.json.age`, hex.
    pub ciphertext_sha256: String,
    /// Size of `service_key_shares.json.age`.
    pub ciphertext_len: u64,
    /// The signed manifest written next to it.
    pub manifest: parent_shim::share_manifest::SignedManifest,
}

/// The file names written into the output directory.
pub mod files {
    /// The enclave's shares, age-encrypted.
    pub const SHARES: &str = "service_key_shares.json.age";
    /// The age identity that decrypts [`SHARES`]: to be sealed in KMS, then deleted.
    pub const IDENTITY: &str = "age_identity.txt";
    /// The age recipient [`SHARES`] is encrypted to.
    pub const RECIPIENT: &str = "age_recipient.txt";
    /// The other parties' shares, for the gateway simulator.
    pub const GATEWAY_SHARES: &str = "gateway_shares.json";
    /// Every account's group public key.
    pub const GROUP_KEYS: &str = "group_keys.json";
    /// The publisher's signed manifest of [`SHARES`] (`parent_shim::share_manifest`).
    pub const MANIFEST: &str = "service_key_shares.json.age.manifest";
    /// The deal's parameters, for people: threshold, parties, recipient.
    pub const DEAL: &str = "deal.json";
}

/// One account's generated keys.
struct Account {
    scheme: wire::Scheme,
    /// Serialized key packages, party 1 first.
    key_packages: Vec<Vec<u8>>,
    /// Serialized public key package.
    public_key_package: Vec<u8>,
    /// The key signatures verify under, in the scheme's standard encoding (RFC 8032 for
    /// Ed25519; BIP-340 x-only for Taproot).
    group_key: Vec<u8>,
}

fn deal<R: RngCore + CryptoRng>(
    scheme: wire::Scheme,
    threshold: u16,
    parties: u16,
    rng: &mut R,
) -> Result<Account, GenError> {
    let frost = |e: &dyn fmt::Display| GenError::Frost(e.to_string());
    match scheme {
        wire::Scheme::Ed25519 => {
            use frost_ed25519::keys::{IdentifierList, KeyPackage, generate_with_dealer};
            let (shares, public) =
                generate_with_dealer(parties, threshold, IdentifierList::Default, rng)
                    .map_err(|e| frost(&e))?;
            let mut key_packages = Vec::with_capacity(shares.len());
            for share in shares.into_values() {
                let kp = KeyPackage::try_from(share).map_err(|e| frost(&e))?;
                key_packages.push(kp.serialize().map_err(|e| frost(&e))?);
            }
            Ok(Account {
                scheme,
                key_packages,
                group_key: public.verifying_key().serialize().map_err(|e| frost(&e))?,
                public_key_package: public.serialize().map_err(|e| frost(&e))?,
            })
        }
        wire::Scheme::Secp256k1Tr => {
            use frost_secp256k1_tr::keys::{
                IdentifierList, KeyPackage, Tweak, generate_with_dealer,
            };
            let (shares, public) =
                generate_with_dealer(parties, threshold, IdentifierList::Default, rng)
                    .map_err(|e| frost(&e))?;
            let mut key_packages = Vec::with_capacity(shares.len());
            for share in shares.into_values() {
                let kp = KeyPackage::try_from(share).map_err(|e| frost(&e))?.tweak(None::<&[u8]>);
                key_packages.push(kp.serialize().map_err(|e| frost(&e))?);
            }
            let public = public.tweak(None::<&[u8]>);
            let sec1 = public.verifying_key().serialize().map_err(|e| frost(&e))?;
            Ok(Account {
                scheme,
                key_packages,
                group_key: sec1.get(1..).unwrap_or_default().to_vec(),
                public_key_package: public.serialize().map_err(|e| frost(&e))?,
            })
        }
    }
}

/// The enclave's share string: base64 of version 1 || scheme || key package.
fn envelope_b64(scheme: wire::Scheme, key_package: &[u8]) -> String {
    let mut v = Vec::with_capacity(2 + key_package.len());
    v.push(1);
    v.push(scheme as u8);
    v.extend_from_slice(key_package);
    let s = B64.encode(&v);
    zeroize::Zeroize::zeroize(&mut v);
    s
}

fn scheme_name(s: wire::Scheme) -> &'static str {
    match s {
        wire::Scheme::Ed25519 => "ed25519",
        wire::Scheme::Secp256k1Tr => "secp256k1-tr",
    }
}

/// The account id of account number `i`.
#[must_use]
pub fn account_id(i: u64) -> String {
    format!("A{i:07}")
}

/// Writes every file into `dir`, the manifest signed with `publisher`, calling
/// `progress(done)` now and then.
pub fn generate<R: RngCore + CryptoRng>(
    config: GenConfig,
    publisher: &ed25519_dalek::SigningKey,
    dir: &Path,
    rng: &mut R,
    progress: &mut dyn FnMut(u64),
) -> Result<GenSummary, GenError> {
    if config.threshold < 2 {
        return Err(GenError::Config("the threshold must be at least 2"));
    }
    if config.parties < config.threshold {
        return Err(GenError::Config("parties must be at least the threshold"));
    }
    if config.accounts == 0 {
        return Err(GenError::Config("at least one account"));
    }
    std::fs::create_dir_all(dir)?;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    write_secret_file(&dir.join(files::IDENTITY), identity.to_string().expose_secret())?;
    std::fs::write(dir.join(files::RECIPIENT), format!("{recipient}\n"))?;

    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(|e| GenError::Frost(e.to_string()))?;
    let shares_file = BufWriter::new(File::create(dir.join(files::SHARES))?);
    let mut enclave = encryptor.wrap_output(shares_file)?;
    let mut gateway = BufWriter::new(create_secret_file(&dir.join(files::GATEWAY_SHARES))?);
    let mut keys = BufWriter::new(File::create(dir.join(files::GROUP_KEYS))?);
    enclave.write_all(b"[")?;
    gateway.write_all(b"[")?;
    keys.write_all(b"[")?;
    for i in 0..config.accounts {
        let sep = if i == 0 { "" } else { ",\n" };
        let account = deal(config.scheme.for_account(i), config.threshold, config.parties, rng)?;
        let id = account_id(i);
        let scheme = account.scheme;
        let mut ours = envelope_b64(scheme, &account.key_packages[0]);
        write!(enclave, r#"{sep}{{"account_id":"{id}","share":"{ours}"}}"#)?;
        zeroize::Zeroize::zeroize(&mut ours);
        let others: Vec<String> = account.key_packages[1..]
            .iter()
            .map(|kp| format!("\"{}\"", envelope_b64(scheme, kp)))
            .collect();
        write!(
            gateway,
            r#"{sep}{{"account_id":"{id}","scheme":"{}","shares":[{}]}}"#,
            scheme_name(scheme),
            others.join(",")
        )?;
        write!(
            keys,
            r#"{sep}{{"account_id":"{id}","scheme":"{}","group_key":"{}","public_key_package":"{}"}}"#,
            scheme_name(scheme),
            hex(&account.group_key),
            B64.encode(&account.public_key_package)
        )?;
        if i % 1024 == 0 {
            progress(i);
        }
    }
    enclave.write_all(b"]")?;
    gateway.write_all(b"]\n")?;
    keys.write_all(b"]\n")?;
    enclave.finish()?.flush()?;
    gateway.flush()?;
    keys.flush()?;
    progress(config.accounts);

    let ciphertext = std::fs::read(dir.join(files::SHARES))?;
    let created_at_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let seed = zeroize::Zeroizing::new(publisher.to_bytes());
    let manifest = parent_shim::share_manifest::SignedManifest::for_file(
        &ciphertext,
        config.accounts,
        config.epoch,
        created_at_unix,
        &seed,
    );
    std::fs::write(dir.join(files::MANIFEST), manifest.to_json())?;
    let summary = GenSummary {
        accounts: config.accounts,
        recipient: recipient.to_string(),
        ciphertext_sha256: hex(Sha256::digest(&ciphertext)),
        ciphertext_len: ciphertext.len() as u64,
        manifest,
    };
    std::fs::write(
        dir.join(files::DEAL),
        format!(
            "{{\"accounts\":{},\"threshold\":{},\"parties\":{},\"recipient\":\"{}\",\"epoch\":{}}}\n",
            summary.accounts, config.threshold, config.parties, summary.recipient, config.epoch
        ),
    )?;
    Ok(summary)
}

/// Owner-only, created fresh (never through an existing file or link).
fn create_secret_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

fn write_secret_file(path: &Path, text: &str) -> io::Result<()> {
    writeln!(create_secret_file(path)?, "{text}")
}

use hex::encode as hex;
