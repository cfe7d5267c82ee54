//! The one-shot commands and the daemon's start-up, as the executable dispatches
//! them: `etrnd route`, `etrnd etrn` (the server looked up as a delivery would) and,
//! in [`daemon`], detaching, the spool handover to `USER`, the helper and the loop.
//! Output goes to stdout and stderr; each returns a sysexits(3) code.

pub mod daemon;
pub mod secret;

use crate::cli::exit as ex;
use crate::config::Config;
use crate::dns::{Dns, Outcome};
use crate::route::Decision;

/// `etrnd route [-R] address...`: how each address routes, which scheduler clause
/// takes it, and with `-R` the next hops a delivery would try. Returns the exit code.
pub fn route(cfg: &Config, addrs: &[String], resolve: bool) -> i32 {
    let mut code = ex::OK;
    let mut dns = resolve.then(|| {
        let seed = crate::sys::random_u64();
        Dns::new(
            cfg.resolve.clone(),
            crate::dns::self_spec(cfg, &[], crate::sys::interface_addrs()),
            cfg.main.smtp_port,
            (seed, crate::sys::fill_random),
        )
    });
    for a in addrs {
        let bare = a.trim_start_matches('<').trim_end_matches('>');
        // An unqualified name is ours (HOSTNAME), as mail from this host is.
        let path = if !bare.is_empty()
            && !bare.contains('@')
            && !bare.eq_ignore_ascii_case("postmaster")
        {
            format!("<{bare}@{}>", cfg.main.hostname)
        } else {
            format!("<{bare}>")
        };
        let mbox = match crate::smtp::parse_path(&path) {
            Ok(Some(m)) => m,
            Ok(None) => {
                println!("{a}: error: the null address cannot be a recipient");
                code = ex::DATAERR;
                continue;
            }
            Err(e) => {
                println!("{a}: error: {e}");
                code = ex::DATAERR;
                continue;
            }
        };
        let inside = cfg.router.route(&mbox, true);
        let outside = cfg.router.route(&mbox, false);
        let show = |d: &Decision| match d {
            Decision::Local(u) => format!("local user {u}"),
            Decision::Remote { channel, host } => format!("{channel}!{host}"),
            Decision::Refuse(r) => format!("refused: {r}"),
        };
        println!("{mbox}: {}", show(&inside.decision));
        println!("    because: {}", inside.why);
        let (channel, host) = match &inside.decision {
            Decision::Remote { channel, host } => (channel.as_str(), host.as_str()),
            Decision::Local(u) => ("local", u.as_str()),
            Decision::Refuse(_) => ("", ""),
        };
        if !channel.is_empty() {
            match cfg.sched.clause_for(channel, host) {
                Some((_, c)) => println!(
                    "    scheduler: {} (scheduler.conf line {}){}{}",
                    c.selector,
                    c.line,
                    match (&c.command_from, &c.params.command) {
                        (_, None) => ", no command: not delivered".to_string(),
                        (Some((sel, line)), _) => format!(", command from {sel} (line {line})"),
                        (None, _) => String::new(),
                    },
                    if c.params.queueonly {
                        ", queue-only"
                    } else {
                        ""
                    }
                ),
                None => {
                    println!("    scheduler: no clause matches {channel}/{host}: not delivered")
                }
            }
        }
        if outside.decision != inside.decision {
            println!("    from outside MYNETWORKS: {}", show(&outside.decision));
        }
        if let Decision::Remote { .. } = inside.decision {
            use crate::config::recipients::Check;
            match cfg.recipients.check(&mbox) {
                Check::Unlisted => {}
                Check::Valid => println!("    recipients: listed in db/recipients"),
                Check::Unknown => println!(
                    "    recipients: refused at RCPT (550 5.1.1): db/recipients lists its domain, not it"
                ),
            }
        }
        let link = crate::daemon::netlinks::offline_link(cfg, |t| t.covers(channel, host));
        match &link {
            Some((l, true)) => {
                println!("    link: {l}, down: a delivery waits for it (nothing is looked up)")
            }
            Some((l, false)) => println!("    link: {l}, up"),
            None => {}
        }
        if let (Some(dns), Decision::Remote { host, .. }, false) = (
            dns.as_mut(),
            &inside.decision,
            matches!(link, Some((_, true))),
        ) {
            print_next_hops(dns, host);
        }
    }
    code
}

/// Resolves a route host as a delivery would and prints what it would try.
fn print_next_hops(dns: &mut Dns, host: &str) {
    let limit = std::time::Duration::from_secs(60);
    match crate::daemon::io::dns_io::resolve_all(dns, &[(host.to_string(), false)], limit) {
        Ok(mut outcomes) => match outcomes.pop() {
            Some(Outcome::Hops(hops)) => {
                for (i, h) in hops.iter().enumerate() {
                    let pref = h.pref.map(|p| format!(" MX {p}")).unwrap_or_default();
                    println!(
                        "    next hop {}: {}{} {} (from {})",
                        i + 1,
                        h.host,
                        pref,
                        h.addr,
                        h.source
                    );
                }
            }
            Some(Outcome::Failed { status, reason }) => {
                println!("    next hop: permanent failure {status}: {reason}")
            }
            Some(Outcome::Deferred { status, reason }) => {
                println!("    next hop: temporary failure {status}: {reason}")
            }
            None => {}
        },
        Err(e) => println!("    next hop: cannot resolve: {e}"),
    }
}

/// `etrnd etrn`: resolves the server like a delivery would (hosts file first, then
/// A/AAAA; an address literal or IP as is) and sends the ETRNs.
pub fn etrn(cfg: &Config, port: Option<u16>, server: &str, targets: &[String]) -> i32 {
    let port = port.unwrap_or(cfg.main.smtp_port);
    let bare = crate::vocab::bare_host(server);
    if let Some((l, true)) = crate::daemon::netlinks::offline_link(cfg, |t| t.covers_server(bare)) {
        eprintln!("etrn: {server} is behind link {l}, which is down (etrnd link up {l})");
        return crate::tools::etrn_client::TEMPFAIL;
    }
    let addrs: Vec<std::net::SocketAddr> = match server.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![std::net::SocketAddr::new(ip, port)],
        Err(_) => {
            let seed = crate::sys::random_u64();
            let mut dns = Dns::new(
                cfg.resolve.clone(),
                crate::dns::self_spec(cfg, &[], crate::sys::interface_addrs()),
                port,
                (seed, crate::sys::fill_random),
            );
            let host = if server.starts_with('[') {
                server.to_string()
            } else {
                server.to_ascii_lowercase()
            };
            let limit = std::time::Duration::from_secs(60);
            match crate::daemon::io::dns_io::resolve_all(&mut dns, &[(host, true)], limit) {
                Ok(mut o) => match o.pop() {
                    Some(Outcome::Hops(h)) => h
                        .into_iter()
                        .map(|h| std::net::SocketAddr::new(h.addr.ip(), port))
                        .collect(),
                    Some(Outcome::Failed { reason, .. })
                    | Some(Outcome::Deferred { reason, .. }) => {
                        eprintln!("etrn: {server}: {reason}");
                        return ex::UNAVAILABLE;
                    }
                    None => Vec::new(),
                },
                Err(e) => {
                    eprintln!("etrn: {server}: {e}");
                    return ex::UNAVAILABLE;
                }
            }
        }
    };
    let sec = crate::tools::etrn_client::security_for(cfg, server, port, &mut std::io::stderr());
    crate::tools::etrn_client::run(
        &addrs,
        &cfg.main.hostname,
        targets,
        &sec,
        &mut std::io::stdout(),
    )
}
