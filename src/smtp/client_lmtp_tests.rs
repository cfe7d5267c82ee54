//! LMTP on the client session (RFC 2033): a reply per recipient after the dot,
//! and the servers that answer too few, too many, or with a CR inside a reply.

use super::super::tests::{msg, T};
use super::super::{ClientEvent, RcptOutcome};

/// An LMTP session after LHLO.
fn lmtp_ready() -> T {
    let mut t = T::new();
    t.c.set_lmtp();
    t.server("220 lmtp.example LMTP\r\n");
    assert_eq!(t.sent(), "LHLO mx.ours.example\r\n");
    t.server("250-lmtp.example\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n");
    assert_eq!(t.events.pop(), Some(ClientEvent::Ready));
    t
}

#[test]
fn lmtp_takes_one_reply_per_accepted_recipient_after_the_dot() {
    let mut t = lmtp_ready();
    t.start(msg(&["a@x.example", "b@x.example", "c@x.example"], "x\r\n"));
    t.sent();
    t.server("250 ok\r\n250 ok\r\n250 ok\r\n550 5.1.1 no c\r\n354 go\r\n");
    assert_eq!(t.sent(), "x\r\n.\r\n");
    t.server("250 2.0.0 a saved\r\n");
    assert!(t.events.is_empty(), "b's reply is still due");
    t.server("452 4.2.2 b over quota\r\n");
    assert_eq!(
        t.events,
        vec![
            ClientEvent::Done(vec![
                RcptOutcome::Delivered("250 2.0.0 a saved".into()),
                RcptOutcome::Deferred("end of DATA: 452 4.2.2 b over quota".into()),
                RcptOutcome::Failed("RCPT: 550 5.1.1 no c".into()),
            ]),
            ClientEvent::Ready
        ]
    );
}

#[test]
fn lmtp_closing_after_some_replies_keeps_them_and_defers_the_rest() {
    let mut t = lmtp_ready();
    t.start(msg(&["a@x.example", "b@x.example"], "x\r\n"));
    t.server("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    t.server("250 2.0.0 a saved\r\n");
    t.c.handle_eof();
    while let Some(e) = t.c.poll_event() {
        t.events.push(e);
    }
    let ClientEvent::Done(o) = &t.events[0] else {
        panic!("{:?}", t.events);
    };
    assert_eq!(o[0], RcptOutcome::Delivered("250 2.0.0 a saved".into()));
    assert!(matches!(&o[1], RcptOutcome::Deferred(w) if w.starts_with("no LMTP reply")));
    assert!(matches!(
        t.events[1],
        ClientEvent::Failed {
            temporary: true,
            ..
        }
    ));
}

#[test]
fn lmtp_more_replies_than_recipients_defers_them_all() {
    let mut t = lmtp_ready();
    t.start(msg(&["a@x.example"], "x\r\n"));
    t.server("250 ok\r\n250 ok\r\n354 go\r\n");
    t.server("250 2.0.0 saved\r\n250 2.0.0 who?\r\n");
    let ClientEvent::Done(o) = &t.events[0] else {
        panic!("{:?}", t.events);
    };
    assert!(matches!(&o[0], RcptOutcome::Deferred(w) if w.contains("more replies")));
    assert!(t
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::Failed { .. })));
}

#[test]
fn lmtp_has_no_helo_to_fall_back_to_and_a_reply_with_a_cr_is_no_reply() {
    let mut t = T::new();
    t.c.set_lmtp();
    t.server("220 lmtp.example LMTP\r\n");
    t.sent();
    t.server("500 5.5.1 what is LHLO\r\n");
    assert!(
        matches!(t.events[0], ClientEvent::Failed { .. }),
        "{:?}",
        t.events
    );
    assert_eq!(t.sent(), "");
    let mut t = lmtp_ready();
    t.start(msg(&["a@x.example"], "x\r\n"));
    t.server("250 ok\r\n250 ok\r\n354 go\r\n");
    t.server("250 2.0.0 saved\rINJECTED\r\n");
    assert!(
        !t.events.iter().any(
            |e| matches!(e, ClientEvent::Done(o) if matches!(o[0], RcptOutcome::Delivered(_)))
        ),
        "{:?}",
        t.events
    );
}
