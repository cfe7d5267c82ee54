//! `make install` with GNU make and BSD make, and the lint of what it installs.

use std::path::Path;
use std::process::Command;

use crate::util::{bin, TempDir};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `tool target` (with `extra` settings) into `dest`, and asserts it succeeded.
fn make(tool: &str, target: &str, dest: &Path, extra: &[&str]) {
    let out = Command::new(tool)
        .current_dir(root())
        .arg(target)
        .args(extra)
        .arg(format!("DESTDIR={}", dest.display()))
        .arg("CARGO=true")
        .arg(format!("BIN={}", bin()))
        // The installed configuration names the daemon's account: one that exists.
        .arg(format!("ETRND_USER={}", crate::util::daemon_account()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} {target}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn make_install_with_gnu_make_and_bmake() {
    for (tool, package) in [("make", "make"), ("bmake", "bmake")] {
        let Some(tool) = crate::util::need_tool(tool, package) else {
            continue;
        };
        let tool = tool.as_str();
        let dir = TempDir::new("install");
        let dest = dir.0.join("root");
        make(tool, "install", &dest, &[]);
        let p = |rel: &str| dest.join(rel);
        for f in [
            "usr/local/sbin/etrnd",
            "usr/local/share/man/man8/etrnd.8",
            "usr/local/share/man/man5/etrnd.conf.5",
            "usr/local/share/man/man5/etrnd-routes.5",
            "usr/local/share/man/man5/etrnd-scheduler.conf.5",
            "usr/local/etc/rc.d/etrnd",
            "usr/local/etc/etrnd/etrnd.conf",
            "usr/local/etc/etrnd/etrnd.conf.sample",
            "usr/local/etc/etrnd/samples/hub/db/routes",
            "usr/local/etc/etrnd/scheduler.conf",
            "usr/local/etc/etrnd/db/routes",
            "usr/local/etc/etrnd/db/localnames",
            "usr/local/etc/etrnd/db/aliases",
            "usr/local/etc/etrnd/ip-up.etrnd",
            "usr/local/etc/etrnd/ip-down.etrnd",
        ] {
            assert!(p(f).is_file(), "{tool}: {f} missing");
        }
        // The system's mail names are not taken over behind its back: the README's
        // steps (dpkg-divert, mailer.conf) give them to etrnd.
        for name in ["mailq", "sendmail", "newaliases"] {
            assert!(
                !p(&format!("usr/local/sbin/{name}")).exists(),
                "{tool}: {name}"
            );
        }
        // An older install's link is removed by uninstall; a file of another's is not.
        std::os::unix::fs::symlink("etrnd", p("usr/local/sbin/mailq")).unwrap();
        std::fs::write(p("usr/local/sbin/sendmail"), "another MTA's\n").unwrap();
        // The installed configuration checks out with the installed binary.
        let out = Command::new(p("usr/local/sbin/etrnd"))
            .arg("-n")
            .arg("-f")
            .arg(p("usr/local/etc/etrnd/etrnd.conf"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A second install keeps a changed configuration and refreshes the sample.
        std::fs::write(p("usr/local/etc/etrnd/etrnd.conf"), "# mine\n").unwrap();
        make(tool, "install", &dest, &[]);
        assert_eq!(
            std::fs::read_to_string(p("usr/local/etc/etrnd/etrnd.conf")).unwrap(),
            "# mine\n"
        );
        make(tool, "uninstall", &dest, &[]);
        assert!(!p("usr/local/sbin/etrnd").exists(), "{tool}: uninstall");
        assert!(
            p("usr/local/sbin/mailq").symlink_metadata().is_err(),
            "{tool}: old link"
        );
        assert_eq!(
            std::fs::read_to_string(p("usr/local/sbin/sendmail")).unwrap(),
            "another MTA's\n"
        );
        std::fs::remove_file(p("usr/local/sbin/sendmail")).unwrap();
        assert!(!p("usr/local/share/man/man5/etrnd-routes.5").exists());
        assert!(
            p("usr/local/etc/etrnd/etrnd.conf").exists(),
            "configuration is the user's"
        );
    }
}

#[test]
fn man_pages_are_lint_clean() {
    let Some(mandoc) = crate::util::need_tool("mandoc", "mandoc") else {
        return;
    };
    for page in [
        "etrnd.8",
        "etrnd.conf.5",
        "etrnd-routes.5",
        "etrnd-scheduler.conf.5",
    ] {
        let out = Command::new(&mandoc)
            .args(["-Tlint", "-Wwarning"])
            .arg(root().join("man").join(page))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.is_empty(), "{page}: {text}");
    }
}

#[test]
fn shell_scripts_pass_sh_n_and_shellcheck() {
    let shellcheck = crate::util::need_tool("shellcheck", "shellcheck");
    for (script, shell) in [
        ("rc.d/etrnd", "sh"),
        ("rc.d/etrnd.openbsd", "ksh"),
        ("rc.d/etrnd.openrc", "sh"),
        ("etc/ppp/ip-up.etrnd", "sh"),
        ("etc/ppp/ip-down.etrnd", "sh"),
        ("bench/accept.sh", "sh"),
        ("bench/drain.sh", "sh"),
        ("bench/etrn.sh", "sh"),
        ("bench/local.sh", "sh"),
        ("bench/dns.sh", "sh"),
        ("bench/lib.sh", "sh"),
        ("bench/vs.sh", "sh"),
        ("tests/cross.sh", "sh"),
        ("openwrt/mail/etrnd/files/etrnd.init", "sh"),
        ("openwrt/mail/etrnd/files/etrnd.hotplug", "sh"),
    ] {
        let path = root().join(script);
        let out = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "sh -n {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let Some(shellcheck) = &shellcheck else {
            continue;
        };
        let out = Command::new(shellcheck)
            .args(["-x", "-s", shell])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "shellcheck {script}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn make_install_substitutes_prefix_and_installs_the_openbsd_script_where_it_belongs() {
    let dir = TempDir::new("pkgsrc");
    let dest = dir.0.join("root");
    make(
        "make",
        "install",
        &dest,
        &["PREFIX=/usr/pkg", "OPSYS=OpenBSD"],
    );
    let rc = std::fs::read_to_string(dest.join("etc/rc.d/etrnd")).unwrap();
    assert!(rc.starts_with("#!/bin/ksh"), "the OpenBSD script");
    assert!(rc.contains("daemon=\"/usr/pkg/sbin/etrnd\""), "{rc}");
    assert!(rc.contains("-f /usr/pkg/etc/etrnd/etrnd.conf"), "{rc}");
    assert!(!rc.contains("/usr/local"), "{rc}");
    // rc.subr matches pexp exactly (pgrep -xf): the daemon, never `etrnd mailq`.
    let pexp = "/usr/pkg/sbin/etrnd -f /usr/pkg/etc/etrnd/etrnd.conf";
    assert!(
        rc.contains("pexp=\"${daemon}${daemon_flags:+ ${daemon_flags}}\""),
        "{rc}"
    );
    assert_ne!(format!("{pexp} mailq"), pexp);
    for f in [
        "usr/pkg/etc/etrnd/ip-up.etrnd",
        "usr/pkg/man/man8/etrnd.8",
        "usr/pkg/man/man5/etrnd.conf.5",
    ] {
        let text = std::fs::read_to_string(dest.join(f)).unwrap();
        assert!(!text.contains("/usr/local"), "{f}");
        assert!(text.contains("/usr/pkg") || f.ends_with(".5"), "{f}");
    }
    assert!(
        !dest.join("usr/pkg/etc/rc.d/etrnd").exists(),
        "not the FreeBSD one"
    );
}

/// `bmake install` for each system puts every file where that system looks: its
/// rc.d script where its rc reads it, its man pages where its man looks, OpenBSD's
/// login class, Linux's systemd unit.
#[test]
fn bmake_install_puts_each_systems_files_where_it_looks() {
    let Some(bmake) = crate::util::need_tool("bmake", "bmake") else {
        return;
    };
    let expect: [(&str, &[&str], &[&str]); 4] = [
        (
            "FreeBSD",
            &[
                "usr/local/etc/rc.d/etrnd",
                "usr/local/share/man/man8/etrnd.8",
            ],
            &[
                "etc/rc.d/etrnd",
                "usr/local/lib/systemd/system/etrnd.service",
                "usr/local/etc/etrnd/samples/etrnd.openrc",
            ],
        ),
        (
            "NetBSD",
            &["etc/rc.d/etrnd", "usr/local/share/man/man5/etrnd.conf.5"],
            &["usr/local/etc/rc.d/etrnd"],
        ),
        (
            "OpenBSD",
            &[
                "etc/rc.d/etrnd",
                "etc/login.conf.d/etrnd",
                "usr/local/man/man8/etrnd.8",
                "usr/local/man/man5/etrnd-routes.5",
            ],
            &[
                "usr/local/share/man/man8/etrnd.8",
                "usr/local/etc/rc.d/etrnd",
            ],
        ),
        (
            "Linux",
            &[
                "usr/local/lib/systemd/system/etrnd.service",
                "usr/local/share/man/man8/etrnd.8",
                // Alpine's OpenRC script, for /etc/init.d (README.md).
                "usr/local/etc/etrnd/samples/etrnd.openrc",
            ],
            &["etc/rc.d/etrnd", "etc/login.conf.d/etrnd"],
        ),
    ];
    for (os, present, absent) in expect {
        let dir = TempDir::new(&format!("opsys-{os}"));
        let dest = dir.0.join("root");
        let opsys = format!("OPSYS={os}");
        make(&bmake, "install", &dest, &[&opsys]);
        for f in present {
            assert!(dest.join(f).is_file(), "{os}: {f} missing");
        }
        for f in absent {
            assert!(!dest.join(f).exists(), "{os}: {f} should not be there");
        }
        let rc = std::fs::read_to_string(dest.join(present[0])).unwrap();
        match os {
            "NetBSD" => assert!(rc.contains("NetBSD) rcvar=$name"), "{rc}"),
            "OpenBSD" => assert!(rc.contains("rcctl disable smtpd"), "{rc}"),
            _ => {}
        }
        // And uninstall takes every one of them away again.
        make(&bmake, "uninstall", &dest, &[&opsys]);
        for f in present {
            assert!(!dest.join(f).exists(), "{os}: {f} left by uninstall");
        }
    }
}

/// The ELF program header types of a binary (64-bit little-endian only).
fn program_headers(path: &str) -> Vec<u32> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], b"\x7fELF", "not an ELF file");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (size, n) = (u16_at(0x36), u16_at(0x38));
    (0..n)
        .map(|i| {
            let o = phoff + i * size;
            u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
        })
        .collect()
}

#[test]
fn the_static_build_has_no_interpreter() {
    // `make test-static` runs the whole suite against a static build; this says
    // the binary under test is one (PT_INTERP, 3, names the dynamic loader).
    if std::env::var_os("ETRND_STATIC").is_none() || !cfg!(target_os = "linux") {
        return;
    }
    let ph = program_headers(crate::util::bin());
    assert!(!ph.is_empty());
    assert!(
        !ph.contains(&3),
        "the static binary asks for a dynamic loader"
    );
}

#[test]
fn the_pages_a_new_user_reads_say_what_they_need() {
    let Some(mandoc) = crate::util::need_tool("mandoc", "mandoc") else {
        return;
    };
    let page = |name: &str| {
        let out = Command::new(&mandoc)
            .args(["-Tutf8", "-Owidth=200"])
            .arg(root().join("man").join(name))
            .output()
            .unwrap();
        // Bold and underline overstrikes out.
        let mut text = String::new();
        for c in String::from_utf8_lossy(&out.stdout).chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        text
    };
    let routes = page("etrnd-routes.5");
    assert!(routes.contains("odmr!"), "routes(5) lists odmr!");
    for name in [
        "etrnd-routes.5",
        "etrnd.conf.5",
        "etrnd.8",
        "etrnd-scheduler.conf.5",
    ] {
        let text = page(name);
        assert!(
            !text.contains("’’") && !text.contains("‘‘"),
            "{name}: quotes nested wrongly"
        );
    }
    assert!(
        page("etrnd.8").contains("secret [-s scheme]"),
        "etrnd secret is documented"
    );
    let sample = std::fs::read_to_string(root().join("etc/client/db/authinfo.sample")).unwrap();
    assert!(
        sample.contains(":366"),
        "an ODMR line in the authinfo sample"
    );
}
