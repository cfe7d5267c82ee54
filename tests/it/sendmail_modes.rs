//! sendmail's other modes: `-bs` driven by Python's smtplib over a socket pair,
//! `-bp`, `-bi`, `-bv`, `-q`, and the refusal of a mode we do not have.

use std::process::Command;

use crate::util::{bin, Daemon, Setup};

const SCHED: &str = "*/* interval=1s retries=\"1\" expiry=1h\nlocal/* command=local\n\
    smtp*/* queueonly command=smtp\n";

/// smtplib on one end of a socket pair, `etrnd sendmail -bs` on the other as its
/// stdin and stdout.
const SMTPLIB_BS: &str = r#"
import smtplib, socket, subprocess, sys
ours, theirs = socket.socketpair()
p = subprocess.Popen([sys.argv[1], "-f", sys.argv[2], "sendmail", "-bs"], stdin=theirs, stdout=theirs)
theirs.close()
s = smtplib.SMTP()
s.sock = ours
print("GREETING", s.getreply()[0])
print("EHLO", s.ehlo("mua.example")[0], "8bitmime" in s.esmtp_features and "size" in s.esmtp_features)
refused = s.sendmail("carol@test.example", ["alice@test.example", "nosuch@test.example"],
                     "Subject: over a pipe\r\nFrom: carol@test.example\r\n\r\nhello\r\n.dots stay\r\n")
print("REFUSED", sorted((k, v[0]) for k, v in refused.items()))
try:
    s.sendmail("carol@test.example", ["nosuch@test.example"], "Subject: x\r\n\r\ny\r\n")
except smtplib.SMTPRecipientsRefused as e:
    print("ALLREFUSED", [v[0] for v in e.recipients.values()])
print("ETRN", s.docmd("ETRN", "client.dom")[0])
print("QUIT", s.quit()[0])
print("EXIT", p.wait())
"#;

#[test]
fn sendmail_bs_speaks_smtp_to_smtplib_over_a_pipe_pair() {
    let s = Setup {
        conf: "MAILBOX=mail/\n".into(),
        ..Setup::default()
    };
    let d = Daemon::start_with_files(s, &[("scheduler.conf", SCHED)]);
    let out = crate::util::run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(SMTPLIB_BS)
            .arg(bin())
            .arg(d.conf_path()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "GREETING 220",
        "EHLO 250 True",
        "REFUSED [('nosuch@test.example', 550)]",
        "ALLREFUSED [550]",
        "ETRN 502",
        "QUIT 221",
        "EXIT 0",
    ] {
        assert!(
            text.contains(want),
            "{want} in:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let new = d.dir.0.join("mail/root/new");
    d.wait_until("the -bs message delivered", 10, || {
        crate::util::list(&new).len() == 1
    });
    let msg = std::fs::read_to_string(new.join(&crate::util::list(&new)[0])).unwrap();
    assert!(msg.contains("Subject: over a pipe"), "{msg}");
    assert!(
        msg.contains("\n.dots stay") && !msg.contains("..dots"),
        "smtplib's dot-stuffing undone: {msg}"
    );
    assert!(msg.contains("Return-Path: <carol@test.example>"), "{msg}");
    assert!(
        msg.contains("Message-ID: <"),
        "completed like any submission: {msg}"
    );
}

#[test]
fn sendmail_bp_bi_bv_and_q_and_an_unknown_mode() {
    let d = Daemon::start();
    let mut c = crate::util::Client::hello(d.addr());
    c.send_message(
        "s@far.example",
        &["u@client.dom"],
        "Subject: held\r\n\r\nx\r\n",
    );
    d.wait_until("queued", 10, || d.queue_files().len() == 1);
    let id = d.queue_files()[0].clone();
    let (code, out, _) = d.run(&["sendmail", "-bp"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id) && out.contains("u@client.dom"), "{out}");
    let (code, out, _) = d.run(&["sendmail", "-bi"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("aliases checked; etrnd reads them now"),
        "{out}"
    );
    d.wait_until("the reload", 10, || d.log().contains("config reloaded"));
    let (code, out, _) = d.run(&["sendmail", "-bv", "alice@test.example", "u@client.dom"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("alice@test.example") && out.contains("smtp-etrn!mail.client.dom"),
        "{out}"
    );
    let (code, _, _) = d.run(&["sendmail", "-bv", "u@victim.example"]);
    assert_ne!(code, 0, "relaying is refused, so is its verification");
    let (code, out, _) = d.run(&["sendmail", "-q"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("250"), "{out}");
    let (code, _, err) = d.run(&["sendmail", "-bd"]);
    assert_eq!(code, 64);
    assert!(err.contains("mode -bd is not supported"), "{err}");
}

/// Runs the binary under another name (a symbolic link, as Debian's alternatives
/// and mailwrapper(8) run it) with `ETRND_CONF` set.
fn as_named(d: &Daemon, name: &str, args: &[&str], input: &str) -> (i32, String) {
    let link = d.dir.0.join(name);
    if !link.exists() {
        std::os::unix::fs::symlink(crate::util::bin(), &link).unwrap();
    }
    let out = crate::util::run_with_input(
        std::process::Command::new(&link)
            .args(args)
            .env("ETRND_CONF", d.conf_path())
            .stdout(std::process::Stdio::piped()),
        input.as_bytes(),
    );
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
fn every_name_the_system_calls_us_by_and_none_starts_a_daemon() {
    let mut d = Daemon::prepare(crate::util::Setup::default(), &[]);
    let pidfile = d.dir.0.join("etrnd.pid");
    // No daemon: newaliases checks and says so; the others do their job; none of
    // them starts a daemon.
    let (code, out) = as_named(&d, "newaliases", &[], "");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("2 aliases checked; etrnd is not running"),
        "{out}"
    );
    let (code, out) = as_named(&d, "hoststat", &[], "");
    assert_eq!((code, out.contains("nothing")), (0, true), "{out}");
    let (code, out) = as_named(&d, "purgestat", &[], "");
    assert_eq!((code, out.contains("nothing")), (0, true), "{out}");
    let (code, out) = as_named(
        &d,
        "send-mail",
        &["-oi", "-t"],
        "To: alice@test.example\nSubject: via send-mail\n\nhi\n",
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = as_named(&d, "mailq", &[], "");
    assert_eq!(code, 0, "{out}");
    let (code, out) = as_named(&d, "postfix", &[], "");
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("invoked as 'postfix'"), "{out}");
    assert!(!pidfile.exists(), "a daemon was started");
    assert!(!d.log().contains("listening"), "{}", d.log());
    // A broken aliases file: file:line and 78.
    std::fs::write(d.dir.0.join("db/aliases"), "alice: root\nbroken line\n").unwrap();
    let (code, out) = as_named(&d, "newaliases", &[], "");
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("aliases:2:"), "{out}");
    // With a daemon: it is asked to read them again.
    std::fs::write(
        d.dir.0.join("db/aliases"),
        "alice: root\nbob: root\ncarol: root\n",
    )
    .unwrap();
    d.spawn();
    let (code, out) = as_named(&d, "newaliases", &[], "");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("3 aliases checked; etrnd reads them now"),
        "{out}"
    );
    d.wait_until("the reload", 10, || d.log().contains("config reloaded"));
    // The send-mail submission was picked up.
    d.wait_until("the pickup", 10, || d.log().contains("pickup queued"));
}

#[test]
fn mail_from_local_clients_gets_date_message_id_and_our_name_others_do_not() {
    use crate::util::Client;
    // Loopback is MYNETWORKS here: a local program speaking SMTP.
    let d = Daemon::start();
    let mut c = Client::hello(d.addr());
    c.cmd("MAIL FROM:<cron>", 250);
    c.cmd("RCPT TO:<root>", 250);
    c.cmd("DATA", 354);
    c.send_raw(b"Subject: from a local program\r\n\r\nhello\r\n.\r\n");
    c.expect(250);
    c.cmd("QUIT", 221);
    let text = d.queued_text();
    assert!(
        text.contains("Date: ") && text.contains("Message-ID: <"),
        "{text}"
    );
    assert!(text.contains("root@mx.test.example"), "{text}");
    // sendmail -bv and etrnd route take the bare name too.
    let (code, out, _) = d.run(&["route", "root"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("root@mx.test.example"), "{out}");
    let (code, _) = d.sendmail(&["-bv", "root"], "");
    assert_eq!(code, 0);
    // A client outside MYNETWORKS gets neither: its message is stored as sent, and
    // a bare name is no address from it.
    let d = Daemon::start_with(Setup::with_conf("MYNETWORKS=192.0.2.0/24\n"));
    let mut c = Client::hello(d.addr());
    c.cmd("MAIL FROM:<a@far.example>", 250);
    c.cmd("RCPT TO:<root>", 501);
    c.cmd("RCPT TO:<root@mx.test.example>", 250);
    c.cmd("DATA", 354);
    c.send_raw(b"Subject: from outside\r\n\r\nhello\r\n.\r\n");
    c.expect(250);
    let text = d.queued_text();
    assert!(
        !text.contains("Message-ID:") && !text.contains("\nDate: "),
        "{text}"
    );
}
