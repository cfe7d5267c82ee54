//! Fidelity: configurations that would black-hole mail are refused, transport flags
//! are honoured or refused, ZMailer's shipped file shapes load, the shipped setups
//! start, and one oversized message does not stall a client's flush.

use std::time::Duration;

use crate::sink::{Behaviour, Sink};
use crate::util::{run_etrnd, Client, Daemon, Setup, TempDir};

/// `etrnd -n` and a daemon start on these files: exit code and stderr (the temp
/// directory written as DIR).
fn check(setup: &Setup, sched: &str) -> (i32, String, i32, String) {
    let dir = TempDir::new("fidelity");
    setup.write(&dir.0);
    std::fs::write(dir.0.join("scheduler.conf"), sched).unwrap();
    let conf = dir.0.join("etrnd.conf");
    let (code, _, err) = run_etrnd(&conf, &["-n"]);
    // A good configuration would start a daemon that runs on: only bad ones start.
    let (start, serr) = if code == 0 {
        (0, String::new())
    } else {
        let (start, _, serr) = run_etrnd(&conf, &["-d"]);
        (start, serr)
    };
    let d = dir.0.to_string_lossy().to_string();
    (code, err.replace(&d, "DIR"), start, serr.replace(&d, "DIR"))
}

fn routes(r: &str) -> Setup {
    Setup {
        routes: r.into(),
        ..Setup::default()
    }
}

#[test]
fn a_route_no_clause_runs_is_an_error_at_check_and_start() {
    let (code, err, start, serr) = check(
        &routes(".nochan.example nochan!somehost\n"),
        "*/* expiry=1d\nsmtp/* command=smtp\nlocal/* command=local\n",
    );
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("DIR/db/routes:1: route .nochan.example nochan!somehost: no clause of DIR/scheduler.conf matches nochan/somehost"),
        "{err}"
    );
    assert_eq!(start, 78, "the daemon refuses to start too: {serr}");
    assert!(serr.contains("DIR/db/routes:1:"), "{serr}");
}

#[test]
fn a_clause_without_command_and_none_after_it_names_clause_and_route() {
    let (code, err, start, _) = check(
        &routes("# two\n.dialup.example uucpish!gw.example\n"),
        "*/* expiry=1d\nuucpish/* maxchannel=5\nsmtp/* command=smtp\nlocal/* command=local\n",
    );
    assert_eq!((code, start), (78, 78), "{err}");
    assert!(
        err.contains(
            "DIR/scheduler.conf:2: clause 'uucpish/*' matches uucpish/gw.example but has no \
             command, and no later clause matching it has one (reached by DIR/db/routes:2: \
             route .dialup.example uucpish!gw.example)"
        ),
        "{err}"
    );
}

#[test]
fn a_clause_without_command_takes_the_next_matching_command_and_flags_are_honoured() {
    let sink = Sink::start(Behaviour::default());
    let port = sink.addr.port();
    // The shape of ZMailer's shipped smtp/*.fi: limits without a command, the
    // command from the catch-all after it; -p and -h bundled the getopt way.
    let sched = format!(
        "*/* interval=1s retries=\"1\" expiry=1h\n\
         smtpx/*127.0.0.1* maxring=5\n\
         smtpx/* command=\"smtp -c $channel -xsp {port} -h Other.Name\"\n\
         smtp8/* command=\"smtp -8 -p {port}\"\n\
         smtp77/* command=\"smtp -77 -p {port}\"\n\
         smtp7/* command=\"smtp -7 -p{port}\"\n\
         local/* command=local\nerror/* command=errormail\n"
    );
    let d = Daemon::start_with_files(
        routes(
            ".x.example smtpx![127.0.0.1]\n.e.example smtp8![127.0.0.1]\n\
             .h.example smtp77![127.0.0.1]\n.s.example smtp7![127.0.0.1]\n",
        ),
        &[("scheduler.conf", &sched)],
    );
    let (code, out, _) = d.run(&["route", "u@a.x.example"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("scheduler: smtpx/*127.0.0.1* (scheduler.conf line 2)"),
        "{out}"
    );
    let mut c = Client::hello(d.addr());
    c.send_message(
        "s@test.example",
        &["u@a.x.example"],
        "Subject: x\r\n\r\nx\r\n",
    );
    let got = sink.wait_for(1, 10);
    assert_eq!(got[0].helo, "EHLO other.name", "-h names us");
    // -8: a body with 8-bit octets is declared though the client did not say so.
    c.send_message(
        "s@test.example",
        &["u@e.example"],
        "Subject: 8\r\n\r\nr\u{e4}ksm\u{f6}rg\u{e5}s\r\n",
    );
    let got = sink.wait_for(2, 10);
    assert!(got[1].mail.ends_with("BODY=8BITMIME"), "{}", got[1].mail);
    // -77: HELO, no extensions.
    c.send_message(
        "s@test.example",
        &["u@h.example"],
        "Subject: 7\r\n\r\nx\r\n",
    );
    let got = sink.wait_for(3, 10);
    assert_eq!(got[2].helo, "HELO mx.test.example");
    assert_eq!(got[2].mail, "MAIL FROM:<s@test.example>");
    // -7: an 8-bit body goes as 7-bit MIME (quoted-printable); one that cannot be
    // made 7-bit (an 8-bit header) is bounced with 5.6.3, never sent.
    c.send_message(
        "s@test.example",
        &["u@s.example"],
        "Subject: 8\r\n\r\n\u{e4}\r\n",
    );
    let got = sink.wait_for(4, 10);
    assert!(got[3].data.is_ascii(), "{}", got[3].data);
    assert!(got[3].data.contains("=C3=A4"), "{}", got[3].data);
    assert!(!got[3].mail.contains("8BITMIME"), "{}", got[3].mail);
    c.send_message(
        "s@test.example",
        &["v@s.example"],
        "Subject: \u{e4}\r\n\r\nx\r\n",
    );
    d.wait_until("the 5.6.3 bounce", 10, || {
        d.log().contains("to=<v@s.example>") && d.log().contains("status=bounced (554 5.6.3")
    });
    assert_eq!(sink.messages().len(), 4);
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("relay=127.0.0.1[127.0.0.1]:{port}, delay=")))
        .unwrap_or_else(|| panic!("no delivery line: {log}"));
    assert!(
        line.contains(", dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)")
            && line.contains("etrnd/smtp["),
        "relay named once, the remote reply kept: {line}"
    );
}

#[test]
fn transport_flags_we_do_not_implement_are_errors() {
    for (cmd, why) in [
        (
            "smtp -M -F lmtp.example:24",
            "is not [address]:port or UNIX:/path",
        ),
        ("smtp -1", "-1 is not supported"),
        ("smtp -S /x/smtp-tls.conf", "-S (STARTTLS settings file)"),
        ("sm -c $channel uucp", "the sm transport"),
    ] {
        let (code, err, _, _) = check(
            &Setup::default(),
            &format!("*/* expiry=1d\nsmtp-etrn/* command=\"{cmd}\"\nlocal/* command=local\n"),
        );
        assert_eq!(code, 78, "{cmd}");
        assert!(
            err.contains("DIR/scheduler.conf:2: ") && err.contains(why),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn without_a_scheduler_conf_unknown_smtp_channels_are_not_sent_as_plain_smtp() {
    let dir = TempDir::new("builtin");
    routes(".t.example smtp-tls!mx.t.example\n").write(&dir.0);
    std::fs::remove_file(dir.0.join("scheduler.conf")).unwrap();
    let (code, _, err) = run_etrnd(&dir.0.join("etrnd.conf"), &["-n"]);
    assert_eq!(code, 78);
    assert!(err.contains("matches smtp-tls/mx.t.example"), "{err}");
    routes(".t.example smtp-etrn!mx.t.example\n.u.example smtpx!\n").write(&dir.0);
    std::fs::remove_file(dir.0.join("scheduler.conf")).unwrap();
    let (code, _, err) = run_etrnd(&dir.0.join("etrnd.conf"), &["-n"]);
    assert_eq!(code, 0, "{err}");
}

/// The shapes of ZMailer's shipped proto/scheduler.conf.in (our own text): defaults
/// with ZMailer-only tuning, PARAM lines, bare selectors sharing a clause, `mailbox
/// -8`, bundled flags with `${LOGDIR}`, clauses whose limits come without a command,
/// comments after a quoted command, and the sm/-M/-S clauses commented out.
const ZMAILER_SHAPES: &str = r#"# as shipped, with the unsupported transports commented out
PARAMauthfile = "${MAILSHARE}/scheduler.auth"
*/*	interval=1m
	idlemax=4m # comment after a value
	expiry=5d
	expiry2=2d
	retries="1 1 2 3 5 8 13 21 34"
	maxchannel=0 maxring=20
	maxta=0
	user=root
	group=daemon
	overfeed=150
hold/*
	interval=5m
	maxchannel=1
	command=hold
#defrt1/*
#	command="sm -c $channel defrt1"
local/file*
local/pipe*
	interval=5m
	maxchannel=15
	command="mailbox -8"
local/*
	interval=5m
	maxring=5
	command="mailbox"
	#command="smtp -c $channel -M -x -F [127.0.0.1] -p 2525 -s"
smtp/*funet.fi
	maxring=9
	command="smtp -8sl ${LOGDIR}/smtp"
smtp/*.fi
	maxchannel=199
	maxring=20
	interval=10m
	skew=1
smtp/*
	maxchannel=199
	maxring=50
	command="smtp -s" # -l ${LOGDIR}/smtp"
smtp-etrn/*
	maxchannel=199 maxring=20 interval=1h retries="12" queueonly
	command="smtp -c $channel -s" # -l ${LOGDIR}/smtp-etrn"
#smtp-tls/*
#	command="smtp -c $channel -s -S ${MAILSHARE}/smtp-tls.conf"
#smtp-lmtp/*
#	command="smtp -c $channel -M -x -p 2525 -s -l ${LOGDIR}/smtp-lmtp"
smtpx/*
	maxchannel=90
	command="smtp -c $channel -x -s"
smtpxw/*
	command="smtp -c $channel -x -w 1200 -s"
smtp77x/*
	command="smtp -c $channel -77 -x -s"
error/*
	interval=5m
	command=errormail
#uucp/*		maxchannel=5
#		command="sm -8c $channel uucp"
"#;

#[test]
fn zmailer_shipped_shapes_load_and_resolve() {
    let setup = Setup {
        // Shapes of proto/db.sample/routes and proto/db/routes (our own entries).
        routes:
            "# sample\n.dal.example\t\t\tsmtp![192.0.2.5]\n.toronto.example\terror!err.wrongname\n\
                 .skip.example\t\t\tignore\nlocalhost\t\terror!err.localhost\n\
                 .uni.fi smtp!\nfunet.fi smtp!\n.bar.example smtpx!\n.w.example smtpxw!\n\
                 .old.example smtp77x!\n.client.dom smtp-etrn!mail.client.dom\n"
                .into(),
        ..Setup::default()
    };
    let (code, err, _, _) = check(&setup, ZMAILER_SHAPES);
    assert_eq!((code, err.as_str()), (0, ""));
    let dir = TempDir::new("zmshapes");
    setup.write(&dir.0);
    std::fs::write(dir.0.join("scheduler.conf"), ZMAILER_SHAPES).unwrap();
    let conf = dir.0.join("etrnd.conf");
    let (_, out, _) = run_etrnd(&conf, &["route", "u@mail.uni.fi", "u@funet.fi"]);
    // *funet.fi comes first for funet; for the rest of .fi, smtp/*.fi gives its
    // limits and smtp/* its command.
    assert!(
        out.contains("scheduler: smtp/*funet.fi (scheduler.conf line 29)"),
        "{out}"
    );
    assert!(
        out.contains(
            "scheduler: smtp/*.fi (scheduler.conf line 32), command from smtp/* (line 37)"
        ),
        "{out}"
    );
    // What we do not have is refused with a reason, at the line.
    for (file, text, want) in [
        (
            "db/routes",
            "junkdom bitbucket!\n",
            "db/routes:1: 'bitbucket!': the bitbucket channel needs one of ZMailer's sm programs",
        ),
        (
            "db/routes",
            "news.dom usenet!\n",
            "db/routes:1: 'usenet!': the usenet channel",
        ),
        (
            "db/routes",
            ".:ERROR smtp!\n",
            "db/routes:1: '.:ERROR': ZMailer's tagged keys",
        ),
        (
            "db/aliases",
            "l: \":include:/dev/null\"\n",
            "db/aliases:1: :include:/dev/null: not a plain file",
        ),
    ] {
        setup.write(&dir.0);
        std::fs::write(dir.0.join("scheduler.conf"), ZMAILER_SHAPES).unwrap();
        std::fs::write(dir.0.join(file), text).unwrap();
        let (code, _, err) = run_etrnd(&conf, &["-n"]);
        assert_eq!(code, 78, "{text}");
        assert!(err.contains(want), "{text}: {err}");
    }
}

#[test]
fn every_shipped_setup_starts_and_serves_ipv4_and_ipv6() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for setup in ["etc", "etc/hub", "etc/client"] {
        let mut d = Daemon::prepare(Setup::default(), &[]);
        let dir = d.dir.0.clone();
        let src = root.join(setup);
        for f in ["scheduler.conf", "db/routes", "db/localnames", "db/aliases"] {
            if src.join(f).exists() {
                std::fs::copy(src.join(f), dir.join(f)).unwrap();
            }
        }
        // Paths into the temporary directory, the shipped ports onto a free one.
        let port = crate::util::free_port();
        let text = std::fs::read_to_string(src.join("etrnd.conf")).unwrap();
        let mut conf = String::new();
        for line in text.lines() {
            let name = line.split('=').next().unwrap_or("");
            let line = match name {
                "POSTOFFICE" => "POSTOFFICE=spool".to_string(),
                "LOGDIR" => "LOGDIR=log".to_string(),
                "PIDFILE" => "PIDFILE=etrnd.pid".to_string(),
                "MAILBOX" => "MAILBOX=mail/".to_string(),
                "GREET_PAUSE" => "GREET_PAUSE=0".to_string(),
                // A build without TLS cannot keep the client sample's promise.
                "SMTP_TLS" if !cfg!(feature = "tls") => "SMTP_TLS=none".to_string(),
                "MAILVAR" | "MAILSHARE" => format!("{name}=."),
                "LISTEN" => {
                    let value = line["LISTEN=".len()..].trim_matches('"');
                    let addrs: Vec<String> = value
                        .split_whitespace()
                        .map(|a| format!("{}:{port}", &a[..a.rfind(':').unwrap()]))
                        .collect();
                    format!("LISTEN={}", addrs.join(" "))
                }
                _ => line.to_string(),
            };
            conf.push_str(&line);
            conf.push('\n');
        }
        if crate::util::is_root() {
            conf.push_str(&format!("USER={}\n", crate::util::daemon_account()));
        }
        std::fs::write(dir.join("etrnd.conf"), &conf).unwrap();
        d.spawn();
        let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut c = Client::connect(v4);
        c.expect(220);
        if conf.contains(&format!("[::]:{port}")) {
            let v6: std::net::SocketAddr = format!("[::1]:{port}").parse().unwrap();
            let mut c6 = Client::connect(v6);
            c6.expect(220);
        }
        c.cmd("QUIT", 221);
        d.stop();
    }
}

#[test]
fn an_oversized_message_is_bounced_and_the_flush_goes_on() {
    let sink = Sink::start(Behaviour {
        size: 1_000_000,
        ..Behaviour::default()
    });
    let d = Daemon::start_with_files(
        routes(&format!(
            ".client.dom smtp-etrn![127.0.0.1]:{}\n",
            sink.addr.port()
        )),
        &[(
            "scheduler.conf",
            "*/* interval=1s retries=\"1\" expiry=1h\nsmtp-etrn/* queueonly command=smtp\n\
             local/* command=local\nerror/* command=errormail\n",
        )],
    );
    let mut c = Client::hello(d.addr());
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(76).repeat(27_000));
    c.send_message(
        "s@test.example",
        &["a@client.dom"],
        "Subject: 1\r\n\r\none\r\n",
    );
    c.send_message("s@test.example", &["b@client.dom"], &big);
    c.send_message(
        "s@test.example",
        &["c@client.dom"],
        "Subject: 3\r\n\r\nthree\r\n",
    );
    c.cmd("ETRN client.dom", 253);
    let got = sink.wait_for(2, 10);
    assert_eq!(
        sink.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(got[0].rcpts, vec!["<a@client.dom>"]);
    assert_eq!(
        got[1].rcpts,
        vec!["<c@client.dom>"],
        "the next message, same connection"
    );
    d.wait_until("the 5.3.4 bounce", 10, || {
        d.log().contains("to=<b@client.dom>") && d.log().contains("status=bounced (552 5.3.4")
    });
}

#[test]
fn numbers_out_of_range_are_errors_with_file_and_line() {
    for (i, line) in [
        "GREET_PAUSE=18446744073709551615",
        "MAX_CONNECTIONS=18446744073709551615",
        "MAX_MESSAGE_SIZE=18446744073709551615",
        "MAX_RECIPIENTS=0",
        "SMTP_PORT=65536",
    ]
    .iter()
    .enumerate()
    {
        let sched = "local/* command=local\nsmtp*/* command=smtp\n";
        let (code, err, start, _) = check(&Setup::with_conf(&format!("{line}\n")), sched);
        assert_eq!((code, start), (78, 78), "{i} {line}: {err}");
        let name = line.split('=').next().unwrap();
        assert!(
            err.contains("DIR/etrnd.conf:1")
                && err.contains(&format!(": {name}: '"))
                && err.contains("is out of range ("),
            "{line}: {err}"
        );
    }
    let (code, err, _, _) = check(&Setup::default(), "*/* interval=99999d\n");
    assert_eq!(code, 78);
    assert!(
        err.contains("DIR/scheduler.conf:1: interval '99999d' is longer than 3650 days"),
        "{err}"
    );
}

const HOLD_SCHED: &str = "*/* interval=1s retries=\"1\" expiry=1h\n\
    smtp-etrn/* queueonly command=smtp\nlocal/* command=local\nerror/* command=errormail\n";

#[test]
fn etrn_of_the_domain_releases_everything_its_route_holds_and_252_while_in_flight() {
    let sink = Sink::start(Behaviour {
        delay: Duration::from_millis(1500),
        ..Behaviour::default()
    });
    let d = Daemon::start_with_files(
        routes(&format!(
            ".client.dom smtp-etrn![127.0.0.1]:{}\n.other.dom smtp-etrn![127.0.0.1]:{}\n",
            sink.addr.port(),
            sink.addr.port()
        )),
        &[("scheduler.conf", HOLD_SCHED)],
    );
    let mut c = Client::hello(d.addr());
    for to in [
        "a@client.dom",
        "b@mail.client.dom",
        "c@x.y.client.dom",
        "d@other.dom",
    ] {
        c.send_message("s@test.example", &[to], "Subject: t\r\n\r\nt\r\n");
    }
    // The domain's name releases its own route's mail: the domain and subdomains.
    let r = c.cmd("ETRN client.dom", 253);
    assert!(r.contains(" 3 pending messages"), "{r}");
    // While they are in flight: 252, not 251.
    std::thread::sleep(Duration::from_millis(300));
    c.cmd("ETRN client.dom", 252);
    let got = sink.wait_for(3, 15);
    let mut rcpts: Vec<String> = got.iter().flat_map(|m| m.rcpts.clone()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        [
            "<a@client.dom>",
            "<b@mail.client.dom>",
            "<c@x.y.client.dom>"
        ]
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.messages().len(), 3, "other.dom stays held");
    assert_eq!(d.queue_files().len(), 1);
}

#[test]
fn pipelined_etrns_are_all_answered_at_once_in_order() {
    let d = Daemon::start_with_files(
        routes(".client.dom smtp-etrn!mail.client.dom\n.b.dom smtp-etrn!mx.b.dom\n"),
        &[("scheduler.conf", HOLD_SCHED)],
    );
    let mut c = Client::hello(d.addr());
    let t0 = std::time::Instant::now();
    c.send_raw(
        b"ETRN client.dom\r\nETRN b.dom\r\nETRN @client.dom\r\nETRN #smtp-etrn\r\nETRN nope.example\r\nNOOP\r\n",
    );
    let codes: Vec<u16> = (0..6).map(|_| c.reply().unwrap().0).collect();
    assert_eq!(codes, [251, 251, 251, 251, 459, 250]);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[test]
fn minimal_etrn_replies_are_250_for_every_well_formed_name() {
    let d = Daemon::start_with_files(
        Setup {
            conf: "ETRN_REPLIES=minimal\n".into(),
            ..routes(".client.dom smtp-etrn!mail.client.dom\n")
        },
        &[("scheduler.conf", HOLD_SCHED)],
    );
    let mut c = Client::hello(d.addr());
    c.cmd("ETRN client.dom", 250);
    c.cmd("ETRN not-held.example", 250);
    c.cmd("ETRN #nochannel", 250);
    c.cmd("ETRN bad..name", 501);
}

#[test]
fn flush_talks_to_the_daemon_never_to_a_stale_pid() {
    // A stale pid file naming an unrelated process, and no daemon.
    let d = Daemon::prepare(Setup::default(), &[]);
    let mut victim = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(d.dir.0.join("etrnd.pid"), format!("{}\n", victim.id())).unwrap();
    let (code, out, _) = d.run(&["flush"]);
    assert_eq!(code, 69, "{out}");
    assert!(out.contains("etrnd is not running"), "{out}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the unrelated process lives"
    );
    let _ = victim.kill();
    let _ = victim.wait();
    // With the daemon running: its own replies, for everything and for a target.
    let mut d = Daemon::start_with_files(
        routes(".client.dom smtp-etrn!mail.client.dom\n"),
        &[("scheduler.conf", HOLD_SCHED)],
    );
    let (code, out, _) = d.run(&["flush"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("250 2.0.0 flushing"), "{out}");
    let (code, out, _) = d.run(&["flush", "client.dom"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("251 "), "{out}");
    let (code, out, _) = d.run(&["flush", "not.held.example"]);
    assert_eq!(code, 77, "{out}");
    assert!(out.starts_with("459 "), "{out}");
    assert!(
        d.log().contains("request=\"flush client.dom\" reply=\"251"),
        "{}",
        d.log()
    );
    // A clean exit leaves no pid behind: the file is removed, or emptied where the
    // daemon gave up the right to remove it (USER, in a directory of root's).
    let pidfile = d.dir.0.join("etrnd.pid");
    assert!(pidfile.exists());
    assert!(d.stop().success());
    assert!(
        std::fs::read_to_string(&pidfile).map_or(true, |t| t.is_empty()),
        "no pid left"
    );
}

#[test]
fn a_detaching_daemon_says_when_no_syslog_socket_works() {
    let d = Daemon::prepare(Setup::with_conf("SYSLOG_SOCKET=sockdir\n"), &[]);
    std::fs::create_dir(d.dir.0.join("sockdir")).unwrap();
    let out = std::process::Command::new(crate::util::bin())
        .arg("-f")
        .arg(d.conf_path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let pidfile = d.dir.0.join("etrnd.pid");
    let pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
    if let Ok(pid) = pid.trim().parse::<i32>() {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: no syslog socket works") && err.contains("sockdir: not a socket"),
        "{err}"
    );
}

#[test]
fn mailq_and_qshape_show_mail_waiting_in_the_drop_folder() {
    let d = Daemon::prepare(Setup::default(), &[]);
    let (code, err) = d.sendmail(
        &["-f", "me@test.example", "alice@test.example"],
        "Subject: waiting\n\nhello\n",
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = d.run(&["mailq"]);
    assert_eq!(code, 0);
    assert!(!out.contains("empty"), "{out}");
    assert!(out.contains("<me@test.example>"), "{out}");
    assert!(
        out.contains("alice@test.example  waiting in the drop folder for pickup"),
        "{out}"
    );
    assert!(out.contains("in 1 Request."), "{out}");
    let (_, out, _) = d.run(&["qshape"]);
    assert!(
        out.contains("waiting in the drop folder for pickup: 1 message"),
        "{out}"
    );
}

#[test]
fn eight_bit_mail_for_a_next_hop_without_8bitmime_is_converted_and_parses_back() {
    let sink = Sink::start(Behaviour {
        eight_bit_mime: false,
        ..Behaviour::default()
    });
    let port = sink.addr.port();
    let sched = format!(
        "*/* interval=1s retries=\"1\" expiry=1h\nsmtp/* command=\"smtp -p {port}\"\n\
         local/* command=local\nerror/* command=errormail\n"
    );
    let d = Daemon::start_with_files(
        routes(".n.example smtp![127.0.0.1]\n"),
        &[("scheduler.conf", &sched)],
    );
    let text = "Gr\u{fc}\u{df}e aus K\u{f6}ln \u{2014} a line long enough to be folded: \
                \u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\r\n\
                second line = with an equals sign\r\n";
    let attachment: Vec<u8> = (0u8..=255).collect();
    let mut c = Client::hello(d.addr());
    c.cmd("MAIL FROM:<s@test.example> BODY=8BITMIME", 250);
    c.cmd("RCPT TO:<u@a.n.example>", 250);
    c.cmd("DATA", 354);
    let mut msg = format!(
        "Subject: plain\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\nMIME-Version: 1.0\r\n\r\n{text}"
    )
    .into_bytes();
    msg.extend_from_slice(b".\r\n");
    c.send_raw(&msg);
    c.expect(250);
    // A multipart with an 8-bit text part and a binary attachment (sent 8bit).
    c.cmd("MAIL FROM:<s@test.example> BODY=8BITMIME", 250);
    c.cmd("RCPT TO:<w@a.n.example>", 250);
    c.cmd("DATA", 354);
    let mut m2 = format!(
        "Subject: multi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n\
         --XYZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\
         --XYZ\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    .into_bytes();
    // No CR, LF or NUL: the DATA stream keeps them as line ends.
    let bin: Vec<u8> = attachment
        .iter()
        .copied()
        .filter(|b| ![0, 10, 13, b'.'].contains(b))
        .collect();
    m2.extend_from_slice(&bin);
    m2.extend_from_slice(b"\r\n--XYZ--\r\n.\r\n");
    c.send_raw(&m2);
    c.expect(250);
    let got = sink.wait_for(2, 10);
    for g in &got {
        assert!(
            g.data.bytes().all(|b| b < 0x80),
            "8-bit octets on the wire: {}",
            g.data
        );
        assert!(!g.mail.contains("8BITMIME"), "{}", g.mail);
    }
    // Python's email parses both back to the same text and octets.
    let dir = crate::util::TempDir::new("sevenbit");
    std::fs::write(dir.0.join("plain.eml"), &got[0].data).unwrap();
    std::fs::write(dir.0.join("multi.eml"), &got[1].data).unwrap();
    std::fs::write(dir.0.join("text"), text.replace("\r\n", "\n")).unwrap();
    std::fs::write(dir.0.join("bin"), &bin).unwrap();
    let script = r#"
import email, email.policy, sys
d = sys.argv[1]
text = open(d + "/text", encoding="utf-8").read()
m = email.message_from_binary_file(open(d + "/plain.eml", "rb"), policy=email.policy.default)
assert m["Content-Transfer-Encoding"] == "quoted-printable", m["Content-Transfer-Encoding"]
got = m.get_content()
assert got == text, (got, text)
m = email.message_from_binary_file(open(d + "/multi.eml", "rb"), policy=email.policy.default)
parts = list(m.iter_parts())
# The line end before a delimiter is the delimiter's: the part has no last newline.
assert parts[0].get_content() == text[:-1], parts[0].get_content()
assert parts[1]["Content-Transfer-Encoding"] == "base64"
assert parts[1].get_content() == open(d + "/bin", "rb").read()
print("ok")
"#;
    let out = crate::util::run_ok(
        std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&dir.0),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
