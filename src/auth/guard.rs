//! The auth helper ("guard"): a process forked before the daemon gives up its
//! privileges, which alone reads `db/secrets`, `TLS_CERT` and `TLS_KEY` once the
//! daemon serves. It checks presented secrets — a crypt(3) hash can cost tens of
//! milliseconds, which must never stall the one event loop — and hands the loop the
//! certificate and key again on reload. The paths are fixed when it starts: a
//! daemon that someone took over cannot ask it to read anything else.
//!
//! ```text
//!   daemon (loop, non-blocking socket)               guard (one request at a time; token
//!                                                     commands run beside, polled)
//!     "V <seq> P <hex user> <hex password>\n"  --->  verify
//!     "V <seq> C <hex user> <hex challenge> <digest>\n"
//!     "V <seq> D <hex user>\n"   (the domains of a user who authenticated before)
//!                             <---  "V <seq> ok [domain...]\n" | "V <seq> no\n"
//!                                 | "V <seq> unknown\n" (no such identity)
//!     "O <seq> <hex host> <port>\n" (the OAuth token of db/authinfo's entry)
//!                             <---  "O <seq> <hex token>\n" | "O <seq> - <hex why>\n"
//!     "R\n" (reload)          --->  re-read secrets, certificate, key
//!                             <---  "R ok <entries> <cram> <hex cert> <hex key>\n"
//!                                 | "R err <hex message>\n"
//! ```
//!
//! The guard sends one `R` line unasked when it starts. A bad reload keeps the
//! previous secrets in force (the daemon keeps its certificate). `O` replies come
//! when their command ends, possibly after later `V` and `R` replies: every reply
//! carries the sequence number it answers.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use super::base64::{hex_decode, hex_encode};
use super::secrets::Secrets;
use super::Check;
use super::Verdict;

/// Longest line either way: four files of at most [`MAX_FILE`] octets in hex fit.
pub const MAX_LINE: usize = 9 * MAX_FILE;
/// Largest certificate, key, `db/authinfo` or `db/tls_policy` file read.
pub const MAX_FILE: usize = 512 * 1024;

/// What the guard reads, fixed at start.
#[derive(Debug, Clone)]
pub struct GuardConf {
    /// `db/secrets`.
    pub secrets: PathBuf,
    /// The certificate chain, if any.
    pub cert: Option<PathBuf>,
    /// The key, if any.
    pub key: Option<PathBuf>,
    /// `db/authinfo` (client credentials).
    pub authinfo: PathBuf,
    /// `db/tls_policy`.
    pub tls_policy: PathBuf,
    /// Who may own the secrets file.
    pub owners: Vec<u32>,
    /// Whom token commands run as (`USER`'s uid and gid, when started as root).
    pub token_user: Option<(u32, u32)>,
}

/// What a (re)load gave.
#[derive(Clone, Default)]
pub struct Loaded {
    /// Entries in `db/secrets`.
    pub entries: usize,
    /// Whether any entry can answer CRAM-MD5.
    pub cram: bool,
    /// The certificate chain's PEM text.
    pub cert: Vec<u8>,
    /// The key's PEM text.
    pub key: Vec<u8>,
    /// `db/authinfo`'s text (empty when missing).
    pub authinfo: Vec<u8>,
    /// `db/tls_policy`'s text (empty when missing).
    pub tls_policy: Vec<u8>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Loaded(entries={} cram={})", self.entries, self.cram)
    }
}

/// A message from the guard.
#[derive(Debug)]
pub enum FromGuard {
    /// The verdict on request `seq`.
    Verdict(u64, Verdict),
    /// The token asked for with `seq`, or why there is none.
    Token(u64, Result<Vec<u8>, String>),
    /// A (re)load's outcome.
    Reload(Result<Loaded, String>),
}

fn read_file(p: &Option<PathBuf>, what: &str) -> Result<Vec<u8>, String> {
    match p {
        None => Ok(Vec::new()),
        Some(p) => {
            let f = std::fs::File::open(p).map_err(|e| format!("{what} {}: {e}", p.display()))?;
            let mut v = Vec::new();
            f.take(MAX_FILE as u64 + 1)
                .read_to_end(&mut v)
                .map_err(|e| format!("{what} {}: {e}", p.display()))?;
            if v.len() > MAX_FILE {
                return Err(format!(
                    "{what} {}: larger than {MAX_FILE} octets",
                    p.display()
                ));
            }
            Ok(v)
        }
    }
}

fn load(conf: &GuardConf) -> Result<(Secrets, Loaded), String> {
    let secrets = Secrets::load(&conf.secrets, &conf.owners).map_err(|errs| {
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let cert = read_file(&conf.cert, "TLS_CERT")?;
    let key = match &conf.key {
        Some(k) => super::secrets::read_key(k, &conf.owners)?,
        None => Vec::new(),
    };
    let private = |p: &PathBuf| -> Result<Vec<u8>, String> {
        let text = super::secrets::read_private(p, &conf.owners).map_err(|e| e.to_string())?;
        if text.len() > MAX_FILE {
            return Err(format!("{}: larger than {MAX_FILE} octets", p.display()));
        }
        Ok(text.into_bytes())
    };
    let loaded = Loaded {
        entries: secrets.entries.len(),
        cram: secrets.any_cram(),
        cert,
        key,
        authinfo: private(&conf.authinfo)?,
        tls_policy: private(&conf.tls_policy)?,
    };
    Ok((secrets, loaded))
}

fn reload_line(r: &Result<(Secrets, Loaded), String>) -> String {
    match r {
        Ok((_, l)) => {
            let blob = |b: &[u8]| {
                if b.is_empty() {
                    "-".to_string()
                } else {
                    hex_encode(b)
                }
            };
            format!(
                "R ok {} {} {} {} {} {}\n",
                l.entries,
                u8::from(l.cram),
                blob(&l.cert),
                blob(&l.key),
                blob(&l.authinfo),
                blob(&l.tls_policy),
            )
        }
        Err(e) => format!("R err {}\n", hex_encode(e.as_bytes())),
    }
}

/// Parses one request line into a check.
pub fn parse_request(line: &str) -> Option<(u64, Check)> {
    let mut w = line.split(' ');
    if w.next()? != "V" {
        return None;
    }
    let seq = w.next()?.parse().ok()?;
    let kind = w.next()?;
    let user = String::from_utf8(hex_decode(w.next()?)?).ok()?;
    let check = match kind {
        "P" => Check::Password {
            user,
            password: hex_decode(w.next()?)?,
        },
        "C" => Check::Cram {
            user,
            challenge: String::from_utf8(hex_decode(w.next()?)?).ok()?,
            digest: w.next()?.to_string(),
        },
        "D" => Check::Domains { user },
        _ => return None,
    };
    w.next().is_none().then_some((seq, check))
}

/// Parses a token request: `O <seq> <hex host> <port>`.
pub fn parse_token_request(line: &str) -> Option<(u64, String, u16)> {
    let mut w = line.split(' ');
    if w.next()? != "O" {
        return None;
    }
    let seq = w.next()?.parse().ok()?;
    let host = String::from_utf8(hex_decode(w.next()?)?).ok()?;
    let port = w.next()?.parse().ok()?;
    w.next().is_none().then_some((seq, host, port))
}

/// Renders a request line.
pub fn request_line(seq: u64, check: &Check) -> String {
    match check {
        Check::Password { user, password } => format!(
            "V {seq} P {} {}\n",
            hex_encode(user.as_bytes()),
            hex_encode(password)
        ),
        Check::Cram {
            user,
            challenge,
            digest,
        } => format!(
            "V {seq} C {} {} {digest}\n",
            hex_encode(user.as_bytes()),
            hex_encode(challenge.as_bytes())
        ),
        Check::Domains { user } => format!("V {seq} D {}\n", hex_encode(user.as_bytes())),
    }
}

/// Parses one line from the guard.
pub fn parse_reply(line: &str) -> Option<FromGuard> {
    let mut w = line.split(' ');
    match w.next()? {
        "V" => {
            let seq = w.next()?.parse().ok()?;
            match w.next()? {
                "ok" => Some(FromGuard::Verdict(
                    seq,
                    Verdict::Ok(w.map(str::to_string).collect()),
                )),
                "no" => Some(FromGuard::Verdict(seq, Verdict::No)),
                "unknown" => Some(FromGuard::Verdict(seq, Verdict::Unknown)),
                _ => None,
            }
        }
        "O" => {
            let seq = w.next()?.parse().ok()?;
            match w.next()? {
                "-" => {
                    let why = String::from_utf8(hex_decode(w.next()?)?).ok()?;
                    Some(FromGuard::Token(seq, Err(why)))
                }
                t => Some(FromGuard::Token(seq, Ok(hex_decode(t)?))),
            }
        }
        "R" => match w.next()? {
            "ok" => {
                let entries = w.next()?.parse().ok()?;
                let cram = w.next()? == "1";
                let blob = |s: &str| {
                    if s == "-" {
                        Some(Vec::new())
                    } else {
                        hex_decode(s)
                    }
                };
                let cert = blob(w.next()?)?;
                let key = blob(w.next()?)?;
                let authinfo = blob(w.next()?)?;
                let tls_policy = blob(w.next()?)?;
                Some(FromGuard::Reload(Ok(Loaded {
                    entries,
                    cram,
                    cert,
                    key,
                    authinfo,
                    tls_policy,
                })))
            }
            "err" => {
                let m = String::from_utf8(hex_decode(w.next()?)?).ok()?;
                Some(FromGuard::Reload(Err(m)))
            }
            _ => None,
        },
        _ => None,
    }
}

/// The auth helper's loop (in the process the supervisor forks for it): requests
/// are answered in turn, except token requests, whose commands run beside it (their
/// pipes polled with the socket), so a slow command holds up no AUTH check.
pub fn serve(sock: UnixStream, conf: &GuardConf) {
    use std::os::fd::AsRawFd;
    let mut current = load(conf);
    let mut out = match sock.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    };
    if out.write_all(reload_line(&current).as_bytes()).is_err() {
        return;
    }
    let mut sock = sock;
    let mut inbuf: Vec<u8> = Vec::new();
    let mut tokens = super::token::Tokens::default();
    loop {
        let now = std::time::Instant::now();
        let pipes = tokens.fds();
        let mut watch = vec![(sock.as_raw_fd(), libc::POLLIN)];
        watch.extend(pipes.iter().map(|&f| (f, libc::POLLIN)));
        let wait = tokens
            .deadline()
            .map_or(std::time::Duration::from_secs(3600), |d| {
                d.saturating_duration_since(now)
            });
        let ev = match crate::sys::poll_fds(&watch, wait) {
            Ok(ev) => ev,
            Err(_) => return,
        };
        let ready: Vec<_> = pipes
            .iter()
            .zip(&ev[1..])
            .filter(|(_, e)| **e != 0)
            .map(|(f, _)| *f)
            .collect();
        let mut replies = String::new();
        for (seq, got) in tokens.progress(&ready, std::time::Instant::now()) {
            replies.push_str(&token_reply(seq, got));
        }
        if ev[0] != 0 {
            // One read: the socket was readable, so it does not block.
            let mut buf = [0u8; 4096];
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => inbuf.extend_from_slice(&buf[..n]),
            }
            while let Some(i) = inbuf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = inbuf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&raw[..raw.len() - 1]).into_owned();
                match answer(&line, conf, &mut current, &mut tokens) {
                    Some(Some(r)) => replies.push_str(&r),
                    Some(None) => {}
                    None => return, // not the daemon speaking: stop
                }
            }
            if inbuf.len() > MAX_LINE {
                return;
            }
        }
        if !replies.is_empty() && out.write_all(replies.as_bytes()).is_err() {
            return;
        }
    }
}

/// The reply line to token request `seq`.
fn token_reply(seq: u64, got: Result<Vec<u8>, String>) -> String {
    match got {
        Ok(t) => format!("O {seq} {}\n", hex_encode(&t)),
        Err(why) => format!("O {seq} - {}\n", hex_encode(why.as_bytes())),
    }
}

/// One request line: its reply now, `Some(None)` when it comes later (a token
/// being fetched), `None` for a line the daemon never sends.
fn answer(
    line: &str,
    conf: &GuardConf,
    current: &mut Result<(Secrets, Loaded), String>,
    tokens: &mut super::token::Tokens,
) -> Option<Option<String>> {
    if line == "R" {
        let fresh = load(conf);
        let r = reload_line(&fresh);
        if fresh.is_ok() {
            *current = fresh;
        }
        return Some(Some(r));
    }
    if let Some((seq, host, port)) = parse_token_request(line) {
        let argv = current.as_ref().ok().and_then(|(_, l)| {
            let text = String::from_utf8_lossy(&l.authinfo);
            let a = super::authinfo::AuthInfo::parse(&conf.authinfo, &text).ok()?;
            match &a.lookup(&host, port)?.secret {
                super::authinfo::Secret::TokenCommand(argv) => Some(argv.clone()),
                super::authinfo::Secret::Password(_) => None,
            }
        });
        let got = match argv {
            Some(argv) => tokens.ask(seq, &argv, conf.token_user, std::time::Instant::now()),
            None => Some(Err(format!(
                "no token=| entry for [{host}]:{port} in db/authinfo"
            ))),
        };
        return Some(got.map(|g| token_reply(seq, g)));
    }
    let (seq, check) = parse_request(line)?;
    let v = match current {
        Ok((s, _)) => super::verify(s, &check),
        Err(_) => Verdict::No,
    };
    Some(Some(match v {
        Verdict::Ok(d) if d.is_empty() => format!("V {seq} ok\n"),
        Verdict::Ok(d) => format!("V {seq} ok {}\n", d.join(" ")),
        Verdict::No => format!("V {seq} no\n"),
        Verdict::Unknown => format!("V {seq} unknown\n"),
    }))
}

/// The daemon's end of the guard.
pub struct Guard {
    sock: mio::net::UnixStream,
    pid: i32,
    out: crate::buf::OutBuf,
    inbuf: Vec<u8>,
    next_seq: u64,
    /// The guard's socket failed: every check is a temporary failure.
    pub dead: bool,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Guard(pid={})", self.pid)
    }
}

impl Guard {
    /// The daemon's end of an auth helper the supervisor started, once its first
    /// load came (at start-up, before the loop runs).
    pub fn attach(ours: UnixStream, pid: i32) -> io::Result<(Guard, Result<Loaded, String>)> {
        ours.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        let mut first = Vec::new();
        let mut r = BufReader::new(&ours);
        (&mut r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut first)?;
        let text = String::from_utf8_lossy(&first);
        let loaded = match parse_reply(text.trim_end_matches('\n')) {
            Some(FromGuard::Reload(l)) => l,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the auth helper did not start (it said {} octets)",
                        first.len()
                    ),
                ))
            }
        };
        Ok((Guard::attach_later(ours, pid)?, loaded))
    }

    /// The daemon's end of an auth helper started again while the loop runs: its
    /// first load comes through [`Guard::read`] like a reload's.
    pub fn attach_later(ours: UnixStream, pid: i32) -> io::Result<Guard> {
        ours.set_nonblocking(true)?;
        Ok(Guard {
            sock: mio::net::UnixStream::from_std(ours),
            pid,
            out: crate::buf::OutBuf::new(),
            inbuf: Vec::new(),
            next_seq: 0,
            dead: false,
        })
    }

    /// The guard's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Its socket, for the poller.
    pub fn source(&mut self) -> &mut mio::net::UnixStream {
        &mut self.sock
    }

    /// Queues a check; returns its sequence number.
    pub fn ask(&mut self, check: &Check) -> u64 {
        self.next_seq += 1;
        let line = request_line(self.next_seq, check);
        self.out.extend_from_slice(line.as_bytes());
        self.flush();
        self.next_seq
    }

    /// Asks for the OAuth token of `db/authinfo`'s entry for `host` at `port`;
    /// returns the request's sequence number.
    pub fn ask_token(&mut self, host: &str, port: u16) -> u64 {
        self.next_seq += 1;
        let line = format!(
            "O {} {} {port}\n",
            self.next_seq,
            hex_encode(host.as_bytes())
        );
        self.out.extend_from_slice(line.as_bytes());
        self.flush();
        self.next_seq
    }

    /// Queues a reload.
    pub fn reload(&mut self) {
        self.out.extend_from_slice(b"R\n");
        self.flush();
    }

    /// Writes what it can.
    pub fn flush(&mut self) {
        if !self.dead && !self.out.write_to(&mut self.sock) {
            self.dead = true;
        }
    }

    /// Reads what the guard said.
    pub fn read(&mut self) -> Vec<FromGuard> {
        let mut buf = [0u8; 16384];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    self.dead = true;
                    break;
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    if self.inbuf.len() > MAX_LINE * 2 {
                        self.dead = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        let mut out = Vec::new();
        while let Some(i) = self.inbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.inbuf.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..i]);
            match parse_reply(&text) {
                Some(m) => out.push(m),
                None => log::error!("auth helper sent a line it should not"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_lines_round_trip() {
        let c = Check::Cram {
            user: "tim".into(),
            challenge: "<1.2@h>".into(),
            digest: "ab".repeat(16),
        };
        let (seq, back) = parse_request(request_line(7, &c).trim_end()).unwrap();
        assert_eq!((seq, back), (7, c));
        let p = Check::Password {
            user: "a b".into(),
            password: b"p w\n".to_vec(),
        };
        assert_eq!(parse_request(request_line(8, &p).trim_end()).unwrap().1, p);
        let d = Check::Domains {
            user: "cust".into(),
        };
        assert_eq!(parse_request(request_line(9, &d).trim_end()).unwrap().1, d);
        assert!(parse_request("V 1 D 6375 00").is_none());
        assert!(parse_request("V 1 X 00 00").is_none());
        assert!(matches!(
            parse_reply("V 3 ok a.dom @b.dom"),
            Some(FromGuard::Verdict(3, Verdict::Ok(d))) if d.len() == 2
        ));
        let l = Loaded {
            entries: 2,
            cram: true,
            cert: b"C".to_vec(),
            key: Vec::new(),
            authinfo: b"a u p\n".to_vec(),
            tls_policy: Vec::new(),
        };
        let line = reload_line(&Ok((Secrets::default(), l)));
        match parse_reply(line.trim_end()) {
            Some(FromGuard::Reload(Ok(l))) => {
                assert_eq!(
                    (l.entries, l.cram, l.cert, l.key),
                    (2, true, b"C".to_vec(), vec![])
                );
                assert_eq!(l.authinfo, b"a u p\n");
            }
            other => panic!("{other:?}"),
        }
    }
}
