//! Name resolution through the real binary: the zero-DNS guarantee, and `route -R`
//! against a fake DNS server and against dnsmasq.

use hickory_proto::rr::RecordType;

use crate::fakedns::{Entry, FakeDns};
use crate::util::{Client, Daemon, Setup};

const ROUTES: &str = ".client.dom smtp-etrn!mail.client.dom\n\
.lit.example smtp![192.0.2.9]:2526\n\
.viahosts.example smtp!relay.hosts.example\n\
.dns.example smtp!dns.example\n\
.trunc.example smtp!trunc.example\n\
.slow.example smtp!slow.example\n\
.gone.example smtp!gone.example\n\
.broken.example smtp!broken.example\n";

fn setup(dns: &FakeDns, dir_hosts: &str) -> Setup {
    Setup {
        conf: format!(
            "HOSTS_ORDER=files dns\nDNS_SERVERS={}\nHOSTS_FILE={dir_hosts}\nRESOLV_CONF=resolv.conf\n\
             PROTOCOLS=routes smtp\n",
            dns.addr
        ),
        routes: ROUTES.into(),
        ..Setup::default()
    }
}

fn start(dns: &FakeDns) -> Daemon {
    let s = setup(dns, "hosts");
    Daemon::start_with_files(
        s,
        &[
            ("hosts", "192.0.2.60 relay.hosts.example\n"),
            ("resolv.conf", "options timeout:1 attempts:1\n"),
        ],
    )
}

fn table() -> Vec<(&'static str, RecordType, Entry)> {
    vec![
        (
            "dns.example",
            RecordType::MX,
            Entry::Mx(vec![(10, "mx1.dns.example"), (20, "mx2.dns.example")]),
        ),
        (
            "mx1.dns.example",
            RecordType::ANY,
            Entry::Addr(vec!["192.0.2.11"]),
        ),
        (
            "mx2.dns.example",
            RecordType::ANY,
            Entry::Addr(vec!["192.0.2.12"]),
        ),
        (
            "trunc.example",
            RecordType::MX,
            Entry::TruncatedMx(vec![(5, "mx.trunc.example")]),
        ),
        (
            "mx.trunc.example",
            RecordType::ANY,
            Entry::Addr(vec!["192.0.2.13"]),
        ),
        ("slow.example", RecordType::ANY, Entry::Silent),
        ("gone.example", RecordType::ANY, Entry::NxDomain),
        ("broken.example", RecordType::ANY, Entry::ServFail),
    ]
}

#[test]
fn zero_dns_while_starting_accepting_listing_and_delivering_locally_known_hosts() {
    let dns = FakeDns::start(table());
    let sink = crate::sink::Sink::start(crate::sink::Behaviour::default());
    let port = sink.addr.port();
    let s = Setup {
        conf: format!(
            "HOSTS_ORDER=files dns\nDNS_SERVERS={}\nRESOLV_CONF=resolv.conf\n\
             PROTOCOLS=routes smtp\nSMTP_PORT={port}\n",
            dns.addr
        ),
        routes: format!(
            ".client.dom smtp-etrn!mail.client.dom\n.dns.example smtp-etrn!dns.example\n\
             .lit.example smtp![127.0.0.1]:{port}\n.viahosts.example smtp!relay.hosts.example\n"
        ),
        ..Setup::default()
    };
    let d = Daemon::start_with_files(
        s,
        &[
            ("hosts", "127.0.0.1 relay.hosts.example\n"),
            ("resolv.conf", "options timeout:1 attempts:1\n"),
            (
                "scheduler.conf",
                "smtp/unrouted.example queueonly command=smtp\n\
                 smtp-etrn/* queueonly command=smtp\nsmtp*/* command=smtp\n",
            ),
        ],
    );
    let mut c = Client::hello(d.addr());
    // Queue-only routes (one naming a DNS-only host), the smtp protocol fall-back
    // (held), an [ip] route and a hosts-file route (both delivered), a local user.
    for rcpt in [
        "u@client.dom",
        "u@dns.example",
        "u@lit.example",
        "u@viahosts.example",
        "u@unrouted.example",
        "alice@test.example",
    ] {
        c.send_message("s@test.example", &[rcpt], "Subject: z\r\n\r\nz\r\n");
    }
    c.cmd("QUIT", 221);
    let got = sink.wait_for(2, 10);
    let mut rcpts: Vec<String> = got.iter().flat_map(|m| m.rcpts.clone()).collect();
    rcpts.sort();
    assert_eq!(rcpts, vec!["<u@lit.example>", "<u@viahosts.example>"]);
    assert_eq!(d.run(&["mailq"]).0, 0);
    assert_eq!(d.run(&["route", "u@dns.example", "u@gone.example"]).0, 0);
    assert_eq!(d.run(&["-n"]).0, 0);
    let (code, out, _) = d.run(&["route", "-R", "u@lit.example", "u@viahosts.example"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("127.0.0.1:{port} (from literal)")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "relay.hosts.example 127.0.0.1:{port} (from files)"
        )),
        "{out}"
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        dns.count(),
        0,
        "no DNS packet may be sent in any of these cases"
    );
    // The counter does count: a DNS route resolved on request sends queries.
    let (_, out, _) = d.run(&["route", "-R", "u@dns.example"]);
    assert!(
        out.contains("next hop 1: mx1.dns.example MX 10 192.0.2.11"),
        "{out}"
    );
    assert!(dns.count() > 0);
}

#[test]
fn route_r_failures_and_truncation() {
    let dns = FakeDns::start(table());
    let d = start(&dns);
    let (_, out, _) = d.run(&[
        "route",
        "-R",
        "u@gone.example",
        "u@broken.example",
        "u@slow.example",
        "u@trunc.example",
    ]);
    assert!(out.contains("permanent failure 5.1.2"), "{out}");
    assert!(
        out.contains("temporary failure 4.4.3: DNS query for broken.example failed"),
        "{out}"
    );
    assert!(
        out.contains("temporary failure 4.4.3: DNS query for slow.example timed out"),
        "{out}"
    );
    assert!(
        out.contains("mx.trunc.example MX 5 192.0.2.13:25 (from dns)"),
        "{out}"
    );
    assert!(dns.tcp_queries.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

/// dnsmasq on a private loopback port, serving a small zone.
struct Dnsmasq {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Dnsmasq {
    /// `None` (the test skips) where dnsmasq is not installed.
    fn start() -> Option<Dnsmasq> {
        let bin = crate::util::need_tool("dnsmasq", "dnsmasq-base")?;
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(bin)
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--pid-file=",
                "--user=root",
                "--local=/test/",
                &format!("--port={port}"),
                "--mx-host=dm.test,mx1.dm.test,10",
                "--mx-host=dm.test,mx2.dm.test,20",
                "--host-record=mx1.dm.test,192.0.2.21",
                "--host-record=mx2.dm.test,192.0.2.22,2001:db8::22",
                "--mx-host=viacname.test,alias.dm.test,5",
                "--cname=alias.dm.test,mx1.dm.test",
                "--host-record=plain.test,192.0.2.30",
                "--dns-rr=nullmx.test,15,000000",
            ])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Wait until it answers on its port.
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .unwrap();
        let q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05plain\x04test\x00\x00\x01\x00\x01";
        for _ in 0..50 {
            let _ = probe.send_to(q, addr);
            let mut buf = [0u8; 512];
            if probe.recv_from(&mut buf).is_ok() {
                break;
            }
        }
        Some(Dnsmasq { child, addr })
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn route_r_against_dnsmasq() {
    let Some(dm) = Dnsmasq::start() else {
        return;
    };
    let s = Setup {
        conf: format!(
            "HOSTS_ORDER=dns files\nDNS_SERVERS={}\nRESOLV_CONF=resolv.conf\nPROTOCOLS=routes smtp\n",
            dm.addr
        ),
        routes: String::new(),
        ..Setup::default()
    };
    let d = Daemon::start_with_files(s, &[("resolv.conf", "options timeout:1 attempts:2\n")]);
    let (code, out, _) = d.run(&[
        "route",
        "-R",
        "u@dm.test",
        "u@viacname.test",
        "u@plain.test",
        "u@nullmx.test",
        "u@nothing.test",
    ]);
    assert_eq!(code, 0, "{out}");
    let section = |addr: &str| -> String {
        let start = out.find(&format!("{addr}:")).unwrap();
        let rest = &out[start + 1..];
        let end = rest.find("\nu@").map(|i| i + 1).unwrap_or(rest.len());
        out[start..start + 1 + end].to_string()
    };
    let dm_out = section("u@dm.test");
    assert!(
        dm_out.contains("next hop 1: mx1.dm.test MX 10 192.0.2.21:25 (from dns)"),
        "{out}"
    );
    assert!(
        dm_out.contains("next hop 2: mx2.dm.test MX 20 192.0.2.22:25 (from dns)"),
        "{out}"
    );
    assert!(
        dm_out.contains("next hop 3: mx2.dm.test MX 20 [2001:db8::22]:25 (from dns)"),
        "{out}"
    );
    assert!(
        section("u@viacname.test").contains("alias.dm.test MX 5 192.0.2.21:25"),
        "CNAME followed: {out}"
    );
    assert!(
        section("u@plain.test").contains("plain.test 192.0.2.30:25 (from dns)"),
        "{out}"
    );
    assert!(
        section("u@nullmx.test").contains("permanent failure 5.1.10"),
        "{out}"
    );
    assert!(
        section("u@nothing.test").contains("permanent failure 5.1.2"),
        "{out}"
    );
}

/// RFC 5452: an off-path forger must guess the source port and the transaction id.
/// A thousand lookups through the daemon's DNS code (`route -R`, the loop's own
/// sockets) leave from many ports with ids that do not repeat or cluster.
#[test]
fn queries_leave_from_random_ports_with_random_ids() {
    let dns = FakeDns::start(vec![]);
    let d = start(&dns);
    let addrs: Vec<String> = (0..400).map(|i| format!("u@h{i}.rand.example")).collect();
    let mut args = vec!["route", "-R"];
    args.extend(addrs.iter().map(String::as_str));
    let (_, out, err) = d.run(&args);
    assert!(out.contains("h399.rand.example"), "{out}{err}");
    let q = dns.queries.lock().unwrap().clone();
    assert!(q.len() >= 1000, "{} queries", q.len());
    let q = &q[..1000];
    let ports: std::collections::HashSet<u16> = q.iter().map(|x| x.0).collect();
    assert!(ports.len() >= 100, "only {} source ports", ports.len());
    let ids: std::collections::HashSet<u16> = q.iter().map(|x| x.1).collect();
    // 1000 draws from 65,536 values: about 8 collisions expected; 50 would mean a
    // weak generator.
    assert!(ids.len() >= 950, "only {} distinct ids", ids.len());
    // Spread: every sixteenth of the id space gets a share (62.5 expected each).
    let mut bins = [0u32; 16];
    for (_, id) in q {
        bins[usize::from(id >> 12)] += 1;
    }
    assert!(bins.iter().all(|&b| (25..=110).contains(&b)), "{bins:?}");
    // Consecutive ids are not related by a small step (a counter or a weak LCG).
    let small_steps = q
        .windows(2)
        .filter(|w| w[1].1.wrapping_sub(w[0].1) < 64)
        .count();
    assert!(small_steps < 10, "{small_steps} small steps");
}
