//! `etrnd.conf`: `NAME=value` lines in the style of zmailer.conf and rc.conf
//! (DESIGN.md §4.1). Values may be double-quoted; `$NAME` and `${NAME}` expand to a
//! name set earlier in the file; lists are space-separated. A relative path is taken
//! relative to the directory holding the file, so a configuration tree can be moved
//! as a whole (the repository's own `etc/` runs from the checkout).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cidr::Cidr;
use super::lex::{self, ConfigError};

/// Where host names are looked up, in order (`HOSTS_ORDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostSource {
    /// `HOSTS_FILE`.
    Files,
    /// DNS.
    Dns,
}

/// `ETRN_REPLIES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtrnReplies {
    /// RFC 1985 251/252/253 with counts.
    Detailed,
    /// Always 250.
    Minimal,
}

pub use crate::vocab::{ListenKind, TlsLevel};

/// The typed, checked contents of `etrnd.conf`.
#[derive(Debug, Clone)]
pub struct MainConf {
    /// The file this came from.
    pub path: PathBuf,
    /// Holds `db/routes`, `db/localnames`, `db/aliases`.
    pub mailvar: PathBuf,
    /// Holds `scheduler.conf`.
    pub mailshare: PathBuf,
    /// Spool root.
    pub postoffice: PathBuf,
    /// Transcript logs.
    pub logdir: PathBuf,
    /// Pid file of the detached daemon.
    pub pidfile: PathBuf,
    /// Local mailboxes (a directory of mbox files, or Maildirs if it ended in `/`);
    /// relative (`~/Maildir/` was written) for a path in each user's home.
    pub mailbox: PathBuf,
    /// Whether `MAILBOX` names Maildirs.
    pub maildir: bool,
    /// Our name in greetings and trace headers.
    pub hostname: String,
    /// Listening addresses.
    pub listen: Vec<SocketAddr>,
    /// What each listening address serves (same order as `listen`).
    pub listen_kinds: Vec<ListenKind>,
    /// Server certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// Server key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Roots for verifying servers; `None`: the system bundle.
    pub tls_ca_file: Option<PathBuf>,
    /// Default outbound TLS level.
    pub smtp_tls: TlsLevel,
    /// Clients that may relay to any routed destination.
    pub mynetworks: Vec<Cidr>,
    /// Whether `PROTOCOLS` includes `smtp` (DNS MX fall-back for unrouted domains).
    pub protocols_smtp: bool,
    /// Whether ETRN is offered.
    pub etrn: bool,
    /// Who may send ETRN; `None` is `any`.
    pub etrn_allow: Option<Vec<Cidr>>,
    /// Whether `ETRN_ALLOW` has `auth`: an authenticated identity may ETRN the
    /// domains `db/secrets` lists for it.
    pub etrn_auth: bool,
    /// ETRN reply style.
    pub etrn_replies: EtrnReplies,
    /// Host lookup order, when set here (else the `hosts:` line of `NSSWITCH_CONF`).
    pub hosts_order: Option<Vec<HostSource>>,
    /// The hosts file.
    pub hosts_file: PathBuf,
    /// The resolver configuration.
    pub resolv_conf: PathBuf,
    /// The name service switch configuration.
    pub nsswitch_conf: PathBuf,
    /// DNS servers overriding `RESOLV_CONF`.
    pub dns_servers: Vec<SocketAddr>,
    /// Port for outbound SMTP.
    pub smtp_port: u16,
    /// `SMTP_BIND`: the source address of outbound connections, at most one per
    /// family.
    pub smtp_bind: Vec<std::net::IpAddr>,
    /// Largest message accepted, in octets.
    pub max_message_size: u64,
    /// `HOLD_QUOTA`: most octets held per destination (0: no quota).
    pub hold_quota: u64,
    /// Most recipients per message.
    pub max_recipients: usize,
    /// Most simultaneous SMTP sessions.
    pub max_connections: usize,
    /// Most simultaneous SMTP sessions from one address.
    pub max_connections_per_ip: usize,
    /// User to run as after binding, when started as root.
    pub user: Option<String>,
    /// Listener kinds where CRAM-MD5 is offered without TLS (`AUTH_CLEAR_CRAM`): a
    /// passive observer of a cleartext CRAM-MD5 exchange can attack the password
    /// offline, so only where a client has no STARTTLS (fetchmail's ODMR).
    pub auth_clear_cram: Vec<ListenKind>,
    /// How long a client outside `MYNETWORKS` must wait for the greeting before it may
    /// talk (an early talker is refused). An extension to the contract's names.
    pub greet_pause: Duration,
    /// The syslog socket, when not one of the usual places (`/dev/log`,
    /// `/var/run/syslog`, `/var/run/log`). An extension to the contract's names.
    pub syslog_socket: Option<PathBuf>,
    /// `LINKS`, `LINK_UP`, `LINK_DIAL`, `LINK_DIAL_WHEN`, `LINK_DIAL_TIMEOUT`,
    /// `LINK_PACE` (DESIGN.md §5.9).
    pub links: super::links::LinksConf,
    /// The names the file set: name, value (after expansion), line (`etrnd config`).
    pub sources: Vec<(String, String, usize)>,
}

/// The build-time installation prefix (`ETRND_PREFIX`, default `/usr/local`).
pub const PREFIX: &str = match option_env!("ETRND_PREFIX") {
    Some(p) => p,
    None => "/usr/local",
};

/// How this system creates the daemon's account `name` (no login, no home).
fn account_hint(name: &str) -> String {
    if cfg!(target_os = "freebsd") || cfg!(target_os = "dragonfly") {
        format!("pw useradd {name} -d /nonexistent -s /usr/sbin/nologin")
    } else if cfg!(target_os = "openbsd") {
        format!("useradd -g =uid -d /var/empty -s /sbin/nologin {name}")
    } else if cfg!(target_os = "netbsd") {
        format!("useradd -g =uid -d /nonexistent -s /sbin/nologin {name}")
    } else {
        format!("useradd -r -U -d /nonexistent -s /usr/sbin/nologin {name}")
    }
}

/// The build-time configuration folder (`ETRND_SYSCONFDIR`, default `PREFIX/etc`;
/// `/etc` for a build installed under `/usr`).
pub const SYSCONFDIR: Option<&str> = option_env!("ETRND_SYSCONFDIR");

/// The default configuration file.
pub fn default_path() -> PathBuf {
    match SYSCONFDIR {
        Some(d) if !d.is_empty() => PathBuf::from(format!("{d}/etrnd/etrnd.conf")),
        _ => PathBuf::from(format!("{PREFIX}/etc/etrnd/etrnd.conf")),
    }
}

/// Every name `etrnd.conf` takes (besides the links', `links::NAMES`).
pub const NAMES: &[&str] = &[
    "MAILVAR",
    "MAILSHARE",
    "POSTOFFICE",
    "LOGDIR",
    "PIDFILE",
    "MAILBOX",
    "HOSTNAME",
    "LISTEN",
    "MYNETWORKS",
    "PROTOCOLS",
    "ETRN",
    "ETRN_ALLOW",
    "ETRN_REPLIES",
    "HOSTS_ORDER",
    "HOSTS_FILE",
    "RESOLV_CONF",
    "NSSWITCH_CONF",
    "DNS_SERVERS",
    "SMTP_PORT",
    "SMTP_BIND",
    "MAX_MESSAGE_SIZE",
    "HOLD_QUOTA",
    "MAX_RECIPIENTS",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "USER",
    "AUTH_CLEAR_CRAM",
    "GREET_PAUSE",
    "SYSLOG_SOCKET",
    "TLS_CERT",
    "TLS_KEY",
    "TLS_CA_FILE",
    "SMTP_TLS",
];

/// Unquotes a value and expands `$NAME` / `${NAME}` from names set earlier.
fn value(raw: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let v = if let Some(inner) = raw.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| "missing closing quote".to_string())?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                out.push(chars.next().ok_or("backslash at end of value")?);
            } else if c == '"' {
                return Err("stray quote inside value".into());
            } else {
                out.push(c);
            }
        }
        out
    } else {
        if raw.contains('"') {
            return Err("quote inside an unquoted value".into());
        }
        raw.to_string()
    };
    expand(&v, vars)
}

fn expand(v: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(b) = after.strip_prefix('{') {
            let end = b.find('}').ok_or("unterminated ${")?;
            (&b[..end], &b[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if name.is_empty() {
            return Err("'$' without a name (write the value in quotes as \\$)".into());
        }
        let val = vars
            .get(name)
            .ok_or_else(|| format!("${name} is not set earlier in this file"))?;
        out.push_str(val);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// Removes `.` and `name/..` components without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err(format!("expected yes or no, not '{v}'")),
    }
}

/// Most `LISTEN` addresses.
pub const MAX_LISTEN: usize = 64;

/// Every number of `etrnd.conf` and its range (documented in etrnd.conf(5)); nothing
/// computed from them can overflow.
pub const RANGES: &[(&str, u64, u64)] = &[
    ("SMTP_PORT", 1, 65_535),
    ("MAX_MESSAGE_SIZE", 1024, 1 << 31),
    ("MAX_RECIPIENTS", 100, 100_000),
    ("MAX_CONNECTIONS", 1, 65_536),
    ("MAX_CONNECTIONS_PER_IP", 1, 65_536),
    ("GREET_PAUSE", 0, 300),
    ("HOLD_QUOTA", 0, 1 << 40),
];

/// A number of `name` within its [`RANGES`] entry.
fn parse_num<T: TryFrom<u64>>(name: &str, v: &str) -> Result<T, String> {
    let &(_, min, max) = RANGES
        .iter()
        .find(|(n, _, _)| *n == name)
        .expect("every numeric name has a range");
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => {
            T::try_from(n).map_err(|_| format!("'{v}' is out of range"))
        }
        Ok(_) | Err(_) if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() => {
            Err(format!("'{v}' is out of range ({min} to {max})"))
        }
        _ => Err(format!("expected a number from {min} to {max}, not '{v}'")),
    }
}

/// Parses `addr:port`, `[v6]:port` or a bare address (with `default_port`).
pub fn parse_socket_addr(s: &str, default_port: Option<u16>) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some(port) = default_port {
        let bare = s
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
    }
    Err(format!(
        "bad address '{s}' (write 192.0.2.1:25 or [2001:db8::1]:25)"
    ))
}

fn cidrs(v: &str) -> Result<Vec<Cidr>, String> {
    v.split_whitespace().map(Cidr::parse).collect()
}

impl MainConf {
    /// What the listener configured as `addr` serves.
    pub fn listen_kind(&self, addr: SocketAddr) -> ListenKind {
        self.listen
            .iter()
            .zip(&self.listen_kinds)
            .find(|(a, _)| **a == addr)
            .map_or(ListenKind::Smtp, |(_, k)| *k)
    }

    /// The `SMTP_BIND` source address for a connection to `to` (same family), if any.
    pub fn bind_for(&self, to: SocketAddr) -> Option<std::net::IpAddr> {
        self.smtp_bind
            .iter()
            .find(|ip| ip.is_ipv4() == to.is_ipv4())
            .copied()
    }

    /// Built-in defaults for a configuration file at `path`.
    pub fn defaults(path: &Path) -> MainConf {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        MainConf {
            path: path.to_path_buf(),
            mailvar: dir.clone(),
            mailshare: dir,
            postoffice: "/var/spool/etrnd".into(),
            logdir: "/var/log/etrnd".into(),
            pidfile: "/var/run/etrnd.pid".into(),
            mailbox: "/var/mail".into(),
            maildir: false,
            hostname: crate::sys::hostname(),
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 25))],
            listen_kinds: vec![ListenKind::Smtp],
            tls_cert: None,
            tls_key: None,
            tls_ca_file: None,
            smtp_tls: TlsLevel::May,
            mynetworks: Cidr::loopback(),
            protocols_smtp: false,
            etrn: true,
            etrn_allow: None,
            etrn_auth: false,
            etrn_replies: EtrnReplies::Detailed,
            hosts_order: None,
            hosts_file: "/etc/hosts".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            nsswitch_conf: "/etc/nsswitch.conf".into(),
            dns_servers: Vec::new(),
            smtp_port: 25,
            smtp_bind: Vec::new(),
            max_message_size: 10_240_000,
            hold_quota: 0,
            max_recipients: 1000,
            max_connections: 100,
            max_connections_per_ip: 20,
            user: None,
            auth_clear_cram: vec![ListenKind::Odmr],
            greet_pause: Duration::from_secs(1),
            syslog_socket: None,
            links: super::links::LinksConf::default(),
            sources: Vec::new(),
        }
    }

    /// Parses the text of a configuration file at `path`. Every bad line is reported.
    pub fn parse(path: &Path, text: &str) -> Result<MainConf, Vec<ConfigError>> {
        let mut c = MainConf::defaults(path);
        let dir = c.mailvar.clone();
        let mut vars: HashMap<String, String> = HashMap::new();
        let mut errors = Vec::new();
        let mut mailshare_set = false;
        for line in lex::lines(text) {
            let Some((name, raw)) = line.text.split_once('=') else {
                errors.push(ConfigError::at(path, line.no, "expected NAME=value"));
                continue;
            };
            let name = name.trim();
            if !NAMES.contains(&name) && !super::links::NAMES.contains(&name) {
                errors.push(ConfigError::at(
                    path,
                    line.no,
                    format!("unknown name '{name}'"),
                ));
                continue;
            }
            if vars.contains_key(name) {
                errors.push(ConfigError::at(
                    path,
                    line.no,
                    format!("{name} is set twice"),
                ));
                continue;
            }
            let result = value(raw.trim(), &vars).and_then(|v| {
                c.set(name, &v, &dir)?;
                Ok(v)
            });
            match result {
                Ok(v) => {
                    c.sources.push((name.to_string(), v.clone(), line.no));
                    mailshare_set |= name == "MAILSHARE";
                    if name == "MAILVAR" && !mailshare_set {
                        c.mailshare = c.mailvar.clone();
                    }
                    vars.insert(name.to_string(), v);
                }
                Err(m) => errors.push(ConfigError::at(path, line.no, format!("{name}: {m}"))),
            }
        }
        if c.tls_cert.is_some() != c.tls_key.is_some() {
            errors.push(ConfigError::at(
                path,
                0,
                "TLS_CERT and TLS_KEY go together: set both or neither",
            ));
        }
        for k in [ListenKind::Smtps, ListenKind::Submission] {
            if c.listen_kinds.contains(&k) && c.tls_cert.is_none() {
                errors.push(ConfigError::at(
                    path,
                    0,
                    format!("LISTEN has a {} listener but TLS_CERT is not set", k.name()),
                ));
            }
        }
        let l = &c.links;
        if l.targets.is_empty() && (!l.up.is_empty() || !l.dial.is_empty()) {
            errors.push(ConfigError::at(
                path,
                0,
                "LINK_UP and LINK_DIAL act on links: name them in LINKS",
            ));
        }
        if l.dial.is_empty() && !l.dial_when.is_empty() {
            errors.push(ConfigError::at(
                path,
                0,
                "LINK_DIAL_WHEN says when to run LINK_DIAL, which is not set",
            ));
        }
        if !cfg!(feature = "tls") && (c.tls_cert.is_some() || c.smtp_tls.mandatory()) {
            errors.push(ConfigError::at(
                path,
                0,
                "TLS_CERT or a mandatory SMTP_TLS level needs etrnd built with the tls feature",
            ));
        }
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(errors)
        }
    }

    fn set(&mut self, name: &str, v: &str, dir: &Path) -> Result<(), String> {
        let path = |v: &str| -> Result<PathBuf, String> {
            if v.is_empty() {
                return Err("empty path".into());
            }
            Ok(normalize(&dir.join(v)))
        };
        match name {
            "MAILVAR" => self.mailvar = path(v)?,
            "MAILSHARE" => self.mailshare = path(v)?,
            "POSTOFFICE" => self.postoffice = path(v)?,
            "LOGDIR" => self.logdir = path(v)?,
            "PIDFILE" => self.pidfile = path(v)?,
            "MAILBOX" => {
                self.maildir = v.ends_with('/');
                self.mailbox = match v.strip_prefix("~/") {
                    // In each user's home: kept relative, resolved per recipient.
                    Some(rest) if !rest.is_empty() && !rest.contains("..") => {
                        PathBuf::from(rest.trim_end_matches('/'))
                    }
                    Some(_) => return Err(format!("'{v}': name a path in the home")),
                    None => path(v)?,
                };
            }
            "TLS_CERT" => self.tls_cert = if v.is_empty() { None } else { Some(path(v)?) },
            "TLS_KEY" => self.tls_key = if v.is_empty() { None } else { Some(path(v)?) },
            "TLS_CA_FILE" => self.tls_ca_file = if v.is_empty() { None } else { Some(path(v)?) },
            "SMTP_TLS" => {
                self.smtp_tls = TlsLevel::parse(v).ok_or_else(|| {
                    format!("'{v}': expected none, may, encrypt, fingerprint, verify or secure")
                })?
            }
            "HOSTNAME" => {
                crate::vocab::Domain::parse(v).map_err(|e| format!("'{v}': {e}"))?;
                self.hostname = v.to_ascii_lowercase();
            }
            "LISTEN" => {
                let mut addrs = Vec::new();
                let mut kinds = Vec::new();
                for word in v.split_whitespace() {
                    let (a, kind) = match word.rsplit_once('/') {
                        Some((a, k)) => match ListenKind::parse(k) {
                            Some(kind) => (a, kind),
                            None => {
                                return Err(format!(
                                    "'{word}': unknown kind '{k}' (smtp, submission, smtps or odmr)"
                                ))
                            }
                        },
                        None => (word, ListenKind::Smtp),
                    };
                    addrs.push(parse_socket_addr(a, None)?);
                    kinds.push(kind);
                }
                self.listen = addrs;
                self.listen_kinds = kinds;
                if self.listen.is_empty() || self.listen.len() > MAX_LISTEN {
                    return Err(format!("needs 1 to {MAX_LISTEN} addresses"));
                }
            }
            "MYNETWORKS" => self.mynetworks = cidrs(v)?,
            "PROTOCOLS" => {
                let mut routes = false;
                let mut smtp = false;
                for p in v.split_whitespace() {
                    match p {
                        "routes" => routes = true,
                        "smtp" => smtp = true,
                        _ => return Err(format!("unknown protocol '{p}' (routes, smtp)")),
                    }
                }
                if !routes {
                    return Err("'routes' must be listed".into());
                }
                self.protocols_smtp = smtp;
            }
            "ETRN" => self.etrn = parse_bool(v)?,
            "ETRN_ALLOW" => {
                self.etrn_auth = v.split_whitespace().any(|w| w == "auth");
                self.etrn_allow = if v.trim() == "any" {
                    None
                } else {
                    let nets: Vec<&str> = v.split_whitespace().filter(|w| *w != "auth").collect();
                    Some(cidrs(&nets.join(" "))?)
                }
            }
            "AUTH_CLEAR_CRAM" => {
                self.auth_clear_cram = v
                    .split_whitespace()
                    .filter(|w| *w != "none")
                    .map(|w| {
                        ListenKind::parse(w).ok_or_else(|| {
                            format!("'{w}' is not a listener kind (smtp, submission, smtps, odmr, none)")
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "ETRN_REPLIES" => {
                self.etrn_replies = match v {
                    "detailed" => EtrnReplies::Detailed,
                    "minimal" => EtrnReplies::Minimal,
                    _ => return Err(format!("expected detailed or minimal, not '{v}'")),
                }
            }
            "HOSTS_ORDER" => {
                let order: Result<Vec<_>, String> = v
                    .split_whitespace()
                    .map(|s| match s {
                        "files" => Ok(HostSource::Files),
                        "dns" => Ok(HostSource::Dns),
                        _ => Err(format!("unknown source '{s}' (files, dns)")),
                    })
                    .collect();
                let order = order?;
                if order.is_empty() {
                    return Err("needs files, dns or both".into());
                }
                self.hosts_order = Some(order);
            }
            "HOSTS_FILE" => self.hosts_file = path(v)?,
            "RESOLV_CONF" => self.resolv_conf = path(v)?,
            "NSSWITCH_CONF" => self.nsswitch_conf = path(v)?,
            "DNS_SERVERS" => {
                let l: Result<Vec<_>, _> = v
                    .split_whitespace()
                    .map(|a| parse_socket_addr(a, Some(53)))
                    .collect();
                self.dns_servers = l?;
            }
            "SMTP_PORT" => self.smtp_port = parse_num(name, v)?,
            "SMTP_BIND" => {
                let mut l: Vec<std::net::IpAddr> = Vec::new();
                for w in v.split_whitespace() {
                    let ip: std::net::IpAddr =
                        w.parse().map_err(|_| format!("'{w}': not an IP address"))?;
                    if ip.is_unspecified() || ip.is_multicast() {
                        return Err(format!("'{w}': not an address of this host"));
                    }
                    if l.iter().any(|x| x.is_ipv4() == ip.is_ipv4()) {
                        return Err("at most one address per family".into());
                    }
                    l.push(ip);
                }
                self.smtp_bind = l;
            }
            "MAX_MESSAGE_SIZE" => self.max_message_size = parse_num(name, v)?,
            "HOLD_QUOTA" => self.hold_quota = parse_num(name, v)?,
            "MAX_RECIPIENTS" => self.max_recipients = parse_num(name, v)?,
            "MAX_CONNECTIONS" => self.max_connections = parse_num(name, v)?,
            "MAX_CONNECTIONS_PER_IP" => self.max_connections_per_ip = parse_num(name, v)?,
            "USER" => {
                if !v.is_empty() && !crate::sys::user_exists(v) {
                    return Err(format!(
                        "no such user '{v}': create an account of etrnd's own ({})",
                        account_hint(v)
                    ));
                }
                self.user = if v.is_empty() {
                    None
                } else {
                    Some(v.to_string())
                }
            }
            "GREET_PAUSE" => self.greet_pause = Duration::from_secs(parse_num(name, v)?),
            "SYSLOG_SOCKET" => self.syslog_socket = Some(path(v)?),
            n if super::links::NAMES.contains(&n) => self.links.set(n, v)?,
            _ => unreachable!("NAMES and set() list the same names"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MainConf, Vec<String>> {
        MainConf::parse(Path::new("/etc/etrnd/etrnd.conf"), text)
            .map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn defaults_follow_the_file() {
        let c = parse("").unwrap();
        assert_eq!(c.mailvar, Path::new("/etc/etrnd"));
        assert_eq!(c.max_message_size, 10_240_000);
        assert_eq!(c.listen, vec!["127.0.0.1:25".parse().unwrap()]);
        assert!(c.etrn);
    }

    #[test]
    fn values_quotes_and_expansion() {
        let c = parse(
            "MAILVAR=/opt/etrnd\nPOSTOFFICE=\"$MAILVAR/spool\"\nLOGDIR=${MAILVAR}/log\n\
             LISTEN=127.0.0.1:0 [::1]:2525\nMYNETWORKS=10.0.0.0/8 ::1\nPROTOCOLS=\"routes smtp\"\n\
             MAILBOX=var/mail/\n",
        )
        .unwrap();
        assert_eq!(c.postoffice, Path::new("/opt/etrnd/spool"));
        assert_eq!(c.logdir, Path::new("/opt/etrnd/log"));
        assert_eq!(c.mailshare, Path::new("/opt/etrnd"));
        assert_eq!(c.listen.len(), 2);
        assert!(c.protocols_smtp);
        assert!(c.maildir);
        assert_eq!(c.mailbox, Path::new("/etc/etrnd/var/mail/"));
    }

    #[test]
    fn every_error_has_file_and_line() {
        let errs = parse(
            "BOGUS=1\nMYNETWORKS=10.0.0.0/33\nETRN=maybe\nMAX_RECIPIENTS=ten\n\
             LISTEN=localhost:25\nno equals sign\nPOSTOFFICE=\"open\nLOGDIR=$NOPE/x\n",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 8, "{errs:#?}");
        assert!(errs[0].starts_with("/etc/etrnd/etrnd.conf:1: unknown name 'BOGUS'"));
        assert!(errs[1].starts_with("/etc/etrnd/etrnd.conf:2: MYNETWORKS"));
        assert!(errs[5].starts_with("/etc/etrnd/etrnd.conf:6: expected NAME=value"));
    }

    #[test]
    fn numbers_have_ranges() {
        for (name, min, max) in RANGES {
            let ok = format!("{name}={min}\n");
            assert!(parse(&ok).is_ok(), "{ok}");
            let ok = format!("{name}={max}\n");
            assert!(parse(&ok).is_ok(), "{ok}");
            let bad = format!("{name}={}\n", max + 1);
            let e = parse(&bad).unwrap_err();
            assert!(e[0].contains("out of range"), "{e:?}");
            let huge = format!("{name}=18446744073709551615\n");
            assert!(parse(&huge).unwrap_err()[0].contains("out of range"));
            let huger = format!("{name}=184467440737095516150\n");
            assert!(parse(&huger).unwrap_err()[0].contains("out of range"));
            let neg = format!("{name}=-1\n");
            assert!(parse(&neg).unwrap_err()[0].contains("expected a number"));
        }
    }

    #[test]
    fn smtp_bind_takes_one_address_per_family() {
        let c = parse("SMTP_BIND=192.0.2.7 2001:db8::7\n").unwrap();
        assert_eq!(
            c.bind_for("198.51.100.1:25".parse().unwrap()),
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(
            c.bind_for("[2001:db8::1]:25".parse().unwrap()),
            Some("2001:db8::7".parse().unwrap())
        );
        let c = parse("SMTP_BIND=192.0.2.7\n").unwrap();
        assert_eq!(c.bind_for("[2001:db8::1]:25".parse().unwrap()), None);
        for (bad, why) in [
            ("192.0.2.7 192.0.2.8", "one address per family"),
            ("mail.example", "not an IP address"),
            ("0.0.0.0", "not an address of this host"),
            ("224.0.0.1", "not an address of this host"),
        ] {
            let e = parse(&format!("SMTP_BIND={bad}\n")).unwrap_err();
            assert!(
                e[0].contains(why) && e[0].contains("etrnd.conf:1"),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn link_settings_need_links() {
        let e = parse("LINK_UP=\"etrn mail.isp.dom client.dom\"\n").unwrap_err();
        assert!(e[0].contains("name them in LINKS"), "{e:?}");
        let e = parse("LINKS=ppp0:#smtp\nLINK_DIAL_WHEN=count=5\n").unwrap_err();
        assert!(e[0].contains("LINK_DIAL, which is not set"), "{e:?}");
        let c =
            parse("LINKS=\"ppp0:#smtp ppp0:mail.isp.dom\"\nLINK_DIAL=/usr/sbin/pppd call isp\n")
                .unwrap();
        assert_eq!(c.links.dial, ["/usr/sbin/pppd", "call", "isp"]);
        let e = parse("LINKS=ppp0\n").unwrap_err();
        assert!(
            e[0].starts_with("/etc/etrnd/etrnd.conf:1: LINKS: 'ppp0'"),
            "{e:?}"
        );
    }

    #[test]
    fn twice_is_an_error() {
        let errs = parse("ETRN=yes\nETRN=no\n").unwrap_err();
        assert_eq!(errs, vec!["/etc/etrnd/etrnd.conf:2: ETRN is set twice"]);
    }
}
