//! The account files read directly, never through NSS: `/etc/passwd`, `/etc/group`,
//! and which sources `/etc/nsswitch.conf` names for them. A static binary has no NSS
//! modules to load, and a lookup through NSS may block on a directory server; the
//! `files` source is what every system has, and what these parsers read (DESIGN.md
//! §5.7). The files are outside input: a line that does not parse is skipped, every
//! field is bounded, and nothing here panics.

use std::path::Path;

/// The passwd file.
pub const PASSWD: &str = "/etc/passwd";
/// The group file.
pub const GROUP: &str = "/etc/group";
/// The name service switch.
pub const NSSWITCH: &str = "/etc/nsswitch.conf";

/// Longest line taken from an account file (longer lines are skipped).
const MAX_LINE: usize = 64 * 1024;
/// Most members read from one group line.
const MAX_MEMBERS: usize = 4096;

/// One passwd line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PwEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// One group line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Members by login name.
    pub members: Vec<String>,
}

/// The lines of an account file that may hold an entry: not blank, not a comment,
/// not a NIS `+`/`-` compat line, not absurdly long.
fn entry_lines(text: &[u8]) -> impl Iterator<Item = &str> {
    text.split(|&b| b == b'\n').filter_map(|l| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if l.is_empty() || l.len() > MAX_LINE || matches!(l[0], b'#' | b'+' | b'-') {
            return None;
        }
        std::str::from_utf8(l).ok()
    })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.bytes().any(|b| b.is_ascii_whitespace() || b == b'/')
}

/// Parses one passwd line (`name:password:uid:gid:gecos:home:shell`).
pub fn passwd_line(line: &str) -> Option<PwEntry> {
    let f: Vec<&str> = line.splitn(8, ':').collect();
    if f.len() != 7 || !valid_name(f[0]) {
        return None;
    }
    Some(PwEntry {
        name: f[0].to_string(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: f[5].to_string(),
    })
}

/// Parses one group line (`name:password:gid:member,member`).
pub fn group_line(line: &str) -> Option<GrEntry> {
    let f: Vec<&str> = line.splitn(5, ':').collect();
    if f.len() != 4 || !valid_name(f[0]) {
        return None;
    }
    let members = f[3]
        .split(',')
        .map(str::trim)
        .filter(|m| valid_name(m))
        .take(MAX_MEMBERS)
        .map(str::to_string)
        .collect();
    Some(GrEntry {
        name: f[0].to_string(),
        gid: f[2].parse().ok()?,
        members,
    })
}

/// Every entry of a passwd file's text, in file order, at most `max`.
pub fn parse_passwd(text: &[u8], max: usize) -> Vec<PwEntry> {
    entry_lines(text)
        .filter_map(passwd_line)
        .take(max)
        .collect()
}

/// Every entry of a group file's text, in file order, at most `max`.
pub fn parse_group(text: &[u8], max: usize) -> Vec<GrEntry> {
    entry_lines(text).filter_map(group_line).take(max).collect()
}

/// The sources `nsswitch.conf` names for `db` (`passwd`, `group`), lower case,
/// `[action]` items left out; `None` when the file does not mention `db`.
pub fn nss_sources(text: &[u8], db: &str) -> Option<Vec<String>> {
    let mut found = None;
    for line in text.split(|&b| b == b'\n').take(10_000) {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let line = line.split('#').next().unwrap_or("");
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() != db {
            continue;
        }
        let mut sources = Vec::new();
        let mut in_action = false;
        for w in rest.split_whitespace().take(64) {
            if w.starts_with('[') {
                in_action = !w.ends_with(']');
                continue;
            }
            if in_action {
                in_action = !w.ends_with(']');
                continue;
            }
            sources.push(w.to_ascii_lowercase());
        }
        found = Some(sources);
    }
    found
}

/// Whether a source list reads the local files (`files`, or `compat`, which reads
/// the same files and adds NIS, which we do not).
pub fn reads_files(sources: &[String]) -> bool {
    sources.iter().any(|s| s == "files" || s == "compat")
}

/// The sources other than the local files that `nsswitch.conf` names for `db`
/// (`ldap`, `sss`…): accounts only they hold are not seen, and the snapshot says so
/// once in the log. `systemd` (dynamic service users) is not counted: mail is not
/// delivered to those.
pub fn other_sources(db: &str) -> Vec<String> {
    let Ok(text) = std::fs::read(NSSWITCH) else {
        return Vec::new();
    };
    nss_sources(&text, db)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !matches!(s.as_str(), "files" | "compat" | "systemd"))
        .collect()
}

fn read(path: &str) -> Vec<u8> {
    // Bounded: an account file bigger than 256 MiB is read only that far.
    use std::io::Read;
    let mut out = Vec::new();
    if let Ok(f) = std::fs::File::open(Path::new(path)) {
        let _ = f.take(256 << 20).read_to_end(&mut out);
    }
    out
}

/// Every account of the passwd file, at most `max`.
pub fn accounts(max: usize) -> Vec<PwEntry> {
    parse_passwd(&read(PASSWD), max)
}

/// The first account `pick` selects, in file order (what `getpwnam` returns).
pub fn find_account(mut pick: impl FnMut(&PwEntry) -> bool) -> Option<PwEntry> {
    entry_lines(&read(PASSWD))
        .filter_map(passwd_line)
        .find(|e| pick(e))
}

/// Every group of the group file, at most `max`.
pub fn groups(max: usize) -> Vec<GrEntry> {
    parse_group(&read(GROUP), max)
}

/// The groups `user` belongs to: `gid` first, then every group listing the user as a
/// member (what `initgroups` sets), without repeats, at most `max`.
pub fn group_list(groups: &[GrEntry], user: &str, gid: u32, max: usize) -> Vec<u32> {
    let mut out = vec![gid];
    for g in groups {
        if out.len() >= max {
            break;
        }
        if g.members.iter().any(|m| m == user) && !out.contains(&g.gid) {
            out.push(g.gid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_parse_and_junk_is_skipped() {
        let text = b"# comment\nroot:x:0:0:root:/root:/bin/sh\n+nis\n\nbad line\n\
                     mail:x:8:8:Mail:/var/mail:/usr/sbin/nologin\r\nneg:x:-1:0::/:/bin/sh\n\
                     toomany:x:1:1:a:b:c:d\nu\xffx:x:5:5::/:/bin/sh\n";
        let l = parse_passwd(text, 100);
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(
            l[1],
            PwEntry {
                name: "mail".into(),
                uid: 8,
                gid: 8,
                home: "/var/mail".into()
            }
        );
        assert_eq!(parse_passwd(text, 1).len(), 1);
    }

    #[test]
    fn groups_and_memberships() {
        let text = b"mail:x:8:\nstaff:x:50:alice, bob\nwheel:*:10:bob\nstaff2:x:50:bob\n";
        let g = parse_group(text, 100);
        assert_eq!(g.len(), 4);
        assert_eq!(g[1].members, vec!["alice", "bob"]);
        assert_eq!(group_list(&g, "bob", 100, 64), vec![100, 50, 10]);
        assert_eq!(group_list(&g, "carol", 7, 64), vec![7]);
        assert_eq!(group_list(&g, "bob", 100, 2), vec![100, 50]);
    }

    #[test]
    fn nsswitch_sources_are_read_without_actions() {
        let t =
            b"# x\npasswd:   files [NOTFOUND=return] ldap   # c\ngroup: compat sss\nhosts: dns\n";
        assert_eq!(nss_sources(t, "passwd").unwrap(), vec!["files", "ldap"]);
        assert!(reads_files(&nss_sources(t, "group").unwrap()));
        assert_eq!(nss_sources(t, "shadow"), None);
        let t = b"passwd: [ NOTFOUND=continue ] sss\n";
        assert_eq!(nss_sources(t, "passwd").unwrap(), vec!["sss"]);
    }
}
