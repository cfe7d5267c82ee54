//! Moves the resolver's messages: UDP datagrams from two unconnected sockets (IPv4 and
//! IPv6, created on first use, so a daemon that never needs DNS never opens one) and
//! TCP exchanges for truncated answers. Everything non-blocking, driven by mio.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};

use crate::dns::{Dns, Transmit};

/// First token used by DNS sockets (far above connection tokens).
pub const DNS_BASE: usize = 1 << 30;
const UDP4: Token = Token(DNS_BASE);
const UDP6: Token = Token(DNS_BASE + 1);
const TCP_BASE: usize = DNS_BASE + 2;
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

/// The DNS sockets.
#[derive(Default)]
pub struct DnsIo {
    udp4: Option<UdpSocket>,
    udp6: Option<UdpSocket>,
    tcp: Vec<Option<TcpQuery>>,
    /// Datagrams received (for tests of the zero-DNS guarantee, and logs).
    pub received: u64,
}

impl DnsIo {
    /// Whether `token` belongs to DNS.
    pub fn owns(token: Token) -> bool {
        token.0 >= DNS_BASE
    }

    fn udp_for(&mut self, server: SocketAddr, registry: &Registry) -> io::Result<&UdpSocket> {
        let (slot, token, bind) = if server.is_ipv4() {
            (&mut self.udp4, UDP4, SocketAddr::from(([0, 0, 0, 0], 0)))
        } else {
            (&mut self.udp6, UDP6, SocketAddr::from(([0u16; 8], 0)))
        };
        if slot.is_none() {
            let mut s = UdpSocket::bind(bind)?;
            registry.register(&mut s, token, Interest::READABLE)?;
            *slot = Some(s);
        }
        Ok(slot.as_ref().expect("set above"))
    }

    /// Sends everything the resolver has queued, and drops stale TCP exchanges.
    pub fn flush(&mut self, dns: &mut Dns, registry: &Registry, now: Instant) {
        while let Some(t) = dns.poll_transmit() {
            let r = if t.tcp {
                self.start_tcp(t, registry, now)
            } else {
                self.udp_for(t.server, registry)
                    .and_then(|s| s.send_to(&t.data, t.server).map(|_| ()))
            };
            if let Err(e) = r {
                // The resolver's timeout moves the query on.
                log::warn!("dns send-failed error=\"{e}\"");
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
            UDP4 | UDP6 => {
                let mut buf = [0u8; 4096];
                loop {
                    let sock = if token == UDP4 {
                        &self.udp4
                    } else {
                        &self.udp6
                    };
                    let Some(sock) = sock else { return };
                    match sock.recv_from(&mut buf) {
                        Ok((n, from)) => {
                            self.received += 1;
                            dns.handle_datagram(from, &buf[..n], now);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // ICMP errors (port unreachable) surface here; the timeout
                        // handles the query.
                        Err(_) => continue,
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
