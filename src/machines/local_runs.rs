//! Local jobs as a machine (DESIGN.md §5.7): which local delivery starts when.
//! The scheduler hands a local job — one mailbox or one file or command target,
//! many messages — and the loop carries out what this machine says: start the
//! delivery of one recipient, or hand the job's results back. Pure: no socket, no
//! clock, no file.
//!
//! * One delivery at a time per mailbox or target (Postfix's
//!   `local_destination_concurrency_limit` of 1): a job's recipients go one after
//!   the other, and two jobs for the same mailbox never run at once.
//! * At most [`MAX_RUNNING`] deliveries at once in all (each is a process the
//!   helper forks), whatever the clauses allow; the scheduler's `maxchannel` and
//!   `maxring` bound the jobs before that.
//! * A delivery that defers ends its job: the mailbox or target that refused one
//!   message refuses the next (a lock, a directory in its place, a full disk), so
//!   the rest wait untried (no attempt counted, nothing journalled) instead of a
//!   process and a journal record each — a retry of 5,000 messages for a broken
//!   mailbox costs one delivery.
//! * While the helper is being restarted (`pause`), nothing starts.
//!
//! ```text
//!   add(job) --> Queued --poll_action: slot free, mailbox idle--> Running(rcpt)
//!                  ^                                                 |
//!                  '---- done(rcpt, delivered | failed) -------------'
//!   done(rcpt, deferred) or nothing left --> Finished(results) (rest untried)
//! ```

use std::collections::{BTreeMap, HashSet, VecDeque};

use crate::sched::{JobId, RcptRef, RcptResult};

/// Most local deliveries running at once (each a process of the helper's).
pub const MAX_RUNNING: usize = 32;

/// What the loop is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAction {
    /// Start delivering this recipient (the job's mailbox or target).
    Start {
        /// The job.
        job: JobId,
        /// The recipient.
        rcpt: RcptRef,
    },
    /// The job is over: its results go to the scheduler.
    Finished {
        /// The job.
        job: JobId,
        /// Every recipient's result (those a delivery already recorded too).
        results: Vec<(RcptRef, RcptResult)>,
    },
}

#[derive(Debug)]
struct Run {
    /// The mailbox or target (the thread's host).
    target: String,
    rest: VecDeque<RcptRef>,
    running: Option<RcptRef>,
    results: Vec<(RcptRef, RcptResult)>,
    /// Why the rest is not tried (a delivery deferred).
    stop: Option<String>,
}

/// The local jobs in progress.
#[derive(Debug, Default)]
pub struct LocalRuns {
    runs: BTreeMap<JobId, Run>,
    /// Jobs in the order they are looked at for a start (round robin).
    turn: VecDeque<JobId>,
    /// Mailboxes and targets with a delivery running.
    busy: HashSet<String>,
    running: usize,
    paused: bool,
}

impl LocalRuns {
    /// A local job for `target` (its thread's host) with these recipients.
    pub fn add(&mut self, job: JobId, target: &str, rcpts: &[RcptRef]) {
        self.runs.insert(
            job,
            Run {
                target: target.to_string(),
                rest: rcpts.iter().copied().collect(),
                running: None,
                results: Vec::new(),
                stop: None,
            },
        );
        self.turn.push_back(job);
    }

    /// A delivery ended with `result` (the loop has logged and recorded it).
    pub fn done(&mut self, job: JobId, rcpt: RcptRef, result: &RcptResult) {
        let Some(run) = self.runs.get_mut(&job) else {
            return;
        };
        if run.running != Some(rcpt) {
            return;
        }
        run.running = None;
        self.running = self.running.saturating_sub(1);
        self.busy.remove(&run.target);
        if let RcptResult::Deferred(why) = result {
            run.stop = Some(why.clone());
        }
        run.results.push((rcpt, result.clone()));
    }

    /// Holds every start back (the helper is being restarted), or lets them go.
    pub fn pause(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Whether starts are held back.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Deliveries running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Jobs in progress.
    pub fn jobs(&self) -> usize {
        self.runs.len()
    }

    /// Whether a call to [`LocalRuns::poll_action`] would return something now.
    pub fn has_action(&self) -> bool {
        self.runs.values().any(|r| {
            r.running.is_none()
                && (r.rest.is_empty()
                    || r.stop.is_some()
                    || (!self.paused
                        && self.running < MAX_RUNNING
                        && !self.busy.contains(&r.target)))
        })
    }

    /// The next thing to do: a delivery to start (within the limits), or a job
    /// that is over.
    pub fn poll_action(&mut self) -> Option<LocalAction> {
        for _ in 0..self.turn.len() {
            let job = self.turn.pop_front()?;
            let Some(run) = self.runs.get_mut(&job) else {
                continue;
            };
            if run.running.is_some() {
                self.turn.push_back(job);
                continue;
            }
            if let Some(why) = &run.stop {
                // The rest waits untried; the job is over.
                let why = format!("{why} (not tried: the delivery before it deferred)");
                while let Some(r) = run.rest.pop_front() {
                    run.results.push((r, RcptResult::Untried(why.clone())));
                }
            }
            if run.rest.is_empty() {
                let run = self.runs.remove(&job)?;
                return Some(LocalAction::Finished {
                    job,
                    results: run.results,
                });
            }
            self.turn.push_back(job);
            if self.paused || self.running >= MAX_RUNNING || self.busy.contains(&run.target) {
                continue;
            }
            let rcpt = run.rest.pop_front()?;
            run.running = Some(rcpt);
            self.running += 1;
            self.busy.insert(run.target.clone());
            return Some(LocalAction::Start { job, rcpt });
        }
        None
    }

    /// Every job, given up (shutdown): what ran is not recorded and goes again
    /// after a restart.
    pub fn clear(&mut self) {
        *self = LocalRuns::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::spool::MessageId;

    fn r(msg: u64) -> RcptRef {
        RcptRef {
            msg: MessageId(msg),
            idx: 0,
        }
    }

    fn starts(l: &mut LocalRuns) -> Vec<(JobId, RcptRef)> {
        let mut out = Vec::new();
        while let Some(a) = l.poll_action() {
            match a {
                LocalAction::Start { job, rcpt } => out.push((job, rcpt)),
                other => panic!("{other:?}"),
            }
        }
        out
    }

    #[test]
    fn queued_job_starts_one_recipient_at_a_time() {
        let mut l = LocalRuns::default();
        l.add(JobId(1), "alice", &[r(1), r(2), r(3)]);
        assert_eq!(starts(&mut l), vec![(JobId(1), r(1))]);
        assert!(!l.has_action());
        l.done(JobId(1), r(1), &RcptResult::Delivered);
        assert_eq!(starts(&mut l), vec![(JobId(1), r(2))]);
        l.done(
            JobId(1),
            r(2),
            &RcptResult::Failed("5.1.1".into(), "x".into()),
        );
        assert_eq!(starts(&mut l), vec![(JobId(1), r(3))]);
        l.done(JobId(1), r(3), &RcptResult::Delivered);
        match l.poll_action() {
            Some(LocalAction::Finished { job, results }) => {
                assert_eq!(job, JobId(1));
                assert_eq!(results.len(), 3);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((l.jobs(), l.running()), (0, 0));
    }

    #[test]
    fn running_deferred_ends_the_job_and_the_rest_waits_untried() {
        let mut l = LocalRuns::default();
        let rcpts: Vec<RcptRef> = (1..=5000).map(r).collect();
        l.add(JobId(7), "bob", &rcpts);
        assert_eq!(starts(&mut l).len(), 1);
        l.done(
            JobId(7),
            r(1),
            &RcptResult::Deferred("4.2.0 mailbox refused".into()),
        );
        match l.poll_action() {
            Some(LocalAction::Finished { results, .. }) => {
                assert_eq!(results.len(), 5000);
                assert_eq!(
                    results[0].1,
                    RcptResult::Deferred("4.2.0 mailbox refused".into())
                );
                assert!(results[1..]
                    .iter()
                    .all(|(_, x)| matches!(x, RcptResult::Untried(w) if w.starts_with("4.2.0 mailbox refused"))));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_jobs_for_one_mailbox_never_run_at_once() {
        let mut l = LocalRuns::default();
        l.add(JobId(1), "carol", &[r(1)]);
        l.add(JobId(2), "carol", &[r(2)]);
        l.add(JobId(3), "dave", &[r(3)]);
        let s = starts(&mut l);
        assert_eq!(s, vec![(JobId(1), r(1)), (JobId(3), r(3))]);
        l.done(JobId(1), r(1), &RcptResult::Delivered);
        assert!(matches!(
            l.poll_action(),
            Some(LocalAction::Finished { job: JobId(1), .. })
        ));
        assert_eq!(starts(&mut l), vec![(JobId(2), r(2))]);
    }

    #[test]
    fn starts_stop_at_the_cap_and_go_on_when_one_ends() {
        let mut l = LocalRuns::default();
        for i in 0..(MAX_RUNNING as u64 + 10) {
            l.add(JobId(i), &format!("u{i}"), &[r(i)]);
        }
        assert_eq!(starts(&mut l).len(), MAX_RUNNING);
        assert_eq!(l.running(), MAX_RUNNING);
        l.done(JobId(0), r(0), &RcptResult::Delivered);
        let mut finished = 0;
        let mut started = 0;
        while let Some(a) = l.poll_action() {
            match a {
                LocalAction::Finished { .. } => finished += 1,
                LocalAction::Start { .. } => started += 1,
            }
        }
        assert_eq!((finished, started), (1, 1));
    }

    #[test]
    fn paused_nothing_starts_but_finished_jobs_still_end() {
        let mut l = LocalRuns::default();
        l.add(JobId(1), "erin", &[r(1)]);
        l.add(JobId(2), "fred", &[]);
        l.pause(true);
        assert!(matches!(
            l.poll_action(),
            Some(LocalAction::Finished { job: JobId(2), .. })
        ));
        assert_eq!(l.poll_action(), None);
        assert!(!l.has_action());
        l.pause(false);
        assert!(l.has_action());
        assert_eq!(starts(&mut l), vec![(JobId(1), r(1))]);
    }

    #[test]
    fn a_stale_done_changes_nothing() {
        let mut l = LocalRuns::default();
        l.add(JobId(1), "gail", &[r(1), r(2)]);
        starts(&mut l);
        l.done(JobId(1), r(2), &RcptResult::Delivered);
        l.done(JobId(9), r(1), &RcptResult::Delivered);
        assert_eq!(l.running(), 1);
    }
}
