//! Links, untried results, last-release expiry and delay notices, with a fake clock.

use super::super::*;
use crate::config::links::LinkTarget;

use super::super::tests::conf;

fn env(arrival: Unix, channel: &str, host: &str) -> Envelope {
    super::super::tests::env(arrival, &[(channel, host)])
}

const CONF: &str = "smtp-etrn/* queueonly expiry=10d expiry2=1d command=smtp\n\
    smtp/* interval=10s retries=\"1 2\" expiry=1d reporttimes=\"1h 4h\" command=smtp\n";

#[test]
fn a_thread_behind_a_down_link_never_starts_and_keeps_its_retry_state() {
    let mut s = Scheduler::new(conf(CONF), 1);
    s.set_blocked(vec![LinkTarget::parse("#smtp").unwrap()]);
    s.add_message(MessageId(1), &env(0, "smtp", "relay.isp"), &[], 0);
    assert!(s.poll_job(0).is_none(), "blocked");
    assert!(s.poll_job(1000).is_none(), "blocked whatever the clock");
    assert!(
        s.poll_timeout().is_some_and(|t| t > 1000),
        "no timer for blocked mail"
    );
    let rel = s.release(|_, _| true);
    assert!(
        rel.matched && s.poll_job(1000).is_none(),
        "a release waits too"
    );
    let (sum, next) = s.dial_sum(|k| k.channel == "smtp", 1000);
    assert_eq!((sum.messages, sum.oldest, next), (1, Some(0), None));
    s.set_blocked(Vec::new());
    let job = s.poll_job(1000).expect("unblocked: the release runs");
    // The line failed locally: untried, nothing counted.
    let res = vec![(job.rcpts[0], RcptResult::Untried("ENETUNREACH".into()))];
    s.job_done(job.id, &res, 1000);
    assert!(
        s.poll_record().is_none(),
        "no journal record for untried mail"
    );
    assert!(s.poll_job(1000 + outcome::UNTRIED_WAIT - 1).is_none());
    let job = s
        .poll_job(1000 + outcome::UNTRIED_WAIT)
        .expect("due again, unpenalised");
    let res = vec![(job.rcpts[0], RcptResult::Deferred("451 later".into()))];
    s.job_done(job.id, &res, 1100);
    assert!(
        matches!(
            s.poll_record(),
            Some((_, StateRecord::Deferred { next: 1110, .. }))
        ),
        "the first real deferral takes the first retry slot (1 x 10 s)"
    );
}

#[test]
fn held_mail_expires_counting_from_the_last_release_within_a_hard_bound() {
    let day = 86_400;
    let mut s = Scheduler::new(conf(CONF), 1);
    s.add_message(MessageId(1), &env(0, "smtp-etrn", "client.dom"), &[], 0);
    s.add_message(MessageId(2), &env(0, "smtp-etrn", "client.dom"), &[], 0);
    // Never released: expires at expiry + expiry2 = 11 days.
    assert_eq!(s.poll_timeout(), Some(11 * day));
    // A release on day 5 delivers message 1; message 2 is refused for now.
    let _ = s.release(|_, _| true);
    let job = s.poll_job(5 * day).unwrap();
    let res: Vec<_> = job
        .rcpts
        .iter()
        .map(|r| {
            let x = if r.msg == MessageId(1) {
                RcptResult::Delivered
            } else {
                RcptResult::Deferred("452 4.2.2 full".into())
            };
            (*r, x)
        })
        .collect();
    s.job_done(job.id, &res, 5 * day);
    assert_eq!(
        s.poll_release_note(),
        Some(("smtp-etrn!client.dom".into(), 5 * day))
    );
    // Tried once: expiry counts from the release (5 + 10 days), not from arrival.
    s.handle_timeout(11 * day);
    assert!(
        s.poll_bounce().is_none(),
        "a client who calls in keeps its mail"
    );
    assert_eq!(s.poll_timeout(), Some(15 * day));
    // Releases every few days cannot keep it past twice the lifetime (22 days).
    for d in [12u64, 19] {
        s.set_last_release(
            ThreadKey {
                channel: "smtp-etrn".into(),
                host: "client.dom".into(),
            },
            d * day,
        );
    }
    assert_eq!(s.poll_timeout(), Some(22 * day));
    s.handle_timeout(22 * day);
    let b = s.poll_bounce().expect("the hard bound");
    assert_eq!(b.failures[0].1, "5.4.7");
}

#[test]
fn reporttimes_send_one_delay_notice_per_level_and_never_again() {
    let mut s = Scheduler::new(conf(CONF), 1);
    s.add_message(MessageId(1), &env(0, "smtp", "slow.example"), &[], 0);
    let job = s.poll_job(0).unwrap();
    s.job_done(
        job.id,
        &[(job.rcpts[0], RcptResult::Deferred("451 4.3.0 busy".into()))],
        0,
    );
    let _ = s.poll_record();
    assert!(s.poll_timeout().is_some_and(|t| t <= 3600));
    s.handle_timeout(3599);
    assert!(s.poll_delay().is_none());
    s.handle_timeout(3600);
    let d = s.poll_delay().expect("the first report time");
    assert_eq!(
        d.rcpts,
        vec![(0, Some("451 4.3.0 busy".into()), Some(86_400))]
    );
    assert!(matches!(
        s.poll_record(),
        Some((_, StateRecord::Reported { level: 1, .. }))
    ));
    s.handle_timeout(7200);
    assert!(s.poll_delay().is_none(), "once per level");
    // Rebuilt from the journal (a restart), the level is remembered.
    let mut again = Scheduler::new(conf(CONF), 1);
    let journal = [StateRecord::Reported {
        idx: 0,
        at: 3600,
        level: 1,
    }];
    again.add_message(
        MessageId(1),
        &env(0, "smtp", "slow.example"),
        &journal,
        7200,
    );
    again.handle_timeout(7200);
    assert!(again.poll_delay().is_none());
    again.handle_timeout(4 * 3600);
    assert!(again.poll_delay().is_some(), "the second level");
}

#[test]
fn a_report_time_counts_again_once_a_recipient_waits_again() {
    let mut s = Scheduler::new(conf(CONF), 1);
    s.add_message(MessageId(1), &env(0, "smtp", "slow.example"), &[], 0);
    let job = s.poll_job(0).unwrap();
    // The bound is computed while the recipient is in a job (not waiting).
    assert!(s.poll_timeout().is_none_or(|t| t > 3600));
    s.job_done(
        job.id,
        &[(job.rcpts[0], RcptResult::Deferred("451 later".into()))],
        5,
    );
    assert_eq!(s.poll_timeout(), Some(15), "the retry comes first");
    let job = s.poll_job(15).unwrap();
    let _ = s.poll_timeout();
    s.job_done(
        job.id,
        &[(job.rcpts[0], RcptResult::Untried("link down".into()))],
        20,
    );
    s.handle_timeout(3600);
    assert!(
        s.poll_delay().is_some(),
        "the report time is back in the bound"
    );
}
