//! Trusted-dealer key generation for every account, and the files the system is set up
//! from (`signservice-offline deal`; the demo and the end-to-end tests call it as a
//! library). Layouts are in `docs/share-format.md` ("Generated files").
//!
//! For each account a dealer splits a fresh key into `parties` FROST shares with threshold
//! `threshold`. Party 1's share goes to the enclave (`service_key_shares.json.age`, age
//! encrypted to a fresh X25519 recipient); the next `gateway_parties` go to the gateway's
//! co-signer (`gateway_shares.json`); the rest go to an offline escrow
//! (`escrow_shares.json.age`, age encrypted to the escrow's recipient), never used online.
//! Every account's group key is public (`group_keys.json`). No online party may hold a
//! quorum alone: the gateway's parties must be fewer than the threshold unless the caller
//! says otherwise by name ([`GenConfig::allow_online_quorum`]). The default 2-of-3 layout:
//! enclave 1, gateway 2, escrow 3.
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
    /// Parties 2..=1+N go to the gateway's co-signer; the rest to the escrow.
    pub gateway_parties: u16,
    /// Whether the gateway may hold `threshold` shares or more, and so sign alone. Off by
    /// default: that layout defeats keeping a share in an enclave.
    pub allow_online_quorum: bool,
    /// The epoch the publisher's manifest names (each new file gets a higher one).
    pub epoch: u64,
    /// Deal at most this many keys per scheme and give them to the accounts in turn
    /// (benchmarks at a million accounts; every account still loads and signs). `None`:
    /// a key of its own for each account, as a real deal.
    pub distinct_keys: Option<u64>,
}

impl GenConfig {
    /// `threshold`-of-`parties` with the default layout: the gateway gets `threshold - 1`
    /// parties (with the enclave's, exactly a quorum), the escrow the rest; epoch 1.
    #[must_use]
    pub fn new(accounts: u64, scheme: SchemeChoice, threshold: u16, parties: u16) -> Self {
        Self {
            accounts,
            scheme,
            threshold,
            parties,
            gateway_parties: threshold.saturating_sub(1),
            allow_online_quorum: false,
            epoch: 1,
            distinct_keys: None,
        }
    }

    /// Parties that go to the escrow.
    #[must_use]
    pub fn escrow_parties(&self) -> u16 {
        self.parties.saturating_sub(1).saturating_sub(self.gateway_parties)
    }

    /// Refuses a layout that does not add up, or that gives one online party a quorum.
    ///
    /// # Errors
    /// [`GenError::Config`], naming the rule.
    pub fn check(&self) -> Result<(), GenError> {
        if self.threshold < 2 {
            return Err(GenError::Config("the threshold must be at least 2".into()));
        }
        if self.parties < self.threshold {
            return Err(GenError::Config("parties must be at least the threshold".into()));
        }
        if self.accounts == 0 {
            return Err(GenError::Config("at least one account".into()));
        }
        if self.gateway_parties == 0
            || 1 + u32::from(self.gateway_parties) > u32::from(self.parties)
        {
            return Err(GenError::Config(format!(
                "the gateway needs from 1 to {} parties of {}",
                self.parties - 1,
                self.parties
            )));
        }
        if self.gateway_parties >= self.threshold && !self.allow_online_quorum {
            return Err(GenError::Config(format!(
                "the gateway would hold {} shares of a {}-of-{} key and could sign without \
                 the enclave; give it at most {} (the rest go to the offline escrow), or \
                 allow an online quorum explicitly (deal --allow-online-quorum)",
                self.gateway_parties,
                self.threshold,
                self.parties,
                self.threshold - 1
            )));
        }
        Ok(())
    }
}

/// Who signs for the deal and who keeps the offline shares: the publisher key signs the
/// share file's manifest; the escrow recipient receives the parties neither the enclave
/// nor the gateway holds.
pub struct Dealer {
    /// Signs the manifest.
    pub publisher: ed25519_dalek::SigningKey,
    /// The offline escrow's age recipient.
    pub escrow: age::x25519::Recipient,
    /// The gateway co-signer's age recipient: with one, its shares are written
    /// age-encrypted ([`files::GATEWAY_SHARES_AGE`]) and never in plaintext.
    pub gateway: Option<age::x25519::Recipient>,
}

/// Why generation failed.
#[derive(Debug)]
pub enum GenError {
    /// Threshold, party count or layout refused: why.
    Config(String),
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
    pub manifest: node_verify::share_manifest::SignedManifest,
}

/// The file names written into the output directory.
pub mod files {
    /// The enclave's shares, age-encrypted.
    pub const SHARES: &str = "service_key_shares.json.age";
    /// The age identity that decrypts [`SHARES`]: to be sealed in KMS, then deleted.
    pub const IDENTITY: &str = "age_identity.txt";
    /// The age recipient [`SHARES`] is encrypted to.
    pub const RECIPIENT: &str = "age_recipient.txt";
    /// The gateway co-signer's shares (0600), when no gateway recipient is given.
    pub const GATEWAY_SHARES: &str = "gateway_shares.json";
    /// The gateway co-signer's shares, age-encrypted to its recipient (0600).
    pub const GATEWAY_SHARES_AGE: &str = "gateway_shares.json.age";
    /// The offline escrow's shares, age-encrypted to the escrow recipient.
    pub const ESCROW_SHARES: &str = "escrow_shares.json.age";
    /// Every account's group public key.
    pub const GROUP_KEYS: &str = "group_keys.json";
    /// The publisher's signed manifest of [`SHARES`] (`node_verify::share_manifest`).
    pub const MANIFEST: &str = "service_key_shares.json.age.manifest";
    /// The deal's parameters, for people: threshold, parties, recipient.
    pub const DEAL: &str = "deal.json";
}

/// One account's generated keys.
#[derive(Clone)]
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

/// Keys dealt per account, or from a pool reused in turn ([`GenConfig::distinct_keys`]).
struct Dealing {
    /// Even, so a reused account keeps its scheme (both schemes alternate by parity).
    pool: Option<u64>,
    dealt: Vec<Account>,
}

impl Dealing {
    fn account<R: RngCore + CryptoRng>(
        &mut self,
        i: u64,
        config: GenConfig,
        rng: &mut R,
    ) -> Result<Account, GenError> {
        if let Some(p) = self.pool.filter(|p| i >= *p) {
            return Ok(self.dealt[usize::try_from(i % p).unwrap_or(0)].clone());
        }
        let a = deal(config.scheme.for_account(i), config.threshold, config.parties, rng)?;
        if self.pool.is_some() {
            self.dealt.push(a.clone());
        }
        Ok(a)
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

/// Writes every file into `dir`, the manifest signed with the dealer's publisher key and
/// the escrow's shares encrypted to its recipient, calling `progress(done)` now and then.
pub fn generate<R: RngCore + CryptoRng>(
    config: GenConfig,
    dealer: &Dealer,
    dir: &Path,
    rng: &mut R,
    progress: &mut dyn FnMut(u64),
) -> Result<GenSummary, GenError> {
    config.check()?;
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
    let mut gateway = gateway_writer(dealer, dir)?;
    let mut escrow = escrow_writer(config, dealer, dir)?;
    let mut keys = BufWriter::new(File::create(dir.join(files::GROUP_KEYS))?);
    enclave.write_all(b"[")?;
    gateway.write_all(b"[")?;
    if let Some(e) = escrow.as_mut() {
        e.write_all(b"[")?;
    }
    keys.write_all(b"[")?;
    let mut dealing =
        Dealing { pool: config.distinct_keys.map(|n| n.max(1) * 2), dealt: Vec::new() };
    for i in 0..config.accounts {
        let sep = if i == 0 { "" } else { ",\n" };
        let account = dealing.account(i, config, rng)?;
        let id = account_id(i);
        let scheme = account.scheme;
        let mut ours = envelope_b64(scheme, &account.key_packages[0]);
        write!(enclave, r#"{sep}{{"account_id":"{id}","share":"{ours}"}}"#)?;
        zeroize::Zeroize::zeroize(&mut ours);
        let split = 1 + usize::from(config.gateway_parties);
        let (gateway_parties, escrow_parties) = account.key_packages.split_at(split);
        write_shares(&mut gateway, sep, &id, scheme, gateway_parties.get(1..).unwrap_or(&[]))?;
        if let Some(e) = escrow.as_mut() {
            write_shares(e, sep, &id, scheme, escrow_parties)?;
        }
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
    gateway.finish()?;
    if let Some(mut e) = escrow {
        e.write_all(b"]\n")?;
        e.finish()?.flush()?;
    }
    keys.flush()?;
    progress(config.accounts);

    let ciphertext = std::fs::read(dir.join(files::SHARES))?;
    let created_at_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let seed = zeroize::Zeroizing::new(dealer.publisher.to_bytes());
    let manifest = node_verify::share_manifest::SignedManifest::for_file(
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
            "{{\"accounts\":{},\"threshold\":{},\"parties\":{},\"enclave_party\":1,\"gateway_parties\":{},\"escrow_parties\":{},\"escrow_recipient\":\"{}\",\"recipient\":\"{}\",\"epoch\":{}}}\n",
            summary.accounts,
            config.threshold,
            config.parties,
            config.gateway_parties,
            config.escrow_parties(),
            dealer.escrow,
            summary.recipient,
            config.epoch
        ),
    )?;
    Ok(summary)
}

/// The escrow's file, age-encrypted to its recipient, if this layout gives it parties.
/// Where the gateway's shares go: plaintext (0600), or age-encrypted to its recipient.
enum GatewayOut {
    Plain(BufWriter<File>),
    Sealed(age::stream::StreamWriter<BufWriter<File>>),
}

impl Write for GatewayOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(buf),
            Self::Sealed(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            Self::Sealed(w) => w.flush(),
        }
    }
}

impl GatewayOut {
    fn finish(self) -> io::Result<()> {
        match self {
            Self::Plain(mut w) => w.flush(),
            Self::Sealed(w) => w.finish()?.flush(),
        }
    }
}

fn gateway_writer(dealer: &Dealer, dir: &Path) -> Result<GatewayOut, GenError> {
    let Some(recipient) = &dealer.gateway else {
        let file = create_secret_file(&dir.join(files::GATEWAY_SHARES))?;
        return Ok(GatewayOut::Plain(BufWriter::new(file)));
    };
    let to_gateway =
        age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
            .map_err(|e| GenError::Frost(e.to_string()))?;
    let file = BufWriter::new(create_secret_file(&dir.join(files::GATEWAY_SHARES_AGE))?);
    Ok(GatewayOut::Sealed(to_gateway.wrap_output(file)?))
}

fn escrow_writer(
    config: GenConfig,
    dealer: &Dealer,
    dir: &Path,
) -> Result<Option<age::stream::StreamWriter<BufWriter<File>>>, GenError> {
    if config.escrow_parties() == 0 {
        return Ok(None);
    }
    let to_escrow =
        age::Encryptor::with_recipients(std::iter::once(&dealer.escrow as &dyn age::Recipient))
            .map_err(|e| GenError::Frost(e.to_string()))?;
    let file = BufWriter::new(create_secret_file(&dir.join(files::ESCROW_SHARES))?);
    Ok(Some(to_escrow.wrap_output(file)?))
}

/// One account's shares for a holder (gateway or escrow): `{"account_id", "scheme",
/// "shares": [envelope, ...]}`, each share's text wiped once written.
fn write_shares(
    out: &mut dyn Write,
    sep: &str,
    id: &str,
    scheme: wire::Scheme,
    key_packages: &[Vec<u8>],
) -> io::Result<()> {
    write!(out, r#"{sep}{{"account_id":"{id}","scheme":"{}","shares":["#, scheme_name(scheme))?;
    for (i, kp) in key_packages.iter().enumerate() {
        let mut share = envelope_b64(scheme, kp);
        let comma = if i == 0 { "" } else { "," };
        let written = write!(out, "{comma}\"{share}\"");
        zeroize::Zeroize::zeroize(&mut share);
        written?;
    }
    out.write_all(b"]}")
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
