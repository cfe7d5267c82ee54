//! A day of simulated submissions on a dial-on-demand host: how many times each
//! `LINK_DIAL_WHEN` setting dials, and how long mail waits for the line.
//!
//! The scheduler and the dial verdict are the daemon's own (`Scheduler::dial_sum`,
//! `DialWhen::verdict`); the line is modelled: it is up 30 s after a dial, sends
//! what is held at once, and ppp hangs up after 2 idle minutes. Submissions follow
//! a fixed pseudo-random pattern (a busy office day: about 9 an hour from 08:00 to
//! 18:00, 1 an hour otherwise), the same for every setting.
//!
//! `cargo run --release --example dial_day`

use etrnd::config::links::DialWhen;
use etrnd::config::scheduler::SchedulerConf;
use etrnd::sched::{RcptResult, Scheduler};
use etrnd::store::spool::{Destination, Envelope, MessageId, Recipient};
use etrnd::vocab::Mailbox;

const DAY: u64 = 86_400;
const CONNECT: u64 = 30;
const IDLE: u64 = 120;

fn arrivals() -> Vec<u64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::new();
    for minute in 0..DAY / 60 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let hour = minute / 60;
        // Per minute, in thousandths.
        let p = if (8..18).contains(&hour) { 150 } else { 17 };
        if x % 1000 < p {
            out.push(minute * 60 + (x >> 32) % 60);
        }
    }
    out
}

fn env(arrival: u64) -> Envelope {
    Envelope {
        arrival,
        client: "-".into(),
        helo: "h".into(),
        protocol: "ESMTP".into(),
        eight_bit: false,
        sender: Some(Mailbox::parse("me@client.dom").unwrap()),
        recipients: vec![Recipient {
            address: Mailbox::parse("you@far.example").unwrap(),
            dest: Destination::Remote {
                channel: "smtp".into(),
                host: "mail.isp.dom".into(),
            },
            dsn: Default::default(),
        }],
        dsn: Default::default(),
        smtputf8: false,
    }
}

/// Dials, the longest and mean wait of a message for the line (seconds), and how
/// many were still held six hours after the day.
fn simulate(when: &DialWhen, times: &[u64]) -> (u32, u64, u64, usize) {
    let conf = SchedulerConf::parse(
        std::path::Path::new("scheduler.conf"),
        "smtp/* expiry=5d command=smtp\n",
        "/tmp",
    )
    .unwrap();
    let mut s = Scheduler::new(conf, 1);
    let target = etrnd::config::links::LinkTarget::parse("#smtp").unwrap();
    s.set_blocked(vec![target.clone()]);
    let (mut dials, mut worst, mut total, mut sent) = (0u32, 0u64, 0u64, 0u64);
    // None: down; Some(t): up (or coming up) since t, last busy at `busy`.
    let mut up: Option<u64> = None;
    let mut busy = 0u64;
    let mut next = 0usize;
    for now in 0..DAY + 6 * 3600 {
        while next < times.len() && times[next] == now {
            s.add_message(MessageId(next as u64 + 1), &env(now), &[], now);
            next += 1;
        }
        match up {
            None => {
                let (sum, _) = s.dial_sum(|k| target.covers(&k.channel, &k.host), now);
                if when
                    .verdict(sum.messages, sum.octets, sum.oldest, now)
                    .is_ok()
                {
                    dials += 1;
                    up = Some(now + CONNECT);
                    busy = now + CONNECT;
                }
            }
            Some(t) if now == t => {
                s.set_blocked(Vec::new());
                let _ = s.release(|_, _| true);
            }
            Some(t) if now > t => {
                while let Some(job) = s.poll_job(now) {
                    for r in &job.rcpts {
                        if let Some((_, arrival)) = s.rcpt_info(*r) {
                            let wait = now - arrival;
                            worst = worst.max(wait);
                            total += wait;
                            sent += 1;
                        }
                    }
                    let res: Vec<_> = job
                        .rcpts
                        .iter()
                        .map(|r| (*r, RcptResult::Delivered))
                        .collect();
                    s.job_done(job.id, &res, now);
                    busy = now;
                }
                if now >= busy + IDLE {
                    up = None;
                    s.set_blocked(vec![target.clone()]);
                }
            }
            Some(_) => {}
        }
    }
    (dials, worst, total / sent.max(1), s.messages())
}

fn main() {
    let times = arrivals();
    println!(
        "{} submissions in a day; line up {CONNECT} s after a dial, hung up after {IDLE} s idle",
        times.len()
    );
    println!(
        "{:<28} {:>6} {:>12} {:>12} {:>10}",
        "LINK_DIAL_WHEN", "dials", "worst wait", "mean wait", "left held"
    );
    for setting in [
        "",
        "count=20",
        "age=2h",
        "age=2h count=20",
        "age=30m octets=1M",
    ] {
        let w = DialWhen::parse(setting).unwrap();
        let (dials, worst, mean, left) = simulate(&w, &times);
        let name = if setting.is_empty() {
            "(empty: any held mail)"
        } else {
            setting
        };
        println!(
            "{name:<28} {dials:>6} {:>10} m {:>10} m {left:>10}",
            worst / 60,
            mean / 60
        );
    }
}
