//! `etrnd mailq`: the queue listing, in the shape of Postfix's `mailq` so that
//! operators and scripts recognise it.

use std::fmt::Write as _;

use crate::config::scheduler::Transport;
use crate::config::Config;
use crate::spool::Destination;

use crate::smtp::fmt_path;
use crate::smtp::trace::iso_date;
use crate::spool::{Spool, StateRecord};

/// The state of recipient `idx` from its journal, as words. `held`: its clause is
/// queue-only (or a hold transport), so only a release starts it.
fn recipient_state(idx: usize, records: &[StateRecord], held: bool) -> String {
    let mut attempts = 0;
    let mut state = if held { "held" } else { "queued" }.to_string();
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
                    format!("held, {attempts} attempt(s), last error: {reason}")
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
    if !postoffice.join("queue").is_dir() {
        out.push_str("Mail queue is empty\n");
        return Ok(out);
    }
    let spool = Spool::at(postoffice);
    let entries = spool.list()?;
    if entries.is_empty() {
        out.push_str("Mail queue is empty\n");
        return Ok(out);
    }
    out.push_str("-Queue ID-        --Size-- ----Arrival Time--- -Sender/Recipient-------\n");
    let mut total = 0u64;
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
                recipient_state(i, &e.state, is_held(cfg, &r.dest))
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "-- {} Kbytes in {} Request{}.",
        total.div_ceil(1024),
        entries.len(),
        if entries.len() == 1 { "" } else { "s" }
    );
    Ok(out)
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
    Ok(out)
}
