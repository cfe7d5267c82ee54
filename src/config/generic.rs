//! `db/generic` (DESIGN.md §4.6, §5.13): masquerading of mail leaving over SMTP,
//! Postfix's `smtp_generic_maps` and dma's `MASQUERADE` — a router's
//! `root@router.lan` must reach the ISP's relay as an address the relay accepts.
//!
//! ```text
//! root@router.lan     alerts@example.org
//! @router.lan         @example.org
//! ```
//!
//! Keys are an address or `@domain` (case-insensitive, a trailing dot ignored);
//! values an address (the whole address is replaced) or `@domain` (the local part
//! stays). The exact address is looked up first, then `@domain` of exactly that
//! domain. Only the envelope sender and the `From:`, `Sender:` and `Reply-To:`
//! fields of mail sent over SMTP are rewritten (`outgoing`); local delivery keeps
//! the original.

use std::collections::HashMap;
use std::path::Path;

use crate::lex::ConfigError;
use crate::vocab::{Domain, Mailbox};

/// Most entries.
pub const MAX_ENTRIES: usize = 100_000;

/// What a key is rewritten to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    /// The whole address.
    Address(Mailbox),
    /// The domain; the local part stays.
    Domain(Domain),
}

/// The parsed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generic {
    exact: HashMap<String, Value>,
    domains: HashMap<String, Value>,
}

/// An address or `@domain` of the file.
fn side(s: &str) -> Option<Result<Mailbox, Domain>> {
    match s.strip_prefix('@') {
        Some(d) => Domain::parse(d.trim_end_matches('.')).ok().map(Err),
        None => {
            let (local, d) = s.rsplit_once('@')?;
            let m = Mailbox::parse(&format!("{local}@{}", d.trim_end_matches('.'))).ok()?;
            Some(Ok(m))
        }
    }
}

impl Generic {
    /// Parses the file's text; every bad line is reported with `file:line`.
    pub fn parse(path: &Path, text: &str) -> Result<Generic, Vec<ConfigError>> {
        let mut g = Generic::default();
        let mut errors = Vec::new();
        for l in crate::lex::lines(text) {
            let line = l.no;
            let words: Vec<&str> = l.text.split_whitespace().collect();
            let [key, value] = words[..] else {
                errors.push(ConfigError::at(
                    path,
                    line,
                    "expected 'address-or-@domain address-or-@domain'",
                ));
                continue;
            };
            let (Some(k), Some(v)) = (side(key), side(value)) else {
                errors.push(ConfigError::at(
                    path,
                    line,
                    format!(
                        "'{}' or '{}' is not an address or @domain",
                        key.escape_debug(),
                        value.escape_debug()
                    ),
                ));
                continue;
            };
            if g.exact.len() + g.domains.len() >= MAX_ENTRIES {
                errors.push(ConfigError::at(
                    path,
                    line,
                    format!("more than {MAX_ENTRIES} entries"),
                ));
                break;
            }
            let v = match v {
                Ok(m) => Value::Address(m),
                Err(d) => Value::Domain(d),
            };
            // The first of two identical keys wins, as in the routes file.
            match k {
                Ok(m) => {
                    g.exact
                        .entry(m.to_string().to_ascii_lowercase())
                        .or_insert(v);
                }
                Err(d) => {
                    g.domains
                        .entry(d.as_str().to_ascii_lowercase())
                        .or_insert(v);
                }
            }
        }
        if errors.is_empty() {
            Ok(g)
        } else {
            Err(errors)
        }
    }

    /// Whether there is nothing to rewrite.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.domains.is_empty()
    }

    /// What `m` becomes, if the file rewrites it.
    pub fn rewrite(&self, m: &Mailbox) -> Option<Mailbox> {
        let value = self
            .exact
            .get(&m.to_string().to_ascii_lowercase())
            .or_else(|| {
                let d = m.domain()?;
                self.domains.get(&d.as_str().to_ascii_lowercase())
            })?;
        match value {
            Value::Address(a) => Some(a.clone()),
            Value::Domain(d) => Mailbox::parse(&format!("{}@{d}", m.local())).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(text: &str) -> Generic {
        Generic::parse(Path::new("generic"), text).unwrap()
    }

    fn rw(g: &Generic, a: &str) -> Option<String> {
        g.rewrite(&Mailbox::parse(a).unwrap())
            .map(|m| m.to_string())
    }

    #[test]
    fn exact_first_then_the_domain_with_the_local_part_kept() {
        let g = g(
            "# a router\nroot@router.lan alerts@example.org\n@router.lan @example.org\n\
                   @Other.LAN. everyone@example.org\n",
        );
        assert_eq!(
            rw(&g, "root@router.lan").as_deref(),
            Some("alerts@example.org")
        );
        assert_eq!(
            rw(&g, "ROOT@Router.LAN").as_deref(),
            Some("alerts@example.org")
        );
        assert_eq!(
            rw(&g, "cron@router.lan").as_deref(),
            Some("cron@example.org")
        );
        assert_eq!(
            rw(&g, "x@other.lan").as_deref(),
            Some("everyone@example.org")
        );
        // Only that domain, not its subdomains or others.
        assert_eq!(rw(&g, "x@sub.router.lan"), None);
        assert_eq!(rw(&g, "x@example.org"), None);
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let e = Generic::parse(
            Path::new("db/generic"),
            "a@b c@d\nnot-an-address x@y\nonly@one\n",
        )
        .unwrap_err();
        assert_eq!(e.len(), 2);
        assert!(e[0].to_string().starts_with("db/generic:2:"), "{}", e[0]);
        assert!(e[1].to_string().starts_with("db/generic:3:"), "{}", e[1]);
    }
}
