//! Domains and mailboxes (RFC 5321 §4.1.2, §4.5.3.1): parsed once at the edge,
//! typed afterwards.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// RFC 5321 §4.5.3.1.1: maximum length of a local part.
pub const MAX_LOCAL_PART_LEN: usize = 64;
/// RFC 5321 §4.5.3.1.2: maximum length of a domain.
pub const MAX_DOMAIN_LEN: usize = 255;
/// RFC 1035 §2.3.4: maximum length of one label.
pub const MAX_LABEL_LEN: usize = 63;
/// RFC 5321 §4.5.3.1.3: maximum length of a path, angle brackets included.
pub const MAX_PATH_LEN: usize = 256;

/// Why an address or domain failed to parse. Each maps to one SMTP reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrError {
    /// Not of the RFC 5321 path syntax.
    Syntax,
    /// A domain or label over its length limit, or a bad domain character.
    BadDomain,
    /// A local part over 64 octets.
    LocalPartTooLong,
    /// Bytes outside ASCII without SMTPUTF8 (RFC 6531).
    NonAscii,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrError::Syntax => "address syntax error",
            AddrError::BadDomain => "bad domain name",
            AddrError::LocalPartTooLong => "local part too long",
            AddrError::NonAscii => "non-ASCII address without SMTPUTF8",
        })
    }
}

impl std::error::Error for AddrError {}

/// A domain name or address literal, stored in lower case. Valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// Parses an RFC 5321 `Domain` or `address-literal` (`[1.2.3.4]`, `[IPv6:…]`).
    pub fn parse(s: &str) -> Result<Domain, AddrError> {
        if !s.is_ascii() {
            return Err(AddrError::NonAscii);
        }
        if s.starts_with('[') {
            return parse_literal(s).map(|_| Domain(s.to_ascii_lowercase()));
        }
        if s.is_empty() || s.len() > MAX_DOMAIN_LEN {
            return Err(AddrError::BadDomain);
        }
        for label in s.split('.') {
            if label.is_empty() || label.len() > MAX_LABEL_LEN {
                return Err(AddrError::BadDomain);
            }
            let ok = label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok || label.starts_with('-') || label.ends_with('-') {
                return Err(AddrError::BadDomain);
            }
        }
        Ok(Domain(s.to_ascii_lowercase()))
    }

    /// [`Domain::parse`], and with `utf8` (SMTPUTF8, RFC 6531 §3.3) a domain of
    /// U-labels too, kept in its A-label form (IDNA 2008 through UTS #46, strict
    /// rules): every domain is compared and routed as ASCII.
    pub fn parse_in(s: &str, utf8: bool) -> Result<Domain, AddrError> {
        if !utf8 || s.is_ascii() || s.starts_with('[') {
            return Domain::parse(s);
        }
        if s.chars().any(char::is_control) {
            return Err(AddrError::BadDomain);
        }
        let ascii = idna::domain_to_ascii_strict(s).map_err(|_| AddrError::BadDomain)?;
        Domain::parse(&ascii)
    }

    /// Like [`Domain::parse`] but ignores one trailing dot (`client.dom.`), as ETRN and
    /// configuration files allow.
    pub fn parse_relaxed(s: &str) -> Result<Domain, AddrError> {
        Domain::parse(s.strip_suffix('.').unwrap_or(s))
    }

    /// The lower-case text of the domain.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address of an address literal, or `None` for a domain name.
    pub fn literal(&self) -> Option<IpAddr> {
        parse_literal(&self.0).ok()
    }

    /// True when `self` is `other` or one of its subdomains.
    pub fn is_within(&self, other: &Domain) -> bool {
        self.0 == other.0
            || (self.0.len() > other.0.len()
                && self.0.ends_with(&other.0)
                && self.0.as_bytes()[self.0.len() - other.0.len() - 1] == b'.')
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_literal(s: &str) -> Result<IpAddr, AddrError> {
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or(AddrError::BadDomain)?;
    if let Some(v6) = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
    {
        return v6
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| AddrError::BadDomain);
    }
    inner
        .parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .map_err(|_| AddrError::BadDomain)
}

/// A mailbox `local@domain`, or the bare local part `postmaster` (RFC 5321 §4.1.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    /// The local part exactly as written on the wire (a dot-string or a quoted string).
    local: String,
    domain: Option<Domain>,
}

impl Mailbox {
    /// Parses `local@domain` (no angle brackets).
    pub fn parse(s: &str) -> Result<Mailbox, AddrError> {
        Mailbox::parse_in(s, false)
    }

    /// [`Mailbox::parse`], and with `utf8` a UTF-8 local part (RFC 6531 §3.3: any
    /// non-ASCII character is atext and qtext) and a U-label domain.
    pub fn parse_in(s: &str, utf8: bool) -> Result<Mailbox, AddrError> {
        if !utf8 && !s.is_ascii() {
            return Err(AddrError::NonAscii);
        }
        let at = local_part_end(s)?;
        let local = &s[..at];
        if local.len() > MAX_LOCAL_PART_LEN {
            return Err(AddrError::LocalPartTooLong);
        }
        let rest = &s[at..];
        let domain = rest.strip_prefix('@').ok_or(AddrError::Syntax)?;
        Ok(Mailbox {
            local: local.to_string(),
            domain: Some(Domain::parse_in(domain, utf8)?),
        })
    }

    /// Whether the address is all ASCII (its domain always is).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii()
    }

    /// The bare `postmaster` mailbox, any case (RFC 5321 §4.5.1).
    pub fn postmaster() -> Mailbox {
        Mailbox {
            local: "postmaster".to_string(),
            domain: None,
        }
    }

    /// The local part as written (quotes included).
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The local part with quoting removed: the name a local user or alias is looked
    /// up by.
    pub fn local_unquoted(&self) -> String {
        match self
            .local
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
        {
            Some(inner) => {
                let mut out = String::with_capacity(inner.len());
                let mut esc = false;
                for c in inner.chars() {
                    if esc || c != '\\' {
                        out.push(c);
                        esc = false;
                    } else {
                        esc = true;
                    }
                }
                out
            }
            None => self.local.clone(),
        }
    }

    /// The domain, or `None` for the bare `postmaster`.
    pub fn domain(&self) -> Option<&Domain> {
        self.domain.as_ref()
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.domain {
            Some(d) => write!(f, "{}@{}", self.local, d),
            None => f.write_str(&self.local),
        }
    }
}

/// RFC 5322 `atext` as RFC 5321 uses it for `Atom`.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// Finds the end of the local part (the index of the `@` that follows it), checking
/// its syntax: a dot-string or a quoted string.
fn local_part_end(s: &str) -> Result<usize, AddrError> {
    let b = s.as_bytes();
    if b.first() == Some(&b'"') {
        let mut i = 1;
        while i < b.len() {
            match b[i] {
                b'\\' => {
                    if i + 1 >= b.len() || !(32..=126).contains(&b[i + 1]) {
                        return Err(AddrError::Syntax);
                    }
                    i += 2;
                }
                b'"' => return Ok(i + 1),
                32..=126 | 0x80.. => i += 1,
                _ => return Err(AddrError::Syntax),
            }
        }
        return Err(AddrError::Syntax);
    }
    let end = b.iter().position(|&c| c == b'@').ok_or(AddrError::Syntax)?;
    let local = &b[..end];
    if local.is_empty() {
        return Err(AddrError::Syntax);
    }
    for atom in local.split(|&c| c == b'.') {
        if atom.is_empty() || !atom.iter().all(|&c| is_atext(c) || c >= 0x80) {
            return Err(AddrError::Syntax);
        }
    }
    Ok(end)
}

/// Parses an address as a local program writes it (`<a@b>`, `a@b`, or a bare name,
/// which is qualified with `hostname`).
pub fn qualify(a: &str, hostname: &str) -> Result<Mailbox, String> {
    let a = a.trim().trim_start_matches('<').trim_end_matches('>');
    let full = if a.contains('@') {
        a.to_string()
    } else {
        format!("{a}@{hostname}")
    };
    // A local program may name a UTF-8 address (it then needs SMTPUTF8 on its way).
    match parse_path_utf8(&format!("<{full}>")) {
        Ok(Some(m)) => Ok(m),
        _ => Err(format!("bad address '{a}'")),
    }
}

/// Parses the inside of `<…>` after `MAIL FROM:` or `RCPT TO:`, source route included
/// (`@a,@b:user@dom`, whose route is dropped as RFC 5321 §3.6.1 allows). `<>` is
/// returned as `None`.
pub fn parse_path(s: &str) -> Result<Option<Mailbox>, AddrError> {
    parse_path_in(s, false)
}

/// [`parse_path`] for a transaction that declared SMTPUTF8: UTF-8 local parts and
/// U-label domains (in their A-label form) are allowed.
pub fn parse_path_utf8(s: &str) -> Result<Option<Mailbox>, AddrError> {
    parse_path_in(s, true)
}

fn parse_path_in(s: &str, utf8: bool) -> Result<Option<Mailbox>, AddrError> {
    if !utf8 && !s.is_ascii() {
        return Err(AddrError::NonAscii);
    }
    if s.chars().any(|c| c.is_control() || c == '\u{FEFF}') {
        return Err(AddrError::Syntax);
    }
    if s.len() > MAX_PATH_LEN {
        return Err(AddrError::Syntax);
    }
    let inner = s
        .strip_prefix('<')
        .and_then(|r| r.strip_suffix('>'))
        .ok_or(AddrError::Syntax)?;
    if inner.is_empty() {
        return Ok(None);
    }
    let mailbox = if inner.starts_with('@') {
        // A-d-l ":" Mailbox. The route may not hold quotes, so the first ':' ends it.
        let colon = inner.find(':').ok_or(AddrError::Syntax)?;
        for hop in inner[..colon].split(',') {
            let d = hop.strip_prefix('@').ok_or(AddrError::Syntax)?;
            Domain::parse_in(d, utf8)?;
        }
        &inner[colon + 1..]
    } else {
        inner
    };
    if mailbox.eq_ignore_ascii_case("postmaster") {
        return Ok(Some(Mailbox::postmaster()));
    }
    let m = Mailbox::parse_in(mailbox, utf8)?;
    // A U-label domain grows in its A-label form: the path as stored and sent on
    // must still fit (and so read back).
    if m.to_string().len() + 2 > MAX_PATH_LEN {
        return Err(AddrError::Syntax);
    }
    Ok(Some(m))
}

/// A message's envelope sender: a mailbox or the null reverse-path `<>`.
pub type ReversePath = Option<Mailbox>;

/// Renders a reverse-path in angle brackets.
pub fn fmt_path(p: &ReversePath) -> String {
    match p {
        Some(m) => format!("<{m}>"),
        None => "<>".to_string(),
    }
}

/// A route host without its brackets and port: `[1.2.3.4]:587` → `1.2.3.4`;
/// `mail.isp.dom` stays.
pub fn bare_host(route_host: &str) -> &str {
    match route_host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => route_host,
    }
}

/// A server named on a command line, in a control request or in `LINK_UP`: a host
/// name (lower case) or an IP address, never anything that could reach a header or
/// a log line as more than a name.
pub fn server_name(s: &str) -> Option<String> {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Some(s.to_string());
    }
    Domain::parse_relaxed(s)
        .ok()
        .filter(|d| d.literal().is_none())
        .map(|d| d.as_str().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! path {
        ($name:ident, $input:expr, Ok($want:expr)) => {
            #[test]
            fn $name() {
                let got = parse_path($input).map(|p| p.map(|m| m.to_string()));
                assert_eq!(got, Ok($want.map(|s: &str| s.to_string())));
            }
        };
        ($name:ident, $input:expr, Err($want:expr)) => {
            #[test]
            fn $name() {
                assert_eq!(parse_path($input), Err($want));
            }
        };
    }

    path!(path_null, "<>", Ok(None));
    path!(path_simple, "<a@b.example>", Ok(Some("a@b.example")));
    path!(
        path_domain_lowercased,
        "<A@B.Example>",
        Ok(Some("A@b.example"))
    );
    path!(path_postmaster, "<PostMaster>", Ok(Some("postmaster")));
    path!(
        path_source_route,
        "<@hop.example:u@ours.example>",
        Ok(Some("u@ours.example"))
    );
    path!(
        path_source_route_two,
        "<@a.example,@b.example:u@c.example>",
        Ok(Some("u@c.example"))
    );
    path!(
        path_quoted,
        "<\"john doe\"@ours.example>",
        Ok(Some("\"john doe\"@ours.example"))
    );
    path!(
        path_quoted_escape,
        "<\"a\\\"b\"@ours.example>",
        Ok(Some("\"a\\\"b\"@ours.example"))
    );
    path!(
        path_unterminated_quote,
        "<\"unterminated@ours.example>",
        Err(AddrError::Syntax)
    );
    path!(path_no_brackets, "a@b.example", Err(AddrError::Syntax));
    path!(path_no_domain, "<;sleep 5;>", Err(AddrError::Syntax));
    path!(
        path_backticks_are_atext,
        "<a`id`@b.example>",
        Ok(Some("a`id`@b.example"))
    );
    path!(path_literal, "<u@[192.0.2.1]>", Ok(Some("u@[192.0.2.1]")));
    path!(path_literal_v6, "<u@[IPv6:::1]>", Ok(Some("u@[ipv6:::1]")));
    path!(
        path_bad_literal,
        "<u@[300.1.1.1]>",
        Err(AddrError::BadDomain)
    );
    path!(path_utf8, "<jürgen@b.example>", Err(AddrError::NonAscii));

    #[test]
    fn utf8_paths_keep_the_local_part_and_route_the_a_label() {
        let m = parse_path_utf8("<jürgen@bücher.example>").unwrap().unwrap();
        assert_eq!(m.to_string(), "jürgen@xn--bcher-kva.example");
        assert!(!m.is_ascii());
        let m = parse_path_utf8("<\"j ü\"@B.example>").unwrap().unwrap();
        assert_eq!(m.local_unquoted(), "j ü");
        assert!(parse_path_utf8("<a@b.example>")
            .unwrap()
            .unwrap()
            .is_ascii());
        for bad in [
            "<ü\u{0}@b.example>",
            "<ü\u{85}@b.example>",
            "<a@b\u{202e}.example>",
            "<a@xn--.example>",
            "<ü@>",
        ] {
            assert!(parse_path_utf8(bad).is_err(), "{bad:?}");
        }
        let long = format!("<{}@b.example>", "ü".repeat(33));
        assert_eq!(parse_path_utf8(&long), Err(AddrError::LocalPartTooLong));
        // Short enough as sent, too long once its labels are A-labels.
        let grows = format!("<{}@{}>", "a".repeat(60), ["bücherbücher"; 10].join("."));
        assert!(grows.len() <= MAX_PATH_LEN);
        assert_eq!(parse_path_utf8(&grows), Err(AddrError::Syntax));
    }
    path!(path_empty_local, "<@b.example>", Err(AddrError::Syntax));
    path!(path_double_dot, "<a..b@c.example>", Err(AddrError::Syntax));
    path!(
        path_label_hyphen,
        "<a@-b.example>",
        Err(AddrError::BadDomain)
    );
    path!(path_space, "<a b@c.example>", Err(AddrError::Syntax));

    #[test]
    fn local_part_64_ok_65_not() {
        let l64 = "a".repeat(64);
        assert!(parse_path(&format!("<{l64}@ours.example>")).is_ok());
        let l65 = "a".repeat(65);
        assert_eq!(
            parse_path(&format!("<{l65}@ours.example>")),
            Err(AddrError::LocalPartTooLong)
        );
    }

    #[test]
    fn domain_limits() {
        let label63 = "a".repeat(63);
        assert!(Domain::parse(&format!("{label63}.example")).is_ok());
        let label64 = "a".repeat(64);
        assert_eq!(
            Domain::parse(&format!("{label64}.example")),
            Err(AddrError::BadDomain)
        );
        // 255 octets: 4 labels of 63 + 3 dots = 255.
        let d255 = [label63.as_str(); 4].join(".");
        assert_eq!(d255.len(), 255);
        assert!(Domain::parse(&d255).is_ok());
        let d256 = format!("a{d255}");
        assert_eq!(Domain::parse(&d256), Err(AddrError::BadDomain));
    }

    #[test]
    fn unquote() {
        let m = Mailbox::parse("\"a\\\"b\"@x.example").unwrap();
        assert_eq!(m.local_unquoted(), "a\"b");
        let m = Mailbox::parse("plain@x.example").unwrap();
        assert_eq!(m.local_unquoted(), "plain");
    }

    #[test]
    fn within() {
        let a = Domain::parse("mail.client.dom").unwrap();
        let b = Domain::parse("client.dom").unwrap();
        let c = Domain::parse("xclient.dom").unwrap();
        assert!(a.is_within(&b));
        assert!(b.is_within(&b));
        assert!(!c.is_within(&b));
        assert!(!b.is_within(&a));
    }
}
