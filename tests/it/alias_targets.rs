//! Alias targets that are not mailboxes: `/dev/null`, files, `|command` (exit codes
//! 0, 75 and 67, a command that hangs, one that floods its output) and
//! `:include:`, with the file traps of reference/bad-input.md §I.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::util::{is_root, Client, Daemon, Setup};

const SCHED: &str = "*/* interval=1h retries=\"1\" expiry=1d\nlocal/* command=local\n\
    smtp*/* queueonly command=smtp\n";

fn uid_of(name: &str) -> u32 {
    let out = crate::util::run_ok(std::process::Command::new("id").args(["-u", name]));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn dev_null_files_commands_and_includes() {
    let dir = crate::util::TempDir::new("targets");
    let out = dir.0.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // The targets run as nobody (root owns the aliases file): they must reach here.
    for d in [&dir.0, &out] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let o = out.display();
    std::fs::write(out.join("list"), format!("alice\n{o}/from-include\n")).unwrap();
    // The traps: a link to a file of root's, a hard link, a FIFO.
    std::fs::write(out.join("secret"), "root's own\n").unwrap();
    std::fs::set_permissions(out.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(out.join("secret"), out.join("symlink")).unwrap();
    std::fs::write(out.join("shared"), "").unwrap();
    std::fs::hard_link(out.join("shared"), out.join("hardlink")).unwrap();
    crate::util::run_ok(std::process::Command::new("mkfifo").arg(out.join("fifo")));
    let aliases = format!(
        "null: /dev/null\n\
         arch: {o}/archive\n\
         ok: \"|/bin/sh -c 'cat > {o}/ok.out; id -u > {o}/ok.uid'\"\n\
         later: \"|/bin/sh -c 'exit 75'\"\n\
         nouser: \"|/bin/sh -c 'echo no such user; exit 67'\"\n\
         flood: \"|/bin/sh -c 'head -c 20000000 /dev/zero; cat > {o}/flood.out'\"\n\
         hang: \"|/bin/sh -c 'echo $$ > {o}/hang.pid; exec /bin/sleep 600'\"\n\
         list: :include:{o}/list\n\
         symlink: {o}/symlink\n\
         hardlink: {o}/hardlink\n\
         fifo: {o}/fifo\n\
         alice: root\n"
    );
    let setup = Setup {
        aliases,
        ..Setup::default()
    };
    let d = Daemon::start_with_files(setup, &[("scheduler.conf", SCHED)]);
    let mut c = Client::hello(d.addr());
    for to in [
        "null", "arch", "ok", "later", "nouser", "flood", "hang", "list", "symlink", "hardlink",
        "fifo",
    ] {
        c.send_message(
            "root@test.example",
            &[&format!("{to}@test.example")],
            &format!("Subject: to {to}\r\n\r\nhello {to}\r\n"),
        );
    }
    c.cmd("QUIT", 221);
    let line_for = |to: &str, status: &str| {
        let log = d.log();
        log.lines()
            .find(|l| l.contains(&format!("to=<{to}@test.example>")) && l.contains(status))
            .map(str::to_string)
    };
    let wait = |to: &str, status: &str, secs: u64| {
        d.wait_until(&format!("{to} {status}"), secs, || {
            line_for(to, status).is_some()
        });
        line_for(to, status).unwrap()
    };
    assert!(wait("null", "status=sent", 20).contains("discarded (/dev/null)"));
    wait("arch", "status=sent", 20);
    let archive = std::fs::read_to_string(out.join("archive")).unwrap();
    assert!(archive.starts_with("From root@test.example "), "{archive}");
    assert!(archive.contains("Subject: to arch"), "{archive}");
    wait("ok", "status=sent", 20);
    let piped = std::fs::read_to_string(out.join("ok.out")).unwrap();
    assert!(
        piped.starts_with("Return-Path: <root@test.example>\n"),
        "{piped}"
    );
    assert!(
        piped.contains("hello ok\n") && !piped.contains('\r'),
        "LF line ends: {piped}"
    );
    let ran_as: u32 = std::fs::read_to_string(out.join("ok.uid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if is_root() {
        assert_eq!(
            ran_as,
            uid_of("nobody"),
            "root's aliases run as nobody, never root"
        );
        let m = std::fs::metadata(out.join("archive")).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (uid_of("nobody"), 0o600));
    }
    assert!(wait("later", "status=deferred", 20).contains("exited with status 75"));
    let bounced = wait("nouser", "status=bounced", 20);
    assert!(
        bounced.contains("dsn=5.1.1") && bounced.contains("Command output: no such user"),
        "{bounced}"
    );
    wait("flood", "status=sent", 30);
    assert!(std::fs::read_to_string(out.join("flood.out"))
        .unwrap()
        .contains("hello flood"));
    // :include: — a local user and a file target, read with the include's owner.
    wait("list", "status=sent", 20);
    assert!(std::fs::read_to_string(out.join("from-include"))
        .unwrap()
        .contains("Subject: to list"));
    // The traps defer, and nothing is written through them.
    assert!(wait("symlink", "status=deferred", 20).contains("symbolic link"));
    assert_eq!(
        std::fs::read_to_string(out.join("secret")).unwrap(),
        "root's own\n"
    );
    assert!(wait("hardlink", "status=deferred", 20).contains("links"));
    assert_eq!(std::fs::read_to_string(out.join("shared")).unwrap(), "");
    assert!(wait("fifo", "status=deferred", 20).contains("FIFO"));
    // The command that hangs is stopped at the time limit and deferred.
    let hang = wait("hang", "status=deferred", 80);
    assert!(hang.contains("time limit"), "{hang}");
    // Our own command (its pid noted by itself), not any sleep on the machine.
    let pid = std::fs::read_to_string(out.join("hang.pid")).unwrap();
    let cmdline = format!("/proc/{}/cmdline", pid.trim());
    d.wait_until("the hung command killed", 10, || {
        std::fs::read(&cmdline).map_or(true, |c| c != b"/bin/sleep\x00600\x00")
    });
}

#[test]
fn a_target_the_aliases_no_longer_name_is_not_run() {
    // The helper reads the aliases itself: after a change, a queued message for a
    // removed command target waits (deferred) instead of running it.
    let dir = crate::util::TempDir::new("gone");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let marker = dir.0.join("ran");
    let setup = Setup {
        aliases: format!("prog: \"|/bin/sh -c 'touch {}'\"\n", marker.display()),
        ..Setup::default()
    };
    let held = "*/* queueonly expiry=1d\nlocal/* queueonly command=local\nsmtp*/* command=smtp\n";
    let d = Daemon::start_with_files(setup, &[("scheduler.conf", held)]);
    let mut c = Client::hello(d.addr());
    c.send_message(
        "root@test.example",
        &["prog@test.example"],
        "Subject: x\r\n\r\nx\r\n",
    );
    c.cmd("QUIT", 221);
    d.wait_until("queued", 10, || d.queue_files().len() == 1);
    std::fs::write(d.dir.0.join("db/aliases"), "prog: root\n").unwrap();
    let (code, _, _) = d.run(&["flush", "#local"]);
    assert_eq!(code, 0);
    d.wait_until("the deferral", 20, || {
        d.log().contains("no alias names this target any more")
    });
    assert!(
        !marker.exists(),
        "a command no alias names any more never runs"
    );
}

const FWD_USER: &str = "etrnd-fwd";

#[test]
fn dot_forward_as_the_recipient_with_every_target_kind_and_no_loop() {
    if !is_root() || !std::path::Path::new("/usr/sbin/useradd").exists() {
        assert!(
            std::env::var_os("ETRND_REQUIRE_TOOLS").is_none(),
            "needs root and useradd"
        );
        crate::util::skip(".forward needs root and useradd");
        return;
    }
    let (uid, home, _held) = crate::util::home_account(FWD_USER);
    let h = home.display();
    let forward = home.join(".forward");
    let write_forward = |text: &str| {
        std::fs::write(&forward, text).unwrap();
        std::os::unix::fs::chown(&forward, Some(uid), Some(uid)).unwrap();
        std::fs::set_permissions(&forward, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    write_forward(&format!(
        "# keep a copy, send one to alice, run a program, file one\n\
         \\{FWD_USER}, alice\n\"|/bin/sh -c 'cat > {h}/fwd.out'\"\n{h}/fwd.file\n"
    ));
    let d = Daemon::start_with_files(Setup::default(), &[("scheduler.conf", SCHED)]);
    let mut c = Client::hello(d.addr());
    c.send_message(
        "root@test.example",
        &[&format!("{FWD_USER}@test.example")],
        "Subject: forwarded\r\n\r\nhello\r\n",
    );
    d.wait_until("the forward", 20, || d.log().contains("forwarded as "));
    // Its own mailbox, the program and the file, all as the recipient.
    let own = d.dir.0.join(format!("mail/{FWD_USER}/new"));
    d.wait_until("the own copy", 10, || crate::util::list(&own).len() == 1);
    let out = std::fs::read_to_string(home.join("fwd.out")).unwrap();
    assert!(out.contains("Subject: forwarded"), "{out}");
    assert_eq!(std::fs::metadata(home.join("fwd.out")).unwrap().uid(), uid);
    let file = home.join("fwd.file");
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("Subject: forwarded"));
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), uid);
    // Alice's copy (alice is root's alias) keeps the sender and says where it went.
    let roots = d.dir.0.join("mail/root/new");
    d.wait_until("alice's copy", 10, || crate::util::list(&roots).len() == 1);
    let copy = std::fs::read_to_string(roots.join(&crate::util::list(&roots)[0])).unwrap();
    assert!(copy.contains("Return-Path: <root@test.example>"), "{copy}");
    assert!(
        copy.contains(&format!("Delivered-To: {FWD_USER}@mx.test.example")),
        "{copy}"
    );
    // A .forward back to the user's own address is a loop: one bounce, no storm.
    write_forward(&format!("{FWD_USER}@test.example\n"));
    c = Client::hello(d.addr());
    c.send_message(
        "root@test.example",
        &[&format!("{FWD_USER}@test.example")],
        "Subject: loop\r\n\r\nround\r\n",
    );
    d.wait_until("the loop bounce", 20, || {
        d.log().contains("mail forwarding loop")
    });
    d.wait_until("the bounce delivered", 10, || {
        crate::util::list(&roots).len() == 2
    });
    // A .forward others may write is refused: the mail waits.
    write_forward("alice\n");
    std::fs::set_permissions(&forward, std::fs::Permissions::from_mode(0o666)).unwrap();
    c = Client::hello(d.addr());
    c.send_message(
        "root@test.example",
        &[&format!("{FWD_USER}@test.example")],
        "Subject: w\r\n\r\nw\r\n",
    );
    d.wait_until("the refusal", 20, || {
        d.log().contains("others may write it")
    });
    let _ = std::fs::remove_dir_all(&home);
}

/// Our log lines as a syslog daemon writes them (time stamp, host, tag, message),
/// for pflogsumm.
fn as_syslog(log: &str) -> String {
    let mut out = String::new();
    for l in log.lines() {
        // "2026-12-07 13:39:10.983 etrnd/local[25705]: info: text"
        let Some((head, rest)) = l.split_once("]: ") else {
            continue;
        };
        let Some(msg) = rest.split_once(": ").map(|(_, m)| m) else {
            continue;
        };
        let (Some(time), Some(tag)) = (head.get(11..19), head.get(24..)) else {
            continue;
        };
        out.push_str(&format!("Dec  7 {time} mx {tag}]: {msg}\n"));
    }
    out
}

#[test]
fn every_kind_of_local_delivery_is_logged_for_what_it_is() {
    let dir = crate::util::TempDir::new("kinds");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = dir.0.display();
    let aliases = format!(
        "null: /dev/null\nfiled: {o}/archive\nrun: \"|/bin/sh -c 'cat > /dev/null'\"\nalice: root\n"
    );
    let mut lines = Vec::new();
    let mut all = String::new();
    for (mailbox, own) in [
        ("mail", "delivered to mailbox"),
        ("mail/", "delivered to maildir"),
    ] {
        let setup = Setup {
            conf: format!("MAILBOX={mailbox}\n"),
            aliases: aliases.clone(),
            ..Setup::default()
        };
        let mut d = Daemon::prepare(setup, &[("scheduler.conf", SCHED)]);
        std::fs::create_dir(d.dir.0.join("mail")).unwrap();
        d.spawn();
        let mut c = Client::hello(d.addr());
        let targets: &[(&str, String)] = if mailbox == "mail" {
            &[
                ("root", own.to_string()),
                ("null", "discarded (/dev/null)".into()),
                ("filed", format!("delivered to file: {o}/archive")),
                (
                    "run",
                    "delivered to command: /bin/sh -c 'cat > /dev/null'".into(),
                ),
            ]
        } else {
            &[("root", own.to_string())]
        };
        for (to, _) in targets {
            c.send_message(
                "root@test.example",
                &[&format!("{to}@test.example")],
                "Subject: k\r\n\r\nx\r\n",
            );
        }
        c.cmd("QUIT", 221);
        d.wait_until("every delivery", 20, || {
            d.log().matches("status=sent").count() >= targets.len()
        });
        let log = d.log();
        for (to, what) in targets {
            let line = log
                .lines()
                .find(|l| {
                    l.contains(&format!("to=<{to}@test.example>")) && l.contains("status=sent")
                })
                .unwrap_or_else(|| panic!("{to}: {log}"))
                .to_string();
            assert!(
                line.ends_with(&format!("status=sent ({what})")),
                "{to}: {line}"
            );
            assert!(line.contains(" etrnd/local["), "{line}");
            lines.push(line);
        }
        all.push_str(&log);
        d.stop();
    }
    // pflogsumm counts five deliveries (and nothing discarded as rejected).
    let Some(pflogsumm) = crate::util::need_tool("pflogsumm", "pflogsumm") else {
        return;
    };
    std::fs::write(dir.0.join("maillog"), as_syslog(&all)).unwrap();
    let out = std::process::Command::new(&pflogsumm)
        .args(["--syslog-name=etrnd"])
        .arg(dir.0.join("maillog"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let delivered = report
        .lines()
        .find(|l| l.trim_end().ends_with("delivered"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok());
    assert_eq!(delivered, Some(5), "{report}");
}

#[test]
fn an_alias_to_addresses_elsewhere_gives_the_next_hop_those_addresses() {
    // `fwd: someone@remote.example, other@remote.example, alice`: the relay is asked
    // for each address the alias names (never for fwd@ our own domain), one copy
    // each, and the local name still gets its own.
    let sink = crate::sink::Sink::start(Default::default());
    let setup = Setup {
        routes: format!(".remote.example smtp![127.0.0.1]:{}\n", sink.addr.port()),
        aliases: "fwd: someone@remote.example, other@remote.example, alice\nalice: root\n".into(),
        ..Setup::default()
    };
    let sched = "*/* interval=1h retries=\"1\" expiry=1d\nlocal/* queueonly command=local\n\
                 smtp*/* command=smtp\n";
    let d = Daemon::start_with_files(setup, &[("scheduler.conf", sched)]);
    let mut c = Client::hello(d.addr());
    c.send_message(
        "sender@far.example",
        &["fwd@test.example"],
        "Subject: forwarded\r\n\r\nx\r\n",
    );
    c.cmd("QUIT", 221);
    let got = sink.wait_for(1, 15);
    let mut rcpts: Vec<String> = got.iter().flat_map(|m| m.rcpts.clone()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        ["<other@remote.example>", "<someone@remote.example>"],
        "{}",
        d.log()
    );
    // The local copy waits (queue-only local channel) addressed as received.
    d.wait_until("the remote copies done", 10, || {
        d.log().matches("status=sent").count() == 2
    });
    let (_, q, _) = d.run(&["mailq"]);
    assert!(q.contains("fwd@test.example"), "{q}");
}
