//! `mailq` for every local user (DESIGN.md §5.11): the spool is the daemon's alone,
//! so the listing is made by a child — this binary's own `mailq`, run with the
//! daemon's privileges and the list of messages being delivered now — and written
//! straight into the pipe the requester sent with its request. The loop never
//! blocks on a slow reader; a child that has not finished in [`SHOWQ_LIMIT`] is
//! stopped, and at most [`MAX_SHOWQ`] run at once.
//!
//! The requester hears `250-2.0.0 listing` at once, reads the pipe to its end, and
//! then `250 2.0.0 listing done` (or `451`), sent when the child has been reaped
//! (its SIGCHLD): a user's next `mailq` never finds its last one still counted.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::control::ControlRef;
use super::io::children;
use super::{Core, Io};
use crate::smtp::reply::Reply;

/// Listings made at once for users other than root and the daemon's, and for one
/// such user; root and the daemon's user have as many again of their own.
pub const MAX_SHOWQ: usize = 4;
/// Listings one user other than root and the daemon's may have running.
pub const MAX_SHOWQ_PER_UID: usize = 1;
/// How long one listing may take.
pub const SHOWQ_LIMIT: Duration = Duration::from_secs(120);
/// The environment variable that carries the active messages to the child (and
/// tells it to read the spool itself).
pub const ACTIVE_ENV: &str = "ETRND_MAILQ_ACTIVE";

/// A listing being made.
pub struct Listing {
    pid: i32,
    /// When it is stopped.
    deadline: Instant,
    uid: u32,
    privileged: bool,
    /// Who hears the end of it.
    reply_to: ControlRef,
}

impl Core {
    /// Starts a listing into `fd` (the requester's pipe): the refusal now, or the
    /// first line now and the last when the child is reaped (`None`).
    pub(super) fn showq_start(
        &mut self,
        io: &mut Io,
        json: bool,
        fd: Option<OwnedFd>,
        who: super::control::Requester,
        me: ControlRef,
        now: Instant,
    ) -> Option<Reply> {
        let Some(fd) = fd else {
            return Some(Reply::new(
                501,
                "5.5.4 mailq needs a descriptor to write to".into(),
            ));
        };
        self.showq_reap(io, now);
        let mine = self.showq.iter().filter(|s| s.uid == who.uid).count();
        let theirs = self.showq.iter().filter(|s| !s.privileged).count();
        let full = if who.privileged {
            mine >= MAX_SHOWQ
        } else {
            mine >= MAX_SHOWQ_PER_UID || theirs >= MAX_SHOWQ
        };
        if full {
            return Some(Reply::new(
                450,
                "4.3.2 too many listings at once, try again".into(),
            ));
        }
        let failed = |e: String| {
            log::error!("control mailq-failed error=\"{e}\"");
            Some(Reply::new(451, "4.3.0 cannot run the listing".into()))
        };
        let exe = match super::io::exe() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(e) => return failed(e.to_string()),
        };
        let mut argv = vec![
            exe,
            "-f".to_string(),
            self.config_path.to_string_lossy().into_owned(),
            "mailq".to_string(),
        ];
        if json {
            argv.push("-j".into());
        }
        let active: Vec<String> = self
            .sched
            .active_messages()
            .iter()
            .map(|m| m.to_string())
            .collect();
        let active = active.join(",");
        match children::spawn(&argv, &[(ACTIVE_ENV, &active)], Some(fd.as_raw_fd())) {
            Ok(pid) => {
                self.showq.push(Listing {
                    pid,
                    deadline: now + SHOWQ_LIMIT,
                    uid: who.uid,
                    privileged: who.privileged,
                    reply_to: me,
                });
                io.control
                    .interim(me, &Reply::new(250, "2.0.0 listing".into()));
                None
            }
            Err(e) => failed(e.to_string()),
        }
        // `fd` closes here: the child holds the pipe's write end now.
    }

    /// Reaps finished listings (their requesters hear the end) and stops those past
    /// their time.
    pub(super) fn showq_reap(&mut self, io: &mut Io, now: Instant) {
        let mut done = Vec::new();
        self.showq.retain(|l| {
            if let Some(status) = children::try_reap(l.pid) {
                done.push((l.reply_to, l.privileged, status));
                return false;
            }
            if now >= l.deadline {
                log::warn!("control mailq-timeout pid={}", l.pid);
                children::terminate(l.pid);
            }
            true
        });
        for (to, privileged, status) in done {
            let r = match status {
                Some(0) => Reply::new(250, "2.0.0 listing done".into()),
                Some(code) => Reply::new(451, format!("4.3.0 the listing failed (exit {code})")),
                None => Reply::new(451, "4.3.0 the listing was stopped".into()),
            };
            self.control_reply_then(io, to, &r, !privileged, now);
        }
    }

    /// When a listing must be stopped (their ends come as SIGCHLD).
    pub(super) fn showq_timeout(&self) -> Option<Instant> {
        self.showq.iter().map(|l| l.deadline).min()
    }
}
