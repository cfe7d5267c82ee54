//! `db/authinfo` (DESIGN.md §4.5): the credentials we present to a next hop, keyed
//! like Postfix's `smtp_sasl_password_maps`: `[host]:port`, `[host]` or `host`,
//! matched against the route's host (and the port we connect to).
//!
//! ```text
//! [mail.isp.dom]:587   customer42   s3cret
//! relay.example        user         pass
//! ```
//!
//! Read by the daemon at start and on SIGHUP, under the same rule as `db/secrets`
//! (mode 0600, owner root or USER).

use std::path::Path;

use super::secrets::read_private;
use crate::lex::{self, ConfigError};

/// Most entries.
pub const MAX_ENTRIES: usize = 10_000;

/// One next hop's credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The host, lower-case, without brackets.
    pub host: String,
    /// The port, when the key named one.
    pub port: Option<u16>,
    /// The user name.
    pub user: String,
    /// The password.
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credential({}:{:?} {} <redacted>)",
            self.host, self.port, self.user
        )
    }
}

/// The parsed file.
#[derive(Debug, Clone, Default)]
pub struct AuthInfo {
    /// Entries in file order.
    pub entries: Vec<Credential>,
}

fn parse_key(k: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = lex::bracketed_key(k)?;
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ok = !host.is_empty()
        && (crate::vocab::Domain::parse(&host).is_ok() || host.parse::<std::net::IpAddr>().is_ok());
    ok.then_some((host, port))
}

impl AuthInfo {
    /// Parses the text of the file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<AuthInfo, Vec<ConfigError>> {
        let mut out = AuthInfo::default();
        let mut errors = Vec::new();
        for line in lex::lines(text) {
            let words: Vec<&str> = line.text.split_whitespace().collect();
            let err = |m: &str| ConfigError::at(path, line.no, m);
            let [key, user, password] = words[..] else {
                errors.push(err("expected: [host]:port user password"));
                continue;
            };
            let Some((host, port)) = parse_key(key) else {
                errors.push(err("bad key: write host, [host] or [host]:port"));
                continue;
            };
            if user.len() > 255 || password.len() > 255 {
                errors.push(err("user or password longer than 255 octets"));
                continue;
            }
            if out.entries.len() >= MAX_ENTRIES {
                errors.push(err("too many entries"));
                break;
            }
            out.entries.push(Credential {
                host,
                port,
                user: user.to_string(),
                password: password.as_bytes().to_vec(),
            });
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// Reads the file (a missing one is empty) under the secrets-file rule.
    pub fn load(path: &Path, owners: &[u32]) -> Result<AuthInfo, Vec<ConfigError>> {
        AuthInfo::parse(path, &read_private(path, owners).map_err(|e| vec![e])?)
    }

    /// The credentials for `host` (a route host, brackets removed) at `port`: an
    /// entry naming that port first, then one without a port.
    pub fn lookup(&self, host: &str, port: u16) -> Option<&Credential> {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        self.entries
            .iter()
            .find(|e| e.host == h && e.port == Some(port))
            .or_else(|| {
                self.entries
                    .iter()
                    .find(|e| e.host == h && e.port.is_none())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_lookup() {
        let a = AuthInfo::parse(
            Path::new("authinfo"),
            "[mail.isp.dom]:587 cust pw1\nmail.isp.dom other pw2\n[192.0.2.1] ip pw3\n",
        )
        .unwrap();
        assert_eq!(a.lookup("mail.isp.dom", 587).unwrap().user, "cust");
        assert_eq!(a.lookup("MAIL.ISP.DOM.", 25).unwrap().user, "other");
        assert_eq!(a.lookup("192.0.2.1", 25).unwrap().user, "ip");
        assert!(a.lookup("elsewhere", 25).is_none());
        assert!(!format!("{a:?}").contains("pw1"));
    }

    #[test]
    fn bad_lines_name_their_line() {
        let e = AuthInfo::parse(
            Path::new("authinfo"),
            "[h]:0 u p\nh u\n[h:25 u p\nbad..host u p\nok u p\n",
        )
        .unwrap_err();
        let lines: Vec<usize> = e.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4]);
        assert!(e[1].to_string().starts_with("authinfo:2: "));
    }
}
