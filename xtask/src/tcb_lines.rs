//! `cargo xtask tcb-lines`: the lines of our own code compiled into the production (`nsm`)
//! image, the figure `docs/tcb.md` publishes: every `.rs` file of `wire/src`,
//! `enclave-rt/core/src` and `enclave-rt/src` but those the `nsm` build leaves out (the
//! `fuzzing.rs` of `wire` and of the core, and the shell's `sim_nsm.rs`, behind the
//! `fuzzing`/`sim` features),
//! without blank lines, comment lines and the `#[cfg(test)]` module a file ends with.
//! `--write` puts the count, file by file with each module's first sentence, into
//! `docs/tcb.md`; `--check` (in `cargo xtask test`) refuses a `docs/tcb.md` whose count is
//! not the code's.

use std::fmt::Write as _;
use std::path::Path;

use crate::generated_section;
use crate::run::{Failure, Result};

/// (crate, its source directory, files in it the `nsm` build does not compile).
const IN_NSM_IMAGE: &[(&str, &str, &[&str])] = &[
    ("wire", "wire/src", &["fuzzing.rs"]),
    ("enclave-core", "enclave-rt/core/src", &["fuzzing.rs"]),
    ("enclave-rt", "enclave-rt/src", &["sim_nsm.rs", "no_flavour.rs"]),
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
    for (_, krate, skip) in IN_NSM_IMAGE {
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

/// One counted file: its name, its code lines, the first sentence of its module doc.
struct Counted {
    name: String,
    lines: usize,
    about: String,
}

/// Each `.rs` file directly in `dir` but `skip`, sorted by name.
fn count_dir(dir: &Path, skip: &[&str]) -> Result<Vec<Counted>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Failure(format!("{}: {e}", dir.display())))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if path.extension().is_some_and(|e| e == "rs") && !skip.contains(&name.as_str()) {
            let text = std::fs::read_to_string(&path)?;
            out.push(Counted { name, lines: code_lines(&text), about: first_sentence(&text) });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The code lines of `files` together.
fn lines<'a>(files: impl IntoIterator<Item = &'a Counted>) -> usize {
    files.into_iter().map(|f| f.lines).sum()
}

/// The first sentence of a file's `//!` documentation, on one line, safe in a table cell.
fn first_sentence(text: &str) -> String {
    let paragraph: Vec<&str> = text
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let paragraph = paragraph.join(" ");
    let paragraph = paragraph.trim_start_matches("# ");
    let end = paragraph.find(". ").map_or(paragraph.len(), |i| i + 1);
    // Rustdoc's intra-doc links ([`Name`]) read as plain code in the document.
    paragraph[..end].replace("[`", "`").replace("`]", "`").replace('|', "\\|")
}

/// `n` with thousands separators, as the documents write counts.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The section of `docs/tcb.md`: every counted file, each crate's sum, the total, and the
/// files left out.
fn render(counts: &[(&str, &str, Vec<Counted>)]) -> String {
    let mut out =
        String::from("| file | code lines | what it is (its module doc) |\n|---|---:|---|\n");
    let mut sums = Vec::new();
    for (name, krate, files) in counts {
        for f in files {
            let _ =
                writeln!(out, "| `{krate}/{}` | {} | {} |", f.name, thousands(f.lines), f.about);
        }
        let sum = thousands(lines(files));
        let _ = writeln!(out, "| **`{name}`** | **{sum}** | |");
        sums.push(format!("`{name}` {sum}"));
    }
    let total = lines(counts.iter().flat_map(|(_, _, f)| f));
    let left_out: Vec<String> = IN_NSM_IMAGE
        .iter()
        .flat_map(|(_, krate, skip)| skip.iter().map(move |f| format!("`{krate}/{f}`")))
        .collect();
    let _ = write!(
        out,
        "\n**Our code in the `nsm` image: {} lines** ({}). Not compiled into it, so not \
         counted: {}.\n",
        thousands(total),
        sums.join(", "),
        left_out.join(", ")
    );
    out
}

/// What the task does besides printing the count.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Doc {
    /// Only print.
    Leave,
    /// Rewrite the count in `docs/tcb.md`.
    Write,
    /// Fail if `docs/tcb.md` does not have the code's count.
    Check,
}

pub(crate) fn task(root: &Path, doc: Doc) -> Result {
    check_left_out(root)?;
    let mut counts = Vec::new();
    for (name, krate, skip) in IN_NSM_IMAGE {
        let files = count_dir(&root.join(krate), skip)?;
        let list: Vec<String> = files.iter().map(|f| format!("{} {}", f.name, f.lines)).collect();
        println!("{krate}: {} lines ({})", lines(&files), list.join(", "));
        counts.push((*name, *krate, files));
    }
    let total = lines(counts.iter().flat_map(|(_, _, f)| f));
    println!("our code in the nsm image: {total} non-blank, non-comment lines");
    if doc == Doc::Leave {
        return Ok(());
    }
    let command = "cargo xtask tcb-lines --write";
    generated_section::update(root, "docs/tcb.md", command, &render(&counts), doc == Doc::Check)
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

    #[test]
    fn a_module_is_described_by_its_first_sentence() {
        let text = "//! The [`Store`]: `a | b`, sized once. Then more\n//! text.\n//!\n//! Next.\n";
        assert_eq!(super::first_sentence(text), "The `Store`: `a \\| b`, sized once.");
        assert_eq!(super::first_sentence("//! # `wire`: the protocol\n"), "`wire`: the protocol");
        assert_eq!(super::first_sentence("//! One\n//! line\n"), "One line");
        assert_eq!(super::first_sentence("use x;\n"), "");
        assert_eq!(super::thousands(6884), "6,884");
        assert_eq!(super::thousands(1_000_000), "1,000,000");
        assert_eq!(super::thousands(999), "999");
    }
}
