//! The control socket (`POSTOFFICE/control`, DESIGN.md §5.11): local commands reach
//! the running daemon here instead of through a signal to a pid read from a file
//! that may be stale. A Unix *stream* socket: the daemon learns who connected from
//! the kernel (`SO_PEERCRED`, `getpeereid(3)`, [`crate::sys::peer_uid`]), never from
//! a path, and the reply goes back on the same connection, so a requester also sees
//! the end of file at once when the daemon goes away.
//!
//! Requests (text, one line each, several may follow one another on a connection):
//! `mailq [-j]` (with the write end of a pipe attached: the listing comes back
//! through it, see showq.rs), `flush` (every queue that is not held), `flush TARGET`
//! (TARGET as ETRN takes it; a target that names held mail only from root or the
//! daemon's own user), `atrn PORT SERVER [DOMAIN…]` (the ODMR customer's side,
//! `etrnd atrn`: root or the daemon's user; its reply comes when the turned-around
//! session is over), `link up|down|status [NAME]` (up and down from root or the
//! daemon's user), and `queue delete|hold|release|requeue ID…|-d DOMAIN|ALL` (root
//! and the daemon's user), and `reload` (as SIGHUP; root and the daemon's user).
//! Replies are one SMTP-style line, `250 …` or an error code
//! with its reason, which the command prints. Anything else gets `500`.
//!
//! Bounds: a request is at most [`MAX_REQUEST`] octets and must come within
//! [`REQUEST_TIMEOUT`]; at most [`MAX_CONNS`] connections are open, at most
//! [`MAX_CONNS_PER_UID`] of one uid, and a uid other than root's and the daemon's
//! gets [`BURST`] requests at once and [`PER_SECOND`] a second after that (the
//! [`Desk`]); past any of them the requester gets a refusal and the connection
//! closes. The daemon never sends anything anywhere but down a connection a
//! requester made, so no request can make it talk to its own sockets.

mod desk;
mod request;

pub use desk::{Desk, Requester, BURST, MAX_CONNS, MAX_CONNS_PER_UID, PER_SECOND};
pub use request::{Request, MAX_QUEUE_IDS, MAX_REQUEST};

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use super::{Core, Io, CONTROL};
use crate::logging::sanitize;
use crate::smtp::reply::Reply;

/// How long a requester has to send a whole request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Tokens of control connections: far from links (bit 31) and DNS (bit 30).
pub const CONTROL_BASE: usize = 1 << 29;

/// A control connection, named for a reply that comes later (ATRN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRef {
    slot: usize,
    gen: u64,
}

/// One requester's connection.
struct Conn {
    stream: UnixStream,
    who: Requester,
    gen: u64,
    inbuf: Vec<u8>,
    /// A descriptor that came with the request (`mailq`'s pipe).
    fd: Option<OwnedFd>,
    out: crate::buf::OutBuf,
    /// A request is being served and its reply comes later.
    waiting: bool,
    /// Close once the output is written.
    closing: bool,
    /// Closed when a request has not come (or the output not left) by then.
    deadline: Option<Instant>,
}

/// The control socket and its connections (the I/O; the decisions are the desk's
/// and the daemon's).
#[derive(Default)]
pub struct Control {
    listener: Option<UnixListener>,
    conns: Vec<Option<Conn>>,
    next_gen: u64,
    desk: Desk,
}

/// What a connection has for the daemon.
enum Next {
    /// A whole request line (and its descriptor).
    Request(Vec<u8>, Option<OwnedFd>),
    /// Nothing yet.
    Wait,
    /// The connection is over.
    Gone,
}

impl Control {
    /// Whether `token` is a control connection's.
    pub fn owns(token: Token) -> bool {
        (CONTROL_BASE..CONTROL_BASE + MAX_CONNS).contains(&token.0)
    }

    /// The earliest deadline of a connection.
    pub fn timeout(&self) -> Option<Instant> {
        self.conns.iter().flatten().filter_map(|c| c.deadline).min()
    }

    fn close(&mut self, slot: usize, registry: &Registry) {
        if let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) {
            let _ = registry.deregister(&mut c.stream);
            self.desk.closed(c.who);
        }
    }

    /// Writes what a connection has to say; closes it once done if it is closing.
    fn flush(&mut self, slot: usize, registry: &Registry, now: Instant) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if !c.out.write_to(&mut c.stream) {
            return self.close(slot, registry);
        }
        if !c.out.is_empty() {
            // The requester reads slowly: the rest goes when it can take it.
            c.deadline = Some(now + REQUEST_TIMEOUT);
            let _ = registry.reregister(
                &mut c.stream,
                Token(CONTROL_BASE + slot),
                Interest::READABLE | Interest::WRITABLE,
            );
            return;
        }
        if c.closing {
            self.close(slot, registry);
        }
    }

    /// Reads from a connection until a request line is whole.
    fn next(&mut self, slot: usize) -> Next {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return Next::Gone;
        };
        if c.waiting || c.closing || !c.out.is_empty() {
            // One request at a time: the next is read once the reply has left, so
            // a requester that never reads cannot make its replies pile up.
            return Next::Wait;
        }
        loop {
            if let Some(i) = c.inbuf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = c.inbuf.drain(..=i).collect();
                c.waiting = true;
                c.deadline = None;
                return Next::Request(line, c.fd.take());
            }
            if c.inbuf.len() > MAX_REQUEST {
                return Next::Request(std::mem::take(&mut c.inbuf), None);
            }
            let mut buf = [0u8; MAX_REQUEST + 2];
            let room = (MAX_REQUEST + 2 - c.inbuf.len()).min(buf.len());
            match super::io::recv_with_fd(&c.stream, &mut buf[..room]) {
                Ok((0, _, _)) => return Next::Gone,
                Ok((n, _, fd)) => {
                    c.inbuf.extend_from_slice(&buf[..n]);
                    // One descriptor per request; any other is closed at once.
                    if c.fd.is_none() {
                        c.fd = fd;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Gone,
            }
        }
    }

    /// Queues the first line of a reply whose end comes later (`250-…`); the
    /// connection still waits.
    pub(super) fn interim(&mut self, to: ControlRef, reply: &Reply) {
        if let Some(c) = self.conns.get_mut(to.slot).and_then(Option::as_mut) {
            if c.gen == to.gen {
                let mut line = Vec::new();
                reply.write_to(&mut line);
                if line.len() > 3 && line[3] == b' ' {
                    line[3] = b'-';
                }
                c.out.extend_from_slice(&line);
            }
        }
    }

    /// Queues a reply on a connection (which then reads its next request).
    fn reply(&mut self, slot: usize, reply: &Reply, close: bool) {
        if let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) {
            reply.write_to(&mut c.out);
            c.waiting = false;
            c.closing |= close;
        }
    }
}

impl Core {
    /// Binds the control socket (a stale one from a crash is replaced), reachable
    /// by local users (`etrnd flush` and `mailq` are theirs, DESIGN.md §5.11).
    pub(super) fn bind_control(&mut self, io: &mut Io) {
        let path = self.spool.control_path();
        let _ = std::fs::remove_file(&path);
        let bound = UnixListener::bind(&path).and_then(|mut s| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
            io.registry.register(&mut s, CONTROL, Interest::READABLE)?;
            Ok(s)
        });
        match bound {
            Ok(s) => io.control.listener = Some(s),
            Err(e) => log::error!("control bind-failed path={} error=\"{e}\"", path.display()),
        }
    }

    /// Accepts every waiting requester; who it is comes from the kernel.
    pub(super) fn control_accept(&mut self, io: &mut Io, now: Instant) {
        loop {
            let Some(l) = &io.control.listener else {
                return;
            };
            let mut stream = match l.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("control accept-failed error=\"{e}\"");
                    return;
                }
            };
            let who = match super::io::peer_uid(&stream) {
                Ok(uid) => Requester::new(uid, super::io::euid()),
                Err(e) => {
                    log::warn!("control peer-unknown error=\"{e}\"");
                    continue;
                }
            };
            let slot = match io.control.desk.connect(who, now) {
                Ok(()) => {
                    match io.control.conns.iter().position(Option::is_none) {
                        Some(i) => i,
                        None if io.control.conns.len() < MAX_CONNS => {
                            io.control.conns.push(None);
                            io.control.conns.len() - 1
                        }
                        None => {
                            // The desk counts what the slab holds: cannot happen.
                            io.control.desk.closed(who);
                            continue;
                        }
                    }
                }
                Err(r) => {
                    if io.control.desk.log_refusal(false, now) {
                        log::warn!("control refused uid={} reply=\"{r}\"", who.uid);
                    }
                    let mut out = Vec::new();
                    r.write_to(&mut out);
                    let _ = stream.write(&out);
                    continue;
                }
            };
            if let Err(e) =
                &io.registry
                    .register(&mut stream, Token(CONTROL_BASE + slot), Interest::READABLE)
            {
                log::warn!("control register-failed error=\"{e}\"");
                io.control.desk.closed(who);
                continue;
            }
            io.control.next_gen += 1;
            io.control.conns[slot] = Some(Conn {
                stream,
                who,
                gen: io.control.next_gen,
                inbuf: Vec::new(),
                fd: None,
                out: crate::buf::OutBuf::new(),
                waiting: false,
                closing: false,
                deadline: Some(now + REQUEST_TIMEOUT),
            });
            self.control_event(io, Token(CONTROL_BASE + slot), now);
        }
    }

    /// A control connection can be read or written.
    pub(super) fn control_event(&mut self, io: &mut Io, token: Token, now: Instant) {
        let slot = token.0 - CONTROL_BASE;
        loop {
            io.control.flush(slot, &io.registry, now);
            let (line, fd) = match io.control.next(slot) {
                Next::Request(line, fd) => (line, fd),
                Next::Wait => break,
                Next::Gone => {
                    io.control.close(slot, &io.registry);
                    return;
                }
            };
            let Some(c) = io.control.conns.get(slot).and_then(Option::as_ref) else {
                return;
            };
            let (who, gen) = (c.who, c.gen);
            let (reply, close) = match io.control.desk.request(who, now) {
                Err(r) => {
                    if io.control.desk.log_refusal(true, now) {
                        log::warn!("control refused uid={} reply=\"{r}\"", who.uid);
                    }
                    (Some(r), true)
                }
                Ok(()) => {
                    let me = ControlRef { slot, gen };
                    match Request::parse(&line) {
                        Ok(req) => {
                            let text = String::from_utf8_lossy(&line);
                            let text = sanitize(text.trim_end().as_bytes());
                            let r = self.control_request(io, req, who, fd, me, now);
                            match &r {
                                Some(r) => log::info!(
                                    "control request uid={} request=\"{text}\" reply=\"{r}\"",
                                    who.uid
                                ),
                                None => log::info!(
                                    "control request uid={} request=\"{text}\" reply=later",
                                    who.uid
                                ),
                            }
                            // Other users get one request a connection: they cannot
                            // hold connections open (root's are kept apart anyway).
                            (r, !who.privileged)
                        }
                        Err(r) => {
                            log::info!("control bad-request uid={} reply=\"{r}\"", who.uid);
                            let close = line.last() != Some(&b'\n');
                            (Some(r), close)
                        }
                    }
                }
            };
            if let Some(r) = reply {
                io.control.reply(slot, &r, close);
            }
            self.start_jobs(io, now);
        }
        if let Some(c) = io.control.conns.get_mut(slot).and_then(Option::as_mut) {
            if !c.waiting && c.out.is_empty() && c.deadline.is_none() {
                c.deadline = Some(now + REQUEST_TIMEOUT);
            }
            if c.out.is_empty() {
                let _ = io
                    .registry
                    .reregister(&mut c.stream, token, Interest::READABLE);
            }
        }
    }

    /// The reply to a request answered later (ATRN, a large queue request), if its
    /// requester still waits.
    pub(super) fn control_reply(
        &mut self,
        io: &mut Io,
        to: ControlRef,
        reply: &Reply,
        now: Instant,
    ) {
        self.control_reply_then(io, to, reply, false, now);
    }

    /// As [`Core::control_reply`], closing the connection after it when `close`
    /// (a requester other than root and the daemon's user has one request a
    /// connection).
    pub(super) fn control_reply_then(
        &mut self,
        io: &mut Io,
        to: ControlRef,
        reply: &Reply,
        close: bool,
        now: Instant,
    ) {
        let same = io
            .control
            .conns
            .get(to.slot)
            .and_then(Option::as_ref)
            .is_some_and(|c| c.gen == to.gen);
        if same {
            io.control.reply(to.slot, reply, close);
            self.control_event(io, Token(CONTROL_BASE + to.slot), now);
        }
    }

    /// Serves one request: the reply now, or `None` when it comes later.
    fn control_request(
        &mut self,
        io: &mut Io,
        req: Request,
        who: Requester,
        fd: Option<OwnedFd>,
        me: ControlRef,
        now: Instant,
    ) -> Option<Reply> {
        let denied = |what: &str| {
            Some(Reply::new(
                550,
                format!("5.7.1 {what} for root and the daemon's user only"),
            ))
        };
        match req {
            Request::Mailq { json } => self.showq_start(io, json, fd, who, me, now),
            Request::Atrn { .. } if !who.privileged => denied("atrn is"),
            Request::Atrn {
                port,
                server,
                domains,
            } => self.customer_start(
                super::customer::Ask::Atrn(domains),
                server,
                port,
                (Some(me), None),
                now,
            ),
            Request::Link { op, .. }
                if op != super::netlinks::LinkOp::Status && !who.privileged =>
            {
                denied("link up and link down are")
            }
            Request::Link { op, name } => Some(self.link_request(io, op, name.as_deref(), now)),
            Request::Queue { .. } if !who.privileged => denied("queue control is"),
            Request::Reload if !who.privileged => denied("reloading is"),
            Request::Reload => Some(match self.reload(io) {
                Ok(()) => Reply::new(250, "2.0.0 configuration reloaded".into()),
                Err(e) => Reply::new(
                    451,
                    format!(
                        "4.3.0 the old configuration stays in force: {}",
                        crate::logging::sanitize(e.as_bytes())
                    ),
                ),
            }),
            Request::Queue { op, sel } => self.queue_request(op, &sel, who.uid, me, now),
            Request::FlushAll => {
                self.page_in_unheld();
                // A user's flush leaves destinations whose attempts just failed
                // alone until their gap ends; root's and USER's do not.
                let threads = self.sched.release_unheld(self.time.unix, !who.privileged);
                Some(Reply::new(
                    250,
                    format!("2.0.0 flushing {threads} queues that are not held"),
                ))
            }
            Request::Flush(t) if !who.privileged && self.names_held(&t) => {
                denied("releasing held mail is")
            }
            Request::Flush(t) => {
                let from = format!("uid {}", who.uid);
                Some(self.etrn_release(&t, ("flush", &from), who.privileged))
            }
        }
    }
}

impl Io {
    /// Closes the connections whose requester has not sent (or read) in time.
    pub(super) fn control_tick(&mut self, now: Instant) {
        let late: Vec<usize> = (0..self.control.conns.len())
            .filter(|&i| {
                self.control.conns[i]
                    .as_ref()
                    .and_then(|c| c.deadline)
                    .is_some_and(|d| now >= d)
            })
            .collect();
        for slot in late {
            self.control.close(slot, &self.registry);
        }
    }
}
