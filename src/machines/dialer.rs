//! A named link's dialer (DESIGN.md §5.9): up or down, and the dial that brings a
//! down link up. With `LINK_DIAL`, a down link with held mail that meets
//! `LINK_DIAL_WHEN` is dialled once: the command runs and the link must come up
//! within `LINK_DIAL_TIMEOUT`. No second dial while one runs; a failed dial backs
//! off (1 minute, doubling to an hour); the link coming up ends it all.
//!
//! ```text
//!            dial                 link up
//!   Down ───────────▶ Dialing ─────────────▶ Up
//!    ▲                  │ exit ≠ 0,            │
//!    │ until passed     │ deadline             │ link down
//!    │                  ▼                      ▼
//!    └──────────── BackingOff                 Down
//! ```
//!
//! Pure: the daemon spawns and reaps the command and asks the policy; the dialer
//! says what state the link is in, when it must be looked at again, and which
//! command to stop.

use std::time::{Duration, Instant};

/// The first back-off after a failed dial; it doubles up to [`DIAL_BACKOFF_MAX`].
pub const DIAL_BACKOFF: Duration = Duration::from_secs(60);
/// The longest back-off after failed dials.
pub const DIAL_BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// Where a link is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Down, nothing asked of it.
    Down,
    /// A dial runs: `child` is its command while that runs (it may end with 0
    /// before the link comes up), `deadline` when the dial has failed if the link
    /// is not up by then.
    Dialing {
        /// When the dial has failed.
        deadline: Instant,
        /// The dial command, while it runs.
        child: Option<i32>,
        /// `LINK_DIAL_TIMEOUT` (for the failure's words).
        timeout: Duration,
    },
    /// The last dial failed: no dial before `until`.
    BackingOff {
        /// When a dial may start again.
        until: Instant,
    },
    /// Up.
    Up,
}

/// A dial that failed: why, when the next may start, and the command to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// Why, for the log.
    pub why: String,
    /// The back-off.
    pub retry_in: Duration,
    /// The dial command to stop (it outlived its deadline).
    pub terminate: Option<i32>,
}

/// One link's dialer.
#[derive(Debug, Clone)]
pub struct Dialer {
    state: State,
    /// Dials failed in a row (the back-off doubles with each).
    failures: u32,
    /// Dials since start-up.
    dials: u64,
}

impl Default for Dialer {
    fn default() -> Self {
        Dialer {
            state: State::Down,
            failures: 0,
            dials: 0,
        }
    }
}

impl Dialer {
    /// Where the link is.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// Whether a dial runs.
    pub fn dialing(&self) -> bool {
        matches!(self.state, State::Dialing { .. })
    }

    /// Dials since start-up.
    pub fn dials(&self) -> u64 {
        self.dials
    }

    /// The link came up (`etrnd link up`). Returns the dial command still running,
    /// which is left to end by itself (reaped at its SIGCHLD), and whether the link
    /// came up after a dial. The failures and the back-off are forgotten.
    pub fn up(&mut self) -> (Option<i32>, bool) {
        let was = std::mem::replace(&mut self.state, State::Up);
        self.failures = 0;
        match was {
            State::Dialing { child, .. } => (child, true),
            _ => (None, false),
        }
    }

    /// The link went down (`etrnd link down`): false when it was not up.
    pub fn down(&mut self) -> bool {
        if self.state != State::Up {
            return false;
        }
        self.state = State::Down;
        true
    }

    /// Whether a dial may start at `now` (the link is down, no dial runs and no
    /// back-off holds it); the policy (`LINK_DIAL_WHEN`) is asked separately.
    pub fn may_dial(&self, now: Instant) -> bool {
        match self.state {
            State::Down => true,
            State::BackingOff { until } => now >= until,
            State::Dialing { .. } | State::Up => false,
        }
    }

    /// A dial was started: `child` is its command, or the error that kept it from
    /// starting (a failed dial at once).
    pub fn dial_started(
        &mut self,
        child: Result<i32, String>,
        now: Instant,
        timeout: Duration,
    ) -> Option<Failed> {
        self.dials += 1;
        match child {
            Ok(pid) => {
                self.state = State::Dialing {
                    deadline: now + timeout,
                    child: Some(pid),
                    timeout,
                };
                None
            }
            Err(e) => Some(self.fail(format!("the dial command did not start: {e}"), now)),
        }
    }

    /// The dial command ended: `Some(code)` for an exit, `None` for a death by
    /// signal. Exit 0 leaves the dial waiting for the link to come up.
    pub fn child_exited(&mut self, status: Option<i32>, now: Instant) -> Option<Failed> {
        let State::Dialing { child, .. } = &mut self.state else {
            return None;
        };
        *child = None;
        match status {
            Some(0) => None,
            Some(code) => Some(self.fail(format!("the dial command exited {code}"), now)),
            None => Some(self.fail("the dial command was killed".into(), now)),
        }
    }

    /// The dial's command while it runs.
    pub fn child(&self) -> Option<i32> {
        match self.state {
            State::Dialing { child, .. } => child,
            _ => None,
        }
    }

    /// The clock: a dial past its deadline has failed (its command is to be
    /// stopped).
    pub fn tick(&mut self, now: Instant) -> Option<Failed> {
        match self.state {
            State::Dialing {
                deadline, timeout, ..
            } if now >= deadline => Some(self.fail(
                format!("the link did not come up within {} s", timeout.as_secs()),
                now,
            )),
            _ => None,
        }
    }

    /// When the dialer must be looked at again by the clock.
    pub fn wake_at(&self) -> Option<Instant> {
        match self.state {
            State::Dialing { deadline, .. } => Some(deadline),
            State::BackingOff { until } => Some(until),
            State::Down | State::Up => None,
        }
    }

    fn fail(&mut self, why: String, now: Instant) -> Failed {
        let terminate = self.child();
        self.failures = self.failures.saturating_add(1);
        let retry_in = DIAL_BACKOFF
            .saturating_mul(1 << (self.failures - 1).min(6))
            .min(DIAL_BACKOFF_MAX);
        self.state = State::BackingOff {
            until: now + retry_in,
        };
        Failed {
            why,
            retry_in,
            terminate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(90);

    fn dialing(now: Instant) -> Dialer {
        let mut d = Dialer::default();
        assert!(d.may_dial(now));
        assert_eq!(d.dial_started(Ok(42), now, T), None);
        d
    }

    #[test]
    fn a_link_starts_down_and_may_dial() {
        let d = Dialer::default();
        let now = Instant::now();
        assert_eq!(d.state(), &State::Down);
        assert!(!d.is_up() && !d.dialing() && d.may_dial(now));
        assert_eq!(d.wake_at(), None);
    }

    #[test]
    fn down_then_up_then_down() {
        let mut d = Dialer::default();
        assert!(!d.down(), "already down");
        assert_eq!(d.up(), (None, false));
        assert!(d.is_up() && !d.may_dial(Instant::now()));
        assert!(d.down());
        assert_eq!(d.state(), &State::Down);
    }

    #[test]
    fn dialing_waits_for_its_deadline_and_no_second_dial_starts() {
        let now = Instant::now();
        let mut d = dialing(now);
        assert_eq!(d.dials(), 1);
        assert!(d.dialing() && !d.may_dial(now));
        assert_eq!(d.child(), Some(42));
        assert_eq!(d.wake_at(), Some(now + T));
        assert_eq!(d.tick(now + T - Duration::from_secs(1)), None);
        // Exit 0: the command did its part; the link must still come up.
        assert_eq!(d.child_exited(Some(0), now), None);
        assert_eq!(d.child(), None);
        assert!(d.dialing());
    }

    #[test]
    fn the_link_coming_up_during_a_dial_ends_it_and_its_failures() {
        let now = Instant::now();
        let mut d = dialing(now);
        assert_eq!(d.up(), (Some(42), true));
        assert!(d.is_up());
        assert_eq!(d.tick(now + T * 10), None);
    }

    #[test]
    fn the_link_coming_up_forgets_the_failures_before() {
        let mut now = Instant::now();
        let mut d = Dialer::default();
        for want in [60, 120] {
            let f = d.dial_started(Err("no such file".into()), now, T).unwrap();
            assert_eq!(f.retry_in.as_secs(), want);
            now += f.retry_in;
        }
        // Backing off, then up by hand: the back-off is gone with the failures.
        assert_eq!(d.up(), (None, false));
        assert!(d.down());
        assert!(d.may_dial(now));
        let f = d.dial_started(Err("no such file".into()), now, T).unwrap();
        assert_eq!(f.retry_in, DIAL_BACKOFF);
    }

    #[test]
    fn a_failed_exit_backs_off() {
        let now = Instant::now();
        let mut d = dialing(now);
        let f = d.child_exited(Some(3), now).unwrap();
        assert_eq!(f.why, "the dial command exited 3");
        assert_eq!((f.retry_in, f.terminate), (DIAL_BACKOFF, None));
        assert_eq!(
            d.state(),
            &State::BackingOff {
                until: now + DIAL_BACKOFF
            }
        );
        assert!(!d.may_dial(now + DIAL_BACKOFF - Duration::from_secs(1)));
        assert!(d.may_dial(now + DIAL_BACKOFF));
        assert_eq!(d.wake_at(), Some(now + DIAL_BACKOFF));
    }

    #[test]
    fn a_killed_command_backs_off() {
        let now = Instant::now();
        let mut d = dialing(now);
        let f = d.child_exited(None, now).unwrap();
        assert_eq!(f.why, "the dial command was killed");
    }

    #[test]
    fn a_deadline_passed_stops_the_command_and_backs_off() {
        let now = Instant::now();
        let mut d = dialing(now);
        let f = d.tick(now + T).unwrap();
        assert_eq!(f.why, "the link did not come up within 90 s");
        assert_eq!(f.terminate, Some(42));
        assert!(matches!(d.state(), State::BackingOff { .. }));
        // A late exit of the stopped command changes nothing.
        assert_eq!(d.child_exited(Some(1), now + T), None);
    }

    #[test]
    fn the_back_off_doubles_to_an_hour() {
        let mut now = Instant::now();
        let mut d = Dialer::default();
        let mut seen = Vec::new();
        for _ in 0..9 {
            assert!(d.may_dial(now));
            let f = d.dial_started(Err("x".into()), now, T).unwrap();
            seen.push(f.retry_in.as_secs());
            now += f.retry_in;
        }
        assert_eq!(seen, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(d.dials(), 9);
    }

    #[test]
    fn exits_and_ticks_outside_a_dial_are_ignored() {
        let now = Instant::now();
        let mut d = Dialer::default();
        assert_eq!(d.child_exited(Some(1), now), None);
        assert_eq!(d.tick(now), None);
        d.up();
        assert_eq!(d.child_exited(None, now), None);
        assert!(d.is_up());
    }
}
