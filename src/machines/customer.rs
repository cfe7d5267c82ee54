//! The customer's side of a request to another server (DESIGN.md §5.9, RFC 2645
//! and RFC 1985): `etrnd atrn`, and a link-up action's ATRN or ETRN. The server is
//! looked up, its addresses are tried in turn, and on the session that opens
//! (EHLO, STARTTLS, AUTH are the client session's) the machine asks: ETRN for each
//! target then QUIT, the worst reply being the outcome; or ATRN, which needs us
//! authenticated, and whose `250` turns the connection around.
//!
//! ```text
//!  AwaitLookup ──hops──▶ Connecting(n) ──connected──▶ Session
//!                          │  ▲   failed, next hop       │ ready
//!                          └──┘                          ├── ETRN ──▶ Etrning ──▶ (QUIT)
//!                          │ no hop left, link down      └── ATRN ──▶ AwaitAtrnReply
//!                          ▼                                    250 │      │ other
//!                         Done ◀──── closed, failed ─────── Turned ◀┘      ▼ (QUIT)
//! ```
//!
//! Pure: the daemon looks up, connects and drives the client session; it hands
//! the machine what happened and carries out the [`Step`] it answers.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::smtp::reply::Reply;

/// What a customer request asks of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// `ATRN` for these domains (none: all of ours), then turn around.
    Atrn(Vec<String>),
    /// `ETRN` each target in turn (a link-up action), then QUIT.
    Etrn(Vec<String>),
}

impl Ask {
    /// The verb its log lines start with.
    pub fn verb(&self) -> &'static str {
        match self {
            Ask::Atrn(_) => "atrn",
            Ask::Etrn(_) => "etrn",
        }
    }
}

/// Where a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The server's addresses are being looked up.
    AwaitLookup,
    /// Connecting to its `n`-th address (from 0).
    Connecting(usize),
    /// Connected: the client session greets, secures and authenticates.
    Session,
    /// ETRNs are sent one after another.
    Etrning,
    /// ATRN is sent; the provider may take ten minutes.
    AwaitAtrnReply,
    /// The request is over on this connection; QUIT is on its way.
    Quitting,
    /// `250` to ATRN: the connection is a server session for the provider.
    Turned,
    /// Over, the requester told.
    Done,
}

/// What the daemon does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Connect to this address.
    Connect(SocketAddr),
    /// Send `ETRN target`.
    Etrn(String),
    /// Send `ATRN` for these domains.
    Atrn(Vec<String>),
    /// Send QUIT.
    Quit,
    /// Turn the connection around into a server session.
    Turn,
    /// Nothing for now.
    Wait,
    /// The request is over: this is the requester's reply.
    Done(Reply),
}

/// One request.
#[derive(Debug, Clone)]
pub struct Customer {
    /// The server as asked (a name or an address).
    pub server: String,
    /// Its port.
    pub port: u16,
    /// What is asked of it.
    pub ask: Ask,
    state: State,
    hops: Vec<SocketAddr>,
    /// ETRN targets not yet sent, and the replies to those sent.
    etrn_next: VecDeque<String>,
    etrn_replies: Vec<(u16, String)>,
    /// The reply to ATRN, once it came.
    atrn: Option<(u16, String)>,
    /// Why the last connection or session failed.
    failure: Option<Reply>,
}

impl Customer {
    /// A new request; its first step is the lookup of [`Customer::lookup_name`].
    pub fn new(server: String, port: u16, ask: Ask) -> Customer {
        let etrn_next = match &ask {
            Ask::Etrn(t) => t.iter().cloned().collect(),
            Ask::Atrn(_) => VecDeque::new(),
        };
        Customer {
            server,
            port,
            ask,
            state: State::AwaitLookup,
            hops: Vec::new(),
            etrn_next,
            etrn_replies: Vec::new(),
            atrn: None,
            failure: None,
        }
    }

    /// Where the request is.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The name to look up: an address literal for an address.
    pub fn lookup_name(&self) -> String {
        if self.server.parse::<std::net::IpAddr>().is_ok() {
            format!("[{}]", self.server)
        } else {
            self.server.clone()
        }
    }

    /// The lookup ended: the addresses (the request's port is put on each), or why
    /// there are none. `link_down` names the link the server is behind if it is
    /// down now.
    pub fn resolved(
        &mut self,
        found: Result<Vec<SocketAddr>, String>,
        link_down: Option<&str>,
    ) -> Step {
        if self.state != State::AwaitLookup {
            return Step::Wait;
        }
        match found {
            Ok(hops) => {
                self.hops = hops
                    .into_iter()
                    .map(|mut a| {
                        a.set_port(self.port);
                        a
                    })
                    .collect();
                self.connect(0, link_down)
            }
            Err(reason) => self.done(Reply::new(
                421,
                format!("4.4.1 cannot find {}: {reason}", self.server),
            )),
        }
    }

    /// The connection to the current address failed before SMTP (refused, timed
    /// out, or it could not be opened): the next address.
    pub fn connect_failed(&mut self, why: &str, link_down: Option<&str>) -> Step {
        let State::Connecting(n) = self.state else {
            return Step::Wait;
        };
        self.failure = Some(Reply::new(421, format!("4.4.1 {}: {why}", self.server)));
        self.connect(n + 1, link_down)
    }

    /// The connection to the current address could not even be opened (no socket,
    /// no route): `why` names the address.
    pub fn open_failed(&mut self, why: &str, link_down: Option<&str>) -> Step {
        let State::Connecting(n) = self.state else {
            return Step::Wait;
        };
        self.failure = Some(Reply::new(421, format!("4.4.1 {why}")));
        self.connect(n + 1, link_down)
    }

    fn connect(&mut self, n: usize, link_down: Option<&str>) -> Step {
        if let Some(l) = link_down {
            return self.done(Reply::new(421, format!("4.4.0 link {l} went down")));
        }
        match self.hops.get(n) {
            Some(&addr) => {
                self.state = State::Connecting(n);
                Step::Connect(addr)
            }
            None => {
                let r = self.failure.take().unwrap_or_else(|| {
                    Reply::new(
                        421,
                        format!("4.4.1 {} has no address to connect to", self.server),
                    )
                });
                self.done(r)
            }
        }
    }

    /// The connection is up: the client session starts.
    pub fn connected(&mut self) {
        if matches!(self.state, State::Connecting(_)) {
            self.state = State::Session;
        }
    }

    /// The session is ready for requests (greeted, secured, and authenticated if
    /// it could be).
    pub fn ready(&mut self, authenticated: bool) -> Step {
        if self.state != State::Session {
            return Step::Wait;
        }
        match self.ask.clone() {
            Ask::Etrn(_) => {
                self.state = State::Etrning;
                self.next_etrn()
            }
            Ask::Atrn(_) if !authenticated => {
                self.failure = Some(Reply::new(
                    530,
                    format!(
                        "5.7.0 {} did not let us authenticate (no AUTH mechanism in common)",
                        self.server
                    ),
                ));
                self.state = State::Quitting;
                Step::Quit
            }
            Ask::Atrn(domains) => {
                self.state = State::AwaitAtrnReply;
                Step::Atrn(domains)
            }
        }
    }

    /// The reply to an ETRN: the next target, or QUIT after the last.
    pub fn etrn_reply(&mut self, code: u16, text: String) -> Step {
        if self.state != State::Etrning {
            return Step::Wait;
        }
        self.etrn_replies.push((code, text));
        self.next_etrn()
    }

    fn next_etrn(&mut self) -> Step {
        match self.etrn_next.pop_front() {
            Some(t) => Step::Etrn(t),
            None => {
                self.state = State::Quitting;
                Step::Quit
            }
        }
    }

    /// The reply to ATRN: `250` turns the connection around; anything else ends
    /// the request after QUIT.
    pub fn atrn_reply(&mut self, code: u16, text: String) -> Step {
        if self.state != State::AwaitAtrnReply {
            return Step::Wait;
        }
        self.atrn = Some((code, text));
        if code == 250 {
            self.state = State::Turned;
            Step::Turn
        } else {
            self.state = State::Quitting;
            Step::Quit
        }
    }

    /// The client session failed: `auth` when the server refused our credentials.
    pub fn failed(&mut self, temporary: bool, auth: bool, reason: &str) -> Step {
        if matches!(self.state, State::Done | State::Turned) {
            return Step::Wait;
        }
        let (code, status) = match (auth, temporary) {
            (true, _) => (535, "5.7.8"),
            (false, true) => (421, "4.4.2"),
            (false, false) => (554, "5.0.0"),
        };
        self.failure = Some(Reply::new(
            code,
            format!("{status} {}: {reason}", self.server),
        ));
        self.closed()
    }

    /// The client session ended (QUIT answered, or the connection closed) without
    /// a turn-around: the outcome from what was heard.
    pub fn closed(&mut self) -> Step {
        if matches!(self.state, State::Done | State::Turned) {
            return Step::Wait;
        }
        let etrn = matches!(self.ask, Ask::Etrn(_));
        let server = &self.server;
        let r = match (self.atrn.take(), self.failure.take()) {
            (_, Some(f)) => f,
            (None, None) if etrn && !self.etrn_replies.is_empty() => {
                // The worst reply decides: 5xx, then 4xx, else every target started.
                let worst = self
                    .etrn_replies
                    .iter()
                    .map(|(c, _)| *c)
                    .max()
                    .unwrap_or(250);
                let code = if worst < 400 { 250 } else { worst };
                let text: Vec<&str> = self.etrn_replies.iter().map(|(_, t)| t.as_str()).collect();
                Reply::new(code, format!("{server}: ETRN: {}", text.join("; ")))
            }
            (Some((453, text)), None) => {
                Reply::new(250, format!("2.0.0 {server} has no mail for us ({text})"))
            }
            // Anything but 250 (turned) and 453 (no mail) is not a success, whatever
            // its code says.
            (Some((code, text)), None) if code < 400 => Reply::new(
                451,
                format!("4.5.0 {server}: ATRN: unexpected reply {code} {text}"),
            ),
            (Some((code, text)), None) => Reply::new(
                code,
                format!(
                    "{} {server}: ATRN: {text}",
                    if code < 500 { "4.7.0" } else { "5.7.0" }
                ),
            ),
            (None, None) => Reply::new(421, format!("4.4.2 {server}: connection closed")),
        };
        self.done(r)
    }

    /// The turned-around connection closed after `accepted` messages.
    pub fn turned_closed(&mut self, accepted: u32) -> Step {
        if self.state != State::Turned {
            return Step::Wait;
        }
        let r = Reply::new(
            250,
            format!("2.0.0 {accepted} message(s) received from {}", self.server),
        );
        self.done(r)
    }

    fn done(&mut self, r: Reply) -> Step {
        self.state = State::Done;
        Step::Done(r)
    }
}

#[cfg(test)]
#[path = "customer_tests.rs"]
mod tests;
