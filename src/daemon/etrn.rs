//! Answers ETRN requests (DESIGN.md §5.5): policy (eligibility, a per-client rate
//! limit), the release in the scheduler, and the RFC 1985 reply. The flush starts in
//! the same loop turn; a release that finds the limits full stays pending in the
//! scheduler until a slot frees. Delivery goes to the routed host, never to the
//! client that asked.

use std::time::Instant;

use super::io::conn::ConnId;
use super::{Core, Io};
use crate::machines::etrn_desk;
use crate::smtp::etrn_target::EtrnTarget;
use crate::smtp::reply::Reply;

impl Core {
    /// Whether the target names a destination whose mail is held (see
    /// [`etrn_desk::names_held`]).
    pub(super) fn names_held(&self, t: &EtrnTarget) -> bool {
        etrn_desk::names_held(&self.config.router.trie, &self.config.sched, t)
    }

    fn etrn_reply(&mut self, io: &mut Io, id: ConnId, t: &EtrnTarget, now: Instant) -> Reply {
        let Some(c) = io.conns.get_mut(id).and_then(|l| l.role.server()) else {
            return Reply::ETRN_TOO_MANY;
        };
        let ip = c.ip;
        // Our own networks (etrnd flush, the ppp hook) are not rate limited.
        let trusted = self.config.main.mynetworks.iter().any(|n| n.contains(ip));
        if let Err(refused) = self.etrn_desk.admit(ip, trusted, now) {
            return refused;
        }
        self.etrn_release(t, ("etrn", &ip.to_string()), false)
    }

    /// Releases what `t` names and gives the RFC 1985 reply (ETRN after its policy
    /// checks, and `etrnd flush TARGET` over the control socket).
    /// `forced` (root or the daemon's user over the control socket) tries even
    /// destinations whose attempts just failed ([`crate::sched::ReleaseGap`]).
    pub(super) fn etrn_release(
        &mut self,
        t: &EtrnTarget,
        who: (&str, &str),
        forced: bool,
    ) -> Reply {
        let r = self.etrn_release_reply(t, forced);
        for key in self.sched.take_matched() {
            self.notes
                .request(&key, self.time.unix, who.0, who.1, r.code);
        }
        r
    }

    fn etrn_release_reply(&mut self, t: &EtrnTarget, forced: bool) -> Reply {
        if self.stopping {
            return etrn_desk::stopping_reply(t);
        }
        let trie = &self.config.router.trie;
        // Held mail on disk is loaded first (at most a chunk per destination; the
        // rest follows as it leaves), then released like mail in memory. What stays
        // on disk for now is released too (it follows chunk by chunk) and counts
        // in the reply.
        // Destinations whose attempts just failed wait out their gap: nothing of
        // theirs is loaded or tried again now.
        let unix = self.time.unix;
        let at = if forced { u64::MAX } else { unix };
        let pick = etrn_desk::picks(trie, t);
        let gapped = self.sched.gapped(at);
        // What of them waits on disk is not loaded, but it is matched (asked only
        // when some destination is in its gap: usually none is).
        let waiting_out = if gapped.is_empty() {
            None
        } else {
            self.sched
                .parked_matching(&pick)
                .iter()
                .filter_map(|k| gapped.get(k).copied())
                .min()
        };
        let load = |k: &crate::sched::ThreadKey, d: &str| !gapped.contains_key(k) && pick(k, d);
        let (loaded, later) =
            super::park::page_in_release(&mut self.spool, &mut self.sched, unix, load);
        self.releasing.extend(loaded);
        let mut released = self.sched.release_at(&pick, at);
        released.messages += later;
        if let Some(end) = waiting_out {
            released.matched = true;
            released.not_before = Some(released.not_before.map_or(end, |x| x.min(end)));
        }
        etrn_desk::reply(t, &released, self.config.main.etrn_replies, unix, || {
            etrn_desk::eligible(trie, t)
        })
    }

    /// Answers this turn's ETRNs, and the ETRNs pipelined behind them that the
    /// answers unblock, and starts what they released at once. A session has at most
    /// one ETRN waiting at a time and its pipelined input is bounded, so this ends.
    pub(super) fn answer_etrns(&mut self, io: &mut Io, now: Instant) {
        if self.clients.etrns.is_empty() {
            return;
        }
        let mut answered = Vec::new();
        self.clients.hold_output = true;
        while !self.clients.etrns.is_empty() {
            answered.extend(self.clients.etrns.iter().map(|(slot, _)| *slot));
            self.answer_etrn_round(io, now);
        }
        self.clients.hold_output = false;
        answered.sort_unstable();
        answered.dedup();
        for slot in answered {
            self.service(io, slot, now);
        }
        self.start_jobs(io, now);
        // Idle rate-limit entries are dropped so the table stays small.
        self.etrn_desk.tidy(now);
    }

    /// Answers the ETRNs waiting now; serving their sessions may queue more.
    fn answer_etrn_round(&mut self, io: &mut Io, now: Instant) {
        let requests = std::mem::take(&mut self.clients.etrns);
        for (id, t) in requests {
            let reply = self.etrn_reply(io, id, &t, now);
            let Some(c) = io.conns.get_mut(id).and_then(|l| l.role.server()) else {
                continue;
            };
            log::info!(
                "{:08x} etrn request address={} target={} reply=\"{}\"",
                c.session.id(),
                c.ip,
                t,
                reply
            );
            let ctx = session_ctx!(self);
            c.session.handle_etrn(&reply, now, &ctx);
            self.service(io, id, now);
        }
    }
}
