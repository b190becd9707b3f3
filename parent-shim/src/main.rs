//! `parent-shim`: the parent daemon's command line: `run` (the daemon), `check-config`,
//! and the relying party's checks for auditors (`attestation verify`, `check-node`,
//! `audit-verify`), `version`. The offline tools (dealing, re-encryption, publisher keys,
//! KMS policies) are another binary, `signservice-offline` (`parent-shim/offline`).

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
    /// Check configuration files and exit. With several (one per instance of
    /// `parent-shim@.service` on this host), also refuse two that would share a port, an
    /// enclave CID, a runtime directory, an audit file or a `CloudWatch` stream.
    CheckConfig {
        /// The TOML configuration; repeat for every instance on the host.
        #[arg(long, required = true)]
        config: Vec<PathBuf>,
    },
    /// Check a node as a relying party (the gateway) would, from its health report: the
    /// boot attestation against the pinned root and PCRs, the answer key, the signed Loaded
    /// statement and its share file epoch. A report alone proves a past boot; with `--live`
    /// the running node is asked for a document over a fresh nonce of ours, which must
    /// carry the report's answer key and be signed within `--max-age-secs` of now. Prints
    /// what it proves; exits 1 on any failure.
    CheckNode {
        /// The node's health report (JSON, as the parent sends it to the gateway).
        #[arg(long)]
        report: PathBuf,
        /// The pinned root: `aws` (or `aws:PATH`), or a certificate file (PEM or DER).
        #[arg(long, default_value = "aws")]
        root: String,
        /// The image's PCRs to pin (`pcrs.json` from `cargo xtask build-eif`).
        #[arg(long, required_unless_present = "unpinned_insecure")]
        pcrs: Option<PathBuf>,
        /// Accept any image the root vouches for. For tests of other layers only.
        #[arg(long, conflicts_with = "pcrs")]
        unpinned_insecure: bool,
        /// Pin the image's signer (PCR8 of `--pcrs`) instead of the image: any image signed
        /// with that certificate's key passes, this one or a later one.
        #[arg(long, requires = "pcrs")]
        pin_signer: bool,
        /// The lowest share file epoch accepted: the newest one published.
        #[arg(long)]
        min_epoch: u64,
        #[command(flatten)]
        live: LiveNode,
    },
    /// Verify a node's session audit chain offline: the node checked as `check-node` does
    /// (from its health report), then its `audit_entry` / `audit_checkpoint` lines (the
    /// journal's or a `CloudWatch` export's JSON lines): complete up to which checkpoint,
    /// every entry missing, altered, reordered or duplicated, the unsigned tail, and for each
    /// message SHA-256 in `--messages`, whether this boot signed it and under which grant.
    /// Exits 1 on any problem.
    AuditVerify {
        /// The node's health report (its boot attestation starts the chain).
        #[arg(long)]
        report: PathBuf,
        /// The pinned root: `aws` (or `aws:PATH`), or a certificate file (PEM or DER).
        #[arg(long, default_value = "aws")]
        root: String,
        /// The image's PCRs to pin.
        #[arg(long)]
        pcrs: PathBuf,
        /// Pin the image's signer (PCR8 of `--pcrs`) instead of the image: any image signed
        /// with that certificate's key passes, this one or a later one.
        #[arg(long, requires = "pcrs")]
        pin_signer: bool,
        /// The lowest share file epoch accepted: the newest one published (required: a
        /// default would accept a node rolled back to any older file).
        #[arg(long)]
        min_epoch: u64,
        /// The log lines holding the chain (JSON lines; others are skipped).
        #[arg(long)]
        entries: PathBuf,
        /// Message SHA-256s (hex, one a line) to look up.
        #[arg(long)]
        messages: Option<PathBuf>,
        /// The gateway's anchors (JSON lines `{"answer_key", "seq", "head"}`, from the
        /// answers and fresh heads it received): each boot's chain must reach every one.
        #[arg(long)]
        anchors: Option<PathBuf>,
        /// The answer keys the gateway granted to (hex, one a line): each boot must have
        /// its chain in the export (a twin's left out is reported).
        #[arg(long)]
        answer_keys: Option<PathBuf>,
        /// The node was stopped: its chain must end in the enclave's closing checkpoint.
        #[arg(long)]
        stopped: bool,
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
        /// The pinned root: `aws` (or `aws:PATH`) for the AWS Nitro root G1, accepted only with
        /// its documented fingerprint; or any certificate file (PEM or DER).
        #[arg(long, default_value = "aws")]
        root: String,
        /// The time to check validity at (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
        /// Expected PCRs, as `cargo xtask build-eif` writes them: {"PCR0": "<hex>", ...}.
        #[arg(long)]
        expect_pcrs: Option<PathBuf>,
        /// Check only the signer (PCR8 of `--expect-pcrs`), not the image.
        #[arg(long, requires = "expect_pcrs")]
        pin_signer: bool,
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
        Command::CheckNode {
            report,
            root,
            pcrs,
            unpinned_insecure: _,
            pin_signer,
            min_epoch,
            live,
        } => {
            let pcrs = pcrs.as_deref().map(|p| (p, pin_signer));
            let checked = check_node(&report, &root, pcrs, min_epoch, &live);
            printed("check-node: REFUSED", checked)
        }
        Command::AuditVerify {
            report,
            root,
            pcrs,
            pin_signer,
            min_epoch,
            entries,
            messages,
            anchors,
            answer_keys,
            stopped,
        } => {
            let held = GatewayRecords { anchors: anchors.as_deref(), keys: answer_keys.as_deref() };
            let inputs =
                (root.as_str(), (pcrs.as_path(), pin_signer), min_epoch, entries.as_path());
            let checked = audit_verify(&report, inputs, messages.as_deref(), held, stopped);
            printed("audit verify: REFUSED", checked)
        }
        Command::CheckConfig { config } => check_configs(&config),
        Command::Run { config } => {
            let config = match parent_shim::daemon::config::Config::load(&config) {
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
            command:
                AttestationCommand::Verify { doc, root, at, expect_pcrs, pin_signer, expect_nonce },
        } => {
            match verify_command(
                &doc,
                &root,
                at.as_deref(),
                expect_pcrs.as_deref().map(|p| (p, pin_signer)),
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
            eprintln!("parent-shim: {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The root certificate as DER, from `aws` or a PEM/DER file.
fn root_der(root: &str) -> Result<Vec<u8>, String> {
    parent_shim::attestation_verifier::load_root(root).map_err(|e| format!("--root {e}"))
}

fn parse_pcrs(path: &Path) -> Result<BTreeMap<u64, Vec<u8>>, String> {
    parent_shim::pcrs_file::read(path)
}

/// A `pcrs.json` that names at least one PCR.
fn nonempty_pcrs(path: &Path) -> Result<BTreeMap<u64, Vec<u8>>, String> {
    let pcrs = parse_pcrs(path)?;
    if pcrs.is_empty() { Err(format!("{}: no PCR", path.display())) } else { Ok(pcrs) }
}

/// The registers a check holds the node to: every one of the file, or with `--pin-signer`
/// its PCR8 alone (said on stderr: it accepts every image of that signer).
fn pinned_pcrs((path, signer): (&Path, bool)) -> Result<BTreeMap<u64, Vec<u8>>, String> {
    use parent_shim::pcrs_file::{Pin, select};
    let pcrs = nonempty_pcrs(path)?;
    if !signer {
        return Ok(pcrs);
    }
    let pinned = select(&pcrs, Pin::Signer).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!(
        "NOTE: the signer is pinned (PCR8), not the image: any image signed with that \
         certificate's key passes, whatever its PCR0"
    );
    Ok(pinned)
}

/// The relying party's policy for `--pcrs` (and `--pin-signer`).
fn pcr_policy(file: (&Path, bool)) -> Result<parent_shim::relying_party::PcrPolicy, String> {
    use parent_shim::relying_party::PcrPolicy;
    let pinned = pinned_pcrs(file)?;
    Ok(match pinned.get(&8) {
        Some(signer) if file.1 => PcrPolicy::SignedBy(signer.clone()),
        _ => PcrPolicy::Pinned(pinned),
    })
}

fn verify_command(
    doc: &Path,
    root: &str,
    at: Option<&str>,
    expect_pcrs: Option<(&Path, bool)>,
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
    let pcrs = expect_pcrs.map(pinned_pcrs).transpose()?;
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
    let pinned = pcrs.as_ref().map_or_else(String::new, |p| {
        p.keys().map(|i| format!("PCR{i}")).collect::<Vec<_>>().join(", ")
    });
    if pinned.is_empty() {
        println!("OK: signature, chain to the pinned root, validity at {at}");
        println!(
            "WARNING: no PCR was checked (no --expect-pcrs): any enclave image the root vouches \
             for passes, another team's included; pin the image with --expect-pcrs pcrs.json"
        );
    } else {
        println!("OK: signature, chain to the pinned root, validity at {at}, {pinned} as expected");
    }
    if nonce.is_none() {
        println!("NOTE: no nonce was checked (no --expect-nonce): the document may be a replay");
    }
    Ok(())
}

/// `check-node --live`: where the running node answers, and the gateway's client identity.
#[derive(clap::Args)]
struct LiveNode {
    /// The node's gRPC endpoint (`https://host:50051`): check the running node too.
    #[arg(long, requires_all = ["ca", "client_cert", "client_key"])]
    live: Option<String>,
    /// The CA (PEM) of the node's server certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The gateway's client certificate (PEM), for mutual TLS.
    #[arg(long)]
    client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long)]
    client_key: Option<PathBuf>,
    /// The name the node's certificate is for (default: the endpoint's host).
    #[arg(long)]
    tls_name: Option<String>,
    /// How far the live document's own timestamp may be from now.
    #[arg(long, default_value_t = 300)]
    max_age_secs: u64,
}

/// The node's answer to `GetAttestation` over `nonce`, through its gRPC API.
fn fetch_live_document(live: &LiveNode, url: &str, nonce: &[u8]) -> Result<Vec<u8>, String> {
    use parent_shim::serve::grpc_bridge::pb;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let pem = |p: &Option<PathBuf>| p.as_deref().ok_or("missing".to_owned()).and_then(read);
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem(&live.ca)?))
        .identity(Identity::from_pem(pem(&live.client_cert)?, pem(&live.client_key)?));
    if let Some(name) = &live.tls_name {
        tls = tls.domain_name(name);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no async runtime: {e}"))?;
    runtime.block_on(async {
        let channel = Channel::from_shared(url.to_owned())
            .map_err(|e| format!("--live {url}: {e}"))?
            .tls_config(tls)
            .map_err(|e| format!("--live: {e}"))?
            .connect()
            .await
            .map_err(|e| format!("--live {url}: {e}"))?;
        let mut api = pb::sign_service_client::SignServiceClient::new(channel);
        let answer = api
            .get_attestation(pb::GetAttestationRequest { nonce: nonce.to_vec() })
            .await
            .map_err(|e| format!("GetAttestation: {e}"))?;
        Ok(answer.into_inner().document)
    })
}

/// `check-node`: the relying party's checks (`parent_shim::relying_party`) on a report,
/// and with `--live` on the running node.
fn check_node(
    report: &Path,
    root: &str,
    pcrs: Option<(&Path, bool)>,
    min_epoch: u64,
    live: &LiveNode,
) -> Result<serde_json::Value, String> {
    use parent_shim::relying_party::{PcrPolicy, RelyingParty};
    let report: serde_json::Value =
        serde_json::from_slice(&read(report)?).map_err(|e| format!("{}: {e}", report.display()))?;
    let trust = parent_shim::attestation_verifier::PinnedRoot(root_der(root)?);
    let policy = match pcrs {
        Some(pinned) => pcr_policy(pinned)?,
        None => {
            eprintln!("parent-shim: check-node: WARNING: PCRs not pinned: any image passes");
            PcrPolicy::UnpinnedInsecure
        }
    };
    let rp = RelyingParty { trust: &trust, pcrs: &policy };
    let node = rp.check_report(&report, min_epoch).map_err(|e| e.to_string())?;
    let (live_fields, proves) = match &live.live {
        None => (
            serde_json::json!({"live": false}),
            "a past boot of this image loaded this file (the report's document, nonce and \
             load time); not that the node runs it now: add --live to ask the node",
        ),
        Some(url) => {
            let mut nonce = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
                .map_err(|_| "no randomness for the nonce".to_owned())?;
            let document = fetch_live_document(live, url, &nonce)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_secs();
            let at_ms = rp
                .check_live(&node, &document, &nonce, now, live.max_age_secs)
                .map_err(|e| format!("live: {e}"))?;
            (
                serde_json::json!({"live": true, "live_nonce": hex::encode(nonce),
                    "live_document_unix_ms": at_ms, "max_age_secs": live.max_age_secs}),
                "the node answering now runs this boot of this image with this file: its \
                 document over our fresh nonce carries the report's answer key",
            )
        }
    };
    Ok(serde_json::json!({
        "verified": true,
        "proves": proves,
        "check": live_fields,
        "pcrs_pinned": pcrs.is_some(),
        "pin": match pcrs {
            None => "none",
            Some((_, false)) => "image (every register of the pcrs file)",
            Some((_, true)) => "signer (PCR8): any image signed with that certificate's key",
        },
        "answer_key": hex::encode(node.answer_key),
        "pcrs": node.pcrs.iter().map(|(i, v)| (format!("PCR{i}"), hex::encode(v))).collect::<BTreeMap<_, _>>(),
        "share_file_sha256": hex::encode(node.share_file_sha256),
        "accounts": node.accounts,
        "epoch": node.epoch,
        "min_epoch": min_epoch,
    }))
}

/// What the gateway kept, for `audit verify`: its anchors and the keys it granted to.
#[derive(Clone, Copy)]
struct GatewayRecords<'a> {
    anchors: Option<&'a Path>,
    keys: Option<&'a Path>,
}

impl GatewayRecords<'_> {
    fn anchors(&self) -> Result<Vec<parent_shim::audit_trail::Anchor>, String> {
        each_line(self.anchors, parent_shim::audit_trail::Anchor::from_line)
    }

    fn keys(&self) -> Result<Vec<[u8; 32]>, String> {
        each_line(self.keys, |l| {
            hex::decode(l.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("not a 32-byte key in hex: {l}"))
        })
    }
}

/// Every non-blank line of the file at `path` (none without one), parsed; errors name the
/// file.
fn each_line<T>(
    path: Option<&Path>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let Some(path) = path else { return Ok(Vec::new()) };
    let text = String::from_utf8_lossy(&read(path)?).into_owned();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse(l).map_err(|e| format!("{}: {e}", path.display())))
        .collect()
}

/// One boot's chain as `audit verify` prints it.
fn chain_summary(key: &[u8; 32], chain: &parent_shim::audit_trail::Report) -> serde_json::Value {
    serde_json::json!({
        "answer_key": hex::encode(key),
        "entries": chain.entries,
        "last_seq": chain.last_seq,
        "complete_through": chain.complete_through,
        "anchored_through": chain.anchored_through,
        "unsigned_tail": chain.unsigned_tail,
        "closed": chain.closed,
        "problems": chain.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// `audit verify`: the node as `check-node` checks it, then its chain, held to the
/// gateway's anchors; then every other boot the gateway granted to, whose chain must be in
/// the export too.
fn audit_verify(
    report: &Path,
    (root, pcrs, min_epoch, entries): (&str, (&Path, bool), u64, &Path),
    messages: Option<&Path>,
    held: GatewayRecords<'_>,
    stopped: bool,
) -> Result<serde_json::Value, String> {
    use parent_shim::audit_trail::{boots_in, check_anchors, lines_of_boot, verify};
    use parent_shim::relying_party::RelyingParty;
    let report: serde_json::Value =
        serde_json::from_slice(&read(report)?).map_err(|e| format!("{}: {e}", report.display()))?;
    let trust = parent_shim::attestation_verifier::PinnedRoot(root_der(root)?);
    let policy = pcr_policy(pcrs)?;
    let rp = RelyingParty { trust: &trust, pcrs: &policy };
    let node = rp.check_report(&report, min_epoch).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&read(entries)?).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let anchors = held.anchors()?;
    let mut chain = verify(
        node.attestation_sha256,
        &node.answer_key,
        lines_of_boot(&node.attestation_sha256, &lines),
    );
    check_anchors(&mut chain, &node.answer_key, &anchors);
    // Every other boot the gateway granted to (its list, and the keys of its anchors).
    let mut others: Vec<[u8; 32]> = held.keys()?;
    others.extend(anchors.iter().map(|a| a.answer_key));
    others.sort_unstable();
    others.dedup();
    others.retain(|k| *k != node.answer_key);
    let found = boots_in(&others, lines.iter().copied());
    let mut boots = Vec::new();
    let mut missing = Vec::new();
    let mut others_ok = true;
    for key in &others {
        let Some(genesis) = found.get(key) else {
            missing.push(hex::encode(key));
            continue;
        };
        let mut theirs = verify(*genesis, key, lines_of_boot(genesis, &lines));
        check_anchors(&mut theirs, key, &anchors);
        others_ok &= theirs.problems.is_empty() && theirs.unsigned_tail == 0;
        boots.push(chain_summary(key, &theirs));
    }
    let mut looked_up = Vec::new();
    if let Some(path) = messages {
        for line in String::from_utf8_lossy(&read(path)?).lines().filter(|l| !l.trim().is_empty()) {
            let sha: [u8; 32] = hex::decode(line.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("{}: not a SHA-256 in hex: {line}", path.display()))?;
            let grants: Vec<serde_json::Value> =
                parent_shim::audit_trail::signed_here(&chain, &sha)
                    .into_iter()
                    .map(|(session, grant, seq)| {
                        serde_json::json!({"session_id": hex::encode(session),
                        "grant_sha256": hex::encode(grant), "entry": seq})
                    })
                    .collect();
            looked_up.push(serde_json::json!({"message_sha256": line.trim(),
                "signed_here": !grants.is_empty(), "grants": grants}));
        }
    }
    let mut summary = chain_summary(&node.answer_key, &chain);
    summary["anchors"] = anchors.len().into();
    summary["messages"] = looked_up.into();
    summary["other_boots"] = boots.into();
    summary["missing_boots"] = missing.clone().into();
    // A tail no checkpoint or anchor covers cannot be told from a cut one: not proven.
    let ok = chain.problems.is_empty()
        && chain.unsigned_tail == 0
        && others_ok
        && missing.is_empty()
        && (!stopped || chain.closed);
    if ok { Ok(summary) } else { Err(summary.to_string()) }
}

/// `check-config`: each file loads; together they can run side by side.
fn check_configs(paths: &[PathBuf]) -> ExitCode {
    let mut loaded = Vec::new();
    let mut ok = true;
    for path in paths {
        match parent_shim::daemon::config::Config::load(path) {
            Ok(c) => {
                println!("{}: ok", path.display());
                loaded.push((path.clone(), c));
            }
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                ok = false;
            }
        }
    }
    for collision in parent_shim::daemon::instances::collisions(&loaded) {
        eprintln!("check-config: {collision}");
        ok = false;
    }
    if loaded.len() > 1 {
        let (cpus, mib) = parent_shim::daemon::instances::host_reservation(&loaded);
        if cpus > 0 {
            println!(
                "{} instances: their enclaves need {cpus} vCPUs and {mib} MiB reserved \
                 (/etc/nitro_enclaves/allocator.yaml)",
                loaded.len()
            );
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::from(2) }
}
