//! The `log` backend: stderr with a timestamp in the foreground (`-d`), syslog facility
//! mail with ident `etrnd` and the pid otherwise; and the sanitiser every peer-supplied
//! string passes through before it reaches a log line.

use std::io::Write;

pub use crate::vocab::MAX_LOGGED;

pub use crate::vocab::sanitize;

/// The one `log` backend: records at or above `level` go to stderr or to syslog.
struct Logger {
    level: log::LevelFilter,
    syslog: Option<Syslog>,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        match &self.syslog {
            Some(s) => s.log(r),
            None => log_stderr(r),
        }
    }

    fn flush(&self) {}
}

fn install(level: log::LevelFilter, syslog: Option<Syslog>) {
    if log::set_boxed_logger(Box::new(Logger { level, syslog })).is_ok() {
        log::set_max_level(level);
    }
}

/// A millisecond time stamp, the pid and the level, then the message.
fn log_stderr(r: &log::Record<'_>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = crate::vocab::date::iso_date(now.as_secs());
    // One write per line: formatting straight into stderr (unbuffered) costs a
    // system call per piece, a dozen per delivery line.
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let pid = *PID.get_or_init(std::process::id);
    let line = format!(
        "{stamp}.{:03} {}[{pid}]: {}: {}\n",
        now.subsec_millis(),
        tag(r.target()),
        r.level().as_str().to_ascii_lowercase(),
        r.args()
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The level for a count of `-v` flags: info, then debug, then trace.
pub fn level_for(verbosity: usize) -> log::LevelFilter {
    match verbosity {
        0 => log::LevelFilter::Info,
        1 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

/// Logs to stderr (foreground mode and the command-line tools).
pub fn init_stderr(level: log::LevelFilter) {
    install(level, None);
}

/// The usual places of the local syslog socket.
const SYSLOG_SOCKETS: [&str; 3] = ["/dev/log", "/var/run/syslog", "/var/run/log"];

/// Longest syslog datagram sent; longer lines are cut.
const MAX_SYSLOG_LINE: usize = 2048;

/// RFC 3164 lines, facility mail, to the local syslog socket. The socket never blocks:
/// a syslog daemon that stops reading must not stop the mail system, so a line that
/// does not fit is counted, and the count is logged once lines fit again.
struct Syslog {
    out: SyslogOut,
    path: std::path::PathBuf,
    pid: u32,
    /// Lines lost since the last that got through (32 bits: 32-bit MIPS and
    /// PowerPC have no 64-bit atomics).
    dropped: std::sync::atomic::AtomicU32,
}

/// The kind of socket the syslog daemon listens on.
enum SyslogOut {
    /// A datagram socket (journald, rsyslog, busybox and BSD syslogd): one line per
    /// datagram, sent to the path each time, so a restarted syslogd is found again.
    Datagram(std::os::unix::net::UnixDatagram),
    /// A stream socket (some syslog-ng setups): lines end in a newline; the connection
    /// is made again after an error.
    Stream(std::sync::Mutex<SyslogStream>),
}

#[derive(Default)]
struct SyslogStream {
    conn: Option<std::os::unix::net::UnixStream>,
    /// The unwritten end of a line the socket took only part of.
    rest: Vec<u8>,
}

impl SyslogStream {
    /// Writes as much of `data` as the socket takes now; false on an error.
    fn write_some(&mut self, data: &[u8]) -> Result<usize, ()> {
        use std::io::Write;
        let Some(c) = self.conn.as_mut() else {
            return Err(());
        };
        match c.write(data) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            Err(_) => {
                self.conn = None;
                self.rest.clear();
                Err(())
            }
        }
    }

    /// Sends one line (with its newline) unless the socket is full or gone.
    fn send(&mut self, path: &std::path::Path, line: &[u8]) -> bool {
        if self.conn.is_none() {
            let c = std::os::unix::net::UnixStream::connect(path)
                .and_then(|c| c.set_nonblocking(true).map(|()| c));
            match c {
                Ok(c) => self.conn = Some(c),
                Err(_) => return false,
            }
        }
        if !self.rest.is_empty() {
            let rest = std::mem::take(&mut self.rest);
            match self.write_some(&rest) {
                Ok(n) if n == rest.len() => {}
                Ok(n) => {
                    self.rest = rest[n..].to_vec();
                    return false;
                }
                Err(()) => return false,
            }
        }
        let mut data = line.to_vec();
        data.push(b'\n');
        match self.write_some(&data) {
            Ok(0) => false,
            Ok(n) => {
                // Part of the line went: the rest must follow before anything else.
                self.rest = data[n..].to_vec();
                true
            }
            Err(()) => false,
        }
    }
}

/// The services whose lines follow Postfix's (DESIGN.md §5.12): a record logged
/// with one of these as its target is tagged `etrnd/SERVICE`, so that pflogsumm
/// and its kind read it; every other line is tagged `etrnd`.
pub const SERVICES: [&str; 6] = ["smtpd", "smtp", "local", "pickup", "qmgr", "odmr"];

/// The syslog tag of a record's target.
fn tag(target: &str) -> std::borrow::Cow<'static, str> {
    match SERVICES.iter().find(|s| **s == target) {
        Some(s) => format!("etrnd/{s}").into(),
        None => "etrnd".into(),
    }
}

impl Syslog {
    fn send(&self, severity: u8, tag: &str, text: &str) -> bool {
        let line = format!(
            "<{}>{} {tag}[{}]: {}",
            2 * 8 + severity,
            syslog_stamp(),
            self.pid,
            text
        );
        let mut end = line.len().min(MAX_SYSLOG_LINE);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        let line = &line.as_bytes()[..end];
        match &self.out {
            SyslogOut::Datagram(s) => s.send_to(line, &self.path).is_ok(),
            SyslogOut::Stream(s) => match s.lock() {
                Ok(mut s) => s.send(&self.path, line),
                Err(_) => false,
            },
        }
    }
}

impl Syslog {
    fn log(&self, r: &log::Record<'_>) {
        use std::sync::atomic::Ordering;
        let severity = match r.level() {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 6,
            log::Level::Debug | log::Level::Trace => 7,
        };
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0
            && self.send(
                4,
                "etrnd",
                &format!("syslog dropped={dropped} (the syslog socket was full or gone)"),
            )
        {
            self.dropped.fetch_sub(dropped, Ordering::Relaxed);
        }
        if !self.send(severity, &tag(r.target()), &r.args().to_string()) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `Mmm dd hh:mm:ss` in local time (RFC 3164).
fn syslog_stamp() -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let [mon, day, h, m, s] = crate::sys::local_time(now);
    format!(
        "{} {day:>2} {h:02}:{m:02}:{s:02}",
        MONTHS[mon.min(11) as usize]
    )
}

/// A syslog socket that answered a probe, and whether it is a stream socket.
#[derive(Debug, Clone)]
pub struct SyslogTarget {
    path: std::path::PathBuf,
    stream: bool,
}

/// Finds the syslog socket: `SYSLOG_SOCKET`, else the first of the usual places that
/// is a socket and accepts us. Called before detaching, so that "no syslog" can be
/// said on the terminal; `Err` says what was tried.
pub fn syslog_target(socket: Option<&std::path::Path>) -> Result<SyslogTarget, String> {
    use std::os::unix::fs::FileTypeExt;
    let candidates: Vec<std::path::PathBuf> = match socket {
        Some(p) => vec![p.to_path_buf()],
        None => SYSLOG_SOCKETS
            .iter()
            .map(std::path::PathBuf::from)
            .collect(),
    };
    let mut tried = Vec::new();
    for path in candidates {
        let why = match std::fs::metadata(&path) {
            Err(e) => e.to_string(),
            Ok(m) if !m.file_type().is_socket() => "not a socket".to_string(),
            Ok(_) => {
                // A datagram socket cannot connect to a stream socket: that tells
                // the kind.
                let probe = std::os::unix::net::UnixDatagram::unbound()
                    .and_then(|probe| probe.connect(&path));
                match probe {
                    Ok(()) => {
                        return Ok(SyslogTarget {
                            path,
                            stream: false,
                        })
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
                        return Ok(SyslogTarget { path, stream: true })
                    }
                    Err(e) => e.to_string(),
                }
            }
        };
        tried.push(format!("{}: {why}", path.display()));
    }
    Err(tried.join("; "))
}

/// Logs to syslog (facility mail) through `target`; with none, to stderr (which a
/// detached daemon no longer has: the caller said so before detaching).
pub fn init_syslog(level: log::LevelFilter, target: Option<SyslogTarget>) {
    let sock = std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.set_nonblocking(true).map(|()| s));
    match (target, sock) {
        (Some(t), Ok(sock)) => {
            let out = if t.stream {
                SyslogOut::Stream(std::sync::Mutex::new(SyslogStream::default()))
            } else {
                SyslogOut::Datagram(sock)
            };
            let syslog = Syslog {
                out,
                path: t.path,
                pid: std::process::id(),
                dropped: std::sync::atomic::AtomicU32::new(0),
            };
            install(level, Some(syslog));
        }
        _ => install(level, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_controls_and_length() {
        assert_eq!(sanitize(b"a\r\nb\"c"), "a\\x0d\\x0ab\\\"c");
        // UTF-8 is shown as UTF-8 (SMTPUTF8 addresses); what is not UTF-8, and
        // what hides or reorders text, is not.
        assert_eq!(sanitize("jürgen@é.example".as_bytes()), "jürgen@é.example");
        assert_eq!(sanitize(b"\xc3\xa9\xff"), "é\\xff");
        assert_eq!(sanitize(b"\xc3"), "\\xc3");
        assert_eq!(
            sanitize("a\u{202e}b\u{200b}c\u{85}".as_bytes()),
            "a\\xe2\\x80\\xaeb\\xe2\\x80\\x8bc\\xc2\\x85"
        );
        let wide = "ü".repeat(300);
        let cut = sanitize(wide.as_bytes());
        assert!(cut.len() <= MAX_LOGGED + 4 && cut.ends_with("..."));
        let long = vec![b'x'; 1000];
        assert!(sanitize(&long).len() <= MAX_LOGGED + 3);
    }

    #[test]
    fn syslog_stamp_is_rfc3164() {
        let s = syslog_stamp();
        assert_eq!(s.len(), 15, "{s}");
        assert_eq!(&s[3..4], " ");
        assert_eq!(&s[9..10], ":");
        assert_eq!(&s[12..13], ":");
    }
}
