//! STARTTLS (RFC 3207) and AUTH (RFC 4954) of [`ServerSession`]. Same module
//! privacy as the session; split out by noun.
//!
//! STARTTLS: `220` is queued and the session waits in `AwaitTls`; whatever the
//! client pipelined behind the command is thrown away unread (the CVE-2011-0411
//! class); the loop starts TLS once the `220` is written and calls
//! [`ServerSession::tls_on`] when the handshake is done, which puts the session back
//! to where it was right after the greeting (no HELO, no transaction).
//!
//! AUTH: the exchange ([`super::sasl`]) yields a check for the auth helper;
//! the loop answers with [`ServerSession::handle_auth`]. A failure's reply waits
//! (longer for a client or identity that failed before), and the third failure in a
//! session ends it with `421`.

use std::time::Instant;

use super::{AuthOutcome, Context, Event, ServerSession, State, COMMAND_TIMEOUT};
use crate::smtp::reply::Reply;
use crate::smtp::sasl::{Exchange, Mech, Step, MAX_AUTH_LINE};
use crate::vocab::sanitize;
use crate::vocab::ListenKind;

/// Failed AUTH exchanges after which a session ends.
pub const AUTH_FAILURE_LIMIT: u32 = 3;

impl ServerSession {
    /// TLS version and cipher, once TLS is on.
    pub fn tls_info(&self) -> Option<&str> {
        self.tls.as_deref()
    }

    /// The authenticated identity.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_ref().map(|(u, _)| u.as_str())
    }

    /// Whether the session waits for the loop to start TLS.
    pub fn awaits_tls(&self) -> bool {
        matches!(self.state, State::AwaitTls)
    }

    /// The TLS handshake is done: after STARTTLS the session starts afresh.
    pub fn tls_on(&mut self, info: String, now: Instant) {
        log::info!("{:08x} smtp tls address={} {}", self.id, self.client, info);
        self.tls = Some(info);
        if self.awaits_tls() {
            self.helo = None;
            self.inbuf.clear();
            self.set_state(State::Ready);
            self.deadline = now + COMMAND_TIMEOUT;
        }
    }

    /// The `AUTH` line of our EHLO reply, if any.
    pub(super) fn auth_offer(&self, ctx: &Context<'_>) -> Option<String> {
        let a = ctx.policy.auth;
        if !a.enabled || self.identity.is_some() || self.provider.is_some() {
            return None;
        }
        let tls = self.tls.is_some();
        if self.kind == ListenKind::Submission && !tls && ctx.policy.tls {
            return None; // STARTTLS first
        }
        let mut mechs = Vec::new();
        if tls {
            mechs.extend_from_slice(&["PLAIN", "LOGIN"]);
        }
        if a.cram && (tls || ctx.policy.clear_cram.contains(&self.kind)) {
            mechs.push("CRAM-MD5");
        }
        (!mechs.is_empty()).then(|| format!("AUTH {}", mechs.join(" ")))
    }

    pub(super) fn starttls(&mut self, more: bool, now: Instant, ctx: &Context<'_>) {
        let host = ctx.policy.hostname;
        let r = if !ctx.policy.tls || self.provider.is_some() {
            Reply::NOT_IMPLEMENTED
        } else if self.tls.is_some() {
            Reply::TLS_ACTIVE
        } else if self.identity.is_some() {
            Reply::new(503, "5.5.1 Error: STARTTLS not allowed after AUTH".into())
        } else if matches!(self.state, State::InTransaction(_)) {
            Reply::TLS_IN_TRANSACTION
        } else if self.helo.is_none() {
            Reply::NEED_HELO
        } else if ctx.tls_busy {
            Reply::TLS_BUSY
        } else {
            if more {
                log::warn!(
                    "{:08x} smtp starttls-pipelined address={}: input behind STARTTLS discarded",
                    self.id,
                    self.client
                );
            }
            self.reply(&Reply::TLS_GO);
            self.set_state(State::AwaitTls);
            return;
        };
        if more {
            // What was pipelined behind a refused STARTTLS is never answered: the
            // group is a synchronisation error (reference/bad-input.md B13).
            self.close_with(&Reply::SYNC_ERROR);
            return;
        }
        self.error(&r, now, host);
    }

    pub(super) fn auth(
        &mut self,
        mech: &str,
        initial: Option<&str>,
        now: Instant,
        ctx: &Context<'_>,
    ) {
        let host = ctx.policy.hostname;
        let tls = self.tls.is_some();
        let refuse = if !ctx.policy.auth.enabled || self.provider.is_some() {
            Some(Reply::AUTH_NOT_OFFERED)
        } else if self.identity.is_some() {
            Some(Reply::AUTH_ALREADY)
        } else if matches!(self.state, State::InTransaction(_)) {
            Some(Reply::AUTH_IN_TRANSACTION)
        } else if self.helo.is_none() {
            Some(Reply::NEED_HELO)
        } else if self.kind == ListenKind::Submission && !tls && ctx.policy.tls {
            Some(Reply::TLS_FIRST)
        } else {
            None
        };
        if let Some(r) = refuse {
            return self.error(&r, now, host);
        }
        let Some(m) = Mech::parse(mech) else {
            return self.error(&Reply::AUTH_UNKNOWN_MECH, now, host);
        };
        if m.cleartext() && !tls {
            return self.error(&Reply::AUTH_NEEDS_TLS, now, host);
        }
        if m == Mech::CramMd5 && !ctx.policy.auth.cram {
            return self.error(&Reply::AUTH_UNKNOWN_MECH, now, host);
        }
        if m == Mech::CramMd5 && !tls && !ctx.policy.clear_cram.contains(&self.kind) {
            // An observer of the exchange could try passwords offline.
            return self.error(&Reply::AUTH_NEEDS_TLS, now, host);
        }
        let unix = ctx.unix_time;
        self.auth_started = self.auth_started.wrapping_add(1);
        let (nonce, id, n) = (ctx.nonce, self.id, self.auth_started);
        let (ex, step) = Exchange::start(m, initial, || {
            // Unique and unpredictable: the turn's fresh randomness, hashed with the
            // session's id and its count of exchanges, so neither sessions of the
            // same turn nor two exchanges of one session share a challenge.
            let mut seed = nonce.to_be_bytes().to_vec();
            seed.extend_from_slice(&id.to_be_bytes());
            seed.extend_from_slice(&n.to_be_bytes());
            let h = crate::auth::md5::md5(&seed);
            let mut n = [0u8; 8];
            n.copy_from_slice(&h[..8]);
            format!(
                "<{}.{unix}@{host}>",
                u64::from_be_bytes(n) % 1_000_000_000_000
            )
        });
        self.auth_step(ex, m, step, now, host);
    }

    fn auth_step(&mut self, ex: Option<Exchange>, m: Mech, step: Step, now: Instant, host: &str) {
        match (step, ex) {
            (Step::Challenge(c), Some(ex)) => {
                self.reply(&Reply::new(334, c));
                self.set_state(State::Authenticating(ex, m));
            }
            (Step::Challenge(_), None) => unreachable!("a challenge always has an exchange"),
            (Step::Check(c), _) => {
                let user = c.user().to_string();
                self.events.push_back(Event::AuthCheck(c));
                self.set_state(State::AwaitAuth(user, m));
            }
            (Step::Fail(r), _) => {
                if !matches!(self.state, State::InTransaction(_)) {
                    self.set_state(State::Ready);
                }
                self.error(&r, now, host);
            }
        }
    }

    /// One line of an AUTH exchange at `inbuf[pos..]`; returns the octets used, or
    /// `None` when the line is not complete yet.
    pub(super) fn auth_line(
        &mut self,
        pos: usize,
        now: Instant,
        ctx: &Context<'_>,
    ) -> Option<usize> {
        let host = ctx.policy.hostname;
        let input = &self.inbuf[pos..];
        let avail = input.len();
        let Some(lf) = input.iter().position(|&b| b == b'\n') else {
            if avail > MAX_AUTH_LINE + 2 {
                // The rest of the line is thrown away up to its end.
                self.set_state(State::Ready);
                self.discard_line = true;
                self.error(&Reply::AUTH_TOO_LONG, now, host);
                return Some(avail);
            }
            return None;
        };
        let line = input[..lf]
            .strip_suffix(b"\r")
            .unwrap_or(&input[..lf])
            .to_vec();
        log::debug!("{:08x} smtp auth-response <redacted>", self.id);
        let State::Authenticating(mut ex, m) = std::mem::replace(&mut self.state, State::Ready)
        else {
            unreachable!("auth_line is called while authenticating");
        };
        let step = ex.feed(&line);
        self.deadline = now + COMMAND_TIMEOUT;
        self.auth_step(Some(ex), m, step, now, host);
        Some(lf + 1)
    }

    /// The auth helper's verdict on the exchange that ended.
    pub fn handle_auth(&mut self, outcome: AuthOutcome, now: Instant, ctx: &Context<'_>) {
        let State::AwaitAuth(user, m) = std::mem::replace(&mut self.state, State::Ready) else {
            return;
        };
        let user_log = sanitize(user.as_bytes());
        match outcome {
            AuthOutcome::Ok(domains) => {
                log::info!(
                    "{:08x} smtp auth address={} user={} mechanism={} result=ok",
                    self.id,
                    self.client,
                    user_log,
                    m.name()
                );
                self.identity = Some((user, domains));
                self.reply(&Reply::AUTH_OK);
            }
            AuthOutcome::Unavailable => {
                log::warn!(
                    "{:08x} smtp auth address={} user={} mechanism={} result=unavailable",
                    self.id,
                    self.client,
                    user_log,
                    m.name()
                );
                self.reply(&Reply::AUTH_TEMP);
            }
            AuthOutcome::Failed(delay) => {
                self.auth_failures += 1;
                log::warn!(
                    "{:08x} smtp auth address={} user={} mechanism={} result=failed failures={}",
                    self.id,
                    self.client,
                    user_log,
                    m.name(),
                    self.auth_failures
                );
                let last = self.auth_failures >= AUTH_FAILURE_LIMIT;
                let r = if last {
                    Reply::closing(
                        ctx.policy.hostname,
                        "4.7.0 Error: too many authentication failures",
                    )
                } else {
                    Reply::AUTH_FAILED
                };
                self.errors += 1;
                self.delayed = Some((now + delay, r, last));
                return;
            }
        }
        self.deadline = now + COMMAND_TIMEOUT;
        self.process(now, ctx);
    }
}
