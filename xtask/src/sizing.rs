//! `cargo xtask size --accounts N [--scheme S] [--id-len L] [--share-file FILE]
//! [--session-cap C] [--replay-window W]`: the enclave memory to allocate, so operators do
//! not learn it from an out-of-memory boot.
//!
//! The share store is sized exactly as the enclave's loader reserves it
//! (`enclave_core::share_loader::plan_capacity` over the file's length and the announced
//! count, then `ShareStoreBuilder::size_for`): from the real file with `--share-file`, or
//! from the length `signservice-offline deal` would write for N accounts. The other terms are the
//! enclave's fixed structures and a margin; the image's own footprint is added on top,
//! because the EIF's kernel and ramdisks unpack in enclave RAM.

use std::path::Path;

use crate::run::{Failure, Result};

const MIB: u64 = 1 << 20;

/// `age-encryption.org/v1`, one X25519 stanza, the MAC line: always this long.
const AGE_HEADER: u64 = 168;
/// The `age` crate adds a random "grease" stanza: at most a 55-byte first line and a
/// 100-byte body (138 base64 characters with line breaks). Estimates take the maximum.
const AGE_GREASE_MAX: u64 = 200;
/// The payload nonce.
const AGE_NONCE: u64 = 16;
const AGE_CHUNK: u64 = 64 * 1024;
const AGE_TAG: u64 = 16;

/// Base64 length of one share envelope, the longest (docs/share-format.md: Ed25519 136-138
/// bytes, always 184 characters; secp256k1-tr 138-140 bytes, 184 or 188).
fn share_b64_len(scheme: &str) -> Option<u64> {
    match scheme {
        "ed25519" => Some(184),
        "secp256k1-tr" => Some(188),
        _ => None,
    }
}

/// The plaintext `signservice-offline deal` writes: `[`, entries joined by `,\n`, `]`.
fn plaintext_len(accounts: u64, scheme: &str, id_len: u64) -> Option<u64> {
    let entry = |b64: u64| 15 + id_len + 11 + b64 + 2;
    let body = match scheme {
        "both" => {
            let ed = accounts.div_ceil(2);
            ed * entry(share_b64_len("ed25519")?)
                + (accounts - ed) * entry(share_b64_len("secp256k1-tr")?)
        }
        s => accounts * entry(share_b64_len(s)?),
    };
    Some(2 + body + accounts.saturating_sub(1) * 2)
}

/// The age file's length for a plaintext of `plain` bytes.
fn age_len(plain: u64) -> u64 {
    AGE_HEADER + AGE_NONCE + plain + plain.div_ceil(AGE_CHUNK).max(1) * AGE_TAG
}

/// Every term, in bytes.
pub(crate) struct Sizing {
    pub(crate) file_len: u64,
    pub(crate) store: u64,
    pub(crate) fixed: u64,
    pub(crate) budget_mib: u64,
    pub(crate) store_limit_mib: u64,
    pub(crate) image_mib: u64,
    pub(crate) enclave_mib: u64,
}

/// Load buffers (decryptor chunk, scanner object, base64) and the log ring.
const LOAD_BUFFERS: u64 = 80 * 1024 + 256 * 1024;
/// A session slot: nonces, the decoded key package, ids.
const SESSION_BYTES: u64 = 1024;
/// A replay-window entry: session id, expiry, index.
const REPLAY_BYTES: u64 = 56;
/// What the kernel, page tables and the unpacked ramdisks need beside the budget
/// (measured under QEMU with the sim image; see docs/benchmarks.md).
const IMAGE_OVERHEAD_MIB: u64 = 128;

pub(crate) fn compute(
    file_len: u64,
    accounts: u64,
    session_cap: u64,
    replay_window: u64,
) -> Result<Sizing> {
    let (entries, records) = enclave_core::share_loader::plan_capacity(file_len, accounts)
        .map_err(|e| Failure(format!("the loader would refuse this file: {e}")))?;
    let store = enclave_core::share_store::ShareStoreBuilder::size_for(entries, records);
    let fixed = LOAD_BUFFERS + session_cap * SESSION_BYTES + replay_window * REPLAY_BYTES;
    // 10% and 16 MiB above what is allocated: allocator rounding, transient copies.
    let budget_mib = ((store + fixed) * 11 / 10).div_ceil(MIB) + 16;
    let store_limit_mib = store.div_ceil(MIB) + 1;
    let image_mib = IMAGE_OVERHEAD_MIB;
    // nitro-cli allocates in 2 MiB huge pages at least; round to 256 MiB for the allocator's
    // memory_mib in /etc/nitro_enclaves/allocator.yaml.
    let enclave_mib = (budget_mib + image_mib).div_ceil(256) * 256;
    Ok(Sizing { file_len, store, fixed, budget_mib, store_limit_mib, image_mib, enclave_mib })
}

fn usage() -> Failure {
    Failure(
        "usage: cargo xtask size --accounts N [--scheme ed25519|secp256k1-tr|both] [--id-len L] \
         [--share-file FILE] [--session-cap C] [--replay-window W]"
            .into(),
    )
}

pub(crate) fn task(args: &[&str]) -> Result {
    let (mut accounts, mut scheme, mut id_len, mut file) = (None, "both".to_owned(), 8, None);
    let (mut cap, mut window) = (256, 65_536);
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let v = *it.next().ok_or_else(usage)?;
        let n = || v.parse::<u64>().map_err(|_| usage());
        match a {
            "--accounts" => accounts = Some(n()?),
            "--scheme" => v.clone_into(&mut scheme),
            "--id-len" => id_len = n()?,
            "--share-file" => file = Some(v.to_owned()),
            "--session-cap" => cap = n()?,
            "--replay-window" => window = n()?,
            _ => return Err(usage()),
        }
    }
    let accounts = accounts.ok_or_else(usage)?;
    let file_len = match &file {
        Some(f) => std::fs::metadata(Path::new(f)).map_err(|e| Failure(format!("{f}: {e}")))?.len(),
        None => {
            age_len(plaintext_len(accounts, &scheme, id_len).ok_or_else(usage)?) + AGE_GREASE_MAX
        }
    };
    let s = compute(file_len, accounts, cap, window)?;
    #[allow(clippy::cast_precision_loss)]
    let per_account = if accounts == 0 { 0.0 } else { s.store as f64 / accounts as f64 };
    println!(
        "accounts                {accounts} ({})",
        file.as_deref().map_or(scheme.as_str(), |_| "from the file")
    );
    println!(
        "share file              {} bytes{}",
        s.file_len,
        if file.is_some() { "" } else { " (as the dealer writes it)" }
    );
    println!(
        "share store             {} bytes ({per_account:.1} per account), as the loader reserves it",
        s.store
    );
    println!("sessions, replay, bufs  {} bytes (cap {cap}, window {window})", s.fixed);
    println!("--memory-budget-mib     {}   (build-eif --memory-budget-mib)", s.budget_mib);
    println!("--store-limit-mib       {}   (build-eif --store-limit-mib)", s.store_limit_mib);
    println!("kernel + image in RAM   {} MiB", s.image_mib);
    println!(
        "enclave memory          {} MiB   (parent-shim enclave.memory_mib, allocator memory_mib)",
        s.enclave_mib
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The estimate is the length `signservice-offline deal` really writes, for each scheme, up to the
    /// random grease stanza.
    #[test]
    fn estimated_file_lengths_match_the_real_files() {
        for (scheme, choice) in [
            ("ed25519", ::tests::share_gen::SchemeChoice::Ed25519),
            ("secp256k1-tr", ::tests::share_gen::SchemeChoice::Secp256k1Tr),
            ("both", ::tests::share_gen::SchemeChoice::Both),
        ] {
            for accounts in [1, 7] {
                let dir = std::env::temp_dir()
                    .join(format!("xtask-size-{}-{scheme}-{accounts}", std::process::id()));
                let config = ::tests::share_gen::GenConfig::new(accounts, choice, 2, 2);
                ::tests::share_gen::generate_for_tests(config, &dir);
                let file = std::fs::read(dir.join(::tests::share_gen::files::SHARES)).unwrap();
                let real = file.len() as u64;
                // The store the real loader allocates is the one `compute` announces.
                let identity =
                    std::fs::read(dir.join(::tests::share_gen::files::IDENTITY)).unwrap();
                let identity =
                    enclave_core::age_identity::Identity::parse(identity.trim_ascii()).unwrap();
                let config = enclave_core::share_loader::LoaderConfig {
                    allow_empty: false,
                    store_limit_bytes: 1 << 30,
                };
                let mut loader =
                    enclave_core::share_loader::ShareLoader::new(identity, real, accounts, config)
                        .unwrap();
                loader.feed(&file).unwrap();
                let (store, _) = loader.finish().unwrap();
                assert_eq!(store.allocated_bytes(), compute(real, accounts, 1, 1).unwrap().store);
                let _ = std::fs::remove_dir_all(&dir);
                // At most the estimate plus grease; at least the grease's 12 bytes more,
                // less 4 characters for each secp256k1-tr share that came out short.
                let base = age_len(plaintext_len(accounts, scheme, 8).unwrap());
                assert!(
                    real <= base + AGE_GREASE_MAX && real + 4 * accounts >= base + 12,
                    "{scheme} x {accounts}: {real} not within {base} + grease"
                );
            }
        }
    }

    #[test]
    fn the_figures_grow_with_the_accounts_and_stay_consistent() {
        let small =
            compute(age_len(plaintext_len(1000, "both", 8).unwrap()), 1000, 256, 65_536).unwrap();
        let big =
            compute(age_len(plaintext_len(1_000_000, "both", 8).unwrap()), 1_000_000, 256, 65_536)
                .unwrap();
        assert!(big.store > 100 * small.store);
        // About 129 bytes per account (8-character ids, 108 bytes reserved per stored share,
        // the index), as bench boot measures the store.
        assert!((126_000_000..132_000_000).contains(&big.store), "{}", big.store);
        assert!(big.budget_mib * MIB > big.store + big.fixed);
        assert!(big.store_limit_mib * MIB >= big.store);
        assert!(big.enclave_mib >= big.budget_mib + big.image_mib);
        assert_eq!(big.enclave_mib % 256, 0);
        // A count the file cannot hold is refused, as the loader would.
        assert!(compute(1000, 1_000_000, 256, 65_536).is_err());
    }
}
