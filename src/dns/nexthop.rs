//! Next-hop selection for a route host (DESIGN.md §5.4, reference/zmailer.md §5.2):
//! turns `[ip]`, `[ip]:port` or a host name into the ordered list of addresses a
//! delivery tries, or a permanent or temporary failure. Sans-IO: it asks the
//! [`Resolver`] for records and is handed the answers.
//!
//! Order of work for a name:
//! 1. an address literal is used as is;
//! 2. with `files` before `dns`, a name in the hosts file is used as is — no DNS query;
//! 3. with `-x` (no MX), the name's A/AAAA records;
//! 4. otherwise MX: null MX and NXDOMAIN fail, SERVFAIL/timeout defer, no MX means the
//!    name's own A/AAAA (implicit MX). MX hosts are sorted by preference, equal
//!    preferences shuffled; every MX at or below our own preference is dropped (self =
//!    HOSTNAME by name, or an address we listen on at the SMTP port); if that drops
//!    them all, we are the best MX and the name's own A/AAAA is used. MX hosts are
//!    resolved one preference group at a time, the hosts file first, until
//!    [`MAX_ADDRS`] addresses are known.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::files::ResolveConf;
use super::resolver::{Answer, QueryId, Resolver, Rtype, MAX_RECORDS};
use crate::config::main_conf::HostSource;
use crate::config::routes::{parse_host, Host};
use crate::vocab::Domain;

/// Addresses tried per delivery attempt (Postfix `smtp_mx_address_limit`, G17).
pub const MAX_ADDRS: usize = 5;

/// Who we are, to drop MX records that point back at us.
#[derive(Debug, Clone, Default)]
pub struct SelfSpec {
    /// `HOSTNAME`.
    pub hostname: Option<Domain>,
    /// Our listening sockets.
    pub listen: Vec<SocketAddr>,
    /// Addresses of our interfaces (for listeners on the unspecified address).
    pub interfaces: Vec<IpAddr>,
}

impl SelfSpec {
    /// Whether connecting to `ip:port` would reach this daemon.
    pub fn is_self_addr(&self, ip: IpAddr, port: u16) -> bool {
        self.listen.iter().any(|l| {
            l.port() == port
                && (l.ip() == ip || (l.ip().is_unspecified() && self.interfaces.contains(&ip)))
        })
    }

    /// Whether a host name is our own.
    pub fn is_self_name(&self, d: &Domain) -> bool {
        self.hostname.as_ref() == Some(d)
    }
}

/// Which source answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The route named an address.
    Literal,
    /// The hosts file.
    Files,
    /// DNS.
    Dns,
    /// A transport's `-F UNIX:/path`: a local stream socket, whose path is the
    /// hop's `host` after `UNIX:` (its `addr` is unused).
    Unix,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Literal => "literal",
            Source::Files => "files",
            Source::Dns => "dns",
            Source::Unix => "unix",
        })
    }
}

impl Hop {
    /// The socket path of a [`Source::Unix`] hop.
    pub fn unix_path(&self) -> Option<&std::path::Path> {
        (self.source == Source::Unix)
            .then(|| self.host.strip_prefix("UNIX:"))
            .flatten()
            .map(std::path::Path::new)
    }
}

/// One address to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The host name (or literal) it belongs to.
    pub host: String,
    /// MX preference, when it came from an MX record.
    pub pref: Option<u16>,
    /// Where to connect.
    pub addr: SocketAddr,
    /// Who answered.
    pub source: Source,
}

/// The result of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Addresses to try, in order (at most [`MAX_ADDRS`]).
    Hops(Vec<Hop>),
    /// A permanent failure: bounce with this RFC 3463 status.
    Failed {
        /// Enhanced status code.
        status: &'static str,
        /// Why.
        reason: String,
    },
    /// A temporary failure: defer.
    Deferred {
        /// Enhanced status code.
        status: &'static str,
        /// Why.
        reason: String,
    },
}

fn failed(status: &'static str, reason: String) -> Outcome {
    Outcome::Failed { status, reason }
}

fn deferred(status: &'static str, reason: String) -> Outcome {
    Outcome::Deferred { status, reason }
}

/// One name being resolved to addresses.
#[derive(Debug)]
struct NameRes {
    pref: Option<u16>,
    name: Domain,
    a: Option<Answer>,
    aaaa: Option<Answer>,
}

impl NameRes {
    fn done(&self) -> bool {
        self.a.is_some() && self.aaaa.is_some()
    }

    fn addrs(&self) -> Vec<IpAddr> {
        let mut v = Vec::new();
        for a in [&self.a, &self.aaaa].into_iter().flatten() {
            if let Answer::Addrs(x) = a {
                v.extend(x.iter().copied());
            }
        }
        v
    }

    fn temp_error(&self) -> Option<String> {
        [&self.a, &self.aaaa]
            .into_iter()
            .flatten()
            .find_map(|a| match a {
                Answer::TempFail(w) => Some(w.clone()),
                _ => None,
            })
    }
}

#[derive(Debug)]
enum Step {
    /// Waiting for the MX answer.
    Mx(QueryId),
    /// Resolving one preference group of MX hosts (`rest` are the later groups).
    Targets {
        group: Vec<NameRes>,
        rest: Vec<Vec<(u16, Domain)>>,
    },
    /// Resolving the name itself (no MX, `-x`, or we are the best MX).
    Implicit(NameRes),
}

/// One next-hop lookup in progress.
#[derive(Debug)]
pub struct Lookup {
    name: Domain,
    port: u16,
    step: Step,
    hops: Vec<Hop>,
    /// A temporary error met on the way (reported if nothing usable is found).
    temp: Option<String>,
    /// Queries this lookup waits for, and which slot they fill.
    waiting: HashMap<QueryId, (usize, Rtype)>,
}

/// Everything a lookup consults besides DNS.
pub struct Env<'a> {
    /// Order, hosts file, resolver settings.
    pub conf: &'a ResolveConf,
    /// Who we are.
    pub me: &'a SelfSpec,
    /// Outbound SMTP port.
    pub smtp_port: u16,
}

/// Starts a lookup. A lookup that needs no DNS finishes at once (`Err(outcome)`).
pub fn start(
    host: &str,
    mut no_mx: bool,
    env: &Env<'_>,
    dns: &mut Resolver,
    now: Instant,
) -> Result<Lookup, Outcome> {
    let (name, port) = match parse_host(host) {
        Ok(Host::Literal(ip, port)) => {
            let port = port.unwrap_or(env.smtp_port);
            return Err(Outcome::Hops(vec![Hop {
                host: host.to_string(),
                pref: None,
                addr: SocketAddr::new(ip, port),
                source: Source::Literal,
            }]));
        }
        Ok(Host::Name(d)) => (d, env.smtp_port),
        Ok(Host::Bracketed(d, port)) => {
            no_mx = true;
            (d, port.unwrap_or(env.smtp_port))
        }
        _ => return Err(failed("5.1.2", format!("bad host '{host}'"))),
    };
    if let Some(addrs) = env.conf.files_answer(&name) {
        return Err(Outcome::Hops(
            addrs
                .into_iter()
                .take(MAX_ADDRS)
                .map(|ip| Hop {
                    host: name.to_string(),
                    pref: None,
                    addr: SocketAddr::new(ip, port),
                    source: Source::Files,
                })
                .collect(),
        ));
    }
    if !env.conf.order.contains(&HostSource::Dns) {
        return Err(deferred(
            "4.4.3",
            format!("{name} is not in the hosts file and HOSTS_ORDER has no dns"),
        ));
    }
    let mut l = Lookup {
        name: name.clone(),
        port,
        step: Step::Mx(QueryId(0)),
        hops: Vec::new(),
        temp: None,
        waiting: HashMap::new(),
    };
    if no_mx {
        l.implicit(dns, now);
    } else {
        let q = dns.query(&name, Rtype::Mx, now);
        l.step = Step::Mx(q);
    }
    Ok(l)
}

impl Lookup {
    /// The queries this lookup waits for.
    pub fn waits_for(&self) -> Vec<QueryId> {
        let mut v: Vec<QueryId> = self.waiting.keys().copied().collect();
        if let Step::Mx(q) = self.step {
            v.push(q);
        }
        v
    }

    fn implicit(&mut self, dns: &mut Resolver, now: Instant) {
        let nr = NameRes {
            pref: None,
            name: self.name.clone(),
            a: None,
            aaaa: None,
        };
        self.waiting.clear();
        let qa = dns.query(&self.name, Rtype::A, now);
        let q6 = dns.query(&self.name, Rtype::Aaaa, now);
        self.waiting.insert(qa, (0, Rtype::A));
        self.waiting.insert(q6, (0, Rtype::Aaaa));
        self.step = Step::Implicit(nr);
    }

    fn start_group(
        &mut self,
        group: Vec<(u16, Domain)>,
        env: &Env<'_>,
        dns: &mut Resolver,
        now: Instant,
    ) -> Vec<NameRes> {
        self.waiting.clear();
        let mut out = Vec::new();
        for (i, (pref, name)) in group.into_iter().enumerate() {
            let mut nr = NameRes {
                pref: Some(pref),
                name: name.clone(),
                a: None,
                aaaa: None,
            };
            if let Some(addrs) = env.conf.files_answer(&name) {
                nr.a = Some(Answer::Addrs(addrs));
                nr.aaaa = Some(Answer::NoData);
            } else {
                let qa = dns.query(&name, Rtype::A, now);
                let q6 = dns.query(&name, Rtype::Aaaa, now);
                self.waiting.insert(qa, (i, Rtype::A));
                self.waiting.insert(q6, (i, Rtype::Aaaa));
            }
            out.push(nr);
        }
        out
    }

    /// Feeds an answer; returns the outcome when the lookup is finished.
    pub fn handle_answer(
        &mut self,
        q: QueryId,
        ans: Answer,
        env: &Env<'_>,
        dns: &mut Resolver,
        shuffle: &mut impl FnMut(usize) -> usize,
        now: Instant,
    ) -> Option<Outcome> {
        if let Step::Mx(mq) = self.step {
            if mq != q {
                return None;
            }
            return self.on_mx(ans, env, dns, shuffle, now);
        }
        let (slot, rtype) = self.waiting.remove(&q)?;
        let nr = match &mut self.step {
            Step::Targets { group, .. } => group.get_mut(slot)?,
            Step::Implicit(nr) => nr,
            Step::Mx(_) => return None,
        };
        match rtype {
            Rtype::A => nr.a = Some(ans),
            _ => nr.aaaa = Some(ans),
        }
        self.advance(env, dns, now)
    }

    fn on_mx(
        &mut self,
        ans: Answer,
        env: &Env<'_>,
        dns: &mut Resolver,
        shuffle: &mut impl FnMut(usize) -> usize,
        now: Instant,
    ) -> Option<Outcome> {
        match ans {
            Answer::NxDomain => {
                Some(self.not_found(env, "5.1.2", "Host or domain name not found (NXDOMAIN)"))
            }
            Answer::NullMx => Some(failed(
                "5.1.10",
                format!("{} does not accept mail (null MX, RFC 7505)", self.name),
            )),
            Answer::TempFail(w) => Some(deferred("4.4.3", w)),
            Answer::Fail(w) => Some(failed("5.4.4", w)),
            Answer::NoData | Answer::Addrs(_) => {
                self.implicit(dns, now);
                self.advance(env, dns, now)
            }
            Answer::Mx(mut list) => {
                list.truncate(MAX_RECORDS);
                // Our own name cuts the list at its preference.
                if let Some(cut) = list
                    .iter()
                    .filter(|(_, d)| env.me.is_self_name(d))
                    .map(|(p, _)| *p)
                    .min()
                {
                    list.retain(|(p, _)| *p < cut);
                }
                if list.is_empty() {
                    self.implicit(dns, now);
                    return self.advance(env, dns, now);
                }
                list.sort_by_key(|(p, _)| *p);
                let mut groups: Vec<Vec<(u16, Domain)>> = Vec::new();
                for (p, d) in list {
                    match groups.last_mut() {
                        Some(g) if g[0].0 == p => g.push((p, d)),
                        _ => groups.push(vec![(p, d)]),
                    }
                }
                for g in &mut groups {
                    // Fisher-Yates with the caller's randomness: ties are shuffled.
                    for i in (1..g.len()).rev() {
                        g.swap(i, shuffle(i + 1));
                    }
                }
                groups.reverse();
                let first = groups.pop()?;
                let group = self.start_group(first, env, dns, now);
                self.step = Step::Targets {
                    group,
                    rest: groups,
                };
                self.advance(env, dns, now)
            }
        }
    }

    /// Nothing in DNS: with `dns` before `files`, the hosts file may still answer.
    fn not_found(&self, env: &Env<'_>, status: &'static str, why: &str) -> Outcome {
        if env.conf.order == [HostSource::Dns, HostSource::Files] {
            if let Some(addrs) = env.conf.hosts.lookup(self.name.as_str()) {
                return Outcome::Hops(
                    addrs
                        .into_iter()
                        .take(MAX_ADDRS)
                        .map(|ip| Hop {
                            host: self.name.to_string(),
                            pref: None,
                            addr: SocketAddr::new(ip, self.port),
                            source: Source::Files,
                        })
                        .collect(),
                );
            }
        }
        failed(status, format!("{}: {why}", self.name))
    }

    fn advance(&mut self, env: &Env<'_>, dns: &mut Resolver, now: Instant) -> Option<Outcome> {
        if !self.waiting.is_empty() {
            return None;
        }
        match std::mem::replace(&mut self.step, Step::Mx(QueryId(0))) {
            Step::Mx(q) => {
                self.step = Step::Mx(q);
                None
            }
            Step::Implicit(nr) => {
                if !nr.done() {
                    self.step = Step::Implicit(nr);
                    return None;
                }
                let addrs = nr.addrs();
                if addrs.is_empty() {
                    if let Some(t) = nr.temp_error() {
                        return Some(deferred("4.4.3", t));
                    }
                    let nx = matches!(nr.a, Some(Answer::NxDomain));
                    let why = if nx {
                        "Host or domain name not found (NXDOMAIN)"
                    } else {
                        "no MX and no address record"
                    };
                    return Some(self.not_found(env, "5.1.2", why));
                }
                if addrs.iter().all(|ip| env.me.is_self_addr(*ip, self.port)) {
                    return Some(failed(
                        "5.4.6",
                        format!("mail for {} loops back to myself", self.name),
                    ));
                }
                let hops = addrs
                    .into_iter()
                    .filter(|ip| !env.me.is_self_addr(*ip, self.port))
                    .take(MAX_ADDRS)
                    .map(|ip| Hop {
                        host: nr.name.to_string(),
                        pref: None,
                        addr: SocketAddr::new(ip, self.port),
                        source: Source::Dns,
                    })
                    .collect();
                Some(Outcome::Hops(hops))
            }
            Step::Targets { group, mut rest } => {
                if !group.iter().all(NameRes::done) {
                    self.step = Step::Targets { group, rest };
                    return None;
                }
                let self_here = group.iter().any(|nr| {
                    nr.addrs()
                        .iter()
                        .any(|ip| env.me.is_self_addr(*ip, self.port))
                });
                if !self_here {
                    for nr in &group {
                        if let Some(t) = nr.temp_error() {
                            self.temp.get_or_insert(t);
                        }
                        let source = if env.conf.files_answer(&nr.name).is_some() {
                            Source::Files
                        } else {
                            Source::Dns
                        };
                        for ip in nr.addrs() {
                            if self.hops.len() < MAX_ADDRS {
                                self.hops.push(Hop {
                                    host: nr.name.to_string(),
                                    pref: nr.pref,
                                    addr: SocketAddr::new(ip, self.port),
                                    source,
                                });
                            }
                        }
                    }
                }
                let more = !self_here && self.hops.len() < MAX_ADDRS;
                if more {
                    if let Some(next) = rest.pop() {
                        let group = self.start_group(next, env, dns, now);
                        self.step = Step::Targets { group, rest };
                        return self.advance(env, dns, now);
                    }
                }
                if !self.hops.is_empty() {
                    return Some(Outcome::Hops(std::mem::take(&mut self.hops)));
                }
                if self_here {
                    // We are the best MX that resolves: use the name's own address.
                    self.implicit(dns, now);
                    return self.advance(env, dns, now);
                }
                Some(match self.temp.take() {
                    Some(t) => deferred("4.4.3", t),
                    None => failed(
                        "5.4.4",
                        format!("no MX host of {} has an address", self.name),
                    ),
                })
            }
        }
    }
}

#[cfg(test)]
#[path = "nexthop_tests.rs"]
mod tests;
