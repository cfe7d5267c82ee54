//! AUTH towards a smarthost the way ISPs run them (DESIGN.md §4.5): a relay that
//! offers CRAM-MD5 and refuses it still gets PLAIN (Exim, and Postfix with Dovecot
//! SASL, whose hashed passwords cannot serve CRAM-MD5); `mechs=` pins what is tried;
//! an OAuth 2.0 token printed by a command authenticates with OAUTHBEARER (a scripted
//! server checks it), run as the daemon's user.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::dovecot::Dovecot;
use crate::exim::{ip_up, private, seed_client, Exim};
use crate::util::{free_port, is_root, Client, Daemon, Setup, TempDir};

#[test]
fn a_relay_that_refuses_cram_md5_still_gets_plain_and_mechs_pins_the_order() {
    let Some(exim) = Exim::start_with("", false) else {
        return;
    };
    let c = seed_client(exim.submission, "");
    let mut s = Client::hello(c.addr());
    s.send_message(
        "user@client.dom",
        &["friend@far.example"],
        "Subject: a\r\n\r\nx\r\n",
    );
    let (ok, out) = ip_up(&c);
    assert!(ok, "{out}");
    c.wait_until("the mail to leave", 20, || c.queue_files().is_empty());
    let log = c.log();
    assert!(
        log.contains("client-auth mechanism=CRAM-MD5 result=refused"),
        "{log}"
    );
    assert!(
        log.contains("client-auth mechanism=PLAIN result=ok"),
        "{log}"
    );
    assert!(
        exim.received()[0].contains("A=plain:cust"),
        "{}",
        exim.log()
    );
    // Pinned to PLAIN: CRAM-MD5 is not even tried.
    let port = exim.submission;
    private(
        &c.dir.0.join("db/authinfo"),
        &format!("[mail.isp.dom]:{port} cust s3cret mechs=PLAIN\n"),
    );
    c.signal("HUP");
    c.wait_until("the reload", 10, || {
        c.log().matches("secrets-loaded").count() >= 2
    });
    let before = c.log().matches("mechanism=CRAM-MD5").count();
    s.send_message(
        "user@client.dom",
        &["friend@far.example"],
        "Subject: b\r\n\r\nx\r\n",
    );
    c.run(&["flush", "#smtp-etrn"]);
    c.wait_until("the second mail to leave", 20, || {
        c.queue_files().is_empty() && exim.received().len() == 2
    });
    assert_eq!(
        c.log().matches("mechanism=CRAM-MD5").count(),
        before,
        "{}",
        c.log()
    );
}

/// A private Dovecot whose only service is SASL authentication on a TCP port, with
/// `cust`'s password stored as a SHA-512 crypt hash (so it cannot serve CRAM-MD5).
fn dovecot_sasl() -> Option<Dovecot> {
    let hash = Command::new("openssl")
        .args(["passwd", "-6", "-salt", "dovecotsalt", "s3cret"])
        .output()
        .ok()?;
    let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
    Dovecot::start(
        "dovecot",
        "protocols =\nlisten = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\n\
         auth_mechanisms = plain login cram-md5\n\
         passdb {\n  driver = passwd-file\n  args = scheme=SHA512-CRYPT {d}/users\n}\n\
         userdb {\n  driver = static\n  args = uid=65534 gid=65534 home={d}\n}\n\
         service auth {\n  inet_listener {\n    address = 127.0.0.1\n    port = {port}\n  }\n}\n",
        |d| std::fs::write(d.join("users"), format!("cust:{{SHA512-CRYPT}}{hash}\n")).unwrap(),
    )
}

#[test]
fn postfix_with_dovecot_sasl_refuses_cram_md5_and_plain_gets_through() {
    if !is_root() {
        crate::util::skip("a private Postfix and Dovecot need root");
        return;
    }
    let Some(dove) = dovecot_sasl() else { return };
    let certs = TempDir::new("pf-sasl-certs");
    std::fs::set_permissions(&certs.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    if !crate::tls::make_cert(&certs.0) {
        return;
    }
    let c = certs.0.display();
    let Some(pf) = crate::postfix_tls::Postfix::start(
        "pfsasl",
        &[
            "mynetworks = 10.255.0.0/16".into(),
            "smtpd_tls_security_level = may".into(),
            format!("smtpd_tls_cert_file = {c}/cert.pem"),
            format!("smtpd_tls_key_file = {c}/key.pem"),
            "smtpd_sasl_auth_enable = yes".into(),
            "smtpd_sasl_type = dovecot".into(),
            format!("smtpd_sasl_path = inet:127.0.0.1:{}", dove.port),
            "smtpd_tls_auth_only = yes".into(),
            "smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination"
                .into(),
            "defer_transports = smtp".into(),
        ],
    ) else {
        return;
    };
    let port = pf.port;
    let setup = Setup {
        routes: format!(".far.example smtp![127.0.0.1]:{port}\n"),
        ..Setup::default()
    };
    let mut d = Daemon::prepare(
        setup,
        &[(
            "scheduler.conf",
            "*/* interval=1s retries=\"3\" expiry=1h\nsmtp*/* command=smtp\n",
        )],
    );
    private(
        &d.dir.0.join("db/tls_policy"),
        &format!("[127.0.0.1]:{port} encrypt\n"),
    );
    private(
        &d.dir.0.join("db/authinfo"),
        &format!("[127.0.0.1]:{port} cust s3cret\n"),
    );
    d.spawn();
    let mut s = Client::hello(d.addr());
    s.send_message(
        "me@test.example",
        &["you@far.example"],
        "Subject: via postfix\r\n\r\nx\r\n",
    );
    let log = pf.wait_log("sasl_method=PLAIN, sasl_username=cust", 20);
    assert!(log.contains("CRAM-MD5 authentication failed"), "{log}");
    d.wait_until("the mail to leave", 20, || d.queue_files().is_empty());
    assert!(
        d.log().contains("client-auth mechanism=PLAIN result=ok"),
        "{}",
        d.log()
    );
}

/// A scripted SMTP server that offers only OAUTHBEARER and XOAUTH2 and takes the
/// token `tok-USER` (USER: the account the token command runs as).
const OAUTH_SERVER: &str = r#"
import base64, socket, sys
port, want, out = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", port)); l.listen(5)
c, _ = l.accept(); f = c.makefile("rb")
def say(s): c.sendall(s.encode() + b"\r\n")
say("220 oauth.test ESMTP")
data, seen = [], []
while True:
    line = f.readline()
    if not line: break
    u = line.strip().upper()
    if u.startswith(b"EHLO"): say("250-oauth.test\r\n250 AUTH OAUTHBEARER XOAUTH2")
    elif u.startswith(b"AUTH OAUTHBEARER"):
        raw = base64.b64decode(line.split()[2])
        seen.append(raw)
        if b"auth=Bearer " + want + b"\x01" in raw: say("235 2.7.0 ok")
        else:
            say("334 " + base64.b64encode(b'{"status":"401"}').decode())
            f.readline(); say("535 5.7.8 bad token")
    elif u.startswith(b"MAIL") or u.startswith(b"RCPT"): say("250 ok")
    elif u == b"DATA":
        say("354 go")
        while True:
            d = f.readline()
            if d == b".\r\n": break
            data.append(d)
        say("250 2.0.0 queued")
    elif u == b"QUIT": say("221 bye"); break
    else: say("502 no")
open(out, "wb").write(b"".join(data) + b"\n--\n" + b"\n".join(seen))
"#;

#[test]
fn an_oauth_token_from_a_command_authenticates_with_oauthbearer() {
    let port = free_port();
    let dir = TempDir::new("oauth");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let user = if is_root() {
        crate::util::daemon_account().to_string()
    } else {
        String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
            .trim()
            .to_string()
    };
    let out = dir.0.join("got");
    let mut server = Command::new("python3")
        .args([
            "-c",
            OAUTH_SERVER,
            &port.to_string(),
            &format!("tok-{user}"),
        ])
        .arg(&out)
        .spawn()
        .unwrap();
    let script = dir.0.join("token.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"tok-$(id -un)\"\necho second line ignored\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let setup = Setup {
        routes: format!(".far.example smtp![127.0.0.1]:{port}\n"),
        ..Setup::default()
    };
    let mut d = Daemon::prepare(
        setup,
        &[(
            "scheduler.conf",
            "*/* interval=1s retries=\"3\" expiry=1h\nsmtp*/* command=smtp\n",
        )],
    );
    // Plaintext on loopback for the test (a bearer token goes only under TLS
    // otherwise): the policy says none explicitly.
    private(
        &d.dir.0.join("db/tls_policy"),
        &format!("[127.0.0.1]:{port} none\n"),
    );
    private(
        &d.dir.0.join("db/authinfo"),
        &format!(
            "[127.0.0.1]:{port} me@example.org token=|{}\n",
            script.display()
        ),
    );
    d.spawn();
    let mut s = Client::hello(d.addr());
    s.send_message(
        "me@test.example",
        &["you@far.example"],
        "Subject: oauth\r\n\r\nx\r\n",
    );
    d.wait_until("the delivery", 20, || d.log().contains("status=sent"));
    let _ = server.wait();
    let got = std::fs::read(&out).unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(got.contains("Subject: oauth"), "{got}");
    assert!(
        got.contains(&format!(
            "n,a=me@example.org,\u{1}auth=Bearer tok-{user}\u{1}\u{1}"
        )),
        "{got}"
    );
    assert!(
        d.log()
            .contains("client-auth mechanism=OAUTHBEARER result=ok"),
        "{}",
        d.log()
    );
}
