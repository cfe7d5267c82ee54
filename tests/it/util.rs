//! Test harness: starts the real `etrnd` binary in the foreground on an ephemeral
//! loopback port with a private spool, and talks SMTP to it. Every socket operation
//! has a timeout, so a hung daemon fails a test instead of hanging CI.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the tests run as root.
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Where skipped tests are noted for `make test`'s closing list.
pub fn skip_list() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.txt")
}

/// A test (or part of one) that cannot run here: says why on standard error and
/// notes `TEST: reason` in [`skip_list`], which `make test` prints at the end (a
/// passing test's output is otherwise hidden).
pub fn skip(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    eprintln!("skipped: {reason}");
    let line = format!("{test}: {reason}\n");
    // One write of one line in append mode: lines of parallel tests do not mix.
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skip_list())
        .and_then(|mut f| f.write_all(line.as_bytes()));
}

/// The one policy for tests that need a program from outside (README.md lists
/// them): the program's path, or `None` after a "skipped:" line naming it and its
/// Debian package, so `make test` passes on a machine with only cargo and Python.
/// CI installs them all and sets `ETRND_REQUIRE_TOOLS=1`, where a missing one fails.
pub fn need_tool(name: &str, package: &str) -> Option<String> {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
        "/sbin",
        "/bin",
    ] {
        let p = format!("{dir}/{name}");
        if Path::new(&p).exists() {
            return Some(p);
        }
    }
    if std::env::var_os("ETRND_REQUIRE_TOOLS").is_some() {
        panic!("{name} is needed (Debian package {package}); ETRND_REQUIRE_TOOLS is set");
    }
    skip(&format!("needs {name} (Debian package {package})"));
    None
}

/// The unprivileged account test daemons started as root run as (created if
/// missing).
pub const DAEMON_ACCOUNT: &str = "etrnd-test";

/// Makes sure the system account `name` exists (created with no home and `shell`).
pub fn system_account(name: &str, shell: &str) {
    let exists = Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        let ok = Command::new("useradd")
            .args(["-r", "-M", "-d", "/nonexistent", "-s", shell, name])
            .status()
            .is_ok_and(|s| s.success());
        // A parallel test may have made it meanwhile.
        let now = Command::new("id")
            .arg(name)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok || now, "useradd {name} failed");
    }
}

/// Makes sure [`DAEMON_ACCOUNT`] exists and returns its name.
pub fn daemon_account() -> &'static str {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| system_account(DAEMON_ACCOUNT, "/bin/false"));
    DAEMON_ACCOUNT
}

/// The unprivileged account local attacks run as (created if missing, kept).
pub const ATTACKER: &str = "etrnd-attacker";

/// The attacker's uid, creating the account if needed; `None` (skip) unless root with
/// useradd and setpriv.
pub fn attacker() -> Option<u32> {
    let tools = ["/usr/sbin/useradd", "/usr/bin/setpriv"];
    if !is_root() || !tools.iter().all(|t| std::path::Path::new(t).exists()) {
        if std::env::var_os("ETRND_REQUIRE_TOOLS").is_some() {
            panic!("the local attack tests need root, useradd and setpriv");
        }
        skip("needs root, useradd and setpriv (Debian packages passwd, util-linux)");
        return None;
    }
    system_account(ATTACKER, "/bin/sh");
    let out = Command::new("id").args(["-u", ATTACKER]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Runs a shell command as `user` (no supplementary groups), with `input` on its
/// standard input.
pub fn as_user(user: &str, script: &str, input: &[u8]) -> std::process::Output {
    let mut c = Command::new("/usr/bin/setpriv")
        .args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input).unwrap();
    c.wait_with_output().unwrap()
}

/// Runs a shell command as the attacker, with `input` on its standard input.
pub fn as_attacker(script: &str, input: &[u8]) -> std::process::Output {
    as_user(ATTACKER, script, input)
}

/// AUTH CRAM-MD5 as `user` with `password` after EHLO; the final reply must be
/// `code`.
pub fn cram(c: &mut Client, user: &str, password: &str, code: u16) -> String {
    let challenge = c.cmd("AUTH CRAM-MD5", 334);
    let b64 = challenge.trim().trim_start_matches("334 ");
    let chal = etrnd::auth::base64::decode(b64.as_bytes()).expect("base64 challenge");
    let digest = etrnd::auth::md5::hmac(password.as_bytes(), &chal);
    let answer = format!("{user} {}", etrnd::auth::base64::hex_encode(&digest));
    c.cmd(&etrnd::auth::base64::encode(answer.as_bytes()), code)
}

/// A system account with a home of its own at `/tmp/NAME-home` (made afresh, owned
/// by it, 0755): its uid, its home, and a lock that keeps every other test (of this
/// run or of another run on the machine) from that home until it is dropped.
pub fn home_account(name: &str) -> (u32, PathBuf, std::fs::File) {
    let home = PathBuf::from(format!("/tmp/{name}-home"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("/tmp/{name}-home.lock"))
        .unwrap();
    // SAFETY: flock on a descriptor this function owns; blocks until it is ours.
    assert_eq!(
        unsafe { libc::flock(std::os::unix::io::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    let exists = Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        let _ = Command::new("/usr/sbin/useradd")
            .args([
                "-r",
                "-M",
                "-d",
                home.to_str().unwrap(),
                "-s",
                "/bin/sh",
                name,
            ])
            .stderr(Stdio::null())
            .status();
    }
    let out = run_ok(Command::new("id").args(["-u", name]));
    let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(uid), Some(uid)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    (uid, home, lock)
}

/// Runs `cmd` with `input` on its standard input (standard error captured).
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `cmd`, which must succeed (its standard error is the failure message).
pub fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Waits until something accepts connections on loopback `port` (a peer started
/// as a separate program); fails after `secs`.
pub fn wait_listening(port: u16, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port nothing listens on now (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How many times longer than on this machine a daemon may take to come up or to
/// do what a test waits for: `ETRND_TEST_SLACK` (default 1), which `make cross` sets
/// for the daemon it runs under emulation.
pub fn slack() -> u32 {
    static SLACK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *SLACK.get_or_init(|| {
        std::env::var("ETRND_TEST_SLACK")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|n| (1..=20).contains(n))
            .unwrap_or(1)
    })
}

/// The etrnd under test: this build's, or `ETRND_TEST_BIN` (how `make cross` runs
/// the suite against a router's daemon under qemu-user, through a launcher named
/// `etrnd`).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("ETRND_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_etrnd").into())
    })
}

/// Runs `etrnd -f CONF ARGS` to completion: (exit code, stdout, stderr).
pub fn run_etrnd(conf: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("-f")
        .arg(conf)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A private directory, removed on drop unless the test failed.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("etrnd-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("db")).unwrap();
        std::fs::create_dir_all(p.join("log")).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub const ROUTES: &str = ".client.dom smtp-etrn!mail.client.dom\n.closed.dom error!database\n";

/// Files of a test configuration.
pub struct Setup {
    pub conf: String,
    pub routes: String,
    pub localnames: String,
    pub aliases: String,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            conf: String::new(),
            routes: ROUTES.into(),
            localnames: "test.example\n".into(),
            aliases: "alice: root\nbob: root\n".into(),
        }
    }
}

impl Setup {
    pub fn with_conf(extra: &str) -> Setup {
        Setup {
            conf: extra.into(),
            ..Setup::default()
        }
    }

    /// Writes the files into `dir`.
    pub fn write(&self, dir: &Path) {
        let mut conf = String::from("MAILVAR=.\nPOSTOFFICE=spool\nPIDFILE=etrnd.pid\nLOGDIR=log\n");
        let has = |name: &str| {
            self.conf
                .lines()
                .any(|l| l.starts_with(&format!("{name}=")))
        };
        for (name, value) in [
            ("LISTEN", "127.0.0.1:0"),
            ("MAILBOX", "mail/"),
            ("HOSTNAME", "mx.test.example"),
            ("GREET_PAUSE", "0"),
            ("HOSTS_ORDER", "files"),
            ("HOSTS_FILE", "hosts"),
            ("RESOLV_CONF", "resolv.conf"),
            ("NSSWITCH_CONF", "nsswitch.conf"),
        ] {
            if !has(name) {
                conf.push_str(&format!("{name}={value}\n"));
            }
        }
        conf.push_str(&self.conf);
        // Started as root (CI), the daemon needs an account of its own to become
        // (last, so the lines above keep their numbers).
        if is_root() && !has("USER") {
            conf.push_str(&format!("USER={}\n", daemon_account()));
        }
        std::fs::write(dir.join("etrnd.conf"), conf).unwrap();
        std::fs::write(dir.join("db/routes"), &self.routes).unwrap();
        std::fs::write(dir.join("db/localnames"), &self.localnames).unwrap();
        std::fs::write(dir.join("db/aliases"), &self.aliases).unwrap();
        // Unless a test brings its own, hold every channel: tests of the SMTP server
        // count queue files and must not race deliveries.
        std::fs::write(
            dir.join("scheduler.conf"),
            "*/* queueonly expiry=1d\nlocal/* command=local\nsmtp*/* command=smtp\n\
             error/* command=errormail\n",
        )
        .unwrap();
    }
}

/// A running daemon.
pub struct Daemon {
    pub dir: TempDir,
    /// Extra environment for the daemon.
    pub env: Vec<(String, String)>,
    /// A shell command run before `exec` of the daemon (e.g. `ulimit -n 64`).
    pub shell_prefix: Option<String>,
    /// A command the daemon runs under (e.g. `ip netns exec NS`), which execs it.
    pub wrap: Vec<String>,
    child: Option<Child>,
    pub addrs: Vec<SocketAddr>,
    log: Arc<Mutex<LogPipe>>,
}

/// The daemon's standard error as it comes: the text so far and the pipe it comes
/// through. Whoever reads the log drains the pipe first (under the lock), so a line
/// the daemon wrote before it answered a client is in every log read after that
/// answer: a test never races the reader thread.
#[derive(Default)]
struct LogPipe {
    text: String,
    /// Octets of an unfinished last line.
    partial: Vec<u8>,
    fd: Option<std::os::fd::OwnedFd>,
    /// How much of `text` was looked at for the start-up lines.
    scanned: usize,
    /// Where the listening addresses and "daemon started" go during a start.
    tx: Option<std::sync::mpsc::Sender<Option<SocketAddr>>>,
    /// Which start the pipe is of (a reader thread of an earlier one leaves).
    gen: u64,
}

impl LogPipe {
    /// Reads what the pipe holds now; `false` once it has ended.
    fn drain(&mut self) -> bool {
        use std::os::fd::AsRawFd;
        let Some(fd) = &self.fd else { return false };
        let mut buf = [0u8; 8192];
        let open = loop {
            // SAFETY: read into a buffer we own from a descriptor we own.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match n {
                0 => break false,
                n if n > 0 => self.partial.extend_from_slice(&buf[..n as usize]),
                _ => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        break e.kind() == std::io::ErrorKind::WouldBlock;
                    }
                }
            }
        };
        if let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') {
            let lines: Vec<u8> = self.partial.drain(..=end).collect();
            self.text.push_str(&String::from_utf8_lossy(&lines));
        }
        if !open {
            self.fd = None;
            if !self.partial.is_empty() {
                let rest = std::mem::take(&mut self.partial);
                self.text.push_str(&String::from_utf8_lossy(&rest));
                self.text.push('\n');
            }
        }
        self.scan();
        open
    }

    /// Tells a waiting start about the lines it waits for.
    fn scan(&mut self) {
        let Some(tx) = &self.tx else {
            self.scanned = self.text.len();
            return;
        };
        for line in self.text[self.scanned..].lines() {
            if let Some(a) = line.split("smtp listening address=").nth(1) {
                let _ = tx.send(Some(a.trim().parse::<SocketAddr>().unwrap()));
            }
            if line.contains("daemon started") {
                let _ = tx.send(None);
            }
        }
        self.scanned = self.text.len();
    }
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(Setup::default())
    }

    pub fn start_with(setup: Setup) -> Daemon {
        Daemon::start_with_files(setup, &[])
    }

    /// Starts with extra files (name relative to the config directory, contents).
    pub fn start_with_files(setup: Setup, files: &[(&str, &str)]) -> Daemon {
        let mut d = Daemon::prepare(setup, files);
        d.spawn();
        d
    }

    /// Writes the files but does not start the daemon (set `env` first).
    pub fn prepare(setup: Setup, files: &[(&str, &str)]) -> Daemon {
        let dir = TempDir::new("daemon");
        setup.write(&dir.0);
        for (name, text) in files {
            // The configuration check refuses a setup that cannot deliver to
            // postmaster; tests that bring a scheduler.conf for their remote channels
            // get the local transport after their own clauses.
            let text = if *name == "scheduler.conf" && !text.contains("local/") {
                format!("{text}\nlocal/* command=local\n")
            } else {
                text.to_string()
            };
            std::fs::write(dir.0.join(name), text).unwrap();
        }
        Daemon {
            dir,
            env: Vec::new(),
            shell_prefix: None,
            wrap: Vec::new(),
            child: None,
            addrs: Vec::new(),
            log: Arc::new(Mutex::new(LogPipe::default())),
        }
    }

    pub fn conf_path(&self) -> PathBuf {
        self.dir.0.join("etrnd.conf")
    }

    pub fn spool(&self) -> PathBuf {
        self.dir.0.join("spool")
    }

    /// Starts the binary and waits for its "listening" lines.
    pub fn spawn(&mut self) {
        let rx = self.launch();
        self.addrs.clear();
        loop {
            match rx.recv_timeout(IO_TIMEOUT * slack()) {
                Ok(Some(a)) => self.addrs.push(a),
                Ok(None) => break,
                Err(_) => panic!("daemon did not start:\n{}", self.log()),
            }
        }
    }

    /// Starts the binary without waiting for it to listen (to kill it while it
    /// starts); the addresses stay those of the last start.
    pub fn spawn_nowait(&mut self) {
        let _ = self.launch();
    }

    fn launch(&mut self) -> std::sync::mpsc::Receiver<Option<SocketAddr>> {
        let mut cmd = match &self.shell_prefix {
            Some(prefix) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("{prefix} && exec \"$0\" -d -v -f \"$1\""))
                    .arg(bin())
                    .arg(self.conf_path());
                c
            }
            None => {
                // Under `wrap` (which execs it) or on its own.
                let mut argv: Vec<&str> = self.wrap.iter().map(String::as_str).collect();
                argv.push(bin());
                let mut c = Command::new(argv[0]);
                c.args(&argv[1..])
                    .args(["-d", "-v", "-f"])
                    .arg(self.conf_path());
                c
            }
        };
        let mut child = cmd
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start etrnd");
        let stderr: std::os::fd::OwnedFd = child.stderr.take().unwrap().into();
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let fl = libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&stderr), libc::F_GETFL);
            libc::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&stderr),
                libc::F_SETFL,
                fl | libc::O_NONBLOCK,
            );
        }
        let raw = std::os::fd::AsRawFd::as_raw_fd(&stderr);
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let mut l = self.log.lock().unwrap();
            // What a previous run still had in its pipe first.
            l.drain();
            l.fd = Some(stderr);
            l.scanned = l.text.len();
            l.tx = Some(tx);
            l.gen += 1;
        }
        let gen = self.log.lock().unwrap().gen;
        let log = self.log.clone();
        std::thread::spawn(move || loop {
            let mut p = libc::pollfd {
                fd: raw,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one pollfd we own; the descriptor stays open until
            // drain() sees its end (under the same lock), and then we stop.
            unsafe { libc::poll(&mut p, 1, 1000) };
            let mut l = log.lock().unwrap();
            if l.gen != gen {
                return; // a later start reads its own pipe
            }
            if !l.drain() {
                l.tx = None;
                return;
            }
        });
        self.child = Some(child);
        rx
    }

    /// Runs `etrnd sendmail ARGS` against this daemon's configuration with `input` on
    /// its standard input: exit code and standard error.
    pub fn sendmail(&self, args: &[&str], input: &str) -> (i32, String) {
        let out = run_with_input(
            Command::new(bin())
                .arg("-f")
                .arg(self.conf_path())
                .arg("sendmail")
                .args(args),
            input.as_bytes(),
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Waits until `f` holds; fails after `secs` (times the slack) with the
    /// daemon's log.
    pub fn wait_until(&self, what: &str, secs: u64, f: impl Fn() -> bool) {
        crate::foreground::wait_for(what, secs, f, || self.log())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn log(&self) -> String {
        let mut l = self.log.lock().unwrap();
        l.drain();
        l.text.clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// kill -9, then wait for the process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal by number.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.stop_wait()
    }

    /// Waits for the daemon to exit (after a signal sent elsewhere).
    pub fn stop_wait(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr())
    }

    /// Runs `etrnd ARGS` against this daemon's configuration.
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        run_etrnd(&self.conf_path(), args)
    }

    /// The text of every queue file, one after the other (a file delivered and
    /// removed between the listing and the read counts as empty).
    pub fn queued_text(&self) -> String {
        self.queue_files()
            .iter()
            .map(|f| {
                let data = std::fs::read(self.queue_file(f)).unwrap_or_default();
                String::from_utf8_lossy(&data).into_owned()
            })
            .collect()
    }

    /// The queued messages: `queue/` and the held mail parked in `hold/`.
    /// A message moving between the two (parked, or loaded back) while they are
    /// listed could be missed or seen twice: listed again until two listings agree.
    pub fn queue_files(&self) -> Vec<String> {
        let once = || {
            let mut l = list(&self.spool().join("hold"));
            l.extend(list(&self.spool().join("queue")));
            l.sort();
            l.dedup();
            l
        };
        let mut last = once();
        for _ in 0..50 {
            let now = once();
            if now == last {
                break;
            }
            last = now;
        }
        last
    }

    /// Where a queued message's file is now (`queue/` or, parked, `hold/`).
    pub fn queue_file(&self, id: &str) -> std::path::PathBuf {
        let q = self.spool().join("queue").join(id);
        if q.exists() {
            q
        } else {
            self.spool().join("hold").join(id)
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- etrnd log ---\n{}", self.log());
        }
        self.kill9();
    }
}

pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A raw SMTP client.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(
            TcpStream::connect_timeout(&addr, IO_TIMEOUT * slack()).expect("connect"),
        )
    }

    /// A client over a connection accepted elsewhere (the test plays a server).
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(IO_TIMEOUT * slack())).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send_raw(&mut self, data: &[u8]) {
        self.stream.write_all(data).expect("write");
    }

    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    /// Reads one whole reply (all its lines); `None` on EOF.
    pub fn reply(&mut self) -> Option<(u16, String)> {
        let mut text = String::new();
        loop {
            let line = self.line()?;
            text.push_str(&line);
            text.push('\n');
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                return Some((code, text));
            }
        }
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(l);
            }
            let mut tmp = [0u8; 4096];
            match self.stream.read(&mut tmp) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                // A signal to the test process (a timed read returns EINTR then).
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Reads a reply and checks its code.
    #[track_caller]
    pub fn expect(&mut self, code: u16) -> String {
        match self.reply() {
            Some((c, text)) if c == code => text,
            other => panic!("expected {code}, got {other:?}"),
        }
    }

    /// Reads one line (a command, when the test plays a server) and checks its verb.
    #[track_caller]
    pub fn expect_line(&mut self, verb: &str) -> String {
        let l = self.line().expect("a line");
        assert!(
            l.to_ascii_uppercase().starts_with(verb),
            "expected {verb}, got {l:?}"
        );
        l
    }

    /// Reads one line, whatever it is (a message line, when the test plays a server).
    pub fn expect_any_line(&mut self) -> String {
        self.line().expect("a line")
    }

    /// Whether the server closed the connection (after any pending replies).
    pub fn closed(&mut self) -> bool {
        self.line().is_none()
    }

    pub fn cmd(&mut self, line: &str, code: u16) -> String {
        self.send(line);
        self.expect(code)
    }

    /// Greeting + EHLO.
    pub fn hello(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr);
        c.expect(220);
        c.cmd("EHLO client.example", 250);
        c
    }

    /// One whole message; returns the queue id.
    pub fn send_message(&mut self, from: &str, to: &[&str], body: &str) -> String {
        self.cmd(&format!("MAIL FROM:<{from}>"), 250);
        for t in to {
            self.cmd(&format!("RCPT TO:<{t}>"), 250);
        }
        self.cmd("DATA", 354);
        self.send_raw(body.as_bytes());
        self.send_raw(b".\r\n");
        let text = self.expect(250);
        text.trim().rsplit(' ').next().unwrap().to_string()
    }
}

/// strace attached to a running daemon, writing the system calls `expr` selects
/// (`trace=...`) to a file in the daemon's directory.
pub struct Strace {
    child: std::process::Child,
    file: PathBuf,
}

impl Strace {
    /// Attaches and waits until strace says it is attached.
    pub fn attach(strace: &str, d: &Daemon, expr: &str) -> Strace {
        Strace::trace(strace, d, &["-p", &d.pid().to_string()], expr)
    }

    /// Attaches to another process of the daemon's (its helper) and the children
    /// it starts (lines then begin with their pid).
    pub fn attach_pid(strace: &str, d: &Daemon, pid: &str, expr: &str) -> Strace {
        Strace::trace(strace, d, &["-f", "-p", pid], expr)
    }

    fn trace(strace: &str, d: &Daemon, target: &[&str], expr: &str) -> Strace {
        let file = d.dir.0.join(format!("trace.{}", target[target.len() - 1]));
        let mut child = Command::new(strace)
            .args(["-y", "-s", "256", "-o"])
            .arg(&file)
            .args(["-e", expr])
            .args(target)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("strace");
        let mut err = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&seen).contains("attached") {
            assert!(
                std::time::Instant::now() < deadline,
                "strace did not attach"
            );
            let mut b = [0u8; 256];
            let n = std::io::Read::read(&mut err, &mut b).unwrap();
            assert!(n > 0, "strace ended: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&b[..n]);
        }
        Strace { child, file }
    }

    /// Detaches (SIGINT makes strace write out the rest) and returns the trace lines.
    pub fn finish(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.file)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}
