//! ODMR / ATRN (RFC 2645): the provider's replies and turn-around against a scripted
//! customer, held mail going down the turned connection (what is not delivered stays
//! held), etrnd to etrnd with the customer's address changing at every call, and
//! fetchmail as the customer.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::util::{bin, is_root, need_tool, Client, Daemon, Setup};

/// Held for ATRN: `odmr!` routes, and the hold transport that never sends by itself.
const HUB_SCHED: &str = "*/* queueonly expiry=1d\nodmr/* command=hold\nlocal/* command=local\n\
    smtp*/* command=smtp\nerror/* command=errormail\n";
const HUB_ROUTES: &str = "client.dom odmr!\n.client.dom odmr!\nother.dom odmr!\n\
    .other.dom odmr!\nthird.dom odmr!\n";
/// `cust` may release client.dom (exactly) and other.dom with its subdomains;
/// `nobody` has no domains.
const SECRETS: &str = "cust {PLAIN}s3cret client.dom @other.dom\nnobody {PLAIN}x\n\
    third {PLAIN}t3 third.dom\n";

fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The provider: SMTP on `addrs[0]`, ODMR on `addrs[1]`; nobody is in MYNETWORKS.
fn hub(extra: &str) -> Daemon {
    let setup = Setup {
        conf: format!("LISTEN=\"127.0.0.1:0 127.0.0.1:0/odmr\"\nMYNETWORKS=10.255.0.0/16\n{extra}"),
        routes: HUB_ROUTES.into(),
        ..Setup::default()
    };
    let mut d = Daemon::prepare(setup, &[("scheduler.conf", HUB_SCHED)]);
    private(&d.dir.0.join("db/secrets"), SECRETS);
    d.spawn();
    d
}

/// Queues one message for each recipient, from alice@test.example.
fn hold(d: &Daemon, to: &[&str], subject: &str) {
    let mut c = Client::hello(d.addrs[0]);
    c.send_message(
        "alice@test.example",
        to,
        &format!("Subject: {subject}\r\n\r\nheld for ATRN\r\n"),
    );
    c.cmd("QUIT", 221);
}

fn cram(c: &mut Client, user: &str, password: &str) {
    crate::util::cram(c, user, password, 235);
}

/// An ODMR session authenticated as `user`.
fn odmr_session(d: &Daemon, user: &str, password: &str) -> Client {
    let mut c = Client::connect(d.addrs[1]);
    c.expect(220);
    let ehlo = c.cmd("EHLO customer.example", 250);
    assert!(ehlo.contains("ATRN") && ehlo.contains("CRAM-MD5"), "{ehlo}");
    cram(&mut c, user, password);
    c
}

/// The message after a 354, up to its final dot.
fn message_text(c: &mut Client) -> String {
    let mut text = String::new();
    loop {
        let l = c.reply().expect("message text").1;
        if l.trim_end() == "." {
            return text;
        }
        text.push_str(&l);
    }
}

/// Plays the customer's SMTP server on a turned connection: greets, takes every
/// message (`rcpt` answers each RCPT), returns the messages' texts.
fn serve(c: &mut Client, rcpt: impl Fn(&str) -> &'static str) -> Vec<String> {
    c.send("220 customer.example ESMTP ready");
    let mut messages = Vec::new();
    loop {
        let line = c.reply().expect("the provider hung up").1;
        let line = line.trim_end();
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => c.send("250-customer.example\r\n250 PIPELINING"),
            "MAIL" => c.send("250 2.1.0 ok"),
            "RCPT" => c.send(rcpt(line)),
            "DATA" => {
                c.send("354 go ahead");
                messages.push(message_text(c));
                c.send("250 2.0.0 taken");
            }
            "RSET" => c.send("250 2.0.0 ok"),
            "QUIT" => {
                c.send("221 2.0.0 bye");
                return messages;
            }
            other => panic!("unexpected from the provider: {other:?} in {line:?}"),
        }
    }
}

#[test]
fn every_reply_code_of_rfc_2645() {
    let d = hub("");
    // Not on the smtp listener.
    let mut c = Client::hello(d.addrs[0]);
    c.cmd("ATRN client.dom", 502);
    // ODMR port: EHLO, AUTH, ATRN, QUIT only; ATRN only after AUTH.
    let mut c = Client::connect(d.addrs[1]);
    c.expect(220);
    c.cmd("EHLO customer.example", 250);
    c.cmd("MAIL FROM:<a@b.example>", 502);
    c.cmd("ATRN client.dom", 530);
    cram(&mut c, "cust", "s3cret");
    c.cmd("ATRN client.dom,bad..dom", 501);
    // Not entitled to every domain listed: 450, and nothing is sent.
    hold(&d, &["x@client.dom"], "one");
    c.cmd("ATRN client.dom,third.dom", 450);
    c.cmd("ATRN sub.client.dom", 450);
    assert_eq!(d.queue_files().len(), 1, "nothing was sent");
    // Entitled, nothing held for that domain: 453.
    c.cmd("ATRN other.dom", 453);
    // Entitled, mail waiting: 250, and the connection turns around.
    c.cmd("ATRN client.dom", 250);
    let got = serve(&mut c, |_| "250 2.1.5 ok");
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("Subject: one"), "{}", got[0]);
    d.wait_until("the hub to empty", 10, || d.queue_files().is_empty());
    d.wait_until("the claim to end", 10, || d.log().contains("atrn done"));
    let log = d.log();
    assert!(
        log.contains("atrn done user=cust domains=client.dom delivered=1 deferred=0 bounced=0"),
        "{log}"
    );
    // An identity without domains: a bare ATRN is 450.
    let mut n = odmr_session(&d, "nobody", "x");
    n.cmd("ATRN", 450);
    // The auth helper cannot confirm the identity's domains now: 451.
    let mut a = odmr_session(&d, "cust", "s3cret");
    let log = d.log();
    let pid = log
        .split("auth-helper pid=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the auth helper's pid");
    // (The supervisor, stopped, starts no new one meanwhile.)
    let sup = log
        .split("daemon supervisor pid=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the supervisor's pid");
    crate::util::run_ok(Command::new("kill").args(["-STOP", sup]));
    crate::util::run_ok(Command::new("kill").args(["-9", pid]));
    d.wait_until("the daemon to notice", 10, || {
        d.log().contains("auth-helper-died")
    });
    a.cmd("ATRN client.dom", 451);
    // Once a new one is up, ATRN is served again.
    crate::util::run_ok(Command::new("kill").args(["-CONT", sup]));
    d.wait_until("the new auth helper", 10, || {
        d.log().contains("helper-restarted kind=\"auth helper\"")
            && d.log().matches("secrets-loaded").count() >= 2
    });
    let mut a = odmr_session(&d, "cust", "s3cret");
    a.cmd("ATRN other.dom", 453);
}

#[test]
fn too_many_requests_and_a_second_session_of_one_identity_get_450() {
    let d = hub("");
    hold(&d, &["y@third.dom"], "busy");
    let mut first = odmr_session(&d, "third", "t3");
    first.cmd("ATRN third.dom", 250);
    // While the first is turned around, the same identity is refused.
    let mut second = odmr_session(&d, "third", "t3");
    let r = second.cmd("ATRN", 450);
    assert!(r.contains("running"), "{r}");
    let got = serve(&mut first, |_| "250 2.1.5 ok");
    assert_eq!(got.len(), 1);
    // The rate limit: five requests a minute per identity (one used above; the
    // refusal of a busy identity does not count).
    for _ in 0..4 {
        second.cmd("ATRN", 453);
    }
    let r = second.cmd("ATRN", 450);
    assert!(r.contains("too many"), "{r}");
}

#[test]
fn only_the_asked_and_entitled_recipients_go_and_the_rest_stays_held() {
    let d = hub("");
    // One message for three domains: client.dom (asked), other.dom (entitled, not
    // asked) and third.dom (another customer's).
    hold(
        &d,
        &["a@client.dom", "b@mail.other.dom", "c@third.dom"],
        "mixed",
    );
    let mut c = odmr_session(&d, "cust", "s3cret");
    c.cmd("ATRN client.dom", 250);
    let got = serve(&mut c, |_| "250 2.1.5 ok");
    assert_eq!(got.len(), 1);
    // The log is read from the daemon's stderr by a thread: wait for the line.
    d.wait_until("the delivery line", 10, || {
        d.log().contains("to=<a@client.dom>")
    });
    d.wait_until("the claim settled", 10, || d.log().contains("atrn done"));
    let rcpts = d.log();
    assert!(!rcpts.contains("to=<b@mail.other.dom>"), "{rcpts}");
    assert_eq!(d.queue_files().len(), 1, "the message stays for the others");
    // A bare ATRN: all of cust's domains — mail.other.dom by `@other.dom` — but
    // never third.dom.
    let mut c = odmr_session(&d, "cust", "s3cret");
    c.cmd("ATRN", 250);
    serve(&mut c, |_| "250 2.1.5 ok");
    d.wait_until("the second delivery line", 10, || {
        d.log().contains("to=<b@mail.other.dom>")
    });
    let log = d.log();
    assert!(!log.contains("to=<c@third.dom>"), "{log}");
    let (_, mailq, _) = d.run(&["mailq"]);
    assert!(
        mailq.contains("c@third.dom") && mailq.contains("held for ATRN"),
        "{mailq}"
    );
}

#[test]
fn a_dropped_connection_and_a_4xx_keep_mail_held_and_a_5xx_bounces() {
    let d = hub("");
    hold(&d, &["one@client.dom"], "first");
    hold(&d, &["two@client.dom"], "second");
    hold(&d, &["bad@client.dom", "later@client.dom"], "third");
    // The customer drops the connection in the middle of the first message.
    let mut c = odmr_session(&d, "cust", "s3cret");
    c.cmd("ATRN client.dom", 250);
    c.send("220 customer.example ready");
    c.expect_line("EHLO");
    c.send("250 customer.example");
    c.expect_line("MAIL");
    c.send("250 ok");
    c.expect_line("RCPT");
    c.send("250 ok");
    c.expect_line("DATA");
    c.send("354 go");
    drop(c);
    d.wait_until("the claim to end", 10, || d.log().contains("atrn done"));
    assert_eq!(d.queue_files().len(), 3, "everything is still held");
    let (_, mailq, _) = d.run(&["mailq"]);
    assert!(mailq.contains("held"), "{mailq}");
    // Next ATRN: everything comes; 450 for later@ keeps it, 550 for bad@ bounces.
    let mut c = odmr_session(&d, "cust", "s3cret");
    c.cmd("ATRN client.dom", 250);
    let got = serve(&mut c, |line| {
        if line.contains("bad@") {
            "550 5.1.1 no such user"
        } else if line.contains("later@") {
            "450 4.2.0 try later"
        } else {
            "250 2.1.5 ok"
        }
    });
    // Three transactions: the third's recipients were both refused (its DATA
    // pipelined anyway, so it sends nothing the customer keeps).
    assert_eq!(got.len(), 3, "{got:?}");
    d.wait_until("the bounce", 10, || d.log().contains("bounced=1 "));
    let log = d.log();
    assert!(log.contains("delivered=2 deferred=1 bounced=1"), "{log}");
    // The claim's log line comes before its bounce is committed.
    d.wait_until("the bounce queued", 10, || {
        let text = d.queued_text();
        text.contains("bad@client.dom") && text.contains("5.1.1")
    });
    let (_, mailq, _) = d.run(&["mailq"]);
    assert!(mailq.contains("later@client.dom"), "{mailq}");
}

/// Customer-side configuration: a daemon that keeps what it receives queued (its
/// test scheduler holds everything) and reaches the hub's ODMR port.
fn customer(hub: &Daemon, bind: &str, tls_policy: &str) -> Daemon {
    customer_with(hub, bind, tls_policy, "")
}

fn customer_with(hub: &Daemon, bind: &str, tls_policy: &str, extra: &str) -> Daemon {
    let port = hub.addrs[1].port();
    let setup = Setup {
        conf: format!("SMTP_BIND={bind}\n{extra}"),
        localnames: "client.dom\nother.dom\ntest.example\n".into(),
        aliases: "alice: root\nx: root\n".into(),
        ..Setup::default()
    };
    let mut d = Daemon::prepare(setup, &[]);
    private(
        &d.dir.0.join("db/authinfo"),
        &format!("[127.0.0.1]:{port} cust s3cret\n"),
    );
    if !tls_policy.is_empty() {
        private(&d.dir.0.join("db/tls_policy"), tls_policy);
    }
    d.spawn();
    d
}

fn atrn(c: &Daemon, hub: &Daemon, args: &[&str]) -> (i32, String) {
    let port = hub.addrs[1].port().to_string();
    let mut a = vec!["atrn", "-p", &port, "127.0.0.1"];
    a.extend_from_slice(args);
    let (code, out, err) = c.run(&a);
    (code, format!("{out}{err}"))
}

#[test]
fn etrnd_to_etrnd_with_a_new_address_at_every_call() {
    let hub = hub("");
    for (n, addr) in ["127.0.0.3", "127.0.0.7"].iter().enumerate() {
        let subject = format!("call {n}");
        hold(&hub, &["x@client.dom"], &subject);
        let c = customer(&hub, addr, "");
        let (code, out) = atrn(&c, &hub, &["client.dom"]);
        assert_eq!(code, 0, "{out}\n{}", c.log());
        assert!(
            out.contains("1 message(s) received from 127.0.0.1"),
            "{out}"
        );
        let text = c.queued_text();
        assert!(text.contains(&format!("Subject: {subject}")), "{text}");
        assert!(
            text.contains("(ODMR provider 127.0.0.1, turned around by ATRN)"),
            "{text}"
        );
        let log = hub.log();
        assert!(
            log.contains(&format!("address={addr}:")),
            "the hub saw {addr}: {log}"
        );
        hub.wait_until("the hub to empty", 10, || hub.queue_files().is_empty());
        // Nothing held any more: 453, which is success for the customer.
        let (code, out) = atrn(&c, &hub, &[]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("no mail"), "{out}");
        // `etrnd etrn` connects from SMTP_BIND too.
        let smtp = hub.addrs[0].port().to_string();
        c.run(&["etrn", "-p", &smtp, "127.0.0.1", "client.dom"]);
        // The hub logged it before it answered; our reader may lag behind.
        hub.wait_until(&format!("etrn from {addr}"), 10, || {
            hub.log().lines().any(|l| {
                l.contains(&format!("smtp connect address={addr}:")) && l.contains("listener=smtp")
            })
        });
    }
    // Refusals map to exit codes: 450 not entitled is temporary (75).
    let c = customer(&hub, "127.0.0.9", "");
    let (code, out) = atrn(&c, &hub, &["third.dom"]);
    assert_eq!(code, 75, "{out}");
    // A server nobody listens on: 69; no credentials for it: 77.
    let mut c = c;
    let (code, out, _) = c.run(&["atrn", "-p", "1", "127.0.0.1"]);
    assert_eq!(code, 77, "no credentials for [127.0.0.1]:1: {out}");
    private(&c.dir.0.join("db/authinfo"), "[127.0.0.1]:1 cust s3cret\n");
    c.signal("HUP");
    c.wait_until("the reload", 10, || {
        c.log().matches("secrets-loaded").count() >= 2
    });
    let (code, out, _) = c.run(&["atrn", "-p", "1", "127.0.0.1"]);
    assert_eq!(code, 69, "{out}");
    assert!(out.contains("4.4.1"), "{out}");
    // No daemon to ask: 69.
    c.stop();
    let (code, out, _) = c.run(&["atrn", "-p", "1", "127.0.0.1"]);
    assert_eq!(code, 69, "{out}");
    assert!(out.contains("not running"), "{out}");
}

#[test]
fn a_link_up_action_asks_the_provider_with_atrn_and_waits_while_the_link_is_down() {
    let hub = hub("");
    hold(&hub, &["x@client.dom"], "by link-up");
    let port = hub.addrs[1].port();
    let links =
        format!("LINKS=\"isp:[127.0.0.1]\"\nLINK_UP=\"atrn -p {port} 127.0.0.1 client.dom\"\n");
    let c = customer_with(&hub, "127.0.0.5", "", &links);
    // Down: the provider behind the link is not even looked up.
    let (code, out) = atrn(&c, &hub, &["client.dom"]);
    assert_eq!(code, 75, "{out}");
    assert!(out.contains("behind link isp, which is down"), "{out}");
    assert!(!hub.log().contains("address=127.0.0.5:"), "{}", hub.log());
    let (code, out, _) = c.run(&["link", "up", "isp"]);
    assert_eq!(code, 0, "{out}");
    c.wait_until("the action's outcome", 20, || {
        c.log()
            .contains("link action-done name=isp reply=\"250 2.0.0 1 message(s) received")
    });
    assert!(c.queued_text().contains("Subject: by link-up"));
    let (code, status, _) = c.run(&["link", "status"]);
    assert_eq!(code, 0, "{status}");
    assert!(status.starts_with("isp up since "), "{status}");
}

#[test]
fn atrn_over_the_control_socket_is_for_root_and_the_daemons_user_only() {
    if !is_root() {
        return;
    }
    let hub = hub("");
    let c = customer(&hub, "127.0.0.5", "");
    crate::util::system_account("etrnd-odmr-user", "/bin/sh");
    let port = hub.addrs[1].port().to_string();
    let out = Command::new("runuser")
        .args(["-u", "etrnd-odmr-user", "--", bin(), "-f"])
        .arg(c.conf_path())
        .args(["atrn", "-p", &port, "127.0.0.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(77), "{text}");
    assert!(text.contains("5.7.1"), "{text}");
    assert!(
        !hub.log().contains("address=127.0.0.5"),
        "no connection was made"
    );
}

#[cfg(feature = "tls")]
#[test]
fn tls_is_kept_across_the_turn_around() {
    let setup = Setup {
        conf: "LISTEN=\"127.0.0.1:0 127.0.0.1:0/odmr 127.0.0.1:0/submission\"\n\
               MYNETWORKS=10.255.0.0/16\nTLS_CERT=cert.pem\nTLS_KEY=key.pem\n"
            .into(),
        routes: HUB_ROUTES.into(),
        ..Setup::default()
    };
    let mut hub = Daemon::prepare(setup, &[("scheduler.conf", HUB_SCHED)]);
    if !crate::tls::make_cert(&hub.dir.0) {
        return;
    }
    private(&hub.dir.0.join("db/secrets"), SECRETS);
    hub.spawn();
    hold(&hub, &["x@client.dom"], "secret");
    let port = hub.addrs[1].port();
    let c = customer(&hub, "127.0.0.4", &format!("[127.0.0.1]:{port} encrypt\n"));
    let (code, out) = atrn(&c, &hub, &["client.dom"]);
    assert_eq!(code, 0, "{out}\n{}", c.log());
    let text = c.queued_text();
    assert!(text.contains("Subject: secret"), "{text}");
    assert!(text.contains("(using TLSv1."), "TLS carried over: {text}");
    assert!(
        hub.log().contains("smtp tls address=127.0.0.4"),
        "{}",
        hub.log()
    );
    // ATRN on the submission listener: STARTTLS, then AUTH, then ATRN.
    hold(&hub, &["x@client.dom"], "by submission");
    let sub = hub.addrs[2].port();
    private(
        &c.dir.0.join("db/authinfo"),
        &format!("[127.0.0.1]:{sub} cust s3cret\n"),
    );
    private(
        &c.dir.0.join("db/tls_policy"),
        &format!("[127.0.0.1]:{sub} encrypt\n"),
    );
    c.signal("HUP");
    c.wait_until("the reload", 10, || {
        c.log().matches("secrets-loaded").count() >= 2
    });
    let (code, out, _) = c.run(&["atrn", "-p", &sub.to_string(), "127.0.0.1", "client.dom"]);
    assert_eq!(code, 0, "{out}\n{}", c.log());
    assert!(c.queued_text().contains("Subject: by submission"));
    assert!(hub.log().contains("listener=submission"), "{}", hub.log());
}

#[test]
fn fetchmail_as_the_customer() {
    let Some(fetchmail) = need_tool("fetchmail", "fetchmail") else {
        return;
    };
    if !is_root() {
        return; // its own hostname and /etc/hosts need a private UTS and mount namespace
    }
    let hub = hub("");
    // The customer's MTA: a second etrnd that delivers to local mailboxes.
    let sched = "*/* expiry=1d\nlocal/* command=local\nsmtp*/* queueonly command=smtp\n\
                 error/* command=errormail\n";
    let setup = Setup {
        localnames: "client.dom\nother.dom\n".into(),
        aliases: "x: root\n".into(),
        ..Setup::default()
    };
    let local = Daemon::start_with_files(setup, &[("scheduler.conf", sched)]);
    let dir = &local.dir.0;
    let rc = dir.join("fetchmailrc");
    let write_rc = |domains: &str| {
        private(
            &rc,
            &format!(
                "poll 127.0.0.1 protocol odmr service {} user \"cust\" password \"s3cret\" \
                 fetchdomains {domains} smtphost 127.0.0.1/{}\n",
                hub.addrs[1].port(),
                local.addrs[0].port()
            ),
        )
    };
    std::fs::write(
        dir.join("hosts"),
        "127.0.0.1 localhost\n127.0.1.1 customer.test customer\n",
    )
    .unwrap();
    let run = |what: &str| -> i32 {
        let script = format!(
            "hostname customer.test && mount --bind {hosts} /etc/hosts && \
             exec {fetchmail} -f {rc} -v --nodetach --nosyslog",
            hosts = dir.join("hosts").display(),
            rc = rc.display()
        );
        let out = Command::new("unshare")
            .args(["--mount", "--uts", "sh", "-c", &script])
            .env("HOME", dir)
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        eprintln!(
            "fetchmail ({what}) exit {code}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        code
    };
    // 453: nothing held — fetchmail counts that as success.
    write_rc("client.dom");
    assert_eq!(run("nothing held"), 0, "{}", hub.log());
    // 250: the held mail goes through fetchmail into the local MTA and a mailbox.
    hold(&hub, &["x@client.dom"], "via fetchmail");
    assert_eq!(run("mail held"), 0, "{}", hub.log());
    hub.wait_until("the hub to empty", 10, || hub.queue_files().is_empty());
    let new = dir.join("mail/root/new");
    local.wait_until("the mailbox", 15, || crate::util::list(&new).len() == 1);
    let msg = std::fs::read_to_string(new.join(&crate::util::list(&new)[0])).unwrap();
    assert!(msg.contains("Subject: via fetchmail"), "{msg}");
    // 450: a domain cust is not entitled to — a protocol error for fetchmail.
    hold(&hub, &["y@third.dom"], "not yours");
    write_rc("client.dom,third.dom");
    // fetchmail's PS_PROTOCOL.
    assert_eq!(run("not entitled"), 4);
    hub.wait_until("the refusal logged", 10, || {
        hub.log().contains("reason=not-entitled")
    });
    assert_eq!(hub.queue_files().len(), 1, "nothing was sent");
}

#[test]
fn a_hub_killed_in_the_middle_of_a_turned_drain_loses_nothing() {
    let mut d = hub("");
    for i in 0..30 {
        hold(&d, &["x@client.dom"], &format!("n{i}"));
    }
    let subject = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    // First call: ten messages taken, the eleventh received but never answered, then
    // the hub dies (kill -9).
    let mut c = odmr_session(&d, "cust", "s3cret");
    c.cmd("ATRN client.dom", 250);
    c.send("220 customer.example ready");
    let mut taken: Vec<String> = Vec::new();
    loop {
        let line = c.reply().expect("the provider hung up").1;
        let verb = line
            .split(' ')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => c.send("250-customer.example\r\n250 PIPELINING"),
            "MAIL" | "RCPT" => c.send("250 ok"),
            "DATA" => {
                c.send("354 go");
                let text = message_text(&mut c);
                if taken.len() == 10 {
                    break; // in flight: never answered
                }
                taken.push(subject(&text));
                c.send("250 2.0.0 taken");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    d.kill9();
    drop(c);
    d.spawn();
    // Second call to the restarted hub: everything not taken comes, nothing is lost.
    let mut c = odmr_session(&d, "cust", "s3cret");
    c.cmd("ATRN client.dom", 250);
    let rest: Vec<String> = serve(&mut c, |_| "250 2.1.5 ok")
        .iter()
        .map(|t| subject(t))
        .collect();
    let mut all: Vec<String> = taken.iter().chain(&rest).cloned().collect();
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(all.len(), 30, "taken {taken:?}, then {rest:?}");
    // A duplicate only for what was in flight: the last answered message, if the
    // hub died before it recorded that answer.
    assert!(before - all.len() <= 1, "taken {taken:?}, then {rest:?}");
    d.wait_until("the hub to empty", 10, || d.queue_files().is_empty());
}

#[test]
fn hold_quota_refuses_at_rcpt_and_recovers_after_the_release() {
    let d = hub("HOLD_QUOTA=2000\n");
    let mut c = Client::hello(d.addrs[0]);
    let mut accepted = 0;
    let refusal = loop {
        c.cmd("MAIL FROM:<alice@test.example>", 250);
        c.send("RCPT TO:<x@client.dom>");
        let (code, text) = c.reply().unwrap();
        if code != 250 {
            break (code, text);
        }
        c.cmd("DATA", 354);
        c.send_raw(format!("Subject: q{accepted}\r\n\r\n{}\r\n.\r\n", "y".repeat(400)).as_bytes());
        c.expect(250);
        accepted += 1;
        assert!(accepted < 20, "the quota never applied");
    };
    assert_eq!(refusal.0, 452, "{refusal:?}");
    assert!(refusal.1.contains("4.2.2"), "{refusal:?}");
    // Counted from what is on disk: the queue files' octets reached the quota.
    let octets: u64 = d
        .queue_files()
        .iter()
        .map(|f| std::fs::metadata(d.queue_file(f)).unwrap().len())
        .sum();
    assert!(octets >= 2000, "{octets}");
    // Other destinations are not affected.
    c.cmd("RSET", 250);
    c.cmd("MAIL FROM:<alice@test.example>", 250);
    c.cmd("RCPT TO:<y@other.dom>", 250);
    c.cmd("RSET", 250);
    // After the release the destination takes mail again.
    let mut a = odmr_session(&d, "cust", "s3cret");
    a.cmd("ATRN client.dom", 250);
    assert_eq!(serve(&mut a, |_| "250 ok").len(), accepted);
    d.wait_until("the claim to end", 10, || d.log().contains("atrn done"));
    c.cmd("MAIL FROM:<alice@test.example>", 250);
    c.cmd("RCPT TO:<x@client.dom>", 250);
}

/// A provider played by the test: any AUTH is accepted, ATRN gets 250, and then it
/// tries to relay through the customer.
#[test]
fn a_hostile_provider_cannot_relay_through_the_customer_and_no_dns_is_sent() {
    let dns = crate::fakedns::FakeDns::start(Vec::new());
    let provider = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = provider.local_addr().unwrap().port();
    // The customer: our domains are local, everything else would go to the ISP's
    // relay (the dial-up client's default route), and 127.0.0.1 is in MYNETWORKS,
    // so only the turn-around's own rule can refuse the relay. The provider is
    // named, found in the hosts file; DNS is on, at a server that counts queries.
    let setup = Setup {
        conf: format!(
            "HOSTS_ORDER=files dns\nDNS_SERVERS={}\nRESOLV_CONF=resolv.conf\n\
             MYNETWORKS=127.0.0.0/8\n",
            dns.addr
        ),
        routes: ". smtp![127.0.0.1]:1\n".into(),
        localnames: "client.dom\n".into(),
        aliases: "x: root\n".into(),
    };
    let mut c = Daemon::prepare(setup, &[("hosts", "127.0.0.1 hub.test\n")]);
    private(
        &c.dir.0.join("db/authinfo"),
        &format!("[hub.test]:{port} cust s3cret\n"),
    );
    c.spawn();
    let conf = c.conf_path();
    let asker = std::thread::spawn(move || {
        Command::new(bin())
            .arg("-f")
            .arg(&conf)
            .args(["atrn", "-p", &port.to_string(), "hub.test", "client.dom"])
            .output()
            .unwrap()
    });
    let (s, _) = provider.accept().unwrap();
    let mut p = Client::from_stream(s);
    p.send("220 hub.test ESMTP");
    p.expect_line("EHLO");
    p.send("250-hub.test\r\n250-AUTH CRAM-MD5\r\n250 ATRN");
    p.expect_line("AUTH CRAM-MD5");
    p.send(&format!(
        "334 {}",
        etrnd::auth::base64::encode(b"<1.2@hub.test>")
    ));
    p.reply().expect("the CRAM-MD5 answer");
    p.send("235 2.7.0 ok");
    let atrn = p.expect_line("ATRN");
    assert_eq!(atrn, "ATRN client.dom");
    p.send("250 OK now reversing the connection");
    // Reversed: the customer greets and offers nothing to take over the session.
    p.expect(220);
    let ehlo = p.cmd("EHLO hub.test", 250);
    for word in ["STARTTLS", "AUTH", "ATRN"] {
        assert!(!ehlo.contains(word), "{word} offered: {ehlo}");
    }
    p.cmd("MAIL FROM:<spammer@far.example>", 250);
    p.send("RCPT TO:<victim@elsewhere.example>");
    let (code, text) = p.reply().unwrap();
    assert!(
        (550..=554).contains(&code),
        "relayed through the customer: {text}"
    );
    p.send("RCPT TO:<x+routed%elsewhere.example@client.dom>");
    let (code, text) = p.reply().unwrap();
    assert!(code >= 500, "routing in the local part: {text}");
    p.cmd("RCPT TO:<x@client.dom>", 250);
    p.cmd("DATA", 354);
    p.send_raw(b"Subject: from a hostile provider\r\n\r\nhi\r\n.\r\n");
    p.expect(250);
    p.cmd("QUIT", 221);
    let out = asker.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("1 message(s) received from hub.test"),
        "{text}"
    );
    let queued = c.queued_text();
    assert!(
        queued.contains("Subject: from a hostile provider"),
        "{queued}"
    );
    assert!(!queued.contains("victim@elsewhere.example"), "{queued}");
    assert_eq!(dns.count(), 0, "no DNS query from the customer");
}
