//! The ETRN desk (RFC 1985, DESIGN.md §5.5): who may ask how often, which names
//! this host holds mail for, which destinations a name releases, and the reply.
//! Pure: the daemon hands it the request, the configuration and what the release
//! found, and writes the reply it chooses.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::main_conf::EtrnReplies;
use crate::config::routes::{Host, RouteValue};
use crate::config::scheduler::SchedulerConf;
use crate::route::{MatchKind, RouteTrie};
use crate::sched::{Released, ThreadKey};
use crate::smtp::etrn_target::EtrnTarget;
use crate::smtp::reply::Reply;
use crate::vocab::Domain;

/// ETRN requests one client address outside `MYNETWORKS` may make per
/// [`ETRN_WINDOW`] (Exim's example ratelimit is 3/min; clients with a few domains
/// send a few at once).
pub const ETRN_PER_WINDOW: usize = 10;
/// The rate limit's window.
pub const ETRN_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses the desk remembers at most: the table is bounded even when
/// every ETRN comes from a new address. When it is full, the address that asked
/// least recently is forgotten (its limit starts afresh): many sources can make the
/// limit more lenient for one of them, never lock a newcomer out.
pub const ETRN_ADDRESSES: usize = 4096;

/// The rate limit's memory: recent requests per client address.
#[derive(Debug, Default)]
pub struct EtrnDesk {
    times: HashMap<IpAddr, VecDeque<Instant>>,
}

impl EtrnDesk {
    /// A request from `ip` at `now`: `Err` with the refusal when the address has
    /// used its requests of the window. Our own networks (`trusted`: `etrnd
    /// flush`, the ppp hook) are never limited.
    pub fn admit(&mut self, ip: IpAddr, trusted: bool, now: Instant) -> Result<(), Reply> {
        if trusted {
            return Ok(());
        }
        if !self.times.contains_key(&ip) && self.times.len() >= ETRN_ADDRESSES {
            self.tidy(now);
            if self.times.len() >= ETRN_ADDRESSES {
                let oldest = self
                    .times
                    .iter()
                    .min_by_key(|(_, v)| v.back().copied())
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.times.remove(&k);
                }
            }
        }
        let times = self.times.entry(ip).or_default();
        while times
            .front()
            .is_some_and(|&t0| now.duration_since(t0) >= ETRN_WINDOW)
        {
            times.pop_front();
        }
        if times.len() >= ETRN_PER_WINDOW {
            return Err(Reply::ETRN_TOO_MANY);
        }
        times.push_back(now);
        Ok(())
    }

    /// Forgets addresses that have asked nothing within the window.
    pub fn tidy(&mut self, now: Instant) {
        self.times.retain(|_, v| {
            v.back()
                .is_some_and(|&t| now.duration_since(t) < ETRN_WINDOW)
        });
    }

    /// Client addresses remembered now.
    pub fn remembered(&self) -> usize {
        self.times.len()
    }
}

/// The reply while the daemon stops: nothing is released.
pub fn stopping_reply(t: &EtrnTarget) -> Reply {
    Reply::new(458, format!("4.3.2 {t}: unable to queue messages now"))
}

/// The RFC 1985 reply, at `now`, to a release that found `released`. `eligible` is
/// asked only when nothing matched (it scans the routes).
pub fn reply(
    t: &EtrnTarget,
    released: &Released,
    replies: EtrnReplies,
    now: u64,
    eligible: impl FnOnce() -> bool,
) -> Reply {
    if replies == EtrnReplies::Minimal {
        // Minimal: every well-formed name gets 250, held here or not, so a client
        // learns nothing about which domains we hold.
        return Reply::ETRN_MINIMAL;
    }
    if !released.matched && !eligible() {
        return Reply::etrn_refused(&t.to_string(), "not a domain held here");
    }
    let node = t.to_string();
    if let (0, false, Some(at)) = (released.messages, released.active, released.not_before) {
        // Its last attempt failed moments ago: 458, "unable to queue messages".
        return Reply::new(
            458,
            format!(
                "4.4.1 {node}: the last attempt failed, unable to queue messages for {} s",
                at.saturating_sub(now).max(1)
            ),
        );
    }
    if released.messages > 0 {
        Reply::etrn_started(released.messages, &node)
    } else if released.matched {
        Reply::etrn_already(&node)
    } else {
        Reply::etrn_nothing(&node)
    }
}

/// Whether `t` names something this host holds mail for: a routed (non-default)
/// domain, the host of a route, or a channel of a route.
pub fn eligible(trie: &RouteTrie, t: &EtrnTarget) -> bool {
    let routes = trie.values();
    let host_is = |v: &RouteValue, f: &dyn Fn(&str) -> bool| matches!(v, RouteValue::Channel { host, .. } if f(&host.to_string()));
    match t {
        EtrnTarget::Node(d) => {
            trie.lookup(d)
                .is_some_and(|(k, r)| k != MatchKind::Default && r.value != RouteValue::Ignore)
                || routes.iter().any(|(_, v)| host_is(v, &|h| h == d.as_str()))
        }
        EtrnTarget::Subdomains(d) => routes.iter().any(|(key, v)| {
            key.as_ref().is_some_and(|k| k.is_within(d))
                || host_is(v, &|h| Domain::parse(h).is_ok_and(|h| h.is_within(d)))
        }),
        EtrnTarget::Channel(c) => routes
            .iter()
            .any(|(_, v)| matches!(v, RouteValue::Channel { channel, .. } if channel == c)),
    }
}

/// Whether `t` names a destination whose mail is held (a queue-only clause or the
/// `hold` transport): releasing it over the control socket is for root and the
/// daemon's user (DESIGN.md §3, `etrnd flush`), as a network ETRN is subject to
/// `ETRN_ALLOW`. Decided from the configuration alone, so the answer says nothing
/// about what is queued.
pub fn names_held(trie: &RouteTrie, sched: &SchedulerConf, t: &EtrnTarget) -> bool {
    let route_host = |key: &Option<Domain>, host: &Host| match host {
        Host::RecipientDomain => key.as_ref().map(|k| k.to_string()),
        h => Some(h.to_string()),
    };
    if let EtrnTarget::Node(d) = t {
        if let Some((k, r)) = trie.lookup(d) {
            if let (true, RouteValue::Channel { channel, host }) =
                (k != MatchKind::Default, &r.value)
            {
                let h = match host {
                    Host::RecipientDomain => d.to_string(),
                    h => h.to_string(),
                };
                if sched.holds(channel, &h) {
                    return true;
                }
            }
        }
    }
    trie.values().iter().any(|(key, v)| {
        let RouteValue::Channel { channel, host } = v else {
            return false;
        };
        let Some(h) = route_host(key, host) else {
            return false;
        };
        let named = match t {
            EtrnTarget::Node(d) => h == d.as_str(),
            EtrnTarget::Subdomains(d) => {
                key.as_ref().is_some_and(|k| k.is_within(d))
                    || Domain::parse(&h).is_ok_and(|x| x.is_within(d))
            }
            EtrnTarget::Channel(c) => channel == c,
        };
        named && sched.holds(channel, &h)
    })
}

/// Which destinations `t` releases: those it matches, and (DESIGN.md §5.5) every
/// recipient domain whose route is the route the name itself takes (`ETRN
/// client.dom` with `.client.dom smtp-etrn!mail.client.dom` releases
/// mail.client.dom and the subdomains too). Never through the default route,
/// which would release everything.
pub fn picks<'a>(trie: &'a RouteTrie, t: &'a EtrnTarget) -> impl Fn(&ThreadKey, &str) -> bool + 'a {
    let own_route = match t {
        EtrnTarget::Node(d) => trie
            .lookup(d)
            .filter(|(k, r)| *k != MatchKind::Default && r.value != RouteValue::Ignore)
            .map(|(_, r)| r.line),
        _ => None,
    };
    move |k: &ThreadKey, domain: &str| {
        t.matches(&k.channel, &k.host, domain)
            || own_route.is_some_and(|line| {
                Domain::parse(domain)
                    .ok()
                    .and_then(|d| trie.lookup(&d))
                    .is_some_and(|(k, r)| k != MatchKind::Default && r.line == line)
            })
    }
}

#[cfg(test)]
#[path = "etrn_desk_tests.rs"]
mod tests;
