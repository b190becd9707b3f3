//! Share re-encryption, run offline by an operator: the share file re-encrypted to a fresh
//! age identity, which is sealed with KMS (and optionally to an escrow recipient), checked
//! end to end before anything is written.
//!
//! Plaintext (the shares, both identities) exists only in memory, in buffers wiped when
//! dropped; the files written are the new ciphertext, the KMS blob of the new identity, its
//! public recipient and, if asked, the escrow copy (age-encrypted). Both the old and the
//! new file are opened by the enclave's own loader (`enclave_core::share_loader`), so a file
//! the enclave would refuse is never produced, and the new one holds exactly the old one's
//! plaintext.

use std::fmt;
use std::io::{Read, Write};

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

/// The result, in memory.
pub struct Reencrypted {
    /// The new share file (ciphertext).
    pub share_file: Vec<u8>,
    /// The new identity (secret; wiped by `age` on drop).
    pub identity: age::x25519::Identity,
    /// Its public recipient (`age1...`).
    pub recipient: String,
    /// Accounts in the file, as the enclave's loader counted them.
    pub accounts: u64,
    /// SHA-256 of the old and new ciphertexts.
    pub old_sha256: [u8; 32],
    /// See `old_sha256`.
    pub new_sha256: [u8; 32],
}

impl fmt::Debug for Reencrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reencrypted")
            .field("share_file_bytes", &self.share_file.len())
            .field("recipient", &self.recipient)
            .field("accounts", &self.accounts)
            .finish_non_exhaustive()
    }
}

/// Why re-encryption stopped (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReencryptError {
    /// The old identity is not an `AGE-SECRET-KEY-1...` X25519 identity.
    BadIdentity,
    /// The enclave's loader refuses the old file with the old identity: its reason.
    OldFile(String),
    /// age failed to decrypt or encrypt.
    Age(String),
    /// The new file did not check out (should not happen): what differed.
    Verification(String),
}

impl fmt::Display for ReencryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadIdentity => f.write_str("the old identity is not an age X25519 identity"),
            Self::OldFile(e) => write!(f, "the enclave would refuse the old share file: {e}"),
            Self::Age(e) => write!(f, "age: {e}"),
            Self::Verification(e) => write!(f, "the new share file does not check out: {e}"),
        }
    }
}

impl std::error::Error for ReencryptError {}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// Loads `file` with the enclave's loader and `identity`; the account count.
fn enclave_load(file: &[u8], identity: &str) -> Result<u64, String> {
    let identity = enclave_core::age_identity::Identity::parse(identity.trim().as_bytes())
        .map_err(|e| format!("identity: {e:?}"))?;
    let config = enclave_core::share_loader::LoaderConfig {
        allow_empty: false,
        store_limit_bytes: u64::MAX,
    };
    let mut loader =
        enclave_core::share_loader::ShareLoader::new(identity, file.len() as u64, 0, config)
            .map_err(|e| e.to_string())?;
    for piece in file.chunks(64 * 1024) {
        loader.feed(piece).map_err(|e| e.to_string())?;
    }
    let (store, _) = loader.finish().map_err(|e| e.to_string())?;
    Ok(store.len())
}

fn decrypt(file: &[u8], identity: &age::x25519::Identity) -> Result<Zeroizing<Vec<u8>>, String> {
    let decryptor = age::Decryptor::new(file).map_err(|e| e.to_string())?;
    let mut reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| e.to_string())?;
    let mut plain = Zeroizing::new(Vec::with_capacity(file.len()));
    reader.read_to_end(&mut plain).map_err(|e| e.to_string())?;
    Ok(plain)
}

/// `plain` encrypted to `recipient`.
pub fn encrypt_to(plain: &[u8], recipient: &dyn age::Recipient) -> Result<Vec<u8>, String> {
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient)).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(plain.len() + 1024);
    let mut writer = encryptor.wrap_output(&mut out).map_err(|e| e.to_string())?;
    writer.write_all(plain).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Re-encrypts `old_file` (which `old_identity` opens) to a fresh identity and checks the
/// result with the enclave's loader.
pub fn reencrypt(old_file: &[u8], old_identity: &str) -> Result<Reencrypted, ReencryptError> {
    let old: age::x25519::Identity =
        old_identity.trim().parse().map_err(|_| ReencryptError::BadIdentity)?;
    let accounts = enclave_load(old_file, old_identity).map_err(ReencryptError::OldFile)?;
    let plain = decrypt(old_file, &old).map_err(ReencryptError::Age)?;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let share_file = encrypt_to(&plain, &recipient).map_err(ReencryptError::Age)?;
    let new_identity = Zeroizing::new(identity.to_string().expose_secret().to_owned());
    let again = enclave_load(&share_file, &new_identity).map_err(ReencryptError::Verification)?;
    if again != accounts {
        return Err(ReencryptError::Verification(format!("{again} accounts, not {accounts}")));
    }
    let round_trip = decrypt(&share_file, &identity).map_err(ReencryptError::Verification)?;
    if sha256(&round_trip) != sha256(&plain) {
        return Err(ReencryptError::Verification("the plaintext differs".into()));
    }
    if enclave_load(&share_file, old_identity).is_ok() {
        return Err(ReencryptError::Verification("the old identity still opens it".into()));
    }
    Ok(Reencrypted {
        old_sha256: sha256(old_file),
        new_sha256: sha256(&share_file),
        share_file,
        recipient: recipient.to_string(),
        identity,
        accounts,
    })
}
