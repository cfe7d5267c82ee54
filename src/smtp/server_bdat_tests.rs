//! BDAT of the server session: chunks, their limits and the data that is data
//! (reference/bad-input.md §L 101).

use crate::smtp::server::tests::T;
use crate::smtp::server::Event;

/// A BDAT command with its chunk.
fn bdat(data: &str, last: bool) -> String {
    let last = if last { " LAST" } else { "" };
    format!("BDAT {}{last}\r\n{data}", data.len())
}

fn starts(t: &T) -> usize {
    t.count(|e| matches!(e, Event::MessageStart(_)))
}
fn ends(t: &T) -> usize {
    t.count(|e| matches!(e, Event::MessageEnd))
}
fn aborts(t: &T) -> usize {
    t.count(|e| matches!(e, Event::MessageAbort))
}

#[test]
fn ehlo_offers_chunking() {
    let mut t = T::ready();
    t.send("EHLO client.example\r\n");
    assert!(t.take().contains("250-CHUNKING\r\n"));
}

#[test]
fn chunks_make_one_message_answered_only_once_durable() {
    let mut t = T::in_transaction();
    t.send(bdat("Subject: hi\r\n\r\n", false));
    assert_eq!(t.take(), "250 2.0.0 Ok: 15 octets received\r\n");
    assert_eq!(t.s.state_name(), "Chunking");
    t.send(bdat(".\r\nhi", true));
    assert_eq!(t.take(), "", "no reply before the commit");
    assert_eq!(t.s.state_name(), "AwaitCommit");
    let body = t.message_body();
    assert!(
        body.starts_with(b"Subject: hi\r\n"),
        "as sent, dots and all"
    );
    assert!(
        body.ends_with(b"\r\n\r\n.\r\nhi\r\n"),
        "as sent, dots and all"
    );
    assert_eq!((starts(&t), ends(&t), aborts(&t)), (1, 1, 0));
    t.commit(Ok(crate::store::spool::MessageId(1)));
    assert_eq!(t.codes(), vec![250]);
    assert_eq!(t.s.state_name(), "Ready");
}

#[test]
fn pipelined_chunks_with_commands_in_their_data_are_data() {
    let mut t = T::ehlo();
    let data = "QUIT\r\nRSET\r\nMAIL FROM:<x>\r\n";
    t.send(format!(
        "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@ours.example>\r\nBDAT {}\r\n{data}\
         BDAT 0 LAST\r\nNOOP\r\n",
        data.len()
    ));
    assert_eq!(t.codes(), vec![250, 250, 250]);
    assert!(t
        .message_body()
        .starts_with(b"QUIT\r\nRSET\r\nMAIL FROM:<x>\r\n"));
    t.commit(Ok(crate::store::spool::MessageId(1)));
    assert_eq!(t.codes(), vec![250, 250], "the queued id, then the NOOP");
}

#[test]
fn bdat_without_mail_is_503_and_its_chunk_is_consumed() {
    let mut t = T::ehlo();
    t.send("BDAT 0 LAST\r\n");
    assert_eq!(t.codes(), vec![503]);
    t.send(bdat("QUIT\r\n", false) + "NOOP\r\n");
    assert_eq!(
        t.codes(),
        vec![503, 250],
        "QUIT was data; NOOP is a command"
    );
    assert_eq!(starts(&t), 0);
    // A chunk split across reads is still skipped whole.
    t.send("BDAT 12\r\nRSET");
    assert_eq!(t.codes(), Vec::<u16>::new());
    t.send("\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(t.codes(), vec![503, 250]);
}

#[test]
fn bdat_without_valid_recipient_is_554() {
    let mut t = T::ehlo();
    t.send("MAIL FROM:<a@b.example>\r\nBDAT 3 LAST\r\nabc");
    assert_eq!(t.codes(), vec![250, 554]);
    assert_eq!(starts(&t), 0);
}

#[test]
fn a_chunk_past_the_size_limit_is_552_consumed_and_ends_the_transaction() {
    let mut t = T::in_transaction();
    t.send("BDAT 200000\r\n");
    t.send(vec![b'x'; 150_000]);
    assert_eq!(
        t.codes(),
        Vec::<u16>::new(),
        "answered once all of it is read"
    );
    t.send(vec![b'y'; 50_000]);
    assert_eq!(t.codes(), vec![552]);
    assert_eq!((starts(&t), ends(&t), aborts(&t)), (1, 0, 1));
    assert!(t.message_body().is_empty(), "nothing of it is stored");
    t.send("BDAT 3 LAST\r\nabc");
    assert_eq!(t.codes(), vec![503], "the transaction is over");
}

#[test]
fn chunks_adding_up_past_the_limit_are_552() {
    let mut t = T::in_transaction();
    t.send(format!("BDAT 60000\r\n{}", "z".repeat(60_000)));
    assert_eq!(t.codes(), vec![250]);
    t.send(format!("BDAT 60000 LAST\r\n{}", "z".repeat(60_000)));
    assert_eq!(t.codes(), vec![552]);
    assert_eq!((ends(&t), aborts(&t)), (0, 1));
}

#[test]
fn data_mail_and_rcpt_between_chunks_are_503_and_the_message_goes_on() {
    let mut t = T::in_transaction();
    t.send(bdat("X: y\r\n\r\n", false));
    assert_eq!(t.codes(), vec![250]);
    t.send("DATA\r\n");
    t.send("MAIL FROM:<c@d.example>\r\n");
    t.send("RCPT TO:<u@ours.example>\r\n");
    t.send("STARTTLS\r\n");
    assert_eq!(t.codes(), vec![503, 503, 503, 503]);
    t.send("NOOP\r\nBDAT 3 LAST\r\ndef");
    assert_eq!(t.codes(), vec![250]);
    assert!(t.message_body().starts_with(b"X: y\r\n"));
    assert!(t.message_body().ends_with(b"\r\n\r\ndef\r\n"));
    assert_eq!(ends(&t), 1);
}

#[test]
fn rset_between_chunks_drops_the_message() {
    let mut t = T::in_transaction();
    t.send("BDAT 3\r\nabcRSET\r\n");
    assert_eq!(t.codes(), vec![250, 250]);
    assert_eq!((starts(&t), ends(&t), aborts(&t)), (1, 0, 1));
    assert_eq!(t.s.state_name(), "Ready");
}

#[test]
fn a_connection_closed_inside_a_chunk_aborts_the_message() {
    let mut t = T::in_transaction();
    t.send("BDAT 1000 LAST\r\n0123456789");
    t.s.handle_eof();
    t.drain();
    assert_eq!((ends(&t), aborts(&t)), (0, 1));
}

#[test]
fn bad_bdat_syntax_is_501_and_the_end() {
    for bad in [
        "BDAT\r\n",
        "BDAT x\r\n",
        "BDAT -1\r\n",
        "BDAT 1 FIRST\r\n",
        "BDAT 1 LAST more\r\n",
        "BDAT 123456789012345678901\r\n",
        "BDAT 99999999999999999999\r\n",
    ] {
        let mut t = T::in_transaction();
        t.send(bad);
        assert_eq!(t.codes(), vec![501], "{bad:?}");
        assert!(t.s.is_closing(), "the chunk's end is unknown: {bad:?}");
    }
}

#[test]
fn helo_clients_are_not_offered_bdat() {
    let mut t = T::ready();
    t.send("HELO client.example\r\n");
    t.take();
    t.send("BDAT 4\r\n");
    t.send("NOOP");
    t.send("NOOP\r\n");
    assert_eq!(t.codes(), vec![502, 250]);
}

#[test]
fn bdat_0_last_ends_the_message_as_the_dot_does() {
    let mut t = T::in_transaction();
    t.send("BDAT 10\r\nSubject: x");
    t.send("BDAT 0 LAST\r\n");
    let body = t.message_body();
    assert!(body.starts_with(b"Subject: x\r\n"), "{body:?}");
    assert!(
        body.windows(5).any(|w| w == b"Date:"),
        "the header it lacked"
    );
    assert!(body.ends_with(b"\r\n"));
    assert_eq!(ends(&t), 1);
    let mut t = T::in_transaction();
    t.send("BDAT 0 LAST\r\n");
    assert!(t.message_body().windows(11).any(|w| w == b"Message-ID:"));
}

#[test]
fn small_chunks_cannot_stretch_the_message_past_its_time() {
    use std::time::Duration;
    let mut t = T::in_transaction();
    for _ in 0..3 {
        t.send("BDAT 1\r\nx");
        t.advance(Duration::from_secs(120));
    }
    assert!(t.s.is_closing(), "the data phase's 300 s ran out");
    assert!(t.take().contains("421 4.4.2"));
    assert_eq!(aborts(&t), 1);
}

#[test]
fn empty_chunks_count_as_junk() {
    let mut t = T::in_transaction();
    for _ in 0..150 {
        t.send("BDAT 0\r\n");
        // Past the soft limit each error pauses the session a second.
        t.advance(std::time::Duration::from_secs(1));
    }
    assert!(
        t.take().contains("421"),
        "too many errors after the junk limit"
    );
}

#[test]
fn a_bdat_line_that_is_not_even_text_ends_the_session() {
    for bad in [
        &b"BDAT 6 LAST\xff\r\nRSET\r\n"[..],
        b"BDAT 6\0\r\nQUIT\r\n",
        b"bdat 6 last\r\r\n",
    ] {
        let mut t = T::in_transaction();
        t.send(bad);
        assert!(t.s.is_closing(), "{bad:?}");
        let out = t.take();
        assert!(
            !out.contains("221") && !out.contains("250 2.0.0 Ok\r\n"),
            "{out}"
        );
    }
}
