//! Links (DESIGN.md §5.9) and held destinations, the scheduler's side: threads
//! behind a link that is down never start (they keep their mail, their wake-up time
//! and their retry state); what is held behind a link is summed for the dial policy;
//! a release that delivered mail is noted per destination (held mail's expiry counts
//! from it, and `etrnd clients` shows it).

use std::rc::Rc;

use super::{RcptState, Scheduler, ThreadKey, Unix};
use crate::config::links::LinkTarget;

/// What waits behind a link (or for one destination).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldSum {
    /// Messages with a recipient waiting (a message in two threads counts twice).
    pub messages: u64,
    /// Their octets.
    pub octets: u64,
    /// The arrival of the oldest of them.
    pub oldest: Option<Unix>,
}

/// One held destination, for `etrnd clients`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldDest {
    /// `channel!host`.
    pub key: String,
    /// What is held.
    pub held: HeldSum,
    /// When the first of its recipients expires.
    pub next_expiry: Option<Unix>,
    /// The last release that delivered mail (0: none known).
    pub last_release: Unix,
}

impl Scheduler {
    /// The targets behind the links that are down now (empty: every link is up):
    /// every thread is placed again.
    pub fn set_blocked(&mut self, targets: Vec<LinkTarget>) {
        if targets == self.blocked {
            return;
        }
        self.blocked = targets;
        let keys: Vec<Rc<ThreadKey>> = self.threads.keys().cloned().collect();
        for k in keys {
            self.place(&k);
        }
        self.wake = true;
    }

    /// Whether a thread is behind a link that is down.
    pub fn is_blocked(&self, key: &ThreadKey) -> bool {
        !self.blocked.is_empty()
            && self
                .blocked
                .iter()
                .any(|t| t.covers(&key.channel, &key.host))
    }

    /// A release of `key` delivered mail now.
    pub(super) fn note_release(&mut self, key: &Rc<ThreadKey>, now: Unix) {
        let held = self
            .threads
            .get(key)
            .is_some_and(|t| self.held(t.clause) == Some(true));
        if let Some(t) = self.threads.get_mut(key) {
            t.last_release = t.last_release.max(now);
        }
        if held {
            self.expiry_bound.set(None);
            self.release_notes.push_back((key.to_string(), now));
        }
    }

    /// The next held destination whose release delivered mail, and when (the
    /// loop makes it durable).
    pub fn poll_release_note(&mut self) -> Option<(String, Unix)> {
        self.release_notes.pop_front()
    }

    /// A destination's last successful release, as recorded earlier (start-up).
    pub fn set_last_release(&mut self, key: ThreadKey, at: Unix) {
        let key = self.intern(key);
        let t = self.threads.entry(key).or_default();
        t.last_release = t.last_release.max(at);
        self.expiry_bound.set(None);
    }

    /// What waits in the threads `pick` selects.
    pub fn held_sum(&self, mut pick: impl FnMut(&ThreadKey) -> bool) -> HeldSum {
        let mut s = HeldSum::default();
        for (k, t) in &self.threads {
            if (t.waiting.is_empty() && t.parked.messages == 0) || !pick(k) {
                continue;
            }
            self.add_thread(t, &mut s);
        }
        s
    }

    /// What the dial policy counts behind a link: the waiting mail of the threads
    /// `pick` selects that are held or due at `now` (mail waiting out a retry
    /// back-off would only fail again), and the earliest wake-up of the others.
    pub fn dial_sum(
        &self,
        mut pick: impl FnMut(&ThreadKey) -> bool,
        now: Unix,
    ) -> (HeldSum, Option<Unix>) {
        let mut s = HeldSum::default();
        let mut next: Option<Unix> = None;
        for (k, t) in &self.threads {
            if (t.waiting.is_empty() && t.parked.messages == 0) || !pick(k) {
                continue;
            }
            if self.held(t.clause) == Some(false) && t.wakeup > now {
                next = Some(next.map_or(t.wakeup, |n| n.min(t.wakeup)));
                continue;
            }
            self.add_thread(t, &mut s);
        }
        (s, next)
    }

    fn add_thread(&self, t: &super::Thread, s: &mut HeldSum) {
        let mut last = None;
        for r in &t.waiting {
            if last == Some(r.msg) {
                continue;
            }
            last = Some(r.msg);
            s.messages += 1;
            if let Some(m) = self.msgs.get(&r.msg) {
                s.oldest = Some(s.oldest.map_or(m.arrival, |o: Unix| o.min(m.arrival)));
            }
        }
        s.octets += t.octets + t.parked.octets;
        s.messages += t.parked.messages;
        if let Some(o) = t.parked.oldest {
            s.oldest = Some(s.oldest.map_or(o, |x| x.min(o)));
        }
    }

    /// Whether a thread `pick` selects has a job running or mail due or released
    /// that waits for a slot (the link-up actions wait for this to end).
    pub fn busy(&self, mut pick: impl FnMut(&ThreadKey) -> bool) -> bool {
        self.jobs.values().any(|(k, _, _)| pick(k))
            || self.threads.iter().any(|(k, t)| {
                matches!(t.placed, super::Placed::Ready(_)) && !t.released.is_empty() && pick(k)
            })
    }

    /// Every held destination with mail waiting, most octets first.
    pub fn held_destinations(&self) -> Vec<HeldDest> {
        let mut l: Vec<HeldDest> = Vec::new();
        for (k, t) in &self.threads {
            if (t.waiting.is_empty() && t.parked.messages == 0) || self.held(t.clause) != Some(true)
            {
                continue;
            }
            let mut held = HeldSum::default();
            self.add_thread(t, &mut held);
            let parked = t
                .parked
                .oldest
                .and_then(|o| self.expiry_at(k, o, false).min(self.expiry_at(k, o, true)));
            let next_expiry = t
                .waiting
                .iter()
                .filter_map(|r| {
                    let m = self.msgs.get(&r.msg)?;
                    let ri = m.rcpts.get(r.idx)?;
                    (ri.state == RcptState::Waiting).then(|| self.expiry_of(m, ri))?
                })
                .chain(parked)
                .min();
            l.push(HeldDest {
                key: k.to_string(),
                held,
                next_expiry,
                last_release: t.last_release,
            });
        }
        l.sort_by(|a, b| b.held.octets.cmp(&a.held.octets).then(a.key.cmp(&b.key)));
        l
    }
}

#[cfg(test)]
#[path = "links_tests.rs"]
mod tests;
