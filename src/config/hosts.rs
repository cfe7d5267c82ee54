//! The local name sources: the hosts file, the `hosts:` line of nsswitch.conf (Linux
//! and BSD syntax) and resolv.conf (`nameserver`, `options timeout: attempts: rotate`,
//! OpenBSD's `lookup file bind`). Pure parsers: text in, typed values out.
//!
//! Search lists (`search`, `domain`) are read past and never applied: a mail domain is
//! always fully qualified (RFC 5321 §5.1).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::main_conf::HostSource;
use crate::lex::{self, ConfigError};
use crate::vocab::Domain;

/// The hosts file: lower-case name (or alias) to its addresses, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostsTable {
    map: HashMap<String, Vec<IpAddr>>,
}

impl HostsTable {
    /// Parses a hosts file: `address name [alias...]`, `#` comments. A line whose
    /// address does not parse is an error naming it.
    pub fn parse(path: &Path, text: &str) -> Result<HostsTable, Vec<ConfigError>> {
        let mut t = HostsTable::default();
        let mut errors = Vec::new();
        for line in lex::lines(text) {
            let mut words = line.text.split_whitespace();
            let addr = words.next().unwrap_or_default();
            // IPv6 zone ids (fe80::1%eth0) cannot be used for mail; skip the zone.
            let bare = addr.split('%').next().unwrap_or(addr);
            let Ok(ip) = bare.parse::<IpAddr>() else {
                errors.push(ConfigError::at(
                    path,
                    line.no,
                    format!("bad address '{addr}'"),
                ));
                continue;
            };
            let mut any = false;
            for name in words {
                any = true;
                let key = name.trim_end_matches('.').to_ascii_lowercase();
                let v = t.map.entry(key).or_default();
                if !v.contains(&ip) {
                    v.push(ip);
                }
            }
            if !any {
                errors.push(ConfigError::at(path, line.no, "address without a name"));
            }
        }
        if errors.is_empty() {
            Ok(t)
        } else {
            Err(errors)
        }
    }

    /// The addresses of `name`, IPv4 first, or `None`.
    pub fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        let mut v = self
            .map
            .get(&name.trim_end_matches('.').to_ascii_lowercase())?
            .clone();
        v.sort_by_key(|a| a.is_ipv6());
        Some(v)
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Parses the `hosts:` line of nsswitch.conf into our lookup order. `files` and `dns`
/// are kept; other sources (mdns4_minimal, myhostname, …) are skipped with their
/// actions. `[NOTFOUND=return]` after `files` or `dns` ends the order there. Returns
/// `None` when there is no `hosts:` line.
pub fn parse_nsswitch(path: &Path, text: &str) -> Result<Option<Vec<HostSource>>, ConfigError> {
    for line in lex::lines(text) {
        let Some(rest) = line
            .text
            .strip_prefix("hosts:")
            .or_else(|| line.text.strip_prefix("hosts :"))
        else {
            continue;
        };
        let mut order = Vec::new();
        let mut last: Option<HostSource> = None;
        let mut rest = rest.trim();
        while !rest.is_empty() {
            if let Some(inner) = rest.strip_prefix('[') {
                let end = inner
                    .find(']')
                    .ok_or_else(|| ConfigError::at(path, line.no, "unterminated '[' in hosts:"))?;
                for action in inner[..end].split_whitespace() {
                    let (status, what) = action.split_once('=').ok_or_else(|| {
                        ConfigError::at(path, line.no, format!("bad action '{action}' in hosts:"))
                    })?;
                    let status = status.trim_start_matches('!').to_ascii_uppercase();
                    let what = what.to_ascii_lowercase();
                    let known_status = ["SUCCESS", "NOTFOUND", "UNAVAIL", "TRYAGAIN"];
                    if !known_status.contains(&status.as_str())
                        || !["return", "continue", "merge"].contains(&what.as_str())
                    {
                        return Err(ConfigError::at(
                            path,
                            line.no,
                            format!("unknown action '{action}' in hosts:"),
                        ));
                    }
                    if status == "NOTFOUND" && what == "return" && last.is_some() {
                        return Ok(Some(order));
                    }
                }
                rest = inner[end + 1..].trim_start();
                continue;
            }
            let end = rest.find([' ', '\t', '[']).unwrap_or(rest.len());
            let word = &rest[..end];
            last = match word {
                "files" => Some(HostSource::Files),
                "dns" => Some(HostSource::Dns),
                _ => None,
            };
            if let Some(s) = last {
                if !order.contains(&s) {
                    order.push(s);
                }
            }
            rest = rest[end..].trim_start();
        }
        if order.is_empty() {
            return Err(ConfigError::at(
                path,
                line.no,
                "hosts: names neither files nor dns; set HOSTS_ORDER in etrnd.conf",
            ));
        }
        return Ok(Some(order));
    }
    Ok(None)
}

/// What resolv.conf says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// Name servers, port 53 unless given (`DNS_SERVERS` may carry ports).
    pub servers: Vec<SocketAddr>,
    /// Time to wait for one answer (`options timeout:`), default 5 s.
    pub timeout: Duration,
    /// Rounds over the server list (`options attempts:`), default 2.
    pub attempts: u32,
    /// Start each query at the next server (`options rotate`).
    pub rotate: bool,
    /// OpenBSD's `lookup file bind`, as a lookup order.
    pub lookup: Option<Vec<HostSource>>,
}

impl Default for ResolvConf {
    fn default() -> Self {
        ResolvConf {
            servers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            rotate: false,
            lookup: None,
        }
    }
}

impl ResolvConf {
    /// Parses resolv.conf. Bad lines are errors naming the line.
    pub fn parse(path: &Path, text: &str) -> Result<ResolvConf, Vec<ConfigError>> {
        let mut r = ResolvConf::default();
        let mut errors = Vec::new();
        for line in lex::lines(text) {
            // resolv.conf also takes ';' comments.
            if line.text.starts_with(';') {
                continue;
            }
            let mut words = line.text.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    let a = words.next().unwrap_or_default();
                    let bare = a.split('%').next().unwrap_or(a);
                    match bare.parse::<IpAddr>() {
                        Ok(ip) => r.servers.push(SocketAddr::new(ip, 53)),
                        Err(_) => errors.push(ConfigError::at(
                            path,
                            line.no,
                            format!("bad nameserver '{a}'"),
                        )),
                    }
                }
                Some("options") => {
                    for o in words {
                        let num = |v: &str| v.parse::<u32>().ok().filter(|n| *n > 0);
                        if let Some(v) = o.strip_prefix("timeout:") {
                            match num(v) {
                                Some(n) => r.timeout = Duration::from_secs(u64::from(n.min(30))),
                                None => errors.push(ConfigError::at(
                                    path,
                                    line.no,
                                    format!("bad '{o}'"),
                                )),
                            }
                        } else if let Some(v) = o.strip_prefix("attempts:") {
                            match num(v) {
                                Some(n) => r.attempts = n.min(5),
                                None => errors.push(ConfigError::at(
                                    path,
                                    line.no,
                                    format!("bad '{o}'"),
                                )),
                            }
                        } else if o == "rotate" {
                            r.rotate = true;
                        }
                        // ndots, edns0, trust-ad, …: not relevant to fully qualified
                        // mail domains.
                    }
                }
                Some("lookup") => {
                    let mut order = Vec::new();
                    for w in words {
                        match w {
                            "file" => order.push(HostSource::Files),
                            "bind" => order.push(HostSource::Dns),
                            _ => {}
                        }
                    }
                    r.lookup = Some(order);
                }
                // search, domain, sortlist: deliberately not applied to mail domains.
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(r)
        } else {
            Err(errors)
        }
    }
}

/// The resolution settings in force: order, hosts table and DNS servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveConf {
    /// Lookup order.
    pub order: Vec<HostSource>,
    /// The hosts file.
    pub hosts: HostsTable,
    /// resolv.conf, with `DNS_SERVERS` applied.
    pub resolv: ResolvConf,
}

impl ResolveConf {
    /// Whether `name` would be answered from the hosts file without DNS.
    pub fn files_answer(&self, name: &Domain) -> Option<Vec<IpAddr>> {
        let files_first = self.order.first() == Some(&HostSource::Files);
        if files_first {
            self.hosts.lookup(name.as_str())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("f")
    }

    #[test]
    fn hosts_file() {
        let t = HostsTable::parse(
            p(),
            "# c\n127.0.0.1 localhost\n192.0.2.1 mail.isp.dom relay # trailing\n\
             2001:db8::1 mail.isp.dom\nfe80::1%eth0 link\n",
        )
        .unwrap();
        assert_eq!(
            t.lookup("MAIL.ISP.DOM."),
            Some(vec![
                "192.0.2.1".parse().unwrap(),
                "2001:db8::1".parse().unwrap()
            ])
        );
        assert_eq!(t.lookup("relay"), Some(vec!["192.0.2.1".parse().unwrap()]));
        assert_eq!(t.lookup("nothere"), None);
        let e = HostsTable::parse(p(), "1.2.3 x\n10.0.0.1\n").unwrap_err();
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn nsswitch_orders() {
        use HostSource::*;
        let o = |s: &str| parse_nsswitch(p(), s);
        assert_eq!(o("hosts: files dns\n").unwrap(), Some(vec![Files, Dns]));
        assert_eq!(o("hosts:  dns files\n").unwrap(), Some(vec![Dns, Files]));
        assert_eq!(
            o("hosts: files mdns4_minimal [NOTFOUND=return] dns myhostname\n").unwrap(),
            Some(vec![Files, Dns])
        );
        assert_eq!(
            o("hosts: files [NOTFOUND=return] dns\n").unwrap(),
            Some(vec![Files])
        );
        assert_eq!(o("passwd: files\n").unwrap(), None);
        assert!(o("hosts: files [NOTFOUND=explode] dns\n").is_err());
        assert!(o("hosts: files [NOTFOUND=return dns\n").is_err());
        assert!(o("hosts: mdns4 myhostname\n").is_err());
    }

    #[test]
    fn resolv_conf() {
        let r = ResolvConf::parse(
            p(),
            "; c\nsearch example.com\nnameserver 127.0.0.1\nnameserver ::1\n\
             options ndots:2 timeout:1 attempts:3 rotate\nlookup file bind\n",
        )
        .unwrap();
        assert_eq!(
            r.servers,
            vec!["127.0.0.1:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
        assert_eq!(r.timeout, Duration::from_secs(1));
        assert_eq!(r.attempts, 3);
        assert!(r.rotate);
        assert_eq!(r.lookup, Some(vec![HostSource::Files, HostSource::Dns]));
        assert!(ResolvConf::parse(p(), "nameserver bogus\n").is_err());
    }
}
