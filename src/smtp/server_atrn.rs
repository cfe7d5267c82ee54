//! ATRN (RFC 2645 §5.2) of [`ServerSession`], and the session on the customer's
//! side of a turned-around connection. Same module privacy as the session; split out
//! by noun.
//!
//! Provider: ATRN is offered on `odmr` and `submission` listeners. The session checks
//! what it can alone — the command's place (502 elsewhere, 503 in a transaction),
//! AUTH (530), and that the identity is entitled to every domain listed (450, and
//! nothing is sent) — and waits in `AwaitAtrn` for the loop, which checks the
//! entitlement again with the auth helper (451 when it cannot), applies the rate and
//! one-session-per-identity limits (450) and claims the held mail (453 when there is
//! none). A `250` puts the session in `Turned`: it reads nothing more, and once the
//! `250` is written the loop gives the connection to a client session.
//!
//! Customer: [`ServerSession::reversed`] is the session the customer runs on the
//! connection it turned around: it greets at once, offers neither STARTTLS nor AUTH
//! nor ATRN (the TLS state, if any, was set up before the turn and is kept), and its
//! trace header names the provider.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Context, Event, ServerSession, State, COMMAND_TIMEOUT};
use crate::smtp::reply::Reply;
use crate::vocab::sanitize;
use crate::vocab::ListenKind;

impl ServerSession {
    /// The customer's session on a connection turned around by ATRN: `provider` is
    /// the name we connected to, `tls` the TLS state carried over.
    pub fn reversed(
        id: u32,
        client: SocketAddr,
        provider: &str,
        tls: Option<String>,
        ctx: &Context<'_>,
        now: Instant,
    ) -> ServerSession {
        let mut s =
            ServerSession::blank(id, client, false, ListenKind::Smtp, now + COMMAND_TIMEOUT);
        s.tls = tls;
        s.provider = Some(provider.to_string());
        log::info!(
            "{:08x} smtp reversed provider={} address={}",
            id,
            sanitize(provider.as_bytes()),
            client
        );
        s.reply(&Reply::greeting(ctx.policy.hostname));
        s
    }

    /// The ODMR provider this session serves on a turned-around connection.
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    /// Whether EHLO lists ATRN: on the listeners that serve it.
    pub(super) fn offers_atrn(&self) -> bool {
        self.provider.is_none() && matches!(self.kind, ListenKind::Odmr | ListenKind::Submission)
    }

    /// Whether the `250` to ATRN is queued: the loop turns the connection around once
    /// it is written.
    pub fn turned(&self) -> bool {
        matches!(self.state, State::Turned)
    }

    pub(super) fn atrn(&mut self, domains: Vec<String>, now: Instant, ctx: &Context<'_>) {
        let host = ctx.policy.hostname;
        if !self.offers_atrn() {
            return self.error(&Reply::ATRN_NOT_AVAILABLE, now, host);
        }
        if matches!(self.state, State::InTransaction(_)) {
            return self.error(&Reply::ATRN_IN_TRANSACTION, now, host);
        }
        let Some((user, entitled)) = self.identity.clone() else {
            return self.error(&Reply::ATRN_NEEDS_AUTH, now, host);
        };
        let user_log = sanitize(user.as_bytes());
        let refusal = if domains.is_empty() && entitled.is_empty() {
            Some(Reply::ATRN_NO_DOMAINS)
        } else if let Some(d) = domains
            .iter()
            .find(|d| !crate::auth::secrets::entitled(&entitled, d))
        {
            log::warn!(
                "{:08x} atrn refused address={} user={} domain={} reason=not-entitled",
                self.id,
                self.client,
                user_log,
                sanitize(d.as_bytes())
            );
            Some(Reply::ATRN_NOT_ENTITLED)
        } else {
            None
        };
        if let Some(r) = refusal {
            return self.error(&r, now, host);
        }
        self.events.push_back(Event::Atrn { user, domains });
        self.set_state(State::AwaitAtrn);
    }

    /// The loop's answer to the ATRN: `250` turns the connection around, anything
    /// else leaves the session where it was.
    pub fn handle_atrn(&mut self, reply: &Reply, now: Instant, ctx: &Context<'_>) {
        if !matches!(self.state, State::AwaitAtrn) {
            return;
        }
        if reply.code == 250 {
            self.reply(reply);
            self.inbuf.clear();
            self.set_state(State::Turned);
            return;
        }
        self.set_state(State::Ready);
        self.error(reply, now, ctx.policy.hostname);
        self.deadline = now + COMMAND_TIMEOUT;
        self.process(now, ctx);
    }
}

#[cfg(test)]
#[path = "server_atrn_tests.rs"]
mod tests;
