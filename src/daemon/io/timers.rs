//! A deadline queue keyed by connection slot: one deadline per slot, earliest first.

use std::collections::BTreeSet;
use std::time::Instant;

/// Deadlines of connection slots.
#[derive(Debug, Default)]
pub struct Timers {
    queue: BTreeSet<(Instant, usize)>,
    current: Vec<Option<Instant>>,
}

impl Timers {
    /// Sets (or clears) the deadline of `slot`.
    pub fn set(&mut self, slot: usize, at: Option<Instant>) {
        if self.current.len() <= slot {
            self.current.resize(slot + 1, None);
        }
        if self.current[slot] == at {
            return;
        }
        if let Some(old) = self.current[slot] {
            self.queue.remove(&(old, slot));
        }
        if let Some(t) = at {
            self.queue.insert((t, slot));
        }
        self.current[slot] = at;
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.queue.first().map(|&(t, _)| t)
    }

    /// Removes and returns every slot due at `now`.
    pub fn due(&mut self, now: Instant) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some(&(t, slot)) = self.queue.first() {
            if t > now {
                break;
            }
            self.queue.pop_first();
            self.current[slot] = None;
            out.push(slot);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn set_replace_and_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.set(3, Some(t0 + Duration::from_secs(5)));
        t.set(1, Some(t0 + Duration::from_secs(2)));
        t.set(3, Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.due(t0 + Duration::from_secs(3)), vec![3, 1]);
        assert_eq!(t.next(), None);
        t.set(2, Some(t0));
        t.set(2, None);
        assert_eq!(t.next(), None);
    }
}
