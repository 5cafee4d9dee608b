//! The invariants ARCHITECTURE.md states about the code's shape, checked on the source: every
//! module says what it owns, the layers import only downwards, and no files import each other in
//! a loop.
//!
//! The import graph is read from the code itself (`use crate::...`, `use super::...` and inline
//! `crate::` paths, comments left out), each path resolved to the file of the deepest module it
//! names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, as its module path (`probe::dns::spec`) and its text.
fn modules() -> BTreeMap<Vec<String>, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| {
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let module: Vec<String> = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .filter(|part| part != "lib")
                .collect();
            (module, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The text without comments (line comments and doc comments), so that a doc link to a module
/// is not an import of it.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a file names, absolute (`probe::net::Resolver`), from its `use` statements
/// (braces expanded, `super` and `self` resolved) and its inline `crate::` paths.
fn paths(module: &[String], text: &str) -> Vec<Vec<String>> {
    let code = code(text);
    let mut found = Vec::new();
    // `use` statements start a line (after any visibility) and run to the next `;`.
    let mut statement: Option<String> = None;
    for line in code.lines() {
        let trimmed = line.trim_start();
        if statement.is_none() {
            let visibility = ["pub use ", "pub(crate) use ", "pub(super) use ", "use "];
            if let Some(rest) = visibility
                .iter()
                .find_map(|start| trimmed.strip_prefix(start))
            {
                statement = Some(String::new());
                statement.as_mut().unwrap().push_str(rest);
            }
        } else if let Some(text) = statement.as_mut() {
            text.push_str(trimmed);
        }
        if let Some(text) = statement.take_if(|text| text.contains(';')) {
            let text = text[..text.find(';').unwrap()]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            expand(&text, &mut Vec::new(), &mut found);
        }
    }
    let bytes = code.as_bytes();
    let mut start = 0;
    while let Some(at) = code[start..].find("crate::") {
        let from = start + at;
        let mut end = from;
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':')
        {
            end += 1;
        }
        found.push(
            code[from..end]
                .split("::")
                .filter(|part| !part.is_empty())
                .map(str::to_owned)
                .collect(),
        );
        start = end.max(from + 1);
    }
    found
        .into_iter()
        .filter_map(|path| absolute(module, path))
        .collect()
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(text: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut depth = 0;
    let mut part_start = 0;
    let chars: Vec<char> = text.chars().collect();
    let mut parts = Vec::new();
    for (index, c) in chars.iter().enumerate() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(chars[part_start..index].iter().collect::<String>());
                part_start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(chars[part_start..].iter().collect());
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match part.find('{') {
            Some(open) => {
                let head: Vec<String> = part[..open]
                    .split("::")
                    .filter(|segment| !segment.is_empty())
                    .map(str::to_owned)
                    .collect();
                let inner = &part[open + 1..part.len() - 1];
                let depth_before = prefix.len();
                prefix.extend(head);
                expand(inner, prefix, out);
                prefix.truncate(depth_before);
            }
            None => {
                let mut path = prefix.clone();
                let leaf = part.split(" as ").next().unwrap_or(part);
                path.extend(
                    leaf.split("::")
                        .filter(|segment| !segment.is_empty() && *segment != "self")
                        .map(str::to_owned),
                );
                out.push(path);
            }
        }
    }
}

/// A path made absolute from `module`: `crate::x` is `x`, `super::x` is the parent's `x`;
/// paths into other crates are `None`.
fn absolute(module: &[String], path: Vec<String>) -> Option<Vec<String>> {
    let first = path.first()?.as_str();
    match first {
        "crate" => Some(path[1..].to_vec()),
        "super" => {
            let mut base = module.to_vec();
            let mut rest = path.as_slice();
            while rest.first().is_some_and(|segment| segment == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            Some(base)
        }
        "self" => {
            let mut base = module.to_vec();
            base.extend(path[1..].iter().cloned());
            Some(base)
        }
        _ => None,
    }
}

/// The module file a path lands in: the deepest prefix of it that is a module.
fn target<'a>(
    modules: &'a BTreeMap<Vec<String>, String>,
    path: &[String],
) -> Option<&'a Vec<String>> {
    (1..=path.len())
        .rev()
        .find_map(|length| modules.get_key_value(&path[..length]).map(|(key, _)| key))
}

/// Which module files each module file imports (itself, its ancestors and descendants left out:
/// a module and its own submodules are one unit).
fn graph(modules: &BTreeMap<Vec<String>, String>) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    modules
        .iter()
        .map(|(module, text)| {
            let imports = paths(module, text)
                .iter()
                .filter_map(|path| target(modules, path))
                .filter(|to| !to.starts_with(module) && !module.starts_with(to))
                .cloned()
                .collect();
            (module.clone(), imports)
        })
        .collect()
}

fn name(module: &[String]) -> String {
    module.join("::")
}

/// Every module begins by saying what it owns (a `//!` doc).
#[test]
fn every_module_has_a_doc_saying_what_it_owns() {
    let missing: Vec<String> = modules()
        .iter()
        .filter(|(_, text)| {
            !text
                .lines()
                .find(|line| !line.trim().is_empty())
                .is_some_and(|line| line.starts_with("//!"))
        })
        .map(|(module, _)| name(module))
        .collect();
    assert!(missing.is_empty(), "modules without a //! doc: {missing:?}");
}

/// The layers import only downwards: probes know nothing of rules, alerts or notifiers; rules
/// nothing of alerts, notifiers, the state task or the store; notifiers nothing of probes; and
/// the leaves (the toolkit, the exposition format, text and HTML helpers) nothing above them.
#[test]
fn layers_import_only_downwards() {
    let modules = modules();
    let graph = graph(&modules);
    let rules: [(&str, &[&str]); 6] = [
        (
            "probe",
            &[
                "catalog", "alert", "notify", "state", "server", "config", "store", "app",
                "metrics", "view",
            ],
        ),
        (
            "catalog",
            &[
                "alert", "notify", "state", "server", "config", "store", "app", "metrics",
            ],
        ),
        (
            "notify",
            &["probe", "state", "server", "config", "app", "metrics"],
        ),
        (
            "view",
            &[
                "catalog", "alert", "notify", "state", "server", "config", "store", "app",
            ],
        ),
        (
            "spec",
            &[
                "probe", "catalog", "alert", "notify", "state", "server", "config", "store", "app",
                "metrics", "view",
            ],
        ),
        (
            "exposition",
            &[
                "probe", "catalog", "alert", "notify", "state", "server", "config", "store", "app",
                "metrics", "view", "spec",
            ],
        ),
    ];
    let mut broken = Vec::new();
    for (layer, forbidden) in rules {
        for (module, imports) in &graph {
            if module.first().map(String::as_str) != Some(layer) {
                continue;
            }
            for import in imports {
                if forbidden.contains(&import[0].as_str()) {
                    broken.push(format!("{} imports {}", name(module), name(import)));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the layers:\n{}",
        broken.join("\n")
    );
}

/// No files import each other in a loop: the arrows of the import graph run one way.
#[test]
fn no_module_imports_itself_through_others() {
    let graph = graph(&modules());
    // Depth-first search with colours; a grey node reached again closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        colours: &mut BTreeMap<Vec<String>, Colour>,
        stack: &mut Vec<Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        colours.insert(node.clone(), Colour::Grey);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match colours.get(next).copied().unwrap_or(Colour::White) {
                Colour::White => visit(next, graph, colours, stack, cycles),
                Colour::Grey => {
                    let from = stack.iter().position(|entry| entry == next).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[from..].iter().map(|m| name(m)).collect();
                    cycle.push(name(next));
                    cycles.push(cycle.join(" -> "));
                }
                Colour::Black => {}
            }
        }
        stack.pop();
        colours.insert(node.clone(), Colour::Black);
    }
    let mut colours = BTreeMap::new();
    let mut cycles = Vec::new();
    for node in graph.keys() {
        if colours.get(node).copied().unwrap_or(Colour::White) == Colour::White {
            visit(node, &graph, &mut colours, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// The reader of the graph sees what it should: a known import and a known absence, so the two
/// tests above cannot pass by reading nothing.
#[test]
fn the_import_graph_is_read() {
    let graph = graph(&modules());
    let imports = |module: &str| {
        let key: Vec<String> = module.split("::").map(str::to_owned).collect();
        graph
            .get(&key)
            .unwrap_or_else(|| panic!("no module {module}"))
            .iter()
            .map(|import| name(import))
            .collect::<BTreeSet<_>>()
    };
    assert!(
        imports("probe::redis").contains("spec"),
        "{:?}",
        imports("probe::redis")
    );
    assert!(imports("probe::redis").contains("probe::net"));
    assert!(imports("catalog::classifier").contains("view"));
    assert!(imports("probe::dns::verdict").contains("probe::dns::spec"));
    assert!(!imports("probe::dns::spec").contains("probe::dns::verdict"));
    assert!(graph.len() > 60, "only {} modules read", graph.len());
}
