//! LMTP (RFC 2033) to Debian's Dovecot (`dovecot-lmtpd`), a private instance with
//! its own configuration and mail store, started by the test: the smtp transport's
//! `-M` hands mail over a unix socket (`-F UNIX:/path`, as ZMailer's
//! scheduler.conf.in does) and over TCP (`-F [addr]:port`), each recipient gets its
//! own result (one whose mail store Dovecot cannot open is deferred alone), and the
//! mail is read back with `doveadm fetch`.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::dovecot::Dovecot;
use crate::util::{is_root, Client, Daemon, Setup};

/// A private Dovecot whose one service is LMTP, on a unix socket and a TCP port;
/// alice and root have homes in its folder, bob's (under /dev/null) cannot be
/// opened, so Dovecot answers 451 for him alone, after the final dot.
fn dovecot_lmtp() -> Option<Dovecot> {
    if !is_root() {
        crate::util::skip("a private Dovecot needs root");
        return None;
    }
    if !std::path::Path::new("/usr/lib/dovecot/lmtp").exists() {
        assert!(
            std::env::var_os("ETRND_REQUIRE_TOOLS").is_none(),
            "dovecot-lmtpd is needed"
        );
        crate::util::skip("needs Dovecot's LMTP server (Debian package dovecot-lmtpd)");
        return None;
    }
    Dovecot::start(
        "dovelmtp",
        "protocols = lmtp\nlisten = 127.0.0.1\nssl = no\n\
         auth_username_format = %Ln\nfirst_valid_uid = 1\n\
         mail_location = maildir:~/Maildir\n\
         passdb {\n  driver = passwd-file\n  args = {d}/users\n}\n\
         userdb {\n  driver = passwd-file\n  args = {d}/users\n  \
         default_fields = uid=65534 gid=65534 home={d}/home/%n\n}\n\
         service lmtp {\n  unix_listener lmtp {\n    mode = 0666\n  }\n  \
         inet_listener lmtp {\n    address = 127.0.0.1\n    port = {port}\n  }\n}\n",
        |d| {
            let home = d.join("home");
            std::fs::create_dir_all(&home).unwrap();
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
            std::fs::write(
                d.join("users"),
                "alice:::::::\nroot:::::::\nbob:::::/dev/null/bob::\n",
            )
            .unwrap();
        },
    )
}

impl Dovecot {
    fn socket(&self) -> String {
        format!("{}/run/lmtp", self.dir.0.display())
    }

    /// `doveadm fetch` of every message of `user`: their headers and bodies.
    fn fetch(&self, user: &str) -> String {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(self.conf())
            .args(["fetch", "-u", user, "hdr body", "mailbox", "INBOX"])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

fn start(dove: &Dovecot) -> Daemon {
    let sched = format!(
        "*/* interval=1s retries=\"1 1 1\" expiry=1h\n\
         local/* command=\"smtp -c $channel -M -x -F UNIX:{} -s\"\n\
         store/* command=\"smtp -c $channel -M -F [127.0.0.1]:{}\"\n\
         error/* command=errormail\n",
        dove.socket(),
        dove.port
    );
    let s = Setup {
        routes: ".store.example store!dovecot\n".into(),
        aliases: "postmaster: root\n".into(),
        ..Setup::default()
    };
    Daemon::start_with_files(s, &[("scheduler.conf", &sched)])
}

#[test]
fn local_mail_reaches_dovecot_over_its_lmtp_socket() {
    let Some(dove) = dovecot_lmtp() else { return };
    let d = start(&dove);
    let mut c = Client::hello(d.addr());
    c.send_message(
        "s@far.example",
        &["root@test.example"],
        "Subject: over the socket\r\n\r\nhello dovecot\r\n",
    );
    d.wait_until("the delivery", 20, || d.log().contains("status=sent"));
    let got = dove.fetch("root");
    assert!(
        got.contains("Subject: over the socket"),
        "{got}\n{}",
        dove.log()
    );
    assert!(got.contains("hello dovecot"), "{got}");
    assert!(
        d.log().contains(&format!("relay=UNIX:{}", dove.socket())),
        "{}",
        d.log()
    );
    d.wait_until("the queue to empty", 10, || d.queue_files().is_empty());
}

#[test]
fn each_recipient_gets_its_own_lmtp_result_and_only_the_refused_one_waits() {
    let Some(dove) = dovecot_lmtp() else { return };
    let d = start(&dove);
    let mut c = Client::hello(d.addr());
    c.send_message(
        "s@far.example",
        &["alice@store.example", "bob@store.example"],
        "Subject: to two\r\n\r\nhello\r\n",
    );
    d.wait_until("alice's delivery and bob's deferral", 20, || {
        let l = d.log();
        l.contains("to=<alice@store.example>")
            && l.contains("status=sent")
            && l.contains("to=<bob@store.example>")
            && l.contains("status=deferred")
    });
    assert!(dove.fetch("alice").contains("Subject: to two"));
    assert!(!dove.fetch("bob").contains("Subject: to two"));
    // bob's recipient is journalled deferred and retried alone: alice gets no copy.
    d.wait_until("bob's retry", 20, || {
        d.log().matches("to=<bob@store.example>").count() >= 2
    });
    assert_eq!(dove.fetch("alice").matches("Subject: to two").count(), 1);
    assert!(
        d.log().contains("said: 451 4.2.0 <bob@store.example>"),
        "Dovecot's own reply for bob alone: {}",
        d.log()
    );
}

/// A scripted LMTP server on loopback: it takes one transaction for `rcpts`
/// recipients and answers the final dot with `after_dot`, then closes.
fn hostile_lmtp(l: &std::net::TcpListener, rcpts: usize, after_dot: &str) {
    let (s, _) = l.accept().unwrap();
    let mut c = Client::from_stream(s);
    c.send("220 lmtp.test LMTP");
    c.expect_line("LHLO");
    c.send("250-lmtp.test\r\n250 PIPELINING");
    c.expect_line("MAIL");
    for _ in 0..rcpts {
        c.expect_line("RCPT");
    }
    c.expect_line("DATA");
    c.send(&format!("250 ok\r\n{}354 go", "250 ok\r\n".repeat(rcpts)));
    while c.expect_any_line() != "." {}
    c.send_raw(after_dot.as_bytes());
}

#[test]
fn a_hostile_lmtp_server_gets_nothing_lost_and_injects_nothing() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let sched = format!(
        "*/* interval=1s retries=\"1\" expiry=1h\n\
         store/* command=\"smtp -M -F [127.0.0.1]:{port}\"\nerror/* command=errormail\n"
    );
    let d = Daemon::start_with_files(
        Setup {
            routes: ".store.example store!lmtp\n".into(),
            ..Setup::default()
        },
        &[("scheduler.conf", &sched)],
    );
    let mut c = Client::hello(d.addr());
    c.send_message(
        "s@far.example",
        &["a@store.example", "b@store.example"],
        "Subject: x\r\n\r\nx\r\n",
    );
    // Fewer replies than recipients, then the connection closes: a stands, b waits.
    hostile_lmtp(&l, 2, "250 2.0.0 a saved\r\n");
    d.wait_until("b deferred", 20, || d.log().contains("status=deferred"));
    // More replies than recipients: neither is taken as delivered.
    hostile_lmtp(&l, 1, "250 2.0.0 b saved\r\n250 2.0.0 extra\r\n");
    // A reply with a CR inside: malformed, nothing of it reaches a log as a line.
    hostile_lmtp(&l, 1, "250 2.0.0 ok\rX-Injected: yes\r\n");
    // Then an honest server takes b.
    hostile_lmtp(&l, 1, "250 2.0.0 b saved at last\r\n");
    d.wait_until("the queue to empty", 30, || d.queue_files().is_empty());
    let log = d.log();
    assert_eq!(log.matches("to=<a@store.example>").count(), 1, "{log}");
    assert!(
        log.contains("status=sent (250 2.0.0 b saved at last)"),
        "{log}"
    );
    assert!(
        !log.contains("(250 2.0.0 extra)") && !log.contains("(250 2.0.0 b saved)"),
        "{log}"
    );
    assert!(!log.lines().any(|l| l.starts_with("X-Injected")), "{log}");
}

#[test]
fn a_success_notice_for_lmtp_says_delivered_and_reaches_the_store_too() {
    let Some(dove) = dovecot_lmtp() else { return };
    let d = start(&dove);
    let mut c = Client::hello(d.addr());
    c.cmd("MAIL FROM:<root@test.example> ENVID=LMTP1", 250);
    c.cmd("RCPT TO:<alice@store.example> NOTIFY=SUCCESS", 250);
    c.cmd("DATA", 354);
    c.send_raw(b"Subject: tell me\r\n\r\nx\r\n.\r\n");
    c.expect(250);
    // alice's copy, then root's notice: both handed to Dovecot over LMTP.
    d.wait_until("the notice in root's store", 20, || {
        dove.fetch("root")
            .contains("Successful Mail Delivery Report")
    });
    let n = dove.fetch("root");
    assert!(n.contains("Original-Envelope-Id: LMTP1"), "{n}");
    assert!(
        n.contains("Final-Recipient: rfc822; alice@store.example")
            && n.contains("Action: delivered"),
        "{n}"
    );
    assert!(dove.fetch("alice").contains("Subject: tell me"));
}
