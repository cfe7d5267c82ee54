//! The hold store (DESIGN.md §5.10): held mail waits in `hold/`, found through a
//! per-destination index; the daemon keeps only a summary, loads what a release
//! names (verifying it then), rebuilds the index when it cannot trust it, and loses
//! nothing to a kill -9 during a release or a rebuild.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::sink::{Behaviour, Sink};
use crate::util::{list, Client, Daemon, Setup};

const SCHED: &str = "*/* interval=1s retries=\"1\" expiry=1d\n\
                     smtp-etrn/* queueonly command=smtp\nsmtp*/* command=smtp\n";

/// A hub holding client.dom and other.dom (one destination: the sink) and
/// delivering sink.example (bounces go there) at once.
fn hub(sink: &Sink, sched: &str) -> Daemon {
    let port = sink.addr.port();
    let setup = Setup {
        routes: format!(
            ".client.dom smtp-etrn![127.0.0.1]:{port}\n.other.dom smtp-etrn![127.0.0.1]:{port}\n\
             .sink.example smtp![127.0.0.1]:{port}\n"
        ),
        ..Setup::default()
    };
    Daemon::start_with_files(setup, &[("scheduler.conf", sched)])
}

/// Sends `n` messages to `to`, subjects `tag0`…, over one session.
fn send(d: &Daemon, to: &str, tag: &str, n: usize) {
    let mut c = Client::hello(d.addr());
    for i in 0..n {
        c.send_message(
            "s@sink.example",
            &[to],
            &format!("Subject: {tag}{i}\r\n\r\nheld {i}\r\n"),
        );
    }
    c.cmd("QUIT", 221);
}

fn etrn(d: &Daemon, name: &str) -> u16 {
    etrn_reply(d, name).0
}

fn etrn_reply(d: &Daemon, name: &str) -> (u16, String) {
    let mut c = Client::hello(d.addr());
    c.send(&format!("ETRN {name}"));
    c.reply().unwrap_or_default()
}

fn parked(d: &Daemon) -> usize {
    list(&d.spool().join("hold")).len()
}

/// Subjects the sink received, with how often.
fn subjects(sink: &Sink) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for m in sink.messages() {
        if let Some(s) = m.data.lines().find_map(|l| l.strip_prefix("Subject: ")) {
            *seen.entry(s.trim().to_string()).or_insert(0) += 1;
        }
    }
    seen
}

fn index_lines(d: &Daemon) -> usize {
    list(&d.spool().join("index"))
        .iter()
        .filter(|n| !n.starts_with('.'))
        .map(|n| {
            std::fs::read_to_string(d.spool().join("index").join(n))
                .unwrap_or_default()
                .lines()
                .count()
        })
        .sum()
}

#[test]
fn held_mail_waits_on_disk_and_an_etrn_releases_it_from_the_index() {
    let sink = Sink::start(Behaviour::default());
    let mut d = hub(&sink, SCHED);
    send(&d, "u@client.dom", "c", 50);
    send(&d, "u@other.dom", "o", 20);
    d.wait_until("70 parked", 20, || parked(&d) == 70);
    assert!(list(&d.spool().join("queue")).is_empty());
    assert_eq!(index_lines(&d), 70);
    // A restart reads the index, not the 70 messages.
    d.stop();
    d.spawn();
    d.wait_until("started", 10, || d.log().contains("sched loaded"));
    let log = d.log();
    assert!(
        log.contains("sched loaded messages=0 parked=70 held-destinations=1 index=trusted"),
        "{log}"
    );
    // The listings see parked mail: mailq reads the files, clients the summary.
    let (_, out, _) = d.run(&["mailq"]);
    assert!(out.contains("in 70 Requests"), "{out}");
    let (code, out, _) = d.run(&["clients"]);
    assert_eq!(code, 0);
    let line = out
        .lines()
        .find(|l| l.starts_with("smtp-etrn!"))
        .unwrap_or("");
    assert_eq!(line.split_whitespace().nth(1), Some("70"), "{out}");
    // ETRN client.dom loads the destination and releases only client.dom's mail;
    // other.dom's goes back to disk.
    // RFC 1985's 253 counts what stays on disk for the next chunks too.
    let (code, text) = etrn_reply(&d, "client.dom");
    assert_eq!(code, 253, "{text}");
    assert!(text.contains("OK, 50 pending messages"), "{text}");
    sink.wait_for(50, 20);
    d.wait_until("other.dom parked again", 20, || {
        parked(&d) == 20 && list(&d.spool().join("queue")).is_empty()
    });
    let seen = subjects(&sink);
    assert_eq!(seen.len(), 50, "{seen:?}");
    assert!(seen.keys().all(|s| s.starts_with('c')), "{seen:?}");
    assert_eq!(
        index_lines(&d),
        20,
        "the index was rewritten with what stays"
    );
    // A parked file damaged on disk is found when it is released: quarantined, the
    // others delivered.
    let victim = list(&d.spool().join("hold"))[3].clone();
    let path = d.spool().join("hold").join(&victim);
    let data = std::fs::read(&path).unwrap();
    std::fs::write(&path, &data[..data.len() - 10]).unwrap();
    assert_eq!(etrn(&d, "other.dom"), 253);
    sink.wait_for(69, 20);
    d.wait_until("the damaged file quarantined", 10, || {
        list(&d.spool().join("corrupt")) == vec![victim.clone()]
    });
    assert!(d.log().contains("spool quarantined"), "{}", d.log());
    d.wait_until("nothing left", 10, || d.queue_files().is_empty());
    assert_eq!(subjects(&sink).len(), 69);
}

#[test]
fn parked_mail_expires_from_disk_with_a_bounce() {
    let sink = Sink::start(Behaviour::default());
    let sched = "*/* interval=1s retries=\"1\" expiry=1s expiry2=1s\n\
                 smtp-etrn/* queueonly command=smtp\nsmtp*/* command=smtp\n";
    let d = hub(&sink, sched);
    send(&d, "u@client.dom", "x", 3);
    // Parked at once (nothing is due yet), then loaded when the hard expiry comes.
    let got = sink.wait_for(3, 20);
    assert!(
        got.iter().all(|m| m.data.contains("5.4.7")),
        "three bounces: {:?}",
        got.iter().map(|m| &m.data).collect::<Vec<_>>()
    );
    // Messages whose expiry falls in different seconds are paged in in turn.
    let log = d.log();
    let paged: usize = log
        .split("sched paged-in messages=")
        .skip(1)
        .filter_map(|t| t.split_whitespace().next()?.parse::<usize>().ok())
        .sum();
    assert_eq!(paged, 3, "{log}");
    d.wait_until("the spool empty", 10, || d.queue_files().is_empty());
}

/// Marks a stopped daemon's index as written in another boot: the next start cannot
/// trust it (a power loss) and rebuilds it from hold/.
fn untrust(d: &Daemon) {
    std::fs::write(
        d.spool().join("index").join(".state"),
        "boot another-boot\n",
    )
    .unwrap();
}

#[test]
fn the_index_is_rebuilt_from_hold_and_a_kill_9_during_the_rebuild_loses_nothing() {
    let sink = Sink::start(Behaviour::default());
    let mut d = hub(&sink, SCHED);
    let n = 3000;
    send(&d, "u@client.dom", "r", n);
    d.wait_until("all parked", 60, || parked(&d) == n);
    // Index files removed and untrusted: rebuilt, and a kill -9 lands during the
    // rebuild (the state file is gone until it ends) at least once in a few tries.
    let mut mid = 0;
    d.stop();
    for round in 0..6 {
        untrust(&d);
        if round % 2 == 1 {
            for f in list(&d.spool().join("index")) {
                let _ = std::fs::remove_file(d.spool().join("index").join(f));
            }
        }
        let rebuilds = |d: &Daemon| d.log().matches("spool index-rebuild reason").count();
        let before = rebuilds(&d);
        d.spawn_nowait();
        let start = Instant::now();
        while rebuilds(&d) == before && start.elapsed() < Duration::from_secs(10) {}
        std::thread::sleep(Duration::from_micros(200 * round));
        d.kill9();
        if !d.spool().join("index").join(".state").exists() {
            mid += 1;
        }
        assert_eq!(d.queue_files().len(), n, "nothing lost at the kill");
    }
    assert!(mid > 0, "no kill landed during a rebuild");
    eprintln!("holdstore: {mid} of 6 kills landed during the index rebuild");
    d.spawn();
    d.wait_until("started", 20, || d.log().contains("sched loaded"));
    assert!(
        d.log().contains(&format!(
            "sched loaded messages=0 parked={n} held-destinations=1 index=rebuilt"
        )),
        "{}",
        d.log()
    );
    assert_eq!(index_lines(&d), n);
    assert!(list(&d.spool().join("corrupt")).is_empty());
    // And the rebuilt index releases everything.
    assert_eq!(etrn(&d, "client.dom"), 253);
    sink.wait_for(n, 60);
    assert_eq!(subjects(&sink).len(), n);
}

#[test]
fn a_kill_9_during_an_etrn_release_from_the_index_loses_nothing() {
    let sink = Sink::start(Behaviour::default());
    let mut d = hub(&sink, SCHED);
    let n = 2500; // more than one release chunk
    send(&d, "u@client.dom", "k", n);
    d.wait_until("all parked", 60, || parked(&d) == n);
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(120) * crate::util::slack();
    while !d.queue_files().is_empty() {
        assert!(Instant::now() < deadline, "not drained:\n{}", d.log());
        let _ = etrn(&d, "client.dom");
        if kills < 4 {
            // Killed while the release loads the index or delivers.
            std::thread::sleep(Duration::from_millis(5 + 40 * kills));
            d.kill9();
            kills += 1;
            let left = d.queue_files().len();
            assert!(left <= n, "{left}");
            d.spawn();
            eprintln!(
                "holdstore: kill {kills}: {} delivered, {left} left",
                sink.messages().len()
            );
        } else {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let seen = subjects(&sink);
    let lost: Vec<String> = (0..n)
        .map(|i| format!("k{i}"))
        .filter(|s| !seen.contains_key(s))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {lost:?}"
    );
    let dups: usize = seen.values().map(|c| c - 1).sum();
    // At most what was in flight at each kill (one connection's pipeline).
    assert!(dups <= 4 * 20, "{dups} delivered twice");
    assert!(list(&d.spool().join("corrupt")).is_empty());
}

#[test]
fn deferred_mail_past_the_active_limit_waits_on_disk_and_comes_back_when_due() {
    // A destination that refuses connections: its mail is deferred for 3 s. With an
    // active set of 50 messages, the rest of 300 goes to disk until the retry time,
    // and is then loaded and delivered (a sink listens there by then).
    let port = crate::util::free_port();
    let setup = Setup {
        routes: format!(".dead.example smtp![127.0.0.1]:{port}\n"),
        ..Setup::default()
    };
    let sched = "*/* interval=3s retries=\"1\" expiry=1d\nsmtp*/* command=smtp\n";
    let mut d = Daemon::prepare(setup, &[("scheduler.conf", sched)]);
    d.env.push(("ETRND_TEST_ACTIVE_LIMIT".into(), "50".into()));
    d.spawn();
    let mut c = Client::hello(d.addr());
    for i in 0..300 {
        c.send_message(
            "s@far.example",
            &["u@dead.example"],
            &format!("Subject: d{i}\r\n\r\nx\r\n"),
        );
    }
    c.cmd("QUIT", 221);
    d.wait_until("deferred mail parked", 20, || parked(&d) >= 250);
    assert!(d.log().contains("sched parked-deferred"), "{}", d.log());
    assert!(list(&d.spool().join("queue")).len() <= 50);
    // A restart keeps them on disk, their destination due at its old retry time.
    let on_disk = parked(&d);
    d.stop();
    d.spawn();
    d.wait_until("started", 10, || d.log().contains("daemon started"));
    assert!(
        d.log().contains(&format!("parked={on_disk} ")),
        "{on_disk} parked after the restart:\n{}",
        d.log()
    );
    let sink = Sink::start_on(&format!("127.0.0.1:{port}"), Behaviour::default());
    sink.wait_for(300, 30);
    assert!(d.log().contains("sched paged-in"), "{}", d.log());
    assert_eq!(subjects(&sink).len(), 300);
    d.wait_until("the spool empty", 10, || d.queue_files().is_empty());
}

/// The release gap for mail held on disk: an ETRN whose delivery fails leaves the
/// destination waiting; an ETRN again at once is told to wait (458) and tries
/// nothing, and what went back to disk stays there.
#[test]
fn an_etrn_again_after_a_failed_release_from_disk_waits_out_the_gap() {
    let dead = crate::util::free_port();
    let setup = Setup {
        routes: format!(".client.dom smtp-etrn![127.0.0.1]:{dead}\n"),
        ..Setup::default()
    };
    let d = Daemon::start_with_files(setup, &[("scheduler.conf", SCHED)]);
    send(&d, "u@client.dom", "g", 20);
    d.wait_until("20 parked", 20, || parked(&d) == 20);
    let (code, text) = etrn_reply(&d, "client.dom");
    assert_eq!(code, 253, "{text}");
    d.wait_until("the failed attempt", 20, || {
        d.log().matches("status=deferred").count() == 20
    });
    let attempts = d.log().matches("connect-failed").count();
    assert!(attempts >= 1, "{}", d.log());
    d.wait_until("the mail back on disk", 20, || parked(&d) == 20);
    let (code, text) = etrn_reply(&d, "client.dom");
    assert_eq!(code, 458, "{text}");
    assert!(text.contains("the last attempt failed"), "{text}");
    // The daemon answered a listing after the 458: nothing was tried meanwhile.
    let (_, out, _) = d.run(&["mailq"]);
    assert!(out.contains("in 20 Requests"), "{out}");
    assert_eq!(d.log().matches("connect-failed").count(), attempts);
    assert_eq!(d.log().matches("status=deferred").count(), 20);
}
