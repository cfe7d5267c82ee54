//! Delivery status notifications (RFC 3464 `multipart/report`, RFC 3463 codes):
//! built from the original envelope and headers, sent with the null sender. Pure.

use std::fmt::Write as _;

use crate::smtp::trace::rfc5322_date;
use crate::store::spool::{Envelope, MessageId};
use crate::vocab::Mailbox;

/// One failed recipient.
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
    /// A delay notice: the recipient is still being tried until then (RFC 3464
    /// `Action: delayed`, `Will-Retry-Until`); `None`: it failed for good.
    pub until: Option<Option<u64>>,
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

/// The header section of a stored message (up to the first empty line).
pub fn headers_of(message: &[u8]) -> &[u8] {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &message[..i + 2],
        None => message,
    }
}

/// Builds the DSN for `failures` of message `id`. `sender` is the original sender.
pub fn dsn(
    hostname: &str,
    id: MessageId,
    env: &Envelope,
    sender: &Mailbox,
    original: &[u8],
    failures: &[Failure],
    now: u64,
) -> Vec<u8> {
    let boundary = format!("{id}.{now}/{hostname}");
    let date = rfc5322_date(now);
    let delayed = !failures.is_empty() && failures.iter().all(|f| f.until.is_some());
    let (subject, intro) = if delayed {
        (
            "Delayed Mail (still being retried)",
            "This is a warning only: your message could not be delivered yet to the\r\n\
             recipients below. Delivery is still being tried; you need not send it\r\n\
             again.\r\n",
        )
    } else {
        (
            "Undelivered Mail Returned to Sender",
            "I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients. It's attached below.\r\n",
        )
    };
    let mut m = String::new();
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         To: <{sender}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}.{now}.dsn@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This is the mail system at host {hostname}.\r\n\
         \r\n\
         {intro}\
         \r\n"
    );
    for f in failures {
        let _ = write!(m, "<{}>: {}\r\n", f.rcpt, f.diagnostic);
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {hostname}\r\n\
         X-Etrnd-Queue-ID: {id}\r\n\
         Arrival-Date: {}\r\n",
        rfc5322_date(env.arrival)
    );
    for f in failures {
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
        let _ = write!(
            m,
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: {}\r\nStatus: {}\r\n",
            f.rcpt,
            if f.until.is_some() {
                "delayed"
            } else {
                "failed"
            },
            f.status
        );
        if let Some(r) = &f.remote_mta {
            let _ = write!(m, "Remote-MTA: dns; {r}\r\n");
        }
        let _ = write!(
            m,
            "Diagnostic-Code: {kind}; {}\r\nLast-Attempt-Date: {date}\r\n",
            f.diagnostic
        );
        if let Some(Some(until)) = f.until {
            let _ = write!(m, "Will-Retry-Until: {}\r\n", rfc5322_date(until));
        }
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Description: Undelivered Message Headers\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n"
    );
    let mut out = m.into_bytes();
    out.extend_from_slice(headers_of(original));
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
            &[Failure {
                until: None,
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
}
