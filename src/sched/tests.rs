//! Scheduler tests with a fake clock (Unix seconds).

use super::*;
use crate::store::spool::Recipient;
use crate::vocab::Mailbox;
use std::path::Path;

pub(super) fn conf(text: &str) -> SchedulerConf {
    SchedulerConf::parse(Path::new("s"), text, "/log").unwrap()
}

pub(super) fn env(arrival: Unix, dests: &[(&str, &str)]) -> Envelope {
    Envelope {
        arrival,
        client: "-".into(),
        helo: "h".into(),
        protocol: "ESMTP".into(),
        eight_bit: false,
        sender: Some(Mailbox::parse("s@x.example").unwrap()),
        recipients: dests
            .iter()
            .enumerate()
            .map(|(i, (c, h))| Recipient {
                address: Mailbox::parse(&format!("u{i}@{h}")).unwrap(),
                dest: Destination::Remote {
                    channel: c.to_string(),
                    host: h.to_string(),
                },
                dsn: Default::default(),
            })
            .collect(),
        dsn: Default::default(),
        smtputf8: false,
    }
}

const BASIC: &str = "*/* interval=10s retries=\"1 2 3\" expiry=100s expiry2=50s\n\
    smtp-etrn/* queueonly command=\"smtp -c $channel\"\n\
    smtp/* maxthr=1 command=smtp\n\
    hold/* command=hold\n";

fn all_jobs(s: &mut Scheduler, now: Unix) -> Vec<Job> {
    std::iter::from_fn(|| s.poll_job(now)).collect()
}

#[test]
fn arrival_starts_a_job_for_the_whole_thread() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    for i in 0..5 {
        s.add_message(MessageId(i), &env(0, &[("smtp", "a.example")]), &[], 0);
    }
    let jobs = all_jobs(&mut s, 0);
    assert_eq!(jobs.len(), 1, "one connection for the thread");
    assert_eq!(jobs[0].rcpts.len(), 5);
    assert_eq!(jobs[0].key.to_string(), "smtp!a.example");
    assert!(matches!(jobs[0].transport, Transport::Smtp { .. }));
}

#[test]
fn deferral_sleeps_the_thread_per_retries_times_interval() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    s.add_message(MessageId(1), &env(0, &[("smtp", "dead.example")]), &[], 0);
    let mut now = 0;
    let mut gaps = Vec::new();
    for _ in 0..5 {
        let j = s.poll_job(now).expect("due");
        let r: Vec<_> = j
            .rcpts
            .iter()
            .map(|r| (*r, RcptResult::Deferred("421 down".into())))
            .collect();
        s.job_done(j.id, &r, now);
        // New mail for the same dead host does not cause an extra attempt.
        s.add_message(
            MessageId(100 + now),
            &env(now, &[("smtp", "dead.example")]),
            &[],
            now,
        );
        assert!(
            s.poll_job(now).is_none(),
            "no attempt before the retry slot"
        );
        let next = s.poll_timeout().unwrap();
        gaps.push(next - now);
        now = next;
    }
    assert_eq!(gaps[..3], [10, 20, 30]);
    assert!(
        gaps[3..].iter().all(|g| [10, 20, 30].contains(g)),
        "{gaps:?}"
    );
    let (_, rec) = s.poll_record().unwrap();
    assert!(matches!(rec, StateRecord::Deferred { next: 10, .. }));
}

#[test]
fn queue_only_waits_for_a_release() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    s.add_message(
        MessageId(1),
        &env(0, &[("smtp-etrn", "mail.client.dom")]),
        &[],
        0,
    );
    s.add_message(MessageId(2), &env(0, &[("smtp-etrn", "other.dom")]), &[], 0);
    assert!(s.poll_job(0).is_none());
    assert!(s.poll_job(1_000_000).is_none(), "no timer starts it");
    assert_eq!(s.poll_timeout(), Some(150), "only expiry2 is pending");
    let r = s.release(|k, _| k.host == "mail.client.dom");
    assert_eq!((r.messages, r.matched, r.active), (1, true, false));
    let j = s.poll_job(5).unwrap();
    assert_eq!(j.key.host, "mail.client.dom");
    assert!(s.poll_job(5).is_none());
    // Deferred during the run: held again, not retried by timer.
    s.job_done(
        j.id,
        &[(j.rcpts[0], RcptResult::Deferred("down".into()))],
        5,
    );
    assert!(s.poll_job(10_000).is_none());
}

#[test]
fn a_release_waits_out_the_gap_after_failed_attempts() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    let env1 = env(0, &[("smtp-etrn", "mail.client.dom")]);
    s.add_message(MessageId(1), &env1, &[], 0);
    let fail = |s: &mut Scheduler, now: Unix| {
        let r = s.release_at(|_, _| true, now);
        assert_eq!(r.messages, 1, "released at {now}");
        let j = s.poll_job(now).unwrap();
        s.job_done(
            j.id,
            &[(j.rcpts[0], RcptResult::Deferred("down".into()))],
            now,
        );
    };
    fail(&mut s, 100);
    // ETRNs in the next minute find it, start nothing, and say until when.
    let r = s.release_at(|_, _| true, 159);
    assert_eq!((r.messages, r.matched, r.not_before), (0, true, Some(160)));
    assert!(s.poll_job(159).is_none());
    assert!(s.gapped(159).keys().any(|k| k.host == "mail.client.dom"));
    // Then one attempt; a second failure doubles the gap, up to 15 minutes.
    fail(&mut s, 160);
    assert_eq!(s.release_at(|_, _| true, 161).not_before, Some(280));
    for (at, gap) in [(280, 240), (520, 480), (1_000, 900), (1_900, 900)] {
        fail(&mut s, at);
        assert_eq!(s.release_at(|_, _| true, at).not_before, Some(at + gap));
    }
    // Link up (a release without a time) is not held back; a delivery ends the gap.
    assert_eq!(s.release(|_, _| true).messages, 1);
    let j = s.poll_job(1_900).unwrap();
    s.add_message(MessageId(2), &env1, &[], 1_900);
    s.job_done(j.id, &[(j.rcpts[0], RcptResult::Delivered)], 1_901);
    let r = s.release_at(|_, _| true, 1_902);
    assert_eq!((r.messages, r.not_before), (1, None));
}

#[test]
fn release_waits_for_a_free_slot_instead_of_being_dropped() {
    let mut s = Scheduler::new(
        conf("*/* maxta=1\nsmtp-etrn/* queueonly command=smtp\nsmtp/* command=smtp\n"),
        1,
    );
    s.add_message(MessageId(1), &env(0, &[("smtp", "busy.example")]), &[], 0);
    let busy = s.poll_job(0).unwrap();
    s.add_message(
        MessageId(2),
        &env(0, &[("smtp-etrn", "client.dom")]),
        &[],
        0,
    );
    s.release(|_, _| true);
    assert!(s.poll_job(0).is_none(), "maxta full");
    s.job_done(busy.id, &[(busy.rcpts[0], RcptResult::Delivered)], 1);
    let j = s.poll_job(1).expect("the release was kept");
    assert_eq!(j.key.host, "client.dom");
}

#[test]
fn release_by_recipient_domain_takes_only_those_recipients() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    s.add_message(
        MessageId(1),
        &env(0, &[("smtp-etrn", "mail.client.dom")]),
        &[],
        0,
    );
    let mut e = env(0, &[("smtp-etrn", "mail.client.dom")]);
    e.recipients[0].address = Mailbox::parse("x@sub.client.dom").unwrap();
    s.add_message(MessageId(2), &e, &[], 0);
    // env() gives u0@<host>: message 1's recipient domain is mail.client.dom.
    let r = s.release(|_, d| d == "sub.client.dom");
    assert_eq!(r.messages, 1);
    let j = s.poll_job(0).unwrap();
    assert_eq!(
        j.rcpts,
        vec![RcptRef {
            msg: MessageId(2),
            idx: 0
        }]
    );
    assert!(s.poll_job(0).is_none(), "the other recipient stays held");
}

#[test]
fn release_unheld_overrides_back_off_only_for_unheld_threads() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    s.add_message(MessageId(1), &env(0, &[("smtp", "dead.example")]), &[], 0);
    let j = s.poll_job(0).unwrap();
    s.job_done(
        j.id,
        &[(j.rcpts[0], RcptResult::Deferred("down".into()))],
        0,
    );
    s.add_message(MessageId(2), &env(0, &[("smtp-etrn", "c.dom")]), &[], 0);
    assert!(s.poll_job(1).is_none());
    // A user's flush waits out the gap after the failure; root's does not.
    assert_eq!(s.release_unheld(1, true), 0);
    assert_eq!(s.release_unheld(1, false), 1);
    let j = s.poll_job(1).unwrap();
    assert_eq!(j.key.host, "dead.example");
    assert!(s.poll_job(1).is_none());
}

#[test]
fn expiry_bounces_with_5_4_7() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    s.add_message(MessageId(1), &env(0, &[("smtp", "dead.example")]), &[], 0);
    let j = s.poll_job(0).unwrap();
    s.job_done(
        j.id,
        &[(j.rcpts[0], RcptResult::Deferred("451 busy".into()))],
        0,
    );
    s.handle_timeout(99);
    assert!(s.poll_bounce().is_none());
    s.handle_timeout(100);
    let b = s.poll_bounce().expect("expired after an attempt");
    assert_eq!(b.failures[0].1, "5.4.7");
    assert!(b.failures[0].2.contains("451 busy"));
    assert_eq!(s.poll_complete(), Some(MessageId(1)));
}

#[test]
fn a_deferral_brings_the_known_next_expiry_forward() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    s.add_message(MessageId(1), &env(0, &[("smtp", "dead.example")]), &[], 0);
    // The next expiry is now known: 150 (never tried: expiry + expiry2).
    s.handle_timeout(0);
    s.add_message(MessageId(2), &env(0, &[("smtp", "dead.example")]), &[], 0);
    let j = s.poll_job(0).unwrap();
    let results: Vec<_> = j
        .rcpts
        .iter()
        .map(|r| (*r, RcptResult::Deferred("451 busy".into())))
        .collect();
    s.job_done(j.id, &results, 0);
    // Tried once: both expire at 100, not at the 150 computed before.
    s.handle_timeout(99);
    assert!(s.poll_bounce().is_none());
    s.handle_timeout(100);
    assert!(s.poll_bounce().is_some());
    assert!(s.poll_bounce().is_some());
    assert_eq!(s.messages(), 0);
}

#[test]
fn never_flushed_queue_only_mail_expires_at_expiry2() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    s.add_message(
        MessageId(1),
        &env(0, &[("smtp-etrn", "client.dom")]),
        &[],
        0,
    );
    s.handle_timeout(149);
    assert!(s.poll_bounce().is_none());
    s.handle_timeout(150);
    assert_eq!(s.poll_bounce().unwrap().failures[0].1, "5.4.7");
}

#[test]
fn hold_never_starts() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    s.add_message(MessageId(1), &env(0, &[("hold", "x")]), &[], 0);
    assert!(s.poll_job(1000).is_none());
}

#[test]
fn unmatched_channel_is_kept_but_never_scheduled() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    s.add_message(MessageId(1), &env(0, &[("uucp", "x")]), &[], 0);
    assert!(s.poll_job(1000).is_none());
    assert_eq!(s.messages(), 1);
}

#[test]
fn rebuild_from_journal() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    let e = env(
        0,
        &[
            ("smtp", "a.example"),
            ("smtp", "a.example"),
            ("smtp", "a.example"),
        ],
    );
    let journal = vec![
        StateRecord::Delivered { idx: 0, at: 5 },
        StateRecord::Deferred {
            idx: 1,
            at: 5,
            next: 500,
            reason: "x".into(),
        },
        StateRecord::Deferred {
            idx: 2,
            at: 5,
            next: 500,
            reason: "x".into(),
        },
    ];
    s.add_message(MessageId(1), &e, &journal, 100);
    assert!(
        s.poll_job(499).is_none(),
        "the thread sleeps until its recorded next try"
    );
    let j = s.poll_job(500).unwrap();
    assert_eq!(
        j.rcpts.iter().map(|r| r.idx).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let all_done = vec![
        StateRecord::Delivered { idx: 0, at: 5 },
        StateRecord::Failed {
            idx: 1,
            at: 5,
            reason: "x".into(),
        },
    ];
    s.add_message(
        MessageId(2),
        &env(0, &[("smtp", "b"), ("smtp", "b")]),
        &all_done[..1],
        0,
    );
    let mut s2 = Scheduler::new(conf(BASIC), 1);
    s2.add_message(
        MessageId(3),
        &env(0, &[("smtp", "b"), ("smtp", "b")]),
        &all_done,
        0,
    );
    assert_eq!(s2.poll_complete(), Some(MessageId(3)));
}

#[test]
fn failures_produce_one_bounce_per_message_and_completion() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    s.add_message(
        MessageId(1),
        &env(0, &[("smtp", "a"), ("smtp", "a"), ("smtp", "a")]),
        &[],
        0,
    );
    let j = s.poll_job(0).unwrap();
    let r = vec![
        (j.rcpts[0], RcptResult::Delivered),
        (j.rcpts[1], RcptResult::Deferred("452".into())),
        (
            j.rcpts[2],
            RcptResult::Failed("5.1.1".into(), "550 no".into()),
        ),
    ];
    s.job_done(j.id, &r, 0);
    let b = s.poll_bounce().unwrap();
    assert_eq!(b.failures, vec![(2, "5.1.1".into(), "550 no".into())]);
    assert!(s.poll_bounce().is_none());
    assert!(s.poll_complete().is_none(), "one recipient still deferred");
    assert_eq!(
        s.rcpt_state(RcptRef {
            msg: MessageId(1),
            idx: 1
        }),
        Some(RcptState::Waiting)
    );
}

#[test]
fn maxthr_splits_a_thread_over_connections() {
    let mut s = Scheduler::new(conf("smtp/* maxthr=3 command=smtp\n"), 1);
    for i in 0..10 {
        s.add_message(MessageId(i), &env(0, &[("smtp", "big.example")]), &[], 0);
    }
    let jobs = all_jobs(&mut s, 0);
    assert_eq!(jobs.len(), 3);
    assert_eq!(jobs.iter().map(|j| j.rcpts.len()).sum::<usize>(), 10);
}

/// A seeded generator: `next(n)` is in `0..n`.
fn xorshift(mut rng: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    }
}

/// Ends a job with a random result per recipient.
fn end_randomly(s: &mut Scheduler, j: &Job, now: Unix, next: &mut impl FnMut(u64) -> u64) {
    let r: Vec<_> = j
        .rcpts
        .iter()
        .map(|r| {
            let res = match next(3) {
                0 => RcptResult::Delivered,
                1 => RcptResult::Deferred("x".into()),
                _ => RcptResult::Failed("5.0.0".into(), "x".into()),
            };
            (*r, res)
        })
        .collect();
    s.job_done(j.id, &r, now);
}

#[test]
fn limits_are_never_exceeded_under_random_load() {
    let text = "*/* maxta=7\nsmtp-etrn/* maxring=2 maxchannel=3 maxthr=2 queueonly command=smtp\n\
                smtp/* maxring=4 maxchannel=5 maxthr=2 command=smtp\n";
    let mut s = Scheduler::new(conf(text), 9);
    let mut next = xorshift(0x1234_5678_9abc_def0);
    let mut running: Vec<Job> = Vec::new();
    let mut id = 0;
    for step in 0..5000u64 {
        let now = step;
        match next(4) {
            0 | 1 => {
                id += 1;
                let ch = if next(2) == 0 { "smtp" } else { "smtp-etrn" };
                let host = format!("h{}.example", next(12));
                s.add_message(MessageId(id), &env(now, &[(ch, host.as_str())]), &[], now);
                if next(5) == 0 {
                    let _ = s.release(|_, _| true);
                }
            }
            2 if !running.is_empty() => {
                let j = running.remove(next(running.len() as u64) as usize);
                end_randomly(&mut s, &j, now, &mut next);
            }
            _ => {}
        }
        while let Some(j) = s.poll_job(now) {
            running.push(j);
        }
        assert!(running.len() <= 7, "maxta");
        let count = |f: &dyn Fn(&Job) -> bool| running.iter().filter(|j| f(j)).count();
        assert!(
            count(&|j| j.key.channel == "smtp-etrn") <= 2,
            "maxring smtp-etrn"
        );
        assert!(count(&|j| j.key.channel == "smtp") <= 4, "maxring smtp");
        for j in &running {
            assert!(count(&|k| k.key == j.key) <= 2, "maxthr");
        }
        while s.poll_record().is_some() {}
        while s.poll_bounce().is_some() {}
        while s.poll_complete().is_some() {}
    }
}

/// The invariant that keeps the loop from spinning: once `poll_job(now)` has no job
/// left to give, the next timer is later than `now` (or there is none), whatever mix
/// of arrivals, limits, releases, deferrals and clock jumps came before.
#[test]
fn poll_timeout_is_later_than_now_once_no_job_starts() {
    let text = "*/* maxta=5 interval=3s retries=\"1 2\" expiry=400s expiry2=100s\n\
                smtp-etrn/* maxring=2 maxthr=1 queueonly command=smtp\n\
                slow/* maxchannel=1 maxthr=1 command=smtp\n\
                smtp/* maxring=3 maxchannel=4 maxthr=2 command=smtp\n";
    let mut s = Scheduler::new(conf(text), 5);
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let mut running: Vec<Job> = Vec::new();
    let mut now: Unix = 1000;
    let mut id = 0;
    for _ in 0..20_000 {
        match next(6) {
            0 | 1 => {
                id += 1;
                let ch = ["smtp", "smtp-etrn", "slow"][next(3) as usize];
                let host = format!("h{}.example", next(8));
                s.add_message(MessageId(id), &env(now, &[(ch, host.as_str())]), &[], now);
            }
            2 if !running.is_empty() => {
                let j = running.remove(next(running.len() as u64) as usize);
                end_randomly(&mut s, &j, now, &mut next);
            }
            3 if next(8) == 0 => {
                let _ = s.release(|_, d| d.starts_with('h'));
            }
            4 => now += next(5),
            _ => {}
        }
        s.handle_timeout(now);
        while let Some(j) = s.poll_job(now) {
            running.push(j);
        }
        if let Some(t) = s.poll_timeout() {
            assert!(
                t > now,
                "timer {t} not after now {now}: the loop would spin"
            );
        }
        while s.poll_record().is_some() {}
        while s.poll_bounce().is_some() {}
        while s.poll_complete().is_some() {}
    }
    assert!(
        id > 5000 && s.messages() > 0,
        "the run exercised a real queue"
    );
}

/// A thread waiting behind its own running job (the case that spun at 100 % CPU)
/// gives no timer, and starts when that job ends.
#[test]
fn mail_behind_a_busy_thread_waits_for_the_slot_not_a_timer() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    s.add_message(MessageId(1), &env(0, &[("smtp", "slow.example")]), &[], 0);
    let j = s.poll_job(0).expect("first message starts");
    s.add_message(MessageId(2), &env(1, &[("smtp", "slow.example")]), &[], 1);
    assert!(s.poll_job(5).is_none(), "maxthr=1: the second waits");
    assert!(
        s.poll_timeout().is_none_or(|t| t > 5),
        "no timer for mail that waits for a slot: {:?}",
        s.poll_timeout()
    );
    let r: Vec<_> = j
        .rcpts
        .iter()
        .map(|r| (*r, RcptResult::Delivered))
        .collect();
    s.job_done(j.id, &r, 30);
    let j2 = s
        .poll_job(30)
        .expect("the freed slot starts the second message");
    assert_eq!(
        j2.rcpts,
        vec![RcptRef {
            msg: MessageId(2),
            idx: 0
        }]
    );
}

#[test]
fn a_claim_takes_only_held_waiting_recipients_it_picks() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    // One message for a held (hold transport) domain, a queue-only one and an
    // ordinary smtp one; a second message for the held domain.
    s.add_message(
        MessageId(1),
        &env(
            0,
            &[("hold", "c.dom"), ("smtp-etrn", "c.dom"), ("smtp", "c.dom")],
        ),
        &[],
        0,
    );
    s.add_message(MessageId(2), &env(0, &[("hold", "d.dom")]), &[], 0);
    let _ = all_jobs(&mut s, 0); // the smtp recipient goes its own way
    let (id, rcpts) = s.claim(|_, d| d == "c.dom").expect("something to claim");
    assert_eq!(
        rcpts,
        vec![
            RcptRef {
                msg: MessageId(1),
                idx: 0
            },
            RcptRef {
                msg: MessageId(1),
                idx: 1
            }
        ],
        "held ones only, never the ordinary smtp one, never d.dom"
    );
    assert_eq!(s.rcpt_state(rcpts[0]), Some(RcptState::Active));
    assert!(
        s.claim(|_, d| d == "c.dom").is_none(),
        "nothing left to claim"
    );
    // An ETRN meanwhile finds it busy, not waiting.
    let r = s.release(|_, d| d == "c.dom");
    assert!(r.matched && r.active && r.messages == 0, "{r:?}");
    assert_eq!(s.claimed(id), Some(1));
}

#[test]
fn a_claims_end_re_holds_what_was_not_delivered_and_bounces_5xx() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    s.add_message(
        MessageId(1),
        &env(0, &[("hold", "c.dom"), ("hold", "c.dom")]),
        &[],
        0,
    );
    s.add_message(MessageId(2), &env(0, &[("hold", "c.dom")]), &[], 0);
    s.add_message(MessageId(3), &env(0, &[("hold", "c.dom")]), &[], 0);
    let (id, rcpts) = s.claim(|_, _| true).unwrap();
    assert_eq!(rcpts.len(), 4);
    let results = vec![
        (rcpts[0], RcptResult::Delivered),
        (
            rcpts[1],
            RcptResult::Failed("5.1.1".into(), "550 no such user".into()),
        ),
        (rcpts[2], RcptResult::Deferred("450 later".into())),
        // rcpts[3]: the connection dropped before it was tried
    ];
    s.claim_done(id, &results, 50);
    let b = s.poll_bounce().expect("a bounce for the 550");
    assert_eq!((b.msg, b.failures.len()), (MessageId(1), 1));
    assert_eq!(s.poll_complete(), Some(MessageId(1)));
    assert_eq!(s.rcpt_state(rcpts[2]), Some(RcptState::Waiting));
    assert_eq!(s.rcpt_state(rcpts[3]), Some(RcptState::Waiting));
    // Held again: no job by itself, ever; the next claim takes both.
    assert!(all_jobs(&mut s, 10_000).is_empty());
    let (_, again) = s.claim(|_, _| true).unwrap();
    assert_eq!(again, vec![rcpts[2], rcpts[3]]);
    // Lifetime unchanged: still counted from arrival (expiry 100 s once tried).
    let recs: Vec<_> = std::iter::from_fn(|| s.poll_record()).collect();
    assert!(recs
        .iter()
        .any(|(m, r)| *m == MessageId(2) && matches!(r, StateRecord::Deferred { .. })));
}

#[test]
fn etrn_never_releases_the_hold_transport() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    s.add_message(MessageId(1), &env(0, &[("hold", "c.dom")]), &[], 0);
    let r = s.release(|_, _| true);
    assert!(!r.matched, "{r:?}");
    assert!(all_jobs(&mut s, 0).is_empty());
}

#[test]
fn held_octets_count_each_message_once_and_the_quota_follows_them() {
    let mut s = Scheduler::new(conf(BASIC), 1);
    s.set_hold_quota(2500);
    let key = ThreadKey {
        channel: "smtp-etrn".into(),
        host: "c.dom".into(),
    };
    // Two recipients of one message in one held thread: its size counts once.
    s.add_sized(
        MessageId(1),
        &env(0, &[("smtp-etrn", "c.dom"), ("smtp-etrn", "c.dom")]),
        &[],
        0,
        1000,
    );
    assert_eq!(s.octets(&key), 1000);
    s.add_sized(
        MessageId(2),
        &env(0, &[("smtp-etrn", "c.dom")]),
        &[],
        0,
        1000,
    );
    assert!(s.over_quota().is_empty());
    s.add_sized(
        MessageId(3),
        &env(0, &[("smtp-etrn", "c.dom")]),
        &[],
        0,
        600,
    );
    assert!(s.over_quota().contains("smtp-etrn!c.dom"));
    // An ordinary (not held) destination never counts against the quota.
    s.add_sized(MessageId(4), &env(0, &[("smtp", "d.dom")]), &[], 0, 9000);
    assert!(!s.over_quota().contains("smtp!d.dom"));
    // A release takes the mail: the destination is below the quota again.
    s.release(|_, d| d == "c.dom");
    let jobs = all_jobs(&mut s, 0);
    assert_eq!(s.octets(&key), 0);
    assert!(s.over_quota().is_empty());
    // Deferred back: it counts again.
    for j in jobs.iter().filter(|j| j.key == key) {
        let r: Vec<_> = j
            .rcpts
            .iter()
            .map(|r| (*r, RcptResult::Deferred("4xx".into())))
            .collect();
        s.job_done(j.id, &r, 10);
    }
    assert_eq!(s.octets(&key), 2600);
    assert!(s.over_quota().contains("smtp-etrn!c.dom"));
    s.set_hold_quota(0);
    assert!(s.over_quota().is_empty());
}

#[test]
#[cfg(target_pointer_width = "64")]
fn a_recipient_costs_no_more_for_its_success_flag() {
    assert_eq!(std::mem::size_of::<super::RcptInfo>(), 32);
}
