//! The daemon's life: signals (SIGHUP reloads every file and re-binds changed
//! listeners, SIGUSR1 runs every queue that is not held, SIGTERM/SIGINT stop), and
//! the graceful stop. Part of the core (`impl Core`).

use std::net::SocketAddr;
use std::time::Instant;

use mio::{Interest, Token};

use super::io::{listen, Io};
use super::{Core, FIRST_FIXED, LISTENER_BASE, STOP_GRACE};
use crate::config;

/// The spool disk's room.
#[derive(Default)]
pub(super) struct Disk {
    /// Short of room: MAIL gets 452, bounces wait.
    pub(super) low: bool,
    /// When it was last checked.
    pub(super) checked: Option<std::time::Instant>,
}

impl Core {
    pub(super) fn handle_signals(&mut self, io: &mut Io, now: Instant) {
        for sig in io.signals.drain() {
            match sig {
                libc::SIGTERM | libc::SIGINT => {
                    if !self.stopping {
                        log::info!("daemon stopping signal={sig}");
                        self.begin_stop(io, now);
                    }
                }
                libc::SIGHUP => {
                    let _ = self.reload(io);
                }
                libc::SIGUSR1 => {
                    self.page_in_unheld();
                    let n = self.sched.release_unheld(self.time.unix, false);
                    log::info!("sched flush-all threads={n}");
                }
                // A listing, a dial command or a stopped child ended: each owner
                // reaps its own (by pid) this turn.
                libc::SIGCHLD => {
                    self.showq_reap(io, now);
                    self.netlinks_reap();
                }
                _ => log::debug!("daemon signal={sig} ignored"),
            }
        }
    }

    /// SIGTERM: stop accepting, close idle sessions with 421, let messages being
    /// received and deliveries in flight finish within [`STOP_GRACE`].
    pub(super) fn begin_stop(&mut self, io: &mut Io, now: Instant) {
        self.stopping = true;
        self.stop_at = Some(now + STOP_GRACE);
        for (_, l) in io.listeners.iter_mut().flatten() {
            let _ = &io.registry.deregister(l);
        }
        let host = self.config.main.hostname.clone();
        for id in io.server_links() {
            if let Some(c) = io.conns.get_mut(id).and_then(|l| l.role.server()) {
                c.session.drain(&host);
                self.service(io, id, now);
            }
        }
    }

    /// Whether nothing is in flight any more (stopping may finish).
    pub(super) fn drained(&self, io: &Io) -> bool {
        self.outbound.is_idle()
            && io.conns.slab.ids().into_iter().all(|id| {
                match io.conns.slab.get(id).map(|l| &l.role) {
                    Some(super::io::conn::Role::Server(c)) => {
                        c.incoming.is_none() && !c.session.busy()
                    }
                    _ => true,
                }
            })
    }

    /// Reads every file again (SIGHUP, `newaliases`); a bad one keeps the old
    /// configuration in force, and the errors are returned as well as logged.
    pub(super) fn reload(&mut self, io: &mut Io) -> Result<(), String> {
        match config::load(&self.config_path) {
            Ok(new) => {
                if new.main.listen != self.config.main.listen {
                    io.rebind(&new.main.listen);
                    let kinds: Vec<_> = io
                        .listeners
                        .iter()
                        .map(|l| match l {
                            Some((a, _)) => new.main.listen_kind(*a),
                            None => crate::vocab::ListenKind::Smtp,
                        })
                        .collect();
                    io.listener_kinds = kinds;
                } else {
                    io.listener_kinds = new.main.listen_kinds.clone();
                }
                if new.main.postoffice != self.config.main.postoffice {
                    log::warn!("config POSTOFFICE changed: restart etrnd to apply it");
                }
                self.dns.reconfigure(
                    new.resolve.clone(),
                    crate::dns::self_spec(&new, &io.listening, super::io::interfaces()),
                    new.main.smtp_port,
                );
                self.sched.reconfigure(new.sched.clone());
                self.sched.set_hold_quota(new.main.hold_quota);
                if (&new.main.tls_cert, &new.main.tls_key)
                    != (&self.config.main.tls_cert, &self.config.main.tls_key)
                {
                    log::warn!(
                        "config TLS_CERT/TLS_KEY changed: the files are re-read, a new path needs a restart"
                    );
                }
                self.config = new;
                self.links_configure();
                io.reload_secrets();
                log::info!("config reloaded path={}", self.config_path.display());
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

impl Io {
    /// Applies a changed LISTEN: closes listeners no longer wanted, binds new ones
    /// (which can fail after privileges were dropped: then the change is reported).
    pub(super) fn rebind(&mut self, wanted: &[SocketAddr]) {
        for slot in self.listeners.iter_mut() {
            if let Some((addr, l)) = slot {
                if !wanted.contains(addr) {
                    let _ = &self.registry.deregister(l);
                    log::info!("smtp listener-closed address={addr}");
                    *slot = None;
                }
            }
        }
        for addr in wanted {
            if self.listeners.iter().flatten().any(|(a, _)| a == addr) {
                continue;
            }
            match listen(*addr) {
                Ok(mut l) => {
                    let idx = self.listeners.len();
                    if idx + LISTENER_BASE >= FIRST_FIXED {
                        log::error!("smtp listen-failed address={addr} error=\"too many listeners\"");
                        continue;
                    }
                    if let Err(e) = self.registry
                        .register(&mut l, Token(LISTENER_BASE + idx), Interest::READABLE)
                    {
                        log::error!("smtp listen-failed address={addr} error=\"{e}\"");
                        continue;
                    }
                    let real = l.local_addr().unwrap_or(*addr);
                    log::info!("smtp listening address={real}");
                    self.listening.push(real);
                    self.listeners.push(Some((*addr, l)));
                }
                Err(e) => log::warn!(
                    "smtp listen-failed address={addr} error=\"{e}\" (a port below 1024 needs a restart as root)"
                ),
            }
        }
    }
}

impl Core {
    /// While the disk is (or may be) full, it is checked again on time even when
    /// nothing else happens: what waits for room goes as soon as there is some.
    pub(super) fn disk_timeout(&self, now: Instant) -> Option<Instant> {
        match self.disk.checked {
            None => Some(now),
            Some(t) if self.disk.low || !self.bounces.waiting.is_empty() => {
                Some(t + super::DISK_CHECK_EVERY)
            }
            Some(_) => None,
        }
    }

    pub(super) fn check_disk(&mut self, now: Instant) {
        if self
            .disk
            .checked
            .is_some_and(|t| now < t + super::DISK_CHECK_EVERY)
        {
            return;
        }
        self.disk.checked = Some(now);
        // The same cadence notices a new passwd file (one stat; the walk through NSS
        // happens only when it changed).
        if self.config.router.accounts.is_stale() {
            self.config.router.accounts = crate::accounts::Accounts::snapshot();
            log::info!(
                "daemon accounts-reloaded accounts={}",
                self.config.router.accounts.len()
            );
        }
        let need = self.config.main.max_message_size.saturating_mul(3) / 2;
        let low = match super::io::free_space(self.spool.root()) {
            Ok(free) => free < need,
            Err(_) => false,
        };
        if low != self.disk.low {
            if low {
                log::error!("spool disk-low need={need} (1.5 x MAX_MESSAGE_SIZE): refusing MAIL");
            } else {
                log::info!("spool disk-ok");
            }
        }
        let room_again = self.disk.low && !low;
        self.disk.low = low;
        if room_again {
            // Bounces that waited for room go now.
            self.retry_bounces(now, true);
        }
    }

    pub(super) fn shutdown(&mut self, io: &mut Io) {
        self.abandon_deliveries(io);
        self.links_stop();
        let now = Instant::now();
        self.close_servers(io, now);
        self.notes_tick(now);
        self.write_notes();
        // Every index line is on disk: the next start trusts the index whatever
        // happens to this boot, and reads the summaries from one file.
        self.park_stop();
        if let Err(e) = self.spool.mark_index(true) {
            log::error!("spool index-mark-failed error=\"{e}\"");
        }
        log::info!("daemon stopped");
    }
}
