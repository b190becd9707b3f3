//! The modules of each crate import one another without a cycle: a reader can start from a
//! leaf and go up. Checked by a test over every crate's `src/` (a module's imports are the
//! `crate::name` paths outside comments and its trailing test module).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// module -> the modules of the same crate it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The module graph of one `src/` directory (top-level modules; `main` and `lib` excluded).
fn graph(src: &Path) -> std::io::Result<Graph> {
    let mut g = Graph::new();
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        let Some(name) = path.file_stem().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if path.extension().is_none_or(|e| e != "rs") || name == "main" || name == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        let mut deps = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            let line = line.replace("$crate::", "");
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group.split('}').next().unwrap_or_default().split(',').collect(),
                    None => vec![rest],
                };
                for n in names {
                    let n: String = n
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if !n.is_empty() && n != name {
                        deps.insert(n);
                    }
                }
            }
        }
        g.insert(name, deps);
    }
    Ok(g)
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
