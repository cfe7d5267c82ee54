//! ODMR (RFC 2645, DESIGN.md §5.8), the loop's side, both ends of the turn-around.
//!
//! Provider: a session's ATRN (already checked by the session: AUTH, entitlement to
//! every domain listed) is checked again here — the rate per identity and one
//! turned-around session per identity (450), the daemon stopping or the auth helper
//! unable to confirm the identity's domains now (451), the helper's current domains
//! (450) — then the held mail is *claimed* from the scheduler (453 when there is
//! none): every waiting recipient of a held thread whose domain is covered by the
//! request and to which the identity is entitled. Only then `250`; once it is
//! written the connection's role swaps in place to a client session on the same transport
//! (TLS kept) and a [`Delivery`] that starts at the customer's greeting. Its end
//! settles the claim: delivered recipients are done, 5xx bounce, everything else
//! (4xx, a dropped connection, what was never tried) is held again for the next
//! ATRN with its lifetime unchanged.
//!
//! Customer: the `customer` module.

use std::collections::HashMap;
use std::time::Instant;

use super::io::conn::{ConnId, Outbound as OutLink, Role, Serves};
use super::{Core, Io};
use crate::auth::secrets::entitled;
use crate::auth::{Check, Verdict};
use crate::config::scheduler::{SmtpOptions, Transport};
use crate::dns::{Hop, Source};
use crate::logging::sanitize;
use crate::machines::atrn_desk::{AtrnDesk, Decision};
use crate::machines::delivery::Delivery;
use crate::sched::{Job, JobId, RcptRef, RcptResult, ThreadKey};
use crate::smtp::atrn::covers;
use crate::smtp::client::ClientSession;
use crate::smtp::reply::Reply;

/// A claim on its way to the turn-around, then running down the connection.
pub(super) struct Claim {
    /// The identity.
    pub user: String,
    /// What was asked (empty: all of the identity's domains).
    pub domains: Vec<String>,
    /// The claimed recipients.
    pub rcpts: Vec<RcptRef>,
    /// When the ATRN was answered.
    pub started: Instant,
}

/// The loop's ODMR state.
#[derive(Default)]
pub(super) struct Odmr {
    /// ATRNs at the auth helper: by sequence number, the connection, user and request.
    checking: HashMap<u64, (ConnId, String, Vec<String>)>,
    /// The rate limit, the identities whose claim runs, the helper's verdicts.
    desk: AtrnDesk,
    /// Claims whose `250` is not written yet, by connection.
    turning: HashMap<ConnId, (JobId, Claim)>,
    /// Customer requests by id.
    pub(super) customers: HashMap<u64, super::customer::Request>,
    pub(super) next_customer: u64,
    /// Lookups of providers' addresses.
    pub(super) lookups: HashMap<crate::dns::LookupId, u64>,
    /// Server links we turned around as the customer, and their request.
    pub(super) reversed: HashMap<ConnId, u64>,
}

impl Odmr {
    /// Whether a lookup is a provider's.
    pub fn owns_lookup(&self, lid: &crate::dns::LookupId) -> bool {
        self.lookups.contains_key(lid)
    }
}

impl Core {
    /// Checks this turn's ATRN requests and sends them to the auth helper.
    pub(super) fn atrn_requests(&mut self, io: &mut Io, now: Instant) {
        for (id, user, domains) in std::mem::take(&mut self.clients.atrns) {
            if let Err(r) = self.odmr.desk.request(&user, self.stopping, now) {
                self.answer_atrn(io, id, &user, &domains, &r, now);
                continue;
            }
            match io.guard.as_mut().filter(|g| !g.dead) {
                Some(g) => {
                    let seq = g.ask(&Check::Domains { user: user.clone() });
                    self.odmr.checking.insert(seq, (id, user, domains));
                }
                None => self.answer_atrn(io, id, &user, &domains, &Reply::ATRN_CANNOT_CHECK, now),
            }
        }
        if let Some(g) = io.guard.as_mut() {
            g.flush();
        }
    }

    /// Whether the auth helper's answer `seq` is an ATRN's.
    pub(super) fn odmr_owns(&self, seq: u64) -> bool {
        self.odmr.checking.contains_key(&seq)
    }

    /// Every ATRN still at the auth helper (it failed): 451.
    pub(super) fn odmr_guard_lost(&mut self, io: &mut Io, now: Instant) {
        let seqs: Vec<u64> = self.odmr.checking.keys().copied().collect();
        for s in seqs {
            self.atrn_verdict(io, s, None, now);
        }
    }

    /// The auth helper's current domains for the identity: the claim, or a refusal.
    pub(super) fn atrn_verdict(&mut self, io: &mut Io, seq: u64, v: Option<Verdict>, now: Instant) {
        let Some((id, user, domains)) = self.odmr.checking.remove(&seq) else {
            return;
        };
        let alive = io.conns.get_mut(id).and_then(|l| l.role.server()).is_some();
        if !alive {
            return;
        }
        let reply = match self.odmr.desk.decide(&user, &domains, v.as_ref()) {
            Decision::Refuse(r) => r,
            Decision::Claim(ent) => self.claim(id, &user, &domains, &ent, now),
        };
        self.answer_atrn(io, id, &user, &domains, &reply, now);
    }

    /// Claims the held mail for the request: `250` and the claim waits for the
    /// turn-around, or `453`.
    fn claim(
        &mut self,
        id: ConnId,
        user: &str,
        domains: &[String],
        ent: &[String],
        now: Instant,
    ) -> Reply {
        let wanted = |domain: &str| {
            entitled(ent, domain)
                && (domains.is_empty() || domains.iter().any(|r| covers(r, domain)))
        };
        // An ATRN takes held mail on disk too (up to a bound; the rest waits for
        // the next ATRN).
        for key in self.sched.parked_matching(|_, domain| wanted(domain)) {
            super::park::page_in(
                &mut self.spool,
                &mut self.sched,
                &key,
                self.time.unix,
                super::park::CLAIM_MAX,
                |_, e| wanted(&e.domain),
            );
        }
        let Some((jid, rcpts)) = self.sched.claim(|_, domain| wanted(domain)) else {
            return Reply::ATRN_NO_MAIL;
        };
        self.odmr.desk.claimed(user, jid);
        let claim = Claim {
            user: user.to_string(),
            domains: domains.to_vec(),
            rcpts,
            started: now,
        };
        self.odmr.turning.insert(id, (jid, claim));
        Reply::ATRN_TURNING
    }

    fn answer_atrn(
        &mut self,
        io: &mut Io,
        id: ConnId,
        user: &str,
        domains: &[String],
        r: &Reply,
        now: Instant,
    ) {
        let Some(c) = io.conns.get_mut(id).and_then(|l| l.role.server()) else {
            return;
        };
        let held = self
            .odmr
            .turning
            .get(&id)
            .map(|(_, c)| c.rcpts.len())
            .unwrap_or(0);
        log::info!(
            "{:08x} atrn request address={} user={} domains={} recipients={} reply=\"{}\"",
            c.session.id(),
            c.ip,
            sanitize(user.as_bytes()),
            if domains.is_empty() {
                "(all)".to_string()
            } else {
                domains.join(",")
            },
            held,
            r
        );
        let mut keys: Vec<String> = Vec::new();
        if let Some((_, claim)) = self.odmr.turning.get(&id) {
            for r in &claim.rcpts {
                if let Some(k) = self.sched.rcpt_dest(*r) {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
            }
        }
        for k in keys {
            self.notes.request(&k, self.time.unix, "atrn", user, r.code);
        }
        let Some(c) = io.conns.get_mut(id).and_then(|l| l.role.server()) else {
            return;
        };
        let ctx = session_ctx!(self);
        c.session.handle_atrn(r, now, &ctx);
        self.service(io, id, now);
    }

    /// The `250` to ATRN is written: the connection becomes the provider's client side.
    pub(super) fn turn_provider(&mut self, io: &mut Io, id: ConnId, now: Instant) {
        let Some((jid, claim)) = self.odmr.turning.remove(&id) else {
            return;
        };
        let hostname = self.config.main.hostname.clone();
        let Some(conn) = io.conns.get_mut(id) else {
            return self.settle_claim(jid, claim, Vec::new(), now);
        };
        let Some(peer) = conn.role.server().map(|c| c.session.client()) else {
            return self.settle_claim(jid, claim, Vec::new(), now);
        };
        let tls = if conn.stream.is_tls() {
            conn.stream.describe()
        } else {
            None
        };
        let hop = Hop {
            host: claim.user.clone(),
            pref: None,
            addr: peer,
            source: Source::Literal,
        };
        let relay = crate::machines::delivery::relay_name(&hop);
        let session = ClientSession::turned(&hostname, tls, now).with_trace(jid.0.to_string());
        let timer = session.poll_timeout();
        let old = conn.set_role(Role::Client(Box::new(OutLink {
            serves: Serves::Job(jid),
            relay: relay.clone(),
            session: Some(session),
            connect_deadline: now,
            #[cfg(feature = "tls")]
            tls_plan: None,
            addr: peer,
        })));
        if let Role::Server(inbound) = old {
            self.forget_inbound(*inbound);
        }
        io.conns.set_timer(id, timer);
        log::info!(
            "{} atrn turned user={} relay={} recipients={}",
            jid.0,
            sanitize(claim.user.as_bytes()),
            relay,
            claim.rcpts.len()
        );
        let job = Job {
            id: jid,
            key: ThreadKey {
                channel: "odmr".into(),
                host: claim.user.clone(),
            },
            transport: Transport::Smtp(SmtpOptions::default()),
            rcpts: claim.rcpts.clone(),
        };
        let machine = Delivery::turned(job, SmtpOptions::default(), hop);
        self.start_turned_run(jid, id, machine, claim);
        // Whatever the customer already sent (its greeting) is read now.
        self.out_event(io, id, now);
    }

    /// A connection closed before its `250` to ATRN was out: the claim goes back.
    pub(super) fn drop_turning(&mut self, id: ConnId, now: Instant) {
        if let Some((jid, claim)) = self.odmr.turning.remove(&id) {
            self.settle_claim(jid, claim, Vec::new(), now);
        }
    }

    /// A claim is over: the scheduler settles it, the log says what became of it.
    pub(super) fn settle_claim(
        &mut self,
        jid: JobId,
        claim: Claim,
        results: Vec<(RcptRef, RcptResult)>,
        now: Instant,
    ) {
        let (mut delivered, mut bounced) = (0, 0);
        for (_, r) in &results {
            match r {
                RcptResult::Delivered => delivered += 1,
                RcptResult::Failed(..) => bounced += 1,
                RcptResult::Deferred(_) | RcptResult::Untried(_) => {}
            }
        }
        let deferred = claim.rcpts.len() - delivered - bounced;
        log::info!(
            "{} atrn done user={} domains={} delivered={} deferred={} bounced={} seconds={:.3}",
            jid.0,
            sanitize(claim.user.as_bytes()),
            if claim.domains.is_empty() {
                "(all)".to_string()
            } else {
                claim.domains.join(",")
            },
            delivered,
            deferred,
            bounced,
            now.saturating_duration_since(claim.started).as_secs_f64()
        );
        self.odmr.desk.ended(&claim.user, jid);
        self.sched.claim_done(jid, &results, self.time.unix);
        self.apply_sched(now);
    }
}
