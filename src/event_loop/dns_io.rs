//! Moves the resolver's messages: UDP datagrams and TCP exchanges for truncated
//! answers. Everything non-blocking, driven by mio.
//!
//! Every UDP query gets a socket of its own, connected to its server, with a source
//! port the kernel picks at random (RFC 5452 §9.2; with the resolver's random
//! transaction ids an off-path forger must guess about 32 bits, not 16). The socket
//! closes when the resolver takes an answer from it, or after [`UDP_LIFETIME`]; at
//! most [`MAX_UDP`] are open (the oldest goes first). A daemon that never needs DNS
//! never opens one.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};

use crate::dns::{Dns, Transmit};

/// First token used by DNS sockets (far above connection tokens).
pub const DNS_BASE: usize = 1 << 30;
const TCP_BASE: usize = DNS_BASE;
/// UDP sockets take tokens above the TCP ones, counting up and wrapping; with at
/// most [`MAX_UDP`] open, a wrapped token never meets a live one.
const UDP_BASE: usize = DNS_BASE + 1024;
const UDP_TOKENS: usize = 1 << 20;
/// Most UDP query sockets open at once (the resolver has at most 64 queries in
/// flight; the rest covers retries whose earlier try may still be answered).
pub const MAX_UDP: usize = 256;
/// A UDP query socket closes this long after it was opened (the longest try).
pub const UDP_LIFETIME: Duration = crate::dns::resolver::MAX_TRY_TIMEOUT;
/// TCP queries in flight at once; more are dropped and retried by the resolver.
const MAX_TCP: usize = 16;
/// A TCP exchange is abandoned after this long.
const TCP_LIFETIME: Duration = Duration::from_secs(30);
/// Largest DNS message over TCP.
const MAX_TCP_MESSAGE: usize = 65_535 + 2;

struct TcpQuery {
    stream: TcpStream,
    server: SocketAddr,
    out: Vec<u8>,
    written: usize,
    inbuf: Vec<u8>,
    started: Instant,
}

struct UdpQuery {
    socket: UdpSocket,
    server: SocketAddr,
    opened: Instant,
}

/// The DNS sockets.
#[derive(Default)]
pub struct DnsIo {
    udp: HashMap<Token, UdpQuery>,
    /// Open UDP sockets, oldest first (some may have closed already).
    udp_order: VecDeque<Token>,
    next_udp: usize,
    tcp: Vec<Option<TcpQuery>>,
    /// Datagrams received (for tests of the zero-DNS guarantee, and logs).
    pub received: u64,
}

impl DnsIo {
    /// Whether `token` belongs to DNS.
    pub fn owns(token: Token) -> bool {
        token.0 >= DNS_BASE
    }

    /// Sends one datagram from a fresh socket connected to `server`.
    fn send_udp(&mut self, t: &Transmit, registry: &Registry, now: Instant) -> io::Result<()> {
        let bind = if t.server.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let mut socket = UdpSocket::bind(bind)?;
        socket.connect(t.server)?;
        while self.udp.len() >= MAX_UDP {
            match self.udp_order.pop_front() {
                Some(old) => self.close_udp(old, registry),
                None => break,
            }
        }
        let token = Token(UDP_BASE + self.next_udp);
        self.next_udp = (self.next_udp + 1) % UDP_TOKENS;
        registry.register(&mut socket, token, Interest::READABLE)?;
        socket.send(&t.data)?;
        self.udp.insert(
            token,
            UdpQuery {
                socket,
                server: t.server,
                opened: now,
            },
        );
        self.udp_order.push_back(token);
        Ok(())
    }

    fn close_udp(&mut self, token: Token, registry: &Registry) {
        if let Some(mut q) = self.udp.remove(&token) {
            let _ = registry.deregister(&mut q.socket);
        }
    }

    /// UDP query sockets open now (tests).
    pub fn udp_open(&self) -> usize {
        self.udp.len()
    }

    /// Sends everything the resolver has queued, and drops stale TCP exchanges.
    pub fn flush(&mut self, dns: &mut Dns, registry: &Registry, now: Instant) {
        while let Some(t) = dns.poll_transmit() {
            let r = if t.tcp {
                self.start_tcp(t, registry, now)
            } else {
                self.send_udp(&t, registry, now)
            };
            if let Err(e) = r {
                // The resolver's timeout moves the query on.
                log::warn!("dns send-failed error=\"{e}\"");
            }
        }
        while let Some(&old) = self.udp_order.front() {
            match self.udp.get(&old) {
                Some(q) if now < q.opened + UDP_LIFETIME => break,
                _ => {
                    self.udp_order.pop_front();
                    self.close_udp(old, registry);
                }
            }
        }
        for slot in 0..self.tcp.len() {
            if self.tcp[slot]
                .as_ref()
                .is_some_and(|q| now >= q.started + TCP_LIFETIME)
            {
                self.close_tcp(slot, registry);
            }
        }
    }

    fn start_tcp(&mut self, t: Transmit, registry: &Registry, now: Instant) -> io::Result<()> {
        let slot = match self.tcp.iter().position(Option::is_none) {
            Some(s) => s,
            None if self.tcp.len() < MAX_TCP => {
                self.tcp.push(None);
                self.tcp.len() - 1
            }
            None => return Err(io::Error::other("too many DNS TCP queries")),
        };
        let mut stream = TcpStream::connect(t.server)?;
        registry.register(
            &mut stream,
            Token(TCP_BASE + slot),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut out = (t.data.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&t.data);
        self.tcp[slot] = Some(TcpQuery {
            stream,
            server: t.server,
            out,
            written: 0,
            inbuf: Vec::new(),
            started: now,
        });
        Ok(())
    }

    fn close_tcp(&mut self, slot: usize, registry: &Registry) {
        if let Some(mut q) = self.tcp.get_mut(slot).and_then(Option::take) {
            let _ = registry.deregister(&mut q.stream);
        }
    }

    /// Handles readiness of a DNS socket.
    pub fn handle_event(&mut self, token: Token, dns: &mut Dns, registry: &Registry, now: Instant) {
        match token {
            t if t.0 >= UDP_BASE => {
                let mut buf = [0u8; 4096];
                loop {
                    let Some(q) = self.udp.get(&t) else { return };
                    match q.socket.recv(&mut buf) {
                        Ok(n) => {
                            self.received += 1;
                            let server = q.server;
                            if dns.handle_datagram(server, &buf[..n], now) {
                                // Answered: this port is done.
                                return self.close_udp(t, registry);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // ICMP errors (port unreachable) surface here; the resolver's
                        // timeout moves the query on.
                        Err(_) => return self.close_udp(t, registry),
                    }
                }
            }
            Token(t) => {
                let slot = t - TCP_BASE;
                if let Some(answer) = self.drive_tcp(slot) {
                    let from = self.tcp[slot].as_ref().map(|q| q.server);
                    self.close_tcp(slot, registry);
                    if let (Some(from), Ok(msg)) = (from, answer) {
                        self.received += 1;
                        dns.handle_datagram(from, &msg, now);
                    }
                }
            }
        }
    }

    /// Writes the request and reads the answer; `Some` when the exchange is over.
    fn drive_tcp(&mut self, slot: usize) -> Option<Result<Vec<u8>, ()>> {
        let q = self.tcp.get_mut(slot)?.as_mut()?;
        while q.written < q.out.len() {
            match q.stream.write(&q.out[q.written..]) {
                Ok(n) => q.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return None,
                Err(_) => return Some(Err(())),
            }
        }
        let mut buf = [0u8; 4096];
        loop {
            match q.stream.read(&mut buf) {
                Ok(0) => return Some(Err(())),
                Ok(n) => {
                    q.inbuf.extend_from_slice(&buf[..n]);
                    if q.inbuf.len() >= 2 {
                        let len = usize::from(u16::from_be_bytes([q.inbuf[0], q.inbuf[1]]));
                        if q.inbuf.len() >= len + 2 {
                            return Some(Ok(q.inbuf[2..len + 2].to_vec()));
                        }
                    }
                    if q.inbuf.len() > MAX_TCP_MESSAGE {
                        return Some(Err(()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Some(Err(())),
            }
        }
    }
}

/// Runs lookups to completion on a private poller (for `etrnd route -R`, never
/// inside the daemon's loop). Returns each host's outcome, in order.
pub fn resolve_all(
    dns: &mut Dns,
    hosts: &[(String, bool)],
    limit: Duration,
) -> io::Result<Vec<crate::dns::Outcome>> {
    use std::collections::HashMap;
    let mut poll = mio::Poll::new()?;
    let mut events = mio::Events::with_capacity(64);
    let mut io = DnsIo::default();
    let start = Instant::now();
    let mut ids = HashMap::new();
    for (i, (h, no_mx)) in hosts.iter().enumerate() {
        ids.insert(dns.lookup(h, *no_mx, start), i);
    }
    let mut out: Vec<Option<crate::dns::Outcome>> = vec![None; hosts.len()];
    loop {
        let now = Instant::now();
        while let Some((id, o)) = dns.poll_done() {
            if let Some(&i) = ids.get(&id) {
                out[i] = Some(o);
            }
        }
        if out.iter().all(Option::is_some) || now >= start + limit {
            break;
        }
        io.flush(dns, poll.registry(), now);
        let wait = dns
            .poll_timeout()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(limit)
            .min(limit);
        poll.poll(&mut events, Some(wait))?;
        let now = Instant::now();
        for ev in events.iter() {
            io.handle_event(ev.token(), dns, poll.registry(), now);
        }
        dns.handle_timeout(now);
    }
    Ok(out
        .into_iter()
        .map(|o| {
            o.unwrap_or(crate::dns::Outcome::Deferred {
                status: "4.4.3",
                reason: "lookup did not finish in time".into(),
            })
        })
        .collect())
}
