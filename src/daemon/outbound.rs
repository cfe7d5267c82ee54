//! Delivery, the loop's side: it starts a [`Delivery`] machine per smtp job and
//! carries out the machine's actions (lookups, client connections, opening queue files,
//! feeding bodies between watermarks), and hands every recipient outcome to
//! [`Core::record`], the one place outcomes are logged and made durable. Local,
//! error and hold jobs are finished here directly, through the same place.
//!
//! Order of durability: a recipient the remote accepted is recorded in the
//! scheduler, which journals it (fsynced) before the session moves on — or, when it
//! was the message's last recipient, completes the message, whose queue file is then
//! removed by [`Core::apply_sched`] (the only unlink of a delivered message); a
//! bounce is committed to the spool before the failed recipients are journalled (a
//! crash in between repeats a bounce, never loses one).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Instant;

use super::io::conn::{ConnId, Outbound as OutLink, ReadResult, Role, Serves};
use super::{Core, Io};
use crate::config::scheduler::{EightBit, Transport};
use crate::dns::Hop;
use crate::logging::sanitize;
use crate::machines::delivery::{Action, Delivery, Recorded};
use crate::sched::{Job, JobId, RcptRef, RcptResult};
use crate::smtp::client::{ClientSession, OutMessage, BODY_CHUNK};
use crate::store::spool::MessageId;

/// RFC 5321 §4.5.3.2 / G12: connect timeout.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A running smtp job: the machine and what the loop holds for it.
struct Run {
    machine: Delivery,
    /// The client connection, while connected or connecting.
    conn: Option<ConnId>,
    /// `-l FILE` of the transport, expanded for this thread.
    log: Option<PathBuf>,
    /// The current message's content as sent (masqueraded, made 7-bit) and how
    /// much of it the session has.
    body: Option<(crate::message::outgoing::Source, u64)>,
    /// The thread's route host (`job.key.host`): TLS policy and credentials key.
    route_host: String,
    /// The host name of the hop connected to (MX name or route host).
    hop_host: String,
    /// On a connection turned around by ATRN: the claim it delivers.
    claim: Option<super::odmr::Claim>,
    /// An action held back by the pace of the run's link (`LINK_PACE`).
    stashed: Option<Action>,
    /// When the job started, and when its connection was made (the `delays=`
    /// of the delivery lines).
    started: Instant,
    connected: Option<Instant>,
}

/// Outbound state owned by the loop.
#[derive(Default)]
pub struct Outbound {
    runs: HashMap<JobId, Run>,
    lookups: HashMap<crate::dns::LookupId, JobId>,
    penalties: crate::machines::delivery::Penalties,
    /// Next hops whose opportunistic (`may`) TLS handshake failed, and when: the
    /// next connection within an hour goes in plaintext (Postfix's fall-back).
    pub(super) tls_failed: HashMap<std::net::SocketAddr, Instant>,
}

impl Outbound {
    /// Whether no delivery is running.
    pub fn is_idle(&self) -> bool {
        self.runs.is_empty()
    }
}

impl Core {
    /// Starts every job the scheduler allows now.
    pub(super) fn start_jobs(&mut self, io: &mut Io, now: Instant) {
        if self.stopping {
            return;
        }
        while let Some(job) = self.sched.poll_job(self.time.unix) {
            log::debug!(
                "{} sched job-start job={} rcpts={}",
                job.key,
                job.id.0,
                job.rcpts.len()
            );
            let jid = job.id;
            match job.transport.clone() {
                Transport::Smtp(opts) => {
                    let log = opts.log.as_ref().map(|l| {
                        PathBuf::from(
                            l.replace("${channel}", &job.key.channel)
                                .replace("$channel", &job.key.channel)
                                .replace("${host}", &job.key.host),
                        )
                    });
                    let route_host = job.key.host.clone();
                    let run = Run {
                        machine: Delivery::new(job, opts),
                        conn: None,
                        log,
                        body: None,
                        route_host,
                        hop_host: String::new(),
                        claim: None,
                        stashed: None,
                        started: now,
                        connected: None,
                    };
                    self.outbound.runs.insert(jid, run);
                    self.act(io, jid, now);
                }
                Transport::Errormail => {
                    let why =
                        RcptResult::Failed("5.1.2".into(), "routed to the error channel".into());
                    self.finish_direct(&job, why, now);
                }
                Transport::Local => self.deliver_local(io, job, now),
                Transport::Hold => {
                    let why = format!("no {:?} transport in this build", job.transport);
                    self.finish_direct(&job, RcptResult::Deferred(why), now);
                }
            }
        }
    }

    /// A job no connection serves: every recipient gets `result`.
    fn finish_direct(&mut self, job: &Job, result: RcptResult, now: Instant) {
        let outcomes: Vec<Recorded> = job
            .rcpts
            .iter()
            .map(|r| Recorded {
                rcpt: *r,
                result: result.clone(),
                reply: None,
            })
            .collect();
        let relay = format!("{}:{}", job.key.channel, job.key.host);
        let results = outcomes
            .iter()
            .map(|o| (o.rcpt, o.result.clone()))
            .collect();
        self.record(&relay, outcomes, None, None, now);
        self.finish_job(job.id, results, now);
    }

    /// Carries out the machine's actions until it waits for the outside.
    fn act(&mut self, io: &mut Io, jid: JobId, now: Instant) {
        loop {
            let Some(run) = self.outbound.runs.get_mut(&jid) else {
                return;
            };
            let Some(action) = run.stashed.take().or_else(|| run.machine.poll_action()) else {
                break;
            };
            // Links (DESIGN.md §5.9): nothing behind a down link is looked up or
            // connected to, whatever the routes say; a link's pace holds new
            // connections and messages back.
            if !self.netlinks.list.is_empty() && run.claim.is_none() {
                let key = run.machine.job().key.clone();
                if matches!(action, Action::Lookup { .. } | Action::Connect(_)) {
                    if let Some(l) = self.link_down_for(&key) {
                        log::info!("{} link held job={} link={l}", key, jid.0);
                        if let Some(run) = self.outbound.runs.get_mut(&jid) {
                            run.machine.untried(&format!("link {l} is down"));
                        }
                        continue;
                    }
                }
                if !self.pace_allows(jid, &key, &action) {
                    if let Some(run) = self.outbound.runs.get_mut(&jid) {
                        run.stashed = Some(action);
                    }
                    break;
                }
            }
            match action {
                Action::Lookup { host, no_mx } => {
                    // `-F`: one destination whatever the route, no lookup.
                    let ob = &mut self.outbound;
                    if let Some(run) = ob.runs.get_mut(&jid) {
                        if let Some(hop) = crate::machines::delivery::forced_hop(run.machine.opts())
                        {
                            let hops = crate::dns::Outcome::Hops(vec![hop]);
                            run.machine.resolved(hops, &ob.penalties, now);
                            continue;
                        }
                    }
                    let lid = self.dns.lookup(&host, no_mx, now);
                    self.outbound.lookups.insert(lid, jid);
                }
                Action::Connect(hop) => {
                    if let Err(e) = self.open(io, jid, &hop, now) {
                        let why = crate::vocab::os_error(&e);
                        if let Some(run) = self.outbound.runs.get_mut(&jid) {
                            if local_outage(&e) {
                                // Nothing left this host: no attempt is counted.
                                run.machine.untried(&format!(
                                    "connect to {}[{}]: {why} (local network down)",
                                    hop.host, hop.addr
                                ));
                            } else {
                                run.machine.connect_failed(&why);
                            }
                        }
                    }
                }
                Action::Load(msg, idxs) => self.load(io, jid, msg, &idxs, now),
                Action::Quit => {
                    if let Some(s) = self.session_of(io, jid) {
                        s.quit(now);
                    }
                }
                Action::Close => self.close_out(io, jid),
                // A unix socket (no address) is never penalised.
                Action::Penalise(addr) if addr.ip().is_unspecified() => {}
                Action::Penalise(addr) => self.outbound.penalties.penalise(addr, now),
                Action::Record { relay, outcomes } => {
                    let timing = self
                        .outbound
                        .runs
                        .get(&jid)
                        .map(|r| (r.started, r.connected));
                    let notice = super::inject::notice_for(self.session_of(io, jid).as_deref());
                    self.record(&relay, outcomes, timing, notice, now)
                }
                Action::Finished(results) => {
                    self.close_out(io, jid);
                    match self.outbound.runs.remove(&jid).and_then(|r| r.claim) {
                        Some(claim) => self.settle_claim(jid, claim, results, now),
                        None => self.finish_job(jid, results, now),
                    }
                    return;
                }
            }
        }
        if let Some(id) = self.outbound.runs.get(&jid).and_then(|r| r.conn) {
            self.drive_out(io, id, now);
        }
    }

    /// A job whose action waited for its link's pace goes on.
    pub(super) fn act_paced(&mut self, io: &mut Io, jid: JobId, now: Instant) {
        self.act(io, jid, now);
    }

    fn session_of<'a>(&mut self, io: &'a mut Io, jid: JobId) -> Option<&'a mut ClientSession> {
        let id = self.outbound.runs.get(&jid)?.conn?;
        io.conns.get_mut(id)?.role.client()?.session.as_mut()
    }

    /// Opens message `msg` and starts it on the session.
    fn load(&mut self, io: &mut Io, jid: JobId, msg: MessageId, idxs: &[usize], now: Instant) {
        if !self.sched.has_message(msg) {
            // Deleted by the operator since the job started: nothing to send.
            if let Some(run) = self.outbound.runs.get_mut(&jid) {
                run.machine.load_failed("deleted by the operator");
            }
            return;
        }
        match self.spool.open_message(msg) {
            Ok((env, body)) => {
                let offers = self
                    .session_of(io, jid)
                    .is_some_and(|s| s.offers_8bitmime());
                let Some(run) = self.outbound.runs.get_mut(&jid) else {
                    return;
                };
                let sent: Vec<_> = idxs.iter().filter_map(|&i| env.recipients.get(i)).collect();
                let rcpts = sent.iter().map(|r| r.address.clone()).collect();
                let rcpt_dsn = sent.iter().map(|r| r.dsn.clone()).collect();
                let smtputf8 = crate::message::outgoing::needs_smtputf8(&env, &sent, &body);
                let has_8bit = body.has_8bit();
                // 8-bit content for a next hop without 8BITMIME, or on a 7-bit
                // channel, is converted, never sent raw (RFC 6152 §3).
                let forbid = matches!(
                    run.machine.opts().eight_bit,
                    EightBit::Forbid | EightBit::ForbidNoEsmtp
                );
                let seven = has_8bit && (forbid || !offers);
                let eight_bit = match run.machine.opts().eight_bit {
                    EightBit::AsReceived => env.eight_bit,
                    EightBit::Allow => env.eight_bit || has_8bit,
                    EightBit::Forbid | EightBit::ForbidNoEsmtp => false,
                };
                // Masquerading (db/generic): the envelope sender and the header's
                // From:, Sender: and Reply-To:, on mail sent over SMTP only.
                let generic = &self.config.generic;
                let from = env
                    .sender
                    .as_ref()
                    .map(|m| generic.rewrite(m).unwrap_or_else(|| m.clone()));
                let limit = crate::smtp::server::MAX_HEADER_BYTES;
                let (source, unconvertible) =
                    match crate::message::outgoing::prepare(body, generic, seven, limit) {
                        Ok(Ok(src)) => (Some(src), None),
                        Ok(Err(why)) => (None, Some(why.0)),
                        Err(e) => {
                            log::error!("{msg} spool read-failed error=\"{e}\"");
                            run.machine.load_failed(&e.to_string());
                            return;
                        }
                    };
                let out = OutMessage {
                    from,
                    rcpts,
                    size: source.as_ref().map_or(0, |s| s.len()),
                    // Nothing 8-bit goes out: a message that could not be made
                    // 7-bit is refused by the session (5.6.3) and bounces.
                    has_8bit: unconvertible.is_some(),
                    eight_bit: eight_bit && !seven,
                    seven_bit_only: unconvertible.is_some(),
                    dsn: (env.dsn.clone(), rcpt_dsn),
                    smtputf8,
                };
                if let Some(why) = &unconvertible {
                    log::info!("{msg} smtp cannot-make-7bit reason=\"{why}\"");
                }
                run.body = source.map(|s| (s, 0));
                if let Some(s) = self.session_of(io, jid) {
                    s.start(out, now);
                }
            }
            Err(e) => {
                // Gone (removed by hand) or unreadable: defer, the operator is told.
                log::error!("{msg} spool load-failed error=\"{e}\"");
                if let Some(run) = self.outbound.runs.get_mut(&jid) {
                    run.machine.load_failed(&e.to_string());
                }
            }
        }
    }

    /// Acts on finished next-hop lookups.
    pub(super) fn lookups_done(&mut self, io: &mut Io, now: Instant) {
        while let Some((lid, outcome)) = self.dns.poll_done() {
            if self.odmr.owns_lookup(&lid) {
                self.customer_resolved(io, lid, outcome, now);
                continue;
            }
            let Some(jid) = self.outbound.lookups.remove(&lid) else {
                continue;
            };
            if let Some(run) = self.outbound.runs.get_mut(&jid) {
                run.machine.resolved(outcome, &self.outbound.penalties, now);
                self.act(io, jid, now);
            }
        }
    }

    fn open(&mut self, io: &mut Io, jid: JobId, hop: &Hop, now: Instant) -> io::Result<()> {
        let from = self.config.main.bind_for(hop.addr);
        let sndbuf = self
            .outbound
            .runs
            .get(&jid)
            .and_then(|r| r.machine.opts().sndbuf);
        let stream = match hop.unix_path() {
            Some(path) => super::io::transport::Sock::Unix(mio::net::UnixStream::connect(path)?),
            None => super::io::connect(hop.addr, from, sndbuf)?.into(),
        };
        let deadline = now + CONNECT_TIMEOUT;
        let role = Role::Client(Box::new(OutLink {
            serves: Serves::Job(jid),
            relay: crate::machines::delivery::relay_name(hop),
            session: None,
            connect_deadline: deadline,
            #[cfg(feature = "tls")]
            tls_plan: None,
            addr: hop.addr,
        }));
        let hop_host = hop.host.clone();
        let id = io.conns.add(stream, role, &io.registry)?;
        io.conns.set_timer(id, Some(deadline));
        if let Some(run) = self.outbound.runs.get_mut(&jid) {
            run.conn = Some(id);
            run.hop_host = hop_host;
        }
        Ok(())
    }

    /// Starts the run of a connection turned around by ATRN.
    pub(super) fn start_turned_run(
        &mut self,
        jid: JobId,
        id: ConnId,
        machine: Delivery,
        claim: super::odmr::Claim,
    ) {
        let run = Run {
            machine,
            conn: Some(id),
            log: None,
            body: None,
            route_host: claim.user.clone(),
            hop_host: claim.user.clone(),
            claim: Some(claim),
            stashed: None,
            started: Instant::now(),
            connected: Some(Instant::now()),
        };
        self.outbound.runs.insert(jid, run);
    }

    /// Closes a run's client connection (if any) and drops its open body.
    fn close_out(&mut self, io: &mut Io, jid: JobId) {
        let Some(run) = self.outbound.runs.get_mut(&jid) else {
            return;
        };
        run.body = None;
        if let Some(id) = run.conn.take() {
            io.conns.close(id, &io.registry);
        }
    }

    /// Readiness of a client connection.
    pub(super) fn out_event(&mut self, io: &mut Io, id: ConnId, now: Instant) {
        let Some(conn) = io.conns.get_mut(id) else {
            return;
        };
        let Some(c) = conn.role.client() else { return };
        let serves = c.serves;
        if c.session.is_none() {
            let Some(sock) = conn.stream.socket() else {
                return;
            };
            let status = match sock.take_error() {
                Ok(None) => sock.connected(),
                Ok(Some(e)) | Err(e) => Err(e),
            };
            match (status, serves) {
                (Ok(()), Serves::Customer(cid)) => self.customer_connected(io, id, cid, now),
                (Ok(()), Serves::Job(jid)) => self.connected(io, id, jid, now),
                (Err(e), _) if e.kind() == io::ErrorKind::NotConnected => return,
                (Err(e), Serves::Customer(cid)) => {
                    let why = format!("connect: {}", crate::vocab::os_error(&e));
                    return self.customer_conn_failed(io, id, cid, &why, now);
                }
                (Err(e), Serves::Job(jid)) => {
                    return self.conn_failed(io, jid, &crate::vocab::os_error(&e), now)
                }
            }
        }
        loop {
            let Some(conn) = io.conns.get_mut(id) else {
                return;
            };
            if !conn.readable || conn.dead {
                break;
            }
            let r = conn.read(&mut io.buf);
            // A handshake that just ended comes before the first octets inside it.
            super::secure::client_tls_step(conn, &mut self.outbound.tls_failed, now);
            let tls_error = conn.stream.tls_error().map(str::to_string);
            let Some(s) = conn.role.client().and_then(|c| c.session.as_mut()) else {
                return;
            };
            match r {
                ReadResult::Data(n) => s.handle_input(&io.buf[..n], now),
                ReadResult::WouldBlock => break,
                ReadResult::Closed => {
                    match tls_error {
                        Some(e) => s.tls_failed(&e),
                        None => s.handle_eof(),
                    }
                    break;
                }
            }
        }
        self.drive_out(io, id, now);
    }

    /// The connection is up: the client session starts.
    fn connected(&mut self, io: &mut Io, id: ConnId, jid: JobId, now: Instant) {
        let Some(run) = self.outbound.runs.get_mut(&jid) else {
            return;
        };
        run.machine.connected();
        run.connected = Some(now);
        let opts = run.machine.opts();
        let helo = opts.helo.as_deref().unwrap_or(&self.config.main.hostname);
        let mut s = ClientSession::new(helo, now).with_trace(jid.0.to_string());
        if opts.eight_bit == EightBit::ForbidNoEsmtp {
            s = s.without_esmtp();
        }
        if opts.lmtp {
            s.set_lmtp();
        }
        if run.log.is_some() {
            s = s.with_transcript();
        }
        let (route_host, hop_host) = (run.route_host.clone(), run.hop_host.clone());
        let Some(addr) = io.client_addr(id) else {
            return;
        };
        let sec = self.client_security(io, id, &route_host, &hop_host, addr, now);
        let implicit = sec.implicit;
        s = s.with_security(sec);
        if let Some(c) = io.conns.get_mut(id).and_then(|l| l.role.client()) {
            log::info!("{} smtp connected relay={}", jid.0, c.relay);
            c.session = Some(s);
        }
        if implicit {
            io.start_client_tls(id, now);
        }
    }

    /// A connection that never got to SMTP: the machine moves to the next hop.
    fn conn_failed(&mut self, io: &mut Io, jid: JobId, why: &str, now: Instant) {
        let Some(run) = self.outbound.runs.get_mut(&jid) else {
            return;
        };
        log::info!(
            "{} smtp connect-failed relay={} error=\"{}\"",
            jid.0,
            run.machine.relay(),
            sanitize(why.as_bytes())
        );
        run.machine.connect_failed(why);
        self.act(io, jid, now);
    }

    /// A client connection's deadline came: connect timeout, or the session's own.
    pub(super) fn out_timeout(&mut self, io: &mut Io, id: ConnId, now: Instant) {
        let Some(c) = io.conns.get_mut(id).and_then(|l| l.role.client()) else {
            return;
        };
        let jid = match c.serves {
            Serves::Job(jid) => jid,
            Serves::Customer(cid) => {
                match c.session.as_mut() {
                    None if now >= c.connect_deadline => {
                        self.customer_conn_failed(io, id, cid, "connect timed out", now)
                    }
                    None => {}
                    Some(s) => {
                        s.handle_timeout(now);
                        self.drive_customer(io, id, now);
                    }
                }
                return;
            }
        };
        match c.session.as_mut() {
            None if now >= c.connect_deadline => {
                self.conn_failed(io, jid, "Connection timed out", now)
            }
            None => {}
            Some(s) => {
                s.handle_timeout(now);
                self.drive_out(io, id, now);
            }
        }
    }

    /// Feeds the body between the watermarks, writes the session's output, and hands
    /// its events to the machine.
    pub(super) fn drive_out(&mut self, io: &mut Io, id: ConnId, now: Instant) {
        loop {
            let Some(conn) = io.conns.get_mut(id) else {
                return;
            };
            let Some(c) = conn.role.client() else { return };
            let Serves::Job(jid) = c.serves else {
                return self.drive_customer(io, id, now);
            };
            let relay = c.relay.clone();
            let Some(run) = self.outbound.runs.get_mut(&jid) else {
                return;
            };
            // Feed and write until the socket takes no more or the body is all out.
            loop {
                let Some(s) = conn.role.client().and_then(|c| c.session.as_mut()) else {
                    return;
                };
                if let Some((b, at)) = run.body.as_mut() {
                    while s.wants_body() {
                        let n = BODY_CHUNK.min(io.buf.len());
                        let chunk = &mut io.buf[..n];
                        match b.read_at(*at, chunk) {
                            Ok(0) => s.end_body(now),
                            Ok(n) => {
                                *at += n as u64;
                                s.feed_body(&chunk[..n], now);
                            }
                            Err(e) => {
                                log::error!("{} spool read-failed error=\"{e}\"", jid.0);
                                s.handle_eof();
                                break;
                            }
                        }
                    }
                }
                let pending = conn.flush();
                let s = conn.role.client().and_then(|c| c.session.as_mut());
                let Some(s) = s else { return };
                if conn.dead {
                    s.handle_eof();
                }
                if pending || conn.dead || !s.wants_body() {
                    break;
                }
            }
            let Some(s) = conn.role.client().and_then(|c| c.session.as_mut()) else {
                return;
            };
            let lines = s.take_transcript();
            let ev = s.poll_event();
            let t = s.poll_timeout();
            if !lines.is_empty() {
                append_transcript(run.log.as_ref(), jid, &relay, &lines);
            }
            let Some(ev) = ev else {
                io.conns.set_timer(id, t);
                return;
            };
            if ev == crate::smtp::client::ClientEvent::StartTls {
                io.start_client_tls(id, now);
                continue;
            }
            if ev == crate::smtp::client::ClientEvent::NeedToken {
                // The auth helper runs the token command; the session waits.
                let host = crate::vocab::bare_host(&run.route_host).to_ascii_lowercase();
                let port = io.client_addr(id).map_or(0, |a| a.port());
                match io.guard.as_mut().filter(|g| !g.dead) {
                    Some(g) => {
                        let seq = g.ask_token(&host, port);
                        self.auth.tokens.insert(seq, id);
                    }
                    None => {
                        log::warn!("{} smtp token-unavailable: no auth helper", jid.0);
                        if let Some(s) = self.session_of(io, jid) {
                            s.token(None, now);
                        }
                    }
                }
                continue;
            }
            if let crate::smtp::client::ClientEvent::Failed { reason, .. } = &ev {
                log::info!(
                    "{} smtp session-failed relay={relay} reason=\"{reason}\"",
                    jid.0
                );
            }
            run.machine.session(ev);
            self.act(io, jid, now);
        }
    }

    /// The one place recipient outcomes go: a delivery line each, and a delivered
    /// recipient is recorded in the scheduler at once (journalled, or its message
    /// completed and removed by `apply_sched`). Deferred and failed ones reach the
    /// scheduler with the job's results. `timing`: when the job started and when
    /// its connection was made.
    /// `notice`: what a delivered recipient's success notice says (NOTIFY=SUCCESS),
    /// `None` where the next hop took the request on; it is sent before the
    /// delivery is recorded, while the queue file is there.
    pub(super) fn record(
        &mut self,
        relay: &str,
        outcomes: Vec<Recorded>,
        timing: Option<(Instant, Option<Instant>)>,
        notice: Option<crate::message::bounce::Action>,
        now: Instant,
    ) {
        let mut delivered: Vec<RcptRef> = Vec::new();
        let mut notices: HashMap<MessageId, Vec<(usize, crate::message::bounce::Action, String)>> =
            HashMap::new();
        for o in &outcomes {
            self.log_result(o, relay, timing);
            if o.result == RcptResult::Delivered {
                delivered.push(o.rcpt);
                if let Some(action) = notice.filter(|_| self.sched.wants_success(&o.rcpt)) {
                    let reply = o.reply.clone().unwrap_or_else(|| "250 2.0.0 Ok".into());
                    notices
                        .entry(o.rcpt.msg)
                        .or_default()
                        .push((o.rcpt.idx, action, reply));
                }
            }
        }
        for (msg, done) in notices {
            self.send_success(msg, &done);
        }
        if !delivered.is_empty() {
            self.sched.delivered(&delivered, self.time.unix);
            self.apply_sched(now);
        }
    }

    /// Hands a job's results to the scheduler and carries out what follows.
    pub(super) fn finish_job(
        &mut self,
        jid: JobId,
        results: Vec<(RcptRef, RcptResult)>,
        now: Instant,
    ) {
        self.sched.job_done(jid, &results, self.time.unix);
        self.apply_sched(now);
    }

    /// Journal records, bounces and completed messages from the scheduler. The only
    /// place a finished message's queue file is removed.
    pub(super) fn apply_sched(&mut self, now: Instant) {
        let mut by_msg: HashMap<MessageId, Vec<crate::store::spool::StateRecord>> = HashMap::new();
        while let Some((id, rec)) = self.sched.poll_record() {
            by_msg.entry(id).or_default().push(rec);
        }
        let batch: Vec<_> = by_msg.into_iter().collect();
        for (id, e) in self.spool.record_batch(&batch) {
            // For a delivered recipient: the remote has the message and we could
            // not note it; a restart may send it again (a duplicate, never a loss).
            log::error!("{id} spool journal-failed error=\"{e}\"");
        }
        while let Some(b) = self.sched.poll_bounce() {
            self.send_bounce(b, now);
        }
        while let Some(d) = self.sched.poll_delay() {
            self.send_delay(d);
        }
        while let Some(id) = self.sched.poll_complete() {
            if self.bounce_waits_for(id) {
                // Its bounce is not out yet: the queue file stays for it.
                self.bounces.completed.insert(id);
                continue;
            }
            self.remove_completed(id);
        }
    }

    /// Removes a finished message's files. The unlink is in the kernel at once, so
    /// a kill -9 never re-sends it; only a power loss before the next directory
    /// flush can bring it back (a duplicate, RFC 1047), which saves an fsync per
    /// message on a drain.
    pub(super) fn remove_completed(&mut self, id: MessageId) {
        match self.spool.complete(id) {
            Ok(()) => log::info!(target: "qmgr", "{id}: removed"),
            Err(e) => log::error!("{id} spool remove-failed error=\"{e}\""),
        }
    }

    /// Abandons every delivery (shutdown): nothing in flight is recorded, so those
    /// recipients are tried again after a restart.
    pub(super) fn abandon_deliveries(&mut self, io: &mut Io) {
        let jids: Vec<JobId> = self.outbound.runs.keys().copied().collect();
        for jid in jids {
            self.close_out(io, jid);
        }
        self.outbound.runs.clear();
    }
}

impl Io {
    /// The peer address of a client connection.
    pub(super) fn client_addr(&mut self, id: ConnId) -> Option<std::net::SocketAddr> {
        self.conns.get_mut(id)?.role.client().map(|c| c.addr)
    }
}

/// Appends transcript lines to the run's `-l` file (best effort: a failure is
/// logged, delivery goes on).
/// Whether a connect error says the local network is down (no route, no
/// interface, no source address): nothing left this host.
fn local_outage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENETUNREACH | libc::ENETDOWN | libc::EADDRNOTAVAIL)
    )
}

fn append_transcript(path: Option<&PathBuf>, jid: JobId, relay: &str, lines: &[String]) {
    let Some(path) = path else {
        return;
    };
    let mut text = String::new();
    for l in lines {
        text.push_str(&format!("{} {} {}\n", jid.0, relay, l));
    }
    let r = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    if let Err(e) = r {
        log::warn!(
            "smtp transcript-failed file={} error=\"{e}\"",
            path.display()
        );
    }
}
