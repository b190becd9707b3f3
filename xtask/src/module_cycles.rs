//! The modules of each crate import one another without a cycle: a reader can start from a
//! leaf and go up. Checked by a test over every crate's `src/` (a module's imports are the
//! `crate::name` paths outside comments and its trailing test module).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// module -> the modules of the same crate it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The module graph of one `src/` directory: every module file, nested ones by their path
/// (`boot::inputs` for `src/boot/inputs.rs`); `main` and `lib` excluded. An import names
/// the longest module path it starts with.
fn graph(src: &Path) -> std::io::Result<Graph> {
    let mut files = Vec::new();
    module_files(src, "", &mut files)?;
    let names: BTreeSet<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let mut g = Graph::new();
    for (name, path) in files {
        let text = std::fs::read_to_string(&path)?;
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        let mut deps = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            let line = line.replace("$crate::", "");
            for (at, _) in line.match_indices("crate::") {
                for target in import_paths(&line[at + "crate::".len()..]) {
                    let module = names
                        .iter()
                        .filter(|n| target == **n || target.starts_with(&format!("{n}::")))
                        .max_by_key(|n| n.len());
                    if let Some(m) = module.filter(|m| **m != name) {
                        deps.insert(m.clone());
                    }
                }
            }
        }
        g.insert(name, deps);
    }
    Ok(g)
}

/// `(module path, file)` for every `.rs` under `dir`, `prefix` naming `dir`'s module.
fn module_files(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, std::path::PathBuf)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(stem) = path.file_stem().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let name = if prefix.is_empty() { stem.clone() } else { format!("{prefix}::{stem}") };
        if path.is_dir() {
            module_files(&path, &name, out)?;
        } else if path.extension().is_some_and(|e| e == "rs")
            && !(prefix.is_empty() && (stem == "main" || stem == "lib"))
        {
            let name = if stem == "mod" { prefix.to_owned() } else { name };
            out.push((name, path));
        }
    }
    Ok(())
}

/// The paths an import names after `crate::`: `a::b::C` is one, `a::{b, c::D}` two.
fn import_paths(rest: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let head: String = rest.chars().take_while(|c| ident(*c)).collect();
    let after = &rest[head.len()..];
    let Some(group) = after.strip_prefix('{') else {
        return vec![head.trim_end_matches(':').to_owned()];
    };
    // The group's items, split at its own commas (not those of nested groups).
    let (mut depth, mut items, mut item) = (0usize, Vec::new(), String::new());
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => items.push(std::mem::take(&mut item)),
            _ => {}
        }
        item.push(c);
    }
    items.push(item);
    items
        .iter()
        .map(|i| {
            let i: String =
                i.trim_start_matches(',').trim().chars().take_while(|c| ident(*c)).collect();
            format!("{head}{i}")
        })
        .collect()
}

/// A cycle, if the graph has one (as the modules on it, in order).
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    // Depth-first search with colours: on the stack (grey) or finished (black).
    fn visit(
        g: &Graph,
        node: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for dep in g.get(node).into_iter().flatten().filter(|d| g.contains_key(*d)) {
            if let Some(c) = visit(g, dep, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_crate_of_the_workspace_has_an_import_cycle_between_its_modules() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for krate in [
            "wire",
            "enclave-rt/core",
            "enclave-rt",
            "parent-shim",
            "parent-shim/verify",
            "parent-shim/offline",
            "eif",
            "xtask",
            "tests",
        ] {
            let g = graph(&root.join(krate).join("src")).unwrap();
            assert!(g.len() >= 2, "{krate}: no modules found");
            assert_eq!(find_cycle(&g), None, "{krate}: modules import each other in a cycle");
        }
    }

    #[test]
    fn nested_modules_and_grouped_imports_are_seen() {
        assert_eq!(
            import_paths("boot::{inputs, conversation::{self, X}};"),
            ["boot::inputs", "boot::conversation::"]
        );
        assert_eq!(import_paths("daemon::config::Config;"), ["daemon::config::Config"]);
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let g = graph(&root.join("parent-shim/src")).unwrap();
        // The daemon's run order imports the steps in their folders.
        let daemon = g.get("daemon").unwrap();
        assert!(daemon.contains("boot::inputs") && daemon.contains("serve::grpc_bridge"), "{g:?}");
    }

    #[test]
    fn a_cycle_is_found_and_named() {
        let edge =
            |a: &str, b: &[&str]| (a.to_owned(), b.iter().map(|s| (*s).to_owned()).collect());
        let g: Graph = [edge("a", &["b"]), edge("b", &["c"]), edge("c", &["a"]), edge("d", &[])]
            .into_iter()
            .collect();
        assert_eq!(find_cycle(&g), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
        let dag: Graph =
            [edge("a", &["b", "c"]), edge("b", &["c"]), edge("c", &[])].into_iter().collect();
        assert_eq!(find_cycle(&dag), None);
    }
}
