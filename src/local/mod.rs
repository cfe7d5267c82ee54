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
//! Local users are untrusted (DESIGN.md §5.7): the mailbox and every Maildir folder
//! are opened the way Postfix's `safe_open` does it — lstat, open with
//! `O_NOFOLLOW|O_NONBLOCK` (folders with `openat` relative to their parent), fstat
//! and compare device, inode, type, link count and owner — and created with
//! `O_EXCL`. A mailbox that is a link, a FIFO, a device, a directory, has other
//! links, or belongs to someone other than the recipient (ourselves when not root)
//! defers the delivery with the reason logged: nothing is ever written through a name
//! a user could have replaced. New mailboxes belong to the recipient: an mbox 0600
//! (0660 group mail where the mail directory is group mail and group-writable), a
//! Maildir and its folders 0700. Synchronous file I/O in the loop, like the spool:
//! small, bounded, and never blocking (the open is non-blocking).

pub mod helper;
pub mod supervisor;
pub mod targets;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::vocab::{fmt_path, ReversePath};

/// How long a dot lock may be held before it counts as stale.
pub const STALE_LOCK: Duration = Duration::from_secs(300);

/// The outcome of one local delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalResult {
    /// In the mailbox.
    Delivered,
    /// Delivered, as this says (a `.forward` that kept a copy, ran a command,
    /// filed it): the text of its delivery line.
    DeliveredAs(String),
    /// Try again later (lock held, disk trouble).
    Deferred(String),
    /// Permanent (no such account): status and reason.
    Failed(String, String),
    /// The recipient's `.forward` sends it on to these addresses (or local names):
    /// the daemon queues a copy for them.
    Forward(Vec<String>),
}

/// What to deliver.
pub struct LocalMessage<'a> {
    /// Envelope sender.
    pub sender: &'a ReversePath,
    /// Arrival time (Unix).
    pub arrival: u64,
    /// Stored message (CR LF line ends), read in pieces.
    pub body: &'a crate::store::spool::Body,
    /// Our host name (Maildir names).
    pub hostname: &'a str,
}

/// Writes the message with LF line ends, a `Return-Path:` header first, and (for
/// mbox) `From ` lines quoted mboxrd-style, streaming from the queue file: the state
/// between pieces is a few counters, never a line.
pub(crate) fn render(m: &LocalMessage<'_>, mbox: bool, out: &mut impl Write) -> io::Result<()> {
    out.write_all(format!("Return-Path: {}\n", fmt_path(m.sender)).as_bytes())?;
    let mut r = LfRender::new(mbox);
    let mut buf = vec![0u8; crate::store::spool::body::CHUNK];
    let mut at = 0u64;
    loop {
        let n = m.body.read_at(at, &mut buf)?;
        if n == 0 {
            break;
        }
        at += n as u64;
        r.feed(&buf[..n], out)?;
    }
    r.finish(out)
}

/// CR LF to LF, with mboxrd quoting of `>*From ` at a line start, in pieces.
struct LfRender {
    mbox: bool,
    pending_cr: bool,
    /// At a line start, how much of `>*From ` has been seen and held back: the
    /// number of `>` and of `From ` octets (`usize::MAX` once the line is decided).
    gts: usize,
    from: usize,
    decided: bool,
    /// Something of the current line was seen (its LF is still to come).
    open_line: bool,
}

const FROM: &[u8] = b"From ";

impl LfRender {
    fn new(mbox: bool) -> LfRender {
        LfRender {
            mbox,
            pending_cr: false,
            gts: 0,
            from: 0,
            decided: !mbox,
            open_line: false,
        }
    }

    /// Writes what was held back at the line start, quoted if it was `>*From `.
    fn release(&mut self, quote: bool, out: &mut impl Write) -> io::Result<()> {
        if quote {
            out.write_all(b">")?;
        }
        for _ in 0..self.gts {
            out.write_all(b">")?;
        }
        out.write_all(&FROM[..self.from])?;
        self.gts = 0;
        self.from = 0;
        self.decided = true;
        Ok(())
    }

    fn content(&mut self, mut run: &[u8], out: &mut impl Write) -> io::Result<()> {
        self.open_line |= !run.is_empty();
        while !self.decided && !run.is_empty() {
            let b = run[0];
            if self.from == 0 && b == b'>' {
                self.gts += 1;
            } else if b == FROM[self.from] {
                self.from += 1;
                if self.from == FROM.len() {
                    self.release(true, out)?;
                }
            } else {
                self.release(false, out)?;
                break;
            }
            run = &run[1..];
        }
        if !run.is_empty() {
            out.write_all(run)?;
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut impl Write) -> io::Result<()> {
        if !self.decided {
            self.release(false, out)?;
        }
        out.write_all(b"\n")?;
        self.decided = !self.mbox;
        self.open_line = false;
        Ok(())
    }

    fn feed(&mut self, mut data: &[u8], out: &mut impl Write) -> io::Result<()> {
        while !data.is_empty() {
            if self.pending_cr {
                self.pending_cr = false;
                if data[0] == b'\n' {
                    self.end_line(out)?;
                    data = &data[1..];
                    continue;
                }
                self.content(b"\r", out)?;
            }
            match data.iter().position(|&b| b == b'\r' || b == b'\n') {
                None => return self.content(data, out),
                Some(i) => {
                    self.content(&data[..i], out)?;
                    if data[i] == b'\n' {
                        self.end_line(out)?;
                    } else {
                        self.pending_cr = true;
                    }
                    data = &data[i + 1..];
                }
            }
        }
        Ok(())
    }

    /// The last line always ends with LF (as the whole-message version did).
    fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        if self.pending_cr {
            self.pending_cr = false;
            self.content(b"\r", out)?;
        }
        if self.open_line {
            self.end_line(out)?;
        }
        Ok(())
    }
}

/// Makes the mail directory (`MAILBOX`) if it is missing: 0755, so that delivery
/// children, being the recipients, can reach their own mailboxes in it.
pub fn make_mail_root(p: &Path) -> io::Result<()> {
    if !p.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(p)?;
    }
    Ok(())
}

/// The group a delivery child runs with: `mail` where the mbox directory is group
/// mail and group-writable (so it can make its dot lock there), else the
/// recipient's own.
pub fn delivery_gid(root: &Path, maildir: bool, own: u32) -> u32 {
    if maildir {
        return own;
    }
    match new_mbox_mode(root, (0, own)) {
        (0o660, mail) => mail,
        _ => own,
    }
}

/// The recipient's account: uid, gid.
pub type Owner = (u32, u32);

/// Who must own an existing mailbox: the recipient when we run as root (we create
/// them so), else ourselves (an unprivileged daemon creates them as itself).
fn expected_uid(owner: Owner) -> u32 {
    if crate::sys::is_root() {
        owner.0
    } else {
        crate::sys::euid()
    }
}

/// Gives a file or folder we just created to the recipient, with exactly `mode`.
fn give(f: &File, owner: Owner, gid: u32, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if crate::sys::is_root() {
        crate::sys::chown_fd(f, owner.0, gid)?;
    }
    f.set_permissions(fs::Permissions::from_mode(mode))
}

/// Why an opened mailbox (or folder) is refused, comparing it with what lstat saw
/// before the open; `None` if it is the recipient's own, unlinked, of the kind wanted.
fn refuse_opened(f: &File, seen: Option<&fs::Metadata>, dir: bool, uid: u32) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = match f.metadata() {
        Ok(m) => m,
        Err(e) => return Some(e.to_string()),
    };
    if let Some(seen) = seen {
        if (seen.dev(), seen.ino()) != (m.dev(), m.ino()) {
            return Some("it was replaced while being opened".into());
        }
    }
    if dir != m.is_dir() || (!dir && !m.is_file()) {
        return Some(format!("it is {}", kind(&m)));
    }
    if !dir && m.nlink() != 1 {
        return Some(format!("it has {} links", m.nlink()));
    }
    if m.uid() != uid {
        return Some(format!("it belongs to uid {}, not {uid}", m.uid()));
    }
    None
}

pub(crate) fn kind(m: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_file() {
        "a file"
    } else {
        "not a file"
    }
}

/// A refused mailbox: deferred, so nothing is lost and the operator can look.
fn unsafe_mailbox(what: &str, why: &str) -> LocalResult {
    log::warn!("local unsafe-mailbox path={what} reason=\"{why}\"");
    LocalResult::Deferred(format!("4.2.0 mailbox {what} refused: {why}"))
}

/// Delivers `m` to `user`'s mailbox: `root/<user>` (an mbox, or a Maildir when
/// `maildir`), or, when `root` is relative (`MAILBOX=~/Maildir/`), that path in the
/// user's home, which must be the user's own. Home deliveries are only ever made as
/// the user (the helper's child, or a daemon that is that user).
/// `account` is the user's, from the accounts snapshot (or, in the helper's child, a
/// fresh lookup); `None` fails the recipient.
pub fn deliver(
    root: &Path,
    maildir: bool,
    user: &str,
    account: Option<&crate::accounts::Account>,
    m: &LocalMessage<'_>,
    seq: u64,
) -> LocalResult {
    let (owner, home) = match account {
        Some(a) => ((a.uid, a.gid), a.home.clone()),
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
    let in_home = root.is_relative();
    let (parent, name) = if in_home {
        use std::os::unix::fs::MetadataExt;
        let home = PathBuf::from(home);
        match fs::metadata(&home) {
            Ok(h) if h.is_dir() && h.uid() == owner.0 && crate::sys::euid() == owner.0 => {}
            _ => {
                return unsafe_mailbox(
                    &home.display().to_string(),
                    "a home mailbox needs a home of the user's own, written as the user",
                )
            }
        }
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (home.join(root.parent().unwrap_or(Path::new(""))), name)
    } else {
        (root.to_path_buf(), user.to_string())
    };
    if !in_home {
        if let Err(e) = make_mail_root(&parent) {
            return LocalResult::Deferred(format!(
                "4.3.0 mailbox for {user}: {}",
                crate::vocab::os_error(&e)
            ));
        }
    }
    let r = if maildir {
        deliver_maildir(&parent, &name, m, owner, seq)
    } else {
        deliver_mbox(&parent, &name, m, owner)
    };
    match r {
        Ok(r) => r,
        Err(e) => LocalResult::Deferred(format!(
            "4.3.0 mailbox for {user}: {}",
            crate::vocab::os_error(&e)
        )),
    }
}

/// Appends `m` to the file an alias names (`/path`), as an mbox, the safe way: as
/// for a mailbox, the file must be a plain file with one link, belonging to `owner`
/// (the account the delivery runs as), or is created by it, mode 0600. Call as
/// `owner` (the helper's child) or, unprivileged, as ourselves.
pub fn deliver_file(path: &Path, m: &LocalMessage<'_>, owner: Owner) -> LocalResult {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return LocalResult::Failed(
            "5.3.5".into(),
            format!("bad file target {}", path.display()),
        );
    };
    match deliver_mbox(parent, &name.to_string_lossy(), m, owner) {
        Ok(r) => r,
        Err(e) => LocalResult::Deferred(format!(
            "4.3.0 file {}: {}",
            path.display(),
            crate::vocab::os_error(&e)
        )),
    }
}

/// Opens (creating if needed) Maildir folder `name` in `parent` the safe way.
fn maildir_folder(parent: &File, name: &str, owner: Owner) -> io::Result<Result<File, String>> {
    let created = match crate::sys::mkdir_at(parent, name, 0o700) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(e),
    };
    let f = match crate::sys::open_dir_at(parent, name) {
        Ok(f) => f,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
            return Ok(Err("it is not a directory (a link or a file)".into()))
        }
        Err(e) => return Err(e),
    };
    if created {
        give(&f, owner, owner.1, 0o700)?;
    }
    Ok(match refuse_opened(&f, None, true, expected_uid(owner)) {
        Some(why) => Err(why),
        None => Ok(f),
    })
}

fn deliver_maildir(
    root: &Path,
    user: &str,
    m: &LocalMessage<'_>,
    owner: Owner,
    seq: u64,
) -> io::Result<LocalResult> {
    let base = File::open(root)?;
    let path = root.join(user);
    let top = match maildir_folder(&base, user, owner)? {
        Ok(f) => f,
        Err(why) => return Ok(unsafe_mailbox(&path.display().to_string(), &why)),
    };
    let mut sub = Vec::with_capacity(3);
    for name in ["tmp", "new", "cur"] {
        match maildir_folder(&top, name, owner)? {
            Ok(f) => sub.push(f),
            Err(why) => {
                let what = path.join(name).display().to_string();
                return Ok(unsafe_mailbox(&what, &why));
            }
        }
    }
    let (tmp, new) = (&sub[0], &sub[1]);
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
    let f = crate::sys::create_at(tmp, &name, 0o600)?;
    let r = give(&f, owner, owner.1, 0o600)
        .and_then(|()| {
            let mut w = io::BufWriter::with_capacity(crate::store::spool::body::CHUNK, &f);
            render(m, false, &mut w)?;
            w.flush()
        })
        .and_then(|()| f.sync_all());
    if let Err(e) = r {
        let _ = crate::sys::unlink_at(tmp, &name);
        return Err(e);
    }
    crate::sys::rename_at(tmp, &name, new, &name)?;
    new.sync_all()?;
    Ok(LocalResult::Delivered)
}

/// Holds a dot lock; removes it on drop.
struct DotLock(PathBuf);

impl Drop for DotLock {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.0);
        }
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
            // A mail directory the recipient may not write in: no mail reader there
            // can dot-lock either, so the fcntl lock is the lock.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Ok(Some(DotLock(PathBuf::new())))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // lstat: a link named like the lock is never followed; unlink
                // below removes the name only.
                let stale = fs::symlink_metadata(&lock)
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

/// The mode and group of a new mbox: 0660 group mail where the mail directory is
/// group mail and group-writable (the BSD and Debian layout), else 0600 the
/// recipient's own group.
pub fn new_mbox_mode(root: &Path, owner: Owner) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let mail = crate::sys::group_gid("mail");
    match (fs::metadata(root), mail) {
        (Ok(m), Some(g)) if m.gid() == g && m.mode() & 0o020 != 0 => (0o660, g),
        _ => (0o600, owner.1),
    }
}

fn deliver_mbox(
    root: &Path,
    user: &str,
    m: &LocalMessage<'_>,
    owner: Owner,
) -> io::Result<LocalResult> {
    let path = root.join(user);
    let what = path.display().to_string();
    let Some(_dot) = dot_lock(&path)? else {
        return Ok(LocalResult::Deferred(
            "4.2.0 mailbox is locked (dot lock)".into(),
        ));
    };
    let open = |create: bool| {
        let mut o = OpenOptions::new();
        o.append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
        if create {
            o.create_new(true).mode(0o600);
        }
        o.open(&path)
    };
    let f = match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let f = match open(true) {
                Ok(f) => f,
                // Someone made the name between the lstat and now: look again later.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Ok(unsafe_mailbox(&what, "it appeared while being created"))
                }
                Err(e) => return Err(e),
            };
            let (mode, gid) = new_mbox_mode(root, owner);
            give(&f, owner, gid, mode)?;
            f
        }
        Err(e) => return Err(e),
        Ok(seen) if !seen.file_type().is_file() => {
            return Ok(unsafe_mailbox(&what, &format!("it is {}", kind(&seen))))
        }
        Ok(seen) => {
            use std::os::unix::fs::MetadataExt;
            // What lstat shows already rules out other links and other owners; the
            // fstat after the open is the check that counts.
            if seen.nlink() != 1 || seen.uid() != expected_uid(owner) {
                let why = if seen.nlink() != 1 {
                    format!("it has {} links", seen.nlink())
                } else {
                    format!(
                        "it belongs to uid {}, not {}",
                        seen.uid(),
                        expected_uid(owner)
                    )
                };
                return Ok(unsafe_mailbox(&what, &why));
            }
            let f = match open(false) {
                Ok(f) => f,
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    return Ok(unsafe_mailbox(&what, "it became a symbolic link"))
                }
                Err(e) => return Err(e),
            };
            if let Some(why) = refuse_opened(&f, Some(&seen), false, expected_uid(owner)) {
                return Ok(unsafe_mailbox(&what, &why));
            }
            f
        }
    };
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
    let from_line = format!("From {sender} {}\n", asctime(m.arrival));
    let r = (|| {
        let mut w = io::BufWriter::with_capacity(crate::store::spool::body::CHUNK, &f);
        w.write_all(from_line.as_bytes())?;
        render(m, true, &mut w)?;
        w.write_all(b"\n")?;
        w.flush()?;
        drop(w);
        f.sync_all()
    })();
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

    use crate::store::spool::Body;

    fn msg<'a>(sender: &'a ReversePath, body: &'a Body) -> LocalMessage<'a> {
        LocalMessage {
            sender,
            arrival: 1_795_873_551,
            body,
            hostname: "mx.test",
        }
    }

    fn rendered(data: &[u8], mbox: bool) -> String {
        let s = Some(crate::vocab::Mailbox::parse("a@b.example").unwrap());
        let body = Body::from_bytes(data).unwrap();
        let mut out = Vec::new();
        render(&msg(&s, &body), mbox, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The whole-message version this replaced, kept as the reference.
    fn reference(data: &[u8], mbox: bool) -> String {
        let mut out = b"Return-Path: <a@b.example>\n".to_vec();
        for line in data.split_inclusive(|&b| b == b'\n') {
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
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn render_quotes_from_lines_for_mbox() {
        assert_eq!(
            rendered(
                b"Subject: x\r\n\r\nFrom here\r\n>From there\r\nok\r\n",
                true
            ),
            "Return-Path: <a@b.example>\nSubject: x\n\n>From here\n>>From there\nok\n"
        );
    }

    #[test]
    fn render_streams_like_the_whole_message_version() {
        let cases: [&[u8]; 8] = [
            b"From a\r\n>>From b\r\n>Fro\r\nFrom\r\n>From\r\n>>>x From y\r\n",
            b"a\rb\r\n\r\rc\nFrom last",
            b">>>>",
            b"From ",
            b"",
            b"\r",
            b"x\r\n\r\n",
            b"F\r\nFr\r\n>F>rom \r\n",
        ];
        for c in cases {
            for mbox in [true, false] {
                assert_eq!(rendered(c, mbox), reference(c, mbox), "{c:?}");
            }
        }
        // Across the 64 KiB read pieces too.
        let mut big = Vec::new();
        while big.len() < 200_000 {
            big.extend_from_slice(b">>From x\r\nline\r\nFrom y\r\n");
        }
        assert_eq!(rendered(&big, true), reference(&big, true));
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
            None,
            &msg(&s, &Body::from_bytes(b"x\r\n").unwrap()),
            0,
        );
        assert!(matches!(r, LocalResult::Failed(..)));
    }
}
