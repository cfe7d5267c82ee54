//! TLS and AUTH against Postfix, both ways, each a private Postfix instance on
//! loopback: Postfix's smtp client delivers to etrnd with
//! `smtp_tls_security_level = encrypt` and SASL client credentials (the hub
//! certificate test), and etrnd delivers to Postfix's smtpd with TLS at the
//! `secure` level (CA file and name checked).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{free_port, is_root, need_tool, Client, Daemon, Setup, TempDir};

pub struct Postfix {
    pub dir: TempDir,
    pub port: u16,
}

fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postfix {
    /// A private instance listening on a free port, with `settings` added.
    pub fn start(tag: &str, settings: &[String]) -> Option<Postfix> {
        if !is_root() {
            crate::util::skip("a private Postfix needs root");
            return None;
        }
        need_tool("postfix", "postfix")?;
        let dir = TempDir::new(tag);
        let d = dir.0.display().to_string();
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["etc", "spool", "data"] {
            std::fs::create_dir_all(dir.0.join(sub)).unwrap();
        }
        // Its own configuration, from nothing: the package's pristine master.cf and a
        // main.cf of ours (the system's main.cf is neither read nor changed: what an
        // operator left there, a defer_transports say, must not leak in here).
        let master = [
            "/usr/share/postfix/master.cf.dist",
            "/etc/postfix/master.cf",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
        std::fs::copy(master, dir.0.join("etc/master.cf")).unwrap();
        std::fs::write(dir.0.join("etc/main.cf"), "").unwrap();
        sh(&format!("chown postfix {d}/data"));
        let port = free_port();
        let mut all: Vec<String> = [
            format!("queue_directory = {d}/spool"),
            format!("data_directory = {d}/data"),
            "inet_interfaces = 127.0.0.1".into(),
            "inet_protocols = ipv4".into(),
            format!("myhostname = {tag}.postfix.test"),
            "mydestination =".into(),
            "mynetworks = 127.0.0.0/8".into(),
            "smtp_dns_support_level = disabled".into(),
            "alias_maps =".into(),
            "alias_database =".into(),
            format!("maillog_file = {d}/maillog"),
            "maillog_file_prefixes = /var, /tmp, /dev/stdout".into(),
            "compatibility_level = 3.6".into(),
            format!("multi_instance_name = {tag}{port}"),
        ]
        .into();
        all.extend_from_slice(settings);
        let quoted: Vec<String> = all.iter().map(|s| format!("'{s}'")).collect();
        sh(&format!("postconf -c {d}/etc -e {}", quoted.join(" ")));
        sh(&format!(
            "postconf -c {d}/etc -M -e 'smtp/inet = 127.0.0.1:{port} inet n - n - - smtpd'"
        ));
        sh(&format!(
            "postconf -c {d}/etc -M -e 'postlog/unix-dgram = postlog unix-dgram n - n - 1 postlogd'"
        ));
        sh(&format!("postfix -c {d}/etc start"));
        crate::util::wait_listening(port, 10);
        Some(Postfix { dir, port })
    }

    fn etc(&self) -> String {
        format!("{}/etc", self.dir.0.display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("maillog")).unwrap_or_default()
    }

    pub fn wait_log(&self, what: &str, secs: u64) -> String {
        for _ in 0..secs * 10 {
            let l = self.log();
            if l.contains(what) {
                return l;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("Postfix never logged {what:?}:\n{}", self.log());
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // `postfix stop` only signals the master: its folder goes once it has gone.
        let pid = std::fs::read_to_string(self.dir.0.join("spool/pid/master.pid"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let _ = Command::new("postfix")
            .args(["-c", &self.etc(), "stop"])
            .output();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !pid.is_empty()
            && Path::new(&format!("/proc/{pid}")).exists()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn postfix_delivers_to_etrnd_with_encrypt_and_sasl_and_the_received_line_names_tls() {
    // The hub: loopback is not trusted, so relaying needs AUTH.
    let setup = Setup {
        conf: "TLS_CERT=cert.pem\nTLS_KEY=key.pem\nMYNETWORKS=10.255.0.0/16\n".into(),
        routes: format!("{}. smtp!mx.far.example\n", crate::util::ROUTES),
        ..Setup::default()
    };
    let mut hub = Daemon::prepare(setup, &[]);
    if !crate::tls::make_cert(&hub.dir.0) {
        return;
    }
    private(&hub.dir.0.join("db/secrets"), "pfclient {PLAIN}pfpass\n");
    hub.spawn();
    let hub_port = hub.addr().port();
    let tmp = TempDir::new("pf-sasl");
    let pw = tmp.0.join("sasl_passwd");
    std::fs::write(&pw, format!("[127.0.0.1]:{hub_port} pfclient:pfpass\n")).unwrap();
    let Some(pf) = Postfix::start(
        "pfcli",
        &[
            format!("relayhost = [127.0.0.1]:{hub_port}"),
            "smtp_tls_security_level = encrypt".into(),
            "smtp_sasl_auth_enable = yes".into(),
            format!("smtp_sasl_password_maps = texthash:{}", pw.display()),
            "smtp_sasl_security_options = noanonymous".into(),
            "smtp_sasl_tls_security_options = noanonymous".into(),
            "smtp_tls_loglevel = 1".into(),
        ],
    ) else {
        return;
    };
    let mut c = Client::hello(std::net::SocketAddr::from(([127, 0, 0, 1], pf.port)));
    c.send_message(
        "sender@postfix.test",
        &["someone@far.example"],
        "Subject: via postfix\r\n\r\nhello\r\n",
    );
    hub.wait_until("the hub to queue it", 30, || !hub.queue_files().is_empty());
    let text = hub.queued_text();
    assert!(text.contains("Subject: via postfix"), "{text}");
    assert!(text.contains("(using TLSv1.3 with cipher"), "{text}");
    assert!(text.contains("with ESMTPSA"), "{text}");
    assert!(hub.log().contains("user=pfclient"), "{}", hub.log());
    let log = pf.wait_log("status=sent", 10);
    assert!(log.contains("TLS connection established to"), "{log}");
}

/// An etrnd that relays far.example to Postfix at `port` at the `secure` level,
/// trusting the test CA of `certs`, wanting the name `name`.
fn secure_client(port: u16, certs: &Path, name: &str) -> Daemon {
    let setup = Setup {
        conf: format!("TLS_CA_FILE={}/ca.pem\n", certs.display()),
        routes: format!(".far.example smtp![127.0.0.1]:{port}\n"),
        ..Setup::default()
    };
    let mut d = Daemon::prepare(
        setup,
        &[(
            "scheduler.conf",
            "*/* interval=1s retries=\"3\" expiry=1h\nsmtp*/* command=smtp\nerror/* command=errormail\n",
        )],
    );
    private(
        &d.dir.0.join("db/tls_policy"),
        &format!("[127.0.0.1]:{port} secure match={name}\n"),
    );
    d.spawn();
    d
}

#[test]
fn etrnd_delivers_to_postfix_smtpd_at_the_secure_level() {
    let tmp = TempDir::new("pf-cert");
    if !crate::tls::make_cert(&tmp.0) {
        return;
    }
    let Some(pf) = Postfix::start(
        "pfsrv",
        &[
            format!("smtpd_tls_cert_file = {}/cert.pem", tmp.0.display()),
            format!("smtpd_tls_key_file = {}/key.pem", tmp.0.display()),
            "smtpd_tls_security_level = may".into(),
            "smtpd_tls_loglevel = 1".into(),
            "smtpd_tls_received_header = yes".into(),
            "relay_domains = far.example".into(),
            "defer_transports = smtp".into(),
        ],
    ) else {
        return;
    };
    let d = secure_client(pf.port, &tmp.0, "mx.test.example");
    let mut c = Client::hello(d.addr());
    c.send_message(
        "me@test.example",
        &["you@far.example"],
        "Subject: to postfix\r\n\r\nx\r\n",
    );
    d.wait_until("the delivery", 20, || d.log().contains("status=sent"));
    // Postfix's own words for the session it received.
    pf.wait_log("TLS connection established from", 10);
    assert!(d.log().contains("smtp client-tls TLSv1.3"), "{}", d.log());
    // And a name the certificate does not carry is refused: the mail waits.
    let d2 = secure_client(pf.port, &tmp.0, "other.example");
    let mut c = Client::hello(d2.addr());
    c.send_message(
        "me@test.example",
        &["you@far.example"],
        "Subject: nope\r\n\r\nx\r\n",
    );
    d2.wait_until("the deferral", 20, || d2.log().contains("status=deferred"));
    assert!(d2.log().contains("TLS handshake failed"), "{}", d2.log());
    assert!(!d2.log().contains("status=sent"));
}
