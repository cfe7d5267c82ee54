//! The delivery machine without sockets: a scripted driver carries out its actions,
//! with a real client session fed scripted server replies.

use super::*;
use crate::config::scheduler::{SmtpOptions, Transport};
use crate::dns::nexthop::Source;
use crate::sched::{JobId, ThreadKey};
use crate::smtp::client::{ClientSession, OutMessage};
use crate::vocab::Mailbox;

fn hop(n: u8) -> Hop {
    Hop {
        host: format!("mx{n}.example"),
        pref: Some(u16::from(n) * 10),
        addr: SocketAddr::from(([192, 0, 2, n], 25)),
        source: Source::Files,
    }
}

fn job(msgs: &[(u64, usize)]) -> Job {
    let rcpts = msgs
        .iter()
        .flat_map(|&(m, n)| {
            (0..n).map(move |idx| RcptRef {
                msg: MessageId(m),
                idx,
            })
        })
        .collect();
    Job {
        id: JobId(7),
        key: ThreadKey {
            channel: "smtp".into(),
            host: "dest.example".into(),
        },
        transport: Transport::Smtp(SmtpOptions::default()),
        rcpts,
    }
}

/// Runs the machine's actions: connects succeed unless the address is in `dead`;
/// the session gets `script` replies one by one as it waits for them.
struct Driver {
    d: Delivery,
    now: Instant,
    penalties: Penalties,
    dead: Vec<SocketAddr>,
    session: Option<ClientSession>,
    connects: Vec<SocketAddr>,
    records: Vec<Recorded>,
    finished: Option<Vec<(RcptRef, RcptResult)>>,
    closes: usize,
}

impl Driver {
    fn new(j: Job) -> Driver {
        Driver {
            d: Delivery::new(j, SmtpOptions::default()),
            now: Instant::now(),
            penalties: Penalties::default(),
            dead: Vec::new(),
            session: None,
            connects: Vec::new(),
            records: Vec::new(),
            finished: None,
            closes: 0,
        }
    }

    /// Carries out actions until the machine waits for the outside.
    fn run(&mut self) {
        while let Some(a) = self.d.poll_action() {
            match a {
                Action::Lookup { host, .. } => assert_eq!(host, "dest.example"),
                Action::Connect(h) => {
                    self.connects.push(h.addr);
                    if self.dead.contains(&h.addr) {
                        self.d.connect_failed("connection refused");
                    } else {
                        self.d.connected();
                        self.session = Some(ClientSession::new("me.example", self.now));
                    }
                }
                Action::Load(_, idxs) => {
                    let m = OutMessage {
                        from: Some(Mailbox::parse("s@me.example").unwrap()),
                        rcpts: idxs
                            .iter()
                            .map(|i| Mailbox::parse(&format!("u{i}@dest.example")).unwrap())
                            .collect(),
                        size: 3,
                        has_8bit: false,
                        eight_bit: false,
                        seven_bit_only: false,
                        ..Default::default()
                    };
                    self.session.as_mut().unwrap().start(m, self.now);
                }
                Action::Quit => self.session.as_mut().unwrap().quit(self.now),
                Action::Close => {
                    self.closes += 1;
                    self.session = None;
                }
                Action::Penalise(a) => self.penalties.penalise(a, self.now),
                Action::Record { outcomes, .. } => self.records.extend(outcomes),
                Action::Finished(r) => self.finished = Some(r),
            }
        }
    }

    /// The server says `text`; the session's events go to the machine.
    fn server(&mut self, text: &str) {
        let s = self.session.as_mut().expect("a session");
        s.handle_input(text.as_bytes(), self.now);
        self.pump();
    }

    fn pump(&mut self) {
        loop {
            let Some(s) = self.session.as_mut() else {
                return;
            };
            if s.wants_body() {
                s.feed_body(b"x\r\n", self.now);
                s.end_body(self.now);
            }
            let n = s.pending_output().len();
            s.consume_output(n);
            match s.poll_event() {
                Some(ev) => {
                    self.d.session(ev);
                    self.run();
                }
                None => return,
            }
        }
    }

    fn resolve(&mut self, hops: Vec<Hop>) {
        self.run();
        self.d
            .resolved(Outcome::Hops(hops), &self.penalties, self.now);
        self.run();
    }

    fn delivered(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.result == RcptResult::Delivered)
            .count()
    }
}

const GREETED: &str = "220 mx ESMTP\r\n250-mx\r\n250 PIPELINING\r\n";

#[test]
fn resolving_failure_and_deferral_end_the_job_for_every_recipient() {
    let mut t = Driver::new(job(&[(1, 2), (2, 1)]));
    t.run();
    assert_eq!(t.d.state(), State::Resolving);
    t.d.resolved(
        Outcome::Failed {
            status: "5.1.2",
            reason: "no such domain".into(),
        },
        &t.penalties,
        t.now,
    );
    t.run();
    assert_eq!(t.d.state(), State::Finished);
    let f = t.finished.unwrap();
    assert_eq!(f.len(), 3);
    assert!(f
        .iter()
        .all(|(_, r)| matches!(r, RcptResult::Failed(s, _) if s == "5.1.2")));
    assert_eq!(t.records.len(), 3, "each outcome is recorded once");

    let mut t = Driver::new(job(&[(1, 1)]));
    t.run();
    t.d.resolved(
        Outcome::Deferred {
            status: "4.4.3",
            reason: "SERVFAIL".into(),
        },
        &t.penalties,
        t.now,
    );
    t.run();
    assert!(matches!(&t.finished.unwrap()[0].1, RcptResult::Deferred(w) if w == "SERVFAIL"));
}

#[test]
fn connect_failure_moves_to_the_next_hop_and_penalises_the_first() {
    let mut t = Driver::new(job(&[(1, 1)]));
    t.dead = vec![hop(1).addr];
    t.resolve(vec![hop(1), hop(2)]);
    assert_eq!(t.connects, vec![hop(1).addr, hop(2).addr]);
    assert_eq!(t.d.state(), State::Greeting(1));
    assert_eq!(t.d.relay(), "mx2.example[192.0.2.2]:25");
    t.server(GREETED);
    assert_eq!(t.d.state(), State::Sending(1, MessageId(1)));
    t.server("250 ok\r\n250 ok\r\n354 go\r\n");
    t.server("250 queued as X\r\n");
    assert_eq!(t.delivered(), 1);
    assert_eq!(t.d.state(), State::Quitting(1));
    t.server("221 bye\r\n");
    assert_eq!(t.d.state(), State::Finished);
    assert_eq!(t.finished.as_ref().unwrap()[0].1, RcptResult::Delivered);
    // The next job tries the penalised hop last.
    assert!(t.penalties.is_penalised(&hop(1).addr, t.now));
    let mut next = Driver::new(job(&[(2, 1)]));
    next.penalties = t.penalties;
    next.resolve(vec![hop(1), hop(2)]);
    assert_eq!(
        next.connects,
        vec![hop(2).addr],
        "the dead hop waits its turn"
    );
    // Its penalty runs out.
    assert!(!next
        .penalties
        .is_penalised(&hop(1).addr, next.now + PENALTY + Duration::from_secs(1)));
}

#[test]
fn no_hop_left_defers_with_the_last_error() {
    let mut t = Driver::new(job(&[(1, 2)]));
    t.dead = vec![hop(1).addr, hop(2).addr];
    t.resolve(vec![hop(1), hop(2)]);
    assert_eq!(t.d.state(), State::Finished);
    let f = t.finished.unwrap();
    assert!(
        f.iter().all(|(_, r)| matches!(r, RcptResult::Deferred(w)
            if w.contains("mx2.example[192.0.2.2]:25") && w.contains("refused"))),
        "{f:?}"
    );
    let mut t = Driver::new(job(&[(1, 1)]));
    t.resolve(vec![]);
    assert!(matches!(&t.finished.unwrap()[0].1,
        RcptResult::Deferred(w) if w == "no address to connect to"));
}

#[test]
fn a_421_mid_transaction_defers_the_message_and_tries_the_next_hop() {
    let mut t = Driver::new(job(&[(1, 1), (2, 1)]));
    t.resolve(vec![hop(1), hop(2)]);
    t.server(GREETED);
    // MAIL accepted, then the server gives up.
    t.server("250 ok\r\n421 4.3.2 shutting down\r\n");
    assert_eq!(t.closes, 1);
    assert_eq!(t.d.state(), State::Greeting(1), "hop 2 now");
    assert!(t.records.is_empty(), "nothing decided for message 1 yet");
    t.server(GREETED);
    for _ in 0..2 {
        t.server("250 ok\r\n250 ok\r\n354 go\r\n");
        t.server("250 ok\r\n");
    }
    t.server("221 bye\r\n");
    assert_eq!(t.delivered(), 2, "both messages over the second hop");
    assert_eq!(t.d.state(), State::Finished);
}

#[test]
fn a_421_on_the_last_hop_defers_what_is_left() {
    let mut t = Driver::new(job(&[(1, 1), (2, 1)]));
    t.resolve(vec![hop(1)]);
    t.server(GREETED);
    t.server("250 ok\r\n250 ok\r\n354 go\r\n");
    t.server("250 ok\r\n");
    assert_eq!(t.delivered(), 1);
    t.server("421 4.7.0 too many messages\r\n");
    let f = t.finished.unwrap();
    assert_eq!(f[0].1, RcptResult::Delivered);
    assert!(
        matches!(&f[1].1, RcptResult::Deferred(w) if w.contains("421 4.7.0")),
        "{f:?}"
    );
}

#[test]
fn a_timeout_defers() {
    let mut t = Driver::new(job(&[(1, 1)]));
    t.resolve(vec![hop(1)]);
    t.server(GREETED);
    let s = t.session.as_mut().unwrap();
    let later = t.now + Duration::from_secs(3600);
    s.handle_timeout(later);
    t.pump();
    let f = t.finished.unwrap();
    assert!(
        matches!(&f[0].1, RcptResult::Deferred(w) if w.contains("timeout")),
        "{f:?}"
    );
}

#[test]
fn the_remote_closing_after_the_dot_is_not_a_delivery() {
    let mut t = Driver::new(job(&[(1, 1)]));
    t.resolve(vec![hop(1)]);
    t.server(GREETED);
    t.server("250 ok\r\n250 ok\r\n354 go\r\n");
    assert_eq!(
        t.session.as_ref().unwrap().state(),
        crate::smtp::client::State::AwaitDot
    );
    t.session.as_mut().unwrap().handle_eof();
    t.pump();
    assert_eq!(t.delivered(), 0);
    let f = t.finished.unwrap();
    assert!(
        matches!(&f[0].1, RcptResult::Deferred(w) if w.contains("closed")),
        "{f:?}"
    );
}

#[test]
fn an_unreadable_message_is_deferred_and_the_next_one_goes() {
    let mut t = Driver::new(job(&[(1, 1), (2, 1)]));
    t.resolve(vec![hop(1)]);
    // Ready: the machine asks for message 1; it cannot be read.
    let s = t.session.as_mut().unwrap();
    s.handle_input(GREETED.as_bytes(), t.now);
    assert_eq!(s.poll_event(), Some(ClientEvent::Ready));
    t.d.session(ClientEvent::Ready);
    assert_eq!(t.d.poll_action(), Some(Action::Load(MessageId(1), vec![0])));
    t.d.load_failed("gone");
    t.run();
    assert_eq!(t.d.state(), State::Sending(0, MessageId(2)));
    t.server("250 ok\r\n250 ok\r\n354 go\r\n");
    t.server("250 ok\r\n");
    t.server("221 bye\r\n");
    let f = t.finished.unwrap();
    assert!(matches!(&f[0].1, RcptResult::Deferred(w) if w.contains("gone")));
    assert_eq!(f[1].1, RcptResult::Delivered);
}

#[test]
fn a_5xx_recipient_is_recorded_failed_with_its_status() {
    let mut t = Driver::new(job(&[(1, 2)]));
    t.resolve(vec![hop(1)]);
    t.server(GREETED);
    t.server("250 ok\r\n550 5.1.1 no such user\r\n250 ok\r\n354 go\r\n");
    t.server("250 ok\r\n");
    t.server("221 bye\r\n");
    let f = t.finished.unwrap();
    assert!(matches!(&f[0].1, RcptResult::Failed(s, _) if s == "5.1.1"));
    assert_eq!(f[1].1, RcptResult::Delivered);
    assert_eq!(t.records.len(), 2);
}

#[test]
fn states_have_names() {
    assert_eq!(
        State::Sending(0, MessageId(255)).to_string(),
        "sending(hop 1, 00000000000000ff)"
    );
    assert_eq!(State::Connecting(2).to_string(), "connecting(hop 3)");
}

#[test]
fn a_turned_delivery_starts_at_the_greeting_and_a_broken_session_defers_without_penalty() {
    let mut d = Delivery::turned(job(&[(1, 1), (2, 1)]), SmtpOptions::default(), hop(9));
    assert_eq!(d.state(), State::Greeting(0));
    assert_eq!(d.poll_action(), None, "no lookup, no connect");
    d.session(ClientEvent::Ready);
    assert!(matches!(
        d.poll_action(),
        Some(Action::Load(MessageId(1), _))
    ));
    d.session(ClientEvent::Done(vec![RcptOutcome::Delivered(
        "250 ok".into(),
    )]));
    assert!(matches!(d.poll_action(), Some(Action::Record { .. })));
    d.session(ClientEvent::Ready);
    assert!(matches!(
        d.poll_action(),
        Some(Action::Load(MessageId(2), _))
    ));
    d.session(ClientEvent::Failed {
        temporary: true,
        auth: false,
        reason: "connection closed by the server".into(),
    });
    let actions: Vec<Action> = std::iter::from_fn(|| d.poll_action()).collect();
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Penalise(_))),
        "the customer's address is never penalised: {actions:?}"
    );
    let Some(Action::Finished(results)) = actions.last() else {
        panic!("{actions:?}");
    };
    assert_eq!(results.len(), 2);
    assert!(matches!(results[1].1, RcptResult::Deferred(_)));
}

#[test]
fn remote_refusals_are_worded_as_postfix_words_them() {
    use crate::machines::delivery::{remote_reply, said};
    let r = said("mx.y.example[192.0.2.7]", "RCPT: 550 5.1.1 no such user");
    assert_eq!(
        r,
        "host mx.y.example[192.0.2.7] said: 550 5.1.1 no such user (in reply to RCPT TO command)"
    );
    assert_eq!(remote_reply(&r), "550 5.1.1 no such user");
    assert!(said("h[1.2.3.4]", "end of DATA: 451 4.3.0 later")
        .ends_with("(in reply to end of DATA command)"));
    assert!(said("h[1.2.3.4]", "MAIL: 553 no").contains("(in reply to MAIL FROM command)"));
    assert_eq!(said("h[1.2.3.4]", "connection closed"), "connection closed");
    assert_eq!(remote_reply("connection closed"), "connection closed");
    let e = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
    assert_eq!(crate::vocab::os_error(&e), "Connection refused");
}
