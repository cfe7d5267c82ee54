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

/// Per-step timeout of the ETRN client.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// `EX_NOPERM`.
pub const NOPERM: i32 = 77;
/// `EX_TEMPFAIL`.
pub const TEMPFAIL: i32 = 75;

struct Conn {
    s: TcpStream,
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
}

fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut last = String::from("no address");
    for a in addrs {
        match TcpStream::connect_timeout(a, TIMEOUT) {
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
pub fn run(addrs: &[SocketAddr], helo: &str, targets: &[String], out: &mut impl Write) -> i32 {
    let s = match connect(addrs) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out, "etrn: cannot connect: {e}");
            return ex::UNAVAILABLE;
        }
    };
    let mut c = Conn {
        s,
        p: ReplyParser::default(),
    };
    let mut step = |c: &mut Conn| -> Result<i32, String> {
        let g = c.reply()?;
        if g.code != 220 {
            return Err(format!("greeting: {}", g.summary()));
        }
        let e = c.cmd(&format!("EHLO {helo}"))?;
        if e.code != 250 {
            let h = c.cmd(&format!("HELO {helo}"))?;
            if h.code != 250 {
                return Err(format!("HELO: {}", h.summary()));
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

/// How long `etrnd flush` waits for the daemon's answer.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// `etrnd flush [TARGET]`: asks the running daemon over its control socket (never by
/// signalling a pid read from a file) and prints its reply. Exit 0 for 2xx, 75 for
/// 4xx, 77 for 459/5xx, 69 if no daemon answers.
pub fn flush(cfg: &Config, target: Option<&str>, out: &mut impl Write) -> i32 {
    let request = match target {
        Some(t) => format!("flush {t}\n"),
        None => "flush\n".to_string(),
    };
    let control = cfg.main.postoffice.join("control");
    match control_request(&control, request.as_bytes(), CONTROL_TIMEOUT) {
        Ok(reply) => {
            let text = String::from_utf8_lossy(&reply);
            let line = text.trim_end();
            let _ = writeln!(out, "{line}");
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            match code {
                200..=299 => ex::OK,
                459 | 500..=599 => NOPERM,
                _ => TEMPFAIL,
            }
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "flush: etrnd is not running or does not answer ({}: {e})",
                control.display()
            );
            ex::UNAVAILABLE
        }
    }
}

/// Sends one request datagram to the daemon's control socket from a socket of our
/// own (in the temporary directory, writable so a daemon running as `USER` can
/// answer) and waits for the reply.
fn control_request(control: &Path, request: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixDatagram;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let me = std::env::temp_dir().join(format!("etrnd-flush.{}.{nanos}", std::process::id()));
    let _ = std::fs::remove_file(&me);
    let sock = UnixDatagram::bind(&me)?;
    struct Unlink<'a>(&'a Path);
    impl Drop for Unlink<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _unlink = Unlink(&me);
    std::fs::set_permissions(&me, std::fs::Permissions::from_mode(0o666))?;
    sock.set_read_timeout(Some(timeout))?;
    sock.send_to(request, control)?;
    let mut buf = vec![0u8; 4096];
    let n = sock.recv(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}
