//! `Scheduler`: which recipient is tried when, over which thread, within which limits
//! (DESIGN.md §5.3, reference/zmailer.md §3). Pure: no I/O, all times passed in as
//! Unix seconds.
//!
//! * Every waiting recipient belongs to a *thread* (channel, host) governed by the
//!   first matching scheduler.conf clause (a clause without a `command` takes the
//!   command of the next matching clause that has one). A recipient no clause
//!   matches, or that gets no command, is kept but never scheduled; the
//!   configuration check refuses routes that lead there, and RCPT refuses such
//!   recipients, so only a reload that removed a clause can leave mail there.
//! * A job is one connection's worth of work: the waiting recipients of one thread,
//!   oldest message first, split over at most `maxthr` jobs. `maxta` (all jobs),
//!   `maxchannel` (per channel) and `maxring` (per clause and channel) are never
//!   exceeded; a thread that cannot start waits for a free slot.
//! * `queueonly` threads (and `hold` transports) never start on arrival or timer:
//!   only a release (ETRN, `etrnd flush`) or expiry touches them. A release that
//!   finds the limits full stays pending until a slot frees — it is never dropped.
//! * A deferral puts the whole thread to sleep for `retries[i] × interval` (i counts
//!   up; past the end of the list a random earlier entry is reused, as ZMailer does,
//!   without its bugs), so one dead host costs one attempt per retry slot, not one
//!   per message. A delivery resets the thread's retry index.
//! * Due is not allowed. A thread with waiting mail is in at most one of two
//!   ordered sets: `due` (by wake-up time: it may run once that time comes) or
//!   `ready` (due now or released, by its oldest mail: it runs when the limits
//!   allow). `poll_timeout` is the first entry of `due` (or the next expiry), so a
//!   thread that only waits for a slot never becomes a timer; it is tried again when
//!   an event could let it start (a job ended, a thread became ready, a release, a
//!   reload), never by a timer. Between such events `poll_job` costs O(log n).
//! * Expiry: a recipient with at least one attempt fails with 5.4.7 once its message
//!   is `expiry` old; any recipient fails at `expiry + expiry2` (expiry2 defaults to
//!   24 h when only expiry is set).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;

use crate::config::scheduler::{Params, SchedulerConf, Transport};
use crate::store::spool::{Destination, Envelope, MessageId, StateRecord};

/// Seconds since the epoch.
pub type Unix = u64;

/// One recipient of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RcptRef {
    /// The message.
    pub msg: MessageId,
    /// Index in its envelope.
    pub idx: usize,
}

/// A thread: (channel, host).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadKey {
    /// The channel.
    pub channel: String,
    /// The host (for `local`, the user).
    pub host: String,
}

impl std::fmt::Display for ThreadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}!{}", self.channel, self.host)
    }
}

/// A job's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

/// Work for one connection.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The thread.
    pub key: ThreadKey,
    /// How to deliver.
    pub transport: Transport,
    /// The recipients, oldest message first, grouped by message.
    pub rcpts: Vec<RcptRef>,
}

/// What became of one recipient in a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptResult {
    /// Delivered (already recorded durably by the caller).
    Delivered,
    /// Try again later.
    Deferred(String),
    /// Failed for good: RFC 3463 status and reason.
    Failed(String, String),
    /// Not tried: the link it needs is down, or the local network failed before a
    /// packet left. Waits again with no attempt counted and no journal record; the
    /// thread's retry state is untouched (DESIGN.md §5.9).
    Untried(String),
}

/// A message some of whose recipients failed for good: a DSN is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// The message.
    pub msg: MessageId,
    /// Failed recipients: index, status, reason.
    pub failures: Vec<(usize, String, String)>,
}

/// A delayed recipient: index, last error (if tried), when it expires.
pub type Delayed = (usize, Option<String>, Option<Unix>);

/// A message some of whose recipients wait past a `reporttimes` age: a delay
/// notice (RFC 3464, Action: delayed) is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delay {
    /// The message.
    pub msg: MessageId,
    /// The delayed recipients.
    pub rcpts: Vec<Delayed>,
}

/// What a release found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Released {
    /// Messages newly released.
    pub messages: usize,
    /// Anything matched (waiting, already released, or being delivered).
    pub matched: bool,
    /// A matching thread has a delivery running.
    pub active: bool,
    /// Matching mail whose last attempt failed moments ago stays put until then
    /// (see [`ReleaseGap`]): the earliest such moment.
    pub not_before: Option<Unix>,
}

/// Where a recipient is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptState {
    /// Waiting for its thread.
    Waiting,
    /// In a job.
    Active,
    /// Delivered or failed.
    Done,
    /// Its message is on the operator's hold (`etrnd queue hold`).
    Held,
}

/// Per queued recipient; kept small (32 octets) because a held queue can be large. The
/// thread key is shared with the thread's map entry; the last error of a deferred
/// recipient is in [`Scheduler`]'s `errors`.
#[derive(Debug)]
struct RcptInfo {
    address: Box<str>,
    key: Rc<ThreadKey>,
    state: RcptState,
    attempts: u32,
    /// Delay notices sent (`reporttimes` levels covered).
    reported: u8,
    /// The sender asked to hear of its delivery (NOTIFY=SUCCESS); it fits in
    /// the padding, so a held million recipients cost nothing more.
    success: bool,
}

#[derive(Debug)]
struct MsgInfo {
    arrival: Unix,
    /// Octets of the queue file (what `HOLD_QUOTA` counts).
    size: u64,
    rcpts: Box<[RcptInfo]>,
}

#[derive(Debug, Default)]
struct Thread {
    clause: Option<usize>,
    waiting: BTreeSet<RcptRef>,
    jobs: u32,
    retry_index: usize,
    wakeup: Unix,
    /// Recipients a release (ETRN/flush) asked for; a subset of `waiting`.
    released: BTreeSet<RcptRef>,
    /// Which ordered set holds the thread, under which sort key.
    placed: Placed,
    /// Octets of the messages with a recipient waiting here (each message once).
    octets: u64,
    /// When a release of this (held) destination last delivered mail: held mail
    /// expires counting from the later of its arrival and this.
    last_release: Unix,
    /// Its mail parked on disk, summed (`park`).
    parked: park::Parked,
    /// How soon a release may try it again after failures.
    gap: ReleaseGap,
}

impl Thread {
    /// Whether a recipient of message `m` waits here.
    fn has_msg(&self, m: MessageId) -> bool {
        let lo = RcptRef { msg: m, idx: 0 };
        let hi = RcptRef {
            msg: m,
            idx: usize::MAX,
        };
        self.waiting.range(lo..=hi).next().is_some()
    }

    /// A recipient waits here now; its message's `size` counts once.
    fn wait(&mut self, r: RcptRef, size: u64) {
        let first = !self.has_msg(r.msg);
        if self.waiting.insert(r) && first {
            self.octets += size;
        }
    }

    /// A recipient waits here no more (taken, released, expired).
    fn unwait(&mut self, r: &RcptRef, size: u64) {
        if self.waiting.remove(r) && !self.has_msg(r.msg) {
            self.octets = self.octets.saturating_sub(size);
        }
    }
}

/// Where a thread is kept (see the module header: due is not allowed).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Placed {
    /// Nothing to do until mail arrives or a release: held, empty, or unmatched.
    #[default]
    Nowhere,
    /// In `due`, under its wake-up time.
    Due(Unix),
    /// In `ready`, under its oldest waiting recipient.
    Ready(RcptRef),
}

/// The scheduler.
#[derive(Debug)]
pub struct Scheduler {
    conf: SchedulerConf,
    msgs: BTreeMap<MessageId, MsgInfo>,
    threads: HashMap<Rc<ThreadKey>, Thread>,
    jobs: HashMap<JobId, (Rc<ThreadKey>, usize, Vec<RcptRef>)>,
    total: u32,
    per_channel: HashMap<String, u32>,
    per_ring: HashMap<(usize, String), u32>,
    next_job: u64,
    rng: u64,
    bounces: VecDeque<Bounce>,
    delays: VecDeque<Delay>,
    records: VecDeque<(MessageId, StateRecord)>,
    complete: VecDeque<MessageId>,
    /// The last error of each waiting recipient that was tried.
    errors: HashMap<RcptRef, Rc<str>>,
    /// The last error string stored, shared by the next recipients with the same one.
    last_reason: Option<Rc<str>>,
    /// Threads that run when their wake-up time comes.
    due: BTreeSet<(Unix, Rc<ThreadKey>)>,
    /// Threads due now (or released), waiting for the limits, oldest mail first.
    ready: BTreeSet<(RcptRef, Rc<ThreadKey>)>,
    /// Something happened that may let a ready thread start (a job ended, a
    /// thread became ready, a release, a reload); cleared by a fruitless scan.
    wake: bool,
    /// The latest time `poll_job` was given: a thread already ready stays ready.
    last_now: Unix,
    /// A lower bound of the next expiry (`Some(None)`: nothing expires), or `None`
    /// when it must be computed again. Saves a scan of the queue every loop turn.
    expiry_bound: Cell<Option<Option<Unix>>>,
    /// ATRN claims: recipients taken for a turned-around connection.
    claims: HashMap<JobId, Vec<RcptRef>>,
    /// `HOLD_QUOTA` (0: none).
    hold_quota: u64,
    /// Held destinations (`channel!host`) at or past the quota: RCPT gets 452.
    full: std::collections::HashSet<String>,
    /// What is behind links that are down: threads it covers never start.
    blocked: Vec<crate::config::links::LinkTarget>,
    /// Destinations whose release delivered mail, and when (to be made durable).
    release_notes: VecDeque<(String, Unix)>,
    /// The destinations the last release matched.
    matched: Vec<String>,
    /// Messages on the operator's hold.
    on_hold: std::collections::HashSet<MessageId>,
    /// Held destinations with parked mail, by their next expiry or delay notice.
    park_due: BTreeSet<(Unix, Rc<ThreadKey>)>,
    /// Messages that may wait on disk now (checked by the loop).
    park_candidates: Vec<MessageId>,
    /// Deferred destinations whose time came with mail parked on disk: the loop
    /// loads it.
    page_in_wanted: Vec<Rc<ThreadKey>>,
    /// Messages kept in memory at most before deferred mail goes to disk.
    active_limit: usize,
}

/// The lower-case domain of a queued recipient's address (empty if unknown).
fn rcpt_domain(msgs: &BTreeMap<MessageId, MsgInfo>, r: RcptRef) -> String {
    msgs.get(&r.msg)
        .and_then(|m| m.rcpts.get(r.idx))
        .map(|x| {
            x.address
                .rsplit('@')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn dest_key(d: &Destination) -> ThreadKey {
    match d {
        Destination::Local(u) => ThreadKey {
            channel: "local".into(),
            host: u.clone(),
        },
        Destination::Remote { channel, host } => ThreadKey {
            channel: channel.clone(),
            host: host.clone(),
        },
    }
}

impl Scheduler {
    /// An empty scheduler for this configuration.
    pub fn new(conf: SchedulerConf, seed: u64) -> Scheduler {
        Scheduler {
            conf,
            msgs: BTreeMap::new(),
            threads: HashMap::new(),
            jobs: HashMap::new(),
            total: 0,
            per_channel: HashMap::new(),
            per_ring: HashMap::new(),
            next_job: 0,
            rng: seed | 1,
            bounces: VecDeque::new(),
            delays: VecDeque::new(),
            records: VecDeque::new(),
            complete: VecDeque::new(),
            errors: HashMap::new(),
            last_reason: None,
            due: BTreeSet::new(),
            ready: BTreeSet::new(),
            wake: false,
            last_now: 0,
            expiry_bound: Cell::new(None),
            claims: HashMap::new(),
            hold_quota: 0,
            full: std::collections::HashSet::new(),
            blocked: Vec::new(),
            release_notes: VecDeque::new(),
            matched: Vec::new(),
            on_hold: std::collections::HashSet::new(),
            park_due: BTreeSet::new(),
            park_candidates: Vec::new(),
            page_in_wanted: Vec::new(),
            active_limit: park::ACTIVE_LIMIT,
        }
    }

    /// Whether a clause holds its threads (queue-only or the hold transport) or
    /// gives them nothing to run (`None`: unmatched or no command).
    fn held(&self, clause: Option<usize>) -> Option<bool> {
        let p = self.params(clause)?;
        let (transport, _) = p.command.as_ref()?;
        Some(p.queueonly || *transport == Transport::Hold)
    }

    /// Puts a thread in the set its state calls for, after any change to its
    /// waiting mail, releases, wake-up time or clause. O(log n).
    fn place(&mut self, key: &Rc<ThreadKey>) {
        let Some(t) = self.threads.get(key) else {
            return;
        };
        let old = t.placed;
        let held = self.held(t.clause);
        // `HOLD_QUOTA` (no work, no allocation, without one).
        if self.hold_quota > 0 || !self.full.is_empty() {
            let octets = t.octets + t.parked.octets;
            let full = self.hold_quota > 0 && held == Some(true) && octets >= self.hold_quota;
            let name = key.to_string();
            if full != self.full.contains(&name) {
                if full {
                    log::warn!("{key} sched hold-quota-full octets={octets}");
                    self.full.insert(name);
                } else {
                    log::info!("{key} sched hold-quota-ok octets={octets}");
                    self.full.remove(&name);
                }
            }
        }
        let Some(t) = self.threads.get(key) else {
            return;
        };
        let blocked = self.is_blocked(key);
        let new = match (t.waiting.first(), held) {
            // Deferred mail parked on disk: due at its wake-up time, then loaded
            // (the loop takes `page_in_wanted`) before it can run.
            (None, Some(false)) if t.parked.messages > 0 && !blocked && t.jobs == 0 => {
                if t.wakeup <= self.last_now {
                    if !self.page_in_wanted.contains(key) {
                        self.page_in_wanted.push(key.clone());
                    }
                    Placed::Nowhere
                } else {
                    Placed::Due(t.wakeup)
                }
            }
            (None, _) | (_, None) => Placed::Nowhere,
            (Some(_), Some(_)) if blocked => Placed::Nowhere,
            (Some(first), Some(held)) => {
                if !t.released.is_empty() {
                    Placed::Ready(*first)
                } else if held {
                    Placed::Nowhere
                } else if t.wakeup <= self.last_now {
                    Placed::Ready(*first)
                } else {
                    Placed::Due(t.wakeup)
                }
            }
        };
        if old == new {
            return;
        }
        match old {
            Placed::Nowhere => {}
            Placed::Due(at) => {
                self.due.remove(&(at, key.clone()));
            }
            Placed::Ready(first) => {
                self.ready.remove(&(first, key.clone()));
            }
        }
        match new {
            Placed::Nowhere => {}
            Placed::Due(at) => {
                self.due.insert((at, key.clone()));
            }
            Placed::Ready(first) => {
                self.ready.insert((first, key.clone()));
                self.wake = true;
            }
        }
        if let Some(t) = self.threads.get_mut(key) {
            t.placed = new;
        }
    }

    /// The thread key shared with the thread map, if the thread exists.
    fn intern(&self, key: ThreadKey) -> Rc<ThreadKey> {
        match self.threads.get_key_value(&key) {
            Some((k, _)) => k.clone(),
            None => Rc::new(key),
        }
    }

    /// `reason` as a shared string (equal to the last one stored: the same string).
    fn reason(&mut self, reason: &str) -> Rc<str> {
        match &self.last_reason {
            Some(r) if **r == *reason => r.clone(),
            _ => {
                let r: Rc<str> = Rc::from(reason);
                self.last_reason = Some(r.clone());
                r
            }
        }
    }

    /// A recipient became waiting: the next expiry may be earlier now.
    fn lower_expiry(&self, e: Option<Unix>) {
        if let (Some(bound), Some(e)) = (self.expiry_bound.get(), e) {
            self.expiry_bound
                .set(Some(Some(bound.map_or(e, |b| b.min(e)))));
        }
    }

    /// New clauses (SIGHUP): every thread is matched again.
    pub fn reconfigure(&mut self, conf: SchedulerConf) {
        self.conf = conf;
        self.expiry_bound.set(None);
        let keys: Vec<Rc<ThreadKey>> = self.threads.keys().cloned().collect();
        for k in keys {
            let clause = self.conf.clause_for(&k.channel, &k.host).map(|(i, _)| i);
            if let Some(t) = self.threads.get_mut(&k) {
                t.clause = clause;
            }
            self.place(&k);
        }
        self.wake = true;
    }

    /// The thread group of a clause (its expansions share their file clause's).
    fn ring(&self, clause: Option<usize>) -> usize {
        clause
            .and_then(|i| self.conf.clauses.get(i))
            .map_or(0, |c| c.ring)
    }

    fn params(&self, clause: Option<usize>) -> Option<&Params> {
        clause
            .and_then(|i| self.conf.clauses.get(i))
            .map(|c| &c.params)
    }

    /// Whether the sender of `r`'s message asked to hear of its delivery.
    pub fn wants_success(&self, r: &RcptRef) -> bool {
        self.msgs
            .get(&r.msg)
            .and_then(|m| m.rcpts.get(r.idx))
            .is_some_and(|x| x.success && x.state != RcptState::Done)
    }

    /// Adds a message whose size does not matter (tests, tools).
    pub fn add_message(
        &mut self,
        id: MessageId,
        env: &Envelope,
        journal: &[StateRecord],
        now: Unix,
    ) {
        self.add_sized(id, env, journal, now, 0)
    }

    /// Adds a message of `size` octets (new, or rebuilt from the spool with its
    /// journal).
    pub fn add_sized(
        &mut self,
        id: MessageId,
        env: &Envelope,
        journal: &[StateRecord],
        now: Unix,
        size: u64,
    ) {
        let mut rcpts: Vec<RcptInfo> = Vec::with_capacity(env.recipients.len());
        for r in &env.recipients {
            rcpts.push(RcptInfo {
                address: r.address.to_string().into_boxed_str(),
                key: self.intern(dest_key(&r.dest)),
                state: RcptState::Waiting,
                attempts: 0,
                reported: 0,
                success: r.notify_success(),
            });
        }
        let mut next_try: HashMap<usize, Unix> = HashMap::new();
        let mut last_error: HashMap<usize, Rc<str>> = HashMap::new();
        let mut on_hold = false;
        for rec in journal {
            match rec {
                StateRecord::Delivered { idx, .. } | StateRecord::Failed { idx, .. } => {
                    if let Some(r) = rcpts.get_mut(*idx) {
                        r.state = RcptState::Done;
                    }
                }
                StateRecord::Reported { idx, level, .. } => {
                    if let Some(r) = rcpts.get_mut(*idx) {
                        r.reported = r.reported.max(*level);
                    }
                }
                StateRecord::OnHold { .. } => on_hold = true,
                StateRecord::OffHold { .. } => on_hold = false,
                StateRecord::Requeued { .. } => next_try.clear(),
                StateRecord::Deferred {
                    idx, next, reason, ..
                } => {
                    if *idx < rcpts.len() {
                        rcpts[*idx].attempts += 1;
                        last_error.insert(*idx, self.reason(reason));
                        next_try.insert(*idx, *next);
                    }
                }
            }
        }
        if on_hold {
            self.on_hold.insert(id);
            for r in rcpts.iter_mut().filter(|r| r.state == RcptState::Waiting) {
                r.state = RcptState::Held;
            }
        }
        let mut touched: Vec<Rc<ThreadKey>> = Vec::new();
        for (idx, r) in rcpts.iter().enumerate() {
            if r.state != RcptState::Waiting {
                continue;
            }
            let clause = self
                .conf
                .clause_for(&r.key.channel, &r.key.host)
                .map(|(i, _)| i);
            let t = self.threads.entry(r.key.clone()).or_default();
            t.clause = clause;
            if t.waiting.is_empty() && t.jobs == 0 {
                t.wakeup = next_try.get(&idx).copied().unwrap_or(now);
            } else if let Some(n) = next_try.get(&idx) {
                t.wakeup = t.wakeup.min(*n);
            }
            // A new message: its size counts once per thread, at its first recipient
            // there (no lookup in the waiting set).
            let first = !touched.contains(&r.key);
            t.waiting.insert(RcptRef { msg: id, idx });
            if first {
                t.octets += size;
                touched.push(r.key.clone());
            }
        }
        for k in &touched {
            self.place(k);
        }
        let all_done = rcpts.iter().all(|r| r.state == RcptState::Done);
        if all_done {
            self.complete.push_back(id);
            return;
        }
        if !touched.is_empty() {
            self.park_candidates.push(id);
        }
        for (idx, e) in last_error {
            if rcpts[idx].state == RcptState::Waiting {
                self.errors.insert(RcptRef { msg: id, idx }, e);
            }
        }
        let m = MsgInfo {
            arrival: env.arrival,
            size,
            rcpts: rcpts.into_boxed_slice(),
        };
        for r in m.rcpts.iter().filter(|r| r.state == RcptState::Waiting) {
            self.lower_expiry(self.expiry_of(&m, r));
            self.lower_expiry(self.report_of(&m, r));
        }
        self.msgs.insert(id, m);
    }

    /// Whether the limits let a ready thread start one more job now.
    fn allowed(&self, key: &ThreadKey, t: &Thread) -> bool {
        let Some(p) = self.params(t.clause) else {
            return false;
        };
        if t.jobs >= p.maxthr.max(1) {
            return false;
        }
        let ring = self.ring(t.clause);
        let under = |limit: u32, used: u32| limit == 0 || used < limit;
        under(
            p.maxchannel,
            self.per_channel.get(&key.channel).copied().unwrap_or(0),
        ) && under(
            p.maxring,
            self.per_ring
                .get(&(ring, key.channel.clone()))
                .copied()
                .unwrap_or(0),
        )
    }

    /// The next job that may start now, if any. Threads whose time came move from
    /// `due` to `ready`; the ready ones are scanned, oldest mail first, only after
    /// an event that may let one start, so a loop turn where nothing changed costs
    /// O(log n).
    pub fn poll_job(&mut self, now: Unix) -> Option<Job> {
        self.last_now = self.last_now.max(now);
        while let Some((at, key)) = self.due.first().cloned() {
            if at > now {
                break;
            }
            self.due.pop_first();
            if let Some(t) = self.threads.get_mut(&key) {
                t.placed = Placed::Nowhere;
            }
            self.place(&key);
        }
        if !self.wake {
            return None;
        }
        if self.conf.maxta != 0 && self.total >= self.conf.maxta {
            // Woken again by the next job_done.
            self.wake = false;
            return None;
        }
        let key = self
            .ready
            .iter()
            .map(|(_, k)| k)
            .find(|k| self.threads.get(*k).is_some_and(|t| self.allowed(k, t)))
            .cloned();
        let Some(key) = key else {
            self.wake = false;
            return None;
        };
        let clause = self.threads[&key].clause;
        let p = self.params(clause)?.clone();
        let transport = p.command.as_ref()?.0.clone();
        let held = p.queueonly || transport == Transport::Hold;
        let t = self.threads.get_mut(&key)?;
        let free = p.maxthr.max(1) - t.jobs;
        // A thread due by its timer sends everything waiting; otherwise only what a
        // release asked for.
        let all = !held && t.wakeup <= now;
        let pool: Vec<RcptRef> = if all {
            t.waiting.iter().copied().collect()
        } else {
            t.released.iter().copied().collect()
        };
        let n = pool.len().div_ceil(free as usize).max(1);
        let mut rcpts: Vec<RcptRef> = Vec::with_capacity(n);
        // Take whole messages so a message's recipients share one transaction.
        let mut i = 0;
        while i < pool.len() && rcpts.len() < n {
            let msg = pool[i].msg;
            while i < pool.len() && pool[i].msg == msg {
                rcpts.push(pool[i]);
                i += 1;
            }
        }
        for r in &rcpts {
            t.unwait(r, self.msgs.get(&r.msg).map_or(0, |m| m.size));
            t.released.remove(r);
        }
        t.jobs += 1;
        let clause = t.clause.unwrap_or(0);
        let ring = self.ring(Some(clause));
        self.total += 1;
        *self.per_channel.entry(key.channel.clone()).or_default() += 1;
        *self
            .per_ring
            .entry((ring, key.channel.clone()))
            .or_default() += 1;
        for r in &rcpts {
            if let Some(m) = self.msgs.get_mut(&r.msg) {
                if let Some(ri) = m.rcpts.get_mut(r.idx) {
                    ri.state = RcptState::Active;
                }
            }
        }
        // What is left (mail that came meanwhile, the rest of a split thread) keeps
        // its place; the scan goes on while it finds startable threads.
        self.place(&key);
        self.wake = true;
        self.next_job += 1;
        let id = JobId(self.next_job);
        self.jobs.insert(id, (key.clone(), clause, rcpts.clone()));
        Some(Job {
            id,
            key: (*key).clone(),
            transport,
            rcpts,
        })
    }

    fn random(&mut self, n: usize) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % n.max(1) as u64) as usize
    }

    /// When [`Scheduler::handle_timeout`] or [`Scheduler::poll_job`] next has work
    /// by the clock: the first wake-up of `due` or the next expiry. Work waiting for a
    /// slot is not a time (it is woken by the job that frees the slot), so after
    /// `poll_job(now)` returns `None` this is always later than `now`. O(log n).
    pub fn poll_timeout(&self) -> Option<Unix> {
        let wake = self.due.first().map(|(at, _)| *at);
        let exp = self.next_expiry();
        match (wake, exp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

mod access;
mod claim;
mod expiry;
mod links;
pub use links::{HeldDest, HeldSum};
pub use release::ReleaseGap;
mod operator;
pub use operator::{QueueOp, Selection};
mod outcome;
mod park;
pub use park::{ACTIVE_LIMIT, MAX_DOMAINS};
mod release;

#[cfg(test)]
mod operator_tests;
#[cfg(test)]
mod park_tests;
#[cfg(test)]
mod tests;
