//! The drop folder as a trust boundary (reference/bad-input.md §I 76, 77): a real
//! unprivileged account, created here with useradd, leaves links, FIFOs, devices,
//! directories, oversized files and lying drop files in the drop folder of a daemon
//! started as root; root's files stay as they were, the daemon never blocks, the
//! submitter is the file's owner, and SMTP's limits apply.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etrnd::smtp::Mailbox;
use etrnd::store::spool::drop::Drop;

use crate::util::{as_attacker, attacker, is_root, Client, Daemon, Setup, ATTACKER};

/// (content, uid, mode) of a file.
fn state(p: &std::path::Path) -> (Vec<u8>, u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (std::fs::read(p).unwrap(), m.uid(), m.mode())
}

#[test]
fn hostile_drop_folder_entries_are_never_followed_read_or_chowned() {
    let Some(uid) = attacker() else { return };
    let mut d = Daemon::prepare(Setup::default(), &[]);
    // Root's file, outside the spool, that the attacker wants.
    let target = d.dir.0.join("root-secret");
    std::fs::write(&target, b"root only\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = state(&target);
    // Make the spool, as the daemon would, then leave the entries.
    etrnd::store::spool::Spool::open(&d.spool()).unwrap();
    // The test's temporary folder must be reachable by the attacker.
    std::fs::set_permissions(&d.dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let drop_dir = d.spool().join("drop");
    let q = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let lying = Drop {
        uid: 0,
        sender: Some(Mailbox::parse("root@test.example").unwrap()),
        rcpts: vec![Mailbox::parse("alice@test.example").unwrap()],
        data: b"Subject: I am root\r\n\r\ntrust me\r\n".to_vec(),
        ..Default::default()
    };
    let many = Drop {
        uid,
        sender: None,
        rcpts: (0..20_000)
            .map(|i| Mailbox::parse(&format!("u{i}@far.example")).unwrap())
            .collect(),
        data: b"Subject: many\r\n\r\nx\r\n".to_vec(),
        ..Default::default()
    };
    let script = format!(
        "cd {dir} && ln -s {t} link && ln -s {t}.missing dangling && mkfifo fifo && \
         mkdir adir && truncate -s 60M big && cat > lying",
        dir = q(&drop_dir),
        t = q(&target)
    );
    let out = as_attacker(&script, &lying.encode());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_attacker(&format!("cat > {}/many", q(&drop_dir)), &many.encode());
    assert!(out.status.success());
    // A hard link to root's file (protected_hardlinks stops a user on Linux; a BSD
    // does not, so the test makes it as root).
    std::fs::hard_link(&target, drop_dir.join("hardlink")).unwrap();
    d.spawn();
    // The daemon serves meanwhile and has dealt with every entry.
    let mut c = Client::hello(d.addr());
    c.cmd("NOOP", 250);
    d.wait_until("the drop folder to be emptied", 10, || {
        crate::util::list(&drop_dir).is_empty()
    });
    let mut c = Client::hello(d.addr());
    c.cmd("NOOP", 250);
    assert_eq!(state(&target), before, "root's file is untouched");
    let log = d.log();
    for (name, why) in [
        ("link", "a symbolic link"),
        ("dangling", "a symbolic link"),
        ("fifo", "a FIFO"),
        ("big", "larger than a message may be"),
        ("hardlink", "a hard link"),
    ] {
        assert!(
            log.lines().any(|l| l.contains("pickup removed")
                && l.contains(&format!("/{name} "))
                && l.contains(why)),
            "{name}: {log}"
        );
    }
    assert!(
        !target.with_extension("missing").exists(),
        "nothing made through the link"
    );
    assert!(
        log.contains("pickup moved-aside")
            && log.contains("/adir reason=\"not a regular file with one link: a directory\""),
        "{log}"
    );
    // The lying file: taken as its owner's, who is logged and named in the trace.
    assert!(
        log.contains(&format!(
            "owner={uid} claimed=0: the owner is the submitter"
        )),
        "{log}"
    );
    assert!(log.contains(&format!("pickup queued uid={uid} ")), "{log}");
    assert!(!log.contains("pickup queued uid=0 "), "{log}");
    // SMTP's recipient limit applies to local submissions too.
    assert!(log.contains("20000 recipients, at most 1000"), "{log}");
    // What was moved aside still belongs to the attacker: nothing was chowned.
    let corrupt = crate::util::list(&d.spool().join("corrupt"));
    assert!(!corrupt.is_empty());
    for f in corrupt {
        let m = std::fs::symlink_metadata(d.spool().join("corrupt").join(&f)).unwrap();
        assert_eq!(m.uid(), uid, "{f}");
    }
    // The trace line is the daemon's: the submitter by uid, whatever the file says.
    let mut c = Client::hello(d.addr());
    c.cmd("NOOP", 250);
    let queued = d.queue_files();
    assert_eq!(queued.len(), 1, "{queued:?}");
    let text = std::fs::read(d.queue_file(&queued[0])).unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains(&format!("(etrnd pickup, from userid {ATTACKER} uid {uid})")),
        "{text}"
    );
}

#[test]
fn a_complete_submission_whose_rename_was_lost_is_delivered_after_restart() {
    // The state a power cut right after sendmail's fsync can leave: only the temp
    // name, with every octet (the data and its name were fsynced before the rename).
    let mut d = Daemon::prepare(Setup::default(), &[]);
    etrnd::store::spool::Spool::open(&d.spool()).unwrap();
    let m = Drop {
        uid: 0,
        sender: Some(Mailbox::parse("me@test.example").unwrap()),
        rcpts: vec![Mailbox::parse("bob@test.example").unwrap()],
        data: b"Subject: survived\r\n\r\nhello\r\n".to_vec(),
        ..Default::default()
    };
    let tmp = d.spool().join("drop/.tmp.abcdef");
    std::fs::write(&tmp, m.encode()).unwrap();
    let partial = d.spool().join("drop/.tmp.partial");
    std::fs::write(&partial, &m.encode()[..40]).unwrap();
    // Older than the grace period a running sendmail could need.
    let old = std::time::SystemTime::now() - Duration::from_secs(120);
    for p in [&tmp, &partial] {
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    d.spawn();
    d.wait_until("the unrenamed submission to be taken", 10, || !tmp.exists());
    assert!(d.log().contains("recovered=unrenamed-temp"), "{}", d.log());
    // An incomplete one is left alone until it is an hour old.
    assert!(partial.exists());
}

const LOCAL_SCHED: &str = "*/* interval=1s retries=\"1\" expiry=1h\nlocal/* command=local\n\
    smtp*/* queueonly command=smtp\nerror/* command=errormail\n";

/// A daemon started as root delivering to `mail` (mbox) or `mail/` (Maildir), with a
/// mail directory the attacker may write in (1777, as /var/mail is on many systems).
fn mail_daemon(mailbox: &str) -> Daemon {
    mail_daemon_with(&format!("MAILBOX={mailbox}\n"))
}

/// The same with the whole extra configuration given.
fn mail_daemon_with(conf: &str) -> Daemon {
    let mut d = Daemon::prepare(Setup::with_conf(conf), &[("scheduler.conf", LOCAL_SCHED)]);
    std::fs::set_permissions(&d.dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mail = d.dir.0.join("mail");
    std::fs::create_dir(&mail).unwrap();
    std::fs::set_permissions(&mail, std::fs::Permissions::from_mode(0o1777)).unwrap();
    d.spawn();
    d
}

fn send_to(d: &Daemon, to: &str, subject: &str) {
    let mut c = Client::hello(d.addr());
    c.send_message(
        "s@far.example",
        &[to],
        &format!("Subject: {subject}\r\n\r\nfor {to}\r\n"),
    );
}

/// Plants a trap as the attacker, sends the attacker a message, waits for the
/// refusal (an unsafe-mailbox line with `marker`), and checks root's folder is empty.
fn trap_refused(d: &Daemon, script: &str, marker: &str, rootdir: &std::path::Path) {
    let seen = count(d, "unsafe-mailbox");
    let out = as_attacker(script, b"");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    send_to(d, &format!("{ATTACKER}@test.example"), script);
    d.wait_until(script, 10, || {
        count(d, "unsafe-mailbox") > seen
            && d.log()
                .lines()
                .any(|l| l.contains("unsafe-mailbox") && l.contains(marker))
    });
    assert!(crate::util::list(rootdir).is_empty(), "{script}");
}

/// A file of root's, mode `mode`, beside the daemon's spool: what an attacker wants.
/// Returns it with its (content, owner, mode) to compare with afterwards.
fn root_file(d: &Daemon, mode: u32) -> (std::path::PathBuf, (Vec<u8>, u32, u32)) {
    let f = d.dir.0.join("root-file");
    std::fs::write(&f, b"root's\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
    let before = state(&f);
    (f, before)
}

fn count(d: &Daemon, what: &str) -> usize {
    d.log().matches(what).count()
}

#[test]
fn mbox_traps_never_write_through_links_fifos_or_foreign_files() {
    let Some(uid) = attacker() else { return };
    let d = mail_daemon("mail");
    let (root_file, before) = root_file(&d, 0o644);
    let rootdir = d.dir.0.join("rootdir");
    std::fs::create_dir(&rootdir).unwrap();
    let mbox = d.dir.0.join("mail").join(ATTACKER);
    let me = format!("{ATTACKER}@test.example");
    let p = |x: &std::path::Path| x.to_str().unwrap().to_string();
    // Each trap in turn: the delivery is deferred with a reason, nothing else moves.
    let traps = [
        (
            format!("ln -s {} {}", p(&root_file), p(&mbox)),
            "a symbolic link",
        ),
        (
            format!("ln -s {}/created {}", p(&rootdir), p(&mbox)),
            "a symbolic link",
        ),
        (format!("mkfifo {}", p(&mbox)), "a FIFO"),
        (format!("mkdir {}", p(&mbox)), "a directory"),
    ];
    for (i, (trap, why)) in traps.iter().enumerate() {
        let out = as_attacker(trap, b"");
        assert!(
            out.status.success(),
            "{trap}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen = count(&d, why);
        let deferred = count(&d, "status=deferred");
        send_to(&d, &me, &format!("trap {i}"));
        d.wait_until(why, 10, || count(&d, why) > seen);
        // The deferral is recorded; the message is held, so that its retry (every
        // second) makes no mailbox in the place of the next trap.
        d.wait_until("the deferral", 10, || {
            count(&d, "status=deferred") > deferred
        });
        let (code, out, _) = d.run(&["queue", "hold", "ALL"]);
        assert_eq!(code, 0, "{out}");
        let mut c = Client::hello(d.addr());
        c.cmd("NOOP", 250);
        assert_eq!(state(&root_file), before, "{trap}");
        assert!(crate::util::list(&rootdir).is_empty(), "{trap}");
        let _ = std::fs::remove_dir(&mbox);
        let _ = std::fs::remove_file(&mbox);
    }
    // A hard link to root's file (made as root: Linux's protected_hardlinks would stop
    // the attacker, a BSD would not).
    std::fs::hard_link(&root_file, &mbox).unwrap();
    send_to(&d, &me, "hard link");
    d.wait_until("the hard link refused", 10, || {
        d.log().contains("links") || d.log().contains("belongs to uid 0")
    });
    assert_eq!(state(&root_file), before);
    std::fs::remove_file(&mbox).unwrap();
    // Another user's mailbox made beforehand by the attacker, mode 0666: the victim's
    // mail never goes into it.
    let victim = d.dir.0.join("mail/daemon");
    let out = as_attacker(&format!("touch {v} && chmod 666 {v}", v = p(&victim)), b"");
    assert!(out.status.success());
    send_to(&d, "daemon@test.example", "for the victim");
    d.wait_until("the foreign mailbox refused", 10, || {
        d.log().contains(&format!("it belongs to uid {uid}, not 1"))
    });
    assert_eq!(
        std::fs::metadata(&victim).unwrap().len(),
        0,
        "nothing written"
    );
    // With the traps gone, every deferred message arrives, in a mailbox that is the
    // recipient's own and private.
    std::fs::remove_file(&victim).unwrap();
    let (code, out, _) = d.run(&["queue", "release", "ALL"]);
    assert_eq!(code, 0, "{out}");
    d.wait_until("the deferred messages delivered", 10, || {
        std::fs::read_to_string(&mbox).is_ok_and(|t| t.matches("\nSubject: ").count() >= 5)
    });
    let m = std::fs::symlink_metadata(&mbox).unwrap();
    assert!(m.is_file());
    assert_eq!((m.uid(), m.mode() & 0o7777), (uid, 0o600));
    // The recipient reads it as itself.
    let out = as_attacker(&format!("cat {}", p(&mbox)), b"");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Subject: hard link"));
}

#[test]
fn a_symlink_flipped_in_a_loop_never_reaches_roots_file() {
    let Some(uid) = attacker() else { return };
    let d = mail_daemon("mail");
    let (root_file, before) = root_file(&d, 0o600);
    let mbox = d.dir.0.join("mail").join(ATTACKER);
    let p = |x: &std::path::Path| x.to_str().unwrap().to_string();
    // For about four seconds the mailbox name flips between a file of the attacker's
    // and a link to root's file, while mail for the attacker keeps arriving.
    let flipper = format!(
        "end=$(($(date +%s) + 4)); while [ $(date +%s) -lt $end ]; do \
         touch {m}.f; mv -f {m}.f {m}; ln -sf {r} {m}.l; mv -f {m}.l {m}; done",
        m = p(&mbox),
        r = p(&root_file)
    );
    let runner = std::thread::spawn(move || as_attacker(&flipper, b""));
    let t0 = Instant::now();
    let mut sent = 0;
    while t0.elapsed() < Duration::from_secs(4) {
        send_to(
            &d,
            &format!("{ATTACKER}@test.example"),
            &format!("race {sent}"),
        );
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = runner.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        state(&root_file),
        before,
        "root's file: content, owner and mode"
    );
    assert!(sent > 10);
    // Nothing is lost: what was refused is delivered once the name is a plain file
    // (what went into the attacker's own files the loop then replaced is theirs).
    let _ = std::fs::remove_file(&mbox);
    let delivered = || {
        d.log()
            .lines()
            .filter(|l| {
                l.contains(&format!("to=<{ATTACKER}@test.example>")) && l.contains("status=sent")
            })
            .count()
    };
    d.wait_until("every message delivered", 10, || delivered() == sent);
    assert_eq!(std::fs::metadata(&mbox).unwrap().uid(), uid);
    assert_eq!(state(&root_file), before);
}

#[test]
fn maildir_traps_are_refused_and_new_maildirs_belong_to_the_recipient() {
    let Some(uid) = attacker() else { return };
    let d = mail_daemon("mail/");
    let rootdir = d.dir.0.join("rootdir");
    std::fs::create_dir(&rootdir).unwrap();
    let md = d.dir.0.join("mail").join(ATTACKER);
    let p = |x: &std::path::Path| x.to_str().unwrap().to_string();
    // The Maildir itself a link to root's folder.
    let script = format!("ln -s {} {}", p(&rootdir), p(&md));
    trap_refused(&d, &script, "not a directory (a link or a file)", &rootdir);
    std::fs::remove_file(&md).unwrap();
    // Its tmp/ a link to root's folder.
    let script = format!(
        "mkdir -m 700 {m} && ln -s {r} {m}/tmp",
        m = p(&md),
        r = p(&rootdir)
    );
    trap_refused(&d, &script, "/tmp reason=", &rootdir);
    // Without traps: a new Maildir, every folder and file the recipient's.
    std::fs::remove_file(md.join("tmp")).unwrap();
    std::fs::remove_dir(&md).unwrap();
    d.wait_until("the deferred messages delivered", 10, || {
        crate::util::list(&md.join("new")).len() == 2
    });
    for sub in ["", "tmp", "new", "cur"] {
        let m = std::fs::symlink_metadata(md.join(sub)).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (uid, 0o700), "{sub}");
    }
    let f = md.join("new").join(&crate::util::list(&md.join("new"))[0]);
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (uid, 0o600));
    let out = as_attacker(&format!("cat {}/new/*", p(&md)), b"");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Subject: "));
}

/// The attacker's home (from the passwd file), made if missing and given to them.
fn attacker_home(uid: u32) -> std::path::PathBuf {
    let out = Command::new("getent")
        .args(["passwd", ATTACKER])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let home = std::path::PathBuf::from(line.split(':').nth(5).unwrap().to_string());
    std::fs::create_dir_all(&home).unwrap();
    let _ = std::fs::remove_dir_all(home.join("Maildir"));
    let _ = std::fs::remove_file(home.join("Maildir"));
    std::os::unix::fs::chown(&home, Some(uid), Some(uid)).ok();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    home
}

#[test]
fn home_maildirs_are_made_by_the_recipient_and_traps_there_refused() {
    let Some(uid) = attacker() else { return };
    let home = attacker_home(uid);
    let mut d = Daemon::prepare(
        Setup::with_conf("MAILBOX=~/Maildir/\n"),
        &[("scheduler.conf", LOCAL_SCHED)],
    );
    let rootdir = d.dir.0.join("rootdir");
    std::fs::create_dir(&rootdir).unwrap();
    d.spawn();
    let p = |x: &std::path::Path| x.to_str().unwrap().to_string();
    // ~/Maildir a link to root's folder: refused, nothing written there.
    let script = format!("ln -s {} {}/Maildir", p(&rootdir), p(&home));
    trap_refused(&d, &script, "Maildir", &rootdir);
    std::fs::remove_file(home.join("Maildir")).unwrap();
    // Without the trap: made by the recipient, in the recipient's home.
    d.wait_until("delivery into ~/Maildir", 10, || {
        crate::util::list(&home.join("Maildir/new")).len() == 1
    });
    for sub in ["Maildir", "Maildir/new"] {
        let m = std::fs::symlink_metadata(home.join(sub)).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (uid, 0o700), "{sub}");
    }
    let _ = std::fs::remove_dir_all(home.join("Maildir"));
}

#[test]
fn a_lock_held_by_another_user_defers_only_that_mailbox() {
    let Some(_) = attacker() else { return };
    let d = mail_daemon("mail");
    let mail = d.dir.0.join("mail");
    // The attacker holds the victim's (daemon's) dot lock for good.
    let lock = mail.join("daemon.lock");
    let out = as_attacker(&format!("touch {}", lock.to_str().unwrap()), b"");
    assert!(out.status.success());
    send_to(&d, "daemon@test.example", "locked out");
    send_to(&d, "root@test.example", "not locked");
    d.wait_until("root's delivery", 10, || mail.join("root").exists());
    d.wait_until("the victim deferred", 10, || {
        d.log().contains("to=<daemon@test.example>")
            && d.log().contains("mailbox is locked (dot lock)")
    });
    // The helper may have made the (empty) mailbox for its recipient; nothing is in it.
    assert_eq!(
        std::fs::metadata(mail.join("daemon")).map_or(0, |m| m.len()),
        0,
        "never into an unlocked box"
    );
    let mut c = Client::hello(d.addr());
    c.cmd("NOOP", 250);
}

#[test]
fn with_user_empty_the_daemon_runs_as_nobody_and_the_traps_still_hold() {
    let Some(uid) = attacker() else { return };
    let d = mail_daemon_with("MAILBOX=mail\nUSER=\n");
    assert!(d.log().contains("running as nobody"), "{}", d.log());
    let pid = d.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
        assert!(!line.split_whitespace().skip(1).any(|u| u == "0"), "{line}");
    }
    let (root_file, before) = root_file(&d, 0o644);
    let mbox = d.dir.0.join("mail").join(ATTACKER);
    as_attacker(
        &format!(
            "ln -s {} {}",
            root_file.to_str().unwrap(),
            mbox.to_str().unwrap()
        ),
        b"",
    );
    send_to(&d, &format!("{ATTACKER}@test.example"), "as nobody");
    d.wait_until("the link refused", 10, || {
        d.log().contains("it is a symbolic link")
    });
    assert_eq!(state(&root_file), before);
    std::fs::remove_file(&mbox).unwrap();
    // The helper makes the mailbox (as root, then hands it over) before the
    // recipient's own process writes the message: wait for the message.
    d.wait_until("the delivery", 10, || {
        std::fs::metadata(&mbox).is_ok_and(|m| m.len() > 0)
    });
    assert_eq!(std::fs::metadata(&mbox).unwrap().uid(), uid);
    // The spool and LOGDIR are not for other users.
    for (dir, what) in [(d.spool(), "spool"), (d.dir.0.join("log"), "LOGDIR")] {
        let out = as_attacker(&format!("ls {}", dir.to_str().unwrap()), b"");
        assert!(!out.status.success(), "{what} listed by another user");
    }
}

#[test]
fn signals_meant_for_the_daemon_leave_its_helper_delivering() {
    if !is_root() {
        crate::util::skip("needs root (the helper exists only when started as root)");
        return;
    }
    let d = mail_daemon("mail");
    let log = d.log();
    let pid = log
        .split("daemon helper pid=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("helper pid logged")
        .to_string();
    // Only ever signal the daemon's own helper: a child of its supervisor, which
    // is the daemon's child.
    let ppid = |pid: &str| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("PPid:")).unwrap();
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    let sup = ppid(&pid);
    assert!(
        log.contains(&format!("daemon supervisor pid={sup}")),
        "{log}"
    );
    assert_eq!(ppid(&sup), d.pid().to_string());
    for sig in ["HUP", "USR1", "INT"] {
        assert!(Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap()
            .success());
    }
    std::thread::sleep(Duration::from_millis(200));
    send_to(&d, "root@test.example", "after signals");
    let mbox = d.dir.0.join("mail/root");
    d.wait_until("the delivery through the helper", 10, || {
        std::fs::read_to_string(&mbox).is_ok_and(|t| t.contains("Subject: after signals"))
    });
}

/// The daemon's own account, in a supplementary group of its own.
const SERVICE: &str = "etrnd-svc";
const SERVICE_GROUP: &str = "etrnd-svcgrp";

#[test]
fn the_daemon_and_its_helper_read_the_account_files_and_load_no_nss_module() {
    if attacker().is_none() {
        return;
    }
    let Some(strace) = crate::util::need_tool("strace", "strace") else {
        return;
    };
    let run = |args: &[&str]| {
        let _ = Command::new(args[0])
            .args(&args[1..])
            .stderr(Stdio::null())
            .status();
    };
    run(&["/usr/sbin/groupadd", "-r", SERVICE_GROUP]);
    run(&["/usr/sbin/useradd", "-M", "-r", "-s", "/bin/sh", SERVICE]);
    run(&["/usr/sbin/usermod", "-a", "-G", SERVICE_GROUP, SERVICE]);
    let d = mail_daemon_with(&format!("MAILBOX=mail\nUSER={SERVICE}\n"));
    // The groups the daemon kept are what the group file gives its account (what
    // initgroups(3) would have set), read by `id` through the system's own NSS.
    let id = Command::new("id").args(["-G", SERVICE]).output().unwrap();
    let mut want: Vec<String> = String::from_utf8_lossy(&id.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    want.sort();
    assert!(
        want.len() >= 2,
        "the service account has a second group: {want:?}"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
    let mut have: Vec<String> = groups
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect();
    have.sort();
    assert_eq!(have, want, "{groups}");
    // The helper looks the recipient up when it delivers: from /etc/passwd itself,
    // with no NSS module loaded and no name service daemon asked.
    let pid = d
        .log()
        .split("daemon helper pid=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("helper pid logged")
        .to_string();
    let st = crate::util::Strace::attach_pid(&strace, &d, &pid, "trace=open,openat,connect");
    send_to(&d, "root@test.example", "no nss");
    let mbox = d.dir.0.join("mail/root");
    d.wait_until("the delivery through the helper", 10, || {
        std::fs::read_to_string(&mbox).is_ok_and(|t| t.contains("Subject: no nss"))
    });
    let lines = st.finish();
    assert!(
        lines.iter().any(|l| l.contains("/etc/passwd")),
        "the helper read the passwd file and the trace saw it: {lines:?}"
    );
    let nss: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("libnss") || l.contains("nscd") || l.contains("sss"))
        .collect();
    assert!(nss.is_empty(), "NSS in the helper: {nss:?}");
}

#[test]
fn a_submission_under_umask_077_is_delivered_and_others_cannot_read_it() {
    let Some(uid) = attacker() else { return };
    let mut d = Daemon::prepare(
        Setup::with_conf("MAILBOX=mail\n"),
        &[("scheduler.conf", LOCAL_SCHED)],
    );
    std::fs::set_permissions(&d.dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in [
        "etrnd.conf",
        "db/routes",
        "db/localnames",
        "db/aliases",
        "scheduler.conf",
    ] {
        std::fs::set_permissions(d.dir.0.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(d.dir.0.join("db"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mail = d.dir.0.join("mail");
    std::fs::create_dir(&mail).unwrap();
    std::fs::set_permissions(&mail, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // The spool exists as the daemon makes it, but the daemon is down: the
    // submissions wait in the drop folder.
    etrnd::store::spool::Spool::open(&d.spool()).unwrap();
    let conf = d.conf_path();
    let bin = crate::util::bin();
    let out = as_attacker(
        &format!(
            "umask 077; {bin} -f {} sendmail root@test.example",
            conf.display()
        ),
        b"Subject: careful user\r\n\r\nsent with umask 077\r\n",
    );
    assert!(out.status.success(), "{out:?}");
    // mutt in batch mode, which sets umask 077 itself, through our sendmail.
    let home = d.dir.0.join("attacker-home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(uid), Some(uid)).unwrap();
    let mutt = crate::util::need_tool("mutt", "mutt");
    if let Some(mutt) = &mutt {
        let out = as_attacker(
            &format!(
                "umask 077; HOME={h} {mutt} -n -F /dev/null -e 'set sendmail=\"{bin} -f {c} sendmail\"' \
                 -e 'set from={ATTACKER}@test.example' -s 'via mutt' root@test.example",
                h = home.display(),
                c = conf.display()
            ),
            b"sent by mutt\n",
        );
        assert!(out.status.success(), "{out:?}");
    }
    let drop_dir = d.spool().join("drop");
    let files = crate::util::list(&drop_dir);
    assert_eq!(files.len(), 1 + usize::from(mutt.is_some()), "{files:?}");
    for f in &files {
        let m = std::fs::metadata(drop_dir.join(f)).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (uid, 0o644), "{f}");
    }
    // Another local user cannot find them to read them.
    crate::util::system_account("etrnd-mua", "/bin/sh");
    let out = crate::util::as_user(
        "etrnd-mua",
        &format!("ls {0} || cat {0}/*", drop_dir.display()),
        b"",
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    // The daemon picks both up and delivers them.
    d.spawn();
    d.wait_until("the deliveries", 20, || {
        std::fs::read_to_string(mail.join("root")).is_ok_and(|t| {
            t.contains("sent with umask 077") && (mutt.is_none() || t.contains("sent by mutt"))
        })
    });
    assert!(crate::util::list(&drop_dir).is_empty());
}

#[test]
fn an_unmovable_drop_entry_and_a_flood_of_wakeups_log_a_line_not_a_flood() {
    if attacker().is_none() {
        return;
    }
    let d = Daemon::start();
    std::fs::set_permissions(&d.dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let drop_dir = d.spool().join("drop");
    // A directory of the attacker's (the daemon cannot move it out of the sticky
    // folder, nor remove it while something is in it), then 20,000 wake-ups.
    let script = format!(
        "mkdir {0}/stuck && touch {0}/stuck/x && python3 -c 'import socket\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         for i in range(20000):\n    s.sendto(b\"!\", \"{1}\")'",
        drop_dir.display(),
        d.spool().join("notify").display()
    );
    let out = as_attacker(&script, b"");
    assert!(out.status.success(), "{out:?}");
    // Mail still flows meanwhile, and is picked up.
    let mut c = Client::hello(d.addr());
    c.cmd("NOOP", 250);
    let (code, _) = d.sendmail(&["u@client.dom"], "Subject: through\r\n\r\nx\r\n");
    assert_eq!(code, 0);
    d.wait_until("the pickup", 10, || d.log().contains("pickup queued"));
    let lines = d.log().lines().filter(|l| l.contains("/stuck")).count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} log lines about it:\n{}",
        d.log()
    );
    // Scans were coalesced: nowhere near one per wake-up.
    assert!(std::path::Path::new(&drop_dir.join("stuck")).exists());
}

/// CPU seconds the process has used (user and system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn unreadable_entries_in_the_drop_folder_hold_nothing_up() {
    if attacker().is_none() {
        return;
    }
    let d = Daemon::start();
    std::fs::set_permissions(&d.dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let drop_dir = d.spool().join("drop");
    let before = cpu_seconds(d.pid());
    // 100 files nobody but the attacker can read, sorted before any real name, and a
    // directory the daemon cannot move.
    let script = format!(
        "cd {} && mkdir '!dir' && touch '!dir/x' && umask 777 && for i in $(seq -w 0 99); do : > \"!$i\"; done",
        drop_dir.display()
    );
    let out = as_attacker(&script, b"");
    assert!(out.status.success(), "{out:?}");
    // A submission behind them is picked up at once.
    let (code, _) = d.sendmail(&["u@client.dom"], "Subject: behind them\r\n\r\nx\r\n");
    assert_eq!(code, 0);
    d.wait_until("the pickup", 10, || d.log().contains("pickup queued"));
    // The unreadable files were moved aside, the directory noted once.
    d.wait_until("the folder cleared", 10, || {
        crate::util::list(&drop_dir) == vec!["!dir".to_string()]
    });
    assert_eq!(crate::util::list(&d.spool().join("corrupt")).len(), 100);
    let (code, _) = d.sendmail(&["u@client.dom"], "Subject: and another\r\n\r\nx\r\n");
    assert_eq!(code, 0);
    d.wait_until("the second pickup", 10, || {
        d.log().matches("pickup queued").count() == 2
    });
    let used = cpu_seconds(d.pid()) - before;
    assert!(used < 2.0, "the daemon used {used} s of CPU");
    assert_eq!(
        d.log().lines().filter(|l| l.contains("!dir")).count(),
        1,
        "{}",
        d.log()
    );
}
