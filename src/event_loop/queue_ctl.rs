//! `etrnd queue` in the running daemon: the scheduler carries the operation out, then
//! its journal records and removals go to the spool before the reply is sent, so a
//! `250` means the change is on disk.

use std::time::Instant;

use super::Daemon;
use crate::sched::{QueueOp, Selection};
use crate::smtp::reply::Reply;

impl Daemon {
    /// Carries out a queue request from `who` (the requester's uid).
    pub(super) fn queue_request(
        &mut self,
        op: QueueOp,
        sel: &Selection,
        who: Option<u32>,
        now: Instant,
    ) -> Reply {
        let who = who.map_or("-".to_string(), |u| u.to_string());
        // Parked messages the selection names are loaded first.
        match sel {
            Selection::Ids(ids) => self.page_in_ids(ids),
            Selection::Domain(d) => {
                let d = d.to_ascii_lowercase();
                self.page_in_matching(|_, domain| domain == d)
            }
            Selection::All => self.page_in_matching(|_, _| true),
        }
        let ids = self.sched.select(sel);
        let mut n = 0usize;
        for id in &ids {
            if self.sched.operate(op, *id, self.unix) {
                n += 1;
                log::info!("{id} queue {} by-uid={who}", op.done());
            }
        }
        self.apply_sched(now);
        Reply::new(
            250,
            format!(
                "2.0.0 {n} message{} {} ({} selected)",
                if n == 1 { "" } else { "s" },
                op.done(),
                ids.len()
            ),
        )
    }
}
