//! Runs every dialogue script in `tests/it/scripts/*.smtp` against a fresh daemon.
//!
//! Script lines:
//! * `# …` comment; `@conf NAME=value` adds a line to etrnd.conf (before any dialogue)
//! * `> TEXT` sends TEXT and CR LF; `>> RAW` sends RAW with `\r`, `\n`, `\t`, `\xNN`
//!   escapes and nothing added
//! * `< 250` expects a reply with that code; `< 4` expects any 4xx
//! * `=closed` expects the server to close the connection
//! * `=spool N` expects exactly N messages in the queue

use crate::util::{Daemon, Setup};

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
                    i += 2;
                }
                other => panic!("bad escape \\{}", other as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn run_script(name: &str, text: &str) {
    let mut conf = String::new();
    for line in text.lines() {
        if let Some(c) = line.strip_prefix("@conf ") {
            conf.push_str(c);
            conf.push('\n');
        }
    }
    let d = Daemon::start_with(Setup::with_conf(&conf));
    let mut c = d.connect();
    for (no, line) in text.lines().enumerate() {
        let at = format!("{name}:{}", no + 1);
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        if let Some(raw) = line.strip_prefix(">> ") {
            c.send_raw(&unescape(raw));
        } else if let Some(l) = line.strip_prefix("> ") {
            c.send(l);
        } else if let Some(want) = line.strip_prefix("< ") {
            let got = c.reply();
            match &got {
                Some((code, _)) if code.to_string().starts_with(want.trim()) => {}
                _ => panic!("{at}: expected {want}, got {got:?}\n{}", d.log()),
            }
        } else if line == "=closed" {
            assert!(c.closed(), "{at}: connection still open");
        } else if let Some(n) = line.strip_prefix("=spool ") {
            let want: usize = n.trim().parse().unwrap();
            assert_eq!(d.queue_files().len(), want, "{at}: queue files");
        } else {
            panic!("{at}: cannot parse script line '{line}'");
        }
    }
}

#[test]
fn dialogue_scripts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/scripts");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "smtp"))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "scripts missing from {}", dir.display());
    for p in names {
        let text = std::fs::read_to_string(&p).unwrap();
        run_script(&p.file_name().unwrap().to_string_lossy(), &text);
    }
}
