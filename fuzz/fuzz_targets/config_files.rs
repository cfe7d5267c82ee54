//! Every configuration parser: etrnd.conf, routes, localnames, aliases,
//! scheduler.conf, hosts, resolv.conf, nsswitch.conf, and the secrets and policies
//! (db/secrets, db/authinfo, db/tls_policy), db/generic, and the link names of
//! etrnd.conf.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

use etrnd::config::{main_conf::MainConf, names, routes, scheduler::SchedulerConf};
use etrnd::dns::files::{parse_nsswitch, HostsTable, ResolvConf};

fuzz_target!(|data: &[u8]| {
    let Ok(t) = std::str::from_utf8(data) else { return };
    let p = Path::new("f");
    let _ = MainConf::parse(p, t);
    let _ = routes::parse(p, t).map(etrnd::route::RouteTrie::new);
    let _ = names::parse_localnames(p, t);
    let _ = names::parse_aliases(p, t);
    for line in t.lines() {
        let _ = names::parse_target(line);
    }
    if let Ok(c) = SchedulerConf::parse(p, t, "/log") {
        // The command-less clauses' expansions are looked up like any clause.
        let _ = c.check_destination("smtp", "a.example");
    }
    let _ = etrnd::config::scheduler::parse_command(t, "/log");
    if let Ok(g) = etrnd::config::generic::Generic::parse(p, t) {
        for line in t.lines() {
            if let Ok(m) = etrnd::vocab::Mailbox::parse(line.trim()) {
                let _ = g.rewrite(&m);
            }
        }
    }
    let _ = HostsTable::parse(p, t);
    let _ = ResolvConf::parse(p, t);
    let _ = parse_nsswitch(p, t);
    let _ = etrnd::config::scheduler::parse_interval(t);
    // The link names (LINKS, LINK_UP, LINK_DIAL, LINK_DIAL_WHEN, LINK_PACE).
    use etrnd::config::links::{DialWhen, LinkAction, LinkTarget, LinksConf, NAMES};
    for name in NAMES {
        let mut l = LinksConf::default();
        if l.set(name, t).is_ok() {
            let _ = l.link_of("smtp", "mail.a.example");
            let _ = l.link_of_server("mail.a.example");
            let _ = l.actions_for("ppp0");
        }
    }
    if let Ok(target) = LinkTarget::parse(t) {
        let _ = target.covers("smtp", "[192.0.2.1]:25");
        let _ = target.covers_server(t);
    }
    if let Ok(a) = LinkAction::parse(t) {
        let _ = a.to_string();
    }
    if let Ok(w) = DialWhen::parse(t) {
        let _ = w.verdict(u64::MAX, u64::MAX, Some(u64::MAX), 0);
        let _ = w.verdict(3, 1, Some(0), u64::MAX);
    }
    if let Ok(s) = etrnd::auth::secrets::Secrets::parse(p, t) {
        for e in &s.entries {
            let _ = etrnd::auth::secrets::entitled(&e.domains, "a.example");
        }
    }
    if let Ok(a) = etrnd::auth::authinfo::AuthInfo::parse(p, t) {
        let _ = a.lookup("a.example", 587);
    }
    if let Ok(tp) = etrnd::config::tls_policy::TlsPolicy::parse(p, t) {
        let _ = tp.lookup("mx.a.example", 25, "b.a.example");
    }
});
