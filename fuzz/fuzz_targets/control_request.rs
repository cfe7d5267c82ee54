//! The control socket's protocol: what any local user can send. The input is a
//! stream of octets split into request lines as the daemon splits a connection's
//! input (at LF, at most MAX_REQUEST octets), each parsed, and the same octets
//! drive the desk's connection and rate bounds for a few uids over time: no panic,
//! and the bounds hold whatever the order.
#![no_main]
use std::time::{Duration, Instant};

use etrnd::daemon::control::{
    Desk, Request, Requester, MAX_CONNS, MAX_CONNS_PER_UID, MAX_REQUEST,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Requests, as a connection delivers them.
    let mut rest = data;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(rest.len())
            .min(MAX_REQUEST + 1);
        let (line, more) = rest.split_at(end);
        if let Err(r) = Request::parse(line) {
            assert!(r.code >= 400);
        }
        rest = more;
    }
    // The desk: each octet an operation of one of four uids (two privileged).
    let mut desk = Desk::default();
    let t0 = Instant::now();
    let mut now = t0;
    let mut open = [0usize; 4];
    let mut granted = [0u32; 4];
    for &b in data {
        let uid = u32::from(b & 3);
        let who = Requester::new(uid * 1000, 1000);
        match b >> 2 & 3 {
            0 => {
                if desk.connect(who, now).is_ok() {
                    open[uid as usize] += 1;
                }
            }
            1 => {
                if open[uid as usize] > 0 && desk.request(who, now).is_ok() {
                    granted[uid as usize] += 1;
                }
            }
            2 => {
                if open[uid as usize] > 0 {
                    open[uid as usize] -= 1;
                    desk.closed(who);
                }
            }
            _ => now += Duration::from_millis(u64::from(b >> 4) * 100),
        }
        assert!(desk.open() <= MAX_CONNS);
        assert_eq!(desk.open(), open.iter().sum::<usize>());
        assert!(open.iter().all(|&n| n <= MAX_CONNS_PER_UID));
    }
    // Unprivileged uids never got more than the burst plus the rate.
    let secs = now.duration_since(t0).as_secs() + 1;
    for uid in [2usize, 3] {
        let limit = u64::from(etrnd::daemon::control::BURST)
            + secs * u64::from(etrnd::daemon::control::PER_SECOND);
        assert!(u64::from(granted[uid]) <= limit, "uid {uid}: {}", granted[uid]);
    }
});
