//! Client requests the daemon makes of another server on a connection of its own:
//! the ODMR customer (`etrnd atrn`, RFC 2645) and the link-up actions' ETRN and
//! ATRN (DESIGN.md §5.9). Look the server up (the hosts file first, as every
//! delivery), connect (from `SMTP_BIND`), EHLO, STARTTLS per `db/tls_policy`,
//! AUTH with `db/authinfo`'s credentials when we hold some (ATRN needs them).
//! ETRN: each target in turn, then QUIT; the worst reply is the outcome. ATRN: wait
//! up to ten minutes; on `250` the connection becomes a server session
//! ([`ServerSession::reversed`]) that greets, takes the provider's mail like any
//! inbound mail (the relay rules of an outside client; the trace header names the
//! provider), and when it ends the requester is told how many messages came. A
//! server behind a link that is down is never looked up or connected to.

use std::time::{Duration, Instant};

use super::io::conn::{ConnId, Inbound, Outbound as OutLink, Role, Serves};
use super::{Core, Io};
use crate::dns::Outcome;
use crate::logging::sanitize;
pub(super) use crate::machines::customer::Ask;
use crate::machines::customer::{Customer, Step};
use crate::smtp::client::{ClientEvent, ClientSession};
use crate::smtp::reply::Reply;
use crate::smtp::server::ServerSession;

/// Most customer requests in progress at once.
pub const MAX_CUSTOMERS: usize = 16;
/// How long the customer's connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// One request in progress: its machine, and who hears the outcome.
pub(super) struct Request {
    pub(super) machine: Customer,
    /// Who asked (the control socket's peer), told the outcome at the end.
    pub(super) reply_to: Option<super::control::ControlRef>,
    /// The link whose link-up action this is.
    pub(super) link: Option<String>,
}

impl Core {
    /// `etrnd atrn`, or a link-up action: starts the customer's side; the
    /// requester hears at the end. A refusal at once is returned.
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
            "{verb} customer-start server={} port={} {}={} id={cid}",
            sanitize(server.as_bytes()),
            port,
            if verb == "atrn" { "domains" } else { "targets" },
            args
        );
        let machine = Customer::new(server, port, ask);
        let lid = self.dns.lookup(&machine.lookup_name(), true, now);
        self.odmr.customers.insert(
            cid,
            Request {
                machine,
                reply_to,
                link,
            },
        );
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
        let found = match outcome {
            Outcome::Hops(hops) => Ok(hops.into_iter().map(|h| h.addr).collect()),
            Outcome::Failed { reason, .. } | Outcome::Deferred { reason, .. } => Err(reason),
        };
        let down = self.customer_link_down(cid);
        let Some(c) = self.odmr.customers.get_mut(&cid) else {
            return;
        };
        let step = c.machine.resolved(found, down.as_deref());
        self.customer_step(io, None, cid, step, now);
    }

    /// The down link the request's server is behind, if any.
    fn customer_link_down(&self, cid: u64) -> Option<String> {
        let c = self.odmr.customers.get(&cid)?;
        self.server_link_down(&c.machine.server)
    }

    /// Carries out what the machine of request `cid` (on connection `id`, once it
    /// has one) said to do.
    fn customer_step(
        &mut self,
        io: &mut Io,
        id: Option<ConnId>,
        cid: u64,
        mut step: Step,
        now: Instant,
    ) {
        loop {
            let session = id.and_then(|id| io.customer_session(id));
            step = match (step, session) {
                (Step::Connect(addr), _) => match self.customer_open(io, cid, addr, now) {
                    Ok(()) => return,
                    Err(why) => {
                        let down = self.customer_link_down(cid);
                        match self.odmr.customers.get_mut(&cid) {
                            Some(c) => c.machine.open_failed(&why, down.as_deref()),
                            None => return,
                        }
                    }
                },
                (Step::Etrn(t), Some(s)) => return s.etrn(&t, now),
                (Step::Atrn(domains), Some(s)) => return s.atrn(&domains, now),
                (Step::Quit, Some(s)) => return s.quit(now),
                (Step::Turn, _) => {
                    if let Some(id) = id {
                        self.turn_customer(io, id, cid, now);
                    }
                    return;
                }
                (Step::Done(r), _) => return self.customer_done(io, cid, r),
                (Step::Wait, _) | (_, None) => return,
            };
        }
    }

    /// Opens the connection to `addr` for request `cid`.
    fn customer_open(
        &mut self,
        io: &mut Io,
        cid: u64,
        addr: std::net::SocketAddr,
        now: Instant,
    ) -> Result<(), String> {
        let Some(c) = self.odmr.customers.get(&cid) else {
            return Ok(());
        };
        let from = self.config.main.bind_for(addr);
        let opened = super::io::connect(addr, from, None).and_then(|stream| {
            let role = Role::Client(Box::new(OutLink {
                serves: Serves::Customer(cid),
                relay: format!("{}[{}]:{}", c.machine.server, addr.ip(), addr.port()),
                session: None,
                connect_deadline: now + CONNECT_TIMEOUT,
                #[cfg(feature = "tls")]
                tls_plan: None,
                addr,
            }));
            io.conns.add(stream, role, &io.registry)
        });
        match opened {
            Ok(id) => {
                io.conns.set_timer(id, Some(now + CONNECT_TIMEOUT));
                Ok(())
            }
            Err(e) => Err(format!("connect to {addr}: {e}")),
        }
    }

    /// The customer's connection is up: its client session starts.
    pub(super) fn customer_connected(&mut self, io: &mut Io, id: ConnId, cid: u64, now: Instant) {
        let Some(c) = self.odmr.customers.get_mut(&cid) else {
            return;
        };
        c.machine.connected();
        let (server, verb) = (c.machine.server.clone(), c.machine.ask.verb());
        let Some(addr) = io.client_addr(id) else {
            return;
        };
        let hostname = self.config.main.hostname.clone();
        let sec = self.client_security(io, id, &server, &server, addr, now);
        let implicit = sec.implicit;
        let s = ClientSession::new(&hostname, now)
            .with_trace(format!("customer-{cid}"))
            .with_security(sec);
        if let Some(c) = io.conns.get_mut(id).and_then(|l| l.role.client()) {
            log::info!("{verb} customer-connected relay={} id={cid}", c.relay);
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
        let down = self.customer_link_down(cid);
        let Some(c) = self.odmr.customers.get_mut(&cid) else {
            return;
        };
        log::info!(
            "{} customer-connect-failed server={} error=\"{}\" id={cid}",
            c.machine.ask.verb(),
            c.machine.server,
            sanitize(why.as_bytes())
        );
        let step = c.machine.connect_failed(why, down.as_deref());
        self.customer_step(io, None, cid, step, now);
    }

    /// Writes the customer session's output and hands its events to the machine.
    pub(super) fn drive_customer(&mut self, io: &mut Io, id: ConnId, now: Instant) {
        loop {
            let Some(conn) = io.conns.get_mut(id) else {
                return;
            };
            conn.flush();
            let dead = conn.dead;
            let Some(c) = conn.role.client() else { return };
            let Serves::Customer(cid) = c.serves else {
                return;
            };
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
            let m = &mut cust.machine;
            let step = match ev {
                ClientEvent::StartTls => {
                    io.start_client_tls(id, now);
                    Step::Wait
                }
                // Token credentials are for deliveries: ATRN and ETRN use passwords.
                ClientEvent::NeedToken => {
                    if let Some(s) = io.customer_session(id) {
                        s.token(None, now);
                    }
                    Step::Wait
                }
                ClientEvent::Ready => m.ready(authenticated),
                ClientEvent::Etrn { code, text } | ClientEvent::Atrn { code, text } => {
                    log::info!(
                        "{} customer-reply server={} reply=\"{}\" id={cid}",
                        m.ask.verb(),
                        m.server,
                        sanitize(text.as_bytes())
                    );
                    match m.ask {
                        Ask::Etrn(_) => m.etrn_reply(code, text),
                        Ask::Atrn(_) => m.atrn_reply(code, text),
                    }
                }
                ClientEvent::Done(_) => Step::Wait,
                ClientEvent::Failed {
                    temporary,
                    auth,
                    reason,
                } => {
                    io.conns.close(id, &io.registry);
                    m.failed(temporary, auth, &reason)
                }
                ClientEvent::Closed => {
                    io.conns.close(id, &io.registry);
                    m.closed()
                }
            };
            let last = matches!(step, Step::Turn | Step::Done(_));
            self.customer_step(io, Some(id), cid, step, now);
            if last {
                return;
            }
        }
    }

    /// `250` to our ATRN: the connection becomes a server session for the provider.
    fn turn_customer(&mut self, io: &mut Io, id: ConnId, cid: u64, now: Instant) {
        let Some(cust) = self.odmr.customers.get(&cid) else {
            return;
        };
        let server = cust.machine.server.clone();
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
        self.clients.next_session = self.clients.next_session.wrapping_add(1);
        let ctx = session_ctx!(self);
        let session =
            ServerSession::reversed(self.clients.next_session, peer, &server, tls, &ctx, now);
        let ip = crate::config::cidr::canonical(peer.ip());
        conn.set_role(Role::Server(Box::new(Inbound::new(ip, session))));
        *self.clients.per_ip.entry(ip).or_default() += 1;
        self.clients.live += 1;
        self.odmr.reversed.insert(id, cid);
        self.service(io, id, now);
    }

    /// A reversed server connection closed: the requester hears how many messages came.
    pub(super) fn reversed_closed(&mut self, io: &mut Io, id: ConnId, accepted: u32) {
        let Some(cid) = self.odmr.reversed.remove(&id) else {
            return;
        };
        let Some(c) = self.odmr.customers.get_mut(&cid) else {
            return;
        };
        let step = c.machine.turned_closed(accepted);
        self.customer_step(io, None, cid, step, Instant::now());
    }

    /// A customer request is over: log it and tell the requester.
    fn customer_done(&mut self, io: &mut Io, cid: u64, r: Reply) {
        let Some(c) = self.odmr.customers.remove(&cid) else {
            return;
        };
        log::info!(
            "{} customer-done server={} reply=\"{}\" id={cid}",
            c.machine.ask.verb(),
            sanitize(c.machine.server.as_bytes()),
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

impl Io {
    fn customer_session(&mut self, id: ConnId) -> Option<&mut ClientSession> {
        self.conns.get_mut(id)?.role.client()?.session.as_mut()
    }
}
