//! MAIL and RCPT lines: DSN parameters only to a server that offers DSN, and a
//! message that needs SMTPUTF8 only to one that offers it.

use super::OutMessage;
use crate::vocab::dsn::{MailDsn, Notify, Orcpt, RcptDsn, Ret};
use crate::vocab::Mailbox;

fn msg() -> OutMessage {
    let dsn = MailDsn {
        ret: Some(Ret::Hdrs),
        envid: Some("id 1+".into()),
    };
    let rcpt = RcptDsn {
        notify: Some(Notify::parse("SUCCESS,FAILURE").unwrap()),
        orcpt: Some(Orcpt {
            addr_type: "rfc822".into(),
            address: "a+b@x.example".into(),
        }),
    };
    OutMessage {
        from: Some(Mailbox::parse("s@ours.example").unwrap()),
        rcpts: vec![
            Mailbox::parse("a@x.example").unwrap(),
            Mailbox::parse("b@x.example").unwrap(),
        ],
        size: 10,
        dsn: (dsn, vec![rcpt, RcptDsn::default()]),
        ..OutMessage::default()
    }
}

#[test]
fn dsn_parameters_go_to_a_server_that_offers_dsn_only() {
    let m = msg();
    assert_eq!(
        m.mail_line(true, true, true),
        "MAIL FROM:<s@ours.example> SIZE=10 RET=HDRS ENVID=id+201+2B\r\n"
    );
    assert_eq!(
        m.rcpt_line(0, true),
        "RCPT TO:<a@x.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@x.example\r\n"
    );
    assert_eq!(m.rcpt_line(1, true), "RCPT TO:<b@x.example>\r\n");
    assert_eq!(
        m.mail_line(false, true, false),
        "MAIL FROM:<s@ours.example>\r\n"
    );
    assert_eq!(m.rcpt_line(0, false), "RCPT TO:<a@x.example>\r\n");
}

#[test]
fn smtputf8_is_said_when_the_message_needs_it() {
    let mut m = msg();
    m.smtputf8 = true;
    m.from = Some(Mailbox::parse_in("jürgen@ours.example", true).unwrap());
    assert_eq!(
        m.mail_line(false, false, false),
        "MAIL FROM:<jürgen@ours.example> SMTPUTF8\r\n"
    );
}
