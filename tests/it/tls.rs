//! Secure transport, server side: STARTTLS (RFC 3207), implicit TLS, AUTH (RFC
//! 4954) with PLAIN, LOGIN and CRAM-MD5, the hostile cases of
//! reference/bad-input.md §J, and independent clients (Python's ssl and smtplib,
//! swaks, msmtp). Certificates are made here with openssl.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{need_tool, run_etrnd, run_ok, run_with_input, Daemon, Setup};

/// A test CA (`ca.pem`) and a certificate it signed for `mx.test.example`
/// (`cert.pem`, key `key.pem`) in `dir`.
pub fn make_cert(dir: &Path) -> bool {
    let Some(openssl) = need_tool("openssl", "openssl") else {
        return false;
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:mx.test.example\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=etrnd test CA",
            ],
        ]
        .concat(),
        [
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=mx.test.example",
            ],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    ];
    for args in steps {
        run_ok(Command::new(&openssl).args(&args).current_dir(dir));
    }
    true
}

/// `{CRAM-MD5}` contexts of `pw`, as `db/secrets` stores them.
fn cram_entry(pw: &str) -> String {
    let c = etrnd::auth::md5::hmac_contexts(pw.as_bytes());
    format!("{{CRAM-MD5}}{}", etrnd::auth::md5::contexts_hex(&c))
}

fn sha512_crypt(pw: &str) -> String {
    let out = run_ok(Command::new("openssl").args(["passwd", "-6", "-salt", "etrndtest", pw]));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A hub with a certificate, three listeners (smtp, smtps, submission) and three
/// identities; loopback clients are *not* in MYNETWORKS, so relaying needs AUTH.
fn tls_daemon(extra: &str) -> Option<Daemon> {
    let setup = Setup {
        conf: format!(
            "LISTEN=\"127.0.0.1:0 127.0.0.1:0/smtps 127.0.0.1:0/submission\"\n\
             TLS_CERT=cert.pem\nTLS_KEY=key.pem\nMYNETWORKS=10.255.0.0/16\n{extra}"
        ),
        routes: format!("{}.far.example smtp!mx.far.example\n", crate::util::ROUTES)
            .replace(".far.example smtp", ". smtp"),
        ..Setup::default()
    };
    let mut d = Daemon::prepare(setup, &[]);
    if !make_cert(&d.dir.0) {
        return None;
    }
    let secrets = format!(
        "tim {} client.dom\nbob {{PLAIN}}bobpass\nalice {} @alice.dom\n",
        cram_entry("tanstaaftanstaaf"),
        sha512_crypt("alicepw")
    );
    let p = d.dir.0.join("db/secrets");
    std::fs::write(&p, secrets).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    d.spawn();
    Some(d)
}

fn python(script: &str, args: &[String]) -> (bool, String) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ports(d: &Daemon) -> Vec<String> {
    d.addrs.iter().map(|a| a.port().to_string()).collect()
}

/// Runs a Python client script (after [`PY_PRELUDE`]) against `d`'s three
/// listeners; it must end well.
fn client_script(d: &Daemon, script: &str) {
    let (ok, out) = python(&format!("{PY_PRELUDE}{script}"), &ports(d));
    assert!(ok, "{out}\n{}", d.log());
}

const PY_PRELUDE: &str = r#"
import smtplib, ssl, socket, sys, time, base64
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
smtp, smtps, sub = (int(x) for x in sys.argv[1:4])
def caps(s):
    return {k.upper() for k in s.esmtp_features}
"#;

const STARTTLS_AUTH: &str = r#"
with smtplib.SMTP("127.0.0.1", smtp, timeout=20) as s:
    s.ehlo("py.example")
    assert s.has_extn("starttls"), s.esmtp_features
    # AUTH_CLEAR_CRAM's default: no CRAM-MD5 without TLS on an smtp listener.
    assert not s.has_extn("auth"), s.esmtp_features
    code, _ = s.docmd("AUTH", "CRAM-MD5")
    assert code == 538, code
    try:
        s.sendmail("py@example.org", ["u@far.example"], "Subject: x\r\n\r\nx\r\n")
        raise SystemExit("relayed without AUTH")
    except smtplib.SMTPRecipientsRefused as e:
        assert e.recipients["u@far.example"][0] == 554
    code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0bob\0bobpass").decode())
    assert code == 538, code
    code, _ = s.starttls(context=ctx)
    assert code == 220
    s.ehlo("py.example")
    assert not s.has_extn("starttls"), "STARTTLS offered twice"
    assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN", "CRAM-MD5"]
    code, _ = s.docmd("STARTTLS")
    assert code == 503, code
    s.login("bob", "bobpass")
    code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0bob\0bobpass").decode())
    assert code == 503, code
    s.ehlo("py.example")
    assert not s.has_extn("auth"), "AUTH offered after AUTH"
    refused = s.sendmail("py@example.org", ["u@far.example"], "Subject: relayed\r\n\r\nx\r\n")
    assert refused == {}, refused
    s.mail("py@example.org")
    code, _ = s.docmd("STARTTLS")
    assert code == 503, code
print("ok")
"#;

#[test]
fn starttls_then_auth_relays_and_the_received_line_names_tls() {
    let Some(d) = tls_daemon("") else { return };
    client_script(&d, STARTTLS_AUTH);
    assert_eq!(d.queue_files().len(), 1, "{}", d.log());
    let text = d.queued_text();
    assert!(text.contains("Subject: relayed"), "{text}");
    assert!(
        text.contains("(using TLSv1.3 with cipher TLS_AES_"),
        "{text}"
    );
    assert!(text.contains("with ESMTPSA id"), "{text}");
    let log = d.log();
    assert!(
        log.contains("user=bob mechanism=CRAM-MD5 result=ok"),
        "{log}"
    );
    assert!(!log.contains("bobpass"), "a secret reached the log");
}

const IMPLICIT: &str = r#"
with smtplib.SMTP_SSL("127.0.0.1", smtps, timeout=20, context=ctx) as s:
    s.ehlo("py.example")
    assert not s.has_extn("starttls")
    assert "PLAIN" in s.esmtp_features["auth"]
    s.login("alice", "alicepw")
    assert s.sendmail("a@example.org", ["u@far.example"], "Subject: 465\r\n\r\nx\r\n") == {}
with smtplib.SMTP("127.0.0.1", sub, timeout=20) as s:
    s.ehlo("py.example")
    assert not s.has_extn("auth"), "AUTH before STARTTLS on submission"
    code, _ = s.docmd("MAIL", "FROM:<a@example.org>")
    assert code == 530, code
    code, _ = s.docmd("AUTH", "CRAM-MD5")
    assert code == 530, code
    s.starttls(context=ctx)
    s.ehlo("py.example")
    code, _ = s.docmd("MAIL", "FROM:<a@example.org>")
    assert code == 530, code
    s.login("tim", "tanstaaftanstaaf")
    code, _ = s.docmd("MAIL", "FROM:<a@example.org> AUTH=<>")
    assert code == 250, code
print("ok")
"#;

#[test]
fn implicit_tls_and_the_submission_rules() {
    let Some(d) = tls_daemon("") else { return };
    client_script(&d, IMPLICIT);
    assert_eq!(d.queue_files().len(), 1);
    assert!(d.log().contains("user=alice mechanism=PLAIN result=ok"));
}

/// §J 80: `STARTTLS\r\nHELP\r\n` in one write: 220, the handshake, and the HELP
/// is never answered.
const INJECTION: &str = r#"
raw = socket.create_connection(("127.0.0.1", smtp), timeout=20)
f = raw.makefile("rb")
def reply(f):
    lines = []
    while True:
        l = f.readline()
        lines.append(l)
        if l[3:4] != b"-":
            return lines
reply(f)
raw.sendall(b"EHLO py.example\r\n"); reply(f)
raw.sendall(b"STARTTLS\r\nHELP\r\n")
r = reply(f)
assert r[0].startswith(b"220 "), r
tls = ctx.wrap_socket(raw, server_hostname="mx.test.example")
g = tls.makefile("rb")
tls.sendall(b"NOOP\r\n")
r = reply(g)
assert r[0].startswith(b"250 "), ("the pipelined HELP was answered", r)
tls.sendall(b"MAIL FROM:<a@example.org>\r\n")
r = reply(g)
assert r[0].startswith(b"503 "), ("the session was not fresh after TLS", r)
tls.sendall(b"EHLO py.example\r\n"); r = reply(g)
assert not any(b"STARTTLS" in l for l in r), r
# §J 84: AUTH lines that are not base64, a cancel, and a line past 12,288 octets.
tls.sendall(b"AUTH PLAIN\r\n"); assert reply(g)[0].startswith(b"334 ")
tls.sendall(b"not base64!\r\n"); assert reply(g)[0].startswith(b"501 ")
tls.sendall(b"AUTH LOGIN\r\n"); assert reply(g)[0].startswith(b"334 ")
tls.sendall(b"*\r\n"); assert reply(g)[0].startswith(b"501 ")
tls.sendall(b"AUTH PLAIN\r\n"); assert reply(g)[0].startswith(b"334 ")
tls.sendall(b"A" * 13000 + b"\r\n"); r = reply(g)
assert r[0].startswith(b"500 5.5.6"), r
tls.sendall(b"NOOP\r\n"); r = reply(g)
assert r[0].startswith(b"250 "), ("session unusable after a long AUTH line", r)
tls.sendall(b"AUTH DIGEST-MD5\r\n"); assert reply(g)[0].startswith(b"504 ")
tls.sendall(b"AUTH CRAM-MD5 abcd\r\n"); assert reply(g)[0].startswith(b"501 ")
print("ok")
"#;

#[test]
fn plaintext_behind_starttls_is_never_answered_and_hostile_auth_lines_get_5xx() {
    let Some(d) = tls_daemon("") else { return };
    client_script(&d, INJECTION);
    assert!(d.log().contains("input behind STARTTLS discarded"));
}

/// §J 83: wrong passwords get slower answers, the third ends the session, and
/// meanwhile another session is served at once.
const FAILURES: &str = r#"
s = smtplib.SMTP("127.0.0.1", smtp, timeout=30)
s.ehlo("py.example"); s.starttls(context=ctx); s.ehlo("py.example")
other = smtplib.SMTP("127.0.0.1", smtp, timeout=30); other.ehlo("o.example")
waits = []
for i in range(3):
    t = time.monotonic()
    s.putcmd("AUTH", "PLAIN " + base64.b64encode(b"\0bob\0wrong%d" % i).decode())
    if i == 1:
        # The loop serves the other session while this one waits.
        t2 = time.monotonic(); code, _ = other.noop()
        assert code == 250 and time.monotonic() - t2 < 0.5, time.monotonic() - t2
    code, msg = s.getreply()
    waits.append(time.monotonic() - t)
    assert code == (535 if i < 2 else 421), (i, code, msg)
assert waits[0] >= 0.9 and waits[1] >= 1.8 and waits[2] >= 3.5, waits
try:
    s.noop(); raise SystemExit("session still open")
except smtplib.SMTPServerDisconnected:
    pass
print("ok", waits)
"#;

#[test]
fn failed_auth_is_slowed_counted_and_ends_the_session() {
    let Some(d) = tls_daemon("") else { return };
    let started = Instant::now();
    client_script(&d, FAILURES);
    assert!(started.elapsed() < Duration::from_secs(30));
    let log = d.log();
    assert!(log.contains("result=failed failures=3"), "{log}");
    assert!(!log.contains("wrong0"), "a password reached the log");
}

const ETRN_AUTH: &str = r#"
with smtplib.SMTP("127.0.0.1", smtp, timeout=20) as s:
    s.ehlo("py.example")
    code, _ = s.docmd("ETRN", "client.dom")
    assert code == 459, code
    s.starttls(context=ctx); s.ehlo("py.example")
    s.login("tim", "tanstaaftanstaaf")
    code, _ = s.docmd("ETRN", "client.dom")
    assert code in (250, 251, 252, 253), code
    code, _ = s.docmd("ETRN", "other.dom")
    assert code == 459, code
with smtplib.SMTP("127.0.0.1", smtp, timeout=20) as s:
    s.ehlo("py.example")
    s.mail("a@example.org")
    for rcpt in ("u%victim.example@client.dom", "victim.example!u@client.dom", '"u@victim.example"@client.dom'):
        code, msg = s.rcpt(rcpt)
        assert code == 554 and b"routing" in msg, (rcpt, code, msg)
    code, _ = s.rcpt("u@client.dom")
    assert code == 250, code
print("ok")
"#;

#[test]
fn etrn_by_identity_and_no_routing_in_the_local_part() {
    let Some(d) = tls_daemon("ETRN_ALLOW=auth\n") else {
        return;
    };
    client_script(&d, ETRN_AUTH);
}

#[test]
fn swaks_and_msmtp_authenticate_over_tls() {
    let Some(d) = tls_daemon("") else { return };
    let p = ports(&d);
    if let Some(swaks) = need_tool("swaks", "swaks") {
        for (mech, user, pw, extra) in [
            ("CRAM-MD5", "tim", "tanstaaftanstaaf", "--tls"),
            ("LOGIN", "alice", "alicepw", "--tlsc"),
            ("PLAIN", "bob", "bobpass", "--tls"),
        ] {
            let port = if extra == "--tlsc" { &p[1] } else { &p[0] };
            let out = Command::new(&swaks)
                .args([
                    "--server",
                    "127.0.0.1",
                    "--port",
                    port,
                    extra,
                    "--auth",
                    mech,
                    "--auth-user",
                    user,
                    "--auth-password",
                    pw,
                    "--from",
                    "s@example.org",
                    "--to",
                    "u@far.example",
                    "--helo",
                    "swaks.example",
                    "--timeout",
                    "20",
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "swaks {mech}: {text}\n{}", d.log());
            assert!(text.contains("235 2.7.0"), "{text}");
        }
    }
    if let Some(msmtp) = need_tool("msmtp", "msmtp") {
        let out = run_with_input(
            Command::new(msmtp).args([
                "--host=127.0.0.1",
                &format!("--port={}", p[2]),
                "--tls=on",
                "--tls-starttls=on",
                "--tls-certcheck=off",
                "--auth=plain",
                "--user=bob",
                "--passwordeval=echo bobpass",
                "--from=m@example.org",
                "u@far.example",
            ]),
            b"Subject: msmtp\r\n\r\nhi\r\n",
        );
        assert!(
            out.status.success(),
            "msmtp: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            d.log()
        );
    }
}

#[test]
fn bad_certificates_and_readable_secrets_are_configuration_errors() {
    let d = Daemon::prepare(
        Setup::with_conf("LISTEN=\"127.0.0.1:0 127.0.0.1:0/smtps\"\n"),
        &[],
    );
    let (rc, _, err) = run_etrnd(&d.conf_path(), &["-n"]);
    assert_eq!(rc, 78);
    assert!(
        err.contains("smtps listener but TLS_CERT is not set"),
        "{err}"
    );
    let d = Daemon::prepare(
        Setup::with_conf("TLS_CERT=cert.pem\nTLS_KEY=key.pem\n"),
        &[
            ("cert.pem", "not a certificate\n"),
            ("key.pem", "nor a key\n"),
            ("db/secrets", "bob {PLAIN}x\n"),
        ],
    );
    std::fs::set_permissions(
        d.dir.0.join("db/secrets"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(
        d.dir.0.join("key.pem"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (rc, _, err) = run_etrnd(&d.conf_path(), &["-n"]);
    assert_eq!(rc, 78, "{err}");
    assert!(
        err.contains("cert.pem: no CERTIFICATE block found"),
        "{err}"
    );
    assert!(err.contains("secrets: mode 0644"), "{err}");
}

/// The certificate served now, as its SHA-256 (lower-case hex).
fn served_fingerprint(port: u16) -> String {
    let script = r#"
import ssl, socket, sys, hashlib
c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
s = c.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10))
print(hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest())
"#;
    let (ok, out) = python(script, &[port.to_string()]);
    assert!(ok, "{out}");
    out.trim().to_string()
}

#[test]
fn a_new_certificate_is_served_after_sighup_and_a_bad_one_is_refused() {
    let Some(d) = tls_daemon("") else { return };
    let smtps = d.addrs[1].port();
    let before = served_fingerprint(smtps);
    // A new key and certificate in the same files (the paths are fixed at start).
    let fresh = crate::util::TempDir::new("newcert");
    assert!(make_cert(&fresh.0));
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(fresh.0.join(f), d.dir.0.join(f)).unwrap();
    }
    d.signal("HUP");
    d.wait_until("the reload", 10, || {
        d.log().matches("secrets-loaded").count() >= 2
    });
    let after = served_fingerprint(smtps);
    assert_ne!(before, after, "the old certificate is still served");
    // A broken certificate: the reload is refused, the last good one stays.
    std::fs::write(d.dir.0.join("cert.pem"), "garbage\n").unwrap();
    d.signal("HUP");
    d.wait_until("the refusal", 10, || {
        d.log().contains("no CERTIFICATE block found")
    });
    assert!(
        d.log().contains("cert.pem: no CERTIFICATE block found"),
        "{}",
        d.log()
    );
    assert_eq!(served_fingerprint(smtps), after);
}

const CAP: &str = r#"
# 32 clients that never start their handshake hold every slot: the 33rd is
# closed at once on smtps, and STARTTLS on port 25 gets 454 until one goes.
hold = [socket.create_connection(("127.0.0.1", smtps), timeout=10) for _ in range(32)]
time.sleep(0.5)
late = socket.create_connection(("127.0.0.1", smtps), timeout=10)
late.settimeout(5)
assert late.recv(100) == b"", "a 33rd handshake was started"
with smtplib.SMTP("127.0.0.1", smtp, timeout=10) as s:
    s.ehlo("py.example")
    code, msg = s.docmd("STARTTLS")
    assert code == 454, (code, msg)
for h in hold:
    h.close()
time.sleep(0.5)
with smtplib.SMTP("127.0.0.1", smtp, timeout=10) as s:
    s.ehlo("py.example")
    code, _ = s.starttls(context=ctx)
    assert code == 220, code
    s.ehlo("py.example")
    # TLS without AUTH, to a held client domain: ESMTPS.
    assert s.sendmail("a@example.org", ["u@client.dom"], "Subject: tls only\r\n\r\nx\r\n") == {}
# §J 81: STARTTLS after a plaintext CRAM-MD5 AUTH is refused.
with smtplib.SMTP("127.0.0.1", smtp, timeout=10) as s:
    s.ehlo("py.example")
    s.login("tim", "tanstaaftanstaaf")
    code, _ = s.docmd("STARTTLS")
    assert code == 503, code
print("ok")
"#;

#[test]
fn handshakes_are_capped_and_starttls_after_auth_is_refused() {
    // CRAM-MD5 in clear on the smtp listener, so STARTTLS after it can be tried.
    let Some(d) = tls_daemon("MAX_CONNECTIONS_PER_IP=100\nAUTH_CLEAR_CRAM=\"smtp odmr\"\n") else {
        return;
    };
    client_script(&d, CAP);
    assert!(d.log().contains("too many TLS handshakes"), "{}", d.log());
    assert_eq!(d.queue_files().len(), 1);
    let text = d.queued_text();
    assert!(text.contains("with ESMTPS id"), "{text}");
}

#[test]
fn a_tls_key_others_can_read_or_that_another_user_owns_is_refused() {
    let Some(mut d) = tls_daemon("") else { return };
    let key = d.dir.0.join("key.pem");
    // On reload: refused, logged with the path and why, the old key stays in force.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    d.signal("HUP");
    d.wait_until("the refused reload", 10, || {
        d.log()
            .contains("key.pem: mode 0644: a private key must not be readable by others")
    });
    // The old key is still served.
    assert_eq!(served_fingerprint(d.addrs[1].port()).len(), 64);
    d.stop();
    // At start: exit 78 with the path and the reason; `etrnd -n` says the same.
    let (rc, _, err) = run_etrnd(&d.conf_path(), &["-n"]);
    assert_eq!(rc, 78, "{err}");
    assert!(err.contains("key.pem: mode 0644"), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (rc, _, err) = run_etrnd(&d.conf_path(), &["-n"]);
    assert_eq!(rc, 0, "a group-readable key (ssl-cert) is fine: {err}");
    if crate::util::is_root() && crate::util::attacker().is_some() {
        crate::util::run_ok(Command::new("chown").arg(crate::util::ATTACKER).arg(&key));
        let (rc, _, err) = run_etrnd(&d.conf_path(), &["-n"]);
        assert_eq!(rc, 78, "{err}");
        assert!(err.contains("key.pem: owned by uid"), "{err}");
        let out = Command::new(crate::util::bin())
            .args(["-d", "-f"])
            .arg(d.conf_path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("owned by uid"),
            "{out:?}"
        );
    }
}
