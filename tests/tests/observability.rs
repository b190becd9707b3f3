//! `parent-shim run` as a real process, launching the real `enclave-rt` (sim) binary, with
//! the stand-ins on loopback. What operators see: every line in `CloudWatch` Logs, the
//! health report to the gateway, the alert webhook.

use std::process::Command;
use std::time::{Duration, Instant};
use tests::moto_server::MotoServer;
#[allow(clippy::wildcard_imports)]
use tests::node::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ships_every_line_to_cloudwatch_up_to_the_alert_that_ends_it() {
    let moto = MotoServer::start().unwrap();
    moto.create_log_group("/sign-service/parent").await.unwrap();
    let (c, config) = case("cloudwatch", 7, 7).await;
    with_cloudwatch(&config, &moto, "/sign-service/parent");
    let mut p = start(&config);
    p.wait_for("\"serving\"");
    let pid = p.enclave_pid();
    Command::new("kill").arg("-KILL").arg(pid.to_string()).status().unwrap();
    assert_eq!(p.exit_code(), Some(1));
    let shipped = moto.log_messages("/sign-service/parent", "node-1").await.unwrap();
    // What stdout had, CloudWatch has, in order: the parent's events and the enclave's.
    // (The audit chain has a stream of its own; no session ran here.)
    let printed: Vec<&String> = p.seen.iter().filter(|l| l.starts_with('{')).collect();
    assert_eq!(shipped.len(), printed.len(), "shipped {shipped:#?}\nprinted {printed:#?}");
    for (s, l) in shipped.iter().zip(&printed) {
        assert_eq!(s, *l);
    }
    for needle in ["\"inputs_fetched\"", "\"boot_record\"", "\"source\":\"enclave\"", "\"serving\""]
    {
        assert!(shipped.iter().any(|m| m.contains(needle)), "{needle} not shipped");
    }
    // The alert and the final `stopped` close the stream; the alert is an Embedded Metric
    // Format record.
    let tail: Vec<serde_json::Value> =
        shipped[shipped.len() - 2..].iter().map(|m| serde_json::from_str(m).unwrap()).collect();
    assert_eq!(tail[1]["event"], "stopped");
    let alert = &tail[0];
    assert_eq!(alert["event"], "alert");
    assert_eq!(alert["reason"], "enclave_exited");
    assert_eq!(alert["Alerts"], 1);
    assert_eq!(alert["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "Alerts");
    assert_eq!(alert["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0], "reason");
    let all = shipped.join("\n");
    assert!(!all.contains(&c.identity["AGE-SECRET-KEY-1".len()..]));
    for s in &c.share_strings {
        assert!(!all.contains(s.as_str()), "a share reached CloudWatch");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_cloudwatch_log_group_is_reported_and_signing_goes_on() {
    let moto = MotoServer::start().unwrap();
    let (_c, config) = case("cloudwatch-missing", 7, 7).await;
    with_cloudwatch(&config, &moto, "/not/provisioned");
    let mut p = start(&config);
    // Shipping fails in the background while the boot goes on: either may come first.
    let warn = p.seen_or_wait_for("cloudwatch_unavailable");
    assert!(
        warn.contains("/not/provisioned") && warn.contains("ResourceNotFoundException"),
        "{warn}"
    );
    p.seen_or_wait_for("\"serving\"");
}

/// Once serving, the node reports its attestation, share fingerprint and load time to the
/// gateway over HTTPS, again every interval, and a last `failed` report when its enclave
/// dies; the gateway can verify the attestation document it receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_receives_the_nodes_health_with_its_attestation() {
    let (c, config) = case("health", 7, 7).await;
    let (_gateway_ca, endpoint) = report_health(&c, &config).await;
    let mut p = start(&config);
    let record: serde_json::Value = serde_json::from_str(&p.wait_for("\"boot_record\"")).unwrap();
    p.wait_for("\"health_reported\"");
    // At least two periodic reports.
    let deadline = Instant::now() + Duration::from_secs(30);
    while endpoint.reports().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let reports = endpoint.reports();
    assert!(reports.len() >= 2, "{reports:?}");
    let first = &reports[0];
    assert_eq!(first["state"], "serving");
    assert_eq!(first["accounts"], 20);
    assert_eq!(first["share_file_sha256"], record["share_file_sha256"]);
    assert_eq!(first["attestation_sha256"], record["attestation_sha256"]);
    assert_eq!(first["pcrs"]["PCR0"], hex::encode([7u8; 48]));
    assert!(first["loaded_at"].as_str().is_some_and(|t| t.starts_with("20") && t.ends_with('Z')));
    // The gateway verifies the document itself, against the (sim) root it pins.
    let doc = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        first["attestation_document"].as_str().unwrap(),
    )
    .unwrap();
    let root = std::fs::read(c.dir.0.join("sim-ca/root.der")).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let verified = node_verify::attestation_verifier::verify(
        &doc,
        &root,
        now,
        &node_verify::attestation_verifier::Expectations::default(),
    )
    .unwrap();
    assert_eq!(hex::encode(&verified.pcrs[&0]), hex::encode([7u8; 48]));
    // The relying party's whole check, offline, from the report alone (`check-node`):
    // pinned root and PCR0, the answer key, the signed Loaded statement, the epoch.
    let report = c.dir.0.join("report.json");
    std::fs::write(&report, first.to_string()).unwrap();
    let pcrs = c.dir.0.join("pinned-pcrs.json");
    let check = |pcr0: u8, min_epoch: &str, report: &std::path::Path| {
        std::fs::write(&pcrs, format!("{{\"PCR0\": \"{}\"}}", hex::encode([pcr0; 48]))).unwrap();
        let out = Command::new(parent_binary())
            .args(["check-node", "--report"])
            .arg(report)
            .arg("--root")
            .arg(c.dir.0.join("sim-ca/root.der"))
            .arg("--pcrs")
            .arg(&pcrs)
            .args(["--min-epoch", min_epoch])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = check(7, "1", &report);
    assert!(ok, "{text}");
    let proved: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!((proved["epoch"].as_u64(), proved["accounts"].as_u64()), (Some(1), Some(20)));
    assert_eq!(proved["answer_key"], record["answer_key"]);
    // A gateway that knows of epoch 2 refuses the node; so does one pinned to another
    // image; and a report whose epoch the parent raised does not verify.
    let (ok, text) = check(7, "2", &report);
    assert!(!ok && text.contains("rolled-back"), "{text}");
    let (ok, text) = check(8, "1", &report);
    assert!(!ok && text.contains("PCR0"), "{text}");
    let mut forged = first.clone();
    forged["loaded_statement"]["epoch"] = 2.into();
    let forged_path = c.dir.0.join("forged.json");
    std::fs::write(&forged_path, forged.to_string()).unwrap();
    let (ok, text) = check(7, "2", &forged_path);
    assert!(!ok && text.contains("not signed by the attested enclave"), "{text}");
    // The enclave dies: a last report says so.
    Command::new("kill").arg("-KILL").arg(p.enclave_pid().to_string()).status().unwrap();
    assert_eq!(p.exit_code(), Some(1));
    let last = endpoint.reports().pop().unwrap();
    assert_eq!(last["state"], "failed");
    assert!(last["reason"].as_str().unwrap().contains("exited"), "{last}");
    let all = serde_json::to_string(&endpoint.reports()).unwrap();
    assert!(!all.contains(&c.identity["AGE-SECRET-KEY-1".len()..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_that_ends_a_run_reaches_the_webhook() {
    let pager_ca = tests::tls_certs::Ca::new("pager CA").unwrap();
    let pager = tests::gateway_health::HealthEndpoint::start(&pager_ca).await.unwrap();
    let (c, config) = case("webhook", 7, 8).await;
    std::fs::write(c.dir.0.join("pager-ca.pem"), pager_ca.cert_pem()).unwrap();
    append(
        &config,
        &format!(
            "\n[alerts]\nwebhook_url = \"{}\"\nca = \"{}\"\n",
            pager.alerts_url(),
            c.dir.0.join("pager-ca.pem").display()
        ),
    );
    let p = start(&config);
    fails_closed(&c, p, "AccessDeniedException");
    // Delivered before the process exited.
    let alerts = pager.reports();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["event"], "alert");
    assert_eq!(alerts[0]["reason"], "boot_failed");
    assert!(alerts[0]["error"].as_str().unwrap().contains("AccessDeniedException"));
    assert!(
        !serde_json::to_string(&alerts).unwrap().contains(&c.identity["AGE-SECRET-KEY-1".len()..])
    );
}

/// A report proves a past boot; `check-node --live` proves the running node: a document
/// over a fresh nonce of the checker's, signed just now, with the report's answer key. The
/// library refuses a document of another boot, a stale one, and one over another nonce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_node_proves_the_running_node_only_when_asked_live() {
    use node_verify::relying_party::{RelyingError, RelyingParty};
    let (c, config) = case("live", 7, 7).await;
    let (_gateway_ca, endpoint) = report_health(&c, &config).await;
    let mut p = start(&config);
    let grpc = grpc_endpoint(&p.wait_for("\"serving\""));
    p.wait_for("\"health_reported\"");
    let report_json = endpoint.reports().pop().unwrap();
    let report = c.dir.0.join("report.json");
    std::fs::write(&report, report_json.to_string()).unwrap();
    let pcrs = c.dir.0.join("pinned-pcrs.json");
    std::fs::write(&pcrs, format!("{{\"PCR0\": \"{}\"}}", hex::encode([7u8; 48]))).unwrap();
    let client = c.tls.client("gateway").unwrap();
    let (ca, cert, key) =
        (c.dir.0.join("node-ca.pem"), c.dir.0.join("gw.pem"), c.dir.0.join("gw.key"));
    std::fs::write(&ca, c.tls.cert_pem()).unwrap();
    std::fs::write(&cert, &client.cert).unwrap();
    std::fs::write(&key, &client.key).unwrap();
    let check = |extra: &[&str]| {
        let out = Command::new(parent_binary())
            .args(["check-node", "--report"])
            .arg(&report)
            .arg("--root")
            .arg(c.dir.0.join("sim-ca/root.der"))
            .arg("--pcrs")
            .arg(&pcrs)
            .args(["--min-epoch", "1"])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str::<serde_json::Value>(text.trim()).unwrap()
    };
    // The report alone: verified, and it says what it does not prove.
    let past = check(&[]);
    assert_eq!(past["check"]["live"], false);
    assert!(past["proves"].as_str().unwrap().contains("not that the node runs it now"));
    // Live: the node answers over mutual TLS with a document over our nonce.
    let live_args = ["--live", &grpc, "--tls-name", "localhost", "--ca"];
    let files = [ca.to_str().unwrap(), "--client-cert", cert.to_str().unwrap()];
    let live =
        check(&[&live_args[..], &files[..], &["--client-key", key.to_str().unwrap()]].concat());
    assert_eq!(live["check"]["live"], true, "{live}");
    assert_eq!(live["answer_key"], past["answer_key"]);
    let now_ms = u64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis(),
    )
    .unwrap();
    let at_ms = live["check"]["live_document_unix_ms"].as_u64().unwrap();
    assert!(now_ms.abs_diff(at_ms) < 300_000, "{at_ms} vs {now_ms}");

    // The library's checks one by one, on a live document fetched here.
    let root = std::fs::read(c.dir.0.join("sim-ca/root.der")).unwrap();
    let trust = node_verify::attestation_verifier::PinnedRoot(root);
    let policy = tests::gateway_sim::pinned(&std::collections::BTreeMap::from([(0, vec![7; 48])]));
    let rp = RelyingParty { trust: &trust, pcrs: &policy };
    let node = rp.check_report(&report_json, 1).unwrap();
    let mut api = tests::gateway_sim::connect(&grpc, &c.tls.cert_pem(), &client).await.unwrap();
    let nonce = [0x5au8; 32];
    let document = api
        .get_attestation(parent_shim::serve::grpc_bridge::pb::GetAttestationRequest {
            nonce: nonce.to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .document;
    let now = now_ms / 1000;
    assert!(rp.check_live(&node, &document, &nonce, now, 300).is_ok());
    assert!(matches!(
        rp.check_live(&node, &document, &[0u8; 32], now, 300),
        Err(RelyingError::Attestation(_))
    ));
    assert!(matches!(
        rp.check_live(&node, &document, &nonce, now + 3_600, 300),
        Err(RelyingError::NotFresh { .. })
    ));
    let other_boot = node_verify::relying_party::NodeState { answer_key: [1; 32], ..node };
    assert_eq!(
        rp.check_live(&other_boot, &document, &nonce, now, 300),
        Err(RelyingError::OtherBoot)
    );
}
