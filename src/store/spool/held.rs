//! The hold store (DESIGN.md §5.10): held mail stays on disk until its destination
//! is released.
//!
//! ```text
//! POSTOFFICE/hold/<id>          a queue file whose every waiting recipient is in a
//!                               held (queue-only or hold) destination; the same
//!                               bytes as queue/<id>, moved by rename
//! POSTOFFICE/index/<channel>!<host>
//!                               per held destination: one line per message parked
//!                               there, appended before the file moves to hold/
//! POSTOFFICE/index/.state       "clean" (written at a clean stop, after every index
//!                               file was fsynced) or "boot <boot id>" (running)
//! ```
//!
//! The same store takes deferred mail past the bounded active set, its destination
//! waiting out a retry back-off: its lines carry the time of the next try.
//!
//! An index line is `<id> <arrival> <size> <tried> <reported> <domain> <next>`: enough for
//! the daemon's per-destination summary (count, octets, oldest, next expiry or
//! delay notice) and for ETRN's domain match without opening a message. Lines are
//! only ever appended; a message may be listed twice (the last line wins) or after
//! it left (it is skipped when its file is not in `hold/`); a release rewrites the
//! index with what stays parked (temp file, rename).
//!
//! Crash safety. The queue file is never modified: parking is a rename within the
//! spool, so a crash leaves it in `queue/` (loaded at start and parked again) or in
//! `hold/`. Its index line is written before the rename and is in the kernel when
//! the rename happens, so a kill -9 cannot separate them. A power loss can: index
//! lines are not fsynced on the commit path. So the index is trusted at start only
//! when `.state` says the last stop was clean or names this boot (same boot: no
//! page of the page cache was lost); otherwise it is rebuilt from the files in
//! `hold/` (each read and verified, its journal applied) before the daemon serves.
//! A rebuild removes `.state` first, so a crash during it makes the next start
//! rebuild again.
//!
//! A clean stop also writes `index/.summary`, every destination's summary in one
//! file, and the start after it reads that instead of each index file (a cold
//! start then reads one file, not one per destination). It is used only when
//! `.state` says `clean`, and removed when the daemon starts.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use super::{append, envelope, fsync_dir, list_dir, read_file, verified, MessageId, QueueEntry};
use super::{Spool, SpoolError};

/// Longest index line read back.
const MAX_LINE: usize = 1024;
/// Longest index file name (a destination whose name is longer stays in memory).
const MAX_NAME: usize = 240;

/// One message parked in one held destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The message.
    pub id: MessageId,
    /// When it arrived (its envelope's arrival).
    pub arrival: u64,
    /// Octets of its queue file.
    pub size: u64,
    /// Whether one of its recipients here was tried (expiry counts from then).
    pub tried: bool,
    /// Delay notices sent for its recipients here (`reporttimes` levels).
    pub reported: u8,
    /// The domain of its (first) recipient here, lower case.
    pub domain: String,
    /// Deferred (not held) mail: when its destination is tried again (0: held).
    pub next: u64,
}

impl IndexEntry {
    /// The line, with its LF.
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {} {}\n",
            self.id,
            self.arrival,
            self.size,
            u8::from(self.tried),
            self.reported,
            envelope::encode(if self.domain.is_empty() {
                "."
            } else {
                &self.domain
            }),
            self.next
        )
    }

    /// One line (without its LF); `None` when it is not one.
    pub fn decode(line: &[u8]) -> Option<IndexEntry> {
        if line.len() > MAX_LINE {
            return None;
        }
        let line = std::str::from_utf8(line).ok()?;
        let f: Vec<&str> = line.split(' ').collect();
        let (id, arrival, size, tried, reported, domain, next) = match f[..] {
            [a, b, c, d, e, g] => (a, b, c, d, e, g, "0"),
            [a, b, c, d, e, g, h] => (a, b, c, d, e, g, h),
            _ => return None,
        };
        let domain = envelope::decode(domain).ok()?;
        Some(IndexEntry {
            id: MessageId::parse(id)?,
            arrival: arrival.parse().ok()?,
            size: size.parse().ok()?,
            tried: match tried {
                "0" => false,
                "1" => true,
                _ => return None,
            },
            reported: reported.parse().ok()?,
            domain: if domain == "." { String::new() } else { domain },
            next: next.parse().ok()?,
        })
    }
}

/// One destination's parked mail, summed (`index/.summary`, written at a clean stop).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Messages.
    pub messages: u64,
    /// Their octets.
    pub octets: u64,
    /// The oldest arrival (0: none).
    pub oldest: u64,
    /// The first expiry or delay notice due (0: none).
    pub next: u64,
    /// Deferred mail: the destination's next try (0: held).
    pub wake: u64,
    /// Their recipient domains (empty with `many`: too many to list).
    pub domains: Vec<String>,
    /// More domains than are listed.
    pub many: bool,
}

impl Summary {
    /// The line for destination `name`, with its LF.
    pub fn encode(&self, name: &str) -> String {
        let domains: Vec<String> = self
            .domains
            .iter()
            .map(|d| match d.as_str() {
                // "." alone stands for no domains.
                "." => "%2E".to_string(),
                d => envelope::encode(d).replace(',', "%2C"),
            })
            .collect();
        format!(
            "{name} {} {} {} {} {} {} {}\n",
            self.messages,
            self.octets,
            self.oldest,
            self.next,
            self.wake,
            u8::from(self.many),
            if domains.is_empty() {
                ".".to_string()
            } else {
                domains.join(",")
            }
        )
    }

    /// One line: the destination's index name and its summary.
    pub fn decode(line: &[u8]) -> Option<(String, Summary)> {
        if line.len() > 16 * MAX_LINE {
            return None;
        }
        let line = std::str::from_utf8(line).ok()?;
        let f: Vec<&str> = line.split(' ').collect();
        let [name, messages, octets, oldest, next, wake, many, domains] = f[..] else {
            return None;
        };
        index_key(name)?;
        let domains = if domains == "." {
            Vec::new()
        } else {
            domains
                .split(',')
                .take(64)
                .map(|d| envelope::decode(d).ok())
                .collect::<Option<Vec<String>>>()?
        };
        Some((
            name.to_string(),
            Summary {
                messages: messages.parse().ok()?,
                octets: octets.parse().ok()?,
                oldest: oldest.parse().ok()?,
                next: next.parse().ok()?,
                wake: wake.parse().ok()?,
                domains,
                many: match many {
                    "0" => false,
                    "1" => true,
                    _ => return None,
                },
            },
        ))
    }
}

/// A summary file: the highest message id parked, and every destination's line
/// (the file starts with `last <id>` and ends with `end`: a torn or cut file, or
/// one line that does not parse, and it is not used at all).
pub fn parse_summary(data: &[u8]) -> Option<(MessageId, Vec<(String, Summary)>)> {
    let body = data.strip_suffix(b"end\n")?;
    if !body.ends_with(b"\n") {
        return None; // "end" must be a line of its own
    }
    let mut lines = body.split(|&b| b == b'\n');
    let first = std::str::from_utf8(lines.next()?).ok()?;
    let last = MessageId::parse(first.strip_prefix("last ")?)?;
    let mut out = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        out.push(Summary::decode(line)?);
    }
    Some((last, out))
}

/// The entries of an index file: the last line of each message wins, oldest
/// message first; lines that do not parse (a torn last line) are skipped.
pub fn parse_index(data: &[u8]) -> Vec<IndexEntry> {
    let mut by_id: BTreeMap<MessageId, IndexEntry> = BTreeMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Some(e) = IndexEntry::decode(line) {
            by_id.insert(e.id, e);
        }
    }
    by_id.into_values().collect()
}

fn name_part(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The index file name of a destination (`None`: too long to be one).
pub fn index_name(channel: &str, host: &str) -> Option<String> {
    let mut n = String::new();
    name_part(channel, &mut n);
    n.push('!');
    name_part(host, &mut n);
    (n.len() <= MAX_NAME && !channel.is_empty()).then_some(n)
}

/// The destination an index file name stands for.
pub fn index_key(name: &str) -> Option<(String, String)> {
    let (c, h) = name.split_once('!')?;
    let c = envelope::decode(c).ok()?;
    let h = envelope::decode(h).ok()?;
    (index_name(&c, &h).as_deref() == Some(name)).then_some((c, h))
}

/// This boot's id, to tell a restart after kill -9 (page cache intact) from one
/// after a power loss.
fn boot_id() -> Option<String> {
    crate::sys::boot_id()
}

impl Spool {
    pub(super) fn hold_path(&self, id: MessageId) -> PathBuf {
        self.hold.join(id.to_string())
    }

    fn index_path(&self, name: &str) -> PathBuf {
        self.index.join(name)
    }

    /// Whether `hold/<id>` exists.
    pub fn is_parked(&self, id: MessageId) -> bool {
        self.hold_path(id).exists()
    }

    /// Whether nothing is parked (a spool that never held anything needs no
    /// rebuild of its index).
    pub fn hold_is_empty(&self) -> bool {
        fs::read_dir(&self.hold).map_or(true, |mut d| d.next().is_none())
    }

    /// Whether the index may be trusted now (module header): written by a clean
    /// stop, or by a daemon of this boot.
    pub fn index_trusted(&self) -> bool {
        let Ok(s) = fs::read_to_string(self.index.join(".state")) else {
            return false;
        };
        let s = s.trim();
        s == "clean" || boot_id().is_some_and(|b| s == format!("boot {b}"))
    }

    /// Records the index as written by a clean stop (`clean`: every index file was
    /// fsynced first) or by a daemon running in this boot.
    pub fn mark_index(&mut self, clean: bool) -> Result<(), SpoolError> {
        if clean {
            for name in std::mem::take(&mut self.dirty) {
                if let Ok(f) = fs::File::open(self.index_path(&name)) {
                    let _ = f.sync_all();
                }
            }
            for d in [&self.index, &self.hold, &self.queue] {
                fsync_dir(d).map_err(|e| SpoolError::new("fsync", d, e))?;
            }
        }
        let text = if clean {
            "clean\n".to_string()
        } else {
            format!("boot {}\n", boot_id().unwrap_or_default())
        };
        let tmp = self.index.join(".state.tmp");
        let dest = self.index.join(".state");
        fs::write(&tmp, text).map_err(|e| SpoolError::new("write", &tmp, e))?;
        if let Ok(f) = fs::File::open(&tmp) {
            let _ = f.sync_all();
        }
        fs::rename(&tmp, &dest).map_err(|e| SpoolError::new("rename", &dest, e))?;
        fsync_dir(&self.index).map_err(|e| SpoolError::new("fsync", &self.index, e))
    }

    /// Parks a committed message: its line is appended to the index of each held
    /// destination it waits in, then `queue/<id>` moves to `hold/<id>` (unless it is
    /// there already: a rebuild).
    pub fn park(
        &mut self,
        id: MessageId,
        entries: &[(String, IndexEntry)],
    ) -> Result<(), SpoolError> {
        for (name, e) in entries {
            append(&self.index_path(name), e.encode().as_bytes())?;
            self.dirty.insert(name.clone());
        }
        let from = self.queue_path(id);
        if from.exists() {
            let to = self.hold_path(id);
            if to.exists() {
                // Never over another parked message (an id reused after the clock
                // went back): this one stays in queue/ and in memory.
                let e = io::Error::from(io::ErrorKind::AlreadyExists);
                return Err(SpoolError::new("rename", &to, e));
            }
            fs::rename(&from, &to).map_err(|e| SpoolError::new("rename", &from, e))?;
        }
        Ok(())
    }

    /// Takes a parked message back into `queue/` for delivery: read, verified (a
    /// file that fails goes to `corrupt/`, `Err` with the reason) and renamed.
    /// `Ok(None)`: it is not parked (gone, or already back in `queue/`).
    pub fn unpark(&mut self, id: MessageId) -> Result<Option<QueueEntry>, String> {
        let p = self.hold_path(id);
        let data = match read_file(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("read {}: {e}", p.display())),
        };
        let envelope = match verified(&data) {
            Ok(env) => env,
            Err(e) => {
                let dest = self.corrupt.join(id.to_string());
                log::warn!("spool quarantined file={} reason=\"{}\"", p.display(), e.0);
                let _ = fs::rename(&p, &dest);
                return Err(e.0);
            }
        };
        let to = self.queue_path(id);
        fs::rename(&p, &to).map_err(|e| format!("rename {}: {e}", p.display()))?;
        Ok(Some(QueueEntry {
            id,
            size: data.len() as u64,
            envelope,
            state: self.journal(&id.to_string()),
        }))
    }

    /// The names of every index file.
    pub fn index_names(&self) -> Vec<String> {
        list_dir(&self.index)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .collect()
    }

    /// The entries of one destination's index.
    pub fn read_index(&self, name: &str) -> Vec<IndexEntry> {
        read_file(&self.index_path(name))
            .map(|d| parse_index(&d))
            .unwrap_or_default()
    }

    /// Which file a destination's index is now (its inode): a rewrite makes a new
    /// one, and a reader's offset into the old one means nothing there.
    pub fn index_ino(&self, name: &str) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(self.index_path(name)).map_or(0, |m| m.ino())
    }

    /// Up to `max` lines of a destination's index from octet `offset` on, as
    /// entries each with the offset just after its line (lines that do not parse
    /// are skipped), the offset after the last whole line read, and whether the
    /// file ended there. A release reads its destination this way, chunk by chunk,
    /// without holding the whole index.
    pub fn read_index_from(
        &self,
        name: &str,
        offset: u64,
        max: usize,
    ) -> (Vec<(IndexEntry, u64)>, u64, bool) {
        use std::io::{BufRead, Seek};
        let Ok(mut f) = fs::File::open(self.index_path(name)) else {
            return (Vec::new(), offset, true);
        };
        if f.seek(io::SeekFrom::Start(offset)).is_err() {
            return (Vec::new(), offset, true);
        }
        let mut r = io::BufReader::new(f);
        let (mut out, mut at, mut line) = (Vec::new(), offset, Vec::new());
        for _ in 0..max {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(n) if n > 0 && line.ends_with(b"\n") => {
                    at += n as u64;
                    if let Some(e) = IndexEntry::decode(&line[..n - 1]) {
                        out.push((e, at));
                    }
                }
                // The end, or a torn last line (a crash while it was appended).
                _ => return (out, at, true),
            }
        }
        (out, at, false)
    }

    /// Replaces a destination's index with `keep` (temp file, rename; removed when
    /// empty).
    pub fn rewrite_index(&mut self, name: &str, keep: &[IndexEntry]) -> Result<(), SpoolError> {
        let p = self.index_path(name);
        if keep.is_empty() {
            self.dirty.remove(name);
            return match fs::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(SpoolError::new("unlink", &p, e))
                }
                _ => Ok(()),
            };
        }
        let tmp = self.index.join(format!(".{name}.tmp"));
        let text: String = keep.iter().map(IndexEntry::encode).collect();
        fs::write(&tmp, text).map_err(|e| SpoolError::new("write", &tmp, e))?;
        fs::rename(&tmp, &p).map_err(|e| SpoolError::new("rename", &p, e))?;
        self.dirty.insert(name.to_string());
        Ok(())
    }

    /// Writes every destination's summary (a clean stop, before `.state` says so),
    /// with the id generator's position (no later id may collide with a parked one).
    pub fn write_summary(&self, all: &[(String, Summary)]) -> Result<(), SpoolError> {
        let mut text = format!("last {}\n", MessageId(self.last_id));
        text.extend(all.iter().map(|(n, s)| s.encode(n)));
        text.push_str("end\n");
        let tmp = self.index.join(".summary.tmp");
        let dest = self.index.join(".summary");
        fs::write(&tmp, text).map_err(|e| SpoolError::new("write", &tmp, e))?;
        if let Ok(f) = fs::File::open(&tmp) {
            f.sync_all()
                .map_err(|e| SpoolError::new("fsync", &tmp, e))?;
        }
        fs::rename(&tmp, &dest).map_err(|e| SpoolError::new("rename", &dest, e))
    }

    /// The summaries a clean stop wrote, when `.state` still says `clean`; the file
    /// is removed (it is true only until the daemon changes something).
    pub fn take_summary(&mut self) -> Option<Vec<(String, Summary)>> {
        let clean =
            fs::read_to_string(self.index.join(".state")).is_ok_and(|s| s.trim() == "clean");
        let p = self.index.join(".summary");
        let data = read_file(&p).ok();
        let _ = fs::remove_file(&p);
        if !clean {
            return None;
        }
        let (last, all) = parse_summary(&data?)?;
        self.seen_id(last);
        Some(all)
    }

    /// Starts a rebuild: the index is untrusted from now until [`Spool::mark_index`]
    /// (`.state` goes first), and every index file is removed.
    pub fn clear_index(&mut self) -> Result<(), SpoolError> {
        let state = self.index.join(".state");
        match fs::remove_file(&state) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(SpoolError::new("unlink", &state, e))
            }
            _ => {}
        }
        fsync_dir(&self.index).map_err(|e| SpoolError::new("fsync", &self.index, e))?;
        for name in list_dir(&self.index)? {
            let _ = fs::remove_file(self.index.join(name));
        }
        self.dirty.clear();
        Ok(())
    }

    /// Every message in `hold/`, oldest first, read and verified (a file that fails
    /// goes to `corrupt/`), for a rebuild of the index; moves the id generator past
    /// each.
    pub fn for_each_parked(&mut self, mut f: impl FnMut(QueueEntry)) -> Result<usize, SpoolError> {
        let mut n = 0;
        for name in list_dir(&self.hold)? {
            let Some(id) = MessageId::parse(&name) else {
                let p = self.hold.join(&name);
                let _ = fs::rename(&p, self.corrupt.join(&name));
                continue;
            };
            self.last_id = self.last_id.max(id.0);
            match self.unpark_read(id) {
                Some(e) => {
                    n += 1;
                    f(e)
                }
                None => continue,
            }
        }
        Ok(n)
    }

    /// A parked message read and verified in place (a rebuild); a bad one is
    /// quarantined.
    fn unpark_read(&self, id: MessageId) -> Option<QueueEntry> {
        let p = self.hold_path(id);
        let data = read_file(&p).ok()?;
        match verified(&data) {
            Ok(envelope) => Some(QueueEntry {
                id,
                size: data.len() as u64,
                envelope,
                state: self.journal(&id.to_string()),
            }),
            Err(e) => {
                log::warn!("spool quarantined file={} reason=\"{}\"", p.display(), e.0);
                let _ = fs::rename(&p, self.corrupt.join(id.to_string()));
                None
            }
        }
    }

    /// Moves the id generator past `id` (ids read from the index at start).
    pub fn seen_id(&mut self, id: MessageId) {
        self.last_id = self.last_id.max(id.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, domain: &str) -> IndexEntry {
        IndexEntry {
            id: MessageId(id),
            arrival: 1_700_000_000,
            size: 1234,
            tried: id.is_multiple_of(2),
            reported: 1,
            domain: domain.into(),
            next: id * 3,
        }
    }

    #[test]
    fn index_lines_round_trip_and_the_last_line_wins() {
        let a = entry(0x10, "client.dom");
        let b = entry(0x20, "");
        let mut a2 = a.clone();
        a2.reported = 2;
        let text = format!(
            "{}{}junk line\n{}{}",
            a.encode(),
            b.encode(),
            a2.encode(),
            "0000000000000030 1 2"
        );
        let l = parse_index(text.as_bytes());
        assert_eq!(l, vec![a2, b]);
        assert_eq!(IndexEntry::decode(b"0000000000000010 1 2 3 0 x"), None);
        // A line without its next-try field (held mail) reads as 0.
        let six = IndexEntry::decode(b"0000000000000010 1 2 1 0 x").unwrap();
        assert_eq!((six.next, six.tried), (0, true));
        let odd = entry(0x40, "we ird\n.dom");
        assert_eq!(
            IndexEntry::decode(odd.encode().trim_end().as_bytes()),
            Some(odd)
        );
    }

    #[test]
    fn summaries_round_trip_and_a_cut_file_is_not_used() {
        let s = Summary {
            messages: 3,
            octets: 999,
            oldest: 10,
            next: 20,
            wake: 0,
            domains: vec!["c.dom".into(), "we,ird".into()],
            many: false,
        };
        let text = format!(
            "last 00000000000000ff\n{}{}end\n",
            s.encode("smtp!c.dom"),
            Summary::default().encode("smtp!x")
        );
        let (last, l) = parse_summary(text.as_bytes()).unwrap();
        assert_eq!(last, MessageId(255));
        assert_eq!(l[0], ("smtp!c.dom".to_string(), s));
        assert_eq!(l[1].1, Summary::default());
        assert_eq!(parse_summary(&text.as_bytes()[..text.len() - 4]), None);
        assert_eq!(
            parse_summary(b"last 00000000000000ff\nbad line\nend\n"),
            None
        );
        assert_eq!(parse_summary(b"smtp!x 1 1 1 1 0 0 .\nend\n"), None);
    }

    #[test]
    fn index_names_are_safe_file_names_and_round_trip() {
        let n = index_name("smtp-etrn", "client.dom").unwrap();
        assert_eq!(n, "smtp-etrn!client.dom");
        assert_eq!(
            index_key(&n),
            Some(("smtp-etrn".into(), "client.dom".into()))
        );
        let n = index_name("local", "../x y!").unwrap();
        assert!(!n.contains('/') && !n.contains(' '), "{n}");
        assert_eq!(index_key(&n), Some(("local".into(), "../x y!".into())));
        assert_eq!(index_name("smtp", &"a".repeat(300)), None);
        assert_eq!(index_key("no-separator"), None);
        assert_eq!(index_key("a!b%2"), None);
    }
}
