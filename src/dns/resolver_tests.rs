//! Resolver tests: answers built with hickory-proto messages, time simulated.

use super::*;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, SOA};
use hickory_proto::rr::Record;

const S1: &str = "127.0.0.1:5301";
const S2: &str = "127.0.0.1:5302";

fn resolver(servers: &[&str]) -> Resolver {
    Resolver::new(
        ResolverConfig {
            servers: servers.iter().map(|s| s.parse().unwrap()).collect(),
            timeout: Duration::from_secs(1),
            attempts: 2,
            rotate: false,
        },
        crate::sys::fill_random,
    )
}

fn d(s: &str) -> Domain {
    Domain::parse(s).unwrap()
}

fn n(s: &str) -> Name {
    Name::from_ascii(format!("{s}.")).unwrap()
}

/// Takes the one transmit, decodes it.
fn sent(r: &mut Resolver) -> (Transmit, Message) {
    let t = r.poll_transmit().expect("a query was sent");
    let m = Message::from_vec(&t.data).unwrap();
    (t, m)
}

fn response(q: &Message) -> Message {
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.add_queries(q.queries.clone());
    m
}

fn addr_record(name: &str, ip: &str, ttl: u32) -> Record {
    match ip.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => Record::from_rdata(n(name), ttl, RData::A(A(a))),
        IpAddr::V6(a) => Record::from_rdata(n(name), ttl, RData::AAAA(AAAA(a))),
    }
}

fn soa(ttl: u32, minimum: u32) -> Record {
    Record::from_rdata(
        n("example"),
        ttl,
        RData::SOA(SOA::new(
            n("ns.example"),
            n("h.example"),
            1,
            3600,
            600,
            86400,
            minimum,
        )),
    )
}

fn deliver(r: &mut Resolver, from: &str, m: &Message, now: Instant) {
    r.handle_datagram(from.parse().unwrap(), &m.to_vec().unwrap(), now);
}

#[test]
fn query_is_well_formed_and_answer_accepted() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1]);
    let q = r.query(&d("mail.example"), Rtype::A, t0);
    let (t, m) = sent(&mut r);
    assert_eq!(t.server, S1.parse().unwrap());
    assert!(!t.tcp);
    assert_eq!(m.queries.len(), 1);
    assert_eq!(m.queries[0].query_type(), RecordType::A);
    assert!(m.metadata.recursion_desired);
    assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
    let mut resp = response(&m);
    resp.add_answer(addr_record("mail.example", "192.0.2.1", 300));
    deliver(&mut r, S1, &resp, t0);
    assert_eq!(
        r.poll_answer(),
        Some((q, Answer::Addrs(vec!["192.0.2.1".parse().unwrap()])))
    );
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn spoofed_wrong_id_source_or_question_are_ignored() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1]);
    r.query(&d("mail.example"), Rtype::A, t0);
    let (_, m) = sent(&mut r);
    let mut good = response(&m);
    good.add_answer(addr_record("mail.example", "192.0.2.1", 300));
    // Wrong transaction id.
    let mut wrong_id = good.clone();
    wrong_id.metadata.id = m.metadata.id.wrapping_add(1);
    deliver(&mut r, S1, &wrong_id, t0);
    // Wrong source port and address.
    deliver(&mut r, "127.0.0.1:9999", &good, t0);
    deliver(&mut r, "127.0.0.2:5301", &good, t0);
    // Wrong question.
    let mut wrong_q = Message::response(m.metadata.id, OpCode::Query);
    wrong_q.add_query(Query::query(n("evil.example"), RecordType::A));
    wrong_q.add_answer(addr_record("evil.example", "6.6.6.6", 300));
    deliver(&mut r, S1, &wrong_q, t0);
    // A query, not a response; garbage.
    deliver(&mut r, S1, &m, t0);
    r.handle_datagram(S1.parse().unwrap(), b"\x00\x01garbage", t0);
    assert_eq!(r.poll_answer(), None);
    assert_eq!(r.ignored, 6);
    deliver(&mut r, S1, &good, t0);
    assert!(matches!(r.poll_answer(), Some((_, Answer::Addrs(_)))));
}

#[test]
fn truncated_answer_is_asked_again_over_tcp() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1]);
    r.query(&d("big.example"), Rtype::Mx, t0);
    let (_, m) = sent(&mut r);
    let mut tc = response(&m);
    tc.metadata.truncation = true;
    deliver(&mut r, S1, &tc, t0);
    let (t, m2) = sent(&mut r);
    assert!(t.tcp);
    assert_eq!(t.server, S1.parse().unwrap());
    let mut full = response(&m2);
    full.add_answer(Record::from_rdata(
        n("big.example"),
        60,
        RData::MX(MX::new(10, n("mx.example"))),
    ));
    deliver(&mut r, S1, &full, t0);
    assert_eq!(
        r.poll_answer().unwrap().1,
        Answer::Mx(vec![(10, d("mx.example"))])
    );
}

#[test]
fn servfail_moves_on_then_tempfails() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1, S2]);
    let q = r.query(&d("broken.example"), Rtype::Mx, t0);
    for expect in [S1, S2, S1, S2] {
        let (t, m) = sent(&mut r);
        assert_eq!(t.server, expect.parse().unwrap());
        let fail = Message::error_msg(m.metadata.id, OpCode::Query, ResponseCode::ServFail);
        let mut fail = fail;
        fail.add_queries(m.queries.clone());
        deliver(&mut r, expect, &fail, t0);
    }
    assert!(matches!(r.poll_answer(), Some((id, Answer::TempFail(_))) if id == q));
    assert!(r.poll_transmit().is_none());
    // Temporary failures are not cached.
    r.query(&d("broken.example"), Rtype::Mx, t0);
    assert!(r.poll_transmit().is_some());
}

#[test]
fn timeouts_back_off_across_servers() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1, S2]);
    let q = r.query(&d("slow.example"), Rtype::A, t0);
    let mut now = t0;
    let mut seen = Vec::new();
    while let Some(deadline) = r.poll_timeout() {
        let (t, _) = sent(&mut r);
        seen.push((t.server.port(), deadline - now));
        now = deadline;
        r.handle_timeout(now);
    }
    assert_eq!(
        seen,
        vec![
            (5301, Duration::from_secs(1)),
            (5302, Duration::from_secs(1)),
            (5301, Duration::from_secs(2)),
            (5302, Duration::from_secs(2)),
        ]
    );
    assert!(matches!(r.poll_answer(), Some((id, Answer::TempFail(_))) if id == q));
}

#[test]
fn nxdomain_is_cached_for_the_soa_negative_ttl() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1]);
    r.query(&d("nope.example"), Rtype::Mx, t0);
    let (_, m) = sent(&mut r);
    let mut nx = Message::error_msg(m.metadata.id, OpCode::Query, ResponseCode::NXDomain);
    nx.add_queries(m.queries.clone());
    nx.add_authority(soa(120, 60));
    deliver(&mut r, S1, &nx, t0);
    assert_eq!(r.poll_answer().unwrap().1, Answer::NxDomain);
    let q2 = r.query(&d("nope.example"), Rtype::Mx, t0 + Duration::from_secs(59));
    assert_eq!(r.poll_answer(), Some((q2, Answer::NxDomain)));
    assert!(r.poll_transmit().is_none(), "answered from the cache");
    r.query(&d("nope.example"), Rtype::Mx, t0 + Duration::from_secs(61));
    assert!(
        r.poll_transmit().is_some(),
        "expired after min(SOA TTL, MINIMUM)"
    );
}

#[test]
fn positive_answers_honour_ttl() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1]);
    r.query(&d("a.example"), Rtype::A, t0);
    let (_, m) = sent(&mut r);
    let mut resp = response(&m);
    resp.add_answer(addr_record("a.example", "192.0.2.7", 10));
    deliver(&mut r, S1, &resp, t0);
    r.poll_answer();
    r.query(&d("a.example"), Rtype::A, t0 + Duration::from_secs(9));
    assert!(r.poll_transmit().is_none());
    assert!(r.poll_answer().is_some());
    r.query(&d("a.example"), Rtype::A, t0 + Duration::from_secs(10));
    assert!(r.poll_transmit().is_some());
}

#[test]
fn concurrent_queries_share_one_packet() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1]);
    let q1 = r.query(&d("x.example"), Rtype::A, t0);
    let q2 = r.query(&d("x.example"), Rtype::A, t0);
    let (_, m) = sent(&mut r);
    assert!(r.poll_transmit().is_none());
    let mut resp = response(&m);
    resp.add_answer(addr_record("x.example", "192.0.2.9", 60));
    deliver(&mut r, S1, &resp, t0);
    let ids: Vec<_> = std::iter::from_fn(|| r.poll_answer())
        .map(|(q, _)| q)
        .collect();
    assert_eq!(ids, vec![q1, q2]);
}

#[test]
fn cname_chain_in_one_answer() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1]);
    r.query(&d("alias.example"), Rtype::A, t0);
    let (_, m) = sent(&mut r);
    let mut resp = response(&m);
    resp.add_answer(Record::from_rdata(
        n("alias.example"),
        300,
        RData::CNAME(CNAME(n("mid.example"))),
    ));
    resp.add_answer(Record::from_rdata(
        n("mid.example"),
        300,
        RData::CNAME(CNAME(n("real.example"))),
    ));
    resp.add_answer(addr_record("real.example", "192.0.2.3", 300));
    deliver(&mut r, S1, &resp, t0);
    assert_eq!(
        r.poll_answer().unwrap().1,
        Answer::Addrs(vec!["192.0.2.3".parse().unwrap()])
    );
}

#[test]
fn cname_to_unanswered_name_is_followed_with_a_new_query() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1]);
    r.query(&d("alias.example"), Rtype::A, t0);
    let (_, m) = sent(&mut r);
    let mut resp = response(&m);
    resp.add_answer(Record::from_rdata(
        n("alias.example"),
        300,
        RData::CNAME(CNAME(n("other.example"))),
    ));
    deliver(&mut r, S1, &resp, t0);
    let (_, m2) = sent(&mut r);
    assert_eq!(m2.queries[0].name(), &n("other.example"));
    let mut resp2 = response(&m2);
    resp2.add_answer(addr_record("other.example", "192.0.2.4", 300));
    deliver(&mut r, S1, &resp2, t0);
    assert_eq!(
        r.poll_answer().unwrap().1,
        Answer::Addrs(vec!["192.0.2.4".parse().unwrap()])
    );
}

#[test]
fn cname_loop_fails_permanently() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1]);
    r.query(&d("a.example"), Rtype::A, t0);
    let (_, m) = sent(&mut r);
    let mut resp = response(&m);
    resp.add_answer(Record::from_rdata(
        n("a.example"),
        300,
        RData::CNAME(CNAME(n("b.example"))),
    ));
    resp.add_answer(Record::from_rdata(
        n("b.example"),
        300,
        RData::CNAME(CNAME(n("a.example"))),
    ));
    deliver(&mut r, S1, &resp, t0);
    assert!(matches!(r.poll_answer().unwrap().1, Answer::Fail(_)));
    assert!(r.poll_transmit().is_none());
}

#[test]
fn long_cname_chain_across_queries_is_bounded() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1]);
    r.query(&d("c0.example"), Rtype::A, t0);
    let mut packets = 0;
    while let Some(t) = r.poll_transmit() {
        packets += 1;
        let m = Message::from_vec(&t.data).unwrap();
        let name = m.queries[0].name().to_ascii();
        let i: usize = name[1..name.find('.').unwrap()].parse().unwrap();
        let mut resp = response(&m);
        resp.add_answer(Record::from_rdata(
            n(&format!("c{i}.example")),
            300,
            RData::CNAME(CNAME(n(&format!("c{}.example", i + 1)))),
        ));
        deliver(&mut r, S1, &resp, t0);
        assert!(packets < 50, "unbounded chain");
    }
    assert!(matches!(r.poll_answer().unwrap().1, Answer::Fail(_)));
}

#[test]
fn five_hundred_records_only_one_hundred_used() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1]);
    r.query(&d("many.example"), Rtype::Mx, t0);
    let (_, m) = sent(&mut r);
    let mut resp = response(&m);
    for i in 0..500u16 {
        resp.add_answer(Record::from_rdata(
            n("many.example"),
            300,
            RData::MX(MX::new(i, n(&format!("mx{i}.example")))),
        ));
    }
    deliver(&mut r, S1, &resp, t0);
    match r.poll_answer().unwrap().1 {
        Answer::Mx(v) => assert_eq!(v.len(), MAX_RECORDS),
        other => panic!("{other:?}"),
    }
}

#[test]
fn null_mx_and_no_data() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1]);
    r.query(&d("nomail.example"), Rtype::Mx, t0);
    let (_, m) = sent(&mut r);
    let mut resp = response(&m);
    resp.add_answer(Record::from_rdata(
        n("nomail.example"),
        300,
        RData::MX(MX::new(0, Name::root())),
    ));
    deliver(&mut r, S1, &resp, t0);
    assert_eq!(r.poll_answer().unwrap().1, Answer::NullMx);

    r.query(&d("hostonly.example"), Rtype::Mx, t0);
    let (_, m) = sent(&mut r);
    let mut resp = response(&m);
    resp.add_authority(soa(300, 300));
    deliver(&mut r, S1, &resp, t0);
    assert_eq!(r.poll_answer().unwrap().1, Answer::NoData);
}

#[test]
fn cache_is_bounded() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1]);
    for i in 0..(CACHE_ENTRIES + 50) {
        r.query(&d(&format!("h{i}.example")), Rtype::A, t0);
        let (_, m) = sent(&mut r);
        let mut resp = response(&m);
        resp.add_answer(addr_record(&format!("h{i}.example"), "192.0.2.1", 3600));
        deliver(&mut r, S1, &resp, t0);
        r.poll_answer();
    }
    assert!(r.cache_len() <= CACHE_ENTRIES);
}

#[test]
fn bursts_are_held_to_the_in_flight_limit() {
    let t0 = Instant::now();
    let mut r = resolver(&[S1]);
    for i in 0..(MAX_IN_FLIGHT + 10) {
        r.query(&d(&format!("b{i}.example")), Rtype::A, t0);
    }
    let mut first: Vec<_> = std::iter::from_fn(|| r.poll_transmit()).collect();
    assert_eq!(first.len(), MAX_IN_FLIGHT);
    // Each answer lets one waiting query out.
    let t = first.remove(0);
    let m = Message::from_vec(&t.data).unwrap();
    let mut resp = response(&m);
    resp.add_answer(addr_record(
        m.queries[0].name().to_ascii().trim_end_matches('.'),
        "192.0.2.1",
        60,
    ));
    deliver(&mut r, S1, &resp, t0);
    assert_eq!(std::iter::from_fn(|| r.poll_transmit()).count(), 1);
}

#[test]
fn no_servers_is_a_temporary_failure_without_packets() {
    let mut r = resolver(&[]);
    r.query(&d("x.example"), Rtype::A, Instant::now());
    assert!(r.poll_transmit().is_none());
    assert!(matches!(r.poll_answer().unwrap().1, Answer::TempFail(_)));
}
