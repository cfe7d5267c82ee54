//! Local delivery and local submission, read back with Python's `mailbox` module.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::util::{bin, Client, Daemon, Setup};

const SCHED: &str = "*/* interval=1s retries=\"1\" expiry=1h\nlocal/* command=local\n\
    smtp*/* queueonly command=smtp\n";

fn start(mailbox: &str) -> Daemon {
    let s = Setup {
        conf: format!("MAILBOX={mailbox}\n"),
        aliases: "alice: root\nbob: daemon\nstaff: alice, bob\nloop1: loop2\nloop2: loop1\n".into(),
        ..Setup::default()
    };
    Daemon::start_with_files(s, &[("scheduler.conf", SCHED)])
}

fn python(script: &str, arg: &std::path::Path) -> String {
    let out = crate::util::run_ok(Command::new("python3").arg("-c").arg(script).arg(arg));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const READ_MAILDIR: &str = r#"
import mailbox, sys
box = mailbox.Maildir(sys.argv[1], create=False)
for key in sorted(box.keys(), key=lambda k: box[k]["Subject"] or ""):
    m = box[key]
    print("SUBJECT", m["Subject"], "RETURN", m["Return-Path"], "BCC", m["Bcc"], "DATE", bool(m["Date"]), "MSGID", bool(m["Message-ID"]), "FROM", m["From"])
    print("BODY", repr(m.get_payload()))
"#;

const READ_MBOX: &str = r#"
import mailbox, sys
box = mailbox.mbox(sys.argv[1], create=False)
for m in box:
    print("SUBJECT", m["Subject"], "FROM_", m.get_from().split()[0])
    print("BODY", repr(m.get_payload()))
"#;

#[test]
fn smtp_to_maildir_read_back_by_python() {
    let d = start("mail/");
    let mut c = Client::hello(d.addr());
    c.send_message(
        "s@far.example",
        &["alice@test.example"],
        "Subject: hello maildir\r\n\r\nline one\r\n..dot\r\nFrom the start\r\n",
    );
    let new = d.dir.0.join("mail/root/new");
    d.wait_until("maildir delivery", 10, || {
        crate::util::list(&new).len() == 1
    });
    let out = python(READ_MAILDIR, &d.dir.0.join("mail/root"));
    assert!(
        out.contains("SUBJECT hello maildir RETURN <s@far.example>"),
        "{out}"
    );
    assert!(
        out.contains(r"BODY 'line one\n.dot\nFrom the start\n'"),
        "byte-exact body: {out}"
    );
    d.wait_until("queue to empty", 10, || d.queue_files().is_empty());
}

#[test]
fn smtp_to_mbox_read_back_by_python_and_expansion() {
    let d = start("mbox");
    let mut c = Client::hello(d.addr());
    for i in 0..3 {
        c.send_message(
            "s@far.example",
            &["staff@test.example"],
            &format!("Subject: m{i}\r\n\r\nFrom here {i}\r\nbody\r\n"),
        );
    }
    let root = d.dir.0.join("mbox/root");
    let daemon = d.dir.0.join("mbox/daemon");
    d.wait_until("mbox deliveries", 10, || {
        std::fs::read_to_string(&root)
            .map(|t| t.matches("\nbody\n").count())
            .unwrap_or(0)
            == 3
            && std::fs::read_to_string(&daemon)
                .map(|t| t.matches("\nbody\n").count())
                .unwrap_or(0)
                == 3
    });
    let out = python(READ_MBOX, &root);
    assert_eq!(out.matches("SUBJECT m").count(), 3, "{out}");
    assert!(out.contains("FROM_ s@far.example"), "{out}");
    assert!(
        out.contains(r"BODY '>From here 0\nbody\n'"),
        "From_ quoted: {out}"
    );
}

#[test]
fn locked_mbox_defers_then_delivers_untorn() {
    let d = start("mbox");
    std::fs::create_dir_all(d.dir.0.join("mbox")).unwrap();
    let path = d.dir.0.join("mbox/root");
    std::fs::write(&path, "").unwrap();
    // Another program (a mail reader) holds the fcntl lock for 1.5 s.
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg("import fcntl,sys,time\nf=open(sys.argv[1],'a')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\ntime.sleep(1.5)\n")
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let mut c = Client::hello(d.addr());
    c.send_message(
        "s@far.example",
        &["alice@test.example"],
        "Subject: waited\r\n\r\nx\r\n",
    );
    d.wait_until("a deferral for the lock", 10, || {
        d.log().contains("mailbox is locked")
    });
    holder.wait().unwrap();
    d.wait_until("delivery after the lock", 10, || d.queue_files().is_empty());
    let out = python(READ_MBOX, &path);
    assert_eq!(out.matches("SUBJECT waited").count(), 1, "{out}");
}

#[test]
fn sendmail_t_with_bcc_while_the_daemon_runs() {
    let d = start("mail/");
    let (code, err) = d.sendmail(
        &["-t", "-f", "script@test.example"],
        "To: alice@test.example\nBcc: bob@test.example\nSubject: cron report\n\nall good\n.\nnot part of it\n",
    );
    assert_eq!(code, 0, "{err}");
    let root_new = d.dir.0.join("mail/root/new");
    let daemon_new = d.dir.0.join("mail/daemon/new");
    d.wait_until("both deliveries", 10, || {
        crate::util::list(&root_new).len() == 1 && crate::util::list(&daemon_new).len() == 1
    });
    let out = python(READ_MAILDIR, &d.dir.0.join("mail/root"));
    assert!(
        out.contains(
            "SUBJECT cron report RETURN <script@test.example> BCC None DATE True MSGID True"
        ),
        "{out}"
    );
    assert!(out.contains("FROM script@test.example"), "{out}");
    assert!(
        out.contains(r"BODY 'all good\n'"),
        "a lone dot ends the input without -i: {out}"
    );
}

#[test]
fn sendmail_while_the_daemon_is_down_waits_for_it() {
    let mut d = start("mail/");
    assert_eq!(d.stop().code(), Some(0));
    let (code, err) = d.sendmail(&["-i", "alice"], "Subject: offline\n\n.\nkept\n");
    assert_eq!(code, 0, "{err}");
    assert_eq!(crate::util::list(&d.spool().join("drop")).len(), 1);
    d.spawn();
    let new = d.dir.0.join("mail/root/new");
    d.wait_until("pickup at start", 10, || crate::util::list(&new).len() == 1);
    let out = python(READ_MAILDIR, &d.dir.0.join("mail/root"));
    assert!(
        out.contains(r"BODY '.\nkept\n'"),
        "-i keeps the dot line: {out}"
    );
    assert!(crate::util::list(&d.spool().join("drop")).is_empty());
}

#[test]
fn sendmail_refuses_unknown_users_and_bad_usage() {
    let d = start("mail/");
    let (code, err) = d.sendmail(&["nobody-such@test.example"], "Subject: x\n\nx\n");
    assert_eq!(code, 67, "{err}");
    assert!(err.contains("5.1.1"), "{err}");
    let (code, _) = d.sendmail(&[], "Subject: x\n\nx\n");
    assert_eq!(code, 64, "no recipients");
    let (code, err) = d.sendmail(&["-bD"], "");
    assert_eq!(code, 64);
    assert!(err.contains("mode -bD is not supported"), "{err}");
    assert!(crate::util::list(&d.spool().join("drop")).is_empty());
}

#[test]
fn malformed_drop_file_is_quarantined() {
    let mut d = start("mail/");
    d.kill9();
    std::fs::write(
        d.spool().join("drop/deadbeef"),
        b"ETRNDDROP 1\nR x@y\n\ntorn",
    )
    .unwrap();
    d.spawn();
    assert!(crate::util::list(&d.spool().join("drop")).is_empty());
    assert!(crate::util::list(&d.spool().join("corrupt"))
        .iter()
        .any(|n| n.starts_with("drop-")));
    let mut c = Client::hello(d.addr());
    c.cmd("NOOP", 250);
}

#[test]
fn alias_loops_and_unknown_users_are_refused_at_rcpt() {
    let d = start("mail/");
    let mut c = Client::hello(d.addr());
    c.cmd("MAIL FROM:<s@far.example>", 250);
    c.cmd("RCPT TO:<loop1@test.example>", 550);
    c.cmd("RCPT TO:<ghost@test.example>", 550);
    c.cmd("RCPT TO:<MAILER-DAEMON@test.example>", 250);
}

#[test]
fn unprivileged_user_can_submit_but_not_look() {
    if !std::path::Path::new("/usr/bin/setpriv").exists() || !crate::util::is_root() {
        crate::util::skip("needs root and setpriv (util-linux)");
        return;
    }
    let d = start("mail/");
    let as_daemon = |args: &[&str], input: &str| {
        let mut child = Command::new("/usr/bin/setpriv")
            .args(["--reuid=daemon", "--regid=daemon", "--clear-groups", "--"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let conf = d.conf_path();
    let out = as_daemon(
        &[bin(), "-f", conf.to_str().unwrap(), "sendmail", "alice"],
        "Subject: from daemon\n\nhi\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = d.dir.0.join("mail/root/new");
    d.wait_until("delivery of the unprivileged submission", 10, || {
        crate::util::list(&new).len() == 1
    });
    let body = std::fs::read_to_string(new.join(&crate::util::list(&new)[0])).unwrap();
    assert!(
        body.contains("Return-Path: <daemon@mx.test.example>"),
        "{body}"
    );
    // Queue something held, then try to list or read the spool as that user.
    let mut c = Client::hello(d.addr());
    c.send_message(
        "s@far.example",
        &["u@client.dom"],
        "Subject: private\r\n\r\nsecret\r\n",
    );
    let spool = d.spool();
    for probe in [
        vec!["ls", spool.join("drop").to_str().unwrap()],
        vec!["ls", spool.join("queue").to_str().unwrap()],
        // Held mail and its per-destination index are as private as the queue.
        vec!["ls", spool.join("hold").to_str().unwrap()],
        vec!["ls", spool.join("index").to_str().unwrap()],
        vec!["ls", spool.to_str().unwrap()],
    ] {
        let out = as_daemon(&probe, "");
        assert!(!out.status.success(), "{probe:?} should be refused");
    }
    let qfile = d.queue_file(&d.queue_files()[0]);
    let out = as_daemon(&["cat", qfile.to_str().unwrap()], "");
    assert!(!out.status.success(), "queued mail is private");
    // The held message's index line names its recipient's destination: private too,
    // even to someone who knows the file name.
    let index = spool.join("index").join("smtp-etrn!mail.client.dom");
    d.wait_until("the held message parked", 10, || index.exists());
    let out = as_daemon(&["cat", index.to_str().unwrap()], "");
    assert!(!out.status.success(), "the hold index is private");
}

/// The RCPT path never calls into NSS: a thousand local RCPTs (accounts, aliases,
/// unknown users) open neither /etc/passwd nor /etc/nsswitch.conf after start-up;
/// the accounts snapshot answers them. A changed passwd file is noticed (one stat)
/// and read again, off the RCPT path.
#[test]
fn a_thousand_local_rcpts_make_no_passwd_lookup() {
    let Some(strace) = crate::util::need_tool("strace", "strace") else {
        return;
    };
    let d = start("mail/");
    let st = crate::util::Strace::attach(&strace, &d, "trace=open,openat,openat2,connect");
    let mut accepted = 0;
    let mut refused = 0;
    for round in 0..10 {
        // A session per hundred: unknown users count as errors, and too many end it.
        let mut c = Client::hello(d.addr());
        c.cmd("MAIL FROM:<s@far.example>", 250);
        for i in 0..100 {
            let user = match i % 50 {
                0 => format!("nobody-{round}-{i}"),
                n if n % 3 == 0 => "root".to_string(),
                n if n % 3 == 1 => "alice".to_string(),
                _ => "daemon".to_string(),
            };
            c.send(&format!("RCPT TO:<{user}@test.example>"));
            match c.reply().map(|r| r.0) {
                Some(250) => accepted += 1,
                Some(550) => refused += 1,
                other => panic!("RCPT {user}: {other:?}"),
            }
        }
        c.cmd("QUIT", 221);
    }
    assert_eq!((accepted, refused), (980, 20));
    // The control: a reload takes a new snapshot, and the trace must show it read
    // the passwd database then (a tracer that saw nothing would prove nothing).
    d.signal("HUP");
    d.wait_until("the reload", 10, || d.log().contains("config reloaded"));
    let lines = st.finish();
    let is_nss =
        |l: &String| l.contains("/etc/passwd") || l.contains("nsswitch") || l.contains("nscd");
    let reload = lines
        .iter()
        .position(|l| l.contains("etrnd.conf"))
        .unwrap_or_else(|| panic!("the trace shows no reload: {lines:?}"));
    let nss: Vec<&String> = lines[..reload].iter().filter(|l| is_nss(l)).collect();
    assert!(nss.is_empty(), "NSS on the RCPT path: {nss:?}");
    assert!(
        lines[reload..].iter().any(|l| l.contains("/etc/passwd")),
        "the reload's snapshot read /etc/passwd and the trace saw it: {:?}",
        &lines[reload..]
    );
}

#[test]
fn sendmail_t_takes_the_addresses_a_mail_reader_sees_and_keeps_every_octet() {
    // A display name with an escaped quote (Python's formataddr writes these) adds
    // no recipient; a Latin-1 Subject arrives as written; text with no header
    // section is all body.
    let d = start("mail/");
    let input: &[u8] = b"To: \"Mallory\\\" <daemon@test.example>, \\\"\" <alice@test.example>\n\
Subject: caf\xe9\n\nbody\n";
    let out = crate::util::run_with_input(
        std::process::Command::new(crate::util::bin())
            .arg("-f")
            .arg(d.conf_path())
            .args(["sendmail", "-t", "-i"]),
        input,
    );
    assert!(out.status.success(), "{out:?}");
    let (code, err) = d.sendmail(&["-i", "alice"], "hello world\nsecond: line\n");
    assert_eq!(code, 0, "{err}");
    let root_new = d.dir.0.join("mail/root/new");
    d.wait_until("both deliveries", 10, || {
        crate::util::list(&root_new).len() == 2 && d.queue_files().is_empty()
    });
    assert!(
        !d.dir.0.join("mail/daemon/new").exists()
            || crate::util::list(&d.dir.0.join("mail/daemon/new")).is_empty(),
        "the name in quotes got nothing"
    );
    let texts: Vec<Vec<u8>> = crate::util::list(&root_new)
        .iter()
        .map(|f| std::fs::read(root_new.join(f)).unwrap())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.windows(13).any(|w| w == b"Subject: caf\xe9")),
        "the Latin-1 octet as sent"
    );
    let plain = texts
        .iter()
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .find(|t| t.contains("hello world"))
        .unwrap();
    let (head, body) = plain.split_once("\n\n").unwrap();
    assert!(
        head.contains("Message-ID:") && !head.contains("hello world"),
        "{plain}"
    );
    assert_eq!(body, "hello world\nsecond: line\n", "{plain}");
}
