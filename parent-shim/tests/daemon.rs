//! `parent-shim run` as a real process, launching the real `enclave-rt` (sim) binary, with
//! the KMS emulator on loopback: a normal boot that serves, then every bootstrap failure
//! ending the same way (an `alert` line, the enclave terminated, exit status 1, nothing
//! served), the enclave dying while serving, and no secret in any output or file the
//! parent wrote.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tests::kms_emulator::{KeySpec, KmsConfig, KmsEmulator};
use tests::moto_server::MotoServer;
use tests::share_gen::{GenConfig, SchemeChoice, files};

/// The `enclave-rt` binary the workspace test run built (sim flavour).
fn enclave_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let dir = deps.parent().unwrap().parent().unwrap();
    let bin = dir.join("enclave-rt");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p enclave-rt --features sim` (cargo xtask test does)",
        bin.display()
    );
    bin
}

struct Case {
    dir: tests::cms_openssl::Workdir,
    kms: KmsEmulator,
    identity: String,
    share_strings: Vec<String>,
    /// The CA of the parent's gRPC certificate and of the gateway's client certificates.
    tls: tests::tls_certs::Ca,
}

/// Shares, a sim chain, TLS files and a KMS key whose policy wants PCR0 = `policy_pcr0`
/// while the enclave reports `actual_pcr0`; the identity sealed under it.
async fn case(name: &str, policy_pcr0: u8, actual_pcr0: u8) -> (Case, PathBuf) {
    case_with(name, policy_pcr0, actual_pcr0, 20).await
}

/// The same with `accounts` accounts.
async fn case_with(name: &str, policy_pcr0: u8, actual_pcr0: u8, accounts: u64) -> (Case, PathBuf) {
    let dir = tests::cms_openssl::workdir(&format!("daemon-{name}"));
    let shares = dir.0.join("shares");
    let config = GenConfig { accounts, scheme: SchemeChoice::Both, threshold: 2, parties: 2 };
    tests::share_gen::generate(config, &shares, &mut rand::rngs::OsRng, &mut |_| {}).unwrap();
    let ca = tests::sim_ca::generate().unwrap();
    tests::sim_ca::write(&ca, &dir.0.join("sim-ca")).unwrap();
    let kms = KmsEmulator::start(KmsConfig {
        keys: vec![KeySpec {
            key_id: "k".into(),
            recipient_pcrs: [(0, vec![policy_pcr0; 48])].into(),
        }],
        attestation: tests::kms_emulator::pinned_root(ca.root_der.clone()),
    })
    .await
    .unwrap();
    let identity = std::fs::read_to_string(shares.join(files::IDENTITY)).unwrap().trim().to_owned();
    let sealed = tests::kms_emulator::encrypt_with_sdk(&kms.endpoint(), "k", identity.as_bytes())
        .await
        .unwrap();
    std::fs::write(shares.join("identity.kms"), sealed).unwrap();
    let tls = tests::tls_certs::Ca::new("ca").unwrap();
    let server = tls.server().unwrap();
    std::fs::write(dir.0.join("ca.pem"), tls.cert_pem()).unwrap();
    std::fs::write(dir.0.join("server.pem"), &server.cert).unwrap();
    std::fs::write(dir.0.join("server.key"), &server.key).unwrap();
    let gateway_key = hex::encode(tests::gateway::gateway().verifying_key().to_bytes());
    let d = dir.0.display();
    let config = format!(
        r#"
[enclave]
mode = "local"
binary = "{bin}"
runtime_dir = "{d}/run"
sim_nsm_dir = "{d}/sim-ca"
sim_pcrs = ["0={pcr0}"]
gateway_key = "{gateway_key}"
boot_deadline_secs = 60

[shares]
share_file = "file://{d}/shares/service_key_shares.json.age"
sealed_identity = "file://{d}/shares/identity.kms"
expected_accounts = {accounts}

[kms]
endpoint = "{kms}"
key_id = "k"
access_key_id = "AKIDLOCAL"
secret_access_key = "local-secret"

[attestation]
root = "{d}/sim-ca/root.der"

[grpc]
listen = "127.0.0.1:0"
cert = "{d}/server.pem"
key = "{d}/server.key"
client_ca = "{d}/ca.pem"
"#,
        bin = enclave_binary().display(),
        pcr0 = hex::encode([actual_pcr0; 48]),
        kms = kms.endpoint(),
    );
    let path = dir.0.join("parent.toml");
    std::fs::write(&path, config).unwrap();
    let shares_json: Vec<String> = {
        // Secret share material to search the outputs for: the signing-share part (bytes
        // 42..72 of the envelope, base64 characters 56..96) of every gateway share.
        let g: serde_json::Value =
            serde_json::from_slice(&std::fs::read(shares.join(files::GATEWAY_SHARES)).unwrap())
                .unwrap();
        g.as_array()
            .unwrap()
            .iter()
            .map(|a| a["shares"][0].as_str().unwrap()[56..96].to_owned())
            .collect()
    };
    (Case { dir, kms, identity, share_strings: shares_json, tls }, path)
}

struct Parent {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

fn start(config: &Path) -> Parent {
    start_with(config, None)
}

fn start_with(config: &Path, notify_socket: Option<&Path>) -> Parent {
    let env: Vec<(&str, String)> =
        notify_socket.map(|s| ("NOTIFY_SOCKET", s.display().to_string())).into_iter().collect();
    start_with_env(config, &env)
}

fn start_with_env(config: &Path, env: &[(&str, String)]) -> Parent {
    let mut command = Command::new(env!("CARGO_BIN_EXE_parent-shim"));
    // Credentials come from the configuration or from what a test sets, never from the
    // machine running the tests.
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .arg("run")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send(format!("stderr: {l}"));
        }
    });
    Parent { child, lines, seen: Vec::new() }
}

impl Parent {
    /// Waits for a line containing `needle`; panics with everything seen on timeout.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(l.clone());
                if l.contains(needle) {
                    return l;
                }
            }
        }
        panic!("no line with {needle:?}; saw:\n{}", self.seen.join("\n"));
    }

    /// Like `wait_for`, but a line already seen counts: for events whose order is not fixed.
    fn seen_or_wait_for(&mut self, needle: &str) -> String {
        match self.seen.iter().find(|l| l.contains(needle)) {
            Some(l) => l.clone(),
            None => self.wait_for(needle),
        }
    }

    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the parent did not exit");
    }

    fn enclave_pid(&self) -> u32 {
        let line = self.seen.iter().find(|l| l.contains("enclave_started")).unwrap();
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        u32::try_from(v["pid"].as_u64().unwrap()).unwrap()
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by a dead parent) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split(' ').nth(2).is_none_or(|state| state != "Z"))
}

fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "the enclave (pid {pid}) is still running");
}

/// Nothing secret in what the parent printed or in the files it wrote.
fn no_secrets(c: &Case, p: &Parent) {
    let out = p.seen.join("\n");
    let key_body = &c.identity["AGE-SECRET-KEY-1".len()..];
    assert!(!out.contains(key_body), "the age identity reached the output");
    for s in &c.share_strings {
        assert!(!out.contains(s.as_str()), "a share reached the output");
    }
    for entry in std::fs::read_dir(c.dir.0.join("run")).unwrap() {
        let path = entry.unwrap().path();
        if let Ok(bytes) = std::fs::read(&path) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(key_body), "{} holds the identity", path.display());
            assert!(!text.contains("AGE-SECRET-KEY"), "{}", path.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_serves_and_fails_closed_when_the_enclave_dies() {
    let (c, config) = case("ok", 7, 7).await;
    // systemd's notification socket: READY=1 only once serving.
    let notify_path = c.dir.0.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut p = start_with(&config, Some(&notify_path));
    let record = p.wait_for("\"boot_record\"");
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["accounts"], 20);
    assert!(record["kms_request_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(record["pcrs"]["PCR0"], hex::encode([7u8; 48]));
    p.wait_for("\"serving\"");
    let mut buf = [0u8; 64];
    let n = notify.recv(&mut buf).unwrap_or_else(|e| panic!("{e}: {}", p.seen.join("\n")));
    assert_eq!(&buf[..n], b"READY=1");
    // The enclave dies: the parent stops serving, raises an alert and exits non-zero.
    let pid = p.enclave_pid();
    Command::new("kill").arg("-KILL").arg(pid.to_string()).status().unwrap();
    p.wait_for("enclave_exited");
    assert_eq!(p.exit_code(), Some(1));
    no_secrets(&c, &p);
    assert!(c.kms.log().iter().any(|l| l.starts_with("Decrypt ok")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_left_by_a_killed_parent_is_ended_by_the_next_one() {
    let (c, config) = case("orphan", 7, 7).await;
    let mut first = start(&config);
    first.wait_for("\"serving\"");
    let orphan = first.enclave_pid();
    // SIGKILL (or the OOM killer) runs none of the parent's cleanup: the enclave stays.
    Command::new("kill").arg("-KILL").arg(first.child.id().to_string()).status().unwrap();
    let _ = first.child.wait();
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(orphan), "the enclave went with its parent after all");
    // The next parent ends it before it starts its own, and says so.
    let mut second = start(&config);
    let started = second.wait_for("enclave_started");
    second.wait_for("\"serving\"");
    wait_gone(orphan);
    assert!(started.contains(&format!("\"terminated_orphan\":{orphan}")), "{started}");
    assert_ne!(second.enclave_pid(), orphan);
    no_secrets(&c, &second);
}

/// Runs a case that must fail at boot: an alert naming `reason_text`, exit 1, the enclave
/// gone, no `serving` line.
fn fails_closed(c: &Case, mut p: Parent, reason_text: &str) {
    let alert = p.wait_for("\"alert\"");
    assert!(alert.contains(reason_text), "{alert}");
    assert_eq!(p.exit_code(), Some(1), "{}", p.seen.join("\n"));
    assert!(!p.seen.iter().any(|l| l.contains("\"serving\"")));
    wait_gone(p.enclave_pid());
    no_secrets(c, &p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_denies_a_pcr_mismatch() {
    let (c, config) = case("pcr", 7, 8).await;
    let p = start(&config);
    fails_closed(&c, p, "AccessDeniedException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_unreachable() {
    let (c, config) = case("unreachable", 7, 7).await;
    c.kms.set_unreachable(true);
    let p = start(&config);
    fails_closed(&c, p, "KMS unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_share_file() {
    let (c, config) = case("corrupt", 7, 7).await;
    let file = c.dir.0.join("shares").join(files::SHARES);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let p = start(&config);
    fails_closed(&c, p, "AGE_PAYLOAD_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_file_for_another_age_key() {
    let (c, config) = case("wrongkey", 7, 7).await;
    // Another generation's file, encrypted to another recipient.
    let other = c.dir.0.join("other");
    let deal = GenConfig { accounts: 20, scheme: SchemeChoice::Both, threshold: 2, parties: 2 };
    tests::share_gen::generate(deal, &other, &mut rand::rngs::OsRng, &mut |_| {}).unwrap();
    std::fs::copy(other.join(files::SHARES), c.dir.0.join("shares").join(files::SHARES)).unwrap();
    let p = start(&config);
    fails_closed(&c, p, "AGE_WRONG_IDENTITY");
}

/// Adds a section to a case's configuration.
fn append(config: &Path, section: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, text + section).unwrap();
}

/// Edits the config file in place: every `from` becomes `to`.
fn replace_in(config: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, text.replace(from, to)).unwrap();
}

/// Moves the case's inputs into S3 (moto on loopback) and points the config there, with the
/// account count left to the share object's `accounts` metadata.
async fn via_s3(c: &Case, config: &Path, moto: &MotoServer, upload_share_file: bool) {
    let shares = c.dir.0.join("shares");
    if upload_share_file {
        let bytes = std::fs::read(shares.join(files::SHARES)).unwrap();
        moto.put_object("signservice-inputs", "prod/shares.age", bytes, &[("accounts", "20")])
            .await
            .unwrap();
    }
    let sealed = std::fs::read(shares.join("identity.kms")).unwrap();
    moto.put_object("signservice-inputs", "prod/identity.kms", sealed, &[]).await.unwrap();
    let d = c.dir.0.display();
    let text = std::fs::read_to_string(config).unwrap();
    let mut replaced = text.clone();
    for (from, to) in [
        (
            format!("file://{d}/shares/service_key_shares.json.age"),
            "s3://signservice-inputs/prod/shares.age".to_owned(),
        ),
        (
            format!("file://{d}/shares/identity.kms"),
            "s3://signservice-inputs/prod/identity.kms".into(),
        ),
        ("expected_accounts = 20\n".into(), String::new()),
    ] {
        assert!(replaced.contains(&from), "{from}");
        replaced = replaced.replace(&from, &to);
    }
    let s3 = format!(
        "\n[s3]\nendpoint = \"{}\"\nforce_path_style = true\naccess_key_id = \"AKIDLOCAL\"\n\
         secret_access_key = \"local-secret\"\n",
        moto.endpoint()
    );
    std::fs::write(config, replaced).unwrap();
    append(config, &s3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_its_inputs_from_s3() {
    let moto = MotoServer::start().unwrap();
    let (c, config) = case("s3", 7, 7).await;
    via_s3(&c, &config, &moto, true).await;
    let mut p = start(&config);
    let fetched: serde_json::Value =
        serde_json::from_str(&p.wait_for("\"inputs_fetched\"")).unwrap();
    // The count came from the object's metadata, and it sized the store that loaded.
    assert_eq!(fetched["expected_accounts"], 20);
    let record: serde_json::Value = serde_json::from_str(&p.wait_for("\"boot_record\"")).unwrap();
    assert_eq!(record["accounts"], 20);
    assert_eq!(record["share_file_sha256"], fetched["share_file_sha256"]);
    p.wait_for("\"serving\"");
    no_secrets(&c, &p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_s3_object_fails_closed_before_any_enclave_starts() {
    let moto = MotoServer::start().unwrap();
    let (c, config) = case("s3-missing", 7, 7).await;
    via_s3(&c, &config, &moto, false).await;
    let mut p = start(&config);
    let alert = p.wait_for("\"alert\"");
    assert!(alert.contains("fetch_failed"), "{alert}");
    assert!(alert.contains("s3://signservice-inputs/prod/shares.age does not exist"), "{alert}");
    assert_eq!(p.exit_code(), Some(1));
    assert!(!p.seen.iter().any(|l| l.contains("enclave_started") || l.contains("\"serving\"")));
    // The test's own Encrypt (sealing the identity) is the only call KMS saw.
    assert!(!c.kms.log().iter().any(|l| l.starts_with("Decrypt")), "{:?}", c.kms.log());
}

fn with_cloudwatch(config: &Path, moto: &MotoServer, group: &str) {
    let cw = format!(
        "\n[cloudwatch]\nlog_group = \"{group}\"\nlog_stream = \"node-1\"\nendpoint = \"{}\"\n\
         access_key_id = \"AKIDLOCAL\"\nsecret_access_key = \"local-secret\"\nflush_interval_ms = 200\n",
        moto.endpoint()
    );
    append(config, &cw);
}

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

/// A stand-in `nitro-cli`: records its arguments and answers as the real one does.
/// `run_exit` 0 prints an enclave description; anything else prints `stderr` and fails.
/// Before `run-enclave`, `describe-enclaves` lists `before` (JSON array elements).
fn stub_nitro_cli(dir: &Path, run_exit: i32, stderr: &str) -> PathBuf {
    stub_nitro_cli_with(dir, run_exit, stderr, "")
}

fn stub_nitro_cli_with(dir: &Path, run_exit: i32, stderr: &str, before: &str) -> PathBuf {
    let script = format!(
        r#"#!/bin/sh
echo "$@" >> "{log}"
case "$1" in
  run-enclave)
    touch "{started}"
    if [ {run_exit} -ne 0 ]; then echo "{stderr}" >&2; exit {run_exit}; fi
    echo 'Start allocating memory...' >&2
    printf '{{"EnclaveName": "enclave", "EnclaveID": "i-0abc-enc0123", "ProcessID": 4242, "EnclaveCID": 16, "NumberOfCPUs": 2, "CPUIDs": [1, 3], "MemoryMiB": 512}}\n' ;;
  describe-enclaves)
    if [ -e "{started}" ]; then
      printf '[{{"EnclaveID": "i-0abc-enc0123", "State": "RUNNING", "Flags": "NONE", "EnclaveCID": 16}}]\n'
    else
      printf '[{before}]\n'
    fi ;;
  terminate-enclave)
    printf '{{"EnclaveID": "i-0abc-enc0123", "Terminated": true}}\n' ;;
esac
"#,
        log = dir.join("nitro-cli.log").display(),
        started = dir.join("nitro-cli.started").display(),
    );
    let path = dir.join("nitro-cli");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// The case's configuration switched to nitro mode with the stub.
fn nitro_config(c: &Case, config: &Path, nitro_cli: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let start = text.find("[enclave]").unwrap();
    let end = text.find("[shares]").unwrap();
    let d = c.dir.0.display();
    std::fs::write(c.dir.0.join("enclave.eif"), b"an image").unwrap();
    std::fs::write(
        c.dir.0.join("pcrs.json"),
        format!("{{\"PCR0\": \"{}\"}}", hex::encode([7u8; 48])),
    )
    .unwrap();
    let nitro = format!(
        "[enclave]\nmode = \"nitro\"\neif_path = \"{d}/enclave.eif\"\ncpu_count = 2\n\
         memory_mib = 512\ncid = 16\nnitro_cli = \"{}\"\nboot_deadline_secs = 3\n\n",
        nitro_cli.display()
    );
    let text = format!("{}{nitro}{}", &text[..start], &text[end..])
        .replace("[attestation]\n", &format!("[attestation]\nexpected_pcrs = \"{d}/pcrs.json\"\n"));
    std::fs::write(config, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nitro_mode_runs_the_image_through_nitro_cli_and_terminates_it_on_failure() {
    let (c, config) = case("nitro", 7, 7).await;
    let stub = stub_nitro_cli(&c.dir.0, 0, "");
    nitro_config(&c, &config, &stub);
    let mut p = start(&config);
    let started: serde_json::Value =
        serde_json::from_str(&p.wait_for("\"enclave_started\"")).unwrap();
    assert_eq!(started["mode"], "nitro");
    assert_eq!(started["enclave_id"], "i-0abc-enc0123");
    assert_eq!(started["cid"], 16);
    // Nothing answers on vsock CID 16 here: the boot fails at the deadline, closed.
    let alert = p.wait_for("\"alert\"");
    assert!(alert.contains("boot_failed") && alert.contains("vsock:16:5000"), "{alert}");
    assert_eq!(p.exit_code(), Some(1));
    let calls = std::fs::read_to_string(c.dir.0.join("nitro-cli.log")).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(
        calls,
        [
            "describe-enclaves",
            format!(
                "run-enclave --eif-path {}/enclave.eif --cpu-count 2 --memory 512 --enclave-cid 16",
                c.dir.0.display()
            )
            .as_str(),
            "terminate-enclave --enclave-id i-0abc-enc0123",
        ]
    );
    assert!(!p.seen.iter().any(|l| l.contains("\"serving\"")));
    assert!(!c.kms.log().iter().any(|l| l.starts_with("Decrypt")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nitro_cli_refusal_fails_closed_with_its_reason() {
    let (c, config) = case("nitro-refused", 7, 7).await;
    let stub = stub_nitro_cli(&c.dir.0, 26, "[ E26 ] Insufficient memory requested.");
    nitro_config(&c, &config, &stub);
    let mut p = start(&config);
    let alert = p.wait_for("\"alert\"");
    assert!(alert.contains("launch_failed"), "{alert}");
    assert!(alert.contains("[ E26 ] Insufficient memory requested."), "{alert}");
    assert_eq!(p.exit_code(), Some(1));
    let calls = std::fs::read_to_string(c.dir.0.join("nitro-cli.log")).unwrap();
    assert_eq!(calls.lines().count(), 2, "describe and run, nothing to terminate: {calls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nitro_mode_ends_an_enclave_a_killed_parent_left_on_its_cid_first() {
    let (c, config) = case("nitro-orphan", 7, 7).await;
    // Left running on our CID by a parent that was killed, beside another on another CID.
    let before = r#"{"EnclaveID": "i-0abc-enc0old", "State": "RUNNING", "Flags": "NONE", "EnclaveCID": 16}, {"EnclaveID": "i-0abc-enc0twin", "State": "RUNNING", "Flags": "NONE", "EnclaveCID": 17}"#;
    let stub = stub_nitro_cli_with(&c.dir.0, 0, "", before);
    nitro_config(&c, &config, &stub);
    let mut p = start(&config);
    let started: serde_json::Value =
        serde_json::from_str(&p.wait_for("\"enclave_started\"")).unwrap();
    assert_eq!(started["terminated_orphans"], serde_json::json!(["i-0abc-enc0old"]));
    let _ = p.wait_for("\"alert\"");
    let calls = std::fs::read_to_string(c.dir.0.join("nitro-cli.log")).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls[..2], ["describe-enclaves", "terminate-enclave --enclave-id i-0abc-enc0old"]);
    assert!(calls[2].starts_with("run-enclave "), "{calls:?}");
    assert!(!calls.iter().any(|l| l.contains("enc0twin")), "{calls:?}");
}

/// No keys in the configuration: the parent signs its KMS calls with the instance role's
/// temporary credentials, fetched from the metadata service with an `IMDSv2` token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_static_keys_the_instance_role_signs_the_kms_calls() {
    let imds = tests::imds_emulator::ImdsEmulator::start().await.unwrap();
    let (c, config) = case("instance-role", 7, 7).await;
    let text = std::fs::read_to_string(&config).unwrap();
    let keyless =
        text.replace("access_key_id = \"AKIDLOCAL\"\nsecret_access_key = \"local-secret\"\n", "");
    assert_ne!(keyless, text);
    std::fs::write(&config, keyless).unwrap();
    let mut p = start_with_env(&config, &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint())]);
    p.wait_for("\"serving\"");
    let by_role = format!("by {}", tests::imds_emulator::ACCESS_KEY_ID);
    assert!(
        c.kms.log().iter().any(|l| l.starts_with("Decrypt ok") && l.ends_with(&by_role)),
        "{:?}",
        c.kms.log()
    );
    let asked = imds.log();
    assert!(asked.iter().any(|l| l.starts_with("PUT /latest/api/token 200")), "{asked:?}");
    assert!(
        asked.iter().any(|l| l.contains(tests::imds_emulator::ROLE) && l.ends_with(" 200")),
        "{asked:?}"
    );
    no_secrets(&c, &p);
}

/// With neither keys nor an instance role, KMS refuses the unsigned call and the parent
/// fails closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_credentials_the_boot_fails_closed() {
    let (c, config) = case("no-credentials", 7, 7).await;
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("access_key_id = \"AKIDLOCAL\"\nsecret_access_key = \"local-secret\"\n", ""),
    )
    .unwrap();
    // A metadata endpoint where nothing listens.
    let p = start_with_env(
        &config,
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9".into())],
    );
    fails_closed(&c, p, "boot_failed");
}

fn reencrypt(c: &Case, identity: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_parent-shim"))
        .args(["reencrypt-shares", "--share-file"])
        .arg(c.dir.0.join("shares").join(files::SHARES))
        .arg("--identity-file")
        .arg(identity)
        .arg("--out-dir")
        .arg(out)
        .args(["--kms-key-id", "k", "--kms-endpoint", &c.kms.endpoint()])
        .env("AWS_ACCESS_KEY_ID", "AKIDOPERATOR")
        .env("AWS_SECRET_ACCESS_KEY", "operator-secret")
        .output()
        .unwrap()
}

/// The runbook's share re-encryption: the operator's tool re-encrypts the file to a fresh
/// identity sealed by KMS; the new pair boots with the same accounts, the old identity
/// no longer opens the new file, and no secret was printed or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencrypted_shares_boot_and_the_old_identity_no_longer_opens_them() {
    let (c, config) = case("reencrypt", 7, 7).await;
    let new = c.dir.0.join("rotated");
    let out = reencrypt(&c, &c.dir.0.join("shares").join(files::IDENTITY), &new);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["accounts"], 20);
    assert_ne!(summary["old_share_file_sha256"], summary["new_share_file_sha256"]);
    // The operator's Encrypt went to KMS under the operator's credentials.
    assert!(
        c.kms.log().iter().any(|l| l.starts_with("Encrypt ok") && l.ends_with("by AKIDOPERATOR"))
    );
    for text in [&stdout, &stderr] {
        assert!(!text.contains("AGE-SECRET-KEY"));
    }
    for entry in std::fs::read_dir(&new).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("AGE-SECRET-KEY"));
        for s in &c.share_strings {
            assert!(!String::from_utf8_lossy(&bytes).contains(s.as_str()));
        }
    }
    // The new pair boots.
    let text = std::fs::read_to_string(&config).unwrap();
    let d = c.dir.0.display();
    let rotated = text
        .replace(
            &format!("file://{d}/shares/service_key_shares.json.age"),
            &format!("file://{d}/rotated/service_key_shares.json.age"),
        )
        .replace(
            &format!("file://{d}/shares/identity.kms"),
            &format!("file://{d}/rotated/age_identity.kms"),
        );
    std::fs::write(&config, &rotated).unwrap();
    let mut p = start(&config);
    let record: serde_json::Value = serde_json::from_str(&p.wait_for("\"boot_record\"")).unwrap();
    assert_eq!(record["accounts"], 20);
    assert_eq!(record["share_file_sha256"], summary["new_share_file_sha256"]);
    drop(p);
    // The old identity (sealed as before) does not open the new file.
    std::fs::write(
        &config,
        rotated.replace(
            &format!("file://{d}/rotated/age_identity.kms"),
            &format!("file://{d}/shares/identity.kms"),
        ),
    )
    .unwrap();
    let p = start(&config);
    fails_closed(&c, p, "AGE_WRONG_IDENTITY");
}

/// The runbook's reload: shares live until restart, so a new file goes in through a second
/// node. Node A serves the current file; node B boots beside it with the re-encrypted file
/// (both enclaves up at once); A is stopped (SIGTERM): it exits cleanly and its enclave is
/// gone, while B goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_reload_brings_up_the_new_file_beside_the_old_then_retires_the_old() {
    let (c, config_a) = case("blue-green", 7, 7).await;
    let mut a = start(&config_a);
    a.wait_for("\"serving\"");
    let out =
        reencrypt(&c, &c.dir.0.join("shares").join(files::IDENTITY), &c.dir.0.join("rotated"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d = c.dir.0.display();
    let text = std::fs::read_to_string(&config_a).unwrap();
    let config_b = c.dir.0.join("node-b.toml");
    std::fs::write(
        &config_b,
        text.replace(
            &format!("runtime_dir = \"{d}/run\""),
            &format!("runtime_dir = \"{d}/run-b\""),
        )
        .replace(
            &format!("file://{d}/shares/service_key_shares.json.age"),
            &format!("file://{d}/rotated/service_key_shares.json.age"),
        )
        .replace(
            &format!("file://{d}/shares/identity.kms"),
            &format!("file://{d}/rotated/age_identity.kms"),
        ),
    )
    .unwrap();
    let mut b = start(&config_b);
    let record: serde_json::Value = serde_json::from_str(&b.wait_for("\"boot_record\"")).unwrap();
    b.wait_for("\"serving\"");
    assert_eq!(record["accounts"], 20);
    let (pid_a, pid_b) = (a.enclave_pid(), b.enclave_pid());
    assert!(alive(pid_a) && alive(pid_b), "both enclaves run during the switch");
    // The gateway has switched to B: A is retired.
    Command::new("kill").arg("-TERM").arg(a.child.id().to_string()).status().unwrap();
    a.wait_for("\"stopped\"");
    assert_eq!(a.exit_code(), Some(0));
    wait_gone(pid_a);
    assert!(alive(pid_b), "B's enclave must survive A's retirement");
    assert!(b.child.try_wait().unwrap().is_none(), "B must still be serving");
    no_secrets(&c, &a);
    no_secrets(&c, &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencryption_with_the_wrong_identity_writes_nothing() {
    let (c, _config) = case("reencrypt-wrong", 7, 7).await;
    let other = c.dir.0.join("other");
    let deal = GenConfig { accounts: 2, scheme: SchemeChoice::Both, threshold: 2, parties: 2 };
    tests::share_gen::generate(deal, &other, &mut rand::rngs::OsRng, &mut |_| {}).unwrap();
    let new = c.dir.0.join("rotated");
    let out = reencrypt(&c, &other.join(files::IDENTITY), &new);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the enclave would refuse the old share file"), "{stderr}");
    assert!(stderr.contains("AGE_WRONG_IDENTITY") || stderr.contains("identity"), "{stderr}");
    assert!(!new.exists() || std::fs::read_dir(&new).unwrap().next().is_none());
    assert!(!c.kms.log().iter().any(|l| l.ends_with("by AKIDOPERATOR")), "KMS was called");
}

/// Once serving, the node reports its attestation, share fingerprint and load time to the
/// gateway over HTTPS, again every interval, and a last `failed` report when its enclave
/// dies; the gateway can verify the attestation document it receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_receives_the_nodes_health_with_its_attestation() {
    let gateway_ca = tests::tls_certs::Ca::new("gateway server CA").unwrap();
    let endpoint = tests::gateway_health::HealthEndpoint::start(&gateway_ca).await.unwrap();
    let (c, config) = case("health", 7, 7).await;
    std::fs::write(c.dir.0.join("gateway-ca.pem"), gateway_ca.cert_pem()).unwrap();
    let section = format!(
        "\n[gateway]\nhealth_url = \"{}\"\nca = \"{}\"\ninterval_secs = 1\n",
        endpoint.url(),
        c.dir.0.join("gateway-ca.pem").display()
    );
    append(&config, &section);
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
    let verified = parent_shim::attestation_verifier::verify(
        &doc,
        &root,
        now,
        &parent_shim::attestation_verifier::Expectations::default(),
    )
    .unwrap();
    assert_eq!(hex::encode(&verified.pcrs[&0]), hex::encode([7u8; 48]));
    // The enclave dies: a last report says so.
    Command::new("kill").arg("-KILL").arg(p.enclave_pid().to_string()).status().unwrap();
    assert_eq!(p.exit_code(), Some(1));
    let last = endpoint.reports().pop().unwrap();
    assert_eq!(last["state"], "failed");
    assert!(last["reason"].as_str().unwrap().contains("exited"), "{last}");
    let all = serde_json::to_string(&endpoint.reports()).unwrap();
    assert!(!all.contains(&c.identity["AGE-SECRET-KEY-1".len()..]));
}

#[test]
fn check_config_refuses_unknown_keys_and_bad_values() {
    let dir = tests::cms_openssl::workdir("daemon-config");
    let good = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("parent-shim.example.toml"),
    )
    .unwrap();
    let run = |text: &str| {
        let path = dir.0.join("c.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_parent-shim"))
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(run(&good).0, Some(0), "{}", run(&good).1);
    let (code, err) = run(&good.replace("[grpc]", "[grpc]\nlisten_typo = \"x\""));
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown field"), "{err}");
    let (code, err) = run(&good.replace("mode = \"local\"", "mode = \"nitro\""));
    assert_eq!(code, Some(2));
    assert!(err.contains("needs enclave.eif_path"), "{err}");
    let (code, err) = run(&good.replace("file:///var/lib", "https://bucket"));
    assert_eq!(code, Some(2));
    assert!(err.contains("s3://bucket/key or file://path"), "{err}");
    let (code, _) = run(&good.replace("file:///var/lib/sign-service", "s3://bucket/prod"));
    assert_eq!(code, Some(0));
    let (code, err) =
        run(&good
            .replace("file:///var/lib/sign-service/service_key_shares.json.age", "s3://bucket/"));
    assert_eq!(code, Some(2), "an s3:// URL without a key");
    assert!(err.contains("s3://bucket/key"), "{err}");
    let relay = "\n[relay]\nallow = [\"https://gw.internal/v1/\"]\nca = \"/x.pem\"\n";
    assert_eq!(run(&format!("{good}{relay}networks = [\"10.0.0.0/8\"]\n")).0, Some(0));
    let system_roots = "\n[relay]\nallow = [\"https://gw.internal/v1/\"]\n";
    assert_eq!(run(&format!("{good}{system_roots}")).0, Some(0), "relay.ca is optional");
    let (code, err) = run(&format!("{good}{relay}networks = [\"10.0.0.0/33\"]\n"));
    assert_eq!(code, Some(2));
    assert!(err.contains("relay.networks"), "{err}");
}

/// A case whose enclave subscribes to the session events of a gateway endpoint (its
/// `/v1/events`, answers to `/v1/answers`), with a relay allowing that endpoint's
/// `allowed_path` prefix on loopback.
async fn with_session_events(
    name: &str,
    allowed_path: &str,
) -> (tests::gateway_health::HealthEndpoint, Case, PathBuf) {
    let gateway_ca = tests::tls_certs::Ca::new("gateway server CA").unwrap();
    let gw = tests::gateway_health::HealthEndpoint::start(&gateway_ca).await.unwrap();
    let (c, config) = case(name, 7, 7).await;
    std::fs::write(c.dir.0.join("gateway-ca.pem"), gateway_ca.cert_pem()).unwrap();
    let base = gw.base();
    replace_in(
        &config,
        "[enclave]\n",
        &format!(
            "[enclave]\nevents_url = \"{base}/v1/events\"\nanswers_url = \"{base}/v1/answers\"\n"
        ),
    );
    append(
        &config,
        &format!(
            "\n[relay]\nallow = [\"{base}{allowed_path}\"]\nnetworks = [\"127.0.0.0/8\", \"::1/128\"]\nca = \"{}\"\n",
            c.dir.0.join("gateway-ca.pem").display()
        ),
    );
    (gw, c, config)
}

/// The gRPC endpoint a `serving` line announces.
fn grpc_endpoint(serving: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(serving).unwrap();
    format!("https://{}", v["listen"].as_str().unwrap())
}

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
    let answer_key = tests::gateway_sim::attested_answer_key(&mut api, &root).await.unwrap();
    let accounts = tests::gateway_sim::load_accounts(&c.dir.0.join("shares")).unwrap();

    // Whole sessions over events, one per scheme: both rounds answered by posts, checked
    // against the attested answer key, aggregated and verified independently.
    let mut published = 0;
    for (session, scheme) in [(1, wire::Scheme::Ed25519), (2, wire::Scheme::Secp256k1Tr)] {
        let account = accounts.iter().find(|a| a.scheme == scheme).unwrap();
        let session_id = [session; 16];
        let signed = tests::gateway_sim::sign_via(
            &mut Via::Events(&gw),
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
    let e = api.sign(parent_shim::grpc_bridge::pb::SignRequest {
        session_id: vec![0x55; 16],
        signing_package: b"x".to_vec(),
    });
    assert_eq!(e.await.unwrap_err().code(), tonic::Code::NotFound);
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

/// `GET /metrics` over plain HTTP/1.0.
fn scrape(address: &str) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(address).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n").unwrap().1.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_over_its_memory_budget_fails_closed() {
    // The enclave is given 1 MiB in all. 9,000 accounts need about 1.09 MB of store (121
    // bytes each): the store's one allocation is refused. 6,000 accounts (0.73 MB) fit, but
    // then the signing engine's session table and replay window do not: the boot fails as
    // named, instead of the enclave aborting on an allocation.
    for (accounts, what) in [(9000, "share store"), (6000, "replay window")] {
        let (c, config) = case_with(&format!("memory-{accounts}"), 7, 7, accounts).await;
        replace_in(&config, "[enclave]\n", "[enclave]\nmemory_budget_mib = 1\n");
        fails_closed(&c, start(&config), what);
    }
}

/// What one gateway attempt ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    /// A signature, verified independently, with answers under the attested key.
    Signed,
    /// A clean refusal while the node was away (no connection, UNAVAILABLE, cut off).
    Away,
    /// Anything else: a wrong signature, an unexpected code, a hang.
    Wrong(String),
}

/// The gateway's loop: connect, attest, sign; on any failure reconnect and re-attest.
async fn keep_calling(
    endpoint: String,
    ca_pem: String,
    client: tests::tls_certs::Pem,
    root: Vec<u8>,
    accounts: Vec<tests::gateway_sim::Account>,
    stop: Arc<AtomicBool>,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let mut session: u128 = 0;
    // What a node that is going or gone looks like from the gateway's side.
    let away = |e: &str| {
        let e = e.to_lowercase();
        ["unavailable", "transport error", "connect", "cancel", "broken pipe", "h2 protocol"]
            .iter()
            .any(|s| e.contains(s))
    };
    while !stop.load(Ordering::Relaxed) {
        let connected = tokio::time::timeout(
            Duration::from_secs(10),
            tests::gateway_sim::connect(&endpoint, &ca_pem, &client),
        )
        .await;
        let Ok(Ok(mut api)) = connected else {
            attempts.push(Attempt::Away);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let key = tokio::time::timeout(
            Duration::from_secs(10),
            tests::gateway_sim::attested_answer_key(&mut api, &root),
        )
        .await;
        let key = match key {
            Ok(Ok(k)) => k,
            Ok(Err(e)) if away(&e) => {
                attempts.push(Attempt::Away);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            other => {
                attempts.push(Attempt::Wrong(format!("attestation: {other:?}")));
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            session += 1;
            let account = &accounts[usize::try_from(session).unwrap() % accounts.len()];
            let id = session.to_be_bytes();
            let signed = tokio::time::timeout(
                Duration::from_secs(20),
                tests::gateway_sim::sign(&mut api, &key, account, id, b"keep calling"),
            )
            .await;
            match signed {
                Ok(Ok(s)) if s.verified => attempts.push(Attempt::Signed),
                Ok(Ok(s)) => attempts.push(Attempt::Wrong(format!("unverified {s:?}"))),
                Ok(Err(e)) if away(&e) => {
                    attempts.push(Attempt::Away);
                    break;
                }
                Ok(Err(e)) => {
                    attempts.push(Attempt::Wrong(e));
                    break;
                }
                Err(_) => {
                    attempts.push(Attempt::Wrong("hung".into()));
                    break;
                }
            }
        }
    }
    attempts
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
async fn an_attestation_with_other_pcrs_is_refused_before_kms_is_asked() {
    let (c, config) = case("parent-pcrs", 7, 7).await;
    let d = c.dir.0.display();
    std::fs::write(
        c.dir.0.join("pcrs.json"),
        format!("{{\"PCR0\": \"{}\"}}", hex::encode([8u8; 48])),
    )
    .unwrap();
    replace_in(
        &config,
        "[attestation]\n",
        &format!("[attestation]\nexpected_pcrs = \"{d}/pcrs.json\"\n"),
    );
    let p = start(&config);
    fails_closed(&c, p, "PCR0");
    assert!(!c.kms.log().iter().any(|l| l.starts_with("Decrypt")), "{:?}", c.kms.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_that_never_answers_fails_closed_at_the_boot_deadline() {
    let (c, config) = case("deadline", 7, 7).await;
    // An "enclave" that starts and then says nothing (no socket, no frame).
    let silent = c.dir.0.join("silent-enclave");
    std::fs::write(&silent, "#!/bin/sh\nexec sleep 600\n").unwrap();
    std::fs::set_permissions(&silent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    replace_in(&config, &enclave_binary().display().to_string(), &silent.display().to_string());
    replace_in(&config, "boot_deadline_secs = 60", "boot_deadline_secs = 2");
    // It would sleep for 10 minutes: only the deadline ends this boot (and kills it).
    let p = start(&config);
    fails_closed(&c, p, "boot_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enclave_killed_mid_session_serves_no_signature() {
    use parent_shim::grpc_bridge::pb;
    let (c, config) = case("mid-session", 7, 7).await;
    let mut p = start(&config);
    let endpoint = grpc_endpoint(&p.wait_for("\"serving\""));
    let client = c.tls.client("gateway").unwrap();
    let mut api = tests::gateway_sim::connect(&endpoint, &c.tls.cert_pem(), &client).await.unwrap();
    let accounts = tests::gateway_sim::load_accounts(&c.dir.0.join("shares")).unwrap();
    let account = accounts.iter().find(|a| a.scheme == wire::Scheme::Ed25519).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let grant = tests::gateway::Grant::new(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_gateway_clients_beyond_the_cap_get_signatures_or_clean_refusals() {
    use parent_shim::grpc_bridge::pb;
    let (c, config) = case("load", 7, 7).await;
    replace_in(&config, "[enclave]\n", "[enclave]\nsession_cap = 3\nmemory_budget_mib = 64\n");
    let mut p = start(&config);
    let endpoint = grpc_endpoint(&p.wait_for("\"serving\""));
    let client = c.tls.client("gateway").unwrap();
    let root = std::fs::read(c.dir.0.join("sim-ca/root.der")).unwrap();
    let accounts = tests::gateway_sim::load_accounts(&c.dir.0.join("shares")).unwrap();
    let mut api = tests::gateway_sim::connect(&endpoint, &c.tls.cert_pem(), &client).await.unwrap();
    let key = tests::gateway_sim::attested_answer_key(&mut api, &root).await.unwrap();
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
