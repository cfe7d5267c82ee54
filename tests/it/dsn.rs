//! Delivery status notifications (RFC 3461) and SMTPUTF8 (RFC 6531) end to end:
//! Python's smtplib sends with `mail_options` and `rcpt_options`; etrnd delivers to
//! a mailbox, relays to a next hop that offers DSN and SMTPUTF8 and to one that
//! offers neither; the notices land in the sender's mailbox and are read back with
//! Python's `email` package.

use std::process::Command;

use crate::sink::{Behaviour, Sink};
use crate::util::{Daemon, Setup};

const SCHED: &str = "*/* interval=1s retries=\"1\" expiry=1h\nlocal/* command=local\n\
    smtp-etrn/* queueonly command=smtp\nsmtp*/* command=smtp\nerror/* command=errormail\n";

/// A daemon with mailboxes (Maildir) for test.example, `.modern.example` relayed to
/// a sink that offers DSN and SMTPUTF8, `.plain.example` to one that offers neither.
fn start(modern: &Sink, plain: &Sink) -> Daemon {
    let s = Setup {
        conf: "MAILBOX=mail/\n".into(),
        routes: format!(
            "{}.modern.example smtp![127.0.0.1]:{}\n.plain.example smtp![127.0.0.1]:{}\n",
            crate::util::ROUTES,
            modern.addr.port(),
            plain.addr.port()
        ),
        aliases: "alice: root\nbob: root\nü: root\n\
                  team: root, x@plain.example, y@modern.example\n"
            .into(),
        ..Setup::default()
    };
    Daemon::start_with_files(s, &[("scheduler.conf", SCHED)])
}

fn sinks() -> (Sink, Sink) {
    let modern = Sink::start(Behaviour {
        extensions: &["DSN", "SMTPUTF8"],
        ..Behaviour::default()
    });
    (modern, Sink::start(Behaviour::default()))
}

/// Runs a Python script with the daemon's port as its argument.
fn python(script: &str, port: u16) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

/// Every message in root's Maildir, as text.
fn mailbox(d: &Daemon) -> Vec<String> {
    let new = d.dir.0.join("mail/root/new");
    let mut v: Vec<String> = crate::util::list(&new)
        .iter()
        .map(|f| {
            String::from_utf8_lossy(&std::fs::read(new.join(f)).unwrap()).replace("\r\n", "\n")
        })
        .collect();
    v.sort();
    v
}

fn wait_mail(d: &Daemon, n: usize) -> Vec<String> {
    d.wait_until(&format!("{n} messages in root's mailbox"), 20, || {
        mailbox(d).len() >= n
    });
    mailbox(d)
}

const SEND_DSN: &str = r#"
import smtplib, sys
msg = b"Subject: dsn test\r\nFrom: bob@test.example\r\n\r\nthe body\r\n"
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10) as s:
    s.ehlo("client.example")
    assert s.has_extn("dsn"), s.esmtp_features
    s.sendmail("bob@test.example", ["alice@test.example", "x@plain.example", "y@modern.example"], msg,
               mail_options=["RET=HDRS", "ENVID=QQ314159"],
               rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;first+2Balice@test.example"])
print("sent")
"#;

#[test]
fn success_is_told_for_a_mailbox_and_a_relay_and_passed_on_to_a_next_hop_with_dsn() {
    let (modern, plain) = sinks();
    let d = start(&modern, &plain);
    python(SEND_DSN, d.addr().port());
    // The message for alice, and two notices: delivered (alice), relayed (plain).
    let mail = wait_mail(&d, 3);
    let notices: Vec<&String> = mail
        .iter()
        .filter(|m| m.contains("Subject: Successful Mail Delivery Report"))
        .collect();
    assert_eq!(notices.len(), 2, "{mail:#?}");
    let all = notices.iter().map(|s| s.as_str()).collect::<String>();
    assert!(all.contains("Original-Envelope-Id: QQ314159\n"), "{all}");
    assert!(all.contains(
        "Original-Recipient: rfc822; first+alice@test.example\nFinal-Recipient: rfc822; alice@test.example\nAction: delivered\nStatus: 2.0.0"
    ), "{all}");
    assert!(
        all.contains("Final-Recipient: rfc822; x@plain.example\nAction: relayed\n"),
        "{all}"
    );
    assert!(
        !all.contains("y@modern.example"),
        "the next hop with DSN tells: {all}"
    );
    assert!(
        all.contains("Subject: dsn test") && !all.contains("the body"),
        "RET=HDRS"
    );
    // The next hop with DSN got the request; the one without got none of it.
    let m = &modern.wait_for(1, 10)[0];
    assert!(m.mail.ends_with(" RET=HDRS ENVID=QQ314159"), "{}", m.mail);
    assert_eq!(
        m.rcpts,
        vec!["<y@modern.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;first+2Balice@test.example"]
    );
    let p = &plain.wait_for(1, 10)[0];
    assert!(
        !p.mail.contains("RET=") && p.rcpts == vec!["<x@plain.example>"],
        "{p:?}"
    );
    // Each notice is a DSN that Python's email package reads as one.
    let out = python(
        &format!(
            r#"
import email, email.policy, sys, pathlib
for f in sorted(pathlib.Path("{}").iterdir()):
    m = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
    if m.get_content_type() == "multipart/report":
        parts = [p.get_content_type() for p in m.iter_parts()]
        print(m["Subject"], parts)
"#,
            d.dir.0.join("mail/root/new").display()
        ),
        0,
    );
    assert_eq!(
        out.matches("['text/plain', 'message/delivery-status', 'text/rfc822-headers']")
            .count(),
        2,
        "{out}"
    );
}

const SEND_FAILING: &str = r#"
import smtplib, sys
msg = b"Subject: will fail\r\n\r\nsecret body\r\n"
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10) as s:
    s.ehlo("client.example")
    s.mail("bob@test.example", ["RET=FULL"])
    s.rcpt("reject-never@plain.example", ["NOTIFY=NEVER"])
    s.rcpt("reject-told@plain.example", ["ORCPT=rfc822;told@orig.example"])
    s.rcpt("reject-success@plain.example", ["NOTIFY=SUCCESS"])
    code, _ = s.data(msg)
    assert code == 250
print("sent")
"#;

#[test]
fn never_and_success_alone_suppress_the_bounce_and_ret_full_returns_the_message() {
    let (modern, plain) = sinks();
    let d = start(&modern, &plain);
    python(SEND_FAILING, d.addr().port());
    let mail = wait_mail(&d, 1);
    d.wait_until("the queue to empty", 20, || d.queue_files().is_empty());
    let mail_after = mailbox(&d);
    assert_eq!(
        mail_after.len(),
        1,
        "one bounce, for one recipient: {mail:#?}"
    );
    let b = &mail_after[0];
    assert!(
        b.contains("Subject: Undelivered Mail Returned to Sender"),
        "{b}"
    );
    assert!(b.contains(
        "Original-Recipient: rfc822; told@orig.example\nFinal-Recipient: rfc822; reject-told@plain.example\nAction: failed\nStatus: 5.1.1"
    ), "{b}");
    assert!(
        !b.contains("reject-never") && !b.contains("reject-success"),
        "{b}"
    );
    assert!(b.contains("Content-Type: message/rfc822\n\n"), "{b}");
    assert!(
        b.contains("secret body"),
        "RET=FULL returns the message: {b}"
    );
    assert!(d.log().contains("bounce"), "{}", d.log());
}

const SEND_UTF8: &str = r#"
import smtplib, sys
msg = "Subject: grüße\r\nFrom: bob@test.example\r\n\r\nÜnïcödé body\r\n".encode()
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10) as s:
    s.ehlo("client.example")
    assert s.has_extn("smtputf8"), s.esmtp_features
    refused = s.sendmail("bob@test.example",
                         ["ü@test.example", "jürgen@plain.example", "zoë@bücher.modern.example"],
                         msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    assert not refused, refused
    # Without SMTPUTF8 a UTF-8 address is refused, 553 5.6.7.
    s.mail("bob@test.example")
    code, text = s.rcpt("ü@test.example")
    print("without", code, text.decode())
    s.rset()
print("sent")
"#;

#[test]
fn utf8_mail_reaches_an_alias_and_an_smtputf8_next_hop_and_bounces_5_6_7_elsewhere() {
    let (modern, plain) = sinks();
    let d = start(&modern, &plain);
    let out = python(SEND_UTF8, d.addr().port());
    assert!(out.contains("without 553 5.6.7"), "{out}");
    // The message through the alias ü, and the global bounce for jürgen@plain.
    let mail = wait_mail(&d, 2);
    let got = mail
        .iter()
        .find(|m| m.contains("Subject: grüße") && !m.contains("Undelivered"))
        .expect("the UTF-8 message in root's mailbox");
    assert!(got.contains("Ünïcödé body"), "{got}");
    assert!(got.contains("with UTF8SMTP id"), "RFC 6531 §3.7.3: {got}");
    let b = mail
        .iter()
        .find(|m| m.contains("Undelivered Mail"))
        .expect("a bounce");
    assert!(b.contains("report-type=global-delivery-status"), "{b}");
    assert!(
        b.contains("Content-Type: message/global-delivery-status\n"),
        "{b}"
    );
    assert!(
        b.contains("Final-Recipient: utf-8; jürgen@plain.example\n"),
        "{b}"
    );
    assert!(b.contains("Status: 5.6.7"), "{b}");
    assert!(plain.messages().is_empty(), "never sent without SMTPUTF8");
    let m = &modern.wait_for(1, 10)[0];
    assert!(m.mail.contains(" SMTPUTF8"), "{}", m.mail);
    assert_eq!(m.rcpts, vec!["<zoë@xn--bcher-kva.modern.example>"]);
    assert!(m.data.contains("Subject: grüße"), "{}", m.data);
    // The log shows UTF-8 as UTF-8.
    let log = d.log();
    assert!(
        log.contains("to=<zoë@xn--bcher-kva.modern.example>"),
        "{log}"
    );
}

#[test]
fn sendmail_takes_n_r_v_and_utf8_addresses_and_mailq_shows_them_as_utf8() {
    let (modern, plain) = sinks();
    let d = start(&modern, &plain);
    let (code, err) = d.sendmail(
        &[
            "-f",
            "bob@test.example",
            "-N",
            "success,failure",
            "-R",
            "full",
            "-V",
            "SM-ENV-1",
            "alice@test.example",
            "ü@client.dom",
        ],
        "Subject: from sendmail\n\nsmall body\n",
    );
    assert_eq!(code, 0, "{err}");
    let mail = wait_mail(&d, 2);
    let notice = mail
        .iter()
        .find(|m| m.contains("Successful Mail Delivery Report"))
        .expect("a success notice");
    assert!(
        notice.contains("Original-Envelope-Id: SM-ENV-1\n"),
        "{notice}"
    );
    assert!(notice.contains("Action: delivered\n"), "{notice}");
    assert!(notice.contains("small body"), "-R full: {notice}");
    // The held copy for ü@client.dom: UTF-8 in mailq and mailq -j, and flagged.
    let (_, out, _) = d.run(&["mailq"]);
    assert!(out.contains("ü@client.dom"), "{out}");
    let (_, json, _) = d.run(&["mailq", "-j"]);
    assert!(json.contains("\"ü@client.dom\""), "{json}");
    assert!(
        d.queued_text().contains("\nU SMTPUTF8\n"),
        "{}",
        d.queued_text()
    );
    // Bad values are refused before anything is queued.
    for bad in [["-N", "never,success"], ["-R", "most"], ["-V", "a\u{7}b"]] {
        let (code, err) = d.sendmail(&[bad[0], bad[1], "alice@test.example"], "x\n");
        assert_ne!(code, 0, "{bad:?}: {err}");
    }
}

const SEND_TEAM: &str = r#"
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10) as s:
    s.ehlo("client.example")
    s.sendmail("bob@test.example", ["team@test.example"], b"Subject: to the team\r\n\r\nhi\r\n",
               rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
print("sent")
"#;

#[test]
fn an_alias_with_members_is_told_as_expanded_once_and_its_members_stay_unnamed() {
    let (modern, plain) = sinks();
    let d = start(&modern, &plain);
    python(SEND_TEAM, d.addr().port());
    // The copy for root, and one notice: expanded, for the address the sender gave.
    let mail = wait_mail(&d, 2);
    d.wait_until("the queue to empty", 20, || d.queue_files().is_empty());
    let all = mailbox(&d);
    let notices: Vec<&String> = all
        .iter()
        .filter(|m| m.contains("Successful Mail Delivery Report"))
        .collect();
    assert_eq!(notices.len(), 1, "{mail:#?}");
    let n = notices[0];
    assert!(
        n.contains("Final-Recipient: rfc822; team@test.example\nAction: expanded\n"),
        "{n}"
    );
    assert!(
        !n.contains("plain.example") && !n.contains("modern.example"),
        "{n}"
    );
    // The members go on asking for failures only, with the address the sender gave.
    let m = &modern.wait_for(1, 10)[0];
    assert_eq!(
        m.rcpts,
        vec!["<y@modern.example> NOTIFY=FAILURE ORCPT=rfc822;team@test.example"]
    );
    assert_eq!(plain.wait_for(1, 10)[0].rcpts, vec!["<x@plain.example>"]);
}

#[test]
fn bad_dsn_parameters_and_addresses_get_their_replies_over_a_socket() {
    // reference/bad-input.md §L 99 and 100.
    let (modern, plain) = sinks();
    let d = start(&modern, &plain);
    let mut c = crate::util::Client::hello(d.addr());
    c.cmd("MAIL FROM:<a@b.example> RET=HDRS ENVID=QQ+2B1", 250);
    for bad in [
        "RCPT TO:<alice@test.example> NOTIFY=NEVER,SUCCESS",
        "RCPT TO:<alice@test.example> ORCPT=rfc822;a+2b",
        "RCPT TO:<alice@test.example> NOTIFY=SUCCESS NOTIFY=FAILURE",
    ] {
        c.cmd(bad, 501);
    }
    c.cmd("RCPT TO:<ü@test.example>", 553);
    c.send_raw(b"RCPT TO:<\xff@test.example>\r\n");
    c.expect(501);
    c.cmd("RSET", 250);
    c.cmd(
        &format!("MAIL FROM:<a@b.example> ENVID={}", "x".repeat(101)),
        501,
    );
    c.cmd("MAIL FROM:<a@b.example> SMTPUTF8", 250);
    c.cmd("RCPT TO:<ü@test.example> NOTIFY=NEVER", 250);
    c.cmd("QUIT", 221);
    assert!(d.queue_files().is_empty());
}
