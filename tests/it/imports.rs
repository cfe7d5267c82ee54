//! The module graph has no cycle: every top-level module of the library (`src/X.rs`
//! or `src/X/`) names the others it uses as `crate::X`; the graph of those names,
//! test code left out, must be acyclic, so each module can be read after the ones
//! it stands on (STYLE.md §8, "the shared vocabulary is a leaf").

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub(crate) fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// module -> modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let name = rel.rsplit('/').next().unwrap();
        if rel == "main.rs" || rel == "lib.rs" || name == "tests.rs" || name.ends_with("_tests.rs")
        {
            continue;
        }
        let module = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        let text = std::fs::read_to_string(&f).unwrap();
        // Test modules inside a file are test code too.
        let code = text.split("#[cfg(test)]").next().unwrap();
        let deps = g.entry(module.clone()).or_default();
        for line in code.lines() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            let mut rest = l;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + 7..];
                let dep: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !dep.is_empty() && dep != module {
                    deps.insert(dep);
                }
            }
        }
    }
    g
}

/// A cycle through `node`, if the graph has one reachable from it.
fn find_cycle(
    g: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|p| p == node) {
        let mut c = path[i..].to_vec();
        c.push(node.to_string());
        return Some(c);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.to_string());
    for d in g.get(node).into_iter().flatten() {
        if let Some(c) = find_cycle(g, d, path, done) {
            return Some(c);
        }
    }
    path.pop();
    done.insert(node.to_string());
    None
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph();
    assert!(g.len() > 10, "the graph was read: {g:?}");
    let mut done = BTreeSet::new();
    let mut cycles = BTreeSet::new();
    for m in g.keys() {
        if let Some(c) = find_cycle(&g, m, &mut Vec::new(), &mut done) {
            cycles.insert(c.join(" -> "));
        }
    }
    let edges: Vec<String> = g
        .iter()
        .map(|(m, d)| format!("{m} -> {}", d.iter().cloned().collect::<Vec<_>>().join(" ")))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles:\n  {}\ngraph:\n  {}",
        cycles.iter().cloned().collect::<Vec<_>>().join("\n  "),
        edges.join("\n  ")
    );
    // The vocabulary and the buffer stand on nothing of ours.
    for leaf in ["vocab", "buf"] {
        assert_eq!(g.get(leaf), Some(&BTreeSet::new()), "{leaf} must be a leaf");
    }
    // Logging stands on nothing but the vocabulary and sys.
    let logging: Vec<&String> = g["logging"]
        .iter()
        .filter(|d| *d != "vocab" && *d != "sys")
        .collect();
    assert!(logging.is_empty(), "logging imports {logging:?}");
}

#[test]
fn no_source_file_is_over_800_lines_outside_tests() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| {
            let n = f.file_name().unwrap().to_string_lossy();
            !(n.ends_with("_tests.rs") || n == "tests.rs")
        })
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > 800).then(|| format!("{}: {lines}", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "{long:?}");
}
