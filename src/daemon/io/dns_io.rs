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
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};

use super::conn::{ConnId, Conns, DnsTcp, ReadResult, Role};
use crate::buf::OutBuf;
use crate::dns::{Dns, Transmit};

/// First token used by DNS sockets (far above connection tokens).
pub const DNS_BASE: usize = 1 << 30;
/// UDP sockets take tokens from here, counting up and wrapping; with at most
/// [`MAX_UDP`] open, a wrapped token never meets a live one.
const UDP_BASE: usize = DNS_BASE;
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
    /// DNS exchanges over TCP open now (they are connections of the connection layer).
    tcp_open: usize,
    /// Datagrams received (for tests of the zero-DNS guarantee, and logs).
    pub received: u64,
}

impl DnsIo {
    /// Whether `token` is one of the UDP sockets' (DNS over TCP uses connections).
    pub fn owns(token: Token) -> bool {
        (DNS_BASE..DNS_BASE + UDP_TOKENS).contains(&token.0)
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

    /// Sends everything the resolver has queued, and drops stale UDP sockets.
    pub fn flush(&mut self, dns: &mut Dns, links: &mut Conns, registry: &Registry, now: Instant) {
        while let Some(t) = dns.poll_transmit() {
            let r = if t.tcp {
                self.start_tcp(t, links, registry, now)
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
    }

    fn start_tcp(
        &mut self,
        t: Transmit,
        links: &mut Conns,
        registry: &Registry,
        now: Instant,
    ) -> io::Result<()> {
        if self.tcp_open >= MAX_TCP {
            return Err(io::Error::other("too many DNS TCP queries"));
        }
        let stream = TcpStream::connect(t.server)?;
        let mut out = OutBuf::new();
        out.extend_from_slice(&(t.data.len() as u16).to_be_bytes());
        out.extend_from_slice(&t.data);
        let role = Role::Dns(Box::new(DnsTcp {
            server: t.server,
            out,
            inbuf: Vec::new(),
            started: now,
        }));
        let id = links.add(stream, role, registry)?;
        links.set_timer(id, Some(now + TCP_LIFETIME));
        self.tcp_open += 1;
        Ok(())
    }

    /// A DNS-over-TCP connection's deadline came, or it failed: it goes.
    pub fn close_tcp(&mut self, id: ConnId, links: &mut Conns, registry: &Registry) {
        if links.close(id, registry).is_some() {
            self.tcp_open -= 1;
        }
    }

    /// Readiness of a DNS-over-TCP connection: write the request, read the answer, hand
    /// it to the resolver once complete.
    pub fn handle_tcp(
        &mut self,
        id: ConnId,
        links: &mut Conns,
        dns: &mut Dns,
        registry: &Registry,
        now: Instant,
    ) {
        let mut buf = [0u8; 4096];
        let answer = loop {
            let Some(conn) = links.get_mut(id) else {
                return;
            };
            conn.flush();
            if conn.dead {
                break None;
            }
            let Role::Dns(q) = &conn.role else { return };
            if !q.out.is_empty() {
                return; // still connecting or the request is not all out
            }
            match conn.read(&mut buf) {
                ReadResult::Data(n) => {
                    let Role::Dns(q) = &mut conn.role else { return };
                    q.inbuf.extend_from_slice(&buf[..n]);
                    if q.inbuf.len() >= 2 {
                        let len = usize::from(u16::from_be_bytes([q.inbuf[0], q.inbuf[1]]));
                        if q.inbuf.len() >= len + 2 {
                            break Some((q.server, q.inbuf[2..len + 2].to_vec()));
                        }
                    }
                    if q.inbuf.len() > MAX_TCP_MESSAGE {
                        break None;
                    }
                }
                ReadResult::WouldBlock => return,
                ReadResult::Closed => break None,
            }
        };
        self.close_tcp(id, links, registry);
        if let Some((from, msg)) = answer {
            self.received += 1;
            dns.handle_datagram(from, &msg, now);
        }
    }

    /// Handles readiness of a DNS UDP socket.
    pub fn handle_event(&mut self, t: Token, dns: &mut Dns, registry: &Registry, now: Instant) {
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
    let mut links = Conns::default();
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
        io.flush(dns, &mut links, poll.registry(), now);
        let wait = [dns.poll_timeout(), links.timers.next()]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(limit)
            .min(limit);
        poll.poll(&mut events, Some(wait))?;
        let now = Instant::now();
        for ev in events.iter() {
            match ConnId::from_token(ev.token()) {
                Some(id) => io.handle_tcp(id, &mut links, dns, poll.registry(), now),
                None => io.handle_event(ev.token(), dns, poll.registry(), now),
            }
        }
        for id in links.due(now) {
            io.close_tcp(id, &mut links, poll.registry());
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
