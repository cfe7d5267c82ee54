//! The outbound client session against a hostile server (and, when the first octet
//! is odd, the ODMR customer's session: ATRN instead of messages; with its bit 4,
//! an LMTP session, whose per-recipient replies after the dot must each land on
//! their recipient or defer; DSN parameters and SMTPUTF8 whatever the server offers).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

use etrnd::smtp::client::{ClientEvent, ClientSession, OutMessage};
use etrnd::smtp::Mailbox;

const BODY: &[u8] = b"Subject: x\r\n\r\n.dot\r\nbody\r\n";

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let mut c = ClientSession::new("mx.fuzz.example", now);
    let msg = OutMessage {
        from: Some(Mailbox::parse("s@fuzz.example").unwrap()),
        rcpts: vec![Mailbox::parse("a@x.example").unwrap(), Mailbox::parse("b@x.example").unwrap()],
        size: BODY.len() as u64,
        has_8bit: false,
        eight_bit: false,
        seven_bit_only: false,
        dsn: (
            etrnd::vocab::dsn::MailDsn { ret: None, envid: Some("ENV 1".into()) },
            vec![etrnd::vocab::dsn::RcptDsn::default(); 2],
        ),
        smtputf8: data.first().is_some_and(|b| b & 8 == 8),
    };
    if data.first().is_some_and(|b| b & 16 == 16) {
        c.set_lmtp();
    }
    let mut sent = 0;
    let atrn = data.first().is_some_and(|b| b & 1 == 1);
    // A link-up action's ETRNs: one after another, each on the reply to the last.
    let etrn = data.first().is_some_and(|b| b & 2 == 2);
    let mut etrns = 0;
    for chunk in data.chunks(11) {
        c.handle_input(chunk, now);
        if c.wants_body() {
            // A piece, then the rest and the end: the body is fed as the loop does.
            c.feed_body(&BODY[..5], now);
            c.feed_body(&BODY[5..], now);
            c.end_body(now);
        }
        let n = c.pending_output().len();
        c.consume_output(n);
        while let Some(ev) = c.poll_event() {
            match ev {
                ClientEvent::Ready if etrn && etrns == 0 => {
                    etrns += 1;
                    c.etrn("client.dom", now);
                }
                ClientEvent::Etrn { .. } if etrns < 3 => {
                    etrns += 1;
                    c.etrn("@sub.client.dom", now);
                }
                ClientEvent::Etrn { .. } => c.quit(now),
                ClientEvent::Ready if atrn && sent < 2 => {
                    sent += 1;
                    c.atrn(&["client.dom".to_string()], now);
                }
                ClientEvent::Ready if sent < 3 => {
                    sent += 1;
                    c.start(msg.clone(), now);
                }
                ClientEvent::Atrn { code: 250, .. } => {
                    assert_eq!(c.poll_timeout(), None, "turned: the session is over");
                    return;
                }
                ClientEvent::Ready => c.quit(now),
                ClientEvent::Done(o) => assert_eq!(o.len(), 2, "one outcome per recipient"),
                _ => {}
            }
        }
        now += Duration::from_secs(1);
        c.handle_timeout(now);
        if c.is_closed() {
            break;
        }
    }
});
