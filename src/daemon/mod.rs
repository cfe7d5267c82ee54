//! The daemon: one event loop. `Io` holds every descriptor, `Core` every
//! component's state, `Clock` the turn's time and nonce (read once per turn).
//!
//! One turn, in qmail-send's prepare-then-do shape: wait for readiness until the
//! earliest deadline; read the clock; accept and read until `WouldBlock`, feeding the
//! sessions; commit every message that ended this turn as one batch (one directory
//! fsync), then answer, so `250` follows durability; run due timers; write pending
//! output; close finished connections.

/// The sessions' [`Context`] from the daemon's state now. A macro, not a method: it
/// borrows only the fields it reads, so a session of `self.conns` can be held
/// mutably beside it.
macro_rules! session_ctx {
    ($d:expr) => {
        $crate::daemon::context(
            &$d.config,
            ($d.disk.low, $d.time.unix, $d.time.nonce),
            $d.sec,
            Some($d.sched.over_quota()),
        )
    };
}

pub mod control;
mod customer;
mod etrn;
mod helpers;
mod inbound;
mod inject;
pub mod io;
mod lifecycle;
mod local_out;
mod maillog;
pub mod netlinks;
mod odmr;
mod outbound;
mod park;
mod pickup;
mod queue_ctl;
mod secure;
pub mod showq;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Poll, Token};

use crate::config::Config;
use crate::dns::Dns;
use crate::sched::Scheduler;
use crate::smtp::server::Context;
use crate::store::spool::Spool;
pub use io::bind;
use io::conn::{ConnId, Role};
use io::dns_io::DnsIo;
use io::Io;
use outbound::Outbound;

const SIGNAL: Token = Token(0);
const NOTIFY: Token = Token(1023);
const CONTROL: Token = Token(1022);
const GUARD: Token = Token(1021);
const HELPER: Token = Token(1020);
const SUPERVISOR: Token = Token(1019);
/// The lowest fixed token: listeners count up to it.
const FIRST_FIXED: usize = SUPERVISOR.0;
const LISTENER_BASE: usize = 1;
/// Extra zero-wait polls served before a commit (see `run`).
const EXTRA_PASSES: usize = 4;
/// How long in-flight work may take after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often the spool's free space is checked (reference/bad-input.md G15).
pub(super) const DISK_CHECK_EVERY: Duration = Duration::from_secs(5);
/// Connections past `MAX_CONNECTIONS` that still get a polite 421 before we simply
/// drop new ones.
const REFUSAL_SLACK: usize = 64;

/// The running daemon: the poller, the I/O (every descriptor), the components that
/// decide (the core) and the clock of the turn.
pub struct Daemon {
    poll: Poll,
    io: Io,
    core: Core,
    clock: io::Clock,
}

/// The components and their state: no descriptor in here.
pub(crate) struct Core {
    /// The turn's wall-clock reading and nonce.
    time: io::Now,
    /// Held destinations whose release goes on chunk by chunk from disk (`park`).
    releasing: Vec<park::Releasing>,
    spool: Spool,
    config: Config,
    config_path: PathBuf,
    /// Whether the spool's disk is short of room, and when that was checked.
    disk: lifecycle::Disk,
    stopping: bool,
    /// After SIGTERM: when the daemon stops even if work is still in flight.
    stop_at: Option<Instant>,
    dns: Dns,
    sched: Scheduler,
    outbound: Outbound,
    /// Counter for unique Maildir names.
    local_seq: u64,
    /// Local jobs in progress and the deliveries they run.
    local: local_out::Local,
    /// Bounces that wait for room, and finished messages that wait for their bounce.
    bounces: inject::Bounces,
    /// `etrnd queue` requests carried out a slice a turn.
    queue_work: Vec<queue_ctl::QueueWork>,
    /// The accepted clients: counts, this turn's messages, ETRN and ATRN requests.
    clients: inbound::Clients,
    /// ODMR state: claims, rate limits, customer requests.
    odmr: odmr::Odmr,
    /// Named links (`LINKS`) and their state.
    netlinks: netlinks::NetLinks,
    /// Per held destination: the last request and release (`POSTOFFICE/clients`).
    notes: crate::store::notes::Notes,
    /// When the notes are written next, if they changed.
    notes_write_at: Option<Instant>,
    /// Recent ETRNs per client address, for the rate limit.
    etrn_desk: crate::machines::etrn_desk::EtrnDesk,
    /// Running `mailq` listings: pid, when they are stopped, for whom (uid, root or
    /// the daemon's user).
    showq: Vec<showq::Listing>,
    /// The drop folder's scans: when next, when last, what failed.
    drops: pickup::Drops,
    /// What sessions may offer of TLS and AUTH.
    sec: Security,
    /// AUTH checks and token requests at the auth helper, and the throttle.
    auth: secure::AuthChecks,
    /// The client side's credentials and TLS policy (from the auth helper's load).
    outbound_sec: secure::OutboundSecurity,
}

/// The per-call context sessions need: the configuration, the disk state and the
/// wall-clock time (Received: headers).
fn context<'a>(
    config: &'a Config,
    (disk_low, unix_time, nonce): (bool, u64, u64),
    sec: Security,
    held_full: Option<&'a std::collections::HashSet<String>>,
) -> Context<'a> {
    let mut policy = config.policy();
    policy.tls = sec.tls;
    policy.auth = sec.auth;
    Context {
        policy,
        disk_low,
        unix_time,
        tls_busy: sec.handshakes >= MAX_HANDSHAKES,
        held_full,
        nonce,
    }
}

/// Most TLS handshakes in progress at once; past it STARTTLS gets 454 and an
/// implicit-TLS client is closed (a handshake costs a key exchange: a flood of them
/// must not starve the sessions already served).
pub const MAX_HANDSHAKES: usize = 32;
/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the sessions may offer of TLS and AUTH now.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Security {
    /// A server certificate is loaded.
    pub tls: bool,
    /// What the auth helper's last load allows.
    pub auth: crate::smtp::server::AuthOffer,
    /// Handshakes in progress.
    pub handshakes: usize,
}

use crate::vocab::date::unix_now;

impl Daemon {
    /// Sets up the loop around already bound listeners and an opened spool, which it
    /// recovers (temp files purged, every queue file verified, bad ones quarantined).
    pub fn new(
        config: Config,
        config_path: PathBuf,
        listeners: Vec<TcpListener>,
        mut spool: Spool,
    ) -> std::io::Result<Daemon> {
        let poll = Poll::new()?;
        let io = Io::open(&poll, &config, listeners, (SIGNAL, LISTENER_BASE))?;
        // MX shuffling and retry-slot picks (DNS ids draw on the OS source themselves).
        let seed = io::random();
        let dns = Dns::new(
            config.resolve.clone(),
            crate::dns::self_spec(&config, &io.listening, io::interfaces()),
            config.main.smtp_port,
            (seed, io::fill_random),
        );
        let mut sched = Scheduler::new(config.sched.clone(), seed.rotate_left(7));
        sched.set_hold_quota(config.main.hold_quota);
        // Debug builds only: the tests make the active set small.
        #[cfg(debug_assertions)]
        if let Some(n) = std::env::var("ETRND_TEST_ACTIVE_LIMIT")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            sched.set_active_limit(n);
        }
        let unix = unix_now();
        // Held mail's expiry counts from its destination's last release.
        let notes = crate::store::notes::Notes::read(spool.root());
        for (k, n) in notes.iter() {
            if let (Some((channel, host)), true) = (k.split_once('!'), n.release > 0) {
                let key = crate::sched::ThreadKey {
                    channel: channel.into(),
                    host: host.into(),
                };
                sched.set_last_release(key, n.release);
            }
        }
        // Startup recovery (reference/bad-input.md H64, H65) reads each queue file
        // once: verified messages go straight into the schedule.
        let rec = spool
            .recover(|e| sched.add_sized(e.id, &e.envelope, &e.state, unix, e.size))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        log::info!(
            "spool recovered queued={} removed-temp={} quarantined={} removed-journals={}",
            rec.queued.len(),
            rec.removed_tmp,
            rec.quarantined.len(),
            rec.removed_state
        );
        // Held mail: summaries from the index (or the index rebuilt from hold/),
        // and what recovery loaded from queue/ that may wait on disk goes there.
        let (dests, parked, index) = park::start(&mut spool, &mut sched, unix);
        log::info!(
            "sched loaded messages={} parked={parked} held-destinations={dests} index={index}",
            sched.messages(),
        );
        let mut d = Daemon {
            poll,
            io,
            core: Core {
                time: io::Now { unix, nonce: 1 },
                spool,
                config,
                config_path,
                disk: lifecycle::Disk::default(),
                clients: inbound::Clients::default(),
                stopping: false,
                stop_at: None,
                releasing: Vec::new(),
                dns,
                sched,
                outbound: Outbound::default(),
                local_seq: 0,
                local: local_out::Local::default(),
                queue_work: Vec::new(),
                bounces: inject::Bounces::default(),
                odmr: odmr::Odmr::default(),
                netlinks: netlinks::NetLinks::default(),
                notes,
                notes_write_at: None,
                etrn_desk: Default::default(),
                showq: Vec::new(),
                drops: pickup::Drops::new(Instant::now()),
                sec: Security::default(),
                auth: secure::AuthChecks::default(),
                outbound_sec: secure::OutboundSecurity::default(),
            },
            clock: io::Clock::default(),
        };
        d.core.links_configure();
        d.io.notify = d.core.bind_notify(&d.io);
        d.core.bind_control(&mut d.io);
        // Tell `etrnd flush` where we really listen (port 0 picks one).
        let text: String = d.io.listening.iter().map(|a| format!("{a}\n")).collect();
        let path = d.core.spool.root().join("listening");
        if let Err(e) = std::fs::write(&path, text) {
            log::warn!("daemon cannot write {}: {e}", path.display());
        }
        d.core.apply_sched(Instant::now());
        d.core.pickup(Instant::now());
        Ok(d)
    }
    /// Local deliveries go through `helper` from now on (started as root).
    pub fn set_helper(
        &mut self,
        helper: crate::local::helper::Helper<(crate::sched::JobId, crate::sched::RcptRef)>,
    ) -> std::io::Result<()> {
        self.core.set_helper(&mut self.io, helper)
    }

    /// The supervisor starts the helpers again when they die.
    pub fn set_supervisor(
        &mut self,
        sup: crate::local::supervisor::Supervisor,
    ) -> std::io::Result<()> {
        self.core.set_supervisor(&mut self.io, sup)
    }

    /// Takes the auth helper and applies its first load (at start: an error stops
    /// the daemon).
    pub fn set_guard(
        &mut self,
        guard: crate::auth::guard::Guard,
        loaded: crate::auth::guard::Loaded,
    ) -> Result<(), String> {
        self.core.set_guard(&mut self.io, guard, loaded)
    }

    /// Runs until SIGTERM or SIGINT.
    pub fn run(&mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut now = self.clock.tick();
        self.core.time = self.clock.now();
        loop {
            if let Some(at) = self.core.stop_at {
                if now >= at || self.core.drained(&self.io) {
                    break;
                }
            }
            let sched_at = self
                .core
                .sched
                .poll_timeout()
                .map(|t| now + Duration::from_secs(t.saturating_sub(self.core.time.unix)));
            let next = [
                self.core.stop_at,
                Some(self.core.drops.next),
                self.io.conns.timers.next(),
                self.core.dns.poll_timeout(),
                sched_at,
                self.core.links_timeout(now),
                self.core.notes_write_at,
                self.core.showq_timeout(),
                self.core.local_timeout(now),
                self.core.queue_timeout(now),
                self.core.bounce_timeout(),
                self.core.disk_timeout(now),
                self.io.control.timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = next.map(|t| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            now = self.clock.tick();
            self.core.time = self.clock.now();
            self.core.local_turn();
            self.core.check_disk(now);
            let mut touched = Vec::new();
            self.dispatch(&events, now, &mut touched);
            for id in touched.drain(..) {
                self.core.service(&mut self.io, id, now);
            }
            // Messages wait for the commit, which blocks the loop. Commands that
            // arrived meanwhile are served first (a few passes at most), so the
            // commit carries more and holds fewer sessions up.
            for _ in 0..EXTRA_PASSES {
                if self.core.clients.batch.is_empty()
                    || self.poll.poll(&mut events, Some(Duration::ZERO)).is_err()
                    || events.is_empty()
                {
                    break;
                }
                self.dispatch(&events, now, &mut touched);
                for id in touched.drain(..) {
                    self.core.service(&mut self.io, id, now);
                }
            }
            self.core.commit(&mut self.io, now);
            self.core.answer_etrns(&mut self.io, now);
            for id in self.io.conns.due(now) {
                let role = self.io.conns.get_mut(id).map(|l| match l.role {
                    Role::Server(_) => 0,
                    Role::Client(_) => 1,
                    Role::Dns(_) => 2,
                });
                match role {
                    Some(0) => self.core.server_timeout(&mut self.io, id, now),
                    Some(1) => self.core.out_timeout(&mut self.io, id, now),
                    Some(_) => {
                        self.io
                            .dns_io
                            .close_tcp(id, &mut self.io.conns, self.poll.registry())
                    }
                    None => {}
                }
            }
            self.core.commit(&mut self.io, now);
            self.core.answer_etrns(&mut self.io, now);
            if now >= self.core.drops.next {
                self.core.pickup(now);
            }
            self.core.dns.handle_timeout(now);
            self.core.lookups_done(&mut self.io, now);
            self.core.page_in_due();
            self.core.sched.handle_timeout(self.core.time.unix);
            self.core.apply_sched(now);
            self.core.start_jobs(&mut self.io, now);
            // Chunks of releases from disk load after the first jobs started.
            self.core.page_in_released();
            if self.core.page_in_wanted() | !self.core.releasing.is_empty() {
                self.core.start_jobs(&mut self.io, now);
            }
            self.core.park_candidates();
            self.core.links_tick(&mut self.io, now);
            self.core.notes_tick(now);
            self.core.showq_reap(&mut self.io, now);
            self.core.local_tick(&mut self.io, now);
            self.core.queue_tick(&mut self.io, now);
            self.core.retry_bounces(now, false);
            self.io.control_tick(now);
            self.core.lookups_done(&mut self.io, now);
            self.io.dns_io.flush(
                &mut self.core.dns,
                &mut self.io.conns,
                self.poll.registry(),
                now,
            );
        }
        self.core.shutdown(&mut self.io);
        Ok(())
    }

    /// Hands each event to its owner; server connections with input go to `touched`.
    fn dispatch(&mut self, events: &Events, now: Instant, touched: &mut Vec<ConnId>) {
        for ev in events.iter() {
            let t = ev.token();
            if let Some(id) = ConnId::from_token(t) {
                let Some(conn) = self.io.conns.get_mut(id) else {
                    continue; // a stale event for a link that is gone
                };
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    conn.readable = true;
                }
                match conn.role {
                    Role::Server(_) => touched.push(id),
                    Role::Client(_) => self.core.out_event(&mut self.io, id, now),
                    Role::Dns(_) => self.io.dns_io.handle_tcp(
                        id,
                        &mut self.io.conns,
                        &mut self.core.dns,
                        self.poll.registry(),
                        now,
                    ),
                }
                continue;
            }
            match t {
                SIGNAL => self.core.handle_signals(&mut self.io, now),
                NOTIFY => self.core.drain_notify(&mut self.io, now),
                CONTROL => self.core.control_accept(&mut self.io, now),
                t if control::Control::owns(t) => self.core.control_event(&mut self.io, t, now),
                GUARD => self.core.guard_event(&mut self.io, now),
                HELPER => self.core.helper_event(&mut self.io, now),
                SUPERVISOR => self.core.supervisor_event(&mut self.io, now),
                t if Io::owns_verdict(t) => {
                    self.core.verdict_event(&mut self.io, t, now);
                    self.core.local_step(&mut self.io, now);
                }
                t if DnsIo::owns(t) => {
                    self.io
                        .dns_io
                        .handle_event(t, &mut self.core.dns, self.poll.registry(), now)
                }
                Token(t) => self
                    .core
                    .accept(&mut self.io, t - LISTENER_BASE, now, touched),
            }
        }
    }
}
