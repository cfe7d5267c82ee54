//! `db/tls_policy` (DESIGN.md §4.5): the outbound TLS level per destination, in
//! Postfix's words (`smtp_tls_policy_maps`).
//!
//! ```text
//! [mail.isp.dom]:587   encrypt
//! [mail.isp.dom]:465   encrypt implicit=yes
//! example.com          secure match=example.com:.example.com
//! .example.net         verify
//! pinned.example       fingerprint match=sha256:3b5d...|sha256:9f86...
//! ```
//!
//! Keys: `[host]:port` and `[host]` match the route host (and port); `domain`
//! matches the recipient domain, `.domain` its subdomains; the first match in that
//! order wins, else `SMTP_TLS`.

use std::path::Path;

use super::main_conf::TlsLevel;
use crate::lex::{self, ConfigError};

/// Most entries.
pub const MAX_ENTRIES: usize = 10_000;

/// What one entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The level.
    pub level: TlsLevel,
    /// `match=`: names for `secure`/`verify`, SHA-256 fingerprints (lower-case
    /// hex, no colons) for `fingerprint`.
    pub matches: Vec<String>,
    /// `implicit=yes`: TLS from the first octet (port 465, RFC 8314).
    pub implicit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Host(String, Option<u16>),
    Domain(String),
    Parent(String),
}

/// The parsed file.
#[derive(Debug, Clone, Default)]
pub struct TlsPolicy {
    entries: Vec<(Key, Policy)>,
}

fn parse_key(k: &str) -> Option<Key> {
    let k = k.to_ascii_lowercase();
    if k.starts_with('[') {
        let (h, port) = lex::bracketed_key(&k)?;
        let ok = crate::vocab::Domain::parse(h).is_ok() || h.parse::<std::net::IpAddr>().is_ok();
        return ok.then(|| Key::Host(h.trim_end_matches('.').to_string(), port));
    }
    let (parent, d) = match k.strip_prefix('.') {
        Some(d) => (true, d),
        None => (false, k.as_str()),
    };
    crate::vocab::Domain::parse(d).ok()?;
    let d = d.trim_end_matches('.').to_string();
    Some(if parent {
        Key::Parent(d)
    } else {
        Key::Domain(d)
    })
}

fn fingerprint(s: &str) -> Option<String> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s).replace(':', "");
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

impl TlsPolicy {
    /// Parses the text of the file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<TlsPolicy, Vec<ConfigError>> {
        let mut out = TlsPolicy::default();
        let mut errors = Vec::new();
        'line: for line in lex::lines(text) {
            let err = |m: String| ConfigError::at(path, line.no, m);
            let mut words = line.text.split_whitespace();
            let (Some(k), Some(l)) = (words.next(), words.next()) else {
                errors.push(err(
                    "expected: destination level [match=...] [implicit=yes]".into(),
                ));
                continue;
            };
            let Some(key) = parse_key(k) else {
                errors.push(err(format!(
                    "bad destination '{k}': write domain, .domain, [host] or [host]:port"
                )));
                continue;
            };
            let Some(level) = TlsLevel::parse(l) else {
                errors.push(err(format!(
                    "unknown level '{l}' (none, may, encrypt, fingerprint, verify, secure)"
                )));
                continue;
            };
            let mut p = Policy {
                level,
                matches: Vec::new(),
                implicit: false,
            };
            for attr in words {
                match attr.split_once('=') {
                    Some(("match", v)) => {
                        let sep = if level == TlsLevel::Fingerprint {
                            '|'
                        } else {
                            ':'
                        };
                        for m in v.split(sep).filter(|m| !m.is_empty()) {
                            let m = if level == TlsLevel::Fingerprint {
                                match fingerprint(m) {
                                    Some(f) => f,
                                    None => {
                                        errors.push(err(format!(
                                            "bad fingerprint '{m}': write sha256:64-hex"
                                        )));
                                        continue 'line;
                                    }
                                }
                            } else {
                                m.to_ascii_lowercase()
                            };
                            p.matches.push(m);
                        }
                    }
                    Some(("implicit", "yes")) => p.implicit = true,
                    Some(("implicit", "no")) => p.implicit = false,
                    _ => {
                        errors.push(err(format!(
                            "unknown attribute '{attr}' (match=, implicit=yes|no)"
                        )));
                        continue 'line;
                    }
                }
            }
            if level == TlsLevel::Fingerprint && p.matches.is_empty() {
                errors.push(err("fingerprint needs match=sha256:...".into()));
                continue;
            }
            if level == TlsLevel::None && p.implicit {
                errors.push(err("implicit=yes contradicts level none".into()));
                continue;
            }
            if out.entries.len() >= MAX_ENTRIES {
                errors.push(err("too many entries".into()));
                break;
            }
            out.entries.push((key, p));
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// Reads the file (a missing one is empty) under the secrets-file rule.
    pub fn load(path: &Path, owners: &[u32]) -> Result<TlsPolicy, Vec<ConfigError>> {
        let text = crate::auth::secrets::read_private(path, owners).map_err(|e| vec![e])?;
        TlsPolicy::parse(path, &text)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The policy for a delivery to route host `host` at `port` for recipient
    /// domain `domain`.
    pub fn lookup(&self, host: &str, port: u16, domain: &str) -> Option<&Policy> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let find =
            |f: &dyn Fn(&Key) -> bool| self.entries.iter().find(|(k, _)| f(k)).map(|(_, p)| p);
        find(&|k| matches!(k, Key::Host(h, Some(p)) if *h == host && *p == port))
            .or_else(|| find(&|k| matches!(k, Key::Host(h, None) if *h == host)))
            .or_else(|| find(&|k| matches!(k, Key::Domain(d) if *d == domain)))
            .or_else(|| {
                // The closest parent.
                let mut d = domain.as_str();
                while let Some((_, rest)) = d.split_once('.') {
                    if let Some(p) = find(&|k| matches!(k, Key::Parent(x) if x == rest)) {
                        return Some(p);
                    }
                    d = rest;
                }
                None
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_order() {
        let fp = "a".repeat(64);
        let t = TlsPolicy::parse(
            Path::new("tls_policy"),
            &format!(
                "[mail.isp.dom]:465 encrypt implicit=yes\n[mail.isp.dom] verify\n\
                 example.com secure match=example.com:.example.com\n.example.net may\n\
                 pin.example fingerprint match=sha256:{fp}\n"
            ),
        )
        .unwrap();
        let l = |h: &str, p: u16, d: &str| t.lookup(h, p, d).map(|p| (p.level, p.implicit));
        assert_eq!(
            l("mail.isp.dom", 465, "x.dom"),
            Some((TlsLevel::Encrypt, true))
        );
        assert_eq!(
            l("MAIL.ISP.DOM", 587, "x.dom"),
            Some((TlsLevel::Verify, false))
        );
        assert_eq!(
            l("mx.example.com", 25, "example.com"),
            Some((TlsLevel::Secure, false))
        );
        assert_eq!(
            t.lookup("mx", 25, "example.com").unwrap().matches,
            vec!["example.com", ".example.com"]
        );
        assert_eq!(l("mx", 25, "a.b.example.net"), Some((TlsLevel::May, false)));
        assert_eq!(l("mx", 25, "example.net"), None);
        assert_eq!(t.lookup("p", 25, "pin.example").unwrap().matches, vec![fp]);
    }

    #[test]
    fn bad_lines() {
        let e = TlsPolicy::parse(
            Path::new("tls_policy"),
            "x.dom\nx.dom strong\n[h:25 may\nx.dom may color=red\nx.dom fingerprint\n\
             x.dom fingerprint match=sha256:12\nx.dom none implicit=yes\n",
        )
        .unwrap_err();
        let lines: Vec<usize> = e.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5, 6, 7]);
        assert!(e[1].to_string().starts_with("tls_policy:2: unknown level"));
    }
}
