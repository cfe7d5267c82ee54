//! The control desk: who may hold how many control connections and make how many
//! requests. Pure decisions, no socket (the loop keeps those).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::smtp::reply::Reply;

/// Most control connections open at once.
pub const MAX_CONNS: usize = 64;
/// Of those, kept for root and the daemon's user (the ppp hooks, the operator):
/// other uids together never hold more than `MAX_CONNS - RESERVED`.
pub const RESERVED: usize = 8;
/// Most control connections of one uid open at once.
pub const MAX_CONNS_PER_UID: usize = 8;
/// Requests a uid other than root's and the daemon's may make at once…
pub const BURST: u32 = 30;
/// …and per second after that.
pub const PER_SECOND: u32 = 5;
/// Most uids the desk remembers (each has at most a few seconds of history).
const MAX_UIDS: usize = 1024;

/// Who asks: the uid the kernel gave, and whether it is root or the daemon's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester {
    /// The peer's uid from the kernel.
    pub uid: u32,
    /// Root or the daemon's own user.
    pub privileged: bool,
}

impl Requester {
    /// The requester with uid `uid`, for a daemon running as `euid`.
    pub fn new(uid: u32, euid: u32) -> Requester {
        Requester {
            uid,
            privileged: uid == 0 || uid == euid,
        }
    }
}

/// The control desk: how many connections and requests each uid may have. Pure
/// decisions; the loop keeps the sockets.
#[derive(Debug, Default)]
pub struct Desk {
    uids: HashMap<u32, UidUse>,
    open: usize,
    /// Connections open of uids other than root's and the daemon's.
    open_unprivileged: usize,
    /// When a refusal of a connection, and of a request, was last logged (a flood
    /// is logged once per [`LOG_EVERY`]).
    logged: [Option<Instant>; 2],
}

/// How often refusals of a flood are logged.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct UidUse {
    open: usize,
    /// Requests left in the bucket, and when it was last filled.
    tokens: u32,
    filled: Instant,
}

impl Desk {
    /// A connection from `who`: admitted, or the refusal it gets before it closes.
    pub fn connect(&mut self, who: Requester, now: Instant) -> Result<(), Reply> {
        if self.open >= MAX_CONNS
            || (!who.privileged && self.open_unprivileged >= MAX_CONNS - RESERVED)
        {
            return Err(Reply::new(
                421,
                "4.7.0 too many control connections, try again".into(),
            ));
        }
        if !self.uids.contains_key(&who.uid) && self.uids.len() >= MAX_UIDS {
            // Forget a uid with nothing open and a full bucket (it has no history
            // worth keeping); if none, refuse rather than forget a limit.
            let now_full = |u: &UidUse| u.open == 0 && refill(u.tokens, u.filled, now) >= BURST;
            let idle = self.uids.iter().find(|(_, u)| now_full(u)).map(|(k, _)| *k);
            match idle {
                Some(k) => {
                    self.uids.remove(&k);
                }
                None => {
                    return Err(Reply::new(
                        421,
                        "4.7.0 too many control requesters, try again".into(),
                    ))
                }
            }
        }
        let u = self.uids.entry(who.uid).or_insert(UidUse {
            open: 0,
            tokens: BURST,
            filled: now,
        });
        if u.open >= MAX_CONNS_PER_UID {
            return Err(Reply::new(
                421,
                format!(
                    "4.7.0 uid {} has too many control connections open",
                    who.uid
                ),
            ));
        }
        u.open += 1;
        self.open += 1;
        if !who.privileged {
            self.open_unprivileged += 1;
        }
        Ok(())
    }

    /// A request from `who`: allowed, or refused for its rate. Root and the
    /// daemon's user are not rate limited (their connections are still counted).
    pub fn request(&mut self, who: Requester, now: Instant) -> Result<(), Reply> {
        if who.privileged {
            return Ok(());
        }
        let Some(u) = self.uids.get_mut(&who.uid) else {
            return Err(Reply::new(421, "4.7.0 not connected".into()));
        };
        let secs = now.saturating_duration_since(u.filled).as_secs();
        u.tokens = refill(u.tokens, u.filled, now);
        // Whole seconds only move the clock on: a requester asking every half
        // second still earns its tokens.
        u.filled += Duration::from_secs(secs);
        if u.tokens == 0 {
            return Err(Reply::new(
                421,
                format!(
                    "4.7.0 uid {} sends too many control requests, try again later",
                    who.uid
                ),
            ));
        }
        u.tokens -= 1;
        Ok(())
    }

    /// A connection of `who` closed.
    pub fn closed(&mut self, who: Requester) {
        let uid = who.uid;
        self.open = self.open.saturating_sub(1);
        if !who.privileged {
            self.open_unprivileged = self.open_unprivileged.saturating_sub(1);
        }
        if let Some(u) = self.uids.get_mut(&uid) {
            u.open = u.open.saturating_sub(1);
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
    }

    /// Whether a refusal now is logged (the first, then one per [`LOG_EVERY`]), of
    /// a request (`request`) or of a connection.
    pub fn log_refusal(&mut self, request: bool, now: Instant) -> bool {
        let last = &mut self.logged[usize::from(request)];
        if last.is_some_and(|t| now < t + LOG_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// The bucket `tokens`, last filled at `filled`, filled up to `now`.
fn refill(tokens: u32, filled: Instant, now: Instant) -> u32 {
    let secs = now.saturating_duration_since(filled).as_secs();
    let add = secs.saturating_mul(u64::from(PER_SECOND));
    (u64::from(tokens) + add).min(u64::from(BURST)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32) -> Requester {
        Requester::new(uid, 500)
    }

    #[test]
    fn desk_connect_past_the_per_uid_limit_is_refused_and_closing_frees_a_slot() {
        let mut d = Desk::default();
        let now = Instant::now();
        for _ in 0..MAX_CONNS_PER_UID {
            assert!(d.connect(user(1000), now).is_ok());
        }
        assert_eq!(d.connect(user(1000), now).unwrap_err().code, 421);
        // Another uid is not affected.
        assert!(d.connect(user(1001), now).is_ok());
        d.closed(user(1000));
        assert!(d.connect(user(1000), now).is_ok());
        assert_eq!(d.open(), MAX_CONNS_PER_UID + 1);
    }

    #[test]
    fn desk_connect_past_the_total_is_refused_but_root_keeps_its_reserve() {
        let mut d = Desk::default();
        let now = Instant::now();
        for uid in 0..(MAX_CONNS - RESERVED) as u32 {
            assert!(d.connect(user(2000 + uid), now).is_ok());
        }
        // Other users are refused; root still gets in.
        assert_eq!(d.connect(user(9999), now).unwrap_err().code, 421);
        let root = Requester::new(0, 500);
        for _ in 0..RESERVED {
            assert!(d.connect(root, now).is_ok());
        }
        // Now the total is full: nobody else.
        assert_eq!(
            d.connect(Requester::new(500, 500), now).unwrap_err().code,
            421
        );
        d.closed(user(2000));
        assert!(d.connect(user(9999), now).is_ok());
    }

    #[test]
    fn desk_request_every_half_second_is_within_the_rate() {
        let mut d = Desk::default();
        let t0 = Instant::now();
        d.connect(user(1000), t0).unwrap();
        for i in 0..200u64 {
            let at = t0 + Duration::from_millis(500 * i);
            assert!(d.request(user(1000), at).is_ok(), "request {i}");
        }
    }

    #[test]
    fn desk_request_burst_then_rate_then_refill() {
        let mut d = Desk::default();
        let t0 = Instant::now();
        d.connect(user(1000), t0).unwrap();
        for _ in 0..BURST {
            assert!(d.request(user(1000), t0).is_ok());
        }
        let r = d.request(user(1000), t0).unwrap_err();
        assert_eq!(r.code, 421);
        assert!(r.to_string().contains("uid 1000"), "{r}");
        // One second later: PER_SECOND more.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..PER_SECOND {
            assert!(d.request(user(1000), t1).is_ok());
        }
        assert!(d.request(user(1000), t1).is_err());
        // Long after: a full bucket, never more.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..BURST {
            assert!(d.request(user(1000), t2).is_ok());
        }
        assert!(d.request(user(1000), t2).is_err());
    }

    #[test]
    fn desk_request_from_root_or_the_daemon_user_is_not_rate_limited() {
        let mut d = Desk::default();
        let now = Instant::now();
        for who in [Requester::new(0, 500), Requester::new(500, 500)] {
            assert!(who.privileged);
            d.connect(who, now).unwrap();
            for _ in 0..10 * BURST {
                assert!(d.request(who, now).is_ok());
            }
        }
        assert!(!Requester::new(1000, 500).privileged);
    }

    #[test]
    fn desk_forgets_idle_uids_but_never_a_limit_in_force() {
        let mut d = Desk::default();
        let t0 = Instant::now();
        // MAX_UIDS requesters, each connected once and gone again.
        for uid in 0..MAX_UIDS as u32 {
            d.connect(user(10_000 + uid), t0).unwrap();
            d.request(user(10_000 + uid), t0).unwrap();
            d.closed(user(10_000 + uid));
        }
        // Their buckets are not full yet: a new uid is refused, not let in by
        // forgetting someone's rate.
        assert!(d.connect(user(1), t0).is_err());
        // Once they have refilled, the oldest history can go.
        let later = t0 + Duration::from_secs(60);
        assert!(d.connect(user(1), later).is_ok());
    }

    #[test]
    fn desk_logs_a_flood_once_per_window_and_kind() {
        let mut d = Desk::default();
        let t0 = Instant::now();
        assert!(d.log_refusal(true, t0));
        assert!(!d.log_refusal(true, t0 + Duration::from_secs(1)));
        assert!(d.log_refusal(false, t0));
        assert!(d.log_refusal(true, t0 + LOG_EVERY));
    }
}
