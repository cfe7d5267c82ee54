//! Connection and size limits over real sockets.

use crate::util::{Client, Daemon, Setup};

#[test]
fn per_address_connection_limit_is_421() {
    let d = Daemon::start_with(Setup::with_conf("MAX_CONNECTIONS_PER_IP=3\n"));
    let mut held: Vec<Client> = (0..3).map(|_| Client::hello(d.addr())).collect();
    let mut extra = d.connect();
    let (code, text) = extra.reply().unwrap();
    assert_eq!(code, 421, "{text}");
    assert!(text.contains("4.7.0"), "{text}");
    assert!(extra.closed());
    // The held sessions still work, and a slot frees up when one leaves.
    held[0].cmd("NOOP", 250);
    let gone = d.log().matches("smtp disconnect").count();
    held.pop().unwrap().cmd("QUIT", 221);
    d.wait_until("the slot freed", 10, || {
        d.log().matches("smtp disconnect").count() > gone
    });
    Client::hello(d.addr()).cmd("NOOP", 250);
}

#[test]
fn total_connection_limit_is_421() {
    let d = Daemon::start_with(Setup::with_conf("MAX_CONNECTIONS=2\n"));
    let _a = Client::hello(d.addr());
    let _b = Client::hello(d.addr());
    let mut c = d.connect();
    assert_eq!(c.reply().unwrap().0, 421);
}

#[test]
fn oversized_message_is_552_and_session_continues() {
    let d = Daemon::start_with(Setup::with_conf("MAX_MESSAGE_SIZE=2048\n"));
    let mut c = Client::hello(d.addr());
    c.cmd("MAIL FROM:<a@b.example>", 250);
    c.cmd("RCPT TO:<alice@test.example>", 250);
    c.cmd("DATA", 354);
    for _ in 0..10 {
        c.send_raw(&[b'x'; 998]);
        c.send_raw(b"\r\n");
    }
    c.send_raw(b".\r\n");
    let text = c.expect(552);
    assert!(text.contains("5.3.4"), "{text}");
    assert!(d.queue_files().is_empty());
    assert!(crate::util::list(&d.spool().join("tmp")).is_empty());
    c.send_message(
        "a@b.example",
        &["alice@test.example"],
        "Subject: small\r\n\r\nok\r\n",
    );
    assert_eq!(d.queue_files().len(), 1);
}

#[test]
fn large_message_is_stored_byte_exact() {
    let d = Daemon::start();
    let mut c = Client::hello(d.addr());
    // A complete header section: from MYNETWORKS, a missing Date: or Message-ID:
    // would be added.
    let mut body = String::from(
        "Subject: big\r\nDate: Mon, 7 Dec 2026 12:00:00 +0000\r\nMessage-ID: <big@b.example>\r\n\r\n",
    );
    let line998 = "y".repeat(998);
    for i in 0..2000 {
        body.push_str(if i % 2 == 0 { &line998 } else { ".leading dot" });
        body.push_str("\r\n");
    }
    // bad-input C20: a 10,000-octet line is accepted and stored whole (never silently
    // truncated); folding for relay is the outbound client's job.
    body.push_str(&"w".repeat(10_000));
    body.push_str("\r\n");
    let stuffed = body.replace("\r\n.leading", "\r\n..leading");
    c.send_message("a@b.example", &["u@client.dom"], &stuffed);
    let files = d.queue_files();
    let data = std::fs::read(d.queue_file(&files[0])).unwrap();
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains(&body), "body stored unstuffed and byte-exact");
}
