//! Authentication: what a SASL exchange of SMTP AUTH (`smtp::sasl`) asks to check
//! ([`Check`]), the secrets file
//! ([`secrets`]), the checks of a presented secret ([`verify`]), and the auth helper
//! process that alone holds the secrets once the daemon serves ([`guard`]). The
//! client side's credentials live in [`authinfo`].

pub mod authinfo;
pub mod base64;
pub mod guard;
pub mod md5;
pub mod secrets;
pub mod throttle;
pub mod token;

use secrets::{Scheme, Secrets};

/// What the auth helper must decide.
#[derive(Clone, PartialEq, Eq)]
pub enum Check {
    /// A user and the password they sent (PLAIN, LOGIN).
    Password {
        /// The user.
        user: String,
        /// The password.
        password: Vec<u8>,
    },
    /// A CRAM-MD5 answer to our challenge.
    Cram {
        /// The user.
        user: String,
        /// The challenge we sent (without base64).
        challenge: String,
        /// The 32 lower-case hex digits the client sent.
        digest: String,
    },
    /// The domains an identity authenticated earlier may release now (ATRN checks
    /// again: the secrets may have been reloaded since the AUTH).
    Domains {
        /// The user.
        user: String,
    },
}

impl Check {
    /// The identity being checked.
    pub fn user(&self) -> &str {
        match self {
            Check::Password { user, .. } | Check::Cram { user, .. } | Check::Domains { user } => {
                user
            }
        }
    }
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Check({} <redacted>)", self.user())
    }
}

/// Equal-length comparison that takes the same time wherever the first difference
/// is.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The verdict on one check: the identity's domains, or no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated; what the identity may release.
    Ok(Vec<String>),
    /// A wrong secret for an identity the secrets file has, or a mechanism its
    /// stored secret cannot serve.
    No,
    /// No such identity.
    Unknown,
}

/// Checks `check` against `secrets` (in the auth helper: crypt(3) may be slow).
pub fn verify(secrets: &Secrets, check: &Check) -> Verdict {
    let Some(entry) = secrets.get(check.user()) else {
        // Spend about the time a known user with a CRAM-MD5 entry costs.
        let _ = md5::hmac_contexts(check.user().as_bytes());
        return Verdict::Unknown;
    };
    let good = match (check, &entry.scheme) {
        (Check::Domains { .. }, _) => true,
        (Check::Password { password, .. }, Scheme::CramMd5(i, o)) => {
            let (pi, po) = md5::hmac_contexts(password);
            let a = md5::contexts_hex(&(pi, po));
            let b = md5::contexts_hex(&(*i, *o));
            same(a.as_bytes(), b.as_bytes())
        }
        (Check::Password { password, .. }, Scheme::Plain(p)) => same(password, p),
        (Check::Password { password, .. }, Scheme::Crypt(stored)) => {
            match crypt(password, stored) {
                Some(h) => same(h.as_bytes(), stored.as_bytes()),
                None => false,
            }
        }
        (
            Check::Cram {
                challenge, digest, ..
            },
            scheme,
        ) => {
            let d = match scheme {
                Scheme::CramMd5(i, o) => md5::hmac_from_contexts(*i, *o, challenge.as_bytes()),
                Scheme::Plain(p) => md5::hmac(p, challenge.as_bytes()),
                Scheme::Crypt(_) => return Verdict::No,
            };
            same(base64::hex_encode(&d).as_bytes(), digest.as_bytes())
        }
    };
    if good {
        Verdict::Ok(entry.domains.clone())
    } else {
        Verdict::No
    }
}

/// crypt(3) of `password` with the settings of `setting` (a stored hash or a
/// salt); `None` when libcrypt refuses the setting.
pub fn crypt(password: &[u8], setting: &str) -> Option<String> {
    crate::sys::crypt(password, setting)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_scheme_checks_what_it_can_serve() {
        let hashed = crypt(b"hunter2", "$6$rounds=1000$saltsalt$").unwrap();
        assert!(hashed.starts_with("$6$"));
        let ctx = md5::contexts_hex(&md5::hmac_contexts(b"tanstaaftanstaaf"));
        let text = format!(
            "tim {{CRAM-MD5}}{ctx} client.dom\nbob {{PLAIN}}secret\nalice {hashed} a.dom\n"
        );
        let s = Secrets::parse(Path::new("s"), &text).unwrap();
        let pw = |u: &str, p: &str| Check::Password {
            user: u.into(),
            password: p.as_bytes().to_vec(),
        };
        assert_eq!(
            verify(&s, &pw("tim", "tanstaaftanstaaf")),
            Verdict::Ok(vec!["client.dom".into()])
        );
        assert_eq!(verify(&s, &pw("tim", "tanstaaf")), Verdict::No);
        assert_eq!(verify(&s, &pw("bob", "secret")), Verdict::Ok(vec![]));
        assert_eq!(verify(&s, &pw("bob", "secreT")), Verdict::No);
        assert_eq!(
            verify(&s, &pw("alice", "hunter2")),
            Verdict::Ok(vec!["a.dom".into()])
        );
        assert_eq!(verify(&s, &pw("alice", "hunter3")), Verdict::No);
        assert_eq!(verify(&s, &pw("nobody", "x")), Verdict::Unknown);
        let doms = |u: &str| Check::Domains { user: u.into() };
        assert_eq!(
            verify(&s, &doms("tim")),
            Verdict::Ok(vec!["client.dom".into()])
        );
        assert_eq!(verify(&s, &doms("nobody")), Verdict::Unknown);
        let chal = "<1896.697170952@postoffice.reston.mci.net>";
        let cram = |u: &str, d: &str| Check::Cram {
            user: u.into(),
            challenge: chal.into(),
            digest: d.into(),
        };
        let good = "b913a602c7eda7a495b4e6e7334d3890";
        assert!(matches!(verify(&s, &cram("tim", good)), Verdict::Ok(_)));
        assert_eq!(
            verify(&s, &cram("tim", "00000000000000000000000000000000")),
            Verdict::No
        );
        let bob = base64::hex_encode(&md5::hmac(b"secret", chal.as_bytes()));
        assert!(matches!(verify(&s, &cram("bob", &bob)), Verdict::Ok(_)));
        // A crypt(3) entry cannot answer CRAM-MD5.
        assert_eq!(verify(&s, &cram("alice", good)), Verdict::No);
    }
}
