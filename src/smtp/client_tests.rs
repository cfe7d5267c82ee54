//! Client session tests against scripted server replies, time simulated.

use super::*;
use crate::vocab::Mailbox;

pub(super) fn msg(rcpts: &[&str], body: &str) -> (OutMessage, Vec<u8>) {
    let m = OutMessage {
        from: Some(Mailbox::parse("s@ours.example").unwrap()),
        rcpts: rcpts.iter().map(|r| Mailbox::parse(r).unwrap()).collect(),
        size: body.len() as u64,
        has_8bit: body.bytes().any(|b| b >= 0x80),
        eight_bit: false,
        seven_bit_only: false,
        ..Default::default()
    };
    (m, body.as_bytes().to_vec())
}

pub(super) struct T {
    pub(super) c: ClientSession,
    now: Instant,
    pub(super) events: Vec<ClientEvent>,
    /// The current message's body, fed (in small pieces) when the session asks.
    body: Vec<u8>,
}

impl T {
    pub(super) fn new() -> T {
        let now = Instant::now();
        T {
            c: ClientSession::new("mx.ours.example", now),
            now,
            events: Vec::new(),
            body: Vec::new(),
        }
    }

    pub(super) fn start(&mut self, (m, body): (OutMessage, Vec<u8>)) {
        self.body = body;
        self.c.start(m, self.now);
    }

    fn feed(&mut self) {
        while self.c.wants_body() {
            if self.body.is_empty() {
                self.c.end_body(self.now);
            } else {
                let n = self.body.len().min(7);
                let piece: Vec<u8> = self.body.drain(..n).collect();
                self.c.feed_body(&piece, self.now);
            }
        }
    }

    pub(super) fn server(&mut self, s: &str) {
        self.c.handle_input(s.as_bytes(), self.now);
        self.feed();
        while let Some(e) = self.c.poll_event() {
            self.events.push(e);
        }
    }

    pub(super) fn sent(&mut self) -> String {
        let s = String::from_utf8_lossy(self.c.pending_output()).into_owned();
        let n = self.c.pending_output().len();
        self.c.consume_output(n);
        s
    }

    /// Greeted with the given EHLO extensions.
    fn ready(ext: &[&str]) -> T {
        let mut t = T::new();
        t.server("220 sink.example ESMTP\r\n");
        assert_eq!(t.sent(), "EHLO mx.ours.example\r\n");
        let mut r = String::from("250-sink.example\r\n");
        for e in ext {
            r.push_str(&format!("250-{e}\r\n"));
        }
        r.push_str("250 HELP\r\n");
        t.server(&r);
        assert_eq!(t.events.pop(), Some(ClientEvent::Ready));
        t
    }
}

#[test]
fn pipelined_transaction_with_mixed_recipients() {
    let mut t = T::ready(&["PIPELINING", "SIZE 1000000", "8BITMIME"]);
    t.start(msg(
        &["a@x.example", "b@x.example"],
        "Subject: s\r\n\r\nhi\r\n",
    ));
    assert_eq!(
        t.sent(),
        "MAIL FROM:<s@ours.example> SIZE=18\r\nRCPT TO:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\n"
    );
    t.server("250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n354 go\r\n");
    assert_eq!(t.sent(), "Subject: s\r\n\r\nhi\r\n.\r\n");
    t.server("250 2.0.0 queued as X\r\n");
    assert_eq!(
        t.events,
        vec![
            ClientEvent::Done(vec![
                RcptOutcome::Delivered("250 2.0.0 queued as X".into()),
                RcptOutcome::Failed("RCPT: 550 5.1.1 no such user".into()),
            ]),
            ClientEvent::Ready
        ]
    );
    t.c.quit(t.now);
    assert_eq!(t.sent(), "QUIT\r\n");
    t.server("221 bye\r\n");
    assert_eq!(t.events.last(), Some(&ClientEvent::Closed));
}

#[test]
fn lockstep_without_pipelining() {
    let mut t = T::ready(&[]);
    t.start(msg(&["a@x.example"], "x\r\n"));
    assert_eq!(t.sent(), "MAIL FROM:<s@ours.example>\r\n");
    t.server("250 ok\r\n");
    assert_eq!(t.sent(), "RCPT TO:<a@x.example>\r\n");
    t.server("250 ok\r\n");
    assert_eq!(t.sent(), "DATA\r\n");
    t.server("354 go\r\n");
    assert_eq!(t.sent(), "x\r\n.\r\n");
    t.server("250 ok\r\n");
    assert!(
        matches!(&t.events[0], ClientEvent::Done(v) if matches!(v[0], RcptOutcome::Delivered(_)))
    );
}

#[test]
fn all_recipients_refused_skips_data_and_resets() {
    let mut t = T::ready(&[]);
    t.start(msg(&["a@x.example"], "x\r\n"));
    t.sent();
    t.server("250 ok\r\n");
    t.sent();
    t.server("451 4.3.0 later\r\n");
    assert_eq!(t.sent(), "RSET\r\n");
    assert_eq!(
        t.events[0],
        ClientEvent::Done(vec![RcptOutcome::Deferred("RCPT: 451 4.3.0 later".into())])
    );
    t.server("250 ok\r\n");
    assert_eq!(t.events.last(), Some(&ClientEvent::Ready));
}

#[test]
fn mail_refused_fails_every_recipient() {
    let mut t = T::ready(&["PIPELINING"]);
    t.start(msg(&["a@x.example", "b@x.example"], "x\r\n"));
    t.sent();
    t.server("550 5.7.1 sender refused\r\n503 need mail\r\n503 need mail\r\n503 need mail\r\n");
    assert_eq!(t.sent(), "RSET\r\n");
    match &t.events[0] {
        ClientEvent::Done(v) => {
            assert!(v
                .iter()
                .all(|o| matches!(o, RcptOutcome::Failed(w) if w.contains("sender refused"))))
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn pipelined_354_without_recipients_sends_empty_body() {
    let mut t = T::ready(&["PIPELINING"]);
    t.start(msg(&["a@x.example"], "secret\r\n"));
    t.sent();
    t.server("250 ok\r\n550 no\r\n354 go\r\n");
    assert_eq!(t.sent(), ".\r\n");
    t.server("554 no valid recipients\r\n");
    assert_eq!(t.sent(), "RSET\r\n");
    assert_eq!(
        t.events[0],
        ClientEvent::Done(vec![RcptOutcome::Failed("RCPT: 550 no".into())])
    );
}

#[test]
fn final_dot_4xx_and_5xx() {
    for (reply, deferred) in [
        ("451 4.3.0 disk\r\n", true),
        ("554 5.6.0 content\r\n", false),
    ] {
        let mut t = T::ready(&["PIPELINING"]);
        t.start(msg(&["a@x.example"], "x\r\n"));
        t.sent();
        t.server("250 ok\r\n250 ok\r\n354 go\r\n");
        t.sent();
        t.server(reply);
        match &t.events[0] {
            ClientEvent::Done(v) => assert_eq!(matches!(v[0], RcptOutcome::Deferred(_)), deferred),
            e => panic!("{e:?}"),
        }
    }
}

#[test]
fn ehlo_refused_falls_back_to_helo() {
    let mut t = T::new();
    t.server("220 old.example\r\n");
    t.sent();
    t.server("502 what\r\n");
    assert_eq!(t.sent(), "HELO mx.ours.example\r\n");
    t.server("250 old.example\r\n");
    assert_eq!(t.events, vec![ClientEvent::Ready]);
}

#[test]
fn greeting_failures() {
    let mut t = T::new();
    t.server("421 busy\r\n");
    assert!(matches!(
        &t.events[0],
        ClientEvent::Failed {
            temporary: true,
            ..
        }
    ));
    let mut t = T::new();
    t.server("554 go away\r\n");
    assert!(matches!(
        &t.events[0],
        ClientEvent::Failed {
            temporary: false,
            ..
        }
    ));
}

#[test]
fn injected_reply_after_greeting_aborts() {
    let mut t = T::new();
    t.server("220 hi\r\n250 injected\r\n");
    // The 250 was taken as the EHLO reply only if EHLO had been sent and read; it was
    // sent in this same turn, so the server answered before reading it.
    let mut t2 = T::ready(&[]);
    t2.server("250 unsolicited\r\n");
    assert!(
        matches!(
            &t2.events[0],
            ClientEvent::Failed {
                temporary: true,
                ..
            }
        ),
        "{:?}",
        t2.events
    );
    let _ = t;
}

#[test]
fn malformed_and_oversized_replies_abort() {
    for bad in [
        "hello\r\n".to_string(),
        "2x0 no\r\n".into(),
        "999 no\r\n".into(),
        "250-a\r\n251 b\r\n".into(),
        format!("220 {}\r\n", "x".repeat(5000)),
        "250-x\r\n".repeat(200),
    ] {
        let mut t = T::new();
        t.server(&bad);
        assert!(
            matches!(
                &t.events.first(),
                Some(ClientEvent::Failed {
                    temporary: true,
                    ..
                })
            ),
            "{bad:.40}: {:?}",
            t.events
        );
    }
}

#[test]
fn reply_text_is_sanitised() {
    let mut t = T::new();
    t.server("421 bad\x1b[31m thing\r\n");
    match &t.events[0] {
        ClientEvent::Failed { reason, .. } => assert!(!reason.contains('\x1b'), "{reason}"),
        e => panic!("{e:?}"),
    }
}

#[test]
fn body_is_dot_stuffed_and_folded() {
    let long = "y".repeat(2500);
    let dots = ".".repeat(2500);
    let body = format!("Subject: {long}\r\n\r\n.dot\r\n{long}\r\n..\r\n{dots}\r\n");
    // Through the session, as the driver feeds it after the 354.
    let mut t = T::ready(&["PIPELINING"]);
    t.start(msg(&["a@x.example"], &body));
    t.sent();
    t.server("250 ok\r\n250 ok\r\n354 go\r\n");
    assert_eq!(t.c.state(), State::AwaitDot);
    let text = t.sent();
    // str::lines drops the CR LF: each line's octets without it.
    let longest = text.lines().map(str::len).max().unwrap();
    assert_eq!(longest, MAX_LINE, "no line over 998 octets");
    assert!(
        text.lines()
            .filter(|l| l.starts_with(' '))
            .all(|l| l.len() <= MAX_LINE),
        "folded header lines too"
    );
    assert!(text.contains("\r\n..dot\r\n"));
    assert!(text.contains("\r\n...\r\n"));
    assert!(text.ends_with("\r\n.\r\n"));
    // Header folding continues with white space.
    assert!(text.starts_with(&format!("Subject: {}\r\n y", &long[..MAX_LINE - 9])));
    assert!(!text
        .as_bytes()
        .windows(2)
        .any(|w| w[1] == b'\n' && w[0] != b'\r'));
}

#[test]
fn server_size_limit_fails_without_sending() {
    let mut t = T::ready(&["SIZE 10"]);
    t.start(msg(&["a@x.example"], "this is longer than ten\r\n"));
    assert_eq!(t.sent(), "");
    t.server("");
    assert!(matches!(&t.events[0], ClientEvent::Done(v) if matches!(v[0], RcptOutcome::Failed(_))));
    assert!(t.c.is_idle());
    // Ready again at once, so the driver starts the next message on this connection.
    assert!(
        matches!(t.events.get(1), Some(ClientEvent::Ready)),
        "{:?}",
        t.events
    );
}

#[test]
fn timeouts() {
    let mut t = T::new();
    let d = t.c.poll_timeout().unwrap();
    assert_eq!(d - t.now, TIMEOUT_COMMAND);
    t.c.handle_timeout(d);
    match t.c.poll_event() {
        Some(ClientEvent::Failed {
            temporary: true,
            auth: false,
            reason,
        }) => assert_eq!(reason, "timeout waiting for the reply to the greeting"),
        e => panic!("{e:?}"),
    }
    let mut t = T::ready(&["PIPELINING"]);
    t.start(msg(&["a@x.example"], "x\r\n"));
    t.server("250 ok\r\n250 ok\r\n");
    assert_eq!(t.c.poll_timeout().unwrap() - t.now, TIMEOUT_DATA);
    t.server("354 go\r\n");
    assert_eq!(t.c.poll_timeout().unwrap() - t.now, TIMEOUT_DOT);
    let d = t.c.poll_timeout().unwrap();
    t.c.handle_timeout(d);
    let reasons: Vec<String> = std::iter::from_fn(|| t.c.poll_event())
        .filter_map(|e| match e {
            ClientEvent::Failed { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        ["timeout waiting for the reply to the end of the message"]
    );
}

#[test]
fn connection_drop_mid_transaction_defers() {
    let mut t = T::ready(&["PIPELINING"]);
    t.start(msg(&["a@x.example"], "x\r\n"));
    t.server("250 ok\r\n250 ok\r\n354 go\r\n");
    t.c.handle_eof();
    assert!(matches!(
        t.c.poll_event(),
        Some(ClientEvent::Failed {
            temporary: true,
            ..
        })
    ));
}

#[test]
fn parser_chunking() {
    let input = b"250-first\r\n250-second\r\n250 last\r\n220 next\r\n";
    for split in 0..input.len() {
        let mut p = ReplyParser::default();
        p.feed(&input[..split]);
        let mut got = Vec::new();
        while let Some(r) = p.next_reply() {
            got.push(r.unwrap());
        }
        p.feed(&input[split..]);
        while let Some(r) = p.next_reply() {
            got.push(r.unwrap());
        }
        assert_eq!(got.len(), 2, "split {split}");
        assert_eq!(got[0].lines, vec!["first", "second", "last"]);
        assert_eq!(got[1].code, 220);
    }
}

#[test]
fn body_is_fed_between_watermarks_and_states_are_named() {
    let mut t = T::ready(&["PIPELINING"]);
    assert_eq!(t.c.state().to_string(), "Idle");
    let (m, _) = msg(&["a@x.example"], "");
    let size = 1_000_000;
    t.c.start(OutMessage { size, ..m }, t.now);
    assert_eq!(t.c.state(), State::InTransaction);
    t.sent();
    t.c.handle_input(b"250 ok\r\n250 ok\r\n354 go\r\n", t.now);
    assert_eq!(t.c.state(), State::SendingBody);
    let line = b"0123456789012345678901234567890123456789\r\n";
    let mut fed = 0u64;
    let mut peak = 0;
    let mut wire = 0;
    while fed < size {
        // The driver feeds while the session wants more; the socket takes 1448.
        while t.c.wants_body() && fed < size {
            t.c.feed_body(line, t.now);
            fed += line.len() as u64;
        }
        peak = peak.max(t.c.pending_output().len());
        let n = t.c.pending_output().len().min(1448);
        wire += n;
        t.c.consume_output(n);
    }
    assert!(peak < LOW_WATER + line.len(), "output peaked at {peak}");
    t.c.end_body(t.now);
    assert_eq!(t.c.state(), State::AwaitDot);
    wire += t.sent().len();
    assert!(wire as u64 >= size + 3);
    t.server("250 queued\r\n");
    assert_eq!(t.c.state(), State::Idle);
    t.c.quit(t.now);
    assert_eq!(t.c.state(), State::AwaitQuit);
    t.server("221 bye\r\n");
    assert_eq!(t.c.state(), State::Closed);
}

/// RFC 5321 §3.8: a 421 to any command means the server is closing the channel: the
/// session ends at once with a temporary failure (no recipient counts as refused or
/// accepted, nothing more is sent), whatever it answered.
#[test]
fn a_421_to_rcpt_ends_the_session() {
    let mut t = T::ready(&["PIPELINING"]);
    t.start(msg(&["a@x.example", "b@x.example"], "x\r\n"));
    t.sent();
    t.server("250 ok\r\n250 ok\r\n421 4.3.2 shutting down\r\n");
    assert_eq!(t.c.state(), State::Closed);
    assert!(
        matches!(&t.events[..], [ClientEvent::Failed { temporary: true, auth: false, reason }]
            if reason.contains("RCPT TO") && reason.contains("421 4.3.2")),
        "{:?}",
        t.events
    );
    assert_eq!(t.sent(), "", "nothing after the 421");
    // A reply the server sends after it is ignored: the session is over.
    t.server("354 go\r\n");
    assert_eq!(t.events.len(), 1);
}

fn secure(level: crate::vocab::TlsLevel, creds: bool) -> T {
    let mut t = T::new();
    t.c = ClientSession::new("mx.ours.example", t.now).with_security(ClientSecurity {
        level,
        implicit: false,
        credentials: creds.then(|| Credentials::password("cust", b"s3cret")),
    });
    t
}

#[test]
fn starttls_then_a_fresh_ehlo_then_auth_login() {
    use crate::vocab::TlsLevel;
    let mut t = secure(TlsLevel::Encrypt, true);
    t.server("220 hi\r\n");
    t.server("250-mx\r\n250-AUTH LOGIN\r\n250 STARTTLS\r\n");
    assert_eq!(
        t.sent(),
        "EHLO mx.ours.example\r\nSTARTTLS\r\n",
        "no AUTH before TLS"
    );
    t.server("220 go\r\n");
    assert_eq!(t.events.pop(), Some(ClientEvent::StartTls));
    assert!(t.c.awaits_tls());
    t.c.tls_on("TLSv1.3 with cipher X".into(), t.now);
    assert_eq!(t.sent(), "EHLO mx.ours.example\r\n");
    t.server("250-mx\r\n250 AUTH LOGIN PLAIN\r\n");
    assert_eq!(t.sent(), "AUTH PLAIN AGN1c3QAczNjcmV0\r\n");
    t.server("235 ok\r\n");
    assert_eq!(t.events.pop(), Some(ClientEvent::Ready));
}

#[test]
fn a_reply_behind_the_220_to_starttls_fails_the_session() {
    let mut t = secure(crate::vocab::TlsLevel::May, false);
    t.server("220 hi\r\n");
    t.server("250-mx\r\n250 STARTTLS\r\n");
    let _ = t.sent();
    t.server("220 go\r\n250-injected\r\n250 AUTH PLAIN\r\n");
    assert!(matches!(
        t.events.pop(),
        Some(ClientEvent::Failed { temporary: true, auth: false, reason }) if reason.contains("behind its 220")
    ));
    assert!(!t.events.contains(&ClientEvent::StartTls));
}

#[test]
fn mandatory_tls_without_starttls_fails_and_may_goes_on_without_credentials() {
    use crate::vocab::TlsLevel;
    let mut t = secure(TlsLevel::Encrypt, true);
    t.server("220 hi\r\n");
    t.server("250-mx\r\n250 AUTH PLAIN\r\n");
    assert!(matches!(
        t.events.pop(),
        Some(ClientEvent::Failed { temporary: true, auth: false, reason }) if reason.contains("4.7.4")
    ));
    let mut t = secure(TlsLevel::May, true);
    t.server("220 hi\r\n");
    t.server("250-mx\r\n250 AUTH PLAIN\r\n");
    assert_eq!(t.events.pop(), Some(ClientEvent::Ready));
    assert_eq!(
        t.sent(),
        "EHLO mx.ours.example\r\n",
        "no credentials in plaintext"
    );
}

#[test]
fn cram_md5_may_go_in_plaintext_because_it_never_sends_the_password() {
    let mut t = secure(crate::vocab::TlsLevel::May, true);
    t.server("220 hi\r\n");
    t.server("250-mx\r\n250 AUTH PLAIN CRAM-MD5\r\n");
    assert_eq!(t.sent(), "EHLO mx.ours.example\r\nAUTH CRAM-MD5\r\n");
    t.server("334 PDEyMzQ1QGh1Yj4=\r\n");
    let answer = t.sent();
    let decoded = crate::auth::base64::decode(answer.trim_end().as_bytes()).unwrap();
    assert!(
        String::from_utf8_lossy(&decoded).starts_with("cust "),
        "{answer}"
    );
    assert!(!String::from_utf8_lossy(&decoded).contains("s3cret"));
    t.server("235 ok\r\n");
    assert!(t.c.authenticated());
    assert_eq!(t.events.pop(), Some(ClientEvent::Ready));
}

#[test]
fn atrn_waits_ten_minutes_and_a_250_ends_the_client_role() {
    let mut t = secure(crate::vocab::TlsLevel::None, true);
    t.server("220 hi\r\n250-mx\r\n250-AUTH CRAM-MD5\r\n250 ATRN\r\n");
    let _ = t.sent();
    t.server("334 PDEyMzQ1QGh1Yj4=\r\n");
    let _ = t.sent();
    t.server("235 ok\r\n");
    assert_eq!(t.events.pop(), Some(ClientEvent::Ready));
    t.c.atrn(&["a.dom".to_string(), "b.dom".to_string()], t.now);
    assert_eq!(t.sent(), "ATRN a.dom,b.dom\r\n");
    // Five minutes pass: still waiting (RFC 2645 §5.2.1: at least ten).
    t.now += Duration::from_secs(300);
    t.c.handle_timeout(t.now);
    assert!(t.c.poll_event().is_none());
    t.server("250 2.0.0 OK now reversing\r\n");
    assert_eq!(
        t.events.pop(),
        Some(ClientEvent::Atrn {
            code: 250,
            text: "250 2.0.0 OK now reversing".into()
        })
    );
    assert_eq!(t.c.state(), State::Turned);
    assert_eq!(t.c.poll_timeout(), None);
}

#[test]
fn a_refused_atrn_leaves_the_session_idle_and_a_reply_behind_a_250_drops_it() {
    let mut t = T::ready(&[]);
    t.c.atrn(&[], t.now);
    assert_eq!(t.sent(), "ATRN\r\n");
    t.server("453 4.7.0 You have no mail\r\n");
    assert!(matches!(
        t.events.pop(),
        Some(ClientEvent::Atrn { code: 453, .. })
    ));
    assert!(t.c.is_idle());
    t.c.atrn(&[], t.now);
    let _ = t.sent();
    t.server("250 ok\r\nEHLO early\r\n");
    assert!(matches!(
        t.events.pop(),
        Some(ClientEvent::Failed { reason, .. }) if reason.contains("behind its 250")
    ));
}

fn with_creds(level: crate::vocab::TlsLevel, c: Credentials) -> T {
    let mut t = T::new();
    t.c = ClientSession::new("mx.ours.example", t.now).with_security(ClientSecurity {
        level,
        implicit: false,
        credentials: Some(c),
    });
    t
}

/// EHLO answered with `auth`, under TLS already (the level says none, so the
/// session goes on without STARTTLS).
fn authing(c: Credentials, auth: &str) -> T {
    let mut t = with_creds(crate::vocab::TlsLevel::None, c);
    t.server("220 hi\r\n");
    t.server(&format!("250-mx\r\n250 AUTH {auth}\r\n"));
    t
}

#[test]
fn await_auth_a_refused_cram_md5_is_followed_by_plain() {
    let mut t = authing(
        Credentials::password("cust", b"s3cret"),
        "CRAM-MD5 PLAIN LOGIN",
    );
    assert_eq!(t.sent(), "EHLO mx.ours.example\r\nAUTH CRAM-MD5\r\n");
    t.server("334 PDEyMzQ1QGV4YW1wbGU+\r\n");
    assert!(t.sent().ends_with("\r\n"));
    t.server("535 5.7.8 authentication failed\r\n");
    assert_eq!(t.sent(), "AUTH PLAIN AGN1c3QAczNjcmV0\r\n");
    t.server("235 ok\r\n");
    assert_eq!(t.events.pop(), Some(ClientEvent::Ready));
}

#[test]
fn await_auth_a_temporary_refusal_is_not_an_auth_failure() {
    let mut t = authing(Credentials::password("cust", b"s3cret"), "PLAIN");
    assert!(t.sent().ends_with("AUTH PLAIN AGN1c3QAczNjcmV0\r\n"));
    t.server("454 4.7.0 Temporary authentication failure\r\n");
    assert!(
        matches!(&t.events[..], [ClientEvent::Failed { temporary: true, auth: false, reason }]
            if reason.contains("454")),
        "{:?}",
        t.events
    );
}

#[test]
fn await_auth_every_mechanism_refused_defers_with_the_last_reply() {
    let mut t = authing(Credentials::password("cust", b"s3cret"), "PLAIN LOGIN");
    assert_eq!(
        t.sent(),
        "EHLO mx.ours.example\r\nAUTH PLAIN AGN1c3QAczNjcmV0\r\n"
    );
    t.server("535 5.7.8 no\r\n");
    assert_eq!(t.sent(), "AUTH LOGIN\r\n");
    t.server("535 5.7.8 still no\r\n");
    assert!(
        matches!(&t.events[..], [ClientEvent::Failed { temporary: true, auth: true, reason }]
            if reason.contains("AUTH LOGIN") && reason.contains("still no")),
        "{:?}",
        t.events
    );
}

#[test]
fn await_auth_pinned_mechanisms_are_tried_in_their_order_only() {
    let mut c = Credentials::password("cust", b"s3cret");
    c.mechs = vec![ClientMech::Login];
    let mut t = authing(c, "CRAM-MD5 PLAIN LOGIN");
    assert_eq!(t.sent(), "EHLO mx.ours.example\r\nAUTH LOGIN\r\n");
}

#[test]
fn ready_without_tls_no_password_goes_out_but_cram_md5_may() {
    let mut t = with_creds(
        crate::vocab::TlsLevel::May,
        Credentials::password("cust", b"s3cret"),
    );
    t.server("220 hi\r\n");
    t.server("250-mx\r\n250 AUTH PLAIN LOGIN\r\n");
    assert_eq!(t.sent(), "EHLO mx.ours.example\r\n", "no PLAIN without TLS");
    assert_eq!(t.events.pop(), Some(ClientEvent::Ready));
}

#[test]
fn await_token_oauthbearer_then_xoauth2_after_a_refusal() {
    let c = Credentials {
        user: "me@example".into(),
        secret: ClientSecret::Token(None),
        mechs: vec![ClientMech::OAuthBearer, ClientMech::XOAuth2],
    };
    let mut t = authing(c, "PLAIN OAUTHBEARER XOAUTH2");
    assert_eq!(t.sent(), "EHLO mx.ours.example\r\n");
    assert_eq!(t.events.pop(), Some(ClientEvent::NeedToken));
    t.c.token(Some(b"ya29.tok".to_vec()), t.now);
    let line = t.sent();
    let b64 = line.trim_end().strip_prefix("AUTH OAUTHBEARER ").unwrap();
    let raw = crate::auth::base64::decode(b64.as_bytes()).unwrap();
    assert_eq!(raw, b"n,a=me@example,\x01auth=Bearer ya29.tok\x01\x01");
    // The server's JSON error, then the ^A that ends the exchange, then 535.
    t.server("334 eyJzdGF0dXMiOiI0MDEifQ==\r\n");
    assert_eq!(t.sent(), "AQ==\r\n");
    t.server("535 5.7.8 bad token\r\n");
    let line = t.sent();
    let b64 = line.trim_end().strip_prefix("AUTH XOAUTH2 ").unwrap();
    let raw = crate::auth::base64::decode(b64.as_bytes()).unwrap();
    assert_eq!(raw, b"user=me@example\x01auth=Bearer ya29.tok\x01\x01");
    t.server("235 ok\r\n");
    assert_eq!(t.events.pop(), Some(ClientEvent::Ready));
}

#[test]
fn await_token_none_defers() {
    let c = Credentials {
        user: "me".into(),
        secret: ClientSecret::Token(None),
        mechs: vec![ClientMech::XOAuth2],
    };
    let mut t = authing(c, "XOAUTH2");
    assert_eq!(t.events.pop(), Some(ClientEvent::NeedToken));
    t.c.token(None, t.now);
    let ev = t.c.poll_event();
    assert!(
        matches!(&ev, Some(ClientEvent::Failed { temporary: true, auth: false, reason }) if reason.contains("no token")),
        "{ev:?}"
    );
}

#[test]
fn a_message_that_needs_smtputf8_is_refused_5_6_7_by_a_server_without_it() {
    let mut t = T::ready(&["PIPELINING", "8BITMIME"]);
    let (mut m, body) = msg(&["a@x.example"], "x\r\n");
    m.smtputf8 = true;
    t.start((m, body));
    assert_eq!(t.sent(), "", "nothing of it is sent");
    t.server("");
    assert!(matches!(
        &t.events[0],
        ClientEvent::Done(v) if matches!(&v[0], RcptOutcome::Failed(w) if w.starts_with("553 5.6.7"))
    ));
    let mut t = T::ready(&["PIPELINING", "SMTPUTF8", "DSN"]);
    let (mut m, body) = msg(&["a@x.example"], "x\r\n");
    m.smtputf8 = true;
    t.start((m, body));
    assert!(t
        .sent()
        .starts_with("MAIL FROM:<s@ours.example> SMTPUTF8\r\n"));
    assert!(t.c.offers_dsn());
}
