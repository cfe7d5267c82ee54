//! Moving held mail between memory and the hold store (`spool::held`,
//! `sched::park`): parking what may wait on disk, loading back what a release, an
//! ATRN claim, a queue command or a due time concerns, and, at start-up, the
//! per-destination summaries from the indexes (or a rebuild from `hold/`).

use super::Core;
use crate::sched::{Scheduler, ThreadKey, Unix};
use crate::store::spool::held::{index_name, IndexEntry};
use crate::store::spool::{MessageId, Spool};

/// Most messages one release loads from a destination's index in one go; the rest
/// follow as the first ones leave memory ([`Core::page_in_released`]).
pub const PAGE_IN_MAX: usize = 1_000;
/// The first chunk of a release: small, so the first connection starts after a
/// few reads from a cold disk; the next chunks follow at once, while it runs.
pub const FIRST_CHUNK: usize = 5;
/// Most messages an ATRN loads from one destination (the rest waits for the next
/// ATRN).
pub const CLAIM_MAX: usize = 10_000;

/// A destination whose release goes on from disk: the recipient domains it covers
/// there (`None`: all of them) and how far its index has been read (an offset into
/// the file with that inode; a rewrite meanwhile starts the reading again).
pub type Releasing = (ThreadKey, Option<Vec<String>>, (u64, u64));

fn index_ino(spool: &Spool, key: &ThreadKey) -> u64 {
    index_name(&key.channel, &key.host).map_or(0, |n| spool.index_ino(&n))
}

/// Lines read from an index at a time.
const INDEX_BLOCK: usize = 4096;

/// Before a release: loads the first chunk of parked mail of every destination
/// `pick` may select (only the domains it covers). Returns the destinations with
/// such mail still parked (their release goes on chunk by chunk, reading the index
/// on from where it stopped) and how many messages of it stay on disk for now.
pub(super) fn page_in_release(
    spool: &mut Spool,
    sched: &mut Scheduler,
    now: Unix,
    mut pick: impl FnMut(&ThreadKey, &str) -> bool,
) -> (Vec<Releasing>, usize) {
    let mut left = Vec::new();
    let mut later = 0;
    for key in sched.parked_matching(&mut pick) {
        // The whole destination, or the domains the release names.
        let domains = match sched.parked_domains(&key) {
            Some(all) if !pick(&key, "") => {
                Some(all.into_iter().filter(|d| pick(&key, d)).collect())
            }
            _ => None,
        };
        let covered = |_: &Scheduler, e: &IndexEntry| covers(&domains, &e.domain);
        let total = match &domains {
            None => sched.parked_count(&key) as usize,
            Some(_) => count_parked(spool, sched, &key, covered),
        };
        let (loaded, offset, done) = load_from(spool, sched, &key, now, 0, FIRST_CHUNK, covered);
        if done {
            compact(spool, sched, &key, domains.is_none());
        } else {
            later += total.saturating_sub(loaded);
            let ino = index_ino(spool, &key);
            left.push((key, domains, (offset, ino)));
        }
    }
    (left, later)
}

fn covers(domains: &Option<Vec<String>>, domain: &str) -> bool {
    domains
        .as_ref()
        .is_none_or(|l| l.iter().any(|d| d == domain))
}

/// How many messages of `key` parked on disk `want` covers (read as a stream).
fn count_parked(
    spool: &Spool,
    sched: &Scheduler,
    key: &ThreadKey,
    want: impl Fn(&Scheduler, &IndexEntry) -> bool,
) -> usize {
    let Some(name) = index_name(&key.channel, &key.host) else {
        return 0;
    };
    let (mut n, mut at) = (0, 0);
    loop {
        let (entries, next, end) = spool.read_index_from(&name, at, INDEX_BLOCK);
        n += entries
            .iter()
            .filter(|(e, _)| want(sched, e) && !sched.has_message(e.id))
            .count();
        if end {
            return n;
        }
        at = next;
    }
}

/// Loads up to `max` parked messages of `key` that `want` covers, reading its
/// index from `offset` on; the summary no longer counts them. Returns how many were
/// loaded, where the next read starts, and whether the index was read to its end.
fn load_from(
    spool: &mut Spool,
    sched: &mut Scheduler,
    key: &ThreadKey,
    now: Unix,
    offset: u64,
    max: usize,
    want: impl Fn(&Scheduler, &IndexEntry) -> bool,
) -> (usize, u64, bool) {
    let Some(name) = index_name(&key.channel, &key.host) else {
        return (0, offset, true);
    };
    let (mut n, mut at) = (0, offset);
    loop {
        let (entries, next, end) = spool.read_index_from(&name, at, INDEX_BLOCK);
        for (e, after) in entries {
            if sched.has_message(e.id) || !want(sched, &e) {
                continue;
            }
            match spool.unpark(e.id) {
                Ok(Some(q)) => {
                    sched.add_sized(q.id, &q.envelope, &q.state, now, q.size);
                    sched.loaded_from(q.id, key);
                    sched.parked_took(key, q.size);
                    n += 1;
                }
                Ok(None) => {}
                Err(why) => {
                    log::warn!("{} spool parked-file-bad reason=\"{why}\"", e.id);
                    sched.parked_took(key, e.size);
                }
            }
            if n >= max {
                log::info!("{key} sched paged-in messages={n}");
                return (n, after, false);
            }
        }
        if end {
            if n > 0 {
                log::info!("{key} sched paged-in messages={n}");
            }
            return (n, next, true);
        }
        at = next;
    }
}

/// After loading: `key`'s index written anew with only what is still parked (not
/// in memory, its file still in `hold/`), and its summary made again from it.
/// After a release of the whole destination read to its end nothing is left
/// (every line was loaded, is in memory, or is gone), so the index goes unread.
fn compact(spool: &mut Spool, sched: &mut Scheduler, key: &ThreadKey, all_taken: bool) {
    let Some(name) = index_name(&key.channel, &key.host) else {
        return;
    };
    let keep: Vec<IndexEntry> = if all_taken {
        Vec::new()
    } else {
        let mut l = spool.read_index(&name);
        l.retain(|e| !sched.has_message(e.id) && spool.is_parked(e.id));
        l
    };
    if let Err(e) = spool.rewrite_index(&name, &keep) {
        log::error!("spool index-write-failed error=\"{e}\"");
    }
    sched.set_parked(key.clone(), &keep);
}

/// Parks every candidate the scheduler named that may wait on disk now.
pub(super) fn park_pending(spool: &mut Spool, sched: &mut Scheduler, now: Unix) {
    let mut ids = sched.take_park_candidates();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        park_one(spool, sched, id, now, false);
    }
    // Past the active limit, deferred mail waiting out a back-off goes too.
    let deferred = sched.deferred_to_park(now);
    if !deferred.is_empty() {
        let n = deferred
            .into_iter()
            .filter(|id| park_one(spool, sched, *id, now, true))
            .count();
        log::info!(
            "sched parked-deferred messages={n} in-memory={}",
            sched.messages()
        );
    }
}

fn park_one(
    spool: &mut Spool,
    sched: &mut Scheduler,
    id: MessageId,
    now: Unix,
    deferred: bool,
) -> bool {
    let Some(entries) = sched.parkable(id, now, deferred) else {
        return false;
    };
    let named: Option<Vec<(String, IndexEntry)>> = entries
        .iter()
        .map(|(k, e)| index_name(&k.channel, &k.host).map(|n| (n, e.clone())))
        .collect();
    // A destination too long to name a file after keeps its mail in memory.
    let Some(named) = named else {
        return false;
    };
    match spool.park(id, &named) {
        Ok(()) => {
            sched.park(id, &entries);
            true
        }
        Err(e) => {
            // Still in queue/ (or in hold/ with its lines written): loaded at the
            // next start either way; in memory until then.
            log::error!("{id} spool park-failed error=\"{e}\"");
            false
        }
    }
}

/// Loads back the parked messages of `key` that `want` selects (at most `max`);
/// what stays parked is written back as its index and its summary. Returns the
/// number loaded.
pub(super) fn page_in(
    spool: &mut Spool,
    sched: &mut Scheduler,
    key: &ThreadKey,
    now: Unix,
    max: usize,
    want: impl Fn(&Scheduler, &IndexEntry) -> bool,
) -> usize {
    let (n, _, _) = load_from(spool, sched, key, now, 0, max, want);
    compact(spool, sched, key, false);
    n
}

/// Start-up: the summaries from every index (when it can be trusted) or a rebuild
/// of the index from `hold/`; then what was loaded from `queue/` and may wait on
/// disk is parked. Returns (destinations, parked messages, how the index was
/// found: `trusted`, `rebuilt`, or `new` for a spool that never held anything).
pub(super) fn start(
    spool: &mut Spool,
    sched: &mut Scheduler,
    now: Unix,
) -> (usize, u64, &'static str) {
    let untrusted = !spool.index_trusted();
    let fresh = untrusted && spool.hold_is_empty();
    let rebuilt = untrusted && !fresh;
    if untrusted {
        if rebuilt {
            log::warn!("spool index-rebuild reason=\"not known to be complete\"");
        }
        if let Err(e) = spool.clear_index() {
            log::error!("spool index-rebuild-failed error=\"{e}\"");
        }
        let r = spool.for_each_parked(|q| {
            sched.add_sized(q.id, &q.envelope, &q.state, now, q.size);
        });
        if let Err(e) = r {
            log::error!("spool index-rebuild-failed error=\"{e}\"");
        }
        // Parked again where they are; what may no longer wait on disk (its route
        // changed) goes back to queue/ and stays in memory.
        let ids = sched.take_park_candidates();
        for id in ids {
            if !park_one(spool, sched, id, now, false) && spool.is_parked(id) {
                let _ = spool.unpark(id);
            }
        }
    } else {
        sched.load_index(spool);
    }
    park_pending(spool, sched, now);
    if let Err(e) = spool.mark_index(false) {
        log::error!("spool index-mark-failed error=\"{e}\"");
    }
    let dests = sched.parked_matching(|_, _| true).len();
    let how = match (fresh, rebuilt) {
        (true, _) => "new",
        (_, true) => "rebuilt",
        _ => "trusted",
    };
    (dests, sched.parked_messages(), how)
}

impl Core {
    /// Parks this turn's candidates.
    pub(super) fn park_candidates(&mut self) {
        park_pending(&mut self.spool, &mut self.sched, self.time.unix);
    }

    /// Loads the parked mail of every destination `pick` may select (before a
    /// release, an ATRN claim, a queue command by domain): in memory, the usual
    /// rules decide.
    pub(super) fn page_in_matching(&mut self, pick: impl FnMut(&ThreadKey, &str) -> bool) {
        let keys = self.sched.parked_matching(pick);
        self.page_in_chunks(keys);
    }

    /// The first chunk of each of these destinations; whether anything was loaded.
    fn page_in_chunks(&mut self, keys: Vec<ThreadKey>) -> bool {
        let mut any = false;
        for key in keys {
            let (spool, sched) = (&mut self.spool, &mut self.sched);
            any |= page_in(spool, sched, &key, self.time.unix, PAGE_IN_MAX, |_, _| true) > 0;
        }
        any
    }

    /// The next chunk of each destination being released, once less than half a
    /// chunk of what was released before waits (mail of the domains the release
    /// covered, including what arrived meanwhile).
    pub(super) fn page_in_released(&mut self) {
        if self.releasing.is_empty() {
            return;
        }
        let all = std::mem::take(&mut self.releasing);
        for (key, domains, (offset, ino)) in all {
            if self.releasing.iter().any(|(k, _, _)| *k == key) {
                continue;
            }
            if self.sched.released_waiting(&key) > PAGE_IN_MAX / 2 {
                self.releasing.push((key, domains, (offset, ino)));
                continue;
            }
            // Rewritten meanwhile (an expiry, a queue command): read it again from
            // the start; what was loaded is in memory and skipped.
            let now_ino = index_ino(&self.spool, &key);
            let offset = if now_ino == ino { offset } else { 0 };
            let covered = |_: &Scheduler, e: &IndexEntry| covers(&domains, &e.domain);
            let (spool, sched) = (&mut self.spool, &mut self.sched);
            let (n, next, done) = load_from(
                spool,
                sched,
                &key,
                self.time.unix,
                offset,
                PAGE_IN_MAX,
                covered,
            );
            // A chunk follows the first one's fate: once an attempt at the destination
            // failed (its release gap), the rest waits on disk for its own retry
            // instead of being tried again at once, chunk after chunk.
            let gapped = n > 0
                && self
                    .sched
                    .release_at(|k, d| *k == key && covers(&domains, d), self.time.unix)
                    .not_before
                    .is_some();
            if done {
                compact(&mut self.spool, &mut self.sched, &key, domains.is_none());
            } else if !gapped {
                self.releasing.push((key, domains, (next, now_ino)));
            }
        }
    }

    /// Deferred destinations whose time came, their parked mail loaded (a chunk;
    /// the rest when that is done). Returns whether anything was loaded.
    pub(super) fn page_in_wanted(&mut self) -> bool {
        let keys = self.sched.take_page_in_wanted();
        self.page_in_chunks(keys)
    }

    /// Before SIGUSR1 or `etrnd flush` without a target: the first chunk of
    /// every deferred destination parked on disk.
    pub(super) fn page_in_unheld(&mut self) {
        let keys = self.sched.parked_unheld();
        self.page_in_chunks(keys);
    }

    /// A clean stop: every destination's summary in one file, so the next start
    /// reads that instead of each index.
    pub(super) fn park_stop(&mut self) {
        let all: Vec<(String, crate::store::spool::held::Summary)> = self
            .sched
            .parked_summaries()
            .into_iter()
            .filter_map(|(k, s)| index_name(&k.channel, &k.host).map(|n| (n, s)))
            .collect();
        if let Err(e) = self.spool.write_summary(&all) {
            log::error!("spool summary-write-failed error=\"{e}\"");
        }
    }

    /// Loads parked messages by id (a queue command naming them).
    pub(super) fn page_in_ids(&mut self, ids: &[MessageId]) {
        let wanted: Vec<MessageId> = ids
            .iter()
            .copied()
            .filter(|id| !self.sched.has_message(*id) && self.spool.is_parked(*id))
            .collect();
        if wanted.is_empty() {
            return;
        }
        for key in self.sched.parked_matching(|_, _| true) {
            page_in(
                &mut self.spool,
                &mut self.sched,
                &key,
                self.time.unix,
                usize::MAX,
                |_, e| wanted.contains(&e.id),
            );
        }
    }

    /// Loads parked messages whose expiry or delay notice came (before the
    /// scheduler's timeout handling).
    pub(super) fn page_in_due(&mut self) {
        let now = self.time.unix;
        for key in self.sched.parked_due(now) {
            page_in(
                &mut self.spool,
                &mut self.sched,
                &key,
                now,
                usize::MAX,
                |s, e| s.entry_due(&key, e).is_some_and(|t| t <= now),
            );
        }
    }
}
