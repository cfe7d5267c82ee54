//! Releases (ETRN, `etrnd flush`, SIGUSR1): held and deferred mail made due now,
//! or as soon as a slot frees.

use std::collections::BTreeSet;

use super::{rcpt_domain, Released, Scheduler, ThreadKey, Unix};
use crate::config::scheduler::Transport;

impl Scheduler {
    /// Releases held and deferred recipients that `pick` selects (ETRN, flush): they
    /// start at once, or as soon as a slot frees. `pick` sees the thread and the
    /// recipient's domain. A repeated release of the same recipients coalesces.
    /// Threads of the `hold` transport are never released: only ATRN
    /// ([`Scheduler::claim`]) or expiry takes their mail.
    pub fn release(&mut self, pick: impl FnMut(&ThreadKey, &str) -> bool) -> Released {
        self.release_at(pick, Unix::MAX)
    }

    /// [`Scheduler::release`] at `now` for a request from outside (ETRN, `etrnd
    /// flush TARGET`): a destination whose attempts failed in the last moments
    /// ([`super::ReleaseGap`]) is left until its gap ends (`not_before`).
    pub fn release_at(
        &mut self,
        mut pick: impl FnMut(&ThreadKey, &str) -> bool,
        now: Unix,
    ) -> Released {
        let mut out = Released::default();
        let mut msgs = BTreeSet::new();
        let mut touched = Vec::new();
        for (k, t) in self.threads.iter_mut() {
            let hold = t
                .clause
                .and_then(|i| self.conf.clauses.get(i))
                .is_some_and(|c| matches!(c.params.command, Some((Transport::Hold, _))));
            if hold {
                continue;
            }
            let gap_ends = t.gap.not_before();
            if now < gap_ends {
                if t.waiting
                    .iter()
                    .any(|r| pick(k, &rcpt_domain(&self.msgs, *r)))
                {
                    out.matched = true;
                    out.not_before = Some(out.not_before.map_or(gap_ends, |x| x.min(gap_ends)));
                }
                continue;
            }
            let mut matched_here = false;
            for r in &t.waiting {
                if !pick(k, &rcpt_domain(&self.msgs, *r)) {
                    continue;
                }
                matched_here = true;
                if t.released.insert(*r) {
                    msgs.insert(r.msg);
                }
            }
            if matched_here {
                out.matched = true;
                out.active |= t.jobs > 0;
                touched.push(k.clone());
            }
        }
        for k in &touched {
            self.place(k);
        }
        self.matched = touched.iter().map(|k| k.to_string()).collect();
        self.wake |= !touched.is_empty();
        // Mail being delivered right now counts as matched (RFC 1985's 252), by the
        // same rule as waiting mail.
        for (key, _, rcpts) in self.jobs.values() {
            if rcpts
                .iter()
                .any(|r| pick(key, &rcpt_domain(&self.msgs, *r)))
            {
                out.matched = true;
                out.active = true;
            }
        }
        // And so does mail going down a connection turned around by ATRN.
        for rcpts in self.claims.values() {
            for r in rcpts {
                let key = self
                    .msgs
                    .get(&r.msg)
                    .and_then(|m| m.rcpts.get(r.idx))
                    .map(|x| x.key.clone());
                if key.is_some_and(|k| pick(&k, &rcpt_domain(&self.msgs, *r))) {
                    out.matched = true;
                    out.active = true;
                }
            }
        }
        out.messages = msgs.len();
        out
    }

    /// The destinations whose release gap has not ended at `now` (few: those whose
    /// attempts just failed), and when it ends.
    pub fn gapped(&self, now: Unix) -> std::collections::HashMap<ThreadKey, Unix> {
        self.threads
            .iter()
            .map(|(k, t)| (k, t.gap.not_before()))
            .filter(|(_, end)| now < *end)
            .map(|(k, end)| ((**k).clone(), end))
            .collect()
    }

    /// Runs every thread that is not held now, back-off or not (SIGUSR1, `etrnd flush`
    /// without a target); with `gap`, not those whose attempts just failed (a
    /// user's flush: see [`super::ReleaseGap`]).
    pub fn release_unheld(&mut self, now: Unix, gap: bool) -> usize {
        let mut n = 0;
        let mut touched = Vec::new();
        for (k, t) in self.threads.iter_mut() {
            let held = t
                .clause
                .and_then(|i| self.conf.clauses.get(i))
                .map(|c| {
                    c.params.queueonly || matches!(c.params.command, Some((Transport::Hold, _)))
                })
                .unwrap_or(true);
            let gapped = gap && now < t.gap.not_before();
            if !held && !t.waiting.is_empty() && !gapped {
                t.wakeup = t.wakeup.min(now);
                n += 1;
                touched.push(k.clone());
            }
        }
        for k in &touched {
            self.place(k);
        }
        n
    }
}

/// How soon a release (ETRN, `etrnd flush`) may try a destination again after its
/// attempts failed: 1 minute after the first failure, doubling to 15 minutes, reset
/// by a delivery. Without it every ETRN (10 a minute from each address) or flush
/// from a local user re-tried every held message of an unreachable destination and
/// added a journal record per message each time.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReleaseGap {
    /// When the last attempt failed, and how many in a row.
    failed_at: Unix,
    streak: u32,
}

impl ReleaseGap {
    /// The first gap; it doubles with each failure in a row.
    pub const FIRST: Unix = 60;
    /// The longest gap.
    pub const MOST: Unix = 900;

    /// An attempt failed at `now` (the recipients of one attempt count once).
    pub fn failed(&mut self, now: Unix) {
        if self.streak > 0 && self.failed_at == now {
            return;
        }
        self.failed_at = now;
        self.streak = self.streak.saturating_add(1);
    }

    /// Mail went through: releases may try at once again.
    pub fn delivered(&mut self) {
        *self = ReleaseGap::default();
    }

    /// The first moment a release may try again.
    pub fn not_before(&self) -> Unix {
        match self.streak {
            0 => 0,
            n => self
                .failed_at
                .saturating_add((Self::FIRST << (n - 1).min(8)).min(Self::MOST)),
        }
    }
}
