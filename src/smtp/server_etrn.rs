//! ETRN (RFC 1985) of [`ServerSession`]: who may ask (`ETRN_ALLOW`, or an
//! authenticated identity entitled to the name), the per-session cap, and the
//! queue's answer. Same module privacy as the session; split out by noun.

use std::time::Instant;

use super::{Context, Event, ServerSession, State, COMMAND_TIMEOUT, ETRN_PER_SESSION};
use crate::smtp::etrn_target::EtrnTarget;
use crate::smtp::reply::Reply;
use crate::vocab::sanitize;

impl ServerSession {
    /// The queue's answer to an ETRN.
    pub fn handle_etrn(&mut self, reply: &Reply, now: Instant, ctx: &Context<'_>) {
        if !matches!(self.state, State::AwaitEtrn) {
            return;
        }
        self.set_state(State::Ready);
        if reply.is_error() {
            self.error(reply, now, ctx.policy.hostname);
        } else {
            self.reply(reply);
        }
        self.deadline = now + COMMAND_TIMEOUT;
        self.process(now, ctx);
    }

    pub(super) fn etrn(&mut self, arg: &str, now: Instant, ctx: &Context<'_>) {
        let host = &ctx.policy.hostname;
        let m = &ctx.policy;
        if !m.etrn {
            return self.error(&Reply::ETRN_NOT_AVAILABLE, now, host);
        }
        if self.helo.is_none() {
            return self.error(&Reply::NEED_HELO, now, host);
        }
        if matches!(self.state, State::InTransaction(_)) {
            return self.error(&Reply::ETRN_IN_TRANSACTION, now, host);
        }
        let by_auth = m.etrn_auth
            && self
                .identity
                .as_ref()
                .is_some_and(|(_, doms)| crate::auth::secrets::entitled(doms, arg.trim()));
        let allowed = by_auth
            || m.etrn_allow
                .is_none_or(|nets| nets.iter().any(|c| c.contains(self.client.ip())));
        if !allowed {
            log::warn!(
                "{:08x} etrn refused address={} reason=not-allowed",
                self.id,
                self.client
            );
            return self.error(
                &Reply::etrn_refused(&sanitize(arg.as_bytes()), "client not allowed to ETRN"),
                now,
                host,
            );
        }
        self.etrns += 1;
        if self.etrns > ETRN_PER_SESSION {
            return self.error(&Reply::ETRN_TOO_MANY, now, host);
        }
        match EtrnTarget::parse(arg) {
            None => self.error(&Reply::ETRN_SYNTAX, now, host),
            Some(t) => {
                self.events.push_back(Event::Etrn(t));
                self.set_state(State::AwaitEtrn);
            }
        }
    }
}

#[cfg(test)]
#[path = "server_etrn_tests.rs"]
mod tests;
