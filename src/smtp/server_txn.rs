//! The mail transaction verbs of [`ServerSession`]: MAIL (size and disk checks),
//! RCPT (routing, alias expansion, the relay rule, a transport for every
//! destination) and DATA (the envelope handed to the loop). Same module privacy as
//! the session itself; split out by noun. The end of DATA and the spool's answer
//! (250 only once the message is durable) are here too.

use std::time::Instant;

use super::{
    with_address, Context, DataPhase, Event, RcptVerdict, ServerSession, State, Transaction,
    COMMAND_TIMEOUT, MAX_HOPS,
};
use crate::smtp::command::Body;
use crate::smtp::line::DataDecoder;
use crate::smtp::reply::Reply;
use crate::store::spool::{Destination, Envelope, MessageId, Recipient, SpoolError};
use crate::vocab::sanitize;
use crate::vocab::ReversePath;

impl ServerSession {
    pub(super) fn mail(
        &mut self,
        from: ReversePath,
        size: Option<u64>,
        body: Body,
        (smtputf8, dsn): (bool, crate::vocab::dsn::MailDsn),
        now: Instant,
        ctx: &Context<'_>,
    ) {
        let host = &ctx.policy.hostname;
        if self.helo.is_none() {
            return self.error(&Reply::NEED_HELO, now, host);
        }
        if matches!(self.state, State::InTransaction(_)) {
            return self.error(&Reply::NESTED_MAIL, now, host);
        }
        if size.is_some_and(|s| s > ctx.policy.max_message_size) {
            return self.error(&Reply::MESSAGE_TOO_BIG, now, host);
        }
        if ctx.disk_low {
            return self.error(&Reply::STORAGE_LOW, now, host);
        }
        self.reply(&Reply::SENDER_OK);
        self.set_state(State::InTransaction(Box::new(Transaction {
            from,
            body,
            rcpts: Vec::new(),
            smtputf8,
            dsn,
            expanded: Vec::new(),
        })));
    }

    pub(super) fn rcpt(
        &mut self,
        to: crate::vocab::Mailbox,
        dsn: crate::vocab::dsn::RcptDsn,
        now: Instant,
        ctx: &Context<'_>,
    ) {
        let host = &ctx.policy.hostname;
        // An authenticated client relays like MYNETWORKS.
        let trusted = self.trusted || self.identity.is_some();
        let max = ctx.policy.max_recipients;
        let State::InTransaction(txn) = &mut self.state else {
            let r = if self.helo.is_none() {
                Reply::NEED_HELO
            } else {
                Reply::NEED_MAIL
            };
            return self.error(&r, now, host);
        };
        if txn.rcpts.len() >= max {
            // Not counted as an error: a long list is no abuse (RFC 5321 §4.5.3.1.10).
            self.reply(&Reply::TOO_MANY_RCPTS);
            return;
        }
        // Postfix `allow_untrusted_routing = no`: a local part that routes on
        // (`a%b@`, `b!a@`, `"a@b"@`) is refused for everyone else.
        if !trusted && to.local().bytes().any(|b| matches!(b, b'%' | b'!' | b'@')) {
            log::info!(
                "{:08x} smtp rcpt-refused address={} to=<{}> reason=\"routing in local part\"",
                self.id,
                self.client,
                sanitize(to.to_string().as_bytes())
            );
            let r = with_address(&Reply::ROUTING_IN_LOCAL_PART, &to.to_string());
            self.log_reject(&r, &to);
            return self.error(&r, now, host);
        }
        let dests = match ctx.policy.recipients.verdict(&to, trusted) {
            RcptVerdict::Accept(d) => d,
            RcptVerdict::Refuse(r, why) => {
                log::info!(
                    "{:08x} smtp rcpt-refused address={} to=<{}> reason=\"{}\"",
                    self.id,
                    self.client,
                    sanitize(to.to_string().as_bytes()),
                    why
                );
                let r = with_address(&r, &to.to_string());
                self.log_reject(&r, &to);
                return self.error(&r, now, host);
            }
            // A destination no transport serves would be accepted and never
            // delivered: only a reload that dropped a clause, or a recipient domain
            // that a command-less clause catches, gets here (the load-time check
            // refuses the rest). Tell the client to try later and the operator why.
            RcptVerdict::NoTransport(why) => {
                log::error!(
                    "{:08x} smtp rcpt-refused address={} to=<{}> reason=\"{why}\"",
                    self.id,
                    self.client,
                    sanitize(to.to_string().as_bytes()),
                );
                self.log_reject(&Reply::NO_TRANSPORT, &to);
                self.reply(&Reply::NO_TRANSPORT);
                return;
            }
        };
        // HOLD_QUOTA: a held destination that has too much waiting takes no more until
        // it is released (a temporary refusal: the sender's MTA tries again).
        if let Some(d) = dests
            .iter()
            .map(|t| &t.dest)
            .find(|d| ctx.held_full.is_some_and(|f| f.contains(&d.to_string())))
        {
            log::info!(
                "{:08x} smtp rcpt-refused address={} to=<{}> reason=\"hold quota: {d}\"",
                self.id,
                self.client,
                sanitize(to.to_string().as_bytes()),
            );
            let r = with_address(&Reply::HOLD_FULL, &to.to_string());
            self.log_reject(&r, &to);
            self.reply(&r);
            return;
        }
        // An alias with several members (RFC 3461 §6.2.7.3): the sender hears
        // "expanded" once, for the address it gave, and nothing of the members'
        // deliveries, which keep its address as their ORCPT.
        let mut dsn = dsn;
        if dests.len() > 1 && !txn.rcpts.iter().any(|r| r.address == to) {
            if let Some(n) = dsn.notify.filter(|n| n.success) {
                txn.expanded.push((to.clone(), dsn.clone()));
                dsn.notify = Some(crate::vocab::dsn::Notify {
                    success: false,
                    ..n
                });
            }
            if dsn.orcpt.is_none() {
                dsn.orcpt = Some(crate::vocab::dsn::Orcpt {
                    addr_type: if to.is_ascii() { "rfc822" } else { "utf-8" }.into(),
                    address: to.to_string(),
                });
            }
        }
        if !txn.rcpts.iter().any(|r| r.address == to) {
            for t in dests {
                let address = t.address_for(&to).clone();
                // Two addresses that expand to one mailbox (or one address
                // elsewhere) get one copy.
                let same = |r: &Recipient| {
                    r.dest == t.dest
                        && (matches!(t.dest, Destination::Local(_)) || r.address == address)
                };
                if !txn.rcpts.iter().any(same) {
                    txn.rcpts.push(Recipient {
                        address,
                        dest: t.dest,
                        dsn: dsn.clone(),
                    });
                }
            }
        }
        self.reply(&Reply::RCPT_OK);
    }

    pub(super) fn data(&mut self, now: Instant, ctx: &Context<'_>) {
        if let Some(d) = self.start_message(now, ctx) {
            self.reply(&Reply::START_DATA);
            self.set_state(State::ReceivingData(d));
        }
    }

    /// The transaction's envelope goes to the loop (`MessageStart`) and the message
    /// begins, for DATA and for the first BDAT alike; `None` after an error reply
    /// (no MAIL, no valid recipient).
    pub(super) fn start_message(
        &mut self,
        now: Instant,
        ctx: &Context<'_>,
    ) -> Option<Box<DataPhase>> {
        let host = &ctx.policy.hostname;
        let txn = match std::mem::replace(&mut self.state, State::Ready) {
            State::InTransaction(t) if !t.rcpts.is_empty() => *t,
            State::InTransaction(t) => {
                self.state = State::InTransaction(t);
                self.error(&Reply::NO_VALID_RCPT, now, host);
                return None;
            }
            other => {
                self.state = other;
                let r = if self.helo.is_none() {
                    Reply::NEED_HELO
                } else {
                    Reply::NEED_MAIL
                };
                self.error(&r, now, host);
                return None;
            }
        };
        let (helo, esmtp) = self.helo.clone().unwrap_or_default();
        let arrival = ctx.unix_time;
        let env = Envelope {
            arrival,
            client: crate::vocab::cidr::canonical(self.client.ip()).to_string(),
            helo,
            // RFC 3848, and RFC 6531 §3.7.3 for a transaction that said SMTPUTF8.
            protocol: match (esmtp, self.tls.is_some(), self.identity.is_some()) {
                (false, _, _) => "SMTP",
                (true, false, false) => "ESMTP",
                (true, true, false) => "ESMTPS",
                (true, false, true) => "ESMTPA",
                (true, true, true) => "ESMTPSA",
            }
            .replacen("ESMTP", if txn.smtputf8 { "UTF8SMTP" } else { "ESMTP" }, 1),
            eight_bit: txn.body == Body::EightBitMime,
            sender: txn.from,
            recipients: txn.rcpts,
            dsn: txn.dsn,
            smtputf8: txn.smtputf8,
        };
        self.expanded = (!txn.expanded.is_empty()).then(|| Box::new(txn.expanded));
        self.events.push_back(Event::MessageStart(Box::new(env)));
        let mut decoder = DataDecoder::new();
        if self.trusted || self.identity.is_some() {
            // A local client's message gets the Date: and Message-ID: it lacks
            // (Postfix's local_header_rewrite_clients; DESIGN.md §5.13).
            decoder.add_if_missing(
                format!("Date: {}\r\n", crate::smtp::trace::rfc5322_date(arrival)),
                format!(
                    "Message-ID: <{arrival}.{:08x}.{:016x}@{host}>\r\n",
                    self.id, ctx.nonce
                ),
            );
        }
        Some(Box::new(DataPhase {
            decoder,
            started: now,
            raw_octets: 0,
            refused: None,
            chunk: None,
        }))
    }

    pub(super) fn end_of_data(&mut self, now: Instant, host: &str) {
        let State::ReceivingData(d) = std::mem::replace(&mut self.state, State::Ready) else {
            unreachable!("end_of_data is only called while receiving data");
        };
        let refused = d
            .refused
            .or_else(|| (d.decoder.received_count() > MAX_HOPS).then_some(Reply::TOO_MANY_HOPS));
        match refused {
            Some(r) => {
                self.events.push_back(Event::MessageAbort);
                log::info!(
                    "{:08x} smtp message-refused size={} reply=\"{}\"",
                    self.id,
                    d.decoder.size,
                    r
                );
                self.set_state(State::Ready);
                self.error(&r, now, host);
            }
            None => {
                self.events.push_back(Event::MessageEnd);
                self.set_state(State::AwaitCommit);
            }
        }
    }

    /// The "expanded" notices the message just queued owes its sender (taken once).
    pub fn take_expanded(&mut self) -> Vec<(crate::vocab::Mailbox, crate::vocab::dsn::RcptDsn)> {
        self.expanded.take().map(|b| *b).unwrap_or_default()
    }

    /// The spool's answer for the message that ended: 250 only now.
    pub fn handle_commit(
        &mut self,
        result: Result<MessageId, &SpoolError>,
        now: Instant,
        ctx: &Context<'_>,
    ) {
        if !matches!(self.state, State::AwaitCommit) {
            return;
        }
        self.set_state(State::Ready);
        match result {
            Ok(id) => {
                self.accepted += 1;
                self.reply(&Reply::queued(&id.to_string()));
            }
            Err(e) if e.is_no_space() => self.reply(&Reply::STORAGE_LOW),
            Err(_) => self.reply(&Reply::QUEUE_WRITE_ERROR),
        }
        self.deadline = now + COMMAND_TIMEOUT;
        self.process(now, ctx);
    }
}

impl ServerSession {
    /// Postfix's reject line for a refused recipient (DESIGN.md §5.12), which
    /// pflogsumm counts: `NOQUEUE: reject: RCPT from unknown[IP]: CODE X.Y.Z <rcpt>:
    /// text; from=<…> to=<…> proto=ESMTP helo=<…>`.
    fn log_reject(&self, r: &Reply, to: &crate::vocab::Mailbox) {
        let from = match &self.state {
            State::InTransaction(t) => crate::vocab::fmt_path(&t.from),
            _ => "<>".into(),
        };
        let (helo, esmtp) = self
            .helo
            .as_ref()
            .map_or(("", false), |(h, e)| (h.as_str(), *e));
        log::info!(
            target: "smtpd",
            "NOQUEUE: reject: RCPT from unknown[{}]: {} {}; from={} to=<{}> proto={} helo=<{}>",
            self.client.ip(),
            r.code,
            sanitize(r.text.as_bytes()),
            sanitize(from.as_bytes()),
            sanitize(to.to_string().as_bytes()),
            if esmtp { "ESMTP" } else { "SMTP" },
            sanitize(helo.as_bytes())
        );
    }
}
