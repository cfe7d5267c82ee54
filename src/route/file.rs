//! `$MAILVAR/db/routes` in ZMailer's format (reference/zmailer.md §1.2, §1.4):
//! `key<white space>channel!host`, one entry per line, first duplicate wins.
//! Pure: text in, entries out.

use std::net::IpAddr;
use std::path::Path;

use crate::lex::{self, ConfigError};
use crate::vocab::Domain;

/// The key of a route entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKey {
    /// `a.b.c`: only that name.
    Exact(Domain),
    /// `.a.b.c`: the name and all its subdomains.
    Suffix(Domain),
    /// `.`: the default route.
    Default,
}

/// The next hop of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// `smtp!` with nothing after the `!`: the recipient's own domain.
    RecipientDomain,
    /// A host name (looked up later: hosts file, then MX).
    Name(Domain),
    /// `[ip]` or `[ip]:port`: connect directly, no lookup.
    Literal(IpAddr, Option<u16>),
    /// `[name]` or `[name]:port` (Postfix's form): the name's own addresses (hosts
    /// file, then A/AAAA), no MX lookup, at that port.
    Bracketed(Domain, Option<u16>),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::RecipientDomain => Ok(()),
            Host::Name(d) => write!(f, "{d}"),
            Host::Literal(ip, None) => write!(f, "[{ip}]"),
            Host::Literal(ip, Some(p)) => write!(f, "[{ip}]:{p}"),
            Host::Bracketed(d, None) => write!(f, "[{d}]"),
            Host::Bracketed(d, Some(p)) => write!(f, "[{d}]:{p}"),
        }
    }
}

/// What a route says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteValue {
    /// Deliver through `channel` to `host`.
    Channel {
        /// The channel name (`smtp`, `smtp-etrn`, …): the scheduler.conf selector.
        channel: String,
        /// The next hop.
        host: Host,
    },
    /// `local!`: the domain is ours; deliver to the local user.
    Local,
    /// `error!FORM`: refuse, with FORM as the reason.
    Error(String),
    /// `ignore!…`: as if this entry were not there.
    Ignore,
}

impl std::fmt::Display for RouteValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteValue::Channel { channel, host } => write!(f, "{channel}!{host}"),
            RouteValue::Local => f.write_str("local!"),
            RouteValue::Error(form) => write!(f, "error!{form}"),
            RouteValue::Ignore => f.write_str("ignore!"),
        }
    }
}

/// One line of the routes file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// The key.
    pub key: RouteKey,
    /// The value.
    pub value: RouteValue,
    /// The line it came from.
    pub line: usize,
}

fn is_channel_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn parse_key(k: &str) -> Result<RouteKey, String> {
    if k == "." {
        return Ok(RouteKey::Default);
    }
    if let Some((_, tag)) = k.split_once(':') {
        return Err(format!(
            "'{k}': ZMailer's tagged keys (.:{tag}, name:sender) are not supported: etrnd \
             routes recipients only, and its own bounces like any other mail, with the plain \
             keys"
        ));
    }
    if let Some(rest) = k.strip_prefix('.') {
        return Domain::parse_relaxed(rest)
            .map(RouteKey::Suffix)
            .map_err(|e| format!("bad key '{k}': {e}"));
    }
    Domain::parse_relaxed(k)
        .map(RouteKey::Exact)
        .map_err(|e| format!("bad key '{k}': {e}"))
}

/// Parses a host part: empty, a domain, `[ip]` or `[ip]:port`.
pub fn parse_host(h: &str) -> Result<Host, String> {
    if h.is_empty() {
        return Ok(Host::RecipientDomain);
    }
    if let Some(rest) = h.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unterminated '[' in host '{h}'"))?;
        let inside = inside
            .strip_prefix("IPv6:")
            .or_else(|| inside.strip_prefix("ipv6:"))
            .unwrap_or(inside);
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':').map(str::parse::<u16>) {
                Some(Ok(n)) if n > 0 => Some(n),
                _ => return Err(format!("bad port in '{h}'")),
            },
        };
        if let Ok(ip) = inside.parse::<IpAddr>() {
            return Ok(Host::Literal(ip, port));
        }
        let looks_numeric = inside
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b':');
        return match Domain::parse(inside) {
            Ok(d) if !looks_numeric && d.literal().is_none() => Ok(Host::Bracketed(d, port)),
            _ => Err(format!("bad address literal '{h}'")),
        };
    }
    if h.contains('!') {
        return Err(format!(
            "'{h}': source-routed paths (chan!host!user) are not supported"
        ));
    }
    Domain::parse_relaxed(h)
        .map(Host::Name)
        .map_err(|e| format!("bad host '{h}': {e}"))
}

fn parse_value(v: &str) -> Result<RouteValue, String> {
    if v == "ignore" {
        // ZMailer's sample writes it without the '!'.
        return Ok(RouteValue::Ignore);
    }
    let (channel, rest) = v
        .split_once('!')
        .ok_or_else(|| format!("value '{v}' is not channel!host"))?;
    if !is_channel_name(channel) {
        return Err(format!("bad channel name '{channel}'"));
    }
    match channel {
        "error" => {
            if rest.is_empty() || !is_channel_name(rest) {
                return Err(format!("error! needs a reason word, not '{rest}'"));
            }
            Ok(RouteValue::Error(rest.to_string()))
        }
        "local" => Ok(RouteValue::Local),
        "ignore" => Ok(RouteValue::Ignore),
        "bitbucket" | "usenet" | "uucp" | "ean" | "defrt1" | "bsmtp3" => Err(format!(
            "'{v}': the {channel} channel needs one of ZMailer's sm programs, which etrnd does \
             not have (refuse such mail with error!FORM instead)"
        )),
        _ if channel.starts_with("smtpgw") => Err(format!(
            "'{v}': ZMailer's smtpgw gateway kit is not supported"
        )),
        _ => {
            let host = parse_host(rest)?;
            // `odmr!` (DESIGN.md §5.8): held per recipient domain for ATRN.
            if host == Host::RecipientDomain && !channel.starts_with("smtp") && channel != "odmr" {
                return Err(format!(
                    "'{channel}!' needs a host (only smtp and odmr channels take the recipient's \
                     domain)"
                ));
            }
            Ok(RouteValue::Channel {
                channel: channel.to_string(),
                host,
            })
        }
    }
}

/// Parses the routes file. Duplicate keys are kept in file order; the trie keeps the
/// first.
pub fn parse(path: &Path, text: &str) -> Result<Vec<RouteEntry>, Vec<ConfigError>> {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for line in lex::lines(text) {
        let mut words = line.text.split_whitespace();
        let (Some(k), Some(v)) = (words.next(), words.next()) else {
            errors.push(ConfigError::at(
                path,
                line.no,
                "expected 'key channel!host'",
            ));
            continue;
        };
        if let Some(extra) = words.next() {
            errors.push(ConfigError::at(
                path,
                line.no,
                format!("unexpected '{extra}' after the value"),
            ));
            continue;
        }
        match (parse_key(k), parse_value(v)) {
            (Ok(key), Ok(value)) => entries.push(RouteEntry {
                key,
                value,
                line: line.no,
            }),
            (Err(e), _) | (_, Err(e)) => errors.push(ConfigError::at(path, line.no, e)),
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<RouteEntry, String> {
        parse(Path::new("routes"), line)
            .map(|mut v| v.remove(0))
            .map_err(|e| e[0].to_string())
    }

    macro_rules! route {
        ($name:ident, $line:expr, $key:expr, $value:expr) => {
            #[test]
            fn $name() {
                let e = one($line).unwrap();
                assert_eq!(format!("{:?}", e.key), $key);
                assert_eq!(e.value.to_string(), $value);
            }
        };
    }

    route!(
        hub,
        ".client.dom\tsmtp-etrn!mail.client.dom",
        "Suffix(Domain(\"client.dom\"))",
        "smtp-etrn!mail.client.dom"
    );
    route!(
        default,
        ".  smtp-etrn!mail.isp.dom",
        "Default",
        "smtp-etrn!mail.isp.dom"
    );
    route!(
        exact,
        "Client.Dom smtp!",
        "Exact(Domain(\"client.dom\"))",
        "smtp!"
    );
    route!(
        error,
        ".client.dom error!database",
        "Suffix(Domain(\"client.dom\"))",
        "error!database"
    );
    route!(
        literal,
        "x.dom smtp![192.0.2.1]",
        "Exact(Domain(\"x.dom\"))",
        "smtp![192.0.2.1]"
    );
    route!(
        literal_port,
        "x.dom smtp![127.0.0.1]:2526",
        "Exact(Domain(\"x.dom\"))",
        "smtp![127.0.0.1]:2526"
    );
    route!(
        literal_v6,
        "x.dom smtp![IPv6:::1]:25",
        "Exact(Domain(\"x.dom\"))",
        "smtp![::1]:25"
    );
    route!(
        local,
        "ours.dom local!",
        "Exact(Domain(\"ours.dom\"))",
        "local!"
    );

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            one("a.dom").unwrap_err(),
            "routes:1: expected 'key channel!host'"
        );
        assert!(one("a.dom nobang")
            .unwrap_err()
            .contains("not channel!host"));
        assert!(one("a..dom smtp!x").unwrap_err().contains("bad key"));
        assert!(one("a.dom smtp![1.2.3]")
            .unwrap_err()
            .contains("bad address literal"));
        assert!(one("a.dom smtp![1.2.3.4]:0")
            .unwrap_err()
            .contains("bad port"));
        assert!(one("a.dom hold!").unwrap_err().contains("needs a host"));
        assert!(one("a.dom odmr!").is_ok());
        assert!(one("junkdom bitbucket!")
            .unwrap_err()
            .contains("bitbucket channel needs one of ZMailer's sm programs"));
        assert!(one("news.dom usenet!")
            .unwrap_err()
            .contains("usenet channel"));
        assert!(one("uunode.dom uucp!uunode")
            .unwrap_err()
            .contains("uucp channel"));
        assert!(one(".:ERROR smtp!").unwrap_err().contains("tagged keys"));
        assert_eq!(
            one(".toronto.edu ignore").unwrap().value,
            RouteValue::Ignore
        );
        assert!(one("a.dom smtp!gw!user")
            .unwrap_err()
            .contains("not supported"));
        assert!(one("a.dom smtp!x extra")
            .unwrap_err()
            .contains("unexpected"));
        let errs = parse(Path::new("r"), "# c\nok.dom smtp!\nbad\n\nbad2 x\n").unwrap_err();
        let lines: Vec<_> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 5]);
    }
}
