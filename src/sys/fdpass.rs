//! Passing a descriptor over a Unix socket (`SCM_RIGHTS`): `etrnd mailq`
//! hands the daemon the write end of a pipe, and the listing comes back through it,
//! as long as it is, while the control reply stays one datagram.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Room for one descriptor's control message (and some slack for the alignment).
const CMSG_ROOM: usize = 64;

/// Room for control messages, aligned as `struct cmsghdr` must be (a plain octet
/// array may sit at any address).
#[repr(C, align(8))]
struct Cmsg<const N: usize>([u8; N]);

fn sockaddr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain old data; zeroed is valid.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= sa.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    for (d, s) in sa.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // The path's offset, not the size of the family: the BSDs put `sun_len` first.
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    #[cfg(any(
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly",
        target_os = "macos"
    ))]
    {
        sa.sun_len = len as u8;
    }
    Ok((sa, len as libc::socklen_t))
}

/// Sends `data` to the socket at `to` from socket `sock`, with `fd` attached.
pub fn send_with_fd(sock: RawFd, to: &Path, data: &[u8], fd: RawFd) -> io::Result<()> {
    send_fd(sock, Some(to), data, fd)
}

/// Sends `data` with `fd` attached on a connected socket.
pub fn send_fd_connected(sock: RawFd, data: &[u8], fd: RawFd) -> io::Result<()> {
    send_fd(sock, None, data, fd)
}

fn send_fd(sock: RawFd, to: Option<&Path>, data: &[u8], fd: RawFd) -> io::Result<()> {
    let (mut sa, salen) = match to {
        Some(p) => sockaddr(p)?,
        None => sockaddr(Path::new(""))?,
    };
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cbuf = Cmsg([0u8; CMSG_ROOM]);
    let cbuf = &mut cbuf.0;
    // SAFETY: msghdr is plain old data; every pointer set below points into locals
    // that outlive the sendmsg call; the CMSG macros stay inside cbuf, whose room is
    // checked against CMSG_SPACE first.
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        assert!(space <= cbuf.len());
        let mut msg: libc::msghdr = std::mem::zeroed();
        if to.is_some() {
            msg.msg_name = (&mut sa as *mut libc::sockaddr_un).cast();
            msg.msg_namelen = salen;
        }
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        if libc::sendmsg(sock, &msg, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What `sock` has to read: its length and every descriptor attached to those
/// octets, in order (at most [`MAX_FDS`] a call; a larger batch is cut short by the
/// kernel and those past it are closed, as [`recv_with_fd`] does). For a stream
/// socket whose peer attaches one descriptor to each of several replies.
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    recvmsg_fds(sock, buf, &mut Cmsg([0u8; FDS_ROOM]).0).map(|(n, _, fds, _)| (n, fds))
}

/// Most descriptors taken by one [`recv_with_fds`].
pub const MAX_FDS: usize = 32;
const FDS_ROOM: usize = 64 + MAX_FDS * std::mem::size_of::<RawFd>();

/// One datagram received on `sock`: its length, the sender's bound path (if any)
/// and the first descriptor attached to it. Any other descriptor that came with it
/// is closed, and so is everything when the control data was cut short, so a local
/// user cannot make the daemon hold descriptors by sending them.
pub fn recv_with_fd(
    sock: RawFd,
    buf: &mut [u8],
) -> io::Result<(usize, Option<PathBuf>, Option<OwnedFd>)> {
    let (n, path, fds, truncated) = recvmsg_fds(sock, buf, &mut Cmsg([0u8; CMSG_ROOM]).0)?;
    let fd = if truncated {
        None
    } else {
        fds.into_iter().next()
    };
    Ok((n, path, fd))
}

/// `recvmsg` with `cbuf` for control data: the length, the sender's path, every
/// descriptor that came (each taken into an `OwnedFd` once) and whether the control
/// data was cut short.
fn recvmsg_fds(
    sock: RawFd,
    buf: &mut [u8],
    cbuf: &mut [u8],
) -> io::Result<(usize, Option<PathBuf>, Vec<OwnedFd>, bool)> {
    // SAFETY: as in send_with_fd; recvmsg writes at most the lengths given; every
    // descriptor the kernel put in the control data is taken into an OwnedFd once.
    unsafe {
        let mut sa: libc::sockaddr_un = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut sa as *mut libc::sockaddr_un).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.len() as _;
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut fds: Vec<OwnedFd> = Vec::new();
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let len = (*c).cmsg_len as usize - (data as usize - c as usize);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let truncated = msg.msg_flags & libc::MSG_CTRUNC != 0;
        let path_len = (msg.msg_namelen as usize)
            .saturating_sub(std::mem::offset_of!(libc::sockaddr_un, sun_path))
            .min(sa.sun_path.len());
        let raw: Vec<u8> = sa.sun_path[..path_len]
            .iter()
            .map(|&b| b as u8)
            .take_while(|&b| b != 0)
            .collect();
        let path = (!raw.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(&raw)));
        Ok((n as usize, path, fds, truncated))
    }
}

/// The uid of the process at the other end of a connected Unix stream socket, as the
/// kernel recorded it when the connection was made (`SO_PEERCRED` on Linux,
/// `getpeereid(3)` on the BSDs): never anything the peer says or a path it names.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn peer_uid(sock: RawFd) -> io::Result<u32> {
    // SAFETY: ucred is plain old data; getsockopt writes at most `len` octets into it.
    unsafe {
        let mut cred: libc::ucred = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        let rc = libc::getsockopt(
            sock,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        );
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if len as usize != std::mem::size_of::<libc::ucred>() {
            return Err(io::Error::other("short peer credentials"));
        }
        Ok(cred.uid)
    }
}

/// The uid of the process at the other end of a connected Unix stream socket, as the
/// kernel recorded it when the connection was made (`getpeereid(3)`).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn peer_uid(sock: RawFd) -> io::Result<u32> {
    let mut uid: libc::uid_t = 0;
    let mut gid: libc::gid_t = 0;
    // SAFETY: getpeereid writes one uid_t and one gid_t into the locals given.
    if unsafe { libc::getpeereid(sock, &mut uid, &mut gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(uid)
}
