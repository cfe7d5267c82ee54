//! The connection layer without sockets: connections over an in-memory pipe, driven through
//! the same read and flush paths as the daemon's sockets.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::smtp::client::{ClientEvent, OutMessage, RcptOutcome};
use crate::smtp::server::{Context, Event};
use crate::store::spool::MessageId;
use crate::vocab::Mailbox;

type Queue = Rc<RefCell<VecDeque<u8>>>;

/// One end of a byte pipe: reads what the other end wrote.
struct End {
    rx: Queue,
    tx: Queue,
}

fn pipe() -> (End, End) {
    let (a, b) = (Queue::default(), Queue::default());
    (
        End {
            rx: a.clone(),
            tx: b.clone(),
        },
        End { rx: b, tx: a },
    )
}

impl Read for End {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut q = self.rx.borrow_mut();
        if q.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(q.len());
        for (i, b) in q.drain(..n).enumerate() {
            buf[i] = b;
        }
        Ok(n)
    }
}

impl Write for End {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A small socket buffer: partial writes are the normal case.
        let n = buf.len().min(1000);
        self.tx.borrow_mut().extend(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn server_role(ctx: &Context<'_>, now: Instant) -> Role {
    let addr: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
    Role::Server(Box::new(Inbound {
        ip: addr.ip(),
        session: ServerSession::new(1, addr, crate::config::ListenKind::Smtp, ctx, now),
        incoming: None,
        envelope: None,
        spool_error: None,
        handshaking: false,
    }))
}

fn client_role(name: &str, now: Instant) -> Role {
    Role::Client(Box::new(Outbound {
        serves: Serves::Job(JobId(1)),
        relay: "peer".into(),
        session: Some(ClientSession::new(name, now)),
        connect_deadline: now,
        #[cfg(feature = "tls")]
        tls_plan: None,
        addr: "127.0.0.1:25".parse().unwrap(),
    }))
}

/// What the sides saw.
#[derive(Default)]
struct Seen {
    client: Vec<ClientEvent>,
    received: Vec<u8>,
    messages: usize,
}

/// One turn for one conn: flush, read what its role wants, route its events.
fn turn(conn: &mut Conn<End>, ctx: &Context<'_>, now: Instant, seen: &mut Seen) {
    let mut buf = [0u8; 512];
    loop {
        conn.flush();
        if !conn.role.wants_read(now) {
            break;
        }
        match conn.read(&mut buf) {
            ReadResult::Data(n) => match &mut conn.role {
                Role::Server(s) => s.session.handle_input(&buf[..n], now, ctx),
                Role::Client(c) => c.session.as_mut().unwrap().handle_input(&buf[..n], now),
                Role::Dns(_) => unreachable!(),
            },
            _ => break,
        }
        match &mut conn.role {
            Role::Server(s) => {
                while let Some(ev) = s.session.poll_event() {
                    match ev {
                        Event::MessageData(d) => seen.received.extend(d),
                        Event::MessageEnd => {
                            seen.messages += 1;
                            s.session.handle_commit(Ok(MessageId(42)), now, ctx);
                        }
                        _ => {}
                    }
                }
            }
            Role::Client(c) => {
                let s = c.session.as_mut().unwrap();
                while let Some(ev) = s.poll_event() {
                    seen.client.push(ev);
                }
            }
            Role::Dns(_) => {}
        }
    }
}

fn run(a: &mut Conn<End>, b: &mut Conn<End>, ctx: &Context<'_>, now: Instant, seen: &mut Seen) {
    for _ in 0..200 {
        turn(a, ctx, now, seen);
        turn(b, ctx, now, seen);
    }
}

/// A's server session serves B's client session; then both connections turn around on
/// the same bytes (ATRN's shape): A's side becomes a client and delivers a message to
/// B's side, now a server.
#[test]
fn a_link_turns_from_server_to_client_and_delivers_on_the_same_stream() {
    let mut cfg = crate::smtp::server::tests::config(true);
    cfg.main.greet_pause = Duration::ZERO;
    let ctx = Context {
        policy: cfg.policy(),
        disk_low: false,
        unix_time: 0,
        tls_busy: false,
        held_full: None,
        nonce: 7,
    };
    let now = Instant::now();
    let (ea, eb) = pipe();
    let mut a = Conn::new(ea, server_role(&ctx, now));
    let mut b = Conn::new(eb, client_role("client.dom", now));
    let mut seen = Seen::default();
    run(&mut a, &mut b, &ctx, now, &mut seen);
    assert_eq!(
        seen.client,
        vec![ClientEvent::Ready],
        "B greeted A's server"
    );

    // The turn-around: no octet is in flight in either direction.
    let old_a = a.set_role(client_role("hub.example", now));
    let old_b = b.set_role(server_role(&ctx, now));
    assert!(matches!(old_a, Role::Server(_)) && matches!(old_b, Role::Client(_)));
    seen.client.clear();
    run(&mut a, &mut b, &ctx, now, &mut seen);
    assert_eq!(
        seen.client,
        vec![ClientEvent::Ready],
        "A greeted B's server"
    );

    let body = b"Subject: turned\r\n\r\n.a line with a dot\r\nend\r\n".to_vec();
    let Role::Client(c) = &mut a.role else {
        unreachable!()
    };
    let s = c.session.as_mut().unwrap();
    s.start(
        OutMessage {
            from: Some(Mailbox::parse("s@hub.example").unwrap()),
            rcpts: vec![Mailbox::parse("u@client.dom").unwrap()],
            size: body.len() as u64,
            has_8bit: false,
            eight_bit: false,
            seven_bit_only: false,
            ..Default::default()
        },
        now,
    );
    seen.client.clear();
    for _ in 0..50 {
        run(&mut a, &mut b, &ctx, now, &mut seen);
        let Role::Client(c) = &mut a.role else {
            unreachable!()
        };
        let s = c.session.as_mut().unwrap();
        if s.wants_body() {
            s.feed_body(&body, now);
            s.end_body(now);
        }
    }
    assert_eq!(seen.messages, 1, "B's server received one message");
    // Intact and unstuffed (the receiving session, a trusted one, added the
    // Date: and Message-ID: the header section lacked).
    assert!(
        seen.received
            .ends_with(b"\r\n\r\n.a line with a dot\r\nend\r\n")
            && seen.received.starts_with(b"Subject: turned\r\n"),
        "the body arrived intact and unstuffed: {:?}",
        String::from_utf8_lossy(&seen.received)
    );
    assert!(
        matches!(&seen.client[..], [ClientEvent::Done(o), ClientEvent::Ready]
            if matches!(&o[..], [RcptOutcome::Delivered(r)] if r.starts_with("250"))),
        "{:?}",
        seen.client
    );
}

#[test]
fn a_stale_id_never_reaches_a_reused_slot() {
    let mut s: Slab<&str> = Slab::default();
    let a = s.insert("first").unwrap();
    assert_eq!(s.remove(a), Some("first"));
    let b = s.insert("second").unwrap();
    assert_eq!(a.slot(), b.slot(), "the slot is reused");
    assert_ne!(a, b);
    assert_eq!(s.get(a), None, "the old id is dead");
    assert_eq!(s.remove(a), None);
    assert_eq!(s.get(b), Some(&"second"));
    // Tokens carry the generation.
    assert_eq!(ConnId::from_token(b.token()), Some(b));
    assert_ne!(a.token(), b.token());
    assert_eq!(ConnId::from_token(Token(5)), None);
}
