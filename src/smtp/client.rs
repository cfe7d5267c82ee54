//! `ClientSession`: the outbound SMTP state machine (RFC 5321, PIPELINING, SIZE,
//! 8BITMIME). Sans-IO like the server: bytes and `now` in; bytes, events and a
//! deadline out. One session carries many messages over one connection.
//!
//! ```text
//!  AwaitBanner -> AwaitEhlo --(5xx)--> AwaitHelo
//!                    |                    |
//!                    v                    v
//!                  Idle <------------- AwaitRset (after a failed transaction)
//!                    |  start(message)    ^  ^
//!                    v                    |  |
//!              InTransaction -------------'  |   MAIL, RCPT..., DATA: one group with
//!                    | 354                   |   PIPELINING, else lockstep
//!                    v                       |
//!               SendingBody  (the driver feeds the body between watermarks)
//!                    | end_body              |
//!                    v                       |
//!                 AwaitDot ---> Idle --------'
//!                    |  quit()
//!                    v
//!                AwaitQuit -> Closed
//! ```
//!
//! Every transition is a trace line (`smtp client-state from=… to=…`, debug level).
//! Replies are parsed by [`ReplyParser`] (with the reply catalogue). A reply that does
//! not parse, arrives when none is expected, or breaks the protocol ends the session
//! with a temporary failure: the message is deferred, never half-sent. The body is
//! never held whole: the driver feeds it in pieces while [`ClientSession::wants_body`]
//! says so, and [`Stuffer`] dot-stuffs and folds it on the way.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::body::Stuffer;
pub use super::body::MAX_LINE;
pub use super::reply::{ReplyParser, ServerReply, MAX_REPLY_LINE, MAX_REPLY_LINES};
use crate::buf::OutBuf;
use crate::vocab::sanitize;

/// RFC 5321 §4.5.3.2 client timeouts (reference/bad-input.md G12).
pub const TIMEOUT_COMMAND: Duration = Duration::from_secs(300);
/// DATA initiation.
pub const TIMEOUT_DATA: Duration = Duration::from_secs(120);
/// Each data block (the server must keep taking the body).
pub const TIMEOUT_BLOCK: Duration = Duration::from_secs(180);
/// Final dot.
pub const TIMEOUT_DOT: Duration = Duration::from_secs(600);
/// RFC 2645 §5.2.1: the customer waits at least 10 minutes for the reply to ATRN
/// (the provider may scan a large queue first).
pub const TIMEOUT_ATRN: Duration = Duration::from_secs(600);
/// The driver feeds more body while less than this is waiting to be written; with a
/// feed of at most [`BODY_CHUNK`] the output stays under about twice this.
pub const LOW_WATER: usize = 64 * 1024;
/// How much body the driver reads per feed.
pub const BODY_CHUNK: usize = 64 * 1024;

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
        /// The AUTH exchange failed: the server refused our credentials (every
        /// mechanism we tried), or the exchange broke.
        auth: bool,
        /// Why, sanitised.
        reason: String,
    },
    /// QUIT answered or the connection can be dropped.
    Closed,
    /// `220` to STARTTLS and nothing behind it: the driver starts TLS now and
    /// calls [`ClientSession::tls_on`] when the handshake is done.
    StartTls,
    /// The reply to ATRN (RFC 2645): on `250` the session is over and the driver
    /// turns the connection around; otherwise the session is idle again.
    Atrn {
        /// The reply code.
        code: u16,
        /// The reply, sanitised.
        text: String,
    },
    /// The AUTH exchange needs the OAuth 2.0 token of the credentials: the driver
    /// gets it and calls [`ClientSession::token`].
    NeedToken,
    /// The reply to ETRN (RFC 1985); the session is idle again.
    Etrn {
        /// The reply code.
        code: u16,
        /// The reply, sanitised.
        text: String,
    },
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
    /// LMTP: the reply to the final dot for recipient `i` (RFC 2033 §4.2).
    LmtpDot(usize),
    Rset,
    Quit,
    StartTls,
    /// An AUTH exchange's step (0: the AUTH command).
    Auth(u8),
    Atrn,
    Etrn,
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
            Expect::Dot | Expect::LmtpDot(_) => "the end of the message",
            Expect::Rset => "RSET",
            Expect::Quit => "QUIT",
            Expect::StartTls => "STARTTLS",
            Expect::Auth(_) => "AUTH",
            Expect::Atrn => "ATRN",
            Expect::Etrn => "ETRN",
        })
    }
}

/// Where the session is (the diagram in the module header).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum State {
    /// Connected, waiting for the 220.
    AwaitBanner,
    /// EHLO sent.
    AwaitEhlo,
    /// HELO sent (EHLO refused, or `-77`).
    AwaitHelo,
    /// Ready for a message.
    Idle,
    /// MAIL, RCPT and DATA sent or being sent; their replies come in.
    InTransaction,
    /// 354 received: the body is being fed and written.
    SendingBody,
    /// The final dot is sent; its reply decides the recipients.
    AwaitDot,
    /// RSET after a transaction that did not complete.
    AwaitRset,
    /// QUIT sent.
    AwaitQuit,
    /// STARTTLS sent.
    AwaitStartTls,
    /// `220` to STARTTLS received: the TLS handshake runs.
    AwaitTlsHandshake,
    /// AUTH sent; its exchange runs.
    AwaitAuth,
    /// ATRN sent: the provider may take ten minutes to answer.
    AwaitAtrn,
    /// `250` to ATRN: the connection belongs to a server session now.
    Turned,
    /// ETRN sent (RFC 1985).
    AwaitEtrn,
    /// Over.
    Closed,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug)]
struct Txn {
    outcomes: Vec<Option<RcptOutcome>>,
    mail_failed: Option<(bool, String)>,
    data_sent: bool,
    /// Commands still to send in lockstep mode.
    queue: VecDeque<(Expect, Vec<u8>)>,
    /// LMTP: the recipients whose own reply to the final dot came.
    answered: Vec<bool>,
}

/// One outbound SMTP session.
#[derive(Debug)]
pub struct ClientSession {
    helo_name: String,
    state: State,
    parser: ReplyParser,
    expect: VecDeque<Expect>,
    out: OutBuf,
    events: VecDeque<ClientEvent>,
    deadline: Instant,
    pipelining: bool,
    eight_bit_mime: bool,
    /// DSN and SMTPUTF8 of its EHLO reply.
    ext: (bool, bool),
    /// Speak LMTP (RFC 2033).
    lmtp: bool,
    size_limit: Option<u64>,
    txn: Option<Txn>,
    stuffer: Stuffer,
    /// Transcript lines (`> command`, `< reply`), when asked for.
    transcript: Option<Vec<String>>,
    /// Whether to greet with EHLO (false: HELO only, the transport's `-77`).
    esmtp: bool,
    /// What TLS and AUTH this connection needs.
    sec: ClientSecurity,
    /// TLS version and cipher, once TLS is on.
    tls: Option<String>,
    /// The server offered STARTTLS in its last EHLO reply.
    starttls_offered: bool,
    /// The AUTH mechanisms of its last EHLO reply.
    auth_mechs: Vec<String>,
    /// The mechanism of the AUTH exchange in progress, the ones tried, and why the
    /// last one was refused.
    auth_mech: Option<secure::ClientMech>,
    auth_tried: Vec<secure::ClientMech>,
    auth_failure: Option<(String, bool)>,
    /// The server accepted our AUTH.
    authenticated: bool,
    /// What its trace lines start with: the delivery (job) or request it serves.
    trace: String,
}

impl ClientSession {
    /// A session on a freshly connected socket (or a connection just turned around),
    /// waiting for the banner.
    pub fn new(helo_name: &str, now: Instant) -> ClientSession {
        ClientSession {
            helo_name: helo_name.to_string(),
            state: State::AwaitBanner,
            parser: ReplyParser::default(),
            expect: VecDeque::from([Expect::Banner]),
            out: OutBuf::new(),
            events: VecDeque::new(),
            deadline: now + TIMEOUT_COMMAND,
            pipelining: false,
            eight_bit_mime: false,
            ext: (false, false),
            lmtp: false,
            size_limit: None,
            txn: None,
            stuffer: Stuffer::new(),
            transcript: None,
            esmtp: true,
            sec: ClientSecurity::default(),
            tls: None,
            starttls_offered: false,
            auth_mechs: Vec::new(),
            auth_mech: None,
            auth_tried: Vec::new(),
            auth_failure: None,
            authenticated: false,
            trace: "-".into(),
        }
    }

    /// Where the session is.
    pub fn state(&self) -> State {
        self.state
    }

    fn set_state(&mut self, to: State) {
        if self.state != to {
            log::debug!(
                "{} smtp client-state from={} to={}",
                self.trace,
                self.state,
                to
            );
            self.state = to;
        }
    }

    /// Bytes to send.
    pub fn pending_output(&self) -> &[u8] {
        self.out.as_slice()
    }

    /// Marks `n` octets as sent.
    pub fn consume_output(&mut self, n: usize) {
        self.out.consume(n);
    }

    /// Whether the driver should feed the next piece of the body now: the body is
    /// being sent and less than [`LOW_WATER`] octets wait to be written.
    pub fn wants_body(&self) -> bool {
        self.state == State::SendingBody && self.out.len() < LOW_WATER
    }

    /// The next piece of the stored message (only while sending the body).
    pub fn feed_body(&mut self, data: &[u8], now: Instant) {
        if self.state != State::SendingBody {
            return;
        }
        self.stuffer.feed(data, &mut self.out);
        self.deadline = now + TIMEOUT_BLOCK;
    }

    /// The stored message is all fed: the final dot goes out.
    pub fn end_body(&mut self, now: Instant) {
        if self.state != State::SendingBody {
            return;
        }
        self.stuffer.finish(&mut self.out);
        let n = self.stuffer.seen();
        self.stuffer = Stuffer::new();
        if let Some(t) = self.transcript.as_mut() {
            t.push(format!("> [message, {n} octets]"));
        }
        if !self.lmtp_dots(now) {
            self.expect.push_back(Expect::Dot);
        }
        self.deadline = now + TIMEOUT_DOT;
        self.set_state(State::AwaitDot);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When the session times out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!matches!(self.state, State::Closed | State::Turned)).then_some(self.deadline)
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether a message may be started.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    fn send(&mut self, what: Expect, line: &[u8], now: Instant) {
        if let Some(t) = self.transcript.as_mut() {
            let shown = line.strip_suffix(b"\r\n").unwrap_or(line);
            // What an AUTH exchange sends is a secret: the transcript names the step.
            t.push(match what {
                Expect::Auth(0) => {
                    let mut w = shown.splitn(3, |&b| b == b' ');
                    let (v, m) = (w.next().unwrap_or_default(), w.next().unwrap_or_default());
                    format!("> {} {} <redacted>", sanitize(v), sanitize(m))
                }
                Expect::Auth(_) => "> <redacted>".to_string(),
                _ => format!("> {}", sanitize(shown)),
            });
        }
        self.out.extend_from_slice(line);
        self.expect.push_back(what);
        self.deadline = now
            + match what {
                Expect::Data => TIMEOUT_DATA,
                Expect::Dot | Expect::LmtpDot(_) => TIMEOUT_DOT,
                Expect::Atrn => TIMEOUT_ATRN,
                _ => TIMEOUT_COMMAND,
            };
    }

    fn fail(&mut self, temporary: bool, reason: String) {
        self.fail_as(temporary, false, reason);
    }

    /// [`Self::fail`], saying whether the AUTH exchange is what failed.
    pub(super) fn fail_as(&mut self, temporary: bool, auth: bool, reason: String) {
        if self.state == State::Closed {
            return;
        }
        self.set_state(State::Closed);
        // LMTP: what was answered before the failure stands; the rest is deferred.
        if let Some(t) = self.txn.take().filter(|t| t.answered.contains(&true)) {
            self.lmtp_partial(t, &reason);
        }
        self.expect.clear();
        self.events.push_back(ClientEvent::Failed {
            temporary,
            auth,
            reason,
        });
    }

    fn closed(&mut self) {
        self.set_state(State::Closed);
        self.events.push_back(ClientEvent::Closed);
    }

    /// The connection timed out at this deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed || now < self.deadline {
            return;
        }
        match (self.state, self.expect.front()) {
            (State::AwaitQuit, _) => self.closed(),
            (State::SendingBody, _) => self.fail(
                true,
                "timeout: the server stopped taking the message".into(),
            ),
            (_, Some(what)) => {
                let why = format!("timeout waiting for the reply to {what}");
                self.fail(true, why)
            }
            (_, None) => self.fail(true, "timeout: the server sent nothing".into()),
        }
    }

    /// The connection closed or failed.
    pub fn handle_eof(&mut self) {
        if self.state == State::AwaitQuit {
            self.closed();
        } else {
            self.fail(true, "connection closed by the server".into());
        }
    }

    /// Whether the server offered 8BITMIME (known once the session is idle).
    pub fn offers_8bitmime(&self) -> bool {
        self.eight_bit_mime
    }

    /// Whether the server offered DSN: it takes NOTIFY and tells the sender itself.
    pub fn offers_dsn(&self) -> bool {
        self.ext.0
    }

    /// Sends a message (only when idle); its body is fed after the 354.
    pub fn start(&mut self, msg: OutMessage, now: Instant) {
        if self.state != State::Idle {
            return;
        }
        let size = msg.size;
        let refusal = if self.size_limit.is_some_and(|l| l > 0 && size > l) {
            Some(format!(
                "552 5.3.4 message size {size} exceeds the server's limit"
            ))
        } else if msg.smtputf8 && !self.ext.1 {
            Some("553 5.6.7 the message needs SMTPUTF8, which the next hop does not offer".into())
        } else if msg.seven_bit_only && msg.has_8bit {
            Some(
                "554 5.6.3 the message has 8-bit content that cannot be made 7-bit, and the next hop takes 7-bit only"
                    .into(),
            )
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
        self.set_state(State::InTransaction);
        let mut cmds: VecDeque<(Expect, Vec<u8>)> = VecDeque::new();
        let mail = msg.mail_line(self.size_limit.is_some(), self.eight_bit_mime, self.ext.0);
        cmds.push_back((Expect::Mail, mail.into_bytes()));
        for i in 0..msg.rcpts.len() {
            cmds.push_back((Expect::Rcpt(i), msg.rcpt_line(i, self.ext.0).into_bytes()));
        }
        cmds.push_back((Expect::Data, b"DATA\r\n".to_vec()));
        let n = msg.rcpts.len();
        self.txn = Some(Txn {
            outcomes: vec![None; n],
            mail_failed: None,
            data_sent: false,
            queue: VecDeque::new(),
            answered: vec![false; n],
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
        match self.state {
            State::Closed | State::AwaitQuit => {}
            _ => {
                self.set_state(State::AwaitQuit);
                self.expect.clear();
                self.send(Expect::Quit, b"QUIT\r\n", now);
            }
        }
    }

    /// Octets from the server.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.parser.feed(data);
        while self.state != State::Closed {
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
        if self.expect.is_empty() && self.parser.has_partial() && self.state != State::Closed {
            self.fail(true, "server sent data nobody asked for".into());
        }
    }

    fn greet(&mut self, what: Expect, now: Instant) {
        let verb = match what {
            Expect::Ehlo if self.lmtp => "LHLO",
            Expect::Ehlo => "EHLO",
            _ => "HELO",
        };
        let line = format!("{verb} {}\r\n", self.helo_name);
        self.send(what, line.as_bytes(), now);
        self.set_state(if what == Expect::Ehlo {
            State::AwaitEhlo
        } else {
            State::AwaitHelo
        });
    }

    fn on_reply(&mut self, what: Expect, r: ServerReply, now: Instant) {
        let ok = (200..300).contains(&r.code);
        let temp = (400..500).contains(&r.code);
        if r.code == 421 && what != Expect::Quit {
            // RFC 5321 §3.8: the server is closing the channel, whatever it answers.
            return self.fail(true, format!("{what}: {}", r.summary()));
        }
        match what {
            Expect::Banner => {
                if r.code != 220 {
                    return self.fail(r.code < 500, format!("greeting: {}", r.summary()));
                }
                self.greet(
                    if self.esmtp {
                        Expect::Ehlo
                    } else {
                        Expect::Helo
                    },
                    now,
                );
            }
            Expect::Ehlo => {
                if ok {
                    for l in r.lines.iter().skip(1) {
                        let up = l.to_ascii_uppercase();
                        let mut w = up.split_whitespace();
                        match w.next() {
                            Some("PIPELINING") => self.pipelining = true,
                            Some("8BITMIME") => self.eight_bit_mime = true,
                            Some("DSN") => self.ext.0 = true,
                            Some("SMTPUTF8") => self.ext.1 = true,
                            Some("SIZE") => {
                                self.size_limit =
                                    Some(w.next().and_then(|n| n.parse().ok()).unwrap_or(0))
                            }
                            Some("STARTTLS") => self.starttls_offered = true,
                            Some("AUTH") => {
                                self.auth_mechs = w.map(str::to_string).collect();
                            }
                            _ => {}
                        }
                    }
                    self.after_ehlo(now);
                } else if r.code >= 500 && r.code != 554 && !self.lmtp {
                    self.greet(Expect::Helo, now);
                } else {
                    self.fail(temp, format!("EHLO: {}", r.summary()));
                }
            }
            Expect::Helo => {
                if ok {
                    self.after_ehlo(now);
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
                        None if temp => RcptOutcome::Deferred(format!("RCPT: {text}")),
                        None => RcptOutcome::Failed(format!("RCPT: {text}")),
                    });
                }
                self.next_lockstep(now);
            }
            Expect::Data => self.on_data(r, now),
            Expect::Dot => {
                let Some(mut t) = self.txn.take() else { return };
                let text = r.summary();
                let refused = format!("end of DATA: {text}");
                for o in t.outcomes.iter_mut() {
                    if let Some(RcptOutcome::Delivered(_)) = o {
                        *o = Some(if ok {
                            RcptOutcome::Delivered(text.clone())
                        } else if temp {
                            RcptOutcome::Deferred(refused.clone())
                        } else {
                            RcptOutcome::Failed(refused.clone())
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
            Expect::LmtpDot(i) => self.on_lmtp_dot(i, r, now),
            Expect::Rset => {
                if ok {
                    self.ready();
                } else {
                    self.fail(temp, format!("RSET: {}", r.summary()));
                }
            }
            Expect::Quit => self.closed(),
            Expect::StartTls => self.on_starttls(r, now),
            Expect::Auth(step) => self.on_auth(step, r, now),
            Expect::Atrn => self.on_atrn(r),
            Expect::Etrn => self.on_etrn(r),
        }
    }

    fn ready(&mut self) {
        self.set_state(State::Idle);
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
                t.data_sent = true;
                self.stuffer = Stuffer::new();
                self.deadline = now + TIMEOUT_BLOCK;
                self.set_state(State::SendingBody);
            } else {
                // RFC 2920 §3.1: DATA accepted although no recipient was: send an
                // empty message and forget its result.
                self.send(Expect::Dot, b".\r\n", now);
                self.set_state(State::AwaitDot);
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
        self.set_state(State::AwaitRset);
        self.send(Expect::Rset, b"RSET\r\n", now);
    }
}

#[path = "client_secure.rs"]
mod secure;

#[path = "client_message.rs"]
mod message;
pub use message::OutMessage;

#[path = "client_lmtp.rs"]
mod lmtp;

#[path = "client_requests.rs"]
mod requests;
pub use secure::{ClientMech, ClientSecret, ClientSecurity, Credentials};

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
