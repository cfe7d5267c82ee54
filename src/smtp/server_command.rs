//! One command line of [`ServerSession`]: parsed, checked against the state, the
//! listener and the pipelining rules, then handed to its verb. Same module privacy
//! as the session; split out by step.

use std::time::Instant;

use super::{
    command, redacted, reply, Command, Context, Reply, ServerSession, State, JUNK_LIMIT,
    UNKNOWN_LIMIT,
};
use crate::vocab::{sanitize, ListenKind};

impl ServerSession {
    /// One command line. `more`: further input was already buffered behind it.
    pub(super) fn command(&mut self, line: &[u8], more: bool, now: Instant, ctx: &Context<'_>) {
        let host = &ctx.policy.hostname;
        log::debug!("{:08x} smtp command \"{}\"", self.id, redacted(line));
        if self.draining {
            return self.shutdown(host);
        }
        // A local client's unqualified address is completed with our name.
        let local = self.trusted || self.identity.is_some();
        let utf8 = matches!(&self.state, State::InTransaction(t) if t.smtputf8);
        let cmd = match command::parse_in(line, local.then_some(host.as_ref()), utf8) {
            Ok(c) => c,
            // Where a malformed BDAT's chunk ends is unknown: its octets must never
            // be read as commands, so the session ends.
            Err(r) if r == Reply::BDAT_SYNTAX || is_bdat(line) => return self.close_with(&r),
            Err(r) => {
                self.unknown_in_row = 0;
                self.error(&r, now, host);
                return;
            }
        };
        if matches!(self.state, State::Chunking(_))
            && !matches!(
                cmd,
                Command::Bdat { .. }
                    | Command::Rset
                    | Command::Quit
                    | Command::Noop
                    | Command::Helo(_)
                    | Command::Ehlo(_)
            )
        {
            return self.error(&Reply::BETWEEN_CHUNKS, now, host);
        }
        if cmd == Command::StartTls {
            return self.starttls(more, now, ctx);
        }
        // RFC 2645 §4: an ODMR port serves the turn-around and nothing else.
        if self.kind == ListenKind::Odmr
            && !matches!(
                cmd,
                Command::Ehlo(_)
                    | Command::Auth { .. }
                    | Command::Atrn(_)
                    | Command::Quit
                    | Command::NotImplemented
                    | Command::Bdat { .. }
            )
        {
            return self.error(&Reply::ODMR_ONLY, now, host);
        }
        // RFC 2920 §3.1: without PIPELINING the client must wait for each reply, and
        // even with it some commands must end a group (Exim's synchronisation check).
        let esmtp = self.helo.as_ref().is_some_and(|h| h.1);
        if more && (!esmtp || cmd.ends_group()) {
            log::warn!(
                "{:08x} smtp sync-error address={} command=\"{}\"",
                self.id,
                self.client,
                sanitize(line)
            );
            self.close_with(&Reply::SYNC_ERROR);
            return;
        }
        if matches!(cmd, Command::Unknown) {
            self.unknown_in_row += 1;
            self.error(&Reply::UNKNOWN_COMMAND, now, host);
            if self.unknown_in_row >= UNKNOWN_LIMIT && !self.is_closing() {
                self.close_with(&Reply::closing(
                    host,
                    "4.7.0 Error: too many unknown commands",
                ));
            }
            return;
        }
        self.unknown_in_row = 0;
        if cmd.is_junk() {
            self.junk += 1;
            if self.junk > JUNK_LIMIT {
                self.count_error(now, host);
                if self.is_closing() {
                    return;
                }
            }
        }
        match cmd {
            Command::Forbidden => {
                log::warn!(
                    "{:08x} smtp forbidden-command address={} line=\"{}\"",
                    self.id,
                    self.client,
                    sanitize(line)
                );
                self.abort_message();
                self.set_state(State::Closing);
            }
            Command::Helo(name) => {
                self.reset_transaction();
                self.reply(&Reply::new(250, host.to_string()));
                self.helo = Some((name, false));
            }
            Command::Ehlo(name) => {
                self.reset_transaction();
                let size = format!("SIZE {}", ctx.policy.max_message_size);
                let auth = self.auth_offer(ctx);
                let mut lines: Vec<&str> = vec![host];
                if self.kind != ListenKind::Odmr {
                    lines.extend_from_slice(&[
                        "PIPELINING",
                        &size,
                        "8BITMIME",
                        "CHUNKING",
                        "SMTPUTF8",
                        "DSN",
                    ]);
                    if ctx.policy.etrn {
                        lines.push("ETRN");
                    }
                }
                if ctx.policy.tls && self.tls.is_none() && self.provider.is_none() {
                    lines.push("STARTTLS");
                }
                if let Some(a) = &auth {
                    lines.push(a);
                }
                if self.offers_atrn() {
                    lines.push("ATRN");
                }
                lines.push("ENHANCEDSTATUSCODES");
                reply::write_multiline(250, &lines, &mut self.out);
                self.helo = Some((name, true));
            }
            Command::Auth { mech, initial } => self.auth(&mech, initial.as_deref(), now, ctx),
            Command::StartTls => unreachable!("handled above"),
            Command::Mail { .. }
                if self.kind == ListenKind::Submission && self.identity.is_none() =>
            {
                let r = if self.tls.is_none() && ctx.policy.tls {
                    Reply::TLS_FIRST
                } else {
                    Reply::AUTH_REQUIRED
                };
                self.error(&r, now, host)
            }
            Command::Mail {
                from,
                size,
                body,
                smtputf8,
                dsn,
            } => self.mail(from, size, body, (smtputf8, dsn), now, ctx),
            Command::Rcpt { to, dsn } => self.rcpt(to, dsn, now, ctx),
            Command::Data => self.data(now, ctx),
            Command::Bdat { size, last } => self.bdat(size, last, now, ctx),
            Command::Rset => {
                self.reset_transaction();
                self.reply(&Reply::OK);
            }
            Command::Noop => self.reply(&Reply::OK),
            Command::Vrfy => self.reply(&Reply::VRFY),
            Command::Help => self.reply(&Reply::HELP),
            Command::Quit => {
                self.reply(&Reply::BYE);
                self.set_state(State::Closing);
            }
            Command::Etrn(arg) => self.etrn(&arg, now, ctx),
            Command::Atrn(domains) => self.atrn(domains, now, ctx),
            Command::NotImplemented => self.error(&Reply::NOT_IMPLEMENTED, now, host),
            Command::Unknown => unreachable!("handled above"),
        }
    }
}

/// Whether a line that did not parse was a BDAT (its chunk follows).
fn is_bdat(line: &[u8]) -> bool {
    line.len() >= 4
        && line[..4].eq_ignore_ascii_case(b"BDAT")
        && line.get(4).is_none_or(|&b| !b.is_ascii_alphanumeric())
}
