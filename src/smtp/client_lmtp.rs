//! LMTP (RFC 2033) on a client session: LHLO instead of EHLO (no HELO to fall back
//! to), and after the final dot one reply per recipient that RCPT accepted, in
//! their order (§4.2). Each recipient's reply is its outcome. A server that closes
//! before all have come leaves the answered ones standing and the rest deferred; one
//! that sends more replies than recipients has them all deferred, since no reply
//! can then be matched to its recipient (reference/bad-input.md §L 102).

use std::time::Instant;

use super::{ClientSession, Expect, RcptOutcome, ServerReply, Txn};

impl ClientSession {
    /// Speaks LMTP rather than SMTP (a transport's `-M`); set before the greeting.
    pub fn set_lmtp(&mut self) {
        self.lmtp = true;
    }

    /// Whether the session speaks LMTP.
    pub fn is_lmtp(&self) -> bool {
        self.lmtp
    }

    /// At the final dot: one expected reply per accepted recipient. `false` when
    /// this is SMTP (one reply for all).
    pub(super) fn lmtp_dots(&mut self, now: Instant) -> bool {
        if !self.lmtp {
            return false;
        }
        let accepted: Vec<usize> = self.txn.as_ref().map_or(Vec::new(), |t| {
            t.outcomes
                .iter()
                .enumerate()
                .filter(|(_, o)| matches!(o, Some(RcptOutcome::Delivered(_))))
                .map(|(i, _)| i)
                .collect()
        });
        if accepted.is_empty() {
            // Only the empty body after a surprising 354 gets here: LMTP answers it
            // with no reply at all, so none is waited for.
            if let Some(t) = self.txn.take() {
                self.finish_failed(t, now);
            }
            return true;
        }
        self.expect
            .extend(accepted.into_iter().map(Expect::LmtpDot));
        true
    }

    /// Recipient `i`'s reply to the final dot.
    pub(super) fn on_lmtp_dot(&mut self, i: usize, r: ServerReply, now: Instant) {
        let Some(t) = self.txn.as_mut() else { return };
        let text = r.summary();
        let outcome = match r.code {
            200..=299 => RcptOutcome::Delivered(text),
            400..=499 => RcptOutcome::Deferred(format!("end of DATA: {text}")),
            _ => RcptOutcome::Failed(format!("end of DATA: {text}")),
        };
        if let (Some(o), Some(a)) = (t.outcomes.get_mut(i), t.answered.get_mut(i)) {
            *o = Some(outcome);
            *a = true;
        }
        if self.expect.iter().any(|e| matches!(e, Expect::LmtpDot(_))) {
            return;
        }
        let Some(mut t) = self.txn.take() else { return };
        if self.parser.has_partial() {
            // More replies than recipients: which is whose cannot be known.
            let why = "LMTP server sent more replies than recipients".to_string();
            for o in t.outcomes.iter_mut().zip(&t.answered).filter(|(_, a)| **a) {
                *o.0 = Some(RcptOutcome::Deferred(why.clone()));
            }
            self.finish(t, now);
            return self.fail(true, why);
        }
        self.finish(t, now);
    }

    /// The session failed after some recipients' replies came: those stand, the
    /// others are deferred.
    pub(super) fn lmtp_partial(&mut self, t: Txn, why: &str) {
        let outcomes = t
            .outcomes
            .into_iter()
            .zip(t.answered)
            .map(|(o, answered)| match o {
                Some(o) if answered => o,
                Some(RcptOutcome::Delivered(_)) | None => {
                    RcptOutcome::Deferred(format!("no LMTP reply: {why}"))
                }
                Some(o) => o,
            })
            .collect();
        self.events.push_back(super::ClientEvent::Done(outcomes));
    }
}

#[cfg(test)]
#[path = "client_lmtp_tests.rs"]
mod tests;
