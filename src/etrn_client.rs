//! The client side of ETRN: `etrnd etrn SERVER TARGET…` asks a remote server (the
//! ISP's hub) to start its queue for us; `etrnd flush [TARGET]` asks our own daemon
//! (over its listener, or with SIGUSR1 for everything not held). Blocking I/O with
//! timeouts: these are one-shot commands, never part of the daemon's loop.
//!
//! Exit codes (DESIGN.md §3): 0 for 250–253, 75 for 4xx, 77 for 459 and 5xx refusals,
//! 69 if the server cannot be reached.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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

/// The addresses our own daemon listens on: what it wrote at startup, else `LISTEN`
/// (wildcards replaced by loopback).
pub fn own_listeners(cfg: &Config) -> Vec<SocketAddr> {
    let file = cfg.main.postoffice.join("listening");
    let mut v: Vec<SocketAddr> = std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if v.is_empty() {
        v = cfg.main.listen.clone();
    }
    for a in &mut v {
        if a.ip().is_unspecified() {
            let lo: std::net::IpAddr = if a.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            a.set_ip(lo);
        }
    }
    v
}

/// `etrnd flush` without a target: SIGUSR1 to the daemon named by `PIDFILE`.
pub fn flush_all(cfg: &Config, out: &mut impl Write) -> i32 {
    let pid = std::fs::read_to_string(&cfg.main.pidfile)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok());
    let Some(pid) = pid else {
        let _ = writeln!(
            out,
            "flush: etrnd is not running (no pid in {})",
            cfg.main.pidfile.display()
        );
        return ex::UNAVAILABLE;
    };
    match crate::sys::signal(pid, libc::SIGUSR1) {
        Ok(()) => {
            let _ = writeln!(
                out,
                "flush: asked etrnd (pid {pid}) to run every queue that is not held"
            );
            ex::OK
        }
        Err(e) => {
            let _ = writeln!(out, "flush: cannot signal pid {pid}: {e}");
            ex::UNAVAILABLE
        }
    }
}
