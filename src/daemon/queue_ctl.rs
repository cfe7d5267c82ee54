//! `etrnd queue` in the running daemon: the scheduler carries the operation out, then
//! its journal records and removals go to the spool before the reply is sent, so a
//! `250` means the change is on disk. A large selection (`ALL`, `-d DOMAIN`) is
//! carried out [`SLICE`] messages a loop turn, so the loop keeps serving meanwhile;
//! the requester hears when the last slice is done.

use std::collections::VecDeque;
use std::time::Instant;

use super::control::ControlRef;
use super::{Core, Io};
use crate::sched::{QueueOp, Selection};
use crate::smtp::reply::Reply;
use crate::store::spool::MessageId;

/// Messages operated on per loop turn.
pub const SLICE: usize = 256;

/// A queue request being carried out.
pub(super) struct QueueWork {
    op: QueueOp,
    ids: VecDeque<MessageId>,
    selected: usize,
    done: usize,
    who: String,
    reply_to: ControlRef,
}

impl Core {
    /// Carries out a queue request from `who` (the requester's uid): the reply
    /// now, or `None` when it comes once the last slice is done.
    pub(super) fn queue_request(
        &mut self,
        op: QueueOp,
        sel: &Selection,
        who: u32,
        reply_to: ControlRef,
        now: Instant,
    ) -> Option<Reply> {
        // Parked messages the selection names are loaded first.
        match sel {
            Selection::Ids(ids) => self.page_in_ids(ids),
            Selection::Domain(d) => {
                let d = d.to_ascii_lowercase();
                self.page_in_matching(|_, domain| domain == d)
            }
            Selection::All => self.page_in_matching(|_, _| true),
        }
        let ids: VecDeque<MessageId> = self.sched.select(sel).into();
        let mut work = QueueWork {
            op,
            selected: ids.len(),
            ids,
            done: 0,
            who: who.to_string(),
            reply_to,
        };
        if self.queue_slice(&mut work, now) {
            return Some(queue_reply(&work));
        }
        self.queue_work.push(work);
        None
    }

    /// One slice of a queue request; `true` when it is all done.
    fn queue_slice(&mut self, w: &mut QueueWork, now: Instant) -> bool {
        for _ in 0..SLICE {
            let Some(id) = w.ids.pop_front() else { break };
            if self.sched.operate(w.op, id, self.time.unix) {
                w.done += 1;
                log::info!("{id} queue {} by-uid={}", w.op.done(), w.who);
            }
        }
        self.apply_sched(now);
        w.ids.is_empty()
    }

    /// The next slice of each queue request in progress; those done are answered.
    pub(super) fn queue_tick(&mut self, io: &mut Io, now: Instant) {
        if self.queue_work.is_empty() {
            return;
        }
        let mut work = std::mem::take(&mut self.queue_work);
        let mut left = Vec::new();
        for mut w in work.drain(..) {
            if self.queue_slice(&mut w, now) {
                let r = queue_reply(&w);
                self.control_reply(io, w.reply_to, &r, now);
            } else {
                left.push(w);
            }
        }
        self.queue_work = left;
        self.start_jobs(io, now);
    }

    /// When the loop must come back for queue work: at once, while any is left.
    pub(super) fn queue_timeout(&self, now: Instant) -> Option<Instant> {
        (!self.queue_work.is_empty()).then_some(now)
    }
}

/// "250 2.0.0 3 messages deleted (5 selected)".
fn queue_reply(w: &QueueWork) -> Reply {
    Reply::new(
        250,
        format!(
            "2.0.0 {} message{} {} ({} selected)",
            w.done,
            if w.done == 1 { "" } else { "s" },
            w.op.done(),
            w.selected
        ),
    )
}
