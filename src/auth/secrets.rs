//! `db/secrets` (DESIGN.md §4.5): who may authenticate to us, how their secret is
//! stored, and which domains each identity may ETRN or ATRN.
//!
//! ```text
//! # user      secret                              domains (what it may release)
//! client1     {CRAM-MD5}<64 hex: HMAC-MD5 contexts> client1.dom @client1.dom
//! tester      {PLAIN}not-for-production
//! alice       $y$j9T$...                          (crypt(3): PLAIN and LOGIN only)
//! ```
//!
//! The file must be a regular file of mode 0600 (or stricter) owned by root or by
//! the daemon's account: a secret anyone could read is refused, like ssh refuses a
//! readable key. Only the auth helper reads it once the daemon serves.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::md5;
use crate::lex::{self, ConfigError};

/// Longest user name (RFC 4616 §2: fields up to 255 octets must be accepted).
pub const MAX_USER: usize = 255;
/// Most entries in the file.
pub const MAX_ENTRIES: usize = 100_000;
/// Most domains per entry.
pub const MAX_DOMAINS: usize = 1_000;

/// How a secret is stored.
#[derive(Clone, PartialEq, Eq)]
pub enum Scheme {
    /// The two HMAC-MD5 contexts: serves CRAM-MD5, PLAIN and LOGIN.
    CramMd5([u32; 4], [u32; 4]),
    /// The password itself.
    Plain(Vec<u8>),
    /// A crypt(3) string: PLAIN and LOGIN only.
    Crypt(String),
}

impl std::fmt::Debug for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret, not even in a test failure.
        f.write_str(match self {
            Scheme::CramMd5(..) => "CramMd5(<redacted>)",
            Scheme::Plain(_) => "Plain(<redacted>)",
            Scheme::Crypt(_) => "Crypt(<redacted>)",
        })
    }
}

/// One identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// The user name, as the client sends it.
    pub user: String,
    /// Its stored secret.
    pub scheme: Scheme,
    /// The domains it may release: `dom` exactly, `@dom` with its subdomains.
    pub domains: Vec<String>,
}

/// The parsed file.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Entries in file order (the first of a duplicated user wins).
    pub entries: Vec<Secret>,
}

fn valid_user(u: &str) -> bool {
    !u.is_empty() && u.len() <= MAX_USER && u.bytes().all(|b| b > b' ' && b != 0x7f)
}

/// Whether `s` is a crypt(3) setting we accept: `$y$`, `$gy$`, `$7$`, `$2b$`,
/// `$2y$`, `$6$`, `$5$` (weak schemes such as MD5-crypt and DES are refused).
fn crypt_ok(s: &str) -> bool {
    ["$y$", "$gy$", "$7$", "$2b$", "$2y$", "$6$", "$5$"]
        .iter()
        .any(|p| s.starts_with(p))
        && s.len() > 8
        && s.len() <= 512
        && s.bytes().all(|b| b.is_ascii_graphic())
}

/// The scheme of a crypt(3) setting: `$y$`, `$2b$`, `$6$` …
fn crypt_scheme(setting: &str) -> &str {
    let end = setting[1..].find('$').map_or(setting.len(), |i| i + 2);
    &setting[..end]
}

/// Whether this system's crypt(3) computes hashes of `setting`'s scheme at all:
/// musl knows only `$2b$ $5$ $6$` (and answers others with a DES hash), FreeBSD
/// and NetBSD lack `$y$` and `$7$`, OpenBSD has only bcrypt. A hash it cannot
/// compute would make its user's every login "wrong password", silently. One
/// crypt(3) per scheme, remembered in `seen`.
pub(crate) fn scheme_verifies(setting: &str, seen: &mut Vec<(String, bool)>) -> bool {
    let scheme = crypt_scheme(setting);
    if let Some((_, ok)) = seen.iter().find(|(s, _)| s == scheme) {
        return *ok;
    }
    let ok = super::crypt(b"etrnd-scheme-probe", setting)
        .is_some_and(|h| h.starts_with(scheme) && h.len() > scheme.len() + 8);
    seen.push((scheme.to_string(), ok));
    ok
}

impl Secrets {
    /// Parses the text of the file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Secrets, Vec<ConfigError>> {
        let mut out = Secrets::default();
        let mut errors = Vec::new();
        let mut schemes = Vec::new();
        for line in lex::lines(text) {
            let err = |m: String| ConfigError::at(path, line.no, m);
            let mut words = line.text.split_whitespace();
            let (Some(user), Some(secret)) = (words.next(), words.next()) else {
                errors.push(err("expected: user secret [domain...]".into()));
                continue;
            };
            if !valid_user(user) {
                errors.push(err(format!(
                    "bad user name '{}'",
                    crate::vocab::sanitize(user.as_bytes())
                )));
                continue;
            }
            let scheme = if let Some(hex) = secret.strip_prefix("{CRAM-MD5}") {
                match md5::parse_contexts(hex) {
                    Some((i, o)) => Scheme::CramMd5(i, o),
                    None => {
                        errors.push(err(
                            "{CRAM-MD5} needs 64 hex digits (the two HMAC-MD5 contexts)".into(),
                        ));
                        continue;
                    }
                }
            } else if let Some(p) = secret.strip_prefix("{PLAIN}") {
                if p.is_empty() {
                    errors.push(err("{PLAIN} with an empty password".into()));
                    continue;
                }
                Scheme::Plain(p.as_bytes().to_vec())
            } else if crypt_ok(secret) {
                if !scheme_verifies(secret, &mut schemes) {
                    errors.push(err(format!(
                        "this system's crypt(3) cannot verify {} hashes (musl and the BSDs lack \
                         some schemes): store a $6$ or {{CRAM-MD5}} secret for '{user}'",
                        crypt_scheme(secret)
                    )));
                    continue;
                }
                Scheme::Crypt(secret.to_string())
            } else {
                errors.push(err(
                    "unknown secret scheme: write {CRAM-MD5}hex, {PLAIN}password or a crypt(3) \
                     string ($y$, $2b$, $6$, $5$)"
                        .into(),
                ));
                continue;
            };
            let mut domains = Vec::new();
            let mut bad = false;
            for d in words {
                let bare = d.strip_prefix('@').unwrap_or(d);
                if crate::vocab::Domain::parse(bare).is_err() || bare.starts_with('[') {
                    errors.push(err(format!(
                        "bad domain '{}'",
                        crate::vocab::sanitize(d.as_bytes())
                    )));
                    bad = true;
                    break;
                }
                domains.push(d.trim_end_matches('.').to_ascii_lowercase());
            }
            if bad {
                continue;
            }
            if domains.len() > MAX_DOMAINS {
                errors.push(err(format!("more than {MAX_DOMAINS} domains")));
                continue;
            }
            if out.entries.len() >= MAX_ENTRIES {
                errors.push(err(format!("more than {MAX_ENTRIES} entries")));
                break;
            }
            if out.entries.iter().any(|e| e.user == user) {
                errors.push(err(format!("user '{user}' listed twice")));
                continue;
            }
            out.entries.push(Secret {
                user: user.to_string(),
                scheme,
                domains,
            });
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// Reads and parses the file; a missing file is an empty one. `owners` are the
    /// uids that may own it (root and the daemon's account).
    pub fn load(path: &Path, owners: &[u32]) -> Result<Secrets, Vec<ConfigError>> {
        Secrets::parse(path, &read_private(path, owners).map_err(|e| vec![e])?)
    }

    /// The entry of `user`.
    pub fn get(&self, user: &str) -> Option<&Secret> {
        self.entries.iter().find(|e| e.user == user)
    }

    /// Whether any entry can answer CRAM-MD5.
    pub fn any_cram(&self) -> bool {
        self.entries
            .iter()
            .any(|e| !matches!(e.scheme, Scheme::Crypt(_)))
    }
}

/// The text of a secrets or policy file (`db/secrets`, `db/authinfo`,
/// `db/tls_policy`) under [`check_private`]'s rule; a missing file is empty.
pub fn read_private(path: &Path, owners: &[u32]) -> Result<String, ConfigError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(ConfigError::at(path, 0, e.to_string())),
        Ok(m) => {
            check_private(path, &m, owners)?;
            lex::read(path)
        }
    }
}

/// The TLS key: like a secrets file, it must be no one's but root's or the daemon's
/// user's — mode 0600 or 0640 (a group such as Debian's ssl-cert may read it), owned
/// by one of `owners`. A symbolic link is followed (certbot's live/ names are links)
/// and the file it leads to is checked, on the descriptor that is read.
pub fn read_key(path: &Path, owners: &[u32]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("TLS_KEY {}: {e}", path.display()))?;
    let m = f
        .metadata()
        .map_err(|e| format!("TLS_KEY {}: {e}", path.display()))?;
    if !m.is_file() {
        return Err(format!("TLS_KEY {}: not a regular file", path.display()));
    }
    if m.mode() & 0o037 != 0 {
        return Err(format!(
            "TLS_KEY {}: mode {:04o}: a private key must not be readable by others or \
             writable by its group (chmod 600, or 640 for a group such as ssl-cert)",
            path.display(),
            m.mode() & 0o7777
        ));
    }
    if !owners.contains(&m.uid()) {
        return Err(format!(
            "TLS_KEY {}: owned by uid {}: must be owned by root or the daemon's USER",
            path.display(),
            m.uid()
        ));
    }
    let mut v = Vec::new();
    f.take(super::guard::MAX_FILE as u64 + 1)
        .read_to_end(&mut v)
        .map_err(|e| format!("TLS_KEY {}: {e}", path.display()))?;
    if v.len() > super::guard::MAX_FILE {
        return Err(format!(
            "TLS_KEY {}: larger than {} octets",
            path.display(),
            super::guard::MAX_FILE
        ));
    }
    Ok(v)
}

/// The rule for secrets files: a regular file (not a link), no access for group or
/// others, owned by one of `owners`.
pub fn check_private(
    path: &Path,
    m: &std::fs::Metadata,
    owners: &[u32],
) -> Result<(), ConfigError> {
    if !m.file_type().is_file() {
        return Err(ConfigError::at(
            path,
            0,
            "not a regular file (links are not followed)",
        ));
    }
    if m.mode() & 0o077 != 0 {
        return Err(ConfigError::at(
            path,
            0,
            format!(
                "mode {:04o}: a secrets file must not be readable by group or others (chmod 600)",
                m.mode() & 0o7777
            ),
        ));
    }
    if !owners.contains(&m.uid()) {
        return Err(ConfigError::at(
            path,
            0,
            format!(
                "owned by uid {}: must be owned by root or the daemon's USER",
                m.uid()
            ),
        ));
    }
    Ok(())
}

/// Whether an identity with `domains` may release `target` (a domain name, with
/// or without a leading `@`): listed exactly, or under an `@dom` entry.
pub fn entitled(domains: &[String], target: &str) -> bool {
    let t = target
        .trim_start_matches('@')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    domains.iter().any(|d| match d.strip_prefix('@') {
        Some(parent) => t == parent || t.ends_with(&format!(".{parent}")),
        None => *d == t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheme_this_crypt_cannot_compute_is_told_apart() {
        let mut seen = Vec::new();
        assert_eq!(crypt_scheme("$6$saltsalt$abc"), "$6$");
        assert_eq!(crypt_scheme("$2b$12$abc"), "$2b$");
        // glibc with libxcrypt computes SHA-512 crypt; nobody computes "$9$".
        assert!(scheme_verifies("$6$saltsalt$abcdefghijklmnop", &mut seen));
        assert!(!scheme_verifies("$9$saltsalt$abcdefghijklmnop", &mut seen));
        assert_eq!(seen.len(), 2, "one probe per scheme: {seen:?}");
        assert!(scheme_verifies("$6$othersalt$x", &mut seen));
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn parses_every_scheme_with_domains() {
        let ctx = md5::contexts_hex(&md5::hmac_contexts(b"tanstaaftanstaaf"));
        let text = format!(
            "# comment\ntim {{CRAM-MD5}}{ctx} client.dom @client2.dom\n\
             bob {{PLAIN}}secret\nalice $6$saltsalt$abcdefghijklmnop\n"
        );
        let s = Secrets::parse(Path::new("secrets"), &text).unwrap();
        assert_eq!(s.entries.len(), 3);
        let tim = s.get("tim").unwrap();
        assert!(matches!(tim.scheme, Scheme::CramMd5(..)));
        assert_eq!(tim.domains, vec!["client.dom", "@client2.dom"]);
        assert!(matches!(s.get("alice").unwrap().scheme, Scheme::Crypt(_)));
        assert!(s.any_cram());
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn every_bad_line_names_its_line() {
        let text = "lonely\nx {MD5}abc\ny {CRAM-MD5}12\nz {PLAIN}p bad..dom\n\
                    w $1$weak$md5crypt\nv {PLAIN}\nu {PLAIN}a\nu {PLAIN}b\n";
        let errs = Secrets::parse(Path::new("db/secrets"), text).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5, 6, 8], "{errs:?}");
        assert!(errs[0].to_string().starts_with("db/secrets:1: "));
    }

    #[test]
    fn entitlement_exact_and_subdomains() {
        let d = vec!["client.dom".to_string(), "@other.dom".to_string()];
        assert!(entitled(&d, "client.dom"));
        assert!(entitled(&d, "CLIENT.DOM."));
        assert!(!entitled(&d, "sub.client.dom"));
        assert!(entitled(&d, "other.dom"));
        assert!(entitled(&d, "@a.b.other.dom"));
        assert!(!entitled(&d, "xother.dom"));
        assert!(!entitled(&[], "client.dom"));
    }

    #[test]
    fn a_readable_or_foreign_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("etrnd-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("secrets");
        std::fs::write(&p, "bob {PLAIN}x\n").unwrap();
        let me = crate::sys::euid();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Secrets::load(&p, &[0, me]).unwrap_err();
        assert!(e[0].to_string().contains("mode 0644"), "{e:?}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Secrets::load(&p, &[0, me]).unwrap().entries.len(), 1);
        let e = Secrets::load(&p, &[u32::MAX - 1]).unwrap_err();
        assert!(e[0].to_string().contains("owned by uid"), "{e:?}");
        assert!(Secrets::load(&dir.join("none"), &[me])
            .unwrap()
            .entries
            .is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
