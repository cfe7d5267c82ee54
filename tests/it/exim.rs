//! Out of etrnd into a real submission server: Exim (Debian's exim4-daemon-light,
//! run as a private instance on loopback) requires STARTTLS before AUTH and AUTH
//! before relaying, on 587, and speaks implicit TLS on 465. The dial-up client of
//! the seed (etc/client/, unchanged but for the ports) holds its mail, and the ppp
//! ip-up hook sends it; Exim's log shows the session encrypted and authenticated.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::util::{free_port, is_root, Client, Daemon, Setup, TempDir};

/// Where CI unpacks Exim when Debian's MTA slot is Postfix's.
const UNPACKED: &str = "/opt/etrnd-test/exim/usr/sbin/exim4";

pub fn exim_binary() -> Option<String> {
    for p in ["/usr/sbin/exim4", UNPACKED] {
        if Path::new(p).exists() {
            return Some(p.to_string());
        }
    }
    if std::env::var_os("ETRND_REQUIRE_TOOLS").is_some() {
        panic!("exim4 is needed ({UNPACKED}: .ci/run unpacks Debian's exim4-daemon-light there)");
    }
    crate::util::skip("needs exim4 (Debian package exim4-daemon-light)");
    None
}

pub struct Exim {
    pub dir: TempDir,
    pub submission: u16,
    pub smtps: u16,
    child: Child,
}

impl Drop for Exim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Exim {
    /// A private Exim: `cust`/`s3cret` may relay after STARTTLS (or on 465); the
    /// mail stays in its queue (queue_only, no routers).
    pub fn start() -> Option<Exim> {
        Exim::start_with("", true)
    }

    /// The same, with `mail_acl` (ACL statements) checked at MAIL after AUTH; with
    /// `cram_ok` false, CRAM-MD5 is offered and always refused (PLAIN still works).
    pub fn start_with(mail_acl: &str, cram_ok: bool) -> Option<Exim> {
        let cram_secret = if cram_ok { "s3cret" } else { "not-the-secret" };
        if !is_root() {
            crate::util::skip("a private Exim needs root");
            return None;
        }
        let bin = exim_binary()?;
        crate::util::system_account("Debian-exim", "/usr/sbin/nologin");
        let dir = TempDir::new("exim");
        let d = &dir.0;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        if !crate::tls::make_cert(d) {
            return None;
        }
        std::fs::set_permissions(d.join("key.pem"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        for sub in ["spool", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
            Command::new("chown")
                .arg("Debian-exim")
                .arg(d.join(sub))
                .status()
                .unwrap();
        }
        let (submission, smtps) = (free_port(), free_port());
        let p = d.display();
        let conf = format!(
            r#"primary_hostname = mx.exim.test
spool_directory = {p}/spool
log_file_path = {p}/log/%slog
exim_user = Debian-exim
exim_group = Debian-exim
never_users =
keep_environment =
daemon_smtp_ports = {submission} : {smtps}
tls_on_connect_ports = {smtps}
local_interfaces = 127.0.0.1
tls_certificate = {p}/cert.pem
tls_privatekey = {p}/key.pem
tls_advertise_hosts = *
acl_smtp_mail = acl_check_mail
acl_smtp_rcpt = acl_check_rcpt
queue_only = true
host_lookup =
rfc1413_hosts =
begin acl
acl_check_mail:
  deny message = 5.7.0 Authentication required
       !authenticated = *
{mail_acl}  accept
acl_check_rcpt:
  accept authenticated = *
  deny
begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${{if and{{{{eq{{$auth2}}{{cust}}}}{{eq{{$auth3}}{{s3cret}}}}}}}}
  server_set_id = $auth2
  server_advertise_condition = ${{if def:tls_in_cipher}}
cram:
  driver = cram_md5
  public_name = CRAM-MD5
  server_secret = ${{if eq{{$auth1}}{{cust}}{{{cram_secret}}}fail}}
  server_set_id = $auth1
  server_advertise_condition = ${{if def:tls_in_cipher}}
begin routers
begin transports
"#
        );
        std::fs::write(d.join("exim.conf"), conf).unwrap();
        let child = Command::new(&bin)
            .arg("-C")
            .arg(d.join("exim.conf"))
            .arg("-bdf")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        crate::util::wait_listening(submission, 10);
        Some(Exim {
            dir,
            submission,
            smtps,
            child,
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("log/mainlog")).unwrap_or_default()
    }

    /// Messages Exim took (`<=` lines).
    pub fn received(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(" <= "))
            .map(str::to_string)
            .collect()
    }
}

fn shipped(p: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap()
}

pub fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The seed's dial-up client, with its relay at `port` of loopback.
pub fn seed_client(port: u16, extra_policy: &str) -> Daemon {
    seed_client_with(port, extra_policy, &[])
}

/// [`seed_client`] with more files in its configuration directory.
pub fn seed_client_with(port: u16, extra_policy: &str, files: &[(&str, &str)]) -> Daemon {
    let conf: String = shipped("etc/client/etrnd.conf")
        .lines()
        .filter(|l| {
            ["SMTP_TLS=", "HOSTNAME=", "ETRN_ALLOW=", "MYNETWORKS="]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let setup = Setup {
        conf,
        routes: shipped("etc/client/db/routes").replace(":587", &format!(":{port}")),
        localnames: shipped("etc/client/db/localnames"),
        aliases: format!("{}user: root\n", shipped("etc/client/db/aliases")),
    };
    let mut d = Daemon::prepare(
        setup,
        &[
            ("scheduler.conf", &shipped("etc/client/scheduler.conf")),
            ("hosts", "127.0.0.1 mail.isp.dom\n"),
        ],
    );
    let authinfo = shipped("etc/client/db/authinfo.sample")
        .replace(":587", &format!(":{port}"))
        .replace("customer42", "cust")
        .replace("the-password-from-the-isp", "s3cret");
    private(&d.dir.0.join("db/authinfo"), &authinfo);
    if !extra_policy.is_empty() {
        private(&d.dir.0.join("db/tls_policy"), extra_policy);
    }
    for (name, text) in files {
        std::fs::write(d.dir.0.join(name), text).unwrap();
    }
    d.spawn();
    d
}

pub fn ip_up(d: &Daemon) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/ppp/ip-up.etrnd");
    let out = Command::new("sh")
        .arg(&script)
        .env("ETRND", crate::util::bin())
        .env("ETRND_CONF", d.conf_path())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_seed_client_sends_its_held_mail_to_exim_over_starttls_and_auth_at_link_up() {
    let Some(exim) = Exim::start() else { return };
    let c = seed_client(exim.submission, "");
    let mut s = Client::hello(c.addr());
    s.send_message(
        "user@client.dom",
        &["friend@far.example"],
        "Subject: held until link up\r\n\r\nhi\r\n",
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.queue_files().len(), 1, "held while the link is down");
    assert!(
        exim.received().is_empty(),
        "nothing left while the link was down"
    );
    let (ok, out) = ip_up(&c);
    assert!(ok, "{out}");
    c.wait_until("the held mail to leave", 15, || c.queue_files().is_empty());
    let got = exim.received();
    assert_eq!(got.len(), 1, "{}", exim.log());
    // Exim's own words: protocol esmtpsa, the TLS cipher, the authenticator and id.
    assert!(got[0].contains("P=esmtpsa"), "{}", got[0]);
    assert!(got[0].contains("X=TLS1.3"), "{}", got[0]);
    assert!(got[0].contains(":cust"), "{}", got[0]);
    assert!(c.log().contains("status=sent"), "{}", c.log());
}

#[test]
fn implicit_tls_to_exim_on_465_and_a_wrong_password_defers() {
    let Some(exim) = Exim::start() else { return };
    let port = exim.smtps;
    let c = seed_client(
        port,
        &format!("[mail.isp.dom]:{port} encrypt implicit=yes\n"),
    );
    let mut s = Client::hello(c.addr());
    s.send_message(
        "user@client.dom",
        &["friend@far.example"],
        "Subject: 465\r\n\r\nx\r\n",
    );
    let (ok, out) = ip_up(&c);
    assert!(ok, "{out}");
    c.wait_until("the held mail to leave", 15, || c.queue_files().is_empty());
    let got = exim.received();
    assert_eq!(got.len(), 1, "{}", exim.log());
    assert!(
        got[0].contains("P=esmtpsa") && got[0].contains("X=TLS"),
        "{}",
        got[0]
    );
    // With the wrong password the mail waits (deferred, never bounced).
    let bad = seed_client(exim.submission, "");
    private(
        &bad.dir.0.join("db/authinfo"),
        &format!("[mail.isp.dom]:{} cust wrong\n", exim.submission),
    );
    let reloads = bad.log().matches("daemon secrets-loaded").count();
    bad.signal("HUP");
    bad.wait_until("the new authinfo read", 10, || {
        bad.log().matches("daemon secrets-loaded").count() > reloads
    });
    let mut s = Client::hello(bad.addr());
    s.send_message(
        "user@client.dom",
        &["friend@far.example"],
        "Subject: bad\r\n\r\nx\r\n",
    );
    let _ = ip_up(&bad);
    bad.wait_until("the deferral", 15, || bad.log().contains("status=deferred"));
    let log = bad.log();
    // Each mechanism both allow is tried once, then the mail waits.
    assert!(
        log.contains("mechanism=CRAM-MD5 result=refused reply=\"535")
            && log.contains("mechanism=PLAIN result=refused reply=\"535"),
        "{log}"
    );
    assert!(!log.contains("status=bounced"));
    assert_eq!(bad.queue_files().len(), 1);
    let _: PathBuf = exim.dir.0.clone();
}

#[test]
fn masqueraded_mail_passes_a_relay_that_checks_its_senders_and_local_copies_keep_theirs() {
    // The ISP takes only senders of its own domain.
    let Some(exim) = Exim::start_with(
        "  deny message = 5.7.1 sender not of this ISP\n       !sender_domains = example.org\n",
        true,
    ) else {
        return;
    };
    let c = seed_client_with(
        exim.submission,
        "",
        &[(
            "db/generic",
            "root@mail.client.dom alerts@example.org\n@client.dom @example.org\n",
        )],
    );
    let mut s = Client::hello(c.addr());
    s.send_message(
        "user@client.dom",
        &["friend@far.example", "user@client.dom"],
        "From: A User <user@client.dom>\r\nReply-To: user@client.dom\r\nSubject: masq\r\n\r\nhi\r\n",
    );
    // Not in db/generic: refused by the relay, as the original would have been.
    s.send_message(
        "someone@elsewhere.example",
        &["friend@far.example"],
        "From: someone@elsewhere.example\r\nSubject: as is\r\n\r\nhi\r\n",
    );
    s.cmd("QUIT", 221);
    let (ok, out) = ip_up(&c);
    assert!(ok, "{out}");
    c.wait_until("the relay's answers", 20, || {
        c.log().contains("status=sent") && c.log().contains("status=bounced")
    });
    let got = exim.received();
    assert_eq!(got.len(), 1, "{}", exim.log());
    assert!(got[0].contains("<= user@example.org"), "{}", got[0]);
    assert!(c.log().contains("sender not of this ISP"), "{}", c.log());
    // The header the relay holds is masqueraded too.
    let input = exim.dir.0.join("spool/input");
    let header = crate::util::list(&input)
        .into_iter()
        .find(|f| f.ends_with("-H"))
        .map(|f| std::fs::read_to_string(input.join(f)).unwrap())
        .expect("the relay's header file");
    assert!(
        header.contains("From: A User <user@example.org>"),
        "{header}"
    );
    assert!(header.contains("Reply-To: user@example.org"), "{header}");
    // The local copy keeps the original.
    let new = c.dir.0.join("mail/root/new");
    c.wait_until("the local copy", 10, || !crate::util::list(&new).is_empty());
    let local = std::fs::read_to_string(new.join(&crate::util::list(&new)[0])).unwrap();
    assert!(local.contains("From: A User <user@client.dom>"), "{local}");
}
