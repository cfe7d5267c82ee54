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
//! * Credentials are sent only under TLS, unless the level is `none`.

use std::time::Instant;

use super::{ClientEvent, ClientSession, Expect, ServerReply, State};
use crate::auth::base64;
use crate::smtp::sasl::{cram_response, plain_response, Mech};
use crate::vocab::{sanitize, TlsLevel};

/// What one connection needs of TLS and AUTH.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecurity {
    /// The TLS level.
    pub level: TlsLevel,
    /// TLS from the first octet (the driver started it at connect).
    pub implicit: bool,
    /// User and password for AUTH, when we hold some for this next hop.
    pub credentials: Option<(String, Vec<u8>)>,
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
        if self.sec.credentials.is_some() && !self.auth_mechs.is_empty() {
            let cram = self
                .auth_mechs
                .iter()
                .any(|m| m.eq_ignore_ascii_case("CRAM-MD5"));
            // CRAM-MD5 never sends the password, so it may go in plaintext
            // (Postfix's default `smtp_sasl_security_options = noplaintext`).
            if self.tls.is_some() || level == TlsLevel::None || cram {
                if self.start_auth(now) {
                    return;
                }
            } else {
                log::info!(
                    "smtp client-auth skipped: no TLS, credentials are not sent in plaintext"
                );
            }
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

    /// Starts AUTH with the best mechanism offered; false when none fits.
    fn start_auth(&mut self, now: Instant) -> bool {
        let offered = |m: &str| self.auth_mechs.iter().any(|x| x.eq_ignore_ascii_case(m));
        let mech = if offered("CRAM-MD5") {
            Mech::CramMd5
        } else if offered("PLAIN") {
            Mech::Plain
        } else if offered("LOGIN") {
            Mech::Login
        } else {
            return false;
        };
        let Some((user, pw)) = self.sec.credentials.clone() else {
            return false;
        };
        self.auth_mech = Some(mech);
        self.set_state(State::AwaitAuth);
        let line = match mech {
            Mech::Plain => format!("AUTH PLAIN {}\r\n", plain_response(&user, &pw)),
            Mech::Login => "AUTH LOGIN\r\n".to_string(),
            Mech::CramMd5 => "AUTH CRAM-MD5\r\n".to_string(),
        };
        self.send(Expect::Auth(0), line.as_bytes(), now);
        true
    }

    pub(super) fn on_auth(&mut self, step: u8, r: ServerReply, now: Instant) {
        let mech = self.auth_mech.unwrap_or(Mech::Plain);
        if r.code == 235 {
            log::info!("smtp client-auth mechanism={} result=ok", mech.name());
            self.authenticated = true;
            return self.ready();
        }
        let Some((user, pw)) = self.sec.credentials.clone() else {
            return self.fail(true, "AUTH: no credentials".into());
        };
        if r.code == 334 {
            let challenge = r.lines.first().map(String::as_str).unwrap_or("").trim();
            let next = match (mech, step) {
                (Mech::Login, 0) => Some(base64::encode(user.as_bytes())),
                (Mech::Login, 1) => Some(base64::encode(&pw)),
                (Mech::CramMd5, 0) => cram_response(&user, &pw, challenge),
                _ => None,
            };
            if let Some(n) = next {
                self.send(Expect::Auth(step + 1), format!("{n}\r\n").as_bytes(), now);
                return;
            }
            return self.fail(true, "AUTH: unexpected challenge".into());
        }
        // Refused credentials are the operator's to fix: the mail waits (Postfix
        // smtp_sasl_auth_soft_bounce).
        self.fail(true, format!("AUTH {}: {}", mech.name(), r.summary()));
    }
}
