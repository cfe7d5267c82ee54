//! Next-hop selection against an in-memory zone, through the real resolver.

use super::*;
use crate::dns::files::{HostsTable, ResolvConf};
use crate::dns::Dns;
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::path::Path;

const SERVER: &str = "127.0.0.1:5353";

#[derive(Default)]
struct Zone {
    mx: Vec<(&'static str, u16, &'static str)>,
    addrs: Vec<(&'static str, &'static str)>,
    nx: Vec<&'static str>,
    servfail: Vec<&'static str>,
}

fn n(s: &str) -> Name {
    Name::from_ascii(format!("{s}.")).unwrap()
}

impl Zone {
    fn answer(&self, q: &Message) -> Message {
        let qq = &q.queries[0];
        let name = qq.name().to_ascii().trim_end_matches('.').to_string();
        let mut m = Message::response(q.metadata.id, OpCode::Query);
        m.add_queries(q.queries.clone());
        if self.servfail.contains(&name.as_str()) {
            m.metadata.response_code = ResponseCode::ServFail;
            return m;
        }
        if self.nx.contains(&name.as_str()) {
            m.metadata.response_code = ResponseCode::NXDomain;
            return m;
        }
        match qq.query_type() {
            RecordType::MX => {
                for (owner, pref, ex) in &self.mx {
                    if *owner == name {
                        let exchange = if *ex == "." { Name::root() } else { n(ex) };
                        m.add_answer(Record::from_rdata(
                            n(owner),
                            300,
                            RData::MX(MX::new(*pref, exchange)),
                        ));
                    }
                }
            }
            t => {
                for (owner, ip) in &self.addrs {
                    if *owner != name {
                        continue;
                    }
                    match (ip.parse::<IpAddr>().unwrap(), t) {
                        (IpAddr::V4(a), RecordType::A) => {
                            m.add_answer(Record::from_rdata(n(owner), 300, RData::A(A(a))));
                        }
                        (IpAddr::V6(a), RecordType::AAAA) => {
                            m.add_answer(Record::from_rdata(n(owner), 300, RData::AAAA(AAAA(a))));
                        }
                        _ => {}
                    }
                }
            }
        }
        m
    }
}

struct Setup {
    order: Vec<HostSource>,
    hosts: &'static str,
    me: SelfSpec,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            order: vec![HostSource::Files, HostSource::Dns],
            hosts: "",
            me: SelfSpec {
                hostname: Some(Domain::parse("mx.ours.example").unwrap()),
                listen: vec!["192.0.2.25:25".parse().unwrap()],
                interfaces: vec![],
            },
        }
    }
}

/// Runs one lookup to its end; returns the outcome and the number of packets.
fn run(setup: Setup, zone: &Zone, host: &str, no_mx: bool) -> (Outcome, usize) {
    let conf = ResolveConf {
        order: setup.order,
        hosts: HostsTable::parse(Path::new("hosts"), setup.hosts).unwrap(),
        resolv: ResolvConf {
            servers: vec![SERVER.parse().unwrap()],
            ..Default::default()
        },
    };
    let mut dns = Dns::new(conf, setup.me, 25, (7, crate::sys::fill_random));
    let now = Instant::now();
    let id = dns.lookup(host, no_mx, now);
    let mut packets = 0;
    loop {
        if let Some((got, outcome)) = dns.poll_done() {
            assert_eq!(got, id);
            return (outcome, packets);
        }
        let t = dns
            .poll_transmit()
            .expect("lookup stalled without a packet");
        packets += 1;
        let q = Message::from_vec(&t.data).unwrap();
        let a = zone.answer(&q);
        dns.handle_datagram(SERVER.parse().unwrap(), &a.to_vec().unwrap(), now);
    }
}

fn hops(o: &Outcome) -> Vec<String> {
    match o {
        Outcome::Hops(h) => h
            .iter()
            .map(|h| format!("{}/{}/{}", h.host, h.addr, h.source))
            .collect(),
        other => panic!("expected hops, got {other:?}"),
    }
}

#[test]
fn literal_needs_no_dns() {
    let (o, p) = run(
        Setup::default(),
        &Zone::default(),
        "[192.0.2.1]:2526",
        false,
    );
    assert_eq!(hops(&o), vec!["[192.0.2.1]:2526/192.0.2.1:2526/literal"]);
    assert_eq!(p, 0);
}

#[test]
fn hosts_file_first_needs_no_dns() {
    let s = Setup {
        hosts: "192.0.2.50 mail.isp.dom\n",
        ..Setup::default()
    };
    let (o, p) = run(s, &Zone::default(), "mail.isp.dom", false);
    assert_eq!(hops(&o), vec!["mail.isp.dom/192.0.2.50:25/files"]);
    assert_eq!(p, 0);
}

#[test]
fn files_only_and_unknown_host_defers_without_dns() {
    let s = Setup {
        order: vec![HostSource::Files],
        ..Setup::default()
    };
    let (o, p) = run(s, &Zone::default(), "mail.isp.dom", false);
    assert!(matches!(o, Outcome::Deferred { .. }), "{o:?}");
    assert_eq!(p, 0);
}

#[test]
fn mx_sorted_by_preference() {
    let zone = Zone {
        mx: vec![
            ("dom.example", 20, "b.example"),
            ("dom.example", 10, "a.example"),
        ],
        addrs: vec![("a.example", "192.0.2.10"), ("b.example", "192.0.2.20")],
        ..Zone::default()
    };
    let (o, _) = run(Setup::default(), &zone, "dom.example", false);
    assert_eq!(
        hops(&o),
        vec!["a.example/192.0.2.10:25/dns", "b.example/192.0.2.20:25/dns"]
    );
}

#[test]
fn mx_hosts_from_the_hosts_file() {
    let zone = Zone {
        mx: vec![("dom.example", 10, "a.example")],
        ..Zone::default()
    };
    let s = Setup {
        hosts: "192.0.2.99 a.example\n",
        ..Setup::default()
    };
    let (o, p) = run(s, &zone, "dom.example", false);
    assert_eq!(hops(&o), vec!["a.example/192.0.2.99:25/files"]);
    assert_eq!(p, 1, "only the MX query");
}

#[test]
fn equal_preferences_are_all_kept() {
    let zone = Zone {
        mx: (0..4)
            .map(|i| {
                (
                    "dom.example",
                    10,
                    ["a.example", "b.example", "c.example", "d.example"][i],
                )
            })
            .collect(),
        addrs: vec![
            ("a.example", "192.0.2.1"),
            ("b.example", "192.0.2.2"),
            ("c.example", "192.0.2.3"),
            ("d.example", "192.0.2.4"),
        ],
        ..Zone::default()
    };
    let (o, _) = run(Setup::default(), &zone, "dom.example", false);
    let mut h = hops(&o);
    h.sort();
    assert_eq!(h.len(), 4);
}

#[test]
fn our_own_mx_and_worse_are_dropped() {
    // We are MX 20 (by name): only MX 10 remains.
    let zone = Zone {
        mx: vec![
            ("client.dom", 10, "mail.client.dom"),
            ("client.dom", 20, "mx.ours.example"),
            ("client.dom", 30, "backup.example"),
        ],
        addrs: vec![
            ("mail.client.dom", "192.0.2.10"),
            ("backup.example", "192.0.2.30"),
        ],
        ..Zone::default()
    };
    let (o, _) = run(Setup::default(), &zone, "client.dom", false);
    assert_eq!(hops(&o), vec!["mail.client.dom/192.0.2.10:25/dns"]);
}

#[test]
fn self_by_address_cuts_too() {
    let zone = Zone {
        mx: vec![
            ("client.dom", 10, "primary.example"),
            ("client.dom", 20, "alias-of-us.example"),
        ],
        addrs: vec![
            ("primary.example", "192.0.2.10"),
            ("alias-of-us.example", "192.0.2.25"),
        ],
        ..Zone::default()
    };
    let (o, _) = run(Setup::default(), &zone, "client.dom", false);
    assert_eq!(hops(&o), vec!["primary.example/192.0.2.10:25/dns"]);
}

#[test]
fn primary_mx_is_us_then_the_hosts_own_address() {
    let zone = Zone {
        mx: vec![("client.dom", 10, "mx.ours.example")],
        addrs: vec![("client.dom", "192.0.2.77")],
        ..Zone::default()
    };
    let (o, _) = run(Setup::default(), &zone, "client.dom", false);
    assert_eq!(hops(&o), vec!["client.dom/192.0.2.77:25/dns"]);
}

#[test]
fn loop_back_to_ourselves_is_permanent() {
    let zone = Zone {
        mx: vec![("client.dom", 10, "mx.ours.example")],
        addrs: vec![("client.dom", "192.0.2.25")],
        ..Zone::default()
    };
    let (o, _) = run(Setup::default(), &zone, "client.dom", false);
    assert!(
        matches!(
            o,
            Outcome::Failed {
                status: "5.4.6",
                ..
            }
        ),
        "{o:?}"
    );
}

#[test]
fn no_mx_uses_address_records() {
    let zone = Zone {
        addrs: vec![
            ("host.example", "192.0.2.5"),
            ("host.example", "2001:db8::5"),
        ],
        ..Zone::default()
    };
    let (o, _) = run(Setup::default(), &zone, "host.example", false);
    assert_eq!(
        hops(&o),
        vec![
            "host.example/192.0.2.5:25/dns",
            "host.example/[2001:db8::5]:25/dns"
        ]
    );
}

#[test]
fn no_mx_flag_never_asks_for_mx() {
    let zone = Zone {
        mx: vec![("host.example", 10, "elsewhere.example")],
        addrs: vec![("host.example", "192.0.2.5")],
        ..Zone::default()
    };
    let (o, p) = run(Setup::default(), &zone, "host.example", true);
    assert_eq!(hops(&o), vec!["host.example/192.0.2.5:25/dns"]);
    assert_eq!(p, 2, "A and AAAA only");
}

#[test]
fn null_mx_nxdomain_servfail() {
    let zone = Zone {
        mx: vec![("nomail.example", 0, ".")],
        nx: vec!["gone.example"],
        servfail: vec!["broken.example"],
        ..Zone::default()
    };
    let (o, _) = run(Setup::default(), &zone, "nomail.example", false);
    assert!(
        matches!(
            o,
            Outcome::Failed {
                status: "5.1.10",
                ..
            }
        ),
        "{o:?}"
    );
    let (o, _) = run(Setup::default(), &zone, "gone.example", false);
    assert!(
        matches!(
            o,
            Outcome::Failed {
                status: "5.1.2",
                ..
            }
        ),
        "{o:?}"
    );
    let (o, _) = run(Setup::default(), &zone, "broken.example", false);
    assert!(
        matches!(
            o,
            Outcome::Deferred {
                status: "4.4.3",
                ..
            }
        ),
        "{o:?}"
    );
}

#[test]
fn at_most_five_addresses() {
    let names = ["m0.example", "m1.example", "m2.example", "m3.example"];
    let mut addrs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        addrs.push((
            *name,
            ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"][i],
        ));
        addrs.push((
            *name,
            ["2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8::4"][i],
        ));
    }
    let zone = Zone {
        mx: names
            .iter()
            .enumerate()
            .map(|(i, n)| ("many.example", i as u16, *n))
            .collect(),
        addrs,
        ..Zone::default()
    };
    let (o, _) = run(Setup::default(), &zone, "many.example", false);
    assert_eq!(hops(&o).len(), MAX_ADDRS);
}

#[test]
fn mx_without_any_address_fails() {
    let zone = Zone {
        mx: vec![("dom.example", 10, "void.example")],
        nx: vec!["void.example"],
        ..Zone::default()
    };
    let (o, _) = run(Setup::default(), &zone, "dom.example", false);
    assert!(
        matches!(
            o,
            Outcome::Failed {
                status: "5.4.4",
                ..
            }
        ),
        "{o:?}"
    );
}
