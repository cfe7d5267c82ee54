//! The connection layer: every TCP connection of the daemon — accepted SMTP clients,
//! outbound SMTP deliveries, DNS over TCP — is a [`Conn`] in one [`Slab`], named by a
//! generation-counted [`ConnId`], with a byte transport and a [`Role`]. One read path
//! and one flush path serve every role; the sessions keep their own bounded output
//! ([`crate::buf::OutBuf`]) and say through `wants_read` when they take no more input
//! (back-pressure). A connection can change its role in place (a server session becomes a
//! client session on the same bytes: ATRN's turn-around).
//!
//! The transport is any `Read + Write` stream: a plain socket now; TLS (rustls driven
//! by `read_tls`/`write_tls`/`process_new_packets`) wraps the same stream later
//! without the sessions noticing; tests use an in-memory pipe.
//!
//! A `ConnId` is a slot and the slot's generation at insertion: when a slot is freed
//! and reused, the old id stops matching, so a stale event or timer can never reach
//! the new occupant (quinn-proto's connection handles, OpenSMTPD's `ioev`).

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::time::Instant;

use mio::Token;

use super::transport::Transport;
use crate::buf::OutBuf;
use crate::sched::JobId;
use crate::smtp::client::ClientSession;
use crate::smtp::server::ServerSession;
use crate::store::spool::{Envelope, Incoming, SpoolError};

/// First token of connections; tokens below are the loop's own (signals, listeners, DNS).
pub const LINK_BASE: usize = 1 << 31;
const SLOT_BITS: u32 = 16;
const GEN_BITS: u32 = 15;
/// Most connections at once (the slot field of a token).
pub const MAX_LINKS: usize = 1 << SLOT_BITS;

/// A connection's name: slot and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    slot: u32,
    gen: u32,
}

impl ConnId {
    /// The slot (index into per-slot tables such as the timers).
    pub fn slot(self) -> usize {
        self.slot as usize
    }

    /// The poll token of this connection.
    pub fn token(self) -> Token {
        Token(LINK_BASE | (self.gen as usize) << SLOT_BITS | self.slot as usize)
    }

    /// The connection a token names, if it is a connection token.
    pub fn from_token(t: Token) -> Option<ConnId> {
        if t.0 & LINK_BASE == 0 {
            return None;
        }
        let v = t.0 & !LINK_BASE;
        Some(ConnId {
            slot: (v & (MAX_LINKS - 1)) as u32,
            gen: (v >> SLOT_BITS) as u32 & ((1 << GEN_BITS) - 1),
        })
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.slot, self.gen)
    }
}

/// Slots with generations.
#[derive(Debug)]
pub struct Slab<T> {
    entries: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// The id the next [`Slab::insert`] will return.
    pub fn next_id(&self) -> Option<ConnId> {
        match self.free.last() {
            Some(&slot) => Some(ConnId {
                slot,
                gen: self.entries[slot as usize].0,
            }),
            None if self.entries.len() < MAX_LINKS => Some(ConnId {
                slot: self.entries.len() as u32,
                gen: 0,
            }),
            None => None,
        }
    }

    /// Stores `value`; `None` when every slot is taken.
    pub fn insert(&mut self, value: T) -> Option<ConnId> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None if self.entries.len() < MAX_LINKS => {
                self.entries.push((0, None));
                (self.entries.len() - 1) as u32
            }
            None => return None,
        };
        let e = &mut self.entries[slot as usize];
        e.1 = Some(value);
        self.len += 1;
        Some(ConnId { slot, gen: e.0 })
    }

    /// The value `id` names, if it is still there.
    pub fn get(&self, id: ConnId) -> Option<&T> {
        match self.entries.get(id.slot as usize) {
            Some((gen, Some(v))) if *gen == id.gen => Some(v),
            _ => None,
        }
    }

    /// The value `id` names, if it is still there.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        match self.entries.get_mut(id.slot as usize) {
            Some((gen, Some(v))) if *gen == id.gen => Some(v),
            _ => None,
        }
    }

    /// Takes the value out; the slot's generation moves on.
    pub fn remove(&mut self, id: ConnId) -> Option<T> {
        let e = self.entries.get_mut(id.slot as usize)?;
        if e.0 != id.gen || e.1.is_none() {
            return None;
        }
        let v = e.1.take();
        e.0 = (e.0 + 1) & ((1 << GEN_BITS) - 1);
        self.free.push(id.slot);
        self.len -= 1;
        v
    }

    /// The id of the connection in `slot`, if any (timers are kept by slot).
    pub fn id_at(&self, slot: usize) -> Option<ConnId> {
        match self.entries.get(slot) {
            Some((gen, Some(_))) => Some(ConnId {
                slot: slot as u32,
                gen: *gen,
            }),
            _ => None,
        }
    }

    /// Every id in use.
    pub fn ids(&self) -> Vec<ConnId> {
        (0..self.entries.len())
            .filter_map(|s| self.id_at(s))
            .collect()
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An accepted SMTP client: its session and the message it is writing to the spool.
pub struct Inbound {
    /// The client's address (canonical, for per-address limits).
    pub ip: IpAddr,
    /// The SMTP session.
    pub session: ServerSession,
    /// The message being written, if any.
    pub incoming: Option<Incoming>,
    /// Its envelope, for the scheduler once it is committed.
    pub envelope: Option<Box<Envelope>>,
    /// Why the spool could not start the message, reported at its end.
    pub spool_error: Option<SpoolError>,
    /// A TLS handshake is in progress (counted against the loop's cap).
    pub handshaking: bool,
}

impl Inbound {
    /// A server session on a connection, nothing received yet.
    pub fn new(ip: IpAddr, session: ServerSession) -> Inbound {
        Inbound {
            ip,
            session,
            incoming: None,
            envelope: None,
            spool_error: None,
            handshaking: false,
        }
    }
}

/// An outbound delivery's connection.
pub struct Outbound {
    /// What it serves: a delivery job, or a customer request.
    pub serves: Serves,
    /// `host[ip]:port`.
    pub relay: String,
    /// The session, once connected.
    pub session: Option<ClientSession>,
    /// When connecting gives up.
    pub connect_deadline: Instant,
    /// How to check the server's certificate and the name to send (SNI), when the
    /// connection may use TLS.
    #[cfg(feature = "tls")]
    pub tls_plan: Option<(crate::tls::Check, String)>,
    /// The next hop's address (a failed opportunistic handshake is remembered by it).
    pub addr: std::net::SocketAddr,
}

/// What a client connection serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// A delivery job.
    Job(JobId),
    /// A customer request (`etrnd atrn`, a link-up action's ETRN or ATRN).
    Customer(u64),
}

/// One DNS exchange over TCP.
pub struct DnsTcp {
    /// The server.
    pub server: std::net::SocketAddr,
    /// The length-prefixed request still to write.
    pub out: OutBuf,
    /// The answer so far.
    pub inbuf: Vec<u8>,
    /// When the exchange started.
    pub started: Instant,
}

/// What a connection carries.
pub enum Role {
    /// A server session (an accepted client).
    Server(Box<Inbound>),
    /// A client session (a delivery; after ATRN, the hub's side too).
    Client(Box<Outbound>),
    /// A DNS query over TCP.
    Dns(Box<DnsTcp>),
}

impl Role {
    /// The server session's side, if that is the role.
    pub fn server(&mut self) -> Option<&mut Inbound> {
        match self {
            Role::Server(s) => Some(s),
            _ => None,
        }
    }

    /// The delivery's side, if that is the role.
    pub fn client(&mut self) -> Option<&mut Outbound> {
        match self {
            Role::Client(c) => Some(c),
            _ => None,
        }
    }

    /// Whether the role takes input now (back-pressure).
    pub fn wants_read(&self, now: Instant) -> bool {
        match self {
            Role::Server(s) => s.session.wants_read(now),
            Role::Client(c) => c.session.as_ref().is_some_and(|s| !s.is_closed()),
            Role::Dns(_) => true,
        }
    }

    fn pending(&self) -> &[u8] {
        match self {
            Role::Server(s) => s.session.pending_output(),
            Role::Client(c) => c.session.as_ref().map_or(&[], |s| s.pending_output()),
            Role::Dns(d) => d.out.as_slice(),
        }
    }

    fn consume(&mut self, n: usize) {
        match self {
            Role::Server(s) => s.session.consume_output(n),
            Role::Client(c) => {
                if let Some(s) = c.session.as_mut() {
                    s.consume_output(n)
                }
            }
            Role::Dns(d) => d.out.consume(n),
        }
    }
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadResult {
    /// Octets read into the buffer.
    Data(usize),
    /// Nothing more for now.
    WouldBlock,
    /// End of stream or an error.
    Closed,
}

/// A connection: its transport, its role, and its readiness.
pub struct Conn<S> {
    /// The byte transport.
    pub stream: S,
    /// What it carries.
    pub role: Role,
    /// The transport may have more to read (edge-triggered readiness not drained).
    pub readable: bool,
    /// The peer closed its side or the transport failed.
    pub dead: bool,
}

impl<S: Read + Write> Conn<S> {
    /// A new connection, assumed readable (an edge may have come before registration).
    pub fn new(stream: S, role: Role) -> Conn<S> {
        Conn {
            stream,
            role,
            readable: true,
            dead: false,
        }
    }

    /// Reads once into `buf`. The one read path of every role.
    pub fn read(&mut self, buf: &mut [u8]) -> ReadResult {
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.dead = true;
                    return ReadResult::Closed;
                }
                Ok(n) => return ReadResult::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return ReadResult::WouldBlock;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.dead = true;
                    return ReadResult::Closed;
                }
            }
        }
    }

    /// Writes as much of the role's output as the transport takes. The one write
    /// path of every role. Returns whether output is still pending (in the role or
    /// in the transport, such as TLS records not yet written).
    pub fn flush(&mut self) -> bool {
        loop {
            let pending = self.role.pending();
            if pending.is_empty() {
                return match self.stream.flush() {
                    Ok(()) => false,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                    Err(_) => {
                        self.dead = true;
                        true
                    }
                };
            }
            match self.stream.write(pending) {
                Ok(0) => {
                    self.dead = true;
                    return true;
                }
                Ok(n) => self.role.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return true,
                Err(_) => {
                    self.dead = true;
                    return true;
                }
            }
        }
    }

    /// Gives the connection a new role on the same transport (ATRN's turn-around); the
    /// old role is handed back.
    pub fn set_role(&mut self, role: Role) -> Role {
        std::mem::replace(&mut self.role, role)
    }
}

/// The daemon's connections over sockets, with one deadline per connection.
#[derive(Default)]
pub struct Conns {
    /// The connections.
    pub slab: Slab<Conn<Transport>>,
    /// Their deadlines, by slot.
    pub timers: super::timers::Timers,
}

impl Conns {
    /// Adds a connection and registers its socket for reading and writing.
    pub fn add(
        &mut self,
        stream: impl Into<super::transport::Sock>,
        role: Role,
        registry: &mio::Registry,
    ) -> io::Result<ConnId> {
        let mut stream = stream.into();
        let stream_ref = &mut stream;
        // The poller hears of the connection under the id the slab will give it.
        let id = self
            .slab
            .next_id()
            .ok_or_else(|| io::Error::other("too many connections"))?;
        registry.register(
            stream_ref,
            id.token(),
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )?;
        let got = self.slab.insert(Conn::new(Transport::Plain(stream), role));
        debug_assert_eq!(got, Some(id));
        Ok(id)
    }

    /// The connection `id`, if it is still there.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn<Transport>> {
        self.slab.get_mut(id)
    }

    /// Removes a connection: deregisters its socket and clears its deadline.
    pub fn close(&mut self, id: ConnId, registry: &mio::Registry) -> Option<Conn<Transport>> {
        let mut conn = self.slab.remove(id)?;
        conn.stream.close_notify();
        if let Some(s) = conn.stream.socket() {
            let _ = registry.deregister(s);
        }
        self.timers.set(id.slot(), None);
        Some(conn)
    }

    /// Sets (or clears) the deadline of `id`.
    pub fn set_timer(&mut self, id: ConnId, at: Option<Instant>) {
        if self.slab.get(id).is_some() {
            self.timers.set(id.slot(), at);
        }
    }

    /// The connections whose deadline has come.
    pub fn due(&mut self, now: Instant) -> Vec<ConnId> {
        self.timers
            .due(now)
            .into_iter()
            .filter_map(|slot| self.slab.id_at(slot))
            .collect()
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
