//! The server session fed arbitrary bytes in arbitrary segments, with a simulated
//! clock: no panic, bounded output, state always consistent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::time::{Duration, Instant};

use etrnd::config::{main_conf::MainConf, routes, Config};
use etrnd::route::{RouteTrie, Router};
use etrnd::smtp::server::{Context, ServerSession};
use etrnd::smtp::Domain;

fn config() -> Config {
    let mut main = MainConf::defaults(Path::new("/fuzz/etrnd.conf"));
    main.hostname = "mx.fuzz.example".into();
    main.greet_pause = Duration::ZERO;
    main.max_message_size = 4096;
    let entries = routes::parse(Path::new("r"), ".client.dom smtp-etrn!mail.client.dom\n").unwrap();
    Config {
        main,
        router: Router {
            trie: RouteTrie::new(entries),
            localnames: [Domain::parse("fuzz.example").unwrap()].into_iter().collect(),
            aliases: Default::default(),
            protocols_smtp: false,
            accounts: etrnd::accounts::Accounts::from_list(&[("root", 0, 0, "/root")]),
        },
        resolve: etrnd::dns::ResolveConf {
            order: vec![etrnd::config::main_conf::HostSource::Files],
            hosts: Default::default(),
            resolv: Default::default(),
        },
        sched: etrnd::config::scheduler::SchedulerConf::builtin("/log"),
    }
}

fuzz_target!(|data: &[u8]| {
    let cfg = config();
    let ctx = Context { policy: cfg.policy(), disk_low: false, unix_time: 0, tls_busy: false };
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
        while s.poll_event().is_some() {}
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
