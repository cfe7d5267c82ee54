//! `OutBuf`: the output buffer of every session and link. Octets are appended at the
//! back and written from the front; a write only moves a read offset, and the
//! written front is reclaimed when it is at least half the buffer, so each octet is
//! moved at most once on average: O(n) for any mix of appends and partial writes.
//! (`Vec::drain(..n)` per write moves the whole rest each time: 28 ms of memmove per
//! 10 MB message written in 16 KiB pieces, quadratic in the message size.)
//!
//! A leaf: imports nothing of ours.

/// Capacity kept when the buffer empties; a burst's larger allocation is given back.
const KEEP: usize = 64 * 1024;
/// A buffer that held no more than replies is given back whole when it empties: an
/// idle session then holds no output memory (a thousand idle sessions are a
/// benchmark figure), and a reply costs one small allocation.
const SMALL: usize = 1024;

/// A byte queue for output.
#[derive(Debug, Default, Clone)]
pub struct OutBuf {
    data: Vec<u8>,
    start: usize,
    /// Octets moved by compaction over the buffer's life (the O(n) test reads it).
    moved: u64,
}

impl OutBuf {
    /// An empty buffer.
    pub fn new() -> OutBuf {
        OutBuf::default()
    }

    /// The octets still to write.
    pub fn as_slice(&self) -> &[u8] {
        &self.data[self.start..]
    }

    /// Octets still to write.
    pub fn len(&self) -> usize {
        self.data.len() - self.start
    }

    /// Whether nothing is left to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends octets.
    pub fn extend_from_slice(&mut self, b: &[u8]) {
        self.reclaim();
        self.data.extend_from_slice(b);
    }

    /// Appends one octet.
    pub fn push(&mut self, b: u8) {
        self.reclaim();
        self.data.push(b);
    }

    /// Marks the first `n` octets written.
    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
            if self.data.capacity() > KEEP {
                self.data.shrink_to(KEEP);
            } else if self.data.capacity() <= SMALL {
                self.data = Vec::new();
            }
        }
    }

    /// Writes what `w` takes now, from the front; `false` when the other side is
    /// gone (a write of nothing, or an error other than `WouldBlock`).
    pub fn write_to(&mut self, w: &mut impl std::io::Write) -> bool {
        use std::io::ErrorKind;
        while !self.is_empty() {
            match w.write(self.as_slice()) {
                Ok(0) => return false,
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Octets moved by compaction so far.
    pub fn moved(&self) -> u64 {
        self.moved
    }

    fn reclaim(&mut self) {
        if self.start > 0 && self.start >= self.data.len() / 2 {
            self.moved += (self.data.len() - self.start) as u64;
            self.data.drain(..self.start);
            self.start = 0;
        }
    }
}

impl Extend<u8> for OutBuf {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.reclaim();
        self.data.extend(iter);
    }
}

impl std::io::Write for OutBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 10 MB message written in uneven pieces while it is appended: compaction
    /// moves fewer octets than pass through (the old drain moved gigabytes).
    #[test]
    fn ten_megabytes_through_partial_writes_is_linear() {
        let mut b = OutBuf::new();
        let chunk = vec![b'x'; 65_536];
        let total = 10 * 1024 * 1024;
        let (mut added, mut written, mut step) = (0usize, 0usize, 0usize);
        while written < total {
            if added < total && b.len() < 256 * 1024 {
                b.extend_from_slice(&chunk);
                added += chunk.len();
            }
            // Socket-sized writes of varying length.
            let n = [1448, 16_384, 7, 60_000, 3000][step % 5].min(b.len());
            step += 1;
            assert!(b.as_slice()[..n].iter().all(|&c| c == b'x'));
            b.consume(n);
            written += n;
        }
        assert!(b.is_empty());
        assert!(
            b.moved() <= total as u64,
            "moved {} octets for {} written",
            b.moved(),
            total
        );
    }

    #[test]
    fn order_is_kept_across_compaction() {
        let mut b = OutBuf::new();
        let mut expect = Vec::new();
        for i in 0..10_000u32 {
            let s = i.to_string();
            b.extend_from_slice(s.as_bytes());
            expect.extend_from_slice(s.as_bytes());
            let n = (i as usize * 7) % 13;
            let n = n.min(b.len());
            assert_eq!(&b.as_slice()[..n], &expect[..n]);
            b.consume(n);
            expect.drain(..n);
        }
        assert_eq!(b.as_slice(), &expect[..]);
    }

    #[test]
    fn an_emptied_buffer_of_replies_holds_no_memory_and_a_large_one_keeps_some() {
        let mut b = OutBuf::new();
        b.extend_from_slice(&[b'x'; 300]);
        b.consume(300);
        assert_eq!(b.data.capacity(), 0);
        b.extend_from_slice(&vec![b'y'; 200 * 1024]);
        b.consume(200 * 1024);
        assert_eq!(b.data.capacity(), KEEP);
    }
}
