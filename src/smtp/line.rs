//! Byte framing for the SMTP server: command lines (CRLF only, length-capped) and the
//! DATA stream (end at CRLF.CRLF, dot-unstuffing, line-end normalisation).
//!
//! Only a CR LF pair ends a line (RFC 5321 §2.3.8). A bare LF in a command is an error
//! the caller turns into a reply; a bare LF or lone CR inside DATA never ends a line or
//! the message, so no "smuggled" second message can start (SMTP smuggling, 2023). The
//! stored body uses CR LF for every line break, so nothing downstream ever writes a
//! bare CR or LF to the wire.
//!
//! This module does no I/O and never panics: it is one of the four trust boundaries.

/// RFC 5321 §4.5.3.1.4 sets 512 octets for a command line; we accept up to this many,
/// CR LF included (Postfix `line_length_limit`, reference/bad-input.md G13).
pub const MAX_COMMAND_LINE: usize = 2048;

/// What the command framer found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line without its CR LF, and how many bytes of input it used.
    Line(&'a [u8], usize),
    /// More bytes are needed.
    Partial,
    /// A LF not preceded by CR: not a line end, and not allowed in a command.
    BareLf,
    /// No CR LF within [`MAX_COMMAND_LINE`] octets.
    TooLong,
}

/// Finds the next command line at the start of `buf`.
pub fn next_command_line(buf: &[u8]) -> Frame<'_> {
    let limit = buf.len().min(MAX_COMMAND_LINE);
    match buf[..limit].iter().position(|&b| b == b'\n') {
        Some(0) => Frame::BareLf,
        Some(i) if buf[i - 1] == b'\r' => Frame::Line(&buf[..i - 1], i + 1),
        Some(_) => Frame::BareLf,
        None if buf.len() >= MAX_COMMAND_LINE => Frame::TooLong,
        None => Frame::Partial,
    }
}

/// Where the DATA decoder is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataState {
    /// At the start of a line (after CR LF).
    LineStart,
    /// Inside a line.
    Mid,
    /// Saw CR inside a line.
    Cr,
    /// Saw `.` at the start of a line.
    Dot,
    /// Saw `.` CR at the start of a line.
    DotCr,
}

/// Result of feeding bytes to the [`DataDecoder`].
#[derive(Debug, PartialEq, Eq)]
pub enum DataProgress {
    /// All input consumed; the message goes on.
    More,
    /// The terminating CR LF . CR LF was found; this many input bytes were used, the
    /// rest belongs to the next command.
    End(usize),
}

/// Streaming decoder of the DATA section: unstuffs leading dots, turns every bare LF
/// and lone CR into CR LF, and finds the end. Also counts what the server's limits
/// need: stored size, header size and `Received:` headers.
#[derive(Debug)]
pub struct DataDecoder {
    state: DataState,
    in_headers: bool,
    header_bytes: usize,
    received: usize,
    /// First octets of the current header line, to recognise `Received:`,
    /// `Date:` and `Message-ID:`.
    prefix: [u8; 11],
    prefix_len: usize,
    /// Whether the current line is still a header line we are classifying.
    classify: bool,
    line_len: usize,
    /// Longest line seen (octets, without the line end).
    pub max_line: usize,
    /// Octets of the body as stored.
    pub size: usize,
    /// Whether any octet has the high bit set.
    pub eight_bit: bool,
    /// Whether the header section has a `Date:` and a `Message-ID:`.
    seen_date: bool,
    seen_msgid: bool,
    /// Header lines to add at the end of the header section for those it lacks
    /// (a local client's message, DESIGN.md §5.13): `Date: …\r\n`, `Message-ID: …\r\n`.
    missing: Option<(String, String)>,
}

impl Default for DataDecoder {
    fn default() -> Self {
        DataDecoder::new()
    }
}

impl DataDecoder {
    /// A decoder at the first line of the message.
    pub fn new() -> DataDecoder {
        DataDecoder {
            state: DataState::LineStart,
            in_headers: true,
            header_bytes: 0,
            received: 0,
            prefix: [0; 11],
            prefix_len: 0,
            classify: true,
            line_len: 0,
            max_line: 0,
            size: 0,
            eight_bit: false,
            seen_date: false,
            seen_msgid: false,
            missing: None,
        }
    }

    /// Adds these header lines (each ending in CR LF) at the end of the header
    /// section when it has no `Date:`, no `Message-ID:` respectively.
    pub fn add_if_missing(&mut self, date: String, message_id: String) {
        self.missing = Some((date, message_id));
    }

    /// Number of `Received:` header fields seen in the header section.
    pub fn received_count(&self) -> usize {
        self.received
    }

    /// Octets in the header section so far.
    pub fn header_bytes(&self) -> usize {
        self.header_bytes
    }

    fn emit(&mut self, out: &mut Vec<u8>, b: u8) {
        out.push(b);
        self.size += 1;
        if b >= 0x80 {
            self.eight_bit = true;
        }
        if self.in_headers {
            self.header_bytes += 1;
        }
        if b == b'\n' {
            self.end_line();
            return;
        }
        if b == b'\r' {
            return;
        }
        self.line_len += 1;
        if self.classify && self.in_headers {
            if self.prefix_len < self.prefix.len() {
                self.prefix[self.prefix_len] = b;
                self.prefix_len += 1;
            }
            let p = &self.prefix[..self.prefix_len];
            let is = |name: &[u8]| p.len() == name.len() && p.eq_ignore_ascii_case(name);
            if is(b"received:") {
                self.received += 1;
                self.classify = false;
            } else if is(b"date:") {
                self.seen_date = true;
                self.classify = false;
            } else if is(b"message-id:") {
                self.seen_msgid = true;
                self.classify = false;
            } else if b == b':' || self.prefix_len == self.prefix.len() {
                self.classify = false;
            }
        }
    }

    /// The header lines the header section lacks, before its end.
    fn add_missing(&mut self, out: &mut Vec<u8>) {
        if let Some((date, msgid)) = self.missing.take() {
            for (seen, line) in [(self.seen_date, date), (self.seen_msgid, msgid)] {
                if !seen {
                    for b in line.into_bytes() {
                        self.emit(out, b);
                    }
                }
            }
        }
    }

    fn end_line(&mut self) {
        if self.in_headers && self.line_len == 0 {
            self.in_headers = false;
        }
        self.max_line = self.max_line.max(self.line_len);
        self.line_len = 0;
        self.prefix_len = 0;
        self.classify = true;
    }

    fn crlf(&mut self, out: &mut Vec<u8>) {
        if self.in_headers && self.line_len == 0 {
            // The empty line that ends the header section: what it lacks first.
            self.add_missing(out);
        }
        self.emit(out, b'\r');
        self.emit(out, b'\n');
    }

    /// Feeds `input`; decoded body octets are appended to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataProgress {
        for (i, &b) in input.iter().enumerate() {
            self.state = match (self.state, b) {
                (DataState::DotCr, b'\n') => {
                    self.state = DataState::LineStart;
                    if self.in_headers {
                        // A message of header lines only: they end here.
                        self.add_missing(out);
                    }
                    return DataProgress::End(i + 1);
                }
                (DataState::LineStart, b'.') => DataState::Dot,
                (DataState::Dot, b'\r') => DataState::DotCr,
                (DataState::Dot, b'\n') => {
                    // ".<LF>": not a stuffed dot and not an end; keep the dot.
                    self.emit(out, b'.');
                    self.crlf(out);
                    DataState::Mid
                }
                (DataState::Dot, _) => {
                    // A stuffed dot (RFC 5321 §4.5.2): drop it, keep the rest.
                    self.plain(b, out)
                }
                (DataState::DotCr, _) => {
                    // ".<CR>x": unstuff the dot, the lone CR becomes a line break.
                    self.crlf(out);
                    self.plain(b, out)
                }
                (DataState::Cr, _) => self.after_cr(b, out),
                (DataState::LineStart | DataState::Mid, _) => self.plain(b, out),
            };
        }
        DataProgress::More
    }

    /// Feeds `input` as BDAT content (RFC 3030): no dot-stuffing and no end marker,
    /// the caller counts the chunk's octets; line ends are normalised to CR LF as for
    /// DATA, so a bare LF or lone CR in a chunk is never a line end downstream either.
    pub fn feed_raw(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.state = match (self.state, b) {
                (DataState::Cr, _) => self.after_cr(b, out),
                (_, b'\n') => {
                    self.crlf(out);
                    DataState::LineStart
                }
                _ => self.plain(b, out),
            };
        }
    }

    /// Ends BDAT content: a last line without its line end gets one, and a message
    /// of header lines only gets what it lacks, as at the end of DATA.
    pub fn finish_raw(&mut self, out: &mut Vec<u8>) {
        match self.state {
            DataState::LineStart => {}
            _ => self.crlf(out),
        }
        self.state = DataState::LineStart;
        if self.in_headers {
            self.add_missing(out);
        }
    }

    /// The octet after a CR: with LF it ends the line; a lone CR is stored as a
    /// line break, but what follows it is no line start.
    fn after_cr(&mut self, b: u8, out: &mut Vec<u8>) -> DataState {
        self.crlf(out);
        if b == b'\n' {
            DataState::LineStart
        } else {
            self.plain(b, out)
        }
    }

    /// Handles an octet in the middle of a line.
    fn plain(&mut self, b: u8, out: &mut Vec<u8>) -> DataState {
        match b {
            b'\r' => DataState::Cr,
            b'\n' => {
                // A bare LF: stored as a line break, but never a line start.
                self.crlf(out);
                DataState::Mid
            }
            _ => {
                self.emit(out, b);
                DataState::Mid
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> (Vec<u8>, Option<usize>) {
        let mut d = DataDecoder::new();
        let mut out = Vec::new();
        match d.feed(input, &mut out) {
            DataProgress::End(n) => (out, Some(n)),
            DataProgress::More => (out, None),
        }
    }

    #[test]
    fn raw_chunks_keep_dots_and_normalise_line_ends() {
        let mut d = DataDecoder::new();
        let mut out = Vec::new();
        d.feed_raw(b"Subject: x\r", &mut out);
        d.feed_raw(b"\n\r\n.\r\n.\r\nbare\nlone\rend", &mut out);
        d.finish_raw(&mut out);
        assert_eq!(out, b"Subject: x\r\n\r\n.\r\n.\r\nbare\r\nlone\r\nend\r\n");
        assert_eq!(d.size, out.len());
        let mut d = DataDecoder::new();
        let mut out = Vec::new();
        d.feed_raw(b"a\n", &mut out);
        d.finish_raw(&mut out);
        assert_eq!(out, b"a\r\n");
        let mut d = DataDecoder::new();
        d.add_if_missing("Date: d\r\n".into(), "Message-ID: <m>\r\n".into());
        let mut out = Vec::new();
        d.feed_raw(b"Subject: y\r\n", &mut out);
        d.finish_raw(&mut out);
        assert_eq!(out, b"Subject: y\r\nDate: d\r\nMessage-ID: <m>\r\n");
    }

    #[test]
    fn command_line_crlf() {
        assert_eq!(next_command_line(b"NOOP\r\nX"), Frame::Line(b"NOOP", 6));
        assert_eq!(next_command_line(b"NOOP\r"), Frame::Partial);
        assert_eq!(next_command_line(b"NOOP\n"), Frame::BareLf);
        assert_eq!(next_command_line(b"\n"), Frame::BareLf);
        assert_eq!(next_command_line(b"NO\rOP\r\n"), Frame::Line(b"NO\rOP", 7));
    }

    #[test]
    fn command_line_limits() {
        let mut line = b"NOOP ".to_vec();
        line.resize(510, b'x');
        line.extend_from_slice(b"\r\n");
        assert!(matches!(next_command_line(&line), Frame::Line(_, 512)));
        let long = vec![b'x'; MAX_COMMAND_LINE];
        assert_eq!(next_command_line(&long), Frame::TooLong);
        let mut exact = vec![b'x'; MAX_COMMAND_LINE - 2];
        exact.extend_from_slice(b"\r\n");
        assert!(matches!(next_command_line(&exact), Frame::Line(_, _)));
    }

    #[test]
    fn data_simple_end() {
        let (out, end) = decode_all(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n");
        assert_eq!(out, b"Subject: x\r\n\r\nbody\r\n");
        assert_eq!(end, Some(23));
    }

    #[test]
    fn data_empty_message() {
        let (out, end) = decode_all(b".\r\n");
        assert_eq!(out, b"");
        assert_eq!(end, Some(3));
    }

    #[test]
    fn data_unstuffs_dots() {
        let (out, _) = decode_all(b"..hidden\r\n...\r\n.\r\n");
        assert_eq!(out, b".hidden\r\n..\r\n");
    }

    #[test]
    fn smuggling_sequences_never_end() {
        for fake in [&b"\n.\n"[..], b"\n.\r\n", b"\r.\r\n", b"\r.\r", b"\r\n.\n"] {
            let mut input = b"body".to_vec();
            input.extend_from_slice(fake);
            input.extend_from_slice(b"MAIL FROM:<s@evil.example>\r\n");
            let (out, end) = decode_all(&input);
            assert_eq!(end, None, "{fake:?} ended the data");
            assert!(!out.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
            assert!(out
                .iter()
                .enumerate()
                .all(|(i, &b)| b != b'\r' || out.get(i + 1) == Some(&b'\n')));
        }
    }

    #[test]
    fn bare_lf_normalised() {
        let (out, _) = decode_all(b"a\nb\rc\r\n.\r\n");
        assert_eq!(out, b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn nul_kept() {
        let (out, end) = decode_all(b"a\0b\r\n.\r\n");
        assert_eq!(out, b"a\0b\r\n");
        assert!(end.is_some());
    }

    #[test]
    fn counts_received_headers() {
        let mut d = DataDecoder::new();
        let mut out = Vec::new();
        d.feed(
            b"Received: a\r\nRECEIVED: b\r\nX: y\r\n\r\nReceived: body\r\n.\r\n",
            &mut out,
        );
        assert_eq!(d.received_count(), 2);
        assert_eq!(d.header_bytes(), 34);
    }

    #[test]
    fn chunking_is_invisible() {
        let input: &[u8] =
            b"Received: x\r\nA: b\r\n\r\n..dot\r\nbare\nlone\rcr\r\n.\r\n\r\n.\r\nNEXT";
        let (whole, end) = decode_all(input);
        for split in 0..input.len() {
            let mut d = DataDecoder::new();
            let mut out = Vec::new();
            let mut got_end = None;
            match d.feed(&input[..split], &mut out) {
                DataProgress::End(n) => got_end = Some(n),
                DataProgress::More => {
                    if let DataProgress::End(n) = d.feed(&input[split..], &mut out) {
                        got_end = Some(split + n);
                    }
                }
            }
            assert_eq!(out, whole, "split at {split}");
            assert_eq!(got_end, end, "split at {split}");
            assert_eq!(d.received_count(), 1);
        }
    }
}
