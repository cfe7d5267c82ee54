//! The one event loop: it owns the poller, the listeners, every connection, the
//! timers, the signal pipe and the spool, and routes what the sans-IO sessions ask
//! for. It is the only caller of accept/read/write and of `Instant::now()`.
//!
//! One turn, in qmail-send's prepare-then-do shape:
//! 1. wait for readiness until the earliest session deadline;
//! 2. read the clock once;
//! 3. accept until `WouldBlock`; read each ready connection until `WouldBlock` (or
//!    until its session stops wanting input), feeding the session and writing the
//!    message octets it hands back to the spool;
//! 4. commit every message that ended in this turn as one batch (one directory fsync
//!    for all of them), then give each session its result, so `250` is only ever
//!    written after the message is durable;
//! 5. run due timers; write pending output; close finished connections.

mod conn;
pub mod control;
pub mod dns_io;
mod etrn;
mod inject;
mod lifecycle;
mod outbound;
mod pickup;
mod timers;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::config::{cidr, Config};
use crate::dns::Dns;
use crate::sched::Scheduler;
use crate::smtp::etrn::EtrnTarget;
use crate::smtp::reply::Reply;
use crate::smtp::server::{Context, Event, ServerSession};
use crate::smtp::trace::{self, TraceInfo};
use crate::spool::Envelope;
use crate::spool::{Incoming, Spool};
use conn::{Conn, ReadResult};
use dns_io::DnsIo;
use outbound::Outbound;
use timers::Timers;

const SIGNAL: Token = Token(0);
const NOTIFY: Token = Token(1023);
const CONTROL: Token = Token(1022);
const LISTENER_BASE: usize = 1;
/// Extra zero-wait polls served before a commit (see `run`).
const EXTRA_PASSES: usize = 4;
const CONN_BASE: usize = 1024;
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

/// The running daemon.
pub struct Daemon {
    poll: Poll,
    /// Listeners by token offset, with the LISTEN entry each came from; a slot is
    /// emptied when a reload removes its address (tokens stay stable).
    listeners: Vec<Option<(SocketAddr, TcpListener)>>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    freed_this_turn: Vec<usize>,
    per_ip: HashMap<IpAddr, usize>,
    live: usize,
    timers: Timers,
    spool: Spool,
    config: Config,
    config_path: PathBuf,
    signals: crate::sys::SignalPipe,
    next_session: u32,
    batch: Vec<(usize, Incoming, Box<Envelope>)>,
    disk_low: bool,
    disk_checked: Option<Instant>,
    buf: Vec<u8>,
    stopping: bool,
    /// After SIGTERM: when the daemon stops even if work is still in flight.
    stop_at: Option<Instant>,
    /// A descriptor held in reserve to refuse clients cleanly when out of them.
    spare_fd: Option<std::fs::File>,
    dns: Dns,
    dns_io: DnsIo,
    listening: Vec<SocketAddr>,
    sched: Scheduler,
    outbound: Outbound,
    /// Counter for unique Maildir names.
    local_seq: u64,
    /// The privileged helper, when the daemon was started as root (local delivery
    /// goes through it, as the recipient).
    helper: Option<crate::helper::Helper>,
    /// While set, serving a session does not write its output yet: pipelined ETRNs
    /// answered in rounds leave in one write (separate small writes would wait for
    /// the client's delayed ACK behind Nagle, 40 ms each on Linux).
    hold_output: bool,
    /// ETRN requests of this turn: (connection slot, target).
    etrns: Vec<(usize, EtrnTarget)>,
    /// Recent ETRNs per client address, for the rate limit.
    etrn_times: HashMap<IpAddr, std::collections::VecDeque<Instant>>,
    /// The wake-up socket of `etrnd sendmail`.
    notify: Option<mio::net::UnixDatagram>,
    /// The control socket (`etrnd flush`).
    control: Option<mio::net::UnixDatagram>,
    /// When the drop folder is scanned next in any case.
    next_pickup: Instant,
}

/// The per-call context sessions need: the configuration, the disk state and the time.
fn context(config: &Config, disk_low: bool) -> Context<'_> {
    Context {
        config,
        disk_low,
        unix_time: unix_now(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

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
        let unix = unix_now();
        // Startup recovery (reference/bad-input.md H64, H65) reads each queue file
        // once: verified messages go straight into the schedule.
        let rec = spool
            .recover(|e| sched.add_message(e.id, &e.envelope, &e.state, unix))
            .map_err(|e| io::Error::other(e.to_string()))?;
        log::info!(
            "spool recovered queued={} removed-temp={} quarantined={} removed-journals={}",
            rec.queued.len(),
            rec.removed_tmp,
            rec.quarantined.len(),
            rec.removed_state
        );
        log::info!("sched loaded messages={}", sched.messages());
        let mut d = Daemon {
            poll,
            listeners: configured.into_iter().zip(listeners).map(Some).collect(),
            conns: Vec::new(),
            free: Vec::new(),
            freed_this_turn: Vec::new(),
            per_ip: HashMap::new(),
            live: 0,
            timers: Timers::default(),
            spool,
            config,
            config_path,
            signals,
            next_session: 0,
            batch: Vec::new(),
            disk_low: false,
            disk_checked: None,
            buf: vec![0; 64 * 1024],
            stopping: false,
            stop_at: None,
            spare_fd: std::fs::File::open("/dev/null").ok(),
            dns,
            dns_io: DnsIo::default(),
            listening,
            sched,
            outbound: Outbound::default(),
            local_seq: 0,
            helper: None,
            hold_output: false,
            etrns: Vec::new(),
            etrn_times: HashMap::new(),
            notify: None,
            control: None,
            next_pickup: Instant::now(),
        };
        d.notify = d.bind_notify();
        d.control = d.bind_control();
        // Tell `etrnd flush` where we really listen (port 0 picks one).
        let text: String = d.listening.iter().map(|a| format!("{a}\n")).collect();
        let path = d.spool.root().join("listening");
        if let Err(e) = std::fs::write(&path, text) {
            log::warn!("daemon cannot write {}: {e}", path.display());
        }
        d.apply_sched(Instant::now());
        d.pickup(Instant::now());
        Ok(d)
    }

    /// Runs until SIGTERM or SIGINT.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            if let Some(at) = self.stop_at {
                if Instant::now() >= at || self.drained() {
                    break;
                }
            }
            let sched_at = self
                .sched
                .poll_timeout()
                .map(|t| Instant::now() + Duration::from_secs(t.saturating_sub(unix_now())));
            let next = [
                self.stop_at,
                Some(self.next_pickup),
                self.timers.next(),
                self.dns.poll_timeout(),
                self.outbound.next_deadline(),
                sched_at,
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = next.map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            self.check_disk(now);
            let mut touched = Vec::new();
            self.dispatch(&events, now, &mut touched);
            for slot in touched.drain(..) {
                self.service(slot, now);
            }
            // Messages wait for the commit, which blocks the loop. Commands that
            // arrived meanwhile are served first (a few passes at most), so the
            // commit carries more and holds fewer sessions up.
            for _ in 0..EXTRA_PASSES {
                if self.batch.is_empty()
                    || self.poll.poll(&mut events, Some(Duration::ZERO)).is_err()
                    || events.is_empty()
                {
                    break;
                }
                self.dispatch(&events, now, &mut touched);
                for slot in touched.drain(..) {
                    self.service(slot, now);
                }
            }
            self.commit(now);
            self.answer_etrns(now);
            for slot in self.timers.due(now) {
                if let Some(Some(c)) = self.conns.get_mut(slot) {
                    let ctx = context(&self.config, self.disk_low);
                    c.session.handle_timeout(now, &ctx);
                    self.service(slot, now);
                }
            }
            self.commit(now);
            self.answer_etrns(now);
            if now >= self.next_pickup {
                self.pickup(now);
            }
            self.dns.handle_timeout(now);
            self.lookups_done(now);
            self.out_timeouts(now);
            self.sched.handle_timeout(unix_now());
            self.apply_sched(now);
            self.start_jobs(now);
            self.dns_io.flush(&mut self.dns, self.poll.registry(), now);
            self.free.append(&mut self.freed_this_turn);
        }
        self.shutdown();
        Ok(())
    }

    /// Local deliveries go through `helper` from now on.
    pub fn set_helper(&mut self, helper: crate::helper::Helper) {
        log::info!("daemon helper pid={}", helper.pid());
        self.helper = Some(helper);
    }

    /// Hands each event to its owner; connections with input go to `touched`.
    fn dispatch(&mut self, events: &Events, now: Instant, touched: &mut Vec<usize>) {
        for ev in events.iter() {
            match ev.token() {
                SIGNAL => self.handle_signals(),
                NOTIFY => self.drain_notify(now),
                CONTROL => self.drain_control(now),
                t if DnsIo::owns(t) => {
                    self.dns_io
                        .handle_event(t, &mut self.dns, self.poll.registry(), now)
                }
                t if Outbound::owns(t) => self.out_event(t, now),
                Token(t) if t >= CONN_BASE => {
                    let slot = t - CONN_BASE;
                    if let Some(Some(c)) = self.conns.get_mut(slot) {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            c.readable = true;
                        }
                        touched.push(slot);
                    }
                }
                Token(t) => self.accept(t - LISTENER_BASE, now, touched),
            }
        }
    }

    /// Binds the notify socket (a stale one from a crash is replaced).
    fn bind_notify(&mut self) -> Option<mio::net::UnixDatagram> {
        let path = self.spool.notify_path();
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
        if let Some(s) = &self.notify {
            while s.recv(&mut buf).is_ok() {}
        }
        self.pickup(now);
    }

    fn check_disk(&mut self, now: Instant) {
        if self
            .disk_checked
            .is_some_and(|t| now < t + DISK_CHECK_EVERY)
        {
            return;
        }
        self.disk_checked = Some(now);
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
        let low = match crate::sys::free_space(self.spool.root()) {
            Ok(free) => free < need,
            Err(_) => false,
        };
        if low != self.disk_low {
            if low {
                log::error!("spool disk-low need={need} (1.5 x MAX_MESSAGE_SIZE): refusing MAIL");
            } else {
                log::info!("spool disk-ok");
            }
        }
        self.disk_low = low;
    }

    fn accept(&mut self, idx: usize, now: Instant, touched: &mut Vec<usize>) {
        loop {
            let Some(Some((_, listener))) = self.listeners.get(idx) else {
                return;
            };
            let (mut stream, addr) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                    // Out of descriptors: free the spare, take the client, tell it
                    // 421 and let it go, then take the spare back (Postfix's trick),
                    // so clients are refused cleanly instead of hanging.
                    // (Linux reports EMFILE even with nobody waiting: then stop.)
                    self.spare_fd = None;
                    let taken = match self.listeners.get(idx) {
                        Some(Some((_, l))) => l.accept().ok(),
                        _ => None,
                    };
                    let got_one = taken.is_some();
                    if let Some((mut s, addr)) = taken {
                        let msg = Reply::closing(
                            &self.config.main.hostname,
                            "4.3.2 Error: too busy, try later",
                        );
                        let mut out = Vec::new();
                        msg.write_to(&mut out);
                        let _ = std::io::Write::write(&mut s, &out);
                        log::warn!(
                            "smtp refused address={addr} reason=\"out of file descriptors\""
                        );
                    }
                    self.spare_fd = std::fs::File::open("/dev/null").ok();
                    if !got_one {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    log::error!("smtp accept-failed error=\"{e}\"");
                    return;
                }
            };
            let ip = cidr::canonical(addr.ip());
            let max = self.config.main.max_connections;
            if self.live >= max.saturating_add(REFUSAL_SLACK) {
                continue; // dropped: a flood, not a client
            }
            let slot = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(CONN_BASE + slot),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::error!("smtp register-failed error=\"{e}\"");
                self.free.push(slot);
                continue;
            }
            self.next_session = self.next_session.wrapping_add(1);
            let sid = self.next_session;
            let per_ip = self.per_ip.get(&ip).copied().unwrap_or(0);
            let host = &self.config.main.hostname;
            let session = if self.live >= max {
                ServerSession::refuse(sid, addr, host, "too many connections", now)
            } else if per_ip >= self.config.main.max_connections_per_ip {
                ServerSession::refuse(
                    sid,
                    addr,
                    host,
                    "too many connections from your address",
                    now,
                )
            } else {
                let ctx = context(&self.config, self.disk_low);
                ServerSession::new(sid, SocketAddr::new(ip, addr.port()), &ctx, now)
            };
            *self.per_ip.entry(ip).or_insert(0) += 1;
            self.live += 1;
            self.conns[slot] = Some(Conn {
                stream,
                ip,
                session,
                incoming: None,
                envelope: None,
                spool_error: None,
                readable: true,
                dead: false,
            });
            touched.push(slot);
        }
    }

    /// Reads what the session wants, routes its events, writes its output, and closes
    /// or re-arms the connection.
    fn service(&mut self, slot: usize, now: Instant) {
        let Some(Some(c)) = self.conns.get_mut(slot) else {
            return;
        };
        // Events are routed before the first read and after every read, so message
        // octets go to the spool chunk by chunk.
        loop {
            Self::route_events(
                &mut self.spool,
                &mut self.batch,
                &mut self.etrns,
                &self.config,
                slot,
                c,
            );
            if !self.hold_output {
                c.flush();
            }
            if !(c.readable && !c.dead && c.session.wants_read(now)) {
                break;
            }
            match c.read(&mut self.buf) {
                ReadResult::Data(n) => {
                    let ctx = context(&self.config, self.disk_low);
                    c.session.handle_input(&self.buf[..n], now, &ctx);
                }
                ReadResult::WouldBlock => c.readable = false,
                ReadResult::Closed => {
                    c.dead = true;
                    c.session.handle_eof();
                }
            }
        }
        let done = c.dead || (c.session.is_closing() && c.session.pending_output().is_empty());
        let waiting = self.batch.iter().any(|(s, _, _)| *s == slot)
            || self.etrns.iter().any(|(s, _)| *s == slot);
        if done && c.incoming.is_none() && !waiting {
            self.close(slot);
        } else {
            self.timers.set(slot, c.session.poll_timeout());
        }
    }

    /// Carries out what a session asked of the spool.
    fn route_events(
        spool: &mut Spool,
        batch: &mut Vec<(usize, Incoming, Box<Envelope>)>,
        etrns: &mut Vec<(usize, EtrnTarget)>,
        config: &Config,
        slot: usize,
        c: &mut Conn,
    ) {
        while let Some(ev) = c.session.poll_event() {
            match ev {
                Event::Etrn(t) => etrns.push((slot, t)),
                Event::MessageStart(env) => match spool.begin(&env) {
                    Ok(mut inc) => {
                        let id = inc.id.to_string();
                        let single = match env.recipients.as_slice() {
                            [one] => Some(one.address.to_string()),
                            _ => None,
                        };
                        let header = trace::received(&TraceInfo {
                            helo: &env.helo,
                            client: c.ip,
                            hostname: &config.main.hostname,
                            protocol: &env.protocol,
                            id: &id,
                            single_rcpt: single,
                            unix_time: env.arrival,
                        });
                        inc.write(header.as_bytes());
                        log::info!(
                            "{} smtp receiving session={:08x} from={} nrcpt={}",
                            id,
                            c.session.id(),
                            crate::logging::sanitize(crate::smtp::fmt_path(&env.sender).as_bytes()),
                            env.recipients.len()
                        );
                        c.incoming = Some(inc);
                        c.envelope = Some(env);
                    }
                    Err(e) => {
                        log::error!("spool begin-failed error=\"{e}\"");
                        c.spool_error = Some(e);
                    }
                },
                Event::MessageData(d) => {
                    if let Some(inc) = c.incoming.as_mut() {
                        inc.write(&d);
                    }
                }
                Event::MessageAbort => {
                    c.spool_error = None;
                    c.envelope = None;
                    if let Some(inc) = c.incoming.take() {
                        spool.abort(inc);
                    }
                }
                Event::MessageEnd => match (c.incoming.take(), c.envelope.take()) {
                    (Some(inc), Some(env)) => batch.push((slot, inc, env)),
                    _ => {
                        // The spool could not even start this message.
                        let now = Instant::now();
                        let e = c
                            .spool_error
                            .take()
                            .unwrap_or_else(|| crate::spool::SpoolError {
                                op: "begin",
                                path: spool.root().to_path_buf(),
                                err: io::Error::other("no queue file"),
                            });
                        let ctx = context(config, false);
                        c.session.handle_commit(Err(&e), now, &ctx);
                    }
                },
            }
        }
    }

    /// Commits the messages that ended in this turn, then answers their sessions.
    fn commit(&mut self, now: Instant) {
        while !self.batch.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            let slots: Vec<usize> = batch.iter().map(|(s, _, _)| *s).collect();
            let sizes: Vec<u64> = batch.iter().map(|(_, i, _)| i.len()).collect();
            let mut envs = Vec::with_capacity(batch.len());
            let mut incs = Vec::with_capacity(batch.len());
            for (_, i, e) in batch {
                incs.push(i);
                envs.push(e);
            }
            let results = self.spool.commit(incs);
            for (((slot, result), size), env) in slots.into_iter().zip(results).zip(sizes).zip(envs)
            {
                if let Ok(id) = &result {
                    self.sched.add_message(*id, &env, &[], unix_now());
                }
                let Some(Some(c)) = self.conns.get_mut(slot) else {
                    continue;
                };
                match &result {
                    Ok(id) => log::info!(
                        "{} smtp queued session={:08x} client={} size={}",
                        id,
                        c.session.id(),
                        c.ip,
                        size
                    ),
                    Err(e) => log::error!(
                        "smtp queue-failed session={:08x} error=\"{}\"",
                        c.session.id(),
                        e
                    ),
                }
                let ctx = context(&self.config, self.disk_low);
                c.session.handle_commit(result.as_ref().copied(), now, &ctx);
                self.service(slot, now);
            }
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if let Some(inc) = c.incoming.take() {
            self.spool.abort(inc);
        }
        let _ = self.poll.registry().deregister(&mut c.stream);
        if let Some(n) = self.per_ip.get_mut(&c.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&c.ip);
            }
        }
        self.live -= 1;
        self.timers.set(slot, None);
        log::info!(
            "{:08x} smtp disconnect address={} messages={}",
            c.session.id(),
            c.session.client(),
            c.session.accepted
        );
        self.freed_this_turn.push(slot);
    }

    fn shutdown(&mut self) {
        self.abandon_deliveries();
        let host = self.config.main.hostname.clone();
        for slot in 0..self.conns.len() {
            if let Some(c) = self.conns[slot].as_mut() {
                c.session.shutdown(&host);
                while let Some(ev) = c.session.poll_event() {
                    if let Event::MessageAbort = ev {
                        if let Some(inc) = c.incoming.take() {
                            self.spool.abort(inc);
                        }
                    }
                }
                c.flush();
                self.close(slot);
            }
        }
        log::info!("daemon stopped");
    }
}
