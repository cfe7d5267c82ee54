//! Name resolution for outbound delivery: files before DNS, DNS without blocking.
//!
//! [`Dns`] owns the sans-IO [`Resolver`] and the next-hop [`nexthop::Lookup`]s in
//! progress; the daemon moves its datagrams (`daemon::io::dns_io`), and callers
//! get an [`Outcome`] per lookup. Nothing here blocks, reads the clock or opens a
//! socket, and nothing is sent unless a lookup needs DNS: a route to `[ip]` or to a
//! host in the hosts file (with `files` first) never produces a packet.

pub use crate::config::hosts as files;
pub mod nexthop;
pub mod resolver;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

pub use files::ResolveConf;
pub use nexthop::{Hop, Outcome, SelfSpec, Source};
pub use resolver::{Answer, QueryId, Resolver, ResolverConfig, Rtype, Transmit};

/// Who we are, from the configuration and the interfaces' addresses (never from
/// DNS).
pub fn self_spec(
    cfg: &crate::config::Config,
    listening: &[SocketAddr],
    interfaces: Vec<std::net::IpAddr>,
) -> SelfSpec {
    let mut listen = cfg.main.listen.clone();
    listen.extend_from_slice(listening);
    SelfSpec {
        hostname: crate::vocab::Domain::parse(&cfg.main.hostname).ok(),
        listen,
        interfaces,
    }
}

/// A caller's handle on a next-hop lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// Resolver plus the lookups using it.
pub struct Dns {
    conf: ResolveConf,
    me: SelfSpec,
    smtp_port: u16,
    resolver: Resolver,
    lookups: HashMap<LookupId, nexthop::Lookup>,
    owner: HashMap<QueryId, LookupId>,
    done: VecDeque<(LookupId, Outcome)>,
    next: u64,
    rng: u64,
}

fn resolver_config(conf: &ResolveConf) -> ResolverConfig {
    ResolverConfig {
        servers: conf.resolv.servers.clone(),
        timeout: conf.resolv.timeout,
        attempts: conf.resolv.attempts,
        rotate: conf.resolv.rotate,
    }
}

impl Dns {
    /// A resolver for `conf`; `seed` shuffles equal MX preferences, `random` fills
    /// transaction ids (the operating system's randomness).
    pub fn new(
        conf: ResolveConf,
        me: SelfSpec,
        smtp_port: u16,
        (seed, random): (u64, fn(&mut [u8])),
    ) -> Dns {
        let resolver = Resolver::new(resolver_config(&conf), random);
        Dns {
            conf,
            me,
            smtp_port,
            resolver,
            lookups: HashMap::new(),
            owner: HashMap::new(),
            done: VecDeque::new(),
            next: 0,
            rng: seed.rotate_left(17) | 1,
        }
    }

    /// New settings after SIGHUP.
    pub fn reconfigure(&mut self, conf: ResolveConf, me: SelfSpec, smtp_port: u16) {
        self.resolver.reconfigure(resolver_config(&conf));
        self.conf = conf;
        self.me = me;
        self.smtp_port = smtp_port;
    }

    /// Starts resolving a route host (`mail.client.dom`, `[192.0.2.1]:2526`).
    /// `no_mx`: the transport's `-x`. The outcome comes from [`Dns::poll_done`].
    pub fn lookup(&mut self, host: &str, no_mx: bool, now: Instant) -> LookupId {
        self.next += 1;
        let id = LookupId(self.next);
        let env = nexthop::Env {
            conf: &self.conf,
            me: &self.me,
            smtp_port: self.smtp_port,
        };
        match nexthop::start(host, no_mx, &env, &mut self.resolver, now) {
            Err(outcome) => self.done.push_back((id, outcome)),
            Ok(l) => {
                for q in l.waits_for() {
                    self.owner.insert(q, id);
                }
                self.lookups.insert(id, l);
                self.pump(now);
            }
        }
        id
    }

    /// Routes resolver answers to their lookups until none are left.
    fn pump(&mut self, now: Instant) {
        while let Some((q, ans)) = self.resolver.poll_answer() {
            let Some(id) = self.owner.remove(&q) else {
                continue;
            };
            let Some(mut l) = self.lookups.remove(&id) else {
                continue;
            };
            let mut rng = self.rng;
            let mut shuffle = |n: usize| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % n as u64) as usize
            };
            let env = nexthop::Env {
                conf: &self.conf,
                me: &self.me,
                smtp_port: self.smtp_port,
            };
            let result = l.handle_answer(q, ans, &env, &mut self.resolver, &mut shuffle, now);
            self.rng = rng;
            match result {
                Some(outcome) => {
                    for q in l.waits_for() {
                        self.owner.remove(&q);
                    }
                    self.done.push_back((id, outcome));
                }
                None => {
                    for q in l.waits_for() {
                        self.owner.insert(q, id);
                    }
                    self.lookups.insert(id, l);
                }
            }
        }
    }

    /// The next finished lookup.
    pub fn poll_done(&mut self) -> Option<(LookupId, Outcome)> {
        self.done.pop_front()
    }

    /// The next DNS message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.resolver.poll_transmit()
    }

    /// An answer from a server (UDP datagram, or TCP message without its prefix).
    /// Returns whether it answered a query in flight (false: ignored).
    pub fn handle_datagram(&mut self, from: SocketAddr, data: &[u8], now: Instant) -> bool {
        let used = self.resolver.handle_datagram(from, data, now);
        self.pump(now);
        used
    }

    /// When [`Dns::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.resolver.poll_timeout()
    }

    /// Retransmits or fails queries whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.resolver.handle_timeout(now);
        self.pump(now);
    }

    /// Gives back memory held by tables that grew during a burst (the loop calls this
    /// when idle; small systems should not keep a burst's peak).
    pub fn shrink_to_fit(&mut self) {
        self.lookups.shrink_to_fit();
        self.owner.shrink_to_fit();
        self.done.shrink_to_fit();
        self.resolver.shrink_to_fit();
    }

    /// Lookups in progress.
    pub fn in_progress(&self) -> usize {
        self.lookups.len()
    }

    /// DNS messages sent so far.
    pub fn queries_sent(&self) -> u64 {
        self.resolver.sent
    }

    /// Cached entries.
    pub fn cache_len(&self) -> usize {
        self.resolver.cache_len()
    }
}
