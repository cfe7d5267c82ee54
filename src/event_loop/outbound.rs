//! Delivery: turns scheduler jobs into next-hop lookups, connections and
//! `ClientSession`s, records outcomes durably, and hands results back to the
//! scheduler. Part of the loop (`impl Daemon`), so it owns no fd of its own.
//!
//! Order of durability: a recipient the remote accepted is written to the message's
//! journal (fsynced) before the session moves on to the next message; a bounce is
//! committed to the spool before the failed recipients are journalled (a crash in
//! between repeats a bounce, never loses one); a finished message's queue file is
//! removed last.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::timers::Timers;
use super::{unix_now, Daemon};
use crate::bounce;
use crate::config::scheduler::{EightBit, SmtpOptions, Transport};
use crate::dns::{Hop, LookupId, Outcome};
use crate::logging::sanitize;
use crate::sched::{Job, JobId, RcptRef, RcptResult};
use crate::smtp::client::{ClientEvent, ClientSession, OutMessage, RcptOutcome};
use crate::spool::{Destination, MessageId, StateRecord};

/// First token of outbound connections (between connections and DNS).
pub const OUT_BASE: usize = 1 << 29;
/// RFC 5321 §4.5.3.2 / G12: connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

struct Run {
    job: Job,
    /// The smtp transport's options.
    opts: SmtpOptions,
    /// `-l FILE` of the transport, expanded for this thread.
    log: Option<std::path::PathBuf>,
    pending: VecDeque<(MessageId, Vec<usize>)>,
    current: Option<(MessageId, Vec<usize>)>,
    results: Vec<(RcptRef, RcptResult)>,
    hops: Vec<Hop>,
    hop: usize,
    conn: Option<usize>,
    last_error: String,
    /// The current message's body and how much of it the session has.
    body: Option<(crate::spool::Body, u64)>,
}

struct OutConn {
    stream: TcpStream,
    session: Option<ClientSession>,
    job: JobId,
    relay: String,
    connect_deadline: Instant,
}

/// Outbound state owned by the loop.
#[derive(Default)]
pub struct Outbound {
    runs: HashMap<JobId, Run>,
    conns: Vec<Option<OutConn>>,
    free: Vec<usize>,
    lookups: HashMap<LookupId, JobId>,
    timers: Timers,
    /// Messages whose files went when their last recipient was delivered: when the
    /// scheduler completes them there is nothing left to remove.
    removed: HashSet<MessageId>,
}

impl Outbound {
    /// Whether a token is an outbound connection's.
    pub fn owns(t: Token) -> bool {
        (OUT_BASE..super::dns_io::DNS_BASE).contains(&t.0)
    }

    /// Whether no delivery is running.
    pub fn is_idle(&self) -> bool {
        self.runs.is_empty()
    }

    /// The earliest outbound deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }
}

/// A hop as Postfix's `relay=` field names it: `host[ip]:port`, with the address as
/// the host of a literal route (`[192.0.2.1]:2525` gives `192.0.2.1[192.0.2.1]:2525`).
fn relay_name(hop: &Hop) -> String {
    let host = if hop.host.starts_with('[') {
        hop.addr.ip().to_string()
    } else {
        hop.host.clone()
    };
    format!("{host}[{}]:{}", hop.addr.ip(), hop.addr.port())
}

fn group(rcpts: &[RcptRef]) -> VecDeque<(MessageId, Vec<usize>)> {
    let mut out: VecDeque<(MessageId, Vec<usize>)> = VecDeque::new();
    for r in rcpts {
        match out.back_mut() {
            Some((m, v)) if *m == r.msg => v.push(r.idx),
            _ => out.push_back((r.msg, vec![r.idx])),
        }
    }
    out
}

impl Daemon {
    /// Starts every job the scheduler allows now.
    pub(super) fn start_jobs(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        let unix = unix_now();
        while let Some(job) = self.sched.poll_job(unix) {
            log::debug!(
                "{} sched job-start job={} rcpts={}",
                job.key,
                job.id.0,
                job.rcpts.len()
            );
            match job.transport.clone() {
                Transport::Smtp(opts) => {
                    let log = opts.log.as_ref().map(|l| {
                        std::path::PathBuf::from(
                            l.replace("${channel}", &job.key.channel)
                                .replace("$channel", &job.key.channel)
                                .replace("${host}", &job.key.host),
                        )
                    });
                    let lid = self.dns.lookup(&job.key.host, opts.no_mx, now);
                    self.outbound.lookups.insert(lid, job.id);
                    let run = Run {
                        opts,
                        log,
                        pending: group(&job.rcpts),
                        job,
                        current: None,
                        results: Vec::new(),
                        hops: Vec::new(),
                        hop: 0,
                        conn: None,
                        last_error: String::new(),
                        body: None,
                    };
                    self.outbound.runs.insert(run.job.id, run);
                }
                Transport::Errormail => {
                    let results = job
                        .rcpts
                        .iter()
                        .map(|r| {
                            (
                                *r,
                                RcptResult::Failed(
                                    "5.1.2".into(),
                                    "routed to the error channel".into(),
                                ),
                            )
                        })
                        .collect();
                    self.finish_job(job.id, results, now);
                }
                Transport::Local => self.deliver_local(job, now),
                Transport::Hold => {
                    let why = format!("no {:?} transport in this build", job.transport);
                    let results = job
                        .rcpts
                        .iter()
                        .map(|r| (*r, RcptResult::Deferred(why.clone())))
                        .collect();
                    self.finish_job(job.id, results, now);
                }
            }
        }
        self.lookups_done(now);
    }

    /// Delivers a local job into mailboxes, one message at a time.
    fn deliver_local(&mut self, job: Job, now: Instant) {
        let mut results = Vec::new();
        for (msg, idxs) in group(&job.rcpts) {
            let (env, body) = match self.spool.open_message(msg) {
                Ok(x) => x,
                Err(e) => {
                    log::error!("{msg} spool load-failed error=\"{e}\"");
                    for idx in idxs {
                        results.push((
                            RcptRef { msg, idx },
                            RcptResult::Deferred(format!("cannot read queue file: {e}")),
                        ));
                    }
                    continue;
                }
            };
            let m = crate::local::LocalMessage {
                sender: &env.sender,
                arrival: env.arrival,
                body: &body,
                hostname: &self.config.main.hostname,
            };
            let mut delivered = Vec::new();
            let mut these = Vec::new();
            for idx in idxs {
                let r = RcptRef { msg, idx };
                let user = match env.recipients.get(idx).map(|x| &x.dest) {
                    Some(Destination::Local(u)) => u.clone(),
                    _ => job.key.host.clone(),
                };
                self.local_seq += 1;
                let outcome = match self.helper.as_mut() {
                    // As the recipient, through the privileged helper.
                    Some(h) => h.deliver(msg, &user),
                    // Not started as root: in-process, as ourselves.
                    None => crate::local::deliver(
                        &self.config.main.mailbox,
                        self.config.main.maildir,
                        &user,
                        self.config.router.accounts.get(&user),
                        &m,
                        self.local_seq,
                    ),
                };
                let res = match outcome {
                    crate::local::LocalResult::Delivered => {
                        delivered.push(StateRecord::Delivered {
                            idx,
                            at: unix_now(),
                        });
                        RcptResult::Delivered
                    }
                    crate::local::LocalResult::Deferred(w) => RcptResult::Deferred(w),
                    crate::local::LocalResult::Failed(st, w) => RcptResult::Failed(st, w),
                };
                these.push((r, res));
            }
            if let Err(e) = self.spool.record_all(msg, &delivered) {
                log::error!("{msg} spool journal-failed error=\"{e}\"");
            }
            for (r, res) in &these {
                let text = matches!(res, RcptResult::Delivered).then_some("delivered to mailbox");
                self.log_result(*r, &format!("local:{}", job.key.host), res, text);
            }
            results.extend(these);
        }
        self.finish_job(job.id, results, now);
    }

    /// Acts on finished next-hop lookups.
    pub(super) fn lookups_done(&mut self, now: Instant) {
        while let Some((lid, outcome)) = self.dns.poll_done() {
            let Some(jid) = self.outbound.lookups.remove(&lid) else {
                continue;
            };
            let Some(run) = self.outbound.runs.get_mut(&jid) else {
                continue;
            };
            match outcome {
                Outcome::Hops(mut h) => {
                    // `-p PORT` replaces SMTP_PORT, not a port the route names.
                    let route_port = run.job.key.host.contains("]:");
                    if let (Some(p), false) = (run.opts.port, route_port) {
                        for hop in &mut h {
                            hop.addr.set_port(p);
                        }
                    }
                    run.hops = h;
                    self.connect_next(jid, now);
                }
                Outcome::Failed { status, reason } => {
                    self.fail_rest(jid, RcptResult::Failed(status.into(), reason), now)
                }
                Outcome::Deferred { reason, .. } => {
                    self.fail_rest(jid, RcptResult::Deferred(reason), now)
                }
            }
        }
    }

    /// Ends a job with `result` for every recipient not yet done.
    fn fail_rest(&mut self, jid: JobId, result: RcptResult, now: Instant) {
        let Some(mut run) = self.outbound.runs.remove(&jid) else {
            return;
        };
        if let Some(c) = run.current.take() {
            run.pending.push_front(c);
        }
        let relay = run.hops.get(run.hop).map(relay_name);
        for (msg, idxs) in run.pending.drain(..) {
            for idx in idxs {
                let r = RcptRef { msg, idx };
                self.log_result(r, relay.as_deref().unwrap_or("none"), &result, None);
                run.results.push((r, result.clone()));
            }
        }
        let results = std::mem::take(&mut run.results);
        self.finish_job(jid, results, now);
    }

    /// Connects to the next address of the run, or gives up with its last error.
    fn connect_next(&mut self, jid: JobId, now: Instant) {
        loop {
            let Some(run) = self.outbound.runs.get_mut(&jid) else {
                return;
            };
            let Some(hop) = run.hops.get(run.hop).cloned() else {
                let why = if run.last_error.is_empty() {
                    "no address to connect to".to_string()
                } else {
                    run.last_error.clone()
                };
                return self.fail_rest(jid, RcptResult::Deferred(why), now);
            };
            match self.open(jid, &hop, now) {
                Ok(slot) => {
                    if let Some(run) = self.outbound.runs.get_mut(&jid) {
                        run.conn = Some(slot);
                    }
                    return;
                }
                Err(e) => {
                    let run = self.outbound.runs.get_mut(&jid).expect("present above");
                    run.last_error = format!("connect to {}[{}]: {e}", hop.host, hop.addr);
                    run.hop += 1;
                }
            }
        }
    }

    fn open(&mut self, jid: JobId, hop: &Hop, now: Instant) -> io::Result<usize> {
        let mut stream = TcpStream::connect(hop.addr)?;
        if let Some(n) = self.outbound.runs.get(&jid).and_then(|r| r.opts.sndbuf) {
            use std::os::fd::AsRawFd;
            crate::sys::set_sndbuf(stream.as_raw_fd(), n)?;
        }
        let slot = self.outbound.free.pop().unwrap_or_else(|| {
            self.outbound.conns.push(None);
            self.outbound.conns.len() - 1
        });
        self.poll.registry().register(
            &mut stream,
            Token(OUT_BASE + slot),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let deadline = now + CONNECT_TIMEOUT;
        self.outbound.timers.set(slot, Some(deadline));
        self.outbound.conns[slot] = Some(OutConn {
            stream,
            session: None,
            job: jid,
            relay: relay_name(hop),
            connect_deadline: deadline,
        });
        Ok(slot)
    }

    fn close_out(&mut self, slot: usize) -> Option<JobId> {
        let mut c = self.outbound.conns.get_mut(slot).and_then(Option::take)?;
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.outbound.timers.set(slot, None);
        self.outbound.free.push(slot);
        Some(c.job)
    }

    /// Readiness of an outbound connection.
    pub(super) fn out_event(&mut self, token: Token, now: Instant) {
        let slot = token.0 - OUT_BASE;
        let Some(Some(c)) = self.outbound.conns.get_mut(slot) else {
            return;
        };
        if c.session.is_none() {
            match c.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    return self.conn_failed(slot, format!("connect: {e}"), now)
                }
            }
            match c.stream.peer_addr() {
                Ok(_) => {
                    log::info!("{} smtp connected relay={}", c.job.0, c.relay);
                    let run = self.outbound.runs.get(&c.job);
                    let opts = run.map(|r| &r.opts);
                    let helo = opts
                        .and_then(|o| o.helo.as_deref())
                        .unwrap_or(&self.config.main.hostname);
                    let mut s = ClientSession::new(helo, now);
                    if opts.is_some_and(|o| o.eight_bit == EightBit::ForbidNoEsmtp) {
                        s = s.without_esmtp();
                    }
                    if run.is_some_and(|r| r.log.is_some()) {
                        s = s.with_transcript();
                    }
                    c.session = Some(s);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.conn_failed(slot, format!("connect: {e}"), now),
            }
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            let Some(Some(c)) = self.outbound.conns.get_mut(slot) else {
                return;
            };
            let Some(s) = c.session.as_mut() else { return };
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    s.handle_eof();
                    break;
                }
                Ok(n) => s.handle_input(&buf[..n], now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    s.handle_eof();
                    break;
                }
            }
        }
        self.drive_out(slot, now);
    }

    /// A connection that never got to SMTP: try the next address.
    fn conn_failed(&mut self, slot: usize, why: String, now: Instant) {
        let relay = self.outbound.conns[slot]
            .as_ref()
            .map(|c| c.relay.clone())
            .unwrap_or_default();
        let Some(jid) = self.close_out(slot) else {
            return;
        };
        log::info!(
            "{} smtp connect-failed relay={} error=\"{}\"",
            jid.0,
            relay,
            sanitize(why.as_bytes())
        );
        if let Some(run) = self.outbound.runs.get_mut(&jid) {
            run.last_error = format!("{relay}: {why}");
            run.hop += 1;
            run.conn = None;
        }
        self.connect_next(jid, now);
    }

    /// Timeouts of outbound connections.
    pub(super) fn out_timeouts(&mut self, now: Instant) {
        for slot in self.outbound.timers.due(now) {
            let Some(Some(c)) = self.outbound.conns.get_mut(slot) else {
                continue;
            };
            match c.session.as_mut() {
                None if now >= c.connect_deadline => {
                    self.conn_failed(slot, "connect timed out".into(), now);
                }
                None => {}
                Some(s) => {
                    s.handle_timeout(now);
                    self.drive_out(slot, now);
                }
            }
        }
    }

    /// Writes the session's output and acts on its events.
    fn drive_out(&mut self, slot: usize, now: Instant) {
        loop {
            let Some(Some(c)) = self.outbound.conns.get_mut(slot) else {
                return;
            };
            let jid = c.job;
            let relay = c.relay.clone();
            let Some(s) = c.session.as_mut() else { return };
            // Feed the body between the watermarks and write what the socket takes,
            // until it takes no more or the body is all out.
            let mut body = self
                .outbound
                .runs
                .get_mut(&jid)
                .and_then(|r| r.body.as_mut());
            loop {
                if let Some((b, at)) = body.as_mut() {
                    while s.wants_body() {
                        match b.read_at(*at, &mut self.buf) {
                            Ok(0) => s.end_body(now),
                            Ok(n) => {
                                *at += n as u64;
                                s.feed_body(&self.buf[..n], now);
                            }
                            Err(e) => {
                                log::error!("{} spool read-failed error=\"{e}\"", jid.0);
                                s.handle_eof();
                                break;
                            }
                        }
                    }
                }
                if s.pending_output().is_empty() {
                    break;
                }
                match std::io::Write::write(&mut c.stream, s.pending_output()) {
                    Ok(0) => break,
                    Ok(n) => s.consume_output(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        s.handle_eof();
                        break;
                    }
                }
            }
            let lines = s.take_transcript();
            let ev = s.poll_event();
            let t = s.poll_timeout();
            if !lines.is_empty() {
                self.append_transcript(jid, &relay, &lines);
            }
            let Some(ev) = ev else {
                self.outbound.timers.set(slot, t);
                return;
            };
            match ev {
                ClientEvent::Ready => self.next_message(slot, jid, now),
                ClientEvent::Done(outcomes) => self.message_done(jid, &relay, outcomes, now),
                ClientEvent::Failed { reason, .. } => {
                    log::info!(
                        "{} smtp session-failed relay={} reason=\"{}\"",
                        jid.0,
                        relay,
                        reason
                    );
                    self.close_out(slot);
                    let more_hops = self
                        .outbound
                        .runs
                        .get_mut(&jid)
                        .map(|run| {
                            if let Some(c) = run.current.take() {
                                run.pending.push_front(c);
                            }
                            run.last_error = format!("{relay}: {reason}");
                            run.hop += 1;
                            run.conn = None;
                            run.hop < run.hops.len()
                        })
                        .unwrap_or(false);
                    if more_hops {
                        self.connect_next(jid, now);
                    } else {
                        let why = format!("{relay}: {reason}");
                        self.fail_rest(jid, RcptResult::Deferred(why), now);
                    }
                    return;
                }
                ClientEvent::Closed => {
                    self.close_out(slot);
                    if let Some(run) = self.outbound.runs.get(&jid) {
                        if run.pending.is_empty() && run.current.is_none() {
                            let results = self
                                .outbound
                                .runs
                                .remove(&jid)
                                .map(|r| r.results)
                                .unwrap_or_default();
                            self.finish_job(jid, results, now);
                        } else {
                            self.fail_rest(
                                jid,
                                RcptResult::Deferred("connection closed".into()),
                                now,
                            );
                        }
                    }
                    return;
                }
            }
        }
    }

    /// Appends transcript lines to the run's `-l` file (best effort: a failure is
    /// logged, delivery goes on).
    fn append_transcript(&self, jid: JobId, relay: &str, lines: &[String]) {
        let Some(path) = self.outbound.runs.get(&jid).and_then(|r| r.log.as_ref()) else {
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

    /// Starts the next message of the run on an idle session, or quits.
    fn next_message(&mut self, slot: usize, jid: JobId, now: Instant) {
        loop {
            let Some(run) = self.outbound.runs.get_mut(&jid) else {
                return;
            };
            let Some((msg, idxs)) = run.pending.pop_front() else {
                if let Some(Some(c)) = self.outbound.conns.get_mut(slot) {
                    if let Some(s) = c.session.as_mut() {
                        s.quit(now);
                    }
                }
                return;
            };
            match self.spool.open_message(msg) {
                Ok((env, body)) => {
                    let rcpts = idxs
                        .iter()
                        .filter_map(|&i| env.recipients.get(i).map(|r| r.address.clone()))
                        .collect();
                    let run = self.outbound.runs.get_mut(&jid).expect("present above");
                    let (eight_bit, seven_bit_only) = match run.opts.eight_bit {
                        EightBit::AsReceived => (env.eight_bit, false),
                        EightBit::Allow => (env.eight_bit || body.has_8bit(), false),
                        EightBit::Forbid | EightBit::ForbidNoEsmtp => (false, true),
                    };
                    let out = OutMessage {
                        from: env.sender.clone(),
                        rcpts,
                        size: body.len(),
                        has_8bit: body.has_8bit(),
                        eight_bit,
                        seven_bit_only,
                    };
                    run.current = Some((msg, idxs));
                    run.body = Some((body, 0));
                    if let Some(Some(c)) = self.outbound.conns.get_mut(slot) {
                        if let Some(s) = c.session.as_mut() {
                            s.start(out, now);
                        }
                    }
                    return;
                }
                Err(e) => {
                    // Gone (removed by hand) or unreadable: defer, the operator is told.
                    log::error!("{msg} spool load-failed error=\"{e}\"");
                    let run = self.outbound.runs.get_mut(&jid).expect("present above");
                    for idx in idxs {
                        run.results.push((
                            RcptRef { msg, idx },
                            RcptResult::Deferred(format!("cannot read queue file: {e}")),
                        ));
                    }
                }
            }
        }
    }

    /// One message's outcomes: journal the delivered ones at once, keep the rest.
    fn message_done(&mut self, jid: JobId, relay: &str, outcomes: Vec<RcptOutcome>, _now: Instant) {
        let Some(run) = self.outbound.runs.get_mut(&jid) else {
            return;
        };
        let Some((msg, idxs)) = run.current.take() else {
            return;
        };
        let mut delivered = Vec::new();
        let mut results = Vec::new();
        let mut replies = Vec::new();
        for (idx, o) in idxs.iter().zip(outcomes) {
            let r = RcptRef { msg, idx: *idx };
            let res = match o {
                RcptOutcome::Delivered(text) => {
                    delivered.push(*idx);
                    replies.push(text);
                    RcptResult::Delivered
                }
                RcptOutcome::Deferred(t) => RcptResult::Deferred(t),
                RcptOutcome::Failed(t) => RcptResult::Failed(bounce::status_of(&t), t),
            };
            results.push((r, res));
        }
        let recorded = if !delivered.is_empty() && self.sched.done_after(msg, &delivered) {
            // Every recipient is done: removing the queue file is the record. The
            // unlink is in the kernel at once, so a kill -9 never re-sends it; only a
            // power loss before the next directory flush can bring it back (a
            // duplicate, RFC 1047), which saves an fsync per message on a drain.
            let r = self.spool.complete(msg);
            if r.is_ok() {
                self.outbound.removed.insert(msg);
            }
            r
        } else {
            let at = unix_now();
            let recs: Vec<StateRecord> = delivered
                .iter()
                .map(|&idx| StateRecord::Delivered { idx, at })
                .collect();
            self.spool.record_all(msg, &recs)
        };
        if let Err(e) = recorded {
            // The remote has the message; we could not note it. It may be sent again
            // after a restart (a duplicate, never a loss).
            log::error!("{msg} spool journal-failed error=\"{e}\"");
        }
        let mut replies = replies.iter();
        for (r, res) in &results {
            let text = match res {
                RcptResult::Delivered => replies.next().map(String::as_str),
                _ => None,
            };
            self.log_result(*r, relay, res, text);
        }
        if let Some(run) = self.outbound.runs.get_mut(&jid) {
            run.results.extend(results);
        }
    }

    /// One Postfix-style delivery line; `reply` is the remote's (or the mailbox's)
    /// answer for a delivered recipient.
    fn log_result(&self, r: RcptRef, relay: &str, res: &RcptResult, reply: Option<&str>) {
        let (status, text) = match res {
            RcptResult::Delivered => ("sent", reply.unwrap_or("delivered").to_string()),
            RcptResult::Deferred(t) => ("deferred", t.clone()),
            RcptResult::Failed(_, t) => ("bounced", t.clone()),
        };
        let (to, delay) = match self.sched.rcpt_info(r) {
            Some((addr, arrival)) => (addr.to_string(), unix_now().saturating_sub(arrival)),
            None => (String::new(), 0),
        };
        log::info!(
            "{} smtp delivery to=<{}>, relay={}, delay={}, status={} ({})",
            r.msg,
            sanitize(to.as_bytes()),
            relay,
            delay,
            status,
            sanitize(text.as_bytes())
        );
    }

    /// Hands a job's results to the scheduler and carries out what follows.
    fn finish_job(&mut self, jid: JobId, results: Vec<(RcptRef, RcptResult)>, now: Instant) {
        self.sched.job_done(jid, &results, unix_now());
        self.apply_sched(now);
    }

    /// Journal records, bounces and completed messages from the scheduler.
    pub(super) fn apply_sched(&mut self, _now: Instant) {
        let mut by_msg: HashMap<MessageId, Vec<StateRecord>> = HashMap::new();
        while let Some((id, rec)) = self.sched.poll_record() {
            by_msg.entry(id).or_default().push(rec);
        }
        for (id, recs) in by_msg {
            if let Err(e) = self.spool.record_all(id, &recs) {
                log::error!("{id} spool journal-failed error=\"{e}\"");
            }
        }
        while let Some(b) = self.sched.poll_bounce() {
            self.send_bounce(b);
        }
        while let Some(id) = self.sched.poll_complete() {
            if self.outbound.removed.remove(&id) {
                log::info!("{id} sched removed");
                continue;
            }
            match self.spool.complete(id) {
                Ok(()) => log::info!("{id} sched removed"),
                Err(e) => log::error!("{id} spool remove-failed error=\"{e}\""),
            }
        }
    }

    /// Abandons every delivery (shutdown): nothing in flight is recorded, so those
    /// recipients are tried again after a restart.
    pub(super) fn abandon_deliveries(&mut self) {
        for slot in 0..self.outbound.conns.len() {
            self.close_out(slot);
        }
        self.outbound.runs.clear();
    }
}
