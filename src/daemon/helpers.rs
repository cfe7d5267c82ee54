//! The privileged helpers (local delivery, AUTH checks) and their supervisor: the
//! sockets to them are taken, and when one dies the supervisor is asked for another.

use std::time::Instant;

use mio::unix::SourceFd;
use mio::Interest;

use super::io::{children, Io};
use super::{Core, GUARD, HELPER, SUPERVISOR};

impl Core {
    /// Local deliveries go through `helper` from now on (started as root).
    pub fn set_helper(
        &mut self,
        io: &mut Io,
        mut helper: crate::local::helper::Helper<(crate::sched::JobId, crate::sched::RcptRef)>,
    ) -> std::io::Result<()> {
        log::info!("daemon helper pid={}", helper.pid());
        io.registry.register(
            helper.source(),
            HELPER,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        io.helper = Some(helper);
        self.local.privileged = true;
        self.local.runs.pause(false);
        Ok(())
    }

    /// The supervisor starts the helpers again when they die.
    pub fn set_supervisor(
        &mut self,
        io: &mut Io,
        sup: crate::local::supervisor::Supervisor,
    ) -> std::io::Result<()> {
        sup.set_nonblocking()?;
        io.registry
            .register(&mut SourceFd(&sup.fd()), SUPERVISOR, Interest::READABLE)?;
        log::info!("daemon supervisor pid={}", sup.pid());
        io.supervisor = Some(sup);
        Ok(())
    }

    /// Asks the supervisor for a new helper of `kind`; without a supervisor, says
    /// that none will come.
    pub(super) fn ask_supervisor(&mut self, io: &mut Io, kind: crate::local::supervisor::Kind) {
        let asked = io.supervisor.as_mut().map(|s| s.ask(kind));
        match asked {
            Some(Ok(())) => {
                if kind == crate::local::supervisor::Kind::Delivery {
                    self.local.runs.pause(true);
                }
            }
            Some(Err(e)) => self.supervisor_lost(io, &e.to_string()),
            None => log::error!("daemon {kind} cannot be started again: no supervisor"),
        }
    }

    /// The supervisor sent the helpers it started.
    pub(super) fn supervisor_event(&mut self, io: &mut Io, now: Instant) {
        let Some(sup) = io.supervisor.as_mut() else {
            return;
        };
        match sup.read() {
            Ok(started) => {
                for (kind, pid, sock) in started {
                    self.helper_started(io, kind, pid, sock, now);
                }
            }
            Err(e) => self.supervisor_lost(io, &e.to_string()),
        }
    }

    /// A helper the supervisor started again takes over.
    fn helper_started(
        &mut self,
        io: &mut Io,
        kind: crate::local::supervisor::Kind,
        pid: i32,
        sock: std::os::unix::net::UnixStream,
        now: Instant,
    ) {
        use crate::local::supervisor::Kind;
        log::info!("daemon helper-restarted kind=\"{kind}\" pid={pid}");
        match kind {
            Kind::Delivery => match crate::local::helper::Helper::new(sock, pid) {
                Ok(h) => {
                    if let Err(e) = self.set_helper(io, h) {
                        log::error!("daemon helper-failed error=\"{e}\"");
                    }
                    self.local_step(io, now);
                }
                Err(e) => log::error!("daemon helper-failed error=\"{e}\""),
            },
            Kind::Auth => match crate::auth::guard::Guard::attach_later(sock, pid) {
                Ok(mut g) => {
                    let r = &io.registry.register(
                        g.source(),
                        GUARD,
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    match r {
                        Ok(()) => io.guard = Some(g),
                        Err(e) => log::error!("daemon auth-helper-failed error=\"{e}\""),
                    }
                }
                Err(e) => log::error!("daemon auth-helper-failed error=\"{e}\""),
            },
        }
    }

    /// The supervisor is gone: helpers that die from now on stay dead, and local
    /// deliveries that wait for one are deferred.
    fn supervisor_lost(&mut self, io: &mut Io, why: &str) {
        if let Some(s) = io.supervisor.take() {
            let _ = &io.registry.deregister(&mut SourceFd(&s.fd()));
            log::error!("daemon supervisor-lost pid={} error=\"{why}\": helpers that die are not started again; restart etrnd", s.pid());
            // Our child: gone, or made to go, and reaped either way.
            children::kill_and_reap(s.pid());
        }
        self.local.runs.pause(false);
    }
}
