//! `etrnd queue delete|hold|release|requeue ID…|-d DOMAIN|ALL` (DESIGN.md §3), the
//! operator's Postfix `postsuper -d/-h/-H/-r`.
//!
//! With the daemon running, the request goes over the control socket (ids in groups
//! of [`MAX_QUEUE_IDS`]) and the daemon's scheduler carries it out. With no daemon,
//! the same changes are made on the spool directly, under the pid file's lock so a
//! daemon cannot start in the middle: a delete is the completion path's unlink of
//! the queue file, then of its journal (a crash in between leaves an orphan journal,
//! removed at the next start); hold, release and requeue append one fsynced journal
//! record (`H`, `U`, `Q`) that the daemon reads when it loads the message. Either
//! way every message is, after a crash at any point, gone or intact.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::cli::exit as ex;
use crate::config::Config;
use crate::daemon::control::MAX_QUEUE_IDS;
use crate::sched::{QueueOp, Selection};
use crate::store::spool::{Spool, StateRecord};

/// Most ids one command line may name.
pub const MAX_IDS: usize = 100_000;

/// How long to wait for the daemon's answer to one request (a `delete ALL` of a big
/// queue unlinks every file before it answers).
const QUEUE_TIMEOUT: Duration = Duration::from_secs(300);

/// The usage line.
const USAGE: &str = "usage: etrnd queue delete|hold|release|requeue ID...|-d DOMAIN|ALL";

/// Runs `etrnd queue ARGS`: prints what was done; exit 0, 64 for bad usage, 77 when
/// refused, 75 when the daemon does not answer, 71 when the spool cannot be read.
pub fn run(cfg: &Config, args: &[String], out: &mut impl Write) -> i32 {
    let Some(op) = args.first().and_then(|w| QueueOp::parse(w)) else {
        let _ = writeln!(out, "{USAGE}");
        return ex::USAGE;
    };
    let sel = match Selection::parse(args[1..].iter().map(String::as_str), MAX_IDS) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out, "queue: {e}\n{USAGE}");
            return ex::USAGE;
        }
    };
    let requests: Vec<String> = match &sel {
        Selection::Ids(ids) => ids
            .chunks(MAX_QUEUE_IDS)
            .map(|c| {
                let words: Vec<String> = c.iter().map(|id| id.to_string()).collect();
                format!("queue {} {}", op.word(), words.join(" "))
            })
            .collect(),
        Selection::Domain(d) => vec![format!("queue {} -d {d}", op.word())],
        Selection::All => vec![format!("queue {} ALL", op.word())],
    };
    let control = cfg.main.postoffice.join("control");
    let mut conn = match crate::tools::etrn_client::ControlConn::connect(&control) {
        Ok(c) => c,
        Err(e) if crate::tools::etrn_client::no_daemon(&e) => return offline(cfg, op, &sel, out),
        Err(e) => {
            let _ = writeln!(
                out,
                "queue: cannot reach etrnd ({}: {e})",
                control.display()
            );
            return crate::tools::etrn_client::TEMPFAIL;
        }
    };
    let mut done = 0u64;
    for req in &requests {
        match conn.ask(req.as_bytes(), None, QUEUE_TIMEOUT) {
            Ok(reply) => {
                let line = String::from_utf8_lossy(&reply).trim_end().to_string();
                let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                if code != 250 {
                    let _ = writeln!(out, "{line}");
                    return if code >= 500 {
                        crate::tools::etrn_client::NOPERM
                    } else {
                        crate::tools::etrn_client::TEMPFAIL
                    };
                }
                done += line
                    .split(' ')
                    .nth(2)
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            Err(e) => {
                let _ = writeln!(out, "queue: {e} ({})", control.display());
                return crate::tools::etrn_client::TEMPFAIL;
            }
        }
    }
    let _ = writeln!(out, "{}", summary(done, op));
    ex::OK
}

/// "3 messages deleted".
fn summary(n: u64, op: QueueOp) -> String {
    format!("{n} message{} {}", if n == 1 { "" } else { "s" }, op.done())
}

/// The daemon is down: the changes are made on the spool, under the pid file's lock.
fn offline(cfg: &Config, op: QueueOp, sel: &Selection, out: &mut impl Write) -> i32 {
    let _lock = match lock_pidfile(&cfg.main.pidfile) {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(out, "queue: etrnd is running but does not answer: {e}");
            return crate::tools::etrn_client::TEMPFAIL;
        }
    };
    if let Ok(t) = crate::logging::syslog_target(cfg.main.syslog_socket.as_deref()) {
        crate::logging::init_syslog(log::LevelFilter::Info, Some(t));
    }
    let spool = Spool::at(&cfg.main.postoffice);
    let entries = match spool.list() {
        Ok(e) => e,
        Err(e) => {
            let _ = writeln!(out, "queue: {e}");
            return if e.err.kind() == std::io::ErrorKind::PermissionDenied {
                crate::tools::etrn_client::NOPERM
            } else {
                ex::OSERR
            };
        }
    };
    let who = crate::sys::uid();
    let now = crate::vocab::date::unix_now();
    let mut n = 0u64;
    for e in entries {
        let finished = |i: usize| {
            e.state.iter().any(|s| {
                matches!(s, StateRecord::Delivered { idx, .. } | StateRecord::Failed { idx, .. } if *idx == i)
            })
        };
        let pending: Vec<String> = e
            .envelope
            .recipients
            .iter()
            .enumerate()
            .filter(|(i, _)| !finished(*i))
            .map(|(_, r)| r.address.to_string())
            .collect();
        if !sel.covers(e.id, pending.iter().map(String::as_str)) {
            continue;
        }
        let held = on_hold(&e.state);
        let result = match op {
            QueueOp::Delete => spool.complete(e.id),
            QueueOp::Hold if !held => spool.record_owned(e.id, &StateRecord::OnHold { at: now }),
            QueueOp::Release if held => spool.record_owned(e.id, &StateRecord::OffHold { at: now }),
            QueueOp::Requeue => spool.record_owned(e.id, &StateRecord::Requeued { at: now }),
            QueueOp::Hold | QueueOp::Release => continue,
        };
        match result {
            Ok(()) => {
                n += 1;
                log::info!("{} queue {} by-uid={who} offline", e.id, op.done());
                if op == QueueOp::Delete {
                    log::info!("{}: removed", e.id);
                }
            }
            Err(err) => {
                let _ = writeln!(out, "queue: {}: {err}", e.id);
                return ex::OSERR;
            }
        }
    }
    let _ = writeln!(
        out,
        "{} (etrnd is not running: done on the spool)",
        summary(n, op)
    );
    ex::OK
}

/// Whether a journal leaves its message on the operator's hold.
pub fn on_hold(journal: &[StateRecord]) -> bool {
    journal.iter().fold(false, |held, r| match r {
        StateRecord::OnHold { .. } => true,
        StateRecord::OffHold { .. } => false,
        _ => held,
    })
}

/// Takes the daemon's pid-file lock (without writing it) so no daemon starts while
/// the spool is changed; `Err` when a daemon holds it. No pid file: no daemon ran
/// or it exited cleanly, so there is no lock to take.
fn lock_pidfile(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    let Ok(f) = std::fs::File::open(path) else {
        return Ok(None);
    };
    if !crate::sys::try_flock(&f)? {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            format!("{} is locked", path.display()),
        ));
    }
    Ok(Some(f))
}
