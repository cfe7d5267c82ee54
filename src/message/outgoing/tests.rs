use super::*;
use std::path::Path;

fn generic(text: &str) -> Generic {
    Generic::parse(Path::new("generic"), text).unwrap()
}

#[test]
fn masquerade_rewrites_from_sender_and_reply_to_and_keeps_the_rest() {
    let g = generic("root@router.lan alerts@example.org\n@router.lan @example.org\n");
    let head = b"Received: from x by router.lan\r\n\
        From: \"Cron Daemon\" <root@router.lan>\r\n\
        Sender: cron@router.lan (the cron)\r\n\
        Reply-To: a@far.example,\r\n b@router.lan\r\n\
        To: root@router.lan\r\n\
        Subject: root@router.lan\r\n\r\n";
    let out = String::from_utf8(masquerade(head, &g).unwrap()).unwrap();
    assert!(
        out.contains("From: \"Cron Daemon\" <alerts@example.org>\r\n"),
        "{out}"
    );
    assert!(
        out.contains("Sender: cron@example.org (the cron)\r\n"),
        "{out}"
    );
    assert!(
        out.contains("Reply-To: a@far.example,\r\n b@example.org\r\n"),
        "{out}"
    );
    // Recipients and other fields keep theirs.
    assert!(out.contains("To: root@router.lan\r\n"), "{out}");
    assert!(out.contains("Subject: root@router.lan\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n"));
    // Nothing to do: nothing returned.
    assert_eq!(masquerade(b"From: x@other.example\r\n\r\n", &g), None);
    assert_eq!(masquerade(head, &Generic::default()), None);
    // A quoted string or comment that looks like an address is not one.
    let q = masquerade(
        b"From: \"root@router.lan\" <x@y.example> (root@router.lan)\r\n\r\n",
        &g,
    );
    assert_eq!(q, None);
}

#[test]
fn seven_bit_leaves_a_seven_bit_message_alone() {
    let m = b"Subject: x\r\n\r\nplain\r\n";
    assert_eq!(seven_bit(m).unwrap(), m.to_vec());
}

#[test]
fn seven_bit_a_plain_eight_bit_message_becomes_quoted_printable_mime() {
    let m = "Subject: x\r\n\r\nGr\u{fc}\u{df}e aus K\u{f6}ln = sch\u{f6}n \r\n".as_bytes();
    let out = seven_bit(m).unwrap();
    assert!(out.iter().all(|&b| b < 0x80));
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("MIME-Version: 1.0\r\n"), "{text}");
    assert!(
        text.contains("Content-Type: text/plain; charset=utf-8\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Content-Transfer-Encoding: quoted-printable\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Gr=C3=BC=C3=9Fe aus K=C3=B6ln =3D sch=C3=B6n=20\r\n"),
        "{text}"
    );
}

#[test]
fn seven_bit_refuses_eight_bit_headers() {
    let m = "Subject: K\u{f6}ln\r\n\r\nx\u{e9}\r\n".as_bytes();
    assert!(seven_bit(m).is_err());
}

#[test]
fn seven_bit_converts_each_part_of_a_multipart() {
    let m = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
        preamble\r\n--b1\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
        Content-Transfer-Encoding: 8bit\r\n\r\ncaf\u{e9}\r\n--b1\r\n\
        Content-Type: application/octet-stream\r\n\r\n\u{ff}\u{fe}\r\n--b1\r\n\
        Content-Type: text/plain\r\n\r\nascii only\r\n--b1--\r\nepilogue\r\n"
        .as_bytes();
    let out = String::from_utf8(seven_bit(m).unwrap()).unwrap();
    assert!(out.is_ascii());
    // The part's last line had no line end of its own (the CR LF before a
    // delimiter is the delimiter's): a soft break keeps it that way.
    assert!(
        out.contains(
            "Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9=\r\n\r\n--b1\r\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("Content-Transfer-Encoding: base64\r\n\r\nw7/Dvg==\r\n\r\n--b1\r\n"),
        "{out}"
    );
    assert!(
        out.contains("Content-Type: text/plain\r\n\r\nascii only\r\n--b1--\r\nepilogue\r\n"),
        "{out}"
    );
    assert!(out.starts_with("MIME-Version: 1.0\r\n"));
}

#[test]
fn quoted_printable_keeps_lines_short_and_decodes_back() {
    let long = "\u{e4}".repeat(100) + "\r\nend";
    let qp = quoted_printable(long.as_bytes());
    let text = String::from_utf8(qp.clone()).unwrap();
    assert!(
        text.lines().all(|l| l.trim_end_matches('\r').len() <= 76),
        "{text}"
    );
    // Decoding: soft breaks vanish, =XX become octets.
    let mut back = Vec::new();
    let mut i = 0;
    while i < qp.len() {
        match qp[i] {
            b'=' if qp[i + 1] == b'\r' => i += 3,
            b'=' => {
                back.push(
                    u8::from_str_radix(std::str::from_utf8(&qp[i + 1..i + 3]).unwrap(), 16)
                        .unwrap(),
                );
                i += 3;
            }
            c => {
                back.push(c);
                i += 1;
            }
        }
    }
    assert_eq!(back, long.as_bytes());
}

#[test]
fn seven_bit_is_bounded_in_depth() {
    let mut m = String::from("Subject: deep\r\n");
    for i in 0..(MAX_DEPTH + 2) {
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
        ));
    }
    m.push_str("Content-Type: text/plain\r\n\r\n\u{e9}\r\n");
    assert!(seven_bit(m.as_bytes()).is_err());
}

#[test]
fn masquerade_keeps_every_octet_of_names_in_any_charset() {
    let g = generic("@router.lan @example.org\n");
    // UTF-8 in a quoted display name, Latin-1 in a comment, escapes before 8-bit
    // octets: all as they were, the address rewritten.
    let head: &[u8] =
        b"From: \"J\xc3\xb6rg \\\xc3\xa9\" <root@router.lan> (caf\\\xe9 \xe9)\r\n\r\n";
    let out = masquerade(head, &g).unwrap();
    assert_eq!(
        out,
        b"From: \"J\xc3\xb6rg \\\xc3\xa9\" <root@example.org> (caf\\\xe9 \xe9)\r\n\r\n".to_vec()
    );
    // An escape at the very end, an unclosed quote: no panic, nothing lost.
    for h in [
        &b"From: \"x\\"[..],
        b"From: (\\",
        b"From: \"\xff",
        b"From: <\xff@router.lan>",
    ] {
        let _ = masquerade(h, &g);
    }
}

#[test]
fn what_follows_a_boundary_on_its_line_never_leaves_raw() {
    let msg: &[u8] = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b \xff\xfe\r\nContent-Type: text/plain\r\n\r\ncaf\xc3\xa9\r\n--b--\xff\r\n";
    let out = seven_bit(msg).unwrap();
    assert!(
        out.iter().all(|&b| b < 0x80),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("\r\n--b\r\n") && text.ends_with("\r\n--b--\r\n"),
        "{text}"
    );
}
