//! `parent-shim run` as a real process, launching the real `enclave-rt` (sim) binary, with
//! the stand-ins on loopback. Signing sessions through a running node: gRPC over mTLS and
//! the gateway's event stream, under load, across a parent restart and an enclave killed
//! mid-session.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
#[allow(clippy::wildcard_imports)]
use tests::node::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one node's life, read top to bottom
async fn sessions_arrive_as_gateway_events_and_answers_return_through_the_relay() {
    use tests::gateway_sim::{Via, event_round, refusal};
    let (gw, c, config) = with_session_events("events", "/v1/").await;
    append(&config, "\n[metrics]\nlisten = \"127.0.0.1:0\"\nstatus_interval_secs = 1\n");
    // The enclave's first subscription breaks after two events: the relay resumes it.
    gw.cut_next_connection_after(2);
    let mut p = start(&config);
    let endpoint = grpc_endpoint(&p.wait_for("\"serving\""));
    let client = c.tls.client("gateway").unwrap();
    let mut api = tests::gateway_sim::connect(&endpoint, &c.tls.cert_pem(), &client).await.unwrap();
    let root = std::fs::read(c.dir.0.join("sim-ca/root.der")).unwrap();
    let answer_key =
        tests::gateway_sim::attested_answer_key(&mut api, &root, &c.pcrs).await.unwrap();
    let accounts = tests::gateway_sim::load_accounts(&c.dir.0.join("shares")).unwrap();

    // Whole sessions over events, one per scheme: both rounds answered by posts, checked
    // against the attested answer key, aggregated and verified independently.
    let mut published = 0;
    for (session, scheme) in [(1, wire::Scheme::Ed25519), (2, wire::Scheme::Secp256k1Tr)] {
        let account = accounts.iter().find(|a| a.scheme == scheme).unwrap();
        let session_id = [session; 16];
        let signed = tests::gateway_sim::sign_via(
            &mut Via::Events(&gw),
            &tests::gateway::gateway(),
            &answer_key,
            account,
            session_id,
            b"delivered by SSE",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", p.seen.join("\n")));
        assert!(signed.verified, "{signed:?}");
        published += 2;
    }
    // Abort by event: the session is gone, a later round 2 for it is refused.
    let account = &accounts[0];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let grant = tests::gateway::Grant::new(
        answer_key,
        account.scheme,
        &account.account_id,
        0x30,
        b"to be aborted",
        now.as_secs() + 60,
    );
    let commit = wire::Message::CommitRequest(grant.request());
    let (kind, _) = event_round(&gw, "commit", &commit).await.unwrap();
    assert_eq!(kind, <wire::CommitResponse as wire::WireMessage>::KIND);
    let abort = wire::Message::AbortRequest(wire::AbortRequest { session_id: grant.session_id });
    let (kind, _) = event_round(&gw, "abort", &abort).await.unwrap();
    assert_eq!(kind, <wire::AbortResponse as wire::WireMessage>::KIND);
    let sign = wire::Message::SignRequest(wire::SignRequest {
        session_id: grant.session_id,
        signing_package: b"whatever",
    });
    let (kind, payload) = event_round(&gw, "sign", &sign).await.unwrap();
    assert!(refusal(kind, &payload).contains("NOT_FOUND"), "{}", refusal(kind, &payload));
    // An event whose authorisation the gateway did not sign (the parent cannot make one).
    let mut forged = tests::gateway::Grant::new(
        answer_key,
        account.scheme,
        &account.account_id,
        0x31,
        b"forged",
        now.as_secs() + 60,
    );
    forged.authorization[0] ^= 1;
    let (kind, payload) =
        event_round(&gw, "commit", &wire::Message::CommitRequest(forged.request())).await.unwrap();
    assert!(refusal(kind, &payload).contains("PERMISSION_DENIED"), "{}", refusal(kind, &payload));
    published += 4;
    // Other events on the stream are skipped; a malformed session event is not answered.
    gw.publish("heartbeat", "{}");
    gw.publish("commit", "zz");
    let last = gw.publish("abort", &"00".repeat(16));
    assert!(gw.answer(&last, Duration::from_secs(30)).await.is_some());
    published += 1;

    // Every session event answered exactly once, across the cut connection.
    let answers = gw.answers();
    let mut ids: Vec<&str> = answers.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), published, "{ids:?}");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), published, "an event answered twice");
    assert!(!answers.iter().any(|(id, _)| id == "9" || id == "10"), "{ids:?}");
    assert_eq!(gw.subscriptions(), ["", "2"], "resumed after the last event relayed");
    p.seen_or_wait_for("sse_reconnect");

    // The metrics endpoint shows the same story.
    let e = api.sign(parent_shim::serve::grpc_bridge::pb::SignRequest {
        session_id: vec![0x55; 16],
        signing_package: b"x".to_vec(),
    });
    assert_eq!(e.await.unwrap_err().code(), tonic::Code::NotFound);
    let share_file = c.dir.0.join("shares").join(tests::share_gen::files::SHARES);
    let share_len = std::fs::metadata(share_file).unwrap().len();
    let listening: serde_json::Value =
        serde_json::from_str(&p.seen_or_wait_for("\"metrics_listening\"")).unwrap();
    let address = listening["listen"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let text = scrape(&address);
        // The status poll runs every second: wait for its first figures; and the relay
        // counts a post when the gateway's answer to it is back, just after the gateway
        // recorded it.
        let posted = format!(
            "signservice_relay_requests_total{{kind=\"post\",outcome=\"ok\"}} {published}\n"
        );
        if (text.contains("signservice_session_cap 256") && text.contains(&posted))
            || Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for line in [
        "signservice_boot_state{state=\"serving\"} 1",
        "signservice_boot_state{state=\"booting\"} 0",
        "signservice_accounts_loaded 20",
        &format!("signservice_share_file_bytes{{stage=\"sent\"}} {share_len}"),
        &format!("signservice_share_file_bytes{{stage=\"total\"}} {share_len}"),
        "signservice_session_cap 256",
        "signservice_sessions_in_use 0",
        "signservice_enclave_link_up 1",
        "signservice_rpc_requests_total{method=\"GetAttestation\",code=\"Ok\"} 1",
        "signservice_rpc_requests_total{method=\"Sign\",code=\"NotFound\"} 1",
        "signservice_rpc_duration_seconds_count{method=\"Sign\"} 1",
        &format!("signservice_relay_requests_total{{kind=\"post\",outcome=\"ok\"}} {published}"),
        "signservice_relay_requests_total{kind=\"sse_reconnect\",outcome=\"CLOSED\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no line {line:?} in\n{metrics}");
    }
    let memory = |kind: &str| -> u64 {
        let prefix = format!("signservice_enclave_memory_bytes{{kind=\"{kind}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap().parse().unwrap()
    };
    assert!(0 < memory("in_use") && memory("in_use") <= memory("peak"));
    assert!(memory("peak") < memory("budget"));
    let events = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "signservice_relay_requests_total{kind=\"sse_event\",outcome=\"relayed\"} ",
            )
        })
        .unwrap();
    assert_eq!(
        events.parse::<usize>().unwrap(),
        published + 2,
        "two events were not session events"
    );
    assert!(!metrics.contains(&c.identity["AGE-SECRET-KEY-1".len()..]));
    no_secrets(&c, &p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parent_restarts_while_the_gateway_keeps_calling() {
    let (c, config) = case("restart", 7, 7).await;
    // A fixed port, as in production: the gateway calls the same address throughout.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    replace_in(&config, "listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
    let mut first = start(&config);
    first.wait_for("\"serving\"");
    let stop = Arc::new(AtomicBool::new(false));
    let gateway = tokio::spawn(keep_calling(
        format!("https://localhost:{port}"),
        c.tls.cert_pem(),
        c.tls.client("gateway").unwrap(),
        std::fs::read(c.dir.0.join("sim-ca/root.der")).unwrap(),
        c.pcrs.clone(),
        tests::gateway_sim::load_accounts(&c.dir.0.join("shares")).unwrap(),
        Arc::clone(&stop),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // systemd stops the unit (SIGTERM): the enclave goes with it.
    let old_enclave = first.enclave_pid();
    Command::new("kill").arg("-TERM").arg(first.child.id().to_string()).status().unwrap();
    assert_eq!(first.exit_code(), Some(0), "{}", first.seen.join("\n"));
    wait_gone(old_enclave);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // ... and starts it again: a new enclave, a new boot, a new answer key.
    let mut second = start(&config);
    second.wait_for("\"serving\"");
    assert_ne!(second.enclave_pid(), old_enclave);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let attempts = gateway.await.unwrap();
    let wrong: Vec<_> = attempts.iter().filter(|a| matches!(a, Attempt::Wrong(_))).collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    // Signatures before the restart, clean refusals during it, signatures after it.
    let first_away = attempts.iter().position(|a| *a == Attempt::Away).unwrap();
    let last_away = attempts.iter().rposition(|a| *a == Attempt::Away).unwrap();
    assert!(attempts[..first_away].contains(&Attempt::Signed), "{attempts:?}");
    assert!(attempts[last_away..].contains(&Attempt::Signed), "{attempts:?}");
    no_secrets(&c, &first);
    no_secrets(&c, &second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enclave_killed_mid_session_serves_no_signature() {
    use parent_shim::serve::grpc_bridge::pb;
    let (c, config) = case("mid-session", 7, 7).await;
    let mut p = start(&config);
    let endpoint = grpc_endpoint(&p.wait_for("\"serving\""));
    let client = c.tls.client("gateway").unwrap();
    let mut api = tests::gateway_sim::connect(&endpoint, &c.tls.cert_pem(), &client).await.unwrap();
    let accounts = tests::gateway_sim::load_accounts(&c.dir.0.join("shares")).unwrap();
    let account = accounts.iter().find(|a| a.scheme == wire::Scheme::Ed25519).unwrap();
    let root = std::fs::read(c.dir.0.join("sim-ca/root.der")).unwrap();
    let answer_key =
        tests::gateway_sim::attested_answer_key(&mut api, &root, &c.pcrs).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let grant = tests::gateway::Grant::new(
        answer_key,
        account.scheme,
        &account.account_id,
        0x61,
        b"interrupted",
        now.as_secs() + 60,
    );
    let commit = api.commit(tests::gateway_sim::commit_request(&grant)).await.unwrap().into_inner();
    assert!(!commit.commitments.is_empty());
    // Round 1 done; the enclave dies before round 2.
    Command::new("kill").arg("-KILL").arg(p.enclave_pid().to_string()).status().unwrap();
    p.wait_for("enclave_exited");
    let e = api
        .sign(pb::SignRequest {
            session_id: grant.session_id.to_vec(),
            signing_package: b"package".to_vec(),
        })
        .await
        .unwrap_err();
    // Refused by the bridge (UNAVAILABLE), or the server already going away with the parent.
    let going_away = e.code() == tonic::Code::Internal && e.message().contains("h2 protocol error");
    assert!(
        going_away
            || matches!(
                e.code(),
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
            ),
        "{e:?}"
    );
    assert_eq!(p.exit_code(), Some(1));
    no_secrets(&c, &p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_outside_the_allowlist_is_never_reached() {
    // The measured configuration names /v1/events; the relay only allows /v2/.
    let (gw, c, config) = with_session_events("events-refused", "/v2/").await;
    let mut p = start(&config);
    p.wait_for("\"serving\"");
    let closed = p.wait_for("subscription closed");
    assert!(closed.contains("NOT_ALLOWED"), "{closed}");
    assert!(gw.requests().is_empty(), "{:?}", gw.requests());
    no_secrets(&c, &p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_gateway_clients_beyond_the_cap_get_signatures_or_clean_refusals() {
    use parent_shim::serve::grpc_bridge::pb;
    let (c, config) = case("load", 7, 7).await;
    replace_in(&config, "[enclave]\n", "[enclave]\nsession_cap = 3\nmemory_budget_mib = 64\n");
    let mut p = start(&config);
    let endpoint = grpc_endpoint(&p.wait_for("\"serving\""));
    let client = c.tls.client("gateway").unwrap();
    let root = std::fs::read(c.dir.0.join("sim-ca/root.der")).unwrap();
    let accounts = tests::gateway_sim::load_accounts(&c.dir.0.join("shares")).unwrap();
    let mut api = tests::gateway_sim::connect(&endpoint, &c.tls.cert_pem(), &client).await.unwrap();
    let key = tests::gateway_sim::attested_answer_key(&mut api, &root, &c.pcrs).await.unwrap();
    let before = api.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();

    // Ten clients, three session slots, for a bounded time.
    let until = Instant::now() + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for n in 0..10u8 {
        let (endpoint, ca, client) = (endpoint.clone(), c.tls.cert_pem(), client.clone());
        let accounts = accounts.clone();
        tasks.push(tokio::spawn(async move {
            let mut api = tests::gateway_sim::connect(&endpoint, &ca, &client).await.unwrap();
            let (mut signed, mut refused, mut wrong) = (0, 0, Vec::new());
            let mut i = 0u16;
            while Instant::now() < until {
                i += 1;
                let account = &accounts[usize::from(i) % accounts.len()];
                let mut id = [n; 16];
                id[14..].copy_from_slice(&i.to_be_bytes());
                let outcome = tokio::time::timeout(
                    Duration::from_secs(30),
                    tests::gateway_sim::sign(&mut api, &key, account, id, b"load"),
                )
                .await;
                match outcome {
                    Ok(Ok(s)) if s.verified => signed += 1,
                    Ok(Err(e)) if e.to_lowercase().contains("resource has been exhausted") => {
                        refused += 1;
                    }
                    other => wrong.push(format!("{other:?}")),
                }
            }
            (signed, refused, wrong)
        }));
    }
    let (mut signed, mut refused) = (0, 0);
    for t in tasks {
        let (s, r, wrong) = t.await.unwrap();
        assert!(wrong.is_empty(), "{wrong:?}");
        signed += s;
        refused += r;
    }
    assert!(signed > 0 && refused > 0, "signed {signed}, refused {refused}");
    // Afterwards: no session left open, memory well inside the budget, the node serving.
    let after = api.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!((after.sessions_in_use, after.session_cap), (0, 3));
    assert_eq!(after.memory_budget, 64 << 20);
    assert!(after.memory_peak < after.memory_budget / 100 * 70, "{after:?}");
    assert!(!after.memory_watermark_alert);
    assert!(after.memory_in_use <= before.memory_in_use + (2 << 20), "{before:?} -> {after:?}");
    assert!(!p.seen.iter().any(|l| l.contains("\"alert\"")));
    p.seen_or_wait_for("\"serving\"");
    no_secrets(&c, &p);
}
