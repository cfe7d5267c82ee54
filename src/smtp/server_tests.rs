//! State × verb tests of the server session, with a simulated clock and no sockets.

use super::*;
use crate::config::{routes, Config, MainConf};
use crate::route::{RouteTrie, Router};
use crate::store::spool::{MessageId, SpoolError};
use crate::vocab::cidr::Cidr;
use crate::vocab::Domain;
use std::path::Path;

pub(crate) fn config(trusted: bool) -> Config {
    let mut main = MainConf::defaults(Path::new("/nonexistent/etrnd.conf"));
    main.hostname = "mx.ours.example".into();
    main.greet_pause = Duration::from_secs(1);
    if !trusted {
        main.mynetworks = vec![Cidr::parse("10.0.0.0/8").unwrap()];
    }
    main.max_message_size = 100_000;
    let entries = routes::parse(
        Path::new("routes"),
        ".client.dom smtp-etrn!mail.client.dom\n. smtp-etrn!mail.isp.dom\n",
    )
    .unwrap();
    let mut aliases = crate::config::names::Aliases::new();
    aliases.insert(
        "u".into(),
        vec![crate::config::names::AliasTarget::Local("root".into())],
    );
    Config {
        main,
        router: Router {
            trie: RouteTrie::new(entries),
            localnames: [Domain::parse("ours.example").unwrap()]
                .into_iter()
                .collect(),
            aliases,
            protocols_smtp: false,
            accounts: crate::accounts::Accounts::snapshot(),
        },
        resolve: crate::dns::ResolveConf {
            order: vec![crate::config::main_conf::HostSource::Files],
            hosts: Default::default(),
            resolv: Default::default(),
        },
        sched: crate::config::scheduler::SchedulerConf::builtin("/log"),
        generic: Default::default(),
        recipients: Default::default(),
    }
}

pub(crate) struct T {
    pub(crate) s: ServerSession,
    pub(crate) cfg: Config,
    pub(crate) now: Instant,
    pub(crate) events: Vec<Event>,
    pub(crate) disk_low: bool,
}

impl T {
    pub(crate) fn new(trusted: bool) -> T {
        let cfg = config(trusted);
        let now = Instant::now();
        let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let s = ServerSession::new(
            1,
            addr,
            crate::config::ListenKind::Smtp,
            &ctx(&cfg, false),
            now,
        );
        let mut t = T {
            s,
            cfg,
            now,
            events: Vec::new(),
            disk_low: false,
        };
        if !trusted {
            t.advance(Duration::from_secs(1));
        }
        t
    }

    /// A trusted session after the greeting.
    pub(crate) fn ready() -> T {
        let mut t = T::new(true);
        t.take();
        t
    }

    /// After EHLO.
    pub(crate) fn ehlo() -> T {
        let mut t = T::ready();
        t.send("EHLO client.example\r\n");
        t.take();
        t
    }

    /// In a transaction with one recipient.
    pub(crate) fn in_transaction() -> T {
        let mut t = T::ehlo();
        t.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@ours.example>\r\n");
        assert_eq!(t.codes(), vec![250, 250]);
        t
    }

    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        let (cfg, disk_low) = (&self.cfg, self.disk_low);
        self.s.handle_timeout(self.now, &ctx(cfg, disk_low));
        self.drain();
    }

    pub(crate) fn send(&mut self, data: impl AsRef<[u8]>) {
        let (cfg, disk_low) = (&self.cfg, self.disk_low);
        self.s
            .handle_input(data.as_ref(), self.now, &ctx(cfg, disk_low));
        self.drain();
    }

    pub(crate) fn drain(&mut self) {
        while let Some(e) = self.s.poll_event() {
            self.events.push(e);
        }
    }

    pub(crate) fn commit(&mut self, r: Result<MessageId, &SpoolError>) {
        let (cfg, disk_low) = (&self.cfg, self.disk_low);
        self.s.handle_commit(r, self.now, &ctx(cfg, disk_low));
        self.drain();
    }

    /// Output so far as text, consumed.
    pub(crate) fn take(&mut self) -> String {
        let out = String::from_utf8_lossy(self.s.pending_output()).into_owned();
        let n = self.s.pending_output().len();
        self.s.consume_output(n);
        out
    }

    /// Codes of the final lines of each reply, consumed.
    pub(crate) fn codes(&mut self) -> Vec<u16> {
        self.take()
            .lines()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .map(|l| l[..3].parse().unwrap())
            .collect()
    }

    pub(crate) fn message_body(&self) -> Vec<u8> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::MessageData(d) => Some(d.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    pub(crate) fn count(&self, f: fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|e| f(e)).count()
    }
}

pub(crate) fn ctx(cfg: &Config, disk_low: bool) -> Context<'_> {
    Context {
        policy: cfg.policy(),
        disk_low,
        unix_time: 1_795_873_551,
        tls_busy: false,
        held_full: None,
        nonce: 7,
    }
}

fn ends(e: &Event) -> bool {
    matches!(e, Event::MessageEnd)
}
fn starts(e: &Event) -> bool {
    matches!(e, Event::MessageStart(_))
}
fn aborts(e: &Event) -> bool {
    matches!(e, Event::MessageAbort)
}

#[test]
fn trusted_client_is_greeted_at_once() {
    let mut t = T::new(true);
    assert_eq!(t.take(), "220 mx.ours.example ESMTP etrnd\r\n");
}

#[test]
fn greeting_untrusted_waits_for_the_pause() {
    let cfg = config(false);
    let now = Instant::now();
    let mut s = ServerSession::new(
        1,
        "192.0.2.9:1".parse().unwrap(),
        crate::config::ListenKind::Smtp,
        &ctx(&cfg, false),
        now,
    );
    assert!(s.pending_output().is_empty());
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(1)));
    s.handle_timeout(now + Duration::from_secs(1), &ctx(&cfg, false));
    assert!(s.pending_output().starts_with(b"220 "));
}

#[test]
fn greeting_early_talker_is_554_and_closed() {
    let cfg = config(false);
    let now = Instant::now();
    let mut s = ServerSession::new(
        1,
        "192.0.2.9:1".parse().unwrap(),
        crate::config::ListenKind::Smtp,
        &ctx(&cfg, false),
        now,
    );
    s.handle_input(b"EHLO x\r\n", now, &ctx(&cfg, false));
    assert!(s.pending_output().starts_with(b"554 5.5.0"));
    assert!(s.is_closing());
}

#[test]
fn ready_ehlo_lists_extensions() {
    let mut t = T::ready();
    t.send("EHLO client.example\r\n");
    let out = t.take();
    for ext in [
        "PIPELINING",
        "SIZE 100000",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(out.contains(ext), "{out}");
    }
    assert!(out.ends_with("250 ENHANCEDSTATUSCODES\r\n"));
}

#[test]
fn ready_mail_before_helo_is_503() {
    let mut t = T::ready();
    t.send("MAIL FROM:<a@b.example>\r\n");
    assert_eq!(t.codes(), vec![503]);
}

#[test]
fn ready_rcpt_before_mail_is_503() {
    let mut t = T::ehlo();
    t.send("RCPT TO:<u@ours.example>\r\n");
    assert_eq!(t.codes(), vec![503]);
}

#[test]
fn ready_data_before_mail_is_503() {
    let mut t = T::ehlo();
    t.send("DATA\r\n");
    assert_eq!(t.codes(), vec![503]);
}

#[test]
fn in_transaction_second_mail_is_503() {
    let mut t = T::in_transaction();
    t.send("MAIL FROM:<a@b.example>\r\n");
    assert_eq!(t.codes(), vec![503]);
}

#[test]
fn in_transaction_data_without_valid_rcpt_is_554() {
    let mut t = T::ehlo();
    t.send("MAIL FROM:<a@b.example>\r\n");
    t.send("RCPT TO:<nobody-here@ours.example>\r\n");
    t.send("DATA\r\n");
    assert_eq!(t.codes(), vec![250, 550, 554]);
}

#[test]
fn in_transaction_rset_returns_to_ready() {
    let mut t = T::in_transaction();
    t.send("RSET\r\n");
    assert_eq!(t.codes(), vec![250]);
    assert_eq!(t.s.state_name(), "Ready");
    t.send("RCPT TO:<u@ours.example>\r\n");
    assert_eq!(t.codes(), vec![503]);
}

#[test]
fn full_transaction_is_acknowledged_only_after_commit() {
    let mut t = T::in_transaction();
    t.send("DATA\r\n");
    assert_eq!(t.codes(), vec![354]);
    t.send("Subject: hi\r\n\r\nbody\r\n.\r\n");
    assert_eq!(t.take(), "", "no reply before the spool commit");
    assert_eq!(t.s.state_name(), "AwaitCommit");
    assert!(!t.s.wants_read(t.now));
    assert_eq!(t.count(starts), 1);
    assert_eq!(t.count(ends), 1);
    t.commit(Ok(MessageId(0xabc)));
    assert_eq!(t.take(), "250 2.0.0 Ok: queued as 0000000000000abc\r\n");
    // A local (trusted) client's message gets the Date: and Message-ID: it lacks,
    // at the end of its header section.
    assert_eq!(
        t.message_body(),
        b"Subject: hi\r\nDate: Sat, 28 Nov 2026 13:45:51 +0000\r\n\
          Message-ID: <1795873551.00000001.0000000000000007@mx.ours.example>\r\n\r\nbody\r\n"
    );
}

#[test]
fn in_data_headers_a_local_client_gave_are_kept_and_nothing_is_added() {
    let mut t = T::in_transaction();
    t.send("DATA\r\n");
    t.send("Subject: hi\r\nmessage-id: <x@y>\r\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nb\r\n.\r\n");
    t.commit(Ok(MessageId(1)));
    assert_eq!(
        t.message_body(),
        b"Subject: hi\r\nmessage-id: <x@y>\r\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nb\r\n"
    );
}

#[test]
fn commit_failure_is_451_and_nothing_acknowledged() {
    let mut t = T::in_transaction();
    t.send("DATA\r\n");
    t.send(".\r\n");
    let err = SpoolError {
        op: "fsync",
        path: "/x".into(),
        err: std::io::Error::from_raw_os_error(libc::EIO),
    };
    t.commit(Err(&err));
    assert_eq!(t.codes(), vec![354, 451]);
    let full = SpoolError {
        op: "write",
        path: "/x".into(),
        err: std::io::Error::from_raw_os_error(libc::ENOSPC),
    };
    t.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@ours.example>\r\nDATA\r\n");
    t.send(".\r\n");
    t.commit(Err(&full));
    assert_eq!(t.codes(), vec![250, 250, 354, 452]);
}

#[test]
fn state_after_error_at_end_of_data_is_fresh() {
    // G20: after a refusal at the dot the session is a fresh post-EHLO session.
    let mut t = T::in_transaction();
    t.send("DATA\r\n");
    let big = "x".repeat(1000) + "\r\n";
    for _ in 0..120 {
        t.send(&big);
    }
    t.send(".\r\n");
    assert_eq!(t.codes(), vec![354, 552]);
    assert_eq!(t.count(aborts), 1);
    t.send("RCPT TO:<u@ours.example>\r\n");
    assert_eq!(t.codes(), vec![503]);
    t.send("MAIL FROM:<a@b.example>\r\n");
    assert_eq!(t.codes(), vec![250]);
}

#[test]
fn smuggling_yields_one_message() {
    for fake in ["\n.\n", "\n.\r\n", "\r.\r\n", "\r.\r"] {
        let mut t = T::in_transaction();
        t.send("DATA\r\n");
        t.send(format!(
            "body{fake}MAIL FROM:<s@evil.example>\r\nRCPT TO:<u@ours.example>\r\nDATA\r\nspoof\r\n.\r\n"
        ));
        t.commit(Ok(MessageId(1)));
        assert_eq!(t.codes(), vec![354, 250], "{fake:?}");
        assert_eq!(t.count(starts), 1, "{fake:?}");
        assert_eq!(t.count(ends), 1, "{fake:?}");
        let body = t.message_body();
        assert!(
            body.windows(4).any(|w| w == b"MAIL"),
            "smuggled lines stay in the body"
        );
    }
}

#[test]
fn data_ending_in_bare_lf_dot_never_ends() {
    let mut t = T::in_transaction();
    t.send("DATA\r\n");
    t.send("body\n.\n");
    assert_eq!(t.codes(), vec![354]);
    assert_eq!(t.count(ends), 0);
    t.advance(Duration::from_secs(301));
    let out = t.take();
    assert!(out.starts_with("421 4.4.2"), "{out}");
    assert_eq!(t.count(aborts), 1);
}

#[test]
fn bare_lf_command_is_refused_and_not_merged() {
    let mut t = T::ehlo();
    t.send("MAIL FROM:<a@b.example>\nRCPT TO:<u@ours.example>\r\n");
    assert_eq!(t.codes(), vec![500]);
    assert!(t.s.is_closing());
}

#[test]
fn helo_client_pipelining_is_a_sync_error() {
    let mut t = T::ready();
    t.send("HELO client.example\r\n");
    assert_eq!(t.codes(), vec![250]);
    t.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@ours.example>\r\n");
    assert_eq!(t.codes(), vec![554]);
    assert!(t.s.is_closing());
}

#[test]
fn ehlo_client_may_pipeline_mail_rcpt_data() {
    let mut t = T::ehlo();
    t.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@ours.example>\r\nDATA\r\n");
    assert_eq!(t.codes(), vec![250, 250, 354]);
}

#[test]
fn ehlo_must_end_a_group() {
    let mut t = T::ready();
    t.send("EHLO x\r\nMAIL FROM:<a@b.example>\r\n");
    assert_eq!(t.codes(), vec![554]);
}

#[test]
fn content_before_354_is_a_sync_error() {
    let mut t = T::in_transaction();
    t.send("DATA\r\nSubject: early\r\n");
    assert_eq!(t.codes(), vec![554]);
    assert_eq!(t.count(starts), 0);
}

#[test]
fn line_of_512_is_fine_and_overlong_line_closes() {
    let mut t = T::ehlo();
    let noop = format!("NOOP {}\r\n", "x".repeat(505));
    assert_eq!(noop.len(), 512);
    t.send(noop);
    assert_eq!(t.codes(), vec![250]);
    t.send(vec![b'x'; 70_000]);
    assert_eq!(t.codes(), vec![500]);
    assert!(t.s.is_closing());
}

#[test]
fn size_declared_too_big_and_bad() {
    let mut t = T::ehlo();
    t.send("MAIL FROM:<a@b.example> SIZE=99999999999\r\n");
    t.send("MAIL FROM:<a@b.example> SIZE=abc\r\n");
    assert_eq!(t.codes(), vec![552, 501]);
}

#[test]
fn undeclared_oversize_reads_to_the_dot_then_552() {
    let mut t = T::in_transaction();
    t.send("DATA\r\n");
    for _ in 0..200 {
        t.send(format!("{}\r\n", "y".repeat(998)));
    }
    t.send(".\r\nNOOP\r\n");
    assert_eq!(t.codes(), vec![354, 552, 250]);
    assert!(t.message_body().len() <= 100_000);
}

#[test]
fn header_block_too_big_is_552() {
    let mut t = T::in_transaction();
    t.cfg.main.max_message_size = 10_000_000;
    t.send("DATA\r\n");
    for i in 0..2100 {
        t.send(format!("X-H{i}: {}\r\n", "h".repeat(990)));
    }
    t.send("\r\nbody\r\n.\r\n");
    assert_eq!(t.codes(), vec![354, 552]);
    t.send("MAIL FROM:<a@b.example>\r\n");
    assert_eq!(t.codes(), vec![250]);
}

#[test]
fn too_many_received_headers_is_a_loop() {
    let mut t = T::in_transaction();
    t.send("DATA\r\n");
    for _ in 0..101 {
        t.send("Received: from x by y\r\n");
    }
    t.send("\r\n.\r\n");
    assert_eq!(t.codes(), vec![354, 554]);
    assert_eq!(t.count(aborts), 1);
}

#[test]
fn one_hundred_received_headers_are_fine() {
    let mut t = T::in_transaction();
    t.send("DATA\r\n");
    for _ in 0..100 {
        t.send("Received: from x by y\r\n");
    }
    t.send("\r\n.\r\n");
    assert_eq!(t.count(ends), 1);
}

#[test]
fn nul_in_command_is_500_and_session_usable() {
    let mut t = T::ehlo();
    t.send(b"MAIL FROM:<a\x00b@c.example>\r\n");
    t.send("NOOP\r\n");
    assert_eq!(t.codes(), vec![500, 250]);
}

#[test]
fn nul_in_data_is_kept() {
    let mut t = T::in_transaction();
    t.send("DATA\r\n");
    t.send(b"a\x00b\r\n.\r\n");
    assert!(t.message_body().starts_with(b"a\x00b\r\nDate: "));
}

#[test]
fn non_ascii_sender_is_553() {
    let mut t = T::ehlo();
    t.send("MAIL FROM:<jürgen@b.example>\r\n");
    assert_eq!(t.codes(), vec![553]);
}

#[test]
fn invalid_utf8_helo_is_refused() {
    let mut t = T::ready();
    t.send(b"HELO \xff\r\n");
    let c = t.codes();
    assert!(c == vec![500] || c == vec![501], "{c:?}");
}

#[test]
fn http_request_disconnects_at_once() {
    for first in ["GET / HTTP/1.1", "CONNECT x:25", "POST /"] {
        let mut t = T::ready();
        t.send(format!("{first}\r\n"));
        assert!(t.s.is_closing(), "{first}");
        assert_eq!(t.take(), "", "{first}");
    }
}

#[test]
fn three_unknown_verbs_close() {
    let mut t = T::ehlo();
    t.send("FOO\r\n");
    t.send("BAR\r\n");
    assert!(!t.s.is_closing());
    t.send("BAZ\r\n");
    assert_eq!(t.codes(), vec![502, 502, 502, 421]);
    assert!(t.s.is_closing());
}

#[test]
fn errors_slow_down_after_ten_and_close_at_twenty() {
    let mut t = T::ehlo();
    for i in 1..=10 {
        t.send("RCPT TO:<x@ours.example>\r\n");
        assert!(t.s.wants_read(t.now), "no pause after error {i}");
    }
    t.send("RCPT TO:<x@ours.example>\r\n");
    assert!(!t.s.wants_read(t.now), "pause after the 11th error");
    // Pipelined commands wait for the pause.
    t.send("RCPT TO:<x@ours.example>\r\n");
    assert_eq!(t.codes().len(), 11);
    for _ in 0..9 {
        t.advance(ERROR_SLEEP);
        t.send("RCPT TO:<x@ours.example>\r\n");
    }
    t.advance(ERROR_SLEEP);
    let codes = t.codes();
    assert_eq!(codes.last(), Some(&421), "{codes:?}");
    assert!(t.s.is_closing());
}

#[test]
fn junk_commands_past_100_count_as_errors() {
    let mut t = T::ehlo();
    for _ in 0..100 {
        t.send("NOOP\r\n");
    }
    assert_eq!(t.codes().len(), 100);
    assert!(t.s.wants_read(t.now));
    for _ in 0..11 {
        t.send("NOOP\r\n");
    }
    assert!(!t.s.wants_read(t.now), "the 11th junk error pauses");
}

#[test]
fn ready_helo_and_ehlo_repeated_forever_count_as_junk_and_close() {
    let mut t = T::ehlo();
    for i in 0..200 {
        t.send(if i % 2 == 0 {
            "EHLO x.example\r\n"
        } else {
            "HELO x.example\r\n"
        });
        t.advance(Duration::from_secs(30));
    }
    assert!(t.s.is_closing(), "the session ends");
}

#[test]
fn recipient_limit_is_452() {
    let mut t = T::ehlo();
    t.cfg.main.max_recipients = 1000;
    t.cfg.router.aliases.clear();
    t.send("MAIL FROM:<a@b.example>\r\n");
    t.take();
    for i in 0..1001 {
        t.send(format!("RCPT TO:<u{i}@client.dom>\r\n"));
    }
    let codes = t.codes();
    assert_eq!(codes.iter().filter(|&&c| c == 250).count(), 1000);
    assert_eq!(codes.last(), Some(&452));
    t.send("DATA\r\n");
    t.send(".\r\n");
    let Some(Event::MessageStart(env)) = t.events.iter().find(|e| starts(e)) else {
        panic!("no message started")
    };
    assert_eq!(env.recipients.len(), 1000);
}

#[test]
fn relay_denied_for_outside_client() {
    let mut t = T::new(false);
    t.take();
    t.send("EHLO x.example\r\n");
    t.take();
    t.send("MAIL FROM:<postmaster@ours.example>\r\n");
    for rcpt in [
        "user@victim.example",
        "user@[198.51.100.1]",
        "user%victim.example@[192.0.2.25]",
        "@ours.example,@x.example:u@victim.example",
    ] {
        t.send(format!("RCPT TO:<{rcpt}>\r\n"));
    }
    assert_eq!(t.codes(), vec![250, 554, 554, 554, 554]);
    t.send("RCPT TO:<u@client.dom>\r\nRCPT TO:<@hop.example:u@ours.example>\r\n");
    assert_eq!(t.codes(), vec![250, 250]);
}

#[test]
fn error_route_names_the_reason() {
    let mut t = T::ehlo();
    t.cfg.router.trie =
        RouteTrie::new(routes::parse(Path::new("r"), ".client.dom error!database\n").unwrap());
    t.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<x@mail.client.dom>\r\n");
    let out = t.take();
    assert!(out.contains("550 5.1.2 <x@mail.client.dom>:"), "{out}");
    assert!(out.contains("(database)"), "{out}");
}

#[test]
fn disk_low_refuses_mail() {
    let mut t = T::ehlo();
    t.disk_low = true;
    t.send("MAIL FROM:<a@b.example>\r\n");
    let out = t.take();
    assert!(out.starts_with("452 4.3.1"), "{out}");
}

#[test]
fn idle_timeout_is_421_at_300s() {
    let mut t = T::ehlo();
    t.advance(Duration::from_secs(299));
    assert!(!t.s.is_closing());
    t.advance(Duration::from_secs(1));
    assert!(t.take().starts_with("421 4.4.2"));
}

#[test]
fn slowloris_command_is_cut_within_the_request_deadline() {
    let mut t = T::ehlo();
    let line = format!("MAIL FROM:<{}@b.example>", "a".repeat(40));
    for b in line.bytes() {
        t.advance(Duration::from_secs(10));
        if t.s.is_closing() {
            break;
        }
        t.send([b]);
    }
    assert!(t.s.is_closing(), "a 1-byte-per-10-s line must be cut");
    assert!(t.take().starts_with("421 4.4.2"));
}

#[test]
fn slowloris_data_is_closed() {
    let mut t = T::in_transaction();
    t.send("DATA\r\n");
    t.take();
    let mut secs = 0;
    while !t.s.is_closing() && secs < 1000 {
        t.send([b'z'; 100]);
        t.advance(Duration::from_secs(1));
        secs += 1;
    }
    assert!(t.s.is_closing());
    assert!(secs < 400, "closed after {secs}s");
    assert_eq!(t.count(aborts), 1);
}

#[test]
fn quit_closes() {
    let mut t = T::ehlo();
    t.send("QUIT\r\n");
    assert_eq!(t.codes(), vec![221]);
    assert!(t.s.is_closing());
}

#[test]
fn vrfy_help_noop() {
    let mut t = T::ehlo();
    t.send("VRFY u\r\n");
    t.send("HELP\r\n");
    t.send("NOOP\r\n");
    assert_eq!(t.codes(), vec![252, 214, 250]);
}

#[test]
fn chunked_input_gives_the_same_dialogue() {
    let script =
        b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@ours.example>\r\nDATA\r\n";
    let body = b"Subject: x\r\n\r\n..dot\r\n.\r\n";
    let mut whole = T::ready();
    whole.send(&script[..16]);
    whole.send(&script[16..]);
    whole.send(body);
    let expect = whole.take();
    let expect_body = whole.message_body();
    for split in 0..body.len() {
        let mut t = T::ready();
        t.send(&script[..16]);
        t.send(&script[16..]);
        t.send(&body[..split]);
        t.send(&body[split..]);
        assert_eq!(t.take(), expect, "split {split}");
        assert_eq!(t.message_body(), expect_body, "split {split}");
    }
}

#[test]
fn in_transaction_rcpt_with_no_transport_is_451() {
    let mut t = T::new(true);
    // A reload dropped the clause that served smtp-etrn: refuse, never black-hole.
    t.cfg.sched = crate::config::scheduler::SchedulerConf::parse(
        std::path::Path::new("scheduler.conf"),
        "local/* command=local\n",
        "/log",
    )
    .unwrap();
    t.take();
    t.send("EHLO x.example\r\n");
    t.take();
    t.send("MAIL FROM:<a@ours.example>\r\nRCPT TO:<u@client.dom>\r\nRCPT TO:<u@ours.example>\r\n");
    assert_eq!(t.codes(), vec![250, 451, 250]);
}

#[test]
#[cfg(target_pointer_width = "64")]
fn an_idle_session_stays_small() {
    // 1,000 idle sessions are a benchmark figure: what only a transaction or a
    // message needs is boxed.
    assert!(std::mem::size_of::<ServerSession>() <= 440);
    assert!(std::mem::size_of::<State>() <= 40);
}
