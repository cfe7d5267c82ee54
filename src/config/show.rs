//! `etrnd config`: the effective `etrnd.conf`, every name with its value and where
//! the value came from (`postconf`'s view), so an operator sees what the daemon
//! would run with, defaults included.

use std::fmt::Write as _;
use std::path::Path;

use super::main_conf::{EtrnReplies, HostSource, MainConf};

/// Every name, in the order `etrnd.conf(5)` lists them, then the links' names.
fn names() -> impl Iterator<Item = &'static str> {
    super::main_conf::NAMES
        .iter()
        .chain(super::links::NAMES.iter())
        .copied()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn join<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    items.iter().map(f).collect::<Vec<_>>().join(" ")
}

/// The value in effect for `name`, written as `etrnd.conf` would take it.
fn effective(c: &MainConf, name: &str) -> String {
    let opt = |o: &Option<std::path::PathBuf>| o.as_deref().map(p).unwrap_or_default();
    match name {
        "MAILVAR" => p(&c.mailvar),
        "MAILSHARE" => p(&c.mailshare),
        "POSTOFFICE" => p(&c.postoffice),
        "LOGDIR" => p(&c.logdir),
        "PIDFILE" => p(&c.pidfile),
        "MAILBOX" => {
            let m = p(&c.mailbox);
            let m = if c.mailbox.is_relative() {
                format!("~/{m}")
            } else {
                m
            };
            if c.maildir && !m.ends_with('/') {
                format!("{m}/")
            } else {
                m
            }
        }
        "HOSTNAME" => c.hostname.clone(),
        "LISTEN" => c
            .listen
            .iter()
            .zip(&c.listen_kinds)
            .map(|(a, k)| match k {
                crate::vocab::ListenKind::Smtp => a.to_string(),
                k => format!("{a}/{}", k.name()),
            })
            .collect::<Vec<_>>()
            .join(" "),
        "MYNETWORKS" => join(&c.mynetworks, |n| n.to_string()),
        "PROTOCOLS" => if c.protocols_smtp {
            "routes smtp"
        } else {
            "routes"
        }
        .into(),
        "ETRN" => if c.etrn { "yes" } else { "no" }.into(),
        "ETRN_ALLOW" => {
            let mut words: Vec<String> = match &c.etrn_allow {
                None => vec!["any".into()],
                Some(v) => v.iter().map(|n| n.to_string()).collect(),
            };
            if c.etrn_auth {
                words.push("auth".into());
            }
            words.join(" ")
        }
        "ETRN_REPLIES" => match c.etrn_replies {
            EtrnReplies::Detailed => "detailed",
            EtrnReplies::Minimal => "minimal",
        }
        .into(),
        "HOSTS_ORDER" => match &c.hosts_order {
            None => String::new(),
            Some(v) => join(v, |s| match s {
                HostSource::Files => "files".into(),
                HostSource::Dns => "dns".into(),
            }),
        },
        "HOSTS_FILE" => p(&c.hosts_file),
        "RESOLV_CONF" => p(&c.resolv_conf),
        "NSSWITCH_CONF" => p(&c.nsswitch_conf),
        "DNS_SERVERS" => join(&c.dns_servers, |a| a.to_string()),
        "SMTP_PORT" => c.smtp_port.to_string(),
        "SMTP_BIND" => join(&c.smtp_bind, |a| a.to_string()),
        "MAX_MESSAGE_SIZE" => c.max_message_size.to_string(),
        "HOLD_QUOTA" => c.hold_quota.to_string(),
        "MAX_RECIPIENTS" => c.max_recipients.to_string(),
        "MAX_CONNECTIONS" => c.max_connections.to_string(),
        "MAX_CONNECTIONS_PER_IP" => c.max_connections_per_ip.to_string(),
        "USER" => c.user.clone().unwrap_or_default(),
        "AUTH_CLEAR_CRAM" => {
            if c.auth_clear_cram.is_empty() {
                "none".into()
            } else {
                join(&c.auth_clear_cram, |k| k.name().to_string())
            }
        }
        "GREET_PAUSE" => c.greet_pause.as_secs().to_string(),
        "SYSLOG_SOCKET" => opt(&c.syslog_socket),
        "TLS_CERT" => opt(&c.tls_cert),
        "TLS_KEY" => opt(&c.tls_key),
        "TLS_CA_FILE" => opt(&c.tls_ca_file),
        "SMTP_TLS" => c.smtp_tls.name().into(),
        "LINK_DIAL_TIMEOUT" => c.links.dial_timeout.as_secs().to_string(),
        "LINK_PACE" => format!("conns={} msgs={}", c.links.pace.conns, c.links.pace.msgs),
        "LINK_DIAL" => c.links.dial.join(" "),
        // LINKS, LINK_UP and LINK_DIAL_WHEN are shown as written (empty by default).
        _ => String::new(),
    }
}

/// One line per name: `NAME=value` and, after `#`, `default` or `file:line`. A
/// value from the file is shown as written (after `$NAME` expansion).
pub fn render(c: &MainConf) -> String {
    let mut out = String::new();
    for name in names() {
        let (value, from) = match c.sources.iter().find(|(n, _, _)| n == name) {
            Some((_, v, line)) => (v.clone(), format!("{}:{line}", c.path.display())),
            None => (effective(c, name), "default".to_string()),
        };
        let quoted = if value.is_empty() || value.contains([' ', '#', '"', '$']) {
            format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
        } else {
            value
        };
        let _ = writeln!(out, "{name}={quoted}\t# {from}");
    }
    out
}
