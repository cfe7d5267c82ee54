//! OAuth 2.0 access tokens for the client side (`token=|COMMAND` in `db/authinfo`,
//! msmtp's `passwordeval`): the auth helper runs the command when a delivery needs a
//! token — as `USER` when the daemon started as root, with a clean environment, no
//! shell, its output bounded and a time limit — and keeps each token
//! [`TOKEN_TTL`] (access tokens live about an hour; a fresh one is cheap to ask for).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// How long a token is used before the command is run again.
pub const TOKEN_TTL: Duration = Duration::from_secs(300);
/// How long a failure is remembered (a delivery retried at once does not run a
/// failing command again).
pub const FAILURE_TTL: Duration = Duration::from_secs(30);
/// How long the command may take.
pub const TOKEN_LIMIT: Duration = Duration::from_secs(20);
/// Longest token read.
pub const MAX_TOKEN: usize = 16 * 1024;
/// Commands run at once (other requests wait for one of them or are refused).
pub const MAX_FETCHES: usize = 8;
/// Commands remembered.
const MAX_CACHED: usize = 1000;

/// A token, or why there is none.
pub type Got = Result<Vec<u8>, String>;

/// A command running for a token, and who waits for it.
struct Fetch {
    pid: i32,
    pipe: std::io::PipeReader,
    got: Vec<u8>,
    deadline: Instant,
    /// Sequence numbers of the requests waiting.
    waiting: Vec<u64>,
}

/// Tokens fetched (and failures, for a while), by command, and the fetches
/// running: the auth helper serves checks while a command takes its time.
#[derive(Default)]
pub struct Tokens {
    cache: HashMap<Vec<String>, (Got, Instant)>,
    running: HashMap<Vec<String>, Fetch>,
    /// Ended fetches' processes not reaped yet.
    zombies: Vec<i32>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tokens({} cached, {} running)",
            self.cache.len(),
            self.running.len()
        )
    }
}

impl Tokens {
    /// Asks for the token `argv` prints for request `seq`: the answer now (fresh in
    /// the cache, or a failure), or `None` when it comes from [`Tokens::progress`].
    pub fn ask(
        &mut self,
        seq: u64,
        argv: &[String],
        run_as: Option<(u32, u32)>,
        now: Instant,
    ) -> Option<Got> {
        if let Some((r, at)) = self.cache.get(argv) {
            let ttl = if r.is_ok() { TOKEN_TTL } else { FAILURE_TTL };
            if now.duration_since(*at) < ttl {
                return Some(r.clone());
            }
        }
        if let Some(f) = self.running.get_mut(argv) {
            f.waiting.push(seq);
            return None;
        }
        if self.running.len() >= MAX_FETCHES {
            return Some(Err(format!("{MAX_FETCHES} token commands run already")));
        }
        match start(argv, run_as) {
            Ok((pid, pipe)) => {
                self.running.insert(
                    argv.to_vec(),
                    Fetch {
                        pid,
                        pipe,
                        got: Vec::new(),
                        deadline: now + TOKEN_LIMIT,
                        waiting: vec![seq],
                    },
                );
                None
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// The pipes to watch.
    pub fn fds(&self) -> Vec<RawFd> {
        self.running.values().map(|f| f.pipe.as_raw_fd()).collect()
    }

    /// When a fetch runs out of time.
    pub fn deadline(&self) -> Option<Instant> {
        self.running.values().map(|f| f.deadline).min()
    }

    /// Reads the pipes in `ready` (one read each: they were readable) and ends
    /// the fetches that are over: the answers for the requests that waited.
    pub fn progress(
        &mut self,
        ready: &[RawFd],
        now: Instant,
    ) -> Vec<(u64, Result<Vec<u8>, String>)> {
        let mut over: Vec<(Vec<String>, Got)> = Vec::new();
        for (argv, f) in self.running.iter_mut() {
            if ready.contains(&f.pipe.as_raw_fd()) {
                let mut buf = [0u8; 4096];
                match f.pipe.read(&mut buf) {
                    Ok(0) => over.push((argv.clone(), token_of(&f.got))),
                    Ok(n) => {
                        f.got.extend_from_slice(&buf[..n]);
                        if f.got.len() > MAX_TOKEN {
                            over.push((
                                argv.clone(),
                                Err("the token command printed too much".into()),
                            ));
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => over.push((argv.clone(), Err(e.to_string()))),
                }
            } else if now >= f.deadline {
                over.push((
                    argv.clone(),
                    Err(format!(
                        "the token command did not end within {} s",
                        TOKEN_LIMIT.as_secs()
                    )),
                ));
            }
        }
        let mut answers = Vec::new();
        for (argv, r) in over {
            let Some(f) = self.running.remove(&argv) else {
                continue;
            };
            crate::sys::kill_session(f.pid);
            self.zombies.push(f.pid);
            if self.cache.len() >= MAX_CACHED {
                self.cache.clear();
            }
            self.cache.insert(argv, (r.clone(), now));
            answers.extend(f.waiting.into_iter().map(|seq| (seq, r.clone())));
        }
        self.zombies
            .retain(|&pid| crate::sys::try_reap(pid).is_none());
        answers
    }
}

/// Starts the command in a child that becomes `run_as` first and writes the
/// command's output, if it succeeded and was no longer than [`MAX_TOKEN`], into the
/// pipe whose read end is returned.
fn start(
    argv: &[String],
    run_as: Option<(u32, u32)>,
) -> Result<(i32, std::io::PipeReader), String> {
    let (r, mut w) = std::io::pipe().map_err(|e| e.to_string())?;
    match crate::sys::fork().map_err(|e| e.to_string())? {
        crate::sys::Forked::Child => {
            drop(r);
            crate::sys::new_session();
            let ok = run_as.is_none_or(|(uid, gid)| crate::sys::become_user(uid, gid).is_ok());
            if ok {
                let child = std::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .env_clear()
                    .env("PATH", "/usr/bin:/bin")
                    .current_dir("/")
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .spawn();
                if let Ok(mut c) = child {
                    // At most one octet past the limit is read: a flood costs nothing.
                    let mut out = Vec::new();
                    let read = c
                        .stdout
                        .take()
                        .map(|o| o.take(MAX_TOKEN as u64 + 1).read_to_end(&mut out));
                    if out.len() > MAX_TOKEN || !matches!(read, Some(Ok(_))) {
                        let _ = c.kill();
                        let _ = c.wait();
                    } else if c.wait().is_ok_and(|s| s.success()) {
                        let _ = w.write_all(&out);
                    }
                }
            }
            crate::sys::exit_child(0)
        }
        crate::sys::Forked::Parent(pid) => Ok((pid, r)),
    }
}

/// The token in a command's output: its first line, trimmed, printable ASCII.
fn token_of(got: &[u8]) -> Result<Vec<u8>, String> {
    let line = got.split(|&b| b == b'\n').next().unwrap_or_default();
    let token: Vec<u8> = line.trim_ascii().to_vec();
    if token.is_empty() || !token.iter().all(|b| (0x21..0x7f).contains(b)) {
        return Err("the token command printed no token (or failed)".into());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One turn of the guard's loop: waits up to 100 ms for the fetches' output
    /// and returns the answers that came.
    fn turn(t: &mut Tokens) -> Vec<(u64, Result<Vec<u8>, String>)> {
        let fds = t.fds();
        let polled: Vec<(RawFd, i16)> = fds.iter().map(|&f| (f, libc::POLLIN)).collect();
        let ev = crate::sys::poll_fds(&polled, Duration::from_millis(100)).unwrap();
        let ready: Vec<RawFd> = fds
            .iter()
            .zip(ev)
            .filter(|(_, e)| *e != 0)
            .map(|(f, _)| *f)
            .collect();
        t.progress(&ready, Instant::now())
    }

    /// Runs `ask` for `argv` and waits for its answer as the guard's loop would.
    fn fetch(t: &mut Tokens, seq: u64, argv: &[String]) -> Result<Vec<u8>, String> {
        if let Some(r) = t.ask(seq, argv, None, Instant::now()) {
            return r;
        }
        loop {
            if let Some((_, r)) = turn(t).into_iter().find(|a| a.0 == seq) {
                return r;
            }
        }
    }

    #[test]
    fn a_token_is_the_first_line_and_is_kept_a_while() {
        let dir = std::env::temp_dir().join(format!("etrnd-token-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let counter = dir.join("n");
        let script = format!(
            "echo x >> {}; echo tok-$(wc -l < {})",
            counter.display(),
            counter.display()
        );
        let argv: Vec<String> = vec!["/bin/sh".into(), "-c".into(), script];
        let mut t = Tokens::default();
        assert_eq!(fetch(&mut t, 1, &argv).unwrap(), b"tok-1");
        assert_eq!(
            fetch(&mut t, 2, &argv).unwrap(),
            b"tok-1",
            "kept, not run again"
        );
        let bad: Vec<String> = vec!["/bin/sh".into(), "-c".into(), "exit 3".into()];
        assert!(fetch(&mut t, 3, &bad).is_err());
        let empty: Vec<String> = vec!["/bin/true".into()];
        assert!(fetch(&mut t, 4, &empty).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_flood_is_cut_at_the_limit_and_costs_no_memory() {
        let flood: Vec<String> = vec![
            "/bin/sh".into(),
            "-c".into(),
            "head -c 100000000 /dev/zero | tr '\\0' A".into(),
        ];
        let mut t = Tokens::default();
        assert!(fetch(&mut t, 1, &flood).is_err());
    }

    #[test]
    fn requests_for_one_command_share_its_run_and_others_are_answered_meanwhile() {
        let slow: Vec<String> = vec!["/bin/sh".into(), "-c".into(), "sleep 1; echo slow".into()];
        let quick: Vec<String> = vec!["/bin/sh".into(), "-c".into(), "echo quick".into()];
        let mut t = Tokens::default();
        let now = Instant::now();
        assert!(t.ask(1, &slow, None, now).is_none());
        assert!(
            t.ask(2, &slow, None, now).is_none(),
            "joins the running fetch"
        );
        assert_eq!(t.fds().len(), 1);
        assert_eq!(fetch(&mut t, 3, &quick).unwrap(), b"quick");
        let mut answers = Vec::new();
        while answers.len() < 2 {
            answers.extend(turn(&mut t));
        }
        answers.sort_by_key(|a| a.0);
        assert_eq!(
            answers,
            vec![(1, Ok(b"slow".to_vec())), (2, Ok(b"slow".to_vec()))]
        );
    }
}
