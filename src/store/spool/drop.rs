//! The drop folder (`POSTOFFICE/drop/`, mode 1733): where `etrnd sendmail` leaves a
//! message for the daemon, running or not. Like Postfix's maildrop: users may create
//! files but not list the folder or touch others' files; names are random.
//!
//! ```text
//! ETRNDDROP 1\n
//! U 1000\n                  submitting uid
//! S alice@host.example\n    envelope sender, empty for <>
//! R bob@example.org\n       one line per recipient (%XX-encoded like the envelope)
//! N SUCCESS,FAILURE\n       (optional) DSN NOTIFY for every recipient (`sendmail -N`)
//! E QQ314159\n              (optional) DSN ENVID, %XX-encoded (`sendmail -V`)
//! F HDRS\n                  (optional) DSN RET (`sendmail -R`)
//! I SMTPUTF8\n              (optional) UTF-8 addresses or header fields
//! \n
//! <message, CR LF line ends>
//! ETRND-END <len> <crc>\n   the queue file's trailer
//! ```
//!
//! A file is written as `.tmp.<name>`, fsynced, and renamed when complete, so the
//! daemon never sees half a file; a file that fails verification is quarantined.
//!
//! Local users are untrusted ([`open_entry`]): an entry is opened without following
//! links and without blocking, and read only if it is a regular file with one link
//! and within the size limit; the submitter is the file's owner (fstat), never the
//! `U` line, which is only compared and logged. Anything else is removed, never
//! opened for reading, followed or chowned. A complete `.tmp.` file older than
//! [`TEMP_GRACE`] is a submission whose rename a crash or power cut lost (its data
//! and name were fsynced before the rename): it is taken like any other. An
//! incomplete one is removed once older than [`STALE_TEMP`].

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use super::envelope::{decode, encode, trailer, verify, Crc32, DecodeError};
use crate::vocab::dsn::{MailDsn, Notify, Ret};
use crate::vocab::{parse_path_utf8, Mailbox, ReversePath};

/// A submission.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Drop {
    /// Submitting uid.
    pub uid: u32,
    /// Envelope sender.
    pub sender: ReversePath,
    /// Recipients.
    pub rcpts: Vec<Mailbox>,
    /// The message (CR LF).
    pub data: Vec<u8>,
    /// RET and ENVID.
    pub dsn: MailDsn,
    /// NOTIFY, for every recipient.
    pub notify: Option<Notify>,
    /// UTF-8 in an address or a header field: the message needs SMTPUTF8.
    pub smtputf8: bool,
}

const MAGIC: &str = "ETRNDDROP 1\n";

/// How old a `.tmp.` file must be before pickup takes it if it is complete: a
/// `sendmail` writes, fsyncs and renames in far less.
pub const TEMP_GRACE: Duration = Duration::from_secs(60);

/// How old an incomplete dot-file must be before pickup removes it (a `sendmail`
/// still writing a large message is never disturbed).
pub const STALE_TEMP: Duration = Duration::from_secs(3600);

/// Octets of a drop file beyond the message: the header lines of the most recipients
/// allowed (a %XX-encoded address is at most 3 × 256 octets) and the trailer.
pub fn header_allowance(max_recipients: usize) -> u64 {
    (max_recipients as u64 + 2).saturating_mul(800) + 4096
}

/// Why a drop-folder entry was not read.
#[derive(Debug)]
pub enum Refused {
    /// Not a regular file with one link (a symlink, hard link, FIFO, device or
    /// directory): removed unread.
    NotRegular(&'static str),
    /// Larger than a message may be: removed unread.
    TooLarge(u64),
    /// Could not be opened or read (kept, tried again later).
    Io(std::io::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NotRegular(what) => write!(f, "not a regular file with one link: {what}"),
            Refused::TooLarge(n) => write!(f, "{n} octets is larger than a message may be"),
            Refused::Io(e) => write!(f, "{e}"),
        }
    }
}

/// A drop file read safely: its octets and its owner.
#[derive(Debug)]
pub struct Entry {
    /// The file's contents.
    pub data: Vec<u8>,
    /// Its owner: the submitter.
    pub uid: u32,
}

/// Opens and reads one drop-folder entry the safe way: `O_NOFOLLOW|O_NONBLOCK`, then
/// fstat (a regular file, one link, at most `limit` octets), then a bounded read.
pub fn open_entry(path: &Path, limit: u64) -> Result<Entry, Refused> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Refused::NotRegular("a symbolic link")
            } else {
                Refused::Io(e)
            }
        })?;
    let m = f.metadata().map_err(Refused::Io)?;
    let ft = m.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        return Err(Refused::NotRegular(if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a file"
        }));
    }
    if m.nlink() != 1 {
        return Err(Refused::NotRegular("a hard link"));
    }
    if m.len() > limit {
        return Err(Refused::TooLarge(m.len()));
    }
    let mut data = Vec::with_capacity(m.len() as usize);
    f.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(Refused::Io)?;
    if data.len() as u64 > limit {
        return Err(Refused::TooLarge(data.len() as u64));
    }
    Ok(Entry { data, uid: m.uid() })
}

impl Drop {
    /// The file contents.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::from(MAGIC);
        s.push_str(&format!("U {}\n", self.uid));
        let sender = self
            .sender
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        s.push_str(&format!("S {}\n", encode(&sender)));
        for r in &self.rcpts {
            s.push_str(&format!("R {}\n", encode(&r.to_string())));
        }
        if let Some(n) = &self.notify {
            s.push_str(&format!("N {}\n", n.render()));
        }
        if let Some(e) = &self.dsn.envid {
            s.push_str(&format!("E {}\n", encode(e)));
        }
        if let Some(r) = &self.dsn.ret {
            s.push_str(&format!("F {}\n", r.render()));
        }
        if self.smtputf8 {
            s.push_str("I SMTPUTF8\n");
        }
        s.push('\n');
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.data);
        let mut c = Crc32::new();
        c.update(&out);
        let t = trailer(out.len() as u64, c.value());
        out.extend_from_slice(&t);
        out
    }

    /// Parses and verifies a drop file.
    pub fn decode(data: &[u8]) -> Result<Drop, DecodeError> {
        let content = verify(data)?;
        let data = &data[..content];
        if !data.starts_with(MAGIC.as_bytes()) {
            return Err(DecodeError("not a drop file".into()));
        }
        let mut d = Drop {
            uid: u32::MAX,
            sender: None,
            rcpts: Vec::new(),
            data: Vec::new(),
            dsn: MailDsn::default(),
            notify: None,
            smtputf8: false,
        };
        let mut pos = MAGIC.len();
        loop {
            let rest = &data[pos..];
            let nl = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| DecodeError("header not terminated".into()))?;
            let line =
                std::str::from_utf8(&rest[..nl]).map_err(|_| DecodeError("not UTF-8".into()))?;
            pos += nl + 1;
            if line.is_empty() {
                break;
            }
            let (tag, v) = line.split_once(' ').unwrap_or((line, ""));
            let mbox = |s: &str| -> Result<Mailbox, DecodeError> {
                parse_path_utf8(&format!("<{s}>"))
                    .ok()
                    .flatten()
                    .ok_or_else(|| DecodeError(format!("bad address '{s}'")))
            };
            match tag {
                "U" => d.uid = v.parse().map_err(|_| DecodeError("bad uid".into()))?,
                "S" => {
                    let s = decode(v)?;
                    d.sender = if s.is_empty() { None } else { Some(mbox(&s)?) };
                }
                "R" => d.rcpts.push(mbox(&decode(v)?)?),
                "N" => {
                    d.notify = Some(Notify::parse(v).map_err(|_| DecodeError("bad NOTIFY".into()))?)
                }
                "E" => {
                    let e = decode(v)?;
                    if !crate::vocab::dsn::envid_ok(&e) {
                        return Err(DecodeError("bad ENVID".into()));
                    }
                    d.dsn.envid = Some(e);
                }
                "F" => d.dsn.ret = Some(Ret::parse(v).map_err(|_| DecodeError("bad RET".into()))?),
                "I" => d.smtputf8 = v == "SMTPUTF8",
                _ => {}
            }
        }
        if d.rcpts.is_empty() {
            return Err(DecodeError("no recipients".into()));
        }
        d.data = data[pos..].to_vec();
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn() {
        let d = Drop {
            uid: 1000,
            sender: Some(Mailbox::parse("a@b.example").unwrap()),
            rcpts: vec![
                Mailbox::parse("c@d.example").unwrap(),
                Mailbox::postmaster(),
            ],
            data: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
            dsn: MailDsn::default(),
            notify: None,
            smtputf8: false,
        };
        let bytes = d.encode();
        assert_eq!(Drop::decode(&bytes).unwrap(), d);
        assert!(Drop::decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(Drop::decode(b"garbage").is_err());
        let mut d = d;
        d.rcpts
            .push(Mailbox::parse_in("jürgen@b.example", true).unwrap());
        d.notify = Some(Notify::parse("SUCCESS").unwrap());
        d.dsn.envid = Some("env id".into());
        d.dsn.ret = Some(Ret::Hdrs);
        d.smtputf8 = true;
        assert_eq!(Drop::decode(&d.encode()).unwrap(), d);
    }
}
