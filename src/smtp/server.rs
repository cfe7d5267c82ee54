//! `ServerSession`: the inbound SMTP state machine (RFC 5321, with PIPELINING,
//! SIZE, 8BITMIME, CHUNKING, SMTPUTF8, DSN, ENHANCEDSTATUSCODES, ETRN, STARTTLS,
//! AUTH, ATRN). It does no I/O and never reads the clock: the daemon feeds it bytes
//! and `now`, and drains replies, events and its next deadline. All thirteen states
//! (BDAT reads its chunk in ReceivingData and waits for the next one in Chunking):
//!
//! ```text
//!             greet pause over            MAIL                DATA
//!  Greeting ------------------> Ready ----------> InTransaction ------> ReceivingData
//!     |  input (early talker)   ^ ^ ^ ^  RSET/HELO    |      BDAT    Chunking <-'|  ^
//!     v                         | | | '---------------'     (chunk read) '--BDAT--' | CRLF.CRLF
//!  Closing <-- QUIT, 421 -------+ | '------- commit result (250/451/452) -- AwaitCommit
//!     ^                               |
//!     |        ETRN --> AwaitEtrn ------ the queue's reply --------------> Ready
//!     |    STARTTLS --> AwaitTls ------- 220 written, TLS up ------------> Ready
//!     |        AUTH --> Authenticating --- response line --> AwaitAuth -> Ready
//!     |                     ^  334 <----'   (the helper's verdict: 235 or 535)
//!     |        ATRN --> AwaitAtrn --+--- no mail (453), refused -------> Ready
//!     |                             '--- 250 --> Turned (once written, a client
//!     '-- 421, QUIT, timeouts, from any state        session takes the connection)
//! ```
//!
//! Every command is checked against the state before it acts (OpenSMTPD's
//! check/proceed split; rustls's lesson on "reactive" handling). Replies come from
//! `reply.rs`. Limits and abuse counters follow reference/bad-input.md G11, G13, G14,
//! G21: command lines capped at 2,048 octets, 300 s per request, DATA at ≥ 500 B/s once
//! the 300 s deadline passed, 10 errors before replies slow down, 20 before 421, 100
//! junk commands, 3 unknown verbs in a row.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::command::{self, Body, Command};
use super::etrn_target::EtrnTarget;
use super::line::{self, DataDecoder, DataProgress, Frame};
use super::reply::{self, Reply};
use super::ReversePath;
use crate::store::spool::{Envelope, Recipient};
use crate::vocab::sanitize;
use crate::vocab::ListenKind;

/// RFC 5321 §4.5.3.2.7: the server waits at least 5 minutes for each command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Postfix `smtpd_min_data_rate`: past the deadline, DATA must keep this many B/s.
pub const MIN_DATA_RATE: u64 = 500;
/// Postfix `smtpd_soft_error_limit`: past this many errors each reply waits.
pub const SOFT_ERROR_LIMIT: u32 = 10;
/// Postfix `smtpd_error_sleep_time`.
pub const ERROR_SLEEP: Duration = Duration::from_secs(1);
/// Postfix `smtpd_hard_error_limit`: at this many errors the session ends with 421.
pub const HARD_ERROR_LIMIT: u32 = 20;
/// Postfix `smtpd_junk_command_limit`.
pub const JUNK_LIMIT: u32 = 100;
/// Exim `smtp_max_unknown_commands`.
pub const UNKNOWN_LIMIT: u32 = 3;
/// ETRN commands one session may send (sendmail's `MAXETRNCOMMANDS` idea).
pub const ETRN_PER_SESSION: u32 = 10;
/// RFC 5321 §6.3 loop detection: more `Received:` headers than this is a loop.
pub const MAX_HOPS: usize = 100;
/// Largest header section accepted (reference/bad-input.md G13).
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;
/// Pending output above which the session stops reading (a client that never reads).
pub const MAX_PENDING_OUTPUT: usize = 64 * 1024;

/// What the session asks the event loop to do with the spool.
#[derive(Debug)]
pub enum Event {
    /// DATA was accepted: create the queue file for this envelope.
    MessageStart(Box<Envelope>),
    /// Message octets (dot-unstuffed, CR LF line ends).
    MessageData(Vec<u8>),
    /// The message is complete: commit it and call [`ServerSession::handle_commit`].
    MessageEnd,
    /// The message is refused (size, hops, client gone): drop the temp file.
    MessageAbort,
    /// An allowed, well-formed ETRN: release the queue and call
    /// [`ServerSession::handle_etrn`] with the reply.
    Etrn(EtrnTarget),
    /// A presented secret for the auth helper: call
    /// [`ServerSession::handle_auth`] with its verdict.
    AuthCheck(crate::smtp::sasl::Check),
    /// An ATRN the session's own checks allow (authenticated, entitled to every
    /// domain listed): the loop checks again with the auth helper, claims the held
    /// mail and calls [`ServerSession::handle_atrn`].
    Atrn {
        /// The authenticated identity.
        user: String,
        /// The domains listed (empty: all of the identity's).
        domains: Vec<String>,
    },
}

pub use super::policy::{AuthOffer, AuthOutcome, Context, Policy, RcptVerdict, Recipients};

#[derive(Debug)]
struct Transaction {
    from: ReversePath,
    body: Body,
    rcpts: Vec<Recipient>,
    /// MAIL said SMTPUTF8.
    smtputf8: bool,
    /// MAIL's RET and ENVID.
    dsn: crate::vocab::dsn::MailDsn,
    /// Recipients an alias expanded to several destinations whose sender asked
    /// for SUCCESS: each gets one "expanded" notice (RFC 3461 §6.2.7.3).
    expanded: Expanded,
}

#[derive(Debug)]
struct DataPhase {
    decoder: DataDecoder,
    started: Instant,
    raw_octets: u64,
    refused: Option<Reply>,
    /// The BDAT chunk being read; `None` while reading DATA.
    chunk: Option<bdat::Chunk>,
}

/// The session's state; each variant names what the session waits for.
#[derive(Debug)]
enum State {
    /// The greet pause: the client must not talk yet.
    Greeting { until: Instant },
    /// Between transactions.
    Ready,
    /// After MAIL (boxed: an idle session stays small).
    InTransaction(Box<Transaction>),
    /// Reading the message.
    ReceivingData(Box<DataPhase>),
    /// Between BDAT chunks: the message goes on with the next BDAT.
    Chunking(Box<DataPhase>),
    /// The message is complete and waits for the spool commit.
    AwaitCommit,
    /// An ETRN waits for the queue's answer.
    AwaitEtrn,
    /// An ATRN waits for the loop's answer.
    AwaitAtrn,
    /// `250` to ATRN is queued: once it is written the loop turns the connection
    /// around (this session is over; a client session takes the link).
    Turned,
    /// `220` to STARTTLS is queued: the loop starts TLS once it is written.
    AwaitTls,
    /// An AUTH exchange waits for the client's next line.
    Authenticating(crate::smtp::sasl::Exchange, crate::smtp::sasl::Mech),
    /// A presented secret waits for the auth helper's verdict.
    AwaitAuth(String, crate::smtp::sasl::Mech),
    /// The last reply is queued; the connection closes once it is written.
    Closing,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Greeting { .. } => "Greeting",
            State::Ready => "Ready",
            State::InTransaction(_) => "InTransaction",
            State::ReceivingData(_) => "ReceivingData",
            State::Chunking(_) => "Chunking",
            State::AwaitCommit => "AwaitCommit",
            State::AwaitEtrn => "AwaitEtrn",
            State::AwaitAtrn => "AwaitAtrn",
            State::Turned => "Turned",
            State::AwaitTls => "AwaitTls",
            State::Authenticating(..) => "Authenticating",
            State::AwaitAuth(..) => "AwaitAuth",
            State::Closing => "Closing",
        }
    }
}

/// One inbound SMTP session.
#[derive(Debug)]
pub struct ServerSession {
    id: u32,
    client: SocketAddr,
    trusted: bool,
    /// HELO/EHLO name and whether it was EHLO. Kept across transactions.
    helo: Option<(String, bool)>,
    state: State,
    inbuf: Vec<u8>,
    out: crate::buf::OutBuf,
    events: VecDeque<Event>,
    deadline: Instant,
    paused_until: Option<Instant>,
    errors: u32,
    junk: u32,
    unknown_in_row: u32,
    /// Messages accepted in this session.
    pub accepted: u32,
    etrns: u32,
    /// The daemon is stopping: the next command gets 421.
    draining: bool,
    /// What the listener serves.
    kind: ListenKind,
    /// TLS version and cipher, once TLS is on.
    tls: Option<String>,
    /// The authenticated identity and the domains it may release.
    identity: Option<(String, Vec<String>)>,
    /// Failed AUTH exchanges in this session, and those started (each CRAM-MD5
    /// challenge is new).
    auth_failures: u32,
    auth_started: u32,
    /// A reply held back (slowed AUTH failures), and whether it ends the session.
    delayed: Option<(Instant, Reply, bool)>,
    /// The rest of an over-long line is thrown away up to its LF.
    discard_line: bool,
    /// On a connection we turned around with ATRN: the provider's name.
    provider: Option<String>,
    /// A refused BDAT's chunk still to be read and thrown away, and the reply that
    /// follows it (RFC 3030 §2: the octets are data whatever the verdict).
    skip: Option<Box<(u64, Reply)>>,
    /// The message being received: its "expanded" notices, due once it is queued.
    expanded: Option<Box<Expanded>>,
}

/// Recipients an alias expanded whose sender asked for SUCCESS.
type Expanded = Vec<(super::Mailbox, crate::vocab::dsn::RcptDsn)>;

/// A command line for the log: what follows `AUTH <mechanism>` is a secret.
fn redacted(line: &[u8]) -> String {
    let text = sanitize(line);
    let mut w = text.splitn(3, ' ');
    match (w.next(), w.next(), w.next()) {
        (Some(v), Some(m), Some(_)) if v.eq_ignore_ascii_case("AUTH") => {
            format!("{v} {m} <redacted>")
        }
        _ => text,
    }
}

fn with_address(r: &Reply, addr: &str) -> Reply {
    let (code, rest) = r.text.split_once(' ').unwrap_or((&r.text, ""));
    Reply::new(r.code, format!("{code} <{addr}>: {rest}"))
}

impl ServerSession {
    /// A new session for a client that just connected.
    pub fn new(
        id: u32,
        client: SocketAddr,
        kind: ListenKind,
        ctx: &Context<'_>,
        now: Instant,
    ) -> ServerSession {
        let trusted = ctx
            .policy
            .mynetworks
            .iter()
            .any(|c| c.contains(client.ip()));
        let pause = ctx.policy.greet_pause;
        let mut s = ServerSession::blank(id, client, trusted, kind, now + COMMAND_TIMEOUT);
        log::info!(
            "{:08x} smtp connect address={} trusted={} listener={}",
            id,
            client,
            if trusted { "yes" } else { "no" },
            kind.name()
        );
        if trusted || pause.is_zero() {
            s.reply(&Reply::greeting(ctx.policy.hostname));
        } else {
            s.state = State::Greeting { until: now + pause };
        }
        s
    }

    fn blank(
        id: u32,
        client: SocketAddr,
        trusted: bool,
        kind: ListenKind,
        deadline: Instant,
    ) -> ServerSession {
        ServerSession {
            id,
            client,
            trusted,
            helo: None,
            state: State::Ready,
            inbuf: Vec::new(),
            out: crate::buf::OutBuf::new(),
            events: VecDeque::new(),
            deadline,
            paused_until: None,
            errors: 0,
            junk: 0,
            unknown_in_row: 0,
            accepted: 0,
            etrns: 0,
            draining: false,
            kind,
            tls: None,
            identity: None,
            auth_failures: 0,
            auth_started: 0,
            delayed: None,
            discard_line: false,
            provider: None,
            skip: None,
            expanded: None,
        }
    }

    /// A session that only says `421` and closes (connection limits).
    pub fn refuse(id: u32, client: SocketAddr, host: &str, why: &str, now: Instant) -> Self {
        log::warn!(
            "{:08x} smtp refused address={} reason=\"{}\"",
            id,
            client,
            why
        );
        let mut s = ServerSession::blank(
            id,
            client,
            false,
            ListenKind::Smtp,
            now + Duration::from_secs(10),
        );
        s.state = State::Closing;
        s.reply(&Reply::closing(host, &format!("4.7.0 Error: {why}")));
        s
    }

    /// Session id (for log lines).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The client's address.
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    /// Name of the current state (for trace logs and tests).
    pub fn state_name(&self) -> &'static str {
        self.state.name()
    }

    fn reply(&mut self, r: &Reply) {
        log::debug!(
            "{:08x} smtp reply \"{}\"",
            self.id,
            sanitize(r.to_string().as_bytes())
        );
        r.write_to(&mut self.out);
    }

    fn set_state(&mut self, s: State) {
        log::trace!(
            "{:08x} smtp state {} -> {}",
            self.id,
            self.state.name(),
            s.name()
        );
        self.state = s;
    }

    fn close_with(&mut self, r: &Reply) {
        self.abort_message();
        self.reply(r);
        self.set_state(State::Closing);
    }

    fn abort_message(&mut self) {
        if matches!(self.state, State::ReceivingData(_) | State::Chunking(_)) {
            self.events.push_back(Event::MessageAbort);
        }
    }

    /// Replies with an error and counts it (Postfix error counting and tarpit).
    fn error(&mut self, r: &Reply, now: Instant, host: &str) {
        self.reply(r);
        self.count_error(now, host);
    }

    /// Counts one error: past the soft limit input pauses, at the hard limit 421.
    fn count_error(&mut self, now: Instant, host: &str) {
        self.errors += 1;
        if self.errors >= HARD_ERROR_LIMIT {
            log::warn!(
                "{:08x} smtp too-many-errors address={}",
                self.id,
                self.client
            );
            self.close_with(&Reply::closing(host, "4.7.0 Error: too many errors"));
        } else if self.errors > SOFT_ERROR_LIMIT {
            self.paused_until = Some(now + ERROR_SLEEP);
        }
    }

    /// Bytes to send; the caller removes what it wrote with [`Self::consume_output`].
    pub fn pending_output(&self) -> &[u8] {
        self.out.as_slice()
    }

    /// Marks `n` output octets as written.
    pub fn consume_output(&mut self, n: usize) {
        self.out.consume(n);
    }

    /// The next event for the loop.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether the loop should read from the socket now.
    pub fn wants_read(&self, now: Instant) -> bool {
        !matches!(
            self.state,
            State::AwaitCommit
                | State::AwaitEtrn
                | State::AwaitAtrn
                | State::Turned
                | State::Closing
                | State::AwaitTls
                | State::AwaitAuth(..)
        ) && self.paused_until.is_none_or(|t| t <= now)
            && self.delayed.is_none()
            && self.out.len() < MAX_PENDING_OUTPUT
    }

    /// Whether the session is over once its output is written.
    pub fn is_closing(&self) -> bool {
        matches!(self.state, State::Closing)
    }

    /// When the session next needs [`Self::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = match &self.state {
            State::Greeting { until } => *until,
            State::AwaitCommit
            | State::AwaitEtrn
            | State::AwaitAtrn
            | State::Turned
            | State::AwaitAuth(..) => return None,
            // Between BDAT chunks the message's clock runs on: a client cannot
            // stretch it with small chunks (reference/bad-input.md G21).
            State::ReceivingData(d) | State::Chunking(d) => {
                let grace = Duration::from_secs(d.raw_octets / MIN_DATA_RATE);
                d.started + COMMAND_TIMEOUT + grace
            }
            _ => self.deadline,
        };
        let t = match self.delayed {
            Some((at, _, _)) => at.min(t),
            None => t,
        };
        Some(match self.paused_until {
            Some(p) => p.min(t),
            None => t,
        })
    }

    /// Acts on the passing of time: the greet pause ends, a pause ends, or the client
    /// was too slow (421 4.4.2).
    pub fn handle_timeout(&mut self, now: Instant, ctx: &Context<'_>) {
        let host = &ctx.policy.hostname;
        if let State::Greeting { until } = self.state {
            if now >= until {
                self.set_state(State::Ready);
                self.deadline = now + COMMAND_TIMEOUT;
                self.reply(&Reply::greeting(host));
            }
            return;
        }
        if self.delayed.as_ref().is_some_and(|d| d.0 <= now) {
            if let Some((_, r, close)) = self.delayed.take() {
                if close {
                    self.close_with(&r);
                } else {
                    self.reply(&r);
                }
            }
            self.deadline = now + COMMAND_TIMEOUT;
            self.process(now, ctx);
        }
        if self.paused_until.is_some_and(|t| t <= now) {
            self.paused_until = None;
            self.process(now, ctx);
        }
        if self.poll_timeout().is_some_and(|t| t <= now) && !self.is_closing() {
            log::info!("{:08x} smtp timeout state={}", self.id, self.state.name());
            self.close_with(&Reply::closing(host, "4.4.2 Error: timeout exceeded"));
        }
    }

    /// The client closed its side: drop any message in progress.
    pub fn handle_eof(&mut self) {
        self.abort_message();
        if !self.is_closing() {
            self.set_state(State::Closing);
        }
    }

    /// The daemon is stopping: a session in the middle of a message finishes it and
    /// gets `421` at its next command; any other session gets `421` now.
    pub fn drain(&mut self, host: &str) {
        match self.state {
            State::ReceivingData(_) | State::AwaitCommit => self.draining = true,
            _ => self.shutdown(host),
        }
    }

    /// Whether a message is being received or committed.
    pub fn busy(&self) -> bool {
        matches!(
            self.state,
            State::ReceivingData(_) | State::AwaitCommit | State::AwaitEtrn | State::AwaitAtrn
        )
    }

    /// The daemon is stopping: say so and close.
    pub fn shutdown(&mut self, host: &str) {
        if self.turned() {
            // The 250 to ATRN is out: nothing may follow it from this side.
            self.set_state(State::Closing);
        } else if !self.is_closing() {
            self.close_with(&Reply::closing(host, "4.3.2 Service shutting down"));
        }
    }

    /// Feeds octets read from the socket.
    pub fn handle_input(&mut self, data: &[u8], now: Instant, ctx: &Context<'_>) {
        match self.state {
            State::Closing => return,
            State::Greeting { .. } => {
                log::warn!("{:08x} smtp early-talker address={}", self.id, self.client);
                self.close_with(&Reply::SYNC_ERROR);
                return;
            }
            _ => {}
        }
        self.inbuf.extend_from_slice(data);
        self.process(now, ctx);
    }

    /// Processes buffered input until it runs out or the state blocks.
    fn process(&mut self, now: Instant, ctx: &Context<'_>) {
        let host = ctx.policy.hostname;
        let mut pos = 0;
        loop {
            if self.paused_until.is_some_and(|t| t > now) || self.delayed.is_some() {
                break;
            }
            if self.skip.is_some() {
                pos += self.skip_chunk(pos, now, host);
                if self.skip.is_some() {
                    break;
                }
                continue;
            }
            if self.discard_line {
                match self.inbuf[pos..].iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        pos += i + 1;
                        self.discard_line = false;
                    }
                    None => {
                        pos = self.inbuf.len();
                        break;
                    }
                }
            }
            match &mut self.state {
                State::Closing
                | State::AwaitCommit
                | State::AwaitEtrn
                | State::AwaitAtrn
                | State::Turned
                | State::AwaitAuth(..)
                | State::Greeting { .. } => break,
                State::AwaitTls => {
                    // Whatever came behind STARTTLS is never answered.
                    pos = self.inbuf.len();
                    break;
                }
                State::Authenticating(..) => match self.auth_line(pos, now, ctx) {
                    Some(n) => pos += n,
                    None => break,
                },
                State::ReceivingData(d) if d.chunk.is_some() => {
                    let (used, done) = self.chunk_input(pos, ctx);
                    pos += used;
                    if !done {
                        break;
                    }
                    self.chunk_end(now, ctx);
                }
                State::ReceivingData(d) => {
                    let mut chunk = Vec::new();
                    let input = &self.inbuf[pos..];
                    let progress = d.decoder.feed(input, &mut chunk);
                    let used = match progress {
                        DataProgress::End(n) => n,
                        DataProgress::More => input.len(),
                    };
                    d.raw_octets += used as u64;
                    pos += used;
                    let max = ctx.policy.max_message_size;
                    if d.refused.is_none() {
                        if d.decoder.size as u64 > max {
                            d.refused = Some(Reply::MESSAGE_TOO_BIG);
                        } else if d.decoder.header_bytes() > MAX_HEADER_BYTES {
                            d.refused = Some(Reply::HEADER_TOO_BIG);
                        } else if !chunk.is_empty() {
                            self.events.push_back(Event::MessageData(chunk));
                        }
                    }
                    match progress {
                        DataProgress::More => break,
                        DataProgress::End(_) => self.end_of_data(now, host),
                    }
                }
                State::Ready | State::InTransaction(_) | State::Chunking(_) => {
                    match line::next_command_line(&self.inbuf[pos..]) {
                        Frame::Partial => break,
                        Frame::BareLf => {
                            self.close_with(&Reply::BARE_LF);
                            break;
                        }
                        Frame::TooLong => {
                            log::warn!(
                                "{:08x} smtp line-too-long address={}",
                                self.id,
                                self.client
                            );
                            self.close_with(&Reply::LINE_TOO_LONG);
                            break;
                        }
                        Frame::Line(l, n) => {
                            let l = l.to_vec();
                            pos += n;
                            let more = pos < self.inbuf.len();
                            self.command(&l, more, now, ctx);
                            self.deadline = now + COMMAND_TIMEOUT;
                        }
                    }
                }
            }
        }
        self.inbuf.drain(..pos);
        if self.is_closing() {
            self.inbuf.clear();
        }
    }

    fn reset_transaction(&mut self) {
        self.abort_message();
        if matches!(self.state, State::InTransaction(_) | State::Chunking(_)) {
            self.set_state(State::Ready);
        }
    }
}

#[path = "server_txn.rs"]
mod txn;

#[path = "server_command.rs"]
mod command_verb;

#[path = "server_bdat.rs"]
mod bdat;

#[path = "server_auth.rs"]
mod auth;

#[path = "server_etrn.rs"]
mod etrn_verb;

#[path = "server_atrn.rs"]
mod atrn_verb;

#[cfg(test)]
#[path = "server_tests.rs"]
pub(crate) mod tests;
