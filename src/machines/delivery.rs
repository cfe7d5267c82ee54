//! `Delivery`: one outbound SMTP job as a sans-IO state machine (OpenSMTPD's split of
//! `mta.c` from `mta_session.c`): it decides, the loop does. Inputs are what happened
//! (a lookup finished, a connect failed, the client session said something); outputs
//! are [`Action`]s the loop carries out (look up, connect, load a message, quit,
//! close, penalise a hop, record outcomes, finish). No socket, file or clock inside.
//!
//! ```text
//!  Resolving --hops--> Connecting(n) --connected--> Greeting(n) --Ready--> Sending(n, msg)
//!      |                  |    ^ connect failed: n+1        |  ^            |  Done: Record,
//!      | failed/deferred  |    '----------------------------'  '------------'  next message
//!      v                  v    session failed: Close, n+1     |
//!   Finished <------------+---- no hop left: the rest deferred  '--> Quitting --Closed--> Finished
//! ```
//!
//! Every recipient outcome leaves through one action, [`Action::Record`] (the loop
//! logs it and, for a delivered recipient, makes it durable at once; the queue file is
//! unlinked only by the scheduler's completion, in one place), and the whole job's
//! results through [`Action::Finished`] for the scheduler's retry decision.
//!
//! A hop that refused a connection or broke a session is *penalised* for
//! [`PENALTY`] (OpenSMTPD's route penalty): the next jobs try it after the others, so
//! a dead primary MX does not cost every job a connect timeout.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::scheduler::SmtpOptions;
use crate::dns::{Hop, Outcome};
use crate::sched::{Job, RcptRef, RcptResult};
use crate::smtp::client::{ClientEvent, RcptOutcome};
use crate::store::spool::MessageId;

/// How long a failed hop goes to the back of the line.
pub const PENALTY: Duration = Duration::from_secs(120);
/// Most hops remembered as penalised (the oldest are forgotten first).
pub const MAX_PENALTIES: usize = 1024;

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the next hops.
    Resolving,
    /// Connecting to hop `n`.
    Connecting(usize),
    /// Connected to hop `n`, waiting for the session to be ready.
    Greeting(usize),
    /// Sending a message over hop `n`.
    Sending(usize, MessageId),
    /// Nothing left to send: QUIT is out.
    Quitting(usize),
    /// Done; the results are out.
    Finished,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Resolving => write!(f, "resolving"),
            State::Connecting(n) => write!(f, "connecting(hop {})", n + 1),
            State::Greeting(n) => write!(f, "greeting(hop {})", n + 1),
            State::Sending(n, m) => write!(f, "sending(hop {}, {m})", n + 1),
            State::Quitting(n) => write!(f, "quitting(hop {})", n + 1),
            State::Finished => write!(f, "finished"),
        }
    }
}

/// One recipient's outcome, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The recipient.
    pub rcpt: RcptRef,
    /// What became of it.
    pub result: RcptResult,
    /// The remote's reply for a delivered recipient.
    pub reply: Option<String>,
}

/// What the loop must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Find the next hops of `host`.
    Lookup {
        /// The route's host.
        host: String,
        /// `-x`: addresses only, no MX.
        no_mx: bool,
    },
    /// Open a connection to `hop` (then [`Delivery::connected`] or
    /// [`Delivery::connect_failed`]).
    Connect(Hop),
    /// Open message `msg` and start it on the session for recipients `idxs` (or
    /// [`Delivery::load_failed`]).
    Load(MessageId, Vec<usize>),
    /// Send QUIT on the session.
    Quit,
    /// Close the current connection.
    Close,
    /// Put this address at the back of the line for a while.
    Penalise(SocketAddr),
    /// Outcomes to log and, for delivered recipients, to make durable now.
    Record {
        /// `host[ip]:port` of the hop, or `none`.
        relay: String,
        /// The outcomes.
        outcomes: Vec<Recorded>,
    },
    /// The job is over: every recipient's result, for the scheduler.
    Finished(Vec<(RcptRef, RcptResult)>),
}

/// Recently failed hops.
#[derive(Debug, Default)]
pub struct Penalties {
    until: HashMap<SocketAddr, Instant>,
}

impl Penalties {
    /// Penalises `addr` until `now + PENALTY`.
    pub fn penalise(&mut self, addr: SocketAddr, now: Instant) {
        if self.until.len() >= MAX_PENALTIES {
            self.until.retain(|_, t| *t > now);
            if self.until.len() >= MAX_PENALTIES {
                if let Some(oldest) = self.until.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a) {
                    self.until.remove(&oldest);
                }
            }
        }
        self.until.insert(addr, now + PENALTY);
    }

    /// Whether `addr` is penalised at `now`.
    pub fn is_penalised(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.until.get(addr).is_some_and(|t| *t > now)
    }

    /// `hops` with the penalised ones moved to the end (order otherwise kept).
    pub fn order(&self, hops: Vec<Hop>, now: Instant) -> Vec<Hop> {
        let (mut good, bad): (Vec<Hop>, Vec<Hop>) = hops
            .into_iter()
            .partition(|h| !self.is_penalised(&h.addr, now));
        good.extend(bad);
        good
    }
}

/// A hop as Postfix's `relay=` field names it: `host[ip]:port`, with the address as
/// the host of a literal route (`[192.0.2.1]:2525` gives `192.0.2.1[192.0.2.1]:2525`).
pub fn relay_name(hop: &Hop) -> String {
    if hop.unix_path().is_some() {
        return hop.host.clone();
    }
    let host = if hop.host.starts_with('[') {
        hop.addr.ip().to_string()
    } else {
        hop.host.clone()
    };
    format!("{host}[{}]:{}", hop.addr.ip(), hop.addr.port())
}

/// The one hop a transport's `-F` names, instead of a lookup.
pub fn forced_hop(opts: &SmtpOptions) -> Option<Hop> {
    use crate::config::transport::Forced;
    let (host, addr, source) = match opts.forced.as_ref()? {
        Forced::Inet(a) => (format!("[{}]", a.ip()), *a, crate::dns::Source::Literal),
        Forced::Unix(p) => (
            format!("UNIX:{}", p.display()),
            SocketAddr::from(([0, 0, 0, 0], 0)),
            crate::dns::Source::Unix,
        ),
    };
    Some(Hop {
        host,
        pref: None,
        addr,
        source,
    })
}

/// Recipients grouped by message, in order.
pub fn group(rcpts: &[RcptRef]) -> VecDeque<(MessageId, Vec<usize>)> {
    let mut out: VecDeque<(MessageId, Vec<usize>)> = VecDeque::new();
    for r in rcpts {
        match out.back_mut() {
            Some((m, v)) if *m == r.msg => v.push(r.idx),
            _ => out.push_back((r.msg, vec![r.idx])),
        }
    }
    out
}

/// One smtp job.
#[derive(Debug)]
pub struct Delivery {
    job: Job,
    opts: SmtpOptions,
    state: State,
    pending: VecDeque<(MessageId, Vec<usize>)>,
    current: Option<(MessageId, Vec<usize>)>,
    results: Vec<(RcptRef, RcptResult)>,
    hops: Vec<Hop>,
    last_error: String,
    actions: VecDeque<Action>,
    /// On a connection turned around by ATRN: one hop, already connected, never
    /// penalised (the customer's address changes from one dial-up to the next).
    turned: bool,
}

impl Delivery {
    /// Starts a job: the first action is the lookup.
    pub fn new(job: Job, opts: SmtpOptions) -> Delivery {
        let mut d = Delivery::starting(job, opts, State::Resolving, Vec::new());
        d.actions.push_back(Action::Lookup {
            host: d.job.key.host.clone(),
            no_mx: d.opts.no_mx,
        });
        d
    }

    /// A job on a connection the customer turned around with ATRN (RFC 2645): no
    /// lookup and no connect, the session waits for the customer's greeting.
    pub fn turned(job: Job, opts: SmtpOptions, hop: Hop) -> Delivery {
        let mut d = Delivery::starting(job, opts, State::Greeting(0), vec![hop]);
        d.turned = true;
        d
    }

    fn starting(job: Job, opts: SmtpOptions, state: State, hops: Vec<Hop>) -> Delivery {
        Delivery {
            pending: group(&job.rcpts),
            opts,
            state,
            current: None,
            results: Vec::new(),
            hops,
            last_error: String::new(),
            actions: VecDeque::new(),
            job,
            turned: false,
        }
    }

    fn penalise(&mut self, n: usize) {
        if let (Some(h), false) = (self.hops.get(n), self.turned) {
            self.actions.push_back(Action::Penalise(h.addr));
        }
    }

    /// The job.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The transport's options.
    pub fn opts(&self) -> &SmtpOptions {
        &self.opts
    }

    /// Where the delivery is.
    pub fn state(&self) -> State {
        self.state
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The current hop's `relay=` name.
    pub fn relay(&self) -> String {
        match self.state {
            State::Connecting(n)
            | State::Greeting(n)
            | State::Sending(n, _)
            | State::Quitting(n) => self.hops.get(n).map(relay_name),
            _ => None,
        }
        .unwrap_or_else(|| "none".into())
    }

    fn set_state(&mut self, to: State) {
        if self.state != to {
            log::debug!(
                "{} delivery-state job={} from={} to={}",
                self.job.key,
                self.job.id.0,
                self.state,
                to
            );
            self.state = to;
        }
    }

    fn hop_index(&self) -> Option<usize> {
        match self.state {
            State::Connecting(n)
            | State::Greeting(n)
            | State::Sending(n, _)
            | State::Quitting(n) => Some(n),
            _ => None,
        }
    }

    /// The lookup finished. `penalties` orders the hops.
    pub fn resolved(&mut self, outcome: Outcome, penalties: &Penalties, now: Instant) {
        if self.state != State::Resolving {
            return;
        }
        match outcome {
            Outcome::Hops(mut h) => {
                // `-p PORT` replaces SMTP_PORT, not a port the route names.
                let route_port = self.job.key.host.contains("]:");
                if let (Some(p), false) = (self.opts.port, route_port) {
                    for hop in &mut h {
                        hop.addr.set_port(p);
                    }
                }
                self.hops = penalties.order(h, now);
                self.connect(0);
            }
            Outcome::Failed { status, reason } => {
                self.fail_rest(RcptResult::Failed(status.into(), reason))
            }
            Outcome::Deferred { reason, .. } => self.fail_rest(RcptResult::Deferred(reason)),
        }
    }

    fn connect(&mut self, n: usize) {
        match self.hops.get(n).cloned() {
            Some(hop) => {
                self.set_state(State::Connecting(n));
                self.actions.push_back(Action::Connect(hop));
            }
            None => {
                let why = if self.last_error.is_empty() {
                    "no address to connect to".to_string()
                } else {
                    self.last_error.clone()
                };
                self.fail_rest(RcptResult::Deferred(why));
            }
        }
    }

    /// The connection to the current hop is up.
    pub fn connected(&mut self) {
        if let State::Connecting(n) = self.state {
            self.set_state(State::Greeting(n));
        }
    }

    /// The connection to the current hop failed before SMTP: the next hop.
    pub fn connect_failed(&mut self, why: &str) {
        let State::Connecting(n) = self.state else {
            return;
        };
        let relay = self.relay();
        self.last_error = format!("connect to {relay}: {why}");
        self.penalise(n);
        self.actions.push_back(Action::Close);
        self.connect(n + 1);
    }

    /// The lookup or connection the machine asked for was not made: the link it
    /// needs is down, or the local network failed before a packet left. Every
    /// recipient not yet done waits again untried (no attempt, no penalty).
    pub fn untried(&mut self, why: &str) {
        if matches!(self.state, State::Resolving | State::Connecting(_)) {
            self.actions.push_back(Action::Close);
            self.fail_rest(RcptResult::Untried(why.to_string()));
        }
    }

    /// What the client session reported.
    pub fn session(&mut self, ev: ClientEvent) {
        let Some(n) = self.hop_index() else { return };
        match ev {
            ClientEvent::Ready => self.next_message(n),
            // The driver starts TLS on the link, or fetches the token AUTH needs;
            // nothing changes here. A delivery never sends ATRN.
            ClientEvent::StartTls
            | ClientEvent::NeedToken
            | ClientEvent::Atrn { .. }
            | ClientEvent::Etrn { .. } => {}
            ClientEvent::Done(outcomes) => self.message_done(outcomes),
            ClientEvent::Failed { reason, .. } => {
                let relay = self.relay();
                if let Some(c) = self.current.take() {
                    self.pending.push_front(c);
                }
                self.last_error = format!("{relay}: {reason}");
                self.penalise(n);
                self.actions.push_back(Action::Close);
                if n + 1 < self.hops.len() {
                    self.connect(n + 1);
                } else {
                    let why = self.last_error.clone();
                    self.fail_rest(RcptResult::Deferred(why));
                }
            }
            ClientEvent::Closed => {
                self.actions.push_back(Action::Close);
                if self.pending.is_empty() && self.current.is_none() {
                    self.finish();
                } else {
                    self.fail_rest(RcptResult::Deferred("connection closed".into()));
                }
            }
        }
    }

    fn next_message(&mut self, n: usize) {
        match self.pending.pop_front() {
            Some((msg, idxs)) => {
                self.set_state(State::Sending(n, msg));
                self.current = Some((msg, idxs.clone()));
                self.actions.push_back(Action::Load(msg, idxs));
            }
            None => {
                self.set_state(State::Quitting(n));
                self.actions.push_back(Action::Quit);
            }
        }
    }

    /// The message the last [`Action::Load`] named could not be opened: its
    /// recipients are deferred and the next message goes.
    pub fn load_failed(&mut self, why: &str) {
        let (State::Sending(n, _), Some((msg, idxs))) = (self.state, self.current.take()) else {
            return;
        };
        let result = RcptResult::Deferred(format!("cannot read queue file: {why}"));
        let outcomes = idxs
            .into_iter()
            .map(|idx| Recorded {
                rcpt: RcptRef { msg, idx },
                result: result.clone(),
                reply: None,
            })
            .collect();
        self.record(outcomes);
        self.next_message(n);
    }

    fn message_done(&mut self, outcomes: Vec<RcptOutcome>) {
        let Some((msg, idxs)) = self.current.take() else {
            return;
        };
        let host = self.said_by();
        let recorded = idxs
            .iter()
            .zip(outcomes)
            .map(|(idx, o)| {
                let rcpt = RcptRef { msg, idx: *idx };
                let (result, reply) = match o {
                    RcptOutcome::Delivered(text) => (RcptResult::Delivered, Some(text)),
                    RcptOutcome::Deferred(t) => (RcptResult::Deferred(said(&host, &t)), None),
                    RcptOutcome::Failed(t) => {
                        let status = crate::message::bounce::status_of(strip_command(&t).1);
                        (RcptResult::Failed(status, said(&host, &t)), None)
                    }
                };
                Recorded {
                    rcpt,
                    result,
                    reply,
                }
            })
            .collect();
        self.record(recorded);
    }

    fn record(&mut self, outcomes: Vec<Recorded>) {
        if outcomes.is_empty() {
            return;
        }
        self.results
            .extend(outcomes.iter().map(|r| (r.rcpt, r.result.clone())));
        self.actions.push_back(Action::Record {
            relay: self.relay(),
            outcomes,
        });
    }

    /// The current hop as Postfix names a remote in its reasons: `host[address]`.
    fn said_by(&self) -> String {
        match self.hop_index().and_then(|n| self.hops.get(n)) {
            Some(h) => format!("{}[{}]", h.host, h.addr.ip()),
            None => self.relay(),
        }
    }

    /// Ends the job with `result` for every recipient not yet done.
    fn fail_rest(&mut self, result: RcptResult) {
        if let Some(c) = self.current.take() {
            self.pending.push_front(c);
        }
        let outcomes = self
            .pending
            .drain(..)
            .flat_map(|(msg, idxs)| idxs.into_iter().map(move |idx| RcptRef { msg, idx }))
            .map(|rcpt| Recorded {
                rcpt,
                result: result.clone(),
                reply: None,
            })
            .collect();
        self.record(outcomes);
        self.finish();
    }

    fn finish(&mut self) {
        self.set_state(State::Finished);
        let results = std::mem::take(&mut self.results);
        self.actions.push_back(Action::Finished(results));
    }
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;

/// The command a refusal answered (the client session's prefix) and the reply.
fn strip_command(t: &str) -> (Option<&'static str>, &str) {
    for (prefix, cmd) in [
        ("MAIL: ", "MAIL FROM"),
        ("RCPT: ", "RCPT TO"),
        ("DATA: ", "DATA"),
        ("end of DATA: ", "end of DATA"),
    ] {
        if let Some(rest) = t.strip_prefix(prefix) {
            return (Some(cmd), rest);
        }
    }
    (None, t)
}

/// A remote refusal as Postfix words it: `host mx.example[192.0.2.7] said: 550 5.1.1
/// no such user (in reply to RCPT TO command)`; other reasons stay as they are.
pub fn said(host: &str, t: &str) -> String {
    match strip_command(t) {
        (Some(cmd), reply) => format!("host {host} said: {reply} (in reply to {cmd} command)"),
        (None, _) => t.to_string(),
    }
}

/// The remote's own reply inside a reason worded by [`said`] (for a DSN's
/// Diagnostic-Code and a log line's `dsn=`); other reasons as they are.
pub fn remote_reply(reason: &str) -> &str {
    reason
        .split_once(" said: ")
        .map(|(_, r)| r.rsplit_once(" (in reply to ").map_or(r, |(x, _)| x))
        .unwrap_or(reason)
}
