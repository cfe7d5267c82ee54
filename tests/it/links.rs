//! Links (DESIGN.md §5.9): a client in its own network namespace, joined to the
//! hub's by a veth pair playing ppp0. While `etrnd link down` is in force — with the
//! veth up, as a demand-dial interface is — the client sends not one packet through
//! it; after `link up` mail flows both ways. And the dial policy: one dial per batch.

use std::process::Command;
use std::time::Duration;

use crate::util::{bin, is_root, Daemon, Setup};

/// Two namespaces joined by a veth pair: `ppp0` (10.201.N.2) in the client's,
/// `hub0` (10.201.N.1) in the hub's. Removed on drop.
struct Net {
    hub: String,
    cl: String,
    n: u32,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Net {
    fn new(n: u32) -> Option<Net> {
        let pid = std::process::id();
        let net = Net {
            hub: format!("etl-hub-{pid}-{n}"),
            cl: format!("etl-cl-{pid}-{n}"),
            n,
        };
        if !ip(&["netns", "add", &net.hub]) || !ip(&["netns", "add", &net.cl]) {
            return None;
        }
        let (a, b) = (format!("etla{pid}{n}"), format!("etlb{pid}{n}"));
        let hub_addr = format!("{}/30", net.hub_ip());
        let cl_addr = format!("{}/30", net.cl_ip());
        let ok = ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])
            && ip(&["link", "set", &a, "netns", &net.hub])
            && ip(&["link", "set", &b, "netns", &net.cl])
            && ip(&["-n", &net.hub, "link", "set", &a, "name", "hub0"])
            && ip(&["-n", &net.cl, "link", "set", &b, "name", "ppp0"])
            && net.no_ipv6()
            && ip(&["-n", &net.hub, "addr", "add", &hub_addr, "dev", "hub0"])
            && ip(&["-n", &net.cl, "addr", "add", &cl_addr, "dev", "ppp0"])
            && ip(&["-n", &net.hub, "link", "set", "lo", "up"])
            && ip(&["-n", &net.cl, "link", "set", "lo", "up"])
            && ip(&["-n", &net.hub, "link", "set", "hub0", "up"])
            && ip(&["-n", &net.cl, "link", "set", "ppp0", "up"]);
        assert!(ok, "cannot set up the veth pair");
        Some(net)
    }

    /// No IPv6 on the pair: the kernel's own router solicitations and DAD would
    /// move the counters.
    fn no_ipv6(&self) -> bool {
        [(&self.hub, "hub0"), (&self.cl, "ppp0")]
            .iter()
            .all(|(ns, dev)| {
                Command::new("ip")
                    .args(["netns", "exec", ns, "sh", "-c"])
                    .arg(format!(
                        "echo 1 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6 2>/dev/null || true"
                    ))
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            })
    }

    fn hub_ip(&self) -> String {
        format!("10.201.{}.1", self.n)
    }

    fn cl_ip(&self) -> String {
        format!("10.201.{}.2", self.n)
    }

    /// Packets the client sent through ppp0 (`ip -s link`).
    fn tx_packets(&self) -> u64 {
        let out = Command::new("ip")
            .args(["-n", &self.cl, "-s", "link", "show", "ppp0"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        while let Some(l) = lines.next() {
            if l.trim_start().starts_with("TX:") {
                let nums: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
                return nums.get(1).and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
            }
        }
        panic!("no TX counters in:\n{text}");
    }

    fn wrap(&self, ns: &str) -> Vec<String> {
        ["ip", "netns", "exec", ns].map(String::from).to_vec()
    }

    /// `etrnd -f CONF ARGS…` inside the client's namespace.
    fn client_cmd(&self, d: &Daemon, args: &[&str], input: Option<&str>) -> (i32, String) {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.cl, bin(), "-f"])
            .arg(d.conf_path())
            .args(args);
        let out = match input {
            Some(i) => crate::util::run_with_input(&mut c, i.as_bytes()),
            None => c.output().unwrap(),
        };
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.hub]);
        ip(&["netns", "del", &self.cl]);
    }
}

/// The namespaces, or `None` (with a line saying why) where `ip netns` cannot run.
fn net(n: u32) -> Option<Net> {
    if !is_root() {
        crate::util::skip("the link namespace test needs root for ip netns");
        return None;
    }
    match Net::new(n) {
        Some(net) => Some(net),
        None => {
            assert!(
                std::env::var_os("ETRND_REQUIRE_TOOLS").is_none(),
                "ip netns is unavailable"
            );
            crate::util::skip("ip netns is unavailable here");
            None
        }
    }
}

const HUB_SCHED: &str = "*/* queueonly expiry=1d\nlocal/* command=local\n\
    smtp*/* command=smtp\nerror/* command=errormail\n";

/// The hub: relays for the client's network (holding it), holds client.dom for
/// ETRN and delivers it to the client's address.
fn hub(net: &Net) -> Daemon {
    let setup = Setup {
        conf: format!(
            "LISTEN={}:2525\nMYNETWORKS=127.0.0.0/8 10.201.{}.0/30\nHOSTNAME=mail.isp.dom\n",
            net.hub_ip(),
            net.n
        ),
        routes: format!(
            "client.dom smtp-etrn![{}]:2525\n. smtp!far.example\n",
            net.cl_ip()
        ),
        localnames: "isp.dom\n".into(),
        ..Setup::default()
    };
    let mut d = Daemon::prepare(setup, &[("scheduler.conf", HUB_SCHED)]);
    d.wrap = net.wrap(&net.hub);
    d.spawn();
    d
}

/// The client: everything not local goes to mail.isp.dom (in the hosts file) behind
/// ppp0; DNS would go to the hub's address, through ppp0 too.
fn client(net: &Net, extra: &str) -> Daemon {
    let setup = Setup {
        conf: format!(
            "LISTEN={}:2525\nHOSTNAME=client.dom\nSMTP_PORT=2525\nHOSTS_ORDER=\"files dns\"\n\
             LINKS=\"ppp0:#smtp ppp0:#smtpx ppp0:mail.isp.dom wan0:@dns.dom\"\n{extra}",
            net.cl_ip()
        ),
        // mx.dns.dom is in no hosts file: only DNS (through ppp0) could find it, and
        // it is behind wan0, which never comes up.
        routes: ". smtp!mail.isp.dom\n.soon.dom smtpx!mail.isp.dom\n.dns.dom smtp!mx.dns.dom\n"
            .into(),
        localnames: "client.dom\n".into(),
        aliases: "alice: root\n".into(),
    };
    // Mail for soon.dom expires (unsent) after two seconds: a bounce. Everything
    // else gets a delay notice after one.
    let sched = "smtpx/* expiry=1s expiry2=1s command=smtp\n\
                 smtp/* expiry=1d interval=1m retries=1 reporttimes=1s\n\
                 error/* command=errormail\nsmtp/* command=smtp\n";
    let mut d = Daemon::prepare(setup, &[("scheduler.conf", sched)]);
    std::fs::write(
        d.dir.0.join("hosts"),
        format!("127.0.0.1 localhost\n{} mail.isp.dom\n", net.hub_ip()),
    )
    .unwrap();
    std::fs::write(
        d.dir.0.join("resolv.conf"),
        format!("nameserver {}\n", net.hub_ip()),
    )
    .unwrap();
    d.wrap = net.wrap(&net.cl);
    d.spawn();
    d
}

fn mailbox(d: &Daemon, user: &str) -> String {
    let dir = d.dir.0.join("mail").join(user).join("new");
    crate::util::list(&dir)
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect()
}

#[test]
fn a_down_link_sends_no_packet_and_mail_flows_when_it_comes_up() {
    let Some(net) = net(1) else { return };
    let hub = hub(&net);
    // Mail for the client waits at the hub.
    let (code, err) = hub.sendmail(&["root@client.dom"], "Subject: inbound\r\n\r\nfor you\r\n");
    assert_eq!(code, 0, "{err}");
    hub.wait_until("the hub to hold it", 20, || hub.queue_files().len() == 1);
    let before = net.tx_packets();
    assert_eq!(before, 0, "nothing has run in the client's namespace yet");

    let cl = client(&net, "LINK_UP=\"etrn mail.isp.dom client.dom\"\n");
    // Local mail, outbound mail, a bounce (expiry, to a remote sender), a delay
    // notice (to the local sender of the outbound mail).
    let (code, err) = cl.sendmail(&["alice@client.dom"], "Subject: local\r\n\r\nhi\r\n");
    assert_eq!(code, 0, "{err}");
    let (code, err) = cl.sendmail(&["dest@far.example"], "Subject: out\r\n\r\nout\r\n");
    assert_eq!(code, 0, "{err}");
    let (code, err) = cl.sendmail(&["x@dns.dom"], "Subject: needs dns\r\n\r\nq\r\n");
    assert_eq!(code, 0, "{err}");
    let (code, err) = cl.sendmail(
        &["-f", "sender@far.example", "x@soon.dom"],
        "Subject: doomed\r\n\r\nno\r\n",
    );
    assert_eq!(code, 0, "{err}");
    cl.wait_until("local delivery", 20, || {
        mailbox(&cl, "root").contains("Subject: local")
    });
    cl.wait_until("the bounce and a delay notice", 20, || {
        cl.queued_text()
            .contains("Undelivered Mail Returned to Sender")
            && mailbox(&cl, "root").contains("Action: delayed")
    });
    let (code, q) = net.client_cmd(&cl, &["mailq"], None);
    assert_eq!(code, 0, "{q}");
    assert!(q.contains("held: link ppp0 down"), "{q}");
    let (_, r) = net.client_cmd(&cl, &["route", "-R", "dest@far.example"], None);
    assert!(r.contains("link: ppp0, down"), "{r}");
    assert!(!r.contains("next hop 1"), "{r}");
    let (_, r) = net.client_cmd(&cl, &["route", "-R", "x@dns.dom"], None);
    assert!(
        r.contains(", down: a delivery waits") && !r.contains("next hop"),
        "{r}"
    );
    let (code, out) = net.client_cmd(&cl, &["etrn", "mail.isp.dom", "client.dom"], None);
    assert_eq!(code, 75, "{out}");
    std::thread::sleep(Duration::from_secs(2));
    let sent_down = net.tx_packets();
    assert_eq!(
        sent_down,
        0,
        "packets through ppp0 while the link was down\n{}",
        cl.log()
    );
    assert!(!cl.log().contains("smtp connected"), "{}", cl.log());

    // Up: the held mail goes first, then the ETRN brings the inbound mail.
    let (code, out) = net.client_cmd(&cl, &["link", "up", "ppp0"], None);
    assert_eq!(code, 0, "{out}");
    hub.wait_until("outbound mail at the hub", 30, || {
        let q = hub.queued_text();
        q.contains("Subject: out") && q.contains("Subject: doomed") && q.contains("Action: failed")
    });
    cl.wait_until("inbound mail from the hub", 30, || {
        mailbox(&cl, "root").contains("Subject: inbound")
    });
    cl.wait_until("the action's outcome", 20, || {
        cl.log().contains("link action-done name=ppp0 reply=\"250")
    });
    let sent_up = net.tx_packets();
    assert!(sent_up > 0);
    // Still behind wan0: never looked up, even with ppp0 (the only route) up.
    assert!(
        !cl.log().contains("smtp!mx.dns.dom sched job-start"),
        "{}",
        cl.log()
    );
    let (_, q) = net.client_cmd(&cl, &["mailq"], None);
    let line = q
        .lines()
        .find(|l| l.contains("x@dns.dom"))
        .unwrap_or_default();
    assert!(line.contains("held: link wan0 down"), "{q}");
    eprintln!("links: packets through ppp0 while down: {sent_down}; after link up: {sent_up}");
    let (_, status) = net.client_cmd(&cl, &["link", "status"], None);
    assert!(status.contains("ppp0 up"), "{status}");

    // The line fails (veth down) while the daemon is told the link is up: the
    // connection fails locally, no retry counter moves, nothing is lost.
    let (code, _) = net.client_cmd(&cl, &["link", "down", "ppp0"], None);
    assert_eq!(code, 0);
    let (code, err) = cl.sendmail(&["late@far.example"], "Subject: late\r\n\r\nlate\r\n");
    assert_eq!(code, 0, "{err}");
    cl.wait_until("it to be queued", 20, || {
        cl.queued_text().contains("Subject: late")
    });
    assert!(ip(&["-n", &net.cl, "link", "set", "ppp0", "down"]));
    let (code, _) = net.client_cmd(&cl, &["link", "up", "ppp0"], None);
    assert_eq!(code, 0);
    cl.wait_until("the local failure", 20, || {
        cl.log().contains("(local network down)")
    });
    let (_, q) = net.client_cmd(&cl, &["mailq"], None);
    let line = q
        .lines()
        .find(|l| l.contains("late@far.example"))
        .unwrap_or_default();
    assert!(line.contains("queued") && !line.contains("attempt"), "{q}");
    let late = cl
        .queue_files()
        .into_iter()
        .find(|f| {
            std::fs::read_to_string(cl.queue_file(f))
                .unwrap_or_default()
                .contains("Subject: late")
        })
        .expect("the late message is queued");
    let journal = std::fs::read_to_string(cl.spool().join("state").join(&late)).unwrap_or_default();
    assert!(!journal.contains("A "), "no deferral journalled: {journal}");
    assert!(ip(&["-n", &net.cl, "link", "set", "ppp0", "up"]));
    let (code, _) = net.client_cmd(&cl, &["link", "down", "ppp0"], None);
    assert_eq!(code, 0);
    let (code, _) = net.client_cmd(&cl, &["link", "up", "ppp0"], None);
    assert_eq!(code, 0);
    hub.wait_until("the late mail at the hub", 30, || {
        hub.queued_text().contains("Subject: late")
    });
}

pub(crate) type Counts = std::sync::Arc<std::sync::Mutex<(u32, u32)>>;
type Times = std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>;

/// A sink that counts connections and messages: (connections, messages).
pub(crate) fn sink() -> (std::net::SocketAddr, Counts) {
    let (a, c, _) = timed_sink();
    (a, c)
}

/// The same, with when each message's dot came.
fn timed_sink() -> (std::net::SocketAddr, Counts, Times) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let counts = std::sync::Arc::new(std::sync::Mutex::new((0u32, 0u32)));
    let times: Times = Default::default();
    let t2 = times.clone();
    let c2 = counts.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            c2.lock().unwrap().0 += 1;
            let c3 = c2.clone();
            let t3 = t2.clone();
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let _ = w.write_all(b"220 sink\r\n");
                let mut line = String::new();
                let mut data = false;
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    let l = line.trim_end().to_ascii_uppercase();
                    let reply: &[u8] = if data {
                        if l == "." {
                            data = false;
                            c3.lock().unwrap().1 += 1;
                            t3.lock().unwrap().push(std::time::Instant::now());
                            b"250 ok\r\n"
                        } else {
                            b""
                        }
                    } else if l.starts_with("EHLO") {
                        b"250-sink\r\n250 PIPELINING\r\n"
                    } else if l == "DATA" {
                        data = true;
                        b"354 go\r\n"
                    } else if l == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = w.write_all(reply);
                    line.clear();
                }
            });
        }
    });
    (addr, counts, times)
}

#[test]
fn link_pace_spreads_a_batch_over_the_seconds() {
    let (addr, counts, times) = timed_sink();
    let setup = Setup {
        conf: "LINKS=\"default:#smtp\"\nLINK_PACE=\"conns=1 msgs=4\"\n".into(),
        routes: format!(". smtp![{}]:{}\n", addr.ip(), addr.port()),
        ..Setup::default()
    };
    let sched = "smtp/* expiry=1d interval=1m retries=1\nsmtp/* command=smtp\n";
    let d = Daemon::start_with_files(setup, &[("scheduler.conf", sched)]);
    for i in 0..12 {
        let (code, err) = d.sendmail(&["x@far.example"], &format!("Subject: {i}\r\n\r\nm\r\n"));
        assert_eq!(code, 0, "{err}");
    }
    d.wait_until("12 held", 30, || d.queue_files().len() == 12);
    let (code, out, _) = d.run(&["link", "up"]);
    assert_eq!(code, 0, "{out}");
    d.wait_until("the batch delivered", 30, || counts.lock().unwrap().1 == 12);
    let t = times.lock().unwrap();
    // At most 4 messages start in any second of the clock, so 12 occupy three of
    // them: the last starts more than a whole second after the first (which may
    // itself start at the very end of its second).
    let spread = t[11].duration_since(t[0]);
    assert!(
        spread >= Duration::from_millis(950),
        "12 messages in {spread:?}"
    );
    assert_eq!(counts.lock().unwrap().0, 1, "one connection");
    eprintln!("links: 12 messages at msgs=4 took {spread:?}");
}

#[test]
fn dial_policy_dials_once_per_batch() {
    let (addr, counts) = sink();
    let dir = crate::util::TempDir::new("dial");
    let marker = dir.0.join("dials");
    let script = dir.0.join("dial.sh");
    let setup = Setup {
        conf: format!(
            "LINKS=\"default:#smtp\"\nLINK_DIAL=\"{}\"\nLINK_DIAL_WHEN=\"count=20\"\n\
             LINK_PACE=\"conns=2 msgs=0\"\n",
            script.display()
        ),
        routes: format!(". smtp![{}]:{}\n", addr.ip(), addr.port()),
        ..Setup::default()
    };
    let sched = "smtp/* expiry=1d interval=1m retries=1\nsmtp/* command=smtp\n";
    let mut d = Daemon::prepare(setup, &[("scheduler.conf", sched)]);
    // The dial "brings the line up" by telling the daemon, as ppp's ip-up would.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$ETRND_LINK\" >> {}\nexec {} -f {} link up \"$ETRND_LINK\"\n",
            marker.display(),
            bin(),
            d.conf_path().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    if is_root() {
        // The daemon runs as its own user: it must reach the script and the marker.
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    d.spawn();
    for i in 0..19 {
        let (code, err) = d.sendmail(&["x@far.example"], &format!("Subject: {i}\r\n\r\nm\r\n"));
        assert_eq!(code, 0, "{err}");
    }
    d.wait_until("19 queued", 30, || d.queue_files().len() == 19);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!marker.exists(), "a dial for 19 messages\n{}", d.log());
    assert_eq!(*counts.lock().unwrap(), (0, 0));
    let (code, err) = d.sendmail(&["x@far.example"], "Subject: 19\r\n\r\nm\r\n");
    assert_eq!(code, 0, "{err}");
    d.wait_until("the batch delivered", 30, || counts.lock().unwrap().1 == 20);
    d.wait_until("queue empty", 10, || d.queue_files().is_empty());
    let dials = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(dials, "default\n", "one dial");
    assert_eq!(
        counts.lock().unwrap().0,
        1,
        "the batch went in one connection"
    );
    assert!(
        d.log().contains("link dial name=default reason=count=20"),
        "{}",
        d.log()
    );
}

/// The hub side: delay notices for held mail (RFC 3464, read by Python's email
/// package), none for the null sender, and `etrnd clients` before and after ETRN.
#[test]
fn hub_delay_notices_parse_and_clients_show_the_last_release() {
    let Some(python) = crate::util::need_tool("python3", "python3") else {
        return;
    };
    let (sink, counts) = sink();
    let setup = Setup {
        routes: format!(".client.dom smtp-etrn![{}]:{}\n", sink.ip(), sink.port()),
        ..Setup::default()
    };
    let sched = "smtp-etrn/* queueonly expiry=1d reporttimes=1s command=smtp\n\
                 local/* command=local\n";
    let d = Daemon::start_with_files(setup, &[("scheduler.conf", sched)]);
    let mut c = crate::util::Client::hello(d.addr());
    for (from, n) in [("alice@test.example", 2), ("", 1)] {
        for i in 0..n {
            c.send_message(
                from,
                &["u@mail.client.dom"],
                &format!("Subject: held {i} from <{from}>\r\n\r\nbody\r\n"),
            );
        }
    }
    d.wait_until("the delay notices", 20, || {
        mailbox(&d, "root").matches("Action: delayed").count() == 2
    });
    d.wait_until("the null sender skipped", 10, || {
        d.log()
            .contains("delay not sent: the null sender gets no notices")
    });
    let notice = mailbox(&d, "root");
    let first = &notice[..notice[1..]
        .find("Return-Path")
        .map_or(notice.len(), |i| i + 1)];
    let check = r#"
import email, email.utils, sys
m = email.message_from_string(sys.stdin.read())
assert m.get_content_type() == "multipart/report", m.get_content_type()
assert m.get_param("report-type") == "delivery-status"
assert m["Subject"].startswith("Delayed Mail"), m["Subject"]
parts = [p for p in m.walk() if p.get_content_type() == "message/delivery-status"]
assert len(parts) == 1
groups = parts[0].get_payload()
assert groups[0]["Reporting-MTA"].startswith("dns;")
r = groups[1]
assert r["Action"] == "delayed", r["Action"]
assert r["Status"].startswith("4."), r["Status"]
assert r["Final-Recipient"] == "rfc822; u@mail.client.dom", r["Final-Recipient"]
until = email.utils.parsedate_to_datetime(r["Will-Retry-Until"])
arrival = email.utils.parsedate_to_datetime(groups[0]["Arrival-Date"])
# Never tried: bounced at expiry + expiry2 (1 day each).
assert 172000 < (until - arrival).total_seconds() <= 172801, (until, arrival)
print("ok")
"#;
    let out =
        crate::util::run_with_input(Command::new(python).args(["-c", check]), first.as_bytes());
    assert!(
        out.status.success(),
        "{}{}\n{first}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, before, _) = d.run(&["clients"]);
    assert_eq!(code, 0, "{before}");
    let key = format!("smtp-etrn![{}]:{}", sink.ip(), sink.port());
    let row = before
        .lines()
        .find(|l| l.starts_with(&key))
        .unwrap_or_default()
        .to_string();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols.get(1), Some(&"3"), "three held:\n{before}");
    assert!(row.ends_with(" -"), "no request yet:\n{before}");
    c.cmd("ETRN client.dom", 253);
    d.wait_until("the release", 20, || counts.lock().unwrap().1 == 3);
    d.wait_until("the notes written", 20, || {
        let (_, after, _) = d.run(&["clients"]);
        after.contains("etrn from 127.0.0.1 -> 253")
    });
    let (_, after, _) = d.run(&["clients"]);
    let row = after
        .lines()
        .find(|l| l.starts_with(&key))
        .unwrap_or_default();
    let cols: Vec<&str> = row.split_whitespace().collect();
    // Nothing held now (no oldest, no expiry), but the release and the request show.
    assert_eq!(&cols[1..5], ["0", "0", "-", "-"], "{after}");
    assert_ne!(cols[5], "-", "the last release:\n{after}");
}

/// A daemon whose link `default` dials with `dial` (and `extra` settings) for the
/// first message it holds, once the dial has failed.
fn failed_dial(dial: &str, extra: &str) -> Daemon {
    let setup = Setup {
        conf: format!(
            "LINKS=\"default:#smtp\"\nLINK_DIAL=\"{dial}\"\nLINK_DIAL_WHEN=\"count=1\"\n{extra}"
        ),
        routes: ". smtp![127.0.0.1]:9\n".into(),
        ..Setup::default()
    };
    let sched = "smtp/* expiry=1d interval=1m retries=1\nsmtp/* command=smtp\n";
    let d = Daemon::start_with_files(setup, &[("scheduler.conf", sched)]);
    let (code, err) = d.sendmail(&["x@far.example"], "Subject: 1\r\n\r\nm\r\n");
    assert_eq!(code, 0, "{err}");
    d.wait_until("the failed dial", 20, || {
        d.log().contains("link dial-failed name=default")
    });
    d
}

#[test]
fn a_failed_dial_backs_off_and_mail_waits() {
    let d = failed_dial("/bin/false", "");
    assert!(d.log().contains("retry-in=60"), "{}", d.log());
    // More mail during the back-off: no second dial, nothing sent, nothing lost.
    let (code, err) = d.sendmail(&["x@far.example"], "Subject: 2\r\n\r\nm\r\n");
    assert_eq!(code, 0, "{err}");
    d.wait_until("both queued", 20, || d.queue_files().len() == 2);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        d.log().matches("link dial name=default").count(),
        1,
        "{}",
        d.log()
    );
    assert!(!d.log().contains("smtp connect-failed"), "{}", d.log());
    let (code, status, _) = d.run(&["link", "status"]);
    assert_eq!(code, 0);
    assert!(
        status.contains("default down") && status.contains("held=2 ") && status.contains("dials=1"),
        "{status}"
    );
}

/// A dial command that ignores SIGTERM after its dial failed is killed, with its
/// children, a few seconds later: stuck dials never pile up.
#[test]
fn a_dial_command_that_ignores_sigterm_is_killed() {
    let base = std::env::temp_dir().join(format!("etrnd-dial-{}", std::process::id()));
    let (script, pidfile) = (base.with_extension("sh"), base.with_extension("pid"));
    let childfile = base.with_extension("child");
    let _ = std::fs::remove_file(&pidfile);
    let _ = std::fs::remove_file(&childfile);
    // The command and a child of its (which inherits the ignored SIGTERM).
    std::fs::write(
        &script,
        format!(
            "trap '' TERM\nsleep 1000 &\necho $! > {}\necho $$ > {}\nwhile :; do sleep 1; done\n",
            childfile.display(),
            pidfile.display()
        ),
    )
    .unwrap();
    let d = failed_dial(
        &format!("/bin/sh {}", script.display()),
        "LINK_DIAL_TIMEOUT=1\n",
    );
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    let alive = |pid: &str| std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(
        alive(&pid),
        "the dial command ignored SIGTERM and still runs"
    );
    let child = std::fs::read_to_string(&childfile)
        .unwrap()
        .trim()
        .to_string();
    assert!(alive(&child), "the command's child runs");
    d.wait_until("the kill", 30, || d.log().contains("link dial-killed"));
    d.wait_until("the command gone", 10, || !alive(&pid));
    d.wait_until("the command's child gone", 10, || !alive(&child));
    for f in [&script, &pidfile, &childfile] {
        let _ = std::fs::remove_file(f);
    }
}

/// A local user may ask `link status` but cannot bring a link up (and so make the
/// host dial, or send held mail) or take it down.
#[test]
fn a_local_user_cannot_move_a_link() {
    if !is_root() {
        crate::util::skip("needs root to run as another user");
        return;
    }
    let setup = Setup {
        conf: "LINKS=\"ppp0:#smtp\"\n".into(),
        routes: ". smtp![127.0.0.1]:9\n".into(),
        ..Setup::default()
    };
    let sched = "smtp/* expiry=1d\nsmtp/* command=smtp\n";
    let d = Daemon::start_with_files(setup, &[("scheduler.conf", sched)]);
    let (code, err) = d.sendmail(&["x@far.example"], "Subject: held\r\n\r\nm\r\n");
    assert_eq!(code, 0, "{err}");
    d.wait_until("it queued", 20, || d.queue_files().len() == 1);
    crate::util::system_account("etrnd-link-user", "/bin/sh");
    let as_user = |args: &[&str]| {
        let out = Command::new("runuser")
            .args(["-u", "etrnd-link-user", "--", bin(), "-f"])
            .arg(d.conf_path())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for op in ["up", "down"] {
        let (code, out) = as_user(&["link", op, "ppp0"]);
        assert_eq!(code, Some(77), "link {op}: {out}");
        assert!(out.contains("5.7.1"), "{out}");
    }
    let (code, out) = as_user(&["link", "status"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ppp0 down"), "{out}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!d.log().contains("link up name=ppp0"), "{}", d.log());
    assert!(
        !d.log().contains("smtp connect-failed"),
        "nothing was sent: {}",
        d.log()
    );
    assert_eq!(d.queue_files().len(), 1);
}
