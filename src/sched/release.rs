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
    pub fn release(&mut self, mut pick: impl FnMut(&ThreadKey, &str) -> bool) -> Released {
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

    /// Runs every thread that is not held now, back-off or not (SIGUSR1, `etrnd flush`
    /// without a target).
    pub fn release_unheld(&mut self, now: Unix) -> usize {
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
            if !held && !t.waiting.is_empty() {
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
