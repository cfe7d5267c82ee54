//! Requests a client session makes of the server besides mail: ATRN (RFC 2645) as
//! the ODMR customer, and ETRN (RFC 1985) as a link-up action; and how a session is
//! set up before it starts (trace name, transcript, no ESMTP).

use std::time::Instant;

use super::{ClientEvent, ClientSession, Expect, ServerReply, State};

impl ClientSession {
    /// The provider's session on a connection the customer turned around with ATRN:
    /// it waits for the customer's greeting; the TLS state, if any, is carried over
    /// (no STARTTLS, no AUTH on this side).
    pub fn turned(helo_name: &str, tls: Option<String>, now: Instant) -> ClientSession {
        let mut s = ClientSession::new(helo_name, now);
        s.tls = tls;
        s
    }

    /// Whether the server accepted our AUTH.
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// Sends `ATRN` with `domains` (none: all of ours), only when idle.
    pub fn atrn(&mut self, domains: &[String], now: Instant) {
        if self.state != State::Idle {
            return;
        }
        let line = if domains.is_empty() {
            "ATRN\r\n".to_string()
        } else {
            format!("ATRN {}\r\n", domains.join(","))
        };
        self.set_state(State::AwaitAtrn);
        self.send(Expect::Atrn, line.as_bytes(), now);
    }

    pub(super) fn on_atrn(&mut self, r: ServerReply) {
        let text = r.summary();
        if r.code == 250 {
            if self.parser.has_partial() {
                return self.fail(
                    true,
                    "the provider sent data behind its 250 to ATRN: connection dropped".into(),
                );
            }
            self.set_state(State::Turned);
        } else {
            self.set_state(State::Idle);
        }
        self.events
            .push_back(ClientEvent::Atrn { code: r.code, text });
    }

    /// Sends `ETRN target`, only when idle; the reply comes as [`ClientEvent::Etrn`].
    pub fn etrn(&mut self, target: &str, now: Instant) {
        if self.state != State::Idle {
            return;
        }
        let line = format!("ETRN {target}\r\n");
        self.set_state(State::AwaitEtrn);
        self.send(Expect::Etrn, line.as_bytes(), now);
    }

    pub(super) fn on_etrn(&mut self, r: ServerReply) {
        let text = r.summary();
        self.set_state(State::Idle);
        self.events
            .push_back(ClientEvent::Etrn { code: r.code, text });
    }
}

/// How a session is set up before it starts.
impl ClientSession {
    /// Names what the session serves in its trace lines (a job id, a request), so
    /// concurrent sessions can be told apart.
    pub fn with_trace(mut self, trace: String) -> Self {
        self.trace = trace;
        self
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
}
