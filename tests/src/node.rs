//! A sign-service node for the end-to-end suites in `tests/tests/` and the soak: a case
//! (shares, sim chain, TLS files, KMS emulator), the parent as a real process with its
//! output lines, and the checks every suite makes (no secret in any output). Each suite
//! uses part of it.

#![allow(missing_docs, clippy::missing_panics_doc, clippy::must_use_candidate)]

use crate::kms_emulator::{KeySpec, KmsConfig, KmsEmulator};
use crate::moto_server::MotoServer;
use crate::share_gen::{GenConfig, SchemeChoice, files};
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The `enclave-rt` binary this test run's cargo built (sim flavour), beside the test's own
/// executable: `<target dir>/<profile>/enclave-rt`, whatever `CARGO_TARGET_DIR` is.
pub fn enclave_binary() -> PathBuf {
    built_binary(
        "enclave-rt",
        &["enclave-rt/src", "enclave-rt/core/src", "wire/src"],
        "cargo build -p enclave-rt --features sim",
    )
}

/// The `parent-shim` binary, found the same way. Outside its own package a test has no
/// `CARGO_BIN_EXE_parent-shim`, and `cargo test -p tests` alone does not rebuild it: a
/// binary older than its sources is refused rather than run.
pub fn parent_binary() -> PathBuf {
    built_binary(
        "parent-shim",
        &["parent-shim/src", "parent-shim/build.rs", "proto", "wire/src"],
        "cargo build -p parent-shim",
    )
}

/// The offline tools' binary (`signservice-offline`), found the same way.
pub fn offline_binary() -> PathBuf {
    built_binary(
        "signservice-offline",
        &["parent-shim/offline/src", "parent-shim/verify/src", "enclave-rt/core/src", "wire/src"],
        "cargo build -p offline-tools",
    )
}

fn built_binary(name: &str, sources: &[&str], command: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // `<target>/<profile>/deps/<test>` -> `<target>/<profile>/<name>`.
    let bin = exe.parent().and_then(Path::parent).expect("a test runs from deps/").join(name);
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap_or_else(|e| {
        panic!("{} is missing ({e}): run `{command}` (cargo xtask test does)", bin.display())
    });
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest = sources.iter().filter_map(|s| newest_change(&root.join(s))).max();
    if let Some((changed, path)) = newest {
        assert!(
            changed <= built,
            "{} is older than {}: run `{command}` (cargo xtask test does)",
            bin.display(),
            path.display()
        );
    }
    bin
}

/// The newest modification time of a Rust or protobuf source under `path` (a file or a
/// directory), with its file: the files cargo rebuilds the binary for.
fn newest_change(path: &Path) -> Option<(SystemTime, PathBuf)> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        let source = path.extension().is_some_and(|e| e == "rs" || e == "proto");
        return source.then_some((meta.modified().ok()?, path.to_owned()));
    }
    std::fs::read_dir(path).ok()?.flatten().filter_map(|e| newest_change(&e.path())).max()
}

pub struct Case {
    pub dir: crate::cms_openssl::Workdir,
    pub kms: KmsEmulator,
    pub identity: String,
    pub share_strings: Vec<String>,
    /// The CA of the parent's gRPC certificate and of the gateway's client certificates.
    pub tls: crate::tls_certs::Ca,
    /// What the gateway pins: the PCR0 the enclave reports.
    pub pcrs: crate::gateway_sim::PcrPolicy,
}

/// Shares, a sim chain, TLS files and a KMS key whose policy wants PCR0 = `policy_pcr0`
/// while the enclave reports `actual_pcr0`; the identity sealed under it.
pub async fn case(name: &str, policy_pcr0: u8, actual_pcr0: u8) -> (Case, PathBuf) {
    case_with(name, policy_pcr0, actual_pcr0, 20).await
}

/// The same with `accounts` accounts.
pub async fn case_with(
    name: &str,
    policy_pcr0: u8,
    actual_pcr0: u8,
    accounts: u64,
) -> (Case, PathBuf) {
    let dir = crate::cms_openssl::workdir(&format!("daemon-{name}"));
    let shares = dir.0.join("shares");
    let config = GenConfig::new(accounts, SchemeChoice::Both, 2, 2);
    crate::share_gen::generate_for_tests(config, &shares);
    // The demo publisher's seed, as the operator keeps it (owner-only), for the tools.
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.0.join("publisher.key"))
            .unwrap();
        writeln!(f, "{}", hex::encode(crate::gateway::publisher().to_bytes())).unwrap();
    }
    let ca = crate::sim_ca::generate().unwrap();
    crate::sim_ca::write(&ca, &dir.0.join("sim-ca")).unwrap();
    let kms = KmsEmulator::start(KmsConfig {
        keys: vec![KeySpec {
            key_id: "k".into(),
            recipient_pcrs: [(0, vec![policy_pcr0; 48])].into(),
            policy: None,
        }],
        attestation: crate::kms_emulator::pinned_root(ca.root_der.clone()),
    })
    .await
    .unwrap();
    let identity = std::fs::read_to_string(shares.join(files::IDENTITY)).unwrap().trim().to_owned();
    let sealed = crate::kms_emulator::encrypt_with_sdk(&kms.endpoint(), "k", identity.as_bytes())
        .await
        .unwrap();
    std::fs::write(shares.join("identity.kms"), sealed).unwrap();
    let tls = crate::tls_certs::Ca::new("ca").unwrap();
    let server = tls.server().unwrap();
    std::fs::write(dir.0.join("ca.pem"), tls.cert_pem()).unwrap();
    std::fs::write(dir.0.join("server.pem"), &server.cert).unwrap();
    std::fs::write(dir.0.join("server.key"), &server.key).unwrap();
    let gateway_key = hex::encode(crate::gateway::gateway().verifying_key().to_bytes());
    let publisher_key = hex::encode(crate::gateway::publisher().verifying_key().to_bytes());
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
publisher_key = "{publisher_key}"
boot_deadline_secs = 60

[shares]
share_file = "file://{d}/shares/service_key_shares.json.age"
sealed_identity = "file://{d}/shares/identity.kms"

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
    let pcrs = crate::gateway_sim::PcrPolicy::Pinned([(0, vec![actual_pcr0; 48])].into());
    (Case { dir, kms, identity, share_strings: shares_json, tls, pcrs }, path)
}

pub struct Parent {
    pub child: Child,
    pub lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

pub fn start(config: &Path) -> Parent {
    start_with(config, None)
}

pub fn start_with(config: &Path, notify_socket: Option<&Path>) -> Parent {
    let env: Vec<(&str, String)> =
        notify_socket.map(|s| ("NOTIFY_SOCKET", s.display().to_string())).into_iter().collect();
    start_with_env(config, &env)
}

pub fn start_with_env(config: &Path, env: &[(&str, String)]) -> Parent {
    let mut command = Command::new(parent_binary());
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
    pub fn wait_for(&mut self, needle: &str) -> String {
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
    pub fn seen_or_wait_for(&mut self, needle: &str) -> String {
        match self.seen.iter().find(|l| l.contains(needle)) {
            Some(l) => l.clone(),
            None => self.wait_for(needle),
        }
    }

    pub fn exit_code(&mut self) -> Option<i32> {
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

    /// The pid of the first enclave this parent started (as seen so far).
    pub fn enclave_pid(&self) -> u32 {
        self.enclave_pids().next().expect("an enclave_started line with a pid")
    }

    /// The pids of the enclaves this parent said it started, from its `enclave_started`
    /// lines seen so far.
    fn enclave_pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.seen.iter().filter(|l| l.contains("\"enclave_started\"")).filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            u32::try_from(v["pid"].as_u64()?).ok()
        })
    }
}

impl Drop for Parent {
    /// Kills the parent, then every enclave it started that is still running. The product
    /// leaves an enclave behind a killed parent on purpose, for the next parent to end
    /// (tested); a test has no next parent, and without this each suite run left about a
    /// dozen enclaves running. Its own `enclave_started` lines, not the pid file a
    /// successor in the same directory may already have rewritten.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen.extend(self.lines.try_iter());
        for pid in self.enclave_pids() {
            // Still that enclave (not a zombie, not a reused pid).
            if program_of(pid).is_some_and(|p| p.ends_with("enclave-rt")) {
                let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            }
        }
    }
}

/// The program a running process was started as (its `argv[0]`); `None` for a zombie or
/// a pid that is gone.
pub fn program_of(pid: u32) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv0 = cmdline.split(|b| *b == 0).next().filter(|a| !a.is_empty())?;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(argv0)))
}

pub fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by a dead parent) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split(' ').nth(2).is_none_or(|state| state != "Z"))
}

pub fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "the enclave (pid {pid}) is still running");
}

/// Nothing secret in what the parent printed or in the files it wrote.
pub fn no_secrets(c: &Case, p: &Parent) {
    let out = p.seen.join("\n");
    let key_body = &c.identity["AGE-SECRET-KEY-1".len()..];
    assert!(!out.contains(key_body), "the age identity reached the output");
    for s in &c.share_strings {
        assert!(!out.contains(s.as_str()), "a share reached the output");
    }
    // No run directory: no enclave was ever launched.
    let written = std::fs::read_dir(c.dir.0.join("run")).into_iter().flatten();
    for entry in written {
        let path = entry.unwrap().path();
        if let Ok(bytes) = std::fs::read(&path) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(key_body), "{} holds the identity", path.display());
            assert!(!text.contains("AGE-SECRET-KEY"), "{}", path.display());
        }
    }
}

/// Runs a case that must fail at boot: an alert naming `reason_text`, exit 1, the enclave
/// gone, no `serving` line.
pub fn fails_closed(c: &Case, mut p: Parent, reason_text: &str) {
    let alert = p.wait_for("\"alert\"");
    assert!(alert.contains(reason_text), "{alert}");
    assert_eq!(p.exit_code(), Some(1), "{}", p.seen.join("\n"));
    assert!(!p.seen.iter().any(|l| l.contains("\"serving\"")));
    wait_gone(p.enclave_pid());
    no_secrets(c, &p);
}

/// Runs a case that the parent must refuse before it starts any enclave: a `fetch_failed`
/// alert naming `why`, exit 1, no enclave, and KMS never asked to decrypt.
pub fn refused_before_launch(c: &Case, mut p: Parent, why: &str) {
    let alert = p.wait_for("\"alert\"");
    assert!(alert.contains("fetch_failed") && alert.contains(why), "{alert}");
    assert_eq!(p.exit_code(), Some(1));
    assert!(!p.seen.iter().any(|l| l.contains("enclave_started") || l.contains("\"serving\"")));
    assert!(!c.kms.log().iter().any(|l| l.starts_with("Decrypt")), "{:?}", c.kms.log());
    no_secrets(c, &p);
}

/// Adds a section to a case's configuration.
pub fn append(config: &Path, section: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, text + section).unwrap();
}

/// A gateway health endpoint (its own server CA) that the node of `config` reports to
/// every second: the `[gateway]` section added, the CA written beside the config.
pub async fn report_health(
    c: &Case,
    config: &Path,
) -> (crate::tls_certs::Ca, crate::gateway_health::HealthEndpoint) {
    let gateway_ca = crate::tls_certs::Ca::new("gateway server CA").unwrap();
    let endpoint = crate::gateway_health::HealthEndpoint::start(&gateway_ca).await.unwrap();
    std::fs::write(c.dir.0.join("gateway-ca.pem"), gateway_ca.cert_pem()).unwrap();
    let section = format!(
        "\n[gateway]\nhealth_url = \"{}\"\nca = \"{}\"\ninterval_secs = 1\n",
        endpoint.url(),
        c.dir.0.join("gateway-ca.pem").display()
    );
    append(config, &section);
    (gateway_ca, endpoint)
}

/// Edits the config file in place: every `from` becomes `to`.
pub fn replace_in(config: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, text.replace(from, to)).unwrap();
}

/// Moves the case's inputs into S3 (moto on loopback) and points the config there; the
/// manifest goes next to the share file, where the parent looks for it by default.
pub async fn via_s3(c: &Case, config: &Path, moto: &MotoServer, upload_share_file: bool) {
    let shares = c.dir.0.join("shares");
    if upload_share_file {
        let bytes = std::fs::read(shares.join(files::SHARES)).unwrap();
        moto.put_object("signservice-inputs", "prod/shares.age", bytes, &[]).await.unwrap();
        let manifest = std::fs::read(shares.join(files::MANIFEST)).unwrap();
        moto.put_object("signservice-inputs", "prod/shares.age.manifest", manifest, &[])
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

pub fn with_cloudwatch(config: &Path, moto: &MotoServer, group: &str) {
    let cw = format!(
        "\n[cloudwatch]\nlog_group = \"{group}\"\nlog_stream = \"node-1\"\nendpoint = \"{}\"\n\
         access_key_id = \"AKIDLOCAL\"\nsecret_access_key = \"local-secret\"\nflush_interval_ms = 200\n",
        moto.endpoint()
    );
    append(config, &cw);
}

/// A stand-in `nitro-cli`: records its arguments and answers as the real one does.
/// `run_exit` 0 prints an enclave description; anything else prints `stderr` and fails.
/// Before `run-enclave`, `describe-enclaves` lists `before` (JSON array elements).
pub fn stub_nitro_cli(dir: &Path, run_exit: i32, stderr: &str) -> PathBuf {
    stub_nitro_cli_with(dir, run_exit, stderr, "")
}

pub fn stub_nitro_cli_with(dir: &Path, run_exit: i32, stderr: &str, before: &str) -> PathBuf {
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
pub fn nitro_config(c: &Case, config: &Path, nitro_cli: &Path) {
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

pub fn reencrypt(c: &Case, identity: &Path, out: &Path) -> std::process::Output {
    reencrypt_with(c, &c.dir.0.join("shares").join(files::SHARES), identity, out, &[])
}

/// `signservice-offline reencrypt` of `share_file` with more arguments.
pub fn reencrypt_with(
    c: &Case,
    share_file: &Path,
    identity: &Path,
    out: &Path,
    more: &[&str],
) -> std::process::Output {
    Command::new(offline_binary())
        .args(["reencrypt", "--share-file"])
        .arg(share_file)
        .args(more)
        .arg("--identity-file")
        .arg(identity)
        .arg("--out-dir")
        .arg(out)
        .arg("--publisher-key")
        .arg(c.dir.0.join("publisher.key"))
        .args(["--kms-key-id", "k", "--kms-endpoint", &c.kms.endpoint()])
        .env("AWS_ACCESS_KEY_ID", "AKIDOPERATOR")
        .env("AWS_SECRET_ACCESS_KEY", "operator-secret")
        .output()
        .unwrap()
}

/// A case whose enclave subscribes to the session events of a gateway endpoint (its
/// `/v1/events`, answers to `/v1/answers`), with a relay allowing that endpoint's
/// `allowed_path` prefix on loopback.
pub async fn with_session_events(
    name: &str,
    allowed_path: &str,
) -> (crate::gateway_health::HealthEndpoint, Case, PathBuf) {
    let (c, config) = case(name, 7, 7).await;
    let gw = add_session_events(&c, &config, allowed_path).await;
    (gw, c, config)
}

/// Starts a gateway endpoint and points `config`'s enclave at its session events, with a
/// relay allowing its `allowed_path` prefix on loopback.
pub async fn add_session_events(
    c: &Case,
    config: &Path,
    allowed_path: &str,
) -> crate::gateway_health::HealthEndpoint {
    let gateway_ca = crate::tls_certs::Ca::new("gateway server CA").unwrap();
    let gw = crate::gateway_health::HealthEndpoint::start(&gateway_ca).await.unwrap();
    std::fs::write(c.dir.0.join("gateway-ca.pem"), gateway_ca.cert_pem()).unwrap();
    let base = gw.base();
    replace_in(
        config,
        "[enclave]\n",
        &format!(
            "[enclave]\nevents_url = \"{base}/v1/events\"\nanswers_url = \"{base}/v1/answers\"\n"
        ),
    );
    append(
        config,
        &format!(
            "\n[relay]\nallow = [\"{base}{allowed_path}\"]\nnetworks = [\"127.0.0.0/8\", \"::1/128\"]\nca = \"{}\"\n",
            c.dir.0.join("gateway-ca.pem").display()
        ),
    );
    gw
}

/// The gRPC endpoint a `serving` line announces.
pub fn grpc_endpoint(serving: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(serving).unwrap();
    format!("https://{}", v["listen"].as_str().unwrap())
}

/// `GET /metrics` over plain HTTP/1.0.
pub fn scrape(address: &str) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(address).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// What one gateway attempt ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A signature, verified independently, with answers under the attested key.
    Signed,
    /// A clean refusal while the node was away (no connection, UNAVAILABLE, cut off).
    Away,
    /// Anything else: a wrong signature, an unexpected code, a hang.
    Wrong(String),
}

/// The gateway's loop: connect, attest, sign; on any failure reconnect and re-attest.
pub async fn keep_calling(
    endpoint: String,
    ca_pem: String,
    client: crate::tls_certs::Pem,
    root: Vec<u8>,
    pcrs: crate::gateway_sim::PcrPolicy,
    accounts: Vec<crate::gateway_sim::Account>,
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
            crate::gateway_sim::connect(&endpoint, &ca_pem, &client),
        )
        .await;
        let Ok(Ok(mut api)) = connected else {
            attempts.push(Attempt::Away);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let key = tokio::time::timeout(
            Duration::from_secs(10),
            crate::gateway_sim::attested_answer_key(&mut api, &root, &pcrs),
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
                crate::gateway_sim::sign(&mut api, &key, account, id, b"keep calling"),
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
