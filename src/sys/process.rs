//! Processes: the delivery helper's fork, its socket, becoming a recipient, reaping a child. Part of `sys`: every `unsafe` block says why it is sound.

use std::io;
use std::os::fd::RawFd;

/// A connected pair of Unix stream sockets (the daemon's line to its helper).
pub fn socketpair() -> io::Result<(
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixStream,
)> {
    std::os::unix::net::UnixStream::pair()
}

/// What `fork` returned.
pub enum Forked {
    /// In the child.
    Child,
    /// In the parent: the child's pid.
    Parent(i32),
}

/// Forks. The daemon has one thread (DESIGN.md §2), so the child's copy of the
/// process is complete.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the process is single-threaded (no threads are ever started), so fork
    // is sound; the child only runs our code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Ends a forked child at once, skipping destructors of state it shares with its
/// parent.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Closes every descriptor above 2 except `keep` (a forked helper must hold nothing
/// of the daemon's: listeners, the pid lock, the spool's files).
pub fn close_other_fds(keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd > 2).collect();
    keep.sort_unstable();
    keep.dedup();
    // The gaps between the descriptors kept, closed a range at a time where the
    // system can (close_range(2) on Linux 5.9 and later); else one by one up to the
    // descriptor limit.
    let mut lo: RawFd = 3;
    for &k in keep.iter().chain(std::iter::once(&RawFd::MAX)) {
        if k > lo {
            close_range(lo, k - 1);
        }
        lo = k.saturating_add(1);
    }
}

/// Closes descriptors `lo..=hi`.
fn close_range(lo: RawFd, hi: RawFd) {
    // Everything from `lo` on: closefrom(2), one call, on the BSDs.
    #[cfg(any(
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    ))]
    if hi >= RawFd::MAX - 1 {
        // SAFETY: closes only descriptors of this process at or above `lo`; the
        // caller keeps nothing there.
        #[allow(clippy::unit_arg, clippy::let_unit_value)]
        let _ = unsafe { libc::closefrom(lo) };
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range only closes descriptors of this process; nothing of
        // ours refers to the ones closed (the caller keeps what it uses).
        let rc = unsafe { libc::syscall(libc::SYS_close_range, lo as u32, hi as u32, 0u32) };
        if rc == 0 {
            return;
        }
    }
    // SAFETY: getrlimit fills a plain struct.
    let max = unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 {
            rl.rlim_cur.min(1 << 20) as RawFd
        } else {
            1024
        }
    };
    for fd in lo..=hi.min(max) {
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
}

/// Becomes `uid` with primary group `gid` and no other groups, for good (a delivery
/// child acting as the recipient).
pub fn become_user(uid: u32, gid: u32) -> io::Result<()> {
    if uid == 0 {
        return Ok(()); // root's own mailbox: nothing to give up
    }
    // SAFETY: setgroups with an empty list, while still root.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    super::set_ids(uid, gid)
}

/// Waits for child `pid`, for at most `limit`; a child still running then is killed.
/// Returns its exit code (`None` if it was killed or died of a signal).
pub fn wait_child(pid: i32, limit: std::time::Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            return libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        }
        if rc < 0 {
            return None;
        }
        if std::time::Instant::now() >= deadline {
            // SAFETY: signalling and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// A forked helper's signals: the daemon's handlers write to its self-pipe, whose
/// number the helper may have reused for something else, so they are replaced —
/// SIGHUP, SIGINT and SIGUSR1 ignored (meant for the daemon, which reloads or
/// flushes; the helper goes when the daemon does), SIGTERM back to its default.
pub fn helper_signals() {
    // SAFETY: setting dispositions to SIG_IGN or SIG_DFL is always sound.
    unsafe {
        for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGUSR1] {
            libc::signal(sig, libc::SIG_IGN);
        }
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
}

/// Forks a helper process that serves `serve` on its end of a new socketpair, with
/// the helper's signal dispositions and every other descriptor closed; the child
/// exits when `serve` returns. The parent gets its end and the child's pid.
pub fn fork_server(
    serve: impl FnOnce(std::os::unix::net::UnixStream),
) -> io::Result<(std::os::unix::net::UnixStream, i32)> {
    use std::os::fd::AsRawFd;
    let (ours, theirs) = socketpair()?;
    match fork()? {
        Forked::Child => {
            drop(ours);
            helper_signals();
            close_other_fds(&[theirs.as_raw_fd()]);
            serve(theirs);
            exit_child(0)
        }
        Forked::Parent(pid) => {
            drop(theirs);
            Ok((ours, pid))
        }
    }
}

/// Runs `argv[0]` (an absolute path) with `argv[1..]`, our environment plus `env`,
/// stdin and stdout and stderr on /dev/null, in a session of its own (the daemon's
/// signals never reach it), without a shell. Returns its pid; reap it with
/// [`try_reap`]. A program that cannot be executed exits 127.
pub fn spawn_command(argv: &[String], env: &[(&str, &str)]) -> io::Result<i32> {
    spawn_command_to(argv, env, None)
}

/// [`spawn_command`] with stdout and stderr on `out` (a descriptor the caller keeps
/// and closes) instead of /dev/null.
pub fn spawn_command_to(
    argv: &[String],
    env: &[(&str, &str)],
    out: Option<RawFd>,
) -> io::Result<i32> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a command word");
    let args = command_words(argv)?;
    let mut vars: Vec<CString> = Vec::new();
    for (k, v) in std::env::vars_os() {
        if env.iter().any(|(n, _)| k.as_bytes() == n.as_bytes()) {
            continue;
        }
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        if let Ok(c) = CString::new(kv) {
            vars.push(c);
        }
    }
    for (k, v) in env {
        vars.push(CString::new(format!("{k}={v}")).map_err(|_| bad())?);
    }
    let mut argp: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argp.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = vars.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    use std::os::fd::AsRawFd;
    let nfd = null.as_raw_fd();
    match fork()? {
        Forked::Child => {
            // Only async-signal-safe calls from here: everything was prepared above.
            // SAFETY: dup2 on descriptors that live in this process.
            unsafe {
                libc::dup2(nfd, 0);
                for fd in 1..3 {
                    libc::dup2(out.unwrap_or(nfd), fd);
                }
            }
            new_session_default_signals();
            close_other_fds(&[]);
            // SAFETY: argp and envp are NUL-terminated arrays of C strings that
            // outlive the call (execve only returns on failure).
            unsafe {
                libc::execve(argp[0], argp.as_ptr(), envp.as_ptr());
            }
            exit_child(127)
        }
        Forked::Parent(pid) => Ok(pid),
    }
}

/// A command's words as C strings (at least one, none with a NUL).
fn command_words(argv: &[String]) -> io::Result<Vec<std::ffi::CString>> {
    let args: Vec<std::ffi::CString> = argv
        .iter()
        .map(|a| std::ffi::CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a command word"))?;
    if args.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no command"));
    }
    Ok(args)
}

/// In a forked child: a session of its own (so it and what it starts can be killed
/// together) and default signal dispositions.
pub fn new_session() {
    new_session_default_signals();
}

/// In a child about to exec: a session of its own, and the signals the daemon
/// handles back to their defaults (async-signal-safe calls only).
fn new_session_default_signals() {
    // SAFETY: setsid and signal are async-signal-safe and act on this process only.
    unsafe {
        libc::setsid();
        for sig in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGUSR1,
            libc::SIGPIPE,
            libc::SIGCHLD,
            libc::SIGALRM,
        ] {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// Reaps child `pid` if it ended: `None` while it runs, `Some(Some(code))` for an
/// exit, `Some(None)` for a death by signal (or a child that is gone).
pub fn try_reap(pid: i32) -> Option<Option<i32>> {
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid status pointer.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    match rc {
        0 => None,
        r if r == pid => Some(libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))),
        _ => Some(None),
    }
}

/// Sends SIGTERM to child `pid` and its session (reap it later with [`try_reap`]).
pub fn terminate(pid: i32) {
    signal_session(pid, libc::SIGTERM)
}

/// Sends `sig` to child `pid` and its session (reaped later, by the caller).
pub fn signal_session(pid: i32, sig: i32) {
    // SAFETY: signalling our own child's process group (setsid made it its leader).
    unsafe {
        libc::kill(-pid, sig);
        libc::kill(pid, sig);
    }
}

/// Starts `argv[0]` (an absolute path) with exactly the environment `env`, in `dir`,
/// in a session of its own, its stdin the read end of one new pipe and its stdout
/// and stderr the write end of another: a command that is fed a message and whose
/// output is read (alias `|command` deliveries). Returns the pid, the end to write
/// its input to and the end to read its output from, both close-on-exec.
pub fn spawn_piped(
    argv: &[String],
    env: &[(String, String)],
    dir: &std::path::Path,
) -> io::Result<(i32, std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a command word");
    let args = command_words(argv)?;
    let vars: Vec<CString> = env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")).map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let cdir = CString::new(dir.as_os_str().as_bytes()).map_err(|_| bad())?;
    let mut argp: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argp.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = vars.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let pipe = || -> io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 fills two descriptors we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both are fresh descriptors owned by nothing else.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    };
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    match fork()? {
        Forked::Child => {
            // Only async-signal-safe calls from here: everything was prepared above.
            // SAFETY: dup2 on descriptors that live in this process.
            unsafe {
                libc::dup2(in_r.as_raw_fd(), 0);
                libc::dup2(out_w.as_raw_fd(), 1);
                libc::dup2(out_w.as_raw_fd(), 2);
            }
            new_session_default_signals();
            // SAFETY: chdir with a NUL-terminated path that lives in this process.
            unsafe {
                if libc::chdir(cdir.as_ptr()) != 0 {
                    libc::chdir(c"/".as_ptr());
                }
            }
            close_other_fds(&[]);
            // SAFETY: argp and envp are NUL-terminated arrays of C strings that
            // outlive the call (execve only returns on failure).
            unsafe {
                libc::execve(argp[0], argp.as_ptr(), envp.as_ptr());
            }
            exit_child(127)
        }
        Forked::Parent(pid) => Ok((pid, in_w, out_r)),
    }
}

/// Waits until one of `fds` (descriptor, `POLLIN` or `POLLOUT`) is ready or
/// `timeout` passes; the events each got (0: none).
pub fn poll_fds(fds: &[(RawFd, i16)], timeout: std::time::Duration) -> io::Result<Vec<i16>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: poll on a valid array of pollfd of the length given.
    let rc = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![0; fds.len()]);
        }
        return Err(e);
    }
    Ok(p.iter().map(|x| x.revents).collect())
}

/// Reaps every child that has ended (the supervisor's helpers), without waiting.
pub fn reap_any() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid for any child of ours, with a valid status pointer.
        let rc = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if rc <= 0 {
            return;
        }
    }
}

/// Kills child `pid` and its session with SIGKILL, then reaps it.
pub fn kill_session(pid: i32) {
    signal_session(pid, libc::SIGKILL);
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// Makes a descriptor non-blocking.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Reaps child `pid`, waiting for it: its exit code, or `None` for a signal.
pub fn reap(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid status pointer.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    (rc == pid && libc::WIFEXITED(status)).then(|| libc::WEXITSTATUS(status))
}

/// Whether descriptor `fd` is a terminal.
pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty on any descriptor number is sound.
    unsafe { libc::isatty(fd) == 1 }
}

/// Turns a terminal's echo off or on; returns whether it was on.
pub fn set_echo(fd: RawFd, on: bool) -> io::Result<bool> {
    // SAFETY: termios is plain old data; tcgetattr fills it, tcsetattr reads it.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        let was = t.c_lflag & libc::ECHO != 0;
        if on {
            t.c_lflag |= libc::ECHO;
        } else {
            t.c_lflag &= !libc::ECHO;
        }
        if libc::tcsetattr(fd, libc::TCSAFLUSH, &t) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(was)
    }
}
