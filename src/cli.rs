//! Command line: getopts into raw arguments, then checked [`Options`] (ripgrep's
//! low/high split). Global options come before the command, the command's own after.

use std::path::PathBuf;

/// sysexits(3) codes used by etrnd.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Command line usage error.
    pub const USAGE: i32 = 64;
    /// Data format error.
    pub const DATAERR: i32 = 65;
    /// Service unavailable.
    pub const UNAVAILABLE: i32 = 69;
    /// Operating system error.
    pub const OSERR: i32 = 71;
    /// Cannot create a file.
    pub const CANTCREAT: i32 = 73;
    /// Configuration error.
    pub const CONFIG: i32 = 78;
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the daemon.
    Daemon,
    /// Check the configuration (`-n`).
    Check,
    /// List the queue.
    Mailq {
        /// `-j`: one JSON object per message.
        json: bool,
    },
    /// Queue shape per destination and age.
    Qshape,
    /// Local submission with sendmail's options.
    Sendmail(Vec<String>),
    /// Ask our own daemon to deliver now: a target (by ETRN) or everything not held.
    Flush(Option<String>),
    /// Send ETRN to a server.
    Etrn {
        /// `-p`: the server's port.
        port: Option<u16>,
        /// The server (name or address).
        server: String,
        /// What to ask for.
        targets: Vec<String>,
    },
    /// ODMR customer: ask SERVER for our held mail with ATRN (through the daemon).
    Atrn {
        /// `-p`: the server's port (else 366).
        port: Option<u16>,
        /// The server (name or address).
        server: String,
        /// The domains (none: all of ours).
        domains: Vec<String>,
    },
    /// `link up|down|status [NAME]`: tell the daemon about a link, or ask.
    Link {
        /// `up`, `down` or `status`.
        op: String,
        /// The link (none: `default`; for status, every link).
        name: Option<String>,
    },
    /// Per held destination: what is held, and who released it last.
    Clients,
    /// `config`: the effective `etrnd.conf`, with where each value came from.
    Config,
    /// `newaliases` (also `sendmail -bi`): check the aliases and have a running
    /// daemon read them again.
    Newaliases,
    /// `hoststat`, `purgestat`: sendmail's host status, which etrnd does not keep.
    NoHostStatus(String),
    /// `secret [-s SCHEME]`: a `db/secrets` value for a password read on stdin.
    Secret(Vec<String>),
    /// `queue delete|hold|release|requeue SELECTION`: the words after `queue`.
    Queue(Vec<String>),
    /// Show how addresses route; with `resolve` (`-R`) also the next hops.
    Route {
        /// `-R`: resolve the next hop of each remote route.
        resolve: bool,
        /// The addresses.
        addrs: Vec<String>,
    },
}

/// Checked options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-f`, else `ETRND_CONF` when invoked under another name, else the default.
    pub config: PathBuf,
    /// `-d`: stay in the foreground and log to stderr.
    pub foreground: bool,
    /// Number of `-v`.
    pub verbosity: usize,
    /// The command.
    pub command: Command,
}

/// The one-line usage message.
pub const USAGE: &str = "usage: etrnd [-dhnvV] [-f file] [config | newaliases | secret [-s scheme] | mailq [-j] | qshape | clients | queue delete|hold|release|requeue id ...|-d domain|ALL | link up|down|status [name] | route [-R] address ... | sendmail [-t] [-i] [-f sender] [address ...] | flush [target] | etrn [-p port] server target ... | atrn [-p port] server [domain ...]]";

/// `etrnd -h`: every command with what it does.
pub const HELP: &str = "\
usage: etrnd [-dhnvV] [-f file] [command ...]

  etrnd [-d] [-v...]          run the daemon (-d: in the foreground, logging to stderr)
  etrnd -n                    check every configuration file and exit
  etrnd -V                    print the version and exit
  etrnd -h                    print this summary
  config                      print the effective etrnd.conf and where each value came from
  newaliases                  check the aliases and have the daemon read them again
  secret [-s scheme]          read a password on stdin, print its db/secrets value
                              ({CRAM-MD5} by default; yescrypt, bcrypt, sha512, sha256)
  mailq [-j]                  list the queue (-j: one JSON object per message)
  qshape                      messages waiting per destination and age (held, and the rest)
  clients                     per held destination: what is held, last request and release
  queue delete|hold|release|requeue id ...|-d domain|ALL
                              delete, hold, release or requeue messages
  flush [target]              ask the daemon to deliver now (target as ETRN takes it)
  link up|down|status [name]  tell the daemon a link is up or down, or show the links
  etrn [-p port] server target ...
                              send ETRN to a server and print its replies
  atrn [-p port] server [domain ...]
                              ask a provider for our held mail with ATRN (RFC 2645)
  route [-R] address ...      show how addresses route (-R: and the next hops)
  sendmail [-t] [-i] [-f sender] [-F name] [-bm|-bp|-bs|-bi|-bv] [-q] [address ...]
                              submit a message (also invoked as sendmail; mailq too)

Invoked as sendmail, send-mail, mailq, newaliases, hoststat or purgestat (Debian's
alternatives, the BSDs' mailwrapper), it does what sendmail does under that name, with
the configuration from ETRND_CONF; only etrnd itself starts the daemon.

Global options come before the command: -f file (the configuration), -v (more logging).
See etrnd(8).";

/// `etrnd -V`.
pub fn version() -> String {
    format!(
        "etrnd {}{}",
        env!("CARGO_PKG_VERSION"),
        if cfg!(feature = "tls") {
            " (tls)"
        } else {
            " (no tls)"
        }
    )
}

/// Parses `args` (program name first). `Err` carries a message for stderr and the
/// exit code.
pub fn parse(args: &[String]) -> Result<Options, (String, i32)> {
    let prog = args
        .first()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or("etrnd");
    if let Some(command) = as_named(prog, args.get(1..).unwrap_or_default())? {
        let config = match std::env::var_os("ETRND_CONF") {
            Some(p) => PathBuf::from(p),
            None => crate::config::main_conf::default_path(),
        };
        return Ok(Options {
            config,
            foreground: false,
            verbosity: 0,
            command,
        });
    }
    let mut opts = getopts::Options::new();
    opts.parsing_style(getopts::ParsingStyle::StopAtFirstFree);
    opts.optflag("d", "", "stay in the foreground, log to stderr");
    opts.optflagmulti("v", "", "more verbose logging");
    opts.optflag("n", "", "check the configuration and exit");
    opts.optflag("h", "", "help");
    opts.optflag("V", "", "version");
    opts.optopt("f", "", "configuration file", "FILE");
    let m = opts
        .parse(args.get(1..).unwrap_or_default())
        .map_err(|e| (format!("etrnd: {e}\n{USAGE}"), exit::USAGE))?;
    if m.opt_present("h") {
        return Err((HELP.to_string(), exit::OK));
    }
    if m.opt_present("V") {
        return Err((version(), exit::OK));
    }
    let config = match m.opt_str("f") {
        Some(f) => PathBuf::from(f),
        None => match std::env::var_os("ETRND_CONF") {
            Some(p) if prog != "etrnd" => PathBuf::from(p),
            _ => crate::config::main_conf::default_path(),
        },
    };
    let free = m.free.clone();
    let command = match free.first().map(String::as_str) {
        None if m.opt_present("n") => Command::Check,
        None => Command::Daemon,
        Some(_) if m.opt_present("n") => {
            return Err((format!("etrnd: -n takes no command\n{USAGE}"), exit::USAGE))
        }
        Some("mailq") => mailq_args(&free[1..])?,
        Some("qshape") if free.len() == 1 => Command::Qshape,
        Some("clients") if free.len() == 1 => Command::Clients,
        Some("config") if free.len() == 1 => Command::Config,
        Some("newaliases") if free.len() == 1 => Command::Newaliases,
        Some("secret") => Command::Secret(free[1..].to_vec()),
        Some("link")
            if (2..=3).contains(&free.len())
                && ["up", "down", "status"].contains(&free[1].as_str()) =>
        {
            Command::Link {
                op: free[1].clone(),
                name: free.get(2).cloned(),
            }
        }
        Some("sendmail") => Command::Sendmail(free[1..].to_vec()),
        Some("queue") => Command::Queue(free[1..].to_vec()),
        Some("flush") if free.len() <= 2 => Command::Flush(free.get(1).cloned()),
        Some(verb @ ("etrn" | "atrn")) => {
            let mut rest: Vec<String> = free[1..].to_vec();
            let mut port = None;
            if rest.first().is_some_and(|a| a.starts_with("-p")) {
                let a = rest.remove(0);
                let v = if a.len() > 2 {
                    a[2..].to_string()
                } else if rest.is_empty() {
                    String::new()
                } else {
                    rest.remove(0)
                };
                port = Some(v.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    (
                        format!("etrnd: {verb}: bad port '{v}'\n{USAGE}"),
                        exit::USAGE,
                    )
                })?);
            }
            if verb == "atrn" {
                if rest.is_empty() {
                    return Err((format!("etrnd: atrn needs a server\n{USAGE}"), exit::USAGE));
                }
                Command::Atrn {
                    port,
                    server: rest[0].clone(),
                    domains: rest[1..].to_vec(),
                }
            } else {
                if rest.len() < 2 {
                    return Err((
                        format!("etrnd: etrn needs a server and a target\n{USAGE}"),
                        exit::USAGE,
                    ));
                }
                Command::Etrn {
                    port,
                    server: rest[0].clone(),
                    targets: rest[1..].to_vec(),
                }
            }
        }
        Some("route") if free.len() > 1 => {
            let resolve = free[1] == "-R";
            let addrs = free[if resolve { 2 } else { 1 }..].to_vec();
            if addrs.is_empty() {
                return Err((
                    format!("etrnd: route needs an address\n{USAGE}"),
                    exit::USAGE,
                ));
            }
            Command::Route { resolve, addrs }
        }
        Some(other) => {
            return Err((
                format!("etrnd: unknown command or arguments '{other}'\n{USAGE}"),
                exit::USAGE,
            ))
        }
    };
    Ok(Options {
        config,
        foreground: m.opt_present("d"),
        verbosity: m.opt_count("v"),
        command,
    })
}

/// `mailq [-j]`.
/// The names Debian's alternatives and the BSDs' mailwrapper(8) run the MTA as
/// (argv[0] kept): what each does. `None`: the name is etrnd's own. No name but
/// `etrnd` ever starts the daemon.
fn as_named(prog: &str, rest: &[String]) -> Result<Option<Command>, (String, i32)> {
    Ok(Some(match prog {
        "sendmail" | "send-mail" => Command::Sendmail(rest.to_vec()),
        "mailq" => mailq_args(rest)?,
        "newaliases" => Command::Newaliases,
        "hoststat" | "purgestat" => Command::NoHostStatus(prog.to_string()),
        p if p.starts_with("etrnd") => return Ok(None),
        p => {
            return Err((
                format!(
                    "etrnd: invoked as '{p}': the names are etrnd, sendmail, send-mail, mailq, \
                     newaliases, hoststat and purgestat"
                ),
                exit::USAGE,
            ))
        }
    }))
}

fn mailq_args(args: &[String]) -> Result<Command, (String, i32)> {
    match args {
        [] => Ok(Command::Mailq { json: false }),
        [j] if j == "-j" => Ok(Command::Mailq { json: true }),
        _ => Err((format!("mailq: usage: mailq [-j]\n{USAGE}"), exit::USAGE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, (String, i32)> {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&v)
    }

    #[test]
    fn daemon_and_flags() {
        let o = p(&["etrnd", "-d", "-vv", "-f", "x.conf"]).unwrap();
        assert_eq!(o.command, Command::Daemon);
        assert!(o.foreground);
        assert_eq!(o.verbosity, 2);
        assert_eq!(o.config, PathBuf::from("x.conf"));
    }

    #[test]
    fn commands() {
        assert_eq!(p(&["etrnd", "-n"]).unwrap().command, Command::Check);
        assert_eq!(
            p(&["etrnd", "mailq"]).unwrap().command,
            Command::Mailq { json: false }
        );
        assert_eq!(
            p(&["/usr/bin/mailq"]).unwrap().command,
            Command::Mailq { json: false }
        );
        assert_eq!(
            p(&["/usr/sbin/sendmail", "-f", "me@x", "-t"])
                .unwrap()
                .command,
            Command::Sendmail(vec!["-f".into(), "me@x".into(), "-t".into()])
        );
        assert_eq!(
            p(&["etrnd", "-f", "c.conf", "sendmail", "-f", "me@x", "you@y"])
                .unwrap()
                .command,
            Command::Sendmail(vec!["-f".into(), "me@x".into(), "you@y".into()])
        );
        assert_eq!(
            p(&["etrnd", "-f", "c", "route", "a@b", "c@d"])
                .unwrap()
                .command,
            Command::Route {
                resolve: false,
                addrs: vec!["a@b".into(), "c@d".into()]
            }
        );
        assert_eq!(
            p(&["etrnd", "route", "-R", "a@b"]).unwrap().command,
            Command::Route {
                resolve: true,
                addrs: vec!["a@b".into()]
            }
        );
    }

    #[test]
    fn flush_and_etrn() {
        assert_eq!(
            p(&["etrnd", "flush"]).unwrap().command,
            Command::Flush(None)
        );
        assert_eq!(
            p(&["etrnd", "flush", "mail.isp.dom"]).unwrap().command,
            Command::Flush(Some("mail.isp.dom".into()))
        );
        assert_eq!(
            p(&["etrnd", "etrn", "-p", "2525", "hub", "client.dom", "@x"])
                .unwrap()
                .command,
            Command::Etrn {
                port: Some(2525),
                server: "hub".into(),
                targets: vec!["client.dom".into(), "@x".into()]
            }
        );
        assert_eq!(p(&["etrnd", "etrn", "hub"]).unwrap_err().1, exit::USAGE);
        assert_eq!(
            p(&["etrnd", "atrn", "-p", "3366", "hub", "a.dom", "b.dom"])
                .unwrap()
                .command,
            Command::Atrn {
                port: Some(3366),
                server: "hub".into(),
                domains: vec!["a.dom".into(), "b.dom".into()],
            }
        );
        assert_eq!(
            p(&["etrnd", "atrn", "hub"]).unwrap().command,
            Command::Atrn {
                port: None,
                server: "hub".into(),
                domains: vec![],
            }
        );
        assert_eq!(p(&["etrnd", "atrn"]).unwrap_err().1, exit::USAGE);
        assert_eq!(
            p(&["etrnd", "atrn", "-p", "0", "hub"]).unwrap_err().1,
            exit::USAGE
        );
        assert_eq!(
            p(&["etrnd", "etrn", "-p", "x", "hub", "t"]).unwrap_err().1,
            exit::USAGE
        );
    }

    #[test]
    fn usage_errors_are_64() {
        assert_eq!(p(&["etrnd", "-x"]).unwrap_err().1, exit::USAGE);
        assert_eq!(p(&["etrnd", "bogus"]).unwrap_err().1, exit::USAGE);
        assert_eq!(p(&["etrnd", "route"]).unwrap_err().1, exit::USAGE);
        assert_eq!(p(&["etrnd", "route", "-R"]).unwrap_err().1, exit::USAGE);
        assert_eq!(p(&["etrnd", "-n", "mailq"]).unwrap_err().1, exit::USAGE);
        assert_eq!(p(&["etrnd", "-h"]).unwrap_err().1, exit::OK);
    }
}
