//! The flat, crash-safe, file-per-message spool under `POSTOFFICE` (DESIGN.md §5.6).
//!
//! ```text
//! POSTOFFICE/
//!   tmp/<id>       a message being received (O_CREAT|O_EXCL, mode 0600)
//!   queue/<id>     a committed message: envelope + body + trailer (envelope.rs);
//!                  never modified after the rename
//!   state/<id>     append-only per-recipient delivery journal (may be absent)
//!   corrupt/<id>   quarantined files: never delivered, kept for the operator
//!   hold/<id>      a queue file whose destinations are all held (held.rs)
//!   index/<dest>   per held destination, the messages parked there (held.rs)
//!   drop/<name>    local submissions from `etrnd sendmail` (mode 1733, see drop.rs)
//!   notify         the daemon's wake-up socket for new drop files
//!   control        the daemon's control socket (`etrnd flush`)
//! ```
//!
//! `<id>` is 16 lower-case hex digits: microseconds since the epoch, bumped to stay
//! unique and increasing, so names sort by arrival.
//!
//! # Commit order and crash states
//!
//! A message is acknowledged with `250` only after all of these returned success, in
//! this order (reference/bad-input.md "durable spool"):
//!
//! 1. write `tmp/<id>`: envelope, message, trailer (length + CRC-32);
//! 2. `fsync(tmp/<id>)`;
//! 3. `rename(tmp/<id>, queue/<id>)`;
//! 4. `fsync(queue/)`.
//!
//! Several sessions finishing in the same loop turn form one batch: every file of the
//! batch is written and its writeback started (`sync_file_range` on Linux) before the
//! first fsync, so on a journaling file system the first fsync's commit carries the
//! whole batch and the others find their data on disk; step 4 is shared (group
//! commit). Message octets are buffered per message (4 KiB) rather than written per
//! read.
//!
//! | crash after … | on disk                              | at restart                  |
//! |---------------|--------------------------------------|-----------------------------|
//! | nothing / 1   | partial `tmp/<id>`                   | removed; client saw no 250  |
//! | 2             | complete `tmp/<id>`                  | removed; client saw no 250  |
//! | 3 (no 4)      | `queue/<id>` may or may not survive  | kept if it verifies; no 250 |
//! |               | power loss                           | was sent, so either is fine |
//! | 4             | durable `queue/<id>`                 | verified and queued         |
//! | 250 sent      | durable `queue/<id>`                 | verified and queued         |
//! | delivery      | `state/<id>` journal, fsynced per    | finished recipients are not |
//! |               | outcome                              | sent again                  |
//! | completion    | `queue/<id>` removed, then `state/`  | an orphan journal is removed|
//!
//! Any failure in steps 1–4 unlinks the temp file and the client gets `451 4.3.0`
//! (`452 4.3.1` when the disk is full); a failed fsync is never retried and then
//! trusted (the 2018 "fsyncgate" lesson). At startup every `queue/` file is verified
//! (magic, envelope, trailer, length, checksum); a file that fails goes to `corrupt/`
//! with a log line and is never delivered.
//!
//! Writes are synchronous and done in the event loop: at this scale one fsync per
//! message plus one directory fsync per loop turn is cheaper than a helper process.

pub mod body;
pub mod drop;
pub mod envelope;
pub mod held;
mod journal;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use body::Body;
use envelope::{Crc32, DecodeError};
pub use envelope::{Destination, Envelope, Recipient, StateRecord};

/// A message id: 16 hex digits on disk and in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl MessageId {
    /// Parses a file name of exactly 16 lower-case hex digits.
    pub fn parse(s: &str) -> Option<MessageId> {
        if s.len() == 16
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            u64::from_str_radix(s, 16).ok().map(MessageId)
        } else {
            None
        }
    }
}

/// A spool operation that failed: what, on which path, and the OS error.
#[derive(Debug)]
pub struct SpoolError {
    /// The operation (`create`, `write`, `fsync`, `rename`, …).
    pub op: &'static str,
    /// The path.
    pub path: PathBuf,
    /// The error.
    pub err: io::Error,
}

impl SpoolError {
    fn new(op: &'static str, path: &Path, err: io::Error) -> SpoolError {
        SpoolError {
            op,
            path: path.to_path_buf(),
            err,
        }
    }

    /// Whether the disk (or quota) is full: the client is told 452 4.3.1.
    pub fn is_no_space(&self) -> bool {
        matches!(
            self.err.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        )
    }
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.op,
            self.path.display(),
            crate::vocab::os_error(&self.err)
        )
    }
}

impl std::error::Error for SpoolError {}

/// Faults injected by tests into the commit path (reference/bad-input.md H62, H63).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `fsync` of the message file fails with EIO.
    FsyncFile,
    /// `rename` into `queue/` fails with EIO.
    Rename,
    /// `fsync` of `queue/` fails with EIO.
    FsyncDir,
    /// Writes fail with ENOSPC.
    NoSpace,
    /// Every fsync is skipped and reported as done: the broken spool the power-loss
    /// test must be able to catch.
    NoSync,
}

/// The spool directories and the id generator.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    tmp: PathBuf,
    queue: PathBuf,
    state: PathBuf,
    corrupt: PathBuf,
    drop: PathBuf,
    hold: PathBuf,
    index: PathBuf,
    /// Index files appended to since the last clean mark (fsynced at a clean stop).
    dirty: std::collections::HashSet<String>,
    last_id: u64,
    /// A fault to inject (tests only).
    pub fault: Option<Fault>,
}

/// A message being written to `tmp/`.
#[derive(Debug)]
pub struct Incoming {
    /// Its id.
    pub id: MessageId,
    file: File,
    path: PathBuf,
    crc: Crc32,
    len: u64,
    error: Option<SpoolError>,
    /// Octets not yet written: a message arriving in many small reads costs a few
    /// system calls instead of one per read.
    buf: Vec<u8>,
}

/// Size of an incoming message's write buffer.
const WRITE_BUFFER: usize = 4096;

impl Incoming {
    /// Appends message octets. The first error is kept and reported at commit.
    pub fn write(&mut self, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.crc.update(data);
        self.len += data.len() as u64;
        if self.buf.len() + data.len() > WRITE_BUFFER {
            self.flush();
        }
        if data.len() >= WRITE_BUFFER {
            self.write_out(data);
        } else {
            self.buf.extend_from_slice(data);
        }
    }

    /// Writes out what is buffered.
    fn flush(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.write_out(&buf);
        self.buf = buf;
        self.buf.clear();
    }

    fn write_out(&mut self, data: &[u8]) {
        if self.error.is_some() || data.is_empty() {
            return;
        }
        if let Err(e) = self.file.write_all(data) {
            self.error = Some(SpoolError::new("write", &self.path, e));
        }
    }

    /// Octets written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a startup scan found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Valid queued messages, oldest first.
    pub queued: Vec<MessageId>,
    /// Temp files removed.
    pub removed_tmp: usize,
    /// Files moved to `corrupt/`, with the reason.
    pub quarantined: Vec<(String, String)>,
    /// Orphan journals removed.
    pub removed_state: usize,
}

/// A queued message as `mailq` shows it.
#[derive(Debug)]
pub struct QueueEntry {
    /// Id.
    pub id: MessageId,
    /// File size in octets.
    pub size: u64,
    /// Envelope.
    pub envelope: Envelope,
    /// Journal records.
    pub state: Vec<StateRecord>,
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn injected(kind: i32) -> io::Error {
    io::Error::from_raw_os_error(kind)
}

fn fsync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

impl Spool {
    /// Opens the spool at `root`, creating its directories (mode 0700) when missing.
    pub fn open(root: &Path) -> Result<Spool, SpoolError> {
        #[allow(unused_mut)]
        let mut s = Spool::at(root);
        // Debug builds only: the fault tests inject commit failures through the
        // environment (reference/bad-input.md H62, H63). Release builds have no hook.
        #[cfg(debug_assertions)]
        {
            s.fault = match std::env::var("ETRND_TEST_FAULT").as_deref() {
                Ok("fsync") => Some(Fault::FsyncFile),
                Ok("rename") => Some(Fault::Rename),
                Ok("dirsync") => Some(Fault::FsyncDir),
                Ok("nospace") => Some(Fault::NoSpace),
                Ok("nosync") => Some(Fault::NoSync),
                _ => None,
            };
        }
        // Folders above the spool that are missing are made as a system's folders
        // are (0755), so that USER reaches the spool through them once we drop to it
        // (`POSTOFFICE=/srv/etrnd/spool` on a router without `/srv`).
        // The mode is set after each mkdir, whatever the umask we were started with.
        use std::os::unix::fs::PermissionsExt;
        let set = |p: &Path, mode: u32| {
            fs::set_permissions(p, fs::Permissions::from_mode(mode))
                .map_err(|e| SpoolError::new("chmod", p, e))
        };
        let missing: Vec<&Path> = s
            .root
            .ancestors()
            .skip(1)
            .take_while(|p| !p.as_os_str().is_empty() && !p.is_dir())
            .collect();
        for p in missing.into_iter().rev() {
            fs::create_dir(p).map_err(|e| SpoolError::new("mkdir", p, e))?;
            set(p, 0o755)?;
        }
        // Only USER lists the spool's folders, even when they come back from a
        // backup (a sysupgrade's archive restores them 0755).
        for d in [
            &s.root, &s.tmp, &s.queue, &s.state, &s.corrupt, &s.hold, &s.index,
        ] {
            if !d.is_dir() {
                fs::create_dir(d).map_err(|e| SpoolError::new("mkdir", d, e))?;
            }
            set(d, 0o700)?;
        }
        // Others may pass through the root to reach drop/ and notify, and create
        // files in drop/, but list nothing and touch nobody else's files.
        set(&s.root, 0o711)?;
        if !s.drop.is_dir() {
            fs::create_dir(&s.drop).map_err(|e| SpoolError::new("mkdir", &s.drop, e))?;
        }
        set(&s.drop, 0o1733)?;
        Ok(s)
    }

    /// A handle on an existing spool for reading only: no directory is created.
    pub fn at(root: &Path) -> Spool {
        Spool {
            root: root.to_path_buf(),
            tmp: root.join("tmp"),
            queue: root.join("queue"),
            state: root.join("state"),
            corrupt: root.join("corrupt"),
            drop: root.join("drop"),
            hold: root.join("hold"),
            index: root.join("index"),
            dirty: std::collections::HashSet::new(),
            last_id: 0,
            fault: None,
        }
    }

    /// The drop folder.
    pub fn drop_dir(&self) -> &Path {
        &self.drop
    }

    /// The daemon's control socket (`etrnd flush`).
    pub fn control_path(&self) -> PathBuf {
        self.root.join("control")
    }

    /// The daemon's notify socket.
    pub fn notify_path(&self) -> PathBuf {
        self.root.join("notify")
    }

    /// Drop-folder entries for pickup, each with its age when it is a dot-file: every
    /// finished submission, and dot-files (`.tmp.` ones a crash left behind, or
    /// anything else) once they are older than [`drop::TEMP_GRACE`], never the ones
    /// a `sendmail` is still writing.
    pub fn drop_files(&self) -> Vec<(PathBuf, Option<std::time::Duration>)> {
        let age = |p: &Path| {
            // lstat: the age of the entry itself, never of what a link points to. A
            // modification time in the future (a user may set one) would make a
            // file young for ever: then its change time, which no user can set.
            use std::os::unix::fs::MetadataExt;
            let Ok(m) = fs::symlink_metadata(p) else {
                return std::time::Duration::ZERO;
            };
            let now = crate::vocab::date::unix_now();
            let since =
                |t: i64| std::time::Duration::from_secs(now.saturating_sub(t.max(0) as u64));
            if m.mtime() > now as i64 {
                since(m.ctime())
            } else {
                since(m.mtime())
            }
        };
        list_dir(&self.drop)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| {
                let p = self.drop.join(&n);
                if !n.starts_with('.') {
                    return Some((p, None));
                }
                let a = age(&p);
                (a > drop::TEMP_GRACE).then_some((p, Some(a)))
            })
            .collect()
    }

    /// Moves a bad drop-folder entry (a regular file with one link that does not
    /// verify, or a directory) to `corrupt/`. It keeps its owner: nothing a user made
    /// is ever chowned. A directory of another user's cannot move (its `..` would
    /// change): the error says so.
    pub fn quarantine(&self, path: &Path) -> io::Result<()> {
        let name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
        let dest = self
            .corrupt
            .join(format!("drop-{}", name.to_string_lossy()));
        fs::rename(path, &dest)
    }

    /// Checks that this process can write every folder of the spool it writes in:
    /// a file is created and removed in each. `Err` names the folder, its owner and
    /// mode, and why (a daemon that cannot write its spool must not greet anyone).
    pub fn check_writable(&self) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        for d in [
            &self.root,
            &self.tmp,
            &self.queue,
            &self.state,
            &self.corrupt,
            &self.hold,
            &self.index,
            &self.drop,
        ] {
            // A name nobody can guess (drop/ is writable by every user, who could
            // otherwise leave a file under the name first), and another if one
            // exists by chance: only a refusal to create says the folder is closed.
            let mut made = Err(io::Error::from(io::ErrorKind::AlreadyExists));
            for _ in 0..8 {
                let p = d.join(format!(".write-check.{:016x}", crate::sys::random_u64()));
                made = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&p)
                    .and_then(|_| fs::remove_file(&p));
                if !matches!(&made, Err(e) if e.kind() == io::ErrorKind::AlreadyExists) {
                    break;
                }
            }
            if let Err(e) = made {
                let who = match fs::metadata(d) {
                    Ok(m) => format!(
                        "owner uid {} gid {}, mode {:04o}",
                        m.uid(),
                        m.gid(),
                        m.mode() & 0o7777
                    ),
                    Err(e) => format!("cannot even look at it: {}", crate::vocab::os_error(&e)),
                };
                return Err(format!(
                    "{}: {} ({who})",
                    d.display(),
                    crate::vocab::os_error(&e)
                ));
            }
        }
        Ok(())
    }

    /// The spool root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a queued message.
    pub fn queue_path(&self, id: MessageId) -> PathBuf {
        self.queue.join(id.to_string())
    }

    fn next_id(&mut self) -> MessageId {
        self.last_id = now_micros().max(self.last_id + 1);
        MessageId(self.last_id)
    }

    /// Starts a message: creates `tmp/<id>` and writes the envelope.
    pub fn begin(&mut self, env: &Envelope) -> Result<Incoming, SpoolError> {
        loop {
            let id = self.next_id();
            let path = self.tmp.join(id.to_string());
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
            let file = match opened {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(SpoolError::new("create", &path, e)),
            };
            let mut inc = Incoming {
                id,
                file,
                path,
                crc: Crc32::new(),
                len: 0,
                error: None,
                buf: Vec::new(),
            };
            if self.fault == Some(Fault::NoSpace) {
                inc.error = Some(SpoolError::new("write", &inc.path, injected(libc::ENOSPC)));
            }
            inc.write(&env.encode());
            return Ok(inc);
        }
    }

    /// Drops a message being received (size limit, loop, client gone).
    pub fn abort(&mut self, inc: Incoming) {
        drop(inc.file);
        let _ = fs::remove_file(&inc.path);
    }

    /// Commits a batch of finished messages: writes each trailer, fsyncs each file,
    /// renames each into `queue/`, then fsyncs `queue/` once for the whole batch.
    /// Results are in batch order; a failed message leaves nothing in `queue/`.
    pub fn commit(&mut self, mut batch: Vec<Incoming>) -> Vec<Result<MessageId, SpoolError>> {
        let mut results = Vec::with_capacity(batch.len());
        let mut renamed = Vec::new();
        // Every file's writes go out together first, so one journal commit can carry
        // the batch and the fsyncs that follow mostly find their data on disk.
        for inc in &mut batch {
            let t = envelope::trailer(inc.len, inc.crc.value());
            inc.write(&t);
            inc.flush();
            if inc.error.is_none() && self.fault != Some(Fault::NoSync) {
                crate::sys::start_writeback(&inc.file);
            }
        }
        for (i, mut inc) in batch.into_iter().enumerate() {
            let r = self.commit_one(&mut inc);
            match r {
                Ok(()) => renamed.push(i),
                Err(ref e) => {
                    log::error!("{} spool commit-failed error=\"{}\"", inc.id, e);
                    let _ = fs::remove_file(&inc.path);
                }
            }
            results.push(r.map(|()| inc.id));
        }
        if renamed.is_empty() {
            return results;
        }
        let dir_sync = self.sync_step(Fault::FsyncDir, || fsync_dir(&self.queue));
        if let Err(e) = dir_sync {
            // Nothing of this batch may be acknowledged: take every file back out.
            log::error!(
                "spool commit-failed error=\"fsync {}: {}\"",
                self.queue.display(),
                e
            );
            for &i in &renamed {
                if let Ok(id) = &results[i] {
                    let _ = fs::remove_file(self.queue_path(*id));
                }
                results[i] = Err(SpoolError::new(
                    "fsync",
                    &self.queue,
                    io::Error::new(e.kind(), e.to_string()),
                ));
            }
        }
        results
    }

    /// An fsync of the commit path, unless a test fault stands in for it: `fails`
    /// makes this one fail with EIO, `NoSync` skips every one.
    fn sync_step(&self, fails: Fault, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        match self.fault {
            Some(f) if f == fails => Err(injected(libc::EIO)),
            Some(Fault::NoSync) => Ok(()),
            _ => sync(),
        }
    }

    fn commit_one(&self, inc: &mut Incoming) -> Result<(), SpoolError> {
        if let Some(e) = inc.error.take() {
            return Err(e);
        }
        let synced = self.sync_step(Fault::FsyncFile, || inc.file.sync_all());
        synced.map_err(|e| SpoolError::new("fsync", &inc.path, e))?;
        let dest = self.queue_path(inc.id);
        let renamed = if self.fault == Some(Fault::Rename) {
            Err(injected(libc::EIO))
        } else {
            fs::rename(&inc.path, &dest)
        };
        renamed.map_err(|e| SpoolError::new("rename", &dest, e))
    }

    /// Startup recovery: removes `tmp/*`, verifies every `queue/` file and moves bad
    /// ones to `corrupt/`, removes journals of messages that are gone. Also moves the
    /// id generator past every existing id.
    /// Each valid message goes to `f` as it is verified, oldest first: the daemon
    /// builds its schedule from the same read.
    pub fn recover(&mut self, mut f: impl FnMut(QueueEntry)) -> Result<Recovery, SpoolError> {
        let mut rec = Recovery::default();
        for name in list_dir(&self.tmp)? {
            let p = self.tmp.join(&name);
            if fs::remove_file(&p).is_ok() {
                rec.removed_tmp += 1;
                log::info!("spool removed-temp file={}", p.display());
            }
        }
        for name in self.queue_names()? {
            let p = self.queue.join(&name);
            let verdict = match MessageId::parse(&name) {
                None => Err("not a message file name".to_string()),
                Some(id) => read_file(&p).map_err(|e| e.to_string()).and_then(|data| {
                    verified(&data)
                        .map(|env| (id, env, data.len() as u64))
                        .map_err(|e| e.0)
                }),
            };
            match verdict {
                Ok((id, envelope, size)) => {
                    self.last_id = self.last_id.max(id.0);
                    rec.queued.push(id);
                    f(QueueEntry {
                        id,
                        size,
                        envelope,
                        state: self.journal(&name),
                    });
                }
                Err(why) => {
                    let dest = self.corrupt.join(&name);
                    log::warn!("spool quarantined file={} reason=\"{}\"", p.display(), why);
                    fs::rename(&p, &dest).map_err(|e| SpoolError::new("rename", &p, e))?;
                    rec.quarantined.push((name, why));
                }
            }
        }
        if !rec.quarantined.is_empty() {
            fsync_dir(&self.queue).map_err(|e| SpoolError::new("fsync", &self.queue, e))?;
        }
        for name in list_dir(&self.state)? {
            let orphan = match MessageId::parse(&name) {
                Some(id) => rec.queued.binary_search(&id).is_err() && !self.is_parked(id),
                None => true,
            };
            if orphan && fs::remove_file(self.state.join(&name)).is_ok() {
                rec.removed_state += 1;
            }
        }
        Ok(rec)
    }

    /// Reads the whole queue for listing (no verification: read-only, fast).
    pub fn list(&self) -> Result<Vec<QueueEntry>, SpoolError> {
        let mut out = Vec::new();
        self.for_each(|e| out.push(e))?;
        Ok(out)
    }

    /// Calls `f` with each queued message, oldest first, one at a time: a big queue
    /// is never held in memory whole (startup, `mailq`).
    /// Parked messages (`hold/`) are listed too, in the same order.
    pub fn for_each(&self, f: impl FnMut(QueueEntry)) -> Result<(), SpoolError> {
        self.for_each_in(true, f)
    }

    /// [`Spool::for_each`], parked messages only when `parked`.
    pub fn for_each_in(
        &self,
        parked: bool,
        mut f: impl FnMut(QueueEntry),
    ) -> Result<(), SpoolError> {
        let mut names: Vec<(String, &Path)> = self
            .queue_names()?
            .into_iter()
            .map(|n| (n, self.queue.as_path()))
            .collect();
        if let Some(held) = parked.then(|| list_dir(&self.hold).ok()).flatten() {
            names.extend(held.into_iter().map(|n| (n, self.hold.as_path())));
            names.sort_unstable();
        }
        for (name, dir) in names {
            let Some(id) = MessageId::parse(&name) else {
                continue;
            };
            let p = dir.join(&name);
            let Ok(data) = read_file(&p) else { continue };
            let Ok((envelope, _)) = Envelope::decode(&data) else {
                continue;
            };
            f(QueueEntry {
                id,
                size: data.len() as u64,
                envelope,
                state: self.journal(&name),
            });
        }
        Ok(())
    }

    /// The names in `queue/`, oldest first (ids are fixed-width hex: name order is
    /// arrival order).
    fn queue_names(&self) -> Result<Vec<String>, SpoolError> {
        let mut names = list_dir(&self.queue)?;
        names.sort_unstable();
        Ok(names)
    }

    /// Removes a finished message: the queue file first, then its journal (an orphan
    /// journal left by a crash in between is removed at startup).
    pub fn complete(&self, id: MessageId) -> Result<(), SpoolError> {
        let p = self.queue_path(id);
        match fs::remove_file(&p) {
            // Parked (`etrnd queue delete` with the daemon stopped).
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.is_parked(id) => {
                let h = self.hold_path(id);
                fs::remove_file(&h).map_err(|e| SpoolError::new("unlink", &h, e))?
            }
            // Already gone (removed by hand): nothing left to do.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            r => r.map_err(|e| SpoolError::new("unlink", &p, e))?,
        }
        let s = self.state.join(id.to_string());
        match fs::remove_file(&s) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SpoolError::new("unlink", &s, e)),
            _ => Ok(()),
        }
    }
}

/// Verifies a whole message file: trailer, checksum and envelope.
pub fn check(data: &[u8]) -> Result<(), DecodeError> {
    verified(data).map(|_| ())
}

/// The envelope of a message file that verifies.
fn verified(data: &[u8]) -> Result<Envelope, DecodeError> {
    let content = envelope::verify(data)?;
    Envelope::decode(&data[..content]).map(|(e, _)| e)
}

/// Appends `data` to the spool's own file `p` (created 0600 if missing) in one
/// write: a journal, an index.
fn append(p: &Path, data: &[u8]) -> Result<File, SpoolError> {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(p)
        .map_err(|e| SpoolError::new("open", p, e))?;
    f.write_all(data)
        .map_err(|e| SpoolError::new("write", p, e))?;
    Ok(f)
}

fn read_file(p: &Path) -> io::Result<Vec<u8>> {
    let mut f = File::open(p)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

fn list_dir(dir: &Path) -> Result<Vec<String>, SpoolError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| SpoolError::new("readdir", dir, e))? {
        let entry = entry.map_err(|e| SpoolError::new("readdir", dir, e))?;
        if let Some(n) = entry.file_name().to_str() {
            names.push(n.to_string());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests;
