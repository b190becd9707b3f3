//! Several enclaves per host: two parents (`parent-shim@.service` instances), each with
//! its own configuration and enclave, side by side on one machine. Both serve signatures;
//! one enclave dies and its parent fails closed, while the other serves on. And
//! `check-config` with both files refuses a pair that would collide.

use std::path::Path;
use std::process::Command;
#[allow(clippy::wildcard_imports)]
use tests::node::*;

/// `parent-shim check-config` with every file given.
fn check_config(configs: &[&Path]) -> std::process::Output {
    let mut cmd = Command::new(parent_binary());
    cmd.arg("check-config");
    for c in configs {
        cmd.arg("--config").arg(c);
    }
    cmd.output().unwrap()
}

/// Signs one Ed25519 session through the node at `serving` (its `"serving"` line).
async fn signs(c: &Case, serving: &str, session: u8) -> Result<(), String> {
    let endpoint = grpc_endpoint(serving);
    let client = c.tls.client("gateway").unwrap();
    let mut api = tests::gateway_sim::connect(&endpoint, &c.tls.cert_pem(), &client).await?;
    let root = std::fs::read(c.dir.0.join("sim-ca/root.der")).unwrap();
    let answer_key = tests::gateway_sim::attested_answer_key(&mut api, &root, &c.pcrs).await?;
    let accounts = tests::gateway_sim::load_accounts(&c.dir.0.join("shares")).unwrap();
    let account = accounts.iter().find(|a| a.scheme == wire::Scheme::Ed25519).unwrap();
    let signed =
        tests::gateway_sim::sign(&mut api, &answer_key, account, [session; 16], b"two nodes")
            .await?;
    if signed.verified { Ok(()) } else { Err(format!("{signed:?}")) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_serve_side_by_side_and_one_failing_leaves_the_other_serving() {
    let (a, a_config) = case("instance-a", 7, 7).await;
    let (b, b_config) = case("instance-b", 7, 7).await;
    // The two files pass together (each its own runtime directory, ports the system picks).
    let out = check_config(&[&a_config, &b_config]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut pa = start(&a_config);
    let mut pb = start(&b_config);
    let (serving_a, serving_b) = (pa.wait_for("\"serving\""), pb.wait_for("\"serving\""));
    assert_ne!(pa.enclave_pid(), pb.enclave_pid());
    signs(&a, &serving_a, 1).await.unwrap();
    signs(&b, &serving_b, 1).await.unwrap();
    // Instance a's enclave dies: its parent fails closed; b never notices.
    Command::new("kill").arg("-KILL").arg(pa.enclave_pid().to_string()).status().unwrap();
    pa.wait_for("enclave_exited");
    assert_eq!(pa.exit_code(), Some(1));
    assert!(signs(&a, &serving_a, 2).await.is_err(), "a dead node signed");
    signs(&b, &serving_b, 2).await.unwrap();
    signs(&b, &serving_b, 3).await.unwrap();
    assert!(alive(pb.enclave_pid()));
    no_secrets(&a, &pa);
    no_secrets(&b, &pb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_refuses_two_instances_that_collide() {
    let (a, a_config) = case("collide-a", 7, 7).await;
    let (_b, b_config) = case("collide-b", 7, 7).await;
    // b copied from a without changing the port, the runtime directory or the audit file.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for config in [&a_config, &b_config] {
        replace_in(config, "listen = \"127.0.0.1:0\"", &format!("listen = \"0.0.0.0:{port}\""));
    }
    replace_in(&a_config, "listen = \"0.0.0.0:", "listen = \"127.0.0.1:");
    let text = std::fs::read_to_string(&a_config).unwrap();
    let runtime = text.lines().find(|l| l.starts_with("runtime_dir")).unwrap().to_owned();
    let b_text = std::fs::read_to_string(&b_config).unwrap();
    let b_runtime = b_text.lines().find(|l| l.starts_with("runtime_dir")).unwrap().to_owned();
    replace_in(&b_config, &b_runtime, &runtime);
    let audit = format!("\n[audit]\nfile = \"{}/audit.jsonl\"\n", a.dir.0.display());
    append(&a_config, &audit);
    append(&b_config, &audit);
    let out = check_config(&[&a_config, &b_config]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for what in [format!("gRPC port {port}"), "runtime directory".into(), "audit file".into()] {
        assert!(stderr.contains(&what), "{what} not named:\n{stderr}");
    }
    assert!(stderr.contains(&a_config.display().to_string()), "{stderr}");
    // Each file alone is fine: the refusal is about the pair.
    for config in [&a_config, &b_config] {
        let alone = check_config(&[config]);
        assert!(alone.status.success(), "{}", String::from_utf8_lossy(&alone.stderr));
    }
}
