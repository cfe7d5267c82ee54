//! The seed's whole story, end to end: an ISP hub and a dial-up client (two etrnd
//! instances on 127.0.0.2 and 127.0.0.3) configured from the shipped `etc/` samples,
//! a private hosts file, and a DNS server that counts packets and must see none.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fakedns::FakeDns;
use crate::sink::{Behaviour, Sink};
use crate::util::{bin, Client, Daemon, Setup};

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind(format!("{ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn shipped(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

fn wait(what: &str, secs: u64, logs: &[&Daemon], f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() > deadline {
            for d in logs {
                eprintln!("--- log ---\n{}", d.log());
            }
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct World {
    hub: Daemon,
    client: Option<Daemon>,
    sink: Sink,
    dns: FakeDns,
    hub_port: u16,
}

/// Hub and client as shipped, pointed at each other through hosts files.
fn world(start_client: bool, hub_sched: Option<&str>) -> World {
    let dns = FakeDns::start(Vec::new());
    let sink = Sink::start(Behaviour::default());
    let (hub_port, client_port) = (free_port("127.0.0.2"), free_port("127.0.0.3"));
    let common = |me: &str, port: u16, peer_port: u16| {
        format!(
            "LISTEN={me}:{port}\nSMTP_PORT={peer_port}\nHOSTS_ORDER=files dns\nDNS_SERVERS={}\n\
             RESOLV_CONF=resolv.conf\nGREET_PAUSE=0\n",
            dns.addr
        )
    };
    let hub_setup = Setup {
        conf: format!(
            "{}HOSTNAME=smtp-etrn.isp.dom\nMYNETWORKS=127.0.0.3/32\n",
            common("127.0.0.2", hub_port, client_port)
        ),
        routes: format!(
            "{}\n.far.example smtp![127.0.0.1]:{}\n",
            shipped("etc/hub/db/routes"),
            sink.addr.port()
        ),
        localnames: shipped("etc/hub/db/localnames"),
        aliases: shipped("etc/hub/db/aliases"),
    };
    let hub_sched_text = hub_sched
        .map(str::to_string)
        .unwrap_or_else(|| shipped("etc/hub/scheduler.conf"));
    let hub = Daemon::start_with_files(
        hub_setup,
        &[
            ("scheduler.conf", &hub_sched_text),
            ("hosts", "127.0.0.3 mail.client.dom\n"),
            ("resolv.conf", "options timeout:1 attempts:1\n"),
        ],
    );
    let client = start_client.then(|| client_daemon(&dns, client_port, hub_port));
    World {
        hub,
        client,
        sink,
        dns,
        hub_port,
    }
}

fn client_daemon(dns: &FakeDns, client_port: u16, hub_port: u16) -> Daemon {
    let setup = Setup {
        conf: format!(
            "LISTEN=127.0.0.3:{client_port}\nSMTP_PORT={hub_port}\nHOSTS_ORDER=files dns\n\
             DNS_SERVERS={}\nRESOLV_CONF=resolv.conf\nGREET_PAUSE=0\nHOSTNAME=mail.client.dom\n\
             MYNETWORKS=127.0.0.1/32\nETRN_ALLOW=127.0.0.0/8\n",
            dns.addr
        ),
        // The shipped relay is the ISP's submission port; this hub listens elsewhere.
        routes: shipped("etc/client/db/routes").replace(":587", &format!(":{hub_port}")),
        localnames: shipped("etc/client/db/localnames"),
        aliases: format!("{}user: root\n", shipped("etc/client/db/aliases")),
    };
    Daemon::start_with_files(
        setup,
        &[
            ("scheduler.conf", &shipped("etc/client/scheduler.conf")),
            ("hosts", "127.0.0.2 mail.isp.dom\n"),
            ("resolv.conf", "options timeout:1 attempts:1\n"),
        ],
    )
}

fn etrnd(d: &Daemon, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin())
        .arg("-f")
        .arg(d.conf_path())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_seed_story_end_to_end_without_dns() {
    let w = world(true, None);
    let client = w.client.as_ref().unwrap();
    // The Internet sends mail for user@client.dom to the hub: it waits there.
    let mut c = Client::hello(w.hub.addr());
    c.send_message(
        "friend@far.example",
        &["user@client.dom"],
        "Subject: inbound\r\n\r\nfor the client\r\n",
    );
    // The client's user writes to the world: it waits at the client.
    let mut c = Client::hello(client.addr());
    c.send_message(
        "user@client.dom",
        &["friend@far.example"],
        "Subject: outbound\r\n\r\nfrom the client\r\n",
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(w.hub.queue_files().len(), 1);
    assert_eq!(client.queue_files().len(), 1);
    assert!(
        !w.hub.log().contains("smtp connected"),
        "the hub made no delivery attempt"
    );
    assert!(
        !client.log().contains("smtp connected"),
        "the client made no delivery attempt"
    );
    assert!(
        !client.log().contains("127.0.0.2:"),
        "nothing reached the client"
    );

    // Link up: the ip-up hook's two lines.
    let (code, out) = etrnd(client, &["flush", "mail.isp.dom"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("253 2.0.0 OK, 1 pending messages for node mail.isp.dom"),
        "{out}"
    );
    let (code, out) = etrnd(client, &["etrn", "mail.isp.dom", "client.dom"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("client.dom: 253 2.0.0 OK, 1 pending messages for node client.dom started"),
        "{out}"
    );

    // The outbound mail reaches its destination through the hub…
    let got = w.sink.wait_for(1, 10);
    assert_eq!(got[0].rcpts, vec!["<friend@far.example>"]);
    assert!(got[0].data.contains("Subject: outbound"));
    // …and the inbound mail reaches the client's local mailbox.
    let new = client.dir.0.join("mail/root/new");
    wait(
        "local delivery at the client",
        10,
        &[&w.hub, client],
        || crate::util::list(&new).len() == 1,
    );
    let msg = std::fs::read_to_string(new.join(&crate::util::list(&new)[0])).unwrap();
    assert!(
        msg.contains("Subject: inbound") && msg.contains("for the client"),
        "{msg}"
    );
    wait("queues to empty", 10, &[&w.hub, client], || {
        w.hub.queue_files().is_empty() && client.queue_files().is_empty()
    });
    // The hub delivered to the routed host (the client's server), not to whoever asked.
    assert!(
        w.hub.log().contains("relay=mail.client.dom[127.0.0.3]"),
        "{}",
        w.hub.log()
    );
    assert_eq!(w.dns.count(), 0, "not one DNS packet in the whole story");
}

#[test]
fn etrn_while_the_client_is_down_leaves_mail_held() {
    let w = world(false, None);
    let mut c = Client::hello(w.hub.addr());
    c.send_message(
        "friend@far.example",
        &["user@client.dom"],
        "Subject: x\r\n\r\nx\r\n",
    );
    let (code, out) = etrnd(
        &w.hub,
        &[
            "etrn",
            "-p",
            &w.hub_port.to_string(),
            "127.0.0.2",
            "mail.client.dom",
        ],
    );
    assert_eq!(code, 0, "{out}");
    wait("the failed attempt", 10, &[&w.hub], || {
        w.hub.log().contains("status=deferred")
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        w.hub.log().matches("connect-failed").count(),
        1,
        "held again: no retry by timer"
    );
    let (_, q) = etrnd(&w.hub, &["mailq"]);
    assert!(q.contains("held, 1 attempt(s)"), "{q}");
    // An ETRN again at once is told to wait: no second attempt, no journal record
    // (a flood of ETRNs cannot make the hub hammer a dead host and grow journals).
    let port = w.hub_port.to_string();
    let (code, out) = etrnd(
        &w.hub,
        &["etrn", "-p", &port, "127.0.0.2", "mail.client.dom"],
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("458") && out.contains("the last attempt failed"),
        "{out}"
    );
    let (_, q) = etrnd(&w.hub, &["mailq"]);
    assert!(q.contains("held, 1 attempt(s)"), "{q}");
    // Root's flush is not held back.
    let (code, out) = etrnd(&w.hub, &["flush", "mail.client.dom"]);
    assert_eq!(code, 0, "{out}");
    wait("the second attempt", 10, &[&w.hub], || {
        w.hub.log().matches("connect-failed").count() == 2
    });
    assert_eq!(w.dns.count(), 0);
}

#[test]
fn never_flushed_mail_expires_and_bounces() {
    let sched = "*/* interval=1h expiry=2s expiry2=1s\n\
                 smtp-etrn/* queueonly command=\"smtp -c $channel\"\nsmtp*/* command=smtp\n";
    let w = world(false, Some(sched));
    let mut c = Client::hello(w.hub.addr());
    c.send_message(
        "friend@far.example",
        &["user@client.dom"],
        "Subject: never fetched\r\n\r\nx\r\n",
    );
    let got = w.sink.wait_for(1, 15);
    assert_eq!(got[0].from, "<>");
    assert!(got[0].data.contains("Status: 5.4.7"), "{}", got[0].data);
    assert!(got[0].data.contains("never released"), "{}", got[0].data);
}

#[test]
fn twenty_clients_flushing_at_once_respect_maxring() {
    let slow = Sink::start(Behaviour {
        delay: Duration::from_millis(300),
        ..Behaviour::default()
    });
    let port = slow.addr.port();
    let mut routes = String::new();
    let mut hosts = String::new();
    for i in 0..20 {
        routes.push_str(&format!(".c{i}.dom smtp-etrn!mail.c{i}.dom\n"));
        hosts.push_str(&format!("127.0.0.1 mail.c{i}.dom\n"));
    }
    let setup = Setup {
        conf: format!("SMTP_PORT={port}\nMAX_CONNECTIONS_PER_IP=50\n"),
        routes,
        ..Setup::default()
    };
    let sched =
        "*/* interval=1h expiry=1d\nsmtp-etrn/* maxring=5 maxchannel=199 queueonly command=smtp\n";
    let hub = Daemon::start_with_files(setup, &[("scheduler.conf", sched), ("hosts", &hosts)]);
    let mut c = Client::hello(hub.addr());
    for i in 0..20 {
        c.send_message(
            "s@test.example",
            &[&format!("u@c{i}.dom")],
            "Subject: held\r\n\r\nx\r\n",
        );
    }
    let addr = hub.addr();
    let handles: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::hello(addr);
                c.cmd(&format!("ETRN c{i}.dom"), 253)
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let got = slow.wait_for(20, 20);
    assert_eq!(got.len(), 20);
    let max = slow.max_active.load(std::sync::atomic::Ordering::SeqCst);
    assert!(max <= 5, "maxring=5 but {max} deliveries ran at once");
    assert!(max >= 2, "the flushes did run in parallel ({max})");
}

#[test]
fn etrn_rate_limit_across_sessions_for_outside_clients() {
    let d = Daemon::start_with(Setup::with_conf("MYNETWORKS=10.0.0.0/8\n"));
    let mut codes = Vec::new();
    for _ in 0..2 {
        let mut c = Client::hello(d.addr());
        for _ in 0..6 {
            c.send("ETRN client.dom");
            codes.push(c.reply().unwrap().0);
        }
    }
    assert_eq!(codes.iter().filter(|&&c| c == 251).count(), 10, "{codes:?}");
    assert_eq!(&codes[10..], &[458, 458], "{codes:?}");
}

#[test]
fn msmtp_and_fetchmail_trigger_the_hub() {
    let (Some(msmtp), Some(fetchmail)) = (
        crate::util::need_tool("msmtp", "msmtp"),
        crate::util::need_tool("fetchmail", "fetchmail"),
    ) else {
        return;
    };
    let sink = Sink::start(Behaviour::default());
    let setup = Setup {
        routes: format!(".client.dom smtp-etrn![127.0.0.1]:{}\n", sink.addr.port()),
        ..Setup::default()
    };
    let sched = "*/* interval=1h expiry=1d\nsmtp-etrn/* queueonly command=smtp\n";
    let hub = Daemon::start_with_files(setup, &[("scheduler.conf", sched)]);
    let port = hub.addr().port().to_string();
    let mut c = Client::hello(hub.addr());
    c.send_message(
        "s@test.example",
        &["u@client.dom"],
        "Subject: one\r\n\r\nx\r\n",
    );
    // msmtp's Remote Message Queue Starting (RFC 1985).
    let out = Command::new(&msmtp)
        .args([
            "--host=127.0.0.1",
            &format!("--port={port}"),
            "--rmqs=client.dom",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sink.wait_for(1, 10).len(), 1);
    let out = Command::new(&msmtp)
        .args([
            "--host=127.0.0.1",
            &format!("--port={port}"),
            "--rmqs=nothere.example",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(69),
        "msmtp maps our 459 to EX_UNAVAILABLE"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("459"));
    // fetchmail in ETRN mode.
    c.send_message(
        "s@test.example",
        &["v@client.dom"],
        "Subject: two\r\n\r\nx\r\n",
    );
    let fetch = |domain: &str| {
        Command::new(&fetchmail)
            .args([
                "-f",
                "/dev/null",
                "--nosyslog",
                "-v",
                "--protocol",
                "ETRN",
                "--service",
                &port,
            ])
            .args(["--fetchdomains", domain, "127.0.0.1"])
            .env("HOME", &hub.dir.0)
            .output()
            .unwrap()
    };
    let out = fetch("client.dom");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ETRN< 253"), "{text}");
    assert_eq!(sink.wait_for(2, 10).len(), 2);
    let out = fetch("client.dom");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("No messages waiting for client.dom"),
        "fetchmail reads our 251: {text}"
    );
}
