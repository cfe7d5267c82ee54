//! The server session fed arbitrary bytes in arbitrary segments, with a simulated
//! clock: no panic, bounded output, state always consistent.
#![no_main]
use libfuzzer_sys::fuzz_target;

mod common;

use std::time::{Duration, Instant};

use etrnd::smtp::server::{Context, ServerSession};

fuzz_target!(|data: &[u8]| {
    let cfg = common::config(".client.dom smtp-etrn!mail.client.dom\n");
    let ctx = Context { policy: cfg.policy(), disk_low: false, unix_time: 0, tls_busy: false, held_full: None, nonce: 1 };
    let mut now = Instant::now();
    let mut s = ServerSession::new(1, "127.0.0.1:4000".parse().unwrap(), etrnd::config::ListenKind::Smtp, &ctx, now);
    // The first byte of each chunk sets the chunk length; time moves on per chunk.
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = (n as usize % 64).min(tail.len());
        let (chunk, tail) = tail.split_at(n);
        if s.wants_read(now) {
            s.handle_input(chunk, now, &ctx);
        }
        let mut ended = false;
        while let Some(e) = s.poll_event() {
            ended |= matches!(e, etrnd::smtp::server::Event::MessageEnd);
        }
        if ended {
            // The spool's answer, so BDAT LAST and DATA go on to the next command.
            s.handle_commit(Ok(etrnd::store::spool::MessageId(7)), now, &ctx);
            while s.poll_event().is_some() {}
        }
        let out = s.pending_output().len();
        s.consume_output(out);
        now += Duration::from_millis(u64::from(n as u8) * 7);
        s.handle_timeout(now, &ctx);
        rest = tail;
        if s.is_closing() {
            break;
        }
    }
});
