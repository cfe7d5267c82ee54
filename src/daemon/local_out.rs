//! Local jobs, the loop's side: [`LocalRuns`] decides which delivery starts when
//! (one at a time per mailbox or target, a cap in all, a deferral ends the job);
//! this file carries it out. A delivery goes to the privileged helper as one
//! request line on its non-blocking socket (started as root), or to a child of
//! ours (not started as root); either way it runs in a process of its own and its
//! verdict comes on a socket registered with the poller, so no delivery, however
//! slow, and no helper round trip ever holds the loop up. Starts per loop turn are
//! bounded ([`STARTS_PER_TURN`]); the rest go on next turn.

use crate::message::bounce::Action;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use mio::{Interest, Token};

use super::{Core, Io};
use crate::local::helper::Started;
use crate::local::targets::Target;
use crate::local::LocalResult;
use crate::machines::delivery::Recorded;
use crate::machines::local_runs::{LocalAction, LocalRuns};
use crate::sched::{Job, JobId, RcptRef, RcptResult};

/// Deliveries started (or decided at once) in one loop turn, at most.
pub const STARTS_PER_TURN: usize = 64;
/// Tokens of verdict sockets: far from links (bit 31), DNS (bit 30), control (bit 29).
pub const VERDICT_BASE: usize = 1 << 28;
/// Most verdict sockets watched at once (deliveries running, with room for the
/// ones whose verdict is late).
const MAX_VERDICTS: usize = 4 * crate::machines::local_runs::MAX_RUNNING;

/// A delivery running on its own: its verdict comes on `sock`.
struct Verdict {
    job: JobId,
    rcpt: RcptRef,
    sock: mio::net::UnixStream,
    line: Vec<u8>,
    deadline: Instant,
}

/// What the loop keeps of local jobs.
#[derive(Default)]
pub(super) struct Local {
    pub(super) runs: LocalRuns,
    /// Per job: the relay its lines name, and when it started.
    jobs: std::collections::HashMap<JobId, (String, Instant)>,
    verdicts: Vec<Option<Verdict>>,
    /// Starts left this turn.
    budget: usize,
    /// The helper must exist (the daemon was started as root): while it is being
    /// started again, deliveries wait.
    pub(super) privileged: bool,
}

/// What a delivered recipient's log line says (DESIGN.md §5.13).
fn reply_of(t: Option<Target<'_>>, maildir: bool) -> String {
    match t {
        None if maildir => "delivered to maildir".into(),
        None => "delivered to mailbox".into(),
        Some(Target::Discard) => "discarded (/dev/null)".into(),
        Some(Target::File(p)) => format!("delivered to file: {p}"),
        Some(Target::Command(c)) => format!("delivered to command: {c}"),
    }
}

/// A local result as the scheduler takes it.
fn result_of(r: LocalResult) -> RcptResult {
    match r {
        LocalResult::Delivered | LocalResult::DeliveredAs(_) | LocalResult::Forward(_) => {
            RcptResult::Delivered
        }
        LocalResult::Deferred(w) => RcptResult::Deferred(w),
        LocalResult::Failed(st, w) => RcptResult::Failed(st, w),
    }
}

impl Core {
    /// A local job: its deliveries start as the limits allow.
    pub(super) fn deliver_local(&mut self, io: &mut Io, job: Job, now: Instant) {
        let relay = format!("local:{}", job.key.host);
        self.local.jobs.insert(job.id, (relay, now));
        self.local.runs.add(job.id, &job.key.host, &job.rcpts);
        self.local_step(io, now);
    }

    /// A new loop turn: a new budget of starts.
    pub(super) fn local_turn(&mut self) {
        self.local.budget = STARTS_PER_TURN;
    }

    /// Carries out what the runs want, within this turn's budget.
    pub(super) fn local_step(&mut self, io: &mut Io, now: Instant) {
        while self.local.budget > 0 {
            let Some(action) = self.local.runs.poll_action() else {
                return;
            };
            match action {
                LocalAction::Start { job, rcpt } => {
                    self.local.budget -= 1;
                    self.local_start(io, job, rcpt, now);
                }
                LocalAction::Finished { job, results } => {
                    self.local.jobs.remove(&job);
                    self.finish_job(job, results, now);
                }
            }
        }
    }

    /// When the loop must come back for local work: a verdict's deadline, or at once
    /// when starts wait only for the next turn's budget.
    pub(super) fn local_timeout(&self, now: Instant) -> Option<Instant> {
        let late = self
            .local
            .verdicts
            .iter()
            .flatten()
            .map(|v| v.deadline)
            .min();
        let more = (self.local.budget == 0 && self.local.runs.has_action()).then_some(now);
        late.into_iter().chain(more).min()
    }

    /// The target of a job: its thread's host (a user, or an alias's `/…` or `|…`).
    fn local_target(&self, job: JobId) -> String {
        self.local
            .jobs
            .get(&job)
            .and_then(|(relay, _)| relay.strip_prefix("local:"))
            .unwrap_or_default()
            .to_string()
    }

    /// Starts delivering one recipient of a local job.
    fn local_start(&mut self, io: &mut Io, job: JobId, rcpt: RcptRef, now: Instant) {
        if !self.sched.has_message(rcpt.msg) {
            // Deleted by the operator since the job started: nothing to deliver.
            let why = "deleted by the operator".to_string();
            return self.local_end(job, rcpt, LocalResult::Deferred(why), now);
        }
        let name = self.local_target(job);
        let target = Target::of(&name);
        if target == Some(Target::Discard) {
            return self.local_end(job, rcpt, LocalResult::Delivered, now);
        }
        if self.local.privileged {
            let Some(h) = io.helper.as_mut() else {
                let why = "4.3.0 no delivery helper (it died and cannot be started again)";
                return self.local_end(job, rcpt, LocalResult::Deferred(why.into()), now);
            };
            match target {
                Some(_) => h.start_target(rcpt.msg, rcpt.idx, (job, rcpt)),
                None => h.start_mailbox(rcpt.msg, &name, (job, rcpt)),
            }
            return;
        }
        // Not started as root: a child of ours delivers, as ourselves.
        self.local_seq += 1;
        let seq = self.local_seq;
        let spool = crate::store::spool::Spool::at(self.spool.root());
        let main = &self.config.main;
        let (mailbox, maildir, hostname) =
            (main.mailbox.clone(), main.maildir, main.hostname.clone());
        let aliases = main.mailvar.join("db").join("aliases");
        let account = self.config.router.accounts.get(&name).cloned();
        let forked = crate::local::helper::fork_verdict(&[], || {
            let (env, body) = match spool.open_message(rcpt.msg) {
                Ok(x) => x,
                Err(e) => {
                    return LocalResult::Deferred(format!("4.3.0 cannot read queue file: {e}"))
                }
            };
            let m = crate::local::LocalMessage {
                sender: &env.sender,
                arrival: env.arrival,
                body: &body,
                hostname: &hostname,
            };
            match target {
                Some(t) => {
                    if let Err(why) = crate::local::targets::run_as(&aliases, t) {
                        return LocalResult::Deferred(format!("4.3.0 {why}"));
                    }
                    let to = env
                        .recipients
                        .get(rcpt.idx)
                        .map(|r| r.address.to_string())
                        .unwrap_or_default();
                    crate::local::targets::deliver_as_self(t, &m, &to)
                }
                None => crate::local::deliver(&mailbox, maildir, &name, account.as_ref(), &m, seq),
            }
        });
        match forked {
            Ok(sock) => self.watch_verdict(io, job, rcpt, sock, now),
            Err(e) => {
                let why = format!("4.3.0 fork: {}", crate::vocab::os_error(&e));
                self.local_end(job, rcpt, LocalResult::Deferred(why), now)
            }
        }
    }

    /// A delivery runs on its own: its verdict is awaited on `sock`.
    fn watch_verdict(
        &mut self,
        io: &mut Io,
        job: JobId,
        rcpt: RcptRef,
        sock: UnixStream,
        now: Instant,
    ) {
        let slot = match self.local.verdicts.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.local.verdicts.len() < MAX_VERDICTS => {
                self.local.verdicts.push(None);
                self.local.verdicts.len() - 1
            }
            None => {
                let why = "4.3.0 too many deliveries awaiting a verdict".to_string();
                return self.local_end(job, rcpt, LocalResult::Deferred(why), now);
            }
        };
        let _ = sock.set_nonblocking(true);
        let mut sock = mio::net::UnixStream::from_std(sock);
        if let Err(e) =
            io.registry
                .register(&mut sock, Token(VERDICT_BASE + slot), Interest::READABLE)
        {
            let why = format!("4.3.0 {}", crate::vocab::os_error(&e));
            return self.local_end(job, rcpt, LocalResult::Deferred(why), now);
        }
        self.local.verdicts[slot] = Some(Verdict {
            job,
            rcpt,
            sock,
            line: Vec::new(),
            deadline: now + crate::local::helper::VERDICT_LIMIT,
        });
    }

    /// A verdict socket can be read.
    pub(super) fn verdict_event(&mut self, io: &mut Io, token: Token, now: Instant) {
        let slot = token.0 - VERDICT_BASE;
        let Some(v) = self.local.verdicts.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let mut buf = [0u8; 1024];
        let result = loop {
            match v.sock.read(&mut buf) {
                Ok(0) => {
                    break Some(LocalResult::Deferred(
                        "4.3.0 the delivery ended without a verdict".into(),
                    ))
                }
                Ok(n) => {
                    v.line
                        .extend_from_slice(&buf[..n.min(crate::local::helper::MAX_LINE)]);
                    if v.line.ends_with(b"\n") || v.line.len() >= crate::local::helper::MAX_LINE {
                        break Some(crate::local::helper::parse_verdict(
                            &String::from_utf8_lossy(&v.line),
                        ));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    break Some(LocalResult::Deferred(format!(
                        "4.3.0 {}",
                        crate::vocab::os_error(&e)
                    )))
                }
            }
        };
        if let Some(r) = result {
            self.verdict_done(io, slot, r, now);
        }
    }

    fn verdict_done(&mut self, io: &mut Io, slot: usize, r: LocalResult, now: Instant) {
        let Some(mut v) = self.local.verdicts.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let _ = &io.registry.deregister(&mut v.sock);
        self.local_end(v.job, v.rcpt, r, now);
    }

    /// Verdicts that did not come in time.
    pub(super) fn local_tick(&mut self, io: &mut Io, now: Instant) {
        let late: Vec<usize> = (0..self.local.verdicts.len())
            .filter(|&i| {
                self.local.verdicts[i]
                    .as_ref()
                    .is_some_and(|v| now >= v.deadline)
            })
            .collect();
        for slot in late {
            let why = format!(
                "4.3.0 no verdict within {} s",
                crate::local::helper::VERDICT_LIMIT.as_secs()
            );
            self.verdict_done(io, slot, LocalResult::Deferred(why), now);
        }
        self.local_step(io, now);
    }

    /// The delivery helper answered, or its socket can take more.
    pub(super) fn helper_event(&mut self, io: &mut Io, now: Instant) {
        let Some(h) = io.helper.as_mut() else {
            return;
        };
        h.flush();
        let answers = h.read();
        let dead = h.dead;
        for ((job, rcpt), started) in answers {
            match started {
                Started::Done(r) => self.local_end(job, rcpt, r, now),
                Started::Running(sock) => self.watch_verdict(io, job, rcpt, sock, now),
            }
        }
        if dead {
            self.helper_died(io, now);
        }
        self.local_step(io, now);
    }

    /// The delivery helper is gone: what it was asked is deferred, deliveries wait,
    /// and the supervisor starts a new one.
    fn helper_died(&mut self, io: &mut Io, now: Instant) {
        let Some(mut h) = io.helper.take() else {
            return;
        };
        let _ = &io.registry.deregister(h.source());
        let lost = h.take_unanswered();
        log::error!(
            "daemon helper-died pid={} requests-deferred={}: starting a new one",
            h.pid(),
            lost.len()
        );
        for (job, rcpt) in lost {
            let why = "4.3.0 the delivery helper died".to_string();
            self.local_end(job, rcpt, LocalResult::Deferred(why), now);
        }
        self.ask_supervisor(io, crate::local::supervisor::Kind::Delivery);
    }

    /// A delivery ended: logged, recorded, and the job goes on.
    fn local_end(&mut self, job: JobId, rcpt: RcptRef, r: LocalResult, now: Instant) {
        let name = self.local_target(job);
        let target = Target::of(&name);
        let r = match r {
            LocalResult::Forward(to) if target.is_none() => self.forward_copy(rcpt, &name, &to),
            LocalResult::Forward(_) => {
                LocalResult::Deferred("4.3.0 a forward from a target".into())
            }
            r => r,
        };
        let reply = match &r {
            LocalResult::Forward(id) => Some(format!("forwarded as {}", id.join(" "))),
            LocalResult::DeliveredAs(what) => Some(what.clone()),
            LocalResult::Delivered => Some(reply_of(target, self.config.main.maildir)),
            _ => None,
        };
        // NOTIFY=SUCCESS: a mailbox delivery is "delivered"; a forward is
        // "expanded", and its copies ask for failures only (RFC 3461 §6.2.7.3).
        let notice = match &r {
            LocalResult::Forward(_) => Action::Expanded,
            _ => Action::Delivered,
        };
        let result = result_of(r);
        let (relay, started) = self
            .local
            .jobs
            .get(&job)
            .cloned()
            .unwrap_or_else(|| (format!("local:{name}"), now));
        let rec = Recorded {
            rcpt,
            result: result.clone(),
            reply,
        };
        self.record(
            &relay,
            vec![rec],
            Some((started, Some(started))),
            Some(notice),
            now,
        );
        self.local.runs.done(job, rcpt, &result);
    }

    /// A `.forward` sent the message on: a copy for those addresses is queued, with
    /// the original sender and a `Delivered-To:` line that stops a loop.
    fn forward_copy(&mut self, rcpt: RcptRef, user: &str, to: &[String]) -> LocalResult {
        let host = self.config.main.hostname.clone();
        let (env, body) = match self.spool.open_message(rcpt.msg) {
            Ok(x) => x,
            Err(e) => return LocalResult::Deferred(format!("4.3.0 cannot read queue file: {e}")),
        };
        let mut data = format!("Delivered-To: {user}@{host}\r\n").into_bytes();
        let mut at = 0u64;
        let mut buf = vec![0u8; crate::store::spool::body::CHUNK];
        loop {
            match body.read_at(at, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    data.extend_from_slice(&buf[..n]);
                    at += n as u64;
                }
                Err(e) => {
                    return LocalResult::Deferred(format!(
                        "4.3.0 cannot read queue file: {}",
                        crate::vocab::os_error(&e)
                    ))
                }
            }
        }
        let rcpts: Vec<crate::vocab::Mailbox> = to
            .iter()
            .filter_map(|t| crate::vocab::address::qualify(t, &host).ok())
            .collect();
        if rcpts.is_empty() {
            return LocalResult::Failed(
                "5.1.3".into(),
                format!("{user}'s .forward names no address"),
            );
        }
        // The forwarded copy asks what the original recipient asked.
        let opts = super::inject::Submitted {
            dsn: env.dsn.clone(),
            notify: env
                .recipients
                .get(rcpt.idx)
                .and_then(|r| r.dsn.notify)
                .map(|n| crate::vocab::dsn::Notify {
                    success: false,
                    ..n
                }),
            smtputf8: env.smtputf8,
        };
        match self.queue_local(env.sender.clone(), &rcpts, &data, "LOCAL", &opts) {
            Ok((id, refused)) => {
                for r in &refused {
                    log::warn!(
                        "{} local forward-refused user={user} to=<{}> reason=\"{}\"",
                        rcpt.msg,
                        r.0,
                        r.1
                    );
                }
                LocalResult::Forward(vec![id.to_string()])
            }
            Err(super::inject::QueueError::Unroutable(r)) => LocalResult::Failed(
                "5.1.1".into(),
                format!(
                    "{user}'s .forward names no deliverable address ({})",
                    r.iter()
                        .map(|(m, why)| format!("{m}: {why}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ),
            Err(super::inject::QueueError::Spool(e)) => {
                LocalResult::Deferred(format!("4.3.0 cannot queue the forwarded copy: {e}"))
            }
        }
    }
}

impl Io {
    /// Whether `token` is a verdict socket's.
    pub(super) fn owns_verdict(token: Token) -> bool {
        (VERDICT_BASE..VERDICT_BASE + MAX_VERDICTS).contains(&token.0)
    }
}
