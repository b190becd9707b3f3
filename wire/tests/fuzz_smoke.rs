//! The fuzzing oracle in the normal test run (built with the `fuzzing` feature, as
//! `cargo xtask test` does): a cheap, deterministic stand-in for `cargo xtask fuzz wire`.

mod common;
use common::raw_frame;

#[test]
fn garbage_never_panics() {
    // A cheap, deterministic stand-in for the fuzzer in the normal test run: pseudo-random
    // streams through the decoder and the message parser (see `cargo xtask fuzz wire`).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..2_000 {
        let mut bytes = Vec::new();
        let len = (round * 37) % 600;
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push(x.to_le_bytes()[0]);
        }
        // Half the rounds start with a valid header so payload parsing is reached.
        if round % 2 == 0 && bytes.len() >= 16 {
            let kind = wire::KINDS[round % wire::KINDS.len()].kind;
            let payload_len = u32::try_from(bytes.len() - 16).unwrap();
            bytes[..16].copy_from_slice(&raw_frame(kind, 0, 0, &[])[..16]);
            bytes[12..16].copy_from_slice(&payload_len.to_le_bytes());
        }
        wire::fuzz_decode(&bytes);
    }
}
