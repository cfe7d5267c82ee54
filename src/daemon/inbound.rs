//! Accepted SMTP clients: accepting (with the limits and the out-of-descriptors
//! refusal), serving a server connection (read what the session wants, route its events,
//! write its output), committing the messages of a turn as one batch, and closing.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use super::io::conn::{ConnId, Inbound, ReadResult, Role};
use super::secure::tls_step;

/// AUTH checks sessions asked for, by connection.
type AuthChecks = Vec<(ConnId, crate::auth::Check)>;
/// ATRNs sessions asked for: connection, identity, domains.
type AtrnAsks = Vec<(ConnId, String, Vec<String>)>;
use super::{Core, Io, REFUSAL_SLACK};
use crate::config::{cidr, ListenKind};
use crate::smtp::etrn_target::EtrnTarget;
use crate::smtp::reply::Reply;
use crate::smtp::server::{Event, ServerSession};
use crate::smtp::trace::{self, TraceInfo};
use crate::store::spool::{Envelope, Incoming, Spool};

/// The accepted clients.
#[derive(Default)]
pub(super) struct Clients {
    /// Connected now, per address and in all.
    pub(super) per_ip: std::collections::HashMap<std::net::IpAddr, usize>,
    pub(super) live: usize,
    /// The last session id given.
    pub(super) next_session: u32,
    /// Messages that ended this turn, committed together.
    pub(super) batch: Vec<(
        ConnId,
        crate::store::spool::Incoming,
        Box<crate::store::spool::Envelope>,
    )>,
    /// While set, serving a session does not write its output yet: pipelined ETRNs
    /// answered in rounds leave in one write (separate small writes would wait for
    /// the client's delayed ACK behind Nagle, 40 ms each on Linux).
    pub(super) hold_output: bool,
    /// ETRN requests of this turn: (connection, target).
    pub(super) etrns: Vec<(ConnId, crate::smtp::etrn_target::EtrnTarget)>,
    /// ATRN requests of this turn: (connection, identity, domains).
    pub(super) atrns: Vec<(ConnId, String, Vec<String>)>,
}

impl Core {
    pub(super) fn accept(
        &mut self,
        io: &mut Io,
        idx: usize,
        now: Instant,
        touched: &mut Vec<ConnId>,
    ) {
        loop {
            let Some(Some((_, listener))) = io.listeners.get(idx) else {
                return;
            };
            let kind = io
                .listener_kinds
                .get(idx)
                .copied()
                .unwrap_or(ListenKind::Smtp);
            let (stream, addr) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                    if self.refuse_out_of_fds(io, idx) {
                        continue;
                    }
                    return;
                }
                Err(e) => {
                    log::error!("smtp accept-failed error=\"{e}\"");
                    return;
                }
            };
            let ip = cidr::canonical(addr.ip());
            let max = self.config.main.max_connections;
            if self.clients.live >= max.saturating_add(REFUSAL_SLACK) {
                continue; // dropped: a flood, not a client
            }
            self.clients.next_session = self.clients.next_session.wrapping_add(1);
            let sid = self.clients.next_session;
            let per_ip = self.clients.per_ip.get(&ip).copied().unwrap_or(0);
            let host = &self.config.main.hostname;
            let limit = if self.clients.live >= max {
                Some("too many connections")
            } else if per_ip >= self.config.main.max_connections_per_ip {
                Some("too many connections from your address")
            } else {
                None
            };
            let session = if kind == ListenKind::Smtps
                && (limit.is_some()
                    || !self.sec.tls
                    || self.sec.handshakes >= super::MAX_HANDSHAKES)
            {
                // No plaintext can be spoken here: such a client is dropped.
                let why = match limit {
                    Some(w) => w,
                    None if self.sec.tls => "too many TLS handshakes",
                    None => "no certificate for smtps",
                };
                log::warn!("smtp refused address={addr} reason=\"{why}\"");
                continue;
            } else if let Some(why) = limit {
                ServerSession::refuse(sid, addr, host, why, now)
            } else {
                let ctx = session_ctx!(self);
                ServerSession::new(sid, SocketAddr::new(ip, addr.port()), kind, &ctx, now)
            };
            let role = Role::Server(Box::new(Inbound::new(ip, session)));
            match io.conns.add(stream, role, &io.registry) {
                Ok(id) => {
                    *self.clients.per_ip.entry(ip).or_insert(0) += 1;
                    self.clients.live += 1;
                    if kind == ListenKind::Smtps {
                        self.start_implicit_tls(io, id, now);
                    }
                    touched.push(id);
                }
                Err(e) => log::error!("smtp register-failed error=\"{e}\""),
            }
        }
    }

    /// Out of descriptors: free the spare, take the client, tell it 421 and let it
    /// go, then take the spare back (Postfix's trick), so clients are refused cleanly
    /// instead of hanging. Returns whether a client was taken (Linux reports EMFILE
    /// even with nobody waiting: then the accept loop stops).
    fn refuse_out_of_fds(&mut self, io: &mut Io, idx: usize) -> bool {
        io.spare_fd = None;
        let taken = match io.listeners.get(idx) {
            Some(Some((_, l))) => l.accept().ok(),
            _ => None,
        };
        let got_one = taken.is_some();
        if let Some((mut s, addr)) = taken {
            let msg = Reply::closing(
                &self.config.main.hostname,
                "4.3.2 Error: too busy, try later",
            );
            let mut out = Vec::new();
            msg.write_to(&mut out);
            let _ = std::io::Write::write(&mut s, &out);
            log::warn!("smtp refused address={addr} reason=\"out of file descriptors\"");
        }
        io.spare_fd = std::fs::File::open("/dev/null").ok();
        got_one
    }

    /// Reads what the session wants, routes its events, writes its output, and
    /// closes or re-arms the connection.
    pub(super) fn service(&mut self, io: &mut Io, id: ConnId, now: Instant) {
        let Some(conn) = io.conns.slab.get_mut(id) else {
            return;
        };
        // Events are routed before the first read and after every read, so message
        // octets go to the spool chunk by chunk.
        loop {
            let Some(c) = conn.role.server() else { return };
            route_events(
                &mut self.spool,
                &mut self.clients.batch,
                (
                    &mut self.clients.etrns,
                    &mut self.auth.asked,
                    &mut self.clients.atrns,
                ),
                &session_ctx!(self),
                id,
                c,
                now,
            );
            if !self.clients.hold_output {
                conn.flush();
            }
            tls_step(conn, &mut self.sec, io.tls_server.as_ref(), now);
            let want = conn.role.wants_read(now) || conn.stream.handshaking();
            if !(conn.readable && !conn.dead && want) {
                break;
            }
            let r = conn.read(&mut io.buf);
            // A handshake that just ended comes before the first octets inside it.
            tls_step(conn, &mut self.sec, io.tls_server.as_ref(), now);
            let Some(c) = conn.role.server() else { return };
            match r {
                ReadResult::Closed if conn.stream.tls_error().is_some() => {
                    log::info!(
                        "{:08x} smtp tls-failed address={} error=\"{}\"",
                        c.session.id(),
                        c.ip,
                        crate::logging::sanitize(
                            conn.stream.tls_error().unwrap_or_default().as_bytes()
                        )
                    );
                    c.session.handle_eof();
                }
                ReadResult::Data(n) => {
                    let ctx = session_ctx!(self);
                    c.session.handle_input(&io.buf[..n], now, &ctx);
                }
                ReadResult::WouldBlock => {}
                ReadResult::Closed => c.session.handle_eof(),
            }
        }
        let dead = conn.dead;
        let Some(c) = conn.role.server() else { return };
        if c.session.turned() && !dead {
            // The 250 to ATRN must be out (TLS records too) before the roles swap.
            let pending = conn.flush();
            let empty = conn
                .role
                .server()
                .is_some_and(|c| c.session.pending_output().is_empty());
            if !pending && empty {
                self.turn_provider(io, id, now);
            } else {
                // A customer that takes nothing more is dropped (the claim goes back).
                let wait = crate::smtp::server::COMMAND_TIMEOUT;
                io.conns.set_timer(id, Some(now + wait));
            }
            return;
        }
        let done = dead || (c.session.is_closing() && c.session.pending_output().is_empty());
        let waiting = self.clients.batch.iter().any(|(s, _, _)| *s == id)
            || self.clients.etrns.iter().any(|(s, _)| *s == id);
        if done && c.incoming.is_none() && !waiting {
            self.close(io, id, now);
        } else {
            let t = match (c.session.poll_timeout(), conn.stream.handshake_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            io.conns.set_timer(id, t);
        }
        if !self.auth.asked.is_empty() {
            self.send_auth_checks(io, now);
        }
        if !self.clients.atrns.is_empty() {
            self.atrn_requests(io, now);
        }
    }

    /// Commits the messages that ended in this turn, then answers their sessions.
    pub(super) fn commit(&mut self, io: &mut Io, now: Instant) {
        while !self.clients.batch.is_empty() {
            let batch = std::mem::take(&mut self.clients.batch);
            let ids: Vec<ConnId> = batch.iter().map(|(s, _, _)| *s).collect();
            let sizes: Vec<u64> = batch.iter().map(|(_, i, _)| i.len()).collect();
            let mut envs = Vec::with_capacity(batch.len());
            let mut incs = Vec::with_capacity(batch.len());
            for (_, i, e) in batch {
                incs.push(i);
                envs.push(e);
            }
            let results = self.spool.commit(incs);
            for (((id, result), size), env) in ids.into_iter().zip(results).zip(sizes).zip(envs) {
                let Some(c) = io.conns.get_mut(id).and_then(|l| l.role.server()) else {
                    if let Ok(mid) = &result {
                        self.sched.add_sized(*mid, &env, &[], self.time.unix, size);
                    }
                    continue;
                };
                match &result {
                    Ok(mid) => {
                        // Postfix's pair first (DESIGN.md §5.12), then our own line.
                        log::info!(target: "smtpd", "{mid}: client=unknown[{}]", c.ip);
                        super::inject::log_queued(*mid, &env, size);
                        log::info!(
                            "{} smtp queued session={:08x} client={} size={}",
                            mid,
                            c.session.id(),
                            c.ip,
                            size
                        );
                        self.sched.add_sized(*mid, &env, &[], self.time.unix, size);
                        let expanded = c.session.take_expanded();
                        if !expanded.is_empty() {
                            self.send_expanded(*mid, &expanded);
                        }
                    }
                    Err(e) => {
                        log::error!(
                            "smtp queue-failed session={:08x} error=\"{}\"",
                            c.session.id(),
                            e
                        );
                        // The disk is looked at again at once: MAIL is refused
                        // while it is full, and the check repeats until there is room.
                        if e.is_no_space() {
                            self.disk.checked = None;
                        }
                    }
                }
                let ctx = session_ctx!(self);
                c.session.handle_commit(result.as_ref().copied(), now, &ctx);
                self.service(io, id, now);
            }
        }
    }

    /// Closes a server connection.
    pub(super) fn close(&mut self, io: &mut Io, id: ConnId, now: Instant) {
        let Some(conn) = io.conns.close(id, &io.registry) else {
            return;
        };
        let Role::Server(c) = conn.role else { return };
        let accepted = c.session.accepted;
        log::info!(
            "{:08x} smtp disconnect address={} messages={}",
            c.session.id(),
            c.session.client(),
            accepted
        );
        self.forget_inbound(*c);
        self.drop_turning(id, now);
        self.reversed_closed(io, id, accepted);
    }

    /// The accounting of a server session that ends (closed, or turned around by
    /// ATRN into a client session).
    pub(super) fn forget_inbound(&mut self, mut c: Inbound) {
        if let Some(inc) = c.incoming.take() {
            self.spool.abort(inc);
        }
        if c.handshaking {
            self.sec.handshakes = self.sec.handshakes.saturating_sub(1);
        }
        if let Some(n) = self.clients.per_ip.get_mut(&c.ip) {
            *n -= 1;
            if *n == 0 {
                self.clients.per_ip.remove(&c.ip);
            }
        }
        self.clients.live -= 1;
    }

    /// A server connection's deadline came.
    pub(super) fn server_timeout(&mut self, io: &mut Io, id: ConnId, now: Instant) {
        let Some(conn) = io.conns.get_mut(id) else {
            return;
        };
        if conn.stream.handshake_deadline().is_some_and(|t| t <= now) {
            if let Some(c) = conn.role.server() {
                log::info!("{:08x} smtp tls-timeout address={}", c.session.id(), c.ip);
                c.session.handle_eof();
            }
            self.close(io, id, now);
            return;
        }
        if let Some(c) = conn.role.server() {
            if c.session.turned() {
                log::info!(
                    "{:08x} atrn timeout address={}: the 250 was never taken",
                    c.session.id(),
                    c.ip
                );
                self.close(io, id, now);
                return;
            }
            let ctx = session_ctx!(self);
            c.session.handle_timeout(now, &ctx);
            self.service(io, id, now);
        }
    }

    /// Ends every server session (shutdown).
    pub(super) fn close_servers(&mut self, io: &mut Io, now: Instant) {
        let host = self.config.main.hostname.clone();
        for id in io.server_links() {
            let Some(conn) = io.conns.get_mut(id) else {
                continue;
            };
            if let Some(c) = conn.role.server() {
                c.session.shutdown(&host);
                while let Some(ev) = c.session.poll_event() {
                    if let Event::MessageAbort = ev {
                        if let Some(inc) = c.incoming.take() {
                            self.spool.abort(inc);
                        }
                    }
                }
            }
            conn.flush();
            self.close(io, id, now);
        }
    }
}

impl Io {
    /// Every server connection (draining and stopping walk them).
    pub(super) fn server_links(&self) -> Vec<ConnId> {
        self.conns
            .slab
            .ids()
            .into_iter()
            .filter(|id| {
                self.conns
                    .slab
                    .get(*id)
                    .is_some_and(|l| matches!(l.role, Role::Server(_)))
            })
            .collect()
    }
}

/// Carries out what a session asked of the spool.
fn route_events(
    spool: &mut Spool,
    batch: &mut Vec<(ConnId, Incoming, Box<Envelope>)>,
    (etrns, auths, atrns): (
        &mut Vec<(ConnId, EtrnTarget)>,
        &mut AuthChecks,
        &mut AtrnAsks,
    ),
    ctx: &crate::smtp::server::Context<'_>,
    id: ConnId,
    c: &mut Inbound,
    now: Instant,
) {
    while let Some(ev) = c.session.poll_event() {
        match ev {
            Event::Etrn(t) => etrns.push((id, t)),
            Event::AuthCheck(check) => auths.push((id, check)),
            Event::Atrn { user, domains } => atrns.push((id, user, domains)),
            Event::MessageStart(env) => match spool.begin(&env) {
                Ok(mut inc) => {
                    let mid = inc.id.to_string();
                    let single = match env.recipients.as_slice() {
                        [one] => Some(one.address.to_string()),
                        _ => None,
                    };
                    let header = trace::received(&TraceInfo {
                        helo: &env.helo,
                        client: c.ip,
                        hostname: ctx.policy.hostname,
                        protocol: &env.protocol,
                        id: &mid,
                        single_rcpt: single,
                        unix_time: env.arrival,
                        tls: c.session.tls_info(),
                        provider: c.session.provider(),
                    });
                    inc.write(header.as_bytes());
                    log::info!(
                        "{} smtp receiving session={:08x} from={} nrcpt={}",
                        mid,
                        c.session.id(),
                        crate::logging::sanitize(crate::vocab::fmt_path(&env.sender).as_bytes()),
                        env.recipients.len()
                    );
                    c.incoming = Some(inc);
                    c.envelope = Some(env);
                }
                Err(e) => {
                    log::error!("spool begin-failed error=\"{e}\"");
                    c.spool_error = Some(e);
                }
            },
            Event::MessageData(d) => {
                if let Some(inc) = c.incoming.as_mut() {
                    inc.write(&d);
                }
            }
            Event::MessageAbort => {
                c.spool_error = None;
                c.envelope = None;
                if let Some(inc) = c.incoming.take() {
                    spool.abort(inc);
                }
            }
            Event::MessageEnd => match (c.incoming.take(), c.envelope.take()) {
                (Some(inc), Some(env)) => batch.push((id, inc, env)),
                _ => {
                    // The spool could not even start this message.
                    let e =
                        c.spool_error
                            .take()
                            .unwrap_or_else(|| crate::store::spool::SpoolError {
                                op: "begin",
                                path: spool.root().to_path_buf(),
                                err: io::Error::other("no queue file"),
                            });
                    c.session.handle_commit(Err(&e), now, ctx);
                }
            },
        }
    }
}
