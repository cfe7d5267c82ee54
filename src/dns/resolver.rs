//! `Resolver`: a sans-IO stub resolver for MX, A and AAAA over UDP with TCP fall-back.
//! It never touches a socket or the clock: the loop hands it datagrams and `now`, and
//! drains [`Transmit`]s, answers and its next deadline (smoltcp's `dns` socket idea).
//!
//! * A query goes to one server at a time; no answer within the timeout moves it to
//!   the next server, round after round (`attempts`), with the timeout doubling each
//!   round (glibc's back-off).
//! * An answer is accepted only if it comes from the server the query went to (address
//!   and port), carries the query's transaction id, is a response to a standard
//!   query, and repeats the question exactly. Anything else is ignored, so a spoofed
//!   or stray datagram cannot end a query.
//! * A truncated UDP answer is asked again over TCP at the same server.
//! * CNAME chains are followed inside an answer and across new queries, at most
//!   [`MAX_CNAME_DEPTH`] links; a loop or a longer chain is a permanent failure.
//! * At most [`MAX_RECORDS`] records of an answer are used.
//! * A bounded cache keeps answers for their TTL and negative answers (NXDOMAIN, no
//!   data) for the SOA's negative TTL; temporary failures are never cached.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use crate::vocab::cidr::canonical;
use crate::vocab::Domain;

/// Longest CNAME chain followed (ZMailer gives up past 3; we allow a few more).
pub const MAX_CNAME_DEPTH: usize = 8;
/// Records of one answer that are looked at (Postfix 3.9's 100-record cap, G17).
pub const MAX_RECORDS: usize = 100;
/// Names (with their type) kept in the cache.
pub const CACHE_ENTRIES: usize = 1024;
/// Longest time anything is cached.
pub const MAX_TTL: Duration = Duration::from_secs(86_400);
/// Longest time a negative answer is cached (RFC 2308 §5 suggests 1–3 hours max).
pub const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(900);
/// Negative answers without an SOA are kept this long.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// EDNS(0) payload size we advertise (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;
/// Queries on the wire at once; more wait their turn, so a burst neither floods a
/// small forwarder nor overruns our socket's receive buffer.
pub const MAX_IN_FLIGHT: usize = 64;
/// Largest per-try timeout after doubling.
pub const MAX_TRY_TIMEOUT: Duration = Duration::from_secs(30);

/// The record types we ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rtype {
    /// MX.
    Mx,
    /// A.
    A,
    /// AAAA.
    Aaaa,
}

impl Rtype {
    fn record_type(self) -> RecordType {
        match self {
            Rtype::Mx => RecordType::MX,
            Rtype::A => RecordType::A,
            Rtype::Aaaa => RecordType::AAAA,
        }
    }
}

/// What a query found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// MX records: preference and exchange, as received (at most [`MAX_RECORDS`]).
    Mx(Vec<(u16, Domain)>),
    /// A null MX (RFC 7505): the domain accepts no mail.
    NullMx,
    /// Addresses.
    Addrs(Vec<IpAddr>),
    /// The name exists but has no record of that type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// No usable answer now (SERVFAIL, timeouts, refusals): try again later.
    TempFail(String),
    /// A permanent problem (CNAME loop or chain too long).
    Fail(String),
}

/// A caller's handle on a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// A datagram (or TCP request) to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The server.
    pub server: SocketAddr,
    /// Send over TCP (with the 2-octet length prefix added by the sender).
    pub tcp: bool,
    /// The DNS message.
    pub data: Vec<u8>,
}

#[derive(Debug)]
struct Pending {
    waiters: Vec<QueryId>,
    /// The name asked now (changes as CNAMEs are followed).
    name: Domain,
    /// The chain so far, to spot loops; the original name first.
    chain: Vec<Domain>,
    rtype: Rtype,
    txid: u16,
    server: usize,
    tries: u32,
    tcp: bool,
    /// When the current try times out; `None` while waiting for a free slot.
    deadline: Option<Instant>,
    /// Lowest TTL along the CNAME chain.
    ttl: Duration,
}

/// The resolver settings.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// Servers in order.
    pub servers: Vec<SocketAddr>,
    /// First per-try timeout.
    pub timeout: Duration,
    /// Rounds over the servers.
    pub attempts: u32,
    /// Start queries at successive servers.
    pub rotate: bool,
}

/// The resolver.
#[derive(Debug)]
pub struct Resolver {
    cfg: ResolverConfig,
    pending: HashMap<(Domain, Rtype), Pending>,
    cache: HashMap<(Domain, Rtype), (Instant, Answer)>,
    out: VecDeque<Transmit>,
    done: VecDeque<(QueryId, Answer)>,
    backlog: VecDeque<(Domain, Rtype)>,
    next_qid: u64,
    /// Random octets from the OS for transaction ids, used from the back.
    entropy: Vec<u8>,
    /// Where transaction ids come from: the operating system's randomness (the
    /// daemon's I/O layer gives it).
    random: fn(&mut [u8]),
    rotate_next: usize,
    /// Datagrams ignored (wrong source, id or question): for tests and logs.
    pub ignored: u64,
    /// Queries sent (UDP and TCP): for tests and logs.
    pub sent: u64,
}

impl Resolver {
    /// A resolver. Transaction ids come from the OS random source (RFC 5452 §9.2);
    /// the loop gives every query its own socket, so the source port is random too.
    pub fn new(cfg: ResolverConfig, random: fn(&mut [u8])) -> Resolver {
        Resolver {
            cfg,
            pending: HashMap::new(),
            cache: HashMap::new(),
            out: VecDeque::new(),
            done: VecDeque::new(),
            backlog: VecDeque::new(),
            next_qid: 0,
            entropy: Vec::new(),
            random,
            rotate_next: 0,
            ignored: 0,
            sent: 0,
        }
    }

    /// Replaces the settings (SIGHUP); queries in flight keep going.
    pub fn reconfigure(&mut self, cfg: ResolverConfig) {
        self.cfg = cfg;
    }

    /// An unpredictable transaction id: OS randomness, fetched 256 octets at a time
    /// (one system call per 128 queries).
    fn random16(&mut self) -> u16 {
        if self.entropy.len() < 2 {
            self.entropy.resize(256, 0);
            (self.random)(&mut self.entropy);
        }
        let lo = self.entropy.pop().unwrap_or(0);
        let hi = self.entropy.pop().unwrap_or(0);
        u16::from_be_bytes([hi, lo])
    }

    /// Asks for `rtype` records of `name`. The answer comes out of
    /// [`Resolver::poll_answer`] (at once when cached).
    pub fn query(&mut self, name: &Domain, rtype: Rtype, now: Instant) -> QueryId {
        self.next_qid += 1;
        let qid = QueryId(self.next_qid);
        let key = (name.clone(), rtype);
        if let Some((exp, ans)) = self.cache.get(&key) {
            if *exp > now {
                self.done.push_back((qid, ans.clone()));
                return qid;
            }
            self.cache.remove(&key);
        }
        if let Some(p) = self.pending.get_mut(&key) {
            p.waiters.push(qid);
            return qid;
        }
        if self.cfg.servers.is_empty() {
            self.done
                .push_back((qid, Answer::TempFail("no DNS servers configured".into())));
            return qid;
        }
        let server = if self.cfg.rotate {
            self.rotate_next = (self.rotate_next + 1) % self.cfg.servers.len();
            self.rotate_next
        } else {
            0
        };
        let mut p = Pending {
            waiters: vec![qid],
            name: name.clone(),
            chain: vec![name.clone()],
            rtype,
            txid: 0,
            server,
            tries: 0,
            tcp: false,
            deadline: None,
            ttl: MAX_TTL,
        };
        if self.in_flight() < MAX_IN_FLIGHT {
            self.send(&mut p, now);
        } else {
            self.backlog.push_back(key.clone());
        }
        self.pending.insert(key, p);
        qid
    }

    fn in_flight(&self) -> usize {
        self.pending
            .values()
            .filter(|p| p.deadline.is_some())
            .count()
    }

    /// Sends waiting queries while slots are free.
    fn start_backlog(&mut self, now: Instant) {
        while self.in_flight() < MAX_IN_FLIGHT {
            let Some(key) = self.backlog.pop_front() else {
                break;
            };
            if let Some(mut p) = self.pending.remove(&key) {
                self.send(&mut p, now);
                self.pending.insert(key, p);
            }
        }
    }

    fn try_timeout(&self, tries: u32) -> Duration {
        let round = tries / self.cfg.servers.len().max(1) as u32;
        (self.cfg.timeout * 2u32.saturating_pow(round)).min(MAX_TRY_TIMEOUT)
    }

    fn send(&mut self, p: &mut Pending, now: Instant) {
        p.txid = self.random16();
        let mut m = Message::new(p.txid, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        let qname = Name::from_ascii(format!("{}.", p.name)).unwrap_or_else(|_| Name::root());
        let mut q = Query::query(qname, p.rtype.record_type());
        q.set_query_class(DNSClass::IN);
        m.add_query(q);
        if !p.tcp {
            let mut e = Edns::new();
            e.set_max_payload(EDNS_PAYLOAD);
            m.set_edns(e);
        }
        let data = m.to_vec().unwrap_or_default();
        p.deadline = Some(now + self.try_timeout(p.tries));
        self.sent += 1;
        self.out.push_back(Transmit {
            server: self.cfg.servers[p.server % self.cfg.servers.len()],
            tcp: p.tcp,
            data,
        });
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next finished query.
    pub fn poll_answer(&mut self) -> Option<(QueryId, Answer)> {
        self.done.pop_front()
    }

    /// The earliest deadline of a query in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().filter_map(|p| p.deadline).min()
    }

    /// Moves queries whose try timed out to the next server, or fails them.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<(Domain, Rtype)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(p) = self.pending.remove(&key) {
                self.next_server(key, p, now, "timed out");
            }
        }
        self.start_backlog(now);
    }

    /// Tries the next server, or finishes the query with a temporary failure.
    fn next_server(&mut self, key: (Domain, Rtype), mut p: Pending, now: Instant, why: &str) {
        p.tries += 1;
        let total = self.cfg.servers.len().max(1) as u32 * self.cfg.attempts.max(1);
        if p.tries >= total {
            let ans = Answer::TempFail(format!("DNS query for {} {}", p.name, why));
            self.finish(&p, ans, None, now);
            return;
        }
        p.server = (p.server + 1) % self.cfg.servers.len().max(1);
        p.tcp = false;
        self.send(&mut p, now);
        self.pending.insert(key, p);
    }

    fn finish(&mut self, p: &Pending, ans: Answer, ttl: Option<Duration>, now: Instant) {
        if let Some(ttl) = ttl {
            if !ttl.is_zero() {
                let exp = now + ttl.min(MAX_TTL);
                self.cache_put(p.chain[0].clone(), p.rtype, exp, ans.clone(), now);
            }
        }
        for w in &p.waiters {
            self.done.push_back((*w, ans.clone()));
        }
    }

    fn cache_put(&mut self, name: Domain, rtype: Rtype, exp: Instant, ans: Answer, now: Instant) {
        if self.cache.len() >= CACHE_ENTRIES {
            self.cache.retain(|_, (e, _)| *e > now);
        }
        if self.cache.len() >= CACHE_ENTRIES {
            if let Some(k) = self
                .cache
                .iter()
                .min_by_key(|(_, (e, _))| *e)
                .map(|(k, _)| k.clone())
            {
                self.cache.remove(&k);
            }
        }
        self.cache.insert((name, rtype), (exp, ans));
    }

    /// Gives back memory of tables that grew during a burst.
    pub fn shrink_to_fit(&mut self) {
        self.pending.shrink_to_fit();
        self.backlog.shrink_to_fit();
        self.out.shrink_to_fit();
        self.done.shrink_to_fit();
    }

    /// Number of cached entries.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// A datagram (or a TCP answer without its length prefix) from `from`.
    /// Returns whether it answered a query in flight (false: ignored).
    pub fn handle_datagram(&mut self, from: SocketAddr, data: &[u8], now: Instant) -> bool {
        let ignored = self.ignored;
        self.receive(from, data, now);
        self.start_backlog(now);
        self.ignored == ignored
    }

    fn receive(&mut self, from: SocketAddr, data: &[u8], now: Instant) {
        let from = SocketAddr::new(canonical(from.ip()), from.port());
        let Ok(msg) = Message::from_vec(data) else {
            self.ignored += 1;
            return;
        };
        let key = self.pending.iter().find_map(|(k, p)| {
            p.deadline?;
            let server = self
                .cfg
                .servers
                .get(p.server % self.cfg.servers.len().max(1))?;
            let server = SocketAddr::new(canonical(server.ip()), server.port());
            (p.txid == msg.metadata.id && server == from && question_matches(&msg, p))
                .then(|| k.clone())
        });
        let Some(key) = key else {
            self.ignored += 1;
            return;
        };
        if msg.metadata.message_type != MessageType::Response
            || msg.metadata.op_code != OpCode::Query
        {
            self.ignored += 1;
            return;
        }
        let Some(mut p) = self.pending.remove(&key) else {
            return;
        };
        if msg.metadata.truncation && !p.tcp {
            p.tcp = true;
            self.send(&mut p, now);
            self.pending.insert(key, p);
            return;
        }
        match msg.metadata.response_code {
            ResponseCode::NoError => self.interpret(key, p, &msg, now),
            ResponseCode::NXDomain => {
                let ttl = negative_ttl(&msg);
                p.ttl = p.ttl.min(ttl);
                let t = p.ttl;
                self.finish(&p, Answer::NxDomain, Some(t), now);
            }
            rc => {
                let why = format!("failed at {from}: {rc}");
                self.next_server(key, p, now, &why);
            }
        }
    }

    /// Reads a NOERROR answer: follows the CNAME chain, collects records.
    fn interpret(&mut self, key: (Domain, Rtype), mut p: Pending, msg: &Message, now: Instant) {
        let records: Vec<_> = msg.answers.iter().take(MAX_RECORDS).collect();
        let mut name = p.name.clone();
        loop {
            let cname = records.iter().find_map(|r| match &r.data {
                RData::CNAME(c) if name_is(&r.name, &name) => Some((c.0.clone(), r.ttl)),
                _ => None,
            });
            let Some((target, ttl)) = cname else { break };
            let Some(t) = to_domain(&target) else {
                return self.finish(
                    &p,
                    Answer::Fail(format!("bad CNAME target for {name}")),
                    None,
                    now,
                );
            };
            p.ttl = p.ttl.min(Duration::from_secs(u64::from(ttl)));
            if p.chain.contains(&t) || p.chain.len() > MAX_CNAME_DEPTH {
                let why = format!("CNAME loop or chain longer than {MAX_CNAME_DEPTH} at {name}");
                return self.finish(&p, Answer::Fail(why), None, now);
            }
            p.chain.push(t.clone());
            name = t;
        }
        let mut ttl = p.ttl;
        let mut mx = Vec::new();
        let mut addrs = Vec::new();
        let mut null_mx = false;
        for r in records.iter().filter(|r| name_is(&r.name, &name)) {
            match (&r.data, p.rtype) {
                (RData::MX(m), Rtype::Mx) => {
                    ttl = ttl.min(Duration::from_secs(u64::from(r.ttl)));
                    if m.exchange.is_root() {
                        null_mx = true;
                    } else if let Some(d) = to_domain(&m.exchange) {
                        mx.push((m.preference, d));
                    }
                }
                (RData::A(a), Rtype::A) => {
                    ttl = ttl.min(Duration::from_secs(u64::from(r.ttl)));
                    addrs.push(IpAddr::V4(a.0));
                }
                (RData::AAAA(a), Rtype::Aaaa) => {
                    ttl = ttl.min(Duration::from_secs(u64::from(r.ttl)));
                    addrs.push(IpAddr::V6(a.0));
                }
                _ => {}
            }
        }
        let answer = match p.rtype {
            Rtype::Mx if null_mx && mx.is_empty() => Some(Answer::NullMx),
            Rtype::Mx if !mx.is_empty() => Some(Answer::Mx(mx)),
            Rtype::A | Rtype::Aaaa if !addrs.is_empty() => Some(Answer::Addrs(addrs)),
            _ => None,
        };
        match answer {
            Some(a) => self.finish(&p, a, Some(ttl), now),
            None if name != p.name && !has_soa(msg) => {
                // The chain ends at a name the server did not answer for: ask for it.
                p.name = name;
                p.tries = 0;
                p.tcp = false;
                self.send(&mut p, now);
                self.pending.insert(key, p);
            }
            None => {
                let t = p.ttl.min(negative_ttl(msg));
                self.finish(&p, Answer::NoData, Some(t), now);
            }
        }
    }
}

fn name_is(n: &Name, d: &Domain) -> bool {
    to_domain(n).is_some_and(|x| &x == d)
}

fn to_domain(n: &Name) -> Option<Domain> {
    Domain::parse_relaxed(&n.to_ascii()).ok()
}

fn has_soa(msg: &Message) -> bool {
    msg.authorities
        .iter()
        .any(|r| matches!(r.data, RData::SOA(_)))
}

/// RFC 2308 §5: min(SOA TTL, SOA MINIMUM), capped.
fn negative_ttl(msg: &Message) -> Duration {
    msg.authorities
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(s) => Some(Duration::from_secs(u64::from(r.ttl.min(s.minimum)))),
            _ => None,
        })
        .unwrap_or(DEFAULT_NEGATIVE_TTL)
        .min(MAX_NEGATIVE_TTL)
}

fn question_matches(msg: &Message, p: &Pending) -> bool {
    match msg.queries.as_slice() {
        [q] => {
            q.query_type() == p.rtype.record_type()
                && q.query_class() == DNSClass::IN
                && name_is(q.name(), &p.name)
        }
        _ => false,
    }
}

#[cfg(test)]
#[path = "resolver_tests.rs"]
mod tests;
