//! The daemon's life: signals (SIGHUP reloads every file and re-binds changed
//! listeners, SIGUSR1 runs every queue that is not held, SIGTERM/SIGINT stop), and
//! the graceful stop. Part of the loop (`impl Daemon`).

use std::net::SocketAddr;
use std::time::Instant;

use mio::{Interest, Token};

use super::{listen, Daemon, FIRST_FIXED, LISTENER_BASE, STOP_GRACE};
use crate::config;

impl Daemon {
    pub(super) fn handle_signals(&mut self, now: Instant) {
        for sig in self.io.signals.drain() {
            match sig {
                libc::SIGTERM | libc::SIGINT => {
                    if !self.core.stopping {
                        log::info!("daemon stopping signal={sig}");
                        self.begin_stop(now);
                    }
                }
                libc::SIGHUP => {
                    let _ = self.reload();
                }
                libc::SIGUSR1 => {
                    self.page_in_unheld();
                    let n = self.core.sched.release_unheld(self.clock.unix);
                    log::info!("sched flush-all threads={n}");
                }
                // A listing, a dial command or a stopped child ended: each owner
                // reaps its own (by pid) this turn.
                libc::SIGCHLD => {
                    self.showq_reap(now);
                    self.netlinks_reap();
                }
                _ => log::debug!("daemon signal={sig} ignored"),
            }
        }
    }

    /// SIGTERM: stop accepting, close idle sessions with 421, let messages being
    /// received and deliveries in flight finish within [`STOP_GRACE`].
    pub(super) fn begin_stop(&mut self, now: Instant) {
        self.core.stopping = true;
        self.core.stop_at = Some(now + STOP_GRACE);
        for (_, l) in self.io.listeners.iter_mut().flatten() {
            let _ = self.poll.registry().deregister(l);
        }
        let host = self.core.config.main.hostname.clone();
        for id in self.server_links() {
            if let Some(c) = self.io.conns.get_mut(id).and_then(|l| l.role.server()) {
                c.session.drain(&host);
                self.service(id, now);
            }
        }
    }

    /// Applies a changed LISTEN: closes listeners no longer wanted, binds new ones
    /// (which can fail after privileges were dropped: then the change is reported).
    pub(super) fn rebind(&mut self, wanted: &[SocketAddr]) {
        for slot in self.io.listeners.iter_mut() {
            if let Some((addr, l)) = slot {
                if !wanted.contains(addr) {
                    let _ = self.poll.registry().deregister(l);
                    log::info!("smtp listener-closed address={addr}");
                    *slot = None;
                }
            }
        }
        for addr in wanted {
            if self.io.listeners.iter().flatten().any(|(a, _)| a == addr) {
                continue;
            }
            match listen(*addr) {
                Ok(mut l) => {
                    let idx = self.io.listeners.len();
                    if idx + LISTENER_BASE >= FIRST_FIXED {
                        log::error!("smtp listen-failed address={addr} error=\"too many listeners\"");
                        continue;
                    }
                    if let Err(e) = self
                        .poll
                        .registry()
                        .register(&mut l, Token(LISTENER_BASE + idx), Interest::READABLE)
                    {
                        log::error!("smtp listen-failed address={addr} error=\"{e}\"");
                        continue;
                    }
                    let real = l.local_addr().unwrap_or(*addr);
                    log::info!("smtp listening address={real}");
                    self.io.listening.push(real);
                    self.io.listeners.push(Some((*addr, l)));
                }
                Err(e) => log::warn!(
                    "smtp listen-failed address={addr} error=\"{e}\" (a port below 1024 needs a restart as root)"
                ),
            }
        }
    }

    /// Whether nothing is in flight any more (stopping may finish).
    pub(super) fn drained(&self) -> bool {
        self.core.outbound.is_idle()
            && self.io.conns.slab.ids().into_iter().all(|id| {
                match self.io.conns.slab.get(id).map(|l| &l.role) {
                    Some(super::conn::Role::Server(c)) => c.incoming.is_none() && !c.session.busy(),
                    _ => true,
                }
            })
    }

    /// Reads every file again (SIGHUP, `newaliases`); a bad one keeps the old
    /// configuration in force, and the errors are returned as well as logged.
    pub(super) fn reload(&mut self) -> Result<(), String> {
        match config::load(&self.core.config_path) {
            Ok(new) => {
                if new.main.listen != self.core.config.main.listen {
                    self.rebind(&new.main.listen);
                    let kinds: Vec<_> = self
                        .io
                        .listeners
                        .iter()
                        .map(|l| match l {
                            Some((a, _)) => new.main.listen_kind(*a),
                            None => crate::vocab::ListenKind::Smtp,
                        })
                        .collect();
                    self.io.listener_kinds = kinds;
                } else {
                    self.io.listener_kinds = new.main.listen_kinds.clone();
                }
                if new.main.postoffice != self.core.config.main.postoffice {
                    log::warn!("config POSTOFFICE changed: restart etrnd to apply it");
                }
                self.core.dns.reconfigure(
                    new.resolve.clone(),
                    crate::dns::self_spec(&new, &self.io.listening),
                    new.main.smtp_port,
                );
                self.core.sched.reconfigure(new.sched.clone());
                self.core.sched.set_hold_quota(new.main.hold_quota);
                if (&new.main.tls_cert, &new.main.tls_key)
                    != (
                        &self.core.config.main.tls_cert,
                        &self.core.config.main.tls_key,
                    )
                {
                    log::warn!(
                        "config TLS_CERT/TLS_KEY changed: the files are re-read, a new path needs a restart"
                    );
                }
                self.core.config = new;
                self.links_configure();
                self.reload_secrets();
                log::info!("config reloaded path={}", self.core.config_path.display());
                Ok(())
            }
            Err(errors) => {
                for e in &errors {
                    log::error!("config reload-failed {e}");
                }
                log::error!("config reload-failed: the old configuration stays in force");
                Err(errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "))
            }
        }
    }
}
