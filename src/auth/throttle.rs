//! How AUTH failures are slowed and guessing is bounded (DESIGN.md §5.1,
//! reference/bad-input.md K97). Pure: no socket, no clock of its own.
//!
//! * Each failure is slowed: the reply waits 1 s, doubled for each earlier failure
//!   within the hour from the same address or for the same name, at most
//!   [`MAX_DELAY`].
//! * Each identity has a budget of [`IDENTITY_BUDGET`] failures an hour, whatever
//!   the number of addresses they come from; a check counts against it from the
//!   moment it is admitted (and is given back if it succeeds), so guesses sent at
//!   once on many connections cannot all slip in before the first one fails. Past it, AUTH for that identity is
//!   answered 454 4.7.0 without being checked — so no answer, and no time, tells a
//!   right password from a wrong one — except from the network where it
//!   authenticated in the last [`TRUST_FOR`] (its /24, or /48 for IPv6: a dial-up
//!   customer's next address is usually in the same pool) and from `MYNETWORKS`,
//!   so its user is not locked out from where they work.
//! * Every table is bounded and full ones lose their oldest entry, never all of
//!   them; identities the secrets file knows are kept before names that are only
//!   guessed, so a flood of fresh user names cannot flush an identity's count.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

/// How long failures count.
pub const WINDOW: u64 = 3600;
/// Failures an identity may have within [`WINDOW`] before it is locked.
pub const IDENTITY_BUDGET: u32 = 10;
/// How long a successful login keeps its address exempt from the lock.
pub const TRUST_FOR: u64 = 30 * 86_400;
/// The longest wait before a failure's reply.
pub const MAX_DELAY: Duration = Duration::from_secs(16);
/// Most entries of each table.
pub const MAX_ENTRIES: usize = 10_000;

/// Whether a check may be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Check it.
    Check,
    /// The identity is past its budget: answer 454 without checking.
    Locked,
}

/// A bounded map whose fullness costs its oldest entry (by last update), and, when
/// `keep` says so, prefers to lose entries `keep` does not protect.
#[derive(Debug)]
struct Table<K> {
    map: HashMap<K, Entry>,
    /// (last update, sequence, key): oldest first.
    order: BTreeSet<(u64, u64, K)>,
    seq: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    count: u32,
    first: u64,
    last: u64,
    seq: u64,
    protected: bool,
}

impl<K: Clone + Ord + std::hash::Hash> Default for Table<K> {
    fn default() -> Self {
        Table {
            map: HashMap::new(),
            order: BTreeSet::new(),
            seq: 0,
        }
    }
}

impl<K: Clone + Ord + std::hash::Hash> Table<K> {
    /// Failures of `k` still within the window at `now`.
    fn count(&self, k: &K, now: u64) -> u32 {
        self.map
            .get(k)
            .filter(|e| now.saturating_sub(e.first) < WINDOW)
            .map_or(0, |e| e.count)
    }

    fn last(&self, k: &K) -> Option<u64> {
        self.map.get(k).map(|e| e.last)
    }

    /// Counts one more for `k` at `now` (a new window if the old one is over).
    fn bump(&mut self, k: &K, now: u64, protected: bool) {
        let old = self.map.get(k).copied();
        let mut e = match old {
            Some(e) if now.saturating_sub(e.first) < WINDOW => e,
            _ => Entry {
                count: 0,
                first: now,
                last: now,
                seq: 0,
                protected,
            },
        };
        e.count = e.count.saturating_add(1);
        self.touch(k, e, now, protected);
    }

    /// Takes back one count of `k` (a check that did not fail).
    fn unbump(&mut self, k: &K) {
        if let Some(e) = self.map.get_mut(k) {
            e.count = e.count.saturating_sub(1);
        }
    }

    /// Marks `k` as one the secrets file knows (kept before guessed names).
    fn protect(&mut self, k: &K) {
        if let Some(e) = self.map.get_mut(k) {
            e.protected = true;
        }
    }

    /// Notes `k` at `now` without counting (a success).
    fn note(&mut self, k: &K, now: u64) {
        let e = self.map.get(k).copied().unwrap_or(Entry {
            count: 0,
            first: now,
            last: now,
            seq: 0,
            protected: false,
        });
        self.touch(k, e, now, false);
    }

    fn touch(&mut self, k: &K, mut e: Entry, now: u64, protected: bool) {
        if let Some(old) = self.map.get(k) {
            self.order.remove(&(old.last, old.seq, k.clone()));
        } else if self.map.len() >= MAX_ENTRIES {
            self.evict();
        }
        self.seq += 1;
        e.last = now;
        e.seq = self.seq;
        e.protected |= protected;
        self.order.insert((e.last, e.seq, k.clone()));
        self.map.insert(k.clone(), e);
    }

    /// Drops the oldest unprotected entry, or the oldest of all when every one is
    /// protected.
    fn evict(&mut self) {
        let victim = self
            .order
            .iter()
            .find(|(_, _, k)| self.map.get(k).is_some_and(|e| !e.protected))
            .or_else(|| self.order.iter().next())
            .cloned();
        if let Some(v) = victim {
            self.order.remove(&v);
            self.map.remove(&v.2);
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The failure counts and the exemptions.
#[derive(Debug, Default)]
pub struct Throttle {
    by_addr: Table<IpAddr>,
    by_name: Table<String>,
    /// The networks where each identity last authenticated ([`network`]).
    trusted: Table<(String, IpAddr)>,
}

/// The network an address is trusted with: its /24, or its /48 for IPv6.
pub fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a) & 0xffff_ff00)),
        IpAddr::V6(a) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(a) & !((1u128 << 80) - 1),
        )),
    }
}

/// How a check ended, as the throttle takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The secret was right.
    Ok,
    /// Wrong, for an identity the secrets file has.
    Wrong,
    /// No such identity.
    Unknown,
    /// Not checked (the auth helper was gone).
    Unavailable,
}

impl Throttle {
    /// Whether `user` from `ip` is checked at all; `exempt`: the client is in
    /// `MYNETWORKS`. An admitted check counts as a failure until
    /// [`Throttle::checked`] says otherwise.
    pub fn admit(&mut self, user: &str, ip: IpAddr, exempt: bool, now: u64) -> Admit {
        let name = user.to_string();
        let locked = !exempt
            && self.by_name.count(&name, now) >= IDENTITY_BUDGET
            && self
                .trusted
                .last(&(name.clone(), network(ip)))
                .is_none_or(|t| now.saturating_sub(t) >= TRUST_FOR);
        if locked {
            return Admit::Locked;
        }
        self.by_addr.bump(&ip, now, false);
        self.by_name.bump(&name, now, false);
        Admit::Check
    }

    /// An admitted check of `user` from `ip` ended: a failure's reply waits the
    /// duration returned (1 s doubled per earlier failure of either, at most
    /// [`MAX_DELAY`]); anything else gives its count back.
    pub fn checked(&mut self, user: &str, ip: IpAddr, how: Checked, now: u64) -> Duration {
        let name = user.to_string();
        match how {
            Checked::Wrong | Checked::Unknown => {
                if how == Checked::Wrong {
                    self.by_name.protect(&name);
                }
                let before = self
                    .by_addr
                    .count(&ip, now)
                    .max(self.by_name.count(&name, now))
                    .saturating_sub(1);
                Duration::from_secs(1 << before.min(4)).min(MAX_DELAY)
            }
            Checked::Ok | Checked::Unavailable => {
                self.by_addr.unbump(&ip);
                self.by_name.unbump(&name);
                if how == Checked::Ok {
                    self.trusted.note(&(name, network(ip)), now);
                }
                Duration::ZERO
            }
        }
    }

    /// Entries held, all tables.
    pub fn len(&self) -> usize {
        self.by_addr.len() + self.by_name.len() + self.trusted.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    /// An admitted check that ended `how` (admission is asserted).
    fn fail(t: &mut Throttle, user: &str, ip: IpAddr, how: Checked, now: u64) -> Duration {
        if t.admit(user, ip, false, now) == Admit::Locked {
            return Duration::ZERO;
        }
        t.checked(user, ip, how, now)
    }

    #[test]
    fn checks_sent_at_once_count_before_their_verdicts() {
        let mut t = Throttle::default();
        let now = 7_000_000;
        let admitted = (0..60)
            .filter(|i| t.admit("cust", ip(*i), false, now) == Admit::Check)
            .count();
        assert_eq!(admitted, IDENTITY_BUDGET as usize);
        // The right password from the identity's own address gives its count back.
        let mut t = Throttle::default();
        for _ in 0..3 {
            fail(&mut t, "cust", ip(1), Checked::Ok, now);
        }
        assert_eq!(t.by_name.count(&"cust".to_string(), now), 0);
    }

    #[test]
    fn failures_from_rotating_addresses_lock_the_identity_after_its_budget() {
        let mut t = Throttle::default();
        let now = 1_000_000;
        for i in 0..IDENTITY_BUDGET {
            assert_eq!(t.admit("cust", ip(i), false, now), Admit::Check);
            t.checked("cust", ip(i), Checked::Wrong, now);
        }
        // A new address, a new guess: not even checked.
        assert_eq!(t.admit("cust", ip(999), false, now), Admit::Locked);
        // MYNETWORKS is exempt; other identities are not affected.
        assert_eq!(t.admit("cust", ip(999), true, now), Admit::Check);
        assert_eq!(t.admit("other", ip(999), false, now), Admit::Check);
        // An hour later the budget is back.
        assert_eq!(t.admit("cust", ip(999), false, now + WINDOW), Admit::Check);
    }

    #[test]
    fn an_address_where_the_identity_logged_in_stays_open_while_it_is_locked() {
        let mut t = Throttle::default();
        let now = 2_000_000;
        fail(&mut t, "cust", ip(1), Checked::Ok, now - 86_400);
        for i in 0..2 * IDENTITY_BUDGET {
            fail(&mut t, "cust", ip(100 + i), Checked::Wrong, now);
        }
        assert_eq!(t.admit("cust", ip(1), false, now), Admit::Check);
        // Its neighbour in the same /24 too (a dial-up pool), not another network.
        assert_eq!(t.admit("cust", ip(2), false, now), Admit::Check);
        assert_eq!(t.admit("cust", ip(1 << 8), false, now), Admit::Locked);
        // Not after the trust has run out.
        let later = now - 86_400 + TRUST_FOR;
        for i in 0..IDENTITY_BUDGET {
            fail(&mut t, "cust", ip(100 + i), Checked::Wrong, later);
        }
        assert_eq!(t.admit("cust", ip(1), false, later), Admit::Locked);
    }

    #[test]
    fn failures_wait_longer_each_time_up_to_the_cap() {
        let mut t = Throttle::default();
        let waits: Vec<u64> = (0..7)
            .map(|_| fail(&mut t, "x", ip(1), Checked::Unknown, 5).as_secs())
            .collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 16, 16]);
    }

    #[test]
    fn a_flood_of_fresh_names_cannot_flush_a_known_identity() {
        let mut t = Throttle::default();
        let now = 3_000_000;
        for i in 0..IDENTITY_BUDGET {
            fail(&mut t, "cust", ip(i), Checked::Wrong, now);
        }
        for i in 0..3 * MAX_ENTRIES as u32 {
            fail(
                &mut t,
                &format!("fresh{i}"),
                ip(i % 50),
                Checked::Unknown,
                now + 1,
            );
        }
        assert!(t.len() <= 3 * MAX_ENTRIES);
        assert_eq!(t.admit("cust", ip(7777), false, now + 2), Admit::Locked);
    }

    #[test]
    fn full_tables_lose_their_oldest_entry_only() {
        let mut t = Table::<u32>::default();
        for k in 0..MAX_ENTRIES as u32 {
            t.bump(&k, u64::from(k), false);
        }
        t.bump(&999_999, 99_999, false);
        assert_eq!(t.len(), MAX_ENTRIES);
        assert_eq!(t.count(&0, 100), 0, "the oldest went");
        assert_eq!(t.count(&1, 100), 1, "the next stayed");
    }
}
