//! Pickup of local submissions from the drop folder: at startup, whenever
//! `etrnd sendmail` wakes the daemon through its notify socket, and once a minute in
//! case a wake-up was lost (never more often, so a sleeping system stays asleep).
//!
//! Local users are untrusted here too: wake-ups are coalesced (a scan at most every
//! [`WAKE_GAP`]), a turn handles at most [`PER_TURN`] entries (the rest next turn),
//! and an entry that cannot be handled (a directory of another user's, which cannot
//! be moved out of the sticky folder; a file that cannot be read) is logged once,
//! not at every scan.

use std::time::{Duration, Instant};

use super::Core;
use crate::logging::sanitize;
use crate::store::spool::drop::{self, Drop};

/// The drop folder's scans.
pub(super) struct Drops {
    /// When the folder is scanned next in any case.
    pub(super) next: Instant,
    /// When it was last scanned.
    pub(super) last: Option<Instant>,
    /// When entries whose failure was noted are tried again.
    pub(super) noted_retry: Instant,
    /// Entries whose failure was logged (each is logged once).
    pub(super) noted: std::collections::HashSet<std::path::PathBuf>,
}

impl Drops {
    pub(super) fn new(now: Instant) -> Drops {
        Drops {
            next: now,
            last: None,
            noted_retry: now,
            noted: Default::default(),
        }
    }
}

/// Unlinks a drop-folder entry (never following it: unlink removes the name only).
fn remove(path: &std::path::Path) {
    if let Err(e) = std::fs::remove_file(path) {
        log::error!("pickup unlink-failed file={} error=\"{e}\"", path.display());
    }
}

/// The safety-net scan interval.
pub const PICKUP_EVERY: Duration = Duration::from_secs(60);
/// The shortest time between two scans a wake-up starts.
pub const WAKE_GAP: Duration = Duration::from_millis(100);
/// Entries handled in one loop turn, at most.
pub const PER_TURN: usize = 64;
/// Entries remembered as logged (beyond it, the oldest are forgotten).
const MAX_NOTED: usize = 4096;

impl Core {
    /// Queues every complete drop file. Local users are untrusted: entries are read
    /// the safe way (`spool::drop::open_entry`), the submitter is the file's owner,
    /// SMTP's limits apply, and what is refused is removed or quarantined and logged.
    pub(super) fn pickup(&mut self, now: Instant) {
        self.drops.last = Some(now);
        self.drops.next = now + PICKUP_EVERY;
        let max_size = self.config.main.max_message_size;
        let max_rcpts = self.config.main.max_recipients;
        let limit = max_size.saturating_add(drop::header_allowance(max_rcpts));
        let entries = self.spool.drop_files();
        // What is no longer there need not be remembered.
        let present: std::collections::HashSet<&std::path::Path> =
            entries.iter().map(|(p, _)| p.as_path()).collect();
        self.drops.noted.retain(|p| present.contains(p.as_path()));
        // Entries that failed are tried again with the safety-net scan only, so a
        // folder full of them costs neither a scan per turn nor the other entries
        // their turn.
        let retry_noted = now >= self.drops.noted_retry;
        if retry_noted {
            self.drops.noted_retry = now + PICKUP_EVERY;
        }
        let mut handled = 0;
        for (path, dot) in entries {
            if !retry_noted && self.drops.noted.contains(&path) {
                continue;
            }
            if handled == PER_TURN {
                // The rest next turn (each entry handled so far left the folder
                // or was noted: the next scan makes progress).
                self.drops.next = now;
                break;
            }
            handled += 1;
            let file = path.display().to_string();
            let entry = match drop::open_entry(&path, limit) {
                Ok(e) => e,
                Err(drop::Refused::Io(e)) if dot.is_some_and(|a| a >= drop::STALE_TEMP) => {
                    // A dot-file nobody will finish, which we cannot even read.
                    log::warn!("pickup removed stale file={file} reason=\"{e}\"");
                    remove(&path);
                    continue;
                }
                Err(drop::Refused::Io(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    // Finished, and no one but its owner can read it: moved aside
                    // (kept for the operator), so it holds nothing up.
                    match self.spool.quarantine(&path) {
                        Ok(()) => log::warn!(
                            "pickup moved-aside file={file} reason=\"the daemon cannot read it: {e}\""
                        ),
                        Err(q) => {
                            if self.note(&path) {
                                log::error!(
                                    "pickup read-failed file={file} error=\"{e}\" quarantine=\"{q}\" (logged once)"
                                );
                            }
                        }
                    }
                    continue;
                }
                Err(drop::Refused::Io(e)) => {
                    if self.note(&path) {
                        log::error!("pickup read-failed file={file} error=\"{e}\" (logged once)");
                    }
                    continue;
                }
                Err(why @ drop::Refused::NotRegular("a directory")) => {
                    // Moved aside whole: nothing inside it is ever looked at.
                    match self.spool.quarantine(&path) {
                        Ok(()) => log::warn!("pickup moved-aside file={file} reason=\"{why}\""),
                        Err(e) => {
                            if self.note(&path) {
                                log::error!(
                                    "pickup cannot-move file={file} reason=\"{why}\" error=\"{e}\" (logged once; the operator must remove it)"
                                );
                            }
                        }
                    }
                    continue;
                }
                Err(why) => {
                    log::warn!("pickup removed file={file} reason=\"{why}\"");
                    remove(&path);
                    continue;
                }
            };
            let d = match Drop::decode(&entry.data) {
                Ok(d) => d,
                Err(_) if dot.is_some_and(|age| age < drop::STALE_TEMP) => continue,
                Err(e) if dot.is_some() => {
                    log::warn!(
                        "pickup removed stale file={file} uid={} reason=\"{e}\"",
                        entry.uid
                    );
                    remove(&path);
                    continue;
                }
                Err(e) => {
                    match self.spool.quarantine(&path) {
                        Ok(()) => log::warn!(
                            "pickup quarantined file={file} uid={} reason=\"{e}\"",
                            entry.uid
                        ),
                        Err(q) => {
                            if self.note(&path) {
                                log::error!(
                                    "pickup quarantine-failed file={file} reason=\"{e}\" error=\"{q}\" (logged once)"
                                );
                            }
                        }
                    }
                    continue;
                }
            };
            if d.uid != entry.uid {
                log::warn!(
                    "pickup uid-mismatch file={file} owner={} claimed={}: the owner is the submitter",
                    entry.uid,
                    d.uid
                );
            }
            let too_many = d.rcpts.len() > max_rcpts;
            if too_many || d.data.len() as u64 > max_size {
                log::warn!(
                    "pickup refused file={file} uid={} reason=\"{}\"",
                    entry.uid,
                    if too_many {
                        format!("{} recipients, at most {max_rcpts}", d.rcpts.len())
                    } else {
                        format!("{} octets, at most {max_size}", d.data.len())
                    }
                );
                remove(&path);
                continue;
            }
            let data = self.trace_local(entry.uid, &d.data);
            match self.queue_local(d.sender.clone(), &d.rcpts, &data, "LOCAL", &submitted(&d)) {
                Ok((id, refused)) => {
                    log::info!(
                        target: "pickup",
                        "{id}: uid={} from={}",
                        entry.uid,
                        sanitize(crate::vocab::fmt_path(&d.sender).as_bytes())
                    );
                    log::info!(
                        target: "qmgr",
                        "{id}: from={}, size={}, nrcpt={} (queue active)",
                        sanitize(crate::vocab::fmt_path(&d.sender).as_bytes()),
                        data.len(),
                        d.rcpts.len() - refused.len()
                    );
                    log::info!(
                        "{id} pickup queued uid={} from={} nrcpt={}{}",
                        entry.uid,
                        sanitize(crate::vocab::fmt_path(&d.sender).as_bytes()),
                        d.rcpts.len() - refused.len(),
                        if dot.is_some() {
                            " recovered=unrenamed-temp"
                        } else {
                            ""
                        }
                    );
                    self.bounce_refused(&d, &refused);
                }
                Err(super::inject::QueueError::Unroutable(refused)) => {
                    self.bounce_refused(&d, &refused);
                }
                Err(super::inject::QueueError::Spool(e)) => {
                    // Keep the file: it is tried again at the next pickup.
                    log::error!("pickup spool-failed file={file} error=\"{e}\"");
                    continue;
                }
            }
            remove(&path);
        }
    }

    /// A wake-up from `etrnd sendmail`: a scan now, or soon after the last one (a
    /// flood of wake-ups costs a scan per [`WAKE_GAP`]).
    pub(super) fn pickup_wake(&mut self, now: Instant) {
        match self.drops.last {
            Some(t) if now < t + WAKE_GAP => self.drops.next = self.drops.next.min(t + WAKE_GAP),
            _ => self.pickup(now),
        }
    }

    /// Remembers an entry whose failure was logged: `true` the first time.
    fn note(&mut self, path: &std::path::Path) -> bool {
        if self.drops.noted.contains(path) {
            return false;
        }
        if self.drops.noted.len() >= MAX_NOTED {
            self.drops.noted.clear();
        }
        self.drops.noted.insert(path.to_path_buf());
        true
    }

    /// The message with our own trace line first: the submitter as the daemon saw it
    /// (the file's owner), whatever the file itself claims.
    fn trace_local(&self, uid: u32, data: &[u8]) -> Vec<u8> {
        let who = super::io::user_name(uid).unwrap_or_else(|| format!("uid {uid}"));
        let mut out = format!(
            "Received: by {} (etrnd pickup, from userid {who} uid {uid}); {}\r\n",
            self.config.main.hostname,
            crate::smtp::trace::rfc5322_date(self.time.unix)
        )
        .into_bytes();
        out.extend_from_slice(data);
        out
    }

    /// Tells the sender about recipients that could not be routed at pickup.
    fn bounce_refused(&mut self, d: &Drop, refused: &[(crate::vocab::Mailbox, String)]) {
        if refused.is_empty() {
            return;
        }
        for (m, why) in refused {
            log::warn!(
                "pickup refused to=<{}> reason=\"{}\"",
                sanitize(m.to_string().as_bytes()),
                sanitize(why.as_bytes())
            );
        }
        let Some(sender) = d.sender.clone() else {
            return;
        };
        if d.notify.is_some_and(|n| !n.failure) {
            // `sendmail -N never` (or success alone): no bounce.
            return;
        }
        let env = crate::store::spool::Envelope {
            arrival: self.time.unix,
            client: "-".into(),
            helo: self.config.main.hostname.clone(),
            protocol: "LOCAL".into(),
            eight_bit: false,
            sender: d.sender.clone(),
            recipients: Vec::new(),
            dsn: d.dsn.clone(),
            smtputf8: d.smtputf8,
        };
        let failures: Vec<crate::message::bounce::Failure> = refused
            .iter()
            .map(|(m, why)| crate::message::bounce::Failure {
                action: crate::message::bounce::Action::Failed,
                orcpt: None,
                rcpt: m.clone(),
                status: "5.1.1".into(),
                diagnostic: why.clone(),
                remote_mta: None,
            })
            .collect();
        let dsn = crate::message::bounce::dsn(
            &self.config.main.hostname,
            crate::store::spool::MessageId(0),
            &env,
            &sender,
            &d.data,
            false,
            &failures,
            self.time.unix,
        );
        let opts = super::inject::Submitted {
            smtputf8: d.smtputf8,
            ..Default::default()
        };
        let _ = self.queue_local(None, std::slice::from_ref(&sender), &dsn, "LOCAL", &opts);
    }
}

impl Core {
    /// Binds the notify socket (a stale one from a crash is replaced).
    pub(super) fn bind_notify(&mut self, io: &super::io::Io) -> Option<mio::net::UnixDatagram> {
        let path = self.spool.notify_path();
        let _ = std::fs::remove_file(&path);
        match mio::net::UnixDatagram::bind(&path) {
            Ok(mut s) => {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666));
                if let Err(e) = io
                    .registry
                    .register(&mut s, super::NOTIFY, mio::Interest::READABLE)
                {
                    log::error!("pickup notify-failed error=\"{e}\"");
                    return None;
                }
                Some(s)
            }
            Err(e) => {
                log::error!("pickup notify-failed path={} error=\"{e}\"", path.display());
                None
            }
        }
    }

    pub(super) fn drain_notify(&mut self, io: &mut super::io::Io, now: Instant) {
        let mut buf = [0u8; 64];
        if let Some(s) = &io.notify {
            while s.recv(&mut buf).is_ok() {}
        }
        self.pickup_wake(now);
    }
}

/// What a drop file's submitter asked of its message.
fn submitted(d: &crate::store::spool::drop::Drop) -> super::inject::Submitted {
    super::inject::Submitted {
        dsn: d.dsn.clone(),
        notify: d.notify,
        smtputf8: d.smtputf8,
    }
}
