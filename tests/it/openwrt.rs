//! The OpenWrt package (openwrt/mail/etrnd): what procd is told to start runs with the
//! package's configuration and files as installed (folders it makes, modes it
//! gives), delivers mail, reloads as its own account, learns at start which links
//! netifd has up and follows the hotplug script after; the spool is on storage that
//! survives a reboot and a sysupgrade; every file the package Makefile installs is
//! in the checkout. The
//! package's absolute paths are moved under a private folder, as `make install`
//! moves /usr/local.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::foreground::{wait_for, Foreground};
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
        // Held mail survives a sysupgrade too (mailboxes are the reader's to save).
        assert!(
            name != "POSTOFFICE"
                || kept
                    .iter()
                    .any(|k| path.starts_with(k.trim_end_matches('/'))),
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

/// Writes a file of the package with the mode the package gives it.
fn install(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn what_procd_starts_delivers_mail_and_the_uplink_is_followed_from_the_start() {
    if !crate::util::is_root() {
        crate::util::skip("needs root (the daemon drops to its account)");
        return;
    }
    let dir = TempDir::new("openwrt");
    let root = dir.0.clone();
    // The router's / (0755); no /srv: the daemon makes the folders above its spool.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let etc = root.join("etc/etrnd");
    std::fs::create_dir_all(etc.join("db")).unwrap();
    std::fs::create_dir_all(root.join("var/run")).unwrap();
    // The package's etrnd.conf as installed (0644, INSTALL_DATA), on a free port
    // rather than 25, with its uplink named.
    let port = free_port();
    let conf = relocate(&read(&package().join("files/etrnd.conf")), &root)
        .replace("LISTEN=127.0.0.1:25", &format!("LISTEN=127.0.0.1:{port}"))
        .replace("USER=etrnd", &format!("USER={}", daemon_account()))
        .replace(
            "#LINKS=\"wan:mail.isp.example\"",
            "LINKS=\"wan:mail.isp.example\"",
        );
    assert!(conf.contains("LINKS=\"wan:"), "the sample names the uplink");
    install(&etc.join("etrnd.conf"), &conf, 0o644);
    install(
        &etc.join("scheduler.conf"),
        &read(&checkout().join("etc/local/scheduler.conf")),
        0o644,
    );
    for f in ["routes", "localnames", "aliases"] {
        install(
            &etc.join("db").join(f),
            &read(&checkout().join("etc/local/db").join(f)),
            0o644,
        );
    }
    // netifd says wan is up (OpenWrt's network.sh, reduced to that).
    let network = root.join("network.sh");
    std::fs::write(&network, "network_is_up() { [ \"$1\" = wan ]; }\n").unwrap();
    let init = root.join("etrnd.init");
    std::fs::write(
        &init,
        relocate(&read(&package().join("files/etrnd.init")), &root)
            .replace("/lib/functions/network.sh", network.to_str().unwrap()),
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
    let daemon = Foreground::start(Command::new(argv[0]).args(&argv[1..]));
    let status = || run_etrnd(&conf_path, &["link", "status", "wan"]).1;
    // wan was up before etrnd: procd's service_started tells the daemon.
    assert!(status().contains("wan down since"), "{}", status());
    procd(&init, "service_started");
    wait_for(
        "wan up after service_started",
        30,
        || status().contains("wan up since"),
        || daemon.log(),
    );

    // Mail from a program on the router lands in root's mailbox on /srv.
    let mut submit = Command::new(bin());
    submit.args(["-f", conf_path.to_str().unwrap(), "sendmail", "root"]);
    let out =
        crate::util::run_with_input(&mut submit, b"Subject: from cron\n\nThe backup finished.\n");
    assert!(out.status.success(), "{:?}", out);
    let mailbox = root.join("srv/etrnd/mail/root");
    wait_for(
        "the mail in root's mailbox",
        30,
        || std::fs::read_to_string(&mailbox).is_ok_and(|m| m.contains("The backup finished.")),
        || daemon.log(),
    );
    let srv = std::fs::metadata(root.join("srv")).unwrap();
    assert_eq!(srv.permissions().mode() & 0o777, 0o755, "/srv as made");
    assert!(root.join("srv/etrnd/spool").is_dir(), "the spool on /srv");

    // The daemon's account reads the configuration again: a reload and a listing.
    daemon.wait_lines("delivered to mailbox", 1);
    let _ = Command::new("kill")
        .args(["-HUP", &daemon.child.id().to_string()])
        .status();
    daemon.wait_lines("config reloaded", 1);
    assert!(!daemon.log().contains("reload-failed"), "{}", daemon.log());
    let (code, _, err) = run_etrnd(&conf_path, &["mailq"]);
    assert_eq!(code, 0, "mailq: {err}");

    // netifd: wan down, then up.
    let run_hotplug = |action: &str, interface: &str| {
        let out = Command::new("sh")
            .arg(&hotplug)
            .env("ACTION", action)
            .env("INTERFACE", interface)
            .output()
            .unwrap();
        assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty());
    };
    run_hotplug("ifdown", "wan");
    assert!(status().contains("wan down since"), "{}", status());
    run_hotplug("ifup", "wan");
    assert!(status().contains("wan up since"), "{}", status());
    // Another interface changes nothing, and says nothing.
    run_hotplug("ifdown", "lan");
    assert!(status().contains("wan up since"), "{}", status());
}
