//! Heap bytes the scheduler keeps per queued message: N held one-recipient messages.
//!
//!     cargo run --release --example sched_mem [N]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use etrnd::config::scheduler::SchedulerConf;
use etrnd::sched::Scheduler;
use etrnd::smtp::Mailbox;
use etrnd::store::spool::{Destination, Envelope, MessageId, Recipient};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static CHUNKS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        CHUNKS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout as requested.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        CHUNKS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: p came from System.alloc with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let text = "*/* interval=1h expiry=1d\nsmtp-etrn/* queueonly command=smtp\n";
    let conf = SchedulerConf::parse(std::path::Path::new("s"), text, "/log").unwrap();
    let mut s = Scheduler::new(conf, 1);
    let envs: Vec<Envelope> = (0..n)
        .map(|i| Envelope {
            arrival: 1_000,
            client: "-".into(),
            helo: "h".into(),
            protocol: "ESMTP".into(),
            eight_bit: false,
            sender: None,
            recipients: vec![Recipient {
                address: Mailbox::parse(&format!("user{i}@c{}.dom", i % 50)).unwrap(),
                dest: Destination::Remote {
                    channel: "smtp-etrn".into(),
                    host: format!("mail.c{}.dom", i % 50),
                },
                dsn: Default::default(),
            }],
            dsn: Default::default(),
            smtputf8: false,
        })
        .collect();
    let (b0, c0) = (LIVE.load(Ordering::Relaxed), CHUNKS.load(Ordering::Relaxed));
    for (i, e) in envs.iter().enumerate() {
        s.add_message(MessageId(i as u64), e, &[], 1_000);
    }
    let (b1, c1) = (LIVE.load(Ordering::Relaxed), CHUNKS.load(Ordering::Relaxed));
    let per = (b1 - b0) as f64 / n as f64;
    let chunks = (c1 - c0) as f64 / n as f64;
    // glibc: 8 octets of header per chunk, rounded up to 16, at least 32.
    println!(
        "{n} held messages (50 domains): {per:.0} heap octets and {chunks:.1} allocations per message \
         (about {:.0} octets with malloc's chunk overhead)",
        per + chunks * 12.0
    );
}
