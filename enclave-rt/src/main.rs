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

use enclave_core::log_ring::{DEFAULT_MAX_BYTES, LogRing};
use enclave_core::share_loader::LoaderConfig;
use enclave_core::signing_engine::{EngineConfig, check_gateway_key};
use enclave_rt::budget_allocator::BudgetAllocator;
use enclave_rt::service::{ServiceConfig, run};

/// Every allocation of the enclave goes through the budget and is wiped when freed.
#[global_allocator]
static ALLOC: BudgetAllocator = BudgetAllocator::new();

const USAGE: &str = "usage: enclave-rt --control ADDR --logs ADDR --gateway-key HEX \
                     [--memory-budget-mib N] [--store-limit-mib N] [--allow-empty] \
                     [--session-cap N] [--session-ttl-secs N] [--max-grant-lifetime-secs N] \
                     [--replay-window N] [--quiet] [--sim-nsm-dir DIR] [--sim-pcr INDEX=HEX ...] \
                     [--heartbeat ADDR] [--events-url URL --answers-url URL]";

struct Args {
    service: ServiceConfig,
    budget: usize,
    quiet: bool,
    sim_nsm_dir: Option<std::path::PathBuf>,
    sim_pcrs: Vec<(u64, [u8; 48])>,
    /// Where PID 1 sends the Nitro heartbeat: the parent (CID 3) on Nitro; the QEMU boot
    /// test's host (CID 2). Measured with the other arguments.
    heartbeat: enclave_rt::transport::Address,
}

/// `INDEX=HEX` with 96 hex digits.
fn parse_pcr(text: &str) -> Result<(u64, [u8; 48]), String> {
    let bad = || format!("bad --sim-pcr `{text}`: expected INDEX=96 hex digits");
    let (index, hex) = text.split_once('=').ok_or_else(bad)?;
    let index = index.parse().map_err(|_| bad())?;
    if hex.len() != 96 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut value = [0u8; 48];
    for (i, byte) in value.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok((index, value))
}

/// Where the image keeps the arguments of `/init`: part of the ramdisk, so measured into the
/// PCRs like the binary itself (the kernel command line passes none).
const IMAGE_ARGS: &str = "/etc/enclave-rt/args";

/// The command line, or, with none (PID 1 in the image) or `--args-file FILE`, the arguments
/// in that file: one per line, `#` starts a comment line, blank lines ignored.
fn arguments() -> Result<Vec<String>, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let file = match argv.as_slice() {
        [] if enclave_rt::pid1::is_pid1() => IMAGE_ARGS.to_owned(),
        [flag, path] if flag == "--args-file" => path.clone(),
        _ => return Ok(argv),
    };
    let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {file}: {e}"))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// The gateway's Ed25519 public key: 64 hex digits, a valid and not weak point.
fn parse_gateway_key(text: &str) -> Result<[u8; 32], String> {
    let bad = |why: &str| format!("bad --gateway-key: {why}");
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return Err(bad("expected 64 hex digits"));
    }
    let mut key = [0u8; 32];
    for (out, pair) in key.iter_mut().zip(bytes.chunks_exact(2)) {
        let digits = std::str::from_utf8(pair).map_err(|_| bad("not hex"))?;
        *out = u8::from_str_radix(digits, 16).map_err(|_| bad("not hex"))?;
    }
    check_gateway_key(&key).map_err(|e| bad(&e.to_string()))?;
    Ok(key)
}

/// A number option within `min..=max`.
fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
    flag: &str,
    text: &str,
    min: T,
    max: T,
) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(format!("bad {flag} `{text}`: expected a number from {min} to {max}")),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut control = None;
    let mut logs = None;
    let mut budget_mib: usize = 1024;
    let mut store_mib: u64 = 768;
    let mut allow_empty = false;
    let mut quiet = false;
    let mut sim_nsm_dir = None;
    let mut sim_pcrs = Vec::new();
    let mut heartbeat = enclave_rt::pid1::HEARTBEAT_ADDRESS;
    let mut gateway_key = None;
    let (mut events_url, mut answers_url) = (None, None);
    let mut engine = EngineConfig::with_gateway_key([0; 32]);
    let mut it = arguments()?.into_iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--control" => {
                control =
                    Some(value()?.parse().map_err(|e: enclave_rt::transport::AddressError| e.0)?);
            }
            "--logs" => {
                logs =
                    Some(value()?.parse().map_err(|e: enclave_rt::transport::AddressError| e.0)?);
            }
            "--memory-budget-mib" => {
                budget_mib =
                    value()?.parse().map_err(|_| format!("bad --memory-budget-mib\n{USAGE}"))?;
            }
            "--store-limit-mib" => {
                store_mib =
                    value()?.parse().map_err(|_| format!("bad --store-limit-mib\n{USAGE}"))?;
            }
            "--allow-empty" => allow_empty = true,
            "--gateway-key" => gateway_key = Some(parse_gateway_key(&value()?)?),
            "--session-cap" => engine.session_cap = number(&arg, &value()?, 1, 65_536)?,
            "--session-ttl-secs" => engine.session_ttl_secs = number(&arg, &value()?, 1, 3600)?,
            "--max-grant-lifetime-secs" => {
                engine.max_grant_lifetime_secs = number(&arg, &value()?, 1, 3600)?;
            }
            "--replay-window" => engine.replay_window = number(&arg, &value()?, 1, 1 << 22)?,
            "--quiet" => quiet = true,
            "--sim-nsm-dir" => sim_nsm_dir = Some(std::path::PathBuf::from(value()?)),
            "--sim-pcr" => sim_pcrs.push(parse_pcr(&value()?)?),
            "--heartbeat" => {
                heartbeat =
                    value()?.parse().map_err(|e: enclave_rt::transport::AddressError| e.0)?;
            }
            "--events-url" => events_url = Some(value()?),
            "--answers-url" => answers_url = Some(value()?),
            _ => return Err(format!("unknown argument `{arg}`\n{USAGE}")),
        }
    }
    let (Some(control), Some(logs), Some(gateway_key)) = (control, logs, gateway_key) else {
        return Err(format!("--control, --logs and --gateway-key are required\n{USAGE}"));
    };
    engine.gateway_key = gateway_key;
    let events = match (events_url, answers_url) {
        (None, None) => None,
        (Some(e), Some(a)) => Some(enclave_core::session_events::EventsConfig::new(&e, &a)?),
        _ => return Err(format!("--events-url and --answers-url go together\n{USAGE}")),
    };
    Ok(Args {
        service: ServiceConfig {
            control,
            logs,
            loader: LoaderConfig { allow_empty, store_limit_bytes: store_mib << 20 },
            engine,
            events,
        },
        budget: budget_mib << 20,
        quiet,
        sim_nsm_dir,
        sim_pcrs,
        heartbeat,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("enclave-rt: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(stats) = ALLOC.set_budget(args.budget) {
        eprintln!(
            "enclave-rt: the memory budget is below what is already allocated ({} bytes)",
            stats.live
        );
        return ExitCode::from(2);
    }
    let logs = LogRing::new(DEFAULT_MAX_BYTES, !args.quiet);
    let pid1 = enclave_rt::pid1::is_pid1();
    if pid1 && let Err(e) = init_enclave(&args.heartbeat) {
        eprintln!("enclave-rt: init failed: {e}; ending the enclave");
        enclave_rt::pid1::end_enclave();
    }
    let Some(nsm) = nsm(&args) else {
        eprintln!(
            "enclave-rt: no NSM (see above, or built without a flavour: --features sim or nsm)"
        );
        return ExitCode::from(2);
    };
    let result = run(&args.service, nsm, &|| ALLOC.stats(), &|| ALLOC.take_watermark_alert(), logs);
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

#[cfg(feature = "sim")]
fn nsm(args: &Args) -> Option<enclave_rt::sim_nsm::SimNsm> {
    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    let Some(dir) = &args.sim_nsm_dir else {
        eprintln!(
            "enclave-rt: the sim flavour needs --sim-nsm-dir (cargo xtask sim-ca writes one)"
        );
        return None;
    };
    let mut pcrs = args.sim_pcrs.clone();
    for i in 0..3 {
        if !pcrs.iter().any(|(j, _)| *j == i) {
            pcrs.push((i, [0u8; 48]));
        }
    }
    pcrs.sort_by_key(|(i, _)| *i);
    match enclave_rt::sim_nsm::SimNsm::from_dir(dir, pcrs, now_ms) {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("enclave-rt: {}", e.0);
            None
        }
    }
}

#[cfg(feature = "nsm")]
fn nsm(args: &Args) -> Option<enclave_rt::nsm_device::NsmDevice> {
    if args.sim_nsm_dir.is_some() || !args.sim_pcrs.is_empty() {
        eprintln!("enclave-rt: --sim-* options are refused by the nsm flavour");
        return None;
    }
    match enclave_rt::nsm_device::NsmDevice::open() {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("enclave-rt: {}", e.0);
            None
        }
    }
}

/// Built without a flavour: no NSM at all, so the binary refuses to start.
#[cfg(not(any(feature = "sim", feature = "nsm")))]
enum NoNsm {}

#[cfg(not(any(feature = "sim", feature = "nsm")))]
impl enclave_core::boot_state_machine::Nsm for NoNsm {
    fn attest(
        &mut self,
        _nonce: &[u8],
        _public_key: &[u8],
        _user_data: &[u8],
    ) -> Result<Vec<u8>, enclave_core::boot_state_machine::NsmError> {
        match *self {}
    }
}

#[cfg(not(any(feature = "sim", feature = "nsm")))]
fn nsm(args: &Args) -> Option<NoNsm> {
    let _ = (&args.sim_nsm_dir, &args.sim_pcrs);
    None
}
