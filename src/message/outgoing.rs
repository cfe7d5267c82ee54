//! What a message becomes on its way out over SMTP (DESIGN.md §5.4, §5.13). Pure:
//! octets in, octets out.
//!
//! * [`masquerade`]: the addresses of `From:`, `Sender:` and `Reply-To:` rewritten by
//!   `db/generic` (display names, comments and quoting kept).
//! * [`seven_bit`]: 8-bit content made 7-bit for a next hop that does not offer
//!   8BITMIME (RFC 6152 §3, RFC 2045): text parts in quoted-printable, others in
//!   base64, their `Content-Transfer-Encoding:` (and, for a message that was not
//!   MIME, `MIME-Version:` and `Content-Type:`) updated; multiparts and attached
//!   messages part by part. A message that cannot be (8-bit octets in a header, in
//!   a multipart's preamble or epilogue, in an already encoded part, or nested past
//!   [`MAX_DEPTH`]) is refused: it bounces 5.6.3, it is never sent raw.

use crate::config::generic::Generic;
use crate::vocab::Mailbox;

/// Deepest nesting of multiparts and attached messages converted.
pub const MAX_DEPTH: usize = 20;
/// Most parts of one multipart converted.
pub const MAX_PARTS: usize = 1000;
/// Longest encoded line (RFC 2045 §6.7, §6.8).
const LINE: usize = 76;

/// The length of the header section, blank line included (all of it when there is
/// no body).
pub fn header_len(msg: &[u8]) -> usize {
    if msg.starts_with(b"\r\n") {
        return 2;
    }
    msg.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(msg.len(), |i| i + 4)
}

/// Header fields of a header section: (name, the whole field with its line ends).
fn fields(head: &[u8]) -> Vec<(String, &[u8])> {
    let mut out: Vec<(String, &[u8])> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        let end = head[i..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(head.len(), |p| i + p + 2);
        let line = &head[i..end];
        let folded = matches!(line.first(), Some(b' ' | b'\t'));
        if !folded && i > start {
            let f = &head[start..i];
            out.push((name_of(f), f));
            start = i;
        }
        i = end;
    }
    if start < head.len() {
        let f = &head[start..];
        out.push((name_of(f), f));
    }
    out
}

fn name_of(field: &[u8]) -> String {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(0);
    String::from_utf8_lossy(&field[..colon])
        .trim()
        .to_ascii_lowercase()
}

/// A field's value: after the colon, unfolded, without the line end.
fn value_of(field: &[u8]) -> String {
    let colon = field.iter().position(|&b| b == b':').map_or(0, |c| c + 1);
    let v = String::from_utf8_lossy(&field[colon..]);
    v.replace("\r\n", "").trim().to_string()
}

/// The header section with `From:`, `Sender:` and `Reply-To:` rewritten by `g`, if
/// anything changed.
pub fn masquerade(head: &[u8], g: &Generic) -> Option<Vec<u8>> {
    if g.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(head.len() + 64);
    let mut changed = false;
    for (name, f) in fields(head) {
        if matches!(name.as_str(), "from" | "sender" | "reply-to") {
            let colon = f.iter().position(|&b| b == b':').unwrap_or(0);
            if let Some(new) = rewrite_addresses(&f[colon + 1..], g) {
                out.extend_from_slice(&f[..=colon]);
                out.extend_from_slice(&new);
                changed = true;
                continue;
            }
        }
        out.extend_from_slice(f);
    }
    changed.then_some(out)
}

/// An address list with every address `g` rewrites rewritten, every other octet
/// (display names in any charset, quoted strings, comments, line folding) as it was.
fn rewrite_addresses(text: &[u8], g: &Generic) -> Option<Vec<u8>> {
    let b = text;
    let mut out = Vec::with_capacity(text.len() + 32);
    let mut changed = false;
    let mut i = 0;
    let mut depth = 0usize; // inside (comments)
    let mut quoted = false;
    let rewrite = |a: &[u8]| -> Option<String> {
        let a = std::str::from_utf8(a).ok()?;
        let m = Mailbox::parse(a.trim()).ok()?;
        g.rewrite(&m).map(|n| n.to_string())
    };
    while i < b.len() {
        let c = b[i];
        if (quoted || depth > 0) && c == b'\\' {
            // An escaped octet, whatever it is.
            let end = (i + 2).min(b.len());
            out.extend_from_slice(&b[i..end]);
            i = end;
            continue;
        }
        if quoted {
            quoted = c != b'"';
        } else if depth > 0 {
            match c {
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ => {}
            }
        } else if c == b'"' {
            quoted = true;
        } else if c == b'(' {
            depth = 1;
        } else if c == b'<' {
            if let Some(close) = b[i..].iter().position(|&x| x == b'>') {
                let inner = &b[i + 1..i + close];
                match rewrite(inner) {
                    Some(new) => {
                        out.push(b'<');
                        out.extend_from_slice(new.as_bytes());
                        out.push(b'>');
                        changed = true;
                    }
                    None => out.extend_from_slice(&b[i..=i + close]),
                }
                i += close + 1;
                continue;
            }
        } else if !c.is_ascii_whitespace() && !b",:;".contains(&c) {
            // A bare word: an addr-spec if it holds an '@' and parses as one.
            let end = b[i..]
                .iter()
                .position(|x| x.is_ascii_whitespace() || b",;<(\"".contains(x))
                .map_or(b.len(), |p| i + p);
            let word = &b[i..end];
            match word.contains(&b'@').then(|| rewrite(word)).flatten() {
                Some(new) => {
                    out.extend_from_slice(new.as_bytes());
                    changed = true;
                }
                None => out.extend_from_slice(word),
            }
            i = end;
            continue;
        }
        out.push(c);
        i += 1;
    }
    changed.then_some(out)
}

/// Why a message cannot be made 7-bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unconvertible(pub String);

/// The message made 7-bit (see the module header), or why it cannot be.
pub fn seven_bit(msg: &[u8]) -> Result<Vec<u8>, Unconvertible> {
    let h = header_len(msg);
    let (head, body) = msg.split_at(h);
    let mime = fields(head).iter().any(|(n, _)| n == "mime-version");
    // One buffer for the whole message: nested parts are written in place, so the
    // work is linear in the size whatever the depth.
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 2);
    let head_end = entity(head, body, 0, true, &mut out)?;
    if !mime && out[..head_end] != *head {
        // Made MIME here: say so, before the blank line.
        let at = insertion_point(&out[..head_end]);
        out.splice(at..at, b"MIME-Version: 1.0\r\n".iter().copied());
    }
    if out.len() > MAX_GROWTH * msg.len().max(1024) {
        return Err(Unconvertible("the message would grow too large".into()));
    }
    Ok(out)
}

/// How many times its size a converted message may be (base64 is 4/3 and line
/// ends; a text part takes the smaller of quoted-printable and base64).
const MAX_GROWTH: usize = 4;

fn eight_bit(b: &[u8]) -> bool {
    b.iter().any(|&x| x >= 0x80)
}

/// A header field's value: its first token and its parameters (lower-case names).
fn content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut parts = value.split(';');
    let t = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            ))
        })
        .collect();
    (t, params)
}

/// One entity (a message or a body part) converted and written to `out`: returns
/// where in `out` its header section ends.
fn entity(
    head: &[u8],
    body: &[u8],
    depth: usize,
    top: bool,
    out: &mut Vec<u8>,
) -> Result<usize, Unconvertible> {
    if depth > MAX_DEPTH {
        return Err(Unconvertible(format!(
            "MIME nesting deeper than {MAX_DEPTH}"
        )));
    }
    if eight_bit(head) {
        return Err(Unconvertible("8-bit octets in a header".into()));
    }
    if !eight_bit(body) {
        out.extend_from_slice(head);
        let end = out.len();
        out.extend_from_slice(body);
        return Ok(end);
    }
    let fs = fields(head);
    let ct = fs
        .iter()
        .find(|(n, _)| n == "content-type")
        .map(|(_, f)| value_of(f));
    let cte = fs
        .iter()
        .find(|(n, _)| n == "content-transfer-encoding")
        .map(|(_, f)| value_of(f).to_ascii_lowercase());
    let (mtype, params) = content_type(ct.as_deref().unwrap_or("text/plain"));
    if matches!(cte.as_deref(), Some("base64" | "quoted-printable")) {
        return Err(Unconvertible(
            "8-bit octets in a part that says it is encoded".into(),
        ));
    }
    if mtype.starts_with("multipart/") {
        let boundary = params
            .iter()
            .find(|(k, _)| k == "boundary")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Unconvertible("a multipart without a boundary".into()))?;
        out.extend_from_slice(&with_cte(head, "7bit"));
        let end = out.len();
        multipart(body, &boundary, depth, out)?;
        return Ok(end);
    }
    if mtype == "message/rfc822" {
        out.extend_from_slice(&with_cte(head, "7bit"));
        let end = out.len();
        let h = header_len(body);
        let (ih, ib) = body.split_at(h);
        entity(ih, ib, depth + 1, false, out)?;
        return Ok(end);
    }
    // Text takes quoted-printable (readable as it is) unless it is large and mostly
    // 8-bit, where that would double it; anything else base64.
    let text = mtype.starts_with("text/");
    let escaped = body.iter().filter(|&&b| b >= 0x80 || b == b'=').count();
    let qp = text && (body.len() < 64 * 1024 || 2 * escaped <= body.len());
    let mut new_head = with_cte(head, if qp { "quoted-printable" } else { "base64" });
    if top && ct.is_none() {
        let charset = if std::str::from_utf8(body).is_ok() {
            "utf-8"
        } else {
            "unknown-8bit"
        };
        let field = format!("Content-Type: text/plain; charset={charset}\r\n");
        let at = insertion_point(&new_head);
        new_head.splice(at..at, field.into_bytes());
    }
    out.extend_from_slice(&new_head);
    let end = out.len();
    out.extend_from_slice(&if qp {
        quoted_printable(body)
    } else {
        base64(body)
    });
    Ok(end)
}

/// Where a field is added: before the header section's blank line.
fn insertion_point(head: &[u8]) -> usize {
    if head.ends_with(b"\r\n\r\n") || head == b"\r\n" {
        head.len() - 2
    } else {
        head.len()
    }
}

/// The header section with its `Content-Transfer-Encoding:` set to `cte`.
fn with_cte(head: &[u8], cte: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 48);
    let mut done = false;
    for (name, f) in fields(head) {
        if name == "content-transfer-encoding" {
            if !done {
                out.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\r\n").as_bytes());
                done = true;
            }
            continue;
        }
        out.extend_from_slice(f);
    }
    if !done {
        let at = insertion_point(&out);
        out.splice(
            at..at,
            format!("Content-Transfer-Encoding: {cte}\r\n").into_bytes(),
        );
    }
    out
}

/// A multipart body with each part converted.
fn multipart(
    body: &[u8],
    boundary: &str,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), Unconvertible> {
    let delim = format!("--{boundary}");
    // Each line that starts with the delimiter starts a part (or, with "--", ends
    // them); the CR LF before it belongs to the delimiter.
    let mut marks: Vec<(usize, usize, bool)> = Vec::new(); // (line start, line end, last)
    let mut i = 0;
    while i < body.len() {
        // Lines end in CR LF; a lone LF inside a line is no end.
        let mut end = i;
        let end = loop {
            match body[end..].iter().position(|&b| b == b'\n') {
                Some(p) if end + p > i && body[end + p - 1] == b'\r' => break end + p + 1,
                Some(p) => end += p + 1,
                None => break body.len(),
            }
        };
        let line = &body[i..end];
        if line.starts_with(delim.as_bytes()) {
            let rest = &line[delim.len()..];
            let last = rest.starts_with(b"--");
            marks.push((i, end, last));
            if last {
                break;
            }
        }
        i = end;
    }
    if marks.is_empty() {
        return Err(Unconvertible(
            "a multipart whose boundary never comes".into(),
        ));
    }
    if marks.len() > MAX_PARTS {
        return Err(Unconvertible(format!("more than {MAX_PARTS} parts")));
    }
    let preamble = &body[..marks[0].0];
    let epilogue = &body[marks.last().map_or(body.len(), |m| m.1)..];
    if eight_bit(preamble) || eight_bit(epilogue) {
        return Err(Unconvertible(
            "8-bit octets outside the parts of a multipart".into(),
        ));
    }
    // A delimiter line is written as the boundary alone: what follows the boundary
    // on its line is ignored by readers (RFC 2046 §5.1.1) and may be any octets.
    let delimiter = |out: &mut Vec<u8>, (start, end, last): (usize, usize, bool)| {
        out.extend_from_slice(delim.as_bytes());
        if last {
            out.extend_from_slice(b"--");
        }
        if body[start..end].ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    };
    out.extend_from_slice(preamble);
    for w in marks.windows(2) {
        let (_, open_end, _) = w[0];
        let (next_start, _, _) = w[1];
        delimiter(out, w[0]);
        // The part, without the CR LF that belongs to the next delimiter.
        let part = &body[open_end..next_start.max(open_end)];
        let (part, crlf) = match part.strip_suffix(b"\r\n") {
            Some(p) => (p, true),
            None => (part, false),
        };
        let h = header_len(part);
        let (ph, pb) = part.split_at(h);
        entity(ph, pb, depth + 1, false, out)?;
        if crlf {
            // The delimiter's own line end.
            out.extend_from_slice(b"\r\n");
        }
    }
    delimiter(out, *marks.last().expect("not empty"));
    out.extend_from_slice(epilogue);
    Ok(())
}

/// Quoted-printable (RFC 2045 §6.7), CR LF kept as hard line breaks, lines at most
/// 76 octets.
pub fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 3);
    let mut lines = body.split(|&b| b == b'\n').peekable();
    while let Some(raw) = lines.next() {
        let last = lines.peek().is_none();
        let (line, had_cr) = match raw.strip_suffix(b"\r") {
            Some(l) => (l, true),
            None => (raw, false),
        };
        if last && line.is_empty() {
            break;
        }
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut col = 0;
        for (k, &c) in line.iter().enumerate() {
            let at_end = k + 1 == line.len();
            let literal =
                (33..=126).contains(&c) && c != b'=' || (c == b' ' || c == b'\t') && !at_end;
            let width = if literal { 1 } else { 3 };
            if col + width > LINE - 1 {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            if literal {
                out.push(c);
            } else {
                out.extend_from_slice(&[b'=', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
            }
            col += width;
        }
        if !last || had_cr {
            out.extend_from_slice(b"\r\n");
        } else {
            // No line end at the very end: a soft one, which decodes to nothing.
            out.extend_from_slice(b"=\r\n");
        }
    }
    out
}

/// Base64 (RFC 2045 §6.8) in lines of 76 octets.
pub fn base64(body: &[u8]) -> Vec<u8> {
    let text = crate::auth::base64::encode(body);
    let mut out = Vec::with_capacity(text.len() + text.len() / LINE * 2 + 2);
    for chunk in text.as_bytes().chunks(LINE) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// What a delivery sends as a message's content: the queue file as it is, a new
/// header section before the rest of it (masquerading), or a whole message made
/// anew (7-bit conversion, bounded by the message size limit).
#[derive(Debug)]
pub enum Source {
    /// The queue file's content.
    File(crate::store::spool::Body),
    /// A header section of ours, then the queue file's content from `skip`.
    Prefixed {
        /// The new header section.
        head: Vec<u8>,
        /// The queue file.
        body: crate::store::spool::Body,
        /// Where its content after the old header section starts.
        skip: u64,
    },
    /// The whole content, made here.
    Made(Vec<u8>),
}

impl Source {
    /// Octets in all.
    pub fn len(&self) -> u64 {
        match self {
            Source::File(b) => b.len(),
            Source::Prefixed { head, body, skip } => head.len() as u64 + body.len() - skip,
            Source::Made(v) => v.len() as u64,
        }
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads from offset `at` into `buf`: how many octets (0 at the end).
    pub fn read_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let from_slice = |v: &[u8], at: u64, buf: &mut [u8]| {
            let start = (at as usize).min(v.len());
            let n = (v.len() - start).min(buf.len());
            buf[..n].copy_from_slice(&v[start..start + n]);
            n
        };
        match self {
            Source::File(b) => b.read_at(at, buf),
            Source::Made(v) => Ok(from_slice(v, at, buf)),
            Source::Prefixed { head, body, skip } => {
                let h = head.len() as u64;
                if at < h {
                    Ok(from_slice(head, at, buf))
                } else {
                    body.read_at(at - h + skip, buf)
                }
            }
        }
    }
}

/// The content of `body` as a delivery sends it: masqueraded by `g` (when it
/// rewrites an address of the header section), and made 7-bit when `seven_bit` is
/// asked for and the content has 8-bit octets. `Err`: it cannot be made 7-bit.
pub fn prepare(
    body: crate::store::spool::Body,
    g: &Generic,
    make_seven_bit: bool,
    limit: usize,
) -> std::io::Result<Result<Source, Unconvertible>> {
    let convert = make_seven_bit && body.has_8bit();
    if g.is_empty() && !convert {
        return Ok(Ok(Source::File(body)));
    }
    let head = body.head(limit)?;
    let hl = header_len(&head) as u64;
    let mut src = match masquerade(&head[..hl as usize], g) {
        Some(new) => Source::Prefixed {
            head: new,
            body,
            skip: hl,
        },
        None => Source::File(body),
    };
    if convert {
        let mut whole = vec![0u8; src.len() as usize];
        let mut at = 0;
        while at < whole.len() {
            let n = src.read_at(at as u64, &mut whole[at..])?;
            if n == 0 {
                whole.truncate(at);
                break;
            }
            at += n;
        }
        src = match seven_bit(&whole) {
            Ok(v) => Source::Made(v),
            Err(e) => return Ok(Err(e)),
        };
    }
    Ok(Ok(src))
}

/// Whether a message needs SMTPUTF8 on its way to `rcpts` (RFC 6531 §3.2): a
/// UTF-8 address in its envelope, or, for a message received with SMTPUTF8, a
/// header octet past ASCII. An all-ASCII message goes anywhere, whatever its
/// sender said.
pub fn needs_smtputf8(
    env: &crate::store::spool::Envelope,
    rcpts: &[&crate::store::spool::Recipient],
    body: &crate::store::spool::Body,
) -> bool {
    let ascii = env.sender.as_ref().is_none_or(Mailbox::is_ascii)
        && rcpts.iter().all(|r| r.address.is_ascii());
    if !ascii {
        return true;
    }
    env.smtputf8
        && body
            .head(crate::smtp::server::MAX_HEADER_BYTES)
            .map_or(true, |h| {
                crate::message::bounce::headers_of(&h)
                    .iter()
                    .any(|&b| b >= 0x80)
            })
}

#[cfg(test)]
mod tests;
