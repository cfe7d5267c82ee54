//! Delivery to peers that misbehave in the middle of a transaction: one that stalls
//! after the final dot, one that resets the connection, one that answers garbage.
//! Each time the message must stay queued (never counted as delivered), nothing else
//! may wait for the bad peer, and the next attempt delivers it exactly once.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sink::{Behaviour, Sink};
use crate::util::{Client, Daemon, Setup};

/// What one connection to the peer does wrong.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Trouble {
    /// A well-behaved SMTP server.
    None,
    /// Reads the whole message, then never answers the dot until released; then resets.
    StallAtDot,
    /// Accepts the recipient, then resets the connection (RST, not FIN).
    ResetAfterRcpt,
    /// Answers MAIL with binary garbage.
    GarbageForMail,
    /// Reads the whole message, then answers the dot with a line that is no reply.
    GarbageForDot,
}

struct Peer {
    addr: SocketAddr,
    /// Bodies accepted with 250 after the dot.
    delivered: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    /// Set by a StallAtDot connection once it holds the whole message.
    stalled: Arc<AtomicBool>,
    /// Ends the stall.
    release: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Peer {
    /// Connection `i` gets `plan[i]`; later connections behave.
    fn start(plan: &[Trouble]) -> Peer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let p = Peer {
            addr: l.local_addr().unwrap(),
            delivered: Arc::default(),
            connections: Arc::default(),
            stalled: Arc::default(),
            release: Arc::default(),
            stop: Arc::default(),
        };
        let plan = plan.to_vec();
        let (delivered, connections) = (p.delivered.clone(), p.connections.clone());
        let (stalled, release, stop) = (p.stalled.clone(), p.release.clone(), p.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let i = connections.fetch_add(1, Ordering::SeqCst);
                let t = plan.get(i).copied().unwrap_or(Trouble::None);
                let (delivered, stalled, release) =
                    (delivered.clone(), stalled.clone(), release.clone());
                std::thread::spawn(move || {
                    let _ = serve(s, t, &delivered, &stalled, &release);
                });
            }
        });
        p
    }

    fn delivered(&self) -> Vec<String> {
        self.delivered.lock().unwrap().clone()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.release.store(true, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Closes with RST: SO_LINGER on with a zero timeout, then close.
fn reset(s: TcpStream) {
    use std::os::unix::io::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a pointer to a linger struct of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

fn serve(
    s: TcpStream,
    t: Trouble,
    delivered: &Mutex<Vec<String>>,
    stalled: &AtomicBool,
    release: &AtomicBool,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s.try_clone()?);
    w.write_all(b"220 peer.test ESMTP\r\n")?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let up = line.to_ascii_uppercase();
        let reply: &[u8] = if up.starts_with("EHLO") {
            b"250-peer.test\r\n250 8BITMIME\r\n"
        } else if up.starts_with("MAIL") && t == Trouble::GarbageForMail {
            b"\x16\x03\x01\x00\xff\xfe garbage \x00\r\n"
        } else if up.starts_with("RCPT") && t == Trouble::ResetAfterRcpt {
            w.write_all(b"250 2.1.5 ok\r\n")?;
            std::thread::sleep(Duration::from_millis(50));
            reset(s);
            return Ok(());
        } else if up.starts_with("DATA") {
            w.write_all(b"354 go\r\n")?;
            let Some(body) = crate::sink::read_data(&mut r)? else {
                return Ok(());
            };
            match t {
                Trouble::StallAtDot => {
                    stalled.store(true, Ordering::SeqCst);
                    while !release.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    reset(s);
                    return Ok(());
                }
                Trouble::GarbageForDot => b"2x0 \xff\xfe not a reply\r\n",
                _ => {
                    delivered.lock().unwrap().push(body);
                    b"250 2.0.0 queued\r\n"
                }
            }
        } else if up.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            b"250 ok\r\n"
        };
        w.write_all(reply)?;
    }
}

const SCHED: &str = "*/* interval=1s retries=\"1\" expiry=1h\n\
    smtp*/* command=\"smtp -c $channel\"\n";

fn start(routes: &str) -> Daemon {
    let s = Setup {
        routes: routes.to_string(),
        ..Setup::default()
    };
    Daemon::start_with_files(s, &[("scheduler.conf", SCHED)])
}

/// The first connection misbehaves as `t`: the attempt is deferred, the message stays
/// queued, and the retry delivers it exactly once.
fn deferred_then_delivered_once(t: Trouble) {
    let peer = Peer::start(&[t]);
    let d = start(&format!(
        ".peer.example smtp![127.0.0.1]:{}\n",
        peer.addr.port()
    ));
    let mut c = Client::hello(d.addr());
    let id = c.send_message(
        "s@test.example",
        &["u@peer.example"],
        "Subject: trouble\r\n\r\nbody\r\n",
    );
    d.wait_until("the deferral", 10, || {
        d.log().contains(&format!("{id}: to=<u@peer.example>"))
            && d.log().contains("status=deferred")
    });
    // The retry may already be under way (the scheduler counts whole seconds, so a
    // deferral late in a second can be retried a few ms later): what proves the
    // first attempt was not taken as delivered is the second connection below, and
    // the one delivery.
    d.wait_until("the retry to deliver", 10, || peer.delivered().len() == 1);
    d.wait_until("the queue to empty", 10, || d.queue_files().is_empty());
    assert!(peer.connections.load(Ordering::SeqCst) >= 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(peer.delivered().len(), 1, "{t:?}: delivered exactly once");
    assert!(peer.delivered()[0].contains("body"));
    let log = d.log();
    assert!(log.contains("status=sent"), "{log}");
    assert!(!log.contains("status=bounced"), "{t:?} is temporary: {log}");
}

#[test]
fn a_reset_after_rcpt_defers_and_the_retry_delivers_once() {
    deferred_then_delivered_once(Trouble::ResetAfterRcpt);
}

#[test]
fn garbage_for_mail_defers_and_the_retry_delivers_once() {
    deferred_then_delivered_once(Trouble::GarbageForMail);
}

#[test]
fn garbage_after_the_dot_is_not_taken_as_delivered() {
    deferred_then_delivered_once(Trouble::GarbageForDot);
}

#[test]
fn a_peer_stalled_at_the_dot_holds_up_nothing_else() {
    let slow = Peer::start(&[Trouble::StallAtDot]);
    let good = Sink::start(Behaviour::default());
    let d = start(&format!(
        ".slow.example smtp![127.0.0.1]:{}\n.good.example smtp![127.0.0.1]:{}\n",
        slow.addr.port(),
        good.addr.port()
    ));
    let mut c = Client::hello(d.addr());
    c.send_message(
        "s@test.example",
        &["u@slow.example"],
        "Subject: 1\r\n\r\n1\r\n",
    );
    d.wait_until("the peer to stall", 10, || {
        slow.stalled.load(Ordering::SeqCst)
    });
    // While that delivery waits for its reply, the daemon still accepts and delivers.
    let t0 = Instant::now();
    let mut c2 = Client::hello(d.addr());
    c2.send_message(
        "s@test.example",
        &["u@good.example"],
        "Subject: 2\r\n\r\n2\r\n",
    );
    good.wait_for(1, 10);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // The delivered message leaves the queue; the stalled one stays.
    d.wait_until("the delivered message to leave the queue", 10, || {
        d.queue_files().len() == 1
    });
    // The stall ends in a reset: deferred, then delivered by the retry.
    slow.release.store(true, Ordering::SeqCst);
    d.wait_until("the retry to deliver", 15, || slow.delivered().len() == 1);
    d.wait_until("the queue to empty", 10, || d.queue_files().is_empty());
    assert!(d.log().contains("status=deferred"), "{}", d.log());
}
