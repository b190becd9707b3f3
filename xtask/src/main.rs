//! `cargo xtask`: the project's automation. Run `cargo xtask help`.

mod build_eif;
mod build_enclave;
mod build_kernel;
mod build_qemu;
mod demo;
mod generated_section;
// A test over the workspace's sources, no task.
#[cfg(test)]
mod module_cycles;
mod mutants;
mod qemu_boot;
mod run;
mod setup;
mod sizing;
mod tcb_lines;
mod wire_doc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use run::{Failure, Result, cargo, run};

const HELP: &str = "\
cargo xtask <task>

  test                 every check and test (fmt, clippy, no_std build, tests, spec drift);
                       installs missing targets and components first
  demo [--accounts N] [--sessions N] [--keep-running]
                       the whole system locally: shares, KMS emulator, parent-shim, the
                       enclave (sim, Unix sockets), gateway sessions with verified signatures
  demo-stops-on-signals
                       the demo (--keep-running) stopped by SIGTERM, SIGINT and SIGHUP in turn
                       leaves no process of its group running (part of `test`)
  bench wire           wire encode/decode throughput against memcpy
  bench boot [--stages] [--accounts N]
                       share loading (decrypt + parse + store) against the age crate +
                       serde_json + HashMap and against ChaCha20-Poly1305 alone; default 1M
  bench sign [--sessions N] [--scheme ed25519|secp256k1-tr]
                       signing sessions (round 1 + 2) through the engine against the raw
                       frost crate calls; default 2000 sessions, both schemes
  bench unseal [--rounds N]
                       the unseal's constant-time identity check per failure cause against
                       the age crate's parser, and the whole unseal against RSA-OAEP alone
  bench boot-e2e [--accounts N]
                       the real parent and enclave (release) from start to serving, the
                       share file streamed from S3 (moto) through KMS (emulator), against
                       its floor measured alone; peak memory of both; default 1M accounts
  bench e2e [--sessions N] [--clients N]
                       sessions through gRPC/mTLS -> parent -> wire -> enclave and back,
                       against the enclave engine alone; default 1000 sessions, 4 clients
  soak [--minutes M] [--fault-every S] [--faults K,K,...]
                       the real parent and enclave (sim) under mixed load with faults
                       injected in turn (enclave_killed, relay_down, parent_killed,
                       slow_client, connection_flood); prints sessions, refusals by code,
                       hangs, orphans, memory and descriptors; default 10 min, 30 s
  mutants [--module PATH]... [--shard k/n] | --check | --smoke
                       mutation testing (cargo-mutants, installed if missing) of the modules
                       on the trust chain, recorded in docs/mutants.json and docs/mutants.md
  fuzz [TARGET] [--seconds N]
                       run one fuzz target, or all in turn (nightly + cargo-fuzz, installed
                       if missing); default 60 s each
  gen-shares ARGS   `signservice-offline deal ARGS` (the offline tool's dealer), built and run:
             --accounts N --scheme ed25519|secp256k1-tr|both --threshold T --parties P
             --publisher-key FILE --epoch E
             --out DIR [--gateway-recipient age1...] [--escrow-recipient age1...]
                       trusted-dealer FROST shares for N accounts: the enclave's age-encrypted
                       share file, the other parties' shares, the group keys
  build-enclave [--flavour sim|nsm] [--out DIR]
                       the static enclave binary (musl, LTO, stripped, reproducible);
                       prints its size and SHA-256
  build-eif --gateway-key HEX [--out DIR] [--flavour nsm|sim] [--kernel-dir DIR]
            [--session-cap N] [--signing-cert PEM --signing-key PEM]
                       the enclave image (EIF) around the static enclave-rt and our own
                       kernel (Debian's Linux source, eif/kernel/enclave.config), both
                       reproducible and cached; writes enclave.eif and pcrs.json (default
                       target/eif/FLAVOUR) and prints the PCRs and the key's fingerprint;
                       nsm (the default) needs --gateway-key, sim falls back to the demo key;
                       with a P-384 certificate and key, signed as nitro-cli signs (PCR8)
  qemu-boot            boot the production (nsm) image under QEMU's nitro-enclave machine
                       (built from Debian's source on first use) and run the real boot over
                       guest vsock and /dev/nsm: heartbeat, PCRs equal to pcrs.json, KMS
                       unseal, share load, signing; the release parent refusing QEMU's
                       unsigned document; then a corrupt share file and the enclave's end
  size --accounts N [--scheme S] [--share-file FILE] [--session-cap C]
                       the enclave memory to allocate for N accounts (share store as the
                       loader reserves it, budget, image), and the flags to build it with
  tcb-lines [--write|--check]
                       lines of our own code in the production (nsm) image, per file;
                       --write puts them into docs/tcb.md, --check verifies it has them
  eif-info FILE        check an EIF (CRC, layout, its signature if signed) and print its
                       sections, files and PCRs (PCR8 for a signed image)
  sim-ca --out DIR      the sim NSM's test certificate chain (deterministic keys), for
                       enclave-rt --sim-nsm-dir and parent-shim attestation verify --root
  wire-doc [--check]   regenerate (or verify) the message reference in docs/wire.md
";

fn root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| ".".into(), Path::to_path_buf)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[&str]) -> Result {
    let root = root();
    std::env::set_current_dir(&root)?;
    match args {
        ["test"] => test(&root),
        ["demo-stops-on-signals"] => demo::stops_on_signals(),
        ["demo", rest @ ..] => demo::task(&root, rest),
        ["bench", "wire"] => {
            run(cargo().args(["bench", "--locked", "-p", "wire", "--bench", "throughput"]))
        }
        ["bench", "boot", rest @ ..] => bench_boot(rest),
        ["bench", "boot-e2e", rest @ ..] => bench_boot_e2e(rest, None),
        ["soak", rest @ ..] => soak(rest),
        ["bench", "sign", rest @ ..] => bench_sign(rest, None),
        ["bench", "unseal", rest @ ..] => bench_unseal(rest, None),
        ["bench", "e2e", rest @ ..] => bench_e2e(rest, None),
        ["build-enclave", rest @ ..] => build_enclave::task(&root, rest),
        ["build-eif", rest @ ..] => build_eif::task(&root, rest),
        ["eif-info", file] => build_eif::info(Path::new(file)),
        ["qemu-boot", rest @ ..] => qemu_boot::task(&root, rest),
        ["size", rest @ ..] => sizing::task(rest),
        ["tcb-lines"] => tcb_lines::task(&root, tcb_lines::Doc::Leave),
        ["tcb-lines", "--write"] => tcb_lines::task(&root, tcb_lines::Doc::Write),
        ["tcb-lines", "--check"] => tcb_lines::task(&root, tcb_lines::Doc::Check),
        // The dealer is the offline tool's (`signservice-offline deal`); this runs it.
        ["gen-shares", rest @ ..] => run(cargo()
            .args(["run", "--locked", "-q", "-p", "offline-tools", "--bin", "signservice-offline"])
            .args(["--", "deal"])
            .args(rest)),
        ["sim-ca", "--out", dir] => {
            let ca = tests::sim_ca::generate().map_err(|e| Failure(e.0))?;
            tests::sim_ca::write(&ca, Path::new(dir))?;
            println!("sim NSM chain written to {dir} (pin {dir}/root.der when verifying)");
            Ok(())
        }
        ["fuzz", rest @ ..] => fuzz(rest),
        ["mutants", rest @ ..] => mutants::task(&root, rest),
        ["wire-doc"] => wire_doc::run(&root, false),
        ["wire-doc", "--check"] => wire_doc::run(&root, true),
        [] | ["help" | "--help" | "-h"] => {
            print!("{HELP}");
            Ok(())
        }
        _ => Err(Failure(format!("unknown task `{}`\n\n{HELP}", args.join(" ")))),
    }
}

fn test(root: &Path) -> Result {
    setup::toolchain()?;
    setup::system_packages()?;
    let moto = setup::moto()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--locked",
        "--workspace",
        "--all-targets",
        "--features",
        "enclave-rt/sim,enclave-core/fuzzing,wire/fuzzing",
        "--",
        "-D",
        "warnings",
    ]))?;
    // `wire` must build for a target that has no `std` at all.
    run(cargo().args(["check", "--locked", "-p", "wire", "--target", "thumbv7em-none-eabihf"]))?;
    wire_doc::run(root, true)?;
    tcb_lines::task(root, tcb_lines::Doc::Check)?;
    // The enclave's process tests need the software NSM flavour; the production flavour is
    // linted and tested on its own (the two cannot be built together).
    run(cargo()
        .args([
            "test",
            "--locked",
            "--workspace",
            "--features",
            "enclave-rt/sim,enclave-core/fuzzing,wire/fuzzing",
        ])
        .env("MOTO_SERVER", &moto))?;
    run::no_enclave_left(&run::target_dir(root))?;
    run(cargo().args([
        "clippy",
        "--locked",
        "-p",
        "enclave-rt",
        "--all-targets",
        "--features",
        "nsm",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args([
        "test",
        "--locked",
        "-p",
        "enclave-rt",
        "--features",
        "nsm",
        "--test",
        "nsm_device",
    ]))?;
    // That build left the nsm flavour in target/debug/enclave-rt; put the sim one back, which
    // the parent's tests launch (so a plain `cargo test` after this one still works).
    run::build_sim_enclave()?;
    // Smoke versions of the heavy suites: mutation testing on a few mutants of one module
    // (and docs/mutants.md against its records), the fuzz targets still build (their oracles
    // run in the tests above), and the boot benchmark runs end to end on a small file.
    mutants::task(root, &["--smoke"])?;
    for (dir, _) in FUZZ_TARGETS {
        run(cargo()
            .args(["check", "--locked", "--bins", "--manifest-path"])
            .arg(format!("{dir}/fuzz/Cargo.toml")))?;
    }
    run(cargo().args([
        "bench",
        "--locked",
        "--profile",
        "dev",
        "-p",
        "enclave-core",
        "--bench",
        "boot",
        "--",
        "--accounts",
        "2000",
    ]))?;
    bench_sign(&["--sessions", "20"], Some("dev"))?;
    bench_unseal(&["--rounds", "200"], Some("dev"))?;
    bench_e2e(&["--sessions", "20", "--clients", "2", "--overload"], Some("dev"))?;
    bench_boot_e2e(&["--accounts", "2000"], Some("dev"))?;
    // The soak for one minute: each fault once, under load; it fails on a hang, a wrong
    // answer, an orphaned enclave, a leaked secret or a session left open.
    soak(&["--minutes", "1", "--fault-every", "8"])?;
    // The demo path end to end on a small share set: real processes, KMS emulator, mTLS.
    demo::task(root, &["--accounts", "200", "--sessions", "4"])?;
    // Stopped by a signal (a service manager, `timeout`, Ctrl-C, a closed terminal), the
    // demo ends everything it started.
    demo::stops_on_signals()?;
    run::no_enclave_left(&run::target_dir(root))?;
    // The kernel rebuilt in another directory, and the image (with the enclave binary in
    // it) from two checkout paths, byte for byte; then our EIF writer against AWS's on the
    // same inputs.
    build_eif::check_reproducible(root)?;
    setup::openssl_dev()?;
    run(cargo()
        .current_dir(root.join("eif/crosscheck"))
        .args(["test", "--locked", "--target-dir"])
        .arg(run::target_dir(root).join("crosscheck")))?;
    // The production image booted as Nitro boots it (QEMU's nitro-enclave machine): PID 1,
    // devices, heartbeat, /dev/nsm attestation with QEMU's PCRs equal to ours, KMS unseal,
    // share load and signing over real guest vsock; the release parent refusing QEMU's
    // unsigned document; then a refused file and the enclave ending the VM.
    qemu_boot::task(root, &[])?;
    eprintln!("xtask test: all checks passed");
    Ok(())
}

fn bench_boot(rest: &[&str]) -> Result {
    // `--stages`: the load split into cumulative stages, with the file's SHA-256 alone.
    let (stages, rest) = match rest {
        ["--stages", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let accounts = match rest {
        [] => "1000000",
        ["--accounts", n] if n.parse::<u64>().is_ok_and(|n| n > 0) => n,
        _ => {
            return Err(Failure("usage: cargo xtask bench boot [--stages] [--accounts N]".into()));
        }
    };
    let mut command = cargo();
    command
        .args(["bench", "--locked", "-p", "enclave-core", "--bench", "boot", "--", "--accounts"])
        .arg(accounts);
    if stages {
        command.arg("--stages");
    }
    run(&mut command)
}

fn bench_unseal(rest: &[&str], profile: Option<&str>) -> Result {
    let ok = match rest {
        [] => true,
        ["--rounds", n] => n.parse::<u64>().is_ok_and(|n| n > 0),
        _ => false,
    };
    if !ok {
        return Err(Failure("usage: cargo xtask bench unseal [--rounds N]".into()));
    }
    let mut cmd = cargo();
    cmd.args(["bench", "--locked"]);
    if let Some(p) = profile {
        cmd.args(["--profile", p]);
    }
    run(cmd.args(["-p", "enclave-core", "--bench", "unseal", "--"]).args(rest))
}

fn bench_sign(rest: &[&str], profile: Option<&str>) -> Result {
    let usage = || {
        Failure(
            "usage: cargo xtask bench sign [--sessions N] [--scheme ed25519|secp256k1-tr]".into(),
        )
    };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let ok = match (*flag, it.next()) {
            ("--sessions", Some(n)) => n.parse::<u64>().is_ok_and(|n| n > 0),
            ("--scheme", Some(s)) => matches!(*s, "ed25519" | "secp256k1-tr"),
            _ => false,
        };
        if !ok {
            return Err(usage());
        }
    }
    let mut cmd = cargo();
    cmd.args(["bench", "--locked"]);
    if let Some(p) = profile {
        cmd.args(["--profile", p]);
    }
    run(cmd.args(["-p", "enclave-core", "--bench", "sign", "--"]).args(rest))
}

/// The enclave binary is built in the benchmark's profile (release, or `profile`), where
/// the benchmark looks for it beside the parent.
fn bench_boot_e2e(rest: &[&str], profile: Option<&str>) -> Result {
    let ok = match rest {
        [] => true,
        ["--accounts", n] => n.parse::<u64>().is_ok_and(|n| n > 0),
        _ => false,
    };
    if !ok {
        return Err(Failure("usage: cargo xtask bench boot-e2e [--accounts N]".into()));
    }
    let moto = setup::moto()?;
    run::build_sim_enclave_in(profile.unwrap_or("release"))?;
    let mut cmd = cargo();
    cmd.args(["bench", "--locked"]);
    if let Some(p) = profile {
        cmd.args(["--profile", p]);
    }
    run(cmd
        .args(["-p", "parent-shim", "--bench", "boot_e2e", "--"])
        .args(rest)
        .env("MOTO_SERVER", &moto))
}

/// The soak runs the debug build: it looks for hangs, leaks and wrong answers, not speed,
/// and the parent's tests launch the same `target/debug/enclave-rt`.
fn soak(rest: &[&str]) -> Result {
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let ok = match *flag {
            "--minutes" | "--fault-every" => {
                it.next().is_some_and(|n| n.parse::<f64>().is_ok_and(|n| n > 0.0))
            }
            "--faults" => it.next().is_some(),
            _ => false,
        };
        if !ok {
            return Err(Failure(
                "usage: cargo xtask soak [--minutes M] [--fault-every S] [--faults K,K,...]".into(),
            ));
        }
    }
    run::build_sim_enclave()?;
    run(cargo()
        .args([
            "bench",
            "--locked",
            "--profile",
            "dev",
            "-p",
            "parent-shim",
            "--bench",
            "soak",
            "--",
        ])
        .args(rest))
}

fn bench_e2e(rest: &[&str], profile: Option<&str>) -> Result {
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let ok = *flag == "--overload"
            || (matches!(*flag, "--sessions" | "--clients")
                && it.next().is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n > 0)));
        if !ok {
            return Err(Failure(
                "usage: cargo xtask bench e2e [--sessions N] [--clients N] [--overload]".into(),
            ));
        }
    }
    let mut cmd = cargo();
    cmd.args(["bench", "--locked"]);
    if let Some(p) = profile {
        cmd.args(["--profile", p]);
    }
    run(cmd.args(["-p", "parent-shim", "--bench", "e2e", "--"]).args(rest))
}

/// Every fuzz target: (crate directory, target name).
const FUZZ_TARGETS: &[(&str, &str)] = &[
    ("wire", "decode"),
    ("eif", "eif_read"),
    ("enclave-rt/core", "age_header"),
    ("enclave-rt/core", "share_json"),
    ("enclave-rt/core", "sealed_key"),
    ("enclave-rt/core", "signing"),
    ("parent-shim", "attestation_doc"),
    ("parent-shim", "share_manifest"),
    ("parent-shim", "audit_lines"),
];

/// `cargo xtask fuzz [TARGET] [--seconds N]`: one target, or every target in turn.
fn fuzz(rest: &[&str]) -> Result {
    let (target, rest) = match rest {
        [t, rest @ ..] if !t.starts_with("--") => (Some(*t), rest),
        _ => (None, rest),
    };
    let seconds: u32 = match rest {
        [] => 60,
        ["--seconds", n] => n.parse().map_err(|_| Failure(format!("bad --seconds `{n}`")))?,
        _ => return Err(Failure("usage: cargo xtask fuzz [TARGET] [--seconds N]".into())),
    };
    let chosen: Vec<_> =
        FUZZ_TARGETS.iter().filter(|(_, t)| target.is_none_or(|want| want == *t)).collect();
    if chosen.is_empty() {
        let names: Vec<_> = FUZZ_TARGETS.iter().map(|(_, t)| *t).collect();
        return Err(Failure(format!("unknown fuzz target; known: {}", names.join(", "))));
    }
    setup::fuzzing()?;
    for (dir, name) in chosen {
        // `cargo +nightly` only works through the rustup proxy; `rustup run` works always.
        run(std::process::Command::new("rustup")
            .args(["run", "nightly", "cargo", "fuzz", "run", "--fuzz-dir"])
            .arg(format!("{dir}/fuzz"))
            .args([name, "--"])
            .arg(format!("-max_total_time={seconds}")))?;
    }
    Ok(())
}
