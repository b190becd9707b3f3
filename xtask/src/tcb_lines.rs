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
    ("enclave-rt/src", &["sim_nsm.rs"]),
];

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
    fn counts_code_not_comments_blanks_or_tests() {
        let text = "//! doc\n\nfn a() {}\n    // note\n    let x = 1; // trailing\n/// doc\n#[cfg(test)]\nmod tests { fn t() {} }\n";
        assert_eq!(super::code_lines(text), 2);
    }
}
