//! The server's reply catalogue: every reply text the server sends lives here
//! (qmail's `err_*` idea), with its RFC 3463 enhanced status code.
//!
//! The other direction lives here too: [`ReplyParser`] reads a server's replies for
//! the client session and `etrnd etrn` (a trust boundary: bounded lines, bounded line
//! count, sanitised text).

use std::borrow::Cow;
use std::fmt;

use crate::vocab::sanitize;

/// Longest reply line accepted from a server.
pub const MAX_REPLY_LINE: usize = 2048;
/// Most lines in one reply from a server.
pub const MAX_REPLY_LINES: usize = 100;

/// One SMTP reply: a three-digit code and its text (enhanced code included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply code, 200..=599.
    pub code: u16,
    /// The text after the code, starting with the enhanced status code.
    pub text: Cow<'static, str>,
}

macro_rules! replies {
    ($($name:ident = $code:expr, $text:expr;)*) => {
        impl Reply {
            $(
                #[doc = concat!("`", stringify!($code), " ", $text, "`")]
                pub const $name: Reply = Reply { code: $code, text: Cow::Borrowed($text) };
            )*
        }
    };
}

replies! {
    OK = 250, "2.0.0 Ok";
    SENDER_OK = 250, "2.1.0 Sender ok";
    RCPT_OK = 250, "2.1.5 Recipient ok";
    BDAT_SYNTAX = 501, "5.5.4 Syntax: BDAT count [LAST]";
    BETWEEN_CHUNKS = 503, "5.5.1 Error: only BDAT, RSET, NOOP or QUIT between BDAT chunks";
    START_DATA = 354, "End data with <CR><LF>.<CR><LF>";
    VRFY = 252, "2.5.0 Cannot VRFY user, but will accept message and attempt delivery";
    HELP = 214, "2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP ETRN";
    BAD_CHARACTERS = 500, "5.5.2 Error: bad characters in command";
    LINE_TOO_LONG = 500, "5.5.2 Error: line too long";
    BARE_LF = 500, "5.5.2 Error: bare <LF> received, commands must end with <CR><LF>";
    HELO_NEEDS_NAME = 501, "5.5.4 Syntax: HELO/EHLO hostname";
    HELO_BAD_NAME = 501, "5.5.2 Invalid HELO/EHLO host name";
    SYNTAX_PARAMS = 501, "5.5.4 Syntax error in parameters or arguments";
    SYNTAX_PATH = 501, "5.1.3 Bad address syntax: use <user@domain>";
    BAD_DOMAIN = 501, "5.1.2 Bad domain name syntax";
    LOCAL_TOO_LONG = 501, "5.1.3 Local part longer than 64 octets";
    NULL_RCPT = 501, "5.1.3 Null recipient not allowed";
    BAD_SIZE = 501, "5.5.4 Bad SIZE parameter";
    NEED_SMTPUTF8 = 553, "5.6.7 Non-ASCII address needs SMTPUTF8 on MAIL";
    BAD_UTF8 = 501, "5.1.3 Bad address syntax: not UTF-8";
    UNKNOWN_PARAM = 555, "5.5.4 Unsupported MAIL or RCPT parameter";
    UNKNOWN_COMMAND = 502, "5.5.2 Error: command not recognized";
    NOT_IMPLEMENTED = 502, "5.5.1 Error: command not implemented";
    ETRN_NOT_AVAILABLE = 502, "5.5.1 Error: ETRN not available";
    ETRN_SYNTAX = 501, "5.5.4 Syntax: ETRN domain | @domain | #channel";
    ETRN_IN_TRANSACTION = 503, "5.5.1 Error: ETRN not allowed inside a mail transaction";
    ETRN_TOO_MANY = 458, "4.7.0 Too many ETRN requests, try again later";
    ETRN_MINIMAL = 250, "2.0.0 Queuing started";
    NEED_HELO = 503, "5.5.1 Error: send HELO/EHLO first";
    NESTED_MAIL = 503, "5.5.1 Error: nested MAIL command";
    NEED_MAIL = 503, "5.5.1 Error: need MAIL command";
    NEED_RCPT = 503, "5.5.1 Error: need RCPT command";
    NO_VALID_RCPT = 554, "5.5.1 Error: no valid recipients";
    TOO_MANY_RCPTS = 452, "4.5.3 Error: too many recipients";
    MESSAGE_TOO_BIG = 552, "5.3.4 Message size exceeds fixed limit";
    HEADER_TOO_BIG = 552, "5.3.4 Message header size exceeds limit";
    TOO_MANY_HOPS = 554, "5.4.6 Too many hops: mail forwarding loop";
    SYNC_ERROR = 554, "5.5.0 Error: SMTP protocol synchronization";
    STORAGE_LOW = 452, "4.3.1 Insufficient system storage";
    QUEUE_WRITE_ERROR = 451, "4.3.0 Error: queue file write error";
    UNKNOWN_USER = 550, "5.1.1 Recipient address rejected: User unknown in local recipient table";
    UNKNOWN_RELAY_USER = 550, "5.1.1 Recipient address rejected: User unknown in relay recipient table";
    NO_ROUTE = 550, "5.1.2 Recipient address rejected: Domain not found";
    RELAY_DENIED = 554, "5.7.1 Relay access denied";
    NO_TRANSPORT = 451, "4.3.5 Server configuration error: no transport for this destination";
    BYE = 221, "2.0.0 Bye";
    TLS_GO = 220, "2.0.0 Ready to start TLS";
    TLS_ACTIVE = 503, "5.5.1 Error: TLS already active";
    TLS_BUSY = 454, "4.7.0 TLS not available now, try again later";
    TLS_IN_TRANSACTION = 503, "5.5.1 Error: STARTTLS not allowed inside a mail transaction";
    TLS_FIRST = 530, "5.7.0 Must issue a STARTTLS command first";
    AUTH_OK = 235, "2.7.0 Authentication successful";
    AUTH_FAILED = 535, "5.7.8 Error: authentication failed";
    AUTH_TEMP = 454, "4.7.0 Temporary authentication failure";
    AUTH_CANCELLED = 501, "5.7.0 Authentication aborted";
    AUTH_BAD_BASE64 = 501, "5.5.2 Error: invalid base64 data";
    AUTH_BAD_RESPONSE = 501, "5.5.2 Error: malformed authentication response";
    AUTH_TOO_LONG = 500, "5.5.6 Authentication exchange line is too long";
    AUTH_UNKNOWN_MECH = 504, "5.5.4 Unrecognized authentication type";
    AUTH_NEEDS_TLS = 538, "5.7.11 Encryption required for requested authentication mechanism";
    AUTH_ALREADY = 503, "5.5.1 Error: already authenticated";
    AUTH_IN_TRANSACTION = 503, "5.5.1 Error: AUTH not allowed in a mail transaction";
    AUTH_NO_INITIAL = 501, "5.7.0 No initial response allowed for this mechanism";
    AUTH_NOT_OFFERED = 503, "5.5.1 Error: authentication not enabled";
    AUTH_REQUIRED = 530, "5.7.0 Authentication required";
    HOLD_FULL = 452, "4.2.2 Mailbox full: too much mail is held for this destination, try again later";
    ATRN_SYNTAX = 501, "5.5.4 Syntax: ATRN [domain[,domain...]]";
    ATRN_TOO_MANY = 501, "5.5.4 Error: too many domains in one ATRN";
    ATRN_NOT_AVAILABLE = 502, "5.5.1 Error: ATRN not available on this port";
    ATRN_IN_TRANSACTION = 503, "5.5.1 Error: ATRN not allowed inside a mail transaction";
    ATRN_NEEDS_AUTH = 530, "5.7.0 Authentication required before ATRN";
    ATRN_NOT_ENTITLED = 450, "4.7.0 ATRN request refused: not entitled to every domain listed, nothing sent";
    ATRN_NO_DOMAINS = 450, "4.7.0 ATRN request refused: no domains are held for this identity";
    ATRN_TOO_OFTEN = 450, "4.7.0 ATRN request refused: too many requests, try again later";
    ATRN_BUSY = 450, "4.7.0 ATRN request refused: a turned-around session for this identity is running";
    ATRN_CANNOT_CHECK = 451, "4.3.0 Unable to process ATRN request now";
    ATRN_NO_MAIL = 453, "4.7.0 You have no mail";
    ATRN_TURNING = 250, "2.0.0 OK now reversing the connection";
    ODMR_ONLY = 502, "5.5.1 Error: command not available on this port (EHLO, AUTH, ATRN, QUIT)";
    ROUTING_IN_LOCAL_PART = 554, "5.7.1 Recipient address rejected: routing in the local part is not allowed";
}

impl Reply {
    /// A reply with computed text.
    pub fn new(code: u16, text: String) -> Reply {
        Reply {
            code,
            text: Cow::Owned(text),
        }
    }

    /// `220 <host> ESMTP etrnd`.
    pub fn greeting(host: &str) -> Reply {
        Reply::new(220, format!("{host} ESMTP etrnd"))
    }

    /// `421` with our name: closing the connection (RFC 5321 §3.8).
    pub fn closing(host: &str, why: &str) -> Reply {
        Reply::new(421, format!("{why} ({host} closing connection)"))
    }

    /// `250` to a BDAT chunk that is not the last (RFC 3030 §2).
    pub fn chunk_received(octets: u64) -> Reply {
        Reply::new(250, format!("2.0.0 Ok: {octets} octets received"))
    }

    /// `250 2.0.0 Ok: queued as <id>`.
    pub fn queued(id: &str) -> Reply {
        Reply::new(250, format!("2.0.0 Ok: queued as {id}"))
    }

    /// `550 5.1.2` for a recipient routed to `error!FORM`: FORM is the reason.
    pub fn error_route(form: &str) -> Reply {
        Reply::new(
            550,
            format!("5.1.2 Recipient address rejected: address not reachable from here ({form})"),
        )
    }

    /// `459 4.7.1 <node>: …`: ETRN refused by policy.
    pub fn etrn_refused(node: &str, why: &str) -> Reply {
        Reply::new(459, format!("4.7.1 {node}: {why}"))
    }

    /// `251 2.0.0 OK, no messages waiting for node <node>`.
    pub fn etrn_nothing(node: &str) -> Reply {
        Reply::new(
            251,
            format!("2.0.0 OK, no messages waiting for node {node}"),
        )
    }

    /// `252 2.0.0 OK, pending messages for node <node> started`.
    pub fn etrn_already(node: &str) -> Reply {
        Reply::new(
            252,
            format!("2.0.0 OK, pending messages for node {node} started"),
        )
    }

    /// `253 2.0.0 OK, <n> pending messages for node <node> started`.
    pub fn etrn_started(n: usize, node: &str) -> Reply {
        Reply::new(
            253,
            format!("2.0.0 OK, {n} pending messages for node {node} started"),
        )
    }

    /// Whether the code is a 4xx or 5xx.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Appends `code text CR LF`.
    pub fn write_to(&self, out: &mut impl Extend<u8>) {
        out.extend(format!("{} {}\r\n", self.code, self.text).into_bytes());
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// Appends a multi-line reply (`code-line` … `code line`, RFC 5321 §4.2.1).
pub fn write_multiline(code: u16, lines: &[&str], out: &mut impl Extend<u8>) {
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.extend(format!("{code}{sep}{line}\r\n").into_bytes());
    }
}

/// A reply from the server: its code and its lines' text, sanitised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    /// Three-digit code.
    pub code: u16,
    /// The text of each line after the code.
    pub lines: Vec<String>,
}

impl ServerReply {
    /// `code text` of the first line, for logs and bounces.
    pub fn summary(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map(String::as_str).unwrap_or("")
        )
        .trim_end()
        .to_string()
    }
}

/// Parses server replies from a byte stream.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    lines: Vec<String>,
    code: Option<u16>,
}

impl ReplyParser {
    /// Adds octets.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Whether octets are buffered that are not part of a complete reply yet.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || !self.lines.is_empty()
    }

    /// The next complete reply, an error, or `None` when more input is needed.
    pub fn next_reply(&mut self) -> Option<Result<ServerReply, String>> {
        loop {
            let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
                if self.buf.len() > MAX_REPLY_LINE {
                    return Some(Err("reply line too long".into()));
                }
                return None;
            };
            if nl > MAX_REPLY_LINE {
                return Some(Err("reply line too long".into()));
            }
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            // A CR or NUL inside a line is no reply a server means: the line it
            // would hide could be taken for another recipient's (LMTP) or another
            // command's reply.
            if line.len() < 3
                || !line[..3].iter().all(u8::is_ascii_digit)
                || line.iter().any(|&b| b == b'\r' || b == 0)
            {
                return Some(Err(format!("malformed reply \"{}\"", sanitize(&line))));
            }
            let code: u16 = std::str::from_utf8(&line[..3]).ok()?.parse().ok()?;
            if !(200..600).contains(&code) {
                return Some(Err(format!("reply code {code} out of range")));
            }
            if self.code.is_some_and(|c| c != code) {
                return Some(Err("multi-line reply changes its code".into()));
            }
            let sep = line.get(3).copied();
            if !matches!(sep, None | Some(b' ') | Some(b'-')) {
                return Some(Err(format!("malformed reply \"{}\"", sanitize(&line))));
            }
            self.code = Some(code);
            let text = if line.len() > 4 {
                sanitize(&line[4..])
            } else {
                String::new()
            };
            self.lines.push(text);
            if self.lines.len() > MAX_REPLY_LINES {
                return Some(Err("reply has too many lines".into()));
            }
            if sep != Some(b'-') {
                self.code = None;
                return Some(Ok(ServerReply {
                    code,
                    lines: std::mem::take(&mut self.lines),
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_reply_has_an_enhanced_code_matching_its_class() {
        for r in [
            Reply::OK,
            Reply::BAD_CHARACTERS,
            Reply::TOO_MANY_RCPTS,
            Reply::RELAY_DENIED,
            Reply::STORAGE_LOW,
            Reply::UNKNOWN_USER,
        ] {
            let class = r.text.as_bytes()[0];
            assert_eq!(class, b'0' + (r.code / 100) as u8, "{r}");
        }
    }

    #[test]
    fn multiline_format() {
        let mut out = Vec::new();
        write_multiline(250, &["a", "b", "c"], &mut out);
        assert_eq!(out, b"250-a\r\n250-b\r\n250 c\r\n");
    }
}
