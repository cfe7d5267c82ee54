//! The delivery line of each recipient and attempt, in Postfix's format
//! (DESIGN.md §5.12).

use std::time::Instant;

use super::Core;
use crate::logging::sanitize;
use crate::machines::delivery::Recorded;
use crate::sched::RcptResult;

impl Core {
    /// One Postfix delivery line (DESIGN.md §5.12), which pflogsumm reads:
    /// `QUEUEID: to=<…>, relay=…, delay=S.ss, delays=a/b/c/d, dsn=X.Y.Z,
    /// status=sent|deferred|bounced (reply)`, with the tag `etrnd/smtp` or
    /// `etrnd/local`. `delays`: before the queue (0: a message is queued when it is
    /// committed), in the queue, connection set-up, transmission.
    pub(super) fn log_result(
        &self,
        o: &Recorded,
        relay: &str,
        timing: Option<(Instant, Option<Instant>)>,
    ) {
        let (status, text, dsn) = match &o.result {
            RcptResult::Delivered => (
                "sent",
                o.reply.clone().unwrap_or_else(|| "delivered".into()),
                "2.0.0".to_string(),
            ),
            RcptResult::Deferred(t) => {
                let st =
                    crate::message::bounce::status_of(crate::machines::delivery::remote_reply(t));
                let st = if st.starts_with('4') {
                    st
                } else {
                    "4.0.0".into()
                };
                ("deferred", t.clone(), st)
            }
            RcptResult::Untried(t) => ("held", t.clone(), "4.0.0".to_string()),
            RcptResult::Failed(st, t) => ("bounced", t.clone(), st.clone()),
        };
        let to = self
            .sched
            .rcpt_info(o.rcpt)
            .map(|(addr, _)| addr.to_string())
            .unwrap_or_default();
        // The id is the arrival in microseconds.
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let delay = now_us.saturating_sub(o.rcpt.msg.0) as f64 / 1e6;
        let (setup, xfer) = match timing {
            Some((started, connected)) => {
                let c = connected.unwrap_or(started);
                (
                    c.saturating_duration_since(started).as_secs_f64(),
                    c.elapsed().as_secs_f64(),
                )
            }
            None => (0.0, 0.0),
        };
        let queued = (delay - setup - xfer).max(0.0);
        let (service, relay) = match relay.strip_prefix("local:") {
            Some(_) => ("local", "local"),
            None => ("smtp", relay),
        };
        log::info!(
            target: service,
            "{}: to=<{}>, relay={}, delay={:.2}, delays=0/{:.2}/{:.2}/{:.2}, dsn={}, status={} ({})",
            o.rcpt.msg,
            sanitize(to.as_bytes()),
            relay,
            delay,
            queued,
            setup,
            xfer,
            dsn,
            status,
            sanitize(text.as_bytes())
        );
    }
}
