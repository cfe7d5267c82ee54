//! CHUNKING (RFC 3030) for [`ServerSession`]: `BDAT size [LAST]` and its octets.
//! A chunk is always read to its end, whatever the verdict on it, so what is data
//! is never taken for commands; the message itself is the one DATA builds (same
//! decoder, same limits), and `BDAT … LAST` is answered only once it is durable.
//! Same module privacy as the session; split out by verb.

use std::time::Instant;

use super::{Context, Event, ServerSession, State};
use crate::smtp::reply::Reply;
use crate::vocab::ListenKind;

/// The BDAT chunk being read.
#[derive(Debug)]
pub(super) struct Chunk {
    /// Its declared size.
    size: u64,
    /// Octets still to come.
    left: u64,
    /// Whether it ends the message.
    last: bool,
}

impl ServerSession {
    /// `BDAT size [LAST]`: the first chunk starts the message, the others go on
    /// with it. A refused one is read and thrown away, then answered.
    pub(super) fn bdat(&mut self, size: u64, last: bool, now: Instant, ctx: &Context<'_>) {
        let esmtp = self.helo.as_ref().is_some_and(|h| h.1);
        let refused = if self.kind == ListenKind::Odmr {
            Some(Reply::ODMR_ONLY)
        } else if self.helo.is_none() {
            Some(Reply::NEED_HELO)
        } else if !esmtp {
            // CHUNKING is offered in the EHLO reply only.
            Some(Reply::NOT_IMPLEMENTED)
        } else {
            None
        };
        if let Some(r) = refused {
            return self.skip_then(size, r);
        }
        let mut d = match std::mem::replace(&mut self.state, State::Ready) {
            State::Chunking(d) => d,
            State::InTransaction(t) if !t.rcpts.is_empty() => {
                self.state = State::InTransaction(t);
                match self.start_message(now, ctx) {
                    Some(d) => d,
                    None => return,
                }
            }
            other => {
                // No MAIL, or no valid recipient: the reply DATA would get.
                let r = match &other {
                    State::InTransaction(_) => Reply::NO_VALID_RCPT,
                    _ => Reply::NEED_MAIL,
                };
                self.state = other;
                return self.skip_then(size, r);
            }
        };
        let max = ctx.policy.max_message_size;
        if d.refused.is_none() && (d.decoder.size as u64).saturating_add(size) > max {
            // Refused before a single octet is read: nothing of it is stored.
            d.refused = Some(Reply::MESSAGE_TOO_BIG);
        }
        d.chunk = Some(Chunk {
            size,
            left: size,
            last,
        });
        self.set_state(State::ReceivingData(d));
        if size == 0 {
            if !last {
                // Empty chunks could hold a session open for ever: they count as
                // junk, as NOOP does.
                self.junk += 1;
                if self.junk > super::JUNK_LIMIT {
                    self.count_error(now, ctx.policy.hostname);
                }
            }
            self.chunk_end(now, ctx);
        }
    }

    /// The chunk's octets in the input from `pos`: how many were used, and whether
    /// the chunk is complete.
    pub(super) fn chunk_input(&mut self, pos: usize, ctx: &Context<'_>) -> (usize, bool) {
        let State::ReceivingData(d) = &mut self.state else {
            return (0, false);
        };
        let Some(chunk) = d.chunk.as_mut() else {
            return (0, false);
        };
        let avail = self.inbuf.len().saturating_sub(pos);
        let take = usize::try_from(chunk.left).map_or(avail, |l| l.min(avail));
        chunk.left -= take as u64;
        let done = chunk.left == 0;
        d.raw_octets += take as u64;
        if d.refused.is_none() {
            let mut out = Vec::with_capacity(take + take / 32);
            d.decoder.feed_raw(&self.inbuf[pos..pos + take], &mut out);
            let max = ctx.policy.max_message_size;
            self.chunk_out(out, max);
        }
        (take, done)
    }

    /// Decoded octets of the message: to the spool, unless they take it past a
    /// limit (line ends made CR LF can), which refuses it.
    fn chunk_out(&mut self, out: Vec<u8>, max: u64) {
        let State::ReceivingData(d) = &mut self.state else {
            return;
        };
        if d.decoder.size as u64 > max {
            d.refused = Some(Reply::MESSAGE_TOO_BIG);
        } else if d.decoder.header_bytes() > super::MAX_HEADER_BYTES {
            d.refused = Some(Reply::HEADER_TOO_BIG);
        } else if !out.is_empty() {
            self.events.push_back(Event::MessageData(out));
        }
    }

    /// A chunk has all its octets: the last one ends the message as the dot ends
    /// DATA; any other is acknowledged, unless the message was refused, which ends
    /// the transaction (RFC 3030 §2: the client sends no more chunks of it).
    pub(super) fn chunk_end(&mut self, now: Instant, ctx: &Context<'_>) {
        let host = ctx.policy.hostname;
        let State::ReceivingData(d) = &mut self.state else {
            return;
        };
        let Some(chunk) = d.chunk.take() else {
            return;
        };
        if chunk.last {
            // The end of the last line, and the header lines a local client's
            // message lacks, as at DATA's dot (also after `BDAT 0 LAST`).
            if d.refused.is_none() {
                let mut out = Vec::new();
                d.decoder.finish_raw(&mut out);
                self.chunk_out(out, ctx.policy.max_message_size);
            }
            return self.end_of_data(now, host);
        }
        if let Some(r) = d.refused.take() {
            log::info!(
                "{:08x} smtp message-refused size={} reply=\"{}\"",
                self.id,
                d.decoder.size,
                r
            );
            self.events.push_back(Event::MessageAbort);
            self.set_state(State::Ready);
            return self.error(&r, now, host);
        }
        let State::ReceivingData(d) = std::mem::replace(&mut self.state, State::Ready) else {
            unreachable!("checked above");
        };
        self.reply(&Reply::chunk_received(chunk.size));
        self.set_state(State::Chunking(d));
    }

    /// A refused BDAT: its `size` octets are read and dropped, then `r` is sent.
    fn skip_then(&mut self, size: u64, r: Reply) {
        self.skip = Some(Box::new((size, r)));
    }

    /// Drops the refused chunk's octets from `pos`; once all are gone its reply is
    /// sent. Returns the octets used.
    pub(super) fn skip_chunk(&mut self, pos: usize, now: Instant, host: &str) -> usize {
        let Some((left, _)) = self.skip.as_deref_mut() else {
            return 0;
        };
        let avail = self.inbuf.len().saturating_sub(pos);
        let take = usize::try_from(*left).map_or(avail, |l| l.min(avail));
        *left -= take as u64;
        if *left == 0 {
            if let Some(b) = self.skip.take() {
                self.error(&b.1, now, host);
            }
        }
        take
    }
}

#[cfg(test)]
#[path = "server_bdat_tests.rs"]
mod tests;
