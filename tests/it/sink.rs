//! An SMTP sink for tests: records every transaction it accepts, and answers by the
//! recipient's local part: `later*` gets 452, `reject*` 550, anything else 250.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Received {
    /// The EHLO or HELO command as sent.
    pub helo: String,
    /// The MAIL command as sent (with its parameters).
    pub mail: String,
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: String,
}

#[derive(Clone)]
pub struct Behaviour {
    pub greeting: &'static str,
    pub pipelining: bool,
    /// Reply to the final dot.
    pub dot_reply: &'static str,
    /// Pause before answering the final dot.
    pub delay: Duration,
    /// The SIZE limit it advertises.
    pub size: u64,
    /// Whether it offers 8BITMIME.
    pub eight_bit_mime: bool,
    /// More EHLO keywords it offers (`DSN`, `SMTPUTF8`).
    pub extensions: &'static [&'static str],
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            greeting: "220 sink.test ESMTP",
            pipelining: true,
            dot_reply: "250 2.0.0 Ok: queued",
            delay: Duration::ZERO,
            size: 100_000_000,
            eight_bit_mime: true,
            extensions: &[],
        }
    }
}

pub struct Sink {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub connections: Arc<AtomicUsize>,
    /// The most sessions ever open at once.
    pub max_active: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Sink {
    pub fn start(b: Behaviour) -> Sink {
        Sink::start_on("127.0.0.1:0", b)
    }

    pub fn start_on(addr: &str, b: Behaviour) -> Sink {
        let l = TcpListener::bind(addr).unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let max_active = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (got, connections, stop) = (got.clone(), connections.clone(), stop.clone());
            let (active, max_active) = (active.clone(), max_active.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((s, _)) => {
                            connections.fetch_add(1, Ordering::SeqCst);
                            let (got, b) = (got.clone(), b.clone());
                            let (active, max_active) = (active.clone(), max_active.clone());
                            std::thread::spawn(move || {
                                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                                max_active.fetch_max(now, Ordering::SeqCst);
                                let _ = serve(s, &b, &got);
                                active.fetch_sub(1, Ordering::SeqCst);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        Sink {
            addr,
            got,
            connections,
            max_active,
            stop,
        }
    }

    pub fn messages(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` messages arrived (or panics after `secs`).
    pub fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "sink got {} of {n} messages",
                m.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads message lines up to the final dot; `None` if the peer closed first.
pub fn read_data(r: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut data = String::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 {
            return Ok(None);
        }
        if l == ".\r\n" {
            return Ok(Some(data));
        }
        data.push_str(&l);
    }
}

fn serve(s: TcpStream, b: &Behaviour, got: &Mutex<Vec<Received>>) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    writeln!(w, "{}\r", b.greeting)?;
    if !b.greeting.starts_with("220") {
        return Ok(());
    }
    let mut from = String::new();
    let mut helo = String::new();
    let mut mail = String::new();
    let mut rcpts = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let up = line.trim_end().to_ascii_uppercase();
        if up.starts_with("EHLO") || up.starts_with("HELO") {
            helo = line.trim_end().to_string();
        }
        let reply: String = if up.starts_with("EHLO") {
            let mut eight = if b.eight_bit_mime {
                "250-8BITMIME\r\n".to_string()
            } else {
                String::new()
            };
            for e in b.extensions {
                eight.push_str(&format!("250-{e}\r\n"));
            }
            if b.pipelining {
                format!(
                    "250-sink.test\r\n250-PIPELINING\r\n{eight}250 SIZE {}",
                    b.size
                )
            } else {
                format!("250-sink.test\r\n{eight}250 HELP")
            }
        } else if up.starts_with("HELO") || up.starts_with("RSET") || up.starts_with("NOOP") {
            rcpts.clear();
            "250 ok".into()
        } else if up.starts_with("MAIL FROM:") {
            let f = &line.trim_end()[10..];
            from = f[..f.find('>').map(|i| i + 1).unwrap_or(f.len())].to_string();
            mail = line.trim_end().to_string();
            rcpts.clear();
            "250 2.1.0 ok".into()
        } else if up.starts_with("RCPT TO:") {
            let a = line.trim_end()[8..].to_string();
            if a.starts_with("<later") {
                "452 4.2.2 mailbox full, try later".into()
            } else if a.starts_with("<reject") {
                "550 5.1.1 no such user here".into()
            } else {
                rcpts.push(a);
                "250 2.1.5 ok".into()
            }
        } else if up.starts_with("DATA") {
            if rcpts.is_empty() {
                "554 5.5.1 no valid recipients".into()
            } else {
                writeln!(w, "354 go\r")?;
                let Some(data) = read_data(&mut r)? else {
                    return Ok(());
                };
                std::thread::sleep(b.delay);
                if b.dot_reply.starts_with('2') {
                    got.lock().unwrap().push(Received {
                        helo: helo.clone(),
                        mail: mail.clone(),
                        from: from.clone(),
                        rcpts: std::mem::take(&mut rcpts),
                        data,
                    });
                }
                if b.dot_reply.is_empty() {
                    return Ok(()); // drop the connection after the dot
                }
                b.dot_reply.to_string()
            }
        } else if up.starts_with("QUIT") {
            writeln!(w, "221 bye\r")?;
            return Ok(());
        } else {
            "502 5.5.2 what".into()
        };
        write!(w, "{reply}\r\n")?;
    }
}
