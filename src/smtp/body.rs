//! `Stuffer`: puts a stored message on the wire as it streams by, in pieces of any
//! size: CR LF line ends only (a bare LF or a lone CR, which a local submission
//! may carry, ends its line: neither ever reaches the wire alone), a leading dot
//! doubled, lines over [`MAX_LINE`] octets
//! folded (a header line continues after a space, a body line simply breaks), and
//! the final `.` line (RFC 5321 §4.5.2, §4.5.3.1.6). It keeps a few bits of state
//! between pieces and never holds a line, so memory stays flat for any message or
//! line length, and each octet is looked at once: O(n).

use crate::buf::OutBuf;

/// Longest line on the wire (RFC 5321 §4.5.3.1.6), without CR LF.
pub const MAX_LINE: usize = 998;

/// The dot-stuffing, folding state between pieces of one message.
#[derive(Debug, Clone)]
pub struct Stuffer {
    in_headers: bool,
    /// A CR was the last octet seen: with or without the LF after it, it ends
    /// the line.
    pending_cr: bool,
    /// Octets of the current wire line are out (or its prefix is).
    seg_started: bool,
    /// The current wire line is the first of its logical line.
    first_seg: bool,
    /// Room left on the current wire line.
    room: usize,
    /// Octets of the message seen so far.
    seen: u64,
}

impl Default for Stuffer {
    fn default() -> Self {
        Stuffer {
            in_headers: true,
            pending_cr: false,
            seg_started: false,
            first_seg: true,
            room: MAX_LINE,
            seen: 0,
        }
    }
}

impl Stuffer {
    /// A stuffer at the start of a message.
    pub fn new() -> Stuffer {
        Stuffer::default()
    }

    /// Octets of the stored message fed so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The next piece of the stored message.
    pub fn feed(&mut self, mut data: &[u8], out: &mut OutBuf) {
        self.seen += data.len() as u64;
        while !data.is_empty() {
            if self.pending_cr {
                self.pending_cr = false;
                self.end_line(out);
                if data[0] == b'\n' {
                    data = &data[1..];
                }
                continue;
            }
            match data.iter().position(|&b| b == b'\r' || b == b'\n') {
                None => {
                    self.content(data, out);
                    return;
                }
                Some(i) => {
                    self.content(&data[..i], out);
                    if data[i] == b'\n' {
                        self.end_line(out);
                    } else {
                        self.pending_cr = true;
                    }
                    data = &data[i + 1..];
                }
            }
        }
    }

    /// The message is complete: ends its last line and writes the final dot.
    pub fn finish(&mut self, out: &mut OutBuf) {
        if self.pending_cr {
            self.pending_cr = false;
            self.end_line(out);
        }
        if self.seg_started {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        *self = Stuffer {
            seen: self.seen,
            ..Stuffer::default()
        };
    }

    fn end_line(&mut self, out: &mut OutBuf) {
        if !self.seg_started && self.first_seg {
            // An empty line: the headers end here.
            self.in_headers = false;
        }
        out.extend_from_slice(b"\r\n");
        self.seg_started = false;
        self.first_seg = true;
    }

    /// Line content without CR or LF.
    fn content(&mut self, mut run: &[u8], out: &mut OutBuf) {
        while !run.is_empty() {
            if self.seg_started && self.room == 0 {
                // The wire line is full and the logical line goes on: fold.
                out.extend_from_slice(b"\r\n");
                self.seg_started = false;
                self.first_seg = false;
            }
            if !self.seg_started {
                // A folded header line starts with a space, a line that starts with
                // a dot gets another: either takes one octet of the line's room.
                let folded = !self.first_seg && self.in_headers;
                self.room = MAX_LINE;
                if folded {
                    out.push(b' ');
                    self.room -= 1;
                } else if run[0] == b'.' {
                    out.push(b'.');
                    self.room -= 1;
                }
                self.seg_started = true;
            }
            let n = run.len().min(self.room);
            out.extend_from_slice(&run[..n]);
            self.room -= n;
            run = &run[n..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole-message version this replaced, kept as the reference.
    fn reference(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut in_headers = true;
        // CR LF, a bare LF and a lone CR each end a line.
        let mut norm = Vec::new();
        let mut i = 0;
        while i < body.len() {
            if body[i] == b'\r' {
                norm.push(b'\n');
                if body.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            } else {
                norm.push(body[i]);
            }
            i += 1;
        }
        for line in norm.split_inclusive(|&b| b == b'\n') {
            let content = line.strip_suffix(b"\n").unwrap_or(line);
            if content.is_empty() {
                in_headers = false;
                out.extend_from_slice(b"\r\n");
                continue;
            }
            let mut first = true;
            let mut rest = content;
            while !rest.is_empty() {
                let folded = !first && in_headers;
                let prefixed = folded || rest.first() == Some(&b'.');
                let room = if prefixed { MAX_LINE - 1 } else { MAX_LINE };
                let (c, tail) = rest.split_at(rest.len().min(room));
                rest = tail;
                if folded {
                    out.push(b' ');
                }
                if c.first() == Some(&b'.') && !folded {
                    out.push(b'.');
                }
                out.extend_from_slice(c);
                out.extend_from_slice(b"\r\n");
                first = false;
            }
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    fn streamed(body: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut s = Stuffer::new();
        let mut out = OutBuf::new();
        let mut at = 0;
        for &c in cuts {
            let c = c.clamp(at, body.len());
            s.feed(&body[at..c], &mut out);
            at = c;
        }
        s.feed(&body[at..], &mut out);
        s.finish(&mut out);
        out.as_slice().to_vec()
    }

    #[test]
    fn matches_the_whole_message_version_for_any_cut() {
        let long = "h".repeat(2500);
        let dots = ".".repeat(1500);
        let cases = [
            format!("Subject: {long}\r\n\r\n.dot\r\n{long}\r\n..\r\n{dots}\r\n"),
            "a\rb\r\n\r\n\r\rc\n.\r\nlast".to_string(),
            format!("X: {}\r\n\r\n{}", "y".repeat(997), ".".repeat(998)),
            String::new(),
            "\r".into(),
            "no end of line".into(),
        ];
        let mut rng = 7u64;
        for body in &cases {
            let b = body.as_bytes();
            let want = reference(b);
            assert_eq!(streamed(b, &[]), want, "one piece");
            for _ in 0..200 {
                let mut cuts: Vec<usize> = (0..5)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        (rng % (b.len() as u64 + 1)) as usize
                    })
                    .collect();
                cuts.sort();
                assert_eq!(streamed(b, &cuts), want, "cut at {cuts:?}");
            }
            let every: Vec<usize> = (0..b.len()).collect();
            assert_eq!(streamed(b, &every), want, "octet by octet");
        }
    }

    #[test]
    fn every_wire_line_fits() {
        let body = format!("S: {}\r\n\r\n.{}\r\n", "x".repeat(5000), "y".repeat(5000));
        let out = streamed(body.as_bytes(), &[100, 2000]);
        for l in out.split(|&b| b == b'\n') {
            assert!(l.len() <= MAX_LINE + 1, "{} octets", l.len());
        }
    }
}
