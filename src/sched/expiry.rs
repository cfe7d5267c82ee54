//! Expiry (module header of `sched`): a recipient with an attempt fails with 5.4.7
//! at `expiry`, any recipient at `expiry + expiry2`; a lower bound of the next
//! expiry saves a scan of the queue on every loop turn.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::{Bounce, Delay, MsgInfo, RcptInfo, RcptRef, RcptState, Scheduler, ThreadKey, Unix};
use crate::store::spool::{MessageId, StateRecord};

impl Scheduler {
    /// The Unix time a waiting recipient of `m` expires, with its clause.
    ///
    /// Held mail (a queue-only or hold thread) counts from the later of its arrival
    /// and the destination's last successful release, so a client that calls in
    /// regularly does not lose what one call could not take to a fixed clock; it
    /// never outlives twice the clause's whole lifetime (`expiry + expiry2`).
    pub(super) fn expiry_of(&self, m: &MsgInfo, r: &RcptInfo) -> Option<Unix> {
        self.expiry_at(&r.key, m.arrival, r.attempts > 0)
    }

    /// [`Scheduler::expiry_of`] for a recipient of thread `key` that arrived at
    /// `arrival` and was `tried` or not (a parked message's index line).
    pub(super) fn expiry_at(&self, key: &ThreadKey, arrival: Unix, tried: bool) -> Option<Unix> {
        let t = self.threads.get(key);
        let clause = t.and_then(|t| t.clause);
        let p = self.params(clause)?;
        let e1 = p.expiry?.as_secs();
        let e2 = p.expiry2.map(|d| d.as_secs()).unwrap_or(86_400);
        let held = self.held(clause) == Some(true);
        let base = match t {
            Some(t) if held => arrival.max(t.last_release),
            _ => arrival,
        };
        let hard = base + e1 + e2;
        let e = if tried { (base + e1).min(hard) } else { hard };
        Some(if held {
            e.min(arrival + 2 * (e1 + e2))
        } else {
            e
        })
    }

    /// When the next delay notice of a waiting recipient of `m` is due.
    pub(super) fn report_of(&self, m: &MsgInfo, r: &RcptInfo) -> Option<Unix> {
        self.report_at(&r.key, m.arrival, r.reported)
    }

    /// [`Scheduler::report_of`] from an arrival and the levels already reported.
    pub(super) fn report_at(&self, key: &ThreadKey, arrival: Unix, reported: u8) -> Option<Unix> {
        let clause = self.threads.get(key).and_then(|t| t.clause);
        let p = self.params(clause)?;
        let t = p.reporttimes.get(usize::from(reported))?;
        Some(arrival.saturating_add(t.as_secs()))
    }

    /// How many report times of `m`'s clause have passed at `now`.
    fn report_level(&self, m: &MsgInfo, r: &RcptInfo, now: Unix) -> u8 {
        let clause = self.threads.get(&r.key).and_then(|t| t.clause);
        self.params(clause).map_or(0, |p| {
            p.reporttimes
                .iter()
                .filter(|t| m.arrival.saturating_add(t.as_secs()) <= now)
                .count() as u8
        })
    }

    /// The next expiry or delay notice of mail in memory, or of parked mail.
    pub(super) fn next_expiry(&self) -> Option<Unix> {
        let parked = self.park_due.first().map(|(at, _)| *at);
        match (self.mem_expiry(), parked) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next expiry or delay notice of mail in memory (a lower bound).
    fn mem_expiry(&self) -> Option<Unix> {
        match self.expiry_bound.get() {
            Some(bound) => bound,
            None => {
                let e = self.scan_expiry();
                self.expiry_bound.set(Some(e));
                e
            }
        }
    }

    fn scan_expiry(&self) -> Option<Unix> {
        self.msgs
            .values()
            .flat_map(|m| {
                m.rcpts
                    .iter()
                    .filter(|r| r.state == RcptState::Waiting)
                    .flat_map(move |r| [self.expiry_of(m, r), self.report_of(m, r)])
                    .flatten()
            })
            .min()
    }

    /// Expires recipients whose time is up.
    /// Parked mail whose time came is loaded first by the loop
    /// ([`Scheduler::parked_due`]).
    pub fn handle_timeout(&mut self, now: Unix) {
        if self.mem_expiry().is_none_or(|e| e > now) {
            return;
        }
        // The bound is due (or stale): find what expired, then compute it again.
        self.expiry_bound.set(None);
        let mut expired: Vec<(RcptRef, Rc<ThreadKey>)> = Vec::new();
        for (id, m) in &self.msgs {
            for (idx, r) in m.rcpts.iter().enumerate() {
                if r.state == RcptState::Waiting && self.expiry_of(m, r).is_some_and(|e| e <= now) {
                    expired.push((RcptRef { msg: *id, idx }, r.key.clone()));
                }
            }
        }
        self.reports_due(now);
        let mut failures: BTreeMap<MessageId, Vec<(usize, String, String)>> = BTreeMap::new();
        for (r, key) in expired {
            if let Some(t) = self.threads.get_mut(&key) {
                t.unwait(&r, self.msgs.get(&r.msg).map_or(0, |m| m.size));
                t.released.remove(&r);
            }
            self.place(&key);
            if let Some(ri) = self
                .msgs
                .get_mut(&r.msg)
                .and_then(|m| m.rcpts.get_mut(r.idx))
            {
                ri.state = RcptState::Done;
                let why = match self.errors.remove(&r) {
                    Some(e) => format!("delivery time expired; last error: {e}"),
                    None => "delivery time expired; never released or tried".into(),
                };
                failures
                    .entry(r.msg)
                    .or_default()
                    .push((r.idx, "5.4.7".into(), why));
            }
        }
        for (msg, f) in failures {
            self.bounces.push_back(Bounce { msg, failures: f });
            self.check_complete(msg);
        }
    }

    /// Delay notices whose time came (recipients that expire now get a bounce
    /// instead): one per message, a journal record per recipient so none repeats.
    fn reports_due(&mut self, now: Unix) {
        let mut due: Vec<(RcptRef, u8)> = Vec::new();
        for (id, m) in &self.msgs {
            for (idx, r) in m.rcpts.iter().enumerate() {
                let expires = self.expiry_of(m, r).is_some_and(|e| e <= now);
                if r.state == RcptState::Waiting
                    && !expires
                    && self.report_of(m, r).is_some_and(|t| t <= now)
                {
                    due.push((RcptRef { msg: *id, idx }, self.report_level(m, r, now)));
                }
            }
        }
        let mut delays: BTreeMap<MessageId, Vec<super::Delayed>> = BTreeMap::new();
        for (r, level) in due {
            let Some(m) = self.msgs.get_mut(&r.msg) else {
                continue;
            };
            let Some(ri) = m.rcpts.get_mut(r.idx) else {
                continue;
            };
            ri.reported = level;
            self.records.push_back((
                r.msg,
                StateRecord::Reported {
                    idx: r.idx,
                    at: now,
                    level,
                },
            ));
            let until = self
                .msgs
                .get(&r.msg)
                .and_then(|m| self.expiry_of(m, &m.rcpts[r.idx]));
            let error = self.errors.get(&r).map(|e| e.to_string());
            delays.entry(r.msg).or_default().push((r.idx, error, until));
        }
        for (msg, rcpts) in delays {
            self.delays.push_back(Delay { msg, rcpts });
        }
    }
}
