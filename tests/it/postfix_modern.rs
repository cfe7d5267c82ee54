//! SMTPUTF8 and DSN against Postfix on both sides, each a private Postfix on
//! loopback: Postfix's smtp client relays a UTF-8 message with a DSN request
//! through etrnd (it bounced before etrnd offered SMTPUTF8), and etrnd relays one to
//! Postfix's smtpd, which keeps the request (postcat shows it).

use std::process::Command;

use crate::postfix_tls::Postfix;
use crate::util::{Client, Daemon, Setup};

const SUBMIT: &str = r#"
import smtplib, sys
msg = "Subject: grüße via postfix\r\nFrom: bob@postfix.test\r\n\r\nÜnïcödé\r\n".encode()
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10) as s:
    s.ehlo("client.example")
    s.mail("bob@postfix.test", ["SMTPUTF8", "BODY=8BITMIME", "ENVID=PF1"])
    code, text = s.rcpt("jürgen@far.example", ["NOTIFY=SUCCESS,FAILURE"])
    assert code == 250, (code, text)
    code, text = s.data(msg)
    assert code == 250, (code, text)
print("sent")
"#;

#[test]
fn postfix_relays_utf8_mail_with_a_dsn_request_through_etrnd() {
    let hub = Daemon::start_with(Setup {
        routes: format!("{}. smtp!mx.far.example\n", crate::util::ROUTES),
        ..Setup::default()
    });
    let Some(pf) = Postfix::start(
        "pfutf8",
        &[
            format!("relayhost = [127.0.0.1]:{}", hub.addr().port()),
            "smtputf8_enable = yes".into(),
        ],
    ) else {
        return;
    };
    let out = Command::new("python3")
        .arg("-c")
        .arg(SUBMIT)
        .arg(pf.port.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hub.wait_until("the hub to queue it", 30, || !hub.queue_files().is_empty());
    let log = pf.wait_log("status=sent", 20);
    assert!(log.contains("to=<jürgen@far.example>"), "{log}");
    let text = hub.queued_text();
    assert!(text.contains("\nU SMTPUTF8\n"), "{text}");
    assert!(text.contains("\nE PF1\n"), "{text}");
    assert!(text.contains("\nN SUCCESS,FAILURE\n"), "{text}");
    assert!(text.contains("Subject: grüße via postfix"), "{text}");
    assert!(text.contains("with UTF8SMTP"), "{text}");
}

#[test]
fn etrnd_relays_utf8_mail_with_its_dsn_request_to_postfix() {
    let Some(pf) = Postfix::start(
        "pfdsn",
        &[
            "relay_domains = far.example".into(),
            "defer_transports = smtp".into(),
            "smtputf8_enable = yes".into(),
        ],
    ) else {
        return;
    };
    let d = Daemon::start_with_files(
        Setup {
            routes: format!(".far.example smtp![127.0.0.1]:{}\n", pf.port),
            ..Setup::default()
        },
        &[(
            "scheduler.conf",
            "*/* interval=1s retries=\"3\" expiry=1h\nsmtp*/* command=smtp\nerror/* command=errormail\n",
        )],
    );
    let mut c = Client::hello(d.addr());
    c.cmd(
        "MAIL FROM:<bob@test.example> SMTPUTF8 RET=HDRS ENVID=QQ+2B7",
        250,
    );
    c.cmd(
        "RCPT TO:<zoë@far.example> NOTIFY=SUCCESS,DELAY ORCPT=utf-8;zo+C3+AB@far.example",
        250,
    );
    c.cmd("DATA", 354);
    c.send_raw("Subject: to postfix, grüße\r\n\r\nx\r\n.\r\n".as_bytes());
    c.expect(250);
    d.wait_until("the delivery", 20, || d.log().contains("status=sent"));
    let log = pf.wait_log("zoë@far.example", 10);
    let id = log
        .lines()
        .find(|l| l.contains("from=<bob@test.example>"))
        .and_then(|l| l.split(": ").nth(1))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no queue id in {log}"));
    let out = Command::new("postcat")
        .args([
            "-c",
            &format!("{}/etc", pf.dir.0.display()),
            "-q",
            id.trim(),
        ])
        .output()
        .unwrap();
    let cat = String::from_utf8_lossy(&out.stdout);
    assert!(cat.contains("envelope_id=QQ+7\n"), "{cat}");
    assert!(cat.contains("ret_flags=2\n"), "RET=HDRS: {cat}");
    assert!(cat.contains("notify_flags=10\n"), "SUCCESS|DELAY: {cat}");
    // Sent as RFC 6533's `zo\x{EB}`, read by Postfix as the address.
    assert!(
        cat.contains("dsn_orig_rcpt=utf-8;zoë@far.example\n"),
        "{cat}"
    );
    assert!(cat.contains("recipient: zoë@far.example\n"), "{cat}");
    assert!(cat.contains("Subject: to postfix, grüße"), "{cat}");
    assert!(
        !d.log().contains("success notice"),
        "Postfix offers DSN and tells the sender itself: {}",
        d.log()
    );
}
