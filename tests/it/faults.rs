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
        crate::util::skip("mounting a tmpfs needs root");
        return;
    }
    let mut d = Daemon::prepare(Setup::with_conf("MAX_MESSAGE_SIZE=1048576\n"), &[]);
    let Some(fs) = Tmpfs::mount(&d.dir.0.join("spool"), "2m") else {
        crate::util::skip("cannot mount a tmpfs here");
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
    // The daemon notices at its next look at the disk, and says so.
    d.wait_until("the disk found low", 10, || {
        d.log().contains("spool disk-low")
    });
    c.cmd("MAIL FROM:<a@b.example>", 452);
    // Space returns: mail flows again.
    std::fs::remove_file(&filler).unwrap();
    d.wait_until("room again", 10, || d.log().contains("spool disk-ok"));
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

#[test]
fn a_bounce_that_cannot_be_committed_keeps_the_recipients_and_goes_once_there_is_room() {
    if !crate::util::is_root() {
        crate::util::skip("mounting a tmpfs needs root");
        return;
    }
    let port = crate::util::free_port();
    let setup = Setup {
        conf: "MAX_MESSAGE_SIZE=65536\n".into(),
        routes: format!(".fail.example smtp![127.0.0.1]:{port}\n"),
        ..Setup::default()
    };
    let sched = "*/* interval=1s retries=\"1\" expiry=1d\nsmtp/* command=smtp\n\
                 local/* queueonly command=local\n";
    let mut d = Daemon::prepare(setup, &[("scheduler.conf", sched)]);
    let Some(fs) = Tmpfs::mount(&d.dir.0.join("spool"), "1m") else {
        crate::util::skip("cannot mount a tmpfs here");
        return;
    };
    d.spawn();
    // Accepted while the next hop is down: it waits.
    let mut c = Client::hello(d.addr());
    c.send_message(
        "root@test.example",
        &["reject-me@fail.example"],
        "Subject: will bounce\r\n\r\nx\r\n",
    );
    c.cmd("QUIT", 221);
    let id = d.queue_files().pop().expect("queued");
    d.wait_until("a first try", 10, || d.log().contains("Connection refused"));
    // The disk fills up; then the next hop comes and refuses the recipient.
    let filler = d.spool().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }
    let sink = crate::sink::Sink::start_on(&format!("127.0.0.1:{port}"), Default::default());
    d.wait_until("the bounce to be postponed", 20, || {
        d.log().contains(&format!("{id} bounce postponed"))
    });
    // Nothing was journalled as failed and the original is still there.
    assert_eq!(d.queue_files(), vec![id.clone()]);
    let journal = std::fs::read_to_string(d.spool().join("state").join(&id)).unwrap_or_default();
    assert!(!journal.lines().any(|l| l.starts_with("F ")), "{journal}");
    assert!(!d.log().contains(&format!("{id}: removed")));
    // Room again: the bounce goes out, then the failure is journalled and the
    // original removed.
    std::fs::remove_file(&filler).unwrap();
    d.wait_until("the bounce", 20, || {
        d.log().contains(&format!("bounce queued about={id}"))
    });
    d.wait_until("the original to go", 10, || {
        d.log().contains(&format!("{id}: removed"))
    });
    let dsn = d.queued_text();
    assert!(dsn.contains("reject-me@fail.example"), "{dsn}");
    assert!(dsn.contains("5.0.0") || dsn.contains("550"), "{dsn}");
    drop(sink);
    d.kill9();
    drop(fs);
}
