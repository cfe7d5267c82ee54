//! `sendmail -bs`: an SMTP session on stdin and stdout, as the submitting user (MUAs
//! and scripts that speak SMTP to a pipe). Commands go through the server's own
//! parser (`smtp::command`); each message is submitted like `sendmail` does it — to
//! the drop folder, as this user, picked up by the daemon — and `250` comes only
//! once its drop file is durable. Nothing here needs privileges or the daemon.

use std::io::{BufRead, Read, Write};

use crate::cli::exit as ex;
use crate::config::Config;
use crate::smtp::command::{parse, Command};
use crate::vocab::{Mailbox, ReversePath};

/// Longest command line read (RFC 5321 §4.5.3.1.4 says 512; extensions need more).
const MAX_LINE: u64 = 2048;

/// Runs the session until QUIT or the end of the input; exit 0, or 74 when the
/// output cannot be written.
pub fn session(cfg: &Config, input: &mut impl BufRead, out: &mut impl Write) -> i32 {
    let host = cfg.main.hostname.clone();
    let max_size = cfg.main.max_message_size;
    let mut s = Session { out, ok: true };
    s.reply(220, &format!("{host} ESMTP etrnd (sendmail -bs)"));
    let mut greeted = false;
    let mut from: Option<ReversePath> = None;
    let mut rcpts: Vec<Mailbox> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.by_ref().take(MAX_LINE).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") {
            // Over-long: skip to the end of the line.
            let mut rest = Vec::new();
            let _ = input.read_until(b'\n', &mut rest);
            s.reply(500, "5.5.2 line too long");
            continue;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let cmd = match parse(text) {
            Ok(c) => c,
            Err(r) => {
                s.reply(r.code, &r.text);
                continue;
            }
        };
        match cmd {
            Command::Helo(_) => {
                greeted = true;
                from = None;
                rcpts.clear();
                s.reply(250, &host);
            }
            Command::Ehlo(_) => {
                greeted = true;
                from = None;
                rcpts.clear();
                s.lines(
                    250,
                    &[&host, "8BITMIME", &format!("SIZE {max_size}"), "PIPELINING"],
                );
            }
            Command::Mail { .. } if !greeted => s.reply(503, "5.5.1 EHLO or HELO first"),
            Command::Mail { .. } if from.is_some() => s.reply(503, "5.5.1 nested MAIL command"),
            // Offered by the daemon's listeners, not here (the drop file carries
            // neither): refused as parameters that were not offered.
            Command::Mail { smtputf8, dsn, .. } if smtputf8 || dsn != Default::default() => {
                s.reply(555, "5.5.4 Unsupported MAIL parameter")
            }
            Command::Rcpt { dsn, .. } if dsn != Default::default() => {
                s.reply(555, "5.5.4 Unsupported RCPT parameter")
            }
            Command::Mail { size: Some(n), .. } if n > max_size => {
                s.reply(552, &format!("5.3.4 message larger than {max_size} octets"))
            }
            Command::Mail { from: f, .. } => {
                from = Some(f);
                s.reply(250, "2.1.0 Ok");
            }
            Command::Rcpt { .. } if from.is_none() => s.reply(503, "5.5.1 MAIL first"),
            Command::Rcpt { .. } if rcpts.len() >= cfg.main.max_recipients.max(1) => {
                s.reply(452, "4.5.3 too many recipients")
            }
            Command::Rcpt { to: m, .. } => match cfg.router.destinations(&m, true) {
                Ok(_) => {
                    if !rcpts.contains(&m) {
                        rcpts.push(m);
                    }
                    s.reply(250, "2.1.5 Ok");
                }
                Err(why) => s.reply(
                    550,
                    &format!(
                        "5.1.1 <{}>: {}",
                        crate::logging::sanitize(m.to_string().as_bytes()),
                        why
                    ),
                ),
            },
            Command::Data if rcpts.is_empty() => s.reply(503, "5.5.1 no valid recipients"),
            Command::Data => {
                s.reply(354, "End data with <CR><LF>.<CR><LF>");
                let (msg, complete) = read_data(input, max_size);
                if !complete {
                    // The input ended inside DATA: nothing is queued.
                    break;
                }
                let sender = from.take().unwrap_or(None);
                let to = std::mem::take(&mut rcpts);
                match msg {
                    None => s.reply(552, &format!("5.3.4 message larger than {max_size} octets")),
                    Some(msg) => {
                        let (fields, body) = crate::tools::sendmail::split_headers(&msg);
                        match crate::tools::sendmail::queue(
                            cfg,
                            sender,
                            to,
                            fields,
                            &body,
                            None,
                            &Default::default(),
                        ) {
                            Ok(()) => s.reply(250, "2.0.0 Ok: queued"),
                            Err(e) => s.reply(
                                451,
                                &format!(
                                    "4.3.0 cannot queue the message: {}",
                                    crate::logging::sanitize(e.to_string().as_bytes())
                                ),
                            ),
                        }
                    }
                }
            }
            Command::Rset => {
                from = None;
                rcpts.clear();
                s.reply(250, "2.0.0 Ok");
            }
            Command::Noop => s.reply(250, "2.0.0 Ok"),
            Command::Vrfy => s.reply(252, "2.1.5 cannot VRFY, send some mail"),
            Command::Help => s.reply(214, "2.0.0 see etrnd(8)"),
            Command::Quit => {
                s.reply(221, "2.0.0 Bye");
                break;
            }
            _ => s.reply(502, "5.5.1 not available in sendmail -bs"),
        }
        if !s.ok {
            return 74; // EX_IOERR
        }
    }
    if s.ok {
        ex::OK
    } else {
        74
    }
}

struct Session<'a, W: Write> {
    out: &'a mut W,
    ok: bool,
}

impl<W: Write> Session<'_, W> {
    fn reply(&mut self, code: u16, text: &str) {
        self.lines(code, &[text]);
    }

    fn lines(&mut self, code: u16, lines: &[&str]) {
        let mut buf = String::new();
        for (i, l) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            buf.push_str(&format!("{code}{sep}{l}\r\n"));
        }
        self.ok &= self
            .out
            .write_all(buf.as_bytes())
            .and_then(|()| self.out.flush())
            .is_ok();
    }
}

/// Reads DATA up to the lone dot, undoing dot-stuffing, as CR LF lines: the message
/// (`None` if it grew past `max` octets, the rest then read and dropped) and whether
/// the dot came before the end of the input.
pub fn read_data(input: &mut impl BufRead, max: u64) -> (Option<Vec<u8>>, bool) {
    let mut msg = Vec::new();
    let mut over = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.by_ref().take(64 * 1024).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return (None, false),
            Ok(_) => {}
        }
        let content = line.strip_suffix(b"\n").unwrap_or(&line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content == b"." && line.ends_with(b"\n") {
            return (if over { None } else { Some(msg) }, true);
        }
        if over {
            continue;
        }
        let content = content.strip_prefix(b".").unwrap_or(content);
        msg.extend_from_slice(content);
        if line.ends_with(b"\n") {
            msg.extend_from_slice(b"\r\n");
        }
        if msg.len() as u64 > max {
            over = true;
            msg.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_unstuffed_and_bounded() {
        let (m, done) = read_data(&mut &b"a\r\n..b\n.\r\nafter"[..], 100);
        assert_eq!((m.as_deref(), done), (Some(&b"a\r\n.b\r\n"[..]), true));
        let (m, done) = read_data(&mut &b"0123456789\r\n.\r\n"[..], 5);
        assert_eq!((m, done), (None, true));
        let (m, done) = read_data(&mut &b"no end\r\n"[..], 100);
        assert_eq!((m, done), (None, false));
    }
}
