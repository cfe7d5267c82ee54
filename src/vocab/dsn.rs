//! Delivery status notification parameters (RFC 3461): `RET` and `ENVID` of MAIL,
//! `NOTIFY` and `ORCPT` of RCPT, and their xtext encoding (§4). Parsing is strict:
//! a malformed value, a repeated parameter, `NEVER` with another keyword, an
//! `ENVID` over 100 characters or an `ORCPT` over 500 is refused (reference/
//! bad-input.md §L 100); a decoded value never holds a control character, so it
//! cannot reach the spool, a log line or a notice.

/// RFC 3461 §4.4: ENVID is at most 100 characters (as sent, in xtext).
pub const MAX_ENVID: usize = 100;

/// Whether `v` can be an ENVID: printable US-ASCII that fits [`MAX_ENVID`] in
/// xtext (what `sendmail -V` and a drop file may give).
pub fn envid_ok(v: &str) -> bool {
    !v.is_empty()
        && v.bytes().all(|b| (0x20..0x7f).contains(&b))
        && xtext_encode(v).len() <= MAX_ENVID
}
/// RFC 3461 §4.2: ORCPT is at most 500 characters (as sent).
pub const MAX_ORCPT: usize = 500;

/// What is wrong with a DSN parameter (each is a 501 5.5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DsnError {
    /// Not xtext: a `+` not followed by two upper-case hex digits, or an octet
    /// outside `!`..`~`, or `=`.
    Xtext,
    /// The decoded value holds a control character or is not UTF-8.
    Control,
    /// The value is longer than the parameter allows.
    TooLong,
    /// NOTIFY: an unknown keyword, an empty list, a repeat, or NEVER with another.
    Notify,
    /// RET: neither FULL nor HDRS.
    Ret,
    /// ORCPT: no `addr-type;`, or an addr-type that is not an atom.
    Orcpt,
    /// The same parameter twice.
    Repeated,
}

impl std::fmt::Display for DsnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DsnError::Xtext => "malformed xtext",
            DsnError::Control => "control character in a DSN parameter",
            DsnError::TooLong => "DSN parameter too long",
            DsnError::Notify => "NOTIFY is NEVER or a list of SUCCESS, FAILURE, DELAY",
            DsnError::Ret => "RET is FULL or HDRS",
            DsnError::Orcpt => "ORCPT is addr-type;xtext",
            DsnError::Repeated => "parameter given twice",
        })
    }
}

/// Decodes xtext (RFC 3461 §4): `+XX` (upper-case hex) stands for an octet; every
/// other octet is printable ASCII other than `+` and `=`. The result is UTF-8
/// without control characters.
pub fn xtext_decode(s: &str) -> Result<String, DsnError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = |c: u8| match c {
                    b'0'..=b'9' => Some(c - b'0'),
                    b'A'..=b'F' => Some(c - b'A' + 10),
                    _ => None,
                };
                let (Some(hi), Some(lo)) = (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(DsnError::Xtext);
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'=' => return Err(DsnError::Xtext),
            c @ b'!'..=b'~' => {
                out.push(c);
                i += 1;
            }
            _ => return Err(DsnError::Xtext),
        }
    }
    let text = String::from_utf8(out).map_err(|_| DsnError::Control)?;
    if text.chars().any(char::is_control) {
        return Err(DsnError::Control);
    }
    Ok(text)
}

/// Encodes a value as xtext: printable ASCII other than `+` and `=` as itself,
/// every other octet as `+XX`.
pub fn xtext_encode(s: &str) -> String {
    crate::vocab::hex_escape(s, b'+', b"=")
}

/// RCPT's NOTIFY: when the sender wants to hear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    /// SUCCESS: on delivery (or relay to a next hop without DSN).
    pub success: bool,
    /// FAILURE: on a bounce.
    pub failure: bool,
    /// DELAY: on a delay notice.
    pub delay: bool,
}

impl Notify {
    /// NEVER: no notice at all.
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };

    /// Parses `NEVER` or a comma-separated list of SUCCESS, FAILURE, DELAY (any
    /// case, each at most once).
    pub fn parse(s: &str) -> Result<Notify, DsnError> {
        if s.eq_ignore_ascii_case("NEVER") {
            return Ok(Notify::NEVER);
        }
        let mut n = Notify::default();
        for word in s.split(',') {
            let slot = if word.eq_ignore_ascii_case("SUCCESS") {
                &mut n.success
            } else if word.eq_ignore_ascii_case("FAILURE") {
                &mut n.failure
            } else if word.eq_ignore_ascii_case("DELAY") {
                &mut n.delay
            } else {
                return Err(DsnError::Notify);
            };
            if *slot {
                return Err(DsnError::Notify);
            }
            *slot = true;
        }
        Ok(n)
    }

    /// The parameter's value as sent on.
    pub fn render(&self) -> String {
        let words: Vec<&str> = [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, w)| *w)
        .collect();
        if words.is_empty() {
            "NEVER".into()
        } else {
            words.join(",")
        }
    }
}

/// MAIL's RET: what a notice returns of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// The whole message.
    Full,
    /// Its header only.
    Hdrs,
}

impl Ret {
    /// `FULL` or `HDRS`, any case.
    pub fn parse(s: &str) -> Result<Ret, DsnError> {
        if s.eq_ignore_ascii_case("FULL") {
            Ok(Ret::Full)
        } else if s.eq_ignore_ascii_case("HDRS") {
            Ok(Ret::Hdrs)
        } else {
            Err(DsnError::Ret)
        }
    }

    /// The parameter's value as sent on.
    pub fn render(&self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }
}

/// RCPT's ORCPT: the recipient as the sender first addressed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orcpt {
    /// The address type (`rfc822`, `utf-8`), as sent.
    pub addr_type: String,
    /// The address, decoded.
    pub address: String,
}

impl Orcpt {
    fn parse(s: &str) -> Result<Orcpt, DsnError> {
        if s.len() > MAX_ORCPT {
            return Err(DsnError::TooLong);
        }
        let (kind, value) = s.split_once(';').ok_or(DsnError::Orcpt)?;
        let atom = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c);
        if kind.is_empty() || !kind.bytes().all(atom) || value.is_empty() {
            return Err(DsnError::Orcpt);
        }
        let address = if kind.eq_ignore_ascii_case("utf-8") {
            utf8_addr_decode(value)?
        } else {
            xtext_decode(value)?
        };
        let o = Orcpt {
            addr_type: kind.to_string(),
            address,
        };
        // What is passed on must fit the same bound.
        if o.render().len() > MAX_ORCPT {
            return Err(DsnError::TooLong);
        }
        Ok(o)
    }

    /// The parameter's value as sent on: `addr-type;xtext`, or for the `utf-8`
    /// type RFC 6533's utf-8-addr-xtext (`\x{EB}` for `ë`).
    pub fn render(&self) -> String {
        if self.addr_type.eq_ignore_ascii_case("utf-8") {
            format!("{};{}", self.addr_type, utf8_addr_encode(&self.address))
        } else {
            format!("{};{}", self.addr_type, xtext_encode(&self.address))
        }
    }
}

/// RFC 6533 §3 utf-8-addr-xtext: printable ASCII but `+`, `=` and `\` as itself,
/// every other character as `\x{HEX}`.
pub fn utf8_addr_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '!'..='~') && !matches!(c, '+' | '=' | '\\') {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", c as u32));
        }
    }
    out
}

/// Decodes utf-8-addr-xtext (`\x{HEX}`, one to six hex digits naming a character),
/// taking xtext's `+XX` too, as senders write both; the result holds no control
/// character.
fn utf8_addr_decode(s: &str) -> Result<String, DsnError> {
    let mut plain = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\x{") {
        plain.push_str(&xtext_decode_part(&rest[..i])?);
        let after = &rest[i + 3..];
        let end = after.find('}').ok_or(DsnError::Xtext)?;
        let hex = &after[..end];
        let c = (!hex.is_empty() && hex.len() <= 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(hex, 16).ok())
            .flatten()
            .and_then(char::from_u32)
            .ok_or(DsnError::Xtext)?;
        plain.push(c);
        rest = &after[end + 1..];
    }
    plain.push_str(&xtext_decode_part(rest)?);
    if plain.chars().any(char::is_control) {
        return Err(DsnError::Control);
    }
    Ok(plain)
}

/// [`xtext_decode`] of a piece that may be empty; a lone `\` is not xtext here.
fn xtext_decode_part(s: &str) -> Result<String, DsnError> {
    if s.is_empty() {
        return Ok(String::new());
    }
    if s.contains('\\') {
        return Err(DsnError::Xtext);
    }
    xtext_decode(s)
}

/// Fills `slot` with what `parse` makes of a parameter's value, once: a second
/// value of the same parameter is refused.
fn once<T>(
    slot: &mut Option<T>,
    parse: impl FnOnce() -> Result<T, DsnError>,
) -> Result<bool, DsnError> {
    if slot.is_some() {
        return Err(DsnError::Repeated);
    }
    *slot = Some(parse()?);
    Ok(true)
}

/// The DSN parameters of one MAIL command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailDsn {
    /// RET, if given.
    pub ret: Option<Ret>,
    /// ENVID, decoded, if given.
    pub envid: Option<String>,
}

impl MailDsn {
    /// Takes `RET` or `ENVID` (`key` upper-case); `Ok(false)` for any other key.
    pub fn take(&mut self, key: &str, value: &str) -> Result<bool, DsnError> {
        match key {
            "RET" => once(&mut self.ret, || Ret::parse(value)),
            "ENVID" => once(&mut self.envid, || {
                if value.len() > MAX_ENVID {
                    return Err(DsnError::TooLong);
                }
                // RFC 3461 §4.4: printable US-ASCII once decoded (a next hop
                // refuses anything else, and the message would bounce there).
                let v = xtext_decode(value)?;
                if !v.is_ascii() {
                    return Err(DsnError::Xtext);
                }
                Ok(v)
            }),
            _ => Ok(false),
        }
    }
}

/// The DSN parameters of one RCPT command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptDsn {
    /// NOTIFY, if given (absent: the receiver's default, FAILURE and DELAY).
    pub notify: Option<Notify>,
    /// ORCPT, if given.
    pub orcpt: Option<Orcpt>,
}

impl RcptDsn {
    /// Takes `NOTIFY` or `ORCPT` (`key` upper-case); `Ok(false)` for any other key.
    pub fn take(&mut self, key: &str, value: &str) -> Result<bool, DsnError> {
        match key {
            "NOTIFY" => once(&mut self.notify, || Notify::parse(value)),
            "ORCPT" => once(&mut self.orcpt, || Orcpt::parse(value)),
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_decodes_hex_pairs_and_refuses_what_is_not_xtext() {
        assert_eq!(xtext_decode("a+2Bb@c.example").unwrap(), "a+b@c.example");
        assert_eq!(xtext_decode("+C3+BC").unwrap(), "ü");
        for bad in ["a+2b", "a+2", "a+", "a=b", "a b", "a\u{e9}"] {
            assert_eq!(xtext_decode(bad), Err(DsnError::Xtext), "{bad}");
        }
        // Decoded control characters and broken UTF-8 are refused.
        for bad in ["a+0Db", "a+0A", "+7F", "+00", "+C3"] {
            assert_eq!(xtext_decode(bad), Err(DsnError::Control), "{bad}");
        }
    }

    #[test]
    fn xtext_encodes_what_it_must_and_round_trips() {
        assert_eq!(xtext_encode("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext_encode("ü"), "+C3+BC");
        for s in ["plain@example.org", "a+b=c", "ünï cödé", "~!\"#"] {
            assert_eq!(xtext_decode(&xtext_encode(s)).unwrap(), s);
        }
    }

    #[test]
    fn notify_is_never_alone_or_a_list_without_repeats() {
        assert_eq!(Notify::parse("never").unwrap(), Notify::NEVER);
        let n = Notify::parse("SUCCESS,failure").unwrap();
        assert!(n.success && n.failure && !n.delay);
        assert_eq!(n.render(), "SUCCESS,FAILURE");
        assert_eq!(Notify::NEVER.render(), "NEVER");
        for bad in ["NEVER,SUCCESS", "SUCCESS,SUCCESS", "", "SUCCESS,", "LATER"] {
            assert_eq!(Notify::parse(bad), Err(DsnError::Notify), "{bad}");
        }
    }

    #[test]
    fn mail_and_rcpt_parameters_refuse_repeats_and_bounds() {
        let mut m = MailDsn::default();
        assert_eq!(m.take("RET", "hdrs"), Ok(true));
        assert_eq!(m.take("RET", "FULL"), Err(DsnError::Repeated));
        assert_eq!(m.take("ENVID", &"x".repeat(101)), Err(DsnError::TooLong));
        assert_eq!(
            MailDsn::default().take("ENVID", "+C3+BC"),
            Err(DsnError::Xtext)
        );
        assert!(envid_ok("id 1") && !envid_ok("ü") && !envid_ok(&"a b".repeat(34)));
        assert_eq!(m.take("ENVID", "QQ+2B1"), Ok(true));
        assert_eq!(m.envid.as_deref(), Some("QQ+1"));
        assert_eq!(m.take("SIZE", "1"), Ok(false));
        assert_eq!(MailDsn::default().take("RET", "BODY"), Err(DsnError::Ret));

        let mut r = RcptDsn::default();
        assert_eq!(r.take("ORCPT", "rfc822;a+2Bb@c.example"), Ok(true));
        let o = r.orcpt.clone().unwrap();
        assert_eq!(
            (o.addr_type.as_str(), o.address.as_str()),
            ("rfc822", "a+b@c.example")
        );
        assert_eq!(o.render(), "rfc822;a+2Bb@c.example");
        assert_eq!(r.take("ORCPT", "rfc822;x"), Err(DsnError::Repeated));
        for bad in ["rfc822", ";a@b", "rfc 822;a@b", "rfc822;"] {
            assert_eq!(
                RcptDsn::default().take("ORCPT", bad),
                Err(DsnError::Orcpt),
                "{bad}"
            );
        }
        // RFC 6533's form for the utf-8 type, and xtext's, both read; it is sent on
        // in RFC 6533's.
        let mut u = RcptDsn::default();
        assert_eq!(
            u.take("ORCPT", "utf-8;zo\\x{EB}\\x{2B}+2B@x.example"),
            Ok(true)
        );
        let o = u.orcpt.unwrap();
        assert_eq!(o.address, "zoë++@x.example");
        assert_eq!(o.render(), "utf-8;zo\\x{EB}\\x{2B}\\x{2B}@x.example");
        for bad in [
            "utf-8;a\\x{}b",
            "utf-8;a\\x{110000}",
            "utf-8;a\\x{D800}",
            "utf-8;a\\x{7}",
            "utf-8;a\\b",
            "utf-8;a\\x{41",
        ] {
            assert!(RcptDsn::default().take("ORCPT", bad).is_err(), "{bad}");
        }
        let long = format!("rfc822;{}", "a".repeat(500));
        assert_eq!(
            RcptDsn::default().take("ORCPT", &long),
            Err(DsnError::TooLong)
        );
        assert_eq!(r.take("NOTIFY", "DELAY"), Ok(true));
        assert_eq!(r.take("NOTIFY", "DELAY"), Err(DsnError::Repeated));
    }
}
