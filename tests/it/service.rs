//! The daemon as rc.d runs it: detached, pid file, syslog, signals, privileges.

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
    std::thread::sleep(Duration::from_millis(200));
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
        eprintln!("skipped: needs root");
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
