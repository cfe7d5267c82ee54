//! The control socket (`POSTOFFICE/control`, DESIGN.md §5.11): local commands reach
//! the running daemon here instead of through a signal to a pid read from a file
//! that may be stale. A Unix datagram socket: one request per datagram, one reply
//! datagram back to the sender's own bound socket.
//!
//! Requests (text, one line): `mailq [-j]` (with the write end of a pipe attached:
//! the listing comes back through it, see showq.rs), `flush` (every queue that is not held),
//! `flush TARGET` (TARGET as ETRN takes it), and `atrn PORT SERVER [DOMAIN…]` (the
//! ODMR customer's side, `etrnd atrn`: only from root or the daemon's own user,
//! told by the owner of the requester's socket; its reply comes when the
//! turned-around session is over), and `link up|down|status [NAME]` (up and down
//! from root or the daemon's user only), and `queue delete|hold|release|requeue
//! ID…|-d DOMAIN|ALL` (root and the daemon's user only). Replies are one SMTP-style line, `250 …` or an
//! error code with its reason, which the command prints. Anything else gets `500`. A request is at most [`MAX_REQUEST`] octets; the socket is non-blocking and
//! drained until `WouldBlock`, so a local user cannot stall the loop with it.

use std::io;
use std::os::fd::AsRawFd;

use mio::net::UnixDatagram;
use mio::Interest;

use super::{Daemon, CONTROL};
use crate::smtp::etrn::EtrnTarget;
use crate::smtp::reply::Reply;

/// Largest request read (longer datagrams are truncated and refused).
pub const MAX_REQUEST: usize = 512;

/// Most message ids in one `queue` request (`etrnd queue` sends more in several).
pub const MAX_QUEUE_IDS: usize = 25;

/// What a control request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Run every queue that is not queue-only.
    FlushAll,
    /// Release what an ETRN of this target would.
    Flush(EtrnTarget),
    /// Ask SERVER for our held mail with ATRN (`etrnd atrn`).
    Atrn {
        /// The provider's port.
        port: u16,
        /// The provider: a host name or an address.
        server: String,
        /// The domains (none: all of ours).
        domains: Vec<String>,
    },
    /// `mailq [-j]`: the listing, written to the descriptor that came with the
    /// request (any local user, DESIGN.md §5.11).
    Mailq {
        /// `-j`: one JSON object per message.
        json: bool,
    },
    /// `queue delete|hold|release|requeue SELECTION` (DESIGN.md §3).
    Queue {
        /// What to do.
        op: crate::sched::QueueOp,
        /// To which messages.
        sel: crate::sched::Selection,
    },
    /// `link up|down|status [NAME]` (DESIGN.md §5.9).
    Link {
        /// What to do.
        op: super::netlinks::LinkOp,
        /// The link (none: `default`).
        name: Option<String>,
    },
}

impl Request {
    /// Parses a request datagram; `Err` is the reply for a bad one.
    pub fn parse(data: &[u8]) -> Result<Request, Reply> {
        let text = std::str::from_utf8(data)
            .ok()
            .filter(|_| data.len() <= MAX_REQUEST)
            .ok_or_else(|| Reply::new(500, "5.5.2 bad control request".into()))?;
        let text = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = text.split_once(' ').unwrap_or((text, ""));
        match (verb, arg) {
            ("flush", "") => Ok(Request::FlushAll),
            ("flush", a) => EtrnTarget::parse(a)
                .map(Request::Flush)
                .ok_or(Reply::ETRN_SYNTAX),
            ("atrn", a) => {
                let mut w = a.split(' ');
                let bad = || Reply::new(501, "5.5.4 Syntax: atrn PORT SERVER [DOMAIN...]".into());
                let port = w
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .filter(|p| *p != 0)
                    .ok_or_else(bad)?;
                let server = w
                    .next()
                    .and_then(crate::vocab::server_name)
                    .ok_or_else(bad)?;
                let list: Vec<&str> = w.collect();
                let domains = crate::smtp::atrn::parse_list(&list.join(","))
                    .map_err(|_| Reply::ATRN_SYNTAX)?;
                if list.iter().any(|d| d.is_empty()) {
                    return Err(bad());
                }
                Ok(Request::Atrn {
                    port,
                    server,
                    domains,
                })
            }
            ("link", a) => {
                use super::netlinks::LinkOp;
                let bad = || Reply::new(501, "5.5.4 Syntax: link up|down|status [NAME]".into());
                let mut w = a.split(' ');
                let op = match w.next() {
                    Some("up") => LinkOp::Up,
                    Some("down") => LinkOp::Down,
                    Some("status") => LinkOp::Status,
                    _ => return Err(bad()),
                };
                let name = match w.next() {
                    None => None,
                    Some(n) => Some(
                        crate::config::links::link_name(n)
                            .map_err(|_| bad())?
                            .to_string(),
                    ),
                };
                if w.next().is_some() {
                    return Err(bad());
                }
                Ok(Request::Link { op, name })
            }
            ("mailq", "") => Ok(Request::Mailq { json: false }),
            ("mailq", "-j") => Ok(Request::Mailq { json: true }),
            ("queue", a) => {
                let mut w = a.split(' ');
                let op = w.next().and_then(crate::sched::QueueOp::parse).ok_or_else(|| {
                    Reply::new(
                        501,
                        "5.5.4 Syntax: queue delete|hold|release|requeue ID...|-d DOMAIN|ALL".into(),
                    )
                })?;
                let sel = crate::sched::Selection::parse(w, MAX_QUEUE_IDS)
                    .map_err(|e| Reply::new(501, format!("5.5.4 {e}")))?;
                Ok(Request::Queue { op, sel })
            }
            _ => Err(Reply::new(
                500,
                "5.5.1 unknown control request (mailq [-j], flush [TARGET], atrn PORT SERVER [DOMAIN...], link up|down|status [NAME], queue OP SELECTION)"
                    .into(),
            )),
        }
    }
}

impl Daemon {
    /// Binds the control socket (a stale one from a crash is replaced), readable and
    /// writable by local users (`etrnd flush` is theirs, DESIGN.md §5.11).
    pub(super) fn bind_control(&mut self) -> Option<UnixDatagram> {
        let path = self.spool.control_path();
        let _ = std::fs::remove_file(&path);
        let bound = UnixDatagram::bind(&path).and_then(|mut s| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
            self.poll
                .registry()
                .register(&mut s, CONTROL, Interest::READABLE)?;
            Ok(s)
        });
        match bound {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!("control bind-failed path={} error=\"{e}\"", path.display());
                None
            }
        }
    }

    /// Serves every waiting request.
    pub(super) fn drain_control(&mut self, now: std::time::Instant) {
        let mut buf = [0u8; MAX_REQUEST + 1];
        loop {
            let Some(s) = &self.control else { return };
            let (n, peer, fd) = match crate::sys::recv_with_fd(s.as_raw_fd(), &mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("control recv-failed error=\"{e}\"");
                    return;
                }
            };
            let n = n.min(buf.len());
            let reply = match Request::parse(&buf[..n]) {
                Ok(Request::Mailq { json }) => self.showq_start(json, fd, now),
                Ok(Request::Atrn { .. }) if !privileged(peer.as_deref()) => Reply::new(
                    550,
                    "5.7.1 atrn is for root and the daemon's user only".into(),
                ),
                Ok(Request::Atrn {
                    port,
                    server,
                    domains,
                }) => match self.customer_start(
                    super::customer::Ask::Atrn(domains),
                    server,
                    port,
                    (peer.clone(), None),
                    now,
                ) {
                    Some(r) => r,
                    None => continue, // answered when the session is over
                },
                Ok(Request::Link { op, .. })
                    if op != super::netlinks::LinkOp::Status && !privileged(peer.as_deref()) =>
                {
                    Reply::new(
                        550,
                        "5.7.1 link up and link down are for root and the daemon's user only"
                            .into(),
                    )
                }
                Ok(Request::Link { op, name }) => self.link_request(op, name.as_deref(), now),
                Ok(Request::Queue { .. }) if !privileged(peer.as_deref()) => Reply::new(
                    550,
                    "5.7.1 queue control is for root and the daemon's user only".into(),
                ),
                Ok(Request::Queue { op, sel }) => {
                    self.queue_request(op, &sel, requester(peer.as_deref()), now)
                }
                Ok(Request::FlushAll) => {
                    self.page_in_unheld();
                    let threads = self.sched.release_unheld(self.unix);
                    log::info!("control flush-all threads={threads}");
                    Reply::new(
                        250,
                        format!("2.0.0 flushing {threads} queues that are not held"),
                    )
                }
                Ok(Request::Flush(t)) => {
                    let r = self.etrn_release(&t, ("flush", "local"));
                    log::info!("control flush target={t} reply=\"{r}\"");
                    r
                }
                Err(r) => r,
            };
            self.start_jobs(now);
            if let Some(path) = peer {
                self.control_reply(&path, &reply);
            }
        }
    }

    /// Sends a reply datagram to a requester's socket.
    pub(super) fn control_reply(&self, path: &std::path::Path, reply: &Reply) {
        let mut out = Vec::new();
        reply.write_to(&mut out);
        if let Some(s) = &self.control {
            if let Err(e) = s.send_to(&out, path) {
                log::warn!("control reply-failed error=\"{e}\"");
            }
        }
    }
}

/// The uid owning the requester's socket (who asked), for log lines.
fn requester(path: Option<&std::path::Path>) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    path.and_then(|p| std::fs::symlink_metadata(p).ok())
        .map(|m| m.uid())
}

/// Whether the requester's socket belongs to root or to the daemon's own user (a
/// socket file is owned by whoever bound it; a local user cannot make one of root's).
fn privileged(path: Option<&std::path::Path>) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Some(m) = path.and_then(|p| std::fs::symlink_metadata(p).ok()) else {
        return false;
    };
    m.file_type().is_socket() && (m.uid() == 0 || m.uid() == crate::sys::euid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_are_refused() {
        assert_eq!(Request::parse(b"flush\n"), Ok(Request::FlushAll));
        assert!(matches!(
            Request::parse(b"flush mail.isp.dom"),
            Ok(Request::Flush(EtrnTarget::Node(_)))
        ));
        assert!(matches!(
            Request::parse(b"flush #smtp-etrn\n"),
            Ok(Request::Flush(EtrnTarget::Channel(_)))
        ));
        assert_eq!(Request::parse(b"flush a b").unwrap_err().code, 501);
        assert_eq!(Request::parse(b"kill 1").unwrap_err().code, 500);
        assert_eq!(Request::parse(b"flush \xff").unwrap_err().code, 500);
        assert_eq!(Request::parse(&[b'x'; 600]).unwrap_err().code, 500);
        assert_eq!(Request::parse(b"").unwrap_err().code, 500);
    }
}
