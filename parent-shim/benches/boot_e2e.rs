//! `cargo xtask bench boot-e2e [--accounts N]` (default 1,000,000): what an operator waits
//! for after a restart, end to end, against its floor measured in the same run.
//!
//! * total: the real parent (`parent-shim run`, this build's profile) from its start to
//!   `serving`: it fetches the manifest and the sealed identity from S3 (moto on loopback),
//!   opens the share file's `GetObject`, launches the real enclave (`enclave-rt`, sim
//!   flavour, Unix sockets), verifies its attestation, has the KMS emulator seal the
//!   identity to it, streams the object into it through a bounded window as it arrives,
//!   and checks the signed `Loaded` statement. The peak memory (`VmHWM`) of both processes
//!   at that moment.
//! * floor = fixed + max(fetch, decrypt), each measured alone:
//!   - fixed: the same stack to `serving` with a one-account file (process starts,
//!     per-boot key, attestation, the KMS round trip, a gRPC listener), best of two;
//!   - fetch: the S3 `GetObject` of the same object through `aws-sdk-s3`, bytes discarded;
//!   - decrypt: the enclave's age decryptor over the same bytes, plaintext discarded.
//!
//! Accounts reuse 64 dealt keys per scheme in turn (`GenConfig::distinct_keys`), so a
//! million-account file is made in seconds; the files are kept under
//! `target/bench-boot-e2e/N/` for the next run. Last line JSON.
#![allow(
    missing_docs,
    clippy::cast_precision_loss,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use tests::share_gen::{GenConfig, SchemeChoice, files};

const BUCKET: &str = "bench-boot-e2e";
/// What the test policy pins and the sim NSM reports.
const PCR0: u8 = 7;

/// The enclave binary of this build's profile (`cargo xtask bench boot-e2e` builds it).
fn enclave_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("enclave-rt");
    assert!(bin.exists(), "{} is missing: build enclave-rt (sim) in this profile", bin.display());
    bin
}

/// `dir/shares` for `accounts`, made once and kept.
fn shares(dir: &Path, accounts: u64) -> PathBuf {
    let shares = dir.join("shares");
    if shares.join(files::DEAL).exists() && shares.join(files::MANIFEST).exists() {
        return shares;
    }
    let _ = std::fs::remove_dir_all(&shares);
    eprintln!("boot-e2e: dealing {accounts} accounts into {}", shares.display());
    let mut config = GenConfig::new(accounts, SchemeChoice::Both, 2, 3);
    config.distinct_keys = Some(64);
    tests::share_gen::generate_for_tests(config, &shares);
    shares
}

/// `VmHWM` of `pid`, bytes.
fn peak(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// One boot to `serving`.
struct Boot {
    seconds: f64,
    parent_peak: u64,
    enclave_peak: u64,
    accounts: u64,
    enclave_load_ms: u64,
    /// Seconds from the start at which each of the parent's events arrived.
    marks: Vec<(String, f64)>,
}

/// Starts the parent on `config`, waits for `serving`, reads both peaks, stops it.
fn boot(config: &Path) -> Boot {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_parent-shim"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .env_remove("AWS_PROFILE")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut enclave, mut record) = (None, serde_json::Value::Null);
    let mut marks = Vec::new();
    let seconds = loop {
        let line = lines.next().expect("the parent ended before serving").unwrap();
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if v["source"] == "parent-shim" {
            let event = v["event"].as_str().unwrap_or("?").to_owned();
            marks.push((event, started.elapsed().as_secs_f64()));
        }
        match v["event"].as_str() {
            Some("enclave_started") => enclave = v["pid"].as_u64(),
            Some("load_progress") => eprintln!("boot-e2e: {line}"),
            Some("boot_record") => record = v,
            Some("serving") => break started.elapsed().as_secs_f64(),
            Some("alert") => panic!("the parent failed closed: {line}"),
            _ => {}
        }
    };
    let enclave = u32::try_from(enclave.expect("no enclave_started line")).unwrap();
    let b = Boot {
        seconds,
        parent_peak: peak(child.id()),
        enclave_peak: peak(enclave),
        accounts: record["accounts"].as_u64().unwrap_or(0),
        enclave_load_ms: record["enclave_load_ms"].as_u64().unwrap_or(0),
        marks,
    };
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    // The rest, until the parent's last line (the enclave shares no pipe with it).
    let mut rest = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let last = line.contains("\"stopped\"");
        rest.push(line);
        if last {
            break;
        }
    }
    let status = child.wait().unwrap();
    let orphan = std::fs::read_to_string(format!("/proc/{enclave}/stat"))
        .is_ok_and(|s| s.split(' ').nth(2).is_some_and(|state| state != "Z"));
    if orphan {
        let _ = Command::new("kill").arg("-KILL").arg(enclave.to_string()).status();
    }
    assert!(status.success() && !orphan, "the parent did not stop cleanly:\n{}", rest.join("\n"));
    b
}

fn median_of_three(mut f: impl FnMut() -> Boot) -> Boot {
    let mut boots = vec![f(), f(), f()];
    boots.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    boots.swap_remove(1)
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1u32 << 20)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let accounts: u64 = args
        .iter()
        .position(|a| a == "--accounts")
        .and_then(|i| args.get(i + 1))
        .map_or(1_000_000, |n| n.parse().expect("--accounts N"));
    let target = enclave_binary().parent().unwrap().parent().unwrap().to_path_buf();
    let dir = target.join("bench-boot-e2e").join(accounts.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let big = shares(&dir, accounts);
    let small = shares(&target.join("bench-boot-e2e").join("1"), 1);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();

    // The stand-ins: the sim NSM's chain, KMS with a PCR0 policy, S3 with both files.
    let run = dir.join("run");
    let _ = std::fs::remove_dir_all(&run);
    std::fs::create_dir_all(&run).unwrap();
    let ca = tests::sim_ca::generate().unwrap();
    tests::sim_ca::write(&ca, &run.join("sim-ca")).unwrap();
    let kms = runtime
        .block_on(tests::kms_emulator::KmsEmulator::start(tests::kms_emulator::KmsConfig {
            keys: vec![tests::kms_emulator::KeySpec {
                key_id: "k".into(),
                recipient_pcrs: [(0, vec![PCR0; 48])].into(),
                policy: None,
            }],
            attestation: tests::kms_emulator::pinned_root(ca.root_der.clone()),
        }))
        .unwrap();
    let moto = tests::moto_server::MotoServer::start().unwrap();
    for (name, shares) in [("big", &big), ("small", &small)] {
        let identity = std::fs::read_to_string(shares.join(files::IDENTITY)).unwrap();
        let sealed = runtime
            .block_on(tests::kms_emulator::encrypt_with_sdk(
                &kms.endpoint(),
                "k",
                identity.trim().as_bytes(),
            ))
            .unwrap();
        for (key, bytes) in [
            ("shares.age", std::fs::read(shares.join(files::SHARES)).unwrap()),
            ("shares.age.manifest", std::fs::read(shares.join(files::MANIFEST)).unwrap()),
            ("identity.kms", sealed),
        ] {
            let key = format!("{name}/{key}");
            runtime.block_on(moto.put_object(BUCKET, &key, bytes, &[])).unwrap();
        }
    }
    let tls = tests::tls_certs::Ca::new("bench").unwrap();
    let server = tls.server().unwrap();
    std::fs::write(run.join("ca.pem"), tls.cert_pem()).unwrap();
    std::fs::write(run.join("server.pem"), &server.cert).unwrap();
    std::fs::write(run.join("server.key"), &server.key).unwrap();
    let config = |name: &str| {
        let d = run.display();
        let text = format!(
            r#"
[enclave]
mode = "local"
binary = "{bin}"
runtime_dir = "{d}/enclave-{name}"
sim_nsm_dir = "{d}/sim-ca"
sim_pcrs = ["0={pcr0}"]
gateway_key = "{gateway_key}"
publisher_key = "{publisher_key}"
memory_budget_mib = 2048
boot_deadline_secs = 1800

[shares]
share_file = "s3://{BUCKET}/{name}/shares.age"
sealed_identity = "s3://{BUCKET}/{name}/identity.kms"

[s3]
endpoint = "{s3}"
force_path_style = true
access_key_id = "AKIDLOCAL"
secret_access_key = "local-secret"

[kms]
endpoint = "{kms}"
key_id = "k"
access_key_id = "AKIDLOCAL"
secret_access_key = "local-secret"

[attestation]
root = "{d}/sim-ca/root.der"

[grpc]
listen = "127.0.0.1:0"
cert = "{d}/server.pem"
key = "{d}/server.key"
client_ca = "{d}/ca.pem"
"#,
            bin = enclave_binary().display(),
            pcr0 = hex::encode([PCR0; 48]),
            gateway_key = hex::encode(tests::gateway::gateway().verifying_key().to_bytes()),
            publisher_key = hex::encode(tests::gateway::publisher().verifying_key().to_bytes()),
            s3 = moto.endpoint(),
            kms = kms.endpoint(),
        );
        let path = run.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let (big_config, small_config) = (config("big"), config("small"));
    let file_len = std::fs::metadata(big.join(files::SHARES)).unwrap().len();
    eprintln!("boot-e2e: {accounts} accounts, share file {:.1} MiB", mib(file_len));

    // The floor's parts, each alone.
    // Each boot makes a fresh RSA-2048 key for KMS's answer, whose prime search takes a
    // random time (0.1 to 0.5 s here): medians of three, on both sides.
    let fixed_boots = median_of_three(|| boot(&small_config));
    let fixed = fixed_boots.seconds;
    let s3 = parent_shim::boot::s3_fetch::client(&moto.s3_settings());
    let fetch = (0..2)
        .map(|_| {
            runtime.block_on(async {
                let started = Instant::now();
                let out =
                    s3.get_object().bucket(BUCKET).key("big/shares.age").send().await.unwrap();
                let mut body = out.body;
                let mut n = 0usize;
                while let Some(bytes) = body.try_next().await.unwrap() {
                    n += bytes.len();
                }
                assert_eq!(n as u64, file_len);
                started.elapsed().as_secs_f64()
            })
        })
        .fold(f64::INFINITY, f64::min);
    let decrypt = {
        let file = std::fs::read(big.join(files::SHARES)).unwrap();
        let identity = std::fs::read_to_string(big.join(files::IDENTITY)).unwrap();
        let identity =
            enclave_core::age_identity::Identity::parse(identity.trim().as_bytes()).unwrap();
        let started = Instant::now();
        let mut d = enclave_core::age_decryptor::AgeDecryptor::new(&identity);
        let mut plain = 0usize;
        let mut sink = |p: &[u8]| -> Result<(), ()> {
            plain += p.len();
            Ok(())
        };
        for piece in file.chunks(parent_shim::boot::conversation::CHUNK) {
            d.feed(piece, &mut sink).unwrap();
        }
        d.finish(&mut sink).unwrap();
        std::hint::black_box(plain);
        started.elapsed().as_secs_f64()
    };
    let floor = fixed + fetch.max(decrypt);
    // The fixed part's largest and most variable piece: the per-boot RSA-2048 unseal key
    // (KMS answers to it), five times alone.
    let mut rsa: Vec<f64> = (0..5)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(enclave_core::kms_unseal::UnsealKey::generate().unwrap());
            started.elapsed().as_secs_f64()
        })
        .collect();
    rsa.sort_by(f64::total_cmp);

    // The whole boot.
    let total = median_of_three(|| boot(&big_config));
    assert_eq!(total.accounts, accounts, "the enclave loaded another count");
    drop(moto);
    drop(kms);

    println!("boot-e2e: {accounts} accounts, share file {:.1} MiB", mib(file_len));
    println!(
        "  total   {:>8.3} s   to serving, median of three (enclave load {} ms)",
        total.seconds, total.enclave_load_ms
    );
    println!("  floor   {floor:>8.3} s   = fixed + max(fetch, decrypt)");
    println!("  fixed   {fixed:>8.3} s   (a one-account boot, median of three)");
    println!(
        "          of which the RSA-2048 unseal key alone: {:.3} s median, {:.3} to {:.3} s",
        rsa[2], rsa[0], rsa[4]
    );
    println!("  fetch   {fetch:>8.3} s   (S3 GetObject alone, best of two)");
    println!("  decrypt {decrypt:>8.3} s   (the age decryptor alone)");
    println!(
        "  ratio   {:.2}x of the floor (goal <= 1.25); parent peak {:.1} MiB (goal <= 64), enclave peak {:.1} MiB",
        total.seconds / floor,
        mib(total.parent_peak),
        mib(total.enclave_peak)
    );
    // Where the time goes: when each of the parent's events arrived.
    let timeline = |b: &Boot| {
        b.marks.iter().map(|(e, t)| format!("{e} {t:.3}")).collect::<Vec<_>>().join(", ")
    };
    println!("  timeline, whole boot (s):   {}", timeline(&total));
    println!("  timeline, one account (s):  {}", timeline(&fixed_boots));
    println!(
        "{}",
        serde_json::json!({
            "bench": "boot-e2e",
            "accounts": accounts,
            "total_s": total.seconds,
            "floor_s": floor,
            "fixed_s": fixed,
            "fetch_s": fetch,
            "decrypt_s": decrypt,
            "rsa_keygen_median_s": rsa[2],
            "parent_peak_bytes": total.parent_peak,
            "enclave_peak_bytes": total.enclave_peak,
        })
    );
}
