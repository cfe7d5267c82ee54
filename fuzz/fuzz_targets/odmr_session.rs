//! The server session on an ODMR listener, fed arbitrary bytes: AUTH checks are
//! answered as the loop would (accepted, with a few domains), ATRN requests get a
//! reply the input chooses among the loop's answers. No panic, bounded output, and
//! once the session has turned around it neither reads nor writes again.
#![no_main]
use libfuzzer_sys::fuzz_target;

mod common;

use std::time::{Duration, Instant};

use etrnd::smtp::reply::Reply;
use etrnd::smtp::server::{AuthOffer, AuthOutcome, Context, Event, ServerSession};

const ANSWERS: [Reply; 6] = [
    Reply::ATRN_TURNING,
    Reply::ATRN_NO_MAIL,
    Reply::ATRN_CANNOT_CHECK,
    Reply::ATRN_TOO_OFTEN,
    Reply::ATRN_BUSY,
    Reply::ATRN_NOT_ENTITLED,
];

fuzz_target!(|data: &[u8]| {
    let cfg = common::config("client.dom odmr!\n");
    let mut policy = cfg.policy();
    policy.auth = AuthOffer { enabled: true, cram: true };
    let ctx = Context { policy, disk_low: false, unix_time: 0, tls_busy: false, held_full: None, nonce: 1 };
    let mut now = Instant::now();
    let kind = if data.first().is_some_and(|b| b & 1 == 1) {
        etrnd::config::ListenKind::Submission
    } else {
        etrnd::config::ListenKind::Odmr
    };
    let mut s = ServerSession::new(1, "127.0.0.1:4000".parse().unwrap(), kind, &ctx, now);
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = (n as usize % 64).min(tail.len());
        let (chunk, tail) = tail.split_at(n);
        if s.wants_read(now) {
            s.handle_input(chunk, now, &ctx);
        }
        while let Some(ev) = s.poll_event() {
            match ev {
                Event::AuthCheck(_) => s.handle_auth(
                    AuthOutcome::Ok(vec!["client.dom".into(), "@other.dom".into()]),
                    now,
                    &ctx,
                ),
                Event::Atrn { domains, .. } => {
                    assert!(domains.len() <= etrnd::smtp::atrn::MAX_ATRN_DOMAINS);
                    let r = &ANSWERS[n % ANSWERS.len()];
                    s.handle_atrn(r, now, &ctx);
                }
                _ => {}
            }
        }
        let out = s.pending_output().len();
        assert!(out <= 256 * 1024);
        s.consume_output(out);
        if s.turned() {
            assert!(!s.wants_read(now));
            s.handle_input(chunk, now, &ctx);
            assert!(s.pending_output().is_empty(), "nothing after the 250 to ATRN");
            break;
        }
        now += Duration::from_millis(u64::from(n as u8) * 7);
        s.handle_timeout(now, &ctx);
        rest = tail;
        if s.is_closing() {
            break;
        }
    }
});
