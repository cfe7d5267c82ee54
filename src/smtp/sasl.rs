//! The server side of the SASL exchanges SMTP AUTH carries (RFC 4954): PLAIN (RFC
//! 4616), LOGIN (the old draft every client speaks) and CRAM-MD5 (RFC 2195). Pure:
//! it turns the command's argument and the client's lines into either the next
//! challenge or a [`Check`] for the auth helper, which alone sees the secrets.
//!
//! ```text
//!  AUTH PLAIN <b64>          -> Check
//!  AUTH PLAIN    -> 334 ""   -> <b64>              -> Check
//!  AUTH LOGIN    -> 334 Username: -> <b64> -> 334 Password: -> <b64> -> Check
//!  AUTH LOGIN <b64 user>     -> 334 Password: -> <b64> -> Check
//!  AUTH CRAM-MD5 -> 334 <b64 challenge> -> <b64 "user digest"> -> Check
//!  any line "*"              -> 501 aborted
//! ```

use super::reply::Reply;
use crate::auth::base64;
pub use crate::auth::Check;

/// Longest AUTH response line (RFC 4954 §4: 12,288 octets is enough).
pub const MAX_AUTH_LINE: usize = 12_288;
/// Longest user name or password field (RFC 4616 §2 asks for 255 at least).
pub const MAX_FIELD: usize = 1024;

/// A mechanism we serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    /// RFC 4616.
    Plain,
    /// `LOGIN`.
    Login,
    /// RFC 2195.
    CramMd5,
}

impl Mech {
    /// Parses a mechanism name (case-insensitive).
    pub fn parse(s: &str) -> Option<Mech> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mech::Plain),
            "LOGIN" => Some(Mech::Login),
            "CRAM-MD5" => Some(Mech::CramMd5),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::Login => "LOGIN",
            Mech::CramMd5 => "CRAM-MD5",
        }
    }

    /// Whether the client sends its password (only under TLS).
    pub fn cleartext(self) -> bool {
        !matches!(self, Mech::CramMd5)
    }
}

/// What the exchange wants next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send `334 <this base64>` and wait for a line.
    Challenge(String),
    /// Ask the helper.
    Check(Check),
    /// The exchange failed: send this reply.
    Fail(Reply),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    PlainResponse,
    LoginUser,
    LoginPassword(String),
    CramResponse(String),
}

/// One AUTH exchange in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    stage: Stage,
}

fn field(b: &[u8]) -> Option<String> {
    if b.is_empty() || b.len() > MAX_FIELD || b.iter().any(|&c| c < b' ' || c == 0x7f) {
        return None;
    }
    String::from_utf8(b.to_vec()).ok()
}

fn decode(line: &[u8]) -> Result<Vec<u8>, Reply> {
    if line == b"*" {
        return Err(Reply::AUTH_CANCELLED);
    }
    if line == b"=" {
        return Ok(Vec::new());
    }
    base64::decode(line).ok_or(Reply::AUTH_BAD_BASE64)
}

fn plain(msg: &[u8]) -> Step {
    // [authzid] NUL authcid NUL passwd
    let mut parts = msg.split(|&b| b == 0);
    let (Some(authz), Some(authc), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Step::Fail(Reply::AUTH_BAD_RESPONSE);
    };
    let Some(user) = field(authc) else {
        return Step::Fail(Reply::AUTH_BAD_RESPONSE);
    };
    // Acting as someone else needs proxy rights, which nobody has.
    if !authz.is_empty() && authz != authc {
        return Step::Fail(Reply::AUTH_FAILED);
    }
    if pass.is_empty() || pass.len() > MAX_FIELD {
        return Step::Fail(Reply::AUTH_BAD_RESPONSE);
    }
    Step::Check(Check::Password {
        user,
        password: pass.to_vec(),
    })
}

impl Exchange {
    /// Starts `AUTH <mech> [initial]`. `challenge` makes the CRAM-MD5 challenge
    /// (`<random.time@host>`).
    pub fn start(
        mech: Mech,
        initial: Option<&str>,
        challenge: impl FnOnce() -> String,
    ) -> (Option<Exchange>, Step) {
        let ex = |stage| Some(Exchange { stage });
        match (mech, initial) {
            (Mech::Plain, None) => (ex(Stage::PlainResponse), Step::Challenge(String::new())),
            (Mech::Plain, Some(i)) => match decode(i.as_bytes()) {
                Ok(m) => (None, plain(&m)),
                Err(r) => (None, Step::Fail(r)),
            },
            (Mech::Login, None) => (
                ex(Stage::LoginUser),
                Step::Challenge(base64::encode(b"Username:")),
            ),
            (Mech::Login, Some(i)) => match decode(i.as_bytes()).map(|u| field(&u)) {
                Ok(Some(user)) => (
                    ex(Stage::LoginPassword(user)),
                    Step::Challenge(base64::encode(b"Password:")),
                ),
                Ok(None) => (None, Step::Fail(Reply::AUTH_BAD_RESPONSE)),
                Err(r) => (None, Step::Fail(r)),
            },
            (Mech::CramMd5, Some(_)) => (None, Step::Fail(Reply::AUTH_NO_INITIAL)),
            (Mech::CramMd5, None) => {
                let c = challenge();
                let b = base64::encode(c.as_bytes());
                (ex(Stage::CramResponse(c)), Step::Challenge(b))
            }
        }
    }

    /// The client's next line (without CR LF). Returns the next step; after a
    /// `Check` or a `Fail` the exchange is over.
    pub fn feed(&mut self, line: &[u8]) -> Step {
        if line.len() > MAX_AUTH_LINE {
            return Step::Fail(Reply::AUTH_TOO_LONG);
        }
        let msg = match decode(line) {
            Ok(m) => m,
            Err(r) => return Step::Fail(r),
        };
        match std::mem::replace(&mut self.stage, Stage::PlainResponse) {
            Stage::PlainResponse => plain(&msg),
            Stage::LoginUser => match field(&msg) {
                Some(user) => {
                    self.stage = Stage::LoginPassword(user);
                    Step::Challenge(base64::encode(b"Password:"))
                }
                None => Step::Fail(Reply::AUTH_BAD_RESPONSE),
            },
            Stage::LoginPassword(user) => {
                if msg.is_empty() || msg.len() > MAX_FIELD {
                    return Step::Fail(Reply::AUTH_BAD_RESPONSE);
                }
                Step::Check(Check::Password {
                    user,
                    password: msg,
                })
            }
            Stage::CramResponse(challenge) => {
                let text = String::from_utf8_lossy(&msg).into_owned();
                match text.rsplit_once(' ') {
                    Some((user, digest))
                        if digest.len() == 32
                            && digest.bytes().all(|b| b.is_ascii_hexdigit())
                            && field(user.as_bytes()).is_some() =>
                    {
                        Step::Check(Check::Cram {
                            user: user.to_string(),
                            challenge,
                            digest: digest.to_ascii_lowercase(),
                        })
                    }
                    _ => Step::Fail(Reply::AUTH_BAD_RESPONSE),
                }
            }
        }
    }
}

/// Client side: the response to a CRAM-MD5 challenge (base64 in, base64 out).
pub fn cram_response(user: &str, password: &[u8], challenge_b64: &str) -> Option<String> {
    let challenge = base64::decode(challenge_b64.as_bytes())?;
    let digest = crate::auth::md5::hmac(password, &challenge);
    let text = format!("{user} {}", base64::hex_encode(&digest));
    Some(base64::encode(text.as_bytes()))
}

/// Client side: the PLAIN initial response.
pub fn plain_response(user: &str, password: &[u8]) -> String {
    let mut m = vec![0u8];
    m.extend_from_slice(user.as_bytes());
    m.push(0);
    m.extend_from_slice(password);
    base64::encode(&m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(user: &str, p: &str) -> Step {
        Step::Check(Check::Password {
            user: user.into(),
            password: p.as_bytes().to_vec(),
        })
    }

    #[test]
    fn plain_inline_and_after_an_empty_challenge() {
        let b = plain_response("tim", b"tanstaaf");
        let (ex, step) = Exchange::start(Mech::Plain, Some(&b), String::new);
        assert!(ex.is_none());
        assert_eq!(step, pw("tim", "tanstaaf"));
        let (ex, step) = Exchange::start(Mech::Plain, None, String::new);
        assert_eq!(step, Step::Challenge(String::new()));
        assert_eq!(ex.unwrap().feed(b.as_bytes()), pw("tim", "tanstaaf"));
        // authzid = authcid is fine, another one is not.
        let same = base64::encode(b"tim\0tim\0pw");
        assert_eq!(
            Exchange::start(Mech::Plain, Some(&same), String::new).1,
            pw("tim", "pw")
        );
        let other = base64::encode(b"root\0tim\0pw");
        assert_eq!(
            Exchange::start(Mech::Plain, Some(&other), String::new).1,
            Step::Fail(Reply::AUTH_FAILED)
        );
    }

    #[test]
    fn login_both_ways() {
        let (ex, step) = Exchange::start(Mech::Login, None, String::new);
        assert_eq!(step, Step::Challenge("VXNlcm5hbWU6".into()));
        let mut ex = ex.unwrap();
        assert_eq!(ex.feed(b"dGlt"), Step::Challenge("UGFzc3dvcmQ6".into()));
        assert_eq!(ex.feed(b"cHc="), pw("tim", "pw"));
        let (ex, step) = Exchange::start(Mech::Login, Some("dGlt"), String::new);
        assert_eq!(step, Step::Challenge("UGFzc3dvcmQ6".into()));
        assert_eq!(ex.unwrap().feed(b"cHc="), pw("tim", "pw"));
    }

    #[test]
    fn cram_md5_rfc2195_example() {
        let chal = "<1896.697170952@postoffice.reston.mci.net>";
        let (ex, step) = Exchange::start(Mech::CramMd5, None, || chal.to_string());
        let Step::Challenge(b) = step else { panic!() };
        assert_eq!(
            b,
            "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
        );
        let resp = cram_response("tim", b"tanstaaftanstaaf", &b).unwrap();
        assert_eq!(resp, "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
        assert_eq!(
            ex.unwrap().feed(resp.as_bytes()),
            Step::Check(Check::Cram {
                user: "tim".into(),
                challenge: chal.into(),
                digest: "b913a602c7eda7a495b4e6e7334d3890".into()
            })
        );
        assert_eq!(
            Exchange::start(Mech::CramMd5, Some("abc="), String::new).1,
            Step::Fail(Reply::AUTH_NO_INITIAL)
        );
    }

    #[test]
    fn hostile_lines() {
        let fresh = || Exchange::start(Mech::Plain, None, String::new).0.unwrap();
        assert_eq!(fresh().feed(b"*"), Step::Fail(Reply::AUTH_CANCELLED));
        assert_eq!(
            fresh().feed(b"not base64!"),
            Step::Fail(Reply::AUTH_BAD_BASE64)
        );
        assert_eq!(
            fresh().feed(&vec![b'A'; MAX_AUTH_LINE + 4]),
            Step::Fail(Reply::AUTH_TOO_LONG)
        );
        assert_eq!(fresh().feed(b"dGlt"), Step::Fail(Reply::AUTH_BAD_RESPONSE));
        let ctl = base64::encode(b"\0ti\nm\0pw");
        assert_eq!(
            fresh().feed(ctl.as_bytes()),
            Step::Fail(Reply::AUTH_BAD_RESPONSE)
        );
        let (ex, _) = Exchange::start(Mech::CramMd5, None, || "<1.2@h>".into());
        assert_eq!(
            ex.unwrap().feed(base64::encode(b"tim nothex").as_bytes()),
            Step::Fail(Reply::AUTH_BAD_RESPONSE)
        );
        assert!(format!("{:?}", pw("tim", "secretpw"))
            .find("secretpw")
            .is_none());
    }
}
