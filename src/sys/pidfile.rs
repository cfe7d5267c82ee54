//! The pid file and its lock: the daemon holds an exclusive `flock` on it for its
//! whole life; `etrnd queue` takes it briefly to change the spool of a stopped one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Creates and locks the pid file and writes our pid. The returned file must stay
/// open: its lock is what keeps a second daemon from starting.
pub fn lock_pidfile(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = std::fs::read_to_string(path).unwrap_or_default();
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("already running (pid {})", pid.trim()),
        ));
    }
    f.set_len(0)?;
    writeln!(f, "{}", std::process::id())?;
    f.sync_all()?;
    Ok(f)
}

/// Rewrites our pid into the already locked pid file (after detaching).
pub fn lock_pidfile_rewrite(f: &File) -> io::Result<()> {
    let mut f = f;
    f.set_len(0)?;
    use std::io::Seek;
    f.seek(io::SeekFrom::Start(0))?;
    writeln!(f, "{}", std::process::id())?;
    f.sync_all()
}

/// Removes the pid file at a clean exit, while we still hold its lock; where the
/// directory is not ours any more (privileges dropped), empties it instead, so that
/// no stale pid is ever left for a tool to act on.
pub fn release_pidfile(path: &Path, f: &File) {
    if std::fs::remove_file(path).is_err() {
        let _ = f.set_len(0);
    }
}

/// Takes an exclusive `flock` on an open file without waiting: `Ok(false)` when
/// another process holds it.
pub fn try_flock(f: &File) -> io::Result<bool> {
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(e),
    }
}
