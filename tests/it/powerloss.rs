//! Simulated power loss (reference/bad-input.md case 60, goal G2). The spool is an ext4
//! in a loop-mounted file. After each acknowledged message the daemon is frozen and the
//! file is copied: the copy holds what reached the device, and nothing that was only
//! in the page cache — what a power cut at that moment would leave. Each copy is
//! mounted (its journal replays) and must hold every message acknowledged before it,
//! each one verifying. Needs root and loop devices; skipped otherwise.
//!
//! `ETRND_POWERLOSS_ROUNDS` sets the number of messages (`make crashtest` runs 1,000;
//! `make test` a short version). The harness proves it can see a loss: with every
//! fsync switched off (a debug-build fault hook) the same check must fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Client, Daemon, Setup};

fn can_loop_mount() -> bool {
    crate::util::is_root()
        && Path::new("/dev/loop-control").exists()
        && Command::new("mkfs.ext4").arg("-V").output().is_ok()
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loop-mounted ext4 made from `image`, unmounted on drop.
struct LoopFs {
    at: PathBuf,
}

impl LoopFs {
    fn new(image: &Path, at: &Path) -> LoopFs {
        let f = std::fs::File::create(image).unwrap();
        f.set_len(64 << 20).unwrap();
        drop(f);
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        LoopFs::mount(image, at)
    }

    fn mount(image: &Path, at: &Path) -> LoopFs {
        std::fs::create_dir_all(at).unwrap();
        run(
            "mount",
            &["-o", "loop", image.to_str().unwrap(), at.to_str().unwrap()],
        );
        LoopFs {
            at: at.to_path_buf(),
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Lazily if still busy (a failed test's daemon): never leave a mount behind.
        let ok = Command::new("umount")
            .arg(&self.at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

/// Sends `rounds` messages; after each 250 takes a power-cut copy of the spool and
/// returns, per copy, the acknowledged messages missing from it or failing to verify.
fn losses(rounds: usize, env: &[(&str, &str)]) -> Vec<(usize, Vec<String>)> {
    let mut d = Daemon::prepare(Setup::default(), &[]);
    d.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let dir = d.dir.0.clone();
    let (image, copy, seen) = (dir.join("fs.img"), dir.join("cut.img"), dir.join("cut"));
    let fs = LoopFs::new(&image, &d.spool());
    d.spawn();
    let mut c = Client::hello(d.addr());
    let mut acked: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for i in 0..rounds {
        let body = format!("Subject: m{i}\r\n\r\n{}\r\n", "x".repeat(i % 3000));
        acked.push(c.send_message("s@test.example", &["u@client.dom"], &body));
        // The power cut: freeze the daemon, copy the device.
        d.signal("STOP");
        run(
            "cp",
            &[
                "--sparse=always",
                image.to_str().unwrap(),
                copy.to_str().unwrap(),
            ],
        );
        d.signal("CONT");
        let cut = LoopFs::mount(&copy, &seen);
        let bad: Vec<String> = acked
            .iter()
            .filter(|id| {
                // Held mail may have been parked (moved to hold/) before the cut.
                std::fs::read(seen.join("queue").join(id))
                    .or_else(|_| std::fs::read(seen.join("hold").join(id)))
                    .map(|data| etrnd::store::spool::check(&data).is_err())
                    .unwrap_or(true)
            })
            .cloned()
            .collect();
        drop(cut);
        if !bad.is_empty() {
            out.push((i, bad));
        }
    }
    d.kill9();
    drop(fs);
    out
}

#[test]
fn every_acknowledged_message_survives_a_power_cut() {
    if !can_loop_mount() {
        crate::util::skip("needs root, loop devices and mkfs.ext4");
        return;
    }
    let rounds: usize = std::env::var("ETRND_POWERLOSS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let lost = losses(rounds, &[]);
    assert!(lost.is_empty(), "lost after a power cut: {lost:?}");
    eprintln!("power loss: {rounds} cuts, every acknowledged message present and intact");
}

#[test]
fn the_power_cut_harness_sees_a_spool_that_skips_fsync() {
    if !can_loop_mount() {
        crate::util::skip("needs root, loop devices and mkfs.ext4");
        return;
    }
    let lost = losses(5, &[("ETRND_TEST_FAULT", "nosync")]);
    eprintln!("without fsync, cuts that lost acknowledged mail: {lost:?}");
    assert!(
        !lost.is_empty(),
        "with fsync switched off, a power cut must lose acknowledged mail"
    );
}

/// `sendmail` with the daemon down, each exit 0 followed by a power cut (a copy of
/// the device): every copy holds every acknowledged submission, complete, under its
/// final or its temporary name (both are picked up, see local_trust.rs).
#[test]
fn every_submission_sendmail_acknowledged_survives_a_power_cut() {
    if !can_loop_mount() {
        crate::util::skip("needs root, loop devices and mkfs.ext4");
        return;
    }
    let d = Daemon::prepare(Setup::default(), &[]);
    let dir = d.dir.0.clone();
    let (image, copy, seen) = (dir.join("fs.img"), dir.join("cut.img"), dir.join("cut"));
    let fs = LoopFs::new(&image, &d.spool());
    etrnd::store::spool::Spool::open(&d.spool()).unwrap();
    let rounds = 20;
    let mut lost = Vec::new();
    for i in 0..rounds {
        let (code, err) = d.sendmail(
            &["-f", "me@test.example", "alice@test.example"],
            &format!("Subject: s{i}\n\n{}\n", "y".repeat(i * 97)),
        );
        assert_eq!(code, 0, "{err}");
        run(
            "cp",
            &[
                "--sparse=always",
                image.to_str().unwrap(),
                copy.to_str().unwrap(),
            ],
        );
        let cut = LoopFs::mount(&copy, &seen);
        let subjects: Vec<String> = crate::util::list(&seen.join("drop"))
            .iter()
            .filter_map(|n| std::fs::read(seen.join("drop").join(n)).ok())
            .filter_map(|data| etrnd::store::spool::drop::Drop::decode(&data).ok())
            .map(|m| String::from_utf8_lossy(&m.data).into_owned())
            .collect();
        for j in 0..=i {
            let want = format!("Subject: s{j}\r\n");
            if !subjects.iter().any(|s| s.contains(&want)) {
                lost.push((i, j));
            }
        }
        drop(cut);
    }
    drop(fs);
    assert!(lost.is_empty(), "(cut, submission) lost: {lost:?}");
}
