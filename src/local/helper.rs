//! The privileged helper (DESIGN.md §2): a small process that keeps root when the
//! network-facing daemon gives it up, and delivers as the recipient: into local
//! mailboxes (or as their `.forward` says), and to the aliases' file and command
//! targets as the aliases file's owner (local_targets.rs).
//!
//! ```text
//!   daemon (USER, serves the network)          helper (root, parses nothing of it)
//!       |  "D <16-hex id> <user>\n"  ------>   checks the user is an account and the
//!       |  "X <16-hex id> <index>\n"           id a queue name; reads
//!       |                                      POSTOFFICE/queue/<id> itself (its own
//!       |                                      path, verified like the spool does);
//!       |                                      for D makes the top mailbox if missing,
//!       |                                      owned by the user; for X finds the
//!       |                                      recipient's target in the envelope and
//!       |                                      whom it runs as in db/aliases; forks a
//!       |                                      delivery that becomes that account
//!       |  <------  "P\n" + the delivery's socket (SCM_RIGHTS), or at once
//!       |           "D\n" | "T reason\n" | "F status reason\n"
//!       |  <====== on that socket, when the delivery ends: one verdict line, or
//!       |          "W address ...\n" (a `.forward` sends the message on)
//! ```
//!
//! What crosses the socket is one request line (a message id and an account name or
//! a recipient index) and one reply; no path, no command, no message text. The
//! helper reads the queue file with the spool's own decoder (a file the daemon
//! wrote, checked by its CRC) and never looks at network input otherwise. A delivery
//! runs in a grandchild of the helper with every other descriptor closed, so neither
//! the helper nor the daemon's loop waits for it (a command may take
//! `local_targets::COMMAND_LIMIT`); the daemon reads its verdict when it comes and
//! defers the recipient if none came within [`VERDICT_LIMIT`].
//!
//! Does not: read configuration after it started (but db/aliases, for X), accept
//! anything but these requests, or run anything as root on a path a user could have
//! replaced.

use std::io::{self, BufRead, BufReader, Read, Write};

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::local::{LocalMessage, LocalResult};
use crate::store::spool::MessageId;

/// Longest request or verdict line.
pub const MAX_LINE: usize = 1024;
/// How long the daemon waits for a verdict.
pub const VERDICT_LIMIT: Duration = Duration::from_secs(90);

/// What the helper needs to know, fixed when it starts.
#[derive(Debug, Clone)]
pub struct HelperConf {
    /// The spool root (`POSTOFFICE`).
    pub postoffice: PathBuf,
    /// `MAILBOX`.
    pub mailbox: PathBuf,
    /// Whether `MAILBOX` names Maildirs.
    pub maildir: bool,
    /// Our host name (Maildir file names).
    pub hostname: String,
    /// Largest message (bounds the queue file read).
    pub max_message_size: u64,
    /// `db/aliases`: read again for every file or command target, to learn whom it
    /// runs as (local_targets.rs).
    pub aliases: PathBuf,
}

/// The daemon's end: requests go out as they come (the socket is non-blocking and
/// registered with the poller), and the helper answers them in order, each with a
/// verdict or with `P` and the socket of the delivery it started. `T` tags each
/// request with what the daemon needs to know when its answer comes.
#[derive(Debug)]
pub struct Helper<T> {
    sock: mio::net::UnixStream,
    pid: i32,
    out: crate::buf::OutBuf,
    inbuf: Vec<u8>,
    fds: std::collections::VecDeque<std::os::fd::OwnedFd>,
    asked: std::collections::VecDeque<T>,
    /// The socket failed or closed: the helper is gone.
    pub dead: bool,
}

impl<T> Helper<T> {
    /// The daemon's end of a helper the supervisor started.
    pub fn new(sock: UnixStream, pid: i32) -> io::Result<Helper<T>> {
        sock.set_nonblocking(true)?;
        Ok(Helper {
            sock: mio::net::UnixStream::from_std(sock),
            pid,
            out: crate::buf::OutBuf::new(),
            inbuf: Vec::new(),
            fds: std::collections::VecDeque::new(),
            asked: std::collections::VecDeque::new(),
            dead: false,
        })
    }

    /// The helper's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Its socket, for the poller.
    pub fn source(&mut self) -> &mut mio::net::UnixStream {
        &mut self.sock
    }

    /// Requests asked and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.asked.len()
    }

    /// Asks for message `id` to be delivered to `user` (their mailbox, or what
    /// their `.forward` says).
    pub fn start_mailbox(&mut self, id: MessageId, user: &str, tag: T) {
        self.ask(&format!("D {id} {user}\n"), tag);
    }

    /// Asks for recipient `idx` of message `id`, a file or command target of an
    /// alias, to be delivered (the helper finds the target and whom it runs as).
    pub fn start_target(&mut self, id: MessageId, idx: usize, tag: T) {
        self.ask(&format!("X {id} {idx}\n"), tag);
    }

    fn ask(&mut self, request: &str, tag: T) {
        self.out.extend_from_slice(request.as_bytes());
        self.asked.push_back(tag);
        self.flush();
    }

    /// Writes what it can of the requests.
    pub fn flush(&mut self) {
        if !self.dead && !self.out.write_to(&mut self.sock) {
            self.dead = true;
        }
    }

    /// The answers that came: each request's tag, with its verdict or the socket
    /// its verdict will come on. Sets `dead` when the helper is gone.
    pub fn read(&mut self) -> Vec<(T, Started)> {
        use std::os::fd::AsRawFd;
        let mut out = Vec::new();
        loop {
            let mut buf = [0u8; 64];
            match crate::sys::recv_with_fds(self.sock.as_raw_fd(), &mut buf) {
                Ok((0, _)) => {
                    self.dead = true;
                    break;
                }
                Ok((n, fds)) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    self.fds.extend(fds);
                    if self.inbuf.len() > 4 * MAX_LINE {
                        self.dead = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        while let Some(i) = self.inbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.inbuf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line).into_owned();
            let Some(tag) = self.asked.pop_front() else {
                // An answer nobody asked for: not the helper speaking.
                self.dead = true;
                break;
            };
            let started = if line == "P\n" {
                match self.fds.pop_front() {
                    Some(fd) => Started::Running(UnixStream::from(fd)),
                    None => Started::Done(LocalResult::Deferred(
                        "4.3.0 the delivery helper sent no verdict socket".into(),
                    )),
                }
            } else {
                Started::Done(parse_verdict(&line))
            };
            out.push((tag, started));
        }
        out
    }

    /// What was asked and will now never be answered (the helper died).
    pub fn take_unanswered(&mut self) -> Vec<T> {
        self.asked.drain(..).collect()
    }
}

/// A verdict line as a result.
pub fn parse_verdict(line: &str) -> LocalResult {
    let line = line.trim_end_matches('\n');
    match line.split_once(' ').unwrap_or((line, "")) {
        ("D", "") => LocalResult::Delivered,
        ("D", what) => LocalResult::DeliveredAs(what.to_string()),
        ("W", to) => LocalResult::Forward(
            to.split(' ')
                .filter(|t| !t.is_empty())
                .take(crate::local::targets::MAX_FORWARD_TARGETS)
                .map(str::to_string)
                .collect(),
        ),
        ("T", why) => LocalResult::Deferred(why.to_string()),
        ("F", rest) => {
            let (status, why) = rest.split_once(' ').unwrap_or(("5.0.0", rest));
            LocalResult::Failed(status.to_string(), why.to_string())
        }
        _ => LocalResult::Deferred("4.3.0 bad verdict from the delivery helper".into()),
    }
}

fn verdict(r: &LocalResult) -> String {
    let one = |s: &str| s.replace(['\r', '\n'], " ");
    match r {
        LocalResult::Delivered => "D\n".into(),
        LocalResult::DeliveredAs(what) => format!("D {}\n", one(what)),
        LocalResult::Deferred(w) => format!("T {}\n", one(w)),
        LocalResult::Failed(st, w) => format!("F {} {}\n", one(st), one(w)),
        LocalResult::Forward(to) => {
            let to: Vec<String> = to.iter().map(|t| one(t).replace(' ', "")).collect();
            format!("W {}\n", to.join(" "))
        }
    }
}

/// What the daemon asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `D <id> <user>`: message `id` into `user`'s mailbox.
    Mailbox(MessageId, String),
    /// `X <id> <idx>`: recipient `idx` of message `id`, an alias's file or command.
    Target(MessageId, usize),
}

/// A request line, every part checked.
pub fn parse(line: &str) -> Result<Request, String> {
    let mut w = line.trim_end_matches('\n').split(' ');
    let (Some(verb), Some(id), Some(arg), None) = (w.next(), w.next(), w.next(), w.next()) else {
        return Err("bad request".into());
    };
    let id = (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(id, 16).ok())
        .flatten()
        .map(MessageId)
        .ok_or("bad message id")?;
    match verb {
        "D" => check_user(arg).map(|u| Request::Mailbox(id, u)),
        "X" => arg
            .parse::<usize>()
            .ok()
            .filter(|i| *i < 1_000_000 && arg.bytes().all(|b| b.is_ascii_digit()))
            .map(|i| Request::Target(id, i))
            .ok_or_else(|| "bad recipient index".into()),
        _ => Err("bad request".into()),
    }
}

/// A request line: `D <id> <user>`, both checked.
pub fn parse_request(line: &str) -> Result<(MessageId, String), String> {
    match parse(line)? {
        Request::Mailbox(id, user) => Ok((id, user)),
        Request::Target(..) => Err("bad request".into()),
    }
}

/// An account name as the helper takes it: no path, no option, nothing odd.
fn check_user(user: &str) -> Result<String, String> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && !user.starts_with(['.', '-'])
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(format!("bad user name '{}'", user.escape_debug()));
    }
    Ok(user.to_string())
}

/// The helper's loop: one request, one verdict, until the daemon goes away.
pub fn serve(sock: UnixStream, conf: &HelperConf) {
    let mut writer = match sock.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(sock);
    let mut seq = 0u64;
    loop {
        let mut line = String::new();
        match (&mut reader).take(MAX_LINE as u64).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        seq += 1;
        let started = match parse(&line) {
            Ok(Request::Mailbox(id, user)) => deliver(conf, id, &user, seq),
            Ok(Request::Target(id, idx)) => deliver_target(conf, id, idx),
            Err(e) => LocalResult::Deferred(format!("4.3.0 helper: {e}")).into(),
        };
        let result = match started {
            Started::Done(r) => r,
            Started::Running(s) => {
                // "P" and the verdict socket: the daemon reads the verdict.
                use std::os::fd::AsRawFd;
                if crate::sys::send_fd_connected(writer.as_raw_fd(), b"P\n", s.as_raw_fd()).is_err()
                {
                    return;
                }
                continue;
            }
        };
        if writer.write_all(verdict(&result).as_bytes()).is_err() {
            return;
        }
    }
}

/// One delivery: read the message as root, prepare the top mailbox, then a child
/// that is the recipient does the rest.
fn deliver(conf: &HelperConf, id: MessageId, user: &str, seq: u64) -> Started {
    // The helper is its own process: a lookup here blocks no loop.
    let Some((uid, gid, home)) = crate::sys::user(user) else {
        return LocalResult::Failed(
            "5.1.1".into(),
            format!("no account '{user}' on this system"),
        )
        .into();
    };
    let (env, body) = match read_message(conf, id) {
        Ok(x) => x,
        Err(r) => return r.into(),
    };
    // A home mailbox is made by the child, being the user, in the user's home: root
    // never touches a home.
    let in_home = conf.mailbox.is_relative();
    if !in_home {
        if let Err(e) = prepare_top(conf, user, uid, gid) {
            return LocalResult::Deferred(format!(
                "4.3.0 mailbox for {user}: {}",
                crate::vocab::os_error(&e)
            ))
            .into();
        }
    }
    let gid = if in_home {
        gid
    } else {
        crate::local::delivery_gid(&conf.mailbox, conf.maildir, gid)
    };
    as_user(conf, (&env, &body), (uid, gid, user), |m| {
        let account = crate::accounts::Account {
            uid,
            gid,
            home: home.clone(),
        };
        // The recipient's own `.forward`, read as the recipient.
        match crate::local::targets::forward_file(Path::new(&home), uid) {
            None => {}
            Some(Err(why)) => {
                log::warn!("local forward-refused user={user} reason=\"{why}\"");
                return LocalResult::Deferred(format!("4.3.0 {why}"));
            }
            Some(Ok(list)) => {
                let mailbox = (conf.mailbox.as_path(), conf.maildir, seq);
                return crate::local::targets::forward(&list, user, &account, mailbox, m);
            }
        }
        crate::local::deliver(&conf.mailbox, conf.maildir, user, Some(&account), m, seq)
    })
}

/// Reads a queued message as root, checking first that it is a plain file no
/// larger than a message may be.
fn read_message(
    conf: &HelperConf,
    id: MessageId,
) -> Result<(crate::store::spool::Envelope, crate::store::spool::Body), LocalResult> {
    let spool = crate::store::spool::Spool::at(&conf.postoffice);
    // The file is the daemon's; a message is never larger than the limit allows.
    let limit = conf
        .max_message_size
        .saturating_mul(2)
        .saturating_add(1 << 20);
    match std::fs::symlink_metadata(spool.queue_path(id)) {
        Ok(m) if m.is_file() && m.len() <= limit => {}
        Ok(_) => {
            return Err(LocalResult::Deferred(
                "4.3.0 the queue file is not a plain file".into(),
            ))
        }
        Err(e) => {
            return Err(LocalResult::Deferred(format!(
                "4.3.0 cannot read queue file: {e}"
            )))
        }
    }
    spool
        .open_message(id)
        .map_err(|e| LocalResult::Deferred(format!("4.3.0 cannot read queue file: {e}")))
}

/// An alias's file or command target: which one is read from the queue file, whom
/// it runs as from the aliases file, both by the helper itself.
fn deliver_target(conf: &HelperConf, id: MessageId, idx: usize) -> Started {
    use crate::local::targets::Target;
    let (env, body) = match read_message(conf, id) {
        Ok(x) => x,
        Err(r) => return r.into(),
    };
    let Some(r) = env.recipients.get(idx) else {
        return LocalResult::Deferred(format!("4.3.0 message {id} has no recipient {idx}")).into();
    };
    let crate::store::spool::Destination::Local(name) = &r.dest else {
        return LocalResult::Deferred("4.3.0 not a local recipient".into()).into();
    };
    let Some(target) = Target::of(name) else {
        return LocalResult::Deferred("4.3.0 not a file or command target".into()).into();
    };
    if target == Target::Discard {
        return LocalResult::Delivered.into();
    }
    let (uid, gid, home, user) = match crate::local::targets::run_as(&conf.aliases, target) {
        Ok(a) => a,
        Err(why) => return LocalResult::Deferred(format!("4.3.0 {name}: {why}")).into(),
    };
    let rcpt = r.address.to_string();
    as_user(conf, (&env, &body), (uid, gid, &user), |m| {
        crate::local::targets::deliver(target, m, ((uid, gid), &home, &user), &rcpt)
    })
}

/// Starts a delivery in a child that has become `uid`/`gid` for good; `f` gets the
/// message.
fn as_user(
    conf: &HelperConf,
    (env, body): (&crate::store::spool::Envelope, &crate::store::spool::Body),
    (uid, gid, user): (u32, u32, &str),
    f: impl FnOnce(&LocalMessage<'_>) -> LocalResult,
) -> Started {
    let started = fork_verdict(&[body.raw_fd()], || {
        if let Err(e) = crate::sys::become_user(uid, gid) {
            return LocalResult::Deferred(format!(
                "4.3.0 cannot become {user}: {}",
                crate::vocab::os_error(&e)
            ));
        }
        f(&LocalMessage {
            sender: &env.sender,
            arrival: env.arrival,
            body,
            hostname: &conf.hostname,
        })
    });
    match started {
        Ok(s) => Started::Running(s),
        Err(e) => Started::Done(LocalResult::Deferred(format!(
            "4.3.0 helper: fork: {}",
            crate::vocab::os_error(&e)
        ))),
    }
}

/// A delivery: already decided, or running with its verdict to come on the socket
/// (which goes to the daemon).
#[derive(Debug)]
pub enum Started {
    /// The verdict.
    Done(LocalResult),
    /// The read end of the running delivery's verdict.
    Running(UnixStream),
}

impl From<LocalResult> for Started {
    fn from(r: LocalResult) -> Started {
        Started::Done(r)
    }
}

/// Runs `f` in a grandchild (a double fork: nothing is left to reap), with every
/// descriptor closed but its verdict socket and `keep`, and returns the socket its
/// verdict line will come on. Commands can take long; neither the helper nor the
/// daemon waits for them.
pub fn fork_verdict(
    keep: &[std::os::fd::RawFd],
    f: impl FnOnce() -> LocalResult,
) -> io::Result<UnixStream> {
    use std::os::fd::AsRawFd;
    let (ours, mut theirs) = crate::sys::socketpair()?;
    match crate::sys::fork()? {
        crate::sys::Forked::Child => {
            drop(ours);
            if let Ok(crate::sys::Forked::Child) = crate::sys::fork() {
                let mut fds = keep.to_vec();
                fds.push(theirs.as_raw_fd());
                crate::sys::close_other_fds(&fds);
                let r = f();
                let _ = theirs.write_all(verdict(&r).as_bytes());
            }
            crate::sys::exit_child(0)
        }
        crate::sys::Forked::Parent(pid) => {
            drop(theirs);
            crate::sys::wait_child(pid, Duration::from_secs(5));
            Ok(ours)
        }
    }
}

/// Makes the top of `user`'s mailbox if it is missing — the mbox file, or the
/// Maildir folder — owned by the user, so that the child, being the user, can do the
/// rest where the mail directory is root's. Only ever creates (`O_EXCL`, `mkdirat`)
/// and changes what it just created through its own descriptor: an existing name is
/// left for the child to check.
fn prepare_top(conf: &HelperConf, user: &str, uid: u32, gid: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    crate::local::make_mail_root(&conf.mailbox)?;
    let root = std::fs::File::open(&conf.mailbox)?;
    if conf.maildir {
        match crate::sys::mkdir_at(&root, user, 0o700) {
            Ok(()) => {
                let d = crate::sys::open_dir_at(&root, user)?;
                crate::sys::chown_fd(&d, uid, gid)?;
                d.set_permissions(std::fs::Permissions::from_mode(0o700))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    } else {
        match crate::sys::create_at(&root, user, 0o600) {
            Ok(f) => {
                let (mode, group) =
                    crate::local::new_mbox_mode(Path::new(&conf.mailbox), (uid, gid));
                crate::sys::chown_fd(&f, uid, group)?;
                f.set_permissions(std::fs::Permissions::from_mode(mode))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        assert_eq!(
            parse_request("D 0000018c2f3a4b5c alice\n"),
            Ok((MessageId(0x18c2f3a4b5c), "alice".into()))
        );
        for bad in [
            "D 18c2f3a4b5c alice\n",
            "D 0000018c2f3a4b5c ../etc\n",
            "D 0000018c2f3a4b5c a/b\n",
            "D 0000018c2f3a4b5c .x\n",
            "D 0000018c2f3a4b5c\n",
            "D 0000018c2f3a4b5c a b\n",
            "X 0000018c2f3a4b5c a\n",
            "D 000001xc2f3a4b5c a\n",
            "",
        ] {
            assert!(parse_request(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn verdicts_round_trip() {
        for r in [
            LocalResult::Delivered,
            LocalResult::Deferred("4.2.0 locked\nsecond line".into()),
            LocalResult::Failed("5.1.1".into(), "no such user".into()),
        ] {
            let back = parse_verdict(&verdict(&r));
            match (&r, &back) {
                (LocalResult::Deferred(a), LocalResult::Deferred(b)) => {
                    assert_eq!(a.replace('\n', " "), *b)
                }
                _ => assert_eq!(r, back),
            }
        }
        assert!(matches!(parse_verdict("?"), LocalResult::Deferred(_)));
    }
}
