//! Messages made here: bounces (RFC 3464 DSNs for failed recipients) and local
//! submissions are routed, expanded and committed to the spool like received mail.
//! Part of the core (`impl Core`). A bounce is committed before the failed
//! recipients are journalled, so a crash repeats a bounce and never loses one; a
//! bounce that cannot be committed journals nothing and is tried again, and the
//! original stays until it is out.

use std::time::{Duration, Instant};

use super::Core;
use crate::logging::sanitize;
use crate::message::bounce::{self, Action, Failure};
use crate::sched::Bounce;
use crate::store::spool::{Destination, Envelope, MessageId, Recipient, StateRecord};

/// Bounces that could not be committed (a full disk), and when they are tried
/// again; and finished messages whose queue file waits for their bounce.
#[derive(Default)]
pub(super) struct Bounces {
    pub(super) waiting: Vec<(crate::sched::Bounce, std::time::Instant)>,
    pub(super) completed: std::collections::HashSet<crate::store::spool::MessageId>,
}

/// How long a bounce that could not be committed waits before it is tried again
/// (at once when the disk has room again).
pub const BOUNCE_RETRY: Duration = Duration::from_secs(30);

/// What the submitter asked of a message made or taken here: RET and ENVID,
/// NOTIFY for every recipient (`sendmail -R -V -N`), and whether it needs SMTPUTF8
/// (a notice about a message that did).
#[derive(Debug, Clone, Default)]
pub struct Submitted {
    /// RET and ENVID.
    pub dsn: crate::vocab::dsn::MailDsn,
    /// NOTIFY, for each recipient.
    pub notify: Option<crate::vocab::dsn::Notify>,
    /// The message needs SMTPUTF8.
    pub smtputf8: bool,
}

/// What a success notice says of a recipient the session `s` delivered: nothing
/// when the next hop offers DSN (it took NOTIFY with the message and tells the
/// sender itself), "delivered" over LMTP (the mail store has it), else "relayed".
pub(super) fn notice_for(s: Option<&crate::smtp::client::ClientSession>) -> Option<Action> {
    match s {
        Some(s) if s.offers_dsn() => None,
        Some(s) if s.is_lmtp() => Some(Action::Delivered),
        _ => Some(Action::Relayed),
    }
}

/// Recipients that could not be routed, with the reason.
pub type Refused = Vec<(crate::vocab::Mailbox, String)>;

/// Why a locally made message was not queued.
pub enum QueueError {
    /// No recipient could be routed.
    Unroutable(Refused),
    /// The spool failed (try again later).
    Spool(crate::store::spool::SpoolError),
}

impl Core {
    /// Commits a DSN for the failed recipients, then journals their failure. A DSN
    /// that cannot be committed (a full disk) journals nothing: the bounce is tried
    /// again ([`Core::retry_bounces`]) and the original stays in the queue until it
    /// is out, so the sender always hears.
    pub(super) fn send_bounce(&mut self, b: Bounce, now: Instant) {
        let unix = self.time.unix;
        let opened = self.original(b.msg);
        let committed = match opened {
            Ok((env, body, full)) => match &env.sender {
                None => {
                    log::info!("{} bounce dropped: the message was itself a bounce", b.msg);
                    true
                }
                Some(sender) => {
                    let failures: Vec<Failure> = b
                        .failures
                        .iter()
                        .filter_map(|(idx, status, reason)| {
                            // NOTIFY without FAILURE (NEVER, or SUCCESS alone): the
                            // sender asked not to hear of it (RFC 3461 §4.1).
                            let r = env.recipients.get(*idx).filter(|r| r.notify_failure())?;
                            let remote = match &r.dest {
                                Destination::Remote { host, .. } => Some(host.clone()),
                                Destination::Local(_) => None,
                            };
                            let reply = crate::machines::delivery::remote_reply(reason);
                            Some(Failure {
                                action: Action::Failed,
                                orcpt: r.dsn.orcpt.clone(),
                                rcpt: r.address.clone(),
                                status: status.clone(),
                                diagnostic: reply.to_string(),
                                remote_mta: remote.filter(|_| {
                                    reply.as_bytes().first().is_some_and(u8::is_ascii_digit)
                                }),
                            })
                        })
                        .collect();
                    if failures.is_empty() {
                        log::info!("{} bounce not sent: NOTIFY asked for none", b.msg);
                        true
                    } else {
                        let dsn = bounce::dsn(
                            &self.config.main.hostname,
                            b.msg,
                            &env,
                            sender,
                            &body,
                            full,
                            &failures,
                            unix,
                        );
                        self.inject(sender.clone(), dsn, b.msg, env.smtputf8)
                    }
                }
            },
            Err(e) => {
                // Gone or unreadable: nothing can be quoted or told any more.
                log::error!("{} bounce cannot read original error=\"{e}\"", b.msg);
                true
            }
        };
        if !committed {
            log::warn!(
                "{} bounce postponed: the failed recipients stay queued until it is out (retry in {} s)",
                b.msg,
                BOUNCE_RETRY.as_secs()
            );
            self.bounces.waiting.push((b, now + BOUNCE_RETRY));
            return;
        }
        let failed: Vec<StateRecord> = b
            .failures
            .iter()
            .map(|(idx, _, reason)| StateRecord::Failed {
                idx: *idx,
                at: unix,
                reason: reason.clone(),
            })
            .collect();
        if let Err(e) = self.spool.record_all(b.msg, &failed) {
            log::error!("{} spool journal-failed error=\"{e}\"", b.msg);
        }
        if self.bounces.completed.remove(&b.msg) {
            self.remove_completed(b.msg);
        }
    }

    /// Whether a bounce about `msg` waits to be committed (its queue file stays).
    pub(super) fn bounce_waits_for(&self, msg: MessageId) -> bool {
        self.bounces.waiting.iter().any(|(b, _)| b.msg == msg)
    }

    /// Tries the postponed bounces whose time came (or all of them, once the disk
    /// has room again).
    pub(super) fn retry_bounces(&mut self, now: Instant, all: bool) {
        if self.bounces.waiting.is_empty() {
            return;
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.bounces.waiting)
            .into_iter()
            .partition(|(_, at)| all || now >= *at);
        self.bounces.waiting = later;
        for (b, _) in due {
            self.send_bounce(b, now);
        }
    }

    /// When a postponed bounce is tried next.
    pub(super) fn bounce_timeout(&self) -> Option<Instant> {
        self.bounces.waiting.iter().map(|(_, at)| *at).min()
    }

    /// A message's envelope and what a notice returns of it: its headers (the head
    /// is read, not the message), or all of it when the sender asked (`RET=FULL`)
    /// and it is small; and whether it is all of it.
    fn original(
        &self,
        msg: MessageId,
    ) -> Result<(crate::store::spool::Envelope, Vec<u8>, bool), crate::store::spool::SpoolError>
    {
        self.spool.open_message(msg).and_then(|(env, body)| {
            let full = bounce::returns_full(&env, body.len());
            let limit = if full {
                bounce::MAX_RETURNED as usize
            } else {
                bounce::MAX_QUOTED_HEADERS
            };
            body.head(limit).map(|data| (env, data, full)).map_err(|e| {
                crate::store::spool::SpoolError {
                    op: "read",
                    path: self.spool.queue_path(msg),
                    err: e,
                }
            })
        })
    }

    /// Sends a delay notice (`reporttimes`): Action: delayed, with Will-Retry-Until
    /// (never to the null sender). The scheduler has journalled the level sent.
    pub(super) fn send_delay(&mut self, d: crate::sched::Delay) {
        let (env, head, full) = match self.original(d.msg) {
            Ok(x) => x,
            Err(e) => return log::error!("{} delay cannot read original error=\"{e}\"", d.msg),
        };
        let Some(sender) = env.sender.clone() else {
            return log::info!("{} delay not sent: the null sender gets no notices", d.msg);
        };
        let failures: Vec<Failure> = d
            .rcpts
            .iter()
            .filter_map(|(idx, error, until)| {
                let r = env.recipients.get(*idx).filter(|r| r.notify_delay())?;
                let error = error
                    .as_deref()
                    .map(crate::machines::delivery::remote_reply);
                let diagnostic = error
                    .map(str::to_string)
                    .unwrap_or_else(|| "not delivered yet: waiting to be released".into());
                let status = match error {
                    Some(e) if bounce::status_of(e).starts_with('4') => bounce::status_of(e),
                    _ => "4.4.7".to_string(),
                };
                Some(Failure {
                    action: Action::Delayed(*until),
                    orcpt: r.dsn.orcpt.clone(),
                    rcpt: r.address.clone(),
                    status,
                    diagnostic,
                    remote_mta: None,
                })
            })
            .collect();
        if failures.is_empty() {
            return log::info!("{} delay notice not sent: NOTIFY asked for none", d.msg);
        }
        let dsn = bounce::dsn(
            &self.config.main.hostname,
            d.msg,
            &env,
            &sender,
            &head,
            full,
            &failures,
            self.time.unix,
        );
        log::info!("{} delay notice recipients={}", d.msg, failures.len());
        // A notice that cannot be committed is not sent again (its level is
        // journalled): a warning lost, never a message.
        self.inject(sender, dsn, d.msg, env.smtputf8);
    }

    /// Sends the success notices (RFC 3461 §4.1 `NOTIFY=SUCCESS`) for recipients
    /// just delivered (`Action::Delivered`) or relayed to a next hop that does not
    /// pass the request on (`Action::Relayed`), each with the reply that took it.
    /// Called before the delivery is recorded, while the queue file is there.
    pub(super) fn send_success(&mut self, msg: MessageId, done: &[(usize, Action, String)]) {
        self.send_notice(msg, "success", |env| {
            done.iter()
                .filter_map(|(idx, action, reply)| {
                    let r = env.recipients.get(*idx).filter(|r| r.notify_success())?;
                    Some(Failure {
                        action: *action,
                        orcpt: r.dsn.orcpt.clone(),
                        rcpt: r.address.clone(),
                        status: "2.0.0".into(),
                        diagnostic: reply.clone(),
                        remote_mta: None,
                    })
                })
                .collect()
        });
    }

    /// Sends the "expanded" notice for recipients an alias spread over several
    /// destinations, whose sender asked for SUCCESS (RFC 3461 §6.2.7.3), once the
    /// message is queued.
    pub(super) fn send_expanded(
        &mut self,
        msg: MessageId,
        list: &[(crate::vocab::Mailbox, crate::vocab::dsn::RcptDsn)],
    ) {
        self.send_notice(msg, "expanded", |_| {
            list.iter()
                .map(|(to, dsn)| Failure {
                    action: Action::Expanded,
                    orcpt: dsn.orcpt.clone(),
                    rcpt: to.clone(),
                    status: "2.0.0".into(),
                    diagnostic: "expanded by an alias; its members are not told of".into(),
                    remote_mta: None,
                })
                .collect()
        });
    }

    /// A notice of `kind` about `msg` to its sender, for the recipients `rcpts`
    /// picks from its envelope (none: no notice). One that cannot be committed is
    /// lost (logged), never the message.
    fn send_notice(
        &mut self,
        msg: MessageId,
        kind: &str,
        rcpts: impl FnOnce(&Envelope) -> Vec<Failure>,
    ) {
        let (env, data, full) = match self.original(msg) {
            Ok(x) => x,
            Err(e) => return log::error!("{msg} {kind} notice cannot read original error=\"{e}\""),
        };
        let Some(sender) = env.sender.clone() else {
            return;
        };
        let rcpts = rcpts(&env);
        if rcpts.is_empty() {
            return;
        }
        let notice = bounce::dsn(
            &self.config.main.hostname,
            msg,
            &env,
            &sender,
            &data,
            full,
            &rcpts,
            self.time.unix,
        );
        log::info!("{msg} {kind} notice recipients={}", rcpts.len());
        self.inject(sender, notice, msg, env.smtputf8);
    }

    /// Queues a locally generated message (a DSN) to `to`, from the null sender;
    /// `false` when it could not be committed (and may be tried again).
    fn inject(
        &mut self,
        to: crate::vocab::Mailbox,
        data: Vec<u8>,
        about: MessageId,
        smtputf8: bool,
    ) -> bool {
        let opts = Submitted {
            smtputf8,
            ..Submitted::default()
        };
        match self.queue_local(None, std::slice::from_ref(&to), &data, "LOCAL", &opts) {
            Ok((id, _)) => {
                log::info!(
                    "{id} bounce queued about={about} to=<{}>",
                    sanitize(to.to_string().as_bytes())
                );
                true
            }
            Err(QueueError::Unroutable(refused)) => {
                for (m, why) in refused {
                    log::warn!(
                        "{about} bounce undeliverable to=<{}> reason=\"{why}\"",
                        sanitize(m.to_string().as_bytes())
                    );
                }
                true
            }
            Err(QueueError::Spool(e)) => {
                log::error!("{about} bounce spool-failed error=\"{e}\"");
                false
            }
        }
    }

    /// Routes, expands and queues a message made here (bounces, local submission).
    /// Returns its id and the recipients that could not be routed.
    pub(super) fn queue_local(
        &mut self,
        sender: crate::vocab::ReversePath,
        to: &[crate::vocab::Mailbox],
        data: &[u8],
        protocol: &str,
        opts: &Submitted,
    ) -> Result<(MessageId, Refused), QueueError> {
        let mut recipients = Vec::new();
        let mut refused = Vec::new();
        for m in to {
            match self.config.router.destinations(m, true) {
                Ok(dests) => recipients.extend(dests.into_iter().map(|t| Recipient {
                    address: t.address_for(m).clone(),
                    dest: t.dest,
                    dsn: crate::vocab::dsn::RcptDsn {
                        notify: opts.notify,
                        orcpt: None,
                    },
                })),
                Err(why) => refused.push((m.clone(), why)),
            }
        }
        if recipients.is_empty() {
            return Err(QueueError::Unroutable(refused));
        }
        let env = Envelope {
            arrival: self.time.unix,
            client: "-".into(),
            helo: self.config.main.hostname.clone(),
            protocol: protocol.into(),
            eight_bit: data.iter().any(|&b| b >= 0x80),
            sender,
            recipients,
            dsn: opts.dsn.clone(),
            smtputf8: opts.smtputf8,
        };
        let mut inc = self.spool.begin(&env).map_err(QueueError::Spool)?;
        inc.write(data);
        let size = inc.len();
        match self.spool.commit(vec![inc]).pop() {
            Some(Ok(id)) => {
                self.sched.add_sized(id, &env, &[], self.time.unix, size);
                if env.sender.is_none() {
                    // A notice of ours; pickup logs submissions after its uid line.
                    log_queued(id, &env, size);
                }
                Ok((id, refused))
            }
            Some(Err(e)) => {
                if e.is_no_space() {
                    // The disk is checked again at once (and MAIL refused while it
                    // is full); the transition back starts what waits for room.
                    self.disk.checked = None;
                }
                Err(QueueError::Spool(e))
            }
            None => unreachable!("a batch of one gives one result"),
        }
    }
}

/// The queue manager's line for a new message (DESIGN.md §5.12), which pflogsumm
/// reads for senders and sizes: `QUEUEID: from=<…>, size=N, nrcpt=N (queue active)`.
pub(super) fn log_queued(id: crate::store::spool::MessageId, env: &Envelope, size: u64) {
    log::info!(
        target: "qmgr",
        "{id}: from={}, size={size}, nrcpt={} (queue active)",
        crate::logging::sanitize(crate::vocab::fmt_path(&env.sender).as_bytes()),
        env.recipients.len()
    );
}
