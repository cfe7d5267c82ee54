//! The privileged helper (DESIGN.md §2): a small process that keeps root when the
//! network-facing daemon gives it up, and delivers into local mailboxes as their
//! recipients.
//!
//! ```text
//!   daemon (USER, serves the network)          helper (root, parses nothing of it)
//!       |  "D <16-hex id> <user>\n"  ------>   checks the user is an account and the
//!       |                                      id a queue name; reads
//!       |                                      POSTOFFICE/queue/<id> itself (its own
//!       |                                      path, verified like the spool does);
//!       |                                      makes the top mailbox (mbox file or
//!       |                                      Maildir folder) if missing, owned by
//!       |                                      the user; forks a child that becomes
//!       |                                      the user and delivers (local.rs, the
//!       |                                      safe-open way)
//!       |  <------  "D\n" | "T reason\n" | "F status reason\n"
//! ```
//!
//! What crosses the socket is one request line (a message id and an account name)
//! and one verdict line; no path, no message text. The helper reads the queue file
//! with the spool's own decoder (a file the daemon wrote, checked by its CRC) and
//! never looks at network input otherwise. A child that takes longer than
//! [`DELIVERY_LIMIT`] is killed and the delivery deferred. The daemon waits for the
//! verdict (local delivery was already synchronous in the loop, and every step of it
//! is non-blocking file I/O), with [`VERDICT_LIMIT`] as a bound.
//!
//! Does not: read configuration after it started, accept anything but the one
//! request, or run anything as root on a path a user could have replaced.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::local::{LocalMessage, LocalResult};
use crate::spool::MessageId;

/// Longest request or verdict line.
pub const MAX_LINE: usize = 1024;
/// How long one delivery child may take.
pub const DELIVERY_LIMIT: Duration = Duration::from_secs(60);
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
}

/// The daemon's end: one request at a time.
#[derive(Debug)]
pub struct Helper {
    sock: BufReader<UnixStream>,
    pid: i32,
}

impl Helper {
    /// Forks the helper (call as root, before dropping privileges). The child never
    /// returns from here.
    pub fn spawn(conf: HelperConf) -> io::Result<Helper> {
        let (ours, pid) = crate::sys::fork_server(|theirs| serve(theirs, &conf))?;
        ours.set_read_timeout(Some(VERDICT_LIMIT))?;
        ours.set_write_timeout(Some(VERDICT_LIMIT))?;
        Ok(Helper {
            sock: BufReader::new(ours),
            pid,
        })
    }

    /// The helper's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Asks for message `id` to be delivered to `user`'s mailbox.
    pub fn deliver(&mut self, id: MessageId, user: &str) -> LocalResult {
        match self.ask(&format!("D {id} {user}\n")) {
            Ok(line) => parse_verdict(&line),
            Err(e) => LocalResult::Deferred(format!("4.3.0 the delivery helper failed: {e}")),
        }
    }

    fn ask(&mut self, request: &str) -> io::Result<String> {
        self.sock.get_mut().write_all(request.as_bytes())?;
        let mut line = String::new();
        let n = (&mut self.sock)
            .take(MAX_LINE as u64)
            .read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "no verdict from the helper",
            ));
        }
        Ok(line)
    }
}

/// A verdict line as a result.
pub fn parse_verdict(line: &str) -> LocalResult {
    let line = line.trim_end_matches('\n');
    match line.split_once(' ').unwrap_or((line, "")) {
        ("D", _) => LocalResult::Delivered,
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
        LocalResult::Deferred(w) => format!("T {}\n", one(w)),
        LocalResult::Failed(st, w) => format!("F {} {}\n", one(st), one(w)),
    }
}

/// A request line: `D <id> <user>`, both checked.
pub fn parse_request(line: &str) -> Result<(MessageId, String), String> {
    let mut w = line.trim_end_matches('\n').split(' ');
    let (Some("D"), Some(id), Some(user), None) = (w.next(), w.next(), w.next(), w.next()) else {
        return Err("bad request".into());
    };
    let id = (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(id, 16).ok())
        .flatten()
        .map(MessageId)
        .ok_or("bad message id")?;
    let ok = !user.is_empty()
        && user.len() <= 64
        && !user.starts_with(['.', '-'])
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(format!("bad user name '{}'", user.escape_debug()));
    }
    Ok((id, user.to_string()))
}

/// The helper's loop: one request, one verdict, until the daemon goes away.
fn serve(sock: UnixStream, conf: &HelperConf) {
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
        let result = match parse_request(&line) {
            Ok((id, user)) => deliver(conf, id, &user, seq),
            Err(e) => LocalResult::Deferred(format!("4.3.0 helper: {e}")),
        };
        if writer.write_all(verdict(&result).as_bytes()).is_err() {
            return;
        }
    }
}

/// One delivery: read the message as root, prepare the top mailbox, then a child
/// that is the recipient does the rest.
fn deliver(conf: &HelperConf, id: MessageId, user: &str, seq: u64) -> LocalResult {
    // The helper is its own process: a lookup here blocks no loop.
    let Some((uid, gid, home)) = crate::sys::user(user) else {
        return LocalResult::Failed(
            "5.1.1".into(),
            format!("no account '{user}' on this system"),
        );
    };
    let spool = crate::spool::Spool::at(&conf.postoffice);
    // The file is the daemon's; a message is never larger than the limit allows.
    let limit = conf
        .max_message_size
        .saturating_mul(2)
        .saturating_add(1 << 20);
    match std::fs::symlink_metadata(spool.queue_path(id)) {
        Ok(m) if m.is_file() && m.len() <= limit => {}
        Ok(_) => return LocalResult::Deferred("4.3.0 the queue file is not a plain file".into()),
        Err(e) => return LocalResult::Deferred(format!("4.3.0 cannot read queue file: {e}")),
    }
    let (env, body) = match spool.open_message(id) {
        Ok(x) => x,
        Err(e) => return LocalResult::Deferred(format!("4.3.0 cannot read queue file: {e}")),
    };
    // A home mailbox is made by the child, being the user, in the user's home: root
    // never touches a home.
    let in_home = conf.mailbox.is_relative();
    if !in_home {
        if let Err(e) = prepare_top(conf, user, uid, gid) {
            return LocalResult::Deferred(format!("4.3.0 mailbox for {user}: {e}"));
        }
    }
    let (mut ours, mut theirs) = match crate::sys::socketpair() {
        Ok(p) => p,
        Err(e) => return LocalResult::Deferred(format!("4.3.0 helper: {e}")),
    };
    match crate::sys::fork() {
        Err(e) => LocalResult::Deferred(format!("4.3.0 helper: fork: {e}")),
        Ok(crate::sys::Forked::Child) => {
            drop(ours);
            let gid = if in_home {
                gid
            } else {
                crate::local::delivery_gid(&conf.mailbox, conf.maildir, gid)
            };
            let r = match crate::sys::become_user(uid, gid) {
                Ok(()) => crate::local::deliver(
                    &conf.mailbox,
                    conf.maildir,
                    user,
                    Some(&crate::accounts::Account { uid, gid, home }),
                    &LocalMessage {
                        sender: &env.sender,
                        arrival: env.arrival,
                        body: &body,
                        hostname: &conf.hostname,
                    },
                    seq,
                ),
                Err(e) => LocalResult::Deferred(format!("4.3.0 cannot become {user}: {e}")),
            };
            let _ = theirs.write_all(verdict(&r).as_bytes());
            crate::sys::exit_child(0)
        }
        Ok(crate::sys::Forked::Parent(pid)) => {
            drop(theirs);
            let _ = ours.set_read_timeout(Some(DELIVERY_LIMIT));
            let mut line = String::new();
            let got = BufReader::new(&mut ours)
                .take(MAX_LINE as u64)
                .read_line(&mut line);
            let exited = crate::sys::wait_child(pid, Duration::from_secs(1));
            match (got, exited) {
                (Ok(n), _) if n > 0 && line.ends_with('\n') => parse_verdict(&line),
                _ => {
                    crate::sys::wait_child(pid, Duration::ZERO);
                    LocalResult::Deferred(format!(
                        "4.3.0 the delivery to {user} did not finish within {} s",
                        DELIVERY_LIMIT.as_secs()
                    ))
                }
            }
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
