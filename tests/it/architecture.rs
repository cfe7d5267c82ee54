//! The shape STYLE.md §9 asks for, checked on the source: the daemon is a loop of
//! a few fields and one `impl` block; only the I/O layer talks to the operating
//! system; the machines touch no descriptor and read no clock.

use std::path::{Path, PathBuf};

use crate::imports::rust_files;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The code of a file: test modules and files, and comments, left out.
fn code(f: &Path) -> Option<String> {
    let n = f.file_name().unwrap().to_string_lossy();
    if n.ends_with("_tests.rs") || n == "tests.rs" {
        return None;
    }
    let text = std::fs::read_to_string(f).unwrap();
    let body = text.split("#[cfg(test)]").next().unwrap();
    Some(
        body.lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[test]
fn the_daemon_has_at_most_six_fields_and_one_impl_block() {
    let text = std::fs::read_to_string(src().join("daemon/mod.rs")).unwrap();
    let start = text.find("pub struct Daemon {").expect("struct Daemon");
    let body = &text[start..start + text[start..].find("\n}").unwrap()];
    let fields: Vec<&str> = body
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with("#["))
        .collect();
    assert!(
        (1..=6).contains(&fields.len()),
        "Daemon has {} fields: {fields:?}",
        fields.len()
    );
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let impls: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.lines()
                .filter(|l| {
                    let l = l.trim_start();
                    l.starts_with("impl Daemon") || l.starts_with("impl<'a> Daemon")
                })
                .map(|l| format!("{}: {l}", f.display()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(impls.len(), 1, "impl Daemon blocks: {impls:?}");
}

/// Where the operating system may be called: `sys` itself, the daemon's I/O layer,
/// the stores (the disk), the helper processes, and each process's start and its
/// files (commands, tools, configuration loading, logging, accounts).
const IO_LAYER: [&str; 12] = [
    "sys/",
    "daemon/io/",
    "store/",
    "local/",
    "auth/",
    "commands/",
    "tools/",
    "config/",
    "logging.rs",
    "accounts.rs",
    "main.rs",
    "tls.rs",
];

#[test]
fn only_the_io_layer_calls_sys() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let root = src();
    let mut seen = 0;
    let outside: Vec<String> = files
        .iter()
        .filter(|f| {
            let rel = f
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            !IO_LAYER.iter().any(|p| rel.starts_with(p))
        })
        .filter_map(|f| {
            seen += 1;
            let c = code(f)?;
            c.lines()
                .find(|l| l.contains("sys::"))
                .map(|l| format!("{}: {}", f.display(), l.trim()))
        })
        .collect();
    assert!(seen > 40, "the decision layers were read ({seen} files)");
    assert!(
        outside.is_empty(),
        "sys:: outside the I/O layer:\n{}",
        outside.join("\n")
    );
}

#[test]
fn the_machines_touch_no_descriptor_and_read_no_clock() {
    let mut files = Vec::new();
    rust_files(&src().join("machines"), &mut files);
    assert!(files.len() >= 5, "{files:?}");
    for f in &files {
        let Some(c) = code(f) else { continue };
        for banned in ["mio::", "std::fs", "std::net::Tcp", "Instant::now", "sys::"] {
            assert!(!c.contains(banned), "{} uses {banned}", f.display());
        }
    }
}
