//! The supervisor: a small process, forked before the daemon gives up root, that
//! starts the two helpers — the delivery helper (`helper.rs`, root) and the auth
//! helper (`auth::guard`) — and starts a new one when the daemon says one died
//! (DESIGN.md §5.11). The daemon, no longer root, could not start a root helper
//! again; the supervisor can, and does nothing else.
//!
//! ```text
//!   daemon (USER)                         supervisor (root; reads nothing else)
//!     "H\n" (a delivery helper, please) -->  back-off check, fork the helper
//!     "G\n" (an auth helper)            -->  (a socketpair; the helper serves one end)
//!                      <--  "H <pid>\n" | "G <pid>\n" with the daemon's end of the
//!                           new helper's socket attached (SCM_RIGHTS)
//! ```
//!
//! What it reads from the daemon is one letter a line; what it does is bounded by a
//! back-off per kind (a helper that keeps dying is started after 1 s, 2 s, … up to
//! [`MAX_BACKOFF`]), so a daemon taken over cannot make it fork without limit. It
//! reaps its children, and exits when the daemon's socket closes (the helpers then
//! see their own sockets close and exit too). Its configuration for each helper is
//! fixed when it starts.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::auth::guard::GuardConf;
use crate::local::helper::HelperConf;

/// The longest wait before a helper that keeps dying is started again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A helper that lived at least this long before it died starts again at once.
pub const STABLE: Duration = Duration::from_secs(30);

/// Which helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The delivery helper (`H`).
    Delivery,
    /// The auth helper (`G`).
    Auth,
}

impl Kind {
    fn letter(self) -> u8 {
        match self {
            Kind::Delivery => b'H',
            Kind::Auth => b'G',
        }
    }

    fn of(letter: u8) -> Option<Kind> {
        match letter {
            b'H' => Some(Kind::Delivery),
            b'G' => Some(Kind::Auth),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Delivery => "delivery helper",
            Kind::Auth => "auth helper",
        })
    }
}

/// The back-off of one kind: when it may start next. Pure, for tests.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    last: Option<Instant>,
    failures: u32,
}

impl Backoff {
    /// A start is asked for at `now`: when it may happen, and it is counted.
    pub fn start_at(&mut self, now: Instant) -> Instant {
        let at = match self.last {
            // The first start, or after a long life: at once.
            None => now,
            Some(t) if now.saturating_duration_since(t) >= STABLE => {
                self.failures = 0;
                now
            }
            Some(t) => {
                self.failures = self.failures.saturating_add(1);
                let wait = Duration::from_secs(1u64 << self.failures.min(7).saturating_sub(1))
                    .min(MAX_BACKOFF);
                (t + wait).max(now)
            }
        };
        self.last = Some(at);
        at
    }
}

/// What the supervisor starts.
pub struct Confs {
    /// The delivery helper's, when the daemon runs as root.
    pub helper: Option<HelperConf>,
    /// The auth helper's.
    pub guard: GuardConf,
}

/// The daemon's end.
#[derive(Debug)]
pub struct Supervisor {
    sock: UnixStream,
    pid: i32,
    inbuf: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Supervisor {
    /// Forks the supervisor (before privileges are dropped).
    pub fn spawn(confs: Confs) -> io::Result<Supervisor> {
        let (sock, pid) = crate::sys::fork_server(|theirs| supervise(theirs, &confs))?;
        Ok(Supervisor {
            sock,
            pid,
            inbuf: Vec::new(),
            fds: Vec::new(),
        })
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Its socket (registered with the poller once the loop runs).
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.sock.as_raw_fd()
    }

    /// Asks for a helper of `kind`; it comes in a later [`Supervisor::read`].
    pub fn ask(&mut self, kind: Kind) -> io::Result<()> {
        self.sock.write_all(&[kind.letter(), b'\n'])
    }

    /// Asks for a helper and waits for it (at start-up, before the loop).
    pub fn start(&mut self, kind: Kind, limit: Duration) -> io::Result<(i32, UnixStream)> {
        self.ask(kind)?;
        self.sock.set_read_timeout(Some(limit))?;
        let got = loop {
            if let Some(h) = self.take()? {
                break h;
            }
            self.fill()?;
        };
        self.sock.set_read_timeout(None)?;
        match got {
            (k, pid, s) if k == kind => Ok((pid, s)),
            (k, ..) => Err(io::Error::other(format!("the supervisor sent a {k}"))),
        }
    }

    /// Reads what the supervisor sent (its socket is non-blocking once the loop
    /// runs): the helpers it started. `Err` when it is gone.
    pub fn read(&mut self) -> io::Result<Vec<(Kind, i32, UnixStream)>> {
        let mut out = Vec::new();
        loop {
            while let Some(h) = self.take()? {
                out.push(h);
            }
            match self.fill() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes the socket non-blocking (for the loop).
    pub fn set_nonblocking(&self) -> io::Result<()> {
        self.sock.set_nonblocking(true)
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 64];
        let (n, fds) = loop {
            match crate::sys::recv_with_fds(self.sock.as_raw_fd(), &mut buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the supervisor is gone",
            ));
        }
        self.inbuf.extend_from_slice(&buf[..n]);
        self.fds.extend(fds);
        if self.inbuf.len() > 1024 {
            return Err(io::Error::other("the supervisor says too much"));
        }
        Ok(())
    }

    /// One whole announcement, if one is there: `H <pid>` or `G <pid>` and its
    /// descriptor.
    fn take(&mut self) -> io::Result<Option<(Kind, i32, UnixStream)>> {
        let Some(i) = self.inbuf.iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let line: Vec<u8> = self.inbuf.drain(..=i).collect();
        let text = String::from_utf8_lossy(&line[..i]).into_owned();
        let bad = || io::Error::other(format!("the supervisor said '{}'", text.escape_debug()));
        let (k, pid) = text.split_once(' ').ok_or_else(bad)?;
        let kind = k
            .bytes()
            .next()
            .filter(|_| k.len() == 1)
            .and_then(Kind::of)
            .ok_or_else(bad)?;
        let pid: i32 = pid.parse().map_err(|_| bad())?;
        if self.fds.is_empty() {
            return Err(bad());
        }
        let fd = self.fds.remove(0);
        Ok(Some((kind, pid, UnixStream::from(fd))))
    }
}

/// The supervisor's loop: start what is asked (after its back-off), reap, and end
/// when the daemon goes.
fn supervise(mut sock: UnixStream, confs: &Confs) {
    let mut backoff = [Backoff::default(), Backoff::default()];
    let mut due: Vec<(Instant, Kind)> = Vec::new();
    let mut inbuf: Vec<u8> = Vec::new();
    loop {
        crate::sys::reap_any();
        let now = Instant::now();
        // Start what is due.
        let mut i = 0;
        while i < due.len() {
            if due[i].0 <= now {
                let (_, kind) = due.swap_remove(i);
                match start(&mut sock, kind, confs) {
                    Started::Sent => {}
                    Started::DaemonGone => return,
                    // No fork now (out of processes): again after a pause, as for
                    // a helper that died.
                    Started::Failed => {
                        let at = backoff[kind as usize].start_at(Instant::now());
                        due.push((at, kind));
                    }
                }
            } else {
                i += 1;
            }
        }
        let wait = due
            .iter()
            .map(|(at, _)| at.saturating_duration_since(now))
            .min();
        let wait = wait.unwrap_or(Duration::from_secs(86_400));
        match crate::sys::poll_fds(&[(sock.as_raw_fd(), libc::POLLIN)], wait) {
            Ok(r) if r.first().is_some_and(|&e| e != 0) => {}
            Ok(_) => continue,
            Err(_) => return,
        }
        let mut buf = [0u8; 64];
        match sock.read(&mut buf) {
            Ok(0) => return, // the daemon is gone
            Ok(n) => inbuf.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        while let Some(i) = inbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = inbuf.drain(..=i).collect();
            let kind = match line.as_slice() {
                [k, b'\n'] => Kind::of(*k),
                _ => None,
            };
            let Some(kind) = kind else {
                return; // not the daemon speaking
            };
            if kind == Kind::Delivery && confs.helper.is_none() {
                continue;
            }
            if due.iter().any(|(_, k)| *k == kind) {
                continue; // already coming
            }
            let at = backoff[kind as usize].start_at(Instant::now());
            due.push((at, kind));
        }
        if inbuf.len() > 64 {
            return;
        }
    }
}

/// What became of a start.
enum Started {
    /// The daemon has its end of the new helper.
    Sent,
    /// The helper could not be forked: try again later.
    Failed,
    /// The daemon cannot be told: it is gone.
    DaemonGone,
}

/// Starts a helper of `kind` and hands the daemon its end.
fn start(sock: &mut UnixStream, kind: Kind, confs: &Confs) -> Started {
    let started = match (kind, &confs.helper) {
        (Kind::Delivery, Some(conf)) => {
            crate::sys::fork_server(|theirs| crate::local::helper::serve(theirs, conf))
        }
        (Kind::Delivery, None) => return Started::Sent,
        (Kind::Auth, _) => {
            crate::sys::fork_server(|theirs| crate::auth::guard::serve(theirs, &confs.guard))
        }
    };
    match started {
        Ok((ours, pid)) => {
            let line = format!("{} {pid}\n", kind.letter() as char);
            match crate::sys::send_fd_connected(sock.as_raw_fd(), line.as_bytes(), ours.as_raw_fd())
            {
                Ok(()) => Started::Sent,
                Err(_) => Started::DaemonGone,
            }
        }
        Err(_) => Started::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_first_start_and_after_a_long_life_are_at_once() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(b.start_at(t0), t0);
        let later = t0 + STABLE + Duration::from_secs(1);
        assert_eq!(b.start_at(later), later);
    }

    #[test]
    fn backoff_a_helper_that_keeps_dying_waits_longer_each_time_up_to_the_cap() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        let mut now = t0;
        let mut last = b.start_at(now);
        let mut waits = Vec::new();
        for _ in 0..10 {
            // Dies at once after each start.
            now = last;
            let at = b.start_at(now);
            waits.push(at.duration_since(last).as_secs());
            last = at;
        }
        assert_eq!(&waits[..8], &[1, 2, 4, 8, 16, 32, 60, 60]);
        assert!(waits.iter().all(|&w| w <= MAX_BACKOFF.as_secs()));
    }
}
