//! `cargo xtask`: the project's automation. Run `cargo xtask help`.

mod run;
mod setup;
mod wire_doc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use run::{Failure, Result, cargo, run};

const HELP: &str = "\
cargo xtask <task>

  test                 every check and test (fmt, clippy, no_std build, tests, spec drift);
                       installs missing targets and components first
  demo                 the end-to-end demo (not built yet)
  bench wire           wire encode/decode throughput against memcpy
  fuzz wire [--seconds N]
                       run the wire decoder fuzz target (nightly + cargo-fuzz, installed
                       if missing); default 60 s
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
        ["demo", ..] => Err(Failure(
            "the demo is not built yet: it needs the enclave, the parent and the local stack \
             (issues 3-7)"
                .into(),
        )),
        ["bench", "wire"] => {
            run(cargo().args(["bench", "--locked", "-p", "wire", "--bench", "throughput"]))
        }
        ["fuzz", "wire", rest @ ..] => fuzz_wire(rest),
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
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--locked",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // `wire` must build for a target that has no `std` at all.
    run(cargo().args(["check", "--locked", "-p", "wire", "--target", "thumbv7em-none-eabihf"]))?;
    wire_doc::run(root, true)?;
    run(cargo().args(["test", "--locked", "--workspace"]))?;
    eprintln!("xtask test: all checks passed");
    Ok(())
}

fn fuzz_wire(rest: &[&str]) -> Result {
    let seconds = match rest {
        [] => 60,
        ["--seconds", n] => n.parse().map_err(|_| Failure(format!("bad --seconds `{n}`")))?,
        _ => return Err(Failure("usage: cargo xtask fuzz wire [--seconds N]".into())),
    };
    let seconds: u32 = seconds;
    setup::fuzzing()?;
    run(cargo()
        .args(["+nightly", "fuzz", "run", "--fuzz-dir", "wire/fuzz", "decode", "--"])
        .arg(format!("-max_total_time={seconds}")))
}
