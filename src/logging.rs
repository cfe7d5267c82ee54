//! The `log` backend: stderr with a timestamp in the foreground (`-d`), syslog facility
//! mail with ident `etrnd` and the pid otherwise; and the sanitiser every peer-supplied
//! string passes through before it reaches a log line.

use std::io::Write;

/// Longest peer string written to a log line.
pub const MAX_LOGGED: usize = 200;

/// Makes a peer string safe to log: control characters and non-ASCII become `?` (or
/// `\xNN`), quotes are escaped, and the result is capped at [`MAX_LOGGED`] octets.
pub fn sanitize(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_LOGGED));
    for &b in s {
        if out.len() >= MAX_LOGGED {
            out.push_str("...");
            break;
        }
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

struct StderrLogger {
    level: log::LevelFilter,
}

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let stamp = crate::smtp::trace::iso_date(now.as_secs());
        let _ = writeln!(
            std::io::stderr().lock(),
            "{stamp}.{:03} etrnd[{}]: {}: {}",
            now.subsec_millis(),
            std::process::id(),
            r.level().as_str().to_ascii_lowercase(),
            r.args()
        );
    }

    fn flush(&self) {}
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
    if log::set_boxed_logger(Box::new(StderrLogger { level })).is_ok() {
        log::set_max_level(level);
    }
}

/// Logs to syslog, facility mail, ident `etrnd` with the pid; `socket` names the
/// syslog socket when it is not in a usual place. Falls back to stderr when no syslog
/// socket exists.
pub fn init_syslog(level: log::LevelFilter, socket: Option<&std::path::Path>) {
    let formatter = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_MAIL,
        hostname: None,
        process: "etrnd".into(),
        pid: std::process::id(),
    };
    let logger = match socket {
        Some(p) => syslog::unix_custom(formatter, p),
        None => syslog::unix(formatter),
    };
    match logger {
        Ok(logger) => {
            if log::set_boxed_logger(Box::new(syslog::BasicLogger::new(logger))).is_ok() {
                log::set_max_level(level);
            }
        }
        Err(_) => init_stderr(level),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_controls_and_length() {
        assert_eq!(sanitize(b"a\r\nb\"c"), "a\\x0d\\x0ab\\\"c");
        assert_eq!(sanitize("é".as_bytes()), "\\xc3\\xa9");
        let long = vec![b'x'; 1000];
        assert!(sanitize(&long).len() <= MAX_LOGGED + 3);
    }
}
