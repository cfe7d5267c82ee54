//! Secure transport, client side: deliveries over STARTTLS and implicit TLS with
//! AUTH, per `db/tls_policy` and `db/authinfo`, against a second etrnd (a
//! STARTTLS+AUTH submission server), and the hostile servers of
//! reference/bad-input.md §J 86–87.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::tls::make_cert;
use crate::util::{Client, Daemon, Setup};

const SCHED: &str = "*/* interval=1s retries=\"3\" expiry=1h\n\
    smtp*/* command=\"smtp -l ${LOGDIR}/smtp.log\"\n\
    error/* command=errormail\n";

fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The ISP side: a submission listener (STARTTLS before AUTH, AUTH before MAIL)
/// and an implicit-TLS one; nobody is in MYNETWORKS, so it relays only for `cust`.
fn isp() -> Option<Daemon> {
    let setup = Setup {
        conf: "LISTEN=\"127.0.0.1:0/submission 127.0.0.1:0/smtps\"\nTLS_CERT=cert.pem\n\
               TLS_KEY=key.pem\nMYNETWORKS=10.255.0.0/16\n"
            .into(),
        routes: ". smtp!mx.far.example\n".into(),
        ..Setup::default()
    };
    let mut d = Daemon::prepare(setup, &[]);
    if !make_cert(&d.dir.0) {
        return None;
    }
    private(&d.dir.0.join("db/secrets"), "cust {PLAIN}s3cret\n");
    d.spawn();
    Some(d)
}

/// The dial-up client: everything relays through `[127.0.0.1]:port`.
fn client(port: u16, policy: &str, authinfo: &str) -> Daemon {
    let setup = Setup {
        routes: format!(". smtp![127.0.0.1]:{port}\n"),
        ..Setup::default()
    };
    let mut d = Daemon::prepare(setup, &[("scheduler.conf", SCHED)]);
    private(&d.dir.0.join("db/tls_policy"), policy);
    private(&d.dir.0.join("db/authinfo"), authinfo);
    d.spawn();
    d
}

/// Sends one message into the client `c` and waits until the ISP queued it.
fn send_through(c: &Daemon, isp: &Daemon, subject: &str) {
    let mut s = Client::hello(c.addr());
    s.send_message(
        "me@client.example",
        &["you@far.example"],
        &format!("Subject: {subject}\r\n\r\nhi\r\n"),
    );
    isp.wait_until("the ISP to queue it", 15, || !isp.queue_files().is_empty());
}

#[test]
fn a_held_message_goes_to_the_isp_over_starttls_with_auth() {
    let Some(isp) = isp() else { return };
    let port = isp.addrs[0].port();
    let c = client(
        port,
        &format!("[127.0.0.1]:{port} encrypt\n"),
        &format!("[127.0.0.1]:{port} cust s3cret\n"),
    );
    send_through(&c, &isp, "out");
    c.wait_until("the client to empty", 15, || c.queue_files().is_empty());
    let text = isp.queued_text();
    assert!(text.contains("Subject: out"), "{text}");
    assert!(text.contains("with ESMTPSA"), "{text}");
    assert!(text.contains("(using TLSv1.3 with cipher"), "{text}");
    let ilog = isp.log();
    // The best mechanism both offer: CRAM-MD5 (a {PLAIN} secret serves it).
    assert!(
        ilog.contains("user=cust mechanism=CRAM-MD5 result=ok"),
        "{ilog}"
    );
    let clog = c.log();
    assert!(clog.contains("smtp client-tls TLSv1.3"), "{clog}");
    assert!(clog.contains("status=sent"), "{clog}");
    assert!(
        !clog.contains("s3cret") && !ilog.contains("s3cret"),
        "a secret reached a log"
    );
    let transcript = std::fs::read_to_string(c.dir.0.join("log/smtp.log")).unwrap();
    assert!(transcript.contains("> STARTTLS"), "{transcript}");
    assert!(
        transcript.contains("> AUTH CRAM-MD5 <redacted>"),
        "{transcript}"
    );
    assert!(transcript.contains("> <redacted>"), "{transcript}");
    assert!(!transcript.contains("s3cret"), "{transcript}");
}

#[test]
fn implicit_tls_on_a_465_style_policy() {
    let Some(isp) = isp() else { return };
    let port = isp.addrs[1].port();
    let c = client(
        port,
        &format!("[127.0.0.1]:{port} encrypt implicit=yes\n"),
        &format!("[127.0.0.1]:{port} cust s3cret\n"),
    );
    send_through(&c, &isp, "465");
    assert!(isp.queued_text().contains("with ESMTPSA"));
}

/// A server that says `220 go` to STARTTLS with a forged reply behind it in the
/// same segment, or offers no STARTTLS at all; records what it was sent.
fn fake_server(inject: bool) -> (u16, std::sync::mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming().take(3) {
            let Ok(mut s) = conn else { return };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let _ = s.write_all(b"220 fake ESMTP\r\n");
            let mut seen = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                seen.push_str(&line);
                let up = line.to_ascii_uppercase();
                let reply: &[u8] = if up.starts_with("EHLO") {
                    if inject {
                        b"250-fake\r\n250 STARTTLS\r\n"
                    } else {
                        b"250-fake\r\n250 PIPELINING\r\n"
                    }
                } else if up.starts_with("STARTTLS") {
                    b"220 go\r\n250-injected\r\n250 AUTH PLAIN\r\n"
                } else if up.starts_with("QUIT") {
                    b"221 bye\r\n"
                } else {
                    b"250 ok\r\n"
                };
                let _ = s.write_all(reply);
            }
            let _ = tx.send(seen);
        }
    });
    (port, rx)
}

#[test]
fn an_injected_reply_behind_starttls_or_a_missing_starttls_defers_and_sends_nothing() {
    for (inject, level, want) in [
        (true, "may", "sent data behind its 220 to STARTTLS"),
        (false, "encrypt", "4.7.4 TLS is required (level encrypt)"),
    ] {
        let (port, rx) = fake_server(inject);
        let c = client(port, &format!("[127.0.0.1]:{port} {level}\n"), "");
        let mut s = Client::hello(c.addr());
        s.send_message(
            "me@client.example",
            &["you@far.example"],
            "Subject: x\r\n\r\nx\r\n",
        );
        let seen = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("a connection");
        assert!(!seen.contains("MAIL FROM"), "sent in plaintext: {seen}");
        c.wait_until("the deferral", 15, || c.log().contains("status=deferred"));
        let log = c.log();
        assert!(log.contains(want), "{log}");
        assert!(!log.contains("status=bounced"), "{log}");
        assert_eq!(c.queue_files().len(), 1, "the message waits");
    }
}

#[test]
fn verify_against_a_self_signed_certificate_defers() {
    let Some(isp) = isp() else { return };
    let port = isp.addrs[0].port();
    let c = client(port, &format!("[127.0.0.1]:{port} verify\n"), "");
    let mut s = Client::hello(c.addr());
    s.send_message(
        "me@client.example",
        &["you@far.example"],
        "Subject: v\r\n\r\nx\r\n",
    );
    c.wait_until("the deferral", 15, || c.log().contains("status=deferred"));
    let log = c.log();
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(isp.queue_files().is_empty(), "nothing was delivered");
}

#[test]
fn etrnd_etrn_uses_the_tls_policy_and_authenticates() {
    let setup = Setup {
        conf: "TLS_CERT=cert.pem\nTLS_KEY=key.pem\nMYNETWORKS=10.255.0.0/16\nETRN_ALLOW=auth\n"
            .into(),
        ..Setup::default()
    };
    let mut isp = Daemon::prepare(setup, &[]);
    if !make_cert(&isp.dir.0) {
        return;
    }
    private(
        &isp.dir.0.join("db/secrets"),
        "cust {PLAIN}s3cret client.dom\n",
    );
    isp.spawn();
    let port = isp.addr().port();
    let c = Daemon::prepare(Setup::default(), &[]);
    private(
        &c.dir.0.join("db/tls_policy"),
        &format!("[127.0.0.1]:{port} encrypt\n"),
    );
    let p = port.to_string();
    let args = ["etrn", "-p", &p, "127.0.0.1", "client.dom"];
    // Without credentials the hub refuses (459: not allowed).
    let (rc, out, err) = crate::util::run_etrnd(&c.conf_path(), &args);
    assert_eq!(rc, 77, "{out}{err}");
    assert!(out.contains("etrn: TLS TLSv1.3"), "{out}");
    private(
        &c.dir.0.join("db/authinfo"),
        &format!("[127.0.0.1]:{port} cust s3cret\n"),
    );
    let (rc, out, err) = crate::util::run_etrnd(&c.conf_path(), &args);
    assert_eq!(rc, 0, "{out}{err}\n{}", isp.log());
    assert!(out.contains("authenticated as cust"), "{out}");
    assert!(isp.log().contains("user=cust"), "{}", isp.log());
}

#[test]
fn fingerprint_and_secure_levels_accept_the_right_certificate_only() {
    let Some(isp) = isp() else { return };
    let port = isp.addrs[0].port();
    let der = std::process::Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(isp.dir.0.join("cert.pem"))
        .output()
        .unwrap()
        .stdout;
    let fp = etrnd::tls::sha256_hex(&der);
    let auth = format!("[127.0.0.1]:{port} cust s3cret\n");
    let ca = isp.dir.0.join("ca.pem");
    for (policy, good) in [
        (
            format!("[127.0.0.1]:{port} fingerprint match=sha256:{fp}\n"),
            true,
        ),
        (
            format!(
                "[127.0.0.1]:{port} fingerprint match=sha256:{}\n",
                "0".repeat(64)
            ),
            false,
        ),
        (
            format!("[127.0.0.1]:{port} secure match=mx.test.example\n"),
            true,
        ),
    ] {
        let mut c = Daemon::prepare(
            Setup {
                conf: format!("TLS_CA_FILE={}\n", ca.display()),
                routes: format!(". smtp![127.0.0.1]:{port}\n"),
                ..Setup::default()
            },
            &[("scheduler.conf", SCHED)],
        );
        private(&c.dir.0.join("db/tls_policy"), &policy);
        private(&c.dir.0.join("db/authinfo"), &auth);
        c.spawn();
        let mut s = Client::hello(c.addr());
        s.send_message(
            "me@client.example",
            &["you@far.example"],
            "Subject: fp\r\n\r\nx\r\n",
        );
        let want = if good {
            "status=sent"
        } else {
            "status=deferred"
        };
        c.wait_until(want, 15, || c.log().contains(want));
        if !good {
            assert!(
                c.log().contains("is not in the policy's match list"),
                "{}",
                c.log()
            );
        }
    }
}
