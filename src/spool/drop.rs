//! The drop folder (`POSTOFFICE/drop/`, mode 1733): where `etrnd sendmail` leaves a
//! message for the daemon, running or not. Like Postfix's maildrop: users may create
//! files but not list the folder or touch others' files; names are random.
//!
//! ```text
//! ETRNDDROP 1\n
//! U 1000\n                  submitting uid
//! S alice@host.example\n    envelope sender, empty for <>
//! R bob@example.org\n       one line per recipient (%XX-encoded like the envelope)
//! \n
//! <message, CR LF line ends>
//! ETRND-END <len> <crc>\n   the queue file's trailer
//! ```
//!
//! A file is written as `.tmp.<name>` and renamed when complete, so the daemon never
//! sees half a file; a file that fails verification is quarantined.

use super::envelope::{decode, encode, trailer, verify, Crc32, DecodeError};
use crate::smtp::{parse_path, Mailbox, ReversePath};

/// A submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drop {
    /// Submitting uid.
    pub uid: u32,
    /// Envelope sender.
    pub sender: ReversePath,
    /// Recipients.
    pub rcpts: Vec<Mailbox>,
    /// The message (CR LF).
    pub data: Vec<u8>,
}

const MAGIC: &str = "ETRNDDROP 1\n";

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
                parse_path(&format!("<{s}>"))
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
        };
        let bytes = d.encode();
        assert_eq!(Drop::decode(&bytes).unwrap(), d);
        assert!(Drop::decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(Drop::decode(b"garbage").is_err());
    }
}
