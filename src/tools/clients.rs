//! `etrnd clients`: held destinations and the clients that release them, from the
//! spool and the daemon's notes (`store::notes`), read-only, whether the daemon
//! runs or not.

use std::fmt::Write as _;

use crate::config::Config;
use crate::store::notes::Notes;

/// `etrnd clients`: per held destination, from the spool and the notes (read-only,
/// whether the daemon runs or not), most held octets first.
pub fn render(cfg: &Config, now: u64) -> Result<String, crate::store::spool::SpoolError> {
    use crate::sched::Scheduler;
    let postoffice = cfg.main.postoffice.as_path();
    let notes = Notes::read(postoffice);
    let mut sched = Scheduler::new(cfg.sched.clone(), 1);
    for (k, n) in notes.iter() {
        if let Some((channel, host)) = k.split_once('!') {
            if n.release > 0 {
                sched.set_last_release(
                    crate::sched::ThreadKey {
                        channel: channel.into(),
                        host: host.into(),
                    },
                    n.release,
                );
            }
        }
    }
    if postoffice.join("queue").is_dir() {
        // Mail in queue/ is read; parked mail is summed from the index when it is
        // known complete (read every file otherwise: after a power loss, until the
        // daemon has rebuilt it).
        let mut spool = crate::store::spool::Spool::at(postoffice);
        let trusted = spool.index_trusted();
        spool.for_each_in(!trusted, |e| {
            sched.add_sized(e.id, &e.envelope, &e.state, now, e.size);
        })?;
        if trusted {
            sched.load_index(&mut spool);
        }
    }
    let when = |t: u64| {
        if t == 0 {
            "-".to_string()
        } else {
            crate::vocab::date::iso_date(t)
        }
    };
    let mut out = String::new();
    let mut dests = sched.held_destinations();
    // Destinations released before and holding nothing now: the last call shows.
    let mut idle: Vec<crate::sched::HeldDest> = notes
        .iter()
        .filter(|(k, _)| !dests.iter().any(|d| &d.key == *k))
        .map(|(k, n)| crate::sched::HeldDest {
            key: k.clone(),
            held: Default::default(),
            next_expiry: None,
            last_release: n.release,
        })
        .collect();
    idle.sort_by(|a, b| a.key.cmp(&b.key));
    dests.extend(idle);
    if dests.is_empty() {
        out.push_str("No mail is held\n");
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:<32} {:>6} {:>10} {:<20} {:<20} {:<20} last request",
        "destination", "held", "octets", "oldest", "next expiry", "last release"
    );
    for d in dests {
        let note = notes.get(&d.key);
        let request = match note {
            Some(n) if n.when > 0 => {
                format!("{} {} from {} -> {}", when(n.when), n.kind, n.from, n.code)
            }
            _ => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<32} {:>6} {:>10} {:<20} {:<20} {:<20} {}",
            crate::logging::sanitize(d.key.as_bytes()),
            d.held.messages,
            d.held.octets,
            when(d.held.oldest.unwrap_or(0)),
            when(d.next_expiry.unwrap_or(0)),
            when(d.last_release.max(note.map_or(0, |n| n.release))),
            crate::logging::sanitize(request.as_bytes())
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_bad_lines_are_skipped() {
        let mut n = Notes::default();
        n.request("smtp-etrn!mail.client.dom", 100, "etrn", "192.0.2.7", 253);
        n.released("smtp-etrn!mail.client.dom", 120);
        n.request("odmr!", 130, "atrn", "cust dom", 250);
        let text = n.render();
        let back = Notes::parse(&text);
        assert_eq!(
            back.get("smtp-etrn!mail.client.dom"),
            n.get("smtp-etrn!mail.client.dom")
        );
        assert_eq!(back.get("odmr!").unwrap().from, "custdom");
        let bad = "nokey 1 2 etrn x 250\na!b x 2 etrn x 250\na!b 1 2 bogus x 250\na!b 1 2\n";
        assert_eq!(Notes::parse(bad).iter().count(), 0);
    }
}
