//! Outbound delivery through the real binary to SMTP sinks on loopback.

use std::time::Duration;

use crate::sink::{Behaviour, Sink};
use crate::util::{Client, Daemon, Setup};

fn setup(routes: String, sched: &str) -> (Setup, Vec<(&'static str, String)>) {
    let s = Setup {
        routes,
        ..Setup::default()
    };
    (s, vec![("scheduler.conf", sched.to_string())])
}

fn start(routes: String, sched: &str) -> Daemon {
    let (s, files) = setup(routes, sched);
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    Daemon::start_with_files(s, &files)
}

const SCHED: &str = "*/* interval=1s retries=\"1\" expiry=1h\n\
    smtp-etrn/* queueonly command=\"smtp -c $channel\"\n\
    smtp*/* command=\"smtp -c $channel -l ${LOGDIR}/$channel.log\"\n\
    error/* command=errormail\n";

#[test]
fn delivers_to_the_routed_host_and_removes_the_message() {
    let sink = Sink::start(Behaviour::default());
    let d = start(
        format!(".sink.example smtp![127.0.0.1]:{}\n", sink.addr.port()),
        SCHED,
    );
    let mut c = Client::hello(d.addr());
    let id = c.send_message(
        "s@test.example",
        &["a@sink.example", "b@sink.example"],
        "Subject: hi\r\n\r\n..dotted\r\nbody\r\n",
    );
    let got = sink.wait_for(1, 10);
    assert_eq!(got[0].from, "<s@test.example>");
    assert_eq!(got[0].rcpts, vec!["<a@sink.example>", "<b@sink.example>"]);
    assert!(
        got[0].data.starts_with("Received: from client.example"),
        "{}",
        got[0].data
    );
    assert!(
        got[0].data.contains("\r\n..dotted\r\n"),
        "dot-stuffed on the wire"
    );
    d.wait_until("queue to empty", 10, || d.queue_files().is_empty());
    let log = d.log();
    assert!(
        log.contains(&format!(
            "{id}: to=<a@sink.example>, relay=127.0.0.1[127.0.0.1]:"
        )),
        "{log}"
    );
    assert!(log.contains("status=sent"), "{log}");
    // The -l transcript: commands and replies, never the body.
    let t = std::fs::read_to_string(d.dir.0.join("log/smtp.log")).unwrap();
    assert!(t.contains("> MAIL FROM:<s@test.example>"), "{t}");
    assert!(t.contains("< 250 2.0.0 Ok: queued"), "{t}");
    assert!(t.contains("> [message, "), "{t}");
    // The relay is named once, Postfix's way, in the transcript as in the log.
    let relay = format!(" 127.0.0.1[127.0.0.1]:{} ", sink.addr.port());
    assert!(t.lines().all(|l| l.contains(&relay)), "{t}");
    assert!(!t.contains(&format!("]:{}[", sink.addr.port())), "{t}");
    assert!(!t.contains("dotted"), "{t}");
}

#[test]
fn per_recipient_results_defer_and_bounce() {
    let sink = Sink::start(Behaviour::default());
    let d = start(
        format!(".sink.example smtp![127.0.0.1]:{}\n", sink.addr.port()),
        SCHED,
    );
    let mut c = Client::hello(d.addr());
    c.send_message(
        "sender@sink.example",
        &[
            "ok@sink.example",
            "later@sink.example",
            "reject@sink.example",
        ],
        "Subject: three\r\n\r\nx\r\n",
    );
    // The message, then the DSN for the rejected recipient (to the sender, via the sink).
    let got = sink.wait_for(2, 10);
    assert_eq!(got[0].rcpts, vec!["<ok@sink.example>"]);
    let dsn = got
        .iter()
        .find(|m| m.from == "<>")
        .expect("a bounce with the null sender");
    assert_eq!(dsn.rcpts, vec!["<sender@sink.example>"]);
    assert!(dsn.data.contains("Status: 5.1.1"), "{}", dsn.data);
    assert!(dsn
        .data
        .contains("Final-Recipient: rfc822; reject@sink.example"));
    assert!(dsn
        .data
        .contains("Diagnostic-Code: smtp; 550 5.1.1 no such user here"));
    assert!(
        dsn.data.contains("Subject: three"),
        "original headers returned"
    );
    // The deferred recipient stays, with its error, and survives a restart.
    let (_, q, _) = d.run(&["mailq"]);
    assert!(q.contains("later@sink.example"), "{q}");
    assert!(q.contains("deferred"), "{q}");
    assert!(q.contains("452 4.2.2 mailbox full"), "{q}");
    assert!(q.contains("ok@sink.example  smtp![127.0.0.1]"), "{q}");
    assert!(
        q.contains("  sent\n"),
        "the delivered recipient is shown as sent: {q}"
    );
}

#[test]
fn queue_only_is_never_delivered_without_a_trigger() {
    let sink = Sink::start(Behaviour::default());
    let d = start(
        format!(".q.example smtp-etrn![127.0.0.1]:{}\n", sink.addr.port()),
        SCHED,
    );
    let mut c = Client::hello(d.addr());
    c.send_message(
        "s@test.example",
        &["u@q.example"],
        "Subject: q\r\n\r\nx\r\n",
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        sink.connections.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert_eq!(d.queue_files().len(), 1);
    let (_, q, _) = d.run(&["mailq"]);
    assert!(q.contains("u@q.example  smtp-etrn![127.0.0.1]"), "{q}");
    let (code, shape, _) = d.run(&["qshape"]);
    assert_eq!(code, 0);
    let held = shape.split("queued or deferred").next().unwrap();
    assert!(held.contains("smtp-etrn![127.0.0.1]"), "{shape}");
    assert!(
        held.lines()
            .any(|l| l.trim_start().starts_with("TOTAL      1     1")),
        "{shape}"
    );
    assert!(q.trim_end().lines().any(|l| l.ends_with("  held")), "{q}");
}

#[test]
fn retries_on_schedule_then_expires_with_a_dsn() {
    let sink = Sink::start(Behaviour::default());
    let bad = Sink::start(Behaviour {
        greeting: "421 4.3.2 try later",
        ..Behaviour::default()
    });
    let sched = "*/* interval=1s retries=\"1\" expiry=3s expiry2=1s\nsmtp*/* command=smtp\n";
    let routes = format!(
        ".down.example smtp![127.0.0.1]:{}\n.sink.example smtp![127.0.0.1]:{}\n",
        bad.addr.port(),
        sink.addr.port()
    );
    let d = start(routes, sched);
    let mut c = Client::hello(d.addr());
    c.send_message(
        "s@sink.example",
        &["u@down.example"],
        "Subject: doomed\r\n\r\nx\r\n",
    );
    let dsn = sink.wait_for(1, 15);
    assert_eq!(dsn[0].from, "<>");
    assert!(dsn[0].data.contains("Status: 5.4.7"), "{}", dsn[0].data);
    assert!(
        dsn[0].data.contains("421 4.3.2 try later"),
        "last error in the DSN"
    );
    let tries = bad.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=6).contains(&tries),
        "about one attempt per second: {tries}"
    );
    d.wait_until("queue to empty", 10, || d.queue_files().is_empty());
}

#[test]
fn greeting_421_falls_over_to_the_next_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _bad = Sink::start_on(
        &format!("127.0.0.1:{port}"),
        Behaviour {
            greeting: "421 4.3.2 busy",
            ..Behaviour::default()
        },
    );
    let good = Sink::start_on(&format!("127.0.0.2:{port}"), Behaviour::default());
    let s = Setup {
        conf: format!("SMTP_PORT={port}\n"),
        routes: ".two.example smtp!mx.two.example\n".into(),
        ..Setup::default()
    };
    let d = Daemon::start_with_files(
        s,
        &[
            ("scheduler.conf", SCHED),
            (
                "hosts",
                "127.0.0.1 mx.two.example\n127.0.0.2 mx.two.example\n",
            ),
        ],
    );
    let mut c = Client::hello(d.addr());
    c.send_message(
        "s@test.example",
        &["u@two.example"],
        "Subject: fall over\r\n\r\nx\r\n",
    );
    let got = good.wait_for(1, 10);
    assert_eq!(got[0].rcpts, vec!["<u@two.example>"]);
}

#[test]
fn connection_dropped_after_the_dot_defers() {
    let sink = Sink::start(Behaviour {
        dot_reply: "",
        ..Behaviour::default()
    });
    let d = start(
        format!(".sink.example smtp![127.0.0.1]:{}\n", sink.addr.port()),
        SCHED,
    );
    let mut c = Client::hello(d.addr());
    c.send_message(
        "s@test.example",
        &["u@sink.example"],
        "Subject: x\r\n\r\nx\r\n",
    );
    d.wait_until("a deferral", 10, || d.log().contains("status=deferred"));
    assert_eq!(d.queue_files().len(), 1);
}

#[test]
fn a_backlog_drains_through_one_connection() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sched = "*/* interval=2s retries=\"1\" expiry=1h\nsmtp*/* command=smtp\n";
    let d = start(format!(".sink.example smtp![127.0.0.1]:{port}\n"), sched);
    let mut c = Client::hello(d.addr());
    // Nobody listens yet: the first attempt fails and the thread sleeps; the rest of
    // the mail waits behind it instead of costing one connection attempt each.
    for i in 0..30 {
        c.send_message(
            "s@test.example",
            &["u@sink.example"],
            &format!("Subject: {i}\r\n\r\nx\r\n"),
        );
    }
    let sink = Sink::start_on(&format!("127.0.0.1:{port}"), Behaviour::default());
    let got = sink.wait_for(30, 15);
    assert_eq!(got.len(), 30);
    assert_eq!(
        sink.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one connection for the backlog"
    );
    let refused = d.log().matches("connect-failed").count();
    assert!(
        refused <= 2,
        "a dead host costs one attempt per retry slot: {refused}"
    );
    d.wait_until("queue to empty", 10, || d.queue_files().is_empty());
}

#[test]
fn kill9_during_delivery_repeats_at_most_what_was_in_flight() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sched = "*/* interval=1s retries=\"1\" expiry=1h\nsmtp*/* maxthr=1 command=smtp\n";
    let mut d = start(format!(".sink.example smtp![127.0.0.1]:{port}\n"), sched);
    let t0 = std::time::Instant::now();
    let mut c = Client::hello(d.addr());
    let n = 300;
    for i in 0..n {
        c.send_message(
            "s@test.example",
            &["u@sink.example"],
            &format!("Subject: m{i}\r\n\r\nx\r\n"),
        );
    }
    drop(c);
    let sink = Sink::start_on(&format!("127.0.0.1:{port}"), Behaviour::default());
    let rounds = 3;
    for round in 1..=rounds {
        // Kill while the backlog drains, then restart and go on.
        let target = n * round / (rounds + 1);
        d.wait_until("some deliveries", 20, || sink.messages().len() >= target);
        eprintln!("round {round} at {:?}", t0.elapsed());
        d.kill9();
        d.spawn();
    }
    d.wait_until("queue to empty", 30, || d.queue_files().is_empty());
    eprintln!("drained at {:?}", t0.elapsed());
    let got = sink.messages();
    let mut count = std::collections::HashMap::new();
    for m in &got {
        let subject = m
            .data
            .lines()
            .find(|l| l.starts_with("Subject: "))
            .unwrap()
            .to_string();
        *count.entry(subject).or_insert(0) += 1;
    }
    assert_eq!(count.len(), n, "every message delivered");
    let dups: usize = count.values().map(|c| c - 1).sum();
    assert!(
        dups <= rounds,
        "at most one in-flight message repeated per kill: {dups}"
    );
}

#[test]
fn postfix_smtp_sink_receives_everything_intact() {
    let Some(smtp_sink) = crate::util::need_tool("smtp-sink", "postfix") else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = start(format!(".sink.example smtp![127.0.0.1]:{port}\n"), SCHED);
    let dump = d.dir.0.join("dump");
    let mut sink = std::process::Command::new(smtp_sink)
        .args(["-u", "root", "-D"])
        .arg(&dump)
        .arg(format!("127.0.0.1:{port}"))
        .arg("100")
        .spawn()
        .expect("start smtp-sink");
    crate::util::wait_listening(port, 10);
    let mut c = Client::hello(d.addr());
    let long = "w".repeat(2500);
    for i in 0..20 {
        c.send_message(
            "s@test.example",
            &["a@sink.example", "b@sink.example"],
            &format!("Subject: {i}\r\n\r\n..dot line\r\n{long}\r\n"),
        );
    }
    d.wait_until("queue to empty", 20, || d.queue_files().is_empty());
    let _ = sink.kill();
    let _ = sink.wait();
    let text = std::fs::read_to_string(&dump).unwrap();
    assert_eq!(
        text.matches("X-Mail-Args: <s@test.example>").count(),
        20,
        "{text:.500}"
    );
    assert_eq!(text.matches("X-Rcpt-Args:").count(), 40);
    assert!(text.lines().all(|l| l.len() <= 1000), "long lines folded");
    // smtp-sink dumps the unstuffed message: the line arrives whole only if we
    // stuffed it on the wire.
    assert_eq!(
        text.matches("\n.dot line").count(),
        20,
        "dot-stuffed on the wire"
    );
}

#[test]
fn a_lone_cr_from_a_local_submission_never_reaches_the_wire() {
    let sink = Sink::start(Behaviour::default());
    let d = start(
        format!(".sink.example smtp![127.0.0.1]:{}\n", sink.addr.port()),
        SCHED,
    );
    let (rc, err) = d.sendmail(
        &["-f", "root@test.example", "a@sink.example"],
        "Subject: cr\n\nline one\rline two\r\r\nend\n",
    );
    assert_eq!(rc, 0, "{err}");
    let got = sink.wait_for(1, 15);
    let data = got[0].data.as_bytes();
    for (i, &b) in data.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(
                data.get(i + 1),
                Some(&b'\n'),
                "a bare CR on the wire: {:?}",
                got[0].data
            );
        }
        if b == b'\n' {
            assert!(
                i > 0 && data[i - 1] == b'\r',
                "a bare LF on the wire: {:?}",
                got[0].data
            );
        }
    }
    assert!(
        got[0].data.contains("line one\r\nline two\r\n"),
        "{:?}",
        got[0].data
    );
}
