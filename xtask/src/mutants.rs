//! `cargo xtask mutants`: mutation testing of the modules on the trust chain with
//! `cargo-mutants` (pinned, installed into the tool cache). Each module is tested with the
//! test targets that exercise it ([`MODULES`]), in a scratch copy of the workspace kept
//! warm between sweeps ([`ScratchTree`]); its outcome
//! (mutants, caught, missed, timeout, unviable, each missed mutant, the source's SHA-256 it
//! was measured on) is kept in `docs/mutants.json` and rendered into `docs/mutants.md`.
//! `--check` refuses a stale document: a section that differs from the records, or a record
//! whose module has changed since its sweep.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use crate::generated_section;
use crate::run::{Failure, Result, cargo, run, sha256_hex};
use crate::setup;

/// The `cargo-mutants` release the task runs.
pub(crate) const CARGO_MUTANTS: &str = "27.1.0";

/// The module the test run's smoke pass mutates (a few of its mutants, into a scratch
/// directory): small, dependency-free, quick to build.
const SMOKE_MODULE: &str = "wire/src/frame.rs";

/// One module on the trust chain: its file, its package, the features its tests need, and
/// the test targets that exercise it (cheaper than the whole suite behind every mutant).
pub(crate) struct Module {
    pub(crate) file: &'static str,
    package: &'static str,
    features: &'static str,
    /// Other packages whose tests also run (`--test-package`), with the mutated one.
    test_packages: &'static [&'static str],
    /// `cargo test` arguments: the targets.
    targets: &'static [&'static str],
}

const CORE: &str = "enclave-core";
const LOADER_TESTS: &[&str] =
    &["--lib", "--test", "share_loader", "--test", "boot_state_machine", "--test", "fuzz_smoke"];
const SERVING_TESTS: &[&str] = &["--lib", "--test", "serving"];
const AGE_TESTS: &[&str] = &[
    "--lib",
    "--test",
    "age_cctv",
    "--test",
    "age_differential",
    "--test",
    "share_loader",
    "--test",
    "fuzz_smoke",
];

/// Every module of the sweep, in the order the issue lists them.
pub(crate) const MODULES: &[Module] = &[
    wire_module("wire/src/codec.rs"),
    wire_module("wire/src/frame.rs"),
    wire_module("wire/src/decoder.rs"),
    wire_module("wire/src/session_signatures.rs"),
    core_module(
        "enclave-rt/core/src/kms_unseal.rs",
        &["--lib", "--test", "kms_unseal", "--test", "age_differential"],
    ),
    core_module(
        "enclave-rt/core/src/ber.rs",
        &["--lib", "--test", "kms_unseal", "--test", "fuzz_smoke"],
    ),
    core_module("enclave-rt/core/src/age_header.rs", AGE_TESTS),
    core_module("enclave-rt/core/src/age_decryptor.rs", AGE_TESTS),
    core_module(
        "enclave-rt/core/src/age_identity.rs",
        &["--lib", "--test", "age_differential", "--test", "kms_unseal", "--test", "age_cctv"],
    ),
    core_module("enclave-rt/core/src/share_json.rs", LOADER_TESTS),
    core_module(
        "enclave-rt/core/src/share_format.rs",
        &["--lib", "--test", "share_loader", "--test", "signing_engine", "--test", "fuzz_smoke"],
    ),
    core_module("enclave-rt/core/src/share_loader.rs", LOADER_TESTS),
    core_module("enclave-rt/core/src/share_store.rs", LOADER_TESTS),
    core_module(
        "enclave-rt/core/src/boot_state_machine.rs",
        &["--lib", "--test", "boot_state_machine", "--test", "serving"],
    ),
    core_module(
        "enclave-rt/core/src/signing_engine.rs",
        &["--lib", "--test", "signing_engine", "--test", "serving"],
    ),
    core_module("enclave-rt/core/src/serving.rs", SERVING_TESTS),
    core_module("enclave-rt/core/src/audit_chain.rs", SERVING_TESTS),
    core_module("enclave-rt/core/src/trusted_time.rs", SERVING_TESTS),
    core_module("enclave-rt/core/src/enclave_args.rs", &["--lib", "--test", "enclave_args"]),
    verify_module("parent-shim/verify/src/attestation_verifier.rs"),
    verify_module("parent-shim/verify/src/relying_party.rs"),
    verify_module("parent-shim/verify/src/share_manifest.rs"),
    verify_module("parent-shim/verify/src/audit_trail.rs"),
    verify_module("parent-shim/verify/src/pcrs_file.rs"),
];

const fn wire_module(file: &'static str) -> Module {
    Module { file, package: "wire", features: "fuzzing", test_packages: &[], targets: &[] }
}

const fn core_module(file: &'static str, targets: &'static [&'static str]) -> Module {
    Module { file, package: CORE, features: "fuzzing", test_packages: &[], targets }
}

/// The verifier's behaviour is tested where the parent and the relying party use it.
const fn verify_module(file: &'static str) -> Module {
    Module {
        file,
        package: "node-verify",
        features: "",
        test_packages: &["parent-shim"],
        targets: &["--lib", "--test", "attestation_verifier"],
    }
}

/// What one sweep of a module found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    caught: Vec<String>,
    missed: Vec<String>,
    timeout: Vec<String>,
    unviable: Vec<String>,
}

impl Outcome {
    /// The outcome in `out/mutants.out` (one mutant a line in each list).
    fn read(out: &Path) -> Result<Self> {
        let list = |name: &str| -> Result<Vec<String>> {
            let path = out.join("mutants.out").join(name);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
            Ok(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect())
        };
        Ok(Self {
            caught: list("caught.txt")?,
            missed: list("missed.txt")?,
            timeout: list("timeout.txt")?,
            unviable: list("unviable.txt")?,
        })
    }

    fn viable(&self) -> usize {
        self.caught.len() + self.missed.len() + self.timeout.len()
    }
}

/// `cargo xtask mutants [--module PATH]... [--shard k/n] | --module PATH --recheck |
/// --check | --write | --smoke`.
pub(crate) fn task(root: &Path, rest: &[&str]) -> Result {
    match rest {
        ["--check"] => render(root, true),
        ["--write"] => render(root, false),
        ["--smoke"] => smoke(root),
        ["--module", path, "--recheck"] => {
            recheck(root, &install()?, module(path)?)?;
            render(root, false)
        }
        _ => {
            let (modules, shard) = parse(rest)?;
            let bin = install()?;
            for m in modules {
                sweep(root, &bin, m, shard)?;
            }
            render(root, false)
        }
    }
}

fn parse<'a>(rest: &[&'a str]) -> Result<(Vec<&'static Module>, Option<&'a str>)> {
    const USAGE: &str = "usage: cargo xtask mutants [--module PATH]... [--shard k/n] | --module PATH --recheck | --check | --write | --smoke";
    let mut modules = Vec::new();
    let mut shard = None;
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        match (*flag, it.next()) {
            ("--module", Some(path)) => modules.push(module(path)?),
            ("--shard", Some(s)) => shard = Some(*s),
            _ => return Err(Failure(USAGE.into())),
        }
    }
    if shard.is_some() && modules.len() != 1 {
        return Err(Failure("--shard takes one --module (a shard of its mutants)".into()));
    }
    if modules.is_empty() {
        modules = MODULES.iter().collect();
    }
    Ok((modules, shard))
}

fn module(path: &str) -> Result<&'static Module> {
    MODULES.iter().find(|m| m.file == path).ok_or_else(|| {
        Failure(format!("{path} is not a module of the sweep (xtask/src/mutants.rs)"))
    })
}

/// `cargo-mutants` [`CARGO_MUTANTS`] in the tool cache (built once per machine).
fn install() -> Result<PathBuf> {
    let root = setup::cache_dir()?.join(format!("cargo-mutants-{CARGO_MUTANTS}"));
    let bin = root.join("bin").join("cargo-mutants");
    if !bin.exists() {
        run(cargo()
            .args(["install", "--locked", "cargo-mutants", "--version", CARGO_MUTANTS, "--root"])
            .arg(&root))?;
    }
    Ok(bin)
}

/// The tests read `../shared/vectors`; the copy `cargo-mutants` tests is elsewhere, so
/// they are told where the vectors are.
/// `SIGN_SERVICE_VECTORS` if set (a checkout elsewhere), else beside the checkout.
fn vectors(root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("SIGN_SERVICE_VECTORS") {
        return PathBuf::from(dir);
    }
    root.join("../shared/vectors").canonicalize().unwrap_or_else(|_| root.join("../shared/vectors"))
}

/// A scratch copy of the checkout that `cargo-mutants` mutates in place: its `target`
/// survives between sweeps, so a sweep starts from a warm build instead of rebuilding the
/// workspace in a fresh copy (minutes on these machines). Each package has [`COPIES`]
/// copies, each held locked while a sweep runs in it: two sweeps of one package run side
/// by side in two copies (the second copy's first build is a full one), a third waits.
struct ScratchTree {
    dir: PathBuf,
    _lock: std::fs::File,
}

/// Copies of the scratch tree per package: two, for these 2-core machines.
const COPIES: usize = 2;

impl ScratchTree {
    /// A free copy for `package`, made identical to the checkout's files (tracked and
    /// untracked, ignored ones left out). A file whose bytes differ is rewritten, and so
    /// gets a fresh mtime: a tree left mutated by an interrupted run is restored and rebuilt,
    /// never taken as fresh by cargo.
    fn sync(root: &Path, package: &str) -> Result<Self> {
        let base = setup::cache_dir()?.join("mutants-tree");
        std::fs::create_dir_all(&base)?;
        let name = |i: usize| if i == 0 { package.to_owned() } else { format!("{package}.{i}") };
        let mut free = None;
        for i in 0..COPIES {
            let lock = std::fs::File::create(base.join(format!("{}.lock", name(i))))?;
            if lock.try_lock().is_ok() {
                free = Some((name(i), lock));
                break;
            }
        }
        let (name, lock) = match free {
            Some(found) => found,
            None => {
                eprintln!("waiting for a sweep of {package} to end (in {})", base.display());
                let lock = std::fs::File::create(base.join(format!("{package}.lock")))?;
                lock.lock()?;
                (package.to_owned(), lock)
            }
        };
        let dir = base.join(name);
        let listed = std::process::Command::new("git")
            .current_dir(root)
            .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
            .output()?;
        if !listed.status.success() {
            return Err(Failure("git ls-files failed".into()));
        }
        let files: std::collections::BTreeSet<PathBuf> = listed
            .stdout
            .split(|b| *b == 0)
            .filter(|f| !f.is_empty())
            .map(|f| PathBuf::from(String::from_utf8_lossy(f).into_owned()))
            .filter(|f| root.join(f).is_file())
            .collect();
        remove_unlisted(&dir, &dir, &files)?;
        for f in &files {
            let (from, to) = (root.join(f), dir.join(f));
            let bytes = std::fs::read(&from)?;
            if std::fs::read(&to).ok().as_deref() != Some(bytes.as_slice()) {
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&to, &bytes)?;
                std::fs::set_permissions(&to, std::fs::metadata(&from)?.permissions())?;
            }
        }
        Ok(Self { dir, _lock: lock })
    }
}

/// Removes what the checkout does not list from the tree, keeping its build (`target`).
fn remove_unlisted(tree: &Path, dir: &Path, files: &std::collections::BTreeSet<PathBuf>) -> Result {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries {
        let path = entry?.path();
        let rel = path.strip_prefix(tree).map_err(|e| Failure(e.to_string()))?;
        if rel == Path::new("target") {
            continue;
        }
        if path.is_dir() && !path.is_symlink() {
            remove_unlisted(tree, &path, files)?;
            if std::fs::read_dir(&path)?.next().is_none() {
                std::fs::remove_dir(&path)?;
            }
        } else if !files.contains(rel) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Runs `cargo-mutants` over `m` (or one shard of its mutants, or only the mutants named in
/// `only`) into `out`, in the package's scratch tree.
fn mutate(
    root: &Path,
    bin: &Path,
    m: &Module,
    (shard, only): (Option<&str>, &[String]),
    out: &Path,
) -> Result {
    let tree = ScratchTree::sync(root, m.package)?;
    let mut cmd = std::process::Command::new(bin);
    cmd.current_dir(&tree.dir)
        .env("SIGN_SERVICE_VECTORS", vectors(root))
        .args(["mutants", "--in-place", "--no-shuffle", "--colors", "never"])
        .args(["--package", m.package, "--file", m.file])
        // Test timeouts from the baseline, generous for these noisy 2-core machines.
        .args(["--timeout-multiplier", "3", "--minimum-test-timeout", "60"])
        .arg("--output")
        .arg(out);
    if !m.features.is_empty() {
        cmd.args(["--features", m.features]);
    }
    for p in m.test_packages {
        cmd.args(["--test-package", p]);
    }
    if !m.test_packages.is_empty() {
        cmd.args(["--test-package", m.package]);
    }
    if let Some(s) = shard {
        cmd.args(["--shard", s]);
    }
    for name in only {
        cmd.arg("--re").arg(format!("^{}$", regex_escape(name)));
    }
    // The dependencies optimized (the scratch copy's own build, never the checkout's): the
    // suites spend most of their time in RSA, FROST and X25519, and every mutant runs them.
    // The mutated crate itself stays unoptimized, with its debug assertions.
    cmd.arg("--cargo-arg=--config=profile.dev.package.\"*\".opt-level=2");
    // The targets go to every cargo command, the build as well as the test: a mutant then
    // links only the test binaries that run (half of a core mutant's build time).
    for t in m.targets {
        cmd.arg(format!("--cargo-arg={t}"));
    }
    // cargo-mutants exits 2 when it found missed mutants and 3 on timeouts: results, not
    // failures of the task. Anything else is.
    eprintln!("$ {cmd:?}");
    let status = cmd.status()?;
    match status.code() {
        Some(0 | 2 | 3) => Ok(()),
        _ => Err(Failure(format!("cargo-mutants on {} failed: {status}", m.file))),
    }
}

/// One module swept (all of it, or a shard merged into its record) and recorded.
fn sweep(root: &Path, bin: &Path, m: &Module, shard: Option<&str>) -> Result {
    let out = std::env::temp_dir().join(format!("sign-service-mutants-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    // The code as it is swept: the checkout may change while the sweep runs.
    let source = source_sha256(root, m.file)?;
    let started = Instant::now();
    mutate(root, bin, m, (shard, &[]), &out)?;
    let outcome = Outcome::read(&out)?;
    let seconds = started.elapsed().as_secs();
    let _ = std::fs::remove_dir_all(&out);
    let _guard = lock_records()?;
    let mut records = read_records(root)?;
    let mut record = json!({
        "source_sha256": source,
        "package": m.package,
        "targets": m.targets.join(" "),
        "caught": outcome.caught.len(),
        "missed": outcome.missed,
        "timeout": outcome.timeout.len(),
        "unviable": outcome.unviable.len(),
        "seconds": seconds,
        "cargo_mutants": CARGO_MUTANTS,
        "shards": shard.map_or_else(Vec::new, |s| vec![s.to_owned()]),
    });
    // A shard adds to the record of the same source; any other record is replaced.
    if let (Some(s), Some(old)) = (shard, records.get(m.file))
        && old["source_sha256"] == source
        && !old["shards"].as_array().is_some_and(|a| a.iter().any(|x| x == s))
    {
        record = merge_shard(old, &record);
    }
    eprintln!(
        "{}: {} mutants, {} caught, {} missed, {} timeout, {} unviable in {seconds} s",
        m.file,
        outcome.viable() + outcome.unviable.len(),
        outcome.caught.len(),
        outcome.missed.len(),
        outcome.timeout.len(),
        outcome.unviable.len()
    );
    records.insert(m.file.to_owned(), record);
    write_records(root, &records)
}

/// A shard's record added to the record of the shards swept before it (same source): counts
/// and times summed, missed mutants and shard names joined, a recheck's count kept.
fn merge_shard(old: &Value, shard: &Value) -> Value {
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let joined = |k: &str| {
        let mut all: Vec<Value> = old[k].as_array().cloned().unwrap_or_default();
        all.extend(shard[k].as_array().into_iter().flatten().cloned());
        json!(all)
    };
    let mut record = shard.clone();
    for k in ["caught", "timeout", "unviable", "seconds"] {
        record[k] = json!(n(old, k) + n(shard, k));
    }
    if n(old, "rechecked") > 0 {
        record["rechecked"] = json!(n(old, "rechecked"));
    }
    record["missed"] = joined("missed");
    record["shards"] = joined("shards");
    record
}

/// Tests added since a module's sweep can only catch more of its mutants, never fewer: this
/// runs again only the mutants its record lists as missed and not equivalent, on the same
/// code (the record's source hash), and moves those now caught into its counts. The record
/// notes how many were caught this way.
fn recheck(root: &Path, bin: &Path, m: &Module) -> Result {
    let old = read_records(root)?
        .get(m.file)
        .cloned()
        .ok_or_else(|| Failure(format!("{}: no sweep to recheck", m.file)))?;
    if old["source_sha256"] != source_sha256(root, m.file)?.as_str() {
        return Err(Failure(format!(
            "{}: the code changed since its sweep: sweep it again (--module)",
            m.file
        )));
    }
    let equivalent = equivalent(&std::fs::read_to_string(root.join(DOC))?);
    let missed: Vec<String> = old["missed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let (kept, open): (Vec<String>, Vec<String>) =
        missed.into_iter().partition(|x| equivalent.contains(x));
    if open.is_empty() {
        eprintln!("{}: nothing missed to recheck", m.file);
        return Ok(());
    }
    let out = std::env::temp_dir().join(format!("sign-service-mutants-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let started = Instant::now();
    mutate(root, bin, m, (None, &open), &out)?;
    let outcome = Outcome::read(&out)?;
    let _ = std::fs::remove_dir_all(&out);
    // Only the mutants asked for count: the name filter may also select one whose name it
    // matches; one asked for and not run stays missed.
    let caught: Vec<&String> = outcome.caught.iter().filter(|x| open.contains(x)).collect();
    let timeout: Vec<&String> = outcome.timeout.iter().filter(|x| open.contains(x)).collect();
    let still: Vec<&String> =
        open.iter().filter(|x| !caught.contains(x) && !timeout.contains(x)).collect();
    let n = |k: &str| old[k].as_u64().unwrap_or(0);
    let newly = (caught.len() + timeout.len()) as u64;
    let mut record = old.clone();
    record["caught"] = json!(n("caught") + caught.len() as u64);
    record["timeout"] = json!(n("timeout") + timeout.len() as u64);
    record["missed"] = json!(kept.iter().chain(still.iter().copied()).collect::<Vec<_>>());
    record["rechecked"] = json!(n("rechecked") + newly);
    record["seconds"] = json!(n("seconds") + started.elapsed().as_secs());
    eprintln!(
        "{}: rechecked {} missed mutants: {} now caught, {} still missed",
        m.file,
        open.len(),
        newly,
        still.len()
    );
    // The records as they are now: other sweeps may have written theirs meanwhile.
    let _guard = lock_records()?;
    let mut records = read_records(root)?;
    records.insert(m.file.to_owned(), record);
    write_records(root, &records)
}

/// Held while the records are read, changed and written: sweeps running side by side each
/// add their module without losing the others'.
fn lock_records() -> Result<std::fs::File> {
    let dir = setup::cache_dir()?.join("mutants-tree");
    std::fs::create_dir_all(&dir)?;
    let lock = std::fs::File::create(dir.join("records.lock"))?;
    lock.lock()?;
    Ok(lock)
}

/// `name` as a regular expression that matches only itself.
fn regex_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

const RECORDS: &str = "docs/mutants.json";
const DOC: &str = "docs/mutants.md";
const COMMAND: &str = "cargo xtask mutants";

fn read_records(root: &Path) -> Result<BTreeMap<String, Value>> {
    let path = root.join(RECORDS);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).map_err(|e| Failure(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(Failure(format!("{}: {e}", path.display()))),
    }
}

fn write_records(root: &Path, records: &BTreeMap<String, Value>) -> Result {
    let text = serde_json::to_string_pretty(records).map_err(|e| Failure(e.to_string()))?;
    std::fs::write(root.join(RECORDS), text + "\n")?;
    Ok(())
}

/// The mutants the document calls equivalent (no test can tell them from the original),
/// from its hand-written list: `- `mutant` — reason` lines under "## Equivalent mutants".
fn equivalent(doc: &str) -> Vec<String> {
    let Some(list) = doc.split("## Equivalent mutants").nth(1) else { return Vec::new() };
    list.lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("- `")?.split('`').next().map(str::to_owned))
        .collect()
}

/// The generated section from the records, or with `check`, whether it is current.
fn render(root: &Path, check: bool) -> Result {
    let records = read_records(root)?;
    let doc = std::fs::read_to_string(root.join(DOC))?;
    let equivalent = equivalent(&doc);
    let mut stale = Vec::new();
    let mut table = String::from(
        "| module | tests run for each mutant | mutants | caught | missed | equivalent | timeout | unviable | caught of viable | time |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut missed_lists = String::new();
    for m in MODULES {
        let Some(r) = records.get(m.file) else {
            let _ =
                writeln!(table, "| `{}` | {} | not swept yet | | | | | | | |", m.file, targets(m));
            continue;
        };
        let source = source_sha256(root, m.file).unwrap_or_default();
        if r["source_sha256"] != source.as_str() {
            stale.push(m.file);
        }
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        let missed: Vec<&str> =
            r["missed"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let eq = missed.iter().filter(|x| equivalent.iter().any(|e| e == *x)).count() as u64;
        let (caught, timeout, unviable) = (n("caught"), n("timeout"), n("unviable"));
        let total = caught + missed.len() as u64 + timeout + unviable;
        // Timeouts count as caught (the tests noticed: they never finished); equivalent
        // mutants leave the denominator.
        let viable = caught + timeout + missed.len() as u64 - eq;
        // Per mille, rounded down: 89.99% must not print as 90.0%.
        let permille = ((caught + timeout) * 1000).checked_div(viable).unwrap_or(1000);
        let score = format!("{}.{}", permille / 10, permille % 10);
        let rechecked = n("rechecked");
        let caught_cell = if rechecked > 0 {
            format!("{caught} ({rechecked} on recheck)")
        } else {
            caught.to_string()
        };
        let shards: Vec<&str> =
            r["shards"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let partial = if shards.is_empty() || all_shards(&shards) {
            String::new()
        } else {
            format!(" ({} shard(s) only)", shards.len())
        };
        let _ = writeln!(
            table,
            "| `{}` | {} | {total}{partial} | {caught_cell} | {} | {eq} | {timeout} | {unviable} | {score}% | {} min |",
            m.file,
            targets(m),
            missed.len(),
            n("seconds").div_ceil(60),
        );
        let open: Vec<&&str> =
            missed.iter().filter(|x| !equivalent.iter().any(|e| e == **x)).collect();
        if !open.is_empty() {
            let _ = write!(
                missed_lists,
                "\nMissed in `{}` (not yet caught nor shown equivalent):\n\n",
                m.file
            );
            for x in open {
                let _ = writeln!(missed_lists, "- `{x}`");
            }
        }
    }
    let body = format!("{table}{missed_lists}");
    generated_section::update(root, DOC, COMMAND, &body, check)?;
    if check && !stale.is_empty() {
        return Err(Failure(format!(
            "{DOC}: the sweep of {} predates the module's source: run `{COMMAND} --module PATH` for each",
            stale.join(", ")
        )));
    }
    Ok(())
}

/// Whether `shards` (`k/n` each) are every shard of one split: the whole module.
fn all_shards(shards: &[&str]) -> bool {
    let parsed: Vec<(usize, usize)> = shards
        .iter()
        .filter_map(|s| {
            let (k, n) = s.split_once('/')?;
            Some((k.parse().ok()?, n.parse().ok()?))
        })
        .collect();
    let Some(&(_, n)) = parsed.first() else { return false };
    parsed.len() == shards.len()
        && parsed.iter().all(|&(_, m)| m == n)
        && (0..n).all(|k| parsed.iter().any(|&(j, _)| j == k))
}

/// SHA-256 of the module's code: the file up to its test module (`cargo-mutants` mutates
/// nothing in it, so a test added there leaves the record current; `--recheck` counts it).
fn source_sha256(root: &Path, file: &str) -> Result<String> {
    let text = std::fs::read_to_string(root.join(file))?;
    let code = text.split("\n#[cfg(test)]\nmod tests").next().unwrap_or_default();
    Ok(sha256_hex(code.as_bytes()))
}

fn targets(m: &Module) -> String {
    let mut t = format!("`-p {}`", m.package);
    for p in m.test_packages {
        let _ = write!(t, " `-p {p}`");
    }
    if !m.targets.is_empty() {
        let _ = write!(t, " `{}`", m.targets.join(" "));
    }
    t
}

/// The test run's smoke pass: a tenth of [`SMOKE_MODULE`]'s mutants, into a scratch
/// directory (the records are left alone); the task must find and run them, and the
/// suite must catch at least one.
fn smoke(root: &Path) -> Result {
    let bin = install()?;
    let m = MODULES
        .iter()
        .find(|m| m.file == SMOKE_MODULE)
        .ok_or_else(|| Failure("no smoke module".into()))?;
    let out =
        std::env::temp_dir().join(format!("sign-service-mutants-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let started = Instant::now();
    mutate(root, &bin, m, (Some("1/10"), &[]), &out)?;
    let outcome = Outcome::read(&out)?;
    let _ = std::fs::remove_dir_all(&out);
    eprintln!(
        "mutants smoke: {} of {SMOKE_MODULE}'s mutants (shard 1/10): {} caught, {} missed, {} timeout, {} unviable in {} s",
        outcome.viable() + outcome.unviable.len(),
        outcome.caught.len(),
        outcome.missed.len(),
        outcome.timeout.len(),
        outcome.unviable.len(),
        started.elapsed().as_secs()
    );
    if outcome.caught.is_empty() {
        return Err(Failure("mutants smoke: no mutant was caught: the sweep tests nothing".into()));
    }
    render(root, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn equivalent_mutants_are_read_from_their_section_only() {
        let doc = "# x\n- `not this` — no\n## Equivalent mutants\n\n- `a.rs:1:1: replace f` — wipe\n- `b.rs:2:2: delete !` — perf\n\n## Next\n- `c` — no\n";
        assert_eq!(super::equivalent(doc), ["a.rs:1:1: replace f", "b.rs:2:2: delete !"]);
    }

    #[test]
    fn a_mutant_name_is_escaped_to_match_only_itself() {
        assert_eq!(
            super::regex_escape("a/b.rs:1:2: replace && with || in F<'_>::g -> Vec<u8>"),
            r"a/b\.rs:1:2: replace \&\& with \|\| in F<'_>::g \-> Vec<u8>"
        );
    }

    #[test]
    fn a_module_swept_in_every_shard_is_whole() {
        assert!(super::all_shards(&["1/2", "0/2"]));
        assert!(!super::all_shards(&["1/2"]));
        assert!(!super::all_shards(&["0/3", "1/3"]));
        assert!(!super::all_shards(&["0/2", "1/3"]));
    }

    #[test]
    fn a_shard_adds_to_the_record_of_the_shards_before_it() {
        let old = serde_json::json!({
            "source_sha256": "h", "caught": 10, "missed": ["a"], "timeout": 1, "unviable": 2,
            "seconds": 100, "shards": ["0/2"], "rechecked": 1,
        });
        let new = serde_json::json!({
            "source_sha256": "h", "caught": 5, "missed": ["b", "c"], "timeout": 0,
            "unviable": 3, "seconds": 50, "shards": ["1/2"],
        });
        assert_eq!(
            super::merge_shard(&old, &new),
            serde_json::json!({
                "source_sha256": "h", "caught": 15, "missed": ["a", "b", "c"], "timeout": 1,
                "unviable": 5, "seconds": 150, "shards": ["0/2", "1/2"], "rechecked": 1,
            })
        );
    }

    #[test]
    fn every_module_of_the_sweep_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for m in super::MODULES {
            assert!(root.join(m.file).is_file(), "{}", m.file);
        }
    }
}
