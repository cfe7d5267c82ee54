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
}

/// The aliases table: lower-case name to targets.
pub type Aliases = HashMap<String, Vec<AliasTarget>>;

fn is_local_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
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
        let name = name.trim().to_ascii_lowercase();
        if !is_local_name(&name) {
            errors.push(ConfigError::at(
                path,
                no,
                format!("bad alias name '{name}'"),
            ));
            continue;
        }
        let mut list = Vec::new();
        for t in targets.split(',').map(str::trim) {
            // sendmail and ZMailer quote targets with spaces or a '|'.
            let t = t
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(t);
            let unsupported = if t == "/dev/null" {
                Some("/dev/null (discard) targets are not supported yet")
            } else if t.starts_with('|') {
                Some("program targets are not supported yet")
            } else if t.starts_with(":include:") {
                Some(":include: targets are not supported yet")
            } else if t.starts_with('/') {
                Some("file targets are not supported yet")
            } else {
                None
            };
            if t.is_empty() {
                errors.push(ConfigError::at(path, no, "empty target"));
            } else if let Some(why) = unsupported {
                errors.push(ConfigError::at(path, no, format!("'{t}': {why}")));
            } else if t.contains('@') {
                match Mailbox::parse(t.trim_start_matches('<').trim_end_matches('>')) {
                    Ok(m) => list.push(AliasTarget::Address(m)),
                    Err(e) => errors.push(ConfigError::at(path, no, format!("'{t}': {e}"))),
                }
            } else if is_local_name(t) {
                list.push(AliasTarget::Local(t.to_ascii_lowercase()));
            } else {
                errors.push(ConfigError::at(path, no, format!("bad target '{t}'")));
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
    fn aliases_refuse_programs() {
        let e =
            parse_aliases(Path::new("a"), "x: |/bin/sh\ny: /tmp/f\nz: :include:/l\n").unwrap_err();
        let lines: Vec<_> = e.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1, 2, 3]);
    }
}
