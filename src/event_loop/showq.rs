//! `mailq` for every local user (DESIGN.md §5.11): the spool is the daemon's alone,
//! so the listing is made by a child — this binary's own `mailq`, run with the
//! daemon's privileges and the list of messages being delivered now — and written
//! straight into the pipe the requester sent with its request. The loop never
//! blocks on a slow reader; a child that has not finished in [`SHOWQ_LIMIT`] is
//! stopped, and at most [`MAX_SHOWQ`] run at once.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::Daemon;
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

impl Daemon {
    /// Starts a listing into `fd` (the requester's pipe).
    pub(super) fn showq_start(
        &mut self,
        json: bool,
        fd: Option<OwnedFd>,
        who: super::control::Requester,
        now: Instant,
    ) -> Reply {
        let Some(fd) = fd else {
            return Reply::new(501, "5.5.4 mailq needs a descriptor to write to".into());
        };
        self.showq_reap(now);
        let mine = self.showq.iter().filter(|s| s.2 == who.uid).count();
        let theirs = self.showq.iter().filter(|s| !s.3).count();
        let full = if who.privileged {
            mine >= MAX_SHOWQ
        } else {
            mine >= MAX_SHOWQ_PER_UID || theirs >= MAX_SHOWQ
        };
        if full {
            return Reply::new(450, "4.3.2 too many listings at once, try again".into());
        }
        let exe = match std::env::current_exe() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(e) => {
                log::error!("control mailq-failed error=\"{e}\"");
                return Reply::new(451, "4.3.0 cannot run the listing".into());
            }
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
        match crate::sys::spawn_command_to(&argv, &[(ACTIVE_ENV, &active)], Some(fd.as_raw_fd())) {
            Ok(pid) => {
                self.showq
                    .push((pid, now + SHOWQ_LIMIT, who.uid, who.privileged));
                Reply::new(250, "2.0.0 listing".into())
            }
            Err(e) => {
                log::error!("control mailq-failed error=\"{e}\"");
                Reply::new(451, "4.3.0 cannot run the listing".into())
            }
        }
        // `fd` closes here: the child holds the pipe's write end now.
    }

    /// Reaps finished listings and stops those past their time.
    pub(super) fn showq_reap(&mut self, now: Instant) {
        self.showq.retain(|&(pid, deadline, _, _)| {
            if crate::sys::try_reap(pid).is_some() {
                return false;
            }
            if now >= deadline {
                log::warn!("control mailq-timeout pid={pid}");
                crate::sys::terminate(pid);
            }
            true
        });
    }

    /// When the listings need looking at again (each second while one runs).
    pub(super) fn showq_timeout(&self, now: Instant) -> Option<Instant> {
        (!self.showq.is_empty()).then(|| now + Duration::from_secs(1))
    }
}
