//! A fake DNS server for tests: answers from a table over UDP (and TCP on the same
//! port), counts every packet it receives, and can misbehave on request.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// How the server treats a name.
#[derive(Clone)]
pub enum Entry {
    Mx(Vec<(u16, &'static str)>),
    Addr(Vec<&'static str>),
    NxDomain,
    ServFail,
    /// Never answer.
    Silent,
    /// Answer over UDP with TC set and the real answer over TCP only.
    TruncatedMx(Vec<(u16, &'static str)>),
}

pub struct FakeDns {
    pub addr: SocketAddr,
    /// Source port and transaction id of every UDP query, in arrival order.
    pub queries: Arc<Mutex<Vec<(u16, u16)>>>,
    pub packets: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

fn n(s: &str) -> Name {
    Name::from_ascii(format!("{s}.")).unwrap()
}

fn answer(table: &HashMap<(String, RecordType), Entry>, q: &Message, tcp: bool) -> Option<Message> {
    let qq = q.queries.first()?;
    let name = qq
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.add_queries(q.queries.clone());
    let entry = table
        .get(&(name.clone(), qq.query_type()))
        .or_else(|| table.get(&(name.clone(), RecordType::ANY)));
    match entry {
        None => {} // NOERROR, no data
        Some(Entry::Silent) => return None,
        Some(Entry::NxDomain) => m.metadata.response_code = ResponseCode::NXDomain,
        Some(Entry::ServFail) => m.metadata.response_code = ResponseCode::ServFail,
        Some(Entry::Mx(v)) => {
            for (p, ex) in v {
                m.add_answer(Record::from_rdata(
                    n(&name),
                    60,
                    RData::MX(MX::new(*p, n(ex))),
                ));
            }
        }
        Some(Entry::TruncatedMx(v)) => {
            if !tcp {
                m.metadata.truncation = true;
            } else {
                for (p, ex) in v {
                    m.add_answer(Record::from_rdata(
                        n(&name),
                        60,
                        RData::MX(MX::new(*p, n(ex))),
                    ));
                }
            }
        }
        Some(Entry::Addr(v)) => {
            for a in v {
                match (a.parse::<IpAddr>().unwrap(), qq.query_type()) {
                    (IpAddr::V4(x), RecordType::A) => {
                        m.add_answer(Record::from_rdata(n(&name), 60, RData::A(A(x))))
                    }
                    (IpAddr::V6(x), RecordType::AAAA) => {
                        m.add_answer(Record::from_rdata(n(&name), 60, RData::AAAA(AAAA(x))))
                    }
                    _ => &mut m,
                };
            }
        }
    }
    Some(m)
}

impl FakeDns {
    /// Starts the server; `table` maps (name, type) to an entry (type ANY: any type).
    pub fn start(table: Vec<(&str, RecordType, Entry)>) -> FakeDns {
        let table: HashMap<(String, RecordType), Entry> = table
            .into_iter()
            .map(|(n, t, e)| ((n.to_string(), t), e))
            .collect();
        let table = Arc::new(Mutex::new(table));
        // UDP and TCP on the same port; another test may hold the TCP port, so retry.
        let (udp, tcp, addr) = (0..50)
            .find_map(|_| {
                let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
                let addr = udp.local_addr().ok()?;
                let tcp = TcpListener::bind(addr).ok()?;
                Some((udp, tcp, addr))
            })
            .expect("a port free for both UDP and TCP");
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let packets = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(Mutex::new(Vec::new()));
        {
            let (packets, stop, table) = (packets.clone(), stop.clone(), table.clone());
            let queries = queries.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, from)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    packets.fetch_add(1, Ordering::SeqCst);
                    let Ok(q) = Message::from_vec(&buf[..len]) else {
                        continue;
                    };
                    queries.lock().unwrap().push((from.port(), q.metadata.id));
                    if let Some(m) = answer(&table.lock().unwrap(), &q, false) {
                        let _ = udp.send_to(&m.to_vec().unwrap(), from);
                    }
                }
            });
        }
        {
            let (packets, tcp_queries, stop) = (packets.clone(), tcp_queries.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut s, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if s.read_exact(&mut msg).is_err() {
                        continue;
                    }
                    packets.fetch_add(1, Ordering::SeqCst);
                    tcp_queries.fetch_add(1, Ordering::SeqCst);
                    let Ok(q) = Message::from_vec(&msg) else {
                        continue;
                    };
                    if let Some(m) = answer(&table.lock().unwrap(), &q, true) {
                        let data = m.to_vec().unwrap();
                        let _ = s.write_all(&(data.len() as u16).to_be_bytes());
                        let _ = s.write_all(&data);
                    }
                }
            });
        }
        FakeDns {
            addr,
            queries,
            packets,
            tcp_queries,
            stop,
        }
    }

    pub fn count(&self) -> usize {
        self.packets.load(Ordering::SeqCst)
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
