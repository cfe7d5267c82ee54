//! `ClientSession`: the outbound SMTP state machine (RFC 5321, PIPELINING, SIZE,
//! 8BITMIME). Sans-IO like the server: bytes and `now` in; bytes, events and a
//! deadline out. One session carries many messages over one connection.
//!
//! ```text
//!  AwaitBanner -> AwaitEhlo --(5xx)--> AwaitHelo
//!                    |                    |
//!                    v                    v
//!                  Idle <---- transaction done (RSET after a failure)
//!                    |  start(message)         ^
//!                    v                         |
//!   MAIL, RCPT..., DATA (one group with PIPELINING, else lockstep) -> body -> "."
//!                    |  quit()
//!                    v
//!                AwaitQuit -> Closed
//! ```
//!
//! Replies are parsed by [`ReplyParser`] (a trust boundary: bounded lines, bounded
//! line count, sanitised text). A reply that does not parse, arrives when none is
//! expected, or breaks the protocol ends the session with a temporary failure: the
//! message is deferred, never half-sent. The body goes out dot-stuffed, with CR LF
//! only, and lines over 998 octets folded (RFC 5321 §4.5.3.1.6).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{fmt_path, Mailbox, ReversePath};
use crate::logging::sanitize;

/// RFC 5321 §4.5.3.2 client timeouts (reference/bad-input.md G12).
pub const TIMEOUT_COMMAND: Duration = Duration::from_secs(300);
/// DATA initiation.
pub const TIMEOUT_DATA: Duration = Duration::from_secs(120);
/// Final dot.
pub const TIMEOUT_DOT: Duration = Duration::from_secs(600);
/// Longest reply line accepted.
pub const MAX_REPLY_LINE: usize = 2048;
/// Most lines in one reply.
pub const MAX_REPLY_LINES: usize = 100;
/// Longest line on the wire (RFC 5321 §4.5.3.1.6), without CR LF.
pub const MAX_LINE: usize = 998;

/// A reply from the server: its code and its lines' text, sanitised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    /// Three-digit code.
    pub code: u16,
    /// The text of each line after the code.
    pub lines: Vec<String>,
}

impl ServerReply {
    /// `code text` of the first line, for logs and bounces.
    pub fn summary(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map(String::as_str).unwrap_or("")
        )
        .trim_end()
        .to_string()
    }
}

/// Parses server replies from a byte stream.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    lines: Vec<String>,
    code: Option<u16>,
}

impl ReplyParser {
    /// Adds octets.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Whether octets are buffered that are not part of a complete reply yet.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || !self.lines.is_empty()
    }

    /// The next complete reply, an error, or `None` when more input is needed.
    pub fn next_reply(&mut self) -> Option<Result<ServerReply, String>> {
        loop {
            let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
                if self.buf.len() > MAX_REPLY_LINE {
                    return Some(Err("reply line too long".into()));
                }
                return None;
            };
            if nl > MAX_REPLY_LINE {
                return Some(Err("reply line too long".into()));
            }
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
                return Some(Err(format!("malformed reply \"{}\"", sanitize(&line))));
            }
            let code: u16 = std::str::from_utf8(&line[..3]).ok()?.parse().ok()?;
            if !(200..600).contains(&code) {
                return Some(Err(format!("reply code {code} out of range")));
            }
            if self.code.is_some_and(|c| c != code) {
                return Some(Err("multi-line reply changes its code".into()));
            }
            let sep = line.get(3).copied();
            if !matches!(sep, None | Some(b' ') | Some(b'-')) {
                return Some(Err(format!("malformed reply \"{}\"", sanitize(&line))));
            }
            self.code = Some(code);
            let text = if line.len() > 4 {
                sanitize(&line[4..])
            } else {
                String::new()
            };
            self.lines.push(text);
            if self.lines.len() > MAX_REPLY_LINES {
                return Some(Err("reply has too many lines".into()));
            }
            if sep != Some(b'-') {
                self.code = None;
                return Some(Ok(ServerReply {
                    code,
                    lines: std::mem::take(&mut self.lines),
                }));
            }
        }
    }
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct OutMessage {
    /// Envelope sender.
    pub from: ReversePath,
    /// Envelope recipients.
    pub rcpts: Vec<Mailbox>,
    /// The stored message (CR LF line ends, not dot-stuffed).
    pub body: Vec<u8>,
    /// Whether to declare `BODY=8BITMIME` when the server offers it.
    pub eight_bit: bool,
    /// A 7-bit channel (`-7`): a body with 8-bit octets is refused with 5.6.3 (no
    /// conversion to quoted-printable is done).
    pub seven_bit_only: bool,
}

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    /// The server took the message for this recipient.
    Delivered(String),
    /// A 4xx (or a session problem): try again later.
    Deferred(String),
    /// A 5xx: bounce.
    Failed(String),
}

/// What the session tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Greeted and introduced: ready for a message.
    Ready,
    /// The current message is finished; one outcome per recipient, in order.
    Done(Vec<RcptOutcome>),
    /// The session failed (the current message, if any, was not delivered).
    Failed {
        /// Temporary (4xx, timeout, protocol trouble) or permanent (5xx greeting).
        temporary: bool,
        /// Why, sanitised.
        reason: String,
    },
    /// QUIT answered or the connection can be dropped.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Banner,
    Ehlo,
    Helo,
    Mail,
    Rcpt(usize),
    Data,
    Dot,
    Rset,
    Quit,
}

impl std::fmt::Display for Expect {
    /// What the reply answers, as an operator reads it in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expect::Banner => "the greeting",
            Expect::Ehlo => "EHLO",
            Expect::Helo => "HELO",
            Expect::Mail => "MAIL FROM",
            Expect::Rcpt(_) => "RCPT TO",
            Expect::Data => "DATA",
            Expect::Dot => "the end of the message",
            Expect::Rset => "RSET",
            Expect::Quit => "QUIT",
        })
    }
}

#[derive(Debug)]
struct Txn {
    msg: OutMessage,
    outcomes: Vec<Option<RcptOutcome>>,
    mail_failed: Option<(bool, String)>,
    data_sent: bool,
    /// Commands still to send in lockstep mode.
    queue: VecDeque<(Expect, Vec<u8>)>,
}

/// Where the session is.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    Greeting,
    Idle,
    Busy,
    Quitting,
    Closed,
}

/// One outbound SMTP session.
#[derive(Debug)]
pub struct ClientSession {
    helo_name: String,
    phase: Phase,
    parser: ReplyParser,
    expect: VecDeque<Expect>,
    out: Vec<u8>,
    events: VecDeque<ClientEvent>,
    deadline: Instant,
    pipelining: bool,
    eight_bit_mime: bool,
    size_limit: Option<u64>,
    txn: Option<Txn>,
    /// Transcript lines (`> command`, `< reply`), when asked for.
    transcript: Option<Vec<String>>,
    /// Whether to greet with EHLO (false: HELO only, the transport's `-77`).
    esmtp: bool,
}

fn stuff_and_fold(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 50 + 5);
    let mut in_headers = true;
    for line in body.split_inclusive(|&b| b == b'\n') {
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if content.is_empty() {
            in_headers = false;
        }
        if content.is_empty() {
            out.extend_from_slice(b"\r\n");
            continue;
        }
        let mut first = true;
        let mut rest = content;
        while !rest.is_empty() {
            // A folded header line starts with a space: it carries one octet less,
            // so every line on the wire stays within MAX_LINE (RFC 5321 §4.5.3.1.6).
            // Likewise a line that gets a stuffed dot.
            let folded = !first && in_headers;
            let prefixed = folded || rest.first() == Some(&b'.');
            let room = if prefixed { MAX_LINE - 1 } else { MAX_LINE };
            let (c, tail) = rest.split_at(rest.len().min(room));
            rest = tail;
            if folded {
                out.push(b' ');
            }
            if c.first() == Some(&b'.') && !folded {
                out.push(b'.');
            }
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
            first = false;
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

impl ClientSession {
    /// A session on a freshly connected socket, waiting for the banner.
    pub fn new(helo_name: &str, now: Instant) -> ClientSession {
        ClientSession {
            helo_name: helo_name.to_string(),
            phase: Phase::Greeting,
            parser: ReplyParser::default(),
            expect: VecDeque::from([Expect::Banner]),
            out: Vec::new(),
            events: VecDeque::new(),
            deadline: now + TIMEOUT_COMMAND,
            pipelining: false,
            eight_bit_mime: false,
            size_limit: None,
            txn: None,
            transcript: None,
            esmtp: true,
        }
    }

    /// Greets with HELO and uses no SMTP extension (the smtp transport's `-77`).
    pub fn without_esmtp(mut self) -> Self {
        self.esmtp = false;
        self
    }

    /// Keeps a transcript of commands and replies (never message bodies).
    pub fn with_transcript(mut self) -> Self {
        self.transcript = Some(Vec::new());
        self
    }

    /// Takes the transcript lines gathered so far.
    pub fn take_transcript(&mut self) -> Vec<String> {
        self.transcript
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Bytes to send.
    pub fn pending_output(&self) -> &[u8] {
        &self.out
    }

    /// Marks `n` octets as sent.
    pub fn consume_output(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When the session times out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.phase != Phase::Closed).then_some(self.deadline)
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether a message may be started.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Idle
    }

    fn send(&mut self, what: Expect, line: &[u8], now: Instant) {
        if let Some(t) = self.transcript.as_mut() {
            if what == Expect::Dot {
                t.push(format!("> [message, {} octets]", line.len()));
            } else {
                t.push(format!(
                    "> {}",
                    sanitize(line.strip_suffix(b"\r\n").unwrap_or(line))
                ));
            }
        }
        self.out.extend_from_slice(line);
        self.expect.push_back(what);
        self.deadline = now
            + match what {
                Expect::Data => TIMEOUT_DATA,
                Expect::Dot => TIMEOUT_DOT,
                _ => TIMEOUT_COMMAND,
            };
    }

    fn fail(&mut self, temporary: bool, reason: String) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.txn = None;
        self.expect.clear();
        self.events
            .push_back(ClientEvent::Failed { temporary, reason });
    }

    /// The connection timed out at this deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase != Phase::Closed && now >= self.deadline {
            if self.phase == Phase::Quitting {
                self.phase = Phase::Closed;
                self.events.push_back(ClientEvent::Closed);
            } else {
                let why = match self.expect.front() {
                    Some(what) => format!("timeout waiting for the reply to {what}"),
                    None => "timeout: the server sent nothing".to_string(),
                };
                self.fail(true, why);
            }
        }
    }

    /// The connection closed or failed.
    pub fn handle_eof(&mut self) {
        if self.phase == Phase::Quitting {
            self.phase = Phase::Closed;
            self.events.push_back(ClientEvent::Closed);
        } else {
            self.fail(true, "connection closed by the server".into());
        }
    }

    /// Sends a message (only when idle).
    pub fn start(&mut self, msg: OutMessage, now: Instant) {
        if self.phase != Phase::Idle {
            return;
        }
        let size = msg.body.len() as u64;
        let refusal = if self.size_limit.is_some_and(|l| l > 0 && size > l) {
            Some(format!(
                "552 5.3.4 message size {size} exceeds the server's limit"
            ))
        } else if msg.seven_bit_only && msg.body.iter().any(|&b| b >= 0x80) {
            Some("554 5.6.3 the message has 8-bit octets and this channel is 7-bit only".into())
        } else {
            None
        };
        if let Some(why) = refusal {
            // Nothing was sent for it: the session stays idle for the next message.
            let n = msg.rcpts.len();
            self.events
                .push_back(ClientEvent::Done(vec![RcptOutcome::Failed(why); n]));
            self.events.push_back(ClientEvent::Ready);
            return;
        }
        self.phase = Phase::Busy;
        let mut mail = format!("MAIL FROM:{}", fmt_path(&msg.from));
        if self.size_limit.is_some() {
            mail.push_str(&format!(" SIZE={size}"));
        }
        if msg.eight_bit && self.eight_bit_mime {
            mail.push_str(" BODY=8BITMIME");
        }
        mail.push_str("\r\n");
        let mut cmds: VecDeque<(Expect, Vec<u8>)> = VecDeque::new();
        cmds.push_back((Expect::Mail, mail.into_bytes()));
        for (i, r) in msg.rcpts.iter().enumerate() {
            cmds.push_back((Expect::Rcpt(i), format!("RCPT TO:<{r}>\r\n").into_bytes()));
        }
        cmds.push_back((Expect::Data, b"DATA\r\n".to_vec()));
        let n = msg.rcpts.len();
        self.txn = Some(Txn {
            msg,
            outcomes: vec![None; n],
            mail_failed: None,
            data_sent: false,
            queue: VecDeque::new(),
        });
        if self.pipelining {
            for (e, c) in cmds {
                self.send(e, &c, now);
            }
        } else {
            let (e, c) = cmds.pop_front().expect("MAIL is always first");
            self.send(e, &c, now);
            if let Some(t) = self.txn.as_mut() {
                t.queue = cmds;
            }
        }
    }

    /// Ends the session politely.
    pub fn quit(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed | Phase::Quitting => {}
            _ => {
                self.phase = Phase::Quitting;
                self.expect.clear();
                self.send(Expect::Quit, b"QUIT\r\n", now);
            }
        }
    }

    /// Octets from the server.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.parser.feed(data);
        while self.phase != Phase::Closed {
            let reply = match self.parser.next_reply() {
                None => break,
                Some(Err(e)) => return self.fail(true, format!("protocol error: {e}")),
                Some(Ok(r)) => r,
            };
            if let Some(t) = self.transcript.as_mut() {
                for (i, l) in reply.lines.iter().enumerate() {
                    let sep = if i + 1 == reply.lines.len() { ' ' } else { '-' };
                    t.push(format!("< {}{sep}{l}", reply.code));
                }
            }
            let Some(what) = self.expect.pop_front() else {
                return self.fail(true, format!("unexpected reply \"{}\"", reply.summary()));
            };
            self.on_reply(what, reply, now);
        }
        // Replies must come only when asked for: anything left over while nothing
        // is expected is an injection attempt or a broken server.
        if self.expect.is_empty() && self.parser.has_partial() && self.phase != Phase::Closed {
            self.fail(true, "server sent data nobody asked for".into());
        }
    }

    fn on_reply(&mut self, what: Expect, r: ServerReply, now: Instant) {
        let ok = (200..300).contains(&r.code);
        let temp = (400..500).contains(&r.code);
        match what {
            Expect::Banner => {
                if r.code != 220 {
                    return self.fail(r.code < 500, format!("greeting: {}", r.summary()));
                }
                if self.esmtp {
                    let ehlo = format!("EHLO {}\r\n", self.helo_name);
                    self.send(Expect::Ehlo, ehlo.as_bytes(), now);
                } else {
                    let helo = format!("HELO {}\r\n", self.helo_name);
                    self.send(Expect::Helo, helo.as_bytes(), now);
                }
            }
            Expect::Ehlo => {
                if ok {
                    for l in r.lines.iter().skip(1) {
                        let up = l.to_ascii_uppercase();
                        let mut w = up.split_whitespace();
                        match w.next() {
                            Some("PIPELINING") => self.pipelining = true,
                            Some("8BITMIME") => self.eight_bit_mime = true,
                            Some("SIZE") => {
                                self.size_limit =
                                    Some(w.next().and_then(|n| n.parse().ok()).unwrap_or(0))
                            }
                            _ => {}
                        }
                    }
                    self.ready();
                } else if r.code >= 500 && r.code != 554 {
                    let helo = format!("HELO {}\r\n", self.helo_name);
                    self.send(Expect::Helo, helo.as_bytes(), now);
                } else {
                    self.fail(temp, format!("EHLO: {}", r.summary()));
                }
            }
            Expect::Helo => {
                if ok {
                    self.ready();
                } else {
                    self.fail(temp, format!("HELO: {}", r.summary()));
                }
            }
            Expect::Mail => {
                if !ok {
                    if let Some(t) = self.txn.as_mut() {
                        t.mail_failed = Some((temp, format!("MAIL: {}", r.summary())));
                    }
                }
                self.next_lockstep(now);
            }
            Expect::Rcpt(i) => {
                if let Some(t) = self.txn.as_mut() {
                    let text = r.summary();
                    t.outcomes[i] = Some(match t.mail_failed.clone() {
                        Some((true, w)) => RcptOutcome::Deferred(w),
                        Some((false, w)) => RcptOutcome::Failed(w),
                        None if ok => RcptOutcome::Delivered(text),
                        None if temp => RcptOutcome::Deferred(text),
                        None => RcptOutcome::Failed(text),
                    });
                }
                self.next_lockstep(now);
            }
            Expect::Data => self.on_data(r, now),
            Expect::Dot => {
                let Some(mut t) = self.txn.take() else { return };
                let text = r.summary();
                for o in t.outcomes.iter_mut() {
                    if let Some(RcptOutcome::Delivered(_)) = o {
                        *o = Some(if ok {
                            RcptOutcome::Delivered(text.clone())
                        } else if temp {
                            RcptOutcome::Deferred(text.clone())
                        } else {
                            RcptOutcome::Failed(text.clone())
                        });
                    }
                }
                if t.data_sent {
                    self.finish(t, now);
                } else {
                    // The empty body sent after a surprising 354: discard its result.
                    self.finish_failed(t, now);
                }
            }
            Expect::Rset => {
                if ok {
                    self.ready();
                } else {
                    self.fail(temp, format!("RSET: {}", r.summary()));
                }
            }
            Expect::Quit => {
                self.phase = Phase::Closed;
                self.events.push_back(ClientEvent::Closed);
            }
        }
    }

    fn ready(&mut self) {
        self.phase = Phase::Idle;
        self.events.push_back(ClientEvent::Ready);
    }

    /// In lockstep mode, sends the next command of the transaction.
    fn next_lockstep(&mut self, now: Instant) {
        if self.pipelining {
            return;
        }
        let Some(t) = self.txn.as_mut() else { return };
        let any_accepted = t
            .outcomes
            .iter()
            .any(|o| matches!(o, Some(RcptOutcome::Delivered(_))));
        let mail_failed = t.mail_failed.is_some();
        match t.queue.pop_front() {
            Some((Expect::Data, _)) if !any_accepted || mail_failed => {
                let t = self.txn.take().expect("checked above");
                self.finish_failed(t, now);
            }
            Some((Expect::Rcpt(_), _)) if mail_failed => {
                let t = self.txn.take().expect("checked above");
                self.finish_failed(t, now);
            }
            Some((e, c)) => self.send(e, &c, now),
            None => {}
        }
    }

    fn on_data(&mut self, r: ServerReply, now: Instant) {
        let Some(t) = self.txn.as_mut() else { return };
        let any_accepted = t
            .outcomes
            .iter()
            .any(|o| matches!(o, Some(RcptOutcome::Delivered(_))));
        if r.code == 354 {
            if any_accepted && t.mail_failed.is_none() {
                let body = stuff_and_fold(&t.msg.body);
                t.data_sent = true;
                self.send(Expect::Dot, &body, now);
            } else {
                // RFC 2920 §3.1: DATA accepted although no recipient was: send an
                // empty message and forget its result.
                self.send(Expect::Dot, b".\r\n", now);
            }
            return;
        }
        let text = format!("DATA: {}", r.summary());
        let temp = (400..500).contains(&r.code);
        for o in t.outcomes.iter_mut() {
            if let Some(RcptOutcome::Delivered(_)) = o {
                *o = Some(if temp {
                    RcptOutcome::Deferred(text.clone())
                } else {
                    RcptOutcome::Failed(text.clone())
                });
            }
        }
        let t = self.txn.take().expect("checked above");
        self.finish_failed(t, now);
    }

    /// A transaction that delivered something: report and go idle.
    fn finish(&mut self, t: Txn, _now: Instant) {
        let outcomes = t
            .outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| RcptOutcome::Deferred("no reply for RCPT".into())))
            .collect();
        self.events.push_back(ClientEvent::Done(outcomes));
        self.ready();
    }

    /// A transaction that did not complete: report, then RSET before the next one.
    fn finish_failed(&mut self, t: Txn, now: Instant) {
        let fallback = t.mail_failed.clone();
        let outcomes = t
            .outcomes
            .into_iter()
            .map(|o| match (o, &fallback) {
                (Some(RcptOutcome::Delivered(_)), _) | (None, None) => {
                    RcptOutcome::Deferred("transaction not completed".into())
                }
                (Some(o), _) => o,
                (None, Some((true, w))) => RcptOutcome::Deferred(w.clone()),
                (None, Some((false, w))) => RcptOutcome::Failed(w.clone()),
            })
            .collect();
        self.events.push_back(ClientEvent::Done(outcomes));
        self.phase = Phase::Busy;
        self.send(Expect::Rset, b"RSET\r\n", now);
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
