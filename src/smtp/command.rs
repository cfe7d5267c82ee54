//! One command line (without CR LF) to a [`Command`]. Pure, never panics; every
//! failure is a [`Reply`] the server sends as is (OpenSMTPD's check step).

use super::reply::Reply;
use super::{parse_path, parse_path_utf8, AddrError, Domain, Mailbox, ReversePath};
use crate::vocab::dsn::{DsnError, MailDsn, RcptDsn};

/// `BODY=` of RFC 6152.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// 7-bit content (the default).
    SevenBit,
    /// 8-bit MIME content.
    EightBitMime,
}

/// A parsed SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `HELO name`.
    Helo(String),
    /// `EHLO name`.
    Ehlo(String),
    /// `MAIL FROM:<path> [SIZE=n] [BODY=…] [SMTPUTF8] [RET=…] [ENVID=…]`.
    Mail {
        /// The reverse-path.
        from: ReversePath,
        /// The declared size, if any.
        size: Option<u64>,
        /// The declared body type.
        body: Body,
        /// `SMTPUTF8` (RFC 6531): UTF-8 addresses and header fields may follow.
        smtputf8: bool,
        /// `RET` and `ENVID` (RFC 3461).
        dsn: MailDsn,
    },
    /// `RCPT TO:<path> [NOTIFY=…] [ORCPT=…]`.
    Rcpt {
        /// The recipient.
        to: Mailbox,
        /// `NOTIFY` and `ORCPT` (RFC 3461).
        dsn: RcptDsn,
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030): a chunk of `size` octets follows the line.
    Bdat {
        /// The chunk's octets.
        size: u64,
        /// Whether it is the message's last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP [text]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY text`.
    Vrfy,
    /// `HELP [topic]`.
    Help,
    /// `ETRN argument` (RFC 1985), the raw argument after one space.
    Etrn(String),
    /// `ATRN [domain,domain…]` (RFC 2645 §5.2.1): the domains, lower case; empty for
    /// all of the identity's.
    Atrn(Vec<String>),
    /// `STARTTLS` (RFC 3207; no arguments).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// The mechanism name, upper-cased.
        mech: String,
        /// The initial response, if sent (`=` is an empty one).
        initial: Option<String>,
    },
    /// A verb we know of but do not offer (EXPN, TURN, ...).
    NotImplemented,
    /// A verb nobody knows.
    Unknown,
    /// The first line of an HTTP request or proxy command: the client is no SMTP
    /// client and is disconnected at once (Postfix `smtpd_forbid_cmds`).
    Forbidden,
}

impl Command {
    /// Whether the command may be followed by more pipelined commands in the same
    /// group (RFC 2920 §3.1: EHLO, DATA, VRFY, EXPN, TURN, QUIT and NOOP end a group;
    /// we check those that change state, and STARTTLS/AUTH, whose followers must never
    /// be answered in the old state: reference/bad-input.md B13).
    pub fn ends_group(&self) -> bool {
        match self {
            // RFC 4954 §4: AUTH ends a group unless its one round trip is done
            // with the initial response inline.
            Command::Auth { mech, initial } => !(mech == "PLAIN" && initial.is_some()),
            _ => matches!(
                self,
                Command::Helo(_)
                    | Command::Ehlo(_)
                    | Command::Data
                    | Command::NotImplemented
                    | Command::StartTls
                    | Command::Atrn(_)
            ),
        }
    }

    /// Whether the command is one that spammers repeat to keep a session alive (HELO
    /// and EHLO too: repeated forever they would hold a session open);
    /// past a limit each counts as an error (Postfix `smtpd_junk_command_limit`).
    pub fn is_junk(&self) -> bool {
        matches!(
            self,
            Command::Noop
                | Command::Rset
                | Command::Vrfy
                | Command::Help
                | Command::Etrn(_)
                | Command::Helo(_)
                | Command::Ehlo(_)
        )
    }
}

/// Splits `VERB rest` at the first space.
fn split_verb(line: &str) -> (&str, &str) {
    match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    }
}

/// Parses one command line.
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    parse_qualified(line, None)
}

/// [`parse`], with an unqualified address in MAIL or RCPT (`<root>`) completed with
/// `@domain` when a domain is given (DESIGN.md §5.13: for local clients, with
/// `HOSTNAME`); without one such an address is a syntax error, as before.
pub fn parse_qualified(line: &[u8], domain: Option<&str>) -> Result<Command, Reply> {
    parse_in(line, domain, false)
}

/// [`parse_qualified`] inside a transaction whose MAIL said `SMTPUTF8` (`utf8`):
/// then RCPT takes UTF-8 addresses (RFC 6531 §3.4).
pub fn parse_in(line: &[u8], domain: Option<&str>, utf8: bool) -> Result<Command, Reply> {
    if line.contains(&0) || line.contains(&b'\r') {
        return Err(Reply::BAD_CHARACTERS);
    }
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(_) => {
            // Non-UTF-8 anywhere: a HELO name or an address can only be refused.
            let verb = line.get(..4).map(<[u8]>::to_ascii_uppercase);
            return Err(match verb.as_deref() {
                Some(b"MAIL") | Some(b"RCPT") => Reply::BAD_UTF8,
                _ => Reply::BAD_CHARACTERS,
            });
        }
    };
    let (verb, rest) = split_verb(text);
    let verb_up = verb.to_ascii_uppercase();
    match verb_up.as_str() {
        "HELO" | "EHLO" => {
            let name = rest.trim();
            if name.is_empty() {
                return Err(Reply::HELO_NEEDS_NAME);
            }
            if !name.is_ascii() || name.contains(' ') {
                return Err(Reply::HELO_BAD_NAME);
            }
            if name.starts_with('[') {
                Domain::parse(name).map_err(|_| Reply::HELO_BAD_NAME)?;
            } else {
                Domain::parse_relaxed(name).map_err(|_| Reply::HELO_BAD_NAME)?;
            }
            if verb_up == "HELO" {
                Ok(Command::Helo(name.to_string()))
            } else {
                Ok(Command::Ehlo(name.to_string()))
            }
        }
        "MAIL" => parse_mail(rest, domain),
        "RCPT" => parse_rcpt(rest, domain, utf8),
        "DATA" => no_args(rest, Command::Data),
        "BDAT" => parse_bdat(rest),
        "RSET" => no_args(rest, Command::Rset),
        "QUIT" => no_args(rest, Command::Quit),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" => {
            if rest.trim().is_empty() {
                Err(Reply::SYNTAX_PARAMS)
            } else {
                Ok(Command::Vrfy)
            }
        }
        "ETRN" => Ok(Command::Etrn(rest.to_string())),
        "STARTTLS" => no_args(rest, Command::StartTls),
        "AUTH" => {
            let mut w = rest.split(' ').filter(|w| !w.is_empty());
            let (Some(mech), initial, None) = (w.next(), w.next(), w.next()) else {
                return Err(Reply::SYNTAX_PARAMS);
            };
            Ok(Command::Auth {
                mech: mech.to_ascii_uppercase(),
                initial: initial.map(str::to_string),
            })
        }
        "ATRN" => match super::atrn::parse_list(rest) {
            Ok(list) => Ok(Command::Atrn(list)),
            Err(super::atrn::ListError::TooMany) => Err(Reply::ATRN_TOO_MANY),
            Err(super::atrn::ListError::Syntax) => Err(Reply::ATRN_SYNTAX),
        },
        "EXPN" | "TURN" | "SEND" | "SOML" | "SAML" | "XCLIENT" | "XFORWARD" => {
            Ok(Command::NotImplemented)
        }
        "GET" | "POST" | "HEAD" | "PUT" | "CONNECT" | "OPTIONS" | "HOST:" | "USER-AGENT:" => {
            Ok(Command::Forbidden)
        }
        _ => Ok(Command::Unknown),
    }
}

/// `BDAT size [LAST]`: the size is 1 to 20 digits (RFC 3030 §2, a value past
/// `u64` is no size anyone sends); `LAST` in any case.
fn parse_bdat(rest: &str) -> Result<Command, Reply> {
    let mut w = rest.split(' ');
    let (Some(n), last, None) = (w.next(), w.next(), w.next()) else {
        return Err(Reply::BDAT_SYNTAX);
    };
    let size = (!n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse::<u64>().ok())
        .flatten()
        .ok_or(Reply::BDAT_SYNTAX)?;
    let last = match last {
        None => false,
        Some(l) if l.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(Reply::BDAT_SYNTAX),
    };
    Ok(Command::Bdat { size, last })
}

fn no_args(rest: &str, cmd: Command) -> Result<Command, Reply> {
    if rest.trim().is_empty() {
        Ok(cmd)
    } else {
        Err(Reply::SYNTAX_PARAMS)
    }
}

/// Splits `FROM:<path> params` after the verb: the path (brackets included) and the
/// parameter text. A space after the colon is tolerated, as every MTA does.
fn split_path<'a>(rest: &'a str, keyword: &str) -> Result<(&'a str, &'a str), Reply> {
    let kw_len = keyword.len();
    if !rest
        .get(..kw_len)
        .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
    {
        return Err(Reply::SYNTAX_PARAMS);
    }
    let after = rest.get(kw_len..).unwrap_or("").trim_start_matches(' ');
    if !after.starts_with('<') {
        return Err(Reply::SYNTAX_PATH);
    }
    // The path ends at the first '>' not inside a quoted string.
    let bytes = after.as_bytes();
    let mut in_quote = false;
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quote => i += 1,
            b'"' => in_quote = !in_quote,
            b'>' if !in_quote => {
                let (path, params) = after.split_at(i + 1);
                if !params.is_empty() && !params.starts_with(' ') {
                    return Err(Reply::SYNTAX_PATH);
                }
                return Ok((path, params.trim_start_matches(' ')));
            }
            _ => {}
        }
        i += 1;
    }
    Err(Reply::SYNTAX_PATH)
}

fn addr_error(e: AddrError) -> Reply {
    match e {
        AddrError::NonAscii => Reply::NEED_SMTPUTF8,
        AddrError::BadDomain => Reply::BAD_DOMAIN,
        AddrError::LocalPartTooLong => Reply::LOCAL_TOO_LONG,
        AddrError::Syntax => Reply::SYNTAX_PATH,
    }
}

/// Parses ESMTP parameters: `keyword[=value]` separated by spaces (RFC 5321 §4.1.2).
fn parse_params(text: &str) -> Result<Vec<(String, Option<&str>)>, Reply> {
    let mut out = Vec::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let (k, v) = match word.find('=') {
            Some(i) => (&word[..i], Some(&word[i + 1..])),
            None => (word, None),
        };
        let key_ok = !k.is_empty()
            && k.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = match v {
            None => true,
            Some(v) => !v.is_empty() && v.bytes().all(|b| (33..=126).contains(&b) && b != b'='),
        };
        if !key_ok || !value_ok {
            return Err(Reply::SYNTAX_PARAMS);
        }
        out.push((k.to_ascii_uppercase(), v));
    }
    Ok(out)
}

/// `<local>` completed as `<local@domain>` (not the null path, not `postmaster`, not
/// anything with an `@` outside quotes already).
fn qualified<'a>(path: &'a str, domain: Option<&str>) -> std::borrow::Cow<'a, str> {
    let Some(domain) = domain else {
        return path.into();
    };
    let inner = &path[1..path.len().saturating_sub(1).max(1)];
    let mut in_quote = false;
    let mut escaped = false;
    let mut at = false;
    for b in inner.bytes() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_quote => escaped = true,
            b'"' => in_quote = !in_quote,
            b'@' if !in_quote => at = true,
            _ => {}
        }
    }
    if inner.is_empty() || at || inner.eq_ignore_ascii_case("postmaster") {
        return path.into();
    }
    format!("<{inner}@{domain}>").into()
}

fn dsn_error(e: DsnError) -> Reply {
    Reply::new(501, format!("5.5.4 Syntax error in DSN parameter: {e}"))
}

/// The path of MAIL or RCPT: UTF-8 only with SMTPUTF8 (553 5.6.7 otherwise).
fn path_of(path: &str, domain: Option<&str>, utf8: bool) -> Result<ReversePath, Reply> {
    if !utf8 && !path.is_ascii() {
        return Err(Reply::NEED_SMTPUTF8);
    }
    let path = qualified(path, domain);
    if utf8 {
        parse_path_utf8(&path)
    } else {
        parse_path(&path)
    }
    .map_err(addr_error)
}

fn parse_mail(rest: &str, domain: Option<&str>) -> Result<Command, Reply> {
    let (path, params) = split_path(rest, "FROM:")?;
    if !params.is_ascii() {
        return Err(Reply::SYNTAX_PARAMS);
    }
    let mut size = None;
    let mut body = Body::SevenBit;
    let mut smtputf8 = false;
    let mut dsn = MailDsn::default();
    for (k, v) in parse_params(params)? {
        match (k.as_str(), v) {
            ("SIZE", Some(v)) if v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) => {
                size = Some(v.parse::<u64>().unwrap_or(u64::MAX));
            }
            ("SIZE", _) => return Err(Reply::BAD_SIZE),
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => body = Body::SevenBit,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => body = Body::EightBitMime,
            ("BODY", _) => return Err(Reply::SYNTAX_PARAMS),
            ("SMTPUTF8", None) if !smtputf8 => smtputf8 = true,
            ("SMTPUTF8", _) => return Err(Reply::SYNTAX_PARAMS),
            // RFC 4954 §5: the submitter's identity as another server asserted it.
            // Accepted and not trusted: nobody here is entitled to assert one.
            ("AUTH", Some(_)) => {}
            (k @ ("RET" | "ENVID"), Some(v)) => {
                dsn.take(k, v).map_err(dsn_error)?;
            }
            ("RET" | "ENVID", None) => return Err(Reply::SYNTAX_PARAMS),
            _ => return Err(Reply::UNKNOWN_PARAM),
        }
    }
    let from = path_of(path, domain, smtputf8)?;
    Ok(Command::Mail {
        from,
        size,
        body,
        smtputf8,
        dsn,
    })
}

fn parse_rcpt(rest: &str, domain: Option<&str>, utf8: bool) -> Result<Command, Reply> {
    let (path, params) = split_path(rest, "TO:")?;
    if !params.is_ascii() {
        return Err(Reply::SYNTAX_PARAMS);
    }
    let mut dsn = RcptDsn::default();
    for (k, v) in parse_params(params)? {
        match (k.as_str(), v) {
            (k @ ("NOTIFY" | "ORCPT"), Some(v)) => {
                dsn.take(k, v).map_err(dsn_error)?;
            }
            ("NOTIFY" | "ORCPT", None) => return Err(Reply::SYNTAX_PARAMS),
            _ => return Err(Reply::UNKNOWN_PARAM),
        }
    }
    match path_of(path, domain, utf8)? {
        Some(to) => Ok(Command::Rcpt { to, dsn }),
        None => Err(Reply::NULL_RCPT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! cmd {
        ($name:ident, $input:expr, $want:expr) => {
            #[test]
            fn $name() {
                assert_eq!(parse($input), $want);
            }
        };
    }

    fn rcpt(to: Mailbox) -> Command {
        Command::Rcpt {
            to,
            dsn: RcptDsn::default(),
        }
    }

    fn mb(s: &str) -> Mailbox {
        Mailbox::parse(s).unwrap()
    }

    cmd!(
        helo,
        b"HELO client.example",
        Ok(Command::Helo("client.example".into()))
    );
    cmd!(ehlo_lower, b"ehlo x", Ok(Command::Ehlo("x".into())));
    cmd!(
        ehlo_literal,
        b"EHLO [127.0.0.1]",
        Ok(Command::Ehlo("[127.0.0.1]".into()))
    );
    cmd!(ehlo_empty, b"EHLO", Err(Reply::HELO_NEEDS_NAME));
    cmd!(helo_bad_utf8, b"HELO \xff", Err(Reply::BAD_CHARACTERS));
    cmd!(
        helo_utf8,
        "HELO jürgen.example".as_bytes(),
        Err(Reply::HELO_BAD_NAME)
    );
    cmd!(
        mail_plain,
        b"MAIL FROM:<a@b.example>",
        Ok(Command::Mail {
            from: Some(mb("a@b.example")),
            size: None,
            body: Body::SevenBit,
            smtputf8: false,
            dsn: MailDsn::default(),
        })
    );
    cmd!(
        mail_space,
        b"mail from: <a@b.example>",
        Ok(Command::Mail {
            from: Some(mb("a@b.example")),
            size: None,
            body: Body::SevenBit,
            smtputf8: false,
            dsn: MailDsn::default(),
        })
    );
    cmd!(
        mail_null,
        b"MAIL FROM:<>",
        Ok(Command::Mail {
            from: None,
            size: None,
            body: Body::SevenBit,
            smtputf8: false,
            dsn: MailDsn::default(),
        })
    );
    cmd!(
        mail_size_body,
        b"MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME",
        Ok(Command::Mail {
            from: Some(mb("a@b.example")),
            size: Some(1000),
            body: Body::EightBitMime,
            smtputf8: false,
            dsn: MailDsn::default(),
        })
    );
    cmd!(
        mail_size_huge,
        b"MAIL FROM:<a@b.example> SIZE=99999999999",
        Ok(Command::Mail {
            from: Some(mb("a@b.example")),
            size: Some(99999999999),
            body: Body::SevenBit,
            smtputf8: false,
            dsn: MailDsn::default(),
        })
    );
    cmd!(
        mail_size_abc,
        b"MAIL FROM:<a@b.example> SIZE=abc",
        Err(Reply::BAD_SIZE)
    );
    cmd!(
        mail_trailing_quote,
        b"MAIL FROM:<a@b.example> \"",
        Err(Reply::SYNTAX_PARAMS)
    );
    cmd!(
        mail_trailing_eq,
        b"MAIL FROM:<a@b.example> =",
        Err(Reply::SYNTAX_PARAMS)
    );
    cmd!(
        mail_body_empty,
        b"MAIL FROM:<a@b.example> BODY=",
        Err(Reply::SYNTAX_PARAMS)
    );
    cmd!(
        mail_x_empty_quotes,
        b"MAIL FROM:<a@b.example> X=\"\"",
        Err(Reply::UNKNOWN_PARAM)
    );
    cmd!(
        mail_no_brackets,
        b"MAIL FROM:a@b.example",
        Err(Reply::SYNTAX_PATH)
    );
    cmd!(
        mail_nul,
        b"MAIL FROM:<a\x00b@c.example>",
        Err(Reply::BAD_CHARACTERS)
    );
    cmd!(
        mail_utf8,
        "MAIL FROM:<jürgen@b.example>".as_bytes(),
        Err(Reply::NEED_SMTPUTF8)
    );
    cmd!(
        mail_shell,
        b"MAIL FROM:<;sleep 5;>",
        Err(Reply::SYNTAX_PATH)
    );
    cmd!(rcpt_null, b"RCPT TO:<>", Err(Reply::NULL_RCPT));
    cmd!(
        rcpt_postmaster,
        b"RCPT TO:<PostMaster>",
        Ok(rcpt(Mailbox::postmaster()))
    );
    cmd!(
        rcpt_quoted_gt,
        b"RCPT TO:<\"a>b\"@x.example>",
        Ok(rcpt(mb("\"a>b\"@x.example")))
    );
    cmd!(
        rcpt_param,
        b"RCPT TO:<a@b.example> FOO=BAR",
        Err(Reply::UNKNOWN_PARAM)
    );

    #[test]
    fn dsn_parameters_are_taken_and_bad_ones_are_501() {
        let Ok(Command::Rcpt { dsn, .. }) =
            parse(b"RCPT TO:<a@b.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@c.example")
        else {
            panic!("not parsed");
        };
        assert!(dsn.notify.unwrap().success);
        assert_eq!(dsn.orcpt.unwrap().address, "a+b@c.example");
        let Ok(Command::Mail { dsn, .. }) = parse(b"MAIL FROM:<a@b.example> RET=HDRS ENVID=QQ+2B1")
        else {
            panic!("not parsed");
        };
        assert_eq!(dsn.envid.as_deref(), Some("QQ+1"));
        // reference/bad-input.md §L 100.
        for bad in [
            "RCPT TO:<a@b.example> NOTIFY=NEVER,SUCCESS",
            "RCPT TO:<a@b.example> ORCPT=rfc822;a+2b",
            "RCPT TO:<a@b.example> NOTIFY=SUCCESS NOTIFY=FAILURE",
            "RCPT TO:<a@b.example> NOTIFY",
            "MAIL FROM:<a@b.example> RET=HDRS RET=FULL",
            "MAIL FROM:<a@b.example> RET=SOME",
            "MAIL FROM:<a@b.example> ENVID=+C3+BC",
        ] {
            assert_eq!(parse(bad.as_bytes()).map_err(|r| r.code), Err(501), "{bad}");
        }
        let long = format!("MAIL FROM:<a@b.example> ENVID={}", "x".repeat(101));
        assert_eq!(parse(long.as_bytes()).map_err(|r| r.code), Err(501));
    }

    #[test]
    fn utf8_addresses_need_smtputf8_and_valid_utf8() {
        // reference/bad-input.md §L 99.
        let Ok(Command::Mail {
            smtputf8: true,
            from: Some(f),
            ..
        }) = parse("MAIL FROM:<jürgen@bücher.example> SMTPUTF8".as_bytes())
        else {
            panic!("not parsed");
        };
        assert_eq!(f.to_string(), "jürgen@xn--bcher-kva.example");
        let utf8_rcpt = "RCPT TO:<ü@ours.example>".as_bytes();
        assert!(matches!(
            parse_in(utf8_rcpt, None, true),
            Ok(Command::Rcpt { .. })
        ));
        assert_eq!(parse(utf8_rcpt).map_err(|r| r.code), Err(553));
        assert_eq!(
            parse("MAIL FROM:<ü@b.example>".as_bytes()).map_err(|r| r.code),
            Err(553)
        );
        assert_eq!(
            parse(b"RCPT TO:<\xff@b.example>").map_err(|r| r.code),
            Err(501)
        );
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> SMTPUTF8=yes").map_err(|r| r.code),
            Err(501)
        );
        assert_eq!(
            parse("MAIL FRü".as_bytes()).map_err(|r| r.code),
            Err(501),
            "no slicing inside a character"
        );
    }
    cmd!(
        rcpt_long_local,
        format!("RCPT TO:<{}@x.example>", "a".repeat(300)).as_bytes(),
        Err(Reply::SYNTAX_PATH)
    );
    cmd!(
        rcpt_long_domain,
        format!("RCPT TO:<u@{}.example>", "a".repeat(64)).as_bytes(),
        Err(Reply::BAD_DOMAIN)
    );
    cmd!(data, b"DATA", Ok(Command::Data));
    cmd!(data_args, b"DATA x", Err(Reply::SYNTAX_PARAMS));
    cmd!(noop_text, b"NOOP hello", Ok(Command::Noop));
    cmd!(
        etrn,
        b"ETRN client.dom",
        Ok(Command::Etrn("client.dom".into()))
    );
    cmd!(http, b"GET / HTTP/1.1", Ok(Command::Forbidden));
    cmd!(connect, b"CONNECT x:25", Ok(Command::Forbidden));
    cmd!(unknown, b"FOO", Ok(Command::Unknown));
    cmd!(starttls, b"STARTTLS", Ok(Command::StartTls));
    cmd!(starttls_args, b"STARTTLS now", Err(Reply::SYNTAX_PARAMS));
    cmd!(
        auth_plain_inline,
        b"AUTH plain AHRpbQB0aW0=",
        Ok(Command::Auth {
            mech: "PLAIN".into(),
            initial: Some("AHRpbQB0aW0=".into())
        })
    );
    cmd!(auth_bare, b"AUTH", Err(Reply::SYNTAX_PARAMS));
    cmd!(auth_three, b"AUTH PLAIN a b", Err(Reply::SYNTAX_PARAMS));
    cmd!(
        mail_auth_param,
        b"MAIL FROM:<a@b.example> AUTH=<>",
        Ok(Command::Mail {
            from: Some(mb("a@b.example")),
            size: None,
            body: Body::SevenBit,
            smtputf8: false,
            dsn: MailDsn::default(),
        })
    );

    #[test]
    fn never_panics_on_noise() {
        let mut seed = 0x1234_5678_u32;
        for len in 0..300 {
            let line: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    b"MAILRCPT FROM:TO<>@\"\\ .=-a1\xff\x00"[(seed % 28) as usize]
                })
                .collect();
            let _ = parse(&line);
        }
    }

    #[test]
    fn unqualified_addresses_are_completed_only_when_asked() {
        let q = |l: &str| parse_qualified(l.as_bytes(), Some("mx.test.example"));
        assert_eq!(
            q("RCPT TO:<root>"),
            Ok(rcpt(Mailbox::parse("root@mx.test.example").unwrap()))
        );
        assert!(matches!(
            q("MAIL FROM:<cron>"),
            Ok(Command::Mail { from: Some(m), .. }) if m.to_string() == "cron@mx.test.example"
        ));
        assert_eq!(q("RCPT TO:<PostMaster>"), Ok(rcpt(Mailbox::postmaster())));
        assert_eq!(q("RCPT TO:<u@d.example>"), parse(b"RCPT TO:<u@d.example>"));
        assert!(matches!(
            q("MAIL FROM:<>"),
            Ok(Command::Mail { from: None, .. })
        ));
        // Without a domain, an unqualified address is refused as before.
        assert!(parse(b"RCPT TO:<root>").is_err());
        // A source route keeps its meaning.
        assert_eq!(
            q("RCPT TO:<@a.example:u@d.example>"),
            parse(b"RCPT TO:<@a.example:u@d.example>")
        );
    }
}
