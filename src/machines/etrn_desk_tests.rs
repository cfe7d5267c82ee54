//! The ETRN desk, input by input: the rate limit, each reply, eligibility, what is
//! held and what a name releases.

use super::*;
use std::path::Path;

const ROUTES: &str = "\
.client.dom      smtp-etrn!mail.client.dom
other.dom        smtp!relay.example
ignored.dom      ignore
atrn.dom         hold!atrn.dom
.                smtp!relay.isp.example
";

fn trie() -> RouteTrie {
    RouteTrie::new(crate::config::routes::parse(Path::new("routes"), ROUTES).unwrap())
}

fn target(s: &str) -> EtrnTarget {
    EtrnTarget::parse(s).unwrap()
}

fn key(channel: &str, host: &str) -> ThreadKey {
    ThreadKey {
        channel: channel.into(),
        host: host.into(),
    }
}

fn released(matched: bool, messages: usize) -> Released {
    Released {
        matched,
        messages,
        ..Released::default()
    }
}

#[test]
fn a_client_gets_ten_requests_a_minute_and_the_eleventh_is_refused() {
    let mut d = EtrnDesk::default();
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let t0 = Instant::now();
    for i in 0..ETRN_PER_WINDOW {
        assert!(d
            .admit(ip, false, t0 + Duration::from_secs(i as u64))
            .is_ok());
    }
    let r = d
        .admit(ip, false, t0 + Duration::from_secs(30))
        .unwrap_err();
    assert_eq!(r.code, 458);
    // Another address is not affected.
    assert!(d.admit("192.0.2.8".parse().unwrap(), false, t0).is_ok());
    // A minute after the first, one request is free again, and only one.
    let later = t0 + ETRN_WINDOW;
    assert!(d.admit(ip, false, later).is_ok());
    assert!(d.admit(ip, false, later).is_err());
}

#[test]
fn our_own_networks_are_never_limited_nor_remembered() {
    let mut d = EtrnDesk::default();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let now = Instant::now();
    for _ in 0..100 {
        assert!(d.admit(ip, true, now).is_ok());
    }
    assert_eq!(d.remembered(), 0);
}

#[test]
fn idle_addresses_are_forgotten_and_the_table_is_bounded() {
    let mut d = EtrnDesk::default();
    let t0 = Instant::now();
    let ip = |i: u32| IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
    for i in 0..ETRN_ADDRESSES as u32 {
        let at = t0 + Duration::from_millis(u64::from(i % 1000));
        assert!(d.admit(ip(i), false, at).is_ok());
    }
    assert_eq!(d.remembered(), ETRN_ADDRESSES);
    // Full of addresses active in the window: a newcomer is still served, and the
    // address that asked least recently is forgotten to make room.
    let new: IpAddr = "198.51.100.1".parse().unwrap();
    assert!(d.admit(new, false, t0 + Duration::from_secs(1)).is_ok());
    assert_eq!(d.remembered(), ETRN_ADDRESSES);
    // The newcomer's own limit holds.
    for _ in 1..ETRN_PER_WINDOW {
        assert!(d.admit(new, false, t0 + Duration::from_secs(2)).is_ok());
    }
    assert!(d.admit(new, false, t0 + Duration::from_secs(2)).is_err());
    // Once the window has passed, the idle ones make room.
    let later: IpAddr = "198.51.100.2".parse().unwrap();
    assert!(d
        .admit(later, false, t0 + ETRN_WINDOW + Duration::from_secs(1))
        .is_ok());
    assert!(d.remembered() <= 2, "{}", d.remembered());
    d.tidy(t0 + ETRN_WINDOW * 3);
    assert_eq!(d.remembered(), 0);
}

#[test]
fn each_release_gets_its_rfc_1985_reply() {
    let t = target("client.dom");
    let detailed = EtrnReplies::Detailed;
    let r = reply(&t, &released(true, 3), detailed, 0, || unreachable!());
    assert_eq!(
        r.to_string(),
        "253 2.0.0 OK, 3 pending messages for node client.dom started"
    );
    let r = reply(&t, &released(true, 0), detailed, 0, || unreachable!());
    assert_eq!(r.code, 252, "{r}");
    let r = reply(&t, &released(false, 0), detailed, 0, || true);
    assert_eq!(r.code, 251, "{r}");
    let r = reply(&t, &released(false, 0), detailed, 0, || false);
    assert_eq!(r.code, 459, "{r}");
    // Minimal: 250 whatever was found, and the routes are not even asked.
    for rel in [released(true, 3), released(false, 0)] {
        let r = reply(&t, &rel, EtrnReplies::Minimal, 0, || unreachable!());
        assert_eq!(r.code, 250, "{r}");
    }
    assert_eq!(stopping_reply(&t).code, 458);
    // Matched, but its attempts failed moments ago: 458 until the gap ends.
    let gapped = Released {
        matched: true,
        not_before: Some(1_060),
        ..Released::default()
    };
    let r = reply(&t, &gapped, detailed, 1_000, || unreachable!());
    assert_eq!(
        r.to_string(),
        "458 4.4.1 client.dom: the last attempt failed, unable to queue messages for 60 s"
    );
    // Something else of it started: that counts.
    let some = Released {
        messages: 2,
        ..gapped
    };
    assert_eq!(reply(&t, &some, detailed, 1_000, || true).code, 253);
}

#[test]
fn eligible_names_are_routed_domains_route_hosts_and_channels() {
    let trie = trie();
    for (name, yes) in [
        ("client.dom", true),
        ("sub.client.dom", true),
        ("mail.client.dom", true),
        ("other.dom", true),
        ("relay.example", true),
        ("ignored.dom", false),
        ("nowhere.example", false),
        ("@client.dom", true),
        ("@dom", true),
        ("@nowhere.example", false),
        ("#smtp-etrn", true),
        ("#nosuch", false),
    ] {
        assert_eq!(eligible(&trie, &target(name)), yes, "{name}");
    }
}

#[test]
fn held_names_are_those_of_queue_only_clauses_and_the_hold_transport() {
    let trie = trie();
    let sched = SchedulerConf::builtin("/tmp");
    for (name, yes) in [
        ("client.dom", true),
        ("mail.client.dom", true),
        ("@client.dom", true),
        ("#smtp-etrn", true),
        ("atrn.dom", true),
        ("other.dom", false),
        ("relay.example", false),
        ("#smtp", false),
        ("nowhere.example", false),
    ] {
        assert_eq!(names_held(&trie, &sched, &target(name)), yes, "{name}");
    }
}

#[test]
fn a_name_releases_its_own_route_and_never_the_default() {
    let trie = trie();
    let t = target("client.dom");
    let pick = picks(&trie, &t);
    let etrn_host = key("smtp-etrn", "mail.client.dom");
    assert!(pick(&etrn_host, "client.dom"));
    // The same route through a subdomain of the name.
    assert!(pick(&etrn_host, "sub.client.dom"));
    assert!(!pick(&key("smtp", "relay.example"), "other.dom"));
    // A name routed by the default route releases only what it matches itself.
    let t = target("nowhere.example");
    let pick = picks(&trie, &t);
    assert!(!pick(
        &key("smtp", "elsewhere.example"),
        "elsewhere.example"
    ));
    assert!(pick(&key("smtp", "nowhere.example"), "nowhere.example"));
}
