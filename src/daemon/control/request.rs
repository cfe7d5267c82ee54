//! The control socket's requests: one line each, parsed into a [`Request`] or the
//! reply a bad one gets.

use crate::smtp::etrn_target::EtrnTarget;
use crate::smtp::reply::Reply;

/// Largest request read (longer lines are refused and the connection closed).
pub const MAX_REQUEST: usize = 512;

/// Most message ids in one `queue` request (`etrnd queue` sends more in several).
pub const MAX_QUEUE_IDS: usize = 25;

/// What a control request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Run every queue that is not queue-only.
    FlushAll,
    /// Release what an ETRN of this target would.
    Flush(EtrnTarget),
    /// Ask SERVER for our held mail with ATRN (`etrnd atrn`).
    Atrn {
        /// The provider's port.
        port: u16,
        /// The provider: a host name or an address.
        server: String,
        /// The domains (none: all of ours).
        domains: Vec<String>,
    },
    /// `mailq [-j]`: the listing, written to the descriptor that came with the
    /// request (any local user, DESIGN.md §5.11).
    Mailq {
        /// `-j`: one JSON object per message.
        json: bool,
    },
    /// `queue delete|hold|release|requeue SELECTION` (DESIGN.md §3).
    Queue {
        /// What to do.
        op: crate::sched::QueueOp,
        /// To which messages.
        sel: crate::sched::Selection,
    },
    /// `reload`: read every configuration file again, as SIGHUP does
    /// (`newaliases`).
    Reload,
    /// `link up|down|status [NAME]` (DESIGN.md §5.9).
    Link {
        /// What to do.
        op: crate::daemon::netlinks::LinkOp,
        /// The link (none: `default`).
        name: Option<String>,
    },
}

impl Request {
    /// Parses a request datagram; `Err` is the reply for a bad one.
    pub fn parse(data: &[u8]) -> Result<Request, Reply> {
        let text = std::str::from_utf8(data)
            .ok()
            .filter(|_| data.len() <= MAX_REQUEST)
            .ok_or_else(|| Reply::new(500, "5.5.2 bad control request".into()))?;
        let text = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = text.split_once(' ').unwrap_or((text, ""));
        match (verb, arg) {
            ("flush", "") => Ok(Request::FlushAll),
            ("flush", a) => EtrnTarget::parse(a)
                .map(Request::Flush)
                .ok_or(Reply::ETRN_SYNTAX),
            ("atrn", a) => {
                let mut w = a.split(' ');
                let bad = || Reply::new(501, "5.5.4 Syntax: atrn PORT SERVER [DOMAIN...]".into());
                let port = w
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .filter(|p| *p != 0)
                    .ok_or_else(bad)?;
                let server = w
                    .next()
                    .and_then(crate::vocab::server_name)
                    .ok_or_else(bad)?;
                let list: Vec<&str> = w.collect();
                let domains = crate::smtp::atrn::parse_list(&list.join(","))
                    .map_err(|_| Reply::ATRN_SYNTAX)?;
                if list.iter().any(|d| d.is_empty()) {
                    return Err(bad());
                }
                Ok(Request::Atrn {
                    port,
                    server,
                    domains,
                })
            }
            ("link", a) => {
                use crate::daemon::netlinks::LinkOp;
                let bad = || Reply::new(501, "5.5.4 Syntax: link up|down|status [NAME]".into());
                let mut w = a.split(' ');
                let op = match w.next() {
                    Some("up") => LinkOp::Up,
                    Some("down") => LinkOp::Down,
                    Some("status") => LinkOp::Status,
                    _ => return Err(bad()),
                };
                let name = match w.next() {
                    None => None,
                    Some(n) => Some(
                        crate::config::links::link_name(n)
                            .map_err(|_| bad())?
                            .to_string(),
                    ),
                };
                if w.next().is_some() {
                    return Err(bad());
                }
                Ok(Request::Link { op, name })
            }
            ("reload", "") => Ok(Request::Reload),
            ("mailq", "") => Ok(Request::Mailq { json: false }),
            ("mailq", "-j") => Ok(Request::Mailq { json: true }),
            ("queue", a) => {
                let mut w = a.split(' ');
                let op = w.next().and_then(crate::sched::QueueOp::parse).ok_or_else(|| {
                    Reply::new(
                        501,
                        "5.5.4 Syntax: queue delete|hold|release|requeue ID...|-d DOMAIN|ALL".into(),
                    )
                })?;
                let sel = crate::sched::Selection::parse(w, MAX_QUEUE_IDS)
                    .map_err(|e| Reply::new(501, format!("5.5.4 {e}")))?;
                Ok(Request::Queue { op, sel })
            }
            _ => Err(Reply::new(
                500,
                "5.5.1 unknown control request (mailq [-j], flush [TARGET], atrn PORT SERVER [DOMAIN...], link up|down|status [NAME], queue OP SELECTION, reload)"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_are_refused() {
        assert_eq!(Request::parse(b"flush\n"), Ok(Request::FlushAll));
        assert!(matches!(
            Request::parse(b"flush mail.isp.dom"),
            Ok(Request::Flush(EtrnTarget::Node(_)))
        ));
        assert!(matches!(
            Request::parse(b"flush #smtp-etrn\n"),
            Ok(Request::Flush(EtrnTarget::Channel(_)))
        ));
        assert_eq!(Request::parse(b"flush a b").unwrap_err().code, 501);
        assert_eq!(Request::parse(b"kill 1").unwrap_err().code, 500);
        assert_eq!(Request::parse(b"flush \xff").unwrap_err().code, 500);
        assert_eq!(Request::parse(&[b'x'; 600]).unwrap_err().code, 500);
        assert_eq!(Request::parse(b"").unwrap_err().code, 500);
    }
}
