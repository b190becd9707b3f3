//! `cargo xtask tcb-lines`: the lines of our own code compiled into the production (`nsm`)
//! image, the figure `docs/tcb.md` publishes: every `.rs` file of `wire/src`,
//! `enclave-rt/core/src` and `enclave-rt/src` but those the `nsm` build leaves out (the
//! `fuzzing.rs` of `wire` and of the core, and the shell's `sim_nsm.rs`, behind the
//! `fuzzing`/`sim` features),
//! without blank lines, comment lines and the `#[cfg(test)]` module a file ends with.

use std::path::Path;

use crate::run::{Failure, Result};

/// (source directory, files in it the `nsm` build does not compile).
const IN_NSM_IMAGE: &[(&str, &[&str])] = &[
    ("wire/src", &["fuzzing.rs"]),
    ("enclave-rt/core/src", &["fuzzing.rs"]),
    ("enclave-rt/src", &["sim_nsm.rs", "no_flavour.rs"]),
];

/// The `cfg`s under which the `nsm` build compiles nothing: `enclave-rt` refuses `nsm`
/// together with `sim` or `fuzzing` (at compile time, for the core's and `wire`'s oracles
/// too).
const NOT_IN_NSM: [&str; 3] = [
    r#"#[cfg(feature = "fuzzing")]"#,
    r#"#[cfg(feature = "sim")]"#,
    r#"#[cfg(not(any(feature = "sim", feature = "nsm")))]"#,
];

/// Checks that each file left out of the count is a module its crate's `lib.rs` declares
/// once, behind one of [`NOT_IN_NSM`]: the count cannot leave out what the image compiles.
fn check_left_out(root: &Path) -> Result {
    for (krate, skip) in IN_NSM_IMAGE {
        let lib = std::fs::read_to_string(root.join(krate).join("lib.rs"))?;
        let lines: Vec<&str> = lib.lines().map(str::trim).collect();
        for file in *skip {
            let module = file.trim_end_matches(".rs");
            let declared = |l: &&str| {
                l.strip_prefix("pub ").unwrap_or(l).strip_prefix("mod ")
                    == Some(&format!("{module};"))
            };
            let at: Vec<usize> =
                lines.iter().enumerate().filter(|(_, l)| declared(l)).map(|(i, _)| i).collect();
            let gated = match at.as_slice() {
                [i] => lines[..*i]
                    .iter()
                    .rev()
                    .take_while(|l| l.starts_with("#["))
                    .any(|l| NOT_IN_NSM.contains(l)),
                _ => false,
            };
            if !gated {
                return Err(Failure(format!(
                    "{krate}/{file} is left out of the count, but {krate}/lib.rs does not \
                     declare it once behind a cfg the nsm build leaves off ({})",
                    NOT_IN_NSM.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// Non-blank, non-comment lines of `text` before its test module.
fn code_lines(text: &str) -> usize {
    text.lines()
        .take_while(|l| l.trim_end() != "#[cfg(test)]")
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count()
}

/// (file name, code lines) for each `.rs` file directly in `dir`, sorted by name.
fn count_dir(dir: &Path, skip: &[&str]) -> Result<Vec<(String, usize)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Failure(format!("{}: {e}", dir.display())))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if path.extension().is_some_and(|e| e == "rs") && !skip.contains(&name.as_str()) {
            out.push((name, code_lines(&std::fs::read_to_string(&path)?)));
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn task(root: &Path) -> Result {
    check_left_out(root)?;
    let mut total = 0;
    for (krate, skip) in IN_NSM_IMAGE {
        let files = count_dir(&root.join(krate), skip)?;
        let sum: usize = files.iter().map(|(_, n)| n).sum();
        let list: Vec<String> = files.iter().map(|(f, n)| format!("{f} {n}")).collect();
        println!("{krate}: {sum} lines ({})", list.join(", "));
        total += sum;
    }
    println!("our code in the nsm image: {total} non-blank, non-comment lines");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_file_left_out_is_one_the_nsm_build_does_not_compile() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        super::check_left_out(&root).unwrap();
        // A module declared without such a cfg is refused.
        let dir = std::env::temp_dir().join(format!("tcb-left-out-{}", std::process::id()));
        for krate in ["wire/src", "enclave-rt/core/src", "enclave-rt/src"] {
            std::fs::create_dir_all(dir.join(krate)).unwrap();
            let lib = std::fs::read_to_string(root.join(krate).join("lib.rs")).unwrap();
            std::fs::write(dir.join(krate).join("lib.rs"), lib).unwrap();
        }
        super::check_left_out(&dir).unwrap();
        let shell = dir.join("enclave-rt/src/lib.rs");
        let lib = std::fs::read_to_string(&shell).unwrap();
        std::fs::write(
            &shell,
            lib.replace("#[cfg(feature = \"sim\")]\npub mod sim_nsm;", "pub mod sim_nsm;"),
        )
        .unwrap();
        let e = super::check_left_out(&dir).unwrap_err();
        assert!(e.0.contains("enclave-rt/src/sim_nsm.rs"), "{}", e.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn counts_code_not_comments_blanks_or_tests() {
        let text = "//! doc\n\nfn a() {}\n    // note\n    let x = 1; // trailing\n/// doc\n#[cfg(test)]\nmod tests { fn t() {} }\n";
        assert_eq!(super::code_lines(text), 2);
    }
}
