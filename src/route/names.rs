//! `$MAILVAR/db/localnames` (one domain per line, an optional canonical name after it,
//! reference/zmailer.md §2.1) and `$MAILVAR/db/aliases` (`name: target, target…`,
//! indented lines continue the previous entry).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::lex::{self, ConfigError};
use crate::vocab::{Domain, Mailbox};

/// Parses the localnames file into the set of our domains.
pub fn parse_localnames(path: &Path, text: &str) -> Result<HashSet<Domain>, Vec<ConfigError>> {
    let mut set = HashSet::new();
    let mut errors = Vec::new();
    for line in lex::lines(text) {
        let mut words = line.text.split_whitespace();
        let name = words.next().unwrap_or_default();
        let canonical = words.next();
        let checked = Domain::parse_relaxed(name).and_then(|d| {
            if let Some(c) = canonical {
                Domain::parse_relaxed(c)?;
            }
            Ok(d)
        });
        match (checked, words.next()) {
            (Ok(d), None) => {
                set.insert(d);
            }
            (Ok(_), Some(extra)) => errors.push(ConfigError::at(
                path,
                line.no,
                format!("unexpected '{extra}'"),
            )),
            (Err(e), _) => errors.push(ConfigError::at(
                path,
                line.no,
                format!("bad domain '{}': {e}", line.text),
            )),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// One target of an alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasTarget {
    /// A local user (or another alias).
    Local(String),
    /// A remote address, routed normally.
    Address(Mailbox),
    /// `/dev/null`: taken and dropped.
    Discard,
    /// An absolute path: the message is appended as to an mbox, as `owner` (the
    /// owner of the file that names it; root's is run as `nobody`).
    File {
        /// The path.
        path: String,
        /// The uid of the aliases or include file it came from.
        owner: u32,
    },
    /// `|command`: run with the message on its stdin, as `owner` (as for files).
    Command {
        /// The command line.
        cmd: String,
        /// The uid of the aliases or include file it came from.
        owner: u32,
    },
    /// `:include:/path`: the targets listed in that file (read when the aliases
    /// are loaded, [`load_aliases`]).
    Include(String),
}

/// The owner of a target until its file's owner is known.
const NO_OWNER: u32 = u32::MAX;
/// Most nested `:include:` files.
pub const MAX_INCLUDE_DEPTH: usize = 3;
/// Largest `:include:` file read.
pub const MAX_INCLUDE_SIZE: u64 = 1 << 20;

/// Splits a target list at the commas outside double quotes.
fn split_targets(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in list.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(list[start..].trim());
    out
}

/// One target as written (quotes already removed).
pub fn parse_target(t: &str) -> Result<AliasTarget, String> {
    if t.is_empty() {
        return Err("empty target".into());
    }
    if t == "/dev/null" {
        return Ok(AliasTarget::Discard);
    }
    if let Some(cmd) = t.strip_prefix('|') {
        let cmd = cmd.trim();
        if cmd.is_empty() || cmd.len() > 1024 || cmd.bytes().any(|b| b < 0x20 && b != b'\t') {
            return Err(format!("bad command '{}'", t.escape_debug()));
        }
        return Ok(AliasTarget::Command {
            cmd: cmd.to_string(),
            owner: NO_OWNER,
        });
    }
    if let Some(path) = t.strip_prefix(":include:") {
        let path = path.trim();
        if !path.starts_with('/') || path.contains("/../") {
            return Err(format!("':include:{path}': name an absolute path"));
        }
        return Ok(AliasTarget::Include(path.to_string()));
    }
    if t.starts_with('/') {
        if t.ends_with('/') || t.contains("/../") || t.len() > 1024 || t.bytes().any(|b| b < 0x20) {
            return Err(format!("bad file target '{}'", t.escape_debug()));
        }
        return Ok(AliasTarget::File {
            path: t.to_string(),
            owner: NO_OWNER,
        });
    }
    if t.contains('@') {
        return Mailbox::parse(t.trim_start_matches('<').trim_end_matches('>'))
            .map(AliasTarget::Address)
            .map_err(|e| format!("'{t}': {e}"));
    }
    if is_local_name(t) {
        return Ok(AliasTarget::Local(t.to_ascii_lowercase()));
    }
    Err(format!("bad target '{t}'"))
}

/// Reads `db/aliases` (absent: empty) with its `:include:` files, and gives each
/// file and command target the uid of the file that names it. Include files are
/// opened without following links, must be plain files no larger than
/// [`MAX_INCLUDE_SIZE`], and nest at most [`MAX_INCLUDE_DEPTH`] deep; a problem
/// with one is a `file:line` error of the aliases line that names it.
pub fn load_aliases(path: &Path) -> Result<Aliases, Vec<ConfigError>> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Aliases::new()),
        r => r,
    };
    let text = lex::read(path).map_err(|e| vec![e])?;
    let mut map = parse_aliases(path, &text)?;
    let owner = meta.map(|m| m.uid()).unwrap_or(0);
    let lines = entry_lines(&text);
    let mut errors = Vec::new();
    for (name, targets) in map.iter_mut() {
        let no = lines.get(name).copied().unwrap_or(0);
        let mut out = Vec::new();
        if let Err(e) = resolve(std::mem::take(targets), owner, 0, &mut out) {
            errors.push(ConfigError::at(path, no, e));
        }
        *targets = out;
    }
    if errors.is_empty() {
        Ok(map)
    } else {
        Err(errors)
    }
}

/// The line each alias starts on.
fn entry_lines(text: &str) -> HashMap<String, usize> {
    lex::lines(text)
        .into_iter()
        .filter(|l| !l.indented)
        .filter_map(|l| {
            let (n, _) = l.text.split_once(':')?;
            Some((n.trim().to_ascii_lowercase(), l.no))
        })
        .collect()
}

/// Sets owners and replaces includes by what they list.
fn resolve(
    targets: Vec<AliasTarget>,
    owner: u32,
    depth: usize,
    out: &mut Vec<AliasTarget>,
) -> Result<(), String> {
    for t in targets {
        match t {
            AliasTarget::File { path, .. } => out.push(AliasTarget::File { path, owner }),
            AliasTarget::Command { cmd, .. } => out.push(AliasTarget::Command { cmd, owner }),
            AliasTarget::Include(p) if depth >= MAX_INCLUDE_DEPTH => {
                return Err(format!(
                    ":include:{p}: includes nest deeper than {MAX_INCLUDE_DEPTH}"
                ))
            }
            AliasTarget::Include(p) => {
                let (text, uid) = read_include(&p).map_err(|e| format!(":include:{p}: {e}"))?;
                let mut listed = Vec::new();
                for line in lex::lines(&text) {
                    for t in split_targets(line.text) {
                        let t = t
                            .strip_prefix('"')
                            .and_then(|x| x.strip_suffix('"'))
                            .unwrap_or(t);
                        if t.is_empty() {
                            continue;
                        }
                        listed.push(
                            parse_target(t)
                                .map_err(|e| format!(":include:{p} line {}: {e}", line.no))?,
                        );
                    }
                }
                resolve(listed, uid, depth + 1, out)?;
            }
            other => out.push(other),
        }
    }
    Ok(())
}

/// An include file's text and owner, opened the safe way.
fn read_include(p: &str) -> Result<(String, u32), String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)
        .map_err(|e| crate::vocab::os_error(&e))?;
    let m = f.metadata().map_err(|e| crate::vocab::os_error(&e))?;
    if !m.is_file() {
        return Err("not a plain file".into());
    }
    if m.len() > MAX_INCLUDE_SIZE {
        return Err(format!("larger than {MAX_INCLUDE_SIZE} octets"));
    }
    let mut text = String::new();
    f.take(MAX_INCLUDE_SIZE)
        .read_to_string(&mut text)
        .map_err(|e| crate::vocab::os_error(&e))?;
    Ok((text, m.uid()))
}

/// The aliases table: lower-case name to targets.
pub type Aliases = HashMap<String, Vec<AliasTarget>>;

/// A local name: letters, digits and `._-+`, where a letter may be any
/// alphanumeric character (a UTF-8 local part reaches a user through an alias,
/// RFC 6531), at most 64 octets.
fn is_local_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || "._-+".contains(c)
                || (!c.is_ascii() && c.is_alphanumeric())
        })
}

/// Parses the aliases file. Program, file and include targets are refused: etrnd
/// delivers to mailboxes and addresses only.
pub fn parse_aliases(path: &Path, text: &str) -> Result<Aliases, Vec<ConfigError>> {
    let mut entries: Vec<(usize, String)> = Vec::new();
    let mut errors = Vec::new();
    for line in lex::lines(text) {
        match entries.last_mut() {
            Some((_, acc)) if line.indented => {
                acc.push(' ');
                acc.push_str(line.text);
            }
            _ => entries.push((line.no, line.text.to_string())),
        }
    }
    let mut map = Aliases::new();
    for (no, entry) in entries {
        let Some((name, targets)) = entry.split_once(':') else {
            errors.push(ConfigError::at(path, no, "expected 'name: target, target'"));
            continue;
        };
        let name = name.trim().to_lowercase();
        if !is_local_name(&name) {
            errors.push(ConfigError::at(
                path,
                no,
                format!("bad alias name '{name}'"),
            ));
            continue;
        }
        let mut list = Vec::new();
        for t in split_targets(targets) {
            // sendmail and ZMailer quote targets with spaces, commas or a '|'.
            let t = t
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(t);
            match parse_target(t) {
                Ok(x) => list.push(x),
                Err(e) => errors.push(ConfigError::at(path, no, e)),
            }
        }
        if map.contains_key(&name) {
            errors.push(ConfigError::at(
                path,
                no,
                format!("alias '{name}' defined twice"),
            ));
            continue;
        }
        map.insert(name, list);
    }
    if errors.is_empty() {
        Ok(map)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localnames() {
        let s =
            parse_localnames(Path::new("l"), "client.dom\nMAIL.Client.Dom client.dom\n").unwrap();
        assert!(s.contains(&Domain::parse("mail.client.dom").unwrap()));
        let e = parse_localnames(Path::new("l"), "ok.dom\nbad..dom\n").unwrap_err();
        assert_eq!(e[0].line, 2);
    }

    #[test]
    fn aliases_with_continuation() {
        let a = parse_aliases(
            Path::new("a"),
            "Postmaster: root\nstaff: alice,\n  bob@remote.example\n",
        )
        .unwrap();
        assert_eq!(a["postmaster"], vec![AliasTarget::Local("root".into())]);
        assert_eq!(a["staff"].len(), 2);
    }

    #[test]
    fn alias_targets_of_every_kind() {
        let a = parse_aliases(
            Path::new("a"),
            "n: /dev/null
f: /var/spool/archive
p: \"|/usr/bin/x -a 1, 2\", root
i: :include:/etc/l
",
        )
        .unwrap();
        assert_eq!(a["n"], vec![AliasTarget::Discard]);
        assert!(
            matches!(&a["f"][0], AliasTarget::File { path, .. } if path == "/var/spool/archive")
        );
        assert!(
            matches!(&a["p"][0], AliasTarget::Command { cmd, .. } if cmd == "/usr/bin/x -a 1, 2"),
            "a quoted comma stays in the command: {:?}",
            a["p"]
        );
        assert_eq!(a["p"][1], AliasTarget::Local("root".into()));
        assert_eq!(a["i"], vec![AliasTarget::Include("/etc/l".into())]);
        let e = parse_aliases(
            Path::new("a"),
            "x: |\ny: /tmp/\nz: :include:relative\nw: /a/../b\n",
        )
        .unwrap_err();
        let lines: Vec<_> = e.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4]);
    }

    #[test]
    fn includes_are_read_with_their_owner_and_bounded() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("etrnd-incl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("list");
        std::fs::write(
            &list,
            "# members\nalice, bob@remote.example\n\"|/bin/cat\"\n",
        )
        .unwrap();
        let aliases = dir.join("aliases");
        std::fs::write(
            &aliases,
            format!(
                "l: :include:{}\nloop: :include:{}/self\n",
                list.display(),
                dir.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("self"),
            format!(":include:{}/self\n", dir.display()),
        )
        .unwrap();
        let e = load_aliases(&aliases).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].line, 2,
            "the nesting is the loop line's error: {}",
            e[0]
        );
        std::fs::write(&aliases, format!("l: :include:{}\n", list.display())).unwrap();
        let a = load_aliases(&aliases).unwrap();
        let me = std::fs::metadata(&list).unwrap().uid();
        assert_eq!(a["l"].len(), 3);
        assert!(
            matches!(&a["l"][2], AliasTarget::Command { cmd, owner } if cmd == "/bin/cat" && *owner == me)
        );
        // A link is not followed.
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&list, &link).unwrap();
        std::fs::write(&aliases, format!("l: :include:{}\n", link.display())).unwrap();
        assert!(load_aliases(&aliases).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
