//! The daemon as rc.d runs it: detached, pid file, syslog, signals, privileges.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{bin, run_etrnd, Client, Daemon, Setup, TempDir};

struct Syslog {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Syslog {
    fn bind(path: &std::path::Path) -> Syslog {
        let s = UnixDatagram::bind(path).unwrap();
        world_writable(path);
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                if let Ok(n) = s.recv(&mut buf) {
                    l2.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        Syslog { lines }
    }

    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| l.contains(text)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no syslog line with '{text}': {:?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Kills a detached daemon if a test fails before stopping it.
struct PidGuard(i32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = Command::new("kill")
                .args(["-9", &self.0.to_string()])
                .status();
        }
    }
}

/// Starts the daemon of `dir` as rc.d does (no -d) and returns its pid, read from the
/// pid file, with a guard that kills it if the test fails first.
fn start_detached(dir: &std::path::Path) -> (i32, PidGuard) {
    let st = Command::new(bin())
        .arg("-f")
        .arg(dir.join("etrnd.conf"))
        .status()
        .unwrap();
    assert!(
        st.success(),
        "the parent returns once the daemon is detached"
    );
    let pid: i32 = std::fs::read_to_string(dir.join("etrnd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (pid, PidGuard(pid))
}

fn kill(sig: &str, pid: i32) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

#[test]
fn detaches_writes_pidfile_logs_to_syslog_reloads_and_stops() {
    let dir = TempDir::new("service");
    let port = crate::util::free_port();
    Setup::with_conf(&format!("LISTEN=127.0.0.1:{port}\nSYSLOG_SOCKET=syslog\n")).write(&dir.0);
    let syslog = Syslog::bind(&dir.0.join("syslog"));
    let conf = dir.0.join("etrnd.conf");
    let (pid, _guard) = start_detached(&dir.0);
    assert!(alive(pid));
    let started = syslog.wait_for("daemon started");
    assert!(
        started.starts_with("<22>"),
        "facility mail, level info: {started}"
    );
    assert!(
        started.contains(&format!("etrnd[{pid}]:")),
        "ident and pid: {started}"
    );
    // It serves, from its own session: stdin/stdout are /dev/null, cwd is /.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    Client::hello(addr).cmd("NOOP", 250);
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        std::path::Path::new("/")
    );
    // A second instance refuses clearly.
    let (code, _, err) = run_etrnd(&conf, &[]);
    assert_eq!(code, 69);
    assert!(err.contains("already running"));
    // SIGHUP with a new listener: it is bound.
    let port2 = crate::util::free_port();
    let text = std::fs::read_to_string(&conf).unwrap().replace(
        &format!("LISTEN=127.0.0.1:{port}"),
        &format!("LISTEN=127.0.0.1:{port} 127.0.0.1:{port2}"),
    );
    std::fs::write(&conf, text).unwrap();
    kill("-HUP", pid);
    syslog.wait_for("config reloaded");
    syslog.wait_for(&format!("listening address=127.0.0.1:{port2}"));
    Client::hello(format!("127.0.0.1:{port2}").parse().unwrap()).cmd("NOOP", 250);
    // SIGTERM: stops cleanly.
    kill("-TERM", pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    syslog.wait_for("daemon stopped");
}

#[test]
fn sigterm_lets_a_message_in_progress_finish() {
    let mut d = Daemon::start();
    let mut c = Client::hello(d.addr());
    c.cmd("MAIL FROM:<a@b.example>", 250);
    c.cmd("RCPT TO:<u@client.dom>", 250);
    c.cmd("DATA", 354);
    c.send_raw(b"Subject: in flight\r\n\r\nhalf");
    d.signal("TERM");
    d.wait_until("the stop to begin", 10, || {
        d.log().contains("daemon stopping")
    });
    c.send_raw(b" and the rest\r\n.\r\n");
    c.expect(250);
    c.send("NOOP");
    assert_eq!(c.reply().unwrap().0, 421, "the next command is told");
    assert_eq!(d.stop_wait().code(), Some(0));
    assert_eq!(d.queue_files().len(), 1, "the message is whole and queued");
    assert!(crate::util::list(&d.spool().join("tmp")).is_empty());
}

#[test]
fn drops_privileges_to_user_after_binding() {
    if !crate::util::is_root() {
        crate::util::skip("needs root");
        return;
    }
    let d = Daemon::start_with(Setup::with_conf("USER=daemon\n"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let daemon_uid = Command::new("id").args(["-u", "daemon"]).output().unwrap();
    let daemon_uid = String::from_utf8_lossy(&daemon_uid.stdout)
        .trim()
        .to_string();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == daemon_uid),
        "{uid_line}"
    );
    // It still accepts and queues mail, into a spool it owns.
    let mut c = Client::hello(d.addr());
    c.send_message("a@b.example", &["u@client.dom"], "Subject: x\r\n\r\nx\r\n");
    assert_eq!(d.queue_files().len(), 1);
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(d.spool().join("queue")).unwrap().uid();
    assert_eq!(owner.to_string(), daemon_uid);
    assert!(d.log().contains("privileges-dropped user=daemon"));
}

#[test]
fn check_reports_unknown_user_and_unusable_spool() {
    let dir = TempDir::new("check");
    Setup::with_conf("USER=no-such-user-etrnd\n").write(&dir.0);
    let (code, _, err) = run_etrnd(&dir.0.join("etrnd.conf"), &["-n"]);
    assert_eq!(code, 78);
    assert!(err.contains("USER: no such user"));
    let dir = TempDir::new("check2");
    std::fs::write(dir.0.join("spool"), "not a directory").unwrap();
    Setup::default().write(&dir.0);
    let (code, _, err) = run_etrnd(&dir.0.join("etrnd.conf"), &["-n"]);
    assert_eq!(code, 78);
    assert!(err.contains("POSTOFFICE is not a directory"));
}

#[test]
fn a_syslog_that_stops_reading_never_stops_the_mail() {
    let dir = TempDir::new("syslogfull");
    let port = crate::util::free_port();
    Setup::with_conf(&format!("LISTEN=127.0.0.1:{port}\nSYSLOG_SOCKET=syslog\n")).write(&dir.0);
    // Bound but not read: its queue fills after a few lines.
    let sock = UnixDatagram::bind(dir.0.join("syslog")).unwrap();
    world_writable(&dir.0.join("syslog"));
    let (pid, _guard) = start_detached(&dir.0);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Every message logs several lines; a blocking logger would hang in the first few.
    let mut c = Client::hello(addr);
    for i in 0..40 {
        c.send_message(
            "s@test.example",
            &["u@client.dom"],
            &format!("Subject: {i}\r\n\r\nx\r\n"),
        );
    }
    c.cmd("QUIT", 221);
    // Read what is queued and make the daemon log again: once there is room it
    // reports what it dropped.
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lines.iter().any(|l: &String| l.contains("syslog dropped=")) {
        assert!(Instant::now() < deadline, "no drop report: {lines:?}");
        while let Ok(n) = sock.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        Client::hello(addr).cmd("QUIT", 221);
    }
    let report = lines
        .iter()
        .find(|l| l.contains("syslog dropped="))
        .unwrap();
    assert!(
        report.starts_with("<20>"),
        "a warning, facility mail: {report}"
    );
    assert!(
        report.contains(&format!("etrnd[{pid}]:")),
        "ident and pid: {report}"
    );
    kill("-TERM", pid);
}

#[test]
fn logs_to_a_stream_syslog_socket_too() {
    use std::io::BufRead;
    let dir = TempDir::new("syslogstream");
    let port = crate::util::free_port();
    Setup::with_conf(&format!("LISTEN=127.0.0.1:{port}\nSYSLOG_SOCKET=syslog\n")).write(&dir.0);
    // As some syslog-ng setups listen: a stream socket, one line per message.
    let l = std::os::unix::net::UnixListener::bind(dir.0.join("syslog")).unwrap();
    world_writable(&dir.0.join("syslog"));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().map_while(Result::ok) {
            let l3 = l2.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(conn).lines().map_while(Result::ok) {
                    l3.lock().unwrap().push(line);
                }
            });
        }
    });
    let (pid, _guard) = start_detached(&dir.0);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    Client::hello(addr).cmd("QUIT", 221);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = lines.lock().unwrap().clone();
        let started = got.iter().find(|l| l.contains("daemon started"));
        let connect = got.iter().any(|l| l.contains("smtp connect"));
        if let (Some(s), true) = (started, connect) {
            assert!(s.starts_with("<22>"), "{s}");
            assert!(s.contains(&format!("etrnd[{pid}]: daemon started")), "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "lines so far: {got:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill("-TERM", pid);
}

/// A syslog socket anyone may write to, as /dev/log is (the daemon sends as USER).
fn world_writable(p: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666)).unwrap();
}

/// A sink that answers RCPT by the recipient's domain: `bad.example` 550,
/// `defer.example` 451, the rest 250.
fn judging_sink() -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let _ = w.write_all(b"220 judge\r\n");
                let (mut line, mut data, mut ok) = (String::new(), false, 0);
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    let l = line.trim_end().to_ascii_lowercase();
                    let reply: &[u8] = if data {
                        if l == "." {
                            data = false;
                            b"250 2.0.0 taken\r\n"
                        } else {
                            b""
                        }
                    } else if l.starts_with("ehlo") {
                        b"250-judge\r\n250 PIPELINING\r\n"
                    } else if l.starts_with("rcpt") && l.contains("@bad.example") {
                        b"550 5.1.1 no such user here\r\n"
                    } else if l.starts_with("rcpt") && l.contains("@defer.example") {
                        b"451 4.3.0 try again later\r\n"
                    } else if l.starts_with("rcpt") {
                        ok += 1;
                        b"250 2.1.5 ok\r\n"
                    } else if l == "data" {
                        if ok > 0 {
                            data = true;
                            b"354 go\r\n"
                        } else {
                            b"554 5.5.1 no valid recipients\r\n"
                        }
                    } else if l == "rset" {
                        ok = 0;
                        b"250 ok\r\n"
                    } else if l == "quit" {
                        let _ = w.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = w.write_all(reply);
                    line.clear();
                }
            });
        }
    });
    addr
}

/// The figure pflogsumm prints before `label` in its Grand Totals.
fn total(report: &str, label: &str) -> u64 {
    report
        .lines()
        .find_map(|l| {
            let l = l.trim();
            let (n, rest) = l.split_once(char::is_whitespace)?;
            rest.trim_start()
                .starts_with(label)
                .then(|| n.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no '{label}' in:\n{report}"))
}

#[test]
fn pflogsumm_reads_the_syslog_lines() {
    let Some(pflogsumm) = crate::util::need_tool("pflogsumm", "pflogsumm") else {
        return;
    };
    let dir = TempDir::new("pflogsumm");
    let port = crate::util::free_port();
    let sink = judging_sink();
    let route = format!("smtp![{}]:{}", sink.ip(), sink.port());
    Setup {
        conf: format!("LISTEN=127.0.0.1:{port}\nSYSLOG_SOCKET=syslog\n"),
        routes: format!(".sink.example {route}\n.bad.example {route}\n.defer.example {route}\n"),
        ..Setup::default()
    }
    .write(&dir.0);
    std::fs::write(
        dir.0.join("scheduler.conf"),
        "smtp/* expiry=1d interval=1h command=smtp\nlocal/* command=local\n",
    )
    .unwrap();
    let syslog = Syslog::bind(&dir.0.join("syslog"));
    let (pid, _guard) = start_detached(&dir.0);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Four messages by SMTP: delivered locally, delivered remotely, bounced by the
    // remote (its DSN is delivered locally), deferred; two recipients refused.
    let mut c = Client::hello(addr);
    for to in [
        "alice@test.example",
        "x@sink.example",
        "y@bad.example",
        "z@defer.example",
    ] {
        c.send_message("root@test.example", &[to], "Subject: mix\r\n\r\nhello\r\n");
    }
    c.cmd("MAIL FROM:<s@far.example>", 250);
    c.cmd("RCPT TO:<nosuch@test.example>", 550);
    c.cmd("RCPT TO:<u@victim.example>", 550);
    c.cmd("QUIT", 221);
    // And one by sendmail.
    let (code, _, err) = run_etrnd_input(
        &dir.0.join("etrnd.conf"),
        &["sendmail", "alice"],
        "Subject: local\n\nhi\n",
    );
    assert_eq!(code, 0, "{err}");
    syslog.wait_for("status=deferred");
    syslog.wait_for("status=bounced");
    let deadline = Instant::now() + Duration::from_secs(20);
    while syslog
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("status=sent"))
        .count()
        < 4
    {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            syslog.lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    kill("-TERM", pid);
    // As a syslog daemon writes them: the time stamp, the host, then the rest.
    let lines = syslog.lines.lock().unwrap().clone();
    let mut text = String::new();
    for l in &lines {
        let l = l.split_once('>').map_or(l.as_str(), |(_, r)| r);
        let (stamp, rest) = l.split_at(15.min(l.len()));
        text.push_str(&format!("{stamp} mx{rest}\n"));
    }
    std::fs::write(dir.0.join("maillog"), &text).unwrap();
    let out = Command::new(&pflogsumm)
        .args(["--syslog-name=etrnd", "--problems-first"])
        .arg(dir.0.join("maillog"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size_of = |id: &str| -> u64 {
        text.lines()
            .find(|l| l.contains(&format!("{id}: from=<")))
            .and_then(|l| l.split("size=").nth(1))
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let ids_with = |what: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(what))
            .filter_map(|l| l.split("]: ").nth(1))
            .filter_map(|r| r.split(':').next())
            .map(str::to_string)
            .collect()
    };
    let received: u64 = ids_with(": client=")
        .iter()
        .chain(&ids_with(": uid="))
        .map(|i| size_of(i))
        .sum();
    let delivered: u64 = ids_with("status=sent").iter().map(|i| size_of(i)).sum();
    eprintln!("pflogsumm:\n{report}");
    assert_eq!(total(&report, "received"), 5, "{text}");
    assert_eq!(total(&report, "delivered"), 4, "{text}");
    assert_eq!(total(&report, "deferred"), 1);
    assert_eq!(total(&report, "bounced"), 1);
    assert_eq!(total(&report, "rejected"), 2);
    assert_eq!(total(&report, "bytes received"), received);
    assert_eq!(total(&report, "bytes delivered"), delivered);
    assert_eq!(
        total(&report, "senders"),
        2,
        "root@test.example and root@mx.test.example"
    );
    assert_eq!(
        total(&report, "recipients"),
        4,
        "alice@test.example, alice@mx.test.example (sendmail's), x and root (the DSN)"
    );
    assert!(received > 0 && delivered > 0);
}

/// `etrnd ARGS` with `input` on stdin.
fn run_etrnd_input(conf: &std::path::Path, args: &[&str], input: &str) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("-f").arg(conf).args(args);
    let out = crate::util::run_with_input(&mut cmd, input.as_bytes());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_daemon_that_cannot_write_its_spool_does_not_start() {
    if !crate::util::is_root() {
        crate::util::skip("needs root (the daemon drops to USER)");
        return;
    }
    let d = Daemon::prepare(Setup::default(), &[]);
    // The spool's parent is closed to the daemon's user.
    std::fs::set_permissions(&d.dir.0, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new(crate::util::bin())
        .args(["-d", "-f"])
        .arg(d.conf_path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(73), "{err}");
    assert!(
        err.contains("the spool cannot be written by etrnd-test"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}/spool", d.dir.0.display())),
        "{err}"
    );
    assert!(!err.contains("daemon started"), "{err}");
}
