//! ATRN of the server session: where it is offered, what it needs, the answers, and
//! the customer's reversed session.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::auth::base64;
use crate::config::Config;
use crate::smtp::reply::Reply;
use crate::smtp::server::tests::config;
use crate::smtp::server::{AuthOffer, AuthOutcome, Context, Event, ServerSession};
use crate::vocab::ListenKind;

/// A session on a listener of `kind`, with AUTH (CRAM-MD5 too) on offer.
struct A {
    s: ServerSession,
    cfg: Config,
    now: Instant,
    events: Vec<Event>,
}

/// Every kind: these tests authenticate with CRAM-MD5 without TLS everywhere.
const ALL_KINDS: &[ListenKind] = &[
    ListenKind::Smtp,
    ListenKind::Submission,
    ListenKind::Smtps,
    ListenKind::Odmr,
];

fn actx(cfg: &Config) -> Context<'_> {
    let mut policy = cfg.policy();
    policy.auth = AuthOffer {
        enabled: true,
        cram: true,
    };
    policy.clear_cram = ALL_KINDS;
    Context {
        policy,
        disk_low: false,
        unix_time: 1_795_873_551,
        tls_busy: false,
        held_full: None,
        nonce: 7,
    }
}

impl A {
    fn new(kind: ListenKind) -> A {
        let cfg = config(false);
        let now = Instant::now();
        let addr: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let s = ServerSession::new(9, addr, kind, &actx(&cfg), now);
        let mut a = A {
            s,
            cfg,
            now,
            events: Vec::new(),
        };
        a.now += Duration::from_secs(1);
        let (c, now) = (&a.cfg, a.now);
        a.s.handle_timeout(now, &actx(c));
        a.take();
        a
    }

    /// EHLO and a successful CRAM-MD5 exchange as `cust`, entitled to `domains`.
    fn authed(kind: ListenKind, domains: &[&str]) -> A {
        let mut a = A::new(kind);
        a.send("EHLO customer.example\r\n");
        a.take();
        a.send("AUTH CRAM-MD5\r\n");
        assert_eq!(a.codes(), vec![334]);
        a.send(format!(
            "{}\r\n",
            base64::encode(b"cust 0123456789abcdef0123456789abcdef")
        ));
        assert!(matches!(a.events.pop(), Some(Event::AuthCheck(_))));
        let (c, now) = (&a.cfg, a.now);
        let doms = domains.iter().map(|d| d.to_string()).collect();
        a.s.handle_auth(AuthOutcome::Ok(doms), now, &actx(c));
        assert_eq!(a.codes(), vec![235]);
        a
    }

    fn send(&mut self, data: impl AsRef<[u8]>) {
        let (c, now) = (&self.cfg, self.now);
        self.s.handle_input(data.as_ref(), now, &actx(c));
        while let Some(e) = self.s.poll_event() {
            self.events.push(e);
        }
    }

    fn answer(&mut self, r: &Reply) {
        let (c, now) = (&self.cfg, self.now);
        self.s.handle_atrn(r, now, &actx(c));
    }

    fn take(&mut self) -> String {
        let out = String::from_utf8_lossy(self.s.pending_output()).into_owned();
        let n = self.s.pending_output().len();
        self.s.consume_output(n);
        out
    }

    fn codes(&mut self) -> Vec<u16> {
        self.take()
            .lines()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .map(|l| l[..3].parse().unwrap())
            .collect()
    }

    fn atrn_asked(&self) -> Option<(String, Vec<String>)> {
        self.events.iter().find_map(|e| match e {
            Event::Atrn { user, domains } => Some((user.clone(), domains.clone())),
            _ => None,
        })
    }
}

#[test]
fn odmr_and_submission_list_atrn_in_ehlo_and_smtp_does_not() {
    for (kind, listed) in [
        (ListenKind::Odmr, true),
        (ListenKind::Submission, true),
        (ListenKind::Smtp, false),
    ] {
        let mut a = A::new(kind);
        a.send("EHLO customer.example\r\n");
        let text = a.take();
        assert_eq!(text.contains("ATRN"), listed, "{kind:?}: {text}");
        assert!(text.contains("AUTH") && text.contains("CRAM-MD5"), "{text}");
    }
}

#[test]
fn atrn_on_the_smtp_listener_is_502() {
    let mut a = A::authed(ListenKind::Smtp, &["client.dom"]);
    a.send("ATRN client.dom\r\n");
    assert_eq!(a.codes(), vec![502]);
    assert!(a.atrn_asked().is_none());
}

#[test]
fn atrn_before_auth_is_530() {
    let mut a = A::new(ListenKind::Odmr);
    a.send("EHLO customer.example\r\n");
    a.take();
    a.send("ATRN client.dom\r\n");
    assert_eq!(a.codes(), vec![530]);
    a.send("ATRN\r\n");
    assert_eq!(a.codes(), vec![530]);
    assert!(a.atrn_asked().is_none());
}

#[test]
fn other_commands_on_the_odmr_listener_are_502() {
    let mut a = A::authed(ListenKind::Odmr, &["client.dom"]);
    for cmd in [
        "MAIL FROM:<a@b.example>",
        "RCPT TO:<x@client.dom>",
        "ETRN client.dom",
        "NOOP",
    ] {
        a.send(format!("{cmd}\r\n"));
        assert_eq!(a.codes(), vec![502], "{cmd}");
    }
}

#[test]
fn atrn_in_a_transaction_is_503() {
    let mut a = A::authed(ListenKind::Submission, &["client.dom"]);
    a.send("MAIL FROM:<a@client.dom>\r\n");
    assert_eq!(a.codes(), vec![250]);
    a.send("ATRN client.dom\r\n");
    assert_eq!(a.codes(), vec![503]);
    assert!(a.atrn_asked().is_none());
}

#[test]
fn a_bad_list_is_501() {
    let mut a = A::authed(ListenKind::Odmr, &["client.dom"]);
    for bad in [
        "client.dom,",
        "client.dom, other.dom",
        "client",
        "[192.0.2.1]",
        "a..b",
    ] {
        a.send(format!("ATRN {bad}\r\n"));
        assert_eq!(a.codes(), vec![501], "{bad}");
    }
    assert!(a.atrn_asked().is_none());
}

#[test]
fn a_domain_the_identity_is_not_entitled_to_is_450_and_nothing_is_asked() {
    let mut a = A::authed(ListenKind::Odmr, &["client.dom", "@other.dom"]);
    a.send("ATRN client.dom,third.dom\r\n");
    assert_eq!(a.codes(), vec![450]);
    assert!(a.atrn_asked().is_none());
    // `client.dom` does not cover its subdomains; `@other.dom` does.
    a.send("ATRN sub.client.dom\r\n");
    assert_eq!(a.codes(), vec![450]);
    a.send("ATRN other.dom,mail.other.dom\r\n");
    assert_eq!(a.take(), "", "no reply before the loop answers");
    assert_eq!(
        a.atrn_asked(),
        Some((
            "cust".into(),
            vec!["other.dom".to_string(), "mail.other.dom".to_string()]
        ))
    );
}

#[test]
fn an_identity_without_domains_gets_450_for_a_bare_atrn() {
    let mut a = A::authed(ListenKind::Odmr, &[]);
    a.send("ATRN\r\n");
    assert_eq!(a.codes(), vec![450]);
}

#[test]
fn a_bare_atrn_asks_for_all_of_the_identitys_domains() {
    let mut a = A::authed(ListenKind::Odmr, &["client.dom"]);
    a.send("ATRN\r\n");
    assert_eq!(a.atrn_asked(), Some(("cust".into(), vec![])));
}

#[test]
fn the_loops_refusals_leave_the_session_usable() {
    let mut a = A::authed(ListenKind::Odmr, &["client.dom"]);
    for r in [
        Reply::ATRN_NO_MAIL,
        Reply::ATRN_CANNOT_CHECK,
        Reply::ATRN_TOO_OFTEN,
    ] {
        a.events.clear();
        a.send("ATRN client.dom\r\n");
        assert!(a.atrn_asked().is_some());
        assert!(
            !a.s.wants_read(a.now),
            "nothing is read while the loop decides"
        );
        a.answer(&r);
        assert_eq!(a.codes(), vec![r.code]);
        assert!(!a.s.turned());
    }
    a.send("QUIT\r\n");
    assert_eq!(a.codes(), vec![221]);
}

#[test]
fn a_250_turns_the_session_and_nothing_more_is_read_or_said() {
    let mut a = A::authed(ListenKind::Odmr, &["client.dom"]);
    a.send("ATRN client.dom\r\n");
    a.answer(&Reply::ATRN_TURNING);
    assert_eq!(a.codes(), vec![250]);
    assert!(a.s.turned());
    assert!(!a.s.wants_read(a.now));
    assert_eq!(a.s.poll_timeout(), None, "the loop owns the link now");
    a.s.shutdown("mx.ours.example");
    assert_eq!(a.take(), "", "no 421 after the 250");
}

#[test]
fn input_pipelined_behind_atrn_ends_the_session() {
    let mut a = A::authed(ListenKind::Odmr, &["client.dom"]);
    a.send("ATRN client.dom\r\n220 customer ready\r\n");
    assert!(a.atrn_asked().is_none());
    assert!(a.s.is_closing());
}

#[test]
fn the_reversed_session_greets_at_once_and_offers_no_tls_auth_or_atrn() {
    let cfg = config(false);
    let now = Instant::now();
    let addr: SocketAddr = "192.0.2.1:366".parse().unwrap();
    let mut s = ServerSession::reversed(3, addr, "mail.isp.dom", None, &actx(&cfg), now);
    assert!(String::from_utf8_lossy(s.pending_output()).starts_with("220 "));
    s.consume_output(s.pending_output().len());
    s.handle_input(b"EHLO mail.isp.dom\r\n", now, &actx(&cfg));
    let text = String::from_utf8_lossy(s.pending_output()).into_owned();
    assert!(text.starts_with("250-"), "{text}");
    for word in ["STARTTLS", "AUTH", "ATRN"] {
        assert!(!text.contains(word), "{word} in {text}");
    }
    s.consume_output(s.pending_output().len());
    s.handle_input(b"STARTTLS\r\n", now, &actx(&cfg));
    assert!(String::from_utf8_lossy(s.pending_output()).starts_with("502 "));
    assert_eq!(s.provider(), Some("mail.isp.dom"));
}

#[test]
fn ready_cram_md5_without_tls_only_where_auth_clear_cram_allows() {
    // The default: the odmr listener only.
    let cfg = config(false);
    assert_eq!(cfg.main.auth_clear_cram, vec![ListenKind::Odmr]);
    for (kind, offered) in [(ListenKind::Odmr, true), (ListenKind::Smtp, false)] {
        let now = Instant::now();
        let addr: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let ctx = || {
            let mut c = actx(&cfg);
            c.policy.clear_cram = &cfg.main.auth_clear_cram;
            c
        };
        let mut s = ServerSession::new(9, addr, kind, &ctx(), now);
        let now = now + Duration::from_secs(1);
        s.handle_timeout(now, &ctx());
        s.handle_input(b"EHLO customer.example\r\n", now, &ctx());
        s.handle_input(b"AUTH CRAM-MD5\r\n", now, &ctx());
        let out = String::from_utf8_lossy(s.pending_output()).into_owned();
        assert_eq!(out.contains("CRAM-MD5"), offered, "{kind:?}: {out}");
        if offered {
            assert!(out.ends_with("\r\n") && out.contains("\r\n334 "), "{out}");
        } else {
            assert!(out.contains("538 5.7.11"), "{kind:?}: {out}");
        }
    }
}
