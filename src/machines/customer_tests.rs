//! The customer, state by state and input by input, without a socket.

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn atrn() -> Customer {
    Customer::new(
        "isp.example".into(),
        366,
        Ask::Atrn(vec!["client.dom".into()]),
    )
}

fn etrn(targets: &[&str]) -> Customer {
    Customer::new(
        "isp.example".into(),
        25,
        Ask::Etrn(targets.iter().map(|t| t.to_string()).collect()),
    )
}

/// A request connected to its first address.
fn in_session(mut c: Customer) -> Customer {
    let hops = vec![addr("192.0.2.1:25"), addr("192.0.2.2:25")];
    assert!(matches!(c.resolved(Ok(hops), None), Step::Connect(_)));
    c.connected();
    assert_eq!(c.state(), &State::Session);
    c
}

fn done(s: Step) -> Reply {
    match s {
        Step::Done(r) => r,
        other => panic!("not done: {other:?}"),
    }
}

#[test]
fn it_starts_by_looking_up_the_server_and_an_address_as_a_literal() {
    let c = atrn();
    assert_eq!(c.state(), &State::AwaitLookup);
    assert_eq!(c.lookup_name(), "isp.example");
    let c = Customer::new("192.0.2.9".into(), 366, Ask::Atrn(vec![]));
    assert_eq!(c.lookup_name(), "[192.0.2.9]");
    let c = Customer::new("2001:db8::1".into(), 366, Ask::Atrn(vec![]));
    assert_eq!(c.lookup_name(), "[2001:db8::1]");
    assert_eq!((c.ask.verb(), etrn(&[]).ask.verb()), ("atrn", "etrn"));
}

#[test]
fn a_failed_lookup_ends_with_421() {
    let mut c = atrn();
    let r = done(c.resolved(Err("NXDOMAIN".into()), None));
    assert_eq!(r.to_string(), "421 4.4.1 cannot find isp.example: NXDOMAIN");
    assert_eq!(c.state(), &State::Done);
}

#[test]
fn each_address_is_tried_with_the_requests_port_and_the_last_failure_is_told() {
    let mut c = atrn();
    let hops = vec![addr("192.0.2.1:25"), addr("[2001:db8::1]:25")];
    assert_eq!(
        c.resolved(Ok(hops), None),
        Step::Connect(addr("192.0.2.1:366"))
    );
    assert_eq!(c.state(), &State::Connecting(0));
    assert_eq!(
        c.connect_failed("connect: refused", None),
        Step::Connect(addr("[2001:db8::1]:366"))
    );
    assert_eq!(c.state(), &State::Connecting(1));
    let r = done(c.connect_failed("connect timed out", None));
    assert_eq!(r.to_string(), "421 4.4.1 isp.example: connect timed out");
}

#[test]
fn an_address_that_cannot_be_opened_is_named_in_the_reply() {
    let mut c = atrn();
    c.resolved(Ok(vec![addr("192.0.2.1:25")]), None);
    let r = done(c.open_failed("connect to 192.0.2.1:366: Network unreachable", None));
    assert_eq!(
        r.to_string(),
        "421 4.4.1 connect to 192.0.2.1:366: Network unreachable"
    );
}

#[test]
fn no_address_at_all_is_told_as_such() {
    let mut c = atrn();
    let r = done(c.resolved(Ok(vec![]), None));
    assert_eq!(
        r.to_string(),
        "421 4.4.1 isp.example has no address to connect to"
    );
}

#[test]
fn a_link_that_went_down_stops_the_next_connection() {
    let mut c = atrn();
    let r = done(c.resolved(Ok(vec![addr("192.0.2.1:25")]), Some("ppp0")));
    assert_eq!(r.to_string(), "421 4.4.0 link ppp0 went down");
    let mut c = atrn();
    let hops = vec![addr("192.0.2.1:25"), addr("192.0.2.2:25")];
    c.resolved(Ok(hops), None);
    let r = done(c.connect_failed("refused", Some("ppp0")));
    assert_eq!(r.code, 421);
}

#[test]
fn etrn_sends_each_target_then_quits_and_all_started_is_250() {
    let mut c = in_session(etrn(&["a.dom", "b.dom"]));
    assert_eq!(c.ready(false), Step::Etrn("a.dom".into()));
    assert_eq!(c.state(), &State::Etrning);
    // A second Ready (after a late AUTH) sends nothing twice.
    assert_eq!(c.ready(true), Step::Wait);
    assert_eq!(
        c.etrn_reply(253, "2.0.0 OK, 2 pending".into()),
        Step::Etrn("b.dom".into())
    );
    assert_eq!(c.etrn_reply(251, "2.0.0 OK, none".into()), Step::Quit);
    assert_eq!(c.state(), &State::Quitting);
    let r = done(c.closed());
    assert_eq!(
        r.to_string(),
        "250 isp.example: ETRN: 2.0.0 OK, 2 pending; 2.0.0 OK, none"
    );
}

#[test]
fn etrn_the_worst_reply_decides() {
    let mut c = in_session(etrn(&["a.dom", "b.dom", "c.dom"]));
    c.ready(false);
    c.etrn_reply(253, "ok".into());
    c.etrn_reply(459, "4.7.1 b.dom: not a domain held here".into());
    c.etrn_reply(458, "4.7.0 too many".into());
    assert_eq!(done(c.closed()).code, 459);
}

#[test]
fn etrn_with_no_targets_quits_at_once_and_a_bare_close_is_421() {
    let mut c = in_session(etrn(&[]));
    assert_eq!(c.ready(false), Step::Quit);
    let r = done(c.closed());
    assert_eq!(r.to_string(), "421 4.4.2 isp.example: connection closed");
}

#[test]
fn atrn_needs_us_authenticated() {
    let mut c = in_session(atrn());
    assert_eq!(c.ready(false), Step::Quit);
    let r = done(c.closed());
    assert_eq!(r.code, 530);
    assert!(r.text.contains("did not let us authenticate"), "{r}");
}

#[test]
fn atrn_250_turns_around_and_the_count_is_told_at_the_end() {
    let mut c = in_session(atrn());
    assert_eq!(c.ready(true), Step::Atrn(vec!["client.dom".into()]));
    assert_eq!(c.state(), &State::AwaitAtrnReply);
    assert_eq!(
        c.atrn_reply(250, "2.0.0 OK now reversing".into()),
        Step::Turn
    );
    assert_eq!(c.state(), &State::Turned);
    // The client session's end after the turn is not the request's end.
    assert_eq!(c.closed(), Step::Wait);
    assert_eq!(c.failed(true, false, "gone"), Step::Wait);
    let r = done(c.turned_closed(3));
    assert_eq!(
        r.to_string(),
        "250 2.0.0 3 message(s) received from isp.example"
    );
}

#[test]
fn atrn_453_is_no_mail_and_other_refusals_keep_their_code() {
    let mut c = in_session(atrn());
    c.ready(true);
    assert_eq!(c.atrn_reply(453, "You have no mail".into()), Step::Quit);
    let r = done(c.closed());
    assert_eq!(
        r.to_string(),
        "250 2.0.0 isp.example has no mail for us (You have no mail)"
    );
    let mut c = in_session(atrn());
    c.ready(true);
    c.atrn_reply(450, "busy".into());
    assert_eq!(
        done(c.closed()).to_string(),
        "450 4.7.0 isp.example: ATRN: busy"
    );
    let mut c = in_session(atrn());
    c.ready(true);
    c.atrn_reply(550, "no".into());
    assert_eq!(
        done(c.closed()).to_string(),
        "550 5.7.0 isp.example: ATRN: no"
    );
    // A 2xx that is not 250 turned nothing around: a temporary failure.
    let mut c = in_session(atrn());
    c.ready(true);
    assert_eq!(c.atrn_reply(252, "odd".into()), Step::Quit);
    assert_eq!(
        done(c.closed()).to_string(),
        "451 4.5.0 isp.example: ATRN: unexpected reply 252 odd"
    );
}

#[test]
fn a_refused_login_is_535_by_what_failed_not_by_its_words() {
    let mut c = in_session(atrn());
    let r = done(c.failed(true, true, "AUTH PLAIN: 535 5.7.8 no"));
    assert_eq!(
        r.to_string(),
        "535 5.7.8 isp.example: AUTH PLAIN: 535 5.7.8 no"
    );
    // Words that start with AUTH do not make a 535 by themselves.
    let mut c = in_session(atrn());
    let r = done(c.failed(true, false, "AUTHORITATIVE server hung up"));
    assert_eq!(r.code, 421);
    let mut c = in_session(atrn());
    let r = done(c.failed(false, false, "greeting: 554 go away"));
    assert_eq!(
        r.to_string(),
        "554 5.0.0 isp.example: greeting: 554 go away"
    );
}

#[test]
fn inputs_out_of_turn_change_nothing() {
    let mut c = atrn();
    assert_eq!(c.ready(true), Step::Wait);
    assert_eq!(c.etrn_reply(250, "x".into()), Step::Wait);
    assert_eq!(c.atrn_reply(250, "x".into()), Step::Wait);
    assert_eq!(c.connect_failed("x", None), Step::Wait);
    assert_eq!(c.turned_closed(1), Step::Wait);
    c.connected();
    assert_eq!(c.state(), &State::AwaitLookup);
    assert!(matches!(c.resolved(Err("x".into()), None), Step::Done(_)));
    assert_eq!(c.resolved(Ok(vec![addr("192.0.2.1:25")]), None), Step::Wait);
    assert_eq!(c.closed(), Step::Wait);
}
