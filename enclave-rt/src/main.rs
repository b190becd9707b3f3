//! `enclave-rt`: the only program in the enclave image (`/init`). The modules live in the
//! library (`src/lib.rs`); this binary reads its configuration, sets the memory budget and
//! runs the event loop until the boot fails.
//!
//! ```text
//! enclave-rt --control ADDR --logs ADDR --gateway-key HEX [--memory-budget-mib N]
//!            [--store-limit-mib N] [--allow-empty] [--session-cap N] [--session-ttl-secs N]
//!            [--max-grant-lifetime-secs N] [--replay-window N] [--quiet]
//!            [--sim-nsm-dir DIR] [--sim-pcr INDEX=HEX ...] [--heartbeat ADDR]
//! enclave-rt --args-file FILE      the same arguments, one per line
//! enclave-rt                       as PID 1: the arguments in /etc/enclave-rt/args
//! ADDR: vsock:CID:PORT | unix:PATH
//! ```
//!
//! Flavours are chosen at compile time: `--features sim` (software NSM, local runs and
//! tests) or `--features nsm` (`/dev/nsm`, production). A build with neither refuses to
//! start, and the `nsm` build has no code path to the sim, so no configuration can turn the
//! sim on in a production image.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::ExitCode;

use enclave_core::enclave_args::EnclaveArgs;
use enclave_core::log_ring::{DEFAULT_MAX_BYTES, LogRing};
use enclave_rt::budget_allocator::BudgetAllocator;
use enclave_rt::service::{ServiceConfig, run};

// The flavour's NSM, chosen at compile time: nothing in an `nsm` build reaches the sim.
#[cfg(not(any(feature = "sim", feature = "nsm")))]
use enclave_rt::no_flavour::NoNsm as Flavour;
#[cfg(feature = "nsm")]
use enclave_rt::nsm_device::NsmDevice as Flavour;
#[cfg(feature = "sim")]
use enclave_rt::sim_nsm::SimNsm as Flavour;

/// Every allocation of the enclave goes through the budget and is wiped when freed.
#[global_allocator]
static ALLOC: BudgetAllocator = BudgetAllocator::new();

const USAGE: &str = "usage: enclave-rt --control ADDR --logs ADDR --gateway-key HEX \
                     [--memory-budget-mib N] [--store-limit-mib N] [--allow-empty] \
                     [--session-cap N] [--session-ttl-secs N] [--max-grant-lifetime-secs N] \
                     [--replay-window N] [--quiet] [--sim-nsm-dir DIR] [--sim-pcr INDEX=HEX ...] \
                     [--heartbeat ADDR] [--events-url URL --answers-url URL]";

/// Where the image keeps the arguments of `/init`: part of the ramdisk, so measured into the
/// PCRs like the binary itself (the kernel command line passes none).
const IMAGE_ARGS: &str = "/etc/enclave-rt/args";

/// The command line, or, with none (PID 1 in the image) or `--args-file FILE`, the
/// arguments in that file (`EnclaveArgs::parse_file`).
fn parse_args() -> Result<EnclaveArgs, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let file = match argv.as_slice() {
        [] if enclave_rt::pid1::is_pid1() => IMAGE_ARGS.to_owned(),
        [flag, path] if flag == "--args-file" => path.clone(),
        _ => return EnclaveArgs::parse(&argv).map_err(|e| format!("{e}\n{USAGE}")),
    };
    let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {file}: {e}"))?;
    EnclaveArgs::parse_file(&text).map_err(|e| format!("{file}: {e}\n{USAGE}"))
}

fn service_config(args: &EnclaveArgs) -> ServiceConfig {
    let serving = args.serving_config();
    ServiceConfig { control: args.control.clone(), logs: args.logs.clone(), serving }
}

/// What only the production flavour refuses: a gateway or publisher key whose private half
/// is published (the build refuses to make such an image; this holds for an image made any
/// other way).
fn production_checks(args: EnclaveArgs) -> Result<EnclaveArgs, String> {
    if cfg!(feature = "nsm") {
        enclave_core::enclave_args::refuse_published_keys(&args).map_err(|e| e.to_string())?;
    }
    Ok(args)
}

fn main() -> ExitCode {
    let pid1 = enclave_rt::pid1::is_pid1();
    // Everything about the arguments is checked here, before PID 1's work starts.
    let checked = parse_args().and_then(production_checks).map(|args| {
        let config = service_config(&args);
        (args, config)
    });
    let (args, config) = match checked {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("enclave-rt: {e}");
            if pid1 {
                // Returning would panic the kernel and lose the reason printed above.
                enclave_rt::pid1::end_enclave();
            }
            return ExitCode::from(2);
        }
    };
    if let Err(stats) = ALLOC.set_budget(args.memory_budget_mib << 20) {
        eprintln!(
            "enclave-rt: the memory budget is below what is already allocated ({} bytes)",
            stats.live
        );
        return ExitCode::from(2);
    }
    let logs = LogRing::new(DEFAULT_MAX_BYTES, !args.quiet);
    if pid1 && let Err(e) = init_enclave(&args.heartbeat) {
        eprintln!("enclave-rt: init failed: {e}; ending the enclave");
        enclave_rt::pid1::end_enclave();
    }
    let nsm = match Flavour::from_args(&args) {
        Ok(nsm) => nsm,
        Err(e) => {
            eprintln!("enclave-rt: no NSM: {e}");
            return ExitCode::from(2);
        }
    };
    let result = run(&config, nsm, &|| ALLOC.stats(), &|| ALLOC.take_watermark_alert(), logs);
    match result {
        Ok(exit) => eprintln!("enclave-rt: stopping: {exit:?}"),
        Err(e) => eprintln!("enclave-rt: {e}"),
    }
    if pid1 {
        // Never return to the kernel: as PID 1 that would panic it and lose the reason.
        enclave_rt::pid1::end_enclave();
    }
    ExitCode::from(1)
}

/// PID 1 duties, in order: file systems and console, the devices the kernel found, the
/// Nitro heartbeat, the RNG check (the sim flavour has no NSM device: neither is checked).
fn init_enclave(
    heartbeat: &enclave_rt::transport::Address,
) -> Result<(), enclave_rt::pid1::Pid1Error> {
    use enclave_rt::pid1;
    pid1::mount_and_console()?;
    let devices: &[(&str, u32)] = if cfg!(feature = "sim") {
        &[pid1::VSOCK_DEVICE]
    } else {
        &[pid1::VSOCK_DEVICE, pid1::NSM_DEVICE]
    };
    pid1::check_virtio_devices(std::path::Path::new(pid1::VIRTIO_DEVICES), devices)?;
    let names: Vec<&str> = devices.iter().map(|(name, _)| *name).collect();
    eprintln!("enclave-rt: virtio devices present: {}", names.join(", "));
    pid1::heartbeat(heartbeat)?;
    eprintln!("enclave-rt: heartbeat answered by {heartbeat}");
    if cfg!(feature = "sim") {
        eprintln!("enclave-rt: sim flavour: kernel RNG check skipped");
    } else {
        pid1::check_rng(std::path::Path::new(pid1::RNG_CURRENT))?;
    }
    Ok(())
}
