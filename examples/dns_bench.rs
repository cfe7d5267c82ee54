//! Resolver figures: next-hop lookup latency (cold and cached) and heap bytes per
//! cached name, against a real DNS server.
//!
//!     cargo run --release --example dns_bench -- 127.0.0.1:PORT NAME-PATTERN COUNT
//!
//! NAME-PATTERN contains `{}`, replaced by 0..COUNT (e.g. `h{}.test`); each name
//! needs an A record. `bench/dns.sh` starts dnsmasq with such a zone and runs this.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etrnd::config::main_conf::HostSource;
use etrnd::daemon::io::dns_io::resolve_all;
use etrnd::dns::files::{HostsTable, ResolvConf, ResolveConf};
use etrnd::dns::{Dns, Outcome, SelfSpec};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to the system allocator and only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same layout as requested.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: p came from System.alloc with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let server = args
        .get(1)
        .expect("server address")
        .parse()
        .expect("addr:port");
    let pattern = args.get(2).map(String::as_str).unwrap_or("h{}.test");
    let count: usize = args.get(3).and_then(|c| c.parse().ok()).unwrap_or(1000);
    let conf = ResolveConf {
        order: vec![HostSource::Dns],
        hosts: HostsTable::default(),
        resolv: ResolvConf {
            servers: vec![server],
            timeout: Duration::from_secs(2),
            attempts: 2,
            rotate: false,
            lookup: None,
        },
    };
    let mut dns = Dns::new(
        conf,
        SelfSpec::default(),
        25,
        (12345, etrnd::sys::fill_random),
    );
    let names: Vec<(String, bool)> = (0..count)
        .map(|i| (pattern.replace("{}", &i.to_string()), false))
        .collect();

    // Latency of one name: cold (MX + A + AAAA queries), then cached.
    let one = [names[0].clone()];
    let t = Instant::now();
    let r = resolve_all(&mut dns, &one, Duration::from_secs(10)).unwrap();
    let cold = t.elapsed();
    assert!(matches!(r[0], Outcome::Hops(_)), "{:?}", r[0]);
    let t = Instant::now();
    let rounds = 1000;
    for _ in 0..rounds {
        resolve_all(&mut dns, &one, Duration::from_secs(10)).unwrap();
    }
    let cached = t.elapsed() / rounds;
    println!(
        "next-hop lookup, cold (MX, A, AAAA from the server): {:?}",
        cold
    );
    println!("next-hop lookup, cached (mean of {rounds}): {:?}", cached);

    // Memory: resolve every name, compare heap before and after.
    let before_entries = dns.cache_len();
    dns.shrink_to_fit();
    let before = LIVE.load(Ordering::Relaxed);
    let t = Instant::now();
    let outcomes = resolve_all(&mut dns, &names[1..], Duration::from_secs(60)).unwrap();
    let all = t.elapsed();
    let ok = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Hops(_)))
        .count();
    drop(outcomes);
    dns.shrink_to_fit();
    let after = LIVE.load(Ordering::Relaxed);
    let entries = dns.cache_len() - before_entries;
    println!(
        "{} names resolved concurrently in {:?} ({} ok, {} queries sent in all)",
        names.len() - 1,
        all,
        ok,
        dns.queries_sent()
    );
    println!(
        "cache: {} entries (3 per name: MX, A, AAAA), {} heap bytes, {} bytes per name",
        entries,
        after.saturating_sub(before),
        after.saturating_sub(before) / (names.len() - 1).max(1)
    );
}
