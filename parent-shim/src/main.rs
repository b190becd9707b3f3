//! `parent-shim`: the parent daemon's command line: `run` (the daemon), `check-config`,
//! `attestation verify` (for auditors) and `version`.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use parent_shim::attestation_verifier::{Expectations, verify};

#[derive(Parser)]
#[command(name = "parent-shim", version, about = "The Sign Service's parent daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attestation documents.
    Attestation {
        #[command(subcommand)]
        command: AttestationCommand,
    },
    /// Run the daemon: bootstrap the enclave, then serve the gateway's API.
    Run {
        /// The TOML configuration (see parent-shim.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a configuration file and exit.
    CheckConfig {
        /// The TOML configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print a KMS key policy that releases the sealed identity only to the image whose
    /// PCRs are in PCRS (as `cargo xtask build-eif` writes them).
    KmsPolicy {
        /// `pcrs.json` of the image: {"PCR0": "<hex>", ...}.
        #[arg(long)]
        pcrs: PathBuf,
        /// The parent instance's role ARN (attested kms:Decrypt only).
        #[arg(long)]
        enclave_role: String,
        /// The key administrators' ARN (no data-plane rights).
        #[arg(long)]
        admin: String,
        /// An operator role allowed kms:Encrypt, to seal new identities.
        #[arg(long)]
        operator: Option<String>,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum AttestationCommand {
    /// Verify a document fully and print its fields; exits non-zero on any failure.
    Verify {
        /// The document (`COSE_Sign1`, binary).
        #[arg(long)]
        doc: PathBuf,
        /// The pinned root: `aws` for the AWS Nitro root G1, or a certificate file (PEM or DER).
        #[arg(long, default_value = "aws")]
        root: String,
        /// The time to check validity at (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
        /// Expected PCRs, as `cargo xtask build-eif` writes them: {"PCR0": "<hex>", ...}.
        #[arg(long)]
        expect_pcrs: Option<PathBuf>,
        /// Expected nonce, hex.
        #[arg(long)]
        expect_nonce: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("parent-shim {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::KmsPolicy { pcrs, enclave_role, admin, operator } => {
            match parse_pcrs(&pcrs).and_then(|p| {
                if p.is_empty() { Err(format!("{}: no PCR", pcrs.display())) } else { Ok(p) }
            }) {
                Ok(pcrs) => {
                    let who = parent_shim::kms_policy::Principals { enclave_role, admin, operator };
                    let policy = parent_shim::kms_policy::key_policy(&pcrs, &who);
                    println!("{}", serde_json::to_string_pretty(&policy).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("parent-shim: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::CheckConfig { config } => match parent_shim::config::Config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let config = match parent_shim::config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("parent-shim: no async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(parent_shim::daemon::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("parent-shim: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Attestation {
            command: AttestationCommand::Verify { doc, root, at, expect_pcrs, expect_nonce },
        } => {
            match verify_command(
                &doc,
                &root,
                at.as_deref(),
                expect_pcrs.as_deref(),
                expect_nonce.as_deref(),
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("attestation verify: FAILED: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The root certificate as DER, from `aws` or a PEM/DER file.
fn root_der(root: &str) -> Result<Vec<u8>, String> {
    if root == "aws" {
        return parent_shim::attestation_verifier::aws_nitro_root_g1_der();
    }
    let bytes = read(Path::new(root))?;
    if bytes.starts_with(b"-----BEGIN") {
        use x509_cert::der::{DecodePem, Encode};
        let cert = x509_cert::Certificate::from_pem(&bytes).map_err(|e| format!("--root: {e}"))?;
        return cert.to_der().map_err(|e| format!("--root: {e}"));
    }
    Ok(bytes)
}

fn parse_pcrs(path: &Path) -> Result<BTreeMap<u64, Vec<u8>>, String> {
    let text = read(path)?;
    let json: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let serde_json::Value::Object(map) = json else {
        return Err(format!("{}: expected an object of \"PCRn\": \"hex\"", path.display()));
    };
    let mut pcrs = BTreeMap::new();
    for (key, value) in map {
        let index = key
            .strip_prefix("PCR")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("{}: bad key `{key}`", path.display()))?;
        let hex_value =
            value.as_str().ok_or_else(|| format!("{}: {key} is not a string", path.display()))?;
        pcrs.insert(
            index,
            hex::decode(hex_value).map_err(|e| format!("{}: {key}: {e}", path.display()))?,
        );
    }
    Ok(pcrs)
}

fn verify_command(
    doc: &Path,
    root: &str,
    at: Option<&str>,
    expect_pcrs: Option<&Path>,
    expect_nonce: Option<&str>,
) -> Result<(), String> {
    let document = read(doc)?;
    let root = root_der(root)?;
    let at = match at {
        Some(t) => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("--at `{t}`: {e}"))?,
        None => time::OffsetDateTime::now_utc(),
    };
    let at_secs =
        u64::try_from(at.unix_timestamp()).map_err(|_| "--at is before 1970".to_owned())?;
    let pcrs = expect_pcrs.map(parse_pcrs).transpose()?;
    let nonce =
        expect_nonce.map(hex::decode).transpose().map_err(|e| format!("--expect-nonce: {e}"))?;
    let expect = Expectations { pcrs: pcrs.as_ref(), nonce: nonce.as_deref(), public_key: None };
    let d = verify(&document, &root, at_secs, &expect).map_err(|e| e.to_string())?;
    println!("module_id    {}", d.module_id);
    println!("digest       {}", d.digest);
    println!("timestamp    {} ms", d.timestamp_ms);
    for (i, v) in &d.pcrs {
        println!("PCR{i:<2}        {}", hex::encode(v));
    }
    println!(
        "certificate  {} bytes; cabundle {} certificates",
        d.certificate.len(),
        d.cabundle.len()
    );
    let show = |v: &Option<Vec<u8>>| v.as_ref().map_or_else(|| "-".to_owned(), hex::encode);
    println!("public_key   {}", show(&d.public_key));
    println!("user_data    {}", show(&d.user_data));
    println!("nonce        {}", show(&d.nonce));
    println!("OK: signature, chain to the pinned root, validity at {at}, expectations");
    Ok(())
}
