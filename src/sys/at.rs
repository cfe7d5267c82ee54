//! Files and folders relative to an open folder (`openat` and friends): how a mailbox is reached without following a name a user could have replaced. Part of `sys`: every `unsafe` block says why it is sound.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Opens directory `name` inside the directory `dir` without following a link
/// (`openat` with `O_DIRECTORY|O_NOFOLLOW`): a user cannot redirect it.
pub fn open_dir_at(dir: &File, name: &str) -> io::Result<File> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is NUL-terminated and outlives the call; the fd is owned at once.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Makes directory `name` inside `dir` (`mkdirat`; an existing name, link or not, is
/// `AlreadyExists`).
pub fn mkdir_at(dir: &File, name: &str, mode: u32) -> io::Result<()> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is NUL-terminated and outlives the call.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates file `name` inside `dir`, which must not exist (`O_CREAT|O_EXCL`, so not
/// even a link may be there), for writing.
pub fn create_at(dir: &File, name: &str, mode: u32) -> io::Result<File> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is NUL-terminated and outlives the call; the fd is owned at once.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Renames `from` in directory `a` to `to` in directory `b` (`renameat`).
pub fn rename_at(a: &File, from: &str, b: &File, to: &str) -> io::Result<()> {
    let (f, t) = match (CString::new(from), CString::new(to)) {
        (Ok(f), Ok(t)) => (f, t),
        _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
    };
    // SAFETY: both names are NUL-terminated and outlive the call.
    if unsafe { libc::renameat(a.as_raw_fd(), f.as_ptr(), b.as_raw_fd(), t.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes file `name` inside `dir` (`unlinkat`: the name, never what it points to).
pub fn unlink_at(dir: &File, name: &str) -> io::Result<()> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is NUL-terminated and outlives the call.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The gid of a group (the `mail` group of the mail directory), from the group
/// file (never through NSS).
pub fn group_gid(name: &str) -> Option<u32> {
    super::pwfile::groups(1 << 20)
        .into_iter()
        .find(|g| g.name == name)
        .map(|g| g.gid)
}

/// This process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}
