//! A daemon a test starts itself in the foreground (`-d`), by a command of its own
//! rather than `util::Daemon`'s set-up (an installed binary in namespaces, what
//! procd is told to run): its standard error collected, stopped with SIGTERM when
//! dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Foreground {
    pub child: Child,
    log: Arc<Mutex<String>>,
}

impl Foreground {
    /// Starts `cmd` and waits until the daemon says it started.
    pub fn start(cmd: &mut Command) -> Foreground {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon");
        let stderr = child.stderr.take().unwrap();
        // Built before the wait, so that a daemon that never starts is stopped too.
        let me = Foreground {
            child,
            log: Default::default(),
        };
        let log = me.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        me.wait_lines("daemon started", 1);
        me
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for `n` lines of the log containing `what`.
    pub fn wait_lines(&self, what: &str, n: usize) {
        wait_for(
            &format!("{n} × {what}"),
            30,
            || self.log().matches(what).count() >= n,
            || self.log(),
        );
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        // Its supervisor and helpers leave when it does.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Waits until `f` holds; fails after `secs` (times the slack) with `log()`.
pub fn wait_for(what: &str, secs: u64, f: impl Fn() -> bool, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(secs) * crate::util::slack();
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
