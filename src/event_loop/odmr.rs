//! ODMR (RFC 2645, DESIGN.md §5.8), the loop's side, both ends of the turn-around.
//!
//! Provider: a session's ATRN (already checked by the session: AUTH, entitlement to
//! every domain listed) is checked again here — the rate per identity and one
//! turned-around session per identity (450), the daemon stopping or the auth helper
//! unable to confirm the identity's domains now (451), the helper's current domains
//! (450) — then the held mail is *claimed* from the scheduler (453 when there is
//! none): every waiting recipient of a held thread whose domain is covered by the
//! request and to which the identity is entitled. Only then `250`; once it is
//! written the link's role swaps in place to a client session on the same transport
//! (TLS kept) and a [`Delivery`] that starts at the customer's greeting. Its end
//! settles the claim: delivered recipients are done, 5xx bounce, everything else
//! (4xx, a dropped connection, what was never tried) is held again for the next
//! ATRN with its lifetime unchanged.
//!
//! Customer (`etrnd atrn` over the control socket, or a link-up action): look the
//! provider up (the hosts file first, as every delivery), connect, EHLO, STARTTLS per
//! `db/tls_policy`, AUTH with `db/authinfo`'s credentials, `ATRN`, wait up to ten
//! minutes; on `250` the link becomes a server session ([`ServerSession::reversed`])
//! that greets, takes the provider's mail like any inbound mail (the relay rules of
//! an outside client; the trace header names the provider), and when it ends the
//! requester is told how many messages came.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::link::{ConnId, Inbound, Outbound as OutLink, Role};
use super::Daemon;
use crate::auth::secrets::entitled;
use crate::auth::{Check, Verdict};
use crate::config::scheduler::{SmtpOptions, Transport};
use crate::delivery::Delivery;
use crate::dns::{Hop, Outcome, Source};
use crate::logging::sanitize;
use crate::sched::{Job, JobId, RcptRef, RcptResult, ThreadKey};
use crate::smtp::atrn::covers;
use crate::smtp::client::{ClientEvent, ClientSession};
use crate::smtp::reply::Reply;
use crate::smtp::server::ServerSession;

/// ATRN requests one identity may make per [`ATRN_WINDOW`] (RFC 2645 §5.2.1 lets
/// the provider refuse "too many requests" with 450; a customer calls in once per
/// dial-up, and fetchmail retries once per poll).
pub const ATRN_PER_WINDOW: usize = 5;
/// The rate limit's window.
pub const ATRN_WINDOW: Duration = Duration::from_secs(60);
/// Most customer requests in progress at once.
pub const MAX_CUSTOMERS: usize = 16;
/// How long the customer's connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

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

/// What a customer request asks of the server.
#[derive(Debug, Clone)]
pub(super) enum Ask {
    /// `ATRN` for these domains (none: all of ours), then turn around.
    Atrn(Vec<String>),
    /// `ETRN` each target in turn (a link-up action), then QUIT.
    Etrn(Vec<String>),
}

/// One `etrnd atrn` request, or a link-up action's ATRN or ETRN.
struct Customer {
    server: String,
    port: u16,
    ask: Ask,
    /// ETRN targets not yet sent, and the replies to those sent.
    etrn_next: VecDeque<String>,
    etrn_replies: Vec<(u16, String)>,
    /// Who asked (the control socket's peer), told the outcome at the end.
    reply_to: Option<PathBuf>,
    /// The link whose link-up action this is.
    link: Option<String>,
    /// Addresses still to try.
    hops: VecDeque<SocketAddr>,
    /// The reply to ATRN, once it came.
    atrn: Option<(u16, String)>,
    /// Why the last connection or session failed.
    failure: Option<Reply>,
}

/// The loop's ODMR state.
#[derive(Default)]
pub(super) struct Odmr {
    /// ATRNs at the auth helper: by sequence number, the link, user and request.
    checking: HashMap<u64, (ConnId, String, Vec<String>)>,
    /// Recent ATRN requests per identity, for the rate limit.
    times: HashMap<String, VecDeque<Instant>>,
    /// Identities with a claim (turning or turned), and the claim's id.
    active: HashMap<String, JobId>,
    /// Claims whose `250` is not written yet, by link.
    turning: HashMap<ConnId, (JobId, Claim)>,
    /// Customer requests by id.
    customers: HashMap<u64, Customer>,
    next_customer: u64,
    /// Lookups of providers' addresses.
    lookups: HashMap<crate::dns::LookupId, u64>,
    /// Server links we turned around as the customer, and their request.
    reversed: HashMap<ConnId, u64>,
}

impl Odmr {
    /// Whether a lookup is a provider's.
    pub fn owns_lookup(&self, lid: &crate::dns::LookupId) -> bool {
        self.lookups.contains_key(lid)
    }
}

impl Daemon {
    // ---- provider ----

    /// Checks this turn's ATRN requests and sends them to the auth helper.
    pub(super) fn atrn_requests(&mut self, now: Instant) {
        for (id, user, domains) in std::mem::take(&mut self.atrns) {
            let refusal = if self.stopping {
                Some(Reply::ATRN_CANNOT_CHECK)
            } else if self.odmr.active.contains_key(&user) {
                Some(Reply::ATRN_BUSY)
            } else if !self.atrn_rate_ok(&user, now) {
                Some(Reply::ATRN_TOO_OFTEN)
            } else {
                None
            };
            if let Some(r) = refusal {
                self.answer_atrn(id, &user, &domains, &r, now);
                continue;
            }
            match self.guard.as_mut().filter(|g| !g.dead) {
                Some(g) => {
                    let seq = g.ask(&Check::Domains { user: user.clone() });
                    self.odmr.checking.insert(seq, (id, user, domains));
                }
                None => self.answer_atrn(id, &user, &domains, &Reply::ATRN_CANNOT_CHECK, now),
            }
        }
        if let Some(g) = self.guard.as_mut() {
            g.flush();
        }
    }

    fn atrn_rate_ok(&mut self, user: &str, now: Instant) -> bool {
        let times = self.odmr.times.entry(user.to_string()).or_default();
        while times
            .front()
            .is_some_and(|&t| now.duration_since(t) >= ATRN_WINDOW)
        {
            times.pop_front();
        }
        if times.len() >= ATRN_PER_WINDOW {
            return false;
        }
        times.push_back(now);
        let n = self.odmr.times.len();
        if n > 1024 {
            self.odmr.times.retain(|_, v| {
                v.back()
                    .is_some_and(|&t| now.duration_since(t) < ATRN_WINDOW)
            });
        }
        true
    }

    /// Whether the auth helper's answer `seq` is an ATRN's.
    pub(super) fn odmr_owns(&self, seq: u64) -> bool {
        self.odmr.checking.contains_key(&seq)
    }

    /// Every ATRN still at the auth helper (it failed): 451.
    pub(super) fn odmr_guard_lost(&mut self, now: Instant) {
        let seqs: Vec<u64> = self.odmr.checking.keys().copied().collect();
        for s in seqs {
            self.atrn_verdict(s, None, now);
        }
    }

    /// The auth helper's current domains for the identity: the claim, or a refusal.
    pub(super) fn atrn_verdict(&mut self, seq: u64, v: Option<Verdict>, now: Instant) {
        let Some((id, user, domains)) = self.odmr.checking.remove(&seq) else {
            return;
        };
        let alive = self
            .links
            .get_mut(id)
            .and_then(|l| l.role.server())
            .is_some();
        if !alive {
            return;
        }
        let reply = match v {
            None => Reply::ATRN_CANNOT_CHECK,
            Some(Verdict::No) => Reply::ATRN_NOT_ENTITLED,
            Some(Verdict::Ok(ent)) => {
                if domains.iter().any(|d| !entitled(&ent, d))
                    || (domains.is_empty() && ent.is_empty())
                {
                    Reply::ATRN_NOT_ENTITLED
                } else if self.odmr.active.contains_key(&user) {
                    Reply::ATRN_BUSY
                } else {
                    self.claim(id, &user, &domains, &ent, now)
                }
            }
        };
        self.answer_atrn(id, &user, &domains, &reply, now);
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
        let Some((jid, rcpts)) = self.sched.claim(|_, domain| wanted(domain)) else {
            return Reply::ATRN_NO_MAIL;
        };
        self.odmr.active.insert(user.to_string(), jid);
        let claim = Claim {
            user: user.to_string(),
            domains: domains.to_vec(),
            rcpts,
            started: now,
        };
        self.odmr.turning.insert(id, (jid, claim));
        Reply::ATRN_TURNING
    }

    fn answer_atrn(&mut self, id: ConnId, user: &str, domains: &[String], r: &Reply, now: Instant) {
        let Some(c) = self.links.get_mut(id).and_then(|l| l.role.server()) else {
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
            self.notes.request(&k, self.unix, "atrn", user, r.code);
        }
        let Some(c) = self.links.get_mut(id).and_then(|l| l.role.server()) else {
            return;
        };
        let ctx = session_ctx!(self);
        c.session.handle_atrn(r, now, &ctx);
        self.service(id, now);
    }

    /// The `250` to ATRN is written: the link becomes the provider's client side.
    pub(super) fn turn_provider(&mut self, id: ConnId, now: Instant) {
        let Some((jid, claim)) = self.odmr.turning.remove(&id) else {
            return;
        };
        let hostname = self.config.main.hostname.clone();
        let Some(link) = self.links.get_mut(id) else {
            return self.settle_claim(jid, claim, Vec::new(), now);
        };
        let Some(peer) = link.role.server().map(|c| c.session.client()) else {
            return self.settle_claim(jid, claim, Vec::new(), now);
        };
        let tls = if link.stream.is_tls() {
            link.stream.describe()
        } else {
            None
        };
        let hop = Hop {
            host: claim.user.clone(),
            pref: None,
            addr: peer,
            source: Source::Literal,
        };
        let relay = crate::delivery::relay_name(&hop);
        let session = ClientSession::turned(&hostname, tls, now);
        let timer = session.poll_timeout();
        let old = link.set_role(Role::Client(Box::new(OutLink {
            job: jid,
            relay: relay.clone(),
            session: Some(session),
            connect_deadline: now,
            #[cfg(feature = "tls")]
            tls_plan: None,
            addr: peer,
            customer: None,
        })));
        if let Role::Server(inbound) = old {
            self.forget_inbound(*inbound);
        }
        self.links.set_timer(id, timer);
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
        self.out_event(id, now);
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
        if self.odmr.active.get(&claim.user) == Some(&jid) {
            self.odmr.active.remove(&claim.user);
        }
        self.sched.claim_done(jid, &results, self.unix);
        self.apply_sched(now);
    }

    // ---- customer ----

    /// `etrnd atrn`: starts the customer's side; the requester hears at the end.
    pub(super) fn customer_start(
        &mut self,
        ask: Ask,
        server: String,
        port: u16,
        (reply_to, link): (Option<PathBuf>, Option<String>),
        now: Instant,
    ) -> Option<Reply> {
        if self.stopping {
            return Some(Reply::new(421, "4.3.2 etrnd is stopping".into()));
        }
        if self.odmr.customers.len() >= MAX_CUSTOMERS {
            return Some(Reply::new(
                452,
                "4.3.1 too many ATRN requests in progress".into(),
            ));
        }
        if let Some(l) = self.server_link_down(&server) {
            return Some(Reply::new(
                421,
                format!("4.4.1 {server} is behind link {l}, which is down"),
            ));
        }
        let host = crate::event_loop::secure::bare_host(&server).to_ascii_lowercase();
        if matches!(ask, Ask::Atrn(_)) && self.outbound_sec.authinfo.lookup(&host, port).is_none()
        {
            return Some(Reply::new(
                530,
                format!("5.7.0 no credentials for [{host}]:{port} in db/authinfo"),
            ));
        }
        self.odmr.next_customer += 1;
        let cid = self.odmr.next_customer;
        let (verb, args) = match &ask {
            Ask::Atrn(d) if d.is_empty() => ("atrn", "(all)".to_string()),
            Ask::Atrn(d) => ("atrn", d.join(",")),
            Ask::Etrn(t) => ("etrn", t.join(",")),
        };
        log::info!(
            "{verb} customer-start server={} port={} {}={}",
            sanitize(server.as_bytes()),
            port,
            if verb == "atrn" { "domains" } else { "targets" },
            args
        );
        let etrn_next = match &ask {
            Ask::Etrn(t) => t.iter().cloned().collect(),
            Ask::Atrn(_) => VecDeque::new(),
        };
        let lookup_host = if server.parse::<std::net::IpAddr>().is_ok() {
            format!("[{server}]")
        } else {
            server.clone()
        };
        self.odmr.customers.insert(
            cid,
            Customer {
                server,
                port,
                ask,
                etrn_next,
                etrn_replies: Vec::new(),
                reply_to,
                link,
                hops: VecDeque::new(),
                atrn: None,
                failure: None,
            },
        );
        let lid = self.dns.lookup(&lookup_host, true, now);
        self.odmr.lookups.insert(lid, cid);
        None
    }

    /// The provider's addresses are known (or not).
    pub(super) fn customer_resolved(
        &mut self,
        lid: crate::dns::LookupId,
        outcome: Outcome,
        now: Instant,
    ) {
        let Some(cid) = self.odmr.lookups.remove(&lid) else {
            return;
        };
        let Some(c) = self.odmr.customers.get_mut(&cid) else {
            return;
        };
        match outcome {
            Outcome::Hops(hops) => {
                c.hops = hops
                    .into_iter()
                    .map(|mut h| {
                        h.addr.set_port(c.port);
                        h.addr
                    })
                    .collect();
                self.customer_connect(cid, now);
            }
            Outcome::Failed { reason, .. } | Outcome::Deferred { reason, .. } => {
                let r = Reply::new(421, format!("4.4.1 cannot find {}: {reason}", c.server));
                self.customer_done(cid, r);
            }
        }
    }

    /// Connects to the next address of the provider.
    fn customer_connect(&mut self, cid: u64, now: Instant) {
        loop {
            let Some(server) = self.odmr.customers.get(&cid).map(|c| c.server.clone()) else {
                return;
            };
            if let Some(l) = self.server_link_down(&server) {
                let r = Reply::new(421, format!("4.4.1 link {l} went down"));
                return self.customer_done(cid, r);
            }
            let Some(c) = self.odmr.customers.get_mut(&cid) else {
                return;
            };
            let Some(addr) = c.hops.pop_front() else {
                let r = c.failure.take().unwrap_or_else(|| {
                    Reply::new(
                        421,
                        format!("4.4.1 {} has no address to connect to", c.server),
                    )
                });
                return self.customer_done(cid, r);
            };
            let from = self.config.main.bind_for(addr);
            let connected = crate::sys::connect_from(addr, from).map(TcpStream::from_std);
            let opened = connected.and_then(|stream| {
                let role = Role::Client(Box::new(OutLink {
                    job: JobId(0),
                    relay: format!("{}[{}]:{}", c.server, addr.ip(), addr.port()),
                    session: None,
                    connect_deadline: now + CONNECT_TIMEOUT,
                    #[cfg(feature = "tls")]
                    tls_plan: None,
                    addr,
                    customer: Some(cid),
                }));
                self.links.add(stream, role, self.poll.registry())
            });
            match opened {
                Ok(id) => {
                    self.links.set_timer(id, Some(now + CONNECT_TIMEOUT));
                    return;
                }
                Err(e) => {
                    c.failure = Some(Reply::new(421, format!("4.4.1 connect to {addr}: {e}")));
                }
            }
        }
    }

    /// The customer's connection is up: its client session starts.
    pub(super) fn customer_connected(&mut self, id: ConnId, cid: u64, now: Instant) {
        let Some(server) = self.odmr.customers.get(&cid).map(|c| c.server.clone()) else {
            return;
        };
        let Some(addr) = self.client_addr(id) else {
            return;
        };
        let hostname = self.config.main.hostname.clone();
        let sec = self.client_security(id, &server, &server, addr, now);
        let implicit = sec.implicit;
        let s = ClientSession::new(&hostname, now).with_security(sec);
        if let Some(c) = self.links.get_mut(id).and_then(|l| l.role.client()) {
            log::info!("atrn customer-connected relay={}", c.relay);
            c.session = Some(s);
        }
        if implicit {
            self.start_client_tls(id, now);
        }
        self.drive_customer(id, now);
    }

    /// The customer's connection failed before SMTP: the next address.
    pub(super) fn customer_conn_failed(&mut self, id: ConnId, cid: u64, why: &str, now: Instant) {
        self.links.close(id, self.poll.registry());
        if let Some(c) = self.odmr.customers.get_mut(&cid) {
            log::info!(
                "atrn customer-connect-failed server={} error=\"{}\"",
                c.server,
                sanitize(why.as_bytes())
            );
            c.failure = Some(Reply::new(421, format!("4.4.1 {}: {why}", c.server)));
        }
        self.customer_connect(cid, now);
    }

    /// Writes the customer session's output and acts on its events.
    pub(super) fn drive_customer(&mut self, id: ConnId, now: Instant) {
        loop {
            let Some(link) = self.links.get_mut(id) else {
                return;
            };
            link.flush();
            let dead = link.dead;
            let Some(c) = link.role.client() else { return };
            let Some(cid) = c.customer else { return };
            let Some(s) = c.session.as_mut() else { return };
            if dead {
                s.handle_eof();
            }
            let ev = s.poll_event();
            let t = s.poll_timeout();
            let authenticated = s.authenticated();
            let Some(ev) = ev else {
                self.links.set_timer(id, t);
                return;
            };
            let Some(cust) = self.odmr.customers.get_mut(&cid) else {
                return;
            };
            match ev {
                ClientEvent::StartTls => self.start_client_tls(id, now),
                ClientEvent::Ready if matches!(cust.ask, Ask::Etrn(_)) => {
                    if cust.etrn_replies.is_empty() {
                        self.next_etrn(id, cid, now);
                    }
                }
                ClientEvent::Etrn { code, text } => {
                    log::info!(
                        "etrn customer-reply server={} reply=\"{}\"",
                        cust.server,
                        sanitize(text.as_bytes())
                    );
                    cust.etrn_replies.push((code, text));
                    self.next_etrn(id, cid, now);
                }
                ClientEvent::Ready if cust.atrn.is_none() => {
                    if !authenticated {
                        cust.failure = Some(Reply::new(
                            530,
                            format!(
                                "5.7.0 {} did not let us authenticate (no AUTH mechanism in common)",
                                cust.server
                            ),
                        ));
                        if let Some(s) = self.customer_session(id) {
                            s.quit(now);
                        }
                        continue;
                    }
                    let Ask::Atrn(domains) = cust.ask.clone() else {
                        continue;
                    };
                    if let Some(s) = self.customer_session(id) {
                        s.atrn(&domains, now);
                    }
                }
                ClientEvent::Ready | ClientEvent::Done(_) => {}
                ClientEvent::Atrn { code, text } => {
                    log::info!(
                        "atrn customer-reply server={} reply=\"{}\"",
                        cust.server,
                        sanitize(text.as_bytes())
                    );
                    cust.atrn = Some((code, text));
                    if code == 250 {
                        return self.turn_customer(id, cid, now);
                    }
                    if let Some(s) = self.customer_session(id) {
                        s.quit(now);
                    }
                }
                ClientEvent::Failed { temporary, reason } => {
                    let code = if reason.starts_with("AUTH") {
                        535
                    } else if temporary {
                        421
                    } else {
                        554
                    };
                    let status = match code {
                        535 => "5.7.8",
                        421 => "4.4.2",
                        _ => "5.0.0",
                    };
                    cust.failure = Some(Reply::new(
                        code,
                        format!("{status} {}: {reason}", cust.server),
                    ));
                    self.links.close(id, self.poll.registry());
                    return self.customer_finish(cid);
                }
                ClientEvent::Closed => {
                    self.links.close(id, self.poll.registry());
                    return self.customer_finish(cid);
                }
            }
        }
    }

    /// Sends the next ETRN of a link-up action, or QUIT after the last.
    fn next_etrn(&mut self, id: ConnId, cid: u64, now: Instant) {
        let next = self
            .odmr
            .customers
            .get_mut(&cid)
            .and_then(|c| c.etrn_next.pop_front());
        if let Some(s) = self.customer_session(id) {
            match next {
                Some(t) => s.etrn(&t, now),
                None => s.quit(now),
            }
        }
    }

    fn customer_session(&mut self, id: ConnId) -> Option<&mut ClientSession> {
        self.links.get_mut(id)?.role.client()?.session.as_mut()
    }

    /// `250` to our ATRN: the link becomes a server session for the provider.
    fn turn_customer(&mut self, id: ConnId, cid: u64, now: Instant) {
        let Some(cust) = self.odmr.customers.get(&cid) else {
            return;
        };
        let server = cust.server.clone();
        let Some(link) = self.links.get_mut(id) else {
            return;
        };
        let Some(peer) = link.role.client().map(|c| c.addr) else {
            return;
        };
        let tls = link
            .role
            .client()
            .and_then(|c| c.session.as_ref())
            .and_then(|s| s.tls_info().map(str::to_string));
        self.next_session = self.next_session.wrapping_add(1);
        let ctx = session_ctx!(self);
        let session = ServerSession::reversed(self.next_session, peer, &server, tls, &ctx, now);
        let ip = crate::config::cidr::canonical(peer.ip());
        link.set_role(Role::Server(Box::new(Inbound::new(ip, session))));
        *self.per_ip.entry(ip).or_default() += 1;
        self.live += 1;
        self.odmr.reversed.insert(id, cid);
        self.service(id, now);
    }

    /// A reversed server link closed: the requester hears how many messages came.
    pub(super) fn reversed_closed(&mut self, id: ConnId, accepted: u32) {
        let Some(cid) = self.odmr.reversed.remove(&id) else {
            return;
        };
        let Some(c) = self.odmr.customers.get(&cid) else {
            return;
        };
        let r = Reply::new(
            250,
            format!("2.0.0 {accepted} message(s) received from {}", c.server),
        );
        self.customer_done(cid, r);
    }

    /// The customer's client session ended without a turn-around.
    fn customer_finish(&mut self, cid: u64) {
        let Some(c) = self.odmr.customers.get_mut(&cid) else {
            return;
        };
        let etrn = matches!(c.ask, Ask::Etrn(_));
        let r = match (c.atrn.take(), c.failure.take()) {
            (_, Some(f)) => f,
            (None, None) if etrn && !c.etrn_replies.is_empty() => {
                // The worst reply decides: 5xx, then 4xx, else every target started.
                let worst = c.etrn_replies.iter().map(|(code, _)| *code).max().unwrap_or(250);
                let code = if worst < 400 { 250 } else { worst };
                let text: Vec<String> = c.etrn_replies.iter().map(|(_, t)| t.clone()).collect();
                Reply::new(code, format!("{}: ETRN: {}", c.server, text.join("; ")))
            }
            (Some((453, text)), None) => Reply::new(
                250,
                format!("2.0.0 {} has no mail for us ({text})", c.server),
            ),
            (Some((code, text)), None) => Reply::new(
                code,
                format!(
                    "{} {}: ATRN: {text}",
                    if code < 500 { "4.7.0" } else { "5.7.0" },
                    c.server
                ),
            ),
            (None, None) => Reply::new(421, format!("4.4.2 {}: connection closed", c.server)),
        };
        self.customer_done(cid, r);
    }

    /// A customer request is over: log it and tell the requester.
    fn customer_done(&mut self, cid: u64, r: Reply) {
        let Some(c) = self.odmr.customers.remove(&cid) else {
            return;
        };
        log::info!(
            "{} customer-done server={} reply=\"{}\"",
            if matches!(c.ask, Ask::Etrn(_)) { "etrn" } else { "atrn" },
            sanitize(c.server.as_bytes()),
            r
        );
        if let Some(path) = c.reply_to {
            self.control_reply(&path, &r);
        }
        if let Some(link) = c.link {
            self.link_action_done(&link, &r);
        }
    }
}
