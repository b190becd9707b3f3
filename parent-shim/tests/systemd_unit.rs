//! The systemd unit passes `systemd-analyze verify` (installed by `cargo xtask test`), with
//! `ExecStart` pointed at the binary this test run built; and the check is real: a unit
//! with a bad value or a missing binary does not pass.

use std::path::Path;
use std::process::Command;

fn verify(unit_text: &str, name: &str) -> (bool, String) {
    verify_as(unit_text, name, "parent-shim.service")
}

/// `systemd-analyze verify` of `unit_text` installed as `unit_name`.
fn verify_as(unit_text: &str, name: &str, unit_name: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("unit-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(unit_name);
    std::fs::write(&path, unit_text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze must be installed (cargo xtask test installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success() && stderr.trim().is_empty(), stderr)
}

#[test]
fn the_unit_verifies_and_the_check_catches_mistakes() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/parent-shim.service"),
    )
    .unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("Restart=on-failure"));
    let local =
        unit.replace("/usr/lib/sign-service/parent-shim", env!("CARGO_BIN_EXE_parent-shim"));
    let (ok, stderr) = verify(&local, "good");
    assert!(ok, "{stderr}");
    let (ok, stderr) = verify(&local.replace("Restart=on-failure", "Restart=sometimes"), "bad");
    assert!(!ok && stderr.contains("restart"), "{stderr}");
    let (ok, stderr) = verify(&unit.replace("/usr/lib/sign-service", "/nonexistent"), "missing");
    assert!(!ok && stderr.contains("not executable"), "{stderr}");
}

/// The template for several enclaves per host: each instance has its own configuration,
/// runtime directory and log directory, and is otherwise the single unit, line for line.
#[test]
fn the_template_runs_one_instance_per_configuration() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let single = std::fs::read_to_string(dir.join("parent-shim.service")).unwrap();
    let template = std::fs::read_to_string(dir.join("parent-shim@.service")).unwrap();
    assert!(template.contains("run --config /etc/sign-service/%i.toml"));
    assert!(template.contains("RuntimeDirectory=parent-shim/%i\n"));
    assert!(template.contains("LogsDirectory=sign-service/%i\n"));
    // Every other directive is the single unit's (the hardening is not forked).
    let directives = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains('='))
            .filter(|l| !l.contains("%i") && !l.starts_with("Description="))
            .map(str::to_owned)
            .collect()
    };
    let (a, b) = (directives(&single), directives(&template));
    assert_eq!(a.len(), b.len() + 3, "{a:?}\n{b:?}");
    assert!(b.iter().all(|d| a.contains(d)), "the template drifted from the single unit");
    let local =
        template.replace("/usr/lib/sign-service/parent-shim", env!("CARGO_BIN_EXE_parent-shim"));
    let (ok, stderr) = verify_as(&local, "template", "parent-shim@node-1.service");
    assert!(ok, "{stderr}");
}
