//! The core's shape, checked on its source: serving is one phase of the boot machine that
//! holds the store, the engine and the audit chain together, so nothing keeps a second,
//! optional copy of them, and the boot table exists once (the `match` in
//! `boot_state_machine`), not as data beside it.

use std::path::Path;

/// Every `src/*.rs` of the core, (file name, text without comment lines).
fn sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = vec![];
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code: Vec<&str> =
                text.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), code.join("\n")));
        }
    }
    assert!(out.len() > 10, "the core's sources were not found in {}", src.display());
    out
}

/// Whether `word` occurs in `text` as a whole identifier.
fn has_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back().is_none_or(|c| !ident(c));
        let after = text[at + word.len()..].chars().next().is_none_or(|c| !ident(c));
        before && after
    })
}

#[test]
fn nothing_keeps_an_optional_copy_of_what_serving_holds() {
    for (file, code) in sources() {
        for held in ["SigningEngine", "AuditChain", "AnswerKey", "R"] {
            let optional = format!("Option<{held}>");
            assert!(!code.contains(&optional), "{file} keeps an {optional}");
        }
    }
}

#[test]
fn the_boot_table_and_serving_are_defined_once() {
    let gone = [
        "TRANSITIONS",
        "BootInput",
        "next_state",
        "fail_after_load",
        "LoadedBoot",
        "take_answer_key",
        "BadGatewayKey",
    ];
    let sources = sources();
    for (file, code) in &sources {
        for word in gone {
            assert!(!has_word(code, word), "{file} still has `{word}`");
        }
    }
    let refusals: usize = sources
        .iter()
        .map(|(_, code)| code.matches("\"not serving: boot incomplete\"").count())
        .sum();
    assert_eq!(refusals, 1, "the not-serving refusal is written once");
    // One type for time: the shell reads `trusted_time::Clock` and passes it everywhere.
    for (file, code) in &sources {
        for other in ["struct Now", "struct Context"] {
            assert!(!code.contains(other), "{file} defines a second time type ({other})");
        }
    }
}

#[test]
fn the_word_check_sees_whole_identifiers_only() {
    assert!(has_word("let x = TRANSITIONS;", "TRANSITIONS"));
    assert!(!has_word("BootExpectations { }", "BootInput"));
    assert!(has_word("fn next_state(", "next_state"));
}
