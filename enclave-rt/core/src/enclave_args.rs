//! The enclave's arguments, one typed definition for every side: `cargo xtask build-eif`
//! writes them into the image (`/etc/enclave-rt/args`, measured into PCR2), the parent's
//! local launcher writes them into a file beside its enclave, and `enclave-rt` reads them.
//! The writing half is the parent's (`parent_shim::boot::args_file`, which the image
//! build uses too), so the image carries only the reading half; the two are inverse (a
//! test there round-trips every option). Every value is checked here, once, at the
//! strength the enclave needs: the gateway and publisher keys must be valid, non-weak
//! Ed25519 points wherever they are written or read.
//!
//! ```text
//! --control ADDR --logs ADDR --gateway-key HEX --publisher-key HEX [--memory-budget-mib N]
//! [--store-limit-mib N] [--allow-empty] [--session-cap N] [--session-ttl-secs N]
//! [--max-grant-lifetime-secs N] [--replay-window N] [--max-clock-skew-ms N] [--quiet]
//! [--sim-nsm-dir DIR] [--sim-pcr INDEX=HEX ...] [--heartbeat ADDR]
//! [--events-url URL --answers-url URL]
//! ADDR: vsock:CID:PORT | unix:PATH
//! ```

use std::fmt;
use std::path::PathBuf;

use crate::serving::ServingConfig;
use crate::session_events::EventsConfig;
use crate::share_loader::LoaderConfig;
use crate::signing_engine::EngineConfig;
use crate::trusted_time::DEFAULT_MAX_SKEW_MS;
use ed25519_dalek::VerifyingKey;

/// A listening or connecting address: vsock in an enclave, a Unix socket in local runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `AF_VSOCK`: a CID (or `VMADDR_CID_ANY`) and a port.
    Vsock {
        /// Context id.
        cid: u32,
        /// Port.
        port: u32,
    },
    /// A Unix stream socket at a path (local runs and tests).
    Unix(PathBuf),
}

/// Why an address string does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError(pub String);

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AddressError(format!("`{s}`: empty socket path")));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("vsock:") {
            let (cid, port) = rest
                .split_once(':')
                .ok_or_else(|| AddressError(format!("`{s}`: expected vsock:CID:PORT")))?;
            let parse = |v: &str, what| {
                v.parse::<u32>().map_err(|_| AddressError(format!("`{s}`: bad {what} `{v}`")))
            };
            return Ok(Self::Vsock { cid: parse(cid, "CID")?, port: parse(port, "port")? });
        }
        Err(AddressError(format!("`{s}`: expected vsock:CID:PORT or unix:PATH")))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Where the Nitro hypervisor listens for the enclave's heartbeat: the parent's CID 3,
/// port 9000.
pub const NITRO_HEARTBEAT: Address = Address::Vsock { cid: 3, port: 9000 };
/// The vsock port the enclave takes control connections on (any CID).
pub const VSOCK_CONTROL_PORT: u32 = 5000;
/// The vsock port the enclave sends its logs on.
pub const VSOCK_LOGS_PORT: u32 = 5001;
/// The memory budget when none is given, MiB.
pub const DEFAULT_MEMORY_BUDGET_MIB: usize = 1024;
/// The share store's limit when none is given, MiB.
pub const DEFAULT_STORE_LIMIT_MIB: u64 = 768;

/// The options that take a value, besides the required ones and the event URLs.
const WITH_VALUE: [&str; 10] = [
    "--max-clock-skew-ms",
    "--memory-budget-mib",
    "--store-limit-mib",
    "--session-cap",
    "--session-ttl-secs",
    "--max-grant-lifetime-secs",
    "--replay-window",
    "--sim-nsm-dir",
    "--sim-pcr",
    "--heartbeat",
];

/// Why the arguments were refused; the message names the argument and what it expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgsError(pub String);

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgsError {}

/// Everything the enclave is told at start; see the module documentation.
#[derive(Debug, Clone)]
pub struct EnclaveArgs {
    /// Where the parent connects for boot, RPC and health.
    pub control: Address,
    /// Where the parent connects for logs.
    pub logs: Address,
    /// The allocator's budget, MiB.
    pub memory_budget_mib: usize,
    /// The share store's limit, MiB (the image build keeps it below the budget).
    pub store_limit_mib: u64,
    /// Whether an empty share file may serve.
    pub allow_empty: bool,
    /// The signing engine's limits and the gateway key (valid and not weak).
    pub engine: EngineConfig,
    /// The share file publisher's Ed25519 key (valid and not weak): the enclave loads only
    /// a file whose manifest it signed (`session_signatures::manifest_statement`).
    pub publisher_key: VerifyingKey,
    /// No log lines on stderr (they still go to the parent).
    pub quiet: bool,
    /// The sim NSM's chain (sim flavour only).
    pub sim_nsm_dir: Option<PathBuf>,
    /// PCRs the sim NSM reports.
    pub sim_pcrs: Vec<(u64, [u8; 48])>,
    /// Where PID 1 sends the Nitro heartbeat.
    pub heartbeat: Address,
    /// How far the wall clock may be from the NSM's before new sessions are refused, ms.
    pub max_clock_skew_ms: u64,
    /// The gateway's session events, if the enclave subscribes to them.
    pub events: Option<EventsConfig>,
}

impl EnclaveArgs {
    /// The arguments with every option at its default.
    pub fn new(
        control: Address,
        logs: Address,
        gateway_key: [u8; 32],
        publisher_key: [u8; 32],
    ) -> Result<Self, ArgsError> {
        let gateway = verifying_key("--gateway-key", "gateway", &gateway_key)?;
        let publisher = verifying_key("--publisher-key", "publisher", &publisher_key)?;
        if gateway == publisher {
            // One key for both roles would let the online gateway sign share manifests
            // (and the offline publisher sign grants): the two trust roots must differ.
            return Err(ArgsError(
                "--gateway-key and --publisher-key are the same key: the gateway (online) \
                 and the share publisher (offline) need keys of their own"
                    .into(),
            ));
        }
        Ok(Self {
            publisher_key: publisher,
            control,
            logs,
            memory_budget_mib: DEFAULT_MEMORY_BUDGET_MIB,
            store_limit_mib: DEFAULT_STORE_LIMIT_MIB,
            allow_empty: false,
            engine: EngineConfig::with_gateway_key(gateway),
            quiet: false,
            sim_nsm_dir: None,
            sim_pcrs: Vec::new(),
            heartbeat: NITRO_HEARTBEAT,
            max_clock_skew_ms: DEFAULT_MAX_SKEW_MS,
            events: None,
        })
    }

    /// Parses arguments as `parent_shim::boot::args_file` writes them (and as a person
    /// types them).
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Self, ArgsError> {
        const REQUIRED: [&str; 4] = ["--control", "--logs", "--gateway-key", "--publisher-key"];
        let mut required: [Option<String>; 4] = [None, None, None, None];
        let mut rest = Vec::new();
        let mut it = args.iter().map(AsRef::as_ref);
        while let Some(arg) = it.next() {
            let slot = REQUIRED.iter().position(|f| *f == arg);
            match slot.and_then(|i| required.get_mut(i)) {
                Some(slot) => *slot = Some(value(arg, it.next())?.to_owned()),
                None => rest.push(arg),
            }
        }
        let [Some(control), Some(logs), Some(key), Some(publisher)] = required else {
            return Err(ArgsError(
                "--control, --logs, --gateway-key and --publisher-key are required".into(),
            ));
        };
        let mut args = Self::new(
            address("--control", &control)?,
            address("--logs", &logs)?,
            ed25519_key("--gateway-key", &key)?,
            ed25519_key("--publisher-key", &publisher)?,
        )?;
        let (mut events_url, mut answers_url) = (None, None);
        let mut it = rest.into_iter();
        while let Some(arg) = it.next() {
            match arg {
                "--allow-empty" => args.allow_empty = true,
                "--quiet" => args.quiet = true,
                "--events-url" => events_url = Some(value(arg, it.next())?),
                "--answers-url" => answers_url = Some(value(arg, it.next())?),
                _ if WITH_VALUE.contains(&arg) => args.option(arg, value(arg, it.next())?)?,
                _ => return Err(ArgsError(format!("unknown argument `{arg}`"))),
            }
        }
        args.events = match (events_url, answers_url) {
            (None, None) => None,
            (Some(e), Some(a)) => Some(EventsConfig::new(e, a).map_err(ArgsError)?),
            _ => return Err(ArgsError("--events-url and --answers-url go together".into())),
        };
        Ok(args)
    }

    /// One option that takes a value.
    fn option(&mut self, arg: &str, v: &str) -> Result<(), ArgsError> {
        match arg {
            // At most 1 TiB, so the byte counts cannot overflow.
            "--memory-budget-mib" => self.memory_budget_mib = number(arg, v, 0, 1 << 20)?,
            "--store-limit-mib" => self.store_limit_mib = number(arg, v, 0, 1 << 20)?,
            "--session-cap" => self.engine.session_cap = number(arg, v, 1, 65_536)?,
            "--session-ttl-secs" => self.engine.session_ttl_secs = number(arg, v, 1, 3600)?,
            "--max-grant-lifetime-secs" => {
                self.engine.max_grant_lifetime_secs = number(arg, v, 1, 3600)?;
            }
            "--replay-window" => self.engine.replay_window = number(arg, v, 1, 1 << 22)?,
            "--sim-nsm-dir" => self.sim_nsm_dir = Some(PathBuf::from(v)),
            "--sim-pcr" => self.sim_pcrs.push(sim_pcr(v)?),
            "--heartbeat" => self.heartbeat = address(arg, v)?,
            "--max-clock-skew-ms" => self.max_clock_skew_ms = number(arg, v, 1, 3_600_000)?,
            _ => return Err(ArgsError(format!("unknown argument `{arg}`"))),
        }
        Ok(())
    }

    /// What the serving core is told: the loader's limits, the publisher key, the engine's
    /// limits and gateway key, the event stream.
    #[must_use]
    pub fn serving_config(&self) -> ServingConfig {
        ServingConfig {
            loader: LoaderConfig {
                allow_empty: self.allow_empty,
                store_limit_bytes: self.store_limit_mib << 20,
            },
            publisher_key: self.publisher_key,
            engine: self.engine,
            events: self.events.clone(),
            max_clock_skew_ms: self.max_clock_skew_ms,
        }
    }

    /// The arguments in a file as the image build and the parent write it
    /// (`parent_shim::boot::args_file`): one per line, `#` starts a comment line, blank
    /// lines ignored.
    pub fn parse_file(text: &str) -> Result<Self, ArgsError> {
        let lines: Vec<&str> =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        Self::parse(&lines)
    }
}

fn value<'a>(flag: &str, v: Option<&'a str>) -> Result<&'a str, ArgsError> {
    v.ok_or_else(|| ArgsError(format!("{flag} needs a value")))
}

fn address(flag: &str, v: &str) -> Result<Address, ArgsError> {
    v.parse().map_err(|e: AddressError| ArgsError(format!("bad {flag} {}", e.0)))
}

/// A number within `min..=max`.
fn number<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
    flag: &str,
    text: &str,
    min: T,
    max: T,
) -> Result<T, ArgsError> {
    match text.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(ArgsError(format!("bad {flag} `{text}`: expected a number from {min} to {max}"))),
    }
}

/// The gateway's Ed25519 public key: 64 hex digits, a valid and not weak point.
pub fn gateway_key(text: &str) -> Result<[u8; 32], ArgsError> {
    ed25519_key("--gateway-key", text)
}

/// The share publisher's Ed25519 public key: 64 hex digits, a valid and not weak point.
pub fn publisher_key(text: &str) -> Result<[u8; 32], ArgsError> {
    ed25519_key("--publisher-key", text)
}

/// An Ed25519 public key for `flag`: 64 hex digits, a valid and not weak point.
fn ed25519_key(flag: &str, text: &str) -> Result<[u8; 32], ArgsError> {
    if text.len() != 64 {
        return Err(ArgsError(format!("bad {flag}: expected 64 hex digits")));
    }
    let key: [u8; 32] = unhex(text).ok_or_else(|| ArgsError(format!("bad {flag}: not hex")))?;
    let whose = flag.trim_start_matches("--").trim_end_matches("-key");
    verifying_key(flag, whose, &key)?;
    Ok(key)
}

/// A measured Ed25519 key (the gateway's, which signs grants, or the share publisher's,
/// which signs manifests) as the enclave will use it: a valid point, not of small order (a
/// weak key would let anyone forge what it signs). Parsed once, here: the core holds only
/// keys that passed.
fn verifying_key(flag: &str, whose: &str, key: &[u8; 32]) -> Result<VerifyingKey, ArgsError> {
    VerifyingKey::from_bytes(key).ok().filter(|k| !k.is_weak()).ok_or_else(|| {
        ArgsError(format!(
            "bad {flag}: the configured {whose} key is not a valid Ed25519 key (or a weak one)"
        ))
    })
}

/// Ed25519 public keys anyone can sign with: those whose private halves are in this
/// repository (the demo gateway key, seed `[0x42; 32]`, a test's wrong key, seed `[7; 32]`,
/// and the demo publisher key, seed `[0x50; 32]`) and the base point (secret scalar 1). A
/// production enclave refuses them as gateway or publisher key ([`refuse_published_keys`]).
/// A test derives each from its secret, so the list cannot drift from the code that uses
/// them.
pub const PUBLISHED_KEYS: [[u8; 32]; 4] = [
    [
        0x21, 0x52, 0xf8, 0xd1, 0x9b, 0x79, 0x1d, 0x24, 0x45, 0x32, 0x42, 0xe1, 0x5f, 0x2e, 0xab,
        0x6c, 0xb7, 0xcf, 0xfa, 0x7b, 0x6a, 0x5e, 0xd3, 0x00, 0x97, 0x96, 0x0e, 0x06, 0x98, 0x81,
        0xdb, 0x12,
    ],
    [
        0xea, 0x4a, 0x6c, 0x63, 0xe2, 0x9c, 0x52, 0x0a, 0xbe, 0xf5, 0x50, 0x7b, 0x13, 0x2e, 0xc5,
        0xf9, 0x95, 0x47, 0x76, 0xae, 0xbe, 0xbe, 0x7b, 0x92, 0x42, 0x1e, 0xea, 0x69, 0x14, 0x46,
        0xd2, 0x2c,
    ],
    [
        0x3e, 0xf0, 0x89, 0x59, 0x03, 0x30, 0x28, 0xc8, 0xfc, 0x6f, 0xc6, 0xd4, 0x91, 0xa1, 0x25,
        0x48, 0xe7, 0x8d, 0xf6, 0xae, 0xfb, 0x2d, 0x7c, 0x2c, 0x19, 0x0c, 0x3f, 0x78, 0xce, 0xf3,
        0xf5, 0x0b,
    ],
    [
        0x58, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
        0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
        0x66, 0x66,
    ],
];

/// The production image's check (`nsm` flavour): neither the gateway key nor the publisher
/// key may be one whose private half is published ([`PUBLISHED_KEYS`]). The build refuses
/// such an image too (`cargo xtask build-eif`); this holds even for an image built some
/// other way.
///
/// # Errors
/// Names the key and why.
pub fn refuse_published_keys(args: &EnclaveArgs) -> Result<(), ArgsError> {
    for (flag, key, owner) in [
        ("--gateway-key", args.engine.gateway_key.as_bytes(), "the gateway's"),
        ("--publisher-key", args.publisher_key.as_bytes(), "the share publisher's"),
    ] {
        if PUBLISHED_KEYS.contains(key) {
            return Err(ArgsError(format!(
                "refusing {flag} {}: its private half is published in the sign-service \
                 repository (a demo or test key); a production image needs {owner} own key",
                hex(key)
            )));
        }
    }
    Ok(())
}

/// A `--sim-pcr` value: `INDEX=HEX` with 96 hex digits.
///
/// # Errors
/// Names the value and the expected form.
pub fn sim_pcr(text: &str) -> Result<(u64, [u8; 48]), ArgsError> {
    let bad = || ArgsError(format!("bad --sim-pcr `{text}`: expected INDEX=96 hex digits"));
    let (index, value) = text.split_once('=').ok_or_else(bad)?;
    Ok((index.parse().map_err(|_| bad())?, unhex(value).ok_or_else(bad)?))
}

/// Exactly `N` bytes of hex (either case).
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let [hi, lo] = [pair.first()?, pair.get(1)?].map(|c| char::from(*c).to_digit(16));
        *o = u8::try_from(hi? << 4 | lo?).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
