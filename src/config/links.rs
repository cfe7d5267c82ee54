//! The link names of `etrnd.conf` (DESIGN.md §4.1, §5.9): `LINKS` (named links and
//! the next hops behind them), `LINK_UP` (what to do when a link comes up),
//! `LINK_DIAL` / `LINK_DIAL_WHEN` / `LINK_DIAL_TIMEOUT` (how and when to ask for a
//! link), `LINK_PACE` (how fast to use a link that just came up).

use std::time::Duration;

use crate::smtp::etrn_target::EtrnTarget;

/// Most `NAME:TARGET` pairs in `LINKS`.
pub const MAX_LINK_TARGETS: usize = 64;
/// Most distinct link names.
pub const MAX_LINKS: usize = 16;
/// Most `LINK_UP` actions.
pub const MAX_ACTIONS: usize = 16;
/// Most targets or domains of one action.
pub const MAX_ACTION_ARGS: usize = 64;
/// Most words of `LINK_DIAL`.
pub const MAX_DIAL_ARGS: usize = 32;

/// What is behind a link, in ETRN's forms, matched against a thread's route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTarget {
    /// A route host, exactly as the route names it (lower case): `mail.isp.dom`,
    /// `[192.0.2.1]:587`.
    Host(String),
    /// `@domain`: route hosts that are the domain or inside it.
    Domain(String),
    /// `#channel`: every route of the channel.
    Channel(String),
}

impl std::fmt::Display for LinkTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkTarget::Host(h) => write!(f, "{h}"),
            LinkTarget::Domain(d) => write!(f, "@{d}"),
            LinkTarget::Channel(c) => write!(f, "#{c}"),
        }
    }
}

/// Whether `host` is `domain` or inside it (ASCII case-insensitive).
fn in_domain(host: &str, domain: &str) -> bool {
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case(domain)
        || (host.len() > domain.len()
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain))
}

impl LinkTarget {
    /// Parses one target (the part after `NAME:`).
    pub fn parse(s: &str) -> Result<LinkTarget, String> {
        if let Some(c) = s.strip_prefix('#') {
            let ok = !c.is_empty()
                && c.len() <= 64
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            return if ok {
                Ok(LinkTarget::Channel(c.to_string()))
            } else {
                Err(format!("'{s}': not a channel name"))
            };
        }
        if let Some(d) = s.strip_prefix('@') {
            return crate::vocab::Domain::parse(d)
                .ok()
                .filter(|d| d.literal().is_none())
                .map(|d| LinkTarget::Domain(d.as_str().to_ascii_lowercase()))
                .ok_or_else(|| format!("'{s}': not a domain"));
        }
        if let Some(rest) = s.strip_prefix('[') {
            // An address literal with an optional port, as routes write it.
            let (ip, port) = rest
                .split_once(']')
                .ok_or_else(|| format!("'{s}': unclosed ["))?;
            let ip_ok = ip.parse::<std::net::IpAddr>().is_ok()
                || ip
                    .strip_prefix("IPv6:")
                    .is_some_and(|v| v.parse::<std::net::Ipv6Addr>().is_ok());
            let port_ok = port.is_empty()
                || port
                    .strip_prefix(':')
                    .is_some_and(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
            return if ip_ok && port_ok {
                Ok(LinkTarget::Host(s.to_ascii_lowercase()))
            } else {
                Err(format!(
                    "'{s}': not an address (write [192.0.2.1] or [192.0.2.1]:587)"
                ))
            };
        }
        crate::vocab::Domain::parse(s)
            .ok()
            .filter(|d| d.literal().is_none())
            .map(|d| LinkTarget::Host(d.as_str().to_ascii_lowercase()))
            .ok_or_else(|| format!("'{s}': not a host, @domain or #channel"))
    }

    /// Whether a thread (route channel and host) is behind this target.
    pub fn covers(&self, channel: &str, host: &str) -> bool {
        match self {
            LinkTarget::Host(h) => host.trim_end_matches('.').eq_ignore_ascii_case(h),
            LinkTarget::Domain(d) => !host.starts_with('[') && in_domain(host, d),
            LinkTarget::Channel(c) => channel == c,
        }
    }

    /// Whether a server we connect to as a client (`etrn`, `atrn`) is behind this
    /// target: its name matches a host or domain target.
    pub fn covers_server(&self, server: &str) -> bool {
        match self {
            LinkTarget::Host(h) => {
                server.eq_ignore_ascii_case(h)
                    || server.eq_ignore_ascii_case(crate::vocab::bare_host(h))
            }
            LinkTarget::Domain(d) => in_domain(server, d),
            LinkTarget::Channel(_) => false,
        }
    }
}

/// A `LINK_UP` action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAction {
    /// `etrn [-p PORT] SERVER TARGET…`: ask SERVER to start its queue for TARGETs.
    Etrn {
        /// The port (`None`: `SMTP_PORT`).
        port: Option<u16>,
        /// A host name or an address.
        server: String,
        /// The ETRN arguments.
        targets: Vec<String>,
    },
    /// `atrn [-p PORT] SERVER [DOMAIN…]`: ODMR customer (port 366 by default).
    Atrn {
        /// The port (`None`: 366).
        port: Option<u16>,
        /// A host name or an address.
        server: String,
        /// The domains (none: all of ours).
        domains: Vec<String>,
    },
}

impl LinkAction {
    /// The server the action talks to.
    pub fn server(&self) -> &str {
        match self {
            LinkAction::Etrn { server, .. } | LinkAction::Atrn { server, .. } => server,
        }
    }
}

impl std::fmt::Display for LinkAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (verb, port, server, args) = match self {
            LinkAction::Etrn {
                port,
                server,
                targets,
            } => ("etrn", port, server, targets),
            LinkAction::Atrn {
                port,
                server,
                domains,
            } => ("atrn", port, server, domains),
        };
        write!(f, "{verb}")?;
        if let Some(p) = port {
            write!(f, " -p {p}")?;
        }
        write!(f, " {server}")?;
        for a in args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// A server an action names: a host name or an IP address.
fn server_name(s: &str) -> Result<String, String> {
    crate::vocab::server_name(s).ok_or_else(|| format!("'{s}': not a host name or an address"))
}

impl LinkAction {
    /// Parses one action (`etrn …` or `atrn …`).
    pub fn parse(s: &str) -> Result<LinkAction, String> {
        let mut words = s.split_whitespace();
        let verb = words.next().ok_or("an empty action")?;
        let mut rest: Vec<&str> = words.collect();
        let mut port = None;
        if rest.first() == Some(&"-p") {
            let p = rest.get(1).ok_or("-p needs a port")?;
            port = Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("'{p}': not a port"))?,
            );
            rest.drain(..2);
        }
        let server = server_name(
            rest.first()
                .ok_or_else(|| format!("{verb} needs a SERVER"))?,
        )?;
        let args: Vec<String> = rest[1..].iter().map(|a| a.to_string()).collect();
        if args.len() > MAX_ACTION_ARGS {
            return Err(format!("at most {MAX_ACTION_ARGS} arguments per action"));
        }
        match verb {
            "etrn" => {
                if args.is_empty() {
                    return Err("etrn needs SERVER and at least one TARGET".into());
                }
                for a in &args {
                    EtrnTarget::parse(a).ok_or_else(|| {
                        format!("etrn target '{a}': not a host, @domain or #channel")
                    })?;
                }
                Ok(LinkAction::Etrn {
                    port,
                    server,
                    targets: args,
                })
            }
            "atrn" => {
                if !args.is_empty() {
                    crate::smtp::atrn::parse_list(&args.join(","))
                        .map_err(|_| format!("atrn domains '{}': not domains", args.join(" ")))?;
                }
                let domains = args.iter().map(|a| a.to_ascii_lowercase()).collect();
                Ok(LinkAction::Atrn {
                    port,
                    server,
                    domains,
                })
            }
            _ => Err(format!("'{verb}': unknown action (etrn or atrn)")),
        }
    }
}

/// `LINK_DIAL_WHEN`: held mail behind a down link that makes the daemon dial; any
/// condition met is enough.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialWhen {
    /// The oldest held message is at least this old.
    pub age: Option<Duration>,
    /// At least this many messages are held.
    pub count: Option<u64>,
    /// At least this many octets are held.
    pub octets: Option<u64>,
}

/// Parses `1024`, `64K`, `1M`, `2G` (powers of 1024), at most 2^40.
fn parse_octets(v: &str) -> Result<u64, String> {
    let (num, mult) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&v[..v.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| (1..=1 << 40).contains(n))
        .ok_or_else(|| format!("'{v}': expected octets from 1 to 1T (1024, 64K, 1M, 2G)"))
}

/// Parses a whole number from `min` to `max`.
fn parse_count(what: &str, v: &str, min: u64, max: u64) -> Result<u64, String> {
    v.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("{what}='{v}': expected a number from {min} to {max}"))
}

impl DialWhen {
    /// Parses `age=2h count=20 octets=1M` (any of them; empty: never).
    pub fn parse(v: &str) -> Result<DialWhen, String> {
        let mut w = DialWhen::default();
        for word in v.split_whitespace() {
            let (k, val) = word
                .split_once('=')
                .ok_or_else(|| format!("'{word}': expected age=, count= or octets="))?;
            let dup = match k {
                "age" => w
                    .age
                    .replace(crate::config::scheduler::parse_interval(val)?)
                    .is_some(),
                "count" => w
                    .count
                    .replace(parse_count("count", val, 1, 1_000_000)?)
                    .is_some(),
                "octets" => w.octets.replace(parse_octets(val)?).is_some(),
                _ => return Err(format!("'{k}': unknown condition (age, count, octets)")),
            };
            if dup {
                return Err(format!("{k} is given twice"));
            }
        }
        Ok(w)
    }

    /// Whether what is held — `messages`, `octets`, the `oldest` arrival — makes a
    /// dial due at `now` (Unix seconds): `Ok(why)`, or `Err(when)` with the time
    /// the age condition would come due (`None`: only more mail can make it due).
    /// With no condition set, any held mail is enough.
    pub fn verdict(
        &self,
        messages: u64,
        octets: u64,
        oldest: Option<u64>,
        now: u64,
    ) -> Result<String, Option<u64>> {
        if messages == 0 {
            return Err(None);
        }
        if self.is_empty() {
            return Ok("mail-held".into());
        }
        if self.count.is_some_and(|c| messages >= c) {
            return Ok(format!("count={messages}"));
        }
        if self.octets.is_some_and(|o| octets >= o) {
            return Ok(format!("octets={octets}"));
        }
        match (self.age, oldest) {
            (Some(age), Some(o)) => {
                let at = o.saturating_add(age.as_secs());
                if now >= at {
                    Ok(format!("age={}", now - o))
                } else {
                    Err(Some(at))
                }
            }
            _ => Err(None),
        }
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.age.is_none() && self.count.is_none() && self.octets.is_none()
    }
}

/// `LINK_PACE`: how fast mail goes out over a link that just came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// New connections per second (0: no limit).
    pub conns: u32,
    /// Messages started per second (0: no limit).
    pub msgs: u32,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace { conns: 2, msgs: 10 }
    }
}

/// The link names of `etrnd.conf`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinksConf {
    /// `LINKS`: link name and one target behind it, in file order.
    pub targets: Vec<(String, LinkTarget)>,
    /// `LINK_UP`.
    pub up: Vec<LinkAction>,
    /// `LINK_DIAL`: the command and its arguments (empty: never dial).
    pub dial: Vec<String>,
    /// `LINK_DIAL_WHEN`.
    pub dial_when: DialWhen,
    /// `LINK_DIAL_TIMEOUT`: how long a dial may take to bring the link up.
    pub dial_timeout: Duration,
    /// `LINK_PACE`.
    pub pace: Pace,
}

impl Default for LinksConf {
    fn default() -> LinksConf {
        LinksConf {
            targets: Vec::new(),
            up: Vec::new(),
            dial: Vec::new(),
            dial_when: DialWhen::default(),
            dial_timeout: Duration::from_secs(120),
            pace: Pace::default(),
        }
    }
}

/// The names this module sets.
pub const NAMES: &[&str] = &[
    "LINKS",
    "LINK_UP",
    "LINK_DIAL",
    "LINK_DIAL_WHEN",
    "LINK_DIAL_TIMEOUT",
    "LINK_PACE",
];

/// Whether a link name is well formed: an interface-like name.
fn link_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Parses a link name (`etrnd link … NAME`, `LINKS`).
pub fn link_name(n: &str) -> Result<&str, String> {
    if link_name_ok(n) {
        Ok(n)
    } else {
        Err(format!("'{n}': not a link name (letters, digits, - _ .)"))
    }
}

impl LinksConf {
    /// Sets one of [`NAMES`] from its value.
    pub fn set(&mut self, name: &str, v: &str) -> Result<(), String> {
        match name {
            "LINKS" => {
                let mut l = Vec::new();
                for pair in v.split_whitespace() {
                    let (n, t) = pair
                        .split_once(':')
                        .ok_or_else(|| format!("'{pair}': expected NAME:TARGET"))?;
                    l.push((link_name(n)?.to_string(), LinkTarget::parse(t)?));
                }
                if l.len() > MAX_LINK_TARGETS {
                    return Err(format!("at most {MAX_LINK_TARGETS} NAME:TARGET pairs"));
                }
                self.targets = l;
                if self.names().len() > MAX_LINKS {
                    return Err(format!("at most {MAX_LINKS} links"));
                }
            }
            "LINK_UP" => {
                let l: Result<Vec<_>, _> = v
                    .split(';')
                    .filter(|a| !a.trim().is_empty())
                    .map(LinkAction::parse)
                    .collect();
                let l = l?;
                if l.len() > MAX_ACTIONS {
                    return Err(format!("at most {MAX_ACTIONS} actions"));
                }
                self.up = l;
            }
            "LINK_DIAL" => {
                let words: Vec<String> = v.split_whitespace().map(str::to_string).collect();
                if words.len() > MAX_DIAL_ARGS {
                    return Err(format!("at most {MAX_DIAL_ARGS} words"));
                }
                if let Some(cmd) = words.first() {
                    if !cmd.starts_with('/') {
                        return Err(format!("'{cmd}': name the command by its absolute path"));
                    }
                }
                self.dial = words;
            }
            "LINK_DIAL_WHEN" => self.dial_when = DialWhen::parse(v)?,
            "LINK_DIAL_TIMEOUT" => {
                self.dial_timeout =
                    Duration::from_secs(parse_count("LINK_DIAL_TIMEOUT", v, 1, 3600)?)
            }
            "LINK_PACE" => {
                let mut p = Pace::default();
                for word in v.split_whitespace() {
                    match word.split_once('=') {
                        Some(("conns", n)) => p.conns = parse_count("conns", n, 0, 1000)? as u32,
                        Some(("msgs", n)) => p.msgs = parse_count("msgs", n, 0, 100_000)? as u32,
                        _ => return Err(format!("'{word}': expected conns=N or msgs=N")),
                    }
                }
                self.pace = p;
            }
            _ => unreachable!("NAMES lists what set takes"),
        }
        Ok(())
    }

    /// The link names, in first-mention order.
    pub fn names(&self) -> Vec<&str> {
        let mut n: Vec<&str> = Vec::new();
        for (name, _) in &self.targets {
            if !n.contains(&name.as_str()) {
                n.push(name);
            }
        }
        n
    }

    /// The link a thread is behind (the first `LINKS` pair that covers it).
    pub fn link_of(&self, channel: &str, host: &str) -> Option<&str> {
        self.targets
            .iter()
            .find(|(_, t)| t.covers(channel, host))
            .map(|(n, _)| n.as_str())
    }

    /// The link a server (`etrn`, `atrn`) is behind.
    pub fn link_of_server(&self, server: &str) -> Option<&str> {
        self.targets
            .iter()
            .find(|(_, t)| t.covers_server(server))
            .map(|(n, _)| n.as_str())
    }

    /// The `LINK_UP` actions to run when `link` comes up: those whose server is
    /// behind it, and those whose server is behind no link.
    pub fn actions_for(&self, link: &str) -> Vec<LinkAction> {
        self.up
            .iter()
            .filter(|a| self.link_of_server(a.server()).is_none_or(|l| l == link))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_cover_threads() {
        let h = LinkTarget::parse("Mail.ISP.dom").unwrap();
        assert!(h.covers("smtp", "mail.isp.dom"));
        assert!(!h.covers("smtp", "x.mail.isp.dom"));
        let d = LinkTarget::parse("@isp.dom").unwrap();
        assert!(d.covers("smtp", "mail.isp.dom") && d.covers("smtp", "ISP.dom"));
        assert!(!d.covers("smtp", "notisp.dom"));
        let c = LinkTarget::parse("#smtp-etrn").unwrap();
        assert!(c.covers("smtp-etrn", "anything") && !c.covers("smtp", "anything"));
        let lit = LinkTarget::parse("[192.0.2.1]:587").unwrap();
        assert!(lit.covers("smtp", "[192.0.2.1]:587") && !lit.covers("smtp", "[192.0.2.1]"));
        assert!(lit.covers_server("192.0.2.1"));
        assert!(d.covers_server("mail.isp.dom") && !c.covers_server("mail.isp.dom"));
        for bad in [
            "#",
            "#a b",
            "@",
            "@[1.2.3.4]",
            "[1.2.3.4",
            "[x]",
            "[1.2.3.4]:0",
            "a..b",
            "",
        ] {
            assert!(LinkTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn links_actions_and_dial_settings() {
        let mut c = LinksConf::default();
        c.set("LINKS", "ppp0:#smtp ppp0:mail.isp.dom wan1:@other.dom")
            .unwrap();
        assert_eq!(c.names(), ["ppp0", "wan1"]);
        assert_eq!(c.link_of("smtp", "relay.x"), Some("ppp0"));
        assert_eq!(c.link_of("local", "joe"), None);
        assert_eq!(c.link_of_server("mail.isp.dom"), Some("ppp0"));
        c.set(
            "LINK_UP",
            "etrn -p 2525 mail.isp.dom client.dom @sub.client.dom; atrn mx.other.dom ; atrn 10.0.0.1 a.dom",
        )
        .unwrap();
        assert_eq!(c.up.len(), 3);
        assert_eq!(
            c.up[0].to_string(),
            "etrn -p 2525 mail.isp.dom client.dom @sub.client.dom"
        );
        assert_eq!(c.actions_for("ppp0").len(), 2);
        assert_eq!(c.actions_for("wan1").len(), 2);
        c.set("LINK_DIAL_WHEN", "age=2h count=20 octets=1M")
            .unwrap();
        assert_eq!(c.dial_when.age, Some(Duration::from_secs(7200)));
        assert_eq!(c.dial_when.count, Some(20));
        assert_eq!(c.dial_when.octets, Some(1 << 20));
        c.set("LINK_PACE", "conns=1 msgs=0").unwrap();
        assert_eq!(c.pace, Pace { conns: 1, msgs: 0 });
        for (name, bad, why) in [
            ("LINKS", "ppp0", "NAME:TARGET"),
            ("LINKS", "p p:#x", "NAME:TARGET"),
            ("LINKS", "ppp0:#", "channel"),
            ("LINK_UP", "etrn mail.isp.dom", "TARGET"),
            ("LINK_UP", "etrn mail.isp.dom bad..dom", "etrn target"),
            ("LINK_UP", "fetch mail.isp.dom", "unknown action"),
            ("LINK_UP", "atrn -p 0 mail.isp.dom", "not a port"),
            ("LINK_UP", "atrn mail.isp.dom -x", "not domains"),
            ("LINK_DIAL", "pppd call isp", "absolute path"),
            ("LINK_DIAL_WHEN", "count=0", "from 1"),
            ("LINK_DIAL_WHEN", "age=2h age=3h", "twice"),
            ("LINK_DIAL_WHEN", "octets=2T", "octets"),
            ("LINK_DIAL_WHEN", "soon", "expected age="),
            ("LINK_DIAL_TIMEOUT", "0", "from 1"),
            ("LINK_PACE", "conns=-1", "from 0"),
            ("LINK_PACE", "fast", "conns=N"),
        ] {
            let e = LinksConf::default().set(name, bad).unwrap_err();
            assert!(e.contains(why), "{name}={bad}: {e}");
        }
        let many: Vec<String> = (0..17).map(|i| format!("l{i}:#c{i}")).collect();
        assert!(LinksConf::default()
            .set("LINKS", &many.join(" "))
            .unwrap_err()
            .contains("at most 16 links"));
    }
}
