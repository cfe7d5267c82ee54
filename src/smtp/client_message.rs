//! The message a client session sends, and its MAIL and RCPT lines: SIZE,
//! BODY=8BITMIME, SMTPUTF8 and the DSN parameters where the server offers them.

use super::super::{fmt_path, Mailbox, ReversePath};
use crate::vocab::dsn::{xtext_encode, MailDsn, RcptDsn};

/// A message to send.
#[derive(Debug, Clone, Default)]
pub struct OutMessage {
    /// Envelope sender.
    pub from: ReversePath,
    /// Envelope recipients.
    pub rcpts: Vec<Mailbox>,
    /// Size of the stored message (CR LF line ends, not dot-stuffed); the driver
    /// feeds its octets after the 354.
    pub size: u64,
    /// Whether the stored message has 8-bit octets.
    pub has_8bit: bool,
    /// Whether to declare `BODY=8BITMIME` when the server offers it.
    pub eight_bit: bool,
    /// A 7-bit channel (`-7`): a body with 8-bit octets is refused with 5.6.3 (no
    /// conversion to quoted-printable is done).
    pub seven_bit_only: bool,
    /// RET and ENVID, and each recipient's NOTIFY and ORCPT (in `rcpts` order),
    /// passed on to a server that offers DSN (RFC 3461 §5.2).
    pub dsn: (MailDsn, Vec<RcptDsn>),
    /// The message needs SMTPUTF8 (RFC 6531 §3.2): a server that does not offer
    /// it gets none of it (5.6.7, no downgrade).
    pub smtputf8: bool,
}

impl OutMessage {
    /// `MAIL FROM:<…>` with what the server's EHLO reply allows: `size` (SIZE),
    /// `eight_bit` (8BITMIME), `dsn` (DSN). SMTPUTF8 is said when the message needs
    /// it; the session sends no such message to a server without it.
    pub(super) fn mail_line(&self, size: bool, eight_bit: bool, dsn: bool) -> String {
        let mut mail = format!("MAIL FROM:{}", fmt_path(&self.from));
        if size {
            mail.push_str(&format!(" SIZE={}", self.size));
        }
        if self.eight_bit && eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if self.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if let (true, Some(r)) = (dsn, &self.dsn.0.ret) {
            mail.push_str(&format!(" RET={}", r.render()));
        }
        if let (true, Some(e)) = (dsn, &self.dsn.0.envid) {
            mail.push_str(&format!(" ENVID={}", xtext_encode(e)));
        }
        mail.push_str("\r\n");
        mail
    }

    /// `RCPT TO:<…>` of recipient `i`, with its NOTIFY and ORCPT when `dsn`.
    pub(super) fn rcpt_line(&self, i: usize, dsn: bool) -> String {
        let mut rcpt = format!(
            "RCPT TO:<{}>",
            self.rcpts
                .get(i)
                .map(Mailbox::to_string)
                .unwrap_or_default()
        );
        if let (true, Some(d)) = (dsn, self.dsn.1.get(i)) {
            if let Some(n) = &d.notify {
                rcpt.push_str(&format!(" NOTIFY={}", n.render()));
            }
            if let Some(o) = &d.orcpt {
                rcpt.push_str(&format!(" ORCPT={}", o.render()));
            }
        }
        rcpt.push_str("\r\n");
        rcpt
    }
}

#[cfg(test)]
#[path = "client_message_tests.rs"]
mod tests;
