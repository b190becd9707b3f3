//! `signservice-offline`: the operator's tools for the offline machine (docs/runbook.md,
//! "Offline machine"): `deal` (the trusted dealer), `reencrypt` (a fresh identity sealed
//! with KMS), `new-publisher-key`, `kms-policy` (print a key policy, or `--check` a deployed
//! one). Each writes only what it names; no secret is printed.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "signservice-offline",
    version,
    about = "The Sign Service's offline tools: dealing, re-encryption, publisher keys, KMS policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deal every account's FROST shares (trusted dealer): the enclave's file (age, to a
    /// fresh identity), the gateway co-signer's shares, the offline escrow's, the group
    /// keys and the file's signed manifest, into `--out`.
    Deal(Deal),
    /// Print a KMS key policy that releases the sealed identity only to the image whose
    /// PCRs are in PCRS (as `cargo xtask build-eif` writes them); or, with `--check FILE`,
    /// report every statement of a deployed policy that lets a principal decrypt without
    /// those conditions, create grants, or change the policy outside the break-glass
    /// principal (exit 1 if any).
    KmsPolicy(KmsPolicy),
    /// Re-encrypt the share file to a fresh age identity and seal that identity with KMS,
    /// checking the result with the enclave's own loader, and sign its manifest with the
    /// publisher key. Run offline by an operator; writes only ciphertext, the public
    /// recipient and the signed manifest into `--out-dir`.
    Reencrypt(Reencrypt),
    /// Create a share publisher key: the Ed25519 seed into `--out` (owner-only, never over
    /// an existing file); prints the public key for `build-eif --publisher-key`.
    NewPublisherKey {
        /// Where to write the seed.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct KmsPolicy {
    /// `pcrs.json` of the image: {"PCR0": "<hex>", ...} (with --check: optional, the
    /// decrypt statement must pin exactly these).
    #[arg(long)]
    pcrs: Option<PathBuf>,
    /// The parent instance's role ARN (attested kms:Decrypt only).
    #[arg(long, required_unless_present = "check")]
    enclave_role: Option<String>,
    /// The key administrators' ARN (key life cycle only: no data plane, no grants, no
    /// policy change).
    #[arg(long, required_unless_present = "check")]
    admin: Option<String>,
    /// The one principal allowed kms:PutKeyPolicy (image upgrades, two-person rule).
    #[arg(long, required_unless_present = "check")]
    break_glass: Option<String>,
    /// An operator role allowed kms:Encrypt, to seal new identities.
    #[arg(long)]
    operator: Option<String>,
    /// Check this policy (JSON) instead of printing one.
    #[arg(long)]
    check: Option<PathBuf>,
    /// The S3 bucket key's policy instead (SSE-KMS for the inputs): the instance role
    /// decrypts only through S3 in `--region`; with `--check`, nothing uses it outside S3.
    #[arg(long)]
    bucket_key: bool,
    /// The region of the bucket (`kms:ViaService` is `s3.<region>.amazonaws.com`).
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Pin the image's signer (PCR8 of `--pcrs`, the signing certificate) instead of the
    /// image: any image signed with that certificate's key unseals, so an upgrade needs no
    /// policy change; whoever holds the signing key can ship such an image. With --check:
    /// a policy pinning PCR8 without PCR0 is what was meant.
    #[arg(long, conflicts_with = "bucket_key")]
    pcr8: bool,
    /// With --pcr8: pin this image's PCR0 too (signed by that signer, and this image).
    #[arg(long, requires = "pcr8")]
    pcr0: bool,
}

impl KmsPolicy {
    fn pin(&self) -> node_verify::pcrs_file::Pin {
        use node_verify::pcrs_file::Pin;
        match (self.pcr8, self.pcr0) {
            (false, _) => Pin::Image,
            (true, false) => Pin::Signer,
            (true, true) => Pin::SignerAndImage,
        }
    }

    /// The registers of `--pcrs` the policy pins; a signer pin alone is said on stderr.
    fn pinned(&self) -> Result<Option<BTreeMap<u64, Vec<u8>>>, String> {
        let Some(path) = self.pcrs.as_deref() else { return Ok(None) };
        let pcrs = nonempty_pcrs(path)?;
        let pinned = node_verify::pcrs_file::select(&pcrs, self.pin())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if self.pin() == node_verify::pcrs_file::Pin::Signer {
            eprintln!(
                "signservice-offline: NOTE: this pins the signer alone (PCR8): any image signed \
                 with that certificate's key unseals the identity, whatever its PCR0; add --pcr0 \
                 to hold it to this image too"
            );
        }
        Ok(Some(pinned))
    }
}

#[derive(clap::Args)]
struct Deal {
    /// Accounts to deal.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    accounts: u64,
    /// `ed25519`, `secp256k1-tr`, or `both` (alternating).
    #[arg(long, value_parser = ["ed25519", "secp256k1-tr", "both"])]
    scheme: String,
    /// Shares needed to sign.
    #[arg(long)]
    threshold: u16,
    /// Shares per account: the enclave's (party 1), the gateway's, the escrow's.
    #[arg(long)]
    parties: u16,
    /// The publisher key file that signs the manifest (`new-publisher-key`).
    #[arg(long)]
    publisher_key: PathBuf,
    /// The file's epoch: above every epoch published before.
    #[arg(long)]
    epoch: u64,
    /// The output directory.
    #[arg(long)]
    out: PathBuf,
    /// The offline escrow's age recipient (required when the layout gives it parties).
    #[arg(long)]
    escrow_recipient: Option<String>,
    /// The gateway co-signer's age recipient: its shares are written age-encrypted.
    #[arg(long)]
    gateway_recipient: Option<String>,
    /// Parties the gateway holds (default: 1).
    #[arg(long)]
    gateway_parties: Option<u16>,
    /// Let the gateway hold a quorum (it could then sign without the enclave).
    #[arg(long)]
    allow_online_quorum: bool,
}

#[derive(clap::Args)]
struct Reencrypt {
    /// The current share file (`service_key_shares.json.age`).
    #[arg(long)]
    share_file: PathBuf,
    /// The current age identity (`AGE-SECRET-KEY-1...`), `-` for stdin.
    #[arg(long)]
    identity_file: PathBuf,
    /// Where to write the new files (must not hold them already).
    #[arg(long)]
    out_dir: PathBuf,
    /// The KMS key that seals the new identity (its policy pins the image's PCRs).
    #[arg(long)]
    kms_key_id: String,
    /// KMS region.
    #[arg(long, default_value = "us-east-1")]
    kms_region: String,
    /// KMS endpoint override (a local emulator).
    #[arg(long)]
    kms_endpoint: Option<String>,
    /// Also encrypt the new identity to this age recipient (offline escrow).
    #[arg(long)]
    escrow_recipient: Option<String>,
    /// The publisher key file (Ed25519 seed, hex, mode 0600) that signs the new file's
    /// manifest: the key the enclave image measures (`--publisher-key`).
    #[arg(long)]
    publisher_key: PathBuf,
    /// The new manifest's epoch; default: the current manifest's (`--share-file` followed
    /// by `.manifest`) plus one. Never at or below the current one.
    #[arg(long)]
    epoch: Option<u64>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Deal(deal) => printed("deal", deal_command(&deal)),
        Command::KmsPolicy(job) => {
            let result = match &job.check {
                Some(file) => check_kms_policy(file, &job),
                None => print_kms_policy(job),
            };
            result.unwrap_or_else(|e| {
                eprintln!("signservice-offline: kms-policy: {e}");
                ExitCode::from(2)
            })
        }
        Command::NewPublisherKey { out } => printed(
            "new-publisher-key",
            offline_tools::publisher_key::create_publisher_key(&out)
                .map(|public| hex::encode(public).into())
                .map_err(|e| e.to_string()),
        ),
        Command::Reencrypt(job) => printed("reencrypt", reencrypt_command(&job)),
    }
}

/// A command's result: printed on stdout (exit 0), or its error on stderr (exit 1).
fn printed(what: &str, result: Result<serde_json::Value, String>) -> ExitCode {
    match result {
        Ok(serde_json::Value::String(text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("signservice-offline: {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The deal, once its layout checks out; progress on stderr, the summary (public facts
/// only) on stdout.
fn deal_command(job: &Deal) -> Result<serde_json::Value, String> {
    use offline_tools::dealer::{Dealer, GenConfig, SchemeChoice, files, generate};
    let scheme = SchemeChoice::parse(&job.scheme).ok_or("bad --scheme")?;
    let recipient = |flag: &str, text: &Option<String>| {
        text.as_deref()
            .map(|r| r.parse::<age::x25519::Recipient>().map_err(|e| format!("{flag}: {e}")))
            .transpose()
    };
    let gateway = recipient("--gateway-recipient", &job.gateway_recipient)?;
    let escrow = recipient("--escrow-recipient", &job.escrow_recipient)?;
    let mut config = GenConfig::new(job.accounts, scheme, job.threshold, job.parties);
    config.epoch = job.epoch;
    config.allow_online_quorum = job.allow_online_quorum;
    if let Some(g) = job.gateway_parties {
        config.gateway_parties = g;
    }
    config.check().map_err(|e| e.to_string())?;
    let escrow = match (escrow, config.escrow_parties()) {
        (Some(r), _) => r,
        // No escrow share in this layout: the recipient is never used.
        (None, 0) => age::x25519::Identity::generate().to_public(),
        (None, n) => {
            return Err(format!(
                "{n} of the {} parties go to the offline escrow: give --escrow-recipient \
                 age1... (its identity stays offline)",
                job.parties
            ));
        }
    };
    let seed = offline_tools::publisher_key::read_publisher_seed(&job.publisher_key)
        .map_err(|e| e.to_string())?;
    let dealer =
        Dealer { publisher: ed25519_dalek::SigningKey::from_bytes(&seed), escrow, gateway };
    let started = std::time::Instant::now();
    let accounts = job.accounts;
    let mut progress = |done: u64| {
        eprint!("\r  dealing shares: {done}/{accounts} accounts ({}%)", done * 100 / accounts);
    };
    let summary = generate(config, &dealer, &job.out, &mut rand::rngs::OsRng, &mut progress)
        .map_err(|e| e.to_string())?;
    eprintln!();
    let gateway_file =
        if dealer.gateway.is_some() { files::GATEWAY_SHARES_AGE } else { files::GATEWAY_SHARES };
    Ok(serde_json::json!({
        "accounts": summary.accounts,
        "seconds": started.elapsed().as_secs_f64(),
        "out": job.out.display().to_string(),
        "share_file": files::SHARES,
        "share_file_bytes": summary.ciphertext_len,
        "share_file_sha256": summary.ciphertext_sha256,
        "identity": format!("{} (seal it with KMS, then delete it)", files::IDENTITY),
        "recipient": summary.recipient,
        "gateway_shares": gateway_file,
        "escrow_shares": (config.escrow_parties() > 0).then_some(files::ESCROW_SHARES),
        "escrow_recipient": (config.escrow_parties() > 0).then(|| dealer.escrow.to_string()),
        "group_keys": files::GROUP_KEYS,
        "manifest": files::MANIFEST,
        "epoch": job.epoch,
        "publisher_key": hex::encode(summary.manifest.publisher_key),
    }))
}

/// A KMS client for the operator's machine: region, endpoint override, credentials from
/// the environment (`AWS_ACCESS_KEY_ID`, ...: the operator's shell), HTTPS over rustls.
fn kms_client(region: &str, endpoint: Option<&str>) -> aws_sdk_kms::Client {
    use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut config = aws_types::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new(region.to_owned()))
        .http_client(https)
        .credentials_provider(aws_types::sdk_config::SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ));
    if let Some(url) = endpoint {
        config = config.endpoint_url(url);
    }
    aws_sdk_kms::Client::new(&config.build())
}

/// A `pcrs.json` that names at least one PCR.
fn nonempty_pcrs(path: &Path) -> Result<BTreeMap<u64, Vec<u8>>, String> {
    let pcrs = node_verify::pcrs_file::read(path)?;
    if pcrs.is_empty() { Err(format!("{}: no PCR", path.display())) } else { Ok(pcrs) }
}

fn print_kms_policy(job: KmsPolicy) -> Result<ExitCode, String> {
    let pinned = if job.bucket_key { None } else { job.pinned()? };
    let (Some(enclave_role), Some(admin), Some(break_glass)) =
        (job.enclave_role, job.admin, job.break_glass)
    else {
        return Err("--enclave-role, --admin and --break-glass are required".into());
    };
    if break_glass == admin {
        return Err("--break-glass must be another principal than --admin".into());
    }
    let who = offline_tools::kms_policy::Principals {
        enclave_role,
        admin,
        break_glass,
        operator: job.operator,
    };
    let policy = if job.bucket_key {
        offline_tools::kms_policy::bucket_key_policy(&job.region, &who)
    } else {
        offline_tools::kms_policy::key_policy(&pinned.ok_or("--pcrs is required")?, &who)
    };
    println!("{}", serde_json::to_string_pretty(&policy).map_err(|e| e.to_string())?);
    Ok(ExitCode::SUCCESS)
}

fn check_kms_policy(file: &Path, job: &KmsPolicy) -> Result<ExitCode, String> {
    use offline_tools::kms_policy::{audit_bucket_key, audit_pinning};
    let text = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let policy: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: not JSON: {e}", file.display()))?;
    let break_glass = job.break_glass.as_deref();
    let (findings, clean) = if job.bucket_key {
        (audit_bucket_key(&policy, &job.region, break_glass), "nothing uses the key outside S3")
    } else {
        let pcrs = job.pinned()?;
        let found = audit_pinning(&policy, break_glass, pcrs.as_ref(), job.pin());
        (found, "no statement lets a principal around the attestation")
    };
    for finding in &findings {
        println!("{}: {finding}", file.display());
    }
    if findings.is_empty() {
        println!("{}: {clean}", file.display());
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// The age identity in `path` (`-`: stdin), in a buffer wiped on drop.
fn read_identity(path: &Path) -> Result<zeroize::Zeroizing<String>, String> {
    use std::io::Read as _;
    let mut identity = zeroize::Zeroizing::new(String::new());
    if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut identity).map_err(|e| format!("stdin: {e}"))?;
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut identity))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(identity)
}

/// The manifest next to `share_file`, if there is one; it must describe `file`.
fn current_manifest(
    share_file: &Path,
    file: &[u8],
) -> Result<Option<node_verify::share_manifest::SignedManifest>, String> {
    use node_verify::share_manifest::{SUFFIX, SignedManifest};
    let mut path = share_file.as_os_str().to_owned();
    path.push(SUFFIX);
    let path = PathBuf::from(path);
    match std::fs::read(&path) {
        Ok(bytes) => SignedManifest::parse(&bytes)
            .and_then(|m| m.verify().map(|()| m))
            .and_then(|m| m.check_file(file).map(|()| m))
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The new files, written only once everything checked out; a failure removes what was
/// written.
fn reencrypt_command(job: &Reencrypt) -> Result<serde_json::Value, String> {
    use node_verify::share_manifest::SignedManifest;
    use offline_tools::publisher_key;
    use zeroize::Zeroizing;
    let names = [
        "service_key_shares.json.age",
        "age_identity.kms",
        "age_recipient.txt",
        "age_identity.escrow.age",
        "service_key_shares.json.age.manifest",
    ];
    for name in names {
        if job.out_dir.join(name).exists() {
            return Err(format!(
                "{} already exists: refusing to overwrite",
                job.out_dir.join(name).display()
            ));
        }
    }
    let escrow: Option<age::x25519::Recipient> = job
        .escrow_recipient
        .as_deref()
        .map(|r| r.parse().map_err(|e| format!("--escrow-recipient: {e}")))
        .transpose()?;
    let old_file = read(&job.share_file)?;
    let seed = publisher_key::read_publisher_seed(&job.publisher_key).map_err(|e| e.to_string())?;
    let old_manifest = current_manifest(&job.share_file, &old_file)?;
    let old_epoch = old_manifest.map(|m| m.manifest.epoch);
    let epoch =
        publisher_key::next_epoch(old_manifest.as_ref(), job.epoch).map_err(|e| e.to_string())?;
    let old_identity = read_identity(&job.identity_file)?;
    let done =
        offline_tools::reencrypt::reencrypt(&old_file, &old_identity).map_err(|e| e.to_string())?;
    let new_identity = Zeroizing::new(
        age::secrecy::ExposeSecret::expose_secret(&done.identity.to_string()).to_owned(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let kms = kms_client(&job.kms_region, job.kms_endpoint.as_deref());
    let sealed = runtime
        .block_on(
            kms.encrypt()
                .key_id(&job.kms_key_id)
                .plaintext(aws_sdk_kms::primitives::Blob::new(new_identity.as_bytes()))
                .send(),
        )
        .map_err(|e| format!("KMS Encrypt: {}", aws_sdk_kms::error::DisplayErrorContext(&e)))?;
    let sealed = sealed.ciphertext_blob().ok_or("KMS Encrypt returned no CiphertextBlob")?;
    let escrowed = escrow
        .as_ref()
        .map(|r| offline_tools::reencrypt::encrypt_to(new_identity.as_bytes(), r))
        .transpose()?;
    let created_at_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let manifest =
        SignedManifest::for_file(&done.share_file, done.accounts, epoch, created_at_unix, &seed);
    let manifest_json = manifest.to_json();
    std::fs::create_dir_all(&job.out_dir).map_err(|e| format!("{}: {e}", job.out_dir.display()))?;
    let mut files: Vec<(&str, &[u8])> = vec![
        (names[0], &done.share_file),
        (names[1], sealed.as_ref()),
        (names[2], done.recipient.as_bytes()),
        (names[4], manifest_json.as_bytes()),
    ];
    if let Some(e) = &escrowed {
        files.push((names[3], e));
    }
    let mut written = Vec::new();
    for (name, bytes) in files {
        let path = job.out_dir.join(name);
        if let Err(e) = std::fs::write(&path, bytes) {
            for w in &written {
                let _ = std::fs::remove_file(w);
            }
            return Err(format!("{}: {e}", path.display()));
        }
        written.push(path);
    }
    Ok(serde_json::json!({
        "accounts": done.accounts,
        "old_share_file_sha256": hex::encode(done.old_sha256),
        "new_share_file_sha256": hex::encode(done.new_sha256),
        "recipient": done.recipient,
        "epoch": epoch,
        "previous_epoch": old_epoch,
        "publisher_key": hex::encode(manifest.publisher_key),
        "kms_key_id": job.kms_key_id,
        "escrow": escrowed.is_some(),
        "written": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    }))
}
