//! The shape of the code, checked: the sans-IO cores stay pure, the layers' arrows point down,
//! and no file of the crate imports one that imports it back. Read from the source text, so it
//! runs in CI with the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src`, as a path relative to the crate root.
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable src dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    walk(&root.join("src"), &mut out);
    out.iter()
        .map(|p| p.strip_prefix(root).expect("under the root").to_path_buf())
        .collect()
}

/// The code of a file without its comments (a word in a doc comment is not a dependency).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .expect("readable source");
    text.lines()
        .map(|line| match line.find("//") {
            // `//` inside a string literal ("http://…") is rare here; the check errs towards
            // seeing fewer paths, never more.
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module path of a source file: `src/files/repair.rs` → [files, repair]; `mod.rs`,
/// `lib.rs` and `main.rs` name their directory.
fn module_of(path: &Path) -> Vec<String> {
    let mut parts: Vec<String> = path
        .iter()
        .skip(1)
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file that holds module `module` or the deepest module above it that has one.
fn file_of(module: &[String], files: &BTreeSet<PathBuf>) -> Option<PathBuf> {
    for len in (0..=module.len()).rev() {
        let base: PathBuf = std::iter::once("src".to_string())
            .chain(module[..len].iter().cloned())
            .collect();
        let candidates = if len == 0 {
            vec![base.join("lib.rs")]
        } else {
            vec![base.with_extension("rs"), base.join("mod.rs")]
        };
        if let Some(found) = candidates.into_iter().find(|c| files.contains(c)) {
            return Some(found);
        }
    }
    None
}

/// The modules a file names through `crate::…` and `super::…` paths.
fn named_modules(path: &Path) -> Vec<Vec<String>> {
    let text = code(path);
    let here = module_of(path);
    let is_root_of_dir = path.ends_with("mod.rs");
    let mut out = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 6)].iter().collect();
        let starts_word = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_');
        let head = if rest.starts_with("crate:") {
            Some(("crate", 5))
        } else if rest.starts_with("super:") {
            Some(("super", 5))
        } else {
            None
        };
        let Some((kind, len)) = head.filter(|_| starts_word) else {
            i += 1;
            continue;
        };
        // Read `::seg::seg…`, and a `{a, b::c}` group at the end.
        let mut j = i + len;
        let mut segments = Vec::new();
        let mut groups: Vec<String> = Vec::new();
        while j + 1 < bytes.len() && bytes[j] == ':' && bytes[j + 1] == ':' {
            j += 2;
            if j < bytes.len() && bytes[j] == '{' {
                let end = bytes[j..]
                    .iter()
                    .position(|c| *c == '}')
                    .map_or(bytes.len(), |e| j + e);
                let inner: String = bytes[j + 1..end].iter().collect();
                groups.extend(
                    inner
                        .split(',')
                        .map(|g| g.trim().split("::").next().unwrap_or("").trim().to_string())
                        .filter(|g| !g.is_empty() && g != "self"),
                );
                j = end;
                break;
            }
            let start = j;
            while j < bytes.len() && (bytes[j].is_alphanumeric() || bytes[j] == '_') {
                j += 1;
            }
            segments.push(bytes[start..j].iter().collect::<String>());
        }
        let mut base: Vec<String> = match kind {
            "crate" => Vec::new(),
            _ => {
                // `super` of a mod.rs is the parent of its directory's module.
                let mut m = here.clone();
                if !is_root_of_dir || !m.is_empty() {
                    m.pop();
                }
                m
            }
        };
        for seg in &segments {
            if seg == "super" {
                base.pop();
            } else if !seg.is_empty() {
                base.push(seg.clone());
            }
        }
        if groups.is_empty() {
            out.push(base);
        } else {
            for g in groups {
                let mut m = base.clone();
                m.push(g);
                out.push(m);
            }
        }
        i = j.max(i + 1);
    }
    out
}

/// Which crate a file belongs to: the library (`src/lib.rs`) or the binary (`src/main.rs`
/// and `src/cli`). `crate::` means a different root in each.
fn in_binary(path: &Path) -> bool {
    path.starts_with("src/cli") || path == Path::new("src/main.rs")
}

/// File → files it names (edges from a module root to its own children are declarations
/// and re-exports, not dependencies, and are left out).
fn graph() -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let files: BTreeSet<PathBuf> = sources().into_iter().collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let dir = file.parent().expect("in src").to_path_buf();
        let is_root =
            file.ends_with("mod.rs") || file.ends_with("lib.rs") || file.ends_with("main.rs");
        let mut targets = BTreeSet::new();
        for module in named_modules(file) {
            let module = if in_binary(file) && module.first().map(String::as_str) != Some("cli") {
                // The binary's `crate::` is main.rs; only its cli modules are files here.
                continue;
            } else {
                module
            };
            let Some(target) = file_of(&module, &files) else {
                continue;
            };
            if target == *file || (is_root && target.starts_with(&dir)) {
                continue;
            }
            targets.insert(target);
        }
        graph.insert(file.clone(), targets);
    }
    graph
}

#[test]
fn the_sans_io_cores_name_no_runtime_network_disk_or_clock() {
    let forbidden = [
        "tokio",
        "libp2p",
        "std::fs",
        "Instant::now",
        "SystemTime::now",
        "thread_rng",
    ];
    let mut found = Vec::new();
    for file in sources() {
        let core = file.starts_with("src/chord")
            || file.starts_with("src/replica")
            || file.starts_with("src/verified.rs");
        // Unit tests may start a virtual clock somewhere; the cores themselves may not.
        if !core || file.ends_with("tests.rs") {
            continue;
        }
        let text = code(&file);
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for word in forbidden {
            if text.contains(word) {
                found.push(format!("{} names {word}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
    // The list above names real files: the verified-streaming core is among them.
    assert!(sources().contains(&PathBuf::from("src/verified.rs")));
}

#[test]
fn layers_point_down() {
    // What each layer may not name (the layers above it). From the top: the CLI (the
    // binary), then the HTTP server (`gateway`, above files and node), the JSON shapes it
    // shares with the CLI (`shapes`), the one-shot client, files, node, net, and the cores.
    const UPPER: [&str; 3] = ["src/gateway", "src/shapes.rs", "src/client"];
    const BOTTOM_MAY_NOT_NAME: [&str; 10] = [
        "src/chord",
        "src/net",
        "src/node",
        "src/files",
        "src/records.rs",
        "src/replica",
        "src/sim",
        "src/cli",
        "src/verified.rs",
        "src/metrics.rs",
    ];
    let above = |extra: &[&'static str]| -> Vec<&'static str> {
        UPPER.iter().copied().chain(extra.iter().copied()).collect()
    };
    let rules: Vec<(&str, Vec<&str>)> = vec![
        // The verified-streaming core and what a node counts are the bottom: they name no
        // other module of the crate (the layers above call into them).
        ("src/verified.rs", above(&BOTTOM_MAY_NOT_NAME)),
        ("src/metrics.rs", above(&BOTTOM_MAY_NOT_NAME)),
        (
            "src/chord",
            above(&[
                "src/net",
                "src/node",
                "src/files",
                "src/records",
                "src/replica",
                "src/sim",
            ]),
        ),
        (
            "src/records.rs",
            above(&["src/net", "src/node", "src/files", "src/replica"]),
        ),
        (
            "src/replica",
            above(&["src/net", "src/node", "src/files", "src/sim"]),
        ),
        ("src/net", above(&["src/node", "src/files", "src/replica"])),
        ("src/node", above(&["src/files", "src/replica"])),
        ("src/files", above(&[])),
        // The shapes describe files and nodes; they serve the layers above, never call them.
        (
            "src/shapes.rs",
            vec!["src/gateway", "src/client", "src/sim"],
        ),
        // The HTTP server acts as its node (files, node): not as a one-shot client.
        ("src/gateway", vec!["src/client", "src/sim"]),
    ];
    let mut wrong = Vec::new();
    for (file, targets) in graph() {
        for (layer, above) in &rules {
            if !file.starts_with(layer) {
                continue;
            }
            for target in &targets {
                if above.iter().any(|a| target.starts_with(a)) {
                    wrong.push(format!("{} → {}", file.display(), target.display()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "arrows pointing up: {wrong:#?}");
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let graph = graph();
    // Depth-first search for a cycle, reporting the first one found.
    fn visit(
        node: &PathBuf,
        graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        state: &mut BTreeMap<PathBuf, bool>,
        path: &mut Vec<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        match state.get(node) {
            Some(true) => {
                let at = path.iter().position(|p| p == node).unwrap_or(0);
                let mut cycle = path[at..].to_vec();
                cycle.push(node.clone());
                return Some(cycle);
            }
            Some(false) => return None,
            None => {}
        }
        state.insert(node.clone(), true);
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(node.clone(), false);
        None
    }
    let mut state = BTreeMap::new();
    for file in graph.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(file, &graph, &mut state, &mut path) {
            let shown: Vec<String> = cycle.iter().map(|p| p.display().to_string()).collect();
            panic!("import cycle: {}", shown.join(" → "));
        }
    }
    // The checker sees real edges: the files layer names the node layer.
    assert!(graph[Path::new("src/files/member.rs")].contains(Path::new("src/node/mod.rs")));
    // … and the HTTP server's: it names the shapes it shares with the CLI, and the files layer.
    assert!(graph[Path::new("src/gateway/api.rs")].contains(Path::new("src/shapes.rs")));
    assert!(graph[Path::new("src/gateway/files.rs")].contains(Path::new("src/files/ops.rs")));
}
