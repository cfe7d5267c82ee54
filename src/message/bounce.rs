//! Delivery status notifications (RFC 3464 `multipart/report`, RFC 3463 codes,
//! RFC 3461 §6 for what the sender asked: ENVID, ORCPT, RET; RFC 6533's global
//! forms for a message that needed SMTPUTF8): built from the original envelope and
//! headers (or the whole message, for `RET=FULL`), sent with the null sender. Pure.

use std::fmt::Write as _;

use crate::smtp::trace::rfc5322_date;
use crate::store::spool::{Envelope, MessageId};
use crate::vocab::dsn::{xtext_encode, Orcpt, Ret};
use crate::vocab::Mailbox;

/// What a notice says happened to a recipient (RFC 3464 §2.3.3 `Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Failed for good.
    Failed,
    /// Still being tried, until then (`Will-Retry-Until`), when known.
    Delayed(Option<u64>),
    /// Put into the recipient's mailbox (or handed to the mail store over LMTP).
    Delivered,
    /// Handed to a next hop that does not pass delivery notices on.
    Relayed,
    /// Sent on to other addresses (a `.forward`), whose copies ask for no
    /// success notice of their own.
    Expanded,
}

/// One recipient in a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The recipient.
    pub rcpt: Mailbox,
    /// RFC 3463 status, e.g. `5.1.1`.
    pub status: String,
    /// The remote reply (`550 5.1.1 …`) or our own reason.
    pub diagnostic: String,
    /// The host that answered, when one did.
    pub remote_mta: Option<String>,
    /// What happened.
    pub action: Action,
    /// The recipient as the sender first addressed it (RCPT's ORCPT).
    pub orcpt: Option<Orcpt>,
}

/// The enhanced status code in an SMTP reply text, or one from its class.
pub fn status_of(reply: &str) -> String {
    let mut words = reply.split_whitespace();
    let code = words.next().unwrap_or("");
    if let Some(enh) = words.next() {
        let parts: Vec<&str> = enh.split('.').collect();
        if parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
            && (enh.starts_with('4') || enh.starts_with('5'))
        {
            return enh.to_string();
        }
    }
    match code.as_bytes().first() {
        Some(b'4') => "4.0.0".into(),
        _ => "5.0.0".into(),
    }
}

/// Most octets of the original read to quote its headers (a header section longer
/// than this is quoted cut at a line end).
pub const MAX_QUOTED_HEADERS: usize = 256 * 1024;

/// Largest message a `RET=FULL` notice returns whole (Postfix's
/// `bounce_size_limit`); a larger one is returned as its headers.
pub const MAX_RETURNED: u64 = 50_000;

/// The header section of a stored message (up to the first empty line).
pub fn headers_of(message: &[u8]) -> &[u8] {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &message[..i + 2],
        None => message,
    }
}

/// Whether a notice about a message that `env` describes returns it whole: the
/// sender asked (`RET=FULL`) and it is small enough.
pub fn returns_full(env: &Envelope, size: u64) -> bool {
    env.dsn.ret == Some(Ret::Full) && size <= MAX_RETURNED
}

/// A value for a notice's field: as is when it may appear there (ASCII, or any
/// UTF-8 in a global notice), else in xtext. Decoded DSN values hold no control
/// characters; peer replies were sanitised before.
fn field(value: &str, global: bool) -> String {
    if global || value.is_ascii() {
        value.to_string()
    } else {
        xtext_encode(value)
    }
}

/// An address field (`Final-Recipient`, `Original-Recipient`): `rfc822; a@b`, or
/// `utf-8; ü@b` in a global notice (RFC 6533 §3).
fn address_field(kind: &str, address: &str, global: bool) -> String {
    if address.is_ascii() {
        format!("{kind}; {address}")
    } else if global {
        format!("utf-8; {address}")
    } else {
        format!("{kind}; {}", xtext_encode(address))
    }
}

/// Builds the notice for `rcpts` of message `id`. `sender` is the original sender;
/// `original` is its header section, or the whole message when
/// [`returns_full`] says so (`full`).
#[allow(clippy::too_many_arguments)]
pub fn dsn(
    hostname: &str,
    id: MessageId,
    env: &Envelope,
    sender: &Mailbox,
    original: &[u8],
    full: bool,
    rcpts: &[Failure],
    now: u64,
) -> Vec<u8> {
    // Several notices about one message can go out in one second (a delivery and a
    // relay): the serial keeps their Message-IDs and boundaries apart.
    static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let boundary = format!("{id}.{now}.{serial}/{hostname}");
    let date = rfc5322_date(now);
    let global = env.smtputf8;
    let all = |f: fn(&Action) -> bool| !rcpts.is_empty() && rcpts.iter().all(|r| f(&r.action));
    let (subject, intro) = if all(|a| matches!(a, Action::Delayed(_))) {
        (
            "Delayed Mail (still being retried)",
            "This is a warning only: your message could not be delivered yet to the\r\n\
             recipients below. Delivery is still being tried; you need not send it\r\n\
             again.\r\n",
        )
    } else if all(|a| matches!(a, Action::Delivered | Action::Relayed | Action::Expanded)) {
        (
            "Successful Mail Delivery Report",
            "Your message was delivered to the destinations below, as you asked to be\r\n\
             told. A destination marked relayed went to a mail system that does not\r\n\
             pass notices on: you will hear nothing more about it.\r\n",
        )
    } else {
        (
            "Undelivered Mail Returned to Sender",
            "I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients. It's attached below.\r\n",
        )
    };
    let (report, status_type, headers_type, message_type) = if global {
        (
            "global-delivery-status",
            "message/global-delivery-status",
            "message/global-headers",
            "message/global",
        )
    } else {
        (
            "delivery-status",
            "message/delivery-status",
            "text/rfc822-headers",
            "message/rfc822",
        )
    };
    let charset = if global { "utf-8" } else { "us-ascii" };
    let mut m = String::new();
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         To: <{sender}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}.{now}.{serial}.dsn@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type={report};\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset={charset}\r\n\
         \r\n\
         This is the mail system at host {hostname}.\r\n\
         \r\n\
         {intro}\
         \r\n"
    );
    for f in rcpts {
        let rcpt = field(&f.rcpt.to_string(), global);
        let _ = write!(m, "<{rcpt}>: {}\r\n", field(&f.diagnostic, global));
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: {status_type}\r\n\
         \r\n\
         Reporting-MTA: dns; {hostname}\r\n\
         X-Etrnd-Queue-ID: {id}\r\n"
    );
    if let Some(envid) = &env.dsn.envid {
        let _ = write!(m, "Original-Envelope-Id: {}\r\n", field(envid, global));
    }
    let _ = write!(m, "Arrival-Date: {}\r\n", rfc5322_date(env.arrival));
    for f in rcpts {
        let kind = if f
            .diagnostic
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_digit)
        {
            "smtp"
        } else {
            "x-etrnd"
        };
        m.push_str("\r\n");
        if let Some(o) = &f.orcpt {
            let _ = write!(
                m,
                "Original-Recipient: {}\r\n",
                address_field(&o.addr_type, &o.address, global)
            );
        }
        let action = match f.action {
            Action::Failed => "failed",
            Action::Delayed(_) => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        };
        let _ = write!(
            m,
            "Final-Recipient: {}\r\nAction: {action}\r\nStatus: {}\r\n",
            address_field("rfc822", &f.rcpt.to_string(), global),
            f.status
        );
        if let Some(r) = &f.remote_mta {
            let _ = write!(m, "Remote-MTA: dns; {r}\r\n");
        }
        let _ = write!(
            m,
            "Diagnostic-Code: {kind}; {}\r\nLast-Attempt-Date: {date}\r\n",
            field(&f.diagnostic, global)
        );
        if let Action::Delayed(Some(until)) = f.action {
            let _ = write!(m, "Will-Retry-Until: {}\r\n", rfc5322_date(until));
        }
    }
    let failed = rcpts
        .iter()
        .any(|r| matches!(r.action, Action::Failed | Action::Delayed(_)));
    let what = if failed {
        "Undelivered Message"
    } else {
        "Message"
    };
    let (description, content_type, returned) = if full {
        (what.to_string(), message_type, original)
    } else {
        (
            format!("{what} Headers"),
            headers_type,
            headers_of(original),
        )
    };
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Description: {description}\r\n\
         Content-Type: {content_type}\r\n\
         \r\n"
    );
    let mut out = m.into_bytes();
    out.extend_from_slice(returned);
    if !returned.ends_with(b"\r\n") && !returned.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::spool::{Destination, Recipient};

    #[test]
    fn status_from_replies() {
        assert_eq!(status_of("550 5.1.1 no such user"), "5.1.1");
        assert_eq!(status_of("554 rejected"), "5.0.0");
        assert_eq!(status_of("452 4.2.2 full"), "4.2.2");
        assert_eq!(status_of("550 1.2.3 bogus"), "5.0.0");
    }

    #[test]
    fn dsn_shape() {
        let sender = Mailbox::parse("s@x.example").unwrap();
        let env = Envelope {
            arrival: 0,
            client: "-".into(),
            helo: "h".into(),
            protocol: "ESMTP".into(),
            eight_bit: false,
            sender: Some(sender.clone()),
            recipients: vec![Recipient {
                address: Mailbox::parse("u@y.example").unwrap(),
                dest: Destination::Local("u".into()),
                dsn: Default::default(),
            }],
            dsn: Default::default(),
            smtputf8: false,
        };
        let d = dsn(
            "mx.ours.example",
            MessageId(7),
            &env,
            &sender,
            b"Subject: orig\r\nFrom: s@x.example\r\n\r\nsecret body\r\n",
            false,
            &[Failure {
                action: Action::Failed,
                orcpt: None,
                rcpt: Mailbox::parse("u@y.example").unwrap(),
                status: "5.1.1".into(),
                diagnostic: "550 5.1.1 no such user".into(),
                remote_mta: Some("mx.y.example".into()),
            }],
            100,
        );
        let t = String::from_utf8(d).unwrap();
        assert!(t.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(
            t.contains("Final-Recipient: rfc822; u@y.example\r\nAction: failed\r\nStatus: 5.1.1")
        );
        assert!(t.contains("Remote-MTA: dns; mx.y.example"));
        assert!(t.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user"));
        assert!(t.contains("Subject: orig"));
        assert!(!t.contains("secret body"), "only the headers are returned");
        assert!(t.lines().all(|l| l.len() < 998));
        assert!(!t
            .as_bytes()
            .windows(2)
            .any(|w| w[1] == b'\n' && w[0] != b'\r'));
    }

    fn sample(utf8: bool) -> (Envelope, Mailbox) {
        let sender = Mailbox::parse("s@x.example").unwrap();
        let mut env = Envelope {
            arrival: 0,
            client: "-".into(),
            helo: "h".into(),
            protocol: "ESMTP".into(),
            eight_bit: false,
            sender: Some(sender.clone()),
            recipients: Vec::new(),
            dsn: Default::default(),
            smtputf8: utf8,
        };
        env.dsn.envid = Some("QQ314159".into());
        env.dsn.ret = Some(Ret::Full);
        (env, sender)
    }

    fn report(rcpt: &str, action: Action, orcpt: Option<&str>) -> Failure {
        Failure {
            action,
            orcpt: orcpt.map(|a| Orcpt {
                addr_type: "rfc822".into(),
                address: a.into(),
            }),
            rcpt: Mailbox::parse_in(rcpt, true).unwrap(),
            status: "2.0.0".into(),
            diagnostic: "250 2.0.0 Ok".into(),
            remote_mta: None,
        }
    }

    #[test]
    fn success_notices_carry_envid_orcpt_and_the_whole_message_for_ret_full() {
        let (env, sender) = sample(false);
        let original = b"Subject: orig\r\n\r\nthe body\r\n";
        assert!(returns_full(&env, original.len() as u64));
        assert!(!returns_full(&env, MAX_RETURNED + 1));
        let d = dsn(
            "mx.ours.example",
            MessageId(7),
            &env,
            &sender,
            original,
            true,
            &[
                report("u@y.example", Action::Delivered, Some("first@y.example")),
                report("v@z.example", Action::Relayed, None),
            ],
            100,
        );
        let t = String::from_utf8(d).unwrap();
        assert!(t.contains("Subject: Successful Mail Delivery Report\r\n"));
        assert!(t.contains("Original-Envelope-Id: QQ314159\r\n"));
        assert!(t.contains(
            "Original-Recipient: rfc822; first@y.example\r\nFinal-Recipient: rfc822; u@y.example\r\nAction: delivered\r\nStatus: 2.0.0"
        ));
        assert!(t.contains("Final-Recipient: rfc822; v@z.example\r\nAction: relayed\r\n"));
        assert!(t.contains("Content-Type: message/rfc822\r\n\r\nSubject: orig\r\n\r\nthe body\r\n"));
    }

    #[test]
    fn a_message_that_needed_smtputf8_gets_the_global_forms() {
        let (env, sender) = sample(true);
        let d = dsn(
            "mx.ours.example",
            MessageId(7),
            &env,
            &sender,
            "Subject: grüße\r\n\r\nx\r\n".as_bytes(),
            false,
            &[report(
                "jürgen@y.example",
                Action::Failed,
                Some("jürgen@y.example"),
            )],
            100,
        );
        let t = String::from_utf8(d).unwrap();
        assert!(t.contains("report-type=global-delivery-status;"));
        assert!(t.contains("Content-Type: message/global-delivery-status\r\n"));
        assert!(t.contains("Final-Recipient: utf-8; jürgen@y.example\r\n"));
        assert!(t.contains("Original-Recipient: utf-8; jürgen@y.example\r\n"));
        assert!(t.contains("Content-Type: message/global-headers\r\n\r\nSubject: grüße\r\n"));
        // The same recipient in a plain notice is xtext.
        let (env, sender) = sample(false);
        let t = String::from_utf8(dsn(
            "h",
            MessageId(7),
            &env,
            &sender,
            b"",
            false,
            &[report("jürgen@y.example", Action::Failed, None)],
            100,
        ))
        .unwrap();
        assert!(t.contains("Final-Recipient: rfc822; j+C3+BCrgen@y.example\r\n"));
        assert!(t.is_ascii());
    }
}
