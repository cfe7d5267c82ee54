//! The ODMR provider's desk (RFC 2645, DESIGN.md §5.10): whether an identity's ATRN
//! is taken now (not while stopping, not while its turned-around session runs, at
//! most [`ATRN_PER_WINDOW`] a minute), and, once the auth helper said what the
//! identity may release, whether the request is served or refused. Pure: the daemon
//! asks the helper, claims the mail and turns the connection around.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::auth::secrets::entitled;
use crate::auth::Verdict;
use crate::sched::JobId;
use crate::smtp::reply::Reply;

/// ATRN requests one identity may make per [`ATRN_WINDOW`] (RFC 2645 §5.2.1 lets
/// the provider refuse "too many requests" with 450; a customer calls in once per
/// dial-up, and fetchmail retries once per poll).
pub const ATRN_PER_WINDOW: usize = 5;
/// The rate limit's window.
pub const ATRN_WINDOW: Duration = Duration::from_secs(60);
/// Past this many identities remembered, idle ones are forgotten.
const TIDY_PAST: usize = 1024;

/// The desk's memory: recent requests per identity, and the identities whose
/// claim runs.
#[derive(Debug, Default)]
pub struct AtrnDesk {
    times: HashMap<String, VecDeque<Instant>>,
    active: HashMap<String, JobId>,
}

/// What to do with a request the auth helper has answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Claim the held mail of these domains (the identity's own when the request
    /// named none) and answer `250`, or `453` if there is none.
    Claim(Vec<String>),
    /// Answer this.
    Refuse(Reply),
}

impl AtrnDesk {
    /// An ATRN from `user`, before the helper is asked: `Err` with the refusal.
    /// An accepted request counts against the identity's rate.
    pub fn request(&mut self, user: &str, stopping: bool, now: Instant) -> Result<(), Reply> {
        if stopping {
            return Err(Reply::ATRN_CANNOT_CHECK);
        }
        if self.busy(user) {
            return Err(Reply::ATRN_BUSY);
        }
        let times = self.times.entry(user.to_string()).or_default();
        while times
            .front()
            .is_some_and(|&t| now.duration_since(t) >= ATRN_WINDOW)
        {
            times.pop_front();
        }
        if times.len() >= ATRN_PER_WINDOW {
            return Err(Reply::ATRN_TOO_OFTEN);
        }
        times.push_back(now);
        if self.times.len() > TIDY_PAST {
            self.times.retain(|_, v| {
                v.back()
                    .is_some_and(|&t| now.duration_since(t) < ATRN_WINDOW)
            });
        }
        Ok(())
    }

    /// The helper's answer for `user` asking for `domains` (none: all of its
    /// own): `None` when the helper could not check.
    pub fn decide(&self, user: &str, domains: &[String], verdict: Option<&Verdict>) -> Decision {
        let ent = match verdict {
            None => return Decision::Refuse(Reply::ATRN_CANNOT_CHECK),
            Some(Verdict::No | Verdict::Unknown) => {
                return Decision::Refuse(Reply::ATRN_NOT_ENTITLED)
            }
            Some(Verdict::Ok(ent)) => ent,
        };
        if domains.iter().any(|d| !entitled(ent, d)) || (domains.is_empty() && ent.is_empty()) {
            return Decision::Refuse(Reply::ATRN_NOT_ENTITLED);
        }
        if self.busy(user) {
            return Decision::Refuse(Reply::ATRN_BUSY);
        }
        Decision::Claim(ent.clone())
    }

    /// Whether `user` has a claim running (turning or turned).
    pub fn busy(&self, user: &str) -> bool {
        self.active.contains_key(user)
    }

    /// `user`'s claim `jid` was made.
    pub fn claimed(&mut self, user: &str, jid: JobId) {
        self.active.insert(user.to_string(), jid);
    }

    /// Claim `jid` of `user` ended (a newer claim of the same identity stays).
    pub fn ended(&mut self, user: &str, jid: JobId) {
        if self.active.get(user) == Some(&jid) {
            self.active.remove(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(d: &[&str]) -> Verdict {
        Verdict::Ok(d.iter().map(|s| s.to_string()).collect())
    }

    fn v(d: &[&str]) -> Vec<String> {
        d.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn five_requests_a_minute_per_identity() {
        let mut d = AtrnDesk::default();
        let t0 = Instant::now();
        for _ in 0..ATRN_PER_WINDOW {
            assert_eq!(d.request("cust", false, t0), Ok(()));
        }
        assert_eq!(d.request("cust", false, t0), Err(Reply::ATRN_TOO_OFTEN));
        assert_eq!(d.request("other", false, t0), Ok(()));
        assert_eq!(d.request("cust", false, t0 + ATRN_WINDOW), Ok(()));
    }

    #[test]
    fn nothing_is_taken_while_stopping_or_while_the_identity_is_served() {
        let mut d = AtrnDesk::default();
        let now = Instant::now();
        assert_eq!(d.request("cust", true, now), Err(Reply::ATRN_CANNOT_CHECK));
        d.claimed("cust", JobId(7));
        assert_eq!(d.request("cust", false, now), Err(Reply::ATRN_BUSY));
        assert_eq!(
            d.decide("cust", &[], Some(&ok(&["client.dom"]))),
            Decision::Refuse(Reply::ATRN_BUSY)
        );
        // An older claim's end leaves the newer one.
        d.ended("cust", JobId(3));
        assert!(d.busy("cust"));
        d.ended("cust", JobId(7));
        assert!(!d.busy("cust"));
        assert_eq!(d.request("cust", false, now), Ok(()));
    }

    #[test]
    fn the_helpers_verdict_decides() {
        let d = AtrnDesk::default();
        let all = ok(&["client.dom", "other.dom"]);
        assert_eq!(
            d.decide("cust", &[], None),
            Decision::Refuse(Reply::ATRN_CANNOT_CHECK)
        );
        for no in [Verdict::No, Verdict::Unknown] {
            assert_eq!(
                d.decide("cust", &[], Some(&no)),
                Decision::Refuse(Reply::ATRN_NOT_ENTITLED)
            );
        }
        assert_eq!(
            d.decide("cust", &[], Some(&all)),
            Decision::Claim(v(&["client.dom", "other.dom"]))
        );
        assert_eq!(
            d.decide("cust", &v(&["client.dom"]), Some(&all)),
            Decision::Claim(v(&["client.dom", "other.dom"]))
        );
        // One domain it is not entitled to: nothing at all.
        assert_eq!(
            d.decide("cust", &v(&["client.dom", "victim.dom"]), Some(&all)),
            Decision::Refuse(Reply::ATRN_NOT_ENTITLED)
        );
        // An identity entitled to nothing asks for all it has: refused.
        assert_eq!(
            d.decide("cust", &[], Some(&ok(&[]))),
            Decision::Refuse(Reply::ATRN_NOT_ENTITLED)
        );
    }

    #[test]
    fn idle_identities_are_forgotten_past_a_thousand() {
        let mut d = AtrnDesk::default();
        let t0 = Instant::now();
        for i in 0..=TIDY_PAST {
            assert_eq!(d.request(&format!("u{i}"), false, t0), Ok(()));
        }
        assert_eq!(d.request("late", false, t0 + ATRN_WINDOW), Ok(()));
        assert_eq!(d.times.len(), 1);
    }
}
