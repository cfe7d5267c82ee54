//! OAuth 2.0 access tokens for the client side (`token=|COMMAND` in `db/authinfo`,
//! msmtp's `passwordeval`): the auth helper runs the command when a delivery needs a
//! token — as `USER` when the daemon started as root, with a clean environment, no
//! shell, its output bounded and a time limit — and keeps each token
//! [`TOKEN_TTL`] (access tokens live about an hour; a fresh one is cheap to ask for).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// How long a token is used before the command is run again.
pub const TOKEN_TTL: Duration = Duration::from_secs(300);
/// How long the command may take.
pub const TOKEN_LIMIT: Duration = Duration::from_secs(20);
/// Longest token read.
pub const MAX_TOKEN: usize = 16 * 1024;

/// Tokens fetched, by command.
#[derive(Debug, Default)]
pub struct Tokens {
    cache: HashMap<Vec<String>, (Vec<u8>, Instant)>,
}

impl Tokens {
    /// The token `argv` prints (from the cache while fresh), or why there is none.
    pub fn get(&mut self, argv: &[String], run_as: Option<(u32, u32)>) -> Result<Vec<u8>, String> {
        let now = Instant::now();
        if let Some((t, at)) = self.cache.get(argv) {
            if now.duration_since(*at) < TOKEN_TTL {
                return Ok(t.clone());
            }
        }
        let t = run(argv, run_as)?;
        if self.cache.len() > 1000 {
            self.cache.clear();
        }
        self.cache.insert(argv.to_vec(), (t.clone(), now));
        Ok(t)
    }
}

/// Runs the command in a child (that becomes `run_as` first): the first line of its
/// standard output, trimmed, which must be a token (printable ASCII).
fn run(argv: &[String], run_as: Option<(u32, u32)>) -> Result<Vec<u8>, String> {
    use std::os::fd::AsRawFd;
    let (mut r, mut w) = std::io::pipe().map_err(|e| e.to_string())?;
    let pid = match crate::sys::fork().map_err(|e| e.to_string())? {
        crate::sys::Forked::Child => {
            drop(r);
            crate::sys::new_session();
            let ok = run_as.is_none_or(|(uid, gid)| crate::sys::become_user(uid, gid).is_ok());
            if ok {
                let out = std::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .env_clear()
                    .env("PATH", "/usr/bin:/bin")
                    .current_dir("/")
                    .stdin(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .output();
                if let Ok(o) = out {
                    if o.status.success() {
                        let _ = w.write_all(&o.stdout[..o.stdout.len().min(MAX_TOKEN)]);
                    }
                }
            }
            crate::sys::exit_child(0)
        }
        crate::sys::Forked::Parent(pid) => pid,
    };
    drop(w);
    let deadline = Instant::now() + TOKEN_LIMIT;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let result = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(format!(
                "the token command did not end within {} s",
                TOKEN_LIMIT.as_secs()
            ));
        }
        match crate::sys::poll_fds(&[(r.as_raw_fd(), libc::POLLIN)], left) {
            Ok(ev) if ev.first().is_some_and(|&e| e != 0) => {}
            Ok(_) => continue,
            Err(e) => break Err(e.to_string()),
        }
        match r.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.len() > MAX_TOKEN {
                    break Err("the token command printed too much".into());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e.to_string()),
        }
    };
    crate::sys::kill_session(pid);
    result?;
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
        assert_eq!(t.get(&argv, None).unwrap(), b"tok-1");
        assert_eq!(t.get(&argv, None).unwrap(), b"tok-1", "kept, not run again");
        let bad: Vec<String> = vec!["/bin/sh".into(), "-c".into(), "exit 3".into()];
        assert!(t.get(&bad, None).is_err());
        let empty: Vec<String> = vec!["/bin/true".into()];
        assert!(t.get(&empty, None).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
