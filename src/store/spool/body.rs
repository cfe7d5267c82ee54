//! Reading a queued message without holding it: [`Spool::open_message`] verifies the
//! file in one streaming pass (CRC-32 and trailer, 64 KiB at a time), decodes the
//! envelope, notes whether the message has 8-bit octets, and returns a [`Body`] that
//! reads the message octets by position. Delivery streams from it (the client
//! session between its watermarks, local delivery line by line), so memory does not
//! grow with the message: a 50 MB message costs a 64 KiB buffer, not 100 MB of copies.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use super::envelope::{self, Crc32, Envelope, MAGIC, TRAILER_LEN};
use super::{MessageId, Spool, SpoolError};

/// Read size of the verifying pass and of delivery.
pub const CHUNK: usize = 64 * 1024;
/// Largest envelope accepted (a thousand recipients of full length fit easily).
pub const MAX_ENVELOPE: usize = 4 * 1024 * 1024;

/// The message octets of a verified queue file.
#[derive(Debug)]
pub struct Body {
    file: File,
    start: u64,
    len: u64,
    has_8bit: bool,
    /// A message that fit in the verifying read is kept (at most [`CHUNK`] octets):
    /// most mail is small, and then the body costs no second read.
    small: Option<Vec<u8>>,
}

impl Body {
    /// A body holding `data` in an unlinked temporary file (tests and tools).
    pub fn from_bytes(data: &[u8]) -> io::Result<Body> {
        use std::io::Write;
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Not AtomicU64: 32-bit MIPS and PowerPC have no 64-bit atomics.
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "etrnd-body.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let _ = std::fs::remove_file(&path);
        file.write_all(data)?;
        Ok(Body {
            file,
            start: 0,
            len: data.len() as u64,
            has_8bit: data.iter().any(|&b| b >= 0x80),
            small: None,
        })
    }

    /// The descriptor the message is read through (kept open by a delivery child
    /// that closes every other one).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.file.as_raw_fd()
    }

    /// Length of the message in octets.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether any octet of the message is 8-bit.
    pub fn has_8bit(&self) -> bool {
        self.has_8bit
    }

    /// Reads message octets from offset `at` into `buf`; 0 at the end.
    pub fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<usize> {
        if at >= self.len {
            return Ok(0);
        }
        let n = buf.len().min((self.len - at) as usize);
        if let Some(data) = &self.small {
            buf[..n].copy_from_slice(&data[at as usize..at as usize + n]);
            return Ok(n);
        }
        loop {
            match self.file.read_at(&mut buf[..n], self.start + at) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "queue file shrank",
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    /// The first octets of the message, at most `limit`, cut after the last line
    /// end (a bounce quotes the original headers from this).
    pub fn head(&self, limit: usize) -> io::Result<Vec<u8>> {
        let mut v = vec![0u8; limit.min(self.len as usize)];
        let mut got = 0;
        while got < v.len() {
            match self.read_at(got as u64, &mut v[got..])? {
                0 => break,
                n => got += n,
            }
        }
        v.truncate(got);
        if (got as u64) < self.len {
            let keep = v.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            v.truncate(keep);
        }
        Ok(v)
    }

    /// A reader over the message from its start.
    pub fn reader(&self) -> BodyReader<'_> {
        BodyReader { body: self, at: 0 }
    }
}

/// Reads a [`Body`] in order.
pub struct BodyReader<'a> {
    body: &'a Body,
    at: u64,
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.body.read_at(self.at, buf)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl Spool {
    /// Opens a queued message for delivery: verified, its envelope decoded, its body
    /// left on disk.
    pub fn open_message(&self, id: MessageId) -> Result<(Envelope, Body), SpoolError> {
        let p = self.queue_path(id);
        let err = |op, e| SpoolError::new(op, &p, e);
        let bad = |m: String| err("verify", io::Error::new(io::ErrorKind::InvalidData, m));
        let file = File::open(&p).map_err(|e| err("open", e))?;
        let size = file.metadata().map_err(|e| err("stat", e))?.len();
        if size < (MAGIC.len() + TRAILER_LEN) as u64 {
            return Err(bad(format!("truncated ({size} octets)")));
        }
        let content = size - TRAILER_LEN as u64;
        if size <= CHUNK as u64 {
            return small_message(file, size, &bad, &err);
        }
        let mut crc = Crc32::new();
        let mut header: Vec<u8> = Vec::new();
        let mut body_at: Option<u64> = None;
        let mut has_8bit = false;
        let mut buf = vec![0u8; CHUNK];
        let mut at = 0u64;
        while at < content {
            let want = CHUNK.min((content - at) as usize);
            let n = read_full_at(&file, &mut buf[..want], at).map_err(|e| err("read", e))?;
            let chunk = &buf[..n];
            crc.update(chunk);
            let mut body_part = chunk;
            if body_at.is_none() {
                // The envelope ends at the first empty line.
                let from = header.len().saturating_sub(1);
                header.extend_from_slice(chunk);
                match header[from..].windows(2).position(|w| w == b"\n\n") {
                    Some(i) => {
                        let end = from + i + 2;
                        body_at = Some(end as u64);
                        body_part = &chunk[chunk.len() - (header.len() - end)..];
                        header.truncate(end);
                    }
                    None if header.len() > MAX_ENVELOPE => {
                        return Err(bad("envelope too long".into()))
                    }
                    None => body_part = &[],
                }
            }
            has_8bit |= body_part.iter().any(|&b| b >= 0x80);
            at += n as u64;
        }
        let mut trailer = [0u8; TRAILER_LEN];
        read_full_at(&file, &mut trailer, content).map_err(|e| err("read", e))?;
        envelope::check_trailer(&trailer, content, crc.value()).map_err(|e| bad(e.0))?;
        let (env, used) = Envelope::decode(&header).map_err(|e| bad(e.0))?;
        let start = used as u64;
        Ok((
            env,
            Body {
                file,
                start,
                len: content - start,
                has_8bit,
                small: None,
            },
        ))
    }
}

/// A queue file of at most [`CHUNK`] octets: one read, verified in memory, the body
/// kept.
fn small_message(
    file: File,
    size: u64,
    bad: &dyn Fn(String) -> SpoolError,
    err: &dyn Fn(&'static str, io::Error) -> SpoolError,
) -> Result<(Envelope, Body), SpoolError> {
    let mut data = vec![0u8; size as usize];
    read_full_at(&file, &mut data, 0).map_err(|e| err("read", e))?;
    let content = envelope::verify(&data).map_err(|e| bad(e.0))?;
    let (env, start) = Envelope::decode(&data[..content]).map_err(|e| bad(e.0))?;
    data.truncate(content);
    data.drain(..start);
    Ok((
        env,
        Body {
            file,
            start: start as u64,
            len: data.len() as u64,
            has_8bit: data.iter().any(|&b| b >= 0x80),
            small: Some(data),
        },
    ))
}

fn read_full_at(f: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    f.read_exact_at(buf, at)?;
    Ok(buf.len())
}
