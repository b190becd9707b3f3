//! `cargo xtask bench sign [--sessions N] [--scheme ed25519|secp256k1-tr]`: the signing
//! engine's cost per session (round 1 + round 2, as the enclave runs them) against the raw
//! frost crate calls for the same work, measured in the same run, interleaved session by
//! session so both see the same machine noise.
//!
//! * engine: `SigningEngine::commit` (grant signature check, replay and capacity checks,
//!   key package decode, nonces, answer signature) + `SigningEngine::sign` (package decode,
//!   digest check, signature share, answer signature);
//! * raw: `frost::round1::commit` + commitments serialization, then package
//!   deserialization, `frost::round2::sign` and share serialization, with the key package
//!   already decoded.
//!
//! Building the signing package (the coordinator's job) is not timed for either. A stage
//! breakdown shows where the difference goes. The last line per scheme is JSON.
#![allow(
    missing_docs,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::unwrap_used
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::signing::{self, Grant, KeySet, party};
use ed25519_dalek::Signer;
use enclave_core::trusted_time::Clock;
use frost_core::Ciphersuite;
use rand::SeedableRng;
use rand::rngs::StdRng;
use wire::{Scheme, SignRequest};

const T0: u64 = 1_800_000_000;
const ACCOUNTS: usize = 32;

struct Figures {
    engine: Vec<Duration>,
    raw: Vec<Duration>,
}

fn per_s(d: &[Duration]) -> f64 {
    d.len() as f64 / d.iter().sum::<Duration>().as_secs_f64()
}

fn pct(d: &[Duration], p: f64) -> f64 {
    let mut v: Vec<f64> = d.iter().map(|x| x.as_secs_f64() * 1e6).collect();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn run<C: Ciphersuite>(scheme: Scheme, sessions: usize) -> Figures {
    let sets: Vec<KeySet> =
        (0..ACCOUNTS).map(|i| signing::key_set(scheme, 2, 2, 1000 + i as u64)).collect();
    let accounts: Vec<_> = sets
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("acct-{i}"), scheme, s.key_packages[0].clone()))
        .collect();
    let store = signing::store(&accounts);
    let mut engine = signing::engine(7, signing::config());
    let decoded: Vec<_> = sets
        .iter()
        .map(|s| frost_core::keys::KeyPackage::<C>::deserialize(&s.key_packages[0]).unwrap())
        .collect();
    let mut rng = StdRng::seed_from_u64(3);
    let message = b"a 32-byte transaction digest....";
    let mut figures = Figures { engine: Vec::new(), raw: Vec::new() };
    for n in 0..sessions {
        let a = n % ACCOUNTS;
        let set = &sets[a];
        // The other signer's commitments, made ahead (not timed).
        let (_, theirs, their_kp) = party::round1::<C>(&set.key_packages[1], n as u64);
        let their = (*their_kp.identifier(), theirs.serialize().unwrap());
        let ours_id = *decoded[a].identifier();

        // Engine.
        let mut grant =
            Grant::new(engine.answer_public_key(), scheme, &accounts[a].0, 0, message, T0 + 60);
        grant.session_id = (n as u128).to_be_bytes();
        grant.sign_with(&signing::gateway());
        let t = Instant::now();
        let c = engine.commit(
            Clock { instant: std::time::Instant::now(), unix_micros: T0 * 1_000_000 },
            &grant.request(),
            &store,
            &mut signing::unaudited,
        );
        let mut spent = t.elapsed();
        let c = c.unwrap();
        let package = party::package::<C>(&[(ours_id, c.commitments), their.clone()], message);
        let req = SignRequest { session_id: grant.session_id, signing_package: &package };
        let t = Instant::now();
        let s = black_box(engine.sign(
            Clock { instant: std::time::Instant::now(), unix_micros: T0 * 1_000_000 + 1 },
            &req,
            &mut signing::unaudited,
        ));
        spent += t.elapsed();
        s.unwrap();
        figures.engine.push(spent);

        // Raw frost calls.
        let t = Instant::now();
        let (nonces, commitments) =
            frost_core::round1::commit(decoded[a].signing_share(), &mut rng);
        let commitments = commitments.serialize().unwrap();
        let mut spent = t.elapsed();
        let package = party::package::<C>(&[(ours_id, commitments), their], message);
        let t = Instant::now();
        let parsed = frost_core::SigningPackage::<C>::deserialize(&package).unwrap();
        let share = frost_core::round2::sign(&parsed, &nonces, &decoded[a]).unwrap();
        black_box(share.serialize());
        spent += t.elapsed();
        figures.raw.push(spent);
    }
    figures
}

/// Where the engine's extra time goes: the costs of its checks, each timed alone.
fn stages<C: enclave_core::signing_engine::BaseMul>(scheme: Scheme) {
    const N: u32 = 2000;
    let set = signing::key_set(scheme, 2, 2, 9);
    let gw = signing::gateway();
    let vk = gw.verifying_key();
    let statement = [7u8; 128];
    let sig = gw.sign(&statement);
    let t = Instant::now();
    for _ in 0..N {
        black_box(vk.verify_strict(black_box(&statement), &sig)).unwrap();
    }
    let verify = t.elapsed() / N;
    let t = Instant::now();
    for _ in 0..N {
        black_box(gw.sign(black_box(&statement)));
    }
    let sign = t.elapsed() / N;
    let t = Instant::now();
    for _ in 0..N {
        black_box(frost_core::keys::KeyPackage::<C>::deserialize(black_box(&set.key_packages[0])))
            .unwrap();
    }
    let decode_whole = t.elapsed() / N;
    let mut envelope = vec![1u8, scheme as u8];
    envelope.extend_from_slice(&set.key_packages[0]);
    let mut stored = [0u8; enclave_core::share_format::STORED_MAX];
    let len = enclave_core::share_format::stored_form(&envelope, &mut stored).unwrap();
    let t = Instant::now();
    for _ in 0..N {
        black_box(enclave_core::signing_engine::decode_stored_share::<C>(black_box(
            &stored[..len],
        )))
        .unwrap();
    }
    let decode = t.elapsed() / N;
    println!(
        "  stages {:>13}: grant check {:.1} us, answer signature {:.1} us (x2), stored share decode {:.1} us (frost's whole key package decode {:.1} us)",
        scheme.as_str(),
        verify.as_secs_f64() * 1e6,
        sign.as_secs_f64() * 1e6,
        decode.as_secs_f64() * 1e6,
        decode_whole.as_secs_f64() * 1e6
    );
    // The store's choice: the stored form (decoded per session) or decoded key packages.
    println!(
        "  store  {:>13}: stored share {len} bytes (key package {} bytes serialized) vs {} bytes decoded",
        scheme.as_str(),
        set.key_packages[0].len(),
        std::mem::size_of::<frost_core::keys::KeyPackage<C>>()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut sessions = 2000usize;
    let mut schemes = vec![Scheme::Ed25519, Scheme::Secp256k1Tr];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sessions" => sessions = it.next().and_then(|v| v.parse().ok()).unwrap(),
            "--scheme" => {
                schemes = match it.next().map(String::as_str) {
                    Some("ed25519") => vec![Scheme::Ed25519],
                    Some("secp256k1-tr") => vec![Scheme::Secp256k1Tr],
                    other => panic!("unknown scheme {other:?}"),
                };
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    println!("bench sign: {sessions} sessions per scheme, 2-of-2, {ACCOUNTS} accounts");
    let mut json = Vec::new();
    for scheme in schemes {
        let f = match scheme {
            Scheme::Ed25519 => run::<frost_ed25519::Ed25519Sha512>(scheme, sessions),
            Scheme::Secp256k1Tr => run::<frost_secp256k1_tr::Secp256K1Sha256TR>(scheme, sessions),
        };
        let (e, r) = (per_s(&f.engine), per_s(&f.raw));
        println!(
            "  {:>13}: engine {e:>8.0} sessions/s (p50 {:.1} us, p99 {:.1} us) | raw frost {r:>8.0} sessions/s (p50 {:.1} us, p99 {:.1} us) | engine/raw {:.2}",
            scheme.as_str(),
            pct(&f.engine, 0.5),
            pct(&f.engine, 0.99),
            pct(&f.raw, 0.5),
            pct(&f.raw, 0.99),
            e / r
        );
        let audit = tests::audit_cost::per_session().enclave_s;
        println!(
            "  audit  {:>13}: {:.2} us per session (2 entries + 1/32 of a checkpoint) = {:.2}% of the engine's p50 (goal <= 2%)",
            scheme.as_str(),
            audit * 1e6,
            audit * 1e6 / pct(&f.engine, 0.5) * 100.0
        );
        match scheme {
            Scheme::Ed25519 => stages::<frost_ed25519::Ed25519Sha512>(scheme),
            Scheme::Secp256k1Tr => stages::<frost_secp256k1_tr::Secp256K1Sha256TR>(scheme),
        }
        let name = if scheme == Scheme::Ed25519 { "ed25519" } else { "secp256k1-tr" };
        json.push(format!(
            r#"{{"bench":"sign","scheme":"{name}","engine_sessions_per_s":{e:.0},"raw_sessions_per_s":{r:.0},"engine_p50_us":{:.1},"raw_p50_us":{:.1}}}"#,
            pct(&f.engine, 0.5),
            pct(&f.raw, 0.5)
        ));
    }
    for line in json {
        println!("{line}");
    }
}
