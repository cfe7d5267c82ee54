//! Claims (ATRN, RFC 2645): the held mail an ODMR customer asked for, taken out of
//! its threads at once for a connection that already exists (the customer's, turned
//! around). A claim is not a job of any thread: it bypasses the thread limits (it
//! opens no connection), and its end leaves the threads' retry state alone — what
//! was not delivered waits again, held, with its lifetime unchanged.

use super::{rcpt_domain, JobId, RcptRef, RcptResult, RcptState, Scheduler, ThreadKey, Unix};

impl Scheduler {
    /// Takes every waiting recipient of a held thread (queue-only or the hold
    /// transport) that `pick` selects (it sees the thread and the recipient's
    /// domain): they are active until [`Scheduler::claim_done`]. `None` when nothing
    /// matched.
    pub fn claim(
        &mut self,
        mut pick: impl FnMut(&ThreadKey, &str) -> bool,
    ) -> Option<(JobId, Vec<RcptRef>)> {
        let held: Vec<_> = self
            .threads
            .iter()
            .filter(|(_, t)| !t.waiting.is_empty() && self.held(t.clause) == Some(true))
            .map(|(k, _)| k.clone())
            .collect();
        let mut rcpts: Vec<RcptRef> = Vec::new();
        let mut touched = Vec::new();
        for key in held {
            let Some(t) = self.threads.get_mut(&key) else {
                continue;
            };
            let taken: Vec<RcptRef> = t
                .waiting
                .iter()
                .filter(|r| pick(&key, &rcpt_domain(&self.msgs, **r)))
                .copied()
                .collect();
            if taken.is_empty() {
                continue;
            }
            for r in &taken {
                t.unwait(r, self.msgs.get(&r.msg).map_or(0, |m| m.size));
                t.released.remove(r);
            }
            rcpts.extend(taken);
            touched.push(key);
        }
        for k in &touched {
            self.place(k);
        }
        if rcpts.is_empty() {
            return None;
        }
        // Oldest message first, a message's recipients together.
        rcpts.sort_unstable();
        for r in &rcpts {
            if let Some(ri) = self
                .msgs
                .get_mut(&r.msg)
                .and_then(|m| m.rcpts.get_mut(r.idx))
            {
                ri.state = RcptState::Active;
            }
        }
        self.next_job += 1;
        let id = JobId(self.next_job);
        self.claims.insert(id, rcpts.clone());
        Some((id, rcpts))
    }

    /// A claim ended: every recipient's result, as for [`Scheduler::job_done`] (a
    /// missing one counts as deferred), without touching any thread's retry state.
    pub fn claim_done(&mut self, id: JobId, results: &[(RcptRef, RcptResult)], now: Unix) {
        let Some(rcpts) = self.claims.remove(&id) else {
            return;
        };
        self.park_candidates.extend(rcpts.iter().map(|r| r.msg));
        let mut keys: Vec<std::rc::Rc<ThreadKey>> = Vec::new();
        for (r, res) in results {
            let key = self
                .msgs
                .get(&r.msg)
                .and_then(|m| m.rcpts.get(r.idx))
                .map(|x| x.key.clone());
            if let (RcptResult::Delivered, Some(k)) = (res, key) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        for k in &keys {
            self.note_release(k, now);
        }
        self.settle(&rcpts, results, now);
        self.wake = true;
    }

    /// Messages a claim holds.
    #[cfg(test)]
    pub(crate) fn claimed(&self, id: JobId) -> Option<usize> {
        self.claims.get(&id).map(|r| {
            let mut m: Vec<_> = r.iter().map(|x| x.msg).collect();
            m.dedup();
            m.len()
        })
    }
}
