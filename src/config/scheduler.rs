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

/// A built-in transport named by `command=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Outbound SMTP.
    Smtp {
        /// `-x`: no MX lookup.
        no_mx: bool,
        /// `-c CHANNEL` (informative: a job always serves its own thread's channel).
        channel: Option<String>,
        /// `-l FILE`: append a transcript (after `$`/`${…}` expansion).
        log: Option<String>,
    },
    /// Local mailbox delivery.
    Local,
    /// Bounce every recipient (the `error` channel).
    Errormail,
    /// Keep the mail until it expires.
    Hold,
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

/// One `channel/host` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// The selector as written.
    pub selector: String,
    /// Line of the selector.
    pub line: usize,
    channel: Glob,
    host: Glob,
    /// Its parameters.
    pub params: Params,
}

/// The parsed file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SchedulerConf {
    /// Clauses in file order (the defaults block excluded).
    pub clauses: Vec<Clause>,
    /// `maxta` from the defaults block.
    pub maxta: u32,
}

/// The file used when `scheduler.conf` does not exist: ZMailer's shipped clauses.
pub const BUILTIN: &str = r#"
*/*         interval=1m idlemax=4m expiry=5d expiry2=2d
            retries="1 1 2 3 5 8 13 21 34" maxchannel=0 maxring=20 maxta=0
smtp-etrn/* maxchannel=199 maxring=20 interval=1h retries="12" queueonly
            command="smtp -c $channel -s"
smtpx/*     maxchannel=90 maxring=10 command="smtp -c $channel -x -s"
smtp*/*     maxchannel=199 maxring=50 command="smtp -c $channel -s"
local/*     maxchannel=5 command=local
error/*     interval=5m idlemax=2m maxchannel=5 command=errormail
hold/*      interval=5m maxchannel=1 command=hold
"#;

impl SchedulerConf {
    /// The first clause matching `channel`/`host`, with its index.
    pub fn clause_for(&self, channel: &str, host: &str) -> Option<(usize, &Clause)> {
        self.clauses
            .iter()
            .enumerate()
            .find(|(_, c)| c.channel.matches(channel) && c.host.matches(host))
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

/// Parses an interval: a bare number of seconds, or `<n><s|m|h|d>` pieces summed.
pub fn parse_interval(v: &str) -> Result<Duration, String> {
    if v.is_empty() {
        return Err("empty interval".into());
    }
    if let Ok(n) = v.parse::<u64>() {
        return Ok(Duration::from_secs(n));
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
    Ok(Duration::from_secs(total))
}

/// Splits a command and checks it names a built-in transport; expands `${LOGDIR}`,
/// `$channel` and `${channel}` (the last two per thread at run time, so they stay).
pub fn parse_command(cmd: &str, logdir: &str) -> Result<Transport, String> {
    let expand = |w: &str| w.replace("${LOGDIR}", logdir);
    let words: Vec<String> = cmd
        .split_whitespace()
        .filter(|w| !w.contains('=') || w.starts_with('-'))
        .map(expand)
        .collect();
    let Some(prog) = words.first() else {
        return Err("empty command".into());
    };
    let name = prog.rsplit('/').next().unwrap_or(prog);
    match name {
        "smtp" => {
            let mut no_mx = false;
            let mut channel = None;
            let mut log = None;
            let mut it = words[1..].iter();
            while let Some(w) = it.next() {
                match w.as_str() {
                    "-x" => no_mx = true,
                    "-s" | "-X" | "-e" | "-r" | "-1" | "-6" | "-E" | "-P" | "-d" | "-v" => {}
                    "-c" => channel = Some(it.next().ok_or("-c needs a channel")?.clone()),
                    "-l" => log = Some(it.next().ok_or("-l needs a file")?.clone()),
                    "-p" | "-h" | "-L" | "-T" | "-w" | "-O" | "-Z" => {
                        it.next();
                    }
                    other if other.starts_with('-') => {
                        return Err(format!("smtp option '{other}' is not supported"))
                    }
                    // A trailing $host (per-host ring) is accepted.
                    _ => {}
                }
            }
            Ok(Transport::Smtp {
                no_mx,
                channel,
                log,
            })
        }
        "errormail" => Ok(Transport::Errormail),
        "hold" => Ok(Transport::Hold),
        "local" | "mailbox" => Ok(Transport::Local),
        other => Err(format!(
            "unknown transport program '{other}' (built in: smtp, local, errormail, hold)"
        )),
    }
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
            Ok(conf)
        } else {
            Err(self.errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<SchedulerConf, Vec<String>> {
        SchedulerConf::parse(Path::new("scheduler.conf"), t, "/var/log/etrnd")
            .map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn builtin_parses_and_matches() {
        let c = parse(BUILTIN).unwrap();
        let (_, etrn) = c.clause_for("smtp-etrn", "mail.client.dom").unwrap();
        assert!(etrn.params.queueonly);
        assert_eq!(etrn.params.interval, Duration::from_secs(3600));
        assert_eq!(etrn.params.retries, vec![12]);
        assert_eq!(
            etrn.params.expiry,
            Some(Duration::from_secs(5 * 86400)),
            "from */*"
        );
        assert_eq!(etrn.params.maxring, 20);
        let (_, smtp) = c.clause_for("smtp", "x.example").unwrap();
        assert_eq!(smtp.selector, "smtp*/*");
        assert!(!smtp.params.queueonly);
        assert_eq!(smtp.params.retries, vec![1, 1, 2, 3, 5, 8, 13, 21, 34]);
        assert!(matches!(
            c.clause_for("smtpx", "h").unwrap().1.params.command,
            Some((Transport::Smtp { no_mx: true, .. }, _))
        ));
        assert!(c.clause_for("nosuch", "h").is_none());
    }

    #[test]
    fn seed_clause_with_logdir() {
        let c = parse(
            "smtp-etrn/*\n\tmaxchannel=199\n\tmaxring=20\n\tinterval=1h\n\tretries=\"12\"\n\
             \tqueueonly\n\tcommand=\"smtp -s -c $channel -l ${LOGDIR}/smtp-etrn\"\n",
        )
        .unwrap();
        let p = &c.clauses[0].params;
        assert_eq!(
            p.command.as_ref().unwrap().0,
            Transport::Smtp {
                no_mx: false,
                channel: Some("$channel".into()),
                log: Some("/var/log/etrnd/smtp-etrn".into())
            }
        );
    }

    #[test]
    fn bare_selectors_share_the_next_clause_and_defaults_copy() {
        let c =
            parse("x/a\ny/b\n  maxthr=3\n*/* interval=10s queueonly\nz/* command=hold\n").unwrap();
        assert_eq!(c.clauses.len(), 3);
        assert_eq!(c.clauses[0].params.maxthr, 3);
        assert_eq!(c.clauses[1].params.maxthr, 3);
        assert_eq!(
            c.clauses[0].params.interval,
            Duration::from_secs(3600),
            "before */*"
        );
        assert_eq!(c.clauses[2].params.interval, Duration::from_secs(10));
        assert!(c.clauses[2].params.queueonly, "flags are additive from */*");
    }

    #[test]
    fn several_params_per_line_spaces_around_equals_and_case() {
        let c = parse("uucp/*  MAXCHANNEL = 5 command=\"hold\" Interval=90\n").unwrap();
        assert_eq!(c.clauses[0].params.maxchannel, 5);
        assert_eq!(c.clauses[0].params.interval, Duration::from_secs(90));
    }

    #[test]
    fn quoted_continuation_and_escapes() {
        let c = parse("a/* retries=\"1 2 \\\n 3\" command=\"smtp -l \\\"x\\\"\"\n").unwrap();
        assert_eq!(c.clauses[0].params.retries, vec![1, 2, 3]);
    }

    #[test]
    fn globs() {
        let g = |p: &str, s: &str| Glob(p.into()).matches(s);
        assert!(g("smtp*", "smtp-etrn"));
        assert!(g("*.{se,dk,is}", "mail.dk"));
        assert!(!g("*.{se,dk,is}", "mail.de"));
        assert!(g("[abc]x", "bx"));
        assert!(!g("[^abc]x", "bx"));
        assert!(g("a?c", "abc"));
        assert!(g("a\\*c", "a*c"));
        assert!(!g("a\\*c", "abc"));
        assert!(!g("Smtp", "smtp"), "case-sensitive");
    }

    #[test]
    fn compound_intervals() {
        assert_eq!(parse_interval("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_interval("1h5m20s").unwrap(),
            Duration::from_secs(3920)
        );
        assert_eq!(parse_interval("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_interval("5d").unwrap(), Duration::from_secs(432_000));
        assert!(parse_interval("5x").is_err());
        assert!(parse_interval("1h30").is_err());
        assert!(parse_interval("h").is_err());
    }

    #[test]
    fn errors_name_the_line() {
        let e =
            parse("a/*\n  retries=\"0 1\"\n  bogus=1\n  command=\"sendmail -t\"\n").unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("scheduler.conf:2:"));
        assert!(e[1].contains(":3: unknown keyword 'bogus'"));
        assert!(e[2].contains(":4: unknown transport program 'sendmail'"));
        let e = parse("  interval=1m\n").unwrap_err();
        assert!(e[0].contains("before any selector"));
        let e = parse("a/* command=\"smtp\n").unwrap_err();
        assert!(e[0].contains("missing closing quote"));
        let e = parse("a/* retries=\"\"\n").unwrap_err();
        assert!(e[0].contains("retries needs"));
    }

    #[test]
    fn odd_white_space_never_stalls_the_tokenizer() {
        // Found by fuzzing: a vertical tab or NEL made no progress.
        let c = parse("a/*\u{b}maxthr=2\n").unwrap();
        assert_eq!(c.clauses.len(), 1);
        assert_eq!(c.clauses[0].params.maxthr, 2, "a vertical tab separates");
        let c = parse("a/* \u{85}\n").unwrap();
        assert_eq!(c.clauses[0].selector, "a/*", "NEL is white space");
        for t in ["\u{a0}x\n", "=\n", "a/* =\n"] {
            let _ = parse(t); // returns, either way
        }
    }

    #[test]
    fn a_multibyte_character_where_param_would_end_is_a_selector() {
        // Found by fuzzing: slicing the first five octets cut "é" in half.
        let c = parse("PARA\u{e9}x\n").unwrap();
        assert_eq!(c.clauses[0].selector, "PARA\u{e9}x");
    }

    #[test]
    fn param_lines_are_accepted() {
        let c = parse("PARAMauthfile = \"/x\"\nPARAMmailqsock=UNIX:/y\na/* maxthr=2\n").unwrap();
        assert_eq!(c.clauses.len(), 1);
    }
}
