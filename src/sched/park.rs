//! Parked mail (DESIGN.md §5.10): a message whose every waiting recipient is in a
//! held destination, with no release asked for it, leaves memory for `hold/` and
//! its destinations' indexes (`spool::held`). What stays here per destination is
//! a summary — messages, octets, oldest arrival, the next expiry or delay notice,
//! the recipient domains ETRN may name (at most [`MAX_DOMAINS`]) — so memory grows
//! with the destinations waiting, not with the messages held.
//!
//! The loop asks which destinations a release, an ATRN claim or a queue command
//! concerns ([`Scheduler::parked_matching`]) and which have a time due
//! ([`Scheduler::parked_due`]), loads their messages back (`add_sized`, verified on
//! the way) and tells the scheduler what stays parked ([`Scheduler::set_parked`]).

use std::rc::Rc;

use super::{RcptRef, RcptState, Scheduler, ThreadKey, Unix};
use crate::store::spool::held::IndexEntry;
use crate::store::spool::MessageId;

/// Most recipient domains a destination's summary names; past that every release
/// loads the destination to look.
pub const MAX_DOMAINS: usize = 16;

/// Messages the scheduler keeps in memory before deferred mail whose destination
/// waits out a retry back-off goes to disk too, latest wake-up first (about 220
/// octets each: some 4 MiB).
pub const ACTIVE_LIMIT: usize = 20_000;

/// A held destination's parked mail, summed.
#[derive(Debug, Default)]
pub(super) struct Parked {
    pub(super) messages: u64,
    pub(super) octets: u64,
    pub(super) oldest: Option<Unix>,
    /// The first expiry or delay notice due among them.
    pub(super) next: Option<Unix>,
    /// Domains other than the destination's host (the usual one costs nothing).
    domains: Vec<Box<str>>,
    /// The host is one of the domains.
    host_domain: bool,
    /// More domains than [`MAX_DOMAINS`].
    many: bool,
}

impl Scheduler {
    /// When a parked message's first expiry or delay notice in `key` is due.
    pub fn entry_due(&self, key: &ThreadKey, e: &IndexEntry) -> Option<Unix> {
        let x = self.expiry_at(key, e.arrival, e.tried);
        let r = self.report_at(key, e.arrival, e.reported);
        match (x, r) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Messages that may have become parkable (arrived, or a job or hold ended).
    pub fn take_park_candidates(&mut self) -> Vec<MessageId> {
        std::mem::take(&mut self.park_candidates)
    }

    /// Whether a message may wait on disk now: its index entries per destination.
    /// Held destinations always may; with `deferred`, so may destinations waiting
    /// out a retry back-off (their wake-up goes in the line). `None` when it must
    /// stay in memory (on hold, in a job, released, a destination due or unmatched,
    /// an expiry or delay notice due now).
    pub fn parkable(
        &self,
        id: MessageId,
        now: Unix,
        deferred: bool,
    ) -> Option<Vec<(ThreadKey, IndexEntry)>> {
        let m = self.msgs.get(&id)?;
        if self.on_hold.contains(&id) {
            return None;
        }
        let mut out: Vec<(ThreadKey, IndexEntry)> = Vec::new();
        for (idx, r) in m.rcpts.iter().enumerate() {
            match r.state {
                RcptState::Done => continue,
                RcptState::Waiting => {}
                RcptState::Active | RcptState::Held => return None,
            }
            let t = self.threads.get(&r.key)?;
            if t.released.contains(&RcptRef { msg: id, idx }) {
                return None;
            }
            let next = match self.held(t.clause) {
                Some(true) => 0,
                Some(false) if deferred && t.wakeup > now && t.released.is_empty() => t.wakeup,
                _ => return None,
            };
            let domain = r
                .address
                .rsplit('@')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            match out.iter_mut().find(|(k, _)| *k == *r.key) {
                Some((_, e)) => {
                    e.tried |= r.attempts > 0;
                    e.reported = e.reported.min(r.reported);
                }
                None => out.push((
                    (*r.key).clone(),
                    IndexEntry {
                        id,
                        arrival: m.arrival,
                        size: m.size,
                        tried: r.attempts > 0,
                        reported: r.reported,
                        domain,
                        next,
                    },
                )),
            }
        }
        if out.is_empty() {
            return None;
        }
        // Something due now is handled in memory first.
        if out
            .iter()
            .any(|(k, e)| self.entry_due(k, e).is_some_and(|t| t <= now))
        {
            return None;
        }
        Some(out)
    }

    /// Takes a message out of memory: its entries (from [`Scheduler::parkable`]) are
    /// on disk now.
    pub fn park(&mut self, id: MessageId, entries: &[(ThreadKey, IndexEntry)]) {
        let Some(m) = self.msgs.remove(&id) else {
            return;
        };
        for (idx, r) in m.rcpts.iter().enumerate() {
            let rr = RcptRef { msg: id, idx };
            if r.state == RcptState::Waiting {
                if let Some(t) = self.threads.get_mut(&r.key) {
                    t.unwait(&rr, m.size);
                }
            }
            self.errors.remove(&rr);
        }
        for (k, e) in entries {
            let key = self.intern(k.clone());
            self.add_parked(&key, e);
            self.place(&key);
        }
        self.expiry_bound.set(None);
    }

    fn add_parked(&mut self, key: &Rc<ThreadKey>, e: &IndexEntry) {
        let due = self.entry_due(key, e);
        let t = self.threads.entry(key.clone()).or_default();
        let p = &mut t.parked;
        let old = p.next;
        p.messages += 1;
        p.octets += e.size;
        p.oldest = Some(p.oldest.map_or(e.arrival, |o| o.min(e.arrival)));
        if let Some(d) = due {
            p.next = Some(p.next.map_or(d, |n| n.min(d)));
        }
        if e.domain == key.host {
            p.host_domain = true;
        } else if !p.many && !p.domains.iter().any(|d| **d == *e.domain) {
            if p.domains.len() < MAX_DOMAINS {
                p.domains.push(e.domain.clone().into_boxed_str());
            } else {
                p.many = true;
                p.domains = Vec::new();
            }
        }
        let new = p.next;
        if old != new {
            if let Some(o) = old {
                self.park_due.remove(&(o, key.clone()));
            }
            if let Some(n) = new {
                self.park_due.insert((n, key.clone()));
            }
        }
    }

    /// What stays parked in `key` (start-up, after loading some of it back): its
    /// summary is made again from these entries. A deferred destination with
    /// nothing in memory wakes at the earliest next try its lines name.
    pub fn set_parked(&mut self, key: ThreadKey, entries: &[IndexEntry]) {
        let wake = entries.iter().map(|e| e.next).filter(|n| *n > 0).min();
        let key = self.fresh_summary(key, wake);
        for e in entries {
            self.add_parked(&key, e);
        }
        self.place(&key);
    }

    /// `key`'s thread with its parked summary emptied (and out of `park_due`), its
    /// clause matched, and a deferred thread with nothing in memory waking at `wake`.
    fn fresh_summary(&mut self, key: ThreadKey, wake: Option<Unix>) -> Rc<ThreadKey> {
        let key = self.intern(key);
        let clause = self
            .conf
            .clause_for(&key.channel, &key.host)
            .map(|(i, _)| i);
        let t = self.threads.entry(key.clone()).or_default();
        t.clause = clause;
        if let Some(w) = wake.filter(|_| t.waiting.is_empty() && t.jobs == 0) {
            t.wakeup = w;
        }
        if let Some(n) = std::mem::take(&mut t.parked).next {
            self.park_due.remove(&(n, key.clone()));
        }
        key
    }

    /// A message parked in several destinations was loaded through one of them:
    /// the others' summaries no longer count it (their index lines stay, skipped
    /// when they are read while it is in memory).
    pub fn loaded_from(&mut self, id: MessageId, via: &ThreadKey) {
        let Some(m) = self.msgs.get(&id) else {
            return;
        };
        let size = m.size;
        let mut keys: Vec<Rc<ThreadKey>> = m
            .rcpts
            .iter()
            .filter(|r| r.state == RcptState::Waiting && *r.key != *via)
            .map(|r| r.key.clone())
            .collect();
        keys.dedup();
        for k in keys {
            if let Some(t) = self.threads.get_mut(&k) {
                t.parked.messages = t.parked.messages.saturating_sub(1);
                t.parked.octets = t.parked.octets.saturating_sub(size);
            }
        }
    }

    /// The destinations with parked mail `pick` may select, by thread and by one of
    /// its recipient domains (a destination with too many domains to list is always
    /// named: loading it lets the release look).
    pub fn parked_matching(
        &self,
        mut pick: impl FnMut(&ThreadKey, &str) -> bool,
    ) -> Vec<ThreadKey> {
        let mut out: Vec<ThreadKey> = self
            .threads
            .iter()
            .filter(|(_, t)| t.parked.messages > 0)
            .filter(|(k, t)| {
                t.parked.many
                    || pick(k, "")
                    || (t.parked.host_domain && pick(k, &k.host))
                    || t.parked.domains.iter().any(|d| pick(k, d))
            })
            .map(|(k, _)| (**k).clone())
            .collect();
        out.sort();
        out
    }

    /// The destinations whose parked mail has an expiry or delay notice due at `now`
    /// (each named once; the loop loads what is due and calls `set_parked`).
    pub fn parked_due(&mut self, now: Unix) -> Vec<ThreadKey> {
        let mut out = Vec::new();
        while let Some((at, k)) = self.park_due.first().cloned() {
            if at > now {
                break;
            }
            self.park_due.pop_first();
            if let Some(t) = self.threads.get_mut(&k) {
                t.parked.next = None;
            }
            out.push((*k).clone());
        }
        out
    }

    /// Deferred messages to take out of memory now to bring it back under the
    /// active limit (with a tenth to spare): those of the destinations due last.
    pub fn deferred_to_park(&self, now: Unix) -> Vec<MessageId> {
        if self.msgs.len() <= self.active_limit {
            return Vec::new();
        }
        let want = self.msgs.len() - self.active_limit * 9 / 10;
        let mut out = Vec::new();
        for (at, key) in self.due.iter().rev() {
            if *at <= now || out.len() >= want {
                break;
            }
            if let Some(t) = self.threads.get(key) {
                let mut last = None;
                for r in &t.waiting {
                    if last != Some(r.msg) {
                        last = Some(r.msg);
                        out.push(r.msg);
                    }
                }
            }
        }
        out
    }

    /// The deferred destinations whose time came with mail on disk.
    pub fn take_page_in_wanted(&mut self) -> Vec<ThreadKey> {
        std::mem::take(&mut self.page_in_wanted)
            .into_iter()
            .map(|k| (*k).clone())
            .collect()
    }

    /// Destinations with parked mail that are not held (SIGUSR1, `etrnd flush`).
    pub fn parked_unheld(&self) -> Vec<ThreadKey> {
        self.threads
            .iter()
            .filter(|(_, t)| t.parked.messages > 0 && self.held(t.clause) == Some(false))
            .map(|(k, _)| (**k).clone())
            .collect()
    }

    /// How many messages stay in memory before deferred mail goes to disk.
    pub fn set_active_limit(&mut self, n: usize) {
        self.active_limit = n.max(1);
    }

    /// Every destination's parked summary, for `index/.summary` at a clean stop.
    pub fn parked_summaries(&self) -> Vec<(ThreadKey, crate::store::spool::held::Summary)> {
        let mut out: Vec<(ThreadKey, crate::store::spool::held::Summary)> = self
            .threads
            .iter()
            .filter(|(_, t)| t.parked.messages > 0)
            .map(|(k, t)| {
                let p = &t.parked;
                let deferred = self.held(t.clause) == Some(false);
                let s = crate::store::spool::held::Summary {
                    messages: p.messages,
                    octets: p.octets,
                    oldest: p.oldest.unwrap_or(0),
                    next: p.next.unwrap_or(0),
                    wake: if deferred { t.wakeup } else { 0 },
                    domains: self.parked_domains(k).unwrap_or_default(),
                    many: p.many,
                };
                ((**k).clone(), s)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A destination's summary as a clean stop wrote it (start-up, instead of its
    /// index file).
    pub fn set_summary(&mut self, key: ThreadKey, s: &crate::store::spool::held::Summary) {
        let key = self.fresh_summary(key, (s.wake > 0).then_some(s.wake));
        let t = self.threads.entry(key.clone()).or_default();
        t.parked = Parked {
            messages: s.messages,
            octets: s.octets,
            oldest: (s.oldest > 0).then_some(s.oldest),
            next: (s.next > 0).then_some(s.next),
            host_domain: s.domains.iter().any(|d| *d == key.host),
            domains: s
                .domains
                .iter()
                .filter(|d| **d != key.host)
                .take(MAX_DOMAINS)
                .map(|d| d.as_str().into())
                .collect(),
            many: s.many || s.domains.len() > MAX_DOMAINS + 1,
        };
        if s.next > 0 {
            self.park_due.insert((s.next, key.clone()));
        }
        self.place(&key);
    }

    /// The recipient domains of `key`'s parked mail (`None`: too many to list).
    pub fn parked_domains(&self, key: &ThreadKey) -> Option<Vec<String>> {
        let p = &self.threads.get(key)?.parked;
        (!p.many).then(|| {
            let host = p.host_domain.then(|| key.host.clone());
            host.into_iter()
                .chain(p.domains.iter().map(|d| d.to_string()))
                .collect()
        })
    }

    /// One parked message of `key` was loaded (a release reading its index as a
    /// stream): the summary counts it no more.
    pub fn parked_took(&mut self, key: &ThreadKey, size: u64) {
        if let Some(t) = self.threads.get_mut(key) {
            t.parked.messages = t.parked.messages.saturating_sub(1);
            t.parked.octets = t.parked.octets.saturating_sub(size);
        }
    }

    /// Messages parked in `key`.
    pub fn parked_count(&self, key: &ThreadKey) -> u64 {
        self.threads.get(key).map_or(0, |t| t.parked.messages)
    }

    /// Recipients of `key` released and still waiting for a job.
    pub fn released_waiting(&self, key: &ThreadKey) -> usize {
        self.threads.get(key).map_or(0, |t| t.released.len())
    }

    /// Parked messages, over every destination (a message in two counts twice).
    pub fn parked_messages(&self) -> u64 {
        self.threads.values().map(|t| t.parked.messages).sum()
    }

    /// The summaries of every destination's parked mail, from the index files
    /// (messages already in memory left out); moves the spool's id generator past
    /// every id listed.
    pub fn load_index(&mut self, spool: &mut crate::store::spool::Spool) {
        // After a clean stop: one file of summaries instead of every index file.
        if let Some(all) = spool.take_summary() {
            for (name, s) in all {
                if let Some((channel, host)) = crate::store::spool::held::index_key(&name) {
                    self.set_summary(ThreadKey { channel, host }, &s);
                }
            }
            return;
        }
        for name in spool.index_names() {
            let Some((channel, host)) = crate::store::spool::held::index_key(&name) else {
                continue;
            };
            let mut entries = spool.read_index(&name);
            entries.retain(|e| !self.has_message(e.id));
            for e in &entries {
                spool.seen_id(e.id);
            }
            self.set_parked(ThreadKey { channel, host }, &entries);
        }
    }
}
