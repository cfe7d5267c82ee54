//! Held destinations and the clients that release them (DESIGN.md §3 `clients`):
//! the daemon notes per destination (`channel!host`) the last ETRN/ATRN/flush that
//! matched it — when, from where (a client address, an identity, `local`, a
//! link), the reply — and the last release that delivered mail, in
//! `POSTOFFICE/clients`. Held mail's expiry counts from that last release
//! (`sched` module), so the file is read at start-up; `etrnd clients` joins it
//! with the spool.
//!
//! The file is one line per destination, `KEY RELEASE WHEN KIND FROM CODE`
//! (`RELEASE` and `WHEN` Unix seconds, 0 for never; `KIND` `etrn`, `atrn`,
//! `flush`, `link` or `-`; `FROM` without spaces), rewritten whole through a
//! temporary file and a rename, at most every few seconds. A crash loses at most
//! the last few seconds of notes: held mail then expires counting from an earlier
//! release, never later than it would have without the notes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// Most destinations noted; past it the ones with the oldest notes go.
pub const MAX_NOTES: usize = 100_000;
/// Longest line read.
const MAX_LINE: usize = 512;

/// What is noted for one destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Note {
    /// The last release that delivered mail (0: none).
    pub release: u64,
    /// The last request that matched it (0: none).
    pub when: u64,
    /// `etrn`, `atrn`, `flush`, `link`, or `-`.
    pub kind: String,
    /// Client address, identity, `local` or the link's name.
    pub from: String,
    /// The reply code given.
    pub code: u16,
}

/// One word of a note: printable, no spaces, bounded.
fn word(s: &str) -> String {
    let w: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(100)
        .collect();
    if w.is_empty() {
        "-".into()
    } else {
        w
    }
}

/// The notes of the daemon.
#[derive(Debug, Default)]
pub struct Notes {
    map: HashMap<String, Note>,
    /// Changed since the last write.
    pub dirty: bool,
}

impl Notes {
    /// Parses the text of `POSTOFFICE/clients`; lines that do not parse are skipped.
    pub fn parse(text: &str) -> Notes {
        let mut map = HashMap::new();
        for line in text.lines() {
            if line.len() > MAX_LINE || map.len() >= MAX_NOTES {
                continue;
            }
            let w: Vec<&str> = line.split(' ').collect();
            let [key, release, when, kind, from, code] = w[..] else {
                continue;
            };
            let (Ok(release), Ok(when), Ok(code)) = (release.parse(), when.parse(), code.parse())
            else {
                continue;
            };
            if !key.contains('!') || !["etrn", "atrn", "flush", "link", "-"].contains(&kind) {
                continue;
            }
            map.insert(
                word(key),
                Note {
                    release,
                    when,
                    kind: kind.into(),
                    from: word(from),
                    code,
                },
            );
        }
        Notes { map, dirty: false }
    }

    /// Reads `POSTOFFICE/clients` (none yet: no notes).
    pub fn read(postoffice: &Path) -> Notes {
        std::fs::read_to_string(postoffice.join("clients"))
            .map(|t| Notes::parse(&t))
            .unwrap_or_default()
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut keys: Vec<&String> = self.map.keys().collect();
        keys.sort();
        let mut out = String::new();
        for k in keys {
            let n = &self.map[k];
            let _ = writeln!(
                out,
                "{k} {} {} {} {} {}",
                n.release, n.when, n.kind, n.from, n.code
            );
        }
        out
    }

    /// Writes the file if anything changed.
    pub fn write(&mut self, postoffice: &Path) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let path = postoffice.join("clients");
        let tmp = postoffice.join("clients.tmp");
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(&tmp, &path)?;
        self.dirty = false;
        Ok(())
    }

    fn entry(&mut self, key: &str) -> &mut Note {
        if !self.map.contains_key(key) && self.map.len() >= MAX_NOTES {
            // Bounded: the destination noted longest ago goes.
            if let Some(old) = self
                .map
                .iter()
                .min_by_key(|(_, n)| n.when.max(n.release))
                .map(|(k, _)| k.clone())
            {
                self.map.remove(&old);
            }
        }
        self.dirty = true;
        self.map.entry(word(key)).or_default()
    }

    /// A request (`kind` from `from`, answered `code`) matched `key` at `when`.
    pub fn request(&mut self, key: &str, when: u64, kind: &str, from: &str, code: u16) {
        let n = self.entry(key);
        n.when = when;
        n.kind = word(kind);
        n.from = word(from);
        n.code = code;
    }

    /// A release of `key` delivered mail at `when`.
    pub fn released(&mut self, key: &str, when: u64) {
        let n = self.entry(key);
        n.release = n.release.max(when);
    }

    /// The note of `key`.
    pub fn get(&self, key: &str) -> Option<&Note> {
        self.map.get(key)
    }

    /// Every note.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Note)> {
        self.map.iter()
    }
}
