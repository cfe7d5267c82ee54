//! What the scheduler hands out: its outputs (journal records, bounces, delay
//! notices, completed messages) and the figures and facts listings ask for.

use std::rc::Rc;

use super::{Bounce, Delay, RcptRef, RcptState, Scheduler, ThreadKey, Unix};
use crate::store::spool::{MessageId, StateRecord};

impl Scheduler {
    /// The next journal record to append.
    pub fn poll_record(&mut self) -> Option<(MessageId, StateRecord)> {
        self.records.pop_front()
    }

    /// The next bounce to send.
    pub fn poll_bounce(&mut self) -> Option<Bounce> {
        self.bounces.pop_front()
    }

    /// The next delay notice to send.
    pub fn poll_delay(&mut self) -> Option<Delay> {
        self.delays.pop_front()
    }

    /// The next message whose every recipient is done.
    pub fn poll_complete(&mut self) -> Option<MessageId> {
        self.complete.pop_front()
    }

    /// Sets `HOLD_QUOTA` (0: none); every thread is checked against it again.
    pub fn set_hold_quota(&mut self, quota: u64) {
        self.hold_quota = quota;
        let keys: Vec<Rc<ThreadKey>> = self.threads.keys().cloned().collect();
        for k in keys {
            self.place(&k);
        }
    }

    /// Held destinations (`channel!host`) at or past `HOLD_QUOTA`.
    pub fn over_quota(&self) -> &std::collections::HashSet<String> {
        &self.full
    }

    /// Octets waiting for a destination (`HOLD_QUOTA` counts these).
    pub fn octets(&self, key: &ThreadKey) -> u64 {
        self.threads
            .get(key)
            .map_or(0, |t| t.octets + t.parked.octets)
    }

    /// Number of jobs running.
    pub fn running(&self) -> u32 {
        self.total
    }

    /// Messages known.
    pub fn messages(&self) -> usize {
        self.msgs.len()
    }

    /// A recipient's address and its message's arrival time (for log lines).
    pub fn rcpt_info(&self, r: RcptRef) -> Option<(&str, Unix)> {
        let m = self.msgs.get(&r.msg)?;
        m.rcpts.get(r.idx).map(|x| (&*x.address, m.arrival))
    }

    /// A recipient's destination (`channel!host`).
    pub fn rcpt_dest(&self, r: RcptRef) -> Option<String> {
        let m = self.msgs.get(&r.msg)?;
        m.rcpts.get(r.idx).map(|x| x.key.to_string())
    }

    /// The destinations the last [`Scheduler::release`] matched.
    pub fn take_matched(&mut self) -> Vec<String> {
        std::mem::take(&mut self.matched)
    }

    /// The state of a recipient (tests and listings).
    pub fn rcpt_state(&self, r: RcptRef) -> Option<RcptState> {
        self.msgs.get(&r.msg)?.rcpts.get(r.idx).map(|x| x.state)
    }

    /// Whether a message is queued (the operator may have deleted it).
    pub fn has_message(&self, id: MessageId) -> bool {
        self.msgs.contains_key(&id)
    }

    /// The messages with a recipient being delivered now (jobs and ATRN claims).
    pub fn active_messages(&self) -> Vec<MessageId> {
        let mut v: Vec<MessageId> = self
            .jobs
            .values()
            .flat_map(|(_, _, r)| r.iter())
            .chain(self.claims.values().flatten())
            .map(|r| r.msg)
            .filter(|m| self.msgs.contains_key(m))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}
