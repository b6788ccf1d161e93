//! The library's import graph has no circles: no file of `lib/src` reaches, through the
//! `crate::` and `super::` paths of its non-test code, a file that reaches it back. (A folder's
//! `mod.rs` declaring and re-exporting its files is the folder, not an import.)
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`fetch::http`) of each file under `src`, with its non-test code.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into()).collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            let code = std::fs::read_to_string(&path).unwrap();
            let code = code.split("#[cfg(test)]").next().unwrap().to_owned();
            out.insert(parts.join("::"), code);
        }
    }
    out
}

/// The identifier path that starts `text` (`a::b::C`), as its segments.
fn path_at(text: &str) -> Vec<&str> {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    text[..end].split("::").filter(|s| !s.is_empty()).collect()
}

/// The modules `name` (with `code`) imports, each the longest prefix of a path that names one.
fn imports(name: &str, code: &str, all: &BTreeMap<String, String>) -> BTreeSet<String> {
    let parent: Vec<&str> = name.split("::").filter(|s| !s.is_empty()).collect();
    let mut out = BTreeSet::new();
    for (marker, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
        let base = match marker {
            "super::" => base[..base.len().saturating_sub(1)].to_vec(),
            _ => base,
        };
        for piece in code.split(marker).skip(1) {
            let path: Vec<&str> = base.iter().copied().chain(path_at(piece)).collect();
            if let Some(target) = (1..=path.len())
                .rev()
                .map(|k| path[..k].join("::"))
                .find(|m| all.contains_key(m))
                && target != name
            {
                out.insert(target);
            }
        }
    }
    out
}

#[test]
fn the_import_graph_of_the_library_has_no_circles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let all = modules(&src);
    assert!(all.len() > 40, "only {} files found", all.len());
    let graph: BTreeMap<&str, BTreeSet<String>> = all
        .iter()
        .map(|(name, code)| (name.as_str(), imports(name, code, &all)))
        .collect();
    // Depth-first search; a file met again while still on the path closes a circle.
    fn visit<'g>(
        at: &'g str,
        graph: &'g BTreeMap<&str, BTreeSet<String>>,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
        circles: &mut Vec<String>,
    ) {
        if let Some(start) = path.iter().position(|p| *p == at) {
            circles.push([&path[start..], &[at]].concat().join(" -> "));
            return;
        }
        if !done.insert(at) {
            return;
        }
        path.push(at);
        for next in &graph[at] {
            visit(next, graph, path, done, circles);
        }
        path.pop();
    }
    let mut circles = Vec::new();
    let mut done = BTreeSet::new();
    for name in graph.keys() {
        visit(name, &graph, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
    // The check sees the arrows it must: these imports exist.
    assert!(graph["storage"].contains("chunk"), "{:?}", graph["storage"]);
    assert!(graph["fetch::multipart"].contains("fetch::response"));
}
