//! Address lists in header fields (RFC 5322 §3.4), as a local program writes them:
//! `To: bob`, `Cc: Alice <alice>, carol@example.org (Carol)`. What a submission
//! from this machine leaves unqualified is completed with our name, as sendmail
//! and Postfix do for local mail, so that a copy relayed on names a real mailbox.
//! Display names, quoted strings, comments, groups and folding stay as written.

use super::address::Mailbox;

/// The fields whose addresses are mailboxes (RFC 5322 §3.6.2, §3.6.3, §3.6.6).
pub const ADDRESS_FIELDS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-bcc",
];

/// Most octets of a field value looked at; a longer one is left as it is.
const MAX_VALUE: usize = 64 * 1024;

/// The address list `value` (a field's text after its colon, folding included)
/// with every address that has no domain completed with `@host`; `None` when
/// nothing changed.
pub fn qualify(value: &str, host: &str) -> Option<String> {
    if value.len() > MAX_VALUE || !value.is_ascii() {
        return None;
    }
    let mut out = String::with_capacity(value.len() + 32);
    let mut changed = false;
    for element in elements(value) {
        match qualify_element(element, host) {
            Some(new) => {
                out.push_str(&new);
                changed = true;
            }
            None => out.push_str(element),
        }
    }
    changed.then_some(out)
}

/// The addresses of the list `value` as written (`sendmail -t` reads its
/// recipients here): `a@b, "Doe, J" <j@d>, e (comment), team: f, g;` gives `a@b`,
/// `j@d`, `e`, `f`, `g`. Quotes, escapes and comments are honoured as a mail reader
/// honours them, so a display name can never add an address.
pub fn addresses(value: &str) -> Vec<String> {
    if value.len() > MAX_VALUE {
        return Vec::new();
    }
    let mut out = Vec::new();
    for element in elements(value) {
        if element.ends_with(':') {
            continue;
        }
        let body = element.trim_end_matches([',', ';']);
        if let Some(open) = find_top(body, b'<') {
            let rest = &body[open + 1..];
            if let Some(close) = find_top(rest, b'>') {
                let inner = rest[..close].trim();
                if !inner.is_empty() {
                    out.push(inner.to_string());
                }
            }
            continue;
        }
        let word = without_comments(body);
        let word = word.trim();
        // One word: a phrase with no address in it is nobody.
        if !word.is_empty() && !word.contains(char::is_whitespace) {
            out.push(word.to_string());
        }
    }
    out
}

/// `s` with its (comments) left out.
fn without_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in s.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The list cut after each top-level `,` (and after a group's `:` and `;`), so the
/// pieces joined are the value again.
fn elements(value: &str) -> Vec<&str> {
    let b = value.as_bytes();
    let (mut quoted, mut depth, mut angle) = (false, 0usize, false);
    let mut start = 0;
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if (quoted || depth > 0) && c == b'\\' {
            i += 2;
            continue;
        }
        match c {
            b'"' if depth == 0 => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => depth -= 1,
            b'<' if !quoted && depth == 0 => angle = true,
            b'>' if !quoted && depth == 0 => angle = false,
            b',' | b':' | b';' if !quoted && depth == 0 && !angle => {
                out.push(&value[start..=i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&value[start.min(value.len())..]);
    out
}

/// One mailbox (with its separator), qualified if it needs it.
fn qualify_element(element: &str, host: &str) -> Option<String> {
    // A group's name ("friends:") is not an address.
    if element.ends_with(':') {
        return None;
    }
    let (body, sep) = match element.as_bytes().last() {
        Some(b',' | b';') => element.split_at(element.len() - 1),
        _ => (element, ""),
    };
    let complete = |local: &str| {
        let full = format!("{local}@{host}");
        Mailbox::parse(&full).ok().map(|_| full)
    };
    if let (Some(open), Some(close)) = (find_top(body, b'<'), body.rfind('>')) {
        let inner = body.get(open + 1..close)?.trim();
        if inner.is_empty() || inner.contains('@') {
            return None;
        }
        let full = complete(inner)?;
        return Some(format!(
            "{}<{full}>{}{sep}",
            &body[..open],
            &body[close + 1..]
        ));
    }
    // A bare addr-spec: one word once comments are set aside.
    let word_start = body.find(|c: char| !c.is_ascii_whitespace())?;
    let word_len = body[word_start..]
        .find(|c: char| c.is_ascii_whitespace() || c == '(')
        .unwrap_or(body.len() - word_start);
    let word = &body[word_start..word_start + word_len];
    let rest = &body[word_start + word_len..];
    if word.contains(['@', '"', '(', ')']) || !only_comments(rest) {
        return None;
    }
    let full = complete(word)?;
    Some(format!("{}{full}{rest}{sep}", &body[..word_start]))
}

/// Where `c` first occurs outside quotes and comments.
fn find_top(s: &str, c: u8) -> Option<usize> {
    let (mut quoted, mut depth) = (false, 0usize);
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted || depth > 0 => i += 1,
            b'"' if depth == 0 => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => depth -= 1,
            x if x == c && !quoted && depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether `s` is white space and (comments) only.
fn only_comments(s: &str) -> bool {
    let mut depth = 0usize;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if depth > 0 => escaped = true,
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            c if depth == 0 && !c.is_ascii_whitespace() => return false,
            _ => {}
        }
    }
    depth == 0
}

#[cfg(test)]
mod tests {
    use super::qualify;

    #[test]
    fn bare_and_angle_addresses_get_the_host() {
        let q = |v: &str| qualify(v, "host.example");
        assert_eq!(q(" bob\r\n").as_deref(), Some(" bob@host.example\r\n"));
        assert_eq!(
            q(" Alice Smith <alice>, carol@example.org (Carol), dave (Dave)\r\n").as_deref(),
            Some(" Alice Smith <alice@host.example>, carol@example.org (Carol), dave@host.example (Dave)\r\n")
        );
        assert_eq!(
            q(" \"Smith, Bob\" <bob>,\r\n\tann\r\n").as_deref(),
            Some(" \"Smith, Bob\" <bob@host.example>,\r\n\tann@host.example\r\n")
        );
        assert_eq!(
            q(" friends: eve, frank@x.example;\r\n").as_deref(),
            Some(" friends: eve@host.example, frank@x.example;\r\n")
        );
    }

    #[test]
    fn the_addresses_of_a_list_are_what_a_reader_sees() {
        use super::addresses;
        assert_eq!(
            addresses(" a@b.example, \"Doe, John\" <j@d.example>, c@e.example (Carl)"),
            ["a@b.example", "j@d.example", "c@e.example"]
        );
        assert_eq!(
            addresses(" team: x@y.example, z@y.example;"),
            ["x@y.example", "z@y.example"]
        );
        assert_eq!(addresses("root"), ["root"]);
        // An escaped quote inside a display name hides nothing.
        assert_eq!(
            addresses(r#" "Mallory\" <evil@elsewhere.example>, \"" <bob@remote.example>"#),
            ["bob@remote.example"]
        );
        assert_eq!(
            addresses(" (x <evil@a.example>) bob@b.example"),
            ["bob@b.example"]
        );
        assert_eq!(addresses(" Bob Smith"), Vec::<String>::new());
        assert_eq!(addresses(" J\u{f6}rg <j@x.example>"), ["j@x.example"]);
    }

    #[test]
    fn what_is_complete_or_not_an_address_stays() {
        let q = |v: &str| qualify(v, "host.example");
        assert_eq!(q(" bob@example.org\r\n"), None);
        assert_eq!(q(" Bob <bob@example.org>\r\n"), None);
        assert_eq!(q(" undisclosed-recipients:;\r\n"), None);
        assert_eq!(
            q(" Bob Smith\r\n"),
            None,
            "two words are a phrase, not an address"
        );
        assert_eq!(q(" <>\r\n"), None);
        assert_eq!(q(" (only a comment)\r\n"), None);
        assert_eq!(q(" bad<\r\n"), None);
        assert_eq!(q(" \"quoted local\"\r\n"), None);
        assert_eq!(q(""), None);
        assert_eq!(q(" Jörg <jorg>\r\n"), None, "8-bit text is left alone");
    }
}
