//! On-disk format of a queued message (pure encode/decode, no I/O).
//!
//! ```text
//! ETRND 1\n                         magic and format version
//! T 1795873551\n                    arrival, seconds since the epoch
//! C 192.0.2.1\n                     client address ("-" for local submission)
//! H client.example\n                HELO/EHLO name
//! P ESMTP\n                         protocol (ESMTP, SMTP, LOCAL)
//! B 8BITMIME\n                      body type (7BIT, 8BITMIME)
//! S sender@example.org\n            envelope sender, empty for <>
//! U SMTPUTF8\n                      (optional) the message needs SMTPUTF8 (RFC 6531)
//! E QQ314159\n                      (optional) DSN ENVID, decoded (RFC 3461 §4.4)
//! F HDRS\n                          (optional) DSN RET: FULL or HDRS
//! R user@client.dom smtp-etrn!mail.client.dom\n   one line per recipient, in order:
//! R alice@ours.example local!alice\n              address, then channel!host
//! N SUCCESS,FAILURE\n               (optional) the recipient above's DSN NOTIFY
//! O rfc822;alice@ours.example\n     (optional) and ORCPT (RFC 3461 §4.1–4.2)
//! \n                                end of the envelope
//! <message, CR LF line ends, Received: header first>
//! ETRND-END 00000000000004d2 1a2b3c4d\n
//! ```
//!
//! The trailer (36 octets) holds the length of everything before it in hex and the
//! CRC-32 of those octets; a file whose trailer is missing, wrong or torn is corrupt.
//! Values are *encoded*: every octet outside `!`..`~`, and `%` itself, is written as
//! `%XX`, so no peer-supplied text can ever inject a line (the Exim/OpenSMTPD spool
//! injection bugs). Unknown envelope lines are ignored (dma's rule), so a later
//! version can add fields, and an earlier one reads a later one's files: the DSN
//! and SMTPUTF8 fields are lines of their own for that reason.
//!
//! Per-recipient delivery state lives in a separate append-only journal (see
//! [`StateRecord`]); the message file never changes after it is committed.

use std::fmt::Write as _;

use crate::vocab::dsn::{MailDsn, Notify, Orcpt, RcptDsn};
use crate::vocab::{Mailbox, ReversePath};

/// The first line of every message file.
pub const MAGIC: &[u8] = b"ETRND 1\n";
/// Length of the trailer: `ETRND-END ` + 16 hex + space + 8 hex + LF.
pub const TRAILER_LEN: usize = 36;
const TRAILER_TAG: &[u8] = b"ETRND-END ";

pub use crate::vocab::Destination;

/// One envelope recipient and its route, fixed at RCPT time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address as given in RCPT TO.
    pub address: Mailbox,
    /// Its route.
    pub dest: Destination,
    /// What the sender asked to be told about it, and its original address (DSN).
    pub dsn: RcptDsn,
}

impl Recipient {
    /// A recipient without DSN parameters.
    pub fn new(address: Mailbox, dest: Destination) -> Recipient {
        Recipient {
            address,
            dest,
            dsn: RcptDsn::default(),
        }
    }

    /// Whether the sender wants a notice when it fails (the default, RFC 3461 §4.1).
    pub fn notify_failure(&self) -> bool {
        self.dsn.notify.is_none_or(|n| n.failure)
    }

    /// Whether the sender wants a delay notice (the default).
    pub fn notify_delay(&self) -> bool {
        self.dsn.notify.is_none_or(|n| n.delay)
    }

    /// Whether the sender asked to hear of its delivery.
    pub fn notify_success(&self) -> bool {
        self.dsn.notify.is_some_and(|n| n.success)
    }
}

/// The envelope of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Arrival time, seconds since the epoch.
    pub arrival: u64,
    /// Client address, or `-`.
    pub client: String,
    /// HELO name.
    pub helo: String,
    /// `ESMTP`, `SMTP` or `LOCAL`.
    pub protocol: String,
    /// Whether the body was declared 8BITMIME.
    pub eight_bit: bool,
    /// The sender; `None` is `<>`.
    pub sender: ReversePath,
    /// The recipients, in RCPT order.
    pub recipients: Vec<Recipient>,
    /// RET and ENVID of the MAIL command (DSN).
    pub dsn: MailDsn,
    /// Whether the message needs SMTPUTF8 (UTF-8 addresses or header fields).
    pub smtputf8: bool,
}

/// Why an envelope could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// `%XX`-encodes every octet outside `!`..`~` and `%`.
pub fn encode(s: &str) -> String {
    crate::vocab::hex_escape(s, b'%', &[])
}

/// Reverses [`encode`].
pub fn decode(s: &str) -> Result<String, DecodeError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| DecodeError(format!("bad escape in '{s}'")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError(format!("not UTF-8: '{s}'")))
}

impl Envelope {
    /// The envelope section, magic line and blank line included.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::from_utf8_lossy(MAGIC).into_owned();
        let _ = writeln!(s, "T {}", self.arrival);
        let _ = writeln!(s, "C {}", encode(&self.client));
        let _ = writeln!(s, "H {}", encode(&self.helo));
        let _ = writeln!(s, "P {}", encode(&self.protocol));
        let _ = writeln!(s, "B {}", if self.eight_bit { "8BITMIME" } else { "7BIT" });
        let sender = self
            .sender
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        let _ = writeln!(s, "S {}", encode(&sender));
        if self.smtputf8 {
            s.push_str("U SMTPUTF8\n");
        }
        if let Some(e) = &self.dsn.envid {
            let _ = writeln!(s, "E {}", encode(e));
        }
        if let Some(r) = &self.dsn.ret {
            let _ = writeln!(s, "F {}", r.render());
        }
        for r in &self.recipients {
            let _ = write!(
                s,
                "R {} {}",
                encode(&r.address.to_string()),
                encode(&r.dest.to_string())
            );
            s.push('\n');
            if let Some(n) = &r.dsn.notify {
                let _ = writeln!(s, "N {}", n.render());
            }
            if let Some(o) = &r.dsn.orcpt {
                let _ = writeln!(s, "O {}", encode(&format!("{};{}", o.addr_type, o.address)));
            }
        }
        s.push('\n');
        s.into_bytes()
    }

    /// Decodes the envelope at the start of `data`; returns it and the offset of the
    /// message that follows.
    pub fn decode(data: &[u8]) -> Result<(Envelope, usize), DecodeError> {
        if !data.starts_with(MAGIC) {
            return Err(DecodeError("no ETRND 1 magic line".into()));
        }
        let mut env = Envelope {
            arrival: 0,
            client: String::new(),
            helo: String::new(),
            protocol: String::new(),
            eight_bit: false,
            sender: None,
            recipients: Vec::new(),
            dsn: MailDsn::default(),
            smtputf8: false,
        };
        let mut pos = MAGIC.len();
        let mut seen_time = false;
        loop {
            let rest = &data[pos..];
            let nl = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| DecodeError("envelope not terminated".into()))?;
            let line = std::str::from_utf8(&rest[..nl])
                .map_err(|_| DecodeError("envelope line not UTF-8".into()))?;
            pos += nl + 1;
            if line.is_empty() {
                break;
            }
            let (tag, value) = line.split_once(' ').unwrap_or((line, ""));
            match tag {
                "T" => {
                    env.arrival = value
                        .parse()
                        .map_err(|_| DecodeError(format!("bad time '{value}'")))?;
                    seen_time = true;
                }
                "C" => env.client = decode(value)?,
                "H" => env.helo = decode(value)?,
                "P" => env.protocol = decode(value)?,
                "B" => env.eight_bit = value == "8BITMIME",
                "S" => {
                    let s = decode(value)?;
                    env.sender = if s.is_empty() {
                        None
                    } else {
                        Some(parse_mailbox(&s)?)
                    };
                }
                "U" => env.smtputf8 = value == "SMTPUTF8",
                "E" => env.dsn.envid = Some(decode(value)?),
                "F" => {
                    env.dsn.ret = crate::vocab::dsn::Ret::parse(value)
                        .map(Some)
                        .map_err(|_| DecodeError(format!("bad RET '{value}'")))?
                }
                "R" => env.recipients.push(parse_recipient(value)?),
                "N" | "O" => {
                    let r = env
                        .recipients
                        .last_mut()
                        .ok_or_else(|| DecodeError(format!("'{line}' before any recipient")))?;
                    dsn_field(r, tag, value)?;
                }
                _ => {} // unknown fields are ignored
            }
        }
        if !seen_time || env.recipients.is_empty() {
            return Err(DecodeError("envelope lacks time or recipients".into()));
        }
        Ok((env, pos))
    }
}

/// `address channel!host`; other fields are ignored, as unknown lines are.
fn parse_recipient(value: &str) -> Result<Recipient, DecodeError> {
    let mut w = value.split(' ');
    let (Some(a), Some(d)) = (w.next(), w.next()) else {
        return Err(DecodeError(format!("bad recipient line 'R {value}'")));
    };
    Ok(Recipient::new(
        parse_mailbox(&decode(a)?)?,
        parse_dest(&decode(d)?)?,
    ))
}

/// An `N` (NOTIFY) or `O` (ORCPT) line, for the recipient before it.
fn dsn_field(r: &mut Recipient, tag: &str, value: &str) -> Result<(), DecodeError> {
    if tag == "N" {
        let n = Notify::parse(value).map_err(|_| DecodeError(format!("bad NOTIFY '{value}'")))?;
        r.dsn.notify = Some(n);
    } else {
        let o = decode(value)?;
        let (t, a) = o
            .split_once(';')
            .ok_or_else(|| DecodeError(format!("bad ORCPT '{o}'")))?;
        r.dsn.orcpt = Some(Orcpt {
            addr_type: t.to_string(),
            address: a.to_string(),
        });
    }
    Ok(())
}

fn parse_mailbox(s: &str) -> Result<Mailbox, DecodeError> {
    // UTF-8 addresses are those an SMTPUTF8 transaction took.
    crate::vocab::parse_path_utf8(&format!("<{s}>"))
        .ok()
        .flatten()
        .ok_or_else(|| DecodeError(format!("bad address '{s}'")))
}

fn parse_dest(s: &str) -> Result<Destination, DecodeError> {
    let (channel, host) = s
        .split_once('!')
        .ok_or_else(|| DecodeError(format!("bad route '{s}'")))?;
    if channel == "local" {
        Ok(Destination::Local(host.to_string()))
    } else if channel.is_empty() || host.is_empty() {
        Err(DecodeError(format!("bad route '{s}'")))
    } else {
        Ok(Destination::Remote {
            channel: channel.to_string(),
            host: host.to_string(),
        })
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
#[derive(Debug, Clone, Copy)]
pub struct Crc32(u32);

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC_TABLE: [u32; 256] = crc_table();

impl Default for Crc32 {
    fn default() -> Self {
        Crc32::new()
    }
}

impl Crc32 {
    /// A fresh checksum.
    pub fn new() -> Crc32 {
        Crc32(0xFFFF_FFFF)
    }

    /// Adds octets.
    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for &b in data {
            c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    /// The checksum of everything added.
    pub fn value(&self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

/// The trailer for `len` octets with checksum `crc`.
pub fn trailer(len: u64, crc: u32) -> Vec<u8> {
    let t = format!("ETRND-END {len:016x} {crc:08x}\n");
    debug_assert_eq!(t.len(), TRAILER_LEN);
    t.into_bytes()
}

/// Checks a whole message file: trailer present, length and checksum right. Returns
/// the length of the content before the trailer.
pub fn verify(data: &[u8]) -> Result<usize, DecodeError> {
    if data.len() < MAGIC.len() + TRAILER_LEN {
        return Err(DecodeError(format!("truncated ({} octets)", data.len())));
    }
    let split = data.len() - TRAILER_LEN;
    let mut c = Crc32::new();
    c.update(&data[..split]);
    check_trailer(&data[split..], split as u64, c.value())?;
    Ok(split)
}

/// Checks a trailer against the length and CRC-32 of the content before it (for a
/// file read in pieces).
pub fn check_trailer(t: &[u8], content_len: u64, crc: u32) -> Result<(), DecodeError> {
    if t.len() != TRAILER_LEN
        || !t.starts_with(TRAILER_TAG)
        || t[TRAILER_LEN - 1] != b'\n'
        || t[26] != b' '
    {
        return Err(DecodeError("no trailer (torn or truncated file)".into()));
    }
    let hex = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
    };
    let len = hex(&t[10..26]).ok_or_else(|| DecodeError("bad trailer length".into()))?;
    let want = hex(&t[27..35]).ok_or_else(|| DecodeError("bad trailer checksum".into()))?;
    if len != content_len {
        return Err(DecodeError(format!(
            "trailer says {len} octets, file has {content_len}"
        )));
    }
    if u64::from(crc) != want {
        return Err(DecodeError("checksum mismatch".into()));
    }
    Ok(())
}

/// One record of a message's delivery journal (`state/<id>`), appended and fsynced
/// after each delivery outcome so a restart never repeats a finished recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateRecord {
    /// Recipient `idx` was delivered at `at`.
    Delivered {
        /// Recipient index in the envelope.
        idx: usize,
        /// When.
        at: u64,
    },
    /// Recipient `idx` failed for good at `at` (a bounce is due or sent).
    Failed {
        /// Recipient index.
        idx: usize,
        /// When.
        at: u64,
        /// The remote reply or local reason.
        reason: String,
    },
    /// Recipient `idx` was tried at `at` and deferred until `next`.
    Deferred {
        /// Recipient index.
        idx: usize,
        /// When.
        at: u64,
        /// Next try.
        next: u64,
        /// The remote reply or local reason.
        reason: String,
    },
    /// A delay notice (`reporttimes`) of level `level` (1: the first) went out for
    /// recipient `idx` at `at`.
    Reported {
        /// Recipient index.
        idx: usize,
        /// When.
        at: u64,
        /// How many of the clause's report times it covers.
        level: u8,
    },
    /// The operator put the whole message on hold at `at` (`etrnd queue hold`):
    /// nothing of it is tried, expired or reported until an [`StateRecord::OffHold`].
    OnHold {
        /// When.
        at: u64,
    },
    /// The operator released the message from hold at `at` (`etrnd queue release`).
    OffHold {
        /// When.
        at: u64,
    },
    /// The operator requeued the message at `at` (`etrnd queue requeue`): the retry
    /// times of the records before this one no longer apply.
    Requeued {
        /// When.
        at: u64,
    },
}

impl StateRecord {
    /// Whether the record must be on disk (fsynced) before the daemon acts on it:
    /// a delivery (else a power cut sends it again), a failure (its bounce went), a
    /// delay notice (sent), the operator's hold and its release. A deferral and a
    /// requeue are written but not synced: a power cut that loses one only makes a
    /// try come sooner and one attempt go uncounted (a kill -9 loses nothing, the
    /// write is in the kernel).
    pub fn needs_sync(&self) -> bool {
        !matches!(
            self,
            StateRecord::Deferred { .. } | StateRecord::Requeued { .. }
        )
    }

    /// One journal line, LF-terminated.
    pub fn encode(&self) -> String {
        match self {
            StateRecord::Delivered { idx, at } => format!("D {idx} {at}\n"),
            StateRecord::Failed { idx, at, reason } => {
                format!("F {idx} {at} {}\n", encode(reason))
            }
            StateRecord::Deferred {
                idx,
                at,
                next,
                reason,
            } => format!("A {idx} {at} {next} {}\n", encode(reason)),
            StateRecord::Reported { idx, at, level } => format!("R {idx} {at} {level}\n"),
            StateRecord::OnHold { at } => format!("H {at}\n"),
            StateRecord::OffHold { at } => format!("U {at}\n"),
            StateRecord::Requeued { at } => format!("Q {at}\n"),
        }
    }

    /// Decodes a journal; a last line without LF (a torn append) is ignored, as are
    /// lines that do not parse.
    pub fn decode_all(data: &[u8]) -> Vec<StateRecord> {
        let complete = match data.iter().rposition(|&b| b == b'\n') {
            Some(i) => &data[..=i],
            None => return Vec::new(),
        };
        String::from_utf8_lossy(complete)
            .lines()
            .filter_map(StateRecord::decode_line)
            .collect()
    }

    fn decode_line(line: &str) -> Option<StateRecord> {
        let w: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| w.get(i).and_then(|s| s.parse::<u64>().ok());
        match *w.first()? {
            "D" if w.len() == 3 => Some(StateRecord::Delivered {
                idx: num(1)? as usize,
                at: num(2)?,
            }),
            "F" if w.len() == 4 => Some(StateRecord::Failed {
                idx: num(1)? as usize,
                at: num(2)?,
                reason: decode(w[3]).ok()?,
            }),
            "R" if w.len() == 4 => Some(StateRecord::Reported {
                idx: num(1)? as usize,
                at: num(2)?,
                level: u8::try_from(num(3)?).ok()?,
            }),
            "H" if w.len() == 2 => Some(StateRecord::OnHold { at: num(1)? }),
            "U" if w.len() == 2 => Some(StateRecord::OffHold { at: num(1)? }),
            "Q" if w.len() == 2 => Some(StateRecord::Requeued { at: num(1)? }),
            "A" if w.len() == 5 => Some(StateRecord::Deferred {
                idx: num(1)? as usize,
                at: num(2)?,
                next: num(3)?,
                reason: decode(w[4]).ok()?,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            arrival: 1_795_873_551,
            client: "192.0.2.1".into(),
            helo: "client.example".into(),
            protocol: "ESMTP".into(),
            eight_bit: true,
            sender: Some(Mailbox::parse("\"odd sender\"@example.org").unwrap()),
            recipients: vec![
                Recipient {
                    address: Mailbox::parse("user@client.dom").unwrap(),
                    dest: Destination::Remote {
                        channel: "smtp-etrn".into(),
                        host: "mail.client.dom".into(),
                    },
                    dsn: Default::default(),
                },
                Recipient {
                    address: Mailbox::postmaster(),
                    dest: Destination::Local("postmaster".into()),
                    dsn: Default::default(),
                },
            ],
            dsn: Default::default(),
            smtputf8: false,
        }
    }

    #[test]
    fn round_trip() {
        let env = sample();
        let mut bytes = env.encode();
        let body_at = bytes.len();
        bytes.extend_from_slice(b"Subject: x\r\n\r\nhi\r\n");
        let (back, off) = Envelope::decode(&bytes).unwrap();
        assert_eq!(back, env);
        assert_eq!(off, body_at);
    }

    #[test]
    fn values_cannot_inject_lines() {
        assert_eq!(
            encode("a b\nR x local!root%"),
            "a%20b%0AR%20x%20local!root%25"
        );
        assert_eq!(decode(&encode("a b\nc%")).unwrap(), "a b\nc%");
        assert!(decode("%zz").is_err());
    }

    #[test]
    fn null_sender_round_trips() {
        let mut env = sample();
        env.sender = None;
        let (back, _) = Envelope::decode(&env.encode()).unwrap();
        assert_eq!(back.sender, None);
    }

    #[test]
    fn dsn_and_smtputf8_round_trip_and_old_files_load_without_them() {
        let mut env = sample();
        env.smtputf8 = true;
        env.dsn.envid = Some("id with space+%".into());
        env.dsn.ret = Some(crate::vocab::dsn::Ret::Hdrs);
        env.recipients[0].dsn.notify = Some(Notify::parse("SUCCESS,DELAY").unwrap());
        env.recipients[0].dsn.orcpt = Some(Orcpt {
            addr_type: "utf-8".into(),
            address: "jürgen x@b.example".into(),
        });
        env.recipients[1].address = Mailbox::parse_in("jürgen@b.example", true).unwrap();
        let bytes = env.encode();
        assert!(bytes
            .iter()
            .all(|&b| b == b'\n' || (b' '..=b'~').contains(&b)));
        let (back, _) = Envelope::decode(&bytes).unwrap();
        assert_eq!(back, env);
        // An earlier version's decoder split R lines at their first space only:
        // the DSN fields are lines of their own, which it skips.
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text
            .lines()
            .filter(|l| l.starts_with("R "))
            .all(|l| l.split(' ').count() == 3));
        let old = b"ETRND 1\nT 5\nR a@b.example smtp!b.example\n\n";
        let (env, _) = Envelope::decode(old).unwrap();
        assert_eq!(env.recipients[0].dsn, RcptDsn::default());
        assert!(env.dsn.envid.is_none() && !env.smtputf8);
        assert!(env.recipients[0].notify_failure() && !env.recipients[0].notify_success());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut bytes = b"ETRND 1\nT 5\nZ future stuff\nR a@b.example smtp!b.example\n\n".to_vec();
        bytes.extend_from_slice(b"body");
        let (env, _) = Envelope::decode(&bytes).unwrap();
        assert_eq!(env.recipients.len(), 1);
    }

    #[test]
    fn crc_known_value() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.value(), 0xCBF4_3926);
    }

    fn whole_file() -> Vec<u8> {
        let mut data = sample().encode();
        data.extend_from_slice(b"hello\r\n");
        let mut c = Crc32::new();
        c.update(&data);
        let t = trailer(data.len() as u64, c.value());
        data.extend_from_slice(&t);
        data
    }

    #[test]
    fn verify_good_and_bad() {
        let good = whole_file();
        assert!(verify(&good).is_ok());
        // truncated
        assert!(verify(&good[..good.len() - 1]).is_err());
        assert!(verify(&good[..20]).is_err());
        // no trailer
        assert!(verify(&good[..good.len() - TRAILER_LEN]).is_err());
        // bad checksum
        let mut bad = good.clone();
        bad[MAGIC.len() + 2] ^= 1;
        assert!(verify(&bad).is_err());
        // NUL tail
        let mut nul = good.clone();
        nul.extend_from_slice(&[0u8; 4096]);
        assert!(verify(&nul).is_err());
    }

    #[test]
    fn journal_round_trip_and_torn_tail() {
        let recs = vec![
            StateRecord::Delivered { idx: 0, at: 10 },
            StateRecord::Deferred {
                idx: 1,
                at: 11,
                next: 311,
                reason: "451 4.3.0 try later".into(),
            },
            StateRecord::Failed {
                idx: 2,
                at: 12,
                reason: "550 5.1.1 no".into(),
            },
            StateRecord::OnHold { at: 13 },
            StateRecord::OffHold { at: 14 },
            StateRecord::Requeued { at: 15 },
        ];
        let mut data: Vec<u8> = recs.iter().flat_map(|r| r.encode().into_bytes()).collect();
        assert_eq!(StateRecord::decode_all(&data), recs);
        data.extend_from_slice(b"D 3 1");
        assert_eq!(StateRecord::decode_all(&data), recs);
    }
}
