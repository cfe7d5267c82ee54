//! The only module with `unsafe` and raw `libc` calls: host name, user lookup, free
//! disk space, the signal self-pipe, detaching, the pid file lock and the file
//! descriptor limit; `at` (openat and friends) and `process` (the helper's fork) hold the
//! rest. Every `unsafe` block says why it is sound.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

/// `gethostname()`, never DNS. Falls back to `localhost`.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(s) if !s.is_empty() => s.to_ascii_lowercase(),
        _ => "localhost".into(),
    }
}

/// `(uid, gid, home, name)` of the first passwd-file account `pick` selects (what
/// `getpwnam`/`getpwuid` would return from the `files` source), never through NSS.
fn passwd(pick: impl FnMut(&pwfile::PwEntry) -> bool) -> Option<(u32, u32, String, String)> {
    pwfile::find_account(pick).map(|e| (e.uid, e.gid, e.home, e.name))
}

/// Every account of the passwd file, read directly (not through NSS: a static
/// binary has no NSS modules, and a directory server would block the loop):
/// `(name, uid, gid, home)`. For a snapshot taken at start and reload, never on a loop
/// path. Sources other than the files that `nsswitch.conf` names are logged, once
/// per snapshot: accounts only they hold are not seen.
pub fn all_accounts() -> Vec<(String, u32, u32, String)> {
    let others = pwfile::other_sources("passwd");
    if !others.is_empty() {
        log::warn!(
            "accounts files-only file={} other-sources=\"{}\"",
            pwfile::NSSWITCH,
            others.join(" ")
        );
    }
    pwfile::accounts(MAX_ACCOUNTS)
        .into_iter()
        .map(|e| (e.name, e.uid, e.gid, e.home))
        .collect()
}

/// Most accounts a snapshot holds (a directory bigger than this is cut short).
pub const MAX_ACCOUNTS: usize = 1_000_000;

/// Looks up a system account by name: `(uid, gid, home)`.
pub fn user(name: &str) -> Option<(u32, u32, String)> {
    passwd(|e| e.name == name).map(|(u, g, h, _)| (u, g, h))
}

/// Whether a system account of that name exists.
pub fn user_exists(name: &str) -> bool {
    user(name).is_some()
}

/// Whether the process runs as root (and so may give files to their owners).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Gives an open file to `uid:gid`.
pub fn chown_fd(f: &File, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: fchown on an fd we own.
    if unsafe { libc::fchown(f.as_raw_fd(), uid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes a POSIX (fcntl) write lock on the whole file without waiting: `Ok(false)`
/// when someone else holds it. Mail readers on BSD and Linux honour this lock.
pub fn try_lock(f: &File) -> io::Result<bool> {
    // SAFETY: flock is plain old data; zeroed is valid; the fd is ours.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: F_SETLK with a valid struct pointer.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EAGAIN) => Ok(false),
        _ => Err(e),
    }
}

/// Releases a lock taken with [`try_lock`].
pub fn unlock(f: &File) {
    // SAFETY: as in try_lock.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_UNLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: F_SETLK with a valid struct pointer on our fd.
    unsafe {
        libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl);
    }
}

/// Whether the effective user may write to `p` (access(2) with W_OK|X_OK).
pub fn writable(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: c is NUL-terminated; access has no other preconditions.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Changes the owner of a path (spool folders when dropping privileges).
pub fn chown_path(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    // lchown: a link is changed itself, what it points to never.
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
}

/// Drops root privileges for good: supplementary groups, then gid, then uid.
pub fn drop_privileges(user: &str) -> io::Result<()> {
    let (uid, gid, _) = self::user(user)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no user '{user}'")))?;
    // What initgroups(3) would set, from the group file (no NSS).
    let groups: Vec<libc::gid_t> = pwfile::group_list(&pwfile::groups(1 << 20), user, gid, 1024)
        .into_iter()
        .map(|g| g as libc::gid_t)
        .collect();
    // SAFETY: setgroups with a valid pointer to `groups.len()` gids, while still root.
    if unsafe { libc::setgroups(groups.len() as _, groups.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    set_ids(uid, gid)
}

/// The last steps of giving up root, groups already set: gid, then uid, then a check
/// that root cannot be regained.
pub(super) fn set_ids(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscalls with valid arguments; order matters (gid while still
    // root, uid last), and each result is checked.
    unsafe {
        if libc::setgid(gid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setuid(uid) != 0 {
            return Err(io::Error::last_os_error());
        }
        // Root must be gone for good.
        if libc::setuid(0) == 0 {
            return Err(io::Error::other("could regain root after setuid"));
        }
    }
    Ok(())
}

/// Sends `sig` to process `pid`.
pub fn signal(pid: i32, sig: i32) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill has no memory-safety preconditions; pid > 0 names one process.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The real uid of the process.
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// The name of the account running this process.
pub fn current_user() -> Option<String> {
    // SAFETY: getuid has no preconditions.
    user_name(unsafe { libc::getuid() })
}

/// The name of the account with this uid.
pub fn user_name(uid: u32) -> Option<String> {
    passwd(|e| e.uid == uid).map(|(_, _, _, name)| name)
}

/// Starts writing a file's dirty pages to disk without waiting (Linux
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that the writes of a batch are in
/// flight together before the first `fsync`. Only a hint: `fsync` stays the promise,
/// so errors are ignored here. Elsewhere a no-op.
pub fn start_writeback(f: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a plain system call on a descriptor we own.
        unsafe {
            libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = f;
}

/// Octets available to unprivileged users on the file system holding `path`.
pub fn free_space(path: &Path) -> io::Result<u64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs is plain old data; zeroed is a valid initial value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated and st is a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; fd is the pipe's non-blocking write
        // end, and a full pipe just drops the byte (a signal is already pending).
        unsafe {
            libc::write(fd, (&b as *const u8).cast(), 1);
        }
    }
}

/// The read end of the signal self-pipe: each byte is a signal number.
pub struct SignalPipe {
    read: OwnedFd,
    _write: OwnedFd,
}

impl SignalPipe {
    /// Installs handlers for SIGHUP, SIGTERM, SIGINT, SIGUSR1 and SIGCHLD (a child's
    /// exit is an event like any other: nothing polls for it), and ignores SIGPIPE.
    pub fn install() -> io::Result<SignalPipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: fds is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        SIGNAL_PIPE.store(write.as_raw_fd(), Ordering::Relaxed);
        for sig in [
            libc::SIGHUP,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGUSR1,
            libc::SIGCHLD,
        ] {
            // SAFETY: sigaction is plain old data; the handler only calls write(2).
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                // Children that stop or continue are not news.
                sa.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        // SAFETY: setting SIGPIPE to SIG_IGN is always sound; writes then get EPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        Ok(SignalPipe {
            read,
            _write: write,
        })
    }

    /// The fd to register with the poller.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Reads every pending signal number.
    pub fn drain(&self) -> Vec<i32> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: buf is valid for its length; the fd is non-blocking.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            out.extend(buf[..n as usize].iter().map(|&b| i32::from(b)));
        }
        out
    }
}

static READY_FD: AtomicI32 = AtomicI32::new(-1);

/// Detaches from the terminal: fork, setsid, fork, chdir `/`, stdio to /dev/null.
/// Returns in the grandchild only. The original process waits until the daemon calls
/// [`daemon_ready`] (exit 0) or [`daemon_failed`] (that exit code and message), so
/// rc.d sees whether the daemon really started.
pub fn daemonize() -> io::Result<()> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid array for pipe to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for step in 0..2 {
        // SAFETY: the process is single-threaded here (no threads are ever started),
        // so fork is sound.
        match unsafe { libc::fork() } {
            -1 => return Err(io::Error::last_os_error()),
            0 => {}
            _ if step == 0 => {
                // The original process: wait for the daemon's word, then exit.
                // SAFETY: closing our copy of the write end; reading the read end.
                unsafe { libc::close(fds[1]) };
                let mut r = unsafe { File::from_raw_fd(fds[0]) };
                let mut buf = Vec::new();
                let _ = io::Read::read_to_end(&mut r, &mut buf);
                let code = match buf.first() {
                    Some(0) => 0,
                    Some(&c) => {
                        let _ = io::stderr().write_all(&buf[1..]);
                        i32::from(c)
                    }
                    None => {
                        let _ = io::stderr().write_all(b"etrnd: the daemon died while starting\n");
                        71
                    }
                };
                // SAFETY: _exit skips destructors of state shared with the child.
                unsafe { libc::_exit(code) }
            }
            // SAFETY: the intermediate child exits at once.
            _ => unsafe { libc::_exit(0) },
        }
        // SAFETY: setsid has no memory-safety preconditions.
        if step == 0 && unsafe { libc::setsid() } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: the grandchild keeps only the write end.
    unsafe { libc::close(fds[0]) };
    READY_FD.store(fds[1], Ordering::Relaxed);
    std::env::set_current_dir("/")?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors; null stays open for the call.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn tell_parent(bytes: &[u8]) {
    let fd = READY_FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: fd is the pipe's write end, owned here and closed once.
        let mut f = unsafe { File::from_raw_fd(fd) };
        let _ = f.write_all(bytes);
    }
}

/// The detached daemon started: the waiting parent exits 0.
pub fn daemon_ready() {
    tell_parent(&[0]);
}

/// The detached daemon cannot start: the waiting parent prints `msg` and exits
/// with `code`.
pub fn daemon_failed(code: i32, msg: &str) {
    let mut b = vec![code.clamp(1, 255) as u8];
    b.extend_from_slice(format!("etrnd: {msg}\n").as_bytes());
    tell_parent(&b);
}

/// Raises the soft limit on open files to the hard limit (1,000 sessions need more
/// than the usual 1,024 descriptors). Returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: rlimit is plain old data and the pointers are valid for the calls.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = rl.rlim_max.min(65_536);
            let new = libc::rlimit {
                rlim_cur: want.max(rl.rlim_cur),
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                return new.rlim_cur as u64;
            }
        }
        rl.rlim_cur as u64
    }
}

/// Fills `buf` from the operating system's random source (`getrandom(2)` on Linux,
/// `arc4random_buf(3)` on the BSDs): DNS transaction ids and seeds that an attacker
/// who sees our queries must not be able to predict. Never blocks after boot.
pub fn fill_random(buf: &mut [u8]) {
    #[cfg(target_os = "linux")]
    {
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: the pointer and length describe `rest`, which the kernel fills.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            if n > 0 {
                done += n as usize;
            } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                // No getrandom (a kernel older than 3.17): the device instead.
                use std::io::Read;
                match File::open("/dev/urandom").and_then(|mut f| f.read_exact(rest)) {
                    Ok(()) => return,
                    Err(e) => panic!("no random source: {e}"),
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: the pointer and length describe `buf`; arc4random_buf cannot fail.
        unsafe { libc::arc4random_buf(buf.as_mut_ptr().cast(), buf.len()) };
    }
}

/// A random 64-bit number from [`fill_random`].
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    fill_random(&mut b);
    u64::from_ne_bytes(b)
}

/// Sets a socket's send buffer (`SO_SNDBUF`; the smtp transport's `-w`).
pub fn set_sndbuf(fd: RawFd, octets: u32) -> io::Result<()> {
    let v = libc::c_int::try_from(octets).unwrap_or(libc::c_int::MAX);
    // SAFETY: `v` outlives the call and its size is passed with it; a bad fd is an error.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A non-blocking, close-on-exec TCP socket of `addr`'s family.
pub(super) fn tcp_socket(addr: std::net::SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: plain socket(2); the descriptor is owned by `sock` at once.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(sock)
}

/// bind(2) of `sock` to `addr`.
fn bind(sock: &OwnedFd, addr: std::net::SocketAddr) -> io::Result<()> {
    let (ss, len) = sockaddr(addr);
    // SAFETY: `ss` holds a sockaddr of the family with length `len`.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc != 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `addr` as a sockaddr of its family, and its length.
fn sockaddr(addr: std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid; it is then filled as the
    // family's own structure, which fits in it, and the length is that family's.
    unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let len = match addr {
            std::net::SocketAddr::V4(a) => {
                let sin =
                    &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                std::mem::size_of::<libc::sockaddr_in>()
            }
            std::net::SocketAddr::V6(a) => {
                let sin6 =
                    &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_scope_id = a.scope_id();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        (ss, len as libc::socklen_t)
    }
}

/// A non-blocking connect to `addr`, from the source address `from` when one is
/// given (`SMTP_BIND`); the connection completes later (writable, then
/// `take_error`).
pub fn connect_from(
    addr: std::net::SocketAddr,
    from: Option<std::net::IpAddr>,
) -> io::Result<std::net::TcpStream> {
    let sock = tcp_socket(addr)?;
    if let Some(ip) = from {
        bind(&sock, std::net::SocketAddr::new(ip, 0))
            .map_err(|e| io::Error::new(e.kind(), format!("bind to {ip}: {e}")))?;
    }
    let (ss, len) = sockaddr(addr);
    // SAFETY: as above; a non-blocking connect returns EINPROGRESS.
    let rc = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(std::net::TcpStream::from(sock))
}

/// Waits until a non-blocking connect on `s` completes (or fails, or `timeout`
/// passes).
pub fn wait_connected(s: &std::net::TcpStream, timeout: std::time::Duration) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one pollfd, valid for the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        0 => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        _ => match s.take_error()? {
            Some(e) => Err(e),
            None => s.peer_addr().map(|_| ()),
        },
    }
}

/// A non-blocking listening socket on `addr` with `SO_REUSEADDR`; an IPv6 socket is
/// v6-only (`IPV6_V6ONLY`), so `0.0.0.0:25 [::]:25` binds on Linux as on the BSDs.
pub fn listen(addr: std::net::SocketAddr) -> io::Result<std::net::TcpListener> {
    let sock = tcp_socket(addr)?;
    let one: libc::c_int = 1;
    let set = |level, name| {
        // SAFETY: `one` outlives the call and its size is passed with it.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                level,
                name,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    set(libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    if addr.is_ipv6() {
        set(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)?;
    }
    bind(&sock, addr)?;
    // SAFETY: listen(2) on the descriptor we own.
    if unsafe { libc::listen(sock.as_raw_fd(), 1024) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::net::TcpListener::from(sock))
}

mod at;
mod crypt;
pub use crypt::crypt;
mod fdpass;
mod ifaddrs;
pub use ifaddrs::interface_addrs;
mod host;
pub use host::{boot_id, exe, local_time, remember_exe};
mod pidfile;
mod process;
pub mod pwfile;
pub use fdpass::{peer_uid, recv_with_fd, recv_with_fds, send_fd_connected, send_with_fd};
pub use pidfile::{lock_pidfile, lock_pidfile_rewrite, release_pidfile, try_flock};

pub use at::{create_at, euid, group_gid, mkdir_at, open_dir_at, rename_at, unlink_at};
pub use process::{
    become_user, close_other_fds, exit_child, fork, fork_server, helper_signals, socketpair,
    spawn_command, spawn_command_to, terminate, try_reap, wait_child, Forked,
};
pub use process::{
    is_tty, kill_session, new_session, poll_fds, reap, reap_any, set_echo, set_nonblocking,
    signal_session, spawn_piped,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_is_the_c_librarys_before_2038_and_goes_on_after() {
        for unix in [0u64, 86_399, 1_700_000_000, 2_147_483_647] {
            let t = unix as _;
            // SAFETY: as in local_time.
            let mut tm: libc::tm = unsafe { std::mem::zeroed() };
            assert!(!unsafe { libc::localtime_r(&t, &mut tm) }.is_null());
            let want = [tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec].map(|v| v as u32);
            assert_eq!(local_time(unix), want, "{unix}");
        }
        // After 2038 the seconds keep counting: one second and one day later.
        let edge = local_time(2_147_483_647);
        let next = local_time(2_147_483_648);
        assert_eq!(
            (next[3] * 60 + next[4]) % 3600,
            (edge[3] * 60 + edge[4] + 1) % 3600
        );
        let day = local_time(2_147_483_647 + 86_400);
        assert_eq!(day[2..], edge[2..]);
    }

    #[test]
    fn root_exists_and_nonsense_does_not() {
        assert!(user_exists("root"));
        assert!(!user_exists("no-such-user-etrnd-test"));
        assert!(!user_exists("nul\0inside"));
    }

    #[test]
    fn hostname_is_not_empty() {
        assert!(!hostname().is_empty());
    }

    #[test]
    fn free_space_of_tmp() {
        assert!(free_space(&std::env::temp_dir()).unwrap() > 0);
    }
}
