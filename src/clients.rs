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

use crate::config::Config;

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

/// `etrnd clients`: per held destination, from the spool and the notes (read-only,
/// whether the daemon runs or not), most held octets first.
pub fn render(cfg: &Config, now: u64) -> Result<String, crate::spool::SpoolError> {
    use crate::sched::Scheduler;
    let postoffice = cfg.main.postoffice.as_path();
    let notes = Notes::read(postoffice);
    let mut sched = Scheduler::new(cfg.sched.clone(), 1);
    for (k, n) in notes.iter() {
        if let Some((channel, host)) = k.split_once('!') {
            if n.release > 0 {
                sched.set_last_release(
                    crate::sched::ThreadKey {
                        channel: channel.into(),
                        host: host.into(),
                    },
                    n.release,
                );
            }
        }
    }
    if postoffice.join("queue").is_dir() {
        // Mail in queue/ is read; parked mail is summed from the index when it is
        // known complete (read every file otherwise: after a power loss, until the
        // daemon has rebuilt it).
        let mut spool = crate::spool::Spool::at(postoffice);
        let trusted = spool.index_trusted();
        spool.for_each_in(!trusted, |e| {
            sched.add_sized(e.id, &e.envelope, &e.state, now, e.size);
        })?;
        if trusted {
            sched.load_index(&mut spool);
        }
    }
    let when = |t: u64| {
        if t == 0 {
            "-".to_string()
        } else {
            crate::vocab::date::iso_date(t)
        }
    };
    let mut out = String::new();
    let mut dests = sched.held_destinations();
    // Destinations released before and holding nothing now: the last call shows.
    let mut idle: Vec<crate::sched::HeldDest> = notes
        .iter()
        .filter(|(k, _)| !dests.iter().any(|d| &d.key == *k))
        .map(|(k, n)| crate::sched::HeldDest {
            key: k.clone(),
            held: Default::default(),
            next_expiry: None,
            last_release: n.release,
        })
        .collect();
    idle.sort_by(|a, b| a.key.cmp(&b.key));
    dests.extend(idle);
    if dests.is_empty() {
        out.push_str("No mail is held\n");
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:<32} {:>6} {:>10} {:<20} {:<20} {:<20} last request",
        "destination", "held", "octets", "oldest", "next expiry", "last release"
    );
    for d in dests {
        let note = notes.get(&d.key);
        let request = match note {
            Some(n) if n.when > 0 => {
                format!("{} {} from {} -> {}", when(n.when), n.kind, n.from, n.code)
            }
            _ => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<32} {:>6} {:>10} {:<20} {:<20} {:<20} {}",
            crate::logging::sanitize(d.key.as_bytes()),
            d.held.messages,
            d.held.octets,
            when(d.held.oldest.unwrap_or(0)),
            when(d.next_expiry.unwrap_or(0)),
            when(d.last_release.max(note.map_or(0, |n| n.release))),
            crate::logging::sanitize(request.as_bytes())
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_bad_lines_are_skipped() {
        let mut n = Notes::default();
        n.request("smtp-etrn!mail.client.dom", 100, "etrn", "192.0.2.7", 253);
        n.released("smtp-etrn!mail.client.dom", 120);
        n.request("odmr!", 130, "atrn", "cust dom", 250);
        let text = n.render();
        let back = Notes::parse(&text);
        assert_eq!(
            back.get("smtp-etrn!mail.client.dom"),
            n.get("smtp-etrn!mail.client.dom")
        );
        assert_eq!(back.get("odmr!").unwrap().from, "custdom");
        let bad = "nokey 1 2 etrn x 250\na!b x 2 etrn x 250\na!b 1 2 bogus x 250\na!b 1 2\n";
        assert_eq!(Notes::parse(bad).iter().count(), 0);
    }
}
