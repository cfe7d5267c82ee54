//! The client side of ETRN: `etrnd etrn SERVER TARGET…` asks a remote server (the
//! ISP's hub) to start its queue for us; `etrnd flush [TARGET]` asks our own daemon
//! over its control socket. Blocking I/O with
//! timeouts: these are one-shot commands, never part of the daemon's loop.
//!
//! Exit codes (DESIGN.md §3): 0 for 250–253, 75 for 4xx, 77 for 459 and 5xx refusals,
//! 69 if the server cannot be reached.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::cli::exit as ex;
use crate::config::Config;
use crate::smtp::client::{ReplyParser, ServerReply};
use crate::vocab::TlsLevel;

/// Per-step timeout of the ETRN client.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// `EX_NOPERM`.
pub const NOPERM: i32 = 77;
/// `EX_TEMPFAIL`.
pub const TEMPFAIL: i32 = 75;

/// What `etrnd etrn` needs of TLS and AUTH towards SERVER: the level (from
/// `db/tls_policy` for `[SERVER]:PORT` or SERVER, else `SMTP_TLS`), the certificate
/// check, and `db/authinfo`'s credentials.
#[derive(Debug, Clone)]
pub struct Security {
    /// Level, implicit TLS and credentials, as deliveries use them.
    pub client: crate::smtp::client::ClientSecurity,
    /// The certificate check and the name sent.
    #[cfg(feature = "tls")]
    pub check: Option<(crate::tls::Check, String)>,
    /// `SMTP_BIND`: the source addresses to connect from.
    pub bind: Vec<std::net::IpAddr>,
}

impl Security {
    /// Plaintext, no AUTH.
    pub fn none() -> Security {
        Security {
            client: crate::smtp::client::ClientSecurity::default(),
            #[cfg(feature = "tls")]
            check: None,
            bind: Vec::new(),
        }
    }
}

enum Stream {
    Plain(TcpStream),
    /// Only while TLS is being set up.
    #[cfg(feature = "tls")]
    Switching,
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Switching => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write_all(buf).and_then(|()| s.flush()),
            #[cfg(feature = "tls")]
            Stream::Switching => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

struct Conn {
    s: Stream,
    p: ReplyParser,
}

impl Conn {
    fn reply(&mut self) -> Result<ServerReply, String> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(r) = self.p.next_reply() {
                return r;
            }
            match self.s.read(&mut buf) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.p.feed(&buf[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn cmd(&mut self, line: &str) -> Result<ServerReply, String> {
        self.s
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        self.reply()
    }

    /// Turns the connection into TLS (after `220` to STARTTLS, or at once);
    /// returns the version and cipher.
    fn start_tls(&mut self, sec: &Security) -> Result<String, String> {
        #[cfg(feature = "tls")]
        {
            let Some((check, sni)) = sec.check.clone() else {
                return Err("no TLS plan".into());
            };
            let conn = crate::tls::client_connection(crate::tls::client_config(check), &sni)?;
            let Stream::Plain(sock) = std::mem::replace(&mut self.s, Stream::Switching) else {
                return Err("TLS is already on".into());
            };
            let mut tls = rustls::StreamOwned::new(conn, sock);
            // Drive the handshake now, so that its failure is reported as one.
            while tls.conn.is_handshaking() {
                tls.conn
                    .complete_io(&mut tls.sock)
                    .map_err(|e| format!("4.7.5 TLS handshake failed: {e}"))?;
            }
            let info = crate::tls::describe(&tls.conn).unwrap_or_default();
            self.s = Stream::Tls(Box::new(tls));
            Ok(info)
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = sec;
            Err("this etrnd was built without TLS".into())
        }
    }
}

/// What `etrnd etrn` uses towards `server` at `port`: `db/tls_policy` (else
/// `SMTP_TLS`) and `db/authinfo`, read under the secrets-file rule; a file that
/// cannot be read is reported on `err` and left out.
pub fn security_for(cfg: &Config, server: &str, port: u16, err: &mut impl Write) -> Security {
    use crate::auth::authinfo::AuthInfo;
    use crate::config::tls_policy::TlsPolicy;
    let db = cfg.main.mailvar.join("db");
    let mut owners = vec![0, crate::sys::euid()];
    if let Some((uid, _, _)) = cfg.main.user.as_deref().and_then(crate::sys::user) {
        owners.push(uid);
    }
    let mut warn = |e: Vec<crate::lex::ConfigError>| {
        for e in e {
            let _ = writeln!(err, "etrn: {e}");
        }
    };
    let authinfo = AuthInfo::load(&db.join("authinfo"), &owners).unwrap_or_else(|e| {
        warn(e);
        AuthInfo::default()
    });
    let policy = TlsPolicy::load(&db.join("tls_policy"), &owners).unwrap_or_else(|e| {
        warn(e);
        TlsPolicy::default()
    });
    let host = server
        .trim_start_matches('[')
        .split(']')
        .next()
        .unwrap_or(server)
        .to_ascii_lowercase();
    let p = policy.lookup(&host, port, &host).cloned();
    let level = p.as_ref().map_or(cfg.main.smtp_tls, |p| p.level);
    let implicit =
        level != TlsLevel::None && (p.as_ref().is_some_and(|p| p.implicit) || port == 465);
    let credentials = authinfo
        .lookup(&host, port)
        .map(crate::smtp::client::Credentials::from_entry);
    #[cfg(feature = "tls")]
    let check = {
        let matches = p.as_ref().map(|p| p.matches.clone()).unwrap_or_default();
        let roots = matches!(level, TlsLevel::Verify | TlsLevel::Secure)
            .then(|| crate::tls::roots(cfg.main.tls_ca_file.as_deref()))
            .and_then(|r| {
                r.map_err(|e| {
                    let _ = writeln!(err, "etrn: {e}");
                })
                .ok()
            });
        crate::tls::plan(level, &matches, &host, &host, roots)
    };
    Security {
        client: crate::smtp::client::ClientSecurity {
            level,
            implicit,
            credentials,
        },
        #[cfg(feature = "tls")]
        check,
        bind: cfg.main.smtp_bind.clone(),
    }
}

fn connect(addrs: &[SocketAddr], bind: &[std::net::IpAddr]) -> Result<TcpStream, String> {
    let mut last = String::from("no address");
    for a in addrs {
        let from = bind.iter().find(|ip| ip.is_ipv4() == a.is_ipv4()).copied();
        let opened = match from {
            None => TcpStream::connect_timeout(a, TIMEOUT),
            Some(ip) => crate::sys::connect_from(*a, Some(ip)).and_then(|s| {
                crate::sys::wait_connected(&s, TIMEOUT)?;
                s.set_nonblocking(false)?;
                Ok(s)
            }),
        };
        match opened {
            Ok(s) => {
                let _ = s.set_read_timeout(Some(TIMEOUT));
                let _ = s.set_write_timeout(Some(TIMEOUT));
                return Ok(s);
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(last)
}

/// The exit code for one ETRN reply.
pub fn code_for(r: &ServerReply) -> i32 {
    match r.code {
        250..=253 => ex::OK,
        400..=458 | 460..=499 => TEMPFAIL,
        _ => NOPERM,
    }
}

/// Connects to `addrs`, sends `ETRN t` for each target, prints each reply. Returns
/// the worst exit code.
pub fn run(
    addrs: &[SocketAddr],
    helo: &str,
    targets: &[String],
    sec: &Security,
    out: &mut impl Write,
) -> i32 {
    let s = match connect(addrs, &sec.bind) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out, "etrn: cannot connect: {e}");
            return ex::UNAVAILABLE;
        }
    };
    let mut c = Conn {
        s: Stream::Plain(s),
        p: ReplyParser::default(),
    };
    let mut step = |c: &mut Conn| -> Result<i32, String> {
        let mut tls = None;
        if sec.client.implicit {
            tls = Some(c.start_tls(sec)?);
        }
        let g = c.reply()?;
        if g.code != 220 {
            return Err(format!("greeting: {}", g.summary()));
        }
        let mut e = greet(c, helo)?;
        let level = sec.client.level;
        if tls.is_none() && level != TlsLevel::None {
            if has(&e, "STARTTLS") {
                let r = c.cmd("STARTTLS")?;
                if r.code == 220 {
                    if c.p.has_partial() {
                        return Err("4.7.0 the server sent data behind its 220 to STARTTLS".into());
                    }
                    tls = Some(c.start_tls(sec)?);
                    e = greet(c, helo)?;
                } else if level.mandatory() {
                    return Err(format!("4.7.4 STARTTLS: {}", r.summary()));
                }
            } else if level.mandatory() {
                return Err(format!(
                    "4.7.4 TLS is required (level {}) but the server does not offer STARTTLS",
                    level.name()
                ));
            }
        }
        if let Some(info) = &tls {
            let _ = writeln!(out, "etrn: TLS {info}");
        }
        // A token credential is the deliveries' (the auth helper runs its command).
        let password = sec
            .client
            .credentials
            .as_ref()
            .and_then(|c| match &c.secret {
                crate::smtp::client::ClientSecret::Password(p) => Some((&c.user, p)),
                crate::smtp::client::ClientSecret::Token(_) => None,
            });
        if let Some((user, pw)) = password {
            if tls.is_some() || level == TlsLevel::None {
                if let Some(mechs) = e.lines.iter().find_map(|l| {
                    let up = l.to_ascii_uppercase();
                    up.strip_prefix("AUTH ").map(str::to_string)
                }) {
                    authenticate(c, &mechs, user, pw)?;
                    let _ = writeln!(out, "etrn: authenticated as {user}");
                }
            }
        }
        let mut worst = ex::OK;
        for t in targets {
            let r = c.cmd(&format!("ETRN {t}"))?;
            let _ = writeln!(out, "{t}: {}", r.summary());
            let code = code_for(&r);
            if code != ex::OK && (worst == ex::OK || code == NOPERM) {
                worst = code;
            }
        }
        let _ = c.cmd("QUIT");
        Ok(worst)
    };
    match step(&mut c) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(out, "etrn: {e}");
            TEMPFAIL
        }
    }
}

fn greet(c: &mut Conn, helo: &str) -> Result<ServerReply, String> {
    let e = c.cmd(&format!("EHLO {helo}"))?;
    if e.code == 250 {
        return Ok(e);
    }
    let h = c.cmd(&format!("HELO {helo}"))?;
    if h.code != 250 {
        return Err(format!("HELO: {}", h.summary()));
    }
    Ok(h)
}

fn has(ehlo: &ServerReply, ext: &str) -> bool {
    ehlo.lines.iter().skip(1).any(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(ext))
    })
}

/// AUTH with the best of `mechs` (CRAM-MD5, PLAIN, LOGIN).
fn authenticate(c: &mut Conn, mechs: &str, user: &str, pw: &[u8]) -> Result<(), String> {
    use crate::auth::base64;
    use crate::smtp::sasl::{cram_response, plain_response};
    let offered = |m: &str| mechs.split_whitespace().any(|x| x == m);
    let fail = |r: &ServerReply| Err(format!("AUTH: {}", r.summary()));
    let r = if offered("CRAM-MD5") {
        let r = c.cmd("AUTH CRAM-MD5")?;
        if r.code != 334 {
            return fail(&r);
        }
        let chal = r.lines.first().map(String::as_str).unwrap_or("").trim();
        let resp = cram_response(user, pw, chal).ok_or("AUTH: bad CRAM-MD5 challenge")?;
        c.cmd(&resp)?
    } else if offered("PLAIN") {
        c.cmd(&format!("AUTH PLAIN {}", plain_response(user, pw)))?
    } else if offered("LOGIN") {
        let r = c.cmd("AUTH LOGIN")?;
        if r.code != 334 {
            return fail(&r);
        }
        let r = c.cmd(&base64::encode(user.as_bytes()))?;
        if r.code != 334 {
            return fail(&r);
        }
        c.cmd(&base64::encode(pw))?
    } else {
        return Ok(());
    };
    if r.code == 235 {
        Ok(())
    } else {
        fail(&r)
    }
}

/// How long `etrnd flush` waits for the daemon's answer.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// `etrnd flush [TARGET]`: asks the running daemon over its control socket (never by
/// signalling a pid read from a file) and prints its reply. Exit 0 for 2xx, 75 for
/// 4xx, 77 for 459/5xx, 69 if no daemon runs, 75 if it went away before answering.
pub fn flush(cfg: &Config, target: Option<&str>, out: &mut impl Write) -> i32 {
    let request = match target {
        Some(t) => format!("flush {t}\n"),
        None => "flush\n".to_string(),
    };
    let (code, line) = match ask_daemon(cfg, "flush", &request, CONTROL_TIMEOUT, out) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let _ = writeln!(out, "{line}");
    match code {
        200..=299 => ex::OK,
        459 | 500..=599 => NOPERM,
        _ => TEMPFAIL,
    }
}

/// Sends one request to the running daemon and returns its reply's code and line;
/// otherwise (after saying why on `out`) the exit code: 69 when no daemon runs, 75
/// when it went away or did not answer.
fn ask_daemon(
    cfg: &Config,
    verb: &str,
    request: &str,
    timeout: Duration,
    out: &mut impl Write,
) -> Result<(u16, String), i32> {
    let control = cfg.main.postoffice.join("control");
    let mut conn = match ControlConn::connect(&control) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(
                out,
                "{verb}: etrnd is not running ({}: {e})",
                control.display()
            );
            return Err(if no_daemon(&e) {
                ex::UNAVAILABLE
            } else {
                TEMPFAIL
            });
        }
    };
    match conn.ask(request.as_bytes(), None, timeout) {
        Ok(reply) => {
            let line = String::from_utf8_lossy(&reply).trim_end().to_string();
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            Ok((code, line))
        }
        Err(e) => {
            let _ = writeln!(out, "{verb}: {e} ({})", control.display());
            Err(TEMPFAIL)
        }
    }
}

/// `newaliases` (`etrnd newaliases`, `sendmail -bi`): the aliases were checked with
/// the rest of the configuration on the way here (a bad line is `file:line` and exit
/// 78 before this runs); a running daemon is asked to read them again. Exit 0 when it
/// did or when none runs (it reads them when it starts), 77 when this user may not
/// ask, 75 when the daemon kept its old configuration.
pub fn newaliases(cfg: &Config, out: &mut impl Write) -> i32 {
    let n = std::fs::read_to_string(cfg.main.mailvar.join("db/aliases"))
        .map(|t| {
            t.lines()
                .filter(|l| {
                    !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with([' ', '\t'])
                })
                .count()
        })
        .unwrap_or(0);
    let mut quiet = Vec::new();
    match ask_daemon(cfg, "newaliases", "reload", CONTROL_TIMEOUT, &mut quiet) {
        Ok((250, _)) => {
            let _ = writeln!(out, "newaliases: {n} aliases checked; etrnd reads them now");
            ex::OK
        }
        Ok((code, line)) => {
            let _ = writeln!(out, "newaliases: {n} aliases checked; {line}");
            if code >= 500 {
                NOPERM
            } else {
                TEMPFAIL
            }
        }
        Err(ex::UNAVAILABLE) => {
            let _ = writeln!(
                out,
                "newaliases: {n} aliases checked; etrnd is not running and reads them when it starts"
            );
            ex::OK
        }
        Err(code) => {
            let _ = out.write_all(&quiet);
            code
        }
    }
}

/// `etrnd link up|down|status [NAME]`: tells the running daemon (DESIGN.md §5.9)
/// and prints its reply, one line per link for `status`. Exit 0 for 2xx, 77 for a
/// refusal (not root, no such link), 69 if no daemon runs, 75 if it went away.
pub fn link(cfg: &Config, op: &str, name: Option<&str>, out: &mut impl Write) -> i32 {
    let request = match name {
        Some(n) => format!("link {op} {n}"),
        None => format!("link {op}"),
    };
    let (code, line) = match ask_daemon(cfg, "link", &request, CONTROL_TIMEOUT, out) {
        Ok(x) => x,
        Err(code) => return code,
    };
    match (code, line.strip_prefix("250 2.0.0 ")) {
        (250, Some(rest)) if op == "status" => {
            for l in rest.split("; ") {
                let _ = writeln!(out, "{l}");
            }
        }
        _ => {
            let _ = writeln!(out, "{line}");
        }
    }
    match code {
        200..=299 => ex::OK,
        500..=599 => NOPERM,
        _ => TEMPFAIL,
    }
}

pub use crate::smtp::atrn::ODMR_PORT;
/// How long `etrnd atrn` waits for the daemon's answer: the provider may take ten
/// minutes to answer ATRN, and then the held mail comes down the connection.
pub const ATRN_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// `etrnd atrn [-p PORT] SERVER [DOMAIN…]`: the running daemon connects to SERVER,
/// authenticates with our `db/authinfo` credentials, sends ATRN and takes the held
/// mail as a server on the same connection (DESIGN.md §5.8). Prints the daemon's
/// answer: how many messages came, or why none. Exit 0 for mail received or none
/// waiting (453), 75 for a temporary refusal, 77 for a policy refusal (530, 450 is
/// temporary), 69 if the server or the daemon cannot be reached.
pub fn atrn(
    cfg: &Config,
    port: u16,
    server: &str,
    domains: &[String],
    out: &mut impl Write,
) -> i32 {
    if let Err(e) = crate::smtp::atrn::parse_list(&domains.join(",")) {
        let _ = writeln!(
            out,
            "atrn: bad domain list ({e:?}): domains are host names like client.dom"
        );
        return ex::USAGE;
    }
    let request = format!("atrn {port} {server} {}", domains.join(" "));
    let (code, line) = match ask_daemon(cfg, "atrn", request.trim_end(), ATRN_TIMEOUT, out) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let _ = writeln!(out, "{line}");
    let unreachable = line.get(4..9) == Some("4.4.1");
    match code {
        200..=299 => ex::OK,
        _ if unreachable => ex::UNAVAILABLE,
        500..=599 => NOPERM,
        _ => TEMPFAIL,
    }
}

/// A connection to the running daemon's control socket (a Unix stream socket: the
/// daemon learns our uid from the kernel and answers on the same connection, so
/// nothing is left in the file system and the end of the daemon is seen at once).
pub struct ControlConn {
    stream: std::os::unix::net::UnixStream,
    buf: Vec<u8>,
}

/// Longest reply line read from the daemon.
const MAX_CONTROL_REPLY: usize = 64 * 1024;

impl ControlConn {
    /// Connects to the control socket at `control`. An error here means no daemon
    /// runs (no socket, or nobody on it): see [`no_daemon`].
    pub fn connect(control: &Path) -> std::io::Result<ControlConn> {
        Ok(ControlConn {
            stream: std::os::unix::net::UnixStream::connect(control)?,
            buf: Vec::new(),
        })
    }

    /// Sends one request line (with `fd` attached, if any) and waits up to
    /// `timeout` for the reply line. The daemon going away before it answers is
    /// an `UnexpectedEof` error.
    pub fn ask(
        &mut self,
        request: &[u8],
        fd: Option<std::os::fd::RawFd>,
        timeout: Duration,
    ) -> std::io::Result<Vec<u8>> {
        use std::os::fd::AsRawFd;
        let mut line = request.to_vec();
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        self.stream.set_write_timeout(Some(timeout))?;
        let sent = match fd {
            Some(fd) => crate::sys::send_fd_connected(self.stream.as_raw_fd(), &line[..1], fd)
                .and_then(|()| self.stream.write_all(&line[1..])),
            None => self.stream.write_all(&line),
        };
        if let Err(e) = sent {
            return Err(match e.raw_os_error() {
                Some(libc::EPIPE | libc::ECONNRESET) => std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "etrnd went away before it answered",
                ),
                _ => e,
            });
        }
        self.next_line(timeout)
    }

    /// Waits up to `timeout` for the next reply line (the rest of a reply whose
    /// first line was `250-…`).
    pub fn next_line(&mut self, timeout: Duration) -> std::io::Result<Vec<u8>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(self.buf.drain(..=i).collect());
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || self.buf.len() > MAX_CONTROL_REPLY {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "etrnd did not answer in time",
                ));
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "etrnd went away before it answered",
                    ))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "etrnd did not answer in time",
                    ))
                }
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "etrnd went away before it answered",
                    ))
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether a failed connection to the control socket says no daemon is there (no
/// socket, or nobody listening on it).
pub fn no_daemon(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ECONNREFUSED | libc::ENOTSOCK)
    )
}

/// One request to the daemon on a connection of its own (see [`ControlConn`]).
pub fn control_request(
    control: &Path,
    request: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    control_request_with(control, request, timeout, None)
}

/// [`control_request`] with a descriptor attached to the request.
pub fn control_request_with(
    control: &Path,
    request: &[u8],
    timeout: Duration,
    fd: Option<std::os::fd::RawFd>,
) -> std::io::Result<Vec<u8>> {
    ControlConn::connect(control)?.ask(request, fd, timeout)
}
