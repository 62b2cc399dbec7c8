//! The layers of `docs/architecture.md`, checked against the code: every `crate::<module>`
//! reference in `src/` (outside comments and unit tests) goes to a module of the same layer or
//! a lower one, and the modules of one layer never import each other in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules by layer, from the top (0) down. Keep in step with
/// `docs/architecture.md`.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["app"],
    &["http", "jobs", "node_import"],
    &["state"],
    &["settings"],
    &["domain"],
    &["lookups"],
    &["ratelimit", "error"],
    &["store", "directory", "notify", "matrix", "listener", "tls", "telemetry"],
    &["config", "vocabulary", "wire", "clock", "secret", "metrics", "background", "scheduling"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer: add it to LAYERS and to docs/architecture.md"))
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn code_of(text: &str) -> String {
    let without_tests = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    without_tests.lines().map(|line| line.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// `crate::<name>` references in `code`.
fn references(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .map(|(at, prefix)| {
            code[at + prefix.len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        })
        .filter(|name: &String| !name.is_empty())
        .collect()
}

fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src")).unwrap();
            let top =
                relative.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
            if matches!(top.as_str(), "lib" | "main") {
                continue;
            }
            let code = code_of(&std::fs::read_to_string(&path).unwrap());
            let found: Vec<String> = references(&code).into_iter().filter(|name| *name != top).collect();
            graph.entry(top).or_default().extend(found);
        }
    }
    graph
}

#[test]
fn imports_only_go_down_the_layers() {
    let graph = imports();
    let mut upward = Vec::new();
    for (module, targets) in &graph {
        for target in targets {
            if layer_of(target) < layer_of(module) {
                upward.push(format!("{module} -> {target}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports that run up a layer: {upward:?}");
}

#[test]
fn no_module_folder_imports_another_in_a_circle() {
    let graph = imports();
    // Depth-first search for a back edge.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|on_path| *on_path == node) {
            return Some(path[start..].iter().map(|name| (*name).to_owned()).chain([node.to_owned()]).collect());
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        let circle = visit(module, &graph, &mut Vec::new(), &mut done);
        assert!(circle.is_none(), "modules import each other in a circle: {circle:?}");
    }
}

#[test]
fn the_check_sees_an_upward_import() {
    let code =
        code_of("use crate::http::AppState;\n// crate::cli in a comment\n#[cfg(test)]\nmod tests { use crate::app; }");
    assert_eq!(references(&code), BTreeSet::from(["http".to_owned()]));
    assert!(layer_of("http") < layer_of("domain"), "domain -> http would be reported");
}
