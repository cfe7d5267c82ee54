//! Alias targets that are not mailboxes (DESIGN.md §4.3, Postfix local(8) and
//! sendmail semantics): `/dev/null`, an absolute file path and `|command`. They reach
//! the local channel as `Destination::Local` names that start with `/` or `|`, which
//! no user name does.
//!
//! * Who: a file or command target runs as the owner of the aliases (or
//!   `:include:`) file that names it, or as [`DEFAULT_PRIVS`] when root owns that
//!   file — never as root. The privileged helper decides this itself, reading the
//!   aliases file again ([`run_as`]): the daemon only says which recipient of which
//!   queued message, so a daemon that was taken over cannot name a command or an
//!   account of its own.
//! * Files are appended to as an mbox under the mailbox rules (`local::deliver_file`).
//! * Commands get the message (with `Return-Path:`, LF line ends) on stdin, a clean
//!   environment (`PATH`, `HOME`, `USER`, `LOGNAME`, `SHELL`, `SENDER`,
//!   `RECIPIENT`), their home as working directory, and [`COMMAND_LIMIT`] to finish;
//!   their output is read as it comes (the first [`MAX_OUTPUT`] octets kept for the
//!   reason, the rest dropped), so one that floods stdout never blocks. No shell runs
//!   unless the command needs one (shell characters, or no absolute path). The exit
//!   status is read as sysexits(3): 0 delivered, 75 and 71 deferred, the others
//!   bounced with their RFC 3463 status; a time-out or a signal defers.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::local::{LocalMessage, LocalResult};
use crate::route::names::AliasTarget;

/// The account file and command targets of root's aliases run as.
pub const DEFAULT_PRIVS: &str = "nobody";
/// How long a command may run (below the daemon's wait for a verdict, `helper::VERDICT_LIMIT`).
pub const COMMAND_LIMIT: Duration = Duration::from_secs(50);
/// Most octets of a command's output kept for the reason.
pub const MAX_OUTPUT: usize = 1024;

/// What a local destination name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/dev/null`.
    Discard,
    /// A file path.
    File(&'a str),
    /// A command line.
    Command(&'a str),
}

impl<'a> Target<'a> {
    /// The target a local destination name stands for; `None` for a user.
    pub fn of(local: &'a str) -> Option<Target<'a>> {
        if local == "/dev/null" {
            Some(Target::Discard)
        } else if let Some(cmd) = local.strip_prefix('|') {
            Some(Target::Command(cmd))
        } else if local.starts_with('/') {
            Some(Target::File(local))
        } else {
            None
        }
    }
}

/// The account a file or command target runs as: uid, gid, home, name. Read from
/// the aliases file (and its includes) now; `Err` when no entry names the target
/// any more, or its account is missing.
pub fn run_as(aliases: &Path, target: Target<'_>) -> Result<(u32, u32, String, String), String> {
    let map = crate::route::names::load_aliases(aliases)
        .map_err(|e| format!("the aliases cannot be read: {}", e[0]))?;
    let owner = map
        .values()
        .flatten()
        .find_map(|t| match (t, target) {
            (AliasTarget::File { path, owner }, Target::File(p)) if path == p => Some(*owner),
            (AliasTarget::Command { cmd, owner }, Target::Command(c)) if cmd == c => Some(*owner),
            _ => None,
        })
        .ok_or("no alias names this target any more")?;
    let name = if owner == 0 {
        DEFAULT_PRIVS.to_string()
    } else {
        crate::sys::user_name(owner).ok_or(format!("no account has uid {owner}"))?
    };
    let (uid, gid, home) = crate::sys::user(&name).ok_or(format!("no account '{name}'"))?;
    if uid == 0 {
        return Err(format!("'{name}' is root: targets never run as root"));
    }
    Ok((uid, gid, home, name))
}

/// [`deliver`] as the account the daemon runs as (a daemon started unprivileged
/// delivers its own targets, in a child of its own).
pub fn deliver_as_self(target: Target<'_>, m: &LocalMessage<'_>, rcpt: &str) -> LocalResult {
    let me = crate::sys::current_user().unwrap_or_default();
    let (uid, gid, home) = crate::sys::user(&me).unwrap_or((crate::sys::euid(), 0, "/".into()));
    deliver(target, m, ((uid, gid), &home, &me), rcpt)
}

/// Delivers to a target as the account this process is now (`owner`, `home` and
/// `name` are that account's); `rcpt` is the recipient address the alias was.
pub fn deliver(
    target: Target<'_>,
    m: &LocalMessage<'_>,
    (owner, home, name): ((u32, u32), &str, &str),
    rcpt: &str,
) -> LocalResult {
    match target {
        Target::Discard => LocalResult::Delivered,
        Target::File(p) => crate::local::deliver_file(Path::new(p), m, owner),
        Target::Command(cmd) => command(cmd, m, home, name, rcpt),
    }
}

/// Delivers as a recipient's `.forward` says (call as the recipient): `\\user` (or
/// the user's own name) is their mailbox, files and commands run as them here,
/// `/dev/null` drops, and addresses and other local names are handed back
/// ([`LocalResult::Forward`]) for the daemon to queue a copy to. A copy that already
/// went through this user's `.forward` (its `Delivered-To:`) is a loop and bounces.
/// The first target that fails decides the outcome (a deferral over a bounce).
pub fn forward(
    list: &[String],
    user: &str,
    account: &crate::accounts::Account,
    (root, maildir, seq): (&Path, bool, u64),
    m: &LocalMessage<'_>,
) -> LocalResult {
    let me = format!("{user}@{}", m.hostname);
    let head = m.body.head(64 * 1024).unwrap_or_default();
    let head = String::from_utf8_lossy(&head);
    let header_end = head.find("\r\n\r\n").unwrap_or(head.len());
    let looped = head[..header_end].lines().any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.eq_ignore_ascii_case("delivered-to") && v.trim().eq_ignore_ascii_case(&me)
        })
    });
    if looped {
        return LocalResult::Failed("5.4.6".into(), format!("mail forwarding loop for {me}"));
    }
    let owner = (account.uid, account.gid);
    let mut onward = Vec::new();
    // What was done, for the delivery line ("delivered via ~/.forward to …").
    let mut done: Vec<String> = Vec::new();
    let mut worst: Option<LocalResult> = None;
    for t in list {
        let t = t.as_str();
        let r = if t.strip_prefix('\\').unwrap_or(t).eq_ignore_ascii_case(user) {
            done.push(if maildir { "maildir" } else { "mailbox" }.into());
            crate::local::deliver(root, maildir, user, Some(account), m, seq)
        } else {
            match crate::route::names::parse_target(t) {
                Ok(AliasTarget::Discard) => {
                    done.push("/dev/null".into());
                    LocalResult::Delivered
                }
                Ok(AliasTarget::File { path, .. }) => {
                    done.push(format!("file: {path}"));
                    crate::local::deliver_file(Path::new(&path), m, owner)
                }
                Ok(AliasTarget::Command { cmd, .. }) => {
                    done.push(format!("command: {cmd}"));
                    command(&cmd, m, &account.home, user, &me)
                }
                Ok(AliasTarget::Address(a)) => {
                    onward.push(a.to_string());
                    LocalResult::Delivered
                }
                Ok(AliasTarget::Local(u)) => {
                    onward.push(u);
                    LocalResult::Delivered
                }
                Ok(AliasTarget::Include(_)) => {
                    LocalResult::Deferred("4.3.0 .forward: :include: is not taken there".into())
                }
                Err(e) => LocalResult::Deferred(format!("4.3.0 .forward: {e}")),
            }
        };
        worst = match (worst, r) {
            (Some(LocalResult::Deferred(w)), _) => Some(LocalResult::Deferred(w)),
            (_, LocalResult::Deferred(w)) => Some(LocalResult::Deferred(w)),
            (Some(f @ LocalResult::Failed(..)), _) | (_, f @ LocalResult::Failed(..)) => Some(f),
            (w, _) => w,
        };
    }
    match worst {
        Some(r) => r,
        None if onward.is_empty() => {
            LocalResult::DeliveredAs(format!("delivered via ~/.forward to {}", done.join(", ")))
        }
        None => LocalResult::Forward(onward),
    }
}

/// Largest `.forward` read.
pub const MAX_FORWARD: u64 = 64 * 1024;
/// Most targets one `.forward` may list.
pub const MAX_FORWARD_TARGETS: usize = 100;

/// The targets of `home/.forward` (call as the recipient, `uid`): `None` when there
/// is none. Opened the safe way: not through a link, a plain file of the
/// recipient's (or root's) that nobody else may write, no larger than
/// [`MAX_FORWARD`]; anything else is `Err` (the delivery waits, the reason logged).
pub fn forward_file(home: &Path, uid: u32) -> Option<Result<Vec<String>, String>> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let path = home.join(".forward");
    let seen = match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(crate::vocab::os_error(&e))),
        Ok(m) => m,
    };
    let check = || -> Result<Vec<String>, String> {
        if !seen.file_type().is_file() {
            return Err(format!("it is {}", crate::local::kind(&seen)));
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)
            .map_err(|e| crate::vocab::os_error(&e))?;
        let m = f.metadata().map_err(|e| crate::vocab::os_error(&e))?;
        if (seen.dev(), seen.ino()) != (m.dev(), m.ino()) || !m.is_file() {
            return Err("it was replaced while being opened".into());
        }
        if m.uid() != uid && m.uid() != 0 {
            return Err(format!("it belongs to uid {}", m.uid()));
        }
        if m.mode() & 0o022 != 0 {
            return Err("others may write it".into());
        }
        if m.len() > MAX_FORWARD {
            return Err(format!("larger than {MAX_FORWARD} octets"));
        }
        let mut text = String::new();
        f.take(MAX_FORWARD)
            .read_to_string(&mut text)
            .map_err(|e| crate::vocab::os_error(&e))?;
        let targets = forward_targets(&text);
        if targets.len() > MAX_FORWARD_TARGETS {
            return Err(format!("more than {MAX_FORWARD_TARGETS} targets"));
        }
        Ok(targets)
    };
    Some(check().map_err(|why| format!("{}: {why}", path.display())))
}

/// The targets a `.forward` lists: comma or line separated, `#` comments, quotes
/// around targets with spaces or commas (removed).
pub fn forward_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (mut cur, mut quoted) = (String::new(), false);
        for c in line.chars().chain(std::iter::once(',')) {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    let t = cur.trim();
                    if !t.is_empty() {
                        out.push(t.to_string());
                    }
                    cur.clear();
                }
                c => cur.push(c),
            }
        }
    }
    out
}

/// Whether a command line needs a shell to mean what it says.
fn needs_shell(cmd: &str) -> bool {
    !cmd.starts_with('/')
        || cmd
            .chars()
            .any(|c| "|&;<>()$`\\\"'*?[]#~=%{}!\n".contains(c))
}

/// Runs a command target with the message on its stdin.
fn command(cmd: &str, m: &LocalMessage<'_>, home: &str, name: &str, rcpt: &str) -> LocalResult {
    let argv: Vec<String> = if needs_shell(cmd) {
        vec!["/bin/sh".into(), "-c".into(), cmd.into()]
    } else {
        cmd.split_whitespace().map(str::to_string).collect()
    };
    let sender = m.sender.as_ref().map(|s| s.to_string()).unwrap_or_default();
    let env: Vec<(String, String)> = [
        ("PATH", "/usr/bin:/bin:/usr/local/bin"),
        ("HOME", home),
        ("USER", name),
        ("LOGNAME", name),
        ("SHELL", "/bin/sh"),
        ("SENDER", &sender),
        ("RECIPIENT", rcpt),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut input = Vec::new();
    if let Err(e) = crate::local::render(m, false, &mut input) {
        return LocalResult::Deferred(format!(
            "4.3.0 cannot read the message: {}",
            crate::vocab::os_error(&e)
        ));
    }
    let dir = if Path::new(home).is_dir() { home } else { "/" };
    let (pid, stdin, stdout) = match crate::sys::spawn_piped(&argv, &env, Path::new(dir)) {
        Ok(x) => x,
        Err(e) => {
            return LocalResult::Deferred(format!(
                "4.3.0 cannot run \"{cmd}\": {}",
                crate::vocab::os_error(&e)
            ))
        }
    };
    match feed(&input, stdin, stdout, Instant::now() + COMMAND_LIMIT) {
        Ok(output) => verdict(cmd, crate::sys::reap(pid), &output),
        Err(()) => {
            crate::sys::kill_session(pid);
            LocalResult::Deferred(format!(
                "4.3.0 \"{cmd}\": command time limit exceeded ({} s)",
                COMMAND_LIMIT.as_secs()
            ))
        }
    }
}

/// Writes `input` to the command while reading its output, until the output ends
/// (the command and everything it started closed it) or `deadline`: the first
/// [`MAX_OUTPUT`] octets of the output, or `Err` at the deadline.
fn feed(
    input: &[u8],
    stdin: std::os::fd::OwnedFd,
    stdout: std::os::fd::OwnedFd,
    deadline: Instant,
) -> Result<Vec<u8>, ()> {
    let _ = crate::sys::set_nonblocking(stdin.as_raw_fd());
    let _ = crate::sys::set_nonblocking(stdout.as_raw_fd());
    let mut writer = Some(std::fs::File::from(stdin));
    let mut reader = std::fs::File::from(stdout);
    let (mut sent, mut output) = (0usize, Vec::new());
    let mut buf = [0u8; 8192];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(());
        }
        let mut fds = vec![(reader.as_raw_fd(), libc::POLLIN)];
        if let Some(w) = &writer {
            fds.push((w.as_raw_fd(), libc::POLLOUT));
        }
        let ready = crate::sys::poll_fds(&fds, deadline - now).map_err(|_| ())?;
        if ready.get(1).is_some_and(|r| *r != 0) {
            if let Some(w) = writer.as_mut() {
                match w.write(&input[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // EPIPE: the command stopped reading; its status says the rest.
                    Err(_) => sent = input.len(),
                }
                if sent >= input.len() {
                    writer = None; // EOF on its stdin
                }
            }
        }
        if ready[0] != 0 {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(output),
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(output.len());
                    output.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Ok(output),
            }
        }
    }
}

/// The outcome of a command that ended with `status` (`None`: by a signal).
fn verdict(cmd: &str, status: Option<i32>, output: &[u8]) -> LocalResult {
    let said = String::from_utf8_lossy(output);
    let said = crate::logging::sanitize(said.trim().as_bytes());
    let tail = if said.is_empty() {
        String::new()
    } else {
        format!(". Command output: {said}")
    };
    let Some(code) = status else {
        return LocalResult::Deferred(format!("4.3.0 \"{cmd}\" was killed by a signal{tail}"));
    };
    let status = match code {
        0 => return LocalResult::Delivered,
        71 | 75 => {
            return LocalResult::Deferred(format!(
                "4.3.0 \"{cmd}\" exited with status {code} (try again later){tail}"
            ))
        }
        67 => "5.1.1",
        68 => "5.1.2",
        65 => "5.6.0",
        73 => "5.2.0",
        76 => "5.5.0",
        77 => "5.7.0",
        78 => "5.3.5",
        _ => "5.3.0",
    };
    LocalResult::Failed(
        status.into(),
        format!("\"{cmd}\" exited with status {code}{tail}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_shells() {
        assert_eq!(Target::of("/dev/null"), Some(Target::Discard));
        assert_eq!(Target::of("/var/log/x"), Some(Target::File("/var/log/x")));
        assert_eq!(Target::of("|/bin/cat"), Some(Target::Command("/bin/cat")));
        assert_eq!(Target::of("alice"), None);
        assert!(!needs_shell("/usr/bin/procmail -a x"));
        assert!(needs_shell("procmail"));
        assert!(needs_shell("/bin/cat > /tmp/x"));
    }

    #[test]
    fn sysexits() {
        assert_eq!(verdict("c", Some(0), b""), LocalResult::Delivered);
        assert!(matches!(
            verdict("c", Some(75), b""),
            LocalResult::Deferred(_)
        ));
        assert!(matches!(verdict("c", None, b""), LocalResult::Deferred(_)));
        match verdict("c", Some(67), b"no such user\n") {
            LocalResult::Failed(st, why) => {
                assert_eq!(st, "5.1.1");
                assert!(why.ends_with("Command output: no such user"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(verdict("c", Some(1), b""), LocalResult::Failed(s, _) if s == "5.3.0"));
    }
}

#[cfg(test)]
mod forward_tests {
    #[test]
    fn forward_lists() {
        let t = super::forward_targets(
            "# comment\n\\me, alice@x.example\n\"|/usr/bin/vacation -a x, y\"\n\n/var/mail/archive\n",
        );
        assert_eq!(
            t,
            vec![
                "\\me",
                "alice@x.example",
                "|/usr/bin/vacation -a x, y",
                "/var/mail/archive"
            ]
        );
    }
}
