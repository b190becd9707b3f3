//! What a hostile parent sends to probe the unseal: KMS's `CiphertextForRecipient` with its
//! unauthenticated AES-256-CBC layer tampered with, block by block, cut at every block
//! boundary, and, with a content key of the parent's own choosing, valid PKCS#7 padding
//! around every kind of malformed identity the enclave's parser could tell apart. Each
//! probe must fail the same way as every other (`docs/threat-model.md`, "No oracles"); the
//! genuine blobs must open.

use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::NoPadding};

use crate::kms_emulator::seal_parts;

/// One blob and what was done to it.
pub struct Probe {
    /// What the probe is, for assertion messages.
    pub name: String,
    /// The `SealedKey` to send.
    pub blob: Vec<u8>,
}

const CEK: [u8; 32] = [0x5a; 32];
const IV: [u8; 16] = [0x3c; 16];

/// `plain` (whole blocks, its padding included) encrypted with AES-256-CBC, no padding added.
fn cbc(cek: &[u8; 32], iv: &[u8; 16], plain: &[u8]) -> Vec<u8> {
    assert_eq!(plain.len() % 16, 0, "whole blocks");
    let mut buf = plain.to_vec();
    let n = buf.len();
    cbc::Encryptor::<aes::Aes256>::new(cek.into(), iv.into())
        .encrypt_padded_mut::<NoPadding>(&mut buf, n)
        .expect("whole blocks")
        .to_vec()
}

/// `text` with PKCS#7 padding.
fn padded(text: &[u8]) -> Vec<u8> {
    let pad = 16 - text.len() % 16;
    let mut out = text.to_vec();
    out.extend(std::iter::repeat_n(u8::try_from(pad).expect("at most 16"), pad));
    out
}

/// `identity` sealed to `spki` as KMS does, with a known content key: opens.
///
/// # Panics
/// If `spki` is not an RSA key.
#[must_use]
pub fn genuine(spki: &[u8], identity: &str) -> Vec<u8> {
    seal_parts(spki, &CEK, &IV, &cbc(&CEK, &IV, &padded(identity.as_bytes()))).expect("RSA key")
}

/// `identity` and a newline (`echo` into a file, then `aws kms encrypt`): opens too.
///
/// # Panics
/// If `spki` is not an RSA key.
#[must_use]
pub fn genuine_with_newline(spki: &[u8], identity: &str) -> Vec<u8> {
    let text = format!("{identity}\n");
    seal_parts(spki, &CEK, &IV, &cbc(&CEK, &IV, &padded(text.as_bytes()))).expect("RSA key")
}

/// Every probe against a boot whose unseal key is `spki`, for a valid, upper-case
/// `identity` (74 characters).
///
/// # Panics
/// If `spki` is not an RSA key or `identity` is not 74 characters.
#[must_use]
pub fn probes(spki: &[u8], identity: &str) -> Vec<Probe> {
    assert_eq!(identity.len(), 74, "an age X25519 identity");
    let mut out = Vec::new();
    let mut add = |name: String, cek: &[u8], iv: &[u8; 16], content: &[u8]| {
        let blob = seal_parts(spki, cek, iv, content).expect("RSA key");
        out.push(Probe { name, blob });
    };
    let plain = padded(identity.as_bytes());
    let content = cbc(&CEK, &IV, &plain);
    // The CBC layer as KMS sent it, tampered with: a bit of each ciphertext block, and the
    // IV (which moves the first plaintext block by a chosen XOR).
    for block in 0..content.len() / 16 {
        let mut c = content.clone();
        c[block * 16 + 15] ^= 0x01;
        add(format!("ciphertext block {block} flipped"), &CEK, &IV, &c);
    }
    let mut iv = IV;
    iv[0] ^= 0x20; // 'A' -> 'a': a prefix of mixed case
    add("IV flipped".into(), &CEK, &iv, &content);
    // Cut at every block boundary: the last kept block's padding decides.
    for blocks in 1..content.len() / 16 {
        add(format!("cut to {blocks} blocks"), &CEK, &IV, &content[..blocks * 16]);
    }
    // The first block alone, with a valid one-byte pad: "content cut to the first block".
    let mut first = identity.as_bytes()[..15].to_vec();
    first.push(1);
    add("first block, valid pad".into(), &CEK, &IV, &cbc(&CEK, &IV, &first));
    // Invalid padding around the genuine text.
    for (name, last) in [("pad byte 0", 0u8), ("pad byte 17", 17), ("pad bytes disagree", 6)] {
        let mut p = plain.clone();
        let n = p.len();
        p[n - 1] = last;
        if last == 6 {
            p[n - 2] = 5;
        }
        add(name.into(), &CEK, &IV, &cbc(&CEK, &IV, &p));
    }
    // Valid padding around a malformed identity, each way the old parser told apart.
    let mut malformed: Vec<(&str, Vec<u8>)> = vec![
        ("one character short", identity.as_bytes()[..73].to_vec()),
        ("one character long", format!("{identity}Q").into_bytes()),
        ("a CRLF line end", format!("{identity}\r\n").into_bytes()),
        ("no prefix", identity.as_bytes()[16..].to_vec()),
    ];
    let mut mixed = identity.as_bytes().to_vec();
    let at = (16..74).find(|&i| mixed[i].is_ascii_uppercase()).expect("a letter");
    mixed[at] = mixed[at].to_ascii_lowercase();
    malformed.push(("mixed case", mixed));
    let mut bad_char = identity.as_bytes().to_vec();
    bad_char[30] = b'B'; // not in the Bech32 alphabet
    malformed.push(("a character outside Bech32", bad_char));
    let mut checksum = identity.as_bytes().to_vec();
    checksum[73] = if checksum[73] == b'Q' { b'P' } else { b'Q' };
    malformed.push(("checksum", checksum));
    let mut prefix = identity.as_bytes().to_vec();
    prefix[4] = b'X'; // AGE-XECRET-...
    malformed.push(("prefix", prefix));
    for (name, text) in malformed {
        add(format!("valid pad, {name}"), &CEK, &IV, &cbc(&CEK, &IV, &padded(&text)));
    }
    // The key transport: a content key of the wrong size, and one for another RSA key.
    add("a 16-byte content key".into(), &CEK[..16], &IV, &content);
    let stranger = seal_parts(stranger_spki(), &CEK, &IV, &content).expect("RSA key");
    out.push(Probe { name: "sealed to another RSA key".into(), blob: stranger });
    out
}

/// Another RSA key's public half (made once: key generation takes a while).
fn stranger_spki() -> &'static [u8] {
    static SPKI: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SPKI.get_or_init(|| {
        let other = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("RSA key");
        rsa::pkcs8::EncodePublicKey::to_public_key_der(&other.to_public_key())
            .expect("DER")
            .into_vec()
    })
}
