//! DNS answers: whatever comes back, the resolver and next-hop selection must not
//! panic. The fuzz input becomes the answer, with the query's id and question
//! patched in so that validation lets it through.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

use etrnd::dns::{Dns, ResolveConf, SelfSpec};
use etrnd::dns::files::ResolvConf;

fuzz_target!(|data: &[u8]| {
    let server = "127.0.0.1:53".parse().unwrap();
    let conf = ResolveConf {
        order: vec![etrnd::config::main_conf::HostSource::Dns],
        hosts: Default::default(),
        resolv: ResolvConf { servers: vec![server], timeout: Duration::from_secs(1), attempts: 1, ..Default::default() },
    };
    let mut dns = Dns::new(conf, SelfSpec::default(), 25, (1, etrnd::sys::fill_random));
    let now = Instant::now();
    dns.lookup("dest.example", false, now);
    for _ in 0..4 {
        let Some(t) = dns.poll_transmit() else { break };
        let mut answer = data.to_vec();
        if answer.len() >= 2 && t.data.len() >= 2 {
            answer[0] = t.data[0];
            answer[1] = t.data[1];
        }
        if data.first().is_some_and(|b| b & 1 == 1) && answer.len() > 12 {
            // Also try with the real question section copied in.
            let q_end = t.data.len().min(answer.len());
            answer[12..q_end].copy_from_slice(&t.data[12..q_end]);
        }
        dns.handle_datagram(server, &answer, now);
    }
    dns.handle_timeout(now + Duration::from_secs(10));
    while dns.poll_done().is_some() {}
});
