//! Local jobs: mailboxes (through the privileged helper, as the recipient) and the
//! aliases' `/dev/null`, file and command targets.

use std::io::Read;
use std::time::Instant;

use super::Daemon;
use crate::delivery::Recorded;
use crate::local::{LocalMessage, LocalResult};
use crate::local_targets::Target;
use crate::sched::{Job, JobId, RcptRef, RcptResult};
use crate::spool::{Destination, MessageId};

/// A file or command target being delivered: its verdict comes on `sock`.
pub(super) struct PendingTarget {
    jid: JobId,
    rcpt: RcptRef,
    relay: String,
    /// The reply logged when it is delivered.
    what: String,
    /// For a mailbox delivery, the user (whose `.forward` may send it on).
    user: Option<String>,
    sock: std::os::unix::net::UnixStream,
    line: Vec<u8>,
    started: Instant,
    deadline: Instant,
}

/// What a delivered target's log line says.
fn reply_of(t: Target<'_>) -> String {
    match t {
        Target::Discard => "discarded (/dev/null)".to_string(),
        Target::File(p) => format!("delivered to file: {p}"),
        Target::Command(c) => format!("delivered to command: {c}"),
    }
}

/// A target's outcome as the scheduler and the log take it.
fn recorded(rcpt: RcptRef, r: LocalResult, t: Target<'_>) -> Recorded {
    let (result, reply) = match r {
        LocalResult::Delivered => (RcptResult::Delivered, Some(reply_of(t))),
        // The copy is queued: Postfix's words, which pflogsumm counts as forwarded.
        LocalResult::Forward(id) => (
            RcptResult::Delivered,
            Some(format!("forwarded as {}", id.join(" "))),
        ),
        LocalResult::Deferred(w) => (RcptResult::Deferred(w), None),
        LocalResult::Failed(st, w) => (RcptResult::Failed(st, w), None),
    };
    Recorded {
        rcpt,
        result,
        reply,
    }
}

impl Daemon {
    /// An alias's `/dev/null`, file or command target: through the helper, which
    /// runs it as the aliases file's owner; unprivileged, in a child of ours. Either
    /// way the delivery runs on its own and its verdict is read when it comes
    /// ([`Daemon::targets_tick`]); `Some` when the outcome is known at once.
    fn start_target(
        &mut self,
        (jid, msg, idx): (JobId, MessageId, usize),
        t: Target<'_>,
        m: &LocalMessage<'_>,
        rcpt: &str,
        relay: &str,
    ) -> Option<Recorded> {
        let done = |result: LocalResult| Some(recorded(RcptRef { msg, idx }, result, t));
        let started = match (t, self.helper.as_mut()) {
            (Target::Discard, _) => return done(LocalResult::Delivered),
            (_, Some(h)) => h.start_target(msg, idx),
            (_, None) => {
                // Unprivileged: as ourselves, if an alias still names it.
                let aliases = self.config.main.mailvar.join("db").join("aliases");
                if let Err(why) = crate::local_targets::run_as(&aliases, t) {
                    return done(LocalResult::Deferred(format!("4.3.0 {why}")));
                }
                let me = crate::sys::current_user().unwrap_or_default();
                let (uid, gid, home) =
                    crate::sys::user(&me).unwrap_or((crate::sys::euid(), 0, "/".into()));
                crate::helper::fork_verdict(&[m.body.raw_fd()], || {
                    crate::local_targets::deliver(t, m, ((uid, gid), &home, &me), rcpt)
                })
                .map_err(|e| {
                    LocalResult::Deferred(format!("4.3.0 fork: {}", crate::vocab::os_error(&e)))
                })
            }
        };
        match started {
            Err(r) => done(r),
            Ok(sock) => {
                let what = reply_of(t);
                self.await_verdict((jid, RcptRef { msg, idx }), relay, &what, sock, None);
                None
            }
        }
    }

    /// A delivery runs on its own: its verdict is awaited on `sock`. `user`: a
    /// mailbox delivery, whose `.forward` may send the message on.
    fn await_verdict(
        &mut self,
        (jid, rcpt): (JobId, RcptRef),
        relay: &str,
        what: &str,
        sock: std::os::unix::net::UnixStream,
        user: Option<String>,
    ) {
        let _ = sock.set_nonblocking(true);
        let now = Instant::now();
        self.targets.push(PendingTarget {
            jid,
            rcpt,
            relay: relay.to_string(),
            what: what.to_string(),
            user,
            sock,
            line: Vec::new(),
            started: now,
            deadline: now + crate::helper::VERDICT_LIMIT,
        });
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
        let mut buf = vec![0u8; crate::spool::body::CHUNK];
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
            .filter_map(|t| crate::submit::qualify(t, &host).ok())
            .collect();
        if rcpts.is_empty() {
            return LocalResult::Failed(
                "5.1.3".into(),
                format!("{user}'s .forward names no address"),
            );
        }
        match self.queue_local(env.sender.clone(), &rcpts, &data, "LOCAL") {
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

    /// Reads the verdicts that came; a job whose last one came ends.
    pub(super) fn targets_tick(&mut self, now: Instant) {
        if self.targets.is_empty() {
            return;
        }
        let mut i = 0;
        let before = self.targets.len();
        while i < self.targets.len() {
            let p = &mut self.targets[i];
            let mut buf = [0u8; 1024];
            let verdict = loop {
                match p.sock.read(&mut buf) {
                    Ok(0) => {
                        break Some(LocalResult::Deferred(
                            "4.3.0 the delivery ended without a verdict".into(),
                        ))
                    }
                    Ok(n) => {
                        p.line
                            .extend_from_slice(&buf[..n.min(crate::helper::MAX_LINE)]);
                        if p.line.ends_with(b"\n") || p.line.len() >= crate::helper::MAX_LINE {
                            break Some(crate::helper::parse_verdict(&String::from_utf8_lossy(
                                &p.line,
                            )));
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        break (now >= p.deadline).then(|| {
                            LocalResult::Deferred(format!(
                                "4.3.0 no verdict within {} s",
                                crate::helper::VERDICT_LIMIT.as_secs()
                            ))
                        })
                    }
                    Err(e) => {
                        break Some(LocalResult::Deferred(format!(
                            "4.3.0 {}",
                            crate::vocab::os_error(&e)
                        )))
                    }
                }
            };
            let Some(v) = verdict else {
                i += 1;
                continue;
            };
            let p = self.targets.swap_remove(i);
            let v = match (v, &p.user) {
                (LocalResult::Forward(to), Some(user)) => self.forward_copy(p.rcpt, user, &to),
                (LocalResult::Forward(_), None) => {
                    LocalResult::Deferred("4.3.0 a forward from a target".into())
                }
                (v, _) => v,
            };
            let mut rec = recorded(p.rcpt, v, Target::Discard);
            if rec.result == RcptResult::Delivered && rec.reply.is_none() {
                rec.reply = Some(p.what.clone());
            }
            let result = (rec.rcpt, rec.result.clone());
            self.record(&p.relay, vec![rec], Some((p.started, Some(p.started))), now);
            let waiting = self.targets.iter().any(|x| x.jid == p.jid);
            let results = self.local_done.entry(p.jid).or_default();
            results.push(result);
            if !waiting {
                let results = self.local_done.remove(&p.jid).unwrap_or_default();
                self.finish_job(p.jid, results, now);
            }
        }
        if self.targets.len() < before {
            // Jobs ended and copies may have been queued: start what can start.
            self.start_jobs(now);
        }
    }

    /// When verdicts are looked for again (while any is awaited).
    pub(super) fn targets_timeout(&self, now: Instant) -> Option<Instant> {
        (!self.targets.is_empty()).then(|| now + std::time::Duration::from_millis(50))
    }

    /// Delivers a local job into mailboxes, one message at a time.
    pub(super) fn deliver_local(&mut self, job: Job, now: Instant) {
        let started = Instant::now();
        let mut results = Vec::new();
        let relay = format!("local:{}", job.key.host);
        for (msg, idxs) in crate::delivery::group(&job.rcpts) {
            let mut these = Vec::new();
            match self.spool.open_message(msg) {
                Err(e) => {
                    log::error!("{msg} spool load-failed error=\"{e}\"");
                    for idx in idxs {
                        these.push(Recorded {
                            rcpt: RcptRef { msg, idx },
                            result: RcptResult::Deferred(format!("cannot read queue file: {e}")),
                            reply: None,
                        });
                    }
                }
                Ok((env, body)) => {
                    let hostname = self.config.main.hostname.clone();
                    let m = crate::local::LocalMessage {
                        sender: &env.sender,
                        arrival: env.arrival,
                        body: &body,
                        hostname: &hostname,
                    };
                    for idx in idxs {
                        let user = match env.recipients.get(idx).map(|x| &x.dest) {
                            Some(Destination::Local(u)) => u.clone(),
                            _ => job.key.host.clone(),
                        };
                        self.local_seq += 1;
                        if let Some(t) = Target::of(&user) {
                            let rcpt = env.recipients[idx].address.to_string();
                            let key = (job.id, msg, idx);
                            if let Some(r) = self.start_target(key, t, &m, &rcpt, &relay) {
                                these.push(r);
                            }
                            continue;
                        }
                        let rcpt = RcptRef { msg, idx };
                        let outcome = match self.helper.as_mut() {
                            // As the recipient, through the privileged helper, which
                            // also reads their `.forward`.
                            Some(h) => match h.start_mailbox(msg, &user) {
                                Ok(sock) => {
                                    self.await_verdict(
                                        (job.id, rcpt),
                                        &relay,
                                        "delivered to mailbox",
                                        sock,
                                        Some(user),
                                    );
                                    continue;
                                }
                                Err(r) => r,
                            },
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
                        let mut r = recorded(rcpt, outcome, Target::Discard);
                        if r.result == RcptResult::Delivered {
                            r.reply = Some("delivered to mailbox".into());
                        }
                        these.push(r);
                    }
                }
            }
            results.extend(these.iter().map(|o| (o.rcpt, o.result.clone())));
            self.record(&relay, these, Some((started, Some(started))), now);
        }
        if self.targets.iter().any(|p| p.jid == job.id) {
            // Targets still run: the job ends with the last verdict.
            self.local_done.insert(job.id, results);
            return;
        }
        self.finish_job(job.id, results, now);
    }
}
