//! The OpenWrt package (openwrt/mail/etrnd): what procd is told to start runs with the
//! package's configuration and delivers mail, the netifd hotplug script brings a
//! link up and down, the spool is on storage that survives a reboot and a
//! sysupgrade, and every file the package Makefile installs is in the checkout. The
//! package's absolute paths are moved under a private folder, as `make install`
//! moves /usr/local.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{bin, daemon_account, free_port, run_etrnd, TempDir};

fn checkout() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn package() -> PathBuf {
    checkout().join("openwrt/mail/etrnd")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The package's text with its absolute paths under `root` (and our binary).
fn relocate(text: &str, root: &Path) -> String {
    let r = root.display();
    text.replace("/usr/sbin/etrnd", bin())
        .replace("/etc/etrnd", &format!("{r}/etc/etrnd"))
        .replace("/srv/etrnd", &format!("{r}/srv/etrnd"))
        .replace("/var/", &format!("{r}/var/"))
}

/// The value of `NAME=` in a configuration text (the first uncommented line).
fn setting<'a>(conf: &'a str, name: &str) -> &'a str {
    conf.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in the package's etrnd.conf"))
}

#[test]
fn the_package_keeps_held_mail_on_storage_that_survives_reboot_and_sysupgrade() {
    let conf = read(&package().join("files/etrnd.conf"));
    let kept: Vec<String> = read(&package().join("files/etrnd.keep"))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    for name in ["POSTOFFICE", "MAILBOX"] {
        let path = setting(&conf, name);
        assert!(
            !path.starts_with("/var") && !path.starts_with("/tmp"),
            "{name}={path} is on OpenWrt's tmpfs"
        );
        assert!(
            kept.iter().any(|k| path.starts_with(k.as_str())),
            "{name}={path} is not kept across sysupgrade ({kept:?})"
        );
    }
    // Every file the Makefile installs is here.
    let makefile = read(&package().join("Makefile"));
    let mut named = 0;
    for word in makefile.split_whitespace() {
        let word = word.trim_end_matches(';');
        if let Some(f) = word.strip_prefix("./files/") {
            assert!(package().join("files").join(f).is_file(), "files/{f}");
            named += 1;
        } else if let Some(f) = word.strip_prefix("$(ETRND_SOURCE)/") {
            let f = f.replace("$$$$f", "");
            assert!(checkout().join(&f).exists(), "{f}");
            named += 1;
        }
    }
    assert!(named >= 8, "the install rule names its files ({named})");
    for f in ["routes", "localnames", "aliases"] {
        assert!(checkout().join("etc/local/db").join(f).is_file());
    }
}

/// Runs the init script's `start_service` (or another function) under a procd that
/// notes what it is told, in a shell; returns the notes, one per line.
fn procd(init: &Path, function: &str) -> String {
    let script = format!(
        "procd_open_instance() {{ echo open; }}
         procd_set_param() {{ echo \"$*\"; }}
         procd_close_instance() {{ echo close; }}
         procd_send_signal() {{ echo \"signal $*\"; }}
         . {}
         {function}",
        init.display()
    );
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{function}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The daemon procd started, its standard error read until it says it started.
struct Started {
    child: Child,
    log: String,
}

impl Started {
    fn spawn(argv: &[&str]) -> Started {
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut log = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            log.push_str(&line);
            log.push('\n');
            if line.contains("daemon started") {
                // The rest goes nowhere: a thread keeps the pipe drained.
                std::thread::spawn(move || lines.for_each(drop));
                return Started { child, log };
            }
        }
        panic!("the daemon procd started did not start:\n{log}");
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn what_procd_starts_delivers_mail_and_the_hotplug_script_follows_the_uplink() {
    if !crate::util::is_root() {
        crate::util::skip("needs root (the daemon drops to its account)");
        return;
    }
    let dir = TempDir::new("openwrt");
    let root = dir.0.clone();
    let etc = root.join("etc/etrnd");
    std::fs::create_dir_all(etc.join("db")).unwrap();
    std::fs::create_dir_all(root.join("var/run")).unwrap();
    std::fs::create_dir_all(root.join("srv")).unwrap();
    // The package's etrnd.conf as installed, on a free port rather than 25, with its
    // uplink named.
    let port = free_port();
    let conf = relocate(&read(&package().join("files/etrnd.conf")), &root)
        .replace("LISTEN=127.0.0.1:25", &format!("LISTEN=127.0.0.1:{port}"))
        .replace("USER=etrnd", &format!("USER={}", daemon_account()))
        .replace(
            "#LINKS=\"wan:mail.isp.example\"",
            "LINKS=\"wan:mail.isp.example\"",
        );
    assert!(conf.contains("LINKS=\"wan:"), "the sample names the uplink");
    std::fs::write(etc.join("etrnd.conf"), conf).unwrap();
    std::fs::copy(
        checkout().join("etc/local/scheduler.conf"),
        etc.join("scheduler.conf"),
    )
    .unwrap();
    for f in ["routes", "localnames", "aliases"] {
        std::fs::copy(
            checkout().join("etc/local/db").join(f),
            etc.join("db").join(f),
        )
        .unwrap();
    }
    let init = root.join("etrnd.init");
    std::fs::write(
        &init,
        relocate(&read(&package().join("files/etrnd.init")), &root),
    )
    .unwrap();
    let hotplug = root.join("50-etrnd");
    std::fs::write(
        &hotplug,
        relocate(&read(&package().join("files/etrnd.hotplug")), &root),
    )
    .unwrap();

    let told = procd(&init, "start_service");
    let conf_path = etc.join("etrnd.conf");
    let command = format!("command {} -d -f {}", bin(), conf_path.display());
    assert!(told.lines().any(|l| l == command), "{told}");
    assert!(told.lines().any(|l| l.starts_with("respawn")), "{told}");
    assert!(told.contains("limits nofile=4096 4096"), "{told}");
    assert!(
        procd(&init, "reload_service").contains("signal etrnd"),
        "reload sends the daemon a signal"
    );

    let argv: Vec<&str> = command["command ".len()..].split(' ').collect();
    let daemon = Started::spawn(&argv);
    assert!(daemon.log.contains("daemon started"));
    // Mail from a program on the router lands in root's mailbox on /srv.
    let mut submit = Command::new(bin());
    submit.args(["-f", conf_path.to_str().unwrap(), "sendmail", "root"]);
    let out =
        crate::util::run_with_input(&mut submit, b"Subject: from cron\n\nThe backup finished.\n");
    assert!(out.status.success(), "{:?}", out);
    let mailbox = root.join("srv/etrnd/mail/root");
    wait_for("the mail in root's mailbox", || {
        std::fs::read_to_string(&mailbox).is_ok_and(|m| m.contains("The backup finished."))
    });
    assert!(root.join("srv/etrnd/spool").is_dir(), "the spool on /srv");

    // netifd: wan up, then down.
    let status = || run_etrnd(&conf_path, &["link", "status", "wan"]).1;
    assert!(status().contains("wan down since"), "{}", status());
    let run_hotplug = |action: &str| {
        let out = Command::new("sh")
            .arg(&hotplug)
            .env("ACTION", action)
            .env("INTERFACE", "wan")
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    run_hotplug("ifup");
    wait_for("wan up", || status().contains("wan up since"));
    run_hotplug("ifdown");
    wait_for("wan down", || status().contains("wan down since"));
    // Another interface changes nothing, and says nothing.
    let out = Command::new("sh")
        .arg(&hotplug)
        .env("ACTION", "ifup")
        .env("INTERFACE", "lan")
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty());
    assert!(status().contains("wan down since"));
}
