//! Independent clients: Python's smtplib talks to the daemon.

use std::process::Command;

use crate::util::Daemon;

fn python(script: &str, port: u16) -> (bool, String) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .output()
        .expect("python3 is needed for interop tests");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const SMTPLIB: &str = r#"
import smtplib, sys
from email.message import EmailMessage
port = int(sys.argv[1])
with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
    code, caps = s.ehlo("py.example")
    assert code == 250, code
    for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes"):
        assert s.has_extn(ext), ext
    m = EmailMessage()
    m["From"] = "py@example.org"
    m["To"] = "user@client.dom"
    m["Subject"] = "from smtplib"
    m.set_content("Hello from Python.\n.\nA lone dot line above.\n")
    refused = s.send_message(m, to_addrs=["user@client.dom", "alice@test.example"])
    assert refused == {}, refused
    try:
        s.sendmail("py@example.org", ["nobody-such@test.example"], "Subject: x\r\n\r\nx\r\n")
        raise SystemExit("unknown user accepted")
    except smtplib.SMTPRecipientsRefused as e:
        code, msg = e.recipients["nobody-such@test.example"]
        assert code == 550 and b"5.1.1" in msg, (code, msg)
    code, msg = s.noop()
    assert code == 250
print("ok")
"#;

#[test]
fn python_smtplib_sends_and_sees_refusals() {
    let d = Daemon::start();
    let (ok, out) = python(SMTPLIB, d.addr().port());
    assert!(ok, "{out}");
    assert_eq!(d.queue_files().len(), 1);
    let text = d.queued_text();
    assert!(text.contains("Subject: from smtplib"));
    assert!(
        text.contains("\r\n.\r\nA lone dot line above."),
        "dot unstuffed"
    );
    assert!(text.contains("Received: from py.example ([127.0.0.1])"));
    let (_, mailq, _) = d.run(&["mailq"]);
    assert!(mailq.contains("<py@example.org>"), "{mailq}");
}

const RELAY: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
    try:
        s.sendmail("postmaster@test.example", ["user@victim.example"], "Subject: x\r\n\r\nx\r\n")
        raise SystemExit("relayed")
    except smtplib.SMTPRecipientsRefused as e:
        code, msg = e.recipients["user@victim.example"]
        assert code == 554 and b"5.7.1" in msg, (code, msg)
print("ok")
"#;

#[test]
fn python_outside_client_cannot_relay() {
    let d = Daemon::start_with(crate::util::Setup::with_conf("MYNETWORKS=10.0.0.0/8\n"));
    let (ok, out) = python(RELAY, d.addr().port());
    assert!(ok, "{out}");
    assert!(d.queue_files().is_empty());
}
