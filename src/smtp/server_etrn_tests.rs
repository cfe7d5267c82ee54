//! ETRN of the server session: who may ask, the answers, the caps.

use crate::smtp::etrn_target::EtrnTarget;
use crate::smtp::reply::Reply;
use crate::smtp::server::tests::{ctx, T};
use crate::smtp::server::{Event, ETRN_PER_SESSION};
use crate::vocab::cidr::Cidr;

#[test]
fn in_transaction_etrn_is_503_and_not_started() {
    let mut t = T::in_transaction();
    t.send("ETRN client.dom\r\n");
    assert_eq!(t.codes(), vec![503]);
    assert!(!t.events.iter().any(|e| matches!(e, Event::Etrn(_))));
}

#[test]
fn ready_etrn_known_domain_asks_the_queue_and_waits() {
    let mut t = T::ehlo();
    t.send("ETRN client.dom\r\nNOOP\r\n");
    assert_eq!(t.take(), "", "no reply before the queue answers");
    assert!(matches!(
        t.events.last(),
        Some(Event::Etrn(EtrnTarget::Node(_)))
    ));
    let (c, now) = (&t.cfg, t.now);
    t.s.handle_etrn(&Reply::etrn_started(5, "client.dom"), now, &ctx(c, false));
    assert_eq!(t.codes(), vec![253, 250], "the pipelined NOOP follows");
}

#[test]
fn ready_etrn_bad_arguments_are_501() {
    for bad in ["", "a..b", "../../etc", "x';--", "$(id)"] {
        let mut t = T::ehlo();
        t.send(format!("ETRN {bad}\r\n"));
        assert_eq!(t.codes(), vec![501], "{bad:?}");
        assert!(t.events.is_empty());
    }
}

#[test]
fn etrn_disabled_is_502_and_not_advertised() {
    let mut t = T::ready();
    t.cfg.main.etrn = false;
    t.send("EHLO x.example\r\n");
    assert!(!t.take().contains("ETRN"));
    t.send("ETRN client.dom\r\n");
    assert_eq!(t.codes(), vec![502]);
}

#[test]
fn etrn_from_a_client_not_allowed_is_459() {
    let mut t = T::ehlo();
    t.cfg.main.etrn_allow = Some(vec![Cidr::parse("10.0.0.0/8").unwrap()]);
    t.send("ETRN client.dom\r\n");
    assert_eq!(t.codes(), vec![459]);
    assert!(t.events.is_empty());
}

#[test]
fn etrn_before_helo_is_503_and_session_cap_is_458() {
    let mut t = T::ready();
    t.send("ETRN client.dom\r\n");
    assert_eq!(t.codes(), vec![503]);
    let mut t = T::ehlo();
    for _ in 0..ETRN_PER_SESSION {
        t.send("ETRN client.dom\r\n");
        let (c, now) = (&t.cfg, t.now);
        t.s.handle_etrn(&Reply::ETRN_MINIMAL, now, &ctx(c, false));
    }
    t.take();
    t.send("ETRN client.dom\r\n");
    assert_eq!(t.codes(), vec![458]);
}
