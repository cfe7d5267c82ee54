//! `db/authinfo` (DESIGN.md §4.5): the credentials we present to a next hop, keyed
//! like Postfix's `smtp_sasl_password_maps`: `[host]:port`, `[host]` or `host`,
//! matched against the route's host (and the port we connect to).
//!
//! ```text
//! [mail.isp.dom]:587   customer42   s3cret
//! relay.example        user         pass          mechs=PLAIN,LOGIN
//! [smtp.gmail.com]:587 me@gmail.com token=|/usr/local/bin/oauth-token me mechs=XOAUTH2
//! ```
//!
//! Instead of a password, `token=|COMMAND ARGS…` names a command that prints an
//! OAuth 2.0 access token (msmtp's `passwordeval`), used with OAUTHBEARER and XOAUTH2;
//! the auth helper runs it when a delivery needs a token (as `USER`, with a clean
//! environment and a time limit) and keeps the token a few minutes. `mechs=` pins the
//! mechanisms tried, in order (default: CRAM-MD5, PLAIN, LOGIN for a password,
//! OAUTHBEARER, XOAUTH2 for a token).
//!
//! Read by the daemon at start and on SIGHUP, under the same rule as `db/secrets`
//! (mode 0600, owner root or USER).

use std::path::Path;

use super::secrets::read_private;
use crate::lex::{self, ConfigError};

/// Most entries.
pub const MAX_ENTRIES: usize = 10_000;

/// The SASL mechanisms the client side speaks, in the default order of preference.
pub const MECHS: &[&str] = &["CRAM-MD5", "PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"];
/// Most words of a token command.
pub const MAX_COMMAND_WORDS: usize = 32;

/// What proves the identity.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A password.
    Password(Vec<u8>),
    /// A command that prints an OAuth 2.0 access token (absolute path, arguments).
    TokenCommand(Vec<String>),
}

/// One next hop's credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The host, lower-case, without brackets.
    pub host: String,
    /// The port, when the key named one.
    pub port: Option<u16>,
    /// The user name.
    pub user: String,
    /// The password or the token command.
    pub secret: Secret,
    /// The mechanisms to try, in order (upper-case names of [`MECHS`]).
    pub mechs: Vec<String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(<redacted>)"),
            Secret::TokenCommand(argv) => write!(f, "TokenCommand({argv:?})"),
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credential({}:{:?} {} <redacted> {:?})",
            self.host, self.port, self.user, self.mechs
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
            let [key, user, third, rest @ ..] = &words[..] else {
                errors.push(err(
                    "expected: [host]:port user password|token=|COMMAND [mechs=M,...]",
                ));
                continue;
            };
            let Some((host, port)) = parse_key(key) else {
                errors.push(err("bad key: write host, [host] or [host]:port"));
                continue;
            };
            // The secret, then at most a mechs= word.
            let (secret, rest): (Secret, &[&str]) = match third.strip_prefix("token=|") {
                Some(cmd) => {
                    let end = rest
                        .iter()
                        .position(|w| w.starts_with("mechs="))
                        .unwrap_or(rest.len());
                    let argv: Vec<String> = std::iter::once(cmd)
                        .chain(rest[..end].iter().copied())
                        .filter(|w| !w.is_empty())
                        .map(str::to_string)
                        .collect();
                    if !argv.first().is_some_and(|c| c.starts_with('/')) {
                        errors.push(err("token=| needs a command with an absolute path"));
                        continue;
                    }
                    if argv.len() > MAX_COMMAND_WORDS {
                        errors.push(err("the token command has too many words"));
                        continue;
                    }
                    (Secret::TokenCommand(argv), &rest[end..])
                }
                None => (Secret::Password(third.as_bytes().to_vec()), rest),
            };
            let token = matches!(secret, Secret::TokenCommand(_));
            let mechs: Vec<String> = match rest {
                [] if token => vec!["OAUTHBEARER".into(), "XOAUTH2".into()],
                [] => vec!["CRAM-MD5".into(), "PLAIN".into(), "LOGIN".into()],
                [m] if m.starts_with("mechs=") => {
                    let list: Vec<String> = m["mechs=".len()..]
                        .split(',')
                        .map(str::to_ascii_uppercase)
                        .collect();
                    if let Some(bad) = list.iter().find(|m| !MECHS.contains(&m.as_str())) {
                        errors.push(err(&format!(
                            "unknown mechanism '{}' (CRAM-MD5, PLAIN, LOGIN, OAUTHBEARER, XOAUTH2)",
                            bad.escape_debug()
                        )));
                        continue;
                    }
                    let oauth = |m: &String| m == "OAUTHBEARER" || m == "XOAUTH2";
                    if list.iter().any(|m| oauth(m) != token) {
                        errors.push(err(
                            "OAUTHBEARER and XOAUTH2 go with token=|, the others with a password",
                        ));
                        continue;
                    }
                    list
                }
                _ => {
                    errors.push(err(
                        "expected: [host]:port user password|token=|COMMAND [mechs=M,...]",
                    ));
                    continue;
                }
            };
            if user.len() > 255 || matches!(&secret, Secret::Password(p) if p.len() > 255) {
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
                secret,
                mechs,
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
        assert_eq!(
            a.lookup("mail.isp.dom", 587).unwrap().mechs,
            ["CRAM-MD5", "PLAIN", "LOGIN"]
        );
    }

    #[test]
    fn tokens_and_pinned_mechanisms() {
        let a = AuthInfo::parse(
            Path::new("authinfo"),
            "[smtp.example]:587 me@example token=|/bin/echo -n tok mechs=XOAUTH2
             [b.example] u p mechs=plain,LOGIN
[c.example] u token=|/x/get
",
        )
        .unwrap();
        let t = a.lookup("smtp.example", 587).unwrap();
        assert_eq!(
            t.secret,
            Secret::TokenCommand(vec!["/bin/echo".into(), "-n".into(), "tok".into()])
        );
        assert_eq!(t.mechs, ["XOAUTH2"]);
        assert_eq!(a.lookup("b.example", 25).unwrap().mechs, ["PLAIN", "LOGIN"]);
        assert_eq!(
            a.lookup("c.example", 25).unwrap().mechs,
            ["OAUTHBEARER", "XOAUTH2"]
        );
        let e = AuthInfo::parse(
            Path::new("authinfo"),
            "h u p mechs=GSSAPI
h u p mechs=XOAUTH2
h u token=|relative
h u p x y
",
        )
        .unwrap_err();
        let lines: Vec<usize> = e.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4]);
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
