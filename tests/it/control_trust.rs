//! The control socket as a trust boundary (reference/bad-input.md §K 88–90): a real
//! unprivileged account, made with useradd, asks the daemon (started as root) to
//! delete the queue, bring a link up and run ATRN — through a path it swapped for a
//! symlink to the spool, as the old datagram protocol allowed — floods it with
//! requests and wake-ups, and the control clients see the daemon's death at once.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{as_attacker, attacker, Client, Daemon, Setup, ATTACKER};

/// Makes the test's folder and configuration reachable by the attacker (the
/// spool stays the daemon's).
fn open_to_attacker(d: &Daemon) {
    std::fs::set_permissions(&d.dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in [
        "etrnd.conf",
        "scheduler.conf",
        "db/routes",
        "db/localnames",
        "db/aliases",
    ] {
        let p = d.dir.0.join(f);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(d.dir.0.join("db"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A folder the attacker owns, inside the test's folder.
fn attacker_dir(d: &Daemon, name: &str) -> std::path::PathBuf {
    let p = d.dir.0.join(name);
    std::fs::create_dir_all(&p).unwrap();
    crate::util::run_ok(Command::new("chown").arg(ATTACKER).arg(&p));
    p
}

fn held(d: &Daemon, n: usize) {
    let mut c = Client::hello(d.addr());
    for i in 0..n {
        c.send_message(
            "a@b.example",
            &["u@client.dom"],
            &format!("Subject: {i}\r\n\r\nheld\r\n"),
        );
    }
    c.cmd("QUIT", 221);
}

#[test]
fn a_local_user_is_told_apart_by_the_kernel_not_by_a_path() {
    let Some(uid) = attacker() else { return };
    let d = Daemon::start();
    open_to_attacker(&d);
    held(&d, 3);
    assert_eq!(d.queue_files().len(), 3);
    let x = attacker_dir(&d, "x");
    let spool = d.spool();
    let conf = d.conf_path();
    // The old attack: a reply socket bound under a folder then swapped for a
    // symlink to the spool; and the new socket reached through such a symlink.
    let script = r#"import os, socket, sys
x = sys.argv[1]
os.makedirs(x + "/d")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(x + "/d/notify")
os.rename(x + "/d", x + "/gone")
os.symlink(sys.argv[2], x + "/d")
try:
    s.sendto(b"queue delete ALL", sys.argv[2] + "/control")
    print("datagram-sent")
except OSError as e:
    print("datagram-refused", e.errno)
for req in [b"queue delete ALL", b"link up", b"atrn 366 127.0.0.1 client.dom", b"queue hold ALL"]:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(5)
    c.connect(x + "/d/control")
    f = c.makefile("rb")
    c.sendall(req + b"\n")
    print(req.decode(), "->", f.readline().decode().strip())
    c.close()
"#;
    let out = as_attacker(
        &format!(
            "python3 -c '{}' {} {}",
            script.replace('\'', "'\\''"),
            x.display(),
            spool.display()
        ),
        b"",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("datagram-refused"), "{text}");
    for req in ["queue delete ALL", "link up", "atrn 366", "queue hold ALL"] {
        let line = text.lines().find(|l| l.starts_with(req)).unwrap_or("");
        assert!(line.contains("-> 550 5.7.1"), "{req}: {text}");
    }
    // The commands themselves, as the attacker: refused, exit 77.
    for args in [
        vec!["queue", "delete", "ALL"],
        vec!["link", "up"],
        vec!["flush", "client.dom"],
    ] {
        let out = as_attacker(
            &format!(
                "{} -f {} {}",
                crate::util::bin(),
                conf.display(),
                args.join(" ")
            ),
            b"",
        );
        assert_eq!(out.status.code(), Some(77), "{args:?}: {out:?}");
    }
    // Nothing happened to the queue, and the log names the real uid.
    assert_eq!(d.queue_files().len(), 3);
    assert!(!d.log().contains("queue deleted"), "{}", d.log());
    let refused = format!("control request uid={uid} request=\"queue delete ALL\" reply=\"550");
    assert!(d.log().contains(&refused), "{}", d.log());
    // The attacker may still ask what any user may: a flush of what is not held,
    // the queue listing.
    let out = as_attacker(
        &format!("{} -f {} flush", crate::util::bin(), conf.display()),
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = as_attacker(
        &format!("{} -f {} mailq", crate::util::bin(), conf.display()),
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("u@client.dom")
            .count(),
        3
    );
    // Root still may.
    let (code, out, _) = d.run(&["queue", "hold", "ALL"]);
    assert_eq!(code, 0, "{out}");
    assert!(d
        .log()
        .contains("control request uid=0 request=\"queue hold ALL\""));
}

#[test]
fn a_flood_of_requests_and_wakeups_is_refused_and_the_daemon_stays_responsive() {
    let Some(uid) = attacker() else { return };
    let mut d = Daemon::start();
    open_to_attacker(&d);
    let spool = d.spool();
    // 40 connections at once, then 300 requests on one connection, then 20,000
    // wake-up datagrams: all as fast as the attacker can.
    let script = r#"import socket, sys
p = sys.argv[1]
conns, refused = [], 0
for i in range(40):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(5)
    c.connect(p + "/control")
    conns.append(c)
for c in conns:
    try:
        c.sendall(b"flush\n")
        line = c.makefile("rb").readline()
    except OSError:
        line = b""
    if line.startswith(b"421") or not line:
        refused += 1
print("conn-refused", refused)
for c in conns:
    c.close()
served, limited, one = 0, 0, 0
for i in range(300):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(5)
    c.connect(p + "/control")
    f = c.makefile("rb")
    c.sendall(b"flush\nflush\n")
    line = f.readline()
    if f.readline() == b"":
        one += 1
    c.close()
    if line.startswith(b"250"):
        served += 1
    elif line.startswith(b"421"):
        limited += 1
        break
print("served", served, "limited", limited, "one-per-connection", one)
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sent = 0
for i in range(20000):
    try:
        n.sendto(b"x", p + "/notify")
        sent += 1
    except OSError:
        pass
print("wakeups", sent)
"#;
    let probe = std::thread::spawn({
        let addr = d.addr();
        move || {
            // A client of the mail service meanwhile: every greeting comes quickly.
            let mut worst = Duration::ZERO;
            for _ in 0..20 {
                let t = Instant::now();
                let mut c = Client::connect(addr);
                c.expect(220);
                worst = worst.max(t.elapsed());
                c.cmd("QUIT", 221);
            }
            worst
        }
    });
    let out = as_attacker(
        &format!(
            "python3 -c '{}' {}",
            script.replace('\'', "'\\''"),
            spool.display()
        ),
        b"",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let num = |key: &str| -> usize {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX)
    };
    // At most 8 connections of one uid at once: most were refused (a few more
    // than 8 may be served, as served ones close while the rest are accepted).
    assert!(num("conn-refused ") >= 24, "{text}");
    // A burst, then the rate limit.
    let served = num("served ");
    assert!((20..=60).contains(&served), "{text}");
    assert!(text.contains("limited 1"), "{text}");
    // A user's connection serves one request, then closes.
    let one: usize = text
        .split("one-per-connection ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert_eq!(one, served + 1, "{text}");
    assert!(d
        .log()
        .contains(&format!("uid {uid} sends too many control requests")));
    let worst = probe.join().unwrap();
    assert!(
        worst < Duration::from_secs(2),
        "a greeting waited {worst:?}"
    );
    // The loop still serves and stops at once.
    let mut c = Client::hello(d.addr());
    c.cmd("NOOP", 250);
    drop(c);
    let t = Instant::now();
    d.signal("TERM");
    let status = d.stop_wait();
    assert!(status.success(), "{status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "SIGTERM took {:?}",
        t.elapsed()
    );
}

/// Waits until process `pid` holds a socket (it connected).
fn wait_connected(pid: u32) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let has = std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|rd| {
            rd.filter_map(|e| e.ok()).any(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
            })
        });
        if has {
            return;
        }
        assert!(Instant::now() < until, "process {pid} never connected");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn control_clients_end_at_once_when_the_daemon_dies_and_leave_no_file() {
    // A provider that takes the connection and never greets.
    let provider = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = provider.local_addr().unwrap().port();
    let mut d = Daemon::start();
    let authinfo = d.dir.0.join("db/authinfo");
    std::fs::write(&authinfo, format!("[127.0.0.1]:{port} cust s3cret\n")).unwrap();
    std::fs::set_permissions(&authinfo, std::fs::Permissions::from_mode(0o600)).unwrap();
    d.signal("HUP");
    d.wait_until("the reload", 10, || {
        d.log().matches("secrets-loaded").count() >= 2
    });
    let tmp = crate::util::TempDir::new("ctl-tmp");
    let client = |args: &[&str]| {
        Command::new(crate::util::bin())
            .arg("-f")
            .arg(d.conf_path())
            .args(args)
            .env("TMPDIR", &tmp.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let atrn = client(&["atrn", "-p", &port.to_string(), "127.0.0.1"]);
    let (_conn, _) = provider.accept().unwrap();
    // The daemon is connected to the provider and waits for its greeting; three
    // more clients wait for a daemon that is stopped.
    d.signal("STOP");
    let others = [
        client(&["flush"]),
        client(&["mailq"]),
        client(&["queue", "hold", "ALL"]),
    ];
    for c in &others {
        wait_connected(c.id());
    }
    d.kill9();
    let t = Instant::now();
    for c in std::iter::once(atrn).chain(others) {
        let out = c.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(75), "{text}");
        assert!(text.contains("went away"), "{text}");
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let left: Vec<String> = crate::util::list(&tmp.0)
        .into_iter()
        .filter(|f| f != "db" && f != "log")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = Setup::default();
}
