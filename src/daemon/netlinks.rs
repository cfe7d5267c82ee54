//! Named links (`LINKS`, DESIGN.md §5.9), the loop's side.
//!
//! * **State.** Every link starts down (a dial-up host sends nothing until ppp's
//!   ip-up says `etrnd link up`); `link up|down` over the control socket changes
//!   it, and `POSTOFFICE/links` shows it to `mailq` and `etrnd route -R`.
//! * **Down means silent.** The scheduler never starts a thread behind a down link,
//!   and the loop checks again where lookups and connections are made
//!   ([`Core::link_down_for`], [`Core::server_link_down`]): a job that reaches
//!   either point behind a down link ends untried — no attempt counted, retry state
//!   untouched.
//! * **Up.** Held and deferred mail behind the link is released first, paced by
//!   `LINK_PACE` (new connections and messages per second over that link); once
//!   none of it is running or waiting for a slot, the `LINK_UP` actions run one
//!   after another (ETRN and ATRN as a client, through the ODMR customer machine),
//!   each logged with its outcome. `link down` in the middle stops what has not
//!   started; what is in flight finishes or fails safely.
//! * **Dial.** With `LINK_DIAL`, a down link with held mail that meets
//!   `LINK_DIAL_WHEN` is asked for once: the command runs (no shell, `ETRND_LINK`
//!   in its environment); the [`Dialer`] decides the rest (deadline, back-off).

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use super::io::children;
use super::{Core, Io};
use crate::config::links::{LinkAction, LinkTarget};
use crate::logging::sanitize;
use crate::machines::delivery::Action;
use crate::machines::dialer::{Dialer, Failed};
use crate::sched::{JobId, ThreadKey};
use crate::smtp::reply::Reply;

/// One named link.
pub(super) struct NetLink {
    /// Its name.
    pub name: String,
    /// Up, down, dialling or backing off.
    pub dialer: Dialer,
    /// Since when (Unix seconds), and why.
    pub since: u64,
    why: String,
    /// `LINK_UP` actions not yet started.
    pending: VecDeque<LinkAction>,
    /// An action is running.
    running: bool,
    /// Pacing: the second counted, connections and messages started in it.
    pace: (u64, u32, u32),
}

impl NetLink {
    fn new(name: &str, since: u64) -> NetLink {
        NetLink {
            name: name.to_string(),
            dialer: Dialer::default(),
            since,
            why: "start-up".into(),
            pending: VecDeque::new(),
            running: false,
            pace: (0, 0, 0),
        }
    }
}

/// How long a stopped dial command has to end before it is killed.
const DIAL_KILL_GRACE: Duration = Duration::from_secs(10);

/// The loop's link state.
#[derive(Default)]
pub(super) struct NetLinks {
    pub list: Vec<NetLink>,
    /// Jobs whose next action waits for the pace of their link.
    paced: Vec<JobId>,
    /// The scheduler's message count at the last dial check.
    seen_msgs: usize,
    /// When the dial policy must be checked again by the clock (`age=`, back-off).
    check_at: Option<Instant>,
    /// Dial commands that outlived their dial, reaped at their SIGCHLD; those that
    /// were stopped (a failed dial) are killed, with their session, if they have
    /// not ended by the time given (one that ignores SIGTERM must not pile up).
    orphans: Vec<(i32, Option<Instant>)>,
}

/// A link request over the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOp {
    /// `link up [NAME]`.
    Up,
    /// `link down [NAME]`.
    Down,
    /// `link status [NAME]`.
    Status,
}

impl Core {
    /// The links of the configuration, every one down (start-up), or after a
    /// reload: links kept keep their state, new ones start down.
    pub(super) fn links_configure(&mut self) {
        let names: Vec<String> = self
            .config
            .main
            .links
            .names()
            .into_iter()
            .map(str::to_string)
            .collect();
        let mut old = std::mem::take(&mut self.netlinks.list);
        for n in names {
            let kept = old
                .iter()
                .position(|l| l.name == n)
                .map(|i| old.swap_remove(i));
            self.netlinks
                .list
                .push(kept.unwrap_or_else(|| NetLink::new(&n, self.time.unix)));
        }
        for gone in old {
            if let Some(c) = gone.dialer.child() {
                // Its link is gone from the configuration: its dial is over.
                children::terminate(c);
                let kill_at = Instant::now() + DIAL_KILL_GRACE;
                self.netlinks.orphans.push((c, Some(kill_at)));
            }
        }
        self.links_changed();
    }

    /// After a change of state: the scheduler learns what is blocked, and
    /// `POSTOFFICE/links` is rewritten.
    fn links_changed(&mut self) {
        let down: Vec<LinkTarget> = self
            .config
            .main
            .links
            .targets
            .iter()
            .filter(|(n, _)| self.link_is_down(n))
            .map(|(_, t)| t.clone())
            .collect();
        self.sched.set_blocked(down);
        let text: String = self
            .netlinks
            .list
            .iter()
            .map(|l| {
                format!(
                    "{} {} {} {}\n",
                    l.name,
                    if l.dialer.is_up() { "up" } else { "down" },
                    l.since,
                    l.why
                )
            })
            .collect();
        let path = self.spool.root().join("links");
        if let Err(e) = write_replace(&path, text.as_bytes()) {
            log::warn!(
                "link state-write-failed path={} error=\"{e}\"",
                path.display()
            );
        }
    }

    /// The down link a thread is behind, if any (checked where lookups and
    /// connections are made).
    pub(super) fn link_down_for(&self, key: &ThreadKey) -> Option<String> {
        self.config
            .main
            .links
            .targets
            .iter()
            .filter(|(_, t)| t.covers(&key.channel, &key.host))
            .find(|(n, _)| self.link_is_down(n))
            .map(|(n, _)| n.clone())
    }

    /// The down link a server (`etrn`, `atrn`) is behind, if any.
    pub(super) fn server_link_down(&self, server: &str) -> Option<String> {
        let bare = crate::daemon::secure::bare_host(server);
        self.config
            .main
            .links
            .targets
            .iter()
            .filter(|(_, t)| t.covers_server(bare))
            .find(|(n, _)| self.link_is_down(n))
            .map(|(n, _)| n.clone())
    }

    fn link_is_down(&self, name: &str) -> bool {
        self.netlinks
            .list
            .iter()
            .any(|l| l.name == name && !l.dialer.is_up())
    }

    /// Whether a thread is behind link `name`.
    fn behind(&self, name: &str, key: &ThreadKey) -> bool {
        self.config
            .main
            .links
            .targets
            .iter()
            .any(|(n, t)| n == name && t.covers(&key.channel, &key.host))
    }

    /// `etrnd link up|down|status [NAME]`.
    pub(super) fn link_request(
        &mut self,
        io: &mut Io,
        op: LinkOp,
        name: Option<&str>,
        now: Instant,
    ) -> Reply {
        if op == LinkOp::Status && name.is_none() && !self.netlinks.list.is_empty() {
            let all: Vec<String> = (0..self.netlinks.list.len())
                .map(|i| self.link_status(i))
                .collect();
            return Reply::new(250, format!("2.0.0 {}", all.join("; ")));
        }
        let name = name.unwrap_or("default");
        let Some(i) = self.netlinks.list.iter().position(|l| l.name == name) else {
            let known: Vec<&str> = self.netlinks.list.iter().map(|l| l.name.as_str()).collect();
            return Reply::new(
                550,
                format!(
                    "5.3.0 no link '{}' in LINKS (links: {})",
                    sanitize(name.as_bytes()),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(" ")
                    }
                ),
            );
        };
        match op {
            LinkOp::Status => Reply::new(250, format!("2.0.0 {}", self.link_status(i))),
            LinkOp::Up => {
                if self.netlinks.list[i].dialer.is_up() {
                    return Reply::new(250, format!("2.0.0 link {name} is already up"));
                }
                self.link_up(io, i, now);
                Reply::new(250, format!("2.0.0 link {name} up"))
            }
            LinkOp::Down => {
                let l = &mut self.netlinks.list[i];
                if !l.dialer.down() {
                    return Reply::new(250, format!("2.0.0 link {name} is already down"));
                }
                l.since = self.time.unix;
                l.why = "etrnd link down".into();
                let dropped = l.pending.len();
                l.pending.clear();
                log::info!("link down name={name} actions-dropped={dropped}");
                self.links_changed();
                // What is still held behind it may call for a dial now.
                self.netlinks.check_at = Some(now);
                Reply::new(250, format!("2.0.0 link {name} down"))
            }
        }
    }

    /// One link's state for `link status`.
    fn link_status(&self, i: usize) -> String {
        let l = &self.netlinks.list[i];
        let sum = self.sched.held_sum(|k| self.behind(&l.name, k));
        let mut s = format!(
            "{} {} since {} ({}) held={} octets={} dials={}",
            l.name,
            if l.dialer.is_up() { "up" } else { "down" },
            crate::vocab::date::iso_date(l.since),
            l.why,
            sum.messages,
            sum.octets,
            l.dialer.dials()
        );
        if l.dialer.dialing() {
            s.push_str(" dialling");
        }
        if !l.pending.is_empty() || l.running {
            s.push_str(&format!(
                " actions-left={}",
                l.pending.len() + l.running as usize
            ));
        }
        s
    }

    /// The link comes up: held mail behind it first, then its actions.
    fn link_up(&mut self, io: &mut Io, i: usize, now: Instant) {
        let unix = self.time.unix;
        let actions = {
            let name = self.netlinks.list[i].name.clone();
            self.config.main.links.actions_for(&name)
        };
        let l = &mut self.netlinks.list[i];
        let (running, after_dial) = l.dialer.up();
        // The dial command may be the link itself (pppd): it is left to run.
        self.netlinks.orphans.extend(running.map(|c| (c, None)));
        l.since = unix;
        l.why = if after_dial {
            "etrnd link up, after a dial".into()
        } else {
            "etrnd link up".into()
        };
        l.pending = actions.into();
        let name = l.name.clone();
        self.links_changed();
        let links = &self.config.main.links;
        let pick = |k: &crate::sched::ThreadKey, _: &str| {
            links
                .targets
                .iter()
                .any(|(n, t)| *n == name && t.covers(&k.channel, &k.host))
        };
        let (loaded, _) =
            super::park::page_in_release(&mut self.spool, &mut self.sched, unix, pick);
        self.releasing.extend(loaded);
        let released = self.sched.release(pick);
        for key in self.sched.take_matched() {
            self.notes.request(&key, unix, "link", &name, 250);
        }
        log::info!(
            "link up name={name} released-messages={} actions={}",
            released.messages,
            self.netlinks.list[i].pending.len()
        );
        self.start_jobs(io, now);
        self.links_tick(io, now);
    }

    /// A link-up action ended.
    pub(super) fn link_action_done(&mut self, link: &str, r: &Reply) {
        if let Some(l) = self.netlinks.list.iter_mut().find(|l| l.name == link) {
            l.running = false;
        }
        log::info!("link action-done name={link} reply=\"{r}\"");
    }

    /// Whether the pace of the link `key` is behind lets `action` go now (a new
    /// connection, a message); if not, the job waits for the next second.
    pub(super) fn pace_allows(&mut self, jid: JobId, key: &ThreadKey, action: &Action) -> bool {
        let conn = match action {
            Action::Connect(_) => true,
            Action::Load(..) => false,
            _ => return true,
        };
        let pace = self.config.main.links.pace;
        let Some(name) = self.config.main.links.link_of(&key.channel, &key.host) else {
            return true;
        };
        let unix = self.time.unix;
        let Some(l) = self.netlinks.list.iter_mut().find(|l| l.name == name) else {
            return true;
        };
        if l.pace.0 != unix {
            l.pace = (unix, 0, 0);
        }
        let (limit, used) = if conn {
            (pace.conns, &mut l.pace.1)
        } else {
            (pace.msgs, &mut l.pace.2)
        };
        if limit == 0 || *used < limit {
            *used += 1;
            return true;
        }
        if !self.netlinks.paced.contains(&jid) {
            self.netlinks.paced.push(jid);
        }
        false
    }

    /// Every loop turn: paced jobs whose second came, the next link-up action of
    /// each link whose outbound mail is done, dials (start, exit, time-out), and the
    /// dial policy when held mail changed or its time came.
    pub(super) fn links_tick(&mut self, io: &mut Io, now: Instant) {
        // Killed ones stay listed (no deadline) until SIGCHLD reaps them.
        for (pid, kill_at) in &mut self.netlinks.orphans {
            if kill_at.is_some_and(|t| now >= t) {
                log::warn!("link dial-killed pid={pid}: it outlived SIGTERM");
                children::kill(*pid);
                *kill_at = None;
            }
        }
        if self.netlinks.list.is_empty() {
            return;
        }
        if !self.netlinks.paced.is_empty() {
            let paced = std::mem::take(&mut self.netlinks.paced);
            for jid in paced {
                self.act_paced(io, jid, now);
            }
        }
        for i in 0..self.netlinks.list.len() {
            self.next_action(i, now);
            self.watch_dial(i, now);
        }
        let msgs = self.sched.messages();
        let due = self.netlinks.check_at.is_some_and(|t| now >= t);
        if msgs != self.netlinks.seen_msgs || due {
            self.netlinks.seen_msgs = msgs;
            self.netlinks.check_at = None;
            for i in 0..self.netlinks.list.len() {
                self.dial_policy(i, now);
            }
        }
    }

    /// A child ended (SIGCHLD): dial commands stopped earlier are reaped; a running
    /// dial's exit is read by its link's turn in [`Core::links_tick`].
    pub(super) fn netlinks_reap(&mut self) {
        self.netlinks
            .orphans
            .retain(|&(pid, _)| children::try_reap(pid).is_none());
    }

    /// At shutdown: dial commands that were stopped and have not ended are killed
    /// (a running dial, which may be the link itself, is left alone).
    pub(super) fn links_stop(&mut self) {
        for (pid, kill_at) in std::mem::take(&mut self.netlinks.orphans) {
            if kill_at.is_some() {
                children::kill(pid);
            }
        }
    }

    /// When [`Core::links_tick`] has work by the clock.
    pub(super) fn links_timeout(&self, now: Instant) -> Option<Instant> {
        let mut t: Vec<Instant> = Vec::new();
        if !self.netlinks.paced.is_empty() {
            // The next second of the wall clock.
            t.push(now + Duration::from_millis(1000));
        }
        t.extend(self.netlinks.check_at);
        t.extend(self.netlinks.orphans.iter().filter_map(|(_, k)| *k));
        for l in &self.netlinks.list {
            if l.dialer.dialing() {
                // Its command's exit comes as SIGCHLD; its deadline by the clock.
                t.extend(l.dialer.wake_at());
            }
        }
        t.into_iter().min()
    }

    /// Starts link `i`'s next action once nothing behind it runs or waits.
    fn next_action(&mut self, i: usize, now: Instant) {
        let l = &self.netlinks.list[i];
        if !l.dialer.is_up() || l.running || l.pending.is_empty() || self.stopping {
            return;
        }
        let name = l.name.clone();
        if self.sched.busy(|k| self.behind(&name, k)) {
            return;
        }
        let Some(a) = self.netlinks.list[i].pending.pop_front() else {
            return;
        };
        log::info!(
            "link action-start name={name} action=\"{}\"",
            sanitize(a.to_string().as_bytes())
        );
        let (ask, server, port) = match a {
            LinkAction::Etrn {
                port,
                server,
                targets,
            } => (
                super::customer::Ask::Etrn(targets),
                server,
                port.unwrap_or(self.config.main.smtp_port),
            ),
            LinkAction::Atrn {
                port,
                server,
                domains,
            } => (
                super::customer::Ask::Atrn(domains),
                server,
                port.unwrap_or(crate::smtp::atrn::ODMR_PORT),
            ),
        };
        self.netlinks.list[i].running = true;
        if let Some(r) = self.customer_start(ask, server, port, (None, Some(name.clone())), now) {
            self.link_action_done(&name, &r);
        }
    }

    /// Link `i`'s dial: its command's exit, its deadline.
    fn watch_dial(&mut self, i: usize, now: Instant) {
        let l = &mut self.netlinks.list[i];
        let exited = l.dialer.child().and_then(children::try_reap);
        let failed = match exited {
            Some(status) => l.dialer.child_exited(status, now),
            None => None,
        };
        if let Some(f) = failed.or_else(|| l.dialer.tick(now)) {
            self.dial_failed(i, f, now);
        }
    }

    /// A dial failed: its command is stopped, and the policy looks again when the
    /// back-off ends.
    fn dial_failed(&mut self, i: usize, f: Failed, now: Instant) {
        if let Some(pid) = f.terminate {
            children::terminate(pid);
            self.netlinks
                .orphans
                .push((pid, Some(now + DIAL_KILL_GRACE)));
        }
        log::warn!(
            "link dial-failed name={} error=\"{}\" retry-in={}",
            self.netlinks.list[i].name,
            sanitize(f.why.as_bytes()),
            f.retry_in.as_secs()
        );
        let at = now + f.retry_in;
        self.netlinks.check_at = Some(self.netlinks.check_at.map_or(at, |t| t.min(at)));
    }

    /// Dials link `i` if it is down, may dial, and what is held behind it meets
    /// `LINK_DIAL_WHEN`.
    fn dial_policy(&mut self, i: usize, now: Instant) {
        let lc = &self.config.main.links;
        let l = &self.netlinks.list[i];
        if lc.dial.is_empty() || self.stopping {
            return;
        }
        if !l.dialer.may_dial(now) {
            // Backing off: the policy looks again when the back-off ends, whatever
            // else comes meanwhile.
            if let crate::machines::dialer::State::BackingOff { until } = l.dialer.state() {
                let at = *until;
                self.netlinks.check_at = Some(self.netlinks.check_at.map_or(at, |t| t.min(at)));
            }
            return;
        }
        let name = l.name.clone();
        // Mail waiting out a retry back-off is not counted until it is due.
        let (sum, next_due) = self
            .sched
            .dial_sum(|k| self.behind(&name, k), self.time.unix);
        let verdict = lc
            .dial_when
            .verdict(sum.messages, sum.octets, sum.oldest, self.time.unix);
        let why = match verdict {
            Ok(why) => why,
            Err(at) => {
                // Not yet: the age condition, or deferred mail, comes due by the clock.
                if let Some(at) = [at, next_due].into_iter().flatten().min() {
                    let at = now + Duration::from_secs(at.saturating_sub(self.time.unix));
                    self.netlinks.check_at = Some(self.netlinks.check_at.map_or(at, |t| t.min(at)));
                }
                return;
            }
        };
        let cmd = lc.dial.clone();
        let timeout = lc.dial_timeout;
        let spawned = children::spawn(&cmd, &[("ETRND_LINK", &name)], None);
        match &spawned {
            Ok(pid) => log::info!(
                "link dial name={name} reason={why} held={} octets={} pid={pid}",
                sum.messages,
                sum.octets,
            ),
            Err(e) => log::warn!(
                "link dial-spawn-failed name={name} command={} error=\"{e}\"",
                sanitize(cmd[0].as_bytes())
            ),
        };
        let started = spawned.map_err(|e| e.to_string());
        if let Some(f) = self.netlinks.list[i]
            .dialer
            .dial_started(started, now, timeout)
        {
            self.dial_failed(i, f, now);
        }
    }
}

/// How long changed notes wait before they are written (many ETRNs, one write).
const NOTES_EVERY: Duration = Duration::from_secs(5);

impl Core {
    /// Releases that delivered mail become notes; changed notes are written at most
    /// every [`NOTES_EVERY`] (and at shutdown).
    pub(super) fn notes_tick(&mut self, now: Instant) {
        while let Some((key, at)) = self.sched.poll_release_note() {
            self.notes.released(&key, at);
        }
        if !self.notes.dirty {
            return;
        }
        match self.notes_write_at {
            None => self.notes_write_at = Some(now + NOTES_EVERY),
            Some(t) if now >= t => self.write_notes(),
            Some(_) => {}
        }
    }

    /// Writes the notes now.
    pub(super) fn write_notes(&mut self) {
        self.notes_write_at = None;
        if let Err(e) = self.notes.write(self.spool.root()) {
            log::warn!("clients notes-write-failed error=\"{e}\"");
        }
    }
}

/// Writes `path` whole through a temporary file and a rename.
fn write_replace(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// The link states `POSTOFFICE/links` records: name, up, since (for `mailq` and
/// `etrnd route -R`, which run without the daemon). Bounded: at most
/// [`crate::config::links::MAX_LINKS`] lines of at most 200 octets are read.
pub fn read_states(postoffice: &Path) -> Vec<(String, bool, u64)> {
    let Ok(text) = std::fs::read_to_string(postoffice.join("links")) else {
        return Vec::new();
    };
    parse_states(&text)
}

/// For the commands that run without the daemon (`route -R`, `etrn`, `mailq`): the
/// link that what `covers` selects is behind, and whether it is down now by
/// `POSTOFFICE/links` (a link the file does not list is down: the daemon starts
/// with every link down).
pub fn offline_link(
    cfg: &crate::config::Config,
    covers: impl Fn(&LinkTarget) -> bool,
) -> Option<(String, bool)> {
    let targets = &cfg.main.links.targets;
    let behind: Vec<&str> = targets
        .iter()
        .filter(|(_, t)| covers(t))
        .map(|(n, _)| n.as_str())
        .collect();
    let first = behind.first()?;
    let states = read_states(&cfg.main.postoffice);
    let down = |n: &str| !states.iter().any(|(s, up, _)| s == n && *up);
    Some(match behind.iter().find(|n| down(n)) {
        Some(n) => (n.to_string(), true),
        None => (first.to_string(), false),
    })
}

/// Parses the text of `POSTOFFICE/links`; lines that do not parse are skipped.
pub fn parse_states(text: &str) -> Vec<(String, bool, u64)> {
    text.lines()
        .filter(|l| l.len() <= 200)
        .filter_map(|l| {
            let mut w = l.split(' ');
            let name = crate::config::links::link_name(w.next()?).ok()?;
            let up = match w.next()? {
                "up" => true,
                "down" => false,
                _ => return None,
            };
            let since = w.next()?.parse().ok()?;
            Some((name.to_string(), up, since))
        })
        .take(crate::config::links::MAX_LINKS)
        .collect()
}
