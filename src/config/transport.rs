//! The built-in transports a scheduler.conf `command=` names, and the flags of the
//! `smtp` transport (ZMailer's getopt string for the ones we implement; every other
//! flag is refused at load time).

/// How an smtp transport treats 8-bit content (`-8`, `-7`, `-77`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EightBit {
    /// Declare `BODY=8BITMIME` when the message was received as 8BITMIME and the
    /// server offers it.
    #[default]
    AsReceived,
    /// `-8`: declare `BODY=8BITMIME` for any message with 8-bit octets when the server
    /// offers it.
    Allow,
    /// `-7`: a 7-bit channel: never `BODY=8BITMIME`; a message with 8-bit octets is
    /// converted to 7-bit MIME, or bounced with 5.6.3 where it cannot be.
    Forbid,
    /// `-77`: as `-7`, and plain `HELO` instead of `EHLO`.
    ForbidNoEsmtp,
}

/// The options of an `smtp` transport command (ZMailer's getopt string for the flags
/// we implement; every other flag is refused at load time).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmtpOptions {
    /// `-x`: no MX lookup.
    pub no_mx: bool,
    /// `-c CHANNEL` (informative: a job always serves its own thread's channel).
    pub channel: Option<String>,
    /// `-l FILE`: append a transcript (after `${LOGDIR}` expansion; `$channel` and
    /// `${host}` are expanded per thread).
    pub log: Option<String>,
    /// `-p PORT`: the remote port when the route host has none (else `SMTP_PORT`).
    pub port: Option<u16>,
    /// `-h NAME`: the name we give in EHLO/HELO (else `HOSTNAME`).
    pub helo: Option<String>,
    /// `-8`, `-7`, `-77`.
    pub eight_bit: EightBit,
    /// `-w N`: the socket's send buffer in octets (SO_SNDBUF).
    pub sndbuf: Option<u32>,
    /// `-M`: speak LMTP (RFC 2033): LHLO, and one reply per recipient after the
    /// final dot.
    pub lmtp: bool,
    /// `-F DEST`: every message goes there, whatever the route's host.
    pub forced: Option<Forced>,
}

/// Where `-F` sends everything (ZMailer's scheduler.conf.in:
/// `smtp -c $channel -M -x -F UNIX:/var/imap/socket/lmtp -s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forced {
    /// `-F [address]:port` (or `[address]`, with `-p` or SMTP's port).
    Inet(std::net::SocketAddr),
    /// `-F UNIX:/path`: a local stream socket.
    Unix(std::path::PathBuf),
}

/// Longest unix socket path (`sun_path` is 104 octets on the BSDs, 108 on Linux,
/// with its NUL).
pub const MAX_SOCKET_PATH: usize = 103;

/// Parses `-F`'s argument.
fn parse_forced(a: &str, port: Option<u16>) -> Result<Forced, String> {
    if let Some(path) = a.strip_prefix("UNIX:").or_else(|| a.strip_prefix("unix:")) {
        if !path.starts_with('/') || path.len() > MAX_SOCKET_PATH || path.contains('\0') {
            return Err(format!(
                "smtp: -F '{a}': a socket is UNIX:/absolute/path of at most {MAX_SOCKET_PATH} octets"
            ));
        }
        return Ok(Forced::Unix(path.into()));
    }
    let bad = || format!("smtp: -F '{a}' is not [address]:port or UNIX:/path");
    let inner = a.strip_prefix('[').ok_or_else(bad)?;
    let (ip, rest) = inner.split_once(']').ok_or_else(bad)?;
    let ip: std::net::IpAddr = ip
        .strip_prefix("IPv6:")
        .unwrap_or(ip)
        .parse()
        .map_err(|_| bad())?;
    let port = match rest.strip_prefix(':') {
        Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(bad)?,
        None if rest.is_empty() => port.unwrap_or(25),
        None => return Err(bad()),
    };
    Ok(Forced::Inet(std::net::SocketAddr::new(ip, port)))
}

/// A built-in transport named by `command=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Outbound SMTP.
    Smtp(SmtpOptions),
    /// Local mailbox delivery.
    Local,
    /// Bounce every recipient (the `error` channel).
    Errormail,
    /// Keep the mail until it expires.
    Hold,
}

/// Flags of ZMailer's smtp transport that take an argument (its getopt string
/// `A:c:deh:l:p:rsvw:xXDEF:L:HMO:PS:T:VWZ:1678`), so bundles split the way it does.
const SMTP_FLAGS_WITH_ARG: &[u8] = b"AchlpwFLOSTZ";

/// Why a flag of ZMailer's smtp transport is refused, for the ones we know.
fn smtp_unsupported(flag: u8) -> &'static str {
    match flag {
        b'S' => "-S (STARTTLS settings file) is not supported yet",
        b'A' => "-A (SMTP AUTH secrets file) is not supported",
        b'L' => "-L (local bind address) is not supported",
        b'T' => "-T (timeouts) is not supported: etrnd uses RFC 5321's timeouts",
        b'e' | b'1' | b'6' | b'E' | b'H' | b'P' | b'r' | b'W' | b'O' | b'Z' | b'D' | b'd'
        | b'v' | b'V' => "is not supported",
        _ => "is not an option of the smtp transport",
    }
}

/// Splits a command and checks it names a built-in transport with options we
/// implement; expands `${LOGDIR}` (`$channel`, `${channel}` and
/// `${host}` stay: they are expanded per thread). Leading `NAME=value` words
/// (environment for ZMailer's programs) are skipped.
pub fn parse_command(cmd: &str, logdir: &str) -> Result<Transport, String> {
    let expand = |w: &str| w.replace("${LOGDIR}", logdir);
    let words: Vec<String> = cmd
        .split_whitespace()
        .skip_while(|w| w.contains('=') && !w.starts_with('-'))
        .map(expand)
        .collect();
    let Some(prog) = words.first() else {
        return Err("empty command".into());
    };
    let name = prog.rsplit('/').next().unwrap_or(prog);
    let args = &words[1..];
    match name {
        "smtp" => parse_smtp_args(args).map(Transport::Smtp),
        "errormail" | "hold" | "local" | "mailbox" => {
            // mailbox -8 (ZMailer's QP-to-8-bit decoding) is accepted: etrnd stores
            // every message as received and never converts it, in either direction.
            if let Some(a) = args.iter().find(|a| !(name == "mailbox" && *a == "-8")) {
                return Err(format!("{name}: '{a}' is not supported"));
            }
            Ok(match name {
                "errormail" => Transport::Errormail,
                "hold" => Transport::Hold,
                _ => Transport::Local,
            })
        }
        "sm" => Err(
            "the sm transport (sendmail-like programs: uucp, usenet, bitbucket, \
                     gateways) is not supported"
                .into(),
        ),
        other => Err(format!(
            "unknown transport program '{other}' (built in: smtp, local, mailbox, errormail, hold)"
        )),
    }
}

/// The arguments of an smtp command, as getopt(3) reads them: flags may be bundled
/// (`-8sl FILE`), a flag's argument is the rest of its word or the next word, `--`
/// ends the options, and one host operand (`$host`) may follow.
fn parse_smtp_args(args: &[String]) -> Result<SmtpOptions, String> {
    let mut o = SmtpOptions::default();
    let mut sevens = 0;
    let mut forced = None;
    let mut i = 0;
    while i < args.len() {
        let w = args[i].as_bytes();
        i += 1;
        if w == b"--" {
            break;
        }
        if w.len() < 2 || w[0] != b'-' {
            // The operand: ZMailer's optional host; only the per-thread `$host` fits.
            if args[i - 1] != "$host" {
                return Err(format!("smtp: unexpected argument '{}'", args[i - 1]));
            }
            continue;
        }
        let mut j = 1;
        while j < w.len() {
            let f = w[j];
            j += 1;
            let arg = if SMTP_FLAGS_WITH_ARG.contains(&f) {
                let a = if j < w.len() {
                    String::from_utf8_lossy(&w[j..]).into_owned()
                } else if i < args.len() {
                    i += 1;
                    args[i - 1].clone()
                } else {
                    return Err(format!("smtp: -{} needs an argument", f as char));
                };
                j = w.len();
                Some(a)
            } else {
                None
            };
            match (f, arg) {
                (b'x', _) => o.no_mx = true,
                (b'M', _) => o.lmtp = true,
                (b'F', Some(a)) => forced = Some(a),
                // -s: progress in the process title; -X: allow connecting to ourselves
                // with -x, which etrnd (like ZMailer today) always does.
                (b's' | b'X', _) => {}
                (b'8', _) => o.eight_bit = EightBit::Allow,
                (b'7', _) => {
                    sevens += 1;
                    o.eight_bit = if sevens > 1 {
                        EightBit::ForbidNoEsmtp
                    } else {
                        EightBit::Forbid
                    };
                }
                (b'c', Some(a)) => o.channel = Some(a),
                (b'l', Some(a)) => o.log = Some(a),
                (b'p', Some(a)) => match a.parse::<u16>() {
                    Ok(p) if p > 0 => o.port = Some(p),
                    _ => return Err(format!("smtp: -p '{a}' is not a port (1-65535)")),
                },
                (b'h', Some(a)) => match crate::vocab::Domain::parse(&a) {
                    Ok(_) => o.helo = Some(a.to_ascii_lowercase()),
                    Err(e) => return Err(format!("smtp: -h '{a}': {e}")),
                },
                (b'w', Some(a)) => match a.parse::<u32>() {
                    Ok(n) if (1024..=16 << 20).contains(&n) => o.sndbuf = Some(n),
                    _ => {
                        return Err(format!(
                            "smtp: -w '{a}' is not a buffer size (1024-16777216 octets)"
                        ))
                    }
                },
                (f, _) => {
                    return Err(format!("smtp: -{} {}", f as char, smtp_unsupported(f)));
                }
            }
        }
    }
    if i < args.len() {
        return Err(format!("smtp: unexpected argument '{}'", args[i]));
    }
    if let Some(a) = forced {
        o.forced = Some(parse_forced(&a, o.port)?);
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(cmd: &str) -> Result<SmtpOptions, String> {
        match parse_command(cmd, "/log")? {
            Transport::Smtp(o) => Ok(o),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn lmtp_to_a_socket_or_an_address_as_zmailer_writes_it() {
        let o = smtp("smtp -c $channel -M -x -F UNIX:/var/imap/socket/lmtp -s").unwrap();
        assert!(o.lmtp && o.no_mx);
        assert_eq!(o.forced, Some(Forced::Unix("/var/imap/socket/lmtp".into())));
        let o = smtp("smtp -M -F [127.0.0.1]:24").unwrap();
        assert_eq!(
            o.forced,
            Some(Forced::Inet("127.0.0.1:24".parse().unwrap()))
        );
        let o = smtp("smtp -p 2424 -F [IPv6:::1]").unwrap();
        assert_eq!(o.forced, Some(Forced::Inet("[::1]:2424".parse().unwrap())));
        for bad in [
            "smtp -M -F lmtp.example:24",
            "smtp -F UNIX:relative/path",
            "smtp -F [127.0.0.1]:0",
            "smtp -F [127.0.0.1]x",
            "smtp -F",
        ] {
            assert!(smtp(bad).is_err(), "{bad}");
        }
        let long = format!("smtp -F UNIX:/{}", "a".repeat(MAX_SOCKET_PATH));
        assert!(smtp(&long).is_err());
    }
}
