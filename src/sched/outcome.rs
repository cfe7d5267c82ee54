//! Outcomes: a job's end (the thread's retry decision, then each recipient settled),
//! recipients delivered while their job still runs, and completion.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use super::{Bounce, JobId, RcptRef, RcptResult, RcptState, Scheduler, ThreadKey, Unix};
use crate::store::spool::{MessageId, StateRecord};

/// How long a thread whose job went untried (a local outage) waits before it is
/// due again; nothing is counted against it.
pub const UNTRIED_WAIT: Unix = 60;

impl Scheduler {
    /// A job ended. Every recipient of the job must have a result (missing ones count
    /// as deferred). Journal records, bounces and completed messages become available
    /// through the `poll_*` methods.
    pub fn job_done(&mut self, id: JobId, results: &[(RcptRef, RcptResult)], now: Unix) {
        let Some((key, clause, rcpts)) = self.jobs.remove(&id) else {
            return;
        };
        // What is waiting again may go back to disk.
        self.park_candidates.extend(rcpts.iter().map(|r| r.msg));
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_channel.get_mut(&key.channel) {
            *n = n.saturating_sub(1);
        }
        let ring = self.ring(Some(clause));
        if let Some(n) = self.per_ring.get_mut(&(ring, key.channel.clone())) {
            *n = n.saturating_sub(1);
        }
        let result_of: HashMap<RcptRef, &RcptResult> =
            results.iter().map(|(r, x)| (*r, x)).collect();
        let delivered_any = results.iter().any(|(_, r)| *r == RcptResult::Delivered);
        // A message deleted meanwhile counts for nothing.
        let deferred_any = rcpts
            .iter()
            .filter(|r| self.msgs.contains_key(&r.msg))
            .any(|r| {
                !matches!(
                    result_of.get(r),
                    Some(RcptResult::Delivered | RcptResult::Failed(..) | RcptResult::Untried(_))
                )
            });
        let untried_any = results
            .iter()
            .any(|(_, r)| matches!(r, RcptResult::Untried(_)));
        let p = self.params(Some(clause)).cloned().unwrap_or_default();
        let t = self.threads.entry(key.clone()).or_default();
        t.jobs = t.jobs.saturating_sub(1);
        if delivered_any {
            t.retry_index = 0;
        }
        if untried_any && !deferred_any {
            // A local outage: wait a little, count nothing.
            t.wakeup = t.wakeup.max(now + UNTRIED_WAIT);
        }
        if deferred_any && t.wakeup <= now {
            let mult = if p.retries.is_empty() {
                1
            } else {
                let i = t.retry_index;
                let m = p.retries[i.min(p.retries.len() - 1)];
                t.retry_index += 1;
                m
            };
            t.wakeup = now + p.interval.as_secs().max(1) * u64::from(mult);
        }
        if t.retry_index >= p.retries.len() && !p.retries.is_empty() {
            let n = p.retries.len();
            let r = self.random(n);
            if let Some(t) = self.threads.get_mut(&key) {
                t.retry_index = r;
            }
        }
        if delivered_any {
            self.note_release(&key, now);
        }
        self.settle(&rcpts, results, now);
        // A slot is free: ready threads may start now.
        self.last_now = self.last_now.max(now);
        self.place(&key);
        self.wake = true;
    }

    /// The results of a job's (or a claim's) recipients: delivered and failed ones
    /// are done (a bounce is queued for the failed), the rest wait again in their own
    /// thread with one more attempt and a journal record. Messages with nothing left
    /// complete.
    pub(super) fn settle(
        &mut self,
        rcpts: &[RcptRef],
        results: &[(RcptRef, RcptResult)],
        now: Unix,
    ) {
        let result_of: HashMap<RcptRef, &RcptResult> =
            results.iter().map(|(r, x)| (*r, x)).collect();
        let mut failures: BTreeMap<MessageId, Vec<(usize, String, String)>> = BTreeMap::new();
        let mut touched: Vec<Rc<ThreadKey>> = Vec::new();
        for r in rcpts {
            let res = result_of
                .get(r)
                .copied()
                .cloned()
                .unwrap_or_else(|| RcptResult::Deferred("no result".into()));
            let shared = match &res {
                RcptResult::Deferred(reason) | RcptResult::Untried(reason) => {
                    Some(self.reason(reason))
                }
                _ => None,
            };
            // Put on hold while it was being delivered: what is left waits there.
            let back = if self.on_hold.contains(&r.msg) {
                RcptState::Held
            } else {
                RcptState::Waiting
            };
            let Some(m) = self.msgs.get_mut(&r.msg) else {
                continue;
            };
            let Some(ri) = m.rcpts.get_mut(r.idx) else {
                continue;
            };
            match res {
                RcptResult::Delivered => {
                    ri.state = RcptState::Done;
                    self.errors.remove(r);
                    if let Some(t) = self.threads.get_mut(&ri.key) {
                        t.gap.delivered();
                    }
                }
                RcptResult::Failed(status, reason) => {
                    ri.state = RcptState::Done;
                    self.errors.remove(r);
                    failures
                        .entry(r.msg)
                        .or_default()
                        .push((r.idx, status, reason));
                }
                RcptResult::Deferred(reason) if ri.state == RcptState::Active => {
                    ri.state = back;
                    ri.attempts += 1;
                    let key = ri.key.clone();
                    if let Some(e) = shared {
                        self.errors.insert(*r, e);
                    }
                    let size = m.size;
                    let t = self.threads.entry(key.clone()).or_default();
                    if back == RcptState::Waiting {
                        t.wait(*r, size);
                    }
                    t.gap.failed(now);
                    self.records.push_back((
                        r.msg,
                        StateRecord::Deferred {
                            idx: r.idx,
                            at: now,
                            next: t.wakeup.max(now),
                            reason,
                        },
                    ));
                    if !touched.contains(&key) {
                        touched.push(key);
                    }
                    if let Some(m) = self.msgs.get(&r.msg) {
                        self.lower_expiry(self.expiry_of(m, &m.rcpts[r.idx]));
                        self.lower_expiry(self.report_of(m, &m.rcpts[r.idx]));
                    }
                }
                RcptResult::Untried(_) if ri.state == RcptState::Active => {
                    ri.state = back;
                    let key = ri.key.clone();
                    if let Some(e) = shared {
                        self.errors.insert(*r, e);
                    }
                    let size = m.size;
                    if back == RcptState::Waiting {
                        self.threads.entry(key.clone()).or_default().wait(*r, size);
                    }
                    if !touched.contains(&key) {
                        touched.push(key);
                    }
                    if let Some(m) = self.msgs.get(&r.msg) {
                        self.lower_expiry(self.expiry_of(m, &m.rcpts[r.idx]));
                        self.lower_expiry(self.report_of(m, &m.rcpts[r.idx]));
                    }
                }
                // Already done (delivered and recorded while the job ran).
                RcptResult::Deferred(_) | RcptResult::Untried(_) => {}
            }
        }
        for (msg, f) in failures {
            self.bounces.push_back(Bounce { msg, failures: f });
        }
        for k in &touched {
            self.place(k);
        }
        let mut seen = BTreeSet::new();
        for r in rcpts {
            if seen.insert(r.msg) {
                self.check_complete(r.msg);
            }
        }
    }

    pub(super) fn check_complete(&mut self, id: MessageId) {
        let done = self
            .msgs
            .get(&id)
            .is_some_and(|m| m.rcpts.iter().all(|r| r.state == RcptState::Done));
        if done {
            self.msgs.remove(&id);
            self.complete.push_back(id);
        }
    }

    /// Recipients of running jobs were delivered (the remote or the mailbox took
    /// them): each is done at once, before its job ends, so a crash cannot send it
    /// again. A message all of whose recipients are now done completes (its queue
    /// file goes; no journal record is needed); otherwise a `Delivered` record per
    /// recipient is queued for the journal. The job's later result for them is a
    /// no-op.
    pub fn delivered(&mut self, rcpts: &[RcptRef], now: Unix) {
        let mut msgs: Vec<MessageId> = Vec::new();
        for r in rcpts {
            let Some(ri) = self
                .msgs
                .get_mut(&r.msg)
                .and_then(|m| m.rcpts.get_mut(r.idx))
            else {
                continue;
            };
            if ri.state == RcptState::Done {
                continue;
            }
            ri.state = RcptState::Done;
            self.errors.remove(r);
            if !msgs.contains(&r.msg) {
                msgs.push(r.msg);
            }
        }
        for id in msgs {
            let all_done = self
                .msgs
                .get(&id)
                .is_some_and(|m| m.rcpts.iter().all(|x| x.state == RcptState::Done));
            if all_done {
                self.check_complete(id);
                continue;
            }
            for r in rcpts.iter().filter(|r| r.msg == id) {
                self.records.push_back((
                    id,
                    StateRecord::Delivered {
                        idx: r.idx,
                        at: now,
                    },
                ));
            }
        }
    }
}
