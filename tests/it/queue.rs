//! The operator's queue control (`etrnd queue`) on a running and on a stopped daemon,
//! `mailq` for every local user, and kill -9 in the middle of `queue delete ALL`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{bin, is_root, Client, Daemon, Setup};

/// Queues `n` held messages (client.dom is a queue-only channel) in one session.
fn queue_held(d: &Daemon, n: usize) -> Vec<String> {
    let mut c = Client::hello(d.addr());
    for i in 0..n {
        c.send_message(
            "s@far.example",
            &["u@client.dom"],
            &format!("Subject: {i}\r\n\r\nheld {i}\r\n"),
        );
    }
    c.cmd("QUIT", 221);
    d.wait_until("all queued", 60, || d.queue_files().len() == n);
    d.queue_files()
}

/// `etrnd ARGS` as the unprivileged account `daemon` (setpriv), with its output.
fn as_nobody(d: &Daemon, args: &[&str]) -> Option<std::process::Output> {
    if !std::path::Path::new("/usr/bin/setpriv").exists() || !is_root() {
        return None;
    }
    let conf = d.conf_path();
    let mut child = Command::new("/usr/bin/setpriv")
        .args(["--reuid=daemon", "--regid=daemon", "--clear-groups", "--"])
        .arg(bin())
        .arg("-f")
        .arg(&conf)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    Some(child.wait_with_output().unwrap())
}

fn journal(d: &Daemon, id: &str) -> String {
    std::fs::read_to_string(d.spool().join("state").join(id)).unwrap_or_default()
}

#[test]
fn queue_control_on_a_running_daemon_and_mailq_for_everyone() {
    let d = Daemon::start();
    let ids = queue_held(&d, 4);
    let (code, out, err) = d.run(&["queue", "hold", &ids[0]]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "1 message held");
    assert!(
        journal(&d, &ids[0]).starts_with("H "),
        "{}",
        journal(&d, &ids[0])
    );
    let (_, listing, _) = d.run(&["mailq"]);
    assert!(listing.contains(&format!("{}!", ids[0])), "{listing}");
    assert!(
        listing.contains("on hold (etrnd queue release)"),
        "{listing}"
    );
    // ETRN does not release a message on hold; the others go (to nowhere: the
    // route's host does not resolve, so they wait deferred).
    let (code, out, _) = d.run(&["queue", "hold", &ids[0]]);
    assert_eq!((code, out.trim()), (0, "0 messages held"), "twice is once");
    // Delete two by id, in one command.
    let (code, out, _) = d.run(&["queue", "delete", &ids[1], &ids[2]]);
    assert_eq!((code, out.trim()), (0, "2 messages deleted"));
    d.wait_until("two files gone", 10, || d.queue_files().len() == 2);
    // The line reaches our reader a moment after the files go.
    let line = format!("{} queue deleted by-uid=", ids[1]);
    d.wait_until("the deletion logged", 10, || d.log().contains(&line));
    assert!(!d.spool().join("state").join(&ids[1]).exists());
    // Release, and the listing no longer says hold.
    let (code, out, _) = d.run(&["queue", "release", "-d", "client.dom"]);
    assert_eq!((code, out.trim()), (0, "1 message released"));
    let (_, listing, _) = d.run(&["mailq"]);
    assert!(!listing.contains("on hold"), "{listing}");
    assert!(
        journal(&d, &ids[0]).contains("\nU "),
        "{}",
        journal(&d, &ids[0])
    );
    let (code, out, _) = d.run(&["queue", "requeue", "ALL"]);
    assert_eq!((code, out.trim()), (0, "2 messages requeued"));
    // Bad usage says what is wrong.
    let (code, out, _) = d.run(&["queue", "delete", "nonsense"]);
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("not a queue id: nonsense"), "{out}");
    let (code, _, _) = d.run(&["queue", "explode", "ALL"]);
    assert_eq!(code, 64);
    // An unprivileged user lists the queue through the daemon, in both layouts,
    // but may not change it.
    let Some(out) = as_nobody(&d, &["mailq"]) else {
        crate::util::skip("the unprivileged part: needs root and setpriv (util-linux)");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&ids[0]) && text.contains(&ids[3]), "{text}");
    assert!(text.contains("u@client.dom"), "{text}");
    assert!(text.contains(" Kbytes in 2 Requests."), "{text}");
    let out = as_nobody(&d, &["mailq", "-j"]).unwrap();
    assert!(out.status.success());
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import json,sys\n\
             rows=[json.loads(l) for l in sys.stdin]\n\
             print(len(rows), sorted(r['queue_id'] for r in rows)[0], rows[0]['recipients'][0]['address'])",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    py.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let parsed = py.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&parsed.stdout).trim(),
        format!("2 {} u@client.dom", ids[0]),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = as_nobody(&d, &["queue", "delete", "ALL"]).unwrap();
    assert_eq!(
        out.status.code(),
        Some(77),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(d.queue_files().len(), 2, "nothing deleted by a local user");
}

#[test]
fn queue_control_on_a_stopped_daemon_is_kept_when_it_starts() {
    let (addr, counts) = crate::links::sink();
    let setup = Setup {
        routes: format!(".client.dom smtp-etrn![{}]:{}\n", addr.ip(), addr.port()),
        ..Setup::default()
    };
    let sched = "smtp-etrn/* queueonly expiry=1d command=smtp\n";
    let mut d = Daemon::start_with_files(setup, &[("scheduler.conf", sched)]);
    let ids = queue_held(&d, 3);
    d.stop();
    let (code, out, err) = d.run(&["queue", "delete", &ids[0]]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("1 message deleted (etrnd is not running"),
        "{out}"
    );
    assert!(!d.queue_file(&ids[0]).exists());
    let (code, out, _) = d.run(&["queue", "hold", "ALL"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("2 messages held"), "{out}");
    let (_, listing, _) = d.run(&["mailq"]);
    assert!(listing.contains(&format!("{}!", ids[1])), "{listing}");
    if is_root() {
        // A journal root made belongs to the spool's owner, so the daemon can read it.
        use std::os::unix::fs::MetadataExt;
        let state = d.spool().join("state");
        let owner = std::fs::metadata(&state).unwrap().uid();
        assert_eq!(std::fs::metadata(state.join(&ids[1])).unwrap().uid(), owner);
    }
    d.spawn();
    // ETRN would release them, but they are on hold; so is a flush of everything.
    let (code, _, _) = d.run(&["flush", "client.dom"]);
    assert!(code == 0 || code == 75, "flush answered {code}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        counts.lock().unwrap().1,
        0,
        "nothing delivered while on hold"
    );
    let (code, out, _) = d.run(&["queue", "release", &ids[1]]);
    assert_eq!((code, out.trim()), (0, "1 message released"));
    let (code, _, _) = d.run(&["flush", "client.dom"]);
    assert_eq!(code, 0);
    d.wait_until("the released message delivered", 20, || {
        counts.lock().unwrap().1 == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(counts.lock().unwrap().1, 1, "the other one stays on hold");
    assert_eq!(d.queue_files(), vec![ids[2].clone()]);
}

/// Every queue file left verifies whole, and a daemon started on the spool
/// quarantines nothing.
fn gone_or_intact(d: &mut Daemon, before: usize) -> usize {
    let left = d.queue_files();
    for f in &left {
        let data = std::fs::read(d.queue_file(f)).unwrap();
        etrnd::store::spool::check(&data).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    assert!(left.len() < before, "the delete had begun");
    d.spawn();
    d.wait_until("the spool loaded", 10, || d.log().contains("sched loaded"));
    assert!(d.log().contains("quarantined=0"), "{}", d.log());
    left.len()
}

/// Starts `etrnd queue delete ALL` on `d`'s configuration.
fn delete_all(d: &Daemon) -> std::process::Child {
    Command::new(bin())
        .arg("-f")
        .arg(d.conf_path())
        .args(["queue", "delete", "ALL"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits (polling tightly, so that the kill lands while deleting is under way)
/// until fewer than `before` queue files are left.
fn until_deleting(d: &Daemon, before: usize) {
    let start = std::time::Instant::now();
    while d.queue_files().len() == before && start.elapsed() < Duration::from_secs(30) {}
}

#[test]
fn kill_9_during_a_delete_of_a_thousand_leaves_each_message_gone_or_intact() {
    // The daemon killed while it carries out `queue delete ALL`.
    let mut d = Daemon::start();
    queue_held(&d, 1000);
    let mut tool = delete_all(&d);
    until_deleting(&d, 1000);
    d.kill9();
    let _ = tool.kill();
    let _ = tool.wait();
    let left = gone_or_intact(&mut d, 1000);
    eprintln!("queue: kill -9 of the daemon during delete ALL left {left} of 1000");
    // The tool killed while it deletes on the spool of a stopped daemon (a new
    // spool of 1,000, whatever the first part left).
    let mut d = Daemon::start();
    queue_held(&d, 1000);
    d.stop();
    let mut tool = delete_all(&d);
    until_deleting(&d, 1000);
    let _ = tool.kill();
    let _ = tool.wait();
    let left = if d.queue_files().is_empty() {
        0
    } else {
        gone_or_intact(&mut d, 1000)
    };
    eprintln!("queue: kill -9 of the offline tool during delete ALL left {left} of 1000");
}

/// Descriptors a local user attaches to control requests are closed at once: 200
/// `flush` datagrams, each with a descriptor, leave the daemon holding no more.
#[test]
fn descriptors_sent_with_other_requests_are_not_kept() {
    let d = Daemon::start();
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
            .unwrap()
            .count()
    };
    let before = fds();
    // One connection, 200 requests, each with a descriptor attached (two on the
    // odd ones): none is kept once its request is answered.
    let script = "import array, os, socket, sys\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
        s.settimeout(5)\n\
        s.connect(sys.argv[1])\n\
        r, w = os.pipe()\n\
        f = s.makefile('rb')\n\
        for i in range(200):\n    fds = array.array('i', [w, r] if i % 2 else [w])\n    s.sendmsg([b'flush\\n' if i % 2 else b'mailq -x\\n'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])\n    assert f.readline()\n";
    crate::util::run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(d.spool().join("control")),
    );
    let after = fds();
    assert!(
        after <= before + 2,
        "{before} descriptors before, {after} after"
    );
}
