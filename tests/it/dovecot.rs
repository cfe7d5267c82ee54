//! A private Dovecot for tests: its own configuration, state, log and store in a
//! test folder (the system's Dovecot files are neither read nor changed), run in the
//! foreground and killed when the test ends.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::util::{need_tool, TempDir};

pub struct Dovecot {
    child: Child,
    pub dir: TempDir,
    /// The TCP port its one listener was given.
    pub port: u16,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dovecot {
    /// Starts one with `settings` (which may name `{d}`, its folder, and `{port}`)
    /// after its folder settings; waits until `port` listens. `prepare` writes what
    /// the settings refer to (password files, homes) first.
    pub fn start(
        tag: &str,
        settings: &str,
        prepare: impl FnOnce(&std::path::Path),
    ) -> Option<Dovecot> {
        let bin = need_tool("dovecot", "dovecot-core")?;
        let dir = TempDir::new(tag);
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&dir.0);
        let d = dir.0.display().to_string();
        let port = crate::util::free_port();
        let conf = format!(
            "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n{}",
            settings
                .replace("{d}", &d)
                .replace("{port}", &port.to_string())
        );
        std::fs::write(dir.0.join("dovecot.conf"), conf).unwrap();
        let child = Command::new(bin)
            .args(["-F", "-c"])
            .arg(dir.0.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        crate::util::wait_listening(port, 10);
        Some(Dovecot { child, dir, port })
    }

    /// Its configuration file.
    pub fn conf(&self) -> PathBuf {
        self.dir.0.join("dovecot.conf")
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("dovecot.log")).unwrap_or_default()
    }
}
