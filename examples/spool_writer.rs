//! Builds a held spool directly, with the spool's own writer: N one-recipient
//! messages of about SIZE octets spread over D held destinations
//! (`smtp-etrn!cK.example`, recipient `uI@cK.example`), committed and parked in
//! `hold/` with their index lines, as the daemon would have left them. For the hold
//! store benchmarks (bench/holdstore.py): a million messages through SMTP would
//! take most of an hour.
//!
//!     cargo run --release --example spool_writer -- POSTOFFICE N D [SIZE]
//!
//! Every file is written whole and verifies; fsync is skipped (nothing is
//! acknowledged to anyone) and the index is marked clean at the end after one sync.

use etrnd::smtp::Mailbox;
use etrnd::store::spool::held::{index_name, IndexEntry};
use etrnd::store::spool::{Destination, Envelope, Fault, Recipient, Spool};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: spool_writer POSTOFFICE MESSAGES DESTINATIONS [SIZE]");
        std::process::exit(64);
    }
    let root = std::path::Path::new(&args[1]);
    let n: u64 = args[2].parse().expect("MESSAGES");
    let dests: u64 = args[3].parse::<u64>().expect("DESTINATIONS").max(1);
    let size: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(600);
    let mut spool = Spool::open(root).expect("spool");
    spool.fault = Some(Fault::NoSync);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let filler = "x".repeat(72);
    let started = std::time::Instant::now();
    let batch = 256;
    let mut i = 0u64;
    while i < n {
        let mut incoming = Vec::new();
        let mut meta = Vec::new();
        for j in i..(i + batch).min(n) {
            let k = j % dests;
            let domain = format!("c{k}.example");
            let env = Envelope {
                arrival: now,
                client: "127.0.0.1".into(),
                helo: "writer.example".into(),
                protocol: "ESMTP".into(),
                eight_bit: false,
                sender: Some(Mailbox::parse("sender@bench.example").unwrap()),
                recipients: vec![Recipient {
                    address: Mailbox::parse(&format!("u{j}@{domain}")).unwrap(),
                    dest: Destination::Remote {
                        channel: "smtp-etrn".into(),
                        host: domain.clone(),
                    },
                    dsn: Default::default(),
                }],
                dsn: Default::default(),
                smtputf8: false,
            };
            let mut inc = spool.begin(&env).expect("begin");
            let mut body = format!(
                "Received: from writer.example\r\nSubject: held {j}\r\nMessage-ID: <{j}@bench.example>\r\n\r\n"
            );
            while body.len() + 74 < size {
                body.push_str(&filler);
                body.push_str("\r\n");
            }
            inc.write(body.as_bytes());
            meta.push(domain);
            incoming.push(inc);
        }
        let results = spool.commit(incoming);
        for (r, domain) in results.into_iter().zip(meta) {
            let id = r.expect("commit");
            let size = std::fs::metadata(spool.queue_path(id)).map_or(0, |m| m.len());
            let e = IndexEntry {
                id,
                arrival: now,
                size,
                tried: false,
                reported: 0,
                domain: domain.clone(),
                next: 0,
            };
            let name = index_name("smtp-etrn", &domain).unwrap();
            spool.park(id, &[(name, e)]).expect("park");
        }
        i = (i + batch).min(n);
        if i.is_multiple_of(100_000) {
            eprintln!("{i} written, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    // Durability for a benchmark: one sync of everything, then the
    // index is marked clean (what a clean stop writes).
    std::process::Command::new("sync").status().ok();
    spool.mark_index(true).expect("mark");
    println!(
        "{n} held messages for {dests} destinations in {} ({:.1} s)",
        root.display(),
        started.elapsed().as_secs_f64()
    );
}
