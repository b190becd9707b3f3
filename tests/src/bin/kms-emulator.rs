//! The local KMS stand-in as a process, for the demo and for poking at by hand:
//!
//! ```text
//! kms-emulator --listen 127.0.0.1:0 --root ROOT.der --key ID [--pcr INDEX=HEX ...]
//!              [--policy POLICY.json]
//! ```
//!
//! `--policy` takes a key policy as `signservice-offline kms-policy` writes it and enforces its
//! PCR conditions (instead of `--pcr`).
//!
//! Prints `listening on http://ADDR` once ready, then one line per request, until killed.
//! Key material is made at start and kept in memory only.

use std::collections::BTreeMap;
use std::time::Duration;

use tests::kms_emulator::{KeySpec, KmsConfig, KmsEmulator};

fn usage() -> ! {
    eprintln!(
        "usage: kms-emulator --listen ADDR --root ROOT.der --key ID [--pcr INDEX=HEX ...] \
         [--policy POLICY.json]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut listen, mut root, mut key, mut pcrs) = (None, None, None, BTreeMap::new());
    let mut policy = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else { usage() };
        match flag.as_str() {
            "--listen" => listen = Some(value.clone()),
            "--root" => root = Some(value.clone()),
            "--key" => key = Some(value.clone()),
            "--policy" => policy = Some(value.clone()),
            "--pcr" => {
                let Some((i, hex)) = value.split_once('=') else { usage() };
                let (Ok(i), Some(bytes)) = (i.parse::<u64>(), decode_hex(hex)) else { usage() };
                pcrs.insert(i, bytes);
            }
            _ => usage(),
        }
    }
    let (Some(listen), Some(root), Some(key)) = (listen, root, key) else { usage() };
    let root = std::fs::read(&root).unwrap_or_else(|e| {
        eprintln!("kms-emulator: {root}: {e}");
        std::process::exit(2)
    });
    let spec = match &policy {
        None => KeySpec { key_id: key, recipient_pcrs: pcrs, policy: None },
        Some(path) => {
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
                eprintln!("kms-emulator: {path}: {e}");
                std::process::exit(2)
            });
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                eprintln!("kms-emulator: {path}: {e}");
                std::process::exit(2)
            });
            KeySpec::from_policy(&key, &value).unwrap_or_else(|e| {
                eprintln!("kms-emulator: {path}: {e}");
                std::process::exit(2)
            })
        }
    };
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| {
        eprintln!("kms-emulator: {e}");
        std::process::exit(1)
    });
    runtime.block_on(async {
        let config =
            KmsConfig { keys: vec![spec], attestation: tests::kms_emulator::pinned_root(root) };
        let kms = KmsEmulator::start_on(&listen, config).await.unwrap_or_else(|e| {
            eprintln!("kms-emulator: {listen}: {e}");
            std::process::exit(1)
        });
        println!("listening on {}", kms.endpoint());
        let mut seen = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let log = kms.log();
            for line in log.iter().skip(seen) {
                println!("{line}");
            }
            seen = log.len();
        }
    });
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}
