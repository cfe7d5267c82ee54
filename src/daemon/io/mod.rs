//! The daemon's I/O layer: every descriptor it holds and the only place in the
//! daemon that talks to the operating system (`crate::sys`). The components in
//! `daemon/` decide; what they decide to open, spawn, reap or signal goes through
//! here.

pub mod conn;
pub mod dns_io;
pub(super) mod timers;
pub mod transport;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Interest, Token};

use crate::config::Config;
use conn::Conns;
use dns_io::DnsIo;

/// Every descriptor of the daemon and the means to move bytes through them.
pub(crate) struct Io {
    /// The poller's registry (the poller itself is the loop's).
    pub(in crate::daemon) registry: mio::Registry,
    /// Listeners by token offset, with the LISTEN entry each came from; a slot is
    /// emptied when a reload removes its address (tokens stay stable).
    pub(in crate::daemon) listeners: Vec<Option<(SocketAddr, TcpListener)>>,
    /// What each listener serves (same index as `listeners`).
    pub(in crate::daemon) listener_kinds: Vec<crate::vocab::ListenKind>,
    /// Every connection: accepted clients, deliveries, DNS over TCP.
    pub(in crate::daemon) conns: Conns,
    pub(in crate::daemon) signals: crate::sys::SignalPipe,
    pub(in crate::daemon) buf: Vec<u8>,
    /// A descriptor held in reserve to refuse clients cleanly when out of them.
    pub(in crate::daemon) spare_fd: Option<std::fs::File>,
    pub(in crate::daemon) dns_io: DnsIo,
    pub(in crate::daemon) listening: Vec<SocketAddr>,
    /// The privileged helper, when the daemon was started as root (local delivery
    /// goes through it, as the recipient); `None` while it is started again.
    pub(in crate::daemon) helper:
        Option<crate::local::helper::Helper<(crate::sched::JobId, crate::sched::RcptRef)>>,
    /// The supervisor, which starts the helpers again when they die.
    pub(in crate::daemon) supervisor: Option<crate::local::supervisor::Supervisor>,
    /// The wake-up socket of `etrnd sendmail`.
    pub(in crate::daemon) notify: Option<mio::net::UnixDatagram>,
    /// The control socket (`etrnd flush`, `mailq`, `queue`, `link`, `atrn`).
    pub(in crate::daemon) control: super::control::Control,
    /// The server's TLS configuration, when a certificate is loaded.
    pub(in crate::daemon) tls_server: Option<transport::ServerTls>,
    /// The auth helper.
    pub(in crate::daemon) guard: Option<crate::auth::guard::Guard>,
    /// CA roots for `verify`/`secure`, read at first use (and again after SIGHUP).
    #[cfg(feature = "tls")]
    pub(in crate::daemon) tls_roots: Option<std::sync::Arc<rustls::RootCertStore>>,
}

impl Io {
    /// The I/O of a new daemon: the signal pipe installed and registered as
    /// `signal`, the bound listeners registered from token `first_listener` on.
    pub(super) fn open(
        poll: &mio::Poll,
        config: &Config,
        listeners: Vec<TcpListener>,
        (signal, first_listener): (Token, usize),
    ) -> io::Result<Io> {
        let registry = poll.registry().try_clone()?;
        let signals = crate::sys::SignalPipe::install()?;
        registry.register(&mut SourceFd(&signals.fd()), signal, Interest::READABLE)?;
        let mut listeners = listeners;
        let mut listening = Vec::new();
        for (i, l) in listeners.iter_mut().enumerate() {
            registry.register(l, Token(first_listener + i), Interest::READABLE)?;
            let addr = l.local_addr()?;
            log::info!("smtp listening address={addr}");
            listening.push(addr);
        }
        Ok(Io {
            registry,
            listener_kinds: config.main.listen_kinds.clone(),
            listeners: config
                .main
                .listen
                .iter()
                .copied()
                .zip(listeners)
                .map(Some)
                .collect(),
            conns: Conns::default(),
            signals,
            buf: vec![0; 64 * 1024],
            spare_fd: std::fs::File::open("/dev/null").ok(),
            dns_io: DnsIo::default(),
            listening,
            helper: None,
            supervisor: None,
            notify: None,
            control: super::control::Control::default(),
            tls_server: None,
            guard: None,
            #[cfg(feature = "tls")]
            tls_roots: None,
        })
    }
}

/// The turn's reading of the clock, and its nonce.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// Wall-clock seconds of this turn's clock reading.
    pub(in crate::daemon) unix: u64,
    /// The operating system's randomness, new every turn (`Context::nonce`).
    pub(in crate::daemon) nonce: u64,
}

/// The clock the loop reads once a turn, and the randomness that comes with each
/// reading (drawn from the operating system 512 octets at a time: one system call
/// per 64 turns).
pub(crate) struct Clock {
    now: Now,
    pool: [u8; 512],
    used: usize,
}

impl Default for Clock {
    fn default() -> Self {
        let mut c = Clock {
            now: Now { unix: 0, nonce: 0 },
            pool: [0; 512],
            used: 512,
        };
        c.tick();
        c
    }
}

impl Clock {
    /// Reads the clock: the one reading of a loop turn. The `Instant` drives every
    /// session, connection and delivery; [`Now::unix`], the wall-clock seconds of the same
    /// moment, goes to the scheduler and the spool (whose times are stored).
    pub(super) fn tick(&mut self) -> std::time::Instant {
        let now = std::time::Instant::now();
        self.now.unix = crate::vocab::date::unix_now();
        if self.used + 8 > self.pool.len() {
            crate::sys::fill_random(&mut self.pool);
            self.used = 0;
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&self.pool[self.used..self.used + 8]);
        self.used += 8;
        self.now.nonce = u64::from_ne_bytes(n);
        now
    }

    /// This turn's reading.
    pub(super) fn now(&self) -> Now {
        self.now
    }
}

/// A listener on `addr` (IPv6 ones v6-only, see [`crate::sys::listen`]).
pub(super) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
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

/// A random number from the operating system (seeds and nonces).
pub(super) fn random() -> u64 {
    crate::sys::random_u64()
}

/// Fills `buf` with the operating system's randomness (DNS transaction ids).
pub(super) fn fill_random(buf: &mut [u8]) {
    crate::sys::fill_random(buf)
}

/// The addresses of this host's interfaces (never to be connected to as a next
/// hop).
pub(super) fn interfaces() -> Vec<IpAddr> {
    crate::sys::interface_addrs()
}

/// A non-blocking connection to `addr` from `from` (`SMTP_BIND`), its send buffer
/// `sndbuf` octets when given; it completes later (writable, then `take_error`).
pub(super) fn connect(
    addr: SocketAddr,
    from: Option<IpAddr>,
    sndbuf: Option<u32>,
) -> io::Result<TcpStream> {
    let stream = crate::sys::connect_from(addr, from)?;
    if let Some(n) = sndbuf {
        use std::os::fd::AsRawFd;
        crate::sys::set_sndbuf(stream.as_raw_fd(), n)?;
    }
    Ok(TcpStream::from_std(stream))
}

/// Octets free for us on the file system of `path`.
pub(super) fn free_space(path: &Path) -> io::Result<u64> {
    crate::sys::free_space(path)
}

/// The path of our own program (the `mailq` listing child runs it).
pub(super) fn exe() -> io::Result<std::path::PathBuf> {
    crate::sys::exe()
}

/// The uid the kernel gives for the peer of a Unix stream socket.
pub(super) fn peer_uid(s: &impl std::os::fd::AsRawFd) -> io::Result<u32> {
    crate::sys::peer_uid(s.as_raw_fd())
}

/// Our effective uid.
pub(super) fn euid() -> u32 {
    crate::sys::euid()
}

/// The account name of `uid`, if it has one.
pub(super) fn user_name(uid: u32) -> Option<String> {
    crate::sys::user_name(uid)
}

/// One message from a Unix stream socket, with the descriptor it carried (if any).
pub(super) fn recv_with_fd(
    s: &impl std::os::fd::AsRawFd,
    buf: &mut [u8],
) -> io::Result<(
    usize,
    Option<std::path::PathBuf>,
    Option<std::os::fd::OwnedFd>,
)> {
    crate::sys::recv_with_fd(s.as_raw_fd(), buf)
}

/// Children the daemon starts (dial commands, `mailq` listings): started in a
/// session of their own, learnt of through SIGCHLD on the signal pipe.
pub(super) mod children {
    use std::io;
    use std::os::fd::RawFd;

    /// Starts `argv` with `env` added, its output on `out` (or /dev/null).
    pub fn spawn(argv: &[String], env: &[(&str, &str)], out: Option<RawFd>) -> io::Result<i32> {
        crate::sys::spawn_command_to(argv, env, out)
    }

    /// Reaps `pid` if it ended: `None` while it runs, `Some(code)` once it has
    /// (`Some(None)` for a death by signal).
    pub fn try_reap(pid: i32) -> Option<Option<i32>> {
        crate::sys::try_reap(pid)
    }

    /// Asks `pid` and its session to stop (SIGTERM); reap it later.
    pub fn terminate(pid: i32) {
        crate::sys::terminate(pid)
    }

    /// Kills `pid` and its session (SIGKILL) without waiting: a child stuck in the
    /// kernel must not stop the loop; reap it later with [`try_reap`].
    pub fn kill(pid: i32) {
        crate::sys::signal_session(pid, libc::SIGKILL)
    }

    /// Kills `pid` and reaps it (waiting a second at most).
    pub fn kill_and_reap(pid: i32) {
        let _ = crate::sys::signal(pid, libc::SIGKILL);
        crate::sys::wait_child(pid, std::time::Duration::from_secs(1));
    }
}
