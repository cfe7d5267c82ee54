//! `db/recipients` (DESIGN.md §4.6, §5.15): the valid recipients of routed (relay
//! and held) domains, Postfix's `relay_recipient_maps` — so a hub holds nothing for
//! an unknown user that its client would later refuse, and bounces nothing to a
//! forged sender (backscatter).
//!
//! ```text
//! alice@client.dom
//! bob@client.dom
//! @other.dom            any user of other.dom
//! ```
//!
//! Addresses and domains are case-insensitive and a domain's trailing dot is
//! ignored; a UTF-8 local part (RFC 6531) is folded as the aliases file folds it. A
//! domain that appears in the file takes only its listed users (or any, with
//! `@domain`); a domain that does not appear takes any recipient, as before.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::lex::ConfigError;
use crate::vocab::{Domain, Mailbox};

/// Most entries (a million addresses is about 60 MiB; the issue's 100,000 fit).
pub const MAX_ENTRIES: usize = 1_000_000;

/// What the file says of a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Its domain is not in the file: any user is taken, as without a file.
    Unlisted,
    /// Listed (or its domain takes any user).
    Valid,
    /// Its domain is in the file and the user is not: 550 5.1.1.
    Unknown,
}

/// The parsed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    /// Each listed domain, and whether it takes any user.
    domains: HashMap<Box<str>, bool>,
    /// Listed addresses, `local@domain`, folded.
    users: HashSet<Box<str>>,
}

/// A domain as the file and the lookup compare it.
fn domain_key(d: &Domain) -> String {
    d.as_str().to_ascii_lowercase()
}

/// An address as the file and the lookup compare it: the local part folded
/// (quotes removed), the domain lower case.
fn user_key(local: &str, d: &Domain) -> String {
    format!("{}@{}", local.to_lowercase(), domain_key(d))
}

impl Recipients {
    /// Parses the file's text; every bad line is reported with `file:line`.
    pub fn parse(path: &Path, text: &str) -> Result<Recipients, Vec<ConfigError>> {
        let mut r = Recipients::default();
        let mut errors = Vec::new();
        for l in crate::lex::lines(text) {
            // One entry per line; a quoted local part may hold spaces.
            let entry = l.text.trim();
            if r.users.len() + r.domains.len() >= MAX_ENTRIES {
                errors.push(ConfigError::at(
                    path,
                    l.no,
                    format!("more than {MAX_ENTRIES} entries"),
                ));
                break;
            }
            let bad = || {
                ConfigError::at(
                    path,
                    l.no,
                    format!("'{}' is not an address or @domain", entry.escape_debug()),
                )
            };
            if let Some(d) = entry.strip_prefix('@') {
                match Domain::parse_in(d.strip_suffix('.').unwrap_or(d), true) {
                    Ok(d) => {
                        r.domains.insert(domain_key(&d).into(), true);
                    }
                    Err(_) => errors.push(bad()),
                }
                continue;
            }
            let Some((local, d)) = entry.rsplit_once('@') else {
                errors.push(bad());
                continue;
            };
            let d = d.strip_suffix('.').unwrap_or(d);
            match Mailbox::parse_in(&format!("{local}@{d}"), true) {
                Ok(m) => {
                    let Some(d) = m.domain() else {
                        errors.push(bad());
                        continue;
                    };
                    r.domains.entry(domain_key(d).into()).or_insert(false);
                    r.users.insert(user_key(&m.local_unquoted(), d).into());
                }
                Err(_) => errors.push(bad()),
            }
        }
        if errors.is_empty() {
            Ok(r)
        } else {
            Err(errors)
        }
    }

    /// Whether the file lists nothing (every recipient is [`Check::Unlisted`]).
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Listed domains and addresses (for the operator's figures).
    pub fn len(&self) -> (usize, usize) {
        (self.domains.len(), self.users.len())
    }

    /// What the file says of `m`.
    pub fn check(&self, m: &Mailbox) -> Check {
        let Some(d) = m.domain() else {
            return Check::Unlisted;
        };
        match self.domains.get(domain_key(d).as_str()) {
            None => Check::Unlisted,
            Some(true) => Check::Valid,
            Some(false)
                if self
                    .users
                    .contains(user_key(&m.local_unquoted(), d).as_str()) =>
            {
                Check::Valid
            }
            Some(false) => Check::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Recipients, Vec<ConfigError>> {
        Recipients::parse(Path::new("db/recipients"), text)
    }

    fn check(r: &Recipients, a: &str) -> Check {
        r.check(&Mailbox::parse_in(a, true).unwrap())
    }

    #[test]
    fn listed_domains_take_their_users_only_and_others_take_anyone() {
        let r = parse(
            "# the hub's clients\nalice@Client.Dom\n\"Bob Smith\"@client.dom.\n\
             jürgen@client.dom\n@other.dom\n",
        )
        .unwrap();
        assert_eq!(check(&r, "ALICE@client.DOM"), Check::Valid);
        assert_eq!(check(&r, "\"bob smith\"@client.dom"), Check::Valid);
        assert_eq!(check(&r, "JÜRGEN@client.dom"), Check::Valid);
        assert_eq!(check(&r, "mallory@client.dom"), Check::Unknown);
        assert_eq!(check(&r, "anyone@other.dom"), Check::Valid);
        assert_eq!(check(&r, "anyone@sub.client.dom"), Check::Unlisted);
        assert_eq!(check(&r, "x@elsewhere.example"), Check::Unlisted);
        assert_eq!(r.len(), (2, 3));
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_lines_are_named_with_file_and_line() {
        let e = parse("ok@client.dom\nno-at-sign\n@\nfoo@bar baz\na@b..c\n").unwrap_err();
        let lines: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].starts_with("db/recipients:2: "), "{lines:?}");
        assert!(
            lines[2].contains("'foo@bar baz' is not an address"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_hundred_thousand_lines_load() {
        let text: String = (0..100_000)
            .map(|i| format!("user{i}@client{}.dom\n", i % 500))
            .collect();
        let r = parse(&text).unwrap();
        assert_eq!(r.len(), (500, 100_000));
        assert_eq!(check(&r, "user99999@client499.dom"), Check::Valid);
        assert_eq!(check(&r, "user99999@client498.dom"), Check::Unknown);
    }
}
