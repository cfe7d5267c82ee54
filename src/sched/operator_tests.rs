//! The operator's queue control in the scheduler: hold, release, delete, requeue.

use super::tests::{conf, env};
use super::*;

const CONF: &str = "*/* interval=10s retries=\"1 2 3\" expiry=100s expiry2=50s\n\
    smtp-etrn/* queueonly command=\"smtp -c $channel\"\n\
    smtp/* maxthr=1 command=smtp\n";

fn defer_all(s: &mut Scheduler, j: &Job, now: Unix) {
    let r: Vec<_> = j
        .rcpts
        .iter()
        .map(|r| (*r, RcptResult::Deferred("421 down".into())))
        .collect();
    s.job_done(j.id, &r, now);
}

fn records(s: &mut Scheduler) -> Vec<(MessageId, StateRecord)> {
    std::iter::from_fn(|| s.poll_record()).collect()
}

#[test]
fn a_held_message_is_not_tried_expired_or_released_until_released() {
    let mut s = Scheduler::new(conf(CONF), 1);
    s.add_message(MessageId(1), &env(0, &[("smtp", "a.example")]), &[], 0);
    s.add_message(MessageId(2), &env(0, &[("smtp", "a.example")]), &[], 0);
    assert!(s.operate(QueueOp::Hold, MessageId(1), 0));
    assert!(!s.operate(QueueOp::Hold, MessageId(1), 0), "already held");
    assert!(s.is_on_hold(MessageId(1)));
    let j = s.poll_job(0).expect("the other message goes");
    assert_eq!(
        j.rcpts,
        vec![RcptRef {
            msg: MessageId(2),
            idx: 0
        }]
    );
    s.job_done(j.id, &[(j.rcpts[0], RcptResult::Delivered)], 0);
    // ETRN finds nothing, and long past its lifetime nothing bounces.
    assert!(!s.release(|_, _| true).matched);
    s.handle_timeout(1000);
    assert!(s.poll_bounce().is_none());
    assert!(s.poll_job(1000).is_none());
    assert_eq!(
        records(&mut s),
        vec![(MessageId(1), StateRecord::OnHold { at: 0 })]
    );
    assert!(s.operate(QueueOp::Release, MessageId(1), 1000));
    assert!(!s.operate(QueueOp::Release, MessageId(1), 1000));
    assert_eq!(
        records(&mut s),
        vec![(MessageId(1), StateRecord::OffHold { at: 1000 })]
    );
    // Released, its age applies again: it expires now (with a bounce).
    s.handle_timeout(1000);
    let b = s.poll_bounce().expect("expired once released");
    assert_eq!(b.msg, MessageId(1));
}

#[test]
fn a_hold_survives_a_restart_and_a_release_too() {
    let mut s = Scheduler::new(conf(CONF), 1);
    let hold = [StateRecord::OnHold { at: 5 }];
    s.add_message(MessageId(1), &env(0, &[("smtp", "a.example")]), &hold, 10);
    assert!(s.is_on_hold(MessageId(1)));
    assert!(s.poll_job(10).is_none());
    let both = [
        StateRecord::OnHold { at: 5 },
        StateRecord::OffHold { at: 6 },
    ];
    s.add_message(MessageId(2), &env(0, &[("smtp", "b.example")]), &both, 10);
    assert!(!s.is_on_hold(MessageId(2)));
    assert_eq!(s.poll_job(10).expect("released").rcpts[0].msg, MessageId(2));
}

#[test]
fn held_while_delivered_what_is_left_stays_held() {
    let mut s = Scheduler::new(conf(CONF), 1);
    s.add_message(MessageId(1), &env(0, &[("smtp", "a.example")]), &[], 0);
    let j = s.poll_job(0).unwrap();
    assert!(s.is_active(MessageId(1)));
    assert!(s.operate(QueueOp::Hold, MessageId(1), 0));
    defer_all(&mut s, &j, 0);
    assert_eq!(s.rcpt_state(j.rcpts[0]), Some(RcptState::Held));
    assert!(s.poll_job(1000).is_none());
    assert!(s.operate(QueueOp::Release, MessageId(1), 30));
    assert!(s.poll_job(30).is_some(), "tried again once released");
}

#[test]
fn delete_drops_a_message_without_a_bounce_even_in_flight() {
    let mut s = Scheduler::new(conf(CONF), 1);
    s.add_message(MessageId(1), &env(0, &[("smtp", "a.example")]), &[], 0);
    s.add_message(MessageId(2), &env(0, &[("smtp-etrn", "c.example")]), &[], 0);
    let j = s.poll_job(0).unwrap();
    assert!(s.operate(QueueOp::Delete, MessageId(1), 0));
    assert!(s.operate(QueueOp::Delete, MessageId(2), 0));
    assert!(!s.operate(QueueOp::Delete, MessageId(2), 0), "gone already");
    let done: Vec<_> = std::iter::from_fn(|| s.poll_complete()).collect();
    assert_eq!(done, vec![MessageId(1), MessageId(2)]);
    // The running job's results change nothing and write nothing.
    s.job_done(
        j.id,
        &[(j.rcpts[0], RcptResult::Failed("5.1.1".into(), "no".into()))],
        0,
    );
    assert!(s.poll_bounce().is_none());
    assert!(records(&mut s).is_empty());
    assert_eq!(s.messages(), 0);
    assert!(!s.release(|_, _| true).matched);
    assert!(s.poll_complete().is_none());
}

#[test]
fn requeue_makes_a_deferred_message_due_now_and_a_restart_keeps_that() {
    let mut s = Scheduler::new(conf(CONF), 1);
    s.add_message(MessageId(1), &env(0, &[("smtp", "dead.example")]), &[], 0);
    let j = s.poll_job(0).unwrap();
    defer_all(&mut s, &j, 0);
    assert!(s.poll_job(1).is_none(), "backing off");
    let deferred = records(&mut s);
    assert!(s.operate(QueueOp::Requeue, MessageId(1), 1));
    assert_eq!(s.poll_job(1).expect("due now").rcpts[0].msg, MessageId(1));
    // After a restart the Q record outweighs the old retry time.
    let mut journal: Vec<StateRecord> = deferred.into_iter().map(|(_, r)| r).collect();
    let mut t = Scheduler::new(conf(CONF), 1);
    t.add_message(
        MessageId(1),
        &env(0, &[("smtp", "dead.example")]),
        &journal,
        1,
    );
    assert!(t.poll_job(1).is_none(), "the old retry time applies");
    journal.push(StateRecord::Requeued { at: 1 });
    let mut t = Scheduler::new(conf(CONF), 1);
    t.add_message(
        MessageId(1),
        &env(0, &[("smtp", "dead.example")]),
        &journal,
        1,
    );
    assert!(t.poll_job(1).is_some(), "requeued before the restart");
}

#[test]
fn selections_parse_and_select() {
    let p = |s: &str| Selection::parse(s.split(' '), 3);
    assert_eq!(p("ALL"), Ok(Selection::All));
    assert_eq!(
        p("-d Client.DOM"),
        Ok(Selection::Domain("client.dom".into()))
    );
    assert_eq!(
        p("000661a410ce21d8 000661a410ce3aac"),
        Ok(Selection::Ids(vec![
            MessageId(0x000661a410ce21d8),
            MessageId(0x000661a410ce3aac)
        ]))
    );
    for bad in [
        "",
        "ALL x",
        "-d",
        "-d a..b",
        "xyz",
        "1 2 3 4",
        "000661a410ce21d8 ALL",
    ] {
        assert!(p(bad).is_err(), "{bad}");
    }
    let mut s = Scheduler::new(conf(CONF), 1);
    s.add_message(MessageId(1), &env(0, &[("smtp", "a.example")]), &[], 0);
    s.add_message(
        MessageId(2),
        &env(0, &[("smtp", "b.example"), ("smtp", "a.example")]),
        &[],
        0,
    );
    s.add_message(MessageId(3), &env(0, &[("smtp", "b.example")]), &[], 0);
    assert_eq!(
        s.select(&Selection::Domain("a.example".into())),
        vec![MessageId(1), MessageId(2)]
    );
    assert_eq!(s.select(&Selection::All).len(), 3);
    assert_eq!(
        s.select(&Selection::Ids(vec![
            MessageId(3),
            MessageId(9),
            MessageId(3)
        ])),
        vec![MessageId(3)]
    );
}
