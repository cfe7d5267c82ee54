//! Local mailbox delivery under `MAILBOX`: mbox files, or Maildirs when `MAILBOX`
//! ends in `/`.
//!
//! mbox (`MAILBOX/<user>`): a dot lock (`<user>.lock`, created exclusively; a stale
//! one older than 5 minutes is broken) and an fcntl lock, as BSD and Linux mail
//! readers expect; a `From sender date` line, mboxrd `>From ` quoting, LF line ends, a
//! blank line after the message; fsync; on any write failure the file is truncated
//! back so it is never left torn. A lock held by someone else defers the delivery.
//!
//! Maildir (`MAILBOX/<user>/`): write to `tmp/<unique>`, fsync, rename to
//! `new/<unique>`, fsync `new/`.
//!
//! Files are created mode 0600 and, when running as root, given to the recipient.
//! Synchronous file I/O in the loop, like the spool: small and bounded.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::smtp::{fmt_path, ReversePath};

/// How long a dot lock may be held before it counts as stale.
pub const STALE_LOCK: Duration = Duration::from_secs(300);

/// The outcome of one local delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalResult {
    /// In the mailbox.
    Delivered,
    /// Try again later (lock held, disk trouble).
    Deferred(String),
    /// Permanent (no such account): status and reason.
    Failed(String, String),
}

/// What to deliver.
pub struct LocalMessage<'a> {
    /// Envelope sender.
    pub sender: &'a ReversePath,
    /// Arrival time (Unix).
    pub arrival: u64,
    /// Stored message (CR LF line ends).
    pub data: &'a [u8],
    /// Our host name (Maildir names).
    pub hostname: &'a str,
}

/// The message with LF line ends, a `Return-Path:` header first, and (for mbox)
/// `From ` lines quoted.
fn render(m: &LocalMessage<'_>, mbox: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.data.len() + 200);
    out.extend_from_slice(format!("Return-Path: {}\n", fmt_path(m.sender)).as_bytes());
    for line in m.data.split_inclusive(|&b| b == b'\n') {
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if mbox {
            let gt = content.iter().take_while(|&&b| b == b'>').count();
            if content[gt..].starts_with(b"From ") {
                out.push(b'>');
            }
        }
        out.extend_from_slice(content);
        out.push(b'\n');
    }
    out
}

fn mkdir(p: &Path) -> io::Result<()> {
    if !p.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(p)?;
    }
    Ok(())
}

fn give(f: &File, owner: Option<(u32, u32)>) -> io::Result<()> {
    match owner {
        Some((uid, gid)) if crate::sys::is_root() => crate::sys::chown_fd(f, uid, gid),
        _ => Ok(()),
    }
}

/// Delivers `m` to `user`'s mailbox under `root`.
pub fn deliver(
    root: &Path,
    maildir: bool,
    user: &str,
    m: &LocalMessage<'_>,
    seq: u64,
) -> LocalResult {
    let owner = match crate::sys::user(user) {
        Some((uid, gid, _)) => Some((uid, gid)),
        None => {
            return LocalResult::Failed(
                "5.1.1".into(),
                format!("no account '{user}' on this system"),
            )
        }
    };
    if user.contains('/') || user.starts_with('.') || user.is_empty() {
        return LocalResult::Failed("5.1.3".into(), format!("bad mailbox name '{user}'"));
    }
    let r = if maildir {
        deliver_maildir(&root.join(user), m, owner, seq)
    } else {
        deliver_mbox(root, &root.join(user), m, owner)
    };
    match r {
        Ok(r) => r,
        Err(e) => LocalResult::Deferred(format!("4.3.0 mailbox for {user}: {e}")),
    }
}

fn deliver_maildir(
    dir: &Path,
    m: &LocalMessage<'_>,
    owner: Option<(u32, u32)>,
    seq: u64,
) -> io::Result<LocalResult> {
    for sub in ["", "tmp", "new", "cur"] {
        mkdir(&dir.join(sub))?;
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let name = format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        seq,
        m.hostname.replace(['/', ':'], "_")
    );
    let tmp = dir.join("tmp").join(&name);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    give(&f, owner)?;
    let r = f.write_all(&render(m, false)).and_then(|()| f.sync_all());
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let new = dir.join("new").join(&name);
    fs::rename(&tmp, &new)?;
    File::open(dir.join("new"))?.sync_all()?;
    Ok(LocalResult::Delivered)
}

/// Holds a dot lock; removes it on drop.
struct DotLock(PathBuf);

impl Drop for DotLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn dot_lock(path: &Path) -> io::Result<Option<DotLock>> {
    let lock = PathBuf::from(format!("{}.lock", path.display()));
    for _ in 0..2 {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&lock)
        {
            Ok(_) => return Ok(Some(DotLock(lock))),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let stale = fs::metadata(&lock)
                    .and_then(|md| md.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_LOCK);
                if !stale {
                    return Ok(None);
                }
                log::warn!("local stale-lock-removed file={}", lock.display());
                let _ = fs::remove_file(&lock);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

fn deliver_mbox(
    root: &Path,
    path: &Path,
    m: &LocalMessage<'_>,
    owner: Option<(u32, u32)>,
) -> io::Result<LocalResult> {
    mkdir(root)?;
    let Some(_dot) = dot_lock(path)? else {
        return Ok(LocalResult::Deferred(
            "4.2.0 mailbox is locked (dot lock)".into(),
        ));
    };
    let existed = path.exists();
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    if !existed {
        give(&f, owner)?;
    }
    if !crate::sys::try_lock(&f)? {
        return Ok(LocalResult::Deferred(
            "4.2.0 mailbox is locked (fcntl)".into(),
        ));
    }
    let start = f.metadata()?.len();
    let sender = match m.sender {
        Some(s) => s.to_string(),
        None => "MAILER-DAEMON".into(),
    };
    let mut data = format!("From {sender} {}\n", asctime(m.arrival)).into_bytes();
    data.extend_from_slice(&render(m, true));
    data.push(b'\n');
    let r = f.write_all(&data).and_then(|()| f.sync_all());
    if let Err(e) = r {
        // Never leave a torn message: cut the file back to where it was.
        let _ = f.set_len(start);
        let _ = f.sync_all();
        crate::sys::unlock(&f);
        return Err(e);
    }
    crate::sys::unlock(&f);
    Ok(LocalResult::Delivered)
}

/// `Sat Nov 28 13:45:51 2026`, the date of an mbox `From ` line (UTC).
fn asctime(unix: u64) -> String {
    // rfc5322_date gives "Sat, 28 Nov 2026 13:45:51 +0000".
    let d = crate::smtp::trace::rfc5322_date(unix);
    let w: Vec<&str> = d.split_whitespace().collect();
    match w.as_slice() {
        [day, dd, mon, yyyy, time, _] => {
            format!(
                "{} {} {:>2} {} {}",
                day.trim_end_matches(','),
                mon,
                dd,
                time,
                yyyy
            )
        }
        _ => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<'a>(sender: &'a ReversePath, data: &'a [u8]) -> LocalMessage<'a> {
        LocalMessage {
            sender,
            arrival: 1_795_873_551,
            data,
            hostname: "mx.test",
        }
    }

    #[test]
    fn render_quotes_from_lines_for_mbox() {
        let s = Some(crate::smtp::Mailbox::parse("a@b.example").unwrap());
        let out = render(
            &msg(&s, b"Subject: x\r\n\r\nFrom here\r\n>From there\r\nok\r\n"),
            true,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Return-Path: <a@b.example>\nSubject: x\n\n>From here\n>>From there\nok\n"
        );
    }

    #[test]
    fn asctime_format() {
        assert_eq!(asctime(1_795_873_551), "Sat Nov 28 13:45:51 2026");
    }

    #[test]
    fn unknown_account_fails() {
        let s = None;
        let r = deliver(
            Path::new("/nonexistent"),
            false,
            "no-such-user-xyz",
            &msg(&s, b"x\r\n"),
            0,
        );
        assert!(matches!(r, LocalResult::Failed(..)));
    }
}
