//! `etrnd mailq`: the queue listing, in the shape of Postfix's `mailq` so that
//! operators and scripts recognise it.

use std::fmt::Write as _;

use crate::config::scheduler::Transport;
use crate::config::Config;
use crate::spool::Destination;

use crate::smtp::trace::iso_date;
use crate::spool::{Spool, StateRecord};
use crate::vocab::fmt_path;

/// The state of recipient `idx` from its journal, as words. `held`: its clause is
/// queue-only (or a hold transport), so only a release starts it; `for_atrn`: a
/// hold transport, which only ATRN (or expiry) takes from.
/// `link`: the link the recipient's route is behind is down (its name).
fn recipient_state(
    idx: usize,
    records: &[StateRecord],
    (held, for_atrn): (bool, bool),
    link: Option<&str>,
) -> String {
    let mut attempts = 0;
    let link_word;
    let word = match (held, for_atrn, link) {
        (true, true, _) => "held for ATRN",
        (_, _, Some(l)) => {
            link_word = format!("held: link {l} down");
            link_word.as_str()
        }
        (true, false, None) => "held",
        _ => "queued",
    };
    let held = held || link.is_some();
    let mut state = word.to_string();
    for r in records {
        match r {
            StateRecord::Delivered { idx: i, .. } if *i == idx => state = "sent".into(),
            StateRecord::Failed { idx: i, reason, .. } if *i == idx => {
                state = format!("bounced ({reason})")
            }
            StateRecord::Deferred {
                idx: i,
                next,
                reason,
                ..
            } if *i == idx => {
                attempts += 1;
                state = if held {
                    format!("{word}, {attempts} attempt(s), last error: {reason}")
                } else {
                    format!(
                        "deferred, {attempts} attempt(s), next {}, last error: {reason}",
                        iso_date(*next)
                    )
                };
            }
            _ => {}
        }
    }
    state
}

/// Whether a destination's clause is the hold transport (its mail waits for ATRN).
fn for_atrn(cfg: &Config, dest: &Destination) -> bool {
    let Destination::Remote { channel, host } = dest else {
        return false;
    };
    cfg.sched
        .clause_for(channel, host)
        .is_some_and(|(_, c)| matches!(c.params.command, Some((Transport::Hold, _))))
}

/// The down link a destination is behind, if any.
fn link_down(cfg: &Config, dest: &Destination) -> Option<String> {
    let Destination::Remote { channel, host } = dest else {
        return None;
    };
    match crate::event_loop::netlinks::offline_link(cfg, |t| t.covers(channel, host)) {
        Some((l, true)) => Some(l),
        _ => None,
    }
}

/// Whether a destination's clause holds mail until a release.
pub fn is_held(cfg: &Config, dest: &Destination) -> bool {
    let (channel, host) = match dest {
        Destination::Local(u) => ("local", u.as_str()),
        Destination::Remote { channel, host } => (channel.as_str(), host.as_str()),
    };
    cfg.sched.clause_for(channel, host).is_some_and(|(_, c)| {
        c.params.queueonly || matches!(c.params.command, Some((Transport::Hold, _)))
    })
}

/// Renders the listing of the spool at `postoffice` (read-only: nothing is created,
/// verified or moved).
pub fn render(cfg: &Config) -> Result<String, crate::spool::SpoolError> {
    let postoffice = cfg.main.postoffice.as_path();
    let mut out = String::new();
    let entries = if postoffice.join("queue").is_dir() {
        Spool::at(postoffice).list()?
    } else {
        Vec::new()
    };
    let drops = dropped(postoffice, cfg.main.max_message_size);
    if entries.is_empty() && drops.is_empty() {
        out.push_str("Mail queue is empty\n");
        return Ok(out);
    }
    out.push_str("-Queue ID-        --Size-- ----Arrival Time--- -Sender/Recipient-------\n");
    let mut total = 0u64;
    for d in &drops {
        total += d.size;
        let (sender, rcpts) = match &d.drop {
            Some(x) => (
                fmt_path(&x.sender),
                x.rcpts.iter().map(|r| r.to_string()).collect(),
            ),
            None => ("(not readable yet)".to_string(), Vec::new()),
        };
        let _ = writeln!(
            out,
            "{:<16} {:>9} {} {}",
            crate::logging::sanitize(d.name.as_bytes()),
            d.size,
            iso_date(d.mtime),
            crate::logging::sanitize(sender.as_bytes())
        );
        for r in rcpts {
            let _ = writeln!(
                out,
                "{:47} {}  waiting in the drop folder for pickup",
                "",
                crate::logging::sanitize(r.as_bytes())
            );
        }
        out.push('\n');
    }
    for e in &entries {
        total += e.size;
        let _ = writeln!(
            out,
            "{:<16} {:>9} {} {}",
            e.id.to_string(),
            e.size,
            iso_date(e.envelope.arrival),
            crate::logging::sanitize(fmt_path(&e.envelope.sender).as_bytes())
        );
        for (i, r) in e.envelope.recipients.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:47} {}  {}  {}",
                "",
                crate::logging::sanitize(r.address.to_string().as_bytes()),
                r.dest,
                recipient_state(
                    i,
                    &e.state,
                    (is_held(cfg, &r.dest), for_atrn(cfg, &r.dest)),
                    link_down(cfg, &r.dest).as_deref()
                )
            );
        }
        out.push('\n');
    }
    let n = entries.len() + drops.len();
    let _ = writeln!(
        out,
        "-- {} Kbytes in {} Request{}.",
        total.div_ceil(1024),
        n,
        if n == 1 { "" } else { "s" }
    );
    Ok(out)
}

/// A message waiting in the drop folder.
struct Dropped {
    name: String,
    size: u64,
    mtime: u64,
    drop: Option<crate::spool::drop::Drop>,
}

/// The finished submissions in `drop/` that the daemon has not picked up (only what
/// this user may list: the folder is 1733, so root and `USER`). Only regular files
/// are read, without following links, and none larger than a message may be.
fn dropped(postoffice: &std::path::Path, max_size: u64) -> Vec<Dropped> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let Ok(rd) = std::fs::read_dir(postoffice.join("drop")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if name.starts_with('.') || !meta.is_file() {
            continue; // still being written, or not a submission
        }
        let limit = max_size.saturating_mul(2).saturating_add(64 * 1024);
        let drop = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(e.path())
            .ok()
            .filter(|f| f.metadata().is_ok_and(|m| m.is_file() && m.len() <= limit))
            .and_then(|f| {
                let mut data = Vec::new();
                f.take(limit).read_to_end(&mut data).ok()?;
                crate::spool::drop::Drop::decode(&data).ok()
            });
        out.push(Dropped {
            name,
            size: meta.len(),
            mtime: u64::try_from(meta.mtime()).unwrap_or(0),
            drop,
        });
    }
    out.sort_by(|a, b| (a.mtime, &a.name).cmp(&(b.mtime, &b.name)));
    out
}

/// Age buckets of `qshape`, in minutes (Postfix's defaults).
const BUCKETS: [u64; 9] = [5, 10, 20, 40, 80, 160, 320, 640, 1280];

/// `etrnd qshape`: per destination and message age, how many messages wait —
/// one table for held (queue-only) mail, one for the rest (queued or deferred).
pub fn qshape(cfg: &Config, now: u64) -> Result<String, crate::spool::SpoolError> {
    use std::collections::BTreeMap;
    let postoffice = cfg.main.postoffice.as_path();
    let entries = if postoffice.join("queue").is_dir() {
        Spool::at(postoffice).list()?
    } else {
        Vec::new()
    };
    // (held, destination) -> counts per bucket (last = older than the last bucket).
    let mut rows: BTreeMap<(bool, String), [u64; BUCKETS.len() + 1]> = BTreeMap::new();
    for e in &entries {
        let age_min = now.saturating_sub(e.envelope.arrival) / 60;
        let bucket = BUCKETS
            .iter()
            .position(|&b| age_min < b)
            .unwrap_or(BUCKETS.len());
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in e.envelope.recipients.iter().enumerate() {
            let done = e.state.iter().any(|s| {
                matches!(s, StateRecord::Delivered { idx, .. } | StateRecord::Failed { idx, .. } if *idx == i)
            });
            if done {
                continue;
            }
            let key = (is_held(cfg, &r.dest), r.dest.to_string());
            if seen.insert(key.clone()) {
                rows.entry(key).or_insert([0; BUCKETS.len() + 1])[bucket] += 1;
            }
        }
    }
    let mut out = String::new();
    for (held, title) in [
        (true, "held (queue-only: released by ETRN or etrnd flush)"),
        (false, "queued or deferred"),
    ] {
        let mine: Vec<_> = rows.iter().filter(|((h, _), _)| *h == held).collect();
        let width = mine
            .iter()
            .map(|((_, d), _)| d.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(out, "{title}:");
        let _ = write!(out, "{:>width$} {:>6}", "", "T");
        for b in BUCKETS {
            let _ = write!(out, " {b:>5}");
        }
        let _ = writeln!(out, " {:>5}", format!("{}+", BUCKETS[BUCKETS.len() - 1]));
        let mut total = [0u64; BUCKETS.len() + 1];
        for (_, counts) in &mine {
            for (t, c) in total.iter_mut().zip(counts.iter()) {
                *t += c;
            }
        }
        let mut line = |name: &str, counts: &[u64]| {
            let _ = write!(out, "{name:>width$} {:>6}", counts.iter().sum::<u64>());
            for c in counts {
                let _ = write!(out, " {c:>5}");
            }
            out.push('\n');
        };
        line("TOTAL", &total);
        for ((_, dest), counts) in mine {
            line(dest, counts);
        }
        out.push('\n');
    }
    let drops = dropped(postoffice, cfg.main.max_message_size);
    if !drops.is_empty() {
        let _ = writeln!(
            out,
            "waiting in the drop folder for pickup: {} message{}",
            drops.len(),
            if drops.len() == 1 { "" } else { "s" }
        );
    }
    Ok(out)
}
