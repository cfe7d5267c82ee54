//! The operator's queue control (`etrnd queue`, DESIGN.md §3): delete, hold, release
//! and requeue whole messages, as Postfix's `postsuper -d/-h/-H/-r` do.
//!
//! * A message on hold is out of every thread: nothing of it is tried, released by
//!   ETRN or ATRN, expired or reported, whatever its route, until it is released.
//!   Its recipients in a running job finish that job; what is not delivered then
//!   waits on hold. Hold and release are journal records (`H`, `U`), so a restart
//!   keeps them.
//! * Delete drops the message with no bounce; a running job's results for it are
//!   ignored and its queue file goes through the usual completion path.
//! * Requeue makes the message's threads due now, back-off or not (a `Q` record: a
//!   restart does not bring the old retry times back). Queue-only mail stays held:
//!   only a release by ETRN or flush starts it.

use super::{RcptRef, RcptState, Scheduler, Unix};
use crate::store::spool::{MessageId, StateRecord};

/// What an operator does to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOp {
    /// Remove it, with no bounce.
    Delete,
    /// Keep it from every delivery until released.
    Hold,
    /// Undo a hold.
    Release,
    /// Try it now, back-off or not.
    Requeue,
}

impl QueueOp {
    /// The command word.
    pub fn parse(word: &str) -> Option<QueueOp> {
        Some(match word {
            "delete" => QueueOp::Delete,
            "hold" => QueueOp::Hold,
            "release" => QueueOp::Release,
            "requeue" => QueueOp::Requeue,
            _ => return None,
        })
    }

    /// The command word.
    pub fn word(self) -> &'static str {
        match self {
            QueueOp::Delete => "delete",
            QueueOp::Hold => "hold",
            QueueOp::Release => "release",
            QueueOp::Requeue => "requeue",
        }
    }

    /// The past participle, for replies and log lines.
    pub fn done(self) -> &'static str {
        match self {
            QueueOp::Delete => "deleted",
            QueueOp::Hold => "held",
            QueueOp::Release => "released",
            QueueOp::Requeue => "requeued",
        }
    }
}

/// Which messages a queue command acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These ids.
    Ids(Vec<MessageId>),
    /// Every message with a recipient in this domain still to deliver.
    Domain(String),
    /// Every message.
    All,
}

impl Selection {
    /// Parses the words after the operation: `ALL`, `-d DOMAIN`, or ids (at least
    /// one, at most `max`).
    pub fn parse<'a>(
        mut words: impl Iterator<Item = &'a str>,
        max: usize,
    ) -> Result<Selection, String> {
        let first = words.next().ok_or("no message id, -d DOMAIN or ALL")?;
        let sel = match first {
            "ALL" => Selection::All,
            "-d" => {
                let d = words.next().ok_or("-d needs a domain")?;
                let d = crate::vocab::server_name(d).ok_or_else(|| {
                    format!("not a domain: {}", crate::logging::sanitize(d.as_bytes()))
                })?;
                Selection::Domain(d)
            }
            id => {
                let mut ids = Vec::new();
                for w in std::iter::once(id).chain(&mut words) {
                    let id = MessageId::parse(w).ok_or_else(|| {
                        format!("not a queue id: {}", crate::logging::sanitize(w.as_bytes()))
                    })?;
                    if ids.len() == max {
                        return Err(format!("more than {max} ids"));
                    }
                    ids.push(id);
                }
                return Ok(Selection::Ids(ids));
            }
        };
        match words.next() {
            None => Ok(sel),
            Some(w) => Err(format!(
                "unexpected {} after the selection",
                crate::logging::sanitize(w.as_bytes())
            )),
        }
    }

    /// Whether a message with these pending recipients' addresses is selected
    /// (for ids, the caller looks the id up instead).
    pub fn covers<'a>(&self, id: MessageId, mut pending: impl Iterator<Item = &'a str>) -> bool {
        match self {
            Selection::All => true,
            Selection::Ids(ids) => ids.contains(&id),
            Selection::Domain(d) => pending.any(|a| {
                a.rsplit_once('@')
                    .is_some_and(|(_, dom)| dom.eq_ignore_ascii_case(d))
            }),
        }
    }
}

impl Scheduler {
    /// The queued messages a selection names, oldest first (ids not queued are left
    /// out).
    pub fn select(&self, sel: &Selection) -> Vec<MessageId> {
        if let Selection::Ids(ids) = sel {
            let mut v: Vec<MessageId> = ids
                .iter()
                .copied()
                .filter(|id| self.msgs.contains_key(id))
                .collect();
            v.sort_unstable();
            v.dedup();
            return v;
        }
        self.msgs
            .iter()
            .filter(|(id, m)| {
                let pending = m
                    .rcpts
                    .iter()
                    .filter(|r| r.state != RcptState::Done)
                    .map(|r| &*r.address);
                sel.covers(**id, pending)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether a message is on the operator's hold.
    pub fn is_on_hold(&self, id: MessageId) -> bool {
        self.on_hold.contains(&id)
    }

    /// Whether a recipient of a message is being delivered now.
    pub fn is_active(&self, id: MessageId) -> bool {
        self.msgs
            .get(&id)
            .is_some_and(|m| m.rcpts.iter().any(|r| r.state == RcptState::Active))
    }

    /// Carries out `op` on a queued message; `false` when it is not queued or the
    /// operation changes nothing (holding a held message, releasing one not held).
    pub fn operate(&mut self, op: QueueOp, id: MessageId, now: Unix) -> bool {
        if !self.msgs.contains_key(&id) {
            return false;
        }
        self.park_candidates.push(id);
        match op {
            QueueOp::Delete => self.delete(id),
            QueueOp::Hold => {
                if !self.on_hold.insert(id) {
                    return false;
                }
                self.take_out(id, RcptState::Held);
                self.records
                    .push_back((id, StateRecord::OnHold { at: now }));
            }
            QueueOp::Release => {
                if !self.on_hold.remove(&id) {
                    return false;
                }
                self.put_back(id);
                self.records
                    .push_back((id, StateRecord::OffHold { at: now }));
            }
            QueueOp::Requeue => {
                self.last_now = self.last_now.max(now);
                let keys = self.pending_keys(id, RcptState::Waiting);
                for k in &keys {
                    if let Some(t) = self.threads.get_mut(k) {
                        t.wakeup = t.wakeup.min(now);
                        t.retry_index = 0;
                    }
                    self.place(k);
                }
                self.wake = true;
                self.records
                    .push_back((id, StateRecord::Requeued { at: now }));
            }
        }
        true
    }

    /// The threads of a message's recipients in `state`.
    fn pending_keys(&self, id: MessageId, state: RcptState) -> Vec<std::rc::Rc<super::ThreadKey>> {
        let mut keys = Vec::new();
        if let Some(m) = self.msgs.get(&id) {
            for r in m.rcpts.iter().filter(|r| r.state == state) {
                if !keys.contains(&r.key) {
                    keys.push(r.key.clone());
                }
            }
        }
        keys
    }

    /// Takes a message's waiting recipients out of their threads into `state`.
    fn take_out(&mut self, id: MessageId, state: RcptState) {
        let keys = self.pending_keys(id, RcptState::Waiting);
        let Some(m) = self.msgs.get_mut(&id) else {
            return;
        };
        for (idx, r) in m.rcpts.iter_mut().enumerate() {
            if r.state != RcptState::Waiting {
                continue;
            }
            r.state = state;
            let rr = RcptRef { msg: id, idx };
            if let Some(t) = self.threads.get_mut(&r.key) {
                t.unwait(&rr, m.size);
                t.released.remove(&rr);
            }
        }
        for k in &keys {
            self.place(k);
        }
        self.expiry_bound.set(None);
    }

    /// Puts a held message's recipients back in their threads.
    fn put_back(&mut self, id: MessageId) {
        let Some(m) = self.msgs.get_mut(&id) else {
            return;
        };
        let mut keys = Vec::new();
        for (idx, r) in m.rcpts.iter_mut().enumerate() {
            if r.state != RcptState::Held {
                continue;
            }
            r.state = RcptState::Waiting;
            let t = self.threads.entry(r.key.clone()).or_default();
            if t.waiting.is_empty() && t.jobs == 0 {
                t.wakeup = t.wakeup.min(self.last_now);
            }
            t.wait(RcptRef { msg: id, idx }, m.size);
            if !keys.contains(&r.key) {
                keys.push(r.key.clone());
            }
        }
        for k in &keys {
            let clause = self.conf.clause_for(&k.channel, &k.host).map(|(i, _)| i);
            if let Some(t) = self.threads.get_mut(k) {
                t.clause = clause;
            }
            self.place(k);
        }
        self.expiry_bound.set(None);
        self.wake = true;
    }

    /// Drops a message: out of its threads, its pending outputs forgotten, its queue
    /// file to be removed by the completion path. A running job's later results for
    /// it find nothing and change nothing.
    fn delete(&mut self, id: MessageId) {
        self.take_out(id, RcptState::Done);
        self.on_hold.remove(&id);
        if let Some(m) = self.msgs.remove(&id) {
            for idx in 0..m.rcpts.len() {
                self.errors.remove(&RcptRef { msg: id, idx });
            }
        }
        self.records.retain(|(m, _)| *m != id);
        self.bounces.retain(|b| b.msg != id);
        self.delays.retain(|d| d.msg != id);
        if !self.complete.contains(&id) {
            self.complete.push_back(id);
        }
    }
}
