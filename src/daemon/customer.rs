//! Client requests the daemon makes of another server on a connection of its own:
//! the ODMR customer (`etrnd atrn`, RFC 2645) and the link-up actions' ETRN and
//! ATRN (DESIGN.md §5.9). Look the server up (the hosts file first, as every
//! delivery), connect (from `SMTP_BIND`), EHLO, STARTTLS per `db/tls_policy`,
//! AUTH with `db/authinfo`'s credentials when we hold some (ATRN needs them).
//! ETRN: each target in turn, then QUIT; the worst reply is the outcome. ATRN: wait
//! up to ten minutes; on `250` the link becomes a server session
//! ([`ServerSession::reversed`]) that greets, takes the provider's mail like any
//! inbound mail (the relay rules of an outside client; the trace header names the
//! provider), and when it ends the requester is told how many messages came. A
//! server behind a link that is down is never looked up or connected to.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::io::conn::{ConnId, Inbound, Outbound as OutLink, Role};
use super::{Core, Io};
use crate::dns::Outcome;
use crate::logging::sanitize;
use crate::sched::JobId;
use crate::smtp::client::{ClientEvent, ClientSession};
use crate::smtp::reply::Reply;
use crate::smtp::server::ServerSession;

/// Most customer requests in progress at once.
pub const MAX_CUSTOMERS: usize = 16;
/// How long the customer's connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a customer request asks of the server.
#[derive(Debug, Clone)]
pub(super) enum Ask {
    /// `ATRN` for these domains (none: all of ours), then turn around.
    Atrn(Vec<String>),
    /// `ETRN` each target in turn (a link-up action), then QUIT.
    Etrn(Vec<String>),
}

impl Ask {
    /// The verb its log lines start with.
    pub(super) fn verb(&self) -> &'static str {
        match self {
            Ask::Atrn(_) => "atrn",
            Ask::Etrn(_) => "etrn",
        }
    }
}

/// One `etrnd atrn` request, or a link-up action's ATRN or ETRN.
pub(super) struct Customer {
    pub(super) server: String,
    pub(super) port: u16,
    pub(super) ask: Ask,
    /// ETRN targets not yet sent, and the replies to those sent.
    pub(super) etrn_next: VecDeque<String>,
    pub(super) etrn_replies: Vec<(u16, String)>,
    /// Who asked (the control socket's peer), told the outcome at the end.
    pub(super) reply_to: Option<super::control::ControlRef>,
    /// The link whose link-up action this is.
    pub(super) link: Option<String>,
    /// Addresses still to try.
    pub(super) hops: VecDeque<SocketAddr>,
    /// The reply to ATRN, once it came.
    pub(super) atrn: Option<(u16, String)>,
    /// Why the last connection or session failed.
    pub(super) failure: Option<Reply>,
}

impl Core {
    /// `etrnd atrn`: starts the customer's side; the requester hears at the end.
    pub(super) fn customer_start(
        &mut self,
        ask: Ask,
        server: String,
        port: u16,
        (reply_to, link): (Option<super::control::ControlRef>, Option<String>),
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
                format!("4.4.0 {server} is behind link {l}, which is down"),
            ));
        }
        let host = crate::daemon::secure::bare_host(&server).to_ascii_lowercase();
        if matches!(ask, Ask::Atrn(_)) && self.outbound_sec.authinfo.lookup(&host, port).is_none() {
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
        io: &mut Io,
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
                self.customer_connect(io, cid, now);
            }
            Outcome::Failed { reason, .. } | Outcome::Deferred { reason, .. } => {
                let r = Reply::new(421, format!("4.4.1 cannot find {}: {reason}", c.server));
                self.customer_done(io, cid, r);
            }
        }
    }

    /// Connects to the next address of the provider.
    fn customer_connect(&mut self, io: &mut Io, cid: u64, now: Instant) {
        loop {
            let Some(server) = self.odmr.customers.get(&cid).map(|c| c.server.clone()) else {
                return;
            };
            if let Some(l) = self.server_link_down(&server) {
                let r = Reply::new(421, format!("4.4.0 link {l} went down"));
                return self.customer_done(io, cid, r);
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
                return self.customer_done(io, cid, r);
            };
            let from = self.config.main.bind_for(addr);
            let connected = super::io::connect(addr, from, None);
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
                io.conns.add(stream, role, &io.registry)
            });
            match opened {
                Ok(id) => {
                    io.conns.set_timer(id, Some(now + CONNECT_TIMEOUT));
                    return;
                }
                Err(e) => {
                    c.failure = Some(Reply::new(421, format!("4.4.1 connect to {addr}: {e}")));
                }
            }
        }
    }

    /// The customer's connection is up: its client session starts.
    pub(super) fn customer_connected(&mut self, io: &mut Io, id: ConnId, cid: u64, now: Instant) {
        let Some((server, verb)) = self
            .odmr
            .customers
            .get(&cid)
            .map(|c| (c.server.clone(), c.ask.verb()))
        else {
            return;
        };
        let Some(addr) = io.client_addr(id) else {
            return;
        };
        let hostname = self.config.main.hostname.clone();
        let sec = self.client_security(io, id, &server, &server, addr, now);
        let implicit = sec.implicit;
        let s = ClientSession::new(&hostname, now).with_security(sec);
        if let Some(c) = io.conns.get_mut(id).and_then(|l| l.role.client()) {
            log::info!("{verb} customer-connected relay={}", c.relay);
            c.session = Some(s);
        }
        if implicit {
            io.start_client_tls(id, now);
        }
        self.drive_customer(io, id, now);
    }

    /// The customer's connection failed before SMTP: the next address.
    pub(super) fn customer_conn_failed(
        &mut self,
        io: &mut Io,
        id: ConnId,
        cid: u64,
        why: &str,
        now: Instant,
    ) {
        io.conns.close(id, &io.registry);
        if let Some(c) = self.odmr.customers.get_mut(&cid) {
            log::info!(
                "{} customer-connect-failed server={} error=\"{}\"",
                c.ask.verb(),
                c.server,
                sanitize(why.as_bytes())
            );
            c.failure = Some(Reply::new(421, format!("4.4.1 {}: {why}", c.server)));
        }
        self.customer_connect(io, cid, now);
    }

    /// Writes the customer session's output and acts on its events.
    pub(super) fn drive_customer(&mut self, io: &mut Io, id: ConnId, now: Instant) {
        loop {
            let Some(conn) = io.conns.get_mut(id) else {
                return;
            };
            conn.flush();
            let dead = conn.dead;
            let Some(c) = conn.role.client() else { return };
            let Some(cid) = c.customer else { return };
            let Some(s) = c.session.as_mut() else { return };
            if dead {
                s.handle_eof();
            }
            let ev = s.poll_event();
            let t = s.poll_timeout();
            let authenticated = s.authenticated();
            let Some(ev) = ev else {
                io.conns.set_timer(id, t);
                return;
            };
            let Some(cust) = self.odmr.customers.get_mut(&cid) else {
                return;
            };
            match ev {
                ClientEvent::StartTls => io.start_client_tls(id, now),
                // Token credentials are for deliveries: ATRN and ETRN use passwords.
                ClientEvent::NeedToken => {
                    if let Some(s) = io.customer_session(id) {
                        s.token(None, now);
                    }
                }
                ClientEvent::Ready if matches!(cust.ask, Ask::Etrn(_)) => {
                    if cust.etrn_replies.is_empty() {
                        self.next_etrn(io, id, cid, now);
                    }
                }
                ClientEvent::Etrn { code, text } => {
                    log::info!(
                        "etrn customer-reply server={} reply=\"{}\"",
                        cust.server,
                        sanitize(text.as_bytes())
                    );
                    cust.etrn_replies.push((code, text));
                    self.next_etrn(io, id, cid, now);
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
                        if let Some(s) = io.customer_session(id) {
                            s.quit(now);
                        }
                        continue;
                    }
                    let Ask::Atrn(domains) = cust.ask.clone() else {
                        continue;
                    };
                    if let Some(s) = io.customer_session(id) {
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
                        return self.turn_customer(io, id, cid, now);
                    }
                    if let Some(s) = io.customer_session(id) {
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
                    io.conns.close(id, &io.registry);
                    return self.customer_finish(io, cid);
                }
                ClientEvent::Closed => {
                    io.conns.close(id, &io.registry);
                    return self.customer_finish(io, cid);
                }
            }
        }
    }

    /// `250` to our ATRN: the link becomes a server session for the provider.
    fn turn_customer(&mut self, io: &mut Io, id: ConnId, cid: u64, now: Instant) {
        let Some(cust) = self.odmr.customers.get(&cid) else {
            return;
        };
        let server = cust.server.clone();
        let Some(conn) = io.conns.get_mut(id) else {
            return;
        };
        let Some(peer) = conn.role.client().map(|c| c.addr) else {
            return;
        };
        let tls = conn
            .role
            .client()
            .and_then(|c| c.session.as_ref())
            .and_then(|s| s.tls_info().map(str::to_string));
        self.next_session = self.next_session.wrapping_add(1);
        let ctx = session_ctx!(self);
        let session = ServerSession::reversed(self.next_session, peer, &server, tls, &ctx, now);
        let ip = crate::config::cidr::canonical(peer.ip());
        conn.set_role(Role::Server(Box::new(Inbound::new(ip, session))));
        *self.per_ip.entry(ip).or_default() += 1;
        self.live += 1;
        self.odmr.reversed.insert(id, cid);
        self.service(io, id, now);
    }

    /// A reversed server link closed: the requester hears how many messages came.
    pub(super) fn reversed_closed(&mut self, io: &mut Io, id: ConnId, accepted: u32) {
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
        self.customer_done(io, cid, r);
    }

    /// The customer's client session ended without a turn-around.
    fn customer_finish(&mut self, io: &mut Io, cid: u64) {
        let Some(c) = self.odmr.customers.get_mut(&cid) else {
            return;
        };
        let etrn = matches!(c.ask, Ask::Etrn(_));
        let r = match (c.atrn.take(), c.failure.take()) {
            (_, Some(f)) => f,
            (None, None) if etrn && !c.etrn_replies.is_empty() => {
                // The worst reply decides: 5xx, then 4xx, else every target started.
                let worst = c
                    .etrn_replies
                    .iter()
                    .map(|(code, _)| *code)
                    .max()
                    .unwrap_or(250);
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
        self.customer_done(io, cid, r);
    }

    /// A customer request is over: log it and tell the requester.
    fn customer_done(&mut self, io: &mut Io, cid: u64, r: Reply) {
        let Some(c) = self.odmr.customers.remove(&cid) else {
            return;
        };
        log::info!(
            "{} customer-done server={} reply=\"{}\"",
            c.ask.verb(),
            sanitize(c.server.as_bytes()),
            r
        );
        if let Some(to) = c.reply_to {
            self.control_reply(io, to, &r, Instant::now());
        }
        if let Some(link) = c.link {
            self.link_action_done(&link, &r);
        }
    }
}

impl Core {
    /// Sends the next ETRN of a link-up action, or QUIT after the last.
    fn next_etrn(&mut self, io: &mut Io, id: ConnId, cid: u64, now: Instant) {
        let next = self
            .odmr
            .customers
            .get_mut(&cid)
            .and_then(|c| c.etrn_next.pop_front());
        if let Some(s) = io.customer_session(id) {
            match next {
                Some(t) => s.etrn(&t, now),
                None => s.quit(now),
            }
        }
    }
}

impl Io {
    fn customer_session(&mut self, id: ConnId) -> Option<&mut ClientSession> {
        self.conns.get_mut(id)?.role.client()?.session.as_mut()
    }
}
