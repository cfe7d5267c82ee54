//! `etrnd mailq`: the queue listing, in the shape of Postfix's `mailq` so that
//! operators and scripts recognise it.

use std::fmt::Write as _;

use crate::config::scheduler::Transport;
use crate::config::Config;
use crate::store::spool::Destination;

use crate::smtp::trace::iso_date;
use crate::store::spool::{MessageId, Spool, StateRecord};
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
    match crate::daemon::netlinks::offline_link(cfg, |t| t.covers(channel, host)) {
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
    cfg.sched.holds(channel, host)
}

/// `etrnd mailq [-j]` (also `mailq`, `sendmail -bp`): for any local user through
/// the running daemon, which writes the listing into a pipe we hand it; with no
/// daemon, read from the spool here (which only root and `USER` may). Exit 0, 69
/// when neither works, 75 when the daemon went away before it answered.
pub fn run(cfg: &Config, json: bool, out: &mut impl std::io::Write) -> i32 {
    use crate::cli::exit as ex;
    if let Ok(active) = std::env::var(crate::daemon::showq::ACTIVE_ENV) {
        // The daemon's own listing child: read the spool.
        let active: Vec<MessageId> = active.split(',').filter_map(MessageId::parse).collect();
        return print(render_with(cfg, &active, json), out);
    }
    match through_daemon(cfg, json, out) {
        Ok(code) => code,
        Err(NoListing::Failed(why)) => {
            let _ = out.flush();
            eprintln!("mailq: {why}");
            crate::tools::etrn_client::TEMPFAIL
        }
        Err(NoListing::NotRunning(why)) => match render_with(cfg, &[], json) {
            Ok(text) => print(Ok(text), out),
            Err(e) => {
                let _ = out.flush();
                eprintln!("mailq: the queue cannot be listed: {why}; and {e}");
                ex::UNAVAILABLE
            }
        },
    }
}

fn print(r: Result<String, crate::store::spool::SpoolError>, out: &mut impl std::io::Write) -> i32 {
    match r {
        Ok(text) => match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => crate::cli::exit::OK,
            Err(_) => crate::cli::exit::OSERR,
        },
        Err(e) => {
            eprintln!("mailq: {e}");
            crate::cli::exit::OSERR
        }
    }
}

/// Why the daemon gave no listing.
enum NoListing {
    /// No daemon runs: the spool may be read here instead.
    NotRunning(String),
    /// It went away or did not answer: exit 75.
    Failed(String),
}

/// Asks the daemon for the listing through a pipe.
fn through_daemon(
    cfg: &Config,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<i32, NoListing> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let (mut reader, writer) = std::io::pipe().map_err(|e| NoListing::Failed(e.to_string()))?;
    let control = cfg.main.postoffice.join("control");
    let request = if json { "mailq -j" } else { "mailq" };
    let mut conn = crate::tools::etrn_client::ControlConn::connect(&control).map_err(|e| {
        let why = format!("etrnd is not running ({}: {e})", control.display());
        if crate::tools::etrn_client::no_daemon(&e) {
            NoListing::NotRunning(why)
        } else {
            NoListing::Failed(why)
        }
    })?;
    let reply = conn
        .ask(
            request.as_bytes(),
            Some(writer.as_raw_fd()),
            crate::tools::etrn_client::CONTROL_TIMEOUT,
        )
        .map_err(|e| NoListing::Failed(e.to_string()))?;
    drop(writer);
    let line = String::from_utf8_lossy(&reply).trim_end().to_string();
    if !line.starts_with("250") {
        eprintln!("mailq: {line}");
        return Ok(crate::tools::etrn_client::TEMPFAIL);
    }
    // `250-`: the daemon says when its listing child is over, after the pipe ends.
    let more = line.as_bytes().get(3) == Some(&b'-');
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).is_err() {
                    return Ok(crate::cli::exit::OSERR);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(NoListing::Failed(e.to_string())),
        }
    }
    let _ = out.flush();
    if more {
        let last = conn
            .next_line(crate::tools::etrn_client::CONTROL_TIMEOUT)
            .map_err(|e| NoListing::Failed(e.to_string()))?;
        let last = String::from_utf8_lossy(&last).trim_end().to_string();
        if !last.starts_with("250") {
            eprintln!("mailq: {last}");
            return Ok(crate::tools::etrn_client::TEMPFAIL);
        }
    }
    Ok(crate::cli::exit::OK)
}

/// Renders the listing of the spool at `postoffice` (read-only: nothing is created,
/// verified or moved).
pub fn render(cfg: &Config) -> Result<String, crate::store::spool::SpoolError> {
    render_with(cfg, &[], false)
}

/// The listing, with the messages being delivered now (`*`) as the daemon said;
/// `json`: one JSON object per line and message, as Postfix's `postqueue -j`.
pub fn render_with(
    cfg: &Config,
    active: &[MessageId],
    json: bool,
) -> Result<String, crate::store::spool::SpoolError> {
    let postoffice = cfg.main.postoffice.as_path();
    let mut out = String::new();
    let entries = if postoffice.join("queue").is_dir() {
        Spool::at(postoffice).list()?
    } else {
        Vec::new()
    };
    let drops = dropped(postoffice, cfg.main.max_message_size);
    if json {
        return Ok(render_json(cfg, &entries, &drops, active));
    }
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
        let (_, mark) = queue_name(e, active);
        let _ = writeln!(
            out,
            "{}{mark} {:>8} {} {}",
            e.id,
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
                state_of(cfg, e, i)
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

/// A recipient's state in words; a message on the operator's hold says so first.
fn state_of(cfg: &Config, e: &crate::store::spool::QueueEntry, i: usize) -> String {
    let Some(r) = e.envelope.recipients.get(i) else {
        return String::new();
    };
    let state = recipient_state(
        i,
        &e.state,
        (is_held(cfg, &r.dest), for_atrn(cfg, &r.dest)),
        link_down(cfg, &r.dest).as_deref(),
    );
    if crate::tools::queue::on_hold(&e.state)
        && !state.starts_with("sent")
        && !state.starts_with("bounced")
    {
        format!("on hold (etrnd queue release), {state}")
    } else {
        state
    }
}

/// Postfix's queue name of a message and its `mailq` marker: `active` (`*`),
/// `hold` (`!`), `deferred` (tried before) or `incoming`.
fn queue_name(e: &crate::store::spool::QueueEntry, active: &[MessageId]) -> (&'static str, char) {
    if active.contains(&e.id) {
        ("active", '*')
    } else if crate::tools::queue::on_hold(&e.state) {
        ("hold", '!')
    } else if e
        .state
        .iter()
        .any(|s| matches!(s, StateRecord::Deferred { .. }))
    {
        ("deferred", ' ')
    } else {
        ("incoming", ' ')
    }
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if crate::vocab::hidden(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `mailq -j`: one object per message and line (Postfix's `postqueue -j` keys, plus
/// each recipient's destination and state).
fn render_json(
    cfg: &Config,
    entries: &[crate::store::spool::QueueEntry],
    drops: &[Dropped],
    active: &[MessageId],
) -> String {
    let mut out = String::new();
    for d in drops {
        let (sender, rcpts): (String, Vec<String>) = match &d.drop {
            Some(x) => (
                fmt_path(&x.sender),
                x.rcpts.iter().map(|r| r.to_string()).collect(),
            ),
            None => (String::new(), Vec::new()),
        };
        let rcpts: Vec<String> = rcpts
            .iter()
            .map(|r| {
                format!(
                    "{{\"address\":{},\"state\":\"waiting in the drop folder for pickup\"}}",
                    json_str(r)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "{{\"queue_name\":\"maildrop\",\"queue_id\":{},\"arrival_time\":{},\"message_size\":{},\"sender\":{},\"recipients\":[{}]}}",
            json_str(&d.name),
            d.mtime,
            d.size,
            json_str(sender.trim_start_matches('<').trim_end_matches('>')),
            rcpts.join(",")
        );
    }
    for e in entries {
        let (queue, _) = queue_name(e, active);
        let rcpts: Vec<String> = e
            .envelope
            .recipients
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "{{\"address\":{},\"destination\":{},\"state\":{}}}",
                    json_str(&r.address.to_string()),
                    json_str(&r.dest.to_string()),
                    json_str(&state_of(cfg, e, i))
                )
            })
            .collect();
        let sender = fmt_path(&e.envelope.sender);
        let _ = writeln!(
            out,
            "{{\"queue_name\":\"{queue}\",\"queue_id\":\"{}\",\"arrival_time\":{},\"message_size\":{},\"sender\":{},\"recipients\":[{}]}}",
            e.id,
            e.envelope.arrival,
            e.size,
            json_str(sender.trim_start_matches('<').trim_end_matches('>')),
            rcpts.join(",")
        );
    }
    out
}

/// A message waiting in the drop folder.
struct Dropped {
    name: String,
    size: u64,
    mtime: u64,
    drop: Option<crate::store::spool::drop::Drop>,
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
                crate::store::spool::drop::Drop::decode(&data).ok()
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
pub fn qshape(cfg: &Config, now: u64) -> Result<String, crate::store::spool::SpoolError> {
    use std::collections::BTreeMap;
    let postoffice = cfg.main.postoffice.as_path();
    // Parked mail is counted from the index when it is known complete (its lines
    // hold the arrival and the destination): no parked file is opened.
    let spool = Spool::at(postoffice);
    let trusted = spool.index_trusted();
    let entries = if postoffice.join("queue").is_dir() {
        let mut l = Vec::new();
        spool.for_each_in(!trusted, |e| l.push(e))?;
        l
    } else {
        Vec::new()
    };
    let bucket_of = |arrival: u64| {
        let age_min = now.saturating_sub(arrival) / 60;
        BUCKETS
            .iter()
            .position(|&b| age_min < b)
            .unwrap_or(BUCKETS.len())
    };
    // (held, destination) -> counts per bucket (last = older than the last bucket).
    let mut rows: BTreeMap<(bool, String), [u64; BUCKETS.len() + 1]> = BTreeMap::new();
    if trusted {
        let in_queue: std::collections::HashSet<_> = entries.iter().map(|e| e.id).collect();
        for name in spool.index_names() {
            let Some((channel, host)) = crate::store::spool::held::index_key(&name) else {
                continue;
            };
            let dest = if channel == "local" {
                Destination::Local(host)
            } else {
                Destination::Remote { channel, host }
            };
            let key = (is_held(cfg, &dest), dest.to_string());
            for e in spool.read_index(&name) {
                if !in_queue.contains(&e.id) && spool.is_parked(e.id) {
                    rows.entry(key.clone()).or_insert([0; BUCKETS.len() + 1])
                        [bucket_of(e.arrival)] += 1;
                }
            }
        }
    }
    for e in &entries {
        let bucket = bucket_of(e.envelope.arrival);
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
