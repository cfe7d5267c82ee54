//! `$MAILSHARE/scheduler.conf` in ZMailer's format (reference/zmailer.md §3), with the
//! deliberate fixes of DESIGN.md §4.4.
//!
//! * A token starting in column 0 is a selector `channel/host` (shell globs; no `/`
//!   means `channel/*`) or a `PARAMname=value` global; tokens after white space are
//!   parameters `keyword` or `keyword=value` (spaces allowed around `=`), several per
//!   line, on as many lines as needed.
//! * Values are a word or a double-quoted string with `\` escapes; backslash-newline
//!   inside quotes continues the value.
//! * `*/*` (or `*`) is the defaults block: every clause after it starts from a copy
//!   of its values; flags are additive. A selector with no parameters shares the next
//!   clause's. The first matching clause wins; the defaults block never matches.
//! * Keywords are case-insensitive; globs are case-sensitive.
//! * Intervals accept compound forms (`1h30m` = 5400 s), which ZMailer mis-parses;
//!   `retries` must be a non-empty list of positive integers (at most 100).

use std::path::Path;
use std::time::Duration;

use super::lex::ConfigError;
pub use super::transport::{parse_command, EightBit, SmtpOptions, Transport};

/// Why no transport would deliver to a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoTransport {
    /// No clause matches `channel/host`.
    NoClause(String),
    /// The clause at `line` matches but neither it nor a later matching clause has a
    /// `command`.
    NoCommand {
        /// `channel/host`.
        dest: String,
        /// The clause.
        selector: String,
        /// Its line.
        line: usize,
    },
}

impl std::fmt::Display for NoTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoTransport::NoClause(d) => write!(f, "no scheduler.conf clause matches {d}"),
            NoTransport::NoCommand {
                dest,
                selector,
                line,
            } => write!(
                f,
                "scheduler.conf clause '{selector}' (line {line}) matches {dest} but has no \
                 command, and no later clause matching it has one"
            ),
        }
    }
}

/// The parameters of a clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Base retry unit.
    pub interval: Duration,
    /// Multipliers of `interval`.
    pub retries: Vec<u32>,
    /// Bounce after this age once an attempt was made.
    pub expiry: Option<Duration>,
    /// Extra grace after `expiry` that applies even without attempts.
    pub expiry2: Option<Duration>,
    /// Concurrent jobs of one channel (0: unlimited).
    pub maxchannel: u32,
    /// Concurrent jobs of one clause and channel (0: unlimited).
    pub maxring: u32,
    /// Concurrent jobs in all (0: unlimited); taken from the defaults block.
    pub maxta: u32,
    /// Concurrent jobs of one thread (channel, host).
    pub maxthr: u32,
    /// Never started by arrival or timer: only ETRN, flush or expiry.
    pub queueonly: bool,
    /// Deliver in arrival order (always true here: ids sort by arrival).
    pub ageorder: bool,
    /// How long an idle connection is kept for reuse.
    pub idlemax: Duration,
    /// When to send delay notices (age of the message).
    pub reporttimes: Vec<Duration>,
    /// The transport, raw command text kept for `etrnd route`.
    pub command: Option<(Transport, String)>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            interval: Duration::from_secs(3600),
            retries: Vec::new(),
            expiry: None,
            expiry2: None,
            maxchannel: 0,
            maxring: 0,
            maxta: 0,
            maxthr: 1,
            queueonly: false,
            ageorder: false,
            idlemax: Duration::from_secs(3 * 3600),
            reporttimes: Vec::new(),
            command: None,
        }
    }
}

/// One `channel/host` clause, as the scheduler matches it. A clause of the file
/// that has no `command` appears once per later clause that has one (its parameters,
/// that clause's command, matching where both selectors match) and a last time with
/// no command at all (what matches there has no transport: a configuration error
/// that [`SchedulerConf::check_destination`] reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// The selector as written.
    pub selector: String,
    /// Line of the selector.
    pub line: usize,
    channel: Glob,
    host: Glob,
    /// The clause of the file that gave the command, when it is a later one: its
    /// selector, line and globs.
    pub command_from: Option<(String, usize)>,
    command_globs: Option<(Glob, Glob)>,
    /// The thread group (`maxring` counts per ring and channel): the index of the
    /// file's clause, shared by its expansions.
    pub ring: usize,
    /// Its parameters.
    pub params: Params,
}

impl Clause {
    fn matches(&self, channel: &str, host: &str) -> bool {
        self.channel.matches(channel)
            && self.host.matches(host)
            && self
                .command_globs
                .as_ref()
                .is_none_or(|(c, h)| c.matches(channel) && h.matches(host))
    }
}

/// The parsed file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SchedulerConf {
    /// Clauses in file order (the defaults block excluded).
    pub clauses: Vec<Clause>,
    /// `maxta` from the defaults block.
    pub maxta: u32,
}

/// The file used when `scheduler.conf` does not exist: the clauses of ZMailer's
/// shipped `scheduler.conf.in` whose transports etrnd has (no `sm` programs, no LMTP
/// `smtp-lmtp`, no `-S` `smtp-tls` yet). There is no catch-all: a route to a channel
/// not listed here is a configuration error, never sent as plain SMTP.
pub const BUILTIN: &str = r#"
*/*         interval=1m idlemax=4m expiry=5d expiry2=2d
            retries="1 1 2 3 5 8 13 21 34" maxchannel=0 maxring=20 maxta=0
hold/*      interval=5m maxchannel=1 command=hold
local/*     interval=5m idlemax=9m expiry=5d maxchannel=15 maxring=5 command=mailbox
smtp/*      maxchannel=199 maxring=50 command="smtp -s"
smtp-par/*  maxchannel=999 maxring=50 maxthr=10 interval=1m retries="1 1"
            command="smtp -c smtp-par -s"
smtp-log/*  maxchannel=199 maxring=50 command="smtp -c $channel -s -l ${LOGDIR}/smtp-log"
smtp-etrn/* maxchannel=199 maxring=20 interval=1h retries="12" queueonly
            command="smtp -c $channel -s"
smtpx/*     maxchannel=90 maxring=10 command="smtp -c $channel -x -s"
smtpxw/*    maxchannel=90 maxring=10 command="smtp -c $channel -x -w 1200 -s"
smtp77/*    maxchannel=199 maxring=50 command="smtp -c $channel -77 -s"
smtp77x/*   maxchannel=199 maxring=50 command="smtp -c $channel -77 -x -s"
smtp8/*     maxchannel=199 maxring=50 command="smtp -c $channel -8 -s"
smtp8x/*    maxchannel=199 maxring=50 command="smtp -c $channel -8 -x -s"
error/*     interval=5m idlemax=2m maxchannel=5 command=errormail
"#;

impl SchedulerConf {
    /// The first clause matching `channel`/`host`, with its index.
    pub fn clause_for(&self, channel: &str, host: &str) -> Option<(usize, &Clause)> {
        self.clauses
            .iter()
            .enumerate()
            .find(|(_, c)| c.matches(channel, host))
    }

    /// Whether the clause of `channel`/`host` holds its mail until a release: a
    /// queue-only clause, or the `hold` transport (mail for ATRN).
    pub fn holds(&self, channel: &str, host: &str) -> bool {
        self.clause_for(channel, host).is_some_and(|(_, c)| {
            c.params.queueonly || matches!(c.params.command, Some((Transport::Hold, _)))
        })
    }

    /// The transport that would deliver to `channel`/`host`, or why there is none.
    pub fn check_destination(&self, channel: &str, host: &str) -> Result<&Transport, NoTransport> {
        match self.clause_for(channel, host) {
            Some((_, c)) => match &c.params.command {
                Some((t, _)) => Ok(t),
                None => Err(NoTransport::NoCommand {
                    dest: format!("{channel}/{host}"),
                    selector: c.selector.clone(),
                    line: c.line,
                }),
            },
            None => Err(NoTransport::NoClause(format!("{channel}/{host}"))),
        }
    }

    /// Replaces each clause without a command by its expansions (see [`Clause`]).
    fn expand_commands(&mut self) {
        let file = std::mem::take(&mut self.clauses);
        for (i, c) in file.iter().enumerate() {
            let mut c = c.clone();
            c.ring = i;
            if c.params.command.is_some() {
                self.clauses.push(c);
                continue;
            }
            for later in file[i + 1..].iter().filter(|l| l.params.command.is_some()) {
                let mut e = c.clone();
                e.params.command = later.params.command.clone();
                e.command_from = Some((later.selector.clone(), later.line));
                e.command_globs = Some((later.channel.clone(), later.host.clone()));
                self.clauses.push(e);
            }
            self.clauses.push(c);
        }
    }

    /// The built-in clauses ([`BUILTIN`]).
    pub fn builtin(logdir: &str) -> SchedulerConf {
        SchedulerConf::parse(Path::new("scheduler.conf"), BUILTIN, logdir)
            .expect("the built-in clauses parse")
    }

    /// Parses the file.
    pub fn parse(path: &Path, text: &str, logdir: &str) -> Result<SchedulerConf, Vec<ConfigError>> {
        Parser {
            path,
            logdir,
            errors: Vec::new(),
        }
        .run(text)
    }
}

/// A shell glob in ZMailer's dialect: `*`, `?`, `[set]`, `[^set]`, `\x`, and `{a,b}`
/// as the last element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// Whether `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        glob_match(self.0.as_bytes(), s.as_bytes())
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob_match(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob_match(&p[1..], &s[1..]),
        Some(b'{') => {
            let end = p.iter().position(|&c| c == b'}').unwrap_or(p.len());
            let inner = &p[1..end];
            inner
                .split(|&c| c == b',')
                .any(|alt| alt == s && end + 1 >= p.len())
        }
        Some(b'[') => {
            let Some(close) = p[1..].iter().position(|&c| c == b']').map(|i| i + 1) else {
                return !s.is_empty() && s[0] == b'[' && glob_match(&p[1..], &s[1..]);
            };
            let (neg, set) = match p[1] {
                b'^' | b'!' => (true, &p[2..close]),
                _ => (false, &p[1..close]),
            };
            !s.is_empty() && (set.contains(&s[0]) != neg) && glob_match(&p[close + 1..], &s[1..])
        }
        Some(b'\\') if p.len() > 1 => !s.is_empty() && s[0] == p[1] && glob_match(&p[2..], &s[1..]),
        Some(&c) => !s.is_empty() && s[0] == c && glob_match(&p[1..], &s[1..]),
    }
}

/// The longest interval accepted (ten years): times computed from it never overflow.
pub const MAX_INTERVAL: u64 = 3650 * 86_400;

/// Parses an interval: a bare number of seconds, or `<n><s|m|h|d>` pieces summed.
pub fn parse_interval(v: &str) -> Result<Duration, String> {
    if v.is_empty() {
        return Err("empty interval".into());
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return match v.parse::<u64>() {
            Ok(n) if n <= MAX_INTERVAL => Ok(Duration::from_secs(n)),
            _ => Err(format!("interval '{v}' is longer than 3650 days")),
        };
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in v.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' | 'S' => 1,
            'm' | 'M' => 60,
            'h' | 'H' => 3600,
            'd' | 'D' => 86_400,
            'w' | 'W' => 604_800,
            _ => return Err(format!("bad interval '{v}' (use 90, 15s, 5m, 1h30m, 5d)")),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("bad interval '{v}': a unit needs a number before it"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        num.clear();
    }
    if !num.is_empty() {
        return Err(format!(
            "bad interval '{v}': trailing number without a unit"
        ));
    }
    if total > MAX_INTERVAL {
        return Err(format!("interval '{v}' is longer than 3650 days"));
    }
    Ok(Duration::from_secs(total))
}

struct Parser<'a> {
    path: &'a Path,
    logdir: &'a str,
    errors: Vec<ConfigError>,
}

/// A token with its line and whether it started in column 0.
#[derive(Debug)]
struct Token {
    line: usize,
    col0: bool,
    key: String,
    value: Option<String>,
}

impl Parser<'_> {
    fn err(&mut self, line: usize, msg: impl Into<String>) {
        self.errors.push(ConfigError::at(self.path, line, msg));
    }

    fn tokens(&mut self, text: &str) -> Vec<Token> {
        let b: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        let mut line = 1;
        let mut col0 = true;
        while i < b.len() {
            let c = b[i];
            if c == '\n' {
                line += 1;
                col0 = true;
                i += 1;
                continue;
            }
            if c.is_whitespace() {
                col0 = false;
                i += 1;
                continue;
            }
            if c == '#' {
                while i < b.len() && b[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            let start_line = line;
            let at_col0 = col0;
            col0 = false;
            let mut key = String::new();
            while i < b.len() && !b[i].is_whitespace() && b[i] != '=' {
                key.push(b[i]);
                i += 1;
            }
            // Look past spaces for '='.
            let mut j = i;
            while j < b.len() && (b[j] == ' ' || b[j] == '\t') {
                j += 1;
            }
            let mut value = None;
            if j < b.len() && b[j] == '=' {
                i = j + 1;
                while i < b.len() && (b[i] == ' ' || b[i] == '\t') {
                    i += 1;
                }
                let mut v = String::new();
                if i < b.len() && b[i] == '"' {
                    i += 1;
                    let mut closed = false;
                    while i < b.len() {
                        match b[i] {
                            '\\' if i + 1 < b.len() => {
                                if b[i + 1] == '\n' {
                                    line += 1;
                                } else {
                                    v.push(b[i + 1]);
                                }
                                i += 2;
                            }
                            '"' => {
                                closed = true;
                                i += 1;
                                break;
                            }
                            '\n' => break,
                            ch => {
                                v.push(ch);
                                i += 1;
                            }
                        }
                    }
                    if !closed {
                        self.err(start_line, format!("missing closing quote in {key}="));
                    }
                } else {
                    while i < b.len() && !b[i].is_whitespace() {
                        v.push(b[i]);
                        i += 1;
                    }
                }
                value = Some(v);
            }
            out.push(Token {
                line: start_line,
                col0: at_col0,
                key,
                value,
            });
        }
        out
    }

    fn set(&mut self, p: &mut Params, t: &Token) {
        let kw = t.key.to_ascii_lowercase();
        let v = t.value.as_deref();
        let num = |v: Option<&str>| -> Result<u32, String> {
            let v = v.ok_or("needs a value")?;
            match v.parse::<i64>() {
                Ok(n) if n <= 0 => Ok(0),
                Ok(n) => Ok(n.min(i64::from(u32::MAX)) as u32),
                Err(_) => Err(format!("'{v}' is not a number")),
            }
        };
        let ival = |v: Option<&str>| -> Result<Duration, String> {
            parse_interval(v.ok_or("needs a value")?)
        };
        let r: Result<(), String> = (|| {
            match kw.as_str() {
                "interval" => p.interval = ival(v)?,
                "idlemax" => p.idlemax = ival(v)?,
                "expiry" => p.expiry = Some(ival(v)?),
                "expiry2" => p.expiry2 = Some(ival(v)?),
                "retries" => {
                    let list: Result<Vec<u32>, String> = v
                        .ok_or("needs a value")?
                        .split_whitespace()
                        .map(|x| match x.parse::<u32>() {
                            Ok(n) if n > 0 => Ok(n),
                            _ => Err(format!("retries: '{x}' is not a positive integer")),
                        })
                        .collect();
                    let list = list?;
                    if list.is_empty() || list.len() > 100 {
                        return Err("retries needs 1 to 100 positive integers".into());
                    }
                    p.retries = list;
                }
                "maxchannel" | "maxchannels" => p.maxchannel = num(v)?,
                "maxring" | "maxrings" => p.maxring = num(v)?,
                "maxta" | "maxtransport" | "maxtransports" => p.maxta = num(v)?,
                "maxthr" => p.maxthr = num(v)?.max(1),
                "queueonly" => p.queueonly = true,
                "ageorder" => p.ageorder = true,
                "reporttimes" => {
                    let list: Result<Vec<Duration>, String> = v
                        .ok_or("needs a value")?
                        .split_whitespace()
                        .map(parse_interval)
                        .collect();
                    let list = list?;
                    if list.len() > 4 {
                        return Err("reporttimes takes at most 4 intervals".into());
                    }
                    p.reporttimes = list;
                }
                "command" => {
                    let c = v.ok_or("needs a value")?;
                    p.command = Some((parse_command(c, self.logdir)?, c.to_string()));
                }
                // Accepted for compatibility; they tune ZMailer's process model.
                "overfeed" | "skew" | "user" | "group" | "priority" | "nice" | "syspriority"
                | "sysnice" | "wakeuprestartonly" | "bychannel" | "deliveryform" | "expiryform" => {
                }
                _ => return Err(format!("unknown keyword '{}'", t.key)),
            }
            Ok(())
        })();
        if let Err(e) = r {
            self.err(t.line, e);
        }
    }

    fn run(mut self, text: &str) -> Result<SchedulerConf, Vec<ConfigError>> {
        let tokens = self.tokens(text);
        let mut conf = SchedulerConf::default();
        let mut defaults = Params::default();
        // Selectors waiting for the next clause with parameters.
        let mut heads: Vec<(String, usize)> = Vec::new();
        let mut current: Option<Params> = None;
        let mut in_defaults = false;
        let flush = |heads: &mut Vec<(String, usize)>,
                     current: &mut Option<Params>,
                     in_defaults: bool,
                     defaults: &mut Params,
                     conf: &mut SchedulerConf| {
            let Some(p) = current.take() else { return };
            if in_defaults {
                *defaults = p;
                conf.maxta = defaults.maxta;
                heads.clear();
                return;
            }
            for (sel, line) in heads.drain(..) {
                let (c, h) = sel.split_once('/').unwrap_or((sel.as_str(), "*"));
                conf.clauses.push(Clause {
                    selector: sel.clone(),
                    line,
                    channel: Glob(c.to_string()),
                    host: Glob(h.to_string()),
                    command_from: None,
                    command_globs: None,
                    ring: 0,
                    params: p.clone(),
                });
            }
        };
        for t in &tokens {
            if t.col0 {
                if t.key.len() > 5
                    && t.key
                        .get(..5)
                        .is_some_and(|k| k.eq_ignore_ascii_case("PARAM"))
                {
                    continue; // global assignments: accepted, none affect etrnd
                }
                // The clause before this selector is complete (a no-op if it had
                // no parameters yet: bare selectors wait for the next clause's).
                flush(
                    &mut heads,
                    &mut current,
                    in_defaults,
                    &mut defaults,
                    &mut conf,
                );
                let sel = match &t.value {
                    Some(v) => format!("{}={v}", t.key),
                    None => t.key.clone(),
                };
                in_defaults = sel == "*/*" || sel == "*";
                if in_defaults {
                    heads.clear();
                } else {
                    heads.push((sel, t.line));
                }
                continue;
            }
            if heads.is_empty() && !in_defaults {
                self.err(t.line, format!("parameter '{}' before any selector", t.key));
                continue;
            }
            let mut p = current.take().unwrap_or_else(|| {
                if in_defaults {
                    Params::default()
                } else {
                    defaults.clone()
                }
            });
            self.set(&mut p, t);
            current = Some(p);
        }
        if current.is_none() && !heads.is_empty() {
            // Trailing bare selectors take the defaults.
            current = Some(defaults.clone());
        }
        flush(
            &mut heads,
            &mut current,
            in_defaults,
            &mut defaults,
            &mut conf,
        );
        if self.errors.is_empty() {
            conf.expand_commands();
            Ok(conf)
        } else {
            Err(self.errors)
        }
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
