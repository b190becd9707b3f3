//! `cargo xtask bench boot --accounts N`: the time and peak memory to turn an age-encrypted
//! share file into the in-memory store, against two baselines measured in the same run:
//!
//! 1. ours: `ShareLoader` (streaming decrypt + scan + parse + store), fed 32 KiB pieces
//!    as vsock frames deliver them;
//! 2. baseline: the `age` crate to a `Vec`, `serde_json` to `Vec<Entry>`, then a
//!    `HashMap<String, String>` (the straightforward implementation);
//! 3. floor: ChaCha20-Poly1305 decryption alone of the same number of bytes (ring).
//!
//! Peak memory is what each phase allocates above what was live when it started, counted by
//! a global allocator wrapper. The last line is JSON for scripts.
#![allow(
    missing_docs,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::unwrap_used
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use enclave_core::share_loader::{LoaderConfig, ShareLoader};
use ring::aead;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let live = LIVE.fetch_add(new, Relaxed) + new;
        PEAK.fetch_max(live, Relaxed);
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`; returns its result, the seconds it took and the peak bytes it added.
fn measure<T>(f: impl FnOnce() -> T) -> (T, f64, usize) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let start = Instant::now();
    let out = f();
    let secs = start.elapsed().as_secs_f64();
    (out, secs, PEAK.load(Relaxed) - base)
}

#[derive(serde::Deserialize)]
struct Entry {
    account_id: String,
    share: String,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let accounts: usize = args
        .iter()
        .position(|a| a == "--accounts")
        .and_then(|i| args.get(i + 1))
        .map_or(100_000, |n| n.parse().unwrap());

    eprintln!("generating {accounts} accounts...");
    let entries = common::accounts(accounts, 42);
    let plain = common::json(&entries);
    drop(entries);
    let keys = common::keys();
    let file = common::encrypt(&keys, &plain);
    let plain_len = plain.len();
    drop(plain);
    eprintln!("share file: {plain_len} bytes of JSON, {} bytes encrypted", file.len());

    let config = LoaderConfig { allow_empty: false, store_limit_bytes: u64::MAX };
    let ((store, stats), ours_s, ours_peak) = measure(|| {
        let mut loader =
            ShareLoader::new(&keys.ours, file.len() as u64, accounts as u64, config).unwrap();
        for piece in file.chunks(32 * 1024) {
            loader.feed(piece).unwrap();
        }
        loader.finish().unwrap()
    });
    assert_eq!(stats.accounts, accounts as u64);
    let store_bytes = stats.store_bytes;
    // Wiping the store at shutdown is not part of loading it.
    drop(store);
    if args.iter().any(|a| a == "--stages") {
        stages(&keys, &file);
        println!("{:<28} {ours_s:.3} s", "+ store (the whole load)");
        first_touch(store_bytes as usize);
        return;
    }
    if args.iter().any(|a| a == "--only-ours") {
        // For profilers: repeat our phase and skip the baselines.
        for _ in 0..5 {
            let mut loader =
                ShareLoader::new(&keys.ours, file.len() as u64, accounts as u64, config).unwrap();
            for piece in file.chunks(32 * 1024) {
                loader.feed(piece).unwrap();
            }
            let result = loader.finish().unwrap();
            black_box(&result);
            std::mem::forget(result); // keep the profile on loading, not on the wipe
        }
        println!("ours {ours_s:.4} s");
        return;
    }

    let (map_len, baseline_s, baseline_peak) = measure(|| {
        let d = age::Decryptor::new(&file[..]).unwrap();
        let mut r = d.decrypt(std::iter::once(&keys.age as &dyn age::Identity)).unwrap();
        let mut text = Vec::new();
        r.read_to_end(&mut text).unwrap();
        let list: Vec<Entry> = serde_json::from_slice(&text).unwrap();
        drop(text);
        let map: HashMap<String, String> =
            list.into_iter().map(|e| (e.account_id, e.share)).collect();
        black_box(map)
    });
    assert_eq!(map_len.len(), accounts);
    drop(map_len);

    let floor_s = floor(plain_len);

    let per_account = store_bytes as f64 / accounts as f64;
    println!("accounts  {accounts}");
    println!(
        "ours      {ours_s:>8.3} s   peak {:>8.1} MiB   (store {:.1} MiB, {per_account:.1} B/account)",
        mib(ours_peak),
        mib(store_bytes as usize)
    );
    println!("baseline  {baseline_s:>8.3} s   peak {:>8.1} MiB", mib(baseline_peak));
    println!("floor     {floor_s:>8.3} s   (ChaCha20-Poly1305 over {plain_len} bytes)");
    println!(
        "ratios: baseline/ours time {:.2}x (goal >= 3), ours/floor time {:.2}x (goal <= 2.5), \
         baseline/ours peak {:.2}x (goal >= 3), ours peak/store {:.3}x (goal <= 1.3)",
        baseline_s / ours_s,
        ours_s / floor_s,
        baseline_peak as f64 / ours_peak as f64,
        ours_peak as f64 / store_bytes as f64
    );
    println!(
        "{{\"bench\":\"boot\",\"accounts\":{accounts},\"ours_s\":{ours_s:.4},\"baseline_s\":{baseline_s:.4},\
         \"floor_s\":{floor_s:.4},\"ours_peak_bytes\":{ours_peak},\"baseline_peak_bytes\":{baseline_peak},\
         \"store_bytes_per_account\":{per_account:.1}}}"
    );
}

/// Seconds for ChaCha20-Poly1305 (ring) to open `len` bytes sealed in 64 KiB chunks.
fn floor(len: usize) -> f64 {
    let key =
        aead::LessSafeKey::new(aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &[7; 32]).unwrap());
    let nonce = |i: usize| {
        let mut n = [0u8; 12];
        n[3..11].copy_from_slice(&(i as u64).to_be_bytes());
        aead::Nonce::assume_unique_for_key(n)
    };
    let mut sealed: Vec<Vec<u8>> = vec![0x5au8; len]
        .chunks(64 * 1024)
        .enumerate()
        .map(|(i, chunk)| {
            let mut buf = chunk.to_vec();
            key.seal_in_place_append_tag(nonce(i), aead::Aad::empty(), &mut buf).unwrap();
            buf
        })
        .collect();
    let ((), secs, _) = measure(|| {
        for (i, buf) in sealed.iter_mut().enumerate() {
            black_box(key.open_in_place(nonce(i), aead::Aad::empty(), buf).unwrap());
        }
    });
    secs
}

/// Cumulative cost of each stage of the loader, for finding where the time goes.
fn stages(keys: &common::Keys, file: &[u8]) {
    use enclave_core::age_decryptor::AgeDecryptor;
    use enclave_core::share_json::{Entry, EntryPos, JsonError, ShareScanner};
    let run = |name: &str, f: &mut dyn FnMut(&[u8])| {
        let start = Instant::now();
        let mut d = AgeDecryptor::new(&keys.ours);
        let mut sink = |p: &[u8]| -> Result<(), ()> {
            f(p);
            Ok(())
        };
        for piece in file.chunks(32 * 1024) {
            d.feed(piece, &mut sink).unwrap();
        }
        d.finish(&mut sink).unwrap();
        println!("{name:<28} {:.3} s", start.elapsed().as_secs_f64());
    };
    run("decrypt", &mut |p| {
        black_box(p);
    });
    // The boot machine hashes the ciphertext beside the loader (the manifest's SHA-256).
    let start = Instant::now();
    black_box(ring::digest::digest(&ring::digest::SHA256, black_box(file)));
    println!("{:<28} {:.3} s", "file SHA-256 alone (ring)", start.elapsed().as_secs_f64());
    let mut scanner = ShareScanner::new(false);
    run("+ scan + parse", &mut |p| {
        scanner
            .feed(p, &mut |_: EntryPos, e: Entry<'_>| -> Result<(), JsonError> {
                black_box(e.share);
                Ok(())
            })
            .unwrap();
    });
    // serde-json-core alone on one typical entry, a million times.
    let entry = common::json(&common::accounts(1, 1));
    let object = &entry[1..entry.len() - 1];
    let start = Instant::now();
    for _ in 0..1_000_000 {
        #[derive(serde::Deserialize)]
        struct E<'a> {
            #[allow(dead_code)]
            account_id: &'a str,
            #[allow(dead_code)]
            share: &'a str,
        }
        black_box(serde_json_core::from_slice::<E<'_>>(black_box(object)).unwrap());
    }
    println!("{:<28} {:.3} s", "serde-json-core x 1M alone", start.elapsed().as_secs_f64());
    let mut out = [0u8; enclave_core::share_format::DECODE_BUF];
    let share = common::b64(&common::accounts(1, 1)[0].1);
    let start = Instant::now();
    for _ in 0..1_000_000 {
        black_box(
            enclave_core::share_format::decode_share(black_box(share.as_bytes()), &mut out)
                .unwrap(),
        );
    }
    println!("{:<28} {:.3} s", "decode_share x 1M alone", start.elapsed().as_secs_f64());
    let mut scanner = ShareScanner::new(false);
    run("+ base64 + checks", &mut |p| {
        scanner
            .feed(p, &mut |_: EntryPos, e: Entry<'_>| -> Result<(), JsonError> {
                black_box(enclave_core::share_format::decode_share(e.share, &mut out).unwrap());
                Ok(())
            })
            .unwrap();
    });
}

/// What writing the store's bytes costs by itself: once into fresh memory (each 4 KiB page
/// faulted in and zeroed by the kernel on first touch), then again into the same memory, in
/// 146-byte records as the loader appends them. The difference is the page-fault cost any
/// loader pays for a store of this size on this machine.
fn first_touch(bytes: usize) {
    let record = [0x5au8; 146];
    let fill = |buf: &mut [u8]| {
        for r in buf.chunks_exact_mut(record.len()) {
            r.copy_from_slice(&record);
        }
        black_box(&*buf);
    };
    let start = Instant::now();
    let mut buf = vec![0u8; bytes];
    fill(&mut buf);
    let fresh = start.elapsed().as_secs_f64();
    let start = Instant::now();
    fill(&mut buf);
    let again = start.elapsed().as_secs_f64();
    println!("{:<28} {fresh:.3} s", "store-size first touch");
    println!("{:<28} {again:.3} s", "store-size write again");
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}
