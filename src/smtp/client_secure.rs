//! STARTTLS (RFC 3207) and AUTH (RFC 4954) of [`ClientSession`]: after each EHLO
//! the session decides, by the connection's [`ClientSecurity`], whether to ask for
//! TLS, whether it may go on without it, and whether to authenticate. Same module
//! privacy as the session; split out by noun.
//!
//! * A mandatory level (`encrypt` and stronger) never goes on in plaintext: no
//!   STARTTLS offered, STARTTLS refused, or a failed handshake is a temporary
//!   failure (the mail waits, never bounces for that alone).
//! * A `220` to STARTTLS with anything behind it (a forged reply injected in the
//!   same segment) ends the connection: those octets are never parsed and never
//!   reach TLS.
//! * After the handshake the session forgets the server's extensions and sends
//!   EHLO again.
//! * Credentials are sent only under TLS, unless the level is `none` (CRAM-MD5,
//!   which never sends the password, also without).
//! * AUTH tries the mechanisms the credentials allow (`mechs=` of `db/authinfo`, in
//!   order) that the server offers; one the server refuses is followed by the next
//!   (a server that offers CRAM-MD5 and refuses it still gets PLAIN), and only when
//!   none is left does the mail wait (dma's most reported bug was to give up).
//! * A token credential (`token=|COMMAND`) asks the driver for the token when the
//!   exchange needs it ([`ClientEvent::NeedToken`], answered with
//!   [`ClientSession::token`]): OAUTHBEARER (RFC 7628) and XOAUTH2.

use std::time::Instant;

use super::{ClientEvent, ClientSession, Expect, ServerReply, State};
use crate::auth::base64;
use crate::smtp::sasl::{cram_response, plain_response};
use crate::vocab::{sanitize, TlsLevel};

/// A SASL mechanism of the client side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMech {
    /// RFC 2195 (never sends the password).
    CramMd5,
    /// RFC 4616.
    Plain,
    /// `LOGIN`.
    Login,
    /// RFC 7628: an OAuth 2.0 bearer token.
    OAuthBearer,
    /// Google's and Microsoft's older form of the same.
    XOAuth2,
}

impl ClientMech {
    /// Parses a name (upper case, as `db/authinfo` keeps it).
    pub fn parse(s: &str) -> Option<ClientMech> {
        Some(match s {
            "CRAM-MD5" => ClientMech::CramMd5,
            "PLAIN" => ClientMech::Plain,
            "LOGIN" => ClientMech::Login,
            "OAUTHBEARER" => ClientMech::OAuthBearer,
            "XOAUTH2" => ClientMech::XOAuth2,
            _ => return None,
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            ClientMech::CramMd5 => "CRAM-MD5",
            ClientMech::Plain => "PLAIN",
            ClientMech::Login => "LOGIN",
            ClientMech::OAuthBearer => "OAUTHBEARER",
            ClientMech::XOAuth2 => "XOAUTH2",
        }
    }

    /// Whether it sends a secret an observer could reuse (only under TLS).
    fn exposes_secret(self) -> bool {
        self != ClientMech::CramMd5
    }

    fn uses_token(self) -> bool {
        matches!(self, ClientMech::OAuthBearer | ClientMech::XOAuth2)
    }
}

/// What proves our identity to a next hop.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientSecret {
    /// A password.
    Password(Vec<u8>),
    /// An OAuth 2.0 token: `None` until the driver hands it over.
    Token(Option<Vec<u8>>),
}

/// The credentials for one next hop.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password or token.
    pub secret: ClientSecret,
    /// The mechanisms to try, in order.
    pub mechs: Vec<ClientMech>,
}

impl Credentials {
    /// A user and password, with the default mechanisms.
    pub fn password(user: &str, password: &[u8]) -> Credentials {
        Credentials {
            user: user.to_string(),
            secret: ClientSecret::Password(password.to_vec()),
            mechs: vec![ClientMech::CramMd5, ClientMech::Plain, ClientMech::Login],
        }
    }

    /// From a `db/authinfo` entry.
    pub fn from_entry(c: &crate::auth::authinfo::Credential) -> Credentials {
        use crate::auth::authinfo::Secret;
        Credentials {
            user: c.user.clone(),
            secret: match &c.secret {
                Secret::Password(p) => ClientSecret::Password(p.clone()),
                Secret::TokenCommand(_) => ClientSecret::Token(None),
            },
            mechs: c
                .mechs
                .iter()
                .filter_map(|m| ClientMech::parse(m))
                .collect(),
        }
    }
}

/// What one connection needs of TLS and AUTH.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecurity {
    /// The TLS level.
    pub level: TlsLevel,
    /// TLS from the first octet (the driver started it at connect).
    pub implicit: bool,
    /// What we authenticate with, when we hold credentials for this next hop.
    pub credentials: Option<Credentials>,
}

impl Default for ClientSecurity {
    fn default() -> Self {
        ClientSecurity {
            level: TlsLevel::None,
            implicit: false,
            credentials: None,
        }
    }
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientSecurity(level={} implicit={} credentials={})",
            self.level.name(),
            self.implicit,
            if self.credentials.is_some() {
                "<redacted>"
            } else {
                "none"
            }
        )
    }
}

impl ClientSession {
    /// Sets what this connection needs of TLS and AUTH.
    pub fn with_security(mut self, sec: ClientSecurity) -> Self {
        self.sec = sec;
        self
    }

    /// TLS version and cipher, once TLS is on.
    pub fn tls_info(&self) -> Option<&str> {
        self.tls.as_deref()
    }

    /// Whether the driver must finish a TLS handshake before the session goes on.
    pub fn awaits_tls(&self) -> bool {
        self.state == State::AwaitTlsHandshake || (self.sec.implicit && self.tls.is_none())
    }

    /// The handshake is done: after STARTTLS, the server's extensions are
    /// forgotten and EHLO goes out again.
    pub fn tls_on(&mut self, info: String, now: Instant) {
        log::info!("smtp client-tls {info}");
        self.tls = Some(info);
        if self.state == State::AwaitTlsHandshake {
            self.pipelining = false;
            self.eight_bit_mime = false;
            self.ext = (false, false);
            self.size_limit = None;
            self.starttls_offered = false;
            self.auth_mechs.clear();
            self.greet(Expect::Ehlo, now);
        }
    }

    /// The TLS handshake failed: a temporary failure, never plaintext.
    pub fn tls_failed(&mut self, why: &str) {
        self.fail(
            true,
            format!("4.7.5 TLS handshake failed: {}", sanitize(why.as_bytes())),
        );
    }

    /// After EHLO (or HELO): TLS first, then AUTH, then ready.
    pub(super) fn after_ehlo(&mut self, now: Instant) {
        let level = self.sec.level;
        if self.tls.is_none() && !self.sec.implicit && level != TlsLevel::None {
            if self.starttls_offered {
                self.set_state(State::AwaitStartTls);
                self.send(Expect::StartTls, b"STARTTLS\r\n", now);
                return;
            }
            if level.mandatory() {
                return self.fail(
                    true,
                    format!(
                        "4.7.4 TLS is required (level {}) but the server does not offer STARTTLS",
                        level.name()
                    ),
                );
            }
        }
        if self.sec.credentials.is_some() && !self.auth_mechs.is_empty() && !self.authenticated {
            if self.next_auth(now) {
                return;
            }
            if self.auth_failure.is_none() && self.auth_tried.is_empty() {
                log::info!(
                    "smtp client-auth skipped: no mechanism both sides allow{}",
                    if self.tls.is_none() {
                        " without TLS"
                    } else {
                        ""
                    }
                );
            }
        }
        if let Some((why, refused)) = self.auth_failure.take() {
            // Every mechanism was refused: the credentials are the operator's to
            // fix, and the mail waits (Postfix's smtp_sasl_auth_soft_bounce).
            return self.fail_as(true, refused, why);
        }
        self.ready();
    }

    pub(super) fn on_starttls(&mut self, r: ServerReply, now: Instant) {
        if r.code == 220 {
            if self.parser.has_partial() {
                return self.fail(
                    true,
                    "4.7.0 the server sent data behind its 220 to STARTTLS: connection dropped"
                        .into(),
                );
            }
            self.set_state(State::AwaitTlsHandshake);
            self.events.push_back(ClientEvent::StartTls);
            return;
        }
        if self.sec.level.mandatory() {
            return self.fail(true, format!("4.7.4 STARTTLS: {}", r.summary()));
        }
        // Opportunistic: on in plaintext, as the server chose.
        self.starttls_offered = false;
        self.after_ehlo(now);
    }

    /// The mechanisms left to try: the credentials' own, in their order, offered by
    /// the server, not tried yet, and sending no reusable secret in plaintext.
    fn candidates(&self) -> Vec<ClientMech> {
        let Some(c) = &self.sec.credentials else {
            return Vec::new();
        };
        let clear_ok = self.tls.is_some() || self.sec.level == TlsLevel::None;
        c.mechs
            .iter()
            .copied()
            .filter(|m| {
                self.auth_mechs
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(m.name()))
            })
            .filter(|m| !self.auth_tried.contains(m))
            .filter(|m| clear_ok || !m.exposes_secret())
            .filter(|m| m.uses_token() == matches!(c.secret, ClientSecret::Token(_)))
            .collect()
    }

    /// Starts AUTH with the next mechanism; false when none is left.
    fn next_auth(&mut self, now: Instant) -> bool {
        let Some(mech) = self.candidates().first().copied() else {
            return false;
        };
        self.auth_tried.push(mech);
        self.auth_mech = Some(mech);
        self.set_state(State::AwaitAuth);
        if mech.uses_token()
            && matches!(
                self.sec.credentials.as_ref().map(|c| &c.secret),
                Some(ClientSecret::Token(None))
            )
        {
            // The driver fetches it; the exchange starts in `token`.
            self.events.push_back(ClientEvent::NeedToken);
            self.deadline = now + super::TIMEOUT_COMMAND;
            return true;
        }
        self.send_auth(mech, now);
        true
    }

    fn send_auth(&mut self, mech: ClientMech, now: Instant) {
        let Some(c) = self.sec.credentials.clone() else {
            return;
        };
        let secret = match &c.secret {
            ClientSecret::Password(p) | ClientSecret::Token(Some(p)) => p.clone(),
            ClientSecret::Token(None) => Vec::new(),
        };
        let line = match mech {
            ClientMech::Plain => format!("AUTH PLAIN {}\r\n", plain_response(&c.user, &secret)),
            ClientMech::Login => "AUTH LOGIN\r\n".to_string(),
            ClientMech::CramMd5 => "AUTH CRAM-MD5\r\n".to_string(),
            ClientMech::XOAuth2 => {
                let mut v = format!("user={}\x01auth=Bearer ", c.user).into_bytes();
                v.extend_from_slice(&secret);
                v.extend_from_slice(b"\x01\x01");
                format!("AUTH XOAUTH2 {}\r\n", base64::encode(&v))
            }
            ClientMech::OAuthBearer => {
                let gs2 = format!("n,a={},", c.user.replace('=', "=3D").replace(',', "=2C"));
                let mut v = format!("{gs2}\x01auth=Bearer ").into_bytes();
                v.extend_from_slice(&secret);
                v.extend_from_slice(b"\x01\x01");
                format!("AUTH OAUTHBEARER {}\r\n", base64::encode(&v))
            }
        };
        self.send(Expect::Auth(0), line.as_bytes(), now);
    }

    /// The token the session asked for ([`ClientEvent::NeedToken`]), or `None`
    /// when none could be had (the next mechanism, or a deferral).
    pub fn token(&mut self, token: Option<Vec<u8>>, now: Instant) {
        if self.state != State::AwaitAuth || !self.expect.is_empty() {
            return;
        }
        match (token, self.sec.credentials.as_mut()) {
            (Some(t), Some(c)) => {
                c.secret = ClientSecret::Token(Some(t));
                if let Some(m) = self.auth_mech {
                    self.send_auth(m, now);
                }
            }
            _ => {
                // Ours, not the server's refusal: the failure is not an AUTH one.
                self.auth_failure =
                    Some(("4.7.0 AUTH: no token from the token command".into(), false));
                self.auth_tried.extend(self.candidates());
                self.after_ehlo(now);
            }
        }
    }

    pub(super) fn on_auth(&mut self, step: u8, r: ServerReply, now: Instant) {
        let mech = self.auth_mech.unwrap_or(ClientMech::Plain);
        if r.code == 235 {
            log::info!("smtp client-auth mechanism={} result=ok", mech.name());
            self.authenticated = true;
            self.auth_failure = None;
            return self.ready();
        }
        let Some(c) = self.sec.credentials.clone() else {
            return self.fail_as(true, true, "AUTH: no credentials".into());
        };
        let secret = match &c.secret {
            ClientSecret::Password(p) | ClientSecret::Token(Some(p)) => p.clone(),
            ClientSecret::Token(None) => Vec::new(),
        };
        if r.code == 334 {
            let challenge = r.lines.first().map(String::as_str).unwrap_or("").trim();
            let next = match (mech, step) {
                (ClientMech::Login, 0) => Some(base64::encode(c.user.as_bytes())),
                (ClientMech::Login, 1) => Some(base64::encode(&secret)),
                (ClientMech::CramMd5, 0) => cram_response(&c.user, &secret, challenge),
                // A 334 to a token is the server's error (JSON): the exchange is
                // ended with an empty response (XOAUTH2) or ^A (RFC 7628 §3.2.3).
                (ClientMech::XOAuth2, 0) => Some(String::new()),
                (ClientMech::OAuthBearer, 0) => Some(base64::encode(b"\x01")),
                _ => None,
            };
            if let Some(n) = next {
                self.send(Expect::Auth(step + 1), format!("{n}\r\n").as_bytes(), now);
                return;
            }
            return self.fail_as(true, true, "AUTH: unexpected challenge".into());
        }
        log::info!(
            "smtp client-auth mechanism={} result=refused reply=\"{}\"",
            mech.name(),
            r.summary()
        );
        // A 5xx refuses the credentials; a 4xx (454: the server's own trouble) does
        // not say they are wrong.
        self.auth_failure = Some((
            format!("AUTH {}: {}", mech.name(), r.summary()),
            r.code >= 500,
        ));
        // The next mechanism the credentials allow, if the server offers one.
        self.after_ehlo(now);
    }
}
