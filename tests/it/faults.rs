//! Faults: disk full, failing fsync and rename, descriptor exhaustion.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{Client, Daemon, Setup};

#[test]
fn fsync_rename_and_dirsync_failures_are_451_and_leave_nothing() {
    for fault in ["fsync", "rename", "dirsync"] {
        let mut d = Daemon::prepare(Setup::default(), &[]);
        d.env.push(("ETRND_TEST_FAULT".into(), fault.into()));
        d.spawn();
        let mut c = Client::hello(d.addr());
        c.cmd("MAIL FROM:<a@b.example>", 250);
        c.cmd("RCPT TO:<u@client.dom>", 250);
        c.cmd("DATA", 354);
        c.send_raw(b"Subject: x\r\n\r\nx\r\n.\r\n");
        let text = c.expect(451);
        assert!(text.contains("4.3.0"), "{fault}: {text}");
        assert!(
            d.queue_files().is_empty(),
            "{fault}: nothing visible in queue/"
        );
        assert!(
            crate::util::list(&d.spool().join("tmp")).is_empty(),
            "{fault}: temp removed"
        );
        c.cmd("NOOP", 250);
    }
}

/// A tmpfs for the spool, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_during_data_is_452_and_recovers() {
    if !crate::util::is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let mut d = Daemon::prepare(Setup::with_conf("MAX_MESSAGE_SIZE=1048576\n"), &[]);
    let Some(fs) = Tmpfs::mount(&d.dir.0.join("spool"), "2m") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    d.spawn();
    let mut c = Client::hello(d.addr());
    c.cmd("MAIL FROM:<a@b.example>", 250);
    c.cmd("RCPT TO:<u@client.dom>", 250);
    c.cmd("DATA", 354);
    // Fill the disk while the message comes in.
    let filler = d.spool().join("filler");
    let free = 2 * 1024 * 1024 - 200 * 1024;
    let _ = std::fs::write(&filler, vec![0u8; free]);
    let line = format!("{}\r\n", "z".repeat(998));
    c.send_raw(b"Subject: big\r\n\r\n");
    for _ in 0..500 {
        c.send_raw(line.as_bytes());
    }
    c.send_raw(b".\r\n");
    let text = c.expect(452);
    assert!(text.contains("4.3.1"), "{text}");
    assert!(d.queue_files().is_empty(), "no partial file in queue/");
    assert!(crate::util::list(&d.spool().join("tmp")).is_empty());
    // With space below 1.5 × MAX_MESSAGE_SIZE, MAIL is refused up front.
    std::thread::sleep(Duration::from_millis(5200));
    c.cmd("MAIL FROM:<a@b.example>", 452);
    // Space returns: mail flows again.
    std::fs::remove_file(&filler).unwrap();
    std::thread::sleep(Duration::from_millis(5200));
    let mut c = Client::hello(d.addr());
    c.send_message(
        "a@b.example",
        &["u@client.dom"],
        "Subject: ok\r\n\r\nok\r\n",
    );
    assert_eq!(d.queue_files().len(), 1);
    // The daemon goes first, then the mount, then the directory can be removed.
    d.kill9();
    drop(fs);
}

#[test]
fn out_of_descriptors_refuses_new_clients_cleanly() {
    let mut d = Daemon::prepare(
        Setup::with_conf("MAX_CONNECTIONS=500\nMAX_CONNECTIONS_PER_IP=500\n"),
        &[],
    );
    d.shell_prefix = Some("ulimit -n 48".into());
    d.spawn();
    let mut first = Client::hello(d.addr());
    let mut held = Vec::new();
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    for _ in 0..80 {
        let mut c = d.connect();
        match c.reply() {
            Some((220, _)) => held.push(c),
            Some((421, _)) => refused += 1,
            other => panic!("a client got {other:?} instead of 220 or 421"),
        }
        assert!(Instant::now() < deadline);
    }
    assert!(refused > 0, "the descriptor limit was reached");
    assert!(!held.is_empty());
    // Sessions already open keep working.
    first.cmd("NOOP", 250);
    held[0].cmd("NOOP", 250);
    // And once some go away, new clients are served again.
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    Client::hello(d.addr()).cmd("NOOP", 250);
}
