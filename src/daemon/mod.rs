//! The daemon: one event loop. `Io` holds every descriptor, `Core` every
//! component's state, `Clock` the turn's time (read once per turn).
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
            &$d.core.config,
            ($d.core.disk_low, $d.clock.unix, $d.clock.nonce),
            $d.core.sec,
            Some($d.core.sched.over_quota()),
        )
    };
}

pub mod conn;
pub mod control;
mod customer;
pub mod dns_io;
mod etrn;
mod inbound;
mod inject;
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
mod timers;
pub mod transport;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::config::Config;
use crate::dns::Dns;
use crate::sched::Scheduler;
use crate::smtp::etrn_target::EtrnTarget;
use crate::smtp::server::Context;
use crate::store::spool::Envelope;
use crate::store::spool::{Incoming, Spool};
use conn::{ConnId, Conns, Role};
use dns_io::DnsIo;
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
const DISK_CHECK_EVERY: Duration = Duration::from_secs(5);
/// Connections past `MAX_CONNECTIONS` that still get a polite 421 before we simply
/// drop new ones.
const REFUSAL_SLACK: usize = 64;

/// A listener on `addr` (IPv6 ones v6-only, see [`crate::sys::listen`]).
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    crate::sys::listen(addr).map(TcpListener::from_std)
}

/// Binds every `LISTEN` address (before detaching, so errors reach the terminal).
pub fn bind(cfg: &Config) -> io::Result<Vec<TcpListener>> {
    cfg.main
        .listen
        .iter()
        .map(|a| {
            listen(*a).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {a}: {e}")))
        })
        .collect()
}

/// The running daemon: the poller, the I/O (every descriptor), the components that
/// decide (the core) and the clock of the turn.
pub struct Daemon {
    poll: Poll,
    io: Io,
    core: Core,
    clock: Clock,
}

/// Every descriptor of the daemon and the means to move bytes through them.
pub(crate) struct Io {
    /// Listeners by token offset, with the LISTEN entry each came from; a slot is
    /// emptied when a reload removes its address (tokens stay stable).
    listeners: Vec<Option<(SocketAddr, TcpListener)>>,
    /// What each listener serves (same index as `listeners`).
    listener_kinds: Vec<crate::vocab::ListenKind>,
    /// Every connection: accepted clients, deliveries, DNS over TCP.
    conns: Conns,
    signals: crate::sys::SignalPipe,
    buf: Vec<u8>,
    /// A descriptor held in reserve to refuse clients cleanly when out of them.
    spare_fd: Option<std::fs::File>,
    dns_io: DnsIo,
    listening: Vec<SocketAddr>,
    /// The privileged helper, when the daemon was started as root (local delivery
    /// goes through it, as the recipient); `None` while it is started again.
    helper: Option<crate::local::helper::Helper<(crate::sched::JobId, crate::sched::RcptRef)>>,
    /// The supervisor, which starts the helpers again when they die.
    supervisor: Option<crate::local::supervisor::Supervisor>,
    /// The wake-up socket of `etrnd sendmail`.
    notify: Option<mio::net::UnixDatagram>,
    /// The control socket (`etrnd flush`, `mailq`, `queue`, `link`, `atrn`).
    control: control::Control,
    /// The server's TLS configuration, when a certificate is loaded.
    tls_server: Option<transport::ServerTls>,
    /// The auth helper.
    guard: Option<crate::auth::guard::Guard>,
    /// CA roots for `verify`/`secure`, read at first use (and again after SIGHUP).
    #[cfg(feature = "tls")]
    tls_roots: Option<std::sync::Arc<rustls::RootCertStore>>,
}

/// The components and their state: no descriptor in here.
pub(crate) struct Core {
    /// Held destinations whose release goes on chunk by chunk from disk (`park`).
    releasing: Vec<park::Releasing>,
    per_ip: HashMap<IpAddr, usize>,
    /// Accepted clients connected now.
    live: usize,
    spool: Spool,
    config: Config,
    config_path: PathBuf,
    next_session: u32,
    batch: Vec<(ConnId, Incoming, Box<Envelope>)>,
    disk_low: bool,
    disk_checked: Option<Instant>,
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
    /// Bounces that could not be committed (a full disk), and when they are tried
    /// again; and finished messages whose queue file waits for their bounce.
    bounces_waiting: Vec<(crate::sched::Bounce, Instant)>,
    completed_waiting: std::collections::HashSet<crate::store::spool::MessageId>,
    /// `etrnd queue` requests carried out a slice a turn.
    queue_work: Vec<queue_ctl::QueueWork>,
    /// While set, serving a session does not write its output yet: pipelined ETRNs
    /// answered in rounds leave in one write (separate small writes would wait for
    /// the client's delayed ACK behind Nagle, 40 ms each on Linux).
    hold_output: bool,
    /// ETRN requests of this turn: (link, target).
    etrns: Vec<(ConnId, EtrnTarget)>,
    /// ATRN requests of this turn: (link, identity, domains).
    atrns: Vec<(ConnId, String, Vec<String>)>,
    /// ODMR state: claims, rate limits, customer requests.
    odmr: odmr::Odmr,
    /// Named links (`LINKS`) and their state.
    netlinks: netlinks::NetLinks,
    /// Per held destination: the last request and release (`POSTOFFICE/clients`).
    notes: crate::store::notes::Notes,
    /// When the notes are written next, if they changed.
    notes_write_at: Option<Instant>,
    /// Recent ETRNs per client address, for the rate limit.
    etrn_times: HashMap<IpAddr, std::collections::VecDeque<Instant>>,
    /// Running `mailq` listings: pid, when they are stopped, for whom (uid, root or
    /// the daemon's user).
    showq: Vec<showq::Listing>,
    /// When the drop folder is scanned next in any case, and when it was last.
    next_pickup: Instant,
    pickup_last: Option<Instant>,
    /// When entries whose failure was noted are tried again.
    pickup_noted_retry: Instant,
    /// Drop-folder entries whose failure was logged (each is logged once).
    pickup_noted: std::collections::HashSet<PathBuf>,
    /// What sessions may offer of TLS and AUTH.
    sec: Security,
    /// AUTH checks the sessions asked for in this turn.
    auths: Vec<(ConnId, crate::auth::Check)>,
    /// Token requests at the auth helper: by sequence number, the delivery's link.
    tokens_waiting: HashMap<u64, ConnId>,
    /// Checks at the auth helper: by sequence number, the link, user and address.
    auth_waiting: HashMap<u64, (ConnId, String, IpAddr)>,
    /// Recent AUTH failures per client address and per identity: count, last time.
    auth_throttle: crate::auth::throttle::Throttle,
    /// The client side's credentials and TLS policy (from the auth helper's load).
    outbound_sec: secure::OutboundSecurity,
}

/// The turn's reading of the clock.
pub(crate) struct Clock {
    /// Wall-clock seconds of this turn's clock reading (see `tick`).
    unix: u64,
    /// A number that changes every turn from a random start (`Context::nonce`).
    nonce: u64,
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
    ) -> io::Result<Daemon> {
        let poll = Poll::new()?;
        let signals = crate::sys::SignalPipe::install()?;
        poll.registry()
            .register(&mut SourceFd(&signals.fd()), SIGNAL, Interest::READABLE)?;
        let mut listeners = listeners;
        let mut listening = Vec::new();
        let configured = config.main.listen.clone();
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(l, Token(LISTENER_BASE + i), Interest::READABLE)?;
            let addr = l.local_addr()?;
            log::info!("smtp listening address={addr}");
            listening.push(addr);
        }
        // MX shuffling and retry-slot picks (DNS ids draw on the OS source themselves).
        let seed = crate::sys::random_u64();
        let dns = Dns::new(
            config.resolve.clone(),
            crate::dns::self_spec(&config, &listening),
            config.main.smtp_port,
            seed,
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
            .map_err(|e| io::Error::other(e.to_string()))?;
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
            io: Io {
                listener_kinds: config.main.listen_kinds.clone(),
                listeners: configured.into_iter().zip(listeners).map(Some).collect(),
                conns: Conns::default(),
                signals,
                buf: vec![0; 64 * 1024],
                spare_fd: std::fs::File::open("/dev/null").ok(),
                dns_io: DnsIo::default(),
                listening,
                helper: None,
                supervisor: None,
                notify: None,
                control: control::Control::default(),
                tls_server: None,
                guard: None,
                #[cfg(feature = "tls")]
                tls_roots: None,
            },
            core: Core {
                per_ip: HashMap::new(),
                live: 0,
                spool,
                config,
                config_path,
                next_session: 0,
                batch: Vec::new(),
                disk_low: false,
                disk_checked: None,
                stopping: false,
                stop_at: None,
                releasing: Vec::new(),
                dns,
                sched,
                outbound: Outbound::default(),
                local_seq: 0,
                local: local_out::Local::default(),
                queue_work: Vec::new(),
                bounces_waiting: Vec::new(),
                completed_waiting: std::collections::HashSet::new(),
                hold_output: false,
                etrns: Vec::new(),
                atrns: Vec::new(),
                odmr: odmr::Odmr::default(),
                netlinks: netlinks::NetLinks::default(),
                notes,
                notes_write_at: None,
                etrn_times: HashMap::new(),
                showq: Vec::new(),
                next_pickup: Instant::now(),
                pickup_last: None,
                pickup_noted_retry: Instant::now(),
                pickup_noted: std::collections::HashSet::new(),
                sec: Security::default(),
                auths: Vec::new(),
                auth_waiting: HashMap::new(),
                tokens_waiting: HashMap::new(),
                auth_throttle: crate::auth::throttle::Throttle::default(),
                outbound_sec: secure::OutboundSecurity::default(),
            },
            clock: Clock {
                unix,
                nonce: crate::sys::random_u64() | 1,
            },
        };
        d.links_configure();
        d.io.notify = d.bind_notify();
        d.bind_control();
        // Tell `etrnd flush` where we really listen (port 0 picks one).
        let text: String = d.io.listening.iter().map(|a| format!("{a}\n")).collect();
        let path = d.core.spool.root().join("listening");
        if let Err(e) = std::fs::write(&path, text) {
            log::warn!("daemon cannot write {}: {e}", path.display());
        }
        d.apply_sched(Instant::now());
        d.pickup(Instant::now());
        Ok(d)
    }

    /// Reads the clock: the one reading of a loop turn. `now` drives every session,
    /// link and delivery; `self.clock.unix`, the wall-clock seconds of the same moment,
    /// goes to the scheduler and the spool (whose times are stored).
    fn tick(&mut self) -> Instant {
        let now = Instant::now();
        self.clock.unix = unix_now();
        // xorshift from a random start: unique, not secret, no system call.
        self.clock.nonce ^= self.clock.nonce << 13;
        self.clock.nonce ^= self.clock.nonce >> 7;
        self.clock.nonce ^= self.clock.nonce << 17;
        now
    }

    /// Runs until SIGTERM or SIGINT.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut now = self.tick();
        loop {
            if let Some(at) = self.core.stop_at {
                if now >= at || self.drained() {
                    break;
                }
            }
            let sched_at = self
                .core
                .sched
                .poll_timeout()
                .map(|t| now + Duration::from_secs(t.saturating_sub(self.clock.unix)));
            let next = [
                self.core.stop_at,
                Some(self.core.next_pickup),
                self.io.conns.timers.next(),
                self.core.dns.poll_timeout(),
                sched_at,
                self.links_timeout(now),
                self.core.notes_write_at,
                self.showq_timeout(),
                self.local_timeout(now),
                self.queue_timeout(now),
                self.bounce_timeout(),
                self.disk_timeout(now),
                self.io.control.timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = next.map(|t| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            now = self.tick();
            self.local_turn();
            self.check_disk(now);
            let mut touched = Vec::new();
            self.dispatch(&events, now, &mut touched);
            for id in touched.drain(..) {
                self.service(id, now);
            }
            // Messages wait for the commit, which blocks the loop. Commands that
            // arrived meanwhile are served first (a few passes at most), so the
            // commit carries more and holds fewer sessions up.
            for _ in 0..EXTRA_PASSES {
                if self.core.batch.is_empty()
                    || self.poll.poll(&mut events, Some(Duration::ZERO)).is_err()
                    || events.is_empty()
                {
                    break;
                }
                self.dispatch(&events, now, &mut touched);
                for id in touched.drain(..) {
                    self.service(id, now);
                }
            }
            self.commit(now);
            self.answer_etrns(now);
            for id in self.io.conns.due(now) {
                let role = self.io.conns.get_mut(id).map(|l| match l.role {
                    Role::Server(_) => 0,
                    Role::Client(_) => 1,
                    Role::Dns(_) => 2,
                });
                match role {
                    Some(0) => self.server_timeout(id, now),
                    Some(1) => self.out_timeout(id, now),
                    Some(_) => {
                        self.io
                            .dns_io
                            .close_tcp(id, &mut self.io.conns, self.poll.registry())
                    }
                    None => {}
                }
            }
            self.commit(now);
            self.answer_etrns(now);
            if now >= self.core.next_pickup {
                self.pickup(now);
            }
            self.core.dns.handle_timeout(now);
            self.lookups_done(now);
            self.page_in_due();
            self.core.sched.handle_timeout(self.clock.unix);
            self.apply_sched(now);
            self.start_jobs(now);
            // Chunks of releases from disk load after the first jobs started.
            self.page_in_released();
            if self.page_in_wanted() | !self.core.releasing.is_empty() {
                self.start_jobs(now);
            }
            self.park_candidates();
            self.links_tick(now);
            self.notes_tick(now);
            self.showq_reap(now);
            self.local_tick(now);
            self.queue_tick(now);
            self.retry_bounces(now, false);
            self.control_tick(now);
            self.lookups_done(now);
            self.io.dns_io.flush(
                &mut self.core.dns,
                &mut self.io.conns,
                self.poll.registry(),
                now,
            );
        }
        self.shutdown();
        Ok(())
    }

    /// Local deliveries go through `helper` from now on (started as root).
    pub fn set_helper(
        &mut self,
        mut helper: crate::local::helper::Helper<(crate::sched::JobId, crate::sched::RcptRef)>,
    ) -> io::Result<()> {
        log::info!("daemon helper pid={}", helper.pid());
        self.poll.registry().register(
            helper.source(),
            HELPER,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.io.helper = Some(helper);
        self.core.local.privileged = true;
        self.core.local.runs.pause(false);
        Ok(())
    }

    /// The supervisor starts the helpers again when they die.
    pub fn set_supervisor(&mut self, sup: crate::local::supervisor::Supervisor) -> io::Result<()> {
        sup.set_nonblocking()?;
        self.poll
            .registry()
            .register(&mut SourceFd(&sup.fd()), SUPERVISOR, Interest::READABLE)?;
        log::info!("daemon supervisor pid={}", sup.pid());
        self.io.supervisor = Some(sup);
        Ok(())
    }

    /// Asks the supervisor for a new helper of `kind`; without a supervisor, says
    /// that none will come.
    fn ask_supervisor(&mut self, kind: crate::local::supervisor::Kind) {
        let asked = self.io.supervisor.as_mut().map(|s| s.ask(kind));
        match asked {
            Some(Ok(())) => {
                if kind == crate::local::supervisor::Kind::Delivery {
                    self.core.local.runs.pause(true);
                }
            }
            Some(Err(e)) => self.supervisor_lost(&e.to_string()),
            None => log::error!("daemon {kind} cannot be started again: no supervisor"),
        }
    }

    /// The supervisor sent the helpers it started.
    fn supervisor_event(&mut self, now: Instant) {
        let Some(sup) = self.io.supervisor.as_mut() else {
            return;
        };
        match sup.read() {
            Ok(started) => {
                for (kind, pid, sock) in started {
                    self.helper_started(kind, pid, sock, now);
                }
            }
            Err(e) => self.supervisor_lost(&e.to_string()),
        }
    }

    /// A helper the supervisor started again takes over.
    fn helper_started(
        &mut self,
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
                    if let Err(e) = self.set_helper(h) {
                        log::error!("daemon helper-failed error=\"{e}\"");
                    }
                    self.local_step(now);
                }
                Err(e) => log::error!("daemon helper-failed error=\"{e}\""),
            },
            Kind::Auth => match crate::auth::guard::Guard::attach_later(sock, pid) {
                Ok(mut g) => {
                    let r = self.poll.registry().register(
                        g.source(),
                        GUARD,
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    match r {
                        Ok(()) => self.io.guard = Some(g),
                        Err(e) => log::error!("daemon auth-helper-failed error=\"{e}\""),
                    }
                }
                Err(e) => log::error!("daemon auth-helper-failed error=\"{e}\""),
            },
        }
    }

    /// The supervisor is gone: helpers that die from now on stay dead, and local
    /// deliveries that wait for one are deferred.
    fn supervisor_lost(&mut self, why: &str) {
        if let Some(s) = self.io.supervisor.take() {
            let _ = self.poll.registry().deregister(&mut SourceFd(&s.fd()));
            log::error!("daemon supervisor-lost pid={} error=\"{why}\": helpers that die are not started again; restart etrnd", s.pid());
            // Our child: gone, or made to go, and reaped either way.
            let _ = crate::sys::signal(s.pid(), libc::SIGKILL);
            crate::sys::wait_child(s.pid(), Duration::from_secs(1));
        }
        self.core.local.runs.pause(false);
    }

    /// Hands each event to its owner; server links with input go to `touched`.
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
                    Role::Client(_) => self.out_event(id, now),
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
                SIGNAL => self.handle_signals(now),
                NOTIFY => self.drain_notify(now),
                CONTROL => self.control_accept(now),
                t if control::Control::owns(t) => self.control_event(t, now),
                GUARD => self.guard_event(now),
                HELPER => self.helper_event(now),
                SUPERVISOR => self.supervisor_event(now),
                t if Daemon::owns_verdict(t) => {
                    self.verdict_event(t, now);
                    self.local_step(now);
                }
                t if DnsIo::owns(t) => {
                    self.io
                        .dns_io
                        .handle_event(t, &mut self.core.dns, self.poll.registry(), now)
                }
                Token(t) => self.accept(t - LISTENER_BASE, now, touched),
            }
        }
    }

    /// Binds the notify socket (a stale one from a crash is replaced).
    fn bind_notify(&mut self) -> Option<mio::net::UnixDatagram> {
        let path = self.core.spool.notify_path();
        let _ = std::fs::remove_file(&path);
        match mio::net::UnixDatagram::bind(&path) {
            Ok(mut s) => {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666));
                if let Err(e) = self
                    .poll
                    .registry()
                    .register(&mut s, NOTIFY, Interest::READABLE)
                {
                    log::error!("pickup notify-failed error=\"{e}\"");
                    return None;
                }
                Some(s)
            }
            Err(e) => {
                log::error!("pickup notify-failed path={} error=\"{e}\"", path.display());
                None
            }
        }
    }

    fn drain_notify(&mut self, now: Instant) {
        let mut buf = [0u8; 64];
        if let Some(s) = &self.io.notify {
            while s.recv(&mut buf).is_ok() {}
        }
        self.pickup_wake(now);
    }

    /// While the disk is (or may be) full, it is checked again on time even when
    /// nothing else happens: what waits for room goes as soon as there is some.
    fn disk_timeout(&self, now: Instant) -> Option<Instant> {
        match self.core.disk_checked {
            None => Some(now),
            Some(t) if self.core.disk_low || !self.core.bounces_waiting.is_empty() => {
                Some(t + DISK_CHECK_EVERY)
            }
            Some(_) => None,
        }
    }

    fn check_disk(&mut self, now: Instant) {
        if self
            .core
            .disk_checked
            .is_some_and(|t| now < t + DISK_CHECK_EVERY)
        {
            return;
        }
        self.core.disk_checked = Some(now);
        // The same cadence notices a new passwd file (one stat; the walk through NSS
        // happens only when it changed).
        if self.core.config.router.accounts.is_stale() {
            self.core.config.router.accounts = crate::accounts::Accounts::snapshot();
            log::info!(
                "daemon accounts-reloaded accounts={}",
                self.core.config.router.accounts.len()
            );
        }
        let need = self.core.config.main.max_message_size.saturating_mul(3) / 2;
        let low = match crate::sys::free_space(self.core.spool.root()) {
            Ok(free) => free < need,
            Err(_) => false,
        };
        if low != self.core.disk_low {
            if low {
                log::error!("spool disk-low need={need} (1.5 x MAX_MESSAGE_SIZE): refusing MAIL");
            } else {
                log::info!("spool disk-ok");
            }
        }
        let room_again = self.core.disk_low && !low;
        self.core.disk_low = low;
        if room_again {
            // Bounces that waited for room go now.
            self.retry_bounces(now, true);
        }
    }

    fn shutdown(&mut self) {
        self.abandon_deliveries();
        let now = self.tick();
        self.close_servers(now);
        self.notes_tick(now);
        self.write_notes();
        // Every index line is on disk: the next start trusts the index whatever
        // happens to this boot, and reads the summaries from one file.
        self.park_stop();
        if let Err(e) = self.core.spool.mark_index(true) {
            log::error!("spool index-mark-failed error=\"{e}\"");
        }
        log::info!("daemon stopped");
    }
}
