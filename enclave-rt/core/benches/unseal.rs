//! `cargo xtask bench unseal [--rounds N]`: what the unseal's constant-time check costs,
//! and how much its running time depends on what is wrong with the sealed plaintext.
//!
//! * identity check: `Identity::decode` (the constant-time decoder the unseal runs on its
//!   fixed window) on a valid identity and on one malformed each way the old parser told
//!   apart (checksum, character, case, prefix, all zero), interleaved round by round; the
//!   spread is the slowest cause's median over the fastest's. Baseline: the `age` crate's
//!   parser (`Identity::from_str`, early exit) on the same texts, whose spread shows what a
//!   parser that stops at the first error looks like.
//! * unseal: `UnsealKey::unseal` end to end (RSA-OAEP, AES-256-CBC, the window check) on the
//!   genuine blob and on tampered ones (`tests::unseal_oracle`), against the RSA-OAEP
//!   decryption alone, the step every boot pays anyway.
//!
//! No threshold: the figures are printed (last line JSON) and recorded in
//! `docs/benchmarks.md`.
#![allow(
    missing_docs,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::unwrap_used
)]

use std::hint::black_box;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use enclave_core::age_identity::{IDENTITY_LEN, Identity};
use enclave_core::kms_unseal::UnsealKey;

const IDENTITY: &str = "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0";

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// The texts: valid, then one malformed each way.
fn texts() -> Vec<(&'static str, [u8; IDENTITY_LEN])> {
    let valid: [u8; IDENTITY_LEN] = IDENTITY.as_bytes().try_into().unwrap();
    let with = |at: usize, c: u8| {
        let mut t = valid;
        t[at] = c;
        t
    };
    let mut mixed = valid;
    mixed[40] = mixed[40].to_ascii_lowercase();
    vec![
        ("valid", valid),
        ("checksum", with(73, if valid[73] == b'Q' { b'P' } else { b'Q' })),
        ("character", with(30, b'B')),
        ("case", mixed),
        ("prefix", with(0, b'X')),
        ("all zero", [0u8; IDENTITY_LEN]),
    ]
}

fn main() {
    let mut rounds = 20_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--rounds" {
            rounds = args.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0).unwrap();
        }
    }
    let texts = texts();
    let mut ours: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); texts.len()];
    let mut theirs: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); texts.len()];
    let strings: Vec<String> =
        texts.iter().map(|(_, t)| String::from_utf8_lossy(t).into_owned()).collect();
    for _ in 0..rounds {
        for (i, (_, text)) in texts.iter().enumerate() {
            let t = Instant::now();
            let (valid, key) = Identity::decode(black_box(text));
            black_box((bool::from(valid), key[0]));
            ours[i].push(t.elapsed());
            let t = Instant::now();
            let parsed = age::x25519::Identity::from_str(black_box(&strings[i]));
            black_box(parsed.is_ok());
            theirs[i].push(t.elapsed());
        }
    }
    println!("identity check, median of {rounds} rounds per cause (ns):");
    println!("  {:<10} {:>8} {:>12}", "cause", "ours", "age crate");
    let (mut ours_m, mut theirs_m) = (Vec::new(), Vec::new());
    for (i, (name, _)) in texts.iter().enumerate() {
        let (o, a) = (median(&mut ours[i]), median(&mut theirs[i]));
        println!("  {name:<10} {:>8} {:>12}", o.as_nanos(), a.as_nanos());
        ours_m.push(o.as_nanos() as f64);
        theirs_m.push(a.as_nanos() as f64);
    }
    let spread = |v: &[f64]| {
        v.iter().copied().fold(f64::MIN, f64::max) / v.iter().copied().fold(f64::MAX, f64::min)
    };
    let (ours_spread, theirs_spread) = (spread(&ours_m), spread(&theirs_m));
    println!(
        "  spread (slowest cause / fastest): ours {ours_spread:.2}x, age crate {theirs_spread:.2}x"
    );

    // End to end, on fresh keys (generation is not timed).
    let unseals = 8usize;
    let text = IDENTITY.to_owned();
    let mut genuine = Vec::new();
    let mut tampered = Vec::new();
    let mut rsa_alone = Vec::new();
    for round in 0..unseals {
        let key = UnsealKey::generate().unwrap();
        let blob = tests::unseal_oracle::genuine(key.public_key_der(), &text);
        let t = Instant::now();
        assert!(key.unseal(&blob).is_ok());
        genuine.push(t.elapsed());
        let key = UnsealKey::generate().unwrap();
        let probes = tests::unseal_oracle::probes(key.public_key_der(), &text);
        let probe = &probes[round % probes.len()];
        let t = Instant::now();
        assert!(key.unseal(&probe.blob).is_err(), "{}", probe.name);
        tampered.push(t.elapsed());
        // The RSA-OAEP step alone, as a baseline: a 32-byte content key decrypted.
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let public = private.to_public_key();
        let ct = public
            .encrypt(&mut rand::rngs::OsRng, rsa::Oaep::new::<sha2::Sha256>(), &[7u8; 32])
            .unwrap();
        let t = Instant::now();
        black_box(private.decrypt(rsa::Oaep::new::<sha2::Sha256>(), &ct).unwrap());
        rsa_alone.push(t.elapsed());
    }
    let (g, x, r) = (median(&mut genuine), median(&mut tampered), median(&mut rsa_alone));
    println!(
        "unseal, median of {unseals}: genuine {:.0} us, tampered {:.0} us, RSA-OAEP alone {:.0} us \
         (genuine / RSA {:.2}x, tampered / genuine {:.2}x)",
        g.as_secs_f64() * 1e6,
        x.as_secs_f64() * 1e6,
        r.as_secs_f64() * 1e6,
        g.as_secs_f64() / r.as_secs_f64(),
        x.as_secs_f64() / g.as_secs_f64()
    );
    println!(
        "{{\"bench\":\"unseal\",\"rounds\":{rounds},\"check_ns\":{{{}}},\"check_spread\":{ours_spread:.3},\"age_spread\":{theirs_spread:.3},\"unseal_genuine_us\":{:.0},\"unseal_tampered_us\":{:.0},\"rsa_oaep_us\":{:.0}}}",
        texts
            .iter()
            .zip(&ours_m)
            .map(|((n, _), v)| format!("\"{n}\":{v:.0}"))
            .collect::<Vec<_>>()
            .join(","),
        g.as_secs_f64() * 1e6,
        x.as_secs_f64() * 1e6,
        r.as_secs_f64() * 1e6
    );
}
