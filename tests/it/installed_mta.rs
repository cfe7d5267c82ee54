//! etrnd as this machine's MTA: `make install` into a DESTDIR, then the installed
//! binary with the installed default configuration runs in a private mount and
//! network namespace where `/usr/local` holds what was installed, `/usr/sbin/sendmail`
//! is ours, and `/var/spool`, `/var/mail`, `/var/log` and `/run` are fresh. Mail from
//! bsd-mailx, from cron's command line, from mutt in batch mode (umask 077) and from
//! `sendmail -t` lands in each recipient's mailbox, readable by the recipient.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::foreground::Foreground;

use crate::util::{bin, need_tool, run_ok, system_account, TempDir, ATTACKER};

/// The recipient of the users' mail (a named test account, kept).
const RECIPIENT: &str = "etrnd-mua";

/// The installed daemon in its namespaces, its standard error collected.
struct Installed(Foreground);

impl Installed {
    /// Sets up the namespaces over DESTDIR `dest` and starts the installed daemon
    /// with no `-f`: the configuration is the one the installed binary defaults to.
    /// The namespaces go with their last process: the daemon, its supervisor and
    /// helpers, when the daemon is stopped.
    fn start(dest: &Path) -> Installed {
        let d = dest.display();
        let script = format!(
            "set -e
             ip link set lo up
             mount --bind {d}/usr/local/sbin /usr/local/sbin
             mount --bind {d}/usr/local/etc /usr/local/etc
             mount --bind {d}/usr/local/sbin/etrnd /usr/sbin/sendmail
             for m in /var/spool /var/mail /var/log /run; do mount -t tmpfs tmpfs $m; done
             exec /usr/local/sbin/etrnd -d -v"
        );
        Installed(Foreground::start(
            Command::new("unshare")
                .args(["--mount", "--net", "--propagation", "private", "--", "sh"])
                .arg("-c")
                .arg(script),
        ))
    }

    fn log(&self) -> String {
        self.0.log()
    }

    /// `nsenter` into the daemon's namespaces, then `setpriv` to `user`, then
    /// `sh -c script` with `input` on its standard input.
    fn run_as(&self, user: &str, script: &str, input: &[u8]) -> std::process::Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.0.child.id()))
            .args(["--mount", "--net", "--"]);
        if user != "root" {
            cmd.args([
                "/usr/bin/setpriv",
                &format!("--reuid={user}"),
                &format!("--regid={user}"),
                "--clear-groups",
                "--",
            ]);
        }
        cmd.args(["sh", "-c", script]);
        let out = crate::util::run_with_input(cmd.stdout(Stdio::piped()), input);
        assert!(
            out.status.success(),
            "{user}: {script}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        out
    }

    fn wait_lines(&self, what: &str, n: usize) {
        self.0.wait_lines(what, n)
    }
}

#[test]
fn installed_default_configuration_is_this_machines_mta() {
    if !crate::util::is_root() {
        if std::env::var_os("ETRND_REQUIRE_TOOLS").is_some() {
            panic!("the installed-MTA test needs root");
        }
        crate::util::skip("needs root");
        return;
    }
    let tools = [
        ("make", "make"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
        ("setpriv", "util-linux"),
        ("useradd", "passwd"),
        ("ip", "iproute2"),
        ("bsd-mailx", "bsd-mailx"),
        ("mutt", "mutt"),
    ];
    let mut found = Vec::new();
    for (t, p) in tools {
        match need_tool(t, p) {
            Some(path) => found.push(path),
            None => return,
        }
    }
    let (mailx, mutt) = (found[6].clone(), found[7].clone());
    // Bound over in the namespace only: the file must exist to be a mount point.
    if !Path::new("/usr/sbin/sendmail").exists() || !Path::new("/usr/local/etc").is_dir() {
        if std::env::var_os("ETRND_REQUIRE_TOOLS").is_some() {
            panic!("the installed-MTA test needs /usr/sbin/sendmail (an MTA package) and /usr/local/etc");
        }
        crate::util::skip(
            "needs \
             /usr/sbin/sendmail (any MTA package, e.g. postfix) to bind ours over",
        );
        return;
    }
    let daemon_user = crate::util::daemon_account();
    system_account(RECIPIENT, "/bin/sh");
    system_account(ATTACKER, "/bin/sh");

    let dir = TempDir::new("installed-mta");
    let dest = dir.0.join("root");
    run_ok(
        Command::new("make")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["install", "CARGO=true"])
            .arg(format!("BIN={}", bin()))
            .arg(format!("DESTDIR={}", dest.display()))
            .arg(format!("ETRND_USER={daemon_user}")),
    );
    let conf = dest.join("usr/local/etc/etrnd/etrnd.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("\nLISTEN=127.0.0.1:25\n"), "{text}");
    assert!(text.contains(&format!("\nUSER={daemon_user}\n")), "{text}");
    // The setups beside it are samples, and the unit is there.
    for f in [
        "usr/local/etc/etrnd/samples/hub/etrnd.conf",
        "usr/local/etc/etrnd/samples/client/db/authinfo",
        "usr/local/etc/etrnd/samples/mailer.conf.openbsd",
        "usr/local/lib/systemd/system/etrnd.service",
    ] {
        assert!(dest.join(f).is_file(), "{f} missing");
    }
    // The secrets samples are private, as the daemon requires of the real files.
    use std::os::unix::fs::PermissionsExt;
    for f in ["authinfo", "tls_policy"] {
        let p = dest.join("usr/local/etc/etrnd/samples/client/db").join(f);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}: {mode:o}");
    }

    let home = TempDir::new("installed-mta-home");
    std::os::unix::fs::chown(&home.0, Some(attacker_uid()), None).unwrap();
    let d = Installed::start(&dest);
    let h = home.0.display();

    // bsd-mailx, as a user.
    d.run_as(
        ATTACKER,
        &format!("HOME={h} {mailx} -s 'from mailx' {RECIPIENT}"),
        b"sent with bsd-mailx\n",
    );
    // cron's command line (Debian's cron), as root to root.
    d.run_as(
        "root",
        "/usr/sbin/sendmail -FCronDaemon -i -B8BITMIME -oem root",
        "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> date\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n\
         Content-Transfer-Encoding: 8bit\n\ncron output: Grüße\n"
            .as_bytes(),
    );
    // mutt in batch mode, which sets umask 077 itself; its sendmail is the system's.
    d.run_as(
        ATTACKER,
        &format!("umask 077; HOME={h} {mutt} -n -F /dev/null -s 'via mutt' {RECIPIENT}"),
        b"sent by mutt\n",
    );
    // sendmail -t: the recipients from the header.
    d.run_as(
        ATTACKER,
        "umask 077; /usr/sbin/sendmail -t",
        format!("To: {RECIPIENT}\nSubject: with -t\n\nsent with -t\n").as_bytes(),
    );
    d.wait_lines("status=sent (delivered to mailbox)", 4);

    // Each mailbox is its owner's, 0600, and its owner reads it.
    let stat = |p: &str| {
        let out = d.run_as("root", &format!("stat -c '%U %a' {p}"), b"");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        stat(&format!("/var/mail/{RECIPIENT}")),
        format!("{RECIPIENT} 600")
    );
    assert_eq!(stat("/var/mail/root"), "root 600");
    let mine = d.run_as(RECIPIENT, &format!("cat /var/mail/{RECIPIENT}"), b"");
    let mine = String::from_utf8_lossy(&mine.stdout).into_owned();
    for body in ["sent with bsd-mailx", "sent by mutt", "sent with -t"] {
        assert!(mine.contains(body), "{body} missing:\n{mine}");
    }
    // Local mail looks right: the sender qualified with this host's name, a Date:
    // and Message-ID: on every message.
    let host = String::from_utf8_lossy(&run_ok(&mut Command::new("hostname")).stdout)
        .trim()
        .to_string();
    assert_eq!(
        format!("\n{mine}")
            .matches(&format!("\nFrom {ATTACKER}@{host} "))
            .count(),
        3,
        "{mine}"
    );
    // `To: etrnd-mua` as mailx and the -t message wrote it names a mailbox here.
    assert_eq!(
        mine.matches(&format!("\nTo: {RECIPIENT}@{host}\n")).count(),
        3,
        "{mine}"
    );
    let lower = mine.to_ascii_lowercase();
    assert_eq!(lower.matches("\nmessage-id:").count(), 3, "{mine}");
    assert_eq!(lower.matches("\ndate:").count(), 3, "{mine}");
    let roots = d.run_as("root", "cat /var/mail/root", b"");
    let roots = String::from_utf8_lossy(&roots.stdout).into_owned();
    assert!(roots.contains("cron output: Grüße"), "{roots}");
    assert!(roots.contains("Subject: Cron <root@host> date"), "{roots}");
    // The spool was created at the first start and given to the daemon's account.
    assert_eq!(stat("/var/spool/etrnd"), format!("{daemon_user} 711"));
    assert_eq!(stat("/var/spool/etrnd/queue"), format!("{daemon_user} 700"));
    assert!(!d.log().contains("warn"), "{}", d.log());
}

fn attacker_uid() -> u32 {
    let out = run_ok(Command::new("id").args(["-u", ATTACKER]));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
