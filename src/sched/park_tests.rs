//! Parking: which messages may wait on disk, the summary kept for them, and the
//! deferred destinations that come due with mail on disk.

use super::*;

use super::tests::conf;

fn env(arrival: Unix, channel: &str, host: &str) -> Envelope {
    super::tests::env(arrival, &[(channel, host)])
}

const CONF: &str = "smtp-etrn/* queueonly expiry=10d expiry2=1d command=smtp\n\
    smtp/* interval=10s retries=\"1 2\" expiry=1d command=smtp\n";

fn key(channel: &str, host: &str) -> ThreadKey {
    ThreadKey {
        channel: channel.into(),
        host: host.into(),
    }
}

#[test]
fn held_mail_parks_into_a_summary_and_a_release_keeps_it_in_memory() {
    let mut s = Scheduler::new(conf(CONF), 1);
    s.add_sized(MessageId(1), &env(100, "smtp-etrn", "c.dom"), &[], 100, 500);
    s.add_sized(MessageId(2), &env(200, "smtp-etrn", "c.dom"), &[], 200, 700);
    s.add_sized(MessageId(3), &env(200, "smtp", "far.dom"), &[], 200, 900);
    let c = s.take_park_candidates();
    assert!(
        c.contains(&MessageId(1)) && c.contains(&MessageId(2)),
        "{c:?}"
    );
    assert!(
        s.parkable(MessageId(3), 200, false).is_none(),
        "due mail stays"
    );
    let e = s
        .parkable(MessageId(1), 200, false)
        .expect("held mail parks");
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].1.size, e[0].1.next, e[0].1.tried), (500, 0, false));
    s.park(MessageId(1), &e);
    let e2 = s.parkable(MessageId(2), 200, false).unwrap();
    s.park(MessageId(2), &e2);
    assert_eq!(s.messages(), 1, "two messages left memory");
    let k = key("smtp-etrn", "c.dom");
    assert_eq!(s.parked_count(&k), 2);
    assert_eq!(s.octets(&k), 1200, "the hold quota counts parked octets");
    let sum = s.held_sum(|x| *x == k);
    assert_eq!((sum.messages, sum.octets, sum.oldest), (2, 1200, Some(100)));
    let d = s.held_destinations();
    assert_eq!(d.len(), 1);
    assert!(d[0].next_expiry.is_some_and(|t| t > 200));
    // The domain the summary keeps lets a release name it without loading anything.
    let domain = e[0].1.domain.clone();
    assert_eq!(s.parked_matching(|_, dom| dom == domain), vec![k.clone()]);
    assert!(s.parked_matching(|_, dom| dom == "other.dom").is_empty());
    // The next expiry of parked mail is a timer: no scan of memory finds it.
    let due = s.entry_due(&k, &e[0].1).unwrap();
    assert!(s.poll_timeout().is_some_and(|t| t <= due));
    assert_eq!(s.parked_due(due - 1), Vec::<ThreadKey>::new());
    assert_eq!(s.parked_due(due), vec![k.clone()]);
    // What stays after a page-in is summed again.
    s.set_parked(k.clone(), &[e2[0].1.clone()]);
    assert_eq!(s.parked_count(&k), 1);
    // Mail a release covers stays in memory.
    s.add_sized(MessageId(4), &env(300, "smtp-etrn", "c.dom"), &[], 300, 10);
    let _ = s.release(|_, _| true);
    assert!(s.parkable(MessageId(4), 300, false).is_none());
}

#[test]
fn deferred_mail_past_the_active_limit_parks_and_its_thread_asks_to_be_loaded() {
    let mut s = Scheduler::new(conf(CONF), 1);
    s.set_active_limit(1);
    for i in 1..=3 {
        s.add_sized(MessageId(i), &env(0, "smtp", "far.dom"), &[], 0, 100);
    }
    let job = s.poll_job(0).expect("due at once");
    let res: Vec<_> = job
        .rcpts
        .iter()
        .map(|r| (*r, RcptResult::Deferred("421 later".into())))
        .collect();
    s.job_done(job.id, &res, 0);
    // Waiting out a 10 s back-off: over the limit, so they may go to disk.
    assert!(
        s.parkable(MessageId(1), 0, false).is_none(),
        "not as held mail"
    );
    let ids = s.deferred_to_park(0);
    assert_eq!(ids.len(), 3);
    for id in ids {
        let e = s.parkable(id, 0, true).expect("deferred parks");
        assert_eq!(e[0].1.next, 10, "with its retry time");
        assert!(e[0].1.tried);
        s.park(id, &e);
    }
    assert_eq!(s.messages(), 0);
    assert!(s.poll_job(9).is_none());
    assert_eq!(
        s.poll_timeout(),
        Some(10),
        "due at the retry time, with nothing in memory"
    );
    assert!(
        s.poll_job(10).is_none(),
        "nothing to run before it is loaded"
    );
    assert_eq!(s.take_page_in_wanted(), vec![key("smtp", "far.dom")]);
}
