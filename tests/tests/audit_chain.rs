//! The session audit chain end to end: the real enclave appends every session event to its
//! chain and signs checkpoints; the real parent prints them; `parent-shim audit verify`
//! checks them offline against the node's health report, and finds every edit a hostile
//! parent or log pipeline could make.

use std::process::Command;
use std::time::{Duration, Instant};
#[allow(clippy::wildcard_imports)]
use tests::node::*;

fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().try_into().unwrap()
}

/// The epoch the node's report names (what a gateway knows as the newest published).
fn min_epoch(report: &std::path::Path) -> u64 {
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    report.pointer("/loaded_statement/epoch").and_then(serde_json::Value::as_u64).unwrap()
}

/// Runs `audit verify` on `lines`; (exit success, stdout + stderr).
fn audit_verify(
    c: &Case,
    report: &std::path::Path,
    lines: &[String],
    messages: &[[u8; 32]],
) -> (bool, String) {
    audit_verify_held(c, report, lines, messages, &Held::default())
}

/// What the gateway kept, for `audit verify`: its anchors, the answer keys it granted to,
/// and whether the node was stopped.
#[derive(Default)]
struct Held {
    anchors: Vec<tests::gateway_sim::Anchor>,
    keys: Vec<[u8; 32]>,
    stopped: bool,
}

/// [`audit_verify`] held to the gateway's records.
fn audit_verify_held(
    c: &Case,
    report: &std::path::Path,
    lines: &[String],
    messages: &[[u8; 32]],
    held: &Held,
) -> (bool, String) {
    let anchors = c.dir.0.join("anchors.jsonl");
    let lines_out: Vec<String> =
        held.anchors.iter().map(tests::gateway_sim::Anchor::to_line).collect();
    std::fs::write(&anchors, lines_out.join("\n")).unwrap();
    let keys = c.dir.0.join("answer-keys.txt");
    std::fs::write(&keys, held.keys.iter().map(hex::encode).collect::<Vec<_>>().join("\n"))
        .unwrap();
    let mut extra = vec!["--anchors".to_owned(), anchors.display().to_string()];
    extra.extend(["--answer-keys".to_owned(), keys.display().to_string()]);
    if held.stopped {
        extra.push("--stopped".to_owned());
    }
    let entries = c.dir.0.join("entries.jsonl");
    std::fs::write(&entries, lines.join("\n")).unwrap();
    let wanted = c.dir.0.join("messages.txt");
    std::fs::write(&wanted, messages.iter().map(hex::encode).collect::<Vec<_>>().join("\n"))
        .unwrap();
    let out = Command::new(parent_binary())
        .args(["audit-verify", "--report"])
        .arg(report)
        .arg("--root")
        .arg(c.dir.0.join("sim-ca/root.der"))
        .arg("--pcrs")
        .arg(c.dir.0.join("pinned-pcrs.json"))
        .arg("--min-epoch")
        .arg(min_epoch(report).to_string())
        .arg("--entries")
        .arg(&entries)
        .arg("--messages")
        .arg(&wanted)
        .args(&extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A node that ran three signatures, an abort and a refused grant, and checkpointed them.
struct Run {
    c: Case,
    p: Parent,
    /// Its health report, written to a file.
    report: std::path::PathBuf,
    /// Its audit lines, entries and checkpoints, in order.
    lines: Vec<String>,
    /// The positions of the entries among `lines`.
    entries: Vec<usize>,
    /// The SHA-256 of each message signed.
    signed: Vec<[u8; 32]>,
    /// What the gateway kept: the anchors of every answer and fresh head it received.
    anchors: Vec<tests::gateway_sim::Anchor>,
    /// `CloudWatch` Logs (the audit stream is `node-1/audit`).
    moto: tests::moto_server::MotoServer,
    /// The local copy (`[audit] file`).
    audit_file: std::path::PathBuf,
    /// The gateway's connection, still open.
    api: parent_shim::serve::grpc_bridge::pb::sign_service_client::SignServiceClient<
        tonic::transport::Channel,
    >,
    /// The node's answer key.
    key: [u8; 32],
}

const GROUP: &str = "/sign-service/audit";

async fn audited_run(name: &str) -> Run {
    use parent_shim::serve::grpc_bridge::pb;
    let gateway_ca = tests::tls_certs::Ca::new("gateway server CA").unwrap();
    let endpoint = tests::gateway_health::HealthEndpoint::start(&gateway_ca).await.unwrap();
    let (c, config) = case(name, 7, 7).await;
    let moto = tests::moto_server::MotoServer::start().unwrap();
    moto.create_log_group(GROUP).await.unwrap();
    with_cloudwatch(&config, &moto, GROUP);
    let audit_file = c.dir.0.join("audit.jsonl");
    append(&config, &format!("\n[audit]\nfile = \"{}\"\n", audit_file.display()));
    std::fs::write(c.dir.0.join("gateway-ca.pem"), gateway_ca.cert_pem()).unwrap();
    append(
        &config,
        &format!(
            "\n[gateway]\nhealth_url = \"{}\"\nca = \"{}\"\ninterval_secs = 1\n",
            endpoint.url(),
            c.dir.0.join("gateway-ca.pem").display()
        ),
    );
    std::fs::write(
        c.dir.0.join("pinned-pcrs.json"),
        format!("{{\"PCR0\": \"{}\"}}", hex::encode([7u8; 48])),
    )
    .unwrap();
    let mut p = start(&config);
    let grpc = grpc_endpoint(&p.wait_for("\"serving\""));
    let client = c.tls.client("gateway").unwrap();
    let mut api = tests::gateway_sim::connect(&grpc, &c.tls.cert_pem(), &client).await.unwrap();
    let root = std::fs::read(c.dir.0.join("sim-ca/root.der")).unwrap();
    let key = tests::gateway_sim::attested_answer_key(&mut api, &root, &c.pcrs).await.unwrap();
    let accounts = tests::gateway_sim::load_accounts(&c.dir.0.join("shares")).unwrap();

    // Three signatures (both schemes), an abort, a refused grant: 2 + 2 + 2 + 2 + 1 entries.
    let mut signed = Vec::new();
    let mut anchors = Vec::new();
    for i in 0..3u8 {
        let message = format!("audited {i}").into_bytes();
        let s = tests::gateway_sim::sign(
            &mut api,
            &key,
            &accounts[usize::from(i)],
            [0xa0 + i; 16],
            &message,
        )
        .await
        .unwrap();
        assert!(s.verified);
        signed.push(sha256(&message));
        anchors.extend(s.anchors);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let a = &accounts[0];
    let grant =
        tests::gateway::Grant::new(key, a.scheme, &a.account_id, 0xb0, b"aborted", now + 60);
    api.commit(tests::gateway_sim::commit_request(&grant)).await.unwrap();
    api.abort(pb::AbortRequest { session_id: grant.session_id.to_vec() }).await.unwrap();
    let mut forged =
        tests::gateway::Grant::new(key, a.scheme, &a.account_id, 0xc0, b"forged", now + 60);
    forged.sign_with(&ed25519_dalek::SigningKey::from_bytes(&[0x77; 32]));
    let refused = api.commit(tests::gateway_sim::commit_request(&forged)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    // The checkpoint comes within its interval (10 s) of the last entry.
    let deadline = Instant::now() + Duration::from_secs(30);
    let checkpoint = loop {
        let line = p.wait_for("\"audit_checkpoint\"");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["seq"] == 9 || Instant::now() > deadline {
            break v;
        }
    };
    assert_eq!(checkpoint["seq"], 9, "{checkpoint}");
    let expected_head = checkpoint["head"].as_str().unwrap().to_owned();
    anchors.push(fresh_heads(&mut api, key, &expected_head).await);
    let reports = endpoint.reports();
    let report = c.dir.0.join("report.json");
    std::fs::write(&report, reports.last().unwrap().to_string()).unwrap();
    let lines: Vec<String> = p.seen.iter().filter(|l| l.contains("\"audit_")).cloned().collect();
    let entries: Vec<usize> =
        (0..lines.len()).filter(|&i| lines[i].contains("\"audit_entry\"")).collect();
    assert_eq!(entries.len(), 9, "{lines:#?}");
    Run { c, p, report, lines, entries, signed, anchors, moto, audit_file, api, key }
}

/// The gateway's own anchor: a fresh head through the API over its nonce, signed by the
/// attested key, at entry 9 with the head the last checkpoint printed; a head answered for
/// another nonce (kept and replayed) does not verify for this one; a nonce not of 32 bytes
/// is refused.
async fn fresh_heads(
    api: &mut parent_shim::serve::grpc_bridge::pb::sign_service_client::SignServiceClient<
        tonic::transport::Channel,
    >,
    key: [u8; 32],
    expected_head: &str,
) -> tests::gateway_sim::Anchor {
    use parent_shim::serve::grpc_bridge::pb;
    let fresh = |nonce: [u8; 32]| pb::GetAuditHeadRequest { nonce: nonce.to_vec() };
    let head = api.get_audit_head(fresh([0x3c; 32])).await.unwrap().into_inner();
    assert_eq!(
        (head.seq, hex::encode(&head.head), head.nonce.clone(), head.closing),
        (9, expected_head.to_owned(), vec![0x3c; 32], false)
    );
    let verifies = |head: &pb::GetAuditHeadResponse, nonce: [u8; 32]| {
        let statement = wire::session_signatures::audit_checkpoint_statement(
            &wire::session_signatures::CheckpointFacts {
                attestation_sha256: head.attestation_sha256.clone().try_into().unwrap(),
                seq: head.seq,
                head: head.head.clone().try_into().unwrap(),
                unix_ms: head.unix_ms,
                nonce,
                closing: head.closing,
            },
        );
        let signature = ed25519_dalek::Signature::from_slice(&head.signature).unwrap();
        ed25519_dalek::VerifyingKey::from_bytes(&key)
            .unwrap()
            .verify_strict(&statement, &signature)
            .is_ok()
    };
    assert!(verifies(&head, [0x3c; 32]));
    let later = api.get_audit_head(fresh([0x4d; 32])).await.unwrap().into_inner();
    assert!(verifies(&later, [0x4d; 32]));
    assert!(!verifies(&head, [0x4d; 32]), "an old head passes for a fresh nonce");
    let short = api.get_audit_head(pb::GetAuditHeadRequest { nonce: vec![1; 8] }).await;
    assert_eq!(short.unwrap_err().code(), tonic::Code::InvalidArgument);
    tests::gateway_sim::Anchor {
        answer_key: key,
        seq: head.seq,
        head: head.head.clone().try_into().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_verifies_whole_and_every_edit_is_found_where_it_was_made() {
    let Run { c, p, report, lines, entries, signed, .. } = audited_run("audit-edits").await;

    // Whole: complete through 9, each signed message found under its grant, a message
    // signed by another node not.
    let elsewhere = sha256(b"signed by another node");
    let mut asked = signed.clone();
    asked.push(elsewhere);
    let (ok, text) = audit_verify(&c, &report, &lines, &asked);
    assert!(ok, "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(
        (v["complete_through"].as_u64(), v["unsigned_tail"].as_u64()),
        (Some(9), Some(0)),
        "{v}"
    );
    let found: Vec<bool> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["signed_here"].as_bool().unwrap())
        .collect();
    assert_eq!(found, [true, true, true, false], "{v}");

    // Each edit, found where it was made.
    let refused_by = |edited: Vec<String>, expected: &str| {
        let (ok, text) = audit_verify(&c, &report, &edited, &[]);
        assert!(!ok && text.contains(expected), "expected {expected:?}, got {text}");
    };
    let mut deleted = lines.clone();
    deleted.remove(entries[3]);
    refused_by(deleted, "entry 4 is missing");
    let mut altered = lines.clone();
    let v4: serde_json::Value = serde_json::from_str(&altered[entries[4]]).unwrap();
    let payload = v4["payload"].as_str().unwrap();
    // The last byte is the refused request's kind: flip it.
    let flipped = format!(
        "{}{}",
        &payload[..payload.len() - 2],
        if payload.ends_with("00") { "01" } else { "00" }
    );
    altered[entries[4]] = altered[entries[4]].replace(payload, &flipped);
    refused_by(altered, "entry 5 was altered");
    let mut swapped = lines.clone();
    swapped.swap(entries[1], entries[2]);
    refused_by(swapped, "entry 2 is out of order");
    // The tail cut, the checkpoint kept: it vouches for entries 8 and 9.
    let cut: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != entries[7] && *i != entries[8])
        .map(|(_, l)| l.clone())
        .collect();
    refused_by(cut, "entries 8 to 9 are missing");
    // The tail cut with the checkpoint: nothing signed covers what is left.
    refused_by(lines[..entries[7]].to_vec(), "\"unsigned_tail\":7");
    // Frames the parent never printed (dropped): the same as deleted, at their place.
    let dropped: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != entries[0] && *i != entries[1])
        .map(|(_, l)| l.clone())
        .collect();
    refused_by(dropped, "entries 1 to 2 are missing");
    no_secrets(&c, &p);
}

/// The export of a stopped node, held to what the gateway kept: whole, it passes every
/// check; a parent that dropped the tail after checkpoint 9 (entries 10 and 11, and the
/// closing checkpoint) passes the export's own checks but not the gateway's anchors, nor
/// `--stopped`; a boot the gateway granted to whose chain is not in the export is named.
fn held_to_the_gateway_s_records(
    c: &Case,
    report: &std::path::Path,
    whole: &[String],
    key: [u8; 32],
    anchors: Vec<tests::gateway_sim::Anchor>,
) {
    let held = Held { anchors, keys: vec![key], stopped: true };
    let (ok, text) = audit_verify_held(c, report, whole, &[], &held);
    assert!(ok, "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!((v["anchored_through"].as_u64(), v["closed"].as_bool()), (Some(11), Some(true)));
    let at = |seq: u64| {
        whole
            .iter()
            .position(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["event"] == "audit_entry" && v["seq"] == seq
            })
            .unwrap()
    };
    let cut = whole[..at(10)].to_vec();
    let (ok, text) = audit_verify(c, report, &cut, &[]);
    assert!(ok, "the export alone cannot show the cut: {text}");
    let anchored = Held { anchors: held.anchors.clone(), keys: vec![key], stopped: false };
    let (ok, text) = audit_verify_held(c, report, &cut, &[], &anchored);
    assert!(!ok && text.contains("entry 10, which this export"), "{text}");
    let (ok, text) = audit_verify_held(
        c,
        report,
        &cut,
        &[],
        &Held { anchors: Vec::new(), keys: vec![key], stopped: true },
    );
    assert!(!ok && text.contains("\"closed\":false"), "{text}");
    // A twin: another boot the gateway granted to, absent from this export.
    let twin = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]).verifying_key().to_bytes();
    let with_twin = Held { anchors: held.anchors.clone(), keys: vec![key, twin], stopped: true };
    let (ok, text) = audit_verify_held(c, report, whole, &[], &with_twin);
    let missing = format!("\"missing_boots\":[\"{}\"]", hex::encode(twin));
    assert!(!ok && text.contains(&missing), "{text}");
}

/// An orderly stop signs the chain's tail before the enclave goes; the chain is in its own
/// `CloudWatch` stream (and nowhere else there) and in the local file, the same lines as
/// the journal, and the file verifies complete with nothing unsigned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_closes_the_chain_and_it_is_in_its_own_stream_and_in_the_file() {
    let Run { c, mut p, report, moto, audit_file, mut api, key, mut anchors, .. } =
        audited_run("audit-stop").await;
    // Entries 10 and 11, inside the checkpoint interval: unsigned until the stop.
    let accounts = tests::gateway_sim::load_accounts(&c.dir.0.join("shares")).unwrap();
    let s = tests::gateway_sim::sign(&mut api, &key, &accounts[3], [0xd0; 16], b"last one")
        .await
        .unwrap();
    assert!(s.verified);
    anchors.extend(s.anchors);
    let enclave = p.enclave_pid();
    Command::new("kill").arg("-TERM").arg(p.child.id().to_string()).status().unwrap();
    assert_eq!(p.exit_code(), Some(0), "{}", p.seen.join("\n"));
    wait_gone(enclave);
    let closed = p.seen.iter().find(|l| l.contains("\"audit_chain_closed\"")).unwrap();
    let closed: serde_json::Value = serde_json::from_str(closed).unwrap();
    assert_eq!((closed["seq"].as_u64(), closed["written"].as_bool()), (Some(11), Some(true)));

    let chain_line =
        |l: &&String| l.contains("\"audit_entry\"") || l.contains("\"audit_checkpoint\"");
    let printed: Vec<String> = p.seen.iter().filter(chain_line).cloned().collect();
    let in_file: Vec<String> =
        std::fs::read_to_string(&audit_file).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(in_file, printed);
    let (ok, text) = audit_verify(&c, &report, &in_file, &[sha256(b"last one")]);
    assert!(ok, "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(
        (v["complete_through"].as_u64(), v["unsigned_tail"].as_u64()),
        (Some(11), Some(0)),
        "{v}"
    );
    assert_eq!(v["messages"][0]["signed_here"], true, "{v}");
    assert_eq!(v["closed"], true, "the stop ended the chain in a closing checkpoint: {v}");
    held_to_the_gateway_s_records(&c, &report, &in_file, key, anchors);

    let stream = moto.log_messages(GROUP, "node-1/audit").await.unwrap();
    assert_eq!(stream, printed);
    let main = moto.log_messages(GROUP, "node-1").await.unwrap();
    assert!(main.iter().any(|l| l.contains("\"boot_record\"")), "{main:#?}");
    assert!(!main.iter().any(|l| chain_line(&l)), "{main:#?}");
    assert!(main.iter().any(|l| l.contains("\"audit_chain_closed\"")), "{main:#?}");
    no_secrets(&c, &p);
    let file_text = std::fs::read_to_string(&audit_file).unwrap();
    assert!(!file_text.contains(&c.identity["AGE-SECRET-KEY-1".len()..]));
}
