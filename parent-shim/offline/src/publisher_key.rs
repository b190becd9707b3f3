//! The share publisher's side of the manifest (`signservice-offline deal`, `reencrypt`,
//! `new-publisher-key`): the publisher key file, and the epoch of the next file. The manifest itself, and its verification, are the relying party's
//! (`node_verify::share_manifest`).

use std::path::Path;

use node_verify::share_manifest::{ManifestError, SignedManifest};
use zeroize::Zeroizing;

/// The epoch of the next file after `current` (the manifest of the file it replaces, if
/// any): `requested` if given and above the current one, else the current one plus one.
///
/// # Errors
/// [`ManifestError::Epoch`]: at or below the current epoch (a rollback), or no current
/// manifest and none requested.
pub fn next_epoch(
    current: Option<&SignedManifest>,
    requested: Option<u64>,
) -> Result<u64, ManifestError> {
    let current = current.map(|m| m.manifest.epoch);
    match (requested, current) {
        (Some(e), Some(old)) if e <= old => Err(ManifestError::Epoch(format!(
            "--epoch {e} is not above the current manifest's epoch {old}"
        ))),
        (Some(e), _) => Ok(e),
        (None, Some(old)) => old
            .checked_add(1)
            .ok_or_else(|| ManifestError::Epoch("the current epoch is the last one".into())),
        (None, None) => Err(ManifestError::Epoch(
            "no current manifest next to the share file: give --epoch (above every epoch \
             published before)"
                .into(),
        )),
    }
}

/// The publisher's Ed25519 seed from `path`: 64 hex digits (surrounding whitespace
/// ignored), in a file no one but its owner can read or write.
///
/// # Errors
/// [`ManifestError::KeyFile`]: unreadable, too open, or not 64 hex digits.
pub fn read_publisher_seed(path: &Path) -> Result<Zeroizing<[u8; 32]>, ManifestError> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |why: String| ManifestError::KeyFile(format!("{}: {why}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(bad(format!(
            "mode {:o} lets others read or write it; chmod 600",
            meta.permissions().mode() & 0o777
        )));
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), seed.as_mut_slice())
        .map_err(|_| bad("expected 64 hex digits (an Ed25519 seed)".into()))?;
    Ok(seed)
}

/// Writes a new publisher seed to `path` (created owner-only, never over an existing file)
/// and returns its public key.
///
/// # Errors
/// The file exists or cannot be written.
pub fn create_publisher_key(path: &Path) -> Result<[u8; 32], ManifestError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        ring::rand::generate(&ring::rand::SystemRandom::new())
            .map_err(|_| ManifestError::KeyFile("no randomness".into()))?
            .expose(),
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ManifestError::KeyFile(format!("{}: {e}", path.display())))?;
    let text = Zeroizing::new(hex::encode(seed.as_slice()) + "\n");
    file.write_all(text.as_bytes())
        .map_err(|e| ManifestError::KeyFile(format!("{}: {e}", path.display())))?;
    Ok(public_key(&seed))
}

/// The Ed25519 public key of `seed`.
#[must_use]
pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> SignedManifest {
        SignedManifest::for_file(b"ciphertext", 3, 7, 1_800_000_000, &[0x50; 32])
    }

    #[test]
    fn the_next_epoch_is_above_the_current_one() {
        let current = example(); // epoch 7
        assert_eq!(next_epoch(Some(&current), None), Ok(8));
        assert_eq!(next_epoch(Some(&current), Some(9)), Ok(9));
        for low in [7, 3] {
            let e = next_epoch(Some(&current), Some(low)).unwrap_err().to_string();
            assert!(e.contains("not above the current manifest's epoch 7"), "{e}");
        }
        assert_eq!(next_epoch(None, Some(1)), Ok(1));
        assert!(next_epoch(None, None).unwrap_err().to_string().contains("give --epoch"));
        let mut last = current;
        last.manifest.epoch = u64::MAX;
        assert!(next_epoch(Some(&last), None).is_err());
    }

    #[test]
    fn the_key_file_must_be_private_and_hex() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("publisher-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("publisher.key");
        let _ = std::fs::remove_file(&path);
        let public = create_publisher_key(&path).unwrap();
        let seed = read_publisher_seed(&path).unwrap();
        assert_eq!(public_key(&seed), public);
        assert!(create_publisher_key(&path).is_err(), "never over an existing file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_publisher_seed(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && !e.contains(&hex::encode(seed.as_slice())), "{e}");
        std::fs::write(&path, "nothex").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_publisher_seed(&path).unwrap_err().to_string().contains("64 hex digits"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
