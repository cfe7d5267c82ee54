//! Expiry (module header of `sched`): a recipient with an attempt fails with 5.4.7
//! at `expiry`, any recipient at `expiry + expiry2`; a lower bound of the next
//! expiry saves a scan of the queue on every loop turn.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::{Bounce, MsgInfo, RcptInfo, RcptRef, RcptState, Scheduler, ThreadKey, Unix};
use crate::spool::MessageId;

impl Scheduler {
    /// The Unix time a waiting recipient of `m` expires, with its clause.
    pub(super) fn expiry_of(&self, m: &MsgInfo, r: &RcptInfo) -> Option<Unix> {
        let clause = self.threads.get(&r.key).and_then(|t| t.clause);
        let p = self.params(clause)?;
        let e1 = p.expiry?.as_secs();
        let e2 = p.expiry2.map(|d| d.as_secs()).unwrap_or(86_400);
        let hard = m.arrival + e1 + e2;
        Some(if r.attempts > 0 {
            (m.arrival + e1).min(hard)
        } else {
            hard
        })
    }

    pub(super) fn next_expiry(&self) -> Option<Unix> {
        if let Some(bound) = self.expiry_bound.get() {
            return bound;
        }
        let e = self.scan_expiry();
        self.expiry_bound.set(Some(e));
        e
    }

    fn scan_expiry(&self) -> Option<Unix> {
        self.msgs
            .values()
            .flat_map(|m| {
                m.rcpts
                    .iter()
                    .filter(|r| r.state == RcptState::Waiting)
                    .filter_map(move |r| self.expiry_of(m, r))
            })
            .min()
    }

    /// Expires recipients whose time is up.
    pub fn handle_timeout(&mut self, now: Unix) {
        if self.next_expiry().is_none_or(|e| e > now) {
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
}
