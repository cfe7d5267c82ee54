//! Answers ETRN requests (DESIGN.md §5.5): policy (eligibility, a per-client rate
//! limit), the release in the scheduler, and the RFC 1985 reply. The flush starts in
//! the same loop turn; a release that finds the limits full stays pending in the
//! scheduler until a slot frees. Delivery goes to the routed host, never to the
//! client that asked.

use std::time::{Duration, Instant};

use super::conn::ConnId;
use super::Daemon;
use crate::config::main_conf::EtrnReplies;
use crate::config::routes::RouteValue;
use crate::route::MatchKind;
use crate::smtp::etrn_target::EtrnTarget;
use crate::smtp::reply::Reply;

/// ETRN requests one client address outside `MYNETWORKS` may make per
/// [`ETRN_WINDOW`] (Exim's example ratelimit is 3/min; clients with a few domains
/// send a few at once).
pub const ETRN_PER_WINDOW: usize = 10;
/// The rate limit's window.
pub const ETRN_WINDOW: Duration = Duration::from_secs(60);

impl Daemon {
    /// Whether the target names something this host holds mail for: a routed
    /// (non-default) domain, the host of a route, or a channel of a route.
    fn etrn_eligible(&self, t: &EtrnTarget) -> bool {
        let trie = &self.core.config.router.trie;
        let routes = trie.values();
        match t {
            EtrnTarget::Node(d) => {
                trie.lookup(d).is_some_and(|(k, r)| k != MatchKind::Default && r.value != RouteValue::Ignore)
                    || routes.iter().any(|(_, v)| matches!(v, RouteValue::Channel { host, .. } if host.to_string() == d.as_str()))
            }
            EtrnTarget::Subdomains(d) => routes.iter().any(|(key, v)| {
                key.as_ref().is_some_and(|k| k.is_within(d))
                    || matches!(v, RouteValue::Channel { host, .. }
                        if crate::vocab::Domain::parse(&host.to_string()).is_ok_and(|h| h.is_within(d)))
            }),
            EtrnTarget::Channel(c) => {
                routes.iter().any(|(_, v)| matches!(v, RouteValue::Channel { channel, .. } if channel == c))
            }
        }
    }

    /// Whether the target names a destination whose mail is held (a queue-only
    /// clause or the `hold` transport): releasing it is for root and the daemon's
    /// user when asked over the control socket (DESIGN.md §3, `etrnd flush`), as a
    /// network ETRN is subject to `ETRN_ALLOW`. Decided from the configuration
    /// alone, so the answer says nothing about what is queued.
    pub(super) fn names_held(&self, t: &EtrnTarget) -> bool {
        let held = |channel: &str, host: &str| self.core.config.sched.holds(channel, host);
        let trie = &self.core.config.router.trie;
        let route_host = |key: &Option<crate::vocab::Domain>,
                          host: &crate::config::routes::Host| match host {
            crate::config::routes::Host::RecipientDomain => key.as_ref().map(|k| k.to_string()),
            h => Some(h.to_string()),
        };
        if let EtrnTarget::Node(d) = t {
            if let Some((k, r)) = trie.lookup(d) {
                if let (true, RouteValue::Channel { channel, host }) =
                    (k != MatchKind::Default, &r.value)
                {
                    let h = match host {
                        crate::config::routes::Host::RecipientDomain => d.to_string(),
                        h => h.to_string(),
                    };
                    if held(channel, &h) {
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
                        || crate::vocab::Domain::parse(&h).is_ok_and(|x| x.is_within(d))
                }
                EtrnTarget::Channel(c) => channel == c,
            };
            named && held(channel, &h)
        })
    }

    fn etrn_reply(&mut self, id: ConnId, t: &EtrnTarget, now: Instant) -> Reply {
        let Some(c) = self.io.conns.get_mut(id).and_then(|l| l.role.server()) else {
            return Reply::ETRN_TOO_MANY;
        };
        let ip = c.ip;
        // Our own networks (etrnd flush, the ppp hook) are not rate limited.
        let trusted = self
            .core
            .config
            .main
            .mynetworks
            .iter()
            .any(|n| n.contains(ip));
        if !trusted {
            let times = self.core.etrn_times.entry(ip).or_default();
            while times
                .front()
                .is_some_and(|&t0| now.duration_since(t0) >= ETRN_WINDOW)
            {
                times.pop_front();
            }
            if times.len() >= ETRN_PER_WINDOW {
                return Reply::ETRN_TOO_MANY;
            }
            times.push_back(now);
        }
        self.etrn_release(t, ("etrn", &ip.to_string()))
    }

    /// Releases what `t` names and gives the RFC 1985 reply (ETRN after its policy
    /// checks, and `etrnd flush TARGET` over the control socket).
    pub(super) fn etrn_release(&mut self, t: &EtrnTarget, who: (&str, &str)) -> Reply {
        let r = self.etrn_release_reply(t);
        for key in self.core.sched.take_matched() {
            self.core
                .notes
                .request(&key, self.clock.unix, who.0, who.1, r.code);
        }
        r
    }

    fn etrn_release_reply(&mut self, t: &EtrnTarget) -> Reply {
        if self.core.stopping {
            return Reply::new(458, format!("4.3.2 {t}: unable to queue messages now"));
        }
        // DESIGN.md §5.5: a name also releases every recipient whose route is the
        // route the name itself takes (`ETRN client.dom` with `.client.dom
        // smtp-etrn!mail.client.dom` releases mail.client.dom and the subdomains too).
        // Never through the default route, which would release everything.
        let trie = &self.core.config.router.trie;
        let own_route = match t {
            EtrnTarget::Node(d) => trie
                .lookup(d)
                .filter(|(k, r)| *k != MatchKind::Default && r.value != RouteValue::Ignore)
                .map(|(_, r)| r.line),
            _ => None,
        };
        let same_route = |domain: &str| {
            own_route.is_some_and(|line| {
                crate::vocab::Domain::parse(domain)
                    .ok()
                    .and_then(|d| trie.lookup(&d))
                    .is_some_and(|(k, r)| k != MatchKind::Default && r.line == line)
            })
        };
        let pick = |k: &crate::sched::ThreadKey, domain: &str| {
            t.matches(&k.channel, &k.host, domain) || same_route(domain)
        };
        // Held mail on disk is loaded first (at most a chunk per destination; the
        // rest follows as it leaves), then released like mail in memory.
        // What stays on disk for now is released too (it follows chunk by chunk)
        // and counts in the reply.
        let (loaded, later) = super::park::page_in_release(
            &mut self.core.spool,
            &mut self.core.sched,
            self.clock.unix,
            pick,
        );
        self.core.releasing.extend(loaded);
        let mut released = self.core.sched.release(pick);
        released.messages += later;
        if self.core.config.main.etrn_replies == EtrnReplies::Minimal {
            // Minimal: every well-formed name gets 250, held here or not, so a
            // client learns nothing about which domains we hold.
            return Reply::ETRN_MINIMAL;
        }
        if !released.matched && !self.etrn_eligible(t) {
            return Reply::etrn_refused(&t.to_string(), "not a domain held here");
        }
        let node = t.to_string();
        if released.messages > 0 {
            Reply::etrn_started(released.messages, &node)
        } else if released.matched {
            Reply::etrn_already(&node)
        } else {
            Reply::etrn_nothing(&node)
        }
    }

    /// Answers this turn's ETRNs, and the ETRNs pipelined behind them that the
    /// answers unblock, and starts what they released at once. A session has at most
    /// one ETRN waiting at a time and its pipelined input is bounded, so this ends.
    pub(super) fn answer_etrns(&mut self, now: Instant) {
        if self.core.etrns.is_empty() {
            return;
        }
        let mut answered = Vec::new();
        self.core.hold_output = true;
        while !self.core.etrns.is_empty() {
            answered.extend(self.core.etrns.iter().map(|(slot, _)| *slot));
            self.answer_etrn_round(now);
        }
        self.core.hold_output = false;
        answered.sort_unstable();
        answered.dedup();
        for slot in answered {
            self.service(slot, now);
        }
        self.start_jobs(now);
        // Idle rate-limit entries are dropped so the table stays small.
        self.core.etrn_times.retain(|_, v| {
            v.back()
                .is_some_and(|&t| now.duration_since(t) < ETRN_WINDOW)
        });
    }

    /// Answers the ETRNs waiting now; serving their sessions may queue more.
    fn answer_etrn_round(&mut self, now: Instant) {
        let requests = std::mem::take(&mut self.core.etrns);
        for (id, t) in requests {
            let reply = self.etrn_reply(id, &t, now);
            let Some(c) = self.io.conns.get_mut(id).and_then(|l| l.role.server()) else {
                continue;
            };
            log::info!(
                "{:08x} etrn request address={} target={} reply=\"{}\"",
                c.session.id(),
                c.ip,
                t,
                reply
            );
            let ctx = session_ctx!(self);
            c.session.handle_etrn(&reply, now, &ctx);
            self.service(id, now);
        }
    }
}
